/*
 * The microvm backend: one QEMU microvm per pod, its containers inside, run by runt-agent
 * (backends/agent/) over a virtio-serial port. This file: configuration, the pods (start,
 * stop, removal, re-owning a running VM after runtd restarted) and the agent's events.
 * Containers: mv-ctr.c; their logs: mv-log.c; the VM itself: vm.c, initramfs.c, tap.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fswalk.h"
#include "log.h"
#include "microvm-internal.h"
#include "netdev.h"
#include "strutil.h"
#include "validate.h"

#undef SH_LOG_MODULE
#define SH_LOG_MODULE "microvm"

#define MV_CALL_MS 10000 /* an agent request that is not a container's own wait */

/* ---------------------------------------------------------------- configuration */

static int opt_uint(const struct be_config *cfg, const char *key, unsigned def, unsigned min,
                    unsigned max, unsigned *ret, struct sh_error *err)
{
        const char *v = be_config_option(cfg, key);
        char *end = NULL;
        unsigned long n;

        if (!v || !v[0]) {
                *ret = def;
                return 0;
        }
        errno = 0;
        n = strtoul(v, &end, 10);
        if (errno || !end || *end || n < min || n > max)
                return sh_err(err, -EINVAL, "microvm option %s: '%s' is not a number in %u..%u",
                              key, v, min, max);
        *ret = (unsigned)n;
        return 0;
}

static int opt_str(const struct be_config *cfg, const char *key, const char *def, char **ret)
{
        const char *v = be_config_option(cfg, key);

        *ret = strdup(v && v[0] ? v : def);
        return *ret ? 0 : -ENOMEM;
}

static void mv_fini(struct be *be)
{
        struct mv_be *mb = be->priv;

        if (!mb)
                return;
        /* The VMs run on: runtd re-owns them when it starts again. */
        for (size_t i = 0; i < mb->n_pods; i++) {
                struct mv_pod *p = mb->pods[i];

                p->refs = 1;
                mv_pod_put(p);
        }
        free(mb->pods);
        free(mb->qemu);
        free(mb->kernel);
        free(mb->kver);
        free(mb->modules_dir);
        free(mb->initramfs);
        free(mb->accel);
        free(mb->virtiofsd);
        free(mb->agent_bin);
        free(mb->cmdline);
        free(mb->dir);
        free(mb->cache_dir);
        pthread_mutex_destroy(&mb->mu);
        pthread_mutex_destroy(&mb->reopen_mu);
        free(mb);
        be->priv = NULL;
}

static int mv_init(struct be *be, const struct be_config *cfg, struct sh_error *err)
{
        struct mv_be *mb = calloc(1, sizeof(*mb));
        char agent[PATH_MAX];
        _cleanup_free_ char *accel = NULL, *kernel = NULL, *console = NULL;
        int r;

        if (!mb)
                return -ENOMEM;
        be->priv = mb;
        pthread_mutex_init(&mb->mu, NULL);
        pthread_mutex_init(&mb->reopen_mu, NULL);
        for (size_t i = 0; i < cfg->n_options; i++) {
                static const char *const known[] = {"qemu",    "kernel",       "memory",
                                                    "vcpus",   "accel",        "virtiofsd",
                                                    "cmdline", "boot_timeout", "console"};
                bool ok = false;

                for (size_t k = 0; k < SH_ARRAY_SIZE(known) && !ok; k++)
                        ok = strcmp(cfg->option_keys[i], known[k]) == 0;
                if (!ok)
                        return sh_err(err, -EINVAL,
                                      "microvm option '%s' is not known (expected qemu, kernel, "
                                      "memory, vcpus, accel, virtiofsd, cmdline, boot_timeout "
                                      "or console)",
                                      cfg->option_keys[i]);
        }
        r = opt_uint(cfg, "memory", 128, 64, 1 << 20, &mb->memory_mib, err);
        if (r == 0)
                r = opt_uint(cfg, "vcpus", 1, 1, 64, &mb->vcpus, err);
        if (r == 0)
                r = opt_uint(cfg, "boot_timeout", 20, 1, 600, &mb->boot_timeout_ms, err);
        if (r < 0)
                return r;
        mb->boot_timeout_ms *= 1000;
        if (opt_str(cfg, "qemu", "/usr/bin/qemu-system-x86_64", &mb->qemu) < 0 ||
            opt_str(cfg, "virtiofsd", "/usr/lib/qemu/virtiofsd", &mb->virtiofsd) < 0 ||
            opt_str(cfg, "accel", "auto", &accel) < 0 || opt_str(cfg, "kernel", "", &kernel) < 0 ||
            opt_str(cfg, "cmdline", "", &mb->cmdline) < 0 ||
            opt_str(cfg, "console", "false", &console) < 0)
                return -ENOMEM;
        if (strcmp(accel, "auto") != 0 && strcmp(accel, "kvm") != 0 && strcmp(accel, "tcg") != 0)
                return sh_err(err, -EINVAL, "microvm option accel: '%s' is not auto, kvm or tcg",
                              accel);
        if (strcmp(console, "true") != 0 && strcmp(console, "false") != 0)
                return sh_err(err, -EINVAL, "microvm option console: '%s' is not true or false",
                              console);
        mb->console = strcmp(console, "true") == 0;
        mb->dir = sh_path_join(cfg->run_dir, "microvm");
        mb->cache_dir = sh_path_join(cfg->root_dir, "microvm");
        if (!mb->dir || !mb->cache_dir)
                return -ENOMEM;
        r = sh_mkdir_p(mb->dir, 0700);
        if (r == 0)
                r = sh_mkdir_p(mb->cache_dir, 0700);
        if (r == 0) {
                _cleanup_free_ char *idx = sh_path_join(mb->dir, "ctr");

                r = idx ? sh_mkdir_p(idx, 0700) : -ENOMEM;
        }
        if (r < 0)
                return sh_err(err, r, "create '%s': %s", mb->dir, strerror(-r));
        /*
         * What may be missing on this host (no QEMU, no kernel) makes the handler not
         * ready, with the reason, rather than runtd refusing to start.
         */
        if (sh_find_helper("runt-agent", RUNT_AGENT_FALLBACK, agent, sizeof(agent)) == 0)
                mb->agent_bin = strdup(agent);
        if (mv_kernel_find(kernel[0] ? kernel : NULL, &mb->kernel, &mb->kver, &mb->modules_dir,
                           NULL) < 0)
                mb->kernel = kernel[0] ? TAKE_PTR(kernel) : NULL;
        r = mv_accel_probe(accel, &mb->accel, err);
        if (r < 0)
                return r;
        sh_log_info("microvm: handler %s, accel %s, kernel %s, %u MiB, %u vCPU", cfg->handler,
                    mb->accel, mb->kernel ? mb->kernel : "(none)", mb->memory_mib, mb->vcpus);
        return 0;
}

static int mv_ready(struct be *be, struct sh_error *err)
{
        struct mv_be *mb = be->priv;

        if (access(mb->qemu, X_OK) < 0)
                return sh_err(err, -ENOENT, "microvm: QEMU '%s' is not installed (qemu-system-x86)",
                              mb->qemu);
        if (!mb->kernel || !mb->kver || access(mb->kernel, R_OK) < 0)
                return sh_err(err, -ENOENT,
                              "microvm: no guest kernel (install linux-image-cloud-amd64 or set "
                              "the kernel option)");
        if (!mb->agent_bin)
                return sh_err(err, -ENOENT, "microvm: runt-agent is not installed");
        if (access(mb->virtiofsd, X_OK) < 0)
                return sh_err(err, -ENOENT, "microvm: virtiofsd '%s' is not installed",
                              mb->virtiofsd);
        return 0;
}

/* ---------------------------------------------------------------- pods */

static struct mv_pod *pod_new(struct mv_be *mb, const char *id)
{
        struct mv_pod *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        snprintf(p->id, sizeof(p->id), "%s", id);
        p->be = mb;
        p->refs = 1;
        /* A short name: the VM's sockets in it must fit sun_path (108 bytes). */
        p->dir = sh_strdup_printf("%s/%.20s", mb->dir, id);
        p->share = p->dir ? sh_path_join(p->dir, "share") : NULL;
        pthread_mutex_init(&p->mu, NULL);
        pthread_mutex_init(&p->connect_mu, NULL);
        pthread_cond_init(&p->changed, NULL);
        p->vm.qemu_pidfd = p->vm.vfsd_pidfd = -1;
        if (!p->dir || !p->share) {
                free(p->dir);
                free(p->share);
                free(p);
                return NULL;
        }
        return p;
}

static void pod_free(struct mv_pod *p)
{
        if (!p)
                return;
        ag_client_free(p->agent);
        for (size_t i = 0; i < p->n_retired; i++)
                ag_client_free(p->retired[i]);
        free(p->retired);
        mv_vm_done(&p->vm);
        for (size_t i = 0; i < p->n_ctrs; i++)
                mv_ctr_free(p->ctrs[i]);
        free(p->ctrs);
        pthread_cond_destroy(&p->changed);
        pthread_mutex_destroy(&p->mu);
        pthread_mutex_destroy(&p->connect_mu);
        free(p->dir);
        free(p->share);
        free(p);
}

void mv_pod_put(struct mv_pod *p)
{
        struct mv_be *mb;
        bool last;

        if (!p)
                return;
        mb = p->be;
        pthread_mutex_lock(&mb->mu);
        last = --p->refs == 0;
        pthread_mutex_unlock(&mb->mu);
        if (last)
                pod_free(p);
}

struct mv_ctr *mv_ctr_find(struct mv_pod *p, const char *id)
{
        for (size_t i = 0; i < p->n_ctrs; i++)
                if (strcmp(p->ctrs[i]->id, id) == 0)
                        return p->ctrs[i];
        return NULL;
}

/* ------------------------------------------------------------ agent events */

static void on_event(void *data, enum ag_event ev, const uint8_t *payload, size_t len)
{
        struct mv_pod *p = data;
        _cleanup_free_ char *id = NULL;
        struct mv_ctr *c;

        if (ev == AG_EV_READY) {
                pthread_mutex_lock(&p->mu);
                p->ready_seen++;
                pthread_cond_broadcast(&p->changed);
                pthread_mutex_unlock(&p->mu);
                return;
        }
        if (ev != AG_EV_EXIT && ev != AG_EV_LOG)
                return;
        if (ag_find_str(payload, len, AG_A_ID, &id) < 0 || !(sh_validate_id(id, "id", NULL) == 0))
                return;
        pthread_mutex_lock(&p->mu);
        c = mv_ctr_find(p, id);
        if (c && ev == AG_EV_EXIT) {
                struct ag_status st;

                if (ag_status_decode(payload, len, &st) == 0)
                        mv_ctr_set_status(c, &st);
                pthread_cond_broadcast(&p->changed);
        }
        if (c && ev == AG_EV_LOG) {
                struct ag_iter it;
                struct ag_attr a;
                int64_t seq = 0, chan = 1, t = 0, partial = 0;
                const uint8_t *d = NULL;
                size_t dn = 0;

                /* Under the pod's lock: a removal frees the entry only after the agent
                 * forgot the container, but a reopen swaps the log fd. */
                ag_iter_init(&it, payload, len);
                while (ag_iter_next(&it, &a) == 1) {
                        if (a.tag == AG_A_SEQ)
                                ag_attr_i64(&a, &seq);
                        else if (a.tag == AG_A_CHAN)
                                ag_attr_i64(&a, &chan);
                        else if (a.tag == AG_A_TIME_NS)
                                ag_attr_i64(&a, &t);
                        else if (a.tag == AG_A_PARTIAL)
                                ag_attr_i64(&a, &partial);
                        else if (a.tag == AG_A_DATA) {
                                d = a.val;
                                dn = a.len;
                        }
                }
                if (seq > 0 && (chan == AG_CHAN_STDOUT || chan == AG_CHAN_STDERR)) {
                        /* The client that delivered it: the one being connected, if any
                         * (p->agent is set only after HELLO, and may be the old one). */
                        struct ag_client *to = p->connecting ? p->connecting : p->agent;
                        struct ag_buf b;

                        mv_log_chunk(c, seq, (int)chan, t, d, dn, partial != 0);
                        ag_buf_init(&b);
                        ag_put_str(&b, AG_A_ID, c->id);
                        ag_put_u64(&b, AG_A_SEQ, seq);
                        if (to)
                                ag_client_send(to, AG_OP_LOG_ACK, &b, NULL);
                        ag_buf_done(&b);
                }
        }
        pthread_mutex_unlock(&p->mu);
}

bool mv_pod_vm_alive(struct mv_pod *p)
{
        return p->vm.qemu_pidfd >= 0 && mv_vm_running(&p->vm);
}

static void on_closed(void *data, int reason)
{
        struct mv_pod *p = data;

        (void)reason;
        /* The chardev closes only when QEMU goes: give it a moment to be reaped. */
        for (int i = 0; i < 50 && mv_pod_vm_alive(p); i++)
                usleep(10 * 1000);
        pthread_mutex_lock(&p->mu);
        if (!mv_pod_vm_alive(p)) {
                p->dead = true;
                mv_pod_all_exited(p, p->stopped ? "the pod was stopped"
                                                : "the pod's VM ended (QEMU exited)");
        }
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->mu);
}

static const struct ag_client_ops agent_ops = {
        .on_event = on_event,
        .on_closed = on_closed,
};

/*
 * Connects to @p's agent and says hello: once the agent's READY came, within
 * @timeout_ms. The agent then resends the exits and log chunks runtd has not taken.
 */
static int agent_connect(struct mv_pod *p, unsigned timeout_ms, struct sh_error *err)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ uint8_t *resp = NULL;
        struct ag_client *c = NULL, *old;
        struct timespec until;
        unsigned before;
        size_t n = 0;
        int r;

        r = mv_vm_connect_agent(&p->vm, &fd, timeout_ms, err);
        if (r < 0)
                return r;
        /* Under the pod's lock: its events (which take it) see p->connecting set. */
        pthread_mutex_lock(&p->mu);
        before = p->ready_seen;
        r = ag_client_new(TAKE_FD(fd), &agent_ops, p, &c, err);
        p->connecting = r == 0 ? c : NULL;
        pthread_mutex_unlock(&p->mu);
        if (r < 0)
                return r;
        /* The agent says READY on every connection, once it serves it. */
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&p->mu);
        while (p->ready_seen == before && ag_client_connected(c) && mv_pod_vm_alive(p) &&
               pthread_cond_timedwait(&p->changed, &p->mu, &until) == 0)
                ;
        r = p->ready_seen != before ? 0
            : !mv_pod_vm_alive(p)   ? sh_err(err, -ESRCH, "QEMU exited")
            : !ag_client_connected(c)
                    ? sh_err(err, -ECONNRESET, "the agent's channel closed")
                    : sh_err(err, -ETIMEDOUT, "no word from the agent in %u ms", timeout_ms);
        pthread_mutex_unlock(&p->mu);
        if (r == 0) {
                struct ag_buf b;
                struct timespec now;

                /* The guest's clock starts wherever its RTC says: it takes runtd's. */
                clock_gettime(CLOCK_REALTIME, &now);
                ag_buf_init(&b);
                ag_put_u64(&b, AG_A_TIME_NS, (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec);
                r = ag_client_call(c, AG_OP_HELLO, &b, MV_CALL_MS, &resp, &n, err);
                ag_buf_done(&b);
        }
        if (r < 0) {
                pthread_mutex_lock(&p->mu);
                p->connecting = NULL;
                pthread_mutex_unlock(&p->mu);
                ag_client_free(c);
                return sh_err_prefix(err, r, "agent");
        }
        pthread_mutex_lock(&p->mu);
        old = p->agent;
        p->agent = c;
        p->connecting = NULL;
        if (old) {
                struct ag_client **v = realloc(p->retired, (p->n_retired + 1) * sizeof(*v));

                if (v) {
                        p->retired = v;
                        p->retired[p->n_retired++] = TAKE_PTR(old);
                }
        }
        pthread_mutex_unlock(&p->mu);
        /* Kept only if it could not be retired; outside the lock: freeing waits for its
         * thread, whose callbacks take it. */
        ag_client_free(old);
        return 0;
}

static bool agent_up(struct mv_pod *p)
{
        bool ok;

        pthread_mutex_lock(&p->mu);
        ok = p->agent && ag_client_connected(p->agent);
        pthread_mutex_unlock(&p->mu);
        return ok;
}

int mv_pod_agent(struct mv_pod *p, struct sh_error *err)
{
        int r;

        if (agent_up(p))
                return 0;
        if (p->dead || !mv_pod_vm_alive(p))
                /* FAILED_PRECONDITION: the pod is there, its VM is not (NOTREADY). */
                return sh_err(err, -EBUSY, "the pod's VM is not running");
        /* One connection at a time: QEMU's chardev serves one client. */
        pthread_mutex_lock(&p->connect_mu);
        r = agent_up(p) ? 0 : agent_connect(p, MV_CALL_MS, err);
        pthread_mutex_unlock(&p->connect_mu);
        return r;
}

/* The containers runtd recorded for pod @p (c/<id>/meta), after a restart. */
static int load_ctrs(struct mv_pod *p)
{
        _cleanup_free_ char *cdir = sh_path_join(p->dir, "c");
        DIR *d = cdir ? opendir(cdir) : NULL;
        struct dirent *e;

        if (!d)
                return cdir ? 0 : -ENOMEM;
        while ((e = readdir(d))) {
                struct mv_ctr *c, **v;

                if (!(sh_validate_id(e->d_name, "id", NULL) == 0) || mv_ctr_find(p, e->d_name))
                        continue;
                c = mv_ctr_load(p, e->d_name);
                v = c ? realloc(p->ctrs, (p->n_ctrs + 1) * sizeof(*v)) : NULL;
                if (!v) {
                        mv_ctr_free(c);
                        closedir(d);
                        return -ENOMEM;
                }
                p->ctrs = v;
                p->ctrs[p->n_ctrs++] = c;
        }
        closedir(d);
        return 0;
}

/* Asks the agent for every container's status (after a reconnection). */
static void refresh_statuses(struct mv_pod *p)
{
        _cleanup_free_ uint8_t *resp = NULL;
        size_t n = 0;
        struct ag_iter it;
        struct ag_attr a;

        if (!p->agent ||
            ag_client_call(p->agent, AG_OP_CTR_LIST, NULL, MV_CALL_MS, &resp, &n, NULL) < 0)
                return;
        pthread_mutex_lock(&p->mu);
        ag_iter_init(&it, resp, n);
        while (ag_iter_next(&it, &a) == 1) {
                struct ag_status st;
                struct mv_ctr *c;

                if (a.tag != AG_A_STATUS || ag_status_decode(a.val, a.len, &st) < 0)
                        continue;
                c = mv_ctr_find(p, st.id);
                if (c)
                        mv_ctr_set_status(c, &st);
        }
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->mu);
}

/*
 * Re-owns pod @id's VM after runtd restarted: the pidfiles say whether QEMU runs; if it
 * does, the agent is asked what happened meanwhile; if not, its containers exited.
 */
static int pod_reopen(struct mv_be *mb, const char *id, struct mv_pod **ret, struct sh_error *err)
{
        struct mv_pod *p;
        struct stat st;
        int r;

        p = pod_new(mb, id);
        if (!p)
                return -ENOMEM;
        if (stat(p->dir, &st) < 0) {
                pod_free(p);
                return sh_err(err, -ENOENT, "microvm: no pod %.12s", id);
        }
        r = load_ctrs(p);
        if (r < 0) {
                pod_free(p);
                return r;
        }
        {
                _cleanup_free_ char *stopped = sh_path_join(p->dir, "stopped");

                p->stopped = stopped && access(stopped, F_OK) == 0;
        }
        if (p->stopped || mv_vm_open(p->dir, &p->vm, NULL) < 0 || !mv_pod_vm_alive(p)) {
                /* QEMU is gone; a virtiofsd it left goes too. */
                mv_vm_shutdown(&p->vm, 0, NULL);
                p->dead = true;
                mv_pod_all_exited(p, p->stopped ? "the pod was stopped"
                                                : "the pod's VM ended while runtd was down");
        } else if (agent_connect(p, MV_CALL_MS, err) == 0) {
                refresh_statuses(p);
        } else {
                sh_log_warn("pod %.12s: its VM runs but its agent does not answer: %s", id,
                            err ? err->msg : "");
        }
        *ret = p;
        return 0;
}

int mv_pod_get(struct mv_be *mb, const char *id, struct mv_pod **ret, struct sh_error *err)
{
        struct mv_pod *p = NULL, **v;
        int r;

        if (!(sh_validate_id(id, "id", NULL) == 0))
                return sh_err(err, -ENOENT, "microvm: no pod %.12s", id);
        pthread_mutex_lock(&mb->mu);
        for (size_t i = 0; i < mb->n_pods && !p; i++)
                if (strcmp(mb->pods[i]->id, id) == 0)
                        p = mb->pods[i];
        if (p) {
                p->refs++;
                pthread_mutex_unlock(&mb->mu);
                *ret = p;
                return 0;
        }
        pthread_mutex_unlock(&mb->mu);
        /*
         * One re-opening at a time: two would each connect to the agent (QEMU serves one
         * client of its chardev; the other waits) and the loser's teardown would cut the
         * winner's connection.
         */
        pthread_mutex_lock(&mb->reopen_mu);
        pthread_mutex_lock(&mb->mu);
        /* Another caller may have re-opened it meanwhile. */
        for (size_t i = 0; i < mb->n_pods; i++)
                if (strcmp(mb->pods[i]->id, id) == 0) {
                        mb->pods[i]->refs++;
                        *ret = mb->pods[i];
                        pthread_mutex_unlock(&mb->mu);
                        pthread_mutex_unlock(&mb->reopen_mu);
                        return 0;
                }
        pthread_mutex_unlock(&mb->mu);
        r = pod_reopen(mb, id, &p, err);
        if (r < 0) {
                pthread_mutex_unlock(&mb->reopen_mu);
                return r;
        }
        pthread_mutex_lock(&mb->mu);
        v = realloc(mb->pods, (mb->n_pods + 1) * sizeof(*v));
        if (v) {
                mb->pods = v;
                mb->pods[mb->n_pods++] = p;
                p->refs++;
        }
        pthread_mutex_unlock(&mb->mu);
        pthread_mutex_unlock(&mb->reopen_mu);
        if (!v) {
                pod_free(p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

int mv_ctr_pod(struct mv_be *mb, const char *ctr_id, struct mv_pod **ret, struct sh_error *err)
{
        _cleanup_free_ char *link = NULL;
        char pod[80];
        ssize_t n;

        if (!(sh_validate_id(ctr_id, "id", NULL) == 0))
                return sh_err(err, -ENOENT, "microvm: no container %.12s", ctr_id);
        link = sh_strdup_printf("%s/ctr/%s", mb->dir, ctr_id);
        if (!link)
                return -ENOMEM;
        n = readlink(link, pod, sizeof(pod) - 1);
        if (n < 0)
                return sh_err(err, -ENOENT, "microvm: no container %.12s", ctr_id);
        pod[n] = 0;
        return mv_pod_get(mb, pod, ret, err);
}

static void pod_forget(struct mv_be *mb, struct mv_pod *p)
{
        bool found = false;

        pthread_mutex_lock(&mb->mu);
        for (size_t i = 0; i < mb->n_pods; i++)
                if (mb->pods[i] == p) {
                        mb->pods[i] = mb->pods[--mb->n_pods];
                        found = true;
                        break;
                }
        if (found)
                p->refs--;
        pthread_mutex_unlock(&mb->mu);
}

/* ---------------------------------------------------------------- the share */

/* Unmounts every mount at or below @dir (deepest first), lazily. */
/* Decodes mountinfo's octal escapes (\040 space, \011 tab, \012 newline, \134 '\') in place. */
static void unescape_mountinfo(char *s)
{
        char *w = s;

        for (const char *r = s; *r; w++) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
                    r[3] >= '0' && r[3] <= '7') {
                        *w = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
                        r += 4;
                } else {
                        *w = *r++;
                }
        }
        *w = 0;
}

/* The mount points at or below @dir, in mountinfo's order; *@ret_n of them. */
static char **mounts_below(const char *dir, size_t *ret_n)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        _cleanup_free_ char *line = NULL;
        size_t cap = 0, n = 0, len = strlen(dir);
        char **v = NULL;

        *ret_n = 0;
        if (!f)
                return NULL;
        /* getline: an overlay with many layers makes lines of any length. */
        while (getline(&line, &cap, f) > 0) {
                char *mp = line, **nv;

                /* id parent major:minor root mountpoint ... */
                for (int field = 0; field < 4 && mp; field++) {
                        mp = strchr(mp, ' ');
                        mp = mp ? mp + 1 : NULL;
                }
                if (!mp)
                        continue;
                mp[strcspn(mp, " ")] = 0;
                unescape_mountinfo(mp);
                if (strncmp(mp, dir, len) != 0 || (mp[len] && mp[len] != '/'))
                        continue;
                nv = realloc(v, (n + 2) * sizeof(*v));
                if (!nv)
                        break;
                v = nv;
                v[n] = strdup(mp);
                if (v[n])
                        n++;
                v[n] = NULL;
        }
        *ret_n = n;
        return v;
}

void mv_umount_below(const char *dir)
{
        size_t n = 0;
        char **v = mounts_below(dir, &n);

        /* Later in mountinfo is on top or deeper. */
        while (n--) {
                umount2(v[n], MNT_DETACH);
                free(v[n]);
        }
        free(v);
}

/* True when nothing is mounted at or below @dir any more. */
bool mv_no_mounts_below(const char *dir)
{
        size_t n = 0;
        char **v = mounts_below(dir, &n);

        sh_strv_free(v);
        return n == 0;
}

/*
 * Binds @src at @rel below @share (made: a dir, or an empty file for a file), read-only when
 * @ro. The guest can write in the share: every component of @rel is made and opened without
 * following a symlink, and the bind is attached to the directory or file opened so, never
 * through a path the guest could have swapped meanwhile.
 */
int mv_bind(const char *share, const char *rel, const char *src, bool ro, struct sh_error *err)
{
        _cleanup_close_ int dir = -1, dst = -1, tree = -1;
        _cleanup_free_ char *path = strdup(rel);
        char *save = NULL, *comp, *next;
        struct stat st;

        if (!path)
                return -ENOMEM;
        if (stat(src, &st) < 0)
                return sh_err(err, -errno, "mount source '%s': %s", src, strerror(errno));
        dir = open(share, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir < 0)
                return sh_err(err, -errno, "open '%s': %s", share, strerror(errno));
        for (comp = strtok_r(path, "/", &save); comp; comp = next) {
                bool last;
                int fd;

                next = strtok_r(NULL, "/", &save);
                last = next == NULL;
                if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0)
                        return sh_err(err, -EINVAL, "bind target '%s'", rel);
                if (!last || S_ISDIR(st.st_mode)) {
                        if (mkdirat(dir, comp, 0755) < 0 && errno != EEXIST)
                                return sh_err(err, -errno, "create '%s/%s': %s", share, rel,
                                              strerror(errno));
                        fd = openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                } else {
                        fd = openat(dir, comp, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
                        if (fd >= 0) {
                                int pfd = openat(dir, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);

                                close(fd);
                                fd = pfd;
                        }
                }
                if (fd < 0)
                        return sh_err(err, -errno, "open '%s/%s': %s", share, rel, strerror(errno));
                if (last)
                        dst = fd;
                else {
                        close(dir);
                        dir = fd;
                }
        }
        if (dst < 0)
                return sh_err(err, -EINVAL, "bind target '%s'", rel);
        tree = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0)
                return sh_err(err, -errno, "bind '%s': %s", src, strerror(errno));
        if (ro) {
                struct mount_attr a = {.attr_set = MOUNT_ATTR_RDONLY};

                if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof(a)) < 0)
                        return sh_err(err, -errno, "read-only bind '%s': %s", src, strerror(errno));
        }
        if (move_mount(tree, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                return sh_err(err, -errno, "bind '%s' at '%s/%s': %s", src, share, rel,
                              strerror(errno));
        return 0;
}

/* ---------------------------------------------------------------- sandbox ops */

/* The last line QEMU or the guest console wrote, for a start that failed. */
static void log_tail(const char *dir, char *out, size_t size)
{
        static const char *const logs[] = {"qemu.log", "console.log"};

        snprintf(out, size, "QEMU said nothing");
        for (size_t i = 0; i < SH_ARRAY_SIZE(logs); i++) {
                _cleanup_free_ char *path = sh_path_join(dir, logs[i]), *buf = NULL;
                size_t n = 0;

                if (!path || sh_read_file(path, 1 << 20, &buf, &n) < 0 || !n)
                        continue;
                while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                        buf[--n] = 0;
                {
                        char *last = strrchr(buf, '\n');

                        snprintf(out, size, "%s: %.150s", logs[i], last ? last + 1 : buf);
                }
                return;
        }
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
                      "a microvm pod runs in a VM of its own and cannot share the host's %s "
                      "namespace; use an lxc handler for it",
                      what);
}

static void pod_teardown(struct mv_pod *p)
{
        mv_umount_below(p->share);
        /*
         * Never remove through a bind that is still there (a volume's data would go): the
         * guest can rename what is under the share, so check, and keep the dir if need be.
         */
        if (!mv_no_mounts_below(p->share)) {
                sh_log_error("pod %.12s: mounts under '%s' would not go; its directory is kept",
                             p->id, p->share);
                return;
        }
        sh_rm_rf(p->dir);
}

static long long mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int mv_sandbox_create(struct be *be, const struct be_sandbox *sb, struct sh_error *err)
{
        long long t0 = mono_ms(), t_init = 0, t_tap = 0, t_spawn = 0, t_ready = 0;
        struct mv_be *mb = be->priv;
        struct mv_pod *p = NULL, **v;
        struct ag_net net = {0};
        _cleanup_close_ int tap = -1;
        _cleanup_free_ char *initramfs = NULL, *cmdline = NULL;
        int r;

        r = refuse_host_ns(sb->spec, err);
        if (r < 0)
                return r;
        r = mv_ready(be, err);
        if (r < 0)
                return r;
        if (!sb->netns)
                return sh_err(err, -EINVAL, "a microvm pod needs a network namespace");
        p = pod_new(mb, sb->id);
        if (!p)
                return -ENOMEM;
        r = sh_mkdir_p(p->share, 0700);
        if (r < 0) {
                sh_err(err, r, "create '%s': %s", p->share, strerror(-r));
                goto fail;
        }
        {
                _cleanup_free_ char *c = sh_path_join(p->dir, "c");

                if (!c || sh_mkdir_p(c, 0700) < 0) {
                        r = sh_err(err, -EIO, "create the pod's directories in '%s'", p->dir);
                        goto fail;
                }
        }
        /*
         * The share is a mount of its own with shared propagation: virtiofsd's private mount
         * namespace (a slave of runtd's) then sees the binds made under it later, for
         * containers created after the VM booted.
         */
        /*
         * A small tmpfs of its own: what the guest writes in the share outside the binds
         * (they are the CRI volumes' own) cannot fill runtd's run dir.
         */
        if (mount("runt-share", p->share, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") < 0 ||
            mount(NULL, p->share, NULL, MS_SHARED, NULL) < 0) {
                r = sh_err(err, -errno, "make '%s' a shared mount: %s", p->share, strerror(errno));
                goto fail;
        }
        /* The pod's files (hosts, resolv.conf, hostname), written after this returns. */
        r = sh_mkdir_p(sb->pod_dir, 0755);
        if (r == 0)
                r = mv_bind(p->share, "pod", sb->pod_dir, true, err);
        if (r < 0)
                goto fail;
        {
                struct mv_initramfs_opts io = {
                        .agent_path = mb->agent_bin,
                        .kver = mb->kver,
                        .modules_dir = mb->modules_dir,
                        .cache_dir = mb->cache_dir,
                        .gzip = -1,
                };

                r = mv_initramfs_get(&io, &initramfs, err);
                t_init = mono_ms();
        }
        if (r < 0)
                goto fail;
        r = mv_tap_create(sb->netns, "eth0", &tap, &net, err);
        t_tap = mono_ms();
        if (r < 0)
                goto fail;
        /* The agent mounts the share before it says READY. */
        cmdline = sh_strdup_printf("runt.virtiofs=" MV_FS_TAG ":" MV_GUEST_SHARE "%s%s",
                                   mb->cmdline[0] ? " " : "", mb->cmdline);
        /*
         * Under TCG on a loaded host a guest kernel can stall early in boot (a rare timer
         * calibration hang): a VM that does not come up is killed and started once more,
         * with its console kept this time, so a second failure says why.
         */
        for (int attempt = 0; attempt < 2; attempt++) {
                struct mv_vm_opts o = {
                        .qemu = mb->qemu,
                        .kernel = mb->kernel,
                        .initramfs = initramfs,
                        .mem_mib = mb->memory_mib,
                        .vcpus = mb->vcpus,
                        .accel = mb->accel,
                        .dir = p->dir,
                        .tap_fd = tap,
                        .mac = net.n_ifaces ? net.ifaces[0].mac : NULL,
                        .virtiofsd = mb->virtiofsd,
                        .shared_dir = p->share,
                        .cmdline_extra = cmdline,
                        .console = mb->console || attempt > 0,
                };
                char tail[200];

                r = cmdline ? mv_vm_start(&o, &p->vm, err) : -ENOMEM;
                t_spawn = mono_ms();
                if (r < 0)
                        goto fail_net;
                r = agent_connect(p, mb->boot_timeout_ms, err);
                t_ready = mono_ms();
                if (r == 0)
                        break;
                log_tail(p->dir, tail, sizeof(tail));
                sh_err_prefix(err, r, "the VM did not come up in %u ms (%s)", mb->boot_timeout_ms,
                              tail);
                mv_vm_shutdown(&p->vm, 0, NULL);
                mv_vm_done(&p->vm);
                p->vm.qemu_pidfd = p->vm.vfsd_pidfd = -1;
                if (r != -ETIMEDOUT || attempt > 0)
                        goto fail_net;
                sh_log_warn("pod %.12s: %s; starting its VM again", p->id, err ? err->msg : "");
                mv_vm_cleanup_dir(p->dir, NULL);
        }
        {
                struct ag_buf b;
                _cleanup_free_ uint8_t *resp = NULL;
                size_t n = 0;
                char **sysctls = calloc(sb->spec->n_sysctls + 1, sizeof(*sysctls));

                if (!sysctls) {
                        r = -ENOMEM;
                        goto fail_vm;
                }
                for (size_t i = 0; i < sb->spec->n_sysctls; i++)
                        sysctls[i] = sh_strdup_printf("%s=%s", sb->spec->sysctls[i].key,
                                                      sb->spec->sysctls[i].value);
                free(net.hostname);
                net.hostname = strdup(sb->spec->hostname[0] ? sb->spec->hostname : sb->spec->name);
                sh_strv_free(net.sysctls);
                net.sysctls = sysctls;
                ag_buf_init(&b);
                ag_net_put(&b, &net);
                r = ag_client_call(p->agent, AG_OP_NET_SETUP, &b, MV_CALL_MS, &resp, &n, err);
                sh_log_debug("pod %.12s: initramfs %lld ms, tap %lld ms, spawn %lld ms, agent "
                             "ready %lld ms, net setup %lld ms",
                             p->id, t_init - t0, t_tap - t_init, t_spawn - t_tap, t_ready - t_spawn,
                             mono_ms() - t_ready);
                ag_buf_done(&b);
                if (r < 0) {
                        sh_err_prefix(err, r, "set up the guest's network");
                        goto fail_vm;
                }
        }
        pthread_mutex_lock(&mb->mu);
        v = realloc(mb->pods, (mb->n_pods + 1) * sizeof(*v));
        if (v) {
                mb->pods = v;
                mb->pods[mb->n_pods++] = p;
        }
        pthread_mutex_unlock(&mb->mu);
        if (!v) {
                r = -ENOMEM;
                goto fail_vm;
        }
        ag_net_done(&net);
        return 0;

fail_vm:
        mv_vm_shutdown(&p->vm, 0, NULL);
fail_net:
        mv_tap_remove(sb->netns, "eth0", NULL);
fail:
        ag_net_done(&net);
        pod_teardown(p);
        pod_free(p);
        return r;
}

static int mv_sandbox_stop(struct be *be, const char *id, unsigned timeout_s, struct sh_error *err)
{
        struct mv_be *mb = be->priv;
        struct mv_pod *p = NULL;
        _cleanup_free_ char *stopped = NULL;
        int r = mv_pod_get(mb, id, &p, NULL);

        (void)timeout_s;
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return sh_err(err, r, "microvm: pod %.12s: %s", id, strerror(-r));
        stopped = sh_path_join(p->dir, "stopped");
        if (stopped)
                sh_write_file_replace(stopped, "", 0, 0600);
        pthread_mutex_lock(&p->mu);
        p->stopped = true;
        pthread_mutex_unlock(&p->mu);
        if (mv_pod_vm_alive(p) && mv_pod_agent(p, NULL) == 0)
                /* The agent kills what still runs and powers off; QMP quit, then SIGKILL. */
                ag_client_call(p->agent, AG_OP_SHUTDOWN, NULL, 2000, NULL, NULL, NULL);
        /* Also when QEMU died by itself: a virtiofsd it left would pin the share's binds. */
        r = mv_vm_shutdown(&p->vm, 3000, err);
        pthread_mutex_lock(&p->mu);
        p->dead = true;
        mv_pod_all_exited(p, "the pod was stopped");
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->mu);
        mv_pod_put(p);
        return r;
}

/* The netns pod @id's tap was made in (recorded at its creation); false when unknown. */
static bool sb_netns(struct mv_be *mb, const char *id, char *buf, size_t size)
{
        _cleanup_free_ char *f = sh_strdup_printf("%s/%.20s/netns", mb->dir, id), *text = NULL;

        if (!f || sh_read_file(f, 4096, &text, NULL) < 0 || text[0] != '/')
                return false;
        snprintf(buf, size, "%s", text);
        return true;
}

static int mv_sandbox_remove(struct be *be, const char *id, struct sh_error *err)
{
        struct mv_be *mb = be->priv;
        char netns[PATH_MAX];
        struct mv_pod *p = NULL;
        int r = mv_pod_get(mb, id, &p, NULL);

        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return sh_err(err, r, "microvm: pod %.12s: %s", id, strerror(-r));
        r = mv_sandbox_stop(be, id, 0, err);
        if (r < 0) {
                mv_pod_put(p);
                return r;
        }
        /* The agent client stays until the pod is freed: calls holding the pod may use it. */
        pthread_mutex_lock(&p->mu);
        for (size_t i = 0; i < p->n_ctrs; i++) {
                _cleanup_free_ char *link = sh_strdup_printf("%s/ctr/%s", mb->dir, p->ctrs[i]->id);

                if (link)
                        unlink(link);
        }
        pthread_mutex_unlock(&p->mu);
        if (sb_netns(mb, id, netns, sizeof(netns)))
                mv_tap_remove(netns, "eth0", NULL);
        mv_vm_cleanup_dir(p->dir, NULL);
        pod_teardown(p);
        pod_forget(mb, p);
        mv_pod_put(p);
        return 0;
}

static int mv_sandbox_running(struct be *be, const char *id, bool *ret, struct sh_error *err)
{
        struct mv_pod *p = NULL;
        int r = mv_pod_get(be->priv, id, &p, err);

        if (r < 0)
                return r;
        *ret = !p->stopped && mv_pod_vm_alive(p);
        mv_pod_put(p);
        return 0;
}

static int mv_sandbox_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        struct mv_pod *p = NULL;
        int r = mv_pod_get(be->priv, id, &p, err), fd;

        if (r < 0)
                return r;
        if (!mv_pod_vm_alive(p)) {
                mv_pod_put(p);
                return -ESRCH;
        }
        fd = fcntl(p->vm.qemu_pidfd, F_DUPFD_CLOEXEC, 3);
        r = fd < 0 ? sh_err(err, -errno, "dup: %s", strerror(errno)) : 0;
        mv_pod_put(p);
        if (r == 0)
                *ret_fd = fd;
        return r;
}

static int mv_sandbox_dial(struct be *be, const char *id, unsigned port, int *ret_fd,
                           struct sh_error *err)
{
        struct mv_pod *p = NULL;
        int r = mv_pod_get(be->priv, id, &p, err);

        if (r < 0)
                return r;
        r = mv_pod_agent(p, err);
        if (r == 0)
                r = ag_client_dial(p->agent, port, ret_fd, err);
        mv_pod_put(p);
        return r;
}

static void stats_from_ag(const struct ag_stats *a, struct sh_cg_stats *cg)
{
        cg->has_cpu = true;
        cg->cpu_usage_ns = (uint64_t)a->cpu_usage_ns;
        cg->has_memory = true;
        cg->mem_usage = (uint64_t)a->mem_usage;
        cg->mem_working_set = (uint64_t)a->mem_working_set;
        cg->mem_inactive_file = a->mem_usage > a->mem_working_set
                                        ? (uint64_t)(a->mem_usage - a->mem_working_set)
                                        : 0;
        cg->mem_rss = (uint64_t)a->mem_rss;
        cg->mem_cache = (uint64_t)a->mem_cache;
        cg->mem_pgfault = (uint64_t)a->pgfault;
        cg->mem_pgmajfault = (uint64_t)a->pgmajfault;
        cg->has_mem_limit = a->mem_limit > 0;
        cg->mem_limit = (uint64_t)a->mem_limit;
        cg->has_swap = true;
        cg->swap_usage = (uint64_t)a->swap_usage;
        cg->has_pids = true;
        cg->pids = (uint64_t)a->pids_current;
}

/* Stats of ctr @id (op STATS) or of the whole pod (@id NULL, op POD_STATS). */
int mv_agent_stats(struct mv_pod *p, const char *id, struct ag_stats *ret, struct sh_error *err)
{
        _cleanup_free_ uint8_t *resp = NULL;
        size_t n = 0;
        struct ag_buf b;
        int r = mv_pod_agent(p, err);

        if (r < 0)
                return r;
        ag_buf_init(&b);
        if (id)
                ag_put_str(&b, AG_A_ID, id);
        r = ag_client_call(p->agent, id ? AG_OP_STATS : AG_OP_POD_STATS, &b, MV_CALL_MS, &resp, &n,
                           err);
        ag_buf_done(&b);
        if (r == 0)
                r = ag_stats_decode(resp, n, ret);
        return r;
}

void mv_cg_from_ag(const struct ag_stats *a, struct sh_cg_stats *cg)
{
        stats_from_ag(a, cg);
}

static int mv_sandbox_stats(struct be *be, const struct be_sandbox_stats_req *req,
                            struct be_sandbox_stats *ret, struct sh_error *err)
{
        struct mv_pod *p = NULL;
        struct ag_stats a = {0};
        int r = mv_pod_get(be->priv, req->id, &p, err);

        if (r < 0)
                return r;
        if (mv_pod_vm_alive(p))
                r = mv_agent_stats(p, NULL, &a, err);
        mv_pod_put(p);
        if (r < 0)
                return r;
        ret->timestamp_ns = a.timestamp_ns;
        if (!ret->timestamp_ns) {
                struct timespec ts;

                clock_gettime(CLOCK_REALTIME, &ts);
                ret->timestamp_ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
        stats_from_ag(&a, &ret->cg);
        if (req->netns) {
                struct sh_netdev *all = NULL;
                size_t n = 0;

                /* The pod's traffic crosses its netns's CNI interface (the tap is its twin). */
                if (sh_netdev_read_netns(req->netns, &all, &n, NULL) == 0) {
                        size_t k = 0;

                        for (size_t i = 0; i < n; i++)
                                if (strcmp(all[i].name, "tap0") != 0)
                                        all[k++] = all[i];
                        ret->ifaces = all;
                        ret->n_ifaces = k;
                        ret->has_network = true;
                }
        }
        return 0;
}

const struct be_ops be_microvm_ops = {
        .name = "microvm",
        .caps = BE_CAP_EXEC | BE_CAP_ATTACH | BE_CAP_STATS | BE_CAP_SHARED_NETNS,
        .init = mv_init,
        .ready = mv_ready,
        .sandbox_create = mv_sandbox_create,
        .sandbox_stop = mv_sandbox_stop,
        .sandbox_remove = mv_sandbox_remove,
        .sandbox_running = mv_sandbox_running,
        .container_create = mv_container_create,
        .container_start = mv_container_start,
        .container_stop = mv_container_stop,
        .container_remove = mv_container_remove,
        .container_status = mv_container_status,
        .container_update = mv_container_update,
        .container_reopen_log = mv_container_reopen_log,
        .exec_sync = mv_exec_sync,
        .exec_stream = mv_exec_stream,
        .container_attach = mv_container_attach,
        .container_stats = mv_container_stats,
        .container_watch = mv_container_watch,
        .sandbox_watch = mv_sandbox_watch,
        .container_fs_usage = mv_container_fs_usage,
        .sandbox_stats = mv_sandbox_stats,
        .fini = mv_fini,
        .sandbox_dial = mv_sandbox_dial,
};
