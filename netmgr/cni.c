/*
 * CNI plugin execution with libcni's semantics (libcni's api.go, written here in C): the
 * plugin chain of a network list run in order for ADD (prevResult chained) and in reverse
 * for DEL, name and cniVersion injected into each plugin's config, runtimeConfig holding
 * only the capabilities a plugin declares, loopback as a separate invocation on "lo", and
 * the ADD input cached so DEL after a restart gets exactly what ADD got.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SH_LOG_MODULE "netmgr"
#include "cleanup.h"
#include "exec.h"
#include "json.h"
#include "log.h"
#include "netmgr-internal.h"
#include "strutil.h"
#include "validate.h"

#define IFNAME     "eth0"
#define CACHE_KIND "runt-cni-cache"

void net_result_done(struct net_result *r)
{
        if (!r)
                return;
        sh_strv_free(r->ips);
        free(r->network);
        free(r->json);
        memset(r, 0, sizeof(*r));
}

/* "CNI_PATH": the bin dirs joined with ':'. */
static char *cni_path(char *const *dirs)
{
        size_t len = 1;
        char *s;

        for (size_t i = 0; dirs && dirs[i]; i++)
                len += strlen(dirs[i]) + 1;
        s = calloc(1, len);
        for (size_t i = 0, o = 0; s && dirs && dirs[i]; i++)
                o += (size_t)snprintf(s + o, len - o, "%s%s", i ? ":" : "", dirs[i]);
        return s;
}

struct invocation {
        struct net_mgr *nm;    /* for the plugin time counter */
        const char *command;   /* ADD, DEL, CHECK */
        const char *container; /* CNI_CONTAINERID */
        const char *netns;     /* CNI_NETNS */
        const char *ifname;    /* CNI_IFNAME */
        const char *args;      /* CNI_ARGS */
        char *const *bin_dirs; /* CNI_PATH */
        unsigned timeout_s;
};

/* An invocation of @command for pod @id with the configured bin dirs and plugin timeout. */
static struct invocation invocation_for(struct net_mgr *nm, const char *command, const char *id,
                                        const char *netns, const char *args)
{
        const struct runt_config *cfg = net_mgr_config(nm);

        return (struct invocation){
                .nm = nm,
                .command = command,
                .container = id,
                .netns = netns,
                .ifname = IFNAME,
                .args = args,
                .bin_dirs = cfg->cni_bin_dirs,
                .timeout_s = cfg->cni_plugin_timeout_s ? cfg->cni_plugin_timeout_s : 60,
        };
}

/* The plugin's environment: ours without any CNI_* of our own, plus the call's. */
static char **plugin_env(const struct invocation *inv)
{
        size_t n = 0, k = 0;
        char **env;

        while (environ[n])
                n++;
        env = calloc(n + 7, sizeof(char *));
        if (!env)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (strncmp(environ[i], "CNI_", 4) != 0 && !(env[k++] = strdup(environ[i])))
                        goto oom;
        {
                _cleanup_free_ char *path = cni_path(inv->bin_dirs);

                if (!path)
                        goto oom;
                env[k++] = sh_strdup_printf("CNI_COMMAND=%s", inv->command);
                env[k++] = sh_strdup_printf("CNI_CONTAINERID=%s", inv->container);
                env[k++] = sh_strdup_printf("CNI_NETNS=%s", inv->netns ? inv->netns : "");
                env[k++] = sh_strdup_printf("CNI_IFNAME=%s", inv->ifname);
                env[k++] = sh_strdup_printf("CNI_ARGS=%s", inv->args ? inv->args : "");
                env[k++] = sh_strdup_printf("CNI_PATH=%s", path);
                for (size_t i = k - 6; i < k; i++)
                        if (!env[i])
                                goto oom;
        }
        return env;
oom:
        sh_strv_free(env);
        return NULL;
}

int net_plugin_output(const char *type, const char *command, int exit_code, const char *out,
                      size_t out_len, const char *err_text, json_object **ret_result,
                      struct sh_error *err)
{
        int r;

        if (exit_code != 0) {
                json_object *e = NULL;
                const char *msg = NULL, *details = NULL;
                int64_t code = 0;

                if (sh_json_parse(out, out_len, "CNI error", &e, NULL) == 0) {
                        sh_json_get_string(e, "msg", "CNI error", &msg, NULL);
                        sh_json_get_string(e, "details", "CNI error", &details, NULL);
                        sh_json_get_int64(e, "code", "CNI error", &code, NULL);
                }
                if (msg)
                        r = sh_err(err, -EIO, "plugin %s %s failed (CNI code %lld): %s%s%s", type,
                                   command, (long long)code, msg, details && details[0] ? ": " : "",
                                   details ? details : "");
                else
                        r = sh_err(err, -EIO, "plugin %s %s failed (exit %d): %.300s", type,
                                   command, exit_code, err_text && err_text[0] ? err_text : out);
                net_json_putp(&e);
                return r;
        }
        if (ret_result) {
                struct sh_error perr = {0};

                r = sh_json_parse(out, out_len, "CNI result", ret_result, &perr);
                if (r == 0 && !json_object_is_type(*ret_result, json_type_object)) {
                        net_json_putp(ret_result);
                        r = -EINVAL;
                        sh_err(&perr, r, "not an object");
                }
                if (r < 0) {
                        r = sh_err(err, -EPROTO, "plugin %s %s returned a bad result: %s", type,
                                   command, perr.msg);
                        return r;
                }
        }
        return 0;
}

/*
 * Runs one plugin. ADD: *@ret_result is its result object (owned). A plugin error gives
 * -EIO with its msg and details (CNI error JSON on stdout) in @err.
 */
static int run_plugin(const struct invocation *inv, const char *path, const char *type,
                      json_object *input, json_object **ret_result, struct sh_error *err)
{
        _cleanup_strv_ char **env = plugin_env(inv);
        const char *argv[] = {path, NULL};
        const char *in = json_object_to_json_string_ext(input, JSON_C_TO_STRING_PLAIN);
        struct sh_exec_result res = {0};
        struct sh_exec_opts o = {
                .argv = argv,
                .envp = (const char *const *)env,
                .stdin_data = in,
                .stdin_len = strlen(in),
                .timeout_ms = inv->timeout_s * 1000u,
                .max_output = 4u << 20,
        };
        int r;

        unsigned long long t0 = sh_now_ns();

        if (!env)
                return -ENOMEM;
        r = sh_exec(&o, &res, err);
        net_mgr_count_plugin(inv->nm, sh_now_ns() - t0);
        if (r == -ETIMEDOUT) {
                sh_exec_result_done(&res);
                return sh_err(err, r, "plugin %s %s: no answer within %u s, killed", type,
                              inv->command, inv->timeout_s);
        }
        if (r < 0)
                return sh_err_prefix(err, r, "plugin %s %s", type, inv->command);
        r = net_plugin_output(type, inv->command, res.exit_code, res.out, res.out_len, res.err,
                              ret_result, err);
        sh_exec_result_done(&res);
        return r;
}

json_object *net_runtime_config(const struct net_pod *pod)
{
        json_object *rc = json_object_new_object();

        if (pod->n_ports) {
                json_object *pm = json_object_new_array();

                for (size_t i = 0; i < pod->n_ports; i++) {
                        const struct net_port *p = &pod->ports[i];
                        json_object *m;

                        /* host_port 0 declares a container port, not a host port: the kubelet
                         * sends one for every containerPort, and portmap refuses port 0. */
                        if (p->host_port <= 0)
                                continue;
                        m = json_object_new_object();

                        json_object_object_add(m, "hostPort", json_object_new_int(p->host_port));
                        json_object_object_add(m, "containerPort",
                                               json_object_new_int(p->container_port));
                        json_object_object_add(
                                m, "protocol",
                                json_object_new_string(p->protocol ? p->protocol : "tcp"));
                        json_object_object_add(
                                m, "hostIP", json_object_new_string(p->host_ip ? p->host_ip : ""));
                        json_object_array_add(pm, m);
                }
                if (json_object_array_length(pm))
                        json_object_object_add(rc, "portMappings", pm);
                else
                        json_object_put(pm);
        }
        if (pod->ingress_rate || pod->egress_rate) {
                json_object *bw = json_object_new_object();

                if (pod->ingress_rate) {
                        json_object_object_add(bw, "ingressRate",
                                               json_object_new_int64((int64_t)pod->ingress_rate));
                        json_object_object_add(
                                bw, "ingressBurst",
                                json_object_new_int64((int64_t)(pod->ingress_burst ?: 0x7fffffff)));
                }
                if (pod->egress_rate) {
                        json_object_object_add(bw, "egressRate",
                                               json_object_new_int64((int64_t)pod->egress_rate));
                        json_object_object_add(
                                bw, "egressBurst",
                                json_object_new_int64((int64_t)(pod->egress_burst ?: 0x7fffffff)));
                }
                json_object_object_add(rc, "bandwidth", bw);
        }
        if (pod->dns_servers || pod->dns_searches || pod->dns_options) {
                json_object *dns = json_object_new_object();
                struct {
                        const char *key;
                        char *const *v;
                } parts[] = {{"servers", pod->dns_servers},
                             {"searches", pod->dns_searches},
                             {"options", pod->dns_options}};

                for (size_t i = 0; i < SH_ARRAY_SIZE(parts); i++) {
                        json_object *a = json_object_new_array();

                        for (size_t k = 0; parts[i].v && parts[i].v[k]; k++)
                                json_object_array_add(a, json_object_new_string(parts[i].v[k]));
                        json_object_object_add(dns, parts[i].key, a);
                }
                json_object_object_add(rc, "dns", dns);
        }
        return rc;
}

/*
 * A plugin's stdin: its own config with the list's name and cniVersion, the previous
 * result, and runtimeConfig for the capabilities it declares (libcni's buildOneConfig).
 */
static json_object *plugin_input(json_object *plugin, const char *name, const char *version,
                                 json_object *prev, json_object *rtconf)
{
        json_object *in = NULL, *caps = NULL, *rc = NULL;

        if (json_object_deep_copy(plugin, &in, NULL) != 0)
                return NULL;
        json_object_object_add(in, "name", json_object_new_string(name));
        json_object_object_add(in, "cniVersion", json_object_new_string(version));
        json_object_object_del(in, "runtimeConfig");
        if (prev)
                json_object_object_add(in, "prevResult", json_object_get(prev));
        if (json_object_object_get_ex(plugin, "capabilities", &caps) &&
            json_object_is_type(caps, json_type_object) && rtconf) {
                json_object_object_foreach (caps, key, val) {
                        json_object *v;

                        if (json_object_get_boolean(val) &&
                            json_object_object_get_ex(rtconf, key, &v)) {
                                if (!rc)
                                        rc = json_object_new_object();
                                json_object_object_add(rc, key, json_object_get(v));
                        }
                }
        }
        if (rc)
                json_object_object_add(in, "runtimeConfig", rc);
        return in;
}

static bool version_at_least_040(const char *v)
{
        return v && (strcmp(v, "0.4.0") == 0 || strncmp(v, "1.", 2) == 0);
}

char *net_cache_path(struct net_mgr *nm, const char *id)
{
        return sh_strdup_printf("%s/%s.json", net_mgr_cache_dir(nm), id);
}

char *net_find_plugin(char *const *dirs, const char *type)
{
        for (size_t i = 0; dirs && dirs[i]; i++) {
                char *p = sh_path_join(dirs[i], type);

                if (p && access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return NULL;
}

/* Loopback ADD or DEL ("lo" comes up in the pod's namespace). */
static int loopback(struct invocation inv, const char *version, struct sh_error *err)
{
        _cleanup_free_ char *path = net_find_plugin(inv.bin_dirs, "loopback");
        _cleanup_json_ json_object *in = json_object_new_object();
        _cleanup_json_ json_object *res = NULL;

        if (!path)
                return sh_err(err, -ENOENT, "plugin loopback was not found in the CNI bin dirs");
        json_object_object_add(in, "cniVersion", json_object_new_string(version));
        json_object_object_add(in, "name", json_object_new_string("cni-loopback"));
        json_object_object_add(in, "type", json_object_new_string("loopback"));
        inv.ifname = "lo";
        return run_plugin(&inv, path, "loopback", in, strcmp(inv.command, "ADD") ? NULL : &res,
                          err);
}

/*
 * Loopback beside the network's own plugins: it brings "lo" up (ADD) or down (DEL) in the
 * pod's namespace and touches nothing they do, so it need not wait for them nor they for it
 * (libcni runs it as a network of its own). Runs here when no thread can be had.
 */
struct lo_job {
        struct invocation inv;
        const char *version;
        struct sh_error err;
        pthread_t thread;
        bool started;
        int r;
};

static void *lo_run(void *arg)
{
        struct lo_job *j = arg;

        j->r = loopback(j->inv, j->version, &j->err);
        return NULL;
}

static void lo_start(struct lo_job *j, struct invocation inv, const char *command,
                     const char *version)
{
        j->inv = inv;
        j->inv.command = command;
        j->version = version;
        j->started = pthread_create(&j->thread, NULL, lo_run, j) == 0;
        if (!j->started)
                lo_run(j);
}

/* Waits for @j (again: 0 at once); its result. */
static int lo_join(struct lo_job *j)
{
        if (j->started)
                pthread_join(j->thread, NULL);
        j->started = false;
        return j->r;
}

int net_result_facts(json_object *result, const char *network, struct net_result *ret)
{
        json_object *ips = NULL;
        size_t n = 0;

        memset(ret, 0, sizeof(*ret));
        ret->ips = calloc(1, sizeof(char *));
        ret->network = strdup(network);
        ret->json = sh_json_to_string(result);
        if (!ret->ips || !ret->network || !ret->json)
                goto oom;
        if (!json_object_object_get_ex(result, "ips", &ips) ||
            !json_object_is_type(ips, json_type_array))
                return 0;
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < json_object_array_length(ips); i++) {
                        json_object *ip = json_object_array_get_idx(ips, i);
                        const char *addr = NULL;
                        char **v;

                        if (sh_json_get_string(ip, "address", "CNI result", &addr, NULL) < 0)
                                continue;
                        size_t len = strcspn(addr, "/");
                        char one[INET6_ADDRSTRLEN];
                        unsigned char bin[sizeof(struct in6_addr)];

                        if ((strchr(addr, ':') != NULL) != (pass == 1))
                                continue;
                        /* Only an address the kubelet can parse ("/fd00::" gave ""). */
                        if (len >= sizeof(one))
                                continue;
                        memcpy(one, addr, len);
                        one[len] = '\0';
                        if (inet_pton(pass == 1 ? AF_INET6 : AF_INET, one, bin) != 1)
                                continue;
                        v = realloc(ret->ips, (n + 2) * sizeof(char *));
                        if (!v)
                                goto oom;
                        ret->ips = v;
                        v[n] = strdup(one);
                        v[n + 1] = NULL;
                        if (!v[n++])
                                goto oom;
                }
        return 0;
oom:
        net_result_done(ret);
        return -ENOMEM;
}

char *net_cni_args(const struct net_pod *pod)
{
        return sh_strdup_printf("IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;"
                                "K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s",
                                pod->namespace ? pod->namespace : "", pod->name ? pod->name : "",
                                pod->id, pod->uid ? pod->uid : "");
}

/*
 * Runs DEL for plugins @from-1 .. @down_to of @plugins (errors kept, the first one
 * reported).
 */
static int del_chain(const struct invocation *base, json_object *plugins, size_t from,
                     size_t down_to, const char *name, const char *version, json_object *result,
                     json_object *rtconf, char *const *paths, struct sh_error *err)
{
        struct invocation inv = *base;
        int first = 0;

        inv.command = "DEL";
        for (size_t i = from; i-- > down_to;) {
                json_object *p = json_object_array_get_idx(plugins, i);
                const char *type = NULL;
                _cleanup_free_ char *found = NULL;
                _cleanup_json_ json_object *in = NULL;
                struct sh_error e = {0};
                int r;

                sh_json_get_string(p, "type", "CNI config", &type, NULL);
                if (!type || !type[0] || strchr(type, '/')) {
                        if (!first)
                                first = sh_err(err, -EINVAL, "plugin %zu has no usable type", i);
                        continue;
                }
                if (!paths || !paths[i])
                        found = net_find_plugin(inv.bin_dirs, type);
                in = plugin_input(p, name, version, result, rtconf);
                if (!in)
                        return -ENOMEM;
                if (!(paths && paths[i]) && !found)
                        r = sh_err(&e, -ENOENT, "plugin %s was not found in the CNI bin dirs",
                                   type);
                else
                        r = run_plugin(&inv, paths && paths[i] ? paths[i] : found, type, in, NULL,
                                       &e);
                if (r < 0 && !first) {
                        first = r;
                        if (err)
                                *err = e;
                }
        }
        return first;
}

/*
 * Writes pod @id's cache: everything ADD is given (@list, @rtconf, @args, @netns, the
 * ifname) and, once ADD is done, its @result (NULL before). Written before the first plugin
 * runs, so that a crash during ADD still leaves what DEL needs to undo it. @netns NULL: a
 * pod with no namespace here, whose network is its host ports alone ("hostPortsOnly").
 */
static int write_cache(struct net_mgr *nm, const char *path, const char *id, const char *netns,
                       const char *args, const struct net_conf *conf, json_object *rtconf,
                       json_object *result, struct sh_error *err)
{
        _cleanup_json_ json_object *doc = json_object_new_object();
        _cleanup_free_ char *text = NULL;
        int r;

        json_object_object_add(doc, "kind", json_object_new_string(CACHE_KIND));
        json_object_object_add(doc, "containerId", json_object_new_string(id));
        json_object_object_add(doc, "netns", json_object_new_string(netns ? netns : ""));
        if (!netns)
                json_object_object_add(doc, "hostPortsOnly", json_object_new_boolean(true));
        json_object_object_add(doc, "ifname", json_object_new_string(IFNAME));
        json_object_object_add(doc, "cniArgs", json_object_new_string(args));
        json_object_object_add(doc, "configFile",
                               json_object_new_string(conf->path ? conf->path : ""));
        json_object_object_add(doc, "config", json_object_get(conf->list));
        json_object_object_add(doc, "runtimeConfig", json_object_get(rtconf));
        if (result)
                json_object_object_add(doc, "result", json_object_get(result));
        text = sh_json_to_string(doc);
        r = text ? sh_mkdir_p(net_mgr_cache_dir(nm), 0700) : -ENOMEM;
        if (r == 0)
                r = sh_write_file_atomic(path, text, strlen(text), 0600);
        return r < 0 ? sh_err(err, r, "write CNI cache '%s': %s", path, strerror(-r)) : 0;
}

int net_cache_claim(struct net_mgr *nm, const char *path, const char *id, const char *netns,
                    const char *args, const struct net_conf *conf, json_object *rtconf,
                    struct sh_error *err)
{
        json_object *maps = NULL;
        int r;

        if (!net_list_maps_ports(conf->list) ||
            !json_object_object_get_ex(rtconf, "portMappings", &maps))
                return write_cache(nm, path, id, netns, args, conf, rtconf, NULL, err);
        /* The look at the other pods' caches and the write are one step for every claim. */
        pthread_mutex_lock(net_mgr_ports_lock(nm));
        r = net_ports_check(nm, id, maps, err);
        if (r == 0)
                r = write_cache(nm, path, id, netns, args, conf, rtconf, NULL, err);
        pthread_mutex_unlock(net_mgr_ports_lock(nm));
        return r;
}

int net_chain_add(struct net_mgr *nm, const struct net_pod *pod, const char *netns,
                  struct net_conf *conf, json_object *first_prev, struct net_result *ret,
                  struct sh_error *err)
{
        _cleanup_free_ char *args = NULL, *cache = NULL;
        _cleanup_json_ json_object *rtconf = NULL;
        _cleanup_json_ json_object *prev = first_prev ? json_object_get(first_prev) : NULL;
        json_object *plugins = NULL;
        struct invocation inv;
        struct lo_job lo = {0};
        size_t done = 0;
        int r;

        args = net_cni_args(pod);
        cache = net_cache_path(nm, pod->id);
        rtconf = net_runtime_config(pod);
        if (!args || !cache || !rtconf) {
                net_conf_done(conf);
                return -ENOMEM;
        }
        inv = invocation_for(nm, "ADD", pod->id, netns ? netns : NET_NETNS_NONE, args);
        json_object_object_get_ex(conf->list, "plugins", &plugins);

        r = net_cache_claim(nm, cache, pod->id, netns, args, conf, rtconf, err);
        if (r < 0)
                goto fail;
        if (netns)
                lo_start(&lo, inv, "ADD", conf->cni_version);
        for (; done < conf->n_plugins; done++) {
                _cleanup_json_ json_object *in =
                        plugin_input(json_object_array_get_idx(plugins, done), conf->name,
                                     conf->cni_version, prev, rtconf);
                json_object *res = NULL;

                if (!in) {
                        r = -ENOMEM;
                        goto undo;
                }
                r = run_plugin(&inv, conf->plugin_paths[done], conf->plugin_types[done], in, &res,
                               err);
                if (r < 0)
                        goto undo;
                net_json_putp(&prev);
                prev = res;
        }
        if (!prev) {
                r = sh_err(err, -EPROTO, "network %s gave no result", conf->name);
                goto undo;
        }
        if (lo_join(&lo) < 0) {
                r = lo.r;
                if (err)
                        *err = lo.err;
                goto undo;
        }

        /* The result joins the input already cached, so DEL after a restart gets both. */
        r = write_cache(nm, cache, pod->id, netns, args, conf, rtconf, prev, err);
        if (r < 0)
                goto undo;
        r = net_result_facts(prev, conf->name, ret);
        if (r < 0)
                goto undo;
        net_conf_done(conf);
        return 0;

undo:
        /*
         * Undo, newest first: the plugins that succeeded, and the one that failed too, since
         * a plugin can fail after making things (bridge makes the veth before its IPAM
         * fails) and CNI's DEL is the way to clean up after it. The error reported is the
         * one that stopped us.
         */
        {
                struct sh_error ignored = {0};
                int rd;

                lo_join(&lo);
                /* The one that failed: best effort (a bad config fails its DEL as well). */
                if (done < conf->n_plugins)
                        del_chain(&inv, plugins, done + 1, done, conf->name, conf->cni_version,
                                  prev, rtconf, conf->plugin_paths, &ignored);
                rd = del_chain(&inv, plugins, done, 0, conf->name, conf->cni_version, prev, rtconf,
                               conf->plugin_paths, &ignored);
                inv.command = "DEL";
                if (netns)
                        loopback(inv, conf->cni_version, &ignored);
                /*
                 * A DEL of a plugin whose ADD succeeded that failed keeps the cache: what it
                 * made (an address, chains) is DELeted again later.
                 */
                if (rd < 0) {
                        sh_log_debug("pod=%s undo of a failed ADD failed, cache kept: %s", pod->id,
                                     ignored.msg);
                        goto fail;
                }
        }
        unlink(cache);
fail:
        r = sh_err_prefix(err, r, "network %s", conf->name ? conf->name : "?");
        net_conf_done(conf);
        return r;
}

static int do_setup(struct net_mgr *nm, const struct net_pod *pod, const char *netns,
                    struct net_result *ret, struct sh_error *err)
{
        const struct runt_config *cfg = net_mgr_config(nm);
        struct net_conf conf = {0};
        int r;

        r = sh_validate_name(pod->id, strlen(pod->id), "pod id", err);
        if (r < 0)
                return r;
        r = net_conf_load(cfg->cni_conf_dir, cfg->cni_bin_dirs, &conf, err);
        if (r < 0)
                return sh_err_prefix(err, r == -ENOENT ? -EAGAIN : r, "network not ready");
        return net_chain_add(nm, pod, netns, &conf, NULL, ret, err);
}

int net_setup(struct net_mgr *nm, const struct net_pod *pod, const char *netns,
              struct net_result *ret, struct sh_error *err)
{
        unsigned long long t0 = sh_now_ns();

        return net_mgr_observe(nm, NET_OP_ADD, t0, do_setup(nm, pod, netns, ret, err));
}

/* Reads pod @id's cache. -ENOENT when there is none. */
static int read_cache(struct net_mgr *nm, const char *id, json_object **ret, struct sh_error *err)
{
        _cleanup_free_ char *path = net_cache_path(nm, id);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r;

        if (!path)
                return -ENOMEM;
        r = sh_read_file(path, NET_CACHE_MAX, &buf, &len);
        if (r == -ENOENT)
                return r;
        if (r < 0)
                return sh_err(err, r, "read CNI cache '%s': %s", path, strerror(-r));
        return net_cache_parse(buf, len, path, ret, err);
}

int net_cache_parse(const char *text, size_t len, const char *path, json_object **ret,
                    struct sh_error *err)
{
        const char *kind = NULL;
        int r;

        r = sh_json_parse(text, len, path, ret, err);
        if (r < 0)
                return r;
        if (sh_json_get_string(*ret, "kind", path, &kind, NULL) < 0 || strcmp(kind, CACHE_KIND)) {
                net_json_putp(ret);
                return sh_err(err, -EINVAL, "%s is not a runt CNI cache", path);
        }
        return 0;
}

static int load_cached(struct net_mgr *nm, const char *id, struct net_cached *c,
                       struct sh_error *err)
{
        int r;

        memset(c, 0, sizeof(*c));
        r = sh_validate_name(id, strlen(id), "pod id", err);
        if (r < 0)
                return r;
        r = read_cache(nm, id, &c->doc, err);
        if (r < 0)
                return r;
        return net_cached_fields(c, id, err);
}

int net_cached_fields(struct net_cached *c, const char *id, struct sh_error *err)
{
        if (sh_json_get_object(c->doc, "config", "CNI cache", &c->list, err) < 0 ||
            sh_json_get_array(c->list, "plugins", "CNI cache", &c->plugins, err) < 0 ||
            sh_json_get_string(c->list, "name", "CNI cache", &c->name, err) < 0 ||
            sh_json_get_string(c->list, "cniVersion", "CNI cache", &c->version, err) < 0) {
                net_json_putp(&c->doc);
                return sh_err(err, -EINVAL, "CNI cache of pod %s is damaged", id);
        }
        json_object_object_get_ex(c->doc, "runtimeConfig", &c->rtconf);
        json_object_object_get_ex(c->doc, "result", &c->result);
        sh_json_get_string(c->doc, "netns", "CNI cache", &c->netns, NULL);
        sh_json_get_string(c->doc, "cniArgs", "CNI cache", &c->args, NULL);
        return 0;
}

/*
 * DEL for pod @id without a cache. net_setup caches before ADD starts, so ADD never began;
 * but state left by an older runtd has no such cache, and its ADD may have run when the
 * pod's namespace is still there. Then DEL runs with the current config, as libcni does
 * without a cache (DEL of what was never added is fine for a plugin).
 */
static int teardown_uncached(struct net_mgr *nm, const char *id, struct sh_error *err)
{
        const struct runt_config *cfg = net_mgr_config(nm);
        _cleanup_free_ char *netns = net_netns_path(nm, id), *args = NULL;
        struct net_conf conf = {0};
        struct sh_error ignored = {0};
        json_object *plugins = NULL;
        struct invocation inv;
        int r;

        if (!netns)
                return -ENOMEM;
        if (!net_netns_live(netns))
                return 0; /* never set up, or torn down already */
        r = net_conf_load(cfg->cni_conf_dir, cfg->cni_bin_dirs, &conf, &ignored);
        if (r < 0) {
                sh_log_debug("pod=%s no CNI cache and no usable config, no DEL: %s", id,
                             ignored.msg);
                return 0;
        }
        args = sh_strdup_printf("IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID=%s", id);
        if (!args) {
                net_conf_done(&conf);
                return -ENOMEM;
        }
        inv = invocation_for(nm, "DEL", id, netns, args);
        json_object_object_get_ex(conf.list, "plugins", &plugins);
        r = del_chain(&inv, plugins, conf.n_plugins, 0, conf.name, conf.cni_version, NULL, NULL,
                      conf.plugin_paths, err);
        loopback(inv, conf.cni_version, &ignored);
        net_conf_done(&conf);
        return r < 0 ? sh_err_prefix(err, r, "network teardown of pod %s (no cache)", id) : 0;
}

static int do_teardown(struct net_mgr *nm, const char *id, struct sh_error *err)
{
        _cleanup_free_ char *path = NULL;
        struct net_cached c;
        struct invocation inv;
        struct lo_job lo = {0};
        const char *netns;
        int r, rl;

        r = load_cached(nm, id, &c, err);
        if (r == -ENOENT)
                return teardown_uncached(nm, id, err);
        if (r < 0)
                return r;
        /*
         * A namespace that is gone (or a file left where it was mounted) is passed as none:
         * the plugins then release what lives outside it (the IPAM lease, portmap's chains),
         * where a path they cannot enter would fail the DEL.
         */
        netns = c.netns && net_netns_live(c.netns) ? c.netns : "";
        inv = invocation_for(nm, "DEL", id, netns, c.args);
        if (netns[0])
                lo_start(&lo, inv, "DEL", c.version);
        r = del_chain(&inv, c.plugins, json_object_array_length(c.plugins), 0, c.name, c.version,
                      c.result, c.rtconf, NULL, err);
        rl = lo_join(&lo);
        net_json_putp(&c.doc);
        if (r < 0)
                return sh_err_prefix(err, r, "network teardown of pod %s", id);
        if (rl < 0)
                sh_log_debug("pod=%s loopback DEL failed, ignoring: %s", id, lo.err.msg);
        path = net_cache_path(nm, id);
        if (path && unlink(path) < 0 && errno != ENOENT)
                return sh_err(err, -errno, "remove CNI cache '%s': %s", path, strerror(errno));
        return 0;
}

int net_cache_readd(struct net_mgr *nm, const char *id, struct sh_error *err)
{
        _cleanup_json_ json_object *prev = NULL;
        struct net_cached c;
        struct invocation inv;
        bool only = false;
        int r = load_cached(nm, id, &c, err);

        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        sh_json_get_bool(c.doc, "hostPortsOnly", "CNI cache", &only, NULL);
        if (!only || !c.result) {
                net_json_putp(&c.doc);
                return 0;
        }
        /*
         * Its network is portmap alone, which hands its prevResult back: the cached result
         * is the prevResult its ADD had.
         */
        prev = json_object_get(c.result);
        inv = invocation_for(nm, "ADD", id, NET_NETNS_NONE, c.args);
        for (size_t i = 0; r == 0 && i < json_object_array_length(c.plugins); i++) {
                json_object *p = json_object_array_get_idx(c.plugins, i);
                const char *type = NULL;
                _cleanup_free_ char *path = NULL;
                _cleanup_json_ json_object *in = NULL;
                json_object *res = NULL;

                sh_json_get_string(p, "type", "CNI cache", &type, NULL);
                path = type && !strchr(type, '/') ? net_find_plugin(inv.bin_dirs, type) : NULL;
                if (!path) {
                        r = sh_err(err, -ENOENT, "plugin %s was not found in the CNI bin dirs",
                                   type ? type : "?");
                        break;
                }
                in = plugin_input(p, c.name, c.version, prev, c.rtconf);
                r = in ? run_plugin(&inv, path, type, in, &res, err) : -ENOMEM;
                if (r == 0) {
                        net_json_putp(&prev);
                        prev = res;
                }
        }
        net_json_putp(&c.doc);
        return r < 0 ? sh_err_prefix(err, r, "host ports of pod %.12s", id) : 0;
}

int net_teardown(struct net_mgr *nm, const char *id, struct sh_error *err)
{
        unsigned long long t0 = sh_now_ns();

        return net_mgr_observe(nm, NET_OP_DEL, t0, do_teardown(nm, id, err));
}

/* Is /proc/@pid's CNI_CONTAINERID one of @ids? (A zombie's environment reads empty.) */
static bool plugin_of(const char *pid, char *const *ids)
{
        static const char key[] = "CNI_CONTAINERID=";
        _cleanup_free_ char *path = sh_strdup_printf("/proc/%s/environ", pid);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;

        if (!path || sh_read_file(path, 1u << 20, &buf, &len) < 0)
                return false;
        for (size_t o = 0; o < len; o += strlen(buf + o) + 1) {
                if (strncmp(buf + o, key, sizeof(key) - 1) != 0)
                        continue;
                for (size_t i = 0; ids[i]; i++)
                        if (strcmp(buf + o + sizeof(key) - 1, ids[i]) == 0)
                                return true;
                return false;
        }
        return false;
}

/* The process groups of live plugins run for one of @ids (up to @max of them). */
static size_t plugin_groups(char *const *ids, pid_t *ret, size_t max)
{
        DIR *d = opendir("/proc");
        struct dirent *e;
        size_t n = 0;

        if (!d)
                return 0;
        while ((e = readdir(d)) && n < max) {
                pid_t pgid;

                if (e->d_name[0] < '1' || e->d_name[0] > '9' || !plugin_of(e->d_name, ids))
                        continue;
                pgid = getpgid((pid_t)atol(e->d_name));
                if (pgid > 1 && pgid != getpgrp())
                        ret[n++] = pgid;
        }
        closedir(d);
        return n;
}

int net_wait_plugins(struct net_mgr *nm, char *const *ids, struct sh_error *err)
{
        const struct runt_config *cfg = net_mgr_config(nm);
        unsigned long long deadline =
                sh_now_ns() +
                (cfg->cni_plugin_timeout_s ? cfg->cni_plugin_timeout_s : 60) * 1000000000ULL;
        bool killed = false;
        pid_t groups[64];
        size_t n;

        if (!ids || !ids[0])
                return 0;
        while ((n = plugin_groups(ids, groups, SH_ARRAY_SIZE(groups))) > 0) {
                if (sh_now_ns() > deadline) {
                        if (killed)
                                return sh_err(err, -ETIMEDOUT, "CNI plugins outlive SIGKILL");
                        /* As a timeout in run_plugin would have: the whole group goes. */
                        for (size_t i = 0; i < n; i++)
                                kill(-groups[i], SIGKILL);
                        killed = true;
                        deadline = sh_now_ns() + 2000000000ULL;
                }
                nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
        }
        return 0;
}

char **net_cache_ids(struct net_mgr *nm)
{
        DIR *d = opendir(net_mgr_cache_dir(nm));
        char **v = calloc(1, sizeof(char *));
        size_t n = 0;
        struct dirent *e;

        while (d && v && (e = readdir(d))) {
                size_t len = strlen(e->d_name);
                char **nv;

                if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".json"))
                        continue;
                nv = realloc(v, (n + 2) * sizeof(char *));
                if (!nv)
                        break;
                v = nv;
                v[n] = strndup(e->d_name, len - 5);
                v[n + 1] = NULL;
                if (v[n])
                        n++;
        }
        if (d)
                closedir(d);
        return v;
}

void net_cache_sweep(struct net_mgr *nm)
{
        DIR *d = opendir(net_mgr_cache_dir(nm));
        struct dirent *e;

        if (!d)
                return;
        /* sh_write_file_atomic's temp files are ".<name>.XXXXXX"; a cache is "<id>.json". */
        while ((e = readdir(d)))
                if (e->d_name[0] == '.' && e->d_type == DT_REG)
                        unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
}

static int do_check(struct net_mgr *nm, const char *id, struct sh_error *err)
{
        struct net_cached c;
        struct invocation inv;
        int r = load_cached(nm, id, &c, err);

        if (r == -ENOENT)
                return sh_err(err, r, "pod %s has no network set up", id);
        if (r < 0)
                return r;
        if (!c.result) {
                net_json_putp(&c.doc);
                return sh_err(err, -EINVAL, "the CNI ADD of pod %s did not finish", id);
        }
        if (!version_at_least_040(c.version)) {
                net_json_putp(&c.doc);
                return 0; /* CHECK arrived with CNI 0.4.0 */
        }
        inv = invocation_for(nm, "CHECK", id, c.netns, c.args);
        for (size_t i = 0; r == 0 && i < json_object_array_length(c.plugins); i++) {
                json_object *p = json_object_array_get_idx(c.plugins, i);
                const char *type = NULL;
                _cleanup_free_ char *pp = NULL;
                _cleanup_json_ json_object *in = NULL;

                sh_json_get_string(p, "type", "CNI cache", &type, NULL);
                pp = type && !strchr(type, '/') ? net_find_plugin(inv.bin_dirs, type) : NULL;
                if (!pp) {
                        r = sh_err(err, -ENOENT, "plugin %s was not found in the CNI bin dirs",
                                   type ? type : "?");
                        break;
                }
                in = plugin_input(p, c.name, c.version, c.result, c.rtconf);
                r = in ? run_plugin(&inv, pp, type, in, NULL, err) : -ENOMEM;
        }
        net_json_putp(&c.doc);
        return r;
}

int net_check(struct net_mgr *nm, const char *id, struct sh_error *err)
{
        unsigned long long t0 = sh_now_ns();

        return net_mgr_observe(nm, NET_OP_CHECK, t0, do_check(nm, id, err));
}

int net_status(struct net_mgr *nm, const char *id, struct net_result *ret, struct sh_error *err)
{
        struct net_cached c;
        int r = load_cached(nm, id, &c, err);

        if (r < 0)
                return r;
        r = c.result ? net_result_facts(c.result, c.name, ret)
                     : sh_err(err, -EINVAL, "CNI cache of pod %s has no result", id);
        net_json_putp(&c.doc);
        return r;
}
