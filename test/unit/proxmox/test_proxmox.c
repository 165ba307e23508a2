/* UPIDs as Proxmox VE writes them, and what its decoder refuses; task exit statuses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "reply.h"
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

struct reply_case {
        int http;
        const char *reason, *body;
        int r;
        const char *msg; /* expected in the message */
        bool retry;
};

/* The replies of notes §1 and §5, old servers' and new ones'. */
static const struct reply_case replies[] = {
        /* New style: "message" in the body, preferred to the reason phrase. */
        {400, "Parameter verification failed.",
         "{\"data\":null,\"errors\":{\"vmid\":\"VM 101 already exists\"},"
         "\"message\":\"Parameter verification failed.\\n\"}",
         -EINVAL, "HTTP 400 Parameter verification failed.; vmid: VM 101 already exists", false},
        /* Old style (before libpve-http-server-perl 5.2.0): the text only on the status line. */
        {400, "Parameter verification failed.",
         "{\"data\":null,\"errors\":{\"memory\":\"value must have a minimum value of 16\"}}",
         -EINVAL, "HTTP 400 Parameter verification failed.; memory: value must have a minimum",
         false},
        {500, "CT 101 already exists on node 'node1'", "{\"data\":null}", -EIO,
         "CT 101 already exists on node 'node1'", false},
        {500, "ignored", "{\"data\":null,\"message\":\"unable to create CT 101 - disk full\\n\"}",
         -EIO, "HTTP 500 unable to create CT 101 - disk full", false},
        /* Auth failures: an empty body, the reason only. */
        {401, "Authentication failed!", "", -EACCES, "HTTP 401 Authentication failed!", false},
        {401, "No ticket", NULL, -EACCES, "No ticket", false},
        {403, "Permission check failed (/vms/101, VM.Allocate)", "{\"data\":null}", -EPERM,
         "Permission check failed (/vms/101, VM.Allocate)", false},
        {501, "Method 'GET /foo' not implemented", "", -EOPNOTSUPP, "not implemented", false},
        /* A node that cannot be reached: retried, never "CT missing". */
        {595, "No route to host", "", -EHOSTUNREACH, "HTTP 595 No route to host", true},
        {596, "Connection timed out", "", -EHOSTUNREACH, "596", true},
        /* No words at all. */
        {502, NULL, "<html>bad gateway</html>", -EIO, "HTTP 502", false},
        /* A success must carry data. */
        {200, "OK", "{\"errors\":{}}", -EPROTO, "without a data field", false},
        {200, "OK", "not json", -EPROTO, "without a data field", false},
};

static void test_replies(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
                const struct reply_case *c = &replies[i];
                struct sh_error e = {0};
                struct pve_reply r;

                assert_int_equal(pve_reply_parse(c->http, c->reason, c->body,
                                                 c->body ? strlen(c->body) : 0, &r, &e),
                                 c->r);
                if (!strstr(e.msg, c->msg))
                        fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, c->msg);
                assert_int_equal(r.retry, c->retry);
                assert_null(r.data);
        }
}

static void test_reply_data_and_ints(void **state)
{
        const char *ok = "{\"data\":{\"vmid\":\"100\",\"maxmem\":536870912,\"cpu\":0.5,"
                         "\"bad\":\"1x\",\"empty\":\"\",\"flag\":true}}";
        struct pve_reply r;
        json_object *v;
        int64_t n;

        (void)state;
        assert_int_equal(pve_reply_parse(200, "OK", ok, strlen(ok), &r, NULL), 0);
        assert_non_null(r.data);
        /* Numbers as JSON numbers or as strings ("100", as /cluster/nextid sends it). */
        assert_true(json_object_object_get_ex(r.data, "vmid", &v));
        assert_int_equal(pve_json_int(v, &n), 0);
        assert_int_equal(n, 100);
        assert_true(json_object_object_get_ex(r.data, "maxmem", &v));
        assert_int_equal(pve_json_int(v, &n), 0);
        assert_int_equal(n, 536870912);
        for (const char *const *k = (const char *const[]){"cpu", "bad", "empty", "flag", NULL}; *k;
             k++) {
                assert_true(json_object_object_get_ex(r.data, *k, &v));
                assert_int_equal(pve_json_int(v, &n), -EINVAL);
        }
        pve_reply_done(&r);
        pve_reply_done(&r); /* twice is fine */
        /* data: null is a success with no value (a DELETE of a task). */
        assert_int_equal(pve_reply_parse(200, "OK", "{\"data\":null}", 13, &r, NULL), 0);
        assert_null(r.data);
}

/* Writes @text to a new file of mode @mode in a temp dir; its path. */
static char *token_file(char *dir, const char *name, const char *text, mode_t mode)
{
        static char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        unlink(path);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        assert_int_equal(chmod(path, mode), 0);
        return path;
}

static void test_token_file(void **state)
{
        char dir[] = "/tmp/runt-pve-tokenXXXXXX", link[4200];
        struct sh_error e = {0};
        char *v = NULL;
        const char *secret = "3b2d54b6-9b8c-4c62-a9e5-2b1b1e3c4d5e";
        char good[200];

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(good, sizeof(good), "runt@pve!k8s=%s\n", secret);
        assert_int_equal(pve_token_load(token_file(dir, "t", good, 0600), &v, &e), 0);
        assert_string_equal(v, "PVEAPIToken=runt@pve!k8s=3b2d54b6-9b8c-4c62-a9e5-2b1b1e3c4d5e");
        free(v);
        assert_int_equal(pve_token_load(token_file(dir, "t", good, 0400), &v, &e), 0);
        free(v);
        /* Readable by others: refused, and the message tells how to fix it, not the secret. */
        assert_int_equal(pve_token_load(token_file(dir, "t", good, 0644), &v, &e), -EPERM);
        assert_non_null(strstr(e.msg, "chmod 600"));
        assert_null(strstr(e.msg, secret));
        /* Through a symlink: refused. */
        token_file(dir, "t", good, 0600);
        snprintf(link, sizeof(link), "%s/l", dir);
        assert_int_equal(symlink("t", link), 0);
        assert_int_equal(pve_token_load(link, &v, &e), -EPERM);
        unlink(link);
        /* Not a token. */
        static const char *const not_tokens[] = {"",
                                                 "\n",
                                                 "runt@pve!k8s",
                                                 "runt@pve!k8s=",
                                                 "runtpve!k8s=abc",
                                                 "runt@pve=abc",
                                                 "runt@pve!=abc",
                                                 "runt@pve!k8s=a b",
                                                 "runt@pve!k8s=x\ny=z"};
        for (size_t i = 0; i < sizeof(not_tokens) / sizeof(not_tokens[0]); i++) {
                assert_int_equal(pve_token_load(token_file(dir, "t", not_tokens[i], 0600), &v, &e),
                                 -EINVAL);
                assert_null(strstr(e.msg, "=a"));
        }
        assert_int_equal(pve_token_load("/nonexistent/runt-token", &v, &e), -ENOENT);
        unlink(token_file(dir, "t", "", 0600));
        rmdir(dir);
}

static void test_fingerprint(void **state)
{
        uint8_t fp[32];

        (void)state;
        assert_int_equal(pve_fingerprint_parse("AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:"
                                               "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
                                               fp),
                         0);
        assert_int_equal(fp[0], 0xab);
        assert_int_equal(fp[31], 0x89);
        assert_int_equal(pve_fingerprint_parse("abcdef0123456789abcdef0123456789abcdef0123456789"
                                               "abcdef0123456789",
                                               fp),
                         0);
        assert_int_equal(fp[1], 0xcd);
        assert_int_equal(pve_fingerprint_parse("AB:CD", fp), -EINVAL);
        assert_int_equal(pve_fingerprint_parse("AB-CD-EF-01-23-45-67-89-AB-CD-EF-01-23-45-67-89-"
                                               "AB-CD-EF-01-23-45-67-89-AB-CD-EF-01-23-45-67-89",
                                               fp),
                         -EINVAL);
        assert_int_equal(pve_fingerprint_parse("zbcdef0123456789abcdef0123456789abcdef0123456789"
                                               "abcdef0123456789",
                                               fp),
                         -EINVAL);
        assert_int_equal(pve_fingerprint_parse(NULL, fp), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_and_format), cmocka_unit_test(test_refused),
                cmocka_unit_test(test_format_limits),    cmocka_unit_test(test_task_failed),
                cmocka_unit_test(test_replies),          cmocka_unit_test(test_reply_data_and_ints),
                cmocka_unit_test(test_token_file),       cmocka_unit_test(test_fingerprint),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
