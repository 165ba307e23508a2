#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "error.h"
#include "strutil.h"

/* A parsed, normalised image reference. */
struct img_ref {
        char *name;   /* "docker.io/library/busybox": registry host and repository path */
        char *tag;    /* "latest"; NULL for a digest-only reference */
        char *digest; /* "sha256:<64 hex>", or NULL */
};

/*
 * Parses @in as a docker reference and normalises it (docker.io and library/ added, tag
 * "latest" when neither tag nor digest is given). -EINVAL with the reason for a malformed one.
 */
int img_ref_parse(const char *in, struct img_ref *ret, struct sh_error *err);
void img_ref_done(struct img_ref *r);
/* "name@digest" when @r has a digest (a tag beside it is dropped), else "name:tag". malloc'd. */
char *img_ref_string(const struct img_ref *r);
/* The registry part of r->name ("docker.io", "127.0.0.1:5000"), malloc'd. */
char *img_ref_domain(const struct img_ref *r);

bool img_is_hex(const char *s, size_t len);
/* "sha256:" followed by 64 lowercase hex digits. */
bool img_valid_digest(const char *s);

/* A sha256 digest as "sha256:<64 hex>" plus NUL. */
typedef char img_digest[72];

/* sha256 of @len bytes at @buf. */
void img_sha256(const void *buf, size_t len, img_digest ret);
/* sha256 of the file at @path (read at most @max bytes, -EFBIG beyond). 0 or -errno. */
int img_sha256_file(const char *path, uint64_t *ret_size, img_digest ret);
/* The chain id of a layer: its diff id for the base, else sha256("<parent chain> <diff id>"). */
void img_chain_id(const char *parent_chain, const char *diff_id, img_digest ret);

/* What extracting one layer measured. */
struct img_unpack_result {
        img_digest digest;  /* sha256 of the blob as stored (compressed) */
        img_digest diff_id; /* sha256 of the uncompressed tar stream */
        uint64_t size;      /* blob bytes */
        uint64_t unpacked;  /* tar stream bytes */
        uint64_t entries;   /* tar entries seen */
};

/*
 * Extracts the layer blob at @blob_path (tar, optionally gzip/zstd/xz compressed) into the
 * existing empty directory @dest, in a runt-unpack process confined to @dest with chroot(2). OCI
 * whiteouts become overlayfs whiteouts (".wh.NAME" -> a 0:0 character device,
 * ".wh..wh..opq" -> trusted.overlay.opaque=y on its directory); owners, modes, times,
 * xattrs (except trusted.overlay.*) and hard links are kept. Entries with an absolute path,
 * a ".." component, or a path through a symlink are refused: -EINVAL naming the entry, and
 * @dest may then hold a partial tree the caller removes. Blocks; needs root.
 */
int img_unpack_layer(const char *blob_path, const char *dest, struct img_unpack_result *ret,
                     struct sh_error *err);

/* The same in two steps, so several layers unpack at once: a running unpacker. */
struct img_unpack_proc {
        pid_t pid; /* 0 when none */
        int fd;    /* its result pipe */
};

/* Starts unpacking @blob_path into @dest in a child; does not wait. */
int img_unpack_start(const char *blob_path, const char *dest, struct img_unpack_proc *ret,
                     struct sh_error *err);
/*
 * As img_unpack_start for file @name in directory @dirfd. With @follow the file is still being
 * written: the unpacker reads on past its current end until @name disappears from @dirfd
 * (renamed or removed by the writer). The caller kills it if that never happens.
 */
int img_unpack_start_at(int dirfd, const char *name, bool follow, const char *dest,
                        struct img_unpack_proc *ret, struct sh_error *err);
/* True when the unpacker has finished (its result can be read without blocking). */
bool img_unpack_done(const struct img_unpack_proc *p);
/* Waits for the unpacker and returns what img_unpack_layer would. Safe once per start. */
int img_unpack_wait(struct img_unpack_proc *p, struct img_unpack_result *ret, struct sh_error *err);
/* Kills and reaps a running unpacker; a no-op for none. */
void img_unpack_abort(struct img_unpack_proc *p);

/* The runt-unpack program runtd runs (beside runtd, else the build's). Borrowed. */
const char *img_unpack_helper(void);

/* ---- What a pull brings in: the manifest and config blobs skopeo copied (imagemgr.c) ---- */

struct img_info;

/*
 * The checks on a manifest before its config is read: an image manifest (not an index or
 * manifest list) of schema version 2 with a config descriptor and a layers array.
 * *@ret_config_digest (not yet checked) and *@ret_layers borrow from @manifest. -EBADMSG.
 */
int img_manifest_head(json_object *manifest, const char **ret_config_digest,
                      json_object **ret_layers, struct sh_error *err);

/*
 * The checks once the config is read: its rootfs.diff_ids match @layers one for one, and
 * every layer has a valid digest, a size >= 0 and a valid diff id. *@ret_diff_ids borrows
 * from @config. -EBADMSG.
 */
int img_manifest_layers(json_object *layers, json_object *config, json_object **ret_diff_ids,
                        struct sh_error *err);

/*
 * Fills @info->config (entrypoint, cmd, env, volumes, ports, labels, user, working dir,
 * stop signal) and the user facts from @info->config_json. Whatever does not parse stays
 * unset; an allocation failure leaves fields unset too.
 */
void img_info_parse_config(struct img_info *info);
