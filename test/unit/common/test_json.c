/* common/json.c: strict, typed access where json-c alone would coerce silently. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"
#include "test_common.h"

static const char doc[] = "{\"name\": \"eth0\", \"mtu\": 1500, \"up\": true, \"port\": \"8080\","
                          " \"ratio\": 1.5, \"ips\": [\"10.0.0.2/24\"], \"dns\": {\"a\": 1},"
                          " \"gw\": null, \"big\": -9223372036854775808}";

static json_object *parse_doc(void)
{
        json_object *o = NULL;

        assert_int_equal(sh_json_parse(doc, strlen(doc), "CNI result", &o, NULL), 0);
        assert_non_null(o);
        return o;
}

static void test_json_parse_valid_and_invalid(void **state)
{
        json_object *o = NULL;
        struct sh_error err = {0};
        int64_t i = 0;

        (void)state;
        /* Only @len bytes count: the rest of the buffer is not part of the document. */
        assert_int_equal(sh_json_parse("{\"a\":1}garbage", 7, "cfg", &o, &err), 0);
        json_object_put(o);
        o = NULL;
        assert_int_equal(sh_json_parse(" [1, 2] \n", 9, "cfg", &o, &err), 0);
        assert_true(json_object_is_type(o, json_type_array));
        json_object_put(o);
        o = NULL;
        /* A bare number at the very end of the buffer needs no terminator from the caller. */
        assert_int_equal(sh_json_parse("42", 2, "cfg", &o, &err), 0);
        assert_true(json_object_is_type(o, json_type_int));
        json_object_put(o);
        o = NULL;
        assert_int_equal(sh_json_parse("{\"v\": 7}", 8, "cfg", &o, &err), 0);
        assert_int_equal(sh_json_get_int64(o, "v", "cfg", &i, &err), 0);
        assert_int_equal(i, 7);
        json_object_put(o);
        o = NULL;

        const char *bad[] = {"{",   "{\"a\":}", "[1,2", "{\"a\":1} x", "{\"a\":1}{}",
                             "nul", "\"open",   "null", "  "};
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
                sh_err_clear(&err);
                assert_int_equal(sh_json_parse(bad[k], strlen(bad[k]), "image config", &o, &err),
                                 -EINVAL);
                assert_null(o);
                assert_int_equal(err.code, -EINVAL);
                assert_non_null(strstr(err.msg, "image config"));
        }
        assert_int_equal(sh_json_parse("", 0, "image config", &o, &err), -EINVAL);
        assert_int_equal(sh_json_parse(NULL, 0, "image config", &o, &err), -EINVAL);
        /* An embedded NUL ends nothing: it is trailing data. */
        assert_int_equal(sh_json_parse("{}\0{}", 5, "cfg", &o, &err), -EINVAL);
        assert_null(o);
}

static void test_json_get_typed_values(void **state)
{
        json_object *o = parse_doc(), *sub = NULL, *arr = NULL;
        const char *s = NULL;
        int64_t i = 0;
        bool b = false;

        (void)state;
        assert_int_equal(sh_json_get_string(o, "name", "CNI result", &s, NULL), 0);
        assert_string_equal(s, "eth0");
        assert_int_equal(sh_json_get_int64(o, "mtu", "CNI result", &i, NULL), 0);
        assert_int_equal(i, 1500);
        assert_int_equal(sh_json_get_int64(o, "big", "CNI result", &i, NULL), 0);
        assert_true(i == INT64_MIN);
        assert_int_equal(sh_json_get_bool(o, "up", "CNI result", &b, NULL), 0);
        assert_true(b);
        assert_int_equal(sh_json_get_array(o, "ips", "CNI result", &arr, NULL), 0);
        assert_int_equal(json_object_array_length(arr), 1);
        assert_int_equal(sh_json_get_object(o, "dns", "CNI result", &sub, NULL), 0);
        assert_int_equal(sh_json_get_int64(sub, "a", "CNI result", &i, NULL), 0);
        assert_int_equal(i, 1);
        json_object_put(o);
}

static void test_json_type_mismatch(void **state)
{
        json_object *o = parse_doc(), *sub = (json_object *)0x1;
        struct sh_error err = {0};
        const char *s = "untouched";
        int64_t i = 99;
        bool b = false;

        (void)state;
        /* json-c would read "8080" as 8080 and 1.5 as 1; we refuse. */
        assert_int_equal(sh_json_get_int64(o, "port", "CNI result", &i, &err), -EINVAL);
        assert_int_equal(i, 99);
        assert_int_equal(err.code, -EINVAL);
        assert_non_null(strstr(err.msg, "CNI result"));
        assert_non_null(strstr(err.msg, "'port'"));
        assert_non_null(strstr(err.msg, "int"));
        assert_non_null(strstr(err.msg, "string"));
        assert_int_equal(sh_json_get_int64(o, "ratio", "CNI result", &i, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "'ratio'"));
        assert_int_equal(sh_json_get_string(o, "mtu", "CNI result", &s, &err), -EINVAL);
        assert_string_equal(s, "untouched");
        assert_int_equal(sh_json_get_bool(o, "name", "CNI result", &b, &err), -EINVAL);
        assert_false(b);
        assert_int_equal(sh_json_get_object(o, "ips", "CNI result", &sub, &err), -EINVAL);
        assert_int_equal(sh_json_get_array(o, "dns", "CNI result", &sub, &err), -EINVAL);
        assert_ptr_equal(sub, (json_object *)0x1);

        /* Looking a key up in something that is not an object. */
        json_object *arr = NULL;

        assert_int_equal(sh_json_get_array(o, "ips", "CNI result", &arr, NULL), 0);
        assert_int_equal(sh_json_get_string(arr, "x", "CNI result", &s, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "'x'"));
        assert_int_equal(sh_json_get_string(NULL, "x", "CNI result", &s, &err), -EINVAL);
        json_object_put(o);
}

static void test_json_missing_is_enoent(void **state)
{
        json_object *o = parse_doc();
        struct sh_error err = {0};
        const char *s = "untouched";
        int64_t i = 99;

        (void)state;
        assert_int_equal(sh_json_get_string(o, "nope", "CNI result", &s, &err), -ENOENT);
        assert_string_equal(s, "untouched");
        assert_int_equal(err.code, -ENOENT);
        assert_non_null(strstr(err.msg, "CNI result"));
        assert_non_null(strstr(err.msg, "'nope'"));
        /* An explicit null counts as absent. */
        assert_int_equal(sh_json_get_string(o, "gw", "CNI result", &s, &err), -ENOENT);
        assert_int_equal(sh_json_get_int64(o, "gw", "CNI result", &i, &err), -ENOENT);
        assert_int_equal(i, 99);
        json_object_put(o);
}

static void test_json_int64_out_of_range(void **state)
{
        static const char big[] = "{\"n\": 9223372036854775808, \"m\": 9223372036854775807}";
        json_object *o = NULL;
        struct sh_error err = {0};
        int64_t i = 5;

        (void)state;
        assert_int_equal(sh_json_parse(big, strlen(big), "cfg", &o, &err), 0);
        assert_int_equal(sh_json_get_int64(o, "n", "cfg", &i, &err), -ERANGE);
        assert_int_equal(i, 5);
        assert_non_null(strstr(err.msg, "'n'"));
        assert_int_equal(sh_json_get_int64(o, "m", "cfg", &i, &err), 0);
        assert_true(i == INT64_MAX);
        json_object_put(o);
}

static void test_json_to_string(void **state)
{
        static const char in[] = "{ \"path\": \"/var/lib/runt\", \"n\": [1, 2] }";
        json_object *o = NULL;
        char *s;

        (void)state;
        assert_int_equal(sh_json_parse(in, strlen(in), "cfg", &o, NULL), 0);
        s = sh_json_to_string(o);
        assert_non_null(s);
        assert_string_equal(s, "{\"path\":\"/var/lib/runt\",\"n\":[1,2]}");
        free(s);
        json_object_put(o);
}

int test_json_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_parse_valid_and_invalid),
                cmocka_unit_test(test_json_get_typed_values),
                cmocka_unit_test(test_json_type_mismatch),
                cmocka_unit_test(test_json_missing_is_enoent),
                cmocka_unit_test(test_json_int64_out_of_range),
                cmocka_unit_test(test_json_to_string),
        };

        return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
