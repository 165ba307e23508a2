/*
 * Pod sandboxes: the RunPodSandbox / Stop / Remove / Status / List state machine over the
 * store, netmgr and the handler's backend. The record is written first ("creating", which
 * reserves the name through the UNIQUE column), so a crash part-way leaves a row that says
 * what to undo; it turns "ready" only when every step is done.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#define SH_LOG_MODULE "podmgr"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "netmgr.h"
#include "podmgr-internal.h"
#include "strutil.h"
#include "validate.h"

#define STOP_TIMEOUT_S 10

static enum pod_state state_parse(const char *s)
{
        return sh_streq(s, "ready")      ? POD_READY
               : sh_streq(s, "notready") ? POD_NOTREADY
                                         : POD_CREATING;
}

/* ---------------------------------------------------------------- spec <-> JSON */

json_object *pod_strv_json(char *const *v)
{
        json_object *a = json_object_new_array();

        for (size_t i = 0; v && v[i]; i++)
                json_object_array_add(a, json_object_new_string(v[i]));
        return a;
}

json_object *pod_kv_json(const struct be_kv *v, size_t n)
{
        json_object *o = json_object_new_object();

        for (size_t i = 0; i < n; i++)
                json_object_object_add(o, v[i].key, json_object_new_string(v[i].value));
        return o;
}

static char *spec_to_json(const struct be_sandbox_spec *s)
{
        json_object *o = json_object_new_object(), *ports = json_object_new_array();
        char *t;

        json_object_object_add(o, "name", json_object_new_string(s->name));
        json_object_object_add(o, "uid", json_object_new_string(s->uid));
        json_object_object_add(o, "namespace", json_object_new_string(s->namespace));
        json_object_object_add(o, "attempt", json_object_new_int64(s->attempt));
        json_object_object_add(o, "handler", json_object_new_string(s->handler));
        json_object_object_add(o, "hostname", json_object_new_string(s->hostname));
        json_object_object_add(o, "logDirectory", json_object_new_string(s->log_directory));
        json_object_object_add(o, "cgroupParent", json_object_new_string(s->cgroup_parent));
        json_object_object_add(o, "dnsServers", pod_strv_json(s->dns_servers));
        json_object_object_add(o, "dnsSearches", pod_strv_json(s->dns_searches));
        json_object_object_add(o, "dnsOptions", pod_strv_json(s->dns_options));
        for (size_t i = 0; i < s->n_ports; i++) {
                json_object *p = json_object_new_object();

                json_object_object_add(p, "protocol", json_object_new_string(s->ports[i].protocol));
                json_object_object_add(p, "containerPort",
                                       json_object_new_int(s->ports[i].container_port));
                json_object_object_add(p, "hostPort", json_object_new_int(s->ports[i].host_port));
                json_object_object_add(p, "hostIP", json_object_new_string(s->ports[i].host_ip));
                json_object_array_add(ports, p);
        }
        json_object_object_add(o, "ports", ports);
        json_object_object_add(o, "labels", pod_kv_json(s->labels, s->n_labels));
        json_object_object_add(o, "annotations", pod_kv_json(s->annotations, s->n_annotations));
        json_object_object_add(o, "sysctls", pod_kv_json(s->sysctls, s->n_sysctls));
        json_object_object_add(o, "netMode", json_object_new_int(s->net_mode));
        json_object_object_add(o, "pidMode", json_object_new_int(s->pid_mode));
        json_object_object_add(o, "ipcMode", json_object_new_int(s->ipc_mode));
        json_object_object_add(o, "privileged", json_object_new_boolean(s->privileged));
        t = sh_json_to_string(o);
        json_object_put(o);
        return t;
}

char *pod_jstr(json_object *o, const char *key)
{
        const char *v = NULL;

        sh_json_get_string(o, key, "sandbox spec", &v, NULL);
        return strdup(v ? v : "");
}

int64_t pod_jint(json_object *o, const char *key)
{
        int64_t v = 0;

        sh_json_get_int64(o, key, "sandbox spec", &v, NULL);
        return v;
}

char **pod_jstrv(json_object *o, const char *key)
{
        json_object *a = NULL;
        size_t n;
        char **v;

        sh_json_get_array(o, key, "sandbox spec", &a, NULL);
        n = a ? json_object_array_length(a) : 0;
        v = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; v && i < n; i++)
                v[i] = strdup(json_object_get_string(json_object_array_get_idx(a, i)) ?: "");
        return v;
}

struct be_kv *pod_jkv(json_object *o, const char *key, size_t *ret_n)
{
        json_object *m = NULL;
        struct be_kv *v;
        size_t n = 0;

        sh_json_get_object(o, key, "sandbox spec", &m, NULL);
        v = calloc(m ? (size_t)json_object_object_length(m) + 1 : 1, sizeof(*v));
        if (v && m) {
                json_object_object_foreach (m, k, val) {
                        v[n].key = strdup(k);
                        v[n].value = strdup(json_object_get_string(val) ?: "");
                        n++;
                }
        }
        *ret_n = n;
        return v;
}

static int spec_from_json(const char *text, struct be_sandbox_spec *s)
{
        json_object *o = NULL, *ports = NULL;

        memset(s, 0, sizeof(*s));
        if (sh_json_parse(text, strlen(text), "sandbox spec", &o, NULL) < 0)
                return -EIO;
        s->name = pod_jstr(o, "name");
        s->uid = pod_jstr(o, "uid");
        s->namespace = pod_jstr(o, "namespace");
        s->attempt = (unsigned)pod_jint(o, "attempt");
        s->handler = pod_jstr(o, "handler");
        s->hostname = pod_jstr(o, "hostname");
        s->log_directory = pod_jstr(o, "logDirectory");
        s->cgroup_parent = pod_jstr(o, "cgroupParent");
        s->dns_servers = pod_jstrv(o, "dnsServers");
        s->dns_searches = pod_jstrv(o, "dnsSearches");
        s->dns_options = pod_jstrv(o, "dnsOptions");
        sh_json_get_array(o, "ports", "sandbox spec", &ports, NULL);
        s->n_ports = ports ? json_object_array_length(ports) : 0;
        s->ports = calloc(s->n_ports + 1, sizeof(*s->ports));
        for (size_t i = 0; s->ports && i < s->n_ports; i++) {
                json_object *p = json_object_array_get_idx(ports, i);

                s->ports[i].protocol = pod_jstr(p, "protocol");
                s->ports[i].container_port = (int)pod_jint(p, "containerPort");
                s->ports[i].host_port = (int)pod_jint(p, "hostPort");
                s->ports[i].host_ip = pod_jstr(p, "hostIP");
        }
        s->labels = pod_jkv(o, "labels", &s->n_labels);
        s->annotations = pod_jkv(o, "annotations", &s->n_annotations);
        s->sysctls = pod_jkv(o, "sysctls", &s->n_sysctls);
        s->net_mode = (enum be_ns_mode)pod_jint(o, "netMode");
        s->pid_mode = (enum be_ns_mode)pod_jint(o, "pidMode");
        s->ipc_mode = (enum be_ns_mode)pod_jint(o, "ipcMode");
        sh_json_get_bool(o, "privileged", "sandbox spec", &s->privileged, NULL);
        json_object_put(o);
        if (!s->name || !s->uid || !s->namespace || !s->handler || !s->hostname ||
            !s->log_directory || !s->cgroup_parent || !s->dns_servers || !s->dns_searches ||
            !s->dns_options || !s->ports || !s->labels || !s->annotations || !s->sysctls) {
                be_sandbox_spec_done(s);
                return -ENOMEM;
        }
        return 0;
}

/* ---------------------------------------------------------------- store */

int pod_db_fail(struct pod_mgr *pm, struct sh_error *err, const char *what)
{
        return sh_err(err, -EIO, "state store: %s: %s", what, sqlite3_errmsg(pod_mgr_db(pm)));
}

int pod_db_run(struct pod_mgr *pm, const char *sql, const char *const *args, struct sh_error *err)
{
        sqlite3_stmt *st = NULL;
        int rc;

        if (sqlite3_prepare_v2(pod_mgr_db(pm), sql, -1, &st, NULL) != SQLITE_OK)
                return pod_db_fail(pm, err, sql);
        for (int i = 0; args && args[i]; i++)
                sqlite3_bind_text(st, i + 1, args[i], -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc == SQLITE_CONSTRAINT)
                return -EEXIST;
        return rc == SQLITE_DONE ? 0 : pod_db_fail(pm, err, sql);
}

static char *reserved_name(const struct be_sandbox_spec *s)
{
        return sh_strdup_printf("%s_%s_%s_%u", s->name, s->namespace, s->uid, s->attempt);
}

long long pod_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Builds an info from the current row of a "SELECT id, state, created_ns, netns, spec,
 * status FROM sandboxes" statement. */
static struct pod_sandbox_info *row_info(sqlite3_stmt *st)
{
        struct pod_sandbox_info *i = calloc(1, sizeof(*i));
        const char *status = (const char *)sqlite3_column_text(st, 5);
        json_object *o = NULL, *ips = NULL;

        if (!i)
                return NULL;
        i->id = strdup((const char *)sqlite3_column_text(st, 0) ?: "");
        i->state = state_parse((const char *)sqlite3_column_text(st, 1));
        i->created_ns = sqlite3_column_int64(st, 2);
        i->netns = strdup((const char *)sqlite3_column_text(st, 3) ?: "");
        if (!i->id || !i->netns ||
            spec_from_json((const char *)sqlite3_column_text(st, 4) ?: "{}", &i->spec) < 0)
                return pod_sandbox_info_free(i);
        if (status && sh_json_parse(status, strlen(status), "sandbox status", &o, NULL) == 0)
                sh_json_get_array(o, "ips", "sandbox status", &ips, NULL);
        i->ips = calloc((ips ? json_object_array_length(ips) : 0) + 1, sizeof(char *));
        for (size_t k = 0; i->ips && ips && k < json_object_array_length(ips); k++)
                i->ips[k] = strdup(json_object_get_string(json_object_array_get_idx(ips, k)) ?: "");
        json_object_put(o);
        if (!i->ips)
                return pod_sandbox_info_free(i);
        return i;
}

#define SELECT_SANDBOX "SELECT id, state, created_ns, netns, spec, status FROM sandboxes"

/* The sandbox @id names in the store (an id, or a unique hex prefix of one), creating too. */
static int load_db(struct pod_mgr *pm, const char *id, struct pod_sandbox_info **ret,
                   struct sh_error *err)
{
        _cleanup_free_ char *pat = NULL;
        sqlite3_stmt *st = NULL;
        struct pod_sandbox_info *found = NULL;
        int rows = 0, r;

        r = sh_validate_id_prefix(id, "pod sandbox id", err);
        if (r < 0)
                return r;
        pat = sh_strdup_printf("%s*", id);
        if (!pat)
                return -ENOMEM;
        if (sqlite3_prepare_v2(pod_mgr_db(pm), SELECT_SANDBOX " WHERE id GLOB ? LIMIT 2", -1, &st,
                               NULL) != SQLITE_OK)
                return pod_db_fail(pm, err, "load sandbox");
        sqlite3_bind_text(st, 1, pat, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(st) == SQLITE_ROW)
                if (rows++ == 0)
                        found = row_info(st);
        sqlite3_finalize(st);
        if (rows > 1) {
                pod_sandbox_info_free(found);
                return sh_err(err, -ENOENT, "pod sandbox id prefix '%s' is ambiguous", id);
        }
        if (rows == 0)
                return sh_err(err, -ENOENT, "pod sandbox '%s' not found", id);
        if (!found)
                return -ENOMEM;
        *ret = found;
        return 0;
}

/*
 * Loads the sandbox @id names (an id, or a unique hex prefix of one): from the view, or from
 * the store for one still being created (a Stop or Remove by prefix waits for its lock).
 */
int pod_sandbox_load(struct pod_mgr *pm, const char *id, struct pod_sandbox_info **ret,
                     struct sh_error *err)
{
        int r = pod_view_sb_get(pm, id, ret, err);

        if (r != -ENOENT)
                return r;
        sh_err_clear(err);
        return load_db(pm, id, ret, err);
}

int pod_db_sandboxes(struct pod_mgr *pm, struct pod_sandbox_info ***ret, size_t *ret_n,
                     struct sh_error *err)
{
        sqlite3_stmt *st = NULL;
        struct pod_sandbox_info **v = calloc(1, sizeof(*v));
        size_t n = 0;

        if (!v)
                return -ENOMEM;
        if (sqlite3_prepare_v2(pod_mgr_db(pm),
                               SELECT_SANDBOX " WHERE state != 'creating' ORDER BY created_ns, id",
                               -1, &st, NULL) != SQLITE_OK) {
                free(v);
                return pod_db_fail(pm, err, "list sandboxes");
        }
        while (sqlite3_step(st) == SQLITE_ROW) {
                struct pod_sandbox_info *i = row_info(st), **nv;

                if (!i)
                        continue;
                nv = realloc(v, (n + 2) * sizeof(*v));
                if (!nv) {
                        pod_sandbox_info_free(i);
                        sqlite3_finalize(st);
                        pod_sandbox_info_list_free(v);
                        return -ENOMEM;
                }
                v = nv;
                v[n++] = i;
                v[n] = NULL;
        }
        sqlite3_finalize(st);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---------------------------------------------------------------- lifecycle */

/*
 * The pod's resolv.conf, hostname and hosts live on disk, <root_dir>/pods/<id>, as
 * containerd keeps them in its state dir: they are bind-mounted writable into the pod's
 * containers, and a container appending to /etc/hosts must not fill the small tmpfs under
 * run_dir (issue 14). An older runtd kept them in <run_dir>/pods/<id>; its pods go on using
 * those, since their containers' LXC configs name that path.
 */
static char *pod_dir_at(const char *base, const char *id)
{
        return sh_strdup_printf("%s/pods/%s", base, id);
}

char *pod_dir_of(struct pod_mgr *pm, const char *id)
{
        const struct runt_config *cfg = pod_mgr_config(pm);
        _cleanup_free_ char *dir = pod_dir_at(cfg->root_dir, id);
        _cleanup_free_ char *old = NULL;

        if (!dir || access(dir, F_OK) == 0)
                return TAKE_PTR(dir);
        old = pod_dir_at(cfg->run_dir, id);
        if (old && access(old, F_OK) == 0)
                return TAKE_PTR(old);
        return TAKE_PTR(dir);
}

/*
 * Removes @dir: the resolv.conf, hostname and hosts of a pod, and the temp file of one of
 * them a crash cut off while it was written atomically. Only runtd writes there (the files
 * are bind-mounted into the pod, not the dir), so it holds plain files only.
 */
static void rm_files_dir(const char *dir)
{
        DIR *d = dir ? opendir(dir) : NULL;
        struct dirent *e;

        if (!d)
                return;
        while ((e = readdir(d)))
                if (e->d_type == DT_REG)
                        unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
        rmdir(dir);
}

/* Removes the pod files of @id in both places, that of an older runtd included. */
static void rm_pod_dir(struct pod_mgr *pm, const char *id)
{
        const struct runt_config *cfg = pod_mgr_config(pm);
        _cleanup_free_ char *dir = pod_dir_at(cfg->root_dir, id);
        _cleanup_free_ char *old = pod_dir_at(cfg->run_dir, id);

        rm_files_dir(dir);
        rm_files_dir(old);
}

/*
 * A sysctl a pod may set: one of a namespace the pod has of its own (the kernel's ipc, net
 * and uts sysctls), never one of the host's. Names come with '.' or '/' between parts.
 */
static int check_sysctl(const struct be_sandbox_spec *s, const char *key, struct sh_error *err)
{
        static const char *const ipc[] = {"kernel.msgmax", "kernel.msgmnb",         "kernel.msgmni",
                                          "kernel.sem",    "kernel.shmall",         "kernel.shmmax",
                                          "kernel.shmmni", "kernel.shm_rmid_forced"};
        char name[256];
        const char *ns = NULL;
        bool own;

        if (!key[0] || strlen(key) >= sizeof(name) || key[0] == '.' || key[0] == '/' ||
            strstr(key, "..") || strstr(key, "//") || strstr(key, "/.") || strstr(key, "./") ||
            key[strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/")])
                return sh_err(err, -EINVAL, "sysctl '%.64s' is not a sysctl name", key);
        snprintf(name, sizeof(name), "%s", key);
        if (strchr(name, '/'))
                for (char *c = name; *c; c++)
                        *c = *c == '/' ? '.' : *c == '.' ? '/' : *c;
        for (size_t i = 0; i < SH_ARRAY_SIZE(ipc) && !ns; i++)
                if (strcmp(name, ipc[i]) == 0)
                        ns = "ipc";
        if (!ns && strncmp(name, "fs.mqueue.", 10) == 0)
                ns = "ipc";
        else if (!ns && strncmp(name, "net.", 4) == 0)
                ns = "net";
        else if (!ns &&
                 (strcmp(name, "kernel.hostname") == 0 || strcmp(name, "kernel.domainname") == 0))
                ns = "uts";
        if (!ns)
                return sh_err(err, -EINVAL,
                              "sysctl '%s' is not namespaced: a pod may set only ipc (kernel.shm*, "
                              "kernel.msg*, kernel.sem, fs.mqueue.*), net.* and uts sysctls",
                              key);
        own = strcmp(ns, "ipc") == 0 ? s->ipc_mode != BE_NS_NODE : s->net_mode != BE_NS_NODE;
        if (!own)
                return sh_err(err, -EINVAL,
                              "sysctl '%s' would change the host: the pod shares the host's %s "
                              "namespace",
                              key, ns);
        return 0;
}

static int check_spec(const struct be_sandbox_spec *s, struct sh_error *err)
{
        int r;

        if ((r = sh_validate_name(s->name, strlen(s->name), "metadata.name", err)) < 0 ||
            (r = sh_validate_name(s->namespace, strlen(s->namespace), "metadata.namespace", err)) <
                    0 ||
            (r = sh_validate_name(s->uid, strlen(s->uid), "metadata.uid", err)) < 0)
                return r;
        if (strchr(s->name, ';') || strchr(s->namespace, ';') || strchr(s->uid, ';') ||
            strchr(s->name, '=') || strchr(s->namespace, '=') || strchr(s->uid, '='))
                return sh_err(err, -EINVAL, "metadata: ';' and '=' are not allowed in names");
        /* Not left to liblxc, which happens to refuse "../..": runt's own rule. */
        r = sh_validate_cgroup_path(s->cgroup_parent, "linux.cgroup_parent", err);
        if (r < 0)
                return r;
        /* Logs would land relative to runtd's working directory. */
        if (s->log_directory[0] && s->log_directory[0] != '/')
                return sh_err(err, -EINVAL, "log_directory '%.64s' is not an absolute path",
                              s->log_directory);
        if (strpbrk(s->log_directory, "\n\r"))
                return sh_err(err, -EINVAL, "log_directory: a line break in the path");
        if (strlen(s->hostname) > 63)
                return sh_err(err, -EINVAL,
                              "hostname '%.64s...' is %zu characters long: at most 63 are allowed",
                              s->hostname, strlen(s->hostname));
        if (strchr(s->hostname, '/') || strpbrk(s->hostname, "\n\r\t "))
                return sh_err(err, -EINVAL, "hostname '%s' is not a host name", s->hostname);
        for (size_t i = 0; i < s->n_sysctls; i++) {
                if ((r = check_sysctl(s, s->sysctls[i].key, err)) < 0)
                        return r;
                if (strpbrk(s->sysctls[i].value, "\n\r") || strlen(s->sysctls[i].value) > 4096)
                        return sh_err(err, -EINVAL, "sysctl '%s': the value is not one line",
                                      s->sysctls[i].key);
        }
        for (size_t i = 0; i < s->n_ports; i++)
                if (s->ports[i].host_port < 0 || s->ports[i].host_port > 65535 ||
                    s->ports[i].container_port <= 0 || s->ports[i].container_port > 65535)
                        return sh_err(err, -EINVAL, "port_mappings[%zu]: port out of range", i);
        return 0;
}

/* Does @s map a host port (host_port 0 only declares a container port)? */
static bool pod_has_host_ports(const struct be_sandbox_spec *s)
{
        for (size_t i = 0; i < s->n_ports; i++)
                if (s->ports[i].host_port > 0)
                        return true;
        return false;
}

/* Tears down what a sandbox has on the network side: CNI, then its namespace. */
static int net_down(struct pod_mgr *pm, const char *id, struct sh_error *err)
{
        struct net_mgr *net = pod_mgr_net(pm);
        int r;

        if (!net)
                return 0;
        r = net_teardown(net, id, err);
        if (r < 0)
                return r;
        return net_netns_remove(net, id, err);
}

/* A NULL-terminated copy of @v (NULL: an empty one); NULL on ENOMEM. */
static char **strv_copy(char *const *v)
{
        size_t n = 0;
        char **c;

        while (v && v[n])
                n++;
        c = calloc(n + 1, sizeof(*c));
        for (size_t i = 0; c && i < n; i++)
                if (!(c[i] = strdup(v[i]))) {
                        sh_strv_free(c);
                        return NULL;
                }
        return c;
}

/*
 * CNI ADD or DEL on a thread of its own, beside the backend's start or stop of the sandbox
 * (BE_CAP_NET_BESIDE): the pause container needs the namespace only, not what CNI puts in
 * it. Crash safety is that of the sequential order: the record says "creating" before either
 * starts, net_setup caches its input before the first plugin, and recovery undoes both.
 */
struct net_job {
        struct pod_mgr *pm;
        const struct net_pod *pod; /* ADD; NULL: DEL (net_down) of @id */
        const char *id;
        const char *netns;
        struct net_result res;
        struct sh_error err;
        pthread_t thread;
        bool started;
        int r;
};

static void *net_job_run(void *arg)
{
        struct net_job *j = arg;
        struct sh_error ignored = {0};

        if (!j->pod) {
                j->r = net_down(j->pm, j->id, &j->err);
                return NULL;
        }
        j->r = net_setup(pod_mgr_net(j->pm), j->pod, j->netns, &j->res, &j->err);
        /* DEL once more if its own undo failed (the cache stays then). */
        if (j->r < 0)
                net_teardown(pod_mgr_net(j->pm), j->id, &ignored);
        return NULL;
}

/* Starts @j beside the caller, or runs it here when no thread can be had. */
static void net_job_start(struct net_job *j, bool beside)
{
        j->started = beside && pthread_create(&j->thread, NULL, net_job_run, j) == 0;
        if (!j->started)
                net_job_run(j);
}

/* Waits for @j; its result. */
static int net_job_join(struct net_job *j)
{
        if (j->started)
                pthread_join(j->thread, NULL);
        j->started = false;
        return j->r;
}

/* May CNI run beside the backend? Not when a net sysctl of the pod waits for eth0. */
static bool net_beside(struct be *be, const struct be_sandbox_spec *s)
{
        if (!(be->ops->caps & BE_CAP_NET_BESIDE))
                return false;
        for (size_t i = 0; i < s->n_sysctls; i++)
                if (strncmp(s->sysctls[i].key, "net.", 4) == 0 ||
                    strncmp(s->sysctls[i].key, "net/", 4) == 0)
                        return false;
        return true;
}

int pod_sandbox_run(struct pod_mgr *pm, const struct be_sandbox_spec *spec, char **ret_id,
                    struct sh_error *err)
{
        struct net_mgr *net = pod_mgr_net(pm);
        _cleanup_free_ char *name = NULL, *json = NULL, *dir = NULL, *netns = NULL;
        _cleanup_free_ char *status = NULL;
        _cleanup_free_ struct net_port *ports = NULL;
        struct net_result nres = {0};
        _cleanup_pod_lock_ struct pod_lock *lock = NULL;
        struct be *be = NULL;
        char id[65], created[32], att[16];
        struct sh_error ignored = {0};
        bool host_net = spec->net_mode == BE_NS_NODE;
        struct net_pod pod = {
                .id = id,
                .name = spec->name,
                .namespace = spec->namespace,
                .uid = spec->uid,
                .n_ports = spec->n_ports,
                .dns_servers = spec->dns_servers,
                .dns_searches = spec->dns_searches,
                .dns_options = spec->dns_options,
        };
        struct net_job job = {.pm = pm, .pod = &pod, .id = id};
        bool own_net = false, claimed = false;
        int r;

        r = check_spec(spec, err);
        if (r < 0)
                return r;
        r = pod_mgr_backend(pm, spec->handler, &be, err);
        if (r < 0)
                return r;
        /*
         * A backend that networks its pods itself: no netns, no CNI (be.h BE_CAP_OWN_NET),
         * but this node forwards the pod's host ports to it (step 3b). A pod asking for the
         * host's network is the backend's to refuse.
         */
        if (be->ops->caps & BE_CAP_OWN_NET) {
                own_net = !host_net;
                host_net = true;
        }
        r = sh_id_new(id);
        if (r < 0)
                return sh_err(err, r, "new sandbox id: %s", strerror(-r));
        /* Nobody knows the id yet, but a Remove by a prefix could find the record. */
        lock = pod_lock_take(pm, 'p', id, true);
        name = reserved_name(spec);
        json = spec_to_json(spec);
        dir = pod_dir_at(pod_mgr_config(pm)->root_dir, id);
        if (!lock || !name || !json || !dir)
                return -ENOMEM;
        snprintf(created, sizeof(created), "%lld", pod_now_ns());
        snprintf(att, sizeof(att), "%u", spec->attempt);

        sh_log_debug("sandbox=%s name=%s creating", id, name);
        /* 1. The record: reserves the name. */
        r = pod_db_run(
                pm,
                "INSERT INTO sandboxes(id, name, pod_name, pod_namespace, pod_uid, attempt, "
                "handler, state, created_ns, spec) VALUES (?, ?, ?, ?, ?, ?, ?, 'creating', ?, ?)",
                (const char *[]){id, name, spec->name, spec->namespace, spec->uid, att,
                                 spec->handler, created, json, NULL},
                err);
        if (r == -EEXIST) {
                _cleanup_free_ char *holder =
                        pod_db_text(pm, "SELECT id FROM sandboxes WHERE name = ?", name);

                return sh_err(err, -EEXIST, "pod sandbox name '%s' is reserved for %s", name,
                              holder ? holder : "another sandbox");
        }
        if (r < 0)
                return r;

        ports = calloc(spec->n_ports + 1, sizeof(*ports));
        if (!ports) {
                r = -ENOMEM;
                goto undo_record;
        }
        for (size_t i = 0; i < spec->n_ports; i++)
                ports[i] = (struct net_port){
                        .protocol = spec->ports[i].protocol,
                        .container_port = spec->ports[i].container_port,
                        .host_port = spec->ports[i].host_port,
                        .host_ip = spec->ports[i].host_ip,
                };
        pod.ports = ports;

        /*
         * 2. Network: a namespace of its own and CNI, unless it shares the host's; CNI ADD
         * on a thread beside step 3 when the backend allows. A pod networked elsewhere claims
         * its host ports now, before its backend makes anything: one another pod holds fails
         * the run at once.
         */
        if (own_net && pod_has_host_ports(spec)) {
                r = net ? net_hostports_claim(net, &pod, err)
                        : sh_err(err, -EAGAIN, "no network manager for the pod's host ports");
                if (r < 0)
                        goto undo_record;
                claimed = true;
        }
        if (!host_net) {
                r = net ? net_netns_create(net, id, &netns, err)
                        : sh_err(err, -EAGAIN, "no network manager");
                if (r < 0)
                        goto undo_record;
                job.netns = netns;
                net_job_start(&job, net_beside(be, spec));
                if (!job.started && job.r < 0) {
                        if (err)
                                *err = job.err;
                        r = job.r;
                        goto undo_netns;
                }
        }

        /* 3. The backend's sandbox. */
        {
                struct be_sandbox sb = {.id = id, .spec = spec, .netns = netns, .pod_dir = dir};

                r = be_sandbox_create(be, &sb, err);
                if (r < 0)
                        sh_err_prefix(err, r, "sandbox %.12s: %s", id, be->ops->name);
        }
        if (!host_net && net_job_join(&job) < 0) {
                if (r == 0) {
                        be_sandbox_remove(be, id, &ignored);
                        if (err)
                                *err = job.err;
                        r = job.r;
                }
                goto undo_netns;
        }
        nres = job.res;
        memset(&job.res, 0, sizeof(job.res));
        if (r < 0)
                goto undo_files; /* the backend may have made the pod's dir (microvm binds it) */
        if (be->ops->caps & BE_CAP_OWN_NET) {
                r = be_sandbox_ips(be, id, &nres.ips, err);
                /* 3b. Its host ports forwarded from this node to its address. */
                if (r == 0 && claimed)
                        r = net_hostports_setup(net, &pod, nres.ips, err);
                if (r < 0) {
                        be_sandbox_remove(be, id, &ignored);
                        goto undo_files;
                }
                /* The backend gives "ADDR/PREFIX"; the pod's IPs are the addresses. */
                for (size_t i = 0; nres.ips && nres.ips[i]; i++)
                        nres.ips[i][strcspn(nres.ips[i], "/")] = '\0';
        }

        /* 4. The pod's resolv.conf, hostname and hosts (with the pod IPs CNI gave). */
        {
                struct net_dns dns = {
                        spec->dns_servers && spec->dns_servers[0] ? spec->dns_servers : NULL,
                        spec->dns_searches && spec->dns_searches[0] ? spec->dns_searches : NULL,
                        spec->dns_options && spec->dns_options[0] ? spec->dns_options : NULL};
                r = net_write_pod_files(dir, &dns, spec->hostname[0] ? spec->hostname : spec->name,
                                        nres.ips, err);
                if (r < 0) {
                        be_sandbox_remove(be, id, &ignored);
                        goto undo_files;
                }
        }

        /* 5. Ready. */
        {
                json_object *st = json_object_new_object();

                json_object_object_add(st, "ips", pod_strv_json(nres.ips));
                json_object_object_add(st, "network",
                                       json_object_new_string(nres.network ? nres.network : ""));
                status = sh_json_to_string(st);
                json_object_put(st);
        }
        r = status ? pod_db_run(pm,
                                "UPDATE sandboxes SET state = 'ready', netns = ?, status = ? "
                                "WHERE id = ?",
                                (const char *[]){netns ? netns : "", status, id, NULL}, err)
                   : -ENOMEM;
        if (r < 0) {
                be_sandbox_remove(be, id, &ignored);
                goto undo_files;
        }
        {
                struct pod_sandbox_info *info = calloc(1, sizeof(*info));

                /* The view's copy: what the store now says. */
                if (info) {
                        info->id = strdup(id);
                        info->state = POD_READY;
                        info->created_ns = strtoll(created, NULL, 10);
                        info->netns = strdup(netns ? netns : "");
                        info->ips = strv_copy(nres.ips);
                }
                if (!info || !info->id || !info->netns || !info->ips ||
                    be_sandbox_spec_copy(spec, &info->spec) < 0) {
                        pod_sandbox_info_free(info);
                        r = -ENOMEM;
                } else {
                        r = pod_view_sb_add(pm, info, false);
                }
        }
        if (r < 0) {
                be_sandbox_remove(be, id, &ignored);
                goto undo_files;
        }
        pod_view_watch(pm, 's', id);
        net_result_done(&nres);
        *ret_id = strdup(id);
        if (!*ret_id)
                return -ENOMEM;
        sh_log_debug("sandbox=%s name=%s ready", id, name);
        return 0;

undo_files:
        rm_pod_dir(pm, id);
        if (!host_net)
                net_down(pm, id, &ignored); /* keeps the netns when DEL fails, for a later DEL */
        goto undo_record;
undo_netns:
        if (!host_net)
                net_netns_remove(net, id, &ignored);
undo_record:
        /* A DEL that fails keeps the cache: recovery DELs it again once the record is gone. */
        if (claimed && net_teardown(net, id, &ignored) < 0)
                sh_log_debug("sandbox=%s its host ports' teardown failed: %s", id, ignored.msg);
        net_result_done(&nres);
        pod_db_run(pm, "DELETE FROM sandboxes WHERE id = ?", (const char *[]){id, NULL}, NULL);
        return r;
}

/*
 * Loads sandbox @id (an id or a unique prefix) with its lock held exclusively, so no other
 * call on the pod or its containers runs meanwhile. -ENOENT when it is not there, or no
 * longer once the lock is ours.
 */
static int load_exclusive(struct pod_mgr *pm, const char *id, struct pod_sandbox_info **ret,
                          struct pod_lock **ret_lock, struct sh_error *err)
{
        struct pod_sandbox_info *i = NULL;
        struct pod_lock *l;
        int r;

        r = pod_sandbox_load(pm, id, &i, err);
        if (r < 0)
                return r;
        l = pod_lock_take(pm, 'p', i->id, true);
        if (!l) {
                pod_sandbox_info_free(i);
                return -ENOMEM;
        }
        {
                _cleanup_free_ char *full = TAKE_PTR(i->id);

                pod_sandbox_info_free(i);
                i = NULL;
                r = pod_sandbox_load(pm, full, &i, err);
        }
        if (r < 0) {
                pod_lock_release(l);
                return r;
        }
        *ret = i;
        *ret_lock = l;
        return 0;
}

int pod_sandbox_stop(struct pod_mgr *pm, const char *id, struct sh_error *err)
{
        _cleanup_pod_lock_ struct pod_lock *lock = NULL;
        struct pod_sandbox_info *i = NULL;
        struct be *be = NULL;
        int r;

        r = load_exclusive(pm, id, &i, &lock, err);
        if (r < 0)
                return r;
        r = pod_mgr_backend(pm, i->spec.handler, &be, err);
        if (r == 0)
                r = pod_containers_stop_all(pm, i->id, 0, err);
        /* The pause container's stop and CNI DEL beside it, when the backend allows. */
        if (r == 0) {
                struct net_job job = {.pm = pm, .id = i->id};
                bool net = i->spec.net_mode != BE_NS_NODE && !(be->ops->caps & BE_CAP_OWN_NET);
                bool beside = net && net_beside(be, &i->spec);

                if (beside)
                        net_job_start(&job, true);
                r = be_sandbox_stop(be, i->id, STOP_TIMEOUT_S, err);
                if (net && !beside && r == 0)
                        net_job_start(&job, false);
                if (net && (beside || r == 0) && net_job_join(&job) < 0 && r == 0) {
                        if (err)
                                *err = job.err;
                        r = job.r;
                }
                /* A pod networked elsewhere: the host ports this node forwards to it. */
                if (r == 0 && (be->ops->caps & BE_CAP_OWN_NET) && pod_mgr_net(pm))
                        r = net_teardown(pod_mgr_net(pm), i->id, err);
        }
        if (r == 0)
                r = pod_db_run(pm, "UPDATE sandboxes SET state = 'notready' WHERE id = ?",
                               (const char *[]){i->id, NULL}, err);
        if (r == 0)
                pod_view_sb_not_ready(pm, i->id, false);
        if (r < 0)
                sh_err_prefix(err, r, "stop sandbox %.12s", i->id);
        pod_sandbox_info_free(i);
        return r;
}

int pod_sandbox_remove(struct pod_mgr *pm, const char *id, struct sh_error *err)
{
        _cleanup_pod_lock_ struct pod_lock *lock = NULL;
        struct pod_sandbox_info *i = NULL;
        struct be *be = NULL;
        int r;

        r = load_exclusive(pm, id, &i, &lock, err);
        if (r == -ENOENT) {
                sh_err_clear(err);
                return 0; /* removed already: CRI says that is success */
        }
        if (r < 0)
                return r;
        r = pod_mgr_backend(pm, i->spec.handler, &be, err);
        if (r == 0)
                r = pod_containers_remove_all(pm, i->id, err);
        if (r == 0)
                r = be_sandbox_stop(be, i->id, STOP_TIMEOUT_S, err);
        if (r == 0)
                r = be_sandbox_remove(be, i->id, err);
        if (r == 0)
                r = net_down(pm, i->id, err);
        if (r == 0) {
                rm_pod_dir(pm, i->id);
                r = pod_db_run(pm, "DELETE FROM sandboxes WHERE id = ?",
                               (const char *[]){i->id, NULL}, err);
        }
        if (r == 0)
                pod_view_sb_remove(pm, i->id);
        if (r < 0)
                sh_err_prefix(err, r, "remove sandbox %.12s", i->id);
        pod_sandbox_info_free(i);
        return r;
}

/*
 * A ready sandbox whose backend says it is not running (its PID 1 died) is not ready: the
 * watcher calls this when the sandbox's watch fd turns readable. On a backend whose pods may
 * return (BE_CAP_SB_RETURNS) such a pod is "lost" and polled; once it runs again, it is
 * ready again. A pod StopPodSandbox stopped is never lost.
 */
void pod_sb_look(struct pod_mgr *pm, const char *id, bool rearm)
{
        struct pod_sandbox_info *i = NULL;
        struct be *be = NULL;
        bool running = true;
        int r = 0;

        if (pod_view_sb_get(pm, id, &i, NULL) < 0)
                return;
        if (i->state == POD_READY && pod_mgr_backend(pm, i->spec.handler, &be, NULL) == 0) {
                bool may_return = be->ops->caps & BE_CAP_SB_RETURNS;

                r = be_sandbox_running(be, i->id, &running, NULL);
                if ((r == -ENOENT || (r == 0 && !running)) &&
                    pod_view_sb_not_ready(pm, i->id, r == 0 && may_return)) {
                        pod_db_run(pm, "UPDATE sandboxes SET state = 'notready' WHERE id = ?",
                                   (const char *[]){i->id, NULL}, NULL);
                        sh_log_debug("sandbox=%s stopped by itself: not ready", i->id);
                } else if (rearm && r == 0) {
                        /* Still running: watch it again (it may have none after a look). */
                        pod_view_poll(pm, 's', i->id, false);
                        if (pod_view_unwatched(pm, 's', i->id))
                                pod_view_watch(pm, 's', i->id);
                } else if (rearm) {
                        /* The backend could not tell: ask again later, never guess. */
                        pod_view_poll(pm, 's', i->id, true);
                }
        } else if (i->state == POD_NOTREADY && pod_view_sb_lost(pm, i->id) &&
                   pod_mgr_backend(pm, i->spec.handler, &be, NULL) == 0) {
                r = be_sandbox_running(be, i->id, &running, NULL);
                if (r == -ENOENT) {
                        pod_view_sb_not_ready(pm, i->id, false); /* gone: not asked again */
                } else if (r == 0 && running && pod_view_sb_back(pm, i->id)) {
                        struct pod_sandbox_info *now = NULL;

                        pod_db_run(pm, "UPDATE sandboxes SET state = 'ready' WHERE id = ?",
                                   (const char *[]){i->id, NULL}, NULL);
                        /* A StopPodSandbox between the two writes wins (no pod lock here:
                         * a stop may wait for this thread to learn its containers' exits). */
                        if (pod_view_sb_get(pm, i->id, &now, NULL) == 0 && now->state != POD_READY)
                                pod_db_run(pm,
                                           "UPDATE sandboxes SET state = 'notready' WHERE id = ?",
                                           (const char *[]){i->id, NULL}, NULL);
                        pod_sandbox_info_free(now);
                        sh_log_debug("sandbox=%s runs again: ready", i->id);
                        if (rearm)
                                pod_view_watch(pm, 's', i->id);
                }
        }
        pod_sandbox_info_free(i);
}

int pod_sandbox_reason(struct pod_mgr *pm, const struct pod_sandbox_info *i, char *buf, size_t size)
{
        struct be *be = NULL;

        if (i->state != POD_NOTREADY || pod_mgr_backend(pm, i->spec.handler, &be, NULL) < 0)
                return -ENOENT;
        return be_sandbox_reason(be, i->id, buf, size);
}

int pod_sandbox_status(struct pod_mgr *pm, const char *id, struct pod_sandbox_info **ret,
                       struct sh_error *err)
{
        return pod_view_sb_get(pm, id, ret, err);
}

bool pod_labels_match(const struct be_kv *have, size_t n_have, const struct be_kv *want,
                      size_t n_want)
{
        for (size_t k = 0; k < n_want; k++) {
                bool hit = false;

                for (size_t l = 0; l < n_have && !hit; l++)
                        hit = sh_streq(have[l].key, want[k].key) &&
                              sh_streq(have[l].value, want[k].value);
                if (!hit)
                        return false;
        }
        return true;
}

char **pod_db_pairs(struct pod_mgr *pm, const char *sql)
{
        sqlite3_stmt *st = NULL;
        char **v = calloc(1, sizeof(char *));
        size_t n = 0;

        if (!v || sqlite3_prepare_v2(pod_mgr_db(pm), sql, -1, &st, NULL) != SQLITE_OK) {
                free(v);
                return NULL;
        }
        while (sqlite3_step(st) == SQLITE_ROW) {
                char **nv = realloc(v, (n + 3) * sizeof(char *));
                char *a, *b;

                if (!nv)
                        break;
                v = nv;
                a = strdup((const char *)sqlite3_column_text(st, 0) ?: "");
                b = strdup((const char *)sqlite3_column_text(st, 1) ?: "");
                if (!a || !b) {
                        free(a);
                        free(b);
                        break;
                }
                v[n++] = a;
                v[n++] = b;
                v[n] = NULL;
        }
        sqlite3_finalize(st);
        return v;
}

char *pod_db_text(struct pod_mgr *pm, const char *sql, const char *arg)
{
        sqlite3_stmt *st = NULL;
        char *out = NULL;

        if (sqlite3_prepare_v2(pod_mgr_db(pm), sql, -1, &st, NULL) != SQLITE_OK)
                return NULL;
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
                out = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return out;
}

static bool matches(const struct pod_sandbox_info *i, const struct pod_sandbox_filter *f)
{
        if (!f)
                return true;
        if (f->id && f->id[0] && strncmp(i->id, f->id, strlen(f->id)) != 0)
                return false;
        if (f->has_state && i->state != f->state)
                return false;
        return pod_labels_match(i->spec.labels, i->spec.n_labels, f->labels, f->n_labels);
}

struct each_sb {
        const struct pod_sandbox_filter *f;
        int (*fn)(const struct pod_sandbox_info *i, void *data);
        void *data;
};

static int each_sb_visit(const struct pod_sandbox_info *i, void *data)
{
        struct each_sb *w = data;

        return matches(i, w->f) ? w->fn(i, w->data) : 0;
}

int pod_sandbox_each(struct pod_mgr *pm, const struct pod_sandbox_filter *f,
                     int (*fn)(const struct pod_sandbox_info *i, void *data), void *data)
{
        return pod_view_sb_each(pm, each_sb_visit, &(struct each_sb){f, fn, data});
}

struct sb_list {
        struct pod_sandbox_info **v;
        size_t n, cap;
};

static int sb_list_add(const struct pod_sandbox_info *i, void *data)
{
        struct sb_list *l = data;

        if (l->n + 1 >= l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 16;
                struct pod_sandbox_info **v = realloc(l->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        if (pod_sandbox_info_copy(i, &l->v[l->n]) < 0)
                return -ENOMEM;
        l->v[++l->n] = NULL;
        return 0;
}

int pod_sandbox_list(struct pod_mgr *pm, const struct pod_sandbox_filter *f,
                     struct pod_sandbox_info ***ret, size_t *ret_n, struct sh_error *err)
{
        struct sb_list l = {0};
        int r;

        (void)err;
        r = pod_sandbox_each(pm, f, sb_list_add, &l);
        if (r == 0 && !l.v && !(l.v = calloc(1, sizeof(*l.v))))
                r = -ENOMEM;
        if (r < 0) {
                pod_sandbox_info_list_free(l.v);
                return r;
        }
        *ret = l.v;
        *ret_n = l.n;
        return 0;
}

struct pod_sandbox_info *pod_sandbox_info_free(struct pod_sandbox_info *i)
{
        if (!i)
                return NULL;
        free(i->id);
        be_sandbox_spec_done(&i->spec);
        sh_strv_free(i->ips);
        free(i->netns);
        free(i);
        return NULL;
}

void pod_sandbox_info_list_free(struct pod_sandbox_info **l)
{
        for (size_t i = 0; l && l[i]; i++)
                pod_sandbox_info_free(l[i]);
        free(l);
}

/* Waits for the CNI plugins a killed runtd left running for any sandbox of the store. */
static void wait_orphan_plugins(struct pod_mgr *pm)
{
        _cleanup_strv_ char **pairs = pod_db_pairs(pm, "SELECT id, state FROM sandboxes");
        _cleanup_strv_ char **ids = NULL;
        struct sh_error e = {0};
        size_t n = 0;

        if (!pod_mgr_net(pm) || !pairs)
                return;
        while (pairs[n])
                n++;
        ids = calloc(n / 2 + 1, sizeof(char *));
        if (!ids)
                return;
        /* pairs' free stops at its first NULL: take the ids, free the states here. */
        for (size_t i = 0; i + 1 < n; i += 2) {
                ids[i / 2] = TAKE_PTR(pairs[i]);
                free(TAKE_PTR(pairs[i + 1]));
        }
        if (net_wait_plugins(pod_mgr_net(pm), ids, &e) < 0)
                sh_log_warn("recovery: %s", e.msg);
}

/*
 * A CNI cache with no sandbox is a DEL that failed when its sandbox's RunPodSandbox failed
 * (the record went, the cache stayed for a later try): try again, so the lease and chains go.
 */
static void del_orphan_caches(struct pod_mgr *pm)
{
        struct net_mgr *net = pod_mgr_net(pm);
        char **ids = net_cache_ids(net);

        for (size_t i = 0; ids && ids[i]; i++) {
                _cleanup_free_ char *have =
                        pod_db_text(pm, "SELECT id FROM sandboxes WHERE id = ?", ids[i]);
                struct sh_error e = {0};

                if (have)
                        continue;
                if (net_teardown(net, ids[i], &e) < 0)
                        sh_log_warn("pod=%s network of a failed sandbox: DEL failed again: %s",
                                    ids[i], e.msg);
                else
                        net_netns_remove(net, ids[i], &e);
        }
        sh_strv_free(ids);
}

/*
 * The host ports this node forwards to pods networked elsewhere (a proxmox CT) are rules a
 * node reboot or a flushed table loses while the pod lives on: set them up again from each
 * pod's cache (portmap ADD of rules that are there changes nothing). The caches of pods the
 * store no longer has were DELeted already (del_orphan_caches), and those of half-created
 * ones with their pods; lxc pods' caches are not host-port-only ones and are left alone.
 */
static void restore_host_ports(struct pod_mgr *pm)
{
        struct net_mgr *net = pod_mgr_net(pm);
        char **ids = net ? net_cache_ids(net) : NULL;

        for (size_t i = 0; ids && ids[i]; i++) {
                _cleanup_free_ char *have =
                        pod_db_text(pm, "SELECT id FROM sandboxes WHERE id = ?", ids[i]);
                struct sh_error e = {0};

                if (have && net_hostports_restore(net, ids[i], &e) < 0)
                        sh_log_warn("sandbox=%s host ports not forwarded again: %s", ids[i], e.msg);
        }
        sh_strv_free(ids);
}

/* Has the store a sandbox @id? True when it cannot tell, so nothing is removed then. */
static bool sandbox_known(struct pod_mgr *pm, const char *id)
{
        sqlite3_stmt *st = NULL;
        int rc;

        if (sqlite3_prepare_v2(pod_mgr_db(pm), "SELECT 1 FROM sandboxes WHERE id = ?", -1, &st,
                               NULL) != SQLITE_OK)
                return true;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc != SQLITE_DONE;
}

/*
 * Removes the pod files of sandboxes the store does not have (a crash between removing the
 * row's sandbox and its dir), in <root_dir>/pods and an older runtd's <run_dir>/pods.
 */
static void sweep_pod_dirs(struct pod_mgr *pm)
{
        const char *bases[] = {pod_mgr_config(pm)->root_dir, pod_mgr_config(pm)->run_dir};

        for (size_t b = 0; b < SH_ARRAY_SIZE(bases); b++) {
                _cleanup_free_ char *top = sh_path_join(bases[b], "pods");
                DIR *d = top ? opendir(top) : NULL;
                struct dirent *e;

                while (d && (e = readdir(d))) {
                        _cleanup_free_ char *dir = NULL;

                        if (sh_validate_id(e->d_name, "pod dir", NULL) < 0 ||
                            sandbox_known(pm, e->d_name))
                                continue;
                        dir = sh_path_join(top, e->d_name);
                        rm_files_dir(dir);
                        sh_log_info("sandbox=%s not in the store: removed its pod files",
                                    e->d_name);
                }
                if (d)
                        closedir(d);
        }
}

int pod_mgr_recover(struct pod_mgr *pm, struct sh_error *err)
{
        char **ids;
        int r;

        /*
         * A plugin started before the crash runs on without us: an ADD ending after the DEL
         * below would leave its lease and chains behind. Let them end first.
         */
        wait_orphan_plugins(pm);
        if (pod_mgr_net(pm)) {
                net_cache_sweep(pod_mgr_net(pm));
                del_orphan_caches(pm);
        }
        pod_containers_recover(pm);
        /*
         * A sandbox still "creating" was cut off by a crash: undo it as a failed run would.
         * CNI DEL runs while its namespace is still there (from the cache net_setup wrote
         * before ADD), since the bridge plugin finds the veth and the ipMasq chain to remove
         * through the pod's interface. When something cannot be undone now the sandbox is
         * kept, not ready, so RemovePodSandbox finishes the job.
         */
        ids = pod_db_pairs(pm, "SELECT id, handler FROM sandboxes WHERE state = 'creating'");
        if (!ids)
                return pod_db_fail(pm, err, "recover sandboxes");
        for (size_t i = 0; ids[i] && ids[i + 1]; i += 2) {
                struct sh_error e = {0};
                struct be *be = NULL;

                r = pod_mgr_backend(pm, ids[i + 1], &be, &e);
                if (r == 0)
                        r = be_sandbox_remove(be, ids[i], &e);
                if (r == 0)
                        r = net_down(pm, ids[i], &e);
                if (r < 0) {
                        struct pod_sandbox_info *kept = NULL;

                        pod_db_run(pm, "UPDATE sandboxes SET state = 'notready' WHERE id = ?",
                                   (const char *[]){ids[i], NULL}, NULL);
                        if (load_db(pm, ids[i], &kept, NULL) == 0)
                                pod_view_sb_add(pm, kept, true);
                        sh_log_warn("sandbox=%s half-created before a restart, kept not ready "
                                    "for RemovePodSandbox: %s",
                                    ids[i], e.msg);
                        continue;
                }
                rm_pod_dir(pm, ids[i]);
                pod_db_run(pm, "DELETE FROM sandboxes WHERE id = ?", (const char *[]){ids[i], NULL},
                           &e);
                sh_log_info("sandbox=%s half-created before a restart: cleaned up", ids[i]);
        }
        sh_strv_free(ids);
        restore_host_ports(pm);
        sweep_pod_dirs(pm);
        r = pod_view_resume(pm, err);
        /*
         * A start a crash cut off left its row 'starting', which no StartContainer could take
         * again. The look above recorded the ones that run or ran; the rest never started.
         * Nothing is served yet, so no start is under way.
         */
        if (r == 0)
                pod_db_run(pm, "UPDATE containers SET state = 'created' WHERE state = 'starting'",
                           NULL, NULL);
        return r;
}
