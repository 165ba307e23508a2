#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/*
 * The backend driver interface (DESIGN.md "The backend interface", STYLE R7/R8).
 * One const ops table per backend; ops return 0 or -errno with @err filled; an optional
 * op is NULL and the be_* wrappers turn that into -EOPNOTSUPP (gRPC UNIMPLEMENTED).
 * The pod and container ops arrive with the issues that need them; what is here now is
 * what every backend must have from the start: set-up, a readiness probe and tear-down.
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
};
void be_sandbox_spec_done(struct be_sandbox_spec *s);

/* A sandbox handed to a backend to create. Borrowed for the call. */
struct be_sandbox {
        const char *id; /* 64 hex digits */
        const struct be_sandbox_spec *spec;
        const char *netns;   /* the pod's network namespace; NULL for host network */
        const char *pod_dir; /* resolv.conf, hostname, hosts for the pod's containers */
};

/* What a RuntimeClass handler's backend is configured with. Borrowed for the call. */
struct be_config {
        const char *handler;   /* the handler name, e.g. "lxc" */
        const char *root_dir;  /* runt's root dir: the backend keeps its data below it */
        const char *state_dir; /* runt's state dir */
        const char *run_dir;   /* runt's run dir */
        size_t n_options;      /* backend-specific options from runt.yaml */
        char *const *option_keys;
        char *const *option_values;
};

enum be_caps {
        BE_CAP_EXEC = 1u << 0,         /* exec_sync and streaming exec */
        BE_CAP_ATTACH = 1u << 1,       /* attach to a running container's stdio */
        BE_CAP_STATS = 1u << 2,        /* container and pod stats */
        BE_CAP_SHARED_NETNS = 1u << 3, /* the pod runs in a host netns that CNI sets up */
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
        /* Frees @be->priv. Never touches running pods: they outlive runtd. */
        void (*fini)(struct be *be);
};

struct be {
        const struct be_ops *ops;
        void *priv;
        char *handler;
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

/* Looks up option @key of @cfg; NULL when unset. */
const char *be_config_option(const struct be_config *cfg, const char *key);
