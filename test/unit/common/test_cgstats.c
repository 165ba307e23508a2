/*
 * common/cgstats.c and common/netdev.c over checked-in fixture trees
 * (test/unit/common/fixtures): a cgroup v2 cgroup, v1 ones with and without swap accounting
 * and limits, a broken one, and a /proc/net/dev.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cgstats.h"
#include "cleanup.h"
#include "netdev.h"
#include "strutil.h"
#include "test_common.h"

#define FIXTURES RUNT_SOURCE_DIR "/test/unit/common/fixtures"

static void test_v2(void **state)
{
        struct sh_cg_stats s;
        enum sh_cg_version v = SH_CG_NONE;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(sh_cg_stats_read(FIXTURES "/cgroup/v2", "/kubepods/pod1", &s, &v, &err),
                         0);
        assert_int_equal(v, SH_CG_V2);
        assert_true(s.has_cpu && s.has_memory && s.has_pids);
        assert_int_equal(s.cpu_usage_ns, 2500000000ULL);
        assert_int_equal(s.mem_usage, 104857600);
        assert_int_equal(s.mem_inactive_file, 20971520);
        assert_int_equal(s.mem_working_set, 104857600 - 20971520);
        assert_int_equal(s.mem_rss, 73400320);
        assert_int_equal(s.mem_cache, 31457280);
        assert_int_equal(s.mem_mapped_file, 4194304);
        assert_int_equal(s.mem_pgfault, 12345);
        assert_int_equal(s.mem_pgmajfault, 67);
        assert_int_equal(s.mem_failcnt, 3);
        assert_true(s.has_mem_limit);
        assert_int_equal(s.mem_limit, 268435456);
        assert_true(s.has_swap);
        assert_int_equal(s.swap_usage, 8192);
        assert_false(s.has_swap_limit); /* "max" */
        assert_int_equal(s.pids, 7);
}

static void test_v1(void **state)
{
        struct sh_cg_stats s;
        enum sh_cg_version v = SH_CG_NONE;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(sh_cg_stats_read(FIXTURES "/cgroup/v1", "runt/c1", &s, &v, &err), 0);
        assert_int_equal(v, SH_CG_V1);
        assert_true(s.has_cpu && s.has_memory && s.has_pids);
        assert_int_equal(s.cpu_usage_ns, 987654321);
        assert_int_equal(s.mem_usage, 52428800);
        /* The hierarchical totals, not the cgroup's own lines. */
        assert_int_equal(s.mem_inactive_file, 4194304);
        assert_int_equal(s.mem_working_set, 52428800 - 4194304);
        assert_int_equal(s.mem_rss, 41943040);
        assert_int_equal(s.mem_cache, 10485760);
        assert_int_equal(s.mem_mapped_file, 1048576);
        assert_int_equal(s.mem_pgfault, 500);
        assert_int_equal(s.mem_pgmajfault, 5);
        assert_false(s.has_mem_limit); /* the kernel's "unlimited" */
        assert_false(s.has_swap);      /* no swap accounting */
        assert_int_equal(s.pids, 3);
}

static void test_v1_swap_and_limit(void **state)
{
        struct sh_cg_stats s;
        struct sh_error err = {0};

        (void)state;
        /* Only the memory controller has it: cpu and pids are unknown, not an error. */
        assert_int_equal(sh_cg_stats_read(FIXTURES "/cgroup/v1", "runt/c2", &s, NULL, &err), 0);
        assert_false(s.has_cpu);
        assert_false(s.has_pids);
        assert_true(s.has_memory);
        assert_int_equal(s.mem_working_set, 0); /* floored: inactive_file > usage */
        assert_true(s.has_mem_limit);
        assert_int_equal(s.mem_limit, 4096000);
        assert_int_equal(s.mem_failcnt, 2);
        assert_true(s.has_swap);
        assert_int_equal(s.swap_usage, 500);
        assert_true(s.has_swap_limit);
        assert_int_equal(s.swap_limit, 8192000 - 4096000);
}

static void test_missing_and_bad(void **state)
{
        struct sh_cg_stats s;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(sh_cg_stats_read(FIXTURES "/cgroup/v1", "runt/nope", &s, NULL, &err),
                         -ENOENT);
        assert_int_equal(sh_cg_stats_read(FIXTURES "/cgroup/v2", "nope", &s, NULL, &err), -ENOENT);
        sh_err_clear(&err);
        assert_int_equal(sh_cg_stats_read(FIXTURES "/cgroup/v1", "runt/bad", &s, NULL, &err), -EIO);
        assert_non_null(strstr(err.msg, "runt/bad"));
        assert_int_equal(sh_cg_stats_read(FIXTURES "/cgroup/v1", "runt/../../etc", &s, NULL, &err),
                         -EINVAL);
}

static void test_add(void **state)
{
        struct sh_cg_stats a = {0}, b = {0};
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(sh_cg_stats_read(FIXTURES "/cgroup/v2", "kubepods/pod1", &b, NULL, &err),
                         0);
        sh_cg_stats_add(&a, &b);
        assert_true(a.has_mem_limit);
        sh_cg_stats_add(&a, &b);
        assert_int_equal(a.cpu_usage_ns, 5000000000ULL);
        assert_int_equal(a.pids, 14);
        assert_true(a.has_mem_limit);
        assert_int_equal(a.mem_limit, 2 * 268435456ULL);
        assert_int_equal(sh_cg_stats_read(FIXTURES "/cgroup/v1", "runt/c1", &b, NULL, &err), 0);
        sh_cg_stats_add(&a, &b); /* one without a limit: the sum has none */
        assert_false(a.has_mem_limit);
}

static void test_netdev_parse(void **state)
{
        _cleanup_free_ char *text = NULL;
        struct sh_netdev *v = NULL;
        size_t n = 0;

        (void)state;
        assert_int_equal(sh_read_file(FIXTURES "/netdev/dev", 1 << 16, &text, NULL), 0);
        assert_int_equal(sh_netdev_parse(text, &v, &n), 0);
        assert_int_equal(n, 2); /* lo left out */
        assert_string_equal(v[0].name, "eth0");
        assert_int_equal(v[0].rx_bytes, 10485760);
        assert_int_equal(v[0].rx_packets, 7500);
        assert_int_equal(v[0].rx_errors, 2);
        assert_int_equal(v[0].rx_dropped, 1);
        assert_int_equal(v[0].tx_bytes, 524288);
        assert_int_equal(v[0].tx_packets, 3000);
        assert_int_equal(v[0].tx_errors, 4);
        assert_int_equal(v[0].tx_dropped, 3);
        assert_string_equal(v[1].name, "net1");
        free(v);
        v = NULL;
        assert_int_equal(sh_netdev_parse("one line\n", &v, &n), -EIO);
        assert_int_equal(sh_netdev_parse("h\nh\n eth0: 1 2 3\n", &v, &n), -EIO);
        assert_int_equal(sh_netdev_parse("h\nh\n", &v, &n), 0);
        assert_int_equal(n, 0);
        free(v);
}

/* The caller's own namespace, read the way a pod's is. */
static void test_netdev_read_netns(void **state)
{
        struct sh_netdev *v = NULL;
        struct sh_error err = {0};
        size_t n = 0;
        int r;

        (void)state;
        r = sh_netdev_read_netns("/proc/self/ns/net", &v, &n, &err);
        if (r == -EPERM)
                skip(); /* setns needs CAP_SYS_ADMIN */
        assert_int_equal(r, 0);
        for (size_t i = 0; i < n; i++)
                assert_string_not_equal(v[i].name, "lo");
        free(v);
        assert_int_equal(sh_netdev_read_netns("/nonexistent/netns", &v, &n, &err), -ENOENT);
}

int test_cgstats_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_v2),
                cmocka_unit_test(test_v1),
                cmocka_unit_test(test_v1_swap_and_limit),
                cmocka_unit_test(test_missing_and_bad),
                cmocka_unit_test(test_add),
                cmocka_unit_test(test_netdev_parse),
                cmocka_unit_test(test_netdev_read_netns),
        };

        return cmocka_run_group_tests_name("cgstats", tests, NULL, NULL);
}
