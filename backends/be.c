#include "be.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "be-internal.h"

static const struct be_ops *const be_registry[] = {
        &be_lxc_ops,
        &be_fake_ops,
        NULL,
};

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
        r = ops->init ? ops->init(be, cfg, err) : 0;
        if (r < 0) {
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
        if (!be->ops->sandbox_create)
                return unsupported(be, "pod sandboxes", err);
        return be->ops->sandbox_create(be, sb, err);
}

int be_sandbox_stop(struct be *be, const char *id, unsigned timeout_s, struct sh_error *err)
{
        if (!be->ops->sandbox_stop)
                return unsupported(be, "stopping pod sandboxes", err);
        return be->ops->sandbox_stop(be, id, timeout_s, err);
}

int be_sandbox_remove(struct be *be, const char *id, struct sh_error *err)
{
        if (!be->ops->sandbox_remove)
                return unsupported(be, "removing pod sandboxes", err);
        return be->ops->sandbox_remove(be, id, err);
}

int be_sandbox_running(struct be *be, const char *id, bool *ret, struct sh_error *err)
{
        if (!be->ops->sandbox_running)
                return unsupported(be, "sandbox state", err);
        return be->ops->sandbox_running(be, id, ret, err);
}

int be_container_create(struct be *be, const struct be_container *c, struct sh_error *err)
{
        if (!be->ops->container_create)
                return unsupported(be, "containers", err);
        return be->ops->container_create(be, c, err);
}

int be_container_start(struct be *be, const char *id, struct sh_error *err)
{
        if (!be->ops->container_start)
                return unsupported(be, "starting containers", err);
        return be->ops->container_start(be, id, err);
}

int be_container_stop(struct be *be, const char *id, int signal, unsigned timeout_s,
                      struct sh_error *err)
{
        if (!be->ops->container_stop)
                return unsupported(be, "stopping containers", err);
        return be->ops->container_stop(be, id, signal, timeout_s, err);
}

int be_container_remove(struct be *be, const char *id, struct sh_error *err)
{
        if (!be->ops->container_remove)
                return unsupported(be, "removing containers", err);
        return be->ops->container_remove(be, id, err);
}

int be_container_status(struct be *be, const char *id, struct be_ctr_status *ret,
                        struct sh_error *err)
{
        if (!be->ops->container_status)
                return unsupported(be, "container status", err);
        memset(ret, 0, sizeof(*ret));
        return be->ops->container_status(be, id, ret, err);
}

int be_container_update(struct be *be, const char *id, const struct be_resources *res,
                        struct sh_error *err)
{
        if (!be->ops->container_update)
                return unsupported(be, "updating container resources", err);
        return be->ops->container_update(be, id, res, err);
}

int be_container_reopen_log(struct be *be, const char *id, struct sh_error *err)
{
        if (!be->ops->container_reopen_log)
                return unsupported(be, "reopening container logs", err);
        return be->ops->container_reopen_log(be, id, err);
}

int be_exec_sync(struct be *be, const char *id, const struct be_exec_sync_req *req,
                 struct be_exec_result *ret, struct sh_error *err)
{
        if (!be->ops->exec_sync || !(be->ops->caps & BE_CAP_EXEC))
                return unsupported(be, "exec", err);
        memset(ret, 0, sizeof(*ret));
        return be->ops->exec_sync(be, id, req, ret, err);
}

int be_exec_stream(struct be *be, const char *id, const char *const *argv, bool tty,
                   bool want_stdin, struct be_exec_stream *ret, struct sh_error *err)
{
        if (!be->ops->exec_stream || !(be->ops->caps & BE_CAP_EXEC))
                return unsupported(be, "streaming exec", err);
        /* The outputs start closed; the size asked for stays. */
        *ret = (struct be_exec_stream){.stdin_fd = -1,
                                       .stdout_fd = -1,
                                       .stderr_fd = -1,
                                       .pty_fd = -1,
                                       .rows = ret->rows,
                                       .cols = ret->cols};
        return be->ops->exec_stream(be, id, argv, tty, want_stdin, ret, err);
}

int be_container_attach(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        if (!be->ops->container_attach || !(be->ops->caps & BE_CAP_ATTACH))
                return unsupported(be, "attach", err);
        return be->ops->container_attach(be, id, ret_fd, err);
}

int be_container_stats(struct be *be, const char *id, struct be_ctr_stats *ret,
                       struct sh_error *err)
{
        if (!be->ops->container_stats || !(be->ops->caps & BE_CAP_STATS))
                return unsupported(be, "container stats", err);
        memset(ret, 0, sizeof(*ret));
        return be->ops->container_stats(be, id, ret, err);
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

void be_exec_result_done(struct be_exec_result *r)
{
        if (!r)
                return;
        free(r->out);
        free(r->err);
        memset(r, 0, sizeof(*r));
}
