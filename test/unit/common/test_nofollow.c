/* common/nofollow.c: log files and their directories, no symlink followed on the way. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "nofollow.h"
#include "strutil.h"
#include "test_common.h"

static char *at(const char *dir, const char *rel)
{
        char *p = sh_path_join(dir, rel);

        assert_non_null(p);
        return p;
}

static void test_makes_dirs_and_appends(void **state)
{
        char *t = test_tmpdir_new(), *d = at(t, "a/b/c"), *f = at(t, "a/b/c/0.log");
        int before = test_count_fds(), fd;
        struct stat st;

        (void)state;
        fd = sh_open_dir_nofollow(d, true, 0755);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(stat(d, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        for (int i = 0; i < 2; i++) {
                fd = sh_open_append_nofollow(f, 0640);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, "x", 1), 1);
                close(fd);
        }
        assert_int_equal(stat(f, &st), 0);
        assert_int_equal(st.st_size, 2);
        assert_int_equal(st.st_mode & 0777, 0640);
        assert_int_equal(test_count_fds(), before);
        free(d);
        free(f);
        test_tmpdir_remove(t);
}

static void test_refuses_symlinks(void **state)
{
        char *t = test_tmpdir_new(), *elsewhere = at(t, "elsewhere"), *logs = at(t, "logs");
        char *link = at(t, "logs/pod"), *through = at(t, "logs/pod/c/0.log");
        char *flink = at(t, "logs/real/0.log"), *target = at(t, "elsewhere/target");
        char *made = at(t, "elsewhere/c");
        int before = test_count_fds();
        struct stat st;

        (void)state;
        assert_int_equal(mkdir(elsewhere, 0755), 0);
        assert_int_equal(mkdir(logs, 0755), 0);
        assert_int_equal(symlink(elsewhere, link), 0);
        /* A directory component that is a symlink: nothing made or written at its target. */
        assert_int_equal(sh_open_dir_nofollow(link, true, 0755), -ENOTDIR);
        free(link);
        link = at(t, "logs/pod/c");
        assert_int_equal(sh_open_dir_nofollow(link, true, 0755), -ENOTDIR);
        assert_int_equal(sh_open_append_nofollow(through, 0640), -ENOTDIR);
        assert_int_equal(stat(made, &st), -1);
        /* The file itself a symlink. */
        free(link);
        link = at(t, "logs/real");
        assert_int_equal(mkdir(link, 0755), 0);
        assert_int_equal(symlink(target, flink), 0);
        assert_int_equal(sh_open_append_nofollow(flink, 0640), -ELOOP);
        assert_int_equal(lstat(target, &st), -1);
        /* A FIFO: refused without blocking. */
        free(flink);
        flink = at(t, "logs/real/fifo.log");
        assert_int_equal(mkfifo(flink, 0600), 0);
        assert_true(sh_open_append_nofollow(flink, 0640) < 0);
        /* Relative paths and dot components. */
        assert_int_equal(sh_open_dir_nofollow("rel/dir", true, 0755), -EINVAL);
        free(made);
        made = at(t, "logs/../elsewhere");
        assert_int_equal(sh_open_dir_nofollow(made, false, 0), -EINVAL);
        assert_int_equal(test_count_fds(), before);
        free(elsewhere);
        free(logs);
        free(link);
        free(through);
        free(flink);
        free(target);
        free(made);
        test_tmpdir_remove(t);
}

int test_nofollow_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_makes_dirs_and_appends),
                cmocka_unit_test(test_refuses_symlinks),
        };

        return cmocka_run_group_tests_name("nofollow", tests, NULL, NULL);
}
