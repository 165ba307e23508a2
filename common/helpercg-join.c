/*
 * The helper's side of helpercg.h: joining the cgroups runtd made for it. libc only, as the
 * helper programs (runt-lxc-shim, runt-lxc-start) build it in as a source.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpercg.h"

int sh_helpercg_open_procs(const char *dirs, int *fds, size_t max)
{
        size_t n = 0;

        for (const char *d = dirs; d && *d;) {
                const char *e = strchr(d, '\n');
                size_t len = e ? (size_t)(e - d) : strlen(d);
                char path[PATH_MAX];
                int fd;

                if (len) {
                        if (n == max || len + sizeof("/cgroup.procs") > sizeof(path)) {
                                int r = n == max ? -E2BIG : -ENAMETOOLONG;

                                while (n)
                                        close(fds[--n]);
                                return r;
                        }
                        snprintf(path, sizeof(path), "%.*s/cgroup.procs", (int)len, d);
                        fd = open(path, O_WRONLY | O_CLOEXEC);
                        if (fd < 0) {
                                int r = -errno;

                                while (n)
                                        close(fds[--n]);
                                return r;
                        }
                        fds[n++] = fd;
                }
                d = e ? e + 1 : NULL;
        }
        return (int)n;
}

int sh_helpercg_join_fds(const int *fds, size_t n)
{
        for (size_t i = 0; i < n; i++)
                /* "0" is the writer itself, on v1 and v2 alike. */
                if (write(fds[i], "0", 1) != 1)
                        return -errno;
        return 0;
}

int sh_helpercg_join_env(char *why, size_t size)
{
        const char *v = getenv(SH_HELPERCG_ENV);
        char *dirs;
        int fds[32], n, r;

        if (!v)
                return 0;
        dirs = strdup(v);
        unsetenv(SH_HELPERCG_ENV);
        if (!dirs) {
                snprintf(why, size, "out of memory");
                return -ENOMEM;
        }
        n = sh_helpercg_open_procs(dirs, fds, sizeof(fds) / sizeof(fds[0]));
        if (n < 0) {
                snprintf(why, size, "open cgroup.procs of %s: %s", dirs, strerror(-n));
                free(dirs);
                return n;
        }
        r = sh_helpercg_join_fds(fds, (size_t)n);
        if (r < 0)
                snprintf(why, size, "join the cgroups %s: %s", dirs, strerror(-r));
        for (int i = 0; i < n; i++)
                close(fds[i]);
        free(dirs);
        return r;
}
