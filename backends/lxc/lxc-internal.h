#pragma once

/* What the lxc backend's files (lxc.c: sandboxes, container.c: containers) share. */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lxc/lxccontainer.h>

#include "be.h"
#include "cgroup.h"
#include "cleanup.h"

struct sh_helpercg;

struct lxc_be {
        char *lxcpath;           /* where runt's LXC container dirs live */
        char *pause_root;        /* the shared sandbox rootfs: /pause and empty mount points */
        char *cgroup_base;       /* cgroup dir sandboxes go below when the kubelet gives none */
        char *seccomp_default;   /* RuntimeDefault for the default caps (older configs name it) */
        char *containers_dir;    /* <root>/containers: the containers' writable layers */
        long own_oom_score_adj;  /* runtd's own: root without CAP_SYS_RESOURCE cannot go below */
        char *cg_created;        /* the cgroup parents runt created, one per line */
        struct sh_cg_host cg;    /* the host's cgroups, as found at init (v1 or v2) */
        pthread_mutex_t cg_lock; /* cg_created, and sandbox starts against parent removal */
        /*
         * Looks against removals: liblxc opens (and creates, with its directory) a
         * container's lxc.log whenever anyone loads its config, so a look that loads it while
         * the directory is removed brings the directory back. Removals hold it exclusively
         * around their rm -rf; lb_look holds it shared while it loads.
         */
        pthread_rwlock_t rm_lock;
        /* The cgroups of the helpers that outlive runtd: runt-ctr-<id>, runt-pod-<id>. */
        struct sh_helpercg *hcg;
};

/*
 * lxc_container_new for a look at container or sandbox @id (watches, status, stats):
 * -ENOENT when its config is gone (or going), -EIO when liblxc could not open it (EMFILE,
 * ENOMEM: not a sign that it is gone). Never recreates a removed directory.
 */
int lb_look(struct lxc_be *lb, const char *id, struct lxc_container **ret);
/*
 * sh_rm_rf of @dir, a container's or sandbox's LXC dir, with no look loading it meanwhile;
 * liblxc's lock file of the container goes with it.
 */
int lb_rm_dir(struct lxc_be *lb, const char *dir);

static inline void lb_put(struct lxc_container **c)
{
        if (*c)
                lxc_container_put(*c);
        *c = NULL;
}
#define _cleanup_lxc_ _cleanup_(lb_put)

/* The last error LXC recorded, for messages. */
const char *lb_why(struct lxc_container *c);
/* The first ERROR line of @dir/lxc.log, what LXC says nowhere else. */
void lb_log_tail(const char *dir, char *out, size_t size);
/* set_config_item with an error naming the key. */
int lb_set(struct lxc_container *c, const char *key, const char *value, struct sh_error *err);
/* The config keys sandboxes and containers share: mounts, /dev, no console, log, cgroups. */
int lb_set_common(struct lxc_container *c, const char *mount_auto, const char *pty_max,
                  const char *dir, const char *cg, const char *cgm, struct sh_error *err);
/*
 * Sets pids.max (lxc.cgroup.pids.max, or lxc.cgroup2.pids.max on v2) to @limit, replacing
 * what was set; 0 sets nothing. A host without the pids controller gets no limit (nothing to
 * set it on), not an error.
 */
int lb_set_pids_max(struct lxc_be *lb, struct lxc_container *c, unsigned limit,
                    struct sh_error *err);
/* The prefix of liblxc's cgroup keys on this host: "lxc.cgroup" (v1), "lxc.cgroup2" (v2). */
static inline const char *lb_cgroup_key(const struct lxc_be *lb)
{
        return lb->cg.version == SH_CG_V2 ? "lxc.cgroup2" : "lxc.cgroup";
}
/*
 * Adds a device cgroup rule ("c 1:3 rwm", "a") to @c's config, @kind "allow" or "deny": the
 * devices controller on v1, the BPF program liblxc attaches on v2.
 */
int lb_set_device_rule(struct lxc_be *lb, struct lxc_container *c, const char *kind,
                       const char *rule, struct sh_error *err);
/* A container's config and its backend, for the cgroup item callbacks. */
struct cg_config {
        struct lxc_be *lb;
        struct lxc_container *c;
};
/* "<cgroup_parent or runt>/<kind><id>", relative to each hierarchy's root (malloc'd). */
char *lb_cgroup_dir(struct lxc_be *lb, const struct be_sandbox_spec *pod, const char *kind,
                    const char *id);
/*
 * Writes the limits of @res into the live cgroup @rel (relative to each hierarchy's root;
 * the host's version's file names, v1 memsw before memory when both are raised). 0 or
 * -errno naming the file.
 */
int lb_cgroup_write_limits(struct lxc_be *lb, const char *rel, const struct be_resources *res,
                           struct sh_error *err);
/* Pod-level limits on the pod's cgroup (sandbox-update.c; be_ops.sandbox_update). */
int lb_sandbox_update(struct be *be, const char *id, const struct be_resources *res,
                      struct sh_error *err);
/* Writes @value to the cgroup file @path with one write(). 0 or -errno. */
int lb_write_cgroup_file(const char *path, const char *value);
/* Removes cgroup @rel on every mounted hierarchy, waiting a moment while it is busy. */
void lb_rm_cgroup(const char *rel);
/* rmdir()s cgroup @rel on every hierarchy without waiting: true when it is gone from all. */
bool lb_rm_cgroup_empty(const char *rel);
/* <lxcpath>/<id> (malloc'd). */
char *lb_dir(struct lxc_be *lb, const char *id);
/*
 * Makes the cgroup "runt-<kind>-<id>" beside runtd's (helpercg.h) and gives the environment
 * a helper program joins it with in *@ret_envp (NULL: placement is off, inherit runtd's).
 */
int lb_helper_cgroup(struct lxc_be *lb, const char *kind, const char *id, char ***ret_envp,
                     struct sh_error *err);
/* Removes the cgroup "runt-<kind>-<id>" (what is left in it is killed). Never fails. */
void lb_helper_cgroup_remove(struct lxc_be *lb, const char *kind, const char *id);
/*
 * Runs helper @argv with @envp (60 s at most). 0; -EIO when it exited non-zero, with its
 * stderr (trailing newlines cut, "" for none) in @why; or sh_exec's error.
 */
int lb_exec_helper(const char *const *argv, char **envp, char *why, size_t size,
                   struct sh_error *err);

/* Container ops (container.c). */
int lb_container_create(struct be *be, const struct be_container *c, struct sh_error *err);
int lb_container_start(struct be *be, const char *id, struct sh_error *err);
int lb_container_stop(struct be *be, const char *id, int signal, unsigned timeout_s,
                      struct sh_error *err);
int lb_container_remove(struct be *be, const char *id, struct sh_error *err);
int lb_container_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
int lb_container_status(struct be *be, const char *id, struct be_ctr_status *ret,
                        struct sh_error *err);
int lb_container_update(struct be *be, const char *id, const struct be_resources *res,
                        struct sh_error *err);
int lb_container_reopen_log(struct be *be, const char *id, struct sh_error *err);
int lb_exec_sync(struct be *be, const char *id, const struct be_exec_sync_req *req,
                 struct be_exec_result *ret, struct sh_error *err);
int lb_exec_stream(struct be *be, const char *id, const char *const *argv, bool tty,
                   bool want_stdin, struct be_exec_stream *ret, struct sh_error *err);
int lb_container_attach(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
/* Stats (stats.c). */
int lb_container_stats(struct be *be, const char *id, struct be_ctr_stats *ret,
                       struct sh_error *err);
int lb_container_fs_usage(struct be *be, const char *id, struct sh_fs_usage *ret,
                          struct sh_error *err);
int lb_sandbox_stats(struct be *be, const struct be_sandbox_stats_req *req,
                     struct be_sandbox_stats *ret, struct sh_error *err);

/*
 * The container files runt-lxc-shim and lb_container_create leave for runtd (container.c's
 * header comment lists them), parsed from their text.
 */
/* A NUL-separated field file ("start", "process") of @len bytes into a NULL-terminated
 * vector (caller frees with sh_strv_free); text after the last NUL is ignored. 0, -ENOMEM. */
int lb_fields_parse(const char *buf, size_t len, char ***ret);
/* "exit": "<code> <oom> <started_ns> <finished_ns>". Fills @ret's exit state and reason;
 * false (@ret untouched) for anything else. */
bool lb_exit_parse(const char *text, struct be_ctr_status *ret);
/* "started": "<init pid> <started_ns> [<starttime ticks>]"; the starttime is required when
 * @ret_starttime is given. Out-params are written only on success. */
bool lb_started_parse(const char *text, int *ret_pid, long long *ret_started_ns,
                      unsigned long long *ret_starttime);
