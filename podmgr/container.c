/*
 * Containers: Create / Start / Stop / Remove / Status / List / Update / ReopenLog / ExecSync /
 * Stats over the store and the sandbox's backend.
 *
 * The record is written first ("creating"; the UNIQUE name column reserves the name), with
 * the layers its rootfs uses (container_layers, which the image GC honours), then the
 * backend defines the container and the record turns "created". The backend is the truth
 * for running and exited: each status read asks it and records an exit once seen, so an
 * exit that happened while runtd was down shows with its real code.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SH_LOG_MODULE "podmgr"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "podmgr-internal.h"
#include "strutil.h"
#include "validate.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const char *const state_names[] = {"created", "running", "exited", "unknown"};

static enum pod_ctr_state state_parse(const char *s)
{
        if (sh_streq(s, "starting")) /* a StartContainer under way, or cut off by a crash */
                return POD_CTR_CREATED;
        for (size_t i = 0; i < SH_ARRAY_SIZE(state_names); i++)
                if (sh_streq(s, state_names[i]))
                        return (enum pod_ctr_state)i;
        return POD_CTR_UNKNOWN;
}

/* ---------------------------------------------------------------- spec <-> JSON */

static json_object *res_json(const struct be_resources *r)
{
        json_object *o = json_object_new_object();

        json_object_object_add(o, "cpuPeriod", json_object_new_int64(r->cpu_period));
        json_object_object_add(o, "cpuQuota", json_object_new_int64(r->cpu_quota));
        json_object_object_add(o, "cpuShares", json_object_new_int64(r->cpu_shares));
        json_object_object_add(o, "memory", json_object_new_int64(r->memory_limit));
        json_object_object_add(o, "memorySwap", json_object_new_int64(r->memory_swap_limit));
        json_object_object_add(o, "oomScoreAdj", json_object_new_int64(r->oom_score_adj));
        json_object_object_add(o, "hasOomScoreAdj", json_object_new_boolean(r->has_oom_score_adj));
        json_object_object_add(o, "cpusetCpus", json_object_new_string(r->cpuset_cpus ?: ""));
        json_object_object_add(o, "cpusetMems", json_object_new_string(r->cpuset_mems ?: ""));
        json_object_object_add(o, "hugepages", pod_kv_json(r->hugepages, r->n_hugepages));
        return o;
}

static int res_from_json(json_object *o, struct be_resources *r)
{
        memset(r, 0, sizeof(*r));
        r->cpu_period = pod_jint(o, "cpuPeriod");
        r->cpu_quota = pod_jint(o, "cpuQuota");
        r->cpu_shares = pod_jint(o, "cpuShares");
        r->memory_limit = pod_jint(o, "memory");
        r->memory_swap_limit = pod_jint(o, "memorySwap");
        r->oom_score_adj = pod_jint(o, "oomScoreAdj");
        sh_json_get_bool(o, "hasOomScoreAdj", "resources", &r->has_oom_score_adj, NULL);
        r->cpuset_cpus = pod_jstr(o, "cpusetCpus");
        r->cpuset_mems = pod_jstr(o, "cpusetMems");
        r->hugepages = pod_jkv(o, "hugepages", &r->n_hugepages);
        return r->cpuset_cpus && r->cpuset_mems && r->hugepages ? 0 : -ENOMEM;
}

struct ctr_extra {
        const char *user, *image_name, *image_digest;
};

static char *spec_to_json(const struct be_container_spec *s, const struct ctr_extra *x)
{
        json_object *o = json_object_new_object(), *mounts = json_object_new_array();
        json_object *devices = json_object_new_array(), *groups = json_object_new_array();
        char *t;

        json_object_object_add(o, "name", json_object_new_string(s->name));
        json_object_object_add(o, "attempt", json_object_new_int64(s->attempt));
        json_object_object_add(o, "imageRef", json_object_new_string(s->image_ref));
        json_object_object_add(o, "imageId", json_object_new_string(s->image_id));
        json_object_object_add(o, "layerDirs", pod_strv_json(s->layer_dirs));
        json_object_object_add(o, "chainIds", pod_strv_json(s->chain_ids));
        json_object_object_add(o, "argv", pod_strv_json(s->argv));
        json_object_object_add(o, "env", pod_strv_json(s->env));
        json_object_object_add(o, "cwd", json_object_new_string(s->cwd));
        json_object_object_add(o, "uid", json_object_new_int64(s->uid));
        json_object_object_add(o, "gid", json_object_new_int64(s->gid));
        for (size_t i = 0; i < s->n_groups; i++)
                json_object_array_add(groups, json_object_new_int64(s->groups[i]));
        json_object_object_add(o, "groups", groups);
        json_object_object_add(o, "user", json_object_new_string(x->user ? x->user : ""));
        json_object_object_add(o, "imageName",
                               json_object_new_string(x->image_name ? x->image_name : ""));
        json_object_object_add(o, "imageDigestRef",
                               json_object_new_string(x->image_digest ? x->image_digest : ""));
        json_object_object_add(o, "logPath", json_object_new_string(s->log_path));
        json_object_object_add(o, "tty", json_object_new_boolean(s->tty));
        json_object_object_add(o, "stdin", json_object_new_boolean(s->stdin_open));
        json_object_object_add(o, "stdinOnce", json_object_new_boolean(s->stdin_once));
        for (size_t i = 0; i < s->n_mounts; i++) {
                json_object *m = json_object_new_object();

                json_object_object_add(m, "containerPath",
                                       json_object_new_string(s->mounts[i].container_path));
                json_object_object_add(m, "hostPath",
                                       json_object_new_string(s->mounts[i].host_path));
                json_object_object_add(m, "readonly",
                                       json_object_new_boolean(s->mounts[i].readonly));
                json_object_object_add(m, "propagation",
                                       json_object_new_int(s->mounts[i].propagation));
                json_object_array_add(mounts, m);
        }
        json_object_object_add(o, "mounts", mounts);
        for (size_t i = 0; i < s->n_devices; i++) {
                json_object *d = json_object_new_object();

                json_object_object_add(d, "containerPath",
                                       json_object_new_string(s->devices[i].container_path));
                json_object_object_add(d, "hostPath",
                                       json_object_new_string(s->devices[i].host_path));
                json_object_object_add(d, "permissions",
                                       json_object_new_string(s->devices[i].permissions));
                json_object_array_add(devices, d);
        }
        json_object_object_add(o, "devices", devices);
        json_object_object_add(o, "labels", pod_kv_json(s->labels, s->n_labels));
        json_object_object_add(o, "annotations", pod_kv_json(s->annotations, s->n_annotations));
        json_object_object_add(o, "resources", res_json(&s->resources));
        json_object_object_add(o, "privileged", json_object_new_boolean(s->privileged));
        json_object_object_add(o, "readonlyRootfs", json_object_new_boolean(s->readonly_rootfs));
        json_object_object_add(o, "noNewPrivs", json_object_new_boolean(s->no_new_privs));
        json_object_object_add(o, "capAdd", pod_strv_json(s->cap_add));
        json_object_object_add(o, "capDrop", pod_strv_json(s->cap_drop));
        json_object_object_add(o, "seccomp", json_object_new_int(s->seccomp));
        json_object_object_add(o, "seccompProfile", json_object_new_string(s->seccomp_profile));
        json_object_object_add(o, "maskedPaths", pod_strv_json(s->masked_paths));
        json_object_object_add(o, "readonlyPaths", pod_strv_json(s->readonly_paths));
        json_object_object_add(o, "pidMode", json_object_new_int(s->pid_mode));
        json_object_object_add(o, "stopSignal", json_object_new_string(s->stop_signal));
        t = sh_json_to_string(o);
        json_object_put(o);
        return t;
}

static int spec_from_json(const char *text, struct be_container_spec *s, char **ret_user,
                          char **ret_image_name, char **ret_image_digest)
{
        json_object *o = NULL, *a = NULL, *res = NULL;
        int r = 0;

        memset(s, 0, sizeof(*s));
        if (sh_json_parse(text, strlen(text), "container spec", &o, NULL) < 0)
                return -EIO;
        s->name = pod_jstr(o, "name");
        s->attempt = (unsigned)pod_jint(o, "attempt");
        s->image_ref = pod_jstr(o, "imageRef");
        s->image_id = pod_jstr(o, "imageId");
        s->layer_dirs = pod_jstrv(o, "layerDirs");
        s->chain_ids = pod_jstrv(o, "chainIds");
        s->argv = pod_jstrv(o, "argv");
        s->env = pod_jstrv(o, "env");
        s->cwd = pod_jstr(o, "cwd");
        s->uid = (unsigned)pod_jint(o, "uid");
        s->gid = (unsigned)pod_jint(o, "gid");
        sh_json_get_array(o, "groups", "container spec", &a, NULL);
        s->n_groups = a ? json_object_array_length(a) : 0;
        s->groups = calloc(s->n_groups + 1, sizeof(*s->groups));
        for (size_t i = 0; s->groups && i < s->n_groups; i++)
                s->groups[i] = (unsigned)json_object_get_int64(json_object_array_get_idx(a, i));
        *ret_user = pod_jstr(o, "user");
        *ret_image_name = pod_jstr(o, "imageName");
        *ret_image_digest = pod_jstr(o, "imageDigestRef");
        s->log_path = pod_jstr(o, "logPath");
        sh_json_get_bool(o, "tty", "container spec", &s->tty, NULL);
        sh_json_get_bool(o, "stdin", "container spec", &s->stdin_open, NULL);
        sh_json_get_bool(o, "stdinOnce", "container spec", &s->stdin_once, NULL);
        a = NULL;
        sh_json_get_array(o, "mounts", "container spec", &a, NULL);
        s->n_mounts = a ? json_object_array_length(a) : 0;
        s->mounts = calloc(s->n_mounts + 1, sizeof(*s->mounts));
        for (size_t i = 0; s->mounts && i < s->n_mounts; i++) {
                json_object *m = json_object_array_get_idx(a, i);

                s->mounts[i].container_path = pod_jstr(m, "containerPath");
                s->mounts[i].host_path = pod_jstr(m, "hostPath");
                sh_json_get_bool(m, "readonly", "mount", &s->mounts[i].readonly, NULL);
                s->mounts[i].propagation = (enum be_propagation)pod_jint(m, "propagation");
                if (!s->mounts[i].container_path || !s->mounts[i].host_path)
                        r = -ENOMEM;
        }
        a = NULL;
        sh_json_get_array(o, "devices", "container spec", &a, NULL);
        s->n_devices = a ? json_object_array_length(a) : 0;
        s->devices = calloc(s->n_devices + 1, sizeof(*s->devices));
        for (size_t i = 0; s->devices && i < s->n_devices; i++) {
                json_object *d = json_object_array_get_idx(a, i);

                s->devices[i].container_path = pod_jstr(d, "containerPath");
                s->devices[i].host_path = pod_jstr(d, "hostPath");
                s->devices[i].permissions = pod_jstr(d, "permissions");
                if (!s->devices[i].container_path || !s->devices[i].host_path ||
                    !s->devices[i].permissions)
                        r = -ENOMEM;
        }
        s->labels = pod_jkv(o, "labels", &s->n_labels);
        s->annotations = pod_jkv(o, "annotations", &s->n_annotations);
        sh_json_get_object(o, "resources", "container spec", &res, NULL);
        if (res_from_json(res, &s->resources) < 0)
                r = -ENOMEM;
        sh_json_get_bool(o, "privileged", "container spec", &s->privileged, NULL);
        sh_json_get_bool(o, "readonlyRootfs", "container spec", &s->readonly_rootfs, NULL);
        sh_json_get_bool(o, "noNewPrivs", "container spec", &s->no_new_privs, NULL);
        s->cap_add = pod_jstrv(o, "capAdd");
        s->cap_drop = pod_jstrv(o, "capDrop");
        s->seccomp = (enum be_seccomp)pod_jint(o, "seccomp");
        s->seccomp_profile = pod_jstr(o, "seccompProfile");
        s->masked_paths = pod_jstrv(o, "maskedPaths");
        s->readonly_paths = pod_jstrv(o, "readonlyPaths");
        s->pid_mode = (enum be_ns_mode)pod_jint(o, "pidMode");
        s->stop_signal = pod_jstr(o, "stopSignal");
        json_object_put(o);
        if (r < 0 || !s->name || !s->image_ref || !s->image_id || !s->layer_dirs || !s->argv ||
            !s->env || !s->cwd || !s->groups || !*ret_user || !s->log_path || !s->mounts ||
            !s->devices || !s->labels || !s->annotations || !s->cap_add || !s->cap_drop ||
            !s->seccomp_profile || !s->masked_paths || !s->readonly_paths || !s->stop_signal ||
            !*ret_image_name || !*ret_image_digest) {
                be_container_spec_done(s);
                free(*ret_user);
                free(*ret_image_name);
                free(*ret_image_digest);
                *ret_user = *ret_image_name = *ret_image_digest = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* ---------------------------------------------------------------- process resolution */

static char **strv_cat(char *const *a, char *const *b)
{
        size_t na = 0, nb = 0;
        char **v;

        while (a && a[na])
                na++;
        while (b && b[nb])
                nb++;
        v = calloc(na + nb + 1, sizeof(char *));
        for (size_t i = 0; v && i < na + nb; i++)
                if (!(v[i] = strdup(i < na ? a[i] : b[i - na]))) {
                        sh_strv_free(v);
                        return NULL;
                }
        return v;
}

/* Sets "K=V" @kv in env @v (replacing K), growing it. */
static int env_set(char ***v, const char *kv)
{
        size_t klen = strcspn(kv, "="), n = 0;
        char **nv;

        for (; (*v)[n]; n++)
                if (strncmp((*v)[n], kv, klen) == 0 && (*v)[n][klen] == '=') {
                        char *d = strdup(kv);

                        if (!d)
                                return -ENOMEM;
                        free((*v)[n]);
                        (*v)[n] = d;
                        return 0;
                }
        nv = realloc(*v, (n + 2) * sizeof(char *));
        if (!nv)
                return -ENOMEM;
        *v = nv;
        nv[n] = strdup(kv);
        nv[n + 1] = NULL;
        return nv[n] ? 0 : -ENOMEM;
}

static bool env_has(char *const *v, const char *key)
{
        size_t klen = strlen(key);

        for (size_t i = 0; v && v[i]; i++)
                if (strncmp(v[i], key, klen) == 0 && v[i][klen] == '=')
                        return true;
        return false;
}

/*
 * The topmost layer's copy of image file @rel (no leading '/'), or NULL. Read without
 * following symlinks, so an image cannot make runtd read a host file.
 */
static char *image_file(char *const *layers, const char *rel)
{
        size_t n = 0;

        while (layers && layers[n])
                n++;
        for (size_t i = n; i-- > 0;) {
                /* O_PATH: a device node the image carries is never opened. */
                int fd = sh_open_nofollow(layers[i], rel, O_PATH);
                char proc[64], *buf = NULL;
                struct stat st;

                if (fd == -ENOENT)
                        continue;
                if (fd < 0)
                        return NULL; /* a link or a non-directory on the way hides lower copies */
                snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
                if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
                    sh_read_file(proc, 4u << 20, &buf, NULL) < 0)
                        buf = NULL; /* a whiteout or something odd */
                close(fd);
                return buf;
        }
        return NULL;
}

static bool parse_uint(const char *s, unsigned *ret)
{
        char *end;
        unsigned long v;

        if (!s || !s[0] || !isdigit((unsigned char)s[0]))
                return false;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || v > 0xffffffffUL)
                return false;
        *ret = (unsigned)v;
        return true;
}

/*
 * Looks up a passwd(5) or group(5) entry in @text by name (@name) or by id (@id, when
 * @name is NULL). Fills the entry's name (malloc'd), its id (field 3), gid (field 4) and
 * home directory (field 6, malloc'd; NULL when empty or missing).
 */
static bool db_lookup(const char *text, const char *name, unsigned id, char **ret_name,
                      unsigned *ret_id, unsigned *ret_gid, char **ret_home)
{
        const char *line = text;

        while (line && *line) {
                const char *end = strchr(line, '\n');
                size_t len = end ? (size_t)(end - line) : strlen(line);
                char buf[1024], *f[7] = {0}, *save = NULL, *tok;
                size_t nf = 0;
                unsigned fid = 0, fgid = 0;

                if (len < sizeof(buf)) {
                        memcpy(buf, line, len);
                        buf[len] = '\0';
                        /* strsep keeps empty fields (the password is often empty). */
                        save = buf;
                        while (nf < 7 && (tok = strsep(&save, ":")))
                                f[nf++] = tok;
                        if (nf >= 3 && parse_uint(f[2], &fid)) {
                                if (nf >= 4)
                                        parse_uint(f[3], &fgid);
                                if (name ? strcmp(f[0], name) == 0 : fid == id) {
                                        if (ret_name)
                                                *ret_name = strdup(f[0]);
                                        *ret_id = fid;
                                        if (ret_gid)
                                                *ret_gid = fgid;
                                        if (ret_home)
                                                *ret_home =
                                                        nf >= 6 && f[5][0] ? strdup(f[5]) : NULL;
                                        return true;
                                }
                        }
                }
                line = end ? end + 1 : NULL;
        }
        return false;
}

/* Groups of /etc/group that list @user as a member. */
static int member_groups(const char *text, const char *user, unsigned **v, size_t *n)
{
        const char *line = text;

        while (user && line && *line) {
                const char *end = strchr(line, '\n');
                size_t len = end ? (size_t)(end - line) : strlen(line);
                char buf[4096], *f[4] = {0}, *save, *tok;
                size_t nf = 0;
                unsigned gid;

                if (len < sizeof(buf)) {
                        memcpy(buf, line, len);
                        buf[len] = '\0';
                        save = buf;
                        while (nf < 4 && (tok = strsep(&save, ":")))
                                f[nf++] = tok;
                        if (nf == 4 && parse_uint(f[2], &gid)) {
                                char *m = f[3], *ms = NULL;

                                for (char *u = strtok_r(m, ",", &ms); u;
                                     u = strtok_r(NULL, ",", &ms))
                                        if (strcmp(u, user) == 0) {
                                                unsigned *nv = realloc(*v, (*n + 1) * sizeof(**v));

                                                if (!nv)
                                                        return -ENOMEM;
                                                *v = nv;
                                                nv[(*n)++] = gid;
                                        }
                        }
                }
                line = end ? end + 1 : NULL;
        }
        return 0;
}

static void add_group(unsigned **v, size_t *n, unsigned g)
{
        unsigned *nv;

        for (size_t i = 0; i < *n; i++)
                if ((*v)[i] == g)
                        return;
        nv = realloc(*v, (*n + 1) * sizeof(**v));
        if (!nv)
                return;
        *v = nv;
        nv[(*n)++] = g;
}

/*
 * The user, group and supplementary groups, as containerd resolves them, and the user's
 * home directory in the image's /etc/passwd into @ret_home (malloc'd; NULL: no entry).
 */
static int resolve_user(const struct pod_ctr_request *req, struct be_container_spec *s,
                        char **ret_home, struct sh_error *err)
{
        _cleanup_free_ char *passwd = image_file(req->image.layer_dirs, "etc/passwd");
        _cleanup_free_ char *group = image_file(req->image.layer_dirs, "etc/group");
        _cleanup_free_ char *uname = NULL, *user = NULL, *home = NULL;
        const char *gpart = NULL;
        unsigned uid = 0, gid = 0, pgid = 0;
        int r;

        if (req->has_uid) {
                if (req->uid < 0 || req->uid > 0xfffffffeLL)
                        return sh_err(err, -EINVAL, "run_as_user %lld is out of range", req->uid);
                uid = (unsigned)req->uid;
                if (passwd && db_lookup(passwd, NULL, uid, &uname, &uid, &pgid, &home))
                        gid = pgid;
        } else if (req->username && req->username[0]) {
                if (!passwd || !db_lookup(passwd, req->username, 0, &uname, &uid, &gid, &home))
                        return sh_err(err, -EINVAL,
                                      "run_as_username '%.64s': no such user in the image's "
                                      "/etc/passwd",
                                      req->username);
        } else if (req->image.user && req->image.user[0]) {
                char *colon;

                user = strdup(req->image.user);
                if (!user)
                        return -ENOMEM;
                colon = strchr(user, ':');
                if (colon) {
                        *colon = '\0';
                        gpart = colon + 1;
                }
                if (parse_uint(user, &uid)) {
                        if (passwd && db_lookup(passwd, NULL, uid, &uname, &uid, &pgid, &home))
                                gid = pgid;
                } else if (!passwd || !db_lookup(passwd, user, 0, &uname, &uid, &gid, &home)) {
                        return sh_err(err, -EINVAL,
                                      "image user '%.64s': no such user in the image's "
                                      "/etc/passwd",
                                      user);
                }
                if (gpart && gpart[0] && !parse_uint(gpart, &gid) &&
                    (!group || !db_lookup(group, gpart, 0, NULL, &gid, NULL, NULL)))
                        return sh_err(err, -EINVAL,
                                      "image user '%.64s': no group '%.64s' in the image's "
                                      "/etc/group",
                                      req->image.user, gpart);
        } else if (passwd) {
                /* No user at all: root, gid 0, whatever the image says; its entry gives the
                 * name for /etc/group and the home directory. */
                db_lookup(passwd, NULL, 0, &uname, &uid, NULL, &home);
        }
        if (req->has_gid) {
                if (req->gid < 0 || req->gid > 0xfffffffeLL)
                        return sh_err(err, -EINVAL, "run_as_group %lld is out of range", req->gid);
                gid = (unsigned)req->gid;
        }
        s->uid = uid;
        s->gid = gid;
        free(s->groups);
        s->groups = NULL;
        s->n_groups = 0;
        add_group(&s->groups, &s->n_groups, gid);
        if (group && uname) {
                unsigned *mg = NULL;
                size_t nmg = 0;

                r = member_groups(group, uname, &mg, &nmg);
                for (size_t i = 0; r == 0 && i < nmg; i++)
                        add_group(&s->groups, &s->n_groups, mg[i]);
                free(mg);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < req->n_supplemental_groups; i++) {
                if (req->supplemental_groups[i] < 0 || req->supplemental_groups[i] > 0xfffffffeLL)
                        return sh_err(err, -EINVAL, "supplemental_groups[%zu] is out of range", i);
                add_group(&s->groups, &s->n_groups, (unsigned)req->supplemental_groups[i]);
        }
        if (!s->groups)
                return -ENOMEM;
        *ret_home = TAKE_PTR(home);
        return 0;
}

/* Is @p absolute with no "." or ".." component and no newline? */
static bool clean_abs_path(const char *p)
{
        if (!p || p[0] != '/' || strlen(p) > 4096)
                return false;
        for (const char *c = p; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        return false; /* a control character ends a config line */
        for (const char *c = p; *c;) {
                size_t len;

                while (*c == '/')
                        c++;
                len = strcspn(c, "/");
                if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                c += len;
        }
        return true;
}

/*
 * The container's log file: @dir (the pod's log directory) and @rel. The log is opened with
 * no symlink followed (runt-lxc-shim), since a pod with a hostPath of the log directory can
 * plant them there; but the directories above the pod's are the node's own (/var/log may be
 * a link to a data disk): their symlinks are resolved here, once.
 */
static char *log_path_of(const char *dir, const char *rel)
{
        _cleanup_free_ char *parent = strdup(dir), *real = NULL;
        char *slash = parent ? strrchr(parent, '/') : NULL;

        if (!parent)
                return NULL;
        if (slash && slash != parent) {
                *slash = '\0';
                real = realpath(parent, NULL);
                if (real)
                        return sh_strdup_printf("%s/%s/%s", real, slash + 1, rel);
        }
        return sh_path_join(dir, rel);
}

/* Resolves the process of @req into @s: argv, env, cwd, user, stop signal, layers, log. */
static int resolve(struct pod_mgr *pm, const struct pod_ctr_request *req,
                   const struct pod_sandbox_info *sb, struct be_container_spec *s,
                   struct sh_error *err)
{
        const struct pod_image *im = &req->image;
        bool has_cmd = req->command && req->command[0];
        _cleanup_free_ char *home = NULL;
        int r;

        sh_strv_free(s->argv);
        if (has_cmd)
                s->argv = strv_cat(req->command, req->args);
        else
                s->argv = strv_cat(im->entrypoint, req->args && req->args[0] ? req->args : im->cmd);
        if (!s->argv)
                return -ENOMEM;
        if (!s->argv[0] || !s->argv[0][0])
                return sh_err(err, -EINVAL,
                              "no command: the request has none and image %s has neither "
                              "Entrypoint nor Cmd",
                              im->id);
        sh_strv_free(s->env);
        s->env = strv_cat(im->env, NULL);
        if (!s->env)
                return -ENOMEM;
        for (size_t i = 0; req->envs && req->envs[i]; i++) {
                if (!strchr(req->envs[i], '=') || req->envs[i][0] == '=')
                        return sh_err(err, -EINVAL, "envs[%zu]: the key is empty", i);
                if ((r = env_set(&s->env, req->envs[i])) < 0)
                        return r;
        }
        if (!env_has(s->env, "PATH") && (r = env_set(&s->env, DEFAULT_PATH)) < 0)
                return r;
        if (!env_has(s->env, "HOSTNAME")) {
                _cleanup_free_ char *h = sh_strdup_printf(
                        "HOSTNAME=%s", sb->spec.hostname[0] ? sb->spec.hostname : sb->spec.name);

                if (!h || (r = env_set(&s->env, h)) < 0)
                        return h ? r : -ENOMEM;
        }
        for (size_t i = 0; s->env[i]; i++)
                if (strpbrk(s->env[i], "\n\r") || strlen(s->env[i]) > 131072)
                        return sh_err(err, -EINVAL,
                                      "environment variable '%.32s...' has a "
                                      "newline or is too long",
                                      s->env[i]);
        free(s->cwd);
        s->cwd = strdup(req->working_dir && req->working_dir[0] ? req->working_dir
                        : im->working_dir && im->working_dir[0] ? im->working_dir
                                                                : "/");
        if (!s->cwd)
                return -ENOMEM;
        if (!clean_abs_path(s->cwd))
                return sh_err(err, -EINVAL, "working_dir '%.64s' is not a clean absolute path",
                              s->cwd);
        r = resolve_user(req, s, &home, err);
        if (r < 0)
                return r;
        /* As runc: HOME from the user's passwd entry, "/" without one, unless the request
         * or the image set it. lxc.environment carries it to PID 1 and to exec. */
        if (!env_has(s->env, "HOME")) {
                _cleanup_free_ char *h = sh_strdup_printf("HOME=%s", home ? home : "/");

                if (!h || (r = env_set(&s->env, h)) < 0)
                        return h ? r : -ENOMEM;
        }
        if (!s->stop_signal || !s->stop_signal[0]) { /* the request's, when it gave one */
                free(s->stop_signal);
                s->stop_signal = strdup(im->stop_signal ? im->stop_signal : "");
        }
        free(s->image_id);
        s->image_id = strdup(im->id ? im->id : "");
        sh_strv_free(s->layer_dirs);
        s->layer_dirs = strv_cat(im->layer_dirs, NULL);
        sh_strv_free(s->chain_ids);
        s->chain_ids = strv_cat(im->chain_ids, NULL);
        free(s->log_path);
        s->log_path = NULL;
        if (req->log_path && req->log_path[0] && sb->spec.log_directory[0]) {
                _cleanup_free_ char *probe = sh_strdup_printf("/%s", req->log_path);

                if (!probe || !clean_abs_path(probe) || req->log_path[0] == '/')
                        return sh_err(err, -EINVAL, "log_path '%.64s' must be relative, no '..'",
                                      req->log_path);
                s->log_path = log_path_of(sb->spec.log_directory, req->log_path);
        } else {
                s->log_path = strdup("");
        }
        if (!s->stop_signal || !s->image_id || !s->layer_dirs || !s->chain_ids || !s->log_path)
                return -ENOMEM;
        s->log_max_line = pod_mgr_config(pm)->max_log_line;
        s->pids_limit = pod_mgr_config(pm)->pids_limit; /* CRI has no field for it */
        for (size_t i = 0; i < s->n_mounts; i++)
                if (!clean_abs_path(s->mounts[i].container_path) ||
                    !clean_abs_path(s->mounts[i].host_path) ||
                    strcmp(s->mounts[i].container_path, "/") == 0)
                        return sh_err(err, -EINVAL,
                                      "mounts[%zu]: '%.64s' -> '%.64s': paths must be absolute, "
                                      "without '..', and not /",
                                      i, s->mounts[i].host_path, s->mounts[i].container_path);
        for (size_t i = 0; i < s->n_devices; i++)
                if (!clean_abs_path(s->devices[i].container_path) ||
                    !clean_abs_path(s->devices[i].host_path) ||
                    strspn(s->devices[i].permissions, "rwm") != strlen(s->devices[i].permissions))
                        return sh_err(err, -EINVAL, "devices[%zu]: bad path or permissions", i);
        return 0;
}

/* The signal number of an image's StopSignal ("SIGINT", "INT", "2"); SIGTERM when unset. */
static int signal_of(const char *name)
{
        static const struct {
                const char *name;
                int sig;
        } table[] = {
                {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"KILL", SIGKILL},
                {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM},   {"STOP", SIGSTOP},
                {"CONT", SIGCONT}, {"PWR", SIGPWR},   {"WINCH", SIGWINCH},
        };
        unsigned n;

        if (!name || !name[0])
                return SIGTERM;
        if (parse_uint(name, &n) && n > 0 && n < 65)
                return (int)n;
        if (strncasecmp(name, "SIG", 3) == 0)
                name += 3;
        for (size_t i = 0; i < SH_ARRAY_SIZE(table); i++)
                if (strcasecmp(name, table[i].name) == 0)
                        return table[i].sig;
        /* "RTMIN+3" (images) and "RTMINPLUS3" (the CRI enum's names); RTMAX-n likewise. */
        if (strcasecmp(name, "RTMIN") == 0)
                return SIGRTMIN;
        if (strcasecmp(name, "RTMAX") == 0)
                return SIGRTMAX;
        if ((strncasecmp(name, "RTMIN+", 6) == 0 && parse_uint(name + 6, &n)) ||
            (strncasecmp(name, "RTMINPLUS", 9) == 0 && parse_uint(name + 9, &n)))
                return SIGRTMIN + (int)n <= SIGRTMAX ? SIGRTMIN + (int)n : SIGTERM;
        if ((strncasecmp(name, "RTMAX-", 6) == 0 && parse_uint(name + 6, &n)) ||
            (strncasecmp(name, "RTMAXMINUS", 10) == 0 && parse_uint(name + 10, &n)))
                return SIGRTMAX - (int)n >= SIGRTMIN ? SIGRTMAX - (int)n : SIGTERM;
        return SIGTERM;
}

/* ---------------------------------------------------------------- store */

struct row {
        struct pod_container_info *info;
        char *handler;
};

#define SELECT_CONTAINER                                                                           \
        "SELECT c.id, c.sandbox_id, c.state, c.created_ns, c.started_ns, c.finished_ns, "          \
        "c.exit_code, c.reason, c.message, c.spec, s.handler FROM containers c "                   \
        "JOIN sandboxes s ON s.id = c.sandbox_id"

static struct pod_container_info *row_info(sqlite3_stmt *st, char **ret_handler)
{
        struct pod_container_info *i = calloc(1, sizeof(*i));

        if (!i)
                return NULL;
        i->id = strdup((const char *)sqlite3_column_text(st, 0) ?: "");
        i->sandbox_id = strdup((const char *)sqlite3_column_text(st, 1) ?: "");
        i->state = state_parse((const char *)sqlite3_column_text(st, 2));
        i->created_ns = sqlite3_column_int64(st, 3);
        i->started_ns = sqlite3_column_int64(st, 4);
        i->finished_ns = sqlite3_column_int64(st, 5);
        i->exit_code = sqlite3_column_int(st, 6);
        i->reason = strdup((const char *)sqlite3_column_text(st, 7) ?: "");
        i->message = strdup((const char *)sqlite3_column_text(st, 8) ?: "");
        *ret_handler = strdup((const char *)sqlite3_column_text(st, 10) ?: "");
        if (!i->id || !i->sandbox_id || !i->reason || !i->message || !*ret_handler ||
            spec_from_json((const char *)sqlite3_column_text(st, 9) ?: "{}", &i->spec, &i->user,
                           &i->image_name, &i->image_digest) < 0) {
                free(*ret_handler);
                *ret_handler = NULL;
                return pod_container_info_free(i);
        }
        return i;
}

/*
 * Asks the backend of container @id how it is and records what changed: in the view (with
 * its events) and, for an exit, in the store. Called after runt's own calls change it, by
 * the watcher when its watch fd turns readable, and once per container at a start.
 */
void pod_ctr_look(struct pod_mgr *pm, const char *id, bool rearm)
{
        struct pod_container_info *i = NULL, *gone = NULL;
        _cleanup_free_ char *handler = NULL;
        struct be *be = NULL;
        struct be_ctr_status st;
        bool known = false;

        if (pod_view_ctr_get(pm, id, &i, &handler, NULL) < 0)
                return;
        if (i->state != POD_CTR_EXITED && pod_mgr_backend(pm, handler, &be, NULL) == 0) {
                known = be_container_status(be, i->id, &st, NULL) == 0;
                if (pod_view_ctr_apply(pm, i->id, known ? &st : NULL, &gone) && gone) {
                        char code[16], started[32], finished[32];

                        snprintf(code, sizeof(code), "%d", gone->exit_code);
                        snprintf(started, sizeof(started), "%lld", gone->started_ns);
                        snprintf(finished, sizeof(finished), "%lld", gone->finished_ns);
                        pod_db_run(pm,
                                   "UPDATE containers SET state = 'exited', exit_code = ?, "
                                   "started_ns = ?, finished_ns = ?, reason = ?, message = ? "
                                   "WHERE id = ?",
                                   (const char *[]){code, started, finished, gone->reason,
                                                    gone->message, gone->id, NULL},
                                   NULL);
                } else if (known && st.state == BE_CTR_RUNNING && i->state == POD_CTR_CREATED) {
                        char started[32];

                        /* Running now (a start a crash cut off, found at recovery): say so. */
                        snprintf(started, sizeof(started), "%lld",
                                 st.started_ns ? st.started_ns : pod_now_ns());
                        pod_db_run(pm,
                                   "UPDATE containers SET state = 'running', started_ns = ? "
                                   "WHERE id = ? AND state IN ('created', 'starting')",
                                   (const char *[]){started, i->id, NULL}, NULL);
                }
        }
        if (rearm && be && i->state != POD_CTR_EXITED) {
                /* Still running without a watch: watch again. Not told: ask again later. */
                pod_view_poll(pm, 'c', i->id, !known);
                if (known && pod_view_unwatched(pm, 'c', i->id))
                        pod_view_watch(pm, 'c', i->id);
        }
        pod_container_info_free(gone);
        pod_container_info_free(i);
}

static void pod_ctr_observe(struct pod_mgr *pm, const char *id)
{
        pod_ctr_look(pm, id, true);
}

void pod_container_refresh(struct pod_mgr *pm, const char *id)
{
        pod_ctr_observe(pm, id);
}

int pod_db_containers(struct pod_mgr *pm, struct pod_container_info ***ret, char ***ret_handlers,
                      size_t *ret_n, struct sh_error *err)
{
        sqlite3_stmt *st = NULL;
        struct pod_container_info **v = calloc(1, sizeof(*v));
        char **h = calloc(1, sizeof(*h));
        size_t n = 0;

        if (!v || !h) {
                free(v);
                free(h);
                return -ENOMEM;
        }
        if (sqlite3_prepare_v2(pod_mgr_db(pm),
                               SELECT_CONTAINER " WHERE c.state != 'creating' ORDER BY "
                                                "c.created_ns, c.id",
                               -1, &st, NULL) != SQLITE_OK) {
                free(v);
                free(h);
                return pod_db_fail(pm, err, "list containers");
        }
        while (sqlite3_step(st) == SQLITE_ROW) {
                char *handler = NULL;
                struct pod_container_info *i = row_info(st, &handler), **nv;
                char **nh;

                if (!i)
                        continue;
                nv = realloc(v, (n + 2) * sizeof(*v));
                if (nv)
                        v = nv;
                nh = nv ? realloc(h, (n + 2) * sizeof(*h)) : NULL;
                if (nh)
                        h = nh;
                if (!nv || !nh) {
                        pod_container_info_free(i);
                        free(handler);
                        sqlite3_finalize(st);
                        for (size_t k = 0; k < n; k++)
                                free(h[k]);
                        free(h);
                        pod_container_info_list_free(v);
                        return -ENOMEM;
                }
                v[n] = i;
                h[n] = handler;
                n++;
                v[n] = NULL;
                h[n] = NULL;
        }
        sqlite3_finalize(st);
        *ret = v;
        *ret_handlers = h;
        *ret_n = n;
        return 0;
}

/* The container @id names (an id or unique prefix) as the view has it, and its handler. */
static int load(struct pod_mgr *pm, const char *id, struct pod_container_info **ret,
                char **ret_handler, struct sh_error *err)
{
        return pod_view_ctr_get(pm, id, ret, ret_handler, err);
}

/* ---------------------------------------------------------------- lifecycle */

static char *reserved_name(const struct be_container_spec *s, const struct pod_sandbox_info *sb)
{
        return sh_strdup_printf("%s_%s_%s_%s_%u", s->name, sb->spec.name, sb->spec.namespace,
                                sb->spec.uid, s->attempt);
}

static void forget(struct pod_mgr *pm, const char *id)
{
        pod_view_ctr_remove(pm, id);
        pod_db_run(pm, "DELETE FROM container_layers WHERE container_id = ?",
                   (const char *[]){id, NULL}, NULL);
        pod_db_run(pm, "DELETE FROM containers WHERE id = ?", (const char *[]){id, NULL}, NULL);
}

/* CreateContainer with the pod's lock held (shared): req->sandbox_id is a full id. */
static int ctr_create(struct pod_mgr *pm, const struct pod_ctr_request *req, char **ret_id,
                      struct sh_error *err)
{
        struct be_container_spec *s = req->spec;
        struct pod_sandbox_info *sb = NULL;
        _cleanup_free_ char *name = NULL, *json = NULL, *pdir = NULL;
        struct sh_error ignored = {0};
        struct be *be = NULL;
        char id[65], created[32];
        int r;

        r = sh_validate_name(s->name, strlen(s->name), "metadata.name", err);
        if (r < 0)
                return r;
        if (strchr(s->name, '_'))
                return sh_err(err, -EINVAL, "metadata.name '%.64s': '_' is not allowed", s->name);
        if (!req->image.layer_dirs || !req->image.layer_dirs[0])
                return sh_err(err, -EINVAL, "image %s has no layers", req->image.id);
        r = pod_sandbox_status(pm, req->sandbox_id, &sb, err);
        if (r < 0)
                return r;
        if (sb->state != POD_READY) {
                r = sh_err(err, -EINVAL, "pod sandbox %.12s is not ready", sb->id);
                goto out;
        }
        r = pod_mgr_backend(pm, sb->spec.handler, &be, err);
        if (r < 0)
                goto out;
        r = resolve(pm, req, sb, s, err);
        if (r < 0)
                goto out;
        r = sh_id_new(id);
        if (r < 0)
                goto out;
        name = reserved_name(s, sb);
        json = spec_to_json(s,
                            &(struct ctr_extra){req->has_uid || (req->username && req->username[0])
                                                        ? req->username
                                                        : req->image.user,
                                                req->image.name, req->image.digest_ref});
        pdir = pod_dir_of(pm, sb->id);
        if (!name || !json || !pdir) {
                r = -ENOMEM;
                goto out;
        }
        snprintf(created, sizeof(created), "%lld", pod_now_ns());

        /* 1. The record: reserves the name; the layers it uses are kept from the GC. */
        r = pod_db_run(
                pm,
                "INSERT INTO containers(id, sandbox_id, name, state, created_ns, "
                "image_ref, image_id, spec) VALUES (?, ?, ?, 'creating', ?, ?, ?, ?)",
                (const char *[]){id, sb->id, name, created, s->image_ref, s->image_id, json, NULL},
                err);
        if (r == -EEXIST) {
                _cleanup_free_ char *holder =
                        pod_db_text(pm, "SELECT id FROM containers WHERE name = ?", name);

                r = sh_err(err, -EEXIST, "container name '%s' is reserved for %s", name,
                           holder ? holder : "another container");
                goto out;
        }
        if (r < 0)
                goto out;
        for (size_t i = 0; r == 0 && req->image.chain_ids && req->image.chain_ids[i]; i++)
                r = pod_db_run(pm,
                               "INSERT OR IGNORE INTO container_layers(container_id, chain_id) "
                               "VALUES (?, ?)",
                               (const char *[]){id, req->image.chain_ids[i], NULL}, err);
        /* The image may have been removed since it was looked up: its layers must be there. */
        for (size_t i = 0; r == 0 && s->layer_dirs[i]; i++)
                if (access(s->layer_dirs[i], F_OK) < 0)
                        r = sh_err(err, -ENOENT, "image %s was removed meanwhile", s->image_id);
        if (r < 0)
                goto undo_record;

        /* 2. The backend's container. */
        {
                struct be_container bc = {
                        .id = id,
                        .sandbox_id = sb->id,
                        .sandbox = &sb->spec,
                        .netns = sb->netns[0] ? sb->netns : NULL,
                        .pod_dir = pdir,
                        .spec = s,
                };

                sh_log_debug("container=%s name=%s creating", id, name);
                r = be_container_create(be, &bc, err);
                if (r < 0) {
                        sh_err_prefix(err, r, "container %.12s: %s", id, be->ops->name);
                        goto undo_record;
                }
        }
        r = pod_db_run(pm, "UPDATE containers SET state = 'created' WHERE id = ?",
                       (const char *[]){id, NULL}, err);
        if (r == 0) {
                struct pod_container_info *info = calloc(1, sizeof(*info));

                /* The view's copy: what the store now says. */
                if (info) {
                        info->id = strdup(id);
                        info->sandbox_id = strdup(sb->id);
                        info->created_ns = strtoll(created, NULL, 10);
                        info->state = POD_CTR_CREATED;
                        info->reason = strdup("");
                        info->message = strdup("");
                        info->user = strdup(req->has_uid || (req->username && req->username[0])
                                                    ? req->username
                                            : req->image.user ? req->image.user
                                                              : "");
                        info->image_name = strdup(req->image.name ? req->image.name : "");
                        info->image_digest =
                                strdup(req->image.digest_ref ? req->image.digest_ref : "");
                }
                if (!info || !info->id || !info->sandbox_id || !info->reason || !info->message ||
                    !info->user || !info->image_name || !info->image_digest ||
                    be_container_spec_copy(s, &info->spec) < 0) {
                        pod_container_info_free(info);
                        r = -ENOMEM;
                } else {
                        r = pod_view_ctr_add(pm, info, sb->spec.handler);
                }
        }
        if (r < 0) {
                be_container_remove(be, id, &ignored);
                goto undo_record;
        }
        *ret_id = strdup(id);
        r = *ret_id ? 0 : -ENOMEM;
        sh_log_debug("container=%s name=%s created", id, name);
        goto out;
undo_record:
        forget(pm, id);
out:
        pod_sandbox_info_free(sb);
        return r;
}

static int ctr_start(struct pod_mgr *pm, const char *id, struct sh_error *err)
{
        struct pod_container_info *i = NULL;
        _cleanup_free_ char *handler = NULL;
        struct be *be = NULL;
        int r;

        r = load(pm, id, &i, &handler, err);
        if (r < 0)
                return r;
        if (i->state != POD_CTR_CREATED) {
                r = sh_err(err, -EINVAL, "container %.12s is %s, not created", i->id,
                           state_names[i->state]);
                goto out;
        }
        {
                struct pod_sandbox_info *sb = NULL;
                bool ready = pod_view_sb_get(pm, i->sandbox_id, &sb, NULL) == 0 &&
                             sb->state == POD_READY;

                pod_sandbox_info_free(sb);
                if (!ready) {
                        r = sh_err(err, -EINVAL,
                                   "pod sandbox %.12s of container %.12s is not ready",
                                   i->sandbox_id, i->id);
                        goto out;
                }
        }
        r = pod_mgr_backend(pm, handler, &be, err);
        if (r < 0)
                goto out;
        /* One start wins: the row turns 'starting' (read as created) only once. */
        {
                _cleanup_free_ char *won =
                        pod_db_text(pm,
                                    "UPDATE containers SET state = 'starting' WHERE id = ? AND "
                                    "state = 'created' RETURNING id",
                                    i->id);

                if (!won) {
                        r = sh_err(err, -EINVAL, "container %.12s is being started already", i->id);
                        goto out;
                }
        }
        r = be_container_start(be, i->id, err);
        if (r == 0) {
                struct be_ctr_status st;
                char started[32];

                if (be_container_status(be, i->id, &st, NULL) < 0 || !st.started_ns)
                        st.started_ns = pod_now_ns();
                snprintf(started, sizeof(started), "%lld", st.started_ns);
                r = pod_db_run(pm,
                               "UPDATE containers SET state = 'running', started_ns = ? "
                               "WHERE id = ? AND state = 'starting'",
                               (const char *[]){started, i->id, NULL}, err);
                /* Running, or ended already: the view learns which, and watches. */
                pod_ctr_observe(pm, i->id);
        } else {
                /* As containerd: a start that failed is an exit, code 128, StartError. */
                struct be_ctr_status failed = {.state = BE_CTR_EXITED, .exit_code = 128};
                char finished[32];

                failed.finished_ns = pod_now_ns();
                snprintf(failed.reason, sizeof(failed.reason), "StartError");
                snprintf(failed.message, sizeof(failed.message), "%s", err ? err->msg : "");
                snprintf(finished, sizeof(finished), "%lld", failed.finished_ns);
                pod_db_run(pm,
                           "UPDATE containers SET state = 'exited', exit_code = 128, "
                           "finished_ns = ?, reason = 'StartError', message = ? WHERE id = ?",
                           (const char *[]){finished, err ? err->msg : "", i->id, NULL}, NULL);
                pod_view_ctr_apply(pm, i->id, &failed, NULL);
        }
out:
        pod_container_info_free(i);
        return r;
}

static int ctr_stop(struct pod_mgr *pm, const char *id, long long timeout_s, struct sh_error *err)
{
        struct pod_container_info *i = NULL;
        _cleanup_free_ char *handler = NULL;
        struct be *be = NULL;
        int r;

        r = load(pm, id, &i, &handler, err);
        if (r < 0)
                return r;
        if (i->state == POD_CTR_RUNNING || i->state == POD_CTR_UNKNOWN) {
                r = pod_mgr_backend(pm, handler, &be, err);
                if (r == 0)
                        r = be_container_stop(be, i->id, signal_of(i->spec.stop_signal),
                                              timeout_s < 0           ? 0
                                              : timeout_s > 24 * 3600 ? 24 * 3600
                                                                      : (unsigned)timeout_s,
                                              err);
                if (r == 0)
                        pod_ctr_observe(pm, i->id);
        }
        if (r < 0)
                sh_err_prefix(err, r, "stop container %.12s", i->id);
        pod_container_info_free(i);
        return r;
}

static int ctr_remove(struct pod_mgr *pm, const char *id, struct sh_error *err)
{
        struct pod_container_info *i = NULL;
        _cleanup_free_ char *handler = NULL;
        struct be *be = NULL;
        int r;

        r = load(pm, id, &i, &handler, err);
        if (r == -ENOENT) {
                sh_err_clear(err);
                return 0;
        }
        if (r < 0)
                return r;
        r = pod_mgr_backend(pm, handler, &be, err);
        if (r == 0)
                r = be_container_remove(be, i->id, err);
        if (r == 0)
                forget(pm, i->id);
        if (r < 0)
                sh_err_prefix(err, r, "remove container %.12s", i->id);
        pod_container_info_free(i);
        return r;
}

int pod_container_status(struct pod_mgr *pm, const char *id, struct pod_container_info **ret,
                         struct sh_error *err)
{
        return load(pm, id, ret, NULL, err);
}

static bool matches(const struct pod_container_info *i, const struct pod_container_filter *f)
{
        if (!f)
                return true;
        if (f->id && f->id[0] && strncmp(i->id, f->id, strlen(f->id)) != 0)
                return false;
        if (f->sandbox_id && f->sandbox_id[0] &&
            strncmp(i->sandbox_id, f->sandbox_id, strlen(f->sandbox_id)) != 0)
                return false;
        if (f->has_state && i->state != f->state)
                return false;
        return pod_labels_match(i->spec.labels, i->spec.n_labels, f->labels, f->n_labels);
}

/* Every container (of sandbox @sandbox_id when not NULL), oldest first, from the view. */
static int list_rows(struct pod_mgr *pm, const char *sandbox_id, struct row **ret, size_t *ret_n,
                     struct sh_error *err)
{
        _cleanup_strv_ char **ids = pod_view_ctr_ids(pm, sandbox_id);
        struct row *v;
        size_t n = 0, cnt = 0;

        (void)err;
        if (!ids)
                return -ENOMEM;
        while (ids[cnt])
                cnt++;
        v = calloc(cnt + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t k = 0; k < cnt; k++)
                if (load(pm, ids[k], &v[n].info, &v[n].handler, NULL) == 0)
                        n++; /* one removed meanwhile is left out */
        *ret = v;
        *ret_n = n;
        return 0;
}

static void rows_free(struct row *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                pod_container_info_free(v[i].info);
                free(v[i].handler);
        }
        free(v);
}

struct each_ctr {
        const struct pod_container_filter *f;
        int (*fn)(const struct pod_container_info *i, void *data);
        void *data;
};

static int each_ctr_visit(const struct pod_container_info *i, void *data)
{
        struct each_ctr *w = data;

        return matches(i, w->f) ? w->fn(i, w->data) : 0;
}

int pod_container_each(struct pod_mgr *pm, const struct pod_container_filter *f,
                       int (*fn)(const struct pod_container_info *i, void *data), void *data)
{
        return pod_view_ctr_each(pm, each_ctr_visit, &(struct each_ctr){f, fn, data});
}

struct ctr_list {
        struct pod_container_info **v;
        size_t n, cap;
        bool brief;
};

static int ctr_list_add(const struct pod_container_info *i, void *data)
{
        struct ctr_list *l = data;

        if (l->n + 1 >= l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 16;
                struct pod_container_info **v = realloc(l->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        if ((l->brief ? pod_container_info_copy_brief(i, &l->v[l->n])
                      : pod_container_info_copy(i, &l->v[l->n])) < 0)
                return -ENOMEM;
        l->v[++l->n] = NULL;
        return 0;
}

static int list_copies(struct pod_mgr *pm, const struct pod_container_filter *f, bool brief,
                       struct pod_container_info ***ret, size_t *ret_n)
{
        struct ctr_list l = {.brief = brief};
        int r;

        r = pod_container_each(pm, f, ctr_list_add, &l);
        if (r == 0 && !l.v && !(l.v = calloc(1, sizeof(*l.v))))
                r = -ENOMEM;
        if (r < 0) {
                pod_container_info_list_free(l.v);
                return r;
        }
        *ret = l.v;
        *ret_n = l.n;
        return 0;
}

int pod_container_list(struct pod_mgr *pm, const struct pod_container_filter *f,
                       struct pod_container_info ***ret, size_t *ret_n, struct sh_error *err)
{
        (void)err;
        return list_copies(pm, f, false, ret, ret_n);
}

int pod_container_list_brief(struct pod_mgr *pm, const struct pod_container_filter *f,
                             struct pod_container_info ***ret, size_t *ret_n)
{
        return list_copies(pm, f, true, ret, ret_n);
}

static int ctr_update(struct pod_mgr *pm, const char *id, const struct be_resources *res,
                      struct sh_error *err)
{
        struct pod_container_info *i = NULL;
        _cleanup_free_ char *handler = NULL, *json = NULL;
        struct be *be = NULL;
        int r;

        r = load(pm, id, &i, &handler, err);
        if (r < 0)
                return r;
        if (i->state == POD_CTR_EXITED) {
                r = sh_err(err, -EINVAL, "container %.12s has exited", i->id);
                goto out;
        }
        r = pod_mgr_backend(pm, handler, &be, err);
        if (r == 0)
                r = be_container_update(be, i->id, res, err);
        if (r < 0)
                goto out;
        be_resources_done(&i->spec.resources);
        i->spec.resources = *res;
        json = spec_to_json(&i->spec, &(struct ctr_extra){i->user, i->image_name, i->image_digest});
        memset(&i->spec.resources, 0, sizeof(i->spec.resources)); /* borrowed from @res */
        r = json ? pod_db_run(pm, "UPDATE containers SET spec = ? WHERE id = ?",
                              (const char *[]){json, i->id, NULL}, err)
                 : -ENOMEM;
        if (r == 0)
                pod_view_ctr_set_resources(pm, i->id, res);
out:
        pod_container_info_free(i);
        return r;
}

/*
 * The backend of running container @id, for the calls that need one running: *@ret_id is
 * its full id (malloc'd). -EINVAL when it is not running.
 */
/*
 * Container @id, which must be running (-EINVAL otherwise), and its backend (when @ret_be
 * is not NULL). *@ret owned by the caller.
 */
static int running_info(struct pod_mgr *pm, const char *id, struct pod_container_info **ret,
                        struct be **ret_be, struct sh_error *err)
{
        struct pod_container_info *i = NULL;
        _cleanup_free_ char *handler = NULL;
        int r;

        r = load(pm, id, &i, &handler, err);
        if (r < 0)
                return r;
        if (i->state != POD_CTR_RUNNING)
                r = sh_err(err, -EINVAL, "container %.12s is not running", i->id);
        if (r == 0 && ret_be)
                r = pod_mgr_backend(pm, handler, ret_be, err);
        if (r < 0) {
                pod_container_info_free(i);
                return r;
        }
        *ret = i;
        return 0;
}

static int running(struct pod_mgr *pm, const char *id, char **ret_id, struct be **ret_be,
                   struct sh_error *err)
{
        struct pod_container_info *i = NULL;
        int r = running_info(pm, id, &i, ret_be, err);

        if (r < 0)
                return r;
        *ret_id = TAKE_PTR(i->id);
        pod_container_info_free(i);
        return 0;
}

int pod_container_reopen_log(struct pod_mgr *pm, const char *id, struct sh_error *err)
{
        _cleanup_free_ char *full = NULL;
        struct be *be = NULL;
        int r = running(pm, id, &full, &be, err);

        return r < 0 ? r : be_container_reopen_log(be, full, err);
}

int pod_container_exec_sync(struct pod_mgr *pm, const char *id, const char *const *argv,
                            long long timeout_s, int cancel_fd, size_t max_output,
                            struct be_exec_result *ret, struct sh_error *err)
{
        _cleanup_free_ char *full = NULL;
        struct be *be = NULL;
        int r;

        if (!argv || !argv[0] || !argv[0][0])
                return sh_err(err, -EINVAL, "ExecSync: cmd is required");
        r = running(pm, id, &full, &be, err);
        if (r < 0)
                return r;
        return be_exec_sync(be, full,
                            &(struct be_exec_sync_req){
                                    .argv = argv,
                                    .timeout_ms = timeout_s <= 0 ? 0
                                                  : timeout_s > 24 * 3600
                                                          ? 24 * 3600 * 1000u
                                                          : (unsigned)timeout_s * 1000u,
                                    .cancel_fd = cancel_fd,
                                    .max_output = max_output,
                            },
                            ret, err);
}

int pod_container_exec_stream(struct pod_mgr *pm, const char *id, const char *const *argv, bool tty,
                              bool want_stdin, struct be_exec_stream *ret, struct sh_error *err)
{
        _cleanup_free_ char *full = NULL;
        struct be *be = NULL;
        int r;

        if (!argv || !argv[0] || !argv[0][0])
                return sh_err(err, -EINVAL, "Exec: cmd is required");
        r = running(pm, id, &full, &be, err);
        return r < 0 ? r : be_exec_stream(be, full, argv, tty, want_stdin, ret, err);
}

int pod_container_attach(struct pod_mgr *pm, const char *id, int *ret_fd, bool *ret_tty,
                         bool *ret_stdin, struct sh_error *err)
{
        struct pod_container_info *i = NULL;
        struct be *be = NULL;
        int fd = -1, r = running_info(pm, id, &i, &be, err);

        if (r < 0)
                return r;
        r = be_container_attach(be, i->id, &fd, err);
        if (r == 0) {
                *ret_fd = fd;
                *ret_tty = i->spec.tty;
                *ret_stdin = i->spec.stdin_open;
        }
        pod_container_info_free(i);
        return r;
}

int pod_container_running(struct pod_mgr *pm, const char *id, char **ret_id, struct sh_error *err)
{
        return running(pm, id, ret_id, NULL, err);
}

/* ---------------------------------------------------------------- locked entry points */

/* The locks a change of one container holds: its pod's (shared), then its own. */
struct ctr_locks {
        struct pod_lock *pod, *ctr;
        char id[65]; /* the container's full id */
};

static void ctr_unlock(struct ctr_locks *l)
{
        l->ctr = pod_lock_release(l->ctr);
        l->pod = pod_lock_release(l->pod);
}

/*
 * Takes the locks for a change of container @id (an id or a unique prefix). -ENOENT when
 * there is no such container. The caller loads it again under the locks: it may have been
 * removed while we waited.
 */
static int ctr_lock(struct pod_mgr *pm, const char *id, struct ctr_locks *ret, struct sh_error *err)
{
        struct pod_container_info *i = NULL;
        int r;

        memset(ret, 0, sizeof(*ret));
        r = load(pm, id, &i, NULL, err);
        if (r < 0)
                return r;
        snprintf(ret->id, sizeof(ret->id), "%s", i->id);
        ret->pod = pod_lock_take(pm, 'p', i->sandbox_id, false);
        ret->ctr = ret->pod ? pod_lock_take(pm, 'c', i->id, true) : NULL;
        pod_container_info_free(i);
        if (!ret->ctr) {
                ctr_unlock(ret);
                return -ENOMEM;
        }
        return 0;
}

int pod_container_create(struct pod_mgr *pm, const struct pod_ctr_request *req, char **ret_id,
                         struct sh_error *err)
{
        _cleanup_pod_lock_ struct pod_lock *lock = NULL;
        struct pod_sandbox_info *sb = NULL;
        struct pod_ctr_request full = *req;
        int r;

        /* The pod's lock, shared: a Stop or Remove of the pod waits for this create. */
        r = pod_sandbox_load(pm, req->sandbox_id, &sb, err);
        if (r < 0)
                return r;
        lock = pod_lock_take(pm, 'p', sb->id, false);
        full.sandbox_id = sb->id;
        r = lock ? ctr_create(pm, &full, ret_id, err) : -ENOMEM;
        pod_sandbox_info_free(sb);
        return r;
}

int pod_container_start(struct pod_mgr *pm, const char *id, struct sh_error *err)
{
        struct ctr_locks l;
        int r = ctr_lock(pm, id, &l, err);

        if (r < 0)
                return r;
        r = ctr_start(pm, l.id, err);
        ctr_unlock(&l);
        return r;
}

int pod_container_stop(struct pod_mgr *pm, const char *id, long long timeout_s,
                       struct sh_error *err)
{
        struct ctr_locks l;
        int r = ctr_lock(pm, id, &l, err);

        if (r < 0)
                return r;
        r = ctr_stop(pm, l.id, timeout_s, err);
        ctr_unlock(&l);
        return r;
}

int pod_container_remove(struct pod_mgr *pm, const char *id, struct sh_error *err)
{
        struct ctr_locks l;
        int r = ctr_lock(pm, id, &l, err);

        if (r == -ENOENT) {
                sh_err_clear(err);
                return 0;
        }
        if (r < 0)
                return r;
        r = ctr_remove(pm, l.id, err);
        ctr_unlock(&l);
        return r;
}

int pod_container_update(struct pod_mgr *pm, const char *id, const struct be_resources *res,
                         struct sh_error *err)
{
        struct ctr_locks l;
        int r = ctr_lock(pm, id, &l, err);

        if (r < 0)
                return r;
        r = ctr_update(pm, l.id, res, err);
        ctr_unlock(&l);
        return r;
}

/* ---------------------------------------------------------------- the pod's containers */

int pod_containers_stop_all(struct pod_mgr *pm, const char *sandbox_id, long long timeout_s,
                            struct sh_error *err)
{
        struct row *rows = NULL;
        size_t n = 0;
        int r;

        r = list_rows(pm, sandbox_id, &rows, &n, err);
        for (size_t i = 0; r == 0 && i < n; i++)
                if (rows[i].info->state == POD_CTR_RUNNING ||
                    rows[i].info->state == POD_CTR_UNKNOWN)
                        r = ctr_stop(pm, rows[i].info->id, timeout_s, err);
        rows_free(rows, n);
        return r;
}

int pod_containers_remove_all(struct pod_mgr *pm, const char *sandbox_id, struct sh_error *err)
{
        struct row *rows = NULL;
        size_t n = 0;
        int r;

        r = list_rows(pm, sandbox_id, &rows, &n, err);
        for (size_t i = 0; r == 0 && i < n; i++)
                r = ctr_remove(pm, rows[i].info->id, err);
        rows_free(rows, n);
        return r;
}

void pod_containers_recover(struct pod_mgr *pm)
{
        /* Half-created by a crash: the backend may have some of it. */
        char **ids = pod_db_pairs(pm, "SELECT c.id, s.handler FROM containers c JOIN sandboxes "
                                      "s ON s.id = c.sandbox_id WHERE c.state = 'creating'");

        for (size_t i = 0; ids && ids[i] && ids[i + 1]; i += 2) {
                struct be *be = NULL;

                if (!ids[i] || !ids[i + 1])
                        continue;
                if (pod_mgr_backend(pm, ids[i + 1], &be, NULL) == 0)
                        be_container_remove(be, ids[i], NULL);
                forget(pm, ids[i]);
                sh_log_info("container=%s half-created before a restart: cleaned up", ids[i]);
        }
        sh_strv_free(ids);
}

struct pod_container_info *pod_container_info_free(struct pod_container_info *i)
{
        if (!i)
                return NULL;
        free(i->id);
        free(i->sandbox_id);
        be_container_spec_done(&i->spec);
        free(i->reason);
        free(i->message);
        free(i->user);
        free(i->image_name);
        free(i->image_digest);
        free(i);
        return NULL;
}

void pod_container_info_list_free(struct pod_container_info **l)
{
        for (size_t i = 0; l && l[i]; i++)
                pod_container_info_free(l[i]);
        free(l);
}
