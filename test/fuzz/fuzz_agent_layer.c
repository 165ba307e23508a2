/*
 * libFuzzer target: the agent's reader of LAYER_PUT's record stream (backends/agent/
 * layerrec.c, proto.h IMAGE LAYERS). The input, after its first byte, is what a host sent
 * on the stream, fed to ag_lreader in chunks whose size comes from that first byte, under a
 * byte limit. Beyond not crashing or leaking, what the reader hands the agent is what the
 * agent relies on: every path a checked relative path (a hard link's target too), a
 * symlink's target non-empty and bounded, content only for files and never more than
 * announced, each entry's content whole at its end, no more bytes taken than the limit.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIMIT (1u << 20)

struct state {
        uint64_t left; /* content bytes of the current entry still to come */
        uint64_t content;
        bool in_entry;
        uint8_t sum; /* the content is read, as the agent writes it */
};

static int on_begin(void *ud, const struct ag_lent *e, char *msg, size_t msize)
{
        struct state *s = ud;

        if (s->in_entry || !e->path || ag_layer_path_check(e->path, e->type == AG_LT_DIR) < 0)
                abort();
        if (e->type < AG_LT_REG || e->type > AG_LT_SOCKET || (e->mode & ~07777u))
                abort();
        if (e->size && e->type != AG_LT_REG)
                abort();
        if ((e->rdev_major || e->rdev_minor) && e->type != AG_LT_CHAR && e->type != AG_LT_BLOCK)
                abort();
        if (e->type == AG_LT_HARDLINK && (!e->link || ag_layer_path_check(e->link, false) < 0))
                abort();
        if (e->type == AG_LT_SYMLINK &&
            (!e->link || !e->link[0] || strlen(e->link) > AG_LAYER_LINK_MAX))
                abort();
        if (e->link && e->type != AG_LT_SYMLINK && e->type != AG_LT_HARDLINK)
                abort();
        if (e->n_xattrs > AG_LAYER_XATTR_MAX)
                abort();
        for (size_t i = 0; i < e->n_xattrs; i++)
                if (!e->xattrs[i].name[0] || strlen(e->xattrs[i].name) > 255 ||
                    e->xattrs[i].len > AG_LAYER_XVALUE_MAX || !e->xattrs[i].value)
                        abort();
        if (e->size > LIMIT)
                abort(); /* refused before begin */
        s->in_entry = true;
        s->left = e->size;
        if (e->path[0] == 'X') { /* a callback's refusal now and then */
                snprintf(msg, msize, "no room");
                return -ENOSPC;
        }
        return 0;
}

static int on_data(void *ud, const struct ag_lent *e, const uint8_t *p, size_t n, char *msg,
                   size_t msize)
{
        struct state *s = ud;

        (void)e, (void)msg, (void)msize;
        if (!s->in_entry || n == 0 || n > s->left)
                abort();
        for (size_t i = 0; i < n; i++)
                s->sum ^= p[i];
        s->left -= n;
        s->content += n;
        return 0;
}

static int on_end(void *ud, const struct ag_lent *e, char *msg, size_t msize)
{
        struct state *s = ud;

        (void)e, (void)msg, (void)msize;
        if (!s->in_entry || s->left)
                abort();
        s->in_entry = false;
        return 0;
}

static const struct ag_lreader_ops ops = {.begin = on_begin, .data = on_data, .end = on_end};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct state s = {0};
        struct ag_lreader r;
        char msg[512];
        size_t chunk, pos = 1;
        int rc = 0;

        if (size < 1 || size > 4u << 20)
                return 0;
        chunk = (size_t)data[0] * 61 + 1;
        ag_lreader_init(&r, LIMIT);
        while (pos < size && rc == 0) {
                size_t n = size - pos < chunk ? size - pos : chunk;

                rc = ag_lreader_feed(&r, data + pos, n, &ops, &s, msg, sizeof(msg));
                if (rc < 0 && (!msg[0] || strlen(msg) >= sizeof(msg)))
                        abort(); /* every refusal says why */
                pos += n;
        }
        if (rc == 0) {
                rc = ag_lreader_finish(&r, msg, sizeof(msg));
                if (rc == 0 && (s.in_entry || !r.ended))
                        abort();
        }
        if (r.total > LIMIT || s.content > r.total)
                abort();
        ag_lreader_done(&r);
        return 0;
}
