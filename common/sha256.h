#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * SHA-256 (FIPS 180-4), for the small things runtd hashes itself: manifests, configs, chain
 * ids. Bulk hashing (layer blobs) happens in the unpack helper with OpenSSL's; keeping
 * libcrypto out of runtd keeps its resident size down.
 */
struct sh_sha256 {
        uint32_t h[8];
        uint64_t len; /* bytes so far */
        unsigned char buf[64];
        size_t n; /* bytes in buf */
};

void sh_sha256_init(struct sh_sha256 *c);
void sh_sha256_update(struct sh_sha256 *c, const void *data, size_t len);
void sh_sha256_final(struct sh_sha256 *c, unsigned char out[32]);

/* One-shot: "sha256:" and 64 lowercase hex digits into @ret (72 bytes with the NUL). */
void sh_sha256_digest(const void *data, size_t len, char ret[72]);

/* Standard base64 (with padding) of @len bytes into @out (4 * ceil(len / 3) + 1 bytes). */
void sh_base64_encode(const void *data, size_t len, char *out);
