/* common/metrics.c: registration rules and the text exposition format 0.0.4. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"
#include "test_common.h"

static char *render(struct sh_metrics *m)
{
        struct sh_error err = {0};
        char *text = NULL;
        size_t len = 0;

        assert_int_equal(sh_metrics_render(m, &text, &len, &err), 0);
        assert_int_equal(strlen(text), len);
        return text;
}

static void test_counter_and_gauge_text(void **state)
{
        static const char *const labels[] = {"method", NULL};
        const struct sh_metric_desc calls = {
                .name = "x_calls_total", .help = "Calls.", .labels = labels};
        const struct sh_metric_desc up = {.name = "x_up", .help = "Up."};
        struct sh_metrics *m = sh_metrics_new();
        struct sh_counter *a = NULL, *b = NULL, *a2 = NULL;
        struct sh_gauge *g = NULL;
        struct sh_error err = {0};
        char *text;

        (void)state;
        assert_int_equal(sh_metrics_counter(m, &calls, (const char *const[]){"A", NULL}, &a, &err),
                         0);
        assert_int_equal(sh_metrics_counter(m, &calls, (const char *const[]){"B", NULL}, &b, &err),
                         0);
        /* The same series again is the same pointer. */
        assert_int_equal(sh_metrics_counter(m, &calls, (const char *const[]){"A", NULL}, &a2, &err),
                         0);
        assert_ptr_equal(a, a2);
        assert_int_equal(sh_metrics_gauge(m, &up, NULL, &g, &err), 0);
        sh_counter_add(a, 3);
        sh_counter_add(a, 2);
        sh_gauge_set(g, 7);
        sh_gauge_add(g, -9);
        sh_counter_add(NULL, 1); /* NULL-safe: metrics off */
        text = render(m);
        assert_string_equal(text, "# HELP x_calls_total Calls.\n"
                                  "# TYPE x_calls_total counter\n"
                                  "x_calls_total{method=\"A\"} 5\n"
                                  "x_calls_total{method=\"B\"} 0\n"
                                  "# HELP x_up Up.\n"
                                  "# TYPE x_up gauge\n"
                                  "x_up -2\n");
        free(text);
        sh_metrics_free(m);
}

static void test_escaping(void **state)
{
        static const char *const labels[] = {"path", "b", NULL};
        const struct sh_metric_desc d = {
                .name = "x_total", .help = "A \\ backslash\nand a newline.", .labels = labels};
        struct sh_metrics *m = sh_metrics_new();
        struct sh_counter *c = NULL;
        char *text;

        (void)state;
        assert_int_equal(
                sh_metrics_counter(m, &d, (const char *const[]){"a\"b\\c\nd", "", NULL}, &c, NULL),
                0);
        sh_counter_add(c, 1);
        text = render(m);
        assert_string_equal(text, "# HELP x_total A \\\\ backslash\\nand a newline.\n"
                                  "# TYPE x_total counter\n"
                                  "x_total{path=\"a\\\"b\\\\c\\nd\",b=\"\"} 1\n");
        free(text);
        sh_metrics_free(m);
}

static void test_histogram_text(void **state)
{
        static const double buckets[] = {0.005, 0.5, 10};
        static const char *const labels[] = {"op", NULL};
        const struct sh_metric_desc d = {.name = "x_seconds",
                                         .help = "Time.",
                                         .labels = labels,
                                         .buckets = buckets,
                                         .n_buckets = 3};
        struct sh_metrics *m = sh_metrics_new();
        struct sh_histogram *h = NULL;
        char *text;

        (void)state;
        assert_int_equal(sh_metrics_histogram(m, &d, (const char *const[]){"ADD", NULL}, &h, NULL),
                         0);
        sh_histogram_observe(h, 0.001);
        sh_histogram_observe(h, 0.005); /* on a bound: that bucket (le is inclusive) */
        sh_histogram_observe(h, 0.25);
        sh_histogram_observe(h, 100);
        sh_histogram_observe_ns(h, 2000000000ull); /* 2 s */
        text = render(m);
        assert_string_equal(text, "# HELP x_seconds Time.\n"
                                  "# TYPE x_seconds histogram\n"
                                  "x_seconds_bucket{op=\"ADD\",le=\"0.005\"} 2\n"
                                  "x_seconds_bucket{op=\"ADD\",le=\"0.5\"} 3\n"
                                  "x_seconds_bucket{op=\"ADD\",le=\"10\"} 4\n"
                                  "x_seconds_bucket{op=\"ADD\",le=\"+Inf\"} 5\n"
                                  "x_seconds_sum{op=\"ADD\"} 102.256\n"
                                  "x_seconds_count{op=\"ADD\"} 5\n");
        free(text);
        sh_metrics_free(m);
}

static void test_sparse_hides_untouched(void **state)
{
        static const char *const labels[] = {"code", NULL};
        static const double buckets[] = {1};
        const struct sh_metric_desc c = {
                .name = "x_total", .help = "h", .labels = labels, .sparse = true};
        const struct sh_metric_desc h = {.name = "x_seconds",
                                         .help = "h",
                                         .labels = labels,
                                         .buckets = buckets,
                                         .n_buckets = 1,
                                         .sparse = true};
        struct sh_metrics *m = sh_metrics_new();
        struct sh_counter *ok = NULL, *bad = NULL;
        struct sh_histogram *hok = NULL, *hbad = NULL;
        char *text;

        (void)state;
        assert_int_equal(sh_metrics_counter(m, &c, (const char *const[]){"OK", NULL}, &ok, NULL),
                         0);
        assert_int_equal(sh_metrics_counter(m, &c, (const char *const[]){"BAD", NULL}, &bad, NULL),
                         0);
        assert_int_equal(sh_metrics_histogram(m, &h, (const char *const[]){"OK", NULL}, &hok, NULL),
                         0);
        assert_int_equal(
                sh_metrics_histogram(m, &h, (const char *const[]){"BAD", NULL}, &hbad, NULL), 0);
        sh_counter_add(ok, 1);
        sh_histogram_observe(hok, 2);
        text = render(m);
        /* The families are declared; only the touched series appear. */
        assert_string_equal(text, "# HELP x_total h\n"
                                  "# TYPE x_total counter\n"
                                  "x_total{code=\"OK\"} 1\n"
                                  "# HELP x_seconds h\n"
                                  "# TYPE x_seconds histogram\n"
                                  "x_seconds_bucket{code=\"OK\",le=\"1\"} 0\n"
                                  "x_seconds_bucket{code=\"OK\",le=\"+Inf\"} 1\n"
                                  "x_seconds_sum{code=\"OK\"} 2\n"
                                  "x_seconds_count{code=\"OK\"} 1\n");
        free(text);
        sh_metrics_free(m);
}

static void collect(void *data, struct sh_metrics_sink *sink)
{
        int *calls = data;

        (*calls)++;
        sh_metrics_sink_value(sink, (const char *const[]){"ready", NULL}, 2);
        sh_metrics_sink_value(sink, (const char *const[]){"notready", NULL}, 0.5);
        sh_metrics_sink_value(sink, NULL, 1); /* too few labels: dropped, not a bad line */
}

static void test_gauge_fn(void **state)
{
        static const char *const labels[] = {"state", NULL};
        const struct sh_metric_desc d = {.name = "x_pods", .help = "Pods.", .labels = labels};
        struct sh_metrics *m = sh_metrics_new();
        struct sh_error err = {0};
        int calls = 0;
        char *text;

        (void)state;
        assert_int_equal(sh_metrics_gauge_fn(m, &d, collect, &calls, &err), 0);
        assert_int_equal(sh_metrics_gauge_fn(m, &d, collect, &calls, &err), -EEXIST);
        text = render(m);
        assert_int_equal(calls, 1);
        assert_string_equal(text, "# HELP x_pods Pods.\n"
                                  "# TYPE x_pods gauge\n"
                                  "x_pods{state=\"ready\"} 2\n"
                                  "x_pods{state=\"notready\"} 0.5\n");
        free(text);
        sh_metrics_free(m);
}

static void test_registration_rules(void **state)
{
        static const double buckets[] = {1, 2};
        static const double unsorted[] = {2, 1};
        struct sh_metrics *m = sh_metrics_new();
        struct sh_counter *c = NULL;
        struct sh_histogram *h = NULL;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(sh_metrics_counter(m, &(struct sh_metric_desc){.name = "1bad", .help = ""},
                                            NULL, &c, &err),
                         -EINVAL);
        assert_int_equal(sh_metrics_counter(m, &(struct sh_metric_desc){.name = "a-b", .help = ""},
                                            NULL, &c, &err),
                         -EINVAL);
        assert_int_equal(sh_metrics_counter(m,
                                            &(struct sh_metric_desc){
                                                    .name = "ok_total",
                                                    .labels = (const char *const[]){"a:b", NULL}},
                                            (const char *const[]){"x", NULL}, &c, &err),
                         -EINVAL);
        assert_int_equal(sh_metrics_counter(m,
                                            &(struct sh_metric_desc){
                                                    .name = "ok_total",
                                                    .labels = (const char *const[]){"__x", NULL}},
                                            (const char *const[]){"x", NULL}, &c, &err),
                         -EINVAL);
        /* "le" is the histogram's own label. */
        assert_int_equal(sh_metrics_histogram(m,
                                              &(struct sh_metric_desc){
                                                      .name = "h_seconds",
                                                      .labels = (const char *const[]){"le", NULL},
                                                      .buckets = buckets,
                                                      .n_buckets = 2},
                                              (const char *const[]){"x", NULL}, &h, &err),
                         -EINVAL);
        assert_int_equal(sh_metrics_histogram(m,
                                              &(struct sh_metric_desc){.name = "h_seconds",
                                                                       .buckets = unsorted,
                                                                       .n_buckets = 2},
                                              NULL, &h, &err),
                         -EINVAL);
        assert_int_equal(sh_metrics_histogram(m, &(struct sh_metric_desc){.name = "h_seconds"},
                                              NULL, &h, &err),
                         -EINVAL);
        /* One name, two meanings: refused. */
        assert_int_equal(
                sh_metrics_counter(m, &(struct sh_metric_desc){.name = "x_total"}, NULL, &c, &err),
                0);
        assert_int_equal(sh_metrics_histogram(m,
                                              &(struct sh_metric_desc){.name = "x_total",
                                                                       .buckets = buckets,
                                                                       .n_buckets = 2},
                                              NULL, &h, &err),
                         -EEXIST);
        assert_non_null(strstr(err.msg, "x_total"));
        /* Label values missing. */
        assert_int_equal(sh_metrics_counter(m,
                                            &(struct sh_metric_desc){
                                                    .name = "y_total",
                                                    .labels = (const char *const[]){"a", NULL}},
                                            NULL, &c, &err),
                         -EINVAL);
        sh_metrics_free(m);
        assert_null(sh_metrics_free(NULL));
}

struct adder {
        struct sh_counter *c;
        struct sh_histogram *h;
};

static void *add_many(void *arg)
{
        struct adder *a = arg;

        for (int i = 0; i < 100000; i++) {
                sh_counter_add(a->c, 1);
                sh_histogram_observe(a->h, 0.5);
        }
        return NULL;
}

static void test_concurrent_updates(void **state)
{
        static const double buckets[] = {1};
        struct sh_metrics *m = sh_metrics_new();
        struct adder a = {0};
        pthread_t t[4];
        char *text;

        (void)state;
        assert_int_equal(sh_metrics_counter(m, &(struct sh_metric_desc){.name = "n_total"}, NULL,
                                            &a.c, NULL),
                         0);
        assert_int_equal(sh_metrics_histogram(m,
                                              &(struct sh_metric_desc){.name = "h_seconds",
                                                                       .buckets = buckets,
                                                                       .n_buckets = 1},
                                              NULL, &a.h, NULL),
                         0);
        for (int i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&t[i], NULL, add_many, &a), 0);
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        assert_int_equal(sh_counter_value(a.c), 400000);
        text = render(m);
        assert_non_null(strstr(text, "h_seconds_bucket{le=\"+Inf\"} 400000\n"));
        assert_non_null(strstr(text, "h_seconds_sum 200000\n"));
        assert_non_null(strstr(text, "h_seconds_count 400000\n"));
        free(text);
        sh_metrics_free(m);
}

int test_metrics_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_counter_and_gauge_text),
                cmocka_unit_test(test_escaping),
                cmocka_unit_test(test_histogram_text),
                cmocka_unit_test(test_sparse_hides_untouched),
                cmocka_unit_test(test_gauge_fn),
                cmocka_unit_test(test_registration_rules),
                cmocka_unit_test(test_concurrent_updates),
        };

        return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
