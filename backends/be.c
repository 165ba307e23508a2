#include "be.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "be-internal.h"
#include "metrics.h"
#include "strutil.h"

static const struct be_ops *const be_registry[] = {
        &be_lxc_ops, &be_microvm_ops, &be_proxmox_ops, &be_fake_ops, NULL,
};

/* The ops the wrappers time, in the order of be_op_names (the "op" label). */
enum be_op {
        BE_OP_SANDBOX_CREATE,
        BE_OP_SANDBOX_STOP,
        BE_OP_SANDBOX_REMOVE,
        BE_OP_SANDBOX_RUNNING,
        BE_OP_SANDBOX_UPDATE,
        BE_OP_CONTAINER_CREATE,
        BE_OP_CONTAINER_START,
        BE_OP_CONTAINER_STOP,
        BE_OP_CONTAINER_REMOVE,
        BE_OP_CONTAINER_STATUS,
        BE_OP_CONTAINER_UPDATE,
        BE_OP_CONTAINER_REOPEN_LOG,
        BE_OP_EXEC_SYNC,
        BE_OP_EXEC_STREAM,
        BE_OP_CONTAINER_ATTACH,
        BE_OP_CONTAINER_STATS,
        BE_OP_SANDBOX_DIAL,
        BE_OP_COUNT,
};

static const char *const be_op_names[BE_OP_COUNT] = {
        [BE_OP_SANDBOX_CREATE] = "sandbox_create",
        [BE_OP_SANDBOX_STOP] = "sandbox_stop",
        [BE_OP_SANDBOX_REMOVE] = "sandbox_remove",
        [BE_OP_SANDBOX_RUNNING] = "sandbox_running",
        [BE_OP_SANDBOX_UPDATE] = "sandbox_update",
        [BE_OP_SANDBOX_DIAL] = "sandbox_dial",
        [BE_OP_CONTAINER_CREATE] = "container_create",
        [BE_OP_CONTAINER_START] = "container_start",
        [BE_OP_CONTAINER_STOP] = "container_stop",
        [BE_OP_CONTAINER_REMOVE] = "container_remove",
        [BE_OP_CONTAINER_STATUS] = "container_status",
        [BE_OP_CONTAINER_UPDATE] = "container_update",
        [BE_OP_CONTAINER_REOPEN_LOG] = "container_reopen_log",
        [BE_OP_EXEC_SYNC] = "exec_sync",
        [BE_OP_EXEC_STREAM] = "exec_stream",
        [BE_OP_CONTAINER_ATTACH] = "container_attach",
        [BE_OP_CONTAINER_STATS] = "container_stats",
};

/* A backend instance's series, registered once in be_new: the wrappers only add to them. */
struct be_metrics {
        struct sh_histogram *seconds[BE_OP_COUNT];
        struct sh_counter *errors[BE_OP_COUNT];
};

static const char *const be_metric_labels[] = {"backend", "handler", "op", NULL};

/* Sparse: a backend has many ops and most pods use a few; a series shows once it was used. */
static const struct sh_metric_desc be_seconds_desc = {
        .name = "runt_backend_operation_duration_seconds",
        .help = "Time a backend operation took, failed ones included, by backend, handler and op.",
        .labels = be_metric_labels,
        .buckets = sh_metrics_latency_buckets,
        .n_buckets = SH_METRICS_LATENCY_BUCKETS_N,
        .sparse = true,
};

static const struct sh_metric_desc be_errors_desc = {
        .name = "runt_backend_operation_errors_total",
        .help = "Backend operations that returned an error, by backend, handler and op.",
        .labels = be_metric_labels,
        .sparse = true,
};

static int metrics_new(struct be *be, struct sh_metrics *reg, struct sh_error *err)
{
        struct be_metrics *bm;
        int r = 0;

        _Static_assert(sizeof(be_op_names) / sizeof(be_op_names[0]) == BE_OP_COUNT,
                       "one name per op");
        if (!reg)
                return 0;
        bm = calloc(1, sizeof(*bm));
        if (!bm)
                return -ENOMEM;
        for (size_t i = 0; r == 0 && i < BE_OP_COUNT; i++) {
                const char *values[] = {be->ops->name, be->handler, be_op_names[i], NULL};

                r = sh_metrics_histogram(reg, &be_seconds_desc, values, &bm->seconds[i], err);
                if (r == 0)
                        r = sh_metrics_counter(reg, &be_errors_desc, values, &bm->errors[i], err);
        }
        if (r < 0) {
                free(bm); /* the series stay in the registry, unused */
                return r;
        }
        be->metrics = bm;
        return 0;
}

static unsigned long long op_begin(struct be *be)
{
        return be->metrics ? sh_now_ns() : 0;
}

/* Records op @op that began at @t0 and returned @r; returns @r. */
static int op_end(struct be *be, enum be_op op, unsigned long long t0, int r)
{
        if (be->metrics) {
                sh_histogram_observe_ns(be->metrics->seconds[op], sh_now_ns() - t0);
                if (r < 0)
                        sh_counter_add(be->metrics->errors[op], 1);
        }
        return r;
}

const struct be_ops *be_lookup(const char *name)
{
        for (size_t i = 0; be_registry[i]; i++)
                if (strcmp(be_registry[i]->name, name) == 0)
                        return be_registry[i];
        return NULL;
}

int be_new(const char *backend, const struct be_config *cfg, struct be **ret, struct sh_error *err)
{
        const struct be_ops *ops = be_lookup(backend);
        struct be *be;
        int r;

        if (!ops)
                return sh_err(err, -ENOENT, "backend '%s' is not built into this runtd", backend);
        be = calloc(1, sizeof(*be));
        if (!be)
                return -ENOMEM;
        be->ops = ops;
        be->handler = strdup(cfg->handler ? cfg->handler : backend);
        if (!be->handler) {
                free(be);
                return -ENOMEM;
        }
        r = metrics_new(be, cfg->metrics, err);
        if (r < 0) {
                free(be->handler);
                free(be);
                return sh_err_prefix(err, r, "backend %s: metrics", backend);
        }
        r = ops->init ? ops->init(be, cfg, err) : 0;
        if (r < 0) {
                free(be->metrics);
                if (ops->fini)
                        ops->fini(be); /* frees whatever init set up before it failed */
                free(be->handler);
                free(be);
                return sh_err_prefix(err, r, "backend %s", backend);
        }
        *ret = be;
        return 0;
}

struct be *be_free(struct be *be)
{
        if (!be)
                return NULL;
        if (be->ops->fini)
                be->ops->fini(be);
        free(be->metrics);
        free(be->handler);
        free(be);
        return NULL;
}

int be_ready(struct be *be, struct sh_error *err)
{
        if (!be->ops->ready)
                return 0;
        return be->ops->ready(be, err);
}

static int unsupported(struct be *be, const char *op, struct sh_error *err)
{
        return sh_err(err, -EOPNOTSUPP, "backend %s (handler %s) does not support %s",
                      be->ops->name, be->handler, op);
}

int be_sandbox_create(struct be *be, const struct be_sandbox *sb, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->sandbox_create)
                return unsupported(be, "pod sandboxes", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_SANDBOX_CREATE, t0, be->ops->sandbox_create(be, sb, err));
}

int be_sandbox_stop(struct be *be, const char *id, unsigned timeout_s, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->sandbox_stop)
                return unsupported(be, "stopping pod sandboxes", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_SANDBOX_STOP, t0, be->ops->sandbox_stop(be, id, timeout_s, err));
}

int be_sandbox_remove(struct be *be, const char *id, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->sandbox_remove)
                return unsupported(be, "removing pod sandboxes", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_SANDBOX_REMOVE, t0, be->ops->sandbox_remove(be, id, err));
}

int be_sandbox_running(struct be *be, const char *id, bool *ret, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->sandbox_running)
                return unsupported(be, "sandbox state", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_SANDBOX_RUNNING, t0, be->ops->sandbox_running(be, id, ret, err));
}

int be_container_create(struct be *be, const struct be_container *c, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->container_create)
                return unsupported(be, "containers", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_CONTAINER_CREATE, t0, be->ops->container_create(be, c, err));
}

int be_container_start(struct be *be, const char *id, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->container_start)
                return unsupported(be, "starting containers", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_CONTAINER_START, t0, be->ops->container_start(be, id, err));
}

int be_container_stop(struct be *be, const char *id, int signal, unsigned timeout_s,
                      struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->container_stop)
                return unsupported(be, "stopping containers", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_CONTAINER_STOP, t0,
                      be->ops->container_stop(be, id, signal, timeout_s, err));
}

int be_container_remove(struct be *be, const char *id, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->container_remove)
                return unsupported(be, "removing containers", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_CONTAINER_REMOVE, t0, be->ops->container_remove(be, id, err));
}

int be_container_status(struct be *be, const char *id, struct be_ctr_status *ret,
                        struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->container_status)
                return unsupported(be, "container status", err);
        memset(ret, 0, sizeof(*ret));
        t0 = op_begin(be);
        return op_end(be, BE_OP_CONTAINER_STATUS, t0, be->ops->container_status(be, id, ret, err));
}

int be_container_update(struct be *be, const char *id, const struct be_resources *res,
                        struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->container_update)
                return unsupported(be, "updating container resources", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_CONTAINER_UPDATE, t0, be->ops->container_update(be, id, res, err));
}

int be_container_reopen_log(struct be *be, const char *id, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->container_reopen_log)
                return unsupported(be, "reopening container logs", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_CONTAINER_REOPEN_LOG, t0,
                      be->ops->container_reopen_log(be, id, err));
}

int be_exec_sync(struct be *be, const char *id, const struct be_exec_sync_req *req,
                 struct be_exec_result *ret, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->exec_sync || !(be->ops->caps & BE_CAP_EXEC))
                return unsupported(be, "exec", err);
        memset(ret, 0, sizeof(*ret));
        t0 = op_begin(be);
        return op_end(be, BE_OP_EXEC_SYNC, t0, be->ops->exec_sync(be, id, req, ret, err));
}

int be_exec_stream(struct be *be, const char *id, const char *const *argv, bool tty,
                   bool want_stdin, struct be_exec_stream *ret, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->exec_stream || !(be->ops->caps & BE_CAP_EXEC))
                return unsupported(be, "streaming exec", err);
        /* The outputs start closed; the size asked for stays. */
        *ret = (struct be_exec_stream){.stdin_fd = -1,
                                       .stdout_fd = -1,
                                       .stderr_fd = -1,
                                       .pty_fd = -1,
                                       .rows = ret->rows,
                                       .cols = ret->cols};
        t0 = op_begin(be);
        return op_end(be, BE_OP_EXEC_STREAM, t0,
                      be->ops->exec_stream(be, id, argv, tty, want_stdin, ret, err));
}

int be_container_attach(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->container_attach || !(be->ops->caps & BE_CAP_ATTACH))
                return unsupported(be, "attach", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_CONTAINER_ATTACH, t0,
                      be->ops->container_attach(be, id, ret_fd, err));
}

int be_container_stats(struct be *be, const char *id, struct be_ctr_stats *ret,
                       struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->container_stats || !(be->ops->caps & BE_CAP_STATS))
                return unsupported(be, "container stats", err);
        memset(ret, 0, sizeof(*ret));
        t0 = op_begin(be);
        return op_end(be, BE_OP_CONTAINER_STATS, t0, be->ops->container_stats(be, id, ret, err));
}

int be_sandbox_update(struct be *be, const char *id, const struct be_resources *res,
                      struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->sandbox_update)
                return unsupported(be, "updating pod sandbox resources", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_SANDBOX_UPDATE, t0, be->ops->sandbox_update(be, id, res, err));
}

int be_sandbox_dial(struct be *be, const char *id, unsigned port, int *ret_fd, struct sh_error *err)
{
        unsigned long long t0;

        if (!be->ops->sandbox_dial)
                return unsupported(be, "dialling a pod port", err);
        t0 = op_begin(be);
        return op_end(be, BE_OP_SANDBOX_DIAL, t0, be->ops->sandbox_dial(be, id, port, ret_fd, err));
}

int be_sandbox_ips(struct be *be, const char *id, char ***ret, struct sh_error *err)
{
        if (!be->ops->sandbox_ips)
                return unsupported(be, "reporting a pod's IPs", err);
        return be->ops->sandbox_ips(be, id, ret, err);
}

int be_container_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        if (!be->ops->container_watch)
                return unsupported(be, "container watch", err);
        return be->ops->container_watch(be, id, ret_fd, err);
}

int be_sandbox_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        if (!be->ops->sandbox_watch)
                return unsupported(be, "sandbox watch", err);
        return be->ops->sandbox_watch(be, id, ret_fd, err);
}

int be_sandbox_reason(struct be *be, const char *id, char *buf, size_t size)
{
        if (!be->ops->sandbox_reason || size == 0)
                return -ENOENT;
        buf[0] = '\0';
        return be->ops->sandbox_reason(be, id, buf, size);
}

int be_container_fs_usage(struct be *be, const char *id, struct sh_fs_usage *ret,
                          struct sh_error *err)
{
        if (!be->ops->container_fs_usage || !(be->ops->caps & BE_CAP_STATS))
                return unsupported(be, "writable layer usage", err);
        memset(ret, 0, sizeof(*ret));
        return be->ops->container_fs_usage(be, id, ret, err);
}

int be_sandbox_stats(struct be *be, const struct be_sandbox_stats_req *req,
                     struct be_sandbox_stats *ret, struct sh_error *err)
{
        int r;

        if (!be->ops->sandbox_stats || !(be->ops->caps & BE_CAP_STATS))
                return unsupported(be, "pod stats", err);
        memset(ret, 0, sizeof(*ret));
        r = be->ops->sandbox_stats(be, req, ret, err);
        if (r < 0)
                be_sandbox_stats_done(ret);
        return r;
}

void be_sandbox_stats_done(struct be_sandbox_stats *s)
{
        if (!s)
                return;
        free(s->ifaces);
        s->ifaces = NULL;
        s->n_ifaces = 0;
}

static void kv_free(struct be_kv *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++) {
                free(v[i].key);
                free(v[i].value);
        }
        free(v);
}

static void strv_free(char **v)
{
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

void be_sandbox_spec_done(struct be_sandbox_spec *s)
{
        if (!s)
                return;
        free(s->name);
        free(s->uid);
        free(s->namespace);
        free(s->handler);
        free(s->hostname);
        free(s->log_directory);
        free(s->cgroup_parent);
        strv_free(s->dns_servers);
        strv_free(s->dns_searches);
        strv_free(s->dns_options);
        for (size_t i = 0; s->ports && i < s->n_ports; i++) {
                free(s->ports[i].protocol);
                free(s->ports[i].host_ip);
        }
        free(s->ports);
        kv_free(s->labels, s->n_labels);
        kv_free(s->annotations, s->n_annotations);
        kv_free(s->sysctls, s->n_sysctls);
        memset(s, 0, sizeof(*s));
}

const char *be_config_option(const struct be_config *cfg, const char *key)
{
        for (size_t i = 0; i < cfg->n_options; i++)
                if (strcmp(cfg->option_keys[i], key) == 0)
                        return cfg->option_values[i];
        return NULL;
}

void be_resources_done(struct be_resources *r)
{
        if (!r)
                return;
        free(r->cpuset_cpus);
        free(r->cpuset_mems);
        kv_free(r->hugepages, r->n_hugepages);
        memset(r, 0, sizeof(*r));
}

void be_container_spec_done(struct be_container_spec *s)
{
        if (!s)
                return;
        free(s->name);
        free(s->image_ref);
        free(s->image_id);
        strv_free(s->layer_dirs);
        strv_free(s->chain_ids);
        strv_free(s->argv);
        strv_free(s->env);
        free(s->cwd);
        free(s->groups);
        free(s->log_path);
        for (size_t i = 0; s->mounts && i < s->n_mounts; i++) {
                free(s->mounts[i].container_path);
                free(s->mounts[i].host_path);
        }
        free(s->mounts);
        for (size_t i = 0; s->devices && i < s->n_devices; i++) {
                free(s->devices[i].container_path);
                free(s->devices[i].host_path);
                free(s->devices[i].permissions);
        }
        free(s->devices);
        kv_free(s->labels, s->n_labels);
        kv_free(s->annotations, s->n_annotations);
        be_resources_done(&s->resources);
        strv_free(s->cap_add);
        strv_free(s->cap_drop);
        free(s->seccomp_profile);
        strv_free(s->masked_paths);
        strv_free(s->readonly_paths);
        free(s->stop_signal);
        memset(s, 0, sizeof(*s));
}

/* Copies of strings, string vectors and pairs for the spec copies below; "ok" goes false on
 * ENOMEM and the copy is freed by the caller's _done. */
static char *dup_s(const char *s, bool *ok)
{
        char *d = s ? strdup(s) : NULL;

        if (s && !d)
                *ok = false;
        return d;
}

static char **dup_strv(char *const *v, bool *ok)
{
        size_t n = 0;
        char **d;

        if (!v)
                return NULL;
        while (v[n])
                n++;
        d = calloc(n + 1, sizeof(*d));
        if (!d) {
                *ok = false;
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                d[i] = dup_s(v[i], ok);
        return d;
}

static struct be_kv *dup_kv(const struct be_kv *v, size_t n, bool *ok)
{
        struct be_kv *d;

        if (!v)
                return NULL;
        d = calloc(n + 1, sizeof(*d));
        if (!d) {
                *ok = false;
                return NULL;
        }
        for (size_t i = 0; i < n; i++) {
                d[i].key = dup_s(v[i].key, ok);
                d[i].value = dup_s(v[i].value, ok);
        }
        return d;
}

int be_sandbox_spec_copy(const struct be_sandbox_spec *s, struct be_sandbox_spec *ret)
{
        bool ok = true;

        *ret = *s;
        ret->name = dup_s(s->name, &ok);
        ret->uid = dup_s(s->uid, &ok);
        ret->namespace = dup_s(s->namespace, &ok);
        ret->handler = dup_s(s->handler, &ok);
        ret->hostname = dup_s(s->hostname, &ok);
        ret->log_directory = dup_s(s->log_directory, &ok);
        ret->cgroup_parent = dup_s(s->cgroup_parent, &ok);
        ret->dns_servers = dup_strv(s->dns_servers, &ok);
        ret->dns_searches = dup_strv(s->dns_searches, &ok);
        ret->dns_options = dup_strv(s->dns_options, &ok);
        ret->ports = s->ports ? calloc(s->n_ports + 1, sizeof(*ret->ports)) : NULL;
        if (s->ports && !ret->ports) {
                ok = false;
                ret->n_ports = 0;
        }
        for (size_t i = 0; ret->ports && i < s->n_ports; i++) {
                ret->ports[i] = s->ports[i];
                ret->ports[i].protocol = dup_s(s->ports[i].protocol, &ok);
                ret->ports[i].host_ip = dup_s(s->ports[i].host_ip, &ok);
        }
        ret->labels = dup_kv(s->labels, s->n_labels, &ok);
        ret->annotations = dup_kv(s->annotations, s->n_annotations, &ok);
        ret->sysctls = dup_kv(s->sysctls, s->n_sysctls, &ok);
        if (!ret->labels)
                ret->n_labels = 0;
        if (!ret->annotations)
                ret->n_annotations = 0;
        if (!ret->sysctls)
                ret->n_sysctls = 0;
        if (!ok) {
                be_sandbox_spec_done(ret);
                return -ENOMEM;
        }
        return 0;
}

int be_container_spec_copy(const struct be_container_spec *s, struct be_container_spec *ret)
{
        bool ok = true;

        *ret = *s;
        ret->name = dup_s(s->name, &ok);
        ret->image_ref = dup_s(s->image_ref, &ok);
        ret->image_id = dup_s(s->image_id, &ok);
        ret->layer_dirs = dup_strv(s->layer_dirs, &ok);
        ret->chain_ids = dup_strv(s->chain_ids, &ok);
        ret->argv = dup_strv(s->argv, &ok);
        ret->env = dup_strv(s->env, &ok);
        ret->cwd = dup_s(s->cwd, &ok);
        ret->groups = NULL;
        if (s->groups) {
                ret->groups = calloc(s->n_groups + 1, sizeof(*ret->groups));
                if (ret->groups)
                        memcpy(ret->groups, s->groups, s->n_groups * sizeof(*ret->groups));
                else
                        ok = false;
        }
        ret->log_path = dup_s(s->log_path, &ok);
        ret->mounts = s->mounts ? calloc(s->n_mounts + 1, sizeof(*ret->mounts)) : NULL;
        if (s->mounts && !ret->mounts) {
                ok = false;
                ret->n_mounts = 0;
        }
        for (size_t i = 0; ret->mounts && i < s->n_mounts; i++) {
                ret->mounts[i] = s->mounts[i];
                ret->mounts[i].container_path = dup_s(s->mounts[i].container_path, &ok);
                ret->mounts[i].host_path = dup_s(s->mounts[i].host_path, &ok);
        }
        ret->devices = s->devices ? calloc(s->n_devices + 1, sizeof(*ret->devices)) : NULL;
        if (s->devices && !ret->devices) {
                ok = false;
                ret->n_devices = 0;
        }
        for (size_t i = 0; ret->devices && i < s->n_devices; i++) {
                ret->devices[i].container_path = dup_s(s->devices[i].container_path, &ok);
                ret->devices[i].host_path = dup_s(s->devices[i].host_path, &ok);
                ret->devices[i].permissions = dup_s(s->devices[i].permissions, &ok);
        }
        ret->labels = dup_kv(s->labels, s->n_labels, &ok);
        ret->annotations = dup_kv(s->annotations, s->n_annotations, &ok);
        if (!ret->labels)
                ret->n_labels = 0;
        if (!ret->annotations)
                ret->n_annotations = 0;
        ret->resources.cpuset_cpus = dup_s(s->resources.cpuset_cpus, &ok);
        ret->resources.cpuset_mems = dup_s(s->resources.cpuset_mems, &ok);
        ret->resources.hugepages = dup_kv(s->resources.hugepages, s->resources.n_hugepages, &ok);
        if (!ret->resources.hugepages)
                ret->resources.n_hugepages = 0;
        ret->cap_add = dup_strv(s->cap_add, &ok);
        ret->cap_drop = dup_strv(s->cap_drop, &ok);
        ret->seccomp_profile = dup_s(s->seccomp_profile, &ok);
        ret->masked_paths = dup_strv(s->masked_paths, &ok);
        ret->readonly_paths = dup_strv(s->readonly_paths, &ok);
        ret->stop_signal = dup_s(s->stop_signal, &ok);
        if (!ok) {
                be_container_spec_done(ret);
                return -ENOMEM;
        }
        return 0;
}

void be_exec_result_done(struct be_exec_result *r)
{
        if (!r)
                return;
        free(r->out);
        free(r->err);
        memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------ container defaults every backend applies */

/* containerd's default capability set for a container that is not privileged. */
const char *const be_default_caps[] = {
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
        NULL,
};

/* Every capability Linux 6.x knows, in number order. */
const char *const be_all_caps[] = {
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
        NULL,
};

const char *const be_default_masked[] = {
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
        NULL,
};

const char *const be_default_readonly[] = {
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL,
};

static bool strv_has(char *const *v, const char *s)
{
        for (size_t i = 0; v && v[i]; i++)
                if (strcasecmp(v[i], s) == 0)
                        return true;
        return false;
}

uint64_t be_default_cap_set(void)
{
        uint64_t set = 0;

        for (size_t i = 0; be_all_caps[i]; i++)
                for (size_t k = 0; be_default_caps[k]; k++)
                        if (strcmp(be_default_caps[k], be_all_caps[i]) == 0)
                                set |= UINT64_C(1) << i;
        return set;
}

/*
 * The capabilities @s's processes hold, bit n for capability n (be_all_caps[n]): containerd's
 * default set plus adds minus drops, all for privileged; a drop of ALL keeps only what is
 * named in the adds. -EINVAL for an added name Linux does not know.
 */
int be_cap_set(const struct be_container_spec *s, uint64_t *ret, struct sh_error *err)
{
        bool all = strv_has(s->cap_add, "ALL");
        uint64_t set = 0;

        for (size_t i = 0; s->cap_add[i]; i++) {
                bool known = strcasecmp(s->cap_add[i], "ALL") == 0;

                for (size_t k = 0; be_all_caps[k] && !known; k++)
                        known = strcasecmp(be_all_caps[k], s->cap_add[i]) == 0;
                if (!known)
                        return sh_err(err, -EINVAL, "capability '%s' is not known", s->cap_add[i]);
        }
        for (size_t i = 0; be_all_caps[i]; i++) {
                bool want = all || s->privileged || strv_has(s->cap_add, be_all_caps[i]);

                for (size_t k = 0; !want && be_default_caps[k]; k++)
                        want = strcmp(be_default_caps[k], be_all_caps[i]) == 0;
                if (strv_has(s->cap_drop, "ALL") && !strv_has(s->cap_add, be_all_caps[i]))
                        want = false;
                if (strv_has(s->cap_drop, be_all_caps[i]))
                        want = false;
                if (want)
                        set |= UINT64_C(1) << i;
        }
        *ret = set;
        return 0;
}
