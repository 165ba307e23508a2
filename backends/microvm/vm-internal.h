#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "vm.h"

/* Pieces of backends/microvm exposed for the unit tests. */

/* ---- cpio newc writer (initramfs.c) ---- */
struct mv_buf {
        unsigned char *p;
        size_t len, cap;
};
void mv_buf_done(struct mv_buf *b);
/* Appends one entry (mode with its S_IF* type; @data for regular files and symlink targets;
 * @rdev_major/minor for device nodes). Parent dirs are not added. 0 or -ENOMEM. */
int mv_cpio_add(struct mv_buf *b, const char *name, mode_t mode, unsigned rdev_major,
                unsigned rdev_minor, const void *data, size_t len);
/* Appends the TRAILER!!! entry. */
int mv_cpio_finish(struct mv_buf *b);

/* Bumped whenever the initramfs layout changes (part of the cache key). */
#define MV_INITRAMFS_FORMAT "runt-initramfs-1"
/* Measured (see hack/microvm-bench.sh): plain cpio boots faster under TCG. */
#define MV_INITRAMFS_GZIP_DEFAULT 0

/*
 * Resolves module @names (dashes and underscores alike) against the text of a modules.dep
 * (@dep) into paths relative to the modules dir, dependencies first, each once. A name
 * found in @builtin (modules.builtin text, may be NULL) but not in @dep is skipped.
 * -ENOENT (message names it) for a module in neither. @ret is NULL-terminated, malloc'd.
 */
int mv_modules_resolve(const char *dep, const char *builtin, const char *const *names, char ***ret,
                       struct sh_error *err);

/* ---- argv building (vm.c) ---- */
#define MV_TAP_CHILD_FD 3 /* the tap fd's number in QEMU */
int mv_qemu_argv(const struct mv_vm_opts *o, unsigned tsc_khz, char ***ret_argv,
                 struct sh_error *err);
int mv_virtiofsd_argv(const struct mv_vm_opts *o, char ***ret_argv, struct sh_error *err);
/*
 * Runs @argv in a new session as a grandchild, fds 0 /dev/null, 1+2 @log_path, 3 @keep_fd
 * (if >= 0), in the cgroups of @cgroup_dirs ('\n'-separated, helpercg.h; NULL: runtd's).
 * 0 with its pid and a pidfd; safe to call from several threads at once.
 */
int mv_spawn_detached(char **argv, int keep_fd, const char *log_path, const char *cgroup_dirs,
                      pid_t *ret_pid, int *ret_pidfd, struct sh_error *err);
/* The kernel cmdline (malloc'd). */
char *mv_kernel_cmdline(const struct mv_vm_opts *o, unsigned tsc_khz);

/* ---- QMP (qmp.c) ---- */
/* Parses a QMP greeting line: 0 with the QEMU version, -EPROTO when it is not one. */
int mv_qmp_parse_greeting(const char *line, int *ret_major, int *ret_minor, int *ret_micro);
/* Classifies a QMP reply line: 1 "return", -EIO "error" (message into @msg), 0 an event. */
int mv_qmp_parse_reply(const char *line, char *msg, size_t msg_size);
/* Runs @command (e.g. "quit") on the QMP socket at @path, within @timeout_ms. */
int mv_qmp_command(const char *path, const char *command, unsigned timeout_ms,
                   struct sh_error *err);
