/*
 * Host ports: the claim every pod's port mappings go through, so that two pods of one runtd
 * never take one host port (the CNI portmap plugin reserves nothing: a second pod's rules
 * would sit behind the first's, and nobody would be told), and the forwarding of the host
 * ports of a pod that has no namespace on this host (BE_CAP_OWN_NET: a proxmox CT), done by
 * the real portmap plugin in a network of its own, so its rules, chains and masquerade are
 * those of an lxc pod's and its cache is one the rest of netmgr knows.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "json.h"
#include "netmgr-internal.h"
#include "strutil.h"
#include "validate.h"

/* The network of host-port-only pods: the chains' comments name it (`dnat name: "..."`). */
#define HOSTPORT_NET     "runt-hostport"
#define HOSTPORT_VERSION "1.0.0"

bool net_list_maps_ports(json_object *list)
{
        json_object *plugins = NULL;

        if (!json_object_object_get_ex(list, "plugins", &plugins) ||
            !json_object_is_type(plugins, json_type_array))
                return false;
        for (size_t i = 0; i < json_object_array_length(plugins); i++) {
                json_object *caps = NULL, *v = NULL;

                if (json_object_object_get_ex(json_object_array_get_idx(plugins, i), "capabilities",
                                              &caps) &&
                    json_object_object_get_ex(caps, "portMappings", &v) &&
                    json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v))
                        return true;
        }
        return false;
}

/* Is @ip unset or an unspecified address (every address of the host)? */
static bool any_address(const char *ip)
{
        unsigned char bin[sizeof(struct in6_addr)] = {0};
        size_t n;

        if (!ip || !ip[0])
                return true;
        if (inet_pton(AF_INET, ip, bin) == 1)
                n = 4;
        else if (inet_pton(AF_INET6, ip, bin) == 1)
                n = sizeof(struct in6_addr);
        else
                return false;
        for (size_t i = 0; i < n; i++)
                if (bin[i])
                        return false;
        return true;
}

static bool same_address(const char *a, const char *b)
{
        unsigned char x[sizeof(struct in6_addr)], y[sizeof(struct in6_addr)];

        if (inet_pton(AF_INET, a, x) == 1 && inet_pton(AF_INET, b, y) == 1)
                return memcmp(x, y, 4) == 0;
        if (inet_pton(AF_INET6, a, x) == 1 && inet_pton(AF_INET6, b, y) == 1)
                return memcmp(x, y, sizeof(x)) == 0;
        return strcmp(a, b) == 0;
}

/* A mapping's protocol ("tcp" when unset or empty) and host IP ("" when unset). */
static const char *map_protocol(json_object *m)
{
        const char *p = NULL;

        sh_json_get_string(m, "protocol", "portMappings", &p, NULL);
        return p && p[0] ? p : "tcp";
}

static const char *map_host_ip(json_object *m)
{
        const char *ip = NULL;

        sh_json_get_string(m, "hostIP", "portMappings", &ip, NULL);
        return ip ? ip : "";
}

bool net_port_maps_collide(json_object *a, json_object *b)
{
        int64_t pa = 0, pb = 0;

        if (sh_json_get_int64(a, "hostPort", "portMappings", &pa, NULL) < 0 ||
            sh_json_get_int64(b, "hostPort", "portMappings", &pb, NULL) < 0 || pa <= 0 || pa != pb)
                return false;
        if (strcasecmp(map_protocol(a), map_protocol(b)) != 0)
                return false;
        return any_address(map_host_ip(a)) || any_address(map_host_ip(b)) ||
               same_address(map_host_ip(a), map_host_ip(b));
}

/* The value of @key in CNI_ARGS @args ("K=V;K=V") into @buf; "" when it has none. */
static void arg_value(const char *args, const char *key, char *buf, size_t size)
{
        size_t klen = strlen(key);

        buf[0] = '\0';
        for (const char *p = args; p && *p;) {
                const char *end = strchr(p, ';');
                size_t len = end ? (size_t)(end - p) : strlen(p);

                if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
                        snprintf(buf, size, "%.*s", (int)(len - klen - 1), p + klen + 1);
                        return;
                }
                p = end ? end + 1 : NULL;
        }
}

/* -EADDRINUSE when @maps collide with what the cache @name of the cache dir claims. */
static int check_one(struct net_mgr *nm, const char *name, json_object *maps, struct sh_error *err)
{
        _cleanup_free_ char *path = sh_path_join(net_mgr_cache_dir(nm), name), *buf = NULL;
        _cleanup_json_ json_object *doc = NULL;
        json_object *list = NULL, *rtconf = NULL, *theirs = NULL;
        size_t len = 0;

        if (!path)
                return -ENOMEM;
        /* Gone meanwhile (a DEL ended), or no cache of runt's: it claims nothing. */
        if (sh_read_file(path, NET_CACHE_MAX, &buf, &len) < 0 ||
            net_cache_parse(buf, len, path, &doc, NULL) < 0)
                return 0;
        if (!json_object_object_get_ex(doc, "config", &list) || !net_list_maps_ports(list) ||
            !json_object_object_get_ex(doc, "runtimeConfig", &rtconf) ||
            !json_object_object_get_ex(rtconf, "portMappings", &theirs) ||
            !json_object_is_type(theirs, json_type_array))
                return 0;
        for (size_t i = 0; i < json_object_array_length(maps); i++) {
                json_object *m = json_object_array_get_idx(maps, i);

                for (size_t k = 0; k < json_object_array_length(theirs); k++) {
                        const char *args = "", *holder = "";
                        char ns[256], pod[256];
                        int64_t port = 0;

                        if (!net_port_maps_collide(m, json_object_array_get_idx(theirs, k)))
                                continue;
                        sh_json_get_int64(m, "hostPort", "portMappings", &port, NULL);
                        sh_json_get_string(doc, "cniArgs", "CNI cache", &args, NULL);
                        sh_json_get_string(doc, "containerId", "CNI cache", &holder, NULL);
                        arg_value(args, "K8S_POD_NAMESPACE", ns, sizeof(ns));
                        arg_value(args, "K8S_POD_NAME", pod, sizeof(pod));
                        return sh_err(err, -EADDRINUSE,
                                      "host port %lld/%s%s%s is already mapped by pod %s/%s "
                                      "(sandbox %.12s)",
                                      (long long)port, map_protocol(m),
                                      any_address(map_host_ip(m)) ? "" : " on ",
                                      any_address(map_host_ip(m)) ? "" : map_host_ip(m), ns, pod,
                                      holder);
                }
        }
        return 0;
}

int net_ports_check(struct net_mgr *nm, const char *id, json_object *maps, struct sh_error *err)
{
        DIR *d;
        struct dirent *e;
        size_t id_len = strlen(id);
        int r = 0;

        if (!json_object_is_type(maps, json_type_array) || json_object_array_length(maps) == 0)
                return 0;
        d = opendir(net_mgr_cache_dir(nm));
        if (!d)
                return errno == ENOENT ? 0
                                       : sh_err(err, -errno, "read the CNI cache dir '%s': %s",
                                                net_mgr_cache_dir(nm), strerror(errno));
        while (r == 0 && (e = readdir(d))) {
                size_t len = strlen(e->d_name);

                /* "<id>.json"; temp files start with a dot; the pod's own cache is skipped. */
                if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0 ||
                    (len - 5 == id_len && strncmp(e->d_name, id, id_len) == 0))
                        continue;
                r = check_one(nm, e->d_name, maps, err);
        }
        closedir(d);
        return r;
}

/* The network a pod with no namespace here gets for its host ports: portmap alone. */
static int hostport_conf(struct net_mgr *nm, struct net_conf *ret, struct sh_error *err)
{
        const struct runt_config *cfg = net_mgr_config(nm);
        json_object *plugin, *caps, *plugins;

        memset(ret, 0, sizeof(*ret));
        ret->plugin_types = calloc(1, sizeof(char *));
        ret->plugin_paths = calloc(1, sizeof(char *));
        if (!ret->plugin_types || !ret->plugin_paths) {
                net_conf_done(ret);
                return -ENOMEM;
        }
        ret->n_plugins = 1;
        ret->plugin_paths[0] = net_find_plugin(cfg->cni_bin_dirs, "portmap");
        if (!ret->plugin_paths[0]) {
                net_conf_done(ret);
                return sh_err(err, -EBUSY,
                              "host ports of a pod networked elsewhere need the CNI portmap "
                              "plugin, which is in none of the CNI bin dirs (cni.bin_dirs)");
        }
        ret->plugin_types[0] = strdup("portmap");
        ret->path = strdup("");
        ret->name = strdup(HOSTPORT_NET);
        ret->cni_version = strdup(HOSTPORT_VERSION);
        ret->list = json_object_new_object();
        plugin = json_object_new_object();
        caps = json_object_new_object();
        plugins = json_object_new_array();
        if (!ret->plugin_types[0] || !ret->path || !ret->name || !ret->cni_version || !ret->list ||
            !plugin || !caps || !plugins) {
                json_object_put(plugin);
                json_object_put(caps);
                json_object_put(plugins);
                net_conf_done(ret);
                return -ENOMEM;
        }
        json_object_object_add(caps, "portMappings", json_object_new_boolean(true));
        json_object_object_add(plugin, "type", json_object_new_string("portmap"));
        json_object_object_add(plugin, "capabilities", caps);
        json_object_array_add(plugins, plugin);
        json_object_object_add(ret->list, "cniVersion", json_object_new_string(HOSTPORT_VERSION));
        json_object_object_add(ret->list, "name", json_object_new_string(HOSTPORT_NET));
        json_object_object_add(ret->list, "plugins", plugins);
        return 0;
}

/*
 * The result the pod's network would have given, for portmap's prevResult: one ips entry per
 * address of @cidrs, "ADDR/PREFIX" (a bare ADDR: /32 or /128), with no interface, so portmap
 * takes the first of each family as the pod's.
 */
static int own_result(char *const *cidrs, json_object **ret, struct sh_error *err)
{
        _cleanup_json_ json_object *res = json_object_new_object();
        json_object *ips = json_object_new_array();

        if (!res || !ips) {
                json_object_put(ips);
                return -ENOMEM;
        }
        json_object_object_add(res, "cniVersion", json_object_new_string(HOSTPORT_VERSION));
        json_object_object_add(res, "ips", ips);
        for (size_t i = 0; cidrs && cidrs[i]; i++) {
                const char *c = cidrs[i], *slash = strchr(c, '/');
                size_t len = slash ? (size_t)(slash - c) : strlen(c);
                unsigned char bin[sizeof(struct in6_addr)];
                char addr[INET6_ADDRSTRLEN], *end = NULL, text[INET6_ADDRSTRLEN + 5];
                long max, prefix;
                json_object *ip;

                if (len >= sizeof(addr))
                        return sh_err(err, -EINVAL, "pod address '%.64s' is not an address", c);
                memcpy(addr, c, len);
                addr[len] = '\0';
                if (inet_pton(AF_INET, addr, bin) == 1)
                        max = 32;
                else if (inet_pton(AF_INET6, addr, bin) == 1)
                        max = 128;
                else
                        return sh_err(err, -EINVAL, "pod address '%.64s' is not an address", c);
                prefix = max;
                if (slash) {
                        errno = 0;
                        prefix = strtol(slash + 1, &end, 10);
                        if (errno || end == slash + 1 || *end || prefix < 0 || prefix > max)
                                return sh_err(err, -EINVAL, "pod address '%.64s': bad prefix", c);
                }
                snprintf(text, sizeof(text), "%s/%ld", addr, prefix);
                ip = json_object_new_object();
                if (!ip)
                        return -ENOMEM;
                json_object_object_add(ip, "address", json_object_new_string(text));
                json_object_array_add(ips, ip);
        }
        if (json_object_array_length(ips) == 0)
                return sh_err(err, -EINVAL, "the pod has no address to forward its host ports to");
        *ret = TAKE_PTR(res);
        return 0;
}

static bool has_host_ports(const struct net_pod *pod)
{
        for (size_t i = 0; i < pod->n_ports; i++)
                if (pod->ports[i].host_port > 0)
                        return true;
        return false;
}

/* 1 and @conf (net_conf_done it) when @pod has host ports to forward, 0 when none, -errno. */
static int hostport_begin(struct net_mgr *nm, const struct net_pod *pod, struct net_conf *conf,
                          struct sh_error *err)
{
        int r;

        if (!has_host_ports(pod))
                return 0;
        r = sh_validate_name(pod->id, strlen(pod->id), "pod id", err);
        if (r == 0)
                r = hostport_conf(nm, conf, err);
        return r < 0 ? r : 1;
}

int net_hostports_claim(struct net_mgr *nm, const struct net_pod *pod, struct sh_error *err)
{
        _cleanup_free_ char *args = NULL, *cache = NULL;
        _cleanup_json_ json_object *rtconf = NULL;
        struct net_conf conf;
        int r = hostport_begin(nm, pod, &conf, err);

        if (r <= 0)
                return r;
        args = net_cni_args(pod);
        cache = net_cache_path(nm, pod->id);
        rtconf = net_runtime_config(pod);
        r = args && cache && rtconf
                    ? net_cache_claim(nm, cache, pod->id, NULL, args, &conf, rtconf, err)
                    : -ENOMEM;
        net_conf_done(&conf);
        return r;
}

int net_hostports_setup(struct net_mgr *nm, const struct net_pod *pod, char *const *cidrs,
                        struct sh_error *err)
{
        unsigned long long t0 = sh_now_ns();
        _cleanup_json_ json_object *prev = NULL;
        struct net_result res = {0};
        struct net_conf conf;
        int r = hostport_begin(nm, pod, &conf, err);

        if (r <= 0)
                return r;
        r = own_result(cidrs, &prev, err);
        if (r < 0) {
                net_conf_done(&conf);
                return r;
        }
        r = net_chain_add(nm, pod, NULL, &conf, prev, &res, err); /* frees @conf */
        net_result_done(&res);
        return net_mgr_observe(nm, NET_OP_ADD, t0, r);
}

int net_hostports_restore(struct net_mgr *nm, const char *id, struct sh_error *err)
{
        return net_cache_readd(nm, id, err);
}
