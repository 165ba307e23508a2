#pragma once

#include <stdint.h>
#include <sys/stat.h>

/*
 * Walks of trees a container or an image controls (issue 14). Their depth and the length
 * of their paths are the owner's choice, so these go by directory fd with an explicit
 * stack on the heap: no recursion, no path string longer than one name, any depth. At
 * most SH_WALK_OPEN_MAX directories are open at once; a deeper one is left and reopened
 * through its child's "..", checked against the device and inode it had. No symlink is
 * followed and no mount point crossed. All may block for the length of the walk and are
 * safe to run concurrently (no shared state).
 */
#define SH_WALK_OPEN_MAX 32

/* What a usage walk found: every inode once (hard links once), blocks * 512. */
struct sh_walk_usage {
        uint64_t bytes;
        uint64_t inodes;
};

/*
 * Measures the directory @name of @dirfd (AT_FDCWD for a path) and all below it on the
 * same filesystem (a mount point below it is left out, as nftw's FTW_MOUNT did), the root
 * included. A tree that changes meanwhile gives what was counted. Returns 0, -ENOENT when
 * @name is missing, -ENOMEM, or -errno of opening @name.
 */
int sh_walk_usage_at(int dirfd, const char *name, struct sh_walk_usage *ret);

/*
 * Removes @name of @dirfd and everything below it; a symlink is removed, not followed.
 * 0 if it did not exist. Stops at the first failure with its -errno; -EBUSY for a mount
 * point below it (not crossed, not removed), -ESTALE when the tree kept moving under it.
 */
int sh_rm_rf_at(int dirfd, const char *name);

/*
 * Called by sh_walk_tree_at for each entry: @dfd its directory (valid during the call, for
 * *at() calls on @name), @path its path from the walk's root ("" for the root itself, whose
 * @dfd and @name are the caller's; any length), @st its lstat. 0 goes on; a -errno stops the
 * walk, which returns it.
 */
typedef int (*sh_walk_fn)(void *ud, int dfd, const char *name, const char *path,
                          const struct stat *st);

/*
 * Visits directory @name of @dirfd and everything below it, each directory before its
 * entries (in readdir order). Unlike the walks above, a tree that changes under it is an
 * error: -ESTALE; a directory on another file system (not crossed) -EXDEV; -ENOTDIR when
 * @name is no directory. 0, -ENOMEM, or -errno of a failed call.
 */
int sh_walk_tree_at(int dirfd, const char *name, sh_walk_fn fn, void *ud);
