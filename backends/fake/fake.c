/*
 * The fake backend: pods that exist only in memory, for podmgr's unit tests and for
 * trying the CRI surface on a machine without liblxc privileges. Option "ready" set to
 * "false" makes it report not ready, so tests can see RuntimeReady turn false; option
 * "fail_create" names a pod whose sandbox fails to start, so tests can see the unwinding.
 * Containers live in memory too: a container whose argv[0] is "fail" fails to start, stop
 * ends one with 128+signal, and exec answers argv[1..] on stdout ("exit N" exits N).
 * Stats: a running container burns half a core and holds FAKE_MEM_* bytes; one not running
 * uses nothing; the writable layer is always one 4 KiB file; a pod is its running
 * containers plus one process, with FAKE_NET_* bytes on eth0.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "be-internal.h"

struct fake_sandbox {
        struct fake_sandbox *next;
        char id[65];
        bool running;
};

struct fake_container {
        struct fake_container *next;
        char id[65];
        bool fail_start;
        long long memory_limit; /* from the spec; 0: none */
        struct be_ctr_status st;
};

#define FAKE_MEM_USAGE    (64ULL << 20)
#define FAKE_MEM_INACTIVE (16ULL << 20) /* inactive file pages: usage minus the working set */
#define FAKE_MEM_RSS      (40ULL << 20)
#define FAKE_NET_RX       1000000ULL
#define FAKE_NET_TX       2000000ULL

struct fake_be {
        bool ready;
        char *fail_create;    /* option "fail_create": a pod name whose sandbox fails to start */
        pthread_mutex_t lock; /* protects sandboxes and containers */
        struct fake_sandbox *sandboxes;
        struct fake_container *containers;
};

static long long fake_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct fake_container *find_ctr(struct fake_be *fb, const char *id)
{
        for (struct fake_container *c = fb->containers; c; c = c->next)
                if (strcmp(c->id, id) == 0)
                        return c;
        return NULL;
}

static int fake_container_create(struct be *be, const struct be_container *bc, struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        struct fake_container *c = calloc(1, sizeof(*c));

        (void)err;
        if (!c)
                return -ENOMEM;
        snprintf(c->id, sizeof(c->id), "%s", bc->id);
        c->fail_start = strcmp(bc->spec->argv[0], "fail") == 0;
        c->memory_limit = bc->spec->resources.memory_limit;
        c->st.state = BE_CTR_CREATED;
        pthread_mutex_lock(&fb->lock);
        c->next = fb->containers;
        fb->containers = c;
        pthread_mutex_unlock(&fb->lock);
        return 0;
}

static int fake_container_start(struct be *be, const char *id, struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        struct fake_container *c;
        int r = 0;

        pthread_mutex_lock(&fb->lock);
        c = find_ctr(fb, id);
        if (!c)
                r = sh_err(err, -ENOENT, "fake backend: no container %s", id);
        else if (c->fail_start)
                r = sh_err(err, -EIO, "fake backend: told to fail the start");
        else {
                c->st.state = BE_CTR_RUNNING;
                c->st.pid = 4242;
                c->st.started_ns = fake_now();
        }
        pthread_mutex_unlock(&fb->lock);
        return r;
}

static int fake_container_stop(struct be *be, const char *id, int signal, unsigned timeout_s,
                               struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        struct fake_container *c;

        (void)err;
        pthread_mutex_lock(&fb->lock);
        c = find_ctr(fb, id);
        if (c && c->st.state == BE_CTR_RUNNING) {
                c->st.state = BE_CTR_EXITED;
                c->st.pid = 0;
                c->st.finished_ns = fake_now();
                c->st.exit_code = 128 + (timeout_s ? signal : 9);
                snprintf(c->st.reason, sizeof(c->st.reason), "Error");
        }
        pthread_mutex_unlock(&fb->lock);
        return 0;
}

static int fake_container_remove(struct be *be, const char *id, struct sh_error *err)
{
        struct fake_be *fb = be->priv;

        (void)err;
        pthread_mutex_lock(&fb->lock);
        for (struct fake_container **p = &fb->containers; *p; p = &(*p)->next)
                if (strcmp((*p)->id, id) == 0) {
                        struct fake_container *c = *p;

                        *p = c->next;
                        free(c);
                        break;
                }
        pthread_mutex_unlock(&fb->lock);
        return 0;
}

static int fake_container_status(struct be *be, const char *id, struct be_ctr_status *ret,
                                 struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        struct fake_container *c;
        int r = 0;

        pthread_mutex_lock(&fb->lock);
        c = find_ctr(fb, id);
        if (c)
                *ret = c->st;
        else
                r = sh_err(err, -ENOENT, "fake backend: no container %s", id);
        pthread_mutex_unlock(&fb->lock);
        return r;
}

/* Fills @cg with container @c's made-up figures. Under fb->lock. */
static void fake_cg(const struct fake_container *c, long long now, struct sh_cg_stats *cg)
{
        cg->has_cpu = cg->has_memory = cg->has_pids = true;
        if (c->st.state == BE_CTR_RUNNING) {
                cg->cpu_usage_ns = (unsigned long long)(now - c->st.started_ns) / 2;
                cg->mem_usage = FAKE_MEM_USAGE;
                cg->mem_inactive_file = FAKE_MEM_INACTIVE;
                cg->mem_working_set = FAKE_MEM_USAGE - FAKE_MEM_INACTIVE;
                cg->mem_rss = FAKE_MEM_RSS;
                cg->mem_cache = FAKE_MEM_USAGE - FAKE_MEM_RSS;
                cg->mem_pgfault = 1000;
                cg->mem_pgmajfault = 10;
                cg->pids = 1;
        }
        if (c->memory_limit > 0) {
                cg->has_mem_limit = true;
                cg->mem_limit = (unsigned long long)c->memory_limit;
        }
}

static int fake_container_stats(struct be *be, const char *id, struct be_ctr_stats *ret,
                                struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        struct fake_container *c;
        int r = 0;

        pthread_mutex_lock(&fb->lock);
        c = find_ctr(fb, id);
        if (!c)
                r = sh_err(err, -ENOENT, "fake backend: no container %s", id);
        else {
                ret->timestamp_ns = fake_now();
                fake_cg(c, ret->timestamp_ns, &ret->cg);
        }
        pthread_mutex_unlock(&fb->lock);
        return r;
}

static int fake_container_fs_usage(struct be *be, const char *id, struct sh_fs_usage *ret,
                                   struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        int r = 0;

        pthread_mutex_lock(&fb->lock);
        if (!find_ctr(fb, id))
                r = sh_err(err, -ENOENT, "fake backend: no container %s", id);
        pthread_mutex_unlock(&fb->lock);
        if (r < 0)
                return r;
        snprintf(ret->mountpoint, sizeof(ret->mountpoint), "/fake/containers");
        ret->timestamp_ns = fake_now();
        ret->used_bytes = 4096;
        ret->inodes_used = 1;
        return 0;
}

/*
 * A pod: its running containers' figures plus the sandbox's one process, and an eth0 that
 * has received FAKE_NET_RX and sent FAKE_NET_TX bytes (none on host network).
 */
static int fake_sandbox_stats(struct be *be, const struct be_sandbox_stats_req *req,
                              struct be_sandbox_stats *ret, struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        bool known = false;

        pthread_mutex_lock(&fb->lock);
        for (struct fake_sandbox *sb = fb->sandboxes; sb; sb = sb->next)
                known |= strcmp(sb->id, req->id) == 0;
        ret->timestamp_ns = fake_now();
        ret->cg.has_cpu = ret->cg.has_memory = ret->cg.has_pids = true;
        ret->cg.pids = 1;
        for (size_t i = 0; known && req->container_ids[i]; i++) {
                struct fake_container *c = find_ctr(fb, req->container_ids[i]);
                struct sh_cg_stats one = {0};

                if (c) {
                        fake_cg(c, ret->timestamp_ns, &one);
                        sh_cg_stats_add(&ret->cg, &one);
                }
        }
        pthread_mutex_unlock(&fb->lock);
        if (!known)
                return sh_err(err, -ENOENT, "fake backend: no sandbox %s", req->id);
        if (req->netns && req->netns[0]) {
                ret->ifaces = calloc(1, sizeof(*ret->ifaces));
                if (!ret->ifaces)
                        return -ENOMEM;
                snprintf(ret->ifaces[0].name, sizeof(ret->ifaces[0].name), "eth0");
                ret->ifaces[0].rx_bytes = FAKE_NET_RX;
                ret->ifaces[0].tx_bytes = FAKE_NET_TX;
                ret->ifaces[0].rx_packets = 10;
                ret->ifaces[0].tx_packets = 20;
                ret->n_ifaces = 1;
                ret->has_network = true;
        }
        return 0;
}

/* Echoes its arguments (`exit N`: with exit code N), cut at req->max_output. */
static int fake_exec_sync(struct be *be, const char *id, const struct be_exec_sync_req *req,
                          struct be_exec_result *ret, struct sh_error *err)
{
        struct fake_be *fb = be->priv;
        const char *const *argv = req->argv;
        struct be_ctr_status st = {0};
        size_t len = 0;
        int r;

        r = fake_container_status(be, id, &st, err);
        (void)fb;
        if (r < 0)
                return r;
        if (st.state != BE_CTR_RUNNING)
                return sh_err(err, -EINVAL, "fake backend: container %s is not running", id);
        if (strcmp(argv[0], "exit") == 0 && argv[1])
                ret->exit_code = atoi(argv[1]);
        for (size_t i = 1; argv[i]; i++)
                len += strlen(argv[i]) + 1;
        ret->out = calloc(1, len + 1);
        ret->err = calloc(1, 1);
        if (!ret->out || !ret->err)
                return -ENOMEM;
        for (size_t i = 1; argv[i]; i++) {
                size_t l = strlen(argv[i]);

                memcpy(ret->out + ret->out_len, argv[i], l);
                ret->out_len += l;
                ret->out[ret->out_len++] = argv[i + 1] ? ' ' : '\n';
        }
        if (req->max_output && ret->out_len > req->max_output) {
                ret->dropped = ret->out_len - req->max_output;
                ret->out_len = req->max_output;
                ret->out[ret->out_len] = '\0';
        }
        return 0;
}

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

        while (fb && fb->containers) {
                struct fake_container *c = fb->containers;

                fb->containers = c->next;
                free(c);
        }
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
        .caps = BE_CAP_EXEC | BE_CAP_STATS | BE_CAP_NET_BESIDE,
        .init = fake_init,
        .ready = fake_ready,
        .sandbox_create = fake_sandbox_create,
        .sandbox_stop = fake_sandbox_stop,
        .sandbox_remove = fake_sandbox_remove,
        .sandbox_running = fake_sandbox_running,
        .container_create = fake_container_create,
        .container_start = fake_container_start,
        .container_stop = fake_container_stop,
        .container_remove = fake_container_remove,
        .container_status = fake_container_status,
        .exec_sync = fake_exec_sync,
        .container_stats = fake_container_stats,
        .container_fs_usage = fake_container_fs_usage,
        .sandbox_stats = fake_sandbox_stats,
        .fini = fake_fini,
};
