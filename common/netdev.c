#include "netdev.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "strutil.h"

int sh_netdev_parse(const char *text, struct sh_netdev **ret, size_t *ret_n)
{
        struct sh_netdev *v = NULL;
        size_t n = 0, cap = 0;
        const char *line = text;

        /* Two header lines, then "  name: rx(8 fields) tx(8 fields)". */
        for (int i = 0; i < 2 && line; i++) {
                line = strchr(line, '\n');
                line = line ? line + 1 : NULL;
        }
        if (!line) {
                free(v);
                return -EIO;
        }
        for (; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
                const char *colon = strchr(line, ':'), *nl = strchr(line, '\n');
                unsigned long long f[16];
                const char *name = line;
                struct sh_netdev d = {0};
                size_t len;

                if (!colon || (nl && colon > nl)) {
                        free(v);
                        return -EIO;
                }
                while (*name == ' ')
                        name++;
                len = (size_t)(colon - name);
                if (len == 0 || len >= sizeof(d.name)) {
                        free(v);
                        return -EIO;
                }
                if (sscanf(colon + 1,
                           "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
                           "%llu %llu %llu",
                           &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9],
                           &f[10], &f[11], &f[12], &f[13], &f[14], &f[15]) != 16) {
                        free(v);
                        return -EIO;
                }
                memcpy(d.name, name, len);
                if (strcmp(d.name, "lo") == 0)
                        continue;
                d.rx_bytes = f[0], d.rx_packets = f[1], d.rx_errors = f[2], d.rx_dropped = f[3];
                d.tx_bytes = f[8], d.tx_packets = f[9], d.tx_errors = f[10], d.tx_dropped = f[11];
                if (n == cap) {
                        size_t c = cap ? cap * 2 : 4;
                        struct sh_netdev *nv = realloc(v, c * sizeof(*nv));

                        if (!nv) {
                                free(v);
                                return -ENOMEM;
                        }
                        v = nv;
                        cap = c;
                }
                v[n++] = d;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

struct netns_job {
        const char *netns;
        char *text; /* /proc/thread-self/net/dev, read inside */
        int r;
};

/*
 * Enters the namespace and reads the file there. The thread ends in that namespace, so
 * nothing has to be undone; /proc/thread-self/net is the calling thread's namespace's
 * (/proc/self/net would be the thread group leader's).
 */
static void *netns_thread(void *arg)
{
        struct netns_job *j = arg;
        int fd = open(j->netns, O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
                j->r = -errno;
                return NULL;
        }
        if (setns(fd, CLONE_NEWNET) < 0) {
                j->r = -errno;
                close(fd);
                return NULL;
        }
        close(fd);
        j->r = sh_read_file("/proc/thread-self/net/dev", 1u << 20, &j->text, NULL);
        return NULL;
}

int sh_netdev_read_netns(const char *netns, struct sh_netdev **ret, size_t *ret_n,
                         struct sh_error *err)
{
        struct netns_job j = {.netns = netns};
        pthread_attr_t a;
        pthread_t t;
        int r;

        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 64 * 1024);
        r = pthread_create(&t, &a, netns_thread, &j);
        pthread_attr_destroy(&a);
        if (r != 0)
                return sh_err(err, -r, "netns %s: thread: %s", netns, strerror(r));
        pthread_join(t, NULL);
        if (j.r < 0) {
                free(j.text);
                return sh_err(err, j.r, "netns %s: %s", netns, strerror(-j.r));
        }
        r = sh_netdev_parse(j.text, ret, ret_n);
        free(j.text);
        if (r < 0)
                return sh_err(err, r, "netns %s: net/dev: %s", netns, strerror(-r));
        return 0;
}
