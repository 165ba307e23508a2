#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fswalk.h"

char *sh_strdup_printf(const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&s, fmt, ap);
        va_end(ap);
        return n < 0 ? NULL : s;
}

char *sh_path_join(const char *a, const char *b)
{
        size_t la, lb;

        if (!a || !*a)
                return strdup(b ? b : "");
        if (!b || !*b)
                return strdup(a);
        la = strlen(a);
        while (la > 0 && a[la - 1] == '/')
                la--;
        while (*b == '/')
                b++;
        lb = strlen(b);
        /* a == "/" leaves la == 0, and the result is "/b". */
        char *s = malloc(la + 1 + lb + 1);

        if (!s)
                return NULL;
        memcpy(s, a, la);
        s[la] = '/';
        memcpy(s + la + 1, b, lb);
        s[la + 1 + lb] = '\0';
        return s;
}

static int mkdir_one(const char *path, unsigned mode)
{
        struct stat st;

        if (mkdir(path, (mode_t)mode) == 0)
                return 0;
        if (errno != EEXIST)
                return -errno;
        /* EEXIST says nothing about the type; a file in the way is ENOTDIR. */
        if (stat(path, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int sh_mkdir_p(const char *path, unsigned mode)
{
        _cleanup_free_ char *p = NULL;
        int r;

        if (!path || !*path)
                return -EINVAL;
        p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/' || s[-1] == '/')
                        continue;
                *s = '\0';
                r = mkdir_one(p, mode);
                *s = '/';
                if (r < 0)
                        return r;
        }
        return mkdir_one(p, mode);
}

static int write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;

        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Makes a finished rename durable: the directory entry lives in the directory's own data. */
static int fsync_dir(const char *dir)
{
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

static int write_file_atomic(const char *path, const void *buf, size_t len, unsigned mode,
                             bool durable)
{
        _cleanup_free_ char *dir = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *slash, *base;
        int r;

        if (!path || !*path || (len > 0 && !buf))
                return -EINVAL;
        slash = strrchr(path, '/');
        base = slash ? slash + 1 : path;
        if (!*base)
                return -EISDIR;
        if (!slash)
                dir = strdup(".");
        else if (slash == path)
                dir = strdup("/");
        else
                dir = strndup(path, (size_t)(slash - path));
        if (!dir)
                return -ENOMEM;
        tmp = sh_strdup_printf("%s/.%s.XXXXXX", dir, base);
        if (!tmp)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* mkostemp creates 0600; set the wanted mode exactly, independent of the umask. */
        if (fchmod(fd, (mode_t)mode) < 0) {
                r = -errno;
                goto fail;
        }
        r = write_all(fd, buf, len);
        if (r < 0)
                goto fail;
        if (durable && fsync(fd) < 0) {
                r = -errno;
                goto fail;
        }
        /* close() can report a deferred write error (NFS); do not rename a bad file in. */
        if (close(TAKE_FD(fd)) < 0) {
                r = -errno;
                goto fail;
        }
        if (rename(tmp, path) < 0) {
                r = -errno;
                goto fail;
        }
        return durable ? fsync_dir(dir) : 0;

fail:
        unlink(tmp);
        return r;
}

int sh_write_file_atomic(const char *path, const void *buf, size_t len, unsigned mode)
{
        return write_file_atomic(path, buf, len, mode, true);
}

int sh_write_file_replace(const char *path, const void *buf, size_t len, unsigned mode)
{
        return write_file_atomic(path, buf, len, mode, false);
}

int sh_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len)
{
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0, limit, hint;
        struct stat st;

        if (!path || !ret_buf)
                return -EINVAL;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (S_ISREG(st.st_mode) && (unsigned long long)st.st_size > max)
                return -EFBIG;
        /* Read at most one byte beyond @max: enough to tell that the file is larger. */
        limit = max < SIZE_MAX - 1 ? max + 1 : SIZE_MAX - 1;
        /* st_size is only a hint (/proc and sysfs report 0 or 4096); +1 sees EOF at once. */
        hint = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
        for (;;) {
                if (len == cap) {
                        size_t ncap = cap ? cap * 2 : hint;

                        if (ncap > limit)
                                ncap = limit;
                        char *nb = realloc(buf, ncap + 1);

                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        cap = ncap;
                }
                ssize_t n = read(fd, buf + len, cap - len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > max)
                        return -EFBIG;
        }
        buf[len] = '\0';
        if (ret_len)
                *ret_len = len;
        *ret_buf = TAKE_PTR(buf);
        return 0;
}

bool sh_list_next(const char **cursor, const char **ret, size_t *ret_len)
{
        const char *v = *cursor;

        while (v && *v) {
                size_t n, m;

                v += strspn(v, " \t,");
                n = strcspn(v, ",");
                m = n;
                while (m && (v[m - 1] == ' ' || v[m - 1] == '\t'))
                        m--;
                *cursor = v + n;
                if (m) {
                        *ret = v;
                        *ret_len = m;
                        return true;
                }
                v += n;
        }
        *cursor = v;
        return false;
}

unsigned long long sh_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

int sh_rm_rf(const char *path)
{
        return sh_rm_rf_at(AT_FDCWD, path);
}

int sh_find_helper(const char *name, const char *fallback, char *out, size_t size)
{
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

        if (n > 0) {
                char *slash;

                self[n] = '\0';
                slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        snprintf(out, size, "%s/%s", self, name);
                        if (access(out, X_OK) == 0)
                                return 0;
                }
        }
        snprintf(out, size, "%s", fallback);
        return access(out, X_OK) == 0 ? 0 : -ENOENT;
}

int sh_open_nofollow(const char *base, const char *rel, int flags)
{
        char *copy = strdup(rel), *save = NULL, *comp, *next;
        int fd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC), r;

        if (!copy || fd < 0) {
                r = copy ? -errno : -ENOMEM;
                free(copy);
                if (fd >= 0)
                        close(fd);
                return r;
        }
        comp = strtok_r(copy, "/", &save);
        while (comp && (next = strtok_r(NULL, "/", &save))) {
                int d = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                close(fd);
                if (d < 0) {
                        r = errno == ENOENT ? -ENOENT : -ENOTDIR;
                        free(copy);
                        return r;
                }
                fd = d;
                comp = next;
        }
        r = comp ? openat(fd, comp, flags | O_NOFOLLOW | O_CLOEXEC) : -1;
        r = r < 0 ? (comp ? -errno : -EISDIR) : r;
        close(fd);
        free(copy);
        return r;
}

/* One read() of up to 64 KiB from @in and its full write() to @out: bytes copied or -1. */
static ssize_t copy_chunk(int in, int out, off_t left)
{
        char buf[1 << 16];
        ssize_t n = read(in, buf, left < (off_t)sizeof(buf) ? (size_t)left : sizeof(buf));

        for (ssize_t done = 0; n > 0 && done < n;) {
                ssize_t w = write(out, buf + done, (size_t)(n - done));

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -1;
                done += w;
        }
        return n;
}

int sh_copy_file(const char *src, const char *dst, unsigned mode)
{
        int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, r = 0;
        bool plain = false;
        struct stat st;

        if (in < 0)
                return -errno;
        if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode)) {
                r = errno ? -errno : -EINVAL;
                goto done;
        }
        unlink(dst);
        out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (out < 0) {
                r = -errno;
                goto done;
        }
        for (off_t left = st.st_size; left > 0;) {
                ssize_t n = -1;

                /*
                 * copy_file_range refuses files of two filesystem types (EXDEV since Linux
                 * 5.19: an overlay over virtiofs to a tmpfs); read and write then.
                 */
                if (!plain)
                        n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
                if (!plain && n < 0 &&
                    (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
                        plain = true;
                        continue;
                }
                if (plain)
                        n = copy_chunk(in, out, left);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        break;
                }
                left -= n;
        }
        if (r == 0 && fchmod(out, mode) < 0)
                r = -errno;
done:
        if (out >= 0)
                close(out);
        if (r < 0 && out >= 0)
                unlink(dst);
        close(in);
        return r;
}
