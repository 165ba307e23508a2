#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "be.h"
#include "client.h"
#include "error.h"
#include "proto.h"

/*
 * Pods run by runt-agent (prefix ap_): the part of a backend that is the same whatever box
 * the agent runs in (a microVM guest, a Proxmox CT). It keeps the pod objects with their
 * agent client, their containers and what runtd learned of them, handles the agent's events
 * (exits, log chunks: the CRI log writer is here), and implements the container be_ops and
 * the sandbox ops that only talk to the agent. A backend built on it (a "host": microvm/)
 * makes, starts, reaches and destroys the box, through struct ap_host_ops below, and fills
 * the rest of its be_ops table with the ap_* ops.
 *
 * ON DISK, under the host's state dir (ap_be.dir, e.g. <run_dir>/microvm):
 *   <the pod id's first 20 digits>/   the pod dir (ap_pod.dir; short, for the host's
 *                 sockets that must fit sun_path); the host keeps its own files there too
 *   <pod dir>/stopped                 StopPodSandbox ran (so a reopened pod stays stopped)
 *   <pod dir>/c/<ctr>/                per container: meta ("tty stdin_open max_line\n
 *                 log path\n"), started (its start time), exit (the last final status
 *                 runtd learned, so it survives the box), logseq (the last log chunk written)
 *   ctr/<ctr id>                      a symlink to its pod's id
 * runtd after a restart finds pods and containers by these alone (ap_pod_get).
 *
 * LOCKS: ap_be.mu protects the pod table and each pod's refs; ap_pod.mu a pod's containers,
 * its agent pointer and flags. The agent client's I/O thread takes ap_pod.mu in its
 * callbacks, so nothing may wait for an agent answer with ap_pod.mu held.
 */

struct ap_pod;
struct ap_ctr;

/* How long an agent request waits that is not a container's own wait. */
#define AP_CALL_MS 10000

/*
 * Where the agent finds what a container needs, in its own file system (the box's paths),
 * from ap_host_ops.prepare_container. Every string malloc'd; freed by ap_ctr_paths_done.
 */
struct ap_ctr_paths {
        char **lower;     /* one per be_container_spec.layer_dirs[i], the same order */
        char **mount_src; /* one per be_container_spec.mounts[i] */
        char *pod_files;  /* the dir holding the pod's hosts, hostname, resolv.conf */
};

void ap_ctr_paths_done(struct ap_ctr_paths *cp);

/*
 * What a host does for the layer: one const table per backend. Every op is called without
 * ap_pod.mu held unless said otherwise; none may call back into ap_pod_get or
 * ap_pod_agent for the same pod.
 */
struct ap_host_ops {
        /* In messages: the backend ("microvm: no pod ..."), what a pod is ("the pod's VM is
         * not running"), and why a wait for the agent ended when the box went ("QEMU
         * exited"; also a container's message: "the pod's VM ended (QEMU exited)"). */
        const char *name;
        const char *box;
        const char *box_exited;

        /* The size of the host's pod object, which starts with a struct ap_pod. */
        size_t pod_size;
        /* Sets up the host's part of a new pod object (ap.dir is set); nothing on disk and no
         * process. 0 or -ENOMEM. May be NULL. */
        int (*pod_init)(struct ap_pod *p);
        /* Frees the host's part when the object is freed; never stops the box. May be NULL. */
        void (*pod_done)(struct ap_pod *p);

        /*
         * Whether @p's box runs. Cheap and non-blocking (no I/O to a remote API): called
         * often, also with ap_pod.mu held and from the agent client's thread.
         */
        bool (*alive)(struct ap_pod *p);
        /*
         * Whether @p's box is known to have ended (stopped, deleted, its process reaped), as
         * against only unreachable for now (a remote node away, a partition): alive false
         * and gone false is "unknown", which leaves the containers in their last known
         * state; the layer connects again once the box is alive (ap_pod_reconnect, or the
         * next call that needs the agent), and the agent resends the exits runtd has not
         * acknowledged. Rules as alive's. NULL: gone is !alive.
         */
        bool (*gone)(struct ap_pod *p);
        /*
         * Opens a channel to @p's agent, waiting up to @timeout_ms for the box to accept it,
         * and starts a client on it with @cbs and @cb_data (ag_client_new, or its TLS twin),
         * in *@ret. May block that long; one call per pod at a time (the layer's connect lock).
         * The layer holds the new client's events back until it has taken it. -ETIMEDOUT,
         * -ESRCH when the box went meanwhile, or the transport's -errno.
         */
        int (*connect)(struct ap_pod *p, unsigned timeout_ms, const struct ag_client_ops *cbs,
                       void *cb_data, struct ag_client **ret, struct sh_error *err);
        /*
         * After a runtd restart (not for a pod whose StopPodSandbox ran): re-owns @p's box
         * from what the host recorded in the pod dir. 0 when it runs; else -ESRCH, and what
         * the box left running (helpers) is stopped.
         */
        int (*reopen)(struct ap_pod *p, struct sh_error *err);
        /*
         * StopPodSandbox, after the agent was asked to shut down (or could not be:
         * ap_pod.shutdown_acked says which): makes sure the box and its helpers are gone,
         * also when it had died by itself. Blocks a few seconds at most. 0 once gone.
         */
        int (*stop)(struct ap_pod *p, struct sh_error *err);
        /*
         * RemovePodSandbox, the box stopped: removes the box if it outlives a stop (a remote
         * CT) and the host's own resources (network plumbing, files, mounts). 0 when the
         * layer may then remove the pod dir. -EBUSY to keep the dir while the pod is removed
         * (something could not be undone, and removing through it would harm). Any other
         * -errno, with @err: it cannot be done now (the box's remote host unreachable); the
         * remove fails with that error and the pod stays as it was (in the table, its dir
         * and everything the host keeps), so the next RemovePodSandbox tries again.
         */
        int (*teardown)(struct ap_pod *p, struct sh_error *err);

        /*
         * Before CTR_CREATE: makes image layers (be_container_spec.layer_dirs) and CRI mounts
         * (.mounts, a missing source dir made) of container @bc reachable from the box and
         * says where the agent finds them, and the pod's files. On failure what it made
         * stays, for release_container. -errno with the reason (a host that cannot carry a
         * mount refuses it here).
         */
        int (*prepare_container)(struct ap_pod *p, const struct be_container *bc,
                                 struct ap_ctr_paths *ret, struct sh_error *err);
        /* Undoes prepare_container for container @id, as far as it got. Never fails. */
        void (*release_container)(struct ap_pod *p, const char *id);
};

/*
 * The layer's state of one backend instance. be->priv of a backend built on it points at
 * this struct, which the backend's own state embeds as its first member.
 */
struct ap_be {
        const struct ap_host_ops *host;
        char *dir;          /* the host's state dir (see ON DISK) */
        pthread_mutex_t mu; /* pods, and every pod's refs */
        struct ap_pod **pods;
        size_t n_pods;
        /* One pod reopening at a time: one client per agent. */
        pthread_mutex_t reopen_mu;
};

/* A pod: the first member of the host's pod object (ap_host_ops.pod_size). */
struct ap_pod {
        char id[65];
        char *dir; /* <ap_be.dir>/<id:20> */
        struct ap_be *be;
        int refs;           /* under ap_be.mu */
        pthread_mutex_t mu; /* ctrs, n_ctrs, agent, connecting, dead, stopped, shutdown_acked,
                             ready_seen */
        pthread_cond_t changed;
        struct ag_client *agent; /* connected once ap_pod_connect returned 0 */
        bool dead;               /* the box is gone (host.gone): containers exited */
        bool stopped;            /* StopPodSandbox ran */
        bool shutdown_acked;     /* its agent answered StopPodSandbox's SHUTDOWN */
        unsigned ready_seen;     /* READY events the agent sent */
        struct ap_ctr **ctrs;
        size_t n_ctrs;

        /* The agent's connection being set up (ap_pod_connect); one at a time. */
        struct ag_client *connecting;
        bool connect_gate; /* the client host.connect is making: its events wait */
        pthread_mutex_t connect_mu;
        /* Clients a reconnection replaced: callers may still hold them (p->agent is read
         * unlocked after ap_pod_agent), so they are freed with the pod. */
        struct ag_client **retired;
        size_t n_retired;
};

/* Sets up @ab for @host with state dir @dir (copied); nothing on disk. 0 or -ENOMEM. */
int ap_be_init(struct ap_be *ab, const struct ap_host_ops *host, const char *dir);
/* Makes the state dir and its ctr/ (0700). 0 or -errno. */
int ap_be_mkdir(struct ap_be *ab);
/* Drops every pod object (the boxes run on: runtd re-owns them when it starts again) and
 * frees what ap_be_init set up. Safe on a zeroed struct. */
void ap_be_fini(struct ap_be *ab);

/* A new pod object for @id, not yet in the table; nothing on disk. NULL: out of memory. */
struct ap_pod *ap_pod_new(struct ap_be *ab, const char *id);
/* Makes the pod's c/ (its dir made too). 0 or -errno with a message. */
int ap_pod_mkdir(struct ap_pod *p, struct sh_error *err);
/* Adds @p (from ap_pod_new, its box running) to the table, which takes its reference.
 * -ENOMEM (then @p is still the caller's). */
int ap_pod_add(struct ap_be *ab, struct ap_pod *p);
/* Frees a pod object never added (its client too); its box and dir are not touched. */
void ap_pod_free(struct ap_pod *p);

/*
 * Pod @id, held (ap_pod_put): from the table, or re-opened from its pod dir after a
 * restart (its containers loaded, the box re-owned, the agent asked what happened). -ENOENT.
 */
int ap_pod_get(struct ap_be *ab, const char *id, struct ap_pod **ret, struct sh_error *err);
void ap_pod_put(struct ap_pod *p);
/* The pod of container @ctr_id (ctr/<id>), held. -ENOENT. */
int ap_ctr_pod(struct ap_be *ab, const char *ctr_id, struct ap_pod **ret, struct sh_error *err);

/* ap_host_ops.alive of @p. */
bool ap_pod_alive(struct ap_pod *p);
/* ap_host_ops.gone of @p (!alive without one). */
bool ap_pod_gone(struct ap_pod *p);
/*
 * When @p's box is gone (ap_pod_gone) and @p not yet dead: @p dead, its containers EXITED
 * with the reason. The channel's close calls it; a host calls it too when it learns of the
 * end later than that (the box's end seen after the channel closed). Takes @p's lock.
 */
void ap_pod_box_ended(struct ap_pod *p);
/*
 * When @p's box runs (not stopped, not gone, alive) and its agent's connection is down,
 * connects again within @timeout_ms and asks every container's status (the agent resends the
 * exits runtd has not acknowledged, too). 0 once connected; -EINPROGRESS when another
 * thread is connecting; -EBUSY when the box does not run; else the connection's error.
 */
int ap_pod_reconnect(struct ap_pod *p, unsigned timeout_ms, struct sh_error *err);
/*
 * Connects to @p's agent (host.connect) and says hello once its READY came, all within
 * @timeout_ms; the agent then resends the exits and log chunks runtd has not taken. Then
 * p->agent is that client (one it replaced is kept until the pod is freed). Blocks.
 */
int ap_pod_connect(struct ap_pod *p, unsigned timeout_ms, struct sh_error *err);
/* p->agent, connected (reconnecting if it dropped); -EBUSY when the box is not running. */
int ap_pod_agent(struct ap_pod *p, struct sh_error *err);
/* The agent's stats of container @id, or of the whole pod when @id is NULL. */
int ap_pod_stats(struct ap_pod *p, const char *id, struct ag_stats *ret, struct sh_error *err);
void ap_cg_from_ag(const struct ag_stats *a, struct sh_cg_stats *cg);

/*
 * be_ops implementations for a backend built on this layer (be->priv: its struct ap_be).
 * The sandbox ones: stop (agent SHUTDOWN, host.stop, containers exited), remove (stop,
 * host.teardown, the pod dir), running, dial (a port in the pod, through the agent), and
 * the agent's part of sandbox_stats (cgroup figures and timestamp; no interfaces).
 */
int ap_sandbox_stop(struct be *be, const char *id, unsigned timeout_s, struct sh_error *err);
int ap_sandbox_remove(struct be *be, const char *id, struct sh_error *err);
int ap_sandbox_running(struct be *be, const char *id, bool *ret, struct sh_error *err);
int ap_sandbox_dial(struct be *be, const char *id, unsigned port, int *ret_fd,
                    struct sh_error *err);
int ap_sandbox_stats(struct be *be, const struct be_sandbox_stats_req *req,
                     struct be_sandbox_stats *ret, struct sh_error *err);

int ap_container_create(struct be *be, const struct be_container *c, struct sh_error *err);
int ap_container_start(struct be *be, const char *id, struct sh_error *err);
int ap_container_stop(struct be *be, const char *id, int signal, unsigned timeout_s,
                      struct sh_error *err);
int ap_container_remove(struct be *be, const char *id, struct sh_error *err);
int ap_container_status(struct be *be, const char *id, struct be_ctr_status *ret,
                        struct sh_error *err);
int ap_container_update(struct be *be, const char *id, const struct be_resources *res,
                        struct sh_error *err);
int ap_container_reopen_log(struct be *be, const char *id, struct sh_error *err);
int ap_exec_sync(struct be *be, const char *id, const struct be_exec_sync_req *req,
                 struct be_exec_result *ret, struct sh_error *err);
int ap_exec_stream(struct be *be, const char *id, const char *const *argv, bool tty,
                   bool want_stdin, struct be_exec_stream *ret, struct sh_error *err);
int ap_container_attach(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
int ap_container_stats(struct be *be, const char *id, struct be_ctr_stats *ret,
                       struct sh_error *err);
int ap_container_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
int ap_container_fs_usage(struct be *be, const char *id, struct sh_fs_usage *ret,
                          struct sh_error *err);

/*
 * RuntimeDefault for the agent, for a container holding capabilities @caps (bit n:
 * be_all_caps[n]; Docker's profile allows more to some): the LXC policy text as OCI JSON.
 */
int ap_seccomp_default_json(uint64_t caps, char **ret);
