#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "netmgr.h"

/* The run dir netns mounts go below (borrowed). */
const char *net_mgr_run_dir(struct net_mgr *nm);
/* Is @path a live network namespace (an nsfs mount a plugin can enter)? */
bool net_netns_live(const char *path);
/* <run_dir>/netns/<id>, malloc'd. */
char *net_netns_path(struct net_mgr *nm, const char *id);
/* The configuration it was made with (borrowed). */
const struct runt_config *net_mgr_config(struct net_mgr *nm);
/* <state_dir>/cni: one <pod id>.json per pod with networking set up. */
const char *net_mgr_cache_dir(struct net_mgr *nm);
/* Adds @ns to the plugin time counter (net_mgr_plugin_ns). */
void net_mgr_count_plugin(struct net_mgr *nm, unsigned long long ns);

/* ---- What runtd parses from outside: plugin answers and its own cache files (cni.c) ---- */

/*
 * Makes sense of a plugin's answer: @out (@out_len bytes, NUL-terminated) on stdout,
 * @err_text on stderr (NULL: none), and its @exit_code. Non-zero: -EIO with the CNI error
 * JSON's msg and details, or the output, in @err. Zero with @ret_result: the result object
 * (owned) or -EPROTO for one that is not a JSON object.
 */
int net_plugin_output(const char *type, const char *command, int exit_code, const char *out,
                      size_t out_len, const char *err_text, json_object **ret_result,
                      struct sh_error *err);

/* Fills @ret from a result's "ips" (addresses without prefix, IPv4 first; ones that do not
 * parse as an IP address are left out) and its JSON. */
int net_result_facts(json_object *result, const char *network, struct net_result *ret);

/* Parses a pod's cache file (@path names it in messages): -EINVAL if not runt's cache. */
int net_cache_parse(const char *text, size_t len, const char *path, json_object **ret,
                    struct sh_error *err);

/* The cached pieces a DEL or CHECK needs. */
struct net_cached {
        json_object *doc; /* owned */
        json_object *list, *plugins, *rtconf, *result;
        const char *name, *version, *netns, *args;
};

/*
 * Picks the pieces out of @c->doc (pod @id's cache, from net_cache_parse). -EINVAL, with
 * @c->doc released, for a damaged cache.
 */
int net_cached_fields(struct net_cached *c, const char *id, struct sh_error *err);

/* The CNI commands timed for metrics. */
enum net_op {
        NET_OP_ADD,
        NET_OP_DEL,
        NET_OP_CHECK,
        NET_OP_COUNT,
};
/* Records @op that began at @t0 (sh_now_ns) and returned @r into the metrics; returns @r. */
int net_mgr_observe(struct net_mgr *nm, enum net_op op, unsigned long long t0, int r);
