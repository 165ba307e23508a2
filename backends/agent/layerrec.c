/*
 * Layer records (proto.h, IMAGE LAYERS): the encoder runtd uses and the checked decoder and
 * stream reader runt-agent uses. libc only, like proto.c. The reader's input is the host's,
 * which the agent does not trust: every length is bounded before anything is allocated,
 * and no size is believed beyond the bytes that actually came.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define NAME_MAX_BYTES 255

enum { S_LEN, S_HDR, S_DATA, S_DONE };

static const char *type_name(int t)
{
        static const char *const names[] = {"?",         "file",      "directory",
                                            "symlink",   "hard link", "char dev",
                                            "block dev", "fifo",      "socket"};

        return t >= AG_LT_REG && t <= AG_LT_SOCKET ? names[t] : names[0];
}

void ag_lent_put(struct ag_buf *b, const struct ag_lent *e)
{
        static const uint8_t zero[4];
        size_t off = b->len;
        size_t hlen;

        ag_put_raw(b, zero, sizeof(zero));
        ag_put_str(b, AG_A_L_PATH, e->path ? e->path : "");
        ag_put_u64(b, AG_A_L_TYPE, e->type);
        if (e->type != AG_LT_SYMLINK && e->type != AG_LT_HARDLINK)
                ag_put_u64(b, AG_A_L_MODE, e->mode & 07777);
        if (e->type != AG_LT_HARDLINK) {
                ag_put_u64(b, AG_A_L_UID, e->uid);
                ag_put_u64(b, AG_A_L_GID, e->gid);
                ag_put_u64(b, AG_A_L_MTIME_NS, e->mtime_ns);
        }
        if (e->type == AG_LT_CHAR || e->type == AG_LT_BLOCK)
                ag_put_u64(b, AG_A_L_RDEV,
                           (int64_t)((uint64_t)e->rdev_major << 32 | e->rdev_minor));
        if (e->link)
                ag_put_str(b, AG_A_L_LINK, e->link);
        for (size_t i = 0; i < e->n_xattrs; i++) {
                size_t n = ag_nest_begin(b, AG_A_L_XATTR);

                ag_put_str(b, AG_A_L_XNAME, e->xattrs[i].name);
                ag_put_bytes(b, AG_A_L_XVALUE, e->xattrs[i].value, e->xattrs[i].len);
                ag_nest_end(b, n);
        }
        if (e->type == AG_LT_REG)
                ag_put_u64(b, AG_A_L_SIZE, (int64_t)e->size);
        if (b->err)
                return;
        hlen = b->len - off - sizeof(zero);
        if (hlen > AG_LAYER_HDR_MAX) {
                b->err = -EMSGSIZE;
                return;
        }
        b->data[off] = (uint8_t)(hlen >> 24);
        b->data[off + 1] = (uint8_t)(hlen >> 16);
        b->data[off + 2] = (uint8_t)(hlen >> 8);
        b->data[off + 3] = (uint8_t)hlen;
}

void ag_lent_put_end(struct ag_buf *b)
{
        static const uint8_t zero[4];

        ag_put_raw(b, zero, sizeof(zero));
}

void ag_lent_done(struct ag_lent *e)
{
        free(e->path);
        free(e->link);
        for (size_t i = 0; i < e->n_xattrs; i++) {
                free(e->xattrs[i].name);
                free(e->xattrs[i].value);
        }
        free(e->xattrs);
        memset(e, 0, sizeof(*e));
}

int ag_layer_path_check(const char *path, bool root_ok)
{
        size_t n = strlen(path);
        const char *p = path;

        if (n == 0)
                return root_ok ? 0 : -EINVAL;
        if (n > AG_LAYER_PATH_MAX)
                return -ENAMETOOLONG;
        for (;;) {
                const char *slash = strchr(p, '/');
                size_t c = slash ? (size_t)(slash - p) : strlen(p);

                if (c == 0)
                        return -EINVAL; /* a leading, doubled or trailing '/' */
                if (c > NAME_MAX_BYTES)
                        return -ENAMETOOLONG;
                if ((c == 1 && p[0] == '.') || (c == 2 && p[0] == '.' && p[1] == '.'))
                        return -EINVAL;
                if (!slash)
                        return 0;
                p = slash + 1;
        }
}

static int path_err(int r, const char *what, const char *path, char *msg, size_t msize)
{
        if (r == -ENAMETOOLONG)
                snprintf(msg, msize,
                         "%s '%.200s...': too long (a name over 255 bytes or %u in all)", what,
                         path, AG_LAYER_PATH_MAX);
        else
                snprintf(msg, msize,
                         "%s '%.200s': not a relative path of plain names (absolute, empty, '.' "
                         "or '..' component)",
                         what, path);
        return r;
}

static int decode_xattr(struct ag_lent *e, const struct ag_attr *a, char *msg, size_t msize)
{
        struct ag_xattr x = {0};
        bool has_value = false;
        struct ag_iter it;
        struct ag_attr sub;
        int r;

        if (e->n_xattrs >= AG_LAYER_XATTR_MAX) {
                snprintf(msg, msize, "more than %u xattrs", AG_LAYER_XATTR_MAX);
                return -EPROTO;
        }
        ag_iter_init(&it, a->val, a->len);
        while ((r = ag_iter_next(&it, &sub)) > 0) {
                if (sub.tag == AG_A_L_XNAME) {
                        r = ag_attr_set_str(&x.name, &sub);
                } else if (sub.tag == AG_A_L_XVALUE) {
                        if (sub.len > AG_LAYER_XVALUE_MAX) {
                                r = -EPROTO;
                                snprintf(msg, msize, "an xattr value of %u bytes", sub.len);
                                break;
                        }
                        free(x.value);
                        x.value = malloc(sub.len ? sub.len : 1);
                        if (!x.value) {
                                r = -ENOMEM;
                                break;
                        }
                        memcpy(x.value, sub.val, sub.len);
                        x.len = sub.len;
                        has_value = true;
                }
                if (r < 0)
                        break;
        }
        if (r == 0 && (!x.name || !x.name[0] || strlen(x.name) > NAME_MAX_BYTES)) {
                r = -EPROTO;
                snprintf(msg, msize, "an xattr without a name of 1 to 255 bytes");
        }
        if (r == 0 && !has_value) {
                x.value = malloc(1);
                if (!x.value)
                        r = -ENOMEM;
        }
        if (r == 0) {
                struct ag_xattr *v = realloc(e->xattrs, (e->n_xattrs + 1) * sizeof(*v));

                if (!v) {
                        r = -ENOMEM;
                } else {
                        e->xattrs = v;
                        e->xattrs[e->n_xattrs++] = x;
                        return 0;
                }
        }
        if (r == -EPROTO && !msg[0])
                snprintf(msg, msize, "a malformed xattr");
        free(x.name);
        free(x.value);
        return r;
}

/* The header's attributes into @e; structure only (checks after). */
static int decode_attrs(const uint8_t *p, size_t len, struct ag_lent *e, bool *has_path,
                        bool *has_type, char *msg, size_t msize)
{
        struct ag_iter it;
        struct ag_attr a;
        int64_t v;
        int r;

        ag_iter_init(&it, p, len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                switch (a.tag) {
                case AG_A_L_PATH:
                        r = ag_attr_set_str(&e->path, &a);
                        *has_path = true;
                        break;
                case AG_A_L_LINK:
                        r = ag_attr_set_str(&e->link, &a);
                        break;
                case AG_A_L_XATTR:
                        r = decode_xattr(e, &a, msg, msize);
                        break;
                case AG_A_L_TYPE:
                case AG_A_L_MODE:
                case AG_A_L_UID:
                case AG_A_L_GID:
                case AG_A_L_MTIME_NS:
                case AG_A_L_RDEV:
                case AG_A_L_SIZE:
                        r = ag_attr_i64(&a, &v);
                        if (r < 0)
                                break;
                        if (a.tag == AG_A_L_TYPE) {
                                if (v < AG_LT_REG || v > AG_LT_SOCKET)
                                        r = -EPROTO;
                                else
                                        e->type = (int)v;
                                *has_type = true;
                        } else if (a.tag == AG_A_L_MODE) {
                                if (v & ~(int64_t)07777)
                                        r = -EPROTO;
                                else
                                        e->mode = (uint32_t)v;
                        } else if (a.tag == AG_A_L_UID || a.tag == AG_A_L_GID) {
                                /* (uid_t)-1 means "unchanged" to chown: not an owner. */
                                if (v < 0 || v >= (int64_t)UINT32_MAX)
                                        r = -EPROTO;
                                else if (a.tag == AG_A_L_UID)
                                        e->uid = (uint32_t)v;
                                else
                                        e->gid = (uint32_t)v;
                        } else if (a.tag == AG_A_L_MTIME_NS) {
                                e->mtime_ns = v;
                        } else if (a.tag == AG_A_L_RDEV) {
                                e->rdev_major = (uint32_t)((uint64_t)v >> 32);
                                e->rdev_minor = (uint32_t)v;
                        } else {
                                if (v < 0)
                                        r = -EPROTO;
                                else
                                        e->size = (uint64_t)v;
                        }
                        break;
                default:
                        break; /* a newer host's field */
                }
                if (r < 0)
                        break;
        }
        if (r < 0 && !msg[0])
                snprintf(msg, msize, "a malformed record header (attribute %u)", a.tag);
        return r < 0 ? r : 0;
}

int ag_lent_decode(const uint8_t *p, size_t len, struct ag_lent *ret, char *msg, size_t msize)
{
        struct ag_lent e = {0};
        bool has_path = false, has_type = false;
        const char *path;
        int r;

        if (msize)
                msg[0] = '\0';
        r = decode_attrs(p, len, &e, &has_path, &has_type, msg, msize);
        if (r < 0)
                goto fail;
        path = e.path ? e.path : "";
        if (!has_path || !has_type) {
                r = -EPROTO;
                snprintf(msg, msize, "a record without a %s", has_path ? "type" : "path");
                goto fail;
        }
        r = ag_layer_path_check(path, e.type == AG_LT_DIR);
        if (r < 0) {
                path_err(r, "entry", path, msg, msize);
                goto fail;
        }
        r = -EPROTO;
        if ((e.rdev_major || e.rdev_minor) && e.type != AG_LT_CHAR && e.type != AG_LT_BLOCK) {
                snprintf(msg, msize, "entry '%.200s': a device number on a %s", path,
                         type_name(e.type));
                goto fail;
        }
        if (e.size && e.type != AG_LT_REG) {
                snprintf(msg, msize, "entry '%.200s': content on a %s", path, type_name(e.type));
                goto fail;
        }
        if (e.type == AG_LT_SYMLINK) {
                if (!e.link || !e.link[0] || strlen(e.link) > AG_LAYER_LINK_MAX) {
                        snprintf(msg, msize,
                                 "entry '%.200s': a symlink needs a target of 1 to %u bytes", path,
                                 AG_LAYER_LINK_MAX);
                        goto fail;
                }
        } else if (e.type == AG_LT_HARDLINK) {
                if (!e.link) {
                        snprintf(msg, msize, "entry '%.200s': a hard link without a target", path);
                        goto fail;
                }
                r = ag_layer_path_check(e.link, false);
                if (r < 0) {
                        path_err(r, "hard link target", e.link, msg, msize);
                        goto fail;
                }
        } else if (e.link) {
                snprintf(msg, msize, "entry '%.200s': a link target on a %s", path,
                         type_name(e.type));
                goto fail;
        }
        if (!e.path) {
                e.path = strdup("");
                if (!e.path) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        *ret = e;
        return 0;
fail:
        if (!msg[0])
                snprintf(msg, msize, "%s", r == -ENOMEM ? "out of memory" : "a malformed record");
        ag_lent_done(&e);
        return r;
}

/* ---- the stream reader ---- */

void ag_lreader_init(struct ag_lreader *r, uint64_t max_bytes)
{
        memset(r, 0, sizeof(*r));
        r->max_bytes = max_bytes;
        r->state = S_LEN;
}

void ag_lreader_done(struct ag_lreader *r)
{
        free(r->hdr);
        ag_lent_done(&r->cur);
        memset(r, 0, sizeof(*r));
}

static int fail(struct ag_lreader *r, int err)
{
        r->err = err;
        return err;
}

/* The entry's content is all there: @end, then the next record. */
static int entry_end(struct ag_lreader *r, const struct ag_lreader_ops *ops, void *ud, char *msg,
                     size_t msize)
{
        int rc = ops->end ? ops->end(ud, &r->cur, msg, msize) : 0;

        ag_lent_done(&r->cur);
        r->state = S_LEN;
        r->lenb_got = 0;
        return rc;
}

static int header_done(struct ag_lreader *r, const struct ag_lreader_ops *ops, void *ud, char *msg,
                       size_t msize)
{
        int rc;

        rc = ag_lent_decode(r->hdr, r->hlen, &r->cur, msg, msize);
        free(r->hdr);
        r->hdr = NULL;
        if (rc < 0)
                return rc;
        if (++r->entries > AG_LAYER_MAX_ENTRIES) {
                snprintf(msg, msize, "more than %llu entries in a layer",
                         (unsigned long long)AG_LAYER_MAX_ENTRIES);
                return -EFBIG;
        }
        /* What is still to come must fit too: refused before a byte of it is written. */
        if (r->max_bytes && r->cur.size > r->max_bytes - r->total) {
                snprintf(msg, msize,
                         "entry '%.200s': %llu bytes: the layer is over the limit of %llu bytes",
                         r->cur.path, (unsigned long long)r->cur.size,
                         (unsigned long long)r->max_bytes);
                return -EFBIG;
        }
        rc = ops->begin ? ops->begin(ud, &r->cur, msg, msize) : 0;
        if (rc < 0)
                return rc;
        r->left = r->cur.size;
        if (!r->left)
                return entry_end(r, ops, ud, msg, msize);
        r->state = S_DATA;
        return 0;
}

int ag_lreader_feed(struct ag_lreader *r, const uint8_t *p, size_t n,
                    const struct ag_lreader_ops *ops, void *ud, char *msg, size_t msize)
{
        int rc;

        if (msize)
                msg[0] = '\0';
        if (r->err) {
                snprintf(msg, msize, "the layer stream failed before");
                return r->err;
        }
        if (r->max_bytes && n > r->max_bytes - r->total) {
                snprintf(msg, msize, "the layer is over the limit of %llu bytes",
                         (unsigned long long)r->max_bytes);
                return fail(r, -EFBIG);
        }
        r->total += n;
        while (n) {
                size_t k;

                switch (r->state) {
                case S_LEN:
                        k = sizeof(r->lenb) - r->lenb_got;
                        k = k < n ? k : n;
                        memcpy(r->lenb + r->lenb_got, p, k);
                        r->lenb_got += k;
                        p += k;
                        n -= k;
                        if (r->lenb_got < sizeof(r->lenb))
                                break;
                        r->hlen = (size_t)r->lenb[0] << 24 | (size_t)r->lenb[1] << 16 |
                                  (size_t)r->lenb[2] << 8 | r->lenb[3];
                        if (r->hlen == 0) {
                                r->ended = true;
                                r->state = S_DONE;
                                break;
                        }
                        if (r->hlen > AG_LAYER_HDR_MAX) {
                                snprintf(msg, msize, "a record header of %zu bytes (at most %u)",
                                         r->hlen, AG_LAYER_HDR_MAX);
                                return fail(r, -EPROTO);
                        }
                        r->hdr = malloc(r->hlen);
                        if (!r->hdr) {
                                snprintf(msg, msize, "out of memory");
                                return fail(r, -ENOMEM);
                        }
                        r->hgot = 0;
                        r->state = S_HDR;
                        break;
                case S_HDR:
                        k = r->hlen - r->hgot;
                        k = k < n ? k : n;
                        memcpy(r->hdr + r->hgot, p, k);
                        r->hgot += k;
                        p += k;
                        n -= k;
                        if (r->hgot == r->hlen && (rc = header_done(r, ops, ud, msg, msize)) < 0)
                                return fail(r, rc);
                        break;
                case S_DATA:
                        k = r->left < n ? (size_t)r->left : n;
                        rc = ops->data ? ops->data(ud, &r->cur, p, k, msg, msize) : 0;
                        if (rc < 0)
                                return fail(r, rc);
                        r->left -= k;
                        p += k;
                        n -= k;
                        if (!r->left && (rc = entry_end(r, ops, ud, msg, msize)) < 0)
                                return fail(r, rc);
                        break;
                default:
                        snprintf(msg, msize, "%zu bytes after the end of the layer", n);
                        return fail(r, -EPROTO);
                }
        }
        return 0;
}

int ag_lreader_finish(struct ag_lreader *r, char *msg, size_t msize)
{
        if (msize)
                msg[0] = '\0';
        if (r->err) {
                snprintf(msg, msize, "the layer stream failed before");
                return r->err;
        }
        if (r->ended)
                return 0;
        if (r->state == S_DATA)
                snprintf(msg, msize, "entry '%.200s': truncated: %llu of its bytes missing",
                         r->cur.path, (unsigned long long)r->left);
        else
                snprintf(msg, msize, "the layer stream ended without its end mark (truncated)");
        return fail(r, -EPROTO);
}
