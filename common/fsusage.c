#include "fsusage.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct walk {
        uint64_t bytes;
        uint64_t inodes;
        void *seen; /* tsearch tree of inode numbers with more than one link */
        int err;
};

/* nftw() has no user pointer; the walk state is per thread so walks may run concurrently. */
static _Thread_local struct walk *cur;

static int cmp_ino(const void *a, const void *b)
{
        ino_t x = *(const ino_t *)a, y = *(const ino_t *)b;

        return x < y ? -1 : x > y;
}

static void free_node(void *p)
{
        free(p);
}

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)path;
        (void)ftw;
        if (flag == FTW_NS || flag == FTW_DNR)
                return 0; /* vanished or unreadable while walking: not ours to fail on */
        if (st->st_nlink > 1 && !S_ISDIR(st->st_mode)) {
                ino_t *key = malloc(sizeof(*key));

                if (!key) {
                        cur->err = -ENOMEM;
                        return 1;
                }
                *key = st->st_ino;
                void *found = tsearch(key, &cur->seen, cmp_ino);
                if (!found) {
                        free(key);
                        cur->err = -ENOMEM;
                        return 1;
                }
                if (*(ino_t **)found != key) { /* already counted */
                        free(key);
                        return 0;
                }
        }
        cur->bytes += (uint64_t)st->st_blocks * 512;
        cur->inodes++;
        return 0;
}

int sh_fs_usage_scan(const char *dir, struct sh_fs_usage *ret, struct sh_error *err)
{
        struct walk w = {0};
        struct timespec ts;
        int r;

        memset(ret, 0, sizeof(*ret));
        snprintf(ret->mountpoint, sizeof(ret->mountpoint), "%s", dir);
        clock_gettime(CLOCK_REALTIME, &ts);
        ret->timestamp_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        cur = &w;
        r = nftw(dir, visit, 32, FTW_PHYS | FTW_MOUNT);
        cur = NULL;
        tdestroy(w.seen, free_node);
        if (w.err < 0)
                return sh_err(err, w.err, "measure '%s': out of memory", dir);
        if (r < 0) {
                if (errno == ENOENT)
                        return 0;
                return sh_err(err, -errno, "measure '%s'", dir);
        }
        ret->used_bytes = w.bytes;
        ret->inodes_used = w.inodes;
        return 0;
}
