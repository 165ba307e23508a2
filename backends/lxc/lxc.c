/*
 * The lxc backend: pods as LXC containers through liblxc (notes/lxc.md).
 *
 * A sandbox is an LXC container named by the sandbox id, in runt's own lxcpath, running
 * runt-pause as PID 1 on an overlay rootfs (a shared read-only dir holding only /pause, and
 * an upper dir of the sandbox's own), in the pod's network namespace. It is started
 * daemonized, so its LXC monitor is not a child of runtd and the pod outlives runtd.
 * destroy() is never used: runt removes <lxcpath>/<id> itself (notes/lxc.md, pitfalls).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lxc/lxccontainer.h>

#define SH_LOG_MODULE "lxc"
#include "be-internal.h"
#include "cleanup.h"
#include "exec.h"
#include "helpercg.h"
#include "log.h"
#include "lxc-internal.h"
#include "seccomp.h"
#include "strutil.h"

/* pids.max of a pause container: runt-pause is one process and forks nothing. */
#define SANDBOX_PIDS_MAX 16

/* Copies @src to @dst (0755) unless @dst has the same size and mtime already. */
static int install_pause(const char *src, const char *dst, struct sh_error *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        struct stat a, b;
        int r;

        if (stat(src, &a) < 0)
                return sh_err(err, -errno, "runt-pause '%s': %s", src, strerror(errno));
        if (stat(dst, &b) == 0 && a.st_size == b.st_size && a.st_mtime <= b.st_mtime)
                return 0;
        r = sh_read_file(src, 16u << 20, &buf, &len);
        if (r == 0)
                r = sh_write_file_atomic(dst, buf, len, 0755);
        return r < 0 ? sh_err(err, r, "install '%s': %s", dst, strerror(-r)) : 0;
}

static int make_pause_root(struct lxc_be *lb, struct sh_error *err)
{
        static const char *const dirs[] = {"proc", "sys", "dev", "etc", "tmp", "run"};
        char pause[PATH_MAX];
        _cleanup_free_ char *dst = NULL;
        int r;

        r = sh_find_helper("runt-pause", RUNT_PAUSE_FALLBACK, pause, sizeof(pause));
        if (r < 0)
                return sh_err(err, r, "runt-pause not found (looked beside runtd and at %s)",
                              RUNT_PAUSE_FALLBACK);
        for (size_t i = 0; i < SH_ARRAY_SIZE(dirs); i++) {
                _cleanup_free_ char *d = sh_path_join(lb->pause_root, dirs[i]);

                if (!d)
                        return -ENOMEM;
                r = sh_mkdir_p(d, 0755);
                if (r < 0)
                        return sh_err(err, r, "create '%s': %s", d, strerror(-r));
        }
        chmod(lb->pause_root, 0755);
        dst = sh_path_join(lb->pause_root, "pause");
        return dst ? install_pause(pause, dst, err) : -ENOMEM;
}

/* Is the helper cgroup @name ("runt-ctr-<id>", "runt-pod-<id>") of an id lxcpath still has? */
static bool helper_cgroup_known(const char *name, void *data)
{
        struct lxc_be *lb = data;
        const char *id = NULL;
        _cleanup_free_ char *dir = NULL;

        if (strncmp(name, "runt-ctr-", 9) == 0 || strncmp(name, "runt-pod-", 9) == 0)
                id = name + 9;
        if (!id || !id[0] || strchr(id, '/') || id[0] == '.')
                return false;
        dir = lb_dir(lb, id);
        return !dir || access(dir, F_OK) == 0; /* no memory: keep it */
}

int lb_helper_cgroup(struct lxc_be *lb, const char *kind, const char *id, char ***ret_envp,
                     struct sh_error *err)
{
        _cleanup_free_ char *name = sh_strdup_printf("runt-%s-%s", kind, id), *dirs = NULL;
        int r;

        *ret_envp = NULL;
        if (!name)
                return -ENOMEM;
        r = sh_helpercg_make(lb->hcg, name, &dirs, err);
        if (r < 0 || !dirs)
                return r;
        *ret_envp = sh_helpercg_environ(dirs);
        return *ret_envp ? 0 : -ENOMEM;
}

void lb_helper_cgroup_remove(struct lxc_be *lb, const char *kind, const char *id)
{
        _cleanup_free_ char *name = sh_strdup_printf("runt-%s-%s", kind, id);
        struct sh_error e = {0};

        if (name && sh_helpercg_remove(lb->hcg, name, &e) < 0)
                sh_log_debug("%s left for the next start's sweep: %s", name, e.msg);
}

static int lxc_init(struct be *be, const struct be_config *cfg, struct sh_error *err)
{
        const char *path = be_config_option(cfg, "lxcpath");
        struct lxc_be *lb = calloc(1, sizeof(*lb));
        int r;

        if (!lb)
                return -ENOMEM;
        be->priv = lb;
        if (!lxc_get_version())
                return sh_err(err, -ENOPKG, "liblxc reports no version");
        lb->lxcpath = path ? strdup(path) : sh_path_join(cfg->root_dir, "lxc");
        lb->pause_root = sh_path_join(cfg->root_dir, "pause");
        lb->cgroup_base = strdup("runt");
        lb->seccomp_default = sh_path_join(cfg->root_dir, "seccomp-default.lxc");
        lb->cg_created = sh_path_join(cfg->root_dir, "cgroup-parents");
        lb->containers_dir = sh_path_join(cfg->root_dir, "containers");
        pthread_mutex_init(&lb->cg_lock, NULL);
        {
                pthread_rwlockattr_t a;

                /* Removals first: a stream of looks must not hold one off. */
                pthread_rwlockattr_init(&a);
                pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
                pthread_rwlock_init(&lb->rm_lock, &a);
                pthread_rwlockattr_destroy(&a);
        }
        if (!lb->cg_created || !lb->containers_dir)
                return -ENOMEM;
        if (!lb->lxcpath || !lb->pause_root || !lb->cgroup_base || !lb->seccomp_default)
                return -ENOMEM;
        {
                _cleanup_free_ char *adj = NULL, *policy = NULL;

                if (sh_read_file("/proc/self/oom_score_adj", 64, &adj, NULL) == 0)
                        lb->own_oom_score_adj = atol(adj);
                /* Containers get a policy of their own (their capabilities decide it); the
                 * configs of those an older runtd created, not yet started, name this one. */
                r = lxc_seccomp_runtime_default(be_default_cap_set(), &policy);
                if (r < 0)
                        return r;
                r = sh_write_file_atomic(lb->seccomp_default, policy, strlen(policy), 0644);
                if (r < 0)
                        return sh_err(err, r, "write '%s': %s", lb->seccomp_default, strerror(-r));
        }
        r = sh_cg_host_detect("/sys/fs/cgroup", &lb->cg, err);
        if (r < 0)
                return r;
        if (lb->lxcpath[0] != '/')
                return sh_err(err, -EINVAL, "lxcpath '%s' is not absolute", lb->lxcpath);
        r = sh_mkdir_p(lb->lxcpath, 0700);
        if (r < 0)
                return sh_err(err, r, "create lxcpath '%s': %s", lb->lxcpath, strerror(-r));
        {
                _cleanup_free_ char *record = sh_path_join(cfg->root_dir, "lxc-helper-cgroups");

                if (!record)
                        return -ENOMEM;
                r = sh_helpercg_new(record, &lb->hcg, err);
                if (r < 0)
                        return r;
                /* Those of pods and containers that went while runtd was away (a crash). */
                r = sh_helpercg_sweep(lb->hcg, helper_cgroup_known, lb);
                if (r > 0)
                        sh_log_info("removed %d helper cgroups of pods and containers gone", r);
        }
        return make_pause_root(lb, err);
}

static int lxc_ready(struct be *be, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;

        if (access(lb->lxcpath, W_OK | X_OK) < 0)
                return sh_err(err, -errno, "lxcpath '%s' is not usable: %s", lb->lxcpath,
                              strerror(errno));
        return 0;
}

/* The last error LXC recorded, for messages. */
const char *lb_why(struct lxc_container *c)
{
        return c && c->error_string ? c->error_string : "see the container's lxc.log";
}

/* The first ERROR line of @dir/lxc.log, what LXC says nowhere else. */
void lb_log_tail(const char *dir, char *out, size_t size)
{
        _cleanup_free_ char *path = sh_path_join(dir, "lxc.log");
        _cleanup_free_ char *buf = NULL;
        const char *best = NULL;

        snprintf(out, size, "no details in lxc.log");
        if (!path || sh_read_file(path, 1 << 20, &buf, NULL) < 0)
                return;
        /* The first error is the cause; the ones after it are LXC unwinding. */
        for (char *line = strtok(buf, "\n"); line && !best; line = strtok(NULL, "\n"))
                if (strstr(line, " ERROR "))
                        best = line;
        if (best) {
                const char *msg = strstr(best, " - ");

                msg = msg ? strstr(msg + 3, " - ") : NULL;
                snprintf(out, size, "%.300s", msg ? msg + 3 : best);
        }
}

/* A control character would end the config line (liblxc takes \r as a line end too). */
static bool has_control(const char *s)
{
        for (; s && *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return true;
        return false;
}

int lb_set(struct lxc_container *c, const char *key, const char *value, struct sh_error *err)
{
        /* The one choke point for everything a request or an image puts in an LXC config. */
        if (has_control(key) || has_control(value))
                return sh_err(err, -EINVAL, "lxc config %.64s: a control character in the value",
                              key);
        if (!c->set_config_item(c, key, value))
                return sh_err(err, -EINVAL, "lxc config %s = %s refused", key, value);
        return 0;
}

int lb_set_pids_max(struct lxc_be *lb, struct lxc_container *c, unsigned limit,
                    struct sh_error *err)
{
        _cleanup_free_ char *key = sh_strdup_printf("%s.pids.max", lb_cgroup_key(lb));
        char v[16];

        if (!key)
                return -ENOMEM;
        c->clear_config_item(c, key);
        if (limit == 0 || !(lb->cg.controllers & SH_CG_PIDS))
                return 0;
        snprintf(v, sizeof(v), "%u", limit);
        return lb_set(c, key, v, err);
}

int lb_set_device_rule(struct lxc_be *lb, struct lxc_container *c, const char *kind,
                       const char *rule, struct sh_error *err)
{
        _cleanup_free_ char *key = sh_strdup_printf("%s.devices.%s", lb_cgroup_key(lb), kind);

        return key ? lb_set(c, key, rule, err) : -ENOMEM;
}

char *lb_cgroup_dir(struct lxc_be *lb, const struct be_sandbox_spec *pod, const char *kind,
                    const char *id)
{
        const char *parent = pod->cgroup_parent;

        while (parent && *parent == '/')
                parent++;
        if (!parent || !parent[0])
                parent = lb->cgroup_base;
        return sh_strdup_printf("%s/%s%s", parent, kind, id);
}

int lb_set_common(struct lxc_container *c, const char *mount_auto, const char *pty_max,
                  const char *dir, const char *cg, const char *cgm, struct sh_error *err)
{
        _cleanup_free_ char *log = sh_path_join(dir, "lxc.log");
        int r;

        if (!log)
                return -ENOMEM;
        if ((r = lb_set(c, "lxc.mount.auto", mount_auto, err)) < 0 ||
            (r = lb_set(c, "lxc.autodev", "1", err)) < 0 ||
            (r = lb_set(c, "lxc.console.path", "none", err)) < 0 ||
            (r = lb_set(c, "lxc.tty.max", "0", err)) < 0 ||
            (r = lb_set(c, "lxc.pty.max", pty_max, err)) < 0 ||
            (r = lb_set(c, "lxc.apparmor.profile", "unconfined", err)) < 0 ||
            (r = lb_set(c, "lxc.log.file", log, err)) < 0 ||
            (r = lb_set(c, "lxc.log.level", "WARN", err)) < 0 ||
            (r = lb_set(c, "lxc.cgroup.dir.container", cg, err)) < 0)
                return r;
        return lb_set(c, "lxc.cgroup.dir.monitor", cgm, err);
}

static int configure(struct lxc_be *lb, struct lxc_container *c, const struct be_sandbox *sb,
                     const char *dir, struct sh_error *err)
{
        _cleanup_free_ char *rootfs = sh_strdup_printf("overlay:%s:%s/upper", lb->pause_root, dir);
        _cleanup_free_ char *cg = lb_cgroup_dir(lb, sb->spec, "", sb->id);
        _cleanup_free_ char *cgm = lb_cgroup_dir(lb, sb->spec, "monitor-", sb->id);
        const struct be_sandbox_spec *s = sb->spec;
        int r = 0;

        if (!rootfs || !cg || !cgm)
                return -ENOMEM;
        /* A pod on the host's network has the host's UTS namespace too, as with containerd. */
        if (sb->netns)
                r = lb_set(c, "lxc.uts.name", s->hostname[0] ? s->hostname : s->name, err);
        else
                r = lb_set(c, "lxc.namespace.share.uts", "/proc/self/ns/uts", err);
        if (r < 0 || (r = lb_set(c, "lxc.rootfs.path", rootfs, err)) < 0 ||
            (r = lb_set_common(c, "proc:mixed sys:mixed cgroup:mixed", "0", dir, cg, cgm, err)) <
                    0 ||
            (r = lb_set(c, "lxc.signal.halt", "SIGTERM", err)) < 0 ||
            (r = lb_set_pids_max(lb, c, SANDBOX_PIDS_MAX, err)) < 0)
                return r;
        /* The network namespace is the pod's (CNI set it up), or the host's. */
        /*
         * The host's is given as a file too (and so are its ipc and pid for hostIPC and
         * hostPID): with lxc.namespace.keep, liblxc 5.0.2 fails
         * the overlay rootfs mount (EINVAL) for reasons of its own.
         */
        r = lb_set(c, "lxc.namespace.share.net", sb->netns ? sb->netns : "/proc/self/ns/net", err);
        if (r == 0 && s->ipc_mode == BE_NS_NODE)
                r = lb_set(c, "lxc.namespace.share.ipc", "/proc/self/ns/ipc", err);
        if (r == 0 && s->pid_mode == BE_NS_NODE)
                r = lb_set(c, "lxc.namespace.share.pid", "/proc/self/ns/pid", err);
        return r;
}

struct sysctl_job {
        pid_t pid; /* the pause container's PID 1 */
        const struct be_sandbox_spec *spec;
        int r;
        char why[300];
};

/*
 * Writes the pod's sysctls from a thread of its own that enters the ipc, net and uts
 * namespaces of the pause container and ends there: the kernel resolves /proc/sys/kernel/shm*,
 * fs/mqueue, net and kernel/hostname by the writer's namespaces, so the host's /proc serves.
 * (liblxc's lxc.sysctl writes through the container's /proc, whose /proc/sys is read-only.)
 */
static void *sysctl_thread(void *arg)
{
        static const struct {
                const char *ns;
                int flag;
        } nss[] = {{"ipc", CLONE_NEWIPC}, {"net", CLONE_NEWNET}, {"uts", CLONE_NEWUTS}};
        struct sysctl_job *j = arg;

        for (size_t i = 0; i < SH_ARRAY_SIZE(nss); i++) {
                char path[64];
                int fd;

                snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)j->pid, nss[i].ns);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || setns(fd, nss[i].flag) < 0) {
                        j->r = -errno;
                        snprintf(j->why, sizeof(j->why), "enter %s: %s", path, strerror(errno));
                        if (fd >= 0)
                                close(fd);
                        return NULL;
                }
                close(fd);
        }
        for (size_t i = 0; i < j->spec->n_sysctls; i++) {
                const struct be_kv *kv = &j->spec->sysctls[i];
                char path[300];
                size_t len = strlen(kv->value);
                ssize_t n;
                int fd;

                /* "a.b.c" names /proc/sys/a/b/c; a name with '/' is a path already. */
                snprintf(path, sizeof(path), "/proc/sys/%s", kv->key);
                if (!strchr(kv->key, '/'))
                        for (char *c = path + 10; *c; c++)
                                *c = *c == '.' ? '/' : *c;
                fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
                n = fd < 0 ? -1 : write(fd, kv->value, len);
                if (fd < 0 && (errno == ENOENT || errno == ENOTDIR)) {
                        /* A name the kernel does not have is the request's mistake. */
                        j->r = -EINVAL;
                        snprintf(j->why, sizeof(j->why), "sysctl %s does not exist in this kernel",
                                 kv->key);
                } else if (n < 0 || (size_t)n != len) {
                        j->r = n < 0 ? -errno : -EIO;
                        snprintf(j->why, sizeof(j->why), "sysctl %s = %.64s: %s", kv->key,
                                 kv->value, strerror(n < 0 ? errno : EIO));
                }
                if (fd >= 0)
                        close(fd);
                if (j->r < 0)
                        break;
        }
        return NULL;
}

static int apply_sysctls(struct lxc_container *c, const struct be_sandbox_spec *s,
                         struct sh_error *err)
{
        struct sysctl_job j = {.pid = c->init_pid(c), .spec = s};
        pthread_t t;
        int r;

        if (s->n_sysctls == 0)
                return 0;
        if (j.pid <= 0)
                return sh_err(err, -ESRCH, "sysctls: the pause container is not running");
        r = pthread_create(&t, NULL, sysctl_thread, &j);
        if (r != 0)
                return sh_err(err, -r, "sysctls: thread: %s", strerror(r));
        pthread_join(t, NULL);
        return j.r < 0 ? sh_err(err, j.r, "%s", j.why) : 0;
}

int lb_exec_helper(const char *const *argv, char **envp, char *why, size_t size,
                   struct sh_error *err)
{
        struct sh_exec_result res = {0};
        int r = sh_exec(&(struct sh_exec_opts){.argv = argv,
                                               .envp = (const char *const *)envp,
                                               .timeout_ms = 60000},
                        &res, err);

        if (size)
                why[0] = '\0';
        if (r == 0 && res.exit_code != 0) {
                size_t l = res.err_len;

                while (l && res.err[l - 1] == '\n')
                        res.err[--l] = '\0';
                snprintf(why, size, "%s", l ? res.err : "");
                r = -EIO;
        }
        sh_exec_result_done(&res);
        return r;
}

/*
 * Starts container @id daemonized through runt-lxc-start (lxc/lxc-start.c says why not
 * here). LXC's double fork makes the monitor, so the container is no child of runtd.
 */
static int start_detached(struct lxc_be *lb, const char *id, const char *const *args, char **envp,
                          struct sh_error *err)
{
        char helper[PATH_MAX], why[512];
        const char *argv[8];
        size_t n = 0;
        int r;

        if (sh_find_helper("runt-lxc-start", RUNT_LXC_START_FALLBACK, helper, sizeof(helper)) < 0)
                return sh_err(err, -ENOENT, "runt-lxc-start not found (beside runtd or at %s)",
                              RUNT_LXC_START_FALLBACK);
        argv[n++] = helper;
        argv[n++] = lb->lxcpath;
        argv[n++] = id;
        for (size_t i = 0; args[i] && n < SH_ARRAY_SIZE(argv) - 1; i++)
                argv[n++] = args[i];
        argv[n] = NULL;
        r = lb_exec_helper(argv, envp, why, sizeof(why), err);
        /* runt-lxc-start's own word (it could not join its cgroup), if any. */
        if (r == -EIO && why[0])
                r = sh_err(err, -EIO, "%s", why);
        return r;
}

char *lb_dir(struct lxc_be *lb, const char *id)
{
        return sh_path_join(lb->lxcpath, id);
}

/*
 * The cgroup parents of a pod ("kubepods/burstable/podX" when the kubelet gives one, "runt"
 * otherwise) that did not exist before runt made a pod below them are runt's: it records
 * them and removes them when their last pod goes. The record outlives restarts. One that
 * exists on any hierarchy (v1 or v2) is someone else's, and never removed: a client may
 * name a cgroup made on one controller alone.
 */
static bool cgroup_exists(const char *rel)
{
        DIR *d = opendir("/sys/fs/cgroup");
        struct dirent *de;
        bool found = false;
        struct stat st;

        {
                _cleanup_free_ char *u = sh_strdup_printf("/sys/fs/cgroup/%s", rel);

                /* cgroup2 mounted on /sys/fs/cgroup itself */
                found = u && stat(u, &st) == 0 && S_ISDIR(st.st_mode);
        }
        while (!found && d && (de = readdir(d))) {
                _cleanup_free_ char *p = NULL;

                if (de->d_name[0] == '.' || de->d_type != DT_DIR)
                        continue;
                p = sh_strdup_printf("/sys/fs/cgroup/%s/%s", de->d_name, rel);
                found = p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
        }
        if (d)
                closedir(d);
        return found;
}

/* The parent of @leaf ("a/b/<id>"): "a/b", or NULL at the top. malloc'd. */
static char *parent_of(const char *leaf)
{
        const char *slash = strrchr(leaf, '/');

        return slash && slash != leaf ? strndup(leaf, (size_t)(slash - leaf)) : NULL;
}

static bool created_has(const char *list, const char *rel)
{
        size_t n = strlen(rel);

        for (const char *l = list; l && *l;) {
                const char *e = strchr(l, '\n');
                size_t len = e ? (size_t)(e - l) : strlen(l);

                if (len == n && strncmp(l, rel, n) == 0)
                        return true;
                l = e ? e + 1 : NULL;
        }
        return false;
}

/* Records the parents of @leaf that do not exist yet. cg_lock held. */
static void note_new_parents(struct lxc_be *lb, const char *leaf)
{
        _cleanup_free_ char *list = NULL, *add = strdup("");
        _cleanup_free_ char *p = parent_of(leaf);

        sh_read_file(lb->cg_created, 1u << 20, &list, NULL);
        while (p && add && !cgroup_exists(p)) {
                char *more =
                        created_has(list, p) ? strdup(add) : sh_strdup_printf("%s%s\n", add, p);
                char *up = parent_of(p);

                free(add);
                add = more;
                free(p);
                p = up;
        }
        if (add && add[0]) {
                _cleanup_free_ char *all = sh_strdup_printf("%s%s", list ? list : "", add);

                if (all)
                        sh_write_file_atomic(lb->cg_created, all, strlen(all), 0600);
        }
}

/*
 * On cgroup v1, liblxc fills cpuset.cpus and cpuset.mems only in the cgroups it creates and
 * counts on cgroup.clone_children above them: under a parent that exists with it off (the
 * kubelet makes kubepods/<qos>/pod<uid> itself) the new cgroup gets an empty cpuset and
 * entering it fails with ENOSPC. Each existing ancestor of @leaf gets its parent's cpus and
 * mems when it has none, and the deepest one clone_children. cg_lock held.
 */
int lb_write_cgroup_file(const char *path, const char *value)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW), r = 0;

        if (fd < 0 || write(fd, value, strlen(value)) < 0)
                r = -errno;
        if (fd >= 0)
                close(fd);
        return r;
}

static void prepare_cpuset(const char *leaf)
{
        static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
        _cleanup_free_ char *path = sh_path_join("/sys/fs/cgroup/cpuset", leaf);
        _cleanup_free_ char *deepest = NULL;
        char *slash;

        if (!path || access("/sys/fs/cgroup/cpuset/cgroup.clone_children", F_OK) < 0)
                return;
        /* From the top: every ancestor that exists, each after its parent. */
        for (char *c = path + strlen("/sys/fs/cgroup/cpuset/"); (slash = strchr(c, '/'));
             c = slash + 1) {
                *slash = '\0';
                if (access(path, F_OK) < 0) {
                        *slash = '/';
                        break;
                }
                for (size_t i = 0; i < SH_ARRAY_SIZE(files); i++) {
                        _cleanup_free_ char *f = sh_path_join(path, files[i]);
                        _cleanup_free_ char *have = NULL, *up = NULL, *pf = NULL;
                        char *parent = strrchr(path, '/');

                        if (!f || sh_read_file(f, 4096, &have, NULL) < 0 ||
                            strspn(have, " \n") != strlen(have) || !parent)
                                continue;
                        *parent = '\0';
                        pf = sh_path_join(path, files[i]);
                        *parent = '/';
                        if (pf && sh_read_file(pf, 4096, &up, NULL) == 0)
                                lb_write_cgroup_file(f, up);
                }
                free(deepest);
                deepest = strdup(path);
                *slash = '/';
        }
        if (deepest) {
                _cleanup_free_ char *cc = sh_path_join(deepest, "cgroup.clone_children");

                if (cc)
                        lb_write_cgroup_file(cc, "1");
        }
}

/* Removes the runt-made parents of @leaf that are empty now, deepest first. cg_lock held. */
static void drop_parents(struct lxc_be *lb, const char *leaf)
{
        _cleanup_free_ char *list = NULL;
        _cleanup_free_ char *p = parent_of(leaf);
        bool changed = false;

        if (sh_read_file(lb->cg_created, 1u << 20, &list, NULL) < 0)
                return;
        while (p && created_has(list, p)) {
                char *up = parent_of(p);

                if (!lb_rm_cgroup_empty(p)) {
                        free(up);
                        break; /* another pod is in it */
                }
                /* Off the list: cut its line out. */
                {
                        size_t n = strlen(p);
                        char *l = list;

                        while (l && *l) {
                                char *e = strchr(l, '\n');
                                size_t len = e ? (size_t)(e - l) : strlen(l);

                                if (len == n && strncmp(l, p, n) == 0) {
                                        memmove(l, e ? e + 1 : l + len,
                                                strlen(e ? e + 1 : l + len) + 1);
                                        break;
                                }
                                l = e ? e + 1 : NULL;
                        }
                }
                changed = true;
                free(p);
                p = up;
        }
        if (changed)
                sh_write_file_atomic(lb->cg_created, list, strlen(list), 0600);
}

static int lxc_sandbox_create(struct be *be, const struct be_sandbox *sb, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_free_ char *dir = lb_dir(lb, sb->id);
        _cleanup_free_ char *upper = NULL;
        _cleanup_lxc_ struct lxc_container *c = NULL;
        const char *const argv[] = {"/pause", NULL};
        int r;

        if (!dir)
                return -ENOMEM;
        upper = sh_path_join(dir, "upper");
        if (!upper)
                return -ENOMEM;
        r = sh_mkdir_p(upper, 0755);
        if (r < 0)
                return sh_err(err, r, "create '%s': %s", upper, strerror(-r));
        c = lxc_container_new(sb->id, lb->lxcpath);
        if (!c) {
                r = sh_err(err, -ENOMEM, "lxc_container_new(%s) failed", sb->id);
                goto fail;
        }
        r = configure(lb, c, sb, dir, err);
        if (r < 0)
                goto fail;
        if (!c->save_config(c, NULL)) {
                r = sh_err(err, -EIO, "save the LXC config of %s: %s", sb->id, lb_why(c));
                goto fail;
        }
        {
                _cleanup_free_ char *leaf = lb_cgroup_dir(lb, sb->spec, "", sb->id);
                _cleanup_strv_ char **envp = NULL;

                /* The pause container's LXC monitor is born there, outside runtd's cgroup. */
                r = lb_helper_cgroup(lb, "pod", sb->id, &envp, err);
                if (r < 0)
                        goto fail;
                pthread_mutex_lock(&lb->cg_lock);
                if (leaf) {
                        note_new_parents(lb, leaf);
                        prepare_cpuset(leaf);
                }
                r = start_detached(lb, sb->id, argv, envp, err);
                pthread_mutex_unlock(&lb->cg_lock);
        }
        if (r < 0) {
                char tail[320];

                lb_log_tail(dir, tail, sizeof(tail));
                r = sh_err(err, r, "start the pause container: %s", tail);
                goto fail;
        }
        r = apply_sysctls(c, sb->spec, err);
        if (r < 0)
                goto fail;
        return 0;
fail:
        if (c && c->is_running(c))
                c->stop(c);
        {
                /* LXC made the cgroups before it failed, and maybe parents. */
                _cleanup_free_ char *cg = lb_cgroup_dir(lb, sb->spec, "", sb->id);
                _cleanup_free_ char *cgm = lb_cgroup_dir(lb, sb->spec, "monitor-", sb->id);

                if (cg)
                        lb_rm_cgroup(cg);
                if (cgm)
                        lb_rm_cgroup(cgm);
                if (cg) {
                        pthread_mutex_lock(&lb->cg_lock);
                        drop_parents(lb, cg);
                        pthread_mutex_unlock(&lb->cg_lock);
                }
        }
        lb_helper_cgroup_remove(lb, "pod", sb->id);
        lb_rm_dir(lb, dir);
        return r;
}

static int lxc_sandbox_stop(struct be *be, const char *id, unsigned timeout_s, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_lxc_ struct lxc_container *c = lxc_container_new(id, lb->lxcpath);

        if (!c || !c->is_defined(c) || !c->is_running(c))
                return 0;
        /* runt-pause exits on SIGTERM; SIGKILL if it does not within the grace period. */
        if (!c->shutdown(c, (int)timeout_s) && c->is_running(c) && !c->stop(c))
                return sh_err(err, -EIO, "stop the pause container %.12s: %s", id, lb_why(c));
        return 0;
}

/*
 * Removes cgroup @rel (relative to each hierarchy's root) on every mounted hierarchy, v1 and
 * v2. LXC removes a container's payload cgroup when it stops cleanly but never the monitor's
 * (the monitor is still in it); a monitor just exiting keeps it busy for a moment.
 */
/* rmdir()s the child cgroups of @path (liblxc's attach makes a ".lxc" leaf on cgroup2). */
static void rm_children(const char *path, int depth)
{
        DIR *d = depth < 8 ? opendir(path) : NULL;
        struct dirent *de;

        while (d && (de = readdir(d))) {
                _cleanup_free_ char *p = NULL;

                if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 ||
                    strcmp(de->d_name, "..") == 0)
                        continue;
                p = sh_path_join(path, de->d_name);
                if (p) {
                        rm_children(p, depth + 1);
                        rmdir(p);
                }
        }
        if (d)
                closedir(d);
}

void lb_rm_cgroup(const char *rel)
{
        static const char *const root = "/sys/fs/cgroup";
        _cleanup_(sh_strv_freep) char **bases = NULL;
        DIR *d = opendir(root);
        struct dirent *de;
        size_t n = 0;

        bases = calloc(64, sizeof(char *));
        if (!bases) {
                if (d)
                        closedir(d);
                return;
        }
        bases[n++] = strdup(root); /* cgroup2 mounted on the root itself */
        while (d && (de = readdir(d)) && n < 63)
                if (de->d_name[0] != '.' && de->d_type == DT_DIR)
                        bases[n++] = sh_path_join(root, de->d_name);
        if (d)
                closedir(d);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *p = bases[i] ? sh_path_join(bases[i], rel) : NULL;

                if (p)
                        rm_children(p, 0);
                for (int tries = 0; p && tries < 50; tries++) {
                        if (rmdir(p) == 0 || errno == ENOENT || errno == ENOTDIR)
                                break;
                        if (errno != EBUSY)
                                break;
                        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
                }
        }
}

bool lb_rm_cgroup_empty(const char *rel)
{
        DIR *d = opendir("/sys/fs/cgroup");
        struct dirent *de;
        bool gone = true;

        {
                _cleanup_free_ char *p = sh_path_join("/sys/fs/cgroup", rel);

                if (p && rmdir(p) < 0 && errno != ENOENT && errno != ENOTDIR)
                        gone = false; /* cgroup2 mounted at the root, and busy */
        }
        while (d && (de = readdir(d))) {
                _cleanup_free_ char *base = NULL, *p = NULL;

                if (de->d_name[0] == '.' || de->d_type != DT_DIR)
                        continue;
                base = sh_path_join("/sys/fs/cgroup", de->d_name);
                p = base ? sh_path_join(base, rel) : NULL;
                if (p && rmdir(p) < 0 && errno != ENOENT && errno != ENOTDIR)
                        gone = false;
        }
        if (d)
                closedir(d);
        return gone;
}

static int lxc_sandbox_remove(struct be *be, const char *id, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_free_ char *dir = lb_dir(lb, id);
        char cg[PATH_MAX] = "", cgm[PATH_MAX] = "";
        int r;

        if (!dir)
                return -ENOMEM;
        {
                _cleanup_lxc_ struct lxc_container *c = lxc_container_new(id, lb->lxcpath);

                if (c && c->is_defined(c)) {
                        if (c->get_config_item(c, "lxc.cgroup.dir.container", cg, sizeof(cg)) < 0)
                                cg[0] = '\0';
                        if (c->get_config_item(c, "lxc.cgroup.dir.monitor", cgm, sizeof(cgm)) < 0)
                                cgm[0] = '\0';
                }
        }
        r = lxc_sandbox_stop(be, id, 0, err);
        if (r < 0)
                return r;
        sh_log_debug("sandbox=%s cgroups container=%s monitor=%s", id, cg, cgm);
        if (cg[0])
                lb_rm_cgroup(cg);
        if (cgm[0])
                lb_rm_cgroup(cgm);
        if (cg[0]) {
                pthread_mutex_lock(&lb->cg_lock);
                drop_parents(lb, cg);
                pthread_mutex_unlock(&lb->cg_lock);
        }
        lb_helper_cgroup_remove(lb, "pod", id);
        r = lb_rm_dir(lb, dir);
        if (r < 0)
                return sh_err(err, r, "remove '%s': %s", dir, strerror(-r));
        return 0;
}

int lb_look(struct lxc_be *lb, const char *id, struct lxc_container **ret)
{
        _cleanup_free_ char *conf = sh_strdup_printf("%s/%s/config", lb->lxcpath, id);
        int r = 0;

        *ret = NULL;
        if (!conf)
                return -ENOMEM;
        pthread_rwlock_rdlock(&lb->rm_lock);
        if (access(conf, F_OK) < 0)
                r = errno == ENOENT ? -ENOENT : -EIO;
        else if (!(*ret = lxc_container_new(id, lb->lxcpath)))
                r = -EIO;
        pthread_rwlock_unlock(&lb->rm_lock);
        return r;
}

int lb_rm_dir(struct lxc_be *lb, const char *dir)
{
        const char *name = strrchr(dir, '/');
        int r;

        pthread_rwlock_wrlock(&lb->rm_lock);
        r = sh_rm_rf(dir);
        /*
         * liblxc's lock file of the container, /run/lxc/lock/<lxcpath>/.<name> for root, made
         * by lxc_container_new and never removed by liblxc: one per container ever made
         * would pile up on /run until a reboot.
         */
        if (r == 0 && name && geteuid() == 0) {
                _cleanup_free_ char *lock =
                        sh_strdup_printf("/run/lxc/lock/%s/.%s", lb->lxcpath, name + 1);

                if (lock && unlink(lock) < 0 && errno != ENOENT)
                        sh_log_debug("cannot remove '%s': %s", lock, strerror(errno));
        }
        pthread_rwlock_unlock(&lb->rm_lock);
        return r;
}

static int lxc_sandbox_running(struct be *be, const char *id, bool *ret, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_lxc_ struct lxc_container *c = NULL;
        int r = lb_look(lb, id, &c);

        /* Only a container that is not defined is gone: a failure to look (EMFILE, ENOMEM)
         * must not read as a pod that died. */
        if (r == -ENOENT)
                return sh_err(err, -ENOENT, "no LXC container %.12s", id);
        if (r < 0)
                return sh_err(err, -EIO, "cannot open LXC container %.12s", id);
        if (!c->is_defined(c))
                return sh_err(err, -ENOENT, "no LXC container %.12s", id);
        *ret = c->is_running(c);
        return 0;
}

static int lxc_sandbox_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_lxc_ struct lxc_container *c = NULL;
        _cleanup_close_ int fd = -1;
        int r = lb_look(lb, id, &c);
        pid_t pid;

        if (r < 0 && r != -ENOENT)
                return sh_err(err, r, "sandbox %.12s: cannot open its LXC container", id);
        if (r == -ENOENT || !c->is_defined(c))
                return -ESRCH;
        pid = c->init_pid(c);
        if (pid <= 0)
                return -ESRCH;
        fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0)
                return errno == ESRCH ? -ESRCH
                                      : sh_err(err, -errno, "pidfd of sandbox %.12s: %m", id);
        /* The pid is pinned now: is it still the pause container's init? */
        if (c->init_pid(c) != pid)
                return -ESRCH;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static void lxc_fini(struct be *be)
{
        struct lxc_be *lb = be->priv;

        if (lb) {
                free(lb->lxcpath);
                free(lb->pause_root);
                free(lb->cgroup_base);
                free(lb->seccomp_default);
                free(lb->cg_created);
                free(lb->containers_dir);
                sh_helpercg_free(lb->hcg);
                pthread_mutex_destroy(&lb->cg_lock);
                pthread_rwlock_destroy(&lb->rm_lock);
        }
        free(lb);
        be->priv = NULL;
}

const struct be_ops be_lxc_ops = {
        .name = "lxc",
        .caps = BE_CAP_EXEC | BE_CAP_ATTACH | BE_CAP_STATS | BE_CAP_SHARED_NETNS |
                BE_CAP_NET_BESIDE,
        .init = lxc_init,
        .ready = lxc_ready,
        .sandbox_create = lxc_sandbox_create,
        .sandbox_stop = lxc_sandbox_stop,
        .sandbox_remove = lxc_sandbox_remove,
        .sandbox_running = lxc_sandbox_running,
        .container_create = lb_container_create,
        .container_start = lb_container_start,
        .container_stop = lb_container_stop,
        .container_remove = lb_container_remove,
        .container_status = lb_container_status,
        .container_update = lb_container_update,
        .container_reopen_log = lb_container_reopen_log,
        .exec_sync = lb_exec_sync,
        .exec_stream = lb_exec_stream,
        .container_attach = lb_container_attach,
        .container_stats = lb_container_stats,
        .container_watch = lb_container_watch,
        .sandbox_watch = lxc_sandbox_watch,
        .container_fs_usage = lb_container_fs_usage,
        .sandbox_stats = lb_sandbox_stats,
        .fini = lxc_fini,
        .sandbox_update = lb_sandbox_update,
};
