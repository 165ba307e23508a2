/*
 * Unit tests of backends/agent/client.c against a fake agent: a thread on the other end of a
 * socketpair that speaks the protocol with proto.c, blocking, and checks the host's side of
 * the flow control (it counts every DATA past the credit it granted).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "error.h"
#include "proto.h"

#define BIG       (1u << 20)
#define N_STREAMS 32

enum fkind { F_ECHO_EXEC, F_CAT, F_BIG, F_FLOOD, F_HANG, F_ATTACH, F_DIAL };

struct fstream {
        uint32_t id;
        enum fkind kind;
        bool active, stdin_eof;
        uint64_t host_credit; /* what the host may still send us */
        uint64_t my_credit;   /* what we may still send */
        struct ag_buf pend;   /* to echo back */
        size_t big_left;
};

struct fake {
        int fd;
        pthread_t thread;
        pthread_mutex_t lock;
        struct fstream s[N_STREAMS];
        int violations, abandoned, resizes;
        unsigned rows, cols;
        uint64_t max_host_inflight;
        uint32_t late_stream, late_id; /* an ATTACH answered only at the next PING */
};

static void fsend(struct fake *f, uint8_t kind, uint16_t op, uint32_t stream, uint32_t id,
                  const struct ag_buf *attrs)
{
        struct ag_buf b;
        size_t off = 0;

        ag_buf_init(&b);
        ag_frame_begin(&b, kind, op, stream, id);
        if (attrs)
                ag_put_raw(&b, attrs->data, attrs->len);
        if (ag_frame_end(&b) < 0)
                abort();
        while (off < b.len) {
                ssize_t n = write(f->fd, b.data + off, b.len - off);

                if (n <= 0)
                        break; /* the host went away */
                off += (size_t)n;
        }
        ag_buf_done(&b);
}

static void fsend_raw(struct fake *f, uint8_t kind, uint16_t op, uint32_t stream, const void *p,
                      size_t n)
{
        struct ag_buf b;

        ag_buf_init(&b);
        ag_put_raw(&b, p, n);
        fsend(f, kind, op, stream, 0, &b);
        ag_buf_done(&b);
}

static void fwindow(struct fake *f, uint32_t stream, uint32_t v)
{
        uint8_t w[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

        fsend_raw(f, AG_K_WINDOW, AG_CHAN_ALL, stream, w, 4);
}

static struct fstream *fstream_get(struct fake *f, uint32_t id)
{
        for (size_t i = 0; i < N_STREAMS; i++)
                if (f->s[i].active && f->s[i].id == id)
                        return &f->s[i];
        return NULL;
}

static struct fstream *fstream_add(struct fake *f, uint32_t id, enum fkind kind)
{
        for (size_t i = 0; i < N_STREAMS; i++) {
                if (!f->s[i].active) {
                        struct fstream *s = &f->s[i];

                        ag_buf_done(&s->pend);
                        memset(s, 0, sizeof(*s));
                        s->id = id;
                        s->kind = kind;
                        s->active = true;
                        s->host_credit = s->my_credit = AG_WINDOW_INIT;
                        ag_buf_init(&s->pend);
                        return s;
                }
        }
        abort();
}

static void fstream_end(struct fake *f, struct fstream *s, int code)
{
        struct ag_buf b;

        fsend(f, AG_K_CLOSE, AG_CHAN_STDOUT, s->id, 0, NULL);
        if (s->kind != F_DIAL && s->kind != F_ATTACH) {
                fsend(f, AG_K_CLOSE, AG_CHAN_STDERR, s->id, 0, NULL);
                ag_buf_init(&b);
                ag_put_u64(&b, AG_A_EXIT_CODE, code);
                fsend(f, AG_K_EVENT, AG_EV_STREAM_EXIT, s->id, 0, &b);
                ag_buf_done(&b);
        }
        fsend(f, AG_K_CLOSE, AG_CHAN_ALL, s->id, 0, NULL);
        s->active = false;
}

/* Sends what the credit allows: echoes, the big output. */
static void fstream_pump(struct fake *f, struct fstream *s)
{
        static uint8_t pattern[AG_MAX_DATA];

        while (s->pend.len && s->my_credit) {
                size_t n = s->pend.len < s->my_credit ? s->pend.len : s->my_credit;

                if (n > AG_MAX_DATA)
                        n = AG_MAX_DATA;
                fsend_raw(f, AG_K_DATA, AG_CHAN_STDOUT, s->id, s->pend.data, n);
                s->my_credit -= n;
                memmove(s->pend.data, s->pend.data + n, s->pend.len - n);
                s->pend.len -= n;
                fwindow(f, s->id, (uint32_t)n); /* consumed: the host may send more */
                s->host_credit += n;
        }
        while (s->kind == F_BIG && s->big_left && s->my_credit) {
                size_t n = s->big_left < s->my_credit ? s->big_left : s->my_credit;
                size_t done = BIG - s->big_left;

                if (n > AG_MAX_DATA)
                        n = AG_MAX_DATA;
                for (size_t i = 0; i < n; i++)
                        pattern[i] = (uint8_t)((done + i) * 7);
                fsend_raw(f, AG_K_DATA, AG_CHAN_STDOUT, s->id, pattern, n);
                s->my_credit -= n;
                s->big_left -= n;
        }
        if (s->kind == F_BIG && !s->big_left)
                fstream_end(f, s, 0);
        else if (s->kind == F_CAT && s->stdin_eof && !s->pend.len)
                fstream_end(f, s, 0);
        else if (s->kind == F_DIAL && s->stdin_eof && !s->pend.len)
                fstream_end(f, s, 0);
}

static void fake_req(struct fake *f, const struct ag_hdr *h, const uint8_t *p)
{
        struct ag_buf b;
        struct fstream *s;
        char *id = NULL, *arg0 = NULL;
        int64_t v;

        ag_buf_init(&b);
        switch (h->op) {
        case AG_OP_PING:
                if (f->late_id) {
                        fsend(f, AG_K_RESP, AG_OP_ATTACH, f->late_stream, f->late_id, NULL);
                        fstream_add(f, f->late_stream, F_ATTACH);
                        f->late_id = 0;
                }
                if (ag_find_i64(p, h->len, AG_A_SEQ, &v) < 0)
                        v = 0;
                ag_put_u64(&b, AG_A_UPTIME_NS, v * 2);
                fsend(f, AG_K_RESP, h->op, h->stream, h->id, &b);
                break;
        case AG_OP_CTR_STATUS:
                ag_put_u64(&b, AG_A_ERRNO, ENOENT);
                ag_put_str(&b, AG_A_ERRMSG, "no such container");
                fsend(f, AG_K_RESP, h->op, h->stream, h->id, &b);
                break;
        case AG_OP_LOG_REOPEN:
                break; /* never answered */
        case AG_OP_LOG_ACK:
                ag_put_str(&b, AG_A_ID, "c1");
                fsend(f, AG_K_EVENT, AG_EV_OOM, 0, 0, &b);
                fsend(f, AG_K_RESP, h->op, h->stream, h->id, NULL);
                break;
        case AG_OP_EXEC:
                (void)ag_find_str(p, h->len, AG_A_ARGV, &arg0);
                fsend(f, AG_K_RESP, h->op, h->stream, h->id, NULL);
                if (!strcmp(arg0, "echo")) {
                        s = fstream_add(f, h->stream, F_ECHO_EXEC);
                        fsend_raw(f, AG_K_DATA, AG_CHAN_STDOUT, s->id, "out", 3);
                        fsend_raw(f, AG_K_DATA, AG_CHAN_STDERR, s->id, "err", 3);
                        fstream_end(f, s, 3);
                } else if (!strcmp(arg0, "cat")) {
                        fstream_add(f, h->stream, F_CAT);
                } else if (!strcmp(arg0, "big")) {
                        s = fstream_add(f, h->stream, F_BIG);
                        s->big_left = BIG;
                        fstream_pump(f, s);
                } else if (!strcmp(arg0, "flood")) {
                        static uint8_t junk[AG_MAX_DATA];

                        for (int i = 0; i < 16; i++) /* past the credit and the socket buffer */
                                fsend_raw(f, AG_K_DATA, AG_CHAN_STDOUT, h->stream, junk,
                                          sizeof(junk));
                } else {
                        fstream_add(f, h->stream, F_HANG);
                }
                break;
        case AG_OP_ATTACH:
                (void)ag_find_str(p, h->len, AG_A_ID, &id);
                if (id && !strcmp(id, "slow")) {
                        f->late_stream = h->stream;
                        f->late_id = h->id;
                        break;
                }
                if (!id || strcmp(id, "c1")) {
                        ag_put_u64(&b, AG_A_ERRNO, EINVAL);
                        fsend(f, AG_K_RESP, h->op, h->stream, h->id, &b);
                        break;
                }
                ag_put_u64(&b, AG_A_TTY, 1);
                fsend(f, AG_K_RESP, h->op, h->stream, h->id, &b);
                s = fstream_add(f, h->stream, F_ATTACH);
                fsend_raw(f, AG_K_DATA, AG_CHAN_STDOUT, s->id, "hello", 5);
                fsend_raw(f, AG_K_DATA, AG_CHAN_STDERR, s->id, "oops", 4);
                s->my_credit -= 9;
                break;
        case AG_OP_RESIZE: {
                int64_t rows = 0, cols = 0;
                char msg[64];

                (void)ag_find_i64(p, h->len, AG_A_ROWS, &rows);
                (void)ag_find_i64(p, h->len, AG_A_COLS, &cols);
                pthread_mutex_lock(&f->lock);
                f->rows = (unsigned)rows;
                f->cols = (unsigned)cols;
                f->resizes++;
                pthread_mutex_unlock(&f->lock);
                fsend(f, AG_K_RESP, h->op, h->stream, h->id, NULL);
                s = fstream_get(f, h->stream);
                if (s && s->kind == F_ATTACH) {
                        snprintf(msg, sizeof(msg), "resize %lld %lld", (long long)rows,
                                 (long long)cols);
                        ag_put_raw(&s->pend, msg, strlen(msg));
                        fstream_pump(f, s);
                }
                break;
        }
        case AG_OP_PORT_DIAL:
                fsend(f, AG_K_RESP, h->op, h->stream, h->id, NULL);
                fstream_add(f, h->stream, F_DIAL);
                break;
        default:
                ag_put_u64(&b, AG_A_ERRNO, EOPNOTSUPP);
                fsend(f, AG_K_RESP, h->op, h->stream, h->id, &b);
        }
        free(id);
        free(arg0);
        ag_buf_done(&b);
}

static void fake_frame(struct fake *f, const struct ag_hdr *h, const uint8_t *p)
{
        struct fstream *s = h->kind == AG_K_REQ ? NULL : fstream_get(f, h->stream);

        if (h->kind == AG_K_REQ) {
                fake_req(f, h, p);
                return;
        }
        if (!s)
                return;
        switch (h->kind) {
        case AG_K_DATA:
                pthread_mutex_lock(&f->lock);
                if (h->len > s->host_credit)
                        f->violations++;
                if (AG_WINDOW_INIT - (s->host_credit - h->len) > f->max_host_inflight)
                        f->max_host_inflight = AG_WINDOW_INIT - (s->host_credit - h->len);
                pthread_mutex_unlock(&f->lock);
                s->host_credit -= h->len;
                ag_put_raw(&s->pend, p, h->len);
                break;
        case AG_K_WINDOW:
                s->my_credit +=
                        (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
                break;
        case AG_K_CLOSE:
                if (h->op == AG_CHAN_ALL) {
                        s->active = false;
                        pthread_mutex_lock(&f->lock);
                        f->abandoned++;
                        pthread_mutex_unlock(&f->lock);
                        return;
                }
                if (h->op == AG_CHAN_STDIN) {
                        s->stdin_eof = true;
                        if (s->kind == F_ATTACH) {
                                ag_put_raw(&s->pend, "eof", 3);
                                fstream_pump(f, s);
                                fsend(f, AG_K_CLOSE, AG_CHAN_ALL, s->id, 0, NULL);
                                s->active = false;
                                return;
                        }
                }
                break;
        }
        fstream_pump(f, s);
}

static void *fake_main(void *arg)
{
        struct fake *f = arg;
        struct ag_reader r;
        struct ag_hdr h;
        const uint8_t *p;
        uint8_t buf[16384];
        ssize_t n;
        struct ag_buf b;

        ag_buf_init(&b);
        ag_put_u64(&b, AG_A_VERSION, AG_VERSION);
        ag_put_str(&b, AG_A_BOOT_ID, "boot-1");
        fsend(f, AG_K_EVENT, AG_EV_READY, 0, 0, &b);
        ag_buf_done(&b);
        ag_reader_init(&r);
        while ((n = read(f->fd, buf, sizeof(buf))) > 0) {
                int rc;

                if (ag_reader_feed(&r, buf, (size_t)n) < 0)
                        abort();
                while ((rc = ag_reader_next(&r, &h, &p)) == 1)
                        fake_frame(f, &h, p);
                if (rc < 0) {
                        pthread_mutex_lock(&f->lock);
                        f->violations++;
                        pthread_mutex_unlock(&f->lock);
                        break;
                }
        }
        ag_reader_done(&r);
        for (size_t i = 0; i < N_STREAMS; i++)
                ag_buf_done(&f->s[i].pend);
        return NULL;
}

/* ---- the host side ---- */

struct host {
        pthread_mutex_t lock;
        int events, closed_calls, closed_reason;
        enum ag_event last_ev;
        char last_id[16];
};

static void on_event(void *data, enum ag_event ev, const uint8_t *payload, size_t len)
{
        struct host *h = data;
        char *id = NULL;

        pthread_mutex_lock(&h->lock);
        h->events++;
        h->last_ev = ev;
        if (ag_find_str(payload, len, AG_A_ID, &id) == 0)
                snprintf(h->last_id, sizeof(h->last_id), "%s", id);
        else if (ag_find_str(payload, len, AG_A_BOOT_ID, &id) == 0)
                snprintf(h->last_id, sizeof(h->last_id), "%s", id);
        free(id);
        pthread_mutex_unlock(&h->lock);
}

static void on_closed(void *data, int reason)
{
        struct host *h = data;

        pthread_mutex_lock(&h->lock);
        h->closed_calls++;
        h->closed_reason = reason;
        pthread_mutex_unlock(&h->lock);
}

static const struct ag_client_ops ops = {.on_event = on_event, .on_closed = on_closed};

struct env {
        struct fake fake;
        struct host host;
        struct ag_client *c;
};

static int setup(void **state)
{
        struct env *e = calloc(1, sizeof(*e));
        int sv[2];

        assert_non_null(e);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        pthread_mutex_init(&e->fake.lock, NULL);
        pthread_mutex_init(&e->host.lock, NULL);
        e->fake.fd = sv[1];
        assert_int_equal(pthread_create(&e->fake.thread, NULL, fake_main, &e->fake), 0);
        assert_int_equal(ag_client_new(sv[0], &ops, &e->host, &e->c, NULL), 0);
        *state = e;
        return 0;
}

static int teardown(void **state)
{
        struct env *e = *state;

        ag_client_free(e->c);
        shutdown(e->fake.fd, SHUT_RDWR);
        pthread_join(e->fake.thread, NULL);
        close(e->fake.fd);
        pthread_mutex_destroy(&e->fake.lock);
        pthread_mutex_destroy(&e->host.lock);
        free(e);
        return 0;
}

static int fake_get(struct env *e, int *field)
{
        int v;

        pthread_mutex_lock(&e->fake.lock);
        v = *field;
        pthread_mutex_unlock(&e->fake.lock);
        return v;
}

static int host_get(struct env *e, int *field)
{
        int v;

        pthread_mutex_lock(&e->host.lock);
        v = *field;
        pthread_mutex_unlock(&e->host.lock);
        return v;
}

/* Waits up to 5 s for *@field (under @lock) to reach @want. */
static void wait_for(pthread_mutex_t *lock, int *field, int want)
{
        for (int i = 0; i < 500; i++) {
                int v;

                pthread_mutex_lock(lock);
                v = *field;
                pthread_mutex_unlock(lock);
                if (v >= want)
                        return;
                usleep(10000);
        }
        fail_msg("timed out waiting for %d", want);
}

static int64_t ping(struct ag_client *c, int64_t seq, struct sh_error *err)
{
        uint8_t *resp = NULL;
        size_t len = 0;
        struct ag_buf b;
        int64_t v = -1;
        int r;

        ag_buf_init(&b);
        ag_put_u64(&b, AG_A_SEQ, seq);
        r = ag_client_call(c, AG_OP_PING, &b, 5000, &resp, &len, err);
        ag_buf_done(&b);
        if (r < 0)
                return r;
        if (ag_find_i64(resp, len, AG_A_UPTIME_NS, &v) < 0)
                v = -2;
        free(resp);
        return v;
}

static void test_call_ok_and_error(void **state)
{
        struct env *e = *state;
        struct sh_error err = {0};
        struct ag_buf b;

        assert_int_equal(ping(e->c, 21, &err), 42);
        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, "nope");
        assert_int_equal(ag_client_call(e->c, AG_OP_CTR_STATUS, &b, 5000, NULL, NULL, &err),
                         -ENOENT);
        assert_non_null(strstr(err.msg, "no such container"));
        ag_buf_done(&b);
        /* NULL attrs, a payload not asked for */
        assert_int_equal(ag_client_call(e->c, AG_OP_PING, NULL, 5000, NULL, NULL, &err), 0);
        assert_true(ag_client_connected(e->c));
}

static void test_call_timeout(void **state)
{
        struct env *e = *state;
        struct sh_error err = {0};

        assert_int_equal(ag_client_call(e->c, AG_OP_LOG_REOPEN, NULL, 100, NULL, NULL, &err),
                         -ETIMEDOUT);
        /* The connection is still fine. */
        assert_int_equal(ping(e->c, 1, &err), 2);
}

static void test_call_too_big(void **state)
{
        struct env *e = *state;
        struct sh_error err = {0};
        struct ag_buf b;
        uint8_t *big = calloc(1, AG_MAX_PAYLOAD);

        assert_non_null(big);
        ag_buf_init(&b);
        ag_put_raw(&b, big, AG_MAX_PAYLOAD);
        ag_put_raw(&b, big, 1);
        assert_int_equal(ag_client_call(e->c, AG_OP_PING, &b, 1000, NULL, NULL, &err), -EMSGSIZE);
        ag_buf_done(&b);
        free(big);
}

struct pending {
        struct ag_client *c;
        int r;
};

static void *pending_call(void *arg)
{
        struct pending *p = arg;

        p->r = ag_client_call(p->c, AG_OP_LOG_REOPEN, NULL, 0, NULL, NULL, NULL);
        return NULL;
}

static void test_connection_loss(void **state)
{
        struct env *e = *state;
        struct pending p = {e->c, 1};
        pthread_t t;

        wait_for(&e->host.lock, &e->host.events, 1); /* READY */
        assert_int_equal(pthread_create(&t, NULL, pending_call, &p), 0);
        usleep(50000);
        shutdown(e->fake.fd, SHUT_RDWR);
        pthread_join(t, NULL);
        assert_int_equal(p.r, -ECONNRESET);
        wait_for(&e->host.lock, &e->host.closed_calls, 1);
        assert_int_equal(host_get(e, &e->host.closed_reason), 0);
        assert_false(ag_client_connected(e->c));
        assert_int_equal(ag_client_call(e->c, AG_OP_PING, NULL, 100, NULL, NULL, NULL),
                         -ECONNRESET);
        usleep(20000);
        assert_int_equal(host_get(e, &e->host.closed_calls), 1);
}

static void test_free_fails_pending(void **state)
{
        struct env *e = *state;
        struct pending p = {e->c, 1};
        pthread_t t;

        assert_int_equal(pthread_create(&t, NULL, pending_call, &p), 0);
        usleep(50000);
        ag_client_free(e->c);
        e->c = NULL;
        pthread_join(t, NULL);
        assert_int_equal(p.r, -ECONNRESET);
        assert_int_equal(host_get(e, &e->host.closed_calls), 0);
}

struct pinger {
        struct ag_client *c;
        int base, bad;
};

static void *pinger(void *arg)
{
        struct pinger *p = arg;

        for (int i = 0; i < 200; i++) {
                int64_t seq = p->base + i;

                if (ping(p->c, seq, NULL) != seq * 2)
                        p->bad++;
        }
        return NULL;
}

static void test_concurrent_calls(void **state)
{
        struct env *e = *state;
        struct pinger p[4];
        pthread_t t[4];

        for (int i = 0; i < 4; i++) {
                p[i] = (struct pinger){e->c, i * 100000, 0};
                assert_int_equal(pthread_create(&t[i], NULL, pinger, &p[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(p[i].bad, 0);
        }
}

static void test_events(void **state)
{
        struct env *e = *state;

        wait_for(&e->host.lock, &e->host.events, 1);
        pthread_mutex_lock(&e->host.lock);
        assert_int_equal(e->host.last_ev, AG_EV_READY);
        assert_string_equal(e->host.last_id, "boot-1");
        pthread_mutex_unlock(&e->host.lock);
        assert_int_equal(ag_client_call(e->c, AG_OP_LOG_ACK, NULL, 5000, NULL, NULL, NULL), 0);
        pthread_mutex_lock(&e->host.lock);
        assert_int_equal(e->host.events, 2); /* the event came before the RESP */
        assert_int_equal(e->host.last_ev, AG_EV_OOM);
        assert_string_equal(e->host.last_id, "c1");
        pthread_mutex_unlock(&e->host.lock);
}

/* Reads @fd to EOF into a malloc'd buffer. */
static uint8_t *read_all(int fd, size_t *ret_len)
{
        size_t len = 0, cap = 4096;
        uint8_t *b = malloc(cap);
        ssize_t n;

        assert_non_null(b);
        for (;;) {
                if (len == cap) {
                        cap *= 2;
                        b = realloc(b, cap);
                        assert_non_null(b);
                }
                n = read(fd, b + len, cap - len > 7000 ? 7000 : cap - len);
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        assert_int_equal(n, 0);
        *ret_len = len;
        return b;
}

static void test_exec_output_and_exit(void **state)
{
        const char *const argv[] = {"echo", "x", NULL};
        struct env *e = *state;
        struct ag_exec_fds fds;
        struct sh_error err = {0};
        uint8_t *out;
        size_t len;
        int code = -1;

        assert_int_equal(ag_client_exec(e->c, "c1", argv, false, false, 0, 0, &fds, &err), 0);
        assert_int_equal(fds.stdin_fd, -1);
        out = read_all(fds.stdout_fd, &len);
        assert_int_equal(len, 3);
        assert_memory_equal(out, "out", 3);
        free(out);
        out = read_all(fds.stderr_fd, &len);
        assert_int_equal(len, 3);
        assert_memory_equal(out, "err", 3);
        free(out);
        assert_int_equal(read(fds.exit_fd, &code, sizeof(code)), sizeof(code));
        assert_int_equal(code, 3);
        assert_int_equal(read(fds.exit_fd, &code, sizeof(code)), 0);
        close(fds.stdout_fd);
        close(fds.stderr_fd);
        close(fds.exit_fd);
}

struct writer {
        int fd;
        size_t n;
};

static void *writer(void *arg)
{
        struct writer *w = arg;
        uint8_t buf[10000];
        size_t off = 0;

        while (off < w->n) {
                size_t k = w->n - off < sizeof(buf) ? w->n - off : sizeof(buf);
                ssize_t n;

                for (size_t i = 0; i < k; i++)
                        buf[i] = (uint8_t)((off + i) * 13);
                n = write(w->fd, buf, k);
                if (n <= 0)
                        break;
                off += (size_t)n;
        }
        close(w->fd); /* stdin EOF */
        return NULL;
}

static void test_exec_stdin_round_trip_1mib(void **state)
{
        const char *const argv[] = {"cat", NULL};
        struct env *e = *state;
        struct ag_exec_fds fds;
        struct writer w;
        pthread_t t;
        uint8_t *out;
        size_t len;
        int code = -1;

        assert_int_equal(ag_client_exec(e->c, "c1", argv, true, true, 24, 80, &fds, NULL), 0);
        assert_true(fds.stdin_fd >= 0);
        assert_int_equal(fds.stderr_fd, -1);
        w = (struct writer){fds.stdin_fd, BIG};
        assert_int_equal(pthread_create(&t, NULL, writer, &w), 0);
        out = read_all(fds.stdout_fd, &len);
        pthread_join(t, NULL);
        assert_int_equal(len, BIG);
        for (size_t i = 0; i < len; i++)
                if (out[i] != (uint8_t)(i * 13))
                        fail_msg("byte %zu", i);
        free(out);
        assert_int_equal(read(fds.exit_fd, &code, sizeof(code)), sizeof(code));
        assert_int_equal(code, 0);
        assert_int_equal(ag_client_resize(e->c, fds.stream, 50, 132, NULL), 0);
        close(fds.stdout_fd);
        close(fds.exit_fd);
        assert_int_equal(fake_get(e, &e->fake.violations), 0);
        pthread_mutex_lock(&e->fake.lock);
        assert_true(e->fake.max_host_inflight <= AG_WINDOW_INIT);
        pthread_mutex_unlock(&e->fake.lock);
}

static void test_exec_big_output_slow_reader(void **state)
{
        const char *const argv[] = {"big", NULL};
        struct env *e = *state;
        struct ag_exec_fds fds;
        uint8_t buf[4096];
        size_t got = 0;
        ssize_t n;
        int code = -1;

        assert_int_equal(ag_client_exec(e->c, "c1", argv, false, false, 0, 0, &fds, NULL), 0);
        usleep(100000); /* let the client fill up to the credit */
        while ((n = read(fds.stdout_fd, buf, sizeof(buf))) > 0) {
                for (ssize_t i = 0; i < n; i++)
                        if (buf[i] != (uint8_t)((got + (size_t)i) * 7))
                                fail_msg("byte %zu", got + (size_t)i);
                got += (size_t)n;
        }
        assert_int_equal(got, BIG);
        assert_int_equal(read(fds.exit_fd, &code, sizeof(code)), sizeof(code));
        assert_int_equal(code, 0);
        close(fds.stdout_fd);
        close(fds.stderr_fd);
        close(fds.exit_fd);
        assert_int_equal(host_get(e, &e->host.closed_calls), 0);
}

static void test_exec_abandon(void **state)
{
        const char *const argv[] = {"hang", NULL};
        struct env *e = *state;
        struct ag_exec_fds fds;
        int code;

        assert_int_equal(ag_client_exec(e->c, "c1", argv, false, true, 0, 0, &fds, NULL), 0);
        close(fds.exit_fd);
        wait_for(&e->fake.lock, &e->fake.abandoned, 1);
        /* The client closed the rest. */
        assert_int_equal(read(fds.stdout_fd, &code, sizeof(code)), 0);
        close(fds.stdin_fd);
        close(fds.stdout_fd);
        close(fds.stderr_fd);
}

static void test_credit_violation_closes(void **state)
{
        const char *const argv[] = {"flood", NULL};
        struct env *e = *state;
        struct ag_exec_fds fds;
        int code;

        assert_int_equal(ag_client_exec(e->c, "c1", argv, false, false, 0, 0, &fds, NULL), 0);
        wait_for(&e->host.lock, &e->host.closed_calls, 1);
        assert_int_equal(host_get(e, &e->host.closed_reason), -EPROTO);
        /* Streams die without an exit code. */
        assert_int_equal(read(fds.exit_fd, &code, sizeof(code)), 0);
        close(fds.stdout_fd);
        close(fds.stderr_fd);
        close(fds.exit_fd);
}

static ssize_t recv_pkt(int fd, uint8_t *buf, size_t n)
{
        struct pollfd p = {.fd = fd, .events = POLLIN};

        if (poll(&p, 1, 5000) != 1)
                return -1;
        return recv(fd, buf, n, 0);
}

static void test_attach(void **state)
{
        struct env *e = *state;
        struct sh_error err = {0};
        uint8_t buf[40000];
        bool tty = false;
        ssize_t n;
        int fd;

        assert_int_equal(ag_client_attach(e->c, "other", &fd, &tty, &err), -EINVAL);
        assert_int_equal(ag_client_attach(e->c, "c1", &fd, &tty, &err), 0);
        assert_true(tty);
        n = recv_pkt(fd, buf, sizeof(buf));
        assert_int_equal(n, 6);
        assert_memory_equal(buf, "\1hello", 6);
        n = recv_pkt(fd, buf, sizeof(buf));
        assert_int_equal(n, 5);
        assert_memory_equal(buf, "\2oops", 5);
        assert_int_equal(send(fd, "\0", 1, 0), 1); /* has stdin */
        assert_int_equal(send(fd, "\0abc", 4, 0), 4);
        n = recv_pkt(fd, buf, sizeof(buf));
        assert_int_equal(n, 4);
        assert_memory_equal(buf, "\1abc", 4);
        assert_int_equal(send(fd, "\4\0\120\0\30", 5, 0), 5); /* 80 x 24 */
        n = recv_pkt(fd, buf, sizeof(buf));
        assert_true(n > 0);
        buf[n] = '\0';
        assert_string_equal((char *)buf + 1, "resize 24 80");
        /* A large stdin packet comes back cut into packets of at most 32 KiB. */
        memset(buf, 'z', sizeof(buf));
        buf[0] = 0;
        assert_int_equal(send(fd, buf, 32769, 0), 32769);
        n = recv_pkt(fd, buf, sizeof(buf));
        assert_int_equal(n, 32769);
        assert_int_equal(buf[0], 1);
        assert_int_equal(send(fd, "\3", 1, 0), 1); /* stdin EOF */
        n = recv_pkt(fd, buf, sizeof(buf));
        assert_int_equal(n, 4);
        assert_memory_equal(buf, "\1eof", 4);
        n = recv_pkt(fd, buf, sizeof(buf));
        assert_int_equal(n, 0); /* the stream ended */
        close(fd);
        pthread_mutex_lock(&e->fake.lock);
        assert_int_equal(e->fake.rows, 24);
        assert_int_equal(e->fake.cols, 80);
        assert_int_equal(e->fake.violations, 0);
        pthread_mutex_unlock(&e->fake.lock);
}

static void test_attach_detach(void **state)
{
        struct env *e = *state;
        uint8_t buf[64];
        bool tty;
        int fd;

        assert_int_equal(ag_client_attach(e->c, "c1", &fd, &tty, NULL), 0);
        assert_int_equal(recv_pkt(fd, buf, sizeof(buf)), 6);
        close(fd);
        wait_for(&e->fake.lock, &e->fake.abandoned, 1);
}

static void test_open_timeout_closes_late_stream(void **state)
{
        struct env *e = *state;
        struct sh_error err = {0};
        bool tty;
        int fd = -1;

        ag_client_set_open_timeout(e->c, 100);
        assert_int_equal(ag_client_attach(e->c, "slow", &fd, &tty, &err), -ETIMEDOUT);
        assert_int_equal(fd, -1);
        /* The agent says yes only now: the client closes the stream nobody wants. */
        assert_int_equal(ping(e->c, 4, NULL), 8);
        wait_for(&e->fake.lock, &e->fake.abandoned, 1);
        assert_int_equal(host_get(e, &e->host.closed_calls), 0);
}

static void test_dial_half_close(void **state)
{
        struct env *e = *state;
        uint8_t *out;
        size_t len;
        int fd;

        assert_int_equal(ag_client_dial(e->c, 8080, &fd, NULL), 0);
        assert_int_equal(write(fd, "ping", 4), 4);
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        out = read_all(fd, &len); /* the agent's CLOSE(STDOUT) ends it */
        assert_int_equal(len, 4);
        assert_memory_equal(out, "ping", 4);
        free(out);
        close(fd);
        assert_int_equal(ping(e->c, 5, NULL), 10);
        assert_int_equal(fake_get(e, &e->fake.violations), 0);
        assert_int_equal(fake_get(e, &e->fake.abandoned), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_call_ok_and_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_call_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_call_too_big, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connection_loss, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_fails_pending, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_calls, setup, teardown),
                cmocka_unit_test_setup_teardown(test_events, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exec_output_and_exit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exec_stdin_round_trip_1mib, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exec_big_output_slow_reader, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exec_abandon, setup, teardown),
                cmocka_unit_test_setup_teardown(test_credit_violation_closes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attach, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attach_detach, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_timeout_closes_late_stream, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_dial_half_close, setup, teardown),
        };

        signal(SIGPIPE, SIG_IGN); /* as runtd: the fake agent writes to a host that left */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
