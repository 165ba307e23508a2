#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "netmgr.h"

/* Drops the reference @o holds (NULL-safe, twice-safe). */
static inline void net_json_putp(json_object **o)
{
        if (*o)
                json_object_put(*o);
        *o = NULL;
}
#define _cleanup_json_ _cleanup_(net_json_putp)

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
/* Held across a host-port claim: the look at every pod's cache and the write of one. */
pthread_mutex_t *net_mgr_ports_lock(struct net_mgr *nm);

/* A CNI cache larger than this is refused rather than parsed. */
#define NET_CACHE_MAX (4u << 20)

/*
 * CNI_NETNS of an ADD for a pod with no namespace on this host (its host ports only). The
 * skel of CNI plugins requires one for ADD, and newer ones refuse the plugin's own (the
 * host's); a path that can never name a namespace makes a plugin that would enter it fail
 * instead of acting on the host. The cache records none (""), so DEL passes none.
 */
#define NET_NETNS_NONE "/proc/self/ns/none"

/* ---- The plugin chain (cni.c), shared with the host ports of pods networked elsewhere ---- */

/* The first of @dirs holding an executable @type, malloc'd; NULL when none does. */
char *net_find_plugin(char *const *dirs, const char *type);
/* CNI_ARGS for @pod (malloc'd): its namespace, name, uid and sandbox id. */
char *net_cni_args(const struct net_pod *pod);
/* The runtimeConfig @pod offers (owned), by capability: portMappings (host_port > 0 only),
 * bandwidth, dns; an empty object when it offers none. */
json_object *net_runtime_config(const struct net_pod *pod);
/* <state_dir>/cni/<id>.json, malloc'd. */
char *net_cache_path(struct net_mgr *nm, const char *id);

/*
 * Writes pod @id's cache at @path before its ADD (no result yet). When network @conf has a
 * plugin taking portMappings and @rtconf holds some, they are claimed first, under
 * net_mgr_ports_lock: -EADDRINUSE naming the holder when another pod's cache claims one of
 * them (net_ports_check), and nothing written. @netns NULL: a pod with no namespace here.
 */
int net_cache_claim(struct net_mgr *nm, const char *path, const char *id, const char *netns,
                    const char *args, const struct net_conf *conf, json_object *rtconf,
                    struct sh_error *err);

/*
 * ADD of network @conf (freed here, whatever the outcome) for @pod, as net_setup describes:
 * claimed and cached first, plugins chained, a failure undone. @netns NULL: a pod with no
 * namespace here: no loopback, CNI_NETNS is NET_NETNS_NONE, and @first_prev (borrowed) is
 * the prevResult the first plugin gets. Blocks for the plugins' time.
 */
int net_chain_add(struct net_mgr *nm, const struct net_pod *pod, const char *netns,
                  struct net_conf *conf, json_object *first_prev, struct net_result *ret,
                  struct sh_error *err);

/*
 * ADD again, from its cache, for pod @id when the cache is a "hostPortsOnly" one whose ADD
 * finished; 0 with nothing run otherwise (no cache included). Blocks for the plugins' time.
 */
int net_cache_readd(struct net_mgr *nm, const char *id, struct sh_error *err);

/* ---- Host ports (hostport.c) ---- */

/* Does network list @list have a plugin that takes portMappings (capabilities)? */
bool net_list_maps_ports(json_object *list);

/*
 * Do CNI portMappings entries @a and @b take one host port: one protocol (tcp when unset,
 * any case), one hostPort, and host IPs that are equal or of which one is unset ("",
 * 0.0.0.0 or ::, every address)?
 */
bool net_port_maps_collide(json_object *a, json_object *b);

/*
 * Checks @maps (the portMappings pod @id asks for) against every other pod's cache in the
 * cache dir whose network takes portMappings: -EADDRINUSE with a message naming the port and
 * the pod holding it on the first collision, else 0. Caches that do not parse are skipped.
 * Call under net_mgr_ports_lock.
 */
int net_ports_check(struct net_mgr *nm, const char *id, json_object *maps, struct sh_error *err);

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
