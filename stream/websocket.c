#include "websocket.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "sha1.h"
#include "sha256.h"
#include "strutil.h"

/* ---- helpers ---- */

static bool is_ows(char c)
{
        return c == ' ' || c == '\t';
}

/* Trims spaces and tabs off both ends of @s: *@start and the returned length. */
static size_t trim_ows(const char *s, const char **start)
{
        size_t n;

        while (is_ows(*s))
                s++;
        n = strlen(s);
        while (n > 0 && is_ows(s[n - 1]))
                n--;
        *start = s;
        return n;
}

static int b64_value(uint8_t c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/*
 * Standard base64 with padding, as Go's base64.StdEncoding.Decode: CR and LF are
 * skipped, nothing may follow the padding, and the unused low bits of the last group are
 * not checked. @out needs 3 * ceil(@len / 4) bytes. 0 or -EINVAL.
 */
static int b64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t *ret_len)
{
        int q[4] = {0};
        size_t qn = 0, o = 0;
        bool done = false;

        for (size_t i = 0; i < len; i++) {
                uint8_t c = in[i];

                if (c == '\r' || c == '\n')
                        continue;
                if (done)
                        return -EINVAL;
                if (c == '=') {
                        /* only in the last two places of a group ("xx==", "xxx=") */
                        if (qn < 2)
                                return -EINVAL;
                        q[qn++] = -1;
                } else {
                        int v = b64_value(c);

                        /* "xx=y" */
                        if (v < 0 || (qn == 3 && q[2] < 0))
                                return -EINVAL;
                        q[qn++] = v;
                }
                if (qn < 4)
                        continue;
                uint32_t v = (uint32_t)q[0] << 18 | (uint32_t)q[1] << 12;

                out[o++] = (uint8_t)(v >> 16);
                if (q[2] >= 0) {
                        v |= (uint32_t)q[2] << 6;
                        out[o++] = (uint8_t)(v >> 8);
                        if (q[3] >= 0)
                                out[o++] = (uint8_t)(v | (uint32_t)q[3]);
                        else
                                done = true;
                } else {
                        done = true;
                }
                qn = 0;
        }
        if (qn != 0)
                return -EINVAL;
        *ret_len = o;
        return 0;
}

/* ---- handshake ---- */

int ws_accept_key(const char *client_key, char out[29])
{
        uint8_t raw[18];
        uint8_t md[20];
        char cat[24 + sizeof(WS_GUID) - 1];
        const char *k;
        size_t n, rawlen;

        if (!client_key)
                return -EINVAL;
        n = trim_ows(client_key, &k);
        if (n != 24 || b64_decode((const uint8_t *)k, n, raw, &rawlen) < 0 || rawlen != 16)
                return -EINVAL;
        memcpy(cat, k, 24);
        memcpy(cat + 24, WS_GUID, sizeof(WS_GUID) - 1);
        sh_sha1(cat, sizeof(cat), md);
        sh_base64_encode(md, sizeof(md), out);
        return 0;
}

int ws_check_version(const char *value)
{
        const char *v;
        size_t n;

        if (!value)
                return -EINVAL;
        n = trim_ows(value, &v);
        return n == 2 && memcmp(v, "13", 2) == 0 ? 0 : -EINVAL;
}

int ws_choose_protocol(const char *offered, const char *const *supported, const char **chosen)
{
        const char *cur = offered, *v;
        bool any = false;
        size_t m;

        /* The client's order decides, as the kubelet's handshake does. */
        while (sh_list_next(&cur, &v, &m)) {
                any = true;
                for (const char *const *s = supported; s && *s; s++)
                        if (strlen(*s) == m && strncmp(v, *s, m) == 0) {
                                *chosen = *s;
                                return 0;
                        }
        }
        if (!any) {
                *chosen = NULL;
                return 0;
        }
        return -ENOENT;
}

/* ---- buffers ---- */

int ws_buf_reserve(struct ws_buf *b, size_t extra)
{
        size_t cap;
        uint8_t *d;

        if (extra <= b->cap - b->len)
                return 0;
        if (extra > SIZE_MAX / 2 - b->len)
                return -ENOMEM;
        cap = b->cap ? b->cap : 256;
        while (cap < b->len + extra)
                cap *= 2;
        d = realloc(b->data, cap);
        if (!d)
                return -ENOMEM;
        b->data = d;
        b->cap = cap;
        return 0;
}

void ws_buf_done(struct ws_buf *b)
{
        free(b->data);
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
}

/* ---- validation ---- */

bool ws_close_code_valid(unsigned code)
{
        return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
               (code >= 3000 && code <= 4999);
}

bool ws_utf8_valid(const void *s, size_t len)
{
        const uint8_t *p = s;
        size_t i = 0;

        while (i < len) {
                uint8_t c = p[i];
                uint32_t cp, min;
                size_t n;

                if (c < 0x80) {
                        i++;
                        continue;
                }
                if ((c & 0xe0) == 0xc0) {
                        n = 1, cp = c & 0x1f, min = 0x80;
                } else if ((c & 0xf0) == 0xe0) {
                        n = 2, cp = c & 0x0f, min = 0x800;
                } else if ((c & 0xf8) == 0xf0) {
                        n = 3, cp = c & 0x07, min = 0x10000;
                } else {
                        return false;
                }
                if (len - i - 1 < n)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((p[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += n + 1;
        }
        return true;
}

uint16_t ws_close_code_for(int r)
{
        switch (r) {
        case -EPROTO:
                return WS_CLOSE_PROTOCOL_ERROR;
        case -EILSEQ:
                return WS_CLOSE_INVALID_DATA;
        case -EMSGSIZE:
                return WS_CLOSE_TOO_BIG;
        default:
                return WS_CLOSE_INTERNAL_ERROR;
        }
}

/* ---- parser ---- */

static bool opcode_known(unsigned op)
{
        return op == WS_OP_CONTINUATION || op == WS_OP_TEXT || op == WS_OP_BINARY ||
               op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG;
}

static bool opcode_control(unsigned op)
{
        return (op & 0x8) != 0;
}

void ws_parser_init(struct ws_parser *p, size_t max_message)
{
        memset(p, 0, sizeof(*p));
        p->max_message = max_message ? max_message : WS_MAX_MESSAGE_DEFAULT;
        p->msg_opcode = WS_OP_CONTINUATION;
}

void ws_parser_done(struct ws_parser *p)
{
        ws_buf_done(&p->msg);
        p->msg_delivered = false;
        p->msg_opcode = WS_OP_CONTINUATION;
}

static size_t header_size(const uint8_t *h)
{
        size_t n = 2;

        if ((h[1] & 0x7f) == 126)
                n += 2;
        else if ((h[1] & 0x7f) == 127)
                n += 8;
        if (h[1] & 0x80)
                n += 4;
        return n;
}

static int fail(struct ws_parser *p, int r)
{
        p->failed = r;
        return r;
}

/* Checks the first two header bytes, which decide everything but the length. */
static int check_start(struct ws_parser *p, struct sh_error *err)
{
        unsigned op = p->hdr[0] & 0x0f;
        bool fin = (p->hdr[0] & 0x80) != 0;
        unsigned len7 = p->hdr[1] & 0x7f;

        if (p->hdr[0] & 0x70)
                return sh_err(err, -EPROTO, "websocket: reserved bits 0x%02x set",
                              p->hdr[0] & 0x70);
        if (!opcode_known(op))
                return sh_err(err, -EPROTO, "websocket: unknown opcode 0x%x", op);
        if (!(p->hdr[1] & 0x80))
                return sh_err(err, -EPROTO, "websocket: client frame is not masked");
        if (opcode_control(op)) {
                if (!fin)
                        return sh_err(err, -EPROTO, "websocket: fragmented control frame");
                if (len7 > WS_MAX_CONTROL)
                        return sh_err(err, -EPROTO,
                                      "websocket: control frame longer than 125 bytes");
        } else if (op == WS_OP_CONTINUATION) {
                if (p->msg_opcode == WS_OP_CONTINUATION)
                        return sh_err(err, -EPROTO,
                                      "websocket: continuation frame outside a message");
        } else if (p->msg_opcode != WS_OP_CONTINUATION) {
                return sh_err(err, -EPROTO, "websocket: new message inside a fragmented message");
        }
        return 0;
}

/* The whole header is in: decode the length and the mask, set up the frame. */
static int start_frame(struct ws_parser *p, struct sh_error *err)
{
        const uint8_t *h = p->hdr;
        unsigned op = h[0] & 0x0f;
        uint64_t len = h[1] & 0x7f;
        size_t at = 2;

        if (len == 126) {
                len = (uint64_t)h[2] << 8 | h[3];
                at = 4;
        } else if (len == 127) {
                len = 0;
                for (int i = 0; i < 8; i++)
                        len = len << 8 | h[2 + i];
                at = 10;
                if (len >> 63)
                        return sh_err(err, -EPROTO, "websocket: 64-bit length has its top bit set");
        }
        memcpy(p->mask, h + at, 4);
        if (!opcode_control(op)) {
                size_t have = op == WS_OP_CONTINUATION ? p->msg.len : 0;

                if (have > p->max_message || len > p->max_message - have)
                        return sh_err(err, -EMSGSIZE,
                                      "websocket: message longer than the %zu-byte limit",
                                      p->max_message);
                if (op != WS_OP_CONTINUATION) {
                        p->msg_opcode = op;
                        p->msg.len = 0;
                }
        } else {
                p->ctl_len = 0;
        }
        p->opcode = op;
        p->fin = (h[0] & 0x80) != 0;
        p->remaining = len;
        p->mask_pos = 0;
        p->in_frame = true;
        p->hdr_len = 0;
        return 0;
}

static void unmask(struct ws_parser *p, uint8_t *dst, const uint8_t *src, size_t n)
{
        for (size_t i = 0; i < n; i++)
                dst[i] = src[i] ^ p->mask[(p->mask_pos + i) & 3];
        p->mask_pos = (p->mask_pos + n) & 3;
}

static int finish_control(struct ws_parser *p, struct ws_frame *out, struct sh_error *err)
{
        memset(out, 0, sizeof(*out));
        out->opcode = p->opcode;
        out->data = p->ctl;
        out->len = p->ctl_len;
        if (p->opcode != WS_OP_CLOSE)
                return 0;
        if (p->ctl_len == 0) {
                out->close_code = WS_CLOSE_NO_STATUS;
                return 0;
        }
        if (p->ctl_len == 1)
                return sh_err(err, -EPROTO, "websocket: close frame with a 1-byte body");
        out->close_code = (uint16_t)(p->ctl[0] << 8 | p->ctl[1]);
        if (!ws_close_code_valid(out->close_code))
                return sh_err(err, -EPROTO, "websocket: invalid close status %u", out->close_code);
        out->data = p->ctl + 2;
        out->len = p->ctl_len - 2;
        if (!ws_utf8_valid(out->data, out->len))
                return sh_err(err, -EILSEQ, "websocket: close reason is not UTF-8");
        return 0;
}

int ws_parse(struct ws_parser *p, const uint8_t *buf, size_t len, size_t *consumed,
             struct ws_frame *out, struct sh_error *err)
{
        size_t used = 0;
        int r;

        *consumed = 0;
        if (p->failed)
                return sh_err(err, p->failed, "websocket: stream already failed");
        if (p->max_message == 0)
                p->max_message = WS_MAX_MESSAGE_DEFAULT;
        if (p->msg_delivered) {
                /* a big message's buffer is not kept for the connection's lifetime */
                if (p->msg.cap > 64 * 1024)
                        ws_buf_done(&p->msg);
                p->msg.len = 0;
                p->msg_opcode = WS_OP_CONTINUATION;
                p->msg_delivered = false;
        }
        for (;;) {
                while (!p->in_frame) {
                        size_t need = p->hdr_len < 2 ? 2 : header_size(p->hdr);

                        if (p->hdr_len == need) {
                                r = start_frame(p, err);
                                if (r < 0) {
                                        *consumed = used;
                                        return fail(p, r);
                                }
                                break;
                        }
                        if (used == len) {
                                *consumed = used;
                                return -EAGAIN;
                        }
                        p->hdr[p->hdr_len++] = buf[used++];
                        if (p->hdr_len == 2) {
                                r = check_start(p, err);
                                if (r < 0) {
                                        *consumed = used;
                                        return fail(p, r);
                                }
                        }
                }

                size_t take = len - used;

                if (take > p->remaining)
                        take = (size_t)p->remaining;
                if (opcode_control(p->opcode) && take > 0) {
                        unmask(p, p->ctl + p->ctl_len, buf + used, take);
                        p->ctl_len += take;
                } else if (take > 0) {
                        r = ws_buf_reserve(&p->msg, take);
                        if (r < 0) {
                                *consumed = used;
                                return fail(p, sh_err(err, r, "websocket: out of memory"));
                        }
                        unmask(p, p->msg.data + p->msg.len, buf + used, take);
                        p->msg.len += take;
                }
                used += take;
                p->remaining -= take;
                if (p->remaining > 0) {
                        *consumed = used;
                        return -EAGAIN;
                }
                p->in_frame = false;
                if (opcode_control(p->opcode)) {
                        *consumed = used;
                        r = finish_control(p, out, err);
                        return r < 0 ? fail(p, r) : 0;
                }
                if (!p->fin)
                        continue;
                *consumed = used;
                if (p->msg_opcode == WS_OP_TEXT && !ws_utf8_valid(p->msg.data, p->msg.len))
                        return fail(p,
                                    sh_err(err, -EILSEQ, "websocket: text message is not UTF-8"));
                memset(out, 0, sizeof(*out));
                out->opcode = p->msg_opcode;
                out->data = p->msg.data ? p->msg.data : p->ctl;
                out->len = p->msg.len;
                p->msg_delivered = true;
                return 0;
        }
}

/* ---- encoder ---- */

/*
 * Reserves room for a frame with a @plen-byte payload (plus @slack bytes after it),
 * writes the header and returns where the payload goes; @out->len covers the payload.
 */
static int frame_begin(struct ws_buf *out, unsigned opcode, size_t plen, size_t slack,
                       uint8_t **ret_payload)
{
        uint8_t h[10];
        size_t hl;
        int r;

        h[0] = (uint8_t)(0x80 | opcode);
        if (plen < 126) {
                h[1] = (uint8_t)plen;
                hl = 2;
        } else if (plen <= 0xffff) {
                h[1] = 126;
                h[2] = (uint8_t)(plen >> 8);
                h[3] = (uint8_t)plen;
                hl = 4;
        } else {
                h[1] = 127;
                for (int i = 0; i < 8; i++)
                        h[2 + i] = (uint8_t)((uint64_t)plen >> (56 - 8 * i));
                hl = 10;
        }
        if (plen > SIZE_MAX - hl - slack)
                return -ENOMEM;
        r = ws_buf_reserve(out, hl + plen + slack);
        if (r < 0)
                return r;
        memcpy(out->data + out->len, h, hl);
        *ret_payload = out->data + out->len + hl;
        out->len += hl + plen;
        return 0;
}

int ws_encode(struct ws_buf *out, enum ws_opcode opcode, const void *data, size_t len)
{
        uint8_t *pl;
        int r;

        if (!opcode_known(opcode) || opcode == WS_OP_CONTINUATION)
                return -EINVAL;
        if (len > 0 && !data)
                return -EINVAL;
        if (opcode_control(opcode) && len > WS_MAX_CONTROL)
                return -EINVAL;
        if (opcode == WS_OP_TEXT && !ws_utf8_valid(data, len))
                return -EINVAL;
        r = frame_begin(out, opcode, len, 0, &pl);
        if (r < 0)
                return r;
        if (len > 0)
                memcpy(pl, data, len);
        return 0;
}

int ws_encode_close(struct ws_buf *out, unsigned code, const char *reason)
{
        uint8_t body[WS_MAX_CONTROL];
        size_t n = reason ? strlen(reason) : 0;

        if (code == 0)
                return n ? -EINVAL : ws_encode(out, WS_OP_CLOSE, NULL, 0);
        if (!ws_close_code_valid(code) || !ws_utf8_valid(reason, n))
                return -EINVAL;
        if (n > WS_MAX_CONTROL - 2) {
                n = WS_MAX_CONTROL - 2;
                while (n > 0 && ((uint8_t)reason[n] & 0xc0) == 0x80)
                        n--;
        }
        body[0] = (uint8_t)(code >> 8);
        body[1] = (uint8_t)code;
        if (n)
                memcpy(body + 2, reason, n);
        return ws_encode(out, WS_OP_CLOSE, body, n + 2);
}

/* ---- Kubernetes channels ---- */

static const char *const proto_names[] = {
        [WS_CHANNEL] = WS_K8S_PROTO_CHANNEL,
        [WS_BASE64_CHANNEL] = WS_K8S_PROTO_BASE64_CHANNEL,
        [WS_V4_CHANNEL] = WS_K8S_PROTO_V4_CHANNEL,
        [WS_V5_CHANNEL] = WS_K8S_PROTO_V5_CHANNEL,
        [WS_V4_BASE64_CHANNEL] = WS_K8S_PROTO_V4_BASE64,
};

static bool proto_valid(enum ws_k8s_proto proto)
{
        return (unsigned)proto < sizeof(proto_names) / sizeof(proto_names[0]);
}

static bool proto_base64(enum ws_k8s_proto proto)
{
        return proto == WS_BASE64_CHANNEL || proto == WS_V4_BASE64_CHANNEL;
}

const char *ws_k8s_proto_name(enum ws_k8s_proto proto)
{
        return proto_valid(proto) ? proto_names[proto] : NULL;
}

int ws_k8s_proto_from_name(const char *name, enum ws_k8s_proto *ret)
{
        if (!name || !*name) {
                *ret = WS_CHANNEL;
                return 0;
        }
        for (size_t i = 0; i < sizeof(proto_names) / sizeof(proto_names[0]); i++)
                if (strcmp(name, proto_names[i]) == 0) {
                        *ret = (enum ws_k8s_proto)i;
                        return 0;
                }
        return -ENOENT;
}

const char *const *ws_k8s_exec_protocols(void)
{
        static const char *const list[] = {
                WS_K8S_PROTO_V5_CHANNEL, WS_K8S_PROTO_V4_CHANNEL,     WS_K8S_PROTO_V4_BASE64,
                WS_K8S_PROTO_CHANNEL,    WS_K8S_PROTO_BASE64_CHANNEL, NULL,
        };

        return list;
}

const char *const *ws_k8s_portforward_protocols(void)
{
        static const char *const list[] = {WS_K8S_PROTO_V4_CHANNEL, WS_K8S_PROTO_V4_BASE64, NULL};

        return list;
}

bool ws_k8s_proto_status_errors(enum ws_k8s_proto proto)
{
        return proto == WS_V4_CHANNEL || proto == WS_V4_BASE64_CHANNEL || proto == WS_V5_CHANNEL;
}

int ws_k8s_wrap(struct ws_buf *out, enum ws_k8s_proto proto, unsigned channel, const void *data,
                size_t len)
{
        uint8_t *pl;
        int r;

        if (!proto_valid(proto) || (len > 0 && !data))
                return -EINVAL;
        if (proto_base64(proto)) {
                size_t enc;

                if (channel > WS_K8S_MAX_BASE64_CHANNEL || len > SIZE_MAX / 2)
                        return -EINVAL;
                enc = (len + 2) / 3 * 4;
                /* sh_base64_encode() writes a NUL after the text: one byte of slack */
                r = frame_begin(out, WS_OP_TEXT, 1 + enc, 1, &pl);
                if (r < 0)
                        return r;
                pl[0] = (uint8_t)('0' + channel);
                sh_base64_encode(data, len, (char *)pl + 1);
                return 0;
        }
        if (channel > WS_K8S_MAX_CHANNEL || len == SIZE_MAX)
                return -EINVAL;
        r = frame_begin(out, WS_OP_BINARY, 1 + len, 0, &pl);
        if (r < 0)
                return r;
        pl[0] = (uint8_t)channel;
        if (len > 0)
                memcpy(pl + 1, data, len);
        return 0;
}

int ws_k8s_wrap_close(struct ws_buf *out, enum ws_k8s_proto proto, unsigned channel)
{
        uint8_t m[2];

        if (proto != WS_V5_CHANNEL)
                return -EOPNOTSUPP;
        if (channel > WS_K8S_MAX_CHANNEL)
                return -EINVAL;
        m[0] = WS_K8S_CLOSE;
        m[1] = (uint8_t)channel;
        return ws_encode(out, WS_OP_BINARY, m, sizeof(m));
}

int ws_k8s_wrap_port(struct ws_buf *out, enum ws_k8s_proto proto, unsigned channel, uint16_t port)
{
        uint8_t le[2] = {(uint8_t)port, (uint8_t)(port >> 8)};

        return ws_k8s_wrap(out, proto, channel, le, sizeof(le));
}

int ws_k8s_unwrap(enum ws_k8s_proto proto, const uint8_t *msg, size_t len, struct ws_buf *scratch,
                  struct ws_k8s_msg *ret, struct sh_error *err)
{
        size_t n;
        int r;

        if (!proto_valid(proto))
                return sh_err(err, -EINVAL, "websocket: unknown channel protocol %d", (int)proto);
        if (len == 0) {
                *ret = (struct ws_k8s_msg){.kind = WS_K8S_EMPTY};
                return 0;
        }
        if (!proto_base64(proto)) {
                if (proto == WS_V5_CHANNEL && msg[0] == WS_K8S_CLOSE) {
                        if (len != 2)
                                return sh_err(err, -EPROTO,
                                              "websocket: close signal of %zu bytes, not 2", len);
                        *ret = (struct ws_k8s_msg){.kind = WS_K8S_CLOSED, .channel = msg[1]};
                        return 0;
                }
                *ret = (struct ws_k8s_msg){
                        .kind = WS_K8S_DATA, .channel = msg[0], .data = msg + 1, .len = len - 1};
                return 0;
        }
        if (msg[0] < '0' || msg[0] > 0x7f)
                return sh_err(err, -EINVAL, "websocket: bad base64 channel character 0x%02x",
                              msg[0]);
        if (!scratch)
                return sh_err(err, -EINVAL, "websocket: base64 framing needs a scratch buffer");
        scratch->len = 0;
        r = ws_buf_reserve(scratch, (len - 1 + 3) / 4 * 3);
        if (r < 0)
                return sh_err(err, r, "websocket: out of memory");
        if (b64_decode(msg + 1, len - 1, scratch->data, &n) < 0)
                return sh_err(err, -EINVAL, "websocket: channel %u: invalid base64 payload",
                              (unsigned)(msg[0] - '0'));
        scratch->len = n;
        *ret = (struct ws_k8s_msg){.kind = WS_K8S_DATA,
                                   .channel = (unsigned)(msg[0] - '0'),
                                   .data = n ? scratch->data : msg + 1,
                                   .len = n};
        return 0;
}

static void json_putp(json_object **o)
{
        if (*o) {
                json_object_put(*o);
                *o = NULL;
        }
}

static int resize_dim(json_object *v, const char *key, uint16_t *ret, struct sh_error *err)
{
        int64_t n;

        if (!json_object_is_type(v, json_type_int))
                return sh_err(err, -EINVAL, "resize message: %s is not an integer", key);
        n = json_object_get_int64(v);
        if (n < 0 || n > UINT16_MAX)
                return sh_err(err, -EINVAL, "resize message: %s %lld is out of range", key,
                              (long long)n);
        *ret = (uint16_t)n;
        return 0;
}

int ws_k8s_parse_resize(const void *data, size_t len, uint16_t *ret_width, uint16_t *ret_height,
                        struct sh_error *err)
{
        _cleanup_(json_putp) json_object *obj = NULL;
        uint16_t w = 0, h = 0;
        bool have_w = false, have_h = false;
        int r;

        r = sh_json_parse(data, len, "resize message", &obj, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(obj, json_type_object))
                return sh_err(err, -EINVAL, "resize message: not a JSON object");
        json_object_object_foreach (obj, key, val) {
                if (strcasecmp(key, "width") == 0) {
                        r = resize_dim(val, "Width", &w, err);
                        have_w = true;
                } else if (strcasecmp(key, "height") == 0) {
                        r = resize_dim(val, "Height", &h, err);
                        have_h = true;
                }
                if (r < 0)
                        return r;
        }
        if (!have_w || !have_h)
                return sh_err(err, -EINVAL, "resize message: %s missing",
                              have_w ? "Height" : "Width");
        *ret_width = w;
        *ret_height = h;
        return 0;
}

int ws_k8s_pf_parse_ports(const char *value, uint16_t *ports, size_t max, size_t *n,
                          struct sh_error *err)
{
        size_t count = *n;
        const char *s = value;

        if (!value || !*value)
                return sh_err(err, -EINVAL, "port-forward: empty port value");
        for (;;) {
                unsigned long v = 0;
                const char *start = s;

                while (*s >= '0' && *s <= '9') {
                        v = v * 10 + (unsigned long)(*s - '0');
                        if (v > UINT16_MAX)
                                return sh_err(err, -EINVAL, "port-forward: port in '%s' too large",
                                              value);
                        s++;
                }
                if (s == start || (*s && *s != ','))
                        return sh_err(err, -EINVAL, "port-forward: unable to parse '%s' as ports",
                                      value);
                if (v == 0)
                        return sh_err(err, -EINVAL, "port-forward: port 0 in '%s'", value);
                if (count >= max)
                        return sh_err(err, -E2BIG, "port-forward: more than %zu ports", max);
                ports[count++] = (uint16_t)v;
                if (!*s)
                        break;
                s++;
        }
        *n = count;
        return 0;
}
