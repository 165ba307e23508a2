/* RuntimeService container handlers: translation to be_container_spec and back. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#define SH_LOG_MODULE "cri"
#include "cleanup.h"
#include "cri-internal.h"
#include "imagemgr.h"
#include "log.h"
#include "podmgr.h"
#include "stream.h"
#include "validate.h"

#define NEW(type, lower) ((type *)cri_msg_new(&runtime__v1__##lower##__descriptor))

/* ------------------------------------------------------------------ requests */

static int container_id_of(const char *id, const char *rpc, struct sh_error *err)
{
        int rc;

        if (!id || !id[0])
                return sh_err(err, -EINVAL, "%s: container_id is required", rpc);
        /* An id of another form names no container of runt's: not found, as any unknown id. */
        rc = sh_validate_id_prefix(id, "container_id", NULL);
        return rc < 0 ? sh_err(err, -ENOENT, "%s: container '%.80s' not found", rpc, id) : 0;
}

/* CRI LinuxContainerResources (may be NULL: nothing set) as be_resources; @what names it. */
int cri_resources_from(const Runtime__V1__LinuxContainerResources *in, const char *what,
                       struct be_resources *r, struct sh_error *err)
{
        memset(r, 0, sizeof(*r));
        r->cpuset_cpus = strdup(in && in->cpuset_cpus ? in->cpuset_cpus : "");
        r->cpuset_mems = strdup(in && in->cpuset_mems ? in->cpuset_mems : "");
        r->hugepages = calloc((in ? in->n_hugepage_limits : 0) + 1, sizeof(*r->hugepages));
        if (!r->cpuset_cpus || !r->cpuset_mems || !r->hugepages)
                return -ENOMEM;
        if (!in)
                return 0;
        /* The kernel's ranges; a value outside is a mistake to report, not to clamp. */
        if (in->cpu_period != 0 && (in->cpu_period < 1000 || in->cpu_period > 1000000))
                return sh_err(err, -EINVAL,
                              "%s.cpu_period %lld is out of range (1000 to 1000000 us, or 0)", what,
                              (long long)in->cpu_period);
        if (in->cpu_quota < -1 || (in->cpu_quota > 0 && in->cpu_quota < 1000))
                return sh_err(err, -EINVAL,
                              "%s.cpu_quota %lld is out of range (at least 1000 us; 0 or -1 for "
                              "none)",
                              what, (long long)in->cpu_quota);
        if (in->cpu_shares < 0 || in->cpu_shares > 262144)
                return sh_err(err, -EINVAL, "%s.cpu_shares %lld is out of range (0 to 262144)",
                              what, (long long)in->cpu_shares);
        if (in->memory_limit_in_bytes < 0)
                return sh_err(err, -EINVAL, "%s.memory_limit_in_bytes %lld is negative", what,
                              (long long)in->memory_limit_in_bytes);
        if (in->memory_swap_limit_in_bytes < -1)
                return sh_err(err, -EINVAL,
                              "%s.memory_swap_limit_in_bytes %lld is out of range (-1 for none)",
                              what, (long long)in->memory_swap_limit_in_bytes);
        if (in->oom_score_adj < -1000 || in->oom_score_adj > 1000)
                return sh_err(err, -EINVAL, "%s.oom_score_adj %lld is out of range (-1000 to 1000)",
                              what, (long long)in->oom_score_adj);
        r->cpu_period = in->cpu_period;
        r->cpu_quota = in->cpu_quota;
        r->cpu_shares = in->cpu_shares;
        r->memory_limit = in->memory_limit_in_bytes;
        r->memory_swap_limit = in->memory_swap_limit_in_bytes;
        r->oom_score_adj = in->oom_score_adj;
        r->has_oom_score_adj = true;
        for (size_t i = 0; i < in->n_hugepage_limits; i++) {
                const Runtime__V1__HugepageLimit *h = in->hugepage_limits[i];
                char limit[24];

                if (!h->page_size || !h->page_size[0])
                        return sh_err(err, -EINVAL, "%s.hugepage_limits[%zu].page_size is required",
                                      what, i);
                /* It names a cgroup file ("hugetlb.2MB.limit_in_bytes"): "2MB", "1GB"... */
                if (strlen(h->page_size) > 16 || strspn(h->page_size, "0123456789") == 0 ||
                    strspn(h->page_size, "0123456789KMGTkmgtBb") != strlen(h->page_size))
                        return sh_err(err, -EINVAL,
                                      "%s.hugepage_limits[%zu].page_size '%.16s' is not a page "
                                      "size like 2MB",
                                      what, i, h->page_size);
                snprintf(limit, sizeof(limit), "%" PRIu64, h->limit);
                r->hugepages[i].key = strdup(h->page_size);
                r->hugepages[i].value = strdup(limit);
                r->n_hugepages = i + 1;
                if (!r->hugepages[i].key || !r->hugepages[i].value)
                        return -ENOMEM;
        }
        return 0;
}

static int propagation_from(Runtime__V1__MountPropagation p, enum be_propagation *ret)
{
        if (p == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE)
                *ret = BE_PROPAGATION_PRIVATE;
        else if (p == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER)
                *ret = BE_PROPAGATION_HOST_TO_CONTAINER;
        else if (p == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL)
                *ret = BE_PROPAGATION_BIDIRECTIONAL;
        else
                return -EINVAL;
        return 0;
}

static int mounts_from(const Runtime__V1__ContainerConfig *c, struct be_container_spec *s,
                       struct sh_error *err)
{
        s->mounts = calloc(c->n_mounts + 1, sizeof(*s->mounts));
        if (!s->mounts)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_mounts; i++) {
                const Runtime__V1__Mount *m = c->mounts[i];
                struct be_mount *o = &s->mounts[i];

                /* Refused rather than ignored: each would silently weaken what was asked. */
                if (m->image && m->image->image && m->image->image[0])
                        return sh_err(err, -EOPNOTSUPP,
                                      "CreateContainer: config.mounts[%zu]: image volumes are not "
                                      "supported",
                                      i);
                if (m->recursive_read_only)
                        return sh_err(
                                err, -EOPNOTSUPP,
                                "CreateContainer: config.mounts[%zu]: recursive read-only mounts "
                                "are not supported",
                                i);
                if (m->n_uidmappings || m->n_gidmappings)
                        return sh_err(
                                err, -EOPNOTSUPP,
                                "CreateContainer: config.mounts[%zu]: id-mapped mounts are not "
                                "supported",
                                i);
                if (!m->container_path || !m->container_path[0])
                        return sh_err(
                                err, -EINVAL,
                                "CreateContainer: config.mounts[%zu].container_path is required",
                                i);
                if (!m->host_path || !m->host_path[0])
                        return sh_err(err, -EINVAL,
                                      "CreateContainer: config.mounts[%zu].host_path is required",
                                      i);
                if (propagation_from(m->propagation, &o->propagation) < 0)
                        return sh_err(
                                err, -EINVAL,
                                "CreateContainer: config.mounts[%zu].propagation %d is not valid",
                                i, (int)m->propagation);
                o->readonly = m->readonly;
                o->container_path = strdup(m->container_path);
                o->host_path = strdup(m->host_path);
                s->n_mounts = i + 1;
                if (!o->container_path || !o->host_path)
                        return -ENOMEM;
        }
        return 0;
}

static int devices_from(const Runtime__V1__ContainerConfig *c, struct be_container_spec *s,
                        struct sh_error *err)
{
        s->devices = calloc(c->n_devices + 1, sizeof(*s->devices));
        if (!s->devices)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_devices; i++) {
                const Runtime__V1__Device *d = c->devices[i];
                struct be_device *o = &s->devices[i];
                const char *perm = d->permissions && d->permissions[0] ? d->permissions : "rwm";

                if (!d->host_path || !d->host_path[0])
                        return sh_err(err, -EINVAL,
                                      "CreateContainer: config.devices[%zu].host_path is required",
                                      i);
                if (strspn(perm, "rwm") != strlen(perm))
                        return sh_err(
                                err, -EINVAL,
                                "CreateContainer: config.devices[%zu].permissions must be made of "
                                "'r', 'w' and 'm'",
                                i);
                /* No container path: the device appears where it is on the host (containerd). */
                o->container_path =
                        strdup(d->container_path && d->container_path[0] ? d->container_path
                                                                         : d->host_path);
                o->host_path = strdup(d->host_path);
                o->permissions = strdup(perm);
                s->n_devices = i + 1;
                if (!o->container_path || !o->host_path || !o->permissions)
                        return -ENOMEM;
        }
        return 0;
}

/* Capability names as the backend wants them: upper case, without "CAP_". */
static int caps_from(char *const *v, size_t n, const char *field, char ***ret, struct sh_error *err)
{
        char **out = calloc(n + 1, sizeof(char *));

        *ret = out;
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *c = v[i] ? v[i] : "";
                size_t len;

                if (strncasecmp(c, "CAP_", 4) == 0)
                        c += 4;
                len = strlen(c);
                if (len == 0 || strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                          "0123456789_") != len)
                        return sh_err(err, -EINVAL,
                                      "CreateContainer: "
                                      "config.linux.security_context.capabilities.%s[%zu] "
                                      "is not a capability name",
                                      field, i);
                if (!(out[i] = malloc(len + 1)))
                        return -ENOMEM;
                for (size_t k = 0; k <= len; k++)
                        out[i][k] = (char)toupper((unsigned char)c[k]);
        }
        return 0;
}

static int seccomp_from(const Runtime__V1__LinuxContainerSecurityContext *sc,
                        struct be_container_spec *s, struct sh_error *err)
{
        const Runtime__V1__SecurityProfile *p = sc ? sc->seccomp : NULL;
        const char *path = sc ? sc->seccomp_profile_path : NULL;
        const char *local = NULL;

        if (p) {
                if (p->profile_type == RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__RuntimeDefault)
                        s->seccomp = BE_SECCOMP_RUNTIME_DEFAULT;
                else if (p->profile_type == RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined)
                        s->seccomp = BE_SECCOMP_UNCONFINED;
                else if (p->profile_type ==
                         RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost) {
                        s->seccomp = BE_SECCOMP_LOCALHOST;
                        local = p->localhost_ref;
                } else
                        return sh_err(err, -EINVAL,
                                      "CreateContainer: "
                                      "config.linux.security_context.seccomp.profile_type "
                                      "%d is not valid",
                                      (int)p->profile_type);
        } else if (path && path[0]) {
                /* The field the kubelet sent before SecurityProfile (CRI v1alpha2 days). */
                if (strcmp(path, "runtime/default") == 0 || strcmp(path, "docker/default") == 0)
                        s->seccomp = BE_SECCOMP_RUNTIME_DEFAULT;
                else if (strcmp(path, "unconfined") == 0)
                        s->seccomp = BE_SECCOMP_UNCONFINED;
                else if (strncmp(path, "localhost/", 10) == 0) {
                        s->seccomp = BE_SECCOMP_LOCALHOST;
                        local = path + 10;
                } else
                        return sh_err(err, -EINVAL,
                                      "CreateContainer: "
                                      "config.linux.security_context.seccomp_profile_path "
                                      "must be runtime/default, unconfined or localhost/<path>");
        } else {
                /* Neither field: CRI's Unconfined ("" is unconfined, says the API), which the
                 * kubelet sends for a pod that names no profile (containerd does the same). */
                s->seccomp = BE_SECCOMP_UNCONFINED;
        }
        if (s->seccomp == BE_SECCOMP_LOCALHOST && (!local || local[0] != '/'))
                return sh_err(err, -EINVAL,
                              "CreateContainer: config.linux.security_context: a Localhost "
                              "seccomp profile needs an absolute path");
        s->seccomp_profile = strdup(local ? local : "");
        return s->seccomp_profile ? 0 : -ENOMEM;
}

static int pid_mode_from(const Runtime__V1__LinuxContainerSecurityContext *sc, enum be_ns_mode *ret,
                         struct sh_error *err)
{
        const Runtime__V1__NamespaceOption *ns = sc ? sc->namespace_options : NULL;
        Runtime__V1__NamespaceMode m = ns ? ns->pid : RUNTIME__V1__NAMESPACE_MODE__POD;

        if (m == RUNTIME__V1__NAMESPACE_MODE__POD)
                *ret = BE_NS_POD;
        else if (m == RUNTIME__V1__NAMESPACE_MODE__CONTAINER)
                *ret = BE_NS_CONTAINER;
        else if (m == RUNTIME__V1__NAMESPACE_MODE__NODE)
                *ret = BE_NS_NODE;
        else if (m == RUNTIME__V1__NAMESPACE_MODE__TARGET)
                return sh_err(
                        err, -EOPNOTSUPP,
                        "CreateContainer: config.linux.security_context.namespace_options.pid "
                        "TARGET is not supported");
        else
                return sh_err(
                        err, -EINVAL,
                        "CreateContainer: config.linux.security_context.namespace_options.pid %d "
                        "is not valid",
                        (int)m);
        return 0;
}

/* Everything of @c but the process (podmgr resolves that) into @s, which the caller frees. */
static int to_spec(const Runtime__V1__ContainerConfig *c, struct be_container_spec *s,
                   struct sh_error *err)
{
        const Runtime__V1__LinuxContainerConfig *lx = c->linux;
        const Runtime__V1__LinuxContainerSecurityContext *sc = lx ? lx->security_context : NULL;
        const Runtime__V1__Capability *caps = sc ? sc->capabilities : NULL;
        int rc;

        s->name = strdup(c->metadata->name);
        s->attempt = c->metadata->attempt;
        s->image_ref = strdup(c->image->image);
        s->log_path = strdup(""); /* podmgr joins it from the sandbox's log directory */
        s->tty = c->tty;
        s->stdin_open = c->stdin;
        s->stdin_once = c->stdin_once;
        s->privileged = sc && sc->privileged;
        s->readonly_rootfs = sc && sc->readonly_rootfs;
        s->no_new_privs = sc && sc->no_new_privs;
        s->masked_paths = cri_strv_from(sc ? sc->masked_paths : NULL, sc ? sc->n_masked_paths : 0);
        s->readonly_paths =
                cri_strv_from(sc ? sc->readonly_paths : NULL, sc ? sc->n_readonly_paths : 0);
        if (!s->name || !s->image_ref || !s->log_path || !s->masked_paths || !s->readonly_paths)
                return -ENOMEM;
        if (c->n_cdi_devices)
                return sh_err(err, -EOPNOTSUPP,
                              "CreateContainer: config.CDI_devices are not supported");
        if ((rc = mounts_from(c, s, err)) < 0 || (rc = devices_from(c, s, err)) < 0)
                return rc;
        if ((rc = cri_kv_from((void *const *)c->labels, c->n_labels, &s->labels, &s->n_labels)) <
                    0 ||
            (rc = cri_kv_from((void *const *)c->annotations, c->n_annotations, &s->annotations,
                              &s->n_annotations)) < 0)
                return rc;
        rc = cri_resources_from(lx ? lx->resources : NULL,
                                "CreateContainer: config.linux.resources", &s->resources, err);
        if (rc < 0)
                return rc;
        /* Ambient capabilities are not passed on: runt runs no process with any. */
        if ((rc = caps_from(caps ? caps->add_capabilities : NULL,
                            caps ? caps->n_add_capabilities : 0, "add_capabilities", &s->cap_add,
                            err)) < 0 ||
            (rc = caps_from(caps ? caps->drop_capabilities : NULL,
                            caps ? caps->n_drop_capabilities : 0, "drop_capabilities", &s->cap_drop,
                            err)) < 0)
                return rc;
        if ((rc = seccomp_from(sc, s, err)) < 0)
                return rc;
        /* The request's StopSignal wins over the image's; its enum name ("SIGRTMINPLUS3"). */
        if (c->stop_signal != RUNTIME__V1__SIGNAL__RUNTIME_DEFAULT) {
                const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
                        &runtime__v1__signal__descriptor, (int)c->stop_signal);

                if (!v)
                        return sh_err(err, -EINVAL,
                                      "CreateContainer: config.stop_signal %d is "
                                      "not a signal",
                                      (int)c->stop_signal);
                free(s->stop_signal);
                s->stop_signal = strdup(v->name);
                if (!s->stop_signal)
                        return -ENOMEM;
        }
        return pid_mode_from(sc, &s->pid_mode, err);
}

/* The parts of a pod_ctr_request that CreateContainer allocates. */
struct ctr_args {
        char **command;
        char **args;
        char **envs;
        long long *groups;
};

static void ctr_args_done(struct ctr_args *a)
{
        sh_strv_free(a->command);
        sh_strv_free(a->args);
        sh_strv_free(a->envs);
        free(a->groups);
        memset(a, 0, sizeof(*a));
}

/* The request's envs as "K=V" (the value is bytes on the wire: no NUL allowed in it). */
static int envs_from(Runtime__V1__KeyValue *const *kv, size_t n, char ***ret, struct sh_error *err)
{
        char **v = calloc(n + 1, sizeof(char *));

        *ret = v;
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const Runtime__V1__KeyValue *e = kv[i];
                size_t klen = e->key ? strlen(e->key) : 0, vlen = e->value.len;

                if (klen == 0)
                        return sh_err(err, -EINVAL,
                                      "CreateContainer: config.envs[%zu].key is required", i);
                if (memchr(e->key, '=', klen))
                        return sh_err(err, -EINVAL,
                                      "CreateContainer: config.envs[%zu].key must not contain '='",
                                      i);
                if (vlen && memchr(e->value.data, '\0', vlen))
                        return sh_err(err, -EINVAL,
                                      "CreateContainer: config.envs[%zu].value contains a NUL byte",
                                      i);
                if (!(v[i] = malloc(klen + vlen + 2)))
                        return -ENOMEM;
                memcpy(v[i], e->key, klen);
                v[i][klen] = '=';
                if (vlen)
                        memcpy(v[i] + klen + 1, e->value.data, vlen);
                v[i][klen + 1 + vlen] = '\0';
        }
        return 0;
}

/* A uid or gid from the wire: 0 .. 2^32-2 (2^32-1 is the kernel's "no id"). */
static int id_in_range(int64_t v, const char *field, struct sh_error *err)
{
        if (v < 0 || v >= (int64_t)UINT32_MAX)
                return sh_err(err, -EINVAL, "CreateContainer: %s %lld is out of range", field,
                              (long long)v);
        return 0;
}

/* The process fields of @c into @r, with their storage in @a (the caller frees it). */
static int to_request(const Runtime__V1__ContainerConfig *c, struct pod_ctr_request *r,
                      struct ctr_args *a, struct sh_error *err)
{
        const Runtime__V1__LinuxContainerConfig *lx = c->linux;
        const Runtime__V1__LinuxContainerSecurityContext *sc = lx ? lx->security_context : NULL;
        size_t ngroups = sc ? sc->n_supplemental_groups : 0;
        int rc;

        a->command = cri_strv_from(c->command, c->n_command);
        a->args = cri_strv_from(c->args, c->n_args);
        a->groups = calloc(ngroups + 1, sizeof(*a->groups));
        if (!a->command || !a->args || !a->groups)
                return -ENOMEM;
        if ((rc = envs_from(c->envs, c->n_envs, &a->envs, err)) < 0)
                return rc;
        for (size_t i = 0; i < ngroups; i++) {
                char field[80];

                snprintf(field, sizeof(field),
                         "config.linux.security_context.supplemental_groups[%zu]", i);
                if ((rc = id_in_range(sc->supplemental_groups[i], field, err)) < 0)
                        return rc;
                a->groups[i] = sc->supplemental_groups[i];
        }
        r->command = a->command;
        r->args = a->args;
        r->envs = a->envs;
        r->working_dir = c->working_dir ? c->working_dir : "";
        r->log_path = c->log_path ? c->log_path : "";
        r->supplemental_groups = a->groups;
        r->n_supplemental_groups = ngroups;
        r->username = sc && sc->run_as_username ? sc->run_as_username : "";
        if (sc && sc->run_as_user) {
                if ((rc = id_in_range(sc->run_as_user->value,
                                      "config.linux.security_context.run_as_user", err)) < 0)
                        return rc;
                r->has_uid = true;
                r->uid = sc->run_as_user->value;
        }
        if (sc && sc->run_as_group) {
                /* CRI: "the runtime MUST error" on a group without a user. */
                if (!r->has_uid && !r->username[0])
                        return sh_err(
                                err, -EINVAL,
                                "CreateContainer: config.linux.security_context.run_as_group needs "
                                "run_as_user or run_as_username");
                if ((rc = id_in_range(sc->run_as_group->value,
                                      "config.linux.security_context.run_as_group", err)) < 0)
                        return rc;
                r->has_gid = true;
                r->gid = sc->run_as_group->value;
        }
        return 0;
}

static int check_create(const Runtime__V1__CreateContainerRequest *in, struct sh_error *err)
{
        const Runtime__V1__ContainerConfig *c = in->config;
        const char *name = c && c->metadata ? c->metadata->name : NULL;
        int rc;

        if (!in->pod_sandbox_id || !in->pod_sandbox_id[0])
                return sh_err(err, -EINVAL, "CreateContainer: pod_sandbox_id is required");
        rc = sh_validate_id_prefix(in->pod_sandbox_id, "pod_sandbox_id", err);
        if (rc < 0)
                return sh_err_prefix(err, rc, "CreateContainer");
        if (!c)
                return sh_err(err, -EINVAL, "CreateContainer: config is required");
        if (!name || !name[0])
                return sh_err(err, -EINVAL, "CreateContainer: config.metadata.name is required");
        rc = sh_validate_name(name, strlen(name), "config.metadata.name", err);
        if (rc < 0)
                return sh_err_prefix(err, rc, "CreateContainer");
        if (!c->image || !c->image->image || !c->image->image[0])
                return sh_err(err, -EINVAL, "CreateContainer: config.image.image is required");
        return 0;
}

int cri_create_container(struct cri_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__CreateContainerRequest *in =
                (const Runtime__V1__CreateContainerRequest *)req;
        struct be_container_spec spec = {0};
        struct pod_ctr_request r = {0};
        struct ctr_args args = {0};
        struct img_info *info = NULL;
        Runtime__V1__CreateContainerResponse *resp;
        char *id = NULL;
        int rc;

        rc = check_create(in, err);
        if (rc == 0)
                rc = to_spec(in->config, &spec, err);
        if (rc == 0)
                rc = to_request(in->config, &r, &args, err);
        if (rc == 0) {
                const char *ref = in->config->image->image;

                rc = img_status(ctx->images, ref, &info, err);
                if (rc == -ENOENT)
                        rc = sh_err(err, -ENOENT, "image '%s' not found: pull it first", ref);
        }
        if (rc == 0) {
                const struct img_config *ic = &info->config;

                r.sandbox_id = in->pod_sandbox_id;
                r.spec = &spec;
                r.image = (struct pod_image){
                        .id = info->id,
                        .layer_dirs = info->layer_dirs,
                        .chain_ids = info->chain_ids,
                        .entrypoint = ic->entrypoint,
                        .cmd = ic->cmd,
                        .env = ic->env,
                        .user = ic->user ? ic->user : "",
                        .working_dir = ic->working_dir ? ic->working_dir : "",
                        .stop_signal = ic->stop_signal ? ic->stop_signal : "",
                        .name = info->repo_tags && info->repo_tags[0] ? info->repo_tags[0] : "",
                        .digest_ref = info->repo_digests && info->repo_digests[0]
                                              ? info->repo_digests[0]
                                              : "",
                };
                rc = pod_container_create(ctx->pods, &r, &id, err);
        }
        be_container_spec_done(&spec);
        ctr_args_done(&args);
        img_info_free(info);
        if (rc < 0)
                return rc;
        resp = NEW(Runtime__V1__CreateContainerResponse, create_container_response);
        if (!resp) {
                free(id);
                return -ENOMEM;
        }
        resp->container_id = id;
        *ret_resp = &resp->base;
        return 0;
}

int cri_start_container(struct cri_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__StartContainerRequest *in =
                (const Runtime__V1__StartContainerRequest *)req;
        Runtime__V1__StartContainerResponse *r;
        int rc = container_id_of(in->container_id, "StartContainer", err);

        if (rc == 0)
                rc = pod_container_start(ctx->pods, in->container_id, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__StartContainerResponse, start_container_response);
        if (!r)
                return -ENOMEM;
        *ret_resp = &r->base;
        return 0;
}

int cri_stop_container(struct cri_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__StopContainerRequest *in =
                (const Runtime__V1__StopContainerRequest *)req;
        Runtime__V1__StopContainerResponse *r;
        int rc = container_id_of(in->container_id, "StopContainer", err);

        /* A negative grace period is none: the kubelet means "now". */
        if (rc == 0)
                rc = pod_container_stop(ctx->pods, in->container_id,
                                        in->timeout > 0 ? in->timeout : 0, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__StopContainerResponse, stop_container_response);
        if (!r)
                return -ENOMEM;
        *ret_resp = &r->base;
        return 0;
}

int cri_remove_container(struct cri_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__RemoveContainerRequest *in =
                (const Runtime__V1__RemoveContainerRequest *)req;
        Runtime__V1__RemoveContainerResponse *r;
        struct sh_error gc_err = {0};
        int rc = container_id_of(in->container_id, "RemoveContainer", err);

        if (rc == 0)
                rc = pod_container_remove(ctx->pods, in->container_id, err);
        if (rc == -ENOENT) { /* removed already, or never one: success (api.proto) */
                sh_err_clear(err);
                rc = 0;
        }
        if (rc < 0)
                return rc;
        /* The container is gone either way; layers left over are collected by the next run. */
        rc = img_gc(ctx->images, &gc_err);
        if (rc < 0)
                sh_log_warn("container=%s layer collection failed, ignoring: %s", in->container_id,
                            gc_err.msg);
        r = NEW(Runtime__V1__RemoveContainerResponse, remove_container_response);
        if (!r)
                return -ENOMEM;
        *ret_resp = &r->base;
        return 0;
}

/* ------------------------------------------------------------------ responses */

static Runtime__V1__ContainerMetadata *metadata(const struct be_container_spec *s)
{
        Runtime__V1__ContainerMetadata *m = NEW(Runtime__V1__ContainerMetadata, container_metadata);

        if (!m)
                return NULL;
        m->name = cri_strdup(s->name);
        m->attempt = s->attempt;
        if (!m->name) {
                protobuf_c_message_free_unpacked(&m->base, NULL);
                return NULL;
        }
        return m;
}

/* The image as the request named it (containerd puts the id in image_ref and image_id). */
static Runtime__V1__ImageSpec *image_spec(const struct be_container_spec *s)
{
        Runtime__V1__ImageSpec *i = NEW(Runtime__V1__ImageSpec, image_spec);

        if (!i)
                return NULL;
        i->image = cri_strdup(s->image_ref);
        if (!i->image) {
                protobuf_c_message_free_unpacked(&i->base, NULL);
                return NULL;
        }
        return i;
}

static Runtime__V1__ContainerState state_of(enum pod_ctr_state s)
{
        switch (s) {
        case POD_CTR_CREATED:
                return RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED;
        case POD_CTR_RUNNING:
                return RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
        case POD_CTR_EXITED:
                return RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
        case POD_CTR_UNKNOWN:
                break;
        }
        return RUNTIME__V1__CONTAINER_STATE__CONTAINER_UNKNOWN;
}

static Runtime__V1__MountPropagation propagation_of(enum be_propagation p)
{
        switch (p) {
        case BE_PROPAGATION_HOST_TO_CONTAINER:
                return RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER;
        case BE_PROPAGATION_BIDIRECTIONAL:
                return RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
        case BE_PROPAGATION_PRIVATE:
                break;
        }
        return RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE;
}

/* Adds @s's mounts to @st; false on ENOMEM (what was added is freed with @st). */
static bool add_mounts(Runtime__V1__ContainerStatus *st, const struct be_container_spec *s)
{
        st->mounts = cri_array_new(s->n_mounts);
        if (!st->mounts)
                return false;
        for (size_t i = 0; i < s->n_mounts; i++) {
                Runtime__V1__Mount *m = NEW(Runtime__V1__Mount, mount);

                if (!m)
                        return false;
                st->mounts[st->n_mounts++] = m;
                m->container_path = cri_strdup(s->mounts[i].container_path);
                m->host_path = cri_strdup(s->mounts[i].host_path);
                m->readonly = s->mounts[i].readonly;
                m->propagation = propagation_of(s->mounts[i].propagation);
                if (!m->container_path || !m->host_path)
                        return false;
        }
        return true;
}

static Runtime__V1__ContainerResources *resources_msg(const struct be_resources *in)
{
        Runtime__V1__ContainerResources *r =
                NEW(Runtime__V1__ContainerResources, container_resources);
        Runtime__V1__LinuxContainerResources *l;
        bool ok;

        if (!r)
                return NULL;
        l = r->linux = NEW(Runtime__V1__LinuxContainerResources, linux_container_resources);
        ok = l && (l->hugepage_limits = cri_array_new(in->n_hugepages));
        if (ok) {
                l->cpu_period = in->cpu_period;
                l->cpu_quota = in->cpu_quota;
                l->cpu_shares = in->cpu_shares;
                l->memory_limit_in_bytes = in->memory_limit;
                l->memory_swap_limit_in_bytes = in->memory_swap_limit;
                l->oom_score_adj = in->oom_score_adj;
                l->cpuset_cpus = cri_strdup(in->cpuset_cpus);
                l->cpuset_mems = cri_strdup(in->cpuset_mems);
                ok = l->cpuset_cpus && l->cpuset_mems;
        }
        for (size_t i = 0; ok && i < in->n_hugepages; i++) {
                Runtime__V1__HugepageLimit *h = NEW(Runtime__V1__HugepageLimit, hugepage_limit);

                ok = h != NULL;
                if (!ok)
                        break;
                l->hugepage_limits[l->n_hugepage_limits++] = h;
                h->page_size = cri_strdup(in->hugepages[i].key);
                h->limit =
                        strtoull(in->hugepages[i].value ? in->hugepages[i].value : "0", NULL, 10);
                ok = h->page_size != NULL;
        }
        if (!ok) {
                protobuf_c_message_free_unpacked(&r->base, NULL);
                return NULL;
        }
        return r;
}

static Runtime__V1__ContainerUser *user_msg(const struct be_container_spec *s)
{
        Runtime__V1__ContainerUser *u = NEW(Runtime__V1__ContainerUser, container_user);
        Runtime__V1__LinuxContainerUser *l;

        if (!u)
                return NULL;
        l = u->linux = NEW(Runtime__V1__LinuxContainerUser, linux_container_user);
        if (l && s->n_groups) {
                l->supplemental_groups = calloc(s->n_groups, sizeof(*l->supplemental_groups));
                for (size_t i = 0; l->supplemental_groups && i < s->n_groups; i++)
                        l->supplemental_groups[l->n_supplemental_groups++] = s->groups[i];
        }
        if (!l || (s->n_groups && !l->supplemental_groups)) {
                protobuf_c_message_free_unpacked(&u->base, NULL);
                return NULL;
        }
        l->uid = s->uid;
        l->gid = s->gid;
        return u;
}

/*
 * The image of a container as its status names it (containerd's answer, what the kubelet
 * shows): image.image the first tag the image has now, image_ref its first digested
 * reference (api.proto: "digested reference to the image in use"); the id when it has none.
 */
static void image_names(struct cri_ctx *ctx, const struct pod_container_info *i,
                        Runtime__V1__ContainerStatus *s)
{
        struct img_info *info = NULL;
        char *tag = NULL, *digest = NULL;

        if (!s->image || !i->spec.image_id[0])
                return;
        if (i->image_name[0] || i->image_digest[0]) {
                /* Recorded at CreateContainer: no image store read per call or event. */
                tag = i->image_name[0] ? strdup(i->image_name) : NULL;
                digest = i->image_digest[0] ? strdup(i->image_digest) : NULL;
        } else if (img_status(ctx->images, i->spec.image_id, &info, NULL) == 0) {
                /* No names recorded: an older runtd's record, or an image that had neither a
                 * tag nor a digest when the container was made (then the store is read). */
                if (info->repo_tags && info->repo_tags[0])
                        tag = strdup(info->repo_tags[0]);
                if (info->repo_digests && info->repo_digests[0])
                        digest = strdup(info->repo_digests[0]);
                img_info_free(info);
        }
        if (tag) {
                free(s->image->image);
                s->image->image = tag;
        }
        if (digest) {
                free(s->image_ref);
                s->image_ref = digest;
        }
}

static Runtime__V1__ContainerStatus *status_msg(const struct pod_container_info *i)
{
        Runtime__V1__ContainerStatus *s = NEW(Runtime__V1__ContainerStatus, container_status);
        bool ok;

        if (!s)
                return NULL;
        s->id = cri_strdup(i->id);
        s->metadata = metadata(&i->spec);
        s->state = state_of(i->state);
        s->created_at = i->created_ns;
        s->started_at = i->started_ns;
        s->finished_at = i->finished_ns;
        s->exit_code = i->exit_code;
        s->image = image_spec(&i->spec);
        s->image_ref = cri_strdup(i->spec.image_id);
        s->image_id = cri_strdup(i->spec.image_id);
        s->reason = cri_strdup(i->reason);
        s->message = cri_strdup(i->message);
        s->labels = (Runtime__V1__ContainerStatus__LabelsEntry **)cri_entries(
                &runtime__v1__container_status__labels_entry__descriptor, i->spec.labels,
                i->spec.n_labels, &s->n_labels);
        s->annotations = (Runtime__V1__ContainerStatus__AnnotationsEntry **)cri_entries(
                &runtime__v1__container_status__annotations_entry__descriptor, i->spec.annotations,
                i->spec.n_annotations, &s->n_annotations);
        s->log_path = cri_strdup(i->spec.log_path);
        {
                const ProtobufCEnumValue *sig = protobuf_c_enum_descriptor_get_value_by_name(
                        &runtime__v1__signal__descriptor, i->spec.stop_signal);

                s->stop_signal = sig ? (Runtime__V1__Signal)sig->value
                                     : RUNTIME__V1__SIGNAL__RUNTIME_DEFAULT;
        }
        s->resources = resources_msg(&i->spec.resources);
        s->user = user_msg(&i->spec);
        ok = add_mounts(s, &i->spec);
        if (!ok || !s->id || !s->metadata || !s->image || !s->image_ref || !s->image_id ||
            !s->reason || !s->message || !s->labels || !s->annotations || !s->log_path ||
            !s->resources || !s->user) {
                protobuf_c_message_free_unpacked(&s->base, NULL);
                return NULL;
        }
        return s;
}

Runtime__V1__ContainerStatus *cri_container_status_msg(struct cri_ctx *ctx,
                                                       const struct pod_container_info *i)
{
        Runtime__V1__ContainerStatus *s = status_msg(i);

        if (s)
                image_names(ctx, i, s);
        return s;
}

static json_object *json_str(const char *s)
{
        return json_object_new_string(s ? s : "");
}

/* ContainerStatus' verbose info: one JSON document under "info" (no env values: secrets). */
static char *verbose_info(const struct pod_container_info *i)
{
        json_object *o = json_object_new_object(), *argv = json_object_new_array();
        size_t nenv = 0;
        char *s;

        if (!o || !argv) {
                json_object_put(o);
                json_object_put(argv);
                return NULL;
        }
        for (size_t k = 0; i->spec.argv && i->spec.argv[k]; k++)
                json_object_array_add(argv, json_str(i->spec.argv[k]));
        while (i->spec.env && i->spec.env[nenv])
                nenv++;
        json_object_object_add(o, "pid", json_object_new_int(i->pid));
        json_object_object_add(o, "sandboxId", json_str(i->sandbox_id));
        json_object_object_add(o, "imageId", json_str(i->spec.image_id));
        json_object_object_add(o, "argv", argv);
        json_object_object_add(o, "envCount", json_object_new_int64((int64_t)nenv));
        json_object_object_add(o, "cwd", json_str(i->spec.cwd));
        json_object_object_add(o, "user", json_str(i->user));
        json_object_object_add(o, "uid", json_object_new_int64(i->spec.uid));
        json_object_object_add(o, "gid", json_object_new_int64(i->spec.gid));
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}

static int add_verbose_info(Runtime__V1__ContainerStatusResponse *r,
                            const struct pod_container_info *i)
{
        Runtime__V1__ContainerStatusResponse__InfoEntry *e =
                NEW(Runtime__V1__ContainerStatusResponse__InfoEntry,
                    container_status_response__info_entry);

        r->info = cri_array_new(1);
        if (!e || !r->info) {
                free(e);
                return -ENOMEM;
        }
        r->info[r->n_info++] = e;
        e->key = cri_strdup("info");
        e->value = verbose_info(i);
        return e->key && e->value ? 0 : -ENOMEM;
}

int cri_container_status(struct cri_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__ContainerStatusRequest *in =
                (const Runtime__V1__ContainerStatusRequest *)req;
        Runtime__V1__ContainerStatusResponse *r;
        struct pod_container_info *i = NULL;
        int rc = container_id_of(in->container_id, "ContainerStatus", err);

        if (rc == 0)
                rc = pod_container_status(ctx->pods, in->container_id, &i, err);
        if (rc < 0)
                return rc;
        rc = -ENOMEM;
        r = NEW(Runtime__V1__ContainerStatusResponse, container_status_response);
        if (r && (r->status = cri_container_status_msg(ctx, i)))
                rc = in->verbose ? add_verbose_info(r, i) : 0;
        pod_container_info_free(i);
        if (rc < 0) {
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return rc;
        }
        *ret_resp = &r->base;
        return 0;
}

/* The CRI state a filter asks for; false for a value no container can be in. */
static bool filter_state(Runtime__V1__ContainerState s, enum pod_ctr_state *ret)
{
        if (s == RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED)
                *ret = POD_CTR_CREATED;
        else if (s == RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING)
                *ret = POD_CTR_RUNNING;
        else if (s == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED)
                *ret = POD_CTR_EXITED;
        else if (s == RUNTIME__V1__CONTAINER_STATE__CONTAINER_UNKNOWN)
                *ret = POD_CTR_UNKNOWN;
        else
                return false;
        return true;
}

/*
 * The id, pod and label parts of a ListContainers or ListContainerStats filter as @pf (the
 * labels in *@labels, which the caller frees). Ids are prefixes; one that can name no
 * container sets *@ret_none: it matches nothing, and is no error.
 */
static int filter_from(const char *id, const char *pod_id, void *const *sel, size_t n_sel,
                       struct pod_container_filter *pf, struct be_kv **labels, bool *ret_none)
{
        if (id && id[0]) {
                *ret_none |= sh_validate_id_prefix(id, "filter.id", NULL) < 0;
                pf->id = id;
        }
        if (pod_id && pod_id[0]) {
                *ret_none |= sh_validate_id_prefix(pod_id, "filter.pod_sandbox_id", NULL) < 0;
                pf->sandbox_id = pod_id;
        }
        *labels = calloc(n_sel + 1, sizeof(**labels));
        if (!*labels)
                return -ENOMEM;
        for (size_t i = 0; i < n_sel; i++) {
                const struct cri_map_entry *e = sel[i];

                (*labels)[i].key = e->key;
                (*labels)[i].value = e->value;
        }
        pf->labels = *labels;
        pf->n_labels = n_sel;
        return 0;
}

/*
 * ListContainers' walk: each item packed straight from the view's strings (borrowed for the
 * visit, which holds the view shared), entries in scratch arrays reused from item to item.
 */
struct ctr_walk {
        struct cri_packed out;
        struct cri_kv_scratch labels, annotations;
};

static int add_container(const struct pod_container_info *i, void *data)
{
        struct ctr_walk *w = data;
        Runtime__V1__Container c = RUNTIME__V1__CONTAINER__INIT;
        Runtime__V1__ContainerMetadata md = RUNTIME__V1__CONTAINER_METADATA__INIT;
        Runtime__V1__ImageSpec is = RUNTIME__V1__IMAGE_SPEC__INIT;
        const struct be_container_spec *sp = &i->spec;
        void **lp = cri_kv_borrow(&w->labels, &runtime__v1__container__labels_entry__descriptor,
                                  sp->labels, sp->n_labels);
        void **ap = cri_kv_borrow(&w->annotations,
                                  &runtime__v1__container__annotations_entry__descriptor,
                                  sp->annotations, sp->n_annotations);

        if (!lp || !ap)
                return -ENOMEM;
        md.name = sp->name;
        md.attempt = sp->attempt;
        is.image = sp->image_ref;
        c.id = i->id;
        c.pod_sandbox_id = i->sandbox_id;
        c.metadata = &md;
        c.image = &is;
        c.image_ref = sp->image_id;
        c.image_id = sp->image_id;
        c.state = state_of(i->state);
        c.created_at = i->created_ns;
        c.n_labels = sp->n_labels;
        c.labels = (Runtime__V1__Container__LabelsEntry **)lp;
        c.n_annotations = sp->n_annotations;
        c.annotations = (Runtime__V1__Container__AnnotationsEntry **)ap;
        return cri_packed_add(&w->out, &c.base);
}

int cri_list_containers(struct cri_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__ListContainersRequest *in =
                (const Runtime__V1__ListContainersRequest *)req;
        const Runtime__V1__ContainerFilter *f = in->filter;
        struct pod_container_filter pf = {0};
        _cleanup_free_ struct be_kv *labels = NULL;
        struct ctr_walk w = {.out.field = 1}; /* ListContainersResponse.containers */
        Runtime__V1__ListContainersResponse *r;
        int rc = 0;

        if (f) {
                bool none = false;

                rc = filter_from(f->id, f->pod_sandbox_id, (void *const *)f->label_selector,
                                 f->n_label_selector, &pf, &labels, &none);
                if (rc < 0)
                        return rc;
                if (f->state && !none) {
                        none = !filter_state(f->state->state, &pf.state);
                        pf.has_state = true;
                }
                if (none)
                        goto empty;
        }
        /* Straight from the view, packed as it goes (the kubelet relists every second). */
        rc = pod_container_each(ctx->pods, &pf, add_container, &w);
        cri_kv_scratch_done(&w.labels);
        cri_kv_scratch_done(&w.annotations);
        if (rc < 0) {
                cri_packed_done(&w.out);
                return rc == -ENOMEM ? rc : sh_err(err, rc, "list containers");
        }
empty:
        r = NEW(Runtime__V1__ListContainersResponse, list_containers_response);
        if (!r || cri_packed_attach(&w.out, &r->base) < 0) {
                cri_packed_done(&w.out);
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

int cri_update_container_resources(struct cri_ctx *ctx, const ProtobufCMessage *req,
                                   ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__UpdateContainerResourcesRequest *in =
                (const Runtime__V1__UpdateContainerResourcesRequest *)req;
        Runtime__V1__UpdateContainerResourcesResponse *r;
        struct be_resources res = {0};
        int rc = container_id_of(in->container_id, "UpdateContainerResources", err);

        if (rc == 0 && !in->linux)
                rc = sh_err(err, -EINVAL, "UpdateContainerResources: linux resources are required");
        if (rc == 0)
                rc = cri_resources_from(in->linux, "UpdateContainerResources: linux", &res, err);
        if (rc == 0)
                rc = pod_container_update(ctx->pods, in->container_id, &res, err);
        be_resources_done(&res);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__UpdateContainerResourcesResponse, update_container_resources_response);
        if (!r)
                return -ENOMEM;
        *ret_resp = &r->base;
        return 0;
}

int cri_reopen_container_log(struct cri_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__ReopenContainerLogRequest *in =
                (const Runtime__V1__ReopenContainerLogRequest *)req;
        Runtime__V1__ReopenContainerLogResponse *r;
        int rc = container_id_of(in->container_id, "ReopenContainerLog", err);

        if (rc == 0)
                rc = pod_container_reopen_log(ctx->pods, in->container_id, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__ReopenContainerLogResponse, reopen_container_log_response);
        if (!r)
                return -ENOMEM;
        *ret_resp = &r->base;
        return 0;
}

/*
 * Appends to @res's stderr a line that says its output was cut (on its own line), so that
 * whoever reads a probe's or a user's output knows it is not all there.
 */
static int note_cut_output(struct be_exec_result *res)
{
        char note[200];
        bool nl = res->err_len > 0 && res->err[res->err_len - 1] != '\n';
        int n = snprintf(note, sizeof(note),
                         "%srunt: ExecSync output cut: %zu more bytes of stdout and stderr "
                         "dropped (the reply holds %u)\n",
                         nl ? "\n" : "", res->dropped, (unsigned)CRI_EXEC_SYNC_MAX_OUTPUT);
        char *e;

        if (n < 0 || (size_t)n >= sizeof(note))
                return -EINVAL;
        e = realloc(res->err, res->err_len + (size_t)n + 1);
        if (!e)
                return -ENOMEM;
        memcpy(e + res->err_len, note, (size_t)n + 1);
        res->err = e;
        res->err_len += (size_t)n;
        return 0;
}

int cri_exec_sync(struct cri_ctx *ctx, const ProtobufCMessage *req, int cancel_fd,
                  ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__ExecSyncRequest *in = (const Runtime__V1__ExecSyncRequest *)req;
        struct be_exec_result res = {0};
        _cleanup_free_ const char **argv = NULL;
        Runtime__V1__ExecSyncResponse *r;
        int rc = container_id_of(in->container_id, "ExecSync", err);

        if (rc < 0)
                return rc;
        if (in->n_cmd == 0)
                return sh_err(err, -EINVAL, "ExecSync: cmd is required");
        if (!in->cmd[0] || !in->cmd[0][0])
                return sh_err(err, -EINVAL, "ExecSync: cmd[0] must not be empty");
        if (in->timeout < 0)
                return sh_err(err, -EINVAL, "ExecSync: timeout must not be negative");
        argv = calloc(in->n_cmd + 1, sizeof(*argv));
        if (!argv)
                return -ENOMEM;
        for (size_t i = 0; i < in->n_cmd; i++)
                argv[i] = in->cmd[i] ? in->cmd[i] : "";
        rc = pod_container_exec_sync(ctx->pods, in->container_id, argv, in->timeout, cancel_fd,
                                     CRI_EXEC_SYNC_MAX_OUTPUT, &res, err);
        if (rc < 0)
                return rc;
        if (res.dropped > 0 && (rc = note_cut_output(&res)) < 0) {
                be_exec_result_done(&res);
                return rc;
        }
        r = NEW(Runtime__V1__ExecSyncResponse, exec_sync_response);
        if (!r) {
                be_exec_result_done(&res);
                return -ENOMEM;
        }
        /* The result's buffers are malloc'd: the response takes them over. */
        r->stdout.data = (uint8_t *)TAKE_PTR(res.out);
        r->stdout.len = r->stdout.data ? res.out_len : 0;
        r->stderr.data = (uint8_t *)TAKE_PTR(res.err);
        r->stderr.len = r->stderr.data ? res.err_len : 0;
        r->exit_code = res.exit_code;
        be_exec_result_done(&res);
        *ret_resp = &r->base;
        return 0;
}

/*
 * Exec's and Attach's common part: checks the stream flags, that the streaming server runs
 * and the container @id runs, and issues a URL for a request of @kind (@cmd: Exec's, else
 * NULL) in *@ret_url.
 */
static int container_stream(struct cri_ctx *ctx, const char *rpc, enum stream_kind kind,
                            const char *id, char *const *cmd, size_t n_cmd, bool tty, bool in,
                            bool out, bool errs, char **ret_url, struct sh_error *err)
{
        struct stream_req *sr;
        int rc;

        if (tty && errs)
                return sh_err(err, -EINVAL, "%s: tty and stderr cannot both be true", rpc);
        if (!in && !out && !errs)
                return sh_err(err, -EINVAL, "%s: one of stdin, stdout, or stderr must be set", rpc);
        if (!ctx->stream)
                return sh_err(err, -EAGAIN, "%s: the streaming server is not running", rpc);
        sr = calloc(1, sizeof(*sr));
        if (!sr)
                return -ENOMEM;
        *sr = (struct stream_req){.kind = kind, .tty = tty, .in = in, .out = out, .err = errs};
        if (cmd && !(sr->argv = cri_strv_from(cmd, n_cmd))) {
                stream_req_free(sr);
                return -ENOMEM;
        }
        rc = pod_container_running(ctx->pods, id, &sr->id, err);
        if (rc < 0) {
                stream_req_free(sr);
                return sh_err_prefix(err, rc, "%s", rpc);
        }
        return stream_issue(ctx->stream, sr, ret_url, err);
}

int cri_exec(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
             struct sh_error *err)
{
        const Runtime__V1__ExecRequest *in = (const Runtime__V1__ExecRequest *)req;
        Runtime__V1__ExecResponse *r;
        char *url = NULL;
        int rc = container_id_of(in->container_id, "Exec", err);

        if (rc < 0)
                return rc;
        if (in->n_cmd == 0)
                return sh_err(err, -EINVAL, "Exec: cmd is required");
        if (!in->cmd[0] || !in->cmd[0][0])
                return sh_err(err, -EINVAL, "Exec: cmd[0] must not be empty");
        rc = container_stream(ctx, "Exec", STREAM_EXEC, in->container_id, in->cmd, in->n_cmd,
                              in->tty, in->stdin, in->stdout, in->stderr, &url, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__ExecResponse, exec_response);
        if (!r) {
                free(url);
                return -ENOMEM;
        }
        r->url = url;
        *ret_resp = &r->base;
        return 0;
}

int cri_attach(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
               struct sh_error *err)
{
        const Runtime__V1__AttachRequest *in = (const Runtime__V1__AttachRequest *)req;
        Runtime__V1__AttachResponse *r;
        char *url = NULL;
        int rc = container_id_of(in->container_id, "Attach", err);

        /* The kubelet asks with the container's own tty setting; the streams follow it. */
        if (rc == 0)
                rc = container_stream(ctx, "Attach", STREAM_ATTACH, in->container_id, NULL, 0,
                                      in->tty, in->stdin, in->stdout, in->stderr, &url, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__AttachResponse, attach_response);
        if (!r) {
                free(url);
                return -ENOMEM;
        }
        r->url = url;
        *ret_resp = &r->base;
        return 0;
}
