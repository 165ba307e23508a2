/*
 * libFuzzer target: the blobs of a pulled image (imagemgr/imagemgr.c): the manifest (image
 * manifest, or an index / manifest list, which runt refuses), the image config's rootfs
 * against the manifest's layers, and the config fields the CRI reports (user, env, cmd,
 * entrypoint, working dir, stop signal, volumes, ports, labels). The input is the manifest,
 * a NUL, then the config. Beyond not crashing or leaking: a refusal says why with -EBADMSG;
 * an accepted manifest has as many diff ids as layers; a numeric user is all digits.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imagemgr-internal.h"
#include "imagemgr.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_config(const char *text)
{
        struct img_info *info = calloc(1, sizeof(*info));

        if (!info)
                return;
        info->config_json = strdup(text);
        if (!info->config_json) {
                free(info);
                return;
        }
        img_info_parse_config(info);
        if (info->has_uid && (info->uid < 0 || info->username))
                abort();
        if (info->username && (!info->username[0] || strchr(info->username, ':')))
                abort();
        for (size_t i = 0; info->config.label_keys && info->config.label_keys[i]; i++)
                if (!info->config.label_values || !info->config.label_values[i])
                        abort(); /* a value for every key */
        img_info_free(info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_object *manifest = NULL, *config = NULL, *layers = NULL, *diff_ids = NULL;
        struct sh_error err = {0};
        const char *cdigest = NULL;
        char *text, *ctext;
        size_t mlen;
        int r;

        if (size > 256 * 1024)
                return 0;
        text = malloc(size + 2);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        text[size + 1] = '\0';
        mlen = strlen(text);
        ctext = text + mlen + (mlen < size ? 1 : 0);

        check_config(ctext);
        if (sh_json_parse(text, mlen, "manifest", &manifest, &err) < 0)
                goto out;
        r = img_manifest_head(manifest, &cdigest, &layers, &err);
        if (r < 0) {
                if (r != -EBADMSG || !err.msg[0])
                        abort();
                goto out;
        }
        if (!cdigest || !json_object_is_type(layers, json_type_array))
                abort();
        if (sh_json_parse(ctext, strlen(ctext), "image config", &config, &err) < 0)
                goto out;
        r = img_manifest_layers(layers, config, &diff_ids, &err);
        if (r < 0) {
                if (r != -EBADMSG || !err.msg[0])
                        abort();
                goto out;
        }
        if (json_object_array_length(diff_ids) != json_object_array_length(layers))
                abort();
out:
        json_object_put(config);
        json_object_put(manifest);
        free(text);
        return 0;
}
