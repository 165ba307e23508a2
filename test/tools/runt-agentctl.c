/*
 * runt-agentctl: a test driver of runtd's pod agent client (backends/agent/client.h) against
 * a runt-agent in host mode (runt-agent --listen-unix PATH).
 *
 *   runt-agentctl --unix PATH layer-put CHAIN_ID=DIR...
 *
 * puts the layers (base first) with ag_layers_put and prints the agent's directory of each,
 * one a line, base first. On failure it prints "runt-agentctl: errno N: MESSAGE" to stderr
 * and exits 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "client.h"
#include "layer-put.h"

static int connect_unix(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        return fd;
}

int main(int argc, char **argv)
{
        _cleanup_strv_ char **chains = NULL, **dirs = NULL, **lowers = NULL;
        struct sh_error err = {0};
        struct ag_client *c = NULL;
        int n = argc - 4, fd, r;

        if (argc < 5 || strcmp(argv[1], "--unix") != 0 || strcmp(argv[3], "layer-put") != 0) {
                fprintf(stderr, "usage: runt-agentctl --unix PATH layer-put CHAIN_ID=DIR...\n");
                return 2;
        }
        chains = calloc((size_t)n + 1, sizeof(*chains));
        dirs = calloc((size_t)n + 1, sizeof(*dirs));
        if (!chains || !dirs)
                return 1;
        for (int i = 0; i < n; i++) {
                const char *a = argv[4 + i], *eq = strchr(a, '=');

                if (!eq) {
                        fprintf(stderr, "runt-agentctl: '%s': not CHAIN_ID=DIR\n", a);
                        return 2;
                }
                chains[i] = strndup(a, (size_t)(eq - a));
                dirs[i] = strdup(eq + 1);
                if (!chains[i] || !dirs[i])
                        return 1;
        }
        fd = connect_unix(argv[2]);
        if (fd < 0) {
                fprintf(stderr, "runt-agentctl: errno %d: connect %s: %s\n", -fd, argv[2],
                        strerror(-fd));
                return 1;
        }
        r = ag_client_new(fd, NULL, NULL, &c, &err);
        if (r == 0)
                r = ag_layers_put(c, (const char *const *)chains, (const char *const *)dirs,
                                  &lowers, &err);
        ag_client_free(c);
        if (r < 0) {
                fprintf(stderr, "runt-agentctl: errno %d: %s\n", -r, err.msg);
                return 1;
        }
        for (size_t i = 0; lowers[i]; i++)
                printf("%s\n", lowers[i]);
        return 0;
}
