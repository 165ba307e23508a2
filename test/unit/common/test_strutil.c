/* common/strutil.c: paths, whole-file I/O and the monotonic clock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "strutil.h"
#include "test_common.h"

static void check_join(const char *a, const char *b, const char *want)
{
        char *s = sh_path_join(a, b);

        assert_non_null(s);
        assert_string_equal(s, want);
        free(s);
}

static void test_strdup_printf_and_join(void **state)
{
        char *s = sh_strdup_printf("%s-%d-%05.1f", "x", 42, 2.5);

        (void)state;
        assert_string_equal(s, "x-42-002.5");
        free(s);
        check_join("/var/lib", "runt", "/var/lib/runt");
        check_join("/var/lib/", "/runt", "/var/lib/runt");
        check_join("a//", "//b/", "a/b/");
        check_join("/", "etc", "/etc");
        check_join("", "etc", "etc");
        check_join("a", "", "a");
        assert_true(sh_streq("a", "a"));
        assert_false(sh_streq("a", "b"));
        assert_false(sh_streq(NULL, "a"));
        assert_false(sh_streq(NULL, NULL));
}

static bool is_dir(const char *path, unsigned *ret_mode)
{
        struct stat st;

        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return false;
        if (ret_mode)
                *ret_mode = st.st_mode & 07777;
        return true;
}

static void test_mkdir_p(void **state)
{
        char *dir = test_tmpdir_new();
        char *deep = sh_strdup_printf("%s/a/b//c/", dir);
        char *file = sh_path_join(dir, "f");
        char *under_file = sh_path_join(file, "x/y");
        char *c = sh_path_join(dir, "a/b/c");
        unsigned mode = 0;

        (void)state;
        assert_int_equal(sh_mkdir_p(deep, 0700), 0);
        assert_true(is_dir(c, &mode));
        assert_int_equal(mode, 0700);
        /* Existing is fine. */
        assert_int_equal(sh_mkdir_p(c, 0700), 0);
        assert_int_equal(sh_mkdir_p(dir, 0700), 0);
        /* A file in the way. */
        assert_int_equal(sh_write_file_atomic(file, "x", 1, 0600), 0);
        assert_int_equal(sh_mkdir_p(file, 0700), -ENOTDIR);
        assert_int_equal(sh_mkdir_p(under_file, 0700), -ENOTDIR);
        assert_int_equal(sh_mkdir_p("", 0700), -EINVAL);
        free(deep);
        free(file);
        free(under_file);
        free(c);
        test_tmpdir_remove(dir);
}

static int count_entries(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        n++;
        closedir(d);
        return n;
}

static void test_write_file_atomic(void **state)
{
        char *dir = test_tmpdir_new();
        char *path = sh_path_join(dir, "state.json");
        char *missing = sh_path_join(dir, "no/such/dir/f");
        char *buf = NULL, old[8] = {0};
        size_t len = 0;
        struct stat st;
        int oldfd;

        (void)state;
        assert_int_equal(sh_write_file_atomic(path, "hello", 5, 0640), 0);
        assert_int_equal(sh_read_file(path, 100, &buf, &len), 0);
        assert_int_equal(len, 5);
        assert_string_equal(buf, "hello");
        free(buf);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0640);

        /* Replaced by rename, not rewritten in place: an open reader keeps the old content. */
        oldfd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(oldfd >= 0);
        assert_int_equal(sh_write_file_atomic(path, "bye", 3, 0600), 0);
        assert_int_equal(read(oldfd, old, sizeof(old) - 1), 5);
        assert_string_equal(old, "hello");
        close(oldfd);
        assert_int_equal(sh_read_file(path, 100, &buf, &len), 0);
        assert_string_equal(buf, "bye");
        assert_int_equal(len, 3);
        free(buf);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);

        assert_int_equal(sh_write_file_atomic(path, NULL, 0, 0600), 0);
        assert_int_equal(sh_read_file(path, 100, &buf, &len), 0);
        assert_int_equal(len, 0);
        assert_string_equal(buf, "");
        free(buf);
        /* No temp file left behind, on success or on failure. */
        assert_int_equal(count_entries(dir), 1);
        assert_int_equal(sh_write_file_atomic(missing, "x", 1, 0600), -ENOENT);
        assert_int_equal(sh_write_file_atomic(dir, "x", 1, 0600), -EISDIR);
        assert_int_equal(count_entries(dir), 1);
        free(path);
        free(missing);
        test_tmpdir_remove(dir);
}

/* The variant without fsync: the same atomic replace, mode and cleanup. */
static void test_write_file_replace(void **state)
{
        char *dir = test_tmpdir_new();
        char *path = sh_path_join(dir, "hosts");
        char *missing = sh_path_join(dir, "no/such/dir/f");
        char *buf = NULL, old[8] = {0};
        size_t len = 0;
        struct stat st;
        int oldfd;

        (void)state;
        assert_int_equal(sh_write_file_replace(path, "hello", 5, 0644), 0);
        oldfd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(oldfd >= 0);
        assert_int_equal(sh_write_file_replace(path, "bye", 3, 0600), 0);
        assert_int_equal(read(oldfd, old, sizeof(old) - 1), 5);
        assert_string_equal(old, "hello");
        close(oldfd);
        assert_int_equal(sh_read_file(path, 100, &buf, &len), 0);
        assert_string_equal(buf, "bye");
        assert_int_equal(len, 3);
        free(buf);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(sh_write_file_replace(missing, "x", 1, 0600), -ENOENT);
        assert_int_equal(sh_write_file_replace(dir, "x", 1, 0600), -EISDIR);
        assert_int_equal(count_entries(dir), 1);
        free(path);
        free(missing);
        test_tmpdir_remove(dir);
}

static void test_read_file_limits(void **state)
{
        char *dir = test_tmpdir_new();
        char *path = sh_path_join(dir, "f");
        char *buf = NULL;
        size_t len = 0;

        (void)state;
        assert_int_equal(sh_write_file_atomic(path, "0123456789", 10, 0600), 0);
        assert_int_equal(sh_read_file(path, 10, &buf, &len), 0);
        assert_int_equal(len, 10);
        free(buf);
        buf = NULL;
        assert_int_equal(sh_read_file(path, 9, &buf, &len), -EFBIG);
        assert_null(buf);
        assert_int_equal(sh_read_file(path, 0, &buf, NULL), -EFBIG);
        assert_int_equal(sh_read_file(dir, 100, &buf, NULL), -EISDIR);
        free(path);
        path = sh_path_join(dir, "missing");
        assert_int_equal(sh_read_file(path, 100, &buf, NULL), -ENOENT);
        assert_null(buf);

        /* /proc files report size 0: the limit must hold while reading. */
        assert_int_equal(sh_read_file("/proc/self/status", 1 << 20, &buf, &len), 0);
        assert_true(len > 100);
        assert_int_equal(strlen(buf), len);
        assert_memory_equal(buf, "Name:", 5);
        free(buf);
        buf = NULL;
        assert_int_equal(sh_read_file("/proc/self/status", 16, &buf, &len), -EFBIG);
        assert_null(buf);
        free(path);
        test_tmpdir_remove(dir);
}

/* Writes @len bytes of a pattern to a new @path. */
static void write_pattern(const char *path, size_t len)
{
        char *buf = malloc(len);

        assert_non_null(buf);
        for (size_t i = 0; i < len; i++)
                buf[i] = (char)(i * 7 + i / 4096);
        assert_int_equal(sh_write_file_atomic(path, buf, len, 0600), 0);
        free(buf);
}

static void check_same(const char *a, const char *b, unsigned mode)
{
        char *x = NULL, *y = NULL;
        size_t lx = 0, ly = 0;
        struct stat st;

        assert_int_equal(sh_read_file(a, 1 << 24, &x, &lx), 0);
        assert_int_equal(sh_read_file(b, 1 << 24, &y, &ly), 0);
        assert_int_equal(lx, ly);
        assert_memory_equal(x, y, lx);
        assert_int_equal(stat(b, &st), 0);
        assert_int_equal(st.st_mode & 07777, mode);
        free(x);
        free(y);
}

static void test_copy_file(void **state)
{
        char *dir = test_tmpdir_new();
        char *src = sh_path_join(dir, "src"), *dst = sh_path_join(dir, "dst");
        char *missing = sh_path_join(dir, "missing");

        (void)state;
        write_pattern(src, 300000); /* several copy_file_range and read chunks */
        assert_int_equal(sh_copy_file(src, dst, 0555), 0);
        check_same(src, dst, 0555);
        assert_int_equal(sh_copy_file(src, dst, 0640), 0); /* replaced */
        check_same(src, dst, 0640);
        assert_int_equal(sh_copy_file(missing, dst, 0600), -ENOENT);
        assert_int_equal(sh_copy_file(dir, dst, 0600), -EISDIR);
        assert_int_equal(sh_copy_file("/dev/null", dst, 0600), -EINVAL);
        free(src);
        free(dst);
        free(missing);
        test_tmpdir_remove(dir);
}

/*
 * Between two file systems copy_file_range(2) fails with EXDEV (Linux 5.19 and later): an
 * installed runt-init on / is still copied into a root_dir on a /var of its own.
 */
static void test_copy_file_across_file_systems(void **state)
{
        char *dir = test_tmpdir_new();
        char *dst = sh_path_join(dir, "dst");
        char src[] = "/dev/shm/runt-test-copy-XXXXXX";
        struct stat a, b;
        int fd;

        (void)state;
        if (stat("/dev/shm", &a) < 0 || stat(dir, &b) < 0 || a.st_dev == b.st_dev) {
                free(dst);
                test_tmpdir_remove(dir);
                skip(); /* no second file system at hand */
        }
        fd = mkstemp(src);
        assert_true(fd >= 0);
        close(fd);
        write_pattern(src, 300000);
        assert_int_equal(sh_copy_file(src, dst, 0555), 0);
        check_same(src, dst, 0555);
        unlink(src);
        free(dst);
        test_tmpdir_remove(dir);
}

static void test_now_ns_is_monotonic(void **state)
{
        unsigned long long a, b;

        (void)state;
        a = sh_now_ns();
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
        b = sh_now_ns();
        assert_true(b - a >= 20ull * 1000 * 1000);
        assert_true(b - a < 5ull * 1000 * 1000 * 1000);
}

static void test_list_next(void **state)
{
        const char *cur = " a, ,\tbc  ,,d", *v;
        size_t n;

        (void)state;
        assert_true(sh_list_next(&cur, &v, &n));
        assert_int_equal(n, 1);
        assert_memory_equal(v, "a", 1);
        assert_true(sh_list_next(&cur, &v, &n));
        assert_int_equal(n, 2);
        assert_memory_equal(v, "bc", 2);
        assert_true(sh_list_next(&cur, &v, &n));
        assert_int_equal(n, 1);
        assert_memory_equal(v, "d", 1);
        assert_false(sh_list_next(&cur, &v, &n));
        assert_false(sh_list_next(&cur, &v, &n)); /* stays at the end */
        cur = NULL;
        assert_false(sh_list_next(&cur, &v, &n));
        cur = " , ,";
        assert_false(sh_list_next(&cur, &v, &n));
}

int test_strutil_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_strdup_printf_and_join),
                cmocka_unit_test(test_mkdir_p),
                cmocka_unit_test(test_write_file_atomic),
                cmocka_unit_test(test_write_file_replace),
                cmocka_unit_test(test_read_file_limits),
                cmocka_unit_test(test_copy_file),
                cmocka_unit_test(test_copy_file_across_file_systems),
                cmocka_unit_test(test_now_ns_is_monotonic),
                cmocka_unit_test(test_list_next),
        };

        return cmocka_run_group_tests_name("strutil", tests, NULL, NULL);
}
