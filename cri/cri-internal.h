#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "api.pb-c.h"
#include "cgroup.h"
#include "config.h"
#include "error.h"

struct cri_events;
struct cri_fs_cache;
struct cri_metrics;
struct img_mgr;
struct net_mgr;
struct pod_mgr;
struct stream_server;

/*
 * The daemon context handed to every handler (STYLE R11: no mutable globals). The managers
 * carry their own locks; @stopping turns true when SIGTERM/SIGINT arrives, and long
 * handlers poll it.
 */
struct cri_ctx {
        const struct runt_config *cfg;
        struct pod_mgr *pods;
        struct img_mgr *images;
        struct net_mgr *net;
        struct stream_server *stream; /* the exec/attach/port-forward server (stream/) */
        struct cri_fs_cache
                *fs_cache;         /* ImageFsInfo's figures (image.c); NULL: measured per call */
        struct cri_events *events; /* GetContainerEvents' hub (events.c); made in main.c */
        atomic_bool stopping;
        long long started_ns;                  /* CLOCK_REALTIME at start, for Status info */
        struct cri_metrics *metrics;           /* per-RPC series (metrics.c); NULL: metrics off */
        struct cri_runtime_conf *runtime_conf; /* UpdateRuntimeConfig's state (runtime.c) */
        struct cri_audit *audit;               /* the audit log (audit.c); NULL: off */
        struct sh_cg_host cgroup;              /* the host's cgroups, found at start (main.c) */
};

/*
 * A unary handler: reads @req (the unpacked request, owned by the caller) and returns
 * 0 with *@ret_resp set to a response whose every part is malloc'd (freed with
 * protobuf_c_message_free_unpacked), or -errno with @err filled. May block.
 */
/* The largest message the server takes or sends: the kubelet's limit, both ways. */
#define CRI_MAX_MESSAGE (16 << 20)
/*
 * What ExecSync keeps of a command's stdout and stderr together: the rest of a reply (tags,
 * lengths, exit code, the note that output was cut) needs less than 100 bytes, so this
 * leaves room to spare.
 */
#define CRI_EXEC_SYNC_MAX_OUTPUT (CRI_MAX_MESSAGE - 4096)
/*
 * A Stream* RPC (cri-api v0.36) sends its List form's items in messages of at most this many
 * items and this many bytes (one item larger than the byte bound goes alone, if it fits in
 * CRI_MAX_MESSAGE). Small enough that one packed message at a time is all the server holds
 * besides the List answer, and that a few hundred pods already take several messages.
 */
#define CRI_STREAM_CHUNK_ITEMS 128
#define CRI_STREAM_CHUNK_BYTES (1 << 20)

typedef int (*cri_unary_fn)(struct cri_ctx *ctx, const ProtobufCMessage *req,
                            ProtobufCMessage **ret_resp, struct sh_error *err);
/*
 * A unary handler that can stop early: as cri_unary_fn, and @cancel_fd (the server's, valid
 * for the call) turns readable once the client is gone: it cancelled, its deadline passed or
 * its connection broke. Nobody reads the answer then, so the handler may return anything.
 */
typedef int (*cri_cancellable_fn)(struct cri_ctx *ctx, const ProtobufCMessage *req, int cancel_fd,
                                  ProtobufCMessage **ret_resp, struct sh_error *err);

struct cri_method {
        const char *path;    /* "/runtime.v1.RuntimeService/Version" */
        const char *service; /* "RuntimeService" */
        const char *name;    /* "Version" */
        const ProtobufCMessageDescriptor *req;
        const ProtobufCMessageDescriptor *resp;
        bool streaming;                 /* server-streaming RPC */
        bool quick;                     /* never blocks: runs on the completion-queue thread */
        bool read;                      /* a read the kubelet polls: the read lane (server.c) */
        bool walk;                      /* a read that walks trees (stats): the walk lane */
        cri_unary_fn unary;             /* NULL, and no cancellable: answered UNIMPLEMENTED */
        cri_cancellable_fn cancellable; /* instead of unary */
        /*
         * A Stream* form: the path of its List form, whose handler answers it (in that
         * method's lane, UNIMPLEMENTED while it has none). The Stream request is read as the
         * List request (same fields, numbers and types: test_cri checks), and the List
         * answer's repeated field goes out in chunks of the Stream response (server.c).
         */
        const char *list_form;
        bool events;               /* GetContainerEvents: a subscriber of ctx->events (events.c) */
        const char *unimplemented; /* without a handler: why, for the UNIMPLEMENTED answer */
};

/* The dispatch table (dispatch.c): every RuntimeService and ImageService method. */
const struct cri_method *cri_method_lookup(const char *path, size_t len);
size_t cri_method_count(void);
const struct cri_method *cri_method_at(size_t i);

/*
 * The method whose handler serves @m: its List form for a Stream* method, else @m itself.
 * NULL if the List form named is not in the table.
 */
const struct cri_method *cri_method_runner(const struct cri_method *m);

/* One table from -errno to gRPC status (translate.c). */
grpc_status_code cri_status_from_errno(int r);
const char *cri_status_name(grpc_status_code code);

/* Handlers (runtime.c, sandbox.c, container.c, image.c). */
int cri_version(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                struct sh_error *err);
int cri_status(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
               struct sh_error *err);
int cri_runtime_config(struct cri_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **ret_resp, struct sh_error *err);
/*
 * ImageFsInfo's figures, kept for the kubelet's calls every few seconds (issue 14): walking
 * the layer store and every writable layer per call is too dear. new starts nothing yet (the
 * first call measures, then a refresher thread starts); free stops and joins that thread,
 * and may wait for a walk in progress. new returns NULL on ENOMEM.
 */
struct cri_fs_cache *cri_fs_cache_new(void);
struct cri_fs_cache *cri_fs_cache_free(struct cri_fs_cache *c);

int cri_image_fs_info(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                      struct sh_error *err);
int cri_run_pod_sandbox(struct cri_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_stop_pod_sandbox(struct cri_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_remove_pod_sandbox(struct cri_ctx *ctx, const ProtobufCMessage *req,
                           ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_pod_sandbox_status(struct cri_ctx *ctx, const ProtobufCMessage *req,
                           ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_list_pod_sandbox(struct cri_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_create_container(struct cri_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_start_container(struct cri_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_stop_container(struct cri_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_remove_container(struct cri_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_container_status(struct cri_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_list_containers(struct cri_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **ret_resp, struct sh_error *err);
/* Stats and metrics (stats.c): from podmgr's collector, never a cgroup read per call. */
int cri_container_stats(struct cri_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_list_container_stats(struct cri_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_pod_sandbox_stats(struct cri_ctx *ctx, const ProtobufCMessage *req,
                          ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_list_pod_sandbox_stats(struct cri_ctx *ctx, const ProtobufCMessage *req,
                               ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_list_metric_descriptors(struct cri_ctx *ctx, const ProtobufCMessage *req,
                                ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_list_pod_sandbox_metrics(struct cri_ctx *ctx, const ProtobufCMessage *req,
                                 ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_update_container_resources(struct cri_ctx *ctx, const ProtobufCMessage *req,
                                   ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_reopen_container_log(struct cri_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_exec_sync(struct cri_ctx *ctx, const ProtobufCMessage *req, int cancel_fd,
                  ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_exec(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
             struct sh_error *err);
int cri_attach(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
               struct sh_error *err);
int cri_port_forward(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                     struct sh_error *err);
int cri_pull_image(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                   struct sh_error *err);
int cri_image_status(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                     struct sh_error *err);
int cri_list_images(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                    struct sh_error *err);
int cri_remove_image(struct cri_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                     struct sh_error *err);

/*
 * The status messages PodSandboxStatus and ContainerStatus answer with (sandbox.c,
 * container.c), also what a container event carries. malloc'd trees; NULL on ENOMEM. The
 * container's names its image as it is now (a store read, no wait on other calls).
 */
struct pod_sandbox_info;
struct pod_container_info;
Runtime__V1__PodSandboxStatus *cri_sandbox_status_msg(const struct pod_sandbox_info *i);
Runtime__V1__ContainerStatus *cri_container_status_msg(struct cri_ctx *ctx,
                                                       const struct pod_container_info *i);

/*
 * The pod manager's event sink (pod_event_fn; @data is the struct cri_ctx): packs @ev as a
 * ContainerEventResponse once and publishes it on ctx->events. Never blocks on a client.
 */
struct pod_event;
void cri_events_sink(void *data, const struct pod_event *ev);
/* UpdatePodSandboxResources and UpdateRuntimeConfig (runtime.c). */
int cri_update_runtime_config(struct cri_ctx *ctx, const ProtobufCMessage *req,
                              ProtobufCMessage **ret_resp, struct sh_error *err);
int cri_update_pod_sandbox_resources(struct cri_ctx *ctx, const ProtobufCMessage *req,
                                     ProtobufCMessage **ret_resp, struct sh_error *err);
/*
 * UpdateRuntimeConfig's state: the pod CIDR, kept in memory and in <state_dir>/pod-cidr so
 * it survives a restart. new reads the file (absent: ""); NULL on ENOMEM. Thread-safe.
 */
struct cri_runtime_conf;
int cri_runtime_conf_new(const char *state_dir, struct cri_runtime_conf **ret,
                         struct sh_error *err);
struct cri_runtime_conf *cri_runtime_conf_free(struct cri_runtime_conf *rc);
/* -EINVAL unless @cidr is "" or an IPv4/IPv6 CIDR ("10.88.0.0/16", "fd00::/64"). */
int cri_cidr_validate(const char *cidr, struct sh_error *err);

/* CRI LinuxContainerResources (may be NULL: nothing set) as be_resources (container.c). */
struct be_resources;
int cri_resources_from(const Runtime__V1__LinuxContainerResources *in, const char *what,
                       struct be_resources *r, struct sh_error *err);

/* ---- Metrics (metrics.c, metrics-http.c) ---- */

struct sh_metrics;
/*
 * Registers the per-method series (runt_grpc_*) and, with @pods, the pods and containers
 * by state (read through pod_mgr_state_counts at scrape time; @pods must outlive every
 * scrape) in @reg. 0, -ENOMEM or -EEXIST.
 */
int cri_metrics_new(struct sh_metrics *reg, struct pod_mgr *pods, struct cri_metrics **ret,
                    struct sh_error *err);
struct cri_metrics *cri_metrics_free(struct cri_metrics *cm);
/*
 * A call of @m was answered with gRPC status @code, @ns after it arrived. Lock-free; a NULL
 * @cm (metrics off) or @m (unknown method) is ignored. Any thread.
 */
void cri_metrics_rpc(struct cri_metrics *cm, const struct cri_method *m, int code,
                     unsigned long long ns);

/*
 * Parses metrics.address: "a.b.c.d:port" or "[v6]:port", literal addresses only (a name
 * that needs DNS is refused: the config error names it). 0 or -EINVAL.
 */
int cri_metrics_address_parse(const char *addr, struct sockaddr_storage *ret, socklen_t *ret_len,
                              struct sh_error *err);
/* The HTTP endpoint serving GET /metrics from @reg on @address (metrics-http.c). */
struct cri_metrics_http;
int cri_metrics_http_new(const char *address, struct sh_metrics *reg, struct cri_metrics_http **ret,
                         struct sh_error *err);
/* Stops the thread, closes every connection; NULL-safe, returns NULL. */
struct cri_metrics_http *cri_metrics_http_free(struct cri_metrics_http *s);

/* Response building helpers (translate.c): malloc'd copies, NULL on ENOMEM. */
char *cri_strdup(const char *s);

/* Any of the generated string-to-string map *Entry types: base, key, value. */
struct cri_map_entry {
        ProtobufCMessage base;
        char *key;
        char *value;
};

/* A NULL-terminated copy of @v (@n strings, NULL ones as ""); NULL on ENOMEM. */
char **cri_strv_from(char *const *v, size_t n);
/*
 * *@ret: the map entries @entries as kv pairs (NULL-terminated array, @n of them); on ENOMEM
 * what was made is in *@ret, *@ret_n, for the caller's spec_done.
 */
struct be_kv;
int cri_kv_from(void *const *entries, size_t n, struct be_kv **ret, size_t *ret_n);
/* Map entries of the generated type @desc from @v; NULL (nothing left over) on ENOMEM. */
void **cri_entries(const ProtobufCMessageDescriptor *desc, const struct be_kv *v, size_t n,
                   size_t *ret_n);

/* A FilesystemUsage message of @u; NULL on ENOMEM. */
struct sh_fs_usage;
Runtime__V1__FilesystemUsage *cri_fs_usage_msg(const struct sh_fs_usage *u);

/* The gRPC server (server.c). */
struct cri_server;

/*
 * Binds @listen ("unix:///path" or "unix:/path"): refuses if another server answers there,
 * removes a stale socket, creates the socket 0660. Returns 0 or -errno.
 * Call after grpc_init() and with SIGTERM/SIGINT blocked.
 */
int cri_server_new(struct cri_ctx *ctx, const char *listen, struct cri_server **ret,
                   struct sh_error *err);
/* Serves until cri_server_stop(); returns when every call is done (or after a bounded wait). */
int cri_server_run(struct cri_server *s);
/* @fn(@data) is called once by cri_server_run, on its thread, as the server starts taking
 * calls (runtd's READY=1). Set before cri_server_run. */
void cri_server_on_serving(struct cri_server *s, void (*fn)(void *data), void *data);
/* Thread-safe and async-signal-unsafe: call from the signal thread. */
void cri_server_stop(struct cri_server *s);
void cri_server_free(struct cri_server *s);

/* ---- The streaming server (stream/; wired to podmgr in streaming.c) ---- */

/*
 * Starts the streaming server (stream_server_new) on ctx->cfg's streaming.*, its sessions
 * running exec, attach and port-forward through ctx->pods. Returns 0 or -errno.
 */
int cri_stream_new(struct cri_ctx *ctx, struct stream_server **ret, struct sh_error *err);
/* stream_server_free: ends every session and stops the server; NULL-safe. */
void cri_stream_free(struct stream_server *s);

/*
 * Allocates and initialises an empty message of type @desc (malloc'd; every part added to
 * it must be malloc'd too, so protobuf_c_message_free_unpacked frees the whole tree).
 */
void *cri_msg_new(const ProtobufCMessageDescriptor *desc);
/* Allocates an array of @n pointers for a repeated field; NULL on ENOMEM. */
void *cri_array_new(size_t n);

/*
 * A List answer's repeated message field packed item by item as a walk goes (issue 15: the
 * kubelet's relist of 500 containers built and freed ~15,000 small allocations per call;
 * packed from borrowed strings it is one growing buffer). cri_packed_attach hands the bytes
 * to @resp as one unknown field of the repeated field's number: protobuf-c packs it verbatim,
 * so the wire bytes are those of the repeated field, and the Stream* forms split it again
 * (server.c). The buffer holds every item but the first's key, as an unknown field's data.
 */
struct cri_packed {
        uint8_t *buf;
        size_t len, cap;
        size_t n;       /* items */
        unsigned field; /* the repeated field's number */
};
int cri_packed_add(struct cri_packed *p, const ProtobufCMessage *m);
/* Moves the items into @resp (nothing when there are none); 0 or -ENOMEM. */
int cri_packed_attach(struct cri_packed *p, ProtobufCMessage *resp);
void cri_packed_done(struct cri_packed *p);
/*
 * Map entries a walk reuses from item to item, pointing at borrowed strings: the entries of
 * generated type @desc for @kv (@n pairs) in @s's arrays, and the pointer array a message
 * field takes (NULL on ENOMEM). cri_kv_scratch_done frees the arrays, not the strings.
 */
struct cri_kv_scratch {
        struct cri_map_entry *e;
        void **p;
        size_t cap;
};
void **cri_kv_borrow(struct cri_kv_scratch *s, const ProtobufCMessageDescriptor *desc,
                     const struct be_kv *kv, size_t n);
void cri_kv_scratch_done(struct cri_kv_scratch *s);
