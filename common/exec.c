#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "strutil.h"

#define EXEC_DEFAULT_MAX_OUTPUT ((size_t)16 << 20)
/* How long to keep reading after the child exited, for output still in flight. */
#define EXEC_DRAIN_GRACE_NS (200ull * 1000 * 1000)
/* Poll interval when the kernel has no pidfd to tell us the child exited. */
#define EXEC_NOPIDFD_POLL_MS 20

struct capture {
        char *buf;
        size_t len;
        size_t cap;
        size_t max;
        size_t dropped; /* bytes past the caps */
};

static void capture_done(struct capture *c)
{
        free(c->buf);
        *c = (struct capture){0};
}

/*
 * Appends up to the cap of @c and what is @left of the shared one (taken from it); bytes
 * beyond are counted and dropped, so the child never blocks on a full pipe.
 */
static int capture_append(struct capture *c, size_t *left, const char *data, size_t n)
{
        size_t room = c->len < c->max ? c->max - c->len : 0;

        if (room > *left)
                room = *left;
        if (n > room) {
                c->dropped += n - room;
                n = room;
        }
        if (n == 0)
                return 0;
        *left -= n;
        if (c->len + n + 1 > c->cap) {
                size_t cap = c->cap ? c->cap : 4096;

                while (cap < c->len + n + 1)
                        cap *= 2;
                char *b = realloc(c->buf, cap);

                if (!b)
                        return -ENOMEM;
                c->buf = b;
                c->cap = cap;
        }
        memcpy(c->buf + c->len, data, n);
        c->len += n;
        c->buf[c->len] = '\0';
        return 0;
}

/* Hands the capture out as a NUL-terminated string (empty when nothing was read). */
static int capture_take(struct capture *c, char **ret, size_t *ret_len)
{
        if (!c->buf) {
                c->buf = strdup("");
                if (!c->buf)
                        return -ENOMEM;
        }
        *ret_len = c->len;
        *ret = TAKE_PTR(c->buf);
        capture_done(c);
        return 0;
}

/*
 * pipe2(O_CLOEXEC) whose ends are both >= 3, so that the child's dup2 onto 0/1/2 can never
 * clobber another of our pipe ends when the daemon runs with a standard fd closed.
 * CLOEXEC matters as much: another thread may spawn at the same moment.
 */
static int pipe_high(int fds[2])
{
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        for (int i = 0; i < 2; i++) {
                if (fds[i] >= 3)
                        continue;
                int f = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);

                if (f < 0) {
                        int r = -errno;

                        close(fds[0]);
                        close(fds[1]);
                        fds[0] = fds[1] = -EBADF;
                        return r;
                }
                close(fds[i]);
                fds[i] = f;
        }
        return 0;
}

static int set_nonblock(int fd)
{
        int fl = fcntl(fd, F_GETFL);

        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

/* A pidfd becomes readable when the child exits, so poll() can wait on pipes and exit together. */
static int pidfd_open_child(pid_t pid)
{
#ifdef SYS_pidfd_open
        long fd = syscall(SYS_pidfd_open, pid, 0); /* always O_CLOEXEC */

        return fd >= 0 ? (int)fd : -errno;
#else
        (void)pid;
        return -ENOSYS;
#endif
}

/* True once the child has exited; it is left a zombie, so its pid and pgid stay reserved. */
static bool child_exited(pid_t pid)
{
        siginfo_t si = {0};

        for (;;) {
                if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
                        return si.si_pid == pid;
                if (errno != EINTR)
                        return true; /* ECHILD: nothing left to wait for */
        }
}

static int reap(pid_t pid, int *ret_status)
{
        int status;

        for (;;) {
                if (waitpid(pid, &status, 0) == pid) {
                        *ret_status = status;
                        return 0;
                }
                if (errno != EINTR)
                        return -errno;
        }
}

/*
 * Writing to a pipe whose reader is gone raises SIGPIPE in the writing thread. A library must
 * not rely on the daemon ignoring it, so block it around the write and eat the one we caused.
 */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len)
{
        sigset_t pipe_set, old, pending;
        bool was_pending;
        ssize_t n;
        int saved;

        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
        sigpending(&pending);
        was_pending = sigismember(&pending, SIGPIPE) == 1;
        n = write(fd, buf, len);
        saved = errno;
        if (n < 0 && saved == EPIPE && !was_pending) {
                const struct timespec zero = {0, 0};

                while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
                        ;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        errno = saved;
        return n;
}

static int poll_timeout_ms(unsigned long long now, unsigned long long deadline, bool have_pidfd,
                           bool child_done)
{
        int ms = -1;

        if (deadline) {
                unsigned long long left = deadline > now ? deadline - now : 0;

                /* Round up so we do not spin on a sub-millisecond remainder. */
                left = (left + 999999) / 1000000;
                ms = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        if (!have_pidfd && !child_done && (ms < 0 || ms > EXEC_NOPIDFD_POLL_MS))
                ms = EXEC_NOPIDFD_POLL_MS;
        return ms;
}

enum { PFD_STDIN, PFD_STDOUT, PFD_STDERR, PFD_PIDFD, PFD_N };

struct exec_io {
        int fd[PFD_N]; /* parent ends: stdin write, stdout read, stderr read, pidfd */
        const char *in;
        size_t in_len;
        size_t in_off;
        size_t total_left; /* of max_output_total; SIZE_MAX without one */
        int cancel_fd;     /* not ours; -1: none */
        struct capture cap[PFD_N];
};

/* Reads what is available on @i; closes it on EOF. */
static int drain_one(struct exec_io *io, int i)
{
        char buf[65536];

        for (;;) {
                ssize_t n = read(io->fd[i], buf, sizeof(buf));

                if (n > 0) {
                        int r = capture_append(&io->cap[i], &io->total_left, buf, (size_t)n);

                        if (r < 0)
                                return r;
                        if ((size_t)n < sizeof(buf))
                                return 0;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                /* EOF, or an error we cannot recover from: stop listening either way. */
                sh_closep(&io->fd[i]);
                return 0;
        }
}

static void feed_stdin(struct exec_io *io)
{
        while (io->in_off < io->in_len) {
                ssize_t n = write_nosigpipe(io->fd[PFD_STDIN], io->in + io->in_off,
                                            io->in_len - io->in_off);

                if (n > 0) {
                        io->in_off += (size_t)n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                /* EPIPE: the child does not want (more of) its input, which is its business. */
                break;
        }
        sh_closep(&io->fd[PFD_STDIN]);
}

/*
 * One poll round over the open fds. Returns 0, or -errno (-ENOMEM when a capture cannot grow).
 * Sets *child_done when the pidfd (or, without one, waitid) says the child exited, and
 * *cancelled when the caller's cancel fd turned readable.
 */
static int pump(struct exec_io *io, pid_t pid, int timeout_ms, bool *child_done, bool *cancelled)
{
        struct pollfd pfd[PFD_N + 1];

        for (int i = 0; i < PFD_N; i++) {
                pfd[i].fd = io->fd[i] >= 0 ? io->fd[i] : -1; /* poll skips negative fds */
                pfd[i].events = i == PFD_STDIN ? POLLOUT : POLLIN;
                pfd[i].revents = 0;
        }
        if (*child_done)
                pfd[PFD_PIDFD].fd = -1;
        pfd[PFD_N] = (struct pollfd){.fd = cancelled ? io->cancel_fd : -1, .events = POLLIN};
        /* On EINTR the revents stay 0 and the caller simply polls again. */
        if (poll(pfd, PFD_N + 1, timeout_ms) < 0 && errno != EINTR)
                return -errno;
        if (cancelled && pfd[PFD_N].revents)
                *cancelled = true;
        if (pfd[PFD_STDIN].revents & (POLLOUT | POLLERR | POLLHUP))
                feed_stdin(io);
        for (int i = PFD_STDOUT; i <= PFD_STDERR; i++)
                if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) {
                        int r = drain_one(io, i);

                        if (r < 0)
                                return r;
                }
        if (!*child_done) {
                if (io->fd[PFD_PIDFD] >= 0)
                        *child_done = (pfd[PFD_PIDFD].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
                else
                        *child_done = child_exited(pid);
        }
        return 0;
}

static bool outputs_open(const struct exec_io *io)
{
        return io->fd[PFD_STDOUT] >= 0 || io->fd[PFD_STDERR] >= 0;
}

static void io_done(struct exec_io *io)
{
        if (!io)
                return;
        for (int i = 0; i < PFD_N; i++) {
                sh_closep(&io->fd[i]);
                capture_done(&io->cap[i]);
        }
}

struct spawn_setup {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        bool fa_init;
        bool attr_init;
};

static void spawn_setup_done(struct spawn_setup *s)
{
        if (!s)
                return;
        if (s->fa_init)
                posix_spawn_file_actions_destroy(&s->fa);
        if (s->attr_init)
                posix_spawnattr_destroy(&s->attr);
        s->fa_init = s->attr_init = false;
}

/*
 * posix_spawn (clone(CLONE_VM|CLONE_VFORK) in glibc >= 2.24) is safe in a threaded process,
 * applies the fd actions in the child, and returns the errno of a failed chdir or execve
 * (passed back through the memory it shares with the child, and the child reaped), so a
 * missing program is a plain ENOENT here. Since glibc 2.15 it never retries an ENOEXEC
 * through /bin/sh (the test suite checks that).
 */
static int spawn_setup_init(struct spawn_setup *s, const struct sh_exec_opts *opts, int in_r,
                            int out_w, int err_w)
{
        sigset_t none, all;
        int r;

        r = posix_spawn_file_actions_init(&s->fa);
        if (r != 0)
                return -r;
        s->fa_init = true;
        r = posix_spawnattr_init(&s->attr);
        if (r != 0)
                return -r;
        s->attr_init = true;

        if (in_r >= 0)
                r = posix_spawn_file_actions_adddup2(&s->fa, in_r, STDIN_FILENO);
        else
                r = posix_spawn_file_actions_addopen(&s->fa, STDIN_FILENO, "/dev/null", O_RDONLY,
                                                     0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&s->fa, out_w, STDOUT_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&s->fa, err_w, STDERR_FILENO);
        /* Everything we opened is CLOEXEC already; this also drops fds leaked by libraries. */
        if (r == 0)
                r = posix_spawn_file_actions_addclosefrom_np(&s->fa, 3);
        if (r == 0 && opts->cwd)
                r = posix_spawn_file_actions_addchdir_np(&s->fa, opts->cwd);
        if (r != 0)
                return -r;

        /*
         * Own process group (pgid = pid), no blocked signals, default dispositions. libc keeps
         * its internal signals (32, 33) at SIG_IGN in the child on purpose; nothing uses them.
         */
        sigemptyset(&none);
        sigfillset(&all);
        r = posix_spawnattr_setflags(&s->attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                       POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawnattr_setpgroup(&s->attr, 0);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&s->attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&s->attr, &all);
        return -r;
}

/* Creates the pipes: the parent's ends go to @io (non-blocking), the child's to ret_*. */
static int make_pipes(const struct sh_exec_opts *opts, struct exec_io *io, int *ret_in_r,
                      int *ret_out_w, int *ret_err_w)
{
        _cleanup_close_ int in_r = -EBADF, out_w = -EBADF, err_w = -EBADF;
        int fds[2], r;

        if (opts->stdin_data) {
                r = pipe_high(fds);
                if (r < 0)
                        return r;
                in_r = fds[0];
                io->fd[PFD_STDIN] = fds[1];
                io->in = opts->stdin_data;
                io->in_len = opts->stdin_len;
        }
        r = pipe_high(fds);
        if (r < 0)
                return r;
        io->fd[PFD_STDOUT] = fds[0];
        out_w = fds[1];
        if (!opts->stderr_to_stdout) {
                r = pipe_high(fds);
                if (r < 0)
                        return r;
                io->fd[PFD_STDERR] = fds[0];
                err_w = fds[1];
        }
        for (int i = PFD_STDIN; i <= PFD_STDERR; i++)
                if (io->fd[i] >= 0 && (r = set_nonblock(io->fd[i])) < 0)
                        return r;
        *ret_in_r = TAKE_FD(in_r);
        *ret_out_w = TAKE_FD(out_w);
        *ret_err_w = TAKE_FD(err_w);
        return 0;
}

int sh_exec(const struct sh_exec_opts *opts, struct sh_exec_result *ret, struct sh_error *err)
{
        _cleanup_close_ int in_r = -EBADF, out_w = -EBADF, err_w = -EBADF;
        _cleanup_(spawn_setup_done) struct spawn_setup setup = {0};
        _cleanup_(io_done) struct exec_io io = {.fd = {-EBADF, -EBADF, -EBADF, -EBADF}};
        char *const *envp;
        unsigned long long deadline = 0, grace_end, next_watch = 0, watch_step = 0;
        bool child_done = false, timed_out = false, cancelled = false;
        int watch_r = 0;
        const char *prog;
        int status = 0, r, rr;
        pid_t pid;

        if (!opts || !ret || !opts->argv || !opts->argv[0] || !opts->argv[0][0])
                return sh_err(err, -EINVAL, "exec: empty argv");
        prog = opts->argv[0];
        envp = opts->envp ? (char *const *)opts->envp : environ;
        for (int i = 0; i < PFD_N; i++)
                io.cap[i].max = opts->max_output ? opts->max_output : EXEC_DEFAULT_MAX_OUTPUT;
        io.total_left = opts->max_output_total ? opts->max_output_total : SIZE_MAX;
        io.cancel_fd = opts->cancel_fd > 0 ? opts->cancel_fd : -1;

        r = make_pipes(opts, &io, &in_r, &out_w, &err_w);
        if (r < 0)
                return sh_err(err, r, "exec '%s': pipe: %s", prog, strerror(-r));
        r = spawn_setup_init(&setup, opts, in_r, out_w, err_w >= 0 ? err_w : out_w);
        if (r < 0)
                return sh_err(err, r, "exec '%s': spawn attributes: %s", prog, strerror(-r));
        if (opts->timeout_ms)
                deadline = sh_now_ns() + (unsigned long long)opts->timeout_ms * 1000000ull;
        if (strchr(prog, '/'))
                r = posix_spawn(&pid, prog, &setup.fa, &setup.attr, (char *const *)opts->argv,
                                envp);
        else
                r = posix_spawnp(&pid, prog, &setup.fa, &setup.attr, (char *const *)opts->argv,
                                 envp);
        if (r != 0) {
                if (opts->cwd)
                        return sh_err(err, -r, "exec '%s' (in '%s'): %s", prog, opts->cwd,
                                      strerror(r));
                return sh_err(err, -r, "exec '%s': %s", prog, strerror(r));
        }
        /* Only the child may hold these now: our copies would keep its pipes from reaching EOF. */
        sh_closep(&in_r);
        sh_closep(&out_w);
        sh_closep(&err_w);
        if (io.in_len == 0)
                sh_closep(&io.fd[PFD_STDIN]);

        r = pidfd_open_child(pid);
        io.fd[PFD_PIDFD] = r >= 0 ? r : -EBADF;
        r = 0;

        if (opts->watch) {
                watch_step = (unsigned long long)(opts->watch_interval_ms ? opts->watch_interval_ms
                                                                          : 1000) *
                             1000000ull;
                next_watch = sh_now_ns() + watch_step;
        }

        /* Phase 1: feed stdin and read output until the child exits or the deadline passes. */
        while (!child_done) {
                unsigned long long now = sh_now_ns();
                unsigned long long wake = deadline;

                if (deadline && now >= deadline) {
                        /* The leader is not reaped yet, so its pgid cannot have been reused. */
                        kill(-pid, SIGKILL);
                        timed_out = true;
                        break;
                }
                if (next_watch && now >= next_watch) {
                        struct capture *o = &io.cap[PFD_STDOUT], *e = &io.cap[PFD_STDERR];

                        watch_r = opts->watch(opts->watch_data, o->buf ? o->buf : "", o->len,
                                              e->buf ? e->buf : "", e->len);
                        if (watch_r < 0) {
                                kill(-pid, SIGKILL);
                                break;
                        }
                        next_watch = now + watch_step;
                }
                if (next_watch && (!wake || next_watch < wake))
                        wake = next_watch;
                r = pump(&io, pid, poll_timeout_ms(now, wake, io.fd[PFD_PIDFD] >= 0, false),
                         &child_done, &cancelled);
                if (r < 0 || cancelled) {
                        kill(-pid, SIGKILL);
                        break;
                }
        }
        sh_closep(&io.fd[PFD_STDIN]);
        sh_closep(&io.fd[PFD_PIDFD]);

        /* The leader has exited or was SIGKILLed, so this does not block for long. */
        rr = reap(pid, &status);

        /*
         * Phase 2: background processes may still hold the pipes. Read for a short grace, and
         * stop early once every pipe is at EOF or nobody is left in the child's group. After a
         * kill, the group's end is no reason to stop: a child that supervises processes out
         * of its group (runt-lxc-exec) kills them when it dies, and their pipes' EOF tells
         * when that is done, so the caller's next command no longer sees them.
         */
        grace_end = sh_now_ns() + EXEC_DRAIN_GRACE_NS;
        if (watch_r < 0)
                grace_end = sh_now_ns();
        if (!timed_out && deadline && deadline < grace_end)
                grace_end = deadline;
        while (r >= 0 && outputs_open(&io)) {
                unsigned long long now = sh_now_ns();
                bool group_gone = !timed_out && !cancelled && kill(-pid, 0) < 0 && errno == ESRCH;
                bool done = true;

                if (now >= grace_end || group_gone) {
                        /* What is already in the pipes is still worth having. */
                        r = pump(&io, pid, 0, &done, NULL);
                        break;
                }
                r = pump(&io, pid, poll_timeout_ms(now, grace_end, true, true), &done, NULL);
        }
        if (r < 0)
                return sh_err(err, r, "exec '%s': reading output: %s", prog, strerror(-r));
        if (rr < 0)
                return sh_err(err, rr, "exec '%s': waitpid: %s", prog, strerror(-rr));

        struct sh_exec_result res = {.status = status,
                                     .timed_out = timed_out,
                                     .out_dropped = io.cap[PFD_STDOUT].dropped,
                                     .err_dropped = io.cap[PFD_STDERR].dropped};

        if (WIFEXITED(status))
                res.exit_code = WEXITSTATUS(status);
        else if (WIFSIGNALED(status))
                res.exit_code = 128 + WTERMSIG(status);
        else
                res.exit_code = -1;
        r = capture_take(&io.cap[PFD_STDOUT], &res.out, &res.out_len);
        if (r == 0)
                r = capture_take(&io.cap[PFD_STDERR], &res.err, &res.err_len);
        if (r < 0) {
                sh_exec_result_done(&res);
                return sh_err(err, r, "exec '%s': %s", prog, strerror(-r));
        }
        *ret = res;
        if (timed_out)
                return sh_err(err, -ETIMEDOUT, "exec '%s': timed out after %u ms, killed", prog,
                              opts->timeout_ms);
        if (cancelled)
                return sh_err(err, -ECANCELED, "exec '%s': cancelled by the caller, killed", prog);
        if (watch_r < 0)
                return sh_err(err, watch_r, "exec '%s': stopped by its watcher", prog);
        return 0;
}

void sh_exec_result_done(struct sh_exec_result *r)
{
        if (!r)
                return;
        free(r->out);
        free(r->err);
        *r = (struct sh_exec_result){0};
}
