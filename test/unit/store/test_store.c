/* podmgr/store.c: the SQLite state store, its schema and its migrations. */
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
#include <sqlite3.h>

#include "store.h"

struct fixture {
        char dir[64];
        char path[128];
};

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)type;
        (void)ftw;
        return remove(path);
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        snprintf(f->dir, sizeof(f->dir), "/tmp/runt-store-XXXXXX");
        if (!mkdtemp(f->dir)) {
                free(f);
                return -1;
        }
        snprintf(f->path, sizeof(f->path), "%s/runt.db", f->dir);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

/* Runs @sql, which must return one row of one column, and copies it as text into @buf. */
static void query_text(sqlite3 *db, const char *sql, char *buf, size_t size)
{
        sqlite3_stmt *st = NULL;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
}

static long long query_int(sqlite3 *db, const char *sql)
{
        sqlite3_stmt *st = NULL;
        long long v;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

static bool table_exists(sqlite3 *db, const char *name)
{
        sqlite3_stmt *st = NULL;
        bool found;

        assert_int_equal(sqlite3_prepare_v2(db,
                                            "SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                            "AND name = ?1",
                                            -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
        return found;
}

static const char *const v1_tables[] = {"sandboxes", "containers", NULL};
static const char *const v2_tables[] = {"images", "image_refs", "layers", "image_layers", NULL};

static int insert_sandbox(sqlite3 *db, const char *id, const char *name)
{
        sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(db,
                                "INSERT INTO sandboxes (id, name, pod_name, pod_namespace, "
                                "pod_uid, handler, state, created_ns, spec) VALUES "
                                "(?1, ?2, 'web', 'default', 'uid-1', 'lxc', 'ready', 42, '{}')",
                                -1, &st, NULL);
        assert_int_equal(rc, SQLITE_OK);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc;
}

static int insert_container(sqlite3 *db, const char *id, const char *sandbox_id)
{
        sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(db,
                                "INSERT INTO containers (id, sandbox_id, name, state, created_ns, "
                                "spec) VALUES (?1, ?2, ?1, 'created', 43, '{}')",
                                -1, &st, NULL);
        assert_int_equal(rc, SQLITE_OK);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, sandbox_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc;
}

/* Creates @path as a bare SQLite file whose user_version is @version, with @sql run in it. */
static void make_raw_db(const char *path, int version, const char *sql)
{
        sqlite3 *db = NULL;
        char pragma[64];

        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        if (sql)
                assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", version);
        assert_int_equal(sqlite3_exec(db, pragma, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

static void write_file(const char *path, const void *buf, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, len), (ssize_t)len);
        close(fd);
}

static void test_new_db(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;
        char mode[32];

        assert_int_equal(pod_store_open(f->path, &st, &err), 0);
        assert_non_null(st);
        assert_int_equal(err.code, 0);
        assert_int_equal(pod_store_version(st), POD_STORE_VERSION);
        assert_int_equal(POD_STORE_VERSION, 4);
        assert_true(table_exists(pod_store_db(st), "container_layers"));
        query_text(pod_store_db(st), "PRAGMA journal_mode", mode, sizeof(mode));
        assert_string_equal(mode, "wal");
        /* synchronous=NORMAL is 1 */
        assert_int_equal(query_int(pod_store_db(st), "PRAGMA synchronous"), 1);
        assert_int_equal(query_int(pod_store_db(st), "PRAGMA foreign_keys"), 1);
        for (size_t i = 0; v1_tables[i]; i++)
                assert_true(table_exists(pod_store_db(st), v1_tables[i]));
        for (size_t i = 0; v2_tables[i]; i++)
                assert_true(table_exists(pod_store_db(st), v2_tables[i]));
        assert_null(pod_store_close(st));
        assert_int_equal(access(f->path, F_OK), 0);
}

static void test_reopen_keeps_rows(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;
        char name[64];

        assert_int_equal(pod_store_open(f->path, &st, &err), 0);
        assert_int_equal(insert_sandbox(pod_store_db(st), "sb1", "web_uid-1_default_0"),
                         SQLITE_DONE);
        st = pod_store_close(st);

        assert_int_equal(pod_store_open(f->path, &st, &err), 0);
        assert_int_equal(pod_store_version(st), POD_STORE_VERSION);
        assert_int_equal(query_int(pod_store_db(st), "SELECT count(*) FROM sandboxes"), 1);
        query_text(pod_store_db(st), "SELECT name FROM sandboxes WHERE id = 'sb1'", name,
                   sizeof(name));
        assert_string_equal(name, "web_uid-1_default_0");
        /* The reserved name is unique. */
        assert_int_equal(insert_sandbox(pod_store_db(st), "sb2", "web_uid-1_default_0"),
                         SQLITE_CONSTRAINT);
        pod_store_close(st);
}

static void test_migrate_v1_to_v2(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;
        char name[64];

        assert_int_equal(pod_store_open_version(f->path, 1, &st, &err), 0);
        assert_int_equal(pod_store_version(st), 1);
        for (size_t i = 0; v1_tables[i]; i++)
                assert_true(table_exists(pod_store_db(st), v1_tables[i]));
        for (size_t i = 0; v2_tables[i]; i++)
                assert_false(table_exists(pod_store_db(st), v2_tables[i]));
        assert_int_equal(insert_sandbox(pod_store_db(st), "old", "old_uid_ns_0"), SQLITE_DONE);
        assert_int_equal(insert_container(pod_store_db(st), "c-old", "old"), SQLITE_DONE);
        st = pod_store_close(st);

        assert_int_equal(pod_store_open(f->path, &st, &err), 0);
        assert_int_equal(pod_store_version(st), POD_STORE_VERSION);
        query_text(pod_store_db(st), "SELECT name FROM sandboxes WHERE id = 'old'", name,
                   sizeof(name));
        assert_string_equal(name, "old_uid_ns_0");
        assert_int_equal(query_int(pod_store_db(st), "SELECT count(*) FROM containers"), 1);
        for (size_t i = 0; v2_tables[i]; i++)
                assert_true(table_exists(pod_store_db(st), v2_tables[i]));
        pod_store_close(st);
}

/* 2 -> 3 adds images.manifest_digest and keeps the image rows. */
static void test_migrate_v2_to_v3(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;
        char md[64];

        assert_int_equal(pod_store_open_version(f->path, 2, &st, &err), 0);
        assert_int_equal(sqlite3_exec(pod_store_db(st),
                                      "INSERT INTO images(id, size, config, created_ns) "
                                      "VALUES ('sha256:aa', 10, '{}', 1)",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        assert_int_not_equal(sqlite3_exec(pod_store_db(st), "SELECT manifest_digest FROM images",
                                          NULL, NULL, NULL),
                             SQLITE_OK);
        st = pod_store_close(st);
        assert_int_equal(pod_store_open(f->path, &st, &err), 0);
        assert_int_equal(pod_store_version(st), POD_STORE_VERSION);
        assert_int_equal(query_int(pod_store_db(st), "SELECT size FROM images"), 10);
        assert_int_equal(sqlite3_exec(pod_store_db(st),
                                      "UPDATE images SET manifest_digest = 'sha256:bb'", NULL, NULL,
                                      NULL),
                         SQLITE_OK);
        query_text(pod_store_db(st), "SELECT manifest_digest FROM images", md, sizeof(md));
        assert_string_equal(md, "sha256:bb");
        pod_store_close(st);
}

/* 3 -> 4 adds container_layers, which the image GC consults. */
static void test_migrate_v3_to_v4(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;

        assert_int_equal(pod_store_open_version(f->path, 3, &st, &err), 0);
        assert_false(table_exists(pod_store_db(st), "container_layers"));
        st = pod_store_close(st);
        assert_int_equal(pod_store_open(f->path, &st, &err), 0);
        assert_int_equal(pod_store_version(st), 4);
        assert_int_equal(sqlite3_exec(pod_store_db(st),
                                      "INSERT INTO container_layers(container_id, chain_id) "
                                      "VALUES ('c1', 'sha256:aa')",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        /* One row per layer and container. */
        assert_int_not_equal(sqlite3_exec(pod_store_db(st),
                                          "INSERT INTO container_layers(container_id, chain_id) "
                                          "VALUES ('c1', 'sha256:aa')",
                                          NULL, NULL, NULL),
                             SQLITE_OK);
        pod_store_close(st);
}

static void test_open_version_zero_and_older_request(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;

        /* Version 0 is an empty database: no tables. */
        assert_int_equal(pod_store_open_version(f->path, 0, &st, &err), 0);
        assert_int_equal(pod_store_version(st), 0);
        assert_false(table_exists(pod_store_db(st), "sandboxes"));
        st = pod_store_close(st);

        assert_int_equal(pod_store_open(f->path, &st, &err), 0);
        st = pod_store_close(st);
        /* Asking for an older version never downgrades. */
        assert_int_equal(pod_store_open_version(f->path, 1, &st, &err), 0);
        assert_int_equal(pod_store_version(st), POD_STORE_VERSION);
        pod_store_close(st);
}

static void test_open_version_out_of_range(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;

        assert_int_equal(pod_store_open_version(f->path, POD_STORE_VERSION + 1, &st, &err),
                         -EINVAL);
        assert_null(st);
        assert_non_null(strstr(err.msg, "5"));
        assert_int_equal(pod_store_open_version(f->path, -1, &st, &err), -EINVAL);
        assert_null(st);
        /* Nothing was created. */
        assert_int_equal(access(f->path, F_OK), -1);
}

static void test_newer_schema_refused(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;
        sqlite3 *db = NULL;

        make_raw_db(f->path, 99, "CREATE TABLE future (x)");
        assert_int_equal(pod_store_open(f->path, &st, &err), -EPROTO);
        assert_null(st);
        assert_int_equal(err.code, -EPROTO);
        assert_non_null(strstr(err.msg, f->path));
        assert_non_null(strstr(err.msg, "99"));
        assert_non_null(strstr(err.msg, "newer"));

        /* The file was left alone. */
        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        assert_int_equal(query_int(db, "PRAGMA user_version"), 99);
        assert_false(table_exists(db, "sandboxes"));
        sqlite3_close(db);
}

static void test_garbage_file(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;
        unsigned char junk[8192];
        uint32_t x = 0x12345678;

        for (size_t i = 0; i < sizeof(junk); i++) {
                x = x * 1103515245u + 12345u;
                junk[i] = (unsigned char)(x >> 16);
        }
        write_file(f->path, junk, sizeof(junk));
        assert_int_equal(pod_store_open(f->path, &st, &err), -EIO);
        assert_null(st);
        assert_int_equal(err.code, -EIO);
        assert_non_null(strstr(err.msg, f->path));
}

static void test_short_text_file(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;
        static const char text[] =
                "this is a text file that happens to sit where runt.db should be, and it is "
                "long enough to hold a header's worth of bytes: 0123456789abcdef0123456789\n";

        write_file(f->path, text, sizeof(text) - 1);
        assert_int_equal(pod_store_open(f->path, &st, &err), -EIO);
        assert_null(st);
        assert_true(err.msg[0] != '\0');
}

static void test_failed_migration_rolls_back(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;
        sqlite3 *db = NULL;

        /* A v1 file where step 1 -> 2 collides with a table of the same name as its third. */
        assert_int_equal(pod_store_open_version(f->path, 1, &st, &err), 0);
        assert_int_equal(
                sqlite3_exec(pod_store_db(st), "CREATE TABLE layers (x)", NULL, NULL, NULL),
                SQLITE_OK);
        st = pod_store_close(st);

        assert_int_equal(pod_store_open(f->path, &st, &err), -EIO);
        assert_null(st);
        assert_non_null(strstr(err.msg, "migrate 1 -> 2"));
        assert_non_null(strstr(err.msg, "layers"));
        assert_non_null(strstr(err.msg, f->path));

        /* The step is one transaction: the tables created before the failure are gone. */
        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        assert_int_equal(query_int(db, "PRAGMA user_version"), 1);
        assert_false(table_exists(db, "images"));
        assert_false(table_exists(db, "image_refs"));
        assert_true(table_exists(db, "sandboxes"));
        sqlite3_close(db);
}

static void test_foreign_keys_enforced(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;
        sqlite3 *db;

        assert_int_equal(pod_store_open(f->path, &st, &err), 0);
        db = pod_store_db(st);
        assert_int_equal(insert_container(db, "c1", "no-such-sandbox"), SQLITE_CONSTRAINT);
        assert_int_equal(sqlite3_extended_errcode(db), SQLITE_CONSTRAINT_FOREIGNKEY);
        assert_int_equal(query_int(db, "SELECT count(*) FROM containers"), 0);

        assert_int_equal(insert_sandbox(db, "sb1", "a_b_c_0"), SQLITE_DONE);
        assert_int_equal(insert_container(db, "c1", "sb1"), SQLITE_DONE);
        /* A sandbox with containers cannot be deleted from under them. */
        assert_int_equal(
                sqlite3_exec(db, "DELETE FROM sandboxes WHERE id = 'sb1'", NULL, NULL, NULL),
                SQLITE_CONSTRAINT);

        /* image_refs and image_layers go with their image. */
        assert_int_equal(sqlite3_exec(db,
                                      "INSERT INTO images (id, size, config, created_ns) VALUES "
                                      "('sha256:i', 1, '{}', 1);"
                                      "INSERT INTO layers (chain_id, diff_id, size) VALUES "
                                      "('sha256:l', 'sha256:d', 1);"
                                      "INSERT INTO image_refs VALUES ('x:latest', 'sha256:i', "
                                      "'tag');"
                                      "INSERT INTO image_layers VALUES ('sha256:i', 0, 'sha256:l');"
                                      "DELETE FROM images WHERE id = 'sha256:i';",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        assert_int_equal(query_int(db, "SELECT count(*) FROM image_refs"), 0);
        assert_int_equal(query_int(db, "SELECT count(*) FROM image_layers"), 0);
        assert_int_equal(query_int(db, "SELECT count(*) FROM layers"), 1);
        /* A ref to a missing image is refused. */
        assert_int_equal(sqlite3_exec(db,
                                      "INSERT INTO image_refs VALUES ('y', 'sha256:nope', 'tag')",
                                      NULL, NULL, NULL),
                         SQLITE_CONSTRAINT);
        pod_store_close(st);
}

static void test_two_handles_share_data(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *a = NULL, *b = NULL;

        assert_int_equal(pod_store_open(f->path, &a, &err), 0);
        assert_int_equal(pod_store_open(f->path, &b, &err), 0);
        assert_int_equal(insert_sandbox(pod_store_db(a), "sb1", "n_u_ns_0"), SQLITE_DONE);
        assert_int_equal(query_int(pod_store_db(b), "SELECT count(*) FROM sandboxes"), 1);
        pod_store_close(a);
        pod_store_close(b);
}

static void test_open_in_missing_dir(void **state)
{
        struct fixture *f = *state;
        struct sh_error err = {0};
        struct pod_store *st = NULL;
        char path[192];
        int r;

        snprintf(path, sizeof(path), "%s/missing/runt.db", f->dir);
        r = pod_store_open(path, &st, &err);
        assert_true(r < 0);
        assert_int_equal(err.code, r);
        assert_null(st);
        assert_non_null(strstr(err.msg, path));
}

static void test_close_null(void **state)
{
        (void)state;
        assert_null(pod_store_close(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_new_db, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reopen_keeps_rows, setup, teardown),
                cmocka_unit_test_setup_teardown(test_migrate_v1_to_v2, setup, teardown),
                cmocka_unit_test_setup_teardown(test_migrate_v3_to_v4, setup, teardown),
                cmocka_unit_test_setup_teardown(test_migrate_v2_to_v3, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_version_zero_and_older_request, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_open_version_out_of_range, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_garbage_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_short_text_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_migration_rolls_back, setup, teardown),
                cmocka_unit_test_setup_teardown(test_foreign_keys_enforced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_two_handles_share_data, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_in_missing_dir, setup, teardown),
                cmocka_unit_test(test_close_null),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
