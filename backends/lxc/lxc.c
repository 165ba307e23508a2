/* The lxc backend: pods as LXC containers through liblxc (notes/lxc.md). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lxc/lxccontainer.h>

#include "be-internal.h"
#include "cleanup.h"
#include "strutil.h"

struct lxc_be {
        char *lxcpath; /* where runt's LXC container dirs live */
};

static int lxc_init(struct be *be, const struct be_config *cfg, struct sh_error *err)
{
        const char *path = be_config_option(cfg, "lxcpath");
        _cleanup_free_ struct lxc_be *lb = calloc(1, sizeof(*lb));
        int r;

        if (!lb)
                return -ENOMEM;
        if (!lxc_get_version())
                return sh_err(err, -ENOPKG, "liblxc reports no version");
        lb->lxcpath = path ? strdup(path) : sh_path_join(cfg->root_dir, "lxc");
        if (!lb->lxcpath)
                return -ENOMEM;
        if (lb->lxcpath[0] != '/') {
                r = sh_err(err, -EINVAL, "lxcpath '%s' is not absolute", lb->lxcpath);
                free(lb->lxcpath);
                return r;
        }
        r = sh_mkdir_p(lb->lxcpath, 0700);
        if (r < 0) {
                sh_err(err, r, "create lxcpath '%s': %s", lb->lxcpath, strerror(-r));
                free(lb->lxcpath);
                return r;
        }
        be->priv = TAKE_PTR(lb);
        return 0;
}

static int lxc_ready(struct be *be, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;

        if (access(lb->lxcpath, W_OK | X_OK) < 0)
                return sh_err(err, -errno, "lxcpath '%s' is not usable: %s", lb->lxcpath,
                              strerror(errno));
        return 0;
}

static void lxc_fini(struct be *be)
{
        struct lxc_be *lb = be->priv;

        if (lb)
                free(lb->lxcpath);
        free(lb);
        be->priv = NULL;
}

const struct be_ops be_lxc_ops = {
        .name = "lxc",
        .caps = BE_CAP_EXEC | BE_CAP_ATTACH | BE_CAP_STATS | BE_CAP_SHARED_NETNS,
        .init = lxc_init,
        .ready = lxc_ready,
        .fini = lxc_fini,
};
