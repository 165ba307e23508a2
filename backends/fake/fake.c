/*
 * The fake backend: pods that exist only in memory, for podmgr's unit tests and for
 * trying the CRI surface on a machine without liblxc privileges. Option "ready" set to
 * "false" makes it report not ready, so tests can see RuntimeReady turn false.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "be-internal.h"

struct fake_be {
        bool ready;
};

static int fake_init(struct be *be, const struct be_config *cfg, struct sh_error *err)
{
        const char *ready = be_config_option(cfg, "ready");
        struct fake_be *fb = calloc(1, sizeof(*fb));

        (void)err;
        if (!fb)
                return -ENOMEM;
        fb->ready = !ready || strcmp(ready, "false") != 0;
        be->priv = fb;
        return 0;
}

static int fake_ready(struct be *be, struct sh_error *err)
{
        struct fake_be *fb = be->priv;

        return fb->ready ? 0 : sh_err(err, -EAGAIN, "fake backend configured not ready");
}

static void fake_fini(struct be *be)
{
        free(be->priv);
        be->priv = NULL;
}

const struct be_ops be_fake_ops = {
        .name = "fake",
        .caps = BE_CAP_EXEC,
        .init = fake_init,
        .ready = fake_ready,
        .fini = fake_fini,
};
