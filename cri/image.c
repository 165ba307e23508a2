/* ImageService handlers. */
#include <errno.h>
#include <stdlib.h>

#include "cri-internal.h"
#include "imagemgr.h"
#include "podmgr.h"

#define NEW(type, lower) ((type *)cri_msg_new(&runtime__v1__##lower##__descriptor))

static Runtime__V1__FilesystemUsage *fs_usage(const struct sh_fs_usage *u)
{
        Runtime__V1__FilesystemUsage *f = NEW(Runtime__V1__FilesystemUsage, filesystem_usage);

        if (!f)
                return NULL;
        f->timestamp = u->timestamp_ns;
        f->fs_id = NEW(Runtime__V1__FilesystemIdentifier, filesystem_identifier);
        f->used_bytes = NEW(Runtime__V1__UInt64Value, uint64_value);
        f->inodes_used = NEW(Runtime__V1__UInt64Value, uint64_value);
        if (!f->fs_id || !f->used_bytes || !f->inodes_used) {
                protobuf_c_message_free_unpacked(&f->base, NULL);
                return NULL;
        }
        f->fs_id->mountpoint = cri_strdup(u->mountpoint);
        f->used_bytes->value = u->used_bytes;
        f->inodes_used->value = u->inodes_used;
        return f;
}

/*
 * The layer store is the image filesystem; the containers' writable layers are the
 * container filesystem (both under root_dir, measured separately so the kubelet's image
 * GC and eviction see each).
 */
int cri_image_fs_info(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                      struct sh_error *err)
{
        Runtime__V1__ImageFsInfoResponse *r;
        struct sh_fs_usage img, ctr;
        int rc;

        (void)req;
        rc = img_mgr_fs_usage(ctx->images, &img, err);
        if (rc < 0)
                return sh_err_prefix(err, rc, "image filesystem");
        rc = pod_mgr_fs_usage(ctx->pods, &ctr, err);
        if (rc < 0)
                return sh_err_prefix(err, rc, "container filesystem");
        r = NEW(Runtime__V1__ImageFsInfoResponse, image_fs_info_response);
        if (!r)
                return -ENOMEM;
        r->image_filesystems = cri_array_new(1);
        r->container_filesystems = cri_array_new(1);
        if (r->image_filesystems && (r->image_filesystems[0] = fs_usage(&img)))
                r->n_image_filesystems = 1;
        if (r->container_filesystems && (r->container_filesystems[0] = fs_usage(&ctr)))
                r->n_container_filesystems = 1;
        if (r->n_image_filesystems != 1 || r->n_container_filesystems != 1) {
                protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}
