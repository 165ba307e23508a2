/*
 * The agent client over TLS against the real runt-agent (built next to this test): the
 * agent in host mode with --listen-tls on 127.0.0.1 and its credentials in its environment
 * as runtd makes them (ag_tls_agent_env), runtd's side through ag_dial_tls and
 * ag_client_new_tls. Requests, a port-forward stream carrying megabytes both ways at once
 * (TLS records, partial writes, flow control), a second connection replacing the first,
 * refused dials that leave the channel alone, SHUTDOWN. No root needed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "error.h"
#include "proto.h"
#include "tls.h"

#define POD     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define BIG     (8u << 20)
#define WAIT_MS 10000

struct conn {
        struct ag_client *c;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int ready, closed, close_reason;
};

static struct {
        char dir[64];
        pid_t pid;
        uint16_t port;
        struct ag_tls_ca *ca, *other_ca;
        struct ag_tls_client *cl, *other_cl;
        struct conn *current; /* the connection the tests share */
} g;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(p);
}

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the agent ---- */

static int spawn_agent(void)
{
        struct sh_error err = {0};
        char **env = NULL, *envp[6], log[128], state[128], buf[4096];
        int64_t end;
        int fd;

        if (ag_tls_agent_env(g.ca, POD, "127.0.0.1:0", 0, &env, &err) < 0) {
                fprintf(stderr, "%s\n", err.msg);
                return -1;
        }
        for (int i = 0; i < 4; i++)
                envp[i] = env[i];
        envp[4] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
        envp[5] = NULL;
        snprintf(log, sizeof(log), "%s/agent.log", g.dir);
        snprintf(state, sizeof(state), "%s/state", g.dir);
        fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        g.pid = fork();
        if (g.pid == 0) {
                char *argv[] = {"runt-agent",  "--listen-tls", "127.0.0.1:0",
                                "--state-dir", state,          NULL};

                dup2(fd, 1);
                dup2(fd, 2);
                execve(RUNT_AGENT_BIN, argv, envp);
                _exit(127);
        }
        close(fd);
        ag_tls_env_free(env);
        /* It says where it listens (port 0: the kernel's pick). */
        for (end = now_ms() + WAIT_MS; now_ms() < end; usleep(20000)) {
                FILE *f = fopen(log, "re");
                size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
                char *p;

                if (f)
                        fclose(f);
                buf[n] = '\0';
                p = strstr(buf, "listening on 127.0.0.1:");
                if (p) {
                        g.port = (uint16_t)atoi(p + strlen("listening on 127.0.0.1:"));
                        return 0;
                }
        }
        fprintf(stderr, "runt-agent did not listen: %s\n", buf);
        return -1;
}

static int group_setup(void **state)
{
        struct sh_error err = {0};
        char d[96];

        (void)state;
        if (access(RUNT_AGENT_BIN, X_OK) < 0) {
                fprintf(stderr, "%s not built\n", RUNT_AGENT_BIN);
                exit(77); /* lint: allow (skip) */
        }
        snprintf(g.dir, sizeof(g.dir), "/tmp/runt-tls-agent.XXXXXX");
        if (!mkdtemp(g.dir))
                return -1;
        snprintf(d, sizeof(d), "%s/ca", g.dir);
        if (ag_tls_ca_open(d, &g.ca, &err) < 0)
                return -1;
        snprintf(d, sizeof(d), "%s/other-ca", g.dir);
        if (ag_tls_ca_open(d, &g.other_ca, &err) < 0 || ag_tls_client_new(g.ca, &g.cl, &err) < 0 ||
            ag_tls_client_new(g.other_ca, &g.other_cl, &err) < 0)
                return -1;
        return spawn_agent();
}

static void conn_free(struct conn *k)
{
        if (!k)
                return;
        ag_client_free(k->c);
        pthread_cond_destroy(&k->cond);
        pthread_mutex_destroy(&k->lock);
        free(k);
}

static int group_teardown(void **state)
{
        (void)state;
        conn_free(g.current);
        if (g.pid > 0) {
                kill(g.pid, SIGKILL);
                waitpid(g.pid, NULL, 0);
        }
        ag_tls_client_free(g.cl);
        ag_tls_client_free(g.other_cl);
        ag_tls_ca_free(g.ca);
        ag_tls_ca_free(g.other_ca);
        nftw(g.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}

/* ---- connections ---- */

static void on_event(void *data, enum ag_event ev, const uint8_t *p, size_t n)
{
        struct conn *k = data;

        (void)p;
        (void)n;
        if (ev != AG_EV_READY)
                return;
        pthread_mutex_lock(&k->lock);
        k->ready++;
        pthread_cond_broadcast(&k->cond);
        pthread_mutex_unlock(&k->lock);
}

static void on_closed(void *data, int reason)
{
        struct conn *k = data;

        pthread_mutex_lock(&k->lock);
        k->closed = 1;
        k->close_reason = reason;
        pthread_cond_broadcast(&k->cond);
        pthread_mutex_unlock(&k->lock);
}

static const struct ag_client_ops ops = {.on_event = on_event, .on_closed = on_closed};

/* Waits until *@v is set: true, or false after WAIT_MS. */
static bool wait_for(struct conn *k, int *v)
{
        struct timespec ts;
        bool ok;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += WAIT_MS / 1000;
        pthread_mutex_lock(&k->lock);
        while (!*v && pthread_cond_timedwait(&k->cond, &k->lock, &ts) == 0)
                ;
        ok = *v != 0;
        pthread_mutex_unlock(&k->lock);
        return ok;
}

/* Dials the agent as runtd and waits for READY. */
static struct conn *connect_agent(void)
{
        struct sh_error err = {0};
        struct ag_tls_conn *t = NULL;
        struct conn *k = calloc(1, sizeof(*k));

        assert_non_null(k);
        pthread_mutex_init(&k->lock, NULL);
        pthread_cond_init(&k->cond, NULL);
        if (ag_dial_tls(g.cl, "127.0.0.1", g.port, POD, 5000, &t, &err) < 0)
                fail_msg("dial: %s", err.msg);
        if (ag_client_new_tls(t, &ops, k, &k->c, &err) < 0)
                fail_msg("client: %s", err.msg);
        assert_true(wait_for(k, &k->ready));
        return k;
}

static void ping(struct conn *k)
{
        struct sh_error err = {0};
        uint8_t *p = NULL;
        size_t n = 0;
        int64_t up = 0;

        if (ag_client_call(k->c, AG_OP_PING, NULL, 5000, &p, &n, &err) < 0)
                fail_msg("PING: %s", err.msg);
        assert_int_equal(ag_find_i64(p, n, AG_A_UPTIME_NS, &up), 0);
        assert_true(up > 0);
        free(p);
}

static void test_calls(void **state)
{
        struct sh_error err = {0};
        struct ag_buf b;
        uint8_t *p = NULL;
        size_t n = 0;
        int64_t v = 0;
        char *id = NULL;

        (void)state;
        g.current = connect_agent();
        ag_buf_init(&b);
        ag_put_u64(&b, AG_A_TIME_NS, 1);
        assert_int_equal(ag_client_call(g.current->c, AG_OP_HELLO, &b, 5000, &p, &n, &err), 0);
        ag_buf_done(&b);
        assert_int_equal(ag_find_i64(p, n, AG_A_VERSION, &v), 0);
        assert_int_equal(v, AG_VERSION);
        assert_int_equal(ag_find_str(p, n, AG_A_BOOT_ID, &id), 0);
        assert_int_equal(strlen(id), 32);
        free(id);
        free(p);
        ping(g.current);
        /* an error crosses TLS like an answer */
        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, "nope");
        assert_int_equal(ag_client_call(g.current->c, AG_OP_CTR_STATUS, &b, 5000, NULL, NULL, &err),
                         -ENOENT);
        ag_buf_done(&b);
}

/* ---- a port-forward stream, both ways at once ---- */

static void *echo_server(void *arg)
{
        int l = *(int *)arg, fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        char buf[65536];
        ssize_t n;

        while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
                for (ssize_t off = 0; off < n;) {
                        ssize_t w = write(fd, buf + off, (size_t)(n - off));

                        if (w <= 0)
                                goto out;
                        off += w;
                }
out:
        if (fd >= 0)
                close(fd);
        return NULL;
}

struct writer {
        int fd;
        const uint8_t *data;
        size_t len;
};

static void *write_all(void *arg)
{
        struct writer *w = arg;

        for (size_t off = 0; off < w->len;) {
                size_t chunk = w->len - off < 100000 ? w->len - off : 100000;
                ssize_t n = write(w->fd, w->data + off, chunk);

                if (n <= 0)
                        break;
                off += (size_t)n;
        }
        shutdown(w->fd, SHUT_WR);
        return NULL;
}

static void test_port_forward_big(void **state)
{
        struct sh_error err = {0};
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t sl = sizeof(sa);
        pthread_t echo, wr;
        uint8_t *data = malloc(BIG), *back = malloc(BIG);
        struct writer w;
        size_t got = 0;
        uint32_t x = 12345;
        int l, fd = -1;

        (void)state;
        assert_non_null(g.current);
        for (size_t i = 0; i < BIG; i++)
                data[i] = (uint8_t)((x = x * 1103515245 + 12345) >> 16);
        l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(l, 1), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
        pthread_create(&echo, NULL, echo_server, &l);
        if (ag_client_dial(g.current->c, ntohs(sa.sin_port), &fd, &err) < 0)
                fail_msg("dial: %s", err.msg);
        w = (struct writer){fd, data, BIG};
        pthread_create(&wr, NULL, write_all, &w);
        while (got < BIG) {
                ssize_t n = read(fd, back + got, BIG - got);

                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        pthread_join(wr, NULL);
        assert_int_equal(got, BIG);
        assert_memory_equal(back, data, BIG);
        close(fd);
        pthread_join(echo, NULL);
        close(l);
        free(data);
        free(back);
        ping(g.current);
}

/* ---- who may connect ---- */

static void test_refused_dials_leave_the_channel(void **state)
{
        struct sh_error err = {0};
        struct ag_tls_conn *t = NULL;

        (void)state;
        /* the agent's certificate names another pod */
        assert_int_equal(ag_dial_tls(g.cl, "127.0.0.1", g.port, "another-pod", 5000, &t, &err),
                         -EACCES);
        assert_non_null(strstr(err.msg, "CN is '" POD "', not 'another-pod'"));
        /* runtd of another CA: it refuses the agent (and the agent would refuse it) */
        assert_int_equal(ag_dial_tls(g.other_cl, "127.0.0.1", g.port, POD, 5000, &t, &err),
                         -EACCES);
        /* none of that touched the connection */
        ping(g.current);
        assert_false(g.current->closed);
}

static void test_new_connection_replaces(void **state)
{
        struct conn *k2;

        (void)state;
        k2 = connect_agent();
        /* runtd restarted: the old connection ends, the new one is the channel */
        assert_true(wait_for(g.current, &g.current->closed));
        assert_false(ag_client_connected(g.current->c));
        ping(k2);
        conn_free(g.current);
        g.current = k2;
}

static void test_shutdown(void **state)
{
        struct sh_error err = {0};
        int64_t end = now_ms() + WAIT_MS;
        int st = 0;
        pid_t r;

        (void)state;
        assert_int_equal(ag_client_call(g.current->c, AG_OP_SHUTDOWN, NULL, 5000, NULL, NULL, &err),
                         0);
        while ((r = waitpid(g.pid, &st, WNOHANG)) == 0 && now_ms() < end)
                usleep(20000);
        assert_int_equal(r, g.pid);
        g.pid = 0;
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        assert_true(wait_for(g.current, &g.current->closed));
}

int main(void)
{
        const struct CMUnitTest t[] = {
                cmocka_unit_test(test_calls),
                cmocka_unit_test(test_port_forward_big),
                cmocka_unit_test(test_refused_dials_leave_the_channel),
                cmocka_unit_test(test_new_connection_replaces),
                cmocka_unit_test(test_shutdown),
        };

        signal(SIGPIPE, SIG_IGN); /* as runtd */
        return cmocka_run_group_tests(t, group_setup, group_teardown);
}
