/*
 * runt-lxc-shim: the per-container monitor (notes/lxc.md, "shim model").
 *
 *   runt-lxc-shim LXCPATH NAME DIR LOG FLAGS MEMCG ARG...
 *
 * Starts the LXC container NAME (its config saved already by runtd) non-daemonized, so this
 * process is its LXC monitor, and stays with it until it exits:
 *   - the container's stdout and stderr are pipes (a pty with FLAGS 't') read here and
 *     written to LOG in the CRI format: "<RFC3339Nano> stdout|stderr F|P <line>";
 *   - SIGUSR1 reopens LOG (ReopenContainerLog, after the kubelet rotated it);
 *   - an OOM kill in the container's memory cgroup MEMCG ("" for none) is noticed: on cgroup
 *     v1 (a directory of the memory hierarchy) through cgroup.event_control, on v2 (the
 *     container's cgroup) through inotify on memory.events and its oom_kill counter;
 *   - the exit status, OOM flag and times go to DIR/exit, written atomically, so runtd reads
 *     them whenever it asks, also after it restarted or crashed;
 *   - DIR/attach, a SOCK_SEQPACKET socket (attach.h), lets clients (CRI Attach) read the
 *     output as it is logged, write stdin and resize the tty; never at the cost of blocking
 *     the container: a client too slow for its output misses parts of it.
 * FLAGS: 't' a pty for stdio, 'i' stdin is open (a pipe held open, or the pty; else
 * /dev/null or, with 't', a pty nobody writes), 'o' stdin_once: the container's stdin is
 * closed when the first attach session that had stdin ends, '-' none; then ":N", the
 * length beyond which a line is logged in partial (P) records.
 *
 * The process runtd runs forks the monitor, which calls setsid(), and waits until the
 * container runs (or could not start); it prints "<pid> <started_ns>" on stdout and exits
 * 0, or prints why on stderr and exits 1. The monitor is then no child of runtd.
 *
 * Inside the monitor a child calls liblxc's start(), which blocks until the container exits
 * and leaves the init's wait status in error_num; it writes that to DIR/status for us.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <lxc/lxccontainer.h>

#include "attach.h"
#include "helpercg.h"
#include "nofollow.h"

#define MAX_LINE_DEFAULT 16384
#define DRAIN_MS         1000
#define MAX_CLIENTS      32
#define CLIENT_SNDBUF    (1 << 20) /* so that a client rarely misses output */
#define N_ELEMS(a)       (sizeof(a) / sizeof((a)[0]))

struct stream {
        const char *name; /* "stdout", "stderr" */
        char kind;        /* LB_ATTACH_STDOUT, LB_ATTACH_STDERR */
        int fd;           /* read end, -1 at EOF */
        char *buf;        /* max_line bytes */
        size_t len, max_line;
};

/*
 * An attach client. A free slot has fd -1 and no pending; one with fd -1 and pending is a
 * client gone whose stdin is still being written.
 */
struct client {
        int fd;
        bool had_stdin;  /* sent stdin (or its EOF): its end counts for stdin_once */
        bool stdin_done; /* sent LB_ATTACH_STDIN_EOF: later stdin of it is discarded */
        char *pending; /* stdin the full pipe did not take yet; the client is not read meanwhile */
        size_t pending_off, pending_len;
};

struct shim {
        const char *lxcpath, *name, *dir, *log_path, *memcg;
        int log_fd;
        struct stream out, err;
        int oom_efd; /* v1: the eventfd of the OOM notification; v2: an inotify fd */
        int oom_ctl; /* v1 memory.oom_control, v2 memory.events: their oom_kill counter */
        bool oom_v2;
        bool oom;
        int dir_fd;    /* O_PATH of DIR, for the attach socket's file */
        int listen_fd; /* the attach socket; -1 once the container is gone */
        struct client clients[MAX_CLIENTS];
        int pty;          /* the pty master (FLAGS 't'), for resizes; else -1 */
        int in_fd;        /* where stdin goes: the pipe's write end or the pty; -1 none or closed */
        bool stdin_once;  /* FLAGS 'o' */
        bool in_line_end; /* the last stdin byte to the pty ended a line (or there was none) */
};

static long long now_ns(clockid_t clk)
{
        struct timespec ts;

        clock_gettime(clk, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void path_in(char *out, size_t size, const char *dir, const char *file)
{
        snprintf(out, size, "%s/%s", dir, file);
}

/* Writes @text to DIR/@file through a temp file and rename, durably. */
static int write_state(const char *dir, const char *file, const char *text)
{
        char tmp[PATH_MAX], dst[PATH_MAX];
        size_t len = strlen(text);
        int fd, ok;

        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, file);
        path_in(dst, sizeof(dst), dir, file);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
        close(fd);
        if (!ok || rename(tmp, dst) < 0) {
                unlink(tmp);
                return -EIO;
        }
        return 0;
}

/*
 * (Re)opens LOG, at start and on SIGUSR1. No symlink in its path is followed, the file's
 * own included: the kubelet's log directory may be writable by a pod (a hostPath of
 * /var/log/pods), which must not make the shim create or append to a file elsewhere.
 * On failure log_fd is -1 and errno says why.
 */
static void open_log(struct shim *s)
{
        int fd;

        if (s->log_fd >= 0)
                close(s->log_fd);
        s->log_fd = -1;
        if (!s->log_path[0])
                return;
        fd = sh_open_append_nofollow(s->log_path, 0640);
        if (fd < 0)
                errno = -fd;
        else
                s->log_fd = fd;
}

/* One CRI log record. A failed write is dropped: the container must never block on it. */
static void log_record(struct shim *s, const char *stream, char tag, const char *line, size_t len)
{
        char head[80];
        struct timespec ts;
        struct tm tm;
        size_t n;

        if (s->log_fd < 0)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(head + n, sizeof(head) - n, ".%09ldZ %s %c ", ts.tv_nsec, stream,
                              tag);
        {
                struct iovec iov[3] = {
                        {head, n},
                        {(void *)line, len},
                        {"\n", 1},
                };
                ssize_t w = writev(s->log_fd, iov, 3);

                (void)w;
        }
}

/* Splits what arrived on @st into records: full lines F, longer ones in max_line P parts. */
static void stream_feed(struct shim *s, struct stream *st, const char *data, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                if (data[i] == '\n') {
                        size_t l = st->len;

                        if (l && st->buf[l - 1] == '\r')
                                l--; /* a pty's line end */
                        log_record(s, st->name, 'F', st->buf, l);
                        st->len = 0;
                        continue;
                }
                if (st->len == st->max_line) {
                        log_record(s, st->name, 'P', st->buf, st->len);
                        st->len = 0;
                }
                st->buf[st->len++] = data[i];
        }
}

/* ---------------------------------------------------------------- attach (attach.h) */

/* Creates DIR/attach (0600), listening, non-blocking. 0 or -errno. */
static int attach_listen(struct shim *s)
{
        struct sockaddr_un sa;
        socklen_t len = 0;
        int dirfd = -1, r;
        mode_t old;

        s->dir_fd = open(s->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (s->dir_fd < 0)
                return -errno;
        r = lb_attach_addr(s->dir, &sa, &len, &dirfd);
        if (r < 0)
                return r;
        s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->listen_fd < 0)
                r = -errno;
        unlinkat(s->dir_fd, LB_ATTACH_SOCKET, 0); /* left by a monitor that was killed */
        old = umask(0177);
        if (r == 0 && bind(s->listen_fd, (struct sockaddr *)&sa, len) < 0)
                r = -errno;
        umask(old);
        if (dirfd >= 0)
                close(dirfd);
        if (r == 0 && (fchmodat(s->dir_fd, LB_ATTACH_SOCKET, 0600, 0) < 0 ||
                       listen(s->listen_fd, MAX_CLIENTS) < 0))
                r = -errno;
        return r;
}

static void client_done(struct shim *s, struct client *c);

/* Takes the clients waiting; one more than MAX_CLIENTS is refused by closing it. */
static void attach_accept(struct shim *s)
{
        for (int i = 0; i < 2 * MAX_CLIENTS; i++) {
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                int size = CLIENT_SNDBUF;
                struct client *c = NULL;

                if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
                        continue;
                if (fd < 0)
                        return; /* EAGAIN: none left */
                for (size_t k = 0; k < MAX_CLIENTS && !c; k++)
                        if (s->clients[k].fd < 0 && !s->clients[k].pending)
                                c = &s->clients[k];
                /* None free: a client already gone gives up the stdin it left unwritten
                 * (a container that never reads it would hold the slot for ever). */
                for (size_t k = 0; k < MAX_CLIENTS && !c; k++)
                        if (s->clients[k].fd < 0) {
                                client_done(s, &s->clients[k]);
                                c = &s->clients[k];
                        }
                if (!c) {
                        close(fd);
                        continue;
                }
                /* Root may go past net.core.wmem_max. */
                if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
                        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
                *c = (struct client){.fd = fd};
        }
}

/*
 * Closes the container's stdin for good (stdin_once): a pipe is closed, so reads see EOF;
 * a pty cannot be closed without hanging up its output, so it gets the EOF character (twice
 * in the middle of a line: the first one only ends the line). Pending stdin is dropped.
 */
static void stdin_close(struct shim *s)
{
        if (s->in_fd < 0)
                return;
        if (s->in_fd == s->pty) {
                struct termios t;
                char eof[2] = {4, 4}; /* ^D */
                size_t n = 1;
                ssize_t w;

                if (tcgetattr(s->pty, &t) == 0) {
                        if (t.c_cc[VEOF] != _POSIX_VDISABLE)
                                eof[0] = eof[1] = (char)t.c_cc[VEOF];
                        if ((t.c_lflag & ICANON) && !s->in_line_end)
                                n = 2;
                }
                w = write(s->pty, eof, n);
                (void)w;
        } else {
                close(s->in_fd);
        }
        s->in_fd = -1;
        for (size_t k = 0; k < MAX_CLIENTS; k++) {
                free(s->clients[k].pending);
                s->clients[k].pending = NULL;
        }
}

/* Client @c's session is over: its slot is freed; with stdin_once, stdin too if it had any. */
static void client_done(struct shim *s, struct client *c)
{
        bool had_stdin = c->had_stdin;

        free(c->pending);
        *c = (struct client){.fd = -1};
        if (had_stdin && s->stdin_once)
                stdin_close(s);
}

/* Client @c disconnected (or broke the protocol): done, once its stdin is written. */
static void client_end(struct shim *s, struct client *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        if (!c->pending)
                client_done(s, c);
}

/*
 * Writes @len bytes of @data to the container's stdin without blocking; what the full pipe
 * does not take waits in @c->pending, and @c is not read until it is written. Returns
 * false when stdin broke (the container no longer reads it), which closes it.
 */
static bool stdin_write(struct shim *s, struct client *c, const char *data, size_t len)
{
        while (len && s->in_fd >= 0) {
                ssize_t n = write(s->in_fd, data, len);

                if (n > 0) {
                        s->in_line_end = data[n - 1] == '\n' || data[n - 1] == '\r';
                        data += n;
                        len -= (size_t)n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        if (!c->pending) {
                                c->pending = malloc(len);
                                if (!c->pending)
                                        return true; /* out of memory: lost, alas */
                                memcpy(c->pending, data, len);
                                c->pending_off = 0;
                                c->pending_len = len;
                        }
                        return true;
                }
                stdin_close(s); /* EPIPE: nobody reads it any more */
                return false;
        }
        return true;
}

/* The container's stdin has room again: writes what clients left pending, in slot order. */
static void stdin_drain(struct shim *s)
{
        for (size_t k = 0; k < MAX_CLIENTS && s->in_fd >= 0; k++) {
                struct client *c = &s->clients[k];
                char *buf = c->pending;
                size_t len;

                if (!buf)
                        continue;
                len = c->pending_len - c->pending_off;
                c->pending = NULL; /* so that stdin_write takes what is left afresh */
                if (!stdin_write(s, c, buf + c->pending_off, len)) {
                        free(buf);
                        return;
                }
                free(buf);
                if (c->pending)
                        return; /* full again */
                if (c->fd < 0)
                        client_done(s, c);
        }
}

/* One packet from client @c. */
static void client_read(struct shim *s, struct client *c)
{
        char buf[1 + LB_ATTACH_MAX_PAYLOAD];
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        /* 0 is EOF: every packet of the protocol has its kind byte. */
        if (n <= 0 || (size_t)n > sizeof(buf)) {
                client_end(s, c);
                return;
        }
        switch (buf[0]) {
        case LB_ATTACH_STDIN:
                c->had_stdin = true;
                if (!c->stdin_done)
                        stdin_write(s, c, buf + 1, (size_t)n - 1);
                break;
        case LB_ATTACH_STDIN_EOF:
                c->had_stdin = true;
                c->stdin_done = true;
                if (s->stdin_once)
                        stdin_close(s);
                break;
        case LB_ATTACH_RESIZE:
                if (n == 5 && s->pty >= 0) {
                        uint16_t w, h;
                        struct winsize ws = {0};

                        memcpy(&w, buf + 1, 2);
                        memcpy(&h, buf + 3, 2);
                        ws.ws_col = ntohs(w);
                        ws.ws_row = ntohs(h);
                        ioctl(s->pty, TIOCSWINSZ, &ws);
                }
                break;
        default:
                break; /* not ours to send: ignored */
        }
}

/*
 * Sends @len bytes of output to every client, LB_ATTACH_MAX_PAYLOAD per packet, never
 * waiting: a client whose socket is full misses the packet.
 */
static void attach_broadcast(struct shim *s, char kind, const char *data, size_t len)
{
        for (size_t off = 0; off < len;) {
                size_t chunk =
                        len - off < LB_ATTACH_MAX_PAYLOAD ? len - off : LB_ATTACH_MAX_PAYLOAD;

                for (size_t k = 0; k < MAX_CLIENTS; k++) {
                        struct client *c = &s->clients[k];
                        struct iovec iov[2] = {{&kind, 1}, {(void *)(data + off), chunk}};
                        struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};

                        if (c->fd < 0)
                                continue;
                        if (sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
                            (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN))
                                client_end(s, c);
                }
                off += chunk;
        }
}

/* The container is gone: no new clients. */
static void attach_unlink(struct shim *s)
{
        if (s->listen_fd >= 0) {
                unlinkat(s->dir_fd, LB_ATTACH_SOCKET, 0);
                close(s->listen_fd);
                s->listen_fd = -1;
        }
}

/* Closes every client, which read EOF. */
static void attach_close(struct shim *s)
{
        attach_unlink(s);
        for (size_t k = 0; k < MAX_CLIENTS; k++) {
                if (s->clients[k].fd >= 0)
                        close(s->clients[k].fd);
                free(s->clients[k].pending);
                s->clients[k] = (struct client){.fd = -1};
        }
}

static void stream_read(struct shim *s, struct stream *st)
{
        char buf[65536];
        ssize_t n;

        if (st->fd < 0)
                return;
        n = read(st->fd, buf, sizeof(buf));
        if (n > 0) {
                stream_feed(s, st, buf, (size_t)n);
                attach_broadcast(s, st->kind, buf, (size_t)n);
                return;
        }
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        /* EOF (or EIO: a pty whose last holder is gone): the rest is a last full line. */
        if (st->len)
                log_record(s, st->name, 'F', st->buf, st->len);
        st->len = 0;
        close(st->fd);
        st->fd = -1;
}

/*
 * Reads the oom_kill counter of the container's memory cgroup: the event alone does not say
 * OOM, cgroup v1 signals it on the cgroup's removal too. Sets s->oom when it is not 0.
 */
static void check_oom(struct shim *s)
{
        char buf[512];
        ssize_t n;

        if (s->oom_ctl < 0)
                return;
        n = pread(s->oom_ctl, buf, sizeof(buf) - 1, 0);
        if (n > 0) {
                const char *k;

                buf[n] = '\0';
                k = strstr(buf, "\noom_kill ");
                if (k && atol(k + 10) > 0)
                        s->oom = true;
        }
}

/* Reads what is there now, then logs a pending partial line as the last full one. */
static void stream_flush(struct shim *s, struct stream *st)
{
        for (int i = 0; i < 64 && st->fd >= 0; i++) {
                size_t before = st->len;
                int fd = st->fd;

                errno = 0;
                stream_read(s, st);
                if (st->fd == fd && st->len == before && errno == EAGAIN)
                        break;
        }
        if (st->fd >= 0) {
                if (st->len)
                        log_record(s, st->name, 'F', st->buf, st->len);
                st->len = 0;
                close(st->fd);
                st->fd = -1;
        }
}

/* SIGKILLs what is left in the container's memory cgroup. */
static void kill_leftovers(struct shim *s)
{
        char path[PATH_MAX], line[32];
        FILE *f;

        if (!s->memcg[0])
                return;
        path_in(path, sizeof(path), s->memcg, "cgroup.procs");
        f = fopen(path, "re");
        while (f && fgets(line, sizeof(line), f))
                if (atoi(line) > 1)
                        kill(atoi(line), SIGKILL);
        if (f)
                fclose(f);
}

/*
 * cgroup v2: memory.events changes (the kernel notifies inotify watchers of it) at every
 * OOM kill, and at other memory events too (max, high): its oom_kill counter says which.
 */
static void watch_oom_v2(struct shim *s)
{
        char path[PATH_MAX];
        int fd;

        path_in(path, sizeof(path), s->memcg, "memory.events");
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        s->oom_ctl = fd;
        s->oom_v2 = true;
        s->oom_efd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (s->oom_efd >= 0 && inotify_add_watch(s->oom_efd, path, IN_MODIFY) < 0) {
                close(s->oom_efd);
                s->oom_efd = -1;
        }
        check_oom(s);
}

/* Arms the OOM notification of the container's memory cgroup; sets s->oom if one happened. */
static void watch_oom(struct shim *s)
{
        char path[PATH_MAX], line[64];
        int ofd, cfd;

        if (!s->memcg[0])
                return;
        path_in(path, sizeof(path), s->memcg, "memory.oom_control");
        ofd = open(path, O_RDONLY | O_CLOEXEC);
        if (ofd < 0 && errno == ENOENT) {
                watch_oom_v2(s);
                return;
        }
        if (ofd < 0)
                return;
        s->oom_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        path_in(path, sizeof(path), s->memcg, "cgroup.event_control");
        cfd = open(path, O_WRONLY | O_CLOEXEC);
        if (s->oom_efd >= 0 && cfd >= 0) {
                int l = snprintf(line, sizeof(line), "%d %d", s->oom_efd, ofd);

                if (write(cfd, line, (size_t)l) != l) {
                        close(s->oom_efd);
                        s->oom_efd = -1;
                }
        }
        if (cfd >= 0)
                close(cfd);
        s->oom_ctl = ofd;
        /* A kill before the notification was armed shows in the counter. */
        check_oom(s);
}

/* Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. */
static unsigned long long proc_starttime(int pid)
{
        char path[64], buf[1024];
        unsigned long long v = 0;
        const char *p;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        p = strrchr(buf, ')'); /* the command name may hold anything */
        for (int field = 2; p && field < 22; field++)
                p = strchr(p + 1, ' ');
        if (p)
                v = strtoull(p + 1, NULL, 10);
        return v;
}

/* The exit code of a wait status; liblxc gives a kill as (sig << 8) | 0x7f. */
static int exit_code_of(int st)
{
        if ((st & 0x7f) == 0)
                return (st >> 8) & 0xff;
        if ((st & 0x7f) == 0x7f)
                return 128 + ((st >> 8) & 0x7f);
        return 128 + (st & 0x7f);
}

/* Did the pre-start hook refuse a restart (DIR/ran.refused, by runt-lxc-hook --once)? */
static bool restart_refused(struct shim *s)
{
        char path[PATH_MAX];

        path_in(path, sizeof(path), s->dir, "ran.refused");
        return access(path, F_OK) == 0;
}

/* The child that becomes nothing but liblxc's start(): the container's monitor proper. */
static void run_start(struct shim *s, int in, int out, int err, char **argv)
{
        struct lxc_container *c;
        char text[64];
        sigset_t none;
        bool ok;
        int st;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
                _exit(3);
        for (int fd = 3; fd < 1024; fd++)
                close(fd);
        c = lxc_container_new(s->name, s->lxcpath);
        if (!c || !c->is_defined(c))
                _exit(3);
        c->want_daemonize(c, false);
        c->want_close_all_fds(c, true);
        ok = c->start(c, 0, argv); /* argv[0] is runt-init, which may exec argv[1] */
        st = c->error_num;

        snprintf(text, sizeof(text), "%d %d\n", ok ? 1 : 0, st);
        write_state(s->dir, "status", text);
        _exit(ok ? 0 : 1);
}

/* Reads DIR/status: did start() succeed, and the wait status. */
static bool read_status(struct shim *s, int *ret_status)
{
        char path[PATH_MAX], buf[64] = "";
        int ok = 0, st = 0;
        FILE *f;

        path_in(path, sizeof(path), s->dir, "status");
        f = fopen(path, "re");
        if (!f)
                return false;
        if (!fgets(buf, sizeof(buf), f) || sscanf(buf, "%d %d", &ok, &st) != 2)
                ok = 0;
        fclose(f);
        unlink(path);
        *ret_status = st;
        return ok == 1;
}

static void report(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int fd, const char *fmt, ...)
{
        char buf[512];
        va_list ap;
        int n;

        if (fd < 0)
                return;
        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n > 0 && write(fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1) < 0)
                return;
}

static int monitor(struct shim *s, int ready, const char *flags, char **argv)
{
        struct lxc_container *probe = lxc_container_new(s->name, s->lxcpath);
        int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
        bool tty = strchr(flags, 't'), keep_stdin = strchr(flags, 'i');
        long long started = 0, finished = 0, deadline = 0;
        int sfd, status = 0, pid = 0, r;
        bool child_done = false, have_status;
        sigset_t mask;
        pid_t child;
        char text[160];

        if (!probe)
                return report(ready, "lxc_container_new failed\n"), 1;
        open_log(s);
        if (s->log_path[0] && s->log_fd < 0)
                return report(ready, "open log '%s' (no symlinks followed): %s\n", s->log_path,
                              strerror(errno)),
                       1;
        if (tty) {
                if (openpty(&out[0], &out[1], NULL, NULL, NULL) < 0)
                        return report(ready, "openpty: %s\n", strerror(errno)), 1;
                err[1] = dup(out[1]);
                in[0] = dup(out[1]);
                /* Its own fd: output EOF closes out[0] while stdin and resizes go on. */
                s->pty = fcntl(out[0], F_DUPFD_CLOEXEC, 3);
                if (s->pty < 0)
                        return report(ready, "dup: %s\n", strerror(errno)), 1;
                if (keep_stdin)
                        s->in_fd = s->pty;
        } else {
                if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
                        return report(ready, "pipe: %s\n", strerror(errno)), 1;
                if (keep_stdin ? pipe2(in, O_CLOEXEC) < 0
                               : (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
                        return report(ready, "stdin: %s\n", strerror(errno)), 1;
                if (keep_stdin) {
                        s->in_fd = in[1];
                        fcntl(in[1], F_SETFL, O_NONBLOCK); /* the container never blocks us */
                }
        }
        s->stdin_once = keep_stdin && strchr(flags, 'o');
        {
                const char *colon = strchr(flags, ':');
                unsigned long max = colon ? strtoul(colon + 1, NULL, 10) : 0;

                if (max < 64 || max > (16u << 20))
                        max = MAX_LINE_DEFAULT;
                s->out = (struct stream){
                        .name = "stdout", .kind = LB_ATTACH_STDOUT, .fd = out[0], .max_line = max};
                s->err = (struct stream){.name = "stderr",
                                         .kind = LB_ATTACH_STDERR,
                                         .fd = tty ? -1 : err[0],
                                         .max_line = max};
                /* Never block on a read: a process left in a shared pid namespace may hold
                 * the write end open for ever. */
                fcntl(out[0], F_SETFL, O_NONBLOCK);
                if (!tty)
                        fcntl(err[0], F_SETFL, O_NONBLOCK);
                s->out.buf = malloc(max);
                s->err.buf = malloc(max);
                if (!s->out.buf || !s->err.buf)
                        return report(ready, "out of memory\n"), 1;
        }
        r = attach_listen(s);
        if (r < 0) {
                attach_close(s);
                return report(ready, "attach socket in '%s': %s\n", s->dir, strerror(-r)), 1;
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGUSR1);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGPIPE);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

        child = fork();
        if (child < 0)
                return report(ready, "fork: %s\n", strerror(errno)), 1;
        if (child == 0)
                run_start(s, in[0], out[1], tty ? out[1] : err[1], argv);
        close(out[1]);
        if (err[1] >= 0)
                close(err[1]);
        close(in[0]); /* keep_stdin: in[1] stays open, so the container's reads block */

        for (;;) {
                struct pollfd p[6 + MAX_CLIENTS] = {
                        {.fd = s->out.fd, .events = POLLIN},
                        {.fd = s->err.fd, .events = POLLIN},
                        {.fd = sfd, .events = POLLIN},
                        {.fd = s->oom_efd, .events = POLLIN},
                        {.fd = s->listen_fd, .events = POLLIN},
                        {.fd = -1, .events = POLLOUT}, /* stdin, while some is pending */
                };
                int timeout = -1;

                for (size_t k = 0; k < MAX_CLIENTS; k++) {
                        const struct client *c = &s->clients[k];

                        if (c->pending)
                                p[5].fd = s->in_fd;
                        /* Backpressure: a client's stdin is read once its last is written;
                         * meanwhile only its hangup is watched. */
                        p[6 + k] = (struct pollfd){.fd = c->fd,
                                                   .events = c->pending ? POLLRDHUP : POLLIN};
                }

                if (!started && !child_done)
                        timeout = 2;
                if (child_done)
                        timeout = (int)((deadline - now_ns(CLOCK_MONOTONIC)) / 1000000);
                if (child_done && (timeout <= 0 || (s->out.fd < 0 && s->err.fd < 0)))
                        break;
                if (poll(p, N_ELEMS(p), timeout) < 0 && errno != EINTR)
                        break;
                if (p[0].revents)
                        stream_read(s, &s->out);
                if (p[1].revents)
                        stream_read(s, &s->err);
                if (p[5].fd >= 0 && p[5].revents)
                        stdin_drain(s);
                for (size_t k = 0; k < MAX_CLIENTS; k++) {
                        struct client *c = &s->clients[k];

                        if (p[6 + k].fd < 0 || p[6 + k].fd != c->fd || !p[6 + k].revents)
                                continue;
                        if (p[6 + k].events == POLLIN)
                                client_read(s, c);
                        else if (p[6 + k].revents & (POLLHUP | POLLERR | POLLRDHUP))
                                client_end(s, c); /* gone; its stdin is still written */
                }
                if (p[4].revents & POLLIN)
                        attach_accept(s);
                if ((p[3].revents & POLLIN) && s->oom_v2) {
                        char ev[4096];

                        /* The counter is there as soon as the event: read at once, before
                         * the container's end takes its cgroup (and the file) away. */
                        while (read(s->oom_efd, ev, sizeof(ev)) > 0)
                                ;
                        check_oom(s);
                } else if (p[3].revents & POLLIN) {
                        uint64_t v;

                        char buf[64];

                        /*
                         * An event while the cgroup is there is an OOM (its counter may not
                         * count the kill yet); one on its removal finds the file gone.
                         */
                        if (read(s->oom_efd, &v, sizeof(v)) == sizeof(v) && s->oom_ctl >= 0 &&
                            pread(s->oom_ctl, buf, sizeof(buf), 0) > 0)
                                s->oom = true;
                }
                if (p[2].revents & POLLIN) {
                        struct signalfd_siginfo si;

                        while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                                if (si.ssi_signo == SIGUSR1)
                                        open_log(s);
                        }
                        if (!child_done && waitpid(child, NULL, WNOHANG) == child) {
                                child_done = true;
                                /* As containerd: what outlives PID 1 (a pid namespace shared
                                 * with the pod keeps it) is killed with it. */
                                kill_leftovers(s);
                                finished = now_ns(CLOCK_REALTIME);
                                /* Output a background process holds open is read a while. */
                                deadline = now_ns(CLOCK_MONOTONIC) + DRAIN_MS * 1000000LL;
                        }
                }
                if (!started && !child_done) {
                        const char *state = probe->state(probe);

                        /*
                         * An init that exits at once can be gone between the two calls
                         * (init_pid -1): then it counts as seen running once it exited.
                         */
                        if (state && strcmp(state, "RUNNING") == 0)
                                pid = probe->init_pid(probe);
                        if (pid > 0) {
                                started = now_ns(CLOCK_REALTIME);
                                watch_oom(s);
                                /* Its start time too: stop checks it is still this process. */
                                snprintf(text, sizeof(text), "%d %lld %llu\n", pid, started,
                                         proc_starttime(pid));
                                write_state(s->dir, "started", text);
                                report(ready, "%s", text);
                                close(ready);
                                ready = -1;
                        }
                }
        }
        /* One last look: the kill may be counted before the event arrives. */
        check_oom(s);
        stream_flush(s, &s->out);
        stream_flush(s, &s->err);
        attach_unlink(s);
        have_status = read_status(s, &status);
        if (!have_status && restart_refused(s)) {
                /*
                 * liblxc restarts a container whose init died of SIGHUP (reboot() in its pid
                 * namespace does that), and its start() does not come back from the restart
                 * the pre-start hook refused: the run ended with that wait status.
                 */
                status = SIGHUP;
                have_status = true;
        }
        if (!have_status) {
                char log[PATH_MAX], line[512] = "", best[512] = "";
                FILE *f;

                if (!started) {
                        path_in(log, sizeof(log), s->dir, "lxc.log");
                        f = fopen(log, "re");
                        while (f && fgets(line, sizeof(line), f))
                                if (strstr(line, " ERROR ") && !best[0])
                                        snprintf(best, sizeof(best), "%s", line);
                        if (f)
                                fclose(f);
                        best[strcspn(best, "\n")] = '\0';
                        report(ready, "the container did not start: %s\n",
                               best[0] ? best : "see its lxc.log");
                        attach_close(s);
                        return 1;
                }
                status = 255 << 8; /* ran, but liblxc said no status: unknown */
        }
        if (!started) {
                /* It ran and exited before we saw it running: it did start. */
                started = finished;
                snprintf(text, sizeof(text), "0 %lld\n", started);
                write_state(s->dir, "started", text);
                report(ready, "%s", text);
        }
        snprintf(text, sizeof(text), "%d %d %lld %lld\n", exit_code_of(status), s->oom ? 1 : 0,
                 started, finished);
        write_state(s->dir, "exit", text);
        /* After the exit file: a client that reads EOF finds the container exited. */
        attach_close(s);
        lxc_container_put(probe);
        return 0;
}

int main(int argc, char **argv)
{
        struct shim s = {.log_fd = -1,
                         .oom_efd = -1,
                         .oom_ctl = -1,
                         .dir_fd = -1,
                         .listen_fd = -1,
                         .pty = -1,
                         .in_fd = -1,
                         .in_line_end = true};
        int ready[2];
        sigset_t none;
        pid_t pid;
        char buf[512];
        ssize_t n;
        size_t len = 0;

        if (argc < 8) {
                fprintf(stderr, "usage: runt-lxc-shim LXCPATH NAME DIR LOG FLAGS MEMCG ARG... "
                                "(run by runtd)\n");
                return 2;
        }
        {
                /* First: the monitor forked below is born in its cgroup (helpercg.h). */
                char why[300];

                if (sh_helpercg_join_env(why, sizeof(why)) < 0) {
                        fprintf(stderr, "runt-lxc-shim: %s\n", why);
                        return 1;
                }
        }
        s.lxcpath = argv[1];
        s.name = argv[2];
        s.dir = argv[3];
        s.log_path = argv[4];
        s.memcg = argv[6];
        for (size_t k = 0; k < MAX_CLIENTS; k++)
                s.clients[k].fd = -1;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (pipe2(ready, O_CLOEXEC) < 0)
                return 1;
        pid = fork();
        if (pid < 0)
                return 1;
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                char pidtext[32];

                close(ready[0]);
                setsid();
                /* runtd reads our parent's output until EOF: let go of its pipes. */
                dup2(null, 0);
                dup2(null, 1);
                dup2(null, 2);
                snprintf(pidtext, sizeof(pidtext), "%d\n", (int)getpid());
                write_state(s.dir, "shim.pid", pidtext);
                _exit(monitor(&s, ready[1], argv[5], argv + 7));
        }
        close(ready[1]);
        while (len < sizeof(buf) - 1 &&
               (n = read(ready[0], buf + len, sizeof(buf) - 1 - len)) != 0) {
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        if (len && buf[0] >= '0' && buf[0] <= '9') {
                fputs(buf, stdout);
                return 0;
        }
        fputs(len ? buf : "the container monitor exited before the container ran\n", stderr);
        return 1;
}
