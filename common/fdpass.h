#pragma once

/*
 * Receives one data byte and the one fd (SCM_RIGHTS) that should come with it on the
 * unix socket @sock, waiting up to @timeout_ms for it. Every fd the message carries is
 * closed unless it is the single one expected: a message with two fds or more, fds spread
 * over several control messages, or a truncated control part (MSG_CTRUNC) gives none.
 * Returns the fd (O_CLOEXEC), or -errno: -ETIMEDOUT, -EPIPE when the peer closed,
 * -ENOMSG when the byte came alone, -EBADMSG when the fds were not exactly one.
 */
int sh_recv_fd(int sock, int timeout_ms);
