/*
 * The fake backend: pods that exist only in memory, for podmgr's unit tests and for
 * trying the CRI surface on a machine without liblxc privileges. Option "ready" set to
 * "false" makes it report not ready, so tests can see RuntimeReady turn false; option
 * "fail_create" names a pod whose sandbox fails to start, so tests can see the unwinding.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be-internal.h"

struct fake_sandbox {
        struct fake_sandbox *next;
        char id[65];
        bool running;
};

struct fake_be {
        bool ready;
        char *fail_create;    /* option "fail_create": a pod name whose sandbox fails to start */
        pthread_mutex_t lock; /* protects sandboxes */
        struct fake_sandbox *sandboxes;
};

static struct fake_sandbox *find(struct fake_be *fb, const char *id)
{
        for (struct fake_sandbox *s = fb->sandboxes; s; s = s->next)
                if (strcmp(s->id, id) == 0)
                        return s;
        return NULL;
}

static int fake_sandbox_create(struct be *be, const struct be_sandbox *sb, struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        struct fake_sandbox *s;

        if (fb->fail_create && strcmp(fb->fail_create, sb->spec->name) == 0)
                return sh_err(err, -EIO, "fake backend: told to fail pod %s", sb->spec->name);
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        snprintf(s->id, sizeof(s->id), "%s", sb->id);
        s->running = true;
        pthread_mutex_lock(&fb->lock);
        s->next = fb->sandboxes;
        fb->sandboxes = s;
        pthread_mutex_unlock(&fb->lock);
        return 0;
}

static int fake_sandbox_stop(struct be *be, const char *id, unsigned timeout_s,
                             struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        struct fake_sandbox *s;

        (void)timeout_s;
        (void)err;
        pthread_mutex_lock(&fb->lock);
        s = find(fb, id);
        if (s)
                s->running = false;
        pthread_mutex_unlock(&fb->lock);
        return 0;
}

static int fake_sandbox_remove(struct be *be, const char *id, struct sh_error *err)
{
        struct fake_be *fb = be->priv;

        (void)err;
        pthread_mutex_lock(&fb->lock);
        for (struct fake_sandbox **p = &fb->sandboxes; *p; p = &(*p)->next)
                if (strcmp((*p)->id, id) == 0) {
                        struct fake_sandbox *s = *p;

                        *p = s->next;
                        free(s);
                        break;
                }
        pthread_mutex_unlock(&fb->lock);
        return 0;
}

static int fake_sandbox_running(struct be *be, const char *id, bool *ret, struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        struct fake_sandbox *s;
        int r = 0;

        pthread_mutex_lock(&fb->lock);
        s = find(fb, id);
        if (s)
                *ret = s->running;
        else
                r = sh_err(err, -ENOENT, "fake backend: no sandbox %s", id);
        pthread_mutex_unlock(&fb->lock);
        return r;
}

static int fake_init(struct be *be, const struct be_config *cfg, struct sh_error *err)
{
        const char *ready = be_config_option(cfg, "ready");
        struct fake_be *fb = calloc(1, sizeof(*fb));

        (void)err;
        if (!fb)
                return -ENOMEM;
        fb->ready = !ready || strcmp(ready, "false") != 0;
        if (be_config_option(cfg, "fail_create"))
                fb->fail_create = strdup(be_config_option(cfg, "fail_create"));
        pthread_mutex_init(&fb->lock, NULL);
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
        struct fake_be *fb = be->priv;

        while (fb && fb->sandboxes) {
                struct fake_sandbox *s = fb->sandboxes;

                fb->sandboxes = s->next;
                free(s);
        }
        if (fb) {
                pthread_mutex_destroy(&fb->lock);
                free(fb->fail_create);
        }
        free(fb);
        be->priv = NULL;
}

const struct be_ops be_fake_ops = {
        .name = "fake",
        .caps = BE_CAP_EXEC,
        .init = fake_init,
        .ready = fake_ready,
        .sandbox_create = fake_sandbox_create,
        .sandbox_stop = fake_sandbox_stop,
        .sandbox_remove = fake_sandbox_remove,
        .sandbox_running = fake_sandbox_running,
        .fini = fake_fini,
};
