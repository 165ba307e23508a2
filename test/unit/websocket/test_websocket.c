/*
 * common/sha1.c (FIPS 180-4 vectors) and stream/websocket.c: the RFC 6455 handshake and
 * framing examples, reassembly under every split, limits and every refusal, the
 * Kubernetes channel framings (channel, base64, v4, v4.base64, v5 and its close signal),
 * port-forward announcements, the resize JSON, and a random mutation loop.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "sha1.h"
#include "websocket.h"

/* ---- helpers ---- */

static void hex(const unsigned char *md, size_t n, char *out)
{
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[md[i] >> 4];
                out[2 * i + 1] = digits[md[i] & 15];
        }
        out[2 * n] = '\0';
}

static void append(struct ws_buf *b, const void *data, size_t len)
{
        assert_int_equal(ws_buf_reserve(b, len), 0);
        if (len)
                memcpy(b->data + b->len, data, len);
        b->len += len;
}

enum lenform { LEN_AUTO, LEN_16, LEN_64 };

/* Appends a client frame: first byte @b0 (FIN, RSV, opcode), masked with @key unless NULL. */
static void put_frame(struct ws_buf *b, uint8_t b0, const uint8_t *key, enum lenform form,
                      const void *data, size_t len)
{
        uint8_t h[14];
        size_t hl = 2;
        uint8_t m = key ? 0x80 : 0;

        h[0] = b0;
        if (form == LEN_AUTO && len < 126) {
                h[1] = (uint8_t)(m | len);
        } else if (form != LEN_64 && len <= 0xffff) {
                h[1] = m | 126;
                h[2] = (uint8_t)(len >> 8);
                h[3] = (uint8_t)len;
                hl = 4;
        } else {
                h[1] = m | 127;
                for (int i = 0; i < 8; i++)
                        h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
                hl = 10;
        }
        if (key) {
                memcpy(h + hl, key, 4);
                hl += 4;
        }
        append(b, h, hl);
        assert_int_equal(ws_buf_reserve(b, len), 0);
        for (size_t i = 0; i < len; i++)
                b->data[b->len + i] = ((const uint8_t *)data)[i] ^ (key ? key[i & 3] : 0);
        b->len += len;
}

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Feeds all of @buf and expects exactly one result @want; returns the frame. */
static int parse_all(struct ws_parser *p, const uint8_t *buf, size_t len, struct ws_frame *f)
{
        size_t used;
        int r = ws_parse(p, buf, len, &used, f, NULL);

        if (r == 0)
                assert_int_equal(used, len);
        return r;
}

/* A recorded parse result, copied out of the parser. */
struct rec {
        int opcode;
        uint16_t code;
        size_t len;
        uint8_t data[512];
};

/*
 * Parses @buf handing it over in pieces: a split after @split bytes, or one byte at a
 * time when @split is 0. Records up to @max results; returns how many, or a negative error.
 */
static int parse_split(const uint8_t *buf, size_t len, size_t split, struct rec *out, int max)
{
        struct ws_parser p;
        struct ws_frame f;
        size_t off = 0;
        int n = 0, r = 0;

        ws_parser_init(&p, 0);
        while (off < len) {
                size_t chunk = split ? (off < split ? split - off : len - off) : 1;
                size_t pos = 0;

                while (pos < chunk) {
                        size_t used;

                        r = ws_parse(&p, buf + off + pos, chunk - pos, &used, &f, NULL);
                        assert_true(used <= chunk - pos);
                        pos += used;
                        if (r == -EAGAIN) {
                                assert_int_equal(pos, chunk);
                                break;
                        }
                        if (r < 0)
                                goto out;
                        assert_true(n < max);
                        out[n].opcode = f.opcode;
                        out[n].code = f.close_code;
                        out[n].len = f.len;
                        assert_true(f.len <= sizeof(out[n].data));
                        if (f.len)
                                memcpy(out[n].data, f.data, f.len);
                        n++;
                }
                off += chunk;
        }
        r = n;
out:
        ws_parser_done(&p);
        return r;
}

/* ---- SHA-1 ---- */

static void test_sha1_fips(void **state)
{
        static const struct {
                const char *msg;
                const char *md;
        } v[] = {
                {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
                {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
                {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                 "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
                {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmno"
                 "pqklmnopqrlmnopqrsmnopqrstnopqrstu",
                 "a49b2446a02c645bf419f995b67091253a04a259"},
        };
        unsigned char md[20];
        char h[41];

        (void)state;
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                size_t n = strlen(v[i].msg);

                sh_sha1(v[i].msg, n, md);
                hex(md, 20, h);
                assert_string_equal(h, v[i].md);
                /* streaming, split at every byte */
                for (size_t cut = 0; cut <= n; cut++) {
                        struct sh_sha1 c;

                        sh_sha1_init(&c);
                        sh_sha1_update(&c, v[i].msg, cut);
                        sh_sha1_update(&c, v[i].msg + cut, n - cut);
                        sh_sha1_final(&c, md);
                        hex(md, 20, h);
                        assert_string_equal(h, v[i].md);
                }
        }
}

static void test_sha1_million_a(void **state)
{
        char chunk[997];
        struct sh_sha1 c;
        unsigned char md[20];
        char h[41];
        size_t left = 1000000;

        (void)state;
        memset(chunk, 'a', sizeof(chunk));
        sh_sha1_init(&c);
        while (left) {
                size_t k = left < sizeof(chunk) ? left : sizeof(chunk);

                sh_sha1_update(&c, chunk, k);
                left -= k;
        }
        sh_sha1_final(&c, md);
        hex(md, 20, h);
        assert_string_equal(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

/* ---- handshake ---- */

static void test_accept_key(void **state)
{
        char out[29];

        (void)state;
        assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
        assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_int_equal(ws_accept_key(" \tdGhlIHNhbXBsZSBub25jZQ== ", out), 0);
        assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_int_equal(ws_accept_key(NULL, out), -EINVAL);
        assert_int_equal(ws_accept_key("", out), -EINVAL);
        assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", out), -EINVAL);
        assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ===", out), -EINVAL);
        assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25j!Q==", out), -EINVAL);
        /* 24 characters of base64 that are 18 bytes, not 16 */
        assert_int_equal(ws_accept_key("AAAAAAAAAAAAAAAAAAAAAAAA", out), -EINVAL);
        assert_int_equal(ws_accept_key("dGhlIHNhbXBs\r\nZSBub25jZQ", out), -EINVAL);
}

static void test_version(void **state)
{
        (void)state;
        assert_int_equal(ws_check_version("13"), 0);
        assert_int_equal(ws_check_version(" 13\t"), 0);
        assert_int_equal(ws_check_version("8"), -EINVAL);
        assert_int_equal(ws_check_version("13, 8"), -EINVAL);
        assert_int_equal(ws_check_version("130"), -EINVAL);
        assert_int_equal(ws_check_version(""), -EINVAL);
        assert_int_equal(ws_check_version(NULL), -EINVAL);
}

static void test_choose_protocol(void **state)
{
        const char *const *exec = ws_k8s_exec_protocols();
        const char *c = "x";

        (void)state;
        /* the server's preference wins over the client's order */
        /* the client's order decides */
        assert_int_equal(ws_choose_protocol("channel.k8s.io, v4.channel.k8s.io", exec, &c), 0);
        assert_string_equal(c, "channel.k8s.io");
        assert_int_equal(
                ws_choose_protocol("foo, v5.channel.k8s.io,base64.channel.k8s.io", exec, &c), 0);
        assert_string_equal(c, "v5.channel.k8s.io");
        assert_ptr_equal(c, exec[0]);
        assert_int_equal(ws_choose_protocol("  base64.channel.k8s.io\t", exec, &c), 0);
        assert_string_equal(c, "base64.channel.k8s.io");
        /* two header lines joined, empty elements */
        assert_int_equal(ws_choose_protocol("foo,, ,channel.k8s.io,", exec, &c), 0);
        assert_string_equal(c, "channel.k8s.io");
        /* no header or a blank one: no sub-protocol */
        c = "x";
        assert_int_equal(ws_choose_protocol(NULL, exec, &c), 0);
        assert_null(c);
        c = "x";
        assert_int_equal(ws_choose_protocol(" , ", exec, &c), 0);
        assert_null(c);
        /* nothing supported; exact names only */
        assert_int_equal(ws_choose_protocol("foo, bar", exec, &c), -ENOENT);
        assert_int_equal(ws_choose_protocol("channel.k8s", exec, &c), -ENOENT);
        assert_int_equal(ws_choose_protocol("V4.channel.k8s.io", exec, &c), -ENOENT);
        assert_int_equal(ws_choose_protocol("v4.channel.k8s.io.x", exec, &c), -ENOENT);
        assert_int_equal(
                ws_choose_protocol("v5.channel.k8s.io", ws_k8s_portforward_protocols(), &c),
                -ENOENT);
        assert_int_equal(
                ws_choose_protocol("v4.base64.channel.k8s.io", ws_k8s_portforward_protocols(), &c),
                0);
        assert_string_equal(c, "v4.base64.channel.k8s.io");
}

/* ---- parser: RFC 6455 5.7 examples ---- */

static void test_rfc_hello(void **state)
{
        static const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                         0x7f, 0x9f, 0x4d, 0x51, 0x58};
        static const uint8_t unmasked[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
        struct ws_parser p;
        struct ws_frame f;
        struct sh_error err = {0};
        size_t used;

        (void)state;
        ws_parser_init(&p, 0);
        assert_int_equal(parse_all(&p, masked, sizeof(masked), &f), 0);
        assert_int_equal(f.opcode, WS_OP_TEXT);
        assert_int_equal(f.len, 5);
        assert_memory_equal(f.data, "Hello", 5);
        ws_parser_done(&p);

        /* the same frame unmasked is a server frame: a client may not send it */
        ws_parser_init(&p, 0);
        assert_int_equal(ws_parse(&p, unmasked, sizeof(unmasked), &used, &f, &err), -EPROTO);
        assert_non_null(strstr(err.msg, "not masked"));
        assert_int_equal(used, 2);
        /* sticky */
        assert_int_equal(ws_parse(&p, masked, sizeof(masked), &used, &f, NULL), -EPROTO);
        assert_int_equal(used, 0);
        ws_parser_done(&p);
}

static void test_rfc_fragmented_and_ping(void **state)
{
        struct ws_buf b = {0};
        struct rec r[8];
        int n;

        (void)state;
        /* "Hel" + ping "Hello" + "lo" + pong "Hello" (the RFC's masked pong) */
        put_frame(&b, 0x01, KEY, LEN_AUTO, "Hel", 3);
        put_frame(&b, 0x89, KEY, LEN_AUTO, "Hello", 5);
        put_frame(&b, 0x80, KEY, LEN_AUTO, "lo", 2);
        static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                       0x7f, 0x9f, 0x4d, 0x51, 0x58};
        append(&b, pong, sizeof(pong));

        for (size_t split = 0; split < b.len; split++) {
                n = parse_split(b.data, b.len, split, r, 8);
                assert_int_equal(n, 3);
                assert_int_equal(r[0].opcode, WS_OP_PING);
                assert_int_equal(r[0].len, 5);
                assert_memory_equal(r[0].data, "Hello", 5);
                assert_int_equal(r[1].opcode, WS_OP_TEXT);
                assert_int_equal(r[1].len, 5);
                assert_memory_equal(r[1].data, "Hello", 5);
                assert_int_equal(r[2].opcode, WS_OP_PONG);
                assert_memory_equal(r[2].data, "Hello", 5);
        }
        ws_buf_done(&b);
}

static void test_every_split(void **state)
{
        struct ws_buf b = {0};
        uint8_t big[300];
        struct rec r[16];
        int n;

        (void)state;
        for (size_t i = 0; i < sizeof(big); i++)
                big[i] = (uint8_t)(i * 7);
        put_frame(&b, 0x82, KEY, LEN_AUTO, big, sizeof(big)); /* 16-bit length */
        put_frame(&b, 0x81, KEY, LEN_AUTO, "", 0);            /* empty text */
        put_frame(&b, 0x02, KEY, LEN_AUTO, "", 0);            /* empty first fragment */
        put_frame(&b, 0x89, KEY, LEN_AUTO, "", 0);            /* empty ping inside */
        put_frame(&b, 0x00, KEY, LEN_64, "ab", 2);            /* 64-bit length, non-minimal */
        put_frame(&b, 0x80, KEY, LEN_16, "c", 1);             /* 16-bit length, non-minimal */
        put_frame(&b, 0x01, KEY, LEN_AUTO, "\xe2\x82", 2);    /* euro sign split across */
        put_frame(&b, 0x80, KEY, LEN_AUTO, "\xac", 1);        /* fragments */
        put_frame(&b, 0x88, KEY, LEN_AUTO,
                  "\x03\xe8"
                  "bye",
                  5); /* close 1000 "bye" */

        for (size_t split = 0; split <= b.len; split++) {
                n = parse_split(b.data, b.len, split, r, 16);
                assert_int_equal(n, 6);
                assert_int_equal(r[0].opcode, WS_OP_BINARY);
                assert_int_equal(r[0].len, sizeof(big));
                assert_memory_equal(r[0].data, big, sizeof(big));
                assert_int_equal(r[1].opcode, WS_OP_TEXT);
                assert_int_equal(r[1].len, 0);
                assert_int_equal(r[2].opcode, WS_OP_PING);
                assert_int_equal(r[2].len, 0);
                assert_int_equal(r[3].opcode, WS_OP_BINARY);
                assert_int_equal(r[3].len, 3);
                assert_memory_equal(r[3].data, "abc", 3);
                assert_int_equal(r[4].opcode, WS_OP_TEXT);
                assert_int_equal(r[4].len, 3);
                assert_memory_equal(r[4].data, "\xe2\x82\xac", 3);
                assert_int_equal(r[5].opcode, WS_OP_CLOSE);
                assert_int_equal(r[5].code, 1000);
                assert_int_equal(r[5].len, 3);
                assert_memory_equal(r[5].data, "bye", 3);
        }
        ws_buf_done(&b);
}

static void test_long_lengths(void **state)
{
        size_t sizes[] = {125, 126, 127, 65535, 65536, 70000};
        struct ws_parser p;
        struct ws_frame f;

        (void)state;
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                struct ws_buf b = {0};
                uint8_t *data = malloc(sizes[i]);

                assert_non_null(data);
                for (size_t k = 0; k < sizes[i]; k++)
                        data[k] = (uint8_t)(k ^ (k >> 8));
                put_frame(&b, 0x82, KEY, LEN_AUTO, data, sizes[i]);
                if (sizes[i] < 126)
                        assert_int_equal(b.data[1] & 0x7f, sizes[i]);
                else if (sizes[i] <= 0xffff)
                        assert_int_equal(b.data[1] & 0x7f, 126);
                else
                        assert_int_equal(b.data[1] & 0x7f, 127);
                ws_parser_init(&p, 0);
                assert_int_equal(parse_all(&p, b.data, b.len, &f), 0);
                assert_int_equal(f.len, sizes[i]);
                assert_memory_equal(f.data, data, sizes[i]);
                ws_parser_done(&p);
                ws_buf_done(&b);
                free(data);
        }
}

static void test_limits(void **state)
{
        uint8_t data[1001] = {0};
        struct ws_buf b = {0};
        struct ws_parser p;
        struct ws_frame f;
        struct sh_error err = {0};
        size_t used;

        (void)state;
        /* exactly at the limit, in two fragments */
        put_frame(&b, 0x02, KEY, LEN_AUTO, data, 600);
        put_frame(&b, 0x80, KEY, LEN_AUTO, data, 400);
        ws_parser_init(&p, 1000);
        assert_int_equal(parse_all(&p, b.data, b.len, &f), 0);
        assert_int_equal(f.len, 1000);
        ws_parser_done(&p);

        /* one frame over: refused at the header, before the payload */
        b.len = 0;
        put_frame(&b, 0x82, KEY, LEN_AUTO, data, 1001);
        ws_parser_init(&p, 1000);
        assert_int_equal(ws_parse(&p, b.data, b.len, &used, &f, &err), -EMSGSIZE);
        assert_int_equal(used, 8);
        assert_int_equal(ws_close_code_for(err.code), WS_CLOSE_TOO_BIG);
        ws_parser_done(&p);

        /* fragments adding up past it */
        b.len = 0;
        put_frame(&b, 0x02, KEY, LEN_AUTO, data, 600);
        put_frame(&b, 0x89, KEY, LEN_AUTO, "x", 1);
        put_frame(&b, 0x80, KEY, LEN_AUTO, data, 401);
        ws_parser_init(&p, 1000);
        assert_int_equal(ws_parse(&p, b.data, b.len, &used, &f, NULL), 0);
        assert_int_equal(f.opcode, WS_OP_PING);
        assert_int_equal(ws_parse(&p, b.data + used, b.len - used, &used, &f, NULL), -EMSGSIZE);
        ws_parser_done(&p);

        /* the default limit is 16 MiB; only headers are sent */
        static const uint8_t over[] = {0x82, 0xff, 0, 0, 0, 0, 0x01, 0, 0, 0x01, 1, 2, 3, 4};
        static const uint8_t at[] = {0x82, 0xff, 0, 0, 0, 0, 0x01, 0, 0, 0x00, 1, 2, 3, 4};
        static const uint8_t top[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
        memset(&p, 0, sizeof(p)); /* a zeroed parser takes the default too */
        assert_int_equal(ws_parse(&p, over, sizeof(over), &used, &f, NULL), -EMSGSIZE);
        ws_parser_done(&p);
        ws_parser_init(&p, 0);
        assert_int_equal(ws_parse(&p, at, sizeof(at), &used, &f, NULL), -EAGAIN);
        assert_int_equal(used, sizeof(at));
        ws_parser_done(&p);
        ws_parser_init(&p, 0);
        assert_int_equal(ws_parse(&p, top, sizeof(top), &used, &f, NULL), -EPROTO);
        ws_parser_done(&p);
        ws_buf_done(&b);
}

/* Expects the frames in @b to be refused with @want and a message containing @msg. */
static void expect_refusal(const struct ws_buf *b, int want, const char *msg)
{
        struct ws_parser p;
        struct ws_frame f;
        struct sh_error err = {0};
        size_t off = 0, used;
        int r;

        ws_parser_init(&p, 0);
        for (;;) {
                r = ws_parse(&p, b->data + off, b->len - off, &used, &f, &err);
                off += used;
                if (r != 0)
                        break;
        }
        assert_int_equal(r, want);
        if (msg && !strstr(err.msg, msg))
                fail_msg("'%s' does not mention '%s'", err.msg, msg);
        assert_int_equal(err.code, want);
        ws_parser_done(&p);
}

static void test_refusals(void **state)
{
        struct ws_buf b = {0};
        uint8_t big[126] = {0};

        (void)state;
        put_frame(&b, 0x82, NULL, LEN_AUTO, "x", 1);
        expect_refusal(&b, -EPROTO, "not masked");
        for (unsigned rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
                b.len = 0;
                put_frame(&b, (uint8_t)(0x82 | rsv), KEY, LEN_AUTO, "x", 1);
                expect_refusal(&b, -EPROTO, "reserved");
        }
        for (unsigned op = 0; op < 16; op++) {
                if (op <= 2 || (op >= 8 && op <= 10))
                        continue;
                b.len = 0;
                put_frame(&b, (uint8_t)(0x80 | op), KEY, LEN_AUTO, "x", 1);
                expect_refusal(&b, -EPROTO, "opcode");
        }
        b.len = 0;
        put_frame(&b, 0x89, KEY, LEN_AUTO, big, sizeof(big));
        expect_refusal(&b, -EPROTO, "125");
        b.len = 0;
        put_frame(&b, 0x8a, KEY, LEN_16, big, 10); /* short, but a 16-bit length */
        expect_refusal(&b, -EPROTO, "125");
        b.len = 0;
        put_frame(&b, 0x09, KEY, LEN_AUTO, "x", 1);
        expect_refusal(&b, -EPROTO, "fragmented control");
        b.len = 0;
        put_frame(&b, 0x08, KEY, LEN_AUTO, "", 0);
        expect_refusal(&b, -EPROTO, "fragmented control");
        b.len = 0;
        put_frame(&b, 0x80, KEY, LEN_AUTO, "x", 1);
        expect_refusal(&b, -EPROTO, "continuation");
        b.len = 0;
        put_frame(&b, 0x01, KEY, LEN_AUTO, "x", 1);
        put_frame(&b, 0x82, KEY, LEN_AUTO, "y", 1);
        expect_refusal(&b, -EPROTO, "inside");
        /* a complete message ends the fragmentation: a continuation after it is refused */
        b.len = 0;
        put_frame(&b, 0x01, KEY, LEN_AUTO, "x", 1);
        put_frame(&b, 0x80, KEY, LEN_AUTO, "y", 1);
        put_frame(&b, 0x80, KEY, LEN_AUTO, "z", 1);
        expect_refusal(&b, -EPROTO, "continuation");
        ws_buf_done(&b);
}

static void test_bad_utf8(void **state)
{
        static const char *const bad[] = {
                "\x80",             /* lone continuation */
                "\xc0\x80",         /* overlong NUL */
                "\xc1\xbf",         /* overlong */
                "\xe0\x80\xaf",     /* overlong '/' */
                "\xed\xa0\x80",     /* surrogate U+D800 */
                "\xed\xbf\xbf",     /* surrogate U+DFFF */
                "\xf4\x90\x80\x80", /* U+110000 */
                "\xf8\x88\x80\x80\x80",
                "\xff",
                "abc\xe2\x82", /* truncated at the end */
                "\xe2\x28\xa1",
        };
        static const char *const good[] = {"",
                                           "plain",
                                           "\xc2\xa9",
                                           "\xe2\x82\xac",
                                           "\xf0\x9f\x98\x80",
                                           "\xed\x9f\xbf",
                                           "\xf4\x8f\xbf\xbf",
                                           "\xee\x80\x80"};
        struct ws_buf b = {0};

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_false(ws_utf8_valid(bad[i], strlen(bad[i])));
                b.len = 0;
                put_frame(&b, 0x81, KEY, LEN_AUTO, bad[i], strlen(bad[i]));
                expect_refusal(&b, -EILSEQ, "UTF-8");
                /* the same bytes are fine as binary */
                b.len = 0;
                put_frame(&b, 0x82, KEY, LEN_AUTO, bad[i], strlen(bad[i]));
                put_frame(&b, 0x82, NULL, LEN_AUTO, "", 0);
                expect_refusal(&b, -EPROTO, "masked");
        }
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_true(ws_utf8_valid(good[i], strlen(good[i])));
        /* text split mid-character, the end never completing it */
        b.len = 0;
        put_frame(&b, 0x01, KEY, LEN_AUTO, "a\xe2", 2);
        put_frame(&b, 0x80, KEY, LEN_AUTO, "\x82", 1);
        expect_refusal(&b, -EILSEQ, "UTF-8");
        assert_int_equal(ws_close_code_for(-EILSEQ), WS_CLOSE_INVALID_DATA);
        ws_buf_done(&b);
}

static void test_close_frames(void **state)
{
        static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                      1010, 1011, 1012, 1013, 1014, 3000, 4999};
        static const unsigned bad[] = {0,    999,  1004, 1005, 1006, 1015,
                                       1016, 2000, 2999, 5000, 65535};
        struct ws_buf b = {0};
        struct rec r[2];
        uint8_t body[4];

        (void)state;
        put_frame(&b, 0x88, KEY, LEN_AUTO, "", 0);
        assert_int_equal(parse_split(b.data, b.len, b.len, r, 2), 1);
        assert_int_equal(r[0].opcode, WS_OP_CLOSE);
        assert_int_equal(r[0].code, WS_CLOSE_NO_STATUS);
        assert_int_equal(r[0].len, 0);
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                body[0] = (uint8_t)(ok[i] >> 8);
                body[1] = (uint8_t)ok[i];
                b.len = 0;
                put_frame(&b, 0x88, KEY, LEN_AUTO, body, 2);
                assert_int_equal(parse_split(b.data, b.len, b.len, r, 2), 1);
                assert_int_equal(r[0].code, ok[i]);
                assert_int_equal(r[0].len, 0);
                assert_true(ws_close_code_valid(ok[i]));
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                body[0] = (uint8_t)(bad[i] >> 8);
                body[1] = (uint8_t)bad[i];
                b.len = 0;
                put_frame(&b, 0x88, KEY, LEN_AUTO, body, 2);
                expect_refusal(&b, -EPROTO, "close status");
                assert_false(ws_close_code_valid(bad[i]));
        }
        b.len = 0;
        put_frame(&b, 0x88, KEY, LEN_AUTO, "\x03", 1);
        expect_refusal(&b, -EPROTO, "1-byte");
        b.len = 0;
        put_frame(&b, 0x88, KEY, LEN_AUTO, "\x03\xe8\xc0\x80", 4);
        expect_refusal(&b, -EILSEQ, "reason");
        ws_buf_done(&b);
}

/* ---- encoder ---- */

static void test_encode(void **state)
{
        static const uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
        static const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
        struct ws_buf b = {0};
        uint8_t *big = calloc(1, 65536);

        (void)state;
        assert_non_null(big);
        assert_int_equal(ws_encode(&b, WS_OP_TEXT, "Hello", 5), 0);
        assert_int_equal(b.len, sizeof(hello));
        assert_memory_equal(b.data, hello, sizeof(hello));
        b.len = 0;
        assert_int_equal(ws_encode(&b, WS_OP_PING, "Hello", 5), 0);
        assert_memory_equal(b.data, ping, sizeof(ping));

        /* the RFC's 256-byte and 64 KiB binary headers */
        b.len = 0;
        assert_int_equal(ws_encode(&b, WS_OP_BINARY, big, 256), 0);
        assert_int_equal(b.len, 4 + 256);
        assert_memory_equal(b.data, "\x82\x7e\x01\x00", 4);
        b.len = 0;
        assert_int_equal(ws_encode(&b, WS_OP_BINARY, big, 65536), 0);
        assert_int_equal(b.len, 10 + 65536);
        assert_memory_equal(b.data, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
        b.len = 0;
        assert_int_equal(ws_encode(&b, WS_OP_BINARY, NULL, 0), 0);
        assert_memory_equal(b.data, "\x82\x00", 2);

        /* refusals leave the buffer alone */
        b.len = 0;
        assert_int_equal(ws_encode(&b, WS_OP_PONG, big, 126), -EINVAL);
        assert_int_equal(ws_encode(&b, WS_OP_CONTINUATION, "x", 1), -EINVAL);
        assert_int_equal(ws_encode(&b, (enum ws_opcode)3, "x", 1), -EINVAL);
        assert_int_equal(ws_encode(&b, WS_OP_TEXT, "\xc0\x80", 2), -EINVAL);
        assert_int_equal(ws_encode(&b, WS_OP_BINARY, NULL, 1), -EINVAL);
        assert_int_equal(b.len, 0);

        /* close */
        assert_int_equal(ws_encode_close(&b, 0, NULL), 0);
        assert_memory_equal(b.data, "\x88\x00", 2);
        b.len = 0;
        assert_int_equal(ws_encode_close(&b, 1000, "bye"), 0);
        assert_int_equal(b.len, 7);
        assert_memory_equal(b.data,
                            "\x88\x05\x03\xe8"
                            "bye",
                            7);
        b.len = 0;
        assert_int_equal(ws_encode_close(&b, 1011, NULL), 0);
        assert_memory_equal(b.data, "\x88\x02\x03\xf3", 4);
        b.len = 0;
        assert_int_equal(ws_encode_close(&b, 0, "reason"), -EINVAL);
        assert_int_equal(ws_encode_close(&b, 1005, NULL), -EINVAL);
        assert_int_equal(ws_encode_close(&b, 1006, NULL), -EINVAL);
        assert_int_equal(ws_encode_close(&b, 5000, NULL), -EINVAL);
        assert_int_equal(ws_encode_close(&b, 1000, "\xff"), -EINVAL);
        assert_int_equal(b.len, 0);

        /* a long reason is cut at a character boundary to fit 125 bytes */
        char reason[200];
        size_t n = 0;

        reason[n++] = 'a';
        while (n + 3 < sizeof(reason))
                memcpy(reason + n, "\xe2\x82\xac", 3), n += 3;
        reason[n] = '\0';
        assert_int_equal(ws_encode_close(&b, 4000, reason), 0);
        assert_int_equal(b.data[1], 2 + 121); /* 'a' + 40 euro signs; a 41st does not fit */
        assert_true(ws_utf8_valid(b.data + 4, b.len - 4));

        /* round trip: what the encoder writes, masked, the parser reads back */
        struct ws_parser p;
        struct ws_frame f;

        for (size_t i = 2; i < b.len; i++)
                b.data[i] ^= KEY[(i - 2) & 3];
        uint8_t hdr[6] = {b.data[0], (uint8_t)(b.data[1] | 0x80)};

        memcpy(hdr + 2, KEY, 4);
        struct ws_buf c = {0};

        append(&c, hdr, 6);
        append(&c, b.data + 2, b.len - 2);
        ws_parser_init(&p, 0);
        assert_int_equal(parse_all(&p, c.data, c.len, &f), 0);
        assert_int_equal(f.opcode, WS_OP_CLOSE);
        assert_int_equal(f.close_code, 4000);
        assert_int_equal(f.len, 121);
        assert_memory_equal(f.data, reason, 121);
        ws_parser_done(&p);
        ws_buf_done(&c);
        ws_buf_done(&b);
        ws_buf_done(&b);
        free(big);
}

/* ---- Kubernetes channels ---- */

static void test_proto_names(void **state)
{
        enum ws_k8s_proto p;

        (void)state;
        assert_string_equal(ws_k8s_proto_name(WS_CHANNEL), "channel.k8s.io");
        assert_string_equal(ws_k8s_proto_name(WS_BASE64_CHANNEL), "base64.channel.k8s.io");
        assert_string_equal(ws_k8s_proto_name(WS_V4_CHANNEL), "v4.channel.k8s.io");
        assert_string_equal(ws_k8s_proto_name(WS_V5_CHANNEL), "v5.channel.k8s.io");
        assert_string_equal(ws_k8s_proto_name(WS_V4_BASE64_CHANNEL), "v4.base64.channel.k8s.io");
        assert_null(ws_k8s_proto_name((enum ws_k8s_proto)99));
        for (int i = WS_CHANNEL; i <= WS_V4_BASE64_CHANNEL; i++) {
                assert_int_equal(ws_k8s_proto_from_name(ws_k8s_proto_name(i), &p), 0);
                assert_int_equal(p, i);
        }
        p = WS_V5_CHANNEL;
        assert_int_equal(ws_k8s_proto_from_name(NULL, &p), 0);
        assert_int_equal(p, WS_CHANNEL);
        assert_int_equal(ws_k8s_proto_from_name("v3.channel.k8s.io", &p), -ENOENT);
        assert_false(ws_k8s_proto_status_errors(WS_CHANNEL));
        assert_false(ws_k8s_proto_status_errors(WS_BASE64_CHANNEL));
        assert_true(ws_k8s_proto_status_errors(WS_V4_CHANNEL));
        assert_true(ws_k8s_proto_status_errors(WS_V4_BASE64_CHANNEL));
        assert_true(ws_k8s_proto_status_errors(WS_V5_CHANNEL));
        assert_int_equal(WS_K8S_STDIN, 0);
        assert_int_equal(WS_K8S_STDOUT, 1);
        assert_int_equal(WS_K8S_STDERR, 2);
        assert_int_equal(WS_K8S_ERROR, 3);
        assert_int_equal(WS_K8S_RESIZE, 4);
}

static void test_wrap(void **state)
{
        struct ws_buf b = {0};

        (void)state;
        /* binary framings: [channel, data...] */
        for (int p = WS_CHANNEL; p <= WS_V5_CHANNEL; p++) {
                if (p == WS_BASE64_CHANNEL)
                        continue;
                b.len = 0;
                assert_int_equal(ws_k8s_wrap(&b, p, WS_K8S_STDOUT, "\n", 1), 0);
                assert_int_equal(b.len, 4);
                assert_memory_equal(b.data, "\x82\x02\x01\n", 4);
                b.len = 0;
                assert_int_equal(ws_k8s_wrap(&b, p, WS_K8S_STDOUT, NULL, 0), 0);
                assert_memory_equal(b.data, "\x82\x01\x01", 3);
                assert_int_equal(ws_k8s_wrap(&b, p, 255, "x", 1), -EINVAL);
                assert_int_equal(ws_k8s_wrap(&b, p, 254, "x", 1), 0);
        }
        /* base64 framings: text "<'0'+channel><base64>", the wsstream doc example */
        for (int p = WS_BASE64_CHANNEL; p <= WS_V4_BASE64_CHANNEL; p += 3) {
                b.len = 0;
                assert_int_equal(ws_k8s_wrap(&b, p, WS_K8S_STDOUT, "\n", 1), 0);
                assert_int_equal(b.len, 7);
                assert_memory_equal(b.data,
                                    "\x81\x05"
                                    "1Cg==",
                                    7);
                b.len = 0;
                assert_int_equal(ws_k8s_wrap(&b, p, WS_K8S_STDERR, "foo\n", 4), 0);
                assert_memory_equal(b.data,
                                    "\x81\x09"
                                    "2Zm9vCg==",
                                    11);
                b.len = 0;
                assert_int_equal(ws_k8s_wrap(&b, p, WS_K8S_ERROR, NULL, 0), 0);
                assert_memory_equal(b.data,
                                    "\x81\x01"
                                    "3",
                                    3);
                b.len = 0;
                assert_int_equal(ws_k8s_wrap(&b, p, WS_K8S_MAX_BASE64_CHANNEL, "", 0), 0);
                assert_memory_equal(b.data, "\x81\x01\x7f", 3);
                assert_int_equal(ws_k8s_wrap(&b, p, WS_K8S_MAX_BASE64_CHANNEL + 1, "", 0), -EINVAL);
        }
        /* big payload: 16-bit length header, base64 grows it */
        uint8_t big[3000];

        memset(big, 0xab, sizeof(big));
        b.len = 0;
        assert_int_equal(ws_k8s_wrap(&b, WS_BASE64_CHANNEL, 1, big, sizeof(big)), 0);
        assert_int_equal(b.len, 4 + 1 + 4000);
        assert_int_equal(b.data[2] << 8 | b.data[3], 4001);
        b.len = 0;
        assert_int_equal(ws_k8s_wrap(&b, (enum ws_k8s_proto)9, 1, "x", 1), -EINVAL);
        assert_int_equal(ws_k8s_wrap(&b, WS_CHANNEL, 1, NULL, 1), -EINVAL);
        assert_int_equal(b.len, 0);

        /* v5 close signal */
        assert_int_equal(ws_k8s_wrap_close(&b, WS_V5_CHANNEL, WS_K8S_STDOUT), 0);
        assert_memory_equal(b.data, "\x82\x02\xff\x01", 4);
        b.len = 0;
        assert_int_equal(ws_k8s_wrap_close(&b, WS_V4_CHANNEL, 1), -EOPNOTSUPP);
        assert_int_equal(ws_k8s_wrap_close(&b, WS_CHANNEL, 1), -EOPNOTSUPP);
        assert_int_equal(ws_k8s_wrap_close(&b, WS_BASE64_CHANNEL, 1), -EOPNOTSUPP);
        assert_int_equal(ws_k8s_wrap_close(&b, WS_V5_CHANNEL, 255), -EINVAL);
        assert_int_equal(b.len, 0);
        ws_buf_done(&b);
}

static void test_unwrap(void **state)
{
        struct ws_buf s = {0};
        struct ws_k8s_msg m;
        struct sh_error err = {0};

        (void)state;
        for (int p = WS_CHANNEL; p <= WS_V4_BASE64_CHANNEL; p++) {
                assert_int_equal(ws_k8s_unwrap(p, (const uint8_t *)"", 0, &s, &m, NULL), 0);
                assert_int_equal(m.kind, WS_K8S_EMPTY);
        }
        /* binary */
        for (int p = WS_CHANNEL; p <= WS_V5_CHANNEL; p++) {
                if (p == WS_BASE64_CHANNEL)
                        continue;
                assert_int_equal(ws_k8s_unwrap(p,
                                               (const uint8_t *)"\x00"
                                                                "foo\n",
                                               5, NULL, &m, NULL),
                                 0);
                assert_int_equal(m.kind, WS_K8S_DATA);
                assert_int_equal(m.channel, WS_K8S_STDIN);
                assert_int_equal(m.len, 4);
                assert_memory_equal(m.data, "foo\n", 4);
                assert_int_equal(ws_k8s_unwrap(p, (const uint8_t *)"\x04", 1, NULL, &m, NULL), 0);
                assert_int_equal(m.kind, WS_K8S_DATA);
                assert_int_equal(m.channel, WS_K8S_RESIZE);
                assert_int_equal(m.len, 0);
        }
        /* v5 close signal; in earlier versions 255 is only an unknown channel */
        assert_int_equal(
                ws_k8s_unwrap(WS_V5_CHANNEL, (const uint8_t *)"\xff\x00", 2, NULL, &m, NULL), 0);
        assert_int_equal(m.kind, WS_K8S_CLOSED);
        assert_int_equal(m.channel, WS_K8S_STDIN);
        assert_int_equal(ws_k8s_unwrap(WS_V5_CHANNEL, (const uint8_t *)"\xff", 1, NULL, &m, &err),
                         -EPROTO);
        assert_non_null(strstr(err.msg, "close signal"));
        assert_int_equal(
                ws_k8s_unwrap(WS_V5_CHANNEL, (const uint8_t *)"\xff\x00\x01", 3, NULL, &m, NULL),
                -EPROTO);
        assert_int_equal(
                ws_k8s_unwrap(WS_V4_CHANNEL, (const uint8_t *)"\xff\x00", 2, NULL, &m, NULL), 0);
        assert_int_equal(m.kind, WS_K8S_DATA);
        assert_int_equal(m.channel, 255);
        assert_int_equal(m.len, 1);

        /* base64, the wsstream doc example and friends */
        for (int p = WS_BASE64_CHANNEL; p <= WS_V4_BASE64_CHANNEL; p += 3) {
                assert_int_equal(ws_k8s_unwrap(p, (const uint8_t *)"0Zm9vCg==", 9, &s, &m, NULL),
                                 0);
                assert_int_equal(m.kind, WS_K8S_DATA);
                assert_int_equal(m.channel, 0);
                assert_int_equal(m.len, 4);
                assert_memory_equal(m.data, "foo\n", 4);
                assert_int_equal(ws_k8s_unwrap(p, (const uint8_t *)"0Zm9vC", 6, &s, &m, NULL),
                                 -EINVAL);
                assert_int_equal(ws_k8s_unwrap(p, (const uint8_t *)"4Zm9vYg", 7, &s, &m, NULL),
                                 -EINVAL);
                assert_int_equal(ws_k8s_unwrap(p, (const uint8_t *)"4Zm9vYmE=", 9, &s, &m, NULL),
                                 0);
                assert_int_equal(m.channel, 4);
                assert_int_equal(m.len, 5);
                assert_memory_equal(m.data, "fooba", 5);
                assert_int_equal(
                        ws_k8s_unwrap(p, (const uint8_t *)"0Zm9v\r\nYmFy", 11, &s, &m, NULL), 0);
                assert_int_equal(m.len, 6);
                assert_memory_equal(m.data, "foobar", 6);
                assert_int_equal(ws_k8s_unwrap(p, (const uint8_t *)"1", 1, &s, &m, NULL), 0);
                assert_int_equal(m.kind, WS_K8S_DATA);
                assert_int_equal(m.channel, 1);
                assert_int_equal(m.len, 0);
                assert_non_null(m.data);
        }
        static const char *const bad[] = {
                "0Zm9vCg=",                /* short group */
                "0Zm9vCg",                 /* no padding */
                "0Zm9v!g==",               /* bad char */
                "0Zg==Zg==",               /* data after the padding */
                "0Z===",                   /* padding too early */
                "0Zm=v",                   /* padding inside a group */
                "0====",     "0Zm9v Cg==", /* spaces are not skipped */
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                sh_err_clear(&err);
                assert_int_equal(ws_k8s_unwrap(WS_BASE64_CHANNEL, (const uint8_t *)bad[i],
                                               strlen(bad[i]), &s, &m, &err),
                                 -EINVAL);
                assert_non_null(strstr(err.msg, "base64"));
        }
        assert_int_equal(
                ws_k8s_unwrap(WS_BASE64_CHANNEL, (const uint8_t *)"/Zg==", 5, &s, &m, &err),
                -EINVAL);
        assert_non_null(strstr(err.msg, "channel"));
        assert_int_equal(
                ws_k8s_unwrap(WS_BASE64_CHANNEL, (const uint8_t *)"\xc3\xa9", 2, &s, &m, NULL),
                -EINVAL);
        assert_int_equal(
                ws_k8s_unwrap(WS_BASE64_CHANNEL, (const uint8_t *)"0Zg==", 5, NULL, &m, NULL),
                -EINVAL);
        assert_int_equal(
                ws_k8s_unwrap((enum ws_k8s_proto) - 1, (const uint8_t *)"0", 1, &s, &m, NULL),
                -EINVAL);

        /* wrap then unwrap through the framing, every protocol and some lengths */
        struct ws_buf w = {0};
        uint8_t data[200];

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t)(i * 31 + 7);
        for (int p = WS_CHANNEL; p <= WS_V4_BASE64_CHANNEL; p++)
                for (size_t len = 0; len < sizeof(data); len += 1 + len / 3) {
                        w.len = 0;
                        assert_int_equal(ws_k8s_wrap(&w, p, 2, data, len), 0);
                        size_t hl = w.data[1] == 126 ? 4 : 2;

                        assert_int_equal(ws_k8s_unwrap(p, w.data + hl, w.len - hl, &s, &m, NULL),
                                         0);
                        assert_int_equal(m.kind, WS_K8S_DATA);
                        assert_int_equal(m.channel, 2);
                        assert_int_equal(m.len, len);
                        if (len)
                                assert_memory_equal(m.data, data, len);
                }
        ws_buf_done(&w);
        ws_buf_done(&s);
}

static void test_portforward(void **state)
{
        struct ws_buf b = {0};
        uint16_t ports[3];
        size_t n = 0;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(ws_k8s_pf_data_channel(0), 0);
        assert_int_equal(ws_k8s_pf_error_channel(0), 1);
        assert_int_equal(ws_k8s_pf_data_channel(2), 4);
        assert_int_equal(ws_k8s_pf_error_channel(2), 5);
        assert_int_equal(ws_k8s_wrap_port(&b, WS_V4_CHANNEL, 0, 8080), 0);
        assert_int_equal(b.len, 5);
        assert_memory_equal(b.data, "\x82\x03\x00\x90\x1f", 5);
        b.len = 0;
        assert_int_equal(ws_k8s_wrap_port(&b, WS_V4_BASE64_CHANNEL, 1, 8080), 0);
        assert_memory_equal(b.data,
                            "\x81\x05"
                            "1kB8=",
                            7);
        ws_buf_done(&b);

        assert_int_equal(ws_k8s_pf_parse_ports("80,8080", ports, 3, &n, NULL), 0);
        assert_int_equal(n, 2);
        assert_int_equal(ports[0], 80);
        assert_int_equal(ports[1], 8080);
        assert_int_equal(ws_k8s_pf_parse_ports("065535", ports, 3, &n, NULL), 0);
        assert_int_equal(n, 3);
        assert_int_equal(ports[2], 65535);
        assert_int_equal(ws_k8s_pf_parse_ports("1", ports, 3, &n, &err), -E2BIG);
        n = 0;
        static const char *const bad[] = {
                "", "0", "65536", "80,", ",80", "+80", " 80", "80x", "99999999999999999999"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(ws_k8s_pf_parse_ports(bad[i], ports, 3, &n, NULL), -EINVAL);
        assert_int_equal(ws_k8s_pf_parse_ports(NULL, ports, 3, &n, NULL), -EINVAL);
        assert_int_equal(n, 0);
}

static void test_resize(void **state)
{
        static const struct {
                const char *json;
                uint16_t w, h;
        } good[] = {
                {"{\"Width\":80,\"Height\":24}", 80, 24},
                {" {\"Height\": 0, \"Width\": 65535, \"Other\": [1]} \n", 65535, 0},
                {"{\"width\":1,\"HEIGHT\":2}", 1, 2},
        };
        static const char *const bad[] = {
                "",
                "{",
                "null",
                "[80,24]",
                "{\"Width\":80}",
                "{\"Height\":24}",
                "{\"Width\":-1,\"Height\":24}",
                "{\"Width\":65536,\"Height\":24}",
                "{\"Width\":\"80\",\"Height\":24}",
                "{\"Width\":80.5,\"Height\":24}",
                "{\"Width\":80,\"Height\":null}",
                "{\"Width\":80,\"Height\":24} {}",
                "{\"Width\":99999999999999999999999,\"Height\":24}",
        };
        uint16_t w, h;
        struct sh_error err = {0};

        (void)state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                assert_int_equal(
                        ws_k8s_parse_resize(good[i].json, strlen(good[i].json), &w, &h, &err), 0);
                assert_int_equal(w, good[i].w);
                assert_int_equal(h, good[i].h);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                w = h = 7;
                sh_err_clear(&err);
                assert_int_equal(ws_k8s_parse_resize(bad[i], strlen(bad[i]), &w, &h, &err),
                                 -EINVAL);
                assert_true(err.msg[0] != '\0');
                assert_int_equal(w, 7);
                assert_int_equal(h, 7);
        }
        /* not NUL-terminated */
        assert_int_equal(ws_k8s_parse_resize("{\"Width\":8,\"Height\":9}XX", 22, &w, &h, NULL), 0);
        assert_int_equal(w, 8);
        assert_int_equal(h, 9);
}

/* ---- random ---- */

static uint32_t rnd(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return (uint32_t)(*s >> 11);
}

/* Random messages, randomly fragmented with pings between, parsed in random chunks. */
static void test_random_roundtrip(void **state)
{
        uint64_t seed = 0x9e3779b97f4a7c15ull;

        (void)state;
        for (int iter = 0; iter < 300; iter++) {
                struct ws_buf b = {0};
                uint8_t msg[400];
                size_t len = rnd(&seed) % sizeof(msg);
                bool text = rnd(&seed) & 1;
                size_t off = 0;
                uint8_t key[4];
                bool first = true;

                for (size_t i = 0; i < len; i++)
                        msg[i] = text ? (uint8_t)('a' + rnd(&seed) % 26) : (uint8_t)rnd(&seed);
                for (;;) {
                        size_t k = len - off ? rnd(&seed) % (len - off + 1) : 0;
                        bool fin = off + k == len;

                        for (int i = 0; i < 4; i++)
                                key[i] = (uint8_t)rnd(&seed);
                        put_frame(&b, (uint8_t)((fin ? 0x80 : 0) | (first ? (text ? 1 : 2) : 0)),
                                  key, (enum lenform)(rnd(&seed) % 3), msg + off, k);
                        if (rnd(&seed) % 4 == 0)
                                put_frame(&b, 0x89, key, LEN_AUTO, "p", 1);
                        first = false;
                        off += k;
                        if (fin)
                                break;
                }

                struct ws_parser p;
                struct ws_frame f;
                size_t pos = 0;
                bool got = false;

                ws_parser_init(&p, 0);
                while (pos < b.len) {
                        size_t chunk = 1 + rnd(&seed) % 40, used;
                        int r;

                        if (chunk > b.len - pos)
                                chunk = b.len - pos;
                        size_t end = pos + chunk;

                        while (pos < end) {
                                r = ws_parse(&p, b.data + pos, end - pos, &used, &f, NULL);
                                pos += used;
                                if (r == -EAGAIN)
                                        break;
                                assert_int_equal(r, 0);
                                if (f.opcode == WS_OP_PING)
                                        continue;
                                assert_false(got);
                                got = true;
                                assert_int_equal(f.opcode, text ? WS_OP_TEXT : WS_OP_BINARY);
                                assert_int_equal(f.len, len);
                                if (len)
                                        assert_memory_equal(f.data, msg, len);
                        }
                }
                assert_true(got);
                ws_parser_done(&p);
                ws_buf_done(&b);
        }
}

/* Valid streams with random bytes flipped, cut or inserted: no crash, sane results. */
static void test_random_mutation(void **state)
{
        uint64_t seed = 0x1234567887654321ull;
        struct ws_buf base = {0};
        struct ws_buf scratch = {0};

        (void)state;
        put_frame(&base, 0x01, KEY, LEN_AUTO, "0Zm9v", 5);
        put_frame(&base, 0x89, KEY, LEN_AUTO, "ping", 4);
        put_frame(&base, 0x80, KEY, LEN_16, "Cg==", 4);
        put_frame(&base, 0x82, KEY, LEN_AUTO, "\xff\x00", 2);
        put_frame(&base, 0x82, KEY, LEN_64, "\x04{\"Width\":1,\"Height\":2}", 24);
        put_frame(&base, 0x88, KEY, LEN_AUTO, "\x03\xe8ok", 4);
        for (int iter = 0; iter < 20000; iter++) {
                uint8_t buf[256];
                size_t len = base.len;
                unsigned muts = 1 + rnd(&seed) % 4;

                memcpy(buf, base.data, len);
                for (unsigned m = 0; m < muts; m++) {
                        size_t at = rnd(&seed) % len;

                        switch (rnd(&seed) % 4) {
                        case 0:
                                buf[at] ^= (uint8_t)(1u << (rnd(&seed) % 8));
                                break;
                        case 1:
                                buf[at] = (uint8_t)rnd(&seed);
                                break;
                        case 2:
                                len = at + 1;
                                break;
                        default:
                                if (len < sizeof(buf)) {
                                        memmove(buf + at + 1, buf + at, len - at);
                                        buf[at] = (uint8_t)rnd(&seed);
                                        len++;
                                }
                                break;
                        }
                }

                struct ws_parser p;
                struct ws_frame f;
                size_t pos = 0;

                ws_parser_init(&p, 64 + rnd(&seed) % 64);
                while (pos < len) {
                        size_t chunk = 1 + rnd(&seed) % 16, used;
                        int r;

                        if (chunk > len - pos)
                                chunk = len - pos;
                        r = ws_parse(&p, buf + pos, chunk, &used, &f, NULL);
                        assert_true(used <= chunk);
                        pos += used;
                        if (r == -EAGAIN) {
                                assert_int_equal(used, chunk);
                                continue;
                        }
                        if (r < 0) {
                                assert_true(r == -EPROTO || r == -EILSEQ || r == -EMSGSIZE);
                                break;
                        }
                        if (f.opcode == WS_OP_TEXT)
                                assert_true(ws_utf8_valid(f.data, f.len));
                        if (f.opcode == WS_OP_CLOSE)
                                assert_true(f.close_code == WS_CLOSE_NO_STATUS ||
                                            ws_close_code_valid(f.close_code));
                        if (f.opcode == WS_OP_TEXT || f.opcode == WS_OP_BINARY) {
                                struct ws_k8s_msg km;
                                uint16_t w, h;

                                for (int pr = WS_CHANNEL; pr <= WS_V4_BASE64_CHANNEL; pr++)
                                        if (ws_k8s_unwrap(pr, f.data, f.len, &scratch, &km, NULL) ==
                                                    0 &&
                                            km.kind == WS_K8S_DATA && km.channel == 4)
                                                (void)ws_k8s_parse_resize(km.data, km.len, &w, &h,
                                                                          NULL);
                        }
                }
                ws_parser_done(&p);
        }
        ws_buf_done(&scratch);
        ws_buf_done(&base);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sha1_fips),
                cmocka_unit_test(test_sha1_million_a),
                cmocka_unit_test(test_accept_key),
                cmocka_unit_test(test_version),
                cmocka_unit_test(test_choose_protocol),
                cmocka_unit_test(test_rfc_hello),
                cmocka_unit_test(test_rfc_fragmented_and_ping),
                cmocka_unit_test(test_every_split),
                cmocka_unit_test(test_long_lengths),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_bad_utf8),
                cmocka_unit_test(test_close_frames),
                cmocka_unit_test(test_encode),
                cmocka_unit_test(test_proto_names),
                cmocka_unit_test(test_wrap),
                cmocka_unit_test(test_unwrap),
                cmocka_unit_test(test_portforward),
                cmocka_unit_test(test_resize),
                cmocka_unit_test(test_random_roundtrip),
                cmocka_unit_test(test_random_mutation),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
