#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cgstats.h"
#include "error.h"
#include "fsusage.h"
#include "netdev.h"

/*
 * The backend driver interface (DESIGN.md "The backend interface", STYLE R7/R8).
 * One const ops table per backend; ops return 0 or -errno with @err filled; an optional
 * op is NULL and the be_* wrappers turn that into -EOPNOTSUPP (gRPC UNIMPLEMENTED).
 * Sandbox ops, container ops, exec, attach and container stats.
 */
struct be;

/* A key=value pair (labels, annotations, sysctls). */
struct be_kv {
        char *key;
        char *value;
};

/* A port the pod publishes on the host (CRI PortMapping). */
struct be_port {
        char *protocol; /* "tcp", "udp", "sctp" */
        int container_port;
        int host_port;
        char *host_ip;
};

/* CRI NamespaceMode. */
enum be_ns_mode {
        BE_NS_POD = 0,
        BE_NS_CONTAINER = 1,
        BE_NS_NODE = 2,
        BE_NS_TARGET = 3,
};

/*
 * What a pod sandbox is asked to be: the CRI PodSandboxConfig as runt's core sees it (cri/
 * translates it; every string is owned and non-NULL, every strv NULL-terminated, possibly
 * empty). Freed with be_sandbox_spec_done.
 */
struct be_sandbox_spec {
        char *name; /* metadata */
        char *uid;
        char *namespace;
        unsigned attempt;
        char *handler; /* RuntimeClass handler, "" for the default */
        char *hostname;
        char *log_directory;
        char *cgroup_parent;
        char **dns_servers;
        char **dns_searches;
        char **dns_options;
        struct be_port *ports;
        size_t n_ports;
        struct be_kv *labels;
        size_t n_labels;
        struct be_kv *annotations;
        size_t n_annotations;
        struct be_kv *sysctls;
        size_t n_sysctls;
        enum be_ns_mode net_mode; /* NODE: host network, no netns, no CNI */
        enum be_ns_mode pid_mode;
        enum be_ns_mode ipc_mode;
        bool privileged;
        /* The pod's limits as the kubelet sizes its cgroup (CRI linux.resources plus
         * linux.overhead): bytes and thousandths of a core; 0 unset (or unlimited). */
        long long pod_memory_limit;
        long long pod_cpu_millis;
};
void be_sandbox_spec_done(struct be_sandbox_spec *s);
/* *@ret: a deep copy of @s (be_sandbox_spec_done frees it). 0 or -ENOMEM (nothing kept). */
int be_sandbox_spec_copy(const struct be_sandbox_spec *s, struct be_sandbox_spec *ret);

/* A sandbox handed to a backend to create. Borrowed for the call. */
struct be_sandbox {
        const char *id; /* 64 hex digits */
        const struct be_sandbox_spec *spec;
        const char *netns;   /* the pod's network namespace; NULL for host network */
        const char *pod_dir; /* resolv.conf, hostname, hosts for the pod's containers
                                (written once sandbox_create returned) */
};

/* A bind mount into a container (CRI Mount). */
enum be_propagation {
        BE_PROPAGATION_PRIVATE = 0,
        BE_PROPAGATION_HOST_TO_CONTAINER = 1, /* rslave */
        BE_PROPAGATION_BIDIRECTIONAL = 2,     /* rshared */
};

struct be_mount {
        char *container_path; /* absolute, no ".." */
        char *host_path;      /* absolute; a directory is created when missing */
        bool readonly;
        enum be_propagation propagation;
};

/* A host device made visible in a container (CRI Device). */
struct be_device {
        char *container_path;
        char *host_path;
        char *permissions; /* "rwm" or a subset */
};

/* Cgroup limits of a container (CRI LinuxContainerResources); 0 / "" means unset. */
struct be_resources {
        long long cpu_period; /* us */
        long long cpu_quota;  /* us; -1 = unlimited */
        long long cpu_shares;
        long long memory_limit; /* bytes */
        long long memory_swap_limit;
        long long oom_score_adj;
        bool has_oom_score_adj;
        char *cpuset_cpus;
        char *cpuset_mems;
        struct be_kv *hugepages; /* page size ("2MB") -> limit in bytes */
        size_t n_hugepages;
};
void be_resources_done(struct be_resources *r);

/* seccomp for a container: CRI SecurityProfile. */
enum be_seccomp {
        BE_SECCOMP_RUNTIME_DEFAULT = 0,
        BE_SECCOMP_UNCONFINED = 1,
        BE_SECCOMP_LOCALHOST = 2, /* seccomp_profile: an OCI/Docker JSON profile file */
};

/*
 * What a container is asked to be, resolved: the image config is merged with the CRI
 * ContainerConfig already (podmgr does that), so a backend gets the argv, env, user and
 * rootfs layers it runs. Strings are owned and non-NULL, strvs NULL-terminated.
 * Freed with be_container_spec_done.
 */
struct be_container_spec {
        char *name; /* metadata */
        unsigned attempt;
        char *image_ref;   /* as the request named it */
        char *image_id;    /* "sha256:..." */
        char **layer_dirs; /* the image's layer directories, base first */
        char **chain_ids;  /* their chain ids, in step ("sha256:..."); for a backend that
                              sends layers by id (proxmox). May be empty in a spec that
                              predates them (then shorter than layer_dirs). */
        char **argv;       /* what runs; argv[0] non-empty */
        char **env;        /* "K=V" */
        char *cwd;         /* absolute */
        unsigned uid, gid;
        unsigned *groups; /* supplementary groups */
        size_t n_groups;
        char *log_path;        /* absolute path of the CRI log file, "" for none */
        unsigned log_max_line; /* longer lines are logged in partial (P) parts; 0: 16 KiB */
        bool tty, stdin_open, stdin_once;
        struct be_mount *mounts;
        size_t n_mounts;
        struct be_device *devices;
        size_t n_devices;
        struct be_kv *labels;
        size_t n_labels;
        struct be_kv *annotations;
        size_t n_annotations;
        struct be_resources resources;
        unsigned pids_limit; /* pids.max of its cgroup (runt.yaml containers.pids_limit); 0 none */
        bool privileged;
        bool readonly_rootfs;
        bool no_new_privs;
        char **cap_add; /* "NET_ADMIN" or "ALL", without CAP_ */
        char **cap_drop;
        enum be_seccomp seccomp;
        char *seccomp_profile;    /* the Localhost profile's path, else "" */
        char **masked_paths;      /* empty: the default set */
        char **readonly_paths;    /* empty: the default set */
        enum be_ns_mode pid_mode; /* POD: the sandbox's, CONTAINER: its own, NODE: the host's */
        char *stop_signal;        /* "SIGTERM", "SIGINT", "15" ... from the image, or "" */
};
void be_container_spec_done(struct be_container_spec *s);
/* *@ret: a deep copy of @s (be_container_spec_done frees it). 0 or -ENOMEM (nothing kept). */
int be_container_spec_copy(const struct be_container_spec *s, struct be_container_spec *ret);

/* A container handed to a backend to create. Borrowed for the call. */
struct be_container {
        const char *id;         /* 64 hex digits */
        const char *sandbox_id; /* its pod, created and running */
        const struct be_sandbox_spec *sandbox;
        const char *netns;   /* the pod's network namespace; NULL for host network */
        const char *pod_dir; /* resolv.conf, hostname, hosts to bind into the container */
        const struct be_container_spec *spec;
};

enum be_ctr_state {
        BE_CTR_CREATED = 0,
        BE_CTR_RUNNING = 1,
        BE_CTR_EXITED = 2,
        BE_CTR_UNKNOWN = 3,
};

/* What the backend knows of a container now. */
struct be_ctr_status {
        enum be_ctr_state state;
        int pid;               /* host pid of its init while running, else 0 */
        long long started_ns;  /* CLOCK_REALTIME; 0 when it never started */
        long long finished_ns; /* 0 while it runs */
        int exit_code;         /* 128+signal when killed by one */
        bool oom_killed;
        char reason[32];   /* "Completed", "Error", "OOMKilled", "StartError", "" */
        char message[256]; /* what went wrong, for a start error */
};

/*
 * A streaming exec in progress (CRI Exec): the caller owns the fds and must reap @pid, whose
 * exit code is the command's (128+signal when a signal ended it). A backend whose command
 * runs where runtd has no process for it (a VM) gives @pid 0 and @exit_fd instead.
 */
struct be_exec_stream {
        int stdin_fd;  /* write end; -1 without stdin */
        int stdout_fd; /* read end; the pty master with a tty */
        int stderr_fd; /* read end; -1 with a tty (one stream) */
        int pty_fd;    /* the pty master, for resize; -1 without a tty */
        int pid;       /* the process to wait for; 0 with @exit_fd */
        /*
         * With @pid 0: a SOCK_SEQPACKET socket to the backend. It turns readable when the
         * command ended and reads as one packet of a native int (its exit code), then EOF;
         * EOF alone: the backend lost the command (exit code unknown). With a tty, a packet
         * of two native unsigned shorts (rows, cols) written to it resizes the command's
         * terminal. Closing it gives the command up: the backend kills it. -1 with a @pid.
         */
        int exit_fd;
        unsigned short rows, cols; /* in, with a tty: the size it starts with (0: unset) */
};

/* What ExecSync runs and how. Borrowed for the call. */
struct be_exec_sync_req {
        const char *const *argv;
        unsigned timeout_ms; /* 0: none */
        int cancel_fd;       /* readable once the caller gives up; -1: none */
        size_t max_output;   /* stdout and stderr together; 0: the backend's own cap */
};

/* ExecSync's result. Owned buffers; be_exec_result_done. */
struct be_exec_result {
        int exit_code;
        char *out;
        size_t out_len;
        char *err;
        size_t err_len;
        size_t dropped; /* output past max_output, read and dropped */
};
void be_exec_result_done(struct be_exec_result *r);

/*
 * A container's resource use now (CRI ContainerStats): its cgroup's figures. Counters are
 * cumulative since the container started; a container that has not started or has exited
 * uses nothing, so its counters are 0 with the flags still set. A flag is false for what
 * the backend cannot tell. The writable layer is measured apart (container_fs_usage).
 */
struct be_ctr_stats {
        long long timestamp_ns; /* CLOCK_REALTIME when the cgroup was read */
        struct sh_cg_stats cg;
};

/* What sandbox_stats is asked to measure. Borrowed for the call. */
struct be_sandbox_stats_req {
        const char *id;
        const struct be_sandbox_spec *spec; /* its cgroup_parent names the pod's cgroup */
        const char *netns;                  /* the pod's network namespace; NULL: host network */
        const char *const *container_ids;   /* its running containers, NULL-terminated */
};

/*
 * A pod's resource use now (CRI LinuxPodSandboxStats): the pod's cgroup (everything in it,
 * the sandbox and its containers) and the interfaces of its network namespace. Owned;
 * be_sandbox_stats_done.
 */
struct be_sandbox_stats {
        long long timestamp_ns;
        struct sh_cg_stats cg;
        bool has_network; /* false for host network: the node's interfaces are not the pod's */
        struct sh_netdev *ifaces; /* malloc'd, n_ifaces of them, without lo */
        size_t n_ifaces;
};
void be_sandbox_stats_done(struct be_sandbox_stats *s);
struct sh_metrics;

/* What a RuntimeClass handler's backend is configured with. Borrowed for the call. */
struct be_config {
        const char *handler;   /* the handler name, e.g. "lxc" */
        const char *root_dir;  /* runt's root dir: the backend keeps its data below it */
        const char *state_dir; /* runt's state dir */
        const char *run_dir;   /* runt's run dir */
        size_t n_options;      /* backend-specific options from runt.yaml */
        char *const *option_keys;
        char *const *option_values;
        struct sh_metrics *metrics; /* borrowed, outlives the backend; NULL: ops not timed */
};

enum be_caps {
        BE_CAP_EXEC = 1u << 0,         /* exec_sync and streaming exec */
        BE_CAP_ATTACH = 1u << 1,       /* attach to a running container's stdio */
        BE_CAP_STATS = 1u << 2,        /* container and pod stats */
        BE_CAP_SHARED_NETNS = 1u << 3, /* the pod runs in a host netns that CNI sets up */
        /*
         * sandbox_create needs the pod's netns to exist, nothing more: not the CNI result
         * (pod IPs), so CNI ADD may run beside it; and sandbox_stop may run beside CNI DEL.
         * (The pod files in be_sandbox.pod_dir are written after sandbox_create for every
         * backend: the hosts file holds the pod IPs.)
         */
        BE_CAP_NET_BESIDE = 1u << 4,
        /*
         * The backend gives a pod its network itself (a remote box with its own address:
         * proxmox): podmgr makes no netns and runs no CNI for it, and takes the pod's IPs
         * from sandbox_ips once sandbox_create returned.
         */
        BE_CAP_OWN_NET = 1u << 5,
        /*
         * A sandbox that stopped running by itself may run again (a remote box whose node was
         * unreachable and answers again): podmgr keeps asking sandbox_running about a pod it
         * did not stop and makes it ready again once it runs. The backend answers "running"
         * only for a box that is back whole (its agent reachable), never after sandbox_stop.
         */
        BE_CAP_SB_RETURNS = 1u << 6,
};

struct be_ops {
        const char *name; /* "lxc", "microvm", "proxmox", "fake" */
        unsigned caps;    /* enum be_caps */
        /* Sets up @be->priv from @cfg. May block briefly (probing the host). */
        int (*init)(struct be *be, const struct be_config *cfg, struct sh_error *err);
        /* 0 when the backend can run pods now, else -errno and why. Cheap; no lock. */
        int (*ready)(struct be *be, struct sh_error *err);
        /*
         * Creates and starts the pod's sandbox (LXC: the pause container in @sb->netns; a
         * microVM: the VM; Proxmox: nothing on the node yet). On failure nothing of it is left.
         * May block for the backend's start time.
         */
        int (*sandbox_create)(struct be *be, const struct be_sandbox *sb, struct sh_error *err);
        /* Stops sandbox @id (its containers are stopped before). Idempotent. May block. */
        int (*sandbox_stop)(struct be *be, const char *id, unsigned timeout_s,
                            struct sh_error *err);
        /* Removes everything the backend has of sandbox @id. Idempotent: unknown is 0. */
        int (*sandbox_remove)(struct be *be, const char *id, struct sh_error *err);
        /* *@ret: is sandbox @id running? -ENOENT when the backend does not know it. */
        int (*sandbox_running)(struct be *be, const char *id, bool *ret, struct sh_error *err);
        /*
         * Defines container @c (rootfs, namespaces shared with its sandbox, limits, security,
         * mounts, log) without starting it. On failure nothing of it is left.
         */
        int (*container_create)(struct be *be, const struct be_container *c, struct sh_error *err);
        /*
         * Starts created container @id; returns once it runs (or ran: a process that exits at
         * once is started). Its output goes to the log path and its exit status is recorded
         * durably by a monitor that outlives runtd.
         */
        int (*container_start)(struct be *be, const char *id, struct sh_error *err);
        /*
         * Signals container @id with @signal (0: SIGTERM), SIGKILL after @timeout_s, and
         * returns once it exited. Stopped already is 0. May block for the grace period.
         */
        int (*container_stop)(struct be *be, const char *id, int signal, unsigned timeout_s,
                              struct sh_error *err);
        /* Removes everything of container @id (stopped before). Unknown is 0. */
        int (*container_remove)(struct be *be, const char *id, struct sh_error *err);
        /* Fills @ret; -ENOENT when the backend does not know @id. Cheap. */
        int (*container_status)(struct be *be, const char *id, struct be_ctr_status *ret,
                                struct sh_error *err);
        /* Applies new limits to container @id (running or not). */
        int (*container_update)(struct be *be, const char *id, const struct be_resources *res,
                                struct sh_error *err);
        /* Has the monitor of running container @id reopen its log file. */
        int (*container_reopen_log)(struct be *be, const char *id, struct sh_error *err);
        /*
         * Runs @req->argv in running container @id as its user, with its env and cwd; stdout
         * and stderr apart, together cut at @req->max_output. After @req->timeout_ms (0: none)
         * the command and every process it started are killed and -ETIMEDOUT returned; when
         * @req->cancel_fd turns readable, the same and -ECANCELED. Output held open by
         * background processes of a command that ended is not waited for.
         */
        int (*exec_sync)(struct be *be, const char *id, const struct be_exec_sync_req *req,
                         struct be_exec_result *ret, struct sh_error *err);
        /*
         * Starts @argv in running container @id as its user, stdio on the fds returned in
         * @ret (a pty when @tty, which becomes the process's controlling terminal; a stdin
         * pipe when @want_stdin). Returns at once; the caller streams and reaps.
         */
        int (*exec_stream)(struct be *be, const char *id, const char *const *argv, bool tty,
                           bool want_stdin, struct be_exec_stream *ret, struct sh_error *err);
        /*
         * Connects to the stdio of running container @id (CRI Attach): *@ret_fd is a
         * connected SOCK_SEQPACKET socket, CLOEXEC and blocking, owned by the caller, that
         * speaks the attach protocol: each packet is a kind byte and at most 32 KiB of
         * payload; from the container 1 + stdout, 2 + stderr (a tty: all 1), each one sent to
         * every client besides the log, a client too slow for it missing it; to it 0 + stdin
         * (an empty one says the session has stdin), 3 = stdin EOF, 4 + u16 width + u16
         * height (network order) = tty resize. Stdin goes nowhere unless the container was
         * made with stdin; with stdin_once, the first session that had stdin closes it when it
         * sends 3 or disconnects. EOF: the container exited (its status is recorded by then).
         * -EINVAL when it is not running, -ENOENT when unknown. Does not block.
         */
        int (*container_attach)(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
        /*
         * Fills @ret with container @id's cgroup figures (BE_CAP_STATS). -ENOENT when the
         * backend does not know @id. Reads a few counter files; takes no lock that other ops
         * hold long. The stats collector (podmgr/stats.c) calls it, never an RPC.
         */
        int (*container_stats)(struct be *be, const char *id, struct be_ctr_stats *ret,
                               struct sh_error *err);
        /*
         * *@ret_fd: a pollable fd (CLOEXEC, the caller's) that turns readable once running
         * container @id's status may have changed for good (LXC: a pidfd of its monitor, which
         * leaves after recording the exit). -ESRCH when that happened already. NULL when the
         * backend's containers change only through runt's calls; then podmgr asks nothing.
         */
        int (*container_watch)(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
        /* The same for ready sandbox @id: readable once it stops running by itself. */
        int (*sandbox_watch)(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
        /*
         * Why sandbox @id does not run now when the backend knows more than that ("node pve2
         * unreachable"): a phrase in @buf (NUL-terminated), 0; -ENOENT when it has nothing
         * to say. Cheap (no I/O): PodSandboxStatus asks it. May be NULL.
         */
        int (*sandbox_reason)(struct be *be, const char *id, char *buf, size_t size);
        /*
         * Fills @ret with the bytes and inodes of container @id's writable layer, its
         * mountpoint the filesystem's dir (BE_CAP_STATS). -ENOENT when unknown. Walks the
         * layer by directory fd: blocks for that walk, so the collector does it less often.
         */
        int (*container_fs_usage)(struct be *be, const char *id, struct sh_fs_usage *ret,
                                  struct sh_error *err);
        /*
         * Fills @ret with pod @req->id's cgroup figures and its network namespace's interface
         * counters (BE_CAP_STATS). -ENOENT when the backend does not know the pod. Reads
         * cgroup files and enters the netns from a helper thread; blocks briefly.
         */
        int (*sandbox_stats)(struct be *be, const struct be_sandbox_stats_req *req,
                             struct be_sandbox_stats *ret, struct sh_error *err);
        /* Frees @be->priv. Never touches running pods: they outlive runtd. */
        void (*fini)(struct be *be);
        /*
         * Applies pod-level limits @res to sandbox @id as a whole (CRI
         * UpdatePodSandboxResources; the caller has added the pod's overhead in). Optional.
         * -ENOENT when the backend does not know @id, -EOPNOTSUPP when the pod has no
         * resource boundary of its own to set them on.
         */
        int (*sandbox_update)(struct be *be, const char *id, const struct be_resources *res,
                              struct sh_error *err);
        /*
         * *@ret_fd: a connected SOCK_STREAM socket (CLOEXEC, blocking, the caller's) to TCP
         * @port on the pod's loopback, for a pod whose loopback runtd cannot enter through
         * its netns (a VM). NULL when entering the netns reaches it. -ECONNREFUSED and the
         * like when nothing listens; -ENOENT when the backend does not know @id.
         */
        int (*sandbox_dial)(struct be *be, const char *id, unsigned port, int *ret_fd,
                            struct sh_error *err);
        /*
         * BE_CAP_OWN_NET: the IPs of sandbox @id, NULL-terminated and malloc'd in *@ret
         * (the caller frees them), each "ADDR/PREFIX" with the prefix of the network the pod
         * is on (the pods that reach it on one link), or a bare ADDR when the backend cannot
         * tell. podmgr reports the addresses, and forwards the pod's host ports to the first
         * (masquerading what comes from that network, as portmap does for a bridge's).
         * -ENOENT when the backend does not know @id.
         */
        int (*sandbox_ips)(struct be *be, const char *id, char ***ret, struct sh_error *err);
};

struct be_metrics;

struct be {
        const struct be_ops *ops;
        void *priv;
        char *handler;
        struct be_metrics *metrics; /* be.c's per-op series; NULL when metrics are off */
};

/* The built-in backend named @name, or NULL. */
const struct be_ops *be_lookup(const char *name);

/* Creates and initialises a backend instance. Returns 0 or -errno (-ENOENT: no such backend). */
int be_new(const char *backend, const struct be_config *cfg, struct be **ret, struct sh_error *err);

/* Finalises and frees @be; NULL-safe. Returns NULL. */
struct be *be_free(struct be *be);

/* Wrappers of the ops: a NULL op is -EOPNOTSUPP naming the backend. */
int be_ready(struct be *be, struct sh_error *err);
int be_sandbox_create(struct be *be, const struct be_sandbox *sb, struct sh_error *err);
int be_sandbox_stop(struct be *be, const char *id, unsigned timeout_s, struct sh_error *err);
int be_sandbox_remove(struct be *be, const char *id, struct sh_error *err);
int be_sandbox_running(struct be *be, const char *id, bool *ret, struct sh_error *err);
int be_container_create(struct be *be, const struct be_container *c, struct sh_error *err);
int be_container_start(struct be *be, const char *id, struct sh_error *err);
int be_container_stop(struct be *be, const char *id, int signal, unsigned timeout_s,
                      struct sh_error *err);
int be_container_remove(struct be *be, const char *id, struct sh_error *err);
int be_container_status(struct be *be, const char *id, struct be_ctr_status *ret,
                        struct sh_error *err);
int be_container_update(struct be *be, const char *id, const struct be_resources *res,
                        struct sh_error *err);
int be_container_reopen_log(struct be *be, const char *id, struct sh_error *err);
int be_exec_sync(struct be *be, const char *id, const struct be_exec_sync_req *req,
                 struct be_exec_result *ret, struct sh_error *err);
int be_exec_stream(struct be *be, const char *id, const char *const *argv, bool tty,
                   bool want_stdin, struct be_exec_stream *ret, struct sh_error *err);
int be_container_attach(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
int be_sandbox_ips(struct be *be, const char *id, char ***ret, struct sh_error *err);
int be_container_stats(struct be *be, const char *id, struct be_ctr_stats *ret,
                       struct sh_error *err);
int be_container_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
int be_sandbox_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err);
int be_sandbox_reason(struct be *be, const char *id, char *buf, size_t size);
int be_container_fs_usage(struct be *be, const char *id, struct sh_fs_usage *ret,
                          struct sh_error *err);
int be_sandbox_stats(struct be *be, const struct be_sandbox_stats_req *req,
                     struct be_sandbox_stats *ret, struct sh_error *err);
int be_sandbox_update(struct be *be, const char *id, const struct be_resources *res,
                      struct sh_error *err);
int be_sandbox_dial(struct be *be, const char *id, unsigned port, int *ret_fd,
                    struct sh_error *err);

/*
 * What a container gets when its spec leaves it to the runtime (containerd's defaults):
 * capabilities (names without CAP_, NULL-terminated; be_all_caps in number order), paths
 * masked and paths made read-only.
 */
extern const char *const be_default_caps[];
extern const char *const be_all_caps[];
extern const char *const be_default_masked[];
extern const char *const be_default_readonly[];
/* The default set as bits (bit n: be_all_caps[n]). */
uint64_t be_default_cap_set(void);
/*
 * The capabilities @s's processes hold, bit n for be_all_caps[n]: the default set plus adds
 * minus drops, all for privileged; a drop of ALL keeps only what is named in the adds.
 * -EINVAL for an added name Linux does not know.
 */
int be_cap_set(const struct be_container_spec *s, uint64_t *ret, struct sh_error *err);

/* Looks up option @key of @cfg; NULL when unset. */
const char *be_config_option(const struct be_config *cfg, const char *key);
