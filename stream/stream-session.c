/*
 * One upgraded streaming connection, on a thread of its own: the Kubernetes remotecommand
 * (exec, attach) and portforward protocols over SPDY/3.1 or WebSocket, shuttling bytes
 * between the client and the exec process, the container's attach socket, or TCP
 * connections inside the pod's network namespace. One poll loop; nothing here blocks
 * except that poll (and a netns dial to localhost, which answers at once).
 *
 * SPDY as the kubelet's server speaks it: the client opens every stream (SYN_STREAM with a
 * "streamtype" header), we answer each with SYN_REPLY and start the process once every
 * stream the request asked for is there. Flow-control windows are not enforced in either
 * direction: the Kubernetes clients (spdystream) neither send nor honour WINDOW_UPDATE.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <microhttpd.h>

#define SH_LOG_MODULE "stream"
#include "cleanup.h"
#include "error.h"
#include "log.h"
#include "spdy.h"
#include "stream-internal.h"
#include "strutil.h"

#define CHUNK          32768             /* bytes read from a process, socket or client at once */
#define TX_HIGH        (512 * 1024)      /* stop reading outputs while this much waits to be sent */
#define IN_HIGH        (256 * 1024)      /* stop reading the client while this much waits */
#define DRAIN_NS       (250 * 1000000LL) /* output read after the exec process exited */
#define FLUSH_NS       (5000 * 1000000LL)  /* to send the last frames */
#define LINGER_NS      (1000 * 1000000LL)  /* for the client to close after us */
#define FLUSH_CAP_NS   (60 * 1000000000LL) /* a slow but reading client, at the most */
#define DIAL_NS        (10 * 1000000000LL) /* a pod port's connect, at the most */
#define MAX_PF         128                 /* port-forward connections per session */
#define RESIZE_WAIT_NS (100 * 1000000LL)   /* for a tty's first size: clients send it at once */
#define MAX_MESSAGE    (1024 * 1024)       /* a client's DATA frame or WebSocket message */

/* The attach socket's packet kinds (stream.h, stream_ops.attach). */
enum { ATT_STDIN = 0, ATT_STDOUT = 1, ATT_STDERR = 2, ATT_STDIN_EOF = 3, ATT_RESIZE = 4 };

enum ch { CH_STDIN, CH_STDOUT, CH_STDERR, CH_ERROR, CH_RESIZE, CH_N };
static const char *const ch_names[CH_N] = {"stdin", "stdout", "stderr", "error", "resize"};

enum phase {
        P_STREAMS, /* SPDY: waiting for the client's streams */
        P_RUN,
        P_FLUSH, /* the last frames are queued: send them */
        P_LINGER /* sent and half-closed: wait for the client to close */
};

struct pf_conn {
        char reqid[64];
        uint16_t port;
        uint32_t data_sid, err_sid; /* SPDY */
        int sock;                   /* -1 until dialled, and after it closed */
        bool connecting;            /* its non-blocking connect is under way */
        long long connect_by;
        struct spdy_buf to_pod;
        bool client_fin, shut_wr, pod_eof, dialled;
};

struct sess {
        struct st_session *ss;
        struct stream_server *srv;
        struct stream_req *req;
        int fd;
        bool spdy;
        enum phase phase;
        long long deadline; /* of the phase; 0: none */
        long long last_io;
        bool client_gone;
        struct spdy_buf rx, tx;
        struct spdy_session sp;
        uint32_t last_sid;
        struct ws_parser wp;
        struct ws_buf wtmp, scratch;
        /* exec and attach */
        uint32_t sid[CH_N];
        unsigned want, have; /* bits 1 << ch */
        bool fin_sent[CH_N];
        struct spdy_buf in;
        bool in_eof, in_eof_sent;
        char resize[512];
        size_t resize_len;
        uint16_t init_w, init_h; /* a size that came before the pty */
        bool resized;
        bool tty_wait;       /* a tty exec waits a moment for the client's first size */
        long long flush_cap; /* P_FLUSH ends by then whatever the client does */
        long long resize_until;
        bool tty;
        int in_fd, out_fd, err_fd, pty_fd, pid, pidfd;
        bool xfd; /* pidfd is the exec's exit socket (stream_exec.exit_fd), pid 0 */
        bool exited;
        int exit_code;
        int afd;
        /* port-forward */
        struct pf_conn *pf;
        size_t n_pf;
};

static long long mono_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void close_fd(int *fd)
{
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/* ---------------------------------------------------------------- the ops (stream.h) */

static const struct stream_ops *ops_of(const struct sess *s)
{
        static const struct stream_ops none = {0};

        return s->srv->ops ? s->srv->ops : &none;
}

static int op_exec(struct sess *s, struct stream_exec *ret, struct sh_error *err)
{
        const struct stream_ops *o = ops_of(s);

        if (!o->exec)
                return sh_err(err, -EOPNOTSUPP, "exec is not supported here");
        return o->exec(s->srv->ops_data, s->req->id, (const char *const *)s->req->argv, s->req->tty,
                       s->req->in, ret, err);
}

static int op_attach(struct sess *s, bool *ret_tty, bool *ret_stdin, struct sh_error *err)
{
        const struct stream_ops *o = ops_of(s);

        if (!o->attach)
                return sh_err(err, -EOPNOTSUPP, "attach is not supported here");
        return o->attach(s->srv->ops_data, s->req->id, &s->afd, ret_tty, ret_stdin, err);
}

static int op_container_running(struct sess *s, struct sh_error *err)
{
        const struct stream_ops *o = ops_of(s);

        if (!o->container_running)
                return sh_err(err, -EOPNOTSUPP, "container state is not known here");
        return o->container_running(s->srv->ops_data, s->req->id, err);
}

/* -EOPNOTSUPP without a message: the session dials in the request's netns itself. */
static int op_sandbox_dial(struct sess *s, unsigned port, int *ret_fd, struct sh_error *err)
{
        const struct stream_ops *o = ops_of(s);

        if (!o->sandbox_dial)
                return -EOPNOTSUPP;
        return o->sandbox_dial(s->srv->ops_data, s->req->id, port, ret_fd, err);
}

void st_session_free(struct st_session *s)
{
        if (!s)
                return;
        if (s->urh)
                MHD_upgrade_action(s->urh, MHD_UPGRADE_ACTION_CLOSE);
        stream_req_free(s->req);
        free(s->extra);
        free(s);
}

/* ---------------------------------------------------------------- sending */

/* Appends the WebSocket frame built in wtmp to tx. */
static void ws_take(struct sess *s, int r)
{
        if (r == 0 && spdy_buf_append(&s->tx, s->wtmp.data, s->wtmp.len) < 0)
                s->client_gone = true; /* out of memory: give up on this client */
        s->wtmp.len = 0;
}

/* Sends @n bytes on channel @c (nothing if the client has no such stream). */
static void send_chan(struct sess *s, enum ch c, const void *data, size_t n)
{
        if (s->spdy) {
                if (s->sid[c] && !s->fin_sent[c] &&
                    spdy_encode_data(&s->tx, s->sid[c], 0, data, n, NULL) < 0)
                        s->client_gone = true;
                return;
        }
        ws_take(s, ws_k8s_wrap(&s->wtmp, s->ss->ws, (unsigned)c, data, n));
}

static void fin_chan(struct sess *s, enum ch c)
{
        if (!s->spdy || !s->sid[c] || s->fin_sent[c])
                return;
        s->fin_sent[c] = true;
        if (spdy_encode_data(&s->tx, s->sid[c], SPDY_FLAG_FIN, NULL, 0, NULL) < 0)
                s->client_gone = true;
}

/* Writes what tx holds without blocking; a dead client sets client_gone. */
static void tx_flush(struct sess *s)
{
        while (s->tx.len) {
                ssize_t n = send(s->fd, s->tx.data, s->tx.len, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n > 0) {
                        spdy_buf_consume(&s->tx, (size_t)n);
                        s->last_io = mono_ns();
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return;
                s->client_gone = true;
                s->tx.len = 0;
                return;
        }
}

/* ---------------------------------------------------------------- the final status */

static char *status_text(const char *status, const char *message, const char *reason, int code,
                         const char *cause_reason, const char *cause_message)
{
        json_object *o = json_object_new_object();
        char *s;

        json_object_object_add(o, "metadata", json_object_new_object());
        json_object_object_add(o, "status", json_object_new_string(status));
        if (message)
                json_object_object_add(o, "message", json_object_new_string(message));
        if (reason)
                json_object_object_add(o, "reason", json_object_new_string(reason));
        if (cause_message) {
                json_object *d = json_object_new_object(), *causes = json_object_new_array(),
                            *c = json_object_new_object();

                if (cause_reason)
                        json_object_object_add(c, "reason", json_object_new_string(cause_reason));
                json_object_object_add(c, "message", json_object_new_string(cause_message));
                json_object_array_add(causes, c);
                json_object_object_add(d, "causes", causes);
                json_object_object_add(o, "details", d);
        }
        if (code)
                json_object_object_add(o, "code", json_object_new_int(code));
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}

/* "sh -c exit 3", cut to fit. */
static void cmdline(const struct stream_req *r, char *out, size_t size)
{
        size_t len = 0;

        out[0] = '\0';
        for (size_t i = 0; r->argv && r->argv[i] && len + 1 < size; i++) {
                int n = snprintf(out + len, size - len, "%s%s", i ? " " : "", r->argv[i]);

                if (n < 0)
                        break;
                len += (size_t)n;
        }
}

/*
 * Queues the end of a remotecommand session: FIN on the output streams, the status on the
 * error stream (v4+: a metav1.Status; before: the message of a failure only), then GOAWAY
 * or a close frame. @error: an internal error (the exit code is then ignored).
 */
static void finish(struct sess *s, int exit_code, const char *error)
{
        _cleanup_free_ char *json = NULL, *msg = NULL;
        char cmd[256], code[16];
        const char *text = NULL;

        if (error) {
                msg = sh_strdup_printf("Internal error occurred: %s", error);
                json = status_text("Failure", msg, "InternalError", 500, NULL, error);
        } else if (exit_code != 0) {
                cmdline(s->req, cmd, sizeof(cmd));
                snprintf(code, sizeof(code), "%d", exit_code);
                msg = sh_strdup_printf("command terminated with non-zero exit code: command "
                                       "'%s' exited with %d",
                                       cmd, exit_code);
                json = status_text("Failure", msg, "NonZeroExitCode", 0, "ExitCode", code);
        } else {
                json = status_text("Success", NULL, NULL, 0, NULL, NULL);
        }
        if (s->ss->version >= 4)
                text = json;
        else if (error || exit_code != 0)
                text = msg;
        fin_chan(s, CH_STDOUT);
        fin_chan(s, CH_STDERR);
        if (text)
                send_chan(s, CH_ERROR, text, strlen(text));
        fin_chan(s, CH_ERROR);
        if (s->spdy) {
                if (spdy_encode_goaway(&s->tx, s->last_sid, SPDY_GOAWAY_OK, NULL) < 0)
                        s->client_gone = true;
        } else {
                ws_take(s, ws_encode_close(&s->wtmp, WS_CLOSE_NORMAL, NULL));
        }
        s->phase = P_FLUSH;
        s->deadline = mono_ns() + FLUSH_NS;
        s->flush_cap = s->deadline + FLUSH_CAP_NS;
}

/* Ends a session on a protocol error: GOAWAY or a close frame with @ws_code. */
static void abort_session(struct sess *s, uint16_t ws_code, const char *why)
{
        sh_log_debug("session aborted: %s", why);
        if (s->phase >= P_FLUSH)
                return;
        if (s->spdy) {
                spdy_encode_goaway(&s->tx, s->last_sid, SPDY_GOAWAY_PROTOCOL_ERROR, NULL);
        } else {
                ws_take(s, ws_encode_close(&s->wtmp, ws_code, why));
        }
        s->phase = P_FLUSH;
        s->deadline = mono_ns() + FLUSH_NS;
}

/* ---------------------------------------------------------------- input from the client */

static void apply_resize(struct sess *s, uint16_t w, uint16_t h)
{
        if (s->req->kind == STREAM_ATTACH && s->afd >= 0) {
                uint8_t p[5] = {ATT_RESIZE, (uint8_t)(w >> 8), (uint8_t)w, (uint8_t)(h >> 8),
                                (uint8_t)h};

                if (send(s->afd, p, sizeof(p), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                        sh_log_debug("attach resize not sent: %m");
                return;
        }
        s->resized = true;
        if (s->pty_fd >= 0) {
                struct winsize ws = {.ws_row = h, .ws_col = w};

                ioctl(s->pty_fd, TIOCSWINSZ, &ws);
        } else if (s->xfd && s->pidfd >= 0) {
                unsigned short sz[2] = {h, w};

                if (send(s->pidfd, sz, sizeof(sz), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                        sh_log_debug("exec resize not sent: %m");
        } else {
                s->init_w = w;
                s->init_h = h;
        }
}

/* The resize stream: a sequence of {"Width":W,"Height":H} objects, split anywhere. */
static void resize_feed(struct sess *s, const uint8_t *data, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (s->resize_len == sizeof(s->resize))
                        s->resize_len = 0; /* no object is this long: start over */
                s->resize[s->resize_len++] = (char)data[i];
                if (data[i] == '}') {
                        struct sh_error e = {0};
                        uint16_t w, h;
                        char *open = memchr(s->resize, '{', s->resize_len);

                        if (open &&
                            ws_k8s_parse_resize(open, s->resize_len - (size_t)(open - s->resize),
                                                &w, &h, &e) == 0)
                                apply_resize(s, w, h);
                        else
                                sh_log_debug("bad resize message: %s", e.msg);
                        s->resize_len = 0;
                }
        }
}

static void stdin_feed(struct sess *s, const uint8_t *data, size_t n)
{
        if (!s->req->in || s->in_eof)
                return;
        if (spdy_buf_append(&s->in, data, n) < 0)
                s->client_gone = true;
}

static struct pf_conn *pf_find(struct sess *s, const char *reqid)
{
        for (size_t i = 0; i < s->n_pf; i++)
                if (strcmp(s->pf[i].reqid, reqid) == 0)
                        return &s->pf[i];
        return NULL;
}

static struct pf_conn *pf_by_sid(struct sess *s, uint32_t sid)
{
        for (size_t i = 0; i < s->n_pf; i++)
                if (s->pf[i].data_sid == sid || s->pf[i].err_sid == sid)
                        return &s->pf[i];
        return NULL;
}

/* Sends @text on port-forward connection @c's error stream (or channel). */
static void pf_error(struct sess *s, struct pf_conn *c, const char *text)
{
        if (s->spdy) {
                if (c->err_sid)
                        spdy_encode_data(&s->tx, c->err_sid, 0, text, strlen(text), NULL);
                return;
        }
        ws_take(s, ws_k8s_wrap(&s->wtmp, s->ss->ws, ws_k8s_pf_error_channel((unsigned)(c - s->pf)),
                               text, strlen(text)));
}

/* The pod side of @c is done: FIN both SPDY streams. */
static void pf_pod_done(struct sess *s, struct pf_conn *c)
{
        if (c->pod_eof)
                return;
        c->pod_eof = true;
        if (s->spdy) {
                if (c->data_sid)
                        spdy_encode_data(&s->tx, c->data_sid, SPDY_FLAG_FIN, NULL, 0, NULL);
                if (c->err_sid)
                        spdy_encode_data(&s->tx, c->err_sid, SPDY_FLAG_FIN, NULL, 0, NULL);
        }
        if (c->client_fin)
                close_fd(&c->sock);
}

struct ns_dial {
        const char *netns;
        uint16_t port;
        int fd;
        bool in_progress; /* connect() said EINPROGRESS: the poll loop finishes it */
        char why[160];
};

/* Runs on a thread of its own, which enters the pod's netns and ends: the socket stays. */
static void *ns_dial_thread(void *arg)
{
        struct ns_dial *d = arg;
        int e = 0;

        if (d->netns[0]) {
                int ns = open(d->netns, O_RDONLY | O_CLOEXEC);

                if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
                        snprintf(d->why, sizeof(d->why), "enter network namespace %s: %s", d->netns,
                                 strerror(errno));
                        if (ns >= 0)
                                close(ns);
                        return NULL;
                }
                close(ns);
        }
        for (int v6 = 0; v6 < 2; v6++) {
                struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(d->port)};
                struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
                                          .sin6_port = htons(d->port),
                                          .sin6_addr = IN6ADDR_LOOPBACK_INIT};
                /* Non-blocking: a listener that never accepts must not hold the session;
                 * a refusal on loopback comes at once all the same. */
                int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                                0);

                a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (fd < 0) {
                        e = errno;
                        continue;
                }
                if (connect(fd, v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4,
                            v6 ? sizeof(a6) : sizeof(a4)) == 0 ||
                    errno == EINPROGRESS) {
                        d->in_progress = errno == EINPROGRESS;
                        d->fd = fd;
                        return NULL;
                }
                if (!v6 || !e)
                        e = errno;
                close(fd);
        }
        snprintf(d->why, sizeof(d->why), "dial tcp 127.0.0.1:%u: %s", d->port, strerror(e));
        return NULL;
}

static void pf_fail(struct sess *s, struct pf_conn *c, const char *why);

/* Connects @c to its port in the pod; on failure the error goes to the client. */
static void pf_dial(struct sess *s, struct pf_conn *c)
{
        struct ns_dial d = {.netns = s->req->netns ? s->req->netns : "", .port = c->port, .fd = -1};
        struct sh_error e = {0};
        pthread_t t;
        int r;

        c->dialled = true;
        /* A pod in a VM: its backend dials inside. */
        r = op_sandbox_dial(s, c->port, &d.fd, &e);
        if (r == 0) {
                fcntl(d.fd, F_SETFL, fcntl(d.fd, F_GETFL) | O_NONBLOCK);
                c->sock = d.fd;
                c->connecting = false;
                return;
        }
        if (r != -EOPNOTSUPP) {
                pf_fail(s, c, e.msg[0] ? e.msg : strerror(-r));
                return;
        }
        if (pthread_create(&t, NULL, ns_dial_thread, &d) != 0)
                snprintf(d.why, sizeof(d.why), "no thread to dial with");
        else
                pthread_join(t, NULL);
        if (d.fd >= 0) {
                c->sock = d.fd;
                c->connecting = d.in_progress;
                c->connect_by = mono_ns() + DIAL_NS;
                return;
        }
        pf_fail(s, c, d.why);
}

/* Reports why @c could not reach its port, and ends it. */
static void pf_fail(struct sess *s, struct pf_conn *c, const char *why)
{
        char msg[320];

        snprintf(msg, sizeof(msg), "error forwarding port %u to pod %s: %s", c->port, s->req->id,
                 why);
        sh_log_debug("%s", msg);
        pf_error(s, c, msg);
        c->client_fin = true;
        pf_pod_done(s, c);
}

static void spdy_reply(struct sess *s, uint32_t sid)
{
        if (spdy_encode_syn_reply(&s->sp, &s->tx, sid, 0, NULL, 0, NULL) < 0)
                s->client_gone = true;
}

static void spdy_rst(struct sess *s, uint32_t sid, uint32_t status)
{
        spdy_encode_rst_stream(&s->tx, sid, status, NULL);
}

/* Header @name of @f into @out; names compare without regard to case, as the kubelet's. */
static void header_copy(const struct spdy_frame *f, const char *name, char *out, size_t size)
{
        const struct spdy_header *h = NULL;

        for (size_t i = 0; i < f->n_headers && !h; i++)
                if (strcasecmp(f->headers[i].name, name) == 0)
                        h = &f->headers[i];
        out[0] = '\0';
        if (h && h->value_len < size) {
                memcpy(out, h->value, h->value_len);
                out[h->value_len] = '\0';
        }
}

static void pf_syn(struct sess *s, const struct spdy_frame *f, const char *type)
{
        char port[16], reqid[64];
        struct pf_conn *c;
        unsigned long p;
        char *end;

        header_copy(f, "port", port, sizeof(port));
        header_copy(f, "requestid", reqid, sizeof(reqid));
        errno = 0;
        p = strtoul(port, &end, 10);
        if (!reqid[0] || !port[0] || *end || errno || p == 0 || p > 65535 ||
            (strcmp(type, "data") != 0 && strcmp(type, "error") != 0)) {
                sh_log_debug("port-forward stream %u refused: type '%s' port '%s' request '%s'",
                             f->stream_id, type, port, reqid);
                spdy_rst(s, f->stream_id, SPDY_RST_REFUSED_STREAM);
                return;
        }
        c = pf_find(s, reqid);
        if (!c) {
                struct pf_conn *v;

                if (s->n_pf >= MAX_PF) {
                        spdy_rst(s, f->stream_id, SPDY_RST_REFUSED_STREAM);
                        return;
                }
                v = realloc(s->pf, (s->n_pf + 1) * sizeof(*v));
                if (!v) {
                        s->client_gone = true;
                        return;
                }
                s->pf = v;
                c = &s->pf[s->n_pf++];
                *c = (struct pf_conn){.port = (uint16_t)p, .sock = -1};
                snprintf(c->reqid, sizeof(c->reqid), "%s", reqid);
        }
        if (c->port != p || (type[0] == 'd' ? c->data_sid : c->err_sid)) {
                spdy_rst(s, f->stream_id, SPDY_RST_PROTOCOL_ERROR);
                return;
        }
        if (type[0] == 'd')
                c->data_sid = f->stream_id;
        else
                c->err_sid = f->stream_id;
        spdy_reply(s, f->stream_id);
        if (f->flags & SPDY_FLAG_FIN && type[0] == 'd')
                c->client_fin = true;
        if (c->data_sid && c->err_sid && !c->dialled)
                pf_dial(s, c);
}

static void rc_syn(struct sess *s, const struct spdy_frame *f, const char *type)
{
        for (int c = 0; c < CH_N; c++) {
                if (strcmp(type, ch_names[c]) != 0)
                        continue;
                if (s->sid[c] || s->phase != P_STREAMS)
                        break;
                s->sid[c] = f->stream_id;
                s->have |= 1u << c;
                spdy_reply(s, f->stream_id);
                if (c == CH_STDIN && (f->flags & SPDY_FLAG_FIN))
                        s->in_eof = true;
                return;
        }
        sh_log_debug("stream %u of type '%s' refused", f->stream_id, type);
        spdy_rst(s, f->stream_id, SPDY_RST_REFUSED_STREAM);
}

static void spdy_frame_in(struct sess *s, const struct spdy_frame *f)
{
        switch (f->type) {
        case SPDY_SYN_STREAM: {
                char type[16];

                if (!(f->stream_id & 1) || f->stream_id <= s->last_sid) {
                        abort_session(s, 0, "bad SYN_STREAM id");
                        return;
                }
                s->last_sid = f->stream_id;
                header_copy(f, "streamtype", type, sizeof(type));
                if (s->req->kind == STREAM_PORTFORWARD)
                        pf_syn(s, f, type);
                else
                        rc_syn(s, f, type);
                return;
        }
        case SPDY_DATA:
                if (s->req->kind == STREAM_PORTFORWARD) {
                        struct pf_conn *c = pf_by_sid(s, f->stream_id);

                        if (!c || c->data_sid != f->stream_id)
                                return;
                        if (!c->client_fin && c->sock >= 0 &&
                            spdy_buf_append(&c->to_pod, f->data, f->data_len) < 0)
                                s->client_gone = true;
                        if (f->flags & SPDY_FLAG_FIN)
                                c->client_fin = true;
                        return;
                }
                if (f->stream_id && f->stream_id == s->sid[CH_STDIN]) {
                        stdin_feed(s, f->data, f->data_len);
                        if (f->flags & SPDY_FLAG_FIN)
                                s->in_eof = true;
                } else if (f->stream_id && f->stream_id == s->sid[CH_RESIZE]) {
                        resize_feed(s, f->data, f->data_len);
                }
                return;
        case SPDY_RST_STREAM:
                if (s->req->kind == STREAM_PORTFORWARD) {
                        struct pf_conn *c = pf_by_sid(s, f->stream_id);

                        if (c) {
                                c->client_fin = true;
                                c->pod_eof = true; /* the client gave up on it */
                                close_fd(&c->sock);
                        }
                } else if (f->stream_id == s->sid[CH_STDIN]) {
                        s->in_eof = true;
                }
                return;
        case SPDY_PING:
                if (f->ping_id & 1)
                        spdy_encode_ping(&s->tx, f->ping_id, NULL);
                return;
        case SPDY_GOAWAY:
                if (s->phase == P_STREAMS)
                        s->client_gone = true; /* no more streams will come */
                return;
        case SPDY_SYN_REPLY:
        case SPDY_SETTINGS:
        case SPDY_HEADERS:
        case SPDY_WINDOW_UPDATE:
                return; /* nothing to do: we open no streams and enforce no windows */
        }
}

static void spdy_input(struct sess *s)
{
        size_t off = 0;

        while (!s->client_gone && s->phase < P_FLUSH) {
                struct sh_error e = {0};
                struct spdy_frame f;
                size_t used = 0;
                int r = spdy_parse(&s->sp, s->rx.data + off, s->rx.len - off, &used, &f, &e);

                off += used;
                if (r == -EAGAIN)
                        break;
                if (r == -EBADMSG) {
                        spdy_rst(s, f.stream_id, SPDY_RST_PROTOCOL_ERROR);
                        continue;
                }
                if (r < 0) {
                        abort_session(s, 0, e.msg[0] ? e.msg : "bad SPDY frame");
                        break;
                }
                spdy_frame_in(s, &f);
        }
        spdy_buf_consume(&s->rx, off);
}

static void ws_message(struct sess *s, const struct ws_frame *f)
{
        struct sh_error e = {0};
        struct ws_k8s_msg m;
        int r = ws_k8s_unwrap(s->ss->ws, f->data, f->len, &s->scratch, &m, &e);

        if (r == -EPROTO)
                return; /* a malformed close signal: ignored, as Kubernetes does */
        if (r < 0) {
                abort_session(s, WS_CLOSE_INVALID_DATA, "bad channel message");
                return;
        }
        if (m.kind == WS_K8S_EMPTY)
                return;
        if (s->req->kind == STREAM_PORTFORWARD) {
                size_t i = m.channel / 2;

                if (m.channel % 2 || i >= s->n_pf)
                        return;
                if (m.kind == WS_K8S_CLOSED)
                        s->pf[i].client_fin = true;
                else if (!s->pf[i].client_fin && s->pf[i].sock >= 0 &&
                         spdy_buf_append(&s->pf[i].to_pod, m.data, m.len) < 0)
                        s->client_gone = true;
                return;
        }
        if (m.channel == CH_STDIN) {
                if (m.kind == WS_K8S_CLOSED)
                        s->in_eof = true;
                else
                        stdin_feed(s, m.data, m.len);
        } else if (m.channel == CH_RESIZE && m.kind == WS_K8S_DATA) {
                resize_feed(s, m.data, m.len);
        }
}

static void ws_input(struct sess *s)
{
        size_t off = 0;

        while (!s->client_gone && s->phase < P_FLUSH) {
                struct sh_error e = {0};
                struct ws_frame f;
                size_t used = 0;
                int r = ws_parse(&s->wp, s->rx.data + off, s->rx.len - off, &used, &f, &e);

                off += used;
                if (r == -EAGAIN)
                        break;
                if (r < 0) {
                        abort_session(s, ws_close_code_for(r),
                                      e.msg[0] ? e.msg : "bad WebSocket frame");
                        break;
                }
                switch (f.opcode) {
                case WS_OP_PING:
                        ws_take(s, ws_encode(&s->wtmp, WS_OP_PONG, f.data, f.len));
                        break;
                case WS_OP_CLOSE:
                        /* The client is done: answer and go. */
                        ws_take(s,
                                ws_encode_close(&s->wtmp,
                                                f.close_code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL
                                                                                   : f.close_code,
                                                NULL));
                        s->phase = P_FLUSH;
                        s->deadline = mono_ns() + FLUSH_NS;
                        break;
                case WS_OP_TEXT:
                case WS_OP_BINARY:
                        ws_message(s, &f);
                        break;
                case WS_OP_PONG:
                case WS_OP_CONTINUATION:
                        break;
                }
        }
        spdy_buf_consume(&s->rx, off);
}

/* Reads what the client sent; EOF or an error means it is gone. */
static void client_read(struct sess *s)
{
        uint8_t buf[65536];
        ssize_t n = recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
                return;
        if (n <= 0) {
                s->client_gone = true;
                return;
        }
        s->last_io = mono_ns();
        if (s->phase >= P_FLUSH)
                return; /* the session is ending: whatever it says now is discarded */
        if (spdy_buf_append(&s->rx, buf, (size_t)n) < 0) {
                s->client_gone = true;
                return;
        }
        if (s->spdy)
                spdy_input(s);
        else
                ws_input(s);
}

/* ---------------------------------------------------------------- the process side */

/*
 * True while the client must not be read: too much waits for stdin or the pods, or for the
 * client itself (the replies to its PINGs and refused streams pile up in tx if it does not
 * read them).
 */
static bool in_backlog(const struct sess *s)
{
        size_t pods = 0;

        if (s->in.len >= IN_HIGH || s->tx.len >= TX_HIGH)
                return true;
        for (size_t i = 0; i < s->n_pf; i++) {
                if (s->pf[i].to_pod.len >= IN_HIGH)
                        return true;
                pods += s->pf[i].to_pod.len;
        }
        return pods >= 4 * IN_HIGH;
}

static int start_exec(struct sess *s, struct sh_error *err)
{
        struct stream_exec es = {.stdin_fd = -1,
                                 .stdout_fd = -1,
                                 .stderr_fd = -1,
                                 .pty_fd = -1,
                                 .pid = 0,
                                 .exit_fd = -1,
                                 .rows = s->init_h,
                                 .cols = s->init_w};
        int r = op_exec(s, &es, err);

        if (r < 0)
                return r;
        s->in_fd = es.stdin_fd;
        s->out_fd = es.stdout_fd;
        s->err_fd = es.stderr_fd;
        s->pty_fd = es.pty_fd;
        s->pid = es.pid;
        s->tty = s->req->tty;
        {
                int fds[] = {s->in_fd, s->out_fd, s->err_fd};

                for (size_t i = 0; i < SH_ARRAY_SIZE(fds); i++)
                        if (fds[i] >= 0)
                                fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        }
        if (es.pid <= 0 && es.exit_fd >= 0) {
                s->xfd = true;
                s->pidfd = es.exit_fd;
                return 0;
        }
        s->pidfd = (int)syscall(SYS_pidfd_open, s->pid, 0);
        if (s->pidfd < 0)
                sh_log_warn("pidfd_open %d: %m", s->pid);
        return 0;
}

static int start_attach(struct sess *s, struct sh_error *err)
{
        bool tty = false, has_stdin = false;
        int r = op_attach(s, &tty, &has_stdin, err);

        if (r < 0)
                return r;
        s->tty = tty;
        if (s->req->in) {
                /* An empty stdin packet: this session has stdin (its end counts for
                 * stdin_once). The socket is fresh: there is room. */
                uint8_t hello = ATT_STDIN;

                if (send(s->afd, &hello, 1, MSG_NOSIGNAL) != 1)
                        sh_log_debug("attach: stdin hello not sent: %m");
        }
        fcntl(s->afd, F_SETFL, fcntl(s->afd, F_GETFL) | O_NONBLOCK);
        return 0;
}

/* The streams are there (or, for WebSocket, implied): run. */
static void start(struct sess *s)
{
        struct sh_error e = {0};
        int r = 0;

        s->phase = P_RUN;
        s->deadline = 0;
        if (s->req->kind == STREAM_PORTFORWARD) {
                for (size_t i = 0; i < s->n_pf; i++) {
                        struct pf_conn *c = &s->pf[i];
                        unsigned data = ws_k8s_pf_data_channel((unsigned)i);

                        /* The port, on both channels, before anything else. */
                        ws_take(s, ws_k8s_wrap_port(&s->wtmp, s->ss->ws, data, c->port));
                        ws_take(s, ws_k8s_wrap_port(&s->wtmp, s->ss->ws, data + 1, c->port));
                        pf_dial(s, c);
                }
                return;
        }
        if (!s->spdy) {
                /* An empty message on the first output channel: the session is up. */
                enum ch first = s->req->out ? CH_STDOUT : s->req->err ? CH_STDERR : CH_ERROR;

                send_chan(s, first, "", 0);
        }
        r = s->req->kind == STREAM_EXEC ? start_exec(s, &e) : start_attach(s, &e);
        if (r < 0) {
                char why[320];

                snprintf(why, sizeof(why), "%s %s: %s",
                         s->req->kind == STREAM_EXEC ? "error executing command in"
                                                     : "error attaching to",
                         "container", e.msg[0] ? e.msg : strerror(-r));
                finish(s, 0, why);
        }
}

/* Reads one chunk of an exec output fd; EOF (EIO on a pty) closes it. */
static void exec_read(struct sess *s, int *fd, enum ch c, bool wanted)
{
        uint8_t buf[CHUNK];
        ssize_t n = read(*fd, buf, sizeof(buf));

        if (n > 0) {
                if (wanted)
                        send_chan(s, c, buf, (size_t)n);
                return;
        }
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        if (*fd == s->pty_fd)
                *fd = -1; /* the master stays open for resize until the end */
        else
                close_fd(fd);
}

static void exec_write_stdin(struct sess *s)
{
        while (s->in.len && s->in_fd >= 0) {
                ssize_t n = write(s->in_fd, s->in.data, s->in.len);

                if (n > 0) {
                        spdy_buf_consume(&s->in, (size_t)n);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                /* The process closed its stdin: what is left is dropped. */
                s->in.len = 0;
                close_fd(&s->in_fd);
        }
        /* With a tty this is a dup of the master: the pty stays. */
        if (!s->in.len && s->in_eof && s->in_fd >= 0 && s->in_fd != s->pty_fd)
                close_fd(&s->in_fd);
}

static void attach_read(struct sess *s)
{
        uint8_t buf[CHUNK + 1];
        ssize_t n = recv(s->afd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        if (n <= 0) {
                struct sh_error e = {0};

                close_fd(&s->afd);
                /* The monitor closes its clients when the container exited, and refuses
                 * one beyond its limit: tell the two apart. The exit is on disk by then;
                 * the watcher may not have seen it yet, so ask. */
                if (op_container_running(s, &e) == 0)
                        finish(s, 0,
                               "error attaching to container: the container's monitor "
                               "closed the attach (too many attached clients?)");
                else
                        finish(s, 0, NULL);
                return;
        }
        if (buf[0] == ATT_STDOUT && s->req->out)
                send_chan(s, CH_STDOUT, buf + 1, (size_t)n - 1);
        else if (buf[0] == ATT_STDERR && s->req->err)
                send_chan(s, CH_STDERR, buf + 1, (size_t)n - 1);
}

static void attach_write_stdin(struct sess *s)
{
        uint8_t pkt[1 + CHUNK];

        while (s->in.len && s->afd >= 0) {
                size_t n = s->in.len < CHUNK ? s->in.len : CHUNK;
                ssize_t w;

                pkt[0] = ATT_STDIN;
                memcpy(pkt + 1, s->in.data, n);
                w = send(s->afd, pkt, n + 1, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (w < 0) {
                        s->in.len = 0;
                        return;
                }
                spdy_buf_consume(&s->in, n);
        }
        if (!s->in.len && s->in_eof && !s->in_eof_sent && s->afd >= 0) {
                uint8_t eof = ATT_STDIN_EOF;

                if (send(s->afd, &eof, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 || errno != EAGAIN)
                        s->in_eof_sent = true;
        }
}

static void pf_io(struct sess *s, struct pf_conn *c, short revents)
{
        /* A few reads per wakeup: a pod writing in small pieces costs fewer polls. */
        for (int k = 0; k < 8 && (revents & (POLLIN | POLLHUP | POLLERR)) && !c->pod_eof &&
                        s->tx.len < TX_HIGH;
             k++) {
                uint8_t buf[CHUNK];
                ssize_t n = recv(c->sock, buf, sizeof(buf), MSG_DONTWAIT);

                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        break;
                if (n > 0) {
                        if (s->spdy)
                                spdy_encode_data(&s->tx, c->data_sid, 0, buf, (size_t)n, NULL);
                        else
                                ws_take(s,
                                        ws_k8s_wrap(&s->wtmp, s->ss->ws,
                                                    ws_k8s_pf_data_channel((unsigned)(c - s->pf)),
                                                    buf, (size_t)n));
                        continue;
                }
                if (n < 0) {
                        /* Reset: nothing more goes either way. */
                        c->client_fin = true;
                        c->to_pod.len = 0;
                }
                pf_pod_done(s, c);
                if (c->sock < 0)
                        return;
                break;
        }
        while (c->to_pod.len && c->sock >= 0) {
                ssize_t n =
                        send(c->sock, c->to_pod.data, c->to_pod.len, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (n > 0) {
                        spdy_buf_consume(&c->to_pod, (size_t)n);
                        continue;
                }
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        break;
                c->to_pod.len = 0;
                c->client_fin = true;
                pf_pod_done(s, c);
                close_fd(&c->sock);
        }
        if (c->sock >= 0 && c->client_fin && !c->to_pod.len && !c->shut_wr) {
                shutdown(c->sock, SHUT_WR);
                c->shut_wr = true;
                if (c->pod_eof)
                        close_fd(&c->sock);
        }
}

/* A non-blocking connect of @c finished, failed or ran out of time. */
static void pf_connected(struct sess *s, struct pf_conn *c, short revents)
{
        int e = 0;
        socklen_t len = sizeof(e);

        if (!revents) {
                if (mono_ns() < c->connect_by)
                        return;
                e = ETIMEDOUT;
        } else if (getsockopt(c->sock, SOL_SOCKET, SO_ERROR, &e, &len) < 0) {
                e = errno;
        }
        c->connecting = false;
        if (e) {
                char why[160];

                snprintf(why, sizeof(why), "dial tcp localhost:%u: %s", c->port, strerror(e));
                close_fd(&c->sock);
                pf_fail(s, c, why);
        }
}

/* ---------------------------------------------------------------- the loop */

/*
 * Drops the SPDY port-forward connections that are over on both sides, so MAX_PF limits
 * the live ones (kubectl uses a new requestid for every local connection).
 */
static void pf_compact(struct sess *s)
{
        size_t k = 0;

        for (size_t i = 0; i < s->n_pf; i++) {
                struct pf_conn *c = &s->pf[i];

                if (c->pod_eof && c->client_fin && c->sock < 0) {
                        spdy_buf_done(&c->to_pod);
                        continue;
                }
                if (k != i)
                        s->pf[k] = *c;
                k++;
        }
        s->n_pf = k;
}

/* The exit code from the backend's exit socket, once it is readable. */
static void reap_xfd(struct sess *s, bool wait)
{
        int code = 0;
        ssize_t n;

        if (s->exited || s->pidfd < 0)
                return;
        do
                n = recv(s->pidfd, &code, sizeof(code), wait ? 0 : MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
        s->exited = true;
        /* EOF alone: the backend lost the command; report it failed, never success. */
        s->exit_code = n == (ssize_t)sizeof(code) ? code : 255;
        close_fd(&s->pidfd);
}

static void reap(struct sess *s, bool wait)
{
        int st = 0;
        pid_t r;

        if (s->xfd) {
                reap_xfd(s, wait);
                return;
        }
        if (s->pid <= 0 || s->exited)
                return;
        do
                r = waitpid(s->pid, &st, wait ? 0 : WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r != s->pid)
                return;
        s->exited = true;
        s->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        close_fd(&s->pidfd);
}

static bool exec_done(struct sess *s, long long now)
{
        if (!s->exited)
                return false;
        if (s->out_fd < 0 && s->err_fd < 0)
                return true;
        return now >= s->deadline;
}

static bool pf_all_done(const struct sess *s)
{
        for (size_t i = 0; i < s->n_pf; i++)
                if (!s->pf[i].pod_eof)
                        return false;
        return true;
}

static void loop(struct sess *s)
{
        for (;;) {
                struct pollfd p[8 + MAX_PF];
                int n = 0, ix_out = -1, ix_err = -1, ix_in = -1, ix_pid = -1, ix_att = -1;
                int ix_pf = -1, timeout = -1;
                size_t n_pf_polled = 0;
                bool room = s->tx.len < TX_HIGH;
                long long now, until = s->deadline;

                if (s->client_gone)
                        return;
                if (s->phase == P_FLUSH && !s->tx.len) {
                        shutdown(s->fd, SHUT_WR);
                        s->phase = P_LINGER;
                        s->deadline = mono_ns() + LINGER_NS;
                        continue;
                }
                p[n++] = (struct pollfd){
                        .fd = s->fd,
                        /* POLLRDHUP: a client that leaves is seen also while it is not read. */
                        .events = (short)(((s->phase >= P_FLUSH || !in_backlog(s)) ? POLLIN : 0) |
                                          (s->tx.len ? POLLOUT : 0) | POLLRDHUP),
                };
                p[n++] = (struct pollfd){.fd = s->srv->stop_fd, .events = POLLIN};
                if (s->phase == P_RUN) {
                        if (s->out_fd >= 0 && room) {
                                ix_out = n;
                                p[n++] = (struct pollfd){.fd = s->out_fd, .events = POLLIN};
                        }
                        if (s->err_fd >= 0 && room) {
                                ix_err = n;
                                p[n++] = (struct pollfd){.fd = s->err_fd, .events = POLLIN};
                        }
                        if (s->in_fd >= 0 && s->in.len) {
                                ix_in = n;
                                p[n++] = (struct pollfd){.fd = s->in_fd, .events = POLLOUT};
                        }
                        if (s->pidfd >= 0 && !s->exited) {
                                ix_pid = n;
                                p[n++] = (struct pollfd){.fd = s->pidfd, .events = POLLIN};
                        }
                        if (s->afd >= 0) {
                                ix_att = n;
                                p[n++] = (struct pollfd){
                                        .fd = s->afd,
                                        .events =
                                                (short)((room ? POLLIN : 0) |
                                                        (s->in.len || (s->in_eof && !s->in_eof_sent)
                                                                 ? POLLOUT
                                                                 : 0)),
                                };
                        }
                        ix_pf = n;
                        n_pf_polled = s->n_pf;
                        for (size_t i = 0; i < s->n_pf; i++) {
                                short ev = (short)((room && !s->pf[i].pod_eof ? POLLIN : 0) |
                                                   (s->pf[i].to_pod.len ? POLLOUT : 0));

                                if (s->pf[i].connecting) {
                                        ev = POLLOUT;
                                        if (!until || s->pf[i].connect_by < until)
                                                until = s->pf[i].connect_by;
                                }

                                /* Nothing to wait for: out of the set (a reset socket would
                                 * report POLLHUP for ever). */
                                p[n++] = (struct pollfd){.fd = ev ? s->pf[i].sock : -1,
                                                         .events = ev};
                        }
                }
                now = mono_ns();
                if (s->phase == P_RUN && s->srv->idle_s &&
                    (!until || s->last_io + (long long)s->srv->idle_s * 1000000000LL < until))
                        until = s->last_io + (long long)s->srv->idle_s * 1000000000LL;
                if (s->pid > 0 && !s->exited && s->pidfd < 0)
                        until = (!until || now + 100000000LL < until) ? now + 100000000LL : until;
                if (s->phase == P_STREAMS && s->resize_until && s->resize_until < until)
                        until = s->resize_until;
                if (until)
                        timeout = until <= now ? 0 : (int)((until - now) / 1000000 + 1);
                if (poll(p, (nfds_t)n, timeout) < 0 && errno != EINTR)
                        return;
                if (p[1].revents)
                        return; /* runtd stops */
                if (p[0].events & POLLIN) {
                        if (p[0].revents & (POLLIN | POLLHUP | POLLERR | POLLRDHUP))
                                client_read(s);
                } else if (p[0].revents & (POLLHUP | POLLERR | POLLRDHUP)) {
                        s->client_gone = true;
                }
                if (s->client_gone)
                        return;
                if (s->phase == P_RUN) {
                        if (ix_out >= 0 && p[ix_out].revents)
                                exec_read(s, &s->out_fd, CH_STDOUT, s->req->out);
                        if (ix_err >= 0 && p[ix_err].revents)
                                exec_read(s, &s->err_fd, CH_STDERR, s->req->err);
                        if (ix_pid >= 0 && p[ix_pid].revents) {
                                reap(s, false);
                                s->deadline = mono_ns() + DRAIN_NS;
                        }
                        if (s->pid > 0 && s->pidfd < 0 && !s->exited) {
                                reap(s, false);
                                if (s->exited)
                                        s->deadline = mono_ns() + DRAIN_NS;
                        }
                        if (ix_in >= 0 || (s->in_fd >= 0 && s->in_eof))
                                exec_write_stdin(s);
                        if (ix_att >= 0 && (p[ix_att].revents & (POLLIN | POLLHUP | POLLERR)))
                                attach_read(s);
                        if (s->afd >= 0 && s->phase == P_RUN)
                                attach_write_stdin(s);
                        /* Only those polled: client_read may have added some. */
                        for (size_t i = 0; ix_pf >= 0 && i < n_pf_polled && i < s->n_pf; i++)
                                if (s->pf[i].sock >= 0 && s->pf[i].connecting)
                                        pf_connected(s, &s->pf[i], p[ix_pf + (int)i].revents);
                                else if (s->pf[i].sock >= 0)
                                        pf_io(s, &s->pf[i], p[ix_pf + (int)i].revents);
                        if (s->spdy)
                                pf_compact(s);
                }
                now = mono_ns();
                if (s->phase == P_STREAMS) {
                        bool all = (s->have & s->want) == s->want;

                        if (all && s->tty_wait && !s->resize_until)
                                s->resize_until = now + RESIZE_WAIT_NS;
                        if (all && (!s->tty_wait || s->resized || now >= s->resize_until))
                                start(s);
                        else if (now >= s->deadline) {
                                sh_log_debug("streams not created in time: have %#x want %#x",
                                             s->have, s->want);
                                return;
                        }
                }
                if (s->phase == P_RUN) {
                        /* The drain after the exit counts only while we can read: a slow
                         * client must not cost it the output still in the pipe. */
                        if (s->exited && s->tx.len >= TX_HIGH)
                                s->deadline = now + DRAIN_NS;
                        if (s->req->kind == STREAM_EXEC && exec_done(s, now))
                                finish(s, s->exit_code, NULL);
                        else if (s->req->kind == STREAM_PORTFORWARD && !s->spdy && pf_all_done(s)) {
                                ws_take(s, ws_encode_close(&s->wtmp, WS_CLOSE_NORMAL, NULL));
                                s->phase = P_FLUSH;
                                s->deadline = now + FLUSH_NS;
                        } else if (s->srv->idle_s &&
                                   now >= s->last_io + (long long)s->srv->idle_s * 1000000000LL) {
                                sh_log_debug("session idle for %us: closed", s->srv->idle_s);
                                return;
                        }
                }
                if (s->tx.len) {
                        size_t before = s->tx.len;

                        tx_flush(s);
                        /* A client that still reads gets the rest, within a hard cap. */
                        if (s->phase == P_FLUSH && s->tx.len < before && s->deadline < s->flush_cap)
                                s->deadline = mono_ns() + FLUSH_NS < s->flush_cap
                                                      ? mono_ns() + FLUSH_NS
                                                      : s->flush_cap;
                }
                if (s->phase >= P_FLUSH && now >= s->deadline)
                        return;
        }
}

static void cleanup(struct sess *s)
{
        /* An exec in a VM: closing its exit socket has the backend kill it. */
        if (s->xfd)
                close_fd(&s->pidfd);
        if (s->pid > 0 && !s->exited) {
                /*
                 * The client left or runtd stops: the command goes, as with containerd.
                 * SIGTERM first: runt-lxc-exec then kills what it attached, a tty's session
                 * too; then SIGKILL to its group, whatever happened.
                 */
                kill(s->pid, SIGTERM);
                for (int i = 0; i < 20 && !s->exited; i++) {
                        reap(s, false);
                        if (!s->exited)
                                usleep(10 * 1000);
                }
                kill(-s->pid, SIGKILL);
                kill(s->pid, SIGKILL);
                reap(s, true);
        }
        close_fd(&s->pidfd);
        close_fd(&s->in_fd);
        if (s->out_fd != s->pty_fd)
                close_fd(&s->out_fd);
        close_fd(&s->err_fd);
        close_fd(&s->pty_fd);
        close_fd(&s->afd);
        for (size_t i = 0; i < s->n_pf; i++) {
                close_fd(&s->pf[i].sock);
                spdy_buf_done(&s->pf[i].to_pod);
        }
        free(s->pf);
        spdy_buf_done(&s->rx);
        spdy_buf_done(&s->tx);
        spdy_buf_done(&s->in);
        spdy_session_done(&s->sp);
        ws_parser_done(&s->wp);
        ws_buf_done(&s->wtmp);
        ws_buf_done(&s->scratch);
}

void *st_session_main(void *arg)
{
        struct st_session *ss = arg;
        struct stream_server *srv = ss->srv;
        struct sess s = {
                .ss = ss,
                .srv = srv,
                .req = ss->req,
                .fd = ss->fd,
                .spdy = ss->spdy,
                .in_fd = -1,
                .out_fd = -1,
                .err_fd = -1,
                .pty_fd = -1,
                .pidfd = -1,
                .afd = -1,
        };
        /* Clients send stdin in 32 KiB pieces and headers of a few hundred bytes. */
        const struct spdy_limits limits = {
                .max_data_frame = MAX_MESSAGE,
                .max_header_frame = 64 * 1024,
                .max_header_block = 64 * 1024,
        };
        struct sh_error e = {0};
        sigset_t all;

        /* Signals are the signal thread's. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
        fcntl(s.fd, F_SETFL, fcntl(s.fd, F_GETFL) | O_NONBLOCK);
        s.last_io = mono_ns();
        if (s.spdy && spdy_session_init(&s.sp, &limits, &e) < 0)
                s.client_gone = true;
        if (!s.spdy)
                ws_parser_init(&s.wp, MAX_MESSAGE);
        sh_log_debug("session %s %s v%d for %.12s", s.spdy ? "spdy" : "websocket",
                     s.req->kind == STREAM_EXEC     ? "exec"
                     : s.req->kind == STREAM_ATTACH ? "attach"
                                                    : "portforward",
                     ss->version, s.req->id);
        if (s.req->kind == STREAM_PORTFORWARD && !s.spdy) {
                s.pf = calloc(s.req->n_ports ? s.req->n_ports : 1, sizeof(*s.pf));
                if (!s.pf)
                        s.client_gone = true;
                for (size_t i = 0; s.pf && i < s.req->n_ports; i++)
                        s.pf[s.n_pf++] = (struct pf_conn){.port = s.req->ports[i], .sock = -1};
        }
        if (s.spdy && s.req->kind != STREAM_PORTFORWARD) {
                s.want = 1u << CH_ERROR;
                if (s.req->in)
                        s.want |= 1u << CH_STDIN;
                if (s.req->out)
                        s.want |= 1u << CH_STDOUT;
                if (s.req->err && !s.req->tty)
                        s.want |= 1u << CH_STDERR;
                if (s.req->tty && ss->version >= 3)
                        s.want |= 1u << CH_RESIZE;
                s.tty_wait = s.req->kind == STREAM_EXEC && (s.want & (1u << CH_RESIZE));
                s.phase = P_STREAMS;
                s.deadline = s.last_io + (long long)srv->creation_s * 1000000000LL;
        } else if (!s.spdy && s.req->kind == STREAM_EXEC && s.req->tty) {
                /* No streams to wait for, but the size the client sends first. */
                s.tty_wait = true;
                s.resize_until = s.last_io + RESIZE_WAIT_NS;
                s.phase = P_STREAMS;
                s.deadline = s.last_io + (long long)srv->creation_s * 1000000000LL;
        } else if (!s.client_gone) {
                start(&s);
        }
        if (!s.client_gone && ss->n_extra) {
                if (spdy_buf_append(&s.rx, ss->extra, ss->n_extra) < 0)
                        s.client_gone = true;
                else if (s.spdy)
                        spdy_input(&s);
                else
                        ws_input(&s);
        }
        if (s.tx.len)
                tx_flush(&s);
        loop(&s);
        cleanup(&s);
        sh_log_debug("session for %.12s ended", ss->req->id);
        st_session_free(ss);
        st_session_done(srv);
        return NULL;
}
