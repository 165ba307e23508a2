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

/* StopPodSandbox: the backend stops the sandbox, the network is torn down. Idempotent. */
int pod_sandbox_stop(struct pod_mgr *pm, const char *id, struct sh_error *err);

/* RemovePodSandbox: stops it if needed and removes everything. Unknown id: 0. */
int pod_sandbox_remove(struct pod_mgr *pm, const char *id, struct sh_error *err);

/* The sandbox @id names (an id or a unique prefix). -ENOENT when there is none. */
int pod_sandbox_status(struct pod_mgr *pm, const char *id, struct pod_sandbox_info **ret,
                       struct sh_error *err);

/* ListPodSandbox's filter; every field optional. */
struct pod_sandbox_filter {
        const char *id; /* an id or a prefix of one */
        bool has_state;
        enum pod_state state;
        const struct be_kv *labels; /* all must match */
        size_t n_labels;
};

/* Sandboxes matching @f (NULL: all), oldest first; *@ret NULL-terminated. */
int pod_sandbox_list(struct pod_mgr *pm, const struct pod_sandbox_filter *f,
                     struct pod_sandbox_info ***ret, size_t *ret_n, struct sh_error *err);
