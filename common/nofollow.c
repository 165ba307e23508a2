/*
 * Opening and making paths without following symlinks (nofollow.h). A walk by directory fd
 * rather than openat2(RESOLVE_NO_SYMLINKS): making the missing directories needs the
 * parent's fd at each step anyway, and it works on any kernel.
 */
#include "nofollow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The next component of *@p (skipping slashes), its length in *@ret_len; NULL at the end. */
static const char *next_comp(const char **p, size_t *ret_len)
{
        const char *c = *p;

        while (*c == '/')
                c++;
        if (!*c)
                return NULL;
        *ret_len = strcspn(c, "/");
        *p = c + *ret_len;
        return c;
}

static bool dot_or_dotdot(const char *c, size_t len)
{
        return (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.');
}

/* Steps from @dirfd into its entry @name, made first when @create; closes @dirfd. */
static int step(int dirfd, const char *name, bool create, unsigned mode)
{
        int fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), e;

        if (fd < 0 && errno == ENOENT && create) {
                if (mkdirat(dirfd, name, (mode_t)mode) < 0 && errno != EEXIST) {
                        e = -errno;
                        close(dirfd);
                        return e;
                }
                fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        e = fd < 0 ? (errno == ELOOP ? -ENOTDIR : -errno) : fd;
        close(dirfd);
        return e;
}

int sh_open_dir_nofollow(const char *path, bool create, unsigned mode)
{
        const char *p = path, *c;
        size_t len = 0;
        int fd;

        if (!path || path[0] != '/')
                return -EINVAL;
        fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        while (fd >= 0 && (c = next_comp(&p, &len))) {
                char name[256];

                if (dot_or_dotdot(c, len) || len >= sizeof(name)) {
                        close(fd);
                        return len >= sizeof(name) ? -ENAMETOOLONG : -EINVAL;
                }
                memcpy(name, c, len);
                name[len] = '\0';
                fd = step(fd, name, create, mode);
        }
        return fd;
}

int sh_open_append_nofollow(const char *path, unsigned mode)
{
        const char *slash = path ? strrchr(path, '/') : NULL;
        char *dir;
        struct stat st;
        int dfd, fd;

        if (!slash || path[0] != '/' || !slash[1] || dot_or_dotdot(slash + 1, strlen(slash + 1)))
                return -EINVAL;
        dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
        if (!dir)
                return -ENOMEM;
        dfd = sh_open_dir_nofollow(dir, false, 0);
        free(dir);
        if (dfd < 0)
                return dfd;
        /* O_NONBLOCK: a FIFO planted there must not block the open; it is refused below. */
        fd = openat(dfd, slash + 1,
                    O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
                    (mode_t)mode);
        if (fd < 0) {
                fd = -errno;
                close(dfd);
                return fd;
        }
        close(dfd);
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return -EINVAL;
        }
        if (fcntl(fd, F_SETFL, O_APPEND) < 0) {
                close(fd);
                return -errno;
        }
        return fd;
}
