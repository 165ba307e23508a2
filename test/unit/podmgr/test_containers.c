/*
 * podmgr/container.c over the fake backend: the image config merge (argv, env, working dir,
 * user and groups from the image's /etc/passwd and /etc/group), the state machine, name
 * reservation, refusals that leave nothing, and recovery of half-created containers.
 */
#include <errno.h>
#include <ftw.h>
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
#include <sqlite3.h>

#include "config.h"
#include "podmgr.h"
#include "store.h"

struct fixture {
        char base[64];
        char layer[128];
        struct runt_config cfg;
        struct pod_mgr *pm;
        char *sandbox;
};

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)type;
        (void)ftw;
        return remove(path);
}

static char *xjoin(const char *a, const char *b)
{
        char *s = NULL;

        assert_true(asprintf(&s, "%s/%s", a, b) > 0);
        return s;
}

static void write_file(const char *dir, const char *rel, const char *text)
{
        char *p = xjoin(dir, rel);
        FILE *f = fopen(p, "w");

        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        free(p);
}

static char **strv(const char *const *v)
{
        size_t n = 0;
        char **out;

        while (v && v[n])
                n++;
        out = calloc(n + 1, sizeof(char *));
        assert_non_null(out);
        for (size_t i = 0; i < n; i++)
                out[i] = strdup(v[i]);
        return out;
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct sh_error err = {0};
        struct be_sandbox_spec sb = {0};
        char *etc;

        if (!f)
                return -1;
        snprintf(f->base, sizeof(f->base), "/tmp/runt-podctr-XXXXXX");
        if (!mkdtemp(f->base) || runt_config_defaults(&f->cfg, &err) < 0)
                return -1;
        free(f->cfg.state_dir);
        free(f->cfg.root_dir);
        free(f->cfg.run_dir);
        f->cfg.state_dir = xjoin(f->base, "state");
        f->cfg.root_dir = xjoin(f->base, "root");
        f->cfg.run_dir = xjoin(f->base, "run");
        free(f->cfg.handlers[0].backend);
        f->cfg.handlers[0].backend = strdup("fake");
        /* An image layer with the files user resolution reads. */
        snprintf(f->layer, sizeof(f->layer), "%s/layer", f->base);
        assert_int_equal(mkdir(f->layer, 0755), 0);
        etc = xjoin(f->layer, "etc");
        assert_int_equal(mkdir(etc, 0755), 0);
        write_file(etc, "passwd",
                   "root:x:0:0:root:/root:/bin/sh\n"
                   "app::1000:1001:app user:/home/app:/bin/sh\n"
                   "broken line without fields\n"
                   "nobody:x:65534:65534::/:/bin/false\n");
        write_file(etc, "group", "root:x:0:\napp:x:1001:\nwheel:x:10:root,app\naudio:x:29:app\n");
        free(etc);
        assert_int_equal(pod_mgr_new(&f->cfg, &f->pm, &err), 0);
        /* A host-network pod: no CNI needed. */
        sb.name = strdup("pod");
        sb.uid = strdup("uid-1");
        sb.namespace = strdup("ns");
        sb.handler = strdup("");
        sb.hostname = strdup("pod-host");
        sb.log_directory = xjoin(f->base, "logs");
        sb.cgroup_parent = strdup("");
        sb.dns_servers = strv(NULL);
        sb.dns_searches = strv(NULL);
        sb.dns_options = strv(NULL);
        sb.ports = calloc(1, sizeof(*sb.ports));
        sb.labels = calloc(1, sizeof(*sb.labels));
        sb.annotations = calloc(1, sizeof(*sb.annotations));
        sb.sysctls = calloc(1, sizeof(*sb.sysctls));
        sb.net_mode = BE_NS_NODE;
        assert_int_equal(pod_sandbox_run(f->pm, &sb, &f->sandbox, &err), 0);
        be_sandbox_spec_done(&sb);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        pod_mgr_free(f->pm);
        free(f->sandbox);
        runt_config_done(&f->cfg);
        nftw(f->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

/* A request for container @name on the fixture's pod, image config given by the caller. */
struct req {
        struct be_container_spec spec;
        struct pod_ctr_request r;
        char *layers[2];
        char *chains[2];
};

static void req_init(struct fixture *f, struct req *q, const char *name)
{
        struct be_container_spec *s = &q->spec;

        memset(q, 0, sizeof(*q));
        s->name = strdup(name);
        s->image_ref = strdup("example.test/app:1");
        s->log_path = strdup("");
        s->labels = calloc(1, sizeof(*s->labels));
        s->annotations = calloc(1, sizeof(*s->annotations));
        s->mounts = calloc(1, sizeof(*s->mounts));
        s->devices = calloc(1, sizeof(*s->devices));
        s->cap_add = strv(NULL);
        s->cap_drop = strv(NULL);
        s->seccomp_profile = strdup("");
        s->masked_paths = strv(NULL);
        s->readonly_paths = strv(NULL);
        s->pid_mode = BE_NS_CONTAINER;
        q->layers[0] = f->layer;
        q->chains[0] = "sha256:aaaa";
        q->r.sandbox_id = f->sandbox;
        q->r.spec = s;
        q->r.log_path = "";
        q->r.username = "";
        q->r.image = (struct pod_image){
                .id = "sha256:1111",
                .layer_dirs = q->layers,
                .chain_ids = q->chains,
                .user = "",
                .working_dir = "",
                .stop_signal = "",
        };
}

static char *const ep[] = {"/entry", "e1", NULL};
static char *const cmd[] = {"/bin/cmd", "c1", NULL};
static char *const ienv[] = {"PATH=/img/bin", "A=image", "B=image", NULL};

static struct pod_container_info *create(struct fixture *f, struct req *q, char **ret_id)
{
        struct sh_error err = {0};
        struct pod_container_info *i = NULL;
        char *id = NULL;

        assert_int_equal(pod_container_create(f->pm, &q->r, &id, &err), 0);
        be_container_spec_done(&q->spec);
        assert_int_equal(pod_container_status(f->pm, id, &i, &err), 0);
        if (ret_id)
                *ret_id = id;
        else
                free(id);
        return i;
}

static void assert_argv(char **v, const char *const *want)
{
        size_t n = 0;

        for (; want[n]; n++) {
                assert_non_null(v[n]);
                assert_string_equal(v[n], want[n]);
        }
        assert_null(v[n]);
}

static void test_argv_merge(void **state)
{
        struct fixture *f = *state;
        struct req q;
        struct pod_container_info *i;
        char *const args[] = {"a1", "a2", NULL};
        char *const command[] = {"/own", NULL};

        /* Nothing in the request: Entrypoint + Cmd. */
        req_init(f, &q, "m1");
        q.r.image.entrypoint = ep;
        q.r.image.cmd = cmd;
        i = create(f, &q, NULL);
        assert_argv(i->spec.argv, (const char *[]){"/entry", "e1", "/bin/cmd", "c1", NULL});
        assert_string_equal(i->spec.cwd, "/");
        pod_container_info_free(i);
        /* args replace Cmd and keep Entrypoint. */
        req_init(f, &q, "m2");
        q.r.image.entrypoint = ep;
        q.r.image.cmd = cmd;
        q.r.args = args;
        i = create(f, &q, NULL);
        assert_argv(i->spec.argv, (const char *[]){"/entry", "e1", "a1", "a2", NULL});
        pod_container_info_free(i);
        /* command replaces both; args follow it. */
        req_init(f, &q, "m3");
        q.r.image.entrypoint = ep;
        q.r.image.cmd = cmd;
        q.r.command = command;
        q.r.args = args;
        i = create(f, &q, NULL);
        assert_argv(i->spec.argv, (const char *[]){"/own", "a1", "a2", NULL});
        pod_container_info_free(i);
        /* Only Cmd. */
        req_init(f, &q, "m4");
        q.r.image.cmd = cmd;
        i = create(f, &q, NULL);
        assert_argv(i->spec.argv, (const char *[]){"/bin/cmd", "c1", NULL});
        pod_container_info_free(i);
}

static void test_no_command_is_refused(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_container_info **l = NULL;
        size_t n = 9;
        struct req q;
        char *id = NULL;

        req_init(f, &q, "none");
        assert_int_equal(pod_container_create(f->pm, &q.r, &id, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "no command"));
        be_container_spec_done(&q.spec);
        assert_int_equal(pod_container_list(f->pm, NULL, &l, &n, &err), 0);
        assert_int_equal(n, 0);
        pod_container_info_list_free(l);
}

static bool has(char **v, const char *s)
{
        for (size_t i = 0; v && v[i]; i++)
                if (strcmp(v[i], s) == 0)
                        return true;
        return false;
}

static void test_env_and_workdir(void **state)
{
        struct fixture *f = *state;
        struct req q;
        struct pod_container_info *i;
        char *const envs[] = {"B=request", "C=request", NULL};

        req_init(f, &q, "env");
        q.r.image.cmd = cmd;
        q.r.image.env = ienv;
        q.r.image.working_dir = "/img/wd";
        q.r.envs = envs;
        i = create(f, &q, NULL);
        assert_true(has(i->spec.env, "PATH=/img/bin"));
        assert_true(has(i->spec.env, "A=image"));
        assert_true(has(i->spec.env, "B=request"));
        assert_false(has(i->spec.env, "B=image"));
        assert_true(has(i->spec.env, "C=request"));
        assert_true(has(i->spec.env, "HOSTNAME=pod-host"));
        assert_string_equal(i->spec.cwd, "/img/wd");
        pod_container_info_free(i);
        /* No PATH anywhere: the usual default. */
        req_init(f, &q, "nopath");
        q.r.image.cmd = cmd;
        q.r.working_dir = "/req";
        i = create(f, &q, NULL);
        assert_true(has(i->spec.env,
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
        assert_string_equal(i->spec.cwd, "/req");
        pod_container_info_free(i);
}

static void check_user(struct fixture *f, const char *name, void (*tweak)(struct req *),
                       unsigned uid, unsigned gid, const unsigned *groups, size_t n_groups)
{
        struct req q;
        struct pod_container_info *i;

        req_init(f, &q, name);
        q.r.image.cmd = cmd;
        tweak(&q);
        i = create(f, &q, NULL);
        assert_int_equal(i->spec.uid, uid);
        assert_int_equal(i->spec.gid, gid);
        assert_int_equal(i->spec.n_groups, n_groups);
        for (size_t k = 0; k < n_groups; k++)
                assert_int_equal(i->spec.groups[k], groups[k]);
        pod_container_info_free(i);
}

static void image_user_name(struct req *q)
{
        q->r.image.user = "app";
}

static void image_user_name_group(struct req *q)
{
        q->r.image.user = "app:wheel";
}

static void image_user_numeric(struct req *q)
{
        q->r.image.user = "1000:7";
}

static void request_uid(struct req *q)
{
        static const long long supp[] = {4242, 29};

        q->r.image.user = "nobody"; /* the request wins */
        q->r.has_uid = true;
        q->r.uid = 1000;
        q->r.supplemental_groups = supp;
        q->r.n_supplemental_groups = 2;
}

static void request_username_and_gid(struct req *q)
{
        q->r.username = "nobody";
        q->r.has_gid = true;
        q->r.gid = 5;
}

static void unknown_uid(struct req *q)
{
        q->r.has_uid = true;
        q->r.uid = 777;
}

static void no_user(struct req *q)
{
        (void)q;
}

static void test_user_resolution(void **state)
{
        struct fixture *f = *state;

        /* By name: uid and gid from passwd; groups: primary, then those listing the user. */
        check_user(f, "u1", image_user_name, 1000, 1001, (const unsigned[]){1001, 10, 29}, 3);
        check_user(f, "u2", image_user_name_group, 1000, 10, (const unsigned[]){10, 29}, 2);
        check_user(f, "u3", image_user_numeric, 1000, 7, (const unsigned[]){7, 10, 29}, 3);
        check_user(f, "u4", request_uid, 1000, 1001, (const unsigned[]){1001, 10, 29, 4242}, 4);
        check_user(f, "u5", request_username_and_gid, 65534, 5, (const unsigned[]){5}, 1);
        /* A uid the image does not know runs with gid 0. */
        check_user(f, "u6", unknown_uid, 777, 0, (const unsigned[]){0}, 1);
        /* No user anywhere: root, with the groups /etc/group lists root in. */
        check_user(f, "u7", no_user, 0, 0, (const unsigned[]){0, 10}, 2);
}

static void image_home(struct req *q)
{
        static char *const env[] = {"PATH=/bin", "HOME=/from-image", NULL};

        q->r.image.user = "app";
        q->r.image.env = env;
}

static void request_home(struct req *q)
{
        static char *const env[] = {"HOME=/from-request", NULL};

        q->r.image.user = "app";
        q->r.envs = env;
}

/* Creates @name with @tweak and checks the HOME its process gets. */
static void check_home(struct fixture *f, const char *name, void (*tweak)(struct req *),
                       const char *home)
{
        struct req q;
        struct pod_container_info *i;
        size_t n = 0;

        req_init(f, &q, name);
        q.r.image.cmd = cmd;
        tweak(&q);
        i = create(f, &q, NULL);
        for (size_t k = 0; i->spec.env[k]; k++)
                if (strncmp(i->spec.env[k], "HOME=", 5) == 0) {
                        assert_string_equal(i->spec.env[k] + 5, home);
                        n++;
                }
        assert_int_equal(n, 1);
        pod_container_info_free(i);
}

static void test_home(void **state)
{
        struct fixture *f = *state;

        /* As runc: the passwd entry's, "/" without an entry. */
        check_home(f, "h1", image_user_name, "/home/app");
        check_home(f, "h2", request_uid, "/home/app");
        check_home(f, "h3", request_username_and_gid, "/");
        check_home(f, "h4", unknown_uid, "/");
        check_home(f, "h5", no_user, "/root");
        check_home(f, "h6", image_user_numeric, "/home/app");
        /* The image's env or the request's wins. */
        check_home(f, "h7", image_home, "/from-image");
        check_home(f, "h8", request_home, "/from-request");
}

static void test_unknown_user_is_refused(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct req q;
        char *id = NULL;

        req_init(f, &q, "bad");
        q.r.image.cmd = cmd;
        q.r.username = "ghost";
        assert_int_equal(pod_container_create(f->pm, &q.r, &id, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "ghost"));
        be_container_spec_done(&q.spec);
        req_init(f, &q, "bad");
        q.r.image.cmd = cmd;
        q.r.image.user = "app:nogroup";
        assert_int_equal(pod_container_create(f->pm, &q.r, &id, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "nogroup"));
        be_container_spec_done(&q.spec);
}

static void test_hostile_paths_are_refused(void **state)
{
        struct fixture *f = *state;
        static const char *const bad_mounts[] = {"../etc", "/a/../../etc", "/", "relative", NULL};
        struct sh_error err = {0};
        struct req q;
        char *id = NULL;

        for (size_t k = 0; bad_mounts[k]; k++) {
                req_init(f, &q, "hostile");
                q.r.image.cmd = cmd;
                free(q.spec.mounts);
                q.spec.mounts = calloc(2, sizeof(*q.spec.mounts));
                q.spec.mounts[0].container_path = strdup(bad_mounts[k]);
                q.spec.mounts[0].host_path = strdup("/tmp");
                q.spec.n_mounts = 1;
                assert_int_equal(pod_container_create(f->pm, &q.r, &id, &err), -EINVAL);
                be_container_spec_done(&q.spec);
        }
        req_init(f, &q, "hostile");
        q.r.image.cmd = cmd;
        q.r.log_path = "../../escape.log";
        assert_int_equal(pod_container_create(f->pm, &q.r, &id, &err), -EINVAL);
        be_container_spec_done(&q.spec);
        req_init(f, &q, "hostile");
        q.r.image.cmd = cmd;
        q.r.working_dir = "/a/../b";
        assert_int_equal(pod_container_create(f->pm, &q.r, &id, &err), -EINVAL);
        be_container_spec_done(&q.spec);
        req_init(f, &q, "bad_name");
        q.r.image.cmd = cmd;
        assert_int_equal(pod_container_create(f->pm, &q.r, &id, &err), -EINVAL);
        be_container_spec_done(&q.spec);
        /* After all that, the name is free. */
        req_init(f, &q, "hostile");
        q.r.image.cmd = cmd;
        pod_container_info_free(create(f, &q, NULL));
}

static void test_lifecycle(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct be_exec_result res = {0};
        struct pod_container_info *i = NULL, **l = NULL;
        struct req q;
        char *id = NULL, *id2 = NULL;
        size_t n = 0;

        req_init(f, &q, "life");
        q.r.image.cmd = cmd;
        q.r.log_path = "life.log";
        i = create(f, &q, &id);
        assert_int_equal(i->state, POD_CTR_CREATED);
        assert_non_null(strstr(i->spec.log_path, "/logs/life.log"));
        pod_container_info_free(i);
        /* The name is held. */
        req_init(f, &q, "life");
        q.r.image.cmd = cmd;
        assert_int_equal(pod_container_create(f->pm, &q.r, &id2, &err), -EEXIST);
        assert_non_null(strstr(err.msg, id));
        be_container_spec_done(&q.spec);
        /* Exec only while running. */
        assert_int_equal(pod_container_exec_sync(f->pm, id, (const char *[]){"echo", "x", NULL}, 1,
                                                 &res, &err),
                         -EINVAL);
        assert_int_equal(pod_container_start(f->pm, id, &err), 0);
        assert_int_equal(pod_container_start(f->pm, id, &err), -EINVAL);
        assert_int_equal(pod_container_status(f->pm, id, &i, &err), 0);
        assert_int_equal(i->state, POD_CTR_RUNNING);
        assert_true(i->started_ns >= i->created_ns);
        pod_container_info_free(i);
        assert_int_equal(pod_container_exec_sync(f->pm, id, (const char *[]){"exit", "3", NULL}, 1,
                                                 &res, &err),
                         0);
        assert_int_equal(res.exit_code, 3);
        assert_string_equal(res.out, "3\n");
        be_exec_result_done(&res);
        /* List filters. */
        assert_int_equal(pod_container_list(f->pm,
                                            &(struct pod_container_filter){
                                                    .has_state = true,
                                                    .state = POD_CTR_RUNNING,
                                                    .sandbox_id = f->sandbox,
                                            },
                                            &l, &n, &err),
                         0);
        assert_int_equal(n, 1);
        pod_container_info_list_free(l);
        assert_int_equal(pod_container_list(f->pm,
                                            &(struct pod_container_filter){
                                                    .has_state = true,
                                                    .state = POD_CTR_EXITED,
                                            },
                                            &l, &n, &err),
                         0);
        assert_int_equal(n, 0);
        pod_container_info_list_free(l);
        /* Stop: TERM (the image has no StopSignal), recorded. */
        assert_int_equal(pod_container_stop(f->pm, id, 5, &err), 0);
        assert_int_equal(pod_container_status(f->pm, id, &i, &err), 0);
        assert_int_equal(i->state, POD_CTR_EXITED);
        assert_int_equal(i->exit_code, 128 + 15);
        pod_container_info_free(i);
        assert_int_equal(pod_container_stop(f->pm, id, 5, &err), 0); /* again: fine */
        assert_int_equal(pod_container_remove(f->pm, id, &err), 0);
        assert_int_equal(pod_container_status(f->pm, id, &i, &err), -ENOENT);
        assert_int_equal(pod_container_remove(f->pm, id, &err), 0); /* unknown: fine */
        /* The name is free again. */
        req_init(f, &q, "life");
        q.r.image.cmd = cmd;
        pod_container_info_free(create(f, &q, &id2));
        free(id);
        free(id2);
}

static void test_failed_start_is_start_error(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_container_info *i = NULL;
        char *const failing[] = {"fail", NULL};
        struct req q;
        char *id = NULL;

        req_init(f, &q, "fails");
        q.r.command = failing;
        pod_container_info_free(create(f, &q, &id));
        assert_int_equal(pod_container_start(f->pm, id, &err), -EIO);
        assert_int_equal(pod_container_status(f->pm, id, &i, &err), 0);
        assert_int_equal(i->state, POD_CTR_EXITED);
        assert_int_equal(i->exit_code, 128);
        assert_string_equal(i->reason, "StartError");
        assert_non_null(strstr(i->message, "told to fail"));
        pod_container_info_free(i);
        free(id);
}

static void test_sandbox_remove_takes_containers(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_container_info **l = NULL;
        struct req q;
        char *id = NULL;
        size_t n = 0;

        req_init(f, &q, "c1");
        q.r.image.cmd = cmd;
        pod_container_info_free(create(f, &q, &id));
        assert_int_equal(pod_container_start(f->pm, id, &err), 0);
        assert_int_equal(pod_sandbox_stop(f->pm, f->sandbox, &err), 0);
        assert_int_equal(pod_container_list(f->pm, NULL, &l, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_int_equal(l[0]->state, POD_CTR_EXITED);
        assert_int_equal(l[0]->exit_code, 137); /* no grace on a pod stop */
        pod_container_info_list_free(l);
        /* A container of a stopped pod cannot be made. */
        req_init(f, &q, "late");
        q.r.image.cmd = cmd;
        assert_int_equal(pod_container_create(f->pm, &q.r, &id, &err), -EINVAL);
        be_container_spec_done(&q.spec);
        assert_int_equal(pod_sandbox_remove(f->pm, f->sandbox, &err), 0);
        assert_int_equal(pod_container_list(f->pm, NULL, &l, &n, &err), 0);
        assert_int_equal(n, 0);
        pod_container_info_list_free(l);
        free(id);
}

static int count(sqlite3 *db, const char *sql)
{
        sqlite3_stmt *st = NULL;
        int n = -1;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return n;
}

static void test_recover_removes_half_created(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_container_info **l = NULL;
        struct pod_store *st = NULL;
        char *db = xjoin(f->cfg.state_dir, "runt.db"), *sql = NULL;
        size_t n = 9;

        assert_int_equal(pod_store_open(db, &st, &err), 0);
        assert_true(asprintf(&sql,
                             "INSERT INTO containers(id, sandbox_id, name, state, created_ns, "
                             "spec) VALUES ('%064d', '%s', 'half', 'creating', 1, '{}');"
                             "INSERT INTO container_layers VALUES ('%064d', 'sha256:aaaa');",
                             7, f->sandbox, 7) > 0);
        assert_int_equal(sqlite3_exec(pod_store_db(st), sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(pod_mgr_recover(f->pm, &err), 0);
        assert_int_equal(count(pod_store_db(st), "SELECT count(*) FROM containers"), 0);
        assert_int_equal(count(pod_store_db(st), "SELECT count(*) FROM container_layers"), 0);
        pod_store_close(st);
        assert_int_equal(pod_container_list(f->pm, NULL, &l, &n, &err), 0);
        assert_int_equal(n, 0);
        pod_container_info_list_free(l);
        free(sql);
        free(db);
}

/* Attach needs a running container, and a backend that has it (the fake has not). */
static void test_attach(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct req q;
        char *id = NULL;
        bool tty = false, in = false;
        int fd = -1;

        assert_int_equal(pod_container_attach(f->pm, "0123abcd", &fd, &tty, &in, &err), -ENOENT);
        req_init(f, &q, "att");
        q.r.image.cmd = cmd;
        pod_container_info_free(create(f, &q, &id));
        assert_int_equal(pod_container_attach(f->pm, id, &fd, &tty, &in, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "is not running"));
        assert_int_equal(pod_container_start(f->pm, id, &err), 0);
        assert_int_equal(pod_container_attach(f->pm, id, &fd, &tty, &in, &err), -EOPNOTSUPP);
        assert_non_null(strstr(err.msg, "attach"));
        assert_int_equal(fd, -1);
        free(id);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
                T(test_argv_merge),
                T(test_no_command_is_refused),
                T(test_env_and_workdir),
                T(test_user_resolution),
                T(test_home),
                T(test_unknown_user_is_refused),
                T(test_hostile_paths_are_refused),
                T(test_lifecycle),
                T(test_attach),
                T(test_failed_start_is_start_error),
                T(test_sandbox_remove_takes_containers),
                T(test_recover_removes_half_created),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
