#pragma once

#include <json-c/json.h>

#include "config.h"
#include "error.h"
#include "fsusage.h"

/*
 * Pod networking: network namespaces and CNI plugins run with libcni's semantics.
 * struct net_mgr is thread-safe; each function says whether it blocks.
 */
struct net_mgr;

/* A loaded, validated network configuration list. */
struct net_conf {
        char *path;        /* the file it came from */
        char *name;        /* "name" of the list */
        char *cni_version; /* "cniVersion" */
        size_t n_plugins;
        char **plugin_types; /* "type" of each plugin, in order */
        char **plugin_paths; /* the binary found for each, in the bin dirs */
        json_object *list;   /* the list as a conflist (a .conf is wrapped), owned */
};

/* Borrows @cfg for the lifetime of the manager. Does not block. */
int net_mgr_new(const struct runt_config *cfg, struct net_mgr **ret, struct sh_error *err);
struct net_mgr *net_mgr_free(struct net_mgr *nm);

/*
 * Loads the network config as libcni's ConfFiles does: every .conf, .conflist and .json in
 * the conf dir in lexical order, the first valid one wins. Returns 0, -ENOENT when the dir
 * holds none, or -EINVAL naming the file and what is wrong with the first candidate.
 * Reads a few small files; callers may use it per Status call.
 */
int net_conf_load(const char *conf_dir, char *const *bin_dirs, struct net_conf *ret,
                  struct sh_error *err);
void net_conf_done(struct net_conf *c);

/* NetworkReady: true when a valid config is present now (re-read on every call). */
void net_mgr_condition(struct net_mgr *nm, struct sh_condition *ret);

/* A JSON summary for Status verbose info (malloc'd string). */
char *net_mgr_info_json(struct net_mgr *nm);
