#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "be-internal.h"
#include "client.h"
#include "proto.h"
#include "vm.h"

/*
 * The microvm backend's own state (backends/microvm/microvm.c, mv-ctr.c, mv-log.c).
 *
 * A pod is one QEMU microvm. Everything of it lives in <run_dir>/microvm/<the id's first 20
 * digits>/ (its sockets must fit sun_path):
 *   qemu.pid, qmp.sock, agent.sock, vfs.sock, console.log   the VM (vm.c)
 *   share/        the one directory virtiofsd serves to the guest (tag "runt"), where the
 *                 guest sees it at MV_GUEST_SHARE: pod/ is a bind of the pod's files
 *                 (hosts, resolv.conf, hostname), c/<ctr>/l<N> binds of the image layers
 *                 and c/<ctr>/m<N> binds of the CRI mounts, made before CTR_CREATE
 *   c/<ctr>/      per container: meta (log path, tty...), exit (the last status runtd
 *                 learned, so it survives the VM), logseq (the last log chunk written)
 * and <run_dir>/microvm/ctr/<ctr id> is a symlink to its pod's id.
 */

#define MV_GUEST_SHARE "/run/runt/share"

struct mv_be;
struct mv_pod;

struct mv_ctr {
        char id[65];
        int refs;            /* under the pod's mu: its list's, and each call's that holds it */
        struct mv_pod *pod;  /* borrowed: the pod outlives its containers' entries */
        struct ag_status st; /* what runtd knows; st.state AG_ST_* */
        bool exited;         /* st holds a final status */
        int watch_fd;        /* eventfd: written when it exited; -1 before the first watch */
        /* logs: written by the agent client's thread only */
        char *log_path; /* "" none */
        unsigned log_max_line;
        int log_fd;
        int64_t log_seq;
        int seq_fd;
        bool tty, stdin_open;
        bool partial[3]; /* the last chunk of stdout/stderr ended mid-line */
};

struct mv_pod {
        char id[65];
        char *dir, *share;
        struct mv_be *be;
        int refs;           /* under mv_be.mu */
        pthread_mutex_t mu; /* ctrs, n_ctrs, agent, dead */
        pthread_cond_t changed;
        struct mv_vm vm;
        struct ag_client *agent;
        bool dead;           /* the VM is gone: containers exited */
        bool stopped;        /* StopPodSandbox ran */
        unsigned ready_seen; /* READY events the agent sent */
        struct mv_ctr **ctrs;
        size_t n_ctrs;

        /* The agent's connection being set up (agent_connect); one at a time. */
        struct ag_client *connecting;
        pthread_mutex_t connect_mu;
        /* Clients a reconnection replaced: callers may still hold them (p->agent is read
         * unlocked after mv_pod_agent), so they are freed with the pod. */
        struct ag_client **retired;
        size_t n_retired;
};

struct mv_be {
        char *qemu, *kernel, *kver, *modules_dir, *initramfs, *accel, *virtiofsd, *agent_bin;
        char *cmdline;
        unsigned memory_mib, vcpus, boot_timeout_ms;
        bool console; /* the guest's console to console.log (a slower boot) */
        char *dir;    /* <run_dir>/microvm */
        char *cache_dir;
        pthread_mutex_t mu; /* pods */
        struct mv_pod **pods;
        size_t n_pods;

        /* One pod_reopen at a time: one client per agent. */
        pthread_mutex_t reopen_mu;
};

/* microvm.c */
int mv_pod_get(struct mv_be *mb, const char *id, struct mv_pod **ret, struct sh_error *err);
void mv_pod_put(struct mv_pod *p);
int mv_ctr_pod(struct mv_be *mb, const char *ctr_id, struct mv_pod **ret, struct sh_error *err);
/* Is @p's QEMU running? */
bool mv_pod_vm_alive(struct mv_pod *p);
/* The agent of @p, connected; -EBUSY when the VM is gone. */
int mv_pod_agent(struct mv_pod *p, struct sh_error *err);
struct mv_ctr *mv_ctr_find(struct mv_pod *p, const char *id);

/*
 * Binds @src at @rel below @share (made: a dir, or an empty file for a file), read-only when
 * @ro; never following a symlink below @share (the guest writes there).
 */
int mv_bind(const char *share, const char *rel, const char *src, bool ro, struct sh_error *err);
/* Lazily unmounts every mount at or below @dir, deepest first. */
void mv_umount_below(const char *dir);
/* True when nothing is mounted at or below @dir. */
bool mv_no_mounts_below(const char *dir);
/* The agent's stats of container @id, or of the whole pod when @id is NULL. */
int mv_agent_stats(struct mv_pod *p, const char *id, struct ag_stats *ret, struct sh_error *err);
void mv_cg_from_ag(const struct ag_stats *a, struct sh_cg_stats *cg);

/* mv-ctr.c */
int mv_container_create(struct be *be, const struct be_container *c, struct sh_error *err);
int mv_container_start(struct be *be, const char *id, struct sh_error *err);
int mv_container_stop(struct be *be, const char *id, int signal, unsigned timeout_s,
                      struct sh_error *err);
int mv_container_remove(struct be *be, const char *id, struct sh_error *err);
int mv_container_status(struct be *be, const char *id, struct be_ctr_status *ret,
                        struct sh_error *err);
int mv_container_update(struct be *be, const char *id, const struct be_resources *res,
                        struct sh_error *err);
int mv_container_reopen_log(struct be *be, const char *id, struct sh_error *err);
int mv_exec_sync(struct be *be, const char *id, const struct be_exec_sync_req *req,
                 struct be_exec_result *ret, struct sh_error *err);
int mv_exec_stream(struct be *be, const char *id, const char *const *argv, bool tty,
                   bool want_stdin, struct be_exec_stream *ret, struct sh_error *err);
int mv_container_attach(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
int mv_container_stats(struct be *be, const char *id, struct be_ctr_stats *ret,
                       struct sh_error *err);
int mv_container_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
int mv_container_fs_usage(struct be *be, const char *id, struct sh_fs_usage *ret,
                          struct sh_error *err);
/* Loads what runtd recorded of container @id of @p (meta, exit, logseq) into a new entry. */
struct mv_ctr *mv_ctr_load(struct mv_pod *p, const char *id);
void mv_ctr_free(struct mv_ctr *c);
/* Records @st as @c's status; a final one is written to c/<id>/exit and wakes watchers. */
void mv_ctr_set_status(struct mv_ctr *c, const struct ag_status *st);
/* The VM is gone: every container that has not exited did, with @why. */
void mv_pod_all_exited(struct mv_pod *p, const char *why);

/* mv-log.c: a chunk of a container's output, in the CRI log format. */
void mv_log_chunk(struct mv_ctr *c, int64_t seq, int chan, int64_t time_ns, const uint8_t *data,
                  size_t len, bool partial);
int mv_log_open(struct mv_ctr *c);

/*
 * RuntimeDefault for the agent, for a container holding capabilities @caps (bit n:
 * be_all_caps[n]; Docker's profile allows more to some): the LXC policy text as OCI JSON.
 */
int mv_seccomp_default_json(uint64_t caps, char **ret);
