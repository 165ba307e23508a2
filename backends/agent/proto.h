#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The pod agent protocol (DESIGN.md "The pod agent"): what runtd and runt-agent say to each
 * other over one byte stream (virtio-serial for a microVM, TCP+TLS for a Proxmox CT).
 * Both ends link this file; it has no dependency beyond libc, so the static agent can too.
 * Module prefix: ag_.
 *
 * FRAMES. Every message is one frame: a 16-byte header, all fields big-endian,
 *
 *      u8 version (AG_VERSION)  u8 kind  u16 op  u32 stream  u32 id  u32 len
 *
 * followed by @len payload bytes (at most AG_MAX_PAYLOAD; at most AG_MAX_DATA for DATA).
 * A frame with a version, kind or length the reader does not accept ends the connection
 * (-EPROTO): there is no resynchronising inside a byte stream.
 *
 *  kind   direction    op                   stream              id           payload
 *  REQ    host->agent  enum ag_op           stream it opens/0   request id   TLV attrs
 *  RESP   agent->host  the REQ's op         the REQ's stream    request id   TLV attrs
 *  EVENT  agent->host  enum ag_event        0 or the stream     0            TLV attrs
 *  DATA   both         enum ag_chan         stream              0            raw bytes
 *  WINDOW both         enum ag_chan         stream              0            u32 credit
 *  CLOSE  both         enum ag_chan/ALL     stream              0            none
 *
 * Requests are answered in any order; the host matches RESP.id to its REQ. A failed request
 * answers RESP with AG_A_ERRNO (a positive errno) and AG_A_ERRMSG.
 *
 * STREAMS (exec, attach, port-forward) are opened by a REQ whose header carries a stream id
 * the host chose (non-zero, unused). Once the RESP said yes, DATA flows both ways on it.
 * Flow control is per stream and direction: a sender may have at most the credit the peer
 * granted in flight; each side starts with AG_WINDOW_INIT of credit and grants more with
 * WINDOW frames (u32 bytes, big-endian) as it consumes. CLOSE with a channel is that
 * channel's EOF (stdin EOF from the host; stdout/stderr EOF from the agent); CLOSE with
 * AG_CHAN_ALL ends the stream (the host: abandon it, the agent kills what it runs; the
 * agent: it is over, after AG_EV_STREAM_EXIT for an exec).
 *
 * PAYLOADS are TLV attributes: u16 tag, u32 len, then @len bytes. Integers are 8 bytes,
 * big-endian, two's complement. Strings are bytes without a NUL (a NUL in one is -EPROTO).
 * A list is the same tag repeated, in order. A nested record (a mount, a route) is one
 * attribute whose value is a TLV block of its own. Unknown tags are skipped: that is how a
 * newer peer adds fields. A missing attribute means its zero value ("" / 0 / false).
 */

/*
 * IMAGE LAYERS (a Proxmox CT has no share with runtd's layer store: the layers come over the
 * channel). The agent keeps them in <state_dir>/layers/<chain id hex>, read-only from then
 * on, and CTR_CREATE's LOWER may name those directories (LAYER_DIR says the path).
 *
 * LAYER_HAS answers PRESENT 0/1 and LAYER_DIR. LAYER_PUT opens a stream (as EXEC does);
 * its RESP comes
 *   - at once with PRESENT=1 when the layer is there: a no-op; the stream ends right after
 *     (STREAM_EXIT with EXIT_CODE 0, CLOSE ALL) and the host sends nothing on it;
 *   - at once with PRESENT=0: the host sends the layer's records (below) as DATA on
 *     AG_CHAN_STDIN, within the stream's credit, then CLOSE(STDIN);
 *   - later, while another PUT of the same layer runs on the connection: this one waits
 *     for it, then is answered as above (PRESENT=1 if that one succeeded).
 * The agent writes the records under layers/<id>.tmp-XXXXXX and answers the end: on
 * success it syncs the file system, renames the directory to layers/<id> and sends
 * STREAM_EXIT with EXIT_CODE 0; on failure it deletes what it wrote, sends the reason as
 * DATA on AG_CHAN_STDERR, then STREAM_EXIT with EXIT_CODE = a positive errno (and ERRNO,
 * ERRMSG). Either way CLOSE ALL follows. The host's CLOSE ALL, or the connection's end,
 * abandons a PUT: what it wrote is deleted. Temp dirs a killed agent left are deleted when
 * it starts again.
 *
 * LAYER RECORDS. The stream is a sequence of records, in any split over DATA frames:
 *
 *      u32 hlen (big-endian)   hlen bytes: the header, TLV attributes as in a payload
 *      SIZE bytes of content (regular files only)
 *
 * closed by an end mark, a record with hlen 0; nothing may follow it. The header:
 *   L_PATH   s  required. Relative to the layer's root: components joined by single '/',
 *               none empty, "." or "..", each at most 255 bytes, the whole at most
 *               AG_LAYER_PATH_MAX (longer than PATH_MAX is allowed: images have such
 *               trees). "" is the root itself (an L_DIR; only its metadata is applied).
 *               A path comes once, after its parent directory's record.
 *   L_TYPE   u  required, enum ag_ltype.
 *   L_MODE   u  permission bits with setuid/setgid/sticky (& 07777); not for a symlink.
 *   L_UID, L_GID  u  owner (0 .. 2^32-2).
 *   L_MTIME_NS    u  modification time (the access time is set to it too), symlinks too.
 *   L_RDEV   u  char/block devices: major << 32 | minor. The agent makes only the overlay
 *               whiteout (a char device 0/0); any other device is refused (EPERM).
 *   L_LINK   s  a symlink's target (any bytes but NUL, at most 4095; never followed), or
 *               a hard link's target: a path as L_PATH, of an entry sent before, not a
 *               directory.
 *   L_XATTR  n* L_XNAME (s, 1..255 bytes), L_XVALUE (b, at most 65536), at most
 *               AG_LAYER_XATTR_MAX of them: the entry's extended attributes as the layer
 *               store has them: an opaque directory carries trusted.overlay.opaque "y" (the
 *               only trusted.overlay.* attribute the agent takes), security.capability
 *               file capabilities, and what else the image set.
 *   L_SIZE   u  regular files: the content bytes that follow the header.
 * Whiteouts travel as the store has them: a char device 0/0 named as the deleted entry.
 * Hard links: the first name of an inode is sent as the file, the others as L_HARDLINK.
 * The agent refuses a stream over its limit (runt-agent --layer-max-bytes, default
 * AG_LAYER_MAX_BYTES, counting every byte of the records) or over AG_LAYER_MAX_ENTRIES
 * entries with EFBIG, and a malformed one with EPROTO/EINVAL; the message names the entry.
 */

#define AG_VERSION     1
#define AG_HDR_SIZE    16
#define AG_MAX_PAYLOAD (1u << 20)  /* REQ, RESP, EVENT */
#define AG_MAX_DATA    (64u << 10) /* one DATA frame */
#define AG_WINDOW_INIT (256u << 10)
#define AG_PORT_NAME   "runt.agent" /* the virtio-serial port name */

enum ag_kind {
        AG_K_REQ = 1,
        AG_K_RESP = 2,
        AG_K_EVENT = 3,
        AG_K_DATA = 4,
        AG_K_WINDOW = 5,
        AG_K_CLOSE = 6,
};

/* Requests. What each carries and answers is listed with the attributes below. */
enum ag_op {
        AG_OP_HELLO = 1,       /* TIME_NS (the host's clock: a guest sets its own by it)
                                  -> VERSION, BOOT_ID, UPTIME_NS; first on every connection */
        AG_OP_NET_SETUP = 2,   /* IFACE*, ROUTE*, HOSTNAME, SYSCTL*; once per boot */
        AG_OP_CTR_CREATE = 3,  /* a container spec (below) */
        AG_OP_CTR_START = 4,   /* ID -> PID */
        AG_OP_CTR_SIGNAL = 5,  /* ID, SIGNAL; ALL=1: every process of it */
        AG_OP_CTR_STATUS = 6,  /* ID -> a status record (below) */
        AG_OP_CTR_LIST = 7,    /* -> STATUS* (nested status records), every container known */
        AG_OP_CTR_REMOVE = 8,  /* ID: it must have exited; forgets it and its status */
        AG_OP_CTR_UPDATE = 9,  /* ID, resources (below) */
        AG_OP_EXEC = 10,       /* ID, ARGV*, TTY, STDIN, ROWS, COLS; opens a stream */
        AG_OP_EXEC_SYNC = 11,  /* ID, ARGV*, TIMEOUT_MS, MAX_OUTPUT -> EXIT_CODE, OUT, ERR,
                                  DROPPED; ETIMEDOUT when TIMEOUT_MS passed (all killed) */
        AG_OP_ATTACH = 12,     /* ID; opens a stream: DATA out = the container's output,
                                  DATA in (STDIN) = its stdin; TTY in RESP */
        AG_OP_PORT_DIAL = 13,  /* PORT; opens a stream: a TCP connection to 127.0.0.1:PORT
                                  (then ::1) inside the pod; DATA on AG_CHAN_STDOUT / STDIN */
        AG_OP_RESIZE = 14,     /* stream in the header; ROWS, COLS */
        AG_OP_STATS = 15,      /* ID -> a stats record (below) */
        AG_OP_LOG_REOPEN = 16, /* ID: nothing in the agent (runtd writes logs); reserved */
        AG_OP_SHUTDOWN = 17,   /* kills every container, syncs, powers off; RESP first */
        AG_OP_POD_STATS = 18,  /* -> a stats record of the whole pod (the agent's root cgroup) */
        AG_OP_LOG_ACK = 19,    /* ID, SEQ: the host wrote log chunks up to SEQ; the agent
                                  may drop them */
        AG_OP_PING = 20,       /* -> UPTIME_NS */
        AG_OP_LAYER_HAS = 21,  /* ID (a chain id: 64 hex) -> PRESENT, LAYER_DIR */
        AG_OP_LAYER_PUT = 22,  /* ID; opens a stream of layer records (IMAGE LAYERS above)
                                  -> PRESENT, LAYER_DIR */
        AG_OP_TLS_RENEW = 23,  /* TLS_CERT, TLS_KEY: the agent's next certificate (the TLS
                                  transport only): new connections get it; EOPNOTSUPP when
                                  the agent serves no TLS */
};

enum ag_event {
        AG_EV_READY = 1,       /* on every (re)connection, before anything: VERSION, BOOT_ID */
        AG_EV_EXIT = 2,        /* ID + status record: a container exited (sent once per
                                  connection until removed; the status stays until REMOVE) */
        AG_EV_LOG = 3,         /* ID, SEQ, CHAN, TIME_NS, DATA: a chunk of a container's
                                  output; PARTIAL=1 when it does not end a line */
        AG_EV_STREAM_EXIT = 4, /* stream in the header; EXIT_CODE: an exec stream's command
                                  ended (128+signal when a signal ended it) */
        AG_EV_OOM = 5,         /* ID: the kernel OOM-killed a process of it */
};

enum ag_chan {
        AG_CHAN_STDIN = 0,
        AG_CHAN_STDOUT = 1,
        AG_CHAN_STDERR = 2,
        AG_CHAN_ALL = 0xffff,
};

/* Attribute tags. Types: u = integer, s = string, b = bytes, n = nested TLV block. */
enum ag_tag {
        /* Generic */
        AG_A_ERRNO = 1,       /* u  in a failed RESP: positive errno */
        AG_A_ERRMSG = 2,      /* s  in a failed RESP: why */
        AG_A_VERSION = 3,     /* u */
        AG_A_BOOT_ID = 4,     /* s  random per agent start: a changed one means a new boot */
        AG_A_UPTIME_NS = 5,   /* u */
        AG_A_ID = 6,          /* s  a container id (64 hex) */
        AG_A_PID = 7,         /* u  a pid inside the guest */
        AG_A_SIGNAL = 8,      /* u */
        AG_A_ALL = 9,         /* u  0/1 */
        AG_A_ARGV = 10,       /* s* */
        AG_A_TTY = 11,        /* u  0/1 */
        AG_A_STDIN = 12,      /* u  0/1 */
        AG_A_ROWS = 13,       /* u */
        AG_A_COLS = 14,       /* u */
        AG_A_TIMEOUT_MS = 15, /* u */
        AG_A_MAX_OUTPUT = 16, /* u */
        AG_A_EXIT_CODE = 17,  /* u */
        AG_A_OUT = 18,        /* b */
        AG_A_ERR = 19,        /* b */
        AG_A_DROPPED = 20,    /* u */
        AG_A_PORT = 21,       /* u */
        AG_A_SEQ = 22,        /* u  log chunk number, per container, from 1 */
        AG_A_CHAN = 23,       /* u  enum ag_chan */
        AG_A_TIME_NS = 24,    /* u  CLOCK_REALTIME of the guest */
        AG_A_DATA = 25,       /* b */
        AG_A_PARTIAL = 26,    /* u  0/1 */
        AG_A_STATUS = 27,     /* n* a status record, in CTR_LIST */

        /* NET_SETUP */
        AG_A_IFACE = 40,    /* n* MAC, ADDR*, MTU: the guest NIC with that MAC */
        AG_A_MAC = 41,      /* s  "aa:bb:cc:dd:ee:ff" */
        AG_A_ADDR = 42,     /* s* "10.88.0.5/16", "fd00::5/64" */
        AG_A_MTU = 43,      /* u */
        AG_A_ROUTE = 44,    /* n* DST, GW, DEV_MAC */
        AG_A_DST = 45,      /* s  "0.0.0.0/0", "10.88.0.0/16" */
        AG_A_GW = 46,       /* s  "10.88.0.1" or "" (on-link) */
        AG_A_HOSTNAME = 47, /* s */
        AG_A_SYSCTL = 48,   /* s* "net.ipv4.ip_forward=1" */
        AG_A_DEV_MAC = 49,  /* s  the NIC a route goes through */
        AG_A_DNS = 50,      /* s* reserved: resolv.conf reaches the guest as a file */

        /* CTR_CREATE: the container spec. Paths are the guest's. */
        AG_A_LOWER = 60,         /* s* read-only layer dirs, base first (overlay lowerdir) */
        AG_A_CWD = 61,           /* s */
        AG_A_ENV = 62,           /* s* "K=V" */
        AG_A_UID = 63,           /* u */
        AG_A_GID = 64,           /* u */
        AG_A_GROUPS = 65,        /* u* supplementary groups */
        AG_A_STDIN_ONCE = 66,    /* u  0/1 */
        AG_A_MOUNT = 67,         /* n* SRC, DST, RO, PROPAGATION (0 private, 1 rslave, 2 rshared) */
        AG_A_SRC = 68,           /* s */
        AG_A_RO = 69,            /* u  0/1 */
        AG_A_PROPAGATION = 70,   /* u */
        AG_A_READONLY_ROOT = 71, /* u 0/1 */
        AG_A_NO_NEW_PRIVS = 72,  /* u 0/1 */
        AG_A_CAPS = 73,          /* s* the effective, permitted and bounding set: "CAP_CHOWN" ... */
        AG_A_SECCOMP = 74,       /* b  an OCI/Docker JSON profile; absent: unconfined */
        AG_A_MASKED = 75,        /* s* paths masked (empty dir/devnull over them) */
        AG_A_RO_PATHS = 76,      /* s* paths remounted read-only */
        AG_A_PID_NS = 77,        /* u  0: the pod's shared pid namespace, 1: its own */
        AG_A_PRIVILEGED = 78,    /* u  0/1 */
        AG_A_DEVICE = 79,        /* n* SRC (a guest device path), DST, PERMS */
        AG_A_PERMS = 80,         /* s */
        AG_A_LOG = 81,           /* u  0/1: send its output as AG_EV_LOG */
        AG_A_SYSCTLS = 82,       /* s* per-container (ipc/uts) sysctls "kernel.shm_rmid_forced=1" */
        AG_A_NAME = 83,          /* s  the container's name, for messages */
        AG_A_CAPS_HELD = 84,     /* u  0/1: CAPS means "all" (privileged, cap_add ALL): those the
                                  *    agent's own bounding set lacks are left out, not an error */

        /* Resources (CTR_CREATE, CTR_UPDATE); cgroup v2 in the guest. 0 / absent: unset. */
        AG_A_CPU_PERIOD = 100,        /* u us */
        AG_A_CPU_QUOTA = 101,         /* u us; -1 unlimited */
        AG_A_CPU_SHARES = 102,        /* u cgroup v1 shares (2..262144), mapped to cpu.weight */
        AG_A_MEM_LIMIT = 103,         /* u bytes */
        AG_A_MEM_SWAP = 104,          /* u bytes */
        AG_A_PIDS_MAX = 105,          /* u */
        AG_A_CPUSET_CPUS = 106,       /* s */
        AG_A_CPUSET_MEMS = 107,       /* s */
        AG_A_OOM_SCORE_ADJ = 108,     /* u (signed) */
        AG_A_HAS_OOM_SCORE_ADJ = 109, /* u 0/1 */

        /* A status record (CTR_STATUS RESP, EXIT event, in a STATUS of CTR_LIST) */
        AG_A_STATE = 120,       /* u  enum ag_state */
        AG_A_STARTED_NS = 121,  /* u  CLOCK_REALTIME */
        AG_A_FINISHED_NS = 122, /* u */
        AG_A_OOM_KILLED = 123,  /* u 0/1 */
        AG_A_REASON = 124,      /* s  "Completed", "Error", "OOMKilled", "StartError" */
        AG_A_MESSAGE = 125,     /* s */

        /* A stats record (STATS, POD_STATS RESP): cgroup v2 figures in the guest */
        AG_A_TIMESTAMP_NS = 140,    /* u */
        AG_A_CPU_USAGE_NS = 141,    /* u cpu.stat usage_usec * 1000 */
        AG_A_CPU_USER_NS = 142,     /* u */
        AG_A_CPU_SYS_NS = 143,      /* u */
        AG_A_MEM_USAGE = 144,       /* u memory.current */
        AG_A_MEM_WORKING_SET = 145, /* u usage - inactive_file */
        AG_A_MEM_RSS = 146,         /* u memory.stat anon */
        AG_A_MEM_CACHE = 147,       /* u memory.stat file */
        AG_A_MEM_LIMIT_NOW = 148,   /* u memory.max (0: max) */
        AG_A_PGFAULT = 149,         /* u */
        AG_A_PGMAJFAULT = 150,      /* u */
        AG_A_SWAP_USAGE = 151,      /* u memory.swap.current */
        AG_A_PIDS_CURRENT = 152,    /* u */
        AG_A_FS_USED = 153,         /* u bytes of the writable layer */
        AG_A_FS_INODES = 154,       /* u */
        AG_A_OOM_EVENTS = 155,      /* u memory.events oom_kill */

        /* LAYER_HAS, LAYER_PUT */
        AG_A_PRESENT = 160,   /* u  0/1: the layer is complete in the agent */
        AG_A_LAYER_DIR = 161, /* s  its directory there: what LOWER names */

        /* TLS_RENEW */
        AG_A_TLS_CERT = 165, /* b  DER */
        AG_A_TLS_KEY = 166,  /* b  DER (PKCS#8) */

        /* A layer record's header (IMAGE LAYERS above) */
        AG_A_L_PATH = 170,     /* s */
        AG_A_L_TYPE = 171,     /* u  enum ag_ltype */
        AG_A_L_MODE = 172,     /* u */
        AG_A_L_UID = 173,      /* u */
        AG_A_L_GID = 174,      /* u */
        AG_A_L_MTIME_NS = 175, /* u */
        AG_A_L_RDEV = 176,     /* u  major << 32 | minor */
        AG_A_L_LINK = 177,     /* s */
        AG_A_L_XATTR = 178,    /* n* XNAME, XVALUE */
        AG_A_L_XNAME = 179,    /* s */
        AG_A_L_XVALUE = 180,   /* b */
        AG_A_L_SIZE = 181,     /* u */
};

/* A layer entry's type (AG_A_L_TYPE). */
enum ag_ltype {
        AG_LT_REG = 1,
        AG_LT_DIR = 2,
        AG_LT_SYMLINK = 3,
        AG_LT_HARDLINK = 4,
        AG_LT_CHAR = 5,
        AG_LT_BLOCK = 6,
        AG_LT_FIFO = 7,
        AG_LT_SOCKET = 8,
};

enum ag_state {
        AG_ST_CREATED = 0,
        AG_ST_RUNNING = 1,
        AG_ST_EXITED = 2,
};

/* ---- frames ---- */

struct ag_hdr {
        uint8_t version;
        uint8_t kind;
        uint16_t op;
        uint32_t stream;
        uint32_t id;
        uint32_t len;
};

/* Writes @h into @out. */
void ag_hdr_encode(const struct ag_hdr *h, uint8_t out[AG_HDR_SIZE]);
/*
 * Reads a header from @buf (@n bytes available). 0 and *@ret filled; -EAGAIN when @n is
 * short of a header; -EPROTO for a wrong version, an unknown kind or a length over the
 * kind's maximum (REQ/RESP/EVENT AG_MAX_PAYLOAD, DATA AG_MAX_DATA, WINDOW 4, CLOSE 0).
 */
int ag_hdr_decode(const uint8_t *buf, size_t n, struct ag_hdr *ret);

/*
 * Reassembles frames from a byte stream: feed what read() gave, take whole frames out.
 * One per connection; no locking.
 */
struct ag_reader {
        uint8_t *buf;
        size_t len, cap;
        size_t consumed; /* bytes of buf already handed out */
};
void ag_reader_init(struct ag_reader *r);
void ag_reader_done(struct ag_reader *r);
/* Appends @n bytes. 0 or -ENOMEM. */
int ag_reader_feed(struct ag_reader *r, const void *data, size_t n);
/*
 * The next whole frame: 1 with *@ret_hdr and *@ret_payload (valid until the next feed or
 * next call), 0 when none is whole yet, -EPROTO for a bad header (the connection is done).
 */
int ag_reader_next(struct ag_reader *r, struct ag_hdr *ret_hdr, const uint8_t **ret_payload);

/* ---- building payloads ---- */

/*
 * A growing buffer to build one frame in: header first (ag_frame_begin), then attributes,
 * then ag_frame_end fills the header's length. Errors are sticky in @err (-ENOMEM, or
 * -EMSGSIZE past the maximum); check once at the end. A buffer never grows past
 * AG_HDR_SIZE + AG_MAX_PAYLOAD; ag_frame_end also holds the payload to its kind's maximum.
 * Without ag_frame_begin it builds a bare payload (attributes only), e.g. a nested block or
 * the attrs of ag_client_call.
 */
struct ag_buf {
        uint8_t *data;
        size_t len, cap;
        int err;
};
void ag_buf_init(struct ag_buf *b);
void ag_buf_done(struct ag_buf *b);
void ag_buf_reset(struct ag_buf *b); /* len 0, err 0, keeps the memory */
void ag_frame_begin(struct ag_buf *b, enum ag_kind kind, uint16_t op, uint32_t stream, uint32_t id);
/* 0 or the sticky error. The frame is b->data[0..b->len). */
int ag_frame_end(struct ag_buf *b);
void ag_put_u64(struct ag_buf *b, uint16_t tag, int64_t v);
/* NULL @s puts nothing (the attribute's absence reads as ""). */
void ag_put_str(struct ag_buf *b, uint16_t tag, const char *s);
void ag_put_bytes(struct ag_buf *b, uint16_t tag, const void *p, size_t n);
/* Each string of NULL-terminated @v under @tag; NULL @v puts nothing. */
void ag_put_strv(struct ag_buf *b, uint16_t tag, const char *const *v);
/* Opens a nested attribute; returns its offset for ag_nest_end. */
size_t ag_nest_begin(struct ag_buf *b, uint16_t tag);
void ag_nest_end(struct ag_buf *b, size_t off);
/* A raw payload (DATA): appends @n bytes. */
void ag_put_raw(struct ag_buf *b, const void *p, size_t n);

/* ---- reading payloads ---- */

struct ag_attr {
        uint16_t tag;
        uint32_t len;
        const uint8_t *val;
};
struct ag_iter {
        const uint8_t *p;
        size_t left;
};
void ag_iter_init(struct ag_iter *it, const uint8_t *payload, size_t len);
/* 1 and *@ret for the next attribute, 0 at the end, -EPROTO when one overruns the block. */
int ag_iter_next(struct ag_iter *it, struct ag_attr *ret);
/* The value as an integer: 0, or -EPROTO when it is not 8 bytes. */
int ag_attr_i64(const struct ag_attr *a, int64_t *ret);
/* The value as a malloc'd NUL-terminated string: 0, -EPROTO (a NUL inside), -ENOMEM. */
int ag_attr_str(const struct ag_attr *a, char **ret);
/* A single-valued string attribute into *@field (malloc'd): a repeated one replaces the one
 * before. 0 or ag_attr_str's -errno. */
int ag_attr_set_str(char **field, const struct ag_attr *a);
/* The first attribute @tag of @payload as an integer / string; -ENOENT when absent. */
int ag_find_i64(const uint8_t *payload, size_t len, uint16_t tag, int64_t *ret);
int ag_find_str(const uint8_t *payload, size_t len, uint16_t tag, char **ret);

/* ---- records both ends share ----
 * The decoders skip unknown tags; a repeated single-valued attribute: the last one wins.
 * The _put functions write ints always except resources (0 is "unset": not written).
 */

struct ag_mount {
        char *src, *dst;
        bool ro;
        int propagation;
};
struct ag_device {
        char *src, *dst, *perms;
};
struct ag_resources {
        int64_t cpu_period, cpu_quota, cpu_shares, mem_limit, mem_swap, pids_max;
        int64_t oom_score_adj;
        bool has_oom_score_adj;
        char *cpuset_cpus, *cpuset_mems; /* NULL: unset */
};

/* CTR_CREATE. Strings owned; strvs NULL-terminated (empty, never NULL, once decoded). */
struct ag_ctr_spec {
        char *id, *name;
        char **lower; /* base first */
        char **argv, **env;
        char *cwd;
        int64_t uid, gid;
        int64_t *groups;
        size_t n_groups;
        bool tty, stdin_open, stdin_once, log;
        struct ag_mount *mounts;
        size_t n_mounts;
        struct ag_device *devices;
        size_t n_devices;
        bool readonly_root, no_new_privs, privileged, own_pid_ns;
        char **caps;
        bool caps_held; /* AG_A_CAPS_HELD */
        char *seccomp;  /* JSON profile; NULL: unconfined */
        size_t seccomp_len;
        char **masked, **ro_paths;
        char **sysctls;
        struct ag_resources res;
};
/* Appends @s's attributes to the frame in @b. */
void ag_ctr_spec_put(struct ag_buf *b, const struct ag_ctr_spec *s);
/* Decodes a CTR_CREATE payload. 0, -EPROTO (malformed, or no ID / no ARGV), -ENOMEM. */
int ag_ctr_spec_decode(const uint8_t *payload, size_t len, struct ag_ctr_spec *ret);
void ag_ctr_spec_done(struct ag_ctr_spec *s);
void ag_resources_put(struct ag_buf *b, const struct ag_resources *r);
/* Decodes the resource attributes of a payload (others skipped). */
int ag_resources_decode(const uint8_t *payload, size_t len, struct ag_resources *ret);
void ag_resources_done(struct ag_resources *r);

struct ag_status {
        char id[65];
        int state; /* enum ag_state */
        int64_t pid, started_ns, finished_ns, exit_code;
        bool oom_killed;
        char reason[32];
        char message[256];
};
void ag_status_put(struct ag_buf *b, const struct ag_status *s);
/* Decodes a status record (a whole payload, or a nested STATUS value). */
int ag_status_decode(const uint8_t *payload, size_t len, struct ag_status *ret);

struct ag_stats {
        int64_t timestamp_ns, cpu_usage_ns, cpu_user_ns, cpu_sys_ns;
        int64_t mem_usage, mem_working_set, mem_rss, mem_cache, mem_limit;
        int64_t pgfault, pgmajfault, swap_usage, pids_current, fs_used, fs_inodes, oom_events;
};
void ag_stats_put(struct ag_buf *b, const struct ag_stats *s);
int ag_stats_decode(const uint8_t *payload, size_t len, struct ag_stats *ret);

struct ag_iface {
        char *mac;
        char **addrs;
        int64_t mtu;
};
struct ag_route {
        char *dst, *gw, *dev_mac;
};
struct ag_net {
        struct ag_iface *ifaces;
        size_t n_ifaces;
        struct ag_route *routes;
        size_t n_routes;
        char *hostname;
        char **sysctls;
};
void ag_net_put(struct ag_buf *b, const struct ag_net *n);
int ag_net_decode(const uint8_t *payload, size_t len, struct ag_net *ret);
void ag_net_done(struct ag_net *n);

/* The failure of a RESP: 0 when it succeeded, else -errno with its message in @msg. */
int ag_resp_error(const uint8_t *payload, size_t len, char *msg, size_t msg_size);

/* ---- layer records (IMAGE LAYERS above) ---- */

#define AG_LAYER_HDR_MAX     (256u << 10)        /* one record header */
#define AG_LAYER_PATH_MAX    65535u              /* L_PATH and a hard link's L_LINK */
#define AG_LAYER_LINK_MAX    4095u               /* a symlink's target */
#define AG_LAYER_XATTR_MAX   256u                /* xattrs of one entry */
#define AG_LAYER_XVALUE_MAX  65536u              /* one xattr value */
#define AG_LAYER_MAX_BYTES   ((uint64_t)4 << 30) /* a layer stream, by default */
#define AG_LAYER_MAX_ENTRIES ((uint64_t)1 << 22) /* entries of one layer */

struct ag_xattr {
        char *name;
        uint8_t *value;
        size_t len;
};

/* One entry of a layer. Owned strings; decoded ones are checked as IMAGE LAYERS says. */
struct ag_lent {
        char *path; /* "" is the root */
        int type;   /* enum ag_ltype */
        uint32_t mode;
        uint32_t uid, gid;
        int64_t mtime_ns;
        uint32_t rdev_major, rdev_minor;
        char *link; /* L_SYMLINK, L_HARDLINK; else NULL */
        struct ag_xattr *xattrs;
        size_t n_xattrs;
        uint64_t size; /* L_REG: content bytes after the header */
};

/* Appends @e's record (u32 length and header; not the content) to bare buffer @b. */
void ag_lent_put(struct ag_buf *b, const struct ag_lent *e);
/* Appends the end mark. */
void ag_lent_put_end(struct ag_buf *b);
/*
 * Decodes and checks a record header (its TLV block, without the length). 0, -EPROTO
 * (malformed, a field missing or not for the type, a NUL in a string), -EINVAL (a path as
 * IMAGE LAYERS forbids), -ENAMETOOLONG, -ENOMEM; @msg says which.
 */
int ag_lent_decode(const uint8_t *p, size_t len, struct ag_lent *ret, char *msg, size_t msize);
void ag_lent_done(struct ag_lent *e);
/* Whether @path is an L_PATH ("" only with @root_ok): 0, -EINVAL, -ENAMETOOLONG. */
int ag_layer_path_check(const char *path, bool root_ok);

/*
 * The agent's reader of a record stream: feed it the bytes as they come; it calls @begin
 * for each entry's header, @data for its content (any split), @end once the content is
 * all there (also for entries without content). @e is valid from begin to end. A callback
 * returns 0 or -errno (with @msg), which stops the stream. No locking.
 */
struct ag_lreader_ops {
        int (*begin)(void *ud, const struct ag_lent *e, char *msg, size_t msize);
        int (*data)(void *ud, const struct ag_lent *e, const uint8_t *p, size_t n, char *msg,
                    size_t msize);
        int (*end)(void *ud, const struct ag_lent *e, char *msg, size_t msize);
};
struct ag_lreader {
        uint64_t max_bytes, total; /* the stream's limit (0: none), bytes fed so far */
        uint64_t entries;
        int state;
        uint8_t lenb[4];
        size_t lenb_got;
        uint8_t *hdr;
        size_t hlen, hgot;
        struct ag_lent cur;
        uint64_t left; /* content bytes of cur still to come */
        bool ended;    /* the end mark came */
        int err;       /* sticky: a failed stream takes no more */
};
void ag_lreader_init(struct ag_lreader *r, uint64_t max_bytes);
void ag_lreader_done(struct ag_lreader *r);
/*
 * Takes @n more bytes. 0, or the first error: a callback's, -EPROTO (a malformed record,
 * a header over AG_LAYER_HDR_MAX, bytes after the end mark), -EFBIG (over max_bytes or
 * AG_LAYER_MAX_ENTRIES), or a decoding error; @msg says why. Sticky.
 */
int ag_lreader_feed(struct ag_lreader *r, const uint8_t *p, size_t n,
                    const struct ag_lreader_ops *ops, void *ud, char *msg, size_t msize);
/* The host ended the stream: 0 when it ended with the end mark, else -EPROTO with @msg. */
int ag_lreader_finish(struct ag_lreader *r, char *msg, size_t msize);
