#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "fsusage.h"

/*
 * Images: pulls with skopeo into a content-addressed layer store under <root_dir>/layers
 * (one directory per layer, named by its chain id), image records in the state store.
 * Thread-safe: one mutex guards the records and the layer directories; pulls and
 * extraction run outside it.
 */
struct img_mgr;

/* Registry credentials from a CRI AuthConfig; every field may be NULL or "". Never logged. */
struct img_auth {
        const char *username;
        const char *password;
        const char *auth; /* base64 "user:password" */
        const char *identity_token;
        const char *server_address; /* the registry these are for; "" = the one pulled from */
};

/* The parts of an image config (OCI image-spec "config") CreateContainer uses. */
struct img_config {
        char **entrypoint; /* NULL-terminated, each may be empty; NULL when unset */
        char **cmd;
        char **env; /* "K=V" */
        char *user; /* "uid", "uid:gid", "name", "name:group" or NULL */
        char *working_dir;
        char *stop_signal;
        char **volumes;       /* mount paths */
        char **exposed_ports; /* "80/tcp" */
        char **label_keys;    /* labels, parallel to label_values */
        char **label_values;
};

/* An image record, owned by the caller (img_info_free). */
struct img_info {
        char *id;            /* "sha256:<config digest hex>" */
        char **repo_tags;    /* NULL-terminated, normalised "registry/repo:tag" */
        char **repo_digests; /* NULL-terminated, "registry/repo@sha256:<manifest digest>" */
        uint64_t size;       /* manifest + config + compressed layers, bytes */
        bool has_uid;        /* the config's User is numeric */
        int64_t uid;
        char *username;        /* the config's User is a name: that name, else NULL */
        bool pinned;           /* listed in images.pinned: the kubelet never collects it */
        char *manifest_digest; /* "sha256:..." */
        char *config_json;     /* the config blob as pulled */
        size_t n_layers;
        char **chain_ids;  /* n_layers, base first */
        char **layer_dirs; /* n_layers absolute directories, base first */
        struct img_config config;
};

/*
 * Opens its own connection to the state store at @db_path (created and migrated by podmgr
 * before), creates the layer store and removes what a crash left: temp dirs, layer dirs no
 * record names and layers no image uses. @stopping (may be NULL) cancels pulls when it turns
 * true. Borrows @cfg and @stopping.
 */
int img_mgr_new(const struct runt_config *cfg, const char *db_path, const atomic_bool *stopping,
                struct img_mgr **ret, struct sh_error *err);
struct img_mgr *img_mgr_free(struct img_mgr *im);

/*
 * Counts and times pulls into @metrics (borrowed; outlives the manager): bytes fetched,
 * pull duration, pulls by result, pulls in progress. Call once, before serving.
 */
struct sh_metrics;
int img_mgr_set_metrics(struct img_mgr *im, struct sh_metrics *metrics, struct sh_error *err);

/* The layer store's directory (borrowed). */
const char *img_mgr_layers_dir(struct img_mgr *im);

/* Bytes and inodes the layer store uses now. Walks the store: blocks, call off the CQ thread. */
int img_mgr_fs_usage(struct img_mgr *im, struct sh_fs_usage *ret, struct sh_error *err);

/*
 * Pulls @ref (mirrors first, then the registry) and imports it. Concurrent pulls of one
 * reference do the work once and share the result. Returns 0 with *@ret_id (malloc'd, the
 * image id), or: -EINVAL malformed reference, -ENOENT not in the registry, -EACCES refused
 * credentials, -ECONNREFUSED registry unreachable, -ETIMEDOUT no progress for the pull
 * timeout, -ECANCELED runtd stopping, -EBADMSG a malformed or hostile image, -EUCLEAN content
 * that does not match its digest; @err names the registry. Nothing is left behind on failure.
 * Blocks for the length of the pull.
 */
int img_pull(struct img_mgr *im, const char *ref, const struct img_auth *auth, char **ret_id,
             struct sh_error *err);

/*
 * The image @ref names: an id ("sha256:hex", "hex", or a unique hex prefix), a tag or a
 * digest reference, normalised. -ENOENT when there is none, -EINVAL for a malformed @ref.
 */
int img_status(struct img_mgr *im, const char *ref, struct img_info **ret, struct sh_error *err);

/* Every image, or those @filter (may be NULL or "") names; *@ret is NULL-terminated. */
int img_list(struct img_mgr *im, const char *filter, struct img_info ***ret, size_t *ret_n,
             struct sh_error *err);

/*
 * Removes the image @ref names with all its tags and digests, and the layers no other image
 * uses. An unknown image is not an error (CRI semantics): returns 0.
 */
int img_remove(struct img_mgr *im, const char *ref, struct sh_error *err);

/* Removes layers no image and no container uses (after a container is removed). */
int img_gc(struct img_mgr *im, struct sh_error *err);

struct img_info *img_info_free(struct img_info *info);
void img_info_list_free(struct img_info **list);

/* Normalises @in as containerd does ("busybox" -> "docker.io/library/busybox:latest"). */
int img_ref_normalize(const char *in, char **ret, struct sh_error *err);
