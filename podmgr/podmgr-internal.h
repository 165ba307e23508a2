#pragma once

#include <sqlite3.h>

#include "be.h"
#include "podmgr.h"

/* Accessors sandbox.c uses (podmgr.c owns the manager). */
struct net_mgr *pod_mgr_net(struct pod_mgr *pm);
const struct runt_config *pod_mgr_config(struct pod_mgr *pm);
sqlite3 *pod_mgr_db(struct pod_mgr *pm);
/* The backend of handler @handler ("" = default): -EINVAL unknown, -EAGAIN not started. */
int pod_mgr_backend(struct pod_mgr *pm, const char *handler, struct be **ret, struct sh_error *err);

/*
 * Per-object locks, so that calls on one pod or container run one at a time while other
 * pods go on unhindered. Container calls that change a container hold its pod's lock
 * shared and then its own ('c') exclusive; RunPodSandbox, StopPodSandbox and
 * RemovePodSandbox hold the pod's ('p') exclusive, which waits for the container calls of
 * that pod. Always pod before container. @id is a full id. NULL only on -ENOMEM. Blocks.
 */
struct pod_lock;
struct pod_lock *pod_lock_take(struct pod_mgr *pm, char kind, const char *id, bool exclusive);
/* Releases @l (NULL is fine). Returns NULL. */
struct pod_lock *pod_lock_release(struct pod_lock *l);
static inline void pod_lock_releasep(struct pod_lock **l)
{
        *l = pod_lock_release(*l);
}
#define _cleanup_pod_lock_ __attribute__((cleanup(pod_lock_releasep)))

/*
 * The stats collector (stats.c): a thread that samples every running container and ready
 * pod every stats.interval through the backends and keeps the last two samples of each in
 * memory, which the stats RPCs read. new starts the thread (its first round at once); free
 * stops and joins it, waiting for a round in progress. Both under no podmgr lock.
 */
struct pod_stats;
int pod_stats_new(struct pod_mgr *pm, struct pod_stats **ret, struct sh_error *err);
struct pod_stats *pod_stats_free(struct pod_stats *st);
/* The manager's collector (NULL while pod_mgr_new has not made it yet). */
struct pod_stats *pod_mgr_stats(struct pod_mgr *pm);

/* Shared by sandbox.c and container.c. */
#include <json-c/json.h>

/* Runs @sql with text @args (NULL-terminated); -EEXIST on a constraint, else 0 or -EIO. */
int pod_db_run(struct pod_mgr *pm, const char *sql, const char *const *args, struct sh_error *err);
int pod_db_fail(struct pod_mgr *pm, struct sh_error *err, const char *what);
long long pod_now_ns(void); /* CLOCK_REALTIME */
/* The first column of the first row of @sql with one text parameter @arg (malloc'd), or NULL. */
char *pod_db_text(struct pod_mgr *pm, const char *sql, const char *arg);
/* The two text columns of every row of @sql, flat and NULL-terminated; NULL on error. */
char **pod_db_pairs(struct pod_mgr *pm, const char *sql);
/* Does every pair of @want appear in @have? (a CRI label selector) */
bool pod_labels_match(const struct be_kv *have, size_t n_have, const struct be_kv *want,
                      size_t n_want);
json_object *pod_strv_json(char *const *v);
json_object *pod_kv_json(const struct be_kv *v, size_t n);
/* Readers of JSON written by the above; missing keys give "", 0, empty. */
char *pod_jstr(json_object *o, const char *key);
int64_t pod_jint(json_object *o, const char *key);
char **pod_jstrv(json_object *o, const char *key);
struct be_kv *pod_jkv(json_object *o, const char *key, size_t *ret_n);
/* Loads the sandbox @id names (an id or a unique prefix); -ENOENT when none. */
int pod_sandbox_load(struct pod_mgr *pm, const char *id, struct pod_sandbox_info **ret,
                     struct sh_error *err);
/* The pod's resolv.conf/hostname/hosts dir: <root_dir>/pods/<id>, or <run_dir>/pods/<id>
 * for a pod an older runtd made there (malloc'd; NULL on ENOMEM). */
char *pod_dir_of(struct pod_mgr *pm, const char *id);
/* Stops (SIGKILL, @timeout_s grace) or removes every container of sandbox @id. */
int pod_containers_stop_all(struct pod_mgr *pm, const char *sandbox_id, long long timeout_s,
                            struct sh_error *err);
int pod_containers_remove_all(struct pod_mgr *pm, const char *sandbox_id, struct sh_error *err);
/* After a restart: removes containers a crash left half-created. */
void pod_containers_recover(struct pod_mgr *pm);

/* ---------------------------------------------------------------- the view (view.c) */

/*
 * The in-memory view of every sandbox and container (those being created aside), which
 * List*, *Status and the stats read; see view.c. Mutators record a change and hand its
 * events to the sink; the store is written by their callers.
 */
struct pod_view;
struct pod_view *pod_mgr_view(struct pod_mgr *pm);
bool pod_mgr_has_sink(struct pod_mgr *pm);
void pod_mgr_emit(struct pod_mgr *pm, const struct pod_event *ev);
/* Takes (@lock) or releases the lock events are handed to the sink under. */
void pod_view_emit_lock(struct pod_mgr *pm, bool lock);

int pod_view_new(struct pod_view **ret);
struct pod_view *pod_view_free(struct pod_view *v);
int pod_view_start(struct pod_mgr *pm);
/* Fills the view from the store, as it is (pod_mgr_new). */
int pod_view_load(struct pod_mgr *pm, struct sh_error *err);
/* Starts the watcher, asks the backends what changed while runtd was away and watches what
 * runs (pod_mgr_recover, last). */
int pod_view_resume(struct pod_mgr *pm, struct sh_error *err);

int pod_sandbox_info_copy(const struct pod_sandbox_info *i, struct pod_sandbox_info **ret);
int pod_container_info_copy(const struct pod_container_info *i, struct pod_container_info **ret);
/*
 * A brief copy: what stats, metrics and a list's attributes read (ids, state and exit,
 * name, attempt, image, labels, annotations, tty/stdin, scalar limits); the rest of the spec
 * empty. A tenth of a full copy's work for the collector and the stats lists.
 */
int pod_container_info_copy_brief(const struct pod_container_info *i,
                                  struct pod_container_info **ret);
/* pod_container_list with brief copies. */
int pod_container_list_brief(struct pod_mgr *pm, const struct pod_container_filter *f,
                             struct pod_container_info ***ret, size_t *ret_n);

/* Takes @i over (a ready sandbox); events CREATED and STARTED unless @quiet. */
int pod_view_sb_add(struct pod_mgr *pm, struct pod_sandbox_info *i, bool quiet);
/*
 * READY -> NOTREADY (event STOPPED); true when it changed. @lost: it stopped by itself and
 * may return (BE_CAP_SB_RETURNS), so it is polled; false (a stop) ends that for good.
 */
bool pod_view_sb_not_ready(struct pod_mgr *pm, const char *id, bool lost);
/* A lost sandbox runs again: NOTREADY -> READY (event STARTED); true when it changed. */
bool pod_view_sb_back(struct pod_mgr *pm, const char *id);
/* Is sandbox @id lost (see pod_view_sb_not_ready)? */
bool pod_view_sb_lost(struct pod_mgr *pm, const char *id);

/* Takes full id @id out (event DELETED). */
void pod_view_sb_remove(struct pod_mgr *pm, const char *id);
/* A copy of the sandbox @id names (id or unique prefix); -ENOENT. */
int pod_view_sb_get(struct pod_mgr *pm, const char *id, struct pod_sandbox_info **ret,
                    struct sh_error *err);
/* Calls @fn on every sandbox, oldest first, with the view held shared; @fn < 0 stops. */
int pod_view_sb_each(struct pod_mgr *pm, int (*fn)(const struct pod_sandbox_info *i, void *data),
                     void *data);

/* Takes @i over (a created container of handler @handler); event CREATED. */
int pod_view_ctr_add(struct pod_mgr *pm, struct pod_container_info *i, const char *handler);
/*
 * Records what the backend says of container @id (@st NULL: it could not say). Events
 * STARTED and STOPPED as it goes. True when it exited just now, with *@ret_exited (when not
 * NULL) a copy of it for the store.
 */
bool pod_view_ctr_apply(struct pod_mgr *pm, const char *id, const struct be_ctr_status *st,
                        struct pod_container_info **ret_exited);
void pod_view_ctr_set_resources(struct pod_mgr *pm, const char *id, const struct be_resources *res);
void pod_view_ctr_remove(struct pod_mgr *pm, const char *id);
int pod_view_ctr_get(struct pod_mgr *pm, const char *id, struct pod_container_info **ret,
                     char **ret_handler, struct sh_error *err);
int pod_view_ctr_each(struct pod_mgr *pm, int (*fn)(const struct pod_container_info *i, void *data),
                      void *data);
/* The ids of the containers of @sandbox_id (NULL: all); NULL on ENOMEM. */
char **pod_view_ctr_ids(struct pod_mgr *pm, const char *sandbox_id);
void pod_view_counts(struct pod_mgr *pm, size_t ret_pods[3], size_t ret_ctrs[4]);
/* Arms the exit watch of container ('c') or sandbox ('s') @id (a full id). */
void pod_view_watch(struct pod_mgr *pm, char kind, const char *id);

/*
 * Ask the backend once and record what changed (container.c, sandbox.c). No locks needed.
 * @rearm: then make sure it stays covered: a watch again while it runs and has none, or
 * polling when the backend could not tell.
 */
void pod_ctr_look(struct pod_mgr *pm, const char *id, bool rearm);
void pod_sb_look(struct pod_mgr *pm, const char *id, bool rearm);
/* Does running container ('c') / ready sandbox ('s') @id lack a watch and the polling? */
bool pod_view_unwatched(struct pod_mgr *pm, char kind, const char *id);
/* Has @id asked every WATCH_POLL_MS (@poll) or not. */
void pod_view_poll(struct pod_mgr *pm, char kind, const char *id, bool poll);
/* Every sandbox / container the store has (but creating ones), for pod_view_load. */
int pod_db_sandboxes(struct pod_mgr *pm, struct pod_sandbox_info ***ret, size_t *ret_n,
                     struct sh_error *err);
int pod_db_containers(struct pod_mgr *pm, struct pod_container_info ***ret, char ***ret_handlers,
                      size_t *ret_n, struct sh_error *err);
