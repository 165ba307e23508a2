/* UPIDs as Proxmox VE writes them, and what its decoder refuses; task exit statuses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "upid.h"

struct good {
        const char *s;
        const char *node;
        uint32_t pid;
        uint64_t pstart;
        uint32_t starttime;
        const char *type, *id, *user;
};

static const struct good goods[] = {
        /* The notes' example: pid 662316, pstart 1234567, starttime 1700851725, a token. */
        {"UPID:node1:000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam!ci:", "node1", 662316,
         1234567, 1700851725, "vzcreate", "101", "root@pam!ci"},
        /* A task with no id (an empty field), a user without a token. */
        {"UPID:pve:00001234:00ABCDEF:65000000:vzdump::root@pam:", "pve", 0x1234, 0xabcdef,
         0x65000000, "vzdump", "", "root@pam"},
        /* pstart in 9 digits (a host up long enough), a node name with '-'. */
        {"UPID:pve-node-2:0001E240:1000000AB:6560F00D:vzstart:100:runt@pve!k8s:", "pve-node-2",
         123456, 0x1000000abULL, 0x6560f00d, "vzstart", "100", "runt@pve!k8s"},
        /* Lower-case hex is read too. */
        {"UPID:a:0000abcd:0000ef01:6560f00d:vzstop:105:u@pve:", "a", 0xabcd, 0xef01, 0x6560f00d,
         "vzstop", "105", "u@pve"},
};

static const char *const bads[] = {
        "",
        "UPID:",
        "upid:node1:000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam:",
        "UPID:node1:000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam",    /* no last ':' */
        "UPID:node1:000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam::",  /* one too many */
        "UPID:-node:000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam:",   /* '-' first */
        "UPID:node-:000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam:",   /* '-' last */
        "UPID:no_de:000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam:",   /* '_' */
        "UPID::000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam:",        /* no node */
        "UPID:node1:0A1B2C:0012D687:6560F00D:vzcreate:101:root@pam:",     /* pid of 6 digits */
        "UPID:node1:000A1B2CD:0012D687:6560F00D:vzcreate:101:root@pam:",  /* pid of 9 */
        "UPID:node1:000A1B2C:012D687:6560F00D:vzcreate:101:root@pam:",    /* pstart of 7 */
        "UPID:node1:000A1B2C:00012D6870:6560F00D:vzcreate:101:root@pam:", /* pstart of 10 */
        "UPID:node1:000A1B2C:0012D687:6560F00:vzcreate:101:root@pam:",    /* starttime of 7 */
        "UPID:node1:000A1B2G:0012D687:6560F00D:vzcreate:101:root@pam:",   /* 'G' */
        "UPID:node1:000A1B2C:0012D687:6560F00D::101:root@pam:",           /* no type */
        "UPID:node1:000A1B2C:0012D687:6560F00D:vzcreate:101::",           /* no user */
        "UPID:node1:000A1B2C:0012D687:6560F00D:vz create:101:root@pam:",  /* space */
        "UPID:node1:000A1B2C:0012D687:6560F00D:vzcreate:1/01:root@pam:",  /* '/' */
        "UPID:node1:000A1B2C:0012D687:6560F00D:vzcreate:101:root\t@pam:", /* tab */
        "UPID:node1:000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam:\n",
};

static void test_parse_and_format(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
                const struct good *g = &goods[i];
                struct pve_upid u;
                char buf[PVE_UPID_MAX];
                int n;

                assert_int_equal(pve_upid_parse(g->s, &u), 0);
                assert_string_equal(u.node, g->node);
                assert_int_equal(u.pid, g->pid);
                assert_int_equal(u.pstart, g->pstart);
                assert_int_equal(u.starttime, g->starttime);
                assert_string_equal(u.type, g->type);
                assert_string_equal(u.id, g->id);
                assert_string_equal(u.user, g->user);
                /* Written back as PVE writes it: upper-case hex, 8 digits at least. */
                n = pve_upid_format(&u, buf, sizeof(buf));
                assert_true(n > 0);
                assert_int_equal(strcasecmp(buf, g->s), 0);
                assert_int_equal(pve_upid_parse(buf, &u), 0);
        }
}

static void test_refused(void **state)
{
        struct pve_upid u;

        (void)state;
        for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
                assert_int_equal(pve_upid_parse(bads[i], &u), -EINVAL);
        assert_int_equal(pve_upid_parse(NULL, &u), -EINVAL);
}

static void test_format_limits(void **state)
{
        struct pve_upid u = {.node = "n",
                             .pid = 1,
                             .pstart = 2,
                             .starttime = 3,
                             .type = "vzstart",
                             .id = "100",
                             .user = "root@pam"};
        char small[16], buf[PVE_UPID_MAX];

        (void)state;
        assert_int_equal(pve_upid_format(&u, small, sizeof(small)), -ENOSPC);
        assert_true(pve_upid_format(&u, buf, sizeof(buf)) > 0);
        assert_string_equal(buf, "UPID:n:00000001:00000002:00000003:vzstart:100:root@pam:");
        snprintf(u.user, sizeof(u.user), "a:b");
        assert_int_equal(pve_upid_format(&u, buf, sizeof(buf)), -EINVAL);
        snprintf(u.user, sizeof(u.user), "root@pam");
        u.pstart = 0x1000000000ULL; /* 10 digits */
        assert_int_equal(pve_upid_format(&u, buf, sizeof(buf)), -EINVAL);
}

static void test_task_failed(void **state)
{
        (void)state;
        assert_int_equal(pve_task_failed("OK"), 0);
        assert_int_equal(pve_task_failed("WARNINGS: 2"), 0);
        assert_int_equal(pve_task_failed("unable to create CT 101 - no space left"), 1);
        assert_int_equal(pve_task_failed("OK but"), 1);
        assert_int_equal(pve_task_failed(""), 1);
        assert_int_equal(pve_task_failed(NULL), 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_and_format),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_format_limits),
                cmocka_unit_test(test_task_failed),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
