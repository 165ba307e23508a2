/* sd_notify in a few lines: see notify.h. */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sh_notify_init(struct sh_notify *n)
{
        const char *v = getenv("NOTIFY_SOCKET");
        size_t len;
        int r = 0;

        memset(n, 0, sizeof(*n));
        if (!v)
                return 0;
        len = strlen(v);
        if (len < 2 || len >= sizeof(n->addr) || (v[0] != '/' && v[0] != '@')) {
                r = -EINVAL;
        } else {
                memcpy(n->addr, v, len);
                /* Abstract: a leading NUL, and the length says where the name ends. */
                if (v[0] == '@')
                        n->addr[0] = '\0';
                n->addr_len = v[0] == '@' ? len : len + 1;
        }
        unsetenv("NOTIFY_SOCKET");
        return r;
}

int sh_notify_send(const struct sh_notify *n, const char *state)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t len = strlen(state);
        ssize_t w;
        int fd, r = 0;

        if (!n || !n->addr_len)
                return 0;
        memcpy(sa.sun_path, n->addr, n->addr_len);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        w = sendto(fd, state, len, MSG_NOSIGNAL, (struct sockaddr *)&sa,
                   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n->addr_len));
        if (w < 0)
                r = -errno;
        else if ((size_t)w != len)
                r = -EIO;
        close(fd);
        return r;
}
