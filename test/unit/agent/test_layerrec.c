/*
 * Unit tests of the layer records (backends/agent/layerrec.c, proto.h IMAGE LAYERS): the
 * encoder and the agent's checked decoder and stream reader, fed whole and in every split,
 * and what each refuses.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"

/* What the reader's callbacks saw, as text: one line per event. */
struct seen {
        char log[8192];
        size_t len;
        int fail_at; /* begin of the entry with this index fails (-1: none) */
        int n_begin;
        uint64_t data_left;
};

static void logf_(struct seen *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct seen *s, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        s->len += (size_t)vsnprintf(s->log + s->len, sizeof(s->log) - s->len, fmt, ap);
        va_end(ap);
        assert_true(s->len < sizeof(s->log));
}

static int cb_begin(void *ud, const struct ag_lent *e, char *msg, size_t msize)
{
        struct seen *s = ud;

        if (s->n_begin++ == s->fail_at) {
                snprintf(msg, msize, "no room for '%s'", e->path);
                return -ENOSPC;
        }
        logf_(s, "B %s t%d m%o %u:%u t%lld d%u:%u l%s x%zu s%llu\n", e->path, e->type, e->mode,
              e->uid, e->gid, (long long)e->mtime_ns, e->rdev_major, e->rdev_minor,
              e->link ? e->link : "-", e->n_xattrs, (unsigned long long)e->size);
        for (size_t i = 0; i < e->n_xattrs; i++)
                logf_(s, "X %s=%.*s\n", e->xattrs[i].name, (int)e->xattrs[i].len,
                      (const char *)e->xattrs[i].value);
        s->data_left = e->size;
        return 0;
}

static int cb_data(void *ud, const struct ag_lent *e, const uint8_t *p, size_t n, char *msg,
                   size_t msize)
{
        struct seen *s = ud;

        (void)e, (void)msg, (void)msize;
        assert_true(n > 0 && n <= s->data_left);
        s->data_left -= n;
        logf_(s, "%.*s", (int)n, (const char *)p);
        return 0;
}

static int cb_end(void *ud, const struct ag_lent *e, char *msg, size_t msize)
{
        struct seen *s = ud;

        (void)msg, (void)msize;
        assert_int_equal(s->data_left, 0);
        logf_(s, "%sE %s\n", e->size ? "\n" : "", e->path);
        return 0;
}

static const struct ag_lreader_ops ops = {.begin = cb_begin, .data = cb_data, .end = cb_end};

static void put_file(struct ag_buf *b, const char *path, const char *content, uint32_t mode)
{
        struct ag_lent e = {.path = (char *)path,
                            .type = AG_LT_REG,
                            .mode = mode,
                            .uid = 1000,
                            .gid = 1001,
                            .mtime_ns = 1700000000123456789LL,
                            .size = strlen(content)};

        ag_lent_put(b, &e);
        ag_put_raw(b, content, strlen(content));
}

/* A stream with every type, xattrs, content, the end mark. */
static void sample(struct ag_buf *b)
{
        uint8_t y = 'y';
        uint8_t cap[4] = {1, 0, 0, 2};
        struct ag_xattr opq = {.name = (char *)"trusted.overlay.opaque", .value = &y, .len = 1};
        struct ag_xattr caps = {.name = (char *)"security.capability", .value = cap, .len = 4};
        struct ag_lent root = {.path = (char *)"", .type = AG_LT_DIR, .mode = 0755, .mtime_ns = -5};
        struct ag_lent dir = {.path = (char *)"etc",
                              .type = AG_LT_DIR,
                              .mode = 01777,
                              .mtime_ns = 42,
                              .xattrs = &opq,
                              .n_xattrs = 1};
        struct ag_lent lnk = {.path = (char *)"etc/escape",
                              .type = AG_LT_SYMLINK,
                              .uid = 7,
                              .link = (char *)"../../../../.."};
        struct ag_lent hard = {
                .path = (char *)"etc/hard", .type = AG_LT_HARDLINK, .link = (char *)"etc/ping"};
        struct ag_lent wh = {.path = (char *)"etc/gone", .type = AG_LT_CHAR};
        struct ag_lent blk = {
                .path = (char *)"blk", .type = AG_LT_BLOCK, .rdev_major = 8, .rdev_minor = 1};
        struct ag_lent fifo = {.path = (char *)"fifo", .type = AG_LT_FIFO, .mode = 0600};
        struct ag_lent sock = {.path = (char *)"sock", .type = AG_LT_SOCKET, .mode = 0600};

        ag_lent_put(b, &root);
        ag_lent_put(b, &dir);
        put_file(b, "etc/empty", "", 0644);
        {
                struct ag_lent ping = {.path = (char *)"etc/ping",
                                       .type = AG_LT_REG,
                                       .mode = 04755,
                                       .size = 11,
                                       .xattrs = &caps,
                                       .n_xattrs = 1};

                ag_lent_put(b, &ping);
                ag_put_raw(b, "hello world", 11);
        }
        ag_lent_put(b, &lnk);
        ag_lent_put(b, &hard);
        ag_lent_put(b, &wh);
        ag_lent_put(b, &blk);
        ag_lent_put(b, &fifo);
        ag_lent_put(b, &sock);
        put_file(b, "big", "0123456789abcdefghij", 0600);
        ag_lent_put_end(b);
        assert_int_equal(b->err, 0);
}

static const char sample_log[] =
        "B  t2 m755 0:0 t-5 d0:0 l- x0 s0\nE \n"
        "B etc t2 m1777 0:0 t42 d0:0 l- x1 s0\nX trusted.overlay.opaque=y\nE etc\n"
        "B etc/empty t1 m644 1000:1001 t1700000000123456789 d0:0 l- x0 s0\nE etc/empty\n"
        "B etc/ping t1 m4755 0:0 t0 d0:0 l- x1 s11\nX security.capability=\x01\n"
        "hello world\nE etc/ping\n"
        "B etc/escape t3 m0 7:0 t0 d0:0 l../../../../.. x0 s0\nE etc/escape\n"
        "B etc/hard t4 m0 0:0 t0 d0:0 letc/ping x0 s0\nE etc/hard\n"
        "B etc/gone t5 m0 0:0 t0 d0:0 l- x0 s0\nE etc/gone\n"
        "B blk t6 m0 0:0 t0 d8:1 l- x0 s0\nE blk\n"
        "B fifo t7 m600 0:0 t0 d0:0 l- x0 s0\nE fifo\n"
        "B sock t8 m600 0:0 t0 d0:0 l- x0 s0\nE sock\n"
        "B big t1 m600 1000:1001 t1700000000123456789 d0:0 l- x0 s20\n"
        "0123456789abcdefghij\nE big\n";

static void test_roundtrip_every_split(void **state)
{
        struct ag_buf b;

        (void)state;
        ag_buf_init(&b);
        sample(&b);
        /* chunk 0: all at once; then every size from one byte up. */
        for (size_t chunk = 0; chunk <= b.len; chunk += chunk < 64 ? 1 : 97) {
                struct seen s = {.fail_at = -1};
                struct ag_lreader r;
                char msg[256];
                size_t step = chunk ? chunk : b.len;

                ag_lreader_init(&r, 0);
                for (size_t off = 0; off < b.len; off += step) {
                        size_t n = b.len - off < step ? b.len - off : step;

                        assert_int_equal(
                                ag_lreader_feed(&r, b.data + off, n, &ops, &s, msg, sizeof(msg)),
                                0);
                }
                assert_int_equal(ag_lreader_finish(&r, msg, sizeof(msg)), 0);
                /* The security.capability value has a NUL: the log shows it up to there. */
                assert_memory_equal(s.log, sample_log, strlen(sample_log));
                assert_int_equal(r.entries, 11);
                assert_int_equal(r.total, b.len);
                ag_lreader_done(&r);
        }
        ag_buf_done(&b);
}

static void test_path_check(void **state)
{
        static const struct {
                const char *path;
                bool root_ok;
                int r;
        } t[] = {
                {"a", false, 0},
                {"a/b/c", false, 0},
                {"...", false, 0},
                {".wh..wh..opq", false, 0},
                {"a b/\n", false, 0},
                {"", true, 0},
                {"", false, -EINVAL},
                {"/etc", false, -EINVAL},
                {"a/", false, -EINVAL},
                {"a//b", false, -EINVAL},
                {".", false, -EINVAL},
                {"..", false, -EINVAL},
                {"a/../b", false, -EINVAL},
                {"a/./b", false, -EINVAL},
                {"../etc/passwd", false, -EINVAL},
                {"a/..", false, -EINVAL},
        };
        char name[300], *deep;
        size_t n = 0;

        (void)state;
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                print_message("path '%s'\n", t[i].path);
                assert_int_equal(ag_layer_path_check(t[i].path, t[i].root_ok), t[i].r);
        }
        memset(name, 'n', 255);
        name[255] = 0;
        assert_int_equal(ag_layer_path_check(name, false), 0);
        name[255] = 'n';
        name[256] = 0;
        assert_int_equal(ag_layer_path_check(name, false), -ENAMETOOLONG);
        /* Deeper than PATH_MAX is fine, up to AG_LAYER_PATH_MAX. */
        deep = malloc(AG_LAYER_PATH_MAX + 3);
        assert_non_null(deep);
        while (n + 2 <= AG_LAYER_PATH_MAX) {
                deep[n++] = 'a';
                deep[n++] = '/';
        }
        deep[n++] = 'z';
        deep[n] = 0;
        assert_int_equal(ag_layer_path_check(deep, false), 0);
        deep[n++] = 'z';
        deep[n] = 0;
        assert_int_equal(ag_layer_path_check(deep, false), -ENAMETOOLONG);
        free(deep);
}

/* Decodes the record in @b (its header, past the length). */
static int decode(const struct ag_buf *b, char *msg, size_t msize)
{
        struct ag_lent e;
        int r;

        assert_true(b->len >= 4);
        r = ag_lent_decode(b->data + 4, b->len - 4, &e, msg, msize);
        if (r == 0)
                ag_lent_done(&e);
        return r;
}

static int decode_one(const struct ag_lent *e, char *msg, size_t msize)
{
        struct ag_buf b;
        int r;

        ag_buf_init(&b);
        ag_lent_put(&b, e);
        assert_int_equal(b.err, 0);
        r = decode(&b, msg, msize);
        ag_buf_done(&b);
        return r;
}

static void test_decode_refusals(void **state)
{
        char msg[256], longlink[5000];
        uint8_t big[AG_LAYER_XVALUE_MAX + 1] = {0};
        struct ag_xattr xa[AG_LAYER_XATTR_MAX + 1];
        struct ag_xattr noname = {.name = (char *)"", .value = big, .len = 1};
        struct ag_xattr toobig = {.name = (char *)"user.x", .value = big, .len = sizeof(big)};
        static const struct {
                struct ag_lent e;
                int r;
                const char *needle;
        } t[] = {
                {{.path = (char *)"x", .type = AG_LT_REG}, 0, NULL},
                {{.path = (char *)"", .type = AG_LT_REG}, -EINVAL, "''"},
                {{.path = (char *)"../x", .type = AG_LT_REG}, -EINVAL, "'../x'"},
                {{.path = (char *)"/x", .type = AG_LT_DIR}, -EINVAL, "relative"},
                {{.path = (char *)"x", .type = AG_LT_SYMLINK}, -EPROTO, "target"},
                {{.path = (char *)"x", .type = AG_LT_HARDLINK}, -EPROTO, "without a target"},
                {{.path = (char *)"x", .type = AG_LT_HARDLINK, .link = (char *)"/etc/shadow"},
                 -EINVAL,
                 "hard link target '/etc/shadow'"},
                {{.path = (char *)"x", .type = AG_LT_HARDLINK, .link = (char *)"a/../../b"},
                 -EINVAL,
                 "hard link target"},
                {{.path = (char *)"x", .type = AG_LT_DIR, .link = (char *)"y"}, -EPROTO, "link"},
                {{.path = (char *)"x", .type = AG_LT_SYMLINK, .link = (char *)"/"}, 0, NULL},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                int r = decode_one(&t[i].e, msg, sizeof(msg));

                print_message("case %zu: %d %s\n", i, r, msg);
                assert_int_equal(r, t[i].r);
                if (t[i].needle)
                        assert_non_null(strstr(msg, t[i].needle));
        }
        memset(longlink, 'l', sizeof(longlink) - 1);
        longlink[sizeof(longlink) - 1] = 0;
        assert_int_equal(decode_one(&(struct ag_lent){.path = (char *)"x",
                                                      .type = AG_LT_SYMLINK,
                                                      .link = longlink},
                                    msg, sizeof(msg)),
                         -EPROTO);
        assert_int_equal(decode_one(&(struct ag_lent){.path = (char *)"x",
                                                      .type = AG_LT_REG,
                                                      .xattrs = &noname,
                                                      .n_xattrs = 1},
                                    msg, sizeof(msg)),
                         -EPROTO);
        assert_non_null(strstr(msg, "xattr"));
        assert_int_equal(decode_one(&(struct ag_lent){.path = (char *)"x",
                                                      .type = AG_LT_REG,
                                                      .xattrs = &toobig,
                                                      .n_xattrs = 1},
                                    msg, sizeof(msg)),
                         -EPROTO);
        for (size_t i = 0; i < AG_LAYER_XATTR_MAX + 1; i++)
                xa[i] = (struct ag_xattr){.name = (char *)"user.a", .value = big, .len = 1};
        assert_int_equal(decode_one(&(struct ag_lent){.path = (char *)"x",
                                                      .type = AG_LT_REG,
                                                      .xattrs = xa,
                                                      .n_xattrs = AG_LAYER_XATTR_MAX + 1},
                                    msg, sizeof(msg)),
                         -EPROTO);
        assert_non_null(strstr(msg, "xattrs"));
        assert_int_equal(decode_one(&(struct ag_lent){.path = (char *)"x",
                                                      .type = AG_LT_REG,
                                                      .xattrs = xa,
                                                      .n_xattrs = AG_LAYER_XATTR_MAX},
                                    msg, sizeof(msg)),
                         0);
}

/* Headers built by hand: what ag_lent_put never writes. */
static void test_decode_raw(void **state)
{
        char msg[256];
        struct ag_buf b;

        (void)state;
        ag_buf_init(&b);
        /* No type */
        ag_put_raw(&b, "\0\0\0\0", 4);
        ag_put_str(&b, AG_A_L_PATH, "x");
        assert_int_equal(decode(&b, msg, sizeof(msg)), -EPROTO);
        assert_non_null(strstr(msg, "type"));
        /* No path */
        ag_buf_reset(&b);
        ag_put_raw(&b, "\0\0\0\0", 4);
        ag_put_u64(&b, AG_A_L_TYPE, AG_LT_DIR);
        assert_int_equal(decode(&b, msg, sizeof(msg)), -EPROTO);
        assert_non_null(strstr(msg, "path"));
        /* A NUL in the path: "a\0/../../x" */
        ag_buf_reset(&b);
        ag_put_raw(&b, "\0\0\0\0", 4);
        ag_put_bytes(&b, AG_A_L_PATH, "a\0/../../x", 10);
        ag_put_u64(&b, AG_A_L_TYPE, AG_LT_REG);
        assert_int_equal(decode(&b, msg, sizeof(msg)), -EPROTO);
        /* Type, mode, owner out of range; a size that is not 8 bytes; content on a
         * directory, a device number on a file */
        for (int i = 0; i < 7; i++) {
                ag_buf_reset(&b);
                ag_put_raw(&b, "\0\0\0\0", 4);
                ag_put_str(&b, AG_A_L_PATH, "x");
                ag_put_u64(&b, AG_A_L_TYPE, i == 0 ? 9 : i == 5 ? AG_LT_DIR : AG_LT_REG);
                if (i == 5)
                        ag_put_u64(&b, AG_A_L_SIZE, 3);
                if (i == 6)
                        ag_put_u64(&b, AG_A_L_RDEV, 3);
                if (i == 1)
                        ag_put_u64(&b, AG_A_L_MODE, 0100644);
                if (i == 2)
                        ag_put_u64(&b, AG_A_L_UID, -1);
                if (i == 3)
                        ag_put_u64(&b, AG_A_L_GID, (int64_t)UINT32_MAX + 5);
                if (i == 4)
                        ag_put_bytes(&b, AG_A_L_SIZE, "\1", 1);
                print_message("raw case %d\n", i);
                assert_int_equal(decode(&b, msg, sizeof(msg)), -EPROTO);
        }
        /* An attribute that overruns its block */
        ag_buf_reset(&b);
        ag_put_raw(&b, "\0\0\0\0", 4);
        ag_put_str(&b, AG_A_L_PATH, "x");
        b.len--;
        assert_int_equal(decode(&b, msg, sizeof(msg)), -EPROTO);
        /* Unknown tags are skipped; a repeated path: the last one */
        ag_buf_reset(&b);
        ag_put_raw(&b, "\0\0\0\0", 4);
        ag_put_str(&b, AG_A_L_PATH, "../bad");
        ag_put_str(&b, 999, "future");
        ag_put_str(&b, AG_A_L_PATH, "good");
        ag_put_u64(&b, AG_A_L_TYPE, AG_LT_FIFO);
        assert_int_equal(decode(&b, msg, sizeof(msg)), 0);
        ag_buf_done(&b);
}

static int feed_all(struct ag_lreader *r, const struct ag_buf *b, struct seen *s, char *msg,
                    size_t msize)
{
        return ag_lreader_feed(r, b->data, b->len, &ops, s, msg, msize);
}

static void test_reader_refusals(void **state)
{
        struct seen s = {.fail_at = -1};
        struct ag_lreader r;
        struct ag_buf b;
        char msg[256];

        (void)state;
        ag_buf_init(&b);

        /* A header over the maximum: refused from its length alone. */
        ag_put_raw(&b, "\0\x04\0\x01", 4);
        ag_lreader_init(&r, 0);
        assert_int_equal(feed_all(&r, &b, &s, msg, sizeof(msg)), -EPROTO);
        assert_non_null(strstr(msg, "header"));
        /* Sticky: nothing more is taken. */
        assert_int_equal(feed_all(&r, &b, &s, msg, sizeof(msg)), -EPROTO);
        assert_int_equal(ag_lreader_finish(&r, msg, sizeof(msg)), -EPROTO);
        ag_lreader_done(&r);

        /* Bytes after the end mark. */
        ag_buf_reset(&b);
        ag_lent_put_end(&b);
        ag_put_raw(&b, "x", 1);
        ag_lreader_init(&r, 0);
        assert_int_equal(feed_all(&r, &b, &s, msg, sizeof(msg)), -EPROTO);
        assert_non_null(strstr(msg, "after the end"));
        ag_lreader_done(&r);

        /* A size over the limit: refused at the header, before any content came. */
        ag_buf_reset(&b);
        {
                struct ag_lent e = {.path = (char *)"huge", .type = AG_LT_REG, .size = 1000};

                ag_lent_put(&b, &e);
        }
        ag_lreader_init(&r, 500);
        memset(&s, 0, sizeof(s));
        s.fail_at = -1;
        assert_int_equal(feed_all(&r, &b, &s, msg, sizeof(msg)), -EFBIG);
        assert_non_null(strstr(msg, "'huge'"));
        assert_int_equal(s.n_begin, 0);
        ag_lreader_done(&r);

        /* Bytes over the limit, whatever the headers claim. */
        ag_buf_reset(&b);
        for (int i = 0; i < 20; i++)
                put_file(&b, "f", "0123456789012345678901234567890123456789", 0644);
        ag_lreader_init(&r, 500);
        memset(&s, 0, sizeof(s));
        s.fail_at = -1;
        assert_int_equal(feed_all(&r, &b, &s, msg, sizeof(msg)), -EFBIG);
        assert_non_null(strstr(msg, "limit"));
        ag_lreader_done(&r);

        /* Truncated: in a header, in content, or without the end mark. */
        ag_buf_reset(&b);
        put_file(&b, "t", "0123456789", 0644);
        for (size_t cut = 1; cut <= b.len; cut++) {
                ag_lreader_init(&r, 0);
                memset(&s, 0, sizeof(s));
                s.fail_at = -1;
                assert_int_equal(ag_lreader_feed(&r, b.data, cut, &ops, &s, msg, sizeof(msg)), 0);
                assert_int_equal(ag_lreader_finish(&r, msg, sizeof(msg)), -EPROTO);
                assert_non_null(strstr(msg, "truncated"));
                ag_lreader_done(&r);
        }

        /* A callback's error stops the stream with its message. */
        ag_buf_reset(&b);
        sample(&b);
        ag_lreader_init(&r, 0);
        memset(&s, 0, sizeof(s));
        s.fail_at = 3;
        assert_int_equal(feed_all(&r, &b, &s, msg, sizeof(msg)), -ENOSPC);
        assert_string_equal(msg, "no room for 'etc/ping'");
        ag_lreader_done(&r);

        /* A malformed header stops it too, naming the entry. */
        ag_buf_reset(&b);
        {
                struct ag_lent e = {.path = (char *)"ok", .type = AG_LT_DIR};
                struct ag_lent bad = {.path = (char *)"ok/../..", .type = AG_LT_REG};

                ag_lent_put(&b, &e);
                ag_lent_put(&b, &bad);
        }
        ag_lreader_init(&r, 0);
        memset(&s, 0, sizeof(s));
        s.fail_at = -1;
        assert_int_equal(feed_all(&r, &b, &s, msg, sizeof(msg)), -EINVAL);
        assert_non_null(strstr(msg, "'ok/../..'"));
        assert_int_equal(s.n_begin, 1);
        ag_lreader_done(&r);
        ag_buf_done(&b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip_every_split), cmocka_unit_test(test_path_check),
                cmocka_unit_test(test_decode_refusals),       cmocka_unit_test(test_decode_raw),
                cmocka_unit_test(test_reader_refusals),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
