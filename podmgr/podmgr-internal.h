#pragma once

#include <sqlite3.h>

#include "be.h"
#include "podmgr.h"

/* Accessors sandbox.c uses (podmgr.c owns the manager). */
struct net_mgr *pod_mgr_net(struct pod_mgr *pm);
const struct runt_config *pod_mgr_config(struct pod_mgr *pm);
sqlite3 *pod_mgr_db(struct pod_mgr *pm);
/* The backend of handler @handler ("" = default): -EINVAL unknown, -EAGAIN not started. */
int pod_mgr_backend(struct pod_mgr *pm, const char *handler, struct be **ret, struct sh_error *err);
