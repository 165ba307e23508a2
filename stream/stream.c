/*
 * The streaming server: the URLs Exec, Attach and PortForward return, their single-use
 * tokens, and the HTTP/1.1 side up to the protocol upgrade (libmicrohttpd carries it). Each
 * upgraded connection then gets a thread of its own (stream-session.c).
 *
 * A token names one request and is good for one connection within streaming.token_ttl
 * seconds. Unknown tokens answer 404; a used or expired one 401, for as long as it is
 * remembered (ten minutes, or until 4096 newer ones push it out), 404 after that.
 *
 * Any local user reaches this port, so a connection must earn its place (issue 14): its
 * request line and headers are due streaming.header_timeout seconds after the accept,
 * whatever it trickles; a URL with no good token is refused as soon as its request line is
 * read; and at MAX_CONNECTIONS the oldest connection still sending its headers makes room
 * for the new one. Upgraded sessions are never touched by any of this.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#define SH_LOG_MODULE "stream"
#include "cleanup.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "stream-internal.h"
#include "strutil.h"

#define MAX_UNUSED      1000 /* outstanding tokens, as the kubelet's request cache */
#define MAX_REMEMBERED  4096
#define REMEMBER_NS     (600LL * 1000000000LL)
#define MHD_IDLE_S      30 /* MHD's own inactivity timeout; ours (header_s) comes first */
#define MAX_CONNECTIONS 512
#define LIMIT_SLACK                                                                                \
        64 /* MHD's hard limit lies this far above ours: the sockets we shut                       \
            * down are counted by MHD until its loop closes them */
#define REAP_TICK_MS      100
#define MEMORY_PER_CONN   (32 * 1024) /* request headers beyond this get 431 */
#define STOP_WAIT_MS      3000
#define SPDY_PROTO_HEADER "X-Stream-Protocol-Version"

struct st_token {
        char key[33];
        long long expires_ns; /* CLOCK_MONOTONIC */
        bool used;
        struct stream_req *req; /* NULL once used */
        struct st_token *next;
};

enum st_peer_state {
        PEER_HEAD,     /* request line and headers on their way */
        PEER_ANSWERED, /* on_request ran: an error reply or the 101 is on its way */
        PEER_UPGRADED, /* a session thread owns it: never shut down here */
};

/* One accepted socket (MHD's socket context), in stream_server's peers list, oldest first. */
struct st_peer {
        int fd;
        long long accepted_ns; /* CLOCK_MONOTONIC */
        enum st_peer_state state;
        bool shut;    /* shut down by us: MHD's loop closes it next */
        bool expired; /* the reaper shut it down (SHUT_RDWR) */
        struct st_peer *prev, *next;
};

/* What MHD keeps per request: the session made for it until the upgrade takes it. */
struct st_conn {
        struct st_session *pending;
};

static long long mono_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void stream_req_free(struct stream_req *r)
{
        if (!r)
                return;
        free(r->id);
        sh_strv_free(r->argv);
        free(r->netns);
        free(r->ports);
        free(r);
}

const char *stream_base_url(const struct stream_server *s)
{
        return s->base_url;
}

/* ---------------------------------------------------------------- tokens */

static void token_free(struct st_token *t)
{
        stream_req_free(t->req);
        free(t);
}

/* Drops tokens expired long ago, and the oldest beyond MAX_REMEMBERED. Under the lock. */
static void tokens_prune(struct stream_server *s, long long now)
{
        struct st_token **pp = &s->tokens;
        size_t kept = 0;

        while (*pp) {
                struct st_token *t = *pp;
                bool drop = kept >= MAX_REMEMBERED || now > t->expires_ns + REMEMBER_NS;

                if (!t->used && now > t->expires_ns && t->req) {
                        /* Expired unused: keep the key for the 401, free the request. */
                        stream_req_free(t->req);
                        t->req = NULL;
                        s->n_unused--;
                }
                if (drop) {
                        if (t->req)
                                s->n_unused--;
                        *pp = t->next;
                        token_free(t);
                        s->n_tokens--;
                        continue;
                }
                kept++;
                pp = &t->next;
        }
}

int stream_issue(struct stream_server *s, struct stream_req *req, char **ret_url,
                 struct sh_error *err)
{
        static const char hex[] = "0123456789abcdef";
        static const char *const paths[] = {"exec", "attach", "portforward"};
        struct st_token *t = calloc(1, sizeof(*t));
        uint8_t raw[16];
        long long now = mono_ns();
        char *url;

        if (!t) {
                stream_req_free(req);
                return -ENOMEM;
        }
        if (getrandom(raw, sizeof(raw), 0) != sizeof(raw)) {
                free(t);
                stream_req_free(req);
                return sh_err(err, -EIO, "streaming: no random bytes for a token");
        }
        for (size_t i = 0; i < sizeof(raw); i++) {
                t->key[2 * i] = hex[raw[i] >> 4];
                t->key[2 * i + 1] = hex[raw[i] & 15];
        }
        url = sh_strdup_printf("%s/%s/%s", s->base_url, paths[req->kind], t->key);
        if (!url) {
                free(t);
                stream_req_free(req);
                return -ENOMEM;
        }
        t->req = req;
        t->expires_ns = now + (long long)s->ttl_s * 1000000000LL;
        pthread_mutex_lock(&s->lock);
        tokens_prune(s, now);
        if (s->n_unused >= MAX_UNUSED) {
                pthread_mutex_unlock(&s->lock);
                free(url);
                token_free(t);
                return sh_err(err, -EAGAIN, "streaming: %d requests wait for a connection already",
                              MAX_UNUSED);
        }
        t->next = s->tokens;
        s->tokens = t;
        s->n_tokens++;
        s->n_unused++;
        pthread_mutex_unlock(&s->lock);
        *ret_url = url;
        return 0;
}

/*
 * Finds token @key (@key_len bytes) for a connection to @kind's path and, if @ret, takes its
 * request. -ENOENT unknown (or issued for another path), -EACCES used already, -ETIME expired.
 */
static int token_find(struct stream_server *s, enum stream_kind kind, const char *key,
                      size_t key_len, struct stream_req **ret)
{
        long long now = mono_ns();
        int r = -ENOENT;

        pthread_mutex_lock(&s->lock);
        for (struct st_token *t = s->tokens; t; t = t->next) {
                if (key_len != sizeof(t->key) - 1 || memcmp(t->key, key, key_len) != 0)
                        continue;
                if (t->used)
                        r = -EACCES;
                else if (now > t->expires_ns)
                        r = -ETIME;
                else if (t->req && t->req->kind == kind && !ret)
                        r = 0;
                else if (t->req && t->req->kind == kind) {
                        *ret = t->req;
                        t->req = NULL;
                        t->used = true;
                        s->n_unused--;
                        r = 0;
                }
                break;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

static const char *const kind_paths[] = {"/exec/", "/attach/", "/portforward/"};

int st_path_token(const char *path, bool query, enum stream_kind *ret_kind, const char **ret_token,
                  size_t *ret_len)
{
        for (size_t i = 0; path && i < SH_ARRAY_SIZE(kind_paths); i++)
                if (strncmp(path, kind_paths[i], strlen(kind_paths[i])) == 0) {
                        const char *token = path + strlen(kind_paths[i]);
                        size_t n = strcspn(token, query ? "?/" : "/");

                        if (n != ST_TOKEN_LEN || (token[n] && !(query && token[n] == '?')))
                                return -ENOENT;
                        *ret_kind = (enum stream_kind)i;
                        *ret_token = token;
                        *ret_len = n;
                        return 0;
                }
        return -ENOENT;
}

/* ---------------------------------------------------------------- peers */

/*
 * Shuts @p's socket down (@how) so that MHD's loop sees the end and closes it. Under
 * peers_lock: MHD calls on_connection(CLOSED), which unlinks @p under that lock, before it
 * closes the fd, so the fd is still @p's here, never a reused number.
 */
static void peer_shut(struct stream_server *s, struct st_peer *p, int how)
{
        shutdown(p->fd, how);
        if (!p->shut) {
                p->shut = true;
                s->n_live--;
        }
}

static struct st_peer *peer_of(struct MHD_Connection *c)
{
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

        return ci ? ci->socket_context : NULL;
}

static void peer_set_state(struct stream_server *s, struct MHD_Connection *c,
                           enum st_peer_state state)
{
        struct st_peer *p = peer_of(c);

        if (!p)
                return;
        pthread_mutex_lock(&s->peers_lock);
        if (p->state < state)
                p->state = state;
        pthread_mutex_unlock(&s->peers_lock);
}

/* MHD's thread: a socket accepted or about to be closed. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
        struct stream_server *s = cls;
        const union MHD_ConnectionInfo *ci;
        struct st_peer *p = *socket_context;

        if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
                if (!p)
                        return;
                pthread_mutex_lock(&s->peers_lock);
                if (p->prev)
                        p->prev->next = p->next;
                else
                        s->peers_head = p->next;
                if (p->next)
                        p->next->prev = p->prev;
                else
                        s->peers_tail = p->prev;
                if (!p->shut)
                        s->n_live--;
                pthread_mutex_unlock(&s->peers_lock);
                free(p);
                *socket_context = NULL;
                return;
        }
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
                return;
        p = calloc(1, sizeof(*p));
        if (!p) {
                shutdown(ci->connect_fd, SHUT_RDWR); /* untracked, it could stay forever */
                return;
        }
        p->fd = ci->connect_fd;
        p->accepted_ns = mono_ns();
        pthread_mutex_lock(&s->peers_lock);
        p->prev = s->peers_tail;
        if (s->peers_tail)
                s->peers_tail->next = p;
        else
                s->peers_head = p;
        s->peers_tail = p;
        s->n_live++;
        if (s->n_live > MAX_CONNECTIONS) {
                /* Full: the oldest still sending its headers goes (maybe this one). */
                for (struct st_peer *q = s->peers_head; q; q = q->next)
                        if (q->state == PEER_HEAD && !q->shut) {
                                sh_log_debug("connection limit: closing one accepted %lld ms ago",
                                             (p->accepted_ns - q->accepted_ns) / 1000000);
                                peer_shut(s, q, SHUT_RDWR);
                                break;
                        }
        }
        pthread_mutex_unlock(&s->peers_lock);
        *socket_context = p;
}

/*
 * MHD's thread, once a request line is read and before its headers are: a URL with no
 * usable token ends here. SHUT_RD only: if the whole request came in one piece (as from a
 * real client), MHD goes on from its buffer to on_request, which answers why; otherwise
 * its next read sees the end and it closes the connection without waiting for more.
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
        struct stream_server *s = cls;
        struct st_peer *p;
        const char *token;
        size_t n;
        enum stream_kind kind;

        if (st_path_token(uri, true, &kind, &token, &n) == 0 &&
            token_find(s, kind, token, n, NULL) == 0)
                return NULL;
        p = peer_of(c);
        if (!p)
                return NULL;
        pthread_mutex_lock(&s->peers_lock);
        if (!p->shut)
                peer_shut(s, p, SHUT_RD);
        pthread_mutex_unlock(&s->peers_lock);
        return NULL;
}

/*
 * The reaper thread: every REAP_TICK_MS, shuts down the connections not upgraded
 * header_s after their accept, whatever they still send.
 */
static void *reaper_main(void *arg)
{
        struct stream_server *s = arg;
        struct timespec until;

        pthread_mutex_lock(&s->peers_lock);
        while (!s->reaper_stop) {
                long long due = mono_ns() - (long long)s->header_s * 1000000000LL;

                /* Oldest first: the walk stops at the first one still in time. */
                for (struct st_peer *p = s->peers_head; p && p->accepted_ns <= due; p = p->next)
                        if (p->state != PEER_UPGRADED && !p->expired) {
                                p->expired = true;
                                peer_shut(s, p, SHUT_RDWR);
                        }
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_nsec += REAP_TICK_MS * 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&s->reaper_wake, &s->peers_lock, &until);
        }
        pthread_mutex_unlock(&s->peers_lock);
        return NULL;
}

/* ---------------------------------------------------------------- HTTP */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *extra_name,
                             const char *extra_value, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *extra_name,
                             const char *extra_value, const char *fmt, ...)
{
        char body[512];
        struct MHD_Response *resp;
        enum MHD_Result ret;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(body, sizeof(body) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        if ((size_t)n > sizeof(body) - 2)
                n = (int)sizeof(body) - 2;
        body[n++] = '\n';
        body[n] = '\0';
        resp = MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        /* One request per connection: a kept-alive one would start a new header deadline. */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        if (extra_name)
                MHD_add_response_header(resp, extra_name, extra_value);
        ret = MHD_queue_response(c, code, resp);
        MHD_destroy_response(resp);
        return ret;
}

bool st_has_token(const char *v, const char *token)
{
        const char *t;
        size_t n;

        while (sh_list_next(&v, &t, &n))
                if (n == strlen(token) && strncasecmp(t, token, n) == 0)
                        return true;
        return false;
}

bool st_joined_add(struct st_joined *j, const char *value)
{
        size_t n = strlen(value);

        if (j->len + n + 3 > sizeof(j->buf)) {
                j->overflow = true;
                return false;
        }
        if (j->len) {
                memcpy(j->buf + j->len, ", ", 2);
                j->len += 2;
        }
        memcpy(j->buf + j->len, value, n);
        j->len += n;
        j->buf[j->len] = '\0';
        return true;
}

static enum MHD_Result join_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
        struct st_joined *j = cls;

        (void)kind;
        if (!key || !value || strcasecmp(key, j->name) != 0)
                return MHD_YES;
        return st_joined_add(j, value) ? MHD_YES : MHD_NO;
}

/* Every value of header @name, joined with ", " (MHD keeps repeated headers apart). */
static int joined_header(struct MHD_Connection *c, enum MHD_ValueKind kind, const char *name,
                         struct st_joined *j)
{
        j->name = name;
        j->len = 0;
        j->buf[0] = '\0';
        j->overflow = false;
        MHD_get_connection_values(c, kind, join_header, j);
        return j->overflow ? -E2BIG : 0;
}

int st_spdy_choose(const char *offered, enum stream_kind kind, int *ret_version,
                   const char **ret_name)
{
        static const struct {
                const char *name;
                int version;
        } rc[] = {
                {"v5.channel.k8s.io", 5}, {"v4.channel.k8s.io", 4}, {"v3.channel.k8s.io", 3},
                {"v2.channel.k8s.io", 2}, {"channel.k8s.io", 1},
        };
        const char *cur = offered, *v;
        size_t m;

        while (sh_list_next(&cur, &v, &m)) {
                if (kind == STREAM_PORTFORWARD) {
                        if (m == strlen(PORTFORWARD_PROTO) &&
                            strncmp(v, PORTFORWARD_PROTO, m) == 0) {
                                *ret_version = 0;
                                *ret_name = PORTFORWARD_PROTO;
                                return 0;
                        }
                        continue;
                }
                for (size_t i = 0; i < SH_ARRAY_SIZE(rc); i++)
                        if (m == strlen(rc[i].name) && strncmp(v, rc[i].name, m) == 0) {
                                *ret_version = rc[i].version;
                                *ret_name = rc[i].name;
                                return 0;
                        }
        }
        return -ENOENT;
}

struct port_args {
        uint16_t ports[64];
        size_t n;
        int r;
        struct sh_error err;
};

static enum MHD_Result collect_port(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
        struct port_args *pa = cls;

        (void)kind;
        if (!key || strcmp(key, "port") != 0)
                return MHD_YES;
        pa->r = ws_k8s_pf_parse_ports(value ? value : "", pa->ports, SH_ARRAY_SIZE(pa->ports),
                                      &pa->n, &pa->err);
        return pa->r < 0 ? MHD_NO : MHD_YES;
}

static void on_upgrade(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra_in,
                       size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
        struct st_session *s = cls;
        struct st_conn *conn = con_cls;
        struct stream_server *srv = s->srv;
        pthread_attr_t attr;
        pthread_t tid;
        bool started;

        peer_set_state(srv, c, PEER_UPGRADED);
        if (conn)
                conn->pending = NULL; /* ours now, whatever happens */
        s->fd = sock;
        s->urh = urh;
        if (extra_in_size) {
                s->extra = malloc(extra_in_size);
                if (!s->extra) {
                        st_session_free(s);
                        return;
                }
                memcpy(s->extra, extra_in, extra_in_size);
                s->n_extra = extra_in_size;
        }
        pthread_mutex_lock(&srv->lock);
        started = !srv->stopping;
        if (started)
                srv->n_sessions++;
        pthread_mutex_unlock(&srv->lock);
        if (!started) {
                st_session_free(s);
                return;
        }
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        if (pthread_create(&tid, &attr, st_session_main, s) != 0) {
                sh_log_warn("cannot start a session thread");
                st_session_free(s);
                st_session_done(srv);
        }
        pthread_attr_destroy(&attr);
}

void st_session_done(struct stream_server *srv)
{
        pthread_mutex_lock(&srv->lock);
        srv->n_sessions--;
        pthread_cond_broadcast(&srv->idle);
        pthread_mutex_unlock(&srv->lock);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
        struct st_conn *conn = *con_cls;

        (void)cls;
        (void)c;
        (void)toe;
        if (!conn)
                return;
        if (conn->pending)
                st_session_free(conn->pending); /* the upgrade never happened */
        free(conn);
        *con_cls = NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
        struct stream_server *srv = cls;
        struct stream_req *req = NULL;
        struct st_session *s;
        struct st_conn *conn;
        struct MHD_Response *resp;
        struct st_joined j;
        const char *upgrade, *connection, *token = NULL, *proto = NULL;
        char accept[29];
        enum stream_kind kind = STREAM_EXEC;
        enum MHD_Result ret;
        size_t n;
        bool spdy;
        int r;

        (void)version;
        (void)upload;
        if (*con_cls) {
                /* A body (none is expected): drop it; the answer is queued already. */
                *upload_size = 0;
                return MHD_YES;
        }
        peer_set_state(srv, c, PEER_ANSWERED);
        conn = calloc(1, sizeof(*conn));
        if (!conn)
                return MHD_NO;
        *con_cls = conn;
        if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
                return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "Allow", "GET, POST",
                             "method %s not allowed", method);
        if (st_path_token(url, false, &kind, &token, &n) < 0)
                return reply(c, MHD_HTTP_NOT_FOUND, NULL, NULL, "404 page not found");
        r = token_find(srv, kind, token, n, &req);
        if (r == -ENOENT)
                return reply(c, MHD_HTTP_NOT_FOUND, NULL, NULL,
                             "unknown streaming token: request a new URL");
        if (r == -EACCES)
                return reply(c, MHD_HTTP_UNAUTHORIZED, NULL, NULL,
                             "streaming token already used: request a new URL");
        if (r == -ETIME)
                return reply(c, MHD_HTTP_UNAUTHORIZED, NULL, NULL,
                             "streaming token expired: request a new URL");

        upgrade = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Upgrade");
        connection = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Connection");
        if (!upgrade || !st_has_token(connection, "upgrade") ||
            (strcasecmp(upgrade, "SPDY/3.1") != 0 && strcasecmp(upgrade, "websocket") != 0)) {
                stream_req_free(req);
                return reply(c, MHD_HTTP_BAD_REQUEST, NULL, NULL,
                             "unable to upgrade: this endpoint needs 'Connection: Upgrade' and "
                             "'Upgrade: SPDY/3.1' or 'Upgrade: websocket'");
        }
        spdy = strcasecmp(upgrade, "SPDY/3.1") == 0;
        s = calloc(1, sizeof(*s));
        if (!s) {
                stream_req_free(req);
                return MHD_NO;
        }
        s->srv = srv;
        s->req = req;
        s->fd = -1;
        s->spdy = spdy;
        if (spdy) {
                if (joined_header(c, MHD_HEADER_KIND, SPDY_PROTO_HEADER, &j) < 0 || !j.len) {
                        st_session_free(s);
                        return reply(c, MHD_HTTP_BAD_REQUEST, NULL, NULL,
                                     "unable to upgrade: %s is required", SPDY_PROTO_HEADER);
                }
                if (st_spdy_choose(j.buf, kind, &s->version, &proto) < 0) {
                        st_session_free(s);
                        return reply(c, MHD_HTTP_FORBIDDEN, "X-Accepted-Stream-Protocol-Versions",
                                     kind == STREAM_PORTFORWARD
                                             ? PORTFORWARD_PROTO
                                             : "v5.channel.k8s.io, v4.channel.k8s.io, "
                                               "v3.channel.k8s.io, v2.channel.k8s.io, "
                                               "channel.k8s.io",
                                     "unable to upgrade: unable to negotiate protocol: client "
                                     "supports [%.200s]",
                                     j.buf);
                }
        } else {
                const char *key =
                        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");

                if (ws_check_version(MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                                 "Sec-WebSocket-Version")) < 0) {
                        st_session_free(s);
                        return reply(c, MHD_HTTP_UPGRADE_REQUIRED, "Sec-WebSocket-Version", "13",
                                     "unsupported WebSocket version: 13 is required");
                }
                if (!key || ws_accept_key(key, accept) < 0) {
                        st_session_free(s);
                        return reply(c, MHD_HTTP_BAD_REQUEST, NULL, NULL,
                                     "bad or missing Sec-WebSocket-Key");
                }
                if (joined_header(c, MHD_HEADER_KIND, "Sec-WebSocket-Protocol", &j) < 0 ||
                    ws_choose_protocol(j.buf,
                                       kind == STREAM_PORTFORWARD ? ws_k8s_portforward_protocols()
                                                                  : ws_k8s_exec_protocols(),
                                       &proto) < 0 ||
                    ws_k8s_proto_from_name(proto, &s->ws) < 0) {
                        st_session_free(s);
                        return reply(c, MHD_HTTP_FORBIDDEN, NULL, NULL,
                                     "unable to upgrade: none of the offered WebSocket "
                                     "protocols [%.200s] is supported",
                                     j.buf);
                }
                s->version = 4;
                if (s->ws == WS_V5_CHANNEL)
                        s->version = 5;
                else if (!ws_k8s_proto_status_errors(s->ws))
                        s->version = 2;
                if (kind == STREAM_PORTFORWARD) {
                        s->version = 0;
                        if (!req->n_ports) {
                                struct port_args pa = {.n = 0};

                                MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_port,
                                                          &pa);
                                if (pa.r < 0 || !pa.n) {
                                        st_session_free(s);
                                        return reply(c, MHD_HTTP_BAD_REQUEST, NULL, NULL, "%s",
                                                     pa.r < 0 ? pa.err.msg
                                                              : "query parameter \"port\" is "
                                                                "required");
                                }
                                req->ports = malloc(pa.n * sizeof(*req->ports));
                                if (!req->ports) {
                                        st_session_free(s);
                                        return MHD_NO;
                                }
                                memcpy(req->ports, pa.ports, pa.n * sizeof(*req->ports));
                                req->n_ports = pa.n;
                        }
                }
        }

        resp = MHD_create_response_for_upgrade(on_upgrade, s);
        if (!resp) {
                st_session_free(s);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, spdy ? "SPDY/3.1" : "websocket");
        /* MHD adds "Connection: Upgrade" itself. */
        if (spdy) {
                MHD_add_response_header(resp, SPDY_PROTO_HEADER, proto);
        } else {
                MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
                if (proto)
                        MHD_add_response_header(resp, "Sec-WebSocket-Protocol", proto);
        }
        conn->pending = s;
        ret = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
        MHD_destroy_response(resp);
        if (ret != MHD_YES) {
                conn->pending = NULL;
                st_session_free(s);
        }
        return ret;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        char buf[512];

        (void)cls;
        vsnprintf(buf, sizeof(buf), fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        sh_log_debug("mhd: %s", buf);
}

/* Binds @addr:@port (IPv4 or IPv6 literal) and fills the URL base. */
static int bind_listener(struct stream_server *s, const char *addr, unsigned port, int *ret_fd,
                         struct sh_error *err)
{
        struct sockaddr_storage ss = {0};
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        socklen_t len;
        bool v6 = false;
        int fd, one = 1;

        if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t)port);
                len = sizeof(*in4);
        } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t)port);
                len = sizeof(*in6);
                v6 = true;
        } else {
                return sh_err(err, -EINVAL, "streaming.address '%s' is not an IPv4 or IPv6 address",
                              addr);
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return sh_err(err, -errno, "streaming: socket: %s", strerror(errno));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (v6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 128) < 0) {
                int e = errno;

                close(fd);
                return sh_err(err, -e, "streaming: listen on %s:%u: %s", addr, port, strerror(e));
        }
        len = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &len);
        port = ntohs(v6 ? in6->sin6_port : in4->sin_port);
        snprintf(s->base_url, sizeof(s->base_url), v6 ? "http://[%s]:%u" : "http://%s:%u", addr,
                 port);
        *ret_fd = fd;
        return 0;
}

int stream_server_new(const struct runt_config *cfg, const struct stream_ops *ops, void *data,
                      struct stream_server **ret, struct sh_error *err)
{
        struct stream_server *s = calloc(1, sizeof(*s));
        pthread_condattr_t ca;
        int fd = -1, r;

        if (!s)
                return -ENOMEM;
        s->ops = ops;
        s->ops_data = data;
        s->ttl_s = cfg->streaming_token_ttl_s ? cfg->streaming_token_ttl_s : 60;
        s->creation_s = cfg->streaming_creation_timeout_s ? cfg->streaming_creation_timeout_s : 30;
        s->idle_s = cfg->streaming_idle_timeout_s;
        s->header_s = cfg->streaming_header_timeout_s ? cfg->streaming_header_timeout_s : 5;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->idle, NULL);
        pthread_mutex_init(&s->peers_lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->reaper_wake, &ca);
        pthread_condattr_destroy(&ca);
        s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->stop_fd < 0) {
                r = sh_err(err, -errno, "streaming: eventfd: %s", strerror(errno));
                goto fail;
        }
        r = bind_listener(s, cfg->streaming_address, cfg->streaming_port, &fd, err);
        if (r < 0)
                goto fail;
        s->mhd = MHD_start_daemon(
                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_UPGRADE |
                        MHD_USE_ERROR_LOG | MHD_USE_ITC,
                0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, fd,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
                on_connection, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)MHD_IDLE_S, MHD_OPTION_CONNECTION_LIMIT,
                (unsigned)(MAX_CONNECTIONS + LIMIT_SLACK), MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                (size_t)MEMORY_PER_CONN, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
        if (!s->mhd) {
                close(fd);
                r = sh_err(err, -EIO, "streaming: cannot start the HTTP server");
                goto fail;
        }
        r = -pthread_create(&s->reaper, NULL, reaper_main, s);
        if (r < 0) {
                MHD_stop_daemon(s->mhd);
                r = sh_err(err, r, "streaming: cannot start the reaper thread");
                goto fail;
        }
        s->reaper_started = true;
        sh_log_info("url=%s streaming server ready", s->base_url);
        *ret = s;
        return 0;
fail:
        if (s->stop_fd >= 0)
                close(s->stop_fd);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->idle);
        pthread_mutex_destroy(&s->peers_lock);
        pthread_cond_destroy(&s->reaper_wake);
        free(s);
        return r;
}

void stream_server_free(struct stream_server *s)
{
        struct timespec until;
        uint64_t one = 1;
        bool idle;

        if (!s)
                return;
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_lock(&s->peers_lock);
        s->reaper_stop = true;
        pthread_cond_signal(&s->reaper_wake);
        pthread_mutex_unlock(&s->peers_lock);
        if (s->reaper_started)
                pthread_join(s->reaper, NULL);
        if (write(s->stop_fd, &one, sizeof(one)) < 0)
                sh_log_warn("cannot tell streaming sessions to stop");
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += STOP_WAIT_MS / 1000;
        pthread_mutex_lock(&s->lock);
        while (s->n_sessions > 0)
                if (pthread_cond_timedwait(&s->idle, &s->lock, &until) == ETIMEDOUT)
                        break;
        idle = s->n_sessions == 0;
        pthread_mutex_unlock(&s->lock);
        if (!idle) {
                /* A session still runs: leave the server to the process's exit. */
                sh_log_warn("streaming sessions still running at stop");
                return;
        }
        MHD_stop_daemon(s->mhd);
        while (s->tokens) {
                struct st_token *t = s->tokens;

                s->tokens = t->next;
                token_free(t);
        }
        close(s->stop_fd);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->idle);
        pthread_mutex_destroy(&s->peers_lock);
        pthread_cond_destroy(&s->reaper_wake);
        free(s);
}
