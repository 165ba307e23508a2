#include "fsusage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fswalk.h"

int sh_fs_usage_scan(const char *dir, struct sh_fs_usage *ret, struct sh_error *err)
{
        struct sh_walk_usage u = {0};
        struct timespec ts;
        int r;

        memset(ret, 0, sizeof(*ret));
        snprintf(ret->mountpoint, sizeof(ret->mountpoint), "%s", dir);
        clock_gettime(CLOCK_REALTIME, &ts);
        ret->timestamp_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        r = sh_walk_usage_at(AT_FDCWD, dir, &u);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return sh_err(err, r, "measure '%s': %s", dir, strerror(-r));
        ret->used_bytes = u.bytes;
        ret->inodes_used = u.inodes;
        return 0;
}
