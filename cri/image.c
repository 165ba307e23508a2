/* ImageService handlers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "cri-internal.h"
#include "imagemgr.h"
#include "podmgr.h"

#define NEW(type, lower) ((type *)cri_msg_new(&runtime__v1__##lower##__descriptor))

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
        if (r->image_filesystems && (r->image_filesystems[0] = cri_fs_usage_msg(&img)))
                r->n_image_filesystems = 1;
        if (r->container_filesystems && (r->container_filesystems[0] = cri_fs_usage_msg(&ctr)))
                r->n_container_filesystems = 1;
        if (r->n_image_filesystems != 1 || r->n_container_filesystems != 1) {
                protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

/* The image reference of a request, or -EINVAL when it has none. */
static int image_of(const Runtime__V1__ImageSpec *spec, const char *rpc, const char **ret,
                    struct sh_error *err)
{
        if (!spec || !spec->image || !spec->image[0])
                return sh_err(err, -EINVAL, "%s: image.image is required", rpc);
        *ret = spec->image;
        return 0;
}

static char **strv_copy(char *const *v, size_t *ret_n)
{
        size_t n = 0;
        char **out;

        while (v && v[n])
                n++;
        out = cri_array_new(n);
        for (size_t i = 0; out && i < n; i++)
                if (!(out[i] = cri_strdup(v[i]))) {
                        for (size_t k = 0; k < i; k++)
                                free(out[k]);
                        free(out);
                        return NULL;
                }
        *ret_n = out ? n : 0;
        return out;
}

/* An img_info as a CRI Image (every part malloc'd). */
static Runtime__V1__Image *image_msg(const struct img_info *in)
{
        Runtime__V1__Image *m = NEW(Runtime__V1__Image, image);

        if (!m)
                return NULL;
        m->id = cri_strdup(in->id);
        m->repo_tags = strv_copy(in->repo_tags, &m->n_repo_tags);
        m->repo_digests = strv_copy(in->repo_digests, &m->n_repo_digests);
        m->size = in->size;
        m->username = cri_strdup(in->username);
        m->pinned = in->pinned;
        m->spec = NEW(Runtime__V1__ImageSpec, image_spec);
        if (m->spec)
                m->spec->image = cri_strdup(in->id);
        if (in->has_uid) {
                m->uid = NEW(Runtime__V1__Int64Value, int64_value);
                if (m->uid)
                        m->uid->value = in->uid;
        }
        if (!m->id || !m->repo_tags || !m->repo_digests || !m->username || !m->spec ||
            !m->spec->image || (in->has_uid && !m->uid)) {
                protobuf_c_message_free_unpacked(&m->base, NULL);
                return NULL;
        }
        return m;
}

int cri_pull_image(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                   struct sh_error *err)
{
        const Runtime__V1__PullImageRequest *in = (const Runtime__V1__PullImageRequest *)req;
        Runtime__V1__PullImageResponse *r;
        const Runtime__V1__AuthConfig *a = in->auth;
        struct img_auth auth = {0};
        _cleanup_free_ char *id = NULL;
        const char *ref = NULL;
        int rc;

        rc = image_of(in->image, "PullImage", &ref, err);
        if (rc < 0)
                return rc;
        if (a) {
                auth = (struct img_auth){
                        .username = a->username,
                        .password = a->password,
                        .auth = a->auth,
                        .identity_token = a->identity_token,
                        .server_address = a->server_address,
                };
                if (a->registry_token && a->registry_token[0])
                        return sh_err(err, -EOPNOTSUPP,
                                      "PullImage: auth.registry_token is not supported (it would "
                                      "have to go on skopeo's command line); use identity_token");
        }
        rc = img_pull(ctx->images, ref, &auth, &id, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__PullImageResponse, pull_image_response);
        if (!r)
                return -ENOMEM;
        r->image_ref = TAKE_PTR(id);
        *ret_resp = &r->base;
        return 0;
}

/* The verbose info of ImageStatus: one JSON document under "info", as containerd has it. */
static char *verbose_info(const struct img_info *in)
{
        json_object *o = json_object_new_object(), *spec = NULL;
        json_object *chains = json_object_new_array(), *dirs = json_object_new_array();
        char *s;

        json_object_object_add(o, "id", json_object_new_string(in->id));
        for (size_t i = 0; i < in->n_layers; i++) {
                json_object_array_add(chains, json_object_new_string(in->chain_ids[i]));
                json_object_array_add(dirs, json_object_new_string(in->layer_dirs[i]));
        }
        json_object_object_add(o, "chainIDs", chains);
        json_object_object_add(o, "layers", dirs);
        json_object_object_add(o, "manifestDigest", json_object_new_string(in->manifest_digest));
        json_object_object_add(o, "pinned", json_object_new_boolean(in->pinned));
        spec = json_tokener_parse(in->config_json);
        json_object_object_add(o, "imageSpec", spec ? spec : json_object_new_object());
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}

int cri_image_status(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                     struct sh_error *err)
{
        const Runtime__V1__ImageStatusRequest *in = (const Runtime__V1__ImageStatusRequest *)req;
        Runtime__V1__ImageStatusResponse *r;
        struct img_info *info = NULL;
        const char *ref = NULL;
        int rc;

        rc = image_of(in->image, "ImageStatus", &ref, err);
        if (rc < 0)
                return rc;
        rc = img_status(ctx->images, ref, &info, err);
        /* An absent image is an empty answer, not an error: the kubelet pulls on that. */
        if (rc < 0 && rc != -ENOENT)
                return rc;
        r = NEW(Runtime__V1__ImageStatusResponse, image_status_response);
        if (!r) {
                img_info_free(info);
                return -ENOMEM;
        }
        if (info) {
                r->image = image_msg(info);
                if (r->image && in->verbose) {
                        Runtime__V1__ImageStatusResponse__InfoEntry *e =
                                NEW(Runtime__V1__ImageStatusResponse__InfoEntry,
                                    image_status_response__info_entry);

                        r->info = cri_array_new(1);
                        if (e && r->info) {
                                r->info[r->n_info++] = e;
                                e->key = cri_strdup("info");
                                e->value = verbose_info(info);
                        } else {
                                free(e);
                        }
                        if (!e || !r->info || !e->key || !e->value)
                                rc = -ENOMEM;
                }
                if (!r->image)
                        rc = -ENOMEM;
                img_info_free(info);
                if (rc == -ENOMEM) {
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                        return rc;
                }
        }
        sh_err_clear(err);
        *ret_resp = &r->base;
        return 0;
}

int cri_list_images(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                    struct sh_error *err)
{
        const Runtime__V1__ListImagesRequest *in = (const Runtime__V1__ListImagesRequest *)req;
        const char *filter = in->filter && in->filter->image ? in->filter->image->image : NULL;
        Runtime__V1__ListImagesResponse *r;
        struct img_info **list = NULL;
        size_t n = 0;
        int rc;

        rc = img_list(ctx->images, filter, &list, &n, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__ListImagesResponse, list_images_response);
        if (r)
                r->images = cri_array_new(n);
        for (size_t i = 0; r && r->images && i < n; i++) {
                r->images[i] = image_msg(list[i]);
                if (!r->images[i]) {
                        rc = -ENOMEM;
                        break;
                }
                r->n_images++;
        }
        img_info_list_free(list);
        if (!r || !r->images || rc < 0) {
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

int cri_remove_image(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                     struct sh_error *err)
{
        const Runtime__V1__RemoveImageRequest *in = (const Runtime__V1__RemoveImageRequest *)req;
        Runtime__V1__RemoveImageResponse *r;
        const char *ref = NULL;
        int rc;

        rc = image_of(in->image, "RemoveImage", &ref, err);
        if (rc < 0)
                return rc;
        rc = img_remove(ctx->images, ref, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__RemoveImageResponse, remove_image_response);
        if (!r)
                return -ENOMEM;
        *ret_resp = &r->base;
        return 0;
}
