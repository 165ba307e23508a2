#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "error.h"
#include "imagemgr-internal.h"
#include "imagemgr.h"

struct sh_counter;

/* One place to pull an image from: a mirror or the registry itself. */
struct img_location {
        char *ref;     /* "127.0.0.1:5001/library/busybox:latest" */
        char *host;    /* "127.0.0.1:5001", for messages and the auth file key */
        bool insecure; /* plain HTTP / no certificate checks */
};

/* The mirrors runt.yaml gives for @ref's registry, in order, then the registry itself. */
int img_locations(const struct runt_config *cfg, const struct img_ref *ref,
                  struct img_location **ret, size_t *ret_n);
void img_locations_done(struct img_location *locs, size_t n);

bool img_auth_empty(const struct img_auth *a);

/*
 * Writes a containers-auth.json(5) file at @path (created 0600, O_EXCL) holding @a's
 * credentials for @host. Returns 1 when written, 0 when @a is for another registry
 * (nothing written), or -errno. The secret is wiped from memory afterwards.
 */
int img_auth_file(const struct img_auth *a, const char *host, const char *path,
                  struct sh_error *err);

struct img_copy_opts {
        const char *skopeo; /* NULL: "skopeo" from PATH */
        const struct img_location *loc;
        const char *dest_dir;        /* the dir: transport's target, must not exist */
        const char *tmp_dir;         /* skopeo's --tmpdir */
        const char *auth_file;       /* NULL: skopeo's default credentials */
        const char *registries_conf; /* containers-registries.conf(5) */
        unsigned stall_timeout_s;    /* cancel after this long without a byte */
        unsigned watch_interval_ms;  /* progress checks; 0 = 500 */
        const atomic_bool *stopping; /* cancel when true; may be NULL */
        int (*tick)(void *data);     /* called on every progress check; may be NULL */
        void *tick_data;
        struct sh_counter *bytes_total; /* grows by the bytes fetched as they arrive; NULL ok */
};

/*
 * Runs skopeo copy. Returns 0, or -EACCES (credentials refused), -ENOENT (no such image),
 * -ECONNREFUSED (registry unreachable), -ETIMEDOUT (stalled), -ECANCELED (stopping),
 * -EUCLEAN (a blob that does not match its digest),
 * -EIO (anything else), with @err naming the location. Blocks.
 */
int img_skopeo_copy(const struct img_copy_opts *o, struct sh_error *err);
