/* The proxmox handler's options, its env value and the CT's hostname (px-opts.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxmox-internal.h"

/* A be_config of @n "key", "value" pairs. */
static struct be_config cfg_of(char **kv, size_t n, char **keys, char **values)
{
        for (size_t i = 0; i < n; i++) {
                keys[i] = kv[2 * i];
                values[i] = kv[2 * i + 1];
        }
        return (struct be_config){
                .handler = "proxmox", .n_options = n, .option_keys = keys, .option_values = values};
}

static int parse(char **kv, size_t n, struct px_opts *o, struct sh_error *e)
{
        char *keys[32], *values[32];
        struct be_config c = cfg_of(kv, n, keys, values);

        return px_opts_parse(&c, o, e);
}

static void test_defaults_and_values(void **state)
{
        char *kv[] = {"endpoints",  "https://a:8006, https://b:8006",
                      "token_file", "/t",
                      "subnet",     "10.0.0.0/24",
                      "nodes",      "n1,n2",
                      "dns",        "1.1.1.1,8.8.8.8"};
        struct px_opts o;
        struct sh_error e = {0};

        (void)state;
        assert_int_equal(parse(kv, 5, &o, &e), 0);
        assert_int_equal(o.n_endpoints, 2);
        assert_string_equal(o.endpoints[1], "https://b:8006");
        assert_null(o.endpoints[2]);
        assert_string_equal(o.nodes[0], "n1");
        assert_string_equal(o.nodes[1], "n2");
        assert_null(o.nodes[2]);
        assert_string_equal(o.storage, "local");
        assert_string_equal(o.rootfs, "local-lvm:1");
        assert_string_equal(o.bridge, "vmbr0");
        assert_string_equal(o.dns, "1.1.1.1 8.8.8.8");
        assert_null(o.ca_file);
        assert_false(o.insecure);
        assert_int_equal(o.memory_mib, 512);
        assert_int_equal(o.cores, 1);
        assert_int_equal(o.agent_port, 7443);
        assert_int_equal(o.task_timeout_s, 120);
        assert_int_equal(o.cert_days, 365);
        assert_int_equal(o.layer_stall_s, 60);
        px_opts_done(&o);
}

static void test_refused(void **state)
{
        static const struct {
                char *kv[10];
                size_t n;
                const char *msg;
        } cases[] = {
                {{"endpoints", "https://a", "token_file", "/t", "subnet", "10.0.0.0/24", "color",
                  "red"},
                 4,
                 "'color' is not known"},
                {{"token_file", "/t", "subnet", "10.0.0.0/24"}, 2, "endpoints"},
                {{"endpoints", "http://a", "token_file", "/t", "subnet", "10.0.0.0/24"},
                 3,
                 "not an https URL"},
                {{"endpoints", "https://a", "subnet", "10.0.0.0/24"}, 2, "token_file"},
                {{"endpoints", "https://a", "token_file", "/t"}, 2, "subnet"},
                {{"endpoints", "https://a", "token_file", "/t", "subnet", "10.0.0.0/24", "memory",
                  "12x"},
                 4,
                 "memory"},
                {{"endpoints", "https://a", "token_file", "/t", "subnet", "10.0.0.0/24", "insecure",
                  "yes"},
                 4,
                 "not true or false"},
                {{"endpoints", "https://a", "token_file", "/t", "subnet", "10.0.0.0/24",
                  "agent_cert_days", "0"},
                 4,
                 "agent_cert_days: '0' is not a number in 1..3650"},
                {{"endpoints", "https://a", "token_file", "/t", "subnet", "10.0.0.0/24",
                  "layer_stall_timeout", "3601"},
                 4,
                 "layer_stall_timeout"},
                {{"endpoints", "https://a", "token_file", "/t", "ca_file", "/ca", "insecure",
                  "true", "subnet", "10.0.0.0/24"},
                 5,
                 "exclude"},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct px_opts o;
                struct sh_error e = {0};
                char *kv[10];

                memcpy(kv, cases[i].kv, sizeof(kv));
                assert_int_equal(parse(kv, cases[i].n, &o, &e), -EINVAL);
                if (!strstr(e.msg, cases[i].msg))
                        fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, cases[i].msg);
                px_opts_done(&o);
        }
}

static void test_env_join(void **state)
{
        const char *env[] = {"A=1", "RUNT_AGENT_LISTEN=0.0.0.0:7443", "E=", NULL};
        char *out = NULL;
        size_t len = 0;
        struct sh_error e = {0};

        (void)state;
        assert_int_equal(px_env_join(env, &out, &len, &e), 0);
        assert_int_equal(len, strlen("A=1") + 1 + strlen("RUNT_AGENT_LISTEN=0.0.0.0:7443") + 1 +
                                      strlen("E="));
        assert_memory_equal(out, "A=1\0RUNT_AGENT_LISTEN=0.0.0.0:7443\0E=", len + 1);
        free(out);
        assert_int_equal(px_env_join((const char *[]){"=x", NULL}, &out, &len, &e), -EINVAL);
        assert_int_equal(px_env_join((const char *[]){"nokey", NULL}, &out, &len, &e), -EINVAL);
        assert_int_equal(px_env_join((const char *[]){"A=a\nb", NULL}, &out, &len, &e), -EINVAL);
        assert_int_equal(px_env_join((const char *[]){NULL}, &out, &len, &e), -EINVAL);
}

static void test_hostname(void **state)
{
        char id[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        struct be_sandbox_spec s = {.name = "web", .hostname = "web-1.example"};
        char out[64];

        (void)state;
        px_hostname(&s, id, out, sizeof(out));
        assert_string_equal(out, "web-1.example");
        s.hostname = "Bad_Host";
        px_hostname(&s, id, out, sizeof(out));
        assert_string_equal(out, "web");
        s.name = "also_bad";
        px_hostname(&s, id, out, sizeof(out));
        assert_string_equal(out, "runt-0123456789ab");
        s.name = "-x";
        s.hostname = "";
        px_hostname(&s, id, out, sizeof(out));
        assert_string_equal(out, "runt-0123456789ab");
}

static void test_description(void **state)
{
        struct be_sandbox_spec s = {.name = "web", .namespace = "ns", .uid = "u1"};
        char *d = px_description(&s, "abc");

        (void)state;
        assert_string_equal(d, "runt pod ns/web (uid u1), sandbox abc");
        free(d);
}

static void test_tags_and_owner(void **state)
{
        static const char hex[] =
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        char id[65], d[200];

        (void)state;
        assert_true(px_tags_have("runt;runt-0123456789ab", "runt-0123456789ab"));
        assert_true(px_tags_have("a, runt-0123456789ab b", "runt-0123456789ab"));
        assert_false(px_tags_have("runtime", "runt"));
        assert_false(px_tags_have("runt-0123456789abc", "runt-0123456789ab"));
        assert_false(px_tags_have(NULL, "runt"));
        assert_false(px_tags_have("", "runt"));
        snprintf(d, sizeof(d), "runt pod ns/n (uid u), sandbox %s", hex);
        assert_int_equal(px_description_sandbox(d, id), 0);
        assert_string_equal(id, hex);
        snprintf(d + strlen(d), sizeof(d) - strlen(d), "\n");
        assert_int_equal(px_description_sandbox(d, id), 0);
        snprintf(d + strlen(d), sizeof(d) - strlen(d), "x");
        assert_int_equal(px_description_sandbox(d, id), -EINVAL);
        snprintf(d, sizeof(d), "runt pod ns/n, sandbox %.63sG", hex);
        assert_int_equal(px_description_sandbox(d, id), -EINVAL);
        snprintf(d, sizeof(d), "someone's pod, sandbox %s", hex);
        assert_int_equal(px_description_sandbox(d, id), -EINVAL);
        assert_int_equal(px_description_sandbox(NULL, id), -EINVAL);
}

static void test_range(void **state)
{
        struct px_opts o = {.subnet = "10.88.7.0/24"};
        unsigned char lo[16], hi[16];

        (void)state;
        assert_int_equal(px_opts_range(&o, lo, hi), 0);
        assert_int_equal(lo[10], 0xff);
        assert_int_equal(lo[15], 0);
        assert_int_equal(hi[15], 255);
        assert_int_equal(hi[14], 7);
        o.range_start = "10.88.7.10";
        o.range_end = "10.88.7.20";
        assert_int_equal(px_opts_range(&o, lo, hi), 0);
        assert_int_equal(lo[15], 10);
        assert_int_equal(hi[15], 20);
        o.range_end = "fd00::1";
        assert_int_equal(px_opts_range(&o, lo, hi), -EINVAL);
        o.subnet = "nonsense";
        assert_int_equal(px_opts_range(&o, lo, hi), -EINVAL);
}

/* RunPodSandbox's errno for a failed create: never the spec's fault, never "not found". */
static void test_create_errno(void **state)
{
        static const struct {
                int in;
                const char *msg;
                int out;
        } t[] = {
                {-EINVAL, "POST /nodes/n1/lxc: Parameter verification failed", -EBUSY},
                {-EACCES, "authentication failure", -EBUSY},
                {-EPERM, "Permission check failed (/, Sys.Modify)", -EBUSY},
                {-ENOENT,
                 "task vzcreate 101 on n1 failed: unable to create CT 101 - can't find file "
                 "'local:vztmpl/runt-pod-0123456789abcdef.tar'",
                 -EAGAIN},
                {-ENOENT, "task vzstart 101 on n1 failed: CT 101 does not exist", -EIO},
                {-ENOENT, NULL, -EIO},
                {-EEXIST, "no free vmid in 5 attempts: CT 104 already exists", -EAGAIN},
                {-ECONNRESET, "the connection broke", -EAGAIN},
                {-ESRCH, "proxmox: the pod's CT 101 on n1 is not running", -EIO},
                {-EIO, "task vzstart failed: startup for container failed", -EIO},
                {-EHOSTUNREACH, "595 no route", -EHOSTUNREACH},
                {-ETIMEDOUT, "no agent", -ETIMEDOUT},
                {-EBUSY, "CT is locked", -EBUSY},
                {-ENOMEM, NULL, -ENOMEM},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                if (px_create_errno(t[i].in, t[i].msg) != t[i].out)
                        fail_msg("%zu: %d (%s) gave %d, not %d", i, t[i].in,
                                 t[i].msg ? t[i].msg : "NULL", px_create_errno(t[i].in, t[i].msg),
                                 t[i].out);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults_and_values),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_env_join),
                cmocka_unit_test(test_hostname),
                cmocka_unit_test(test_description),
                cmocka_unit_test(test_tags_and_owner),
                cmocka_unit_test(test_range),
                cmocka_unit_test(test_create_errno),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
