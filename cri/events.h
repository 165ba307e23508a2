#pragma once

/*
 * The container event hub behind GetContainerEvents (events.c). No gRPC here: the server
 * (server.c) drives each subscriber's stream, the hub only queues, so its queue, backlog
 * and drop rules are unit-tested without a socket (test/unit/cri/test_events.c).
 *
 * An event is packed once (a ContainerEventResponse) and its bytes are shared, refcounted,
 * by every subscriber that queues it. Each subscriber has a bounded queue of @queue_max
 * events; one that would queue more is dropped (its stream ends RESOURCE_EXHAUSTED), so a
 * client that stops reading costs at most @queue_max references. Events published while
 * nobody subscribes go to a backlog of the same bound (the oldest give way) that the next
 * subscriber receives first; then it is empty. Publishing never blocks and never waits for
 * a subscriber: it takes the hub's lock for the time of a few pointer moves per subscriber.
 *
 * A subscriber is driven by one party at a time (its "driver", the server): the hub calls
 * its wake function when it has something (an event, its drop, the end) and it was idle;
 * from then on the driver calls cri_sub_next() until that answers CRI_SUB_IDLE, and the hub
 * will not wake it again meanwhile. Thus one message is in flight per subscriber.
 */
#include <stdatomic.h>
#include <stddef.h>

/* One packed event: @len bytes at @data. Refcounted; any thread. */
struct cri_event {
        atomic_uint refs;
        size_t len;
        unsigned char data[];
};

/* A new event of @len bytes (uninitialised, for the caller to pack into), one reference. */
struct cri_event *cri_event_new(size_t len);
struct cri_event *cri_event_ref(struct cri_event *e);
/* Drops a reference; the last frees. NULL-safe; returns NULL. */
struct cri_event *cri_event_unref(struct cri_event *e);

struct cri_events;
struct cri_sub;

/* A hub whose queues and backlog hold at most @queue_max (>= 1) events; NULL on ENOMEM. */
struct cri_events *cri_events_new(size_t queue_max);
/* Frees @h and its backlog. Every subscriber must be done (cri_sub_free'd) first. NULL-safe. */
void cri_events_free(struct cri_events *h);

/*
 * Queues @e (its reference is taken) for every subscriber, or in the backlog when there is
 * none. A subscriber whose queue is full is dropped and woken. Never blocks; any thread.
 */
void cri_events_publish(struct cri_events *h, struct cri_event *e);

/*
 * Ends every subscriber (cri_sub_next answers CRI_SUB_SHUTDOWN) and refuses new ones
 * (-ESHUTDOWN). Publishing goes on into the backlog. Any thread.
 */
void cri_events_shutdown(struct cri_events *h);

/* Called when an idle subscriber has something; the driver then calls cri_sub_next. */
typedef void (*cri_sub_wake_fn)(void *data);

/*
 * A new subscriber, holding the backlog if it is the only one. It starts busy: the caller
 * is its driver and calls cri_sub_next() at once. -ENOMEM, -ESHUTDOWN.
 * @wake runs on a publisher's thread with no hub lock held, never concurrently with itself.
 */
int cri_events_subscribe(struct cri_events *h, cri_sub_wake_fn wake, void *data,
                         struct cri_sub **ret);

enum cri_sub_result {
        CRI_SUB_EVENT,    /* *@ret_event is the next event (a reference for the caller) */
        CRI_SUB_IDLE,     /* nothing queued: the driver stops, a wake will come */
        CRI_SUB_DROPPED,  /* the queue overflowed: end the stream (RESOURCE_EXHAUSTED) */
        CRI_SUB_CLOSED,   /* cri_sub_close came while busy: the client is gone */
        CRI_SUB_SHUTDOWN, /* cri_events_shutdown: end the stream */
};

/*
 * The driver's next step. Only the driver calls it (after subscribe, a wake or a
 * completed send). Every answer but EVENT and IDLE is final: the subscriber is done.
 */
enum cri_sub_result cri_sub_next(struct cri_sub *s, struct cri_event **ret_event);

/*
 * The client is gone: @s leaves the hub and drops its queue. Returns 1 if @s was idle (the
 * caller is now its driver and ends the stream), else 0 (busy: its driver learns it from
 * cri_sub_next; or done already). Any thread; idempotent.
 */
int cri_sub_close(struct cri_sub *s);

/* The driver ends @s early (a send failed): it leaves the hub, its queue is dropped. */
void cri_sub_finish(struct cri_sub *s);

/* The bound @s overflowed, for the message that ends its stream. */
size_t cri_sub_queue_max(const struct cri_sub *s);

/* Frees a done subscriber (after a final cri_sub_next, cri_sub_finish or a close that
 * returned 1). NULL-safe. */
void cri_sub_free(struct cri_sub *s);

/* Subscribers now, and events now in the backlog: for tests and logs. */
void cri_events_counts(struct cri_events *h, size_t *ret_subs, size_t *ret_backlog);
