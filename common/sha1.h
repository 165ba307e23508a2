#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * SHA-1 (FIPS 180-4). Broken for collision resistance; runt uses it only where a protocol
 * fixes it, as RFC 6455's Sec-WebSocket-Accept does. Never use it for content addressing.
 */
struct sh_sha1 {
        uint32_t h[5];
        uint64_t len; /* bytes so far */
        unsigned char buf[64];
        size_t n; /* bytes in buf */
};

void sh_sha1_init(struct sh_sha1 *c);
void sh_sha1_update(struct sh_sha1 *c, const void *data, size_t len);
/* Writes the 20-byte digest; @c must be initialised again before reuse. */
void sh_sha1_final(struct sh_sha1 *c, unsigned char out[20]);

/* One-shot: the 20-byte digest of @len bytes of @data. */
void sh_sha1(const void *data, size_t len, unsigned char out[20]);
