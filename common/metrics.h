#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*
 * A small Prometheus metrics registry (text exposition format 0.0.4).
 *
 * A family (name, help, type, label names, histogram buckets) is registered once; each
 * series of it (one set of label values) is registered once too, at start, and the caller
 * keeps the pointer it got: updating a series is an atomic add, with no lock and no
 * allocation, so it may sit on any hot path. Registration and rendering take the registry's
 * mutex. Series live until sh_metrics_free. Every update function is NULL-safe, so a module
 * whose registry is NULL (metrics off) pays one branch.
 *
 * There is no process-wide registry (STYLE R11): main makes one and hands it down.
 */
struct sh_metrics;
struct sh_counter;
struct sh_gauge;
struct sh_histogram;

/* What a family is. Borrowed for the registration call only (the registry copies it). */
struct sh_metric_desc {
        const char *name;          /* [a-zA-Z_:][a-zA-Z0-9_:]*; counters end in _total */
        const char *help;          /* any text; escaped on output */
        const char *const *labels; /* NULL-terminated label names, or NULL for none */
        const double *buckets;     /* histograms: upper bounds, strictly ascending, no +Inf */
        size_t n_buckets;          /* histograms: at least 1 */
        bool sparse;               /* a series is shown only once it was updated */
};

/* A registry, or NULL on ENOMEM. */
struct sh_metrics *sh_metrics_new(void);
/* Frees @m and every series; NULL-safe, returns NULL. No update may run concurrently. */
struct sh_metrics *sh_metrics_free(struct sh_metrics *m);

/*
 * Registers (or finds) the series of family @d with label @values (as many as @d->labels;
 * NULL when it has none) and returns it in *@ret. The family is made on first use; a later
 * registration of the same name must describe it the same way, else -EEXIST. -EINVAL for a
 * bad name, label name or bucket list, -ENOMEM. Takes the registry's lock.
 */
int sh_metrics_counter(struct sh_metrics *m, const struct sh_metric_desc *d,
                       const char *const *values, struct sh_counter **ret, struct sh_error *err);
int sh_metrics_gauge(struct sh_metrics *m, const struct sh_metric_desc *d,
                     const char *const *values, struct sh_gauge **ret, struct sh_error *err);
int sh_metrics_histogram(struct sh_metrics *m, const struct sh_metric_desc *d,
                         const char *const *values, struct sh_histogram **ret,
                         struct sh_error *err);

/*
 * A gauge family whose values are read at scrape time: @fn is called once per render, with
 * the registry's lock held (so it must not register), and reports each series through
 * sh_metrics_sink_value. @data must outlive every render. -EEXIST if the name is taken.
 */
struct sh_metrics_sink;
typedef void (*sh_metrics_collect_fn)(void *data, struct sh_metrics_sink *sink);
int sh_metrics_gauge_fn(struct sh_metrics *m, const struct sh_metric_desc *d,
                        sh_metrics_collect_fn fn, void *data, struct sh_error *err);
/* One sample of a gauge_fn family: @values as many as its labels (NULL for none). */
void sh_metrics_sink_value(struct sh_metrics_sink *s, const char *const *values, double v);

/* Updates: lock-free, no allocation, NULL-safe. */
void sh_counter_add(struct sh_counter *c, uint64_t n);
void sh_gauge_set(struct sh_gauge *g, int64_t v);
void sh_gauge_add(struct sh_gauge *g, int64_t delta);
void sh_histogram_observe(struct sh_histogram *h, double v);
/* Observes @ns nanoseconds as seconds. */
void sh_histogram_observe_ns(struct sh_histogram *h, unsigned long long ns);

/* Reads back (tests, logs). */
uint64_t sh_counter_value(const struct sh_counter *c);

/*
 * The text exposition (format 0.0.4) of every family, in registration order: # HELP and
 * # TYPE, then its samples; histograms as cumulative _bucket{le=...} ending in +Inf, _sum
 * and _count (equal to the +Inf bucket). *@ret is malloc'd and NUL-terminated. Takes the
 * registry's lock and calls the gauge_fn callbacks. 0 or -ENOMEM.
 */
int sh_metrics_render(struct sh_metrics *m, char **ret, size_t *ret_len, struct sh_error *err);

/* Common latency buckets in seconds: 1 ms .. 60 s. */
#define SH_METRICS_LATENCY_BUCKETS_N 15
extern const double sh_metrics_latency_buckets[SH_METRICS_LATENCY_BUCKETS_N];
