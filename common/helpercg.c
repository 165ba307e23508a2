/* Cgroups of runt's long-lived helpers: see helpercg.h. */
#include "helpercg.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "strutil.h"

#define CG_ROOT    "/sys/fs/cgroup/"
#define MAX_HIER   32
#define RECORD_MAX (4u << 20)
#define RM_TRIES   50 /* 20 ms apart: about 1 s, SIGKILL half-way */

struct hier {
        char *dir;   /* the caller's cgroup on this hierarchy, absolute */
        bool cpuset; /* a v1 cpuset hierarchy: a new cgroup needs cpus and mems */
};

struct sh_helpercg {
        pthread_mutex_t lock; /* the record file */
        char *record;
        struct hier bases[MAX_HIER]; /* dir: the parent of the caller's "runtd" leaf */
        size_t n;
};

static void hiers_done(struct hier *h, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(h[i].dir);
}

/* Does the comma-separated @list hold @tok (of @len bytes)? */
static bool list_has(const char *list, const char *tok, size_t len)
{
        for (const char *l = list; l && *l;) {
                const char *c = strchr(l, ',');
                size_t n = c ? (size_t)(c - l) : strlen(l);

                if (n == len && strncmp(l, tok, len) == 0)
                        return true;
                l = c ? c + 1 : NULL;
        }
        return false;
}

/* Is every element of the comma-separated @ctrls in @opts? */
static bool opts_have_all(const char *opts, const char *ctrls)
{
        for (const char *c = ctrls; c && *c;) {
                const char *e = strchr(c, ',');
                size_t n = e ? (size_t)(e - c) : strlen(c);

                if (!list_has(opts, c, n))
                        return false;
                c = e ? e + 1 : NULL;
        }
        return true;
}

/*
 * The mount point of the hierarchy of @ctrls ("" for v2) in @mountinfo whose root is a
 * prefix of @path: the dir of @path there (malloc'd), or NULL.
 */
static char *hier_dir(char *mountinfo, const char *ctrls, const char *path)
{
        char *save = NULL, *line;

        for (line = strtok_r(mountinfo, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *f[6] = {0}, *sep = strstr(line, " - "), *rest, *s2 = NULL;
                char *fstype, *opts;
                size_t k = 0, rl;

                if (!sep)
                        continue;
                *sep = '\0';
                rest = sep + 3;
                for (char *t = strtok_r(line, " ", &s2); t && k < 6; t = strtok_r(NULL, " ", &s2))
                        f[k++] = t;
                fstype = strtok_r(rest, " ", &s2);
                strtok_r(NULL, " ", &s2); /* source */
                opts = strtok_r(NULL, " ", &s2);
                if (k < 5 || !fstype || !opts)
                        continue;
                if (ctrls[0] ? strcmp(fstype, "cgroup") != 0 || !opts_have_all(opts, ctrls)
                             : strcmp(fstype, "cgroup2") != 0)
                        continue;
                /* f[3]: the mount's root in the hierarchy, f[4]: where it is mounted. */
                rl = strcmp(f[3], "/") == 0 ? 0 : strlen(f[3]);
                if (rl && (strncmp(path, f[3], rl) != 0 || (path[rl] && path[rl] != '/')))
                        continue;
                if (strchr(f[4], '\\'))
                        continue; /* an escaped name: not a cgroup mount runt knows */
                return sh_strdup_printf("%s%s", f[4], strcmp(path + rl, "/") == 0 ? "" : path + rl);
        }
        return NULL;
}

/* The caller's cgroup dir on every mounted hierarchy it is in. */
static int list_hiers(struct hier *out, size_t *ret_n)
{
        _cleanup_free_ char *cg = NULL, *mi = NULL;
        char *save = NULL, *line;
        size_t n = 0;
        int r;

        if ((r = sh_read_file("/proc/self/cgroup", 1u << 16, &cg, NULL)) < 0 ||
            (r = sh_read_file("/proc/self/mountinfo", 1u << 22, &mi, NULL)) < 0)
                return r;
        for (line = strtok_r(cg, "\n", &save); line && n < MAX_HIER;
             line = strtok_r(NULL, "\n", &save)) {
                char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                _cleanup_free_ char *copy = NULL;
                char *dir;

                if (!c2)
                        continue;
                *c2 = '\0';
                if (c2[1] != '/')
                        continue; /* "(unreachable)" and the like */
                copy = strdup(mi);
                if (!copy)
                        return -ENOMEM;
                dir = hier_dir(copy, c1 + 1, c2 + 1);
                if (!dir)
                        continue;
                out[n].cpuset = c1[1] && list_has(c1 + 1, "cpuset", 6);
                out[n++].dir = dir;
        }
        *ret_n = n;
        return 0;
}

static int write_str(const char *path, const char *v)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW), r = 0;

        if (fd < 0 || write(fd, v, strlen(v)) < 0)
                r = -errno;
        if (fd >= 0)
                close(fd);
        return r;
}

/* A new v1 cpuset cgroup @dir has no cpus or mems unless clone_children: its parent's. */
static void fill_cpuset(const char *dir)
{
        static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};

        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                _cleanup_free_ char *f = sh_strdup_printf("%s/%s", dir, files[i]);
                _cleanup_free_ char *pf = sh_strdup_printf("%s/../%s", dir, files[i]);
                _cleanup_free_ char *have = NULL, *up = NULL;

                if (!f || !pf || sh_read_file(f, 4096, &have, NULL) < 0 ||
                    strspn(have, " \n") != strlen(have))
                        continue;
                if (sh_read_file(pf, 4096, &up, NULL) == 0)
                        write_str(f, up);
        }
}

static int make_dir(const struct hier *h, const char *dir)
{
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        if (h->cpuset)
                fill_cpuset(dir);
        return 0;
}

static const char *base_name(const char *p)
{
        const char *s = strrchr(p, '/');

        return s ? s + 1 : p;
}

int sh_helpercg_enter_leaf(struct sh_error *err)
{
        struct hier hs[MAX_HIER];
        size_t n = 0;
        int r, in_leaf = 0;

        r = list_hiers(hs, &n);
        if (r < 0)
                return sh_err(err, r, "read /proc/self/cgroup and mountinfo: %s", strerror(-r));
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *leaf = NULL, *procs = NULL;

                if (strcmp(base_name(hs[i].dir), SH_HELPERCG_LEAF) == 0) {
                        in_leaf++;
                        continue;
                }
                leaf = sh_path_join(hs[i].dir, SH_HELPERCG_LEAF);
                procs = leaf ? sh_path_join(leaf, "cgroup.procs") : NULL;
                if (!procs) {
                        r = -ENOMEM;
                        break;
                }
                r = make_dir(&hs[i], leaf);
                if (r == 0)
                        r = write_str(procs, "0");
                if (r < 0) {
                        if (!err || !err->code)
                                sh_err(err, r, "move runtd into %s: %s", leaf, strerror(-r));
                        continue;
                }
                in_leaf++;
        }
        hiers_done(hs, n);
        return r == -ENOMEM ? -ENOMEM : in_leaf;
}

int sh_helpercg_new(const char *record, struct sh_helpercg **ret, struct sh_error *err)
{
        struct sh_helpercg *h = calloc(1, sizeof(*h));
        struct hier hs[MAX_HIER];
        size_t n = 0;
        int r;

        if (!h || !(h->record = strdup(record))) {
                free(h);
                return -ENOMEM;
        }
        pthread_mutex_init(&h->lock, NULL);
        r = list_hiers(hs, &n);
        if (r < 0) {
                sh_helpercg_free(h);
                return sh_err(err, r, "read /proc/self/cgroup and mountinfo: %s", strerror(-r));
        }
        for (size_t i = 0; i < n; i++) {
                char *slash = strrchr(hs[i].dir, '/');

                if (strcmp(base_name(hs[i].dir), SH_HELPERCG_LEAF) != 0 || !slash ||
                    slash == hs[i].dir)
                        continue;
                *slash = '\0';
                h->bases[h->n++] = hs[i];
                hs[i].dir = NULL;
        }
        hiers_done(hs, n);
        *ret = h;
        return 0;
}

struct sh_helpercg *sh_helpercg_free(struct sh_helpercg *h)
{
        if (!h)
                return NULL;
        hiers_done(h->bases, h->n);
        pthread_mutex_destroy(&h->lock);
        free(h->record);
        free(h);
        return NULL;
}

size_t sh_helpercg_count(const struct sh_helpercg *h)
{
        return h ? h->n : 0;
}

static bool name_ok(const char *name)
{
        size_t n = strlen(name);

        if (n == 0 || n > 200 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return false;
        return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
               n;
}

/* A line of the record that runt may rmdir: a cgroup dir named as make names them. */
static bool record_line_ok(const char *line)
{
        return strncmp(line, CG_ROOT, strlen(CG_ROOT)) == 0 && !strstr(line, "/../") &&
               !strstr(line, "//") && name_ok(base_name(line));
}

/* Does @text (lines) hold the line @l? */
static bool has_line(const char *text, const char *l)
{
        size_t n = strlen(l);

        for (const char *t = text; t && *t;) {
                const char *e = strchr(t, '\n');
                size_t len = e ? (size_t)(e - t) : strlen(t);

                if (len == n && strncmp(t, l, n) == 0)
                        return true;
                t = e ? e + 1 : NULL;
        }
        return false;
}

static int append(char **s, const char *line)
{
        char *t = sh_strdup_printf("%s%s\n", *s ? *s : "", line);

        if (!t)
                return -ENOMEM;
        free(*s);
        *s = t;
        return 0;
}

int sh_helpercg_make(struct sh_helpercg *h, const char *name, char **ret_dirs, struct sh_error *err)
{
        _cleanup_free_ char *rec = NULL, *add = NULL, *dirs = NULL;
        int r = 0;

        *ret_dirs = NULL;
        if (!name_ok(name))
                return sh_err(err, -EINVAL, "helper cgroup name '%s' is not a plain name", name);
        if (h->n == 0)
                return 0;
        pthread_mutex_lock(&h->lock);
        r = sh_read_file(h->record, RECORD_MAX, &rec, NULL);
        if (r == -ENOENT)
                r = 0;
        for (size_t i = 0; r == 0 && i < h->n; i++) {
                _cleanup_free_ char *d = sh_path_join(h->bases[i].dir, name);

                if (!d)
                        r = -ENOMEM;
                else if (!has_line(rec, d))
                        r = append(&add, d);
        }
        if (r == 0 && add) {
                _cleanup_free_ char *all = sh_strdup_printf("%s%s", rec ? rec : "", add);

                r = all ? sh_write_file_atomic(h->record, all, strlen(all), 0600) : -ENOMEM;
                if (r < 0)
                        sh_err(err, r, "record helper cgroup %s in '%s': %s", name, h->record,
                               strerror(-r));
        } else if (r < 0) {
                sh_err(err, r, "read '%s': %s", h->record, strerror(-r));
        }
        pthread_mutex_unlock(&h->lock);
        for (size_t i = 0; r == 0 && i < h->n; i++) {
                _cleanup_free_ char *d = sh_path_join(h->bases[i].dir, name);

                if (!d)
                        return -ENOMEM;
                r = make_dir(&h->bases[i], d);
                if (r < 0)
                        return sh_err(err, r, "create cgroup %s: %s", d, strerror(-r));
                {
                        char *t = sh_strdup_printf("%s%s%s", dirs ? dirs : "", dirs ? "\n" : "", d);

                        if (!t)
                                return -ENOMEM;
                        free(dirs);
                        dirs = t;
                }
        }
        if (r < 0)
                return r;
        *ret_dirs = TAKE_PTR(dirs);
        return 0;
}

static void kill_procs(const char *dir)
{
        _cleanup_free_ char *procs = sh_path_join(dir, "cgroup.procs"), *text = NULL;

        if (!procs || sh_read_file(procs, 1u << 20, &text, NULL) < 0)
                return;
        for (char *p = text, *e; *p; p = e) {
                long pid = strtol(p, &e, 10);

                if (e == p)
                        break;
                if (pid > 0)
                        kill((pid_t)pid, SIGKILL);
                while (*e == '\n')
                        e++;
        }
}

/* rmdir @dir, waiting while processes leave it, SIGKILLing them half-way. 0, -EBUSY ... */
static int rm_cgroup(const char *dir)
{
        for (int i = 0; i < RM_TRIES; i++) {
                if (rmdir(dir) == 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY)
                        return -errno;
                if (i == RM_TRIES / 2)
                        kill_procs(dir);
                nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
        }
        return -EBUSY;
}

/* Drops the lines of @gone from the record. Lock held. */
static int record_drop(struct sh_helpercg *h, const char *gone)
{
        _cleanup_free_ char *rec = NULL, *keep = NULL;
        int r = sh_read_file(h->record, RECORD_MAX, &rec, NULL);

        if (r == -ENOENT || !gone || !*gone)
                return 0;
        if (r < 0)
                return r;
        for (char *save = NULL, *l = strtok_r(rec, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                if (!has_line(gone, l) && (r = append(&keep, l)) < 0)
                        return r;
        if (!keep)
                return unlink(h->record) < 0 && errno != ENOENT ? -errno : 0;
        return sh_write_file_atomic(h->record, keep, strlen(keep), 0600);
}

/* The recorded dirs whose name is @name (all when NULL) as lines; *ret NULL for none. */
static int record_lines(struct sh_helpercg *h, const char *name, char **ret)
{
        _cleanup_free_ char *rec = NULL, *out = NULL;
        int r;

        *ret = NULL;
        pthread_mutex_lock(&h->lock);
        r = sh_read_file(h->record, RECORD_MAX, &rec, NULL);
        pthread_mutex_unlock(&h->lock);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        for (char *save = NULL, *l = strtok_r(rec, "\n", &save); l;
             l = strtok_r(NULL, "\n", &save)) {
                if (name && strcmp(base_name(l), name) != 0)
                        continue;
                if ((r = append(&out, l)) < 0)
                        return r;
        }
        *ret = TAKE_PTR(out);
        return 0;
}

int sh_helpercg_remove(struct sh_helpercg *h, const char *name, struct sh_error *err)
{
        _cleanup_free_ char *lines = NULL, *gone = NULL;
        int r, busy = 0;

        if (!h)
                return 0;
        r = record_lines(h, name, &lines);
        if (r < 0)
                return sh_err(err, r, "read '%s': %s", h->record, strerror(-r));
        for (char *save = NULL, *l = lines ? strtok_r(lines, "\n", &save) : NULL; l;
             l = strtok_r(NULL, "\n", &save)) {
                /* A line runt would not have written is dropped, never acted on. */
                int q = record_line_ok(l) ? rm_cgroup(l) : 0;

                if (q < 0) {
                        if (!busy)
                                sh_err(err, q, "remove cgroup %s: %s", l, strerror(-q));
                        busy = q;
                        continue;
                }
                if ((r = append(&gone, l)) < 0)
                        return r;
        }
        pthread_mutex_lock(&h->lock);
        r = record_drop(h, gone);
        pthread_mutex_unlock(&h->lock);
        if (r < 0 && !busy)
                return sh_err(err, r, "update '%s': %s", h->record, strerror(-r));
        return busy;
}

int sh_helpercg_sweep(struct sh_helpercg *h, bool (*keep)(const char *name, void *data), void *data)
{
        _cleanup_free_ char *lines = NULL, *done = NULL;
        int n = 0;

        if (!h || record_lines(h, NULL, &lines) < 0 || !lines)
                return 0;
        for (char *save = NULL, *l = strtok_r(lines, "\n", &save); l;
             l = strtok_r(NULL, "\n", &save)) {
                const char *name = base_name(l);

                if (has_line(done, name) || append(&done, name) < 0)
                        continue;
                if (keep(name, data))
                        continue;
                if (sh_helpercg_remove(h, name, NULL) == 0)
                        n++;
        }
        return n;
}

char **sh_helpercg_environ(const char *dirs)
{
        extern char **environ;
        static const char key[] = SH_HELPERCG_ENV "=";
        size_t n = 0, k = 0;
        char **v;

        while (environ && environ[n])
                n++;
        v = calloc(n + 2, sizeof(*v));
        if (!v)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (strncmp(environ[i], key, sizeof(key) - 1) == 0)
                        continue;
                if (!(v[k++] = strdup(environ[i])))
                        goto fail;
        }
        if (!(v[k] = sh_strdup_printf("%s%s", key, dirs ? dirs : "")))
                goto fail;
        return v;
fail:
        sh_strv_free(v);
        return NULL;
}
