/* cri/audit.c: which calls are audited, the JSON line, and the file (modes, reopen, threads). */
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
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "audit.h"
#include "cri-internal.h"

static const struct cri_method *method(const char *name)
{
        for (size_t i = 0; i < cri_method_count(); i++)
                if (strcmp(cri_method_at(i)->name, name) == 0)
                        return cri_method_at(i);
        fail_msg("no method %s", name);
        return NULL;
}

/* The line for one call, parsed; asserts it is one JSON object ending in its only newline. */
static json_object *line_of(const char *name, const struct cri_peer *peer, const void *req,
                            const void *resp, int code, const char *msg)
{
        char *line = NULL;
        size_t len = 0;
        json_object *o;

        assert_int_equal(cri_audit_format(method(name), peer, req, resp, code, msg,
                                          1700000000123456789LL, 2500000, &line, &len),
                         0);
        assert_int_equal(strlen(line), len);
        assert_true(len > 2 && line[len - 1] == '\n');
        assert_null(memchr(line, '\n', len - 1));
        o = json_tokener_parse(line);
        assert_non_null(o);
        assert_true(json_object_is_type(o, json_type_object));
        free(line);
        return o;
}

static const char *str(json_object *o, const char *key)
{
        json_object *v = NULL;

        assert_true(json_object_object_get_ex(o, key, &v));
        assert_true(json_object_is_type(v, json_type_string));
        return json_object_get_string(v);
}

static int64_t num(json_object *o, const char *key)
{
        json_object *v = NULL;

        assert_true(json_object_object_get_ex(o, key, &v));
        assert_true(json_object_is_type(v, json_type_int));
        return json_object_get_int64(v);
}

static void test_table(void **state)
{
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(cri_audit_check_table(&err), 0);
}

/* Every method that may change something is audited, and no read is. */
static void test_every_mutating_method_audited(void **state)
{
        static const char *const quick_reads[] = {"Version", "Status", "RuntimeConfig",
                                                  "ListMetricDescriptors"};
        size_t audited = 0;

        (void)state;
        for (size_t i = 0; i < cri_method_count(); i++) {
                const struct cri_method *m = cri_method_at(i);
                bool read = m->read || m->walk || m->list_form || m->events;

                for (size_t k = 0; k < sizeof(quick_reads) / sizeof(quick_reads[0]); k++)
                        read = read || strcmp(m->name, quick_reads[k]) == 0;
                if (cri_audit_wants(m) == read)
                        fail_msg("%s: audited %d, a read %d", m->name, cri_audit_wants(m), read);
                audited += !read;
        }
        assert_int_equal(audited, 18);
        assert_false(cri_audit_wants(NULL));
}

static void test_run_pod_sandbox_line(void **state)
{
        Runtime__V1__RunPodSandboxRequest req = RUNTIME__V1__RUN_POD_SANDBOX_REQUEST__INIT;
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        Runtime__V1__PodSandboxMetadata md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
        Runtime__V1__RunPodSandboxResponse resp = RUNTIME__V1__RUN_POD_SANDBOX_RESPONSE__INIT;
        struct cri_peer peer = {.known = true, .uid = 1000, .gid = 1001, .pid = 4242};
        char longname[400];
        json_object *o;

        (void)state;
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        /* Quotes, a line break, a control byte, bad UTF-8 and good UTF-8. */
        md.name = "we\"b\\\n\x01\xff\xc3\xa9";
        md.namespace_ = longname;
        md.uid = "u-1";
        cfg.metadata = &md;
        req.config = &cfg;
        req.runtime_handler = "lxc";
        resp.pod_sandbox_id = "ab12";
        o = line_of("RunPodSandbox", &peer, &req, &resp, 0, NULL);
        assert_string_equal(str(o, "time"), "2023-11-14T22:13:20.123456Z");
        assert_string_equal(str(o, "method"), "RunPodSandbox");
        assert_int_equal(num(o, "uid"), 1000);
        assert_int_equal(num(o, "gid"), 1001);
        assert_int_equal(num(o, "pid"), 4242);
        assert_string_equal(str(o, "pod_id"), "ab12");
        assert_string_equal(str(o, "pod_name"), "we\"b\\\n\x01\xef\xbf\xbd\xc3\xa9");
        assert_int_equal(strlen(str(o, "pod_namespace")), 256 + 3); /* cut, then U+2026 */
        assert_string_equal(str(o, "pod_namespace") + 256, "\xe2\x80\xa6");
        assert_string_equal(str(o, "pod_uid"), "u-1");
        assert_string_equal(str(o, "runtime_handler"), "lxc");
        assert_string_equal(str(o, "code"), "OK");
        assert_string_equal(str(o, "message"), "");
        assert_int_equal(num(o, "duration_us"), 2500);
        json_object_put(o);
}

/* A failed call: no answer, so the new id is ""; an unknown peer is null. */
static void test_failed_call_and_unknown_peer(void **state)
{
        Runtime__V1__CreateContainerRequest req = RUNTIME__V1__CREATE_CONTAINER_REQUEST__INIT;
        Runtime__V1__ContainerConfig cfg = RUNTIME__V1__CONTAINER_CONFIG__INIT;
        Runtime__V1__ImageSpec img = RUNTIME__V1__IMAGE_SPEC__INIT;
        struct cri_peer unknown = {0};
        json_object *o, *v = NULL;

        (void)state;
        img.image = "busybox:latest";
        cfg.image = &img; /* no metadata, no sandbox_config: "" */
        req.config = &cfg;
        req.pod_sandbox_id = "p1";
        o = line_of("CreateContainer", &unknown, &req, NULL, 5, "pod p1 not found");
        assert_true(json_object_object_get_ex(o, "uid", &v));
        assert_null(v);
        assert_string_equal(str(o, "pod_id"), "p1");
        assert_string_equal(str(o, "container_id"), "");
        assert_string_equal(str(o, "container_name"), "");
        assert_string_equal(str(o, "image"), "busybox:latest");
        assert_string_equal(str(o, "pod_namespace"), "");
        assert_string_equal(str(o, "code"), "NOT_FOUND");
        assert_string_equal(str(o, "message"), "pod p1 not found");
        json_object_put(o);

        /* No request could be read at all. */
        o = line_of("StopContainer", NULL, NULL, NULL, 3, "StopContainer: malformed message");
        assert_string_equal(str(o, "container_id"), "");
        assert_string_equal(str(o, "code"), "INVALID_ARGUMENT");
        json_object_put(o);
}

/* An exec's arguments may hold secrets: only argv[0] and the count are logged. */
static void test_exec_arguments_not_logged(void **state)
{
        char *argv[] = {"sh", "-c", "mysql -psecret-token"};
        Runtime__V1__ExecSyncRequest es = RUNTIME__V1__EXEC_SYNC_REQUEST__INIT;
        Runtime__V1__ExecRequest ex = RUNTIME__V1__EXEC_REQUEST__INIT;
        char *line = NULL;
        size_t len;
        json_object *o;

        (void)state;
        es.container_id = ex.container_id = "c1";
        es.cmd = ex.cmd = argv;
        es.n_cmd = ex.n_cmd = 3;
        o = line_of("ExecSync", NULL, &es, NULL, 0, NULL);
        assert_string_equal(str(o, "cmd"), "sh");
        assert_int_equal(num(o, "argc"), 3);
        json_object_put(o);
        assert_int_equal(
                cri_audit_format(method("Exec"), NULL, &ex.base, NULL, 0, NULL, 0, 0, &line, &len),
                0);
        assert_null(strstr(line, "secret"));
        assert_null(strstr(line, "-c"));
        free(line);
        ex.n_cmd = 0;
        o = line_of("Exec", NULL, &ex, NULL, 0, NULL);
        assert_string_equal(str(o, "cmd"), "");
        assert_int_equal(num(o, "argc"), 0);
        json_object_put(o);
}

/* PullImage: the reference and what it resolved to, never the credentials. */
static void test_pull_image_has_no_auth(void **state)
{
        Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
        Runtime__V1__ImageSpec img = RUNTIME__V1__IMAGE_SPEC__INIT;
        Runtime__V1__AuthConfig auth = RUNTIME__V1__AUTH_CONFIG__INIT;
        Runtime__V1__PullImageResponse resp = RUNTIME__V1__PULL_IMAGE_RESPONSE__INIT;
        char *line = NULL;
        size_t len;

        (void)state;
        img.image = "localhost:5000/app:1";
        auth.username = "user-x";
        auth.password = "pw-hunter2";
        auth.auth = "dXNlcjpwdw==";
        req.image = &img;
        req.auth = &auth;
        resp.image_ref = "sha256:0123";
        assert_int_equal(cri_audit_format(method("PullImage"), NULL, &req.base, &resp.base, 0, NULL,
                                          0, 0, &line, &len),
                         0);
        assert_non_null(strstr(line, "\"image\":\"localhost:5000/app:1\""));
        assert_non_null(strstr(line, "\"image_ref\":\"sha256:0123\""));
        assert_null(strstr(line, "user-x"));
        assert_null(strstr(line, "hunter2"));
        assert_null(strstr(line, "dXNlcjpwdw"));
        free(line);
}

static void test_port_forward_ports(void **state)
{
        int32_t ports[40];
        Runtime__V1__PortForwardRequest req = RUNTIME__V1__PORT_FORWARD_REQUEST__INIT;
        json_object *o, *v = NULL;

        (void)state;
        for (int i = 0; i < 40; i++)
                ports[i] = 8000 + i;
        req.pod_sandbox_id = "p2";
        req.port = ports;
        req.n_port = 40;
        o = line_of("PortForward", NULL, &req, NULL, 0, NULL);
        assert_string_equal(str(o, "pod_id"), "p2");
        assert_true(json_object_object_get_ex(o, "ports", &v));
        assert_int_equal(json_object_array_length(v), 32); /* the first 32 */
        assert_int_equal(json_object_get_int(json_object_array_get_idx(v, 31)), 8031);
        json_object_put(o);
}

/* ------------------------------------------------------------------ the file */

static char tmpdir[64];

static int setup_dir(void **state)
{
        (void)state;
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/runt-audit-XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
        char cmd[128];

        (void)state;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

static size_t count_lines(const char *path, const char *needle)
{
        FILE *f = fopen(path, "re");
        char line[8192];
        size_t n = 0;

        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
                json_object *o = json_tokener_parse(line);

                assert_non_null(o); /* every line whole */
                json_object_put(o);
                if (!needle || strstr(line, needle))
                        n++;
        }
        fclose(f);
        return n;
}

static void write_one(struct cri_audit *a, const char *id)
{
        Runtime__V1__StartContainerRequest req = RUNTIME__V1__START_CONTAINER_REQUEST__INIT;
        struct cri_peer peer = {.known = true, .uid = 0, .gid = 0, .pid = 1};

        req.container_id = (char *)id;
        cri_audit_call(a, method("StartContainer"), &peer, &req.base, NULL, 0, NULL, 1000);
}

static void test_file_mode_and_reopen(void **state)
{
        struct sh_error err = {0};
        struct cri_audit *a = NULL;
        char path[128], rotated[128];
        struct stat st;

        (void)state;
        snprintf(path, sizeof(path), "%s/sub/dir/audit.log", tmpdir);
        snprintf(rotated, sizeof(rotated), "%s.1", path);
        assert_int_equal(cri_audit_new(path, &a, &err), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        write_one(a, "before");
        assert_int_equal(rename(path, rotated), 0);
        write_one(a, "rotating"); /* still the old file, as logrotate expects */
        assert_int_equal(cri_audit_reopen(a, &err), 0);
        write_one(a, "after");
        assert_int_equal(count_lines(rotated, NULL), 2);
        assert_int_equal(count_lines(rotated, "rotating"), 1);
        assert_int_equal(count_lines(path, NULL), 1);
        assert_int_equal(count_lines(path, "\"container_id\":\"after\""), 1);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);

        /* A reopen that cannot open keeps the old file. */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(cri_audit_reopen(a, &err), -EISDIR);
        assert_non_null(strstr(err.msg, path));
        write_one(a, "kept");
        assert_int_equal(count_lines(rotated, NULL), 2);
        assert_int_equal(rmdir(path), 0);
        a = cri_audit_free(a);
        assert_null(a);
}

static void test_file_refusals(void **state)
{
        struct sh_error err = {0};
        struct cri_audit *a = NULL;
        char path[128], link[128];
        struct stat st;
        FILE *f;

        (void)state;
        assert_int_equal(cri_audit_new("relative/audit.log", &a, &err), -EINVAL);
        snprintf(path, sizeof(path), "%s/target", tmpdir);
        snprintf(link, sizeof(link), "%s/link", tmpdir);
        f = fopen(path, "we");
        assert_non_null(f);
        fclose(f);
        assert_int_equal(chmod(path, 0644), 0);
        assert_int_equal(symlink(path, link), 0);
        memset(&err, 0, sizeof(err));
        assert_int_equal(cri_audit_new(link, &a, &err), -ELOOP);
        assert_non_null(strstr(err.msg, "symlink"));
        assert_int_equal(cri_audit_new(tmpdir, &a, &err), -EISDIR);
        memset(&err, 0, sizeof(err));
        assert_int_equal(cri_audit_new("/dev/null", &a, &err), -EINVAL); /* mode untouched */
        assert_non_null(strstr(err.msg, "not a regular file"));
        /* An existing file with a wider mode is narrowed. */
        assert_int_equal(cri_audit_new(path, &a, &err), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        a = cri_audit_free(a);
        if (geteuid() == 0) {
                assert_int_equal(chown(path, 65534, 65534), 0);
                assert_int_equal(cri_audit_new(path, &a, &err), -EPERM);
                assert_non_null(strstr(err.msg, "owned by uid 65534"));
        }
}

#define THREADS 8
#define LINES   400

struct writer {
        struct cri_audit *a;
        int n;
};

static void *writer(void *arg)
{
        struct writer *w = arg;
        char id[32];

        for (int i = 0; i < LINES; i++) {
                snprintf(id, sizeof(id), "t%d-%d", w->n, i);
                write_one(w->a, id);
        }
        return NULL;
}

/* Lines of concurrent calls land whole, none lost, while the file is reopened under them. */
static void test_concurrent_lines(void **state)
{
        struct sh_error err = {0};
        struct cri_audit *a = NULL;
        struct writer w[THREADS];
        pthread_t t[THREADS];
        char path[128];

        (void)state;
        snprintf(path, sizeof(path), "%s/many.log", tmpdir);
        assert_int_equal(cri_audit_new(path, &a, &err), 0);
        for (int i = 0; i < THREADS; i++) {
                w[i] = (struct writer){a, i};
                assert_int_equal(pthread_create(&t[i], NULL, writer, &w[i]), 0);
        }
        for (int i = 0; i < 20; i++)
                assert_int_equal(cri_audit_reopen(a, &err), 0); /* same file: nothing moves */
        for (int i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        assert_int_equal(count_lines(path, NULL), THREADS * LINES);
        assert_int_equal(count_lines(path, "\"container_id\":\"t3-399\""), 1);
        cri_audit_free(a);
        cri_audit_call(NULL, method("StartContainer"), NULL, NULL, NULL, 0, NULL, 0); /* off */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_every_mutating_method_audited),
                cmocka_unit_test(test_run_pod_sandbox_line),
                cmocka_unit_test(test_failed_call_and_unknown_peer),
                cmocka_unit_test(test_exec_arguments_not_logged),
                cmocka_unit_test(test_pull_image_has_no_auth),
                cmocka_unit_test(test_port_forward_ports),
                cmocka_unit_test(test_file_mode_and_reopen),
                cmocka_unit_test(test_file_refusals),
                cmocka_unit_test(test_concurrent_lines),
        };

        return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
