/*
 * The stats collector. One thread samples, every stats.interval, the cgroup of each running
 * container and of each ready pod (and the pod's network namespace) through the backends,
 * and keeps the last two samples of each object in memory: the CPU rate (usage_nano_cores)
 * is the use between those two, as cAdvisor computes it. Writable layers are walked on their
 * own slower cadence (stats.fs_interval) in the same thread, since a walk costs far more
 * than a few cgroup files. The stats RPCs read the samples under a lock and never touch
 * cgroups, /proc or the disk; an object never sampled yet (just made) is sampled once on
 * demand. Samples of objects no longer listed are dropped at the end of each round.
 */
#include <errno.h>
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SH_LOG_MODULE "podmgr"
#include "be.h"
#include "cleanup.h"
#include "log.h"
#include "podmgr-internal.h"
#include "strutil.h"

/* One cgroup reading. */
struct reading {
        long long ts_ns;
        struct sh_cg_stats cg;
};

/* What is kept of one container or pod. */
struct stat_obj {
        char id[65];
        unsigned long round;      /* the round that last saw it listed */
        bool unsupported;         /* its backend has no stats: not asked again */
        unsigned n_readings;      /* 0, 1 or 2 */
        struct reading cur, prev; /* cur newest */
        bool has_fs;
        long long fs_ts_ns;
        uint64_t fs_bytes, fs_inodes;
        char *fs_mountpoint;
        long long demand_ns; /* when a call last sampled it on demand (0: never) */
        bool has_net;        /* pods */
        long long net_ts_ns;
        struct sh_netdev *ifaces;
        size_t n_ifaces;
};

struct pod_stats {
        struct pod_mgr *pm;
        unsigned interval_s;
        unsigned fs_every; /* walk writable layers every this many rounds */
        pthread_t thread;
        bool started;
        pthread_mutex_t stop_mu; /* protects stop */
        pthread_cond_t stop_cv;
        bool stop;
        pthread_rwlock_t lock; /* protects ctrs, pods and the objects in them */
        void *ctrs;            /* tsearch trees of struct stat_obj by id */
        void *pods;
        unsigned long round; /* the collector's rounds; under lock */
};

static int cmp_obj(const void *a, const void *b)
{
        return strcmp(((const struct stat_obj *)a)->id, ((const struct stat_obj *)b)->id);
}

static void obj_free(void *p)
{
        struct stat_obj *o = p;

        if (!o)
                return;
        free(o->fs_mountpoint);
        free(o->ifaces);
        free(o);
}

/* The object @id in @tree, made when @create. Under the write lock for @create. */
static struct stat_obj *obj_get(void **tree, const char *id, bool create)
{
        struct stat_obj key = {0}, *o, **found;

        snprintf(key.id, sizeof(key.id), "%s", id);
        found = tfind(&key, tree, cmp_obj);
        if (found)
                return *found;
        if (!create || !(o = calloc(1, sizeof(*o))))
                return NULL;
        memcpy(o->id, key.id, sizeof(o->id));
        if (!tsearch(o, tree, cmp_obj)) {
                free(o);
                return NULL;
        }
        return o;
}

/* Records cgroup reading @r as @o's newest. Under the write lock. */
static void obj_push(struct stat_obj *o, long long ts_ns, const struct sh_cg_stats *cg)
{
        /* A reading older than the newest (an on-demand one racing a round) is dropped. */
        if (o->n_readings > 0 && ts_ns <= o->cur.ts_ns)
                return;
        o->prev = o->cur;
        o->cur.ts_ns = ts_ns;
        o->cur.cg = *cg;
        if (o->n_readings < 2)
                o->n_readings++;
}

/* The newest sample of @o with the rate between its two readings. Under a lock. */
static void obj_sample(const struct stat_obj *o, struct pod_stats_sample *ret)
{
        memset(ret, 0, sizeof(*ret));
        if (o->n_readings == 0)
                return;
        ret->timestamp_ns = o->cur.ts_ns;
        ret->cg = o->cur.cg;
        if (o->n_readings == 2 && o->cur.ts_ns > o->prev.ts_ns && o->cur.cg.has_cpu &&
            o->prev.cg.has_cpu && o->cur.cg.cpu_usage_ns >= o->prev.cg.cpu_usage_ns) {
                long double rate = (long double)(o->cur.cg.cpu_usage_ns - o->prev.cg.cpu_usage_ns) *
                                   1e9L / (long double)(o->cur.ts_ns - o->prev.ts_ns);

                ret->has_cpu_rate = true;
                ret->cpu_nano_cores = (unsigned long long)rate;
        }
}

/* ------------------------------------------------------------------ sampling */

/*
 * May a call sample @id of @tree on demand now? Once per stats.interval: an object whose
 * cgroup cannot be read must not be asked on every call (the RPCs answer from memory; only
 * an object the collector has not reached yet is read by one). Also says whether its
 * writable layer has a figure already (no walk then).
 */
static bool demand_ok(struct pod_stats *st, void **tree, const char *id, bool cg, bool *ret_has_fs)
{
        long long now = pod_now_ns();
        struct stat_obj *o;
        bool ok = false;

        pthread_rwlock_wrlock(&st->lock);
        o = obj_get(tree, id, true);
        /* Only cgroup reads are held back: a layer is walked on demand once, when it has no
         * figure yet. */
        if (o && (!cg || !o->demand_ns ||
                  now - o->demand_ns >= (long long)st->interval_s * 1000000000LL)) {
                if (cg)
                        o->demand_ns = now;
                o->round = st->round;
                ok = true;
        }
        *ret_has_fs = o && o->has_fs;
        pthread_rwlock_unlock(&st->lock);
        return ok;
}

/* Reads container @id's cgroup through @be and records it. */
static int sample_ctr_cg(struct pod_stats *st, struct be *be, const char *id, struct sh_error *err)
{
        struct be_ctr_stats s = {0};
        struct stat_obj *o;
        int r = be_container_stats(be, id, &s, err);

        pthread_rwlock_wrlock(&st->lock);
        o = obj_get(&st->ctrs, id, true);
        if (o && r == 0)
                obj_push(o, s.timestamp_ns, &s.cg);
        if (o && r == -EOPNOTSUPP)
                o->unsupported = true;
        if (o)
                o->round = st->round;
        pthread_rwlock_unlock(&st->lock);
        return o ? r : -ENOMEM;
}

/* Walks container @id's writable layer through @be and records it. */
static int sample_ctr_fs(struct pod_stats *st, struct be *be, const char *id, struct sh_error *err)
{
        struct sh_fs_usage *u = calloc(1, sizeof(*u)); /* 4 KiB: not on a handler's stack */
        char *mp = NULL;
        struct stat_obj *o;
        int r;

        if (!u)
                return -ENOMEM;
        r = be_container_fs_usage(be, id, u, err);
        if (r == 0 && !(mp = strdup(u->mountpoint)))
                r = -ENOMEM;
        pthread_rwlock_wrlock(&st->lock);
        o = obj_get(&st->ctrs, id, true);
        if (o && r == 0) {
                o->has_fs = true;
                o->fs_ts_ns = u->timestamp_ns;
                o->fs_bytes = u->used_bytes;
                o->fs_inodes = u->inodes_used;
                if (!o->fs_mountpoint || strcmp(o->fs_mountpoint, mp) != 0) {
                        free(o->fs_mountpoint);
                        o->fs_mountpoint = TAKE_PTR(mp);
                }
        }
        if (o && r == -EOPNOTSUPP)
                o->unsupported = true;
        if (o)
                o->round = st->round;
        pthread_rwlock_unlock(&st->lock);
        free(mp);
        free(u);
        return o ? r : -ENOMEM;
}

/* Samples pod @sb (its running containers @ctr_ids) through @be and records it. */
static int sample_pod(struct pod_stats *st, struct be *be, const struct pod_sandbox_info *sb,
                      const char *const *ctr_ids, struct sh_error *err)
{
        struct be_sandbox_stats s = {0};
        struct be_sandbox_stats_req req = {
                .id = sb->id,
                .spec = &sb->spec,
                .netns = sb->netns && sb->netns[0] ? sb->netns : NULL,
                .container_ids = ctr_ids,
        };
        struct stat_obj *o;
        int r = be_sandbox_stats(be, &req, &s, err);

        pthread_rwlock_wrlock(&st->lock);
        o = obj_get(&st->pods, sb->id, true);
        if (o && r == 0) {
                obj_push(o, s.timestamp_ns, &s.cg);
                free(o->ifaces);
                o->has_net = s.has_network;
                o->net_ts_ns = s.timestamp_ns;
                o->ifaces = TAKE_PTR(s.ifaces);
                o->n_ifaces = s.n_ifaces;
        }
        if (o && r == -EOPNOTSUPP)
                o->unsupported = true;
        if (o)
                o->round = st->round;
        pthread_rwlock_unlock(&st->lock);
        be_sandbox_stats_done(&s);
        return o ? r : -ENOMEM;
}

static int cmp_sb(const void *a, const void *b)
{
        return strcmp((*(struct pod_sandbox_info *const *)a)->id,
                      (*(struct pod_sandbox_info *const *)b)->id);
}

/* The index of sandbox @id in @sbs (sorted by id), or @n when it is not there. */
static size_t sb_index(struct pod_sandbox_info **sbs, size_t n, const char *id)
{
        struct pod_sandbox_info key = {.id = (char *)id}, *k = &key, **found;

        found = bsearch(&k, sbs, n, sizeof(*sbs), cmp_sb);
        return found ? (size_t)(found - sbs) : n;
}

/* Objects a round did not see are gone: dropped. */
struct sweep {
        unsigned long round;
        struct stat_obj **stale;
        size_t n, cap;
};

static void sweep_visit(const void *node, VISIT which, void *data)
{
        struct sweep *w = data;
        struct stat_obj *o = *(struct stat_obj *const *)node;

        if ((which != postorder && which != leaf) || o->round == w->round)
                return;
        if (w->n == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 16;
                struct stat_obj **v = realloc(w->stale, cap * sizeof(*v));

                if (!v)
                        return; /* swept next round */
                w->stale = v;
                w->cap = cap;
        }
        w->stale[w->n++] = o;
}

static void sweep_tree(void **tree, unsigned long round)
{
        struct sweep w = {.round = round};

        twalk_r(*tree, sweep_visit, &w);
        for (size_t i = 0; i < w.n; i++) {
                tdelete(w.stale[i], tree, cmp_obj);
                obj_free(w.stale[i]);
        }
        free(w.stale);
}

/* Marks @id seen this round without sampling it (a container not running). */
static void touch(struct pod_stats *st, void **tree, const char *id)
{
        struct stat_obj *o;

        pthread_rwlock_wrlock(&st->lock);
        o = obj_get(tree, id, true);
        if (o)
                o->round = st->round;
        pthread_rwlock_unlock(&st->lock);
}

static bool should_stop(struct pod_stats *st)
{
        bool stop;

        pthread_mutex_lock(&st->stop_mu);
        stop = st->stop;
        pthread_mutex_unlock(&st->stop_mu);
        return stop;
}

/* One round: every container, then every ready pod, then the sweep. */
static void collect(struct pod_stats *st)
{
        struct pod_sandbox_info **sbs = NULL;
        struct pod_container_info **cs = NULL;
        size_t nsb = 0, nc = 0;
        _cleanup_free_ const char **running = NULL; /* per sandbox: NULL-separated runs */
        _cleanup_free_ size_t *first = NULL, *count = NULL;
        bool fs_round = st->round % st->fs_every == 0;
        struct sh_error err = {0};
        bool complete = true;

        pthread_rwlock_wrlock(&st->lock);
        st->round++; /* read under the lock by on-demand samples */
        pthread_rwlock_unlock(&st->lock);
        if (pod_sandbox_list(st->pm, NULL, &sbs, &nsb, &err) < 0 ||
            pod_container_list_brief(st->pm, NULL, &cs, &nc) < 0) {
                sh_log_debug("stats: list: %s", err.msg);
                pod_sandbox_info_list_free(sbs);
                pod_container_info_list_free(cs);
                return;
        }
        qsort(sbs, nsb, sizeof(*sbs), cmp_sb);
        /* The running containers of each pod, for the pod op: one slot each plus a NULL. */
        running = calloc(nc + nsb + 1, sizeof(*running));
        first = calloc(nsb + 1, sizeof(*first));
        count = calloc(nsb + 1, sizeof(*count));
        if (!running || !first || !count) {
                complete = false;
                goto out;
        }
        for (size_t i = 0; i < nc; i++)
                if (cs[i]->state == POD_CTR_RUNNING)
                        count[sb_index(sbs, nsb, cs[i]->sandbox_id)]++;
        for (size_t i = 0, at = 0; i < nsb; i++) {
                first[i] = at;
                at += count[i] + 1;
                count[i] = 0;
        }
        for (size_t i = 0; i < nc && !should_stop(st); i++) {
                struct pod_container_info *c = cs[i];
                size_t k = sb_index(sbs, nsb, c->sandbox_id);
                struct pod_sandbox_info *sb = k < nsb ? sbs[k] : NULL;
                struct be *be = NULL;
                struct stat_obj *o;
                bool unsupported, need_fs;
                int r;

                if (!sb || pod_mgr_backend(st->pm, sb->spec.handler, &be, NULL) < 0) {
                        touch(st, &st->ctrs, c->id);
                        continue;
                }
                pthread_rwlock_rdlock(&st->lock);
                o = obj_get(&st->ctrs, c->id, false);
                unsupported = o && o->unsupported;
                need_fs = !o || !o->has_fs;
                pthread_rwlock_unlock(&st->lock);
                if (unsupported) {
                        touch(st, &st->ctrs, c->id);
                        continue;
                }
                if (c->state == POD_CTR_RUNNING) {
                        running[first[k] + count[k]++] = c->id;
                        r = sample_ctr_cg(st, be, c->id, &err);
                        if (r < 0 && r != -ENOENT)
                                sh_log_debug("stats: container=%s: %s", c->id, err.msg);
                } else {
                        touch(st, &st->ctrs, c->id);
                }
                if (fs_round || need_fs) {
                        r = sample_ctr_fs(st, be, c->id, &err);
                        if (r < 0 && r != -ENOENT)
                                sh_log_debug("stats: container=%s layer: %s", c->id, err.msg);
                }
        }
        for (size_t i = 0; i < nsb && !should_stop(st); i++) {
                struct pod_sandbox_info *sb = sbs[i];
                struct be *be = NULL;
                int r;

                if (sb->state != POD_READY ||
                    pod_mgr_backend(st->pm, sb->spec.handler, &be, NULL) < 0)
                        continue; /* not kept: a pod that is not ready is not measured */
                r = sample_pod(st, be, sb, &running[first[i]], &err);
                if (r < 0 && r != -ENOENT)
                        sh_log_debug("stats: pod=%s: %s", sb->id, err.msg);
        }
out:
        /* A round cut short saw only some objects: nothing is dropped for it. */
        if (complete && !should_stop(st)) {
                pthread_rwlock_wrlock(&st->lock);
                sweep_tree(&st->ctrs, st->round);
                sweep_tree(&st->pods, st->round);
                pthread_rwlock_unlock(&st->lock);
        }
        pod_sandbox_info_list_free(sbs);
        pod_container_info_list_free(cs);
}

static void *collector(void *arg)
{
        struct pod_stats *st = arg;

        for (;;) {
                struct timespec until;

                collect(st);
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_sec += st->interval_s;
                pthread_mutex_lock(&st->stop_mu);
                while (!st->stop &&
                       pthread_cond_timedwait(&st->stop_cv, &st->stop_mu, &until) != ETIMEDOUT)
                        ;
                if (st->stop) {
                        pthread_mutex_unlock(&st->stop_mu);
                        return NULL;
                }
                pthread_mutex_unlock(&st->stop_mu);
        }
}

int pod_stats_new(struct pod_mgr *pm, struct pod_stats **ret, struct sh_error *err)
{
        const struct runt_config *cfg = pod_mgr_config(pm);
        struct pod_stats *st = calloc(1, sizeof(*st));
        pthread_condattr_t ca;
        int r;

        if (!st)
                return -ENOMEM;
        st->pm = pm;
        st->interval_s = cfg->stats_interval_s ? cfg->stats_interval_s : 10;
        st->fs_every = cfg->stats_fs_interval_s
                               ? (cfg->stats_fs_interval_s + st->interval_s - 1) / st->interval_s
                               : 6;
        if (st->fs_every == 0)
                st->fs_every = 1;
        pthread_mutex_init(&st->stop_mu, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&st->stop_cv, &ca);
        pthread_condattr_destroy(&ca);
        pthread_rwlock_init(&st->lock, NULL);
        r = pthread_create(&st->thread, NULL, collector, st);
        if (r != 0) {
                pod_stats_free(st);
                return sh_err(err, -r, "start the stats collector: %s", strerror(r));
        }
        st->started = true;
        *ret = st;
        return 0;
}

struct pod_stats *pod_stats_free(struct pod_stats *st)
{
        if (!st)
                return NULL;
        if (st->started) {
                pthread_mutex_lock(&st->stop_mu);
                st->stop = true;
                pthread_cond_signal(&st->stop_cv);
                pthread_mutex_unlock(&st->stop_mu);
                pthread_join(st->thread, NULL);
        }
        tdestroy(st->ctrs, obj_free);
        tdestroy(st->pods, obj_free);
        pthread_rwlock_destroy(&st->lock);
        pthread_cond_destroy(&st->stop_cv);
        pthread_mutex_destroy(&st->stop_mu);
        free(st);
        return NULL;
}

/* ------------------------------------------------------------------ reading */

/* The backend of container @i's pod; -ENOENT when the pod is gone. */
static int ctr_backend(struct pod_mgr *pm, const struct pod_container_info *i, struct be **ret,
                       struct sh_error *err)
{
        struct pod_sandbox_info *sb = NULL;
        int r = pod_sandbox_status(pm, i->sandbox_id, &sb, err);

        if (r == 0)
                r = pod_mgr_backend(pm, sb->spec.handler, ret, err);
        pod_sandbox_info_free(sb);
        return r;
}

/*
 * Fills @s (whose info is set) from the samples of @st, under the read lock. False when the
 * container has never been sampled. A container that is not running uses nothing now.
 */
static bool ctr_fill(struct pod_stats *st, struct pod_container_stats *s, long long now)
{
        const struct pod_container_info *i = s->info;
        const struct stat_obj *o = obj_get(&st->ctrs, i->id, false);

        if (!o)
                return false;
        if (o->unsupported)
                return true; /* has_stats stays false */
        if (i->state == POD_CTR_RUNNING && o->n_readings == 0)
                return false; /* it has started since: its cgroup is to be read */
        s->has_stats = true;
        if (i->state == POD_CTR_RUNNING) {
                obj_sample(o, &s->sample);
        } else {
                s->sample.timestamp_ns = now;
                s->sample.cg.has_cpu = s->sample.cg.has_memory = true;
                if (i->spec.resources.memory_limit > 0) {
                        s->sample.cg.has_mem_limit = true;
                        s->sample.cg.mem_limit = (uint64_t)i->spec.resources.memory_limit;
                }
        }
        if (o->has_fs) {
                s->has_writable_layer = true;
                s->writable_layer.timestamp_ns = o->fs_ts_ns;
                s->writable_layer.used_bytes = o->fs_bytes;
                s->writable_layer.inodes_used = o->fs_inodes;
                free(s->writable_layer.mountpoint);
                s->writable_layer.mountpoint = strdup(o->fs_mountpoint ? o->fs_mountpoint : "");
                if (!s->writable_layer.mountpoint)
                        s->has_writable_layer = false; /* no memory: no figure, nothing worse */
        }
        return true;
}

/*
 * Fills the stats of containers @v[0..n) (info set) from the samples; the ones never
 * sampled are sampled now, once. @strict: an error sampling one fails the call, else it is
 * listed without stats.
 */
static int ctrs_fill(struct pod_mgr *pm, struct pod_container_stats **v, size_t n, bool strict,
                     struct sh_error *err)
{
        struct pod_stats *st = pod_mgr_stats(pm);
        long long now = pod_now_ns();
        _cleanup_free_ bool *missing = calloc(n + 1, sizeof(*missing));
        size_t n_missing = 0;

        if (!missing)
                return -ENOMEM;
        pthread_rwlock_rdlock(&st->lock);
        for (size_t i = 0; i < n; i++)
                if (!ctr_fill(st, v[i], now)) {
                        missing[i] = true;
                        n_missing++;
                }
        pthread_rwlock_unlock(&st->lock);
        for (size_t i = 0; i < n && n_missing > 0; i++) {
                struct sh_error e = {0};
                struct be *be = NULL;
                bool has_fs = false;
                int r;

                if (!missing[i])
                        continue;
                if (!demand_ok(st, &st->ctrs, v[i]->info->id, v[i]->info->state == POD_CTR_RUNNING,
                               &has_fs)) {
                        if (strict)
                                return sh_err(err, -EAGAIN,
                                              "stats of container %.12s: no sample yet",
                                              v[i]->info->id);
                        continue; /* asked on demand lately: listed without stats */
                }
                r = ctr_backend(pm, v[i]->info, &be, &e);
                if (r == 0 && v[i]->info->state == POD_CTR_RUNNING)
                        r = sample_ctr_cg(st, be, v[i]->info->id, &e);
                if (r == 0 && !has_fs)
                        r = sample_ctr_fs(st, be, v[i]->info->id, &e);
                if (r == 0) {
                        pthread_rwlock_rdlock(&st->lock);
                        ctr_fill(st, v[i], now);
                        pthread_rwlock_unlock(&st->lock);
                } else if (r == -ENOMEM || strict) {
                        if (err)
                                *err = e;
                        return sh_err_prefix(err, r, "stats of container %.12s", v[i]->info->id);
                } else {
                        sh_log_debug("container=%s no stats: %s", v[i]->info->id, e.msg);
                }
        }
        return 0;
}

struct pod_container_stats *pod_container_stats_free(struct pod_container_stats *s)
{
        if (!s)
                return NULL;
        free(s->writable_layer.mountpoint);
        pod_container_info_free(s->info);
        free(s);
        return NULL;
}

void pod_container_stats_list_free(struct pod_container_stats **l)
{
        for (size_t i = 0; l && l[i]; i++)
                pod_container_stats_free(l[i]);
        free(l);
}

/* Wraps each of @infos (taken, the array too) in a stats record; *@ret NULL-terminated. */
static int wrap_ctrs(struct pod_container_info **infos, size_t n, struct pod_container_stats ***ret)
{
        struct pod_container_stats **v = calloc(n + 1, sizeof(*v));

        for (size_t i = 0; v && i < n; i++) {
                if (!(v[i] = calloc(1, sizeof(*v[i])))) {
                        pod_container_stats_list_free(v);
                        v = NULL;
                        break;
                }
                v[i]->info = TAKE_PTR(infos[i]);
        }
        for (size_t i = 0; i < n; i++) /* the ones not taken, after a hole or not */
                pod_container_info_free(infos[i]);
        free(infos);
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

int pod_container_stats(struct pod_mgr *pm, const char *id, struct pod_container_stats **ret,
                        struct sh_error *err)
{
        struct pod_container_stats *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        r = pod_container_status(pm, id, &s->info, err);
        if (r == 0)
                r = ctrs_fill(pm, &s, 1, true, err);
        if (r == 0 && !s->has_stats)
                r = sh_err(err, -EOPNOTSUPP, "container %.12s: its runtime handler has no stats",
                           s->info->id);
        if (r < 0) {
                pod_container_stats_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int pod_container_stats_list(struct pod_mgr *pm, const struct pod_container_filter *f,
                             struct pod_container_stats ***ret, size_t *ret_n, struct sh_error *err)
{
        struct pod_container_filter any = {0}, nostate = f ? *f : any;
        struct pod_container_info **infos = NULL;
        struct pod_container_stats **v = NULL;
        size_t n = 0;
        int r;

        nostate.has_state = false;
        r = pod_container_list_brief(pm, &nostate, &infos, &n);
        if (r < 0)
                return r;
        r = wrap_ctrs(infos, n, &v);
        if (r == 0)
                r = ctrs_fill(pm, v, n, false, err);
        if (r < 0) {
                pod_container_stats_list_free(v);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

struct pod_sandbox_stats *pod_sandbox_stats_free(struct pod_sandbox_stats *s)
{
        if (!s)
                return NULL;
        pod_sandbox_info_free(s->info);
        free(s->ifaces);
        pod_container_stats_list_free(s->containers);
        free(s);
        return NULL;
}

void pod_sandbox_stats_list_free(struct pod_sandbox_stats **l)
{
        for (size_t i = 0; l && l[i]; i++)
                pod_sandbox_stats_free(l[i]);
        free(l);
}

/* Fills @s (info set) from the samples, under the read lock. False: never sampled. */
static bool pod_fill(struct pod_stats *st, struct pod_sandbox_stats *s)
{
        const struct stat_obj *o = obj_get(&st->pods, s->info->id, false);

        if (!o || (!o->unsupported && o->n_readings == 0))
                return false;
        if (o->unsupported)
                return true;
        s->has_stats = true;
        obj_sample(o, &s->sample);
        if (o->has_net) {
                s->ifaces = o->n_ifaces ? malloc(o->n_ifaces * sizeof(*s->ifaces)) : NULL;
                if (o->n_ifaces && !s->ifaces)
                        return true; /* no memory: listed without the network */
                if (o->n_ifaces)
                        memcpy(s->ifaces, o->ifaces, o->n_ifaces * sizeof(*s->ifaces));
                s->n_ifaces = o->n_ifaces;
                s->has_network = true;
                s->net_timestamp_ns = o->net_ts_ns;
        }
        return true;
}

/* The running containers of @s, NULL-terminated (borrowed ids), for an on-demand sample. */
static const char **running_ids(const struct pod_sandbox_stats *s)
{
        const char **ids = calloc(s->n_containers + 1, sizeof(*ids));
        size_t k = 0;

        for (size_t i = 0; ids && i < s->n_containers; i++)
                if (s->containers[i]->info->state == POD_CTR_RUNNING)
                        ids[k++] = s->containers[i]->info->id;
        return ids;
}

/* Fills pods @v[0..n) (info and containers set); one never sampled is sampled now. */
static int pods_fill(struct pod_mgr *pm, struct pod_sandbox_stats **v, size_t n, bool strict,
                     struct sh_error *err)
{
        struct pod_stats *st = pod_mgr_stats(pm);

        for (size_t i = 0; i < n; i++) {
                struct sh_error e = {0};
                _cleanup_free_ const char **ids = NULL;
                struct be *be = NULL;
                bool ok;
                int r;

                r = ctrs_fill(pm, v[i]->containers, v[i]->n_containers, false, err);
                if (r < 0)
                        return r;
                pthread_rwlock_rdlock(&st->lock);
                ok = pod_fill(st, v[i]);
                pthread_rwlock_unlock(&st->lock);
                if (ok)
                        continue;
                {
                        bool has_fs;

                        if (!demand_ok(st, &st->pods, v[i]->info->id, true, &has_fs)) {
                                if (strict)
                                        return sh_err(err, -EAGAIN,
                                                      "stats of pod %.12s: no sample yet",
                                                      v[i]->info->id);
                                continue;
                        }
                }
                if (!(ids = running_ids(v[i])))
                        return -ENOMEM;
                r = pod_mgr_backend(pm, v[i]->info->spec.handler, &be, &e);
                if (r == 0)
                        r = sample_pod(st, be, v[i]->info, ids, &e);
                if (r == 0) {
                        pthread_rwlock_rdlock(&st->lock);
                        pod_fill(st, v[i]);
                        pthread_rwlock_unlock(&st->lock);
                } else if (r == -ENOMEM || strict) {
                        if (err)
                                *err = e;
                        return sh_err_prefix(err, r, "stats of pod %.12s", v[i]->info->id);
                } else {
                        sh_log_debug("pod=%s no stats: %s", v[i]->info->id, e.msg);
                }
        }
        return 0;
}

/*
 * Wraps each of @sbs (taken, the array too) in a stats record with its containers from
 * @cs (every container, taken: the ones of no listed pod are freed); *@ret NULL-terminated.
 */
static int cmp_ctr_pod(const void *a, const void *b)
{
        const struct pod_container_info *x = *(struct pod_container_info *const *)a;
        const struct pod_container_info *y = *(struct pod_container_info *const *)b;
        int c = strcmp(x->sandbox_id, y->sandbox_id);

        /* Oldest first within a pod, as the list gave them. */
        return c ? c : x->created_ns < y->created_ns ? -1 : x->created_ns > y->created_ns;
}

static int wrap_pods(struct pod_sandbox_info **sbs, size_t nsb, struct pod_container_info **cs,
                     size_t nc, struct pod_sandbox_stats ***ret)
{
        struct pod_sandbox_stats **v = calloc(nsb + 1, sizeof(*v));
        bool *taken = calloc(nc + 1, sizeof(*taken));
        int r = v && taken ? 0 : -ENOMEM;

        /* Grouped by pod: a pod's containers are found by a binary search, not a scan. */
        if (nc)
                qsort(cs, nc, sizeof(*cs), cmp_ctr_pod);
        for (size_t i = 0; r == 0 && i < nsb; i++) {
                size_t k = 0, lo = 0, hi = nc, end;

                if (!(v[i] = calloc(1, sizeof(*v[i])))) {
                        r = -ENOMEM;
                        break;
                }
                v[i]->info = TAKE_PTR(sbs[i]);
                while (lo < hi) {
                        size_t mid = lo + (hi - lo) / 2;

                        if (strcmp(cs[mid]->sandbox_id, v[i]->info->id) < 0)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                for (end = lo; end < nc && strcmp(cs[end]->sandbox_id, v[i]->info->id) == 0; end++)
                        ;
                if (!(v[i]->containers = calloc(end - lo + 1, sizeof(*v[i]->containers)))) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t j = lo; j < end; j++) {
                        if (!(v[i]->containers[k] = calloc(1, sizeof(**v[i]->containers)))) {
                                r = -ENOMEM;
                                break;
                        }
                        /* Handed over; cs keeps it until the end, for the searches. */
                        v[i]->containers[k++]->info = cs[j];
                        taken[j] = true;
                }
                v[i]->n_containers = k;
        }
        for (size_t i = 0; i < nsb; i++)
                pod_sandbox_info_free(sbs[i]);
        free(sbs);
        for (size_t j = 0; j < nc; j++)
                if (!taken || !taken[j])
                        pod_container_info_free(cs[j]);
        free(cs);
        free(taken);
        if (r < 0) {
                pod_sandbox_stats_list_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

int pod_sandbox_stats(struct pod_mgr *pm, const char *id, struct pod_sandbox_stats **ret,
                      struct sh_error *err)
{
        struct pod_sandbox_info **sbs = calloc(2, sizeof(*sbs));
        struct pod_container_info **cs = NULL;
        struct pod_sandbox_stats **v = NULL;
        size_t nc = 0;
        int r;

        if (!sbs)
                return -ENOMEM;
        r = pod_sandbox_status(pm, id, &sbs[0], err);
        if (r == 0 && sbs[0]->state != POD_READY)
                r = sh_err(err, -EAGAIN, "pod %.12s is not ready: nothing runs to measure",
                           sbs[0]->id);
        if (r == 0)
                r = pod_container_list_brief(
                        pm, &(struct pod_container_filter){.sandbox_id = sbs[0]->id}, &cs, &nc);
        if (r < 0) {
                pod_sandbox_info_list_free(sbs);
                return r;
        }
        r = wrap_pods(sbs, 1, cs, nc, &v);
        if (r == 0)
                r = pods_fill(pm, v, 1, true, err);
        if (r == 0 && !v[0]->has_stats)
                r = sh_err(err, -EOPNOTSUPP, "pod %.12s: its runtime handler has no stats",
                           v[0]->info->id);
        if (r < 0) {
                pod_sandbox_stats_list_free(v);
                return r;
        }
        *ret = TAKE_PTR(v[0]);
        free(v);
        return 0;
}

int pod_sandbox_stats_list(struct pod_mgr *pm, const struct pod_sandbox_filter *f,
                           struct pod_sandbox_stats ***ret, size_t *ret_n, struct sh_error *err)
{
        struct pod_sandbox_filter any = {0}, ready = f ? *f : any;
        struct pod_sandbox_info **sbs = NULL;
        struct pod_container_info **cs = NULL;
        struct pod_sandbox_stats **v = NULL;
        size_t nsb = 0, nc = 0;
        int r;

        ready.has_state = true;
        ready.state = POD_READY;
        r = pod_sandbox_list(pm, &ready, &sbs, &nsb, err);
        if (r == 0 && nsb > 0)
                r = pod_container_list_brief(pm, NULL, &cs, &nc);
        if (r < 0) {
                pod_sandbox_info_list_free(sbs);
                return r;
        }
        r = wrap_pods(sbs, nsb, cs, nc, &v);
        if (r == 0)
                r = pods_fill(pm, v, nsb, false, err);
        if (r < 0) {
                pod_sandbox_stats_list_free(v);
                return r;
        }
        *ret = v;
        *ret_n = nsb;
        return 0;
}
