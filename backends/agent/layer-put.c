/*
 * runtd's side of LAYER_PUT (layer-put.h): a layer store directory walked into records
 * (proto.h, IMAGE LAYERS) written to the stream's stdin socket, which the client's I/O
 * thread relays within the agent's credit; the agent's verdict comes back as the stream's
 * exit code (0 or an errno) and its reason on the stream's stderr.
 *
 * The walk is sh_walk_tree_at (by directory fd, heap stack, any depth, nothing followed):
 * the layer store is runtd's, but its trees are the image's.
 */
#include "layer-put.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <poll.h>
#include <search.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fswalk.h"

#define FLUSH_AT   (256u << 10) /* records buffered before they go to the socket */
#define READ_CHUNK (64u << 10)
#define SLICE_MS   1000u /* how often a wait looks whether the agent took bytes */

/* ag_layer_put_set_stall_ms: how long a transfer may make no progress. */
static atomic_uint stall_ms = AG_LAYER_STALL_MS;

void ag_layer_put_set_stall_ms(unsigned ms)
{
        atomic_store(&stall_ms, ms ? ms : AG_LAYER_STALL_MS);
}

unsigned ag_layer_put_stall_ms(void)
{
        return atomic_load(&stall_ms);
}

static long long now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Bytes written to @fd that its reader (the client's relay) has not taken yet. */
static int queued(int fd)
{
        int n = 0;

        return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : -1;
}

/*
 * Waits for @events on @fd as long as there is progress: the stream's stdin @in_fd still
 * draining (the agent granting credit) counts as progress, and @stall without any ends the
 * wait with -ETIMEDOUT. 0 once @fd is ready.
 */
static int wait_progress(int fd, short events, int in_fd, unsigned stall)
{
        long long last = now_ms();
        int q = in_fd >= 0 ? queued(in_fd) : -1;

        for (;;) {
                struct pollfd pfd = {.fd = fd, .events = events};
                long long left = last + stall - now_ms();
                int n, nq;

                if (left <= 0)
                        return -ETIMEDOUT;
                n = poll(&pfd, 1, (int)(left < SLICE_MS ? left : SLICE_MS));
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n > 0)
                        return 0;
                nq = in_fd >= 0 ? queued(in_fd) : -1;
                if (nq != q) {
                        q = nq;
                        last = now_ms();
                }
        }
}

/* An inode with more than one name: the first name sent. */
struct link_seen {
        dev_t dev;
        ino_t ino;
        char *path;
};

struct put_walk {
        int fd; /* the stream's stdin (blocking) */
        unsigned stall_ms;
        bool stalled; /* the agent took nothing for stall_ms */
        struct ag_buf b;
        void *links;    /* tsearch of struct link_seen */
        bool peer_gone; /* the agent ended the stream: its verdict says why */
        bool failed;    /* a callback failed, its message in err */
        uint8_t *chunk; /* READ_CHUNK bytes to read content into */
        const char *hex;
        struct sh_error *err;
};

static int cmp_link(const void *a, const void *b)
{
        const struct link_seen *x = a, *y = b;

        if (x->dev != y->dev)
                return x->dev < y->dev ? -1 : 1;
        return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static void free_link(void *p)
{
        struct link_seen *l = p;

        free(l->path);
        free(l);
}

static int flush(struct put_walk *w)
{
        size_t off = 0;

        if (w->b.err)
                return w->b.err;
        while (off < w->b.len) {
                ssize_t n =
                        send(w->fd, w->b.data + off, w->b.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        /* The agent withholds its credit: wait, but not for ever. */
                        int r = wait_progress(w->fd, POLLOUT, w->fd, w->stall_ms);

                        if (r == -ETIMEDOUT) {
                                w->stalled = true;
                                return sh_err(w->err, r,
                                              "layer %.12s: the agent took no data for %u ms",
                                              w->hex, w->stall_ms);
                        }
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n <= 0) {
                        w->peer_gone = true;
                        return -EPIPE;
                }
                off += (size_t)n;
        }
        ag_buf_reset(&w->b);
        return 0;
}

static int fail(struct put_walk *w, int r, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int fail(struct put_walk *w, int r, const char *path, const char *fmt, ...)
{
        char what[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        w->failed = true;
        return sh_err(w->err, r, "layer %.12s: '%.200s': %s", w->hex, path, what);
}

/* @e's xattrs (the host's SELinux label is not the image's: left out). */
static int read_xattrs(struct put_walk *w, int dfd, const char *name, const char *path,
                       struct ag_lent *e)
{
        _cleanup_free_ char *names = NULL;
        char proc[NAME_MAX + 64];
        ssize_t n;

        snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dfd, name);
        n = llistxattr(proc, NULL, 0);
        if (n < 0 && (errno == ENOTSUP || errno == ENODATA))
                return 0;
        if (n < 0)
                return fail(w, -errno, path, "listxattr: %s", strerror(errno));
        if (n == 0)
                return 0;
        names = malloc((size_t)n);
        if (!names)
                return fail(w, -ENOMEM, path, "out of memory");
        n = llistxattr(proc, names, (size_t)n);
        if (n < 0)
                return fail(w, -errno, path, "listxattr: %s", strerror(errno));
        for (char *x = names; x < names + n; x += strlen(x) + 1) {
                struct ag_xattr *v;
                ssize_t len;

                if (strcmp(x, "security.selinux") == 0)
                        continue;
                len = lgetxattr(proc, x, NULL, 0);
                if (len < 0)
                        return fail(w, -errno, path, "getxattr %s: %s", x, strerror(errno));
                v = realloc(e->xattrs, (e->n_xattrs + 1) * sizeof(*v));
                if (!v)
                        return fail(w, -ENOMEM, path, "out of memory");
                e->xattrs = v;
                v = &e->xattrs[e->n_xattrs];
                v->name = strdup(x);
                v->value = malloc(len ? (size_t)len : 1);
                if (!v->name || !v->value) {
                        free(v->name);
                        free(v->value);
                        return fail(w, -ENOMEM, path, "out of memory");
                }
                e->n_xattrs++;
                len = lgetxattr(proc, x, v->value, (size_t)len);
                if (len < 0)
                        return fail(w, -errno, path, "getxattr %s: %s", x, strerror(errno));
                v->len = (size_t)len;
        }
        return 0;
}

/* The content of regular file @name: exactly the size the header said. */
static int send_content(struct put_walk *w, int dfd, const char *name, const char *path,
                        const struct stat *st)
{
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
        uint64_t left = (uint64_t)st->st_size;
        struct stat now;
        int r;

        if (fd < 0)
                return fail(w, -errno, path, "open: %s", strerror(errno));
        if (fstat(fd, &now) < 0 || now.st_ino != st->st_ino || now.st_dev != st->st_dev)
                return fail(w, -ESTALE, path, "replaced while sent");
        while (left) {
                size_t want = left < READ_CHUNK ? (size_t)left : READ_CHUNK;
                ssize_t n = read(fd, w->chunk, want);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return fail(w, n < 0 ? -errno : -ESTALE, path, "read: %s",
                                    n < 0 ? strerror(errno) : "shorter than its size");
                ag_put_raw(&w->b, w->chunk, (size_t)n);
                if (w->b.err)
                        return fail(w, w->b.err, path, "out of memory");
                left -= (uint64_t)n;
                if (w->b.len >= FLUSH_AT && (r = flush(w)) < 0)
                        return r;
        }
        return 0;
}

static int on_entry(void *ud, int dfd, const char *name, const char *path, const struct stat *st)
{
        struct put_walk *w = ud;
        struct ag_lent e = {
                .path = (char *)path,
                .mode = (uint32_t)st->st_mode & 07777,
                .uid = (uint32_t)st->st_uid,
                .gid = (uint32_t)st->st_gid,
                .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec,
        };
        char target[PATH_MAX];
        int r = 0;

        if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
                struct link_seen key = {.dev = st->st_dev, .ino = st->st_ino}, *l, **found;

                found = tfind(&key, &w->links, cmp_link);
                if (found) {
                        e.type = AG_LT_HARDLINK;
                        e.link = (*found)->path;
                        ag_lent_put(&w->b, &e);
                        return w->b.len >= FLUSH_AT ? flush(w) : 0;
                }
                l = calloc(1, sizeof(*l));
                if (l)
                        l->path = strdup(path);
                if (!l || !l->path || !tsearch(l, &w->links, cmp_link)) {
                        if (l)
                                free_link(l);
                        return fail(w, -ENOMEM, path, "out of memory");
                }
                l->dev = st->st_dev;
                l->ino = st->st_ino;
        }
        switch (st->st_mode & S_IFMT) {
        case S_IFDIR:
                e.type = AG_LT_DIR;
                break;
        case S_IFREG:
                e.type = AG_LT_REG;
                e.size = (uint64_t)st->st_size;
                break;
        case S_IFLNK: {
                ssize_t n = readlinkat(dfd, name, target, sizeof(target));

                if (n < 0)
                        return fail(w, -errno, path, "readlink: %s", strerror(errno));
                if ((size_t)n >= sizeof(target))
                        return fail(w, -ENAMETOOLONG, path, "symlink target too long");
                target[n] = '\0';
                e.type = AG_LT_SYMLINK;
                e.link = target;
                break;
        }
        case S_IFCHR:
        case S_IFBLK:
                e.type = S_ISCHR(st->st_mode) ? AG_LT_CHAR : AG_LT_BLOCK;
                e.rdev_major = major(st->st_rdev);
                e.rdev_minor = minor(st->st_rdev);
                break;
        case S_IFIFO:
                e.type = AG_LT_FIFO;
                break;
        case S_IFSOCK:
                e.type = AG_LT_SOCKET;
                break;
        default:
                return fail(w, -EINVAL, path, "unknown file type %o", st->st_mode & S_IFMT);
        }
        r = read_xattrs(w, dfd, name, path, &e);
        if (r == 0) {
                ag_lent_put(&w->b, &e);
                if (w->b.err)
                        r = fail(w, w->b.err, path, "its record: %s", strerror(-w->b.err));
        }
        for (size_t i = 0; i < e.n_xattrs; i++) {
                free(e.xattrs[i].name);
                free(e.xattrs[i].value);
        }
        free(e.xattrs);
        if (r == 0 && e.type == AG_LT_REG)
                r = send_content(w, dfd, name, path, st);
        if (r == 0 && w->b.len >= FLUSH_AT)
                r = flush(w);
        return r;
}

/* The chain id's hex, or NULL. */
static const char *chain_hex(const char *chain_id)
{
        const char *h = strncmp(chain_id, "sha256:", 7) == 0 ? chain_id + 7 : chain_id;
        size_t i;

        for (i = 0; h[i]; i++)
                if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
                        return NULL;
        return i == 64 ? h : NULL;
}

/* The errnos an agent's verdict may carry to runtd's callers; anything else is -EIO. */
static int verdict_errno(int code)
{
        static const int ok[] = {EPROTO, EINVAL, EPERM,        EFBIG,  ENOSPC, ENOENT,
                                 EEXIST, ENOMEM, ENAMETOOLONG, EDQUOT, ENOSYS, EIO};

        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
                if (code == ok[i])
                        return -code;
        return -EIO;
}

/* The answer's LAYER_DIR (malloc'd) and PRESENT. */
static int answer(const uint8_t *p, size_t len, const char *hex, char **ret_dir, bool *ret_present,
                  struct sh_error *err)
{
        int64_t present = 0;
        char *dir = NULL;

        if (ag_find_str(p, len, AG_A_LAYER_DIR, &dir) < 0 || dir[0] != '/') {
                free(dir);
                return sh_err(err, -EPROTO, "layer %.12s: the agent named no directory", hex);
        }
        (void)ag_find_i64(p, len, AG_A_PRESENT, &present);
        *ret_dir = dir;
        *ret_present = present != 0;
        return 0;
}

/* Walks @dir into the stream; then the verdict. */
static int put_tree(const struct ag_exec_fds *fds, const char *hex, const char *dir,
                    struct sh_error *err)
{
        struct put_walk w = {
                .fd = fds->stdin_fd, .stall_ms = atomic_load(&stall_ms), .hex = hex, .err = err};
        _cleanup_close_ int rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        char msg[512];
        size_t mlen = 0;
        int r, code;
        ssize_t n;

        if (rootfd < 0)
                return sh_err(err, -errno, "layer %.12s: open %s: %s", hex, dir, strerror(errno));
        w.chunk = malloc(READ_CHUNK);
        if (!w.chunk)
                return sh_err(err, -ENOMEM, "layer %.12s: out of memory", hex);
        ag_buf_init(&w.b);
        /* "." of the directory: its entry (the root) has an fd to be named through. */
        r = sh_walk_tree_at(rootfd, ".", on_entry, &w);
        if (r == 0) {
                ag_lent_put_end(&w.b);
                r = flush(&w);
        }
        tdestroy(w.links, free_link);
        ag_buf_done(&w.b);
        free(w.chunk);
        if (r < 0 && !w.peer_gone) {
                /* Our side failed: the stream is abandoned (exit_fd first, so that the
                 * agent hears CLOSE ALL, not the end of a stream without its end mark). */
                if (!w.failed && !w.stalled)
                        sh_err(err, r, "layer %.12s: walking %s: %s", hex, dir, strerror(-r));
                return r;
        }
        shutdown(fds->stdin_fd, SHUT_WR);

        /* The verdict: after the last bytes drained, the agent has stall_ms to give it. */
        r = wait_progress(fds->exit_fd, POLLIN, fds->stdin_fd, w.stall_ms);
        if (r == -ETIMEDOUT)
                return sh_err(err, r, "layer %.12s: no verdict from the agent in %u ms", hex,
                              w.stall_ms);
        n = recv(fds->exit_fd, &code, sizeof(code), MSG_DONTWAIT);
        if (n != (ssize_t)sizeof(code))
                return sh_err(err, -ECONNRESET, "layer %.12s: the connection to the agent went",
                              hex);
        if (code == 0)
                return 0;
        while (mlen < sizeof(msg) - 1 &&
               (n = recv(fds->stderr_fd, msg + mlen, sizeof(msg) - 1 - mlen, 0)) > 0)
                mlen += (size_t)n;
        msg[mlen] = '\0';
        for (char *m = msg; *m; m++)
                if ((unsigned char)*m < 0x20 || *m == 0x7f)
                        *m = ' '; /* the agent's words go into runtd's log */
        return sh_err(err, verdict_errno(code), "layer %.12s: the agent refused it: %s", hex,
                      mlen ? msg : strerror(code));
}

static void close_fds(struct ag_exec_fds *fds)
{
        /* exit_fd first: the client abandons the stream rather than end its stdin. */
        int *order[] = {&fds->exit_fd, &fds->stdout_fd, &fds->stderr_fd, &fds->stdin_fd};

        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
                if (*order[i] >= 0)
                        close(*order[i]);
                *order[i] = -1;
        }
}

/*
 * LAYER_PUT's stream opened. A PUT of the same layer may run before this one, and the agent
 * answers once that one ended: every stall_ms without an answer the agent is PINGed, and the
 * wait goes on (a new request, the old one abandoned) while it answers those; a PUT that
 * ended meanwhile makes LAYER_HAS say PRESENT to the new one. -ETIMEDOUT once it does not.
 */
static int open_put(struct ag_client *c, const struct ag_buf *b, const char *hex,
                    struct ag_exec_fds *fds, uint8_t **resp, size_t *len, struct sh_error *err)
{
        unsigned stall = atomic_load(&stall_ms);

        for (;;) {
                int r = ag_client_open_stream(c, AG_OP_LAYER_PUT, b, stall, fds, resp, len, err);

                if (r != -ETIMEDOUT)
                        return r;
                if (err)
                        sh_err_clear(err);
                r = ag_client_call(c, AG_OP_PING, NULL, stall, NULL, NULL, err);
                if (r < 0)
                        return sh_err(err, r == -ETIMEDOUT ? -ETIMEDOUT : r,
                                      "layer %.12s: the agent answers neither the PUT nor a "
                                      "PING in %u ms",
                                      hex, stall);
        }
}

static int layer_put(struct ag_client *c, const char *chain_id, const char *dir, char **ret_dir,
                     struct sh_error *err)
{
        _cleanup_free_ uint8_t *resp = NULL;
        _cleanup_free_ char *agent_dir = NULL;
        struct ag_exec_fds fds = {.stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .exit_fd = -1};
        const char *hex = chain_hex(chain_id);
        bool present = false;
        struct ag_buf b;
        size_t len = 0;
        int r;

        if (!hex)
                return sh_err(err, -EINVAL, "layer '%.80s': not a chain id", chain_id);
        ag_buf_init(&b);
        ag_put_str(&b, AG_A_ID, hex);
        r = ag_client_call(c, AG_OP_LAYER_HAS, &b, AG_CLIENT_OPEN_TIMEOUT_MS, &resp, &len, err);
        if (r == 0)
                r = answer(resp, len, hex, &agent_dir, &present, err);
        if (r == 0 && !present) {
                free(resp);
                resp = NULL;
                free(agent_dir);
                agent_dir = NULL;
                r = open_put(c, &b, hex, &fds, &resp, &len, err);
                if (r == 0)
                        r = answer(resp, len, hex, &agent_dir, &present, err);
                if (r == 0 && !present)
                        r = put_tree(&fds, hex, dir, err);
                close_fds(&fds);
        }
        ag_buf_done(&b);
        if (r < 0)
                return r;
        if (ret_dir)
                *ret_dir = TAKE_PTR(agent_dir);
        return 0;
}

int ag_layer_put(struct ag_client *c, const char *chain_id, const char *dir, struct sh_error *err)
{
        return layer_put(c, chain_id, dir, NULL, err);
}

int ag_layers_put(struct ag_client *c, const char *const *chain_ids, const char *const *dirs,
                  char ***ret_lowers, struct sh_error *err)
{
        _cleanup_strv_ char **lowers = NULL;
        size_t n = 0;
        int r;

        while (chain_ids[n] && dirs[n])
                n++;
        if (chain_ids[n] || dirs[n])
                return sh_err(err, -EINVAL, "layers: %zu chain ids for a different number of dirs",
                              n);
        lowers = calloc(n + 1, sizeof(*lowers));
        if (!lowers)
                return sh_err(err, -ENOMEM, "layers: out of memory");
        for (size_t i = 0; i < n; i++) {
                r = layer_put(c, chain_ids[i], dirs[i], &lowers[i], err);
                if (r < 0)
                        return sh_err_prefix(err, r, "layer %zu of %zu", i + 1, n);
        }
        *ret_lowers = TAKE_PTR(lowers);
        return 0;
}
