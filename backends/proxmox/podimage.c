/*
 * The pod image (see podimage.h): a ustar writer and gzip (zlib) of our own, as microvm's
 * initramfs does with cpio. libarchive and libcrypto stay out of runtd (imagemgr runs them in
 * runt-unpack); the few files here need neither, and writing the headers ourselves is what
 * makes the bytes reproducible.
 */
#include "podimage.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "cleanup.h"
#include "sha256.h"
#include "strutil.h"

#define AGENT_MAX    (256u << 20)
#define TAR_BLOCK    512u
#define TAR_RECORD   10240u          /* 20 blocks, as GNU tar and libarchive pad to */
#define TAR_SIZE_MAX 077777777777ULL /* 11 octal digits */

#if defined(__x86_64__)
#define PODIMAGE_ARCH "amd64"
#elif defined(__aarch64__)
#define PODIMAGE_ARCH "arm64"
#else
#error "pod image: no OCI architecture name for this target"
#endif

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX    "application/vnd.oci.image.index.v1+json"
#define MT_CONFIG   "application/vnd.oci.image.config.v1+json"
#define MT_LAYER    "application/vnd.oci.image.layer.v1.tar+gzip"

struct pbuf {
        unsigned char *p;
        size_t len, cap;
};

static void pbuf_done(struct pbuf *b)
{
        free(b->p);
        *b = (struct pbuf){0};
}

static int pbuf_put(struct pbuf *b, const void *data, size_t len)
{
        if (len > b->cap - b->len) {
                size_t cap = b->cap ? b->cap : 64 * 1024;
                unsigned char *p;

                while (cap - b->len < len) {
                        if (cap > SIZE_MAX / 2)
                                return -ENOMEM;
                        cap *= 2;
                }
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

static int pbuf_zero(struct pbuf *b, size_t len)
{
        static const unsigned char zero[TAR_BLOCK];

        while (len) {
                size_t n = len < sizeof(zero) ? len : sizeof(zero);
                int r = pbuf_put(b, zero, n);

                if (r < 0)
                        return r;
                len -= n;
        }
        return 0;
}

/*
 * One ustar member: a directory when @data is NULL and @len 0 with @dir set. Owner 0:0 with no
 * user or group name (numeric ids are what an unpacker in a user namespace maps), mtime 0.
 */
static int tar_add(struct pbuf *b, const char *name, bool dir, unsigned mode, const void *data,
                   size_t len)
{
        unsigned char h[TAR_BLOCK] = {0};
        size_t nlen = strlen(name);
        unsigned sum = 0;
        int r;

        if (nlen == 0 || nlen >= 100)
                return -ENAMETOOLONG; /* our names are short; no prefix field needed */
        if ((unsigned long long)len > TAR_SIZE_MAX)
                return -EFBIG;
        memcpy(h, name, nlen);
        snprintf((char *)h + 100, 8, "%07o", mode & 07777);
        snprintf((char *)h + 108, 8, "%07o", 0);
        snprintf((char *)h + 116, 8, "%07o", 0);
        snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)len);
        snprintf((char *)h + 136, 12, "%011o", 0);
        h[156] = dir ? '5' : '0';
        memcpy(h + 257, "ustar", 6); /* magic with its NUL */
        memcpy(h + 263, "00", 2);
        snprintf((char *)h + 329, 8, "%07o", 0);
        snprintf((char *)h + 337, 8, "%07o", 0);
        /* The checksum is taken with its own field as eight spaces. */
        memset(h + 148, ' ', 8);
        for (size_t i = 0; i < sizeof(h); i++)
                sum += h[i];
        snprintf((char *)h + 148, 8, "%06o", sum); /* six digits, NUL, and the space stays */
        r = pbuf_put(b, h, sizeof(h));
        if (r >= 0)
                r = pbuf_put(b, data, len);
        if (r >= 0)
                r = pbuf_zero(b, (TAR_BLOCK - len % TAR_BLOCK) % TAR_BLOCK);
        return r;
}

/* The end-of-archive marker (two zero blocks), padded to a whole record. */
static int tar_finish(struct pbuf *b)
{
        int r = pbuf_zero(b, 2 * TAR_BLOCK);

        if (r >= 0)
                r = pbuf_zero(b, (TAR_RECORD - b->len % TAR_RECORD) % TAR_RECORD);
        return r;
}

/* gzip of @in with a fixed header (no name, mtime 0, OS Unix), so the bytes are reproducible. */
static int gzip_buf(const struct pbuf *in, struct pbuf *out)
{
        gz_header gh = {.os = 3};
        z_stream z = {0};
        size_t cap;
        int zr;

        if (in->len > UINT32_MAX)
                return -EFBIG; /* one deflate() call below: avail_in is a uInt */
        if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) !=
            Z_OK)
                return -ENOMEM;
        if (deflateSetHeader(&z, &gh) != Z_OK) {
                deflateEnd(&z);
                return -EIO;
        }
        cap = deflateBound(&z, (uLong)in->len) + 64;
        if (cap > UINT32_MAX) {
                deflateEnd(&z);
                return -EFBIG;
        }
        out->p = malloc(cap);
        if (!out->p) {
                deflateEnd(&z);
                return -ENOMEM;
        }
        out->cap = cap;
        z.next_in = in->p;
        z.avail_in = (uInt)in->len;
        z.next_out = out->p;
        z.avail_out = (uInt)cap;
        zr = deflate(&z, Z_FINISH);
        out->len = cap - z.avail_out;
        deflateEnd(&z);
        return zr == Z_STREAM_END ? 0 : -EIO;
}

static void hex_of(const unsigned char *sum, size_t n, char *out)
{
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = hex[sum[i] >> 4];
                out[2 * i + 1] = hex[sum[i] & 15];
        }
        out[2 * n] = '\0';
}

static void name_of(const void *agent, size_t len, char out[PVE_PODIMAGE_NAME_MAX])
{
        struct sh_sha256 c;
        unsigned char sum[32];
        char hex[17];

        sh_sha256_init(&c);
        sh_sha256_update(&c, PVE_PODIMAGE_FORMAT, sizeof(PVE_PODIMAGE_FORMAT)); /* with NUL */
        sh_sha256_update(&c, agent, len);
        sh_sha256_final(&c, sum);
        hex_of(sum, 8, hex);
        snprintf(out, PVE_PODIMAGE_NAME_MAX, "runt-pod-%s.tar", hex);
}

static int read_agent(const char *agent_path, char **ret, size_t *ret_len, struct sh_error *err)
{
        int r = sh_read_file(agent_path, AGENT_MAX, ret, ret_len);

        if (r < 0)
                return sh_err(err, r, "pod image: read agent '%s': %s", agent_path, strerror(-r));
        if (*ret_len == 0) {
                free(*ret);
                *ret = NULL;
                return sh_err(err, -EINVAL, "pod image: agent '%s' is empty", agent_path);
        }
        return 0;
}

int pve_podimage_name(const char *agent_path, char ret_name[PVE_PODIMAGE_NAME_MAX],
                      struct sh_error *err)
{
        _cleanup_free_ char *agent = NULL;
        size_t len = 0;
        int r;

        if (!agent_path || !*agent_path || !ret_name)
                return sh_err(err, -EINVAL, "pod image: no agent path");
        r = read_agent(agent_path, &agent, &len, err);
        if (r < 0)
                return r;
        name_of(agent, len, ret_name);
        return 0;
}

/*
 * The layer: the directories a CT needs, placeholders for the files PVE leaves alone in an
 * unmanaged CT, and the agent. Sorted by name (byte order).
 */
static int build_layer(const void *agent, size_t agent_len, struct pbuf *b)
{
        static const char hosts[] = "127.0.0.1\tlocalhost\n"
                                    "::1\tlocalhost ip6-localhost ip6-loopback\n";
        static const char hostname[] = "localhost\n";
        enum { ENT_DIR, ENT_FILE, ENT_AGENT };
        static const struct {
                const char *name;
                unsigned mode;
                int kind;
                const char *data;
                size_t len;
        } ents[] = {
                {"dev/", 0755, ENT_DIR, NULL, 0},
                {"etc/", 0755, ENT_DIR, NULL, 0},
                {"etc/hostname", 0644, ENT_FILE, hostname, sizeof(hostname) - 1},
                {"etc/hosts", 0644, ENT_FILE, hosts, sizeof(hosts) - 1},
                {"etc/resolv.conf", 0644, ENT_FILE, NULL, 0},
                {"proc/", 0555, ENT_DIR, NULL, 0},
                {"root/", 0700, ENT_DIR, NULL, 0},
                {"run/", 0755, ENT_DIR, NULL, 0},
                {"sbin/", 0755, ENT_DIR, NULL, 0},
                {"sbin/runt-agent", 0755, ENT_AGENT, NULL, 0}, /* PVE_PODIMAGE_AGENT */
                {"sys/", 0555, ENT_DIR, NULL, 0},
                {"tmp/", 01777, ENT_DIR, NULL, 0},
                {"var/", 0755, ENT_DIR, NULL, 0},
                {"var/lib/", 0755, ENT_DIR, NULL, 0},
                {"var/lib/runt/", 0700, ENT_DIR, NULL, 0},
        };
        int r;

        for (size_t i = 0; i < SH_ARRAY_SIZE(ents); i++) {
                bool is_agent = ents[i].kind == ENT_AGENT;

                r = tar_add(b, ents[i].name, ents[i].kind == ENT_DIR, ents[i].mode,
                            is_agent ? agent : ents[i].data, is_agent ? agent_len : ents[i].len);
                if (r < 0)
                        return r;
        }
        return tar_finish(b);
}

struct blob {
        char digest[72]; /* "sha256:" + 64 hex */
        unsigned char *data;
        size_t len;
};

static int blob_cmp(const void *a, const void *b)
{
        return strcmp(((const struct blob *)a)->digest, ((const struct blob *)b)->digest);
}

/* The archive itself: the layout files and the three blobs, in name order. */
static int build_archive(const char *agent, size_t agent_len, const char *ref, struct pbuf *out)
{
        _cleanup_free_ char *config = NULL, *manifest = NULL, *index = NULL;
        static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
        struct pbuf tar = {0}, gz = {0};
        struct blob blobs[3];
        char diff_id[72];
        int r;

        r = build_layer(agent, agent_len, &tar);
        if (r >= 0)
                r = gzip_buf(&tar, &gz);
        if (r < 0)
                goto out;
        sh_sha256_digest(tar.p, tar.len, diff_id); /* rootfs.diff_ids: the uncompressed tar */
        blobs[0] = (struct blob){.data = gz.p, .len = gz.len};
        sh_sha256_digest(gz.p, gz.len, blobs[0].digest);

        config = sh_strdup_printf("{\"architecture\":\"" PODIMAGE_ARCH "\",\"os\":\"linux\","
                                  "\"config\":{\"Env\":[],"
                                  "\"Entrypoint\":[\"" PVE_PODIMAGE_AGENT "\",\"--ct\"],"
                                  "\"StopSignal\":\"SIGTERM\"},"
                                  "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
                                  diff_id);
        if (!config) {
                r = -ENOMEM;
                goto out;
        }
        blobs[1] = (struct blob){.data = (unsigned char *)config, .len = strlen(config)};
        sh_sha256_digest(config, blobs[1].len, blobs[1].digest);

        manifest = sh_strdup_printf(
                "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\","
                "\"config\":{\"mediaType\":\"" MT_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
                "\"layers\":[{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"%s\",\"size\":%zu}]}",
                blobs[1].digest, blobs[1].len, blobs[0].digest, blobs[0].len);
        if (!manifest) {
                r = -ENOMEM;
                goto out;
        }
        blobs[2] = (struct blob){.data = (unsigned char *)manifest, .len = strlen(manifest)};
        sh_sha256_digest(manifest, blobs[2].len, blobs[2].digest);

        index = sh_strdup_printf(
                "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX "\","
                "\"manifests\":[{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\","
                "\"size\":%zu,\"platform\":{\"architecture\":\"" PODIMAGE_ARCH "\","
                "\"os\":\"linux\"},"
                "\"annotations\":{\"org.opencontainers.image.ref.name\":\"%s\"}}]}",
                blobs[2].digest, blobs[2].len, ref);
        if (!index) {
                r = -ENOMEM;
                goto out;
        }

        qsort(blobs, SH_ARRAY_SIZE(blobs), sizeof(blobs[0]), blob_cmp);
        r = tar_add(out, "blobs/", true, 0755, NULL, 0);
        if (r >= 0)
                r = tar_add(out, "blobs/sha256/", true, 0755, NULL, 0);
        for (size_t i = 0; r >= 0 && i < SH_ARRAY_SIZE(blobs); i++) {
                char name[100];

                snprintf(name, sizeof(name), "blobs/sha256/%s", blobs[i].digest + 7);
                r = tar_add(out, name, false, 0644, blobs[i].data, blobs[i].len);
        }
        if (r >= 0)
                r = tar_add(out, "index.json", false, 0644, index, strlen(index));
        if (r >= 0)
                r = tar_add(out, "oci-layout", false, 0644, layout, sizeof(layout) - 1);
        if (r >= 0)
                r = tar_finish(out);
out:
        pbuf_done(&tar);
        pbuf_done(&gz);
        return r;
}

int pve_podimage_build(const char *agent_path, const char *cache_dir, char **ret_path,
                       char **ret_name, struct sh_error *err)
{
        _cleanup_free_ char *agent = NULL, *path = NULL, *name_dup = NULL;
        char name[PVE_PODIMAGE_NAME_MAX], ref[PVE_PODIMAGE_NAME_MAX];
        struct pbuf out = {0};
        struct stat st;
        size_t agent_len = 0;
        int r;

        if (!agent_path || !*agent_path || !cache_dir || !*cache_dir || !ret_path)
                return sh_err(err, -EINVAL, "pod image: agent path and cache dir needed");
        r = read_agent(agent_path, &agent, &agent_len, err);
        if (r < 0)
                return r;
        name_of(agent, agent_len, name);
        path = sh_path_join(cache_dir, name);
        name_dup = strdup(name);
        if (!path || !name_dup)
                return sh_err(err, -ENOMEM, "pod image: out of memory");

        if (lstat(path, &st) == 0) {
                if (!S_ISREG(st.st_mode))
                        return sh_err(err, -EEXIST, "pod image: '%s' is not a regular file", path);
                /* Written whole and fsynced before its rename: a file here is complete. */
                goto done;
        }
        if (errno != ENOENT) {
                r = -errno;
                return sh_err(err, r, "pod image: stat '%s': %s", path, strerror(-r));
        }

        r = sh_mkdir_p(cache_dir, 0700);
        if (r < 0)
                return sh_err(err, r, "pod image: mkdir '%s': %s", cache_dir, strerror(-r));
        /* The index's ref name: the file name without ".tar". */
        snprintf(ref, sizeof(ref), "%.*s", (int)(strlen(name) - 4), name);
        r = build_archive(agent, agent_len, ref, &out);
        if (r < 0) {
                pbuf_done(&out);
                return sh_err(err, r, "pod image: build from '%s': %s", agent_path, strerror(-r));
        }
        /* temp file + fsync + rename: concurrent builders write the same bytes. */
        r = sh_write_file_atomic(path, out.p, out.len, 0644);
        pbuf_done(&out);
        if (r < 0)
                return sh_err(err, r, "pod image: write '%s': %s", path, strerror(-r));
done:
        *ret_path = TAKE_PTR(path);
        if (ret_name)
                *ret_name = TAKE_PTR(name_dup);
        return 0;
}
