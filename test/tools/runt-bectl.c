/*
 * runt-bectl: a test driver of a backend's streaming exec (be_exec_stream) and attach
 * (be_container_attach), until the streaming server carries them. Every call is a fresh
 * process: the backend's state is on disk.
 *
 *   runt-bectl --root DIR [--tty] [--stdin] exec ID ARG...
 *   runt-bectl --root DIR [--stdin] [--hangup] [--size WxH] attach ID
 *
 * exec runs ARG... in container ID of the lxc backend whose root dir is DIR, copies our
 * stdin to it (with --stdin) and its stdout/stderr to ours, and exits with its exit code.
 *
 * attach copies running container ID's output to our stdout/stderr until it exits; with
 * --stdin it forwards our stdin and, at its EOF, sends the stdin EOF (with --hangup it
 * disconnects instead, and exits); --size resizes its tty first. Exits 0 when the container
 * is gone (its output ended).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "be.h"

/* The attach protocol's packet kinds (be.h, container_attach). */
enum { K_STDIN = 0, K_STDOUT = 1, K_STDERR = 2, K_STDIN_EOF = 3, K_RESIZE = 4 };
#define MAX_PAYLOAD 32768

static int send_packet(int fd, char kind, const void *data, size_t len)
{
        char buf[1 + MAX_PAYLOAD];

        buf[0] = kind;
        memcpy(buf + 1, data, len);
        return send(fd, buf, 1 + len, MSG_NOSIGNAL) == (ssize_t)(1 + len) ? 0 : -1;
}

static int write_all(int fd, const char *p, size_t len)
{
        while (len) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int attach(int fd, bool want_stdin, bool hangup, unsigned width, unsigned height)
{
        bool in_open = want_stdin;

        if (width && height) {
                uint16_t wh[2] = {htons((uint16_t)width), htons((uint16_t)height)};

                if (send_packet(fd, K_RESIZE, wh, sizeof(wh)) < 0)
                        return perror("runt-bectl: resize"), 1;
        }
        if (want_stdin && send_packet(fd, K_STDIN, "", 0) < 0)
                return perror("runt-bectl: stdin"), 1;
        for (;;) {
                struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                                      {.fd = in_open ? 0 : -1, .events = POLLIN}};
                char buf[1 + MAX_PAYLOAD];
                ssize_t n;

                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return perror("runt-bectl: poll"), 1;
                }
                if (p[0].revents) {
                        n = recv(fd, buf, sizeof(buf), 0);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                return 0; /* the container exited */
                        if ((buf[0] == K_STDOUT || buf[0] == K_STDERR) &&
                            write_all(buf[0] == K_STDOUT ? 1 : 2, buf + 1, (size_t)n - 1) < 0)
                                return 1;
                }
                if (p[1].revents) {
                        n = read(0, buf, MAX_PAYLOAD);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n > 0 && send_packet(fd, K_STDIN, buf, (size_t)n) < 0)
                                return perror("runt-bectl: stdin"), 1;
                        if (n <= 0) {
                                in_open = false;
                                if (hangup)
                                        return 0;
                                if (send_packet(fd, K_STDIN_EOF, "", 0) < 0)
                                        return perror("runt-bectl: stdin"), 1;
                        }
                }
        }
}

static void copy(int from, int to, int *closed)
{
        char buf[4096];
        ssize_t n = read(from, buf, sizeof(buf));

        if (n <= 0) {
                *closed = 1;
                return;
        }
        if (write(to, buf, (size_t)n) != n)
                *closed = 1;
}

int main(int argc, char **argv)
{
        const char *root = NULL;
        bool tty = false, want_stdin = false, hangup = false;
        unsigned width = 0, height = 0;
        struct be_exec_stream s = {.rows = 0};
        struct sh_error err = {0};
        struct be *be = NULL;
        int i = 1, st = 0, r;

        for (; i < argc && argv[i][0] == '-'; i++) {
                if (strcmp(argv[i], "--root") == 0 && i + 1 < argc)
                        root = argv[++i];
                else if (strcmp(argv[i], "--tty") == 0)
                        tty = true;
                else if (strcmp(argv[i], "--stdin") == 0)
                        want_stdin = true;
                else if (strcmp(argv[i], "--hangup") == 0)
                        hangup = true;
                else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc &&
                         sscanf(argv[++i], "%ux%u", &width, &height) != 2)
                        width = height = 0;
        }
        if (!root || !((i + 2 < argc && strcmp(argv[i], "exec") == 0) ||
                       (i + 2 == argc && strcmp(argv[i], "attach") == 0))) {
                fprintf(stderr, "usage: runt-bectl --root DIR [--tty] [--stdin] exec ID ARG...\n"
                                "       runt-bectl --root DIR [--stdin] [--hangup] [--size WxH] "
                                "attach ID\n");
                return 2;
        }
        {
                char lxcpath[4096], run[4096];
                char *keys[] = {"lxcpath"}, *vals[] = {lxcpath};
                struct be_config cfg = {.handler = "lxc",
                                        .root_dir = root,
                                        .state_dir = root,
                                        .run_dir = run,
                                        .n_options = 1,
                                        .option_keys = keys,
                                        .option_values = vals};

                snprintf(lxcpath, sizeof(lxcpath), "%s/lxc", root);
                snprintf(run, sizeof(run), "%s/run", root);
                r = be_new("lxc", &cfg, &be, &err);
        }
        if (r == 0 && strcmp(argv[i], "attach") == 0) {
                int fd = -1;

                r = be_container_attach(be, argv[i + 1], &fd, &err);
                if (r < 0) {
                        fprintf(stderr, "runt-bectl: %s\n", err.msg);
                        be_free(be);
                        return 125;
                }
                r = attach(fd, want_stdin, hangup, width, height);
                close(fd);
                be_free(be);
                return r;
        }
        if (r == 0)
                r = be_exec_stream(be, argv[i + 1], (const char *const *)argv + i + 2, tty,
                                   want_stdin, &s, &err);
        if (r < 0) {
                fprintf(stderr, "runt-bectl: %s\n", err.msg);
                be_free(be);
                return 125;
        }
        {
                int out_closed = 0, err_closed = s.stderr_fd < 0, in_closed = s.stdin_fd < 0;

                while (!out_closed || !err_closed) {
                        struct pollfd p[3] = {
                                {.fd = out_closed ? -1 : s.stdout_fd, .events = POLLIN},
                                {.fd = err_closed ? -1 : s.stderr_fd, .events = POLLIN},
                                {.fd = in_closed ? -1 : 0, .events = POLLIN},
                        };

                        if (poll(p, 3, -1) < 0 && errno != EINTR)
                                break;
                        if (p[0].revents)
                                copy(s.stdout_fd, 1, &out_closed);
                        if (p[1].revents)
                                copy(s.stderr_fd, 2, &err_closed);
                        if (p[2].revents) {
                                copy(0, s.stdin_fd, &in_closed);
                                if (in_closed && !tty) {
                                        close(s.stdin_fd);
                                        s.stdin_fd = -1;
                                }
                        }
                }
        }
        waitpid(s.pid, &st, 0);
        be_free(be);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
