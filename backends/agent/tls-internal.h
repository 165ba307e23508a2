#pragma once

/*
 * A TLS connection's I/O for the agent client (client.c): non-blocking, read(2)/write(2)
 * shaped. Only the client's I/O thread calls these once the client owns the connection.
 */

#include <stdbool.h>
#include <sys/types.h>

#include "tls.h"

/* The connection's socket (owned by @t). */
int ag_tls_conn_fd(const struct ag_tls_conn *t);

/*
 * SSL_read / SSL_write of at most @n bytes: > 0 bytes done; 0 (read only) at the agent's
 * close_notify or EOF; -1 with errno EAGAIN and *@ret_want the poll event to wait for
 * before calling again (POLLIN or POLLOUT: a read may have to write, a write to read), or
 * another errno (EPROTO for a TLS failure) when the connection is done for. A write that
 * gave EAGAIN must be called again with the same bytes first (more may follow them; the
 * buffer may have moved).
 */
ssize_t ag_tls_conn_read(struct ag_tls_conn *t, void *buf, size_t n, short *ret_want);
ssize_t ag_tls_conn_write(struct ag_tls_conn *t, const void *buf, size_t n, short *ret_want);

/*
 * True when OpenSSL holds decrypted bytes no ag_tls_conn_read returned yet (SSL_pending):
 * poll() will not say so, read again without waiting. (A partial record it holds is not
 * counted: the rest comes through the socket.)
 */
bool ag_tls_conn_pending(const struct ag_tls_conn *t);
