/*
 * runt-agent: streams (exec, exec-sync, attach, port-dial) and the process set-up shared
 * by a container's init and its execs (user, capabilities, no_new_privs, seccomp, env).
 *
 * Flow control (proto.h): the agent reads a stream's fd only while it has credit from the
 * host; what the host sends is written to the fd and granted back once written. Attachers
 * share a container's output, which is never held up for them: one without credit misses
 * that chunk.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <sys/capability.h>

#include "agent.h"

extern char **environ;

/* What an EXEC_SYNC answer carries at most: a RESP's payload, less room for the rest. */
#define SYNC_MAX (AG_MAX_PAYLOAD - 4096)

struct stream *st_list;
static struct stream *st_dead;

/* ---- process set-up ---- */

/* @names, less those this process's bounding set lacks when @held_only. */
static int apply_caps(char **names, bool held_only, char *msg, size_t msize)
{
        cap_value_t vals[64];
        size_t n = 0;
        cap_t caps;
        int r = 0;

        for (size_t i = 0; names[i]; i++) {
                char low[64];
                cap_value_t v;
                size_t j;

                for (j = 0; names[i][j] && j + 1 < sizeof(low); j++)
                        low[j] = (char)(names[i][j] >= 'A' && names[i][j] <= 'Z' ? names[i][j] + 32
                                                                                 : names[i][j]);
                low[j] = 0;
                if (cap_from_name(low, &v) < 0 || n >= 64)
                        continue; /* unknown to this kernel/libcap: as runc, skipped */
                if (held_only && cap_get_bound(v) != 1)
                        continue; /* "all", and not ours to give (a CT's lxc.cap.drop) */
                vals[n++] = v;
        }
        caps = cap_init();
        if (!caps)
                return -ENOMEM;
        if (n && (cap_set_flag(caps, CAP_EFFECTIVE, (int)n, vals, CAP_SET) < 0 ||
                  cap_set_flag(caps, CAP_PERMITTED, (int)n, vals, CAP_SET) < 0 ||
                  cap_set_flag(caps, CAP_INHERITABLE, (int)n, vals, CAP_SET) < 0))
                r = -EINVAL;
        if (r == 0 && cap_set_proc(caps) < 0) {
                r = -errno;
                snprintf(msg, msize, "capset: %s", strerror(errno));
        }
        cap_free(caps);
        return r;
}

static int drop_bounding(char **names)
{
        for (cap_value_t v = 0; v <= CAP_LAST_CAP; v++) {
                bool keep = false;

                for (size_t i = 0; names[i] && !keep; i++) {
                        cap_value_t x;
                        char low[64];
                        size_t j;

                        for (j = 0; names[i][j] && j + 1 < sizeof(low); j++)
                                low[j] = (char)(names[i][j] >= 'A' && names[i][j] <= 'Z'
                                                        ? names[i][j] + 32
                                                        : names[i][j]);
                        low[j] = 0;
                        keep = cap_from_name(low, &x) == 0 && x == v;
                }
                if (!keep && prctl(PR_CAPBSET_DROP, v, 0, 0, 0) < 0 && errno != EINVAL)
                        return -errno;
        }
        return 0;
}

int ctr_child_exec(struct ctr *c, char **argv, bool enter, char *msg, size_t msize)
{
        const struct ag_ctr_spec *s = &c->spec;
        int r;

        if (enter) {
                if (c->cgroup[0])
                        cg_write(c->cgroup, "cgroup.procs", "0");
                if (c->cgns_fd >= 0)
                        setns(c->cgns_fd, CLONE_NEWCGROUP);
                if (c->mntns_fd < 0 || setns(c->mntns_fd, CLONE_NEWNS) < 0) {
                        snprintf(msg, msize, "entering the container: %s", strerror(errno));
                        return -errno;
                }
        }
        if (s->cwd && s->cwd[0] && chdir(s->cwd) < 0) {
                snprintf(msg, msize, "cwd %s: %s", s->cwd, strerror(errno));
                return -errno;
        }
        if (s->seccomp && !s->no_new_privs) {
                /* Loaded while still privileged: without no_new_privs only CAP_SYS_ADMIN may. */
                r = c->bpf ? seccomp_install(c->bpf, c->bpf_len)
                           : seccomp_apply(s->seccomp, s->seccomp_len, s->caps, true, msg, msize);
                if (r < 0 && c->bpf)
                        snprintf(msg, msize, "seccomp: %s", strerror(-r));
                if (r < 0)
                        return r;
        }
        r = drop_bounding(s->caps);
        if (r < 0) {
                snprintf(msg, msize, "capability bounding set: %s", strerror(-r));
                return r;
        }
        prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
        gid_t groups[64];
        size_t ng = s->n_groups < 64 ? s->n_groups : 64;

        for (size_t i = 0; i < ng; i++)
                groups[i] = (gid_t)s->groups[i];
        if (setgroups(ng, groups) < 0 ||
            setresgid((gid_t)s->gid, (gid_t)s->gid, (gid_t)s->gid) < 0 ||
            setresuid((uid_t)s->uid, (uid_t)s->uid, (uid_t)s->uid) < 0) {
                snprintf(msg, msize, "user %lld:%lld: %s", (long long)s->uid, (long long)s->gid,
                         strerror(errno));
                return -errno;
        }
        prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
        r = apply_caps(s->caps, s->caps_held, msg, msize);
        if (r < 0)
                return r;
        if (s->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                snprintf(msg, msize, "no_new_privs: %s", strerror(errno));
                return -errno;
        }
        if (s->seccomp && s->no_new_privs) {
                r = c->bpf ? seccomp_install(c->bpf, c->bpf_len)
                           : seccomp_apply(s->seccomp, s->seccomp_len, s->caps, true, msg, msize);
                if (r < 0 && c->bpf)
                        snprintf(msg, msize, "seccomp: %s", strerror(-r));
                if (r < 0)
                        return r;
        }
        environ = s->env;
        execvp(argv[0], argv);
        r = -errno;
        snprintf(msg, msize, "exec %s: %s", argv[0], strerror(errno));
        return r;
}

/* ---- streams ---- */

static struct stream *st_find(uint32_t sid)
{
        for (struct stream *s = st_list; s; s = s->next)
                if (s->sid == sid)
                        return s;
        return NULL;
}

bool st_stream_used(uint32_t sid)
{
        return st_find(sid) != NULL;
}

static struct stream *st_new(enum st_type type, const struct ag_hdr *h)
{
        struct stream *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->type = type;
        s->sid = h->stream;
        s->req_id = h->id;
        s->out = (struct ew){.kind = EW_ST_OUT, .obj = s, .fd = -1};
        s->err = (struct ew){.kind = EW_ST_ERR, .obj = s, .fd = -1};
        s->in = (struct ew){.kind = EW_ST_IN, .obj = s, .fd = -1};
        s->credit = AG_WINDOW_INIT;
        return s;
}

static void st_unlink(struct stream *s)
{
        struct stream **pp;

        for (pp = &st_list; *pp && *pp != s; pp = &(*pp)->next)
                ;
        if (*pp)
                *pp = s->next;
        s->dead = true;
        s->next = st_dead;
        st_dead = s;
}

/* Ends @s: closes its fds; kills its process (a group) if it still runs. */
static void st_end(struct stream *s)
{
        if (s->dead)
                return;
        if (s->pid > 0)
                kill(-s->pid, SIGKILL), kill(s->pid, SIGKILL);
        ew_close(&s->out);
        ew_close(&s->err);
        ew_close(&s->in);
        if (s->type == ST_ATTACH && s->ctr && s->stdin_on && s->ctr->spec.stdin_once &&
            s->ctr->in_fd >= 0) {
                close(s->ctr->in_fd);
                s->ctr->in_fd = -1;
        }
        st_unlink(s);
}

void st_gc(void)
{
        while (st_dead) {
                struct stream *s = st_dead;

                /* A process still running (killed in st_end) is reaped by the loop. */
                st_dead = s->next;
                free(s->inq);
                free(s->obuf);
                free(s->ebuf);
                free(s);
        }
}

void st_drop_all(void)
{
        while (st_list)
                st_end(st_list);
}

void st_ctr_gone(struct ctr *c)
{
        for (struct stream *s = st_list, *n; s; s = n) {
                n = s->next;
                if (s->ctr == c) {
                        s->ctr = NULL;
                        if (s->type == ST_ATTACH) {
                                agent_send_simple(AG_K_CLOSE, AG_CHAN_ALL, s->sid, NULL, 0);
                                st_end(s);
                        }
                }
        }
}

static void sync_reply(struct stream *s, int err)
{
        struct ag_hdr h = {.op = AG_OP_EXEC_SYNC, .stream = s->sid, .id = s->req_id};
        struct ag_buf b;

        if (err) {
                agent_resp_err(&h, err, "timed out: killed");
                return;
        }
        ag_buf_init(&b);
        agent_resp_begin(&b, &h);
        ag_put_u64(&b, AG_A_EXIT_CODE, s->exit_code);
        ag_put_bytes(&b, AG_A_OUT, s->obuf, s->olen);
        ag_put_bytes(&b, AG_A_ERR, s->ebuf, s->elen);
        if (s->dropped)
                ag_put_u64(&b, AG_A_DROPPED, (int64_t)s->dropped);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
}

/* The exec's command ended and its output was drained: the stream or the request ends. */
static void exec_finish(struct stream *s)
{
        if (s->type == ST_EXEC_SYNC) {
                sync_reply(s, 0);
        } else {
                struct ag_buf b;

                if (s->out.fd >= 0 || s->tty)
                        agent_send_simple(AG_K_CLOSE, AG_CHAN_STDOUT, s->sid, NULL, 0);
                if (!s->tty)
                        agent_send_simple(AG_K_CLOSE, AG_CHAN_STDERR, s->sid, NULL, 0);
                ag_buf_init(&b);
                ag_frame_begin(&b, AG_K_EVENT, AG_EV_STREAM_EXIT, s->sid, 0);
                ag_put_u64(&b, AG_A_EXIT_CODE, s->exit_code);
                if (ag_frame_end(&b) == 0)
                        agent_send(&b);
                ag_buf_done(&b);
                agent_send_simple(AG_K_CLOSE, AG_CHAN_ALL, s->sid, NULL, 0);
        }
        st_end(s);
}

static void keep(uint8_t **buf, size_t *len, struct stream *s, const uint8_t *d, size_t n)
{
        size_t room = s->max > s->olen + s->elen ? s->max - s->olen - s->elen : 0;
        size_t take = n < room ? n : room;
        uint8_t *nb;

        if (take) {
                nb = realloc(*buf, *len + take);
                if (nb) {
                        memcpy(nb + *len, d, take);
                        *buf = nb;
                        *len += take;
                } else {
                        take = 0;
                }
        }
        s->dropped += n - take;
}

/* How long an exec whose command ended waits for more output from processes it left. */
#define DRAIN_IDLE_MS 500

/* One read of a stream's output fd; false at EOF (closed then). */
static bool st_read_once(struct stream *s, struct ew *w)
{
        uint8_t buf[AG_MAX_DATA];
        size_t want = sizeof(buf);
        int chan = w == &s->err ? AG_CHAN_STDERR : AG_CHAN_STDOUT;
        ssize_t n;

        if (s->type != ST_EXEC_SYNC) {
                if (s->credit == 0) {
                        ew_set(w, 0);
                        return false;
                }
                if (want > s->credit)
                        want = s->credit;
        }
        n = read(w->fd, buf, want);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return false;
        if (n <= 0) {
                ew_close(w);
                if (s->type == ST_PORT) {
                        agent_send_simple(AG_K_CLOSE, AG_CHAN_STDOUT, s->sid, NULL, 0);
                        agent_send_simple(AG_K_CLOSE, AG_CHAN_ALL, s->sid, NULL, 0);
                        st_end(s);
                } else if (s->type == ST_EXEC && s->out.fd < 0 && s->err.fd < 0 && s->pid == 0) {
                        exec_finish(s);
                }
                return false;
        }
        if (s->type == ST_EXEC_SYNC) {
                if (chan == AG_CHAN_STDOUT)
                        keep(&s->obuf, &s->olen, s, buf, (size_t)n);
                else
                        keep(&s->ebuf, &s->elen, s, buf, (size_t)n);
        } else {
                if (s->type == ST_EXEC && s->pid == 0)
                        s->drain_ms = agent_mono_ms() + DRAIN_IDLE_MS;
                s->credit -= (uint32_t)n;
                agent_send_simple(AG_K_DATA, (uint16_t)chan, s->sid, buf, (size_t)n);
                if (s->credit == 0)
                        ew_set(w, 0);
        }
        return n == (ssize_t)want;
}

void st_readable(struct ew *w)
{
        st_read_once(w->obj, w);
}

bool st_reaped(pid_t pid, int status)
{
        for (struct stream *s = st_list; s; s = s->next) {
                if ((s->type != ST_EXEC && s->type != ST_EXEC_SYNC) || s->pid != pid)
                        continue;
                s->pid = 0;
                s->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                /* What is in the pipes now (for EXEC, more follows while processes it
                 * left still write; EXEC_SYNC does not wait for them). */
                for (int i = 0; i < 1024 && s->out.fd >= 0 && st_read_once(s, &s->out); i++)
                        ;
                for (int i = 0; i < 1024 && s->err.fd >= 0 && st_read_once(s, &s->err); i++)
                        ;
                if (s->type == ST_EXEC && !s->dead && (s->out.fd >= 0 || s->err.fd >= 0)) {
                        /* The rest goes out as the host grants credit, and what processes
                         * it left write meanwhile, until they are quiet (st_timers). */
                        s->drain_ms = agent_mono_ms() + DRAIN_IDLE_MS;
                        return true;
                }
                if (!s->dead)
                        exec_finish(s);
                return true;
        }
        return false;
}

int st_timers(void)
{
        int64_t now = agent_mono_ms(), next = -1;

        for (struct stream *s = st_list, *n; s; s = n) {
                n = s->next;
                if (s->type == ST_EXEC && s->pid == 0 && s->drain_ms && s->credit > 0) {
                        /* Quiet long enough while the host took what came: the end. What
                         * the pipes hold now goes first (and restarts the wait). */
                        if (now >= s->drain_ms) {
                                while (!s->dead && s->out.fd >= 0 && st_read_once(s, &s->out))
                                        ;
                                while (!s->dead && s->err.fd >= 0 && st_read_once(s, &s->err))
                                        ;
                                if (s->dead)
                                        continue;
                                if (s->credit > 0 && s->drain_ms <= now) {
                                        exec_finish(s);
                                        continue;
                                }
                                if (s->credit == 0)
                                        continue;
                        }
                        if (next < 0 || s->drain_ms - now < next)
                                next = s->drain_ms - now;
                        continue;
                }
                if (s->type != ST_EXEC_SYNC || !s->deadline_ms || s->pid <= 0)
                        continue;
                if (now >= s->deadline_ms) {
                        sync_reply(s, ETIMEDOUT);
                        st_end(s); /* kills its process group */
                        continue;
                }
                if (next < 0 || s->deadline_ms - now < next)
                        next = s->deadline_ms - now;
        }
        return (int)next;
}

static int setnb(int fd)
{
        return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int decode_argv(const uint8_t *p, size_t len, char ***ret)
{
        struct ag_iter it;
        struct ag_attr a;
        char **v = calloc(1, sizeof(char *));
        size_t n = 0;
        int r;

        if (!v)
                return -ENOMEM;
        ag_iter_init(&it, p, len);
        while ((r = ag_iter_next(&it, &a)) > 0) {
                char **nv;

                if (a.tag != AG_A_ARGV)
                        continue;
                nv = realloc(v, (n + 2) * sizeof(char *));
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                v[n + 1] = NULL;
                r = ag_attr_str(&a, &v[n]);
                if (r < 0) {
                        v[n] = NULL;
                        break;
                }
                n++;
        }
        if (r == 0 && n == 0)
                r = -EINVAL;
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(v[i]);
                free(v);
                return r;
        }
        *ret = v;
        return 0;
}

static void free_argv(char **v)
{
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

void st_op_exec(const struct ag_hdr *h, const uint8_t *p, bool sync)
{
        int64_t tty = 0, in = 0, rows = 0, cols = 0, timeout = 0, max = 0;
        int po[2] = {-1, -1}, pe[2] = {-1, -1}, pi[2] = {-1, -1}, m = -1, sl = -1;
        char **argv = NULL, *id = NULL;
        struct stream *s;
        struct ctr *c;
        int r;

        if (ag_find_str(p, h->len, AG_A_ID, &id) < 0 || !(c = ctr_find(id))) {
                agent_resp_err(h, ENOENT, "no container '%s'", id ? id : "");
                free(id);
                return;
        }
        free(id);
        if (c->state != AG_ST_RUNNING || c->mntns_fd < 0) {
                agent_resp_err(h, EINVAL, "container %s is not running", c->spec.id);
                return;
        }
        if (!sync && (h->stream == 0 || st_find(h->stream) || layer_stream_used(h->stream))) {
                agent_resp_err(h, EINVAL, "bad stream id %u", h->stream);
                return;
        }
        r = decode_argv(p, h->len, &argv);
        if (r < 0) {
                agent_resp_err(h, -r, "bad ARGV");
                return;
        }
        if (!sync) {
                ag_find_i64(p, h->len, AG_A_TTY, &tty);
                ag_find_i64(p, h->len, AG_A_STDIN, &in);
                ag_find_i64(p, h->len, AG_A_ROWS, &rows);
                ag_find_i64(p, h->len, AG_A_COLS, &cols);
        } else {
                ag_find_i64(p, h->len, AG_A_TIMEOUT_MS, &timeout);
                ag_find_i64(p, h->len, AG_A_MAX_OUTPUT, &max);
        }
        s = st_new(sync ? ST_EXEC_SYNC : ST_EXEC, h);
        if (!s) {
                free_argv(argv);
                agent_resp_err(h, ENOMEM, "out of memory");
                return;
        }
        /* An EXEC_SYNC may come on a stream id of its own, for the host's CLOSE when it
         * gives up; one already in use (or none) leaves it without. */
        if (sync && (st_find(h->stream) || layer_stream_used(h->stream)))
                s->sid = 0;
        s->tty = tty;
        s->stdin_on = in;
        /* OUT and ERR together go in one RESP. */
        s->max = max > 0 && max < SYNC_MAX ? (size_t)max : SYNC_MAX;
        if (tty) {
                r = ctr_open_pty(c, &m, &sl);
                if (r < 0) {
                        r = -r;
                        goto fail;
                }
                if (rows > 0 && cols > 0) {
                        struct winsize ws = {.ws_row = (unsigned short)rows,
                                             .ws_col = (unsigned short)cols};

                        ioctl(m, TIOCSWINSZ, &ws);
                }
        } else if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0 ||
                   (in && pipe2(pi, O_CLOEXEC) < 0)) {
                r = errno;
                goto fail;
        }
        pid_t pid = ctr_fork(c);

        if (pid == 0) {
                char msg[256] = "";
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);

                setsid(); /* its own process group: a timeout kills all of it */
                if (tty) {
                        dup2(sl, 0), dup2(sl, 1), dup2(sl, 2);
                        ioctl(0, TIOCSCTTY, 0);
                } else {
                        dup2(in ? pi[0] : null, 0);
                        dup2(po[1], 1);
                        dup2(pe[1], 2);
                }
                for (int sig = 1; sig < NSIG; sig++)
                        signal(sig, SIG_DFL);
                sigset_t none;

                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                r = ctr_child_exec(c, argv, true, msg, sizeof(msg));
                dprintf(2, "runt-agent: %s\n", msg);
                _exit(r == -ENOENT ? 127 : 126);
        }
        if (pid < 0) {
                r = errno;
                goto fail;
        }
        free_argv(argv);
        argv = NULL;
        s->pid = pid;
        if (tty) {
                close(sl);
                s->out.fd = m;
                if (in)
                        s->in.fd = fcntl(m, F_DUPFD_CLOEXEC, 3);
                setnb(m);
        } else {
                close(po[1]);
                close(pe[1]);
                s->out.fd = po[0];
                s->err.fd = pe[0];
                setnb(po[0]);
                setnb(pe[0]);
                if (in) {
                        close(pi[0]);
                        s->in.fd = pi[1];
                        setnb(pi[1]);
                }
        }
        if (sync && timeout > 0)
                s->deadline_ms = agent_mono_ms() + timeout;
        ew_set(&s->out, EPOLLIN);
        ew_set(&s->err, EPOLLIN);
        s->next = st_list;
        st_list = s;
        if (!sync)
                agent_resp_ok(h);
        return;
fail:
        for (int i = 0; i < 2; i++) {
                if (po[i] >= 0)
                        close(po[i]);
                if (pe[i] >= 0)
                        close(pe[i]);
                if (pi[i] >= 0)
                        close(pi[i]);
        }
        if (m >= 0)
                close(m);
        if (sl >= 0)
                close(sl);
        free_argv(argv);
        free(s);
        agent_resp_err(h, r, "exec: %s", strerror(r));
}

void st_op_attach(const struct ag_hdr *h, const uint8_t *p)
{
        char *id = NULL;
        struct stream *s;
        struct ctr *c;
        struct ag_buf b;

        if (ag_find_str(p, h->len, AG_A_ID, &id) < 0 || !(c = ctr_find(id))) {
                agent_resp_err(h, ENOENT, "no container '%s'", id ? id : "");
                free(id);
                return;
        }
        free(id);
        if (h->stream == 0 || st_find(h->stream) || layer_stream_used(h->stream)) {
                agent_resp_err(h, EINVAL, "bad stream id %u", h->stream);
                return;
        }
        if (c->state != AG_ST_RUNNING) {
                agent_resp_err(h, EINVAL, "container %s is not running", c->spec.id);
                return;
        }
        s = st_new(ST_ATTACH, h);
        if (!s) {
                agent_resp_err(h, ENOMEM, "out of memory");
                return;
        }
        s->ctr = c;
        s->tty = c->spec.tty;
        /* stdin only when it has one, and with stdin_once only for the first session. */
        s->stdin_on = c->in_fd >= 0 && !(c->spec.stdin_once && c->stdin_claimed);
        if (s->stdin_on)
                c->stdin_claimed = true;
        s->next = st_list;
        st_list = s;
        ag_buf_init(&b);
        agent_resp_begin(&b, h);
        ag_put_u64(&b, AG_A_TTY, c->spec.tty);
        ag_put_u64(&b, AG_A_STDIN, s->stdin_on);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
}

void st_attach_output(struct ctr *c, int chan, const uint8_t *d, size_t n)
{
        for (struct stream *s = st_list; s; s = s->next) {
                if (s->type != ST_ATTACH || s->ctr != c || s->credit < n)
                        continue;
                s->credit -= (uint32_t)n;
                agent_send_simple(AG_K_DATA, (uint16_t)chan, s->sid, d, n);
        }
}

void st_attach_eof(struct ctr *c)
{
        for (struct stream *s = st_list, *n; s; s = n) {
                n = s->next;
                if (s->type != ST_ATTACH || s->ctr != c)
                        continue;
                agent_send_simple(AG_K_CLOSE, AG_CHAN_STDOUT, s->sid, NULL, 0);
                if (!s->tty)
                        agent_send_simple(AG_K_CLOSE, AG_CHAN_STDERR, s->sid, NULL, 0);
                agent_send_simple(AG_K_CLOSE, AG_CHAN_ALL, s->sid, NULL, 0);
                st_end(s);
        }
}

void st_op_port_dial(const struct ag_hdr *h, const uint8_t *p)
{
        int64_t port = 0;
        struct stream *s;
        int fd = -1, r = 0;

        ag_find_i64(p, h->len, AG_A_PORT, &port);
        if (port <= 0 || port > 65535) {
                agent_resp_err(h, EINVAL, "bad port %lld", (long long)port);
                return;
        }
        if (h->stream == 0 || st_find(h->stream) || layer_stream_used(h->stream)) {
                agent_resp_err(h, EINVAL, "bad stream id %u", h->stream);
                return;
        }
        struct sockaddr_in a4 = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
                                  .sin6_port = htons((uint16_t)port),
                                  .sin6_addr = IN6ADDR_LOOPBACK_INIT};

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a4, sizeof(a4)) < 0) {
                r = errno;
                close(fd);
                fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd >= 0 && connect(fd, (struct sockaddr *)&a6, sizeof(a6)) < 0) {
                        close(fd);
                        fd = -1;
                }
        }
        if (fd < 0) {
                agent_resp_err(h, r ? r : ECONNREFUSED, "connect to port %lld: %s", (long long)port,
                               strerror(r ? r : ECONNREFUSED));
                return;
        }
        s = st_new(ST_PORT, h);
        if (!s) {
                close(fd);
                agent_resp_err(h, ENOMEM, "out of memory");
                return;
        }
        setnb(fd);
        s->out.fd = fd;
        s->in.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        s->stdin_on = true;
        s->next = st_list;
        st_list = s;
        ew_set(&s->out, EPOLLIN);
        agent_resp_ok(h);
}

void st_op_resize(const struct ag_hdr *h, const uint8_t *p)
{
        struct stream *s = st_find(h->stream);
        int64_t rows = 0, cols = 0;
        int fd = -1;

        ag_find_i64(p, h->len, AG_A_ROWS, &rows);
        ag_find_i64(p, h->len, AG_A_COLS, &cols);
        if (s && s->tty && s->type == ST_EXEC)
                fd = s->out.fd;
        else if (s && s->tty && s->type == ST_ATTACH && s->ctr)
                fd = s->ctr->out.fd;
        if (fd < 0) {
                agent_resp_err(h, ENOENT, "no terminal on stream %u", h->stream);
                return;
        }
        struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};

        if (ioctl(fd, TIOCSWINSZ, &ws) < 0) {
                agent_resp_err(h, errno, "resize: %s", strerror(errno));
                return;
        }
        agent_resp_ok(h);
}

static void grant(struct stream *s, size_t n)
{
        uint8_t w[4];

        s->consumed += (uint32_t)n;
        if (s->consumed < AG_WINDOW_INIT / 4 && s->inq_len)
                return;
        w[0] = (uint8_t)(s->consumed >> 24);
        w[1] = (uint8_t)(s->consumed >> 16);
        w[2] = (uint8_t)(s->consumed >> 8);
        w[3] = (uint8_t)s->consumed;
        s->consumed = 0;
        agent_send_simple(AG_K_WINDOW, AG_CHAN_STDIN, s->sid, w, 4);
}

static int in_fd(struct stream *s)
{
        if (s->type == ST_ATTACH)
                return s->ctr && s->stdin_on ? s->ctr->in_fd : -1;
        return s->in.fd;
}

/* Writes what is queued for the stream's stdin. */
static void st_flush_in(struct stream *s)
{
        int fd = in_fd(s);

        while (fd >= 0 && s->inq_off < s->inq_len) {
                ssize_t n = write(fd, s->inq + s->inq_off, s->inq_len - s->inq_off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n <= 0) {
                        s->inq_off = s->inq_len; /* the reader is gone: drop */
                        break;
                }
                s->inq_off += (size_t)n;
                grant(s, (size_t)n);
        }
        if (s->inq_off == s->inq_len) {
                s->inq_off = s->inq_len = 0;
                if (s->type != ST_ATTACH)
                        ew_set(&s->in, 0);
                if (s->in_eof && s->type == ST_EXEC && !s->tty)
                        ew_close(&s->in);
                else if (s->in_eof && s->type == ST_PORT && s->in.fd >= 0)
                        shutdown(s->in.fd, SHUT_WR);
        } else if (s->type != ST_ATTACH) {
                ew_set(&s->in, EPOLLOUT);
        }
}

void st_writable(struct ew *w)
{
        st_flush_in(w->obj);
}

void st_data(const struct ag_hdr *h, const uint8_t *p)
{
        struct stream *s = st_find(h->stream);
        uint8_t *n;

        if (!s || h->op != AG_CHAN_STDIN || !s->stdin_on || in_fd(s) < 0 || h->len == 0)
                return;
        /* What was written already goes: it was granted back, so it must not count
         * against the credit (a slow reader had its stdin cut here). */
        if (s->inq_off) {
                memmove(s->inq, s->inq + s->inq_off, s->inq_len - s->inq_off);
                s->inq_len -= s->inq_off;
                s->inq_off = 0;
        }
        if (s->inq_len + h->len > 2 * AG_WINDOW_INIT)
                return; /* past the credit it had: dropped */
        n = realloc(s->inq, s->inq_len + h->len);
        if (!n)
                return;
        s->inq = n;
        memcpy(s->inq + s->inq_len, p, h->len);
        s->inq_len += h->len;
        st_flush_in(s);
        if (s->type == ST_ATTACH && s->inq_len) {
                /* A container's stdin is not in the loop: write the rest blocking. */
                int fd = in_fd(s);

                if (fd >= 0) {
                        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
                        st_flush_in(s);
                        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                }
        }
}

void st_window(const struct ag_hdr *h, const uint8_t *p)
{
        struct stream *s = st_find(h->stream);
        uint32_t n;

        if (!s || h->len != 4)
                return;
        n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        s->credit = s->credit + n < s->credit ? UINT32_MAX : s->credit + n;
        if (s->type == ST_ATTACH)
                return;
        if (s->out.fd >= 0)
                ew_set(&s->out, EPOLLIN);
        if (s->err.fd >= 0)
                ew_set(&s->err, EPOLLIN);
        if (s->type == ST_EXEC && s->pid == 0) {
                /* Exited, output left: send what the credit allows; the wait for more
                 * starts again (the time the host lagged does not count). */
                s->drain_ms = agent_mono_ms() + DRAIN_IDLE_MS;
                while (!s->dead && s->out.fd >= 0 && st_read_once(s, &s->out))
                        ;
                while (!s->dead && s->err.fd >= 0 && st_read_once(s, &s->err))
                        ;
        }
}

void st_close(const struct ag_hdr *h)
{
        struct stream *s = st_find(h->stream);

        if (!s)
                return;
        if (h->op == AG_CHAN_ALL) {
                st_end(s);
                return;
        }
        if (h->op != AG_CHAN_STDIN)
                return;
        s->in_eof = true;
        if (s->type == ST_ATTACH) {
                if (s->stdin_on && s->ctr && s->ctr->spec.stdin_once && s->ctr->in_fd >= 0) {
                        close(s->ctr->in_fd);
                        s->ctr->in_fd = -1;
                }
                return;
        }
        if (s->type == ST_EXEC && s->tty && s->in.fd >= 0) {
                /* A terminal's EOF is ^D at the start of a line. */
                static const uint8_t eot = 4;

                if (write(s->in.fd, &eot, 1) < 0)
                        return;
                return;
        }
        st_flush_in(s);
}
