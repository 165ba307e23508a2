/*
 * Fetching an image with skopeo: `skopeo copy docker://REF dir:DIR`, argv only. The dir:
 * transport keeps the manifest bytes as the registry served them, so the manifest digest
 * runt records is the registry's. Credentials go through a 0600 auth file that lives only
 * for the copy; mirrors from runt.yaml are tried in order before the registry itself.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#define SH_LOG_MODULE "imagemgr"
#include "cleanup.h"
#include "exec.h"
#include "imagemgr-pull.h"
#include "log.h"
#include "metrics.h"
#include "sha256.h"
#include "strutil.h"

#define DEFAULT_REGISTRIES_CONF "/etc/containers/registries.conf"
#define DEFAULT_POLICY          "/etc/containers/policy.json"
#define PROGRESS_LOG_EVERY_NS   (5ull * 1000000000ull)

/* Does @name ("host/path") start with registry prefix @prefix at a component boundary? */
static bool prefix_matches(const char *name, const char *prefix)
{
        size_t n = strlen(prefix);

        return strncmp(name, prefix, n) == 0 && (name[n] == '\0' || name[n] == '/');
}

/* The runt.yaml registry entry with the longest prefix matching @name, or NULL. */
static const struct runt_registry *find_registry(const struct runt_config *cfg, const char *name)
{
        const struct runt_registry *best = NULL;

        for (size_t i = 0; i < cfg->n_registries; i++) {
                const struct runt_registry *r = &cfg->registries[i];

                if (prefix_matches(name, r->prefix) &&
                    (!best || strlen(r->prefix) > strlen(best->prefix)))
                        best = r;
        }
        return best;
}

void img_locations_done(struct img_location *locs, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(locs[i].ref);
                free(locs[i].host);
        }
        free(locs);
}

static int add_location(struct img_location *locs, size_t *n, const struct runt_config *cfg,
                        const char *name, const char *suffix, bool inherit_insecure)
{
        const struct runt_registry *own = find_registry(cfg, name);
        const char *slash = strchr(name, '/');

        locs[*n].ref = sh_strdup_printf("%s%s", name, suffix);
        locs[*n].host = strndup(name, slash ? (size_t)(slash - name) : strlen(name));
        if (!locs[*n].ref || !locs[*n].host) {
                free(locs[*n].ref);
                free(locs[*n].host);
                return -ENOMEM;
        }
        locs[*n].insecure = inherit_insecure || (own && own->insecure);
        (*n)++;
        return 0;
}

int img_locations(const struct runt_config *cfg, const struct img_ref *ref,
                  struct img_location **ret, size_t *ret_n)
{
        const struct runt_registry *reg = find_registry(cfg, ref->name);
        _cleanup_free_ char *suffix = NULL;
        struct img_location *locs;
        size_t n = 0, max = 1;
        int r;

        suffix = ref->digest ? sh_strdup_printf("@%s", ref->digest)
                             : sh_strdup_printf(":%s", ref->tag);
        if (!suffix)
                return -ENOMEM;
        for (size_t i = 0; reg && reg->mirrors && reg->mirrors[i]; i++)
                max++;
        locs = calloc(max, sizeof(*locs));
        if (!locs)
                return -ENOMEM;
        for (size_t i = 0; reg && reg->mirrors && reg->mirrors[i]; i++) {
                /* The mirror stands in for the prefix; the rest of the name follows it. */
                _cleanup_free_ char *name =
                        sh_strdup_printf("%s%s", reg->mirrors[i], ref->name + strlen(reg->prefix));

                if (!name || (r = add_location(locs, &n, cfg, name, suffix, reg->insecure)) < 0) {
                        img_locations_done(locs, n);
                        return -ENOMEM;
                }
        }
        r = add_location(locs, &n, cfg, ref->name, suffix, false);
        if (r < 0) {
                img_locations_done(locs, n);
                return r;
        }
        *ret = locs;
        *ret_n = n;
        return 0;
}

/* "https://host/v1/" -> "host": server_address as the kubelet may send it. */
static void bare_host(const char *in, char *out, size_t size)
{
        const char *p = strstr(in, "://");
        size_t n;

        p = p ? p + 3 : in;
        n = strcspn(p, "/");
        snprintf(out, size, "%.*s", (int)n, p);
}

bool img_auth_empty(const struct img_auth *a)
{
        return !a || ((!a->username || !a->username[0]) && (!a->password || !a->password[0]) &&
                      (!a->auth || !a->auth[0]) && (!a->identity_token || !a->identity_token[0]));
}

int img_auth_file(const struct img_auth *a, const char *host, const char *path,
                  struct sh_error *err)
{
        json_object *root, *auths, *entry;
        char server[256];
        const char *txt;
        _cleanup_close_ int fd = -EBADF;
        size_t len;
        int r = 0;

        /* Credentials for another registry are not handed to this one (mirrors). */
        if (a->server_address && a->server_address[0]) {
                bare_host(a->server_address, server, sizeof(server));
                if (strcmp(server, host) != 0 &&
                    !(strcmp(host, "docker.io") == 0 && strcmp(server, "index.docker.io") == 0))
                        return 0;
        }
        root = json_object_new_object();
        auths = json_object_new_object();
        entry = json_object_new_object();
        json_object_object_add(root, "auths", auths);
        json_object_object_add(auths, host, entry);
        if (a->auth && a->auth[0]) {
                json_object_object_add(entry, "auth", json_object_new_string(a->auth));
        } else if (a->username && a->username[0]) {
                _cleanup_free_ char *plain =
                        sh_strdup_printf("%s:%s", a->username, a->password ? a->password : "");
                _cleanup_free_ char *b64 = NULL;

                if (!plain) {
                        json_object_put(root);
                        return -ENOMEM;
                }
                b64 = malloc(4 * ((strlen(plain) + 2) / 3) + 1);
                if (!b64) {
                        explicit_bzero(plain, strlen(plain));
                        json_object_put(root);
                        return -ENOMEM;
                }
                sh_base64_encode(plain, strlen(plain), b64);
                explicit_bzero(plain, strlen(plain));
                json_object_object_add(entry, "auth", json_object_new_string(b64));
                explicit_bzero(b64, strlen(b64));
        }
        if (a->identity_token && a->identity_token[0])
                json_object_object_add(entry, "identitytoken",
                                       json_object_new_string(a->identity_token));
        txt = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
        len = strlen(txt);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                r = sh_err(err, -errno, "create auth file: %s", strerror(errno));
        } else if (write(fd, txt, len) != (ssize_t)len) {
                r = sh_err(err, -EIO, "write auth file");
                unlink(path);
        }
        /* json-c keeps the text in the object: wipe it before it goes back to malloc. */
        explicit_bzero((char *)txt, len);
        json_object_put(root);
        return r < 0 ? r : 1;
}

struct watch_state {
        const struct img_copy_opts *o;
        const char *dir;
        const char *ref;
        const atomic_bool *stopping;
        unsigned long long stall_ns;
        unsigned long long last_change;
        unsigned long long start;
        unsigned long long last_log;
        unsigned long long bytes;
        unsigned long long bytes_logged;  /* at the last progress line */
        unsigned long long bytes_counted; /* added to o->bytes_total so far */
        int why; /* the watcher's reason to stop: -ETIMEDOUT or -ECANCELED */
};

/* Bytes in the files of @dir: skopeo writes each blob there as it downloads it. */
static unsigned long long dir_bytes(const char *dir)
{
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        unsigned long long total = 0;
        DIR *d;
        struct dirent *de;

        if (fd < 0)
                return 0;
        d = fdopendir(fd);
        if (!d)
                return 0;
        fd = -EBADF; /* the DIR owns it now */
        while ((de = readdir(d))) {
                struct stat st;

                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISREG(st.st_mode))
                        total += (unsigned long long)st.st_size;
        }
        closedir(d);
        return total;
}

static size_t count_lines_with(const char *s, size_t len, const char *what)
{
        size_t n = 0, wl = strlen(what);

        for (const char *p = s; (p = memmem(p, len - (size_t)(p - s), what, wl)); p += wl)
                n++;
        return n;
}

/* Adds what arrived since the last call to the bytes counter (the files only grow). */
static void count_bytes(struct watch_state *w, unsigned long long bytes)
{
        if (bytes > w->bytes_counted) {
                sh_counter_add(w->o->bytes_total, bytes - w->bytes_counted);
                w->bytes_counted = bytes;
        }
}

static int pull_watch(void *data, const char *out, size_t out_len, const char *errb, size_t err_len)
{
        struct watch_state *w = data;
        unsigned long long now = sh_now_ns(), bytes = dir_bytes(w->dir);

        (void)errb;
        (void)err_len;
        if (w->o->tick)
                w->o->tick(w->o->tick_data);
        if (w->stopping && atomic_load(w->stopping)) {
                w->why = -ECANCELED;
                return w->why;
        }
        count_bytes(w, bytes);
        if (bytes != w->bytes) {
                w->bytes = bytes;
                w->last_change = now;
        } else if (now - w->last_change >= w->stall_ns) {
                w->why = -ETIMEDOUT;
                return w->why;
        }
        /*
         * Progress of a long pull, at info level on purpose (an exception to STYLE R3 that
         * the operators asked for): a pull can take minutes with nothing else in the log,
         * and this line is the only sign that it moves. At most one line per pull every
         * PROGRESS_LOG_EVERY_NS; short pulls log none. The rate is over the last interval.
         */
        if (now - w->last_log >= PROGRESS_LOG_EVERY_NS) {
                unsigned long long dt = now - w->last_log;
                unsigned long long db = bytes > w->bytes_logged ? bytes - w->bytes_logged : 0;

                sh_log_info("pull ref=%s bytes=%llu rate_bytes_per_s=%llu seconds=%llu "
                            "blobs_started=%zu",
                            w->ref, bytes, (unsigned long long)((double)db * 1e9 / (double)dt),
                            (now - w->start) / 1000000000ull,
                            count_lines_with(out, out_len, "Copying blob"));
                w->last_log = now;
                w->bytes_logged = bytes;
        }
        return 0;
}

/* The "msg" skopeo's last fatal line carries, or its last non-empty stderr line. */
static void skopeo_reason(const char *stderr_text, char *out, size_t size)
{
        const char *m = strstr(stderr_text, "msg=\"");
        const char *line, *end;

        if (m) {
                m += 5;
                end = strstr(m, "\"\n");
                if (!end)
                        end = m + strlen(m);
                snprintf(out, size, "%.*s", (int)(end - m), m);
                return;
        }
        end = stderr_text + strlen(stderr_text);
        while (end > stderr_text && (end[-1] == '\n' || end[-1] == ' '))
                end--;
        line = end;
        while (line > stderr_text && line[-1] != '\n')
                line--;
        snprintf(out, size, "%.*s", (int)(end - line), line);
        if (!out[0])
                snprintf(out, size, "skopeo failed");
}

static bool has(const char *s, const char *what)
{
        return strcasestr(s, what) != NULL;
}

/*
 * True if @s holds the HTTP status @code as a word of its own: not a part of a longer
 * number, nor a port (":40163" of a registry address must not read as 401).
 */
static bool has_status(const char *s, const char *code)
{
        size_t n = strlen(code);

        for (const char *p = strstr(s, code); p; p = strstr(p + 1, code)) {
                char before = p > s ? p[-1] : ' ', after = p[n];

                if (!isdigit((unsigned char)before) && before != ':' && before != '.' &&
                    !isdigit((unsigned char)after))
                        return true;
        }
        return false;
}

/* Maps skopeo's complaint to an errno the CRI edge turns into a status. */
static int classify(const char *reason)
{
        if (has(reason, "digest did not match") || has(reason, "digest mismatch"))
                return -EUCLEAN;
        if (has(reason, "unauthorized") || has(reason, "authentication required") ||
            has(reason, "denied") || has_status(reason, "401"))
                return -EACCES;
        if (has(reason, "manifest unknown") || has(reason, "name unknown") ||
            has(reason, "not found") || has_status(reason, "404"))
                return -ENOENT;
        if (has(reason, "connection refused") || has(reason, "no such host") ||
            has(reason, "i/o timeout") || has(reason, "network is unreachable") ||
            has(reason, "dial tcp") || has(reason, "server gave http response") ||
            has(reason, "connection reset") || has(reason, "tls:") || has(reason, "x509:") ||
            strstr(reason, "EOF"))
                return -ECONNREFUSED;
        return -EIO;
}

int img_skopeo_copy(const struct img_copy_opts *o, struct sh_error *err)
{
        _cleanup_free_ char *src = sh_strdup_printf("docker://%s", o->loc->ref);
        _cleanup_free_ char *dst = sh_strdup_printf("dir:%s", o->dest_dir);
        const char *argv[24];
        struct sh_exec_result res = {0};
        struct watch_state w = {
                .o = o,
                .dir = o->dest_dir,
                .ref = o->loc->ref,
                .stopping = o->stopping,
                .stall_ns = (unsigned long long)o->stall_timeout_s * 1000000000ull,
        };
        struct sh_exec_opts eo = {
                .argv = argv,
                .timeout_ms = 0,
                .max_output = 1 << 20,
                .watch = pull_watch,
                .watch_data = &w,
                .watch_interval_ms = o->watch_interval_ms ? o->watch_interval_ms : 500,
        };
        char reason[400];
        size_t n = 0;
        int r;

        if (!src || !dst)
                return -ENOMEM;
        argv[n++] = o->skopeo ? o->skopeo : "skopeo";
        if (access(DEFAULT_POLICY, F_OK) < 0)
                argv[n++] = "--insecure-policy"; /* no trust policy on this host: accept */
        argv[n++] = "--tmpdir";
        argv[n++] = o->tmp_dir;
        /* skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF; its (hidden) global flag works. */
        if (o->registries_conf && strcmp(o->registries_conf, DEFAULT_REGISTRIES_CONF) != 0 &&
            access(o->registries_conf, R_OK) == 0) {
                argv[n++] = "--registries-conf";
                argv[n++] = o->registries_conf;
        }
        argv[n++] = "copy";
        argv[n++] = "--retry-times";
        argv[n++] = "1";
        if (o->loc->insecure)
                argv[n++] = "--src-tls-verify=false";
        if (o->auth_file) {
                argv[n++] = "--src-authfile";
                argv[n++] = o->auth_file;
        }
        argv[n++] = src;
        argv[n++] = dst;
        argv[n] = NULL;

        w.start = w.last_change = w.last_log = sh_now_ns();
        r = sh_exec(&eo, &res, err);
        count_bytes(&w, dir_bytes(o->dest_dir)); /* what came after the last check */
        if (r == -ENOENT && !res.err)
                return sh_err(err, r, "skopeo is not installed (%s)", argv[0]);
        if (w.why == -ETIMEDOUT) {
                sh_exec_result_done(&res);
                return sh_err(err, -ETIMEDOUT, "pull %s from %s: no progress for %u s, cancelled",
                              o->loc->ref, o->loc->host, o->stall_timeout_s);
        }
        if (w.why == -ECANCELED) {
                sh_exec_result_done(&res);
                return sh_err(err, -ECANCELED, "pull %s: runtd is stopping", o->loc->ref);
        }
        if (r < 0) {
                sh_exec_result_done(&res);
                return r;
        }
        if (res.exit_code != 0) {
                skopeo_reason(res.err ? res.err : "", reason, sizeof(reason));
                r = classify(reason);
                sh_exec_result_done(&res);
                return sh_err(err, r, "pull %s from %s: %s", o->loc->ref, o->loc->host, reason);
        }
        sh_log_debug("pull ref=%s copied bytes=%llu", o->loc->ref, dir_bytes(o->dest_dir));
        sh_exec_result_done(&res);
        return 0;
}
