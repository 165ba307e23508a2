#pragma once

/*
 * The attach socket of an LXC container: runt-lxc-shim (shim.c) listens on <dir>/attach,
 * runtd (container.c, lb_container_attach) connects. SOCK_SEQPACKET: one packet is one
 * message; its first byte is the kind, the rest the payload (at most LB_ATTACH_MAX_PAYLOAD
 * bytes, both ways).
 *
 *   shim -> client  LB_ATTACH_STDOUT + bytes, LB_ATTACH_STDERR + bytes (a tty: all stdout).
 *                   Broadcast to every client besides the log; a chunk a client has no room
 *                   for is dropped for that client only. EOF: the container exited.
 *   client -> shim  LB_ATTACH_STDIN + bytes (empty: "this session has stdin", which makes
 *                   its end count for stdin_once), LB_ATTACH_STDIN_EOF, LB_ATTACH_RESIZE +
 *                   u16 width + u16 height in network byte order.
 *
 * Shared by two programs; the shim links nothing of runt's, so this is header-only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum {
        LB_ATTACH_STDIN = 0,
        LB_ATTACH_STDOUT = 1,
        LB_ATTACH_STDERR = 2,
        LB_ATTACH_STDIN_EOF = 3,
        LB_ATTACH_RESIZE = 4,
};

#define LB_ATTACH_MAX_PAYLOAD 32768
#define LB_ATTACH_SOCKET      "attach"

/*
 * Fills @sa with the address of @dir's attach socket: "@dir/attach", or, when that does not
 * fit sun_path, "/proc/self/fd/N/attach" through an O_PATH fd of @dir returned in
 * *@ret_dirfd (else -1), which the caller closes after bind() or connect(). 0 or -errno.
 */
static inline int lb_attach_addr(const char *dir, struct sockaddr_un *sa, socklen_t *ret_len,
                                 int *ret_dirfd)
{
        int n, dirfd = -1;

        memset(sa, 0, sizeof(*sa));
        sa->sun_family = AF_UNIX;
        n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", dir, LB_ATTACH_SOCKET);
        if (n < 0)
                return -EINVAL;
        if ((size_t)n >= sizeof(sa->sun_path)) {
                dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (dirfd < 0)
                        return -errno;
                n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", dirfd,
                             LB_ATTACH_SOCKET);
        }
        *ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
        *ret_dirfd = dirfd;
        return 0;
}
