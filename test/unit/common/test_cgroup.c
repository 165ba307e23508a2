/*
 * common/cgroup.c: the host's cgroup layout over fake trees made in a temp dir (v2, v1
 * hybrid, none) and the real /sys/fs/cgroup, the v1 -> v2 conversions (cpu.weight,
 * memory.swap.max), and the limit files a container's resources become on either version.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cgroup.h"
#include "cleanup.h"
#include "strutil.h"
#include "test_common.h"

/* Creates @rel (and its parent dirs) below @dir holding @text, or a dir when @text is NULL. */
static void put(const char *dir, const char *rel, const char *text)
{
        _cleanup_free_ char *p = sh_path_join(dir, rel);
        _cleanup_free_ char *parent = NULL;

        assert_non_null(p);
        if (!text) {
                assert_int_equal(sh_mkdir_p(p, 0755), 0);
                return;
        }
        parent = strdup(p);
        assert_non_null(parent);
        *strrchr(parent, '/') = '\0';
        assert_int_equal(sh_mkdir_p(parent, 0755), 0);
        assert_int_equal(sh_write_file_atomic(p, text, strlen(text), 0644), 0);
}

static void test_detect_v2(void **state)
{
        char *d = test_tmpdir_new();
        struct sh_cg_host h;
        struct sh_error err = {0};
        _cleanup_free_ char *swap = NULL;

        (void)state;
        put(d, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
        put(d, "init.scope/cgroup.procs", "1\n");
        put(d, "system.slice/memory.max", "max\n");
        put(d, "system.slice/memory.swap.max", "max\n");
        assert_int_equal(sh_cg_host_detect(d, &h, &err), 0);
        assert_int_equal(h.version, SH_CG_V2);
        assert_false(h.hybrid);
        assert_int_equal(h.controllers, SH_CG_CPUSET | SH_CG_CPU | SH_CG_IO | SH_CG_MEMORY |
                                                SH_CG_HUGETLB | SH_CG_PIDS);
        assert_true(h.swap);
        assert_string_equal(h.root, d);
        /* A kernel without swap accounting makes no memory.swap.* files. */
        swap = sh_path_join(d, "system.slice/memory.swap.max");
        assert_int_equal(unlink(swap), 0);
        assert_int_equal(sh_cg_host_detect(d, &h, &err), 0);
        assert_false(h.swap);
        /* No controllers handed to the root's children: none to limit with. */
        put(d, "cgroup.controllers", "\n");
        assert_int_equal(sh_cg_host_detect(d, &h, &err), 0);
        assert_int_equal(h.version, SH_CG_V2);
        assert_int_equal(h.controllers, 0);
        assert_false(h.swap);
        test_tmpdir_remove(d);
}

static void test_detect_v1_hybrid_and_none(void **state)
{
        char *d = test_tmpdir_new();
        struct sh_cg_host h;
        struct sh_error err = {0};
        char names[128];

        (void)state;
        /* Nothing mounted: no cgroups at all. */
        assert_int_equal(sh_cg_host_detect(d, &h, &err), 0);
        assert_int_equal(h.version, SH_CG_NONE);
        assert_int_equal(h.controllers, 0);
        /* This machine's layout: v1 controllers and a controller-less cgroup2 beside them. */
        put(d, "cpu/cgroup.procs", "");
        put(d, "cpuacct/cgroup.procs", "");
        put(d, "memory/cgroup.procs", "");
        put(d, "pids/cgroup.procs", "");
        put(d, "devices/cgroup.procs", "");
        put(d, "systemd/cgroup.procs", "");
        put(d, "unified/cgroup.controllers", "");
        assert_int_equal(sh_cg_host_detect(d, &h, &err), 0);
        assert_int_equal(h.version, SH_CG_V1);
        assert_true(h.hybrid);
        assert_int_equal(h.controllers,
                         SH_CG_CPU | SH_CG_CPUACCT | SH_CG_MEMORY | SH_CG_PIDS | SH_CG_DEVICES);
        assert_false(h.swap);
        sh_cg_ctrl_names(h.controllers, names, sizeof(names));
        assert_string_equal(names, "cpu cpuacct memory pids devices");
        put(d, "memory/memory.memsw.limit_in_bytes", "9223372036854771712\n");
        put(d, "blkio/cgroup.procs", "");
        assert_int_equal(sh_cg_host_detect(d, &h, &err), 0);
        assert_true(h.swap);
        assert_true(h.controllers & SH_CG_IO);
        test_tmpdir_remove(d);
        /* A root too long for the struct is refused, not cut. */
        {
                char longroot[400];

                memset(longroot, 'a', sizeof(longroot) - 1);
                longroot[0] = '/';
                longroot[sizeof(longroot) - 1] = '\0';
                assert_int_equal(sh_cg_host_detect(longroot, &h, &err), -ENAMETOOLONG);
                assert_non_null(strstr(err.msg, "too long"));
        }
}

static void test_detect_this_host(void **state)
{
        struct sh_cg_host h;
        struct sh_error err = {0};

        (void)state;
        if (access("/sys/fs/cgroup", F_OK) < 0)
                skip();
        assert_int_equal(sh_cg_host_detect("/sys/fs/cgroup", &h, &err), 0);
        if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {
                assert_int_equal(h.version, SH_CG_V2);
        } else if (access("/sys/fs/cgroup/memory/cgroup.procs", F_OK) == 0) {
                assert_int_equal(h.version, SH_CG_V1);
                assert_true(h.controllers & SH_CG_MEMORY);
                assert_int_equal(h.hybrid,
                                 access("/sys/fs/cgroup/unified/cgroup.controllers", F_OK) == 0);
        }
        assert_string_equal(sh_cg_driver(), "cgroupfs");
}

static void test_shares_to_weight(void **state)
{
        static const struct {
                uint64_t shares, weight;
        } t[] = {
                {0, 0},       {1, 1},          {2, 1},          {3, 2},
                {100, 17},    {512, 59},       {1024, 100},     {2048, 174},
                {10000, 627}, {262143, 10000}, {262144, 10000}, {1u << 30, 10000},
        };
        uint64_t last = 0;

        (void)state;
        for (size_t i = 0; i < SH_ARRAY_SIZE(t); i++) {
                uint64_t w = sh_cg_shares_to_weight(t[i].shares);

                if (w != t[i].weight)
                        fail_msg("shares %llu: weight %llu, want %llu",
                                 (unsigned long long)t[i].shares, (unsigned long long)w,
                                 (unsigned long long)t[i].weight);
        }
        /* Never down as shares go up, always within cpu.weight's range. */
        for (uint64_t s = 2; s <= 262144; s += 97) {
                uint64_t w = sh_cg_shares_to_weight(s);

                assert_true(w >= last && w >= 1 && w <= 10000);
                last = w;
        }
}

static void test_swap_v2(void **state)
{
        struct sh_error err = {0};
        char v[32];

        (void)state;
        assert_int_equal(sh_cg_swap_v2(64 << 20, 0, v, sizeof(v), &err), 0);
        assert_string_equal(v, "");
        assert_int_equal(sh_cg_swap_v2(64 << 20, -1, v, sizeof(v), &err), 0);
        assert_string_equal(v, "max");
        assert_int_equal(sh_cg_swap_v2(0, -1, v, sizeof(v), &err), 0);
        assert_string_equal(v, "max");
        /* The kubelet's "no swap": memory + swap == memory. */
        assert_int_equal(sh_cg_swap_v2(64 << 20, 64 << 20, v, sizeof(v), &err), 0);
        assert_string_equal(v, "0");
        assert_int_equal(sh_cg_swap_v2(64 << 20, 96 << 20, v, sizeof(v), &err), 0);
        assert_string_equal(v, "33554432");
        assert_int_equal(sh_cg_swap_v2(0, 96 << 20, v, sizeof(v), &err), -EINVAL);
        assert_non_null(strstr(err.msg, "needs memory_limit_in_bytes"));
        assert_int_equal(sh_cg_swap_v2(-1, 96 << 20, v, sizeof(v), &err), -EINVAL);
        assert_int_equal(sh_cg_swap_v2(96 << 20, 64 << 20, v, sizeof(v), &err), -EINVAL);
        assert_non_null(strstr(err.msg, "below memory_limit_in_bytes"));
}

struct collect {
        char buf[1024];
        int fail_at; /* the nth call returns -EIO; 0 never */
        int calls;
};

static int collect(void *data, const char *file, const char *value, struct sh_error *err)
{
        struct collect *c = data;
        size_t n = strlen(c->buf);

        if (++c->calls == c->fail_at)
                return sh_err(err, -EIO, "%s: refused", file);
        snprintf(c->buf + n, sizeof(c->buf) - n, "%s=%s;", file, value);
        return 0;
}

static const char *const sizes[] = {"2MB", "1GB"};
static const char *const limits[] = {"4194304", "0"};

static struct sh_cg_limits full(void)
{
        return (struct sh_cg_limits){
                .cpu_shares = 512,
                .cpu_quota = 50000,
                .cpu_period = 100000,
                .cpuset_cpus = "0-1",
                .cpuset_mems = "0",
                .memory = 64 << 20,
                .memory_swap = 96 << 20,
                .pids_max = 100,
                .hugepage_sizes = sizes,
                .hugepage_limits = limits,
                .n_hugepages = 2,
        };
}

static void test_items_v2(void **state)
{
        struct sh_cg_host h = {.version = SH_CG_V2, .controllers = ~0u, .swap = true};
        struct sh_cg_limits l = full();
        struct sh_error err = {0};
        struct collect c = {0};

        (void)state;
        assert_int_equal(sh_cg_limit_items(&h, &l, collect, &c, &err), 0);
        assert_string_equal(c.buf, "cpu.weight=59;cpu.max=50000 100000;memory.max=67108864;"
                                   "memory.swap.max=33554432;hugetlb.2MB.max=4194304;"
                                   "hugetlb.1GB.max=0;cpuset.cpus=0-1;cpuset.mems=0;"
                                   "pids.max=100;");
        /* Unlimited quota and memory; a quota without a period keeps the period. */
        l = (struct sh_cg_limits){.cpu_quota = -1, .memory = -1, .memory_swap = -1};
        memset(&c, 0, sizeof(c));
        assert_int_equal(sh_cg_limit_items(&h, &l, collect, &c, &err), 0);
        assert_string_equal(c.buf, "cpu.max=max;memory.max=max;memory.swap.max=max;");
        l = (struct sh_cg_limits){.cpu_quota = 20000};
        memset(&c, 0, sizeof(c));
        assert_int_equal(sh_cg_limit_items(&h, &l, collect, &c, &err), 0);
        assert_string_equal(c.buf, "cpu.max=20000;");
        /* The kubelet's container without a CPU limit: period only, no quota. */
        l = (struct sh_cg_limits){.cpu_period = 100000, .cpu_shares = 2};
        memset(&c, 0, sizeof(c));
        assert_int_equal(sh_cg_limit_items(&h, &l, collect, &c, &err), 0);
        assert_string_equal(c.buf, "cpu.weight=1;cpu.max=max 100000;");
        /* Controllers the host lacks, and no swap accounting: those files are left out. */
        h.controllers = SH_CG_MEMORY | SH_CG_PIDS;
        h.swap = false;
        l = full();
        memset(&c, 0, sizeof(c));
        assert_int_equal(sh_cg_limit_items(&h, &l, collect, &c, &err), 0);
        assert_string_equal(c.buf, "memory.max=67108864;pids.max=100;");
        /* A swap limit v2 cannot express is an error even without swap accounting. */
        l.memory_swap = 32 << 20;
        memset(&c, 0, sizeof(c));
        assert_int_equal(sh_cg_limit_items(&h, &l, collect, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "memory_swap_limit_in_bytes"));
}

static void test_items_v1(void **state)
{
        struct sh_cg_host h = {.version = SH_CG_V1, .controllers = ~0u, .swap = true};
        struct sh_cg_limits l = full();
        struct sh_error err = {0};
        struct collect c = {0};

        (void)state;
        assert_int_equal(sh_cg_limit_items(&h, &l, collect, &c, &err), 0);
        assert_string_equal(c.buf, "cpu.shares=512;cpu.cfs_period_us=100000;"
                                   "cpu.cfs_quota_us=50000;memory.limit_in_bytes=67108864;"
                                   "memory.memsw.limit_in_bytes=100663296;"
                                   "hugetlb.2MB.limit_in_bytes=4194304;"
                                   "hugetlb.1GB.limit_in_bytes=0;cpuset.cpus=0-1;cpuset.mems=0;"
                                   "pids.max=100;");
        l = (struct sh_cg_limits){.cpu_quota = -1, .cpu_shares = 1};
        memset(&c, 0, sizeof(c));
        assert_int_equal(sh_cg_limit_items(&h, &l, collect, &c, &err), 0);
        assert_string_equal(c.buf, "cpu.shares=2;cpu.cfs_quota_us=-1;");
        /* No cgroups: nothing to write, and no error. */
        h.version = SH_CG_NONE;
        memset(&c, 0, sizeof(c));
        assert_int_equal(sh_cg_limit_items(&h, &l, collect, &c, &err), 0);
        assert_string_equal(c.buf, "");
        /* The writer's error stops the walk and comes back as it is. */
        h.version = SH_CG_V1;
        l = full();
        memset(&c, 0, sizeof(c));
        c.fail_at = 2;
        assert_int_equal(sh_cg_limit_items(&h, &l, collect, &c, &err), -EIO);
        assert_string_equal(c.buf, "cpu.shares=512;");
        assert_non_null(strstr(err.msg, "cpu.cfs_period_us"));
}

static void test_dir_for(void **state)
{
        struct sh_cg_host h = {.version = SH_CG_V2, .root = "/sys/fs/cgroup"};
        _cleanup_free_ char *a = sh_cg_dir_for(&h, "/runt/abc", "memory.max");
        _cleanup_free_ char *b = NULL, *c = NULL, *e = NULL;

        (void)state;
        assert_string_equal(a, "/sys/fs/cgroup/runt/abc");
        h.version = SH_CG_V1;
        b = sh_cg_dir_for(&h, "runt/abc", "memory.limit_in_bytes");
        assert_string_equal(b, "/sys/fs/cgroup/memory/runt/abc");
        c = sh_cg_dir_for(&h, "", "memory.max");
        assert_string_equal(c, "/sys/fs/cgroup/memory/");
        assert_null(sh_cg_dir_for(&h, "runt", "nodot"));
        assert_null(sh_cg_dir_for(&h, "runt", ".hidden"));
        e = sh_cg_dir_for(&h, "runt", "hugetlb.2MB.limit_in_bytes");
        assert_string_equal(e, "/sys/fs/cgroup/hugetlb/runt");
}

int test_cgroup_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_detect_v2),
                cmocka_unit_test(test_detect_v1_hybrid_and_none),
                cmocka_unit_test(test_detect_this_host),
                cmocka_unit_test(test_shares_to_weight),
                cmocka_unit_test(test_swap_v2),
                cmocka_unit_test(test_items_v2),
                cmocka_unit_test(test_items_v1),
                cmocka_unit_test(test_dir_for),
        };

        return cmocka_run_group_tests_name("cgroup", tests, NULL, NULL);
}
