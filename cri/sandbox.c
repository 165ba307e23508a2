/* RuntimeService pod sandbox handlers: translation to be_sandbox_spec and back. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "cri-internal.h"
#include "podmgr.h"
#include "stream.h"
#include "validate.h"

#define NEW(type, lower) ((type *)cri_msg_new(&runtime__v1__##lower##__descriptor))

static const char *protocol_name(Runtime__V1__Protocol p)
{
        return p == RUNTIME__V1__PROTOCOL__UDP    ? "udp"
               : p == RUNTIME__V1__PROTOCOL__SCTP ? "sctp"
                                                  : "tcp";
}

/* The node's host name: what a pod gets when its request names none (as containerd does). */
static char *node_hostname(void)
{
        char buf[HOST_NAME_MAX + 1] = "";

        if (gethostname(buf, sizeof(buf) - 1) < 0 || !buf[0])
                snprintf(buf, sizeof(buf), "localhost");
        /* The kernel takes 64 characters, a pod's hostname 63: a longer node name is cut,
         * at its first dot when that is enough. */
        if (strlen(buf) > 63 && strchr(buf, '.') && strchr(buf, '.') - buf <= 63)
                *strchr(buf, '.') = '\0';
        buf[63] = '\0';
        return strdup(buf);
}

static int to_spec(const Runtime__V1__RunPodSandboxRequest *in, struct be_sandbox_spec *s,
                   struct sh_error *err)
{
        const Runtime__V1__PodSandboxConfig *c = in->config;
        const Runtime__V1__PodSandboxMetadata *m = c ? c->metadata : NULL;
        const Runtime__V1__LinuxPodSandboxConfig *lx = c ? c->linux : NULL;
        const Runtime__V1__LinuxSandboxSecurityContext *sc = lx ? lx->security_context : NULL;
        const Runtime__V1__NamespaceOption *ns = sc ? sc->namespace_options : NULL;
        const Runtime__V1__DNSConfig *dns = c ? c->dns_config : NULL;

        memset(s, 0, sizeof(*s));
        if (!c)
                return sh_err(err, -EINVAL, "RunPodSandbox: config is required");
        if (!m || !m->name || !m->name[0] || !m->namespace_ || !m->namespace_[0] || !m->uid ||
            !m->uid[0])
                return sh_err(err, -EINVAL,
                              "RunPodSandbox: config.metadata name, namespace and uid are "
                              "required");
        s->name = strdup(m->name);
        s->uid = strdup(m->uid);
        s->namespace = strdup(m->namespace_);
        s->attempt = m->attempt;
        s->handler = strdup(in->runtime_handler ? in->runtime_handler : "");
        s->hostname = c->hostname && c->hostname[0] ? strdup(c->hostname) : node_hostname();
        s->log_directory = strdup(c->log_directory ? c->log_directory : "");
        s->cgroup_parent = strdup(lx && lx->cgroup_parent ? lx->cgroup_parent : "");
        s->dns_servers = cri_strv_from(dns ? dns->servers : NULL, dns ? dns->n_servers : 0);
        s->dns_searches = cri_strv_from(dns ? dns->searches : NULL, dns ? dns->n_searches : 0);
        s->dns_options = cri_strv_from(dns ? dns->options : NULL, dns ? dns->n_options : 0);
        s->ports = calloc(c->n_port_mappings + 1, sizeof(*s->ports));
        for (size_t i = 0; s->ports && i < c->n_port_mappings; i++) {
                const Runtime__V1__PortMapping *p = c->port_mappings[i];

                s->ports[i].protocol = strdup(protocol_name(p->protocol));
                s->ports[i].container_port = p->container_port;
                s->ports[i].host_port = p->host_port;
                s->ports[i].host_ip = strdup(p->host_ip ? p->host_ip : "");
                s->n_ports = i + 1;
                if (!s->ports[i].protocol || !s->ports[i].host_ip)
                        return -ENOMEM;
        }
        if (cri_kv_from((void *const *)c->labels, c->n_labels, &s->labels, &s->n_labels) < 0)
                return -ENOMEM;
        if (cri_kv_from((void *const *)c->annotations, c->n_annotations, &s->annotations,
                        &s->n_annotations) < 0 ||
            cri_kv_from(lx ? (void *const *)lx->sysctls : NULL, lx ? lx->n_sysctls : 0, &s->sysctls,
                        &s->n_sysctls) < 0)
                return -ENOMEM;
        if (ns) {
                s->net_mode = (enum be_ns_mode)ns->network;
                s->pid_mode = (enum be_ns_mode)ns->pid;
                s->ipc_mode = (enum be_ns_mode)ns->ipc;
        }
        s->privileged = sc && sc->privileged;
        if (lx && (lx->resources || lx->overhead)) {
                struct be_resources res, over;
                int rc = cri_resources_from(lx->resources, "RunPodSandbox: linux.resources", &res,
                                            err);

                if (rc == 0)
                        rc = cri_resources_from(lx->overhead, "RunPodSandbox: linux.overhead",
                                                &over, err);
                else
                        memset(&over, 0, sizeof(over));
                /* Overhead on top of no limit is no limit (Kubernetes' Pod Overhead). */
                if (rc == 0 && res.memory_limit > 0 &&
                    __builtin_add_overflow(res.memory_limit,
                                           over.memory_limit > 0 ? over.memory_limit : 0,
                                           &s->pod_memory_limit))
                        rc = sh_err(err, -EINVAL,
                                    "RunPodSandbox: linux.resources.memory_limit "
                                    "plus overhead is out of range");
                if (rc == 0 && res.cpu_quota > 0) {
                        long long rp = res.cpu_period > 0 ? res.cpu_period : 100000;
                        long long op = over.cpu_period > 0 ? over.cpu_period : 100000;

                        long long a = 0, b = 0;

                        if (__builtin_mul_overflow(res.cpu_quota, 1000LL, &a) ||
                            (over.cpu_quota > 0 &&
                             __builtin_mul_overflow(over.cpu_quota, 1000LL, &b)) ||
                            __builtin_add_overflow(a / rp + (a % rp != 0), b / op + (b % op != 0),
                                                   &s->pod_cpu_millis))
                                rc = sh_err(err, -EINVAL,
                                            "RunPodSandbox: linux.resources."
                                            "cpu_quota plus overhead is out of range");
                }
                be_resources_done(&res);
                be_resources_done(&over);
                if (rc < 0)
                        return rc;
        }
        if (!s->name || !s->uid || !s->namespace || !s->handler || !s->hostname ||
            !s->log_directory || !s->cgroup_parent || !s->dns_servers || !s->dns_searches ||
            !s->dns_options || !s->ports || !s->labels || !s->annotations || !s->sysctls)
                return -ENOMEM;
        if (s->net_mode == BE_NS_TARGET || s->net_mode == BE_NS_CONTAINER)
                return sh_err(err, -EINVAL,
                              "RunPodSandbox: network namespace mode %d is not "
                              "valid for a pod",
                              (int)s->net_mode);
        return 0;
}

int cri_run_pod_sandbox(struct cri_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__RunPodSandboxRequest *in =
                (const Runtime__V1__RunPodSandboxRequest *)req;
        struct be_sandbox_spec spec;
        Runtime__V1__RunPodSandboxResponse *r;
        char *id = NULL;
        int rc;

        rc = to_spec(in, &spec, err);
        if (rc == 0)
                rc = pod_sandbox_run(ctx->pods, &spec, &id, err);
        be_sandbox_spec_done(&spec);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__RunPodSandboxResponse, run_pod_sandbox_response);
        if (!r) {
                free(id);
                return -ENOMEM;
        }
        r->pod_sandbox_id = id;
        *ret_resp = &r->base;
        return 0;
}

static int id_of(const char *id, const char *rpc, struct sh_error *err)
{
        if (!id || !id[0])
                return sh_err(err, -EINVAL, "%s: pod_sandbox_id is required", rpc);
        /* An id of another form names no sandbox of runt's: not found, as any unknown id. */
        if (sh_validate_id_prefix(id, "pod_sandbox_id", NULL) < 0)
                return sh_err(err, -ENOENT, "%s: pod sandbox '%.80s' not found", rpc, id);
        return 0;
}

int cri_stop_pod_sandbox(struct cri_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__StopPodSandboxRequest *in =
                (const Runtime__V1__StopPodSandboxRequest *)req;
        Runtime__V1__StopPodSandboxResponse *r;
        int rc = id_of(in->pod_sandbox_id, "StopPodSandbox", err);

        if (rc == 0)
                rc = pod_sandbox_stop(ctx->pods, in->pod_sandbox_id, err);
        /* Stopping a sandbox that is gone is success for the kubelet, as removing one is. */
        if (rc == -ENOENT) {
                sh_err_clear(err);
                rc = 0;
        }
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__StopPodSandboxResponse, stop_pod_sandbox_response);
        if (!r)
                return -ENOMEM;
        *ret_resp = &r->base;
        return 0;
}

int cri_remove_pod_sandbox(struct cri_ctx *ctx, const ProtobufCMessage *req,
                           ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__RemovePodSandboxRequest *in =
                (const Runtime__V1__RemovePodSandboxRequest *)req;
        Runtime__V1__RemovePodSandboxResponse *r;
        int rc = id_of(in->pod_sandbox_id, "RemovePodSandbox", err);

        if (rc == 0)
                rc = pod_sandbox_remove(ctx->pods, in->pod_sandbox_id, err);
        if (rc == -ENOENT) { /* removed already, or never one: success (api.proto) */
                sh_err_clear(err);
                rc = 0;
        }
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__RemovePodSandboxResponse, remove_pod_sandbox_response);
        if (!r)
                return -ENOMEM;
        *ret_resp = &r->base;
        return 0;
}

static Runtime__V1__PodSandboxMetadata *metadata(const struct be_sandbox_spec *s)
{
        Runtime__V1__PodSandboxMetadata *m =
                NEW(Runtime__V1__PodSandboxMetadata, pod_sandbox_metadata);

        if (!m)
                return NULL;
        m->name = cri_strdup(s->name);
        m->uid = cri_strdup(s->uid);
        m->namespace_ = cri_strdup(s->namespace);
        m->attempt = s->attempt;
        return m;
}

static Runtime__V1__PodSandboxState state_of(enum pod_state s)
{
        return s == POD_READY ? RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY
                              : RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
}

Runtime__V1__PodSandboxStatus *cri_sandbox_status_msg(const struct pod_sandbox_info *i)
{
        Runtime__V1__PodSandboxStatus *s = NEW(Runtime__V1__PodSandboxStatus, pod_sandbox_status);
        size_t nips = 0;

        if (!s)
                return NULL;
        s->id = cri_strdup(i->id);
        s->metadata = metadata(&i->spec);
        s->state = state_of(i->state);
        s->created_at = i->created_ns;
        s->runtime_handler = cri_strdup(i->spec.handler);
        s->labels = (Runtime__V1__PodSandboxStatus__LabelsEntry **)cri_entries(
                &runtime__v1__pod_sandbox_status__labels_entry__descriptor, i->spec.labels,
                i->spec.n_labels, &s->n_labels);
        s->annotations = (Runtime__V1__PodSandboxStatus__AnnotationsEntry **)cri_entries(
                &runtime__v1__pod_sandbox_status__annotations_entry__descriptor,
                i->spec.annotations, i->spec.n_annotations, &s->n_annotations);
        s->network = NEW(Runtime__V1__PodSandboxNetworkStatus, pod_sandbox_network_status);
        while (i->ips && i->ips[nips])
                nips++;
        if (s->network) {
                s->network->ip = cri_strdup(nips ? i->ips[0] : "");
                s->network->additional_ips = cri_array_new(nips);
                for (size_t k = 1; s->network->additional_ips && k < nips; k++) {
                        Runtime__V1__PodIP *ip = NEW(Runtime__V1__PodIP, pod_ip);

                        if (!ip)
                                break;
                        ip->ip = cri_strdup(i->ips[k]);
                        s->network->additional_ips[s->network->n_additional_ips++] = ip;
                }
        }
        s->linux = NEW(Runtime__V1__LinuxPodSandboxStatus, linux_pod_sandbox_status);
        if (s->linux) {
                s->linux->namespaces = NEW(Runtime__V1__Namespace, namespace);
                if (s->linux->namespaces) {
                        Runtime__V1__NamespaceOption *o =
                                NEW(Runtime__V1__NamespaceOption, namespace_option);

                        s->linux->namespaces->options = o;
                        if (o) {
                                o->network = (Runtime__V1__NamespaceMode)i->spec.net_mode;
                                o->pid = (Runtime__V1__NamespaceMode)i->spec.pid_mode;
                                o->ipc = (Runtime__V1__NamespaceMode)i->spec.ipc_mode;
                        }
                }
        }
        if (!s->id || !s->metadata || !s->runtime_handler || !s->labels || !s->annotations ||
            !s->network || !s->network->ip || !s->linux) {
                protobuf_c_message_free_unpacked(&s->base, NULL);
                return NULL;
        }
        return s;
}

int cri_pod_sandbox_status(struct cri_ctx *ctx, const ProtobufCMessage *req,
                           ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__PodSandboxStatusRequest *in =
                (const Runtime__V1__PodSandboxStatusRequest *)req;
        Runtime__V1__PodSandboxStatusResponse *r;
        struct pod_sandbox_info *i = NULL;
        int rc = id_of(in->pod_sandbox_id, "PodSandboxStatus", err);

        if (rc == 0)
                rc = pod_sandbox_status(ctx->pods, in->pod_sandbox_id, &i, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__PodSandboxStatusResponse, pod_sandbox_status_response);
        if (r)
                r->status = cri_sandbox_status_msg(i);
        if (r && r->status && in->verbose) {
                Runtime__V1__PodSandboxStatusResponse__InfoEntry *e =
                        NEW(Runtime__V1__PodSandboxStatusResponse__InfoEntry,
                            pod_sandbox_status_response__info_entry);
                json_object *o = json_object_new_object();

                json_object_object_add(o, "netns", json_object_new_string(i->netns));
                json_object_object_add(o, "handler", json_object_new_string(i->spec.handler));
                json_object_object_add(o, "hostname", json_object_new_string(i->spec.hostname));
                {
                        char why[256];

                        /* Not ready, and the backend says why (its node unreachable). */
                        if (pod_sandbox_reason(ctx->pods, i, why, sizeof(why)) == 0)
                                json_object_object_add(o, "reason", json_object_new_string(why));
                }
                r->info = cri_array_new(1);
                if (e && r->info) {
                        e->key = cri_strdup("info");
                        e->value = cri_strdup(json_object_to_json_string_ext(
                                o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                        r->info[r->n_info++] = e;
                } else {
                        free(e);
                }
                json_object_put(o);
        }
        pod_sandbox_info_free(i);
        if (!r || !r->status) {
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

/* ListPodSandbox's walk: items packed from the view's strings, as ListContainers'. */
struct sb_walk {
        struct cri_packed out;
        struct cri_kv_scratch labels, annotations;
};

static int add_sandbox(const struct pod_sandbox_info *i, void *data)
{
        struct sb_walk *w = data;
        Runtime__V1__PodSandbox p = RUNTIME__V1__POD_SANDBOX__INIT;
        Runtime__V1__PodSandboxMetadata md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
        const struct be_sandbox_spec *sp = &i->spec;
        void **lp = cri_kv_borrow(&w->labels, &runtime__v1__pod_sandbox__labels_entry__descriptor,
                                  sp->labels, sp->n_labels);
        void **ap = cri_kv_borrow(&w->annotations,
                                  &runtime__v1__pod_sandbox__annotations_entry__descriptor,
                                  sp->annotations, sp->n_annotations);

        if (!lp || !ap)
                return -ENOMEM;
        md.name = sp->name;
        md.uid = sp->uid;
        md.namespace_ = sp->namespace;
        md.attempt = sp->attempt;
        p.id = i->id;
        p.metadata = &md;
        p.state = state_of(i->state);
        p.created_at = i->created_ns;
        p.runtime_handler = sp->handler;
        p.n_labels = sp->n_labels;
        p.labels = (Runtime__V1__PodSandbox__LabelsEntry **)lp;
        p.n_annotations = sp->n_annotations;
        p.annotations = (Runtime__V1__PodSandbox__AnnotationsEntry **)ap;
        return cri_packed_add(&w->out, &p.base);
}

int cri_list_pod_sandbox(struct cri_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__ListPodSandboxRequest *in =
                (const Runtime__V1__ListPodSandboxRequest *)req;
        const Runtime__V1__PodSandboxFilter *f = in->filter;
        struct pod_sandbox_filter pf = {0};
        _cleanup_free_ struct be_kv *labels = NULL;
        struct sb_walk w = {.out.field = 1}; /* ListPodSandboxResponse.items */
        Runtime__V1__ListPodSandboxResponse *r;
        int rc;

        if (f) {
                if (f->id && f->id[0]) {
                        /* A filter id that is no id matches nothing, it is not an error. */
                        if (sh_validate_id_prefix(f->id, "filter.id", NULL) < 0)
                                goto empty;
                        pf.id = f->id;
                }
                if (f->state) {
                        pf.has_state = true;
                        pf.state = f->state->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY
                                           ? POD_READY
                                           : POD_NOTREADY;
                }
                labels = calloc(f->n_label_selector + 1, sizeof(*labels));
                if (!labels)
                        return -ENOMEM;
                for (size_t i = 0; i < f->n_label_selector; i++) {
                        labels[i].key = f->label_selector[i]->key;
                        labels[i].value = f->label_selector[i]->value;
                }
                pf.labels = labels;
                pf.n_labels = f->n_label_selector;
        }
        /* Straight from the view, packed as it goes (the kubelet relists every second). */
        rc = pod_sandbox_each(ctx->pods, &pf, add_sandbox, &w);
        cri_kv_scratch_done(&w.labels);
        cri_kv_scratch_done(&w.annotations);
        if (rc < 0) {
                cri_packed_done(&w.out);
                return rc == -ENOMEM ? rc : sh_err(err, rc, "list pod sandboxes");
        }
empty:
        r = NEW(Runtime__V1__ListPodSandboxResponse, list_pod_sandbox_response);
        if (!r || cri_packed_attach(&w.out, &r->base) < 0) {
                cri_packed_done(&w.out);
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

int cri_port_forward(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                     struct sh_error *err)
{
        const Runtime__V1__PortForwardRequest *in = (const Runtime__V1__PortForwardRequest *)req;
        Runtime__V1__PortForwardResponse *r;
        struct pod_sandbox_info *i = NULL;
        struct stream_req *sr;
        char *url = NULL;
        int rc = id_of(in->pod_sandbox_id, "PortForward", err);

        if (rc < 0)
                return rc;
        for (size_t k = 0; k < in->n_port; k++)
                if (in->port[k] < 1 || in->port[k] > 65535)
                        return sh_err(err, -EINVAL, "PortForward: port %d is not in 1..65535",
                                      in->port[k]);
        if (in->n_port > 64)
                return sh_err(err, -EINVAL, "PortForward: %zu ports, at most 64", in->n_port);
        if (!ctx->stream)
                return sh_err(err, -EAGAIN, "PortForward: the streaming server is not running");
        rc = pod_sandbox_status(ctx->pods, in->pod_sandbox_id, &i, err);
        if (rc < 0)
                return rc;
        if (i->state != POD_READY) {
                rc = sh_err(err, -EINVAL, "PortForward: sandbox %.12s is not ready", i->id);
                pod_sandbox_info_free(i);
                return rc;
        }
        sr = calloc(1, sizeof(*sr));
        if (sr) {
                sr->kind = STREAM_PORTFORWARD;
                sr->id = i->id;
                sr->netns = i->netns;
                i->id = i->netns = NULL;
                if (in->n_port)
                        sr->ports = calloc(in->n_port, sizeof(*sr->ports));
                for (size_t k = 0; sr->ports && k < in->n_port; k++)
                        sr->ports[sr->n_ports++] = (uint16_t)in->port[k];
        }
        pod_sandbox_info_free(i);
        if (!sr || !sr->id || !sr->netns || (in->n_port && !sr->ports)) {
                stream_req_free(sr);
                return -ENOMEM;
        }
        rc = stream_issue(ctx->stream, sr, &url, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__PortForwardResponse, port_forward_response);
        if (!r) {
                free(url);
                return -ENOMEM;
        }
        r->url = url;
        *ret_resp = &r->base;
        return 0;
}
