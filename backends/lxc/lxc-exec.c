/*
 * runt-lxc-exec [--tty] LXCPATH NAME UID GID CWD GROUPS ARG...: runs ARG... in the running
 * LXC container NAME through liblxc's attach, with our stdin, stdout and stderr as its own,
 * and exits with its exit code (128+signal when a signal ended it). GROUPS: comma-separated
 * supplementary gids, or "-".
 *
 * With --tty the process gets a terminal as its controlling one, in a session of its own:
 * a pty of the container's own devpts (so `tty` and ttyname() work in there), whose master
 * goes back to runtd over the unix socket on fd 3 (SCM_RIGHTS). Should that fail, a byte
 * without an fd goes back instead and our stdio, a host pty runtd holds, is the terminal.
 *
 * A program of its own, for the reasons runt-lxc-start gives, and so that runtd can end an
 * exec that outlives its timeout by killing one process group: the attached process stays
 * in ours (a tty one has its session). liblxc's own complaints go to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lxc/attach_options.h>
#include <lxc/lxccontainer.h>

#define TTY_SOCK 3 /* runtd's end for the master, with --tty */

/* The attached process, for the SIGTERM handler (the one global: a handler has no other). */
static volatile sig_atomic_t attached;

static void on_term(int sig)
{
        (void)sig;
        if (attached > 0) {
                kill(-(pid_t)attached, SIGKILL); /* its session's group, with a tty */
                kill((pid_t)attached, SIGKILL);
        }
        _exit(128 + SIGTERM);
}

/* Sends @fd (or, with -1, only the byte) over the socket on TTY_SOCK. 0 or -1. */
static int send_master(int fd)
{
        char byte = fd >= 0 ? 'm' : 'x';
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } u = {0};
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

        if (fd >= 0) {
                m.msg_control = u.buf;
                m.msg_controllen = sizeof(u.buf);
                u.h.cmsg_level = SOL_SOCKET;
                u.h.cmsg_type = SCM_RIGHTS;
                u.h.cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(&u.h), &fd, sizeof(int));
        }
        for (;;) {
                ssize_t n = sendmsg(TTY_SOCK, &m, MSG_NOSIGNAL);

                if (n == 1)
                        return 0;
                if (n < 0 && errno == EINTR)
                        continue;
                return -1;
        }
}

/* A pty of the container's devpts: the slave's fd, the master sent to runtd; -1 on failure. */
static int container_pty(void)
{
        char name[64];
        int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC), sl = -1;
        struct winsize ws;

        if (m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0 && ptsname_r(m, name, sizeof(name)) == 0)
                sl = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        /* The size runtd gave the host pty, our stdin, is where it starts. */
        if (sl >= 0 && ioctl(0, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
                ioctl(sl, TIOCSWINSZ, &ws);
        /* runtd gave up waiting (or is gone): then the host pty, our stdio, serves. */
        if (send_master(sl >= 0 ? m : -1) < 0 && sl >= 0) {
                close(sl);
                sl = -1;
        }
        if (m >= 0)
                close(m);
        return sl;
}

/* Runs in the container, as its user: a session and the pty as the controlling terminal. */
static int run_on_tty(void *payload)
{
        char **argv = payload;
        int sl = container_pty();

        close(TTY_SOCK);
        setsid();
        if (sl >= 0) {
                for (int fd = 0; fd < 3; fd++)
                        dup2(sl, fd);
                if (sl > 2)
                        close(sl);
        }
        ioctl(0, TIOCSCTTY, 0);
        execvp(argv[0], argv);
        fprintf(stderr, "runt: exec %s: %s\n", argv[0], strerror(errno));
        return errno == ENOENT ? 127 : 126;
}

int main(int argc, char **argv)
{
        bool tty = argc > 1 && strcmp(argv[1], "--tty") == 0;
        lxc_attach_options_t opts = LXC_ATTACH_OPTIONS_DEFAULT;
        lxc_attach_command_t cmd;
        struct lxc_container *c;
        gid_t groups[64];
        size_t n_groups = 0;
        sigset_t none;
        pid_t pid;
        int st;

        if (tty) {
                argv++;
                argc--;
        }
        if (argc < 8) {
                fprintf(stderr, "usage: runt-lxc-exec LXCPATH NAME UID GID CWD GROUPS ARG... "
                                "(run by runtd)\n");
                return 125;
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        c = lxc_container_new(argv[2], argv[1]);
        if (!c || !c->is_running(c)) {
                fprintf(stderr, "runt: container %.12s is not running\n", argv[2]);
                return 125;
        }
        if (strcmp(argv[6], "-") != 0) {
                for (char *g = strtok(argv[6], ","); g && n_groups < 64; g = strtok(NULL, ","))
                        groups[n_groups++] = (gid_t)strtoul(g, NULL, 10);
                opts.attach_flags |= LXC_ATTACH_SETGROUPS;
                opts.groups.size = (int)n_groups;
                opts.groups.list = groups;
        }
        opts.env_policy = LXC_ATTACH_CLEAR_ENV; /* the container's lxc.environment applies */
        opts.uid = (uid_t)strtoul(argv[3], NULL, 10);
        opts.gid = (gid_t)strtoul(argv[4], NULL, 10);
        opts.initial_cwd = argv[5];
        opts.stdin_fd = 0;
        opts.stdout_fd = 1;
        opts.stderr_fd = 2;
        opts.log_fd = 2;
        cmd.program = argv[7];
        cmd.argv = argv + 7;
        if ((tty ? c->attach(c, run_on_tty, argv + 7, &opts, &pid)
                 : c->attach(c, lxc_attach_run_command, &cmd, &opts, &pid)) < 0) {
                fprintf(stderr, "runt: attach to container %.12s failed\n", argv[2]);
                return 125;
        }
        if (tty)
                close(TTY_SOCK); /* the attached process has it: runtd sees EOF when it is done */
        {
                struct sigaction sa = {.sa_handler = on_term};

                /* runtd ends an exec with SIGTERM to us: ours go with it, also a tty's
                 * session, which a kill of our process group misses. */
                attached = (sig_atomic_t)pid;
                sigemptyset(&sa.sa_mask);
                sigaction(SIGTERM, &sa, NULL);
        }
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return 125;
        lxc_container_put(c);
        if (WIFEXITED(st))
                return WEXITSTATUS(st);
        return 128 + WTERMSIG(st);
}
