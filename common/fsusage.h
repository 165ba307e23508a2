#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* A health condition as CRI reports it (RuntimeReady, NetworkReady). */
struct sh_condition {
        bool ok;
        char reason[64];   /* CamelCase reason when !ok, e.g. "NetworkPluginNotReady" */
        char message[512]; /* human detail when !ok */
};

/* Bytes and inodes used below a directory, as ImageFsInfo reports them. */
struct sh_fs_usage {
        char mountpoint[4096]; /* the directory measured */
        uint64_t used_bytes;   /* allocated blocks * 512, hard links counted once */
        uint64_t inodes_used;
        int64_t timestamp_ns; /* CLOCK_REALTIME when measured */
};

/*
 * Walks @dir (without crossing into other filesystems) and fills @ret. A missing @dir
 * counts as empty. Returns 0 or -errno. Blocks for the length of the walk.
 */
int sh_fs_usage_scan(const char *dir, struct sh_fs_usage *ret, struct sh_error *err);
