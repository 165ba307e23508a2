#pragma once

/*
 * runt-agent: the pod agent (see proto.h). One process, one thread, one epoll loop: the
 * host connection (virtio-serial port, or a unix socket in host mode), the SIGCHLD
 * signalfd, and every container's and stream's fds. Module prefix: agent_ / ctr_ / st_.
 *
 * The transport (agent-main.c: how the byte stream is opened and reopened: a virtio-serial
 * port, a unix socket, or TCP with TLS for a Proxmox CT, agent-tls.h) is apart from the
 * logic (everything else sees agent_send() and the dispatch of whole frames).
 */

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

#define AGENT_LOG_KEEP (1u << 20) /* unacked log bytes kept per container */

/* What an epoll registration points to. */
enum ew_kind {
        EW_LISTEN = 1,
        EW_CONN,
        EW_SIGNAL,
        EW_CTR_OUT, /* a container's stdout (or pty) */
        EW_CTR_ERR,
        EW_ST_OUT, /* a stream's fd the agent reads (exec stdout / socket) */
        EW_ST_ERR,
        EW_ST_IN,  /* a stream's fd the agent writes (exec stdin), when it has to wait */
        EW_OOM,    /* inotify on the containers' memory.events */
        EW_TLS_HS, /* a TLS connection in its handshake (obj: agent-main.c's struct hs) */
};

struct ew {
        enum ew_kind kind;
        void *obj;
        int fd;
        uint32_t events; /* registered; 0 = not in the epoll set */
};

struct agent_cfg {
        bool pid1; /* PID 1 of a microVM guest: sets the machine up */
        bool ct;   /* the entrypoint of a Proxmox CT (PID 1 there too, nothing to set up) */
        char state_dir[PATH_MAX];   /* /run/runt-agent */
        char cgroup_root[PATH_MAX]; /* "" = no cgroups (host mode default) */
        bool have_cgroups;
        char boot_id[40];
        uint64_t layer_max_bytes; /* one LAYER_PUT stream at most */
        bool userns; /* in a user namespace that maps only some ids (an unprivileged CT) */
};
extern struct agent_cfg agent_cfg;

/* ---- agent-idmap.c: the user namespace ---- */
void agent_idmap_init(void); /* sets agent_cfg.userns */
/* @id if the agent's user namespace maps it, else the kernel's overflow id (65534). */
uint32_t agent_map_id(bool gid, uint32_t id);

/* ---- agent-main.c: the loop and the connection ---- */
int64_t agent_now_ns(void);  /* CLOCK_REALTIME */
int64_t agent_mono_ms(void); /* CLOCK_MONOTONIC */
bool agent_connected(void);
/* Queues a finished frame (ag_frame_end done) for the host; dropped when none is connected. */
void agent_send(struct ag_buf *b);
/* Queues a frame of @kind with no id: @op, stream @sid and the raw payload @d (@n bytes). */
void agent_send_simple(enum ag_kind kind, uint16_t op, uint32_t sid, const void *d, size_t n);
/* A RESP with ERRNO (positive @err) and a message. */
void agent_resp_err(const struct ag_hdr *h, int err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* Begins a successful RESP to @h in @b (the caller puts attributes and sends). */
void agent_resp_begin(struct ag_buf *b, const struct ag_hdr *h);
void agent_resp_ok(const struct ag_hdr *h);
/* Bytes queued and not yet written to the host. */
size_t agent_outq(void);
/* epoll registration: @events 0 removes it. */
void ew_set(struct ew *w, uint32_t events);
void ew_close(struct ew *w); /* removes and closes w->fd */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- agent-ctr.c: containers ---- */
struct log_chunk {
        struct log_chunk *next;
        uint64_t seq;
        int64_t time_ns;
        int chan;
        bool partial;
        size_t len;
        uint8_t data[];
};

struct ctr {
        struct ctr *next;
        bool dead; /* removed, freed by ctr_gc */
        struct ag_ctr_spec spec;
        char dir[PATH_MAX];    /* state_dir/<id> */
        char rootfs[PATH_MAX]; /* dir/rootfs: the overlay */
        char cgroup[PATH_MAX]; /* "" when no cgroups */
        bool mounted;
        int state; /* enum ag_state */
        pid_t pid;
        int mntns_fd, pidns_fd, cgns_fd; /* of the running init, for exec */
        int64_t started_ns, finished_ns, exit_code;
        bool oom_killed;
        int64_t oom_base, oom_seen; /* memory.events oom_kill at start / last told */
        int oom_wd;                 /* its inotify watch, -1 */
        char reason[32], message[256];
        bool exit_sent;     /* on this connection */
        struct ew out, err; /* output (pty master in out when tty) */
        int in_fd;          /* stdin (pipe write end or pty master dup); -1 */
        bool stdin_claimed; /* stdin_once: a session had it */
        struct log_chunk *log_head, *log_tail;
        size_t log_bytes;
        uint64_t log_seq;
        void *bpf; /* the compiled seccomp filter; NULL: none */
        size_t bpf_len;
};

extern struct ctr *ctr_list;
struct ctr *ctr_find(const char *id);
void ctr_op_create(const struct ag_hdr *h, const uint8_t *p);
void ctr_op_start(const struct ag_hdr *h, const uint8_t *p);
void ctr_op_signal(const struct ag_hdr *h, const uint8_t *p);
void ctr_op_status(const struct ag_hdr *h, const uint8_t *p);
void ctr_op_list(const struct ag_hdr *h, const uint8_t *p);
void ctr_op_remove(const struct ag_hdr *h, const uint8_t *p);
void ctr_op_update(const struct ag_hdr *h, const uint8_t *p);
void ctr_op_stats(const struct ag_hdr *h, const uint8_t *p);
void ctr_op_pod_stats(const struct ag_hdr *h, const uint8_t *p);
void ctr_op_log_ack(const struct ag_hdr *h, const uint8_t *p);
/* A child was reaped: true when it was a container's init. */
bool ctr_reaped(pid_t pid, int status);
void ctr_output(struct ew *w);
void ctr_oom_events(struct ew *w);
/* A new connection: EXIT events not sent on it and the unacked log chunks. */
void ctr_resend(void);
/* The host connection stalls / drains: stop or resume reading container output. */
void ctr_throttle(bool stop);
void ctr_kill_all(void);
void ctr_gc(void);
int ctr_setup_cgroups(void);

/* Enters @c (mount ns, cgroup), then user, caps, no_new_privs, seccomp, env and cwd; execs
 * @argv. Only in a forked child; returns only on failure (-errno, @msg filled). */
int ctr_child_exec(struct ctr *c, char **argv, bool enter, char *msg, size_t msg_size);
/* Forks a child in @c's pid namespace (the agent's when it shares the pod's). */
pid_t ctr_fork(struct ctr *c);
/* A terminal from @c's devpts (master, slave). */
int ctr_open_pty(struct ctr *c, int *master, int *slave);
int cg_write(const char *dir, const char *file, const char *val);

/* ---- agent-exec.c: streams ---- */
enum st_type { ST_EXEC = 1, ST_EXEC_SYNC, ST_ATTACH, ST_PORT };

struct stream {
        struct stream *next;
        bool dead; /* ended, freed by st_gc */
        enum st_type type;
        uint32_t sid, req_id;
        struct ctr *ctr; /* ATTACH */
        pid_t pid;       /* EXEC, EXEC_SYNC: 0 once reaped */
        int exit_code;
        bool tty, stdin_on;
        struct ew out, err, in;
        uint8_t *inq; /* host->fd bytes waiting for the fd */
        size_t inq_len, inq_off;
        bool in_eof;       /* host closed stdin: close in.fd once inq is written */
        uint32_t credit;   /* agent->host credit left */
        uint32_t consumed; /* host->agent bytes consumed and not yet granted */
        /* EXEC whose command ended while what it left still writes: ends at this time
         * (CLOCK_MONOTONIC ms) unless more output comes; 0 while the command runs. */
        int64_t drain_ms;
        /* EXEC_SYNC */
        int64_t deadline_ms;
        uint8_t *obuf, *ebuf;
        size_t olen, elen, max, dropped;
};

extern struct stream *st_list;
void st_op_exec(const struct ag_hdr *h, const uint8_t *p, bool sync);
void st_op_attach(const struct ag_hdr *h, const uint8_t *p);
void st_op_port_dial(const struct ag_hdr *h, const uint8_t *p);
void st_op_resize(const struct ag_hdr *h, const uint8_t *p);
void st_data(const struct ag_hdr *h, const uint8_t *p);
void st_window(const struct ag_hdr *h, const uint8_t *p);
void st_close(const struct ag_hdr *h);
void st_readable(struct ew *w);
void st_writable(struct ew *w);
bool st_reaped(pid_t pid, int status);
/* The connection ended: every stream ends (their processes killed). */
void st_drop_all(void);
void st_gc(void);
/* Timeouts: returns the ms until the next deadline, -1 for none. */
int st_timers(void);
/* A container's output chunk for its attachers. */
void st_attach_output(struct ctr *c, int chan, const uint8_t *d, size_t n);
void st_attach_eof(struct ctr *c);
/* A container is being removed: its attach streams end. */
void st_ctr_gone(struct ctr *c);

/* ---- agent-layer.c: image layers sent over the channel (proto.h, IMAGE LAYERS) ---- */
/* Makes state_dir/layers and removes the temp dirs of PUTs a killed agent left. */
int layer_init(void);
void layer_op_has(const struct ag_hdr *h, const uint8_t *p);
void layer_op_put(const struct ag_hdr *h, const uint8_t *p);
/* A DATA / CLOSE frame: true when its stream is a LAYER_PUT's (then it was handled). */
bool layer_data(const struct ag_hdr *h, const uint8_t *p);
bool layer_close(const struct ag_hdr *h);
bool layer_stream_used(uint32_t sid);
/* The connection ended: every PUT is abandoned (its temp dir removed). */
void layer_drop_all(void);
void layer_gc(void);
/* Whether an exec/attach/dial stream has id @sid (agent-exec.c). */
bool st_stream_used(uint32_t sid);

/* ---- agent-net.c ---- */
void net_op_setup(const struct ag_hdr *h, const uint8_t *p);
int net_lo_up(void);

/* ---- agent-seccomp.c ---- */
/* Checks (@load false) or loads (@load true) an OCI/Docker JSON seccomp profile; @caps the
 * container's capability names (for includes/excludes). 0 or -errno with @msg. */
int seccomp_apply(const char *json, size_t len, char **caps, bool load, char *msg, size_t msg_size);
/* Compiles the profile once into the kernel's BPF (*@ret_bpf malloc'd, @ret_len bytes). */
int seccomp_compile(const char *json, size_t len, char **caps, void **ret_bpf, size_t *ret_len,
                    char *msg, size_t msg_size);
/* Installs a filter seccomp_compile made (no_new_privs set, or CAP_SYS_ADMIN held). */
int seccomp_install(const void *bpf, size_t len);
