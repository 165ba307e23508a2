/* Unit tests of backends/agent/proto.c: frames, the reader, TLV, the shared records. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"

/* A frame of @kind with @payload, built through ag_buf; the caller frees b. */
static void build(struct ag_buf *b, enum ag_kind kind, uint16_t op, const void *payload, size_t n)
{
        ag_buf_init(b);
        ag_frame_begin(b, kind, op, 7, 9);
        ag_put_raw(b, payload, n);
        assert_int_equal(ag_frame_end(b), 0);
}

static void test_hdr_round_trip(void **state)
{
        struct ag_hdr h = {AG_VERSION, AG_K_RESP, 0xbeef, 0x01020304, 0xa0b0c0d0, 77}, g;
        uint8_t raw[AG_HDR_SIZE];

        (void)state;
        ag_hdr_encode(&h, raw);
        assert_int_equal(raw[2], 0xbe);
        assert_int_equal(raw[4], 0x01);
        assert_int_equal(raw[15], 77);
        assert_int_equal(ag_hdr_decode(raw, sizeof(raw), &g), 0);
        assert_memory_equal(&h, &g, sizeof(h));
        assert_int_equal(ag_hdr_decode(raw, AG_HDR_SIZE - 1, &g), -EAGAIN);
}

static void test_hdr_rejects(void **state)
{
        struct ag_hdr h = {AG_VERSION, AG_K_REQ, 1, 0, 1, 0}, g;
        uint8_t raw[AG_HDR_SIZE];

        (void)state;
        h.version = 2;
        ag_hdr_encode(&h, raw);
        assert_int_equal(ag_hdr_decode(raw, sizeof(raw), &g), -EPROTO);
        h.version = AG_VERSION;
        h.kind = 0;
        ag_hdr_encode(&h, raw);
        assert_int_equal(ag_hdr_decode(raw, sizeof(raw), &g), -EPROTO);
        h.kind = 7;
        ag_hdr_encode(&h, raw);
        assert_int_equal(ag_hdr_decode(raw, sizeof(raw), &g), -EPROTO);
        h.kind = AG_K_REQ;
        h.len = AG_MAX_PAYLOAD + 1;
        ag_hdr_encode(&h, raw);
        assert_int_equal(ag_hdr_decode(raw, sizeof(raw), &g), -EPROTO);
        h.len = AG_MAX_PAYLOAD;
        ag_hdr_encode(&h, raw);
        assert_int_equal(ag_hdr_decode(raw, sizeof(raw), &g), 0);
        h.kind = AG_K_DATA;
        h.len = AG_MAX_DATA + 1;
        ag_hdr_encode(&h, raw);
        assert_int_equal(ag_hdr_decode(raw, sizeof(raw), &g), -EPROTO);
        h.kind = AG_K_WINDOW;
        h.len = 5;
        ag_hdr_encode(&h, raw);
        assert_int_equal(ag_hdr_decode(raw, sizeof(raw), &g), -EPROTO);
        h.kind = AG_K_CLOSE;
        h.len = 1;
        ag_hdr_encode(&h, raw);
        assert_int_equal(ag_hdr_decode(raw, sizeof(raw), &g), -EPROTO);
}

/* Three frames, fed in chunks of @chunk bytes (0: byte by byte then all at once). */
static void reader_run(size_t chunk)
{
        struct ag_buf f1, f2, f3, all;
        struct ag_reader r;
        struct ag_hdr h;
        const uint8_t *p;
        size_t off = 0;
        int got = 0;
        uint8_t big[5000];

        memset(big, 'x', sizeof(big));
        build(&f1, AG_K_DATA, AG_CHAN_STDOUT, "hello", 5);
        build(&f2, AG_K_CLOSE, AG_CHAN_ALL, NULL, 0);
        build(&f3, AG_K_DATA, AG_CHAN_STDERR, big, sizeof(big));
        ag_buf_init(&all);
        ag_put_raw(&all, f1.data, f1.len);
        ag_put_raw(&all, f2.data, f2.len);
        ag_put_raw(&all, f3.data, f3.len);
        assert_int_equal(all.err, 0);

        ag_reader_init(&r);
        while (off < all.len) {
                size_t n = chunk ? chunk : 1;
                int rc;

                if (n > all.len - off)
                        n = all.len - off;
                assert_int_equal(ag_reader_feed(&r, all.data + off, n), 0);
                off += n;
                while ((rc = ag_reader_next(&r, &h, &p)) == 1) {
                        got++;
                        assert_int_equal(h.stream, 7);
                        assert_int_equal(h.id, 9);
                        if (got == 1) {
                                assert_int_equal(h.kind, AG_K_DATA);
                                assert_int_equal(h.len, 5);
                                assert_memory_equal(p, "hello", 5);
                        } else if (got == 2) {
                                assert_int_equal(h.kind, AG_K_CLOSE);
                                assert_int_equal(h.op, AG_CHAN_ALL);
                                assert_int_equal(h.len, 0);
                        } else {
                                assert_int_equal(h.op, AG_CHAN_STDERR);
                                assert_int_equal(h.len, sizeof(big));
                                assert_memory_equal(p, big, sizeof(big));
                        }
                }
                assert_int_equal(rc, 0);
        }
        assert_int_equal(got, 3);
        ag_reader_done(&r);
        ag_buf_done(&f1);
        ag_buf_done(&f2);
        ag_buf_done(&f3);
        ag_buf_done(&all);
}

static void test_reader_chunks(void **state)
{
        static const size_t chunks[] = {0, 2, 3, 7, 15, 16, 17, 4096, 100000};

        (void)state;
        for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
                reader_run(chunks[i]);
}

static void test_reader_bad_header(void **state)
{
        uint8_t raw[AG_HDR_SIZE] = {2, AG_K_REQ};
        struct ag_reader r;
        struct ag_hdr h;
        const uint8_t *p;

        (void)state;
        ag_reader_init(&r);
        assert_int_equal(ag_reader_next(&r, &h, &p), 0);
        assert_int_equal(ag_reader_feed(&r, raw, 8), 0);
        assert_int_equal(ag_reader_next(&r, &h, &p), 0);
        assert_int_equal(ag_reader_feed(&r, raw + 8, 8), 0);
        assert_int_equal(ag_reader_next(&r, &h, &p), -EPROTO);
        ag_reader_done(&r);
}

static void test_tlv_basics(void **state)
{
        static const char *const v[] = {"a", "", "ccc", NULL};
        struct ag_buf b;
        struct ag_iter it;
        struct ag_attr a;
        int64_t i;
        char *s;
        const uint8_t *p;
        size_t n;

        (void)state;
        ag_buf_init(&b);
        ag_frame_begin(&b, AG_K_REQ, AG_OP_PING, 0, 1);
        ag_put_u64(&b, 1, -5);
        ag_put_u64(&b, 2, INT64_MIN);
        ag_put_str(&b, 3, "str");
        ag_put_str(&b, 3, NULL);
        ag_put_strv(&b, 4, v);
        ag_put_strv(&b, 4, NULL);
        ag_put_bytes(&b, 5, "\0\1", 2);
        assert_int_equal(ag_frame_end(&b), 0);
        p = b.data + AG_HDR_SIZE;
        n = b.len - AG_HDR_SIZE;

        assert_int_equal(ag_find_i64(p, n, 1, &i), 0);
        assert_int_equal(i, -5);
        assert_int_equal(ag_find_i64(p, n, 2, &i), 0);
        assert_true(i == INT64_MIN);
        assert_int_equal(ag_find_str(p, n, 3, &s), 0);
        assert_string_equal(s, "str");
        free(s);
        assert_int_equal(ag_find_str(p, n, 5, &s), -EPROTO); /* NUL inside */
        assert_int_equal(ag_find_i64(p, n, 3, &i), -EPROTO); /* not 8 bytes */
        assert_int_equal(ag_find_i64(p, n, 99, &i), -ENOENT);
        assert_int_equal(ag_find_str(p, n, 99, &s), -ENOENT);

        ag_iter_init(&it, p, n);
        for (int k = 0; k < 3; k++)
                assert_int_equal(ag_iter_next(&it, &a), 1);
        for (int k = 0; k < 3; k++) {
                assert_int_equal(ag_iter_next(&it, &a), 1);
                assert_int_equal(a.tag, 4);
                assert_int_equal(ag_attr_str(&a, &s), 0);
                assert_string_equal(s, v[k]);
                free(s);
        }
        assert_int_equal(ag_iter_next(&it, &a), 1);
        assert_int_equal(ag_iter_next(&it, &a), 0);

        /* Overruns: a short attribute header, a length past the block. */
        ag_iter_init(&it, p, 5);
        assert_int_equal(ag_iter_next(&it, &a), -EPROTO);
        ag_iter_init(&it, p, 13);
        assert_int_equal(ag_iter_next(&it, &a), -EPROTO);
        assert_int_equal(ag_find_i64(p, 13, 99, &i), -EPROTO);
        ag_iter_init(&it, NULL, 0);
        assert_int_equal(ag_iter_next(&it, &a), 0);
        ag_buf_done(&b);
}

static void test_builder_limits(void **state)
{
        struct ag_buf b;
        uint8_t *big = calloc(1, AG_MAX_PAYLOAD);

        (void)state;
        assert_non_null(big);
        ag_buf_init(&b);
        ag_frame_begin(&b, AG_K_REQ, AG_OP_PING, 0, 1);
        ag_put_bytes(&b, AG_A_DATA, big, AG_MAX_PAYLOAD); /* + 6 bytes of TLV header */
        ag_put_u64(&b, AG_A_PORT, 1);
        assert_int_equal(ag_frame_end(&b), -EMSGSIZE);
        /* sticky, and reset clears it */
        assert_int_equal(ag_frame_end(&b), -EMSGSIZE);
        ag_frame_begin(&b, AG_K_REQ, AG_OP_PING, 0, 1);
        ag_put_bytes(&b, AG_A_DATA, big, AG_MAX_PAYLOAD - 6);
        assert_int_equal(ag_frame_end(&b), 0);
        assert_int_equal(b.len, AG_HDR_SIZE + AG_MAX_PAYLOAD);

        ag_frame_begin(&b, AG_K_DATA, AG_CHAN_STDIN, 1, 0);
        ag_put_raw(&b, big, AG_MAX_DATA + 1);
        assert_int_equal(ag_frame_end(&b), -EMSGSIZE);
        ag_frame_begin(&b, AG_K_DATA, AG_CHAN_STDIN, 1, 0);
        ag_put_raw(&b, big, AG_MAX_DATA);
        assert_int_equal(ag_frame_end(&b), 0);
        ag_buf_done(&b);
        free(big);
}

static void test_nest(void **state)
{
        struct ag_buf b;
        struct ag_iter it, in;
        struct ag_attr a, x;
        int64_t v;

        (void)state;
        ag_buf_init(&b);
        size_t o1 = ag_nest_begin(&b, 10);
        ag_put_u64(&b, 1, 42);
        size_t o2 = ag_nest_begin(&b, 11);
        ag_put_str(&b, 2, "deep");
        ag_nest_end(&b, o2);
        ag_nest_end(&b, o1);
        ag_put_u64(&b, 3, 3);
        assert_int_equal(b.err, 0);

        ag_iter_init(&it, b.data, b.len);
        assert_int_equal(ag_iter_next(&it, &a), 1);
        assert_int_equal(a.tag, 10);
        assert_int_equal(a.len, 14 + 6 + 10);
        ag_iter_init(&in, a.val, a.len);
        assert_int_equal(ag_iter_next(&in, &x), 1);
        assert_int_equal(ag_attr_i64(&x, &v), 0);
        assert_int_equal(v, 42);
        assert_int_equal(ag_iter_next(&in, &x), 1);
        assert_int_equal(x.tag, 11);
        assert_int_equal(ag_iter_next(&in, &x), 0);
        assert_int_equal(ag_iter_next(&it, &a), 1);
        assert_int_equal(a.tag, 3);
        assert_int_equal(ag_iter_next(&it, &a), 0);
        ag_buf_done(&b);
}

static void test_ctr_spec_round_trip(void **state)
{
        char *lower[] = {"/l/0", "/l/1", NULL}, *argv[] = {"sh", "-c", "echo hi", NULL};
        char *env[] = {"A=1", "B=", NULL}, *caps[] = {"CAP_CHOWN", NULL};
        char *masked[] = {"/proc/kcore", NULL}, *ro[] = {"/proc/sys", "/proc/bus", NULL};
        char *sysctls[] = {"kernel.shm_rmid_forced=1", NULL};
        int64_t groups[] = {10, 20, 30};
        struct ag_mount mounts[] = {{"/a", "/b", true, 1}, {"/c", "/d", false, 2}};
        struct ag_device devs[] = {{"/dev/vdb", "/dev/xvda", "rwm"}};
        struct ag_ctr_spec s = {
                .id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                .name = "web",
                .lower = lower,
                .argv = argv,
                .env = env,
                .cwd = "/srv",
                .uid = 1000,
                .gid = 1001,
                .groups = groups,
                .n_groups = 3,
                .tty = true,
                .stdin_open = true,
                .stdin_once = true,
                .log = true,
                .mounts = mounts,
                .n_mounts = 2,
                .devices = devs,
                .n_devices = 1,
                .readonly_root = true,
                .no_new_privs = true,
                .privileged = true,
                .caps_held = true,
                .own_pid_ns = true,
                .caps = caps,
                .seccomp = "{\"defaultAction\":\"SCMP_ACT_ALLOW\"}",
                .seccomp_len = 34,
                .masked = masked,
                .ro_paths = ro,
                .sysctls = sysctls,
                .res = {100000, -1, 512, 1 << 30, 2LL << 30, 99, -500, true, "0-1", "0"},
        };
        struct ag_ctr_spec d;
        struct ag_buf b;

        (void)state;
        ag_buf_init(&b);
        ag_ctr_spec_put(&b, &s);
        assert_int_equal(b.err, 0);
        assert_int_equal(ag_ctr_spec_decode(b.data, b.len, &d), 0);
        assert_string_equal(d.id, s.id);
        assert_string_equal(d.name, "web");
        assert_string_equal(d.lower[1], "/l/1");
        assert_null(d.lower[2]);
        assert_string_equal(d.argv[2], "echo hi");
        assert_null(d.argv[3]);
        assert_string_equal(d.env[1], "B=");
        assert_string_equal(d.cwd, "/srv");
        assert_int_equal(d.uid, 1000);
        assert_int_equal(d.gid, 1001);
        assert_int_equal(d.n_groups, 3);
        assert_int_equal(d.groups[2], 30);
        assert_true(d.tty && d.stdin_open && d.stdin_once && d.log);
        assert_int_equal(d.n_mounts, 2);
        assert_string_equal(d.mounts[0].src, "/a");
        assert_string_equal(d.mounts[1].dst, "/d");
        assert_true(d.mounts[0].ro);
        assert_false(d.mounts[1].ro);
        assert_int_equal(d.mounts[1].propagation, 2);
        assert_int_equal(d.n_devices, 1);
        assert_string_equal(d.devices[0].perms, "rwm");
        assert_true(d.readonly_root && d.no_new_privs && d.privileged && d.own_pid_ns &&
                    d.caps_held);
        assert_string_equal(d.caps[0], "CAP_CHOWN");
        assert_int_equal(d.seccomp_len, 34);
        assert_string_equal(d.seccomp, s.seccomp);
        assert_string_equal(d.masked[0], "/proc/kcore");
        assert_string_equal(d.ro_paths[1], "/proc/bus");
        assert_string_equal(d.sysctls[0], sysctls[0]);
        assert_int_equal(d.res.cpu_period, 100000);
        assert_int_equal(d.res.cpu_quota, -1);
        assert_int_equal(d.res.cpu_shares, 512);
        assert_int_equal(d.res.mem_limit, 1 << 30);
        assert_int_equal(d.res.mem_swap, 2LL << 30);
        assert_int_equal(d.res.pids_max, 99);
        assert_int_equal(d.res.oom_score_adj, -500);
        assert_true(d.res.has_oom_score_adj);
        assert_string_equal(d.res.cpuset_cpus, "0-1");
        assert_string_equal(d.res.cpuset_mems, "0");
        ag_ctr_spec_done(&d);
        ag_buf_done(&b);
}

static void test_ctr_spec_minimal_and_missing(void **state)
{
        struct ag_ctr_spec d;
        struct ag_buf b;

        (void)state;
        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, "x");
        ag_put_str(&b, AG_A_ARGV, "true");
        ag_put_u64(&b, 999, 1); /* unknown: skipped */
        assert_int_equal(ag_ctr_spec_decode(b.data, b.len, &d), 0);
        /* Decoded vectors are empty, never NULL. */
        assert_non_null(d.lower);
        assert_null(d.lower[0]);
        assert_non_null(d.env);
        assert_non_null(d.caps);
        assert_non_null(d.masked);
        assert_non_null(d.ro_paths);
        assert_non_null(d.sysctls);
        assert_null(d.seccomp);
        assert_null(d.cwd);
        ag_ctr_spec_done(&d);

        ag_buf_reset(&b);
        ag_put_str(&b, AG_A_ARGV, "true");
        assert_int_equal(ag_ctr_spec_decode(b.data, b.len, &d), -EPROTO);
        ag_buf_reset(&b);
        ag_put_str(&b, AG_A_ID, "x");
        ag_put_str(&b, AG_A_ENV, "A=1");
        assert_int_equal(ag_ctr_spec_decode(b.data, b.len, &d), -EPROTO);
        /* Malformed after allocations: freed (ASan checks) */
        ag_put_str(&b, AG_A_ARGV, "true");
        ag_put_bytes(&b, AG_A_CWD, "a\0b", 3);
        assert_int_equal(ag_ctr_spec_decode(b.data, b.len, &d), -EPROTO);
        ag_buf_reset(&b);
        ag_put_str(&b, AG_A_ID, "x");
        ag_put_str(&b, AG_A_ARGV, "true");
        ag_put_bytes(&b, AG_A_UID, "1234", 4);
        assert_int_equal(ag_ctr_spec_decode(b.data, b.len, &d), -EPROTO);
        /* The first string of a vector is malformed: freed without a terminator read */
        ag_buf_reset(&b);
        ag_put_str(&b, AG_A_ID, "x");
        ag_put_bytes(&b, AG_A_ARGV, "a\0", 2);
        assert_int_equal(ag_ctr_spec_decode(b.data, b.len, &d), -EPROTO);
        /* A nested mount that overruns inside */
        ag_buf_reset(&b);
        ag_put_str(&b, AG_A_ID, "x");
        ag_put_str(&b, AG_A_ARGV, "true");
        ag_put_bytes(&b, AG_A_MOUNT, "\0\x44\0\0\0\x09zz", 8);
        assert_int_equal(ag_ctr_spec_decode(b.data, b.len, &d), -EPROTO);
        /* A truncated block */
        ag_buf_reset(&b);
        ag_put_str(&b, AG_A_ID, "x");
        ag_put_str(&b, AG_A_ARGV, "true");
        assert_int_equal(ag_ctr_spec_decode(b.data, b.len - 1, &d), -EPROTO);
        ag_buf_done(&b);
}

static void test_status_round_trip(void **state)
{
        struct ag_status s, d;
        struct ag_buf b;
        char longer[300];

        (void)state;
        memset(&s, 0, sizeof(s));
        s.state = AG_ST_EXITED;
        s.pid = 42;
        s.started_ns = 1;
        s.finished_ns = 2;
        s.exit_code = 137;
        s.oom_killed = true;
        memset(s.id, 'a', 64);
        snprintf(s.reason, sizeof(s.reason), "OOMKilled");
        snprintf(s.message, sizeof(s.message), "killed");
        ag_buf_init(&b);
        ag_status_put(&b, &s);
        assert_int_equal(ag_status_decode(b.data, b.len, &d), 0);
        assert_memory_equal(&s, &d, sizeof(s));

        /* An id over 64 is refused; a long message is cut; a bad state refused. */
        memset(longer, 'm', sizeof(longer));
        longer[299] = '\0';
        ag_buf_reset(&b);
        ag_put_str(&b, AG_A_MESSAGE, longer);
        assert_int_equal(ag_status_decode(b.data, b.len, &d), 0);
        assert_int_equal(strlen(d.message), 255);
        ag_put_str(&b, AG_A_ID, longer);
        assert_int_equal(ag_status_decode(b.data, b.len, &d), -EPROTO);
        ag_buf_reset(&b);
        ag_put_u64(&b, AG_A_STATE, 3);
        assert_int_equal(ag_status_decode(b.data, b.len, &d), -EPROTO);
        ag_buf_done(&b);
}

static void test_stats_round_trip(void **state)
{
        struct ag_stats s, d;
        struct ag_buf b;
        int64_t *f = (int64_t *)&s;

        (void)state;
        for (size_t i = 0; i < sizeof(s) / sizeof(int64_t); i++)
                f[i] = (int64_t)(i + 1) * 1000003;
        ag_buf_init(&b);
        ag_stats_put(&b, &s);
        assert_int_equal(ag_stats_decode(b.data, b.len, &d), 0);
        assert_memory_equal(&s, &d, sizeof(s));
        ag_put_bytes(&b, AG_A_MEM_RSS, "x", 1);
        assert_int_equal(ag_stats_decode(b.data, b.len, &d), -EPROTO);
        ag_buf_done(&b);
}

static void test_net_round_trip(void **state)
{
        char *a0[] = {"10.88.0.5/16", "fd00::5/64", NULL}, *a1[] = {NULL};
        char *sysctls[] = {"net.ipv4.ip_forward=1", NULL};
        struct ag_iface ifs[] = {{"aa:bb:cc:dd:ee:ff", a0, 1500}, {"02:00:00:00:00:01", a1, 9000}};
        struct ag_route rts[] = {{"0.0.0.0/0", "10.88.0.1", "aa:bb:cc:dd:ee:ff"},
                                 {"10.0.0.0/8", "", "02:00:00:00:00:01"}};
        struct ag_net n = {ifs, 2, rts, 2, "pod-a", sysctls}, d;
        struct ag_buf b;

        (void)state;
        ag_buf_init(&b);
        ag_net_put(&b, &n);
        assert_int_equal(ag_net_decode(b.data, b.len, &d), 0);
        assert_int_equal(d.n_ifaces, 2);
        assert_string_equal(d.ifaces[0].mac, ifs[0].mac);
        assert_string_equal(d.ifaces[0].addrs[1], "fd00::5/64");
        assert_null(d.ifaces[0].addrs[2]);
        assert_non_null(d.ifaces[1].addrs);
        assert_null(d.ifaces[1].addrs[0]);
        assert_int_equal(d.ifaces[1].mtu, 9000);
        assert_int_equal(d.n_routes, 2);
        assert_string_equal(d.routes[0].gw, "10.88.0.1");
        assert_string_equal(d.routes[1].gw, "");
        assert_string_equal(d.routes[1].dev_mac, "02:00:00:00:00:01");
        assert_string_equal(d.hostname, "pod-a");
        assert_string_equal(d.sysctls[0], sysctls[0]);
        ag_net_done(&d);
        ag_put_bytes(&b, AG_A_HOSTNAME, "a\0", 2);
        assert_int_equal(ag_net_decode(b.data, b.len, &d), -EPROTO);
        ag_buf_done(&b);
}

static void test_resources_round_trip(void **state)
{
        struct ag_resources r = {1, 2, 3, 4, 5, 6, 0, false, NULL, "1"}, d;
        struct ag_buf b;

        (void)state;
        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, "other attrs are skipped");
        ag_resources_put(&b, &r);
        assert_int_equal(ag_resources_decode(b.data, b.len, &d), 0);
        assert_int_equal(d.cpu_period, 1);
        assert_int_equal(d.pids_max, 6);
        assert_false(d.has_oom_score_adj);
        assert_null(d.cpuset_cpus);
        assert_string_equal(d.cpuset_mems, "1");
        ag_resources_done(&d);
        ag_put_bytes(&b, AG_A_CPU_QUOTA, "1234567", 7);
        assert_int_equal(ag_resources_decode(b.data, b.len, &d), -EPROTO);
        ag_buf_done(&b);
}

static void test_resp_error(void **state)
{
        struct ag_buf b;
        char msg[8];

        (void)state;
        ag_buf_init(&b);
        assert_int_equal(ag_resp_error(NULL, 0, msg, sizeof(msg)), 0);
        ag_put_u64(&b, AG_A_PID, 1);
        assert_int_equal(ag_resp_error(b.data, b.len, msg, sizeof(msg)), 0);
        ag_put_str(&b, AG_A_ERRMSG, "no such container");
        ag_put_u64(&b, AG_A_ERRNO, ENOENT);
        assert_int_equal(ag_resp_error(b.data, b.len, msg, sizeof(msg)), -ENOENT);
        assert_string_equal(msg, "no such");
        assert_int_equal(ag_resp_error(b.data, b.len, NULL, 0), -ENOENT);
        ag_buf_reset(&b);
        ag_put_u64(&b, AG_A_ERRNO, -3);
        assert_int_equal(ag_resp_error(b.data, b.len, msg, sizeof(msg)), -EPROTO);
        ag_buf_reset(&b);
        ag_put_bytes(&b, AG_A_ERRNO, "x", 1);
        assert_int_equal(ag_resp_error(b.data, b.len, msg, sizeof(msg)), -EPROTO);
        ag_buf_done(&b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hdr_round_trip),
                cmocka_unit_test(test_hdr_rejects),
                cmocka_unit_test(test_reader_chunks),
                cmocka_unit_test(test_reader_bad_header),
                cmocka_unit_test(test_tlv_basics),
                cmocka_unit_test(test_builder_limits),
                cmocka_unit_test(test_nest),
                cmocka_unit_test(test_ctr_spec_round_trip),
                cmocka_unit_test(test_ctr_spec_minimal_and_missing),
                cmocka_unit_test(test_status_round_trip),
                cmocka_unit_test(test_stats_round_trip),
                cmocka_unit_test(test_net_round_trip),
                cmocka_unit_test(test_resources_round_trip),
                cmocka_unit_test(test_resp_error),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
