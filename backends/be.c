#include "be.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "be-internal.h"

static const struct be_ops *const be_registry[] = {
        &be_lxc_ops,
        &be_fake_ops,
        NULL,
};

const struct be_ops *be_lookup(const char *name)
{
        for (size_t i = 0; be_registry[i]; i++)
                if (strcmp(be_registry[i]->name, name) == 0)
                        return be_registry[i];
        return NULL;
}

int be_new(const char *backend, const struct be_config *cfg, struct be **ret, struct sh_error *err)
{
        const struct be_ops *ops = be_lookup(backend);
        struct be *be;
        int r;

        if (!ops)
                return sh_err(err, -ENOENT, "backend '%s' is not built into this runtd", backend);
        be = calloc(1, sizeof(*be));
        if (!be)
                return -ENOMEM;
        be->ops = ops;
        be->handler = strdup(cfg->handler ? cfg->handler : backend);
        if (!be->handler) {
                free(be);
                return -ENOMEM;
        }
        r = ops->init ? ops->init(be, cfg, err) : 0;
        if (r < 0) {
                free(be->handler);
                free(be);
                return sh_err_prefix(err, r, "backend %s", backend);
        }
        *ret = be;
        return 0;
}

struct be *be_free(struct be *be)
{
        if (!be)
                return NULL;
        if (be->ops->fini)
                be->ops->fini(be);
        free(be->handler);
        free(be);
        return NULL;
}

int be_ready(struct be *be, struct sh_error *err)
{
        if (!be->ops->ready)
                return 0;
        return be->ops->ready(be, err);
}

const char *be_config_option(const struct be_config *cfg, const char *key)
{
        for (size_t i = 0; i < cfg->n_options; i++)
                if (strcmp(cfg->option_keys[i], key) == 0)
                        return cfg->option_values[i];
        return NULL;
}
