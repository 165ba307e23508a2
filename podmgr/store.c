#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pod_store {
        sqlite3 *db;
};

/*
 * Schema migrations: entry i takes the database from version i to i+1. Append only;
 * never edit a step that has shipped.
 */
static const char *const migrations[] = {
        /* 0 -> 1: pods and containers */
        "CREATE TABLE sandboxes ("
        "  id TEXT PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE," /* the reserved CRI name: name_uid_namespace_attempt */
        "  pod_name TEXT NOT NULL,"
        "  pod_namespace TEXT NOT NULL,"
        "  pod_uid TEXT NOT NULL,"
        "  attempt INTEGER NOT NULL DEFAULT 0,"
        "  handler TEXT NOT NULL,"
        "  state TEXT NOT NULL," /* creating, ready, notready */
        "  created_ns INTEGER NOT NULL,"
        "  netns TEXT,"
        "  spec TEXT NOT NULL," /* the sandbox spec as JSON */
        "  status TEXT"         /* backend and network facts as JSON */
        ");"
        "CREATE TABLE containers ("
        "  id TEXT PRIMARY KEY,"
        "  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),"
        "  name TEXT NOT NULL UNIQUE,"
        "  state TEXT NOT NULL," /* creating, created, running, exited */
        "  created_ns INTEGER NOT NULL,"
        "  started_ns INTEGER NOT NULL DEFAULT 0,"
        "  finished_ns INTEGER NOT NULL DEFAULT 0,"
        "  exit_code INTEGER NOT NULL DEFAULT 0,"
        "  reason TEXT,"
        "  message TEXT,"
        "  image_ref TEXT,"
        "  image_id TEXT,"
        "  spec TEXT NOT NULL"
        ");"
        "CREATE INDEX containers_by_sandbox ON containers(sandbox_id);",
        /* 1 -> 2: images and the layer store */
        "CREATE TABLE images ("
        "  id TEXT PRIMARY KEY," /* config digest */
        "  size INTEGER NOT NULL,"
        "  config TEXT NOT NULL,"
        "  pinned INTEGER NOT NULL DEFAULT 0,"
        "  created_ns INTEGER NOT NULL"
        ");"
        "CREATE TABLE image_refs ("
        "  ref TEXT PRIMARY KEY," /* normalised tag or digest reference */
        "  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,"
        "  kind TEXT NOT NULL" /* tag, digest */
        ");"
        "CREATE TABLE layers ("
        "  chain_id TEXT PRIMARY KEY,"
        "  diff_id TEXT NOT NULL,"
        "  parent TEXT,"
        "  size INTEGER NOT NULL,"
        "  refs INTEGER NOT NULL DEFAULT 0"
        ");"
        "CREATE TABLE image_layers ("
        "  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,"
        "  idx INTEGER NOT NULL,"
        "  chain_id TEXT NOT NULL REFERENCES layers(chain_id),"
        "  PRIMARY KEY (image_id, idx)"
        ");",
        /*
         * 2 -> 3: the manifest digest of an image, for repo digests and verbose status; the
         * compressed blob digest of a layer, so a pull can tell a layer it has already.
         */
        "ALTER TABLE images ADD COLUMN manifest_digest TEXT;"
        "ALTER TABLE layers ADD COLUMN blob_digest TEXT;"
        "CREATE INDEX layers_by_blob ON layers(blob_digest);",
        /*
         * 3 -> 4: the layers each container's rootfs stands on, so the image GC keeps them
         * while the container exists even when its image is removed.
         */
        "CREATE TABLE container_layers ("
        "  container_id TEXT NOT NULL,"
        "  chain_id TEXT NOT NULL,"
        "  PRIMARY KEY (container_id, chain_id)"
        ");"
        "CREATE INDEX container_layers_by_chain ON container_layers(chain_id);"
        "CREATE INDEX containers_by_state ON containers(state);",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == POD_STORE_VERSION,
               "one migration per schema version");

static int db_err(sqlite3 *db, struct sh_error *err, const char *what)
{
        int rc = sqlite3_errcode(db);
        int code = rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT ? -EIO
                   : rc == SQLITE_BUSY || rc == SQLITE_LOCKED  ? -EBUSY
                   : rc == SQLITE_FULL                         ? -ENOSPC
                   : rc == SQLITE_CANTOPEN                     ? -EACCES
                   : rc == SQLITE_NOMEM                        ? -ENOMEM
                                                               : -EIO;

        return sh_err(err, code, "%s: %s", what, sqlite3_errmsg(db));
}

static int user_version(sqlite3 *db, int *ret)
{
        sqlite3_stmt *st;
        int rc;

        rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return -EIO;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                *ret = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return rc == SQLITE_ROW ? 0 : -EIO;
}

static int migrate(sqlite3 *db, int from, int to, struct sh_error *err)
{
        char sql[64];

        for (int v = from; v < to; v++) {
                if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
                        return db_err(db, err, "begin migration");
                snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
                if (sqlite3_exec(db, migrations[v], NULL, NULL, NULL) != SQLITE_OK ||
                    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
                        int r = db_err(db, err, "schema migration");

                        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                        return sh_err_prefix(err, r, "migrate %d -> %d", v, v + 1);
                }
                if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                        return db_err(db, err, "commit migration");
        }
        return 0;
}

int pod_store_open_version(const char *path, int version, struct pod_store **ret,
                           struct sh_error *err)
{
        struct pod_store *st;
        int cur = 0, r;

        if (version < 0 || version > POD_STORE_VERSION)
                return sh_err(err, -EINVAL, "no schema version %d", version);
        st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        if (sqlite3_open_v2(path, &st->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX |
                                    SQLITE_OPEN_NOFOLLOW,
                            NULL) != SQLITE_OK) {
                r = st->db ? db_err(st->db, err, path) : -ENOMEM;
                pod_store_close(st);
                return r;
        }
        sqlite3_busy_timeout(st->db, 5000);
        /*
         * WAL + synchronous=NORMAL: a commit survives a runtd crash (the case that matters:
         * pods outlive runtd); only a power cut may lose the last transactions.
         */
        if (sqlite3_exec(st->db,
                         "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                         "PRAGMA foreign_keys=ON; PRAGMA cache_size=-512;",
                         NULL, NULL, NULL) != SQLITE_OK) {
                r = db_err(st->db, err, path);
                pod_store_close(st);
                return sh_err_prefix(err, r, "open state store");
        }
        r = user_version(st->db, &cur);
        if (r < 0) {
                r = db_err(st->db, err, path);
                pod_store_close(st);
                return r;
        }
        if (cur > POD_STORE_VERSION) {
                pod_store_close(st);
                return sh_err(err, -EPROTO,
                              "%s: schema version %d is newer than this runtd (%d); "
                              "refusing to touch it",
                              path, cur, POD_STORE_VERSION);
        }
        if (cur < version) {
                r = migrate(st->db, cur, version, err);
                if (r < 0) {
                        pod_store_close(st);
                        return sh_err_prefix(err, r, "%s", path);
                }
        }
        *ret = st;
        return 0;
}

int pod_store_open(const char *path, struct pod_store **ret, struct sh_error *err)
{
        return pod_store_open_version(path, POD_STORE_VERSION, ret, err);
}

int pod_store_version(struct pod_store *st)
{
        int v = -1;

        if (user_version(st->db, &v) < 0)
                return -EIO;
        return v;
}

sqlite3 *pod_store_db(struct pod_store *st)
{
        return st->db;
}

struct pod_store *pod_store_close(struct pod_store *st)
{
        if (!st)
                return NULL;
        sqlite3_close_v2(st->db);
        free(st);
        return NULL;
}
