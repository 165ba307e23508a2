#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * WebSocket (RFC 6455), server side, plus the Kubernetes channel sub-protocols that
 * kubectl/client-go speak over it for exec, attach and port-forward
 * (k8s.io/apimachinery/pkg/util/httpstream/wsstream). Buffer level only: no sockets, no
 * threads, no HTTP parsing. No extensions (permessage-deflate) are negotiated, so every
 * RSV bit must be clear. A struct ws_parser is one connection's receive side; it is not
 * thread safe, and the caller serialises use.
 */

struct sh_error;

#define WS_GUID                "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_VERSION             13
#define WS_MAX_CONTROL         125                 /* control frame payload bytes */
#define WS_MAX_MESSAGE_DEFAULT (16u * 1024 * 1024) /* reassembled message bytes */

enum ws_opcode {
        WS_OP_CONTINUATION = 0x0,
        WS_OP_TEXT = 0x1,
        WS_OP_BINARY = 0x2,
        WS_OP_CLOSE = 0x8,
        WS_OP_PING = 0x9,
        WS_OP_PONG = 0xa,
};

/* Close status codes (RFC 6455 7.4.1, and 1012-1014 from the IANA registry). */
enum ws_close_code {
        WS_CLOSE_NORMAL = 1000,
        WS_CLOSE_GOING_AWAY = 1001,
        WS_CLOSE_PROTOCOL_ERROR = 1002,
        WS_CLOSE_UNSUPPORTED = 1003,
        WS_CLOSE_NO_STATUS = 1005, /* never on the wire: an empty close frame */
        WS_CLOSE_ABNORMAL = 1006,  /* never on the wire */
        WS_CLOSE_INVALID_DATA = 1007,
        WS_CLOSE_POLICY = 1008,
        WS_CLOSE_TOO_BIG = 1009,
        WS_CLOSE_MANDATORY_EXT = 1010,
        WS_CLOSE_INTERNAL_ERROR = 1011,
        WS_CLOSE_SERVICE_RESTART = 1012,
        WS_CLOSE_TRY_AGAIN_LATER = 1013,
        WS_CLOSE_BAD_GATEWAY = 1014,
};

/* ---- Handshake (RFC 6455 4.2) ---- */

/*
 * Sec-WebSocket-Accept for the client's Sec-WebSocket-Key @client_key: base64 of the
 * SHA-1 of the key and WS_GUID, 28 characters and a NUL into @out. Surrounding spaces and
 * tabs are ignored. -EINVAL if the key is not the base64 of 16 bytes (4.2.1 item 5).
 */
int ws_accept_key(const char *client_key, char out[29]);

/*
 * Checks a Sec-WebSocket-Version header value: 0 for "13", -EINVAL otherwise (NULL too);
 * the caller then answers 426 with "Sec-WebSocket-Version: 13".
 */
int ws_check_version(const char *value);

/*
 * Picks the sub-protocol: the first name in @offered, the comma-separated
 * Sec-WebSocket-Protocol value (several header lines joined with ","), that @supported
 * (NULL-terminated) holds; the client's order decides, as in the kubelet's handshake, and
 * names compare exactly. *@chosen borrows
 * the @supported entry. An absent or blank @offered gives 0 with *@chosen = NULL: answer
 * without the header (Kubernetes then speaks channel.k8s.io). -ENOENT if nothing offered
 * is supported: refuse the upgrade.
 */
int ws_choose_protocol(const char *offered, const char *const *supported, const char **chosen);

/* ---- Frames ---- */

/* A growable byte buffer. Zero-initialise it; release with ws_buf_done(). */
struct ws_buf {
        uint8_t *data;
        size_t len, cap;
};

/* Makes room for @extra more bytes after @len. 0 or -ENOMEM (@b unchanged). */
int ws_buf_reserve(struct ws_buf *b, size_t extra);
/* Frees @b's storage and zeroes it; safe to call twice. */
void ws_buf_done(struct ws_buf *b);

/*
 * One decoded message or control frame; it borrows from the parser until the next
 * ws_parse() or ws_parser_done().
 *   TEXT/BINARY: @data/@len is the whole reassembled message (TEXT is valid UTF-8).
 *   PING/PONG:   @data/@len is the application data (<= 125 bytes).
 *   CLOSE:       @close_code is the status (WS_CLOSE_NO_STATUS for an empty body) and
 *                @data/@len the UTF-8 reason (not NUL-terminated).
 */
struct ws_frame {
        enum ws_opcode opcode;
        const uint8_t *data;
        size_t len;
        uint16_t close_code;
};

struct ws_parser {
        size_t max_message; /* 0 takes WS_MAX_MESSAGE_DEFAULT */
        int failed;         /* the sticky error of a broken stream, 0 while healthy */
        /* the frame header being read */
        uint8_t hdr[14];
        size_t hdr_len;
        /* the frame being read */
        bool in_frame;
        bool fin;
        enum ws_opcode opcode;
        uint64_t remaining; /* payload bytes still to come */
        uint8_t mask[4];
        size_t mask_pos; /* bytes of the payload unmasked so far, mod 4 */
        /* the message being reassembled */
        enum ws_opcode msg_opcode; /* WS_OP_CONTINUATION when none */
        struct ws_buf msg;
        bool msg_delivered; /* @msg was handed out; drop it on the next call */
        uint8_t ctl[WS_MAX_CONTROL];
        size_t ctl_len;
};

/* Sets up @p with @max_message (0: the default). Pair with ws_parser_done(). */
void ws_parser_init(struct ws_parser *p, size_t max_message);
/* Frees what @p holds; safe on a zeroed or already-done parser. */
void ws_parser_done(struct ws_parser *p);

/*
 * Decodes client frames from @buf[0..@len). *@consumed is always set to the bytes used,
 * which the caller drops before the next call whatever the result. Returns
 *   0         a message or control frame in *@out (control frames may arrive between the
 *             fragments of a message, which carries on reassembling);
 *   -EAGAIN   all of @buf consumed, more bytes needed;
 *   -EPROTO   unmasked frame, RSV bit set, unknown opcode, fragmented or oversized
 *             control frame, continuation without a message or a new message inside one,
 *             64-bit length with the top bit set, bad close body or status code (1002);
 *   -EILSEQ   a text message or close reason that is not UTF-8 (1007);
 *   -EMSGSIZE a message over max_message (1009);
 *   -ENOMEM.
 * Every error is fatal: later calls return it again. ws_close_code_for() gives the status
 * to send before closing. After a CLOSE the caller answers it and stops feeding the
 * parser. Text is checked for UTF-8 once the message is complete. Never blocks.
 */
int ws_parse(struct ws_parser *p, const uint8_t *buf, size_t len, size_t *consumed,
             struct ws_frame *out, struct sh_error *err);

/* The close status for a ws_parse() error: 1002, 1007, 1009, else 1011. */
uint16_t ws_close_code_for(int r);

/* True if @code may appear in a close frame (1000-1003, 1007-1014, 3000-4999). */
bool ws_close_code_valid(unsigned code);

/* True if @len bytes of @s are valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool ws_utf8_valid(const void *s, size_t len);

/*
 * Encoders append one unmasked, unfragmented (server to client) frame to @out; on failure
 * @out is as it was.
 * ws_encode: -EINVAL for an unknown or continuation opcode, a control payload over 125
 * bytes, a TEXT payload that is not UTF-8; -ENOMEM.
 */
int ws_encode(struct ws_buf *out, enum ws_opcode opcode, const void *data, size_t len);

/*
 * A close frame: @code 0 sends an empty body (no reason allowed), else @code must pass
 * ws_close_code_valid(). @reason (NULL: none) must be UTF-8; it is cut at a character
 * boundary to the 123 bytes that fit. -EINVAL, -ENOMEM.
 */
int ws_encode_close(struct ws_buf *out, unsigned code, const char *reason);

/* ---- Kubernetes channel sub-protocols ---- */

/*
 * channel.k8s.io:        binary messages, first byte the channel number.
 * base64.channel.k8s.io: text messages, first char '0' + channel, then standard base64.
 * v4.channel.k8s.io:     as channel.k8s.io; the error channel carries a JSON
 *                        metav1.Status instead of plain text.
 * v4.base64.channel.k8s.io: v4 with the base64 framing (kubelet offers it for exec and
 *                        port-forward).
 * v5.channel.k8s.io:     as v4, plus the close signal: the message [255, N] half-closes
 *                        channel N (the client's stdin; the server's stdout/stderr).
 * No Sec-WebSocket-Protocol at all means channel.k8s.io.
 */
enum ws_k8s_proto {
        WS_CHANNEL,
        WS_BASE64_CHANNEL,
        WS_V4_CHANNEL,
        WS_V5_CHANNEL,
        WS_V4_BASE64_CHANNEL,
};

#define WS_K8S_PROTO_CHANNEL        "channel.k8s.io"
#define WS_K8S_PROTO_BASE64_CHANNEL "base64.channel.k8s.io"
#define WS_K8S_PROTO_V4_CHANNEL     "v4.channel.k8s.io"
#define WS_K8S_PROTO_V4_BASE64      "v4.base64.channel.k8s.io"
#define WS_K8S_PROTO_V5_CHANNEL     "v5.channel.k8s.io"

/* remotecommand channel numbers (k8s.io/apimachinery/pkg/util/remotecommand). */
#define WS_K8S_STDIN  0
#define WS_K8S_STDOUT 1
#define WS_K8S_STDERR 2
#define WS_K8S_ERROR  3
#define WS_K8S_RESIZE 4
#define WS_K8S_CLOSE  255 /* v5: the close-signal marker, not a channel */

/*
 * The highest channel each framing can carry: 254 binary (255 is reserved), 79 base64
 * (the channel char, '0' + N, must stay ASCII in a text frame).
 */
#define WS_K8S_MAX_CHANNEL        254
#define WS_K8S_MAX_BASE64_CHANNEL (0x7f - '0')

/* The wire name of @proto ("v5.channel.k8s.io"), or NULL if out of range. */
const char *ws_k8s_proto_name(enum ws_k8s_proto proto);

/*
 * The protocol for a negotiated sub-protocol name; NULL (none negotiated) is
 * WS_CHANNEL. -ENOENT for an unknown name.
 */
int ws_k8s_proto_from_name(const char *name, enum ws_k8s_proto *ret);

/*
 * Sub-protocols for ws_choose_protocol(), NULL-terminated, most preferred first:
 * exec/attach (v5, v4, v4.base64, channel, base64) and port-forward (v4, v4.base64;
 * the kubelet's set, where no protocol is channel.k8s.io too). Static storage.
 */
const char *const *ws_k8s_exec_protocols(void);
const char *const *ws_k8s_portforward_protocols(void);

/* True if @proto's error channel carries a metav1.Status JSON (v4 and later). */
bool ws_k8s_proto_status_errors(enum ws_k8s_proto proto);

/*
 * Appends one frame carrying @len bytes of @data on @channel to @out (@out unchanged on
 * failure). An empty payload is allowed: Kubernetes sends one on the first output
 * channel to tell the client the session is up. -EINVAL for a channel the framing cannot
 * carry or a bad @proto, -ENOMEM.
 */
int ws_k8s_wrap(struct ws_buf *out, enum ws_k8s_proto proto, unsigned channel, const void *data,
                size_t len);

/* v5 only: appends the close signal for @channel. -EOPNOTSUPP for other protocols. */
int ws_k8s_wrap_close(struct ws_buf *out, enum ws_k8s_proto proto, unsigned channel);

enum ws_k8s_kind {
        WS_K8S_DATA,   /* @channel, @data/@len */
        WS_K8S_CLOSED, /* v5 close signal: the peer will send no more on @channel */
        WS_K8S_EMPTY,  /* an empty message; Kubernetes ignores these */
};

struct ws_k8s_msg {
        enum ws_k8s_kind kind;
        unsigned channel;
        const uint8_t *data; /* borrows the message (binary) or @scratch (base64) */
        size_t len;
};

/*
 * Splits one received TEXT or BINARY message @msg/@len into its channel and payload.
 * Base64 payloads are decoded into @scratch (reset first; may be NULL for the binary
 * framings). A channel beyond what the session opened is returned as is: the caller
 * ignores it, as Kubernetes does. Returns 0, -EINVAL (bad base64, a channel char outside
 * '0'..0x7f, @scratch NULL when needed, bad @proto), -EPROTO (a v5 close signal that is not
 * exactly 2 bytes; Kubernetes logs and ignores those), -ENOMEM.
 */
int ws_k8s_unwrap(enum ws_k8s_proto proto, const uint8_t *msg, size_t len, struct ws_buf *scratch,
                  struct ws_k8s_msg *ret, struct sh_error *err);

/*
 * Parses a resize-channel payload, {"Width":N,"Height":M} (keys matched without regard to
 * case, as Go's encoding/json does; other keys ignored). Both are required integers in
 * 0..65535. -EINVAL with a message otherwise.
 */
int ws_k8s_parse_resize(const void *data, size_t len, uint16_t *ret_width, uint16_t *ret_height,
                        struct sh_error *err);

/*
 * Port-forward (kubelet portforward/websocket.go): port i of the request (the "port"
 * query values in order) gets the data channel 2i and the error channel 2i+1; the server
 * first writes the port as 2 little-endian bytes on both, then data, or an error text.
 */
static inline unsigned ws_k8s_pf_data_channel(unsigned i)
{
        return 2 * i;
}

static inline unsigned ws_k8s_pf_error_channel(unsigned i)
{
        return 2 * i + 1;
}

/* Appends the port announcement for @port on @channel. As ws_k8s_wrap(). */
int ws_k8s_wrap_port(struct ws_buf *out, enum ws_k8s_proto proto, unsigned channel, uint16_t port);

/*
 * Appends the ports of one "port" query value (comma-separated decimals, 1..65535) to
 * @ports, which holds @max entries with *@n used. -EINVAL for an empty, malformed or zero
 * port, -E2BIG past @max.
 */
int ws_k8s_pf_parse_ports(const char *value, uint16_t *ports, size_t max, size_t *n,
                          struct sh_error *err);
