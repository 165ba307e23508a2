/*
 * runt-lxc-exec [--tty] [--timeout-ms=MS] [--parent=PID] LXCPATH NAME UID GID CWD GROUPS
 * ARG...: runs ARG... in the running LXC container NAME through liblxc's attach, with our
 * stdin, stdout and stderr as its own, and exits with its exit code (128+signal when a signal
 * ended it). GROUPS: comma-separated supplementary gids, or "-".
 *
 * --timeout-ms: once MS have passed since we started, we exit (137) and so end the command
 * as runtd's kill of us would: the deadline holds with no runtd around (it restarted).
 * --parent: we die with PID (PR_SET_PDEATHSIG), which must be our parent, and refuse to
 * start when it is already gone; runtd passes itself for ExecSync, so that no exec outlives
 * it, however it ends (issue 14).
 *
 * With --tty the process gets a terminal as its controlling one, in a session of its own:
 * a pty of the container's own devpts (so `tty` and ttyname() work in there), whose master
 * goes back to runtd over the unix socket on fd 3 (SCM_RIGHTS). Should that fail, a byte
 * without an fd goes back instead and our stdio, a host pty runtd holds, is the terminal.
 *
 * Without --tty the attached process is a small supervisor, not the command: in a session of
 * its own (so that runtd's kill of our process group leaves it alive) and a child subreaper,
 * it runs the command in a session of its own and waits for it. Should we go away before the
 * command ends (runtd killed us on a timeout, or its client gave up), the supervisor sees
 * the pipe from us close and kills every process the command started: whatever left its
 * group or session, or lost its parent, is still its descendant, or was reparented to the
 * subreaper. A command that ends in time leaves its background processes running, as a
 * runc exec does.
 *
 * A program of its own, for the reasons runt-lxc-start gives, and so that runtd can end an
 * exec by killing one process group: ours (a tty exec keeps the attached process in it, and
 * its session). liblxc's own complaints go to stderr.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lxc/attach_options.h>
#include <lxc/lxccontainer.h>

#define TTY_SOCK 3 /* runtd's end for the master, with --tty */
/* How long the supervisor keeps killing what the command left before it gives up. */
#define KILL_TREE_MS 2000
/* The most processes one pass of the tree walk signals. */
#define TREE_MAX 65536

/* The attached process, for the SIGTERM handler (the one global: a handler has no other). */
static volatile sig_atomic_t attached;

/* What the supervisor is handed through the attach. */
struct supervised {
        char **argv;
        int life; /* the read end of the pipe whose write end only we hold */
        int life_w;
};

/* --timeout-ms passed: our exit closes the supervisor's pipe, and it kills the command. */
static void on_deadline(int sig)
{
        static const char msg[] = "runt: exec deadline passed, killed\n";
        ssize_t n;

        (void)sig;
        if (attached > 0) {
                kill(-(pid_t)attached, SIGKILL);
                kill((pid_t)attached, SIGKILL);
        }
        n = write(2, msg, sizeof(msg) - 1);
        (void)n;
        _exit(128 + SIGKILL);
}

static void on_term(int sig)
{
        (void)sig;
        if (attached > 0) {
                kill(-(pid_t)attached, SIGKILL); /* its session's group, with a tty */
                kill((pid_t)attached, SIGKILL);
        }
        /* Without a tty, our exit closes the supervisor's pipe: it kills the command's tree. */
        _exit(128 + SIGTERM);
}

static unsigned long long now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

/*
 * Appends the children of every thread of @pid to @tree (up to TREE_MAX). The children files
 * are in every kernel since 4.2 that has CONFIG_PROC_CHILDREN, as Debian's and most do.
 */
static void children_of(pid_t pid, pid_t *tree, size_t *n)
{
        char path[64];
        DIR *d;
        struct dirent *e;

        snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
        d = opendir(path);
        if (!d)
                return;
        while ((e = readdir(d)) && *n < TREE_MAX) {
                char buf[4096], *p, *end;
                ssize_t len;
                int fd;

                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/task/%.20s/children", (int)pid, e->d_name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                len = read(fd, buf, sizeof(buf) - 1); /* a longer list: the rest next pass */
                close(fd);
                if (len <= 0)
                        continue;
                buf[len] = '\0';
                for (p = buf; *n < TREE_MAX; p = end) {
                        long c = strtol(p, &end, 10);

                        if (end == p || c <= 0)
                                break;
                        tree[(*n)++] = (pid_t)c;
                }
        }
        closedir(d);
}

/*
 * Kills every descendant of ours with SIGKILL, until none is left or KILL_TREE_MS passed (a
 * setuid descendant we may not signal). A descendant whose parent dies comes to us, the
 * subreaper, so "no child left" means no descendant left. Without a /proc of our pid
 * namespace, the command's session group is all we can reach.
 */
static void kill_tree(pid_t cmd)
{
        unsigned long long end = now_ms() + KILL_TREE_MS;
        char self[32];
        ssize_t len = readlink("/proc/self", self, sizeof(self) - 1);
        bool have_proc = false;
        pid_t *tree = malloc(TREE_MAX * sizeof(*tree));

        if (len > 0) {
                self[len] = '\0';
                have_proc = strtol(self, NULL, 10) == (long)getpid();
        }
        kill(-cmd, SIGKILL);
        for (;;) {
                size_t n = 0;
                pid_t r;

                if (tree && have_proc) {
                        children_of(getpid(), tree, &n);
                        for (size_t i = 0; i < n && n < TREE_MAX; i++)
                                children_of(tree[i], tree, &n);
                        for (size_t i = 0; i < n; i++)
                                kill(tree[i], SIGKILL);
                }
                while ((r = waitpid(-1, NULL, WNOHANG)) > 0)
                        ;
                if ((r < 0 && errno == ECHILD) || now_ms() >= end)
                        break;
                nanosleep(&(struct timespec){.tv_nsec = 2 * 1000 * 1000}, NULL);
        }
        free(tree);
}

/*
 * Runs in the container, as its user: the supervisor (see the top of the file). Its exit
 * code is the command's, or 128+signal; 127 or 126 when the command could not be run.
 */
static int supervise(void *payload)
{
        struct supervised *sv = payload;
        struct pollfd p[2];
        sigset_t chld, none;
        pid_t cmd;
        int sfd;

        close(sv->life_w);
        setsid();
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        sigemptyset(&none);
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_BLOCK, &chld, NULL);
        sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sfd < 0) {
                fprintf(stderr, "runt: signalfd: %s\n", strerror(errno));
                return 125;
        }
        cmd = fork();
        if (cmd < 0) {
                fprintf(stderr, "runt: fork: %s\n", strerror(errno));
                return 125;
        }
        if (cmd == 0) {
                setsid();
                sigprocmask(SIG_SETMASK, &none, NULL);
                execvp(sv->argv[0], sv->argv);
                fprintf(stderr, "runt: exec %s: %s\n", sv->argv[0], strerror(errno));
                _exit(errno == ENOENT ? 127 : 126);
        }
        p[0] = (struct pollfd){.fd = sv->life, .events = POLLIN};
        p[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
        for (;;) {
                struct signalfd_siginfo si;
                int w;
                pid_t r;

                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                /* Nothing is ever written: readable means runt-lxc-exec is gone. */
                if (p[0].revents) {
                        kill_tree(cmd);
                        return 128 + SIGKILL;
                }
                while (read(sfd, &si, sizeof(si)) == sizeof(si))
                        ;
                /* Once the command is done, its background processes are left to run. */
                while ((r = waitpid(-1, &w, WNOHANG)) > 0)
                        if (r == cmd)
                                return WIFEXITED(w) ? WEXITSTATUS(w) : 128 + WTERMSIG(w);
        }
        fprintf(stderr, "runt: poll: %s\n", strerror(errno));
        kill_tree(cmd);
        return 125;
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
        struct supervised sv = {0};
        unsigned long long timeout_ms = 0;
        pid_t parent = 0;
        int life[2] = {-1, -1};
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
        for (; argc > 1 && strncmp(argv[1], "--", 2) == 0; argv++, argc--) {
                if (strncmp(argv[1], "--timeout-ms=", 13) == 0) {
                        timeout_ms = strtoull(argv[1] + 13, NULL, 10);
                } else if (strncmp(argv[1], "--parent=", 9) == 0) {
                        parent = (pid_t)strtol(argv[1] + 9, NULL, 10);
                } else {
                        fprintf(stderr, "runt: unknown option %.40s\n", argv[1]);
                        return 125;
                }
        }
        sv.argv = argv + 7;
        if (argc < 8) {
                fprintf(stderr, "usage: runt-lxc-exec [--tty] [--timeout-ms=MS] [--parent=PID] "
                                "LXCPATH NAME UID GID CWD GROUPS ARG... (run by runtd)\n");
                return 125;
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (parent > 0) {
                /* Set first, checked after: a parent that died in between is seen. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent) {
                        fprintf(stderr, "runt: runtd (pid %d) is gone\n", (int)parent);
                        return 125;
                }
        }
        if (timeout_ms) {
                struct sigaction sa = {.sa_handler = on_deadline};
                struct itimerval it = {
                        .it_value = {.tv_sec = (time_t)(timeout_ms / 1000),
                                     .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000},
                };

                sigemptyset(&sa.sa_mask);
                sigaction(SIGALRM, &sa, NULL);
                if (setitimer(ITIMER_REAL, &it, NULL) < 0) {
                        fprintf(stderr, "runt: setitimer: %s\n", strerror(errno));
                        return 125;
                }
        }
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
        if (!tty && pipe2(life, O_CLOEXEC) < 0) {
                fprintf(stderr, "runt: pipe: %s\n", strerror(errno));
                return 125;
        }
        sv.life = life[0];
        sv.life_w = life[1];
        if ((tty ? c->attach(c, run_on_tty, argv + 7, &opts, &pid)
                 : c->attach(c, supervise, &sv, &opts, &pid)) < 0) {
                fprintf(stderr, "runt: attach to container %.12s failed\n", argv[2]);
                return 125;
        }
        if (tty)
                close(TTY_SOCK); /* the attached process has it: runtd sees EOF when it is done */
        else
                close(life[0]); /* life[1] stays open until we exit, however we exit */
        {
                struct sigaction sa = {.sa_handler = on_term};

                /* runtd ends an exec with SIGTERM to us: with a tty, ours go with it, also
                 * its session, which a kill of our process group misses. Without one, our
                 * exit is enough: the supervisor kills what it runs. */
                attached = tty ? (sig_atomic_t)pid : 0;
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
