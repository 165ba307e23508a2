/*
 * The pod image, read back with libarchive, json-c and OpenSSL's SHA-256: none of them shares
 * code with the writer (its own ustar and gzip framing and common/sha256.c).
 */
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "cleanup.h"
#include "podimage.h"
#include "strutil.h"

#if defined(__aarch64__)
#define ARCH "arm64"
#else
#define ARCH "amd64"
#endif

/* ---- helpers ---- */

static char *tmpdir_new(void)
{
        const char *base = getenv("TMPDIR");
        char *d = sh_strdup_printf("%s/runt-podimage-XXXXXX", base && *base ? base : "/tmp");

        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

static void tmpdir_free(char *d)
{
        if (d)
                assert_int_equal(sh_rm_rf(d), 0);
        free(d);
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
        unsigned char md[32];
        unsigned n = 0;

        assert_int_equal(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL), 1);
        assert_int_equal(n, 32);
        for (unsigned i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* A fake agent: a shebang and @len bytes of a fixed pseudo-random pattern seeded by @seed. */
static char *agent_write(const char *dir, const char *name, size_t len, unsigned seed,
                         unsigned char **ret_data)
{
        char *path = sh_path_join(dir, name);
        unsigned char *d = malloc(len);
        uint32_t x = seed * 2654435761u + 1;

        assert_non_null(path);
        assert_non_null(d);
        for (size_t i = 0; i < len; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                /* a shebang, then bytes from a small alphabet: runs for deflate to find */
                d[i] = i < 12 ? (unsigned char)"#!fake-agent"[i] : (unsigned char)((x & 0xff) % 7);
        }
        assert_int_equal(sh_write_file_replace(path, d, len, 0755), 0);
        if (ret_data)
                *ret_data = d;
        else
                free(d);
        return path;
}

struct member {
        char *name;
        int type; /* AE_IFDIR, AE_IFREG */
        unsigned mode;
        long long uid, gid, mtime;
        unsigned char *data;
        size_t len;
};

struct members {
        struct member v[32];
        size_t n;
};

static void members_done(struct members *m)
{
        for (size_t i = 0; i < m->n; i++) {
                free(m->v[i].name);
                free(m->v[i].data);
        }
        m->n = 0;
}

/* Reads a tar (@gzip: a .tar.gz) from memory with libarchive, tar formats only. */
static void tar_read(const void *buf, size_t len, bool gzip, struct members *m)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        int r;

        assert_non_null(a);
        assert_int_equal(archive_read_support_format_tar(a), ARCHIVE_OK);
        if (gzip)
                assert_int_equal(archive_read_support_filter_gzip(a), ARCHIVE_OK);
        assert_int_equal(archive_read_open_memory(a, buf, len), ARCHIVE_OK);
        m->n = 0;
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                struct member *x = &m->v[m->n++];
                la_int64_t size = archive_entry_size(e);
                size_t got = 0;

                assert_true(m->n <= SH_ARRAY_SIZE(m->v));
                x->name = strdup(archive_entry_pathname(e));
                x->type = (int)archive_entry_filetype(e);
                x->mode = (unsigned)archive_entry_perm(e) |
                          (unsigned)(archive_entry_mode(e) & (S_ISUID | S_ISGID | S_ISVTX));
                x->uid = archive_entry_uid(e);
                x->gid = archive_entry_gid(e);
                x->mtime = archive_entry_mtime(e);
                x->len = (size_t)size;
                x->data = malloc(x->len + 1);
                assert_non_null(x->data);
                while (got < x->len) {
                        la_ssize_t n = archive_read_data(a, x->data + got, x->len - got);

                        assert_true(n > 0);
                        got += (size_t)n;
                }
                x->data[x->len] = '\0';
        }
        assert_int_equal(r, ARCHIVE_EOF);
        assert_int_equal(archive_filter_code(a, 0),
                         gzip ? ARCHIVE_FILTER_GZIP : ARCHIVE_FILTER_NONE);
        assert_true((archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_TAR);
        assert_int_equal(archive_read_free(a), ARCHIVE_OK);
}

/* The uncompressed bytes of a gzip stream, by libarchive's raw format. */
static unsigned char *gunzip(const void *buf, size_t len, size_t *ret_len)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        unsigned char *out = NULL;
        size_t n = 0, cap = 0;
        la_ssize_t r;

        assert_int_equal(archive_read_support_format_raw(a), ARCHIVE_OK);
        assert_int_equal(archive_read_support_filter_gzip(a), ARCHIVE_OK);
        assert_int_equal(archive_read_open_memory(a, buf, len), ARCHIVE_OK);
        assert_int_equal(archive_read_next_header(a, &e), ARCHIVE_OK);
        for (;;) {
                if (cap - n < 65536) {
                        cap = cap ? cap * 2 : 1 << 20;
                        out = realloc(out, cap);
                        assert_non_null(out);
                }
                r = archive_read_data(a, out + n, cap - n);
                assert_true(r >= 0);
                if (r == 0)
                        break;
                n += (size_t)r;
        }
        archive_read_free(a);
        *ret_len = n;
        return out;
}

static const struct member *member_find(const struct members *m, const char *name)
{
        for (size_t i = 0; i < m->n; i++)
                if (strcmp(m->v[i].name, name) == 0)
                        return &m->v[i];
        return NULL;
}

static json_object *jparse(const struct member *x)
{
        json_object *o = json_tokener_parse((const char *)x->data);

        assert_non_null(o);
        return o;
}

static json_object *jget(json_object *o, const char *key, json_type t)
{
        json_object *v = NULL;

        assert_true(json_object_object_get_ex(o, key, &v));
        assert_true(json_object_is_type(v, t));
        return v;
}

static const char *jstr(json_object *o, const char *key)
{
        return json_object_get_string(jget(o, key, json_type_string));
}

static int64_t jint(json_object *o, const char *key)
{
        return json_object_get_int64(jget(o, key, json_type_int));
}

/* The blob a descriptor names, checked: "sha256:<64 hex>", present, its size. */
static const struct member *blob_of(const struct members *m, json_object *desc,
                                    const char *media_type)
{
        const char *digest = jstr(desc, "digest");
        const struct member *b;
        char path[128];

        assert_string_equal(jstr(desc, "mediaType"), media_type);
        assert_int_equal(strlen(digest), 71);
        assert_memory_equal(digest, "sha256:", 7);
        snprintf(path, sizeof(path), "blobs/sha256/%s", digest + 7);
        b = member_find(m, path);
        assert_non_null(b);
        assert_int_equal(b->type, AE_IFREG);
        assert_int_equal(jint(desc, "size"), (int64_t)b->len);
        return b;
}

static unsigned char *file_read(const char *path, size_t *ret_len)
{
        char *buf = NULL;

        assert_int_equal(sh_read_file(path, 64u << 20, &buf, ret_len), 0);
        return (unsigned char *)buf;
}

/* ---- tests ---- */

static void test_layout(void **state)
{
        (void)state;
        static const struct {
                const char *name;
                int type;
                unsigned mode;
        } want_layer[] = {
                {"dev/", AE_IFDIR, 0755},
                {"etc/", AE_IFDIR, 0755},
                {"etc/hostname", AE_IFREG, 0644},
                {"etc/hosts", AE_IFREG, 0644},
                {"etc/resolv.conf", AE_IFREG, 0644},
                {"proc/", AE_IFDIR, 0555},
                {"root/", AE_IFDIR, 0700},
                {"run/", AE_IFDIR, 0755},
                {"sbin/", AE_IFDIR, 0755},
                {"sbin/runt-agent", AE_IFREG, 0755},
                {"sys/", AE_IFDIR, 0555},
                {"tmp/", AE_IFDIR, 01777},
                {"var/", AE_IFDIR, 0755},
                {"var/lib/", AE_IFDIR, 0755},
                {"var/lib/runt/", AE_IFDIR, 0700},
        };
        char *dir = tmpdir_new(), *cache = sh_path_join(dir, "cache/podimage");
        unsigned char *agent_data = NULL, *arch, *plain;
        char *agent = agent_write(dir, "runt-agent", 300001, 1, &agent_data);
        char *path = NULL, *name = NULL, hex[65], want_name[64], ref[64];
        struct sh_error err = {0};
        struct members outer, layer;
        json_object *index, *manifest, *config, *o, *a;
        const struct member *mb, *cb, *lb, *x;
        size_t len, plain_len;

        assert_int_equal(pve_podimage_build(agent, cache, &path, &name, &err), 0);

        /* The name: the first 16 hex digits of SHA-256(format, NUL, agent). */
        {
                size_t fl = sizeof(PVE_PODIMAGE_FORMAT);
                unsigned char *cat = malloc(fl + 300001);

                memcpy(cat, PVE_PODIMAGE_FORMAT, fl);
                memcpy(cat + fl, agent_data, 300001);
                sha256_hex(cat, fl + 300001, hex);
                free(cat);
        }
        snprintf(want_name, sizeof(want_name), "runt-pod-%.16s.tar", hex);
        assert_string_equal(name, want_name);
        {
                char *want_path = sh_path_join(cache, want_name);

                assert_string_equal(path, want_path);
                free(want_path);
        }
        {
                char n2[PVE_PODIMAGE_NAME_MAX];

                assert_int_equal(pve_podimage_name(agent, n2, &err), 0);
                assert_string_equal(n2, name);
        }

        arch = file_read(path, &len);
        assert_int_equal(len % 512, 0);
        tar_read(arch, len, false, &outer);

        /* The members, in name order: what pve-container's archive_is_oci_format lists. */
        assert_int_equal(outer.n, 7);
        assert_string_equal(outer.v[0].name, "blobs/");
        assert_int_equal(outer.v[0].type, AE_IFDIR);
        assert_string_equal(outer.v[1].name, "blobs/sha256/");
        assert_int_equal(outer.v[1].type, AE_IFDIR);
        for (size_t i = 2; i < 5; i++)
                assert_memory_equal(outer.v[i].name, "blobs/sha256/", 13);
        assert_string_equal(outer.v[5].name, "index.json");
        assert_string_equal(outer.v[6].name, "oci-layout");
        for (size_t i = 0; i < outer.n; i++) {
                if (i > 0)
                        assert_true(strcmp(outer.v[i - 1].name, outer.v[i].name) < 0);
                assert_int_equal(outer.v[i].uid, 0);
                assert_int_equal(outer.v[i].gid, 0);
                assert_int_equal(outer.v[i].mtime, 0);
        }
        /* Every blob is named by the SHA-256 of its content. */
        for (size_t i = 2; i < 5; i++) {
                assert_int_equal(outer.v[i].type, AE_IFREG);
                sha256_hex(outer.v[i].data, outer.v[i].len, hex);
                assert_string_equal(outer.v[i].name + 13, hex);
        }

        o = jparse(member_find(&outer, "oci-layout"));
        assert_string_equal(jstr(o, "imageLayoutVersion"), "1.0.0");
        json_object_put(o);

        index = jparse(member_find(&outer, "index.json"));
        assert_int_equal(jint(index, "schemaVersion"), 2);
        assert_string_equal(jstr(index, "mediaType"), "application/vnd.oci.image.index.v1+json");
        a = jget(index, "manifests", json_type_array);
        assert_int_equal(json_object_array_length(a), 1);
        o = json_object_array_get_idx(a, 0);
        mb = blob_of(&outer, o, "application/vnd.oci.image.manifest.v1+json");
        snprintf(ref, sizeof(ref), "%.*s", (int)strlen(name) - 4, name);
        assert_string_equal(
                jstr(jget(o, "annotations", json_type_object), "org.opencontainers.image.ref.name"),
                ref);
        assert_string_equal(jstr(jget(o, "platform", json_type_object), "architecture"), ARCH);
        assert_string_equal(jstr(jget(o, "platform", json_type_object), "os"), "linux");

        manifest = jparse(mb);
        assert_int_equal(jint(manifest, "schemaVersion"), 2);
        assert_string_equal(jstr(manifest, "mediaType"),
                            "application/vnd.oci.image.manifest.v1+json");
        cb = blob_of(&outer, jget(manifest, "config", json_type_object),
                     "application/vnd.oci.image.config.v1+json");
        a = jget(manifest, "layers", json_type_array);
        assert_int_equal(json_object_array_length(a), 1);
        lb = blob_of(&outer, json_object_array_get_idx(a, 0),
                     "application/vnd.oci.image.layer.v1.tar+gzip");
        assert_ptr_not_equal(cb, lb);
        assert_ptr_not_equal(mb, lb);

        /* A gzip stream with no mtime in its header (bytes 4-7), so rebuilds match. */
        assert_true(lb->len > 10);
        assert_int_equal(lb->data[0], 0x1f);
        assert_int_equal(lb->data[1], 0x8b);
        assert_int_equal(lb->data[4] | lb->data[5] | lb->data[6] | lb->data[7], 0);

        config = jparse(cb);
        assert_string_equal(jstr(config, "architecture"), ARCH);
        assert_string_equal(jstr(config, "os"), "linux");
        o = jget(config, "config", json_type_object);
        a = jget(o, "Entrypoint", json_type_array);
        assert_int_equal(json_object_array_length(a), 2);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(a, 0)),
                            "/sbin/runt-agent");
        assert_string_equal(json_object_get_string(json_object_array_get_idx(a, 1)), "--ct");
        assert_int_equal(json_object_array_length(jget(o, "Env", json_type_array)), 0);
        assert_string_equal(jstr(o, "StopSignal"), "SIGTERM");
        assert_false(json_object_object_get_ex(o, "Cmd", NULL)); /* PVE appends Cmd */
        o = jget(config, "rootfs", json_type_object);
        assert_string_equal(jstr(o, "type"), "layers");
        a = jget(o, "diff_ids", json_type_array);
        assert_int_equal(json_object_array_length(a), 1);
        /* diff_ids: the digest of the uncompressed layer. */
        plain = gunzip(lb->data, lb->len, &plain_len);
        sha256_hex(plain, plain_len, hex);
        assert_memory_equal(json_object_get_string(json_object_array_get_idx(a, 0)), "sha256:", 7);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(a, 0)) + 7, hex);
        assert_int_equal(plain_len % 512, 0);
        free(plain);

        /* The layer's members, sorted, owned by root, mtime 0, the agent's bytes. */
        tar_read(lb->data, lb->len, true, &layer);
        assert_int_equal(layer.n, SH_ARRAY_SIZE(want_layer));
        for (size_t i = 0; i < layer.n; i++) {
                assert_string_equal(layer.v[i].name, want_layer[i].name);
                assert_int_equal(layer.v[i].type, want_layer[i].type);
                assert_int_equal(layer.v[i].mode, want_layer[i].mode);
                assert_int_equal(layer.v[i].uid, 0);
                assert_int_equal(layer.v[i].gid, 0);
                assert_int_equal(layer.v[i].mtime, 0);
                if (i > 0)
                        assert_true(strcmp(layer.v[i - 1].name, layer.v[i].name) < 0);
        }
        x = member_find(&layer, "sbin/runt-agent");
        assert_int_equal(x->len, 300001);
        assert_memory_equal(x->data, agent_data, 300001);
        x = member_find(&layer, "etc/hosts");
        assert_non_null(strstr((const char *)x->data, "127.0.0.1\tlocalhost\n"));
        assert_string_equal((const char *)member_find(&layer, "etc/hostname")->data, "localhost\n");
        assert_int_equal(member_find(&layer, "etc/resolv.conf")->len, 0);
        /* No os-release: PVE's OS detection dies on one with an ID it does not know. */
        assert_null(member_find(&layer, "etc/os-release"));

        json_object_put(config);
        json_object_put(manifest);
        json_object_put(index);
        members_done(&layer);
        members_done(&outer);
        free(arch);
        free(agent_data);
        free(path);
        free(name);
        free(agent);
        free(cache);
        tmpdir_free(dir);
}

/* The same agent into two cache dirs: the same bytes; the cache dir holds the archive only. */
static void test_deterministic(void **state)
{
        (void)state;
        char *dir = tmpdir_new(), *agent = agent_write(dir, "agent", 70000, 2, NULL);
        char *c1 = sh_path_join(dir, "c1"), *c2 = sh_path_join(dir, "c2");
        char *p1 = NULL, *p2 = NULL, *n1 = NULL, *n2 = NULL;
        unsigned char *b1, *b2;
        size_t l1, l2;
        struct sh_error err = {0};

        assert_int_equal(pve_podimage_build(agent, c1, &p1, &n1, &err), 0);
        assert_int_equal(pve_podimage_build(agent, c2, &p2, &n2, &err), 0);
        assert_string_equal(n1, n2);
        assert_string_not_equal(p1, p2);
        b1 = file_read(p1, &l1);
        b2 = file_read(p2, &l2);
        assert_int_equal(l1, l2);
        assert_memory_equal(b1, b2, l1);
        {
                DIR *d = opendir(c1);
                struct dirent *de;
                struct stat st;
                int n = 0;

                assert_int_equal(stat(p1, &st), 0);
                assert_int_equal(st.st_mode & 07777, 0644);
                /* Nothing else (no temp file) in the cache dir. */
                assert_non_null(d);
                while ((de = readdir(d)))
                        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                                n++;
                closedir(d);
                assert_int_equal(n, 1);
        }
        free(b1);
        free(b2);
        free(p1);
        free(p2);
        free(n1);
        free(n2);
        free(c1);
        free(c2);
        free(agent);
        tmpdir_free(dir);
}

/* A file already there is reused as it is, not rebuilt; ret_name may be NULL. */
static void test_reuse(void **state)
{
        (void)state;
        char *dir = tmpdir_new(), *agent = agent_write(dir, "agent", 5000, 3, NULL);
        char *cache = sh_path_join(dir, "cache"), *p1 = NULL, *p2 = NULL, *buf = NULL;
        struct sh_error err = {0};
        struct stat s1, s2;

        assert_int_equal(pve_podimage_build(agent, cache, &p1, NULL, &err), 0);
        assert_int_equal(stat(p1, &s1), 0);
        assert_int_equal(sh_write_file_replace(p1, "cached", 6, 0644), 0);
        assert_int_equal(stat(p1, &s1), 0);
        assert_int_equal(pve_podimage_build(agent, cache, &p2, NULL, &err), 0);
        assert_string_equal(p1, p2);
        assert_int_equal(stat(p2, &s2), 0);
        assert_int_equal(s1.st_ino, s2.st_ino);
        assert_int_equal(sh_read_file(p2, 100, &buf, NULL), 0);
        assert_string_equal(buf, "cached");
        free(buf);
        free(p1);
        free(p2);
        free(cache);
        free(agent);
        tmpdir_free(dir);
}

static void test_other_agent(void **state)
{
        (void)state;
        char *dir = tmpdir_new(), *a1 = agent_write(dir, "a1", 4096, 4, NULL);
        char *a2 = agent_write(dir, "a2", 4096, 5, NULL);
        char *p1 = NULL, *p2 = NULL, *n1 = NULL, *n2 = NULL;
        struct sh_error err = {0};

        assert_int_equal(pve_podimage_build(a1, dir, &p1, &n1, &err), 0);
        assert_int_equal(pve_podimage_build(a2, dir, &p2, &n2, &err), 0);
        assert_string_not_equal(n1, n2);
        assert_string_not_equal(p1, p2);
        assert_int_equal(access(p1, R_OK), 0);
        assert_int_equal(access(p2, R_OK), 0);
        /* Volid-safe: [A-Za-z0-9_.-] only. */
        for (const char *c = n2; *c; c++)
                assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz0123456789-_.", *c));
        free(p1);
        free(p2);
        free(n1);
        free(n2);
        free(a1);
        free(a2);
        tmpdir_free(dir);
}

static void test_errors(void **state)
{
        (void)state;
        char *dir = tmpdir_new(), *cache = sh_path_join(dir, "cache");
        char *missing = sh_path_join(dir, "no-such-agent"), *empty = sh_path_join(dir, "empty");
        char *agent = agent_write(dir, "agent", 1000, 6, NULL);
        char *path = (char *)"untouched", *name = (char *)"untouched", n[PVE_PODIMAGE_NAME_MAX];
        struct sh_error err = {0};
        struct stat st;

        assert_int_equal(pve_podimage_build(missing, cache, &path, &name, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "no-such-agent"));
        assert_string_equal(path, "untouched");
        assert_string_equal(name, "untouched");
        assert_int_equal(stat(cache, &st), -1); /* nothing made */
        assert_int_equal(pve_podimage_name(missing, n, &err), -ENOENT);

        assert_int_equal(sh_write_file_replace(empty, "", 0, 0755), 0);
        assert_int_equal(pve_podimage_build(empty, cache, &path, &name, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "empty"));

        assert_int_equal(pve_podimage_build(agent, NULL, &path, &name, &err), -EINVAL);
        assert_int_equal(pve_podimage_build(NULL, cache, &path, &name, &err), -EINVAL);
        assert_int_equal(pve_podimage_build(dir, cache, &path, &name, &err), -EISDIR);

        /* A directory where the archive would go. */
        assert_int_equal(pve_podimage_name(agent, n, &err), 0);
        {
                char *p = sh_path_join(cache, n);

                assert_int_equal(sh_mkdir_p(p, 0700), 0);
                assert_int_equal(pve_podimage_build(agent, cache, &path, &name, &err), -EEXIST);
                assert_non_null(strstr(err.msg, n));
                free(p);
        }
        assert_string_equal(path, "untouched");
        free(agent);
        free(empty);
        free(missing);
        free(cache);
        tmpdir_free(dir);
}

struct racer {
        const char *agent, *cache;
        char *path;
        int r;
};

static void *race(void *p)
{
        struct racer *x = p;
        struct sh_error err = {0};

        x->r = pve_podimage_build(x->agent, x->cache, &x->path, NULL, &err);
        return NULL;
}

/* Builders racing on one cache dir all succeed with the same complete archive. */
static void test_concurrent(void **state)
{
        (void)state;
        char *dir = tmpdir_new(), *agent = agent_write(dir, "agent", 200000, 7, NULL);
        char *cache = sh_path_join(dir, "cache"), *solo = sh_path_join(dir, "solo");
        struct racer x[4];
        pthread_t t[4];
        char *sp = NULL;
        unsigned char *a, *b;
        size_t la, lb;
        struct sh_error err = {0};

        for (int i = 0; i < 4; i++) {
                x[i] = (struct racer){.agent = agent, .cache = cache};
                assert_int_equal(pthread_create(&t[i], NULL, race, &x[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_int_equal(x[i].r, 0);
                assert_string_equal(x[i].path, x[0].path);
        }
        assert_int_equal(pve_podimage_build(agent, solo, &sp, NULL, &err), 0);
        a = file_read(x[0].path, &la);
        b = file_read(sp, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        free(a);
        free(b);
        for (int i = 0; i < 4; i++)
                free(x[i].path);
        free(sp);
        free(solo);
        free(cache);
        free(agent);
        tmpdir_free(dir);
}

int main(void)
{
        const struct CMUnitTest t[] = {
                cmocka_unit_test(test_layout), cmocka_unit_test(test_deterministic),
                cmocka_unit_test(test_reuse),  cmocka_unit_test(test_other_agent),
                cmocka_unit_test(test_errors), cmocka_unit_test(test_concurrent),
        };

        return cmocka_run_group_tests(t, NULL, NULL);
}
