/*
 * The image manager: pulls (pull.c), the layer store (unpack.c) and image records.
 *
 * Records live in the state store's images, image_refs, image_layers and layers tables
 * (schema in podmgr/store.c), over a connection of our own so our transactions never mix
 * with podmgr's. Layer directories are <root_dir>/layers/<chain id hex>; each is created by
 * renaming a finished extraction into place, so a directory that exists is complete.
 * layers.refs counts the images using a layer; a layer with no image and no pull holding it
 * is removed.
 */
#define SH_LOG_MODULE "imagemgr"
#include "imagemgr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include "cleanup.h"
#include "imagemgr-internal.h"
#include "imagemgr-pull.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "strutil.h"

#define MANIFEST_MAX    (8u << 20)
#define CONFIG_MAX      (16u << 20)
#define SCHEMA_REQUIRED 3

/* A pull in progress, shared by every caller asking for the same reference and creds. */
struct pull_flight {
        struct pull_flight *next;
        char *key;
        unsigned refs; /* the puller and its waiters */
        bool done;
        int rc;
        char *id;
        struct sh_error err;
};

/* A layer an unfinished pull relies on: garbage collection leaves it alone. */
struct layer_hold {
        struct layer_hold *next;
        img_digest chain;
        unsigned count;
};

struct img_mgr {
        const struct runt_config *cfg;
        const atomic_bool *stopping;
        char *layers_dir; /* <root_dir>/layers */
        char *tmp_dir;    /* <root_dir>/tmp: one pull-XXXXXX dir per pull in progress */
        char *trash_dir;  /* <root_dir>/trash: finished pulls' blobs, being deleted */
        sqlite3 *db;
        pthread_mutex_t lock; /* db, layer dirs, flights, holds */
        pthread_cond_t flight_done;
        struct pull_flight *flights;
        struct layer_hold *holds;
        /* Metrics (img_mgr_set_metrics, before serving; NULL: off), only added to after. */
        struct sh_counter *m_pull_bytes;
        struct sh_histogram *m_pull_seconds;
        struct sh_counter *m_pulls_ok, *m_pulls_failed;
        struct sh_gauge *m_pulls_running;
};

static const struct sh_metric_desc pull_bytes_desc = {
        .name = "runt_image_pull_bytes_total",
        .help = "Bytes image pulls fetched from registries (mirrors included), counted as they "
                "arrive.",
};

static const struct sh_metric_desc pull_seconds_desc = {
        .name = "runt_image_pull_duration_seconds",
        .help = "Time an image pull took (fetch and unpack), failed ones included.",
        .buckets = (const double[]){0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
        .n_buckets = 12,
};

static const struct sh_metric_desc pulls_desc = {
        .name = "runt_image_pulls_total",
        .help = "Image pulls runt did (concurrent pulls of one image count once), by result.",
        .labels = (const char *const[]){"result", NULL},
};

static const struct sh_metric_desc pulls_running_desc = {
        .name = "runt_image_pulls_in_progress",
        .help = "Image pulls in progress now.",
};

int img_mgr_set_metrics(struct img_mgr *im, struct sh_metrics *metrics, struct sh_error *err)
{
        int r;

        if (!metrics)
                return 0;
        if ((r = sh_metrics_counter(metrics, &pull_bytes_desc, NULL, &im->m_pull_bytes, err)) < 0 ||
            (r = sh_metrics_histogram(metrics, &pull_seconds_desc, NULL, &im->m_pull_seconds,
                                      err)) < 0 ||
            (r = sh_metrics_counter(metrics, &pulls_desc, (const char *const[]){"success", NULL},
                                    &im->m_pulls_ok, err)) < 0 ||
            (r = sh_metrics_counter(metrics, &pulls_desc, (const char *const[]){"failure", NULL},
                                    &im->m_pulls_failed, err)) < 0)
                return r;
        return sh_metrics_gauge(metrics, &pulls_running_desc, NULL, &im->m_pulls_running, err);
}

/* ---------------------------------------------------------------- db helpers */

static int db_fail(struct img_mgr *im, struct sh_error *err, const char *what)
{
        return sh_err(err, -EIO, "image store: %s: %s", what, sqlite3_errmsg(im->db));
}

static int db_exec(struct img_mgr *im, const char *sql, struct sh_error *err)
{
        if (sqlite3_exec(im->db, sql, NULL, NULL, NULL) != SQLITE_OK)
                return db_fail(im, err, sql);
        return 0;
}

/* Prepares @sql and binds the NULL-terminated text arguments in order. */
static sqlite3_stmt *db_prep(struct img_mgr *im, const char *sql, const char *const *args)
{
        sqlite3_stmt *st = NULL;

        if (sqlite3_prepare_v2(im->db, sql, -1, &st, NULL) != SQLITE_OK)
                return NULL;
        for (int i = 0; args && args[i]; i++)
                sqlite3_bind_text(st, i + 1, args[i], -1, SQLITE_TRANSIENT);
        return st;
}

static void db_finalizep(sqlite3_stmt **st)
{
        if (*st)
                sqlite3_finalize(*st);
        *st = NULL;
}
#define _cleanup_stmt_ _cleanup_(db_finalizep)

/* Runs a statement that returns no rows. */
static int db_run(struct img_mgr *im, const char *sql, const char *const *args,
                  struct sh_error *err)
{
        _cleanup_stmt_ sqlite3_stmt *st = db_prep(im, sql, args);

        if (!st || sqlite3_step(st) != SQLITE_DONE)
                return db_fail(im, err, sql);
        return 0;
}

/* The first column of the first row as a malloc'd string; -ENOENT when no row. */
static int db_text(struct img_mgr *im, const char *sql, const char *const *args, char **ret,
                   struct sh_error *err)
{
        _cleanup_stmt_ sqlite3_stmt *st = db_prep(im, sql, args);
        int rc;

        if (!st)
                return db_fail(im, err, sql);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return db_fail(im, err, sql);
        *ret = strdup((const char *)sqlite3_column_text(st, 0) ?: "");
        return *ret ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------- holds and gc */

static struct layer_hold *hold_find(struct img_mgr *im, const char *chain)
{
        for (struct layer_hold *h = im->holds; h; h = h->next)
                if (strcmp(h->chain, chain) == 0)
                        return h;
        return NULL;
}

/* Lock held. */
static int hold_add(struct img_mgr *im, const char *chain)
{
        struct layer_hold *h = hold_find(im, chain);

        if (!h) {
                h = calloc(1, sizeof(*h));
                if (!h)
                        return -ENOMEM;
                snprintf(h->chain, sizeof(h->chain), "%s", chain);
                h->next = im->holds;
                im->holds = h;
        }
        h->count++;
        return 0;
}

/* Lock held. */
static void hold_release(struct img_mgr *im, const char *chain)
{
        for (struct layer_hold **p = &im->holds; *p; p = &(*p)->next) {
                struct layer_hold *h = *p;

                if (strcmp(h->chain, chain) != 0)
                        continue;
                if (--h->count == 0) {
                        *p = h->next;
                        free(h);
                }
                return;
        }
}

static char *layer_dir(struct img_mgr *im, const char *chain)
{
        return sh_strdup_printf("%s/%s", im->layers_dir, chain + 7);
}

/* Recounts layers.refs from image_layers. Lock held. */
static int recount(struct img_mgr *im, struct sh_error *err)
{
        return db_exec(im,
                       "UPDATE layers SET refs = (SELECT count(*) FROM image_layers "
                       "WHERE image_layers.chain_id = layers.chain_id)",
                       err);
}

/* Removes layers no image, no container and no pull uses: directory first, then the row. Lock held.
 */
static void gc_layers(struct img_mgr *im)
{
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        char **victims = NULL;
        size_t n = 0, cap = 0;

        st = db_prep(im,
                     "SELECT chain_id FROM layers WHERE refs = 0 AND chain_id NOT IN "
                     "(SELECT chain_id FROM container_layers)",
                     NULL);
        while (st && sqlite3_step(st) == SQLITE_ROW) {
                const char *c = (const char *)sqlite3_column_text(st, 0);

                if (!c || hold_find(im, c))
                        continue;
                if (n + 1 >= cap) {
                        char **v = realloc(victims, (cap = cap ? cap * 2 : 8) * sizeof(*v));

                        if (!v)
                                break;
                        victims = v;
                }
                victims[n] = strdup(c);
                if (victims[n])
                        n++;
        }
        db_finalizep(&st);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *dir =
                        img_valid_digest(victims[i]) ? layer_dir(im, victims[i]) : NULL;
                int r = dir ? sh_rm_rf(dir) : 0;

                if (r < 0)
                        sh_log_warn_errno(r, "layer=%s remove failed, keeping its record: %m",
                                          victims[i]);
                else
                        db_run(im, "DELETE FROM layers WHERE chain_id = ?",
                               (const char *[]){victims[i], NULL}, NULL);
                free(victims[i]);
        }
        free(victims);
}

/* Clears what a crash may have left: temp dirs, unnamed layer dirs, unused layers. */
static int recover(struct img_mgr *im, struct sh_error *err)
{
        _cleanup_close_ int fd = open(im->layers_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;
        struct dirent *de;
        int r;

        r = sh_rm_rf(im->tmp_dir);
        if (r == 0)
                r = sh_rm_rf(im->trash_dir);
        if (r < 0)
                return sh_err(err, r, "clear '%s': %s", im->tmp_dir, strerror(-r));
        if (fd < 0)
                return sh_err(err, -errno, "open '%s': %s", im->layers_dir, strerror(errno));
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        while ((de = readdir(d))) {
                char chain[80];
                _cleanup_free_ char *path = NULL;
                _cleanup_free_ char *found = NULL;

                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                snprintf(chain, sizeof(chain), "sha256:%s", de->d_name);
                if (img_valid_digest(chain) &&
                    db_text(im, "SELECT chain_id FROM layers WHERE chain_id = ?",
                            (const char *[]){chain, NULL}, &found, NULL) == 0)
                        continue;
                path = sh_path_join(im->layers_dir, de->d_name);
                if (path && (r = sh_rm_rf(path)) < 0)
                        sh_log_warn_errno(r, "path=%s stray layer dir not removed: %m", path);
        }
        closedir(d);
        /* A record whose directory is gone cannot be used: drop it (its images are broken). */
        r = recount(im, err);
        if (r < 0)
                return r;
        gc_layers(im);
        return 0;
}

/* ---------------------------------------------------------------- lifecycle */

int img_mgr_new(const struct runt_config *cfg, const char *db_path, const atomic_bool *stopping,
                struct img_mgr **ret, struct sh_error *err)
{
        struct img_mgr *im = calloc(1, sizeof(*im));
        sqlite3_stmt *st = NULL;
        int r, version = -1;

        if (!im)
                return -ENOMEM;
        im->cfg = cfg;
        im->stopping = stopping;
        pthread_mutex_init(&im->lock, NULL);
        pthread_cond_init(&im->flight_done, NULL);
        im->layers_dir = sh_path_join(cfg->root_dir, "layers");
        im->tmp_dir = sh_path_join(cfg->root_dir, "tmp");
        im->trash_dir = sh_path_join(cfg->root_dir, "trash");
        if (!im->layers_dir || !im->tmp_dir || !im->trash_dir) {
                img_mgr_free(im);
                return -ENOMEM;
        }
        r = sh_mkdir_p(im->layers_dir, 0700);
        if (r < 0) {
                sh_err(err, r, "create layer store '%s': %s", im->layers_dir, strerror(-r));
                img_mgr_free(im);
                return r;
        }
        if (sqlite3_open_v2(db_path, &im->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW,
                            NULL) != SQLITE_OK) {
                r = sh_err(err, -EIO, "open state store '%s': %s", db_path,
                           im->db ? sqlite3_errmsg(im->db) : "out of memory");
                img_mgr_free(im);
                return r;
        }
        sqlite3_busy_timeout(im->db, 5000);
        sqlite3_exec(im->db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     NULL);
        if (sqlite3_prepare_v2(im->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (version < SCHEMA_REQUIRED) {
                r = sh_err(err, -EPROTO, "state store '%s' has schema %d, images need %d", db_path,
                           version, SCHEMA_REQUIRED);
                img_mgr_free(im);
                return r;
        }
        r = recover(im, err);
        if (r < 0) {
                img_mgr_free(im);
                return sh_err_prefix(err, r, "image store recovery");
        }
        *ret = im;
        return 0;
}

struct img_mgr *img_mgr_free(struct img_mgr *im)
{
        if (!im)
                return NULL;
        while (im->holds) {
                struct layer_hold *h = im->holds;

                im->holds = h->next;
                free(h);
        }
        if (im->db)
                sqlite3_close_v2(im->db);
        pthread_cond_destroy(&im->flight_done);
        pthread_mutex_destroy(&im->lock);
        free(im->layers_dir);
        free(im->tmp_dir);
        free(im->trash_dir);
        free(im);
        return NULL;
}

const char *img_mgr_layers_dir(struct img_mgr *im)
{
        return im->layers_dir;
}

int img_mgr_fs_usage(struct img_mgr *im, struct sh_fs_usage *ret, struct sh_error *err)
{
        return sh_fs_usage_scan(im->layers_dir, ret, err);
}

/* ---------------------------------------------------------------- import */

/* Keeps the message a JSON getter wrote and makes the failure a corrupt-image one. */
static int bad_image(struct sh_error *err)
{
        if (err)
                err->code = -EBADMSG;
        return -EBADMSG;
}

/* Reads a JSON blob of the dir: transport, checking its sha256 against @want (if given). */
static int read_blob_json(const char *path, size_t max, const char *want, const char *what,
                          char **ret_text, size_t *ret_len, json_object **ret_obj,
                          struct sh_error *err)
{
        _cleanup_free_ char *buf = NULL;
        img_digest got;
        size_t len = 0;
        int r;

        r = sh_read_file(path, max, &buf, &len);
        if (r < 0)
                return sh_err(err, r == -EFBIG ? -EBADMSG : r, "%s: %s", what,
                              r == -EFBIG ? "too large" : strerror(-r));
        if (want) {
                img_sha256(buf, len, got);
                if (strcmp(got, want) != 0)
                        return sh_err(err, -EUCLEAN, "%s: digest mismatch: expected %s, got %s",
                                      what, want, got);
        }
        r = sh_json_parse(buf, len, what, ret_obj, err);
        if (r < 0)
                return r == -EINVAL ? bad_image(err) : r;
        if (ret_len)
                *ret_len = len;
        *ret_text = TAKE_PTR(buf);
        return 0;
}

/*
 * Layer extraction jobs of one pull. An unpacker starts as soon as skopeo has renamed a
 * finished blob into the copy dir (so extraction overlaps the download), or, for blobs the
 * ticks missed, right after the copy; several run at once. Which blobs are layers is known
 * only from the manifest, written last: an unpacker given the config blob simply fails and
 * is discarded. Blobs of layers the store already has are never unpacked.
 */
struct unpack_job {
        char hex[65];     /* the blob, "" while its download is still under a temp name */
        char tmpname[64]; /* skopeo's temp name when started on a download in progress */
        ino_t ino;        /* the file's inode, to recognise it once renamed */
        char *tmpdir;     /* NULL once renamed into place, or for a blob not to unpack */
        struct img_unpack_proc proc;
        bool claimed; /* a layer of the manifest uses it (one job per layer, even for twins) */
};

struct pull_jobs {
        struct img_mgr *im;
        const char *copy_dir;
        int dirfd; /* copy_dir, once skopeo has made it */
        struct unpack_job *v;
        size_t n;
        size_t cap;
        size_t max_running;
};

/* The index of an unclaimed, started job for blob @hex, or SIZE_MAX. */
static size_t job_unclaimed(struct pull_jobs *j, const char *hex)
{
        for (size_t i = 0; i < j->n; i++)
                if (!j->v[i].claimed && j->v[i].tmpdir && strcmp(j->v[i].hex, hex) == 0)
                        return i;
        return SIZE_MAX;
}

static size_t jobs_running(const struct pull_jobs *j)
{
        size_t n = 0;

        for (size_t i = 0; i < j->n; i++)
                n += j->v[i].proc.pid > 0;
        return n;
}

/*
 * Adds a job for blob @hex, or for the download in progress @tmpname (then @hex is ""), and
 * starts its unpacker unless @skip. NULL on failure.
 */
static struct unpack_job *job_add_at(struct pull_jobs *j, const char *hex, const char *tmpname,
                                     ino_t ino, bool skip, struct sh_error *err)
{
        _cleanup_free_ char *blob = NULL;
        struct unpack_job *job;

        if (j->n == j->cap) {
                size_t cap = j->cap ? j->cap * 2 : 8;
                struct unpack_job *v = realloc(j->v, cap * sizeof(*v));

                if (!v)
                        return NULL;
                j->v = v;
                j->cap = cap;
        }
        job = &j->v[j->n++];
        *job = (struct unpack_job){.proc = {.fd = -EBADF}, .ino = ino};
        snprintf(job->hex, sizeof(job->hex), "%s", hex);
        snprintf(job->tmpname, sizeof(job->tmpname), "%s", tmpname ? tmpname : "");
        if (skip)
                return job;
        blob = sh_path_join(j->copy_dir, tmpname ? tmpname : hex);
        job->tmpdir = sh_strdup_printf("%s/.tmp-XXXXXX", j->im->layers_dir);
        if (!blob || !job->tmpdir || !mkdtemp(job->tmpdir)) {
                free(job->tmpdir);
                job->tmpdir = NULL;
                return NULL;
        }
        chmod(job->tmpdir, 0755); /* the overlay's root takes the top layer root's mode */
        if ((tmpname ? img_unpack_start_at(j->dirfd, tmpname, true, job->tmpdir, &job->proc, err)
                     : img_unpack_start(blob, job->tmpdir, &job->proc, err)) < 0) {
                sh_rm_rf(job->tmpdir);
                free(job->tmpdir);
                job->tmpdir = NULL;
                return NULL;
        }
        return job;
}

static struct unpack_job *job_add(struct pull_jobs *j, const char *hex, bool skip,
                                  struct sh_error *err)
{
        return job_add_at(j, hex, NULL, 0, skip, err);
}

/* Drops the unpacker of @job (its blob is a layer the store has, or not a layer). */
static void job_drop(struct unpack_job *job)
{
        img_unpack_abort(&job->proc);
        if (job->tmpdir)
                sh_rm_rf(job->tmpdir);
        free(job->tmpdir);
        job->tmpdir = NULL;
}

static void jobs_done(struct pull_jobs *j)
{
        for (size_t i = 0; i < j->n; i++) {
                img_unpack_abort(&j->v[i].proc);
                if (j->v[i].tmpdir)
                        sh_rm_rf(j->v[i].tmpdir);
                free(j->v[i].tmpdir);
        }
        free(j->v);
        if (j->dirfd >= 0)
                close(j->dirfd);
        *j = (struct pull_jobs){.dirfd = -EBADF};
}

/* Is there a layer record whose @column ("chain_id", "blob_digest") is @value? Takes the lock. */
static bool layer_row(struct img_mgr *im, const char *column, const char *value)
{
        _cleanup_free_ char *sql =
                sh_strdup_printf("SELECT chain_id FROM layers WHERE %s = ?", column);
        _cleanup_free_ char *found = NULL;
        int r;

        if (!sql)
                return false;
        pthread_mutex_lock(&im->lock);
        r = db_text(im, sql, (const char *[]){value, NULL}, &found, NULL);
        pthread_mutex_unlock(&im->lock);
        return r == 0;
}

/* Is @hex the blob of a layer the store has? */
static bool blob_known(struct img_mgr *im, const char *hex)
{
        _cleanup_free_ char *digest = sh_strdup_printf("sha256:%s", hex);

        return digest && layer_row(im, "blob_digest", digest);
}

/*
 * The skopeo watcher's tick: start unpackers on downloads in progress ("dir-put-blob*", the
 * dir: transport's temp files) and on finished blobs nobody unpacks yet; name the jobs whose
 * temp file has been renamed to its digest, and drop those whose blob the store already has.
 */
static int jobs_tick(void *data)
{
        struct pull_jobs *j = data;
        DIR *d;
        struct dirent *de;
        int fd;

        if (j->dirfd < 0) {
                j->dirfd = open(j->copy_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (j->dirfd < 0)
                        return 0;
        }
        fd = openat(j->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return 0;
        }
        while ((de = readdir(d))) {
                bool final = strlen(de->d_name) == 64 && img_is_hex(de->d_name, 64);
                bool temp = strncmp(de->d_name, "dir-put-blob", 12) == 0 &&
                            strlen(de->d_name) < sizeof(((struct unpack_job *)0)->tmpname);
                struct unpack_job *job = NULL;
                struct stat st;

                if ((!final && !temp) || fstatat(j->dirfd, de->d_name, &st, 0) < 0)
                        continue;
                for (size_t i = 0; i < j->n; i++)
                        if (j->v[i].ino == st.st_ino ||
                            (final && strcmp(j->v[i].hex, de->d_name) == 0))
                                job = &j->v[i];
                if (job && final && !job->hex[0]) {
                        snprintf(job->hex, sizeof(job->hex), "%s", de->d_name);
                        if (blob_known(j->im, job->hex))
                                job_drop(job);
                }
                if (job || jobs_running(j) >= j->max_running)
                        continue;
                if (temp)
                        job_add_at(j, "", de->d_name, st.st_ino, false, NULL);
                else
                        job_add_at(j, de->d_name, NULL, st.st_ino, blob_known(j->im, de->d_name),
                                   NULL);
        }
        closedir(d);
        return 0;
}

/* Moves the finished extraction of @job into place as layer @chain and records it. */
static int layer_commit(struct img_mgr *im, struct unpack_job *job, const char *chain,
                        const char *parent, const char *diff_id, const char *digest, uint64_t size,
                        struct sh_error *err)
{
        _cleanup_free_ char *final = layer_dir(im, chain);
        char sizebuf[32];
        int r = 0;

        if (!final)
                return -ENOMEM;
        snprintf(sizebuf, sizeof(sizebuf), "%llu", (unsigned long long)size);
        pthread_mutex_lock(&im->lock);
        if (rename(job->tmpdir, final) == 0) {
                free(job->tmpdir);
                job->tmpdir = NULL;
        } else if (errno != EEXIST && errno != ENOTEMPTY) {
                r = sh_err(err, -errno, "rename into '%s': %s", final, strerror(errno));
        } /* else another pull put it there first: keep theirs, ours goes with the job */
        if (r == 0)
                r = db_run(im,
                           "INSERT OR IGNORE INTO layers(chain_id, diff_id, parent, size, refs, "
                           "blob_digest) VALUES (?, ?, ?, ?, 0, ?)",
                           (const char *[]){chain, diff_id, parent ? parent : "", sizebuf, digest,
                                            NULL},
                           err);
        pthread_mutex_unlock(&im->lock);
        return r;
}

/* Does the store have layer @chain (record and directory)? */
static bool layer_present(struct img_mgr *im, const char *chain)
{
        _cleanup_free_ char *dir = layer_dir(im, chain);
        struct stat st;

        return dir && layer_row(im, "chain_id", chain) && stat(dir, &st) == 0 &&
               S_ISDIR(st.st_mode);
}

static bool ref_pinned(const struct runt_config *cfg, const char *tag_ref, const char *digest_ref)
{
        for (size_t i = 0; cfg->pinned_images && cfg->pinned_images[i]; i++) {
                _cleanup_free_ char *n = NULL;

                if (img_ref_normalize(cfg->pinned_images[i], &n, NULL) < 0)
                        continue;
                if (sh_streq(n, tag_ref) || sh_streq(n, digest_ref))
                        return true;
        }
        return false;
}

struct import {
        const struct img_ref *ref;
        char *id;
        img_digest manifest_digest;
        char *config_text;
        uint64_t size;
        size_t n;
        img_digest *chains;
};

/* Records the image and its references in one transaction. Lock held. */
static int commit(struct img_mgr *im, struct import *imp, struct sh_error *err)
{
        _cleanup_free_ char *tag_ref = NULL, *digest_ref = NULL;
        char size[32], created[32], idx[32];
        struct timespec ts;
        int r;

        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(size, sizeof(size), "%llu", (unsigned long long)imp->size);
        snprintf(created, sizeof(created), "%lld",
                 (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        if (!imp->ref->digest)
                tag_ref = sh_strdup_printf("%s:%s", imp->ref->name, imp->ref->tag);
        /* Pulled by digest: that digest is the one the kubelet asked for (maybe a list's). */
        digest_ref = sh_strdup_printf("%s@%s", imp->ref->name,
                                      imp->ref->digest ? imp->ref->digest : imp->manifest_digest);
        if ((!imp->ref->digest && !tag_ref) || !digest_ref)
                return -ENOMEM;

        r = db_exec(im, "BEGIN IMMEDIATE", err);
        if (r < 0)
                return r;
        r = db_run(im,
                   "INSERT INTO images(id, size, config, pinned, created_ns, manifest_digest) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET size = excluded.size, "
                   "config = excluded.config, manifest_digest = excluded.manifest_digest, "
                   "pinned = max(pinned, excluded.pinned)",
                   (const char *[]){imp->id, size, imp->config_text,
                                    ref_pinned(im->cfg, tag_ref, digest_ref) ? "1" : "0", created,
                                    imp->manifest_digest, NULL},
                   err);
        if (r == 0)
                r = db_run(im, "DELETE FROM image_layers WHERE image_id = ?",
                           (const char *[]){imp->id, NULL}, err);
        for (size_t i = 0; r == 0 && i < imp->n; i++) {
                snprintf(idx, sizeof(idx), "%zu", i);
                r = db_run(im, "INSERT INTO image_layers(image_id, idx, chain_id) VALUES (?, ?, ?)",
                           (const char *[]){imp->id, idx, imp->chains[i], NULL}, err);
        }
        if (r == 0 && tag_ref)
                r = db_run(im,
                           "INSERT OR REPLACE INTO image_refs(ref, image_id, kind) "
                           "VALUES (?, ?, 'tag')",
                           (const char *[]){tag_ref, imp->id, NULL}, err);
        if (r == 0)
                r = db_run(im,
                           "INSERT OR REPLACE INTO image_refs(ref, image_id, kind) "
                           "VALUES (?, ?, 'digest')",
                           (const char *[]){digest_ref, imp->id, NULL}, err);
        if (r == 0)
                r = recount(im, err);
        if (r == 0)
                r = db_exec(im, "COMMIT", err);
        if (r < 0)
                sqlite3_exec(im->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

static int json_blob_path(const char *dir, const char *digest, char **ret)
{
        if (!img_valid_digest(digest))
                return -EBADMSG;
        *ret = sh_strdup_printf("%s/%s", dir, digest + 7);
        return *ret ? 0 : -ENOMEM;
}

int img_manifest_head(json_object *manifest, const char **ret_config_digest,
                      json_object **ret_layers, struct sh_error *err)
{
        json_object *cdesc, *layers;
        const char *cdigest = NULL;
        int64_t schema = 0;

        if (json_object_object_get_ex(manifest, "manifests", NULL))
                return sh_err(err, -EBADMSG, "manifest: an index or manifest list, not an image");
        if (sh_json_get_int64(manifest, "schemaVersion", "manifest", &schema, err) < 0 ||
            schema != 2)
                return sh_err(err, -EBADMSG,
                              "manifest: schema version %lld is not supported (want 2)",
                              (long long)schema);
        if (sh_json_get_object(manifest, "config", "manifest", &cdesc, err) < 0 ||
            sh_json_get_string(cdesc, "digest", "manifest config", &cdigest, err) < 0 ||
            sh_json_get_array(manifest, "layers", "manifest", &layers, err) < 0)
                return bad_image(err);
        *ret_config_digest = cdigest;
        *ret_layers = layers;
        return 0;
}

int img_manifest_layers(json_object *layers, json_object *config, json_object **ret_diff_ids,
                        struct sh_error *err)
{
        json_object *rootfs, *diff_ids;
        size_t n = json_object_array_length(layers);

        if (sh_json_get_object(config, "rootfs", "image config", &rootfs, err) < 0 ||
            sh_json_get_array(rootfs, "diff_ids", "image config rootfs", &diff_ids, err) < 0)
                return bad_image(err);
        if (json_object_array_length(diff_ids) != n)
                return sh_err(err, -EBADMSG,
                              "image has %zu layers but its config lists %zu diff ids", n,
                              json_object_array_length(diff_ids));
        for (size_t i = 0; i < n; i++) {
                json_object *l = json_object_array_get_idx(layers, i);
                json_object *d = json_object_array_get_idx(diff_ids, i);
                const char *ldigest = NULL, *diff = json_object_get_string(d);
                int64_t lsize = 0;

                if (sh_json_get_string(l, "digest", "manifest layer", &ldigest, err) < 0 ||
                    sh_json_get_int64(l, "size", "manifest layer", &lsize, err) < 0 ||
                    !json_object_is_type(d, json_type_string) || !img_valid_digest(diff) ||
                    !img_valid_digest(ldigest) || lsize < 0)
                        return sh_err(err, -EBADMSG, "layer %zu: bad descriptor or diff id", i);
        }
        *ret_diff_ids = diff_ids;
        return 0;
}

/* Imports the dir: copy in @dir as the image @ref, using the unpackers of @jobs. */
static int import_dir(struct img_mgr *im, const struct img_ref *ref, const char *dir,
                      struct pull_jobs *jobs, char **ret_id, struct sh_error *err)
{
        _cleanup_free_ char *mpath = sh_path_join(dir, "manifest.json");
        _cleanup_free_ char *mtext = NULL, *cpath = NULL;
        json_object *manifest = NULL, *config = NULL, *layers, *diff_ids;
        struct import imp = {.ref = ref};
        img_digest *ldigests = NULL;
        uint64_t *lsizes = NULL;
        size_t *job_idx = NULL, extracted = 0;
        uint64_t unpacked = 0;
        const char *cdigest = NULL;
        size_t mlen = 0, held = 0;
        int r;

        if (!mpath)
                return -ENOMEM;
        r = read_blob_json(mpath, MANIFEST_MAX, NULL, "manifest", &mtext, &mlen, &manifest, err);
        if (r < 0)
                return r;
        img_sha256(mtext, mlen, imp.manifest_digest);
        r = img_manifest_head(manifest, &cdigest, &layers, err);
        if (r < 0)
                goto out;
        if (json_blob_path(dir, cdigest, &cpath) < 0) {
                r = sh_err(err, -EBADMSG, "manifest: bad config digest '%.80s'", cdigest);
                goto out;
        }
        r = read_blob_json(cpath, CONFIG_MAX, cdigest, "image config", &imp.config_text, NULL,
                           &config, err);
        if (r < 0)
                goto out;
        r = img_manifest_layers(layers, config, &diff_ids, err);
        if (r < 0)
                goto out;
        imp.n = json_object_array_length(layers);
        imp.id = strdup(cdigest);
        imp.chains = calloc(imp.n ? imp.n : 1, sizeof(*imp.chains));
        if (!imp.id || !imp.chains) {
                r = -ENOMEM;
                goto out;
        }
        imp.size = mlen + strlen(imp.config_text);

        ldigests = calloc(imp.n ? imp.n : 1, sizeof(*ldigests));
        lsizes = calloc(imp.n ? imp.n : 1, sizeof(*lsizes));
        job_idx = calloc(imp.n ? imp.n : 1, sizeof(*job_idx));
        if (!ldigests || !lsizes || !job_idx) {
                r = -ENOMEM;
                goto out;
        }
        /* Check every descriptor, hold every chain, start the unpackers still missing. */
        for (size_t i = 0; i < imp.n; i++) {
                json_object *l = json_object_array_get_idx(layers, i);
                json_object *d = json_object_array_get_idx(diff_ids, i);
                const char *ldigest = NULL, *diff = json_object_get_string(d);
                int64_t lsize = 0;

                /* Checked by img_manifest_layers. */
                sh_json_get_string(l, "digest", "manifest layer", &ldigest, NULL);
                sh_json_get_int64(l, "size", "manifest layer", &lsize, NULL);
                snprintf(ldigests[i], sizeof(img_digest), "%s", ldigest);
                lsizes[i] = (uint64_t)lsize;
                img_chain_id(i ? imp.chains[i - 1] : NULL, diff, imp.chains[i]);
                pthread_mutex_lock(&im->lock);
                r = hold_add(im, imp.chains[i]);
                pthread_mutex_unlock(&im->lock);
                if (r < 0)
                        goto out;
                held++;
                imp.size += (uint64_t)lsize;
                job_idx[i] = SIZE_MAX;
                if (layer_present(im, imp.chains[i])) {
                        sh_log_debug("layer=%s present, not extracted again", imp.chains[i]);
                        continue;
                }
                job_idx[i] = job_unclaimed(jobs, ldigest + 7);
                if (job_idx[i] == SIZE_MAX) {
                        if (!job_add(jobs, ldigest + 7, false, err)) {
                                r = sh_err_prefix(err, err && err->code ? err->code : -ENOMEM,
                                                  "layer %zu (%s)", i, ldigest);
                                goto out;
                        }
                        job_idx[i] = jobs->n - 1;
                }
                jobs->v[job_idx[i]].claimed = true;
        }
        /* Collect them in order: check both digests, move into place, record. */
        for (size_t i = 0; i < imp.n; i++) {
                json_object *d = json_object_array_get_idx(diff_ids, i);
                const char *diff = json_object_get_string(d);
                struct unpack_job *job = job_idx[i] == SIZE_MAX ? NULL : &jobs->v[job_idx[i]];
                struct img_unpack_result res = {0};

                if (!job)
                        continue;
                r = img_unpack_wait(&job->proc, &res, err);
                if (r == 0 && strcmp(res.digest, ldigests[i]) != 0)
                        r = sh_err(err, -EUCLEAN,
                                   "blob digest mismatch: manifest says %s, blob is %s",
                                   ldigests[i], res.digest);
                if (r == 0 && strcmp(res.diff_id, diff) != 0)
                        r = sh_err(err, -EUCLEAN, "diff id mismatch: config says %s, tar is %s",
                                   diff, res.diff_id);
                if (r == 0)
                        r = layer_commit(im, job, imp.chains[i], i ? imp.chains[i - 1] : NULL, diff,
                                         ldigests[i], lsizes[i], err);
                if (r < 0) {
                        r = sh_err_prefix(err, r, "layer %zu (%s)", i, ldigests[i]);
                        goto out;
                }
                sh_log_debug("layer=%s extracted entries=%llu bytes=%llu", imp.chains[i],
                             (unsigned long long)res.entries, (unsigned long long)res.unpacked);
                extracted++;
                unpacked += res.unpacked;
        }
        pthread_mutex_lock(&im->lock);
        r = commit(im, &imp, err);
        pthread_mutex_unlock(&im->lock);
        if (r == 0) {
                sh_log_info("image=%s layers=%zu extracted=%zu bytes=%llu unpacked=%llu imported",
                            imp.id, imp.n, extracted, (unsigned long long)imp.size,
                            (unsigned long long)unpacked);
                *ret_id = TAKE_PTR(imp.id);
        }
out:
        pthread_mutex_lock(&im->lock);
        for (size_t i = 0; i < held; i++)
                hold_release(im, imp.chains[i]);
        if (held)
                gc_layers(im);
        pthread_mutex_unlock(&im->lock);
        json_object_put(manifest);
        json_object_put(config);
        free(ldigests);
        free(lsizes);
        free(job_idx);
        free(imp.id);
        free(imp.chains);
        free(imp.config_text);
        return r;
}

/* ---------------------------------------------------------------- pull */

static void *rm_rf_thread(void *path)
{
        sh_rm_rf(path);
        free(path);
        return NULL;
}

/*
 * Removes a finished pull's temp dir (the downloaded blobs) without making the caller wait:
 * it is renamed into <root_dir>/trash at once and a detached thread deletes it. What a crash
 * leaves in the trash is cleared at the next start.
 */
static void rm_rf_later(struct img_mgr *im, char *path)
{
        _cleanup_free_ char *dest =
                sh_strdup_printf("%s/%s", im->trash_dir, strrchr(path, '/') + 1);
        pthread_attr_t attr;
        pthread_t t;

        if (dest && (mkdir(im->trash_dir, 0700) == 0 || errno == EEXIST) &&
            rename(path, dest) == 0) {
                free(path);
                path = TAKE_PTR(dest);
        }
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 128 << 10);
        if (pthread_create(&t, &attr, rm_rf_thread, path) != 0)
                rm_rf_thread(path);
        pthread_attr_destroy(&attr);
}

static int do_pull(struct img_mgr *im, const struct img_ref *ref, const struct img_auth *auth,
                   char **ret_id, struct sh_error *err)
{
        _cleanup_free_ char *tmp = sh_strdup_printf("%s/pull-XXXXXX", im->tmp_dir);
        _cleanup_free_ char *copy = NULL, *authf = NULL, *skotmp = NULL;
        struct img_location *locs = NULL;
        struct pull_jobs jobs = {.im = im, .dirfd = -EBADF};
        size_t n = 0;
        unsigned long long t0 = sh_now_ns();
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        int r;

        if (!tmp)
                return -ENOMEM;
        r = sh_mkdir_p(im->tmp_dir, 0700);
        if (r < 0)
                return sh_err(err, r, "create '%s': %s", im->tmp_dir, strerror(-r));
        if (!mkdtemp(tmp))
                return sh_err(err, -errno, "pull temp dir: %s", strerror(errno));
        copy = sh_path_join(tmp, "image");
        authf = sh_path_join(tmp, "auth.json");
        skotmp = sh_path_join(tmp, "skopeo");
        r = copy && authf && skotmp ? img_locations(im->cfg, ref, &locs, &n) : -ENOMEM;
        jobs.copy_dir = copy;
        /* Unpackers on downloads mostly wait for bytes: allow a few more than the cores. */
        jobs.max_running = (ncpu > 0 ? (size_t)ncpu : 1) + 2;
        if (r == 0 && mkdir(skotmp, 0700) < 0)
                r = sh_err(err, -errno, "pull temp dir: %s", strerror(errno));
        for (size_t i = 0; r == 0 && i < n; i++) {
                struct img_copy_opts o = {
                        .loc = &locs[i],
                        .dest_dir = copy,
                        .tmp_dir = skotmp,
                        .registries_conf = im->cfg->registries_conf,
                        .stall_timeout_s = im->cfg->pull_timeout_s,
                        .stopping = im->stopping,
                        .watch_interval_ms = 20,
                        .tick = jobs_tick,
                        .tick_data = &jobs,
                        .bytes_total = im->m_pull_bytes,
                };
                int wrote = 0;

                if (!img_auth_empty(auth)) {
                        wrote = img_auth_file(auth, locs[i].host, authf, err);
                        if (wrote < 0) {
                                r = wrote;
                                break;
                        }
                }
                o.auth_file = wrote > 0 ? authf : NULL;
                r = img_skopeo_copy(&o, err);
                if (wrote > 0)
                        unlink(authf);
                if (r == 0 || r == -ECANCELED || i + 1 == n)
                        break;
                sh_log_info("pull ref=%s mirror=%s failed, trying the next: %s", locs[i].ref,
                            locs[i].host, err ? err->msg : "");
                jobs_done(&jobs);
                jobs = (struct pull_jobs){.im = im,
                                          .copy_dir = copy,
                                          .dirfd = -EBADF,
                                          .max_running = (ncpu > 0 ? (size_t)ncpu : 1) + 2};
                sh_rm_rf(copy);
                r = 0;
        }
        img_locations_done(locs, n);
        if (r == 0) {
                jobs_tick(&jobs); /* name the jobs whose download finished since the last tick */
                r = import_dir(im, ref, copy, &jobs, ret_id, err);
        }
        jobs_done(&jobs);
        if (r == 0)
                rm_rf_later(im, TAKE_PTR(tmp));
        else
                sh_rm_rf(tmp); /* a failed pull leaves nothing behind when it answers */
        if (r == 0)
                sh_log_info("pull ref=%s@%s id=%s ms=%llu done", ref->name,
                            ref->digest ? ref->digest : ref->tag, *ret_id,
                            (sh_now_ns() - t0) / 1000000ull);
        return r;
}

/* The single-flight key: the reference and a digest of the credentials. */
static char *flight_key(const char *ref, const struct img_auth *a)
{
        _cleanup_free_ char *creds = NULL;
        img_digest d;

        if (img_auth_empty(a))
                return strdup(ref);
        creds = sh_strdup_printf("%s\n%s\n%s\n%s\n%s", a->username ?: "", a->password ?: "",
                                 a->auth ?: "", a->identity_token ?: "", a->server_address ?: "");
        if (!creds)
                return NULL;
        img_sha256(creds, strlen(creds), d);
        explicit_bzero(creds, strlen(creds));
        return sh_strdup_printf("%s %s", ref, d);
}

static void flight_unref(struct pull_flight *f)
{
        if (--f->refs)
                return;
        free(f->key);
        free(f->id);
        free(f);
}

int img_pull(struct img_mgr *im, const char *in, const struct img_auth *auth, char **ret_id,
             struct sh_error *err)
{
        _cleanup_(img_ref_done) struct img_ref ref = {0};
        _cleanup_free_ char *norm = NULL, *key = NULL;
        struct pull_flight *f;
        int r;

        r = img_ref_parse(in, &ref, err);
        if (r < 0)
                return r;
        norm = img_ref_string(&ref);
        key = norm ? flight_key(norm, auth) : NULL;
        if (!key)
                return -ENOMEM;

        pthread_mutex_lock(&im->lock);
        for (f = im->flights; f && strcmp(f->key, key) != 0; f = f->next)
                ;
        if (f) {
                f->refs++;
                while (!f->done)
                        pthread_cond_wait(&im->flight_done, &im->lock);
                r = f->rc;
                if (r == 0 && !(*ret_id = strdup(f->id)))
                        r = -ENOMEM;
                else if (r < 0 && err)
                        *err = f->err;
                flight_unref(f);
                pthread_mutex_unlock(&im->lock);
                return r;
        }
        f = calloc(1, sizeof(*f));
        if (!f) {
                pthread_mutex_unlock(&im->lock);
                return -ENOMEM;
        }
        f->key = TAKE_PTR(key);
        f->refs = 1;
        f->next = im->flights;
        im->flights = f;
        pthread_mutex_unlock(&im->lock);

        {
                unsigned long long t0 = sh_now_ns();

                sh_gauge_add(im->m_pulls_running, 1);
                r = do_pull(im, &ref, auth, &f->id, &f->err);
                sh_gauge_add(im->m_pulls_running, -1);
                sh_histogram_observe_ns(im->m_pull_seconds, sh_now_ns() - t0);
                sh_counter_add(r == 0 ? im->m_pulls_ok : im->m_pulls_failed, 1);
        }

        pthread_mutex_lock(&im->lock);
        f->rc = r;
        f->done = true;
        for (struct pull_flight **p = &im->flights; *p; p = &(*p)->next)
                if (*p == f) {
                        *p = f->next;
                        break;
                }
        pthread_cond_broadcast(&im->flight_done);
        if (r == 0 && !(*ret_id = strdup(f->id)))
                r = -ENOMEM;
        else if (r < 0 && err)
                *err = f->err;
        flight_unref(f);
        pthread_mutex_unlock(&im->lock);
        return r;
}

/* ---------------------------------------------------------------- records */

/* The image id @s names, into @ret (malloc'd). Lock held. */
static int resolve(struct img_mgr *im, const char *s, char **ret, struct sh_error *err)
{
        _cleanup_(img_ref_done) struct img_ref ref = {0};
        _cleanup_free_ char *id = NULL, *norm = NULL;
        struct sh_error perr = {0};
        size_t len;
        int r, pr;

        if (!s || !s[0])
                return sh_err(err, -EINVAL, "image reference is empty");
        len = strlen(s);
        if (img_valid_digest(s))
                id = strdup(s);
        else if (len == 64 && img_is_hex(s, 64))
                id = sh_strdup_printf("sha256:%s", s);
        if (id) {
                _cleanup_free_ char *found = NULL;

                r = db_text(im, "SELECT id FROM images WHERE id = ?", (const char *[]){id, NULL},
                            &found, err);
                if (r == 0)
                        *ret = TAKE_PTR(found);
                return r == -ENOENT ? sh_err(err, -ENOENT, "image '%s' not found", s) : r;
        }
        pr = img_ref_parse(s, &ref, &perr);
        if (pr == 0) {
                norm = img_ref_string(&ref);
                if (!norm)
                        return -ENOMEM;
                r = db_text(im, "SELECT image_id FROM image_refs WHERE ref = ?",
                            (const char *[]){norm, NULL}, ret, err);
                if (r != -ENOENT)
                        return r;
        }
        if (img_is_hex(s, len) && len < 64) { /* a short id */
                _cleanup_stmt_ sqlite3_stmt *st = NULL;
                _cleanup_free_ char *pat = sh_strdup_printf("sha256:%s*", s);
                int rows = 0;

                if (!pat)
                        return -ENOMEM;
                st = db_prep(im, "SELECT id FROM images WHERE id GLOB ? LIMIT 2",
                             (const char *[]){pat, NULL});
                while (st && sqlite3_step(st) == SQLITE_ROW) {
                        if (rows++ == 0)
                                id = strdup((const char *)sqlite3_column_text(st, 0));
                }
                if (rows == 1 && id) {
                        *ret = TAKE_PTR(id);
                        return 0;
                }
                if (rows > 1)
                        return sh_err(err, -ENOENT, "image id prefix '%s' is ambiguous", s);
        }
        if (pr < 0) {
                if (err)
                        *err = perr;
                return pr;
        }
        return sh_err(err, -ENOENT, "image '%s' not found", s);
}

static char **json_strv(json_object *arr)
{
        size_t n;
        char **v;

        if (!arr || !json_object_is_type(arr, json_type_array))
                return NULL;
        n = json_object_array_length(arr);
        v = calloc(n + 1, sizeof(*v));
        if (!v)
                return NULL;
        for (size_t i = 0, k = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(arr, i);

                if (json_object_is_type(e, json_type_string) &&
                    !(v[k] = strdup(json_object_get_string(e)))) {
                        sh_strv_free(v);
                        return NULL;
                }
                if (v[k])
                        k++;
        }
        return v;
}

static char **json_keys(json_object *obj)
{
        size_t n = 0, k = 0;
        char **v;

        if (!obj || !json_object_is_type(obj, json_type_object))
                return NULL;
        n = (size_t)json_object_object_length(obj);
        v = calloc(n + 1, sizeof(*v));
        if (!v)
                return NULL;
        json_object_object_foreach (obj, key, val) {
                (void)val;
                if (!(v[k++] = strdup(key))) {
                        sh_strv_free(v);
                        return NULL;
                }
        }
        return v;
}

static char *json_str(json_object *obj, const char *key)
{
        json_object *v;

        if (!obj || !json_object_object_get_ex(obj, key, &v) ||
            !json_object_is_type(v, json_type_string))
                return NULL;
        return strdup(json_object_get_string(v));
}

void img_info_parse_config(struct img_info *info)
{
        json_object *root = NULL, *c = NULL, *v;
        struct img_config *ic = &info->config;

        if (sh_json_parse(info->config_json, strlen(info->config_json), "image config", &root,
                          NULL) < 0)
                return;
        if (json_object_object_get_ex(root, "config", &c) &&
            json_object_is_type(c, json_type_object)) {
                if (json_object_object_get_ex(c, "Entrypoint", &v))
                        ic->entrypoint = json_strv(v);
                if (json_object_object_get_ex(c, "Cmd", &v))
                        ic->cmd = json_strv(v);
                if (json_object_object_get_ex(c, "Env", &v))
                        ic->env = json_strv(v);
                if (json_object_object_get_ex(c, "Volumes", &v))
                        ic->volumes = json_keys(v);
                if (json_object_object_get_ex(c, "ExposedPorts", &v))
                        ic->exposed_ports = json_keys(v);
                if (json_object_object_get_ex(c, "Labels", &v) &&
                    json_object_is_type(v, json_type_object)) {
                        ic->label_keys = json_keys(v);
                        size_t n = 0;

                        while (ic->label_keys && ic->label_keys[n])
                                n++;
                        ic->label_values = calloc(n + 1, sizeof(char *));
                        for (size_t i = 0; ic->label_values && i < n; i++) {
                                ic->label_values[i] = json_str(v, ic->label_keys[i]);
                                if (!ic->label_values[i])
                                        ic->label_values[i] = strdup("");
                        }
                }
                ic->user = json_str(c, "User");
                ic->working_dir = json_str(c, "WorkingDir");
                ic->stop_signal = json_str(c, "StopSignal");
        }
        json_object_put(root);
        if (ic->user && ic->user[0]) {
                size_t n = strcspn(ic->user, ":");
                bool digits = n > 0 && n <= 10;

                for (size_t i = 0; i < n; i++)
                        digits &= ic->user[i] >= '0' && ic->user[i] <= '9';
                if (digits) {
                        info->has_uid = true;
                        info->uid = strtoll(ic->user, NULL, 10);
                } else if (n > 0) {
                        info->username = strndup(ic->user, n);
                }
        }
}

static int strv_push(char ***v, size_t *n, const char *s)
{
        char **nv = realloc(*v, (*n + 2) * sizeof(**v));

        if (!nv)
                return -ENOMEM;
        *v = nv;
        nv[*n] = strdup(s);
        if (!nv[*n])
                return -ENOMEM;
        nv[++*n] = NULL;
        return 0;
}

/* Loads the record of image @id. Lock held. */
static int load_info(struct img_mgr *im, const char *id, struct img_info **ret,
                     struct sh_error *err)
{
        struct img_info *info = calloc(1, sizeof(*info));
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        size_t nt = 0, nd = 0;
        int rc;

        if (!info)
                return -ENOMEM;
        info->repo_tags = calloc(1, sizeof(char *));
        info->repo_digests = calloc(1, sizeof(char *));
        info->id = strdup(id);
        if (!info->repo_tags || !info->repo_digests || !info->id)
                goto oom;
        st = db_prep(im, "SELECT size, config, pinned, manifest_digest FROM images WHERE id = ?",
                     (const char *[]){id, NULL});
        if (!st)
                goto dberr;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
                img_info_free(info);
                return rc == SQLITE_DONE ? sh_err(err, -ENOENT, "image '%s' not found", id)
                                         : db_fail(im, err, "load image");
        }
        info->size = (uint64_t)sqlite3_column_int64(st, 0);
        info->config_json = strdup((const char *)sqlite3_column_text(st, 1) ?: "{}");
        info->pinned = sqlite3_column_int(st, 2) != 0;
        info->manifest_digest = strdup((const char *)sqlite3_column_text(st, 3) ?: "");
        if (!info->config_json || !info->manifest_digest)
                goto oom;
        db_finalizep(&st);

        st = db_prep(im, "SELECT ref, kind FROM image_refs WHERE image_id = ? ORDER BY ref",
                     (const char *[]){id, NULL});
        if (!st)
                goto dberr;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *r = (const char *)sqlite3_column_text(st, 0);
                const char *kind = (const char *)sqlite3_column_text(st, 1);

                if (sh_streq(kind, "tag") ? strv_push(&info->repo_tags, &nt, r) < 0
                                          : strv_push(&info->repo_digests, &nd, r) < 0)
                        goto oom;
        }
        db_finalizep(&st);

        st = db_prep(im, "SELECT chain_id FROM image_layers WHERE image_id = ? ORDER BY idx",
                     (const char *[]){id, NULL});
        if (!st)
                goto dberr;
        info->chain_ids = calloc(1, sizeof(char *));
        info->layer_dirs = calloc(1, sizeof(char *));
        if (!info->chain_ids || !info->layer_dirs)
                goto oom;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *c = (const char *)sqlite3_column_text(st, 0);
                _cleanup_free_ char *dir = c && img_valid_digest(c) ? layer_dir(im, c) : NULL;
                size_t n = info->n_layers;

                if (!dir || strv_push(&info->chain_ids, &n, c) < 0)
                        goto oom;
                n = info->n_layers;
                if (strv_push(&info->layer_dirs, &n, dir) < 0)
                        goto oom;
                info->n_layers++;
        }
        img_info_parse_config(info);
        *ret = info;
        return 0;
dberr:
        img_info_free(info);
        return db_fail(im, err, "load image");
oom:
        img_info_free(info);
        return -ENOMEM;
}

int img_status(struct img_mgr *im, const char *ref, struct img_info **ret, struct sh_error *err)
{
        _cleanup_free_ char *id = NULL;
        int r;

        pthread_mutex_lock(&im->lock);
        r = resolve(im, ref, &id, err);
        if (r == 0)
                r = load_info(im, id, ret, err);
        pthread_mutex_unlock(&im->lock);
        return r;
}

int img_list(struct img_mgr *im, const char *filter, struct img_info ***ret, size_t *ret_n,
             struct sh_error *err)
{
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_strv_ char **ids = NULL;
        struct img_info **list = NULL;
        size_t n = 0;
        int r = 0;

        pthread_mutex_lock(&im->lock);
        if (filter && filter[0]) {
                char *id = NULL;

                r = resolve(im, filter, &id, NULL);
                if (r == 0) {
                        r = strv_push(&ids, &n, id);
                        free(id);
                } else {
                        r = 0; /* nothing matches: an empty list */
                }
        } else {
                st = db_prep(im, "SELECT id FROM images ORDER BY created_ns, id", NULL);
                if (!st)
                        r = db_fail(im, err, "list images");
                while (r == 0 && sqlite3_step(st) == SQLITE_ROW)
                        r = strv_push(&ids, &n, (const char *)sqlite3_column_text(st, 0));
        }
        if (r == 0)
                list = calloc(n + 1, sizeof(*list));
        if (r == 0 && !list)
                r = -ENOMEM;
        for (size_t i = 0, k = 0; r == 0 && i < n; i++) {
                r = load_info(im, ids[i], &list[k], err);
                if (r == 0)
                        k++;
                else if (r == -ENOENT)
                        r = 0;
                *ret_n = k;
        }
        pthread_mutex_unlock(&im->lock);
        if (r < 0) {
                img_info_list_free(list);
                return r;
        }
        if (n == 0)
                *ret_n = 0;
        *ret = list;
        return 0;
}

int img_remove(struct img_mgr *im, const char *ref, struct sh_error *err)
{
        _cleanup_free_ char *id = NULL;
        const char *args[2];
        int r;

        pthread_mutex_lock(&im->lock);
        r = resolve(im, ref, &id, err);
        if (r == -ENOENT) {
                pthread_mutex_unlock(&im->lock);
                sh_err_clear(err);
                return 0;
        }
        if (r < 0)
                goto out;
        args[0] = id;
        args[1] = NULL;
        r = db_exec(im, "BEGIN IMMEDIATE", err);
        if (r == 0)
                r = db_run(im, "DELETE FROM image_refs WHERE image_id = ?", args, err);
        if (r == 0)
                r = db_run(im, "DELETE FROM image_layers WHERE image_id = ?", args, err);
        if (r == 0)
                r = db_run(im, "DELETE FROM images WHERE id = ?", args, err);
        if (r == 0)
                r = recount(im, err);
        if (r == 0)
                r = db_exec(im, "COMMIT", err);
        if (r < 0) {
                sqlite3_exec(im->db, "ROLLBACK", NULL, NULL, NULL);
                goto out;
        }
        gc_layers(im);
        sh_log_info("image=%s removed", id);
out:
        pthread_mutex_unlock(&im->lock);
        return r;
}

int img_gc(struct img_mgr *im, struct sh_error *err)
{
        (void)err;
        pthread_mutex_lock(&im->lock);
        gc_layers(im);
        pthread_mutex_unlock(&im->lock);
        return 0;
}

static void img_config_done(struct img_config *c)
{
        sh_strv_free(c->entrypoint);
        sh_strv_free(c->cmd);
        sh_strv_free(c->env);
        free(c->user);
        free(c->working_dir);
        free(c->stop_signal);
        sh_strv_free(c->volumes);
        sh_strv_free(c->exposed_ports);
        sh_strv_free(c->label_keys);
        sh_strv_free(c->label_values);
        memset(c, 0, sizeof(*c));
}

struct img_info *img_info_free(struct img_info *info)
{
        if (!info)
                return NULL;
        free(info->id);
        sh_strv_free(info->repo_tags);
        sh_strv_free(info->repo_digests);
        free(info->username);
        free(info->manifest_digest);
        free(info->config_json);
        sh_strv_free(info->chain_ids);
        sh_strv_free(info->layer_dirs);
        img_config_done(&info->config);
        free(info);
        return NULL;
}

void img_info_list_free(struct img_info **list)
{
        for (size_t i = 0; list && list[i]; i++)
                img_info_free(list[i]);
        free(list);
}
