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

/*
 * Times ADD (net_setup), DEL (net_teardown) and CHECK (net_check) into @metrics
 * (borrowed; outlives the manager). Call once, before serving. 0, -ENOMEM or -EEXIST.
 */
struct sh_metrics;
int net_mgr_set_metrics(struct net_mgr *nm, struct sh_metrics *metrics, struct sh_error *err);

/* Nanoseconds spent in CNI plugins so far (for the benchmark's breakdown). */
unsigned long long net_mgr_plugin_ns(struct net_mgr *nm);

/* A JSON summary for Status verbose info (malloc'd string). */
char *net_mgr_info_json(struct net_mgr *nm);

/* ------------------------------------------------------------------ pods */

/* A port the pod publishes on the host (CRI PortMapping), for portmap. */
struct net_port {
        const char *protocol; /* "tcp", "udp" or "sctp" */
        int container_port;
        int host_port;
        const char *host_ip; /* "" or NULL: every address */
};

/* What ADD needs to know about a pod. Borrowed for the call. */
struct net_pod {
        const char *id;        /* the sandbox id: CNI_CONTAINERID and the cache key */
        const char *name;      /* K8S_POD_NAME */
        const char *namespace; /* K8S_POD_NAMESPACE */
        const char *uid;       /* K8S_POD_UID */
        const struct net_port *ports;
        size_t n_ports;
        char *const *dns_servers; /* NULL-terminated, may be NULL: runtimeConfig.dns */
        char *const *dns_searches;
        char *const *dns_options;
        /* runtimeConfig.bandwidth, bits per second and bits; 0 = unset */
        unsigned long long ingress_rate, ingress_burst, egress_rate, egress_burst;
};

/* What ADD produced. Owned; net_result_done frees it. */
struct net_result {
        char **ips;    /* NULL-terminated pod addresses without prefix, IPv4 first */
        char *network; /* the network's name */
        char *json;    /* the last plugin's result, as cached */
};
void net_result_done(struct net_result *r);

/*
 * Creates a network namespace for pod @id, pinned by a bind mount at
 * <run_dir>/netns/<id> (no `ip`: a thread unshares and the mount keeps the namespace).
 * *@ret_path is malloc'd. -EEXIST when one is there already. Blocks briefly.
 */
int net_netns_create(struct net_mgr *nm, const char *id, char **ret_path, struct sh_error *err);

/* Unmounts and removes pod @id's namespace. 0 when there was none. */
int net_netns_remove(struct net_mgr *nm, const char *id, struct sh_error *err);

/*
 * Sets up pod networking in @netns as libcni does: loopback, then every plugin of the
 * current network config in order (name and cniVersion injected, prevResult chained,
 * CNI_ARGS with the pod's identity, runtimeConfig for the capabilities a plugin declares),
 * each with the plugin timeout. The whole ADD input is cached on disk under
 * <state_dir>/cni/<id>.json before the first plugin runs and the result joins it before
 * returning, so DEL works the same after a restart, even one that cut ADD off. A
 * plugin failing part-way undoes (DEL, reverse order) itself and those that succeeded, and
 * nothing is cached. Errors carry the plugin's msg and details. Blocks for the plugins' time.
 */
int net_setup(struct net_mgr *nm, const struct net_pod *pod, const char *netns,
              struct net_result *ret, struct sh_error *err);

/*
 * Tears pod @id's networking down from its cache: DEL for each plugin in reverse order with
 * the cached input and result (none when ADD was cut off), then loopback. A namespace that
 * is gone is passed as none, so the plugins still free what lives outside it. Without a
 * cache but with pod @id's namespace still there (state of an older runtd), DEL runs with
 * the current config. Idempotent: nothing set up, 0. The cache is removed only when every
 * DEL succeeded, so a failed teardown can be retried. Blocks for the plugins' time.
 */
int net_teardown(struct net_mgr *nm, const char *id, struct sh_error *err);

/*
 * After a restart: waits until no plugin a previous runtd started for one of the pods @ids
 * (NULL-terminated) still runs: they outlive runtd, and an ADD that ends after our DEL would
 * leave its lease behind. Once the plugin timeout is over their process groups are killed.
 * Scans /proc; blocks for as long as such plugins run.
 */
int net_wait_plugins(struct net_mgr *nm, char *const *ids, struct sh_error *err);

/* After a restart, before any setup: removes cache temp files a crash cut off. */
void net_cache_sweep(struct net_mgr *nm);
/* The ids of the pods that have a CNI cache (NULL-terminated, malloc'd; NULL on ENOMEM). */
char **net_cache_ids(struct net_mgr *nm);

/* CHECK for pod @id (CNI >= 0.4.0; older configs: 0). -ENOENT without a cache. */
int net_check(struct net_mgr *nm, const char *id, struct sh_error *err);

/* The cached result of pod @id (as net_setup returned it). -ENOENT without a cache. */
int net_status(struct net_mgr *nm, const char *id, struct net_result *ret, struct sh_error *err);

/* ------------------------------------------------------------------ host ports */

/*
 * Host ports of a pod that has no namespace on this host: its backend networks it elsewhere
 * (BE_CAP_OWN_NET: a proxmox CT). Its port mappings are forwarded from this node as for a
 * CNI pod, by the CNI portmap plugin run alone in a network of its own ("runt-hostport")
 * with a prevResult holding the pod's address. Its cache is a CNI cache like the others, so
 * net_teardown removes the forwarding (after a restart too), net_cache_ids lists it, and a
 * claim sees it. Host port 0 declares a container port: nothing is forwarded for it.
 */

/*
 * Claims @pod's host ports before the pod is made (nothing runs yet): 0 with nothing
 * recorded when it has none; else its cache is written, so the claim holds until
 * net_teardown. -EADDRINUSE naming the port and the holder when a pod of this runtd holds
 * one of them already (net_ports_check: same protocol and host port, host IPs equal or one
 * unset), -EBUSY when no portmap plugin is in the CNI bin dirs. Reads every pod's cache.
 */
int net_hostports_claim(struct net_mgr *nm, const struct net_pod *pod, struct sh_error *err);

/*
 * Forwards @pod's host ports to its address: portmap ADD with a prevResult holding @cidrs
 * (NULL-terminated "ADDR/PREFIX", the prefix of the network the pod is on, whose traffic to
 * the ports is masqueraded as portmap does for a bridge's; a bare ADDR is a /32 or /128).
 * 0 at once when it has no host port. A failed ADD is undone (DEL); the claim may stay,
 * so net_teardown the pod as after any failed setup. -EINVAL for an address that does not
 * parse. Blocks for the plugin's time.
 */
int net_hostports_setup(struct net_mgr *nm, const struct net_pod *pod, char *const *cidrs,
                        struct sh_error *err);

/*
 * After a restart: forwards pod @id's host ports again from its cache (a node reboot, or a
 * table flushed, loses them while the pod lives elsewhere; an ADD of what is there changes
 * nothing). 0 when @id has no host-port cache or its ADD never finished. Blocks.
 */
int net_hostports_restore(struct net_mgr *nm, const char *id, struct sh_error *err);

/* ------------------------------------------------------------------ pod files */

/* DNS for a pod's resolv.conf (CRI DNSConfig); all NULL: a copy of the host's. */
struct net_dns {
        char *const *servers;
        char *const *searches;
        char *const *options;
};

/*
 * Writes @dir/resolv.conf (from @dns, or the host's /etc/resolv.conf), @dir/hostname and
 * @dir/hosts (localhost lines, then @hostname on each of @ips) atomically, 0644. @dir is
 * created 0755. The backend bind-mounts them into the pod.
 */
int net_write_pod_files(const char *dir, const struct net_dns *dns, const char *hostname,
                        char *const *ips, struct sh_error *err);
