/* Translation between runt's core results and the wire: status codes, strings. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"
#include "cleanup.h"
#include "cri-internal.h"

static const struct {
        int err;
        grpc_status_code code;
} errno_map[] = {
        {-ENOENT, GRPC_STATUS_NOT_FOUND},
        {-ESRCH, GRPC_STATUS_NOT_FOUND},
        {-EEXIST, GRPC_STATUS_ALREADY_EXISTS},
        {-EINVAL, GRPC_STATUS_INVALID_ARGUMENT},
        {-ENAMETOOLONG, GRPC_STATUS_INVALID_ARGUMENT},
        {-EBADMSG, GRPC_STATUS_INVALID_ARGUMENT},
        {-E2BIG, GRPC_STATUS_INVALID_ARGUMENT},
        {-EOPNOTSUPP, GRPC_STATUS_UNIMPLEMENTED},
        {-ENOSYS, GRPC_STATUS_UNIMPLEMENTED},
        {-ETIMEDOUT, GRPC_STATUS_DEADLINE_EXCEEDED},
        {-ECANCELED, GRPC_STATUS_CANCELLED},
        {-EBUSY, GRPC_STATUS_FAILED_PRECONDITION},
        {-ENOTEMPTY, GRPC_STATUS_FAILED_PRECONDITION},
        {-EALREADY, GRPC_STATUS_FAILED_PRECONDITION},
        {-EADDRINUSE, GRPC_STATUS_FAILED_PRECONDITION}, /* a host port another pod maps */
        {-EPERM, GRPC_STATUS_PERMISSION_DENIED},
        {-EACCES, GRPC_STATUS_PERMISSION_DENIED},
        {-ENOMEM, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {-ENOSPC, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {-EMFILE, GRPC_STATUS_RESOURCE_EXHAUSTED}, /* out of fds: runtd's limit, not the caller's */
        {-ENFILE, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {-EAGAIN, GRPC_STATUS_UNAVAILABLE},
        {-ECONNREFUSED, GRPC_STATUS_UNAVAILABLE},
        {-EHOSTUNREACH, GRPC_STATUS_UNAVAILABLE},
        {-ENOTCONN, GRPC_STATUS_UNAVAILABLE},
        {-ESHUTDOWN, GRPC_STATUS_UNAVAILABLE},
        {-EUCLEAN, GRPC_STATUS_DATA_LOSS}, /* content that does not match its digest */
        {-EIO, GRPC_STATUS_INTERNAL},
        {-EPROTO, GRPC_STATUS_INTERNAL},
};

grpc_status_code cri_status_from_errno(int r)
{
        if (r >= 0)
                return GRPC_STATUS_OK;
        for (size_t i = 0; i < sizeof(errno_map) / sizeof(errno_map[0]); i++)
                if (errno_map[i].err == r)
                        return errno_map[i].code;
        return GRPC_STATUS_UNKNOWN;
}

const char *cri_status_name(grpc_status_code code)
{
        static const char *const names[] = {
                "OK",
                "CANCELLED",
                "UNKNOWN",
                "INVALID_ARGUMENT",
                "DEADLINE_EXCEEDED",
                "NOT_FOUND",
                "ALREADY_EXISTS",
                "PERMISSION_DENIED",
                "RESOURCE_EXHAUSTED",
                "FAILED_PRECONDITION",
                "ABORTED",
                "OUT_OF_RANGE",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS",
                "UNAUTHENTICATED",
        };

        if ((unsigned)code < sizeof(names) / sizeof(names[0]))
                return names[code];
        return "UNKNOWN";
}

char *cri_strdup(const char *s)
{
        return strdup(s ? s : "");
}

void *cri_msg_new(const ProtobufCMessageDescriptor *desc)
{
        ProtobufCMessage *m = malloc(desc->sizeof_message);

        if (m)
                desc->message_init(m);
        return m;
}

void *cri_array_new(size_t n)
{
        return calloc(n ? n : 1, sizeof(void *));
}

/* A NULL-terminated copy of @v (@n strings, NULL ones as ""); NULL on ENOMEM. */
char **cri_strv_from(char *const *v, size_t n)
{
        char **out = calloc(n + 1, sizeof(char *));

        for (size_t i = 0; out && i < n; i++)
                if (!(out[i] = strdup(v[i] ? v[i] : ""))) {
                        sh_strv_free(out);
                        return NULL;
                }
        return out;
}

/* *@ret: the entries as kv pairs, freed with the spec even when this fails half-way. */
int cri_kv_from(void *const *entries, size_t n, struct be_kv **ret, size_t *ret_n)
{
        struct be_kv *v = calloc(n + 1, sizeof(*v));

        *ret = v;
        *ret_n = 0;
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const struct cri_map_entry *e = entries[i];

                v[i].key = strdup(e->key ? e->key : "");
                v[i].value = strdup(e->value ? e->value : "");
                *ret_n = i + 1;
                if (!v[i].key || !v[i].value)
                        return -ENOMEM;
        }
        return 0;
}

/* Map entries of the generated type @desc from @v; NULL (nothing left over) on ENOMEM. */
void **cri_entries(const ProtobufCMessageDescriptor *desc, const struct be_kv *v, size_t n,
                   size_t *ret_n)
{
        void **out = cri_array_new(n);

        *ret_n = 0;
        for (size_t k = 0; out && k < n; k++) {
                struct cri_map_entry *e = cri_msg_new(desc);

                if (e) {
                        out[(*ret_n)++] = e;
                        e->key = cri_strdup(v[k].key);
                        e->value = cri_strdup(v[k].value);
                }
                if (!e || !e->key || !e->value) {
                        for (size_t i = 0; i < *ret_n; i++)
                                protobuf_c_message_free_unpacked(out[i], NULL);
                        free(out);
                        *ret_n = 0;
                        return NULL;
                }
        }
        return out;
}

Runtime__V1__FilesystemUsage *cri_fs_usage_msg(const struct sh_fs_usage *u)
{
        Runtime__V1__FilesystemUsage *f = cri_msg_new(&runtime__v1__filesystem_usage__descriptor);

        if (!f)
                return NULL;
        f->timestamp = u->timestamp_ns;
        f->fs_id = cri_msg_new(&runtime__v1__filesystem_identifier__descriptor);
        f->used_bytes = cri_msg_new(&runtime__v1__uint64_value__descriptor);
        f->inodes_used = cri_msg_new(&runtime__v1__uint64_value__descriptor);
        if (f->fs_id)
                f->fs_id->mountpoint = cri_strdup(u->mountpoint);
        if (!f->fs_id || !f->fs_id->mountpoint || !f->used_bytes || !f->inodes_used) {
                protobuf_c_message_free_unpacked(&f->base, NULL);
                return NULL;
        }
        f->used_bytes->value = u->used_bytes;
        f->inodes_used->value = u->inodes_used;
        return f;
}

static size_t varint_size(uint64_t v)
{
        size_t n = 1;

        while (v >= 0x80) {
                v >>= 7;
                n++;
        }
        return n;
}

static uint8_t *varint_put(uint8_t *p, uint64_t v)
{
        while (v >= 0x80) {
                *p++ = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        *p++ = (uint8_t)v;
        return p;
}

int cri_packed_add(struct cri_packed *p, const ProtobufCMessage *m)
{
        size_t sz = protobuf_c_message_get_packed_size(m);
        uint64_t key = (uint64_t)p->field << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
        size_t need = (p->n ? varint_size(key) : 0) + varint_size(sz) + sz;
        uint8_t *at;

        if (p->len + need > p->cap) {
                size_t cap = p->cap ? p->cap : 16384;
                uint8_t *b;

                while (cap < p->len + need)
                        cap *= 2;
                if (!(b = realloc(p->buf, cap)))
                        return -ENOMEM;
                p->buf = b;
                p->cap = cap;
        }
        at = p->buf + p->len;
        if (p->n)
                at = varint_put(at, key);
        at = varint_put(at, sz);
        at += protobuf_c_message_pack(m, at);
        p->len = (size_t)(at - p->buf);
        p->n++;
        return 0;
}

int cri_packed_attach(struct cri_packed *p, ProtobufCMessage *resp)
{
        ProtobufCMessageUnknownField *f;

        if (!p->n) {
                cri_packed_done(p);
                return 0;
        }
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->tag = p->field;
        f->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
        f->len = p->len;
        f->data = p->buf;
        resp->unknown_fields = f;
        resp->n_unknown_fields = 1;
        p->buf = NULL;
        p->len = p->cap = p->n = 0;
        return 0;
}

void cri_packed_done(struct cri_packed *p)
{
        free(p->buf);
        memset(p, 0, sizeof(*p));
}

void **cri_kv_borrow(struct cri_kv_scratch *s, const ProtobufCMessageDescriptor *desc,
                     const struct be_kv *kv, size_t n)
{
        if (n > s->cap) {
                struct cri_map_entry *e = realloc(s->e, n * sizeof(*e));
                void **p;

                if (e)
                        s->e = e;
                p = e ? realloc(s->p, n * sizeof(*p)) : NULL;
                if (!p)
                        return NULL;
                s->p = p;
                s->cap = n;
        }
        for (size_t k = 0; k < n; k++) {
                protobuf_c_message_init(desc, &s->e[k]);
                s->e[k].key = kv[k].key;
                s->e[k].value = kv[k].value;
                s->p[k] = &s->e[k];
        }
        return s->p ? s->p : (void **)s; /* n == 0 before any growth: any non-NULL will do */
}

void cri_kv_scratch_done(struct cri_kv_scratch *s)
{
        free(s->e);
        free(s->p);
        memset(s, 0, sizeof(*s));
}
