/*
 * The proxmox backend: one Proxmox VE CT per pod, created and driven over the PVE API
 * (client.c, cluster.c), running runt-agent as its entrypoint, reached over TCP with mutual
 * TLS (agent/tls.h). It is the agent pod layer's second host (agentpod/agentpod.h): the
 * containers, logs, exec, attach, port-forward, stats and events are the layer's; this file
 * makes, reaches, stops, re-owns and removes the CT, gives the pod its address (ipam.c), and
 * carries image layers, CRI mounts and the pod's files into the CT over the agent's channel.
 *
 * ON DISK, besides the layer's files: <pod dir>/pve, "<node> <vmid> <ip>\n", written once
 * the CT exists (a restarted runtd finds the CT by it); <pod dir>/ct-down once the CT was
 * stopped (no API call for a second stop).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agentpod.h"
#include "cleanup.h"
#include "client.h"
#include "cluster.h"
#include "ipam.h"
#include "layer-put.h"
#include "log.h"
#include "podimage.h"
#include "proxmox-internal.h"
#include "sha256.h"
#include "strutil.h"
#include "tls.h"

#undef SH_LOG_MODULE
#define SH_LOG_MODULE "proxmox"

/* How long a node chosen from /cluster/resources is reused for the next pods. */
#define PX_NODE_CACHE_MS 5000
/* How long StopPodSandbox waits for an agent that answered SHUTDOWN to end its connection. */
#define PX_AGENT_EXIT_MS 3000
/* How long a reconnection to an agent may take when the poller or podmgr asks for one. */
#define PX_RECONNECT_MS 3000

struct px_be {
        struct ap_be ap; /* first: be->priv */
        struct px_opts o;
        struct pve_client *api;
        struct pve_ipam *ipam;
        struct ag_tls_ca *ca;
        struct ag_tls_client *tls;
        char *agent_bin;
        char *image_cache; /* where the pod image is built */
        char *image_path, *image_name;
        pthread_mutex_t mu; /* the fields below */
        char *node;         /* the last node picked, until node_until_ms */
        long long node_until_ms;
        struct px_image_node *image_nodes; /* the list, its members' have */
        /* The poller: looks at the nodes of the pods every o.poll_s seconds. */
        pthread_t poller;
        bool poller_started;
        pthread_mutex_t poll_mu;
        pthread_cond_t poll_cond;
        bool quit;
        atomic_bool reconciled;
        /*
         * The CT tags: "runt;runt-<owner>", the owner 12 hex digits of the SHA-256 of this
         * runtd's agent CA certificate and the handler's name. Only CTs with the owner tag
         * are this handler's: the restart reconcile and every DELETE check it.
         */
        char owner_tag[24];
        char tags[32];
        /* This handler's pod range, refused at start when another handler's overlaps it. */
        unsigned char range_lo[16], range_hi[16];
        bool range_held;
};

/* A node's pod image: whether it is known to be there, and the lock of its upload. */
struct px_image_node {
        struct px_image_node *next;
        char *node;
        bool have;          /* under px_be.mu */
        pthread_mutex_t mu; /* held across the listing, the upload and its task */
};

struct px_pod {
        struct ap_pod ap; /* first */
        char node[64];
        uint32_t vmid;
        char ip[INET6_ADDRSTRLEN];
        /* What runt last learned of the CT, never an API call to read: alive reads it. */
        atomic_bool running;
        atomic_bool node_down;
        int watch_fd; /* an eventfd written when the CT stops being alive; -1 until asked */
        pthread_mutex_t watch_mu;
        /* The end of the agent's certificate (epoch seconds) as its last connection showed
         * it, or as the renewal set it; 0 unknown. */
        _Atomic int64_t cert_until;
        int64_t cert_retry_at; /* after a failed renewal: not before (the poller's only) */
};

static inline struct px_pod *px_pod(struct ap_pod *p)
{
        return (struct px_pod *)p;
}

static inline struct px_be *px_be(struct ap_pod *p)
{
        return (struct px_be *)p->be;
}

static long long mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- API helpers */

/*
 * Runs a call that starts a task (its data is the UPID) and waits for the task. The task's
 * exit status and log lines are in @err when it fails (pve_task_wait).
 */
static int px_task(struct px_be *px, const char *method, const char *path,
                   const char *const *params, struct sh_error *err)
{
        struct pve_reply rep = {0};
        const char *upid;
        int r = pve_call(px->api, method, path, params, &rep, err);

        if (r < 0)
                return r;
        upid = rep.data && json_object_is_type(rep.data, json_type_string)
                       ? json_object_get_string(rep.data)
                       : NULL;
        if (!upid)
                r = sh_err(err, -EPROTO, "%s %s: the reply names no task", method, path);
        else
                r = pve_task_wait(px->api, upid, px->o.task_timeout_s * 1000u, err);
        pve_reply_done(&rep);
        return r;
}

/* @o's string member @key; "" when it is missing, null or not a string (PVE's JSON may hold
 * a null anywhere, and json_object_get_string(NULL) is NULL). */
static const char *jstr(json_object *o, const char *key)
{
        json_object *v = NULL;

        if (!o || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return "";
        return json_object_get_string(v);
}

static bool err_says(const struct sh_error *e, const char *what)
{
        return e && strstr(e->msg, what);
}

/* The node for a new pod: the last one picked while it is fresh and reachable. */
static int px_node(struct px_be *px, char **ret, struct sh_error *err)
{
        long long now = mono_ms();
        int r;

        pthread_mutex_lock(&px->mu);
        if (px->node && now < px->node_until_ms && pve_node_available(px->api, px->node)) {
                *ret = strdup(px->node);
                pthread_mutex_unlock(&px->mu);
                return *ret ? 0 : -ENOMEM;
        }
        pthread_mutex_unlock(&px->mu);
        r = pve_node_pick(px->api, (const char *const *)px->o.nodes, ret, err);
        if (r < 0)
                return r;
        pthread_mutex_lock(&px->mu);
        free(px->node);
        px->node = strdup(*ret);
        px->node_until_ms = now + PX_NODE_CACHE_MS;
        pthread_mutex_unlock(&px->mu);
        return 0;
}

/*
 * @node's pod image state, made on first use (under px->mu); never freed before px_fini.
 * NULL: out of memory.
 */
static struct px_image_node *image_node(struct px_be *px, const char *node)
{
        struct px_image_node *in;

        pthread_mutex_lock(&px->mu);
        for (in = px->image_nodes; in && strcmp(in->node, node) != 0; in = in->next)
                ;
        if (!in && (in = calloc(1, sizeof(*in)))) {
                in->node = strdup(node);
                if (!in->node || pthread_mutex_init(&in->mu, NULL) != 0) {
                        free(in->node);
                        free(in);
                        in = NULL;
                } else {
                        in->next = px->image_nodes;
                        px->image_nodes = in;
                }
        }
        pthread_mutex_unlock(&px->mu);
        return in;
}

static bool image_have(struct px_be *px, struct px_image_node *in)
{
        bool have;

        pthread_mutex_lock(&px->mu);
        have = in->have;
        pthread_mutex_unlock(&px->mu);
        return have;
}

static void image_set(struct px_be *px, struct px_image_node *in, bool have)
{
        pthread_mutex_lock(&px->mu);
        in->have = have;
        pthread_mutex_unlock(&px->mu);
}

/* Forgets that @node holds the pod image (a create said it cannot find it): listed again. */
static void image_forget(struct px_be *px, const char *node)
{
        struct px_image_node *in = image_node(px, node);

        if (in)
                image_set(px, in, false);
}

/*
 * Makes sure @node's storage holds the pod image: its vztmpl content is listed once per
 * runtd and node, and the image uploaded when it is missing or its size is not the size of
 * runt's archive (a file planted under the name, or a partial one: an upload overwrites it).
 * The name is its agent's hash, so a file of the right size is taken as ours: the size is
 * what the listing tells. One upload per node at a time (its own lock, held across the
 * upload and its task); a pod on a node that holds the image never waits for another node's.
 */
static int px_image(struct px_be *px, const char *node, struct sh_error *err)
{
        _cleanup_free_ char *volid = NULL;
        struct px_image_node *in = image_node(px, node);
        struct pve_reply rep = {0};
        const char *why = "missing";
        bool have = false;
        struct stat st = {0};
        int r;

        if (!in)
                return -ENOMEM;
        if (image_have(px, in))
                return 0;
        pthread_mutex_lock(&in->mu);
        if (image_have(px, in)) {
                pthread_mutex_unlock(&in->mu);
                return 0;
        }
        volid = sh_strdup_printf("%s:vztmpl/%s", px->o.storage, px->image_name);
        r = volid ? 0 : -ENOMEM;
        if (r == 0 && stat(px->image_path, &st) < 0)
                r = sh_err(err, -errno, "the pod image '%s': %s", px->image_path, strerror(errno));
        if (r == 0)
                r = pve_callf(px->api, "GET", (const char *const[]){"content", "vztmpl", NULL},
                              &rep, err, "/nodes/%s/storage/%s/content", node, px->o.storage);
        for (size_t i = 0; r == 0 && rep.data && json_object_is_type(rep.data, json_type_array) &&
                           i < json_object_array_length(rep.data);
             i++) {
                json_object *o = json_object_array_get_idx(rep.data, i), *v = NULL;
                int64_t size = -1;

                if (strcmp(jstr(o, "volid"), volid) != 0)
                        continue;
                if (json_object_object_get_ex(o, "size", &v))
                        pve_json_int(v, &size);
                have = size == (int64_t)st.st_size;
                why = "of another size";
                break;
        }
        pve_reply_done(&rep);
        if (r == 0 && !have) {
                sh_log_debug("uploading the pod image %s to %s (%s there)", px->image_name, node,
                             why);
                r = pve_upload(px->api, node, px->o.storage, "vztmpl", px->image_path,
                               px->image_name, 0, err);
                if (r < 0)
                        sh_err_prefix(err, r, "upload the pod image to %s", node);
        }
        if (r == 0)
                image_set(px, in, true);
        pthread_mutex_unlock(&in->mu);
        return r;
}

/* ---------------------------------------------------------------- the pod record */

static int rec_write(struct px_pod *p)
{
        _cleanup_free_ char *f = sh_path_join(p->ap.dir, "pve");
        _cleanup_free_ char *text =
                sh_strdup_printf("%s %" PRIu32 " %s\n", p->node, p->vmid, p->ip);

        if (!f || !text)
                return -ENOMEM;
        return sh_write_file_atomic(f, text, strlen(text), 0600);
}

static int rec_read(struct px_pod *p)
{
        _cleanup_free_ char *f = sh_path_join(p->ap.dir, "pve"), *text = NULL;
        char node[64], ip[INET6_ADDRSTRLEN];
        uint32_t vmid;

        if (!f)
                return -ENOMEM;
        if (sh_read_file(f, 4096, &text, NULL) < 0)
                return -ENOENT;
        if (sscanf(text, "%63s %" SCNu32 " %45s", node, &vmid, ip) != 3)
                return -EINVAL;
        snprintf(p->node, sizeof(p->node), "%s", node);
        snprintf(p->ip, sizeof(p->ip), "%s", ip);
        p->vmid = vmid;
        return 0;
}

static bool marked(struct ap_pod *ap, const char *name)
{
        _cleanup_free_ char *f = sh_path_join(ap->dir, name);

        return f && access(f, F_OK) == 0;
}

static void mark(struct ap_pod *ap, const char *name)
{
        _cleanup_free_ char *f = sh_path_join(ap->dir, name);

        if (f)
                sh_write_file_replace(f, "", 0, 0600);
}

/* The CT is not alive any more: wakes podmgr's watch on the pod. */
static void px_set_running(struct px_pod *p, bool running)
{
        bool was = atomic_exchange(&p->running, running);

        if (was && !running) {
                pthread_mutex_lock(&p->watch_mu);
                if (p->watch_fd >= 0)
                        eventfd_write(p->watch_fd, 1);
                pthread_mutex_unlock(&p->watch_mu);
        }
}

/* ---------------------------------------------------------------- CT lifecycle */

/*
 * Whether CT @vmid on @node is this handler's, from its config: our owner tag among its tags
 * (split, matched exactly) and a description of ours naming a sandbox id (in @ret_id when
 * not NULL), @want_id when that is not NULL. 1 ours, 0 not, -ESRCH when the CT does not
 * exist, else the call's error.
 */
static int ct_owned(struct px_be *px, const char *node, uint32_t vmid, const char *want_id,
                    char ret_id[65], struct sh_error *err)
{
        struct pve_reply rep = {0};
        struct sh_error e = {0};
        char id[65];
        int r = pve_callf(px->api, "GET", NULL, &rep, &e, "/nodes/%s/lxc/%" PRIu32 "/config", node,
                          vmid);

        if (r < 0) {
                if (r == -ENOENT || err_says(&e, "does not exist"))
                        return -ESRCH;
                if (err)
                        *err = e;
                return r;
        }
        r = px_tags_have(jstr(rep.data, "tags"), px->owner_tag) &&
            px_description_sandbox(jstr(rep.data, "description"), id) == 0 &&
            (!want_id || strcmp(id, want_id) == 0);
        pve_reply_done(&rep);
        if (r && ret_id)
                memcpy(ret_id, id, sizeof(id));
        return r;
}

/* DELETE CT @vmid on @node (purge, force) and wait; a CT gone already is 0. */
static int ct_delete_raw(struct px_be *px, const char *node, uint32_t vmid, struct sh_error *err)
{
        char path[160];
        struct sh_error e = {0};
        int r;

        snprintf(path, sizeof(path), "/nodes/%s/lxc/%" PRIu32, node, vmid);
        r = px_task(px, "DELETE", path, (const char *const[]){"purge", "1", "force", "1", NULL},
                    &e);
        if (r < 0 && (r == -ENOENT || err_says(&e, "does not exist")))
                r = 0;
        if (r < 0 && err)
                *err = e;
        return r;
}

/*
 * Deletes @p's CT (purge, force) and waits; a CT gone already is 0. Only when its config says
 * it is this pod's: a vmid that names someone else's CT (a create that lost a race, a
 * record gone stale) leaves that CT alone, and is 0 too.
 */
static int ct_delete(struct px_be *px, struct px_pod *p, struct sh_error *err)
{
        int r;

        if (!p->vmid)
                return 0;
        r = ct_owned(px, p->node, p->vmid, p->ap.id, NULL, err);
        if (r == -ESRCH)
                return 0;
        if (r < 0)
                return r;
        if (r == 0) {
                sh_log_debug("pod %.12s: CT %" PRIu32 " on %s is not the pod's: left alone",
                             p->ap.id, p->vmid, p->node);
                return 0;
        }
        return ct_delete_raw(px, p->node, p->vmid, err);
}

/* Stops @p's CT: shutdown with a short timeout, forced after it; a stopped CT is 0. */
static int ct_stop(struct px_be *px, struct px_pod *p, struct sh_error *err)
{
        char path[160];
        struct sh_error e = {0};
        int r;

        snprintf(path, sizeof(path), "/nodes/%s/lxc/%" PRIu32 "/status/shutdown", p->node, p->vmid);
        r = px_task(px, "POST", path, (const char *const[]){"timeout", "5", "forceStop", "1", NULL},
                    &e);
        if (r < 0 && !err_says(&e, "not running") && !err_says(&e, "does not exist") &&
            r != -EHOSTUNREACH) {
                /* The shutdown task failed: stop (kill) it. */
                memset(&e, 0, sizeof(e));
                snprintf(path, sizeof(path), "/nodes/%s/lxc/%" PRIu32 "/status/stop", p->node,
                         p->vmid);
                r = px_task(px, "POST", path, NULL, &e);
        }
        if (r < 0 && (err_says(&e, "not running") || err_says(&e, "does not exist")))
                r = 0;
        if (r < 0 && err)
                *err = e;
        return r;
}

/* PUT config: the agent's entrypoint and its environment (TLS credentials, listen address). */
static int ct_config(struct px_be *px, struct px_pod *p, struct sh_error *err)
{
        char **env = NULL, listen[32], path[160];
        _cleanup_free_ char *joined = NULL;
        size_t len = 0;
        int r;

        snprintf(listen, sizeof(listen), "0.0.0.0:%u", px->o.agent_port);
        r = ag_tls_agent_env(px->ca, p->ap.id, listen, px->o.cert_days, &env, err);
        if (r == 0)
                r = px_env_join((const char *const *)env, &joined, &len, err);
        ag_tls_env_free(env);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "/nodes/%s/lxc/%" PRIu32 "/config", p->node, p->vmid);
        {
                static const char entry[] = PVE_PODIMAGE_AGENT " --ct";
                struct pve_param params[] = {
                        {"env", joined, len},
                        {"entrypoint", entry, sizeof(entry) - 1},
                };

                r = pve_call_params(px->api, "PUT", path, params, SH_ARRAY_SIZE(params), NULL, err);
        }
        explicit_bzero(joined, len);
        return r;
}

struct create_args {
        struct px_be *px;
        struct px_pod *p;
        const struct be_sandbox_spec *spec;
        const char *net0;
        unsigned mib, cores; /* the CT's size: ct_size */
};

/*
 * The size of a new CT: the handler's memory and cores, or the pod's limits where they are
 * more (RunPodSandbox's linux.resources plus overhead, rounded up to MiB and cores).
 */
static void ct_size(const struct px_be *px, const struct be_sandbox_spec *s, unsigned *mib,
                    unsigned *cores)
{
        unsigned long long m = ((unsigned long long)s->pod_memory_limit + (1 << 20) - 1) >> 20;
        unsigned long long c = ((unsigned long long)s->pod_cpu_millis + 999) / 1000;

        *mib = px->o.memory_mib;
        *cores = px->o.cores;
        if (s->pod_memory_limit > 0 && m > *mib)
                *mib = m > (1u << 22) ? 1u << 22 : (unsigned)m; /* PVE's maximum */
        if (s->pod_cpu_millis > 0 && c > *cores)
                *cores = c > 8192 ? 8192 : (unsigned)c;
}

static int ct_create(struct pve_client *c, uint32_t vmid, void *userdata, struct sh_error *err)
{
        struct create_args *a = userdata;
        struct px_be *px = a->px;
        char vmid_s[16], mem[16], cores[16], hostname[64], path[96];
        _cleanup_free_ char *tmpl = sh_strdup_printf("%s:vztmpl/%s", px->o.storage, px->image_name);
        _cleanup_free_ char *desc = px_description(a->spec, a->p->ap.id);
        const char *params[40];
        size_t n = 0;

        (void)c;
        if (!tmpl || !desc)
                return -ENOMEM;
        snprintf(vmid_s, sizeof(vmid_s), "%" PRIu32, vmid);
        snprintf(mem, sizeof(mem), "%u", a->mib);
        snprintf(cores, sizeof(cores), "%u", a->cores);
        px_hostname(a->spec, a->p->ap.id, hostname, sizeof(hostname));
        snprintf(path, sizeof(path), "/nodes/%s/lxc", a->p->node);
#define P(k, v) (params[n++] = (k), params[n++] = (v))
        P("vmid", vmid_s);
        P("ostemplate", tmpl);
        P("hostname", hostname);
        P("memory", mem);
        P("cores", cores);
        P("net0", a->net0);
        P("rootfs", px->o.rootfs);
        P("features", "nesting=1");
        P("ostype", "unmanaged");
        P("unprivileged", "1");
        P("tags", px->tags);
        P("description", desc);
        if (px->o.dns)
                P("nameserver", px->o.dns);
#undef P
        params[n] = NULL;
        {
                struct pve_reply rep = {0};
                const char *upid;
                int r = pve_call(px->api, "POST", path, params, &rep, err);

                /* No task, no CT of ours: the vmid may be someone else's (nextid raced). */
                if (r < 0)
                        return r;
                upid = rep.data && json_object_is_type(rep.data, json_type_string)
                               ? json_object_get_string(rep.data)
                               : NULL;
                if (!upid) {
                        pve_reply_done(&rep);
                        return sh_err(err, -EPROTO, "POST %s: the reply names no task", path);
                }
                /* The vmid is the pod's from here: a failure below deletes the CT (if ours). */
                a->p->vmid = vmid;
                r = pve_task_wait(px->api, upid, px->o.task_timeout_s * 1000u, err);
                pve_reply_done(&rep);
                if (r == -EEXIST || (r < 0 && err_says(err, "already exists")))
                        a->p->vmid = 0; /* the task found it taken: not ours */
                return r;
        }
}

/*
 * PUT config delete=env, once the agent said READY: it holds its credentials in memory, and
 * the CT's env (its private key) would stay readable by GET config, across the cluster.
 */
static int ct_env_drop(struct px_be *px, struct px_pod *p, struct sh_error *err)
{
        return pve_callf(px->api, "PUT", (const char *const[]){"delete", "env", NULL}, NULL, err,
                         "/nodes/%s/lxc/%" PRIu32 "/config", p->node, p->vmid);
}

static int px_start_ct(struct px_be *px, struct px_pod *p, struct sh_error *err)
{
        char path[160];

        snprintf(path, sizeof(path), "/nodes/%s/lxc/%" PRIu32 "/status/start", p->node, p->vmid);
        return px_task(px, "POST", path, NULL, err);
}

/* ---------------------------------------------------------------- the pod host */

static int px_pod_init(struct ap_pod *ap)
{
        struct px_pod *p = px_pod(ap);

        p->watch_fd = -1;
        atomic_init(&p->running, false);
        atomic_init(&p->node_down, false);
        return pthread_mutex_init(&p->watch_mu, NULL) == 0 ? 0 : -ENOMEM;
}

static void px_pod_done(struct ap_pod *ap)
{
        struct px_pod *p = px_pod(ap);

        if (p->watch_fd >= 0)
                close(p->watch_fd);
        pthread_mutex_destroy(&p->watch_mu);
}

static bool px_alive(struct ap_pod *ap)
{
        struct px_pod *p = px_pod(ap);

        return atomic_load(&p->running) && !atomic_load(&p->node_down);
}

/* The CT stopped or vanished; its node unreachable is not that (alive false, gone false). */
static bool px_gone(struct ap_pod *ap)
{
        return !atomic_load(&px_pod(ap)->running);
}

/* TLS to the agent at the pod's address, retried while the CT boots, until @timeout_ms. */
static int px_connect(struct ap_pod *ap, unsigned timeout_ms, const struct ag_client_ops *cbs,
                      void *cb_data, struct ag_client **ret, struct sh_error *err)
{
        struct px_pod *p = px_pod(ap);
        struct px_be *px = px_be(ap);
        long long deadline = mono_ms() + timeout_ms;
        struct ag_tls_conn *conn = NULL;
        int r;

        for (;;) {
                long long left = deadline - mono_ms();

                if (!px_alive(ap))
                        return sh_err(err, -ESRCH,
                                      "proxmox: the pod's CT %" PRIu32 " on %s is "
                                      "not running",
                                      p->vmid, p->node);
                if (left <= 0)
                        return sh_err(err, -ETIMEDOUT, "proxmox: no agent at %s:%u after %u ms",
                                      p->ip, px->o.agent_port, timeout_ms);
                if (err)
                        sh_err_clear(err);
                r = ag_dial_tls(px->tls, p->ip, (uint16_t)px->o.agent_port, ap->id,
                                left > 2000 ? 2000 : (unsigned)left, &conn, err);
                if (r == 0)
                        break;
                if (r == -EACCES)
                        return r; /* a certificate refused: retrying will not help */
                usleep(100 * 1000);
        }
        atomic_store(&p->cert_until, ag_tls_conn_peer_until(conn));
        return ag_client_new_tls(conn, cbs, cb_data, ret, err);
}

/* GET status/current of @p's CT: 1 running, 0 stopped, -ESRCH gone, or the call's error. */
static int ct_status(struct px_be *px, struct px_pod *p, struct sh_error *err)
{
        struct pve_reply rep = {0};
        struct sh_error e = {0};
        json_object *st = NULL;
        int r = pve_callf(px->api, "GET", NULL, &rep, &e,
                          "/nodes/%s/lxc/%" PRIu32 "/status/current", p->node, p->vmid);

        if (r < 0) {
                if (r == -ENOENT || err_says(&e, "does not exist"))
                        return -ESRCH;
                if (err)
                        *err = e;
                return r;
        }
        if (!rep.data || !json_object_object_get_ex(rep.data, "status", &st) ||
            !json_object_is_type(st, json_type_string))
                r = sh_err(err, -EPROTO, "status/current of CT %" PRIu32 ": no status", p->vmid);
        else
                r = strcmp(json_object_get_string(st), "running") == 0;
        pve_reply_done(&rep);
        return r;
}

static int px_reopen(struct ap_pod *ap, struct sh_error *err)
{
        struct px_pod *p = px_pod(ap);
        int r = rec_read(p);

        if (r < 0)
                return sh_err(err, -ESRCH, "proxmox: pod %.12s has no CT record", ap->id);
        r = ct_status(px_be(ap), p, err);
        if (r < 0 && r != -ESRCH) {
                /*
                 * The node is away, or the API failed for now (a timeout, a refused
                 * connection, a 5xx, 595): the pod is not lost, only not ready until the
                 * poller finds its CT running again.
                 */
                sh_log_debug("pod %.12s: CT %" PRIu32 " on %s not reachable for now (%s)", ap->id,
                             p->vmid, p->node, strerror(-r));
                atomic_store(&p->node_down, true);
                atomic_store(&p->running, true);
                return 0;
        }
        if (r <= 0)
                return -ESRCH; /* the CT does not exist, or it stopped: the pod is gone */
        atomic_store(&p->running, true);
        return 0;
}

/*
 * Whether the CT stopped by itself: its agent answered SHUTDOWN and, being the CT's PID 1,
 * powers off after the answer (agent-main.c op_shutdown), so its connection ends with the CT.
 * Waits up to PX_AGENT_EXIT_MS for that end; no API call.
 */
static bool agent_powered_off(struct ap_pod *ap)
{
        long long deadline = mono_ms() + PX_AGENT_EXIT_MS;
        struct ag_client *c;
        bool acked;

        pthread_mutex_lock(&ap->mu);
        acked = ap->shutdown_acked;
        c = ap->agent; /* stays until the pod is freed; the caller holds the pod */
        pthread_mutex_unlock(&ap->mu);
        if (!acked || !c)
                return false;
        while (ag_client_connected(c)) {
                if (mono_ms() >= deadline)
                        return false;
                usleep(10 * 1000);
        }
        return true;
}

/*
 * The CT stopped: by itself when its agent powered off (no call: a CT whose PID 1 ended is
 * stopped, and RemovePodSandbox's DELETE has force=1 for one that is still going down), else
 * shutdown, then stop (ct_stop).
 */
static int px_stop(struct ap_pod *ap, struct sh_error *err)
{
        struct px_pod *p = px_pod(ap);
        int r;

        if (!p->vmid && rec_read(p) < 0)
                return 0;
        if (marked(ap, "ct-down"))
                return 0;
        r = agent_powered_off(ap) ? 0 : ct_stop(px_be(ap), p, err);
        if (r == 0)
                mark(ap, "ct-down");
        px_set_running(p, false);
        return r;
}

/*
 * The CT deleted, then the lease released. A CT that cannot be deleted now (its node away, a
 * task failing) fails the remove and keeps the pod (its record, lease and dir), so the
 * kubelet's next RemovePodSandbox tries again: nothing is left once the node is back.
 */
static int px_teardown(struct ap_pod *ap, struct sh_error *err)
{
        struct px_pod *p = px_pod(ap);
        struct px_be *px = px_be(ap);
        int r = 0;

        if (p->vmid || rec_read(p) == 0)
                r = ct_delete(px, p, err);
        if (r < 0) {
                sh_log_debug("pod %.12s: CT %" PRIu32 " on %s not deleted: %s", ap->id, p->vmid,
                             p->node, err ? err->msg : "");
                /* -EBUSY would tell the layer to forget the pod. */
                r = r == -EBUSY ? -EAGAIN : r;
                return sh_err_prefix(err, r, "proxmox: delete CT %" PRIu32 " on %s", p->vmid,
                                     p->node);
        }
        pve_ipam_release(px->ipam, ap->id, NULL);
        return 0;
}

/* A chain id of our own for a tree that is not an image layer: random, or of @data. */
static void own_chain_id(const void *data, size_t len, char out[72])
{
        unsigned char rnd[32];

        if (!data) {
                if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
                        memset(rnd, 0, sizeof(rnd)); /* then a clash is refused by the agent */
                data = rnd;
                len = sizeof(rnd);
        }
        sh_sha256_digest(data, len, out);
}

/* Sends tree @dir to the agent as a layer named @chain: *@ret is its directory there. */
static int put_tree(struct ap_pod *ap, const char *chain, const char *dir, char **ret,
                    struct sh_error *err)
{
        _cleanup_strv_ char **lowers = NULL;
        int r = ag_layers_put(ap->agent, (const char *const[]){chain, NULL},
                              (const char *const[]){dir, NULL}, &lowers, err);

        if (r < 0)
                return r;
        *ret = TAKE_PTR(lowers[0]);
        return 0;
}

/*
 * The pod's hosts, hostname and resolv.conf, sent as a layer named by their content (so
 * sent once, and again if podmgr rewrites them).
 */
static int put_pod_files(struct ap_pod *ap, const char *pod_dir, char **ret, struct sh_error *err)
{
        static const char *const names[] = {"hosts", "hostname", "resolv.conf"};
        struct sh_sha256 h;
        unsigned char d[32];
        char chain[72];

        sh_sha256_init(&h);
        sh_sha256_update(&h, ap->id, strlen(ap->id) + 1);
        for (size_t i = 0; i < SH_ARRAY_SIZE(names); i++) {
                _cleanup_free_ char *f = sh_path_join(pod_dir, names[i]), *text = NULL;
                size_t n = 0;

                if (!f)
                        return -ENOMEM;
                if (sh_read_file(f, 1 << 20, &text, &n) < 0)
                        return sh_err(err, -ENOENT, "the pod's %s is missing", names[i]);
                sh_sha256_update(&h, names[i], strlen(names[i]) + 1);
                sh_sha256_update(&h, text, n);
        }
        sh_sha256_final(&h, d);
        own_chain_id(d, sizeof(d), chain);
        return put_tree(ap, chain, pod_dir, ret, err);
}

/*
 * A CRI mount's source, copied into the CT: the CT is on another machine, so a mount is a
 * snapshot taken at CreateContainer, not a live bind. A directory is sent as it is; a file in
 * a directory of its own (so *@ret names the file there).
 */
static int put_mount(struct ap_pod *ap, const char *ctr_id, size_t i, const char *path, char **ret,
                     struct sh_error *err)
{
        _cleanup_free_ char *src = NULL;
        char chain[72];
        struct stat st;
        int r;

        if (stat(path, &st) < 0 && errno == ENOENT) {
                r = sh_mkdir_p(path, 0755); /* as for lxc: a missing source dir is made */
                if (r < 0)
                        return sh_err(err, r, "create mount source '%s': %s", path, strerror(-r));
        }
        /* A bind follows symlinks in its source, the last component included: so does the copy. */
        src = realpath(path, NULL);
        if (!src || stat(src, &st) < 0)
                return sh_err(err, -errno, "mount source '%s': %s", path, strerror(errno));
        own_chain_id(NULL, 0, chain);
        if (S_ISDIR(st.st_mode))
                return put_tree(ap, chain, src, ret, err);
        if (S_ISREG(st.st_mode)) {
                _cleanup_free_ char *tmp = sh_strdup_printf("%s/m-%s-%zu", ap->dir, ctr_id, i);
                _cleanup_free_ char *dst = NULL, *lower = NULL;

                if (!tmp)
                        return -ENOMEM;
                sh_rm_rf(tmp);
                dst = sh_path_join(tmp, "f");
                r = dst ? sh_mkdir_p(tmp, 0700) : -ENOMEM;
                if (r == 0)
                        r = sh_copy_file(src, dst, st.st_mode & 07777);
                if (r < 0) {
                        sh_rm_rf(tmp);
                        return sh_err(err, r, "copy mount source '%s': %s", path, strerror(-r));
                }
                r = put_tree(ap, chain, tmp, &lower, err);
                sh_rm_rf(tmp);
                if (r < 0)
                        return r;
                *ret = sh_path_join(lower, "f");
                return *ret ? 0 : -ENOMEM;
        }
        return sh_err(err, -EINVAL,
                      "mount source '%s' is not a regular file or directory: a proxmox pod runs "
                      "on another machine and gets copies of files and directories only",
                      path);
}

static int px_prepare_container(struct ap_pod *ap, const struct be_container *bc,
                                struct ap_ctr_paths *ret, struct sh_error *err)
{
        const struct be_container_spec *s = bc->spec;
        _cleanup_free_ char *pod_dir = NULL;
        size_t n_layers = 0, n_chains = 0;
        int r;

        while (s->layer_dirs[n_layers])
                n_layers++;
        while (s->chain_ids && s->chain_ids[n_chains])
                n_chains++;
        if (n_chains != n_layers)
                return sh_err(err, -EINVAL,
                              "proxmox: the image's layers have no chain ids "
                              "(pull it again)");
        ret->mount_src = calloc(s->n_mounts + 1, sizeof(char *));
        if (!ret->mount_src)
                return -ENOMEM;
        r = ap_pod_agent(ap, err);
        if (r < 0)
                return r;
        r = ag_layers_put(ap->agent, (const char *const *)s->chain_ids,
                          (const char *const *)s->layer_dirs, &ret->lower, err);
        if (r < 0)
                return sh_err_prefix(err, r, "send the image's layers to the CT");
        pod_dir = strdup(bc->pod_dir);
        if (!pod_dir)
                return -ENOMEM;
        r = put_pod_files(ap, pod_dir, &ret->pod_files, err);
        if (r < 0)
                return sh_err_prefix(err, r, "send the pod's files to the CT");
        for (size_t i = 0; i < s->n_mounts; i++) {
                r = put_mount(ap, bc->id, i, s->mounts[i].host_path, &ret->mount_src[i], err);
                if (r < 0)
                        return sh_err_prefix(err, r, "mount %s", s->mounts[i].container_path);
        }
        return 0;
}

static void px_release_container(struct ap_pod *ap, const char *id)
{
        /* Layers stay in the CT (others may use them); they go with it. */
        (void)ap;
        (void)id;
}

static const struct ap_host_ops px_host_ops = {
        .name = "proxmox",
        .box = "CT",
        .box_exited = "the CT stopped",
        .pod_size = sizeof(struct px_pod),
        .pod_init = px_pod_init,
        .pod_done = px_pod_done,
        .alive = px_alive,
        .gone = px_gone,
        .connect = px_connect,
        .reopen = px_reopen,
        .stop = px_stop,
        .teardown = px_teardown,
        .prepare_container = px_prepare_container,
        .release_container = px_release_container,
};

/* ---------------------------------------------------------------- the poller */

/* Every pod held (ap_pod_put each), in *@ret. */
static size_t pods_held(struct px_be *px, struct ap_pod ***ret)
{
        struct ap_pod **v;
        size_t n;

        pthread_mutex_lock(&px->ap.mu);
        n = px->ap.n_pods;
        v = calloc(n + 1, sizeof(*v));
        for (size_t i = 0; v && i < n; i++) {
                v[i] = px->ap.pods[i];
                v[i]->refs++;
        }
        pthread_mutex_unlock(&px->ap.mu);
        *ret = v;
        return v ? n : 0;
}

/*
 * Renews @p's agent certificate (TLS_RENEW over its connection) once less than a third of
 * its validity, or 30 days, is left: the agent serves the next connections with the new
 * one, so a pod outlives its first certificate. A failure is tried again the next round.
 */
static void cert_check(struct px_be *px, struct px_pod *p)
{
        int64_t until = atomic_load(&p->cert_until), now = (int64_t)time(NULL);
        int64_t life = (int64_t)px->o.cert_days * 86400, before = life / 3;
        struct ag_tls_cred cred = {0};
        struct sh_error e = {0};
        struct ag_buf b;
        int r;

        if (before > 30 * 86400)
                before = 30 * 86400;
        if (!until || until - now > before || now < p->cert_retry_at ||
            ap_pod_agent(&p->ap, &e) < 0)
                return;
        r = ag_tls_issue(px->ca, AG_TLS_AGENT, p->ap.id, px->o.cert_days, &cred, &e);
        if (r == 0) {
                ag_buf_init(&b);
                ag_put_bytes(&b, AG_A_TLS_CERT, cred.cert, cred.cert_len);
                ag_put_bytes(&b, AG_A_TLS_KEY, cred.key, cred.key_len);
                r = ag_client_call(p->ap.agent, AG_OP_TLS_RENEW, &b, PX_RECONNECT_MS, NULL, NULL,
                                   &e);
                if (b.data)
                        explicit_bzero(b.data, b.len);
                ag_buf_done(&b);
        }
        ag_tls_cred_done(&cred);
        if (r < 0) {
                /* An agent of an older runt answers EOPNOTSUPP: said once an hour, not
                 * every poll. */
                p->cert_retry_at = now + 3600;
                sh_log_warn("pod %.12s: the agent's certificate (%lld s left) not renewed, "
                            "tried again in an hour: %s",
                            p->ap.id, (long long)(until - now), e.msg);
                return;
        }
        atomic_store(&p->cert_until, now + life);
        sh_log_info("pod %.12s: the agent's certificate renewed for %u days", p->ap.id,
                    px->o.cert_days);
}

/*
 * One look at the nodes of the pods: GET /nodes/<node>/lxc per node (one call for all its
 * CTs). A node that cannot be reached makes its pods not ready (not lost); they are alive
 * again once the node answers with their CT running. A CT that is gone or stopped makes its
 * pod not ready for good.
 */
static void poll_once(struct px_be *px)
{
        struct ap_pod **pods = NULL;
        size_t n = pods_held(px, &pods);

        for (size_t i = 0; i < n; i++) {
                struct px_pod *p = px_pod(pods[i]);
                struct pve_reply rep = {0};
                struct sh_error e = {0};
                bool seen = false;
                int r;

                if (!p->vmid || p->ap.stopped)
                        continue;
                /* Did an earlier pod of the same node answer this round? */
                for (size_t k = 0; k < i && !seen; k++)
                        seen = strcmp(px_pod(pods[k])->node, p->node) == 0;
                if (seen)
                        continue;
                r = pve_callf(px->api, "GET", NULL, &rep, &e, "/nodes/%s/lxc", p->node);
                for (size_t k = i; k < n; k++) {
                        struct px_pod *q = px_pod(pods[k]);
                        bool found = false, running = false;
                        const char *status = "";

                        if (strcmp(q->node, p->node) != 0 || !q->vmid || q->ap.stopped)
                                continue;
                        if (r == -EHOSTUNREACH) {
                                if (!atomic_exchange(&q->node_down, true)) {
                                        sh_log_debug("pod %.12s: node %s unreachable: %s", q->ap.id,
                                                     q->node, e.msg);
                                        pthread_mutex_lock(&q->watch_mu);
                                        if (q->watch_fd >= 0)
                                                eventfd_write(q->watch_fd, 1);
                                        pthread_mutex_unlock(&q->watch_mu);
                                }
                                continue;
                        }
                        if (r < 0)
                                continue;
                        for (size_t j = 0;
                             rep.data && json_object_is_type(rep.data, json_type_array) &&
                             j < json_object_array_length(rep.data) && !found;
                             j++) {
                                json_object *ct = json_object_array_get_idx(rep.data, j), *v;
                                int64_t id = 0;

                                if (json_object_object_get_ex(ct, "vmid", &v) &&
                                    pve_json_int(v, &id) == 0 && id == q->vmid) {
                                        found = true;
                                        status = jstr(ct, "status");
                                        running = strcmp(status, "running") == 0;
                                }
                        }
                        if (found && !status[0])
                                continue; /* no status said: nothing learned */
                        atomic_store(&q->node_down, false);
                        if (!found || !running) {
                                px_set_running(q, false);
                                /* the agent's channel may have closed before this was known */
                                ap_pod_box_ended(&q->ap);
                        }
                }
                pve_reply_done(&rep);
        }
        /*
         * A pod whose CT runs but whose agent's connection dropped (a partition, its node
         * away for a while): connected again, so the exits meanwhile are learned.
         */
        for (size_t i = 0; i < n; i++)
                if (px_alive(pods[i]))
                        ap_pod_reconnect(pods[i], PX_RECONNECT_MS, NULL);
        for (size_t i = 0; i < n; i++)
                if (px_alive(pods[i]))
                        cert_check(px, px_pod(pods[i]));
        for (size_t i = 0; i < n; i++)
                ap_pod_put(pods[i]);
        free(pods);
}

static void *poller_main(void *arg)
{
        struct px_be *px = arg;

        pthread_mutex_lock(&px->poll_mu);
        while (!px->quit) {
                struct timespec ts;

                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += px->o.poll_s;
                pthread_cond_timedwait(&px->poll_cond, &px->poll_mu, &ts);
                if (px->quit)
                        break;
                pthread_mutex_unlock(&px->poll_mu);
                poll_once(px);
                pthread_mutex_lock(&px->poll_mu);
        }
        pthread_mutex_unlock(&px->poll_mu);
        return NULL;
}

/* ---------------------------------------------------------------- backend ops */

/*
 * The pod ranges of the proxmox handlers of this runtd: IPAM is per handler (a directory of
 * leases each), so two handlers with overlapping ranges would lease one address twice.
 */
static pthread_mutex_t ranges_mu = PTHREAD_MUTEX_INITIALIZER;
static struct px_be **ranges;
static size_t n_ranges;

static int range_hold(struct px_be *px, const char *handler, struct sh_error *err)
{
        struct px_be **v;
        int r = 0;

        if (px_opts_range(&px->o, px->range_lo, px->range_hi) < 0)
                return 0; /* pve_ipam_open says what is wrong with it */
        pthread_mutex_lock(&ranges_mu);
        for (size_t i = 0; i < n_ranges && r == 0; i++)
                if (memcmp(px->range_lo, ranges[i]->range_hi, 16) <= 0 &&
                    memcmp(ranges[i]->range_lo, px->range_hi, 16) <= 0)
                        r = sh_err(err, -EINVAL,
                                   "proxmox handler '%s': its pod range overlaps another "
                                   "proxmox handler's (each handler leases its range alone)",
                                   handler);
        v = r == 0 ? realloc(ranges, (n_ranges + 1) * sizeof(*v)) : NULL;
        if (r == 0 && !v)
                r = -ENOMEM;
        if (r == 0) {
                ranges = v;
                ranges[n_ranges++] = px;
                px->range_held = true;
        }
        pthread_mutex_unlock(&ranges_mu);
        return r;
}

static void range_release(struct px_be *px)
{
        if (!px->range_held)
                return;
        pthread_mutex_lock(&ranges_mu);
        for (size_t i = 0; i < n_ranges; i++)
                if (ranges[i] == px) {
                        ranges[i] = ranges[--n_ranges];
                        break;
                }
        if (!n_ranges) {
                free(ranges);
                ranges = NULL;
        }
        pthread_mutex_unlock(&ranges_mu);
        px->range_held = false;
}

/* The owner tag: "runt-" and 12 hex digits of SHA-256(agent CA certificate, NUL, handler). */
static void owner_tag(struct px_be *px, const char *handler)
{
        struct sh_sha256 h;
        unsigned char d[32];
        size_t len = 0;
        const uint8_t *cert = ag_tls_ca_cert(px->ca, &len);

        sh_sha256_init(&h);
        sh_sha256_update(&h, cert, len);
        sh_sha256_update(&h, "", 1);
        sh_sha256_update(&h, handler, strlen(handler));
        sh_sha256_final(&h, d);
        snprintf(px->owner_tag, sizeof(px->owner_tag), "runt-%02x%02x%02x%02x%02x%02x", d[0], d[1],
                 d[2], d[3], d[4], d[5]);
        snprintf(px->tags, sizeof(px->tags), "runt;%s", px->owner_tag);
}

static void px_fini(struct be *be)
{
        struct px_be *px = be->priv;

        if (!px)
                return;
        if (px->poller_started) {
                pthread_mutex_lock(&px->poll_mu);
                px->quit = true;
                pthread_cond_signal(&px->poll_cond);
                pthread_mutex_unlock(&px->poll_mu);
                pthread_join(px->poller, NULL);
        }
        /* The CTs run on: runtd re-owns them when it starts again. */
        range_release(px);
        ap_be_fini(&px->ap);
        pve_client_free(px->api);
        pve_ipam_free(px->ipam);
        ag_tls_client_free(px->tls);
        ag_tls_ca_free(px->ca);
        px_opts_done(&px->o);
        free(px->agent_bin);
        free(px->image_cache);
        free(px->image_path);
        free(px->image_name);
        free(px->node);
        while (px->image_nodes) {
                struct px_image_node *in = px->image_nodes;

                px->image_nodes = in->next;
                pthread_mutex_destroy(&in->mu);
                free(in->node);
                free(in);
        }
        pthread_mutex_destroy(&px->mu);
        pthread_mutex_destroy(&px->poll_mu);
        pthread_cond_destroy(&px->poll_cond);
        free(px);
        be->priv = NULL;
}

static int px_init(struct be *be, const struct be_config *cfg, struct sh_error *err)
{
        struct px_be *px = calloc(1, sizeof(*px));
        char agent[PATH_MAX];
        _cleanup_free_ char *dir = NULL, *ca_dir = NULL;
        int r;

        if (!px)
                return -ENOMEM;
        pthread_mutex_init(&px->mu, NULL);
        pthread_mutex_init(&px->poll_mu, NULL);
        {
                pthread_condattr_t ca;

                pthread_condattr_init(&ca);
                pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
                pthread_cond_init(&px->poll_cond, &ca);
                pthread_condattr_destroy(&ca);
        }
        be->priv = px;
        r = px_opts_parse(cfg, &px->o, err);
        if (r < 0)
                return r;
        {
                /* Process-wide: the largest of the proxmox handlers'. */
                static atomic_uint stall_set;
                unsigned ms = px->o.layer_stall_s * 1000u, was = atomic_load(&stall_set);

                while (ms > was && !atomic_compare_exchange_weak(&stall_set, &was, ms))
                        ;
                ag_layer_put_set_stall_ms(ms > was ? ms : was);
        }
        r = range_hold(px, cfg->handler, err);
        if (r < 0)
                return r;
        dir = sh_strdup_printf("%s/proxmox/%s", cfg->state_dir, cfg->handler);
        ca_dir = sh_path_join(cfg->root_dir, "proxmox");
        px->image_cache = sh_strdup_printf("%s/proxmox/podimage", cfg->root_dir);
        if (!dir || !ca_dir || !px->image_cache || ap_be_init(&px->ap, &px_host_ops, dir) < 0)
                return -ENOMEM;
        {
                struct pve_client_opts co = {
                        .endpoints = (const char *const *)px->o.endpoints,
                        .n_endpoints = px->o.n_endpoints,
                        .token_file = px->o.token_file,
                        .ca_file = px->o.ca_file,
                        .fingerprint = px->o.fingerprint,
                        .insecure = px->o.insecure,
                        /* A node back online is tried again soon: its pods wait for it. */
                        .node_recheck_ms = 5000,
                };

                r = pve_client_new(&co, &px->api, err);
                if (r < 0)
                        return sh_err_prefix(err, r, "proxmox");
        }
        {
                char name[PVE_IPAM_NAME_MAX + 1];
                struct pve_ipam_config ic = {
                        .name = name,
                        .subnet = px->o.subnet,
                        .range_start = px->o.range_start,
                        .range_end = px->o.range_end,
                        .gateway = px->o.gateway,
                };

                snprintf(name, sizeof(name), "%s", cfg->handler);
                for (char *c = name; *c; c++)
                        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                    "_.-",
                                    *c))
                                *c = '_';
                if (name[0] == '.' || !name[0])
                        snprintf(name, sizeof(name), "proxmox");
                r = pve_ipam_open(cfg->state_dir, &ic, &px->ipam, err);
                if (r < 0)
                        return sh_err_prefix(err, r, "proxmox");
        }
        r = sh_mkdir_p(dir, 0700);
        if (r == 0)
                r = ap_be_mkdir(&px->ap);
        if (r < 0)
                return sh_err(err, r, "create '%s': %s", dir, strerror(-r));
        r = ag_tls_ca_open(ca_dir, &px->ca, err);
        if (r == 0)
                r = ag_tls_client_new(px->ca, &px->tls, err);
        if (r < 0)
                return sh_err_prefix(err, r, "proxmox: the agent CA");
        owner_tag(px, cfg->handler);
        /* No agent on this host makes the handler not ready, with the reason. */
        if (sh_find_helper("runt-agent", RUNT_AGENT_FALLBACK, agent, sizeof(agent)) == 0) {
                px->agent_bin = strdup(agent);
                r = pve_podimage_build(agent, px->image_cache, &px->image_path, &px->image_name,
                                       err);
                if (r < 0)
                        return sh_err_prefix(err, r, "proxmox: the pod image");
        }
        if (px->o.poll_s) {
                r = -pthread_create(&px->poller, NULL, poller_main, px);
                if (r < 0)
                        return sh_err(err, r, "proxmox: start the poller: %s", strerror(-r));
                px->poller_started = true;
        }
        return 0;
}

static int px_ready(struct be *be, struct sh_error *err)
{
        struct px_be *px = be->priv;

        if (!px->agent_bin || !px->image_path)
                return sh_err(err, -ENOENT, "proxmox: runt-agent is not installed");
        return 0;
}

static int refuse_host_ns(const struct be_sandbox_spec *s, struct sh_error *err)
{
        const char *what = s->net_mode == BE_NS_NODE   ? "network (hostNetwork)"
                           : s->pid_mode == BE_NS_NODE ? "PID (hostPID)"
                           : s->ipc_mode == BE_NS_NODE ? "IPC (hostIPC)"
                                                       : NULL;

        if (!what)
                return 0;
        return sh_err(err, -EINVAL,
                      "a proxmox pod runs in a CT on a Proxmox VE node and cannot share the "
                      "host's %s namespace; use an lxc handler for it",
                      what);
}

static void reconcile(struct px_be *px);

static int px_sandbox_create(struct be *be, const struct be_sandbox *sb, struct sh_error *err)
{
        struct px_be *px = be->priv;
        struct px_pod *p = NULL;
        struct pve_ipam_lease lease;
        _cleanup_free_ char *node = NULL;
        char net0[512];
        bool leased = false;
        uint32_t vmid = 0;
        int r;

        r = refuse_host_ns(sb->spec, err);
        if (r < 0)
                return r;
        r = px_ready(be, err);
        if (r < 0)
                return r == -ENOENT ? -EBUSY : r; /* runtd's host lacks the agent */
        reconcile(px);
        p = (struct px_pod *)ap_pod_new(&px->ap, sb->id);
        if (!p)
                return -ENOMEM;
        r = ap_pod_mkdir(&p->ap, err);
        if (r < 0)
                goto fail;
        r = px_node(px, &node, err);
        if (r < 0)
                goto fail;
        snprintf(p->node, sizeof(p->node), "%s", node);
        r = px_image(px, node, err);
        if (r < 0)
                goto fail;
        r = pve_ipam_alloc(px->ipam, sb->id, "eth0", &lease, err);
        if (r < 0)
                goto fail;
        leased = true;
        snprintf(p->ip, sizeof(p->ip), "%s", lease.ip);
        r = pve_ipam_net0(&lease, NULL, px->o.bridge, sb->id, net0, sizeof(net0), err);
        if (r < 0)
                goto fail;
        {
                struct create_args a = {.px = px, .p = p, .spec = sb->spec, .net0 = net0};

                ct_size(px, sb->spec, &a.mib, &a.cores);
                r = pve_create_with_nextid(px->api, 0, ct_create, &a, &vmid, err);
                if (r == 0 && (a.mib != px->o.memory_mib || a.cores != px->o.cores)) {
                        /* what ct_grow compares with: the CT never shrinks below it */
                        _cleanup_free_ char *f = sh_path_join(p->ap.dir, "ct-size");
                        _cleanup_free_ char *t = sh_strdup_printf("%u %u\n", a.mib, a.cores);

                        if (!f || !t || sh_write_file_atomic(f, t, strlen(t), 0600) < 0)
                                sh_log_warn("pod %.12s: the CT's size not recorded", p->ap.id);
                }
        }
        if (p->vmid && rec_write(p) < 0)
                sh_log_debug("pod %.12s: cannot record CT %" PRIu32, p->ap.id, p->vmid);
        if (r < 0) {
                sh_err_prefix(err, r, "create the CT on %s", node);
                goto fail;
        }
        p->vmid = vmid;
        r = rec_write(p);
        if (r < 0) {
                sh_err(err, r, "record the pod's CT: %s", strerror(-r));
                goto fail;
        }
        r = ct_config(px, p, err);
        if (r == 0)
                r = px_start_ct(px, p, err);
        if (r < 0) {
                sh_err_prefix(err, r, "start CT %" PRIu32 " on %s", p->vmid, node);
                goto fail;
        }
        atomic_store(&p->running, true);
        r = ap_pod_connect(&p->ap, px->o.task_timeout_s * 1000u, err);
        if (r < 0) {
                sh_err_prefix(err, r, "reach the agent of CT %" PRIu32 " at %s", p->vmid, p->ip);
                goto fail;
        }
        /* The agent holds its credentials now: the key leaves the CT's config. */
        r = ct_env_drop(px, p, err);
        if (r < 0) {
                sh_err_prefix(err, r, "remove the agent's env from CT %" PRIu32, p->vmid);
                goto fail;
        }
        r = ap_pod_add(&px->ap, &p->ap);
        if (r < 0)
                goto fail;
        sh_log_debug("pod %.12s: CT %" PRIu32 " on %s at %s", sb->id, p->vmid, node, p->ip);
        return 0;

fail:
        if (p->node[0] && err_says(err, "can't find file"))
                image_forget(px, p->node); /* the pod image went: listed again next time */
        r = px_create_errno(r, err ? err->msg : NULL);
        if (err)
                err->code = r;
        if (p->vmid) {
                struct sh_error ignored = {0};

                if (ct_delete(px, p, &ignored) < 0)
                        sh_log_debug("pod %.12s: CT %" PRIu32 " not deleted: %s", sb->id, p->vmid,
                                     ignored.msg);
        }
        if (leased)
                pve_ipam_release(px->ipam, sb->id, NULL);
        sh_rm_rf(p->ap.dir);
        ap_pod_free(&p->ap);
        return r;
}

static int px_sandbox_ips(struct be *be, const char *id, char ***ret, struct sh_error *err)
{
        struct px_be *px = be->priv;
        struct pve_ipam_lease lease;
        struct ap_pod *ap = NULL;
        char **v;
        int r = ap_pod_get(be->priv, id, &ap, err);

        if (r < 0)
                return r;
        v = calloc(2, sizeof(*v));
        if (v && px_pod(ap)->ip[0]) {
                /* With the prefix of the range's subnet: the link the CT shares with others. */
                if (pve_ipam_get(px->ipam, id, &lease, NULL) == 0 && lease.prefix &&
                    strcmp(lease.ip, px_pod(ap)->ip) == 0)
                        v[0] = sh_strdup_printf("%s/%u", lease.ip, lease.prefix);
                else
                        v[0] = strdup(px_pod(ap)->ip);
                if (!v[0]) {
                        free(v);
                        v = NULL;
                }
        }
        ap_pod_put(ap);
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

/*
 * Runs when the CT runs and its agent answers (connected again if it had dropped): a pod
 * whose node was away is READY again only once it is whole (BE_CAP_SB_RETURNS).
 */
static int px_sandbox_running(struct be *be, const char *id, bool *ret, struct sh_error *err)
{
        struct ap_pod *ap = NULL;
        int r = ap_sandbox_running(be, id, ret, err);

        if (r < 0 || !*ret)
                return r;
        r = ap_pod_get(be->priv, id, &ap, err);
        if (r < 0)
                return r;
        *ret = ap_pod_reconnect(ap, PX_RECONNECT_MS, NULL) == 0;
        ap_pod_put(ap);
        return 0;
}

static int px_sandbox_reason(struct be *be, const char *id, char *buf, size_t size)
{
        struct ap_pod *ap = NULL;
        struct px_pod *p;
        int r = ap_pod_get(be->priv, id, &ap, NULL);

        if (r < 0)
                return r;
        p = px_pod(ap);
        if (ap->stopped)
                r = -ENOENT;
        else if (atomic_load(&p->running) && atomic_load(&p->node_down))
                snprintf(buf, size, "node %s unreachable: CT %" PRIu32 " not seen since", p->node,
                         p->vmid);
        else if (!atomic_load(&p->running))
                snprintf(buf, size, "CT %" PRIu32 " on node %s is not running", p->vmid, p->node);
        else
                snprintf(buf, size, "the agent of CT %" PRIu32 " on node %s does not answer",
                         p->vmid, p->node);
        ap_pod_put(ap);
        return r;
}

static int px_sandbox_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        struct ap_pod *ap = NULL;
        struct px_pod *p;
        int r = ap_pod_get(be->priv, id, &ap, err), fd = -1;

        if (r < 0)
                return r;
        p = px_pod(ap);
        pthread_mutex_lock(&p->watch_mu);
        if (!ap_pod_alive(ap)) {
                r = -ESRCH;
        } else {
                eventfd_t stale;

                if (p->watch_fd < 0)
                        p->watch_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                else
                        /* Written when it went away before (a node away, now back): a new
                         * watch starts unread. Writes are made under watch_mu. */
                        (void)eventfd_read(p->watch_fd, &stale);
                fd = p->watch_fd >= 0 ? fcntl(p->watch_fd, F_DUPFD_CLOEXEC, 3) : -1;
                r = fd < 0 ? sh_err(err, -errno, "eventfd: %s", strerror(errno)) : 0;
        }
        pthread_mutex_unlock(&p->watch_mu);
        ap_pod_put(ap);
        if (r == 0)
                *ret_fd = fd;
        return r;
}

/* ---------------------------------------------------------------- restart reconcile */

/* Whether pod @id has a pod dir here. */
static bool pod_known(struct px_be *px, const char *id)
{
        _cleanup_free_ char *d = sh_strdup_printf("%s/%.20s", px->ap.dir, id);

        return d && access(d, F_OK) == 0;
}

/*
 * Once per runtd, before the first pod: the CTs carrying this handler's owner tag (this
 * runtd's CA and this handler: not another handler's, not another runtd's, not a user's
 * "runtime" tag) whose description names a sandbox this handler has no pod dir for are
 * deleted; leases whose pod is gone released. CTs of pods it knows that vanished are found
 * by reopen (status/current) or the poller.
 */
static void reconcile(struct px_be *px)
{
        struct pve_reply rep = {0};
        struct pve_ipam_lease *leases = NULL;
        size_t n_leases = 0;
        bool expected = false;

        if (!atomic_compare_exchange_strong(&px->reconciled, &expected, true))
                return;
        if (pve_call(px->api, "GET", "/cluster/resources",
                     (const char *const[]){"type", "vm", NULL}, &rep, NULL) == 0 &&
            rep.data && json_object_is_type(rep.data, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(rep.data); i++) {
                        json_object *o = json_object_array_get_idx(rep.data, i), *v;
                        const char *node = jstr(o, "node");
                        int64_t vmid = 0;
                        char id[65];

                        if (!json_object_object_get_ex(o, "vmid", &v) ||
                            pve_json_int(v, &vmid) < 0 || vmid <= 0 || vmid > UINT32_MAX ||
                            !node[0] || strlen(node) >= sizeof(((struct px_pod *)0)->node) ||
                            strcmp(jstr(o, "type"), "lxc") != 0 ||
                            !px_tags_have(jstr(o, "tags"), px->owner_tag))
                                continue;
                        /* The config says it again (tags, and the sandbox in description). */
                        if (ct_owned(px, node, (uint32_t)vmid, NULL, id, NULL) != 1 ||
                            pod_known(px, id))
                                continue;
                        sh_log_debug("CT %" PRId64 " on %s is this handler's but its pod %.12s "
                                     "is not known: removing it",
                                     vmid, node, id);
                        ct_delete_raw(px, node, (uint32_t)vmid, NULL);
                }
        }
        pve_reply_done(&rep);
        if (pve_ipam_list(px->ipam, &leases, &n_leases, NULL) == 0) {
                for (size_t i = 0; i < n_leases; i++)
                        if (!pod_known(px, leases[i].owner))
                                pve_ipam_release(px->ipam, leases[i].owner, NULL);
                free(leases);
        }
}

/* ---------------------------------------------------------------- CT resources */

/*
 * The CT grows with its containers' limits (docs/backends.md): each container's memory limit
 * and CPU (quota / period, in thousandths of a core) are kept in <pod dir>/limits/<ctr id>
 * ("<bytes> <millicores>\n", 0 for none), the CT's size in <pod dir>/ct-size ("<MiB>
 * <cores>\n"; none: the handler's options). When the sum of the limits exceeds the CT's
 * memory or cores, PUT config sets that one to the sum. The CT never shrinks while the pod
 * lives, and never gets less than the options.
 */
static pthread_mutex_t px_res_mu = PTHREAD_MUTEX_INITIALIZER;

static void res_of(const struct be_resources *r, long long *mem, long long *mcpu)
{
        long long period = r->cpu_period > 0 ? r->cpu_period : 100000, q;

        *mem = r->memory_limit > 0 ? r->memory_limit : 0;
        *mcpu = 0;
        if (r->cpu_quota > 0)
                *mcpu = __builtin_mul_overflow(r->cpu_quota, 1000LL, &q)
                                ? LLONG_MAX
                                : q / period + (q % period != 0);
}

static char *limits_path(struct ap_pod *ap, const char *ctr_id)
{
        return ctr_id ? sh_strdup_printf("%s/limits/%s", ap->dir, ctr_id)
                      : sh_strdup_printf("%s/limits", ap->dir);
}

/* The sum of the containers' recorded limits. */
static int limits_sum(struct ap_pod *ap, long long *mem, long long *mcpu)
{
        _cleanup_free_ char *d = limits_path(ap, NULL);
        DIR *dir;
        struct dirent *e;

        *mem = *mcpu = 0;
        if (!d)
                return -ENOMEM;
        dir = opendir(d);
        if (!dir)
                return errno == ENOENT ? 0 : -errno;
        while ((e = readdir(dir))) {
                _cleanup_free_ char *f = NULL, *text = NULL;
                long long m = 0, c = 0;

                if (e->d_name[0] == '.')
                        continue;
                f = sh_path_join(d, e->d_name);
                if (f && sh_read_file(f, 256, &text, NULL) == 0 &&
                    sscanf(text, "%lld %lld", &m, &c) == 2) {
                        if (__builtin_add_overflow(*mem, m > 0 ? m : 0, mem))
                                *mem = LLONG_MAX;
                        if (__builtin_add_overflow(*mcpu, c > 0 ? c : 0, mcpu))
                                *mcpu = LLONG_MAX;
                }
        }
        closedir(dir);
        return 0;
}

/*
 * Grows @ap's CT to @mem bytes and @mcpu thousandths of a core (rounded up to MiB and
 * cores) where that is more than it has (<pod dir>/ct-size, else the handler's options):
 * PUT config, then ct-size. Never shrinks it. Under px_res_mu.
 */
static int ct_grow(struct px_be *px, struct ap_pod *ap, long long mem, long long mcpu,
                   struct sh_error *err)
{
        struct px_pod *p = px_pod(ap);
        _cleanup_free_ char *size_f = sh_path_join(ap->dir, "ct-size"), *size_text = NULL;
        unsigned have_mib = px->o.memory_mib, have_cores = px->o.cores;
        unsigned long long want_mib, want_cores;
        int r;

        if (!size_f)
                return -ENOMEM;
        if (sh_read_file(size_f, 256, &size_text, NULL) == 0)
                sscanf(size_text, "%u %u", &have_mib, &have_cores);
        want_mib = ((unsigned long long)mem + (1 << 20) - 1) >> 20;
        want_cores = ((unsigned long long)mcpu + 999) / 1000;
        if (want_mib > 1u << 22)
                want_mib = 1u << 22; /* PVE's maximums */
        if (want_cores > 8192)
                want_cores = 8192;
        if (want_mib > have_mib || want_cores > have_cores) {
                char path[160], mib_s[24], cores_s[16];
                const char *params[5];
                size_t n = 0;

                snprintf(mib_s, sizeof(mib_s), "%llu", want_mib);
                snprintf(cores_s, sizeof(cores_s), "%llu", want_cores);
                if (want_mib > have_mib) {
                        params[n++] = "memory";
                        params[n++] = mib_s;
                        have_mib = (unsigned)want_mib;
                }
                if (want_cores > have_cores) {
                        params[n++] = "cores";
                        params[n++] = cores_s;
                        have_cores = (unsigned)want_cores;
                }
                params[n] = NULL;
                if (!p->vmid && rec_read(p) < 0) {
                        r = sh_err(err, -ESRCH, "proxmox: pod %.12s has no CT record", ap->id);
                        return r;
                }
                snprintf(path, sizeof(path), "/nodes/%s/lxc/%" PRIu32 "/config", p->node, p->vmid);
                r = pve_call(px->api, "PUT", path, params, NULL, err);
                if (r < 0) {
                        sh_err_prefix(err, r, "grow CT %" PRIu32 " to %u MiB, %u cores", p->vmid,
                                      have_mib, have_cores);
                        return r;
                }
                sh_log_debug("pod %.12s: CT %" PRIu32 " now %u MiB, %u cores", ap->id, p->vmid,
                             have_mib, have_cores);
                free(size_text);
                size_text = sh_strdup_printf("%u %u\n", have_mib, have_cores);
                if (size_text)
                        sh_write_file_atomic(size_f, size_text, strlen(size_text), 0600);
        }
        return 0;
}

/*
 * Records container @ctr_id's limits @res (NULL: forgets them) and grows @ap's CT if the sum
 * exceeds it. On failure the record is as it was. Under px_res_mu.
 */
static int ct_fit(struct px_be *px, struct ap_pod *ap, const char *ctr_id,
                  const struct be_resources *res, struct sh_error *err)
{
        _cleanup_free_ char *d = limits_path(ap, NULL), *f = limits_path(ap, ctr_id);
        _cleanup_free_ char *old = NULL, *text = NULL;
        long long mem, mcpu;
        size_t old_len = 0;
        bool had;
        int r;

        if (!d || !f)
                return -ENOMEM;
        had = sh_read_file(f, 256, &old, &old_len) == 0;
        if (!res) {
                unlink(f);
                return 0; /* a container gone: the CT stays as it is */
        }
        res_of(res, &mem, &mcpu);
        text = sh_strdup_printf("%lld %lld\n", mem, mcpu);
        if (!text)
                return -ENOMEM;
        r = sh_mkdir_p(d, 0700);
        if (r == 0)
                r = sh_write_file_atomic(f, text, strlen(text), 0600);
        if (r < 0)
                return sh_err(err, r, "record the container's limits: %s", strerror(-r));
        r = limits_sum(ap, &mem, &mcpu);
        if (r < 0)
                goto undo;
        r = ct_grow(px, ap, mem, mcpu, err);
        if (r == 0)
                return 0;

undo:
        if (had)
                sh_write_file_atomic(f, old, old_len, 0600);
        else
                unlink(f);
        return r;
}

static int px_container_create(struct be *be, const struct be_container *c, struct sh_error *err)
{
        struct px_be *px = be->priv;
        struct ap_pod *ap = NULL;
        int r = ap_pod_get(&px->ap, c->sandbox_id, &ap, err);

        if (r < 0)
                return r;
        pthread_mutex_lock(&px_res_mu);
        r = ct_fit(px, ap, c->id, &c->spec->resources, err);
        pthread_mutex_unlock(&px_res_mu);
        if (r == 0) {
                r = ap_container_create(be, c, err);
                if (r < 0) {
                        pthread_mutex_lock(&px_res_mu);
                        ct_fit(px, ap, c->id, NULL, NULL);
                        pthread_mutex_unlock(&px_res_mu);
                }
        }
        ap_pod_put(ap);
        return r;
}

/* UpdateContainerResources: the CT first (so the container's new limits fit), the agent's
 * cgroups then. */
static int px_container_update(struct be *be, const char *id, const struct be_resources *res,
                               struct sh_error *err)
{
        struct px_be *px = be->priv;
        struct ap_pod *ap = NULL;
        int r = ap_ctr_pod(&px->ap, id, &ap, err);

        if (r < 0)
                return r;
        pthread_mutex_lock(&px_res_mu);
        r = ct_fit(px, ap, id, res, err);
        pthread_mutex_unlock(&px_res_mu);
        ap_pod_put(ap);
        if (r < 0)
                return r;
        return ap_container_update(be, id, res, err);
}

/*
 * UpdatePodSandboxResources (@res holds the overhead already): the CT grows to the pod's
 * limits where they are more than it has; it never shrinks (as with the containers').
 */
static int px_sandbox_update(struct be *be, const char *id, const struct be_resources *res,
                             struct sh_error *err)
{
        struct px_be *px = be->priv;
        struct ap_pod *ap = NULL;
        long long mem, mcpu;
        int r = ap_pod_get(&px->ap, id, &ap, err);

        if (r < 0)
                return r;
        res_of(res, &mem, &mcpu);
        pthread_mutex_lock(&px_res_mu);
        r = ct_grow(px, ap, mem, mcpu, err);
        pthread_mutex_unlock(&px_res_mu);
        ap_pod_put(ap);
        return r;
}

static int px_container_remove(struct be *be, const char *id, struct sh_error *err)
{
        struct px_be *px = be->priv;
        struct ap_pod *ap = NULL;
        int r;

        if (ap_ctr_pod(&px->ap, id, &ap, NULL) < 0)
                ap = NULL;
        r = ap_container_remove(be, id, err);
        if (r == 0 && ap) {
                pthread_mutex_lock(&px_res_mu);
                ct_fit(px, ap, id, NULL, NULL);
                pthread_mutex_unlock(&px_res_mu);
        }
        if (ap)
                ap_pod_put(ap);
        return r;
}

const struct be_ops be_proxmox_ops = {
        .name = "proxmox",
        .caps = BE_CAP_EXEC | BE_CAP_ATTACH | BE_CAP_STATS | BE_CAP_OWN_NET | BE_CAP_SB_RETURNS,
        .init = px_init,
        .ready = px_ready,
        .sandbox_create = px_sandbox_create,
        .sandbox_stop = ap_sandbox_stop,
        .sandbox_remove = ap_sandbox_remove,
        .sandbox_running = px_sandbox_running,
        .container_create = px_container_create,
        .container_start = ap_container_start,
        .container_stop = ap_container_stop,
        .container_remove = px_container_remove,
        .container_status = ap_container_status,
        .container_update = px_container_update,
        .sandbox_update = px_sandbox_update,
        .container_reopen_log = ap_container_reopen_log,
        .exec_sync = ap_exec_sync,
        .exec_stream = ap_exec_stream,
        .container_attach = ap_container_attach,
        .container_stats = ap_container_stats,
        .container_watch = ap_container_watch,
        .sandbox_watch = px_sandbox_watch,
        .sandbox_reason = px_sandbox_reason,
        .container_fs_usage = ap_container_fs_usage,
        .sandbox_stats = ap_sandbox_stats,
        .fini = px_fini,
        .sandbox_dial = ap_sandbox_dial,
        .sandbox_ips = px_sandbox_ips,
};
