/*
 * The pod agent protocol (proto.h): frames, the frame reader, TLV building and reading,
 * and the records both ends share. libc only: the static guest agent links this file too.
 * Everything here parses bytes from the other end, which is not trusted: every length is
 * checked against what is there before it is used.
 */
#include "proto.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AG_ATTR_HDR 6 /* u16 tag, u32 len */
#define AG_BUF_MAX  ((size_t)AG_HDR_SIZE + AG_MAX_PAYLOAD)

static void put_be16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
        return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- frames ---- */

void ag_hdr_encode(const struct ag_hdr *h, uint8_t out[AG_HDR_SIZE])
{
        out[0] = h->version;
        out[1] = h->kind;
        put_be16(out + 2, h->op);
        put_be32(out + 4, h->stream);
        put_be32(out + 8, h->id);
        put_be32(out + 12, h->len);
}

/* The most payload a frame of @kind may carry; 0 with *@ok false for an unknown kind. */
static uint32_t kind_max(uint8_t kind, int *ok)
{
        *ok = 1;
        switch (kind) {
        case AG_K_REQ:
        case AG_K_RESP:
        case AG_K_EVENT:
                return AG_MAX_PAYLOAD;
        case AG_K_DATA:
                return AG_MAX_DATA;
        case AG_K_WINDOW:
                return 4;
        case AG_K_CLOSE:
                return 0;
        default:
                *ok = 0;
                return 0;
        }
}

int ag_hdr_decode(const uint8_t *buf, size_t n, struct ag_hdr *ret)
{
        struct ag_hdr h;
        int ok;

        if (n < AG_HDR_SIZE)
                return -EAGAIN;
        h.version = buf[0];
        h.kind = buf[1];
        h.op = get_be16(buf + 2);
        h.stream = get_be32(buf + 4);
        h.id = get_be32(buf + 8);
        h.len = get_be32(buf + 12);
        if (h.version != AG_VERSION)
                return -EPROTO;
        if (h.len > kind_max(h.kind, &ok) || !ok)
                return -EPROTO;
        *ret = h;
        return 0;
}

void ag_reader_init(struct ag_reader *r)
{
        memset(r, 0, sizeof(*r));
}

void ag_reader_done(struct ag_reader *r)
{
        free(r->buf);
        memset(r, 0, sizeof(*r));
}

int ag_reader_feed(struct ag_reader *r, const void *data, size_t n)
{
        if (!n)
                return 0;
        /* What was handed out may go now: compact before growing. */
        if (r->consumed) {
                memmove(r->buf, r->buf + r->consumed, r->len - r->consumed);
                r->len -= r->consumed;
                r->consumed = 0;
        }
        if (n > SIZE_MAX - r->len)
                return -ENOMEM;
        if (r->len + n > r->cap) {
                size_t cap = r->cap ? r->cap : 4096;
                uint8_t *b;

                while (cap < r->len + n) {
                        if (cap > SIZE_MAX / 2)
                                return -ENOMEM;
                        cap *= 2;
                }
                b = realloc(r->buf, cap);
                if (!b)
                        return -ENOMEM;
                r->buf = b;
                r->cap = cap;
        }
        memcpy(r->buf + r->len, data, n);
        r->len += n;
        return 0;
}

int ag_reader_next(struct ag_reader *r, struct ag_hdr *ret_hdr, const uint8_t **ret_payload)
{
        size_t avail = r->len - r->consumed;
        struct ag_hdr h;
        int rc;

        rc = ag_hdr_decode(r->buf ? r->buf + r->consumed : NULL, avail, &h);
        if (rc == -EAGAIN)
                return 0;
        if (rc < 0)
                return rc;
        if (avail - AG_HDR_SIZE < h.len)
                return 0;
        *ret_hdr = h;
        *ret_payload = r->buf + r->consumed + AG_HDR_SIZE;
        r->consumed += AG_HDR_SIZE + (size_t)h.len;
        return 1;
}

/* ---- building ---- */

void ag_buf_init(struct ag_buf *b)
{
        memset(b, 0, sizeof(*b));
}

void ag_buf_done(struct ag_buf *b)
{
        free(b->data);
        memset(b, 0, sizeof(*b));
}

void ag_buf_reset(struct ag_buf *b)
{
        b->len = 0;
        b->err = 0;
}

/* Room for @n more bytes at the end: a pointer to them, or NULL with the sticky error set. */
static uint8_t *buf_grow(struct ag_buf *b, size_t n)
{
        uint8_t *p;

        if (b->err)
                return NULL;
        if (n > AG_BUF_MAX || b->len > AG_BUF_MAX - n) {
                b->err = -EMSGSIZE;
                return NULL;
        }
        if (b->len + n > b->cap) {
                size_t cap = b->cap ? b->cap : 256;

                while (cap < b->len + n)
                        cap *= 2;
                p = realloc(b->data, cap);
                if (!p) {
                        b->err = -ENOMEM;
                        return NULL;
                }
                b->data = p;
                b->cap = cap;
        }
        p = b->data + b->len;
        b->len += n;
        return p;
}

void ag_frame_begin(struct ag_buf *b, enum ag_kind kind, uint16_t op, uint32_t stream, uint32_t id)
{
        struct ag_hdr h = {
                .version = AG_VERSION,
                .kind = (uint8_t)kind,
                .op = op,
                .stream = stream,
                .id = id,
        };
        uint8_t *p;

        ag_buf_reset(b);
        p = buf_grow(b, AG_HDR_SIZE);
        if (p)
                ag_hdr_encode(&h, p);
}

int ag_frame_end(struct ag_buf *b)
{
        uint32_t max;
        size_t len;
        int ok;

        if (b->err)
                return b->err;
        if (b->len < AG_HDR_SIZE)
                return b->err = -EINVAL;
        len = b->len - AG_HDR_SIZE;
        max = kind_max(b->data[1], &ok);
        if (!ok)
                return b->err = -EINVAL;
        if (len > max)
                return b->err = -EMSGSIZE;
        put_be32(b->data + 12, (uint32_t)len);
        return 0;
}

static void put_attr(struct ag_buf *b, uint16_t tag, const void *p, size_t n)
{
        uint8_t *d;

        if (n > UINT32_MAX) {
                if (!b->err)
                        b->err = -EMSGSIZE;
                return;
        }
        if (n > SIZE_MAX - AG_ATTR_HDR) {
                if (!b->err)
                        b->err = -EMSGSIZE;
                return;
        }
        d = buf_grow(b, AG_ATTR_HDR + n);
        if (!d)
                return;
        put_be16(d, tag);
        put_be32(d + 2, (uint32_t)n);
        if (n)
                memcpy(d + AG_ATTR_HDR, p, n);
}

void ag_put_u64(struct ag_buf *b, uint16_t tag, int64_t v)
{
        uint64_t u = (uint64_t)v;
        uint8_t d[8];

        for (int i = 7; i >= 0; i--) {
                d[i] = (uint8_t)u;
                u >>= 8;
        }
        put_attr(b, tag, d, sizeof(d));
}

void ag_put_str(struct ag_buf *b, uint16_t tag, const char *s)
{
        if (s)
                put_attr(b, tag, s, strlen(s));
}

void ag_put_bytes(struct ag_buf *b, uint16_t tag, const void *p, size_t n)
{
        put_attr(b, tag, p, n);
}

void ag_put_strv(struct ag_buf *b, uint16_t tag, const char *const *v)
{
        for (; v && *v; v++)
                ag_put_str(b, tag, *v);
}

size_t ag_nest_begin(struct ag_buf *b, uint16_t tag)
{
        size_t off = b->len;

        put_attr(b, tag, NULL, 0);
        return off;
}

void ag_nest_end(struct ag_buf *b, size_t off)
{
        if (b->err)
                return;
        if (off > b->len || b->len - off < AG_ATTR_HDR) {
                b->err = -EINVAL;
                return;
        }
        put_be32(b->data + off + 2, (uint32_t)(b->len - off - AG_ATTR_HDR));
}

void ag_put_raw(struct ag_buf *b, const void *p, size_t n)
{
        uint8_t *d = buf_grow(b, n);

        if (d && n)
                memcpy(d, p, n);
}

/* ---- reading ---- */

void ag_iter_init(struct ag_iter *it, const uint8_t *payload, size_t len)
{
        it->p = payload;
        it->left = payload ? len : 0;
}

int ag_iter_next(struct ag_iter *it, struct ag_attr *ret)
{
        uint32_t len;

        if (!it->left)
                return 0;
        if (it->left < AG_ATTR_HDR)
                return -EPROTO;
        len = get_be32(it->p + 2);
        if (len > it->left - AG_ATTR_HDR)
                return -EPROTO;
        ret->tag = get_be16(it->p);
        ret->len = len;
        ret->val = it->p + AG_ATTR_HDR;
        it->p += AG_ATTR_HDR + (size_t)len;
        it->left -= AG_ATTR_HDR + (size_t)len;
        return 1;
}

int ag_attr_i64(const struct ag_attr *a, int64_t *ret)
{
        uint64_t u = 0;

        if (a->len != 8)
                return -EPROTO;
        for (int i = 0; i < 8; i++)
                u = u << 8 | a->val[i];
        /* Two's complement without implementation-defined conversion. */
        if (u > (uint64_t)INT64_MAX)
                *ret = -(int64_t)(~u) - 1;
        else
                *ret = (int64_t)u;
        return 0;
}

int ag_attr_str(const struct ag_attr *a, char **ret)
{
        char *s;

        if (a->len && memchr(a->val, '\0', a->len))
                return -EPROTO;
        s = malloc((size_t)a->len + 1);
        if (!s)
                return -ENOMEM;
        if (a->len)
                memcpy(s, a->val, a->len);
        s[a->len] = '\0';
        *ret = s;
        return 0;
}

/* The first attribute @tag: 0 and *@ret, -ENOENT, or -EPROTO for a malformed block. */
static int find_attr(const uint8_t *payload, size_t len, uint16_t tag, struct ag_attr *ret)
{
        struct ag_iter it;
        struct ag_attr a;
        int r;

        ag_iter_init(&it, payload, len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                if (a.tag == tag) {
                        *ret = a;
                        return 0;
                }
        }
        return r < 0 ? r : -ENOENT;
}

int ag_find_i64(const uint8_t *payload, size_t len, uint16_t tag, int64_t *ret)
{
        struct ag_attr a;
        int r = find_attr(payload, len, tag, &a);

        return r < 0 ? r : ag_attr_i64(&a, ret);
}

int ag_find_str(const uint8_t *payload, size_t len, uint16_t tag, char **ret)
{
        struct ag_attr a;
        int r = find_attr(payload, len, tag, &a);

        return r < 0 ? r : ag_attr_str(&a, ret);
}

/* ---- decoding helpers ---- */

int ag_attr_set_str(char **field, const struct ag_attr *a)
{
        char *s;
        int r = ag_attr_str(a, &s);

        if (r < 0)
                return r;
        free(*field);
        *field = s;
        return 0;
}

static int set_bool(bool *field, const struct ag_attr *a)
{
        int64_t v;
        int r = ag_attr_i64(a, &v);

        if (r < 0)
                return r;
        *field = v != 0;
        return 0;
}

static int set_int(int *field, const struct ag_attr *a, int min, int max)
{
        int64_t v;
        int r = ag_attr_i64(a, &v);

        if (r < 0)
                return r;
        if (v < min || v > max)
                return -EPROTO;
        *field = (int)v;
        return 0;
}

/* Room for one more element of @size in *@arr holding *@n: 0 or -ENOMEM. */
static int arr_grow(void **arr, size_t n, size_t size)
{
        void *p;

        /* Capacity doubles at powers of two: reallocate only when @n is one. */
        if (n && (n & (n - 1)))
                return 0;
        if (n > SIZE_MAX / 2 / size)
                return -ENOMEM;
        p = realloc(*arr, (n ? n * 2 : 1) * size);
        if (!p)
                return -ENOMEM;
        *arr = p;
        return 0;
}

/* Appends a string attribute to the NULL-terminated *@v (count in *@n). */
static int strv_add(char ***v, size_t *n, const struct ag_attr *a)
{
        char *s;
        int r;

        /* n + 1 slots for the terminator: grow as for n + 1 elements. */
        r = arr_grow((void **)v, *n + 1, sizeof(char *));
        if (r < 0)
                return r;
        (*v)[*n] = NULL; /* terminated even if the string below fails */
        r = ag_attr_str(a, &s);
        if (r < 0)
                return r;
        (*v)[(*n)++] = s;
        (*v)[*n] = NULL;
        return 0;
}

/* An empty NULL-terminated vector for one that stayed NULL. */
static int strv_finish(char ***v)
{
        if (*v)
                return 0;
        *v = calloc(1, sizeof(char *));
        return *v ? 0 : -ENOMEM;
}

static void strv_free(char **v)
{
        if (!v)
                return;
        for (char **s = v; *s; s++)
                free(*s);
        free(v);
}

/* ---- resources ---- */

static const struct {
        uint16_t tag;
        size_t off;
} res_ints[] = {
        {AG_A_CPU_PERIOD, offsetof(struct ag_resources, cpu_period)},
        {AG_A_CPU_QUOTA, offsetof(struct ag_resources, cpu_quota)},
        {AG_A_CPU_SHARES, offsetof(struct ag_resources, cpu_shares)},
        {AG_A_MEM_LIMIT, offsetof(struct ag_resources, mem_limit)},
        {AG_A_MEM_SWAP, offsetof(struct ag_resources, mem_swap)},
        {AG_A_PIDS_MAX, offsetof(struct ag_resources, pids_max)},
        {AG_A_OOM_SCORE_ADJ, offsetof(struct ag_resources, oom_score_adj)},
};

void ag_resources_put(struct ag_buf *b, const struct ag_resources *r)
{
        for (size_t i = 0; i < sizeof(res_ints) / sizeof(res_ints[0]); i++) {
                int64_t v;

                memcpy(&v, (const char *)r + res_ints[i].off, sizeof(v));
                if (v)
                        ag_put_u64(b, res_ints[i].tag, v);
        }
        if (r->has_oom_score_adj)
                ag_put_u64(b, AG_A_HAS_OOM_SCORE_ADJ, 1);
        ag_put_str(b, AG_A_CPUSET_CPUS, r->cpuset_cpus);
        ag_put_str(b, AG_A_CPUSET_MEMS, r->cpuset_mems);
}

/* One resource attribute into @r: 1 when @a was one, 0 when not, or -errno. */
static int resources_attr(struct ag_resources *r, const struct ag_attr *a)
{
        int rc;

        for (size_t i = 0; i < sizeof(res_ints) / sizeof(res_ints[0]); i++) {
                if (a->tag == res_ints[i].tag) {
                        int64_t v;

                        rc = ag_attr_i64(a, &v);
                        if (rc < 0)
                                return rc;
                        memcpy((char *)r + res_ints[i].off, &v, sizeof(v));
                        return 1;
                }
        }
        switch (a->tag) {
        case AG_A_HAS_OOM_SCORE_ADJ:
                rc = set_bool(&r->has_oom_score_adj, a);
                break;
        case AG_A_CPUSET_CPUS:
                rc = ag_attr_set_str(&r->cpuset_cpus, a);
                break;
        case AG_A_CPUSET_MEMS:
                rc = ag_attr_set_str(&r->cpuset_mems, a);
                break;
        default:
                return 0;
        }
        return rc < 0 ? rc : 1;
}

int ag_resources_decode(const uint8_t *payload, size_t len, struct ag_resources *ret)
{
        struct ag_resources r = {0};
        struct ag_iter it;
        struct ag_attr a;
        int rc;

        ag_iter_init(&it, payload, len);
        while ((rc = ag_iter_next(&it, &a)) > 0) {
                rc = resources_attr(&r, &a);
                if (rc < 0)
                        break;
        }
        if (rc < 0) {
                ag_resources_done(&r);
                return rc;
        }
        *ret = r;
        return 0;
}

void ag_resources_done(struct ag_resources *r)
{
        free(r->cpuset_cpus);
        free(r->cpuset_mems);
        r->cpuset_cpus = r->cpuset_mems = NULL;
}

/* ---- the container spec ---- */

void ag_ctr_spec_put(struct ag_buf *b, const struct ag_ctr_spec *s)
{
        ag_put_str(b, AG_A_ID, s->id);
        ag_put_str(b, AG_A_NAME, s->name);
        ag_put_strv(b, AG_A_LOWER, (const char *const *)s->lower);
        ag_put_strv(b, AG_A_ARGV, (const char *const *)s->argv);
        ag_put_strv(b, AG_A_ENV, (const char *const *)s->env);
        ag_put_str(b, AG_A_CWD, s->cwd);
        ag_put_u64(b, AG_A_UID, s->uid);
        ag_put_u64(b, AG_A_GID, s->gid);
        for (size_t i = 0; i < s->n_groups; i++)
                ag_put_u64(b, AG_A_GROUPS, s->groups[i]);
        ag_put_u64(b, AG_A_TTY, s->tty);
        ag_put_u64(b, AG_A_STDIN, s->stdin_open);
        ag_put_u64(b, AG_A_STDIN_ONCE, s->stdin_once);
        ag_put_u64(b, AG_A_LOG, s->log);
        for (size_t i = 0; i < s->n_mounts; i++) {
                size_t off = ag_nest_begin(b, AG_A_MOUNT);

                ag_put_str(b, AG_A_SRC, s->mounts[i].src);
                ag_put_str(b, AG_A_DST, s->mounts[i].dst);
                ag_put_u64(b, AG_A_RO, s->mounts[i].ro);
                ag_put_u64(b, AG_A_PROPAGATION, s->mounts[i].propagation);
                ag_nest_end(b, off);
        }
        for (size_t i = 0; i < s->n_devices; i++) {
                size_t off = ag_nest_begin(b, AG_A_DEVICE);

                ag_put_str(b, AG_A_SRC, s->devices[i].src);
                ag_put_str(b, AG_A_DST, s->devices[i].dst);
                ag_put_str(b, AG_A_PERMS, s->devices[i].perms);
                ag_nest_end(b, off);
        }
        ag_put_u64(b, AG_A_READONLY_ROOT, s->readonly_root);
        ag_put_u64(b, AG_A_NO_NEW_PRIVS, s->no_new_privs);
        ag_put_u64(b, AG_A_PRIVILEGED, s->privileged);
        ag_put_u64(b, AG_A_PID_NS, s->own_pid_ns);
        ag_put_strv(b, AG_A_CAPS, (const char *const *)s->caps);
        if (s->caps_held)
                ag_put_u64(b, AG_A_CAPS_HELD, 1);
        if (s->seccomp)
                ag_put_bytes(b, AG_A_SECCOMP, s->seccomp, s->seccomp_len);
        ag_put_strv(b, AG_A_MASKED, (const char *const *)s->masked);
        ag_put_strv(b, AG_A_RO_PATHS, (const char *const *)s->ro_paths);
        ag_put_strv(b, AG_A_SYSCTLS, (const char *const *)s->sysctls);
        ag_resources_put(b, &s->res);
}

static int mount_decode(const struct ag_attr *outer, struct ag_mount *m)
{
        struct ag_iter it;
        struct ag_attr a;
        int r;

        ag_iter_init(&it, outer->val, outer->len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                switch (a.tag) {
                case AG_A_SRC:
                        r = ag_attr_set_str(&m->src, &a);
                        break;
                case AG_A_DST:
                        r = ag_attr_set_str(&m->dst, &a);
                        break;
                case AG_A_RO:
                        r = set_bool(&m->ro, &a);
                        break;
                case AG_A_PROPAGATION:
                        r = set_int(&m->propagation, &a, 0, INT_MAX);
                        break;
                default:
                        r = 0;
                }
                if (r < 0)
                        return r;
        }
        return r;
}

static int device_decode(const struct ag_attr *outer, struct ag_device *d)
{
        struct ag_iter it;
        struct ag_attr a;
        int r;

        ag_iter_init(&it, outer->val, outer->len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                switch (a.tag) {
                case AG_A_SRC:
                        r = ag_attr_set_str(&d->src, &a);
                        break;
                case AG_A_DST:
                        r = ag_attr_set_str(&d->dst, &a);
                        break;
                case AG_A_PERMS:
                        r = ag_attr_set_str(&d->perms, &a);
                        break;
                default:
                        r = 0;
                }
                if (r < 0)
                        return r;
        }
        return r;
}

/* Counts of the spec's string vectors while decoding. */
struct spec_counts {
        size_t lower, argv, env, caps, masked, ro_paths, sysctls;
};

static int spec_attr(struct ag_ctr_spec *s, struct spec_counts *n, const struct ag_attr *a)
{
        int64_t v;
        int r;

        switch (a->tag) {
        case AG_A_ID:
                return ag_attr_set_str(&s->id, a);
        case AG_A_NAME:
                return ag_attr_set_str(&s->name, a);
        case AG_A_LOWER:
                return strv_add(&s->lower, &n->lower, a);
        case AG_A_ARGV:
                return strv_add(&s->argv, &n->argv, a);
        case AG_A_ENV:
                return strv_add(&s->env, &n->env, a);
        case AG_A_CWD:
                return ag_attr_set_str(&s->cwd, a);
        case AG_A_UID:
                return ag_attr_i64(a, &s->uid);
        case AG_A_GID:
                return ag_attr_i64(a, &s->gid);
        case AG_A_GROUPS:
                r = ag_attr_i64(a, &v);
                if (r < 0)
                        return r;
                r = arr_grow((void **)&s->groups, s->n_groups, sizeof(*s->groups));
                if (r < 0)
                        return r;
                s->groups[s->n_groups++] = v;
                return 0;
        case AG_A_TTY:
                return set_bool(&s->tty, a);
        case AG_A_STDIN:
                return set_bool(&s->stdin_open, a);
        case AG_A_STDIN_ONCE:
                return set_bool(&s->stdin_once, a);
        case AG_A_LOG:
                return set_bool(&s->log, a);
        case AG_A_MOUNT:
                r = arr_grow((void **)&s->mounts, s->n_mounts, sizeof(*s->mounts));
                if (r < 0)
                        return r;
                memset(&s->mounts[s->n_mounts], 0, sizeof(*s->mounts));
                /* Counted first, so a half-decoded one is freed with the rest. */
                return mount_decode(a, &s->mounts[s->n_mounts++]);
        case AG_A_DEVICE:
                r = arr_grow((void **)&s->devices, s->n_devices, sizeof(*s->devices));
                if (r < 0)
                        return r;
                memset(&s->devices[s->n_devices], 0, sizeof(*s->devices));
                return device_decode(a, &s->devices[s->n_devices++]);
        case AG_A_READONLY_ROOT:
                return set_bool(&s->readonly_root, a);
        case AG_A_NO_NEW_PRIVS:
                return set_bool(&s->no_new_privs, a);
        case AG_A_PRIVILEGED:
                return set_bool(&s->privileged, a);
        case AG_A_PID_NS:
                return set_bool(&s->own_pid_ns, a);
        case AG_A_CAPS:
                return strv_add(&s->caps, &n->caps, a);
        case AG_A_CAPS_HELD:
                return set_bool(&s->caps_held, a);
        case AG_A_SECCOMP: {
                /* Bytes, kept NUL-terminated for a JSON parser. */
                char *p = malloc((size_t)a->len + 1);

                if (!p)
                        return -ENOMEM;
                if (a->len)
                        memcpy(p, a->val, a->len);
                p[a->len] = '\0';
                free(s->seccomp);
                s->seccomp = p;
                s->seccomp_len = a->len;
                return 0;
        }
        case AG_A_MASKED:
                return strv_add(&s->masked, &n->masked, a);
        case AG_A_RO_PATHS:
                return strv_add(&s->ro_paths, &n->ro_paths, a);
        case AG_A_SYSCTLS:
                return strv_add(&s->sysctls, &n->sysctls, a);
        default:
                r = resources_attr(&s->res, a);
                return r < 0 ? r : 0;
        }
}

int ag_ctr_spec_decode(const uint8_t *payload, size_t len, struct ag_ctr_spec *ret)
{
        struct ag_ctr_spec s = {0};
        struct spec_counts n = {0};
        struct ag_iter it;
        struct ag_attr a;
        int r;

        ag_iter_init(&it, payload, len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                r = spec_attr(&s, &n, &a);
                if (r < 0)
                        break;
        }
        if (r == 0 && (!s.id || !n.argv))
                r = -EPROTO;
        if (r == 0) {
                char ***vs[] = {&s.lower,  &s.argv,     &s.env,    &s.caps,
                                &s.masked, &s.ro_paths, &s.sysctls};

                for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]) && r == 0; i++)
                        r = strv_finish(vs[i]);
        }
        if (r < 0) {
                ag_ctr_spec_done(&s);
                return r;
        }
        *ret = s;
        return 0;
}

void ag_ctr_spec_done(struct ag_ctr_spec *s)
{
        free(s->id);
        free(s->name);
        strv_free(s->lower);
        strv_free(s->argv);
        strv_free(s->env);
        free(s->cwd);
        free(s->groups);
        for (size_t i = 0; i < s->n_mounts; i++) {
                free(s->mounts[i].src);
                free(s->mounts[i].dst);
        }
        free(s->mounts);
        for (size_t i = 0; i < s->n_devices; i++) {
                free(s->devices[i].src);
                free(s->devices[i].dst);
                free(s->devices[i].perms);
        }
        free(s->devices);
        strv_free(s->caps);
        free(s->seccomp);
        strv_free(s->masked);
        strv_free(s->ro_paths);
        strv_free(s->sysctls);
        ag_resources_done(&s->res);
        memset(s, 0, sizeof(*s));
}

/* ---- status ---- */

void ag_status_put(struct ag_buf *b, const struct ag_status *s)
{
        ag_put_str(b, AG_A_ID, s->id);
        ag_put_u64(b, AG_A_STATE, s->state);
        ag_put_u64(b, AG_A_PID, s->pid);
        ag_put_u64(b, AG_A_STARTED_NS, s->started_ns);
        ag_put_u64(b, AG_A_FINISHED_NS, s->finished_ns);
        ag_put_u64(b, AG_A_EXIT_CODE, s->exit_code);
        ag_put_u64(b, AG_A_OOM_KILLED, s->oom_killed);
        ag_put_str(b, AG_A_REASON, s->reason);
        ag_put_str(b, AG_A_MESSAGE, s->message);
}

/*
 * A string attribute into the fixed buffer @dst of @size: -EPROTO for a NUL inside, or, when
 * @exact, for one that does not fit; otherwise a long one is cut.
 */
static int copy_fixed(char *dst, size_t size, const struct ag_attr *a, bool exact)
{
        size_t n = a->len;

        if (n && memchr(a->val, '\0', n))
                return -EPROTO;
        if (n >= size) {
                if (exact)
                        return -EPROTO;
                n = size - 1;
        }
        if (n)
                memcpy(dst, a->val, n);
        dst[n] = '\0';
        return 0;
}

int ag_status_decode(const uint8_t *payload, size_t len, struct ag_status *ret)
{
        struct ag_status s;
        struct ag_iter it;
        struct ag_attr a;
        int r;

        memset(&s, 0, sizeof(s));
        ag_iter_init(&it, payload, len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                switch (a.tag) {
                case AG_A_ID:
                        r = copy_fixed(s.id, sizeof(s.id), &a, true);
                        break;
                case AG_A_STATE:
                        r = set_int(&s.state, &a, AG_ST_CREATED, AG_ST_EXITED);
                        break;
                case AG_A_PID:
                        r = ag_attr_i64(&a, &s.pid);
                        break;
                case AG_A_STARTED_NS:
                        r = ag_attr_i64(&a, &s.started_ns);
                        break;
                case AG_A_FINISHED_NS:
                        r = ag_attr_i64(&a, &s.finished_ns);
                        break;
                case AG_A_EXIT_CODE:
                        r = ag_attr_i64(&a, &s.exit_code);
                        break;
                case AG_A_OOM_KILLED:
                        r = set_bool(&s.oom_killed, &a);
                        break;
                case AG_A_REASON:
                        r = copy_fixed(s.reason, sizeof(s.reason), &a, false);
                        break;
                case AG_A_MESSAGE:
                        r = copy_fixed(s.message, sizeof(s.message), &a, false);
                        break;
                default:
                        r = 0;
                }
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}

/* ---- stats ---- */

static const struct {
        uint16_t tag;
        size_t off;
} stats_ints[] = {
        {AG_A_TIMESTAMP_NS, offsetof(struct ag_stats, timestamp_ns)},
        {AG_A_CPU_USAGE_NS, offsetof(struct ag_stats, cpu_usage_ns)},
        {AG_A_CPU_USER_NS, offsetof(struct ag_stats, cpu_user_ns)},
        {AG_A_CPU_SYS_NS, offsetof(struct ag_stats, cpu_sys_ns)},
        {AG_A_MEM_USAGE, offsetof(struct ag_stats, mem_usage)},
        {AG_A_MEM_WORKING_SET, offsetof(struct ag_stats, mem_working_set)},
        {AG_A_MEM_RSS, offsetof(struct ag_stats, mem_rss)},
        {AG_A_MEM_CACHE, offsetof(struct ag_stats, mem_cache)},
        {AG_A_MEM_LIMIT_NOW, offsetof(struct ag_stats, mem_limit)},
        {AG_A_PGFAULT, offsetof(struct ag_stats, pgfault)},
        {AG_A_PGMAJFAULT, offsetof(struct ag_stats, pgmajfault)},
        {AG_A_SWAP_USAGE, offsetof(struct ag_stats, swap_usage)},
        {AG_A_PIDS_CURRENT, offsetof(struct ag_stats, pids_current)},
        {AG_A_FS_USED, offsetof(struct ag_stats, fs_used)},
        {AG_A_FS_INODES, offsetof(struct ag_stats, fs_inodes)},
        {AG_A_OOM_EVENTS, offsetof(struct ag_stats, oom_events)},
};

void ag_stats_put(struct ag_buf *b, const struct ag_stats *s)
{
        for (size_t i = 0; i < sizeof(stats_ints) / sizeof(stats_ints[0]); i++) {
                int64_t v;

                memcpy(&v, (const char *)s + stats_ints[i].off, sizeof(v));
                ag_put_u64(b, stats_ints[i].tag, v);
        }
}

int ag_stats_decode(const uint8_t *payload, size_t len, struct ag_stats *ret)
{
        struct ag_stats s;
        struct ag_iter it;
        struct ag_attr a;
        int r;

        memset(&s, 0, sizeof(s));
        ag_iter_init(&it, payload, len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                for (size_t i = 0; i < sizeof(stats_ints) / sizeof(stats_ints[0]); i++) {
                        if (a.tag == stats_ints[i].tag) {
                                int64_t v;

                                r = ag_attr_i64(&a, &v);
                                if (r < 0)
                                        return r;
                                memcpy((char *)&s + stats_ints[i].off, &v, sizeof(v));
                                break;
                        }
                }
        }
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}

/* ---- network ---- */

void ag_net_put(struct ag_buf *b, const struct ag_net *n)
{
        for (size_t i = 0; i < n->n_ifaces; i++) {
                size_t off = ag_nest_begin(b, AG_A_IFACE);

                ag_put_str(b, AG_A_MAC, n->ifaces[i].mac);
                ag_put_strv(b, AG_A_ADDR, (const char *const *)n->ifaces[i].addrs);
                ag_put_u64(b, AG_A_MTU, n->ifaces[i].mtu);
                ag_nest_end(b, off);
        }
        for (size_t i = 0; i < n->n_routes; i++) {
                size_t off = ag_nest_begin(b, AG_A_ROUTE);

                ag_put_str(b, AG_A_DST, n->routes[i].dst);
                ag_put_str(b, AG_A_GW, n->routes[i].gw);
                ag_put_str(b, AG_A_DEV_MAC, n->routes[i].dev_mac);
                ag_nest_end(b, off);
        }
        ag_put_str(b, AG_A_HOSTNAME, n->hostname);
        ag_put_strv(b, AG_A_SYSCTL, (const char *const *)n->sysctls);
}

static int iface_decode(const struct ag_attr *outer, struct ag_iface *f)
{
        size_t n_addrs = 0;
        struct ag_iter it;
        struct ag_attr a;
        int r;

        ag_iter_init(&it, outer->val, outer->len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                switch (a.tag) {
                case AG_A_MAC:
                        r = ag_attr_set_str(&f->mac, &a);
                        break;
                case AG_A_ADDR:
                        r = strv_add(&f->addrs, &n_addrs, &a);
                        break;
                case AG_A_MTU:
                        r = ag_attr_i64(&a, &f->mtu);
                        break;
                default:
                        r = 0;
                }
                if (r < 0)
                        return r;
        }
        return r < 0 ? r : strv_finish(&f->addrs);
}

static int route_decode(const struct ag_attr *outer, struct ag_route *rt)
{
        struct ag_iter it;
        struct ag_attr a;
        int r;

        ag_iter_init(&it, outer->val, outer->len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                switch (a.tag) {
                case AG_A_DST:
                        r = ag_attr_set_str(&rt->dst, &a);
                        break;
                case AG_A_GW:
                        r = ag_attr_set_str(&rt->gw, &a);
                        break;
                case AG_A_DEV_MAC:
                        r = ag_attr_set_str(&rt->dev_mac, &a);
                        break;
                default:
                        r = 0;
                }
                if (r < 0)
                        return r;
        }
        return r;
}

static int net_attr(struct ag_net *n, size_t *n_sysctls, const struct ag_attr *a)
{
        int r;

        switch (a->tag) {
        case AG_A_IFACE:
                r = arr_grow((void **)&n->ifaces, n->n_ifaces, sizeof(*n->ifaces));
                if (r < 0)
                        return r;
                memset(&n->ifaces[n->n_ifaces], 0, sizeof(*n->ifaces));
                return iface_decode(a, &n->ifaces[n->n_ifaces++]);
        case AG_A_ROUTE:
                r = arr_grow((void **)&n->routes, n->n_routes, sizeof(*n->routes));
                if (r < 0)
                        return r;
                memset(&n->routes[n->n_routes], 0, sizeof(*n->routes));
                return route_decode(a, &n->routes[n->n_routes++]);
        case AG_A_HOSTNAME:
                return ag_attr_set_str(&n->hostname, a);
        case AG_A_SYSCTL:
                return strv_add(&n->sysctls, n_sysctls, a);
        default:
                return 0;
        }
}

int ag_net_decode(const uint8_t *payload, size_t len, struct ag_net *ret)
{
        struct ag_net n = {0};
        size_t n_sysctls = 0;
        struct ag_iter it;
        struct ag_attr a;
        int r;

        ag_iter_init(&it, payload, len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                r = net_attr(&n, &n_sysctls, &a);
                if (r < 0)
                        break;
        }
        if (r == 0)
                r = strv_finish(&n.sysctls);
        if (r < 0) {
                ag_net_done(&n);
                return r;
        }
        *ret = n;
        return 0;
}

void ag_net_done(struct ag_net *n)
{
        for (size_t i = 0; i < n->n_ifaces; i++) {
                free(n->ifaces[i].mac);
                strv_free(n->ifaces[i].addrs);
        }
        free(n->ifaces);
        for (size_t i = 0; i < n->n_routes; i++) {
                free(n->routes[i].dst);
                free(n->routes[i].gw);
                free(n->routes[i].dev_mac);
        }
        free(n->routes);
        free(n->hostname);
        strv_free(n->sysctls);
        memset(n, 0, sizeof(*n));
}

/* ---- RESP ---- */

int ag_resp_error(const uint8_t *payload, size_t len, char *msg, size_t msg_size)
{
        struct ag_attr a;
        int64_t e;
        int r;

        if (msg && msg_size)
                msg[0] = '\0';
        r = ag_find_i64(payload, len, AG_A_ERRNO, &e);
        if (r == -ENOENT)
                return 0;
        if (r < 0 || e < 0 || e > 4095) {
                if (msg && msg_size)
                        snprintf(msg, msg_size, "malformed response");
                return -EPROTO;
        }
        if (e == 0)
                return 0;
        if (msg && msg_size && find_attr(payload, len, AG_A_ERRMSG, &a) == 0) {
                size_t n = a.len;
                const uint8_t *nul = n ? memchr(a.val, '\0', n) : NULL;

                if (nul)
                        n = (size_t)(nul - a.val);
                if (n >= msg_size)
                        n = msg_size - 1;
                if (n)
                        memcpy(msg, a.val, n);
                msg[n] = '\0';
        }
        return -(int)e;
}
