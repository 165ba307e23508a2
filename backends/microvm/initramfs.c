/* The guest initramfs: a newc cpio written here, /init = runt-agent plus kernel modules. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cleanup.h"
#include "error.h"
#include "sha256.h"
#include "strutil.h"
#include "vm-internal.h"
#include "vm.h"

/*
 * bridge: a privileged container (or one with NET_ADMIN) may make one, as on a host; the
 * guest has no modprobe for the kernel to ask. virtio_rng: the host's entropy (vm.c).
 */
const char *const mv_default_modules[] = {
        "virtio_mmio", "virtio_console", "virtio_net", "overlay", "fuse",
        "virtiofs",    "virtio_balloon", "bridge",     NULL,
};

void mv_buf_done(struct mv_buf *b)
{
        free(b->p);
        b->p = NULL;
        b->len = b->cap = 0;
}

static int buf_put(struct mv_buf *b, const void *data, size_t len)
{
        if (b->len + len > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                unsigned char *p;

                while (cap < b->len + len)
                        cap *= 2;
                p = realloc(b->p, cap);
                if (!p)
                        return -ENOMEM;
                b->p = p;
                b->cap = cap;
        }
        if (len)
                memcpy(b->p + b->len, data, len);
        b->len += len;
        return 0;
}

static int buf_pad4(struct mv_buf *b)
{
        static const unsigned char zero[4];

        return buf_put(b, zero, (4 - b->len % 4) % 4);
}

int mv_cpio_add(struct mv_buf *b, const char *name, mode_t mode, unsigned rdev_major,
                unsigned rdev_minor, const void *data, size_t len)
{
        static unsigned ino = 1000;
        char hdr[111];
        size_t namesize = strlen(name) + 1;
        int r;

        /* newc: magic and 13 fields of 8 hex digits; mtime 0 keeps the archive reproducible. */
        snprintf(hdr, sizeof(hdr), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
                 __atomic_add_fetch(&ino, 1, __ATOMIC_RELAXED), (unsigned)mode, 0u, 0u,
                 S_ISDIR(mode) ? 2u : 1u, 0u, (unsigned)len, 0u, 0u, rdev_major, rdev_minor,
                 (unsigned)namesize, 0u);
        r = buf_put(b, hdr, 110);
        if (r >= 0)
                r = buf_put(b, name, namesize);
        if (r >= 0)
                r = buf_pad4(b);
        if (r >= 0)
                r = buf_put(b, data, len);
        if (r >= 0)
                r = buf_pad4(b);
        return r;
}

int mv_cpio_finish(struct mv_buf *b)
{
        return mv_cpio_add(b, "TRAILER!!!", 0, 0, 0, NULL, 0);
}

/* ---- modules.dep ---- */

/* "kernel/fs/fuse/virtio-fs.ko.xz" -> "virtio_fs" into @out. */
static void module_name_of(const char *path, size_t len, char *out, size_t size)
{
        const char *base = path, *end = path + len;
        size_t n = 0;

        for (const char *p = path; p < end; p++)
                if (*p == '/')
                        base = p + 1;
        for (const char *p = base; p < end && n + 1 < size; p++) {
                if (*p == '.' && (size_t)(end - p) >= 3 && strncmp(p, ".ko", 3) == 0)
                        break;
                out[n++] = *p == '-' ? '_' : *p;
        }
        out[n] = '\0';
}

static void norm_name(const char *in, char *out, size_t size)
{
        size_t n = 0;

        for (; *in && n + 1 < size; in++)
                out[n++] = *in == '-' ? '_' : *in;
        out[n] = '\0';
}

/* The line of @dep whose module is @name: start of the line, or NULL. */
static const char *dep_find(const char *dep, const char *name)
{
        for (const char *line = dep; line && *line;) {
                const char *colon = strchr(line, ':'), *nl = strchr(line, '\n');
                char got[128];

                if (colon && (!nl || colon < nl)) {
                        module_name_of(line, (size_t)(colon - line), got, sizeof(got));
                        if (strcmp(got, name) == 0)
                                return line;
                }
                line = nl ? nl + 1 : NULL;
        }
        return NULL;
}

static bool builtin_has(const char *builtin, const char *name)
{
        for (const char *line = builtin; line && *line;) {
                const char *nl = strchr(line, '\n');
                size_t len = nl ? (size_t)(nl - line) : strlen(line);
                char got[128];

                module_name_of(line, len, got, sizeof(got));
                if (strcmp(got, name) == 0)
                        return true;
                line = nl ? nl + 1 : NULL;
        }
        return false;
}

struct resolve {
        const char *dep, *builtin;
        char **out;
        size_t n;
        struct sh_error *err;
};

static bool resolve_have(const struct resolve *rs, const char *path, size_t len)
{
        for (size_t i = 0; i < rs->n; i++)
                if (strlen(rs->out[i]) == len && strncmp(rs->out[i], path, len) == 0)
                        return true;
        return false;
}

static int resolve_one(struct resolve *rs, const char *name, unsigned depth)
{
        const char *line, *colon, *p, *nl;
        char **v;
        int r;

        if (depth > 64)
                return sh_err(rs->err, -ELOOP, "module %s: dependency loop", name);
        line = dep_find(rs->dep, name);
        if (!line) {
                if (builtin_has(rs->builtin, name))
                        return 0;
                return sh_err(rs->err, -ENOENT, "module %s: not in modules.dep", name);
        }
        colon = strchr(line, ':');
        if (resolve_have(rs, line, (size_t)(colon - line)))
                return 0;
        nl = strchr(colon, '\n');
        if (!nl)
                nl = colon + strlen(colon);
        /* Each dependency's own line orders its dependencies before it. */
        for (p = colon + 1; p < nl;) {
                const char *s, *e;
                char dn[128];

                while (p < nl && (*p == ' ' || *p == '\t'))
                        p++;
                s = p;
                while (p < nl && *p != ' ' && *p != '\t')
                        p++;
                e = p;
                if (e == s)
                        continue;
                module_name_of(s, (size_t)(e - s), dn, sizeof(dn));
                r = resolve_one(rs, dn, depth + 1);
                if (r < 0)
                        return r;
        }
        if (resolve_have(rs, line, (size_t)(colon - line)))
                return 0;
        v = realloc(rs->out, (rs->n + 2) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        rs->out = v;
        rs->out[rs->n] = strndup(line, (size_t)(colon - line));
        if (!rs->out[rs->n])
                return -ENOMEM;
        rs->out[++rs->n] = NULL;
        return 0;
}

int mv_modules_resolve(const char *dep, const char *builtin, const char *const *names, char ***ret,
                       struct sh_error *err)
{
        struct resolve rs = {.dep = dep, .builtin = builtin, .err = err};
        int r;

        rs.out = calloc(1, sizeof(char *));
        if (!rs.out)
                return -ENOMEM;
        for (; names && *names; names++) {
                char name[128];

                norm_name(*names, name, sizeof(name));
                r = resolve_one(&rs, name, 0);
                if (r < 0) {
                        sh_strv_free(rs.out);
                        return r;
                }
        }
        *ret = rs.out;
        return 0;
}

/* ---- the archive ---- */

/* Adds @path's parent dirs (each once: @made tracks them, one per line). */
static int add_parents(struct mv_buf *b, const char *path, char **made)
{
        char dir[512];

        for (const char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
                size_t n = (size_t)(p - path);
                char *m;

                if (n >= sizeof(dir))
                        return -ENAMETOOLONG;
                memcpy(dir, path, n);
                dir[n] = '\0';
                {
                        _cleanup_free_ char *key = sh_strdup_printf("\n%s\n", dir);

                        if (!key)
                                return -ENOMEM;
                        if (*made && strstr(*made, key))
                                continue;
                        m = sh_strdup_printf("%s%s\n", *made ? *made : "\n", dir);
                        if (!m)
                                return -ENOMEM;
                }
                free(*made);
                *made = m;
                if (mv_cpio_add(b, dir, S_IFDIR | 0755, 0, 0, NULL, 0) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int build_archive(const struct mv_initramfs_opts *o, const char *agent, size_t agent_len,
                         char *const *mods, struct mv_buf *b, struct sh_error *err)
{
        static const char *const dirs[] = {"dev", "proc", "sys", "tmp",        "run",
                                           "mnt", "etc",  "lib", "lib/modules"};
        _cleanup_free_ char *made = NULL, *list = NULL;
        size_t list_len = 0;
        int r;

        for (size_t i = 0; i < SH_ARRAY_SIZE(dirs); i++) {
                r = mv_cpio_add(b, dirs[i], S_IFDIR | 0755, 0, 0, NULL, 0);
                if (r < 0)
                        return r;
                {
                        char *m = sh_strdup_printf("%s%s\n", made ? made : "\n", dirs[i]);

                        if (!m)
                                return -ENOMEM;
                        free(made);
                        made = m;
                }
        }
        r = mv_cpio_add(b, "dev/console", S_IFCHR | 0600, 5, 1, NULL, 0);
        if (r >= 0)
                r = mv_cpio_add(b, "dev/null", S_IFCHR | 0666, 1, 3, NULL, 0);
        if (r >= 0)
                r = mv_cpio_add(b, "init", S_IFREG | 0755, 0, 0, agent, agent_len);
        if (r < 0)
                return r;
        for (size_t i = 0; mods[i]; i++) {
                _cleanup_free_ char *src = sh_path_join(o->modules_dir, mods[i]);
                _cleanup_free_ char *dst = sh_strdup_printf("lib/modules/%s/%s", o->kver, mods[i]);
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                char *l;

                if (!src || !dst)
                        return -ENOMEM;
                r = sh_read_file(src, 64u << 20, &data, &len);
                if (r < 0)
                        return sh_err(err, r, "read %s", src);
                r = add_parents(b, dst, &made);
                if (r >= 0)
                        r = mv_cpio_add(b, dst, S_IFREG | 0644, 0, 0, data, len);
                if (r < 0)
                        return r;
                l = sh_strdup_printf("%s/%s\n", list ? list : "", dst);
                if (!l)
                        return -ENOMEM;
                free(list);
                list = l;
        }
        list_len = list ? strlen(list) : 0;
        r = mv_cpio_add(b, "etc/runt-modules", S_IFREG | 0644, 0, 0, list ? list : "", list_len);
        if (r >= 0)
                r = mv_cpio_finish(b);
        return r;
}

static int gzip_buf(const struct mv_buf *in, struct mv_buf *out)
{
        z_stream z = {0};
        int zr;

        /* 31: gzip framing. Level 1: the kernel's inflate is the cost, not the ratio. */
        if (deflateInit2(&z, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return -ENOMEM;
        out->cap = deflateBound(&z, in->len) + 64;
        out->p = malloc(out->cap);
        if (!out->p) {
                deflateEnd(&z);
                return -ENOMEM;
        }
        z.next_in = in->p;
        z.avail_in = (uInt)in->len;
        z.next_out = out->p;
        z.avail_out = (uInt)out->cap;
        zr = deflate(&z, Z_FINISH);
        out->len = out->cap - z.avail_out;
        deflateEnd(&z);
        return zr == Z_STREAM_END ? 0 : -EIO;
}

int mv_initramfs_get(const struct mv_initramfs_opts *o, char **ret_path, struct sh_error *err)
{
        _cleanup_free_ char *agent = NULL, *dep = NULL, *builtin = NULL, *depf = NULL,
                            *builtinf = NULL, *path = NULL;
        _cleanup_strv_ char **mods = NULL;
        const char *const *names = o->modules ? o->modules : mv_default_modules;
        int gz = o->gzip < 0 ? MV_INITRAMFS_GZIP_DEFAULT : o->gzip;
        struct mv_buf b = {0}, z = {0};
        unsigned char sum[32];
        char hex[65];
        struct sh_sha256 c;
        size_t agent_len = 0;
        int r;

        if (!o->agent_path || !o->kver || !o->modules_dir || !o->cache_dir)
                return sh_err(err, -EINVAL,
                              "initramfs: agent, kver, modules dir, cache dir needed");
        r = sh_read_file(o->agent_path, 256u << 20, &agent, &agent_len);
        if (r < 0)
                return sh_err(err, r, "initramfs: read agent %s", o->agent_path);
        depf = sh_path_join(o->modules_dir, "modules.dep");
        builtinf = sh_path_join(o->modules_dir, "modules.builtin");
        if (!depf || !builtinf)
                return -ENOMEM;
        r = sh_read_file(depf, 64u << 20, &dep, NULL);
        if (r < 0)
                return sh_err(err, r, "initramfs: read %s", depf);
        (void)sh_read_file(builtinf, 64u << 20, &builtin, NULL); /* optional */
        r = mv_modules_resolve(dep, builtin, names, &mods, err);
        if (r < 0)
                return sh_err_prefix(err, r, "initramfs");

        sh_sha256_init(&c);
        sh_sha256_update(&c, MV_INITRAMFS_FORMAT, sizeof(MV_INITRAMFS_FORMAT));
        sh_sha256_update(&c, agent, agent_len);
        sh_sha256_update(&c, o->kver, strlen(o->kver) + 1);
        sh_sha256_update(&c, o->modules_dir, strlen(o->modules_dir) + 1);
        for (size_t i = 0; mods[i]; i++)
                sh_sha256_update(&c, mods[i], strlen(mods[i]) + 1);
        sh_sha256_update(&c, gz ? "gz" : "raw", 3);
        sh_sha256_final(&c, sum);
        for (size_t i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", sum[i]);
        path = sh_strdup_printf("%s/initramfs-%s.cpio%s", o->cache_dir, hex, gz ? ".gz" : "");
        if (!path)
                return -ENOMEM;
        if (access(path, R_OK) == 0) {
                *ret_path = TAKE_PTR(path);
                return 0;
        }
        r = sh_mkdir_p(o->cache_dir, 0700);
        if (r < 0)
                return sh_err(err, r, "initramfs: mkdir %s", o->cache_dir);
        r = build_archive(o, agent, agent_len, mods, &b, err);
        if (r >= 0 && gz)
                r = gzip_buf(&b, &z);
        if (r >= 0)
                /* temp file + rename: concurrent builders write the same bytes */
                r = sh_write_file_replace(path, gz ? z.p : b.p, gz ? z.len : b.len, 0644);
        mv_buf_done(&b);
        mv_buf_done(&z);
        if (r < 0)
                return err && err->code ? r : sh_err(err, r, "initramfs: write %s", path);
        *ret_path = TAKE_PTR(path);
        return 0;
}

/* ---- the kernel ---- */

static inline void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

/* Compares "6.1.0-57-cloud-amd64" style versions: numbers numerically. */
static int kver_cmp(const char *a, const char *b)
{
        return strverscmp(a, b);
}

static int find_newest(const char *suffix, char **ret_kver)
{
        _cleanup_(closedirp) DIR *d = opendir("/boot");
        char *best = NULL;
        struct dirent *de;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                const char *v;
                size_t n, sl = suffix ? strlen(suffix) : 0;

                if (strncmp(de->d_name, "vmlinuz-", 8) != 0)
                        continue;
                v = de->d_name + 8;
                n = strlen(v);
                if (!n || (suffix && (n < sl || strcmp(v + n - sl, suffix) != 0)))
                        continue;
                if (!best || kver_cmp(v, best) > 0) {
                        free(best);
                        best = strdup(v);
                        if (!best)
                                return -ENOMEM;
                }
        }
        if (!best)
                return -ENOENT;
        *ret_kver = best;
        return 0;
}

int mv_kernel_find(const char *configured, char **ret_kernel, char **ret_kver,
                   char **ret_modules_dir, struct sh_error *err)
{
        _cleanup_free_ char *kernel = NULL, *kver = NULL, *mods = NULL;
        int r;

        if (configured && *configured) {
                const char *base = strrchr(configured, '/');

                base = base ? base + 1 : configured;
                if (access(configured, R_OK) < 0)
                        return sh_err(err, -errno, "kernel %s", configured);
                if (strncmp(base, "vmlinuz-", 8) != 0 && strncmp(base, "vmlinux-", 8) != 0)
                        return sh_err(err, -EINVAL,
                                      "kernel %s: no version in its name (vmlinuz-<kver>)",
                                      configured);
                kernel = strdup(configured);
                kver = strdup(base + 8);
                if (!kernel || !kver)
                        return -ENOMEM;
        } else {
                r = find_newest("-cloud-amd64", &kver);
                if (r == -ENOENT)
                        r = find_newest(NULL, &kver);
                if (r < 0)
                        return sh_err(err, r, "no guest kernel in /boot (vmlinuz-*)");
                kernel = sh_strdup_printf("/boot/vmlinuz-%s", kver);
                if (!kernel)
                        return -ENOMEM;
        }
        mods = sh_strdup_printf("/lib/modules/%s", kver);
        if (!mods)
                return -ENOMEM;
        *ret_kernel = TAKE_PTR(kernel);
        *ret_kver = TAKE_PTR(kver);
        *ret_modules_dir = TAKE_PTR(mods);
        return 0;
}
