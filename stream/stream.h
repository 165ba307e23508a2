#pragma once

/*
 * The streaming server (stream/): the HTTP server behind the URLs that CRI Exec, Attach and
 * PortForward return, speaking the Kubernetes remotecommand and portforward protocols over
 * SPDY/3.1 and WebSocket. Its one contract upward is struct stream_ops: "run this exec,
 * attach to this container, dial this port of that pod". Whoever owns the pods (cri/, over
 * podmgr) provides the ops; stream/ knows nothing of gRPC, podmgr or the backends, and links
 * only common, libmicrohttpd, zlib and json-c.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct runt_config;
struct sh_error;
struct stream_server;

enum stream_kind {
        STREAM_EXEC,
        STREAM_ATTACH,
        STREAM_PORTFORWARD,
};

/* What a streaming URL was issued for; everything owned (stream_req_free). */
struct stream_req {
        enum stream_kind kind;
        char *id;    /* the full container id (exec, attach) or sandbox id (port-forward) */
        char **argv; /* exec: NULL-terminated */
        bool tty, in, out, err;
        char *netns;     /* port-forward: the pod's netns path, "" for the host's */
        uint16_t *ports; /* port-forward: the request's ports (WebSocket form), may be none */
        size_t n_ports;
};
void stream_req_free(struct stream_req *r);

/*
 * A streaming exec in progress: the session owns the fds (and closes them) and reaps @pid,
 * whose exit code is the command's (128+signal when a signal ended it). A command that runs
 * where runtd has no process for it (a VM) gives @pid 0 and @exit_fd instead.
 */
struct stream_exec {
        int stdin_fd;  /* write end; -1 without stdin */
        int stdout_fd; /* read end; the pty master with a tty */
        int stderr_fd; /* read end; -1 with a tty (one stream) */
        int pty_fd;    /* the pty master, for resize; -1 without a tty */
        int pid;       /* the process to wait for; 0 with @exit_fd */
        /*
         * With @pid 0: a SOCK_SEQPACKET socket. It turns readable when the command ended and
         * reads as one packet of a native int (its exit code), then EOF; EOF alone: the exit
         * code is unknown. With a tty, a packet of two native unsigned shorts (rows, cols)
         * written to it resizes the command's terminal. Closing it gives the command up: it
         * is killed. -1 with a @pid.
         */
        int exit_fd;
        unsigned short rows, cols; /* in, with a tty: the size it starts with (0: unset) */
};

/*
 * How a session reaches containers and pods. Each op gets the @data given to
 * stream_server_new, runs on a session's thread (several at once: the ops are thread-safe),
 * and returns 0 or -errno with @err filled; its message is what the client is told. An op
 * left NULL answers -EOPNOTSUPP.
 */
struct stream_ops {
        /*
         * Exec: starts @argv in running container @id with its stdio on the fds in *@ret
         * (whose rows and cols come filled in). -EINVAL when it is not running.
         */
        int (*exec)(void *data, const char *id, const char *const *argv, bool tty, bool want_stdin,
                    struct stream_exec *ret, struct sh_error *err);
        /*
         * Attach: *@ret_fd is a connected SOCK_SEQPACKET socket to running container @id's
         * stdio, owned by the session. Each packet is a kind byte and at most 32 KiB: from
         * the container 1 + stdout, 2 + stderr; to it 0 + stdin (an empty one says the
         * session has stdin), 3 = stdin EOF, 4 + u16 width + u16 height (network order) =
         * resize. EOF: the container exited, or its monitor refused one more client.
         * *@ret_tty and *@ret_stdin are the container's flags. -EINVAL when it is not
         * running, -ENOENT when unknown.
         */
        int (*attach)(void *data, const char *id, int *ret_fd, bool *ret_tty, bool *ret_stdin,
                      struct sh_error *err);
        /*
         * After an attach socket's EOF: 0 if container @id still runs, asked afresh (its exit
         * is recorded by the time the socket ends), -EINVAL if it does not, -ENOENT unknown.
         */
        int (*container_running)(void *data, const char *id, struct sh_error *err);
        /*
         * Port-forward: *@ret_fd is a connected socket to TCP @port on the loopback of pod
         * @id, for a pod whose netns runtd cannot enter (a VM). -EOPNOTSUPP (no message)
         * when entering the request's netns reaches the port: the session dials there.
         */
        int (*sandbox_dial)(void *data, const char *id, unsigned port, int *ret_fd,
                            struct sh_error *err);
};

/*
 * Starts the HTTP server on @cfg's streaming.address:port (port 0: any free one), for the
 * URLs stream_issue() hands out; sessions run through @ops with @data (both must outlive the
 * server; @ops NULL: every op is missing). Reads streaming.* of @cfg here only. 0 or -errno.
 */
int stream_server_new(const struct runt_config *cfg, const struct stream_ops *ops, void *data,
                      struct stream_server **ret, struct sh_error *err);
/* Ends every session (their exec processes are killed) and stops the server; NULL-safe. */
void stream_server_free(struct stream_server *s);
/* "http://127.0.0.1:PORT", what URLs start with. */
const char *stream_base_url(const struct stream_server *s);
/*
 * Registers @req (taken, also on failure) under a new single-use token that expires after
 * streaming.token_ttl, and returns its URL in *@ret_url (malloc'd). -EAGAIN when too many
 * unused tokens are outstanding.
 */
int stream_issue(struct stream_server *s, struct stream_req *req, char **ret_url,
                 struct sh_error *err);
