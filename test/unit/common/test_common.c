/* Unit tests of common/: runs every group and fails if any test of any group failed. */
#include "test_common.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "exec.h"
#include "strutil.h"

char *test_tmpdir_new(void)
{
        const char *base = getenv("TMPDIR");
        char *dir = sh_strdup_printf("%s/runt-test-XXXXXX", base && *base ? base : "/tmp");

        assert_non_null(dir);
        assert_non_null(mkdtemp(dir));
        return dir;
}

void test_tmpdir_remove(char *dir)
{
        const char *const argv[] = {"rm", "-rf", "--", dir, NULL};
        struct sh_exec_result res = {0};

        if (!dir)
                return;
        assert_int_equal(
                sh_exec(&(struct sh_exec_opts){.argv = argv, .timeout_ms = 10000}, &res, NULL), 0);
        assert_int_equal(res.exit_code, 0);
        sh_exec_result_done(&res);
        free(dir);
}

int test_count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        int n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1;
}

int main(void)
{
        int failed = 0;

        failed += test_cgstats_run();
        failed += test_notify_run();
        failed += test_cgroup_run();
        failed += test_error_run();
        failed += test_log_run();
        failed += test_exec_run();
        failed += test_json_run();
        failed += test_validate_run();
        failed += test_strutil_run();
        failed += test_fdpass_run();
        failed += test_nofollow_run();
        failed += test_fswalk_run();
        failed += test_metrics_run();
        return failed ? 1 : 0;
}
