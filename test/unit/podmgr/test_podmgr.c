/* podmgr/podmgr.c over the fake backend: start-up, RuntimeReady, info and fs usage. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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
#include <sqlite3.h>

#include "config.h"
#include "podmgr.h"
#include "store.h"

struct fixture {
        char base[64];
        struct runt_config cfg;
};

/* One handler to configure; @key NULL for none. */
struct hspec {
        const char *name;
        const char *backend;
        const char *key;
        const char *value;
};

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)type;
        (void)ftw;
        return remove(path);
}

static char *xstrdup(const char *s)
{
        char *c = strdup(s);

        assert_non_null(c);
        return c;
}

static char *xjoin(const char *a, const char *b)
{
        char *s = NULL;

        assert_true(asprintf(&s, "%s/%s", a, b) > 0);
        return s;
}

static void free_handlers(struct runt_config *cfg)
{
        for (size_t i = 0; i < cfg->n_handlers; i++) {
                struct runt_handler *h = &cfg->handlers[i];

                free(h->name);
                free(h->backend);
                for (size_t j = 0; j < h->n_options; j++) {
                        free(h->option_keys[j]);
                        free(h->option_values[j]);
                }
                free(h->option_keys);
                free(h->option_values);
        }
        free(cfg->handlers);
        cfg->handlers = NULL;
        cfg->n_handlers = 0;
}

/* Replaces the handlers of @cfg with @n malloc'd copies of @v, and the default with @def. */
static void set_handlers(struct runt_config *cfg, const struct hspec *v, size_t n, const char *def)
{
        free_handlers(cfg);
        cfg->handlers = calloc(n ? n : 1, sizeof(*cfg->handlers));
        assert_non_null(cfg->handlers);
        cfg->n_handlers = n;
        for (size_t i = 0; i < n; i++) {
                struct runt_handler *h = &cfg->handlers[i];

                h->name = xstrdup(v[i].name);
                h->backend = xstrdup(v[i].backend);
                if (v[i].key) {
                        h->n_options = 1;
                        h->option_keys = calloc(1, sizeof(char *));
                        h->option_values = calloc(1, sizeof(char *));
                        assert_non_null(h->option_keys);
                        assert_non_null(h->option_values);
                        h->option_keys[0] = xstrdup(v[i].key);
                        h->option_values[0] = xstrdup(v[i].value);
                }
        }
        free(cfg->default_runtime);
        cfg->default_runtime = xstrdup(def);
}

static int setup(void **state)
{
        static const struct hspec fake = {"fake", "fake", NULL, NULL};
        struct fixture *f = calloc(1, sizeof(*f));
        struct sh_error err = {0};

        if (!f)
                return -1;
        snprintf(f->base, sizeof(f->base), "/tmp/runt-podmgr-XXXXXX");
        if (!mkdtemp(f->base) || runt_config_defaults(&f->cfg, &err) < 0) {
                free(f);
                return -1;
        }
        free(f->cfg.state_dir);
        free(f->cfg.root_dir);
        free(f->cfg.run_dir);
        /* Not created yet: pod_mgr_new makes them. */
        f->cfg.state_dir = xjoin(f->base, "state");
        f->cfg.root_dir = xjoin(f->base, "root");
        f->cfg.run_dir = xjoin(f->base, "run");
        set_handlers(&f->cfg, &fake, 1, "fake");
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        runt_config_done(&f->cfg);
        /* Safe twice. */
        runt_config_done(&f->cfg);
        nftw(f->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

static void test_new_creates_dirs_and_store(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        struct pod_store *st = NULL;
        struct stat sb;
        char *p;

        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        assert_non_null(pm);
        assert_int_equal(err.code, 0);
        assert_int_equal(stat(f->cfg.state_dir, &sb), 0);
        assert_true(S_ISDIR(sb.st_mode));
        assert_int_equal(sb.st_mode & 07777, 0700);
        assert_int_equal(stat(f->cfg.root_dir, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0700);
        p = xjoin(f->cfg.root_dir, "containers");
        assert_int_equal(stat(p, &sb), 0);
        assert_true(S_ISDIR(sb.st_mode));
        free(p);
        assert_null(pod_mgr_free(pm));

        /* The store is at <state_dir>/runt.db, at the current schema. */
        p = xjoin(f->cfg.state_dir, "runt.db");
        assert_int_equal(pod_store_open_version(p, 0, &st, &err), 0);
        assert_int_equal(pod_store_version(st), POD_STORE_VERSION);
        pod_store_close(st);
        free(p);

        /* A second start on the same dirs works. */
        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        pod_mgr_free(pm);
}

static void test_condition_ready(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        struct sh_condition c;

        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        memset(&c, 'x', sizeof(c));
        pod_mgr_condition(pm, &c);
        assert_true(c.ok);
        assert_string_equal(c.reason, "");
        assert_string_equal(c.message, "");
        assert_null(pod_mgr_handler_error(pm, "fake"));
        assert_null(pod_mgr_handler_error(pm, ""));
        assert_null(pod_mgr_handler_error(pm, NULL));
        pod_mgr_free(pm);
}

static void test_condition_not_ready(void **state)
{
        static const struct hspec h = {"slow", "fake", "ready", "false"};
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        struct sh_condition c;

        set_handlers(&f->cfg, &h, 1, "slow");
        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        pod_mgr_condition(pm, &c);
        assert_false(c.ok);
        assert_string_equal(c.reason, "RuntimeNotReady");
        assert_non_null(strstr(c.message, "handler 'slow'"));
        assert_non_null(strstr(c.message, "fake backend configured not ready"));
        /* It started; it is just not ready. */
        assert_null(pod_mgr_handler_error(pm, "slow"));
        pod_mgr_free(pm);
}

static void test_ready_option_other_values(void **state)
{
        static const struct hspec h = {"f", "fake", "ready", "true"};
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        struct sh_condition c;

        set_handlers(&f->cfg, &h, 1, "f");
        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        pod_mgr_condition(pm, &c);
        assert_true(c.ok);
        pod_mgr_free(pm);
}

static void test_unknown_backend_not_default(void **state)
{
        static const struct hspec hs[] = {
                {"fake", "fake", NULL, NULL},
                {"vm", "proxmox", NULL, NULL},
        };
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        struct sh_condition c;
        const char *e;

        set_handlers(&f->cfg, hs, 2, "fake");
        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        e = pod_mgr_handler_error(pm, "vm");
        assert_non_null(e);
        assert_non_null(strstr(e, "proxmox"));
        assert_null(pod_mgr_handler_error(pm, "fake"));
        pod_mgr_condition(pm, &c);
        assert_true(c.ok);
        pod_mgr_free(pm);
}

static void test_unknown_backend_default(void **state)
{
        static const struct hspec hs[] = {
                {"vm", "proxmox", NULL, NULL},
                {"fake", "fake", NULL, NULL},
        };
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        struct sh_condition c;
        const char *e;

        set_handlers(&f->cfg, hs, 2, "vm");
        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        e = pod_mgr_handler_error(pm, "");
        assert_non_null(e);
        assert_non_null(strstr(e, "proxmox"));
        assert_ptr_equal(e, pod_mgr_handler_error(pm, "vm"));
        pod_mgr_condition(pm, &c);
        assert_false(c.ok);
        assert_string_equal(c.reason, "RuntimeNotReady");
        assert_non_null(strstr(c.message, "handler 'vm'"));
        assert_non_null(strstr(c.message, "proxmox"));
        pod_mgr_free(pm);
}

static void test_default_not_configured(void **state)
{
        static const struct hspec h = {"fake", "fake", NULL, NULL};
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        struct sh_condition c;

        set_handlers(&f->cfg, &h, 1, "lxc");
        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        pod_mgr_condition(pm, &c);
        assert_false(c.ok);
        assert_string_equal(c.reason, "RuntimeNotReady");
        assert_non_null(strstr(c.message, "'lxc'"));
        assert_non_null(strstr(c.message, "not configured"));
        assert_string_equal(pod_mgr_handler_error(pm, "nope"), "no such handler");
        assert_string_equal(pod_mgr_handler_error(pm, ""), "no such handler");
        pod_mgr_free(pm);
}

static void test_no_handlers(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        struct sh_condition c;
        json_object *o, *v = NULL;
        char *s;

        set_handlers(&f->cfg, NULL, 0, "fake");
        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        pod_mgr_condition(pm, &c);
        assert_false(c.ok);
        s = pod_mgr_info_json(pm);
        assert_non_null(s);
        o = json_tokener_parse(s);
        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "handlers", &v));
        assert_int_equal(json_object_array_length(v), 0);
        json_object_put(o);
        free(s);
        pod_mgr_free(pm);
}

static json_object *handler_json(json_object *handlers, const char *name)
{
        for (size_t i = 0; i < json_object_array_length(handlers); i++) {
                json_object *h = json_object_array_get_idx(handlers, i), *n = NULL;

                if (json_object_object_get_ex(h, "name", &n) &&
                    strcmp(json_object_get_string(n), name) == 0)
                        return h;
        }
        return NULL;
}

static void test_info_json(void **state)
{
        static const struct hspec hs[] = {
                {"fake", "fake", NULL, NULL},
                {"slow", "fake", "ready", "false"},
                {"vm", "proxmox", NULL, NULL},
        };
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        json_object *o, *hsj = NULL, *h, *v = NULL;
        char *s;

        set_handlers(&f->cfg, hs, 3, "fake");
        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        s = pod_mgr_info_json(pm);
        assert_non_null(s);
        o = json_tokener_parse(s);
        assert_non_null(o);
        assert_true(json_object_is_type(o, json_type_object));

        assert_true(json_object_object_get_ex(o, "defaultRuntime", &v));
        assert_string_equal(json_object_get_string(v), "fake");
        assert_true(json_object_object_get_ex(o, "stateSchema", &v));
        assert_int_equal(json_object_get_int(v), POD_STORE_VERSION);
        assert_true(json_object_object_get_ex(o, "handlers", &hsj));
        assert_int_equal(json_object_array_length(hsj), 3);

        h = handler_json(hsj, "fake");
        assert_non_null(h);
        assert_true(json_object_object_get_ex(h, "backend", &v));
        assert_string_equal(json_object_get_string(v), "fake");
        assert_true(json_object_object_get_ex(h, "ready", &v));
        assert_true(json_object_is_type(v, json_type_boolean));
        assert_true(json_object_get_boolean(v));
        assert_false(json_object_object_get_ex(h, "error", NULL));

        h = handler_json(hsj, "slow");
        assert_non_null(h);
        assert_true(json_object_object_get_ex(h, "ready", &v));
        assert_false(json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(h, "error", &v));
        assert_non_null(strstr(json_object_get_string(v), "not ready"));

        h = handler_json(hsj, "vm");
        assert_non_null(h);
        assert_true(json_object_object_get_ex(h, "backend", &v));
        assert_string_equal(json_object_get_string(v), "proxmox");
        assert_true(json_object_object_get_ex(h, "ready", &v));
        assert_false(json_object_get_boolean(v));
        assert_true(json_object_object_get_ex(h, "error", &v));
        assert_non_null(strstr(json_object_get_string(v), "proxmox"));

        json_object_put(o);
        free(s);
        pod_mgr_free(pm);
}

static void test_fs_usage_counts_file(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        struct sh_fs_usage before, after;
        char *dir, *path;
        char buf[4096];
        int fd;

        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), 0);
        dir = xjoin(f->cfg.root_dir, "containers");
        assert_int_equal(pod_mgr_fs_usage(pm, &before, &err), 0);
        assert_string_equal(before.mountpoint, dir);
        assert_true(before.inodes_used >= 1); /* the dir itself */
        assert_true(before.timestamp_ns > 0);

        path = xjoin(dir, "layer-file");
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        memset(buf, 0xa5, sizeof(buf));
        for (int i = 0; i < 64; i++)
                assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
        assert_int_equal(fsync(fd), 0);
        close(fd);

        assert_int_equal(pod_mgr_fs_usage(pm, &after, &err), 0);
        assert_int_equal(after.inodes_used, before.inodes_used + 1);
        assert_true(after.used_bytes >= before.used_bytes + 64 * sizeof(buf));
        assert_true(after.timestamp_ns >= before.timestamp_ns);

        /* A hard link is not counted twice. */
        {
                struct sh_fs_usage linked;
                char *link2 = xjoin(dir, "layer-link");

                assert_int_equal(link(path, link2), 0);
                assert_int_equal(pod_mgr_fs_usage(pm, &linked, &err), 0);
                assert_int_equal(linked.inodes_used, after.inodes_used);
                assert_int_equal(linked.used_bytes, after.used_bytes);
                free(link2);
        }
        free(path);
        free(dir);
        pod_mgr_free(pm);
}

static void test_state_dir_blocked(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        int fd, r;

        /* A regular file where the state dir should be. */
        fd = open(f->cfg.state_dir, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        r = pod_mgr_new(&f->cfg, &pm, &err);
        assert_int_equal(r, -ENOTDIR);
        assert_null(pm);
        assert_non_null(strstr(err.msg, f->cfg.state_dir));
}

static void test_store_too_new(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_mgr *pm = NULL;
        sqlite3 *db = NULL;
        char *p;

        assert_int_equal(mkdir(f->cfg.state_dir, 0700), 0);
        p = xjoin(f->cfg.state_dir, "runt.db");
        assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 7", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        assert_int_equal(pod_mgr_new(&f->cfg, &pm, &err), -EPROTO);
        assert_null(pm);
        assert_non_null(strstr(err.msg, "state store"));
        assert_non_null(strstr(err.msg, p));
        assert_non_null(strstr(err.msg, "7"));
        free(p);
}

static void test_free_null(void **state)
{
        (void)state;
        assert_null(pod_mgr_free(NULL));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
                T(test_new_creates_dirs_and_store),
                T(test_condition_ready),
                T(test_condition_not_ready),
                T(test_ready_option_other_values),
                T(test_unknown_backend_not_default),
                T(test_unknown_backend_default),
                T(test_default_not_configured),
                T(test_no_handlers),
                T(test_info_json),
                T(test_fs_usage_counts_file),
                T(test_state_dir_blocked),
                T(test_store_too_new),
                cmocka_unit_test(test_free_null),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
