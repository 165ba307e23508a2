/* The Proxmox VE client's credentials: see auth.h. */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "upid.h"

#define TOKEN_MAX 1024

static bool token_char(char c, bool secret)
{
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
                return true;
        return strchr(secret ? "-" : "-_.@!", c) != NULL;
}

/* USER@REALM!TOKENID=SECRET, split on the last '=' as PVE does. */
static bool token_ok(const char *s, size_t n)
{
        const char *eq = NULL, *at = NULL, *bang = NULL;

        for (size_t i = 0; i < n; i++)
                if (s[i] == '=')
                        eq = s + i;
        if (!eq || eq == s || (size_t)(eq - s) + 1 >= n)
                return false;
        for (const char *p = s; p < eq; p++) {
                if (!token_char(*p, false))
                        return false;
                if (*p == '@' && !at)
                        at = p;
                if (*p == '!')
                        bang = p;
        }
        if (!at || !bang || at == s || bang < at + 2 || bang + 1 == eq)
                return false;
        for (const char *p = eq + 1; p < s + n; p++)
                if (!token_char(*p, true))
                        return false;
        return true;
}

int pve_token_load(const char *path, char **ret, struct sh_error *err)
{
        char buf[TOKEN_MAX + 2];
        struct stat st;
        ssize_t n;
        size_t len;
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);

        if (fd < 0)
                return sh_err(err, errno == ELOOP ? -EPERM : -errno, "PVE token file '%s': %s",
                              path, errno == ELOOP ? "is a symlink" : strerror(errno));
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return sh_err(err, -EPERM, "PVE token file '%s' is not a regular file", path);
        }
        if (st.st_mode & 077) {
                close(fd);
                return sh_err(err, -EPERM,
                              "PVE token file '%s' is mode %04o: it must be readable by its owner "
                              "only (chmod 600)",
                              path, (unsigned)(st.st_mode & 07777));
        }
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                close(fd);
                return sh_err(err, -EPERM, "PVE token file '%s' must be owned by root", path);
        }
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n < 0)
                return sh_err(err, -errno, "PVE token file '%s': %s", path, strerror(errno));
        if ((size_t)n > TOKEN_MAX) {
                explicit_bzero(buf, sizeof(buf));
                return sh_err(err, -EFBIG, "PVE token file '%s' is over %d bytes", path, TOKEN_MAX);
        }
        len = (size_t)n;
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                len--;
        if (!token_ok(buf, len)) {
                explicit_bzero(buf, sizeof(buf));
                return sh_err(err, -EINVAL,
                              "PVE token file '%s' does not hold one line "
                              "USER@REALM!TOKENID=SECRET",
                              path);
        }
        *ret = malloc(len + sizeof("PVEAPIToken="));
        if (*ret) {
                memcpy(*ret, "PVEAPIToken=", sizeof("PVEAPIToken=") - 1);
                memcpy(*ret + sizeof("PVEAPIToken=") - 1, buf, len);
                (*ret)[sizeof("PVEAPIToken=") - 1 + len] = 0;
        }
        explicit_bzero(buf, sizeof(buf));
        return *ret ? 0 : -ENOMEM;
}

int pve_fingerprint_parse(const char *s, uint8_t out[32])
{
        size_t len = s ? strlen(s) : 0;
        bool colons = len == 32 * 3 - 1;

        if (len != 64 && !colons)
                return -EINVAL;
        for (size_t i = 0; i < 32; i++) {
                const char *p = s + (colons ? i * 3 : i * 2);
                int hi = pve_hexval(p[0]), lo = pve_hexval(p[1]);

                if (hi < 0 || lo < 0 || (colons && i < 31 && p[2] != ':'))
                        return -EINVAL;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
}
