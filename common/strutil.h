#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* malloc'd printf; returns NULL on ENOMEM. */
char *sh_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Joins two path parts with exactly one '/', malloc'd; NULL on ENOMEM. */
char *sh_path_join(const char *a, const char *b);

/* Creates @path and its parents with @mode (like mkdir -p). Returns 0 or -errno. */
int sh_mkdir_p(const char *path, unsigned mode);

/*
 * Writes @len bytes to @path atomically with exactly @mode (temp file in the same dir, fsync,
 * rename, fsync of the dir). Readers see the old or the new content, never a mix. 0 or -errno.
 */
int sh_write_file_atomic(const char *path, const void *buf, size_t len, unsigned mode);

/*
 * sh_write_file_atomic without the fsyncs: atomic for readers and across a crash of the
 * writer, not across a power loss. For files nothing reads after a reboot.
 */
int sh_write_file_replace(const char *path, const void *buf, size_t len, unsigned mode);

/*
 * Reads a whole file (at most @max bytes) into a NUL-terminated malloc'd buffer (caller frees);
 * @ret_len may be NULL. Returns 0, -EFBIG when the file is larger than @max, or -errno.
 */
int sh_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len);
/*
 * Copies the regular file @src to a new @dst (replaced if there) with @mode, within one file
 * system or across two. 0 or -errno (-EISDIR, -EINVAL for a @src not a regular file).
 */
int sh_copy_file(const char *src, const char *dst, unsigned mode);

/*
 * Opens @rel below the directory @base with @flags, following no symlink on the way (each
 * component a real directory, the last not a link): an image's files can be read without
 * its symlinks leading out of it. Returns the fd or -errno (-ENOTDIR, -ELOOP for a link).
 */
int sh_open_nofollow(const char *base, const char *rel, int flags);

/*
 * Removes @path and everything below it, not crossing mounts, at any depth (by directory fd:
 * sh_rm_rf_at in fswalk.h). 0 if it did not exist, else -errno of the first failure.
 */
int sh_rm_rf(const char *path);

/*
 * Finds runt's helper program @name (runt-unpack, runt-pause ...): beside the running
 * binary, else @fallback (where the build put it). Fills @out; -ENOENT when neither is
 * executable (@out then holds the fallback, for messages).
 */
int sh_find_helper(const char *name, const char *fallback, char *out, size_t size);

/*
 * Walks the comma-separated list at *@cursor (an HTTP header value such as
 * "v4.channel.k8s.io, channel.k8s.io"): true with the next non-empty element, spaces and
 * tabs around it trimmed, in *@ret / *@ret_len (not NUL-terminated); false at the end.
 * Start with *@cursor = the list (NULL is empty).
 */
bool sh_list_next(const char **cursor, const char **ret, size_t *ret_len);

/* Monotonic clock in nanoseconds. */
unsigned long long sh_now_ns(void);

static inline bool sh_streq(const char *a, const char *b)
{
        return a && b && __builtin_strcmp(a, b) == 0;
}
