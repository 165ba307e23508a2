/* RuntimeService handlers: version, status and runtime configuration. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cri-internal.h"
#include "fsusage.h"
#include "netmgr.h"
#include "podmgr.h"

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

                if (!h)
                        return -ENOMEM;
                r->runtime_handlers[r->n_runtime_handlers++] = h;
                h->name = cri_strdup(i == 0 ? "" : ctx->cfg->handlers[i - 1].name);
                h->features = NEW(Runtime__V1__RuntimeHandlerFeatures, runtime_handler_features);
                if (!h->name || !h->features)
                        return -ENOMEM;
        }
        r->features = NEW(Runtime__V1__RuntimeFeatures, runtime_features);
        if (!r->features)
                return -ENOMEM;

        if (!in->verbose)
                return 0;
        r->info = cri_array_new(3);
        if (!r->info)
                return -ENOMEM;
        if (add_info(r, "config", config_json(ctx->cfg)) < 0 ||
            add_info(r, "runtime", pod_mgr_info_json(ctx->pods)) < 0 ||
            add_info(r, "network", net_mgr_info_json(ctx->net)) < 0)
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
        /* runt drives cgroups itself through cgroupfs, not through systemd. */
        r->linux->cgroup_driver = RUNTIME__V1__CGROUP_DRIVER__CGROUPFS;
        *ret_resp = &r->base;
        return 0;
}
