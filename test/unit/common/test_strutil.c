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

/*
 * sh_copy_file between two filesystems of different types (a tmpfs /dev/shm to the test's
 * temp dir): copy_file_range refuses that (EXDEV) on Linux 5.19 and later, and the copy is
 * read and written instead. Within one filesystem as well.
 */
static void test_copy_file_across_filesystems(void **state)
{
        char *dir = test_tmpdir_new();
        _cleanup_free_ char *src = sh_strdup_printf("/dev/shm/runt-copy-%d", (int)getpid());
        _cleanup_free_ char *dst = sh_path_join(dir, "copy");
        _cleanup_free_ char *dst2 = sh_path_join(dir, "copy2");
        _cleanup_free_ char *data = malloc(200000), *back = NULL;
        struct stat st;
        size_t len = 0;

        (void)state;
        assert_non_null(data);
        for (size_t i = 0; i < 200000; i++)
                data[i] = (char)(i * 7 + i / 251);
        if (access("/dev/shm", W_OK) < 0) {
                test_tmpdir_remove(dir);
                skip();
        }
        assert_int_equal(sh_write_file_atomic(src, data, 200000, 0600), 0);
        assert_int_equal(sh_copy_file(src, dst, 0755), 0);
        assert_int_equal(sh_read_file(dst, 1 << 20, &back, &len), 0);
        assert_int_equal(len, 200000);
        assert_memory_equal(back, data, 200000);
        assert_int_equal(stat(dst, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0755);
        assert_int_equal(sh_copy_file(dst, dst2, 0644), 0);
        free(back);
        back = NULL;
        assert_int_equal(sh_read_file(dst2, 1 << 20, &back, &len), 0);
        assert_int_equal(len, 200000);
        assert_memory_equal(back, data, 200000);
        assert_int_equal(sh_copy_file("/nonexistent/x", dst2, 0644), -ENOENT);
        unlink(src);
        test_tmpdir_remove(dir);
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
                cmocka_unit_test(test_now_ns_is_monotonic),
                cmocka_unit_test(test_list_next),
                cmocka_unit_test(test_copy_file_across_filesystems),
        };

        return cmocka_run_group_tests_name("strutil", tests, NULL, NULL);
}
