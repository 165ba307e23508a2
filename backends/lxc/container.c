/*
 * The lxc backend's app containers (notes/lxc.md sections 4 and 6).
 *
 * A container is an LXC container named by its id in runt's lxcpath, on an overlay rootfs
 * over the image's shared layer directories with an upper dir of its own, sharing the
 * network (the pod netns), ipc and uts (and pid when asked) of its sandbox. Its files:
 *   <lxcpath>/<id>/config      LXC's config, written at create
 *   <lxcpath>/<id>/upper       the writable layer
 *   <lxcpath>/<id>/start       what runt-lxc-shim is run with (NUL-separated)
 *   <lxcpath>/<id>/process     uid gid cwd groups, for exec
 *   <lxcpath>/<id>/shim.pid    the monitor (runt-lxc-shim), once started
 *   <lxcpath>/<id>/started     "<init pid> <started_ns>", once it ran
 *   <lxcpath>/<id>/exit        "<exit code> <oom> <started_ns> <finished_ns>", once it exited
 *   <lxcpath>/<id>/attach      the monitor's attach socket while it runs (attach.h)
 * The state is read from these files alone, so it is right after runtd restarted.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define SH_LOG_MODULE "lxc"
#include "attach.h"
#include "be-internal.h"
#include "exec.h"
#include "fdpass.h"
#include "log.h"
#include "lxc-internal.h"
#include "nofollow.h"
#include "seccomp.h"
#include "strutil.h"

#define KILL_WAIT_MS 10000
#define INIT_PATH    "/dev/.runt-init"
/* runt-lxc-exec's own deadline comes this long after runtd's, which normally acts first. */
#define LXC_EXEC_DEADLINE_SLACK_MS 500

/* Device nodes every container may use (containerd's default device cgroup). */
static const char *const default_devices[] = {
        "c *:* m",     "b *:* m",      "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",
        "c 1:8 rwm",   "c 1:9 rwm",    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm",
        "c 136:* rwm", "c 10:200 rwm", NULL,
};

/*
 * The writable layer lives in <root>/containers/<id>/upper (LXC puts overlay's work dir
 * beside it), where ImageFsInfo counts the containers' disk use.
 */
static char *layer_dir(struct lxc_be *lb, const char *id, const char *name)
{
        return sh_strdup_printf("%s/%s/%s", lb->containers_dir, id, name);
}

static int rm_layer(struct lxc_be *lb, const char *id)
{
        _cleanup_free_ char *d = sh_path_join(lb->containers_dir, id);

        return d ? sh_rm_rf(d) : -ENOMEM;
}

static char *file_in(struct lxc_be *lb, const char *id, const char *name)
{
        return sh_strdup_printf("%s/%s/%s", lb->lxcpath, id, name);
}

/* ---------------------------------------------------------------- rootfs */

/*
 * The image as the container will see it: the upper dir over the layers, top first. Paths
 * are looked up one component at a time without following symlinks on the host (a layer's
 * symlink points into the container's rootfs, never out of it), so a hostile image can make
 * runt neither look at nor create anything outside the container's own dirs.
 */

/* lstat of @rel in the dir @base, every component but the last a real directory. */
static int base_lstat(const char *base, const char *rel, struct stat *st)
{
        _cleanup_free_ char *copy = strdup(rel);
        char *save = NULL, *comp, *next;
        int fd = open(base, O_PATH | O_DIRECTORY | O_CLOEXEC), r = 0;

        if (!copy || fd < 0) {
                if (fd >= 0)
                        close(fd);
                return copy ? -ENOENT : -ENOMEM;
        }
        comp = strtok_r(copy, "/", &save);
        while (comp && (next = strtok_r(NULL, "/", &save))) {
                int d = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                close(fd);
                if (d < 0)
                        return errno == ENOENT ? -ENOENT : -ENOTDIR;
                fd = d;
                comp = next;
        }
        if (comp && fstatat(fd, comp, st, AT_SYMLINK_NOFOLLOW) < 0)
                r = -errno;
        if (!comp && fstat(fd, st) < 0)
                r = -errno;
        close(fd);
        return r;
}

/*
 * What the image holds at @rel (no symlink in any but maybe the last component): 0, the
 * lstat and the dir it was found in (*@ret_base), or -ENOENT (absent, whited out, or hidden
 * under an upper layer's non-directory).
 */
static int view_lstat(const struct be_container_spec *s, const char *upper, const char *rel,
                      struct stat *st, const char **ret_base)
{
        size_t n = 0;

        while (s->layer_dirs[n])
                n++;
        for (size_t i = n + 1; i-- > 0;) {
                const char *base = i == n ? upper : s->layer_dirs[i];
                int r = base_lstat(base, rel, st);

                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return -ENOENT; /* a non-directory up here hides the lower layers */
                if (S_ISCHR(st->st_mode) && st->st_rdev == 0)
                        return -ENOENT; /* a whiteout */
                *ret_base = base;
                return 0;
        }
        return -ENOENT;
}

/*
 * Resolves @rel in the image as the container will see it, symlinks followed inside the
 * rootfs ("/" is the rootfs, ".." stops there). *@ret: the path without symlinks (malloc'd,
 * no leading '/'); *@ret_exists: whether something is there.
 */
static int resolve_in_view(const struct be_container_spec *s, const char *upper, const char *rel,
                           char **ret, bool *ret_exists)
{
        _cleanup_free_ char *res = strdup(""), *rest = strdup(rel);
        unsigned links = 0;
        bool missing = false; /* a component was not there: the rest is made, not looked up */

        while (res && rest && rest[0]) {
                size_t len = strcspn(rest, "/");
                _cleanup_free_ char *comp = strndup(rest, len);
                _cleanup_free_ char *cand = NULL;
                const char *base = NULL;
                struct stat st;
                char *tail = rest + len + strspn(rest + len, "/");

                if (!comp)
                        return -ENOMEM;
                memmove(rest, tail, strlen(tail) + 1);
                if (!comp[0] || strcmp(comp, ".") == 0)
                        continue;
                if (strcmp(comp, "..") == 0) {
                        char *slash = strrchr(res, '/');

                        if (slash)
                                *slash = '\0';
                        else
                                res[0] = '\0';
                        continue;
                }
                cand = res[0] ? sh_strdup_printf("%s/%s", res, comp) : strdup(comp);
                if (!cand)
                        return -ENOMEM;
                if (missing || view_lstat(s, upper, cand, &st, &base) < 0) {
                        /* Not there: made as a directory (or the file, last); ".." still pops. */
                        missing = true;
                        free(res);
                        res = cand;
                        cand = NULL;
                        continue;
                }
                if (S_ISLNK(st.st_mode)) {
                        _cleanup_free_ char *link = sh_path_join(base, cand);
                        char target[PATH_MAX];
                        ssize_t tl;
                        char *nrest;

                        if (++links > 40)
                                return -ELOOP;
                        tl = link ? readlink(link, target, sizeof(target) - 1) : -1;
                        if (tl < 0)
                                return -EIO;
                        target[tl] = '\0';
                        if (target[0] == '/')
                                res[0] = '\0';
                        nrest = sh_strdup_printf("%s/%s", target, rest);
                        if (!nrest)
                                return -ENOMEM;
                        free(rest);
                        rest = nrest;
                        continue;
                }
                if (!S_ISDIR(st.st_mode) && rest[0])
                        return -ENOTDIR;
                free(res);
                res = cand;
                cand = NULL;
        }
        if (!res || !rest)
                return -ENOMEM;
        *ret_exists = !missing;
        *ret = res;
        res = NULL;
        return 0;
}

/*
 * Resolves mount point @rel in the image and makes it in the upper dir unless the image has
 * it, so a bind mount works on a read-only rootfs too (LXC's create= needs a writable one).
 * *@ret: the resolved path to mount on (malloc'd, no leading '/').
 */
static int make_mount_point(const struct be_container_spec *s, const char *upper, const char *rel,
                            bool dir, char **ret)
{
        _cleanup_free_ char *res = NULL, *p = NULL, *parent = NULL;
        bool exists = false;
        char *slash;
        int fd, r;

        r = resolve_in_view(s, upper, rel, &res, &exists);
        if (r < 0)
                return r;
        if (exists || !res[0])
                goto done;
        p = sh_path_join(upper, res);
        parent = p ? strdup(p) : NULL;
        if (!p || !parent)
                return -ENOMEM;
        if (dir) {
                r = sh_mkdir_p(p, 0755);
                if (r < 0)
                        return r;
                goto done;
        }
        slash = strrchr(parent, '/');
        if (slash)
                *slash = '\0';
        r = sh_mkdir_p(parent, 0755);
        if (r < 0)
                return r;
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        close(fd);
done:
        if (ret) {
                *ret = res;
                res = NULL;
        }
        return 0;
}

/*
 * runc's exceptions in /proc: files lxcfs mounts over, which exist in every procfs.
 * (runc refuses any other mount destination in /proc; so does runt.)
 */
static const char *const proc_mountable[] = {
        "proc/cpuinfo", "proc/diskstats",
        "proc/meminfo", "proc/stat",
        "proc/swaps",   "proc/uptime",
        "proc/loadavg", "proc/slabinfo",
        "proc/net/dev", "proc/sys/kernel/ns_last_pid",
};

static bool under(const char *res, const char *top)
{
        size_t n = strlen(top);

        return strncmp(res, top, n) == 0 && (res[n] == '\0' || res[n] == '/');
}

/*
 * Checks mount point @rel of the container (relative to its root, as the request has it):
 * where the image's symlinks lead it must not be in /proc or /sys, where LXC mounts the
 * kernel's filesystems and no mount point can be made, so the mount would fail late with
 * liblxc's message. Exceptions: runc's lxcfs files in /proc, and paths that exist in the
 * kernel's sysfs (the host's /sys has them too: /sys/fs/bpf, /sys/fs/cgroup, which CNI
 * daemonsets mount). -EINVAL naming @what, else 0 (also when @rel does not resolve: the
 * caller reports that).
 */
static int check_not_kernel_fs(const struct be_container_spec *s, const char *upper,
                               const char *rel, const char *what, struct sh_error *err)
{
        _cleanup_free_ char *res = NULL, *host = NULL;
        bool exists = false;
        struct stat st;

        if (resolve_in_view(s, upper, rel, &res, &exists) < 0)
                return 0;
        if (under(res, "proc")) {
                for (size_t i = 0; i < SH_ARRAY_SIZE(proc_mountable); i++)
                        if (strcmp(res, proc_mountable[i]) == 0)
                                return 0;
        } else if (under(res, "sys") && strcmp(res, "sys") != 0) {
                host = sh_strdup_printf("/%s", res);
                if (!host)
                        return -ENOMEM;
                if (lstat(host, &st) == 0 && !S_ISLNK(st.st_mode))
                        return 0;
        } else {
                return 0;
        }
        if (strcmp(res, rel) != 0)
                return sh_err(err, -EINVAL,
                              "%s: mount point '/%s' resolves to '/%s' in the image, in /%s, "
                              "where the kernel's filesystem is: not allowed",
                              what, rel, res, under(res, "proc") ? "proc" : "sys");
        return sh_err(err, -EINVAL,
                      "%s: mount point '/%s' is in /%s, where the kernel's filesystem is: not "
                      "allowed",
                      what, rel, under(res, "proc") ? "proc" : "sys");
}

/* @path in fstab escaping (spaces, tabs, newlines, backslashes), as liblxc's parser reads it. */
static char *fstab_escape(const char *path)
{
        size_t n = strlen(path);
        char *out = malloc(n * 4 + 1), *o = out;

        if (!out)
                return NULL;
        for (const char *p = path; *p; p++) {
                if ((unsigned char)*p <= ' ' || *p == '\\' || *p == 0x7f) {
                        snprintf(o, 5, "\\%03o", (unsigned char)*p);
                        o += 4;
                } else {
                        *o++ = *p;
                }
        }
        *o = '\0';
        return out;
}

static int mount_entry(struct lxc_container *c, const char *src, const char *target,
                       const char *type, const char *opts, struct sh_error *err)
{
        _cleanup_free_ char *es = fstab_escape(src);
        _cleanup_free_ char *et = NULL;
        _cleanup_free_ char *line = NULL;

        while (*target == '/')
                target++;
        et = fstab_escape(target);
        if (!es || !et)
                return -ENOMEM;
        line = sh_strdup_printf("%s %s %s %s 0 0", es, et, type, opts);
        return line ? lb_set(c, "lxc.mount.entry", line, err) : -ENOMEM;
}

/* ---------------------------------------------------------------- config */

static int set_caps(struct lxc_container *c, const struct be_container_spec *s, uint64_t caps,
                    struct sh_error *err)
{
        char keep[1024] = "";
        size_t len = 0;

        if (s->privileged && !s->cap_drop[0])
                return 0; /* LXC keeps every capability */
        for (size_t i = 0; be_all_caps[i]; i++) {
                if (!(caps & (UINT64_C(1) << i)))
                        continue;
                for (const char *p = be_all_caps[i]; *p && len + 2 < sizeof(keep); p++)
                        keep[len++] = (char)tolower((unsigned char)*p);
                keep[len++] = ' ';
                keep[len] = '\0';
        }
        if (len)
                keep[len - 1] = '\0';
        return lb_set(c, "lxc.cap.keep", len ? keep : "none", err);
}

/* The Localhost profile of @s, an OCI JSON file, as LXC policy text in @ret. */
static int localhost_policy(const struct be_container_spec *s, char **ret, struct sh_error *err)
{
        _cleanup_free_ char *json = NULL;
        struct stat st;
        size_t len = 0;
        int r;

        if (s->seccomp_profile[0] != '/')
                return sh_err(err, -EINVAL, "seccomp profile '%s' is not an absolute path",
                              s->seccomp_profile);
        /* Not a FIFO or a device: reading one would block or touch hardware. */
        if (stat(s->seccomp_profile, &st) < 0 || !S_ISREG(st.st_mode))
                return sh_err(err, -EINVAL, "seccomp profile '%s' is not a regular file",
                              s->seccomp_profile);
        r = sh_read_file(s->seccomp_profile, 1u << 20, &json, &len);
        if (r < 0)
                return sh_err(err, r == -EFBIG ? -EINVAL : r, "seccomp profile '%s': %s",
                              s->seccomp_profile, strerror(-r));
        r = lxc_seccomp_from_oci(json, len, ret, err);
        if (r < 0)
                return sh_err_prefix(err, r, "seccomp profile '%s'", s->seccomp_profile);
        return 0;
}

/*
 * The container's policy, written to @dir/seccomp. @caps: the capabilities it holds,
 * which RuntimeDefault's capability rules follow.
 */
static int set_seccomp(struct lxc_container *c, const struct be_container_spec *s, uint64_t caps,
                       const char *dir, struct sh_error *err)
{
        _cleanup_free_ char *policy = NULL, *path = NULL;
        int r;

        if (s->privileged || s->seccomp == BE_SECCOMP_UNCONFINED)
                return 0;
        if (s->seccomp == BE_SECCOMP_RUNTIME_DEFAULT)
                r = lxc_seccomp_runtime_default(caps, &policy);
        else
                r = localhost_policy(s, &policy, err);
        if (r < 0)
                return r;
        path = sh_path_join(dir, "seccomp");
        if (!path)
                return -ENOMEM;
        /* No fsync: no more durable than the record that names the container (write_fields). */
        r = sh_write_file_replace(path, policy, strlen(policy), 0600);
        if (r < 0)
                return sh_err(err, r, "write '%s': %s", path, strerror(-r));
        return lb_set(c, "lxc.seccomp.profile", path, err);
}

/*
 * Calls @fn for each cgroup file of @res on this host (v1 or v2 names, common/cgroup.h),
 * in the order to write them. pids.max is not among them: lb_set_pids_max sets it.
 */
static int resource_items(struct lxc_be *lb, const struct be_resources *res,
                          int (*fn)(void *data, const char *key, const char *value,
                                    struct sh_error *err),
                          void *data, struct sh_error *err)
{
        _cleanup_free_ const char **sizes = calloc(res->n_hugepages + 1, sizeof(char *));
        _cleanup_free_ const char **limits = calloc(res->n_hugepages + 1, sizeof(char *));
        struct sh_cg_limits l = {
                .cpu_shares = res->cpu_shares,
                .cpu_quota = res->cpu_quota,
                .cpu_period = res->cpu_period,
                .cpuset_cpus = res->cpuset_cpus,
                .cpuset_mems = res->cpuset_mems,
                .memory = res->memory_limit,
                .memory_swap = res->memory_swap_limit,
                .hugepage_sizes = sizes,
                .hugepage_limits = limits,
                .n_hugepages = res->n_hugepages,
        };

        if (!sizes || !limits)
                return -ENOMEM;
        for (size_t i = 0; i < res->n_hugepages; i++) {
                sizes[i] = res->hugepages[i].key;
                limits[i] = res->hugepages[i].value;
        }
        return sh_cg_limit_items(&lb->cg, &l, fn, data, err);
}

/* Sets lxc.cgroup.<key> (v1) or lxc.cgroup2.<key> (v2) in the container @data's config. */
static int set_cgroup_config(void *data, const char *key, const char *value, struct sh_error *err)
{
        const struct cg_config *cc = data;
        _cleanup_free_ char *k = sh_strdup_printf("%s.%s", lb_cgroup_key(cc->lb), key);

        if (!k)
                return -ENOMEM;
        cc->c->clear_config_item(cc->c, k);
        return lb_set(cc->c, k, value, err);
}

static int set_process(struct lxc_be *lb, struct lxc_container *c,
                       const struct be_container_spec *s, struct sh_error *err)
{
        char v[64];
        int r = 0;

        for (size_t i = 0; r == 0 && s->env[i]; i++)
                r = lb_set(c, "lxc.environment", s->env[i], err);
        if (r < 0)
                return r;
        snprintf(v, sizeof(v), "%u", s->uid);
        if ((r = lb_set(c, "lxc.init.uid", v, err)) < 0)
                return r;
        snprintf(v, sizeof(v), "%u", s->gid);
        if ((r = lb_set(c, "lxc.init.gid", v, err)) < 0)
                return r;
        if ((r = lb_set(c, "lxc.init.cwd", s->cwd, err)) < 0)
                return r;
        if (s->n_groups) {
                char groups[1024] = "";
                size_t len = 0;

                for (size_t i = 0; i < s->n_groups && len + 12 < sizeof(groups); i++)
                        len += (size_t)snprintf(groups + len, sizeof(groups) - len, "%s%u",
                                                i ? "," : "", s->groups[i]);
                if ((r = lb_set(c, "lxc.init.groups", groups, err)) < 0)
                        return r;
        }
        if (s->no_new_privs && (r = lb_set(c, "lxc.no_new_privs", "1", err)) < 0)
                return r;
        if (s->resources.has_oom_score_adj) {
                long adj = (long)s->resources.oom_score_adj;

                /* Root without CAP_SYS_RESOURCE cannot go below its own value. */
                if (adj < lb->own_oom_score_adj)
                        adj = lb->own_oom_score_adj;
                if (adj > 1000)
                        adj = 1000;
                snprintf(v, sizeof(v), "%ld", adj);
                if ((r = lb_set(c, "lxc.proc.oom_score_adj", v, err)) < 0)
                        return r;
        }
        return 0;
}

/* A path of the kernel's (/proc, /sys), the same on the host and in the container. */
static bool kernel_path(const char *p)
{
        return strncmp(p, "/proc/", 6) == 0 || strncmp(p, "/sys/", 5) == 0;
}

/*
 * Container path @p as the image has it: *@ret its path without symlinks, *@st its lstat.
 * -ENOENT when the image has nothing there, or when a mount of the request covers it: what
 * is there then is the mount's (a volume the container may have filled with symlinks), not
 * the image's, and the rootfs source of a read-only bind would follow them on the host.
 */
static int image_path(const struct be_container_spec *s, const char *upper, const char *p,
                      char **ret, struct stat *st)
{
        _cleanup_free_ char *res = NULL;
        const char *base = NULL;
        bool exists = false;
        int r;

        r = resolve_in_view(s, upper, p, &res, &exists);
        if (r < 0)
                return r;
        if (!exists || !res[0] || view_lstat(s, upper, res, st, &base) < 0)
                return -ENOENT;
        for (size_t i = 0; i < s->n_mounts; i++) {
                _cleanup_free_ char *m = NULL;
                bool e = false;

                if (resolve_in_view(s, upper, s->mounts[i].container_path, &m, &e) == 0 &&
                    under(res, m))
                        return -ENOENT;
        }
        *ret = res;
        res = NULL;
        return 0;
}

/*
 * Mounts with PROPAGATION_BIDIRECTIONAL go through runt-lxc-hook (lxc/mount-hook.c says
 * why): @spec collects its fields, host path, mount point and "ro"/"rw", NUL-terminated.
 */
static int add_shared_mount(char **spec, size_t *len, const char *src, const char *at, bool ro)
{
        size_t add = strlen(src) + strlen(at) + 5;
        char *n = realloc(*spec, *len + add);

        if (!n)
                return -ENOMEM;
        *spec = n;
        memcpy(n + *len, src, strlen(src) + 1);
        *len += strlen(src) + 1;
        memcpy(n + *len, at, strlen(at) + 1);
        *len += strlen(at) + 1;
        memcpy(n + *len, ro ? "ro" : "rw", 3);
        *len += 3;
        return 0;
}

/*
 * Whether the mount that holds @path (the deepest mount point above it in mountinfo) is
 * shared, i.e. in a peer group ("shared:N" among its optional fields).
 */
static int shared_source(const char *path, bool *ret)
{
        _cleanup_free_ char *real = realpath(path, NULL);
        _cleanup_free_ char *line = NULL;
        size_t cap = 0, best = 0;
        FILE *f;

        if (!real)
                return -errno;
        f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return -errno;
        *ret = false;
        while (getline(&line, &cap, f) > 0) {
                /* id parent major:minor root mount-point options [optional...] - ... */
                char *save = NULL, *tok = strtok_r(line, " ", &save);
                char *mp = NULL;
                bool shared = false;
                size_t n;

                for (int i = 0; tok && i < 4; i++)
                        tok = strtok_r(NULL, " ", &save);
                mp = tok; /* the mount point (octal escapes never match a realpath with them) */
                tok = mp ? strtok_r(NULL, " ", &save) : NULL; /* options */
                while (tok && (tok = strtok_r(NULL, " ", &save)) && strcmp(tok, "-") != 0)
                        shared |= strncmp(tok, "shared:", 7) == 0;
                if (!mp)
                        continue;
                n = strlen(mp);
                if ((strcmp(mp, "/") == 0 ||
                     (strncmp(real, mp, n) == 0 && (real[n] == '/' || real[n] == '\0'))) &&
                    n >= best) {
                        best = n;
                        *ret = shared;
                }
        }
        fclose(f);
        return 0;
}

#define SHELL_SAFE "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._+-"

/*
 * Sets LXC hook @key to run runt-lxc-hook with @flag (may be "") and @path. liblxc runs
 * "exec <value> NAME lxc <kind>" through sh -c, unquoted: both words must be plain.
 */
static int set_hook(struct lxc_container *c, const char *key, const char *flag, const char *path,
                    struct sh_error *err)
{
        _cleanup_free_ char *line = NULL;
        char hook[PATH_MAX];

        if (sh_find_helper("runt-lxc-hook", RUNT_LXC_HOOK_FALLBACK, hook, sizeof(hook)) < 0)
                return sh_err(err, -ENOENT, "runt-lxc-hook not found (beside runtd or at %s)",
                              RUNT_LXC_HOOK_FALLBACK);
        if (hook[strspn(hook, SHELL_SAFE)] || path[strspn(path, SHELL_SAFE)])
                return sh_err(err, -EINVAL, "'%s' or '%s' has a character a shell would interpret",
                              hook, path);
        line = sh_strdup_printf("%s %s%s%s", hook, flag, flag[0] ? " " : "", path);
        return line ? lb_set(c, key, line, err) : -ENOMEM;
}

/* The start-host hook that attaches the bidirectional mounts (lxc/mount-hook.c). */
static int set_shared_hook(struct lxc_container *c, const char *dir, const char *spec, size_t len,
                           struct sh_error *err)
{
        _cleanup_free_ char *path = sh_path_join(dir, "shared-mounts");
        int r;

        if (!path)
                return -ENOMEM;
        r = sh_write_file_atomic(path, spec, len, 0600);
        if (r < 0)
                return sh_err(err, r, "write '%s': %s", path, strerror(-r));
        return set_hook(c, "lxc.hook.start-host", "", path, err);
}

/* The pre-start hook that refuses a second start of the container (lxc/mount-hook.c). */
static int set_once_hook(struct lxc_container *c, const char *dir, struct sh_error *err)
{
        _cleanup_free_ char *path = sh_path_join(dir, "ran");

        if (!path)
                return -ENOMEM;
        unlink(path);
        return set_hook(c, "lxc.hook.pre-start", "--once", path, err);
}

static int set_mounts(struct lxc_be *lb, struct lxc_container *c, const struct be_container *bc,
                      const char *upper, const char *dir, struct sh_error *err)
{
        const struct be_container_spec *s = bc->spec;
        static const char *const pod_files[] = {"hosts", "hostname", "resolv.conf"};
        _cleanup_free_ char *rootfs_mount = sh_path_join(dir, "rootfs");
        _cleanup_free_ char *shared = NULL;
        size_t shared_len = 0, n_shared = 0;
        char init[PATH_MAX], what[32];
        int r;

        if (!rootfs_mount)
                return -ENOMEM;
        /* Where LXC mounts the rootfs before it pivots: a source for binds of image paths. */
        r = sh_mkdir_p(rootfs_mount, 0700);
        if (r < 0)
                return sh_err(err, r, "create '%s': %s", rootfs_mount, strerror(-r));
        if ((r = lb_set(c, "lxc.rootfs.mount", rootfs_mount, err)) < 0)
                return r;

        if (sh_find_helper("runt-init", RUNT_INIT_FALLBACK, init, sizeof(init)) < 0)
                return sh_err(err, -ENOENT, "runt-init not found (beside runtd or at %s)",
                              RUNT_INIT_FALLBACK);
        /*
         * PID 1 (lxc/init.c), on the autodev tmpfs, so a read-only rootfs needs no mount point.
         * A copy of its own: a container with CAP_SYS_ADMIN can remount the bind read-write,
         * and must not reach the host's binary, which every other container runs.
         */
        {
                _cleanup_free_ char *own = sh_path_join(dir, "init");

                if (!own)
                        return -ENOMEM;
                r = sh_copy_file(init, own, 0555);
                if (r < 0)
                        return sh_err(err, r, "copy '%s' to '%s': %s", init, own, strerror(-r));
                r = mount_entry(c, own, &INIT_PATH[1], "none", "bind,ro,create=file", err);
        }
        if (r == 0)
                r = mount_entry(c, "tmpfs", "dev/shm", "tmpfs",
                                "rw,nosuid,nodev,noexec,mode=1777,size=65536k,create=dir", err);
        for (size_t i = 0; r == 0 && bc->pod_dir && i < SH_ARRAY_SIZE(pod_files); i++) {
                _cleanup_free_ char *src = sh_path_join(bc->pod_dir, pod_files[i]);
                _cleanup_free_ char *dst = sh_path_join("etc", pod_files[i]);

                if (!src || !dst)
                        return -ENOMEM;
                if (access(src, F_OK) < 0)
                        continue;
                /* A mount of the container's own at that path wins. */
                for (size_t m = 0; m < s->n_mounts && src; m++)
                        if (strcmp(s->mounts[m].container_path + 1, dst) == 0)
                                goto next;
                {
                        _cleanup_free_ char *at = NULL;

                        r = check_not_kernel_fs(s, upper, dst, "pod file", err);
                        if (r < 0)
                                return r;
                        r = make_mount_point(s, upper, dst, false, &at);
                        if (r < 0)
                                return sh_err(err, r, "mount point /%s: %s", dst, strerror(-r));
                        r = mount_entry(c, src, at, "none", s->readonly_rootfs ? "bind,ro" : "bind",
                                        err);
                }
        next:;
        }
        for (size_t i = 0; r == 0 && i < s->n_mounts; i++) {
                const struct be_mount *m = &s->mounts[i];
                const char *prop = m->propagation == BE_PROPAGATION_BIDIRECTIONAL ? "rshared"
                                   : m->propagation == BE_PROPAGATION_HOST_TO_CONTAINER
                                           ? "rslave"
                                           : "rprivate";
                _cleanup_free_ char *opts = NULL, *at = NULL;
                struct stat st;
                bool is_dir = true;

                /* Before the host path is made: a refused mount leaves nothing. */
                snprintf(what, sizeof(what), "mounts[%zu]", i);
                if (strncmp(m->container_path, "/dev/", 5) != 0 &&
                    (r = check_not_kernel_fs(s, upper, m->container_path + 1, what, err)) < 0)
                        return r;
                if (stat(m->host_path, &st) < 0) {
                        /* As containerd does: a missing host path is made a directory. */
                        r = sh_mkdir_p(m->host_path, 0755);
                        if (r < 0)
                                return sh_err(err, r, "mounts[%zu]: create '%s': %s", i,
                                              m->host_path, strerror(-r));
                } else {
                        is_dir = S_ISDIR(st.st_mode);
                }
                if (strncmp(m->container_path, "/dev/", 5) == 0) {
                        /*
                         * /dev is the autodev tmpfs, mounted before the entries and holding
                         * nothing of the image (the kubelet's /dev/termination-log): LXC makes
                         * the mount point there.
                         */
                        opts = sh_strdup_printf("rbind,%s%s,%s", prop, m->readonly ? ",ro" : "",
                                                is_dir ? "create=dir" : "create=file");
                        r = opts ? mount_entry(c, m->host_path, m->container_path, "none", opts,
                                               err)
                                 : -ENOMEM;
                        continue;
                }
                r = make_mount_point(s, upper, m->container_path + 1, is_dir, &at);
                if (r < 0)
                        return sh_err(err, r, "mounts[%zu]: mount point '%s': %s", i,
                                      m->container_path, strerror(-r));
                if (m->propagation == BE_PROPAGATION_BIDIRECTIONAL) {
                        bool ok = false;

                        /* As containerd: propagation both ways needs a shared source. */
                        r = shared_source(m->host_path, &ok);
                        if (r < 0)
                                return sh_err(err, r, "mounts[%zu]: '%s': %s", i, m->host_path,
                                              strerror(-r));
                        if (!ok)
                                return sh_err(err, -EINVAL,
                                              "mounts[%zu]: '%s' is not on a shared mount: "
                                              "bidirectional propagation needs one (mount "
                                              "--make-rshared)",
                                              i, m->host_path);
                        if (++n_shared > 128)
                                return sh_err(err, -EINVAL, "more than 128 bidirectional mounts");
                        r = add_shared_mount(&shared, &shared_len, m->host_path, at, m->readonly);
                        continue;
                }
                opts = sh_strdup_printf("rbind,%s%s", prop, m->readonly ? ",ro" : "");
                r = opts ? mount_entry(c, m->host_path, at, "none", opts, err) : -ENOMEM;
        }
        for (size_t i = 0; r == 0 && i < s->n_devices; i++) {
                const struct be_device *d = &s->devices[i];
                _cleanup_free_ char *rule = NULL;
                struct stat st;

                if (stat(d->host_path, &st) < 0 || !(S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
                        return sh_err(err, -EINVAL, "devices[%zu]: '%s' is not a device", i,
                                      d->host_path);
                if (strncmp(d->container_path, "/dev/", 5) == 0) {
                        /* On the autodev tmpfs, which holds nothing of the image. */
                        r = mount_entry(c, d->host_path, d->container_path, "none",
                                        "bind,create=file", err);
                } else {
                        _cleanup_free_ char *at = NULL;

                        snprintf(what, sizeof(what), "devices[%zu]", i);
                        r = check_not_kernel_fs(s, upper, d->container_path + 1, what, err);
                        if (r < 0)
                                return r;
                        r = make_mount_point(s, upper, d->container_path + 1, false, &at);
                        if (r < 0)
                                return sh_err(err, r, "devices[%zu]: mount point '%s': %s", i,
                                              d->container_path, strerror(-r));
                        r = mount_entry(c, d->host_path, at, "none", "bind", err);
                }
                rule = sh_strdup_printf("%c %u:%u %s", S_ISCHR(st.st_mode) ? 'c' : 'b',
                                        major(st.st_rdev), minor(st.st_rdev),
                                        d->permissions[0] ? d->permissions : "rwm");
                if (r == 0 && !s->privileged)
                        r = rule ? lb_set_device_rule(lb, c, "allow", rule, err) : -ENOMEM;
        }
        if (r == 0 && shared)
                r = set_shared_hook(c, dir, shared, shared_len, err);
        if (r < 0 || s->privileged)
                return r;
        /* Masked paths: /dev/null over files, an empty read-only tmpfs over directories. */
        for (size_t i = 0; r == 0; i++) {
                const char *p = s->masked_paths[0] ? s->masked_paths[i] : be_default_masked[i];
                _cleanup_free_ char *at = NULL;
                struct stat st;

                if (!p)
                        break;
                if (kernel_path(p)) {
                        /* The kernel's files, which the host and the container share. */
                        if (stat(p, &st) < 0)
                                continue; /* not on this kernel */
                } else if (image_path(s, upper, p, &at, &st) < 0) {
                        continue; /* not in the image */
                }
                r = S_ISDIR(st.st_mode) ? mount_entry(c, "tmpfs", at ? at : p, "tmpfs",
                                                      "ro,size=0,optional", err)
                                        : mount_entry(c, "/dev/null", at ? at : p, "none",
                                                      "bind,optional", err);
        }
        for (size_t i = 0; r == 0; i++) {
                const char *p =
                        s->readonly_paths[0] ? s->readonly_paths[i] : be_default_readonly[i];
                _cleanup_free_ char *at = NULL, *src = NULL;
                struct stat st;

                if (!p)
                        break;
                if (kernel_path(p)) {
                        /* proc:mixed has /proc/sys and /proc/sysrq-trigger read-only, per netns. */
                        if (strcmp(p, "/proc/sys") == 0 || strcmp(p, "/proc/sysrq-trigger") == 0 ||
                            access(p, F_OK) < 0)
                                continue;
                        r = mount_entry(c, p, p, "none", "bind,ro,optional", err);
                        continue;
                }
                if (image_path(s, upper, p, &at, &st) < 0)
                        continue;
                /* The source is the path in the mounted rootfs, mounts made on it included. */
                src = sh_strdup_printf("%s/%s", rootfs_mount, at);
                r = src ? mount_entry(c, src, at, "none", "rbind,ro,optional", err) : -ENOMEM;
        }
        return r;
}

static char *rootfs_path(const struct be_container_spec *s, const char *upper)
{
        size_t n = 0, len = strlen("overlay:") + strlen(upper) + 1;
        char *out, *o;

        while (s->layer_dirs[n])
                len += strlen(s->layer_dirs[n++]) + 1;
        out = malloc(len + 1);
        if (!out)
                return NULL;
        o = out + snprintf(out, len + 1, "overlay:");
        for (size_t i = n; i-- > 0;) /* overlayfs lists the top layer first */
                o += snprintf(o, len + 1 - (size_t)(o - out), "%s:", s->layer_dirs[i]);
        snprintf(o, len + 1 - (size_t)(o - out), "%s", upper);
        return out;
}

static int configure(struct lxc_be *lb, struct lxc_container *c, const struct be_container *bc,
                     const char *dir, const char *upper, struct sh_error *err)
{
        const struct be_container_spec *s = bc->spec;
        _cleanup_free_ char *rootfs = rootfs_path(s, upper);
        _cleanup_free_ char *cg = lb_cgroup_dir(lb, bc->sandbox, "", bc->id);
        _cleanup_free_ char *cgm = lb_cgroup_dir(lb, bc->sandbox, "monitor-", bc->id);
        uint64_t caps = 0;
        int r;

        if (!rootfs || !cg || !cgm)
                return -ENOMEM;
        if (strlen(rootfs) > 3800)
                return sh_err(err, -E2BIG, "image has too many layers for one overlay mount (%zu)",
                              strlen(rootfs));
        if ((r = lb_set(c, "lxc.rootfs.path", rootfs, err)) < 0 ||
            (s->readonly_rootfs && (r = lb_set(c, "lxc.rootfs.options", "ro", err)) < 0) ||
            (r = lb_set_common(c,
                               /* Its own cgroup read-only, as runc mounts it: written,
                                * it would let root in the container raise its limits. */
                               s->privileged ? "proc:rw sys:rw cgroup:rw"
                                             : "proc:mixed sys:mixed cgroup:ro",
                               "16", dir, cg, cgm, err)) < 0)
                return r;
        /* Namespaces: the pod's network; ipc and uts of the sandbox (LXC finds it by name). */
        if ((r = lb_set(c, "lxc.namespace.share.net", bc->netns ? bc->netns : "/proc/self/ns/net",
                        err)) < 0 ||
            (r = lb_set(c, "lxc.namespace.share.ipc", bc->sandbox_id, err)) < 0 ||
            (r = lb_set(c, "lxc.namespace.share.uts", bc->sandbox_id, err)) < 0)
                return r;
        if (s->pid_mode == BE_NS_POD || s->pid_mode == BE_NS_NODE) {
                /* The sandbox is in the host's pid namespace when the pod asked for that. */
                r = lb_set(c, "lxc.namespace.share.pid", bc->sandbox_id, err);
                if (r < 0)
                        return r;
        }
        if (!s->privileged) {
                r = lb_set_device_rule(lb, c, "deny", "a", err);
                for (size_t i = 0; r == 0 && default_devices[i]; i++)
                        r = lb_set_device_rule(lb, c, "allow", default_devices[i], err);
                if (r < 0)
                        return r;
        }
        if ((r = be_cap_set(s, &caps, err)) < 0 || (r = set_caps(c, s, caps, err)) < 0 ||
            (r = set_seccomp(c, s, caps, dir, err)) < 0 || (r = set_process(lb, c, s, err)) < 0 ||
            (r = resource_items(lb, &s->resources, set_cgroup_config, &(struct cg_config){lb, c},
                                err)) < 0 ||
            (r = lb_set_pids_max(lb, c, s->pids_limit, err)) < 0)
                return r;
        if ((r = set_once_hook(c, dir, err)) < 0)
                return r;
        return set_mounts(lb, c, bc, upper, dir, err);
}

/*
 * Writes the NUL-separated fields @v (NULL-terminated) to @path, atomically but without
 * fsync, as the container's other files (its LXC config, seccomp policy): the state store
 * commits with synchronous=NORMAL, so a power loss may lose the container's record as well,
 * and a container created before a reboot is never started after it (its pod is gone).
 */
static int write_fields(const char *path, const char *const *v)
{
        size_t len = 0, n = 0;
        _cleanup_free_ char *buf = NULL;

        for (size_t i = 0; v[i]; i++)
                len += strlen(v[i]) + 1;
        buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; v[i]; i++) {
                size_t l = strlen(v[i]) + 1;

                memcpy(buf + n, v[i], l);
                n += l;
        }
        return sh_write_file_replace(path, buf, n, 0600);
}

int lb_fields_parse(const char *buf, size_t len, char ***ret)
{
        size_t n = 0;
        char **v;

        for (size_t i = 0; i < len; i++)
                n += buf[i] == '\0';
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0, k = 0; i < len && k < n; k++) {
                v[k] = strdup(buf + i);
                if (!v[k]) {
                        sh_strv_free(v);
                        return -ENOMEM;
                }
                i += strlen(buf + i) + 1;
        }
        *ret = v;
        return 0;
}

/* Reads what write_fields wrote: a NULL-terminated vector (malloc'd). */
static int read_fields(const char *path, char ***ret)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r;

        r = sh_read_file(path, 1u << 20, &buf, &len);
        if (r < 0)
                return r;
        return lb_fields_parse(buf, len, ret);
}

/*
 * The directory of cgroup @cg holding its memory files, which runt-lxc-shim watches for OOM
 * kills: <root>/memory/<cg> on v1, <root>/<cg> on v2; "" without the memory controller.
 */
static char *memcg_of(struct lxc_be *lb, const char *cg)
{
        if (!(lb->cg.controllers & SH_CG_MEMORY))
                return strdup("");
        return sh_cg_dir_for(&lb->cg, cg, "memory.max");
}

int lb_container_create(struct be *be, const struct be_container *bc, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        const struct be_container_spec *s = bc->spec;
        _cleanup_free_ char *dir = lb_dir(lb, bc->id);
        _cleanup_free_ char *upper = NULL, *start = NULL, *process = NULL, *cg = NULL;
        _cleanup_free_ char *memcg = NULL;
        _cleanup_lxc_ struct lxc_container *c = NULL;
        char flags[32], mode[8] = "", uid[16], gid[16], groups[1024] = "-";
        int r;

        if (!dir)
                return -ENOMEM;
        if (!s->layer_dirs[0])
                return sh_err(err, -EINVAL, "image %s has no layers", s->image_id);
        upper = layer_dir(lb, bc->id, "upper");
        start = sh_path_join(dir, "start");
        process = sh_path_join(dir, "process");
        cg = lb_cgroup_dir(lb, bc->sandbox, "", bc->id);
        memcg = cg ? memcg_of(lb, cg) : NULL;
        if (!upper || !start || !process || !memcg)
                return -ENOMEM;
        if (access(dir, F_OK) == 0)
                return sh_err(err, -EEXIST, "container dir '%s' exists", dir);
        r = sh_mkdir_p(upper, 0755);
        if (r < 0)
                return sh_err(err, r, "create '%s': %s", upper, strerror(-r));
        c = lxc_container_new(bc->id, lb->lxcpath);
        if (!c) {
                r = sh_err(err, -ENOMEM, "lxc_container_new(%s) failed", bc->id);
                goto fail;
        }
        /* LXC mounts /dev, /proc and /sys; a read-only rootfs must have their mount points. */
        for (size_t i = 0; r == 0 && i < 3; i++)
                r = make_mount_point(s, upper, (const char *[]){"dev", "proc", "sys"}[i], true,
                                     NULL);
        /* The working dir is made when the image lacks it, as runc does. */
        if (r == 0)
                r = make_mount_point(s, upper, s->cwd + 1, true, NULL);
        if (r < 0) {
                r = sh_err(err, r, "working dir '%s': %s", s->cwd, strerror(-r));
                goto fail;
        }
        r = configure(lb, c, bc, dir, upper, err);
        if (r < 0)
                goto fail;
        if (!c->save_config(c, NULL)) {
                r = sh_err(err, -EIO, "save the LXC config of %.12s: %s", bc->id, lb_why(c));
                goto fail;
        }
        /*
         * runt-lxc-shim's FLAGS: t (pty), i (stdin open), o (stdin_once), or -; then the log
         * line limit.
         */
        snprintf(mode, sizeof(mode), "%s%s%s", s->tty ? "t" : "", s->stdin_open ? "i" : "",
                 s->stdin_open && s->stdin_once ? "o" : "");
        snprintf(flags, sizeof(flags), "%s:%u", mode[0] ? mode : "-",
                 s->log_max_line ? s->log_max_line : 16384);
        {
                size_t n = 0;
                const char **v;

                while (s->argv[n])
                        n++;
                v = calloc(n + 5, sizeof(char *));
                if (!v) {
                        r = -ENOMEM;
                        goto fail;
                }
                v[0] = s->log_path;
                v[1] = flags;
                v[2] = memcg;
                v[3] = INIT_PATH;
                for (size_t i = 0; i < n; i++)
                        v[4 + i] = s->argv[i];
                r = write_fields(start, v);
                free(v);
        }
        if (r == 0) {
                size_t len = 0;

                for (size_t i = 0; i < s->n_groups && len + 12 < sizeof(groups); i++)
                        len += (size_t)snprintf(groups + len, sizeof(groups) - len, "%s%u",
                                                i ? "," : "", s->groups[i]);
                snprintf(uid, sizeof(uid), "%u", s->uid);
                snprintf(gid, sizeof(gid), "%u", s->gid);
                r = write_fields(process, (const char *[]){uid, gid, s->cwd, groups, NULL});
        }
        if (r < 0) {
                r = sh_err(err, r, "write the start files of %.12s: %s", bc->id, strerror(-r));
                goto fail;
        }
        return 0;
fail:
        rm_layer(lb, bc->id);
        lb_rm_dir(lb, dir);
        return r;
}

/* ---------------------------------------------------------------- running */

static int read_pid(const char *path)
{
        _cleanup_free_ char *buf = NULL;

        if (sh_read_file(path, 64, &buf, NULL) < 0)
                return 0;
        return atoi(buf);
}

bool lb_exit_parse(const char *text, struct be_ctr_status *ret)
{
        int code = 0, oom = 0;
        long long started = 0, finished = 0;

        if (sscanf(text, "%d %d %lld %lld", &code, &oom, &started, &finished) != 4)
                return false;
        ret->state = BE_CTR_EXITED;
        ret->exit_code = code;
        ret->oom_killed = oom != 0;
        ret->started_ns = started;
        ret->finished_ns = finished;
        snprintf(ret->reason, sizeof(ret->reason), "%s",
                 oom && code != 0 ? "OOMKilled"
                 : code == 0      ? "Completed"
                                  : "Error");
        return true;
}

bool lb_started_parse(const char *text, int *ret_pid, long long *ret_started_ns,
                      unsigned long long *ret_starttime)
{
        unsigned long long starttime = 0;
        long long ns = 0;
        int pid = 0;

        if (ret_starttime ? sscanf(text, "%d %lld %llu", &pid, &ns, &starttime) != 3
                          : sscanf(text, "%d %lld", &pid, &ns) != 2)
                return false;
        *ret_pid = pid;
        *ret_started_ns = ns;
        if (ret_starttime)
                *ret_starttime = starttime;
        return true;
}

/* Is the monitor of @id (pid in shim.pid) alive? */
static bool shim_alive(struct lxc_be *lb, const char *id, int *ret_pid)
{
        _cleanup_free_ char *pidfile = file_in(lb, id, "shim.pid");
        _cleanup_free_ char *cmdline = NULL, *cl = NULL;
        size_t len = 0;
        int pid = pidfile ? read_pid(pidfile) : 0;

        if (ret_pid)
                *ret_pid = pid;
        if (pid <= 0 || kill(pid, 0) < 0)
                return false;
        cl = sh_strdup_printf("/proc/%d/cmdline", pid);
        if (!cl || sh_read_file(cl, 65536, &cmdline, &len) < 0)
                return false;
        /* The pid is ours only while its command line names this container. */
        for (size_t i = 0; i + 64 <= len; i++)
                if ((i == 0 || cmdline[i - 1] == '\0') && strncmp(cmdline + i, id, 64) == 0)
                        return true;
        return false;
}

int lb_container_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_close_ int fd = -1;
        int pid = 0;

        if (!shim_alive(lb, id, &pid))
                return -ESRCH;
        fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0)
                return errno == ESRCH
                               ? -ESRCH
                               : sh_err(err, -errno, "pidfd of the monitor of %.12s: %m", id);
        /* The pid is pinned now: is it still this container's monitor? */
        if (!shim_alive(lb, id, NULL))
                return -ESRCH;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int lb_container_status(struct be *be, const char *id, struct be_ctr_status *ret,
                        struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_free_ char *dir = lb_dir(lb, id);
        _cleanup_free_ char *exitf = file_in(lb, id, "exit"),
                            *startedf = file_in(lb, id, "started");
        _cleanup_free_ char *buf = NULL;
        bool alive;

        if (!dir || !exitf || !startedf)
                return -ENOMEM;
        if (access(dir, F_OK) < 0)
                return sh_err(err, -ENOENT, "no LXC container %.12s", id);
        memset(ret, 0, sizeof(*ret));
        /*
         * The monitor renames the exit file into place and then exits, so it is asked whether
         * it lives before the file is read: a monitor gone by then has written all it ever
         * will. The other way round, a monitor that wrote the file and left between the two
         * looks like one that died without a word, and its exit was reported as 255.
         */
        alive = shim_alive(lb, id, NULL);
        if (sh_read_file(exitf, 256, &buf, NULL) == 0 && lb_exit_parse(buf, ret))
                return 0;
        free(buf);
        buf = NULL;
        if (sh_read_file(startedf, 256, &buf, NULL) == 0 &&
            lb_started_parse(buf, &ret->pid, &ret->started_ns, NULL)) {
                if (alive) {
                        ret->state = BE_CTR_RUNNING;
                        return 0;
                }
                /* Ran, and its monitor is gone without a word: the status is lost. */
                ret->state = BE_CTR_EXITED;
                ret->pid = 0;
                ret->exit_code = 255;
                snprintf(ret->reason, sizeof(ret->reason), "Unknown");
                snprintf(ret->message, sizeof(ret->message),
                         "the container monitor exited without recording an exit status");
                return 0;
        }
        ret->state = BE_CTR_CREATED;
        return 0;
}

int lb_container_start(struct be *be, const char *id, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_free_ char *dir = lb_dir(lb, id), *start = file_in(lb, id, "start");
        _cleanup_(sh_strv_freep) char **fields = NULL;
        _cleanup_free_ const char **argv = NULL;
        _cleanup_strv_ char **envp = NULL;
        char helper[PATH_MAX], why[512];
        size_t n = 0;
        int r;

        if (!dir || !start)
                return -ENOMEM;
        r = read_fields(start, &fields);
        if (r < 0)
                return sh_err(err, r == -ENOENT ? -ENOENT : r, "container %.12s: no start file",
                              id);
        while (fields[n])
                n++;
        if (n < 4)
                return sh_err(err, -EIO, "container %.12s: start file is damaged", id);
        if (sh_find_helper("runt-lxc-shim", RUNT_LXC_SHIM_FALLBACK, helper, sizeof(helper)) < 0)
                return sh_err(err, -ENOENT, "runt-lxc-shim not found (beside runtd or at %s)",
                              RUNT_LXC_SHIM_FALLBACK);
        argv = calloc(n + 5, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        argv[0] = helper;
        argv[1] = lb->lxcpath;
        argv[2] = id;
        argv[3] = dir;
        argv[4] = fields[0]; /* log */
        argv[5] = fields[1]; /* flags */
        argv[6] = fields[2]; /* memcg */
        for (size_t i = 3; i < n; i++)
                argv[4 + i] = fields[i];
        if (fields[0][0]) {
                _cleanup_free_ char *logdir = strdup(fields[0]);
                char *slash = logdir ? strrchr(logdir, '/') : NULL;

                if (slash && slash != logdir) {
                        int fd;

                        /* Symlinks in it are not followed (nofollow.h); the shim reports. */
                        *slash = '\0';
                        fd = sh_open_dir_nofollow(logdir, true, 0755);
                        if (fd >= 0)
                                close(fd);
                }
        }
        /* The monitor lives beside runtd's cgroup, never in it: runtd's stop must not end it. */
        r = lb_helper_cgroup(lb, "ctr", id, &envp, err);
        if (r < 0)
                return sh_err_prefix(err, r, "start container %.12s", id);
        r = lb_exec_helper((const char *const *)argv, envp, why, sizeof(why), err);
        if (r == -EIO)
                r = sh_err(err, -EIO, "start container %.12s: %s", id,
                           why[0] ? why : "runt-lxc-shim failed");
        return r;
}

/*
 * A pidfd of @id's monitor (runt-lxc-shim) while it lives, or -1. It exits right after it
 * wrote the exit file, so a wait can sleep on the pidfd rather than poll the file.
 */
static int shim_pidfd(struct lxc_be *lb, const char *id)
{
        int pid = 0, fd;

        if (!shim_alive(lb, id, &pid))
                return -1;
        fd = (int)syscall(SYS_pidfd_open, pid, 0);
        /* Still ours once the fd holds it: a pid reused meanwhile names another command. */
        if (fd >= 0 && !shim_alive(lb, id, NULL)) {
                close(fd);
                fd = -1;
        }
        return fd;
}

/*
 * Sleeps until the process of @pidfd exits, up to @ms; without a pidfd (-1, or valgrind's
 * ENOSYS) 5 ms, for the caller to look again. Capped at 10 ms per call, so a caller also
 * sees a file the process writes without exiting.
 */
static void sleep_on(int pidfd, unsigned long long ms)
{
        if (ms > 10)
                ms = 10;
        if (pidfd < 0 || poll(&(struct pollfd){.fd = pidfd, .events = POLLIN}, 1, (int)ms) < 0)
                nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
}

/* Waits up to @ms for @id's exit file. */
static bool wait_exit(struct lxc_be *lb, const char *id, unsigned ms)
{
        _cleanup_free_ char *exitf = file_in(lb, id, "exit");
        _cleanup_close_ int pidfd = shim_pidfd(lb, id);
        unsigned long long end = sh_now_ns() + (unsigned long long)ms * 1000000ULL;

        while (exitf) {
                unsigned long long now;

                if (access(exitf, F_OK) == 0)
                        return true;
                if (!shim_alive(lb, id, NULL))
                        return true; /* its monitor is gone, and the container with it */
                now = sh_now_ns();
                if (now >= end)
                        return false;
                sleep_on(pidfd, (end - now) / 1000000ULL + 1);
        }
        return false;
}

/*
 * Sends @sig to every process of @id's cgroup (a pid namespace shared with the pod has no
 * init whose death takes the rest along). Returns how many it signalled.
 */
static int kill_cgroup(struct lxc_be *lb, const char *id, int sig)
{
        _cleanup_free_ char *cfg = file_in(lb, id, "start");
        _cleanup_(sh_strv_freep) char **fields = NULL;
        _cleanup_free_ char *procs = NULL, *buf = NULL;

        int n = 0;

        if (!cfg || read_fields(cfg, &fields) < 0 || !fields[0] || !fields[1] || !fields[2] ||
            !fields[2][0])
                return 0;
        if (sig == SIGKILL && lb->cg.version == SH_CG_V2) {
                _cleanup_free_ char *kill_file = sh_path_join(fields[2], "cgroup.kill");
                _cleanup_free_ char *events = sh_path_join(fields[2], "cgroup.events");

                /* v2 (Linux 5.14): the whole subtree at once, liblxc's attach leaf too. */
                if (kill_file && events && sh_read_file(events, 4096, &buf, NULL) == 0 &&
                    lb_write_cgroup_file(kill_file, "1") == 0)
                        return strstr(buf, "populated 1") ? 1 : 0;
                free(buf);
                buf = NULL;
        }
        procs = sh_path_join(fields[2], "cgroup.procs");
        if (!procs || sh_read_file(procs, 1u << 20, &buf, NULL) < 0)
                return 0;
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
                if (atoi(line) > 1 && kill(atoi(line), sig) == 0)
                        n++;
        return n; /* how many were there */
}

/* Field 22 of /proc/<pid>/stat (start time in ticks since boot); 0 when unknown. */
static unsigned long long proc_starttime(int pid)
{
        _cleanup_free_ char *path = sh_strdup_printf("/proc/%d/stat", pid), *buf = NULL;
        const char *p;

        if (!path || sh_read_file(path, 4096, &buf, NULL) < 0)
                return 0;
        p = strrchr(buf, ')'); /* the command name may hold anything */
        for (int field = 2; p && field < 22; field++)
                p = strchr(p + 1, ' ');
        return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* The start time runt-lxc-shim recorded for @id's PID 1, or 0. */
static unsigned long long recorded_starttime(struct lxc_be *lb, const char *id)
{
        _cleanup_free_ char *f = file_in(lb, id, "started"), *buf = NULL;
        unsigned long long v = 0;
        long long ns;
        int pid;

        if (f && sh_read_file(f, 256, &buf, NULL) == 0 && lb_started_parse(buf, &pid, &ns, &v))
                return v;
        return 0;
}

/*
 * Signals @pid if it is still the process that started at @starttime (0: not recorded). The
 * pidfd holds the process, so the check cannot race a reuse of the number.
 */
static int pidfd_signal(int pid, int sig, unsigned long long starttime)
{
        int fd = (int)syscall(SYS_pidfd_open, pid, 0);
        int r;

        if (fd < 0 && errno == ENOSYS) /* valgrind 3.19 knows no pidfds */
                return kill(pid, sig) < 0 ? -errno : 0;
        if (fd < 0)
                return -errno;
        if (starttime && proc_starttime(pid) != starttime) {
                close(fd);
                return -ESRCH; /* PID 1 is gone and its number is someone else's */
        }
        r = (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
        r = r < 0 ? -errno : 0;
        close(fd);
        return r;
}

int lb_container_stop(struct be *be, const char *id, int signal, unsigned timeout_s,
                      struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        struct be_ctr_status st;
        unsigned long long start;
        int r;

        r = lb_container_status(be, id, &st, err);
        if (r == -ENOENT) {
                sh_err_clear(err);
                return 0;
        }
        if (r < 0 || st.state != BE_CTR_RUNNING)
                return r;
        start = recorded_starttime(lb, id);
        if (st.pid > 0 && timeout_s > 0) {
                /*
                 * To the process itself when it is its pid namespace's PID 1 (which gets
                 * only the signals it handles); in a shared one to runt-init, which hands it
                 * on.
                 */
                if (pidfd_signal(st.pid, signal ? signal : SIGTERM, start) == 0 &&
                    wait_exit(lb, id, timeout_s * 1000)) {
                        /* What it left in a pid namespace shared with the pod goes too. */
                        kill_cgroup(lb, id, SIGKILL);
                        return 0;
                }
        }
        if (st.pid > 0)
                pidfd_signal(st.pid, SIGKILL, start);
        kill_cgroup(lb, id, SIGKILL);
        if (!wait_exit(lb, id, KILL_WAIT_MS))
                return sh_err(err, -ETIMEDOUT, "container %.12s did not exit after SIGKILL", id);
        return 0;
}

int lb_container_remove(struct be *be, const char *id, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_free_ char *dir = lb_dir(lb, id);
        char cg[PATH_MAX] = "", cgm[PATH_MAX] = "";
        int shim = 0, r;

        if (!dir)
                return -ENOMEM;
        if (access(dir, F_OK) < 0) {
                /* A removal cut short: only the layer (and maybe the monitor's cgroup) left. */
                lb_helper_cgroup_remove(lb, "ctr", id);
                return rm_layer(lb, id);
        }
        {
                _cleanup_lxc_ struct lxc_container *c = lxc_container_new(id, lb->lxcpath);

                if (c && c->is_defined(c)) {
                        if (c->get_config_item(c, "lxc.cgroup.dir.container", cg, sizeof(cg)) < 0)
                                cg[0] = '\0';
                        if (c->get_config_item(c, "lxc.cgroup.dir.monitor", cgm, sizeof(cgm)) < 0)
                                cgm[0] = '\0';
                }
        }
        r = lb_container_stop(be, id, SIGKILL, 0, err);
        if (r < 0)
                return r;
        if (shim_alive(lb, id, &shim)) {
                /* Still writing the last of the log: it is leaving, a moment only (2 s). */
                _cleanup_close_ int pidfd = shim_pidfd(lb, id);
                unsigned long long end = sh_now_ns() + 2000000000ULL;

                while (shim_alive(lb, id, NULL) && sh_now_ns() < end)
                        sleep_on(pidfd, (end - sh_now_ns()) / 1000000ULL + 1);
                if (shim_alive(lb, id, NULL))
                        kill(shim, SIGKILL);
        }
        /* Stragglers of an exec or a shared pid namespace keep the cgroup busy. */
        for (int i = 0; i < 200 && kill_cgroup(lb, id, SIGKILL) > 0; i++)
                nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
        if (cg[0])
                lb_rm_cgroup(cg);
        if (cgm[0])
                lb_rm_cgroup(cgm);
        lb_helper_cgroup_remove(lb, "ctr", id);
        r = rm_layer(lb, id);
        if (r == 0)
                r = lb_rm_dir(lb, dir);
        if (r < 0)
                return sh_err(err, r, "remove container %.12s: %s", id, strerror(-r));
        return 0;
}

struct live_cg {
        struct lxc_be *lb;
        const char *rel;
};

static int write_cgroup_file(void *data, const char *key, const char *value, struct sh_error *err)
{
        const struct live_cg *l = data;
        _cleanup_free_ char *dir = sh_cg_dir_for(&l->lb->cg, l->rel, key);
        _cleanup_free_ char *path = dir ? sh_path_join(dir, key) : NULL;
        int r;

        if (!path)
                return -ENOMEM;
        r = lb_write_cgroup_file(path, value);
        return r < 0 ? sh_err(err, r, "cgroup %s = %s: %s", key, value, strerror(-r)) : 0;
}

int lb_cgroup_write_limits(struct lxc_be *lb, const char *rel, const struct be_resources *res,
                           struct sh_error *err)
{
        /*
         * v1: memsw may not be below memory: raising both needs memsw first, lowering needs
         * memory first. memsw is tried first (failing harmlessly when lowering), then
         * everything in order. v2 limits swap apart from memory: any order does.
         */
        if (lb->cg.version == SH_CG_V1 && res->memory_swap_limit > 0 && lb->cg.swap) {
                char v[32];

                snprintf(v, sizeof(v), "%lld", res->memory_swap_limit);
                write_cgroup_file(&(struct live_cg){lb, rel}, "memory.memsw.limit_in_bytes", v,
                                  NULL);
        }
        return resource_items(lb, res, write_cgroup_file, &(struct live_cg){lb, rel}, err);
}

int lb_container_update(struct be *be, const char *id, const struct be_resources *res,
                        struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_lxc_ struct lxc_container *c = lxc_container_new(id, lb->lxcpath);
        struct be_ctr_status st;
        char cg[PATH_MAX] = "";
        int r;

        if (!c || !c->is_defined(c))
                return sh_err(err, -ENOENT, "no LXC container %.12s", id);
        r = lb_container_status(be, id, &st, err);
        if (r < 0)
                return r;
        if (st.state == BE_CTR_RUNNING) {
                if (c->get_config_item(c, "lxc.cgroup.dir.container", cg, sizeof(cg)) < 0)
                        return sh_err(err, -EIO, "container %.12s has no cgroup dir", id);
                r = lb_cgroup_write_limits(lb, cg, res, err);
                if (r < 0)
                        return r;
        }
        r = resource_items(lb, res, set_cgroup_config, &(struct cg_config){lb, c}, err);
        if (r == 0 && !c->save_config(c, NULL))
                r = sh_err(err, -EIO, "save the LXC config of %.12s: %s", id, lb_why(c));
        return r;
}

static bool is_regular_nofollow(const char *path)
{
        struct stat st;

        return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int lb_container_reopen_log(struct be *be, const char *id, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_free_ char *start = file_in(lb, id, "start");
        _cleanup_(sh_strv_freep) char **fields = NULL;
        int pid = 0, r;

        if (!start)
                return -ENOMEM;
        if (!shim_alive(lb, id, &pid))
                return sh_err(err, -EINVAL, "container %.12s is not running", id);
        r = read_fields(start, &fields);
        if (r == -EMFILE || r == -ENFILE || r == -ENOMEM)
                return sh_err(err, r, "container %.12s: read its start file: %s", id, strerror(-r));
        if (r < 0 || !fields[0])
                return sh_err(err, -EIO, "container %.12s: start file is damaged", id);
        if (!fields[0][0])
                return 0; /* no log */
        if (kill(pid, SIGUSR1) < 0)
                return sh_err(err, -errno, "signal the monitor of %.12s: %s", id, strerror(errno));
        /* Done when the file is there again; a symlink there the shim does not follow. */
        for (int i = 0; i < 200 && !is_regular_nofollow(fields[0]); i++)
                nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
        if (!is_regular_nofollow(fields[0]))
                return sh_err(err, -EIO, "container %.12s: log '%s' was not reopened", id,
                              fields[0]);
        return 0;
}

int lb_container_attach(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_free_ char *dir = lb_dir(lb, id), *exitf = file_in(lb, id, "exit");
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa;
        socklen_t len = 0;
        int dirfd = -1, r, e = 0;

        if (!dir || !exitf)
                return -ENOMEM;
        if (access(dir, F_OK) < 0)
                return sh_err(err, -ENOENT, "no LXC container %.12s", id);
        if (!shim_alive(lb, id, NULL) || access(exitf, F_OK) == 0)
                return sh_err(err, -EINVAL, "container %.12s is not running", id);
        /* No chdir(): runtd has threads. A long path goes through an O_PATH fd of the dir. */
        r = lb_attach_addr(dir, &sa, &len, &dirfd);
        if (r < 0)
                return sh_err(err, r, "container %.12s: attach socket: %s", id, strerror(-r));
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                e = errno;
        /* Non-blocking, so that a monitor that does not accept cannot hang the call. */
        for (int i = 0; e == 0 && connect(fd, (struct sockaddr *)&sa, len) < 0; i++) {
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN || i == 100) {
                        e = errno;
                        break;
                }
                nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        }
        if (dirfd >= 0)
                close(dirfd);
        if ((e == ENOENT || e == ECONNREFUSED) &&
            (!shim_alive(lb, id, NULL) || access(exitf, F_OK) == 0))
                return sh_err(err, -EINVAL, "container %.12s is not running", id);
        if (e == ENOENT)
                return sh_err(err, -EOPNOTSUPP,
                              "container %.12s: its monitor has no attach socket (started by an "
                              "older runt?)",
                              id);
        if (e != 0)
                return sh_err(err, -e, "container %.12s: connect to its attach socket: %s", id,
                              strerror(e));
        if (fcntl(fd, F_SETFL, 0) < 0)
                return sh_err(err, -errno, "fcntl: %s", strerror(errno));
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/*
 * The argv of runt-lxc-exec for @argv in container @id, as its user (the process file), with
 * the options @opts (NULL-terminated, at most 4; NULL for none) first: malloc'd vector whose
 * strings live in *@ret_fields, @helper and @opts. *@ret_fields freed by caller.
 */
static int exec_argv(struct lxc_be *lb, const char *id, const char *const *argv, bool tty,
                     const char *const *opts, char helper[PATH_MAX], char ***ret_fields,
                     const char ***ret, struct sh_error *err)
{
        _cleanup_free_ char *process = file_in(lb, id, "process");
        char **p = NULL;
        const char **v;
        size_t n = 0, k = 0;
        int r;

        if (!process)
                return -ENOMEM;
        r = read_fields(process, &p);
        /* EMFILE, ENFILE, ENOMEM are runtd's trouble, not a missing container (issue 14). */
        if (r < 0 && r != -ENOENT)
                return sh_err(err, r, "container %.12s: read its process file: %s", id,
                              strerror(-r));
        if (r < 0 || !p[0] || !p[1] || !p[2] || !p[3]) {
                sh_strv_free(p);
                return sh_err(err, -ENOENT, "container %.12s: no process file", id);
        }
        if (sh_find_helper("runt-lxc-exec", RUNT_LXC_EXEC_FALLBACK, helper, PATH_MAX) < 0) {
                sh_strv_free(p);
                return sh_err(err, -ENOENT, "runt-lxc-exec not found (beside runtd or at %s)",
                              RUNT_LXC_EXEC_FALLBACK);
        }
        while (argv[n])
                n++;
        v = calloc(n + 14, sizeof(char *));
        if (!v) {
                sh_strv_free(p);
                return -ENOMEM;
        }
        v[k++] = helper;
        if (tty)
                v[k++] = "--tty";
        for (size_t i = 0; opts && opts[i] && i < 4; i++)
                v[k++] = opts[i];
        v[k++] = lb->lxcpath;
        v[k++] = id;
        for (size_t i = 0; i < 4; i++)
                v[k++] = p[i];
        for (size_t i = 0; i < n; i++)
                v[k++] = argv[i];
        *ret_fields = p;
        *ret = v;
        return 0;
}

int lb_exec_sync(struct be *be, const char *id, const struct be_exec_sync_req *req,
                 struct be_exec_result *ret, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_(sh_strv_freep) char **p = NULL;
        _cleanup_free_ const char **v = NULL;
        struct sh_exec_result res = {0};
        char helper[PATH_MAX], deadline[48], parent[32];
        const char *opts[3] = {parent, NULL, NULL};
        int r;

        /*
         * The helper enforces the deadline too, a little after ours, and dies with us: so
         * neither a restart of runtd nor its exit leaves the command running (issue 14).
         * Its exit ends the command: its supervisor in the container kills the rest.
         */
        snprintf(parent, sizeof(parent), "--parent=%d", (int)getpid());
        if (req->timeout_ms) {
                snprintf(deadline, sizeof(deadline), "--timeout-ms=%llu",
                         (unsigned long long)req->timeout_ms + LXC_EXEC_DEADLINE_SLACK_MS);
                opts[1] = deadline;
        }
        r = exec_argv(lb, id, req->argv, false, opts, helper, &p, &v, err);
        if (r < 0)
                return r;
        /* A timeout or a cancel kills runt-lxc-exec; its supervisor in there kills the rest. */
        r = sh_exec(&(struct sh_exec_opts){.argv = v,
                                           .timeout_ms = req->timeout_ms,
                                           .cancel_fd = req->cancel_fd,
                                           .max_output = SIZE_MAX,
                                           .max_output_total = req->max_output ? req->max_output
                                                                               : (size_t)16 << 20},
                    &res, err);
        if (r == -ETIMEDOUT) {
                sh_exec_result_done(&res);
                return sh_err(err, -ETIMEDOUT, "exec in %.12s timed out after %u ms", id,
                              req->timeout_ms);
        }
        if (r == -ECANCELED) {
                sh_exec_result_done(&res);
                return sh_err(err, -ECANCELED, "exec in %.12s: the client went away", id);
        }
        if (r < 0)
                return r;
        if (res.exit_code == 125 && res.err_len > 6 && strncmp(res.err, "runt: ", 6) == 0) {
                res.err[strcspn(res.err, "\n")] = '\0';
                r = sh_err(err, -EIO, "%s", res.err + 6);
                sh_exec_result_done(&res);
                return r;
        }
        ret->exit_code = res.exit_code;
        ret->out = res.out;
        ret->out_len = res.out_len;
        ret->err = res.err;
        ret->err_len = res.err_len;
        ret->dropped = res.out_dropped + res.err_dropped;
        res.out = res.err = NULL;
        sh_exec_result_done(&res);
        return 0;
}

/*
 * The master of the pty runt-lxc-exec --tty made in the container, or -1 when it could not
 * (it then says so with a byte alone, or the socket closes): the host pty serves instead.
 */
static int recv_master(int sock)
{
        int fd = sh_recv_fd(sock, 10000);

        /* Only a terminal will do: it becomes the session's stdin and stdout. */
        if (fd >= 0 && !isatty(fd)) {
                close(fd);
                return -1;
        }
        return fd < 0 ? -1 : fd;
}

/* Closes the fds of @s that are open and marks them closed. */
static void stream_close(struct be_exec_stream *s)
{
        int *fds[] = {&s->stdin_fd, &s->stdout_fd, &s->stderr_fd, &s->pty_fd};

        for (size_t i = 0; i < SH_ARRAY_SIZE(fds); i++) {
                if (*fds[i] >= 0 && (i != 1 || *fds[i] != s->pty_fd))
                        close(*fds[i]);
                *fds[i] = -1;
        }
}

int lb_exec_stream(struct be *be, const char *id, const char *const *argv, bool tty,
                   bool want_stdin, struct be_exec_stream *ret, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_(sh_strv_freep) char **p = NULL;
        _cleanup_free_ const char **v = NULL;
        int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, slave = -1;
        int sv[2] = {-1, -1};
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, dfl;
        char helper[PATH_MAX];
        pid_t pid;
        int r;

        r = exec_argv(lb, id, argv, tty, NULL, helper, &p, &v, err);
        if (r < 0)
                return r;
        if (tty) {
                struct winsize ws = {.ws_row = ret->rows, .ws_col = ret->cols};

                if (openpty(&ret->pty_fd, &slave, NULL, NULL, ret->rows && ret->cols ? &ws : NULL) <
                    0)
                        return sh_err(err, -errno, "openpty: %s", strerror(errno));
                fcntl(ret->pty_fd, F_SETFD, FD_CLOEXEC);
                fcntl(slave, F_SETFD, FD_CLOEXEC);
                ret->stdout_fd = ret->pty_fd;
                /* The container's own pty comes back on this (runt-lxc-exec.c). */
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                        r = sh_err(err, -errno, "socketpair: %s", strerror(errno));
                        goto fail;
                }
        } else if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
                   (want_stdin && pipe2(in, O_CLOEXEC) < 0)) {
                r = sh_err(err, -errno, "pipe: %s", strerror(errno));
                goto fail;
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
        /* runtd ignores SIGPIPE; the command must not inherit that. */
        sigemptyset(&dfl);
        sigaddset(&dfl, SIGPIPE);
        posix_spawnattr_setsigdefault(&attr, &dfl);
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                                POSIX_SPAWN_SETPGROUP);
        if (tty) {
                for (int fd = 0; fd < 3; fd++)
                        posix_spawn_file_actions_adddup2(&fa, slave, fd);
                posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
        } else {
                if (want_stdin)
                        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
                else
                        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
                posix_spawn_file_actions_adddup2(&fa, out[1], 1);
                posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
        }
        /* After the dup2s: nothing of runtd's beyond stdio (its sockets, other sessions'
         * pipes) reaches the command. */
        posix_spawn_file_actions_addclosefrom_np(&fa, tty ? 4 : 3);
        r = posix_spawn(&pid, helper, &fa, &attr, (char *const *)v, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r != 0) {
                r = sh_err(err, -r, "spawn runt-lxc-exec: %s", strerror(r));
                goto fail;
        }
        ret->pid = (int)pid;
        if (slave >= 0)
                close(slave);
        if (tty) {
                int m;

                close(sv[1]);
                m = recv_master(sv[0]);
                close(sv[0]);
                if (m >= 0) {
                        close(ret->pty_fd); /* the host pty stays runt-lxc-exec's stdio */
                        ret->pty_fd = ret->stdout_fd = m;
                }
                ret->stdin_fd = want_stdin ? fcntl(ret->pty_fd, F_DUPFD_CLOEXEC, 0) : -1;
        }
        if (!tty) {
                close(out[1]);
                close(errp[1]);
                if (in[0] >= 0)
                        close(in[0]);
                ret->stdout_fd = out[0];
                ret->stderr_fd = errp[0];
                ret->stdin_fd = in[1];
        }
        return 0;
fail:
        for (int i = 0; i < 2; i++) {
                if (in[i] >= 0)
                        close(in[i]);
                if (out[i] >= 0)
                        close(out[i]);
                if (errp[i] >= 0)
                        close(errp[i]);
        }
        if (slave >= 0)
                close(slave);
        for (int i = 0; i < 2; i++)
                if (sv[i] >= 0)
                        close(sv[i]);
        stream_close(ret);
        return r;
}
