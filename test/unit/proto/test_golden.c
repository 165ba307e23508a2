/*
 * The CRI wire contract: proto/api.proto against the golden vectors of cri-api
 * (../shared/cri-golden, see its README.md). One cmocka test per golden message M:
 *   - M.bin unpacks with the descriptor whose short_name is M,
 *   - every field of the result equals M.json (walked generically from the descriptor; a JSON
 *     key with no field and a set field with no JSON key both fail),
 *   - packing it again gives back M.bin byte for byte,
 *   - the descriptor's fields (number, name, label, type, enum values) are the ones SCHEMA.txt
 *     lists, which catches what the vectors cannot: their integers are small, so an int32 in
 *     place of an int64 would still round-trip.
 * Two more tests check that the set is complete in both directions.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <protobuf-c/protobuf-c.h>

#include "api.pb-c.h"

#define GOLDEN_DIR          RUNT_SHARED_DIR "/cri-golden"
#define GOLDEN_MIN_MESSAGES 170
#define PROTO_PACKAGE       "runtime.v1"
#define MAX_REPORTS         25 /* mismatches printed per message; all are counted */

/* Every message descriptor of api.pb-c.h, generated at build time (see CMakeLists.txt). */
static const ProtobufCMessageDescriptor *const all_descriptors[] = {
#include "golden_descriptors.inc"
};

struct golden_set {
        char **names; /* short names of the *.bin files, sorted */
        size_t n_names;
        char *schema; /* SCHEMA.txt, NUL-terminated */
};

struct golden_case {
        const struct golden_set *set;
        const char *name;
};

/* One message's comparison: where we are in it and what went wrong so far. */
struct cmp {
        const char *msg;
        char path[1024];
        size_t path_len;
        unsigned failures;
};

__attribute__((format(printf, 2, 3))) static void report(struct cmp *c, const char *fmt, ...)
{
        char buf[512];
        va_list ap;

        c->failures++;
        if (c->failures > MAX_REPORTS)
                return;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        print_error("%s: %s: %s\n", c->msg, c->path_len ? c->path : "(message)", buf);
}

/* Appends a path component; returns the length to restore with path_pop(). */
__attribute__((format(printf, 2, 3))) static size_t path_push(struct cmp *c, const char *fmt, ...)
{
        size_t old = c->path_len;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vsnprintf(c->path + old, sizeof(c->path) - old, fmt, ap);
        va_end(ap);
        if (r > 0)
                c->path_len =
                        old + (size_t)r < sizeof(c->path) ? old + (size_t)r : sizeof(c->path) - 1;
        return old;
}

static void path_pop(struct cmp *c, size_t old)
{
        c->path_len = old;
        c->path[old] = '\0';
}

static size_t path_push_field(struct cmp *c, const char *name)
{
        return c->path_len ? path_push(c, ".%s", name) : path_push(c, "%s", name);
}

static int read_all(const char *path, uint8_t **ret_buf, size_t *ret_len)
{
        FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;

        if (!f)
                return -errno;
        for (;;) {
                if (cap - len < 2) {
                        uint8_t *n = realloc(buf, cap ? cap * 2 : 4096);

                        if (!n) {
                                free(buf);
                                fclose(f);
                                return -ENOMEM;
                        }
                        buf = n;
                        cap = cap ? cap * 2 : 4096;
                }
                size_t r = fread(buf + len, 1, cap - len - 1, f);

                len += r;
                if (r == 0)
                        break;
        }
        if (ferror(f)) {
                free(buf);
                fclose(f);
                return -EIO;
        }
        fclose(f);
        buf[len] = '\0'; /* the read leaves one byte spare, so text files are strings */
        *ret_buf = buf;
        *ret_len = len;
        return 0;
}

static int b64_value(char ch)
{
        if (ch >= 'A' && ch <= 'Z')
                return ch - 'A';
        if (ch >= 'a' && ch <= 'z')
                return ch - 'a' + 26;
        if (ch >= '0' && ch <= '9')
                return ch - '0' + 52;
        if (ch == '+')
                return 62;
        if (ch == '/')
                return 63;
        return -1;
}

/* Strict RFC 4648 base64 (padded, standard alphabet). Returns 0 or -EINVAL/-ENOMEM. */
static int b64_decode(const char *s, size_t len, uint8_t **ret_buf, size_t *ret_len)
{
        uint8_t *out;
        size_t n = 0;

        if (len % 4 != 0)
                return -EINVAL;
        out = malloc(len / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i += 4) {
                bool last = i + 4 == len;
                int pad = last ? (s[i + 3] == '=') + (s[i + 2] == '=') : 0;
                uint32_t v = 0;

                for (int k = 0; k < 4; k++) {
                        int d = k >= 4 - pad ? 0 : b64_value(s[i + k]); /* '=' is -1 */

                        if (d < 0) {
                                free(out);
                                return -EINVAL;
                        }
                        v = v << 6 | (uint32_t)d;
                }
                out[n++] = (uint8_t)(v >> 16);
                if (pad < 2)
                        out[n++] = (uint8_t)(v >> 8);
                if (pad < 1)
                        out[n++] = (uint8_t)v;
        }
        *ret_buf = out;
        *ret_len = n;
        return 0;
}

static size_t type_size(ProtobufCType t)
{
        switch (t) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                return sizeof(uint32_t);
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return sizeof(uint64_t);
        case PROTOBUF_C_TYPE_FLOAT:
                return sizeof(float);
        case PROTOBUF_C_TYPE_DOUBLE:
                return sizeof(double);
        case PROTOBUF_C_TYPE_BOOL:
                return sizeof(protobuf_c_boolean);
        case PROTOBUF_C_TYPE_ENUM:
                return sizeof(int);
        case PROTOBUF_C_TYPE_STRING:
                return sizeof(char *);
        case PROTOBUF_C_TYPE_BYTES:
                return sizeof(ProtobufCBinaryData);
        case PROTOBUF_C_TYPE_MESSAGE:
                return sizeof(ProtobufCMessage *);
        }
        return 0;
}

static const char *type_name(ProtobufCType t)
{
        switch (t) {
        case PROTOBUF_C_TYPE_INT32:
                return "int32";
        case PROTOBUF_C_TYPE_SINT32:
                return "sint32";
        case PROTOBUF_C_TYPE_SFIXED32:
                return "sfixed32";
        case PROTOBUF_C_TYPE_INT64:
                return "int64";
        case PROTOBUF_C_TYPE_SINT64:
                return "sint64";
        case PROTOBUF_C_TYPE_SFIXED64:
                return "sfixed64";
        case PROTOBUF_C_TYPE_UINT32:
                return "uint32";
        case PROTOBUF_C_TYPE_FIXED32:
                return "fixed32";
        case PROTOBUF_C_TYPE_UINT64:
                return "uint64";
        case PROTOBUF_C_TYPE_FIXED64:
                return "fixed64";
        case PROTOBUF_C_TYPE_FLOAT:
                return "float";
        case PROTOBUF_C_TYPE_DOUBLE:
                return "double";
        case PROTOBUF_C_TYPE_BOOL:
                return "bool";
        case PROTOBUF_C_TYPE_ENUM:
                return "enum";
        case PROTOBUF_C_TYPE_STRING:
                return "string";
        case PROTOBUF_C_TYPE_BYTES:
                return "bytes";
        case PROTOBUF_C_TYPE_MESSAGE:
                return "message";
        }
        return "?";
}

static const void *member(const ProtobufCMessage *m, size_t offset)
{
        return (const char *)m + offset;
}

/* A map<K,V> field is a repeated message of a nested, generated <Name>Entry{key=1, value=2}. */
static bool is_map_field(const ProtobufCMessageDescriptor *parent,
                         const ProtobufCFieldDescriptor *f)
{
        const ProtobufCMessageDescriptor *e = f->descriptor;
        size_t plen = strlen(parent->name), slen;

        if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
                return false;
        slen = strlen(e->short_name);
        return strncmp(e->name, parent->name, plen) == 0 && e->name[plen] == '.' &&
               strcmp(e->name + plen + 1, e->short_name) == 0 && slen > 5 &&
               strcmp(e->short_name + slen - 5, "Entry") == 0 && e->n_fields == 2 &&
               e->fields[0].id == 1 && strcmp(e->fields[0].name, "key") == 0 &&
               e->fields[1].id == 2 && strcmp(e->fields[1].name, "value") == 0;
}

static bool value_is_default(ProtobufCType t, const void *p)
{
        switch (t) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                return *(const uint32_t *)p == 0;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return *(const uint64_t *)p == 0;
        case PROTOBUF_C_TYPE_FLOAT:
                return *(const float *)p == 0;
        case PROTOBUF_C_TYPE_DOUBLE:
                return *(const double *)p == 0;
        case PROTOBUF_C_TYPE_BOOL:
                return !*(const protobuf_c_boolean *)p;
        case PROTOBUF_C_TYPE_ENUM:
                return *(const int *)p == 0;
        case PROTOBUF_C_TYPE_STRING: {
                const char *s = *(char *const *)p;

                return !s || !*s;
        }
        case PROTOBUF_C_TYPE_BYTES:
                return ((const ProtobufCBinaryData *)p)->len == 0;
        case PROTOBUF_C_TYPE_MESSAGE:
                return *(ProtobufCMessage *const *)p == NULL;
        }
        return true;
}

/* Whether the field would be on the wire: proto3 scalars only when not the default. */
static bool field_is_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
        const void *p = member(m, f->offset);

        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                return *(const uint32_t *)member(m, f->quantifier_offset) == f->id;
        switch (f->label) {
        case PROTOBUF_C_LABEL_REQUIRED:
                return true;
        case PROTOBUF_C_LABEL_REPEATED:
                return *(const size_t *)member(m, f->quantifier_offset) > 0;
        case PROTOBUF_C_LABEL_OPTIONAL:
                if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING)
                        return *(void *const *)p != NULL;
                return *(const protobuf_c_boolean *)member(m, f->quantifier_offset);
        case PROTOBUF_C_LABEL_NONE:
                return !value_is_default(f->type, p);
        }
        return false;
}

static bool json_is(struct cmp *c, struct json_object *j, json_type want, const char *what)
{
        if (json_object_is_type(j, want))
                return true;
        report(c, "%s field, JSON has %s", what, json_type_to_name(json_object_get_type(j)));
        return false;
}

static void compare_message(struct cmp *c, const ProtobufCMessageDescriptor *desc,
                            const ProtobufCMessage *m, struct json_object *j);

/* Compares one value (a singular field, or one element of a repeated one) at p with j. */
static void compare_value(struct cmp *c, const ProtobufCFieldDescriptor *f, const void *p,
                          struct json_object *j)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_ENUM: {
                int32_t v = f->type == PROTOBUF_C_TYPE_ENUM ? *(const int *)p : *(const int32_t *)p;

                if (!json_is(c, j, json_type_int, type_name(f->type)))
                        return;
                if (json_object_get_int64(j) != v)
                        report(c, "binary %" PRId32 ", JSON %" PRId64, v, json_object_get_int64(j));
                else if (f->type == PROTOBUF_C_TYPE_ENUM &&
                         !protobuf_c_enum_descriptor_get_value(f->descriptor, v))
                        report(c, "%" PRId32 " is not a value of enum %s", v,
                               ((const ProtobufCEnumDescriptor *)f->descriptor)->name);
                return;
        }
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64: {
                int64_t v = *(const int64_t *)p;

                if (json_is(c, j, json_type_int, type_name(f->type)) &&
                    json_object_get_int64(j) != v)
                        report(c, "binary %" PRId64 ", JSON %" PRId64, v, json_object_get_int64(j));
                return;
        }
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64: {
                uint64_t v = type_size(f->type) == sizeof(uint32_t) ? *(const uint32_t *)p
                                                                    : *(const uint64_t *)p;

                if (!json_is(c, j, json_type_int, type_name(f->type)))
                        return;
                /* json-c keeps values above INT64_MAX as uint64; get_int64 then saturates */
                if (json_object_get_int64(j) < 0 || json_object_get_uint64(j) != v)
                        report(c, "binary %" PRIu64 ", JSON %s", v, json_object_get_string(j));
                return;
        }
        case PROTOBUF_C_TYPE_FLOAT:
        case PROTOBUF_C_TYPE_DOUBLE: {
                double v =
                        f->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)p : *(const double *)p;

                if (!json_object_is_type(j, json_type_double) &&
                    !json_object_is_type(j, json_type_int)) {
                        json_is(c, j, json_type_double, type_name(f->type));
                        return;
                }
                if (json_object_get_double(j) != v)
                        report(c, "binary %.17g, JSON %.17g", v, json_object_get_double(j));
                return;
        }
        case PROTOBUF_C_TYPE_BOOL: {
                bool v = *(const protobuf_c_boolean *)p;

                if (json_is(c, j, json_type_boolean, "bool") && json_object_get_boolean(j) != v)
                        report(c, "binary %s, JSON %s", v ? "true" : "false", v ? "false" : "true");
                return;
        }
        case PROTOBUF_C_TYPE_STRING: {
                const char *v = *(char *const *)p;

                if (!v)
                        v = "";
                if (json_is(c, j, json_type_string, "string") &&
                    strcmp(v, json_object_get_string(j)) != 0)
                        report(c, "binary \"%s\", JSON \"%s\"", v, json_object_get_string(j));
                return;
        }
        case PROTOBUF_C_TYPE_BYTES: {
                const ProtobufCBinaryData *v = p;
                uint8_t *want = NULL;
                size_t want_len = 0;

                if (!json_is(c, j, json_type_string, "bytes"))
                        return;
                if (b64_decode(json_object_get_string(j), (size_t)json_object_get_string_len(j),
                               &want, &want_len) < 0) {
                        report(c, "JSON bytes are not base64: \"%s\"", json_object_get_string(j));
                        return;
                }
                if (v->len != want_len || (want_len && memcmp(v->data, want, want_len) != 0))
                        report(c, "binary bytes (%zu) differ from JSON \"%s\" (%zu)", v->len,
                               json_object_get_string(j), want_len);
                free(want);
                return;
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessage *v = *(ProtobufCMessage *const *)p;

                if (!json_is(c, j, json_type_object, "message"))
                        return;
                if (!v) {
                        report(c, "absent from binary, JSON has an object");
                        return;
                }
                compare_message(c, f->descriptor, v, j);
                return;
        }
        }
        report(c, "unknown field type %d", (int)f->type);
}

/* Writes a map key as JSON spells it (object keys are strings); returns false if unsupported. */
static bool map_key_string(const ProtobufCFieldDescriptor *kf, const void *p, char *buf, size_t n)
{
        switch (kf->type) {
        case PROTOBUF_C_TYPE_STRING: {
                const char *s = *(char *const *)p;

                snprintf(buf, n, "%s", s ? s : "");
                return true;
        }
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                snprintf(buf, n, "%" PRId32, *(const int32_t *)p);
                return true;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                snprintf(buf, n, "%" PRId64, *(const int64_t *)p);
                return true;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                snprintf(buf, n, "%" PRIu32, *(const uint32_t *)p);
                return true;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                snprintf(buf, n, "%" PRIu64, *(const uint64_t *)p);
                return true;
        case PROTOBUF_C_TYPE_BOOL:
                snprintf(buf, n, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
                return true;
        case PROTOBUF_C_TYPE_FLOAT:
        case PROTOBUF_C_TYPE_DOUBLE:
        case PROTOBUF_C_TYPE_ENUM:
        case PROTOBUF_C_TYPE_BYTES:
        case PROTOBUF_C_TYPE_MESSAGE:
                break;
        }
        return false;
}

/* Map entries against a JSON object, as sets: same size, and every key found on both sides. */
static void compare_map(struct cmp *c, const ProtobufCFieldDescriptor *f,
                        ProtobufCMessage *const *entries, size_t n, struct json_object *j)
{
        const ProtobufCMessageDescriptor *ed = f->descriptor;
        const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
        char key[512];

        if (!json_is(c, j, json_type_object, "map"))
                return;
        if ((size_t)json_object_object_length(j) != n)
                report(c, "binary has %zu entries, JSON %d", n, json_object_object_length(j));
        for (size_t i = 0; i < n; i++) {
                struct json_object *v;
                size_t old;

                if (!map_key_string(kf, member(entries[i], kf->offset), key, sizeof(key))) {
                        report(c, "unsupported map key type %s", type_name(kf->type));
                        return;
                }
                old = path_push(c, "{%s}", key);
                if (json_object_object_get_ex(j, key, &v))
                        compare_value(c, vf, member(entries[i], vf->offset), v);
                else
                        report(c, "key in binary, not in JSON");
                path_pop(c, old);
        }
        for (struct json_object_iterator it = json_object_iter_begin(j),
                                         end = json_object_iter_end(j);
             !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
                const char *jkey = json_object_iter_peek_name(&it);
                bool found = false;

                for (size_t i = 0; i < n && !found; i++)
                        found = map_key_string(kf, member(entries[i], kf->offset), key,
                                               sizeof(key)) &&
                                strcmp(key, jkey) == 0;
                if (!found) {
                        size_t old = path_push(c, "{%s}", jkey);

                        report(c, "key in JSON, not in binary");
                        path_pop(c, old);
                }
        }
}

static void compare_field(struct cmp *c, const ProtobufCMessageDescriptor *desc,
                          const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                          struct json_object *j)
{
        size_t old = path_push_field(c, f->name);

        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                size_t n = *(const size_t *)member(m, f->quantifier_offset);
                const char *arr = *(char *const *)member(m, f->offset);
                size_t sz = type_size(f->type);

                if (is_map_field(desc, f)) {
                        compare_map(c, f, (ProtobufCMessage *const *)(const void *)arr, n, j);
                } else if (json_is(c, j, json_type_array, "repeated")) {
                        size_t jn = json_object_array_length(j);

                        if (jn != n)
                                report(c, "binary has %zu elements, JSON %zu", n, jn);
                        for (size_t i = 0; i < n && i < jn; i++) {
                                size_t eold = path_push(c, "[%zu]", i);

                                compare_value(c, f, arr + i * sz, json_object_array_get_idx(j, i));
                                path_pop(c, eold);
                        }
                }
        } else if (json_object_is_type(j, json_type_null)) {
                if (field_is_set(m, f))
                        report(c, "set in binary, null in JSON");
        } else if ((f->label == PROTOBUF_C_LABEL_OPTIONAL ||
                    (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) &&
                   !field_is_set(m, f)) {
                report(c, "absent from binary, JSON has %s", json_object_get_string(j));
        } else {
                compare_value(c, f, member(m, f->offset), j);
        }
        path_pop(c, old);
}

static void compare_message(struct cmp *c, const ProtobufCMessageDescriptor *desc,
                            const ProtobufCMessage *m, struct json_object *j)
{
        if (m->descriptor != desc) {
                report(c, "message is %s, expected %s", m->descriptor->name, desc->name);
                return;
        }
        /* protobuf-c keeps fields it does not know and packs them again, at the end */
        for (unsigned i = 0; i < m->n_unknown_fields; i++)
                report(c, "field %" PRIu32 " on the wire is not in %s", m->unknown_fields[i].tag,
                       desc->name);
        if (!json_is(c, j, json_type_object, "message"))
                return;
        for (struct json_object_iterator it = json_object_iter_begin(j),
                                         end = json_object_iter_end(j);
             !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
                const char *key = json_object_iter_peek_name(&it);
                const ProtobufCFieldDescriptor *f =
                        protobuf_c_message_descriptor_get_field_by_name(desc, key);

                if (!f) {
                        size_t old = path_push_field(c, key);

                        report(c, "JSON key has no field in %s", desc->name);
                        path_pop(c, old);
                        continue;
                }
                compare_field(c, desc, m, f, json_object_iter_peek_value(&it));
        }
        for (unsigned i = 0; i < desc->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &desc->fields[i];

                if (!json_object_object_get_ex(j, f->name, NULL) && field_is_set(m, f)) {
                        size_t old = path_push_field(c, f->name);

                        report(c, "set in binary, absent from JSON");
                        path_pop(c, old);
                }
        }
}

/*
 * SCHEMA.txt: top-level "enum E" / "message M" lines, then indented members. Message fields
 * are "  NUMBER NAME LABEL TYPE"; nested enums are "  enum E" with "    NUMBER NAME" values.
 */

/* The line after "<header>\n" at the given indent, or NULL. */
static const char *schema_find(const char *from, unsigned indent, const char *kind,
                               const char *name)
{
        size_t klen = strlen(kind), nlen = strlen(name);

        for (const char *l = from; *l;) {
                const char *eol = strchr(l, '\n');
                size_t ind = strspn(l, " ");

                if (ind < indent)
                        return NULL; /* left the enclosing block */
                if (ind == indent && strncmp(l + ind, kind, klen) == 0 && l[ind + klen] == ' ' &&
                    strncmp(l + ind + klen + 1, name, nlen) == 0 &&
                    l + ind + klen + 1 + nlen == eol)
                        return eol + 1;
                if (!eol)
                        break;
                l = eol + 1;
        }
        return NULL;
}

/* Copies the next line of a block (indent > parent) into buf; returns the line after it. */
static const char *schema_next(const char *l, unsigned parent, char *buf, size_t n,
                               unsigned *ret_indent)
{
        const char *eol;
        size_t len;

        if (!l || !*l || strspn(l, " ") <= parent)
                return NULL;
        eol = strchr(l, '\n');
        len = eol ? (size_t)(eol - l) : strlen(l);
        *ret_indent = (unsigned)strspn(l, " ");
        snprintf(buf, n, "%.*s", (int)len, l);
        return eol ? eol + 1 : l + len;
}

static void check_schema_enum(struct cmp *c, const char *schema, const ProtobufCEnumDescriptor *ed)
{
        const char *name = ed->name + strlen(PROTO_PACKAGE "."), *dot = strchr(name, '.');
        const char *l;
        unsigned base = 0, indent, n = 0;
        char line[256];

        if (dot) { /* nested in a message: "Msg.Enum" */
                char msg[128];

                snprintf(msg, sizeof(msg), "%.*s", (int)(dot - name), name);
                l = schema_find(schema, 0, "message", msg);
                l = l ? schema_find(l, 2, "enum", dot + 1) : NULL;
                base = 2;
        } else {
                l = schema_find(schema, 0, "enum", name);
        }
        if (!l) {
                report(c, "schema: enum %s not in SCHEMA.txt", name);
                return;
        }
        while ((l = schema_next(l, base, line, sizeof(line), &indent))) {
                const ProtobufCEnumValue *v;
                char vname[128];
                int num;

                if (indent != base + 2 || sscanf(line, "%d %127s", &num, vname) != 2)
                        continue;
                n++;
                v = protobuf_c_enum_descriptor_get_value_by_name(ed, vname);
                if (!v)
                        report(c, "schema: enum %s lacks %s = %d", name, vname, num);
                else if (v->value != num)
                        report(c, "schema: enum %s: %s = %d, SCHEMA.txt says %d", name, vname,
                               v->value, num);
        }
        if (n != ed->n_values)
                report(c, "schema: enum %s has %u values, SCHEMA.txt %u", name, ed->n_values, n);
}

/* Whether field f has the SCHEMA.txt type t (a scalar name, or a message/enum name). */
static bool schema_type_matches(struct cmp *c, const char *schema,
                                const ProtobufCFieldDescriptor *f, const char *t)
{
        const char *full;

        if (f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_ENUM)
                return strcmp(type_name(f->type), t) == 0;
        full = f->type == PROTOBUF_C_TYPE_MESSAGE
                       ? ((const ProtobufCMessageDescriptor *)f->descriptor)->name
                       : ((const ProtobufCEnumDescriptor *)f->descriptor)->name;
        if (strncmp(full, PROTO_PACKAGE ".", strlen(PROTO_PACKAGE ".")) != 0 ||
            strcmp(full + strlen(PROTO_PACKAGE "."), t) != 0)
                return false;
        if (f->type == PROTOBUF_C_TYPE_ENUM)
                check_schema_enum(c, schema, f->descriptor);
        return true;
}

static const char *label_name(const ProtobufCMessageDescriptor *desc,
                              const ProtobufCFieldDescriptor *f)
{
        switch (f->label) {
        case PROTOBUF_C_LABEL_NONE:
                return "singular";
        case PROTOBUF_C_LABEL_REPEATED:
                return is_map_field(desc, f) ? "map" : "repeated";
        case PROTOBUF_C_LABEL_REQUIRED:
                return "required";
        case PROTOBUF_C_LABEL_OPTIONAL:
                return "optional";
        }
        return "?";
}

static void check_schema_field(struct cmp *c, const char *schema,
                               const ProtobufCMessageDescriptor *desc, unsigned num,
                               const char *name, const char *label, const char *type)
{
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(desc, num);
        size_t old = path_push_field(c, name);

        if (!f) {
                report(c, "schema: field %u missing from the proto", num);
                goto out;
        }
        if (strcmp(f->name, name) != 0)
                report(c, "schema: field %u is named %s in the proto", num, f->name);
        if (strcmp(label_name(desc, f), label) != 0) {
                report(c, "schema: label %s in the proto, SCHEMA.txt %s", label_name(desc, f),
                       label);
        } else if (strcmp(label, "map") == 0) {
                const ProtobufCMessageDescriptor *ed = f->descriptor;
                char kt[64], vt[128];

                if (sscanf(type, "map<%63[^,],%127[^>]>", kt, vt) != 2 ||
                    !schema_type_matches(c, schema, &ed->fields[0], kt) ||
                    !schema_type_matches(c, schema, &ed->fields[1], vt))
                        report(c, "schema: map<%s,%s> in the proto, SCHEMA.txt %s",
                               type_name(ed->fields[0].type), type_name(ed->fields[1].type), type);
        } else if (!schema_type_matches(c, schema, f, type)) {
                report(c, "schema: type %s in the proto, SCHEMA.txt %s", type_name(f->type), type);
        }
out:
        path_pop(c, old);
}

static void check_schema(struct cmp *c, const char *schema, const ProtobufCMessageDescriptor *desc)
{
        const char *l = schema_find(schema, 0, "message", desc->short_name);
        unsigned indent, n = 0;
        char line[512];

        if (!l) {
                report(c, "schema: message not in SCHEMA.txt");
                return;
        }
        while ((l = schema_next(l, 0, line, sizeof(line), &indent))) {
                char name[128], label[32], type[160];
                unsigned num;

                if (indent != 2 ||
                    sscanf(line, "%u %127s %31s %159s", &num, name, label, type) != 4)
                        continue; /* a nested enum or its values */
                n++;
                check_schema_field(c, schema, desc, num, name, label, type);
        }
        if (n != desc->n_fields)
                report(c, "schema: %u fields in the proto, SCHEMA.txt %u", desc->n_fields, n);
}

/* The top-level message "runtime.v1.<short_name>"; nested map entries never match. */
static const ProtobufCMessageDescriptor *find_descriptor(const char *short_name)
{
        const size_t plen = strlen(PROTO_PACKAGE ".");

        for (size_t i = 0; i < sizeof(all_descriptors) / sizeof(all_descriptors[0]); i++) {
                const ProtobufCMessageDescriptor *d = all_descriptors[i];

                if (strcmp(d->short_name, short_name) == 0 &&
                    strncmp(d->name, PROTO_PACKAGE ".", plen) == 0 &&
                    strcmp(d->name + plen, short_name) == 0)
                        return d;
        }
        return NULL;
}

static void test_golden_message(void **state)
{
        const struct golden_case *gc = *state;
        const ProtobufCMessageDescriptor *desc = find_descriptor(gc->name);
        struct cmp c = {.msg = gc->name};
        char path[4096];
        uint8_t *bin = NULL, *packed = NULL;
        size_t bin_len = 0, packed_len;
        struct json_object *json = NULL;
        ProtobufCMessage *m = NULL;
        int r;

        if (!desc)
                fail_msg("%s: golden message has no descriptor in proto/api.proto", gc->name);

        snprintf(path, sizeof(path), "%s/%s.bin", GOLDEN_DIR, gc->name);
        r = read_all(path, &bin, &bin_len);
        if (r < 0)
                fail_msg("%s: %s", path, strerror(-r));
        snprintf(path, sizeof(path), "%s/%s.json", GOLDEN_DIR, gc->name);
        json = json_object_from_file(path);
        if (!json) {
                report(&c, "%s: %s", path, json_util_get_last_err());
                goto out;
        }

        m = protobuf_c_message_unpack(desc, NULL, bin_len, bin);
        if (!m) {
                report(&c, "%s.bin does not unpack as %s", gc->name, desc->name);
        } else {
                compare_message(&c, desc, m, json);

                packed_len = protobuf_c_message_get_packed_size(m);
                packed = malloc(packed_len ? packed_len : 1);
                assert_non_null(packed);
                if (protobuf_c_message_pack(m, packed) != packed_len)
                        report(&c, "pack wrote a size other than get_packed_size");
                else if (packed_len != bin_len || memcmp(packed, bin, bin_len) != 0) {
                        size_t at = 0;

                        while (at < packed_len && at < bin_len && packed[at] == bin[at])
                                at++;
                        report(&c,
                               "repacked %zu bytes differ from %s.bin (%zu bytes) at offset %zu",
                               packed_len, gc->name, bin_len, at);
                }
        }
        check_schema(&c, gc->set->schema, desc);
out:
        free(packed);
        if (m)
                protobuf_c_message_free_unpacked(m, NULL);
        json_object_put(json);
        free(bin);
        if (c.failures)
                fail_msg("%s: %u mismatch(es)%s", gc->name, c.failures,
                         c.failures > MAX_REPORTS ? " (first ones shown)" : "");
}

static void test_golden_count(void **state)
{
        const struct golden_set *set = *state;

        if (set->n_names < GOLDEN_MIN_MESSAGES)
                fail_msg("%s holds %zu *.bin files, expected at least %d", GOLDEN_DIR, set->n_names,
                         GOLDEN_MIN_MESSAGES);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The other direction: every top-level message of the proto has a golden vector. */
static void test_proto_messages_have_vectors(void **state)
{
        const struct golden_set *set = *state;
        unsigned missing = 0;

        for (size_t i = 0; i < sizeof(all_descriptors) / sizeof(all_descriptors[0]); i++) {
                const ProtobufCMessageDescriptor *d = all_descriptors[i];
                const char *key = d->short_name;

                if (find_descriptor(d->short_name) != d)
                        continue; /* nested: a map entry */
                if (!bsearch(&key, set->names, set->n_names, sizeof(char *), cmp_str)) {
                        print_error("%s: in the proto, no golden vector\n", d->name);
                        missing++;
                }
        }
        if (missing)
                fail_msg("%u proto message(s) without a golden vector", missing);
}

static void golden_set_done(struct golden_set *set)
{
        for (size_t i = 0; i < set->n_names; i++)
                free(set->names[i]);
        free(set->names);
        free(set->schema);
}

static int golden_set_load(struct golden_set *set)
{
        size_t cap = 0, schema_len;
        uint8_t *schema = NULL;
        struct dirent *de;
        DIR *d;
        int r;

        r = read_all(GOLDEN_DIR "/SCHEMA.txt", &schema, &schema_len);
        if (r < 0) {
                fprintf(stderr, "%s/SCHEMA.txt: %s\n", GOLDEN_DIR, strerror(-r));
                return r;
        }
        set->schema = (char *)schema;
        d = opendir(GOLDEN_DIR);
        if (!d) {
                r = -errno;
                fprintf(stderr, "%s: %s\n", GOLDEN_DIR, strerror(-r));
                return r;
        }
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);

                if (len <= 4 || strcmp(de->d_name + len - 4, ".bin") != 0)
                        continue;
                if (set->n_names == cap) {
                        char **n = realloc(set->names, (cap ? cap * 2 : 256) * sizeof(char *));

                        if (!n)
                                break;
                        set->names = n;
                        cap = cap ? cap * 2 : 256;
                }
                set->names[set->n_names] = strndup(de->d_name, len - 4);
                if (!set->names[set->n_names])
                        break;
                set->n_names++;
        }
        r = de ? -ENOMEM : 0;
        closedir(d);
        if (r < 0)
                return r;
        qsort(set->names, set->n_names, sizeof(char *), cmp_str);
        return 0;
}

int main(void)
{
        struct golden_set set = {0};
        struct golden_case *cases = NULL;
        struct CMUnitTest *tests = NULL;
        size_t n = 0;
        int r = 1;

        if (golden_set_load(&set) < 0)
                goto out;
        cases = calloc(set.n_names, sizeof(*cases));
        tests = calloc(set.n_names + 2, sizeof(*tests));
        if ((set.n_names && !cases) || !tests)
                goto out;

        tests[n++] = (struct CMUnitTest){
                .name = "golden_count", .test_func = test_golden_count, .initial_state = &set};
        tests[n++] = (struct CMUnitTest){.name = "proto_messages_have_vectors",
                                         .test_func = test_proto_messages_have_vectors,
                                         .initial_state = &set};
        for (size_t i = 0; i < set.n_names; i++) {
                cases[i] = (struct golden_case){.set = &set, .name = set.names[i]};
                tests[n++] = (struct CMUnitTest){.name = set.names[i],
                                                 .test_func = test_golden_message,
                                                 .initial_state = &cases[i]};
        }
        /* cmocka_run_group_tests() takes sizeof of an array; this one is built at runtime */
        r = _cmocka_run_group_tests("cri_golden", tests, n, NULL, NULL);
out:
        free(tests);
        free(cases);
        golden_set_done(&set);
        return r;
}
