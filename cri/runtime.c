/*
 * RuntimeService handlers: version, status, runtime configuration (RuntimeConfig,
 * UpdateRuntimeConfig) and pod-level resources (UpdatePodSandboxResources).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"
#include "cleanup.h"
#include "cri-internal.h"
#include "fsusage.h"
#include "netmgr.h"
#include "podmgr.h"
#include "strutil.h"
#include "validate.h"

#define NEW(type, lower) ((type *)cri_msg_new(&runtime__v1__##lower##__descriptor))

int cri_version(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                struct sh_error *err)
{
        Runtime__V1__VersionResponse *r = NEW(Runtime__V1__VersionResponse, version_response);

        (void)ctx;
        (void)req;
        (void)err;
        if (!r)
                return -ENOMEM;
        /* "version" is the version of the kubelet runtime API this runtime serves. */
        r->version = cri_strdup("0.1.0");
        r->runtime_name = cri_strdup("runt");
        r->runtime_version = cri_strdup(RUNT_VERSION);
        r->runtime_api_version = cri_strdup("v1");
        if (!r->version || !r->runtime_name || !r->runtime_version || !r->runtime_api_version) {
                protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

static Runtime__V1__RuntimeCondition *condition(const char *type, const struct sh_condition *c)
{
        Runtime__V1__RuntimeCondition *rc = NEW(Runtime__V1__RuntimeCondition, runtime_condition);

        if (!rc)
                return NULL;
        rc->type = cri_strdup(type);
        rc->status = c->ok;
        rc->reason = cri_strdup(c->reason);
        rc->message = cri_strdup(c->message);
        return rc;
}

static int add_info(Runtime__V1__StatusResponse *r, const char *key, char *json)
{
        Runtime__V1__StatusResponse__InfoEntry *e;

        if (!json)
                return -ENOMEM;
        e = NEW(Runtime__V1__StatusResponse__InfoEntry, status_response__info_entry);
        if (!e) {
                free(json);
                return -ENOMEM;
        }
        e->key = cri_strdup(key);
        e->value = json;
        r->info[r->n_info++] = e;
        return 0;
}

static char *config_json(const struct runt_config *cfg)
{
        json_object *o = json_object_new_object();
        json_object *bins = json_object_new_array();
        char *s;

        json_object_object_add(o, "listen", json_object_new_string(cfg->listen));
        json_object_object_add(o, "stateDir", json_object_new_string(cfg->state_dir));
        json_object_object_add(o, "rootDir", json_object_new_string(cfg->root_dir));
        json_object_object_add(o, "runDir", json_object_new_string(cfg->run_dir));
        json_object_object_add(o, "logLevel",
                               json_object_new_string(sh_log_level_name(cfg->log_level)));
        json_object_object_add(o, "defaultRuntime", json_object_new_string(cfg->default_runtime));
        json_object_object_add(o, "cniConfDir", json_object_new_string(cfg->cni_conf_dir));
        for (size_t i = 0; cfg->cni_bin_dirs && cfg->cni_bin_dirs[i]; i++)
                json_object_array_add(bins, json_object_new_string(cfg->cni_bin_dirs[i]));
        json_object_object_add(o, "cniBinDirs", bins);
        json_object_object_add(o, "pullTimeoutSeconds", json_object_new_int64(cfg->pull_timeout_s));
        json_object_object_add(o, "streamingAddress",
                               json_object_new_string(cfg->streaming_address));
        json_object_object_add(o, "pidsLimit", json_object_new_int64(cfg->pids_limit));
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}

/*
 * What runt really does for a handler's pods (CRI RuntimeHandlerFeatures). The same for
 * every backend runt has today (lxc, and fake for tests):
 * - recursive_read_only_mounts: false. CreateContainer refuses a mount with
 *   recursive_read_only (cri/container.c); runt does not set MOUNT_ATTR_RDONLY with
 *   AT_RECURSIVE on a bind mount's submounts.
 * - user_namespaces: false. Pods run in the host's user namespace (no lxc.idmap; see
 *   docs/security.md), so a pod asking for one would not get it.
 */
static void handler_features(const struct runt_handler *h, Runtime__V1__RuntimeHandlerFeatures *f)
{
        (void)h; /* a backend that supports either says so here, by h->backend */
        f->recursive_read_only_mounts = false;
        f->user_namespaces = false;
}

static char *runtime_conf_json(struct cri_runtime_conf *rc);

/* The host's cgroups as runtd found them at start: {"version": 2, "driver": "cgroupfs", ...}. */
static char *cgroup_json(const struct sh_cg_host *h)
{
        json_object *o = json_object_new_object();
        json_object *ctl = json_object_new_array();
        char names[128];
        char *s;

        sh_cg_ctrl_names(h->controllers, names, sizeof(names));
        for (char *save = NULL, *t = strtok_r(names, " ", &save); t; t = strtok_r(NULL, " ", &save))
                json_object_array_add(ctl, json_object_new_string(t));
        json_object_object_add(o, "version", json_object_new_int(h->version));
        json_object_object_add(o, "hybrid", json_object_new_boolean(h->hybrid));
        json_object_object_add(o, "driver", json_object_new_string(sh_cg_driver()));
        json_object_object_add(o, "root", json_object_new_string(h->root));
        json_object_object_add(o, "controllers", ctl);
        json_object_object_add(o, "swapAccounting", json_object_new_boolean(h->swap));
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}

static int build_status(struct cri_ctx *ctx, const Runtime__V1__StatusRequest *in,
                        Runtime__V1__StatusResponse *r)
{
        struct sh_condition rt, net;
        size_t nh = ctx->cfg->n_handlers + 1;

        pod_mgr_condition(ctx->pods, &rt);
        net_mgr_condition(ctx->net, &net);
        r->status = NEW(Runtime__V1__RuntimeStatus, runtime_status);
        if (!r->status)
                return -ENOMEM;
        r->status->conditions = cri_array_new(2);
        if (!r->status->conditions)
                return -ENOMEM;
        r->status->conditions[r->status->n_conditions] = condition("RuntimeReady", &rt);
        if (!r->status->conditions[r->status->n_conditions++])
                return -ENOMEM;
        r->status->conditions[r->status->n_conditions] = condition("NetworkReady", &net);
        if (!r->status->conditions[r->status->n_conditions++])
                return -ENOMEM;

        /* The default handler is listed as "" too, as the kubelet looks it up that way. */
        r->runtime_handlers = cri_array_new(nh);
        if (!r->runtime_handlers)
                return -ENOMEM;
        for (size_t i = 0; i < nh; i++) {
                Runtime__V1__RuntimeHandler *h = NEW(Runtime__V1__RuntimeHandler, runtime_handler);
                const struct runt_handler *conf = NULL;

                if (!h)
                        return -ENOMEM;
                r->runtime_handlers[r->n_runtime_handlers++] = h;
                h->name = cri_strdup(i == 0 ? "" : ctx->cfg->handlers[i - 1].name);
                h->features = NEW(Runtime__V1__RuntimeHandlerFeatures, runtime_handler_features);
                if (!h->name || !h->features)
                        return -ENOMEM;
                /* "" is the default handler: its features are that handler's. */
                for (size_t j = 0; j < ctx->cfg->n_handlers; j++)
                        if (strcmp(ctx->cfg->handlers[j].name,
                                   i == 0 ? ctx->cfg->default_runtime : h->name) == 0)
                                conf = &ctx->cfg->handlers[j];
                handler_features(conf, h->features);
        }
        r->features = NEW(Runtime__V1__RuntimeFeatures, runtime_features);
        if (!r->features)
                return -ENOMEM;

        if (!in->verbose)
                return 0;
        r->info = cri_array_new(5);
        if (!r->info)
                return -ENOMEM;
        if (add_info(r, "config", config_json(ctx->cfg)) < 0 ||
            add_info(r, "runtime", pod_mgr_info_json(ctx->pods)) < 0 ||
            add_info(r, "network", net_mgr_info_json(ctx->net)) < 0 ||
            add_info(r, "runtimeConfig", runtime_conf_json(ctx->runtime_conf)) < 0 ||
            add_info(r, "cgroup", cgroup_json(&ctx->cgroup)) < 0)
                return -ENOMEM;
        return 0;
}

int cri_status(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
               struct sh_error *err)
{
        Runtime__V1__StatusResponse *r = NEW(Runtime__V1__StatusResponse, status_response);
        int rc;

        (void)err;
        if (!r)
                return -ENOMEM;
        rc = build_status(ctx, (const Runtime__V1__StatusRequest *)req, r);
        if (rc < 0) {
                protobuf_c_message_free_unpacked(&r->base, NULL);
                return rc;
        }
        *ret_resp = &r->base;
        return 0;
}

int cri_runtime_config(struct cri_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **ret_resp, struct sh_error *err)
{
        Runtime__V1__RuntimeConfigResponse *r =
                NEW(Runtime__V1__RuntimeConfigResponse, runtime_config_response);

        (void)ctx;
        (void)req;
        (void)err;
        if (!r)
                return -ENOMEM;
        r->linux = NEW(Runtime__V1__LinuxRuntimeConfiguration, linux_runtime_configuration);
        if (!r->linux) {
                protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        /*
         * cgroupfs is the truth: the LXC backend writes cgroup files itself under
         * <cgroup_parent>/<id> on each hierarchy and never asks systemd for a scope. A
         * systemd-style parent ("kubepods-burstable-pod<uid>.slice") is taken as one plain
         * directory of that name, not expanded into kubepods.slice/kubepods-burstable.slice/...
         * as the systemd driver does; so the kubelet must run with cgroupDriver: cgroupfs.
         */
        r->linux->cgroup_driver = RUNTIME__V1__CGROUP_DRIVER__CGROUPFS;
        *ret_resp = &r->base;
        return 0;
}

/* ------------------------------------------------------------------ UpdateRuntimeConfig */

#define POD_CIDR_FILE "pod-cidr"

struct cri_runtime_conf {
        pthread_mutex_t lock; /* protects pod_cidr */
        char *path;           /* <state_dir>/pod-cidr */
        char pod_cidr[64];    /* "" until the kubelet sends one */
};

int cri_cidr_validate(const char *cidr, struct sh_error *err)
{
        char addr[INET6_ADDRSTRLEN];
        unsigned char buf[sizeof(struct in6_addr)];
        const char *slash;
        char *end;
        long bits;
        int af;

        if (!cidr[0])
                return 0;
        slash = strchr(cidr, '/');
        if (!slash || (size_t)(slash - cidr) >= sizeof(addr))
                return sh_err(err, -EINVAL, "pod_cidr '%.64s' is not a CIDR (address/prefix)",
                              cidr);
        memcpy(addr, cidr, (size_t)(slash - cidr));
        addr[slash - cidr] = '\0';
        af = strchr(addr, ':') ? AF_INET6 : AF_INET;
        if (inet_pton(af, addr, buf) != 1)
                return sh_err(err, -EINVAL, "pod_cidr '%.64s': '%s' is not an IPv%c address", cidr,
                              addr, af == AF_INET ? '4' : '6');
        errno = 0;
        bits = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || errno || bits < 0 || bits > (af == AF_INET ? 32 : 128) ||
            slash[1] == '+' || slash[1] == '-' || slash[1] == ' ')
                return sh_err(err, -EINVAL, "pod_cidr '%.64s': prefix length '%s' is not 0 to %d",
                              cidr, slash + 1, af == AF_INET ? 32 : 128);
        return 0;
}

int cri_runtime_conf_new(const char *state_dir, struct cri_runtime_conf **ret, struct sh_error *err)
{
        struct cri_runtime_conf *rc = calloc(1, sizeof(*rc));
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r;

        if (!rc)
                return -ENOMEM;
        pthread_mutex_init(&rc->lock, NULL);
        rc->path = sh_path_join(state_dir, POD_CIDR_FILE);
        if (!rc->path) {
                cri_runtime_conf_free(rc);
                return -ENOMEM;
        }
        r = sh_read_file(rc->path, sizeof(rc->pod_cidr), &text, &len);
        if (r == 0) {
                text[strcspn(text, "\n")] = '\0';
                /* A file runt did not write as it does is ignored, not trusted. */
                if (strlen(text) < sizeof(rc->pod_cidr) && cri_cidr_validate(text, NULL) == 0)
                        snprintf(rc->pod_cidr, sizeof(rc->pod_cidr), "%s", text);
        } else if (r != -ENOENT) {
                r = sh_err(err, r, "read '%s': %s", rc->path, strerror(-r));
                cri_runtime_conf_free(rc);
                return r;
        }
        *ret = rc;
        return 0;
}

struct cri_runtime_conf *cri_runtime_conf_free(struct cri_runtime_conf *rc)
{
        if (!rc)
                return NULL;
        pthread_mutex_destroy(&rc->lock);
        free(rc->path);
        free(rc);
        return NULL;
}

static char *runtime_conf_json(struct cri_runtime_conf *rc)
{
        json_object *o = json_object_new_object();
        char *s;

        if (rc) {
                pthread_mutex_lock(&rc->lock);
                json_object_object_add(o, "podCIDR", json_object_new_string(rc->pod_cidr));
                pthread_mutex_unlock(&rc->lock);
        }
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}

int cri_update_runtime_config(struct cri_ctx *ctx, const ProtobufCMessage *req,
                              ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__UpdateRuntimeConfigRequest *in =
                (const Runtime__V1__UpdateRuntimeConfigRequest *)req;
        const Runtime__V1__RuntimeConfig *c = in->runtime_config;
        const char *cidr = c && c->network_config && c->network_config->pod_cidr
                                   ? c->network_config->pod_cidr
                                   : "";
        struct cri_runtime_conf *rc = ctx->runtime_conf;
        Runtime__V1__UpdateRuntimeConfigResponse *r;
        int rv = 0;

        if (strlen(cidr) >= sizeof(rc->pod_cidr))
                return sh_err(err, -EINVAL, "UpdateRuntimeConfig: pod_cidr '%.64s...' is too long",
                              cidr);
        rv = cri_cidr_validate(cidr, err);
        if (rv < 0)
                return sh_err_prefix(err, rv, "UpdateRuntimeConfig");
        if (!rc)
                return sh_err(err, -EAGAIN, "UpdateRuntimeConfig: not ready");
        /*
         * The lock spans the write, so the file and memory never disagree for long. The
         * kubelet sends this rarely (when the node's podCIDR is set): a small write, on the
         * slow lane.
         */
        pthread_mutex_lock(&rc->lock);
        if (strcmp(rc->pod_cidr, cidr) != 0) {
                _cleanup_free_ char *text = sh_strdup_printf("%s\n", cidr);

                rv = text ? sh_write_file_atomic(rc->path, text, strlen(text), 0644) : -ENOMEM;
                if (rv == 0)
                        snprintf(rc->pod_cidr, sizeof(rc->pod_cidr), "%s", cidr);
                else
                        sh_err(err, rv, "UpdateRuntimeConfig: write '%s': %s", rc->path,
                               strerror(-rv));
        }
        pthread_mutex_unlock(&rc->lock);
        if (rv < 0)
                return rv;
        r = NEW(Runtime__V1__UpdateRuntimeConfigResponse, update_runtime_config_response);
        if (!r)
                return -ENOMEM;
        *ret_resp = &r->base;
        return 0;
}

/* ------------------------------------------------------------ UpdatePodSandboxResources */

int cri_update_pod_sandbox_resources(struct cri_ctx *ctx, const ProtobufCMessage *req,
                                     ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__UpdatePodSandboxResourcesRequest *in =
                (const Runtime__V1__UpdatePodSandboxResourcesRequest *)req;
        const char *id = in->pod_sandbox_id ? in->pod_sandbox_id : "";
        Runtime__V1__UpdatePodSandboxResourcesResponse *r;
        struct be_resources res = {0}, over = {0};
        int rc;

        if (!id[0])
                return sh_err(err, -EINVAL,
                              "UpdatePodSandboxResources: pod_sandbox_id is required");
        /* An id of another form names no pod of runt's: not found, as any unknown id. */
        if (sh_validate_id_prefix(id, "pod_sandbox_id", NULL) < 0)
                return sh_err(err, -ENOENT,
                              "UpdatePodSandboxResources: pod sandbox '%.80s' not "
                              "found",
                              id);
        rc = cri_resources_from(in->resources, "UpdatePodSandboxResources: resources", &res, err);
        if (rc == 0)
                rc = cri_resources_from(in->overhead, "UpdatePodSandboxResources: overhead", &over,
                                        err);
        if (rc == 0)
                rc = pod_sandbox_update_resources(ctx->pods, id, &res, &over, err);
        be_resources_done(&res);
        be_resources_done(&over);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__UpdatePodSandboxResourcesResponse,
                update_pod_sandbox_resources_response);
        if (!r)
                return -ENOMEM;
        *ret_resp = &r->base;
        return 0;
}
