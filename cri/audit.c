/*
 * The audit log: one JSON line per mutating CRI call (docs/audit.md).
 *
 * The table below says which methods are audited and what of their request and answer goes
 * into the line, as field paths resolved through the protobuf-c descriptors, so the table
 * is data and cri_audit_check_table() proves every path against the generated code. Client
 * strings are escaped to valid JSON (invalid UTF-8 becomes U+FFFD) and cut after
 * AUDIT_STR_MAX bytes, so one line stays small whatever a request holds. The write is one
 * write(2) on an O_APPEND fd: lines of concurrent calls land whole, one after the other.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SH_LOG_MODULE "audit"
#include "audit.h"
#include "cleanup.h"
#include "cri-internal.h"
#include "log.h"
#include "strutil.h"

/* Bytes of a client string kept (ids are 64, names at most 253); the message's. */
#define AUDIT_STR_MAX 256
#define AUDIT_MSG_MAX 1024
/* Ports of a PortForward listed, at most. */
#define AUDIT_PORTS_MAX 32

struct cri_audit {
        char *path;
        /* Held shared by every line's write, alone by a reopen while it swaps fd. */
        pthread_rwlock_t lock;
        int fd;
        atomic_bool failing;        /* the last write failed: logged once until one goes out */
        atomic_ulong lost;          /* lines lost since failing turned true */
        pthread_mutex_t reopen_mtx; /* one reopen at a time */
};

/* ------------------------------------------------------------------ what is logged */

enum audit_src {
        FROM_REQ,
        FROM_RESP,
};

enum audit_kind {
        AUDIT_STRING, /* a string field: "key":"value" */
        AUDIT_ARGV,   /* a command: "key":argv[0] and "argc":n; the arguments are not logged */
        AUDIT_INTS,   /* a repeated int32: "key":[1,2] */
};

struct audit_field {
        const char *key;
        enum audit_src src;
        const char *path; /* "config.metadata.name": fields of nested messages */
        enum audit_kind kind;
};

#define AUDIT_FIELDS_MAX 6

struct audit_spec {
        const char *method;
        struct audit_field f[AUDIT_FIELDS_MAX];
};

#define REQ(k, p)                                                                                  \
        {                                                                                          \
                (k), FROM_REQ, (p), AUDIT_STRING                                                   \
        }
#define RESP(k, p)                                                                                 \
        {                                                                                          \
                (k), FROM_RESP, (p), AUDIT_STRING                                                  \
        }
#define CONTAINER REQ("container_id", "container_id")
#define POD       REQ("pod_id", "pod_sandbox_id")

/*
 * Every mutating method of RuntimeService and ImageService. Reads (List*, *Status, stats,
 * Version, RuntimeConfig, ImageFsInfo, the Stream* forms, GetContainerEvents) are not here:
 * test_audit checks that the dispatch table has no other method that changes anything.
 * PullImage's auth and an exec's arguments never appear (docs/audit.md says why).
 */
static const struct audit_spec specs[] = {
        {"RunPodSandbox",
         {RESP("pod_id", "pod_sandbox_id"), REQ("pod_namespace", "config.metadata.namespace"),
          REQ("pod_name", "config.metadata.name"), REQ("pod_uid", "config.metadata.uid"),
          REQ("runtime_handler", "runtime_handler")}},
        {"StopPodSandbox", {POD}},
        {"RemovePodSandbox", {POD}},
        {"UpdatePodSandboxResources", {POD}},
        {"CreateContainer",
         {POD, RESP("container_id", "container_id"), REQ("container_name", "config.metadata.name"),
          REQ("image", "config.image.image"),
          REQ("pod_namespace", "sandbox_config.metadata.namespace"),
          REQ("pod_name", "sandbox_config.metadata.name")}},
        {"StartContainer", {CONTAINER}},
        {"StopContainer", {CONTAINER}},
        {"RemoveContainer", {CONTAINER}},
        {"UpdateContainerResources", {CONTAINER}},
        {"ReopenContainerLog", {CONTAINER}},
        {"CheckpointContainer", {CONTAINER}},
        {"ExecSync", {CONTAINER, {"cmd", FROM_REQ, "cmd", AUDIT_ARGV}}},
        {"Exec", {CONTAINER, {"cmd", FROM_REQ, "cmd", AUDIT_ARGV}}},
        {"Attach", {CONTAINER}},
        {"PortForward", {POD, {"ports", FROM_REQ, "port", AUDIT_INTS}}},
        {"PullImage",
         {REQ("image", "image.image"), RESP("image_ref", "image_ref"),
          REQ("pod_namespace", "sandbox_config.metadata.namespace"),
          REQ("pod_name", "sandbox_config.metadata.name")}},
        {"RemoveImage", {REQ("image", "image.image")}},
        {"UpdateRuntimeConfig", {REQ("pod_cidr", "runtime_config.network_config.pod_cidr")}},
};

static const struct audit_spec *spec_of(const struct cri_method *m)
{
        if (!m)
                return NULL;
        for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
                if (strcmp(specs[i].method, m->name) == 0)
                        return &specs[i];
        return NULL;
}

bool cri_audit_wants(const struct cri_method *m)
{
        return spec_of(m) != NULL;
}

/*
 * The field @path names in @m: its descriptor in *@ret_fd and the address of its value, or
 * NULL when @m or a message on the way is absent, or the path names nothing.
 */
static const void *field_at(const ProtobufCMessage *m, const char *path,
                            const ProtobufCFieldDescriptor **ret_fd)
{
        char part[64];

        while (m) {
                const char *dot = strchr(path, '.');
                size_t n = dot ? (size_t)(dot - path) : strlen(path);
                const ProtobufCFieldDescriptor *fd;

                if (n >= sizeof(part))
                        return NULL;
                memcpy(part, path, n);
                part[n] = '\0';
                fd = protobuf_c_message_descriptor_get_field_by_name(m->descriptor, part);
                if (!fd)
                        return NULL;
                if (!dot) {
                        *ret_fd = fd;
                        return (const char *)m + fd->offset;
                }
                if (fd->type != PROTOBUF_C_TYPE_MESSAGE || fd->label == PROTOBUF_C_LABEL_REPEATED)
                        return NULL;
                m = *(ProtobufCMessage *const *)((const char *)m + fd->offset);
                path = dot + 1;
        }
        return NULL;
}

/* ------------------------------------------------------------------ JSON */

struct jbuf {
        char *p;
        size_t len, cap;
        bool oom;
};

static void jb_add(struct jbuf *b, const char *s, size_t n)
{
        if (b->oom)
                return;
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 512;
                char *p;

                while (cap < b->len + n + 1)
                        cap *= 2;
                p = realloc(b->p, cap);
                if (!p) {
                        b->oom = true;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void jb_puts(struct jbuf *b, const char *s)
{
        jb_add(b, s, strlen(s));
}

static void jb_printf(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jb_printf(struct jbuf *b, const char *fmt, ...)
{
        char tmp[128];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n > 0)
                jb_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Length of the valid UTF-8 sequence at @s (at most @n bytes), 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
        uint32_t cp;
        size_t len;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf) {
                len = 2;
                cp = s[0] & 0x1f;
        } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                len = 3;
                cp = s[0] & 0x0f;
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                len = 4;
                cp = s[0] & 0x07;
        } else {
                return 0;
        }
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        /* Overlong forms, UTF-16 surrogates and beyond U+10FFFF are not UTF-8. */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

/* @s as a JSON string, its first @max bytes at most (then "…" marks the cut). */
static void jb_str(struct jbuf *b, const char *s, size_t max)
{
        const unsigned char *u = (const unsigned char *)(s ? s : "");
        size_t n = strlen((const char *)u), i = 0;
        bool cut = n > max;

        if (cut)
                n = max;
        jb_add(b, "\"", 1);
        while (i < n) {
                unsigned char c = u[i];
                size_t k;

                if (c == '"' || c == '\\') {
                        jb_add(b, "\\", 1);
                        jb_add(b, (const char *)&u[i], 1);
                        i++;
                } else if (c < 0x20 || c == 0x7f) {
                        jb_printf(b, "\\u%04x", c);
                        i++;
                } else if ((k = utf8_len(&u[i], n - i)) > 0) {
                        jb_add(b, (const char *)&u[i], k);
                        i += k;
                } else {
                        jb_puts(b, "\\ufffd");
                        i++;
                }
        }
        if (cut)
                jb_puts(b, "\\u2026");
        jb_add(b, "\"", 1);
}

static void jb_key(struct jbuf *b, const char *key)
{
        jb_puts(b, ",\"");
        jb_puts(b, key);
        jb_puts(b, "\":");
}

static void field_json(struct jbuf *b, const struct audit_field *f, const ProtobufCMessage *req,
                       const ProtobufCMessage *resp)
{
        const ProtobufCFieldDescriptor *fd = NULL;
        const void *v = field_at(f->src == FROM_REQ ? req : resp, f->path, &fd);
        size_t n = 0;

        if (v && fd->label == PROTOBUF_C_LABEL_REPEATED)
                n = *(const size_t *)((const char *)v - fd->offset + fd->quantifier_offset);
        jb_key(b, f->key);
        switch (f->kind) {
        case AUDIT_STRING:
                jb_str(b, v && fd->type == PROTOBUF_C_TYPE_STRING ? *(char *const *)v : "",
                       AUDIT_STR_MAX);
                return;
        case AUDIT_ARGV:
                if (!v || fd->type != PROTOBUF_C_TYPE_STRING)
                        n = 0;
                jb_str(b, n ? (*(char **const *)v)[0] : "", AUDIT_STR_MAX);
                jb_key(b, "argc");
                jb_printf(b, "%zu", n);
                return;
        case AUDIT_INTS:
                jb_puts(b, "[");
                if (v && fd->type == PROTOBUF_C_TYPE_INT32)
                        for (size_t i = 0; i < n && i < AUDIT_PORTS_MAX; i++)
                                jb_printf(b, "%s%d", i ? "," : "", (*(int32_t *const *)v)[i]);
                jb_puts(b, "]");
                return;
        }
}

int cri_audit_format(const struct cri_method *m, const struct cri_peer *peer,
                     const ProtobufCMessage *req, const ProtobufCMessage *resp, int code,
                     const char *msg, long long real_ns, long long dur_ns, char **ret_line,
                     size_t *ret_len)
{
        const struct audit_spec *spec = spec_of(m);
        struct jbuf b = {0};
        time_t sec = (time_t)(real_ns / 1000000000LL);
        struct tm tm;
        char ts[64];

        if (!gmtime_r(&sec, &tm) || strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
                snprintf(ts, sizeof(ts), "1970-01-01T00:00:00");
        jb_printf(&b, "{\"time\":\"%s.%06lldZ\",\"method\":", ts, real_ns % 1000000000LL / 1000);
        jb_str(&b, m ? m->name : "", AUDIT_STR_MAX);
        if (peer && peer->known)
                jb_printf(&b, ",\"uid\":%u,\"gid\":%u,\"pid\":%d", (unsigned)peer->uid,
                          (unsigned)peer->gid, (int)peer->pid);
        else
                jb_puts(&b, ",\"uid\":null,\"gid\":null,\"pid\":null");
        for (size_t i = 0; spec && i < AUDIT_FIELDS_MAX && spec->f[i].key; i++)
                field_json(&b, &spec->f[i], req, resp);
        jb_key(&b, "code");
        jb_str(&b, cri_status_name((grpc_status_code)code), AUDIT_STR_MAX);
        jb_key(&b, "message");
        jb_str(&b, msg, AUDIT_MSG_MAX);
        jb_printf(&b, ",\"duration_us\":%lld}\n", dur_ns > 0 ? dur_ns / 1000 : 0);
        if (b.oom) {
                free(b.p);
                return -ENOMEM;
        }
        *ret_line = b.p;
        *ret_len = b.len;
        return 0;
}

/* ------------------------------------------------------------------ the file */

static int audit_open(const char *path, struct sh_error *err)
{
        _cleanup_free_ char *dir = strdup(path);
        _cleanup_close_ int fd = -1;
        char *slash;
        struct stat st;
        int r;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                r = sh_mkdir_p(dir, 0700);
                if (r < 0)
                        return sh_err(err, r, "audit log: create directory '%s': %s", dir,
                                      strerror(-r));
        }
        /* O_NONBLOCK: a FIFO put there must not hang the open; it is refused below. */
        fd = open(path,
                  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK,
                  0600);
        if (fd < 0)
                return sh_err(err, -errno, "audit log: open '%s': %s", path,
                              errno == ELOOP ? "it is a symlink" : strerror(errno));
        if (fstat(fd, &st) < 0)
                return sh_err(err, -errno, "audit log: stat '%s': %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return sh_err(err, -EINVAL, "audit log: '%s' is not a regular file", path);
        if (st.st_uid != geteuid())
                return sh_err(err, -EPERM, "audit log: '%s' is owned by uid %u, not by runtd's %u",
                              path, (unsigned)st.st_uid, (unsigned)geteuid());
        if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) < 0)
                return sh_err(err, -errno, "audit log: chmod 0600 '%s': %s", path, strerror(errno));
        return TAKE_FD(fd);
}

int cri_audit_new(const char *path, struct cri_audit **ret, struct sh_error *err)
{
        struct cri_audit *a;
        int fd;

        if (!path || path[0] != '/')
                return sh_err(err, -EINVAL, "audit log: '%s' is not an absolute path",
                              path ? path : "");
        fd = audit_open(path, err);
        if (fd < 0)
                return fd;
        a = calloc(1, sizeof(*a));
        if (!a || !(a->path = strdup(path))) {
                free(a);
                close(fd);
                return sh_err(err, -ENOMEM, "audit log: out of memory");
        }
        a->fd = fd;
        pthread_rwlock_init(&a->lock, NULL);
        pthread_mutex_init(&a->reopen_mtx, NULL);
        atomic_init(&a->failing, false);
        atomic_init(&a->lost, 0);
        *ret = a;
        return 0;
}

struct cri_audit *cri_audit_free(struct cri_audit *a)
{
        if (!a)
                return NULL;
        if (a->fd >= 0)
                close(a->fd);
        pthread_rwlock_destroy(&a->lock);
        pthread_mutex_destroy(&a->reopen_mtx);
        free(a->path);
        free(a);
        return NULL;
}

int cri_audit_reopen(struct cri_audit *a, struct sh_error *err)
{
        int fd, old;

        if (!a)
                return 0;
        pthread_mutex_lock(&a->reopen_mtx);
        fd = audit_open(a->path, err);
        if (fd >= 0) {
                pthread_rwlock_wrlock(&a->lock);
                old = a->fd;
                a->fd = fd;
                pthread_rwlock_unlock(&a->lock);
                close(old);
        }
        pthread_mutex_unlock(&a->reopen_mtx);
        return fd < 0 ? fd : 0;
}

/* Writes all of @line (a short write, as on a nearly full disk, goes on where it stopped). */
static int write_line(int fd, const char *line, size_t len)
{
        while (len > 0) {
                ssize_t w = write(fd, line, len);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                if (w == 0)
                        return -EIO;
                line += w;
                len -= (size_t)w;
        }
        return 0;
}

void cri_audit_call(struct cri_audit *a, const struct cri_method *m, const struct cri_peer *peer,
                    const ProtobufCMessage *req, const ProtobufCMessage *resp, int code,
                    const char *msg, long long dur_ns)
{
        _cleanup_free_ char *line = NULL;
        struct timespec now;
        size_t len = 0;
        int r;

        if (!a)
                return;
        clock_gettime(CLOCK_REALTIME, &now);
        r = cri_audit_format(m, peer, req, resp, code, msg,
                             (long long)now.tv_sec * 1000000000LL + now.tv_nsec, dur_ns, &line,
                             &len);
        if (r == 0) {
                pthread_rwlock_rdlock(&a->lock);
                r = write_line(a->fd, line, len);
                pthread_rwlock_unlock(&a->lock);
        }
        if (r < 0) {
                atomic_fetch_add(&a->lost, 1);
                /* Logged once, not per call: a full disk would otherwise flood runtd's log. */
                if (!atomic_exchange(&a->failing, true))
                        sh_log_error_errno(r,
                                           "path=%s rpc=%s writing the audit log failed: %m; "
                                           "calls go on, unaudited, and further failures are "
                                           "not logged until a line is written again",
                                           a->path, m ? m->name : "?");
                return;
        }
        if (atomic_load(&a->failing) && atomic_exchange(&a->failing, false))
                sh_log_warn("path=%s lines_lost=%lu the audit log is written again", a->path,
                            atomic_exchange(&a->lost, 0));
}

/* ------------------------------------------------------------------ the unit test's check */

/* Whether @path names a field of the message type @d, of @kind. */
static bool path_ok(const ProtobufCMessageDescriptor *d, const char *path, enum audit_kind kind)
{
        char part[64];

        for (;;) {
                const char *dot = strchr(path, '.');
                size_t n = dot ? (size_t)(dot - path) : strlen(path);
                const ProtobufCFieldDescriptor *fd;

                if (n >= sizeof(part))
                        return false;
                memcpy(part, path, n);
                part[n] = '\0';
                fd = protobuf_c_message_descriptor_get_field_by_name(d, part);
                if (!fd)
                        return false;
                if (!dot) {
                        bool rep = fd->label == PROTOBUF_C_LABEL_REPEATED;

                        switch (kind) {
                        case AUDIT_STRING:
                                return !rep && fd->type == PROTOBUF_C_TYPE_STRING;
                        case AUDIT_ARGV:
                                return rep && fd->type == PROTOBUF_C_TYPE_STRING;
                        case AUDIT_INTS:
                                return rep && fd->type == PROTOBUF_C_TYPE_INT32;
                        }
                        return false;
                }
                if (fd->type != PROTOBUF_C_TYPE_MESSAGE || fd->label == PROTOBUF_C_LABEL_REPEATED)
                        return false;
                d = fd->descriptor;
                path = dot + 1;
        }
}

int cri_audit_check_table(struct sh_error *err)
{
        for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
                const struct audit_spec *s = &specs[i];
                const struct cri_method *m = NULL;

                for (size_t k = 0; k < cri_method_count() && !m; k++)
                        if (strcmp(cri_method_at(k)->name, s->method) == 0)
                                m = cri_method_at(k);
                if (!m)
                        return sh_err(err, -EINVAL,
                                      "audited method %s is not in the dispatch table", s->method);
                for (size_t k = 0; k < AUDIT_FIELDS_MAX && s->f[k].key; k++) {
                        const struct audit_field *f = &s->f[k];

                        if (!path_ok(f->src == FROM_REQ ? m->req : m->resp, f->path, f->kind))
                                return sh_err(err, -EINVAL,
                                              "%s: field '%s' (%s of the %s) "
                                              "names no such field",
                                              s->method, f->key, f->path,
                                              f->src == FROM_REQ ? "request" : "response");
                }
        }
        return 0;
}
