#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "proto.h"

/*
 * The host's end of the pod agent protocol (proto.h): one connection to one runt-agent,
 * shared by every thread of runtd that talks to that pod. Module prefix: ag_client_.
 *
 * One I/O thread per client owns the connection: it writes every frame (callers queue
 * theirs), reads and dispatches what the agent sends, and relays the streams (exec, attach,
 * port-forward) between the connection and local fds it hands to callers. All of it is
 * thread-safe; a lock protects the queue, the pending calls and the streams.
 */

struct ag_client;

struct ag_client_ops {
        /*
         * An EVENT that is not a stream's: AG_EV_READY, AG_EV_EXIT, AG_EV_LOG, AG_EV_OOM
         * (@payload its TLV attributes, valid during the call). Called on the I/O thread,
         * without the client's lock: must not block long nor call ag_client_call (the
         * answer could only arrive through this thread). May be NULL.
         */
        void (*on_event)(void *cb_data, enum ag_event ev, const uint8_t *payload, size_t len);
        /*
         * Once, on the I/O thread, when the connection ended by itself: 0 for EOF, -EPROTO
         * for a malformed frame or a protocol violation, else the -errno of the failed read
         * or write. Not called by ag_client_free. May be NULL.
         */
        void (*on_closed)(void *cb_data, int reason);
};

/*
 * Starts a client on connected stream @fd (a unix socket to QEMU's virtio-serial chardev),
 * which it owns from then on, even on failure. @cbs is kept (not copied). 0, -ENOMEM, or the
 * -errno of creating the thread.
 */
int ag_client_new(int fd, const struct ag_client_ops *cbs, void *cb_data, struct ag_client **ret,
                  struct sh_error *err);

struct ag_tls_conn;

/*
 * The same on a TLS connection to a runt-agent (tls.h: ag_dial_tls, handshake done), which
 * it owns from then on, even on failure. Nothing changes for the callers: the I/O thread
 * reads and writes through TLS, sends a close_notify at ag_client_free.
 */
int ag_client_new_tls(struct ag_tls_conn *conn, const struct ag_client_ops *cbs, void *cb_data,
                      struct ag_client **ret, struct sh_error *err);

/*
 * Stops the I/O thread, closes the connection and every stream's local end, fails pending
 * calls with -ECONNRESET, then waits for the threads inside ag_client_* calls to return
 * before freeing. NULL-safe. Must not be called from a callback.
 */
void ag_client_free(struct ag_client *c);

/* True while the connection is up. */
bool ag_client_connected(struct ag_client *c);

/*
 * A synchronous request: sends REQ @op with @attrs (a payload of TLV attributes built with
 * ag_put_* into an ag_buf that has no frame header; NULL: none) and waits for the RESP, at
 * most @timeout_ms (0: no limit). On success 0, and when @ret_payload is not NULL, the RESP's
 * payload in *@ret_payload (malloc'd, the caller's; NULL when empty) and its length in
 * *@ret_len. A failed RESP returns its -errno with the agent's message in @err; -ETIMEDOUT,
 * -ECONNRESET when the connection is gone or goes before the answer, -EMSGSIZE for attrs
 * over AG_MAX_PAYLOAD, or @attrs->err. Any thread, many at once; never the I/O thread.
 */
int ag_client_call(struct ag_client *c, uint16_t op, const struct ag_buf *attrs,
                   unsigned timeout_ms, uint8_t **ret_payload, size_t *ret_len,
                   struct sh_error *err);
/* The same, and -ECANCELED once @cancel_fd turns readable (looked at every 50 ms). The
 * request goes on a stream id of its own, closed when the caller gives up (cancelled or
 * timed out): the agent ends what it started. */
int ag_client_call_cancel(struct ag_client *c, uint16_t op, const struct ag_buf *attrs,
                          unsigned timeout_ms, int cancel_fd, uint8_t **ret_payload,
                          size_t *ret_len, struct sh_error *err);
/*
 * Sends request @op and does not wait: its answer is dropped (LOG_ACK). Safe from the
 * on_event callback. 0, or -ECONNRESET when the connection is gone.
 */
int ag_client_send(struct ag_client *c, uint16_t op, const struct ag_buf *attrs,
                   struct sh_error *err);

/* How long the stream-opening calls below wait for the agent's answer, by default. */
#define AG_CLIENT_OPEN_TIMEOUT_MS 30000

/*
 * Sets that wait (0: no limit). A stream whose opening timed out is closed (CLOSE ALL) if
 * the agent says yes later.
 */
void ag_client_set_open_timeout(struct ag_client *c, unsigned timeout_ms);

/*
 * An exec stream's host ends (CLOEXEC, the caller's). They are AF_UNIX stream sockets, not
 * pipes (so the client never raises SIGPIPE), read and written like pipe ends.
 */
struct ag_exec_fds {
        int stdin_fd;    /* write end, -1 without stdin; closing it (or shutdown(SHUT_WR))
                            sends the command stdin EOF */
        int stdout_fd;   /* read end: the command's stdout (with a tty, all its output) */
        int stderr_fd;   /* read end, -1 with a tty */
        int exit_fd;     /* SOCK_SEQPACKET: once the command ended and its output was
                            delivered, a packet of a native int (the exit code, 128+signal for a
                            signal) then EOF; EOF alone if the connection died or the stream
                            was abandoned. With a tty, a packet of two native unsigned shorts
                            (rows, cols) written to it resizes the terminal
                            (be_exec_stream.exit_fd) */
        uint32_t stream; /* for ag_client_resize */
};

/*
 * Starts @argv in container @ctr_id (AG_OP_EXEC) with a pty when @tty (of @rows x @cols, 0:
 * the agent's default) and a stdin when @want_stdin. Closing stdout_fd, stderr_fd or exit_fd
 * before the end abandons the stream: the agent kills the command.
 */
int ag_client_exec(struct ag_client *c, const char *ctr_id, const char *const *argv, bool tty,
                   bool want_stdin, unsigned rows, unsigned cols, struct ag_exec_fds *ret,
                   struct sh_error *err);

/*
 * Opens a stream with request @op and payload @attrs (NULL: none) that carries bytes as an
 * exec's does, without a tty (AG_OP_LAYER_PUT): *@ret as ag_client_exec's, stdin always.
 * Waits at most @timeout_ms (0: no limit) for the RESP; its payload in *@ret_payload
 * (malloc'd, the caller's; NULL when empty) and *@ret_len when @ret_payload is not NULL.
 * Errors as ag_client_call.
 */
int ag_client_open_stream(struct ag_client *c, uint16_t op, const struct ag_buf *attrs,
                          unsigned timeout_ms, struct ag_exec_fds *ret, uint8_t **ret_payload,
                          size_t *ret_len, struct sh_error *err);

/* Resizes the pty of exec stream @stream (AG_OP_RESIZE; the answer is not waited for). */
int ag_client_resize(struct ag_client *c, uint32_t stream, unsigned rows, unsigned cols,
                     struct sh_error *err);

/*
 * Attaches to container @ctr_id's stdio (AG_OP_ATTACH): *@ret_fd is a SOCK_SEQPACKET socket
 * (CLOEXEC, blocking, the caller's) speaking the attach protocol of be.h's
 * container_attach; *@ret_tty whether the container has a tty. Closing it detaches.
 */
int ag_client_attach(struct ag_client *c, const char *ctr_id, int *ret_fd, bool *ret_tty,
                     struct sh_error *err);

/*
 * Connects to TCP @port inside the pod (AG_OP_PORT_DIAL): *@ret_fd is a SOCK_STREAM socket
 * (CLOEXEC, blocking, the caller's) relayed to that connection. shutdown(SHUT_WR) on it
 * half-closes the guest connection; EOF on it is the guest side's.
 */
int ag_client_dial(struct ag_client *c, uint16_t port, int *ret_fd, struct sh_error *err);
