/*
 * The pod manager's in-memory view: every sandbox and container the store holds (but those
 * still being created), kept by every state change and by a watcher thread that learns of
 * exits from the backends. List*, *Status and the stats read it and nothing else: no SQLite
 * row, no /proc file and no backend call per RPC (issue 15: the kubelet relists every second).
 *
 * The store stays the durable record: every change is written there too, and a start
 * rebuilds the view from it (pod_view_load), then asks the backends once what happened
 * while runtd was away.
 *
 * Exits: a backend with watch ops hands out a pollable fd per running container (LXC: a
 * pidfd of its monitor, which leaves once the exit status is on disk) and per ready sandbox
 * (LXC: a pidfd of the pause container's init). The watcher thread epolls them and, when
 * one turns readable, asks the backend for the object's status once and records the change.
 * A backend without them (the fake one) changes state only through runt's own calls. An fd
 * that could not be made (EMFILE, say) is made up for by asking the backend every
 * WATCH_POLL_MS instead.
 *
 * Locks: v->lock (rw) protects the arrays and every entry; readers hold it shared for the
 * time of one visit or copy. Events are handed to the sink in the order the changes were
 * made: the changer takes v->emit_mu before it lets v->lock go and calls the sink after.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SH_LOG_MODULE "podmgr"
#include "cleanup.h"
#include "log.h"
#include "podmgr-internal.h"
#include "strutil.h"
#include "validate.h"

/* How often objects without a watch fd are asked for their state. */
#define WATCH_POLL_MS 2000

struct view_sb {
        struct pod_sandbox_info *info;
        int wfd;                 /* the watch fd, or -1 */
        unsigned long long wseq; /* its epoll key (0: none) */
        bool poll;               /* no watch fd could be made: ask every WATCH_POLL_MS */
        /* Not ready by itself on a backend whose pods may return (BE_CAP_SB_RETURNS): it is
         * asked every WATCH_POLL_MS whether it runs again. Never set for a stopped pod. */
        bool lost;
};

struct view_ctr {
        struct pod_container_info *info;
        char *handler;
        int wfd;
        unsigned long long wseq;
        bool poll;
};

struct pod_view {
        pthread_rwlock_t lock;
        struct view_sb **sbs; /* oldest first (created_ns, id) */
        size_t n_sbs, cap_sbs;
        struct view_ctr **ctrs; /* oldest first */
        size_t n_ctrs, cap_ctrs;
        unsigned long long next_seq;
        pthread_mutex_t emit_mu;
        int epfd;
        int stop_fd; /* eventfd: the watcher leaves */
        pthread_t thread;
        bool started;
};

/* ---------------------------------------------------------------- copies */

int pod_sandbox_info_copy(const struct pod_sandbox_info *i, struct pod_sandbox_info **ret)
{
        struct pod_sandbox_info *c = calloc(1, sizeof(*c));
        size_t n = 0;

        if (!c)
                return -ENOMEM;
        c->state = i->state;
        c->created_ns = i->created_ns;
        c->id = strdup(i->id);
        c->netns = strdup(i->netns ? i->netns : "");
        while (i->ips && i->ips[n])
                n++;
        c->ips = calloc(n + 1, sizeof(char *));
        for (size_t k = 0; c->ips && k < n; k++)
                if (!(c->ips[k] = strdup(i->ips[k])))
                        break;
        if (be_sandbox_spec_copy(&i->spec, &c->spec) < 0) {
                memset(&c->spec, 0, sizeof(c->spec));
                pod_sandbox_info_free(c);
                return -ENOMEM;
        }
        if (!c->id || !c->netns || !c->ips || (n && !c->ips[n - 1])) {
                pod_sandbox_info_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

int pod_container_info_copy(const struct pod_container_info *i, struct pod_container_info **ret)
{
        struct pod_container_info *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->created_ns = i->created_ns;
        c->state = i->state;
        c->pid = i->pid;
        c->started_ns = i->started_ns;
        c->finished_ns = i->finished_ns;
        c->exit_code = i->exit_code;
        c->id = strdup(i->id);
        c->sandbox_id = strdup(i->sandbox_id);
        c->reason = strdup(i->reason ? i->reason : "");
        c->message = strdup(i->message ? i->message : "");
        c->user = strdup(i->user ? i->user : "");
        c->image_name = strdup(i->image_name ? i->image_name : "");
        c->image_digest = strdup(i->image_digest ? i->image_digest : "");
        if (be_container_spec_copy(&i->spec, &c->spec) < 0) {
                memset(&c->spec, 0, sizeof(c->spec));
                pod_container_info_free(c);
                return -ENOMEM;
        }
        if (!c->id || !c->sandbox_id || !c->reason || !c->message || !c->user || !c->image_name ||
            !c->image_digest) {
                pod_container_info_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

int pod_container_info_copy_brief(const struct pod_container_info *i,
                                  struct pod_container_info **ret)
{
        struct pod_container_info *c = calloc(1, sizeof(*c));
        const struct be_container_spec *s = &i->spec;
        struct be_container_spec brief = {
                .name = s->name,
                .attempt = s->attempt,
                .image_ref = s->image_ref,
                .image_id = s->image_id,
                .labels = s->labels,
                .n_labels = s->n_labels,
                .annotations = s->annotations,
                .n_annotations = s->n_annotations,
                .tty = s->tty,
                .stdin_open = s->stdin_open,
        };

        if (!c)
                return -ENOMEM;
        /* The scalar limits only: no string of them is read from a brief copy. */
        brief.resources.cpu_period = s->resources.cpu_period;
        brief.resources.cpu_quota = s->resources.cpu_quota;
        brief.resources.cpu_shares = s->resources.cpu_shares;
        brief.resources.memory_limit = s->resources.memory_limit;
        brief.resources.memory_swap_limit = s->resources.memory_swap_limit;
        c->created_ns = i->created_ns;
        c->state = i->state;
        c->pid = i->pid;
        c->started_ns = i->started_ns;
        c->finished_ns = i->finished_ns;
        c->exit_code = i->exit_code;
        c->id = strdup(i->id);
        c->sandbox_id = strdup(i->sandbox_id);
        c->reason = strdup(i->reason ? i->reason : "");
        c->message = strdup(i->message ? i->message : "");
        c->user = strdup(i->user ? i->user : "");
        c->image_name = strdup(i->image_name ? i->image_name : "");
        c->image_digest = strdup(i->image_digest ? i->image_digest : "");
        if (be_container_spec_copy(&brief, &c->spec) < 0) {
                memset(&c->spec, 0, sizeof(c->spec));
                pod_container_info_free(c);
                return -ENOMEM;
        }
        if (!c->id || !c->sandbox_id || !c->reason || !c->message || !c->user || !c->image_name ||
            !c->image_digest) {
                pod_container_info_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

/* ---------------------------------------------------------------- lookup */

static bool older(long long a_ns, const char *a_id, long long b_ns, const char *b_id)
{
        return a_ns < b_ns || (a_ns == b_ns && strcmp(a_id, b_id) < 0);
}

/* The index of the one entry @id names (an id or unique prefix); -ENOENT, or -EEXIST when
 * the prefix is ambiguous. */
/* The id and creation time of an entry of either array, for the generic helpers below. */
static const char *sb_id(const void *e)
{
        return ((const struct view_sb *)e)->info->id;
}

static long long sb_ns(const void *e)
{
        return ((const struct view_sb *)e)->info->created_ns;
}

static const char *ctr_id(const void *e)
{
        return ((const struct view_ctr *)e)->info->id;
}

static long long ctr_ns(const void *e)
{
        return ((const struct view_ctr *)e)->info->created_ns;
}

/* The index of the one entry of @arr that @id names (an id or unique prefix); -ENOENT, or
 * -EEXIST when the prefix is ambiguous. */
static ssize_t find_in(void *const *arr, size_t n, const char *id,
                       const char *(*id_of)(const void *))
{
        size_t len = strlen(id);
        ssize_t hit = -ENOENT;

        for (size_t k = 0; k < n; k++) {
                const char *have = id_of(arr[k]);

                if (strncmp(have, id, len) != 0)
                        continue;
                if (have[len] == '\0')
                        return (ssize_t)k; /* a full id: nothing else can match it wholly */
                if (hit >= 0)
                        return -EEXIST;
                hit = (ssize_t)k;
        }
        return hit;
}

static ssize_t find_sb(struct pod_view *v, const char *id)
{
        return find_in((void *const *)v->sbs, v->n_sbs, id, sb_id);
}

static ssize_t find_ctr(struct pod_view *v, const char *id)
{
        return find_in((void *const *)v->ctrs, v->n_ctrs, id, ctr_id);
}

static void unwatch(struct pod_view *v, int *wfd, unsigned long long *wseq)
{
        if (*wfd >= 0) {
                /* Out of the set first: a helper forked meanwhile may hold a copy for a moment,
                 * and a closed fd's registration lives as long as any copy does. */
                epoll_ctl(v->epfd, EPOLL_CTL_DEL, *wfd, NULL);
                close(*wfd);
        }
        *wfd = -1;
        *wseq = 0;
}

static struct view_sb *sb_entry_free(struct pod_view *v, struct view_sb *e)
{
        if (!e)
                return NULL;
        unwatch(v, &e->wfd, &e->wseq);
        pod_sandbox_info_free(e->info);
        free(e);
        return NULL;
}

static struct view_ctr *ctr_entry_free(struct pod_view *v, struct view_ctr *e)
{
        if (!e)
                return NULL;
        unwatch(v, &e->wfd, &e->wseq);
        pod_container_info_free(e->info);
        free(e->handler);
        free(e);
        return NULL;
}

/* ---------------------------------------------------------------- events */

/* What the sink gets for one event: copies made under the lock, handed over after it. */
struct snap {
        bool want;
        enum pod_event_kind kind;
        char id[65];
        long long at_ns;
        struct pod_sandbox_info *sb;
        struct pod_container_info **ctrs; /* NULL-terminated */
        size_t n_ctrs;
};

/*
 * Copies for an event of @kind on @id: pod @sandbox_id as the view has it (or @gone, a pod
 * just taken out of it) and its containers. Under v->lock. Nothing when no sink is set.
 */
static void snap_take(struct pod_mgr *pm, struct snap *s, enum pod_event_kind kind, const char *id,
                      const char *sandbox_id, const struct pod_sandbox_info *gone)
{
        struct pod_view *v = pod_mgr_view(pm);
        const struct pod_sandbox_info *sb = gone;
        size_t n = 0;

        memset(s, 0, sizeof(*s));
        if (!pod_mgr_has_sink(pm))
                return;
        if (!sb) {
                ssize_t k = find_sb(v, sandbox_id);

                if (k < 0)
                        return; /* a container of a pod not in the view: nothing to tell */
                sb = v->sbs[k]->info;
        }
        if (pod_sandbox_info_copy(sb, &s->sb) < 0)
                return;
        if (gone)
                s->sb->state = POD_NOTREADY;
        s->ctrs = calloc(v->n_ctrs + 1, sizeof(*s->ctrs));
        for (size_t k = 0; s->ctrs && k < v->n_ctrs; k++)
                if (strcmp(v->ctrs[k]->info->sandbox_id, sb->id) == 0 &&
                    pod_container_info_copy(v->ctrs[k]->info, &s->ctrs[n]) == 0)
                        n++;
        if (!s->ctrs) {
                s->sb = pod_sandbox_info_free(s->sb);
                return;
        }
        s->n_ctrs = n;
        s->kind = kind;
        snprintf(s->id, sizeof(s->id), "%s", id);
        s->at_ns = pod_now_ns();
        s->want = true;
}

static void snap_done(struct snap *s)
{
        pod_sandbox_info_free(s->sb);
        pod_container_info_list_free(s->ctrs);
        memset(s, 0, sizeof(*s));
}

/*
 * Lets v->lock go (held exclusively) and hands @n events to the sink, in order: v->emit_mu
 * is taken before the view lock goes, so no later change can overtake them.
 */
static void unlock_and_emit(struct pod_mgr *pm, struct snap *snaps, size_t n)
{
        struct pod_view *v = pod_mgr_view(pm);
        bool any = false;

        for (size_t k = 0; k < n; k++)
                any |= snaps[k].want;
        if (!any) {
                pthread_rwlock_unlock(&v->lock);
                return;
        }
        pthread_mutex_lock(&v->emit_mu);
        pthread_rwlock_unlock(&v->lock);
        for (size_t k = 0; k < n; k++) {
                if (!snaps[k].want)
                        continue;
                pod_mgr_emit(pm, &(struct pod_event){
                                         .kind = snaps[k].kind,
                                         .id = snaps[k].id,
                                         .at_ns = snaps[k].at_ns,
                                         .sandbox = snaps[k].sb,
                                         .containers = snaps[k].ctrs,
                                         .n_containers = snaps[k].n_ctrs,
                                 });
                snap_done(&snaps[k]);
        }
        pthread_mutex_unlock(&v->emit_mu);
}

void pod_view_emit_lock(struct pod_mgr *pm, bool lock)
{
        struct pod_view *v = pod_mgr_view(pm);

        if (!v)
                return;
        if (lock)
                pthread_mutex_lock(&v->emit_mu);
        else
                pthread_mutex_unlock(&v->emit_mu);
}

/* ---------------------------------------------------------------- sandboxes */

/*
 * Puts @e into the array *@v of *@n pointers, oldest first (@ns_of, @id_of read an entry);
 * almost always the newest, so the place is sought from the end. 0 or -ENOMEM.
 */
static int insert_sorted(void ***v, size_t *n, size_t *cap, void *e,
                         long long (*ns_of)(const void *), const char *(*id_of)(const void *))
{
        size_t at;

        if (*n == *cap) {
                size_t ncap = *cap ? *cap * 2 : 64;
                void **nv = realloc(*v, ncap * sizeof(*nv));

                if (!nv)
                        return -ENOMEM;
                *v = nv;
                *cap = ncap;
        }
        for (at = *n; at > 0; at--)
                if (!older(ns_of(e), id_of(e), ns_of((*v)[at - 1]), id_of((*v)[at - 1])))
                        break;
        memmove(&(*v)[at + 1], &(*v)[at], (*n - at) * sizeof(**v));
        (*v)[at] = e;
        (*n)++;
        return 0;
}

static int sb_insert(struct pod_view *v, struct view_sb *e)
{
        return insert_sorted((void ***)&v->sbs, &v->n_sbs, &v->cap_sbs, e, sb_ns, sb_id);
}

static int ctr_insert(struct pod_view *v, struct view_ctr *e)
{
        return insert_sorted((void ***)&v->ctrs, &v->n_ctrs, &v->cap_ctrs, e, ctr_ns, ctr_id);
}

int pod_view_sb_add(struct pod_mgr *pm, struct pod_sandbox_info *i, bool quiet)
{
        struct pod_view *v = pod_mgr_view(pm);
        struct view_sb *e = calloc(1, sizeof(*e));
        struct snap snaps[2];
        int r;

        if (!e) {
                pod_sandbox_info_free(i);
                return -ENOMEM;
        }
        e->info = i;
        e->wfd = -1;
        pthread_rwlock_wrlock(&v->lock);
        r = sb_insert(v, e);
        if (r < 0) {
                pthread_rwlock_unlock(&v->lock);
                sb_entry_free(v, e);
                return r;
        }
        memset(snaps, 0, sizeof(snaps));
        if (!quiet) {
                snap_take(pm, &snaps[0], POD_EVENT_CREATED, i->id, i->id, NULL);
                snap_take(pm, &snaps[1], POD_EVENT_STARTED, i->id, i->id, NULL);
        }
        unlock_and_emit(pm, snaps, 2);
        return 0;
}

bool pod_view_sb_not_ready(struct pod_mgr *pm, const char *id, bool lost)
{
        struct pod_view *v = pod_mgr_view(pm);
        struct snap s = {0};
        bool changed = false;
        ssize_t k;

        pthread_rwlock_wrlock(&v->lock);
        k = find_sb(v, id);
        if (k >= 0 && v->sbs[k]->info->state == POD_READY) {
                v->sbs[k]->info->state = POD_NOTREADY;
                unwatch(v, &v->sbs[k]->wfd, &v->sbs[k]->wseq);
                snap_take(pm, &s, POD_EVENT_STOPPED, v->sbs[k]->info->id, v->sbs[k]->info->id,
                          NULL);
                changed = true;
        }
        /* A stop ends the hope of a lost one too; a pod becomes lost only as it goes. */
        if (k >= 0 && (changed || !lost)) {
                v->sbs[k]->lost = lost;
                v->sbs[k]->poll = lost;
        }
        unlock_and_emit(pm, &s, 1);
        return changed;
}

bool pod_view_sb_back(struct pod_mgr *pm, const char *id)
{
        struct pod_view *v = pod_mgr_view(pm);
        struct snap s = {0};
        bool changed = false;
        ssize_t k;

        pthread_rwlock_wrlock(&v->lock);
        k = find_sb(v, id);
        if (k >= 0 && v->sbs[k]->lost && v->sbs[k]->info->state == POD_NOTREADY) {
                v->sbs[k]->info->state = POD_READY;
                v->sbs[k]->lost = false;
                v->sbs[k]->poll = false;
                snap_take(pm, &s, POD_EVENT_STARTED, v->sbs[k]->info->id, v->sbs[k]->info->id,
                          NULL);
                changed = true;
        }
        unlock_and_emit(pm, &s, 1);
        return changed;
}

bool pod_view_sb_lost(struct pod_mgr *pm, const char *id)
{
        struct pod_view *v = pod_mgr_view(pm);
        bool lost;
        ssize_t k;

        pthread_rwlock_rdlock(&v->lock);
        k = find_sb(v, id);
        lost = k >= 0 && v->sbs[k]->lost;
        pthread_rwlock_unlock(&v->lock);
        return lost;
}

void pod_view_sb_remove(struct pod_mgr *pm, const char *id)
{
        struct pod_view *v = pod_mgr_view(pm);
        struct view_sb *e = NULL;
        struct snap s = {0};
        ssize_t k;

        pthread_rwlock_wrlock(&v->lock);
        k = find_sb(v, id);
        if (k >= 0 && strcmp(v->sbs[k]->info->id, id) == 0) {
                e = v->sbs[k];
                memmove(&v->sbs[k], &v->sbs[k + 1], (v->n_sbs - (size_t)k - 1) * sizeof(*v->sbs));
                v->n_sbs--;
                snap_take(pm, &s, POD_EVENT_DELETED, e->info->id, e->info->id, e->info);
        }
        unlock_and_emit(pm, &s, 1);
        sb_entry_free(v, e);
}

int pod_view_sb_get(struct pod_mgr *pm, const char *id, struct pod_sandbox_info **ret,
                    struct sh_error *err)
{
        struct pod_view *v = pod_mgr_view(pm);
        ssize_t k;
        int r;

        r = sh_validate_id_prefix(id, "pod sandbox id", err);
        if (r < 0)
                return r;
        pthread_rwlock_rdlock(&v->lock);
        k = find_sb(v, id);
        r = k >= 0 ? pod_sandbox_info_copy(v->sbs[k]->info, ret) : (int)k;
        pthread_rwlock_unlock(&v->lock);
        if (r == -EEXIST)
                return sh_err(err, -ENOENT, "pod sandbox id prefix '%s' is ambiguous", id);
        if (r == -ENOENT)
                return sh_err(err, -ENOENT, "pod sandbox '%s' not found", id);
        return r;
}

int pod_view_sb_each(struct pod_mgr *pm, int (*fn)(const struct pod_sandbox_info *i, void *data),
                     void *data)
{
        struct pod_view *v = pod_mgr_view(pm);
        int r = 0;

        pthread_rwlock_rdlock(&v->lock);
        for (size_t k = 0; k < v->n_sbs && r >= 0; k++)
                r = fn(v->sbs[k]->info, data);
        pthread_rwlock_unlock(&v->lock);
        return r < 0 ? r : 0;
}

/* ---------------------------------------------------------------- containers */

int pod_view_ctr_add(struct pod_mgr *pm, struct pod_container_info *i, const char *handler)
{
        struct pod_view *v = pod_mgr_view(pm);
        struct view_ctr *e = calloc(1, sizeof(*e));
        struct snap s;
        int r;

        if (!e || !(e->handler = strdup(handler ? handler : ""))) {
                free(e);
                pod_container_info_free(i);
                return -ENOMEM;
        }
        e->info = i;
        e->wfd = -1;
        pthread_rwlock_wrlock(&v->lock);
        r = ctr_insert(v, e);
        if (r < 0) {
                pthread_rwlock_unlock(&v->lock);
                ctr_entry_free(v, e);
                return r;
        }
        snap_take(pm, &s, POD_EVENT_CREATED, i->id, i->sandbox_id, NULL);
        unlock_and_emit(pm, &s, 1);
        return 0;
}

static void set_str(char **p, const char *s)
{
        char *n = strdup(s);

        if (n) { /* on ENOMEM the old text stays: wrong words beat a crash */
                free(*p);
                *p = n;
        }
}

bool pod_view_ctr_apply(struct pod_mgr *pm, const char *id, const struct be_ctr_status *st,
                        struct pod_container_info **ret_exited)
{
        struct pod_view *v = pod_mgr_view(pm);
        struct snap snaps[2] = {0};
        size_t n = 0;
        bool exited = false;
        ssize_t k;

        if (ret_exited)
                *ret_exited = NULL;
        pthread_rwlock_wrlock(&v->lock);
        k = find_ctr(v, id);
        if (k >= 0) {
                struct view_ctr *e = v->ctrs[k];
                struct pod_container_info *i = e->info;

                if (i->state == POD_CTR_EXITED) {
                        /* An exit once seen is kept. */
                } else if (!st) {
                        /* The backend could not tell: a running one is unknown now. */
                        if (i->state == POD_CTR_RUNNING)
                                i->state = POD_CTR_UNKNOWN;
                } else if (st->state == BE_CTR_RUNNING) {
                        i->pid = st->pid;
                        if (!i->started_ns)
                                i->started_ns = st->started_ns ? st->started_ns : pod_now_ns();
                        if (i->state != POD_CTR_RUNNING) {
                                bool was_created = i->state == POD_CTR_CREATED;

                                i->state = POD_CTR_RUNNING;
                                if (was_created)
                                        snap_take(pm, &snaps[n++], POD_EVENT_STARTED, i->id,
                                                  i->sandbox_id, NULL);
                        }
                } else if (st->state == BE_CTR_EXITED) {
                        if (i->state == POD_CTR_CREATED && st->started_ns) {
                                /* It ran and ended before anyone saw it run: started first. */
                                i->state = POD_CTR_RUNNING;
                                i->started_ns = st->started_ns;
                                snap_take(pm, &snaps[n++], POD_EVENT_STARTED, i->id, i->sandbox_id,
                                          NULL);
                        }
                        i->state = POD_CTR_EXITED;
                        i->pid = 0;
                        if (st->started_ns)
                                i->started_ns = st->started_ns;
                        i->finished_ns = st->finished_ns ? st->finished_ns : pod_now_ns();
                        i->exit_code = st->exit_code;
                        set_str(&i->reason, st->reason);
                        set_str(&i->message, st->message);
                        e->poll = false;
                        unwatch(v, &e->wfd, &e->wseq);
                        snap_take(pm, &snaps[n++], POD_EVENT_STOPPED, i->id, i->sandbox_id, NULL);
                        exited = true;
                        if (ret_exited && pod_container_info_copy(i, ret_exited) < 0)
                                *ret_exited = NULL;
                }
        }
        unlock_and_emit(pm, snaps, n);
        return exited;
}

void pod_view_ctr_set_resources(struct pod_mgr *pm, const char *id, const struct be_resources *res)
{
        struct pod_view *v = pod_mgr_view(pm);
        struct be_container_spec tmp = {0}, copy;
        ssize_t k;

        /* Copy through a spec: be_container_spec_copy is the one deep copier of resources. */
        tmp.resources = *res;
        if (be_container_spec_copy(&tmp, &copy) < 0)
                return;
        pthread_rwlock_wrlock(&v->lock);
        k = find_ctr(v, id);
        if (k >= 0) {
                be_resources_done(&v->ctrs[k]->info->spec.resources);
                v->ctrs[k]->info->spec.resources = copy.resources;
                memset(&copy.resources, 0, sizeof(copy.resources));
        }
        pthread_rwlock_unlock(&v->lock);
        be_container_spec_done(&copy);
}

void pod_view_ctr_remove(struct pod_mgr *pm, const char *id)
{
        struct pod_view *v = pod_mgr_view(pm);
        struct view_ctr *e = NULL;
        struct snap s = {0};
        ssize_t k;

        pthread_rwlock_wrlock(&v->lock);
        k = find_ctr(v, id);
        if (k >= 0 && strcmp(v->ctrs[k]->info->id, id) == 0) {
                e = v->ctrs[k];
                memmove(&v->ctrs[k], &v->ctrs[k + 1],
                        (v->n_ctrs - (size_t)k - 1) * sizeof(*v->ctrs));
                v->n_ctrs--;
                snap_take(pm, &s, POD_EVENT_DELETED, e->info->id, e->info->sandbox_id, NULL);
        }
        unlock_and_emit(pm, &s, 1);
        ctr_entry_free(v, e);
}

int pod_view_ctr_get(struct pod_mgr *pm, const char *id, struct pod_container_info **ret,
                     char **ret_handler, struct sh_error *err)
{
        struct pod_view *v = pod_mgr_view(pm);
        char *handler = NULL;
        ssize_t k;
        int r;

        r = sh_validate_id_prefix(id, "container id", err);
        if (r < 0)
                return r;
        pthread_rwlock_rdlock(&v->lock);
        k = find_ctr(v, id);
        r = k >= 0 ? pod_container_info_copy(v->ctrs[k]->info, ret) : (int)k;
        if (r == 0 && ret_handler && !(handler = strdup(v->ctrs[k]->handler))) {
                *ret = pod_container_info_free(*ret);
                r = -ENOMEM;
        }
        pthread_rwlock_unlock(&v->lock);
        if (r == -EEXIST)
                return sh_err(err, -ENOENT, "container id prefix '%s' is ambiguous", id);
        if (r == -ENOENT)
                return sh_err(err, -ENOENT, "container '%s' not found", id);
        if (r == 0 && ret_handler)
                *ret_handler = handler;
        return r;
}

int pod_view_ctr_each(struct pod_mgr *pm, int (*fn)(const struct pod_container_info *i, void *data),
                      void *data)
{
        struct pod_view *v = pod_mgr_view(pm);
        int r = 0;

        pthread_rwlock_rdlock(&v->lock);
        for (size_t k = 0; k < v->n_ctrs && r >= 0; k++)
                r = fn(v->ctrs[k]->info, data);
        pthread_rwlock_unlock(&v->lock);
        return r < 0 ? r : 0;
}

char **pod_view_ctr_ids(struct pod_mgr *pm, const char *sandbox_id)
{
        struct pod_view *v = pod_mgr_view(pm);
        char **ids;
        size_t n = 0;

        pthread_rwlock_rdlock(&v->lock);
        ids = calloc(v->n_ctrs + 1, sizeof(*ids));
        for (size_t k = 0; ids && k < v->n_ctrs; k++) {
                if (sandbox_id && strcmp(v->ctrs[k]->info->sandbox_id, sandbox_id) != 0)
                        continue;
                if (!(ids[n] = strdup(v->ctrs[k]->info->id))) {
                        sh_strv_free(ids);
                        ids = NULL;
                        break;
                }
                n++;
        }
        pthread_rwlock_unlock(&v->lock);
        return ids;
}

void pod_view_counts(struct pod_mgr *pm, size_t ret_pods[3], size_t ret_ctrs[4])
{
        struct pod_view *v = pod_mgr_view(pm);

        memset(ret_pods, 0, 3 * sizeof(*ret_pods));
        memset(ret_ctrs, 0, 4 * sizeof(*ret_ctrs));
        pthread_rwlock_rdlock(&v->lock);
        for (size_t k = 0; k < v->n_sbs; k++)
                if ((unsigned)v->sbs[k]->info->state < 3)
                        ret_pods[v->sbs[k]->info->state]++;
        for (size_t k = 0; k < v->n_ctrs; k++)
                if ((unsigned)v->ctrs[k]->info->state < 4)
                        ret_ctrs[v->ctrs[k]->info->state]++;
        pthread_rwlock_unlock(&v->lock);
}

/* ---------------------------------------------------------------- the watcher */

/*
 * Asks the backend of @kind object @id for a watch fd and adds it to the epoll set. An
 * object already gone (-ESRCH) is observed at once; one whose backend has no watch op is
 * left alone (it changes only through runt's calls); any other failure falls back to
 * asking every WATCH_POLL_MS.
 */
void pod_view_watch(struct pod_mgr *pm, char kind, const char *id)
{
        struct pod_view *v = pod_mgr_view(pm);
        _cleanup_free_ char *handler = NULL;
        struct sh_error e = {0};
        struct be *be = NULL;
        int fd = -1, r;
        ssize_t k;

        pthread_rwlock_rdlock(&v->lock);
        if (kind == 'c') {
                k = find_ctr(v, id);
                if (k >= 0)
                        handler = strdup(v->ctrs[k]->handler);
        } else {
                k = find_sb(v, id);
                if (k >= 0)
                        handler = strdup(v->sbs[k]->info->spec.handler);
        }
        pthread_rwlock_unlock(&v->lock);
        if (k < 0 || !handler || pod_mgr_backend(pm, handler, &be, NULL) < 0)
                return;
        r = kind == 'c' ? be_container_watch(be, id, &fd, &e) : be_sandbox_watch(be, id, &fd, &e);
        if (r == -EOPNOTSUPP)
                return;
        pthread_rwlock_wrlock(&v->lock);
        k = kind == 'c' ? find_ctr(v, id) : find_sb(v, id);
        if (k >= 0 && r == 0) {
                int *wfd = kind == 'c' ? &v->ctrs[k]->wfd : &v->sbs[k]->wfd;
                unsigned long long *wseq = kind == 'c' ? &v->ctrs[k]->wseq : &v->sbs[k]->wseq;
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ++v->next_seq};

                unwatch(v, wfd, wseq);
                if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) {
                        *wfd = TAKE_FD(fd);
                        *wseq = ev.data.u64;
                } else {
                        r = -errno;
                }
        }
        /* No watch, or gone already (the look below may not tell): polled until a look sees
         * it end or watches it again. */
        if (k >= 0 && r < 0) {
                if (kind == 'c')
                        v->ctrs[k]->poll = true;
                else
                        v->sbs[k]->poll = true;
                sh_log_debug("%s=%.12s no watch (%s): asked every %d ms",
                             kind == 'c' ? "container" : "sandbox", id, e.msg[0] ? e.msg : "",
                             WATCH_POLL_MS);
        }
        pthread_rwlock_unlock(&v->lock);
        if (fd >= 0)
                close(fd);
        if (r == -ESRCH) {
                /* Gone already: one look (which must not arm a watch again, or a backend
                 * that keeps answering "running" for a process it cannot pin would loop). */
                if (kind == 'c')
                        pod_ctr_look(pm, id, false);
                else
                        pod_sb_look(pm, id, false);
        }
}

bool pod_view_unwatched(struct pod_mgr *pm, char kind, const char *id)
{
        struct pod_view *v = pod_mgr_view(pm);
        bool need = false;
        ssize_t k;

        pthread_rwlock_rdlock(&v->lock);
        if (kind == 'c') {
                k = find_ctr(v, id);
                need = k >= 0 && v->ctrs[k]->info->state == POD_CTR_RUNNING &&
                       v->ctrs[k]->wfd < 0 && !v->ctrs[k]->poll;
        } else {
                k = find_sb(v, id);
                need = k >= 0 && v->sbs[k]->info->state == POD_READY && v->sbs[k]->wfd < 0 &&
                       !v->sbs[k]->poll;
        }
        pthread_rwlock_unlock(&v->lock);
        return need;
}

void pod_view_poll(struct pod_mgr *pm, char kind, const char *id, bool poll)
{
        struct pod_view *v = pod_mgr_view(pm);
        ssize_t k;

        pthread_rwlock_wrlock(&v->lock);
        if (kind == 'c' && (k = find_ctr(v, id)) >= 0)
                v->ctrs[k]->poll = poll;
        else if (kind == 's' && (k = find_sb(v, id)) >= 0)
                v->sbs[k]->poll = poll;
        pthread_rwlock_unlock(&v->lock);
}

/* The ids of the objects asked for by polling, "c<id>" and "s<id>" (malloc'd). */
static char **polled(struct pod_view *v)
{
        char **ids;
        size_t n = 0;

        pthread_rwlock_rdlock(&v->lock);
        ids = calloc(v->n_sbs + v->n_ctrs + 1, sizeof(*ids));
        for (size_t k = 0; ids && k < v->n_ctrs; k++)
                if (v->ctrs[k]->poll && (ids[n] = sh_strdup_printf("c%s", v->ctrs[k]->info->id)))
                        n++;
        for (size_t k = 0; ids && k < v->n_sbs; k++)
                if (v->sbs[k]->poll && (ids[n] = sh_strdup_printf("s%s", v->sbs[k]->info->id)))
                        n++;
        pthread_rwlock_unlock(&v->lock);
        return ids;
}

static void *watcher(void *arg)
{
        struct pod_mgr *pm = arg;
        struct pod_view *v = pod_mgr_view(pm);
        unsigned long long next_poll = sh_now_ns() + WATCH_POLL_MS * 1000000ULL;

        for (;;) {
                struct epoll_event evs[32];
                unsigned long long now = sh_now_ns();
                int wait_ms = now >= next_poll ? 0 : (int)((next_poll - now) / 1000000ULL) + 1;
                int n = epoll_wait(v->epfd, evs, SH_ARRAY_SIZE(evs), wait_ms);

                if (n < 0) {
                        /* Not expected (EINTR aside); never give up watching for it. */
                        if (errno != EINTR) {
                                sh_log_debug("exit watcher: epoll_wait: %m");
                                usleep(100 * 1000);
                        }
                        n = 0;
                }
                for (int i = 0; i < n; i++) {
                        char kind = 0, id[65];

                        if (evs[i].data.u64 == 0)
                                return NULL; /* stop_fd */
                        pthread_rwlock_wrlock(&v->lock);
                        for (size_t k = 0; !kind && k < v->n_ctrs; k++)
                                if (v->ctrs[k]->wseq == evs[i].data.u64) {
                                        kind = 'c';
                                        snprintf(id, sizeof(id), "%s", v->ctrs[k]->info->id);
                                        unwatch(v, &v->ctrs[k]->wfd, &v->ctrs[k]->wseq);
                                }
                        for (size_t k = 0; !kind && k < v->n_sbs; k++)
                                if (v->sbs[k]->wseq == evs[i].data.u64) {
                                        kind = 's';
                                        snprintf(id, sizeof(id), "%s", v->sbs[k]->info->id);
                                        unwatch(v, &v->sbs[k]->wfd, &v->sbs[k]->wseq);
                                }
                        pthread_rwlock_unlock(&v->lock);
                        /* A look, and a new watch when it still runs (a look that could not
                         * tell leaves it to the polling). */
                        if (kind == 'c')
                                pod_ctr_look(pm, id, true);
                        else if (kind == 's')
                                pod_sb_look(pm, id, true);
                }
                if (sh_now_ns() >= next_poll) {
                        char **ids = polled(v);

                        for (size_t k = 0; ids && ids[k]; k++) {
                                if (ids[k][0] == 'c')
                                        pod_ctr_look(pm, ids[k] + 1, true);
                                else
                                        pod_sb_look(pm, ids[k] + 1, true);
                        }
                        sh_strv_free(ids);
                        next_poll = sh_now_ns() + WATCH_POLL_MS * 1000000ULL;
                }
        }
        return NULL;
}

int pod_view_new(struct pod_view **ret)
{
        struct pod_view *v = calloc(1, sizeof(*v));
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};

        if (!v)
                return -ENOMEM;
        pthread_rwlock_init(&v->lock, NULL);
        pthread_mutex_init(&v->emit_mu, NULL);
        v->epfd = epoll_create1(EPOLL_CLOEXEC);
        v->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (v->epfd < 0 || v->stop_fd < 0 ||
            epoll_ctl(v->epfd, EPOLL_CTL_ADD, v->stop_fd, &ev) < 0) {
                int r = -errno;

                pod_view_free(v);
                return r;
        }
        *ret = v;
        return 0;
}

int pod_view_start(struct pod_mgr *pm)
{
        struct pod_view *v = pod_mgr_view(pm);
        pthread_attr_t attr;
        int r;

        if (v->started)
                return 0;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 << 10);
        r = -pthread_create(&v->thread, &attr, watcher, pm);
        pthread_attr_destroy(&attr);
        if (r == 0)
                v->started = true;
        return r;
}

struct pod_view *pod_view_free(struct pod_view *v)
{
        if (!v)
                return NULL;
        if (v->started) {
                eventfd_write(v->stop_fd, 1);
                pthread_join(v->thread, NULL);
        }
        for (size_t k = 0; k < v->n_sbs; k++)
                sb_entry_free(v, v->sbs[k]);
        for (size_t k = 0; k < v->n_ctrs; k++)
                ctr_entry_free(v, v->ctrs[k]);
        free(v->sbs);
        free(v->ctrs);
        if (v->epfd >= 0)
                close(v->epfd);
        if (v->stop_fd >= 0)
                close(v->stop_fd);
        pthread_mutex_destroy(&v->emit_mu);
        pthread_rwlock_destroy(&v->lock);
        free(v);
        return NULL;
}

/* ---------------------------------------------------------------- loading */

int pod_view_load(struct pod_mgr *pm, struct sh_error *err)
{
        struct pod_view *v = pod_mgr_view(pm);
        struct pod_sandbox_info **sbs = NULL;
        struct pod_container_info **ctrs = NULL;
        char **handlers = NULL;
        size_t n_sbs = 0, n_ctrs = 0;
        int r;

        r = pod_db_sandboxes(pm, &sbs, &n_sbs, err);
        if (r == 0)
                r = pod_db_containers(pm, &ctrs, &handlers, &n_ctrs, err);
        if (r < 0) {
                pod_sandbox_info_list_free(sbs);
                return r;
        }
        /* Straight in, no events: these are what the store says. What changed follows. */
        pthread_rwlock_wrlock(&v->lock);
        for (size_t k = 0; k < n_sbs && r == 0; k++) {
                struct view_sb *e = calloc(1, sizeof(*e));

                if (!e) {
                        r = -ENOMEM;
                        break;
                }
                e->info = TAKE_PTR(sbs[k]);
                e->wfd = -1;
                r = sb_insert(v, e);
                if (r < 0)
                        sb_entry_free(v, e);
        }
        for (size_t k = 0; k < n_ctrs && r == 0; k++) {
                struct view_ctr *e = calloc(1, sizeof(*e));

                if (!e) {
                        r = -ENOMEM;
                        break;
                }
                e->info = TAKE_PTR(ctrs[k]);
                e->handler = TAKE_PTR(handlers[k]);
                e->wfd = -1;
                r = ctr_insert(v, e);
                if (r < 0)
                        ctr_entry_free(v, e);
        }
        pthread_rwlock_unlock(&v->lock);
        for (size_t k = 0; k < n_sbs; k++)
                pod_sandbox_info_free(sbs[k]);
        free(sbs);
        for (size_t k = 0; k < n_ctrs; k++) {
                pod_container_info_free(ctrs[k]);
                free(handlers[k]);
        }
        free(ctrs);
        free(handlers);
        if (r < 0)
                return sh_err(err, r, "load the state into memory: %s", strerror(-r));
        return 0;
}

int pod_view_resume(struct pod_mgr *pm, struct sh_error *err)
{
        struct pod_view *v = pod_mgr_view(pm);
        _cleanup_strv_ char **ids = NULL;
        _cleanup_strv_ char **sb_ids = NULL;
        size_t ns = 0;
        int r;

        r = pod_view_start(pm);
        if (r < 0)
                return sh_err(err, r, "start the exit watcher: %s", strerror(-r));
        /*
         * Sandboxes: a watch, then a look. Containers: a look, then a watch for those still
         * running. Either way an end between the two is caught: a pidfd of a process that
         * ended is readable at once, and one that cannot be made is a look again.
         */
        pthread_rwlock_wrlock(&v->lock);
        sb_ids = calloc(v->n_sbs + 1, sizeof(char *));
        for (size_t k = 0; sb_ids && k < v->n_sbs; k++) {
                struct view_sb *e = v->sbs[k];
                struct be *be = NULL;

                /* A pod that may return is asked again (its backend says "running" for no
                 * pod it stopped). */
                if (e->info->state == POD_NOTREADY &&
                    pod_mgr_backend(pm, e->info->spec.handler, &be, NULL) == 0 &&
                    (be->ops->caps & BE_CAP_SB_RETURNS))
                        e->lost = e->poll = true;
                if (e->info->state == POD_READY && (sb_ids[ns] = strdup(e->info->id)))
                        ns++;
        }
        pthread_rwlock_unlock(&v->lock);
        for (size_t k = 0; sb_ids && k < ns; k++) {
                pod_view_watch(pm, 's', sb_ids[k]);
                pod_sb_look(pm, sb_ids[k], true);
        }
        ids = pod_view_ctr_ids(pm, NULL);
        for (size_t k = 0; ids && ids[k]; k++)
                pod_ctr_look(pm, ids[k], true); /* and a watch while it runs */
        return 0;
}
