/* sha256 digests (OpenSSL's libcrypto, which libgrpc already pulls in) and chain ids. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "imagemgr-internal.h"

static void hex_out(const unsigned char md[32], img_digest ret)
{
        static const char hex[] = "0123456789abcdef";

        memcpy(ret, "sha256:", 7);
        for (int i = 0; i < 32; i++) {
                ret[7 + 2 * i] = hex[md[i] >> 4];
                ret[8 + 2 * i] = hex[md[i] & 15];
        }
        ret[71] = '\0';
}

void img_sha256(const void *buf, size_t len, img_digest ret)
{
        unsigned char md[32];
        unsigned int n = 0;

        EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL);
        hex_out(md, ret);
}

int img_sha256_file(const char *path, uint64_t *ret_size, img_digest ret)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        unsigned char md[32];
        unsigned int mdlen = 0;
        static __thread unsigned char buf[1 << 16];
        uint64_t total = 0;
        EVP_MD_CTX *c;
        int r = 0;

        if (fd < 0)
                return -errno;
        c = EVP_MD_CTX_new();
        if (!c)
                return -ENOMEM;
        EVP_DigestInit_ex(c, EVP_sha256(), NULL);
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                EVP_DigestUpdate(c, buf, (size_t)n);
                total += (uint64_t)n;
        }
        EVP_DigestFinal_ex(c, md, &mdlen);
        EVP_MD_CTX_free(c);
        if (r < 0)
                return r;
        hex_out(md, ret);
        if (ret_size)
                *ret_size = total;
        return 0;
}

void img_chain_id(const char *parent_chain, const char *diff_id, img_digest ret)
{
        char buf[160];
        int n;

        if (!parent_chain) {
                snprintf(ret, sizeof(img_digest), "%s", diff_id);
                return;
        }
        n = snprintf(buf, sizeof(buf), "%s %s", parent_chain, diff_id);
        img_sha256(buf, (size_t)n, ret);
}
