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
