/*
 * The stats and metrics RPCs: ContainerStats, ListContainerStats, PodSandboxStats,
 * ListPodSandboxStats, ListMetricDescriptors and ListPodSandboxMetrics. Every figure comes
 * from podmgr's stats collector (podmgr/stats.c): these handlers read memory and translate.
 *
 * Metrics carry cAdvisor's names, help texts and labels, so the kubelet can serve
 * /metrics/cadvisor from them (PodAndContainerStatsFromCRI). A CRI Metric's value is a
 * uint64: bytes and counts are exact; seconds are whole seconds, rounded down, as CRI-O
 * sends them (the kubelet turns the value into a float as it is, so nanoseconds under a
 * "_seconds" name would be a billion times off).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SH_LOG_MODULE "cri"
#include "cleanup.h"
#include "cri-internal.h"
#include "log.h"
#include "podmgr.h"
#include "strutil.h"
#include "validate.h"

#define NEW(type, lower) ((type *)cri_msg_new(&runtime__v1__##lower##__descriptor))

/* The interface CRI calls the default one (the one CNI made). */
#define DEFAULT_IFACE "eth0"

/* ------------------------------------------------------------------ stats messages */

static Runtime__V1__UInt64Value *u64(unsigned long long v, bool *ok)
{
        Runtime__V1__UInt64Value *m = NEW(Runtime__V1__UInt64Value, uint64_value);

        if (m)
                m->value = v;
        else
                *ok = false;
        return m;
}

static Runtime__V1__CpuUsage *cpu_msg(const struct pod_stats_sample *s, bool *ok)
{
        Runtime__V1__CpuUsage *c = NEW(Runtime__V1__CpuUsage, cpu_usage);

        if (!c) {
                *ok = false;
                return NULL;
        }
        c->timestamp = s->timestamp_ns;
        c->usage_core_nano_seconds = u64(s->cg.cpu_usage_ns, ok);
        /* Unset until there are two samples to measure between. */
        if (s->has_cpu_rate)
                c->usage_nano_cores = u64(s->cpu_nano_cores, ok);
        return c;
}

static Runtime__V1__MemoryUsage *memory_msg(const struct pod_stats_sample *s, bool *ok)
{
        Runtime__V1__MemoryUsage *m = NEW(Runtime__V1__MemoryUsage, memory_usage);
        const struct sh_cg_stats *cg = &s->cg;

        if (!m) {
                *ok = false;
                return NULL;
        }
        m->timestamp = s->timestamp_ns;
        m->working_set_bytes = u64(cg->mem_working_set, ok);
        m->usage_bytes = u64(cg->mem_usage, ok);
        m->rss_bytes = u64(cg->mem_rss, ok);
        m->page_faults = u64(cg->mem_pgfault, ok);
        m->major_page_faults = u64(cg->mem_pgmajfault, ok);
        if (cg->has_mem_limit)
                m->available_bytes = u64(cg->mem_limit > cg->mem_working_set
                                                 ? cg->mem_limit - cg->mem_working_set
                                                 : 0,
                                         ok);
        return m;
}

static Runtime__V1__SwapUsage *swap_msg(const struct pod_stats_sample *s, bool *ok)
{
        Runtime__V1__SwapUsage *m = NEW(Runtime__V1__SwapUsage, swap_usage);
        const struct sh_cg_stats *cg = &s->cg;

        if (!m) {
                *ok = false;
                return NULL;
        }
        m->timestamp = s->timestamp_ns;
        m->swap_usage_bytes = u64(cg->swap_usage, ok);
        if (cg->has_swap_limit)
                m->swap_available_bytes = u64(
                        cg->swap_limit > cg->swap_usage ? cg->swap_limit - cg->swap_usage : 0, ok);
        return m;
}

static Runtime__V1__ContainerMetadata *ctr_metadata(const struct be_container_spec *s, bool *ok)
{
        Runtime__V1__ContainerMetadata *m = NEW(Runtime__V1__ContainerMetadata, container_metadata);

        if (!m || !(m->name = cri_strdup(s->name)))
                *ok = false;
        if (m)
                m->attempt = s->attempt;
        return m;
}

static Runtime__V1__ContainerAttributes *ctr_attributes(const struct pod_container_info *i,
                                                        bool *ok)
{
        Runtime__V1__ContainerAttributes *a =
                NEW(Runtime__V1__ContainerAttributes, container_attributes);

        if (!a) {
                *ok = false;
                return NULL;
        }
        a->id = cri_strdup(i->id);
        a->metadata = ctr_metadata(&i->spec, ok);
        a->labels = (Runtime__V1__ContainerAttributes__LabelsEntry **)cri_entries(
                &runtime__v1__container_attributes__labels_entry__descriptor, i->spec.labels,
                i->spec.n_labels, &a->n_labels);
        a->annotations = (Runtime__V1__ContainerAttributes__AnnotationsEntry **)cri_entries(
                &runtime__v1__container_attributes__annotations_entry__descriptor,
                i->spec.annotations, i->spec.n_annotations, &a->n_annotations);
        if (!a->id || !a->labels || !a->annotations)
                *ok = false;
        return a;
}

/* A ContainerStats message of @s: attributes always, each usage the collector measured. */
static Runtime__V1__ContainerStats *ctr_stats_msg(const struct pod_container_stats *s)
{
        Runtime__V1__ContainerStats *m = NEW(Runtime__V1__ContainerStats, container_stats);
        const struct sh_cg_stats *cg = &s->sample.cg;
        bool ok = true;

        if (!m)
                return NULL;
        m->attributes = ctr_attributes(s->info, &ok);
        if (s->has_stats && cg->has_cpu)
                m->cpu = cpu_msg(&s->sample, &ok);
        if (s->has_stats && cg->has_memory)
                m->memory = memory_msg(&s->sample, &ok);
        if (s->has_stats && cg->has_swap)
                m->swap = swap_msg(&s->sample, &ok);
        if (s->has_stats && s->has_writable_layer) {
                struct sh_fs_usage u = {
                        .timestamp_ns = s->writable_layer.timestamp_ns,
                        .used_bytes = s->writable_layer.used_bytes,
                        .inodes_used = s->writable_layer.inodes_used,
                };

                snprintf(u.mountpoint, sizeof(u.mountpoint), "%s", s->writable_layer.mountpoint);
                if (!(m->writable_layer = cri_fs_usage_msg(&u)))
                        ok = false;
        }
        if (!ok) {
                protobuf_c_message_free_unpacked(&m->base, NULL);
                return NULL;
        }
        return m;
}

static Runtime__V1__NetworkInterfaceUsage *iface_msg(const struct sh_netdev *d, bool *ok)
{
        Runtime__V1__NetworkInterfaceUsage *m =
                NEW(Runtime__V1__NetworkInterfaceUsage, network_interface_usage);

        if (!m) {
                *ok = false;
                return NULL;
        }
        if (!(m->name = cri_strdup(d->name)))
                *ok = false;
        m->rx_bytes = u64(d->rx_bytes, ok);
        m->rx_errors = u64(d->rx_errors, ok);
        m->tx_bytes = u64(d->tx_bytes, ok);
        m->tx_errors = u64(d->tx_errors, ok);
        return m;
}

/*
 * The pod's interfaces: eth0 as the default one, and every interface (eth0 too) in
 * interfaces, as cAdvisor fills the kubelet's summary (InterfaceStats and Interfaces).
 */
static Runtime__V1__NetworkUsage *network_msg(const struct pod_sandbox_stats *s, bool *ok)
{
        Runtime__V1__NetworkUsage *m = NEW(Runtime__V1__NetworkUsage, network_usage);

        if (!m || !(m->interfaces = cri_array_new(s->n_ifaces))) {
                *ok = false;
                return m;
        }
        m->timestamp = s->net_timestamp_ns;
        for (size_t i = 0; i < s->n_ifaces; i++) {
                Runtime__V1__NetworkInterfaceUsage *u = iface_msg(&s->ifaces[i], ok);

                if (u)
                        m->interfaces[m->n_interfaces++] = u;
                if (strcmp(s->ifaces[i].name, DEFAULT_IFACE) == 0 && !m->default_interface)
                        m->default_interface = iface_msg(&s->ifaces[i], ok);
        }
        return m;
}

static Runtime__V1__PodSandboxAttributes *pod_attributes(const struct pod_sandbox_info *i, bool *ok)
{
        Runtime__V1__PodSandboxAttributes *a =
                NEW(Runtime__V1__PodSandboxAttributes, pod_sandbox_attributes);
        Runtime__V1__PodSandboxMetadata *md;

        if (!a) {
                *ok = false;
                return NULL;
        }
        a->id = cri_strdup(i->id);
        md = a->metadata = NEW(Runtime__V1__PodSandboxMetadata, pod_sandbox_metadata);
        if (md) {
                md->name = cri_strdup(i->spec.name);
                md->uid = cri_strdup(i->spec.uid);
                md->namespace_ = cri_strdup(i->spec.namespace);
                md->attempt = i->spec.attempt;
        }
        a->labels = (Runtime__V1__PodSandboxAttributes__LabelsEntry **)cri_entries(
                &runtime__v1__pod_sandbox_attributes__labels_entry__descriptor, i->spec.labels,
                i->spec.n_labels, &a->n_labels);
        a->annotations = (Runtime__V1__PodSandboxAttributes__AnnotationsEntry **)cri_entries(
                &runtime__v1__pod_sandbox_attributes__annotations_entry__descriptor,
                i->spec.annotations, i->spec.n_annotations, &a->n_annotations);
        if (!a->id || !md || !md->name || !md->uid || !md->namespace_ || !a->labels ||
            !a->annotations)
                *ok = false;
        return a;
}

static Runtime__V1__PodSandboxStats *pod_stats_msg(const struct pod_sandbox_stats *s)
{
        Runtime__V1__PodSandboxStats *m = NEW(Runtime__V1__PodSandboxStats, pod_sandbox_stats);
        Runtime__V1__LinuxPodSandboxStats *l;
        const struct sh_cg_stats *cg = &s->sample.cg;
        bool ok = true;

        if (!m)
                return NULL;
        m->attributes = pod_attributes(s->info, &ok);
        l = m->linux = NEW(Runtime__V1__LinuxPodSandboxStats, linux_pod_sandbox_stats);
        if (!l || !(l->containers = cri_array_new(s->n_containers))) {
                protobuf_c_message_free_unpacked(&m->base, NULL);
                return NULL;
        }
        if (s->has_stats && cg->has_cpu)
                l->cpu = cpu_msg(&s->sample, &ok);
        if (s->has_stats && cg->has_memory)
                l->memory = memory_msg(&s->sample, &ok);
        if (s->has_stats && s->has_network)
                l->network = network_msg(s, &ok);
        if (s->has_stats && cg->has_pids) {
                l->process = NEW(Runtime__V1__ProcessUsage, process_usage);
                if (l->process) {
                        l->process->timestamp = s->sample.timestamp_ns;
                        l->process->process_count = u64(cg->pids, &ok);
                } else {
                        ok = false;
                }
        }
        for (size_t i = 0; ok && i < s->n_containers; i++) {
                Runtime__V1__ContainerStats *c = ctr_stats_msg(s->containers[i]);

                if (!c)
                        ok = false;
                else
                        l->containers[l->n_containers++] = c;
        }
        if (!ok) {
                protobuf_c_message_free_unpacked(&m->base, NULL);
                return NULL;
        }
        return m;
}

/* ------------------------------------------------------------------ requests */

/* The label selector of a filter as be_kv pairs (borrowed strings; the array the caller's). */
static struct be_kv *selector(void *const *sel, size_t n)
{
        struct be_kv *v = calloc(n + 1, sizeof(*v));

        for (size_t i = 0; v && i < n; i++) {
                const struct cri_map_entry *e = sel[i];

                v[i].key = e->key;
                v[i].value = e->value;
        }
        return v;
}

/* An id that cannot name an object of runt's: NOT_FOUND, as any unknown id. */
static int id_of(const char *id, const char *field, const char *rpc, struct sh_error *err)
{
        if (!id || !id[0])
                return sh_err(err, -EINVAL, "%s: %s is required", rpc, field);
        if (sh_validate_id_prefix(id, field, NULL) < 0)
                return sh_err(err, -ENOENT, "%s: '%.80s' not found", rpc, id);
        return 0;
}

int cri_container_stats(struct cri_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__ContainerStatsRequest *in =
                (const Runtime__V1__ContainerStatsRequest *)req;
        Runtime__V1__ContainerStatsResponse *r;
        struct pod_container_stats *s = NULL;
        int rc = id_of(in->container_id, "container_id", "ContainerStats", err);

        if (rc == 0)
                rc = pod_container_stats(ctx->pods, in->container_id, &s, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__ContainerStatsResponse, container_stats_response);
        if (r)
                r->stats = ctr_stats_msg(s);
        pod_container_stats_free(s);
        if (!r || !r->stats) {
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

int cri_list_container_stats(struct cri_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__ListContainerStatsRequest *in =
                (const Runtime__V1__ListContainerStatsRequest *)req;
        const Runtime__V1__ContainerStatsFilter *f = in->filter;
        struct pod_container_filter pf = {0};
        _cleanup_free_ struct be_kv *labels = NULL;
        struct pod_container_stats **list = NULL;
        Runtime__V1__ListContainerStatsResponse *r;
        size_t n = 0;
        int rc = 0;

        if (f) {
                /* A filter id that can name nothing matches nothing; it is no error. */
                if ((f->id && f->id[0] && sh_validate_id_prefix(f->id, "filter.id", NULL) < 0) ||
                    (f->pod_sandbox_id && f->pod_sandbox_id[0] &&
                     sh_validate_id_prefix(f->pod_sandbox_id, "filter.pod_sandbox_id", NULL) < 0))
                        goto empty;
                pf.id = f->id;
                pf.sandbox_id = f->pod_sandbox_id;
                if (!(labels = selector((void *const *)f->label_selector, f->n_label_selector)))
                        return -ENOMEM;
                pf.labels = labels;
                pf.n_labels = f->n_label_selector;
        }
        rc = pod_container_stats_list(ctx->pods, &pf, &list, &n, err);
        if (rc < 0)
                return rc;
empty:
        r = NEW(Runtime__V1__ListContainerStatsResponse, list_container_stats_response);
        if (r && !(r->stats = cri_array_new(n)))
                rc = -ENOMEM;
        for (size_t i = 0; r && rc == 0 && i < n; i++) {
                if (!(r->stats[i] = ctr_stats_msg(list[i])))
                        rc = -ENOMEM;
                else
                        r->n_stats++;
        }
        pod_container_stats_list_free(list);
        if (!r || rc < 0) {
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

int cri_pod_sandbox_stats(struct cri_ctx *ctx, const ProtobufCMessage *req,
                          ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__PodSandboxStatsRequest *in =
                (const Runtime__V1__PodSandboxStatsRequest *)req;
        Runtime__V1__PodSandboxStatsResponse *r;
        struct pod_sandbox_stats *s = NULL;
        int rc = id_of(in->pod_sandbox_id, "pod_sandbox_id", "PodSandboxStats", err);

        if (rc == 0)
                rc = pod_sandbox_stats(ctx->pods, in->pod_sandbox_id, &s, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__PodSandboxStatsResponse, pod_sandbox_stats_response);
        if (r)
                r->stats = pod_stats_msg(s);
        pod_sandbox_stats_free(s);
        if (!r || !r->stats) {
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

/* ListPodSandboxStats' filter as @pf (labels in *@labels, the caller's); false: matches none. */
static int pod_filter(const Runtime__V1__PodSandboxStatsFilter *f, struct pod_sandbox_filter *pf,
                      struct be_kv **labels, bool *ret_none)
{
        if (!f)
                return 0;
        if (f->id && f->id[0] && sh_validate_id_prefix(f->id, "filter.id", NULL) < 0) {
                *ret_none = true;
                return 0;
        }
        pf->id = f->id;
        if (!(*labels = selector((void *const *)f->label_selector, f->n_label_selector)))
                return -ENOMEM;
        pf->labels = *labels;
        pf->n_labels = f->n_label_selector;
        return 0;
}

int cri_list_pod_sandbox_stats(struct cri_ctx *ctx, const ProtobufCMessage *req,
                               ProtobufCMessage **ret_resp, struct sh_error *err)
{
        const Runtime__V1__ListPodSandboxStatsRequest *in =
                (const Runtime__V1__ListPodSandboxStatsRequest *)req;
        struct pod_sandbox_filter pf = {0};
        _cleanup_free_ struct be_kv *labels = NULL;
        struct pod_sandbox_stats **list = NULL;
        Runtime__V1__ListPodSandboxStatsResponse *r;
        bool none = false;
        size_t n = 0;
        int rc = pod_filter(in->filter, &pf, &labels, &none);

        if (rc < 0)
                return rc;
        if (!none) {
                rc = pod_sandbox_stats_list(ctx->pods, &pf, &list, &n, err);
                if (rc < 0)
                        return rc;
        }
        r = NEW(Runtime__V1__ListPodSandboxStatsResponse, list_pod_sandbox_stats_response);
        if (r && !(r->stats = cri_array_new(n)))
                rc = -ENOMEM;
        for (size_t i = 0; r && rc == 0 && i < n; i++) {
                if (!(r->stats[i] = pod_stats_msg(list[i])))
                        rc = -ENOMEM;
                else
                        r->n_stats++;
        }
        pod_sandbox_stats_list_free(list);
        if (!r || rc < 0) {
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

/* ------------------------------------------------------------------ metrics */

/* The labels a metric has beyond cAdvisor's base ones. */
enum extra_labels {
        X_NONE,
        X_CPU,     /* "cpu": "total" (one series for all CPUs) */
        X_IFACE,   /* "interface" */
        X_DEVICE,  /* "device": the writable layer's filesystem */
        X_FAILURE, /* "failure_type", "scope" */
};

/*
 * cAdvisor's base labels, as the kubelet's /metrics/cadvisor has them. For a container:
 * its name, its id, its image as the request named it, its id again (cAdvisor's name of
 * the cgroup's container), its pod's namespace and name. For the pod's own series (its
 * cgroup): container, image and name empty, id the pod's.
 */
static const char *const base_keys[] = {"container", "id", "image", "name", "namespace", "pod"};
#define N_BASE (sizeof(base_keys) / sizeof(base_keys[0]))

enum metric_id {
        M_CPU_USAGE,
        M_MEM_USAGE,
        M_MEM_WORKING_SET,
        M_MEM_RSS,
        M_MEM_CACHE,
        M_MEM_MAPPED,
        M_MEM_SWAP,
        M_MEM_FAILCNT,
        M_MEM_FAILURES,
        M_SPEC_MEM_LIMIT,
        M_PROCESSES,
        M_FS_USAGE,
        M_NET_RX_BYTES,
        M_NET_RX_PACKETS,
        M_NET_RX_ERRORS,
        M_NET_RX_DROPPED,
        M_NET_TX_BYTES,
        M_NET_TX_PACKETS,
        M_NET_TX_ERRORS,
        M_NET_TX_DROPPED,
        M_LAST_SEEN,
        M_COUNT,
};

static const struct metric_desc {
        const char *name;
        const char *help;
        enum extra_labels extra;
        Runtime__V1__MetricType type;
} descs[M_COUNT] = {
#define C RUNTIME__V1__METRIC_TYPE__COUNTER
#define G RUNTIME__V1__METRIC_TYPE__GAUGE
        [M_CPU_USAGE] = {"container_cpu_usage_seconds_total",
                         "Cumulative cpu time consumed in seconds.", X_CPU, C},
        [M_MEM_USAGE] = {"container_memory_usage_bytes",
                         "Current memory usage in bytes, including all memory regardless of "
                         "when it was accessed",
                         X_NONE, G},
        [M_MEM_WORKING_SET] = {"container_memory_working_set_bytes",
                               "Current working set in bytes.", X_NONE, G},
        [M_MEM_RSS] = {"container_memory_rss", "Size of RSS in bytes.", X_NONE, G},
        [M_MEM_CACHE] = {"container_memory_cache", "Number of bytes of page cache memory.", X_NONE,
                         G},
        [M_MEM_MAPPED] = {"container_memory_mapped_file", "Size of memory mapped files in bytes.",
                          X_NONE, G},
        [M_MEM_SWAP] = {"container_memory_swap", "Container swap usage in bytes.", X_NONE, G},
        [M_MEM_FAILCNT] = {"container_memory_failcnt", "Number of memory usage hits limits", X_NONE,
                           C},
        [M_MEM_FAILURES] = {"container_memory_failures_total",
                            "Cumulative count of memory allocation failures.", X_FAILURE, C},
        [M_SPEC_MEM_LIMIT] = {"container_spec_memory_limit_bytes",
                              "Memory limit for the container.", X_NONE, G},
        [M_PROCESSES] = {"container_processes", "Number of processes running inside the container.",
                         X_NONE, G},
        [M_FS_USAGE] = {"container_fs_usage_bytes",
                        "Number of bytes that are consumed by the container on this filesystem.",
                        X_DEVICE, G},
        [M_NET_RX_BYTES] = {"container_network_receive_bytes_total",
                            "Cumulative count of bytes received", X_IFACE, C},
        [M_NET_RX_PACKETS] = {"container_network_receive_packets_total",
                              "Cumulative count of packets received", X_IFACE, C},
        [M_NET_RX_ERRORS] = {"container_network_receive_errors_total",
                             "Cumulative count of errors encountered while receiving", X_IFACE, C},
        [M_NET_RX_DROPPED] = {"container_network_receive_packets_dropped_total",
                              "Cumulative count of packets dropped while receiving", X_IFACE, C},
        [M_NET_TX_BYTES] = {"container_network_transmit_bytes_total",
                            "Cumulative count of bytes transmitted", X_IFACE, C},
        [M_NET_TX_PACKETS] = {"container_network_transmit_packets_total",
                              "Cumulative count of packets transmitted", X_IFACE, C},
        [M_NET_TX_ERRORS] = {"container_network_transmit_errors_total",
                             "Cumulative count of errors encountered while transmitting", X_IFACE,
                             C},
        [M_NET_TX_DROPPED] = {"container_network_transmit_packets_dropped_total",
                              "Cumulative count of packets dropped while transmitting", X_IFACE, C},
        [M_LAST_SEEN] = {"container_last_seen", "Last time a container was seen by the exporter",
                         X_NONE, G},
#undef C
#undef G
};

static size_t n_extra(enum extra_labels x)
{
        return x == X_NONE ? 0 : x == X_FAILURE ? 2 : 1;
}

int cri_list_metric_descriptors(struct cri_ctx *ctx, const ProtobufCMessage *req,
                                ProtobufCMessage **ret_resp, struct sh_error *err)
{
        Runtime__V1__ListMetricDescriptorsResponse *r =
                NEW(Runtime__V1__ListMetricDescriptorsResponse, list_metric_descriptors_response);
        bool ok = r && (r->descriptors = cri_array_new(M_COUNT));

        (void)ctx, (void)req, (void)err;
        for (size_t i = 0; ok && i < M_COUNT; i++) {
                static const char *const extra[][2] = {
                        [X_NONE] = {NULL, NULL},
                        [X_CPU] = {"cpu", NULL},
                        [X_IFACE] = {"interface", NULL},
                        [X_DEVICE] = {"device", NULL},
                        [X_FAILURE] = {"failure_type", "scope"},
                };
                Runtime__V1__MetricDescriptor *d =
                        NEW(Runtime__V1__MetricDescriptor, metric_descriptor);
                size_t nx = n_extra(descs[i].extra);

                if (!d) {
                        ok = false;
                        break;
                }
                r->descriptors[r->n_descriptors++] = d;
                d->name = cri_strdup(descs[i].name);
                d->help = cri_strdup(descs[i].help);
                d->label_keys = cri_array_new(N_BASE + nx);
                if (!d->name || !d->help || !d->label_keys) {
                        ok = false;
                        break;
                }
                for (size_t k = 0; ok && k < N_BASE + nx; k++) {
                        const char *key =
                                k < N_BASE ? base_keys[k] : extra[descs[i].extra][k - N_BASE];

                        if (!(d->label_keys[k] = cri_strdup(key)))
                                ok = false;
                        else
                                d->n_label_keys++;
                }
        }
        if (!ok) {
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}

/* A growing list of Metric messages for one pod or container. */
struct mlist {
        Runtime__V1__Metric **v;
        size_t n, cap;
        bool ok;
        long long ts_ns;
        const char *base[N_BASE]; /* borrowed */
};

static void madd(struct mlist *l, enum metric_id id, const char *x1, const char *x2,
                 unsigned long long value)
{
        const struct metric_desc *d = &descs[id];
        size_t nx = n_extra(d->extra), nl = N_BASE + nx;
        Runtime__V1__Metric *m;

        if (!l->ok)
                return;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 32;
                Runtime__V1__Metric **v = realloc(l->v, cap * sizeof(*v));

                if (!v) {
                        l->ok = false;
                        return;
                }
                l->v = v;
                l->cap = cap;
        }
        m = NEW(Runtime__V1__Metric, metric);
        if (!m) {
                l->ok = false;
                return;
        }
        l->v[l->n++] = m;
        m->name = cri_strdup(d->name);
        m->timestamp = l->ts_ns;
        m->metric_type = d->type;
        m->value = u64(value, &l->ok);
        m->label_values = cri_array_new(nl);
        if (!m->name || !m->label_values) {
                l->ok = false;
                return;
        }
        for (size_t k = 0; k < nl; k++) {
                const char *v = k < N_BASE ? l->base[k] : k == N_BASE ? x1 : x2;

                if (!(m->label_values[k] = cri_strdup(v ? v : ""))) {
                        l->ok = false;
                        return;
                }
                m->n_label_values++;
        }
}

/* The cgroup series of a sample (a container's or the pod's). */
static void cg_metrics(struct mlist *l, const struct pod_stats_sample *s)
{
        const struct sh_cg_stats *cg = &s->cg;

        if (cg->has_cpu)
                madd(l, M_CPU_USAGE, "total", NULL, cg->cpu_usage_ns / 1000000000ULL);
        if (cg->has_memory) {
                madd(l, M_MEM_USAGE, NULL, NULL, cg->mem_usage);
                madd(l, M_MEM_WORKING_SET, NULL, NULL, cg->mem_working_set);
                madd(l, M_MEM_RSS, NULL, NULL, cg->mem_rss);
                madd(l, M_MEM_CACHE, NULL, NULL, cg->mem_cache);
                madd(l, M_MEM_MAPPED, NULL, NULL, cg->mem_mapped_file);
                madd(l, M_MEM_FAILCNT, NULL, NULL, cg->mem_failcnt);
                /* The totals are hierarchical: cAdvisor's "hierarchy" scope. */
                madd(l, M_MEM_FAILURES, "pgfault", "hierarchy", cg->mem_pgfault);
                madd(l, M_MEM_FAILURES, "pgmajfault", "hierarchy", cg->mem_pgmajfault);
                /* cAdvisor's 0 for no limit. */
                madd(l, M_SPEC_MEM_LIMIT, NULL, NULL, cg->has_mem_limit ? cg->mem_limit : 0);
        }
        if (cg->has_swap)
                madd(l, M_MEM_SWAP, NULL, NULL, cg->swap_usage);
        if (cg->has_pids)
                madd(l, M_PROCESSES, NULL, NULL, cg->pids);
        madd(l, M_LAST_SEEN, NULL, NULL, (unsigned long long)s->timestamp_ns / 1000000000ULL);
}

static Runtime__V1__Metric **mlist_take(struct mlist *l, size_t *ret_n)
{
        Runtime__V1__Metric **v = l->v;

        *ret_n = l->n;
        l->v = NULL;
        l->n = l->cap = 0;
        return v ? v : cri_array_new(0);
}

static void mlist_done(struct mlist *l)
{
        for (size_t i = 0; i < l->n; i++)
                protobuf_c_message_free_unpacked(&l->v[i]->base, NULL);
        free(l->v);
        l->v = NULL;
        l->n = 0;
}

static Runtime__V1__ContainerMetrics *ctr_metrics(const struct pod_container_stats *c,
                                                  const struct pod_sandbox_info *pod)
{
        Runtime__V1__ContainerMetrics *m = NEW(Runtime__V1__ContainerMetrics, container_metrics);
        struct mlist l = {.ok = true,
                          .ts_ns = c->sample.timestamp_ns,
                          .base = {c->info->spec.name, c->info->id, c->info->spec.image_ref,
                                   c->info->id, pod->spec.namespace, pod->spec.name}};

        if (!m)
                return NULL;
        if (c->has_stats && c->info->state == POD_CTR_RUNNING)
                cg_metrics(&l, &c->sample);
        if (c->has_stats && c->has_writable_layer) {
                l.ts_ns = c->writable_layer.timestamp_ns;
                madd(&l, M_FS_USAGE, c->writable_layer.mountpoint, NULL,
                     c->writable_layer.used_bytes);
        }
        m->container_id = cri_strdup(c->info->id);
        if (!l.ok || !m->container_id) {
                mlist_done(&l);
                protobuf_c_message_free_unpacked(&m->base, NULL);
                return NULL;
        }
        m->metrics = mlist_take(&l, &m->n_metrics);
        if (!m->metrics) {
                protobuf_c_message_free_unpacked(&m->base, NULL);
                return NULL;
        }
        return m;
}

static Runtime__V1__PodSandboxMetrics *pod_metrics(const struct pod_sandbox_stats *s)
{
        Runtime__V1__PodSandboxMetrics *m =
                NEW(Runtime__V1__PodSandboxMetrics, pod_sandbox_metrics);
        const struct pod_sandbox_info *p = s->info;
        struct mlist l = {.ok = true,
                          .ts_ns = s->sample.timestamp_ns,
                          .base = {"", p->id, "", "", p->spec.namespace, p->spec.name}};

        if (!m)
                return NULL;
        m->pod_sandbox_id = cri_strdup(p->id);
        m->container_metrics = cri_array_new(s->n_containers);
        if (s->has_stats)
                cg_metrics(&l, &s->sample);
        l.ts_ns = s->net_timestamp_ns;
        for (size_t i = 0; s->has_stats && s->has_network && i < s->n_ifaces; i++) {
                const struct sh_netdev *d = &s->ifaces[i];

                madd(&l, M_NET_RX_BYTES, d->name, NULL, d->rx_bytes);
                madd(&l, M_NET_RX_PACKETS, d->name, NULL, d->rx_packets);
                madd(&l, M_NET_RX_ERRORS, d->name, NULL, d->rx_errors);
                madd(&l, M_NET_RX_DROPPED, d->name, NULL, d->rx_dropped);
                madd(&l, M_NET_TX_BYTES, d->name, NULL, d->tx_bytes);
                madd(&l, M_NET_TX_PACKETS, d->name, NULL, d->tx_packets);
                madd(&l, M_NET_TX_ERRORS, d->name, NULL, d->tx_errors);
                madd(&l, M_NET_TX_DROPPED, d->name, NULL, d->tx_dropped);
        }
        if (!l.ok || !m->pod_sandbox_id || !m->container_metrics) {
                mlist_done(&l);
                protobuf_c_message_free_unpacked(&m->base, NULL);
                return NULL;
        }
        m->metrics = mlist_take(&l, &m->n_metrics);
        for (size_t i = 0; m->metrics && i < s->n_containers; i++) {
                Runtime__V1__ContainerMetrics *c = ctr_metrics(s->containers[i], p);

                if (!c) {
                        protobuf_c_message_free_unpacked(&m->base, NULL);
                        return NULL;
                }
                m->container_metrics[m->n_container_metrics++] = c;
        }
        if (!m->metrics) {
                protobuf_c_message_free_unpacked(&m->base, NULL);
                return NULL;
        }
        return m;
}

int cri_list_pod_sandbox_metrics(struct cri_ctx *ctx, const ProtobufCMessage *req,
                                 ProtobufCMessage **ret_resp, struct sh_error *err)
{
        struct pod_sandbox_stats **list = NULL;
        Runtime__V1__ListPodSandboxMetricsResponse *r;
        size_t n = 0;
        int rc;

        (void)req;
        rc = pod_sandbox_stats_list(ctx->pods, NULL, &list, &n, err);
        if (rc < 0)
                return rc;
        r = NEW(Runtime__V1__ListPodSandboxMetricsResponse, list_pod_sandbox_metrics_response);
        if (r && !(r->pod_metrics = cri_array_new(n)))
                rc = -ENOMEM;
        for (size_t i = 0; r && rc == 0 && i < n; i++) {
                if (!(r->pod_metrics[i] = pod_metrics(list[i])))
                        rc = -ENOMEM;
                else
                        r->n_pod_metrics++;
        }
        pod_sandbox_stats_list_free(list);
        if (!r || rc < 0) {
                if (r)
                        protobuf_c_message_free_unpacked(&r->base, NULL);
                return -ENOMEM;
        }
        *ret_resp = &r->base;
        return 0;
}
