/*
 * Containers of an agent pod: the host makes what the container needs reachable from the
 * box (ap_host_ops.prepare_container: image layers, CRI mounts), then the agent creates,
 * runs and reports it. runtd keeps what it learned (c/<id>/exit) so a status outlives the
 * box.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ap-internal.h"
#include "cleanup.h"
#include "fsusage.h"
#include "log.h"
#include "strutil.h"
#include "validate.h"

#undef SH_LOG_MODULE
#define SH_LOG_MODULE "agentpod"

static long long now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------ the entry runtd keeps */

static char *ctr_file(const struct ap_pod *p, const char *id, const char *name)
{
        return sh_strdup_printf("%s/c/%s/%s", p->dir, id, name);
}

static void status_write(struct ap_ctr *c)
{
        _cleanup_free_ char *path = ctr_file(c->pod, c->id, "exit");
        char buf[512];
        int n;

        if (!path)
                return;
        n = snprintf(buf, sizeof(buf), "%lld %lld %lld %d %s\n%s\n", (long long)c->st.exit_code,
                     (long long)c->st.started_ns, (long long)c->st.finished_ns,
                     c->st.oom_killed ? 1 : 0, c->st.reason[0] ? c->st.reason : "-", c->st.message);
        if (n > 0)
                sh_write_file_replace(path, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf),
                                      0600);
}

static void status_read(struct ap_ctr *c)
{
        _cleanup_free_ char *path = ctr_file(c->pod, c->id, "exit"), *buf = NULL;
        long long code, started, finished;
        int oom;
        char reason[32];

        if (!path || sh_read_file(path, 4096, &buf, NULL) < 0)
                return;
        if (sscanf(buf, "%lld %lld %lld %d %31s", &code, &started, &finished, &oom, reason) != 5)
                return;
        c->st.state = AG_ST_EXITED;
        c->st.exit_code = code;
        c->st.started_ns = started;
        c->st.finished_ns = finished;
        c->st.oom_killed = oom != 0;
        snprintf(c->st.reason, sizeof(c->st.reason), "%s", strcmp(reason, "-") ? reason : "");
        {
                const char *nl = strchr(buf, '\n');

                if (nl)
                        snprintf(c->st.message, sizeof(c->st.message), "%.*s",
                                 (int)strcspn(nl + 1, "\n"), nl + 1);
        }
        c->exited = true;
}

/*
 * c/<id>/started: the container was started (its start time), so that an entry loaded after
 * a restart, in a box that is gone, is a container that ran and exited, not one never started.
 */
static void started_write(struct ap_ctr *c)
{
        _cleanup_free_ char *path = ctr_file(c->pod, c->id, "started");
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%lld\n", (long long)c->st.started_ns);

        if (path && n > 0)
                sh_write_file_replace(path, buf, (size_t)n, 0600);
}

static void started_read(struct ap_ctr *c)
{
        _cleanup_free_ char *path = ctr_file(c->pod, c->id, "started"), *buf = NULL;
        long long started;

        if (c->exited || !path || sh_read_file(path, 64, &buf, NULL) < 0 ||
            sscanf(buf, "%lld", &started) != 1)
                return;
        c->st.state = AG_ST_RUNNING;
        c->st.started_ns = started;
}

static void watch_fire(struct ap_ctr *c)
{
        uint64_t one = 1;

        if (c->watch_fd >= 0 && write(c->watch_fd, &one, sizeof(one)) < 0)
                sh_log_debug("container %.12s: wake its watch: %m", c->id);
}

void ap_ctr_set_status(struct ap_ctr *c, const struct ag_status *st)
{
        if (c->exited)
                return; /* final: what the box says later does not change it */
        c->st = *st;
        snprintf(c->st.id, sizeof(c->st.id), "%s", c->id);
        if (st->state != AG_ST_EXITED)
                return;
        if (!c->st.reason[0])
                snprintf(c->st.reason, sizeof(c->st.reason), "%s",
                         c->st.oom_killed       ? "OOMKilled"
                         : c->st.exit_code == 0 ? "Completed"
                                                : "Error");
        c->exited = true;
        status_write(c);
        watch_fire(c);
}

void ap_pod_all_exited(struct ap_pod *p, const char *why)
{
        for (size_t i = 0; i < p->n_ctrs; i++) {
                struct ap_ctr *c = p->ctrs[i];
                struct ag_status st = c->st;

                if (c->exited)
                        continue;
                if (st.state == AG_ST_CREATED && !st.started_ns) {
                        /* It never ran: it stays created (and cannot start any more). */
                        snprintf(c->st.message, sizeof(c->st.message), "%s", why);
                        watch_fire(c);
                        continue;
                }
                st.state = AG_ST_EXITED;
                st.exit_code = 255;
                st.finished_ns = now_ns();
                snprintf(st.reason, sizeof(st.reason), "Error");
                snprintf(st.message, sizeof(st.message), "%s", why);
                ap_ctr_set_status(c, &st);
        }
}

struct ap_ctr *ap_ctr_load(struct ap_pod *p, const char *id)
{
        struct ap_ctr *c = calloc(1, sizeof(*c));
        _cleanup_free_ char *meta = NULL, *buf = NULL, *seq = NULL;

        if (!c)
                return NULL;
        snprintf(c->id, sizeof(c->id), "%s", id);
        c->refs = 1; /* the pod's list */
        c->pod = p;
        c->watch_fd = c->log_fd = c->seq_fd = -1;
        snprintf(c->st.id, sizeof(c->st.id), "%s", id);
        c->st.state = AG_ST_CREATED;
        meta = ctr_file(p, id, "meta");
        if (meta && sh_read_file(meta, 8192, &buf, NULL) == 0) {
                /* tty stdin max_line\nlog path */
                int tty = 0, in = 0;
                unsigned max = 0;
                const char *nl = strchr(buf, '\n');

                if (sscanf(buf, "%d %d %u", &tty, &in, &max) == 3) {
                        c->tty = tty;
                        c->stdin_open = in;
                        c->log_max_line = max;
                }
                c->log_path = strdup(nl ? nl + 1 : "");
                if (c->log_path)
                        c->log_path[strcspn(c->log_path, "\n")] = 0;
        }
        if (!c->log_path)
                c->log_path = strdup("");
        seq = ctr_file(p, id, "logseq");
        if (!c->log_path || !seq) {
                ap_ctr_free(c);
                return NULL;
        }
        c->seq_fd = open(seq, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (c->seq_fd >= 0 &&
            pread(c->seq_fd, &c->log_seq, sizeof(c->log_seq), 0) != (ssize_t)sizeof(c->log_seq))
                c->log_seq = 0;
        status_read(c);
        started_read(c);
        return c;
}

void ap_ctr_free(struct ap_ctr *c)
{
        if (!c)
                return;
        if (c->watch_fd >= 0)
                close(c->watch_fd);
        if (c->log_fd >= 0)
                close(c->log_fd);
        if (c->seq_fd >= 0)
                close(c->seq_fd);
        free(c->log_path);
        free(c);
}

static const struct ap_host_ops *host_of(struct be *be)
{
        return ((struct ap_be *)be->priv)->host;
}

/* Container @id's pod and entry, both held (ctr_release). */
static int ctr_get(struct be *be, const char *id, struct ap_pod **ret_pod, struct ap_ctr **ret,
                   struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c;
        int r = ap_ctr_pod(be->priv, id, &p, err);

        if (r < 0)
                return r;
        pthread_mutex_lock(&p->mu);
        c = ap_ctr_find(p, id);
        if (c)
                c->refs++;
        pthread_mutex_unlock(&p->mu);
        if (!c) {
                ap_pod_put(p);
                return sh_err(err, -ENOENT, "%s: no container %.12s", host_of(be)->name, id);
        }
        *ret_pod = p;
        *ret = c;
        return 0;
}

/* Drops a reference to @c (the last frees it). */
static void ctr_unref(struct ap_pod *p, struct ap_ctr *c)
{
        bool last;

        pthread_mutex_lock(&p->mu);
        last = --c->refs == 0;
        pthread_mutex_unlock(&p->mu);
        if (last)
                ap_ctr_free(c);
}

/* Undoes ctr_get. */
static void ctr_release(struct ap_pod *p, struct ap_ctr *c)
{
        ctr_unref(p, c);
        ap_pod_put(p);
}

/* ------------------------------------------------------------ create */

/* A strv of @n strings, each formatted from @v[i] (for the guest's paths). */
static char **strv_new(size_t n)
{
        return calloc(n + 1, sizeof(char *));
}

/* The capability names the agent takes ("CAP_CHOWN"), from @s and the defaults. */
static int caps_for(const struct be_container_spec *s, char ***ret, struct sh_error *err)
{
        uint64_t set = 0;
        size_t n = 0;
        char **v;
        int r = be_cap_set(s, &set, err);

        if (r < 0)
                return r;
        v = strv_new(64);
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; be_all_caps[i] && i < 64; i++)
                if (set & (UINT64_C(1) << i)) {
                        v[n] = sh_strdup_printf("CAP_%s", be_all_caps[i]);
                        if (!v[n++]) {
                                sh_strv_free(v);
                                return -ENOMEM;
                        }
                }
        *ret = v;
        return 0;
}

static char **strv_dup_or(char *const *v, const char *const *def)
{
        const char *const *src = v && v[0] ? (const char *const *)v : def;
        size_t n = 0;
        char **out;

        while (src[n])
                n++;
        out = strv_new(n);
        for (size_t i = 0; out && i < n; i++)
                if (!(out[i] = strdup(src[i]))) {
                        sh_strv_free(out);
                        return NULL;
                }
        return out;
}

static bool has_mount_at(const struct be_container_spec *s, const char *dst)
{
        for (size_t i = 0; i < s->n_mounts; i++)
                if (strcmp(s->mounts[i].container_path, dst) == 0)
                        return true;
        return false;
}

/*
 * Builds the agent's spec of @bc, with the paths in the box that the host's
 * prepare_container gave in @cp.
 */
static int build_spec(const struct be_container *bc, const struct ap_ctr_paths *cp,
                      struct ag_ctr_spec *a, struct sh_error *err)
{
        const struct be_container_spec *s = bc->spec;
        static const char *const pod_files[] = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"};
        size_t n_layers = 0, k = 0;
        int r;

        a->id = strdup(bc->id);
        a->name = strdup(s->name);
        while (s->layer_dirs[n_layers])
                n_layers++;
        a->lower = strv_new(n_layers);
        if (!a->id || !a->name || !a->lower)
                return -ENOMEM;
        for (size_t i = 0; i < n_layers; i++)
                if (!(a->lower[i] = strdup(cp->lower[i])))
                        return -ENOMEM;
        a->argv = strv_dup_or(s->argv, (const char *const[]){NULL});
        a->env = strv_dup_or(s->env, (const char *const[]){NULL});
        a->cwd = strdup(s->cwd[0] ? s->cwd : "/");
        if (!a->argv || !a->env || !a->cwd)
                return -ENOMEM;
        a->uid = s->uid;
        a->gid = s->gid;
        if (s->n_groups) {
                a->groups = calloc(s->n_groups, sizeof(*a->groups));
                if (!a->groups)
                        return -ENOMEM;
                for (size_t i = 0; i < s->n_groups; i++)
                        a->groups[i] = s->groups[i];
                a->n_groups = s->n_groups;
        }
        a->tty = s->tty;
        a->stdin_open = s->stdin_open;
        a->stdin_once = s->stdin_once;
        a->log = s->log_path[0] != 0;
        a->mounts = calloc(s->n_mounts + SH_ARRAY_SIZE(pod_files), sizeof(*a->mounts));
        if (!a->mounts)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_mounts; i++) {
                a->mounts[k].src = strdup(cp->mount_src[i]);
                a->mounts[k].dst = strdup(s->mounts[i].container_path);
                a->mounts[k].ro = s->mounts[i].readonly;
                a->mounts[k].propagation = (int)s->mounts[i].propagation;
                if (!a->mounts[k].src || !a->mounts[k++].dst)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < SH_ARRAY_SIZE(pod_files); i++) {
                if (has_mount_at(s, pod_files[i]))
                        continue;
                a->mounts[k].src =
                        sh_strdup_printf("%s/%s", cp->pod_files, strrchr(pod_files[i], '/') + 1);
                a->mounts[k].dst = strdup(pod_files[i]);
                a->mounts[k].ro = false;
                if (!a->mounts[k].src || !a->mounts[k++].dst)
                        return -ENOMEM;
        }
        a->n_mounts = k;
        if (s->n_devices) {
                /* Host devices do not exist in the guest: only the same path there is taken. */
                a->devices = calloc(s->n_devices, sizeof(*a->devices));
                if (!a->devices)
                        return -ENOMEM;
                for (size_t i = 0; i < s->n_devices; i++) {
                        a->devices[i].src = strdup(s->devices[i].host_path);
                        a->devices[i].dst = strdup(s->devices[i].container_path);
                        a->devices[i].perms = strdup(s->devices[i].permissions);
                        if (!a->devices[i].src || !a->devices[i].dst || !a->devices[i].perms)
                                return -ENOMEM;
                }
                a->n_devices = s->n_devices;
        }
        a->readonly_root = s->readonly_rootfs;
        a->no_new_privs = s->no_new_privs;
        a->privileged = s->privileged;
        a->own_pid_ns = s->pid_mode == BE_NS_CONTAINER;
        r = caps_for(s, &a->caps, err);
        if (r < 0)
                return r;
        /* "Every capability" is what the agent's process holds (containerd: all current ones):
         * a CT's bounding set is smaller than the full list (lxc.cap.drop). */
        a->caps_held = s->privileged;
        for (size_t i = 0; s->cap_add && s->cap_add[i]; i++)
                if (strcasecmp(s->cap_add[i], "ALL") == 0)
                        a->caps_held = true;
        if (!s->privileged && s->seccomp == BE_SECCOMP_RUNTIME_DEFAULT) {
                uint64_t caps = 0;

                r = be_cap_set(s, &caps, err);
                if (r == 0)
                        r = ap_seccomp_default_json(caps, &a->seccomp);
                if (r < 0)
                        return r;
                a->seccomp_len = strlen(a->seccomp);
        } else if (!s->privileged && s->seccomp == BE_SECCOMP_LOCALHOST) {
                size_t len = 0;

                r = sh_read_file(s->seccomp_profile, 1 << 20, &a->seccomp, &len);
                if (r < 0)
                        return sh_err(err, r, "seccomp profile '%s': %s", s->seccomp_profile,
                                      strerror(-r));
                a->seccomp_len = len;
        }
        a->masked = s->privileged ? strv_new(0) : strv_dup_or(s->masked_paths, be_default_masked);
        a->ro_paths =
                s->privileged ? strv_new(0) : strv_dup_or(s->readonly_paths, be_default_readonly);
        a->sysctls = strv_new(0);
        if (!a->masked || !a->ro_paths || !a->sysctls)
                return -ENOMEM;
        for (size_t i = 0; i < bc->sandbox->n_sysctls; i++) {
                const char *key = bc->sandbox->sysctls[i].key;

                /* The ipc and uts ones are the container's; net ones the pod's (NET_SETUP). */
                if (strncmp(key, "kernel.", 7) == 0 || strncmp(key, "fs.mqueue.", 10) == 0) {
                        char **v = realloc(a->sysctls, (i + 2) * sizeof(*v));
                        size_t n = 0;

                        if (!v)
                                return -ENOMEM;
                        a->sysctls = v;
                        while (v[n])
                                n++;
                        v[n] = sh_strdup_printf("%s=%s", key, bc->sandbox->sysctls[i].value);
                        v[n + 1] = NULL;
                        if (!v[n])
                                return -ENOMEM;
                }
        }
        a->res.cpu_period = s->resources.cpu_period;
        a->res.cpu_quota = s->resources.cpu_quota;
        a->res.cpu_shares = s->resources.cpu_shares;
        a->res.mem_limit = s->resources.memory_limit;
        a->res.mem_swap = s->resources.memory_swap_limit;
        a->res.pids_max = s->pids_limit;
        a->res.oom_score_adj = s->resources.oom_score_adj;
        a->res.has_oom_score_adj = s->resources.has_oom_score_adj;
        if (s->resources.cpuset_cpus && s->resources.cpuset_cpus[0])
                a->res.cpuset_cpus = strdup(s->resources.cpuset_cpus);
        if (s->resources.cpuset_mems && s->resources.cpuset_mems[0])
                a->res.cpuset_mems = strdup(s->resources.cpuset_mems);
        return 0;
}

void ap_ctr_paths_done(struct ap_ctr_paths *cp)
{
        sh_strv_free(cp->lower);
        sh_strv_free(cp->mount_src);
        free(cp->pod_files);
        *cp = (struct ap_ctr_paths){0};
}

/* Removes what container_create made for container @id (the host's part first). */
static void unbind_ctr(struct ap_pod *p, const char *id)
{
        _cleanup_free_ char *own = sh_strdup_printf("%s/c/%s", p->dir, id);
        _cleanup_free_ char *link = sh_strdup_printf("%s/ctr/%s", p->be->dir, id);

        p->be->host->release_container(p, id);
        if (own)
                sh_rm_rf(own);
        if (link)
                unlink(link);
}

int ap_container_create(struct be *be, const struct be_container *bc, struct sh_error *err)
{
        struct ap_be *mb = be->priv;
        const struct be_container_spec *s = bc->spec;
        struct ap_ctr_paths cp = {0};
        struct ag_ctr_spec a = {0};
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL, **v;
        struct ag_buf b;
        _cleanup_free_ char *own = NULL, *meta = NULL, *link = NULL, *text = NULL;
        int r;

        if (s->pid_mode == BE_NS_NODE)
                return sh_err(err, -EINVAL,
                              "a %s container cannot share the host's PID namespace "
                              "(hostPID): it runs in the pod's %s",
                              mb->host->name, mb->host->box);
        r = ap_pod_get(mb, bc->sandbox_id, &p, err);
        if (r < 0)
                return r;
        r = ap_pod_agent(p, err);
        if (r < 0)
                goto out;
        pthread_mutex_lock(&p->mu);
        c = ap_ctr_find(p, bc->id);
        pthread_mutex_unlock(&p->mu);
        if (c) {
                /* Nothing of the one there may be touched by the undo below. */
                r = sh_err(err, -EEXIST, "%s: container %.12s exists", mb->host->name, bc->id);
                goto out;
        }
        own = sh_strdup_printf("%s/c/%s", p->dir, bc->id);
        meta = sh_strdup_printf("%s/c/%s/meta", p->dir, bc->id);
        link = sh_strdup_printf("%s/ctr/%s", mb->dir, bc->id);
        text = sh_strdup_printf("%d %d %u\n%s\n", s->tty, s->stdin_open, s->log_max_line,
                                s->log_path);
        if (!own || !meta || !link || !text) {
                r = -ENOMEM;
                goto out;
        }
        r = sh_mkdir_p(own, 0700);
        if (r == 0)
                r = sh_write_file_replace(meta, text, strlen(text), 0600);
        if (r == 0 && symlink(p->id, link) < 0)
                r = -errno;
        if (r < 0) {
                sh_err(err, r, "record container %.12s in '%s': %s", bc->id, own, strerror(-r));
                goto undo;
        }
        r = mb->host->prepare_container(p, bc, &cp, err);
        if (r == 0)
                r = build_spec(bc, &cp, &a, err);
        if (r < 0)
                goto undo;
        ag_buf_init(&b);
        ag_ctr_spec_put(&b, &a);
        r = ag_client_call(p->agent, AG_OP_CTR_CREATE, &b, AP_CALL_MS, NULL, NULL, err);
        ag_buf_done(&b);
        if (r < 0)
                goto undo;
        c = ap_ctr_load(p, bc->id);
        if (!c) {
                r = -ENOMEM;
                goto undo_agent;
        }
        pthread_mutex_lock(&p->mu);
        v = realloc(p->ctrs, (p->n_ctrs + 1) * sizeof(*v));
        if (v) {
                p->ctrs = v;
                p->ctrs[p->n_ctrs++] = c;
        }
        pthread_mutex_unlock(&p->mu);
        if (!v) {
                ap_ctr_free(c);
                r = -ENOMEM;
                goto undo_agent;
        }
        r = 0;
        goto out;

undo_agent:
        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, bc->id);
        ag_client_call(p->agent, AG_OP_CTR_REMOVE, &b, AP_CALL_MS, NULL, NULL, NULL);
        ag_buf_done(&b);
undo:
        unbind_ctr(p, bc->id);
out:
        ap_ctr_paths_done(&cp);
        ag_ctr_spec_done(&a);
        ap_pod_put(p);
        return r;
}

/* ------------------------------------------------------------ run, stop, remove */

static int call_id(struct ap_pod *p, uint16_t op, const char *id, int64_t sig, bool all,
                   unsigned timeout_ms, uint8_t **ret, size_t *ret_len, struct sh_error *err)
{
        struct ag_buf b;
        int r = ap_pod_agent(p, err);

        if (r < 0)
                return r;
        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, id);
        if (sig)
                ag_put_u64(&b, AG_A_SIGNAL, sig);
        if (all)
                ag_put_u64(&b, AG_A_ALL, 1);
        r = ag_client_call(p->agent, op, &b, timeout_ms, ret, ret_len, err);
        ag_buf_done(&b);
        return r;
}

int ap_container_start(struct be *be, const char *id, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL;
        int r = ctr_get(be, id, &p, &c, err);

        if (r < 0)
                return r;
        /* The log file first: output that comes at once has somewhere to go. */
        r = ap_log_open(c);
        if (r < 0)
                sh_err(err, r, "open the log file '%s': %s", c->log_path, strerror(-r));
        if (r == 0)
                r = call_id(p, AG_OP_CTR_START, id, 0, false, AP_CALL_MS, NULL, NULL, err);
        if (r == 0) {
                struct ag_status st;
                _cleanup_free_ uint8_t *resp = NULL;
                size_t n = 0;

                /* Started; what it is now (it may be gone already). */
                bool got = call_id(p, AG_OP_CTR_STATUS, id, 0, false, AP_CALL_MS, &resp, &n,
                                   NULL) == 0 &&
                           ag_status_decode(resp, n, &st) == 0;

                pthread_mutex_lock(&p->mu);
                if (got)
                        ap_ctr_set_status(c, &st);
                if (!c->exited && c->st.state == AG_ST_CREATED) {
                        c->st.state = AG_ST_RUNNING;
                        c->st.started_ns = now_ns();
                }
                started_write(c);
                pthread_mutex_unlock(&p->mu);
        }
        ctr_release(p, c);
        return r;
}

static int sig_of(int signal)
{
        return signal > 0 && signal < 65 ? signal : SIGTERM;
}

int ap_container_stop(struct be *be, const char *id, int signal, unsigned timeout_s,
                      struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL;
        struct timespec until;
        int r = ctr_get(be, id, &p, &c, err);

        if (r < 0)
                return r;
        pthread_mutex_lock(&p->mu);
        if (c->exited || p->dead || c->st.state == AG_ST_CREATED) {
                pthread_mutex_unlock(&p->mu);
                ctr_release(p, c);
                return 0;
        }
        pthread_mutex_unlock(&p->mu);
        r = call_id(p, AG_OP_CTR_SIGNAL, id, sig_of(signal), false, AP_CALL_MS, NULL, NULL, err);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += timeout_s;
        pthread_mutex_lock(&p->mu);
        while (r == 0 && !c->exited && !p->dead &&
               pthread_cond_timedwait(&p->changed, &p->mu, &until) == 0)
                ;
        pthread_mutex_unlock(&p->mu);
        if (r == 0 && !c->exited && !p->dead) {
                r = call_id(p, AG_OP_CTR_SIGNAL, id, 9, true, AP_CALL_MS, NULL, NULL, err);
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += 10;
                pthread_mutex_lock(&p->mu);
                while (r == 0 && !c->exited && !p->dead &&
                       pthread_cond_timedwait(&p->changed, &p->mu, &until) == 0)
                        ;
                if (r == 0 && !c->exited && !p->dead)
                        r = sh_err(err, -ETIMEDOUT, "container %.12s did not exit after SIGKILL",
                                   id);
                pthread_mutex_unlock(&p->mu);
        }
        if (r == -EBUSY && ap_pod_gone(p))
                r = 0; /* the box went: the container with it */
        ctr_release(p, c);
        return r;
}

int ap_container_remove(struct be *be, const char *id, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL;
        int r = ctr_get(be, id, &p, &c, NULL);

        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return sh_err(err, r, "%s: container %.12s: %s", host_of(be)->name, id,
                              strerror(-r));
        /* CRI: a running container is removed by force (the agent removes only exited ones). */
        pthread_mutex_lock(&p->mu);
        bool running = !p->dead && !c->exited && c->st.state == AG_ST_RUNNING;
        pthread_mutex_unlock(&p->mu);
        if (running)
                r = ap_container_stop(be, id, SIGKILL, 0, err);
        if (r == 0 && !p->dead) {
                r = call_id(p, AG_OP_CTR_REMOVE, id, 0, false, AP_CALL_MS, NULL, NULL, err);
                if ((r == -EBUSY && ap_pod_gone(p)) || r == -ENOENT)
                        r = 0;
        }
        if (r == 0) {
                bool listed = false;

                pthread_mutex_lock(&p->mu);
                for (size_t i = 0; i < p->n_ctrs; i++)
                        if (p->ctrs[i] == c) {
                                p->ctrs[i] = p->ctrs[--p->n_ctrs];
                                listed = true;
                                break;
                        }
                pthread_mutex_unlock(&p->mu);
                /* The list's reference: calls still holding one finish with the entry. */
                if (listed)
                        ctr_unref(p, c);
                unbind_ctr(p, id);
        }
        ctr_release(p, c);
        return r;
}

int ap_container_status(struct be *be, const char *id, struct be_ctr_status *ret,
                        struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL;
        int r = ctr_get(be, id, &p, &c, err);

        if (r < 0)
                return r;
        pthread_mutex_lock(&p->mu);
        *ret = (struct be_ctr_status){
                .state = c->st.state == AG_ST_RUNNING  ? BE_CTR_RUNNING
                         : c->st.state == AG_ST_EXITED ? BE_CTR_EXITED
                                                       : BE_CTR_CREATED,
                .pid = 0,
                .started_ns = c->st.started_ns,
                .finished_ns = c->st.finished_ns,
                .exit_code = (int)c->st.exit_code,
                .oom_killed = c->st.oom_killed,
        };
        snprintf(ret->reason, sizeof(ret->reason), "%s", c->st.reason);
        snprintf(ret->message, sizeof(ret->message), "%s", c->st.message);
        pthread_mutex_unlock(&p->mu);
        ctr_release(p, c);
        return 0;
}

int ap_container_update(struct be *be, const char *id, const struct be_resources *res,
                        struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL;
        struct ag_resources a = {
                .cpu_period = res->cpu_period,
                .cpu_quota = res->cpu_quota,
                .cpu_shares = res->cpu_shares,
                .mem_limit = res->memory_limit,
                .mem_swap = res->memory_swap_limit,
                .oom_score_adj = res->oom_score_adj,
                .has_oom_score_adj = res->has_oom_score_adj,
                .cpuset_cpus = res->cpuset_cpus && res->cpuset_cpus[0] ? res->cpuset_cpus : NULL,
                .cpuset_mems = res->cpuset_mems && res->cpuset_mems[0] ? res->cpuset_mems : NULL,
        };
        struct ag_buf b;
        int r = ctr_get(be, id, &p, &c, err);

        if (r < 0)
                return r;
        r = ap_pod_agent(p, err);
        if (r == 0) {
                ag_buf_init(&b);
                ag_put_str(&b, AG_A_ID, id);
                ag_resources_put(&b, &a);
                r = ag_client_call(p->agent, AG_OP_CTR_UPDATE, &b, AP_CALL_MS, NULL, NULL, err);
                ag_buf_done(&b);
        }
        ctr_release(p, c);
        return r;
}

int ap_container_reopen_log(struct be *be, const char *id, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL;
        int r = ctr_get(be, id, &p, &c, err);

        if (r < 0)
                return r;
        r = ap_log_open(c);
        if (r < 0)
                sh_err(err, r, "reopen the log file '%s': %s", c->log_path, strerror(-r));
        ctr_release(p, c);
        return r;
}

/* ------------------------------------------------------------ exec, attach */

static int running_agent(struct be *be, const char *id, struct ap_pod **ret_pod,
                         struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL;
        int r = ctr_get(be, id, &p, &c, err);

        if (r < 0)
                return r;
        pthread_mutex_lock(&p->mu);
        if (c->st.state != AG_ST_RUNNING || c->exited)
                r = sh_err(err, -EINVAL, "container %.12s is not running", id);
        pthread_mutex_unlock(&p->mu);
        ctr_unref(p, c);
        if (r == 0)
                r = ap_pod_agent(p, err);
        if (r < 0) {
                ap_pod_put(p);
                return r;
        }
        *ret_pod = p;
        return 0;
}

int ap_exec_sync(struct be *be, const char *id, const struct be_exec_sync_req *req,
                 struct be_exec_result *ret, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        _cleanup_free_ uint8_t *resp = NULL;
        size_t n = 0, cap = req->max_output ? req->max_output : 16u << 20;
        struct ag_buf b;
        int r = running_agent(be, id, &p, err);

        if (r < 0)
                return r;
        if (cap > AG_MAX_PAYLOAD - 4096)
                cap = AG_MAX_PAYLOAD - 4096; /* the answer is one frame */
        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, id);
        ag_put_strv(&b, AG_A_ARGV, req->argv);
        ag_put_u64(&b, AG_A_TIMEOUT_MS, req->timeout_ms);
        ag_put_u64(&b, AG_A_MAX_OUTPUT, (int64_t)cap);
        /* The agent enforces the timeout; runtd waits a little longer for its answer. */
        r = ag_client_call_cancel(p->agent, AG_OP_EXEC_SYNC, &b,
                                  req->timeout_ms ? req->timeout_ms + 5000 : 0, req->cancel_fd,
                                  &resp, &n, err);
        ag_buf_done(&b);
        if (r == 0) {
                struct ag_iter it;
                struct ag_attr a;
                int64_t v;

                *ret = (struct be_exec_result){0};
                ag_iter_init(&it, resp, n);
                while (ag_iter_next(&it, &a) == 1) {
                        if (a.tag == AG_A_EXIT_CODE && ag_attr_i64(&a, &v) == 0)
                                ret->exit_code = (int)v;
                        else if (a.tag == AG_A_DROPPED && ag_attr_i64(&a, &v) == 0)
                                ret->dropped = (size_t)v;
                        else if ((a.tag == AG_A_OUT || a.tag == AG_A_ERR)) {
                                char *d = malloc(a.len + 1);

                                if (!d) {
                                        be_exec_result_done(ret);
                                        r = -ENOMEM;
                                        break;
                                }
                                memcpy(d, a.val, a.len);
                                d[a.len] = 0;
                                if (a.tag == AG_A_OUT) {
                                        free(ret->out);
                                        ret->out = d;
                                        ret->out_len = a.len;
                                } else {
                                        free(ret->err);
                                        ret->err = d;
                                        ret->err_len = a.len;
                                }
                        }
                }
        }
        ap_pod_put(p);
        return r;
}

int ap_exec_stream(struct be *be, const char *id, const char *const *argv, bool tty,
                   bool want_stdin, struct be_exec_stream *ret, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ag_exec_fds fds;
        int r = running_agent(be, id, &p, err);

        if (r < 0)
                return r;
        r = ag_client_exec(p->agent, id, argv, tty, want_stdin, ret->rows, ret->cols, &fds, err);
        if (r == 0) {
                ret->stdin_fd = fds.stdin_fd;
                ret->stdout_fd = fds.stdout_fd;
                ret->stderr_fd = fds.stderr_fd;
                ret->pty_fd = -1;
                ret->pid = 0;
                ret->exit_fd = fds.exit_fd;
        }
        ap_pod_put(p);
        return r;
}

int ap_container_attach(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        bool tty = false;
        int r = running_agent(be, id, &p, err);

        if (r < 0)
                return r;
        r = ag_client_attach(p->agent, id, ret_fd, &tty, err);
        ap_pod_put(p);
        return r;
}

/* ------------------------------------------------------------ stats, watch */

int ap_container_stats(struct be *be, const char *id, struct be_ctr_stats *ret,
                       struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL;
        struct ag_stats a = {0};
        bool running;
        int r = ctr_get(be, id, &p, &c, err);

        if (r < 0)
                return r;
        pthread_mutex_lock(&p->mu);
        running = c->st.state == AG_ST_RUNNING && !c->exited && !p->dead;
        pthread_mutex_unlock(&p->mu);
        if (running)
                r = ap_pod_stats(p, id, &a, err);
        ctr_release(p, c);
        if (r < 0)
                return r;
        ret->timestamp_ns = a.timestamp_ns ? a.timestamp_ns : now_ns();
        ap_cg_from_ag(&a, &ret->cg);
        return 0;
}

int ap_container_fs_usage(struct be *be, const char *id, struct sh_fs_usage *ret,
                          struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL;
        struct ag_stats a = {0};
        bool running;
        int r = ctr_get(be, id, &p, &c, err);

        if (r < 0)
                return r;
        pthread_mutex_lock(&p->mu);
        running = !p->dead;
        pthread_mutex_unlock(&p->mu);
        if (running)
                r = ap_pod_stats(p, id, &a, err);
        if (r == 0) {
                memset(ret, 0, sizeof(*ret));
                snprintf(ret->mountpoint, sizeof(ret->mountpoint), "%s/c/%s", p->dir, id);
                ret->used_bytes = (uint64_t)a.fs_used;
                ret->inodes_used = (uint64_t)a.fs_inodes;
                ret->timestamp_ns = a.timestamp_ns ? a.timestamp_ns : now_ns();
        }
        ctr_release(p, c);
        return r;
}

int ap_container_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ap_ctr *c = NULL;
        int r = ctr_get(be, id, &p, &c, err), fd = -1;

        if (r < 0)
                return r;
        pthread_mutex_lock(&p->mu);
        if (c->exited || p->dead) {
                r = -ESRCH;
        } else {
                if (c->watch_fd < 0)
                        c->watch_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                fd = c->watch_fd >= 0 ? fcntl(c->watch_fd, F_DUPFD_CLOEXEC, 3) : -1;
                if (fd < 0)
                        r = sh_err(err, -errno, "eventfd: %s", strerror(errno));
        }
        pthread_mutex_unlock(&p->mu);
        ctr_release(p, c);
        if (r == 0)
                *ret_fd = fd;
        return r;
}
