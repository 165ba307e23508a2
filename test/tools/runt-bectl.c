/*
 * runt-bectl: a test driver of a backend's streaming exec (be_exec_stream), until the
 * streaming server carries it. Every call is a fresh process: the backend's state is on disk.
 *
 *   runt-bectl --root DIR [--tty] [--stdin] exec ID ARG...
 *
 * Runs ARG... in container ID of the lxc backend whose root dir is DIR, copies our stdin to
 * it (with --stdin) and its stdout/stderr to ours, and exits with its exit code.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "be.h"

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
        bool tty = false, want_stdin = false;
        struct be_exec_stream s;
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
        }
        if (!root || i + 2 >= argc || strcmp(argv[i], "exec") != 0) {
                fprintf(stderr, "usage: runt-bectl --root DIR [--tty] [--stdin] exec ID ARG...\n");
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
