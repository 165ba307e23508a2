/* Receiving a file descriptor over a unix socket (fdpass.h). */
#include "fdpass.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Room for more fds than expected, so that extra ones arrive (and are closed) rather than
 * being cut off with MSG_CTRUNC. */
#define FDS_ROOM 16

int sh_recv_fd(int sock, int timeout_ms)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * FDS_ROOM)];
        } u;
        char byte;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr m = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = u.buf,
                           .msg_controllen = sizeof(u.buf)};
        struct pollfd p = {.fd = sock, .events = POLLIN};
        int fd = -1, n = 0, r;
        ssize_t got;

        memset(u.buf, 0, sizeof(u.buf));
        r = poll(&p, 1, timeout_ms);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        do
                got = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        while (got < 0 && errno == EINTR);
        if (got < 0)
                return -errno;
        /* Every fd that came is ours to close, whatever else is wrong with the message. */
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
                size_t k;

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
                    c->cmsg_len < CMSG_LEN(0))
                        continue;
                k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int f;

                        memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (n++ == 0)
                                fd = f;
                        else
                                close(f);
                }
        }
        if (got == 0 && n == 0)
                return -EPIPE;
        if (n == 1 && !(m.msg_flags & MSG_CTRUNC))
                return fd;
        if (fd >= 0)
                close(fd);
        return n == 0 && !(m.msg_flags & MSG_CTRUNC) ? -ENOMSG : -EBADMSG;
}
