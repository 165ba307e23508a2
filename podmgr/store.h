#pragma once

#include <sqlite3.h>

#include "error.h"

/*
 * The state store: one SQLite database in WAL mode at <state-dir>/runt.db holding
 * sandboxes, containers, images, layers and name reservations. The schema is versioned
 * with PRAGMA user_version and migrated forward on open, one transaction per step.
 * A connection is opened in serialized mode, so one store may be used from many threads.
 */
struct pod_store;

/* The schema version this runtd writes. */
#define POD_STORE_VERSION 4

/*
 * Opens (creating if needed) the database at @path and migrates it to POD_STORE_VERSION.
 * -EPROTO if the file's schema is newer than this runtd knows; -EIO if it is not a runt
 * database or is corrupt.
 */
int pod_store_open(const char *path, struct pod_store **ret, struct sh_error *err);

/* As pod_store_open, but migrates only up to @version (tests use it to stage an old file). */
int pod_store_open_version(const char *path, int version, struct pod_store **ret,
                           struct sh_error *err);

/* The schema version of the open database. */
int pod_store_version(struct pod_store *st);

/* The connection, for the podmgr and imagemgr queries. */
sqlite3 *pod_store_db(struct pod_store *st);

/* Closes; NULL-safe; returns NULL. */
struct pod_store *pod_store_close(struct pod_store *st);
