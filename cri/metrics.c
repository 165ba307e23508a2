/*
 * The CRI edge's metrics: per-method request latency and counts by status code, and pods
 * and containers by state read at scrape time. Every series is registered here at start,
 * one per method (and per method and code), so the hook in server.c is an index and two
 * atomic adds.
 */
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>

#include "cri-internal.h"
#include "podmgr.h"
#include "strutil.h"

/* gRPC status codes 0..16 (OK .. UNAUTHENTICATED). */
#define N_CODES 17

struct cri_metrics {
        size_t n_methods;
        struct sh_histogram **seconds; /* [n_methods] */
        struct sh_counter **calls;     /* [n_methods * N_CODES] */
        struct pod_mgr *pods;          /* borrowed, for the state gauges */
};

static const char *const method_labels[] = {"service", "method", NULL};
static const char *const code_labels[] = {"service", "method", "code", NULL};

static const struct sh_metric_desc seconds_desc = {
        .name = "runt_grpc_request_duration_seconds",
        .help = "Time from a CRI call's arrival to its answer going out, by service and method.",
        .labels = method_labels,
        .buckets = sh_metrics_latency_buckets,
        .n_buckets = SH_METRICS_LATENCY_BUCKETS_N,
        .sparse = true,
};

/* Sparse: 17 codes for each of 40 methods, and only the ones that happened are shown. */
static const struct sh_metric_desc calls_desc = {
        .name = "runt_grpc_requests_total",
        .help = "CRI calls answered, by service, method and gRPC status code.",
        .labels = code_labels,
        .sparse = true,
};

static const struct sh_metric_desc pods_desc = {
        .name = "runt_pod_sandboxes",
        .help = "Pod sandboxes by state (ones being created are not counted).",
        .labels = (const char *const[]){"state", NULL},
};

static const struct sh_metric_desc ctrs_desc = {
        .name = "runt_containers",
        .help = "Containers by state.",
        .labels = (const char *const[]){"state", NULL},
};

static void collect_pods(void *data, struct sh_metrics_sink *sink)
{
        static const char *const names[3] = {"creating", "ready", "notready"};
        struct cri_metrics *cm = data;
        size_t pods[3], ctrs[4];

        pod_mgr_state_counts(cm->pods, pods, ctrs);
        /* index POD_CREATING is never counted (see pod_mgr_state_counts): not shown. */
        for (size_t i = POD_READY; i < 3; i++)
                sh_metrics_sink_value(sink, (const char *const[]){names[i], NULL}, (double)pods[i]);
}

static void collect_ctrs(void *data, struct sh_metrics_sink *sink)
{
        static const char *const names[4] = {"created", "running", "exited", "unknown"};
        struct cri_metrics *cm = data;
        size_t pods[3], ctrs[4];

        /* Read twice per scrape (once per family); the lists are in memory and small. */
        pod_mgr_state_counts(cm->pods, pods, ctrs);
        for (size_t i = 0; i < 4; i++)
                sh_metrics_sink_value(sink, (const char *const[]){names[i], NULL}, (double)ctrs[i]);
}

int cri_metrics_new(struct sh_metrics *reg, struct pod_mgr *pods, struct cri_metrics **ret,
                    struct sh_error *err)
{
        struct cri_metrics *cm;
        int r = 0;

        cm = calloc(1, sizeof(*cm));
        if (!cm)
                return -ENOMEM;
        cm->pods = pods;
        cm->n_methods = cri_method_count();
        cm->seconds = calloc(cm->n_methods, sizeof(*cm->seconds));
        cm->calls = calloc(cm->n_methods * N_CODES, sizeof(*cm->calls));
        if (!cm->seconds || !cm->calls) {
                cri_metrics_free(cm);
                return -ENOMEM;
        }
        for (size_t i = 0; r == 0 && i < cm->n_methods; i++) {
                const struct cri_method *m = cri_method_at(i);

                r = sh_metrics_histogram(reg, &seconds_desc,
                                         (const char *const[]){m->service, m->name, NULL},
                                         &cm->seconds[i], err);
                for (int c = 0; r == 0 && c < N_CODES; c++)
                        r = sh_metrics_counter(
                                reg, &calls_desc,
                                (const char *const[]){m->service, m->name,
                                                      cri_status_name((grpc_status_code)c), NULL},
                                &cm->calls[i * N_CODES + (size_t)c], err);
        }
        if (r == 0 && pods)
                r = sh_metrics_gauge_fn(reg, &pods_desc, collect_pods, cm, err);
        if (r == 0 && pods)
                r = sh_metrics_gauge_fn(reg, &ctrs_desc, collect_ctrs, cm, err);
        if (r < 0) {
                cri_metrics_free(cm);
                return r;
        }
        *ret = cm;
        return 0;
}

struct cri_metrics *cri_metrics_free(struct cri_metrics *cm)
{
        if (!cm)
                return NULL;
        free(cm->seconds);
        free(cm->calls);
        free(cm);
        return NULL;
}

void cri_metrics_rpc(struct cri_metrics *cm, const struct cri_method *m, int code,
                     unsigned long long ns)
{
        size_t i;

        if (!cm || !m)
                return; /* metrics off, or a method runt does not know (no label for it) */
        /* The table is one array: the index is the offset (checked, in case it ever is not). */
        i = (size_t)(m - cri_method_at(0));
        if (i >= cm->n_methods || cri_method_at(i) != m)
                return;
        sh_histogram_observe_ns(cm->seconds[i], ns);
        if (code < 0 || code >= N_CODES)
                code = GRPC_STATUS_UNKNOWN;
        sh_counter_add(cm->calls[i * N_CODES + (size_t)code], 1);
}
