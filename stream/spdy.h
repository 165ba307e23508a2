#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * SPDY/3.1 framing (draft-mbelshe-httpbis-spdy-00 plus the 3.1 session flow control), the
 * transport under kubectl exec/attach/port-forward. Buffer level only: no sockets, no
 * threads, no stream state machine. A struct spdy_session is one connection's pair of
 * header-compression contexts; it is not thread safe, and the caller serialises use.
 */

struct sh_error;
struct z_stream_s;

#define SPDY_VERSION        3
#define SPDY_MAX_LENGTH     0xffffffu /* the 24-bit length field */
#define SPDY_STREAM_MAX     0x7fffffffu
#define SPDY_WINDOW_MAX     0x7fffffff
#define SPDY_WINDOW_DEFAULT 65536 /* initial stream and session window */

/* Frame kinds; the control-frame values are the wire type codes. */
enum spdy_frame_type {
        SPDY_DATA = 0,
        SPDY_SYN_STREAM = 1,
        SPDY_SYN_REPLY = 2,
        SPDY_RST_STREAM = 3,
        SPDY_SETTINGS = 4,
        SPDY_PING = 6,
        SPDY_GOAWAY = 7,
        SPDY_HEADERS = 8,
        SPDY_WINDOW_UPDATE = 9,
};

#define SPDY_FLAG_FIN            0x01 /* DATA, SYN_STREAM, SYN_REPLY, HEADERS */
#define SPDY_FLAG_UNIDIRECTIONAL 0x02 /* SYN_STREAM */
#define SPDY_FLAG_CLEAR_SETTINGS 0x01 /* SETTINGS */

#define SPDY_SETTINGS_FLAG_PERSIST_VALUE 0x01
#define SPDY_SETTINGS_FLAG_PERSISTED     0x02

enum spdy_settings_id {
        SPDY_SETTINGS_UPLOAD_BANDWIDTH = 1,
        SPDY_SETTINGS_DOWNLOAD_BANDWIDTH = 2,
        SPDY_SETTINGS_ROUND_TRIP_TIME = 3,
        SPDY_SETTINGS_MAX_CONCURRENT_STREAMS = 4,
        SPDY_SETTINGS_CURRENT_CWND = 5,
        SPDY_SETTINGS_DOWNLOAD_RETRANS_RATE = 6,
        SPDY_SETTINGS_INITIAL_WINDOW_SIZE = 7,
        SPDY_SETTINGS_CLIENT_CERTIFICATE_VECTOR_SIZE = 8,
};

enum spdy_rst_status {
        SPDY_RST_PROTOCOL_ERROR = 1,
        SPDY_RST_INVALID_STREAM = 2,
        SPDY_RST_REFUSED_STREAM = 3,
        SPDY_RST_UNSUPPORTED_VERSION = 4,
        SPDY_RST_CANCEL = 5,
        SPDY_RST_INTERNAL_ERROR = 6,
        SPDY_RST_FLOW_CONTROL_ERROR = 7,
        SPDY_RST_STREAM_IN_USE = 8,
        SPDY_RST_STREAM_ALREADY_CLOSED = 9,
        SPDY_RST_FRAME_TOO_LARGE = 11,
};

enum spdy_goaway_status {
        SPDY_GOAWAY_OK = 0,
        SPDY_GOAWAY_PROTOCOL_ERROR = 1,
        SPDY_GOAWAY_INTERNAL_ERROR = 2,
};

/*
 * One name/value pair. Decoded: both strings are NUL-terminated and point into the
 * session, valid until the next spdy_parse() or spdy_session_done(); a value may hold
 * several values separated by single NULs (the spec's multi-value form), so use
 * value_len. Encoded: a length of 0 means strlen() of the string; a NULL value is empty.
 */
struct spdy_header {
        const char *name;
        const char *value;
        size_t name_len;
        size_t value_len;
};

#define SPDY_HDR(n, v) ((struct spdy_header){.name = (n), .value = (v)})

struct spdy_setting {
        uint8_t flags; /* SPDY_SETTINGS_FLAG_* */
        uint32_t id;   /* enum spdy_settings_id, 24 bits */
        uint32_t value;
};

/*
 * A decoded frame. Only the fields of @type are meaningful; the rest are zero. Pointers
 * (@headers, @settings, @data) borrow: @data points into the buffer given to spdy_parse(),
 * the others into the session, until the next spdy_parse().
 */
struct spdy_frame {
        enum spdy_frame_type type;
        uint8_t flags;      /* raw flags byte */
        uint32_t stream_id; /* DATA, SYN_*, RST_STREAM, HEADERS, WINDOW_UPDATE (0: session) */
        uint32_t assoc_id;  /* SYN_STREAM */
        uint8_t priority;   /* SYN_STREAM, 0 (highest) .. 7 */
        uint8_t slot;       /* SYN_STREAM credential slot */
        uint32_t status; /* RST_STREAM (enum spdy_rst_status), GOAWAY (enum spdy_goaway_status) */
        uint32_t last_good_id; /* GOAWAY */
        uint32_t ping_id;      /* PING */
        uint32_t delta;        /* WINDOW_UPDATE, 31 bits as sent (0 is the peer's error) */
        const struct spdy_header *headers; /* SYN_STREAM, SYN_REPLY, HEADERS, in wire order */
        size_t n_headers;
        const struct spdy_setting *settings; /* SETTINGS */
        size_t n_settings;
        const uint8_t *data; /* DATA payload */
        size_t data_len;
};

/* Receive limits; a zero field takes the default. */
struct spdy_limits {
        size_t max_data_frame;   /* DATA payload bytes, default (and cap) SPDY_MAX_LENGTH */
        size_t max_header_frame; /* control frame payload bytes, default 1 MiB */
        size_t max_header_block; /* inflated header block bytes, default 256 KiB */
};

struct spdy_session {
        struct spdy_limits limits;
        struct z_stream_s *rx; /* inflate, for the peer's header blocks */
        struct z_stream_s *tx; /* deflate, for ours */
        bool rx_broken;        /* a fatal receive error happened; spdy_parse() refuses */
        bool tx_broken;        /* the compressor lost sync; header encoders refuse */
        size_t skip;           /* bytes of an ignored (unknown-type) frame still to drop */
        uint8_t *block;        /* inflated header block; headers point into it */
        size_t block_cap;
        struct spdy_header *hdrs;
        const struct spdy_header **sorted; /* scratch for the duplicate-name check */
        size_t hdrs_cap;
        struct spdy_setting *settings;
        size_t settings_cap;
        uint8_t *nv; /* scratch: the uncompressed name/value block being encoded */
        size_t nv_cap;
};

/* A growable output (or input) buffer. Zero-initialise it; release with spdy_buf_done(). */
struct spdy_buf {
        uint8_t *data;
        size_t len, cap;
};

/*
 * Sets up both zlib streams, primed with the SPDY/3 dictionary. @limits may be NULL.
 * Returns 0, or -ENOMEM with nothing left to free. Pair with spdy_session_done().
 */
int spdy_session_init(struct spdy_session *s, const struct spdy_limits *limits,
                      struct sh_error *err);

/* Frees everything @s holds; safe on a zeroed or already-done session. */
void spdy_session_done(struct spdy_session *s);

/*
 * Decodes the first frame in @buf[0..@len). *@consumed is always set: the caller drops
 * that many bytes from the front of its buffer whatever the result (it can be non-zero
 * with -EAGAIN while an unknown control frame is being skipped, as the spec requires).
 * Returns
 *   0        a frame in *@out;
 *   -EAGAIN  more bytes needed (a control frame is only decoded once it is complete);
 *   -EBADMSG a stream error (bad name/value block): the frame was consumed, only
 *            @out->type and @out->stream_id are set; answer RST_STREAM PROTOCOL_ERROR
 *            and carry on, the session stays usable;
 *   -EPROTO  a session error (wrong version, bad fixed-size frame, stream id 0, corrupt
 *            zlib data); send GOAWAY PROTOCOL_ERROR and close, later calls fail too;
 *   -EMSGSIZE a frame longer than the limits, or a header block inflating past
 *            max_header_block (also fatal);
 *   -ENOMEM.
 * Never blocks.
 */
int spdy_parse(struct spdy_session *s, const uint8_t *buf, size_t len, size_t *consumed,
               struct spdy_frame *out, struct sh_error *err);

/* The first header of @f called @name (exact, lowercase), or NULL. */
const struct spdy_header *spdy_frame_header(const struct spdy_frame *f, const char *name);

/* "SYN_STREAM", …; "UNKNOWN" for other values. */
const char *spdy_frame_type_name(enum spdy_frame_type t);

/*
 * Encoders append one frame to @b; on failure @b is as it was. They return 0, -EINVAL
 * (stream id 0 or above 2^31-1 where one is needed, priority > 7, an empty, NUL-holding
 * or duplicate header name, a value with an empty NUL-separated part), -EMSGSIZE (payload
 * over SPDY_MAX_LENGTH) or -ENOMEM. Header names are lowercased on the wire. The header
 * encoders share the session's compressor: frames must be sent in the order encoded, and
 * if zlib itself fails they return -EPROTO and refuse from then on (tx_broken).
 */
int spdy_encode_syn_stream(struct spdy_session *s, struct spdy_buf *b, uint32_t stream_id,
                           uint32_t assoc_id, uint8_t priority, uint8_t flags,
                           const struct spdy_header *h, size_t n, struct sh_error *err);
int spdy_encode_syn_reply(struct spdy_session *s, struct spdy_buf *b, uint32_t stream_id,
                          uint8_t flags, const struct spdy_header *h, size_t n,
                          struct sh_error *err);
int spdy_encode_headers(struct spdy_session *s, struct spdy_buf *b, uint32_t stream_id,
                        uint8_t flags, const struct spdy_header *h, size_t n, struct sh_error *err);
int spdy_encode_data(struct spdy_buf *b, uint32_t stream_id, uint8_t flags, const void *data,
                     size_t len, struct sh_error *err);
int spdy_encode_rst_stream(struct spdy_buf *b, uint32_t stream_id, uint32_t status,
                           struct sh_error *err);
int spdy_encode_settings(struct spdy_buf *b, uint8_t flags, const struct spdy_setting *v, size_t n,
                         struct sh_error *err);
int spdy_encode_ping(struct spdy_buf *b, uint32_t id, struct sh_error *err);
int spdy_encode_goaway(struct spdy_buf *b, uint32_t last_good_id, uint32_t status,
                       struct sh_error *err);
/* @stream_id 0 is the SPDY/3.1 session window; @delta must be 1..2^31-1. */
int spdy_encode_window_update(struct spdy_buf *b, uint32_t stream_id, uint32_t delta,
                              struct sh_error *err);

/* Appends @n bytes. Returns 0 or -ENOMEM (then @b is unchanged). */
int spdy_buf_append(struct spdy_buf *b, const void *data, size_t n);
/* Drops the first @n bytes (all of them if @n >= len). */
void spdy_buf_consume(struct spdy_buf *b, size_t n);
/* Frees the storage and zeroes @b; safe to call twice. */
void spdy_buf_done(struct spdy_buf *b);

/*
 * Flow control window, one per stream and direction, plus one per direction for the
 * session (stream 0 in SPDY/3.1, not affected by SETTINGS). Send side: check
 * spdy_window_avail() before sending DATA, spdy_window_consume() what was sent, and
 * spdy_window_grow() on the peer's WINDOW_UPDATE. Receive side: spdy_window_consume() each
 * DATA payload (-ENOSPC means the peer overran: RST_STREAM FLOW_CONTROL_ERROR), and
 * spdy_window_release() what the reader has processed; a non-zero return is the delta to
 * send in a WINDOW_UPDATE now.
 */
struct spdy_window {
        int64_t size;     /* credit left; negative after a SETTINGS shrink */
        int64_t initial;  /* the current SETTINGS_INITIAL_WINDOW_SIZE */
        uint32_t pending; /* receive side: released but not yet returned to the peer */
};

void spdy_window_init(struct spdy_window *w, uint32_t initial);
/* Bytes that may be sent now; <= 0 means wait for a WINDOW_UPDATE. */
int64_t spdy_window_avail(const struct spdy_window *w);
/* Takes @n bytes of credit. -ENOSPC (window unchanged) if @n exceeds the credit. */
int spdy_window_consume(struct spdy_window *w, uint32_t n, struct sh_error *err);
/* Adds a WINDOW_UPDATE delta: -EINVAL for 0 or > 2^31-1, -EOVERFLOW past 2^31-1. */
int spdy_window_grow(struct spdy_window *w, uint32_t delta, struct sh_error *err);
/* Applies a new SETTINGS_INITIAL_WINDOW_SIZE (size moves by the difference). -EINVAL if
 * @initial > 2^31-1, -EOVERFLOW if the window would pass 2^31-1. */
int spdy_window_set_initial(struct spdy_window *w, uint32_t initial, struct sh_error *err);
/* Returns @n processed bytes to the window once half the initial window has been freed;
 * returns the WINDOW_UPDATE delta to send (already credited), or 0 for "not yet". */
uint32_t spdy_window_release(struct spdy_window *w, uint32_t n);
