#include "netmgr.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "metrics.h"
#include "netmgr-internal.h"
#include "strutil.h"

struct net_mgr {
        const struct runt_config *cfg;
        char *cache_dir;            /* <state_dir>/cni */
        pthread_mutex_t ports_lock; /* held across a host-port claim (net_cache_claim) */
        _Atomic unsigned long long plugin_ns;
        /* Set once before serving (net_mgr_set_metrics), then only added to. */
        struct sh_histogram *op_seconds[NET_OP_COUNT];
        struct sh_counter *op_errors[NET_OP_COUNT];
};

static const char *const net_op_names[NET_OP_COUNT] = {
        [NET_OP_ADD] = "ADD",
        [NET_OP_DEL] = "DEL",
        [NET_OP_CHECK] = "CHECK",
};

static const char *const op_label[] = {"op", NULL};

static const struct sh_metric_desc cni_seconds_desc = {
        .name = "runt_cni_operation_duration_seconds",
        .help = "Time a pod's CNI operation took (the whole plugin chain, loopback included), "
                "failed ones included, by CNI command.",
        .labels = op_label,
        .buckets = sh_metrics_latency_buckets,
        .n_buckets = SH_METRICS_LATENCY_BUCKETS_N,
};

static const struct sh_metric_desc cni_errors_desc = {
        .name = "runt_cni_operation_errors_total",
        .help = "CNI operations that failed, by CNI command.",
        .labels = op_label,
};

int net_mgr_set_metrics(struct net_mgr *nm, struct sh_metrics *metrics, struct sh_error *err)
{
        int r = 0;

        for (size_t i = 0; metrics && r == 0 && i < NET_OP_COUNT; i++) {
                const char *values[] = {net_op_names[i], NULL};

                r = sh_metrics_histogram(metrics, &cni_seconds_desc, values, &nm->op_seconds[i],
                                         err);
                if (r == 0)
                        r = sh_metrics_counter(metrics, &cni_errors_desc, values, &nm->op_errors[i],
                                               err);
        }
        return r;
}

int net_mgr_observe(struct net_mgr *nm, enum net_op op, unsigned long long t0, int r)
{
        sh_histogram_observe_ns(nm->op_seconds[op], sh_now_ns() - t0);
        if (r < 0)
                sh_counter_add(nm->op_errors[op], 1);
        return r;
}

int net_mgr_new(const struct runt_config *cfg, struct net_mgr **ret, struct sh_error *err)
{
        struct net_mgr *nm = calloc(1, sizeof(*nm));

        (void)err;
        if (!nm)
                return -ENOMEM;
        nm->cfg = cfg;
        nm->cache_dir = sh_path_join(cfg->state_dir, "cni");
        if (!nm->cache_dir) {
                free(nm);
                return -ENOMEM;
        }
        pthread_mutex_init(&nm->ports_lock, NULL);
        *ret = nm;
        return 0;
}

struct net_mgr *net_mgr_free(struct net_mgr *nm)
{
        if (!nm)
                return NULL;
        pthread_mutex_destroy(&nm->ports_lock);
        free(nm->cache_dir);
        free(nm);
        return NULL;
}

void net_mgr_count_plugin(struct net_mgr *nm, unsigned long long ns)
{
        nm->plugin_ns += ns;
}

pthread_mutex_t *net_mgr_ports_lock(struct net_mgr *nm)
{
        return &nm->ports_lock;
}

unsigned long long net_mgr_plugin_ns(struct net_mgr *nm)
{
        return nm->plugin_ns;
}

const struct runt_config *net_mgr_config(struct net_mgr *nm)
{
        return nm->cfg;
}

const char *net_mgr_run_dir(struct net_mgr *nm)
{
        return nm->cfg->run_dir;
}

const char *net_mgr_cache_dir(struct net_mgr *nm)
{
        return nm->cache_dir;
}

/* Appends "PREFIX a b c\n" for a non-empty list. */
static int put_list(FILE *f, const char *prefix, char *const *v)
{
        if (!v || !v[0])
                return 0;
        fputs(prefix, f);
        for (size_t i = 0; v[i]; i++)
                fprintf(f, " %s", v[i]);
        return fputc('\n', f) == EOF ? -EIO : 0;
}

static int write_text(const char *dir, const char *name, const char *text, size_t len,
                      struct sh_error *err)
{
        _cleanup_free_ char *path = sh_path_join(dir, name);
        int r;

        if (!path)
                return -ENOMEM;
        /* No fsync: the pod's files serve its containers, which do not outlive a reboot. */
        r = sh_write_file_replace(path, text, len, 0644);
        return r < 0 ? sh_err(err, r, "write '%s': %s", path, strerror(-r)) : 0;
}

/* Closes the memstream @f and writes what it holds to @dir/@name. */
static int write_stream(FILE *f, char **buf, size_t *len, const char *dir, const char *name,
                        struct sh_error *err)
{
        int r;

        fclose(f);
        r = *buf ? write_text(dir, name, *buf, *len, err) : -ENOMEM;
        free(*buf);
        *buf = NULL;
        return r;
}

int net_write_pod_files(const char *dir, const struct net_dns *dns, const char *hostname,
                        char *const *ips, struct sh_error *err)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f;
        int r;

        r = sh_mkdir_p(dir, 0755);
        if (r < 0)
                return sh_err(err, r, "create '%s': %s", dir, strerror(-r));
        /* resolv.conf: the pod's DNSConfig, or the host's as it is. */
        if (dns && (dns->servers || dns->searches || dns->options)) {
                f = open_memstream(&buf, &len);
                if (!f)
                        return -ENOMEM;
                put_list(f, "search", dns->searches);
                for (size_t i = 0; dns->servers && dns->servers[i]; i++)
                        fprintf(f, "nameserver %s\n", dns->servers[i]);
                put_list(f, "options", dns->options);
                r = write_stream(f, &buf, &len, dir, "resolv.conf", err);
        } else {
                r = sh_read_file("/etc/resolv.conf", 1 << 20, &buf, &len);
                if (r == -ENOENT)
                        r = write_text(dir, "resolv.conf", "", 0, err);
                else if (r == 0)
                        r = write_text(dir, "resolv.conf", buf, len, err);
                free(buf);
                buf = NULL;
        }
        if (r < 0)
                return r;

        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        fprintf(f, "%s\n", hostname ? hostname : "");
        r = write_stream(f, &buf, &len, dir, "hostname", err);
        if (r < 0)
                return r;

        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        fputs("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
              "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\n"
              "fe00::2\tip6-allrouters\n",
              f);
        for (size_t i = 0; hostname && hostname[0] && ips && ips[i]; i++)
                fprintf(f, "%s\t%s\n", ips[i], hostname);
        return write_stream(f, &buf, &len, dir, "hosts", err);
}

void net_mgr_condition(struct net_mgr *nm, struct sh_condition *ret)
{
        struct net_conf c;
        struct sh_error err = {0};

        memset(ret, 0, sizeof(*ret));
        if (net_conf_load(nm->cfg->cni_conf_dir, nm->cfg->cni_bin_dirs, &c, &err) == 0) {
                ret->ok = true;
                net_conf_done(&c);
                return;
        }
        snprintf(ret->reason, sizeof(ret->reason), "NetworkPluginNotReady");
        snprintf(ret->message, sizeof(ret->message), "cni config not ready: %s", err.msg);
}

char *net_mgr_info_json(struct net_mgr *nm)
{
        json_object *o = json_object_new_object();
        json_object *bins = json_object_new_array();
        struct net_conf c;
        struct sh_error err = {0};
        char *s;

        json_object_object_add(o, "confDir", json_object_new_string(nm->cfg->cni_conf_dir));
        for (size_t i = 0; nm->cfg->cni_bin_dirs && nm->cfg->cni_bin_dirs[i]; i++)
                json_object_array_add(bins, json_object_new_string(nm->cfg->cni_bin_dirs[i]));
        json_object_object_add(o, "binDirs", bins);
        /* Time spent in CNI plugins since start (the lifecycle benchmark reports it apart). */
        json_object_object_add(o, "pluginTimeNs",
                               json_object_new_int64((int64_t)net_mgr_plugin_ns(nm)));
        if (net_conf_load(nm->cfg->cni_conf_dir, nm->cfg->cni_bin_dirs, &c, &err) == 0) {
                json_object_object_add(o, "configFile", json_object_new_string(c.path));
                json_object_object_add(o, "network", json_object_new_string(c.name));
                json_object_object_add(o, "config", json_object_get(c.list));
                net_conf_done(&c);
        } else {
                json_object_object_add(o, "error", json_object_new_string(err.msg));
        }
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}
