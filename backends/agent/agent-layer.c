/*
 * runt-agent: image layers sent over the channel (proto.h, IMAGE LAYERS): LAYER_HAS and
 * LAYER_PUT, for a box that shares no file system with runtd's layer store (a Proxmox CT).
 *
 * A PUT writes its records into <state_dir>/layers/<id>.tmp-XXXXXX as they come, in the
 * loop (one DATA frame at a time, so nothing waits long), and renames that directory to
 * layers/<id> once the host ended the stream with the end mark and the file system is
 * synced. The host is not trusted with paths: every entry is made with *at() calls from its
 * parent directory, which is opened beneath the temp dir with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): a symlink the layer made
 * is never followed (a legitimate stream never goes through one: the host walks real
 * directories), and no final component is followed either (O_EXCL creation, *NOFOLLOW
 * metadata calls). Paths longer than PATH_MAX are opened in steps, each beneath the last.
 * Device nodes other than the overlay whiteout (char 0/0) and overlay xattrs other than
 * trusted.overlay.opaque=y on a directory are refused. A failed or abandoned PUT removes
 * its temp dir (by fd: sh_rm_rf_at).
 *
 * In a user namespace that maps only some ids (an unprivileged CT, agent-idmap.c) the
 * opaque mark is written as user.overlay.opaque (the agent mounts overlay with userxattr
 * there), an image's own user.overlay.* attributes are dropped (overlay would act on them
 * there), other trusted.* attributes cannot be set and are dropped (logged), and an owner
 * outside the map becomes the overflow id (65534), as the kernel shows an unmapped owner.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "fswalk.h"

struct dlevel {
        size_t len; /* of the directory's path: a prefix of dpath */
        int64_t mtime_ns;
};

struct lput {
        struct lput *next;
        bool dead; /* ended; freed by layer_gc */
        char id[65];
        uint32_t sid, req_id;
        bool active;  /* receiving; else waiting for another PUT of the same layer */
        char tmp[96]; /* <id>.tmp-XXXXXX in layers/, "" when none */
        int root_fd;
        struct ag_lreader rd;
        uint64_t recv_left; /* the host's credit */
        uint32_t consumed;  /* taken and not yet granted back */
        char *par_path;     /* the last parent directory opened, and its fd */
        int par_fd;
        int file_fd; /* the regular file being written */
        /* Directories whose mtime is set once the stream left them (their entries change
         * it): nested prefixes of dpath, the deepest last. */
        char *dpath;
        size_t dpath_cap;
        struct dlevel *dl;
        size_t n_dl, cap_dl;
        bool root_seen;
        int64_t root_mtime_ns;
};

static struct lput *puts_list, *puts_dead;
static int layers_fd = -1;
static char layers_err[128];

static bool valid_layer_id(const char *id)
{
        size_t i;

        for (i = 0; id[i]; i++)
                if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
                        return false;
        return i == 64;
}

int layer_init(void)
{
        int sfd = open(agent_cfg.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *de;
        DIR *d;
        int fd;

        if (sfd < 0 || (mkdirat(sfd, "layers", 0700) < 0 && errno != EEXIST) ||
            (layers_fd = openat(sfd, "layers", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) <
                    0) {
                snprintf(layers_err, sizeof(layers_err), "the layer store %s/layers: %s",
                         agent_cfg.state_dir, strerror(errno));
                if (sfd >= 0)
                        close(sfd);
                return -errno;
        }
        close(sfd);
        /* What a PUT left when the agent died in it. */
        fd = dup(layers_fd);
        d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d) {
                if (fd >= 0)
                        close(fd);
                return 0;
        }
        while ((de = readdir(d)))
                if (strstr(de->d_name, ".tmp-")) {
                        int r = sh_rm_rf_at(layers_fd, de->d_name);

                        if (r < 0)
                                agent_log("removing layers/%s: %s", de->d_name, strerror(-r));
                }
        closedir(d);
        return 0;
}

/* ---- frames ---- */

/* The stream's end: the reason on STDERR when it failed, STREAM_EXIT, CLOSE ALL. */
static void send_end(uint32_t sid, int err, const char *msg)
{
        struct ag_buf b;

        if (err && msg[0])
                agent_send_simple(AG_K_DATA, AG_CHAN_STDERR, sid, msg, strlen(msg));
        ag_buf_init(&b);
        ag_frame_begin(&b, AG_K_EVENT, AG_EV_STREAM_EXIT, sid, 0);
        ag_put_u64(&b, AG_A_EXIT_CODE, err);
        if (err) {
                ag_put_u64(&b, AG_A_ERRNO, err);
                ag_put_str(&b, AG_A_ERRMSG, msg);
        }
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
        agent_send_simple(AG_K_CLOSE, AG_CHAN_ALL, sid, NULL, 0);
}

static void put_layer_attrs(struct ag_buf *b, const char *id, bool present)
{
        char dir[PATH_MAX + 80];

        snprintf(dir, sizeof(dir), "%s/layers/%s", agent_cfg.state_dir, id);
        ag_put_u64(b, AG_A_PRESENT, present);
        ag_put_str(b, AG_A_LAYER_DIR, dir);
}

static bool layer_present(const char *id)
{
        struct stat st;

        return layers_fd >= 0 && fstatat(layers_fd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               S_ISDIR(st.st_mode);
}

/* ---- the list ---- */

static struct lput *put_find(uint32_t sid)
{
        for (struct lput *lp = puts_list; lp; lp = lp->next)
                if (lp->sid == sid)
                        return lp;
        return NULL;
}

bool layer_stream_used(uint32_t sid)
{
        return put_find(sid) != NULL;
}

/* Closes what @lp has open and removes its temp dir. */
static void put_cleanup(struct lput *lp, bool remove)
{
        if (lp->file_fd >= 0)
                close(lp->file_fd);
        lp->file_fd = -1;
        if (lp->par_fd >= 0)
                close(lp->par_fd);
        lp->par_fd = -1;
        free(lp->par_path);
        lp->par_path = NULL;
        if (lp->root_fd >= 0)
                close(lp->root_fd);
        lp->root_fd = -1;
        if (remove && lp->tmp[0]) {
                int r = sh_rm_rf_at(layers_fd, lp->tmp);

                if (r < 0)
                        agent_log("removing layers/%s: %s", lp->tmp, strerror(-r));
        }
        lp->tmp[0] = 0;
}

/* Takes @lp off the list (freed by layer_gc: a caller up the stack may still hold it). */
static void put_unlink(struct lput *lp)
{
        struct lput **pp;

        if (lp->dead)
                return;
        for (pp = &puts_list; *pp && *pp != lp; pp = &(*pp)->next)
                ;
        if (*pp)
                *pp = lp->next;
        lp->dead = true;
        lp->next = puts_dead;
        puts_dead = lp;
}

void layer_gc(void)
{
        while (puts_dead) {
                struct lput *lp = puts_dead;

                puts_dead = lp->next;
                put_cleanup(lp, true);
                ag_lreader_done(&lp->rd);
                free(lp->dpath);
                free(lp->dl);
                free(lp);
        }
}

static bool put_start(struct lput *lp);

/* The PUT of @id that ran ended: the first one waiting for it goes on. */
static void promote(const char *id)
{
        for (;;) {
                struct lput *w = NULL;

                for (struct lput *lp = puts_list; lp; lp = lp->next)
                        if (!lp->active && strcmp(lp->id, id) == 0) {
                                w = lp;
                                break;
                        }
                if (!w || put_start(w))
                        return;
        }
}

/* A PUT failed: nothing of it stays; the host hears why. */
static void put_fail(struct lput *lp, int err, const char *msg)
{
        char id[65];

        if (lp->dead)
                return;
        agent_log("layer %.12s: %s", lp->id, msg);
        put_cleanup(lp, true);
        put_unlink(lp);
        memcpy(id, lp->id, sizeof(id));
        send_end(lp->sid, err, msg);
        promote(id);
}

/*
 * Answers waiting (or new) PUT @lp: PRESENT=1 and the end when the layer is there, else a
 * temp dir and PRESENT=0. True when @lp now receives; false when it ended.
 */
static bool put_start(struct lput *lp)
{
        struct ag_hdr rh = {.op = AG_OP_LAYER_PUT, .stream = lp->sid, .id = lp->req_id};
        bool present = layer_present(lp->id);
        struct ag_buf b;
        int r = 0;

        if (!present) {
                uint32_t rnd = 0;

                for (int i = 0; i < 16; i++) {
                        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) < 0)
                                rnd = (uint32_t)agent_now_ns() ^ (uint32_t)i << 24;
                        snprintf(lp->tmp, sizeof(lp->tmp), "%s.tmp-%06x", lp->id, rnd & 0xffffff);
                        r = mkdirat(layers_fd, lp->tmp, 0700) < 0 ? -errno : 0;
                        if (r != -EEXIST)
                                break;
                }
                if (r == 0) {
                        lp->root_fd = openat(layers_fd, lp->tmp,
                                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (lp->root_fd < 0)
                                r = -errno;
                }
                if (r < 0) {
                        agent_resp_err(&rh, -r, "layer %s: a temp dir in %s/layers: %s", lp->id,
                                       agent_cfg.state_dir, strerror(-r));
                        if (r != -EEXIST)
                                put_cleanup(lp, true);
                        else
                                lp->tmp[0] = 0;
                        put_unlink(lp);
                        return false;
                }
        }
        ag_buf_init(&b);
        agent_resp_begin(&b, &rh);
        put_layer_attrs(&b, lp->id, present);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
        if (present) {
                put_unlink(lp);
                send_end(lp->sid, 0, "");
                return false;
        }
        lp->active = true;
        return true;
}

/* ---- ops ---- */

static char *req_layer_id(const struct ag_hdr *h, const uint8_t *p)
{
        char *id = NULL;

        if (ag_find_str(p, h->len, AG_A_ID, &id) < 0 || !valid_layer_id(id)) {
                agent_resp_err(h, EINVAL, "layer id '%.80s': not a chain id (64 hex digits)",
                               id ? id : "");
                free(id);
                return NULL;
        }
        if (layers_fd < 0) {
                agent_resp_err(h, EIO, "%s", layers_err);
                free(id);
                return NULL;
        }
        return id;
}

void layer_op_has(const struct ag_hdr *h, const uint8_t *p)
{
        char *id = req_layer_id(h, p);
        struct ag_buf b;

        if (!id)
                return;
        ag_buf_init(&b);
        agent_resp_begin(&b, h);
        put_layer_attrs(&b, id, layer_present(id));
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
        free(id);
}

void layer_op_put(const struct ag_hdr *h, const uint8_t *p)
{
        struct lput *lp, **tail;
        char *id;
        bool waits = false;

        if (h->stream == 0 || st_stream_used(h->stream) || layer_stream_used(h->stream)) {
                agent_resp_err(h, EINVAL, "bad stream id %u", h->stream);
                return;
        }
        id = req_layer_id(h, p);
        if (!id)
                return;
        lp = calloc(1, sizeof(*lp));
        if (!lp) {
                agent_resp_err(h, ENOMEM, "out of memory");
                free(id);
                return;
        }
        memcpy(lp->id, id, sizeof(lp->id));
        free(id);
        lp->sid = h->stream;
        lp->req_id = h->id;
        lp->root_fd = lp->par_fd = lp->file_fd = -1;
        lp->recv_left = AG_WINDOW_INIT;
        ag_lreader_init(&lp->rd, agent_cfg.layer_max_bytes);
        for (tail = &puts_list; *tail; tail = &(*tail)->next)
                if (strcmp((*tail)->id, lp->id) == 0)
                        waits = true; /* another PUT of it runs (or waits): after it */
        *tail = lp;
        if (!waits)
                put_start(lp);
}

/* ---- writing entries ---- */

static int entry_err(const struct ag_lent *e, int r, char *msg, size_t msize, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static int entry_err(const struct ag_lent *e, int r, char *msg, size_t msize, const char *fmt, ...)
{
        char what[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        snprintf(msg, msize, "entry '%.200s': %s", e->path, what);
        return r;
}

/*
 * Opens directory @path[0..len) beneath @root, no symlink followed on the way, in steps of
 * less than PATH_MAX. The fd (O_PATH) or -errno.
 */
static int open_beneath(int root, const char *path, size_t len)
{
        char buf[PATH_MAX];
        int cur = root, owned = -1;
        size_t off = 0;

        while (off < len) {
                struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                                       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                                  RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
                size_t k = len - off;
                int nfd;

                if (k > sizeof(buf) - 1) {
                        k = sizeof(buf) - 1;
                        while (k > 0 && path[off + k] != '/')
                                k--;
                        if (k == 0) {
                                if (owned >= 0)
                                        close(owned);
                                return -ENAMETOOLONG;
                        }
                }
                memcpy(buf, path + off, k);
                buf[k] = 0;
                nfd = (int)syscall(SYS_openat2, cur, buf, &how, sizeof(how));
                if (nfd < 0)
                        nfd = -errno;
                if (owned >= 0)
                        close(owned);
                if (nfd < 0)
                        return nfd;
                owned = cur = nfd;
                off += k;
                if (off < len && path[off] == '/')
                        off++;
        }
        return owned >= 0 ? owned : -EINVAL;
}

static int resolve_err(const struct ag_lent *e, const char *what, int r, char *msg, size_t msize)
{
        switch (-r) {
        case ELOOP:
                return entry_err(e, -EINVAL, msg, msize,
                                 "%s goes through a symlink: refused (never followed)", what);
        case ENOTDIR:
                return entry_err(e, -EINVAL, msg, msize, "%s goes through a non-directory", what);
        case ENOENT:
                return entry_err(e, -ENOENT, msg, msize, "%s: no such directory sent before", what);
        case EXDEV:
                return entry_err(e, -EINVAL, msg, msize, "%s leaves the layer: refused", what);
        case ENOSYS:
                return entry_err(e, -ENOSYS, msg, msize, "openat2 needs Linux 5.6 or later");
        default:
                return entry_err(e, r, msg, msize, "%s: %s", what, strerror(-r));
        }
}

/* The directory of @e (its path's first @len bytes), from the cache or opened; borrowed. */
static int parent_fd(struct lput *lp, const char *path, size_t len, int *ret)
{
        char *copy;
        int fd;

        if (len == 0) {
                *ret = lp->root_fd;
                return 0;
        }
        if (lp->par_path && strlen(lp->par_path) == len && memcmp(lp->par_path, path, len) == 0) {
                *ret = lp->par_fd;
                return 0;
        }
        fd = open_beneath(lp->root_fd, path, len);
        if (fd < 0)
                return fd;
        copy = strndup(path, len);
        if (!copy) {
                close(fd);
                return -ENOMEM;
        }
        if (lp->par_fd >= 0)
                close(lp->par_fd);
        free(lp->par_path);
        lp->par_path = copy;
        lp->par_fd = fd;
        *ret = fd;
        return 0;
}

/* @path split at its last '/': the directory's length and the base name. */
static const char *split(const char *path, size_t *ret_dirlen)
{
        const char *slash = strrchr(path, '/');

        *ret_dirlen = slash ? (size_t)(slash - path) : 0;
        return slash ? slash + 1 : path;
}

static struct timespec ts_of(int64_t ns)
{
        struct timespec ts;
        int64_t s = ns / 1000000000LL, rem = ns % 1000000000LL;

        if (rem < 0) {
                rem += 1000000000LL;
                s--;
        }
        ts.tv_sec = (time_t)s;
        ts.tv_nsec = (long)rem;
        return ts;
}

static int xattr_check(const struct ag_lent *e, const struct ag_xattr *x, char *msg, size_t msize)
{
        if (strncmp(x->name, "trusted.overlay.", 16) != 0)
                return 0;
        if (strcmp(x->name, "trusted.overlay.opaque") == 0 && e->type == AG_LT_DIR && x->len == 1 &&
            x->value[0] == 'y')
                return 0;
        return entry_err(e, -EPERM, msg, msize,
                         "xattr %.64s refused (of overlay's own, only trusted.overlay.opaque=y "
                         "on a directory)",
                         x->name);
}

static void owner_of(const struct ag_lent *e, uid_t *uid, gid_t *gid)
{
        static bool told;

        *uid = agent_map_id(false, e->uid);
        *gid = agent_map_id(true, e->gid);
        if ((*uid != e->uid || *gid != e->gid) && !told) {
                told = true;
                agent_log("layer entry '%.200s': owner %" PRIu32 ":%" PRIu32
                          " is outside this user namespace's id map: given %u:%u (further "
                          "ones not logged)",
                          e->path, e->uid, e->gid, (unsigned)*uid, (unsigned)*gid);
        }
}

/* Sets @e's xattrs on @fd, or (@fd < 0) on @base of directory @dfd without following it. */
static int set_xattrs(const struct ag_lent *e, int fd, int dfd, const char *base, char *msg,
                      size_t msize)
{
        char proc[NAME_MAX + 64];

        if (fd < 0)
                snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dfd, base);
        for (size_t i = 0; i < e->n_xattrs; i++) {
                const struct ag_xattr *x = &e->xattrs[i];
                int r = xattr_check(e, x, msg, msize);
                bool opaque = strcmp(x->name, "trusted.overlay.opaque") == 0;
                const char *name = opaque && agent_cfg.userns ? "user.overlay.opaque" : x->name;

                if (r < 0)
                        return r;
                /*
                 * With userxattr, overlay reads its marks from user.overlay.*: an image's own
                 * attribute of that name, inert data on a host or in a VM, would act there.
                 * Dropped, so the image gives the same tree everywhere.
                 */
                if (agent_cfg.userns && strncmp(x->name, "user.overlay.", 13) == 0) {
                        agent_log("layer entry '%.200s': xattr %s is overlay's own in a user "
                                  "namespace: dropped",
                                  e->path, x->name);
                        continue;
                }
                /* The directory's fd is followed (a magic link to it); @base is not. */
                r = fd >= 0 ? fsetxattr(fd, name, x->value, x->len, 0)
                            : lsetxattr(proc, name, x->value, x->len, 0);
                if (r == 0)
                        continue;
                /* trusted.* needs CAP_SYS_ADMIN of the first user namespace. */
                if (errno == EPERM && agent_cfg.userns && !opaque &&
                    strncmp(x->name, "trusted.", 8) == 0) {
                        agent_log("layer entry '%.200s': xattr %s cannot be set in a user "
                                  "namespace: dropped",
                                  e->path, x->name);
                        continue;
                }
                /* A file system without that namespace (user.* on an older tmpfs): the
                 * image's attribute is dropped. Never overlay's opaque mark. */
                if (errno == EOPNOTSUPP && !opaque) {
                        agent_log("layer entry '%.200s': xattr %s not supported here: dropped",
                                  e->path, x->name);
                        continue;
                }
                return entry_err(e, -errno, msg, msize, "xattr %.64s: %s", x->name,
                                 strerror(errno));
        }
        return 0;
}

/* Owner, mode, xattrs (in that order: chown clears setuid and file capabilities), mtime. */
static int meta_fd(const struct ag_lent *e, int fd, bool times, char *msg, size_t msize)
{
        struct timespec ts[2];
        uid_t uid;
        gid_t gid;
        int r;

        owner_of(e, &uid, &gid);
        if (fchown(fd, uid, gid) < 0)
                return entry_err(e, -errno, msg, msize, "chown: %s", strerror(errno));
        if (fchmod(fd, e->mode) < 0)
                return entry_err(e, -errno, msg, msize, "chmod: %s", strerror(errno));
        r = set_xattrs(e, fd, -1, NULL, msg, msize);
        if (r < 0 || !times)
                return r;
        ts[0] = ts[1] = ts_of(e->mtime_ns);
        if (futimens(fd, ts) < 0)
                return entry_err(e, -errno, msg, msize, "mtime: %s", strerror(errno));
        return 0;
}

/* The same for @base in @dfd, never following it (symlinks, devices, fifos, sockets). */
static int meta_at(const struct ag_lent *e, int dfd, const char *base, char *msg, size_t msize)
{
        struct timespec ts[2];
        uid_t uid;
        gid_t gid;
        int r;

        owner_of(e, &uid, &gid);
        if (fchownat(dfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                return entry_err(e, -errno, msg, msize, "chown: %s", strerror(errno));
        if (e->type != AG_LT_SYMLINK && fchmodat(dfd, base, e->mode, AT_SYMLINK_NOFOLLOW) < 0)
                return entry_err(e, -errno, msg, msize, "chmod: %s", strerror(errno));
        r = set_xattrs(e, -1, dfd, base, msg, msize);
        if (r < 0)
                return r;
        ts[0] = ts[1] = ts_of(e->mtime_ns);
        if (utimensat(dfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return entry_err(e, -errno, msg, msize, "mtime: %s", strerror(errno));
        return 0;
}

/* Sets the mtime of the directories the stream left, those not above @path (NULL: all). */
static int dirs_leave(struct lput *lp, const struct ag_lent *e, const char *path, char *msg,
                      size_t msize)
{
        while (lp->n_dl) {
                struct dlevel *d = &lp->dl[lp->n_dl - 1];
                struct timespec ts[2];
                size_t dirlen;
                const char *base;
                char saved;
                int dfd, r;

                if (path && strncmp(path, lp->dpath, d->len) == 0 && path[d->len] == '/')
                        return 0;
                saved = lp->dpath[d->len];
                lp->dpath[d->len] = 0;
                base = split(lp->dpath, &dirlen);
                r = parent_fd(lp, lp->dpath, dirlen, &dfd);
                ts[0] = ts[1] = ts_of(d->mtime_ns);
                if (r == 0 && utimensat(dfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
                        r = -errno;
                lp->dpath[d->len] = saved;
                if (r < 0)
                        return entry_err(e, r, msg, msize, "mtime of directory '%.200s': %s",
                                         lp->dpath, strerror(-r));
                lp->n_dl--;
        }
        return 0;
}

static int dirs_push(struct lput *lp, const struct ag_lent *e)
{
        size_t len = strlen(e->path);

        if (len + 1 > lp->dpath_cap) {
                char *n = realloc(lp->dpath, len + 1);

                if (!n)
                        return -ENOMEM;
                lp->dpath = n;
                lp->dpath_cap = len + 1;
        }
        if (lp->n_dl == lp->cap_dl) {
                size_t cap = lp->cap_dl ? lp->cap_dl * 2 : 32;
                struct dlevel *n = realloc(lp->dl, cap * sizeof(*n));

                if (!n)
                        return -ENOMEM;
                lp->dl = n;
                lp->cap_dl = cap;
        }
        memcpy(lp->dpath, e->path, len + 1);
        lp->dl[lp->n_dl++] = (struct dlevel){.len = len, .mtime_ns = e->mtime_ns};
        return 0;
}

static int make_hardlink(struct lput *lp, const struct ag_lent *e, int dfd, const char *base,
                         char *msg, size_t msize)
{
        size_t tlen;
        const char *tbase = split(e->link, &tlen);
        int tfd = lp->root_fd, owned = -1, r = 0;
        struct stat st;

        if (tlen) {
                owned = tfd = open_beneath(lp->root_fd, e->link, tlen);
                if (tfd < 0)
                        return resolve_err(e, "its hard link target", tfd, msg, msize);
        }
        if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0)
                r = errno == ENOENT
                            ? entry_err(e, -ENOENT, msg, msize,
                                        "hard link to '%.200s': no such entry sent before", e->link)
                            : entry_err(e, -errno, msg, msize, "hard link target: %s",
                                        strerror(errno));
        else if (S_ISDIR(st.st_mode))
                r = entry_err(e, -EINVAL, msg, msize, "hard link to directory '%.200s'", e->link);
        else if (linkat(tfd, tbase, dfd, base, 0) < 0)
                r = entry_err(e, -errno, msg, msize, "link: %s", strerror(errno));
        if (owned >= 0)
                close(owned);
        return r;
}

static int on_begin(void *ud, const struct ag_lent *e, char *msg, size_t msize)
{
        struct lput *lp = ud;
        const char *base;
        size_t dirlen;
        int dfd, fd, r;

        if (!e->path[0]) { /* the root: its metadata, its mtime at the end */
                if (lp->root_seen)
                        return entry_err(e, -EEXIST, msg, msize, "the root sent twice");
                lp->root_seen = true;
                lp->root_mtime_ns = e->mtime_ns;
                return meta_fd(e, lp->root_fd, false, msg, msize);
        }
        r = dirs_leave(lp, e, e->path, msg, msize);
        if (r < 0)
                return r;
        base = split(e->path, &dirlen);
        r = parent_fd(lp, e->path, dirlen, &dfd);
        if (r < 0)
                return resolve_err(e, "its directory", r, msg, msize);

        switch (e->type) {
        case AG_LT_REG:
                fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return entry_err(e, -errno, msg, msize, "create: %s", strerror(errno));
                lp->file_fd = fd;
                return 0; /* its metadata once its content is there */
        case AG_LT_DIR:
                if (mkdirat(dfd, base, 0700) < 0)
                        return entry_err(e, -errno, msg, msize, "mkdir: %s", strerror(errno));
                fd = openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return entry_err(e, -errno, msg, msize, "open: %s", strerror(errno));
                r = meta_fd(e, fd, false, msg, msize);
                close(fd);
                if (r == 0 && dirs_push(lp, e) < 0)
                        r = entry_err(e, -ENOMEM, msg, msize, "out of memory");
                return r;
        case AG_LT_SYMLINK:
                if (symlinkat(e->link, dfd, base) < 0)
                        return entry_err(e, -errno, msg, msize, "symlink: %s", strerror(errno));
                return meta_at(e, dfd, base, msg, msize);
        case AG_LT_HARDLINK:
                return make_hardlink(lp, e, dfd, base, msg, msize);
        case AG_LT_CHAR:
                if (e->rdev_major || e->rdev_minor)
                        return entry_err(e, -EPERM, msg, msize,
                                         "device node %u:%u refused (only the overlay whiteout, "
                                         "char 0/0)",
                                         e->rdev_major, e->rdev_minor);
                if (mknodat(dfd, base, S_IFCHR | 0600, makedev(0, 0)) < 0)
                        return entry_err(e, -errno, msg, msize, "whiteout: %s", strerror(errno));
                return meta_at(e, dfd, base, msg, msize);
        case AG_LT_BLOCK:
                return entry_err(e, -EPERM, msg, msize,
                                 "block device %u:%u refused (only the overlay whiteout, char 0/0)",
                                 e->rdev_major, e->rdev_minor);
        case AG_LT_FIFO:
        case AG_LT_SOCKET:
                if (mknodat(dfd, base, (e->type == AG_LT_FIFO ? S_IFIFO : S_IFSOCK) | 0600, 0) < 0)
                        return entry_err(e, -errno, msg, msize, "mknod: %s", strerror(errno));
                return meta_at(e, dfd, base, msg, msize);
        default:
                return entry_err(e, -EPROTO, msg, msize, "unknown type %d", e->type);
        }
}

static int on_data(void *ud, const struct ag_lent *e, const uint8_t *p, size_t n, char *msg,
                   size_t msize)
{
        struct lput *lp = ud;

        while (n) {
                ssize_t w = write(lp->file_fd, p, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return entry_err(e, w < 0 ? -errno : -EIO, msg, msize, "write: %s",
                                         w < 0 ? strerror(errno) : "no progress");
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

static int on_end(void *ud, const struct ag_lent *e, char *msg, size_t msize)
{
        struct lput *lp = ud;
        int r;

        if (e->type != AG_LT_REG)
                return 0;
        r = meta_fd(e, lp->file_fd, true, msg, msize);
        close(lp->file_fd);
        lp->file_fd = -1;
        return r;
}

static const struct ag_lreader_ops put_ops = {
        .begin = on_begin,
        .data = on_data,
        .end = on_end,
};

/* The host ended the stream: the layer is complete, or refused. */
static void put_commit(struct lput *lp)
{
        static const struct ag_lent root = {.path = (char *)""};
        char msg[512], id[65];
        int r;

        r = ag_lreader_finish(&lp->rd, msg, sizeof(msg));
        if (r == 0)
                r = dirs_leave(lp, &root, NULL, msg, sizeof(msg));
        if (r == 0 && lp->root_seen) {
                struct timespec ts[2] = {ts_of(lp->root_mtime_ns), ts_of(lp->root_mtime_ns)};

                if (futimens(lp->root_fd, ts) < 0)
                        r = -errno,
                        snprintf(msg, sizeof(msg), "mtime of the root: %s", strerror(errno));
        }
        /* Complete on disk before it has its name: a crash leaves a temp dir, not half a
         * layer under the final name. */
        if (r == 0 && syncfs(lp->root_fd) < 0)
                r = -errno, snprintf(msg, sizeof(msg), "syncfs: %s", strerror(errno));
        if (r == 0 && renameat2(layers_fd, lp->tmp, layers_fd, lp->id, RENAME_NOREPLACE) < 0) {
                if (errno == EEXIST)
                        put_cleanup(lp, true); /* it came meanwhile: keep that one */
                else
                        r = -errno, snprintf(msg, sizeof(msg), "rename: %s", strerror(errno));
        }
        if (r < 0) {
                put_fail(lp, -r, msg);
                return;
        }
        lp->tmp[0] = 0;
        fsync(layers_fd);
        put_cleanup(lp, false);
        put_unlink(lp);
        memcpy(id, lp->id, sizeof(id));
        send_end(lp->sid, 0, "");
        promote(id);
}

/* ---- the stream ---- */

bool layer_data(const struct ag_hdr *h, const uint8_t *p)
{
        struct lput *lp = put_find(h->stream);
        char msg[512];
        uint8_t w[4];
        int r;

        if (!lp)
                return false;
        if (!lp->active || h->op != AG_CHAN_STDIN || h->len == 0)
                return true;
        if (h->len > lp->recv_left) {
                put_fail(lp, EPROTO, "the host sent past the stream's credit");
                return true;
        }
        lp->recv_left -= h->len;
        r = ag_lreader_feed(&lp->rd, p, h->len, &put_ops, lp, msg, sizeof(msg));
        if (r < 0) {
                put_fail(lp, -r, msg);
                return true;
        }
        lp->consumed += h->len;
        if (lp->consumed < AG_WINDOW_INIT / 4)
                return true;
        w[0] = (uint8_t)(lp->consumed >> 24);
        w[1] = (uint8_t)(lp->consumed >> 16);
        w[2] = (uint8_t)(lp->consumed >> 8);
        w[3] = (uint8_t)lp->consumed;
        lp->recv_left += lp->consumed;
        lp->consumed = 0;
        agent_send_simple(AG_K_WINDOW, AG_CHAN_STDIN, lp->sid, w, sizeof(w));
        return true;
}

bool layer_close(const struct ag_hdr *h)
{
        struct lput *lp = put_find(h->stream);
        char id[65];

        if (!lp)
                return false;
        if (h->op == AG_CHAN_ALL) { /* abandoned by the host */
                bool was_active = lp->active;

                memcpy(id, lp->id, sizeof(id));
                put_cleanup(lp, true);
                put_unlink(lp);
                if (was_active)
                        promote(id);
                return true;
        }
        if (h->op == AG_CHAN_STDIN && lp->active)
                put_commit(lp);
        return true;
}

void layer_drop_all(void)
{
        while (puts_list) {
                put_cleanup(puts_list, true);
                put_unlink(puts_list);
        }
}
