/* common/validate.c: names that become paths and LXC names, and runt ids. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "test_common.h"
#include "validate.h"

static int name(const char *s)
{
        return sh_validate_name(s, s ? strlen(s) : 0, "sandbox name", NULL);
}

static void test_validate_name_accepts_k8s_names(void **state)
{
        const char *good[] = {
                "nginx-7d9f", "nginx", "a",     "kube-proxy-x2v9k", "coredns_1.11", "a.b",
                "..a",        "a..",   "UPPER", "name with space",  "ünïcode",      "x-"};
        char max[SH_NAME_MAX + 1];

        (void)state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_int_equal(name(good[i]), 0);
        memset(max, 'a', SH_NAME_MAX);
        max[SH_NAME_MAX] = '\0';
        assert_int_equal(name(max), 0);
}

static void test_validate_name_rejects(void **state)
{
        const char *bad[] = {"",   "/",    "a/b",   "/abs",    "trail/",  "..",  ".",
                             "\n", "a\nb", "tab\t", "esc\x1b", "del\x7f", "-rf", "-"};
        char over[SH_NAME_MAX + 2];
        struct sh_error err = {0};

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                sh_err_clear(&err);
                assert_int_equal(sh_validate_name(bad[i], strlen(bad[i]), "sandbox name", &err),
                                 -EINVAL);
                assert_int_equal(err.code, -EINVAL);
                assert_non_null(strstr(err.msg, "sandbox name"));
                /* The message never carries the raw control characters onward. */
                for (const char *p = err.msg; *p; p++)
                        assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p != 0x7f);
        }
        memset(over, 'a', SH_NAME_MAX + 1);
        over[SH_NAME_MAX + 1] = '\0';
        assert_int_equal(sh_validate_name(over, strlen(over), "pod name", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "254"));
        /* An embedded NUL within @len, and a NULL pointer. */
        assert_int_equal(sh_validate_name("a\0b", 3, "pod name", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "NUL"));
        assert_int_equal(sh_validate_name(NULL, 0, "pod name", &err), -EINVAL);
        /* Only @len bytes are looked at. */
        assert_int_equal(sh_validate_name("ok/not-seen", 2, "pod name", &err), 0);
}

static void test_validate_id(void **state)
{
        const char *id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        char buf[80];
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(strlen(id), 64);
        assert_int_equal(sh_validate_id(id, "container id", &err), 0);
        assert_int_equal(sh_validate_id_prefix(id, "container id", &err), 0);

        /* 63 and 65 digits, uppercase, non-hex, empty, NULL. */
        assert_int_equal(sh_validate_id(id + 1, "container id", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "container id"));
        snprintf(buf, sizeof(buf), "%s0", id);
        assert_int_equal(sh_validate_id(buf, "container id", &err), -EINVAL);
        assert_int_equal(sh_validate_id_prefix(buf, "container id", &err), -EINVAL);
        snprintf(buf, sizeof(buf), "%s", id);
        buf[10] = 'A';
        assert_int_equal(sh_validate_id(buf, "container id", &err), -EINVAL);
        buf[10] = 'g';
        assert_int_equal(sh_validate_id(buf, "container id", &err), -EINVAL);
        buf[10] = '/';
        assert_int_equal(sh_validate_id_prefix(buf, "container id", &err), -EINVAL);
        assert_int_equal(sh_validate_id("", "container id", &err), -EINVAL);
        assert_int_equal(sh_validate_id(NULL, "container id", &err), -EINVAL);

        assert_int_equal(sh_validate_id_prefix("a", "id", &err), 0);
        assert_int_equal(sh_validate_id_prefix("0badf00d", "id", &err), 0);
        assert_int_equal(sh_validate_id_prefix("", "id", &err), -EINVAL);
        assert_int_equal(sh_validate_id_prefix("..", "id", &err), -EINVAL);
        assert_int_equal(sh_validate_id_prefix("DEAD", "id", &err), -EINVAL);
}

static void test_id_new(void **state)
{
        char a[65], b[65];

        (void)state;
        memset(a, 'X', sizeof(a));
        assert_int_equal(sh_id_new(a), 0);
        assert_int_equal(strlen(a), 64);
        assert_int_equal(sh_validate_id(a, "id", NULL), 0);
        assert_int_equal(sh_id_new(b), 0);
        assert_string_not_equal(a, b);
}

static void test_validate_cgroup_path(void **state)
{
        const char *good[] = {"",
                              "/",
                              "/kubepods/burstable/pod0b2f3c4d-1e2f-4a5b-8c9d-0e1f2a3b4c5d",
                              "kubepods/besteffort/podx",
                              "kubepods-burstable-pod0b2f3c4d_1e2f.slice",
                              "/system.slice/a:b@c.service",
                              "runt-e2e-1/pods"};
        const char *bad[] = {"../../..", "/kubepods/../..",
                             "a/./b",    ".",
                             "..",       "a//b",
                             "//a",      "a/",
                             "/a b",     "a\nb",
                             "a;b",      "/a/\x01"};
        char over[SH_CGROUP_PATH_MAX + 2];
        struct sh_error err = {0};

        (void)state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_int_equal(sh_validate_cgroup_path(good[i], "cgroup_parent", NULL), 0);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(sh_validate_cgroup_path(bad[i], "cgroup_parent", NULL), -EINVAL);
        memset(over, 'a', sizeof(over) - 1);
        over[sizeof(over) - 1] = '\0';
        assert_int_equal(sh_validate_cgroup_path(over, "linux.cgroup_parent", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "linux.cgroup_parent"));
        assert_int_equal(sh_validate_cgroup_path("../x", "linux.cgroup_parent", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "linux.cgroup_parent '../x'"));
}

int test_validate_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_validate_name_accepts_k8s_names),
                cmocka_unit_test(test_validate_name_rejects),
                cmocka_unit_test(test_validate_id),
                cmocka_unit_test(test_id_new),
                cmocka_unit_test(test_validate_cgroup_path),
        };

        return cmocka_run_group_tests_name("validate", tests, NULL, NULL);
}
