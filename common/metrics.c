/* The metrics registry and its text exposition (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

const double sh_metrics_latency_buckets[SH_METRICS_LATENCY_BUCKETS_N] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

enum family_type {
        FAMILY_COUNTER,
        FAMILY_GAUGE,
        FAMILY_HISTOGRAM,
        FAMILY_GAUGE_FN,
};

struct series {
        struct series *next;
        char **values; /* n_labels of them */
        union {
                struct sh_counter *counter;
                struct sh_gauge *gauge;
                struct sh_histogram *hist;
        } u;
};

struct sh_counter {
        _Atomic uint64_t v;
};

struct sh_gauge {
        _Atomic int64_t v;
};

struct sh_histogram {
        size_t n_buckets;         /* bounds; counts has one more, for +Inf */
        const double *bounds;     /* the family's */
        _Atomic uint64_t sum;     /* the bits of a double */
        _Atomic uint64_t *counts; /* per bucket, not cumulative */
};

struct family {
        struct family *next;
        enum family_type type;
        char *name;
        char *help;
        size_t n_labels;
        char **labels;
        size_t n_buckets;
        double *buckets;
        bool sparse;
        struct series *series, **tail;
        sh_metrics_collect_fn fn;
        void *fn_data;
};

struct sh_metrics {
        pthread_mutex_t lock; /* protects families and every family's series list */
        struct family *families, **tail;
};

struct sh_metrics_sink {
        FILE *f;
        const struct family *fam;
};

struct sh_metrics *sh_metrics_new(void)
{
        struct sh_metrics *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        pthread_mutex_init(&m->lock, NULL);
        m->tail = &m->families;
        return m;
}

static void strv_free_n(char **v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

static void series_free(struct series *s, const struct family *f)
{
        strv_free_n(s->values, f->n_labels);
        switch (f->type) {
        case FAMILY_COUNTER:
                free(s->u.counter);
                break;
        case FAMILY_GAUGE:
                free(s->u.gauge);
                break;
        case FAMILY_HISTOGRAM:
                if (s->u.hist)
                        free(s->u.hist->counts);
                free(s->u.hist);
                break;
        case FAMILY_GAUGE_FN:
                break;
        }
        free(s);
}

static void family_free(struct family *f)
{
        struct series *s, *next;

        if (!f)
                return;
        for (s = f->series; s; s = next) {
                next = s->next;
                series_free(s, f);
        }
        free(f->name);
        free(f->help);
        strv_free_n(f->labels, f->n_labels);
        free(f->buckets);
        free(f);
}

struct sh_metrics *sh_metrics_free(struct sh_metrics *m)
{
        struct family *f, *next;

        if (!m)
                return NULL;
        for (f = m->families; f; f = next) {
                next = f->next;
                family_free(f);
        }
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
}

static bool valid_name(const char *s, bool colon)
{
        if (!s || !s[0] || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (const char *p = s; *p; p++) {
                char c = *p;

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || (colon && c == ':')))
                        return false;
        }
        return true;
}

static size_t count_labels(const char *const *v)
{
        size_t n = 0;

        while (v && v[n])
                n++;
        return n;
}

static int check_desc(const struct sh_metric_desc *d, enum family_type type, struct sh_error *err)
{
        size_t n = count_labels(d->labels);

        if (!valid_name(d->name, true))
                return sh_err(err, -EINVAL, "metric name '%s' is not valid",
                              d->name ? d->name : "");
        for (size_t i = 0; i < n; i++) {
                if (!valid_name(d->labels[i], false) || strncmp(d->labels[i], "__", 2) == 0 ||
                    (type == FAMILY_HISTOGRAM && strcmp(d->labels[i], "le") == 0))
                        return sh_err(err, -EINVAL, "metric %s: label name '%s' is not valid",
                                      d->name, d->labels[i]);
                for (size_t j = 0; j < i; j++)
                        if (strcmp(d->labels[i], d->labels[j]) == 0)
                                return sh_err(err, -EINVAL, "metric %s: label '%s' twice", d->name,
                                              d->labels[i]);
        }
        if (type == FAMILY_HISTOGRAM) {
                if (!d->buckets || d->n_buckets == 0)
                        return sh_err(err, -EINVAL, "metric %s: a histogram needs buckets",
                                      d->name);
                for (size_t i = 0; i < d->n_buckets; i++)
                        if (!isfinite(d->buckets[i]) ||
                            (i > 0 && d->buckets[i] <= d->buckets[i - 1]))
                                return sh_err(err, -EINVAL,
                                              "metric %s: buckets must be finite and ascending",
                                              d->name);
        }
        return 0;
}

/* Does family @f match @d and @type exactly? */
static bool same_family(const struct family *f, const struct sh_metric_desc *d,
                        enum family_type type)
{
        size_t n = count_labels(d->labels);

        if (f->type != type || f->n_labels != n || f->sparse != d->sparse ||
            strcmp(f->help, d->help ? d->help : "") != 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (strcmp(f->labels[i], d->labels[i]) != 0)
                        return false;
        if (type == FAMILY_HISTOGRAM) {
                if (f->n_buckets != d->n_buckets)
                        return false;
                for (size_t i = 0; i < d->n_buckets; i++)
                        if (f->buckets[i] != d->buckets[i])
                                return false;
        }
        return true;
}

static char **strv_copy_n(const char *const *v, size_t n)
{
        char **c = calloc(n + 1, sizeof(*c));

        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(v[i] ? v[i] : "");
                if (!c[i]) {
                        strv_free_n(c, i);
                        return NULL;
                }
        }
        return c;
}

/* The family @d names, made if new. Lock held. */
static int get_family(struct sh_metrics *m, const struct sh_metric_desc *d, enum family_type type,
                      struct family **ret, struct sh_error *err)
{
        struct family *f;
        int r = check_desc(d, type, err);

        if (r < 0)
                return r;
        for (f = m->families; f; f = f->next)
                if (strcmp(f->name, d->name) == 0) {
                        if (!same_family(f, d, type) || type == FAMILY_GAUGE_FN)
                                return sh_err(err, -EEXIST,
                                              "metric %s is registered already, differently",
                                              d->name);
                        *ret = f;
                        return 0;
                }
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->type = type;
        f->sparse = d->sparse;
        f->tail = &f->series;
        f->n_labels = count_labels(d->labels);
        f->name = strdup(d->name);
        f->help = strdup(d->help ? d->help : "");
        f->labels = strv_copy_n(d->labels, f->n_labels);
        if (type == FAMILY_HISTOGRAM) {
                f->n_buckets = d->n_buckets;
                f->buckets = calloc(d->n_buckets, sizeof(*f->buckets));
                if (f->buckets)
                        memcpy(f->buckets, d->buckets, d->n_buckets * sizeof(*f->buckets));
        }
        if (!f->name || !f->help || !f->labels || (type == FAMILY_HISTOGRAM && !f->buckets)) {
                family_free(f);
                return -ENOMEM;
        }
        *m->tail = f;
        m->tail = &f->next;
        *ret = f;
        return 0;
}

/* The series of @f with @values, made if new. Lock held. */
static int get_series(struct family *f, const char *const *values, struct series **ret)
{
        struct series *s;

        for (s = f->series; s; s = s->next) {
                size_t i;

                for (i = 0; i < f->n_labels; i++)
                        if (strcmp(s->values[i], values[i] ? values[i] : "") != 0)
                                break;
                if (i == f->n_labels) {
                        *ret = s;
                        return 0;
                }
        }
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->values = strv_copy_n(values, f->n_labels);
        if (!s->values) {
                free(s);
                return -ENOMEM;
        }
        switch (f->type) {
        case FAMILY_COUNTER:
                s->u.counter = calloc(1, sizeof(*s->u.counter));
                break;
        case FAMILY_GAUGE:
                s->u.gauge = calloc(1, sizeof(*s->u.gauge));
                break;
        case FAMILY_HISTOGRAM:
                s->u.hist = calloc(1, sizeof(*s->u.hist));
                if (s->u.hist) {
                        s->u.hist->n_buckets = f->n_buckets;
                        s->u.hist->bounds = f->buckets;
                        s->u.hist->counts = calloc(f->n_buckets + 1, sizeof(*s->u.hist->counts));
                        if (!s->u.hist->counts) {
                                free(s->u.hist);
                                s->u.hist = NULL;
                        }
                }
                break;
        case FAMILY_GAUGE_FN:
                break;
        }
        if (!s->u.counter) { /* any member: they share the storage */
                series_free(s, f);
                return -ENOMEM;
        }
        *f->tail = s;
        f->tail = &s->next;
        *ret = s;
        return 0;
}

static int do_register(struct sh_metrics *m, const struct sh_metric_desc *d, enum family_type type,
                       const char *const *values, struct series **ret, struct sh_error *err)
{
        static const char *const none[] = {NULL};
        struct family *f;
        int r;

        if (!m)
                return sh_err(err, -EINVAL, "no metrics registry");
        pthread_mutex_lock(&m->lock);
        r = get_family(m, d, type, &f, err);
        if (r == 0) {
                if (f->n_labels > 0 && (!values || count_labels(values) < f->n_labels))
                        r = sh_err(err, -EINVAL, "metric %s: %zu label values needed", d->name,
                                   f->n_labels);
                else
                        r = get_series(f, values ? values : none, ret);
        }
        pthread_mutex_unlock(&m->lock);
        return r;
}

int sh_metrics_counter(struct sh_metrics *m, const struct sh_metric_desc *d,
                       const char *const *values, struct sh_counter **ret, struct sh_error *err)
{
        struct series *s;
        int r = do_register(m, d, FAMILY_COUNTER, values, &s, err);

        if (r == 0)
                *ret = s->u.counter;
        return r;
}

int sh_metrics_gauge(struct sh_metrics *m, const struct sh_metric_desc *d,
                     const char *const *values, struct sh_gauge **ret, struct sh_error *err)
{
        struct series *s;
        int r = do_register(m, d, FAMILY_GAUGE, values, &s, err);

        if (r == 0)
                *ret = s->u.gauge;
        return r;
}

int sh_metrics_histogram(struct sh_metrics *m, const struct sh_metric_desc *d,
                         const char *const *values, struct sh_histogram **ret, struct sh_error *err)
{
        struct series *s;
        int r = do_register(m, d, FAMILY_HISTOGRAM, values, &s, err);

        if (r == 0)
                *ret = s->u.hist;
        return r;
}

int sh_metrics_gauge_fn(struct sh_metrics *m, const struct sh_metric_desc *d,
                        sh_metrics_collect_fn fn, void *data, struct sh_error *err)
{
        struct family *f;
        int r;

        if (!m || !fn)
                return sh_err(err, -EINVAL, "no metrics registry or callback");
        pthread_mutex_lock(&m->lock);
        r = get_family(m, d, FAMILY_GAUGE_FN, &f, err);
        if (r == 0) {
                f->fn = fn;
                f->fn_data = data;
        }
        pthread_mutex_unlock(&m->lock);
        return r;
}

void sh_counter_add(struct sh_counter *c, uint64_t n)
{
        if (c)
                atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

uint64_t sh_counter_value(const struct sh_counter *c)
{
        return c ? atomic_load_explicit(&((struct sh_counter *)c)->v, memory_order_relaxed) : 0;
}

void sh_gauge_set(struct sh_gauge *g, int64_t v)
{
        if (g)
                atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

void sh_gauge_add(struct sh_gauge *g, int64_t delta)
{
        if (g)
                atomic_fetch_add_explicit(&g->v, delta, memory_order_relaxed);
}

static double bits_double(uint64_t b)
{
        double d;

        memcpy(&d, &b, sizeof(d));
        return d;
}

static uint64_t double_bits(double d)
{
        uint64_t b;

        memcpy(&b, &d, sizeof(b));
        return b;
}

void sh_histogram_observe(struct sh_histogram *h, double v)
{
        uint64_t old, upd;
        size_t i;

        if (!h || isnan(v))
                return;
        /* A handful of buckets: a linear scan beats a branchy search. */
        for (i = 0; i < h->n_buckets && v > h->bounds[i]; i++)
                ;
        atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
        old = atomic_load_explicit(&h->sum, memory_order_relaxed);
        do
                upd = double_bits(bits_double(old) + v);
        while (!atomic_compare_exchange_weak_explicit(&h->sum, &old, upd, memory_order_relaxed,
                                                      memory_order_relaxed));
}

void sh_histogram_observe_ns(struct sh_histogram *h, unsigned long long ns)
{
        if (h)
                sh_histogram_observe(h, (double)ns / 1e9);
}

/* ------------------------------------------------------------------ exposition */

/* A float as the format wants it: shortest text that reads back, +Inf, -Inf, NaN. */
static void put_double(FILE *f, double v)
{
        char buf[40];

        if (isnan(v)) {
                fputs("NaN", f);
                return;
        }
        if (isinf(v)) {
                fputs(v > 0 ? "+Inf" : "-Inf", f);
                return;
        }
        if (v == trunc(v) && fabs(v) < 1e15) {
                fprintf(f, "%.0f", v); /* "10", not "1e+01" */
                return;
        }
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, sizeof(buf), "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        break;
        }
        fputs(buf, f);
}

/* HELP text: backslash and newline escaped. */
static void put_help(FILE *f, const char *s)
{
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
}

/* A label value: backslash, double quote and newline escaped. */
static void put_label_value(FILE *f, const char *s)
{
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", f);
                else if (*s == '"')
                        fputs("\\\"", f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
}

/* "name{a="x",b="y"}" with an optional extra label (le) last; no braces without labels. */
static void put_sample_name(FILE *f, const struct family *fam, const char *suffix,
                            const char *const *values, const char *extra_name, double extra)
{
        bool any = fam->n_labels > 0 || extra_name;

        fputs(fam->name, f);
        fputs(suffix, f);
        if (!any)
                return;
        fputc('{', f);
        for (size_t i = 0; i < fam->n_labels; i++) {
                fprintf(f, "%s%s=\"", i ? "," : "", fam->labels[i]);
                put_label_value(f, values[i] ? values[i] : "");
                fputc('"', f);
        }
        if (extra_name) {
                fprintf(f, "%s%s=\"", fam->n_labels ? "," : "", extra_name);
                put_double(f, extra);
                fputc('"', f);
        }
        fputc('}', f);
}

void sh_metrics_sink_value(struct sh_metrics_sink *s, const char *const *values, double v)
{
        static const char *const none[] = {NULL};

        if (!s || (s->fam->n_labels > 0 && count_labels(values) < s->fam->n_labels))
                return;
        put_sample_name(s->f, s->fam, "", values ? values : none, NULL, 0);
        fputc(' ', s->f);
        put_double(s->f, v);
        fputc('\n', s->f);
}

static void render_histogram(FILE *f, const struct family *fam, const struct series *s)
{
        const struct sh_histogram *h = s->u.hist;
        const char *const *values = (const char *const *)s->values;
        uint64_t cum = 0, counts[64], *c = counts;
        _cleanup_free_ uint64_t *heap = NULL;
        double sum;

        if (h->n_buckets + 1 > sizeof(counts) / sizeof(counts[0])) {
                heap = calloc(h->n_buckets + 1, sizeof(*heap));
                if (!heap)
                        return;
                c = heap;
        }
        /* One read of each counter: _count is the +Inf bucket, so they always agree. */
        for (size_t i = 0; i <= h->n_buckets; i++)
                c[i] = atomic_load_explicit(&((struct sh_histogram *)h)->counts[i],
                                            memory_order_relaxed);
        sum = bits_double(
                atomic_load_explicit(&((struct sh_histogram *)h)->sum, memory_order_relaxed));
        for (size_t i = 0; i <= h->n_buckets; i++)
                cum += c[i];
        if (fam->sparse && cum == 0)
                return;
        cum = 0;
        for (size_t i = 0; i <= h->n_buckets; i++) {
                cum += c[i];
                put_sample_name(f, fam, "_bucket", values, "le",
                                i < h->n_buckets ? h->bounds[i] : INFINITY);
                fprintf(f, " %" PRIu64 "\n", cum);
        }
        put_sample_name(f, fam, "_sum", values, NULL, 0);
        fputc(' ', f);
        put_double(f, sum);
        fputc('\n', f);
        put_sample_name(f, fam, "_count", values, NULL, 0);
        fprintf(f, " %" PRIu64 "\n", cum);
}

static void render_family(FILE *f, const struct family *fam)
{
        static const char *const type_names[] = {
                [FAMILY_COUNTER] = "counter",
                [FAMILY_GAUGE] = "gauge",
                [FAMILY_HISTOGRAM] = "histogram",
                [FAMILY_GAUGE_FN] = "gauge",
        };

        fprintf(f, "# HELP %s ", fam->name);
        put_help(f, fam->help);
        fprintf(f, "\n# TYPE %s %s\n", fam->name, type_names[fam->type]);
        if (fam->type == FAMILY_GAUGE_FN) {
                struct sh_metrics_sink sink = {.f = f, .fam = fam};

                fam->fn(fam->fn_data, &sink);
                return;
        }
        for (const struct series *s = fam->series; s; s = s->next) {
                const char *const *values = (const char *const *)s->values;

                switch (fam->type) {
                case FAMILY_COUNTER: {
                        uint64_t v = sh_counter_value(s->u.counter);

                        if (fam->sparse && v == 0)
                                break;
                        put_sample_name(f, fam, "", values, NULL, 0);
                        fprintf(f, " %" PRIu64 "\n", v);
                        break;
                }
                case FAMILY_GAUGE: {
                        int64_t v = atomic_load_explicit(&s->u.gauge->v, memory_order_relaxed);

                        if (fam->sparse && v == 0)
                                break;
                        put_sample_name(f, fam, "", values, NULL, 0);
                        fprintf(f, " %" PRId64 "\n", v);
                        break;
                }
                case FAMILY_HISTOGRAM:
                        render_histogram(f, fam, s);
                        break;
                case FAMILY_GAUGE_FN:
                        break;
                }
        }
}

int sh_metrics_render(struct sh_metrics *m, char **ret, size_t *ret_len, struct sh_error *err)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        if (!f)
                return sh_err(err, -ENOMEM, "metrics: open_memstream");
        if (m) {
                pthread_mutex_lock(&m->lock);
                for (const struct family *fam = m->families; fam; fam = fam->next)
                        render_family(f, fam);
                pthread_mutex_unlock(&m->lock);
        }
        if (ferror(f) || fclose(f) != 0) {
                free(buf);
                return sh_err(err, -ENOMEM, "metrics: render");
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}
