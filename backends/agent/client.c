/*
 * The host's end of the pod agent protocol (client.h). One I/O thread per connection: it
 * alone reads and writes the connection and the streams' local fds, all non-blocking, in
 * one poll() loop; callers queue their frames and wait on a condition variable. Everything
 * shared sits under c->lock, which the I/O thread drops only around poll() and callbacks.
 *
 * The connection is a plain fd or a TLS one (tls-internal.h): conn_read/conn_write hide which,
 * and for TLS the poll set asks for what OpenSSL last waited for (rd_want, wr_want) and poll
 * does not wait while OpenSSL holds bytes already read.
 *
 * Streams: each has the local fds the I/O thread relays, a buffer per channel of what the
 * agent sent that the local side has not taken yet ("down"), and one of what the local side
 * gave that the credit does not cover yet ("up", attach only: a packet cannot be read in
 * part). Credit (proto.h): send_credit is what we may still send; recv_left what the agent
 * may; what we wrote out locally is granted back in WINDOW frames.
 */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "tls-internal.h"

#define OUTQ_SOFT_MAX (1u << 20)  /* read no local fd while this much waits to go out */
#define OUTQ_HARD_MAX (16u << 20) /* a frame that would pass it fails (-ENOBUFS) */
#define ATTACH_MAX    32768       /* attach packet payload (be.h) */
#define GRANT_AT      (AG_WINDOW_INIT / 4)
#define CREDIT_MAX    ((uint64_t)1 << 40) /* more than a peer could mean: a broken one */

struct sbuf {
        uint8_t *d;
        size_t off, len, cap; /* pending: d[off..len) */
};

static size_t sbuf_pending(const struct sbuf *b)
{
        return b->len - b->off;
}

static int sbuf_add(struct sbuf *b, const void *p, size_t n)
{
        if (b->off && b->off == b->len)
                b->off = b->len = 0;
        if (n > b->cap - b->len) {
                size_t cap;
                uint8_t *d;

                if (b->off) {
                        memmove(b->d, b->d + b->off, b->len - b->off);
                        b->len -= b->off;
                        b->off = 0;
                }
                cap = b->cap ? b->cap : 4096;
                while (cap - b->len < n)
                        cap *= 2;
                if (cap != b->cap) {
                        d = realloc(b->d, cap);
                        if (!d)
                                return -ENOMEM;
                        b->d = d;
                        b->cap = cap;
                }
        }
        if (n)
                memcpy(b->d + b->len, p, n);
        b->len += n;
        return 0;
}

static void sbuf_consume(struct sbuf *b, size_t n)
{
        b->off += n;
        if (b->off == b->len)
                b->off = b->len = 0;
}

static void sbuf_done(struct sbuf *b)
{
        free(b->d);
        memset(b, 0, sizeof(*b));
}

enum st_type {
        ST_EXEC,
        ST_ATTACH,
        ST_DIAL,
};

struct stream {
        struct stream *next;
        uint32_t id;
        enum st_type type;
        bool open;      /* the RESP said yes */
        bool abandoned; /* its opening call gave up: close it when the RESP comes */
        int up_fd;      /* what we read: exec stdin, or the attach/dial socket */
        int out_fd[3];  /* [1], [2]: where stdout / stderr go (attach/dial: the socket) */
        int exit_fd;
        struct sbuf down[3]; /* attach: [1] holds packets, each u16 length + packet */
        struct sbuf up;
        bool up_eof;       /* the local side ended its input; CLOSE(STDIN) sent */
        bool up_ready;     /* poll said up_fd is readable */
        bool gone;         /* poll said the caller closed an end it must keep */
        bool down_eof[3];  /* the agent closed that channel */
        bool down_done[3]; /* ... and we passed that EOF on */
        bool ended;        /* the agent closed the stream */
        bool has_exit;
        int exit_code;
        bool tty; /* exec: the exit socket also carries resizes from the caller */
        uint64_t send_credit, recv_left, to_grant;
};

struct call {
        struct call *next;
        uint32_t id;
        struct stream *st; /* the stream it opens, or NULL */
        bool done;
        int r;
        uint8_t *payload;
        size_t len;
        char msg[256];
        pthread_cond_t cond;
};

struct ag_client {
        pthread_mutex_t lock; /* everything below but the thread's own (reader) */
        pthread_cond_t idle;  /* users dropped to 0 */
        unsigned users;       /* threads inside a call */
        int fd, wake_fd;
        struct ag_tls_conn *tls; /* NULL: plain fd */
        short rd_want, wr_want;  /* TLS: the poll event a read / a write waits for */
        const struct ag_client_ops *cbs;
        void *cb_data;
        pthread_t thread;
        bool stop, closed;
        struct sbuf outq;
        struct call *calls;
        struct stream *streams;
        uint32_t next_id, next_stream;
        unsigned open_timeout_ms;
        struct ag_reader reader; /* the I/O thread's */
};

/* ---- the transport: all the connection's I/O goes through these two ---- */

static ssize_t conn_read(struct ag_client *c, void *buf, size_t n)
{
        if (c->tls) {
                short want = POLLIN;
                ssize_t r = ag_tls_conn_read(c->tls, buf, n, &want);

                /* A TLS read may have to write first (and a write to read): poll for that. */
                c->rd_want = r < 0 && errno == EAGAIN ? want : POLLIN;
                return r;
        }
        return read(c->fd, buf, n);
}

static ssize_t conn_write(struct ag_client *c, const void *buf, size_t n)
{
        ssize_t r;

        if (c->tls) {
                short want = POLLOUT;

                r = ag_tls_conn_write(c->tls, buf, n, &want);
                c->wr_want = r < 0 && errno == EAGAIN ? want : POLLOUT;
                return r;
        }
        r = send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (r < 0 && errno == ENOTSOCK)
                r = write(c->fd, buf, n);
        return r;
}

/* ---- frames out (lock held) ---- */

static void wake(struct ag_client *c)
{
        uint64_t one = 1;

        (void)!write(c->wake_fd, &one, sizeof(one));
}

static int queue_frame(struct ag_client *c, uint8_t kind, uint16_t op, uint32_t stream, uint32_t id,
                       const void *payload, size_t n)
{
        struct ag_hdr h = {AG_VERSION, kind, op, stream, id, (uint32_t)n};
        uint8_t raw[AG_HDR_SIZE];
        int r;

        /*
         * A peer that does not read while it keeps asking for answers (LOG_ACKs) must not
         * grow runtd's memory without end.
         */
        if (sbuf_pending(&c->outq) + n > OUTQ_HARD_MAX)
                return -ENOBUFS;
        ag_hdr_encode(&h, raw);
        r = sbuf_add(&c->outq, raw, sizeof(raw));
        if (r == 0)
                r = sbuf_add(&c->outq, payload, n);
        return r;
}

static uint32_t new_id(struct ag_client *c)
{
        if (++c->next_id == 0)
                c->next_id = 1;
        return c->next_id;
}

/* ---- streams (lock held) ---- */

static struct stream *stream_new(enum st_type type)
{
        struct stream *st = calloc(1, sizeof(*st));

        if (!st)
                return NULL;
        st->type = type;
        st->up_fd = st->out_fd[0] = st->out_fd[1] = st->out_fd[2] = st->exit_fd = -1;
        st->send_credit = st->recv_left = AG_WINDOW_INIT;
        return st;
}

static void close_fd(int *fd)
{
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

static void stream_free(struct stream *st)
{
        if (!st)
                return;
        if (st->type != ST_EXEC)
                st->out_fd[1] = -1; /* the same socket as up_fd */
        close_fd(&st->up_fd);
        close_fd(&st->out_fd[1]);
        close_fd(&st->out_fd[2]);
        close_fd(&st->exit_fd);
        for (int i = 0; i < 3; i++)
                sbuf_done(&st->down[i]);
        sbuf_done(&st->up);
        free(st);
}

static struct stream *stream_find(struct ag_client *c, uint32_t id)
{
        for (struct stream *st = c->streams; st; st = st->next)
                if (st->id == id)
                        return st;
        return NULL;
}

static void stream_unlink_free(struct ag_client *c, struct stream *st)
{
        for (struct stream **p = &c->streams; *p; p = &(*p)->next) {
                if (*p == st) {
                        *p = st->next;
                        break;
                }
        }
        stream_free(st);
}

/* The host gives up stream @st: the agent ends what runs on it. Frees @st. */
static int stream_abandon(struct ag_client *c, struct stream *st)
{
        int r = queue_frame(c, AG_K_CLOSE, AG_CHAN_ALL, st->id, 0, NULL, 0);

        stream_unlink_free(c, st);
        return r;
}

/* Whether the I/O thread should read @st's up_fd now. */
static bool stream_wants_read(struct ag_client *c, const struct stream *st)
{
        /* An attach socket stays read after stdin EOF: resizes still come through it. */
        return st->open && (!st->up_eof || st->type == ST_ATTACH) && st->up_fd >= 0 &&
               !sbuf_pending(&st->up) && st->send_credit > 0 &&
               sbuf_pending(&c->outq) < OUTQ_SOFT_MAX;
}

/* Writes what waits in @st->down[ch]: 0, or -EPIPE when the local side is gone. */
static int stream_write_down(struct stream *st, int ch)
{
        struct sbuf *b = &st->down[ch];

        while (sbuf_pending(b) && st->out_fd[ch] >= 0) {
                const uint8_t *p = b->d + b->off;
                size_t n = sbuf_pending(b), credit;
                ssize_t w;

                if (st->type == ST_ATTACH) {
                        size_t plen = (size_t)p[0] << 8 | p[1];

                        w = send(st->out_fd[ch], p + 2, plen, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (w >= 0) {
                                n = 2 + plen;
                                credit = plen - 1;
                        }
                } else {
                        w = send(st->out_fd[ch], p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (w >= 0)
                                n = credit = (size_t)w;
                }
                if (w < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        return -EPIPE;
                }
                sbuf_consume(b, n);
                st->to_grant += credit;
        }
        return 0;
}

/* Reads once from @st's up_fd and sends what it can. 0, -EPIPE (abandon), -ENOMEM. */
static int stream_read_up(struct ag_client *c, struct stream *st)
{
        uint8_t buf[AG_MAX_DATA > ATTACH_MAX + 1 ? AG_MAX_DATA : ATTACH_MAX + 1];
        ssize_t n;

        st->up_ready = false;
        if (st->type == ST_ATTACH) {
                n = recv(st->up_fd, buf, ATTACH_MAX + 1, MSG_DONTWAIT);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : -EPIPE;
                if (n == 0)
                        return -EPIPE; /* detached */
                switch (buf[0]) {
                case 0:
                        if (st->up_eof)
                                return 0;
                        return sbuf_add(&st->up, buf + 1, (size_t)n - 1);
                case 3:
                        if (st->up_eof)
                                return 0;
                        st->up_eof = true;
                        return queue_frame(c, AG_K_CLOSE, AG_CHAN_STDIN, st->id, 0, NULL, 0);
                case 4:
                        if (n >= 5) {
                                struct ag_buf b;
                                int r;

                                ag_buf_init(&b);
                                ag_put_u64(&b, AG_A_ROWS, (unsigned)buf[3] << 8 | buf[4]);
                                ag_put_u64(&b, AG_A_COLS, (unsigned)buf[1] << 8 | buf[2]);
                                r = b.err
                                            ?: queue_frame(c, AG_K_REQ, AG_OP_RESIZE, st->id,
                                                           new_id(c), b.data, b.len);
                                ag_buf_done(&b);
                                return r;
                        }
                        return 0;
                default:
                        return 0;
                }
        }
        n = read(st->up_fd, buf, st->send_credit < AG_MAX_DATA ? st->send_credit : AG_MAX_DATA);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                st->up_eof = true;
                return queue_frame(c, AG_K_CLOSE, AG_CHAN_STDIN, st->id, 0, NULL, 0);
        }
        st->send_credit -= (size_t)n;
        return queue_frame(c, AG_K_DATA, AG_CHAN_STDIN, st->id, 0, buf, (size_t)n);
}

/*
 * Moves @st along as far as it goes without blocking: local writes, credit grants, a local
 * read when poll said so, EOFs, the end. 1 when @st was freed, 0, or -ENOMEM (fatal).
 */
static int stream_pump(struct ag_client *c, struct stream *st)
{
        bool empty;
        int r;

        if (!st->open)
                return 0;
        if (st->gone)
                return stream_abandon(c, st) ?: 1;
        for (int ch = 1; ch <= 2; ch++) {
                if (stream_write_down(st, ch) < 0)
                        return stream_abandon(c, st) ?: 1;
        }
        empty = !sbuf_pending(&st->down[1]) && !sbuf_pending(&st->down[2]);
        if (st->to_grant && !st->ended && (st->to_grant >= GRANT_AT || empty)) {
                uint8_t v[4] = {(uint8_t)(st->to_grant >> 24), (uint8_t)(st->to_grant >> 16),
                                (uint8_t)(st->to_grant >> 8), (uint8_t)st->to_grant};

                r = queue_frame(c, AG_K_WINDOW, AG_CHAN_ALL, st->id, 0, v, sizeof(v));
                if (r < 0)
                        return r;
                st->recv_left += st->to_grant;
                st->to_grant = 0;
        }
        for (int ch = 1; ch <= 2; ch++) {
                if (!st->down_eof[ch] || st->down_done[ch] || sbuf_pending(&st->down[ch]))
                        continue;
                st->down_done[ch] = true;
                if (st->type == ST_EXEC)
                        close_fd(&st->out_fd[ch]);
                else if (st->type == ST_DIAL && ch == 1)
                        shutdown(st->out_fd[1], SHUT_WR);
        }
        if (st->up_ready && stream_wants_read(c, st)) {
                r = stream_read_up(c, st);
                if (r == -EPIPE)
                        return stream_abandon(c, st) ?: 1;
                if (r < 0)
                        return r;
        }
        while (sbuf_pending(&st->up) && st->send_credit) {
                size_t n = sbuf_pending(&st->up);

                if (n > st->send_credit)
                        n = st->send_credit;
                if (n > AG_MAX_DATA)
                        n = AG_MAX_DATA;
                r = queue_frame(c, AG_K_DATA, AG_CHAN_STDIN, st->id, 0, st->up.d + st->up.off, n);
                if (r < 0)
                        return r;
                sbuf_consume(&st->up, n);
                st->send_credit -= n;
        }
        if (st->ended && empty) {
                if (st->type == ST_EXEC && st->has_exit && st->exit_fd >= 0) {
                        int code = st->exit_code;

                        (void)!send(st->exit_fd, &code, sizeof(code), MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                stream_unlink_free(c, st);
                return 1;
        }
        return 0;
}

/* ---- the connection (lock held) ---- */

static void call_finish(struct call *call, int r)
{
        call->r = r;
        call->done = true;
        pthread_cond_signal(&call->cond);
}

/* Ends the connection: fails every call, drops every stream. */
static void conn_fail(struct ag_client *c, int reason)
{
        if (c->closed)
                return;
        c->closed = true;
        shutdown(c->fd, SHUT_RDWR);
        while (c->calls) {
                struct call *call = c->calls;

                c->calls = call->next;
                call->st = NULL;
                call_finish(call, -ECONNRESET);
        }
        while (c->streams) {
                struct stream *st = c->streams;

                c->streams = st->next;
                stream_free(st);
        }
        sbuf_done(&c->outq);
        if (!c->stop && c->cbs && c->cbs->on_closed) {
                pthread_mutex_unlock(&c->lock);
                c->cbs->on_closed(c->cb_data, reason);
                pthread_mutex_lock(&c->lock);
        }
}

/*
 * The errno a peer's failed answer may carry to runt's callers (and so to a gRPC status):
 * the ones the agent means; anything else is -EIO, so a peer cannot pick a status.
 */
static int peer_errno(int r)
{
        static const int ok[] = {ENOENT,       EINVAL, EEXIST,   EBUSY,    ETIMEDOUT,  ECANCELED,
                                 EOPNOTSUPP,   ENOMEM, ENOSPC,   EPERM,    EACCES,     EALREADY,
                                 ECONNREFUSED, E2BIG,  EMSGSIZE, ENOTCONN, ECONNRESET, EPROTO};

        if (r >= 0)
                return r;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
                if (-r == ok[i])
                        return r;
        return -EIO;
}

static int on_resp(struct ag_client *c, const struct ag_hdr *h, const uint8_t *p)
{
        struct call **pp, *call = NULL;
        struct stream *st;
        int r;

        for (pp = &c->calls; *pp; pp = &(*pp)->next) {
                if ((*pp)->id == h->id) {
                        call = *pp;
                        *pp = call->next;
                        break;
                }
        }
        r = peer_errno(
                ag_resp_error(p, h->len, call ? call->msg : NULL, call ? sizeof(call->msg) : 0));
        if (call)
                for (char *m = call->msg; *m; m++)
                        if ((unsigned char)*m < 0x20 || *m == 0x7f)
                                *m = ' '; /* the peer's words go into runtd's log */
        if (!call) {
                /* A RESIZE, or the opening of a stream whose caller gave up. */
                st = h->stream ? stream_find(c, h->stream) : NULL;
                if (st && !st->open && st->abandoned) {
                        if (r == 0)
                                return stream_abandon(c, st);
                        stream_unlink_free(c, st);
                }
                return 0;
        }
        if (call->st) {
                if (r == 0)
                        call->st->open = true;
                else
                        stream_unlink_free(c, call->st);
                call->st = NULL;
        }
        if (r == 0 && h->len) {
                call->payload = malloc(h->len);
                if (!call->payload)
                        r = -ENOMEM;
                else
                        memcpy(call->payload, p, h->len);
                call->len = h->len;
        }
        call_finish(call, r);
        return 0;
}

static int on_data(struct ag_client *c, const struct ag_hdr *h, const uint8_t *p)
{
        struct stream *st = stream_find(c, h->stream);
        int ch = h->op == AG_CHAN_STDERR ? 2 : 1, r = 0;
        bool drop;

        if (!st)
                return 0; /* one we abandoned */
        if (!st->open || h->len > st->recv_left)
                return -EPROTO;
        st->recv_left -= h->len;
        drop = h->op != AG_CHAN_STDOUT && h->op != AG_CHAN_STDERR;
        if (st->type == ST_EXEC) {
                if (ch == 2 && st->out_fd[2] < 0 && !st->down_done[2])
                        ch = 1; /* a tty */
                drop = drop || st->down_eof[ch] || st->down_done[ch];
        } else if (st->type == ST_ATTACH) {
                drop = drop || st->down_eof[ch];
        } else {
                drop = drop || ch != 1 || st->down_eof[1] || st->down_done[1];
        }
        if (drop) {
                st->to_grant += h->len; /* nowhere to go: dropped */
        } else if (st->type == ST_ATTACH) {
                for (size_t off = 0; off < h->len && r == 0; off += ATTACH_MAX) {
                        size_t n = h->len - off < ATTACH_MAX ? h->len - off : ATTACH_MAX;
                        uint8_t pre[3] = {(uint8_t)((n + 1) >> 8), (uint8_t)(n + 1), (uint8_t)ch};

                        r = sbuf_add(&st->down[1], pre, sizeof(pre));
                        if (r == 0)
                                r = sbuf_add(&st->down[1], p + off, n);
                }
        } else {
                r = sbuf_add(&st->down[ch], p, h->len);
        }
        if (r < 0)
                return r;
        r = stream_pump(c, st);
        return r < 0 ? r : 0;
}

static int on_frame(struct ag_client *c, const struct ag_hdr *h, const uint8_t *p)
{
        struct stream *st;
        int64_t v;
        int r;

        switch (h->kind) {
        case AG_K_RESP:
                return on_resp(c, h, p);
        case AG_K_DATA:
                return on_data(c, h, p);
        case AG_K_EVENT:
                if (h->stream) {
                        st = stream_find(c, h->stream);
                        if (st && h->op == AG_EV_STREAM_EXIT &&
                            ag_find_i64(p, h->len, AG_A_EXIT_CODE, &v) == 0 && v >= INT32_MIN &&
                            v <= INT32_MAX) {
                                st->has_exit = true;
                                st->exit_code = (int)v;
                        }
                        return 0;
                }
                if (c->cbs && c->cbs->on_event) {
                        pthread_mutex_unlock(&c->lock);
                        c->cbs->on_event(c->cb_data, (enum ag_event)h->op, p, h->len);
                        pthread_mutex_lock(&c->lock);
                }
                return 0;
        case AG_K_WINDOW:
                st = stream_find(c, h->stream);
                if (!st)
                        return 0;
                if (h->len != 4)
                        return -EPROTO;
                st->send_credit +=
                        (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
                if (st->send_credit > CREDIT_MAX)
                        return -EPROTO;
                r = stream_pump(c, st);
                return r < 0 ? r : 0;
        case AG_K_CLOSE:
                st = stream_find(c, h->stream);
                if (!st)
                        return 0;
                if (h->op == AG_CHAN_ALL)
                        st->ended = true;
                else if (h->op == AG_CHAN_STDOUT || h->op == AG_CHAN_STDERR)
                        st->down_eof[h->op] = true;
                r = stream_pump(c, st);
                return r < 0 ? r : 0;
        default:
                return -EPROTO; /* the agent sends no REQ */
        }
}

/* Reads what the connection has and handles every whole frame. */
static void conn_read_frames(struct ag_client *c)
{
        uint8_t buf[64 << 10];
        struct ag_hdr h;
        const uint8_t *p;
        ssize_t n;
        int r;

        n = conn_read(c, buf, sizeof(buf));
        if (n < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        conn_fail(c, -errno);
                return;
        }
        if (n == 0) {
                conn_fail(c, 0);
                return;
        }
        r = ag_reader_feed(&c->reader, buf, (size_t)n);
        while (r == 0 && !c->closed && (r = ag_reader_next(&c->reader, &h, &p)) == 1)
                r = on_frame(c, &h, p);
        if (r < 0)
                conn_fail(c, r);
}

static void conn_flush(struct ag_client *c)
{
        while (!c->closed && sbuf_pending(&c->outq)) {
                ssize_t n = conn_write(c, c->outq.d + c->outq.off, sbuf_pending(&c->outq));

                if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                conn_fail(c, -errno);
                        return;
                }
                sbuf_consume(&c->outq, (size_t)n);
        }
}

/* ---- the I/O thread ---- */

enum { W_UP, W_OUT1, W_OUT2, W_EXIT };

struct slot {
        struct stream *st;
        int what;
        bool reading;
};

static int add_pfd(struct pollfd **pfds, struct slot **slots, size_t *n, size_t *cap, int fd,
                   short events, struct stream *st, int what, bool reading)
{
        if (*n == *cap) {
                size_t nc = *cap ? *cap * 2 : 16;
                struct pollfd *np = realloc(*pfds, nc * sizeof(**pfds));

                if (!np)
                        return -ENOMEM;
                *pfds = np;
                struct slot *ns = realloc(*slots, nc * sizeof(**slots));

                if (!ns)
                        return -ENOMEM;
                *slots = ns;
                *cap = nc;
        }
        (*pfds)[*n] = (struct pollfd){.fd = fd, .events = events};
        (*slots)[*n] = (struct slot){st, what, reading};
        (*n)++;
        return 0;
}

static int build_pollset(struct ag_client *c, struct pollfd **pfds, struct slot **slots, size_t *n,
                         size_t *cap)
{
        int r;

        *n = 0;
        r = add_pfd(pfds, slots, n, cap, c->wake_fd, POLLIN, NULL, 0, false);
        if (r < 0 || c->closed)
                return r;
        if (c->tls)
                r = add_pfd(pfds, slots, n, cap, c->fd,
                            (short)(c->rd_want | (sbuf_pending(&c->outq) ? c->wr_want : 0)), NULL,
                            0, false);
        else
                r = add_pfd(pfds, slots, n, cap, c->fd,
                            POLLIN | (sbuf_pending(&c->outq) ? POLLOUT : 0), NULL, 0, false);
        for (struct stream *st = c->streams; st && r == 0; st = st->next) {
                bool rd = stream_wants_read(c, st);

                if (!st->open)
                        continue;
                if (st->type == ST_EXEC) {
                        if (rd)
                                r = add_pfd(pfds, slots, n, cap, st->up_fd, POLLIN, st, W_UP, rd);
                        for (int ch = 1; ch <= 2 && r == 0; ch++) {
                                if (st->out_fd[ch] >= 0)
                                        r = add_pfd(pfds, slots, n, cap, st->out_fd[ch],
                                                    sbuf_pending(&st->down[ch]) ? POLLOUT : 0, st,
                                                    ch == 1 ? W_OUT1 : W_OUT2, false);
                        }
                        if (r == 0 && st->exit_fd >= 0)
                                r = add_pfd(pfds, slots, n, cap, st->exit_fd, st->tty ? POLLIN : 0,
                                            st, W_EXIT, false);
                } else {
                        short ev = (short)((rd ? POLLIN : 0) |
                                           (sbuf_pending(&st->down[1]) ? POLLOUT : 0));

                        /* A dial socket we shut for writing may report POLLHUP for the
                           caller's SHUT_WR alone: then only poll it to read. */
                        if (st->type == ST_DIAL && st->down_done[1] && !ev)
                                continue;
                        r = add_pfd(pfds, slots, n, cap, st->up_fd, ev, st, W_UP, rd);
                }
        }
        return r;
}

/* A packet on a tty exec's exit socket: rows and cols to resize its terminal to. */
static void exit_fd_read(struct ag_client *c, struct stream *st)
{
        unsigned short sz[2];
        ssize_t n = recv(st->exit_fd, sz, sizeof(sz), MSG_DONTWAIT);
        struct ag_buf b;

        if (n == 0) {
                st->gone = true;
                return;
        }
        if (n != (ssize_t)sizeof(sz))
                return;
        ag_buf_init(&b);
        ag_put_u64(&b, AG_A_ROWS, sz[0]);
        ag_put_u64(&b, AG_A_COLS, sz[1]);
        if (!b.err)
                queue_frame(c, AG_K_REQ, AG_OP_RESIZE, st->id, new_id(c), b.data, b.len);
        ag_buf_done(&b);
}

static void *io_thread(void *arg)
{
        struct ag_client *c = arg;
        struct pollfd *pfds = NULL;
        struct slot *slots = NULL;
        size_t n = 0, cap = 0;
        bool pending;

        pthread_mutex_lock(&c->lock);
        while (!c->stop) {
                conn_flush(c);
                if (build_pollset(c, &pfds, &slots, &n, &cap) < 0) {
                        conn_fail(c, -ENOMEM);
                        continue;
                }
                /* Decrypted bytes OpenSSL holds are no event for poll(): do not wait then. */
                pending = c->tls && !c->closed && ag_tls_conn_pending(c->tls);
                pthread_mutex_unlock(&c->lock);
                if (poll(pfds, n, pending ? 0 : -1) < 0 && errno != EINTR) {
                        pthread_mutex_lock(&c->lock);
                        conn_fail(c, -errno);
                        continue;
                }
                pthread_mutex_lock(&c->lock);
                if (pfds[0].revents & POLLIN) {
                        uint64_t v;

                        (void)!read(c->wake_fd, &v, sizeof(v));
                }
                if (c->stop || c->closed)
                        continue;
                /* Streams first: frames may free them, and the slots point at them. */
                for (size_t i = 2; i < n; i++) {
                        struct stream *st = slots[i].st;
                        short rev = pfds[i].revents;

                        if (!rev)
                                continue;
                        if (slots[i].what == W_EXIT && (rev & POLLIN)) {
                                exit_fd_read(c, st);
                        } else if (slots[i].what != W_UP) {
                                if (rev & (POLLHUP | POLLERR))
                                        st->gone = true;
                        } else if (slots[i].reading) {
                                st->up_ready = true;
                        } else if (rev & (POLLHUP | POLLERR)) {
                                /* A socket we did not read hung up: the caller closed it. */
                                st->gone = true;
                        }
                }
                for (struct stream *st = c->streams, *next; st; st = next) {
                        next = st->next;
                        if (stream_pump(c, st) < 0) {
                                conn_fail(c, -ENOMEM);
                                break;
                        }
                }
                /* TLS: any event may be the one a read waited for (POLLOUT too). */
                if (!c->closed && (c->tls ? pfds[1].revents || pending
                                          : pfds[1].revents & (POLLIN | POLLHUP | POLLERR)))
                        conn_read_frames(c);
        }
        pthread_mutex_unlock(&c->lock);
        free(pfds);
        free(slots);
        return NULL;
}

/* ---- API ---- */

/* Starts a client on @fd, or on @tls (whose socket @fd is) when not NULL: owns both. */
static int client_start(int fd, struct ag_tls_conn *tls, const struct ag_client_ops *cbs,
                        void *cb_data, struct ag_client **ret, struct sh_error *err)
{
        struct ag_client *c;
        int r, fl;

        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
                r = sh_err(err, -errno, "agent connection: fcntl");
                goto fail;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                r = sh_err(err, -ENOMEM, "agent client");
                goto fail;
        }
        c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->wake_fd < 0) {
                r = sh_err(err, -errno, "agent client: eventfd");
                free(c);
                goto fail;
        }
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->idle, NULL);
        ag_reader_init(&c->reader);
        c->cbs = cbs;
        c->cb_data = cb_data;
        c->open_timeout_ms = AG_CLIENT_OPEN_TIMEOUT_MS;
        c->fd = fd;
        c->tls = tls;
        c->rd_want = POLLIN;
        c->wr_want = POLLOUT;
        r = -pthread_create(&c->thread, NULL, io_thread, c);
        if (r < 0) {
                close(c->wake_fd);
                ag_reader_done(&c->reader);
                pthread_cond_destroy(&c->idle);
                pthread_mutex_destroy(&c->lock);
                free(c);
                r = sh_err(err, r, "agent client: thread");
                goto fail;
        }
        *ret = c;
        return 0;
fail:
        if (tls)
                ag_tls_conn_free(tls);
        else
                close(fd);
        return r;
}

int ag_client_new(int fd, const struct ag_client_ops *cbs, void *cb_data, struct ag_client **ret,
                  struct sh_error *err)
{
        return client_start(fd, NULL, cbs, cb_data, ret, err);
}

int ag_client_new_tls(struct ag_tls_conn *conn, const struct ag_client_ops *cbs, void *cb_data,
                      struct ag_client **ret, struct sh_error *err)
{
        return client_start(ag_tls_conn_fd(conn), conn, cbs, cb_data, ret, err);
}

void ag_client_free(struct ag_client *c)
{
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        wake(c);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);

        pthread_mutex_lock(&c->lock);
        conn_fail(c, -ECANCELED);
        while (c->users)
                pthread_cond_wait(&c->idle, &c->lock);
        pthread_mutex_unlock(&c->lock);

        if (c->tls)
                ag_tls_conn_free(c->tls); /* closes c->fd */
        else
                close(c->fd);
        close(c->wake_fd);
        ag_reader_done(&c->reader);
        sbuf_done(&c->outq);
        pthread_cond_destroy(&c->idle);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

bool ag_client_connected(struct ag_client *c)
{
        bool up;

        pthread_mutex_lock(&c->lock);
        up = !c->closed && !c->stop;
        pthread_mutex_unlock(&c->lock);
        return up;
}

static bool mono_after(const struct timespec *t)
{
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static void deadline_after(struct timespec *ts, unsigned ms)
{
        clock_gettime(CLOCK_MONOTONIC, ts);
        ts->tv_sec += ms / 1000;
        ts->tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts->tv_nsec >= 1000000000L) {
                ts->tv_sec++;
                ts->tv_nsec -= 1000000000L;
        }
}

/*
 * Sends REQ @op on @stream with payload @attrs and waits. Takes @st (the stream the REQ
 * opens, or NULL): from here the client owns it, whatever happens.
 */
static int call_run(struct ag_client *c, uint16_t op, uint32_t stream, struct stream *st,
                    const struct ag_buf *attrs, unsigned timeout_ms, int cancel_fd,
                    uint8_t **ret_payload, size_t *ret_len, struct sh_error *err)
{
        struct call call = {0};
        pthread_condattr_t ca;
        struct timespec deadline;
        int r;

        if (attrs && attrs->err) {
                stream_free(st);
                return sh_err(err, attrs->err, "agent request %u: building it", op);
        }
        if (attrs && attrs->len > AG_MAX_PAYLOAD) {
                stream_free(st);
                return sh_err(err, -EMSGSIZE, "agent request %u: %zu bytes", op, attrs->len);
        }
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&call.cond, &ca);
        pthread_condattr_destroy(&ca);
        if (timeout_ms)
                deadline_after(&deadline, timeout_ms);

        pthread_mutex_lock(&c->lock);
        c->users++;
        if (c->closed || c->stop) {
                r = -ECONNRESET;
                stream_free(st);
                goto out;
        }
        call.id = new_id(c);
        r = queue_frame(c, AG_K_REQ, op, stream, call.id, attrs ? attrs->data : NULL,
                        attrs ? attrs->len : 0);
        if (r < 0) {
                stream_free(st);
                goto out;
        }
        if (st) {
                st->id = stream;
                st->next = c->streams;
                c->streams = st;
                call.st = st;
        }
        call.next = c->calls;
        c->calls = &call;
        wake(c);
        while (!call.done) {
                bool cancelled = false;

                if (cancel_fd >= 0) {
                        /* Looked at every 50 ms: the caller's client may give up. */
                        struct timespec slice;
                        struct pollfd pfd = {.fd = cancel_fd, .events = POLLIN};

                        deadline_after(&slice, 50);
                        if (timeout_ms &&
                            (slice.tv_sec > deadline.tv_sec ||
                             (slice.tv_sec == deadline.tv_sec && slice.tv_nsec > deadline.tv_nsec)))
                                slice = deadline;
                        pthread_cond_timedwait(&call.cond, &c->lock, &slice);
                        if (call.done)
                                break;
                        cancelled = poll(&pfd, 1, 0) > 0;
                        if (!cancelled && !(timeout_ms && mono_after(&deadline)))
                                continue;
                } else if (!timeout_ms) {
                        pthread_cond_wait(&call.cond, &c->lock);
                        continue;
                } else if (pthread_cond_timedwait(&call.cond, &c->lock, &deadline) != ETIMEDOUT) {
                        continue;
                }
                if (!call.done) {
                        for (struct call **pp = &c->calls; *pp; pp = &(*pp)->next) {
                                if (*pp == &call) {
                                        *pp = call.next;
                                        break;
                                }
                        }
                        if (call.st)
                                call.st->abandoned = true;
                        /* A request run on a stream of its own (an EXEC_SYNC): its CLOSE
                         * has the agent kill what the request started. */
                        if (stream && !call.st &&
                            queue_frame(c, AG_K_CLOSE, AG_CHAN_ALL, stream, 0, NULL, 0) == 0)
                                wake(c);
                        call_finish(&call, cancelled ? -ECANCELED : -ETIMEDOUT);
                }
        }
        r = call.r;
out:
        if (--c->users == 0)
                pthread_cond_broadcast(&c->idle);
        pthread_mutex_unlock(&c->lock);
        pthread_cond_destroy(&call.cond);
        if (r < 0) {
                free(call.payload);
                if (r == -ETIMEDOUT)
                        return sh_err(err, r, "agent request %u: no answer in %u ms", op,
                                      timeout_ms);
                if (r == -ECANCELED)
                        return sh_err(err, r, "agent request %u: cancelled", op);
                if (r == -ECONNRESET)
                        return sh_err(err, r, "agent request %u: connection lost", op);
                if (call.msg[0])
                        return sh_err(err, r, "agent: %s", call.msg);
                return sh_err(err, r, "agent request %u failed", op);
        }
        if (ret_payload) {
                *ret_payload = call.payload;
                *ret_len = call.len;
        } else {
                free(call.payload);
        }
        return 0;
}

int ag_client_call(struct ag_client *c, uint16_t op, const struct ag_buf *attrs,
                   unsigned timeout_ms, uint8_t **ret_payload, size_t *ret_len,
                   struct sh_error *err)
{
        return call_run(c, op, 0, NULL, attrs, timeout_ms, -1, ret_payload, ret_len, err);
}

static uint32_t new_stream_id(struct ag_client *c, unsigned *ret_timeout_ms);

int ag_client_call_cancel(struct ag_client *c, uint16_t op, const struct ag_buf *attrs,
                          unsigned timeout_ms, int cancel_fd, uint8_t **ret_payload,
                          size_t *ret_len, struct sh_error *err)
{
        unsigned open_ms;
        /* A stream id of its own: given up on, the request is closed at the agent. */
        uint32_t sid = new_stream_id(c, &open_ms);

        return call_run(c, op, sid, NULL, attrs, timeout_ms, cancel_fd, ret_payload, ret_len, err);
}

int ag_client_send(struct ag_client *c, uint16_t op, const struct ag_buf *attrs,
                   struct sh_error *err)
{
        int r;

        if (attrs && (attrs->err || attrs->len > AG_MAX_PAYLOAD))
                return sh_err(err, attrs->err ? attrs->err : -EMSGSIZE, "agent request %u", op);
        pthread_mutex_lock(&c->lock);
        if (c->closed || c->stop)
                r = -ECONNRESET;
        else
                r = queue_frame(c, AG_K_REQ, op, 0, new_id(c), attrs ? attrs->data : NULL,
                                attrs ? attrs->len : 0);
        if (r == 0)
                wake(c);
        pthread_mutex_unlock(&c->lock);
        return r < 0 ? sh_err(err, r, "agent request %u: not sent", op) : 0;
}

void ag_client_set_open_timeout(struct ag_client *c, unsigned timeout_ms)
{
        pthread_mutex_lock(&c->lock);
        c->open_timeout_ms = timeout_ms;
        pthread_mutex_unlock(&c->lock);
}

/* A stream id not in use, and the opening timeout in *@ret_timeout_ms. */
static uint32_t new_stream_id(struct ag_client *c, unsigned *ret_timeout_ms)
{
        uint32_t id;

        pthread_mutex_lock(&c->lock);
        *ret_timeout_ms = c->open_timeout_ms;
        do {
                if (++c->next_stream == 0)
                        c->next_stream = 1;
                id = c->next_stream;
        } while (stream_find(c, id));
        pthread_mutex_unlock(&c->lock);
        return id;
}

/* A socketpair: *@caller blocking, *@ours non-blocking, both CLOEXEC. */
static int pair(int type, int *caller, int *ours)
{
        int sv[2];

        if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        if (fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0) {
                int r = -errno;

                close(sv[0]);
                close(sv[1]);
                return r;
        }
        *caller = sv[0];
        *ours = sv[1];
        return 0;
}

int ag_client_exec(struct ag_client *c, const char *ctr_id, const char *const *argv, bool tty,
                   bool want_stdin, unsigned rows, unsigned cols, struct ag_exec_fds *ret,
                   struct sh_error *err)
{
        _cleanup_close_ int in = -EBADF, out = -EBADF, errfd = -EBADF, ex = -EBADF;
        struct stream *st = stream_new(ST_EXEC);
        unsigned timeout_ms;
        struct ag_buf b;
        uint32_t sid;
        int r = 0;

        if (!st)
                return sh_err(err, -ENOMEM, "exec stream");
        if (want_stdin)
                r = pair(SOCK_STREAM, &in, &st->up_fd);
        else
                st->up_eof = true;
        if (r == 0)
                r = pair(SOCK_STREAM, &out, &st->out_fd[1]);
        if (r == 0 && !tty)
                r = pair(SOCK_STREAM, &errfd, &st->out_fd[2]);
        if (r == 0)
                r = pair(SOCK_SEQPACKET, &ex, &st->exit_fd);
        st->tty = tty;
        if (r < 0) {
                stream_free(st);
                return sh_err(err, r, "exec stream: socketpair");
        }
        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, ctr_id);
        ag_put_strv(&b, AG_A_ARGV, argv);
        ag_put_u64(&b, AG_A_TTY, tty);
        ag_put_u64(&b, AG_A_STDIN, want_stdin);
        ag_put_u64(&b, AG_A_ROWS, rows);
        ag_put_u64(&b, AG_A_COLS, cols);
        sid = new_stream_id(c, &timeout_ms);
        r = call_run(c, AG_OP_EXEC, sid, st, &b, timeout_ms, -1, NULL, NULL, err);
        ag_buf_done(&b);
        if (r < 0)
                return r;
        *ret = (struct ag_exec_fds){
                .stdin_fd = want_stdin ? TAKE_FD(in) : -1,
                .stdout_fd = TAKE_FD(out),
                .stderr_fd = tty ? -1 : TAKE_FD(errfd),
                .exit_fd = TAKE_FD(ex),
                .stream = sid,
        };
        return 0;
}

int ag_client_open_stream(struct ag_client *c, uint16_t op, const struct ag_buf *attrs,
                          unsigned timeout_ms, struct ag_exec_fds *ret, uint8_t **ret_payload,
                          size_t *ret_len, struct sh_error *err)
{
        _cleanup_close_ int in = -EBADF, out = -EBADF, errfd = -EBADF, ex = -EBADF;
        struct stream *st = stream_new(ST_EXEC);
        unsigned open_ms;
        uint32_t sid;
        int r;

        if (!st)
                return sh_err(err, -ENOMEM, "stream %u", op);
        r = pair(SOCK_STREAM, &in, &st->up_fd);
        if (r == 0)
                r = pair(SOCK_STREAM, &out, &st->out_fd[1]);
        if (r == 0)
                r = pair(SOCK_STREAM, &errfd, &st->out_fd[2]);
        if (r == 0)
                r = pair(SOCK_SEQPACKET, &ex, &st->exit_fd);
        if (r < 0) {
                stream_free(st);
                return sh_err(err, r, "stream %u: socketpair", op);
        }
        sid = new_stream_id(c, &open_ms);
        r = call_run(c, op, sid, st, attrs, timeout_ms, -1, ret_payload, ret_len, err);
        if (r < 0)
                return r;
        *ret = (struct ag_exec_fds){
                .stdin_fd = TAKE_FD(in),
                .stdout_fd = TAKE_FD(out),
                .stderr_fd = TAKE_FD(errfd),
                .exit_fd = TAKE_FD(ex),
                .stream = sid,
        };
        return 0;
}

int ag_client_resize(struct ag_client *c, uint32_t stream, unsigned rows, unsigned cols,
                     struct sh_error *err)
{
        struct ag_buf b;
        int r;

        ag_buf_init(&b);
        ag_put_u64(&b, AG_A_ROWS, rows);
        ag_put_u64(&b, AG_A_COLS, cols);
        pthread_mutex_lock(&c->lock);
        if (c->closed || c->stop)
                r = -ECONNRESET;
        else
                r = b.err
                            ?: queue_frame(c, AG_K_REQ, AG_OP_RESIZE, stream, new_id(c), b.data,
                                           b.len);
        if (r == 0)
                wake(c);
        pthread_mutex_unlock(&c->lock);
        ag_buf_done(&b);
        return r < 0 ? sh_err(err, r, "agent: resize stream %u", stream) : 0;
}

int ag_client_attach(struct ag_client *c, const char *ctr_id, int *ret_fd, bool *ret_tty,
                     struct sh_error *err)
{
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ uint8_t *resp = NULL;
        struct stream *st = stream_new(ST_ATTACH);
        unsigned timeout_ms;
        uint32_t sid;
        size_t len = 0;
        struct ag_buf b;
        int64_t tty = 0;
        int r;

        if (!st)
                return sh_err(err, -ENOMEM, "attach stream");
        r = pair(SOCK_SEQPACKET, &fd, &st->up_fd);
        if (r < 0) {
                stream_free(st);
                return sh_err(err, r, "attach stream: socketpair");
        }
        st->out_fd[1] = st->up_fd;
        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, ctr_id);
        sid = new_stream_id(c, &timeout_ms);
        r = call_run(c, AG_OP_ATTACH, sid, st, &b, timeout_ms, -1, &resp, &len, err);
        ag_buf_done(&b);
        if (r < 0)
                return r;
        (void)ag_find_i64(resp, len, AG_A_TTY, &tty);
        *ret_tty = tty != 0;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int ag_client_dial(struct ag_client *c, uint16_t port, int *ret_fd, struct sh_error *err)
{
        _cleanup_close_ int fd = -EBADF;
        struct stream *st = stream_new(ST_DIAL);
        unsigned timeout_ms;
        struct ag_buf b;
        uint32_t sid;
        int r;

        if (!st)
                return sh_err(err, -ENOMEM, "dial stream");
        r = pair(SOCK_STREAM, &fd, &st->up_fd);
        if (r < 0) {
                stream_free(st);
                return sh_err(err, r, "dial stream: socketpair");
        }
        st->out_fd[1] = st->up_fd;
        st->down_eof[2] = st->down_done[2] = true;
        ag_buf_init(&b);
        ag_put_u64(&b, AG_A_PORT, port);
        sid = new_stream_id(c, &timeout_ms);
        r = call_run(c, AG_OP_PORT_DIAL, sid, st, &b, timeout_ms, -1, NULL, NULL, err);
        ag_buf_done(&b);
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        return 0;
}
