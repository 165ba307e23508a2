/*
 * The container event hub (events.h) and the pod manager's event sink that feeds it.
 *
 * One mutex (struct cri_events.lock) guards the subscriber list, every subscriber's queue and
 * state, and the backlog. Nothing under it allocates, frees an event's bytes only when the
 * last reference goes (a free()), or calls out: wakes run after it is released.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SH_LOG_MODULE "events"
#include "cri-internal.h"
#include "events.h"
#include "log.h"
#include "podmgr.h"

/* A fixed-size FIFO of event references. */
struct ring {
        struct cri_event **v;
        size_t cap, head, n;
};

enum sub_state {
        SUB_IDLE, /* nothing to do; the hub wakes it */
        SUB_BUSY, /* its driver is at work (or about to be woken) */
        SUB_DONE, /* ended; out of the hub */
};

struct cri_sub {
        struct cri_events *hub;
        struct cri_sub *prev, *next; /* in hub->subs while not done */
        struct cri_sub *wake_next;   /* in a publisher's wake list (only while it is busy) */
        bool linked;                 /* in hub->subs */
        struct ring q;
        enum sub_state state;
        enum cri_sub_result end; /* set: the final answer cri_sub_next gives; else EVENT */
        cri_sub_wake_fn wake;
        void *data;
};

struct cri_events {
        pthread_mutex_t lock;
        size_t queue_max;
        struct cri_sub *subs; /* subscribers not done */
        size_t n_subs;
        struct ring backlog; /* events no subscriber was there for */
        unsigned long lost;  /* backlog events that gave way to newer ones, since logged */
        bool shutdown;
};

struct cri_event *cri_event_new(size_t len)
{
        struct cri_event *e = malloc(sizeof(*e) + len);

        if (!e)
                return NULL;
        atomic_init(&e->refs, 1);
        e->len = len;
        return e;
}

struct cri_event *cri_event_ref(struct cri_event *e)
{
        if (e)
                atomic_fetch_add(&e->refs, 1);
        return e;
}

struct cri_event *cri_event_unref(struct cri_event *e)
{
        if (e && atomic_fetch_sub(&e->refs, 1) == 1)
                free(e);
        return NULL;
}

static int ring_init(struct ring *r, size_t cap)
{
        r->v = calloc(cap, sizeof(*r->v));
        r->cap = cap;
        r->head = r->n = 0;
        return r->v ? 0 : -ENOMEM;
}

static bool ring_push(struct ring *r, struct cri_event *e)
{
        if (r->n == r->cap)
                return false;
        r->v[(r->head + r->n++) % r->cap] = e;
        return true;
}

static struct cri_event *ring_pop(struct ring *r)
{
        struct cri_event *e;

        if (!r->n)
                return NULL;
        e = r->v[r->head];
        r->v[r->head] = NULL;
        r->head = (r->head + 1) % r->cap;
        r->n--;
        return e;
}

static void ring_clear(struct ring *r)
{
        while (r->n)
                cri_event_unref(ring_pop(r));
}

struct cri_events *cri_events_new(size_t queue_max)
{
        struct cri_events *h = calloc(1, sizeof(*h));

        if (!h)
                return NULL;
        h->queue_max = queue_max ? queue_max : 1;
        if (ring_init(&h->backlog, h->queue_max) < 0) {
                free(h);
                return NULL;
        }
        pthread_mutex_init(&h->lock, NULL);
        return h;
}

void cri_events_free(struct cri_events *h)
{
        if (!h)
                return;
        ring_clear(&h->backlog);
        free(h->backlog.v);
        pthread_mutex_destroy(&h->lock);
        free(h);
}

/* Takes @s out of the hub (if in) and drops its queue. Under the lock. */
static void sub_unlink(struct cri_sub *s)
{
        struct cri_events *h = s->hub;

        ring_clear(&s->q);
        if (!s->linked)
                return;
        if (s->prev)
                s->prev->next = s->next;
        else
                h->subs = s->next;
        if (s->next)
                s->next->prev = s->prev;
        s->prev = s->next = NULL;
        s->linked = false;
        h->n_subs--;
}

/*
 * Gives @s its final answer @end (the first one given stays), takes it out of the hub and,
 * if idle, makes it busy and puts it on @wake for the caller to wake after unlocking. Under
 * the lock.
 */
static void sub_end(struct cri_sub *s, enum cri_sub_result end, struct cri_sub **wake)
{
        if (s->end == CRI_SUB_EVENT)
                s->end = end;
        sub_unlink(s);
        if (s->state == SUB_IDLE) {
                s->state = SUB_BUSY;
                s->wake_next = *wake;
                *wake = s;
        }
}

/* Wakes every subscriber on @wake. No lock held: a wake may start a send at once. */
static void wake_all(struct cri_sub *wake)
{
        while (wake) {
                /* Read all of it first: once woken, its driver may free it. */
                struct cri_sub *next = wake->wake_next;
                cri_sub_wake_fn fn = wake->wake;
                void *data = wake->data;

                wake->wake_next = NULL;
                fn(data);
                wake = next;
        }
}

void cri_events_publish(struct cri_events *h, struct cri_event *e)
{
        struct cri_sub *wake = NULL, *next;
        bool first_loss = false;

        if (!h || !e) {
                cri_event_unref(e);
                return;
        }
        pthread_mutex_lock(&h->lock);
        if (!h->subs) {
                if (!ring_push(&h->backlog, e)) {
                        /* Full: the oldest gives way (events carry whole snapshots, so the
                         * newest say most about the pods as they are now). */
                        cri_event_unref(ring_pop(&h->backlog));
                        ring_push(&h->backlog, e);
                        first_loss = h->lost++ == 0;
                }
                pthread_mutex_unlock(&h->lock);
                if (first_loss)
                        sh_log_warn("event backlog full (server.events_queue=%zu) and no "
                                    "subscriber: the oldest events give way",
                                    h->queue_max);
                return;
        }
        for (struct cri_sub *s = h->subs; s; s = next) {
                next = s->next;
                if (ring_push(&s->q, e)) {
                        cri_event_ref(e);
                        if (s->state == SUB_IDLE) {
                                s->state = SUB_BUSY;
                                s->wake_next = wake;
                                wake = s;
                        }
                } else {
                        /* It fell queue_max events behind: out of the hub at once, so a
                         * client that stopped reading costs nothing more. */
                        sub_end(s, CRI_SUB_DROPPED, &wake);
                }
        }
        pthread_mutex_unlock(&h->lock);
        cri_event_unref(e);
        wake_all(wake);
}

void cri_events_shutdown(struct cri_events *h)
{
        struct cri_sub *wake = NULL;

        if (!h)
                return;
        pthread_mutex_lock(&h->lock);
        h->shutdown = true;
        while (h->subs)
                sub_end(h->subs, CRI_SUB_SHUTDOWN, &wake);
        pthread_mutex_unlock(&h->lock);
        wake_all(wake);
}

int cri_events_subscribe(struct cri_events *h, cri_sub_wake_fn wake, void *data,
                         struct cri_sub **ret)
{
        struct cri_sub *s = calloc(1, sizeof(*s));
        unsigned long lost;
        size_t backlog;

        if (!s || ring_init(&s->q, h->queue_max) < 0) {
                free(s);
                return -ENOMEM;
        }
        s->hub = h;
        s->wake = wake;
        s->data = data;
        s->state = SUB_BUSY;
        s->end = CRI_SUB_EVENT;
        pthread_mutex_lock(&h->lock);
        if (h->shutdown) {
                pthread_mutex_unlock(&h->lock);
                free(s->q.v);
                free(s);
                return -ESHUTDOWN;
        }
        /* The first subscriber takes the backlog (same bound: it fits), then it is empty. */
        backlog = h->backlog.n;
        lost = h->lost;
        h->lost = 0;
        while (h->backlog.n)
                ring_push(&s->q, ring_pop(&h->backlog));
        s->next = h->subs;
        if (h->subs)
                h->subs->prev = s;
        h->subs = s;
        s->linked = true;
        h->n_subs++;
        pthread_mutex_unlock(&h->lock);
        if (backlog)
                sh_log_info("events=%zu lost=%lu backlog handed to a new subscriber", backlog,
                            lost);
        *ret = s;
        return 0;
}

enum cri_sub_result cri_sub_next(struct cri_sub *s, struct cri_event **ret_event)
{
        enum cri_sub_result r;

        pthread_mutex_lock(&s->hub->lock);
        if (s->end != CRI_SUB_EVENT) {
                r = s->end;
                s->state = SUB_DONE;
                sub_unlink(s);
        } else if (s->q.n) {
                *ret_event = ring_pop(&s->q);
                r = CRI_SUB_EVENT;
        } else {
                s->state = SUB_IDLE;
                r = CRI_SUB_IDLE;
        }
        pthread_mutex_unlock(&s->hub->lock);
        return r;
}

int cri_sub_close(struct cri_sub *s)
{
        int mine = 0;

        if (!s)
                return 0;
        pthread_mutex_lock(&s->hub->lock);
        if (s->state == SUB_IDLE) {
                s->state = SUB_DONE;
                mine = 1;
        } else if (s->state == SUB_BUSY && s->end == CRI_SUB_EVENT) {
                s->end = CRI_SUB_CLOSED;
        }
        sub_unlink(s);
        pthread_mutex_unlock(&s->hub->lock);
        return mine;
}

void cri_sub_finish(struct cri_sub *s)
{
        pthread_mutex_lock(&s->hub->lock);
        s->state = SUB_DONE;
        sub_unlink(s);
        pthread_mutex_unlock(&s->hub->lock);
}

size_t cri_sub_queue_max(const struct cri_sub *s)
{
        return s->q.cap;
}

void cri_sub_free(struct cri_sub *s)
{
        if (!s)
                return;
        ring_clear(&s->q);
        free(s->q.v);
        free(s);
}

void cri_events_counts(struct cri_events *h, size_t *ret_subs, size_t *ret_backlog)
{
        pthread_mutex_lock(&h->lock);
        *ret_subs = h->n_subs;
        *ret_backlog = h->backlog.n;
        pthread_mutex_unlock(&h->lock);
}

/* ------------------------------------------------------------------ the pod manager's sink */

#define NEW(type, lower) ((type *)cri_msg_new(&runtime__v1__##lower##__descriptor))

/*
 * A ContainerEventResponse of @ev, packed; NULL on ENOMEM. The statuses are built by the
 * code that answers PodSandboxStatus and ContainerStatus, so an event and a status call
 * never disagree on what they say.
 */
static struct cri_event *pack_event(struct cri_ctx *ctx, const struct pod_event *ev)
{
        Runtime__V1__ContainerEventResponse *m =
                NEW(Runtime__V1__ContainerEventResponse, container_event_response);
        struct cri_event *e = NULL;
        bool ok;

        if (!m)
                return NULL;
        m->container_id = cri_strdup(ev->id);
        m->container_event_type = (Runtime__V1__ContainerEventType)ev->kind;
        m->created_at = ev->at_ns;
        ok = m->container_id != NULL;
        if (ok && ev->sandbox)
                ok = (m->pod_sandbox_status = cri_sandbox_status_msg(ev->sandbox)) != NULL;
        if (ok && ev->n_containers) {
                m->containers_statuses = cri_array_new(ev->n_containers);
                ok = m->containers_statuses != NULL;
        }
        for (size_t i = 0; ok && i < ev->n_containers; i++) {
                Runtime__V1__ContainerStatus *st = cri_container_status_msg(ctx, ev->containers[i]);

                ok = st != NULL;
                if (ok)
                        m->containers_statuses[m->n_containers_statuses++] = st;
        }
        if (ok)
                e = cri_event_new(protobuf_c_message_get_packed_size(&m->base));
        if (e)
                protobuf_c_message_pack(&m->base, e->data);
        protobuf_c_message_free_unpacked(&m->base, NULL);
        return e;
}

void cri_events_sink(void *data, const struct pod_event *ev)
{
        struct cri_ctx *ctx = data;
        struct cri_event *e;

        if (!ctx->events)
                return;
        e = pack_event(ctx, ev);
        if (!e) {
                sh_log_warn("id=%s kind=%d event lost: out of memory", ev->id, (int)ev->kind);
                return;
        }
        cri_events_publish(ctx->events, e);
}
