/* sha256 digests of small things (manifests, configs) and chain ids. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "imagemgr-internal.h"
#include "sha256.h"

void img_sha256(const void *buf, size_t len, img_digest ret)
{
        sh_sha256_digest(buf, len, ret);
}

int img_sha256_file(const char *path, uint64_t *ret_size, img_digest ret)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        static const char hex[] = "0123456789abcdef";
        unsigned char buf[1 << 14], md[32];
        struct sh_sha256 c;
        uint64_t total = 0;

        if (fd < 0)
                return -errno;
        sh_sha256_init(&c);
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                sh_sha256_update(&c, buf, (size_t)n);
                total += (uint64_t)n;
        }
        sh_sha256_final(&c, md);
        memcpy(ret, "sha256:", 7);
        for (int i = 0; i < 32; i++) {
                ret[7 + 2 * i] = hex[md[i] >> 4];
                ret[8 + 2 * i] = hex[md[i] & 15];
        }
        ret[71] = '\0';
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
