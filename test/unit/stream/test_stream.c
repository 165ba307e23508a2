/*
 * stream/stream.c and stream-session.c without a backend: the token rules and HTTP answers,
 * protocol negotiation, and whole port-forward sessions over SPDY and WebSocket into a TCP
 * echo server on loopback (a request with the host's netns, "", needs no pod). Most tests
 * give the server no stream_ops; test_ops_* give it child_ops, which runs an exec as a child
 * of the test and dials port-forwards itself, as cri/ does through podmgr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "error.h"
#include "spdy.h"
#include "stream.h"
#include "strutil.h"

struct fixture {
        struct runt_config cfg;
        struct stream_server *srv;
        char host[64];
        unsigned port;
        /* child_ops: where sandbox_dial goes, and what the ops were asked (under lock) */
        pthread_mutex_t lock;
        unsigned dial_to;
        unsigned dialled_port;
        char asked_id[80];
        int n_dials, n_execs;
};

static const struct stream_ops child_ops;

static int setup_with(void **state, const struct stream_ops *ops)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct sh_error err = {0};
        const char *base;

        assert_non_null(f);
        pthread_mutex_init(&f->lock, NULL);
        assert_int_equal(runt_config_defaults(&f->cfg, &err), 0);
        f->cfg.streaming_token_ttl_s = 1;
        f->cfg.streaming_creation_timeout_s = 2;
        assert_int_equal(stream_server_new(&f->cfg, ops, f, &f->srv, &err), 0);
        base = stream_base_url(f->srv);
        assert_int_equal(sscanf(base, "http://%63[^:]:%u", f->host, &f->port), 2);
        assert_string_equal(f->host, "127.0.0.1");
        assert_true(f->port > 0);
        *state = f;
        return 0;
}

static int setup(void **state)
{
        return setup_with(state, NULL);
}

static int setup_ops(void **state)
{
        return setup_with(state, &child_ops);
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        stream_server_free(f->srv);
        runt_config_done(&f->cfg);
        pthread_mutex_destroy(&f->lock);
        free(f);
        return 0;
}

static char *issue(struct fixture *f, enum stream_kind kind, const uint16_t *ports, size_t n)
{
        struct stream_req *r = calloc(1, sizeof(*r));
        struct sh_error err = {0};
        char *url = NULL;

        assert_non_null(r);
        r->kind = kind;
        r->id = strdup("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        r->netns = strdup("");
        if (kind == STREAM_EXEC) {
                r->argv = calloc(2, sizeof(char *));
                r->argv[0] = strdup("true");
                r->out = true;
        }
        if (n) {
                r->ports = malloc(n * sizeof(*r->ports));
                memcpy(r->ports, ports, n * sizeof(*r->ports));
                r->n_ports = n;
        }
        assert_int_equal(stream_issue(f->srv, r, &url, &err), 0);
        return url;
}

static int dial(unsigned port)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        struct timeval tv = {.tv_sec = 5};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return fd;
}

/* The path of @url (after host:port). */
static const char *path_of(const char *url)
{
        const char *p = strchr(url + strlen("http://"), '/');

        assert_non_null(p);
        return p;
}

/*
 * Sends "METHOD PATH" with @headers (CRLF-terminated lines) and reads the response head;
 * returns the status, the head in @head, the connection in *@ret_fd (or closed when NULL).
 * Bytes read past the head stay in @rest/@n_rest.
 */
static int request(struct fixture *f, const char *method, const char *path, const char *headers,
                   char *head, size_t size, int *ret_fd, uint8_t *rest, size_t *n_rest)
{
        int fd = dial(f->port), status = 0;
        char *req = sh_strdup_printf("%s %s HTTP/1.1\r\nHost: %s:%u\r\n%s\r\n", method, path,
                                     f->host, f->port, headers ? headers : "");
        size_t len = 0;
        char *end;

        assert_non_null(req);
        assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        free(req);
        for (;;) {
                ssize_t n = read(fd, head + len, size - 1 - len);

                assert_true(n > 0);
                len += (size_t)n;
                head[len] = '\0';
                end = strstr(head, "\r\n\r\n");
                if (end)
                        break;
                assert_true(len < size - 1);
        }
        assert_int_equal(sscanf(head, "HTTP/1.1 %d", &status), 1);
        if (rest) {
                *n_rest = len - (size_t)(end + 4 - head);
                memcpy(rest, end + 4, *n_rest);
        } else {
                /* The body, for the tests that read the reason. */
                ssize_t n;

                while (len < size - 1 && (n = read(fd, head + len, size - 1 - len)) > 0)
                        len += (size_t)n;
                head[len] = '\0';
        }
        if (ret_fd)
                *ret_fd = fd;
        else
                close(fd);
        return status;
}

#define SPDY_UP "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"

static void test_tokens(void **state)
{
        struct fixture *f = *state;
        char head[4096];
        char *url = issue(f, STREAM_EXEC, NULL, 0), *other;
        char wrong[128];

        assert_true(strncmp(url, stream_base_url(f->srv), strlen(stream_base_url(f->srv))) == 0);
        assert_non_null(strstr(url, "/exec/"));
        /* No upgrade: 400, and the token is spent. */
        assert_int_equal(
                request(f, "GET", path_of(url), NULL, head, sizeof(head), NULL, NULL, NULL), 400);
        assert_non_null(strstr(head, "unable to upgrade"));
        assert_int_equal(
                request(f, "POST", path_of(url), SPDY_UP, head, sizeof(head), NULL, NULL, NULL),
                401);
        assert_non_null(strstr(head, "already used"));
        /* Unknown, malformed, or issued for another path: 404. */
        assert_int_equal(request(f, "GET", "/exec/0123456789abcdef0123456789abcdef", SPDY_UP, head,
                                 sizeof(head), NULL, NULL, NULL),
                         404);
        assert_non_null(strstr(head, "unknown streaming token"));
        assert_int_equal(request(f, "GET", "/exec/../../etc/passwd", NULL, head, sizeof(head), NULL,
                                 NULL, NULL),
                         404);
        assert_int_equal(request(f, "GET", "/", NULL, head, sizeof(head), NULL, NULL, NULL), 404);
        other = issue(f, STREAM_EXEC, NULL, 0);
        snprintf(wrong, sizeof(wrong), "/attach/%s", strrchr(other, '/') + 1);
        assert_int_equal(request(f, "GET", wrong, SPDY_UP, head, sizeof(head), NULL, NULL, NULL),
                         404);
        assert_int_equal(
                request(f, "DELETE", path_of(other), NULL, head, sizeof(head), NULL, NULL, NULL),
                405);
        free(other);
        /* Expired (ttl 1 s): 401 saying so. */
        other = issue(f, STREAM_EXEC, NULL, 0);
        usleep(1200 * 1000);
        assert_int_equal(
                request(f, "POST", path_of(other), SPDY_UP, head, sizeof(head), NULL, NULL, NULL),
                401);
        assert_non_null(strstr(head, "expired"));
        free(other);
        free(url);
}

static void test_too_many(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        char *url = NULL;
        size_t n = 0;

        for (;; n++) {
                struct stream_req *r = calloc(1, sizeof(*r));

                r->kind = STREAM_PORTFORWARD;
                r->id = strdup("x");
                if (stream_issue(f->srv, r, &url, &err) < 0)
                        break;
                free(url);
                assert_true(n < 5000);
        }
        assert_int_equal(n, 1000);
        assert_non_null(strstr(err.msg, "wait for a connection"));
        /* Once they expire, new ones are taken again. */
        usleep(1200 * 1000);
        url = issue(f, STREAM_EXEC, NULL, 0);
        free(url);
}

static void test_negotiation(void **state)
{
        struct fixture *f = *state;
        char head[4096];
        struct {
                const char *headers;
                int status;
                const char *says;
        } cases[] = {
                {SPDY_UP, 400, "X-Stream-Protocol-Version is required"},
                {SPDY_UP "X-Stream-Protocol-Version: v9.channel.k8s.io\r\n", 403,
                 "unable to negotiate"},
                {"Connection: Upgrade\r\nUpgrade: h2c\r\n", 400, "unable to upgrade"},
                {"Connection: keep-alive\r\nUpgrade: websocket\r\n", 400, "unable to upgrade"},
                {"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                 426, "13 is required"},
                {"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: short\r\n",
                 400, "Sec-WebSocket-Key"},
                {"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Protocol: v9.channel.k8s.io\r\n",
                 403, "is supported"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *url = issue(f, STREAM_EXEC, NULL, 0);

                assert_int_equal(request(f, "GET", path_of(url), cases[i].headers, head,
                                         sizeof(head), NULL, NULL, NULL),
                                 cases[i].status);
                if (!strstr(head, cases[i].says))
                        fail_msg("case %zu: '%s' not in %s", i, cases[i].says, head);
                free(url);
        }
        /* Request headers past the 32 KiB a connection may use: refused, not buffered. */
        {
                char *url = issue(f, STREAM_EXEC, NULL, 0);
                size_t big = 40 * 1024;
                char *h = malloc(big + 64);
                int status;

                assert_non_null(h);
                memcpy(h, "X-Big: ", 7);
                memset(h + 7, 'a', big);
                memcpy(h + 7 + big, "\r\n", 3);
                status = request(f, "GET", path_of(url), h, head, sizeof(head), NULL, NULL, NULL);
                if (status != 431 && status != 413)
                        fail_msg("oversized headers: %d", status);
                free(h);
                free(url);
        }
        /* A WebSocket port-forward without ports anywhere. */
        {
                char *url = issue(f, STREAM_PORTFORWARD, NULL, 0);

                assert_int_equal(request(f, "GET", path_of(url),
                                         "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                         "Sec-WebSocket-Version: 13\r\n"
                                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                         "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n",
                                         head, sizeof(head), NULL, NULL, NULL),
                                 400);
                assert_non_null(strstr(head, "\"port\" is required"));
                free(url);
        }
}

/* ---------------------------------------------------------------- an echo server */

struct echo {
        int lfd;
        unsigned port;
        pthread_t tid;
};

static void *echo_main(void *arg)
{
        struct echo *e = arg;
        int fd = accept(e->lfd, NULL, NULL);
        char buf[4096];
        ssize_t n;

        if (fd < 0)
                return NULL;
        /* Echoes until "quit", then closes. */
        while ((n = read(fd, buf, sizeof(buf))) > 0) {
                if (n >= 4 && memcmp(buf + n - 4, "quit", 4) == 0)
                        break;
                if (write(fd, buf, (size_t)n) != n)
                        break;
        }
        close(fd);
        return NULL;
}

static void echo_start(struct echo *e)
{
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t len = sizeof(a);

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        e->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(e->lfd >= 0);
        assert_int_equal(bind(e->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(e->lfd, 4), 0);
        getsockname(e->lfd, (struct sockaddr *)&a, &len);
        e->port = ntohs(a.sin_port);
        assert_int_equal(pthread_create(&e->tid, NULL, echo_main, e), 0);
}

static void echo_stop(struct echo *e)
{
        pthread_join(e->tid, NULL);
        close(e->lfd);
}

/* Reads at least @need bytes into @buf (after @have); returns the total. */
static size_t read_more(int fd, uint8_t *buf, size_t have, size_t need, size_t size)
{
        while (have < need) {
                ssize_t n = read(fd, buf + have, size - have);

                if (n < 0 && errno == EINTR) /* test_ops_exec: its child's SIGCHLD */
                        continue;
                assert_true(n > 0);
                have += (size_t)n;
        }
        return have;
}

/* A masked client frame. */
static size_t ws_client_frame(uint8_t *out, uint8_t opcode, const void *data, size_t len)
{
        const uint8_t mask[4] = {0x11, 0x22, 0x33, 0x44};
        size_t k = 0;

        assert_true(len < 126);
        out[k++] = 0x80 | opcode;
        out[k++] = 0x80 | (uint8_t)len;
        memcpy(out + k, mask, 4);
        k += 4;
        for (size_t i = 0; i < len; i++)
                out[k++] = ((const uint8_t *)data)[i] ^ mask[i % 4];
        return k;
}

static void test_portforward_ws(void **state)
{
        struct fixture *f = *state;
        struct echo e;
        uint8_t buf[8192], frame[256];
        char head[4096];
        size_t have = 0, k;
        uint16_t ports[1];
        char *url;
        int fd;

        echo_start(&e);
        ports[0] = (uint16_t)e.port;
        url = issue(f, STREAM_PORTFORWARD, ports, 1);
        assert_int_equal(request(f, "GET", path_of(url),
                                 "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                 "Sec-WebSocket-Version: 13\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                 "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n",
                                 head, sizeof(head), &fd, buf, &have),
                         101);
        /* RFC 6455's own example key. */
        assert_non_null(strstr(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_non_null(strstr(head, "Sec-WebSocket-Protocol: v4.channel.k8s.io"));
        /* The port on channel 0 and on channel 1: two 5-byte frames (2 + channel + port). */
        have = read_more(fd, buf, have, 10, sizeof(buf));
        assert_int_equal(buf[0], 0x82);
        assert_int_equal(buf[1], 3);
        assert_int_equal(buf[2], 0);
        assert_int_equal(buf[3] | buf[4] << 8, e.port);
        assert_int_equal(buf[7], 1);
        assert_int_equal(buf[8] | buf[9] << 8, e.port);
        memmove(buf, buf + 10, have - 10);
        have -= 10;
        k = ws_client_frame(frame, 0x2, "\x00hello", 6);
        assert_int_equal(write(fd, frame, k), (ssize_t)k);
        have = read_more(fd, buf, have, 8, sizeof(buf));
        assert_int_equal(buf[0], 0x82);
        assert_int_equal(buf[1], 6);
        assert_memory_equal(buf + 2, "\x00hello", 6);
        memmove(buf, buf + 8, have - 8);
        have -= 8;
        /* The pod side closes: the session ends with a normal close frame. */
        k = ws_client_frame(frame, 0x2, "\x00quit", 5);
        assert_int_equal(write(fd, frame, k), (ssize_t)k);
        have = read_more(fd, buf, have, 4, sizeof(buf));
        assert_int_equal(buf[0], 0x88);
        assert_int_equal(buf[1], 2);
        assert_int_equal(buf[2] << 8 | buf[3], 1000);
        close(fd);
        echo_stop(&e);
        free(url);
}

/* Decodes frames from the connection until one of @type on @sid arrives. */
static void spdy_wait(int fd, struct spdy_session *client, struct spdy_buf *rx,
                      enum spdy_frame_type type, uint32_t sid, struct spdy_buf *data_out, bool *fin)
{
        for (;;) {
                struct spdy_frame fr;
                struct sh_error err = {0};
                size_t used = 0;
                int r = spdy_parse(client, rx->data, rx->len, &used, &fr, &err);

                if (r == -EAGAIN) {
                        uint8_t b[4096];
                        ssize_t n = read(fd, b, sizeof(b));

                        spdy_buf_consume(rx, used);
                        assert_true(n > 0);
                        assert_int_equal(spdy_buf_append(rx, b, (size_t)n), 0);
                        continue;
                }
                assert_int_equal(r, 0);
                if (fr.type == SPDY_DATA && data_out)
                        assert_int_equal(spdy_buf_append(data_out, fr.data, fr.data_len), 0);
                if (fin && fr.type == SPDY_DATA && fr.stream_id == sid)
                        *fin = fr.flags & SPDY_FLAG_FIN;
                spdy_buf_consume(rx, used);
                if (fr.type == type && fr.stream_id == sid)
                        return;
        }
}

static void test_portforward_spdy(void **state)
{
        struct fixture *f = *state;
        struct spdy_session client = {0};
        struct spdy_buf tx = {0}, rx = {0}, got = {0};
        struct sh_error err = {0};
        uint8_t rest[4096];
        char head[4096], port[8];
        size_t n_rest = 0;
        struct echo e;
        bool fin = false;
        char *url;
        int fd;

        echo_start(&e);
        snprintf(port, sizeof(port), "%u", e.port);
        url = issue(f, STREAM_PORTFORWARD, NULL, 0);
        assert_int_equal(request(f, "POST", path_of(url),
                                 SPDY_UP "X-Stream-Protocol-Version: portforward.k8s.io\r\n", head,
                                 sizeof(head), &fd, rest, &n_rest),
                         101);
        assert_non_null(strstr(head, "X-Stream-Protocol-Version: portforward.k8s.io"));
        assert_int_equal(spdy_session_init(&client, NULL, &err), 0);
        assert_int_equal(spdy_buf_append(&rx, rest, n_rest), 0);
        {
                const struct spdy_header eh[] = {SPDY_HDR("streamtype", "error"),
                                                 SPDY_HDR("port", port),
                                                 SPDY_HDR("requestid", "0")};
                const struct spdy_header dh[] = {SPDY_HDR("streamtype", "data"),
                                                 SPDY_HDR("port", port),
                                                 SPDY_HDR("requestid", "0")};

                assert_int_equal(
                        spdy_encode_syn_stream(&client, &tx, 1, 0, 0, SPDY_FLAG_FIN, eh, 3, &err),
                        0);
                assert_int_equal(spdy_encode_syn_stream(&client, &tx, 3, 0, 0, 0, dh, 3, &err), 0);
        }
        assert_int_equal(spdy_encode_data(&tx, 3, 0, "ping", 4, &err), 0);
        assert_int_equal(write(fd, tx.data, tx.len), (ssize_t)tx.len);
        tx.len = 0;
        spdy_wait(fd, &client, &rx, SPDY_SYN_REPLY, 1, NULL, NULL);
        spdy_wait(fd, &client, &rx, SPDY_SYN_REPLY, 3, NULL, NULL);
        while (got.len < 4)
                spdy_wait(fd, &client, &rx, SPDY_DATA, 3, &got, NULL);
        assert_memory_equal(got.data, "ping", 4);
        /* "quit": the echo server closes; data then error stream end with FIN. */
        assert_int_equal(spdy_encode_data(&tx, 3, 0, "quit", 4, &err), 0);
        assert_int_equal(write(fd, tx.data, tx.len), (ssize_t)tx.len);
        while (!fin)
                spdy_wait(fd, &client, &rx, SPDY_DATA, 3, NULL, &fin);
        fin = false;
        while (!fin)
                spdy_wait(fd, &client, &rx, SPDY_DATA, 1, NULL, &fin);
        /* A second connection to a port nobody listens on: the error text, then FINs. */
        tx.len = 0;
        got.len = 0;
        {
                const struct spdy_header eh[] = {SPDY_HDR("streamtype", "error"),
                                                 SPDY_HDR("port", "1"), SPDY_HDR("requestid", "1")};
                const struct spdy_header dh[] = {SPDY_HDR("streamtype", "data"),
                                                 SPDY_HDR("port", "1"), SPDY_HDR("requestid", "1")};

                assert_int_equal(spdy_encode_syn_stream(&client, &tx, 5, 0, 0, 0, eh, 3, &err), 0);
                assert_int_equal(spdy_encode_syn_stream(&client, &tx, 7, 0, 0, 0, dh, 3, &err), 0);
        }
        assert_int_equal(write(fd, tx.data, tx.len), (ssize_t)tx.len);
        fin = false;
        while (!fin)
                spdy_wait(fd, &client, &rx, SPDY_DATA, 5, &got, &fin);
        assert_int_equal(spdy_buf_append(&got, "", 1), 0);
        if (!strstr((const char *)got.data, "error forwarding port 1"))
                fail_msg("error stream says '%s'", (const char *)got.data);
        /*
         * A port whose listener never accepts and whose backlog is full (SYNs are dropped: the
         * connect hangs): the session goes on serving the other connections meanwhile.
         */
        {
                struct sockaddr_in a = {.sin_family = AF_INET};
                socklen_t alen = sizeof(a);
                int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), fill[4];
                char stuck[8], live[8];

                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
                assert_int_equal(listen(lfd, 0), 0);
                getsockname(lfd, (struct sockaddr *)&a, &alen);
                for (int i = 0; i < 4; i++) {
                        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                        connect(fill[i], (struct sockaddr *)&a, sizeof(a));
                }
                usleep(100 * 1000);
                snprintf(stuck, sizeof(stuck), "%u", ntohs(a.sin_port));
                snprintf(live, sizeof(live), "%u", e.port);
                echo_stop(&e);
                echo_start(&e);
                snprintf(live, sizeof(live), "%u", e.port);
                tx.len = 0;
                got.len = 0;
                {
                        const struct spdy_header h1[] = {SPDY_HDR("streamtype", "error"),
                                                         SPDY_HDR("port", stuck),
                                                         SPDY_HDR("requestid", "2")};
                        const struct spdy_header h2[] = {SPDY_HDR("streamtype", "data"),
                                                         SPDY_HDR("port", stuck),
                                                         SPDY_HDR("requestid", "2")};
                        const struct spdy_header h3[] = {SPDY_HDR("streamtype", "error"),
                                                         SPDY_HDR("port", live),
                                                         SPDY_HDR("requestid", "3")};
                        const struct spdy_header h4[] = {SPDY_HDR("streamtype", "data"),
                                                         SPDY_HDR("port", live),
                                                         SPDY_HDR("requestid", "3")};

                        assert_int_equal(
                                spdy_encode_syn_stream(&client, &tx, 9, 0, 0, 0, h1, 3, &err), 0);
                        assert_int_equal(
                                spdy_encode_syn_stream(&client, &tx, 11, 0, 0, 0, h2, 3, &err), 0);
                        assert_int_equal(
                                spdy_encode_syn_stream(&client, &tx, 13, 0, 0, 0, h3, 3, &err), 0);
                        assert_int_equal(
                                spdy_encode_syn_stream(&client, &tx, 15, 0, 0, 0, h4, 3, &err), 0);
                }
                assert_int_equal(spdy_encode_data(&tx, 15, 0, "live", 4, &err), 0);
                assert_int_equal(write(fd, tx.data, tx.len), (ssize_t)tx.len);
                while (got.len < 4)
                        spdy_wait(fd, &client, &rx, SPDY_DATA, 15, &got, NULL);
                assert_memory_equal(got.data, "live", 4);
                tx.len = 0;
                assert_int_equal(spdy_encode_data(&tx, 15, 0, "quit", 4, &err), 0);
                assert_int_equal(write(fd, tx.data, tx.len), (ssize_t)tx.len);
                for (int i = 0; i < 4; i++)
                        close(fill[i]);
                close(lfd);
        }
        /* A hostile frame (a control frame of version 2) ends the session with GOAWAY. */
        tx.len = 0;
        {
                const uint8_t bad[] = {0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1};

                assert_int_equal(write(fd, bad, sizeof(bad)), (ssize_t)sizeof(bad));
        }
        spdy_wait(fd, &client, &rx, SPDY_GOAWAY, 0, NULL, NULL);
        close(fd);
        spdy_buf_done(&tx);
        spdy_buf_done(&rx);
        spdy_buf_done(&got);
        spdy_session_done(&client);
        echo_stop(&e);
        free(url);
}

/* The server stops while a session is open: the session ends, nothing hangs. */
static void test_stop_with_session(void **state)
{
        struct fixture *f = *state;
        uint8_t rest[4096];
        char head[4096];
        size_t n_rest = 0;
        char *url = issue(f, STREAM_PORTFORWARD, NULL, 0);
        struct timespec t0, t1;
        int fd;

        assert_int_equal(request(f, "POST", path_of(url),
                                 SPDY_UP "X-Stream-Protocol-Version: portforward.k8s.io\r\n", head,
                                 sizeof(head), &fd, rest, &n_rest),
                         101);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        stream_server_free(f->srv);
        f->srv = NULL;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_true(t1.tv_sec - t0.tv_sec < 3);
        {
                char b[64];

                assert_true(read(fd, b, sizeof(b)) <= 0); /* closed */
        }
        close(fd);
        free(url);
}

/* ---------------------------------------------------------------- through stream_ops */

/* exec: @argv as a child of this process, its stdout on a pipe; the session reaps it. */
static int ops_exec(void *data, const char *id, const char *const *argv, bool tty, bool want_stdin,
                    struct stream_exec *ret, struct sh_error *err)
{
        struct fixture *f = data;
        int out[2];
        pid_t pid;

        if (tty || want_stdin)
                return sh_err(err, -EINVAL, "test exec: no tty, no stdin");
        pthread_mutex_lock(&f->lock);
        f->n_execs++;
        snprintf(f->asked_id, sizeof(f->asked_id), "%s", id);
        pthread_mutex_unlock(&f->lock);
        if (pipe2(out, O_CLOEXEC) < 0)
                return sh_err(err, -errno, "pipe: %s", strerror(errno));
        pid = fork();
        if (pid < 0) {
                close(out[0]);
                close(out[1]);
                return sh_err(err, -errno, "fork: %s", strerror(errno));
        }
        if (pid == 0) {
                dup2(out[1], STDOUT_FILENO);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        close(out[1]);
        ret->stdout_fd = out[0];
        ret->pid = pid;
        return 0;
}

/* sandbox_dial: the port asked for is noted, the connection goes to f->dial_to. */
static int ops_sandbox_dial(void *data, const char *id, unsigned port, int *ret_fd,
                            struct sh_error *err)
{
        struct fixture *f = data;
        struct sockaddr_in a = {.sin_family = AF_INET};
        int fd;

        pthread_mutex_lock(&f->lock);
        f->n_dials++;
        f->dialled_port = port;
        snprintf(f->asked_id, sizeof(f->asked_id), "%s", id);
        a.sin_port = htons((uint16_t)f->dial_to);
        pthread_mutex_unlock(&f->lock);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return sh_err(err, -errno, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
                int e = errno;

                close(fd);
                return sh_err(err, -e, "connect: %s", strerror(e));
        }
        *ret_fd = fd;
        return 0;
}

/* attach and container_running are left out: a missing op answers -EOPNOTSUPP. */
static const struct stream_ops child_ops = {
        .exec = ops_exec,
        .sandbox_dial = ops_sandbox_dial,
};

/*
 * Reads server frames (unmasked) until a close frame; appends each binary message's payload
 * after its channel byte to @chan[channel] (channels 0..4). Returns the close code.
 */
static unsigned ws_read_until_close(int fd, uint8_t *buf, size_t have, size_t size,
                                    struct spdy_buf chan[5], unsigned *ret_first_channel)
{
        bool first = true;

        for (;;) {
                size_t hdr = 2, len;

                have = read_more(fd, buf, have, 2, size);
                len = buf[1] & 0x7f;
                assert_int_equal(buf[1] & 0x80, 0);
                if (len == 126) {
                        hdr = 4;
                        have = read_more(fd, buf, have, hdr, size);
                        len = (size_t)buf[2] << 8 | buf[3];
                }
                assert_true(len != 127 && hdr + len <= size);
                have = read_more(fd, buf, have, hdr + len, size);
                if ((buf[0] & 0x0f) == 0x8) {
                        assert_true(len >= 2);
                        return (unsigned)buf[hdr] << 8 | buf[hdr + 1];
                }
                assert_int_equal(buf[0], 0x82);
                assert_true(len >= 1 && buf[hdr] < 5);
                if (first && ret_first_channel)
                        *ret_first_channel = buf[hdr];
                first = false;
                assert_int_equal(spdy_buf_append(&chan[buf[hdr]], buf + hdr + 1, len - 1), 0);
                memmove(buf, buf + hdr + len, have - hdr - len);
                have -= hdr + len;
        }
}

#define OPS_ID "feedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedface"

/* A request of @kind for container OPS_ID with stdout. */
static struct stream_req *ops_req(enum stream_kind kind)
{
        struct stream_req *r = calloc(1, sizeof(*r));

        assert_non_null(r);
        *r = (struct stream_req){.kind = kind, .out = true};
        r->id = strdup(OPS_ID);
        r->netns = strdup("");
        assert_true(r->id && r->netns);
        return r;
}

/* Upgrades a connection to @url to WebSocket v4.channel.k8s.io; what came past the head
 * is in @buf, *@have bytes. */
static int ws_open(struct fixture *f, const char *url, uint8_t *buf, size_t *have)
{
        char head[4096];
        int fd;

        *have = 0;
        assert_int_equal(request(f, "GET", path_of(url),
                                 "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                 "Sec-WebSocket-Version: 13\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                 "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n",
                                 head, sizeof(head), &fd, buf, have),
                         101);
        return fd;
}

/* Issues @r (taken), runs its session to the close frame; the channels' bytes in @chan,
 * channel 3 (the status) NUL-terminated. Returns the close code. */
static unsigned ws_whole_session(struct fixture *f, struct stream_req *r, struct spdy_buf chan[5],
                                 unsigned *ret_first_channel)
{
        struct sh_error err = {0};
        uint8_t buf[8192];
        char *url = NULL;
        size_t have;
        unsigned code;
        int fd;

        assert_int_equal(stream_issue(f->srv, r, &url, &err), 0);
        fd = ws_open(f, url, buf, &have);
        code = ws_read_until_close(fd, buf, have, sizeof(buf), chan, ret_first_channel);
        close(fd);
        free(url);
        assert_int_equal(spdy_buf_append(&chan[3], "", 1), 0);
        return code;
}

static void chans_done(struct spdy_buf chan[5])
{
        for (size_t i = 0; i < 5; i++)
                spdy_buf_done(&chan[i]);
}

/* An exec runs through ops.exec: its output and its exit code reach the client. */
static void test_ops_exec(void **state)
{
        static const char *const argv[] = {"/bin/sh", "-c", "printf hello; exit 3", NULL};
        struct fixture *f = *state;
        struct spdy_buf chan[5] = {0};
        struct stream_req *r = ops_req(STREAM_EXEC);
        unsigned first = 99;

        r->argv = calloc(4, sizeof(char *));
        assert_non_null(r->argv);
        for (size_t i = 0; argv[i]; i++)
                assert_non_null(r->argv[i] = strdup(argv[i]));
        assert_int_equal(ws_whole_session(f, r, chan, &first), 1000);
        assert_int_equal(first, 1); /* the empty stdout message: the session is up */
        assert_int_equal(chan[1].len, 5);
        assert_memory_equal(chan[1].data, "hello", 5);
        assert_non_null(strstr((char *)chan[3].data, "\"reason\":\"NonZeroExitCode\""));
        assert_non_null(strstr((char *)chan[3].data, "exited with 3"));
        pthread_mutex_lock(&f->lock);
        assert_int_equal(f->n_execs, 1);
        assert_string_equal(f->asked_id, OPS_ID);
        pthread_mutex_unlock(&f->lock);
        chans_done(chan);
}

/* A port-forward dials through ops.sandbox_dial, not in the request's netns. */
static void test_ops_portforward(void **state)
{
        struct fixture *f = *state;
        struct spdy_buf chan[5] = {0};
        uint16_t ports[1] = {9}; /* nothing listens there: only the op's dial reaches the echo */
        uint8_t buf[8192], frame[256];
        struct echo e;
        size_t have, k;
        char *url;
        int fd;

        echo_start(&e);
        pthread_mutex_lock(&f->lock);
        f->dial_to = e.port;
        pthread_mutex_unlock(&f->lock);
        url = issue(f, STREAM_PORTFORWARD, ports, 1);
        fd = ws_open(f, url, buf, &have);
        have = read_more(fd, buf, have, 10, sizeof(buf)); /* the port on channels 0 and 1 */
        assert_int_equal(buf[3] | buf[4] << 8, 9);
        memmove(buf, buf + 10, have - 10);
        have -= 10;
        k = ws_client_frame(frame, 0x2, "\x00hello", 6);
        assert_int_equal(write(fd, frame, k), (ssize_t)k);
        have = read_more(fd, buf, have, 8, sizeof(buf));
        assert_memory_equal(buf + 2, "\x00hello", 6);
        memmove(buf, buf + 8, have - 8);
        have -= 8;
        k = ws_client_frame(frame, 0x2, "\x00quit", 5);
        assert_int_equal(write(fd, frame, k), (ssize_t)k);
        assert_int_equal(ws_read_until_close(fd, buf, have, sizeof(buf), chan, NULL), 1000);
        close(fd);
        echo_stop(&e);
        free(url);
        pthread_mutex_lock(&f->lock);
        assert_int_equal(f->n_dials, 1);
        assert_int_equal(f->dialled_port, 9);
        assert_string_equal(f->asked_id,
                            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        pthread_mutex_unlock(&f->lock);
        chans_done(chan);
}

/* An attach whose op is missing is refused with a clear error, not a crash. */
static void test_ops_missing(void **state)
{
        struct fixture *f = *state;
        struct spdy_buf chan[5] = {0};

        assert_int_equal(ws_whole_session(f, ops_req(STREAM_ATTACH), chan, NULL), 1000);
        assert_non_null(strstr((char *)chan[3].data,
                               "error attaching to container: attach is not supported here"));
        chans_done(chan);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
                cmocka_unit_test_setup_teardown(test_too_many, setup, teardown),
                cmocka_unit_test_setup_teardown(test_negotiation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_portforward_ws, setup, teardown),
                cmocka_unit_test_setup_teardown(test_portforward_spdy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_with_session, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ops_exec, setup_ops, teardown),
                cmocka_unit_test_setup_teardown(test_ops_portforward, setup_ops, teardown),
                cmocka_unit_test_setup_teardown(test_ops_missing, setup_ops, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
