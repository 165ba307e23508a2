#include "podmgr.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "be.h"
#include "cleanup.h"
#include "podmgr-internal.h"
#include "store.h"
#include "strutil.h"

struct pod_handler {
        const struct runt_handler *conf; /* borrowed from the config */
        struct be *be;                   /* NULL when it failed to start */
        char *error;                     /* why it failed, or NULL */
};

/* The lock of one pod or container; lives in pod_mgr.locks while someone holds or waits. */
struct pod_lock {
        struct pod_mgr *pm;
        struct pod_lock *next;
        unsigned refs;        /* holders and waiters; under pm->locks_mu */
        pthread_rwlock_t rw;  /* writers first, so a stop is not starved by container calls */
        char key[2 + 64 + 1]; /* "p:<id>" or "c:<id>" */
};

struct pod_mgr {
        pthread_mutex_t locks_mu; /* protects locks (the list, not the locks themselves) */
        struct pod_lock *locks;
        const struct runt_config *cfg;
        struct net_mgr *net;
        struct pod_store *store;
        char *containers_dir; /* writable layers: <root_dir>/containers */
        char *db_path;
        size_t n_handlers;
        struct pod_handler *handlers;
        struct pod_stats *stats;        /* the stats collector (stats.c) */
        _Atomic(pod_event_fn) event_fn; /* set under the view's event lock (view.c) */
        void *event_data;
        struct pod_view *view;      /* view.c */
        struct sh_metrics *metrics; /* borrowed, for the backends; NULL: off */
};

static int start_handler(struct pod_mgr *pm, struct pod_handler *h)
{
        struct be_config bc = {
                .handler = h->conf->name,
                .root_dir = pm->cfg->root_dir,
                .state_dir = pm->cfg->state_dir,
                .run_dir = pm->cfg->run_dir,
                .n_options = h->conf->n_options,
                .option_keys = h->conf->option_keys,
                .option_values = h->conf->option_values,
                .metrics = pm->metrics,
        };
        struct sh_error err = {0};
        int r;

        r = be_new(h->conf->backend, &bc, &h->be, &err);
        if (r < 0) {
                h->error = strdup(err.msg[0] ? err.msg : strerror(-r));
                return r;
        }
        return 0;
}

int pod_mgr_new(const struct runt_config *cfg, struct pod_mgr **ret, struct sh_error *err)
{
        return pod_mgr_new_with_metrics(cfg, NULL, ret, err);
}

int pod_mgr_new_with_metrics(const struct runt_config *cfg, struct sh_metrics *metrics,
                             struct pod_mgr **ret, struct sh_error *err)
{
        _cleanup_free_ char *db = NULL;
        struct pod_mgr *pm;
        int r;

        r = sh_mkdir_p(cfg->state_dir, 0700);
        if (r < 0)
                return sh_err(err, r, "create state dir '%s': %s", cfg->state_dir, strerror(-r));
        r = sh_mkdir_p(cfg->root_dir, 0700);
        if (r < 0)
                return sh_err(err, r, "create root dir '%s': %s", cfg->root_dir, strerror(-r));
        pm = calloc(1, sizeof(*pm));
        db = sh_path_join(cfg->state_dir, "runt.db");
        if (!pm || !db) {
                free(pm);
                return -ENOMEM;
        }
        pthread_mutex_init(&pm->locks_mu, NULL);
        pm->cfg = cfg;
        pm->metrics = metrics;
        pm->db_path = strdup(db);
        r = pod_view_new(&pm->view);
        if (r < 0) {
                pod_mgr_free(pm);
                return r;
        }
        pm->containers_dir = sh_path_join(cfg->root_dir, "containers");
        if (!pm->containers_dir || !pm->db_path) {
                pod_mgr_free(pm);
                return -ENOMEM;
        }
        r = sh_mkdir_p(pm->containers_dir, 0700);
        if (r < 0) {
                sh_err(err, r, "create '%s': %s", pm->containers_dir, strerror(-r));
                pod_mgr_free(pm);
                return r;
        }
        r = pod_store_open(db, &pm->store, err);
        if (r < 0) {
                pod_mgr_free(pm);
                return sh_err_prefix(err, r, "state store");
        }
        pm->handlers = calloc(cfg->n_handlers ? cfg->n_handlers : 1, sizeof(*pm->handlers));
        if (!pm->handlers) {
                pod_mgr_free(pm);
                return -ENOMEM;
        }
        pm->n_handlers = cfg->n_handlers;
        for (size_t i = 0; i < cfg->n_handlers; i++) {
                pm->handlers[i].conf = &cfg->handlers[i];
                r = start_handler(pm, &pm->handlers[i]);
                if (r == -ENOMEM) {
                        pod_mgr_free(pm);
                        return r;
                }
        }
        r = pod_view_load(pm, err);
        if (r == 0)
                r = pod_stats_new(pm, &pm->stats, err);
        if (r < 0) {
                pod_mgr_free(pm);
                return r;
        }
        *ret = pm;
        return 0;
}

struct pod_mgr *pod_mgr_free(struct pod_mgr *pm)
{
        if (!pm)
                return NULL;
        /* First the collector (it reads the view and calls the backends), then the watcher. */
        pm->stats = pod_stats_free(pm->stats);
        pm->view = pod_view_free(pm->view);
        for (size_t i = 0; i < pm->n_handlers; i++) {
                be_free(pm->handlers[i].be);
                free(pm->handlers[i].error);
        }
        free(pm->handlers);
        pod_store_close(pm->store);
        free(pm->containers_dir);
        free(pm->db_path);
        pthread_mutex_destroy(&pm->locks_mu);
        free(pm);
        return NULL;
}

struct pod_lock *pod_lock_take(struct pod_mgr *pm, char kind, const char *id, bool exclusive)
{
        struct pod_lock *l;
        char key[sizeof(l->key)];

        if (strlen(id) > 64)
                return NULL;
        snprintf(key, sizeof(key), "%c:%s", kind, id);
        pthread_mutex_lock(&pm->locks_mu);
        for (l = pm->locks; l && strcmp(l->key, key) != 0; l = l->next)
                ;
        if (!l) {
                pthread_rwlockattr_t a;

                l = calloc(1, sizeof(*l));
                if (!l) {
                        pthread_mutex_unlock(&pm->locks_mu);
                        return NULL;
                }
                pthread_rwlockattr_init(&a);
                pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
                pthread_rwlock_init(&l->rw, &a);
                pthread_rwlockattr_destroy(&a);
                l->pm = pm;
                memcpy(l->key, key, sizeof(key));
                l->next = pm->locks;
                pm->locks = l;
        }
        l->refs++;
        pthread_mutex_unlock(&pm->locks_mu);
        if (exclusive)
                pthread_rwlock_wrlock(&l->rw);
        else
                pthread_rwlock_rdlock(&l->rw);
        return l;
}

struct pod_lock *pod_lock_release(struct pod_lock *l)
{
        struct pod_mgr *pm;

        if (!l)
                return NULL;
        pm = l->pm;
        pthread_rwlock_unlock(&l->rw);
        pthread_mutex_lock(&pm->locks_mu);
        if (--l->refs == 0) {
                struct pod_lock **pp = &pm->locks;

                while (*pp != l)
                        pp = &(*pp)->next;
                *pp = l->next;
                pthread_rwlock_destroy(&l->rw);
                free(l);
        }
        pthread_mutex_unlock(&pm->locks_mu);
        return NULL;
}

static struct pod_handler *find_handler(struct pod_mgr *pm, const char *name)
{
        if (!name || !name[0])
                name = pm->cfg->default_runtime;
        for (size_t i = 0; i < pm->n_handlers; i++)
                if (strcmp(pm->handlers[i].conf->name, name) == 0)
                        return &pm->handlers[i];
        return NULL;
}

static struct pod_handler *find_handler(struct pod_mgr *pm, const char *name);

void pod_mgr_set_net(struct pod_mgr *pm, struct net_mgr *net)
{
        pm->net = net;
}

struct net_mgr *pod_mgr_net(struct pod_mgr *pm)
{
        return pm->net;
}

const struct runt_config *pod_mgr_config(struct pod_mgr *pm)
{
        return pm->cfg;
}

sqlite3 *pod_mgr_db(struct pod_mgr *pm)
{
        return pod_store_db(pm->store);
}

int pod_mgr_backend(struct pod_mgr *pm, const char *handler, struct be **ret, struct sh_error *err)
{
        struct pod_handler *h = find_handler(pm, handler);

        if (!h)
                return sh_err(err, -EINVAL, "unknown runtime handler '%s'", handler ? handler : "");
        if (!h->be)
                return sh_err(err, -EAGAIN, "runtime handler '%s' is not available: %s",
                              h->conf->name, h->error ? h->error : "not started");
        *ret = h->be;
        return 0;
}

struct pod_stats *pod_mgr_stats(struct pod_mgr *pm)
{
        return pm->stats;
}

const char *pod_mgr_store_path(struct pod_mgr *pm)
{
        return pm->db_path;
}

const char *pod_mgr_handler_error(struct pod_mgr *pm, const char *name)
{
        struct pod_handler *h = find_handler(pm, name);

        if (!h)
                return "no such handler";
        return h->error;
}

void pod_mgr_condition(struct pod_mgr *pm, struct sh_condition *ret)
{
        struct pod_handler *h = find_handler(pm, NULL);
        struct sh_error err = {0};

        memset(ret, 0, sizeof(*ret));
        snprintf(ret->reason, sizeof(ret->reason), "RuntimeNotReady");
        if (!h) {
                snprintf(ret->message, sizeof(ret->message), "default handler '%s' not configured",
                         pm->cfg->default_runtime);
                return;
        }
        if (!h->be) {
                snprintf(ret->message, sizeof(ret->message), "handler '%s': %s", h->conf->name,
                         h->error);
                return;
        }
        if (be_ready(h->be, &err) < 0) {
                snprintf(ret->message, sizeof(ret->message), "handler '%s': %s", h->conf->name,
                         err.msg);
                return;
        }
        ret->ok = true;
        ret->reason[0] = '\0';
}

int pod_mgr_fs_usage(struct pod_mgr *pm, struct sh_fs_usage *ret, struct sh_error *err)
{
        return sh_fs_usage_scan(pm->containers_dir, ret, err);
}

char *pod_mgr_info_json(struct pod_mgr *pm)
{
        json_object *o = json_object_new_object();
        json_object *hs = json_object_new_array();
        char *s;

        json_object_object_add(o, "defaultRuntime",
                               json_object_new_string(pm->cfg->default_runtime));
        for (size_t i = 0; i < pm->n_handlers; i++) {
                struct pod_handler *h = &pm->handlers[i];
                json_object *j = json_object_new_object();
                struct sh_error err = {0};

                json_object_object_add(j, "name", json_object_new_string(h->conf->name));
                json_object_object_add(j, "backend", json_object_new_string(h->conf->backend));
                if (!h->be)
                        json_object_object_add(j, "error", json_object_new_string(h->error));
                else if (be_ready(h->be, &err) < 0)
                        json_object_object_add(j, "error", json_object_new_string(err.msg));
                json_object_object_add(j, "ready", json_object_new_boolean(h->be && err.code == 0));
                json_object_array_add(hs, j);
        }
        json_object_object_add(o, "handlers", hs);
        json_object_object_add(o, "stateSchema", json_object_new_int(pod_store_version(pm->store)));
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}

void pod_mgr_set_event_sink(struct pod_mgr *pm, pod_event_fn fn, void *data)
{
        /* Under the event lock: an event being handed over finishes with the old sink. */
        pod_view_emit_lock(pm, true);
        atomic_store(&pm->event_fn, NULL);
        pm->event_data = data;
        atomic_store(&pm->event_fn, fn);
        pod_view_emit_lock(pm, false);
}

void pod_mgr_state_counts(struct pod_mgr *pm, size_t ret_pods[3], size_t ret_ctrs[4])
{
        pod_view_counts(pm, ret_pods, ret_ctrs);
}

struct pod_view *pod_mgr_view(struct pod_mgr *pm)
{
        return pm->view;
}

bool pod_mgr_has_sink(struct pod_mgr *pm)
{
        return atomic_load(&pm->event_fn) != NULL;
}

void pod_mgr_emit(struct pod_mgr *pm, const struct pod_event *ev)
{
        pod_event_fn fn = atomic_load(&pm->event_fn);

        if (fn)
                fn(pm->event_data, ev);
}
