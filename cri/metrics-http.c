/*
 * The metrics endpoint: a tiny HTTP/1.1 server on metrics.address that answers GET /metrics
 * with the registry's text exposition, and nothing else.
 *
 * One thread and poll(2); at most MH_MAX_CONNS connections at once (more wait in the listen
 * backlog); a request must arrive whole, at most MH_MAX_REQUEST bytes, within
 * MH_READ_TIMEOUT_MS of the connection, and its answer go out within MH_WRITE_TIMEOUT_MS, or
 * the connection is closed. Every answer carries Connection: close. So a client that
 * connects and sends nothing holds one slot for MH_READ_TIMEOUT_MS at most.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SH_LOG_MODULE "metrics"
#include "cleanup.h"
#include "cri-internal.h"
#include "log.h"
#include "metrics.h"
#include "strutil.h"
#include "validate.h"

#define MH_MAX_CONNS        4
#define MH_MAX_REQUEST      8192
#define MH_READ_TIMEOUT_MS  5000
#define MH_WRITE_TIMEOUT_MS 10000
#define MH_DRAIN_MS         500 /* after the answer: read what the client still sends, then close */

enum mh_state {
        MH_FREE = 0,
        MH_READ,
        MH_WRITE,
        MH_DRAIN,
};

struct mh_conn {
        enum mh_state state;
        int fd;
        unsigned long long deadline_ns;
        size_t n; /* bytes of req */
        char req[MH_MAX_REQUEST];
        char *resp; /* malloc'd answer */
        size_t resp_len, off;
};

struct cri_metrics_http {
        struct sh_metrics *reg;
        int lfd;
        int wake; /* eventfd: written to stop the thread */
        bool started;
        pthread_t thread;
        struct mh_conn conns[MH_MAX_CONNS];
};

int cri_metrics_address_parse(const char *addr, struct sockaddr_storage *ret, socklen_t *ret_len,
                              struct sh_error *err)
{
        int r = sh_parse_host_port(addr, ret, ret_len, err);

        if (r < 0)
                return sh_err_prefix(err, r, "metrics.address");
        return 0;
}

static void conn_close(struct mh_conn *c)
{
        if (c->state == MH_FREE)
                return;
        close(c->fd);
        free(c->resp);
        c->resp = NULL;
        c->state = MH_FREE;
        c->fd = -1;
}

/* Sets @c's answer: a status line, headers and @body (copied). Moves it to MH_WRITE. */
static void answer(struct mh_conn *c, const char *status, const char *extra_headers,
                   const char *ctype, const char *body, size_t body_len)
{
        _cleanup_free_ char *head = sh_strdup_printf(
                "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: "
                "close\r\n\r\n",
                status, ctype, body_len, extra_headers ? extra_headers : "");
        size_t hl;

        c->state = MH_WRITE;
        c->deadline_ns = sh_now_ns() + MH_WRITE_TIMEOUT_MS * 1000000ull;
        c->off = 0;
        if (!head || !(c->resp = malloc((hl = strlen(head)) + body_len))) {
                conn_close(c); /* no memory: nothing better to do than hang up */
                return;
        }
        memcpy(c->resp, head, hl);
        memcpy(c->resp + hl, body, body_len);
        c->resp_len = hl + body_len;
}

static void answer_text(struct mh_conn *c, const char *status, const char *extra_headers,
                        const char *text)
{
        answer(c, status, extra_headers, "text/plain; charset=utf-8", text, strlen(text));
}

/* The request of @c is complete (ends at @end): parse its request line and answer. */
static void handle(struct cri_metrics_http *s, struct mh_conn *c)
{
        char *line_end = memchr(c->req, '\n', c->n);
        char *sp1, *sp2, *target;
        size_t len;

        if (!line_end) {
                answer_text(c, "400 Bad Request", NULL, "malformed request\n");
                return;
        }
        *line_end = '\0';
        if (line_end > c->req && line_end[-1] == '\r')
                line_end[-1] = '\0';
        sp1 = strchr(c->req, ' ');
        sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 || sp1 == c->req) {
                answer_text(c, "400 Bad Request", NULL, "malformed request line\n");
                return;
        }
        *sp1 = '\0';
        *sp2 = '\0';
        target = sp1 + 1;
        len = strcspn(target, "?#");
        if (strcmp(c->req, "GET") != 0) {
                answer_text(c, "405 Method Not Allowed", "Allow: GET\r\n",
                            "only GET is served here\n");
                return;
        }
        if (len != strlen("/metrics") || strncmp(target, "/metrics", len) != 0) {
                answer_text(c, "404 Not Found", NULL, "not found: the metrics are at /metrics\n");
                return;
        }
        {
                _cleanup_free_ char *body = NULL;
                struct sh_error err = {0};
                size_t blen = 0;

                if (sh_metrics_render(s->reg, &body, &blen, &err) < 0) {
                        answer_text(c, "500 Internal Server Error", NULL, "cannot render\n");
                        return;
                }
                answer(c, "200 OK", NULL, "text/plain; version=0.0.4; charset=utf-8", body, blen);
        }
}

static void on_readable(struct cri_metrics_http *s, struct mh_conn *c)
{
        ssize_t n;

        if (c->state == MH_DRAIN) {
                char junk[1024];

                n = recv(c->fd, junk, sizeof(junk), 0);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                        conn_close(c);
                return;
        }
        n = recv(c->fd, c->req + c->n, sizeof(c->req) - 1 - c->n, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                conn_close(c); /* gone before it finished asking */
                return;
        }
        if (n < 0)
                return;
        c->n += (size_t)n;
        c->req[c->n] = '\0';
        if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n"))
                handle(s, c);
        else if (c->n == sizeof(c->req) - 1)
                answer_text(c, "431 Request Header Fields Too Large", NULL, "request too large\n");
}

static void on_writable(struct mh_conn *c)
{
        ssize_t n = send(c->fd, c->resp + c->off, c->resp_len - c->off, MSG_NOSIGNAL);

        if (n < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        conn_close(c);
                return;
        }
        c->off += (size_t)n;
        if (c->off < c->resp_len)
                return;
        /*
         * All sent. Closing with unread input would reset the connection and may lose the
         * answer at the client: half-close, and read what is left for a moment.
         */
        shutdown(c->fd, SHUT_WR);
        free(c->resp);
        c->resp = NULL;
        c->state = MH_DRAIN;
        c->deadline_ns = sh_now_ns() + MH_DRAIN_MS * 1000000ull;
}

static void accept_some(struct cri_metrics_http *s)
{
        for (size_t i = 0; i < MH_MAX_CONNS; i++) {
                struct mh_conn *c = &s->conns[i];
                int fd;

                if (c->state != MH_FREE)
                        continue;
                fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                        return; /* EAGAIN: none waiting; anything else: try on the next wake */
                c->fd = fd;
                c->n = 0;
                c->state = MH_READ;
                c->deadline_ns = sh_now_ns() + MH_READ_TIMEOUT_MS * 1000000ull;
        }
}

static void *serve(void *arg)
{
        struct cri_metrics_http *s = arg;

        for (;;) {
                struct pollfd pfd[2 + MH_MAX_CONNS];
                struct mh_conn *who[2 + MH_MAX_CONNS];
                unsigned long long now = sh_now_ns(), next = now + 60000000000ull;
                size_t n = 0, free_slots = 0;
                int timeout_ms;

                for (size_t i = 0; i < MH_MAX_CONNS; i++) {
                        struct mh_conn *c = &s->conns[i];

                        if (c->state != MH_FREE && now >= c->deadline_ns)
                                conn_close(c); /* too slow: asking, reading or lingering */
                        if (c->state == MH_FREE) {
                                free_slots++;
                                continue;
                        }
                        if (c->deadline_ns < next)
                                next = c->deadline_ns;
                        pfd[n] = (struct pollfd){.fd = c->fd,
                                                 .events = c->state == MH_WRITE ? POLLOUT : POLLIN};
                        who[n++] = c;
                }
                pfd[n] = (struct pollfd){.fd = s->wake, .events = POLLIN};
                who[n++] = NULL;
                /* A full house leaves new clients in the backlog until a slot frees. */
                if (free_slots > 0) {
                        pfd[n] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
                        who[n++] = NULL;
                }
                timeout_ms = (int)((next - now) / 1000000ull) + 1;
                if (poll(pfd, n, timeout_ms) < 0) {
                        if (errno == EINTR)
                                continue;
                        sh_log_error("poll: %s; the metrics endpoint stops", strerror(errno));
                        break;
                }
                if (pfd[n - (free_slots > 0 ? 2 : 1)].revents)
                        break; /* the wake eventfd: stopping */
                for (size_t i = 0; i < n; i++) {
                        struct mh_conn *c = who[i];

                        if (!c || !pfd[i].revents)
                                continue;
                        if (c->state == MH_WRITE && (pfd[i].revents & (POLLOUT | POLLERR)))
                                on_writable(c);
                        else if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
                                on_readable(s, c);
                }
                if (free_slots > 0 && pfd[n - 1].revents)
                        accept_some(s);
        }
        return NULL;
}

int cri_metrics_http_new(const char *address, struct sh_metrics *reg, struct cri_metrics_http **ret,
                         struct sh_error *err)
{
        struct sockaddr_storage sa;
        socklen_t sl;
        struct cri_metrics_http *s;
        int one = 1, r;

        r = cri_metrics_address_parse(address, &sa, &sl, err);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->reg = reg;
        s->wake = -1;
        for (size_t i = 0; i < MH_MAX_CONNS; i++)
                s->conns[i].fd = -1;
        s->lfd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->lfd < 0) {
                r = sh_err(err, -errno, "metrics: socket: %s", strerror(errno));
                goto fail;
        }
        setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (sa.ss_family == AF_INET6)
                setsockopt(s->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(s->lfd, (struct sockaddr *)&sa, sl) < 0 || listen(s->lfd, 16) < 0) {
                r = sh_err(err, -errno, "metrics: listen on %s: %s", address, strerror(errno));
                goto fail;
        }
        s->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->wake < 0) {
                r = sh_err(err, -errno, "metrics: eventfd: %s", strerror(errno));
                goto fail;
        }
        r = -pthread_create(&s->thread, NULL, serve, s);
        if (r < 0) {
                sh_err(err, r, "metrics: start the thread: %s", strerror(-r));
                goto fail;
        }
        s->started = true;
        *ret = s;
        return 0;
fail:
        cri_metrics_http_free(s);
        return r;
}

struct cri_metrics_http *cri_metrics_http_free(struct cri_metrics_http *s)
{
        if (!s)
                return NULL;
        if (s->started) {
                eventfd_write(s->wake, 1);
                pthread_join(s->thread, NULL);
        }
        for (size_t i = 0; i < MH_MAX_CONNS; i++)
                conn_close(&s->conns[i]);
        if (s->wake >= 0)
                close(s->wake);
        if (s->lfd >= 0)
                close(s->lfd);
        free(s);
        return NULL;
}
