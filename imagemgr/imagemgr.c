#include "imagemgr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "strutil.h"

struct img_mgr {
        const struct runt_config *cfg;
        char *layers_dir;
};

int img_mgr_new(const struct runt_config *cfg, struct img_mgr **ret, struct sh_error *err)
{
        struct img_mgr *im = calloc(1, sizeof(*im));
        int r;

        if (!im)
                return -ENOMEM;
        im->cfg = cfg;
        im->layers_dir = sh_path_join(cfg->root_dir, "layers");
        if (!im->layers_dir) {
                free(im);
                return -ENOMEM;
        }
        r = sh_mkdir_p(im->layers_dir, 0700);
        if (r < 0) {
                sh_err(err, r, "create layer store '%s': %s", im->layers_dir, strerror(-r));
                img_mgr_free(im);
                return r;
        }
        *ret = im;
        return 0;
}

struct img_mgr *img_mgr_free(struct img_mgr *im)
{
        if (!im)
                return NULL;
        free(im->layers_dir);
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
