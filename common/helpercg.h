#pragma once

/*
 * Cgroups of runt's long-lived helpers (docs/operations-systemd.md, "Cgroups").
 *
 * What runtd starts and must outlive it (an LXC container's monitor runt-lxc-shim, the
 * process that starts a pause container, a microVM pod's QEMU and virtiofsd) lives in a
 * cgroup of its own, beside runtd's and never in it, so that killing every process of
 * runtd's cgroup (systemd stopping, restarting or failing the unit) touches no pod.
 *
 * The layout, on every hierarchy runtd is in (v1 controllers, v1 named ones such as
 * name=systemd, the v2 one at /sys/fs/cgroup or /sys/fs/cgroup/unified):
 *
 *   <P>/runtd             runtd itself (sh_helpercg_enter_leaf moves it there at start)
 *   <P>/runt-ctr-<id>     a container's monitor (lxc)
 *   <P>/runt-pod-<id>     a pod's helpers (lxc: the pause container's start; microvm: QEMU
 *                         and virtiofsd)
 *
 * where <P> is the cgroup runtd was started in: the unit's own cgroup under systemd
 * (Delegate=yes makes that subtree runtd's), the shell's cgroup when started by hand. A
 * runtd already in a leaf named "runtd" (restarted by hand from there) takes its parent as
 * <P>. No controller is enabled in <P> (cgroup.subtree_control is left alone), so systemd
 * can still start the next runtd in <P> itself.
 *
 * The helper cgroups one owner (a backend instance) makes are recorded in a file of its own
 * before they are made, so a restarted runtd removes those whose pod or container went while
 * it was away (sh_helpercg_sweep), whichever <P> it runs in now.
 */
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* The environment variable a helper program finds its cgroup dirs in ('\n'-separated). */
#define SH_HELPERCG_ENV "RUNT_HELPER_CGROUP"
/* The name of runtd's own leaf. */
#define SH_HELPERCG_LEAF "runtd"

/*
 * Moves the calling process (every thread: cgroup.procs) into "<its cgroup>/runtd" on every
 * hierarchy where it is not in such a leaf already. Call before any thread starts. Returns
 * the number of hierarchies runtd is in a leaf of its own on now (0: none, helpers then share
 * runtd's cgroup), and fills @err with the first failure (EROFS, EACCES ...) if any, which the
 * caller logs: a hierarchy that failed is left as it was.
 */
int sh_helpercg_enter_leaf(struct sh_error *err);

struct sh_helpercg;

/*
 * The helper cgroups of one owner, recorded in @record (a file, made when needed): one base
 * per hierarchy where the caller is in a "runtd" leaf (none: placement off, make returns no
 * dirs). 0 or -errno. Thread-safe afterwards (a mutex inside).
 */
int sh_helpercg_new(const char *record, struct sh_helpercg **ret, struct sh_error *err);
struct sh_helpercg *sh_helpercg_free(struct sh_helpercg *h);
/* How many hierarchies helpers are placed on (0: they share runtd's cgroups). */
size_t sh_helpercg_count(const struct sh_helpercg *h);

/*
 * Makes "<base>/@name" on every base (recorded first, so a crash leaves no unrecorded one)
 * and returns their paths, '\n'-separated, in *@ret_dirs (malloc'd; NULL when placement is
 * off). @name: one path component of [A-Za-z0-9._-]. 0 or -errno naming the dir.
 */
int sh_helpercg_make(struct sh_helpercg *h, const char *name, char **ret_dirs,
                     struct sh_error *err);

/*
 * Removes every recorded cgroup named @name: waits up to about 1 s for its processes to leave,
 * SIGKILLs those still there, rmdir()s it and drops it from the record. A dir that stays busy
 * stays recorded (the next sweep tries again): -EBUSY. 0 when all are gone (or none was made).
 */
int sh_helpercg_remove(struct sh_helpercg *h, const char *name, struct sh_error *err);

/*
 * Restart recovery: removes the recorded cgroups whose name @keep says false to (their pod or
 * container is gone), as sh_helpercg_remove. Returns how many names it removed.
 */
int sh_helpercg_sweep(struct sh_helpercg *h, bool (*keep)(const char *name, void *data),
                      void *data);

/*
 * A copy of the environment with SH_HELPERCG_ENV=@dirs set (replacing one there), for
 * sh_exec's envp; NULL on ENOMEM. Free with sh_strv_free.
 */
char **sh_helpercg_environ(const char *dirs);

/* ---- the helper's side (helpercg-join.c: libc only, linked into the helper programs) ---- */

/*
 * Opens "<dir>/cgroup.procs" for writing for each dir of the '\n'-separated @dirs (at most
 * @max), before a fork. Returns how many it opened, or -errno (fds opened so far closed).
 */
int sh_helpercg_open_procs(const char *dirs, int *fds, size_t max);
/* Writes "0" to each of @fds: the caller joins those cgroups. Async-signal-safe. 0 or -errno. */
int sh_helpercg_join_fds(const int *fds, size_t n);
/*
 * In a helper program, first thing: joins the cgroups named by $RUNT_HELPER_CGROUP and
 * removes the variable, so nothing the helper starts inherits it. 0 without the variable;
 * -errno with the failing dir in @why.
 */
int sh_helpercg_join_env(char *why, size_t size);
