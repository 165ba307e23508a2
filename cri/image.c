/* ImageService handlers. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "cri-internal.h"
#include "fsusage.h"
#include "imagemgr.h"
#include "podmgr.h"
#include "strutil.h"

#define NEW(type, lower) ((type *)cri_msg_new(&runtime__v1__##lower##__descriptor))

/* How old ImageFsInfo's figures may get before a call has them measured again. */
#define FS_CACHE_MAX_AGE_NS (5ull * 1000 * 1000 * 1000)

struct cri_fs_cache {
        pthread_mutex_t lock; /* protects all below */
        pthread_cond_t wake;  /* the refresher waits on it for want or stop */
        struct cri_ctx *ctx;  /* set by the first call; the managers outlive the thread */
        bool have;            /* measured at least once */
        bool measuring;       /* the first measurement is under way (its callers wait) */
        bool want;            /* a call found the figures stale */
        bool stop;
        bool started;
        pthread_t thread;
        unsigned long long at_ns; /* sh_now_ns() when measured */
        int r;                    /* that measurement's result, with err */
        struct sh_error err;
        struct sh_fs_usage img, ctr;
};

/*
 * The layer store is the image filesystem; the containers' writable layers are the
 * container filesystem (both under root_dir, measured separately so the kubelet's image
 * GC and eviction see each). Blocks for both walks.
 */
static int measure(struct cri_ctx *ctx, struct sh_fs_usage *img, struct sh_fs_usage *ctr,
                   struct sh_error *err)
{
        int rc = img_mgr_fs_usage(ctx->images, img, err);

        if (rc < 0)
                return sh_err_prefix(err, rc, "image filesystem");
        rc = pod_mgr_fs_usage(ctx->pods, ctr, err);
        if (rc < 0)
                return sh_err_prefix(err, rc, "container filesystem");
        return 0;
}

/*
 * Takes c->lock; stores one measurement. A failed one replaces only figures that failed too:
 * a tree changing under a walk (a container renaming its dirs) must not take away what
 * the last good walk found.
 */
static void cache_store(struct cri_fs_cache *c, int r, const struct sh_error *err,
                        const struct sh_fs_usage *img, const struct sh_fs_usage *ctr)
{
        if (r < 0 && c->have && c->r == 0) {
                c->at_ns = sh_now_ns();
                return;
        }
        c->r = r;
        c->err = *err;
        c->img = *img;
        c->ctr = *ctr;
        c->at_ns = sh_now_ns();
        c->have = true;
}

/* The refresher: measures again whenever a call found the figures stale, never more often. */
static void *cache_thread(void *data)
{
        struct cri_fs_cache *c = data;

        pthread_mutex_lock(&c->lock);
        for (;;) {
                struct sh_fs_usage img = {0}, ctr = {0};
                struct sh_error err = {0};
                int r;

                while (!c->want && !c->stop)
                        pthread_cond_wait(&c->wake, &c->lock);
                if (c->stop)
                        break;
                pthread_mutex_unlock(&c->lock);
                r = measure(c->ctx, &img, &ctr, &err);
                pthread_mutex_lock(&c->lock);
                cache_store(c, r, &err, &img, &ctr);
                c->want = false;
        }
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

struct cri_fs_cache *cri_fs_cache_new(void)
{
        struct cri_fs_cache *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->wake, NULL);
        return c;
}

struct cri_fs_cache *cri_fs_cache_free(struct cri_fs_cache *c)
{
        if (!c)
                return NULL;
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        if (c->started)
                pthread_join(c->thread, NULL);
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/*
 * The figures for a call: the first call measures them itself and starts the refresher;
 * later calls answer at once with the last figures, asking the refresher for new ones when
 * they are older than FS_CACHE_MAX_AGE_NS (the kubelet asks every few seconds anyway).
 */
static int cached_usage(struct cri_ctx *ctx, struct sh_fs_usage *img, struct sh_fs_usage *ctr,
                        struct sh_error *err)
{
        struct cri_fs_cache *c = ctx->fs_cache;
        int r;

        if (!c)
                return measure(ctx, img, ctr, err);
        pthread_mutex_lock(&c->lock);
        /* One first measurement: the calls that come meanwhile wait for it. */
        while (!c->have && c->measuring)
                pthread_cond_wait(&c->wake, &c->lock);
        if (!c->have) {
                struct sh_error e = {0};

                c->measuring = true;
                pthread_mutex_unlock(&c->lock);
                r = measure(ctx, img, ctr, &e);
                pthread_mutex_lock(&c->lock);
                c->measuring = false;
                cache_store(c, r, &e, img, ctr);
                pthread_cond_broadcast(&c->wake);
                c->ctx = ctx;
                if (!c->started && !c->stop &&
                    pthread_create(&c->thread, NULL, cache_thread, c) == 0)
                        c->started = true;
        } else if (sh_now_ns() - c->at_ns >= FS_CACHE_MAX_AGE_NS && c->started && !c->want) {
                c->want = true;
                pthread_cond_signal(&c->wake);
        }
        /* No refresher (it could not start): measure per call, as before the cache. */
        if (!c->started && c->have && sh_now_ns() - c->at_ns >= FS_CACHE_MAX_AGE_NS) {
                pthread_mutex_unlock(&c->lock);
                return measure(ctx, img, ctr, err);
        }
        r = c->r;
        if (r < 0 && err)
                *err = c->err;
        *img = c->img;
        *ctr = c->ctr;
        pthread_mutex_unlock(&c->lock);
        return r;
}

int cri_image_fs_info(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                      struct sh_error *err)
{
        Runtime__V1__ImageFsInfoResponse *r;
        struct sh_fs_usage img, ctr;
        int rc;

        (void)req;
        rc = cached_usage(ctx, &img, &ctr, err);
        if (rc < 0)
                return rc;
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
