/*
 * runt-agent: the pod agent's main loop and its transport.
 *
 * As PID 1 of a microVM guest (getpid() == 1): mounts the pseudo file systems, loads the
 * modules of /etc/runt-modules, then serves the virtio-serial port named AG_PORT_NAME
 * forever: open, READY, serve until EOF or an error, close, 20 ms, again (a read gives EOF
 * while no host is connected). It reaps every process and never exits.
 *
 * Its kernel command line may name the host's virtio-fs shares to mount before READY:
 * "runt.virtiofs=TAG:PATH[:ro]", repeated. Containers' upper layers live in /run/runt-agent
 * (guest RAM); cgroups are /sys/fs/cgroup/pod/<id>.
 *
 * Host mode (tests; later a CT): runt-agent --listen-unix PATH | --fd N [--state-dir DIR]
 * [--cgroup-root DIR] does everything but the PID 1 set-up, one connection at a time
 * (--fd: that one connection, then it exits). No cgroups unless --cgroup-root names a
 * cgroup v2 directory it may use. --layer-max-bytes caps one LAYER_PUT (agent-layer.c).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

struct agent_cfg agent_cfg;

static int epfd = -1;
static struct ew listen_w = {.kind = EW_LISTEN, .fd = -1};
static struct ew conn_w = {.kind = EW_CONN, .fd = -1};
static struct ew sig_w = {.kind = EW_SIGNAL, .fd = -1};
static struct ag_reader rd;
static uint8_t *outq;
static size_t outq_len, outq_off, outq_cap;
static bool throttled;
static bool exit_after_conn; /* --fd: one connection, then exit */
static char port_path[PATH_MAX];
static bool shutting_down;

#define OUTQ_HIGH (8u << 20)
#define OUTQ_LOW  (1u << 20)

void agent_log(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        fputs("runt-agent: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

int64_t agent_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t agent_mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ew_set(struct ew *w, uint32_t events)
{
        struct epoll_event ev = {.events = events, .data.ptr = w};

        if (w->fd < 0 || w->events == events)
                return;
        if (!events)
                epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
        else if (!w->events)
                epoll_ctl(epfd, EPOLL_CTL_ADD, w->fd, &ev);
        else
                epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &ev);
        w->events = events;
}

void ew_close(struct ew *w)
{
        ew_set(w, 0);
        if (w->fd >= 0)
                close(w->fd);
        w->fd = -1;
}

bool agent_connected(void)
{
        return conn_w.fd >= 0;
}

size_t agent_outq(void)
{
        return outq_len - outq_off;
}

static void conn_end(void);

static void flush_out(void)
{
        while (conn_w.fd >= 0 && outq_off < outq_len) {
                ssize_t n = write(conn_w.fd, outq + outq_off, outq_len - outq_off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n <= 0) {
                        conn_end();
                        return;
                }
                outq_off += (size_t)n;
        }
        if (outq_off == outq_len)
                outq_off = outq_len = 0;
        if (conn_w.fd >= 0)
                ew_set(&conn_w, EPOLLIN | (outq_len ? EPOLLOUT : 0));
        if (throttled && agent_outq() < OUTQ_LOW) {
                throttled = false;
                ctr_throttle(false);
        }
}

void agent_send(struct ag_buf *b)
{
        if (conn_w.fd < 0 || b->err || b->len == 0)
                return;
        if (outq_len + b->len > outq_cap) {
                size_t cap = outq_cap ? outq_cap : 65536;
                uint8_t *n;

                if (outq_off) {
                        memmove(outq, outq + outq_off, outq_len - outq_off);
                        outq_len -= outq_off;
                        outq_off = 0;
                }
                while (cap < outq_len + b->len)
                        cap *= 2;
                n = cap == outq_cap ? outq : realloc(outq, cap);
                if (!n) {
                        agent_log("out of memory for the host queue: dropping the connection");
                        conn_end();
                        return;
                }
                outq = n;
                outq_cap = cap;
        }
        memcpy(outq + outq_len, b->data, b->len);
        outq_len += b->len;
        flush_out();
        if (!throttled && agent_outq() > OUTQ_HIGH) {
                throttled = true;
                ctr_throttle(true);
        }
}

void agent_resp_begin(struct ag_buf *b, const struct ag_hdr *h)
{
        ag_buf_reset(b);
        ag_frame_begin(b, AG_K_RESP, h->op, h->stream, h->id);
}

void agent_resp_ok(const struct ag_hdr *h)
{
        struct ag_buf b;

        ag_buf_init(&b);
        agent_resp_begin(&b, h);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
}

void agent_resp_err(const struct ag_hdr *h, int err, const char *fmt, ...)
{
        char msg[512];
        struct ag_buf b;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        ag_buf_init(&b);
        agent_resp_begin(&b, h);
        ag_put_u64(&b, AG_A_ERRNO, err > 0 ? err : (err < 0 ? -err : EIO));
        ag_put_str(&b, AG_A_ERRMSG, msg);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
}

static int64_t uptime_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void send_ready(void)
{
        struct ag_buf b;

        ag_buf_init(&b);
        ag_frame_begin(&b, AG_K_EVENT, AG_EV_READY, 0, 0);
        ag_put_u64(&b, AG_A_VERSION, AG_VERSION);
        ag_put_str(&b, AG_A_BOOT_ID, agent_cfg.boot_id);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
}

static void conn_begin(int fd)
{
        int fl = fcntl(fd, F_GETFL);

        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        conn_w.fd = fd;
        conn_w.events = 0;
        ag_reader_init(&rd);
        outq_len = outq_off = 0;
        ew_set(&conn_w, EPOLLIN);
        if (listen_w.fd >= 0)
                ew_set(&listen_w, 0); /* one connection at a time */
        send_ready();
        ctr_resend();
}

static int64_t reopen_at_ms = -1;

static void conn_end(void)
{
        if (conn_w.fd < 0)
                return;
        ew_close(&conn_w);
        ag_reader_done(&rd);
        outq_len = outq_off = 0;
        if (throttled) {
                throttled = false;
                ctr_throttle(false);
        }
        st_drop_all();
        layer_drop_all();
        if (listen_w.fd >= 0)
                ew_set(&listen_w, EPOLLIN);
        if (agent_cfg.pid1)
                reopen_at_ms = agent_mono_ms() + 20;
}

static void op_shutdown(const struct ag_hdr *h)
{
        agent_resp_ok(h);
        /* The RESP goes out first, as far as the port takes it. */
        for (int i = 0; i < 50 && agent_outq(); i++) {
                flush_out();
                if (agent_outq())
                        usleep(2000);
        }
        ctr_kill_all();
        sync();
        if (agent_cfg.pid1) {
                reboot(RB_POWER_OFF);
                return;
        }
        shutting_down = true;
}

static void dispatch_req(const struct ag_hdr *h, const uint8_t *p)
{
        struct ag_buf b;

        switch (h->op) {
        case AG_OP_HELLO:
        case AG_OP_PING:
                ag_buf_init(&b);
                agent_resp_begin(&b, h);
                if (h->op == AG_OP_HELLO) {
                        int64_t t;

                        /*
                         * The guest's clock starts from an RTC with whole seconds: the host's
                         * time in HELLO sets it, so started/finished times agree with runtd's.
                         */
                        if (agent_cfg.pid1 && ag_find_i64(p, h->len, AG_A_TIME_NS, &t) == 0 &&
                            t > 0) {
                                struct timespec ts = {.tv_sec = t / 1000000000LL,
                                                      .tv_nsec = t % 1000000000LL};

                                clock_settime(CLOCK_REALTIME, &ts);
                        }
                        ag_put_u64(&b, AG_A_VERSION, AG_VERSION);
                        ag_put_str(&b, AG_A_BOOT_ID, agent_cfg.boot_id);
                }
                ag_put_u64(&b, AG_A_UPTIME_NS, uptime_ns());
                if (ag_frame_end(&b) == 0)
                        agent_send(&b);
                ag_buf_done(&b);
                return;
        case AG_OP_NET_SETUP:
                net_op_setup(h, p);
                return;
        case AG_OP_CTR_CREATE:
                ctr_op_create(h, p);
                return;
        case AG_OP_CTR_START:
                ctr_op_start(h, p);
                return;
        case AG_OP_CTR_SIGNAL:
                ctr_op_signal(h, p);
                return;
        case AG_OP_CTR_STATUS:
                ctr_op_status(h, p);
                return;
        case AG_OP_CTR_LIST:
                ctr_op_list(h, p);
                return;
        case AG_OP_CTR_REMOVE:
                ctr_op_remove(h, p);
                return;
        case AG_OP_CTR_UPDATE:
                ctr_op_update(h, p);
                return;
        case AG_OP_EXEC:
        case AG_OP_EXEC_SYNC:
                st_op_exec(h, p, h->op == AG_OP_EXEC_SYNC);
                return;
        case AG_OP_ATTACH:
                st_op_attach(h, p);
                return;
        case AG_OP_PORT_DIAL:
                st_op_port_dial(h, p);
                return;
        case AG_OP_RESIZE:
                st_op_resize(h, p);
                return;
        case AG_OP_STATS:
                ctr_op_stats(h, p);
                return;
        case AG_OP_POD_STATS:
                ctr_op_pod_stats(h, p);
                return;
        case AG_OP_LOG_ACK:
                ctr_op_log_ack(h, p);
                return;
        case AG_OP_LOG_REOPEN:
                agent_resp_ok(h);
                return;
        case AG_OP_SHUTDOWN:
                op_shutdown(h);
                return;
        case AG_OP_LAYER_HAS:
                layer_op_has(h, p);
                return;
        case AG_OP_LAYER_PUT:
                layer_op_put(h, p);
                return;
        default:
                agent_resp_err(h, EOPNOTSUPP, "unknown op %u", h->op);
        }
}

static void conn_readable(void)
{
        uint8_t buf[65536];
        struct ag_hdr h;
        const uint8_t *p;
        ssize_t n;
        int r;

        n = read(conn_w.fd, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        if (n <= 0 || ag_reader_feed(&rd, buf, (size_t)n) < 0) {
                conn_end();
                return;
        }
        while (conn_w.fd >= 0 && (r = ag_reader_next(&rd, &h, &p)) != 0) {
                if (r < 0) {
                        agent_log("bad frame from the host: dropping the connection");
                        conn_end();
                        return;
                }
                switch (h.kind) {
                case AG_K_REQ:
                        dispatch_req(&h, p);
                        break;
                case AG_K_DATA:
                        if (!layer_data(&h, p))
                                st_data(&h, p);
                        break;
                case AG_K_WINDOW:
                        st_window(&h, p);
                        break;
                case AG_K_CLOSE:
                        if (!layer_close(&h))
                                st_close(&h);
                        break;
                default:
                        break; /* RESP/EVENT from the host: nothing to do */
                }
        }
}

static void reap(void)
{
        struct signalfd_siginfo si;
        pid_t pid;
        int st;

        while (read(sig_w.fd, &si, sizeof(si)) > 0)
                ;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
                if (ctr_reaped(pid, st))
                        continue;
                st_reaped(pid, st);
        }
}

/* ---- PID 1 set-up ---- */

static void mkdir_p(const char *path)
{
        char p[PATH_MAX];

        snprintf(p, sizeof(p), "%s", path);
        for (char *s = p + 1; *s; s++)
                if (*s == '/') {
                        *s = 0;
                        mkdir(p, 0755);
                        *s = '/';
                }
        mkdir(p, 0755);
}

static void mnt(const char *src, const char *dst, const char *type, unsigned long fl,
                const char *data)
{
        mkdir(dst, 0755);
        if (mount(src, dst, type, fl, data) < 0 && errno != EBUSY)
                agent_log("mount %s on %s: %s", type, dst, strerror(errno));
}

/*
 * Loads the modules /etc/runt-modules lists (paths, in load order). A module whose
 * dependencies came later in the list is tried again after the others: passes go on while
 * one makes progress.
 */
static void load_modules(void)
{
        FILE *f = fopen("/etc/runt-modules", "re");
        char line[PATH_MAX], *mods[256];
        int err[256];
        size_t n = 0;
        bool progress = true;

        if (!f)
                return;
        while (n < 256 && fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\r\n")] = 0;
                if (line[0] && line[0] != '#' && (mods[n] = strdup(line)))
                        err[n++] = -1;
        }
        fclose(f);
        while (progress) {
                progress = false;
                for (size_t i = 0; i < n; i++) {
                        int fd;

                        if (err[i] == 0)
                                continue;
                        fd = open(mods[i], O_RDONLY | O_CLOEXEC);
                        if (fd < 0) {
                                err[i] = errno;
                                continue;
                        }
                        if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
                                err[i] = errno;
                        else
                                err[i] = 0, progress = true;
                        close(fd);
                }
        }
        for (size_t i = 0; i < n; i++) {
                if (err[i])
                        agent_log("module %s: %s", mods[i], strerror(err[i]));
                free(mods[i]);
        }
}

/*
 * The initramfs root (rootfs) is a mount without a parent, and pivot_root cannot leave such
 * a root: every container's pivot_root would fail. A bind mount of it moved over / is the
 * same files as a root that has a parent.
 */
static void root_to_mount(void)
{
        if (mkdir("/.agent-root", 0700) < 0 && errno != EEXIST)
                return;
        if (mount("/", "/.agent-root", NULL, MS_BIND, NULL) < 0) {
                agent_log("bind / : %s", strerror(errno));
                return;
        }
        if (chdir("/.agent-root") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 ||
            chroot(".") < 0 || chdir("/") < 0)
                agent_log("moving the root: %s", strerror(errno));
}

/*
 * The host's shares: each "runt.virtiofs=TAG:PATH[:ro]" of the kernel command line mounts
 * the virtio-fs TAG on PATH (the layers CTR_CREATE names in LOWER, volumes, the pod's
 * hosts/resolv.conf files live there). Done before the port opens, so that READY means
 * they are there.
 */
static void mount_shares(void)
{
        char buf[4096], *tok, *save = NULL;
        int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return;
        buf[n] = 0;
        for (tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
                char *tag, *path, *opt;

                if (strncmp(tok, "runt.virtiofs=", 14) != 0)
                        continue;
                tag = tok + 14;
                path = strchr(tag, ':');
                if (!path)
                        continue;
                *path++ = 0;
                opt = strchr(path, ':');
                if (opt)
                        *opt++ = 0;
                if (path[0] != '/')
                        continue;
                mkdir_p(path);
                if (mount(tag, path, "virtiofs",
                          MS_NOSUID | MS_NODEV | (opt && strcmp(opt, "ro") == 0 ? MS_RDONLY : 0),
                          NULL) < 0)
                        agent_log("mount virtiofs %s on %s: %s", tag, path, strerror(errno));
        }
}

static void pid1_setup(void)
{
        root_to_mount();
        mnt("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        mnt("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        mnt("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
        /* Without /dev/console in the initramfs, init starts with no stdio: the first fds
         * opened would be 0-2, and a message to stderr would land in the agent port. */
        for (int fd = 0; fd < 3; fd++)
                if (fcntl(fd, F_GETFD) < 0) {
                        int n = open("/dev/console", O_RDWR | O_NOCTTY);

                        if (n < 0)
                                n = open("/dev/null", O_RDWR);
                        if (n >= 0 && n != fd) {
                                dup2(n, fd);
                                close(n);
                        }
                }
        mnt("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
        mnt("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
        mnt("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666");
        mnt("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
        mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        /* The initramfs root is rootfs (not a mount one can pivot from); shared so that
         * rshared container mounts propagate. */
        mount(NULL, "/", NULL, MS_REC | MS_SHARED, NULL);
        load_modules();
        mount_shares();
        net_lo_up();
}

/* The /dev node of the virtio-serial port named AG_PORT_NAME, or -ENOENT. */
static int find_port(void)
{
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;
        int r = -ENOENT;

        if (!d)
                return -ENOENT;
        while ((e = readdir(d))) {
                char path[PATH_MAX], name[128] = "";
                FILE *f;

                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                if (fgets(name, sizeof(name), f))
                        name[strcspn(name, "\n")] = 0;
                fclose(f);
                if (strcmp(name, AG_PORT_NAME) == 0) {
                        snprintf(port_path, sizeof(port_path), "/dev/%s", e->d_name);
                        r = 0;
                        break;
                }
        }
        closedir(d);
        return r;
}

static void port_open(void)
{
        int fd;

        if (!port_path[0] && find_port() < 0) {
                reopen_at_ms = agent_mono_ms() + 100;
                return;
        }
        fd = open(port_path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                reopen_at_ms = agent_mono_ms() + 20;
                return;
        }
        reopen_at_ms = -1;
        conn_begin(fd);
}

#ifndef GRND_INSECURE
#define GRND_INSECURE 0x0004 /* Linux 5.6 */
#endif

static void make_boot_id(void)
{
        uint8_t r[16];
        size_t got = 0;
        /*
         * Not a secret, only unique per boot: GRND_INSECURE does not wait for the kernel's
         * entropy pool, which under TCG (no RDRAND, slow jitter) takes a second more to fill
         * than the rest of the boot (/dev/urandom waits for it too).
         */
        ssize_t n = getrandom(r, sizeof(r), GRND_INSECURE);

        if (n < 0 && errno == EINVAL)
                n = getrandom(r, sizeof(r), GRND_NONBLOCK);
        got = n > 0 ? (size_t)n : 0;
        if (got < sizeof(r)) {
                uint64_t x = (uint64_t)agent_now_ns() ^ ((uint64_t)getpid() << 32);

                for (size_t i = 0; i < sizeof(r); i++, x = x * 6364136223846793005ULL + 1)
                        r[i] = (uint8_t)(x >> 56);
        }
        for (size_t i = 0; i < sizeof(r); i++)
                snprintf(agent_cfg.boot_id + 2 * i, 3, "%02x", r[i]);
}

static int usage(void)
{
        fprintf(stderr, "usage: runt-agent                     (as PID 1 of a pod VM)\n"
                        "       runt-agent --listen-unix PATH | --fd N\n"
                        "                  [--state-dir DIR] [--cgroup-root DIR]\n"
                        "                  [--layer-max-bytes N]\n");
        return 2;
}

static int listen_unix(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        return fd;
}

int main(int argc, char **argv)
{
        const char *listen_path = NULL;
        int conn_fd = -1;
        sigset_t mask;

        agent_cfg.pid1 = getpid() == 1;
        snprintf(agent_cfg.state_dir, sizeof(agent_cfg.state_dir), "/run/runt-agent");
        agent_cfg.layer_max_bytes = AG_LAYER_MAX_BYTES;
        if (agent_cfg.pid1)
                snprintf(agent_cfg.cgroup_root, sizeof(agent_cfg.cgroup_root), "/sys/fs/cgroup");
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

                if (agent_cfg.pid1 && a[0] != '-')
                        continue; /* kernel command line leftovers */
                if (!v)
                        return usage();
                if (strcmp(a, "--listen-unix") == 0)
                        listen_path = v;
                else if (strcmp(a, "--fd") == 0)
                        conn_fd = atoi(v);
                else if (strcmp(a, "--state-dir") == 0)
                        snprintf(agent_cfg.state_dir, sizeof(agent_cfg.state_dir), "%s", v);
                else if (strcmp(a, "--cgroup-root") == 0)
                        snprintf(agent_cfg.cgroup_root, sizeof(agent_cfg.cgroup_root), "%s", v);
                else if (strcmp(a, "--layer-max-bytes") == 0)
                        agent_cfg.layer_max_bytes = strtoull(v, NULL, 10);
                else
                        return usage();
                i++;
        }
        if ((!agent_cfg.pid1 && !listen_path && conn_fd < 0) || !agent_cfg.layer_max_bytes)
                return usage();

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (agent_cfg.pid1)
                pid1_setup();
        else
                prctl(PR_SET_CHILD_SUBREAPER, 1);
        make_boot_id();
        mkdir(agent_cfg.state_dir, 0700);
        if (layer_init() < 0)
                agent_log("no image layers over the channel: %s/layers unusable",
                          agent_cfg.state_dir);
        if (agent_cfg.cgroup_root[0] && ctr_setup_cgroups() < 0)
                agent_log("cgroups at %s unusable: no limits", agent_cfg.cgroup_root);

        epfd = epoll_create1(EPOLL_CLOEXEC);
        sig_w.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (epfd < 0 || sig_w.fd < 0) {
                agent_log("epoll/signalfd: %s", strerror(errno));
                if (!agent_cfg.pid1)
                        return 1;
        }
        ew_set(&sig_w, EPOLLIN);
        if (listen_path) {
                listen_w.fd = listen_unix(listen_path);
                if (listen_w.fd < 0) {
                        agent_log("listen %s: %s", listen_path, strerror(-listen_w.fd));
                        return 1;
                }
                ew_set(&listen_w, EPOLLIN);
        } else if (conn_fd >= 0) {
                exit_after_conn = true;
                conn_begin(conn_fd);
        } else {
                port_open();
        }

        for (;;) {
                struct epoll_event evs[64];
                int timeout = st_timers(), n;

                if (shutting_down)
                        return 0;
                if (exit_after_conn && conn_w.fd < 0)
                        return 0;
                if (agent_cfg.pid1 && conn_w.fd < 0) {
                        int64_t now = agent_mono_ms();

                        if (reopen_at_ms >= 0 && now >= reopen_at_ms) {
                                port_open();
                                continue;
                        }
                        if (reopen_at_ms >= 0) {
                                int w = (int)(reopen_at_ms - now);

                                timeout = timeout < 0 || w < timeout ? w : timeout;
                        }
                }
                n = epoll_wait(epfd, evs, 64, timeout);
                if (n < 0 && errno != EINTR) {
                        agent_log("epoll_wait: %s", strerror(errno));
                        sleep(1);
                }
                for (int i = 0; i < n; i++) {
                        struct ew *w = evs[i].data.ptr;

                        if (w->fd < 0)
                                continue;

                        switch (w->kind) {
                        case EW_LISTEN: {
                                int fd = accept4(listen_w.fd, NULL, NULL, SOCK_CLOEXEC);

                                if (fd >= 0 && conn_w.fd < 0)
                                        conn_begin(fd);
                                else if (fd >= 0)
                                        close(fd);
                                break;
                        }
                        case EW_CONN:
                                if (evs[i].events & EPOLLOUT)
                                        flush_out();
                                if (conn_w.fd >= 0 &&
                                    (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                                        conn_readable();
                                break;
                        case EW_SIGNAL:
                                reap();
                                break;
                        case EW_CTR_OUT:
                        case EW_CTR_ERR:
                                ctr_output(w);
                                break;
                        case EW_ST_OUT:
                        case EW_ST_ERR:
                                st_readable(w);
                                break;
                        case EW_ST_IN:
                                st_writable(w);
                                break;
                        case EW_OOM:
                                ctr_oom_events(w);
                                break;
                        }
                }
                /* Streams and containers ended above are freed only now: later events of
                 * the same batch may point to them (their fds are -1 by then). */
                st_gc();
                ctr_gc();
                layer_gc();
        }
}
