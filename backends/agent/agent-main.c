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
 * Host mode (tests): runt-agent --listen-unix PATH | --fd N | --listen-tls ADDR:PORT
 * [--state-dir DIR] [--cgroup-root DIR] does everything but the PID 1 set-up, one
 * connection at a time (--fd: that one connection, then it exits). No cgroups unless
 * --cgroup-root names a cgroup v2 directory it may use. --layer-max-bytes caps one
 * LAYER_PUT (agent-layer.c).
 *
 * TLS (a Proxmox CT; tls-common.h): --listen-tls, or RUNT_AGENT_LISTEN, listens on TCP. The
 * credentials come from the environment (RUNT_AGENT_TLS_CERT, _KEY, _CA: base64 of DER) or
 * from --tls-cert/--tls-key/--tls-ca FILE (PEM or the same base64), which win. Those
 * variables leave the environment before anything else happens, in every mode. A client
 * must show runtd's certificate (CN "runtd", clientAuth, from the same CA), or the handshake
 * fails and nothing it sent is read. Handshakes go on beside the connection (at most
 * HS_MAX, each HS_TIMEOUT_MS), and one that succeeds replaces the connection: runtd
 * restarted, or lost the old connection without the agent seeing it end.
 *
 * CT mode (--ct, or PID 1 with RUNT_AGENT_TLS_KEY in the environment): the CT's entrypoint.
 * LXC made the rootfs, /proc, /sys, /dev and PVE the network: nothing to set up but the
 * state dir and, as PID 1, a cgroup leaf of its own (cgroups at /sys/fs/cgroup when PID 1
 * unless --cgroup-root says otherwise, "" for none). It reaps, listens as RUNT_AGENT_LISTEN says
 * (default 0.0.0.0:AG_TLS_PORT), and ends on SIGTERM, SIGINT or SIGPWR (how LXC stops a
 * CT) or a SHUTDOWN request, killing its containers first.
 */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
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

#include "agent-tls.h"
#include "agent.h"
#include "tls-common.h"

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

/* TLS: the server context, and the connection's session while it is one. */
static SSL_CTX *tls_ctx;
static uint8_t *tls_ca; /* the CA's certificate (DER), kept for TLS_RENEW */
static size_t tls_ca_len;
static SSL *conn_ssl;
static bool conn_ssl_failed;      /* a fatal error: no close_notify */
static uint32_t rd_want, wr_want; /* the epoll event a TLS read / write waits for */

/* A TLS connection in its handshake. */
#define HS_MAX        4
#define HS_TIMEOUT_MS 10000
struct hs {
        struct ew w;
        SSL *ssl;
        int64_t deadline_ms;
        char why[AGENT_TLS_WHY_MAX];
        char peer[64];
};
static struct hs hs_tab[HS_MAX];

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

/*
 * The connection's I/O, read(2)/write(2) shaped: through TLS when it is a TLS connection,
 * then EAGAIN leaves in rd_want / wr_want what to wait for (a TLS read may have to write).
 */
static ssize_t conn_io(bool wr, void *buf, size_t n)
{
        uint32_t *want = wr ? &wr_want : &rd_want;
        int r, e;

        if (!conn_ssl)
                return wr ? write(conn_w.fd, buf, n) : read(conn_w.fd, buf, n);
        *want = wr ? EPOLLOUT : EPOLLIN;
        if (n > INT32_MAX)
                n = INT32_MAX;
        ERR_clear_error();
        errno = 0;
        r = wr ? SSL_write(conn_ssl, buf, (int)n) : SSL_read(conn_ssl, buf, (int)n);
        if (r > 0)
                return r;
        e = SSL_get_error(conn_ssl, r);
        switch (e) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
                *want = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
                errno = EAGAIN;
                return -1;
        case SSL_ERROR_ZERO_RETURN:
                return 0;
        default:
                conn_ssl_failed = true;
                ERR_clear_error();
                errno = errno && e == SSL_ERROR_SYSCALL ? errno : EPROTO;
                return -1;
        }
}

/* The connection's epoll events for what it waits for now. */
static void conn_arm(void)
{
        if (conn_w.fd < 0)
                return;
        if (conn_ssl)
                ew_set(&conn_w, rd_want | (agent_outq() ? wr_want : 0));
        else
                ew_set(&conn_w, EPOLLIN | (agent_outq() ? EPOLLOUT : 0));
}

static void flush_out(void)
{
        while (conn_w.fd >= 0 && outq_off < outq_len) {
                ssize_t n = conn_io(true, outq + outq_off, outq_len - outq_off);

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
        conn_arm();
        if (throttled && agent_outq() < OUTQ_LOW) {
                throttled = false;
                ctr_throttle(false);
        }
}

void agent_send_simple(enum ag_kind kind, uint16_t op, uint32_t sid, const void *d, size_t n)
{
        struct ag_buf b;

        ag_buf_init(&b);
        ag_frame_begin(&b, kind, op, sid, 0);
        if (n)
                ag_put_raw(&b, d, n);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
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

/* A new connection on @fd; @ssl: its TLS session, the handshake done (or NULL). */
static void conn_begin(int fd, SSL *ssl)
{
        int fl = fcntl(fd, F_GETFL);

        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        conn_w.fd = fd;
        conn_w.events = 0;
        conn_ssl = ssl;
        conn_ssl_failed = false;
        rd_want = EPOLLIN;
        wr_want = EPOLLOUT;
        ag_reader_init(&rd);
        outq_len = outq_off = 0;
        ew_set(&conn_w, EPOLLIN);
        /* One connection at a time; TLS goes on listening: a new one replaces it. */
        if (listen_w.fd >= 0 && !tls_ctx)
                ew_set(&listen_w, 0);
        send_ready();
        ctr_resend();
}

static int64_t reopen_at_ms = -1;

static void conn_end(void)
{
        if (conn_w.fd < 0)
                return;
        if (conn_ssl) {
                if (!conn_ssl_failed) {
                        ERR_clear_error();
                        (void)SSL_shutdown(conn_ssl); /* close_notify, if the socket takes it */
                }
                ERR_clear_error();
                SSL_free(conn_ssl);
                conn_ssl = NULL;
        }
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

/*
 * TLS_RENEW: the next certificate and key, from runtd over the connection it authenticated.
 * The connections made from here on get them (a connection keeps the context it was made
 * with); the context they replace is freed once its last connection ends.
 */
/*
 * Whether certificate @der may replace the one served now: the same subject (this pod),
 * issued by the CA runtd gave at start (for a TLS server), and lasting longer. A mistake of
 * runtd's must not leave the pod with a certificate runtd will refuse.
 */
static bool renewal_ok(const uint8_t *der, size_t len, char *msg, size_t msize)
{
        const unsigned char *q = der, *cq = tls_ca;
        X509 *x = d2i_X509(NULL, &q, (long)len), *ca = d2i_X509(NULL, &cq, (long)tls_ca_len);
        X509 *cur = SSL_CTX_get0_certificate(tls_ctx);
        X509_STORE *st = X509_STORE_new();
        X509_STORE_CTX *vc = X509_STORE_CTX_new();
        bool ok = false;

        if (!x || !ca || !cur || !st || !vc || X509_STORE_add_cert(st, ca) != 1)
                snprintf(msg, msize, "the certificate does not parse");
        else if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_subject_name(cur)) != 0)
                snprintf(msg, msize, "the certificate names another subject");
        else if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(cur)) <= 0)
                snprintf(msg, msize, "the certificate does not last longer");
        else if (X509_STORE_CTX_init(vc, st, x, NULL) != 1 ||
                 X509_STORE_CTX_set_purpose(vc, X509_PURPOSE_SSL_SERVER) != 1 ||
                 X509_verify_cert(vc) != 1)
                snprintf(msg, msize, "the certificate does not chain to the CA: %s",
                         X509_verify_cert_error_string(X509_STORE_CTX_get_error(vc)));
        else
                ok = true;
        X509_STORE_CTX_free(vc);
        X509_STORE_free(st);
        X509_free(ca);
        X509_free(x);
        return ok;
}

static void op_tls_renew(const struct ag_hdr *h, const uint8_t *p)
{
        struct agent_tls_creds c = {0};
        struct ag_iter it;
        struct ag_attr a;
        char msg[256] = "";
        SSL_CTX *ctx;

        if (!tls_ctx) {
                agent_resp_err(h, EOPNOTSUPP, "this agent serves no TLS");
                return;
        }
        ag_iter_init(&it, p, h->len);
        while (ag_iter_next(&it, &a) == 1) {
                if (a.tag == AG_A_TLS_CERT && !c.cert) {
                        c.cert = malloc(a.len ? a.len : 1);
                        c.cert_len = a.len;
                        if (c.cert)
                                memcpy(c.cert, a.val, a.len);
                } else if (a.tag == AG_A_TLS_KEY && !c.key) {
                        c.key = malloc(a.len ? a.len : 1);
                        c.key_len = a.len;
                        if (c.key)
                                memcpy(c.key, a.val, a.len);
                }
        }
        c.ca = tls_ca;
        c.ca_len = tls_ca_len;
        ctx = c.cert && c.key && renewal_ok(c.cert, c.cert_len, msg, sizeof(msg))
                      ? agent_tls_ctx_new(&c, msg, sizeof(msg))
                      : NULL;
        c.ca = NULL; /* not the creds' to free */
        agent_tls_creds_done(&c);
        if (!ctx) {
                agent_resp_err(h, EINVAL, "TLS_RENEW: %s", msg[0] ? msg : "no certificate and key");
                return;
        }
        SSL_CTX_free(tls_ctx);
        tls_ctx = ctx;
        agent_log("TLS: a renewed certificate for the next connections");
        agent_resp_ok(h);
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
        case AG_OP_TLS_RENEW:
                op_tls_renew(h, p);
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

        n = conn_io(false, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
                conn_arm();
                return;
        }
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
        conn_arm();
}

static void reap(void)
{
        struct signalfd_siginfo si;
        pid_t pid;
        int st;

        while (read(sig_w.fd, &si, sizeof(si)) > 0) {
                /* CT mode: LXC stops a CT with a signal to its init. */
                if (si.ssi_signo != SIGCHLD && !shutting_down) {
                        agent_log("signal %u: killing the containers, exiting", si.ssi_signo);
                        ctr_kill_all();
                        sync();
                        shutting_down = true;
                }
        }
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
        conn_begin(fd, NULL);
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
        fprintf(stderr,
                "usage: runt-agent                     (as PID 1 of a pod VM)\n"
                "       runt-agent --ct                (as the entrypoint of a Proxmox CT)\n"
                "       runt-agent --listen-unix PATH | --fd N | --listen-tls ADDR:PORT\n"
                "                  [--tls-cert FILE --tls-key FILE --tls-ca FILE]\n"
                "                  [--state-dir DIR] [--cgroup-root DIR] [--layer-max-bytes N]\n"
                "TLS credentials: the environment's " AG_TLS_ENV_CERT ", " AG_TLS_ENV_KEY
                ",\n" AG_TLS_ENV_CA " (base64 of DER), or the files (PEM or the same base64).\n"
                "ADDR:PORT: IPV4:PORT or [IPV6]:PORT; in CT mode " AG_TLS_ENV_LISTEN
                " (default 0.0.0.0:%d).\n",
                AG_TLS_PORT);
        return 2;
}

/* ---- TLS ---- */

static void hs_drop(struct hs *h, const char *why)
{
        if (why)
                agent_log("TLS connection from %s refused: %s", h->peer, why);
        if (h->ssl) {
                ERR_clear_error();
                SSL_free(h->ssl);
        }
        h->ssl = NULL;
        ew_close(&h->w);
}

/* Moves handshake @h on; once it is done, its connection replaces the host connection. */
static void hs_step(struct hs *h)
{
        char why[256];
        int r, e;

        ERR_clear_error();
        r = SSL_do_handshake(h->ssl);
        if (r == 1) {
                int fd = h->w.fd;
                SSL *ssl = h->ssl;

                ew_set(&h->w, 0);
                h->w.fd = -1;
                h->ssl = NULL;
                SSL_set_app_data(ssl, NULL); /* h->why: the slot's, reused */
                if (conn_w.fd >= 0) {
                        agent_log("runtd connected from %s: it replaces the connection", h->peer);
                        conn_end();
                }
                conn_begin(fd, ssl);
                return;
        }
        e = SSL_get_error(h->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                ew_set(&h->w, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
                return;
        }
        hs_drop(h, agent_tls_why(h->ssl, why, sizeof(why)));
}

static void tcp_tune(int fd)
{
        int one = 1, idle = 30, intvl = 10, cnt = 3;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static void addr_str(const struct sockaddr_storage *sa, char *buf, size_t size)
{
        char a[INET6_ADDRSTRLEN] = "?";

        if (sa->ss_family == AF_INET6) {
                const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

                inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
                snprintf(buf, size, "[%s]:%u", a, ntohs(s6->sin6_port));
        } else {
                const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

                inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
                snprintf(buf, size, "%s:%u", a, ntohs(s4->sin_port));
        }
}

/* A connection on the TLS listener: a handshake slot (the oldest one goes when all are busy). */
static void tls_accept(void)
{
        struct sockaddr_storage sa = {0};
        socklen_t sl = sizeof(sa);
        struct hs *h = NULL;
        int fd;

        fd = accept4(listen_w.fd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
                return;
        for (int i = 0; i < HS_MAX; i++) {
                if (hs_tab[i].w.fd < 0) {
                        h = &hs_tab[i];
                        break;
                }
                if (!h || hs_tab[i].deadline_ms < h->deadline_ms)
                        h = &hs_tab[i];
        }
        if (h->w.fd >= 0)
                hs_drop(h, "too many handshakes at once");
        addr_str(&sa, h->peer, sizeof(h->peer));
        h->why[0] = '\0';
        h->ssl = SSL_new(tls_ctx);
        if (!h->ssl || SSL_set_fd(h->ssl, fd) != 1) {
                agent_log("TLS connection from %s: out of memory", h->peer);
                SSL_free(h->ssl);
                h->ssl = NULL;
                close(fd);
                return;
        }
        SSL_set_app_data(h->ssl, h->why);
        SSL_set_accept_state(h->ssl);
        tcp_tune(fd);
        h->w = (struct ew){.kind = EW_TLS_HS, .obj = h, .fd = fd};
        h->deadline_ms = agent_mono_ms() + HS_TIMEOUT_MS;
        hs_step(h);
}

/* Handshakes past their time go; the ms until the next deadline, or -1. */
static int hs_timers(void)
{
        int64_t now = agent_mono_ms(), next = -1;

        for (int i = 0; i < HS_MAX; i++) {
                struct hs *h = &hs_tab[i];

                if (h->w.fd < 0)
                        continue;
                if (now >= h->deadline_ms) {
                        hs_drop(h, "no handshake in time");
                        continue;
                }
                if (next < 0 || h->deadline_ms - now < next)
                        next = h->deadline_ms - now;
        }
        return (int)next;
}

/* Listens on TCP @spec, "IPV4:PORT" or "[IPV6]:PORT": the fd or -errno (@msg filled). */
static int listen_tcp(const char *spec, char *msg, size_t msize)
{
        struct sockaddr_storage ss = {0};
        socklen_t sl = sizeof(ss);
        char host[INET6_ADDRSTRLEN + 1], bound[80], *end;
        const char *port, *close_br;
        unsigned long pn;
        int fd, one = 1, zero = 0;

        if (spec[0] == '[') {
                close_br = strchr(spec, ']');
                if (!close_br || close_br[1] != ':' ||
                    (size_t)(close_br - spec - 1) >= sizeof(host))
                        goto bad;
                snprintf(host, sizeof(host), "%.*s", (int)(close_br - spec - 1), spec + 1);
                port = close_br + 2;
        } else {
                port = strrchr(spec, ':');
                if (!port || (size_t)(port - spec) >= sizeof(host))
                        goto bad;
                snprintf(host, sizeof(host), "%.*s", (int)(port - spec), spec);
                port++;
        }
        errno = 0;
        pn = strtoul(port, &end, 10);
        if (!port[0] || *end || errno || pn > 65535)
                goto bad;
        if (spec[0] == '[') {
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

                s6->sin6_family = AF_INET6;
                s6->sin6_port = htons((uint16_t)pn);
                if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
                        goto bad;
                sl = sizeof(*s6);
        } else {
                struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

                s4->sin_family = AF_INET;
                s4->sin_port = htons((uint16_t)pn);
                if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
                        goto bad;
                sl = sizeof(*s4);
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                snprintf(msg, msize, "socket: %s", strerror(errno));
                return -errno;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ss.ss_family == AF_INET6) /* [::] takes IPv4 too */
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 16) < 0) {
                int r = -errno;

                snprintf(msg, msize, "listen on %s: %s", spec, strerror(errno));
                close(fd);
                return r;
        }
        sl = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        addr_str(&ss, bound, sizeof(bound));
        agent_log("listening on %s (TLS)", bound); /* the tests read the port from here */
        return fd;
bad:
        snprintf(msg, msize, "listen address '%s': want IPV4:PORT or [IPV6]:PORT", spec);
        return -EINVAL;
}

/*
 * Makes tls_ctx: @c, then the files @files[0..2] (cert, key, CA) that are not NULL over it.
 * Frees @c's contents. 0 or -1 (logged).
 */
static int tls_setup(struct agent_tls_creds *c, const char *const files[3])
{
        static const char what[3] = {'c', 'k', 'c'};
        uint8_t **dst[3] = {&c->cert, &c->key, &c->ca};
        size_t *dst_len[3] = {&c->cert_len, &c->key_len, &c->ca_len};
        char msg[512];
        int r = 0;

        /* No openssl.cnf (a CT's image has its own, or none), no modules to load. */
        OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
        for (int i = 0; i < 3 && r == 0; i++) {
                uint8_t *d = NULL;
                size_t n = 0;

                if (!files[i])
                        continue;
                r = agent_tls_file_load(files[i], what[i], &d, &n, msg, sizeof(msg));
                if (r < 0)
                        break;
                if (i == 1 && *dst[i])
                        explicit_bzero(*dst[i], *dst_len[i]);
                free(*dst[i]);
                *dst[i] = d;
                *dst_len[i] = n;
        }
        if (r == 0) {
                tls_ctx = agent_tls_ctx_new(c, msg, sizeof(msg));
                r = tls_ctx ? 0 : -1;
        }
        if (r == 0) {
                /* kept: the CA stays, a renewal brings only the certificate and key */
                tls_ca = c->ca;
                tls_ca_len = c->ca_len;
                c->ca = NULL;
        }
        agent_tls_creds_done(c);
        if (r < 0) {
                agent_log("TLS: %s", msg);
                return -1;
        }
        return 0;
}

/* CT mode, PID 1: the agent moves to a leaf cgroup of its own, so that the root may hand
 * controllers down to the pod's (cgroup v2: no processes in a cgroup with children's
 * controllers). */
static void ct_cgroup_leaf(void)
{
        char leaf[PATH_MAX];

        snprintf(leaf, sizeof(leaf), "%s/agent", agent_cfg.cgroup_root);
        if (mkdir(leaf, 0755) < 0 && errno != EEXIST)
                return;
        if (cg_write(leaf, "cgroup.procs", "0") < 0)
                agent_log("cgroup %s: cannot move there", leaf);
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
        const char *listen_path = NULL, *listen_tls = NULL, *files[3] = {NULL, NULL, NULL};
        struct agent_tls_creds creds = {0};
        bool ct_flag = false, cgroup_set = false, has_key;
        char msg[512] = "", def_listen[80];
        int conn_fd = -1, env_r;
        sigset_t mask;

        /*
         * First of all, the TLS secrets leave the environment (and its bytes in memory that
         * /proc/self/environ shows), whatever the mode: no child may see them.
         */
        has_key = getenv(AG_TLS_ENV_KEY) != NULL;
        env_r = agent_tls_env_take(&creds, msg, sizeof(msg));

        agent_cfg.pid1 = getpid() == 1;
        snprintf(agent_cfg.state_dir, sizeof(agent_cfg.state_dir), "/run/runt-agent");
        agent_cfg.layer_max_bytes = AG_LAYER_MAX_BYTES;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

                if (strcmp(a, "--ct") == 0) {
                        ct_flag = true;
                        continue;
                }
                if (agent_cfg.pid1 && a[0] != '-')
                        continue; /* kernel command line leftovers */
                if (!v)
                        return usage();
                if (strcmp(a, "--listen-unix") == 0)
                        listen_path = v;
                else if (strcmp(a, "--fd") == 0)
                        conn_fd = atoi(v);
                else if (strcmp(a, "--listen-tls") == 0)
                        listen_tls = v;
                else if (strcmp(a, "--tls-cert") == 0)
                        files[0] = v;
                else if (strcmp(a, "--tls-key") == 0)
                        files[1] = v;
                else if (strcmp(a, "--tls-ca") == 0)
                        files[2] = v;
                else if (strcmp(a, "--state-dir") == 0)
                        snprintf(agent_cfg.state_dir, sizeof(agent_cfg.state_dir), "%s", v);
                else if (strcmp(a, "--cgroup-root") == 0)
                        cgroup_set = true,
                        snprintf(agent_cfg.cgroup_root, sizeof(agent_cfg.cgroup_root), "%s", v);
                else if (strcmp(a, "--layer-max-bytes") == 0)
                        agent_cfg.layer_max_bytes = strtoull(v, NULL, 10);
                else
                        return usage();
                i++;
        }
        /* A CT's PVE may start the entrypoint without arguments: its environment says. */
        agent_cfg.ct = ct_flag || (agent_cfg.pid1 && has_key);
        if (agent_cfg.ct) {
                agent_cfg.pid1 = false;
                /* a copy: tls_setup frees creds */
                if (creds.listen)
                        snprintf(def_listen, sizeof(def_listen), "%s", creds.listen);
                else
                        snprintf(def_listen, sizeof(def_listen), "0.0.0.0:%d", AG_TLS_PORT);
                if (!listen_tls)
                        listen_tls = def_listen;
        }
        /* Not as a CT's entrypoint run by hand on a host: that root is the host's. */
        if ((agent_cfg.pid1 || (agent_cfg.ct && getpid() == 1)) && !cgroup_set)
                snprintf(agent_cfg.cgroup_root, sizeof(agent_cfg.cgroup_root), "/sys/fs/cgroup");
        if ((!agent_cfg.pid1 && !listen_path && conn_fd < 0 && !listen_tls) ||
            !agent_cfg.layer_max_bytes) {
                agent_tls_creds_done(&creds);
                return usage();
        }
        if (listen_tls) {
                if (env_r < 0) {
                        agent_log("TLS: %s", msg);
                        agent_tls_creds_done(&creds);
                        return 1;
                }
                if (tls_setup(&creds, files) < 0)
                        return 1;
                /* Nothing of this process (its memory, its environ) is for anyone else. */
                prctl(PR_SET_DUMPABLE, 0);
        }

        agent_idmap_init();
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        if (agent_cfg.ct) {
                sigaddset(&mask, SIGTERM);
                sigaddset(&mask, SIGINT);
                sigaddset(&mask, SIGPWR);
        }
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (agent_cfg.pid1)
                pid1_setup();
        else
                prctl(PR_SET_CHILD_SUBREAPER, 1);
        make_boot_id();
        if (agent_cfg.ct)
                mkdir_p(agent_cfg.state_dir);
        mkdir(agent_cfg.state_dir, 0700);
        if (agent_cfg.ct && agent_cfg.cgroup_root[0] && getpid() == 1)
                ct_cgroup_leaf();
        if (layer_init() < 0)
                agent_log("no image layers over the channel: %s/layers unusable",
                          agent_cfg.state_dir);
        if (agent_cfg.cgroup_root[0] && ctr_setup_cgroups() < 0)
                agent_log("cgroups at %s unusable: no limits", agent_cfg.cgroup_root);

        for (int i = 0; i < HS_MAX; i++)
                hs_tab[i].w.fd = -1;
        epfd = epoll_create1(EPOLL_CLOEXEC);
        sig_w.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (epfd < 0 || sig_w.fd < 0) {
                agent_log("epoll/signalfd: %s", strerror(errno));
                if (!agent_cfg.pid1)
                        return 1;
        }
        ew_set(&sig_w, EPOLLIN);
        if (listen_tls) {
                listen_w.fd = listen_tcp(listen_tls, msg, sizeof(msg));
                if (listen_w.fd < 0) {
                        agent_log("%s", msg);
                        return 1;
                }
                ew_set(&listen_w, EPOLLIN);
        } else if (listen_path) {
                listen_w.fd = listen_unix(listen_path);
                if (listen_w.fd < 0) {
                        agent_log("listen %s: %s", listen_path, strerror(-listen_w.fd));
                        return 1;
                }
                ew_set(&listen_w, EPOLLIN);
        } else if (conn_fd >= 0) {
                exit_after_conn = true;
                conn_begin(conn_fd, NULL);
        } else {
                port_open();
        }
        agent_tls_creds_done(&creds);

        for (;;) {
                struct epoll_event evs[64];
                int timeout = st_timers(), n;

                if (shutting_down)
                        return 0;
                if (exit_after_conn && conn_w.fd < 0)
                        return 0;
                if (tls_ctx) {
                        int t = hs_timers();

                        if (t >= 0 && (timeout < 0 || t < timeout))
                                timeout = t;
                        /* Decrypted bytes OpenSSL holds are no event for epoll. */
                        if (conn_ssl && SSL_pending(conn_ssl) > 0)
                                timeout = 0;
                }
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
                                int fd;

                                if (tls_ctx) {
                                        tls_accept();
                                        break;
                                }
                                fd = accept4(listen_w.fd, NULL, NULL, SOCK_CLOEXEC);
                                if (fd >= 0 && conn_w.fd < 0)
                                        conn_begin(fd, NULL);
                                else if (fd >= 0)
                                        close(fd);
                                break;
                        }
                        case EW_TLS_HS:
                                hs_step(w->obj);
                                break;
                        case EW_CONN:
                                /* TLS: a read may wait for POLLOUT and a write for POLLIN. */
                                if (evs[i].events & EPOLLOUT || conn_ssl)
                                        flush_out();
                                if (conn_w.fd >= 0 &&
                                    (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR) || conn_ssl))
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
                if (conn_ssl && SSL_pending(conn_ssl) > 0)
                        conn_readable();
                /* Streams and containers ended above are freed only now: later events of
                 * the same batch may point to them (their fds are -1 by then). */
                st_gc();
                ctr_gc();
                layer_gc();
        }
}
