#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "cleanup.h"
#include "config.h"
#include "imagemgr-internal.h"
#include "imagemgr-pull.h"
#include "imagemgr.h"
#include "sha256.h"
#include "store.h"
#include "strutil.h"

/* ------------------------------------------------------------ references */

static void test_ref_normalize(void **state)
{
        static const char *const cases[][2] = {
                {"busybox", "docker.io/library/busybox:latest"},
                {"busybox:1.36", "docker.io/library/busybox:1.36"},
                {"library/busybox", "docker.io/library/busybox:latest"},
                {"docker.io/busybox", "docker.io/library/busybox:latest"},
                {"index.docker.io/library/busybox:x", "docker.io/library/busybox:x"},
                {"foo/bar", "docker.io/foo/bar:latest"},
                {"localhost/foo", "localhost/foo:latest"},
                {"localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"},
                {"127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"},
                {"quay.io/a-b/c_d.e__f:V1.0-x_y", "quay.io/a-b/c_d.e__f:V1.0-x_y"},
                {"busybox@sha256:"
                 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                 "docker.io/library/busybox@sha256:"
                 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
                {"busybox:tag@sha256:"
                 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                 "docker.io/library/busybox@sha256:"
                 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
                {"[::1]:5000/x:y", "[::1]:5000/x:y"},
        };
        (void)state;
        for (size_t i = 0; i < SH_ARRAY_SIZE(cases); i++) {
                struct sh_error err = {0};
                char *out = NULL;

                if (img_ref_normalize(cases[i][0], &out, &err) != 0)
                        fail_msg("%s: %s", cases[i][0], err.msg);
                assert_string_equal(out, cases[i][1]);
                free(out);
        }
}

static void test_ref_invalid(void **state)
{
        char tag300[320];
        static const char *const bad[] = {
                "",
                "Busybox",
                "docker.io/UPPER/case",
                "UPPER/case",
                "a b",
                "name:tag:extra",
                "x@sha256:short",
                "x@md5:0123",
                "a//b",
                "a/-b",
                "a/b-",
                "a..b",
                "http://host/x",
                "host:/x",
                "host:99999999/x",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "x\n",
                ":tag",
                "x:",
                "x:-tag",
                "../x",
        };
        (void)state;
        for (size_t i = 0; i < SH_ARRAY_SIZE(bad); i++) {
                struct sh_error err = {0};
                char *out = NULL;

                if (img_ref_normalize(bad[i], &out, &err) != -EINVAL)
                        fail_msg("'%s' was accepted as '%s'", bad[i], out ? out : "?");
                assert_null(out);
                assert_true(err.msg[0] != '\0');
        }
        memset(tag300, 'a', sizeof(tag300));
        memcpy(tag300, "x:", 2);
        tag300[300] = '\0';
        {
                struct sh_error err = {0};
                char *out = NULL;

                assert_int_equal(img_ref_normalize(tag300, &out, &err), -EINVAL);
                assert_non_null(strstr(err.msg, "tag"));
        }
}

/* ------------------------------------------------------------ digests */

static char *tmpdir_new(void)
{
        char *d = strdup("/tmp/runt-imgtest-XXXXXX");

        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

/* FIPS 180-4 example vectors, split updates, and the file form. */
static void test_sha256_vectors(void **state)
{
        static const char m56[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        _cleanup_free_ char *mil = malloc(1000000);
        _cleanup_free_ char *dir = NULL, *path = NULL;
        struct sh_sha256 c;
        unsigned char md[32];
        img_digest d, d2;
        uint64_t size = 0;
        char b64[16];
        FILE *f;

        (void)state;
        img_sha256("", 0, d);
        assert_string_equal(
                d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        img_sha256(m56, strlen(m56), d);
        assert_string_equal(
                d, "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        assert_non_null(mil);
        memset(mil, 'a', 1000000);
        img_sha256(mil, 1000000, d);
        assert_string_equal(
                d, "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        /* Any split of the input gives the same digest. */
        for (size_t step = 1; step < 200; step += 37) {
                sh_sha256_init(&c);
                for (size_t off = 0; off < 1000000; off += step)
                        sh_sha256_update(&c, mil + off,
                                         off + step > 1000000 ? 1000000 - off : step);
                sh_sha256_final(&c, md);
                assert_int_equal(md[0], 0xcd);
                assert_int_equal(md[31], 0xd0);
        }
        dir = tmpdir_new();
        path = sh_path_join(dir, "f");
        f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(mil, 1, 1000000, f), 1000000);
        fclose(f);
        assert_int_equal(img_sha256_file(path, &size, d2), 0);
        assert_int_equal(size, 1000000);
        assert_string_equal(d2, d);
        assert_int_equal(img_sha256_file("/nonexistent", &size, d2), -ENOENT);
        unlink(path);
        rmdir(dir);

        sh_base64_encode("", 0, b64);
        assert_string_equal(b64, "");
        sh_base64_encode("f", 1, b64);
        assert_string_equal(b64, "Zg==");
        sh_base64_encode("fo", 2, b64);
        assert_string_equal(b64, "Zm8=");
        sh_base64_encode("foobar", 6, b64);
        assert_string_equal(b64, "Zm9vYmFy");
}

static void test_digests(void **state)
{
        img_digest d, c;

        (void)state;
        img_sha256("abc", 3, d);
        assert_string_equal(
                d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        img_chain_id(NULL, d, c);
        assert_string_equal(c, d);
        /* chain(parent, diff) = sha256("<parent> <diff>") */
        img_chain_id("sha256:aa", "sha256:bb", c);
        img_sha256("sha256:aa sha256:bb", 19, d);
        assert_string_equal(c, d);
        assert_true(img_valid_digest(
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        assert_false(img_valid_digest(
                "sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        assert_false(img_valid_digest("sha256:ba78"));
}

/* ------------------------------------------------------------ tar building */

struct tent {
        const char *path;
        mode_t type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, or 0 for a hard link */
        mode_t perm;
        const char *data; /* file content, symlink or hard link target */
        int uid, gid;
        const char *xattr; /* "name=value" */
};

/* Writes @ents as a tar (gzip when @gz) to @path. */
static void write_tar(const char *path, const struct tent *ents, size_t n, bool gz)
{
        struct archive *a = archive_write_new();
        struct archive_entry *e = archive_entry_new();

        archive_write_set_format_pax_restricted(a);
        if (gz)
                archive_write_add_filter_gzip(a);
        assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                const struct tent *t = &ents[i];
                size_t len = t->type == AE_IFREG && t->data ? strlen(t->data) : 0;

                archive_entry_clear(e);
                archive_entry_set_pathname(e, t->path);
                archive_entry_set_uid(e, t->uid);
                archive_entry_set_gid(e, t->gid);
                archive_entry_set_mtime(e, 1700000000, 0);
                if (t->type == 0) {
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_perm(e, 0644);
                        archive_entry_set_hardlink(e, t->data);
                } else {
                        archive_entry_set_filetype(e, t->type);
                        archive_entry_set_perm(e, t->perm ? t->perm : 0755);
                        if (t->type == AE_IFLNK)
                                archive_entry_set_symlink(e, t->data);
                        archive_entry_set_size(e, (la_int64_t)len);
                }
                if (t->xattr) {
                        const char *eq = strchr(t->xattr, '=');
                        char name[64];

                        snprintf(name, sizeof(name), "%.*s", (int)(eq - t->xattr), t->xattr);
                        archive_entry_xattr_add_entry(e, name, eq + 1, strlen(eq + 1));
                }
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                if (len)
                        assert_int_equal(archive_write_data(a, t->data, len), (la_ssize_t)len);
        }
        archive_entry_free(e);
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
}

static int rm_cb(const char *p, const struct stat *st, int f, struct FTW *w)
{
        (void)st;
        (void)w;
        return f == FTW_DP ? rmdir(p) : unlink(p);
}

static void rm_tree(const char *d)
{
        nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static bool have_root(void)
{
        return geteuid() == 0;
}

static void test_unpack_layer(void **state)
{
        static const struct tent ents[] = {
                {"./", AE_IFDIR, 0755, NULL, 0, 0, NULL},
                {"./etc/", AE_IFDIR, 0755, NULL, 0, 0, NULL},
                {"./etc/secret", AE_IFREG, 0640, "s3cret\n", 1234, 5678, "user.test=hello"},
                {"etc/link", 0, 0, "etc/secret", 0, 0, NULL},
                {"bin/sh", AE_IFLNK, 0777, "/bin/busybox", 0, 0, NULL},
                {"gone/.wh.file", AE_IFREG, 0644, NULL, 0, 0, NULL},
                {"opq/.wh..wh..opq", AE_IFREG, 0644, NULL, 0, 0, NULL},
                {"opq/new", AE_IFREG, 0600, "n", 0, 0, "trusted.overlay.opaque=y"},
                {".wh..wh.plnk/123", AE_IFREG, 0644, "x", 0, 0, NULL},
        };
        _cleanup_free_ char *dir = tmpdir_new();
        _cleanup_free_ char *dest = sh_path_join(dir, "layer");
        _cleanup_free_ char *gz = sh_path_join(dir, "l.tgz");
        _cleanup_free_ char *plain = sh_path_join(dir, "l.tar");
        struct img_unpack_result res = {0};
        struct sh_error err = {0};
        img_digest blob_d, tar_d;
        char buf[32], path[512];
        struct stat st, st2;
        ssize_t n;

        (void)state;
        if (!have_root()) {
                rm_tree(dir);
                skip();
        }
        write_tar(gz, ents, SH_ARRAY_SIZE(ents), true);
        write_tar(plain, ents, SH_ARRAY_SIZE(ents), false);
        assert_int_equal(img_sha256_file(gz, NULL, blob_d), 0);
        assert_int_equal(img_sha256_file(plain, NULL, tar_d), 0);
        assert_int_equal(mkdir(dest, 0700), 0);

        if (img_unpack_layer(gz, dest, &res, &err) != 0)
                fail_msg("unpack: %s", err.msg);
        assert_string_equal(res.digest, blob_d);
        assert_string_equal(res.diff_id, tar_d);
        assert_int_equal(res.entries, SH_ARRAY_SIZE(ents));

        snprintf(path, sizeof(path), "%s/etc/secret", dest);
        assert_int_equal(lstat(path, &st), 0);
        assert_int_equal(st.st_uid, 1234);
        assert_int_equal(st.st_gid, 5678);
        assert_int_equal(st.st_mode & 07777, 0640);
        n = getxattr(path, "user.test", buf, sizeof(buf));
        assert_int_equal(n, 5);
        assert_memory_equal(buf, "hello", 5);
        snprintf(path, sizeof(path), "%s/etc/link", dest);
        assert_int_equal(lstat(path, &st2), 0);
        assert_int_equal(st2.st_ino, st.st_ino);
        snprintf(path, sizeof(path), "%s/bin/sh", dest);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISLNK(st.st_mode));
        n = readlink(path, buf, sizeof(buf));
        assert_int_equal(n, 12);
        /* Whiteouts: a 0:0 char device, and the opaque xattr on the directory. */
        snprintf(path, sizeof(path), "%s/gone/file", dest);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(st.st_rdev, makedev(0, 0));
        snprintf(path, sizeof(path), "%s/gone/.wh.file", dest);
        assert_int_equal(lstat(path, &st), -1);
        snprintf(path, sizeof(path), "%s/opq", dest);
        n = getxattr(path, "trusted.overlay.opaque", buf, sizeof(buf));
        assert_int_equal(n, 1);
        assert_int_equal(buf[0], 'y');
        /* A layer cannot set overlay xattrs of its own on a file. */
        snprintf(path, sizeof(path), "%s/opq/new", dest);
        assert_int_equal(getxattr(path, "trusted.overlay.opaque", buf, sizeof(buf)), -1);
        snprintf(path, sizeof(path), "%s/.wh..wh.plnk", dest);
        assert_int_equal(lstat(path, &st), -1);
        snprintf(path, sizeof(path), "%s", dest);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0755);
        rm_tree(dir);
}

/* Each hostile layer is refused and writes nothing outside its directory. */
static void test_unpack_hostile(void **state)
{
        static const struct tent dotdot[] = {{"../escape", AE_IFREG, 0644, "x", 0, 0, NULL}};
        static const struct tent dotdot_mid[] = {
                {"a/../../escape", AE_IFREG, 0644, "x", 0, 0, NULL}};
        static const struct tent absolute[] = {{"/escape", AE_IFREG, 0644, "x", 0, 0, NULL}};
        static const struct tent through_link[] = {
                {"evil", AE_IFLNK, 0777, "..", 0, 0, NULL},
                {"evil/escape", AE_IFREG, 0644, "x", 0, 0, NULL},
        };
        static const struct tent through_abs_link[] = {
                {"evil", AE_IFLNK, 0777, "/", 0, 0, NULL},
                {"evil/escape", AE_IFREG, 0644, "x", 0, 0, NULL},
        };
        static const struct tent hardlink_out[] = {{"h", 0, 0, "../../escape", 0, 0, NULL}};
        static const struct tent whiteout_link[] = {
                {"evil", AE_IFLNK, 0777, "..", 0, 0, NULL},
                {"evil/.wh.escape", AE_IFREG, 0644, NULL, 0, 0, NULL},
        };
        static const struct {
                const char *name;
                const struct tent *e;
                size_t n;
        } cases[] = {
                {"dotdot", dotdot, 1},
                {"dotdot-mid", dotdot_mid, 1},
                {"absolute", absolute, 1},
                {"through-link", through_link, 2},
                {"through-abs-link", through_abs_link, 2},
                {"hardlink-out", hardlink_out, 1},
                {"whiteout-through-link", whiteout_link, 2},
        };

        (void)state;
        if (!have_root())
                skip();
        for (size_t i = 0; i < SH_ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *dir = tmpdir_new();
                _cleanup_free_ char *dest = sh_path_join(dir, "a");
                _cleanup_free_ char *blob = sh_path_join(dir, "blob");
                char p[512];
                struct img_unpack_result res = {0};
                struct sh_error err = {0};

                assert_int_equal(mkdir(dest, 0755), 0);
                write_tar(blob, cases[i].e, cases[i].n, true);
                if (img_unpack_layer(blob, dest, &res, &err) != -EINVAL)
                        fail_msg("%s: accepted (%s)", cases[i].name, err.msg);
                assert_true(err.msg[0] != '\0');
                snprintf(p, sizeof(p), "%s/escape", dir);
                assert_int_equal(access(p, F_OK), -1);
                assert_int_equal(access("/escape", F_OK), -1);
                rm_tree(dir);
        }
}

static void test_unpack_garbage(void **state)
{
        _cleanup_free_ char *dir = tmpdir_new();
        _cleanup_free_ char *dest = sh_path_join(dir, "a");
        _cleanup_free_ char *blob = sh_path_join(dir, "blob");
        struct img_unpack_result res = {0};
        struct sh_error err = {0};
        FILE *f;

        (void)state;
        if (!have_root()) {
                rm_tree(dir);
                skip();
        }
        assert_int_equal(mkdir(dest, 0755), 0);
        f = fopen(blob, "w");
        assert_non_null(f);
        /* A gzip header and then junk. */
        fwrite("\x1f\x8b\x08\x00garbage garbage garbage", 1, 28, f);
        fclose(f);
        assert_true(img_unpack_layer(blob, dest, &res, &err) < 0);
        assert_true(err.msg[0] != '\0');
        assert_int_equal(img_unpack_layer("/nonexistent/blob", dest, &res, &err), -ENOENT);
        rm_tree(dir);
}

/* ------------------------------------------------------------ locations and auth */

static void test_locations_mirrors(void **state)
{
        struct runt_config cfg = {0};
        char *m1[] = {"127.0.0.1:6000", "mirror.test/sub", NULL};
        struct runt_registry regs[] = {
                {.prefix = "docker.io", .mirrors = m1, .insecure = false},
                {.prefix = "127.0.0.1:6000", .mirrors = NULL, .insecure = true},
                {.prefix = "plain.test", .mirrors = NULL, .insecure = true},
        };
        struct img_ref ref = {0};
        struct img_location *locs = NULL;
        struct sh_error err = {0};
        size_t n = 0;

        (void)state;
        cfg.registries = regs;
        cfg.n_registries = SH_ARRAY_SIZE(regs);
        assert_int_equal(img_ref_parse("busybox:1", &ref, &err), 0);
        assert_int_equal(img_locations(&cfg, &ref, &locs, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(locs[0].ref, "127.0.0.1:6000/library/busybox:1");
        assert_true(locs[0].insecure); /* the mirror's own entry says so */
        assert_string_equal(locs[0].host, "127.0.0.1:6000");
        assert_string_equal(locs[1].ref, "mirror.test/sub/library/busybox:1");
        assert_false(locs[1].insecure);
        assert_string_equal(locs[2].ref, "docker.io/library/busybox:1");
        assert_string_equal(locs[2].host, "docker.io");
        img_locations_done(locs, n);
        img_ref_done(&ref);

        assert_int_equal(img_ref_parse("plain.test/a/b@sha256:"
                                       "0123456789abcdef0123456789abcdef0123456789abcdef01234567"
                                       "89abcdef",
                                       &ref, &err),
                         0);
        assert_int_equal(img_locations(&cfg, &ref, &locs, &n), 0);
        assert_int_equal(n, 1);
        assert_true(locs[0].insecure);
        assert_non_null(strstr(locs[0].ref, "plain.test/a/b@sha256:0123"));
        img_locations_done(locs, n);
        img_ref_done(&ref);
        /* "plain.testx" does not match the prefix "plain.test". */
        assert_int_equal(img_ref_parse("plain.testx/a", &ref, &err), 0);
        assert_int_equal(img_locations(&cfg, &ref, &locs, &n), 0);
        assert_false(locs[0].insecure);
        img_locations_done(locs, n);
        img_ref_done(&ref);
}

static void test_auth_file(void **state)
{
        _cleanup_free_ char *dir = tmpdir_new();
        _cleanup_free_ char *path = sh_path_join(dir, "auth.json");
        _cleanup_free_ char *text = NULL;
        struct img_auth a = {.username = "user", .password = "pa:ss"};
        struct img_auth other = {.auth = "dXNlcjpwYXNz",
                                 .server_address = "https://other.test/v1/"};
        struct sh_error err = {0};
        struct stat st;

        (void)state;
        assert_int_equal(img_auth_file(&a, "127.0.0.1:5000", path, &err), 1);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(sh_read_file(path, 4096, &text, NULL), 0);
        /* base64("user:pa:ss") */
        assert_string_equal(text,
                            "{\"auths\":{\"127.0.0.1:5000\":{\"auth\":\"dXNlcjpwYTpzcw==\"}}}");
        unlink(path);
        /* Credentials for another registry are not written for this one. */
        assert_int_equal(img_auth_file(&other, "127.0.0.1:5000", path, &err), 0);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(img_auth_file(&other, "other.test", path, &err), 1);
        assert_true(img_auth_empty(&(struct img_auth){0}));
        assert_true(img_auth_empty(NULL));
        assert_false(img_auth_empty(&a));
        rm_tree(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ref_normalize),  cmocka_unit_test(test_ref_invalid),
                cmocka_unit_test(test_sha256_vectors), cmocka_unit_test(test_digests),
                cmocka_unit_test(test_unpack_layer),   cmocka_unit_test(test_unpack_hostile),
                cmocka_unit_test(test_unpack_garbage), cmocka_unit_test(test_locations_mirrors),
                cmocka_unit_test(test_auth_file),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
