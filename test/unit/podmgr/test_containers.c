/*
 * podmgr/container.c over the fake backend: the image config merge (argv, env, working dir,
 * user and groups from the image's /etc/passwd and /etc/group), the state machine, name
 * reservation, refusals that leave nothing, recovery of half-created containers, and stats
 * (the fake's figures, the CPU rate between readings, ListContainerStats' filters).
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
#include <time.h>
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
        f->cfg.stats_interval_s = 1; /* the collector's rounds, for the CPU rate */
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
                                                 -1, 0, &res, &err),
                         -EINVAL);
        assert_int_equal(pod_container_start(f->pm, id, &err), 0);
        assert_int_equal(pod_container_start(f->pm, id, &err), -EINVAL);
        assert_int_equal(pod_container_status(f->pm, id, &i, &err), 0);
        assert_int_equal(i->state, POD_CTR_RUNNING);
        assert_true(i->started_ns >= i->created_ns);
        pod_container_info_free(i);
        assert_int_equal(pod_container_exec_sync(f->pm, id, (const char *[]){"exit", "3", NULL}, 1,
                                                 -1, 0, &res, &err),
                         0);
        assert_int_equal(res.exit_code, 3);
        assert_string_equal(res.out, "3\n");
        assert_int_equal(res.dropped, 0);
        be_exec_result_done(&res);
        /* Output past the cap is dropped and counted. */
        assert_int_equal(pod_container_exec_sync(f->pm, id,
                                                 (const char *[]){"echo", "abcdef", NULL}, 1, -1, 4,
                                                 &res, &err),
                         0);
        assert_int_equal(res.out_len, 4);
        assert_string_equal(res.out, "abcd");
        assert_int_equal(res.dropped, 3);
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

/* A running, stopped or created container @name with label app=@app (may be NULL). */
static char *stats_ctr(struct fixture *f, const char *name, const char *app, long long mem_limit)
{
        struct sh_error err = {0};
        struct req q;
        char *id = NULL;

        req_init(f, &q, name);
        q.r.image.cmd = cmd;
        if (app) {
                q.spec.labels = realloc(q.spec.labels, 2 * sizeof(*q.spec.labels));
                q.spec.labels[0].key = strdup("app");
                q.spec.labels[0].value = strdup(app);
                q.spec.n_labels = 1;
        }
        q.spec.annotations = realloc(q.spec.annotations, 2 * sizeof(*q.spec.annotations));
        q.spec.annotations[0].key = strdup("note");
        q.spec.annotations[0].value = strdup(name);
        q.spec.n_annotations = 1;
        q.spec.resources.memory_limit = mem_limit;
        assert_int_equal(pod_container_create(f->pm, &q.r, &id, &err), 0);
        be_container_spec_done(&q.spec);
        return id;
}

static struct pod_container_stats *stats_of(struct fixture *f, const char *id)
{
        struct sh_error err = {0};
        struct pod_container_stats *s = NULL;

        assert_int_equal(pod_container_stats(f->pm, id, &s, &err), 0);
        assert_non_null(s);
        assert_true(s->has_stats);
        return s;
}

/* Waits up to 5 s for the collector's next round to sample container @id after @ts_ns. */
static struct pod_container_stats *stats_after(struct fixture *f, const char *id, long long ts_ns)
{
        for (int i = 0; i < 100; i++) {
                struct pod_container_stats *s = stats_of(f, id);

                if (s->sample.timestamp_ns > ts_ns)
                        return s;
                pod_container_stats_free(s);
                usleep(50000);
        }
        fail_msg("the collector did not sample %s again", id);
        return NULL;
}

static void test_stats_of_each_state(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_container_stats *s, *s2;
        char prefix[13];
        char *created = stats_ctr(f, "created", NULL, 0);
        char *running = stats_ctr(f, "running", NULL, 0);
        char *exited = stats_ctr(f, "exited", NULL, 0);

        assert_int_equal(pod_container_start(f->pm, running, &err), 0);
        assert_int_equal(pod_container_start(f->pm, exited, &err), 0);
        assert_int_equal(pod_container_stop(f->pm, exited, 0, &err), 0);

        /* Created: attributes, zero counters with their timestamps, the writable layer. */
        s = stats_of(f, created);
        assert_string_equal(s->info->id, created);
        assert_string_equal(s->info->spec.name, "created");
        assert_string_equal(s->info->spec.annotations[0].value, "created");
        assert_true(s->sample.cg.has_cpu && s->sample.cg.has_memory && s->has_writable_layer);
        assert_true(s->sample.timestamp_ns > 0);
        assert_int_equal(s->sample.cg.cpu_usage_ns, 0);
        assert_int_equal(s->sample.cg.mem_working_set, 0);
        assert_false(s->sample.has_cpu_rate);
        assert_false(s->sample.cg.has_mem_limit);
        assert_int_equal(s->writable_layer.used_bytes, 4096);
        assert_int_equal(s->writable_layer.inodes_used, 1);
        assert_string_equal(s->writable_layer.mountpoint, "/fake/containers");
        pod_container_stats_free(s);

        /* Running: the fake's memory and CPU (half a core), sampled once now. */
        s = stats_of(f, running);
        assert_int_equal(s->sample.cg.mem_usage, 64 << 20);
        assert_int_equal(s->sample.cg.mem_working_set, 48 << 20);
        assert_int_equal(s->sample.cg.mem_rss, 40 << 20);
        assert_int_equal(s->sample.cg.mem_pgfault, 1000);
        assert_int_equal(s->sample.cg.mem_pgmajfault, 10);
        assert_int_equal(s->sample.cg.pids, 1);
        assert_true(s->sample.cg.cpu_usage_ns > 0);
        /* Asked again at once: the same sample, from memory (the backend is not asked). */
        s2 = stats_of(f, running);
        assert_true(s2->sample.timestamp_ns == s->sample.timestamp_ns ||
                    s2->sample.has_cpu_rate); /* unless a round came between */
        pod_container_stats_free(s2);
        /* The collector's next round (stats.interval 1 s here) gives the rate. */
        s2 = stats_after(f, running, s->sample.timestamp_ns);
        assert_true(s2->sample.cg.cpu_usage_ns > s->sample.cg.cpu_usage_ns);
        assert_true(s2->sample.has_cpu_rate);
        assert_in_range(s2->sample.cpu_nano_cores, 495000000, 505000000);
        pod_container_stats_free(s);
        pod_container_stats_free(s2);

        /* Exited: it uses nothing now. */
        s = stats_of(f, exited);
        assert_int_equal(s->sample.cg.cpu_usage_ns, 0);
        assert_int_equal(s->sample.cg.mem_usage, 0);
        assert_true(s->sample.timestamp_ns > 0);
        pod_container_stats_free(s);

        /* By a unique prefix. */
        snprintf(prefix, sizeof(prefix), "%.12s", running);
        s = stats_of(f, prefix);
        assert_string_equal(s->info->id, running);
        pod_container_stats_free(s);

        /* Removed: NOT_FOUND naming it. */
        assert_int_equal(pod_container_remove(f->pm, running, &err), 0);
        s = NULL;
        assert_int_equal(pod_container_stats(f->pm, running, &s, &err), -ENOENT);
        assert_non_null(strstr(err.msg, running));
        assert_null(s);
        free(created);
        free(running);
        free(exited);
}

static long long pod_now_ns_for_tests(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A pod's stats: its cgroup (the fake: its running containers plus one process), eth0, and
 * every container of it. */
static void test_pod_stats(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_sandbox_stats *s = NULL, **l = NULL;
        char *a = stats_ctr(f, "a", "web", 0), *b = stats_ctr(f, "b", "web", 0);
        struct be_kv web = {"app", "web"};
        size_t n = 0;

        long long started;

        assert_int_equal(pod_container_start(f->pm, a, &err), 0);
        /* The pod's sample must be one taken after the start: a round may have read it
         * just before (the fake counts running containers). */
        started = pod_now_ns_for_tests();
        for (int i = 0; i < 100; i++) {
                assert_int_equal(pod_sandbox_stats(f->pm, f->sandbox, &s, &err), 0);
                if (s->sample.timestamp_ns > started)
                        break;
                s = pod_sandbox_stats_free(s);
                usleep(50000);
        }
        assert_non_null(s);
        assert_string_equal(s->info->id, f->sandbox);
        assert_true(s->has_stats);
        assert_true(s->sample.timestamp_ns > 0);
        assert_int_equal(s->sample.cg.mem_usage, 64 << 20);
        assert_int_equal(s->sample.cg.pids, 2);
        assert_int_equal(s->n_containers, 2);
        for (size_t i = 0; i < 2; i++)
                assert_true(s->containers[i]->has_stats);
        assert_null(s->containers[2]);
        pod_sandbox_stats_free(s);

        assert_int_equal(pod_sandbox_stats_list(f->pm, NULL, &l, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(l[0]->info->id, f->sandbox);
        pod_sandbox_stats_list_free(l);
        /* Filters: id prefix and labels (the pod has none, so a selector matches nothing). */
        assert_int_equal(pod_sandbox_stats_list(
                                 f->pm, &(struct pod_sandbox_filter){.labels = &web, .n_labels = 1},
                                 &l, &n, &err),
                         0);
        assert_int_equal(n, 0);
        pod_sandbox_stats_list_free(l);
        assert_int_equal(pod_sandbox_stats(f->pm, "0123456789abcdef", &s, &err), -ENOENT);
        /* A stopped pod is not measured. */
        assert_int_equal(pod_sandbox_stop(f->pm, f->sandbox, &err), 0);
        assert_int_equal(pod_sandbox_stats(f->pm, f->sandbox, &s, &err), -EAGAIN);
        assert_int_equal(pod_sandbox_stats_list(f->pm, NULL, &l, &n, &err), 0);
        assert_int_equal(n, 0);
        pod_sandbox_stats_list_free(l);
        free(a);
        free(b);
}

static void test_stats_unknown_and_bad_ids(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_container_stats *s = NULL;
        const char *nope = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

        assert_int_equal(pod_container_stats(f->pm, nope, &s, &err), -ENOENT);
        assert_non_null(strstr(err.msg, nope));
        sh_err_clear(&err);
        assert_int_equal(pod_container_stats(f->pm, "../etc", &s, &err), -EINVAL);
        assert_null(s);
}

static void test_stats_memory_limit(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_container_stats *s;
        char *id = stats_ctr(f, "limited", NULL, 100 << 20);

        s = stats_of(f, id);
        assert_true(s->sample.cg.has_mem_limit); /* not running: the spec's */
        assert_int_equal(s->sample.cg.mem_limit, 100 << 20);
        assert_int_equal(s->sample.cg.mem_working_set, 0);
        pod_container_stats_free(s);
        assert_int_equal(pod_container_start(f->pm, id, &err), 0);
        s = stats_of(f, id);
        assert_true(s->sample.cg.has_mem_limit);
        assert_int_equal(s->sample.cg.mem_limit, 100 << 20);
        assert_int_equal(s->sample.cg.mem_working_set, 48 << 20);
        pod_container_stats_free(s);
        free(id);
}

/*
 * ListContainerStats with @pf: returns how many it listed (at most @max) and clears each of
 * @ids (@max slots, NULL ones unused) that was among them.
 */
static size_t list_stats(struct fixture *f, const struct pod_container_filter *pf, const char **ids,
                         size_t max)
{
        struct sh_error err = {0};
        struct pod_container_stats **l = NULL;
        size_t n = 99;

        assert_int_equal(pod_container_stats_list(f->pm, pf, &l, &n, &err), 0);
        assert_true(n <= max);
        for (size_t i = 0; i < n; i++) {
                assert_non_null(l[i]);
                assert_true(l[i]->has_stats);
                for (size_t k = 0; k < max; k++)
                        if (ids[k] && strcmp(ids[k], l[i]->info->id) == 0)
                                ids[k] = NULL; /* found */
        }
        assert_null(l[n]);
        pod_container_stats_list_free(l);
        return n;
}

static void test_stats_list_and_filters(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        char *a = stats_ctr(f, "a", "web", 0), *b = stats_ctr(f, "b", "web", 0),
             *c = stats_ctr(f, "c", "db", 0);
        struct be_kv web = {"app", "web"}, db = {"app", "db"}, none = {"app", "none"};
        char prefix[13];
        const char *ids[3];

        assert_int_equal(pod_container_start(f->pm, b, &err), 0);
        /* Everything, created ones included (critest lists three freshly made ones). */
        ids[0] = a, ids[1] = b, ids[2] = c;
        assert_int_equal(list_stats(f, NULL, ids, 3), 3);
        assert_true(!ids[0] && !ids[1] && !ids[2]);
        /* By id, whole or a prefix. */
        ids[0] = b, ids[1] = ids[2] = NULL;
        assert_int_equal(list_stats(f, &(struct pod_container_filter){.id = b}, ids, 3), 1);
        assert_null(ids[0]);
        snprintf(prefix, sizeof(prefix), "%.12s", c);
        ids[0] = c;
        assert_int_equal(list_stats(f, &(struct pod_container_filter){.id = prefix}, ids, 3), 1);
        assert_null(ids[0]);
        /* By pod, whole or a prefix; another pod's id matches nothing. */
        assert_int_equal(list_stats(f, &(struct pod_container_filter){.sandbox_id = f->sandbox},
                                    (const char *[3]){0}, 3),
                         3);
        snprintf(prefix, sizeof(prefix), "%.6s", f->sandbox);
        assert_int_equal(list_stats(f, &(struct pod_container_filter){.sandbox_id = prefix},
                                    (const char *[3]){0}, 3),
                         3);
        prefix[0] = prefix[0] == 'f' ? 'e' : 'f';
        assert_int_equal(list_stats(f, &(struct pod_container_filter){.sandbox_id = prefix},
                                    (const char *[3]){0}, 3),
                         0);
        /* By labels; a state in the filter is not ListContainerStats' and is ignored. */
        ids[0] = a, ids[1] = b, ids[2] = NULL;
        assert_int_equal(list_stats(f,
                                    &(struct pod_container_filter){.labels = &web,
                                                                   .n_labels = 1,
                                                                   .has_state = true,
                                                                   .state = POD_CTR_EXITED},
                                    ids, 3),
                         2);
        assert_true(!ids[0] && !ids[1]);
        ids[0] = c;
        assert_int_equal(
                list_stats(f, &(struct pod_container_filter){.labels = &db, .n_labels = 1}, ids, 3),
                1);
        assert_null(ids[0]);
        assert_int_equal(list_stats(f,
                                    &(struct pod_container_filter){.labels = &none, .n_labels = 1},
                                    (const char *[3]){0}, 3),
                         0);
        /* Label and id together. */
        assert_int_equal(
                list_stats(f,
                           &(struct pod_container_filter){.id = c, .labels = &web, .n_labels = 1},
                           (const char *[3]){0}, 3),
                0);
        free(a);
        free(b);
        free(c);
}

/* What the event sink saw: kind, id, and the states in the copies it was handed. */
struct seen {
        size_t n;
        struct {
                enum pod_event_kind kind;
                char id[65];
                enum pod_state pod_state;
                size_t n_ctrs;
                enum pod_ctr_state ctr_state; /* of the container the event is about */
                int exit_code;
        } ev[16];
};

static void sink(void *data, const struct pod_event *ev)
{
        struct seen *s = data;

        if (s->n >= 16)
                return;
        s->ev[s->n].kind = ev->kind;
        snprintf(s->ev[s->n].id, sizeof(s->ev[s->n].id), "%s", ev->id);
        s->ev[s->n].pod_state = ev->sandbox->state;
        s->ev[s->n].n_ctrs = ev->n_containers;
        s->ev[s->n].ctr_state = (enum pod_ctr_state) - 1;
        for (size_t i = 0; i < ev->n_containers; i++)
                if (strcmp(ev->containers[i]->id, ev->id) == 0) {
                        s->ev[s->n].ctr_state = ev->containers[i]->state;
                        s->ev[s->n].exit_code = ev->containers[i]->exit_code;
                }
        s->n++;
}

/* Every change hands the sink one event, in order, with the pod and containers after it. */
static void test_events_in_order(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct seen s = {0};
        struct req q;
        char *id = NULL;
        size_t pods[3], ctrs[4];

        pod_mgr_set_event_sink(f->pm, sink, &s);
        req_init(f, &q, "ev");
        q.r.command = (char *const[]){"/bin/app", NULL};
        pod_container_info_free(create(f, &q, &id));
        pod_mgr_state_counts(f->pm, pods, ctrs);
        assert_int_equal(pods[POD_READY], 1);
        assert_int_equal(ctrs[POD_CTR_CREATED], 1);
        assert_int_equal(pod_container_start(f->pm, id, &err), 0);
        pod_mgr_state_counts(f->pm, pods, ctrs);
        assert_int_equal(ctrs[POD_CTR_RUNNING], 1);
        assert_int_equal(pod_container_stop(f->pm, id, 0, &err), 0);
        assert_int_equal(pod_container_stop(f->pm, id, 0, &err), 0); /* no second STOPPED */
        assert_int_equal(pod_container_remove(f->pm, id, &err), 0);
        assert_int_equal(pod_sandbox_stop(f->pm, f->sandbox, &err), 0);
        assert_int_equal(pod_sandbox_stop(f->pm, f->sandbox, &err), 0);
        assert_int_equal(pod_sandbox_remove(f->pm, f->sandbox, &err), 0);
        pod_mgr_state_counts(f->pm, pods, ctrs);
        assert_int_equal(pods[POD_READY] + pods[POD_NOTREADY] + ctrs[POD_CTR_EXITED], 0);

        assert_int_equal(s.n, 6);
        assert_int_equal(s.ev[0].kind, POD_EVENT_CREATED);
        assert_string_equal(s.ev[0].id, id);
        assert_int_equal(s.ev[0].ctr_state, POD_CTR_CREATED);
        assert_int_equal(s.ev[1].kind, POD_EVENT_STARTED);
        assert_int_equal(s.ev[1].ctr_state, POD_CTR_RUNNING);
        assert_int_equal(s.ev[2].kind, POD_EVENT_STOPPED);
        assert_int_equal(s.ev[2].ctr_state, POD_CTR_EXITED);
        assert_int_equal(s.ev[2].exit_code, 128 + 9); /* the fake: no grace, killed */
        assert_int_equal(s.ev[3].kind, POD_EVENT_DELETED);
        assert_int_equal(s.ev[3].n_ctrs, 0);
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(s.ev[i].pod_state, POD_READY);
        assert_int_equal(s.ev[4].kind, POD_EVENT_STOPPED);
        assert_string_equal(s.ev[4].id, f->sandbox);
        assert_int_equal(s.ev[4].pod_state, POD_NOTREADY);
        assert_int_equal(s.ev[5].kind, POD_EVENT_DELETED);
        assert_string_equal(s.ev[5].id, f->sandbox);
        assert_int_equal(s.ev[5].pod_state, POD_NOTREADY);
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
                T(test_stats_of_each_state),
                T(test_stats_unknown_and_bad_ids),
                T(test_stats_memory_limit),
                T(test_stats_list_and_filters),
                T(test_events_in_order),
                T(test_pod_stats),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
