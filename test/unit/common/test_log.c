/* common/log.c: level names, and the line format as written to a file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "strutil.h"
#include "test_common.h"

static void test_log_level_parse(void **state)
{
        enum sh_log_level l = SH_LOG_INFO;

        (void)state;
        assert_int_equal(sh_log_level_parse("error", &l), 0);
        assert_int_equal(l, SH_LOG_ERROR);
        assert_int_equal(sh_log_level_parse("warn", &l), 0);
        assert_int_equal(l, SH_LOG_WARN);
        assert_int_equal(sh_log_level_parse("warning", &l), 0);
        assert_int_equal(l, SH_LOG_WARN);
        assert_int_equal(sh_log_level_parse("info", &l), 0);
        assert_int_equal(l, SH_LOG_INFO);
        assert_int_equal(sh_log_level_parse("debug", &l), 0);
        assert_int_equal(l, SH_LOG_DEBUG);

        l = SH_LOG_INFO;
        assert_int_equal(sh_log_level_parse("DEBUG", &l), -EINVAL);
        assert_int_equal(sh_log_level_parse("", &l), -EINVAL);
        assert_int_equal(sh_log_level_parse("verbose", &l), -EINVAL);
        assert_int_equal(sh_log_level_parse(NULL, &l), -EINVAL);
        assert_int_equal(l, SH_LOG_INFO);

        assert_string_equal(sh_log_level_name(SH_LOG_WARN), "warn");
        assert_string_equal(sh_log_level_name((enum sh_log_level)42), "unknown");
}

static void test_log_enabled_follows_level(void **state)
{
        (void)state;
        sh_log_set_level(SH_LOG_WARN);
        assert_true(sh_log_enabled(SH_LOG_ERROR));
        assert_true(sh_log_enabled(SH_LOG_WARN));
        assert_false(sh_log_enabled(SH_LOG_INFO));
        assert_false(sh_log_enabled(SH_LOG_DEBUG));
        sh_log_set_level(SH_LOG_INFO);
}

static void test_log_writes_structured_lines(void **state)
{
        struct sh_error err = {0};
        char *dir = test_tmpdir_new();
        char *path = sh_path_join(dir, "runt.log");
        char *buf = NULL, *nl;
        size_t len = 0;

        (void)state;
        assert_int_equal(sh_log_open(path, SH_LOG_INFO, &err), 0);
        sh_log_write(SH_LOG_WARN, "podmgr", 0, "pod=%s name=%s cleanup failed", "ab12",
                     "evil\nlevel=error module=cri\tforged\x1b[31m");
        sh_log_write(SH_LOG_DEBUG, "podmgr", 0, "hidden debug line");
        assert_int_equal(sh_log_write(SH_LOG_ERROR, "cri", -ENOENT, "rpc=Run failed: %m"), -ENOENT);
        sh_log_close();

        assert_int_equal(sh_read_file(path, 1 << 20, &buf, &len), 0);
        /* Exactly two lines: the debug one is filtered, the embedded newline is neutralised. */
        nl = strchr(buf, '\n');
        assert_non_null(nl);
        assert_non_null(strchr(nl + 1, '\n'));
        assert_ptr_equal(strchr(nl + 1, '\n'), buf + len - 1);
        *nl = '\0';

        /* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ level=warn module=podmgr ..." */
        assert_true(len > 27);
        assert_int_equal(buf[4], '-');
        assert_int_equal(buf[10], 'T');
        assert_non_null(strstr(buf, "Z level=warn module=podmgr pod=ab12 name=evil "
                                    "level=error module=cri forged [31m cleanup failed"));
        for (const char *p = buf; *p; p++)
                assert_true((unsigned char)*p >= 0x20);
        assert_non_null(strstr(nl + 1, " level=error module=cri rpc=Run failed: "
                                       "No such file or directory\n"));
        assert_null(strstr(nl + 1, "hidden"));

        free(buf);
        free(path);
        sh_log_set_level(SH_LOG_INFO);
        test_tmpdir_remove(dir);
}

static void test_log_open_fails_cleanly(void **state)
{
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(sh_log_open("/nonexistent-runt-dir/x.log", SH_LOG_INFO, &err), -ENOENT);
        assert_int_equal(err.code, -ENOENT);
        assert_non_null(strstr(err.msg, "/nonexistent-runt-dir/x.log"));
}

int test_log_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_log_level_parse),
                cmocka_unit_test(test_log_enabled_follows_level),
                cmocka_unit_test(test_log_writes_structured_lines),
                cmocka_unit_test(test_log_open_fails_cleanly),
        };

        return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
