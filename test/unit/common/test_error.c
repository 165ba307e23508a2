/* common/error.c: the message and code carried up the stack. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "test_common.h"

static void test_err_sets_code_and_message(void **state)
{
        struct sh_error e = {0};

        (void)state;
        assert_int_equal(sh_err(&e, -EBUSY, "open '%s' try %d", "x", 2), -EBUSY);
        assert_int_equal(e.code, -EBUSY);
        assert_string_equal(e.msg, "open 'x' try 2");
}

static void test_err_null_returns_code(void **state)
{
        (void)state;
        assert_int_equal(sh_err(NULL, -EIO, "nothing %d", 1), -EIO);
        assert_int_equal(sh_err_prefix(NULL, -EIO, "nothing"), -EIO);
        sh_err_clear(NULL);
}

static void test_err_prefix_wraps_message(void **state)
{
        struct sh_error e = {0};

        (void)state;
        sh_err(&e, -EBUSY, "lxc-start: busy");
        assert_int_equal(sh_err_prefix(&e, -EIO, "sandbox %s: start", "ab12"), -EIO);
        assert_int_equal(e.code, -EIO);
        assert_string_equal(e.msg, "sandbox ab12: start: lxc-start: busy");
        sh_err_prefix(&e, -EIO, "run");
        assert_string_equal(e.msg, "run: sandbox ab12: start: lxc-start: busy");
}

static void test_err_prefix_without_message_uses_errno_text(void **state)
{
        struct sh_error e = {0};

        (void)state;
        assert_int_equal(sh_err_prefix(&e, -ENOENT, "open '%s'", "/x"), -ENOENT);
        assert_int_equal(e.code, -ENOENT);
        assert_string_equal(e.msg, "open '/x': No such file or directory");

        /* After a clear, the old text must not come back. */
        sh_err(&e, -EBUSY, "stale");
        sh_err_clear(&e);
        assert_int_equal(e.code, 0);
        assert_string_equal(e.msg, "");
        sh_err_prefix(&e, -EACCES, "write");
        assert_string_equal(e.msg, "write: Permission denied");
}

static void test_err_truncates_long_messages(void **state)
{
        struct sh_error e;
        char big[2000];

        (void)state;
        memset(&e, 'Z', sizeof(e));
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        sh_err(&e, -E2BIG, "%s", big);
        assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
        sh_err_prefix(&e, -E2BIG, "%s", "outer");
        assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
        assert_memory_equal(e.msg, "outer: aaa", 10);
        /* A prefix longer than the buffer still leaves a terminated string. */
        sh_err_prefix(&e, -E2BIG, "%s", big);
        assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
}

int test_error_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_err_sets_code_and_message),
                cmocka_unit_test(test_err_null_returns_code),
                cmocka_unit_test(test_err_prefix_wraps_message),
                cmocka_unit_test(test_err_prefix_without_message_uses_errno_text),
                cmocka_unit_test(test_err_truncates_long_messages),
        };

        return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
