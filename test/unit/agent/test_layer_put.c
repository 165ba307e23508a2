/*
 * Unit tests of runtd's LAYER_PUT (backends/agent/layer-put.c) over the real client, against
 * a fake agent: a thread on the other end of a socketpair that reads the records with the
 * agent's own reader (layerrec.c), grants credit as it takes them and checks none is
 * exceeded, and answers as the agent does (a verdict on the stream).
 */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "error.h"
#include "layer-put.h"
#include "proto.h"

struct fake {
        int fd;
        pthread_t thread;
        bool has_present;    /* LAYER_HAS says it is there */
        bool put_present;    /* LAYER_PUT says it is there (it came meanwhile) */
        int fail_at;         /* the entry whose begin fails with EPERM (-1: none) */
        bool drop_at_fail;   /* ... by closing the connection instead */
        bool no_credit;      /* a hung agent: takes the records but grants no credit */
        bool no_verdict;     /* ... takes them all but never says how it went */
        int puts_unanswered; /* LAYER_PUTs left without an answer (another PUT "runs") */
        bool no_ping;        /* ... and PINGs too */
        int pings;
        /* what it saw */
        int has, puts, abandoned, violations;
        uint32_t sid;
        uint64_t credit; /* what the host may still send */
        struct ag_lreader rd;
        bool reading;
        char log[16384];
        size_t len;
        uint64_t content;
        int n_begin;
};

static void fsend(struct fake *f, uint8_t kind, uint16_t op, uint32_t stream, uint32_t id,
                  const struct ag_buf *attrs)
{
        struct ag_buf b;

        ag_buf_init(&b);
        ag_frame_begin(&b, kind, op, stream, id);
        if (attrs)
                ag_put_raw(&b, attrs->data, attrs->len);
        assert_int_equal(ag_frame_end(&b), 0);
        (void)!write(f->fd, b.data, b.len);
        ag_buf_done(&b);
}

static void fend(struct fake *f, int code, const char *msg)
{
        struct ag_buf b;

        ag_buf_init(&b);
        if (code) {
                ag_put_raw(&b, msg, strlen(msg));
                fsend(f, AG_K_DATA, AG_CHAN_STDERR, f->sid, 0, &b);
                ag_buf_reset(&b);
        }
        ag_put_u64(&b, AG_A_EXIT_CODE, code);
        fsend(f, AG_K_EVENT, AG_EV_STREAM_EXIT, f->sid, 0, &b);
        fsend(f, AG_K_CLOSE, AG_CHAN_ALL, f->sid, 0, NULL);
        ag_buf_done(&b);
        f->reading = false;
}

static void logf_(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct fake *f, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        f->len += (size_t)vsnprintf(f->log + f->len, sizeof(f->log) - f->len, fmt, ap);
        va_end(ap);
}

static int cb_begin(void *ud, const struct ag_lent *e, char *msg, size_t msize)
{
        struct fake *f = ud;

        if (f->n_begin++ == f->fail_at) {
                snprintf(msg, msize, "entry '%s': refused\nwith a newline", e->path);
                return -EPERM;
        }
        logf_(f, "%s t%d m%o s%llu l%s x%zu\n", e->path[0] ? e->path : ".", e->type, e->mode,
              (unsigned long long)e->size, e->link ? e->link : "-", e->n_xattrs);
        for (size_t i = 0; i < e->n_xattrs; i++)
                logf_(f, "  %s=%.*s\n", e->xattrs[i].name, (int)e->xattrs[i].len,
                      (const char *)e->xattrs[i].value);
        return 0;
}

static int cb_data(void *ud, const struct ag_lent *e, const uint8_t *p, size_t n, char *msg,
                   size_t msize)
{
        struct fake *f = ud;

        (void)e, (void)p, (void)msg, (void)msize;
        f->content += n;
        return 0;
}

static const struct ag_lreader_ops ops = {.begin = cb_begin, .data = cb_data};

static void on_req(struct fake *f, const struct ag_hdr *h, const uint8_t *p)
{
        char *id = NULL, dir[128];
        struct ag_buf b;
        bool present;

        if (h->op == AG_OP_PING) {
                f->pings++;
                if (!f->no_ping)
                        fsend(f, AG_K_RESP, h->op, h->stream, h->id, NULL);
                return;
        }
        if (h->op == AG_OP_LAYER_PUT && f->puts_unanswered > 0) {
                f->puts_unanswered--;
                f->puts++;
                return;
        }
        assert_int_equal(ag_find_str(p, h->len, AG_A_ID, &id), 0);
        assert_int_equal(strlen(id), 64);
        snprintf(dir, sizeof(dir), "/agent/layers/%.12s", id);
        free(id);
        present = h->op == AG_OP_LAYER_HAS ? f->has_present : f->put_present;
        /* Counted before the answer goes: the test reads the counts once its call returned. */
        if (h->op == AG_OP_LAYER_HAS)
                f->has++;
        else
                f->puts++;
        ag_buf_init(&b);
        ag_put_u64(&b, AG_A_PRESENT, present);
        ag_put_str(&b, AG_A_LAYER_DIR, dir);
        fsend(f, AG_K_RESP, h->op, h->stream, h->id, &b);
        ag_buf_done(&b);
        if (h->op == AG_OP_LAYER_HAS)
                return;
        assert_int_equal(h->op, AG_OP_LAYER_PUT);
        f->sid = h->stream;
        if (present) {
                fend(f, 0, "");
                return;
        }
        f->credit = AG_WINDOW_INIT;
        f->reading = true;
        f->n_begin = 0;
        ag_lreader_done(&f->rd);
        ag_lreader_init(&f->rd, 0);
}

static void *fake_main(void *arg)
{
        struct fake *f = arg;
        struct ag_reader rd;
        uint8_t buf[65536];
        ssize_t n;

        ag_reader_init(&rd);
        while ((n = read(f->fd, buf, sizeof(buf))) > 0) {
                struct ag_hdr h;
                const uint8_t *p;
                char msg[256];
                int r;

                assert_int_equal(ag_reader_feed(&rd, buf, (size_t)n), 0);
                while ((r = ag_reader_next(&rd, &h, &p)) == 1) {
                        if (h.kind == AG_K_REQ) {
                                on_req(f, &h, p);
                        } else if (h.kind == AG_K_DATA && f->reading && h.stream == f->sid) {
                                uint8_t w[4] = {(uint8_t)(h.len >> 24), (uint8_t)(h.len >> 16),
                                                (uint8_t)(h.len >> 8), (uint8_t)h.len};
                                struct ag_buf b;

                                if (h.len > f->credit)
                                        f->violations++;
                                f->credit -= h.len;
                                r = ag_lreader_feed(&f->rd, p, h.len, &ops, f, msg, sizeof(msg));
                                if (r < 0 && f->drop_at_fail) {
                                        shutdown(f->fd, SHUT_RDWR);
                                        goto out;
                                }
                                if (r < 0) {
                                        fend(f, -r, msg);
                                        continue;
                                }
                                if (f->no_credit)
                                        continue;
                                /* Granted slowly: a window at a time, so the host waits. */
                                f->credit += h.len;
                                ag_buf_init(&b);
                                ag_put_raw(&b, w, 4);
                                fsend(f, AG_K_WINDOW, AG_CHAN_STDIN, h.stream, 0, &b);
                                ag_buf_done(&b);
                        } else if (h.kind == AG_K_CLOSE && h.stream == f->sid) {
                                if (h.op == AG_CHAN_ALL) {
                                        f->abandoned++;
                                        f->reading = false;
                                } else if (f->reading) {
                                        r = ag_lreader_finish(&f->rd, msg, sizeof(msg));
                                        if (f->no_verdict) {
                                                r = 0;
                                                continue;
                                        }
                                        fend(f, -r, msg);
                                }
                        }
                }
                assert_int_equal(r, 0);
        }
out:
        ag_reader_done(&rd);
        return NULL;
}

static struct ag_client *start(struct fake *f)
{
        struct ag_client *c = NULL;
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        f->fd = sv[1];
        assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
        assert_int_equal(ag_client_new(sv[0], NULL, NULL, &c, NULL), 0);
        return c;
}

static void stop(struct fake *f, struct ag_client *c)
{
        ag_client_free(c);
        pthread_join(f->thread, NULL);
        close(f->fd);
        ag_lreader_done(&f->rd);
}

static void write_file(const char *path, size_t n, mode_t mode)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        char buf[4096];

        assert_true(fd >= 0);
        memset(buf, 'z', sizeof(buf));
        while (n) {
                size_t k = n < sizeof(buf) ? n : sizeof(buf);

                assert_int_equal(write(fd, buf, k), (ssize_t)k);
                n -= k;
        }
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static char *tree(void)
{
        char tmpl[] = "/tmp/runt-layer-put.XXXXXX", p[256];
        char *root = strdup(mkdtemp(tmpl));

        assert_non_null(root);
        snprintf(p, sizeof(p), "%s/etc", root);
        assert_int_equal(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/etc/big", root);
        write_file(p, (3u << 20) + 7, 04755); /* many windows' worth */
        snprintf(p, sizeof(p), "%s/etc/hard", root);
        {
                char big[256];

                snprintf(big, sizeof(big), "%s/etc/big", root);
                assert_int_equal(link(big, p), 0);
        }
        snprintf(p, sizeof(p), "%s/etc/lnk", root);
        assert_int_equal(symlink("../../../../etc/shadow", p), 0);
        snprintf(p, sizeof(p), "%s/fifo", root);
        assert_int_equal(mkfifo(p, 0600), 0);
        /* An xattr where the file system takes one (tmpfs before 6.6 has no user.*) */
        snprintf(p, sizeof(p), "%s/etc", root);
        (void)setxattr(p, "user.runt", "v", 1, 0);
        assert_int_equal(chmod(root, 0750), 0);
        return root;
}

static void rm_tree(char *root)
{
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        assert_int_equal(system(cmd), 0);
        free(root);
}

#define CHAIN "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_put_tree(void **state)
{
        struct fake f = {.fail_at = -1};
        struct ag_client *c = start(&f);
        char *root = tree();
        struct sh_error err = {0};
        const char *lines[] = {". t2 m750 ", "etc t2 m755 ", " t1 m4755 s3145735 l- x0",
                               "etc/lnk t3 m0 s0 l../../../../etc/shadow x0", "fifo t7 m600 s0"};
        char etc[300];

        (void)state;
        assert_int_equal(ag_layer_put(c, CHAIN, root, &err), 0);
        assert_int_equal(f.has, 1);
        assert_int_equal(f.puts, 1);
        assert_int_equal(f.violations, 0);
        assert_int_equal(f.content, (3u << 20) + 7); /* once: the other name is a hard link */
        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
                print_message("%s\n", lines[i]);
                assert_non_null(strstr(f.log, lines[i]));
        }
        /* Whichever name came first is the file, the other its hard link. */
        assert_true(strstr(f.log, "etc/hard t4 m0 s0 letc/big x0") ||
                    strstr(f.log, "etc/big t4 m0 s0 letc/hard x0"));
        snprintf(etc, sizeof(etc), "%s/etc", root);
        if (getxattr(etc, "user.runt", NULL, 0) == 1)
                assert_non_null(strstr(f.log, "etc t2 m755 s0 l- x1\n  user.runt=v\n"));
        stop(&f, c);
        rm_tree(root);
}

static void test_present_and_lowers(void **state)
{
        struct fake f = {.fail_at = -1, .has_present = true};
        struct ag_client *c = start(&f);
        const char *chains[] = {CHAIN, &CHAIN[7], NULL};
        const char *dirs[] = {"/nonexistent/a", "/nonexistent/b", NULL};
        struct sh_error err = {0};
        char **lowers = NULL;

        (void)state;
        /* There already: nothing walked (the dirs do not even exist). */
        assert_int_equal(ag_layers_put(c, chains, dirs, &lowers, &err), 0);
        assert_int_equal(f.has, 2);
        assert_int_equal(f.puts, 0);
        assert_string_equal(lowers[0], "/agent/layers/0123456789ab");
        assert_string_equal(lowers[1], "/agent/layers/0123456789ab");
        assert_null(lowers[2]);
        for (size_t i = 0; lowers[i]; i++)
                free(lowers[i]);
        free(lowers);

        /* It came meanwhile (another PUT ran first): the PUT's answer says so. */
        f.has_present = false;
        f.put_present = true;
        assert_int_equal(ag_layer_put(c, CHAIN, "/nonexistent/a", &err), 0);
        assert_int_equal(f.puts, 1);

        assert_int_equal(ag_layer_put(c, "sha256:abc", "/", &err), -EINVAL);
        assert_int_equal(ag_layers_put(c, chains, (const char *[]){"/x", NULL}, &lowers, &err),
                         -EINVAL);
        stop(&f, c);
}

static void test_refused(void **state)
{
        struct fake f = {.fail_at = 3};
        struct ag_client *c = start(&f);
        char *root = tree();
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(ag_layer_put(c, CHAIN, root, &err), -EPERM);
        print_message("%s\n", err.msg);
        assert_non_null(strstr(err.msg, "refused it: entry '"));
        assert_null(strchr(err.msg, '\n')); /* the agent's words, tamed */
        assert_int_equal(f.violations, 0);
        stop(&f, c);
        rm_tree(root);
}

static void test_connection_lost(void **state)
{
        struct fake f = {.fail_at = 2, .drop_at_fail = true};
        struct ag_client *c = start(&f);
        char *root = tree();
        struct sh_error err = {0};
        int r;

        (void)state;
        r = ag_layer_put(c, CHAIN, root, &err);
        print_message("%d %s\n", r, err.msg);
        assert_int_equal(r, -ECONNRESET);
        stop(&f, c);
        rm_tree(root);
}

static void test_walk_error_abandons(void **state)
{
        struct fake f = {.fail_at = -1};
        struct ag_client *c = start(&f);
        struct sh_error err = {0};
        int r;

        (void)state;
        /* Not a directory: the stream is opened, then abandoned, never ended as complete. */
        r = ag_layer_put(c, CHAIN, "/etc/hostname", &err);
        print_message("%d %s\n", r, err.msg);
        assert_int_equal(r, -ENOTDIR);
        /* The abandon reaches the fake before the client's end. */
        for (int i = 0; i < 200 && !f.abandoned; i++)
                usleep(5000);
        assert_int_equal(f.abandoned, 1);
        stop(&f, c);
}

/* Waits up to 2 s for the fake to hear the stream abandoned. */
static void await_abandoned(struct fake *f)
{
        for (int i = 0; i < 400 && !f->abandoned; i++)
                usleep(5000);
        assert_int_equal(f->abandoned, 1);
}

static void test_no_credit_times_out(void **state)
{
        struct fake f = {.fail_at = -1, .no_credit = true};
        struct ag_client *c = start(&f);
        char *root = tree();
        struct sh_error err = {0};
        int r;

        (void)state;
        ag_layer_put_set_stall_ms(300);
        r = ag_layer_put(c, CHAIN, root, &err);
        print_message("%d %s\n", r, err.msg);
        assert_int_equal(r, -ETIMEDOUT);
        assert_non_null(strstr(err.msg, "took no data for 300 ms"));
        await_abandoned(&f);
        assert_int_equal(f.violations, 0);
        ag_layer_put_set_stall_ms(0);
        stop(&f, c);
        rm_tree(root);
}

static void test_no_verdict_times_out(void **state)
{
        struct fake f = {.fail_at = -1, .no_verdict = true};
        struct ag_client *c = start(&f);
        char *root = tree();
        struct sh_error err = {0};
        int r;

        (void)state;
        ag_layer_put_set_stall_ms(300);
        r = ag_layer_put(c, CHAIN, root, &err);
        print_message("%d %s\n", r, err.msg);
        assert_int_equal(r, -ETIMEDOUT);
        assert_non_null(strstr(err.msg, "no verdict"));
        assert_int_equal(f.content, (3u << 20) + 7); /* it all went: only the verdict lacked */
        ag_layer_put_set_stall_ms(0);
        stop(&f, c);
        rm_tree(root);
}

static void test_put_behind_another(void **state)
{
        struct fake f = {.fail_at = -1, .puts_unanswered = 2, .put_present = true};
        struct ag_client *c = start(&f);
        struct sh_error err = {0};
        int r;

        (void)state;
        ag_layer_put_set_stall_ms(200);
        /* The agent answers PINGs while the other PUT runs: the wait goes on. */
        r = ag_layer_put(c, CHAIN, "/nonexistent/a", &err);
        print_message("%d %s\n", r, err.msg);
        assert_int_equal(r, 0);
        assert_int_equal(f.puts, 3);
        assert_int_equal(f.pings, 2);

        /* An agent that answers nothing any more: given up on. */
        f.puts_unanswered = 1000;
        f.no_ping = true;
        r = ag_layer_put(c, CHAIN, "/nonexistent/a", &err);
        print_message("%d %s\n", r, err.msg);
        assert_int_equal(r, -ETIMEDOUT);
        assert_non_null(strstr(err.msg, "neither the PUT nor a PING"));
        ag_layer_put_set_stall_ms(0);
        stop(&f, c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_put_tree),
                cmocka_unit_test(test_present_and_lowers),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_connection_lost),
                cmocka_unit_test(test_walk_error_abandons),
                cmocka_unit_test(test_no_credit_times_out),
                cmocka_unit_test(test_no_verdict_times_out),
                cmocka_unit_test(test_put_behind_another),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
