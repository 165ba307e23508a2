/* Pod IP leases (backends/proxmox/ipam.c): host-local's semantics on a directory. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ipam.h"
#include "strutil.h"

/* ---- helpers ---- */

struct fx {
        char *state; /* a fresh state dir */
};

static int setup(void **state)
{
        const char *base = getenv("TMPDIR");
        struct fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        f->state = sh_strdup_printf("%s/runt-ipam-XXXXXX", base && *base ? base : "/tmp");
        assert_non_null(f->state);
        assert_non_null(mkdtemp(f->state));
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        assert_int_equal(sh_rm_rf(f->state), 0);
        free(f->state);
        free(f);
        return 0;
}

static struct pve_ipam *open_ok(struct fx *f, const char *name, const char *subnet,
                                const char *start, const char *end, const char *gw)
{
        struct pve_ipam_config c = {.name = name,
                                    .subnet = subnet,
                                    .range_start = start,
                                    .range_end = end,
                                    .gateway = gw};
        struct sh_error err = {0};
        struct pve_ipam *r = NULL;

        if (pve_ipam_open(f->state, &c, &r, &err) < 0)
                fail_msg("open %s: %s", subnet, err.msg);
        assert_non_null(r);
        return r;
}

static void alloc_is(struct pve_ipam *r, const char *owner, const char *want_ip)
{
        struct pve_ipam_lease l;
        struct sh_error err = {0};

        if (pve_ipam_alloc(r, owner, "eth0", &l, &err) < 0)
                fail_msg("alloc %s: %s", owner, err.msg);
        assert_string_equal(l.ip, want_ip);
        assert_string_equal(l.owner, owner);
        assert_string_equal(l.ifname, "eth0");
}

static void alloc_full(struct pve_ipam *r, const char *owner, const char *range_name)
{
        struct pve_ipam_lease l = {0};
        struct sh_error err = {0};

        assert_int_equal(pve_ipam_alloc(r, owner, "eth0", &l, &err), -ENOSPC);
        assert_non_null(strstr(err.msg, range_name));
        assert_non_null(strstr(err.msg, "exhausted"));
        assert_string_equal(l.ip, ""); /* untouched */
}

static char *file_of(struct pve_ipam *r, const char *name)
{
        char *p = sh_path_join(pve_ipam_dir(r), name), *buf = NULL;

        assert_non_null(p);
        if (sh_read_file(p, 4096, &buf, NULL) < 0)
                buf = NULL;
        free(p);
        return buf;
}

static void file_put(struct pve_ipam *r, const char *name, const char *content)
{
        char *p = sh_path_join(pve_ipam_dir(r), name);

        assert_int_equal(sh_write_file_replace(p, content, strlen(content), 0600), 0);
        free(p);
}

/* ---- tests ---- */

/* A /29: .0 network, .1 gateway (the default), .7 broadcast; .2-.6 for pods, in order. */
static void test_alloc_all(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "pods", "10.1.0.0/29", NULL, NULL, NULL);
        struct pve_ipam_lease l;
        struct sh_error err = {0};
        char *s, *dir;

        alloc_is(r, "pod-a", "10.1.0.2");
        alloc_is(r, "pod-b", "10.1.0.3");
        alloc_is(r, "pod-c", "10.1.0.4");
        alloc_is(r, "pod-d", "10.1.0.5");
        alloc_is(r, "pod-e", "10.1.0.6");
        alloc_full(r, "pod-f", "pods");
        alloc_full(r, "pod-f", "pods"); /* and again: nothing changed */

        assert_int_equal(pve_ipam_get(r, "pod-c", &l, &err), 0);
        assert_int_equal(l.family, AF_INET);
        assert_string_equal(l.ip, "10.1.0.4");
        assert_int_equal(l.prefix, 29);
        assert_string_equal(l.gateway, "10.1.0.1");

        /* The files, where ipam.h says. */
        dir = sh_strdup_printf("%s/proxmox/ipam/pods", f->state);
        assert_string_equal(pve_ipam_dir(r), dir);
        free(dir);
        s = file_of(r, "10.1.0.4");
        assert_string_equal(s, "pod-c\neth0\n");
        free(s);
        s = file_of(r, "last_reserved_ip");
        assert_string_equal(s, "10.1.0.6");
        free(s);
        assert_null(file_of(r, "10.1.0.1"));
        assert_null(file_of(r, "10.1.0.0"));
        assert_null(file_of(r, "10.1.0.7"));
        assert_null(file_of(r, ".lease.tmp"));
        assert_null(pve_ipam_free(r));
}

/* host-local's round robin: a released address waits until the search wraps around to it. */
static void test_release_reuse_order(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "rr", "10.1.0.0/29", NULL, NULL, NULL);
        struct pve_ipam_lease l;
        struct sh_error err = {0};

        alloc_is(r, "a", "10.1.0.2");
        alloc_is(r, "b", "10.1.0.3");
        alloc_is(r, "c", "10.1.0.4");
        assert_int_equal(pve_ipam_release(r, "b", &err), 0);
        assert_int_equal(pve_ipam_get(r, "b", &l, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "b holds no lease"));
        alloc_is(r, "d", "10.1.0.5");
        alloc_is(r, "e", "10.1.0.6");
        alloc_is(r, "f", "10.1.0.3"); /* wrapped: .1 is the gateway, .2 taken */
        alloc_full(r, "g", "rr");

        /* Idempotent: again, and an owner that never held one. */
        assert_int_equal(pve_ipam_release(r, "b", &err), 0);
        assert_int_equal(pve_ipam_release(r, "nobody", &err), 0);
        assert_int_equal(pve_ipam_release(r, "a", &err), 0);
        assert_int_equal(pve_ipam_release(r, "a", &err), 0);
        assert_int_equal(pve_ipam_release(r, "e", &err), 0);
        /* After .3: .4 .5 taken, .6 free (released after .2). */
        alloc_is(r, "h", "10.1.0.6");
        alloc_is(r, "i", "10.1.0.2");
        alloc_full(r, "j", "rr");
        pve_ipam_free(r);
}

/* An owner holds one lease: asking again gives it back (a retry after a crash). */
static void test_alloc_idempotent(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "idem", "10.9.0.0/24", NULL, NULL, NULL);
        struct pve_ipam_lease l;
        struct sh_error err = {0};

        alloc_is(r, "p1", "10.9.0.2");
        alloc_is(r, "p1", "10.9.0.2");
        alloc_is(r, "p2", "10.9.0.3");
        assert_int_equal(pve_ipam_alloc(r, "p1", "eth1", &l, &err), -EEXIST);
        assert_non_null(strstr(err.msg, "10.9.0.2"));
        pve_ipam_free(r);
}

/* A new handle on the same directory (runtd restarted) sees the leases and the position. */
static void test_restart(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "re", "192.168.7.0/24", NULL, NULL, "192.168.7.254");
        struct pve_ipam_lease l, *v = NULL;
        struct sh_error err = {0};
        size_t n = 0;

        alloc_is(r, "ab12", "192.168.7.1");
        alloc_is(r, "cd34", "192.168.7.2");
        pve_ipam_free(r);

        r = open_ok(f, "re", "192.168.7.0/24", NULL, NULL, "192.168.7.254");
        assert_int_equal(pve_ipam_get(r, "ab12", &l, &err), 0);
        assert_string_equal(l.ip, "192.168.7.1");
        assert_int_equal(l.prefix, 24);
        assert_string_equal(l.gateway, "192.168.7.254");
        assert_string_equal(l.ifname, "eth0");
        alloc_is(r, "ef56", "192.168.7.3");
        assert_int_equal(pve_ipam_list(r, &v, &n, &err), 0);
        assert_int_equal(n, 3);
        assert_string_equal(v[0].owner, "ab12");
        assert_string_equal(v[1].owner, "cd34");
        assert_string_equal(v[2].owner, "ef56");
        free(v);
        pve_ipam_free(r);

        /* The range grew a rangeStart: old leases are kept and listed. */
        r = open_ok(f, "re", "192.168.7.0/24", "192.168.7.100", NULL, "192.168.7.254");
        assert_int_equal(pve_ipam_get(r, "cd34", &l, &err), 0);
        assert_string_equal(l.ip, "192.168.7.2");
        alloc_is(r, "gh78", "192.168.7.100"); /* last_reserved .3 is outside: from the start */
        pve_ipam_free(r);

        /* The subnet changed: a lease outside it is listed without prefix or gateway. */
        r = open_ok(f, "re", "10.0.0.0/24", NULL, NULL, NULL);
        assert_int_equal(pve_ipam_get(r, "ab12", &l, &err), 0);
        assert_string_equal(l.ip, "192.168.7.1");
        assert_int_equal(l.prefix, 0);
        assert_string_equal(l.gateway, "");
        assert_int_equal(pve_ipam_alloc(r, "ab12", "eth0", &l, &err), -EEXIST);
        assert_int_equal(pve_ipam_release(r, "ab12", &err), 0);
        alloc_is(r, "ab12", "10.0.0.2");
        pve_ipam_free(r);
}

struct worker {
        struct pve_ipam *r;
        const char *prefix;
        int n;
        int failed;
};

static void *work(void *p)
{
        struct worker *w = p;

        for (int i = 0; i < w->n; i++) {
                char owner[64];
                struct pve_ipam_lease l;
                struct sh_error err = {0};

                snprintf(owner, sizeof(owner), "%s-%d", w->prefix, i);
                if (pve_ipam_alloc(w->r, owner, "eth0", &l, &err) < 0)
                        w->failed++;
        }
        return NULL;
}

/* Every lease distinct, none the network, gateway or broadcast address; owners all there. */
static void check_leases(struct pve_ipam *r, size_t want, const char *net, const char *gw,
                         const char *bcast)
{
        struct pve_ipam_lease *v = NULL;
        struct sh_error err = {0};
        size_t n = 0;

        assert_int_equal(pve_ipam_list(r, &v, &n, &err), 0);
        assert_int_equal(n, want);
        for (size_t i = 0; i < n; i++) {
                struct in_addr a, b;

                assert_string_not_equal(v[i].ip, net);
                assert_string_not_equal(v[i].ip, gw);
                assert_string_not_equal(v[i].ip, bcast);
                if (i == 0)
                        continue;
                /* Sorted by address, so a duplicate would sit next to its twin. */
                assert_int_equal(inet_pton(AF_INET, v[i - 1].ip, &a), 1);
                assert_int_equal(inet_pton(AF_INET, v[i].ip, &b), 1);
                assert_true(ntohl(a.s_addr) < ntohl(b.s_addr));
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(v[i].owner, v[j].owner);
        }
        free(v);
}

/* Two threads, one on the shared handle and one on its own, 100 each at once. */
static void test_threads(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "thr", "10.50.0.0/24", NULL, NULL, NULL);
        struct pve_ipam *r2 = open_ok(f, "thr", "10.50.0.0/24", NULL, NULL, NULL);
        struct worker w[3] = {{r, "t0", 100, 0}, {r2, "t1", 100, 0}, {r, "t2", 40, 0}};
        pthread_t t[3];

        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
        for (int i = 0; i < 2; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_int_equal(w[i].failed, 0);
        }
        check_leases(r, 200, "10.50.0.0", "10.50.0.1", "10.50.0.255");

        /* 53 left (.2-.254 is 253): 40 more fit, then a full range for the rest. */
        assert_int_equal(pthread_create(&t[2], NULL, work, &w[2]), 0);
        assert_int_equal(pthread_join(t[2], NULL), 0);
        assert_int_equal(w[2].failed, 0);
        w[0] = (struct worker){r, "t3", 20, 0};
        work(&w[0]);
        assert_int_equal(w[0].failed, 7);
        check_leases(r, 253, "10.50.0.0", "10.50.0.1", "10.50.0.255");
        pve_ipam_free(r2);
        pve_ipam_free(r);
}

/* A child process and this one allocating on the same range at once. */
static void test_processes(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "proc", "10.60.0.0/24", NULL, NULL, NULL);
        struct worker w = {r, "parent", 80, 0};
        int status = 0;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                struct pve_ipam *c = open_ok(f, "proc", "10.60.0.0/24", NULL, NULL, NULL);
                struct worker cw = {c, "child", 80, 0};

                work(&cw);
                _exit(cw.failed ? 1 : 0);
        }
        work(&w);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(w.failed, 0);
        check_leases(r, 160, "10.60.0.0", "10.60.0.1", "10.60.0.255");
        pve_ipam_free(r);
}

/* The network, gateway and broadcast addresses are never handed out. */
static void test_special_addresses(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "p30", "10.3.0.0/30", NULL, NULL, NULL);

        alloc_is(r, "x", "10.3.0.2");
        alloc_full(r, "y", "p30");
        pve_ipam_free(r);

        r = open_ok(f, "p30b", "10.3.0.0/30", NULL, NULL, "10.3.0.2");
        alloc_is(r, "x", "10.3.0.1");
        alloc_full(r, "y", "p30b");
        pve_ipam_free(r);

        /* All of a /24 with the gateway in the middle. */
        r = open_ok(f, "p24", "10.4.0.0/24", NULL, NULL, "10.4.0.77");
        for (int i = 0; i < 253; i++) {
                char owner[16];
                struct pve_ipam_lease l;
                struct sh_error err = {0};

                snprintf(owner, sizeof(owner), "o%d", i);
                assert_int_equal(pve_ipam_alloc(r, owner, "eth0", &l, &err), 0);
        }
        alloc_full(r, "more", "p24");
        check_leases(r, 253, "10.4.0.0", "10.4.0.77", "10.4.0.255");
        pve_ipam_free(r);
}

static void test_range_bounds(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r =
                open_ok(f, "rb", "10.2.0.0/24", "10.2.0.100", "10.2.0.102", "10.2.0.254");

        alloc_is(r, "a", "10.2.0.100");
        alloc_is(r, "b", "10.2.0.101");
        alloc_is(r, "c", "10.2.0.102");
        alloc_full(r, "d", "rb");
        pve_ipam_free(r);

        /* The gateway inside the range is skipped. */
        r = open_ok(f, "rb2", "10.2.0.0/24", "10.2.0.100", "10.2.0.102", "10.2.0.101");
        alloc_is(r, "a", "10.2.0.100");
        alloc_is(r, "b", "10.2.0.102");
        alloc_full(r, "c", "rb2");
        pve_ipam_free(r);

        /* A range of one address. */
        r = open_ok(f, "one", "10.2.0.0/24", "10.2.0.9", "10.2.0.9", NULL);
        alloc_is(r, "a", "10.2.0.9");
        alloc_full(r, "b", "one");
        pve_ipam_free(r);
}

static void test_bad_config(void **state)
{
        struct fx *f = *state;
        static const struct {
                const char *name, *subnet, *start, *end, *gw, *says;
        } bad[] = {
                {"g", "10.0.0.0/24", NULL, NULL, "10.0.1.1", "gateway '10.0.1.1'"},
                {"g", "10.0.0.0/24", NULL, NULL, "10.0.0.0", "gateway '10.0.0.0'"},
                {"g", "10.0.0.0/24", NULL, NULL, "10.0.0.255", "gateway '10.0.0.255'"},
                {"g", "10.0.0.0/24", NULL, NULL, "fd00::1", "family"},
                {"g", "10.0.0.0/24", NULL, NULL, "10.0.0.x", "not an IP address"},
                {"s", "10.0.0.0/24", "10.0.1.5", NULL, NULL, "rangeStart '10.0.1.5'"},
                {"s", "10.0.0.0/24", "10.0.0.0", NULL, NULL, "rangeStart '10.0.0.0'"},
                {"e", "10.0.0.0/24", NULL, "10.0.0.255", NULL, "rangeEnd '10.0.0.255'"},
                {"e", "10.0.0.0/24", NULL, "9.255.255.254", NULL, "rangeEnd"},
                {"o", "10.0.0.0/24", "10.0.0.50", "10.0.0.40", NULL, "after"},
                {"gw", "10.0.0.0/24", "10.0.0.9", "10.0.0.9", "10.0.0.9", "only the gateway"},
                {"p32", "10.0.0.1/32", NULL, NULL, NULL, "too small"},
                {"p31", "10.0.0.0/31", NULL, NULL, NULL, "too small"},
                {"p128", "fd00::1/128", NULL, NULL, NULL, "too small"},
                {"p127", "fd00::/127", NULL, NULL, NULL, "only the gateway"},
                {"p0", "0.0.0.0/0", NULL, NULL, NULL, "prefix"},
                {"p33", "10.0.0.0/33", NULL, NULL, NULL, "prefix"},
                {"hb", "10.0.0.5/24", NULL, NULL, NULL,
                 "host bits set (the subnet is 10.0.0.0/24)"},
                {"np", "10.0.0.0", NULL, NULL, NULL, "ADDRESS/PREFIX"},
                {"np", "10.0.0.0/", NULL, NULL, NULL, "ADDRESS/PREFIX"},
                {"np", "10.0.0.0/2x", NULL, NULL, NULL, "ADDRESS/PREFIX"},
                {"np", "nonsense/24", NULL, NULL, NULL, "ADDRESS/PREFIX"},
                {"np", NULL, NULL, NULL, NULL, "ADDRESS/PREFIX"},
                {"../x", "10.0.0.0/24", NULL, NULL, NULL, "name"},
                {".hidden", "10.0.0.0/24", NULL, NULL, NULL, "name"},
                {"", "10.0.0.0/24", NULL, NULL, NULL, "name"},
                {NULL, "10.0.0.0/24", NULL, NULL, NULL, "name"},
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct pve_ipam_config c = {.name = bad[i].name,
                                            .subnet = bad[i].subnet,
                                            .range_start = bad[i].start,
                                            .range_end = bad[i].end,
                                            .gateway = bad[i].gw};
                struct pve_ipam *r = (struct pve_ipam *)&c; /* untouched on failure */
                struct sh_error err = {0};

                if (pve_ipam_open(f->state, &c, &r, &err) != -EINVAL)
                        fail_msg("case %zu (%s) accepted", i, bad[i].subnet);
                if (!strstr(err.msg, bad[i].says))
                        fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].says);
                if (bad[i].name && *bad[i].name && bad[i].name[0] != '.' &&
                    !strchr(bad[i].name, '/') && !strstr(err.msg, bad[i].name))
                        fail_msg("case %zu: '%s' does not name the range", i, err.msg);
                assert_ptr_equal(r, (struct pve_ipam *)&c);
        }
        /* Nothing was created for a refused range. */
        {
                char *p = sh_strdup_printf("%s/proxmox/ipam/p32", f->state);
                struct stat st;

                assert_int_equal(stat(p, &st), -1);
                free(p);
        }
}

static void test_bad_args(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "args", "10.7.0.0/24", NULL, NULL, NULL);
        static const char *const owners[] = {"", "a b", "x\n", "tab\there", NULL};
        char longer[PVE_IPAM_OWNER_MAX + 2];
        struct pve_ipam_lease l;
        struct sh_error err = {0};

        for (size_t i = 0; i < sizeof(owners) / sizeof(owners[0]); i++) {
                assert_int_equal(pve_ipam_alloc(r, owners[i], "eth0", &l, &err), -EINVAL);
                assert_int_equal(pve_ipam_release(r, owners[i], &err), -EINVAL);
                assert_int_equal(pve_ipam_get(r, owners[i], &l, &err), -EINVAL);
        }
        memset(longer, 'a', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = '\0';
        assert_int_equal(pve_ipam_alloc(r, longer, "eth0", &l, &err), -EINVAL);
        longer[PVE_IPAM_OWNER_MAX] = '\0';
        alloc_is(r, longer, "10.7.0.2");
        assert_int_equal(pve_ipam_alloc(r, "p", "", &l, &err), -EINVAL);
        assert_int_equal(pve_ipam_alloc(r, "p", "eth/0", &l, &err), -EINVAL);
        assert_int_equal(pve_ipam_alloc(r, "p", "a-very-long-ifname", &l, &err), -EINVAL);
        assert_int_equal(pve_ipam_alloc(r, "p", NULL, &l, &err), -EINVAL);
        pve_ipam_free(r);
}

/* What a crash or a stranger can leave in the directory. */
static void test_leftovers(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "left", "10.8.0.0/29", NULL, NULL, NULL);
        struct pve_ipam_lease *v = NULL;
        struct sh_error err = {0};
        size_t n = 0;
        char *s;

        file_put(r, ".lease.tmp", "half-written\n");  /* a crash mid-allocation */
        file_put(r, "10.8.0.2", "");                  /* no owner: taken, not listed */
        file_put(r, "10.8.0.3", "old-pod\r\neth0");   /* host-local's own format */
        file_put(r, "README", "not a lease\n");       /* ignored */
        file_put(r, "last_reserved_ip", "garbage\n"); /* the search starts at the start */

        alloc_is(r, "new", "10.8.0.4");
        assert_null(file_of(r, ".lease.tmp"));
        assert_int_equal(pve_ipam_list(r, &v, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0].ip, "10.8.0.3");
        assert_string_equal(v[0].owner, "old-pod");
        assert_string_equal(v[0].ifname, "eth0");
        assert_string_equal(v[1].ip, "10.8.0.4");
        free(v);
        assert_int_equal(pve_ipam_release(r, "old-pod", &err), 0);
        assert_null(file_of(r, "10.8.0.3"));
        s = file_of(r, "10.8.0.2");
        assert_string_equal(s, ""); /* still reserved */
        free(s);

        /* An empty range directory lists nothing. */
        pve_ipam_free(r);
        r = open_ok(f, "empty", "10.8.1.0/29", NULL, NULL, NULL);
        v = (struct pve_ipam_lease *)&n;
        assert_int_equal(pve_ipam_list(r, &v, &n, &err), 0);
        assert_null(v);
        assert_int_equal(n, 0);
        pve_ipam_free(r);
}

static void test_ipv6(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "v6", "fd00:1::/120", NULL, NULL, NULL);
        struct pve_ipam_lease l;
        struct sh_error err = {0};

        alloc_is(r, "a", "fd00:1::2");
        assert_int_equal(pve_ipam_get(r, "a", &l, &err), 0);
        assert_int_equal(l.family, AF_INET6);
        assert_int_equal(l.prefix, 120);
        assert_string_equal(l.gateway, "fd00:1::1");
        pve_ipam_free(r);

        /* The last address is a host in IPv6 (no broadcast). */
        r = open_ok(f, "v6b", "fd00:1::/120", "fd00:1::fe", NULL, NULL);
        alloc_is(r, "a", "fd00:1::fe");
        alloc_is(r, "b", "fd00:1::ff");
        alloc_full(r, "c", "v6b");
        pve_ipam_free(r);

        /* A /64 costs no more than a small range. */
        r = open_ok(f, "v6c", "fd00:2::/64", NULL, NULL, NULL);
        alloc_is(r, "a", "fd00:2::2");
        alloc_is(r, "b", "fd00:2::3");
        pve_ipam_free(r);
        r = open_ok(f, "v6d", "fd00:3::/64", "fd00:3::ffff:ffff:ffff:fffe", NULL, NULL);
        alloc_is(r, "a", "fd00:3::ffff:ffff:ffff:fffe");
        alloc_is(r, "b", "fd00:3::ffff:ffff:ffff:ffff");
        alloc_full(r, "c", "v6d");
        pve_ipam_free(r);
}

static bool mac_ok(const char *m)
{
        unsigned b0;

        if (strlen(m) != 17 || sscanf(m, "%2X", &b0) != 1)
                return false;
        for (int i = 0; i < 17; i++) {
                if (i % 3 == 2 ? m[i] != ':' : !strchr("0123456789ABCDEF", m[i]))
                        return false;
        }
        return (b0 & 3) == 2; /* unicast, locally administered */
}

static void test_net0(void **state)
{
        struct fx *f = *state;
        struct pve_ipam *r = open_ok(f, "n4", "10.1.0.0/29", NULL, NULL, NULL);
        struct pve_ipam *r6 = open_ok(f, "n6", "fd00:1::/64", NULL, NULL, NULL);
        struct pve_ipam_lease l4, l6, bad;
        char mac[PVE_IPAM_MAC_LEN], mac2[PVE_IPAM_MAC_LEN], buf[256], want[256];
        struct sh_error err = {0};
        int n;

        pve_ipam_mac("0123456789abcdef", mac);
        assert_true(mac_ok(mac));
        pve_ipam_mac("0123456789abcdef", mac2);
        assert_string_equal(mac, mac2);
        pve_ipam_mac("0123456789abcdee", mac2);
        assert_true(mac_ok(mac2));
        assert_string_not_equal(mac, mac2);
        for (int i = 0; i < 200; i++) {
                char id[16];

                snprintf(id, sizeof(id), "pod%d", i);
                pve_ipam_mac(id, mac2);
                assert_true(mac_ok(mac2));
        }

        assert_int_equal(pve_ipam_alloc(r, "0123456789abcdef", "eth0", &l4, &err), 0);
        assert_int_equal(pve_ipam_alloc(r6, "0123456789abcdef", "eth0", &l6, &err), 0);
        n = pve_ipam_net0(&l4, NULL, "vmbr0", "0123456789abcdef", buf, sizeof(buf), &err);
        snprintf(want, sizeof(want),
                 "name=eth0,bridge=vmbr0,ip=10.1.0.2/29,gw=10.1.0.1,hwaddr=%s,firewall=0,"
                 "host-managed=1",
                 mac);
        assert_string_equal(buf, want);
        assert_int_equal(n, (int)strlen(want));

        n = pve_ipam_net0(&l4, &l6, "vmbr1", "0123456789abcdef", buf, sizeof(buf), &err);
        snprintf(want, sizeof(want),
                 "name=eth0,bridge=vmbr1,ip=10.1.0.2/29,gw=10.1.0.1,ip6=fd00:1::2/64,"
                 "gw6=fd00:1::1,hwaddr=%s,firewall=0,host-managed=1",
                 mac);
        assert_string_equal(buf, want);
        assert_int_equal(n, (int)strlen(want));

        n = pve_ipam_net0(NULL, &l6, "vmbr0", "0123456789abcdef", buf, sizeof(buf), &err);
        assert_true(n > 0);
        assert_null(strstr(buf, ",ip="));
        assert_non_null(strstr(buf, ",ip6=fd00:1::2/64,gw6=fd00:1::1,"));

        /* Refusals. */
        assert_int_equal(pve_ipam_net0(NULL, NULL, "vmbr0", "p", buf, sizeof(buf), &err), -EINVAL);
        assert_int_equal(pve_ipam_net0(&l6, NULL, "vmbr0", "p", buf, sizeof(buf), &err), -EINVAL);
        assert_int_equal(pve_ipam_net0(&l4, &l4, "vmbr0", "p", buf, sizeof(buf), &err), -EINVAL);
        assert_int_equal(pve_ipam_net0(&l4, NULL, "vmbr0,x=1", "p", buf, sizeof(buf), &err),
                         -EINVAL);
        assert_int_equal(pve_ipam_net0(&l4, NULL, "", "p", buf, sizeof(buf), &err), -EINVAL);
        assert_int_equal(pve_ipam_net0(&l4, NULL, NULL, "p", buf, sizeof(buf), &err), -EINVAL);
        assert_int_equal(pve_ipam_net0(&l4, NULL, "vmbr0", "a b", buf, sizeof(buf), &err), -EINVAL);
        assert_int_equal(pve_ipam_net0(&l4, NULL, "vmbr0", "p", buf, 20, &err), -ENOSPC);
        bad = l4;
        bad.prefix = 0; /* outside its range's subnet */
        bad.gateway[0] = '\0';
        assert_int_equal(pve_ipam_net0(&bad, NULL, "vmbr0", "p", buf, sizeof(buf), &err), -EINVAL);
        assert_non_null(strstr(err.msg, "10.1.0.2"));
        bad = l6;
        snprintf(bad.ifname, sizeof(bad.ifname), "eth1");
        assert_int_equal(pve_ipam_net0(&l4, &bad, "vmbr0", "p", buf, sizeof(buf), &err), -EINVAL);
        pve_ipam_free(r6);
        pve_ipam_free(r);
}

int main(void)
{
        const struct CMUnitTest t[] = {
                cmocka_unit_test_setup_teardown(test_alloc_all, setup, teardown),
                cmocka_unit_test_setup_teardown(test_release_reuse_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_alloc_idempotent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
                cmocka_unit_test_setup_teardown(test_processes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_special_addresses, setup, teardown),
                cmocka_unit_test_setup_teardown(test_range_bounds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
                cmocka_unit_test_setup_teardown(test_leftovers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
                cmocka_unit_test_setup_teardown(test_net0, setup, teardown),
        };

        return cmocka_run_group_tests(t, NULL, NULL);
}
