#pragma once

#include "config.h"
#include "error.h"
#include "fsusage.h"

/*
 * The pod manager: sandbox and container state machines over the backends, the state
 * store, name reservation and restart recovery. Thread-safe.
 */
struct pod_mgr;

/*
 * Creates the state and root dirs, opens the state store and starts one backend instance
 * per configured RuntimeClass handler. A handler whose backend fails to start is kept,
 * unavailable, with its error (see pod_mgr_handler_error); only a store failure fails this.
 * Borrows @cfg for the manager's lifetime.
 */
int pod_mgr_new(const struct runt_config *cfg, struct pod_mgr **ret, struct sh_error *err);
/*
 * As pod_mgr_new, and each handler's backend times its ops into @metrics (borrowed; it must
 * outlive the manager; NULL: not measured).
 */
struct sh_metrics;
int pod_mgr_new_with_metrics(const struct runt_config *cfg, struct sh_metrics *metrics,
                             struct pod_mgr **ret, struct sh_error *err);
struct pod_mgr *pod_mgr_free(struct pod_mgr *pm);

/* The state store's file (<state_dir>/runt.db), for the managers that open it too. */
const char *pod_mgr_store_path(struct pod_mgr *pm);

/* NULL when handler @name started, else why not (borrowed); "" means the default handler. */
const char *pod_mgr_handler_error(struct pod_mgr *pm, const char *name);

/* RuntimeReady: the store is open and the default handler's backend is ready. No blocking. */
void pod_mgr_condition(struct pod_mgr *pm, struct sh_condition *ret);

/* Bytes and inodes of the containers' writable layers. Walks a tree: may block. */
int pod_mgr_fs_usage(struct pod_mgr *pm, struct sh_fs_usage *ret, struct sh_error *err);

/* A JSON summary of the handlers and their backends for Status verbose info (malloc'd). */
char *pod_mgr_info_json(struct pod_mgr *pm);

/* ------------------------------------------------------------------ pod sandboxes */

#include "be.h"

struct net_mgr;

/* Lets the manager set up pod networking (borrowed; set before serving). */
void pod_mgr_set_net(struct pod_mgr *pm, struct net_mgr *net);

/* After a restart: undoes sandboxes a crash left half-created. Call once, before serving. */
int pod_mgr_recover(struct pod_mgr *pm, struct sh_error *err);

enum pod_state {
        POD_CREATING = 0, /* being set up (or left half-made by a crash) */
        POD_READY = 1,
        POD_NOTREADY = 2,
};

/* A sandbox as the store knows it. Owned; pod_sandbox_info_free. */
struct pod_sandbox_info {
        char *id;
        struct be_sandbox_spec spec;
        enum pod_state state;
        long long created_ns; /* CLOCK_REALTIME */
        char **ips;           /* NULL-terminated, IPv4 first; empty for host network */
        char *netns;          /* "" for host network */
};
struct pod_sandbox_info *pod_sandbox_info_free(struct pod_sandbox_info *i);
void pod_sandbox_info_list_free(struct pod_sandbox_info **l);

/*
 * RunPodSandbox: reserves the pod's name, creates its network namespace and runs CNI (not
 * for host network), writes its resolv.conf/hostname/hosts, and has the handler's backend
 * create the sandbox. *@ret_id is malloc'd. -EINVAL for an unknown handler or bad spec,
 * -EEXIST naming the sandbox that holds the name, -EAGAIN when the handler's backend is not
 * available. A failure undoes every step and releases the name. Blocks (CNI, backend).
 */
int pod_sandbox_run(struct pod_mgr *pm, const struct be_sandbox_spec *spec, char **ret_id,
                    struct sh_error *err);

/*
 * StopPodSandbox: the backend stops the sandbox, the network is torn down (CNI DEL even when
 * the namespace is gone). Idempotent. Waits for calls on the pod's containers to end (the
 * pod's lock, exclusive); other pods are not held up.
 */
int pod_sandbox_stop(struct pod_mgr *pm, const char *id, struct sh_error *err);

/* RemovePodSandbox: stops it if needed and removes everything. Unknown id: 0. Locks as Stop. */
int pod_sandbox_remove(struct pod_mgr *pm, const char *id, struct sh_error *err);

/* The sandbox @id names (an id or a unique prefix). -ENOENT when there is none. */
int pod_sandbox_status(struct pod_mgr *pm, const char *id, struct pod_sandbox_info **ret,
                       struct sh_error *err);

/*
 * Why not-ready sandbox @i does not run, when its backend knows (its node unreachable): a
 * phrase in @buf, 0; -ENOENT otherwise. No I/O.
 */
int pod_sandbox_reason(struct pod_mgr *pm, const struct pod_sandbox_info *i, char *buf,
                       size_t size);

/* ListPodSandbox's filter; every field optional. */
struct pod_sandbox_filter {
        const char *id; /* an id or a prefix of one */
        bool has_state;
        enum pod_state state;
        const struct be_kv *labels; /* all must match */
        size_t n_labels;
};

/* Sandboxes matching @f (NULL: all), oldest first; *@ret NULL-terminated. From memory. */
int pod_sandbox_list(struct pod_mgr *pm, const struct pod_sandbox_filter *f,
                     struct pod_sandbox_info ***ret, size_t *ret_n, struct sh_error *err);
/*
 * Calls @fn on every sandbox matching @f (NULL: all), oldest first, without copying: @i is
 * valid during the call only, and @fn must not call back into the pod manager (the view is
 * held shared). A negative return of @fn stops the walk and is returned. ListPodSandbox's
 * path: no copy, no store, no backend.
 */
int pod_sandbox_each(struct pod_mgr *pm, const struct pod_sandbox_filter *f,
                     int (*fn)(const struct pod_sandbox_info *i, void *data), void *data);

/*
 * UpdatePodSandboxResources (resources.c): applies the pod-level limits @res (the sum of its
 * containers') plus @overhead (the RuntimeClass's pod overhead, added as the kubelet sizes a
 * pod cgroup) to ready sandbox @id (an id or unique prefix) through its backend. -ENOENT
 * unknown, -EALREADY not ready, -EOPNOTSUPP when its backend cannot (no sandbox_update, or
 * the pod has no cgroup of its own). Holds the pod's lock shared; blocks on the backend.
 */
int pod_sandbox_update_resources(struct pod_mgr *pm, const char *id, const struct be_resources *res,
                                 const struct be_resources *overhead, struct sh_error *err);

/*
 * *@ret_fd: a connected socket to TCP @port on ready pod @id's loopback, from its backend,
 * for a pod whose netns runtd cannot dial through (a VM). -EOPNOTSUPP (no message) when
 * entering the pod's netns reaches the port: the caller dials there. Blocks for the dial.
 */
int pod_sandbox_dial(struct pod_mgr *pm, const char *id, unsigned port, int *ret_fd,
                     struct sh_error *err);

/* ------------------------------------------------------------------ containers */

/*
 * The image a container runs, as CreateContainer's caller resolved it (cri/ asks imagemgr).
 * Borrowed for the call; strvs NULL-terminated, NULL when the image config has none.
 */
struct pod_image {
        const char *id;          /* "sha256:..." */
        char *const *layer_dirs; /* base first, at least one */
        char *const *chain_ids;  /* parallel to layer_dirs */
        char *const *entrypoint; /* NULL: unset */
        char *const *cmd;        /* NULL: unset */
        char *const *env;        /* "K=V" */
        const char *user;        /* "", "uid", "uid:gid", "name", "name:group" */
        const char *working_dir; /* "" when unset */
        const char *stop_signal; /* "" when unset */
        const char *name;        /* its first tag ("" none), for ContainerStatus.image */
        const char *digest_ref;  /* its first repo@digest ("" none): ContainerStatus.image_ref */
};

/*
 * CreateContainer: @spec holds everything of the CRI ContainerConfig except the process,
 * which podmgr resolves from the request's fields below and the image (entrypoint/cmd as
 * Docker and containerd merge them, env, working dir, user by number or by name in the
 * image's /etc/passwd, groups from its /etc/group). Borrowed for the call.
 */
struct pod_ctr_request {
        const char *sandbox_id;
        struct be_container_spec *spec; /* argv, env, cwd, uid, gid, groups, layer_dirs,
                                           image_id and stop_signal are filled by podmgr */
        char *const *command;           /* NULL-terminated, may be empty */
        char *const *args;
        char *const *envs; /* "K=V" from the request, after the image's */
        const char *working_dir;
        bool has_uid;
        long long uid;
        bool has_gid;
        long long gid;
        const char *username; /* "" when not given */
        const long long *supplemental_groups;
        size_t n_supplemental_groups;
        const char *log_path; /* relative to the sandbox's log directory; "" for none */
        struct pod_image image;
};

/*
 * Reserves the container's name in its pod, records it, resolves its process and has the
 * sandbox's backend define it. -ENOENT: no such sandbox; -EINVAL: not ready or a bad spec;
 * -EEXIST naming the holder of the name. A failure leaves nothing and frees the name.
 */
int pod_container_create(struct pod_mgr *pm, const struct pod_ctr_request *req, char **ret_id,
                         struct sh_error *err);

/*
 * StartContainer: -EINVAL unless created and its pod ready. A start that fails records
 * StartError (exit 128). Create, Start, Stop, Remove and Update of one container run one at a
 * time, and each holds its pod's lock shared (so a pod Stop or Remove waits for them); one
 * that finds its container removed meanwhile returns -ENOENT (Remove: 0).
 */
int pod_container_start(struct pod_mgr *pm, const char *id, struct sh_error *err);

/* StopContainer: stop signal, then SIGKILL after @timeout_s. Stopped already: 0. */
int pod_container_stop(struct pod_mgr *pm, const char *id, long long timeout_s,
                       struct sh_error *err);

/* RemoveContainer: stops it (no grace) and removes everything. Unknown id: 0. */
int pod_container_remove(struct pod_mgr *pm, const char *id, struct sh_error *err);

enum pod_ctr_state {
        POD_CTR_CREATED = 0,
        POD_CTR_RUNNING = 1,
        POD_CTR_EXITED = 2,
        POD_CTR_UNKNOWN = 3,
};

/* A container as runt knows it. Owned; pod_container_info_free. */
struct pod_container_info {
        char *id;
        char *sandbox_id;
        struct be_container_spec spec;
        long long created_ns;
        enum pod_ctr_state state;
        int pid;
        long long started_ns;
        long long finished_ns;
        int exit_code;
        char *reason;       /* "Completed", "Error", "OOMKilled", "StartError", "" */
        char *message;      /* "" */
        char *user;         /* the image's User or the request's, as given ("" none) */
        char *image_name;   /* the image's tag and repo@digest when it was created ("": none, */
        char *image_digest; /* or a record of an older runtd): ContainerStatus from memory */
};
struct pod_container_info *pod_container_info_free(struct pod_container_info *i);
void pod_container_info_list_free(struct pod_container_info **l);

/* The container @id names (an id or a unique prefix). -ENOENT when there is none. */
int pod_container_status(struct pod_mgr *pm, const char *id, struct pod_container_info **ret,
                         struct sh_error *err);

/* ListContainers' filter; every field optional. */
struct pod_container_filter {
        const char *id;         /* an id or a prefix */
        const char *sandbox_id; /* an id or a prefix */
        bool has_state;
        enum pod_ctr_state state;
        const struct be_kv *labels;
        size_t n_labels;
};

/* Containers matching @f (NULL: all), oldest first; *@ret NULL-terminated. From memory. */
int pod_container_list(struct pod_mgr *pm, const struct pod_container_filter *f,
                       struct pod_container_info ***ret, size_t *ret_n, struct sh_error *err);
/* As pod_sandbox_each, for containers (ListContainers' path). */
int pod_container_each(struct pod_mgr *pm, const struct pod_container_filter *f,
                       int (*fn)(const struct pod_container_info *i, void *data), void *data);

/* ------------------------------------------------------------------ stats */

/*
 * Cgroup figures of a container or pod as the stats collector (stats.c) last sampled them,
 * with the CPU rate between its last two samples (as cAdvisor computes it).
 */
struct pod_stats_sample {
        long long timestamp_ns; /* CLOCK_REALTIME of the sample */
        struct sh_cg_stats cg;
        bool has_cpu_rate; /* two samples exist: cpu_nano_cores is the use between them */
        unsigned long long cpu_nano_cores;
};

/*
 * A container's resource use (ContainerStats) with what names it. Owned;
 * pod_container_stats_free. A container that is not running uses nothing: its sample holds
 * zeros (flags set) at the time of the call, and a memory limit from its spec.
 */
struct pod_container_stats {
        struct pod_container_info *info; /* id, sandbox, metadata, labels, annotations */
        bool has_stats;                  /* false: its backend could not measure it */
        struct pod_stats_sample sample;
        bool has_writable_layer; /* sampled on the slower stats.fs_interval cadence */
        struct {
                long long timestamp_ns;
                unsigned long long used_bytes, inodes_used;
                char *mountpoint; /* owned; the filesystem's dir (not a 4 KiB buffer a record:
                                     500 of them were 2 MiB of every ListContainerStats) */
        } writable_layer;
};
struct pod_container_stats *pod_container_stats_free(struct pod_container_stats *s);
void pod_container_stats_list_free(struct pod_container_stats **l);

/*
 * ContainerStats of the container @id names (an id or a unique prefix), from the
 * collector's samples. -ENOENT when there is none. A container never sampled yet (just
 * made) is sampled once now, through its backend; -EOPNOTSUPP when that has no stats.
 */
int pod_container_stats(struct pod_mgr *pm, const char *id, struct pod_container_stats **ret,
                        struct sh_error *err);

/*
 * ListContainerStats: the containers matching @f (NULL: all; has_state is ignored), oldest
 * first, *@ret NULL-terminated, from the samples (one never sampled is sampled once now).
 * One whose backend cannot measure it is listed without stats.
 */
int pod_container_stats_list(struct pod_mgr *pm, const struct pod_container_filter *f,
                             struct pod_container_stats ***ret, size_t *ret_n,
                             struct sh_error *err);

/*
 * A pod's resource use (PodSandboxStats): its cgroup's sample, its network namespace's
 * interfaces, and its containers' stats. Owned; pod_sandbox_stats_free.
 */
struct pod_sandbox_stats {
        struct pod_sandbox_info *info;
        bool has_stats; /* false: its backend could not measure it */
        struct pod_stats_sample sample;
        bool has_network; /* false for host network */
        long long net_timestamp_ns;
        struct sh_netdev *ifaces; /* n_ifaces, without lo */
        size_t n_ifaces;
        struct pod_container_stats **containers; /* NULL-terminated, oldest first */
        size_t n_containers;
};
struct pod_sandbox_stats *pod_sandbox_stats_free(struct pod_sandbox_stats *s);
void pod_sandbox_stats_list_free(struct pod_sandbox_stats **l);

/*
 * PodSandboxStats of the sandbox @id names (an id or a unique prefix), from the samples.
 * -ENOENT when there is none, -EAGAIN when it is not ready (nothing runs to measure).
 */
int pod_sandbox_stats(struct pod_mgr *pm, const char *id, struct pod_sandbox_stats **ret,
                      struct sh_error *err);

/*
 * ListPodSandboxStats: the ready sandboxes matching @f (NULL: all; has_state is ignored),
 * oldest first, *@ret NULL-terminated, from the samples.
 */
int pod_sandbox_stats_list(struct pod_mgr *pm, const struct pod_sandbox_filter *f,
                           struct pod_sandbox_stats ***ret, size_t *ret_n, struct sh_error *err);

/* UpdateContainerResources: applies and records @res. -EINVAL for an exited container. */
int pod_container_update(struct pod_mgr *pm, const char *id, const struct be_resources *res,
                         struct sh_error *err);

/* ReopenContainerLog: -EINVAL unless running. */
int pod_container_reopen_log(struct pod_mgr *pm, const char *id, struct sh_error *err);

/*
 * ExecSync: runs @argv in running container @id. @timeout_s 0: none. Output past
 * @max_output (stdout and stderr together; 0: the backend's cap) is dropped and counted in
 * @ret->dropped. -ETIMEDOUT after the timeout, -ECANCELED once @cancel_fd (-1: none) turns
 * readable: the command and all it started are killed. -EINVAL when it is not running.
 */
int pod_container_exec_sync(struct pod_mgr *pm, const char *id, const char *const *argv,
                            long long timeout_s, int cancel_fd, size_t max_output,
                            struct be_exec_result *ret, struct sh_error *err);

/*
 * Asks the backend of container @id (a full id) how it is now and records a change. For a
 * caller that learnt of an exit before the watcher did (an attach's EOF comes once the exit
 * is on disk, a moment before the monitor leaves). Blocks briefly.
 */
void pod_container_refresh(struct pod_mgr *pm, const char *id);

/*
 * For Exec and Attach before they hand out a URL: *@ret_id (malloc'd) is the full id of
 * running container @id (an id or unique prefix). -EINVAL "not running", -ENOENT unknown.
 */
int pod_container_running(struct pod_mgr *pm, const char *id, char **ret_id, struct sh_error *err);

/*
 * Exec (streaming): starts @argv in running container @id with its stdio on the fds in
 * @ret (see struct be_exec_stream); the caller streams, closes and reaps. -EINVAL when the
 * container is not running.
 */
int pod_container_exec_stream(struct pod_mgr *pm, const char *id, const char *const *argv, bool tty,
                              bool want_stdin, struct be_exec_stream *ret, struct sh_error *err);

/*
 * Attach: *@ret_fd is connected to running container @id's stdio (the packet protocol of
 * be_ops.container_attach), owned by the caller; *@ret_tty and *@ret_stdin are the
 * container's tty and stdin flags, so the caller knows the streams to offer. -EINVAL when
 * it is not running, -ENOENT when unknown.
 */
int pod_container_attach(struct pod_mgr *pm, const char *id, int *ret_fd, bool *ret_tty,
                         bool *ret_stdin, struct sh_error *err);

/* ------------------------------------------------------------------ events and counts */

/* What happened to a container or a sandbox (numbered as CRI's ContainerEventType). */
enum pod_event_kind {
        POD_EVENT_CREATED = 0,
        POD_EVENT_STARTED = 1,
        POD_EVENT_STOPPED = 2,
        POD_EVENT_DELETED = 3,
};

/*
 * One event, as the sink sees it: everything borrowed for the call. For a sandbox's own
 * event @id is the sandbox's id. @sandbox is the pod as it is after the change (for a
 * deleted pod: as it was, NOTREADY), @containers its containers after the change.
 */
struct pod_event {
        enum pod_event_kind kind;
        const char *id;
        long long at_ns; /* CLOCK_REALTIME */
        const struct pod_sandbox_info *sandbox;
        struct pod_container_info *const *containers; /* NULL-terminated */
        size_t n_containers;
};

/*
 * Called once per event, in the order they happened for one object, from the thread that
 * made the change, after it is recorded and with no podmgr lock held. Must not block.
 */
typedef void (*pod_event_fn)(void *data, const struct pod_event *ev);

/* Sets the event sink (NULL: none). Call before serving and before pod_mgr_recover. */
void pod_mgr_set_event_sink(struct pod_mgr *pm, pod_event_fn fn, void *data);

/*
 * Pods and containers by state, from memory (never blocks on I/O): @ret_pods indexed by
 * enum pod_state, @ret_ctrs by enum pod_ctr_state. Creating ones are not counted.
 */
void pod_mgr_state_counts(struct pod_mgr *pm, size_t ret_pods[3], size_t ret_ctrs[4]);
