#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <yaml.h>

#include "cleanup.h"
#include "strutil.h"
#include "validate.h"

#define DEF_LISTEN          "unix:///run/runt/runt.sock"
#define DEF_STATE_DIR       "/var/lib/runt"
#define DEF_ROOT_DIR        "/var/lib/runt/root"
#define DEF_RUN_DIR         "/run/runt"
#define DEF_RUNTIME         "lxc"
#define DEF_CNI_CONF_DIR    "/etc/cni/net.d"
#define DEF_REGISTRIES_CONF "/etc/containers/registries.conf"
#define DEF_STREAMING_ADDR  "127.0.0.1"
#define DEF_AUDIT_PATH      "/var/log/runt/audit.log"

#define HANDLER_NAME_MAX  63
#define TIMEOUT_MAX       86400u /* one day; keeps seconds * 1000 far from overflow */
#define PORT_MAX          65535u
#define LOG_LINE_MIN      256u
#define LOG_LINE_MAX      (1024u * 1024u)
#define PIDS_LIMIT_MAX    4194304u /* the kernel's PID_MAX_LIMIT on 64-bit */
#define KEY_PATH_MAX      256 /* "images.registries[3].mirrors[0]"; longer paths are truncated */
#define UNIX_PREFIX       "unix://"
#define DROPIN_DIR_SUFFIX ".d"    /* runt.yaml -> runt.yaml.d/ */
#define DROPIN_SUFFIX     ".yaml" /* the files read there */
#define UNSET_TAG         "!unset"

static const char *const backend_names[] = {"lxc", "microvm", "proxmox", "fake"};

/* Freeing */

static void handler_done(struct runt_handler *h)
{
        free(h->name);
        free(h->backend);
        for (size_t i = 0; i < h->n_options; i++) {
                free(h->option_keys[i]);
                free(h->option_values[i]);
        }
        free(h->option_keys);
        free(h->option_values);
        memset(h, 0, sizeof(*h));
}

static void registry_done(struct runt_registry *r)
{
        free(r->prefix);
        sh_strv_free(r->mirrors);
        memset(r, 0, sizeof(*r));
}

/* An array being built; entries past the filled ones are zeroed, so freeing all n is safe. */
struct handler_vec {
        struct runt_handler *v;
        size_t n;
};

struct registry_vec {
        struct runt_registry *v;
        size_t n;
};

static void handler_vec_done(struct handler_vec *vec)
{
        for (size_t i = 0; vec->v && i < vec->n; i++)
                handler_done(&vec->v[i]);
        free(vec->v);
        vec->v = NULL;
        vec->n = 0;
}

static void registry_vec_done(struct registry_vec *vec)
{
        for (size_t i = 0; vec->v && i < vec->n; i++)
                registry_done(&vec->v[i]);
        free(vec->v);
        vec->v = NULL;
        vec->n = 0;
}

void runt_config_done(struct runt_config *cfg)
{
        if (!cfg)
                return;
        free(cfg->listen);
        free(cfg->state_dir);
        free(cfg->root_dir);
        free(cfg->run_dir);
        free(cfg->log_file);
        free(cfg->default_runtime);
        handler_vec_done(&(struct handler_vec){cfg->handlers, cfg->n_handlers});
        free(cfg->cni_conf_dir);
        sh_strv_free(cfg->cni_bin_dirs);
        registry_vec_done(&(struct registry_vec){cfg->registries, cfg->n_registries});
        free(cfg->registries_conf);
        sh_strv_free(cfg->pinned_images);
        free(cfg->streaming_address);
        free(cfg->metrics_address);
        free(cfg->audit_path);
        memset(cfg, 0, sizeof(*cfg));
}

static void config_donep(struct runt_config *cfg)
{
        runt_config_done(cfg);
}

/* Copying */

/* strdup that keeps NULL. Returns 0 or -ENOMEM. */
static int dup_str(const char *s, char **ret)
{
        char *c = NULL;

        if (s) {
                c = strdup(s);
                if (!c)
                        return -ENOMEM;
        }
        *ret = c;
        return 0;
}

static int strv_dup(char *const *v, char ***ret)
{
        size_t n = 0;

        if (!v) {
                *ret = NULL;
                return 0;
        }
        while (v[n])
                n++;
        _cleanup_strv_ char **c = calloc(n + 1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (dup_str(v[i], &c[i]) < 0)
                        return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

static int handler_copy(const struct runt_handler *src, struct runt_handler *dst)
{
        if (dup_str(src->name, &dst->name) < 0 || dup_str(src->backend, &dst->backend) < 0)
                return -ENOMEM;
        if (src->n_options == 0)
                return 0;
        dst->option_keys = calloc(src->n_options, sizeof(char *));
        dst->option_values = calloc(src->n_options, sizeof(char *));
        if (!dst->option_keys || !dst->option_values)
                return -ENOMEM;
        dst->n_options = src->n_options;
        for (size_t i = 0; i < src->n_options; i++)
                if (dup_str(src->option_keys[i], &dst->option_keys[i]) < 0 ||
                    dup_str(src->option_values[i], &dst->option_values[i]) < 0)
                        return -ENOMEM;
        return 0;
}

/* Deep copy of the @n handlers at @src into *@ret and *@ret_n (written only on success). */
static int handlers_copy(const struct runt_handler *src, size_t n, struct runt_handler **ret,
                         size_t *ret_n)
{
        _cleanup_(handler_vec_done) struct handler_vec vec = {0};

        if (n > 0) {
                vec.v = calloc(n, sizeof(*vec.v));
                if (!vec.v)
                        return -ENOMEM;
                vec.n = n;
                for (size_t i = 0; i < n; i++)
                        if (handler_copy(&src[i], &vec.v[i]) < 0)
                                return -ENOMEM;
        }
        *ret = TAKE_PTR(vec.v);
        *ret_n = vec.n;
        vec.n = 0;
        return 0;
}

static int registries_copy(const struct runt_registry *src, size_t n, struct runt_registry **ret,
                           size_t *ret_n)
{
        _cleanup_(registry_vec_done) struct registry_vec vec = {0};

        if (n > 0) {
                vec.v = calloc(n, sizeof(*vec.v));
                if (!vec.v)
                        return -ENOMEM;
                vec.n = n;
                for (size_t i = 0; i < n; i++) {
                        vec.v[i].insecure = src[i].insecure;
                        if (dup_str(src[i].prefix, &vec.v[i].prefix) < 0 ||
                            strv_dup(src[i].mirrors, &vec.v[i].mirrors) < 0)
                                return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(vec.v);
        *ret_n = vec.n;
        vec.n = 0;
        return 0;
}

/* Deep copy of @src into @ret (written only on success). Returns 0 or -ENOMEM. */
static int config_copy(const struct runt_config *src, struct runt_config *ret)
{
        _cleanup_(config_donep) struct runt_config c = {0};

        c.log_level = src->log_level;
        c.cni_plugin_timeout_s = src->cni_plugin_timeout_s;
        c.pull_timeout_s = src->pull_timeout_s;
        c.streaming_port = src->streaming_port;
        c.streaming_token_ttl_s = src->streaming_token_ttl_s;
        c.streaming_creation_timeout_s = src->streaming_creation_timeout_s;
        c.streaming_idle_timeout_s = src->streaming_idle_timeout_s;
        c.streaming_header_timeout_s = src->streaming_header_timeout_s;
        c.max_log_line = src->max_log_line;
        c.server_workers = src->server_workers;
        c.server_read_workers = src->server_read_workers;
        c.server_max_queued = src->server_max_queued;
        c.server_events_queue = src->server_events_queue;
        c.pids_limit = src->pids_limit;
        c.stats_interval_s = src->stats_interval_s;
        c.stats_fs_interval_s = src->stats_fs_interval_s;
        if (dup_str(src->listen, &c.listen) < 0 || dup_str(src->state_dir, &c.state_dir) < 0 ||
            dup_str(src->root_dir, &c.root_dir) < 0 || dup_str(src->run_dir, &c.run_dir) < 0 ||
            dup_str(src->log_file, &c.log_file) < 0 ||
            dup_str(src->default_runtime, &c.default_runtime) < 0 ||
            dup_str(src->cni_conf_dir, &c.cni_conf_dir) < 0 ||
            strv_dup(src->cni_bin_dirs, &c.cni_bin_dirs) < 0 ||
            dup_str(src->registries_conf, &c.registries_conf) < 0 ||
            strv_dup(src->pinned_images, &c.pinned_images) < 0 ||
            dup_str(src->streaming_address, &c.streaming_address) < 0 ||
            dup_str(src->metrics_address, &c.metrics_address) < 0 ||
            dup_str(src->audit_path, &c.audit_path) < 0)
                return -ENOMEM;

        if (handlers_copy(src->handlers, src->n_handlers, &c.handlers, &c.n_handlers) < 0 ||
            registries_copy(src->registries, src->n_registries, &c.registries, &c.n_registries) < 0)
                return -ENOMEM;
        *ret = c;
        memset(&c, 0, sizeof(c));
        return 0;
}

int runt_config_defaults(struct runt_config *cfg, struct sh_error *err)
{
        static char *const bin_dirs[] = {"/opt/cni/bin", "/usr/lib/cni", NULL};
        static char *const no_pins[] = {NULL};
        static const struct runt_handler lxc = {.name = DEF_RUNTIME, .backend = "lxc"};
        const struct runt_config d = {
                .listen = DEF_LISTEN,
                .state_dir = DEF_STATE_DIR,
                .root_dir = DEF_ROOT_DIR,
                .run_dir = DEF_RUN_DIR,
                .log_level = SH_LOG_INFO,
                .default_runtime = DEF_RUNTIME,
                .handlers = (struct runt_handler *)&lxc,
                .n_handlers = 1,
                .cni_conf_dir = DEF_CNI_CONF_DIR,
                .cni_bin_dirs = (char **)bin_dirs,
                .cni_plugin_timeout_s = 60,
                .pull_timeout_s = 300,
                .registries_conf = DEF_REGISTRIES_CONF,
                .pinned_images = (char **)no_pins,
                .streaming_address = DEF_STREAMING_ADDR,
                .streaming_token_ttl_s = 60,
                .streaming_creation_timeout_s = 30,
                .streaming_idle_timeout_s = 14400,
                .streaming_header_timeout_s = 5,
                .max_log_line = 16384,
                .server_workers = 48,
                .server_read_workers = 4,
                .server_max_queued = 512,
                .server_events_queue = 1000,
                .pids_limit = 4096,
                .stats_interval_s = 10,
                .stats_fs_interval_s = 60,
                .audit_path = DEF_AUDIT_PATH,
        };

        if (config_copy(&d, cfg) < 0)
                return sh_err(err, -ENOMEM, "config defaults: out of memory");
        return 0;
}

const struct runt_handler *runt_config_handler(const struct runt_config *cfg, const char *name)
{
        if (!name || !*name)
                name = cfg->default_runtime;
        if (!name)
                return NULL;
        for (size_t i = 0; i < cfg->n_handlers; i++)
                if (sh_streq(cfg->handlers[i].name, name))
                        return &cfg->handlers[i];
        return NULL;
}

/*
 * Loading: a walk over the libyaml document tree of each file, checking each node against
 * the schema and writing what it sets into a copy of the config, which replaces the
 * caller's only once every file has been read. runt.yaml and its drop-ins go through the
 * same walk: a drop-in is checked as strictly as the main file, and differs only in how
 * `runtimes` applies (merged handler by handler instead of replacing the list).
 */

/* Where a value was set, kept for the checks made after the last file. */
struct origin {
        const char *file;    /* NULL: no file set it */
        size_t line, column; /* 1-based, 0 when unknown (a command-line flag) */
        unsigned seq;        /* the file's place in the load: 0 for runt.yaml, then 1, 2, ... */
};

/* What spans the files of one load. */
struct load_state {
        const struct runt_config *defaults; /* the built-in values, which !unset restores */
        unsigned seq;                       /* of the file being read */
        struct origin default_runtime_at;   /* where default_runtime and runtimes were last */
        struct origin runtimes_at;          /* set, for the cross-check at the end */
};

struct loader {
        const char *file;
        yaml_document_t *doc;
        struct runt_config *cfg; /* the copy being filled */
        struct load_state *st;
        bool dropin;   /* runtimes merge handler by handler instead of replacing the list */
        bool no_marks; /* a command-line flag, not a file: messages name no line */
        struct sh_error *err;
};

enum str_flags {
        STR_NULLABLE = 1 << 0, /* null or "" clears the value to NULL */
        STR_ABSPATH = 1 << 1,  /* must start with '/' */
        STR_HOST = 1 << 2,     /* registry host[:port][/path], no scheme, no spaces */
};

static int vfail_at(struct sh_error *err, const char *file, size_t line, size_t column,
                    const char *path, const char *fmt, va_list ap)
        __attribute__((format(printf, 6, 0)));

/* "FILE:LINE:COLUMN: key 'a.b': what", the location as far as it is known. */
static int vfail_at(struct sh_error *err, const char *file, size_t line, size_t column,
                    const char *path, const char *fmt, va_list ap)
{
        char what[sizeof(err->msg)];
        char where[48] = "";

        vsnprintf(what, sizeof(what), fmt, ap);
        /* Values quoted into the message may hold newlines; keep the message one line. */
        for (char *c = what; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        *c = '?';
        if (line && column)
                snprintf(where, sizeof(where), ":%zu:%zu", line, column);
        else if (line)
                snprintf(where, sizeof(where), ":%zu", line);
        if (path && *path)
                return sh_err(err, -EINVAL, "%s%s: key '%s': %s", file, where, path, what);
        return sh_err(err, -EINVAL, "%s%s: %s", file, where, what);
}

static int fail(struct loader *l, const yaml_node_t *at, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int fail(struct loader *l, const yaml_node_t *at, const char *path, const char *fmt, ...)
{
        size_t line = 0, column = 0;
        va_list ap;
        int r;

        if (at && !l->no_marks) {
                line = at->start_mark.line + 1;
                column = at->start_mark.column + 1;
        }
        va_start(ap, fmt);
        r = vfail_at(l->err, l->file, line, column, path, fmt, ap);
        va_end(ap);
        return r;
}

static int fail_origin(struct sh_error *err, const struct origin *o, const char *path,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail_origin(struct sh_error *err, const struct origin *o, const char *path,
                       const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vfail_at(err, o->file ? o->file : "config", o->line, o->column, path, fmt, ap);
        va_end(ap);
        return r;
}

static int oom(struct loader *l)
{
        return sh_err(l->err, -ENOMEM, "%s: out of memory", l->file);
}

/* Appends @part to @buf, replacing control characters so a message stays one line. */
static void append_sanitized(char *buf, size_t size, const char *part)
{
        size_t len = strlen(buf);

        for (; *part && len + 1 < size; part++) {
                char c = *part;

                if ((unsigned char)c < 0x20 || c == 0x7f)
                        c = '?';
                buf[len++] = c;
        }
        buf[len] = '\0';
}

static void path_key(char *buf, size_t size, const char *parent, const char *key)
{
        buf[0] = '\0';
        append_sanitized(buf, size, parent);
        if (*parent)
                append_sanitized(buf, size, ".");
        append_sanitized(buf, size, key);
}

static void path_index(char *buf, size_t size, const char *parent, size_t i)
{
        char idx[32];

        snprintf(idx, sizeof(idx), "[%zu]", i);
        buf[0] = '\0';
        append_sanitized(buf, size, parent);
        append_sanitized(buf, size, idx);
}

static void record(struct loader *l, struct origin *o, const yaml_node_t *at)
{
        *o = (struct origin){.file = l->file, .seq = l->st->seq};
        if (!l->no_marks) {
                o->line = at->start_mark.line + 1;
                o->column = at->start_mark.column + 1;
        }
}

static const yaml_node_t *node_at(struct loader *l, int index)
{
        return yaml_document_get_node(l->doc, index);
}

static const char *scalar(const yaml_node_t *n)
{
        return (const char *)n->data.scalar.value;
}

/* A value tagged !unset: the key goes back to its built-in default (see check_unset). */
static bool is_unset(const yaml_node_t *n)
{
        return n->tag && strcmp((const char *)n->tag, UNSET_TAG) == 0;
}

/* A plain empty, "~" or "null" scalar (YAML core schema), or an explicit !!null. */
static bool is_null(const yaml_node_t *n)
{
        static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

        if (n->type != YAML_SCALAR_NODE || is_unset(n))
                return false;
        if (n->tag && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0)
                return true;
        if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;
        for (size_t i = 0; i < SH_ARRAY_SIZE(nulls); i++)
                if (strcmp(scalar(n), nulls[i]) == 0)
                        return true;
        return false;
}

static const char *kind_name(const yaml_node_t *n)
{
        if (is_unset(n))
                return UNSET_TAG;
        switch (n->type) {
        case YAML_SCALAR_NODE:
                if (is_null(n))
                        return "null";
                return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? "a scalar"
                                                                       : "a quoted string";
        case YAML_SEQUENCE_NODE:
                return "a list";
        case YAML_MAPPING_NODE:
                return "a mapping";
        case YAML_NO_NODE:
                break;
        }
        return "nothing";
}

static size_t n_pairs(const yaml_node_t *n)
{
        if (n->type != YAML_MAPPING_NODE)
                return 0;
        return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

static size_t n_items(const yaml_node_t *n)
{
        if (n->type != YAML_SEQUENCE_NODE)
                return 0;
        return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static bool has_nul(const yaml_node_t *n)
{
        return strlen(scalar(n)) != n->data.scalar.length;
}

/*
 * Every reader of a value calls this first: the places where !unset may stand (the value of
 * a setting, a section, a handler, a handler's options or one option) take it before.
 */
static int no_unset(struct loader *l, const yaml_node_t *n, const char *path)
{
        if (!is_unset(n))
                return 0;
        return fail(l, n, path,
                    UNSET_TAG " is not allowed here: it stands for the value of a setting, a "
                              "section, a handler, a handler's options or one option");
}

/* An !unset value: the tag alone, with nothing after it. */
static int check_unset(struct loader *l, const yaml_node_t *n, const char *path)
{
        if (n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0)
                return 0;
        return fail(l, n, path, UNSET_TAG " takes no value, got %s",
                    n->type == YAML_SCALAR_NODE     ? "a scalar"
                    : n->type == YAML_SEQUENCE_NODE ? "a list"
                                                    : "a mapping");
}

/*
 * Checks that @n is a mapping (null counts as an empty one) whose keys are distinct,
 * non-empty strings.
 */
static int check_mapping(struct loader *l, const yaml_node_t *n, const char *path)
{
        int r = no_unset(l, n, path);

        if (r < 0)
                return r;
        if (is_null(n))
                return 0;
        if (n->type != YAML_MAPPING_NODE)
                return fail(l, n, path, "expected a mapping, got %s", kind_name(n));
        for (size_t i = 0; i < n_pairs(n); i++) {
                const yaml_node_t *k = node_at(l, n->data.mapping.pairs.start[i].key);
                char sub[KEY_PATH_MAX];

                if (k->type != YAML_SCALAR_NODE || is_null(k) || is_unset(k) || !*scalar(k) ||
                    has_nul(k))
                        return fail(l, k, path, "keys must be non-empty strings, got %s",
                                    kind_name(k));
                for (size_t j = 0; j < i; j++) {
                        const yaml_node_t *prev = node_at(l, n->data.mapping.pairs.start[j].key);

                        if (strcmp(scalar(prev), scalar(k)) == 0) {
                                path_key(sub, sizeof(sub), path, scalar(k));
                                return fail(l, k, sub, "duplicate key (first set at line %zu)",
                                            prev->start_mark.line + 1);
                        }
                }
        }
        return 0;
}

/* Checks that @n is a list (null counts as an empty one). */
static int check_sequence(struct loader *l, const yaml_node_t *n, const char *path)
{
        int r = no_unset(l, n, path);

        if (r < 0)
                return r;
        if (is_null(n) || n->type == YAML_SEQUENCE_NODE)
                return 0;
        return fail(l, n, path, "expected a list, got %s", kind_name(n));
}

static int unknown_key(struct loader *l, const yaml_node_t *k, const char *path, const char *known)
{
        return fail(l, k, path, "unknown key (expected one of: %s)", known);
}

static int check_host(struct loader *l, const yaml_node_t *n, const char *path, const char *s)
{
        if (strstr(s, "://") || strpbrk(s, " \t\r\n"))
                return fail(l, n, path, "'%s' is not host[:port][/path] (no scheme, no spaces)", s);
        return 0;
}

/* Replaces *@field with the string in @n, checked against @flags. */
static int get_string(struct loader *l, const yaml_node_t *n, const char *path, unsigned flags,
                      char **field)
{
        const char *v;
        char *s;
        int r;

        r = no_unset(l, n, path);
        if (r < 0)
                return r;
        if (n->type != YAML_SCALAR_NODE)
                return fail(l, n, path, "expected a string, got %s", kind_name(n));
        v = scalar(n);
        if (has_nul(n))
                return fail(l, n, path, "contains a NUL byte");
        if (is_null(n) || !*v) {
                if (flags & STR_NULLABLE) {
                        free(*field);
                        *field = NULL;
                        return 0;
                }
                if (is_null(n))
                        return fail(l, n, path, "expected a string, got null");
                return fail(l, n, path, "must not be empty");
        }
        if ((flags & STR_ABSPATH) && v[0] != '/')
                return fail(l, n, path, "'%s' is not an absolute path", v);
        if (flags & STR_HOST) {
                r = check_host(l, n, path, v);
                if (r < 0)
                        return r;
        }
        s = strdup(v);
        if (!s)
                return oom(l);
        free(*field);
        *field = s;
        return 0;
}

/* A non-negative decimal number (plain scalar, no sign, no leading zeros) in [min, max]. */
static int get_uint(struct loader *l, const yaml_node_t *n, const char *path, unsigned min,
                    unsigned max, unsigned *field)
{
        unsigned long long v = 0;
        const char *s;
        int r;

        r = no_unset(l, n, path);
        if (r < 0)
                return r;
        if (n->type != YAML_SCALAR_NODE || is_null(n) ||
            n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return fail(l, n, path, "expected a number, got %s", kind_name(n));
        s = scalar(n);
        if (strspn(s, "0123456789") != n->data.scalar.length)
                return fail(l, n, path, "'%s' is not a non-negative decimal number", s);
        if (s[0] == '0' && s[1])
                return fail(l, n, path, "'%s': leading zeros are not allowed", s);
        for (; *s; s++) {
                v = v * 10 + (unsigned long long)(*s - '0');
                if (v > max)
                        break;
        }
        if (v < min || v > max)
                return fail(l, n, path, "%s is out of range (%u..%u)", scalar(n), min, max);
        *field = (unsigned)v;
        return 0;
}

/* true/false as in the YAML 1.2 core schema (yes/no/on/off are not booleans there). */
static int get_bool(struct loader *l, const yaml_node_t *n, const char *path, bool *field)
{
        static const char *const trues[] = {"true", "True", "TRUE"};
        static const char *const falses[] = {"false", "False", "FALSE"};
        int r;

        r = no_unset(l, n, path);
        if (r < 0)
                return r;
        if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
            is_null(n))
                return fail(l, n, path, "expected true or false, got %s", kind_name(n));
        for (size_t i = 0; i < SH_ARRAY_SIZE(trues); i++) {
                if (strcmp(scalar(n), trues[i]) == 0) {
                        *field = true;
                        return 0;
                }
                if (strcmp(scalar(n), falses[i]) == 0) {
                        *field = false;
                        return 0;
                }
        }
        return fail(l, n, path, "expected true or false, got '%s'", scalar(n));
}

static int get_level(struct loader *l, const yaml_node_t *n, const char *path,
                     enum sh_log_level *field)
{
        _cleanup_free_ char *s = NULL;
        int r;

        r = get_string(l, n, path, 0, &s);
        if (r < 0)
                return r;
        if (sh_log_level_parse(s, field) < 0)
                return fail(l, n, path, "'%s' is not a log level (error, warn, info, debug)", s);
        return 0;
}

/* Replaces *@field with the NULL-terminated list of strings in @n, each checked per @flags. */
static int get_strv(struct loader *l, const yaml_node_t *n, const char *path, unsigned flags,
                    char ***field)
{
        _cleanup_strv_ char **v = NULL;
        size_t count;
        int r;

        r = check_sequence(l, n, path);
        if (r < 0)
                return r;
        count = n_items(n);
        v = calloc(count + 1, sizeof(*v));
        if (!v)
                return oom(l);
        for (size_t i = 0; i < count; i++) {
                char sub[KEY_PATH_MAX];

                path_index(sub, sizeof(sub), path, i);
                r = get_string(l, node_at(l, n->data.sequence.items.start[i]), sub,
                               flags & ~(unsigned)STR_NULLABLE, &v[i]);
                if (r < 0)
                        return r;
        }
        sh_strv_free(*field);
        *field = TAKE_PTR(v);
        return 0;
}

static bool is_backend(const char *s)
{
        for (size_t i = 0; i < SH_ARRAY_SIZE(backend_names); i++)
                if (strcmp(s, backend_names[i]) == 0)
                        return true;
        return false;
}

/* NULL if @s is a valid handler name, else what is wrong with it. */
static const char *handler_name_problem(const char *s)
{
        size_t len = strlen(s);

        if (len == 0)
                return "must not be empty";
        if (len > HANDLER_NAME_MAX)
                return "is longer than 63 characters";
        if (strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") != len)
                return "may contain only a-z, 0-9, '.', '_' and '-'";
        if (s[0] == '.' || s[0] == '_' || s[0] == '-')
                return "must start with a letter or digit";
        return NULL;
}

/* Checks of single string settings, after the str_flags ones */

static int check_listen(struct loader *l, const yaml_node_t *v, const char *path, const char *s)
{
        const char *sock = s + strlen(UNIX_PREFIX);

        if (strncmp(s, UNIX_PREFIX, strlen(UNIX_PREFIX)) != 0 || sock[0] != '/')
                return fail(l, v, path, "'%s' is not unix:///absolute/path", s);
        if (strlen(sock) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
                return fail(l, v, path, "socket path is longer than %zu bytes",
                            sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
        return 0;
}

static int check_handler_name(struct loader *l, const yaml_node_t *v, const char *path,
                              const char *s)
{
        const char *problem = handler_name_problem(s);

        if (problem)
                return fail(l, v, path, "handler name '%s' %s", s, problem);
        return 0;
}

static int check_host_port(struct loader *l, const yaml_node_t *v, const char *path, const char *s)
{
        struct sh_error e = {0};
        struct sockaddr_storage sa;
        socklen_t sl;

        if (sh_parse_host_port(s, &sa, &sl, &e) < 0)
                return fail(l, v, path, "%s", e.msg);
        return 0;
}

/* runtimes */

static struct runt_handler *handler_find(struct handler_vec *vec, const char *name)
{
        for (size_t i = 0; i < vec->n; i++)
                if (sh_streq(vec->v[i].name, name))
                        return &vec->v[i];
        return NULL;
}

static void handler_remove(struct handler_vec *vec, struct runt_handler *h)
{
        size_t i = (size_t)(h - vec->v);

        handler_done(h);
        memmove(h, h + 1, (vec->n - i - 1) * sizeof(*h));
        vec->n--;
        memset(&vec->v[vec->n], 0, sizeof(*h));
}

/* Sets option @key of @h to @value, in place if it is there, else after the others. */
static int option_set(struct runt_handler *h, const char *key, const char *value)
{
        _cleanup_free_ char *k = NULL, *v = strdup(value);
        char **keys, **values;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < h->n_options; i++)
                if (strcmp(h->option_keys[i], key) == 0) {
                        free(h->option_values[i]);
                        h->option_values[i] = TAKE_PTR(v);
                        return 0;
                }
        k = strdup(key);
        if (!k)
                return -ENOMEM;
        keys = realloc(h->option_keys, (h->n_options + 1) * sizeof(char *));
        if (!keys)
                return -ENOMEM;
        h->option_keys = keys;
        values = realloc(h->option_values, (h->n_options + 1) * sizeof(char *));
        if (!values)
                return -ENOMEM;
        h->option_values = values;
        keys[h->n_options] = TAKE_PTR(k);
        values[h->n_options] = TAKE_PTR(v);
        h->n_options++;
        return 0;
}

static void option_unset(struct runt_handler *h, const char *key)
{
        for (size_t i = 0; i < h->n_options; i++)
                if (strcmp(h->option_keys[i], key) == 0) {
                        size_t rest = h->n_options - i - 1;

                        free(h->option_keys[i]);
                        free(h->option_values[i]);
                        memmove(&h->option_keys[i], &h->option_keys[i + 1], rest * sizeof(char *));
                        memmove(&h->option_values[i], &h->option_values[i + 1],
                                rest * sizeof(char *));
                        h->n_options--;
                        return;
                }
}

static void options_clear(struct runt_handler *h)
{
        for (size_t i = 0; i < h->n_options; i++) {
                free(h->option_keys[i]);
                free(h->option_values[i]);
        }
        free(h->option_keys);
        free(h->option_values);
        h->option_keys = h->option_values = NULL;
        h->n_options = 0;
}

/* Merges the options mapping @n into @h's options, key by key: a new key goes after the rest. */
static int load_options(struct loader *l, const yaml_node_t *n, const char *path,
                        struct runt_handler *h)
{
        int r;

        r = check_mapping(l, n, path);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_pairs(n); i++) {
                const yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
                const yaml_node_t *k = node_at(l, p->key), *v = node_at(l, p->value);
                char sub[KEY_PATH_MAX];

                path_key(sub, sizeof(sub), path, scalar(k));
                if (is_unset(v)) {
                        r = check_unset(l, v, sub);
                        if (r < 0)
                                return r;
                        option_unset(h, scalar(k));
                        continue;
                }
                if (v->type != YAML_SCALAR_NODE)
                        return fail(l, v, sub, "expected a string, got %s", kind_name(v));
                if (has_nul(v))
                        return fail(l, v, sub, "contains a NUL byte");
                if (option_set(h, scalar(k), is_null(v) ? "" : scalar(v)) < 0)
                        return oom(l);
        }
        return 0;
}

/*
 * One entry of runtimes: @k is the handler name, @n its settings (null = all defaults),
 * merged into @h, which is zeroed for a new handler or holds the one defined before.
 */
static int load_handler(struct loader *l, const yaml_node_t *k, const yaml_node_t *n,
                        const char *path, struct runt_handler *h)
{
        int r;

        if (!h->name) {
                const char *problem = handler_name_problem(scalar(k));

                if (problem)
                        return fail(l, k, path, "handler name %s", problem);
                h->name = strdup(scalar(k));
                if (!h->name)
                        return oom(l);
        }
        r = check_mapping(l, n, path);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_pairs(n); i++) {
                const yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
                const yaml_node_t *key = node_at(l, p->key), *v = node_at(l, p->value);
                char sub[KEY_PATH_MAX];

                path_key(sub, sizeof(sub), path, scalar(key));
                if (strcmp(scalar(key), "backend") == 0) {
                        r = get_string(l, v, sub, 0, &h->backend);
                        if (r < 0)
                                return r;
                        if (!is_backend(h->backend))
                                return fail(l, v, sub,
                                            "unknown backend '%s' (expected lxc, microvm, "
                                            "proxmox or fake)",
                                            h->backend);
                } else if (strcmp(scalar(key), "options") == 0) {
                        if (is_unset(v)) {
                                r = check_unset(l, v, sub);
                                if (r == 0)
                                        options_clear(h);
                        } else {
                                r = load_options(l, v, sub, h);
                        }
                } else {
                        r = unknown_key(l, key, sub, "backend, options");
                }
                if (r < 0)
                        return r;
        }
        if (!h->backend) {
                if (!is_backend(h->name))
                        return fail(l, k, path,
                                    "no backend given and '%s' is not a backend name (lxc, "
                                    "microvm, proxmox, fake)",
                                    h->name);
                h->backend = strdup(h->name);
                if (!h->backend)
                        return oom(l);
        }
        return 0;
}

/*
 * In runt.yaml, runtimes replaces the whole handler list: a handler not listed no longer
 * exists. In a drop-in it is merged into the list so far: a handler named there is
 * changed key by key or added at the end, one given as !unset is removed.
 */
static int load_runtimes(struct loader *l, const yaml_node_t *k, const yaml_node_t *v,
                         const char *path)
{
        _cleanup_(handler_vec_done) struct handler_vec vec = {0};
        const struct runt_config *c = l->cfg;
        size_t cap;
        int r;

        r = check_mapping(l, v, path);
        if (r < 0)
                return r;
        cap = n_pairs(v) + (l->dropin ? c->n_handlers : 0);
        if (cap == 0)
                return fail(l, k, path, "must define at least one handler");
        vec.v = calloc(cap, sizeof(*vec.v));
        if (!vec.v)
                return oom(l);
        for (size_t i = 0; l->dropin && i < c->n_handlers; i++) {
                vec.n++;
                if (handler_copy(&c->handlers[i], &vec.v[i]) < 0)
                        return oom(l);
        }
        for (size_t i = 0; i < n_pairs(v); i++) {
                const yaml_node_pair_t *p = &v->data.mapping.pairs.start[i];
                const yaml_node_t *name = node_at(l, p->key), *val = node_at(l, p->value);
                struct runt_handler *h = handler_find(&vec, scalar(name));
                char sub[KEY_PATH_MAX];

                path_key(sub, sizeof(sub), path, scalar(name));
                if (is_unset(val)) {
                        r = check_unset(l, val, sub);
                        if (r < 0)
                                return r;
                        if (h)
                                handler_remove(&vec, h);
                        continue;
                }
                if (!h)
                        h = &vec.v[vec.n++]; /* zeroed: freed with the rest if it fails */
                r = load_handler(l, name, val, sub, h);
                if (r < 0)
                        return r;
        }
        if (vec.n == 0)
                return fail(l, k, path, "must define at least one handler");
        handler_vec_done(&(struct handler_vec){l->cfg->handlers, l->cfg->n_handlers});
        l->cfg->handlers = TAKE_PTR(vec.v);
        l->cfg->n_handlers = vec.n;
        vec.n = 0;
        return 0;
}

static int reset_runtimes(struct loader *l)
{
        const struct runt_config *d = l->st->defaults;
        struct runt_handler *v;
        size_t n;

        if (handlers_copy(d->handlers, d->n_handlers, &v, &n) < 0)
                return oom(l);
        handler_vec_done(&(struct handler_vec){l->cfg->handlers, l->cfg->n_handlers});
        l->cfg->handlers = v;
        l->cfg->n_handlers = n;
        return 0;
}

/* images.registries */

/* One entry of images.registries; @prev are the @n_prev entries before it. */
static int load_registry(struct loader *l, const yaml_node_t *n, const char *path,
                         const struct runt_registry *prev, size_t n_prev, struct runt_registry *reg)
{
        const yaml_node_t *prefix_at = NULL;
        int r;

        r = check_mapping(l, n, path);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_pairs(n); i++) {
                const yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
                const yaml_node_t *key = node_at(l, p->key), *v = node_at(l, p->value);
                char sub[KEY_PATH_MAX];

                path_key(sub, sizeof(sub), path, scalar(key));
                if (strcmp(scalar(key), "prefix") == 0) {
                        r = get_string(l, v, sub, STR_HOST, &reg->prefix);
                        prefix_at = v;
                } else if (strcmp(scalar(key), "insecure") == 0) {
                        r = get_bool(l, v, sub, &reg->insecure);
                } else if (strcmp(scalar(key), "mirrors") == 0) {
                        r = get_strv(l, v, sub, STR_HOST, &reg->mirrors);
                } else {
                        r = unknown_key(l, key, sub, "prefix, insecure, mirrors");
                }
                if (r < 0)
                        return r;
        }
        if (!reg->prefix)
                return fail(l, n, path, "prefix is required");
        for (size_t i = 0; i < n_prev; i++)
                if (strcmp(prev[i].prefix, reg->prefix) == 0) {
                        char sub[KEY_PATH_MAX];

                        path_key(sub, sizeof(sub), path, "prefix");
                        return fail(l, prefix_at, sub, "registry '%s' is listed twice",
                                    reg->prefix);
                }
        if (!reg->mirrors) {
                reg->mirrors = calloc(1, sizeof(char *));
                if (!reg->mirrors)
                        return oom(l);
        }
        return 0;
}

/* A list, so it replaces the one before as a whole, in a drop-in too. */
static int load_registries(struct loader *l, const yaml_node_t *k, const yaml_node_t *v,
                           const char *path)
{
        _cleanup_(registry_vec_done) struct registry_vec vec = {0};
        int r;

        (void)k;
        r = check_sequence(l, v, path);
        if (r < 0)
                return r;
        vec.n = n_items(v);
        if (vec.n > 0) {
                vec.v = calloc(vec.n, sizeof(*vec.v));
                if (!vec.v)
                        return oom(l);
        }
        for (size_t i = 0; i < vec.n; i++) {
                char sub[KEY_PATH_MAX];

                path_index(sub, sizeof(sub), path, i);
                r = load_registry(l, node_at(l, v->data.sequence.items.start[i]), sub, vec.v, i,
                                  &vec.v[i]);
                if (r < 0)
                        return r;
        }
        registry_vec_done(&(struct registry_vec){l->cfg->registries, l->cfg->n_registries});
        l->cfg->registries = TAKE_PTR(vec.v);
        l->cfg->n_registries = vec.n;
        vec.n = 0;
        return 0;
}

static int reset_registries(struct loader *l)
{
        const struct runt_config *d = l->st->defaults;
        struct runt_registry *v;
        size_t n;

        if (registries_copy(d->registries, d->n_registries, &v, &n) < 0)
                return oom(l);
        registry_vec_done(&(struct registry_vec){l->cfg->registries, l->cfg->n_registries});
        l->cfg->registries = v;
        l->cfg->n_registries = n;
        return 0;
}

/* Printing, with the schema below: each field knows how to print itself. */

struct printer {
        yaml_emitter_t e;
        regex_t number; /* a plain scalar some YAML reader would take for a number */
        bool failed;
};

/* Emits @ev, which the caller has just initialized (@initialized is what that returned). */
static void emit(struct printer *p, yaml_event_t *ev, int initialized)
{
        if (!initialized) {
                p->failed = true;
                return;
        }
        if (p->failed) {
                yaml_event_delete(ev);
                return;
        }
        if (!yaml_emitter_emit(&p->e, ev)) /* the emitter owns @ev either way */
                p->failed = true;
}

static void emit_scalar(struct printer *p, const char *s, yaml_scalar_style_t style)
{
        yaml_event_t ev;

        emit(p, &ev,
             yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1,
                                          style));
}

/*
 * Whether @s, written plain, would be read as something other than a string: null, a
 * boolean or a number, in YAML 1.2 or in 1.1 (yes, on, 0x1f, 1_000, 1:30), so the printed
 * file means the same to any YAML reader.
 */
static bool looks_typed(struct printer *p, const char *s)
{
        static const char *const words[] = {
                "",      "~",  "null", "Null", "NULL", "true", "True", "TRUE", "false", "False",
                "FALSE", "y",  "Y",    "yes",  "Yes",  "YES",  "n",    "N",    "no",    "No",
                "NO",    "on", "On",   "ON",   "off",  "Off",  "OFF",  "<<",   "=",
        };

        for (size_t i = 0; i < SH_ARRAY_SIZE(words); i++)
                if (strcmp(s, words[i]) == 0)
                        return true;
        return regexec(&p->number, s, 0, NULL, 0) == 0;
}

static void emit_plain(struct printer *p, const char *s)
{
        emit_scalar(p, s, YAML_PLAIN_SCALAR_STYLE);
}

static bool has_control(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return true;
        return false;
}

static void emit_str(struct printer *p, const char *s)
{
        yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;

        if (!s) {
                emit_plain(p, "null");
                return;
        }
        if (has_control(s))
                style = YAML_DOUBLE_QUOTED_SCALAR_STYLE; /* escaped: "a\nb" on one line */
        else if (looks_typed(p, s))
                style = YAML_SINGLE_QUOTED_SCALAR_STYLE;
        emit_scalar(p, s, style);
}

static void emit_uint(struct printer *p, unsigned v)
{
        char buf[16];

        snprintf(buf, sizeof(buf), "%u", v);
        emit_plain(p, buf);
}

static void map_start(struct printer *p)
{
        yaml_event_t ev;

        emit(p, &ev,
             yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
}

static void map_end(struct printer *p)
{
        yaml_event_t ev;

        emit(p, &ev, yaml_mapping_end_event_initialize(&ev));
}

static void seq_start(struct printer *p, bool flow)
{
        yaml_event_t ev;

        emit(p, &ev,
             yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  flow ? YAML_FLOW_SEQUENCE_STYLE
                                                       : YAML_BLOCK_SEQUENCE_STYLE));
}

static void seq_end(struct printer *p)
{
        yaml_event_t ev;

        emit(p, &ev, yaml_sequence_end_event_initialize(&ev));
}

/* A list of strings, on one line: [a, b]. */
static void emit_strv(struct printer *p, char *const *v)
{
        seq_start(p, true);
        for (; v && *v; v++)
                emit_str(p, *v);
        seq_end(p);
}

static void print_runtimes(struct printer *p, const struct runt_config *c)
{
        map_start(p);
        for (size_t i = 0; i < c->n_handlers; i++) {
                const struct runt_handler *h = &c->handlers[i];

                emit_str(p, h->name);
                map_start(p);
                emit_plain(p, "backend");
                emit_str(p, h->backend);
                if (h->n_options > 0) {
                        emit_plain(p, "options");
                        map_start(p);
                        for (size_t j = 0; j < h->n_options; j++) {
                                emit_str(p, h->option_keys[j]);
                                emit_str(p, h->option_values[j]);
                        }
                        map_end(p);
                }
                map_end(p);
        }
        map_end(p);
}

static void print_registries(struct printer *p, const struct runt_config *c)
{
        seq_start(p, c->n_registries == 0);
        for (size_t i = 0; i < c->n_registries; i++) {
                const struct runt_registry *r = &c->registries[i];

                map_start(p);
                emit_plain(p, "prefix");
                emit_str(p, r->prefix);
                emit_plain(p, "insecure");
                emit_plain(p, r->insecure ? "true" : "false");
                emit_plain(p, "mirrors");
                emit_strv(p, r->mirrors);
                map_end(p);
        }
        seq_end(p);
}

/* The schema: one table per mapping, a NULL key ends it. */

enum field_kind {
        F_STRING,  /* string checked per .flags, then by .check if set */
        F_UINT,    /* number in [.min, .max] */
        F_LEVEL,   /* log level */
        F_STRV,    /* list of strings checked per .flags, at least .min of them */
        F_SECTION, /* nested mapping described by .sub, merged key by key */
        F_CUSTOM,  /* .load, .reset and .print do it all */
};

/* The settings whose origin the cross-check at the end names. */
enum field_track {
        T_NONE,
        T_DEFAULT_RUNTIME,
        T_RUNTIMES,
};

struct field {
        const char *key;
        enum field_kind kind;
        size_t off; /* of the value in struct runt_config */
        unsigned flags, min, max;
        const struct field *sub;
        enum field_track track;
        int (*check)(struct loader *l, const yaml_node_t *v, const char *path, const char *s);
        int (*load)(struct loader *l, const yaml_node_t *k, const yaml_node_t *v, const char *path);
        int (*reset)(struct loader *l); /* back to the built-in value (!unset) */
        void (*print)(struct printer *p, const struct runt_config *c);
};

#define OFF(m) offsetof(struct runt_config, m)
#define F_STR(k, m, fl)                                                                            \
        {                                                                                          \
                .key = (k), .kind = F_STRING, .off = OFF(m), .flags = (fl)                         \
        }
#define F_STRC(k, m, fl, fn)                                                                       \
        {                                                                                          \
                .key = (k), .kind = F_STRING, .off = OFF(m), .flags = (fl), .check = (fn)          \
        }
#define F_NUM(k, m, lo, hi)                                                                        \
        {                                                                                          \
                .key = (k), .kind = F_UINT, .off = OFF(m), .min = (lo), .max = (hi)                \
        }
#define F_LIST(k, m, fl, lo)                                                                       \
        {                                                                                          \
                .key = (k), .kind = F_STRV, .off = OFF(m), .flags = (fl), .min = (lo)              \
        }
#define F_SUB(k, t)                                                                                \
        {                                                                                          \
                .key = (k), .kind = F_SECTION, .sub = (t)                                          \
        }
#define F_FN(k, name)                                                                              \
        {                                                                                          \
                .key = (k), .kind = F_CUSTOM, .load = load_##name, .reset = reset_##name,          \
                .print = print_##name                                                              \
        }

static const struct field cni_fields[] = {
        F_STR("conf_dir", cni_conf_dir, STR_ABSPATH),
        F_LIST("bin_dirs", cni_bin_dirs, STR_ABSPATH, 1),
        F_NUM("plugin_timeout", cni_plugin_timeout_s, 1, TIMEOUT_MAX),
        {.key = NULL},
};

static const struct field images_fields[] = {
        F_NUM("pull_timeout", pull_timeout_s, 1, TIMEOUT_MAX),
        F_STR("registries_conf", registries_conf, STR_ABSPATH),
        F_FN("registries", registries),
        F_LIST("pinned", pinned_images, 0, 0),
        {.key = NULL},
};

static const struct field streaming_fields[] = {
        F_STR("address", streaming_address, 0),
        F_NUM("port", streaming_port, 0, PORT_MAX),
        F_NUM("token_ttl", streaming_token_ttl_s, 1, 3600),
        F_NUM("stream_creation_timeout", streaming_creation_timeout_s, 1, 3600),
        F_NUM("idle_timeout", streaming_idle_timeout_s, 0, TIMEOUT_MAX),
        F_NUM("header_timeout", streaming_header_timeout_s, 1, 60),
        {.key = NULL},
};

static const struct field metrics_fields[] = {
        F_STRC("address", metrics_address, STR_NULLABLE, check_host_port),
        {.key = NULL},
};

static const struct field audit_fields[] = {
        F_STR("path", audit_path, STR_ABSPATH | STR_NULLABLE),
        {.key = NULL},
};

static const struct field logs_fields[] = {
        F_NUM("max_line", max_log_line, LOG_LINE_MIN, LOG_LINE_MAX),
        {.key = NULL},
};

static const struct field server_fields[] = {
        F_NUM("workers", server_workers, 1, 1024),
        F_NUM("read_workers", server_read_workers, 1, 64),
        F_NUM("max_queued", server_max_queued, 0, 65536),
        F_NUM("events_queue", server_events_queue, 1, 100000),
        {.key = NULL},
};

static const struct field containers_fields[] = {
        F_NUM("pids_limit", pids_limit, 0, PIDS_LIMIT_MAX),
        {.key = NULL},
};

static const struct field stats_fields[] = {
        F_NUM("interval", stats_interval_s, 1, 3600),
        F_NUM("fs_interval", stats_fs_interval_s, 1, 86400),
        {.key = NULL},
};

static const struct field top_fields[] = {
        F_STRC("listen", listen, 0, check_listen),
        F_STR("state_dir", state_dir, STR_ABSPATH),
        F_STR("root_dir", root_dir, STR_ABSPATH),
        F_STR("run_dir", run_dir, STR_ABSPATH),
        {.key = "log_level", .kind = F_LEVEL, .off = OFF(log_level)},
        F_STR("log_file", log_file, STR_ABSPATH | STR_NULLABLE),
        {.key = "default_runtime",
         .kind = F_STRING,
         .off = OFF(default_runtime),
         .check = check_handler_name,
         .track = T_DEFAULT_RUNTIME},
        {.key = "runtimes",
         .kind = F_CUSTOM,
         .load = load_runtimes,
         .reset = reset_runtimes,
         .print = print_runtimes,
         .track = T_RUNTIMES},
        F_SUB("cni", cni_fields),
        F_SUB("images", images_fields),
        F_SUB("streaming", streaming_fields),
        F_SUB("metrics", metrics_fields),
        F_SUB("logs", logs_fields),
        F_SUB("server", server_fields),
        F_SUB("containers", containers_fields),
        F_SUB("stats", stats_fields),
        F_SUB("audit", audit_fields),
        {.key = NULL},
};

/* Puts @f back to its built-in value: what !unset does. */
static int reset_field(struct loader *l, const struct field *f)
{
        const void *from = (const char *)l->st->defaults + f->off;
        void *at = (char *)l->cfg + f->off;

        switch (f->kind) {
        case F_STRING: {
                char *s;

                if (dup_str(*(char *const *)from, &s) < 0)
                        return oom(l);
                free(*(char **)at);
                *(char **)at = s;
                return 0;
        }
        case F_UINT:
                *(unsigned *)at = *(const unsigned *)from;
                return 0;
        case F_LEVEL:
                *(enum sh_log_level *)at = *(const enum sh_log_level *)from;
                return 0;
        case F_STRV: {
                char **v;

                if (strv_dup(*(char **const *)from, &v) < 0)
                        return oom(l);
                sh_strv_free(*(char ***)at);
                *(char ***)at = v;
                return 0;
        }
        case F_SECTION:
                for (const struct field *s = f->sub; s->key; s++) {
                        int r = reset_field(l, s);

                        if (r < 0)
                                return r;
                }
                return 0;
        case F_CUSTOM:
                return f->reset(l);
        }
        return 0;
}

/* A string setting: read, checked, and only then put in place. */
static int load_string(struct loader *l, const struct field *f, const yaml_node_t *v,
                       const char *path, char **field)
{
        _cleanup_free_ char *s = NULL;
        int r;

        r = get_string(l, v, path, f->flags, &s);
        if (r < 0)
                return r;
        if (s && f->check) {
                r = f->check(l, v, path, s);
                if (r < 0)
                        return r;
        }
        free(*field);
        *field = TAKE_PTR(s);
        return 0;
}

static int load_fields(struct loader *l, const yaml_node_t *n, const char *path,
                       const struct field *table)
{
        int r;

        r = check_mapping(l, n, path);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_pairs(n); i++) {
                const yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
                const yaml_node_t *k = node_at(l, p->key), *v = node_at(l, p->value);
                const struct field *f = table;
                void *at;
                char sub[KEY_PATH_MAX];

                path_key(sub, sizeof(sub), path, scalar(k));
                while (f->key && strcmp(f->key, scalar(k)) != 0)
                        f++;
                if (!f->key) {
                        char known[KEY_PATH_MAX] = "";

                        for (f = table; f->key; f++) {
                                if (f != table)
                                        append_sanitized(known, sizeof(known), ", ");
                                append_sanitized(known, sizeof(known), f->key);
                        }
                        return unknown_key(l, k, sub, known);
                }
                at = (char *)l->cfg + f->off;
                if (is_unset(v)) {
                        r = check_unset(l, v, sub);
                        if (r == 0)
                                r = reset_field(l, f);
                } else {
                        switch (f->kind) {
                        case F_STRING:
                                r = load_string(l, f, v, sub, at);
                                break;
                        case F_UINT:
                                r = get_uint(l, v, sub, f->min, f->max, at);
                                break;
                        case F_LEVEL:
                                r = get_level(l, v, sub, at);
                                break;
                        case F_STRV:
                                r = get_strv(l, v, sub, f->flags, at);
                                if (r == 0 && f->min > 0 && !(*(char ***)at)[0])
                                        r = fail(l, v, sub, "must list at least one item");
                                break;
                        case F_SECTION:
                                r = load_fields(l, v, sub, f->sub);
                                break;
                        case F_CUSTOM:
                                r = f->load(l, k, v, sub);
                                break;
                        }
                }
                if (r < 0)
                        return r;
                if (f->track == T_DEFAULT_RUNTIME)
                        record(l, &l->st->default_runtime_at, v);
                else if (f->track == T_RUNTIMES)
                        record(l, &l->st->runtimes_at, k);
        }
        return 0;
}

static void print_fields(struct printer *p, const struct runt_config *c, const struct field *table)
{
        map_start(p);
        for (const struct field *f = table; f->key; f++) {
                const void *at = (const char *)c + f->off;

                emit_plain(p, f->key);
                switch (f->kind) {
                case F_STRING:
                        emit_str(p, *(char *const *)at);
                        break;
                case F_UINT:
                        emit_uint(p, *(const unsigned *)at);
                        break;
                case F_LEVEL:
                        emit_plain(p, sh_log_level_name(*(const enum sh_log_level *)at));
                        break;
                case F_STRV:
                        emit_strv(p, *(char **const *)at);
                        break;
                case F_SECTION:
                        print_fields(p, c, f->sub);
                        break;
                case F_CUSTOM:
                        f->print(p, c);
                        break;
                }
        }
        map_end(p);
}

/* Syntax errors */

struct frame {
        bool is_map;
        bool have_key; /* map: a key was read, its value is in progress */
        size_t index;  /* list: items finished */
        char key[64];
};

#define FRAMES_MAX 16

static void frame_item_done(struct frame *st, size_t depth, const char *value)
{
        struct frame *t;

        if (depth == 0 || depth > FRAMES_MAX)
                return;
        t = &st[depth - 1];
        if (!t->is_map) {
                t->index++;
        } else if (t->have_key) {
                t->have_key = false;
        } else {
                t->have_key = true;
                snprintf(t->key, sizeof(t->key), "%s", value ? value : "?");
        }
}

/*
 * libyaml's document loader does not say where in the tree it failed, so re-read the file
 * with the event parser up to the error offset @stop, tracking the key path on the way.
 */
static void syntax_error_path(FILE *f, size_t stop, char *buf, size_t size)
{
        struct frame st[FRAMES_MAX];
        yaml_parser_t p;
        yaml_event_t ev;
        size_t depth = 0;
        bool done = false;

        buf[0] = '\0';
        rewind(f);
        if (!yaml_parser_initialize(&p))
                return;
        yaml_parser_set_input_file(&p, f);
        while (!done && yaml_parser_parse(&p, &ev)) {
                if (ev.start_mark.index >= stop)
                        done = true;
                switch (done ? YAML_NO_EVENT : ev.type) {
                case YAML_MAPPING_START_EVENT:
                case YAML_SEQUENCE_START_EVENT:
                        if (depth < FRAMES_MAX)
                                st[depth] = (struct frame){
                                        .is_map = ev.type == YAML_MAPPING_START_EVENT,
                                };
                        depth++;
                        break;
                case YAML_MAPPING_END_EVENT:
                case YAML_SEQUENCE_END_EVENT:
                        if (depth > 0)
                                depth--;
                        frame_item_done(st, depth, NULL);
                        break;
                case YAML_SCALAR_EVENT:
                        frame_item_done(st, depth, (const char *)ev.data.scalar.value);
                        break;
                case YAML_ALIAS_EVENT:
                        frame_item_done(st, depth, "*");
                        break;
                case YAML_DOCUMENT_START_EVENT:
                        depth = 0;
                        break;
                case YAML_STREAM_END_EVENT:
                        done = true;
                        break;
                case YAML_NO_EVENT:
                case YAML_STREAM_START_EVENT:
                case YAML_DOCUMENT_END_EVENT:
                        break;
                }
                yaml_event_delete(&ev);
        }
        yaml_parser_delete(&p);

        if (depth > FRAMES_MAX)
                depth = FRAMES_MAX;
        if (depth > 0 && !st[0].is_map)
                return; /* a top-level list is refused anyway; "[0]" names no key */
        for (size_t i = 0; i < depth; i++) {
                if (st[i].is_map) {
                        if (!st[i].have_key)
                                break;
                        if (buf[0])
                                append_sanitized(buf, size, ".");
                        append_sanitized(buf, size, st[i].key);
                } else if (i + 1 < depth) {
                        char idx[32];

                        snprintf(idx, sizeof(idx), "[%zu]", st[i].index);
                        append_sanitized(buf, size, idx);
                }
        }
}

static size_t line_of_offset(FILE *f, size_t offset)
{
        size_t line = 1;
        int c;

        rewind(f);
        for (size_t i = 0; i < offset && (c = getc(f)) != EOF; i++)
                if (c == '\n')
                        line++;
        return line;
}

static int yaml_error(const char *file, const yaml_parser_t *p, FILE *f, struct sh_error *err)
{
        char path[KEY_PATH_MAX];
        char context[128] = "";

        switch (p->error) {
        case YAML_MEMORY_ERROR:
                return sh_err(err, -ENOMEM, "%s: out of memory", file);
        case YAML_READER_ERROR:
                if (ferror(f))
                        return sh_err(err, -EIO, "%s: read error", file);
                return sh_err(err, -EINVAL, "%s:%zu: %s", file,
                              line_of_offset(f, p->problem_offset), p->problem);
        case YAML_NO_ERROR:
        case YAML_SCANNER_ERROR:
        case YAML_PARSER_ERROR:
        case YAML_COMPOSER_ERROR:
        case YAML_WRITER_ERROR:
        case YAML_EMITTER_ERROR:
                break;
        }
        if (p->context)
                snprintf(context, sizeof(context), " (%s at line %zu)", p->context,
                         p->context_mark.line + 1);
        syntax_error_path(f, p->problem_mark.index, path, sizeof(path));
        if (path[0])
                return sh_err(err, -EINVAL, "%s:%zu:%zu: key '%s': YAML syntax error: %s%s", file,
                              p->problem_mark.line + 1, p->problem_mark.column + 1, path,
                              p->problem ? p->problem : "unknown", context);
        return sh_err(err, -EINVAL, "%s:%zu:%zu: YAML syntax error: %s%s", file,
                      p->problem_mark.line + 1, p->problem_mark.column + 1,
                      p->problem ? p->problem : "unknown", context);
}

static void yaml_parser_deletep(yaml_parser_t *p)
{
        yaml_parser_delete(p);
}

static void yaml_document_deletep(yaml_document_t *d)
{
        yaml_document_delete(d);
}

/* Reads the file @path into @cfg (the working copy), as runt.yaml or as a drop-in. */
static int load_file(struct runt_config *cfg, const char *path, bool dropin, struct load_state *st,
                     struct sh_error *err)
{
        _cleanup_(yaml_parser_deletep) yaml_parser_t parser = {0};
        _cleanup_(yaml_document_deletep) yaml_document_t doc = {0};
        _cleanup_(yaml_document_deletep) yaml_document_t extra = {0};
        _cleanup_fclose_ FILE *f = NULL;
        struct loader l = {
                .file = path, .doc = &doc, .cfg = cfg, .st = st, .dropin = dropin, .err = err};
        const yaml_node_t *root;
        struct stat sb;
        int r;

        {
                /* A drop-in is opened without blocking and must be a regular file: a FIFO
                 * named *.yaml in the directory must not hang the start. The main file is
                 * whatever the command line names (a pipe from the shell, say). */
                int fd = open(path, O_RDONLY | O_CLOEXEC | (dropin ? O_NONBLOCK : 0));

                if (fd < 0) {
                        r = -errno;
                        return sh_err(err, r, "%s: %s", path, strerror(-r));
                }
                if (fstat(fd, &sb) < 0) {
                        r = -errno;
                        close(fd);
                        return sh_err(err, r, "%s: %s", path, strerror(-r));
                }
                if (S_ISDIR(sb.st_mode) || (dropin && !S_ISREG(sb.st_mode))) {
                        close(fd);
                        return S_ISDIR(sb.st_mode)
                                       ? sh_err(err, -EISDIR, "%s: is a directory", path)
                                       : sh_err(err, -EINVAL, "%s: not a regular file", path);
                }
                f = fdopen(fd, "re");
                if (!f) {
                        r = -errno;
                        close(fd);
                        return sh_err(err, r, "%s: %s", path, strerror(-r));
                }
        }

        if (!yaml_parser_initialize(&parser))
                return oom(&l);
        yaml_parser_set_input_file(&parser, f);
        if (!yaml_parser_load(&parser, &doc) || !yaml_parser_load(&parser, &extra))
                return yaml_error(path, &parser, f, err);
        root = yaml_document_get_root_node(&extra);
        if (root)
                return fail(&l, root, NULL, "only one YAML document is allowed");

        /* An empty file, or one with only comments, leaves everything as it was. */
        root = yaml_document_get_root_node(&doc);
        if (!root || is_null(root))
                return 0;
        if (root->type != YAML_MAPPING_NODE)
                return fail(&l, root, NULL, "the top level must be a mapping, got %s",
                            kind_name(root));
        return load_fields(&l, root, "", top_fields);
}

/* The check that spans the files: default_runtime names a handler that is defined. */
static int check_default_runtime(const struct runt_config *c, const struct load_state *st,
                                 struct sh_error *err)
{
        const struct origin *dr = &st->default_runtime_at, *rt = &st->runtimes_at;

        if (!c->default_runtime || runt_config_handler(c, c->default_runtime))
                return 0;
        /* Blame the later of the two: the file that changed the picture last. */
        if (dr->file && (!rt->file || dr->seq >= rt->seq))
                return fail_origin(err, dr, "default_runtime",
                                   "handler '%s' is not defined in runtimes", c->default_runtime);
        return fail_origin(err, rt, "default_runtime",
                           "handler '%s' (the default) is not defined in runtimes; define it or "
                           "set default_runtime",
                           c->default_runtime);
}

static int dropin_filter(const struct dirent *de)
{
        size_t len = strlen(de->d_name), suffix = strlen(DROPIN_SUFFIX);

        return de->d_name[0] != '.' && len > suffix &&
               strcmp(de->d_name + len - suffix, DROPIN_SUFFIX) == 0;
}

/* Byte order of the names, whatever the locale (alphasort() would use strcoll()). */
static int dropin_compare(const struct dirent **a, const struct dirent **b)
{
        return strcmp((*a)->d_name, (*b)->d_name);
}

/*
 * The drop-ins in @dir: the paths of its entries named *.yaml, hidden ones left out, in
 * byte order of the names. A missing @dir has none.
 */
static int list_dropins(const char *dir, char ***ret, struct sh_error *err)
{
        _cleanup_strv_ char **paths = NULL;
        struct dirent **entries = NULL;
        int n, r = 0;

        n = scandir(dir, &entries, dropin_filter, dropin_compare);
        if (n < 0) {
                r = -errno;
                if (r != -ENOENT)
                        return sh_err(err, r, "%s: %s", dir, strerror(-r));
                n = 0;
                r = 0;
        }
        paths = calloc((size_t)n + 1, sizeof(*paths));
        for (int i = 0; i < n; i++) {
                if (paths && !(paths[i] = sh_path_join(dir, entries[i]->d_name)))
                        r = -ENOMEM;
                free(entries[i]);
        }
        free(entries);
        if (!paths || r < 0)
                return sh_err(err, -ENOMEM, "%s: out of memory", dir);
        *ret = TAKE_PTR(paths);
        return 0;
}

/*
 * @path over @cfg and, with @dropins, the files in @path.d/ over the result, into a copy
 * that replaces @cfg only when all of them were good.
 */
static int load_files(struct runt_config *cfg, const char *path, bool missing_ok, bool dropins,
                      struct sh_error *err)
{
        _cleanup_(config_donep) struct runt_config next = {0};
        _cleanup_(config_donep) struct runt_config defaults = {0};
        _cleanup_strv_ char **files = NULL;
        _cleanup_free_ char *dir = NULL;
        struct load_state st = {.defaults = &defaults};
        int r;

        r = runt_config_defaults(&defaults, err);
        if (r < 0)
                return r;
        if (config_copy(cfg, &next) < 0)
                return sh_err(err, -ENOMEM, "%s: out of memory", path);
        r = load_file(&next, path, false, &st, err);
        if (r == -ENOENT && missing_ok) {
                sh_err_clear(err);
                r = 0;
        }
        if (r < 0)
                return r;
        if (dropins) {
                dir = sh_strdup_printf("%s" DROPIN_DIR_SUFFIX, path);
                if (!dir)
                        return sh_err(err, -ENOMEM, "%s: out of memory", path);
                r = list_dropins(dir, &files, err);
                if (r < 0)
                        return r;
                for (size_t i = 0; files[i]; i++) {
                        st.seq = (unsigned)i + 1;
                        r = load_file(&next, files[i], true, &st, err);
                        if (r < 0)
                                return r;
                }
        }
        /* Made here, as the origins it names point into @files. */
        r = check_default_runtime(&next, &st, err);
        if (r < 0)
                return r;

        runt_config_done(cfg);
        *cfg = next;
        memset(&next, 0, sizeof(next));
        return 0;
}

int runt_config_load(struct runt_config *cfg, const char *path, struct sh_error *err)
{
        return load_files(cfg, path, false, false, err);
}

int runt_config_load_all(struct runt_config *cfg, const char *path, bool missing_ok,
                         struct sh_error *err)
{
        return load_files(cfg, path, missing_ok, true, err);
}

int runt_config_set(struct runt_config *cfg, const char *key, const char *value, const char *origin,
                    struct sh_error *err)
{
        _cleanup_(config_donep) struct runt_config next = {0};
        _cleanup_(config_donep) struct runt_config defaults = {0};
        _cleanup_(yaml_document_deletep) yaml_document_t doc = {0};
        struct load_state st = {.defaults = &defaults};
        struct loader l = {
                .file = origin, .doc = &doc, .cfg = &next, .st = &st, .no_marks = true, .err = err};
        int m, k, v, r;

        /* A one-key document, read by the same walk as a file: the same checks apply. */
        if (!yaml_document_initialize(&doc, NULL, NULL, NULL, 1, 1))
                return oom(&l);
        m = yaml_document_add_mapping(&doc, NULL, YAML_BLOCK_MAPPING_STYLE);
        k = yaml_document_add_scalar(&doc, NULL, (yaml_char_t *)key, -1, YAML_PLAIN_SCALAR_STYLE);
        if (!m || !k)
                return oom(&l);
        /* Quoted, so "null" or "~" is that text. libyaml refuses only bad UTF-8 (or no memory). */
        v = yaml_document_add_scalar(&doc, NULL, (yaml_char_t *)value, -1,
                                     YAML_DOUBLE_QUOTED_SCALAR_STYLE);
        if (!v)
                return sh_err(err, -EINVAL, "%s: the value is not valid UTF-8", origin);
        if (!yaml_document_append_mapping_pair(&doc, m, k, v))
                return oom(&l);

        r = runt_config_defaults(&defaults, err);
        if (r < 0)
                return r;
        if (config_copy(cfg, &next) < 0)
                return oom(&l);
        r = load_fields(&l, yaml_document_get_root_node(&doc), "", top_fields);
        if (r < 0)
                return r;
        r = check_default_runtime(&next, &st, err);
        if (r < 0)
                return r;

        runt_config_done(cfg);
        *cfg = next;
        memset(&next, 0, sizeof(next));
        return 0;
}

/* The emitter's output, gathered in memory. */
struct outbuf {
        char *data;
        size_t len, cap;
};

static int out_write(void *data, unsigned char *buffer, size_t size)
{
        struct outbuf *o = data;

        if (o->cap - o->len <= size) {
                size_t cap = o->cap ? o->cap : 4096;
                char *n;

                while (cap - o->len <= size)
                        cap *= 2;
                n = realloc(o->data, cap);
                if (!n)
                        return 0;
                o->data = n;
                o->cap = cap;
        }
        memcpy(o->data + o->len, buffer, size);
        o->len += size;
        o->data[o->len] = '\0';
        return 1;
}

/* Numbers of YAML 1.2 and 1.1: 12, -1.5e3, .5, 0x1f, 0o17, 0b101, 1_000, 1:30, .inf, .nan. */
#define NUMBER_RE                                                                                  \
        "^([-+]?([0-9][0-9_]*(\\.[0-9_]*)?([eE][-+]?[0-9]+)?|\\.[0-9][0-9_]*([eE][-+]?[0-9]+)?|"   \
        "0[xXoObB][0-9a-fA-F_]+|[0-9][0-9_]*(:[0-5]?[0-9])+(\\.[0-9_]*)?|\\.(inf|Inf|INF))|"       \
        "\\.(nan|NaN|NAN))$"

int runt_config_format(const struct runt_config *cfg, char **ret_text, struct sh_error *err)
{
        struct printer p = {0};
        struct outbuf out = {0};
        yaml_event_t ev;
        int r = 0;

        if (regcomp(&p.number, NUMBER_RE, REG_EXTENDED | REG_NOSUB) != 0)
                return sh_err(err, -ENOMEM, "config: out of memory");
        if (!yaml_emitter_initialize(&p.e)) {
                regfree(&p.number);
                return sh_err(err, -ENOMEM, "config: out of memory");
        }
        yaml_emitter_set_output(&p.e, out_write, &out);
        yaml_emitter_set_unicode(&p.e, 1);
        yaml_emitter_set_indent(&p.e, 2);
        yaml_emitter_set_width(&p.e, -1); /* no folded lines */
        emit(&p, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
        emit(&p, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
        print_fields(&p, cfg, top_fields);
        emit(&p, &ev, yaml_document_end_event_initialize(&ev, 1));
        emit(&p, &ev, yaml_stream_end_event_initialize(&ev));
        if (!p.failed && !yaml_emitter_flush(&p.e))
                p.failed = true;
        if (p.failed) {
                if (p.e.error == YAML_EMITTER_ERROR)
                        r = sh_err(err, -EINVAL, "config: cannot write it as YAML: %s",
                                   p.e.problem ? p.e.problem : "unknown");
                else if (p.e.error == YAML_NO_ERROR)
                        r = sh_err(err, -EINVAL, "config: a value is not valid UTF-8");
                else
                        r = sh_err(err, -ENOMEM, "config: out of memory");
        }
        yaml_emitter_delete(&p.e);
        regfree(&p.number);
        if (r < 0) {
                free(out.data);
                return r;
        }
        *ret_text = out.data;
        return 0;
}
