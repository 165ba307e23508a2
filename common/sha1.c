#include "sha1.h"

#include <string.h>

static inline uint32_t rol(uint32_t x, unsigned n)
{
        return (x << n) | (x >> (32 - n));
}

static void block(struct sh_sha1 *c, const unsigned char *p)
{
        uint32_t w[80], a, b, d, e, cc, f, k, t;

        for (int i = 0; i < 16; i++)
                w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
                       (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
        for (int i = 16; i < 80; i++)
                w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4];
        for (int i = 0; i < 80; i++) {
                if (i < 20) {
                        f = (b & cc) | (~b & d);
                        k = 0x5a827999;
                } else if (i < 40) {
                        f = b ^ cc ^ d;
                        k = 0x6ed9eba1;
                } else if (i < 60) {
                        f = (b & cc) | (b & d) | (cc & d);
                        k = 0x8f1bbcdc;
                } else {
                        f = b ^ cc ^ d;
                        k = 0xca62c1d6;
                }
                t = rol(a, 5) + f + e + k + w[i];
                e = d, d = cc, cc = rol(b, 30), b = a, a = t;
        }
        c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d, c->h[4] += e;
}

void sh_sha1_init(struct sh_sha1 *c)
{
        static const uint32_t iv[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};

        memcpy(c->h, iv, sizeof(iv));
        c->len = 0;
        c->n = 0;
}

void sh_sha1_update(struct sh_sha1 *c, const void *data, size_t len)
{
        const unsigned char *p = data;

        c->len += len;
        if (c->n) {
                size_t k = 64 - c->n < len ? 64 - c->n : len;

                memcpy(c->buf + c->n, p, k);
                c->n += k;
                p += k;
                len -= k;
                if (c->n < 64)
                        return;
                block(c, c->buf);
                c->n = 0;
        }
        for (; len >= 64; p += 64, len -= 64)
                block(c, p);
        if (len)
                memcpy(c->buf, p, len);
        c->n = len;
}

void sh_sha1_final(struct sh_sha1 *c, unsigned char out[20])
{
        uint64_t bits = c->len * 8;
        unsigned char pad[72] = {0x80};
        size_t padlen = c->n < 56 ? 56 - c->n : 120 - c->n;

        for (int i = 0; i < 8; i++)
                pad[padlen + (size_t)i] = (unsigned char)(bits >> (56 - 8 * i));
        sh_sha1_update(c, pad, padlen + 8);
        for (int i = 0; i < 5; i++) {
                out[4 * i] = (unsigned char)(c->h[i] >> 24);
                out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
                out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
                out[4 * i + 3] = (unsigned char)c->h[i];
        }
}

void sh_sha1(const void *data, size_t len, unsigned char out[20])
{
        struct sh_sha1 c;

        sh_sha1_init(&c);
        sh_sha1_update(&c, data, len);
        sh_sha1_final(&c, out);
}
