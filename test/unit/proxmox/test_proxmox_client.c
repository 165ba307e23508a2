/*
 * The Proxmox VE API client against the fake PVE server (test/pvefake/pvefake.py), started
 * once as a subprocess: TLS modes, the token, both error styles, tasks, 595s and node
 * marks, nextid races, node choice, uploads, many threads at once. Skips when python3,
 * openssl or the fake are missing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "cleanup.h"
#include "client.h"
#include "cluster.h"
#include "json.h"
#include "reply.h"
#include "strutil.h"
#include "upid.h"

#define FAKE        RUNT_SOURCE_DIR "/test/pvefake/pvefake.py"
#define PYTHON      "/usr/bin/python3"
#define TOKEN       "root@pam!runt=5b1f6c2e-8d4a-4c3b-9e7f-0a1b2c3d4e5f"
#define BAD_TOKEN   "root@pam!runt=00000000-0000-0000-0000-000000000000"
#define TEMPLATE    "runt-test.tar"
#define TEMPLATE_ID "local:vztmpl/" TEMPLATE

static struct {
        bool up;
        pid_t pid;
        char dir[64];
        int port, control;
        char ca[512], other_ca[512], fingerprint[128];
        char token_file[128], bad_token_file[128];
        char endpoint[64];
        bool template_uploaded;
} F;

static unsigned long long ms_since(unsigned long long t0)
{
        return (sh_now_ns() - t0) / 1000000ULL;
}

/* The fake's ------------------------------------------------------------------------------- */

static bool have(const char *path)
{
        return access(path, X_OK) == 0;
}

static bool on_path(const char *prog)
{
        const char *dirs[] = {"/usr/bin", "/bin", "/usr/local/bin"};

        for (size_t i = 0; i < SH_ARRAY_SIZE(dirs); i++) {
                char p[256];

                snprintf(p, sizeof(p), "%s/%s", dirs[i], prog);
                if (have(p))
                        return true;
        }
        return false;
}

static void write_file(const char *path, const char *s, mode_t mode)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

/* One HTTP/1.0 request to the fake's control port. The status code; the JSON body in @ret. */
static int ctl(const char *method, const char *path, const char *body, json_object **ret)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)F.control)};
        char *buf = NULL, *p;
        size_t len = 0, cap = 0;
        int fd, status = -1;
        FILE *f;

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (ret)
                *ret = NULL;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        body = body ? body : "";
        f = fdopen(fd, "r+");
        assert_non_null(f);
        fprintf(f,
                "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: %zu\r\n\r\n%s",
                method, path, strlen(body), body);
        fflush(f);
        for (;;) {
                size_t n;

                if (len + 4096 + 1 > cap) {
                        cap = cap ? cap * 2 : 16384;
                        buf = realloc(buf, cap);
                        assert_non_null(buf);
                }
                n = fread(buf + len, 1, cap - len - 1, f);
                if (!n)
                        break;
                len += n;
        }
        fclose(f);
        assert_non_null(buf);
        buf[len] = 0;
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
                status = -1;
        p = strstr(buf, "\r\n\r\n");
        if (ret && p && p[4])
                *ret = json_tokener_parse(p + 4);
        free(buf);
        return status;
}

static void ctl_ok(const char *method, const char *path, const char *body)
{
        int status = ctl(method, path, body, NULL);

        if (status != 200)
                fail_msg("control %s %s %s: HTTP %d", method, path, body ? body : "", status);
}

static void node_online(const char *node, bool online)
{
        char body[128];

        snprintf(body, sizeof(body), "{\"node\":\"%s\",\"online\":%s}", node,
                 online ? "true" : "false");
        ctl_ok("POST", "/control/node", body);
}

/* The calls the fake saw since the last reset: a JSON array of {method, path, ...} (owned). */
static json_object *calls_seen(void)
{
        json_object *o = NULL;

        assert_int_equal(ctl("GET", "/control/calls", NULL, &o), 200);
        assert_non_null(o);
        assert_true(json_object_is_type(o, json_type_array));
        return o;
}

/* How many seen calls have @method and a path containing @path_part. */
static size_t calls_matching(const char *method, const char *path_part)
{
        json_object *list = calls_seen();
        size_t n = 0;

        for (size_t i = 0; i < json_object_array_length(list); i++) {
                json_object *c = json_object_array_get_idx(list, i), *m = NULL, *p = NULL;

                if (json_object_object_get_ex(c, "method", &m) &&
                    json_object_object_get_ex(c, "path", &p) &&
                    strcmp(json_object_get_string(m), method) == 0 &&
                    strstr(json_object_get_string(p), path_part))
                        n++;
        }
        json_object_put(list);
        return n;
}

static int start_fake(void **state)
{
        const char *fake = FAKE;
        char port[] = "0", line[4096];
        size_t len = 0;
        int p[2], logfd;
        json_object *o = NULL, *v;

        (void)state;
        if (getenv("RUNT_PVEFAKE")) /* another copy of the fake */
                fake = getenv("RUNT_PVEFAKE");
        if (!have(PYTHON) || !on_path("openssl") || access(fake, R_OK) < 0) {
                fprintf(stderr, "# no %s, openssl or %s: the PVE client tests skip\n", PYTHON,
                        fake);
                return 0;
        }
        snprintf(F.dir, sizeof(F.dir), "/tmp/runt-pvefake-XXXXXX");
        assert_non_null(mkdtemp(F.dir));
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        F.pid = fork();
        assert_true(F.pid >= 0);
        if (F.pid == 0) {
                char log[128];

                snprintf(log, sizeof(log), "%s/fake.log", F.dir);
                logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                /* Dies with the test, even a crashed one: no process left behind. */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (dup2(p[1], 1) < 0 || (logfd >= 0 && dup2(logfd, 2) < 0))
                        _exit(127);
                execl(PYTHON, PYTHON, fake, "--dir", F.dir, "--port", port, "--nodes",
                      "node1,node2,node3", "--token", TOKEN, (char *)NULL);
                _exit(127);
        }
        close(p[1]);
        /* The ready line. */
        for (;;) {
                struct pollfd pfd = {.fd = p[0], .events = POLLIN};
                ssize_t n;

                if (poll(&pfd, 1, 30000) <= 0)
                        break;
                n = read(p[0], line + len, sizeof(line) - 1 - len);
                if (n <= 0)
                        break;
                len += (size_t)n;
                line[len] = 0;
                if (strchr(line, '\n') || len == sizeof(line) - 1)
                        break;
        }
        close(p[0]);
        line[len] = 0;
        o = len ? json_tokener_parse(line) : NULL;
        if (!o) {
                fprintf(stderr, "# the fake PVE did not start (see %s/fake.log): '%s'\n", F.dir,
                        line);
                kill(F.pid, SIGTERM);
                waitpid(F.pid, NULL, 0);
                F.pid = 0;
                return -1;
        }
        assert_true(json_object_object_get_ex(o, "port", &v));
        F.port = json_object_get_int(v);
        assert_true(json_object_object_get_ex(o, "control", &v));
        F.control = json_object_get_int(v);
        assert_true(json_object_object_get_ex(o, "ca", &v));
        snprintf(F.ca, sizeof(F.ca), "%s", json_object_get_string(v));
        assert_true(json_object_object_get_ex(o, "other_ca", &v));
        snprintf(F.other_ca, sizeof(F.other_ca), "%s", json_object_get_string(v));
        assert_true(json_object_object_get_ex(o, "fingerprint", &v));
        snprintf(F.fingerprint, sizeof(F.fingerprint), "%s", json_object_get_string(v));
        json_object_put(o);
        snprintf(F.endpoint, sizeof(F.endpoint), "https://127.0.0.1:%d", F.port);
        snprintf(F.token_file, sizeof(F.token_file), "%s/token", F.dir);
        write_file(F.token_file, TOKEN "\n", 0600);
        snprintf(F.bad_token_file, sizeof(F.bad_token_file), "%s/bad-token", F.dir);
        write_file(F.bad_token_file, BAD_TOKEN "\n", 0600);
        F.up = true;
        return 0;
}

static int stop_fake(void **state)
{
        (void)state;
        if (F.pid > 0) {
                kill(F.pid, SIGTERM);
                waitpid(F.pid, NULL, 0);
                F.pid = 0;
        }
        if (F.dir[0])
                sh_rm_rf(F.dir);
        return 0;
}

/* Before each test: the fake back to its defaults, its call log empty. */
static int reset(void **state)
{
        (void)state;
        if (!F.up)
                return 0;
        ctl_ok("POST", "/control/config",
               "{\"old_errors\":false,\"auth_delay\":0,\"task_delay\":0.05,\"latency\":0}");
        node_online("node1", true);
        node_online("node2", true);
        node_online("node3", true);
        ctl_ok("POST", "/control/calls/reset", NULL);
        return 0;
}

#define NEED_FAKE()                                                                                \
        do {                                                                                       \
                if (!F.up)                                                                         \
                        skip();                                                                    \
        } while (0)

/* Clients ---------------------------------------------------------------------------------- */

static void opts_default(struct pve_client_opts *o, const char *const *endpoints)
{
        *o = (struct pve_client_opts){
                .endpoints = endpoints,
                .n_endpoints = 1,
                .token_file = F.token_file,
                .ca_file = F.ca,
                .connect_timeout_ms = 2000,
                .timeout_ms = 10000,
                .retries = 2,
                .backoff_ms = 20,
                .node_recheck_ms = 400,
        };
}

static struct pve_client *client_with(const struct pve_client_opts *o)
{
        struct sh_error err = {0};
        struct pve_client *c = NULL;
        int r = pve_client_new(o, &c, &err);

        if (r < 0)
                fail_msg("pve_client_new: %d %s", r, err.msg);
        return c;
}

static struct pve_client *client(void)
{
        static const char *ep[1];
        struct pve_client_opts o;

        ep[0] = F.endpoint;
        opts_default(&o, ep);
        return client_with(&o);
}

/* GET /version with @c: 0 or the error. */
static int get_version(struct pve_client *c, struct sh_error *err)
{
        struct pve_reply rep = {0};
        const char *v = NULL;
        int r = pve_call(c, "GET", "/version", NULL, &rep, err);

        if (r < 0)
                return r;
        assert_int_equal(sh_json_get_string(rep.data, "version", "version", &v, NULL), 0);
        assert_true(v[0] >= '0' && v[0] <= '9');
        pve_reply_done(&rep);
        return 0;
}

/* An empty tar archive (two zero blocks) uploaded once as TEMPLATE_ID. */
static void ensure_template(struct pve_client *c)
{
        char path[128], zeros[1024] = {0};
        struct sh_error err = {0};
        int fd, r;

        if (F.template_uploaded)
                return;
        snprintf(path, sizeof(path), "%s/%s", F.dir, TEMPLATE);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
        close(fd);
        /* "local" is each node's own. */
        r = pve_upload(c, "node1", "local", "vztmpl", path, TEMPLATE, 20000, &err);
        if (r == 0)
                r = pve_upload(c, "node2", "local", "vztmpl", path, TEMPLATE, 20000, &err);
        if (r < 0)
                fail_msg("upload: %d %s", r, err.msg);
        F.template_uploaded = true;
}

/* POST /nodes/@node/lxc for @vmid from the test template: 0 with the UPID, or the error. */
static int create_ct(struct pve_client *c, const char *node, uint32_t vmid, const char *ostemplate,
                     char *upid, size_t size, struct sh_error *err)
{
        struct pve_reply rep = {0};
        char id[16];
        int r;

        snprintf(id, sizeof(id), "%u", vmid);
        r = pve_callf(c, "POST",
                      (const char *const[]){"vmid", id, "ostemplate",
                                            ostemplate ? ostemplate : TEMPLATE_ID, "hostname",
                                            "runt-test", "rootfs", "local-lvm:1", NULL},
                      &rep, err, "/nodes/%s/lxc", node);
        if (r < 0)
                return r;
        assert_non_null(rep.data);
        assert_true(json_object_is_type(rep.data, json_type_string));
        snprintf(upid, size, "%s", json_object_get_string(rep.data));
        pve_reply_done(&rep);
        return 0;
}

static uint32_t next_vmid(struct pve_client *c)
{
        struct sh_error err = {0};
        uint32_t id = 0;

        if (pve_nextid(c, &id, &err) < 0)
                fail_msg("nextid: %s", err.msg);
        return id;
}

/* Tests ------------------------------------------------------------------------------------ */

static void test_call_ok(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};
        struct pve_reply rep = {0};

        (void)state;
        NEED_FAKE();
        c = client();
        assert_int_equal(get_version(c, &err), 0);
        assert_int_equal(pve_client_calls(c), 1);
        /* A list, its query string, a keep-alive connection reused. */
        assert_int_equal(pve_call(c, "GET", "/cluster/resources",
                                  (const char *const[]){"type", "node", NULL}, &rep, &err),
                         0);
        assert_true(json_object_is_type(rep.data, json_type_array));
        assert_int_equal(json_object_array_length(rep.data), 3);
        pve_reply_done(&rep);
        assert_int_equal(pve_client_calls(c), 2);
        assert_int_equal(pve_client_retries(c), 0);
        /* No reply wanted. */
        assert_int_equal(pve_call(c, "GET", "/version", NULL, NULL, &err), 0);
        /* The request's shape is checked before anything is sent. */
        assert_int_equal(pve_call(c, "PATCH", "/version", NULL, NULL, &err), -EINVAL);
        assert_int_equal(pve_call(c, "GET", "version", NULL, NULL, &err), -EINVAL);
        assert_int_equal(pve_call(c, "GET", "/version?x=1", NULL, NULL, &err), -EINVAL);
        assert_int_equal(
                pve_call(c, "GET", "/version", (const char *const[]){"odd", NULL}, NULL, &err),
                -EINVAL);
        assert_int_equal(pve_client_calls(c), 3);
        pve_client_free(c);
}

static void test_bad_token(void **state)
{
        const char *ep[] = {F.endpoint};
        struct pve_client_opts o;
        struct pve_client *c;
        struct sh_error err = {0};

        (void)state;
        NEED_FAKE();
        opts_default(&o, ep);
        o.token_file = F.bad_token_file;
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), -EACCES);
        assert_non_null(strstr(err.msg, "GET /version: "));
        assert_non_null(strstr(err.msg, "Authentication failed"));
        assert_non_null(strstr(err.msg, F.bad_token_file));
        assert_null(strstr(err.msg, "00000000-0000")); /* never the secret */
        assert_int_equal(pve_client_calls(c), 1);      /* a 401 is not retried */
        pve_client_free(c);
}

/* PVE answers a bad token after 3 s: an EACCES then, not a timeout and no retry. */
static void test_bad_token_delayed(void **state)
{
        const char *ep[] = {F.endpoint};
        struct pve_client_opts o;
        struct pve_client *c;
        struct sh_error err = {0};
        unsigned long long t0, ms;

        (void)state;
        NEED_FAKE();
        ctl_ok("POST", "/control/config", "{\"auth_delay\":3}");
        opts_default(&o, ep);
        o.token_file = F.bad_token_file;
        o.connect_timeout_ms = 1000; /* shorter than the delay: it must not count */
        o.timeout_ms = 8000;
        c = client_with(&o);
        t0 = sh_now_ns();
        assert_int_equal(get_version(c, &err), -EACCES);
        ms = ms_since(t0);
        assert_true(ms >= 2800);
        assert_true(ms < 6000);
        assert_non_null(strstr(err.msg, "Authentication failed"));
        assert_int_equal(pve_client_calls(c), 1);
        assert_int_equal(calls_matching("GET", "/version"), 1);
        pve_client_free(c);
}

static void test_token_file(void **state)
{
        const char *ep[] = {F.endpoint};
        struct pve_client_opts o;
        struct pve_client *c = NULL;
        struct sh_error err = {0};
        char path[160];

        (void)state;
        NEED_FAKE();
        opts_default(&o, ep);
        snprintf(path, sizeof(path), "%s/no-such-token", F.dir);
        o.token_file = path;
        assert_int_equal(pve_client_new(&o, &c, &err), -ENOENT);
        assert_null(c);
        assert_non_null(strstr(err.msg, path));
        snprintf(path, sizeof(path), "%s/open-token", F.dir);
        write_file(path, TOKEN "\n", 0644);
        assert_int_equal(pve_client_new(&o, &c, &err), -EPERM);
        assert_null(c);
        assert_null(strstr(err.msg, "5b1f6c2e"));
        /* No token file at all. */
        o.token_file = NULL;
        assert_int_equal(pve_client_new(&o, &c, &err), -EINVAL);
}

static void test_options(void **state)
{
        const char *ep[] = {F.endpoint}, *bad[] = {"http://127.0.0.1:8006"},
                   *path[] = {"https://h:8006/x"};
        struct pve_client_opts o;
        struct pve_client *c = NULL;
        struct sh_error err = {0};

        (void)state;
        NEED_FAKE();
        opts_default(&o, ep);
        o.fingerprint = F.fingerprint; /* and a CA file */
        assert_int_equal(pve_client_new(&o, &c, &err), -EINVAL);
        o.fingerprint = NULL;
        o.insecure = true;
        assert_int_equal(pve_client_new(&o, &c, &err), -EINVAL);
        o.insecure = false;
        o.endpoints = bad;
        assert_int_equal(pve_client_new(&o, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "https://"));
        o.endpoints = path;
        assert_int_equal(pve_client_new(&o, &c, &err), -EINVAL);
        o.endpoints = ep;
        o.n_endpoints = 0;
        assert_int_equal(pve_client_new(&o, &c, &err), -EINVAL);
        o.n_endpoints = 1;
        o.ca_file = NULL;
        o.fingerprint = "AB:CD";
        assert_int_equal(pve_client_new(&o, &c, &err), -EINVAL);
        o.fingerprint = NULL;
        o.ca_file = "/nonexistent/ca.pem";
        assert_int_equal(pve_client_new(&o, &c, &err), -ENOENT);
        assert_null(c);
}

static void test_tls(void **state)
{
        char localhost[64], wrong_fp[128], two_fps[300];
        const char *ep[] = {F.endpoint}, *ep_name[] = {localhost};
        struct pve_client_opts o;
        struct pve_client *c;
        struct sh_error err = {0};

        (void)state;
        NEED_FAKE();
        snprintf(localhost, sizeof(localhost), "https://localhost:%d/", F.port);
        /* The cluster CA, by IP and by name (both in the certificate's SAN). */
        opts_default(&o, ep);
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), 0);
        pve_client_free(c);
        o.endpoints = ep_name;
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), 0);
        pve_client_free(c);

        /* Another CA: refused, once (not retried), and the token was never sent. */
        ctl_ok("POST", "/control/calls/reset", NULL);
        o.endpoints = ep;
        o.ca_file = F.other_ca;
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), -EPROTO);
        assert_non_null(strstr(err.msg, "GET /version"));
        assert_int_equal(pve_client_calls(c), 1);
        assert_int_equal(calls_matching("GET", "/version"), 0);
        pve_client_free(c);

        /* No CA at all: the system's store, which does not know the fake's. Never insecure. */
        o.ca_file = NULL;
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), -EPROTO);
        pve_client_free(c);

        /* The right fingerprint: no CA needed, no host name checked. */
        o.fingerprint = F.fingerprint;
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), 0);
        assert_int_equal(get_version(c, &err), 0); /* a reused connection passes the check too */
        pve_client_free(c);
        snprintf(two_fps, sizeof(two_fps), "%s, %s",
                 "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:"
                 "EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
                 F.fingerprint);
        o.fingerprint = two_fps;
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), 0);
        pve_client_free(c);

        /* A wrong one (the real one with its last byte changed): refused before any request. */
        ctl_ok("POST", "/control/calls/reset", NULL);
        snprintf(wrong_fp, sizeof(wrong_fp), "%s", F.fingerprint);
        wrong_fp[strlen(wrong_fp) - 1] = wrong_fp[strlen(wrong_fp) - 1] == '0' ? '1' : '0';
        o.fingerprint = wrong_fp;
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), -EPROTO);
        assert_non_null(strstr(err.msg, "pinned fingerprint"));
        assert_int_equal(pve_client_calls(c), 1);
        assert_int_equal(calls_matching("GET", "/version"), 0);
        pve_client_free(c);

        /* insecure: only when asked for. */
        o.fingerprint = NULL;
        o.insecure = true;
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), 0);
        pve_client_free(c);
}

/* The same failure from a new server (the body's message) and an old one (the reason). */
static void test_error_styles(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};
        const char *want = "GET /nodes/node1/lxc/99999/status/current: Configuration file "
                           "'nodes/node1/lxc/99999.conf' does not exist";

        (void)state;
        NEED_FAKE();
        c = client();
        assert_int_equal(
                pve_call(c, "GET", "/nodes/node1/lxc/99999/status/current", NULL, NULL, &err),
                -EIO);
        assert_string_equal(err.msg, want);
        ctl_ok("POST", "/control/config", "{\"old_errors\":true}");
        sh_err_clear(&err);
        assert_int_equal(
                pve_call(c, "GET", "/nodes/node1/lxc/99999/status/current", NULL, NULL, &err),
                -EIO);
        assert_string_equal(err.msg, want);

        /* An injected failure of two lines: the reason has the first only. */
        ctl_ok("POST", "/control/fail",
               "{\"method\":\"GET\",\"path\":\"/version\",\"status\":500,"
               "\"message\":\"first line\\nsecond line\",\"count\":1}");
        assert_int_equal(get_version(c, &err), -EIO);
        assert_string_equal(err.msg, "GET /version: first line");
        ctl_ok("POST", "/control/config", "{\"old_errors\":false}");
        ctl_ok("POST", "/control/fail",
               "{\"method\":\"GET\",\"path\":\"/version\",\"status\":500,"
               "\"message\":\"first line\\nsecond line\",\"count\":1}");
        assert_int_equal(get_version(c, &err), -EIO);
        assert_string_equal(err.msg, "GET /version: first line second line");
        assert_int_equal(get_version(c, &err), 0); /* count 1: once */
        /* 403 and 501 keep their own errnos. */
        ctl_ok("POST", "/control/fail",
               "{\"method\":\"GET\",\"path\":\"/version\",\"status\":403,"
               "\"message\":\"Permission check failed (/, Sys.Audit)\",\"count\":1}");
        assert_int_equal(get_version(c, &err), -EPERM);
        assert_non_null(strstr(err.msg, "Permission check failed"));
        assert_int_equal(pve_call(c, "GET", "/no/such/path", NULL, NULL, &err), -EOPNOTSUPP);
        pve_client_free(c);
}

static void test_param_errors(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};

        (void)state;
        NEED_FAKE();
        c = client();
        /* No ostemplate, an unknown parameter: 400 with an errors map. */
        assert_int_equal(pve_call(c, "POST", "/nodes/node1/lxc",
                                  (const char *const[]){"vmid", "4242", "bogus", "1", NULL}, NULL,
                                  &err),
                         -EINVAL);
        assert_non_null(strstr(err.msg, "POST /nodes/node1/lxc: Parameter verification failed"));
        assert_non_null(strstr(err.msg, "ostemplate: property is missing"));
        assert_non_null(strstr(err.msg, "bogus: property is not defined in schema"));
        assert_int_equal(pve_client_calls(c), 1);
        /* The same from an old server. */
        ctl_ok("POST", "/control/config", "{\"old_errors\":true}");
        assert_int_equal(pve_call(c, "GET", "/cluster/nextid",
                                  (const char *const[]){"vmid", "12", NULL}, NULL, &err),
                         -EINVAL);
        assert_non_null(strstr(err.msg, "vmid"));
        pve_client_free(c);
}

/* Values with '=', ',', '&', '+', spaces, newlines, UTF-8 and NUL survive the form encoding. */
static void test_form_encoding(void **state)
{
        static const char env[] = "A=1\0B=x y\0C=a,b=c&d";
        struct pve_client *c;
        struct sh_error err = {0};
        struct pve_reply rep = {0};
        char upid[PVE_UPID_MAX], id[16], path[64];
        const char *desc = "line one\nline two & a+b=c, 100% ü",
                   *net0 = "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1";
        const char *got = NULL;
        json_object *v = NULL;
        uint32_t vmid;

        (void)state;
        NEED_FAKE();
        c = client();
        ensure_template(c);
        vmid = next_vmid(c);
        assert_int_equal(create_ct(c, "node1", vmid, NULL, upid, sizeof(upid), &err), 0);
        assert_int_equal(pve_task_wait(c, upid, 10000, &err), 0);
        snprintf(id, sizeof(id), "%u", vmid);
        snprintf(path, sizeof(path), "/nodes/node1/lxc/%u/config", vmid);
        {
                const struct pve_param p[] = {
                        {"description", desc, strlen(desc)},
                        {"net0", net0, strlen(net0)},
                        {"env", env, sizeof(env) - 1},
                };

                if (pve_call_params(c, "PUT", path, p, SH_ARRAY_SIZE(p), NULL, &err) < 0)
                        fail_msg("PUT config: %s", err.msg);
        }
        assert_int_equal(pve_call(c, "GET", path, NULL, &rep, &err), 0);
        /* PVE writes the property string back its own way (key order, a MAC added). */
        assert_int_equal(sh_json_get_string(rep.data, "net0", "config", &got, NULL), 0);
        assert_non_null(strstr(got, "name=eth0,bridge=vmbr0,"));
        assert_non_null(strstr(got, ",gw=10.0.0.1,"));
        assert_non_null(strstr(got, ",ip=10.0.0.5/24"));
        assert_int_equal(sh_json_get_string(rep.data, "description", "config", &got, NULL), 0);
        assert_non_null(strstr(got, "line two & a+b=c, 100% ü"));
        assert_true(json_object_object_get_ex(rep.data, "env", &v));
        assert_int_equal(json_object_get_string_len(v), sizeof(env) - 1);
        assert_memory_equal(json_object_get_string(v), env, sizeof(env) - 1);
        pve_reply_done(&rep);
        /* DELETE carries its parameters in the query string. */
        assert_int_equal(pve_callf(c, "DELETE", (const char *const[]){"purge", "1", NULL}, &rep,
                                   &err, "/nodes/node1/lxc/%u", vmid),
                         0);
        assert_true(json_object_is_type(rep.data, json_type_string));
        assert_int_equal(pve_task_wait(c, json_object_get_string(rep.data), 10000, &err), 0);
        pve_reply_done(&rep);
        /* A body over PVE's 512 KiB is refused here. */
        {
                size_t big = 600 * 1024;
                char *s = malloc(big);
                const struct pve_param p[] = {{"description", s, big}};

                assert_non_null(s);
                memset(s, 'x', big);
                assert_int_equal(pve_call_params(c, "PUT", path, p, 1, NULL, &err), -E2BIG);
                free(s);
        }
        pve_client_free(c);
}

static void test_task_ok(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};
        char upid[PVE_UPID_MAX];
        struct pve_upid u;
        unsigned long before, first;
        uint32_t vmid;

        (void)state;
        NEED_FAKE();
        ctl_ok("POST", "/control/config", "{\"task_delay\":0.3}");
        c = client();
        ensure_template(c);
        vmid = next_vmid(c);
        assert_int_equal(create_ct(c, "node2", vmid, NULL, upid, sizeof(upid), &err), 0);
        assert_int_equal(pve_upid_parse(upid, &u), 0);
        assert_string_equal(u.node, "node2");
        assert_string_equal(u.type, "vzcreate");
        before = pve_client_calls(c);
        assert_int_equal(pve_task_wait(c, upid, 10000, &err), 0);
        /* 50, 100, 200, 400 ms: a 0.3 s task is seen done in a handful of polls. */
        assert_true(pve_client_calls(c) - before <= 4);
        first = pve_client_calls(c) - before;
        assert_true(first >= 2);
        /* The next task of the type is looked at first when the last one was seen done. */
        vmid = next_vmid(c);
        assert_int_equal(create_ct(c, "node2", vmid, NULL, upid, sizeof(upid), &err), 0);
        before = pve_client_calls(c);
        assert_int_equal(pve_task_wait(c, upid, 10000, &err), 0);
        assert_true(pve_task_hint(c, "vzcreate", 0) >= 300);
        assert_true(pve_client_calls(c) - before < first);
        assert_int_equal(pve_task_wait(c, "UPID:bogus", 1000, &err), -EINVAL);
        pve_client_free(c);
}

static void test_task_failed(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};
        char upid[PVE_UPID_MAX], want[256];
        uint32_t vmid;

        (void)state;
        NEED_FAKE();
        c = client();
        ensure_template(c);
        /* A template that is not there: the task fails, its log says why. */
        vmid = next_vmid(c);
        assert_int_equal(
                create_ct(c, "node1", vmid, "local:vztmpl/nope.tar", upid, sizeof(upid), &err), 0);
        assert_int_equal(pve_task_wait(c, upid, 10000, &err), -ENOENT);
        snprintf(want, sizeof(want),
                 "task vzcreate %u on node1 failed: unable to create CT %u - can't find file "
                 "'local:vztmpl/nope.tar' (log: ",
                 vmid, vmid);
        assert_non_null(strstr(err.msg, want));
        assert_true(calls_matching("GET", "/log") >= 1);

        /* An injected failure: exit status and the log lines before it. */
        ctl_ok("POST", "/control/task_fail",
               "{\"type\":\"vzcreate\",\"exitstatus\":\"injected trouble\",\"count\":1}");
        vmid = next_vmid(c);
        assert_int_equal(create_ct(c, "node1", vmid, NULL, upid, sizeof(upid), &err), 0);
        sh_err_clear(&err);
        assert_int_equal(pve_task_wait(c, upid, 10000, &err), -EIO);
        snprintf(want, sizeof(want), "task vzcreate %u on node1 failed: injected trouble", vmid);
        assert_non_null(strstr(err.msg, want));
        pve_client_free(c);
}

static void test_task_timeout(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};
        struct pve_reply rep = {0};
        char upid[PVE_UPID_MAX], *esc;
        const char *status = NULL;
        unsigned long long t0;
        uint32_t vmid;

        (void)state;
        NEED_FAKE();
        c = client();
        ensure_template(c);
        ctl_ok("POST", "/control/config", "{\"task_delay\":5}");
        vmid = next_vmid(c);
        assert_int_equal(create_ct(c, "node1", vmid, NULL, upid, sizeof(upid), &err), 0);
        t0 = sh_now_ns();
        assert_int_equal(pve_task_wait(c, upid, 400, &err), -ETIMEDOUT);
        assert_true(ms_since(t0) < 2000);
        assert_non_null(strstr(err.msg, "still running after 400 ms: stopped it"));
        assert_int_equal(calls_matching("DELETE", "/tasks/"), 1);
        /* The task is stopped now. */
        esc = pve_escape(upid);
        assert_int_equal(pve_callf(c, "GET", NULL, &rep, &err, "/nodes/node1/tasks/%s/status", esc),
                         0);
        assert_int_equal(sh_json_get_string(rep.data, "status", "task", &status, NULL), 0);
        assert_string_equal(status, "stopped");
        pve_reply_done(&rep);
        free(esc);
        pve_client_free(c);
}

static void test_node_unreachable(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};
        unsigned long calls;

        (void)state;
        NEED_FAKE();
        c = client();
        node_online("node2", false);
        assert_true(pve_node_available(c, "node2"));
        assert_int_equal(pve_call(c, "GET", "/nodes/node2/lxc", NULL, NULL, &err), -EHOSTUNREACH);
        assert_int_equal(pve_client_calls(c), 3); /* once and two retries */
        assert_int_equal(pve_client_retries(c), 2);
        assert_non_null(strstr(err.msg, "GET /nodes/node2/lxc"));
        assert_non_null(strstr(err.msg, "marked unavailable"));
        assert_false(pve_node_available(c, "node2"));
        assert_true(pve_node_available(c, "node1"));
        /* Marked: calls on it fail at once, others go on. */
        calls = pve_client_calls(c);
        assert_int_equal(pve_call(c, "GET", "/nodes/node2/lxc", NULL, NULL, &err), -EHOSTUNREACH);
        assert_non_null(strstr(err.msg, "unavailable"));
        assert_int_equal(pve_client_calls(c), calls);
        assert_int_equal(pve_call(c, "GET", "/nodes/node1/lxc", NULL, NULL, &err), 0);
        /* Back online and the mark expired: the next call probes it and clears the mark. */
        node_online("node2", true);
        usleep(450 * 1000);
        assert_true(pve_node_available(c, "node2"));
        assert_int_equal(pve_call(c, "GET", "/nodes/node2/lxc", NULL, NULL, &err), 0);
        assert_true(pve_node_available(c, "node2"));

        /* A single 595 is retried, and it leaves no mark. */
        ctl_ok("POST", "/control/fail",
               "{\"method\":\"GET\",\"path\":\"/nodes/node3/lxc\",\"status\":595,"
               "\"message\":\"No route to host\",\"count\":1}");
        calls = pve_client_calls(c);
        assert_int_equal(pve_call(c, "GET", "/nodes/node3/lxc", NULL, NULL, &err), 0);
        assert_int_equal(pve_client_calls(c) - calls, 2);
        assert_true(pve_node_available(c, "node3"));
        pve_client_free(c);
}

static void test_failover(void **state)
{
        char dead[64];
        const char *ep[] = {dead, F.endpoint};
        struct pve_client_opts o;
        struct pve_client *c;
        struct sh_error err = {0};
        int s;
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t alen = sizeof(a);

        (void)state;
        NEED_FAKE();
        /* A port nothing listens on: bind one, note it, close it. */
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
        close(s);
        snprintf(dead, sizeof(dead), "https://127.0.0.1:%d", ntohs(a.sin_port));
        opts_default(&o, ep);
        o.n_endpoints = 2;
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), 0);
        assert_int_equal(pve_client_calls(c), 2);
        /* The endpoint that answered is asked first from then on. */
        assert_int_equal(get_version(c, &err), 0);
        assert_int_equal(pve_client_calls(c), 3);
        pve_client_free(c);
        /* None answers: retried, then ECONNREFUSED naming the endpoint. */
        o.n_endpoints = 1;
        c = client_with(&o);
        assert_int_equal(get_version(c, &err), -ECONNREFUSED);
        assert_non_null(strstr(err.msg, dead));
        assert_int_equal(pve_client_calls(c), 3);
        pve_client_free(c);
}

/* A reply slower than the total timeout: ETIMEDOUT at that time, not retried (it was sent). */
static void test_timeout(void **state)
{
        const char *ep[] = {F.endpoint};
        struct pve_client_opts o;
        struct pve_client *c;
        struct sh_error err = {0};
        unsigned long long t0, ms;

        (void)state;
        NEED_FAKE();
        opts_default(&o, ep);
        o.timeout_ms = 500;
        c = client_with(&o);
        ctl_ok("POST", "/control/config", "{\"latency\":1.5}");
        t0 = sh_now_ns();
        assert_int_equal(get_version(c, &err), -ETIMEDOUT);
        ms = ms_since(t0);
        /* ETIMEDOUT at the timeout, not after the reply (1.5 s) nor a retry (2 x 500 ms):
         * the error text says which; the lower bound is the behaviour. */
        assert_true(ms >= 450);
        assert_non_null(strstr(err.msg, "GET /version: "));
        assert_non_null(strstr(err.msg, "no reply after 500 ms"));
        assert_int_equal(pve_client_calls(c), 1);
        ctl_ok("POST", "/control/config", "{\"latency\":0}");
        /* The handle whose request timed out serves the next one. */
        assert_int_equal(get_version(c, &err), 0);
        pve_client_free(c);
}

static void test_nextid(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};
        struct pve_reply rep = {0};
        uint32_t id = 0;

        (void)state;
        NEED_FAKE();
        c = client();
        /* PVE sends it as a string. */
        assert_int_equal(pve_call(c, "GET", "/cluster/nextid", NULL, &rep, &err), 0);
        assert_true(json_object_is_type(rep.data, json_type_string));
        pve_reply_done(&rep);
        assert_int_equal(pve_nextid(c, &id, &err), 0);
        assert_true(id >= 100);
        pve_client_free(c);
}

struct create_ctx {
        const char *node;
        unsigned tries;
        uint32_t first;
        char upid[PVE_UPID_MAX];
};

static int create_cb(struct pve_client *c, uint32_t vmid, void *userdata, struct sh_error *err)
{
        struct create_ctx *x = userdata;

        if (!x->tries++)
                x->first = vmid;
        return create_ct(c, x->node, vmid, NULL, x->upid, sizeof(x->upid), err);
}

static void test_nextid_race(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};
        struct create_ctx x = {.node = "node1"};
        uint32_t vmid = 0;

        (void)state;
        NEED_FAKE();
        c = client();
        ensure_template(c);
        ctl_ok("POST", "/control/nextid_stale", "{\"count\":1}");
        assert_int_equal(pve_create_with_nextid(c, 3, create_cb, &x, &vmid, &err), 0);
        assert_int_equal(x.tries, 2);
        assert_true(vmid != x.first);
        assert_int_equal(pve_task_wait(c, x.upid, 10000, &err), 0);
        /* Every try collides: EEXIST with PVE's words. */
        ctl_ok("POST", "/control/nextid_stale", "{\"count\":5}");
        x.tries = 0;
        assert_int_equal(pve_create_with_nextid(c, 2, create_cb, &x, &vmid, &err), -EEXIST);
        assert_int_equal(x.tries, 2);
        assert_non_null(strstr(err.msg, "already exists"));
        ctl_ok("POST", "/control/nextid_stale", "{\"count\":0}");
        pve_client_free(c);
}

/* The node the test expects: online, allowed, most free memory, from the fake's own list. */
static void expected_pick(struct pve_client *c, const char *skip1, const char *skip2, char *out,
                          size_t size)
{
        struct pve_reply rep = {0};
        struct sh_error err = {0};
        int64_t best = -1;

        out[0] = 0;
        assert_int_equal(pve_call(c, "GET", "/cluster/resources",
                                  (const char *const[]){"type", "node", NULL}, &rep, &err),
                         0);
        for (size_t i = 0; i < json_object_array_length(rep.data); i++) {
                json_object *o = json_object_array_get_idx(rep.data, i), *v;
                const char *node = NULL;
                int64_t maxmem = 0, mem = 0;

                assert_int_equal(sh_json_get_string(o, "node", "n", &node, NULL), 0);
                if (sh_streq(node, skip1) || sh_streq(node, skip2))
                        continue;
                assert_true(json_object_object_get_ex(o, "maxmem", &v));
                assert_int_equal(pve_json_int(v, &maxmem), 0);
                assert_true(json_object_object_get_ex(o, "mem", &v));
                assert_int_equal(pve_json_int(v, &mem), 0);
                if (maxmem - mem > best || (maxmem - mem == best && strcmp(node, out) < 0)) {
                        best = maxmem - mem;
                        snprintf(out, size, "%s", node);
                }
        }
        pve_reply_done(&rep);
}

static void test_node_pick(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};
        char want[64], *node = NULL;

        (void)state;
        NEED_FAKE();
        c = client();
        expected_pick(c, NULL, NULL, want, sizeof(want));
        assert_int_equal(pve_node_pick(c, NULL, &node, &err), 0);
        assert_string_equal(node, want);
        /* That one offline: the next best. */
        node_online(want, false);
        {
                char first[64];

                snprintf(first, sizeof(first), "%s", want);
                free(node);
                node = NULL;
                expected_pick(c, first, NULL, want, sizeof(want));
                assert_int_equal(pve_node_pick(c, NULL, &node, &err), 0);
                assert_string_equal(node, want);
                assert_string_not_equal(node, first);
                node_online(first, true);
        }
        free(node);
        node = NULL;
        /* Only node3 allowed. */
        assert_int_equal(pve_node_pick(c, (const char *const[]){"node3", NULL}, &node, &err), 0);
        assert_string_equal(node, "node3");
        free(node);
        node = NULL;
        /* Marked unavailable by this client: skipped too. */
        pve_node_mark_unavailable(c, "node3", "test");
        assert_int_equal(pve_node_pick(c, (const char *const[]){"node3", NULL}, &node, &err),
                         -EHOSTUNREACH);
        assert_non_null(strstr(err.msg, "'node3' is unreachable"));
        node_online("node1", false);
        assert_int_equal(
                pve_node_pick(c, (const char *const[]){"node1", "node3", NULL}, &node, &err),
                -EHOSTUNREACH);
        assert_non_null(strstr(err.msg, "'node1' is offline"));
        assert_int_equal(pve_node_pick(c, (const char *const[]){"node9", NULL}, &node, &err),
                         -EHOSTUNREACH);
        assert_null(node);
        pve_client_free(c);
}

static void test_upload(void **state)
{
        struct pve_client *c;
        struct sh_error err = {0};
        struct pve_reply rep = {0};
        char path[128];
        bool found = false;
        int fd;

        (void)state;
        NEED_FAKE();
        c = client();
        /* 3 MiB: bigger than any form body PVE takes, sent with a Content-Length. */
        snprintf(path, sizeof(path), "%s/big.tar", F.dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, 3 << 20), 0);
        close(fd);
        if (pve_upload(c, "node1", "local", "vztmpl", path, "runt-big.tar", 20000, &err) < 0)
                fail_msg("upload: %s", err.msg);
        assert_int_equal(pve_call(c, "GET", "/nodes/node1/storage/local/content",
                                  (const char *const[]){"content", "vztmpl", NULL}, &rep, &err),
                         0);
        for (size_t i = 0; i < json_object_array_length(rep.data); i++) {
                const char *volid = NULL;

                if (sh_json_get_string(json_object_array_get_idx(rep.data, i), "volid", "c", &volid,
                                       NULL) == 0 &&
                    strcmp(volid, "local:vztmpl/runt-big.tar") == 0)
                        found = true;
        }
        assert_true(found);
        pve_reply_done(&rep);
        snprintf(path, sizeof(path), "%s/missing.tar", F.dir);
        assert_int_equal(pve_upload(c, "node1", "local", "vztmpl", path, "m.tar", 0, &err),
                         -ENOENT);
        pve_client_free(c);
}

#define THREADS 8
#define PER     15

static void *hammer(void *arg)
{
        struct pve_client *c = arg;
        long bad = 0;

        for (int i = 0; i < PER; i++) {
                struct sh_error err = {0};
                struct pve_reply rep = {0};

                if (pve_call(c, "GET", i % 2 ? "/version" : "/nodes/node1/lxc", NULL, &rep, &err) <
                    0)
                        bad++;
                pve_reply_done(&rep);
        }
        return (void *)bad;
}

static void test_threads(void **state)
{
        pthread_t t[THREADS];
        struct pve_client *c;

        (void)state;
        NEED_FAKE();
        c = client();
        for (int i = 0; i < THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, hammer, c), 0);
        for (int i = 0; i < THREADS; i++) {
                void *bad = NULL;

                assert_int_equal(pthread_join(t[i], &bad), 0);
                assert_null(bad);
        }
        assert_int_equal(pve_client_calls(c), THREADS * PER);
        pve_client_free(c);
}

int main(void)
{
        const struct CMUnitTest t[] = {
                cmocka_unit_test_setup(test_call_ok, reset),
                cmocka_unit_test_setup(test_bad_token, reset),
                cmocka_unit_test_setup(test_bad_token_delayed, reset),
                cmocka_unit_test_setup(test_token_file, reset),
                cmocka_unit_test_setup(test_options, reset),
                cmocka_unit_test_setup(test_tls, reset),
                cmocka_unit_test_setup(test_error_styles, reset),
                cmocka_unit_test_setup(test_param_errors, reset),
                cmocka_unit_test_setup(test_upload, reset),
                cmocka_unit_test_setup(test_form_encoding, reset),
                cmocka_unit_test_setup(test_task_ok, reset),
                cmocka_unit_test_setup(test_task_failed, reset),
                cmocka_unit_test_setup(test_task_timeout, reset),
                cmocka_unit_test_setup(test_node_unreachable, reset),
                cmocka_unit_test_setup(test_failover, reset),
                cmocka_unit_test_setup(test_timeout, reset),
                cmocka_unit_test_setup(test_nextid, reset),
                cmocka_unit_test_setup(test_nextid_race, reset),
                cmocka_unit_test_setup(test_node_pick, reset),
                cmocka_unit_test_setup(test_threads, reset),
        };

        return cmocka_run_group_tests(t, start_fake, stop_fake);
}
