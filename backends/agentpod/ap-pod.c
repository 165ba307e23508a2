/*
 * Agent pods (agentpod.h): the pod table, re-opening a pod after runtd restarted, the
 * agent's connection and events, and the sandbox ops that only talk to the agent.
 * Containers: ap-ctr.c; their logs: ap-log.c. The box itself is the host's (ap_host_ops).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ap-internal.h"
#include "cleanup.h"
#include "fswalk.h"
#include "log.h"
#include "strutil.h"
#include "validate.h"

#undef SH_LOG_MODULE
#define SH_LOG_MODULE "agentpod"

/* ---------------------------------------------------------------- the backend */

int ap_be_init(struct ap_be *ab, const struct ap_host_ops *host, const char *dir)
{
        ab->host = host;
        pthread_mutex_init(&ab->mu, NULL);
        pthread_mutex_init(&ab->reopen_mu, NULL);
        ab->dir = strdup(dir);
        return ab->dir ? 0 : -ENOMEM;
}

int ap_be_mkdir(struct ap_be *ab)
{
        _cleanup_free_ char *idx = sh_path_join(ab->dir, "ctr");
        int r = sh_mkdir_p(ab->dir, 0700);

        if (r == 0)
                r = idx ? sh_mkdir_p(idx, 0700) : -ENOMEM;
        return r;
}

void ap_be_fini(struct ap_be *ab)
{
        if (!ab->host)
                return;
        /* The boxes run on: runtd re-owns them when it starts again. */
        for (size_t i = 0; i < ab->n_pods; i++) {
                struct ap_pod *p = ab->pods[i];

                p->refs = 1;
                ap_pod_put(p);
        }
        free(ab->pods);
        free(ab->dir);
        pthread_mutex_destroy(&ab->mu);
        pthread_mutex_destroy(&ab->reopen_mu);
        *ab = (struct ap_be){0};
}

/* ---------------------------------------------------------------- pods */

struct ap_pod *ap_pod_new(struct ap_be *ab, const char *id)
{
        const struct ap_host_ops *h = ab->host;
        struct ap_pod *p = calloc(1, h->pod_size);

        if (!p)
                return NULL;
        snprintf(p->id, sizeof(p->id), "%s", id);
        p->be = ab;
        p->refs = 1;
        /* A short name: the box's sockets in it must fit sun_path (108 bytes). */
        p->dir = sh_strdup_printf("%s/%.20s", ab->dir, id);
        pthread_mutex_init(&p->mu, NULL);
        pthread_mutex_init(&p->connect_mu, NULL);
        pthread_cond_init(&p->changed, NULL);
        if (!p->dir || (h->pod_init && h->pod_init(p) < 0)) {
                ap_pod_free(p);
                return NULL;
        }
        return p;
}

int ap_pod_mkdir(struct ap_pod *p, struct sh_error *err)
{
        _cleanup_free_ char *c = sh_path_join(p->dir, "c");

        if (!c || sh_mkdir_p(c, 0700) < 0)
                return sh_err(err, -EIO, "create the pod's directories in '%s'", p->dir);
        return 0;
}

void ap_pod_free(struct ap_pod *p)
{
        if (!p)
                return;
        ag_client_free(p->agent);
        for (size_t i = 0; i < p->n_retired; i++)
                ag_client_free(p->retired[i]);
        free(p->retired);
        if (p->be->host->pod_done)
                p->be->host->pod_done(p);
        for (size_t i = 0; i < p->n_ctrs; i++)
                ap_ctr_free(p->ctrs[i]);
        free(p->ctrs);
        pthread_cond_destroy(&p->changed);
        pthread_mutex_destroy(&p->mu);
        pthread_mutex_destroy(&p->connect_mu);
        free(p->dir);
        free(p);
}

int ap_pod_add(struct ap_be *ab, struct ap_pod *p)
{
        struct ap_pod **v;

        pthread_mutex_lock(&ab->mu);
        v = realloc(ab->pods, (ab->n_pods + 1) * sizeof(*v));
        if (v) {
                ab->pods = v;
                ab->pods[ab->n_pods++] = p;
        }
        pthread_mutex_unlock(&ab->mu);
        return v ? 0 : -ENOMEM;
}

void ap_pod_put(struct ap_pod *p)
{
        struct ap_be *ab;
        bool last;

        if (!p)
                return;
        ab = p->be;
        pthread_mutex_lock(&ab->mu);
        last = --p->refs == 0;
        pthread_mutex_unlock(&ab->mu);
        if (last)
                ap_pod_free(p);
}

struct ap_ctr *ap_ctr_find(struct ap_pod *p, const char *id)
{
        for (size_t i = 0; i < p->n_ctrs; i++)
                if (strcmp(p->ctrs[i]->id, id) == 0)
                        return p->ctrs[i];
        return NULL;
}

bool ap_pod_alive(struct ap_pod *p)
{
        return p->be->host->alive(p);
}

bool ap_pod_gone(struct ap_pod *p)
{
        const struct ap_host_ops *h = p->be->host;

        return h->gone ? h->gone(p) : !h->alive(p);
}

/* ------------------------------------------------------------ agent events */

/*
 * Takes @p's lock once no client is being made (ap_pod_connect): the events of a new
 * client are handled only once it is p->connecting, so its LOG_ACKs go back to it.
 */
static void lock_ungated(struct ap_pod *p)
{
        pthread_mutex_lock(&p->mu);
        while (p->connect_gate)
                pthread_cond_wait(&p->changed, &p->mu);
}

static void on_event(void *data, enum ag_event ev, const uint8_t *payload, size_t len)
{
        struct ap_pod *p = data;
        _cleanup_free_ char *id = NULL;
        struct ap_ctr *c;

        if (ev == AG_EV_READY) {
                lock_ungated(p);
                p->ready_seen++;
                pthread_cond_broadcast(&p->changed);
                pthread_mutex_unlock(&p->mu);
                return;
        }
        if (ev != AG_EV_EXIT && ev != AG_EV_LOG)
                return;
        if (ag_find_str(payload, len, AG_A_ID, &id) < 0 || !(sh_validate_id(id, "id", NULL) == 0))
                return;
        lock_ungated(p);
        c = ap_ctr_find(p, id);
        if (c && ev == AG_EV_EXIT) {
                struct ag_status st;

                if (ag_status_decode(payload, len, &st) == 0)
                        ap_ctr_set_status(c, &st);
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

                        ap_log_chunk(c, seq, (int)chan, t, d, dn, partial != 0);
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

void ap_pod_box_ended(struct ap_pod *p)
{
        const struct ap_host_ops *h = p->be->host;

        pthread_mutex_lock(&p->mu);
        /*
         * Only when the box is known gone: a box that cannot be reached now (its node away,
         * a partition) keeps its containers as they were last known, until the layer
         * connects again and the agent tells what happened meanwhile.
         */
        if (!p->dead && ap_pod_gone(p)) {
                char why[128];

                snprintf(why, sizeof(why), "the pod's %s ended (%s)", h->box, h->box_exited);
                p->dead = true;
                ap_pod_all_exited(p, p->stopped ? "the pod was stopped" : why);
        }
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->mu);
}

static void on_closed(void *data, int reason)
{
        struct ap_pod *p = data;

        (void)reason;
        /* The channel may close a moment before the box is seen gone (a VM's chardev closes
         * when QEMU goes): give it a moment to be reaped. The host calls ap_pod_box_ended
         * itself when it learns of the end later (a CT seen stopped by the poller). */
        for (int i = 0; i < 50 && ap_pod_alive(p); i++)
                usleep(10 * 1000);
        ap_pod_box_ended(p);
}

static const struct ag_client_ops agent_ops = {
        .on_event = on_event,
        .on_closed = on_closed,
};

int ap_pod_connect(struct ap_pod *p, unsigned timeout_ms, struct sh_error *err)
{
        _cleanup_free_ uint8_t *resp = NULL;
        struct ag_client *c = NULL, *old;
        struct timespec until;
        unsigned before;
        size_t n = 0;
        int r;

        /*
         * The new client's events wait (lock_ungated) until it is p->connecting: the agent
         * sends READY and resends its exits and log chunks as soon as it is connected.
         */
        pthread_mutex_lock(&p->mu);
        before = p->ready_seen;
        p->connect_gate = true;
        pthread_mutex_unlock(&p->mu);
        r = p->be->host->connect(p, timeout_ms, &agent_ops, p, &c, err);
        pthread_mutex_lock(&p->mu);
        p->connect_gate = false;
        p->connecting = r == 0 ? c : NULL;
        pthread_cond_broadcast(&p->changed);
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
        while (p->ready_seen == before && ag_client_connected(c) && ap_pod_alive(p) &&
               pthread_cond_timedwait(&p->changed, &p->mu, &until) == 0)
                ;
        r = p->ready_seen != before ? 0
            : !ap_pod_alive(p)      ? sh_err(err, -ESRCH, "%s", p->be->host->box_exited)
            : !ag_client_connected(c)
                    ? sh_err(err, -ECONNRESET, "the agent's channel closed")
                    : sh_err(err, -ETIMEDOUT, "no word from the agent in %u ms", timeout_ms);
        pthread_mutex_unlock(&p->mu);
        if (r == 0) {
                struct ag_buf b;
                struct timespec now;

                /* The box's clock starts wherever its RTC says: it takes runtd's. */
                clock_gettime(CLOCK_REALTIME, &now);
                ag_buf_init(&b);
                ag_put_u64(&b, AG_A_TIME_NS, (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec);
                r = ag_client_call(c, AG_OP_HELLO, &b, AP_CALL_MS, &resp, &n, err);
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

static bool agent_up(struct ap_pod *p)
{
        bool ok;

        pthread_mutex_lock(&p->mu);
        ok = p->agent && ag_client_connected(p->agent);
        pthread_mutex_unlock(&p->mu);
        return ok;
}

int ap_pod_agent(struct ap_pod *p, struct sh_error *err)
{
        int r;

        if (agent_up(p))
                return 0;
        if (p->dead || ap_pod_gone(p))
                /* FAILED_PRECONDITION: the pod is there, its box is not (NOTREADY). */
                return sh_err(err, -EBUSY, "the pod's %s is not running", p->be->host->box);
        if (!ap_pod_alive(p))
                /* UNAVAILABLE: it may well run, runtd cannot reach it now. */
                return sh_err(err, -EHOSTUNREACH, "the pod's %s cannot be reached now",
                              p->be->host->box);
        /* One connection at a time: a box's channel may serve one client. */
        pthread_mutex_lock(&p->connect_mu);
        r = agent_up(p) ? 0 : ap_pod_connect(p, AP_CALL_MS, err);
        pthread_mutex_unlock(&p->connect_mu);
        return r;
}

/* ---------------------------------------------------------------- after a restart */

/* The containers runtd recorded for pod @p (c/<id>/meta), after a restart. */
static int load_ctrs(struct ap_pod *p)
{
        _cleanup_free_ char *cdir = sh_path_join(p->dir, "c");
        DIR *d = cdir ? opendir(cdir) : NULL;
        struct dirent *e;

        if (!d)
                return cdir ? 0 : -ENOMEM;
        while ((e = readdir(d))) {
                struct ap_ctr *c, **v;

                if (!(sh_validate_id(e->d_name, "id", NULL) == 0) || ap_ctr_find(p, e->d_name))
                        continue;
                c = ap_ctr_load(p, e->d_name);
                v = c ? realloc(p->ctrs, (p->n_ctrs + 1) * sizeof(*v)) : NULL;
                if (!v) {
                        ap_ctr_free(c);
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
static void refresh_statuses(struct ap_pod *p)
{
        _cleanup_free_ uint8_t *resp = NULL;
        size_t n = 0;
        struct ag_iter it;
        struct ag_attr a;

        if (!p->agent ||
            ag_client_call(p->agent, AG_OP_CTR_LIST, NULL, AP_CALL_MS, &resp, &n, NULL) < 0)
                return;
        pthread_mutex_lock(&p->mu);
        ag_iter_init(&it, resp, n);
        while (ag_iter_next(&it, &a) == 1) {
                struct ag_status st;
                struct ap_ctr *c;

                if (a.tag != AG_A_STATUS || ag_status_decode(a.val, a.len, &st) < 0)
                        continue;
                c = ap_ctr_find(p, st.id);
                if (c)
                        ap_ctr_set_status(c, &st);
        }
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->mu);
}

int ap_pod_reconnect(struct ap_pod *p, unsigned timeout_ms, struct sh_error *err)
{
        bool runs;
        int r;

        if (agent_up(p))
                return 0;
        pthread_mutex_lock(&p->mu);
        runs = !p->dead && !p->stopped;
        pthread_mutex_unlock(&p->mu);
        if (!runs || !ap_pod_alive(p))
                return sh_err(err, -EBUSY, "the pod's %s is not running", p->be->host->box);
        if (pthread_mutex_trylock(&p->connect_mu) != 0)
                return sh_err(err, -EINPROGRESS, "the agent is being connected");
        r = agent_up(p) ? 0 : ap_pod_connect(p, timeout_ms, err);
        pthread_mutex_unlock(&p->connect_mu);
        if (r == 0)
                refresh_statuses(p);
        return r;
}

/*
 * Re-owns pod @id's box after runtd restarted (host.reopen); if it runs, the agent is asked
 * what happened meanwhile; if not, its containers exited.
 */
static int pod_reopen(struct ap_be *ab, const char *id, struct ap_pod **ret, struct sh_error *err)
{
        const struct ap_host_ops *h = ab->host;
        struct ap_pod *p;
        struct stat st;
        int r;

        p = ap_pod_new(ab, id);
        if (!p)
                return -ENOMEM;
        if (stat(p->dir, &st) < 0) {
                ap_pod_free(p);
                return sh_err(err, -ENOENT, "%s: no pod %.12s", h->name, id);
        }
        r = load_ctrs(p);
        if (r < 0) {
                ap_pod_free(p);
                return r;
        }
        {
                _cleanup_free_ char *stopped = sh_path_join(p->dir, "stopped");

                p->stopped = stopped && access(stopped, F_OK) == 0;
        }
        if (p->stopped || h->reopen(p, NULL) < 0) {
                char why[128];

                snprintf(why, sizeof(why), "the pod's %s ended while runtd was down", h->box);
                p->dead = true;
                ap_pod_all_exited(p, p->stopped ? "the pod was stopped" : why);
        } else if (ap_pod_connect(p, AP_CALL_MS, err) == 0) {
                refresh_statuses(p);
        } else {
                sh_log_warn("pod %.12s: its %s runs but its agent does not answer: %s", id, h->box,
                            err ? err->msg : "");
        }
        *ret = p;
        return 0;
}

int ap_pod_get(struct ap_be *ab, const char *id, struct ap_pod **ret, struct sh_error *err)
{
        struct ap_pod *p = NULL, **v;
        int r;

        if (!(sh_validate_id(id, "id", NULL) == 0))
                return sh_err(err, -ENOENT, "%s: no pod %.12s", ab->host->name, id);
        pthread_mutex_lock(&ab->mu);
        for (size_t i = 0; i < ab->n_pods && !p; i++)
                if (strcmp(ab->pods[i]->id, id) == 0)
                        p = ab->pods[i];
        if (p) {
                p->refs++;
                pthread_mutex_unlock(&ab->mu);
                *ret = p;
                return 0;
        }
        pthread_mutex_unlock(&ab->mu);
        /*
         * One re-opening at a time: two would each connect to the agent (a VM's chardev
         * serves one client; the other waits) and the loser's teardown would cut the
         * winner's connection.
         */
        pthread_mutex_lock(&ab->reopen_mu);
        pthread_mutex_lock(&ab->mu);
        /* Another caller may have re-opened it meanwhile. */
        for (size_t i = 0; i < ab->n_pods; i++)
                if (strcmp(ab->pods[i]->id, id) == 0) {
                        ab->pods[i]->refs++;
                        *ret = ab->pods[i];
                        pthread_mutex_unlock(&ab->mu);
                        pthread_mutex_unlock(&ab->reopen_mu);
                        return 0;
                }
        pthread_mutex_unlock(&ab->mu);
        r = pod_reopen(ab, id, &p, err);
        if (r < 0) {
                pthread_mutex_unlock(&ab->reopen_mu);
                return r;
        }
        pthread_mutex_lock(&ab->mu);
        v = realloc(ab->pods, (ab->n_pods + 1) * sizeof(*v));
        if (v) {
                ab->pods = v;
                ab->pods[ab->n_pods++] = p;
                p->refs++;
        }
        pthread_mutex_unlock(&ab->mu);
        pthread_mutex_unlock(&ab->reopen_mu);
        if (!v) {
                ap_pod_free(p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

int ap_ctr_pod(struct ap_be *ab, const char *ctr_id, struct ap_pod **ret, struct sh_error *err)
{
        _cleanup_free_ char *link = NULL;
        char pod[80];
        ssize_t n;

        if (!(sh_validate_id(ctr_id, "id", NULL) == 0))
                return sh_err(err, -ENOENT, "%s: no container %.12s", ab->host->name, ctr_id);
        link = sh_strdup_printf("%s/ctr/%s", ab->dir, ctr_id);
        if (!link)
                return -ENOMEM;
        n = readlink(link, pod, sizeof(pod) - 1);
        if (n < 0)
                return sh_err(err, -ENOENT, "%s: no container %.12s", ab->host->name, ctr_id);
        pod[n] = 0;
        return ap_pod_get(ab, pod, ret, err);
}

static void pod_forget(struct ap_be *ab, struct ap_pod *p)
{
        bool found = false;

        pthread_mutex_lock(&ab->mu);
        for (size_t i = 0; i < ab->n_pods; i++)
                if (ab->pods[i] == p) {
                        ab->pods[i] = ab->pods[--ab->n_pods];
                        found = true;
                        break;
                }
        if (found)
                p->refs--;
        pthread_mutex_unlock(&ab->mu);
}

/* ---------------------------------------------------------------- sandbox ops */

int ap_sandbox_stop(struct be *be, const char *id, unsigned timeout_s, struct sh_error *err)
{
        struct ap_be *ab = be->priv;
        struct ap_pod *p = NULL;
        _cleanup_free_ char *stopped = NULL;
        int r = ap_pod_get(ab, id, &p, NULL);

        (void)timeout_s;
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return sh_err(err, r, "%s: pod %.12s: %s", ab->host->name, id, strerror(-r));
        stopped = sh_path_join(p->dir, "stopped");
        if (stopped)
                sh_write_file_replace(stopped, "", 0, 0600);
        pthread_mutex_lock(&p->mu);
        p->stopped = true;
        pthread_mutex_unlock(&p->mu);
        if (ap_pod_alive(p) && ap_pod_agent(p, NULL) == 0 &&
            /* The agent kills what still runs and powers off. */
            ag_client_call(p->agent, AG_OP_SHUTDOWN, NULL, 2000, NULL, NULL, NULL) == 0) {
                pthread_mutex_lock(&p->mu);
                p->shutdown_acked = true; /* host.stop may spare itself the box's stop */
                pthread_mutex_unlock(&p->mu);
        }
        /* Also when the box died by itself: what it left (helpers, mounts) goes. */
        r = ab->host->stop(p, err);
        pthread_mutex_lock(&p->mu);
        p->dead = true;
        ap_pod_all_exited(p, "the pod was stopped");
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->mu);
        ap_pod_put(p);
        return r;
}

int ap_sandbox_remove(struct be *be, const char *id, struct sh_error *err)
{
        struct ap_be *ab = be->priv;
        struct ap_pod *p = NULL;
        int r = ap_pod_get(ab, id, &p, NULL);

        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return sh_err(err, r, "%s: pod %.12s: %s", ab->host->name, id, strerror(-r));
        r = ap_sandbox_stop(be, id, 0, err);
        if (r < 0) {
                ap_pod_put(p);
                return r;
        }
        r = ab->host->teardown(p, err);
        if (r < 0 && r != -EBUSY) {
                /* Not now (a remote host away): the pod stays for the retry. */
                if (err && !err->msg[0])
                        sh_err(err, r, "%s: pod %.12s: %s", ab->host->name, id, strerror(-r));
                ap_pod_put(p);
                return r;
        }
        /* The agent client stays until the pod is freed: calls holding the pod may use it. */
        pthread_mutex_lock(&p->mu);
        for (size_t i = 0; i < p->n_ctrs; i++) {
                _cleanup_free_ char *link = sh_strdup_printf("%s/ctr/%s", ab->dir, p->ctrs[i]->id);

                if (link)
                        unlink(link);
        }
        pthread_mutex_unlock(&p->mu);
        if (r == 0)
                sh_rm_rf(p->dir);
        pod_forget(ab, p);
        ap_pod_put(p);
        return 0;
}

int ap_sandbox_running(struct be *be, const char *id, bool *ret, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        int r = ap_pod_get(be->priv, id, &p, err);

        if (r < 0)
                return r;
        *ret = !p->stopped && !p->dead && ap_pod_alive(p);
        ap_pod_put(p);
        return 0;
}

int ap_sandbox_dial(struct be *be, const char *id, unsigned port, int *ret_fd, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        int r = ap_pod_get(be->priv, id, &p, err);

        if (r < 0)
                return r;
        r = ap_pod_agent(p, err);
        if (r == 0)
                r = ag_client_dial(p->agent, port, ret_fd, err);
        ap_pod_put(p);
        return r;
}

void ap_cg_from_ag(const struct ag_stats *a, struct sh_cg_stats *cg)
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
int ap_pod_stats(struct ap_pod *p, const char *id, struct ag_stats *ret, struct sh_error *err)
{
        _cleanup_free_ uint8_t *resp = NULL;
        size_t n = 0;
        struct ag_buf b;
        int r = ap_pod_agent(p, err);

        if (r < 0)
                return r;
        ag_buf_init(&b);
        if (id)
                ag_put_str(&b, AG_A_ID, id);
        r = ag_client_call(p->agent, id ? AG_OP_STATS : AG_OP_POD_STATS, &b, AP_CALL_MS, &resp, &n,
                           err);
        ag_buf_done(&b);
        if (r == 0)
                r = ag_stats_decode(resp, n, ret);
        return r;
}

int ap_sandbox_stats(struct be *be, const struct be_sandbox_stats_req *req,
                     struct be_sandbox_stats *ret, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        struct ag_stats a = {0};
        int r = ap_pod_get(be->priv, req->id, &p, err);

        if (r < 0)
                return r;
        if (ap_pod_alive(p))
                r = ap_pod_stats(p, NULL, &a, err);
        ap_pod_put(p);
        if (r < 0)
                return r;
        ret->timestamp_ns = a.timestamp_ns;
        if (!ret->timestamp_ns) {
                struct timespec ts;

                clock_gettime(CLOCK_REALTIME, &ts);
                ret->timestamp_ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
        ap_cg_from_ag(&a, &ret->cg);
        return 0;
}
