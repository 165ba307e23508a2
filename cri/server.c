/*
 * The gRPC server on the grpc C core.
 *
 * One notification completion queue carries everything: new calls, each call's batches and
 * the shutdown tag. A call is a small state machine driven from that queue, so no thread
 * ever waits on a slow client: a client that sends headers and never its message holds
 * only its own call struct.
 *
 * Where a handler runs (issue 14): quick handlers (Version, Status, RuntimeConfig and the
 * UNIMPLEMENTED answers) never block and run on the queue thread. The reads the kubelet
 * polls (List*, *Status, *Stats, ImageFsInfo) go to the read lane, the rest (everything
 * that may wait on a container, a helper or the network) to the slow lane. A lane is a
 * fixed set of worker threads and a FIFO; a call that would put more than workers +
 * max_queued calls into a lane is answered RESOURCE_EXHAUSTED at once. A queued call holds
 * no thread and no fd (its cancel eventfd is made when a worker takes it), so a burst costs
 * memory only up to the limit. Reads never wait behind slow calls: their lane has its own
 * workers. See notes/grpc-c-core.md for the facts this rests on (the trailers-only hang in
 * 1.51, message limits, shutdown order).
 *
 * runtd accepts the unix connections itself (accept_loop) and hands each to grpc, so that a
 * call's caller can be told from SO_PEERCRED for the audit log (peer_of).
 */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#define SH_LOG_MODULE "cri"
#include "audit.h"
#include "cleanup.h"
#include "cri-internal.h"
#include "events.h"
#include "log.h"
#include "strutil.h"

/* Calls the server keeps requested at once; more arrive as each one is taken. */
#define CRI_SLOTS 16
/* After shutdown, how long in-flight handlers get before the process leaves anyway. */
#define CRI_DRAIN_MS 700
/* Calls a lane answers between two malloc_trim()s, at least: a trim after a burst only. */
#define CRI_TRIM_AFTER 64
/*
 * An answer this big (ListPodSandbox or the stats of hundreds of pods) leaves megabytes of
 * freed blocks in the worker's arena: its lane trims once idle, whatever the count (issue
 * 15: each is a kubelet poll, a second or more apart, and a trim costs well under 1 ms).
 */
#define CRI_TRIM_BIG (64 << 10)

enum cri_tag_kind {
        TAG_NEW,   /* grpc_server_request_call completed */
        TAG_RECV,  /* initial metadata sent + request message received */
        TAG_DONE,  /* response and status sent: the call is finished */
        TAG_CLOSE, /* the call closed: finished, or the client went away */
        TAG_SEND,  /* one message of a server stream went out (or failed) */
};

struct cri_call;

struct cri_tag {
        enum cri_tag_kind kind;
        struct cri_call *call;
};

struct cri_call {
        struct cri_server *srv;
        grpc_call *call;
        grpc_call_details details;
        grpc_metadata_array md;
        grpc_byte_buffer *recv;
        grpc_byte_buffer *send;
        grpc_slice status_msg;
        int cancelled;    /* set when TAG_CLOSE comes: the client went away */
        atomic_bool gone; /* TAG_CLOSE came with cancelled (set on the queue thread) */
        /* eventfd made readable on gone, for a cancellable handler; or -1. Made by the worker
         * that runs the call; gone and this are both atomic, so that of the worker storing
         * it and the queue thread setting gone, at least one sees the other and writes. */
        atomic_int cancel_fd;
        atomic_int refs; /* one for the request/response flow, one while the close batch runs */
        struct cri_call *next; /* in its lane's queue; under the lane's lock */
        const struct cri_method *method;
        ProtobufCMessage *req;
        long long t_start_ns;
        bool audited;         /* a mutating call, and the audit log is on */
        struct cri_peer peer; /* who called, for the audit log (audited calls only) */
        struct cri_tag t_new, t_recv, t_done, t_close;
        /* Server streams (see "Server streams" below); one message in flight at a time. */
        const struct cri_method *run; /* whose handler serves it: method, or its List form */
        struct cri_list_send *list;   /* a Stream* call: the List answer being sent */
        struct cri_sub *sub;          /* GetContainerEvents: its subscription */
        grpc_byte_buffer *msg;        /* the stream message in flight */
        struct cri_tag t_send;
};

/*
 * A fixed set of worker threads and the FIFO they take calls from. @lock protects every
 * field below it; the threads are started in cri_server_new and joined in cri_server_free.
 */
struct cri_lane {
        const char *name; /* "slow", "read": for messages */
        struct cri_server *srv;
        pthread_t *threads;
        unsigned n_threads;  /* started */
        unsigned workers;    /* wanted */
        unsigned max_queued; /* admission: at most workers + max_queued calls in the lane */
        bool trim;           /* malloc_trim() when the lane goes idle after a burst */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct cri_call *head, *tail;
        unsigned queued;
        unsigned running;
        unsigned long since_trim; /* calls answered since the last trim */
        unsigned long rejected;   /* refused since the lane last had room, for the log */
        bool stop;                /* workers leave once the queue is empty */
};

struct cri_server {
        struct cri_ctx *ctx;
        struct cri_lane slow, read, walk;
        grpc_server *server;
        grpc_completion_queue *cq;
        char *socket_path;
        /* The listening socket and its accept thread (accept_loop). accept_mtx orders the
         * thread's start (cri_server_run) against its stop (cri_server_stop). */
        int listen_fd;
        dev_t sock_dev; /* the socket file bound, to remove it only if still that one */
        ino_t sock_ino;
        int accept_stop;                /* eventfd: the accept thread leaves */
        grpc_server_credentials *creds; /* what each accepted connection is added with */
        pthread_mutex_t accept_mtx;
        pthread_t accept_tid;
        bool accepting;   /* the thread runs (under accept_mtx) */
        bool accept_done; /* stopped for good: no thread starts any more (under accept_mtx) */
        int shutdown_tag; /* its address is the tag */
        atomic_bool stop_requested;
        atomic_int active;              /* calls requested or in flight, handler threads included */
        void (*on_serving)(void *data); /* once the server accepts calls (READY=1) */
        void *on_serving_data;
};

static void stream_done(struct cri_call *c);

static void call_free(struct cri_call *c)
{
        if (!c)
                return;
        if (c->req)
                protobuf_c_message_free_unpacked(c->req, NULL);
        if (c->recv)
                grpc_byte_buffer_destroy(c->recv);
        if (c->send)
                grpc_byte_buffer_destroy(c->send);
        stream_done(c);
        grpc_slice_unref(c->status_msg);
        if (c->call)
                grpc_call_unref(c->call);
        grpc_call_details_destroy(&c->details);
        grpc_metadata_array_destroy(&c->md);
        if (atomic_load(&c->cancel_fd) >= 0)
                close(atomic_load(&c->cancel_fd));
        atomic_fetch_sub(&c->srv->active, 1);
        free(c);
}

/* Drops a reference of @c; the last one frees it. Any thread. */
static void call_unref(struct cri_call *c)
{
        if (c && atomic_fetch_sub(&c->refs, 1) == 1)
                call_free(c);
}

static int post_slot(struct cri_server *s)
{
        struct cri_call *c = calloc(1, sizeof(*c));
        grpc_call_error e;

        if (!c)
                return -ENOMEM;
        c->srv = s;
        atomic_init(&c->cancel_fd, -1);
        atomic_init(&c->gone, false);
        atomic_init(&c->refs, 1);
        c->status_msg = grpc_empty_slice();
        c->t_new = (struct cri_tag){TAG_NEW, c};
        c->t_recv = (struct cri_tag){TAG_RECV, c};
        c->t_done = (struct cri_tag){TAG_DONE, c};
        c->t_close = (struct cri_tag){TAG_CLOSE, c};
        c->t_send = (struct cri_tag){TAG_SEND, c};
        grpc_call_details_init(&c->details);
        grpc_metadata_array_init(&c->md);
        atomic_fetch_add(&s->active, 1);
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq,
                                     &c->t_new);
        if (e != GRPC_CALL_OK) {
                call_unref(c);
                return -EIO;
        }
        return 0;
}

/*
 * Sends the response (if @resp) and the status. The call is released when TAG_DONE comes
 * back. Initial metadata went out with the receive batch, so this never produces a
 * trailers-only response (which 1.51 fails to flush).
 */
static size_t call_finish(struct cri_call *c, grpc_status_code code, const char *msg,
                          const ProtobufCMessage *resp)
{
        grpc_op ops[2];
        size_t n = 0, len = 0;

        cri_metrics_rpc(c->srv->ctx->metrics, c->method, code,
                        sh_now_ns() - (unsigned long long)c->t_start_ns);
        /* Before the answer goes: a client that has its answer finds its line written. */
        if (c->audited)
                cri_audit_call(c->srv->ctx->audit, c->method, &c->peer, c->req,
                               code == GRPC_STATUS_OK ? resp : NULL, code, msg,
                               (long long)(sh_now_ns() - (unsigned long long)c->t_start_ns));
        memset(ops, 0, sizeof(ops));
        if (resp && code == GRPC_STATUS_OK) {
                grpc_slice sl;

                len = protobuf_c_message_get_packed_size(resp);
                sl = grpc_slice_malloc(len);

                protobuf_c_message_pack(resp, GRPC_SLICE_START_PTR(sl));
                c->send = grpc_raw_byte_buffer_create(&sl, 1);
                grpc_slice_unref(sl);
                ops[n].op = GRPC_OP_SEND_MESSAGE;
                ops[n].data.send_message.send_message = c->send;
                n++;
        }
        grpc_slice_unref(c->status_msg);
        c->status_msg = grpc_slice_from_copied_string(msg ? msg : "");
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = code;
        ops[n].data.send_status_from_server.status_details = &c->status_msg;
        n++;
        if (grpc_call_start_batch(c->call, ops, n, &c->t_done, NULL) != GRPC_CALL_OK) {
                sh_log_error("rpc=%s could not send the response",
                             c->method ? c->method->name : "?");
                call_unref(c);
        }
        return len;
}

static void log_failure(struct cri_call *c, grpc_status_code code, const char *msg)
{
        char *path = grpc_slice_to_c_string(c->details.method);
        long long us = (long long)(sh_now_ns() - (unsigned long long)c->t_start_ns) / 1000;

        /* NOT_FOUND is routine for the kubelet (status of a removed pod); keep it quiet. */
        if (code == GRPC_STATUS_NOT_FOUND || code == GRPC_STATUS_UNIMPLEMENTED)
                sh_log_debug("rpc=%s code=%s us=%lld msg=\"%s\"", path, cri_status_name(code), us,
                             msg);
        else
                sh_log_warn("rpc=%s code=%s us=%lld msg=\"%s\"", path, cri_status_name(code), us,
                            msg);
        gpr_free(path);
}

/* ------------------------------------------------------------------ server streams */

/*
 * A server stream has one message in flight at a time: the next is started from the
 * completion queue when the previous one completed (TAG_SEND), so a client that reads slowly
 * holds no thread, only its call and what waits for it. A failed send means the client is
 * gone (or the server is going): the call is released, and what it held with it.
 *
 * Stream* (cri-api v0.36): the List form's handler ran in its lane; its answer's repeated
 * field goes out in messages of at most CRI_STREAM_CHUNK_ITEMS items and
 * CRI_STREAM_CHUNK_BYTES bytes, then status OK. An empty result sends no message, only the
 * OK: a client gathers items until the end of the stream (KEP-5825), and zero messages are
 * zero items, as when containerd and CRI-O loop over an empty list.
 *
 * GetContainerEvents: a subscriber of the event hub (events.h), which it drives: the hub
 * wakes it (on a publisher's thread) when an event comes while it is idle; each completed
 * send asks the hub for the next. While idle the call's flow reference is parked in the
 * hub; whoever takes the subscriber out of idle (a wake, or TAG_CLOSE through
 * cri_sub_close) holds it.
 */
struct cri_list_send {
        ProtobufCMessage *resp;   /* the List answer, owned */
        ProtobufCMessage **items; /* its repeated field, borrowed */
        const uint8_t **raw;      /* or its items packed already (cri_packed): each item's */
        size_t *raw_len;          /* bytes and length, borrowed from resp's unknown field */
        size_t n, next;           /* how many; the first not sent yet */
        uint32_t key;             /* field key of the Stream response's repeated field */
        size_t sizes[CRI_STREAM_CHUNK_ITEMS]; /* packed sizes of the chunk being built */
};

static void on_sent(struct cri_call *c, int success);

static size_t varint_len(uint64_t v)
{
        size_t n = 1;

        for (; v >= 0x80; v >>= 7)
                n++;
        return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
        for (; v >= 0x80; v >>= 7)
                *p++ = (uint8_t)(v | 0x80);
        *p++ = (uint8_t)v;
        return p;
}

/* The repeated message field of @d: a List answer's or a Stream response's only field. */
static const ProtobufCFieldDescriptor *repeated_field(const ProtobufCMessageDescriptor *d)
{
        for (unsigned i = 0; i < d->n_fields; i++)
                if (d->fields[i].label == PROTOBUF_C_LABEL_REPEATED &&
                    d->fields[i].type == PROTOBUF_C_TYPE_MESSAGE)
                        return &d->fields[i];
        return NULL;
}

/* Frees what a stream holds: its List answer, its subscription, a message. Any thread. */
static void stream_done(struct cri_call *c)
{
        if (c->list) {
                protobuf_c_message_free_unpacked(c->list->resp, NULL);
                free(c->list->raw);
                free(c->list->raw_len);
                free(c->list);
                c->list = NULL;
        }
        cri_sub_free(c->sub);
        c->sub = NULL;
        if (c->msg) {
                grpc_byte_buffer_destroy(c->msg);
                c->msg = NULL;
        }
}

/* The stream cannot go on and nobody can be told: out of the hub, and the flow ends. */
static void stream_abort(struct cri_call *c)
{
        if (c->sub)
                cri_sub_finish(c->sub);
        call_unref(c);
}

/* Starts sending c->msg. Once started, @c may be gone when this returns: no use after. */
static void stream_send(struct cri_call *c)
{
        grpc_op op;

        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = c->msg;
        if (grpc_call_start_batch(c->call, &op, 1, &c->t_send, NULL) != GRPC_CALL_OK) {
                sh_log_error("rpc=%s could not send a stream message", c->method->name);
                stream_abort(c);
        }
}

/* Packs and sends the next chunk of a Stream* call's items, or ends it with OK. */
static void list_send_next(struct cri_call *c)
{
        struct cri_list_send *ls = c->list;
        size_t end = ls->next, total = 0;
        char msg[200];
        grpc_slice sl;
        uint8_t *p;

        if (ls->next == ls->n) {
                stream_done(c); /* give the memory back before the status goes */
                call_finish(c, GRPC_STATUS_OK, NULL, NULL);
                return;
        }
        for (; end < ls->n && end - ls->next < CRI_STREAM_CHUNK_ITEMS; end++) {
                size_t sz = ls->raw ? ls->raw_len[end]
                                    : protobuf_c_message_get_packed_size(ls->items[end]);
                size_t rec = varint_len(ls->key) + varint_len(sz) + sz;

                if (end > ls->next && total + rec > CRI_STREAM_CHUNK_BYTES)
                        break;
                ls->sizes[end - ls->next] = sz;
                total += rec;
        }
        if (total > CRI_MAX_MESSAGE) { /* one item alone, over the limit */
                snprintf(msg, sizeof(msg), "%s: item %zu is %zu bytes, over the %d-byte limit",
                         c->method->name, ls->next, total, CRI_MAX_MESSAGE);
                log_failure(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
                stream_done(c);
                call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, NULL);
                return;
        }
        sl = grpc_slice_malloc(total);
        p = GRPC_SLICE_START_PTR(sl);
        for (size_t k = ls->next; k < end; k++) {
                p = put_varint(p, ls->key);
                p = put_varint(p, ls->sizes[k - ls->next]);
                if (ls->raw) {
                        memcpy(p, ls->raw[k], ls->raw_len[k]);
                        p += ls->raw_len[k];
                } else {
                        p += protobuf_c_message_pack(ls->items[k], p);
                }
        }
        ls->next = end;
        c->msg = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        stream_send(c);
}

/* Reads a varint at *@p (below @end); false when it runs past. */
static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
        uint64_t v = 0;

        for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
                uint8_t b = *(*p)++;

                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = v;
                        return true;
                }
        }
        return false;
}

/*
 * The items of a List answer packed already (cri_packed: one unknown field of the repeated
 * field's number, its first item without a key): where each one is. 0, -EINVAL when
 * @resp is not one, -ENOMEM.
 */
static int packed_items(struct cri_list_send *ls, const ProtobufCMessage *resp, unsigned field)
{
        const ProtobufCMessageUnknownField *f = resp->unknown_fields;
        const uint8_t *p, *end;
        size_t cap = 0;

        if (resp->n_unknown_fields != 1 || f->tag != field ||
            f->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
                return -EINVAL;
        for (p = f->data, end = f->data + f->len; p < end; ls->n++) {
                uint64_t key, len;

                if ((ls->n && (!get_varint(&p, end, &key) || key >> 3 != field ||
                               (key & 7) != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)) ||
                    !get_varint(&p, end, &len) || len > (uint64_t)(end - p))
                        return -EINVAL;
                if (ls->n == cap) {
                        size_t ncap = cap ? cap * 2 : 64;
                        const uint8_t **r = realloc(ls->raw, ncap * sizeof(*r));
                        size_t *l = r ? realloc(ls->raw_len, ncap * sizeof(*l)) : NULL;

                        if (r)
                                ls->raw = r;
                        if (!l)
                                return -ENOMEM;
                        ls->raw_len = l;
                        cap = ncap;
                }
                ls->raw[ls->n] = p;
                ls->raw_len[ls->n] = len;
                p += len;
        }
        return 0;
}

/* A Stream* call's List handler answered @resp (taken): send its items. */
static void list_send_start(struct cri_call *c, ProtobufCMessage *resp)
{
        const ProtobufCFieldDescriptor *lf = repeated_field(resp->descriptor);
        const ProtobufCFieldDescriptor *sf = repeated_field(c->method->resp);
        struct cri_list_send *ls = NULL;

        if (lf && sf && lf->descriptor == sf->descriptor)
                ls = calloc(1, sizeof(*ls));
        if (!ls) {
                protobuf_c_message_free_unpacked(resp, NULL);
                log_failure(c, GRPC_STATUS_INTERNAL, "cannot stream the List answer");
                call_finish(c, GRPC_STATUS_INTERNAL, "internal error: cannot stream", NULL);
                return;
        }
        ls->resp = resp;
        ls->n = *(const size_t *)((const char *)resp + lf->quantifier_offset);
        ls->items = *(ProtobufCMessage ***)((char *)resp + lf->offset);
        ls->key = sf->id << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
        if (!ls->n && resp->n_unknown_fields && packed_items(ls, resp, lf->id) < 0) {
                c->list = ls; /* freed with it */
                stream_done(c);
                log_failure(c, GRPC_STATUS_INTERNAL, "cannot stream the List answer");
                call_finish(c, GRPC_STATUS_INTERNAL, "internal error: cannot stream", NULL);
                return;
        }
        c->list = ls;
        list_send_next(c);
}

static void event_slice_unref(void *e)
{
        cri_event_unref(e);
}

/*
 * The subscriber's next step: send an event, park (idle), or end the stream. Runs on the
 * queue thread or a publisher's (a wake); never twice at once for one call (events.h).
 */
static void event_drive(struct cri_call *c)
{
        struct cri_event *e = NULL;
        char msg[300];
        grpc_slice sl;

        switch (cri_sub_next(c->sub, &e)) {
        case CRI_SUB_EVENT:
                /* The packed bytes are shared with every subscriber: no copy. */
                sl = grpc_slice_new_with_user_data(e->data, e->len, event_slice_unref, e);
                c->msg = grpc_raw_byte_buffer_create(&sl, 1);
                grpc_slice_unref(sl);
                stream_send(c);
                return;
        case CRI_SUB_IDLE:
                return;
        case CRI_SUB_DROPPED:
                snprintf(msg, sizeof(msg),
                         "GetContainerEvents: this client fell %zu events behind "
                         "(server.events_queue) and was dropped; call again and relist",
                         cri_sub_queue_max(c->sub));
                log_failure(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
                call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, NULL);
                return;
        case CRI_SUB_SHUTDOWN:
                call_finish(c, GRPC_STATUS_UNAVAILABLE,
                            "GetContainerEvents: runtd is shutting down", NULL);
                return;
        case CRI_SUB_CLOSED:
                call_unref(c); /* the client is gone: nobody to tell */
                return;
        }
}

static void event_wake(void *data)
{
        event_drive(data);
}

/* GetContainerEvents: subscribe, then hand out the backlog if it got one. Queue thread. */
static void events_start(struct cri_call *c)
{
        struct cri_events *hub = c->srv->ctx->events;
        grpc_status_code code;
        char msg[200];
        int r;

        /*
         * The client may be gone already (its close can complete before its request): such
         * a subscriber would take the backlog of events nobody will read.
         */
        if (atomic_load(&c->gone)) {
                call_finish(c, GRPC_STATUS_CANCELLED, "the client went away", NULL);
                return;
        }
        r = hub ? cri_events_subscribe(hub, event_wake, c, &c->sub) : -ESHUTDOWN;
        if (r < 0) {
                code = r == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE;
                snprintf(msg, sizeof(msg), "GetContainerEvents: %s",
                         r == -ENOMEM ? "out of memory" : "runtd is shutting down");
                log_failure(c, code, msg);
                call_finish(c, code, msg, NULL);
                return;
        }
        event_drive(c);
}

/* TAG_SEND: the message in flight went out (@success) or the call is over. */
static void on_sent(struct cri_call *c, int success)
{
        grpc_byte_buffer_destroy(c->msg);
        c->msg = NULL;
        if (!success)
                stream_abort(c);
        else if (c->list)
                list_send_next(c);
        else
                event_drive(c);
}

struct cri_lane;
static void lane_leave(struct cri_lane *l);
static void lane_trim_soon(struct cri_lane *l);

/*
 * Runs the handler of @c (the request is unpacked) and answers. Before the answer goes out,
 * the call leaves @l (NULL: it runs inline), so a client that sends its next call once it
 * has the answer always finds room. Any thread.
 */
static void call_run(struct cri_call *c, struct cri_lane *l)
{
        struct sh_error err = {0};
        ProtobufCMessage *resp = NULL;
        grpc_status_code code;
        int r;

        if (c->run->cancellable)
                r = c->run->cancellable(c->srv->ctx, c->req, atomic_load(&c->cancel_fd), &resp,
                                        &err);
        else
                r = c->run->unary(c->srv->ctx, c->req, &resp, &err);
        lane_leave(l);
        if (r < 0) {
                code = cri_status_from_errno(r);
                if (!err.msg[0])
                        sh_err(&err, r, "%s: %s", c->method->name, strerror(-r));
                log_failure(c, code, err.msg);
                call_finish(c, code, err.msg, NULL);
        } else if (!resp) {
                log_failure(c, GRPC_STATUS_INTERNAL, "handler returned no response");
                call_finish(c, GRPC_STATUS_INTERNAL, "internal error: no response", NULL);
        } else if (c->method->list_form) {
                lane_trim_soon(l);
                list_send_start(c, resp); /* takes resp */
        } else {
                if (call_finish(c, GRPC_STATUS_OK, NULL, resp) >= CRI_TRIM_BIG)
                        lane_trim_soon(l);
                protobuf_c_message_free_unpacked(resp, NULL);
        }
}

/*
 * Runs a call a worker took from its lane. A call whose client left while it waited, or
 * that waited into the shutdown, is answered without running: nobody would read the answer,
 * and a shutdown must not start new helpers.
 */
static void call_run_queued(struct cri_call *c, struct cri_lane *l)
{
        char msg[160];

        if (atomic_load(&c->gone)) {
                lane_leave(l);
                call_finish(c, GRPC_STATUS_CANCELLED, "the client went away", NULL);
                return;
        }
        if (atomic_load(&c->srv->ctx->stopping)) {
                lane_leave(l);
                snprintf(msg, sizeof(msg), "%s: runtd is shutting down", c->method->name);
                log_failure(c, GRPC_STATUS_UNAVAILABLE, msg);
                call_finish(c, GRPC_STATUS_UNAVAILABLE, msg, NULL);
                return;
        }
        if (c->run->cancellable) {
                int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

                if (fd < 0) {
                        snprintf(msg, sizeof(msg), "%s: eventfd: %s", c->method->name,
                                 strerror(errno));
                        lane_leave(l);
                        log_failure(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
                        call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, NULL);
                        return;
                }
                atomic_store(&c->cancel_fd, fd);
                if (atomic_load(&c->gone))
                        eventfd_write(fd, 1);
        }
        call_run(c, l);
}

/* @l has one call fewer at work (its answer is about to go out). NULL: nothing. */
static void lane_leave(struct cri_lane *l)
{
        if (!l)
                return;
        pthread_mutex_lock(&l->lock);
        l->running--;
        l->since_trim++;
        pthread_mutex_unlock(&l->lock);
}

/* @l (NULL: nothing) trims when it is idle next, as after a burst. */
static void lane_trim_soon(struct cri_lane *l)
{
        if (!l)
                return;
        pthread_mutex_lock(&l->lock);
        if (l->since_trim < CRI_TRIM_AFTER)
                l->since_trim = CRI_TRIM_AFTER;
        pthread_mutex_unlock(&l->lock);
}

static void *lane_worker(void *arg)
{
        struct cri_lane *l = arg;

        pthread_mutex_lock(&l->lock);
        for (;;) {
                struct cri_call *c;

                while (!l->head && !l->stop)
                        pthread_cond_wait(&l->cond, &l->lock);
                if (!l->head)
                        break; /* stop, and nothing left to answer */
                c = l->head;
                l->head = c->next;
                if (!l->head)
                        l->tail = NULL;
                c->next = NULL;
                l->queued--;
                l->running++;
                pthread_mutex_unlock(&l->lock);
                call_run_queued(c, l); /* leaves the lane (running--) before it answers */
                pthread_mutex_lock(&l->lock);
                /* The burst is over: hand the arenas' free pages back (issue 14, RSS). */
                if (l->trim && !l->running && !l->queued && l->since_trim >= CRI_TRIM_AFTER) {
                        l->since_trim = 0;
                        pthread_mutex_unlock(&l->lock);
                        malloc_trim(0);
                        pthread_mutex_lock(&l->lock);
                }
        }
        pthread_mutex_unlock(&l->lock);
        return NULL;
}

/*
 * Queues @c on @l. Returns 0, -EAGAIN when the lane is full (workers + max_queued calls in
 * it already) or -ESHUTDOWN once it stops. Queue thread.
 */
static int lane_submit(struct cri_lane *l, struct cri_call *c)
{
        int r = 0;

        pthread_mutex_lock(&l->lock);
        if (l->stop)
                r = -ESHUTDOWN;
        else if (l->queued + l->running >= l->workers + l->max_queued)
                r = -EAGAIN;
        else
                l->rejected = 0;
        if (r == 0) {
                c->next = NULL;
                if (l->tail)
                        l->tail->next = c;
                else
                        l->head = c;
                l->tail = c;
                l->queued++;
                pthread_cond_signal(&l->cond);
        }
        pthread_mutex_unlock(&l->lock);
        return r;
}

/* Sets up @l and starts its @workers threads. Returns 0 or -errno (nothing started then). */
static int lane_start(struct cri_lane *l, struct cri_server *s, const char *name, unsigned workers,
                      unsigned max_queued, bool trim)
{
        pthread_attr_t attr;
        int r = 0;

        l->name = name;
        l->srv = s;
        l->workers = workers ? workers : 1;
        l->max_queued = max_queued;
        l->trim = trim;
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->cond, NULL);
        l->threads = calloc(l->workers, sizeof(*l->threads));
        if (!l->threads)
                return -ENOMEM;
        pthread_attr_init(&attr);
        /* Handlers are shallow (STYLE R18: no recursion over untrusted trees). */
        pthread_attr_setstacksize(&attr, 256 << 10);
        for (; l->n_threads < l->workers; l->n_threads++) {
                r = -pthread_create(&l->threads[l->n_threads], &attr, lane_worker, l);
                if (r < 0)
                        break;
        }
        pthread_attr_destroy(&attr);
        return r;
}

/* Tells @l's workers to leave once its queue is empty. Any thread. */
static void lane_stop(struct cri_lane *l)
{
        if (!l->threads)
                return;
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
}

/* Stops @l and waits for its workers; they must be able to finish (no call stuck). */
static void lane_done(struct cri_lane *l)
{
        if (!l->threads)
                return;
        lane_stop(l);
        for (unsigned i = 0; i < l->n_threads; i++)
                pthread_join(l->threads[i], NULL);
        free(l->threads);
        l->threads = NULL;
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
}

/* Hands @c to the lane of its method, or answers at once when that lane is full. */
static void dispatch(struct cri_call *c)
{
        struct cri_server *s = c->srv;
        struct cri_lane *l = c->run->walk ? &s->walk : c->run->read ? &s->read : &s->slow;
        char msg[300];
        int r = lane_submit(l, c);

        if (r == -EAGAIN) {
                snprintf(msg, sizeof(msg),
                         "%s: runtd is at its limit of %u calls in the %s lane (server.%s + "
                         "server.max_queued); try again later",
                         c->method->name, l->workers + l->max_queued, l->name,
                         l == &s->slow ? "workers" : "read_workers");
                /* A burst is refused call by call: one warning when it starts, and one
                 * for every 1000 after, not a line each (the queue thread only counts). */
                if (l->rejected++ % 1000 == 0)
                        sh_log_warn("lane=%s full: %lu calls refused so far: %s", l->name,
                                    l->rejected, msg);
                call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, NULL);
        } else if (r < 0) {
                snprintf(msg, sizeof(msg), "%s: runtd is shutting down", c->method->name);
                log_failure(c, GRPC_STATUS_UNAVAILABLE, msg);
                call_finish(c, GRPC_STATUS_UNAVAILABLE, msg, NULL);
        }
}

/*
 * An audited call answered without running (UNIMPLEMENTED): its request is read anyway, so
 * that its line names the objects it was about. Best effort: nothing if it cannot be read.
 */
static void unpack_for_audit(struct cri_call *c)
{
        grpc_byte_buffer_reader rd;
        grpc_slice sl;

        if (!c->audited || !c->recv || c->req || !grpc_byte_buffer_reader_init(&rd, c->recv))
                return;
        sl = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        c->req = protobuf_c_message_unpack(c->method->req, NULL, GRPC_SLICE_LENGTH(sl),
                                           GRPC_SLICE_START_PTR(sl));
        grpc_slice_unref(sl);
}

/* The request message arrived (or did not): check it and hand it to its handler. */
static void on_recv(struct cri_call *c)
{
        char msg[300];
        grpc_byte_buffer_reader rd;
        grpc_slice sl;

        if (!c->method) {
                char *path = grpc_slice_to_c_string(c->details.method);

                snprintf(msg, sizeof(msg), "unknown method %.200s", path);
                gpr_free(path);
                log_failure(c, GRPC_STATUS_UNIMPLEMENTED, msg);
                call_finish(c, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
                return;
        }
        c->run = cri_method_runner(c->method);
        if (!c->method->events && (!c->run || (!c->run->unary && !c->run->cancellable))) {
                snprintf(msg, sizeof(msg), "%s.%s is not implemented by runt%s%s",
                         c->method->service, c->method->name,
                         c->method->unimplemented ? ": " : " yet",
                         c->method->unimplemented ? c->method->unimplemented : "");
                log_failure(c, GRPC_STATUS_UNIMPLEMENTED, msg);
                unpack_for_audit(c);
                call_finish(c, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
                return;
        }
        if (!c->recv) {
                snprintf(msg, sizeof(msg), "%s: no request message", c->method->name);
                log_failure(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
                call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, msg, NULL);
                return;
        }
        if (!grpc_byte_buffer_reader_init(&rd, c->recv)) {
                snprintf(msg, sizeof(msg), "%s: cannot read the request (compression?)",
                         c->method->name);
                log_failure(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
                call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, msg, NULL);
                return;
        }
        sl = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        /* A Stream* request is read as its List form's: same fields (test_cri checks). */
        c->req = protobuf_c_message_unpack(c->run->req, NULL, GRPC_SLICE_LENGTH(sl),
                                           GRPC_SLICE_START_PTR(sl));
        grpc_slice_unref(sl);
        grpc_byte_buffer_destroy(c->recv);
        c->recv = NULL;
        if (!c->req) {
                snprintf(msg, sizeof(msg), "%s: malformed %s message", c->method->name,
                         c->method->req->name);
                log_failure(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
                call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, msg, NULL);
                return;
        }
        if (c->method->events)
                events_start(c);
        else if (c->run->quick && !c->run->cancellable)
                call_run(c, NULL);
        else
                dispatch(c);
}

/*
 * Who called: the credentials the kernel recorded when the caller connected (SO_PEERCRED:
 * uid, gid and pid at connect time, not what the client claims). grpc names a connection it
 * was handed as "fd:N" (grpc_server_add_channel_from_fd), N the accepted socket. N is still
 * that connection here: grpc closes the fd only when the transport is destroyed, and the
 * transport lives while a stream of it does, which @c's call holds. Anything else (a peer
 * string of another form, N not a unix socket) leaves the peer unknown: null in the line.
 */
static void peer_of(struct cri_call *c)
{
        char *peer = grpc_call_get_peer(c->call);
        struct ucred uc;
        socklen_t len = sizeof(uc), dlen = sizeof(int);
        int dom = 0;
        long fd = -1;
        char *end = NULL;

        if (peer && strncmp(peer, "fd:", 3) == 0 && peer[3] >= '0' && peer[3] <= '9') {
                errno = 0;
                fd = strtol(peer + 3, &end, 10);
                if (errno || *end || fd > INT_MAX)
                        fd = -1;
        }
        if (fd >= 0 && getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &dom, &dlen) == 0 &&
            dom == AF_UNIX && getsockopt((int)fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0 &&
            len == sizeof(uc)) {
                c->peer = (struct cri_peer){
                        .known = true, .uid = uc.uid, .gid = uc.gid, .pid = uc.pid};
        } else {
                sh_log_warn("peer=%s rpc=%s the caller's credentials are unknown",
                            peer ? peer : "?", c->method ? c->method->name : "?");
        }
        gpr_free(peer);
}

/*
 * A new call: find its method, send initial metadata and read the request message. The
 * client's close is asked for at once, in a batch of its own, so that a handler still at
 * work learns when its client goes away (notes/grpc-c-core.md: as for a server stream).
 */
static void on_new(struct cri_call *c)
{
        grpc_op ops[2], close_op;

        c->t_start_ns = (long long)sh_now_ns();
        c->method = cri_method_lookup((const char *)GRPC_SLICE_START_PTR(c->details.method),
                                      GRPC_SLICE_LENGTH(c->details.method));
        c->audited = c->srv->ctx->audit && cri_audit_wants(c->method);
        if (c->audited)
                peer_of(c);
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[0].data.send_initial_metadata.count = 0;
        ops[1].op = GRPC_OP_RECV_MESSAGE;
        ops[1].data.recv_message.recv_message = &c->recv;
        memset(&close_op, 0, sizeof(close_op));
        close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        close_op.data.recv_close_on_server.cancelled = &c->cancelled;
        atomic_fetch_add(&c->refs, 1);
        if (grpc_call_start_batch(c->call, &close_op, 1, &c->t_close, NULL) != GRPC_CALL_OK)
                call_unref(c);
        if (grpc_call_start_batch(c->call, ops, 2, &c->t_recv, NULL) != GRPC_CALL_OK)
                call_unref(c);
}

static void on_event(struct cri_server *s, const grpc_event *ev)
{
        struct cri_tag *t = ev->tag;
        struct cri_call *c = t->call;

        switch (t->kind) {
        case TAG_NEW:
                if (!ev->success) { /* the server is shutting down */
                        call_unref(c);
                        return;
                }
                if (!atomic_load(&s->stop_requested) && post_slot(s) < 0)
                        sh_log_error("could not request a new call");
                on_new(c);
                return;
        case TAG_RECV:
                if (!ev->success) { /* cancelled or the client vanished */
                        call_unref(c);
                        return;
                }
                on_recv(c);
                return;
        case TAG_DONE:
                call_unref(c);
                return;
        case TAG_CLOSE:
                /* Also on a normal end, after the status went: then nobody is waiting. */
                if (c->cancelled) {
                        int fd;

                        atomic_store(&c->gone, true);
                        fd = atomic_load(&c->cancel_fd);
                        if (fd >= 0)
                                eventfd_write(fd, 1);
                }
                /* An idle event stream ends here: its flow reference was parked in the hub. */
                if (c->sub && cri_sub_close(c->sub))
                        call_unref(c);
                call_unref(c);
                return;
        case TAG_SEND:
                on_sent(c, ev->success);
                return;
        }
}

/* "unix:///run/x.sock" and "unix:/run/x.sock" -> "/run/x.sock"; NULL if not a unix address. */
static const char *unix_path(const char *listen)
{
        if (strncmp(listen, "unix://", 7) == 0)
                return listen + 7;
        if (strncmp(listen, "unix:", 5) == 0)
                return listen + 5;
        if (listen[0] == '/')
                return listen;
        return NULL;
}

/* -EADDRINUSE if a server answers on @path, 0 after removing a stale socket or if none. */
static int claim_socket(const char *path, struct sh_error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (strlen(path) >= sizeof(sa.sun_path))
                return sh_err(err, -ENAMETOOLONG, "socket path '%s' is too long", path);
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : sh_err(err, -errno, "stat '%s'", path);
        if (!S_ISSOCK(st.st_mode))
                return sh_err(err, -EEXIST, "'%s' exists and is not a socket", path);
        memcpy(sa.sun_path, path, strlen(path) + 1); /* length checked above */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return sh_err(err, -errno, "socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                return sh_err(err, -EADDRINUSE, "another server is listening on '%s'", path);
        if (errno != ECONNREFUSED)
                return sh_err(err, -errno, "probe '%s': %s", path, strerror(errno));
        sh_log_info("socket=%s removing stale socket", path);
        if (unlink(path) < 0 && errno != ENOENT)
                return sh_err(err, -errno, "remove stale socket '%s'", path);
        return 0;
}

/*
 * Binds and listens on @path, born 0660 (under umask 0117: no window in which others could
 * connect). Returns the socket or -errno.
 */
static int listen_unix(const char *path, struct stat *ret_st, struct sh_error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        mode_t old_mask;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return sh_err(err, -ENAMETOOLONG, "socket path '%s' is too long", path);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return sh_err(err, -errno, "socket: %s", strerror(errno));
        old_mask = umask(0117);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old_mask);
        if (r < 0)
                return sh_err(err, -errno, "bind '%s': %s", path, strerror(errno));
        if (lstat(path, ret_st) < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                unlink(path);
                return sh_err(err, r, "listen on '%s': %s", path, strerror(-r));
        }
        if (chmod(path, 0660) < 0 && errno != ENOENT)
                sh_log_warn_errno(-errno, "socket=%s chmod 0660 failed: %m", path);
        return TAKE_FD(fd);
}

/* Waits up to @ms for @stop; true if it came. */
static bool stop_wait(int stop, int ms)
{
        struct pollfd p = {.fd = stop, .events = POLLIN};

        return poll(&p, 1, ms) > 0;
}

/*
 * Accepts the CRI socket's connections and hands each to grpc as a connected channel, until
 * s->accept_stop is written. grpc owns the fd from then on (it closes it with the
 * connection). Running out of fds is waited out 100 ms at a time, logged once per episode.
 */
static void *accept_loop(void *arg)
{
        struct cri_server *s = arg;
        struct pollfd p[2] = {{.fd = s->listen_fd, .events = POLLIN},
                              {.fd = s->accept_stop, .events = POLLIN}};
        bool starved = false;

        for (;;) {
                int fd;

                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        sh_log_error_errno(-errno,
                                           "socket=%s poll failed, no more connections "
                                           "are taken: %m",
                                           s->socket_path);
                        break;
                }
                if (p[1].revents)
                        break;
                fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        int e = errno;

                        if (e == EAGAIN || e == EINTR || e == ECONNABORTED || e == EPROTO)
                                continue;
                        if (!starved)
                                sh_log_warn_errno(-e,
                                                  "socket=%s accept failed: %m; trying "
                                                  "again every 100 ms",
                                                  s->socket_path);
                        starved = true;
                        if (stop_wait(s->accept_stop, 100))
                                break;
                        continue;
                }
                starved = false;
                grpc_server_add_channel_from_fd(s->server, fd, s->creds);
        }
        return NULL;
}

/* Stops the accept thread for good (or keeps it from starting), closes the listening
 * socket and removes its file if it is still ours. Any thread; idempotent. */
static void accept_stop(struct cri_server *s)
{
        struct stat st;

        pthread_mutex_lock(&s->accept_mtx);
        if (s->accepting) {
                eventfd_write(s->accept_stop, 1);
                pthread_join(s->accept_tid, NULL);
                s->accepting = false;
        }
        s->accept_done = true;
        if (s->listen_fd >= 0) {
                /* Another runtd may have taken the path since (claim_socket): not ours then. */
                if (lstat(s->socket_path, &st) == 0 && st.st_ino == s->sock_ino &&
                    st.st_dev == s->sock_dev)
                        unlink(s->socket_path);
                close(s->listen_fd);
                s->listen_fd = -1;
        }
        pthread_mutex_unlock(&s->accept_mtx);
}

int cri_server_new(struct cri_ctx *ctx, const char *listen, struct cri_server **ret,
                   struct sh_error *err)
{
        grpc_arg args[] = {
                {.type = GRPC_ARG_INTEGER,
                 .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                 .value.integer = CRI_MAX_MESSAGE},
                {.type = GRPC_ARG_INTEGER,
                 .key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                 .value.integer = CRI_MAX_MESSAGE},
        };
        grpc_channel_args cargs = {.num_args = 2, .args = args};
        const char *path = unix_path(listen);
        _cleanup_free_ char *dir = NULL;
        struct cri_server *s;
        struct stat st;
        int r;

        if (!path || path[0] != '/')
                return sh_err(err, -EINVAL, "listen address '%s': want unix:///absolute/path",
                              listen);
        dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = '\0';
        if (dir[0] && (r = sh_mkdir_p(dir, 0755)) < 0)
                return sh_err(err, r, "create socket directory '%s': %s", dir, strerror(-r));
        r = claim_socket(path, err);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->ctx = ctx;
        s->listen_fd = -1;
        s->accept_stop = -1;
        pthread_mutex_init(&s->accept_mtx, NULL);
        s->socket_path = strdup(path);
        s->server = grpc_server_create(&cargs, NULL);
        s->cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, s->cq, NULL);
        /* No port of grpc's own: accept_loop hands it each connection (peer_of). */
        s->creds = grpc_insecure_server_credentials_create();
        s->accept_stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!s->socket_path || !s->creds || s->accept_stop < 0) {
                r = s->socket_path && s->creds ? -errno : -ENOMEM;
                cri_server_free(s);
                return sh_err(err, r, "cannot listen on '%s': %s", listen, strerror(-r));
        }
        s->listen_fd = listen_unix(path, &st, err);
        if (s->listen_fd < 0) {
                r = s->listen_fd;
                cri_server_free(s);
                return sh_err_prefix(err, r, "cannot listen on '%s'", listen);
        }
        s->sock_dev = st.st_dev;
        s->sock_ino = st.st_ino;
        r = lane_start(&s->slow, s, "slow", ctx->cfg->server_workers, ctx->cfg->server_max_queued,
                       true);
        if (r == 0)
                r = lane_start(&s->read, s, "read", ctx->cfg->server_read_workers,
                               ctx->cfg->server_max_queued, true);
        /* Walks of container trees (stats, ImageFsInfo): as many workers as the reads. */
        if (r == 0)
                r = lane_start(&s->walk, s, "walk", ctx->cfg->server_read_workers,
                               ctx->cfg->server_max_queued, false);
        if (r < 0) {
                cri_server_free(s);
                return sh_err(err, r, "start handler threads: %s", strerror(-r));
        }
        *ret = s;
        return 0;
}

int cri_server_run(struct cri_server *s)
{
        bool shut = false;
        long long drain_until = 0;

        grpc_server_start(s->server);
        for (int i = 0; i < CRI_SLOTS; i++)
                if (post_slot(s) < 0)
                        return -ENOMEM;
        /* Connections are taken once the server runs, unless a stop came first. */
        pthread_mutex_lock(&s->accept_mtx);
        if (!s->accept_done) {
                int r = -pthread_create(&s->accept_tid, NULL, accept_loop, s);

                if (r < 0) {
                        pthread_mutex_unlock(&s->accept_mtx);
                        sh_log_error_errno(r, "cannot start the accept thread: %m");
                        return r;
                }
                s->accepting = true;
        }
        /* Not READY=1 after a stop that came during recovery (STOPPING=1 was sent). */
        if (s->on_serving && s->accepting)
                s->on_serving(s->on_serving_data);
        pthread_mutex_unlock(&s->accept_mtx);
        for (;;) {
                gpr_timespec deadline = shut ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                            gpr_time_from_millis(50, GPR_TIMESPAN))
                                             : gpr_inf_future(GPR_CLOCK_MONOTONIC);
                grpc_event ev = grpc_completion_queue_next(s->cq, deadline, NULL);

                if (ev.type == GRPC_QUEUE_SHUTDOWN)
                        break;
                if (ev.type == GRPC_OP_COMPLETE) {
                        if (ev.tag == &s->shutdown_tag) {
                                shut = true;
                                drain_until = (long long)sh_now_ns() + CRI_DRAIN_MS * 1000000LL;
                        } else {
                                on_event(s, &ev);
                        }
                }
                if (shut && atomic_load(&s->active) == 0)
                        break;
                if (shut && (long long)sh_now_ns() > drain_until) {
                        sh_log_warn("calls=%d still in flight at exit", atomic_load(&s->active));
                        return -ETIMEDOUT;
                }
        }
        return 0;
}

void cri_server_on_serving(struct cri_server *s, void (*fn)(void *data), void *data)
{
        s->on_serving = fn;
        s->on_serving_data = data;
}

void cri_server_stop(struct cri_server *s)
{
        if (atomic_exchange(&s->stop_requested, true))
                return;
        atomic_store(&s->ctx->stopping, true);
        /* No connection is handed to grpc after its shutdown began. */
        accept_stop(s);
        /* Event streams end with a status of their own, not by the drain's timeout. */
        cri_events_shutdown(s->ctx->events);
        grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
        grpc_server_cancel_all_calls(s->server);
}

void cri_server_free(struct cri_server *s)
{
        if (!s)
                return;
        accept_stop(s);
        /* cri_server_run returned 0: no call is in flight, so the workers are idle. */
        lane_done(&s->slow);
        lane_done(&s->read);
        lane_done(&s->walk);
        if (s->server)
                grpc_server_destroy(s->server);
        if (s->cq) {
                grpc_completion_queue_shutdown(s->cq);
                while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                               .type != GRPC_QUEUE_SHUTDOWN)
                        ;
                grpc_completion_queue_destroy(s->cq);
        }
        if (s->creds)
                grpc_server_credentials_release(s->creds);
        if (s->accept_stop >= 0)
                close(s->accept_stop);
        pthread_mutex_destroy(&s->accept_mtx);
        free(s->socket_path);
        free(s);
}
