/* stream/spdy.c: SPDY/3.1 framing, header compression, hostile input and flow control. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "error.h"
#include "spdy.h"

/*
 * Reference bytes from a different encoder: Python's zlib (level 9, like the Go framer's
 * BestCompression) with the SPDY/3 dictionary and Z_SYNC_FLUSH after each block, one zlib
 * stream for the whole sequence. ref_exec is what kubectl exec opens (streams 1, 3, 5, 7:
 * streamtype error, stdin, stdout, stderr); ref_portforward is a port-forward pair
 * (stream 1 {port 8080, requestid 0, streamtype error}, stream 3 {streamtype data, ...}).
 */
static const uint8_t ref_exec[] = {
        0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xa6, 0x23, 0x46,
        0x70, 0x3a, 0x2b, 0x29, 0x4a, 0x4d, 0xcc, 0x85, 0x16, 0x25, 0xac, 0xa9, 0xa0, 0x80,
        0x06, 0x00, 0x00, 0x00, 0xff, 0xff, 0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x17,
        0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc2, 0x2e, 0x55, 0x5c,
        0x02, 0xcc, 0x2e, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x80, 0x03, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x19, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc2,
        0x2a, 0x05, 0x4c, 0xe7, 0x29, 0xf9, 0xa5, 0x25, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xc2, 0x29, 0x07, 0x34, 0x14, 0x00, 0x00, 0x00, 0xff, 0xff,
};

static const uint8_t ref_portforward[] = {
        0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3d, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0x25, 0x3a, 0x48, 0xf9, 0x5b,
        0x04, 0x4e, 0xea, 0x16, 0x06, 0x16, 0x06, 0x40, 0x9a, 0xb3, 0x08, 0x12, 0x5f, 0x99, 0xa0,
        0x74, 0xcc, 0x68, 0x00, 0x4e, 0x89, 0x25, 0x45, 0xa9, 0x89, 0xb9, 0xd0, 0xc2, 0x86, 0x35,
        0x15, 0x14, 0x15, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x80, 0x03, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x1a, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x82, 0x6a, 0x46,
        0x95, 0x02, 0x95, 0x43, 0x89, 0x84, 0x8d, 0x04, 0x00, 0x00, 0x00, 0xff, 0xff,
};

struct peer {
        struct spdy_session tx; /* encodes */
        struct spdy_session rx; /* decodes what tx wrote */
        struct spdy_buf wire;
};

static int peer_setup(void **state)
{
        struct peer *p = calloc(1, sizeof(*p));

        assert_non_null(p);
        assert_int_equal(spdy_session_init(&p->tx, NULL, NULL), 0);
        assert_int_equal(spdy_session_init(&p->rx, NULL, NULL), 0);
        *state = p;
        return 0;
}

static int peer_teardown(void **state)
{
        struct peer *p = *state;

        spdy_session_done(&p->tx);
        spdy_session_done(&p->rx);
        spdy_buf_done(&p->wire);
        free(p);
        return 0;
}

static int take(struct peer *p, struct spdy_frame *f, uint8_t *data_copy, size_t cap)
{
        struct sh_error err = {0};
        size_t used = 0;
        int r = spdy_parse(&p->rx, p->wire.data, p->wire.len, &used, f, &err);

        if (r == 0 && f->type == SPDY_DATA && data_copy) {
                assert_true(f->data_len <= cap);
                memcpy(data_copy, f->data, f->data_len);
                f->data = data_copy;
        }
        if (r != 0 && r != -EAGAIN && r != -EBADMSG)
                print_message("spdy_parse: %d %s\n", r, err.msg);
        spdy_buf_consume(&p->wire, used);
        return r;
}

static void assert_header(const struct spdy_frame *f, const char *name, const char *value)
{
        const struct spdy_header *h = spdy_frame_header(f, name);

        assert_non_null(h);
        assert_int_equal(h->value_len, strlen(value));
        assert_string_equal(h->value, value);
        assert_int_equal(h->name_len, strlen(name));
        assert_string_equal(h->name, name);
}

static void test_roundtrip_all(void **state)
{
        struct peer *p = *state;
        struct spdy_frame f;
        uint8_t copy[64];
        const struct spdy_header req[] = {SPDY_HDR("streamtype", "stdin"), SPDY_HDR("port", "80")};
        const struct spdy_header rep[] = {SPDY_HDR(":status", "200")};
        const struct spdy_setting set[] = {
                {.flags = SPDY_SETTINGS_FLAG_PERSIST_VALUE,
                 .id = SPDY_SETTINGS_INITIAL_WINDOW_SIZE,
                 .value = 131072},
                {.id = SPDY_SETTINGS_MAX_CONCURRENT_STREAMS, .value = 100},
        };

        assert_int_equal(spdy_encode_syn_stream(&p->tx, &p->wire, 5, 3, 7,
                                                SPDY_FLAG_FIN | SPDY_FLAG_UNIDIRECTIONAL, req, 2,
                                                NULL),
                         0);
        assert_int_equal(spdy_encode_syn_reply(&p->tx, &p->wire, 5, SPDY_FLAG_FIN, rep, 1, NULL),
                         0);
        assert_int_equal(spdy_encode_headers(&p->tx, &p->wire, 5, 0, rep, 1, NULL), 0);
        assert_int_equal(spdy_encode_rst_stream(&p->wire, 5, SPDY_RST_CANCEL, NULL), 0);
        assert_int_equal(spdy_encode_settings(&p->wire, SPDY_FLAG_CLEAR_SETTINGS, set, 2, NULL), 0);
        assert_int_equal(spdy_encode_ping(&p->wire, 0xdeadbeef, NULL), 0);
        assert_int_equal(spdy_encode_goaway(&p->wire, 41, SPDY_GOAWAY_INTERNAL_ERROR, NULL), 0);
        assert_int_equal(spdy_encode_window_update(&p->wire, 0, 0x7fffffff, NULL), 0);
        assert_int_equal(spdy_encode_window_update(&p->wire, 9, 1, NULL), 0);
        assert_int_equal(spdy_encode_data(&p->wire, 5, SPDY_FLAG_FIN, "hello", 5, NULL), 0);
        assert_int_equal(spdy_encode_data(&p->wire, 0x7fffffff, 0, NULL, 0, NULL), 0);

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_SYN_STREAM);
        assert_int_equal(f.stream_id, 5);
        assert_int_equal(f.assoc_id, 3);
        assert_int_equal(f.priority, 7);
        assert_int_equal(f.flags, SPDY_FLAG_FIN | SPDY_FLAG_UNIDIRECTIONAL);
        assert_int_equal(f.n_headers, 2);
        assert_string_equal(f.headers[0].name, "streamtype");
        assert_string_equal(f.headers[1].name, "port");
        assert_header(&f, "streamtype", "stdin");
        assert_header(&f, "port", "80");
        assert_null(spdy_frame_header(&f, "nope"));

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_SYN_REPLY);
        assert_int_equal(f.stream_id, 5);
        assert_int_equal(f.flags, SPDY_FLAG_FIN);
        assert_header(&f, ":status", "200");

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_HEADERS);
        assert_int_equal(f.stream_id, 5);
        assert_int_equal(f.flags, 0);
        assert_header(&f, ":status", "200");

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_RST_STREAM);
        assert_int_equal(f.stream_id, 5);
        assert_int_equal(f.status, SPDY_RST_CANCEL);

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_SETTINGS);
        assert_int_equal(f.flags, SPDY_FLAG_CLEAR_SETTINGS);
        assert_int_equal(f.n_settings, 2);
        assert_int_equal(f.settings[0].flags, SPDY_SETTINGS_FLAG_PERSIST_VALUE);
        assert_int_equal(f.settings[0].id, SPDY_SETTINGS_INITIAL_WINDOW_SIZE);
        assert_int_equal(f.settings[0].value, 131072);
        assert_int_equal(f.settings[1].flags, 0);
        assert_int_equal(f.settings[1].id, SPDY_SETTINGS_MAX_CONCURRENT_STREAMS);
        assert_int_equal(f.settings[1].value, 100);

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_PING);
        assert_int_equal(f.ping_id, 0xdeadbeef);

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_GOAWAY);
        assert_int_equal(f.last_good_id, 41);
        assert_int_equal(f.status, SPDY_GOAWAY_INTERNAL_ERROR);

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_WINDOW_UPDATE);
        assert_int_equal(f.stream_id, 0);
        assert_int_equal(f.delta, 0x7fffffff);

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_WINDOW_UPDATE);
        assert_int_equal(f.stream_id, 9);
        assert_int_equal(f.delta, 1);

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_DATA);
        assert_int_equal(f.stream_id, 5);
        assert_int_equal(f.flags, SPDY_FLAG_FIN);
        assert_int_equal(f.data_len, 5);
        assert_memory_equal(f.data, "hello", 5);

        assert_int_equal(take(p, &f, copy, sizeof(copy)), 0);
        assert_int_equal(f.type, SPDY_DATA);
        assert_int_equal(f.stream_id, 0x7fffffff);
        assert_int_equal(f.data_len, 0);

        assert_int_equal(p->wire.len, 0);
        assert_int_equal(take(p, &f, copy, sizeof(copy)), -EAGAIN);
}

static void test_wire_layout(void **state)
{
        struct peer *p = *state;
        const uint8_t ping[] = {0x80, 0x03, 0x00, 0x06, 0x00, 0x00,
                                0x00, 0x04, 0x00, 0x00, 0x00, 0x01};
        const uint8_t rst[] = {0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08,
                               0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x05};
        const uint8_t data[] = {0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x02, 'h', 'i'};
        const uint8_t wu[] = {0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08,
                              0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00};

        assert_int_equal(spdy_encode_ping(&p->wire, 1, NULL), 0);
        assert_int_equal(p->wire.len, sizeof(ping));
        assert_memory_equal(p->wire.data, ping, sizeof(ping));
        p->wire.len = 0;
        assert_int_equal(spdy_encode_rst_stream(&p->wire, 3, SPDY_RST_CANCEL, NULL), 0);
        assert_memory_equal(p->wire.data, rst, sizeof(rst));
        p->wire.len = 0;
        assert_int_equal(spdy_encode_data(&p->wire, 3, SPDY_FLAG_FIN, "hi", 2, NULL), 0);
        assert_memory_equal(p->wire.data, data, sizeof(data));
        p->wire.len = 0;
        assert_int_equal(spdy_encode_window_update(&p->wire, 1, 65536, NULL), 0);
        assert_memory_equal(p->wire.data, wu, sizeof(wu));
        p->wire.len = 0;

        /* The first header block opens the zlib stream: CMF 0x78, FDICT set, and the
         * SPDY/3 dictionary id 0xe3c6a7c2 (adler32 of the 1423-byte dictionary). */
        assert_int_equal(spdy_encode_syn_reply(&p->tx, &p->wire, 1, 0, NULL, 0, NULL), 0);
        assert_true(p->wire.len > 18);
        assert_int_equal(p->wire.data[12], 0x78);
        assert_true(p->wire.data[13] & 0x20);
        assert_int_equal(((unsigned)p->wire.data[12] << 8 | p->wire.data[13]) % 31, 0);
        assert_memory_equal(p->wire.data + 14, "\xe3\xc6\xa7\xc2", 4);
        /* and ends with the sync-flush marker */
        assert_memory_equal(p->wire.data + p->wire.len - 4, "\x00\x00\xff\xff", 4);
}

/* Every prefix of a frame is -EAGAIN with nothing consumed; the whole frame decodes. */
static void test_split_every_byte(void **state)
{
        struct peer *p = *state;
        const struct spdy_header h[] = {SPDY_HDR("streamtype", "stdout"),
                                        SPDY_HDR("requestid", "12")};
        const struct spdy_setting set[] = {{.id = 7, .value = 1000}};
        struct spdy_buf all = {0};
        size_t bounds[16], nb = 0;
        uint8_t payload[300];

        for (size_t i = 0; i < sizeof(payload); i++)
                payload[i] = (uint8_t)i;
        assert_int_equal(spdy_encode_syn_stream(&p->tx, &all, 1, 0, 0, 0, h, 2, NULL), 0);
        bounds[nb++] = all.len;
        assert_int_equal(spdy_encode_syn_reply(&p->tx, &all, 1, 0, h, 1, NULL), 0);
        bounds[nb++] = all.len;
        assert_int_equal(spdy_encode_headers(&p->tx, &all, 1, SPDY_FLAG_FIN, h + 1, 1, NULL), 0);
        bounds[nb++] = all.len;
        assert_int_equal(spdy_encode_data(&all, 1, 0, payload, sizeof(payload), NULL), 0);
        bounds[nb++] = all.len;
        assert_int_equal(spdy_encode_settings(&all, 0, set, 1, NULL), 0);
        bounds[nb++] = all.len;
        assert_int_equal(spdy_encode_ping(&all, 2, NULL), 0);
        bounds[nb++] = all.len;
        assert_int_equal(spdy_encode_goaway(&all, 1, 0, NULL), 0);
        bounds[nb++] = all.len;
        assert_int_equal(spdy_encode_rst_stream(&all, 1, 1, NULL), 0);
        bounds[nb++] = all.len;
        assert_int_equal(spdy_encode_window_update(&all, 1, 10, NULL), 0);
        bounds[nb++] = all.len;

        size_t start = 0;

        for (size_t b = 0; b < nb; b++) {
                size_t flen = bounds[b] - start;
                struct spdy_frame f;
                size_t used = 99;

                for (size_t k = 0; k < flen; k++) {
                        assert_int_equal(spdy_parse(&p->rx, all.data + start, k, &used, &f, NULL),
                                         -EAGAIN);
                        assert_int_equal(used, 0);
                }
                assert_int_equal(spdy_parse(&p->rx, all.data + start, flen, &used, &f, NULL), 0);
                assert_int_equal(used, flen);
                if (b == 0)
                        assert_header(&f, "requestid", "12");
                if (b == 3)
                        assert_memory_equal(f.data, payload, sizeof(payload));
                start = bounds[b];
        }

        /* Byte-at-a-time delivery through a receive buffer yields the same frames. */
        struct spdy_session rx2;
        struct spdy_buf in = {0};
        size_t frames = 0;

        assert_int_equal(spdy_session_init(&rx2, NULL, NULL), 0);
        for (size_t i = 0; i < all.len; i++) {
                assert_int_equal(spdy_buf_append(&in, all.data + i, 1), 0);
                for (;;) {
                        struct spdy_frame f;
                        size_t used;
                        int r = spdy_parse(&rx2, in.data, in.len, &used, &f, NULL);

                        spdy_buf_consume(&in, used);
                        if (r == -EAGAIN)
                                break;
                        assert_int_equal(r, 0);
                        frames++;
                        assert_int_equal(i + 1, bounds[frames - 1]);
                }
        }
        assert_int_equal(frames, nb);
        spdy_session_done(&rx2);
        spdy_buf_done(&in);
        spdy_buf_done(&all);
}

/* Many header blocks on one zlib stream, with repeats the compressor back-references. */
static void test_shared_zlib_stream(void **state)
{
        struct peer *p = *state;
        char val[64];

        for (uint32_t i = 0; i < 50; i++) {
                snprintf(val, sizeof(val), "value-%u-%s", i, i % 2 ? "odd" : "even");
                const struct spdy_header h[] = {SPDY_HDR("streamtype", "stdout"),
                                                SPDY_HDR("x-counter", val),
                                                SPDY_HDR("User-Agent", "kubectl/v1.30")};

                assert_int_equal(
                        spdy_encode_syn_stream(&p->tx, &p->wire, 2 * i + 1, 0, 0, 0, h, 3, NULL),
                        0);
        }
        for (uint32_t i = 0; i < 50; i++) {
                struct spdy_frame f;

                snprintf(val, sizeof(val), "value-%u-%s", i, i % 2 ? "odd" : "even");
                assert_int_equal(take(p, &f, NULL, 0), 0);
                assert_int_equal(f.stream_id, 2 * i + 1);
                assert_int_equal(f.n_headers, 3);
                assert_header(&f, "streamtype", "stdout");
                assert_header(&f, "x-counter", val);
                assert_header(&f, "user-agent", "kubectl/v1.30"); /* lowercased on encode */
        }
}

static void test_reference_exec(void **state)
{
        struct peer *p = *state;
        const char *types[] = {"error", "stdin", "stdout", "stderr"};
        struct spdy_frame f;

        assert_int_equal(spdy_buf_append(&p->wire, ref_exec, sizeof(ref_exec)), 0);
        for (uint32_t i = 0; i < 4; i++) {
                assert_int_equal(take(p, &f, NULL, 0), 0);
                assert_int_equal(f.type, SPDY_SYN_STREAM);
                assert_int_equal(f.stream_id, 2 * i + 1);
                assert_int_equal(f.assoc_id, 0);
                assert_int_equal(f.priority, 0);
                assert_int_equal(f.n_headers, 1);
                assert_header(&f, "streamtype", types[i]);
        }
        assert_int_equal(p->wire.len, 0);
}

static void test_reference_portforward(void **state)
{
        struct peer *p = *state;
        struct spdy_frame f;

        assert_int_equal(spdy_buf_append(&p->wire, ref_portforward, sizeof(ref_portforward)), 0);
        assert_int_equal(take(p, &f, NULL, 0), 0);
        assert_int_equal(f.stream_id, 1);
        assert_int_equal(f.n_headers, 3);
        assert_string_equal(f.headers[0].name, "port");
        assert_header(&f, "port", "8080");
        assert_header(&f, "requestid", "0");
        assert_header(&f, "streamtype", "error");
        assert_int_equal(take(p, &f, NULL, 0), 0);
        assert_int_equal(f.stream_id, 3);
        assert_header(&f, "streamtype", "data");
        assert_header(&f, "port", "8080");
        assert_header(&f, "requestid", "0");
}

/* ---- hand-built frames, independent of any deflate implementation ---- */

static void put32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

struct raw {
        uint8_t b[4096];
        size_t len;
};

static void raw_bytes(struct raw *r, const void *d, size_t n)
{
        assert_true(r->len + n <= sizeof(r->b));
        memcpy(r->b + r->len, d, n);
        r->len += n;
}

static void raw32(struct raw *r, uint32_t v)
{
        uint8_t b[4];

        put32(b, v);
        raw_bytes(r, b, 4);
}

static void raw_str(struct raw *r, const char *s)
{
        raw32(r, (uint32_t)strlen(s));
        raw_bytes(r, s, strlen(s));
}

/*
 * Wraps @nv as a zlib stream slice: when @first, the zlib header 78 f9 (FDICT) with the
 * dictionary id, then one non-final stored deflate block, which is also how a sync flush
 * ends. Nothing here calls deflate.
 */
static void raw_stored(struct raw *r, const struct raw *nv, bool first)
{
        uint8_t h[5] = {0x00, (uint8_t)nv->len, (uint8_t)(nv->len >> 8), (uint8_t)~nv->len,
                        (uint8_t)(~nv->len >> 8)};

        if (first)
                raw_bytes(r, "\x78\xf9\xe3\xc6\xa7\xc2", 6);
        raw_bytes(r, h, sizeof(h));
        raw_bytes(r, nv->b, nv->len);
}

static void raw_control(struct raw *r, uint16_t version, uint16_t type, uint8_t flags,
                        const struct raw *body)
{
        raw32(r, 0x80000000u | (uint32_t)version << 16 | type);
        raw32(r, (uint32_t)flags << 24 | (uint32_t)body->len);
        raw_bytes(r, body->b, body->len);
}

static void raw_syn_stream(struct raw *r, uint32_t id, const struct raw *nv, bool first)
{
        struct raw body = {.len = 0};

        raw32(&body, id);
        raw32(&body, 0);
        raw_bytes(&body, "\x00\x00", 2);
        raw_stored(&body, nv, first);
        raw_control(r, 3, SPDY_SYN_STREAM, 0, &body);
}

static void test_hand_built_syn_stream(void **state)
{
        struct peer *p = *state;
        struct raw nv = {.len = 0}, wire = {.len = 0};
        struct spdy_frame f;

        /* kubectl port-forward's data stream: three headers, multi-value form too. */
        raw32(&nv, 4);
        raw_str(&nv, "streamtype");
        raw_str(&nv, "data");
        raw_str(&nv, "port");
        raw_str(&nv, "8080");
        raw_str(&nv, "requestid");
        raw_str(&nv, "0");
        raw32(&nv, 6);
        raw_bytes(&nv, "accept", 6);
        raw32(&nv, 5);
        raw_bytes(&nv, "a\0b\0c", 5);
        raw_syn_stream(&wire, 3, &nv, true);

        nv.len = 0;
        raw32(&nv, 1);
        raw_str(&nv, "streamtype");
        raw_str(&nv, "error");
        raw_syn_stream(&wire, 5, &nv, false);

        assert_int_equal(spdy_buf_append(&p->wire, wire.b, wire.len), 0);
        assert_int_equal(take(p, &f, NULL, 0), 0);
        assert_int_equal(f.stream_id, 3);
        assert_int_equal(f.n_headers, 4);
        assert_header(&f, "streamtype", "data");
        assert_header(&f, "port", "8080");
        assert_header(&f, "requestid", "0");
        const struct spdy_header *h = spdy_frame_header(&f, "accept");

        assert_non_null(h);
        assert_int_equal(h->value_len, 5);
        assert_memory_equal(h->value, "a\0b\0c", 6); /* raw, plus the terminator */
        assert_int_equal(take(p, &f, NULL, 0), 0);
        assert_int_equal(f.stream_id, 5);
        assert_header(&f, "streamtype", "error");
}

/* A header block error is a stream error: -EBADMSG, frame consumed, session goes on. */
static void expect_stream_error(const struct raw *nv, const char *what)
{
        struct spdy_session s;
        struct raw wire = {.len = 0}, ok = {.len = 0};
        struct sh_error err = {0};
        struct spdy_frame f;
        size_t used;

        assert_int_equal(spdy_session_init(&s, NULL, NULL), 0);
        raw_syn_stream(&wire, 7, nv, true);
        raw32(&ok, 1);
        raw_str(&ok, "streamtype");
        raw_str(&ok, "stdin");
        raw_syn_stream(&wire, 9, &ok, false);

        assert_int_equal(spdy_parse(&s, wire.b, wire.len, &used, &f, &err), -EBADMSG);
        assert_int_equal(err.code, -EBADMSG);
        assert_non_null(strstr(err.msg, what));
        assert_int_equal(f.type, SPDY_SYN_STREAM);
        assert_int_equal(f.stream_id, 7);
        assert_true(used > 0 && used < wire.len);
        assert_int_equal(spdy_parse(&s, wire.b + used, wire.len - used, &used, &f, &err), 0);
        assert_int_equal(f.stream_id, 9);
        assert_header(&f, "streamtype", "stdin");
        spdy_session_done(&s);
}

static void test_bad_header_blocks(void **state)
{
        struct raw nv = {.len = 0};

        (void)state;
        raw32(&nv, 0xffffffffu); /* count overflow */
        raw_str(&nv, "a");
        raw_str(&nv, "b");
        expect_stream_error(&nv, "count");

        nv.len = 0;
        raw32(&nv, 2); /* count exceeding the pairs present */
        raw_str(&nv, "a");
        raw_str(&nv, "b");
        raw32(&nv, 0);
        expect_stream_error(&nv, "count");

        nv.len = 0;
        raw32(&nv, 1);
        raw_str(&nv, "");
        raw_str(&nv, "value");
        expect_stream_error(&nv, "empty name");

        nv.len = 0;
        raw32(&nv, 2);
        raw_str(&nv, "port");
        raw_str(&nv, "1");
        raw_str(&nv, "port");
        raw_str(&nv, "2");
        expect_stream_error(&nv, "duplicate header 'port'");

        nv.len = 0;
        raw32(&nv, 1);
        raw_str(&nv, "Port");
        raw_str(&nv, "1");
        expect_stream_error(&nv, "lowercase");

        nv.len = 0;
        raw32(&nv, 1);
        raw32(&nv, 1000);
        raw_bytes(&nv, "abcdefghijkl", 12); /* name length overruns the block */
        expect_stream_error(&nv, "overruns");

        nv.len = 0;
        raw32(&nv, 1);
        raw_str(&nv, "name");
        raw32(&nv, 1000); /* value length overruns */
        raw_bytes(&nv, "xxxxxxxxxxxxxxxx", 16);
        expect_stream_error(&nv, "overruns");

        nv.len = 0;
        raw32(&nv, 1);
        raw_str(&nv, "name");
        raw32(&nv, 3);
        raw_bytes(&nv, "a\0\0", 3); /* empty NUL-separated part */
        expect_stream_error(&nv, "empty value part");

        nv.len = 0;
        raw32(&nv, 1);
        raw_str(&nv, "name");
        raw_str(&nv, "v");
        raw_bytes(&nv, "junk", 4);
        expect_stream_error(&nv, "stray");

        nv.len = 0;
        raw32(&nv, 1);
        raw_str(&nv, "abcd");
        raw_bytes(&nv, "\0\0", 2); /* value length cut short */
        expect_stream_error(&nv, "truncated value length");

        nv.len = 0;
        raw_bytes(&nv, "\x00\x00", 2); /* shorter than the count */
        expect_stream_error(&nv, "no count");

        nv.len = 0; /* empty block */
        expect_stream_error(&nv, "no count");
}

static void expect_fatal(const struct raw *wire, int code, const char *what)
{
        struct spdy_session s;
        struct sh_error err = {0};
        struct spdy_frame f;
        size_t used = 1;

        assert_int_equal(spdy_session_init(&s, NULL, NULL), 0);
        assert_int_equal(spdy_parse(&s, wire->b, wire->len, &used, &f, &err), code);
        if (!strstr(err.msg, what))
                fail_msg("'%s' not in '%s'", what, err.msg);
        /* The session refuses from now on. */
        assert_int_equal(spdy_parse(&s, wire->b, wire->len, &used, &f, &err), -EPROTO);
        assert_int_equal(used, 0);
        spdy_session_done(&s);
}

static void test_fatal_frames(void **state)
{
        struct raw w = {.len = 0}, body = {.len = 0}, nv = {.len = 0};

        (void)state;
        raw32(&body, 1);
        raw_control(&w, 2, SPDY_PING, 0, &body); /* SPDY/2 */
        expect_fatal(&w, -EPROTO, "version 2");

        w.len = 0;
        raw_control(&w, 3, SPDY_RST_STREAM, 0, &body); /* 4 bytes, not 8 */
        expect_fatal(&w, -EPROTO, "RST_STREAM of 4 bytes");

        w.len = body.len = 0;
        raw32(&body, 0);
        raw32(&body, 1);
        raw_control(&w, 3, SPDY_RST_STREAM, 0, &body);
        expect_fatal(&w, -EPROTO, "stream 0");

        w.len = body.len = 0;
        raw32(&body, 1);
        raw32(&body, 1);
        raw_control(&w, 3, SPDY_PING, 0, &body);
        expect_fatal(&w, -EPROTO, "PING of 8 bytes");

        w.len = body.len = 0;
        raw32(&body, 1);
        raw_control(&w, 3, SPDY_GOAWAY, 0, &body); /* SPDY/2-sized GOAWAY */
        expect_fatal(&w, -EPROTO, "GOAWAY of 4 bytes");

        w.len = body.len = 0;
        raw32(&body, 1);
        raw_control(&w, 3, SPDY_WINDOW_UPDATE, 0, &body);
        expect_fatal(&w, -EPROTO, "WINDOW_UPDATE of 4 bytes");

        w.len = body.len = 0;
        raw32(&body, 3); /* says 3 entries, carries 1 */
        raw32(&body, 7);
        raw32(&body, 1);
        raw_control(&w, 3, SPDY_SETTINGS, 0, &body);
        expect_fatal(&w, -EPROTO, "SETTINGS");

        w.len = body.len = 0;
        raw_bytes(&body, "\0\0\0\1\0\0\0\0\0", 9); /* SYN_STREAM under 10 bytes */
        raw_control(&w, 3, SPDY_SYN_STREAM, 0, &body);
        expect_fatal(&w, -EPROTO, "SYN_STREAM of 9 bytes");

        w.len = body.len = 0;
        raw_bytes(&body, "\0\0\1", 3);
        raw_control(&w, 3, SPDY_SYN_REPLY, 0, &body);
        expect_fatal(&w, -EPROTO, "SYN_REPLY of 3 bytes");

        w.len = 0;
        raw32(&nv, 1);
        raw_str(&nv, "a");
        raw_str(&nv, "b");
        raw_syn_stream(&w, 0, &nv, true);
        expect_fatal(&w, -EPROTO, "stream 0");

        w.len = 0;
        raw32(&w, 0); /* DATA on stream 0 */
        raw32(&w, 0);
        expect_fatal(&w, -EPROTO, "DATA on stream 0");

        /* Bogus lengths are refused from the 8-byte header alone, before buffering. */
        w.len = 0;
        raw32(&w, 0x80030001u);
        raw32(&w, 0x00ffffffu);
        expect_fatal(&w, -EMSGSIZE, "SYN_STREAM frame of 16777215 bytes");

        /* Corrupt zlib data: the header is right, the deflate block type is reserved. */
        w.len = body.len = 0;
        raw32(&body, 1);
        raw32(&body, 0);
        raw_bytes(&body, "\0\0\x78\xf9\xe3\xc6\xa7\xc2\xff\xff\xff", 11);
        raw_control(&w, 3, SPDY_SYN_STREAM, 0, &body);
        expect_fatal(&w, -EPROTO, "corrupt header block");

        /* A peer that finishes its zlib stream (Z_FINISH, not Z_SYNC_FLUSH) leaves nothing
         * for the next header block: refused. */
        nv.len = 0;
        raw32(&nv, 1);
        raw_str(&nv, "a");
        raw_str(&nv, "b");
        w.len = body.len = 0;
        raw32(&body, 1);
        raw32(&body, 0);
        raw_bytes(&body, "\0\0\x78\xf9\xe3\xc6\xa7\xc2", 8);
        uint8_t last[5] = {0x01, (uint8_t)nv.len, 0, (uint8_t)~nv.len, 0xff};

        raw_bytes(&body, last, sizeof(last));
        raw_bytes(&body, nv.b, nv.len);
        raw32(&body, (uint32_t)adler32(1, nv.b, (uInt)nv.len));
        raw_control(&w, 3, SPDY_SYN_STREAM, 0, &body);
        expect_fatal(&w, -EPROTO, "ended its header zlib stream");

        /* A zlib stream primed with some other dictionary. */
        w.len = body.len = 0;
        raw32(&body, 1);
        raw32(&body, 0);
        raw_bytes(&body, "\0\0\x78\xf9\x01\x02\x03\x04\x00\x00\x00\xff\xff", 13);
        raw_control(&w, 3, SPDY_SYN_STREAM, 0, &body);
        expect_fatal(&w, -EPROTO, "dictionary");
}

static void test_data_limit(void **state)
{
        const struct spdy_limits lim = {.max_data_frame = 1024};
        struct spdy_session s;
        struct raw w = {.len = 0};
        struct sh_error err = {0};
        struct spdy_frame f;
        size_t used;

        (void)state;
        assert_int_equal(spdy_session_init(&s, &lim, NULL), 0);
        raw32(&w, 1);
        raw32(&w, 1024);
        assert_int_equal(spdy_parse(&s, w.b, w.len, &used, &f, &err), -EAGAIN); /* at the limit */
        w.len = 0;
        raw32(&w, 1);
        raw32(&w, 1025);
        assert_int_equal(spdy_parse(&s, w.b, w.len, &used, &f, &err), -EMSGSIZE);
        assert_non_null(strstr(err.msg, "DATA frame of 1025 bytes"));
        spdy_session_done(&s);
}

/* A small frame that inflates past the block limit is refused while inflating. */
static void test_inflate_bomb(void **state)
{
        size_t big = 4u << 20;
        char *v = malloc(big + 1);
        struct sh_error err = {0};
        struct spdy_frame f;
        size_t used;
        struct spdy_header h;

        (void)state;
        assert_non_null(v);
        memset(v, 'a', big);
        v[big] = 0;
        h = SPDY_HDR("bomb", v);
        struct spdy_session tx, rx;
        struct spdy_buf out = {0};

        assert_int_equal(spdy_session_init(&tx, NULL, NULL), 0);
        assert_int_equal(spdy_session_init(&rx, NULL, NULL), 0);
        assert_int_equal(spdy_encode_syn_stream(&tx, &out, 1, 0, 0, 0, &h, 1, NULL), 0);
        assert_true(out.len < 64 * 1024); /* ~4 MiB of 'a' deflates to a few KiB */
        assert_int_equal(spdy_parse(&rx, out.data, out.len, &used, &f, &err), -EMSGSIZE);
        assert_non_null(strstr(err.msg, "inflates past 262144"));
        spdy_session_done(&rx);

        /* Exactly at a custom limit is fine; one byte over is not. */
        const struct spdy_limits lim = {.max_header_block = 4 + 4 + 4 + 4 + 1000};

        v[1000] = 0;
        h = SPDY_HDR("bomb", v);
        for (int over = 0; over < 2; over++) {
                struct spdy_session a, b;

                out.len = 0;
                assert_int_equal(spdy_session_init(&a, NULL, NULL), 0);
                assert_int_equal(spdy_session_init(&b, &lim, NULL), 0);
                if (over)
                        h = SPDY_HDR("bombs", v);
                assert_int_equal(spdy_encode_syn_stream(&a, &out, 1, 0, 0, 0, &h, 1, NULL), 0);
                assert_int_equal(spdy_parse(&b, out.data, out.len, &used, &f, &err),
                                 over ? -EMSGSIZE : 0);
                if (!over)
                        assert_int_equal(spdy_frame_header(&f, "bomb")->value_len, 1000);
                spdy_session_done(&a);
                spdy_session_done(&b);
        }
        spdy_session_done(&tx);
        spdy_buf_done(&out);
        free(v);
}

static void test_unknown_control_skipped(void **state)
{
        struct peer *p = *state;
        struct raw w = {.len = 0}, body = {.len = 0};
        struct spdy_frame f;
        size_t used;

        raw_bytes(&body, "whatever payload", 16);
        raw_control(&w, 3, 5, 0, &body);  /* NOOP, gone in SPDY/3 */
        raw_control(&w, 3, 10, 0, &body); /* CREDENTIAL, gone in 3.1 */
        raw_control(&w, 3, 0xfff0, 0, &body);
        body.len = 0;
        raw32(&body, 77);
        raw_control(&w, 3, SPDY_PING, 0, &body);

        assert_int_equal(spdy_parse(&p->rx, w.b, w.len, &used, &f, NULL), 0);
        assert_int_equal(f.type, SPDY_PING);
        assert_int_equal(f.ping_id, 77);
        assert_int_equal(used, w.len);

        /* Skipping works across calls, whatever the length: a partial header waits, then
         * the payload is dropped as it arrives. */
        w.len = 0;
        raw32(&w, 0x8003abcd);
        raw32(&w, 0x00ffffff);
        for (size_t k = 0; k < w.len; k++) {
                assert_int_equal(spdy_parse(&p->rx, w.b, k, &used, &f, NULL), -EAGAIN);
                assert_int_equal(used, 0);
        }
        assert_int_equal(spdy_parse(&p->rx, w.b, w.len, &used, &f, NULL), -EAGAIN);
        assert_int_equal(used, 8);
        size_t left = 0xffffff;
        uint8_t zeros[4096] = {0};

        while (left > 0) {
                size_t n = left < sizeof(zeros) ? left : sizeof(zeros);

                assert_int_equal(spdy_parse(&p->rx, zeros, n, &used, &f, NULL), -EAGAIN);
                assert_int_equal(used, n);
                left -= n;
        }
        w.len = 0;
        raw_control(&w, 3, SPDY_PING, 0, &body);
        assert_int_equal(spdy_parse(&p->rx, w.b, w.len, &used, &f, NULL), 0);
        assert_int_equal(f.ping_id, 77);
}

static void test_encoder_checks(void **state)
{
        struct peer *p = *state;
        struct sh_error err = {0};
        const struct spdy_header dup[] = {SPDY_HDR("Port", "1"), SPDY_HDR("port", "2")};
        const struct spdy_header empty[] = {SPDY_HDR("", "1")};
        const struct spdy_header badv[] = {{.name = "x", .value = "a\0", .value_len = 2}};
        const struct spdy_header multi[] = {{.name = "X-Multi", .value = "a\0bc", .value_len = 4},
                                            SPDY_HDR("empty", ""),
                                            {.name = "null"}};
        struct spdy_frame f;

        assert_int_equal(spdy_encode_syn_reply(&p->tx, &p->wire, 1, 0, dup, 2, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "duplicate"));
        assert_int_equal(spdy_encode_syn_reply(&p->tx, &p->wire, 1, 0, empty, 1, &err), -EINVAL);
        assert_int_equal(spdy_encode_syn_reply(&p->tx, &p->wire, 1, 0, badv, 1, &err), -EINVAL);
        assert_int_equal(spdy_encode_syn_reply(&p->tx, &p->wire, 0, 0, NULL, 0, &err), -EINVAL);
        assert_int_equal(spdy_encode_syn_stream(&p->tx, &p->wire, 1, 0, 8, 0, NULL, 0, &err),
                         -EINVAL);
        assert_int_equal(spdy_encode_headers(&p->tx, &p->wire, 0x80000000u, 0, NULL, 0, &err),
                         -EINVAL);
        assert_int_equal(spdy_encode_data(&p->wire, 0, 0, "x", 1, &err), -EINVAL);
        assert_int_equal(spdy_encode_data(&p->wire, 1, 0, "x", 0x1000000, &err), -EMSGSIZE);
        assert_int_equal(spdy_encode_rst_stream(&p->wire, 1, 0, &err), -EINVAL);
        assert_int_equal(spdy_encode_window_update(&p->wire, 1, 0, &err), -EINVAL);
        assert_int_equal(spdy_encode_window_update(&p->wire, 1, 0x80000000u, &err), -EINVAL);
        assert_int_equal(spdy_encode_goaway(&p->wire, 0x80000000u, 0, &err), -EINVAL);
        const struct spdy_setting bad = {.id = 0x1000000};

        assert_int_equal(spdy_encode_settings(&p->wire, 0, &bad, 1, &err), -EINVAL);
        assert_int_equal(p->wire.len, 0); /* nothing half-written */

        /* Refused frames did not touch the compressor: the next block still decodes. */
        assert_int_equal(spdy_encode_syn_reply(&p->tx, &p->wire, 1, 0, multi, 3, &err), 0);
        assert_int_equal(take(p, &f, NULL, 0), 0);
        assert_int_equal(f.n_headers, 3);
        const struct spdy_header *h = spdy_frame_header(&f, "x-multi");

        assert_non_null(h);
        assert_int_equal(h->value_len, 4);
        assert_memory_equal(h->value, "a\0bc", 5);
        assert_header(&f, "empty", "");
        assert_header(&f, "null", "");
}

static void test_window(void **state)
{
        struct spdy_window w;
        struct sh_error err = {0};

        (void)state;
        /* send side */
        spdy_window_init(&w, SPDY_WINDOW_DEFAULT);
        assert_int_equal(spdy_window_avail(&w), 65536);
        assert_int_equal(spdy_window_consume(&w, 65536, NULL), 0);
        assert_int_equal(spdy_window_avail(&w), 0);
        assert_int_equal(spdy_window_consume(&w, 1, &err), -ENOSPC);
        assert_int_equal(spdy_window_grow(&w, 100, NULL), 0);
        assert_int_equal(spdy_window_avail(&w), 100);
        assert_int_equal(spdy_window_grow(&w, 0, NULL), -EINVAL);
        assert_int_equal(spdy_window_grow(&w, 0x7fffffff, NULL), -EOVERFLOW);
        assert_int_equal(spdy_window_avail(&w), 100);

        /* SETTINGS_INITIAL_WINDOW_SIZE applies by difference and may go negative. */
        assert_int_equal(spdy_window_set_initial(&w, 1000, NULL), 0);
        assert_int_equal(spdy_window_avail(&w), 100 + 1000 - 65536);
        assert_true(spdy_window_avail(&w) < 0);
        assert_int_equal(spdy_window_consume(&w, 1, NULL), -ENOSPC);
        assert_int_equal(spdy_window_set_initial(&w, 0x80000000u, NULL), -EINVAL);
        assert_int_equal(spdy_window_set_initial(&w, 131072, NULL), 0);
        assert_int_equal(spdy_window_avail(&w), 100 + 131072 - 65536);

        /* receive side: replenish once half the window was read */
        spdy_window_init(&w, SPDY_WINDOW_DEFAULT);
        assert_int_equal(spdy_window_consume(&w, 40000, NULL), 0);
        assert_int_equal(spdy_window_release(&w, 20000), 0);
        assert_int_equal(spdy_window_release(&w, 12767), 0);
        assert_int_equal(spdy_window_release(&w, 1), 32768);
        assert_int_equal(spdy_window_avail(&w), 65536 - 40000 + 32768);
        assert_int_equal(spdy_window_consume(&w, 58305, NULL), -ENOSPC); /* peer overran */
        assert_int_equal(spdy_window_consume(&w, 58304, NULL), 0);
        assert_int_equal(spdy_window_release(&w, 65536), 65536);
        assert_int_equal(spdy_window_avail(&w), 65536);
        /* over-release never pushes the window past 2^31-1 */
        spdy_window_init(&w, SPDY_WINDOW_MAX);
        assert_int_equal(spdy_window_release(&w, 0xffffffffu), 0);
        assert_int_equal(spdy_window_avail(&w), SPDY_WINDOW_MAX);
}

static void test_buf(void **state)
{
        struct spdy_buf b = {0};

        (void)state;
        assert_int_equal(spdy_buf_append(&b, "abcdef", 6), 0);
        spdy_buf_consume(&b, 2);
        assert_int_equal(b.len, 4);
        assert_memory_equal(b.data, "cdef", 4);
        spdy_buf_consume(&b, 100);
        assert_int_equal(b.len, 0);
        spdy_buf_done(&b);
        spdy_buf_done(&b);
        assert_null(b.data);

        struct spdy_session s = {0};

        spdy_session_done(&s); /* zeroed: harmless */
        assert_int_equal(spdy_session_init(&s, NULL, NULL), 0);
        spdy_session_done(&s);
        spdy_session_done(&s);
        assert_string_equal(spdy_frame_type_name(SPDY_WINDOW_UPDATE), "WINDOW_UPDATE");
        assert_string_equal(spdy_frame_type_name((enum spdy_frame_type)42), "UNKNOWN");
}

/*
 * Random mutations of a valid frame sequence: whatever the bytes, spdy_parse returns one
 * of its documented codes, consumes within bounds, and (under ASan) touches nothing it
 * should not.
 */
static void test_mutation_fuzz(void **state)
{
        struct peer *p = *state;
        const struct spdy_header h[] = {SPDY_HDR("streamtype", "stdin"), SPDY_HDR("port", "8080")};
        const struct spdy_setting set[] = {{.id = 7, .value = 1 << 20}, {.id = 4, .value = 10}};
        struct spdy_buf seed = {0};
        unsigned rng = 12345;
        const char *env = getenv("SPDY_FUZZ_ITERS");
        long iters = env ? strtol(env, NULL, 10) : 20000;
        uint8_t *m;

        assert_int_equal(spdy_encode_syn_stream(&p->tx, &seed, 1, 0, 0, 0, h, 2, NULL), 0);
        assert_int_equal(spdy_encode_settings(&seed, 0, set, 2, NULL), 0);
        assert_int_equal(spdy_encode_syn_reply(&p->tx, &seed, 1, 0, h, 1, NULL), 0);
        assert_int_equal(spdy_encode_data(&seed, 1, 0, "payload", 7, NULL), 0);
        assert_int_equal(spdy_encode_headers(&p->tx, &seed, 1, 0, h + 1, 1, NULL), 0);
        assert_int_equal(spdy_encode_window_update(&seed, 1, 5, NULL), 0);
        assert_int_equal(spdy_encode_ping(&seed, 1, NULL), 0);
        assert_int_equal(spdy_encode_goaway(&seed, 1, 0, NULL), 0);
        assert_int_equal(spdy_encode_rst_stream(&seed, 1, 5, NULL), 0);
        assert_int_equal(spdy_buf_append(&seed, ref_exec, sizeof(ref_exec)), 0);
        m = malloc(seed.len);
        assert_non_null(m);

        for (long it = 0; it < iters; it++) {
                const struct spdy_limits lim = {.max_header_block = 1 + rand_r(&rng) % 512};
                struct spdy_session s;
                size_t len = seed.len, off = 0;
                int nmut = 1 + rand_r(&rng) % 4;

                memcpy(m, seed.data, seed.len);
                for (int k = 0; k < nmut; k++) {
                        size_t at = (size_t)rand_r(&rng) % seed.len;

                        switch (rand_r(&rng) % 3) {
                        case 0:
                                m[at] = (uint8_t)rand_r(&rng);
                                break;
                        case 1:
                                m[at] ^= (uint8_t)(1u << (rand_r(&rng) % 8));
                                break;
                        default:
                                len = at + 1; /* truncate */
                                break;
                        }
                }
                assert_int_equal(spdy_session_init(&s, it % 2 ? &lim : NULL, NULL), 0);
                for (int guard = 0; guard < 1000; guard++) {
                        struct sh_error err = {0};
                        struct spdy_frame f;
                        size_t used = 0;
                        int r = spdy_parse(&s, m + off, len - off, &used, &f, &err);

                        assert_true(used <= len - off);
                        off += used;
                        if (r == 0) {
                                for (size_t i = 0; i < f.n_headers; i++)
                                        assert_int_equal(strlen(f.headers[i].name),
                                                         f.headers[i].name_len);
                                if (f.type == SPDY_DATA)
                                        assert_true(f.data >= m && f.data + f.data_len <= m + len);
                                continue;
                        }
                        if (r == -EBADMSG) {
                                assert_true(used > 0);
                                continue;
                        }
                        if (r != -EAGAIN && r != -EPROTO && r != -EMSGSIZE)
                                fail_msg("unexpected %d: %s", r, err.msg);
                        if (r != -EAGAIN)
                                assert_true(err.msg[0] != 0);
                        break;
                }
                spdy_session_done(&s);
        }
        free(m);
        spdy_buf_done(&seed);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_roundtrip_all, peer_setup, peer_teardown),
                cmocka_unit_test_setup_teardown(test_wire_layout, peer_setup, peer_teardown),
                cmocka_unit_test_setup_teardown(test_split_every_byte, peer_setup, peer_teardown),
                cmocka_unit_test_setup_teardown(test_shared_zlib_stream, peer_setup, peer_teardown),
                cmocka_unit_test_setup_teardown(test_reference_exec, peer_setup, peer_teardown),
                cmocka_unit_test_setup_teardown(test_reference_portforward, peer_setup,
                                                peer_teardown),
                cmocka_unit_test_setup_teardown(test_hand_built_syn_stream, peer_setup,
                                                peer_teardown),
                cmocka_unit_test(test_bad_header_blocks),
                cmocka_unit_test(test_fatal_frames),
                cmocka_unit_test(test_data_limit),
                cmocka_unit_test(test_inflate_bomb),
                cmocka_unit_test_setup_teardown(test_unknown_control_skipped, peer_setup,
                                                peer_teardown),
                cmocka_unit_test_setup_teardown(test_encoder_checks, peer_setup, peer_teardown),
                cmocka_unit_test(test_window),
                cmocka_unit_test(test_buf),
                cmocka_unit_test_setup_teardown(test_mutation_fuzz, peer_setup, peer_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
