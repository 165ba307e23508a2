#pragma once

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

/* Wrapper of ops->ready. */
int be_ready(struct be *be, struct sh_error *err);

/* Looks up option @key of @cfg; NULL when unset. */
const char *be_config_option(const struct be_config *cfg, const char *key);
