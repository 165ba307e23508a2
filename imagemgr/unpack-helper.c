/*
 * runt-unpack: the layer unpacker runtd runs, one process per layer.
 *
 *     runt-unpack DEST [FOLLOW_NAME]
 *     fd 0: the layer blob; fd 1: where the result goes (struct unpack_msg, one write);
 *     fd 3: with FOLLOW_NAME, the directory where the blob is still being downloaded
 *
 * It lives in a program of its own so that libarchive (and what it pulls in: libxml2, ICU,
 * compression libraries) and libcrypto are mapped only while a layer is being unpacked, not
 * in the long-running daemon. Each layer is unpacked into a directory of its own by this
 * process, which chroot()s into that directory first, so no entry (nor a bug in libarchive) can
 * write outside it; the entry checks below then refuse the tricks outright, so a hostile layer
 * fails the pull instead of producing a strange tree. The blob is read through two
 * libarchive readers: a raw one that undoes the compression, and a tar one on top of its
 * output; both streams are hashed on the way, giving the blob digest and the diff id
 * without a second pass.
 */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "cleanup.h"
#include "imagemgr-internal.h"
#include "unpack-proto.h"

#define BUF_SIZE  (1 << 17)
#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

/* What the child reports through its pipe: one write, smaller than PIPE_BUF. */

struct blob_src {
        int fd;
        int follow_dir;          /* with follow_name: the file is still being written */
        const char *follow_name; /* its temp name there; gone once the writer renamed it */
        EVP_MD_CTX *md;
        uint64_t n;
        unsigned char buf[BUF_SIZE];
};

struct tar_src {
        struct archive *raw;
        EVP_MD_CTX *md;
        uint64_t n;
        unsigned char buf[BUF_SIZE];
};

static la_ssize_t blob_read(struct archive *a, void *data, const void **buf)
{
        struct blob_src *s = data;

        for (;;) {
                ssize_t n = read(s->fd, s->buf, sizeof(s->buf));

                if (n < 0 && errno == EINTR)
                        continue;
                /*
                 * Following a download: EOF is real only once the writer has renamed the file
                 * (it writes everything first, so one more read then gets the rest). If it
                 * never does, the parent kills us.
                 */
                if (n == 0 && s->follow_name) {
                        if (faccessat(s->follow_dir, s->follow_name, F_OK, AT_SYMLINK_NOFOLLOW) ==
                            0) {
                                nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
                                continue;
                        }
                        s->follow_name = NULL;
                        continue;
                }
                if (n < 0) {
                        archive_set_error(a, errno, "reading the layer blob");
                        return -1;
                }
                EVP_DigestUpdate(s->md, s->buf, (size_t)n);
                s->n += (uint64_t)n;
                *buf = s->buf;
                return n;
        }
}

static la_ssize_t tar_read(struct archive *a, void *data, const void **buf)
{
        struct tar_src *t = data;
        la_ssize_t n = archive_read_data(t->raw, t->buf, sizeof(t->buf));

        if (n < 0) {
                archive_set_error(a, archive_errno(t->raw), "decompressing: %s",
                                  archive_error_string(t->raw));
                return -1;
        }
        EVP_DigestUpdate(t->md, t->buf, (size_t)n);
        t->n += (uint64_t)n;
        *buf = t->buf;
        return n;
}

static int fail(struct unpack_msg *m, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int fail(struct unpack_msg *m, int code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(m->msg, sizeof(m->msg), fmt, ap);
        va_end(ap);
        m->code = code;
        return code;
}

/*
 * Normalises a tar path into *@ret (malloc'd): leading "./" and "/" runs of "./" dropped, "//"
 * folded, a trailing '/' dropped. Refuses absolute paths and any ".." component. "" is the root.
 */
static int clean_path(const char *in, char **ret, struct unpack_msg *m, const char *what)
{
        _cleanup_free_ char *out = NULL;
        size_t o = 0;
        const char *p = in;

        if (!in)
                return fail(m, -EINVAL, "layer entry without a name");
        if (in[0] == '/')
                return fail(m, -EINVAL, "layer %s '%.200s': absolute path", what, in);
        /* As long as the tar's name: an image's paths may be far longer than PATH_MAX. */
        out = malloc(strlen(in) + 1);
        if (!out)
                return fail(m, -ENOMEM, "out of memory");
        while (*p) {
                const char *end = strchr(p, '/');
                size_t n = end ? (size_t)(end - p) : strlen(p);

                if (n == 2 && p[0] == '.' && p[1] == '.')
                        return fail(m, -EINVAL, "layer %s '%.200s': '..' component", what, in);
                if (n > 0 && !(n == 1 && p[0] == '.')) {
                        if (o)
                                out[o++] = '/';
                        memcpy(out + o, p, n);
                        o += n;
                }
                p += n;
                if (*p == '/')
                        p++;
        }
        out[o] = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

/*
 * Opens directory @dir (relative to the root, "" for the root) one component at a time,
 * creating missing ones, never following a symlink: ELOOP/ENOTDIR on one is a refusal.
 */
static int open_dir_nofollow(const char *dir, int *ret_fd, struct unpack_msg *m, const char *entry)
{
        _cleanup_close_ int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char comp[NAME_MAX + 1];
        const char *p = dir;

        if (fd < 0)
                return fail(m, -errno, "open layer root: %s", strerror(errno));
        while (*p) {
                const char *end = strchr(p, '/');
                size_t n = end ? (size_t)(end - p) : strlen(p);
                int nfd;

                if (n > NAME_MAX)
                        return fail(m, -ENAMETOOLONG, "layer entry '%.200s': name too long", entry);
                memcpy(comp, p, n);
                comp[n] = '\0';
                nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (nfd < 0 && errno == ENOENT) {
                        if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST)
                                return fail(m, -errno, "layer entry '%.200s': mkdir: %s", entry,
                                            strerror(errno));
                        nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                }
                if (nfd < 0 && (errno == ELOOP || errno == ENOTDIR))
                        return fail(m, -EINVAL, "layer entry '%.200s': path goes through a symlink",
                                    entry);
                if (nfd < 0)
                        return fail(m, -errno, "layer entry '%.200s': %s", entry, strerror(errno));
                close(fd);
                fd = nfd;
                p += n;
                if (*p == '/')
                        p++;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* ".wh.NAME" and ".wh..wh..opq": the overlayfs forms. @path is clean, its base a whiteout. */
static int whiteout(const char *path, struct unpack_msg *m)
{
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        _cleanup_free_ char *dir = strndup(path, slash ? (size_t)(slash - path) : 0);
        _cleanup_close_ int dfd = -EBADF;
        int r;

        if (!dir)
                return fail(m, -ENOMEM, "out of memory");
        if (strcmp(base, WH_OPAQUE) != 0 && strncmp(base, WH_PREFIX WH_PREFIX, 8) == 0)
                return 0; /* other aufs metadata (.wh..wh.plnk and such): not content */
        r = open_dir_nofollow(dir, &dfd, m, path);
        if (r < 0)
                return r;
        if (strcmp(base, WH_OPAQUE) == 0) {
                if (fsetxattr(dfd, "trusted.overlay.opaque", "y", 1, 0) < 0)
                        return fail(m, -errno, "layer entry '%.200s': set opaque: %s", path,
                                    strerror(errno));
                return 0;
        }
        base += strlen(WH_PREFIX);
        if (!base[0] || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
                return fail(m, -EINVAL, "layer entry '%.200s': bad whiteout", path);
        if (unlinkat(dfd, base, 0) < 0 && errno != ENOENT && errno != EISDIR)
                return fail(m, -errno, "layer entry '%.200s': %s", path, strerror(errno));
        if (mknodat(dfd, base, S_IFCHR | 0000, makedev(0, 0)) < 0 ||
            fchownat(dfd, base, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
                return fail(m, -errno, "layer entry '%.200s': whiteout: %s", path, strerror(errno));
        return 0;
}

/* Drops xattrs a layer must not set: the overlay's own, which would fake whiteouts. */
static void filter_xattrs(struct archive_entry *e)
{
        struct {
                char *name;
                void *value;
                size_t size;
        } keep[64];
        size_t n = 0;
        bool dropped = false;
        const char *name;
        const void *value;
        size_t size;

        if (archive_entry_xattr_reset(e) == 0)
                return;
        while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
                if (strncmp(name, "trusted.overlay.", 16) == 0 || n == SH_ARRAY_SIZE(keep)) {
                        dropped = true;
                        continue;
                }
                keep[n].name = strdup(name);
                keep[n].value = malloc(size ? size : 1);
                if (keep[n].name && keep[n].value) {
                        memcpy(keep[n].value, value, size);
                        keep[n++].size = size;
                } else {
                        free(keep[n].name);
                        free(keep[n].value);
                }
        }
        if (dropped) {
                archive_entry_xattr_clear(e);
                for (size_t i = 0; i < n; i++)
                        archive_entry_xattr_add_entry(e, keep[i].name, keep[i].value, keep[i].size);
        }
        for (size_t i = 0; i < n; i++) {
                free(keep[i].name);
                free(keep[i].value);
        }
}

static int copy_data(struct archive *in, struct archive *out, struct unpack_msg *m,
                     const char *path)
{
        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t off;
                int r = archive_read_data_block(in, &buf, &size, &off);

                if (r == ARCHIVE_EOF)
                        return 0;
                if (r < ARCHIVE_WARN)
                        return fail(m, -EBADMSG, "layer entry '%.200s': %s", path,
                                    archive_error_string(in));
                if (archive_write_data_block(out, buf, size, off) < ARCHIVE_WARN)
                        return fail(m, -EIO, "layer entry '%.200s': write: %s", path,
                                    archive_error_string(out));
        }
}

static int one_entry(struct archive *in, struct archive *disk, struct archive_entry *e,
                     struct unpack_msg *m)
{
        _cleanup_free_ char *path = NULL, *link = NULL;
        const char *base;
        int r;

        r = clean_path(archive_entry_pathname(e), &path, m, "entry");
        if (r < 0)
                return r;
        if (!path[0]) { /* the layer root itself: only its mode and owner */
                if (archive_entry_filetype(e) == AE_IFDIR) {
                        if (chmod("/", archive_entry_perm(e)) < 0 ||
                            lchown("/", (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) <
                                    0)
                                return fail(m, -errno, "layer root: %s", strerror(errno));
                }
                return 0;
        }
        base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0)
                return whiteout(path, m);
        /* Anything below aufs metadata (".wh..wh.plnk/...") is not image content. */
        if (strncmp(path, WH_PREFIX WH_PREFIX, 8) == 0 || strstr(path, "/" WH_PREFIX WH_PREFIX))
                return 0;
        if (archive_entry_hardlink(e)) {
                r = clean_path(archive_entry_hardlink(e), &link, m, "hard link");
                if (r < 0)
                        return r;
                if (!link[0])
                        return fail(m, -EINVAL, "layer entry '%.200s': hard link to the root",
                                    path);
                archive_entry_set_hardlink(e, link);
        }
        archive_entry_set_pathname(e, path);
        filter_xattrs(e);
        r = archive_write_header(disk, e);
        if (r < ARCHIVE_WARN) {
                const char *why = archive_error_string(disk);

                return fail(m, -EINVAL, "layer entry '%.200s': %s", path, why ? why : "refused");
        }
        if (archive_entry_size(e) > 0) {
                r = copy_data(in, disk, m, path);
                if (r < 0)
                        return r;
        }
        if (archive_write_finish_entry(disk) < ARCHIVE_WARN)
                return fail(m, -EIO, "layer entry '%.200s': %s", path, archive_error_string(disk));
        return 0;
}

static void digest_hex(EVP_MD_CTX *md, img_digest out)
{
        unsigned char d[32];
        unsigned int n = 0;
        static const char hex[] = "0123456789abcdef";

        EVP_DigestFinal_ex(md, d, &n);
        memcpy(out, "sha256:", 7);
        for (int i = 0; i < 32; i++) {
                out[7 + 2 * i] = hex[d[i] >> 4];
                out[8 + 2 * i] = hex[d[i] & 15];
        }
        out[71] = '\0';
}

/* The child's work, already inside the chroot. Returns 0 or -errno with @m filled. */
static int unpack_stream(int blob_fd, int follow_dir, const char *follow_name, struct unpack_msg *m)
{
        static struct blob_src src;
        static struct tar_src tar;
        struct archive *raw, *in, *disk;
        struct archive_entry *e;
        int flags = ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                    ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                    ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;
        int r = 0;

        src.fd = blob_fd;
        src.follow_dir = follow_dir;
        src.follow_name = follow_name;
        src.md = EVP_MD_CTX_new();
        tar.md = EVP_MD_CTX_new();
        raw = archive_read_new();
        in = archive_read_new();
        disk = archive_write_disk_new();
        if (!src.md || !tar.md || !raw || !in || !disk)
                return fail(m, -ENOMEM, "out of memory");
        EVP_DigestInit_ex(src.md, EVP_sha256(), NULL);
        EVP_DigestInit_ex(tar.md, EVP_sha256(), NULL);

        archive_read_support_filter_all(raw);
        archive_read_support_format_raw(raw);
        if (archive_read_open(raw, &src, NULL, blob_read, NULL) != ARCHIVE_OK ||
            archive_read_next_header(raw, &e) != ARCHIVE_OK)
                return fail(m, -EBADMSG, "layer blob: %s", archive_error_string(raw));
        tar.raw = raw;
        archive_read_support_format_tar(in);
        archive_read_support_format_empty(in);
        if (archive_read_open(in, &tar, NULL, tar_read, NULL) != ARCHIVE_OK)
                return fail(m, -EBADMSG, "layer tar: %s", archive_error_string(in));
        archive_write_disk_set_options(disk, flags);

        for (;;) {
                r = archive_read_next_header(in, &e);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN)
                        return fail(m, -EBADMSG, "layer tar: %s", archive_error_string(in));
                m->res.entries++;
                r = one_entry(in, disk, e, m);
                if (r < 0)
                        return r;
        }
        /* The tar reader stops at its end marker: hash what follows too. */
        while (tar_read(in, &tar, &(const void *){NULL}) > 0)
                ;
        while (blob_read(raw, &src, &(const void *){NULL}) > 0)
                ;
        if (archive_write_close(disk) < ARCHIVE_WARN)
                return fail(m, -EIO, "layer: %s", archive_error_string(disk));
        digest_hex(src.md, m->res.digest);
        digest_hex(tar.md, m->res.diff_id);
        m->res.size = src.n;
        m->res.unpacked = tar.n;
        return 0;
}

int main(int argc, char **argv)
{
        struct unpack_msg m = {0};
        ssize_t n;

        if (argc < 2 || argc > 3) {
                static const char usage[] = "usage: runt-unpack DEST [FOLLOW_NAME] "
                                            "(run by runtd: blob on fd 0, result on fd 1)\n";

                n = write(STDERR_FILENO, usage, sizeof(usage) - 1);
                (void)n;
                return 2;
        }
        if (chdir(argv[1]) < 0 || chroot(".") < 0 || chdir("/") < 0)
                fail(&m, -errno, "enter '%s': %s", argv[1], strerror(errno));
        else
                unpack_stream(STDIN_FILENO, 3, argc == 3 ? argv[2] : NULL, &m);
        n = write(STDOUT_FILENO, &m, sizeof(m));
        return n == (ssize_t)sizeof(m) && m.code == 0 ? 0 : 1;
}
