/* cri/dispatch.c, translate.c and the handlers that need no backend (runtime.c). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "cri-internal.h"
#include "netmgr.h"
#include "podmgr.h"

#define RPCS_TXT   RUNT_SHARED_DIR "/cri-golden/RPCS.txt"
#define PATH_PFX   "/runtime.v1."
#define N_CRI_RPCS 41

struct rpc {
        char service[64];
        char name[64];
        bool streaming;
};

/* Reads RPCS.txt ("Service/Name unary|server-streaming" per line) into @v; returns the count. */
static size_t read_rpcs(struct rpc *v, size_t max)
{
        FILE *f = fopen(RPCS_TXT, "re");
        char line[256];
        size_t n = 0;

        if (!f)
                fail_msg("cannot open %s: %s", RPCS_TXT, strerror(errno));
        while (fgets(line, sizeof(line), f)) {
                char svc_name[160], kind[32];
                char *slash;

                if (line[0] == '\n' || line[0] == '#')
                        continue;
                assert_int_equal(sscanf(line, "%159s %31s", svc_name, kind), 2);
                slash = strchr(svc_name, '/');
                assert_non_null(slash);
                *slash = '\0';
                assert_true(n < max);
                snprintf(v[n].service, sizeof(v[n].service), "%s", svc_name);
                snprintf(v[n].name, sizeof(v[n].name), "%s", slash + 1);
                if (strcmp(kind, "unary") == 0)
                        v[n].streaming = false;
                else if (strcmp(kind, "server-streaming") == 0)
                        v[n].streaming = true;
                else
                        fail_msg("RPCS.txt: unknown kind '%s'", kind);
                n++;
        }
        fclose(f);
        return n;
}

/* Looks @path up through an exactly-sized heap copy, so ASan sees any read past @len. */
static const struct cri_method *lookup_exact(const char *path, size_t len)
{
        char *copy = malloc(len ? len : 1);
        const struct cri_method *m;

        assert_non_null(copy);
        memcpy(copy, path, len);
        m = cri_method_lookup(copy, len);
        free(copy);
        return m;
}

static const struct cri_method *lookup(const char *path)
{
        return lookup_exact(path, strlen(path));
}

static void test_table_matches_rpcs_txt(void **state)
{
        struct rpc rpcs[64];
        size_t n = read_rpcs(rpcs, 64);

        (void)state;
        assert_int_equal(n, N_CRI_RPCS);
        assert_int_equal(cri_method_count(), n);
        for (size_t i = 0; i < n; i++) {
                char path[192];
                const struct cri_method *m;

                snprintf(path, sizeof(path), PATH_PFX "%s/%s", rpcs[i].service, rpcs[i].name);
                m = lookup(path);
                if (!m)
                        fail_msg("%s is not in the dispatch table", path);
                assert_string_equal(m->path, path);
                assert_string_equal(m->service, rpcs[i].service);
                assert_string_equal(m->name, rpcs[i].name);
                if (m->streaming != rpcs[i].streaming)
                        fail_msg("%s: streaming is %d, RPCS.txt says %d", path, m->streaming,
                                 rpcs[i].streaming);
        }
}

static void test_table_entries_distinct_and_consistent(void **state)
{
        size_t n = cri_method_count();

        (void)state;
        for (size_t i = 0; i < n; i++) {
                const struct cri_method *m = cri_method_at(i);
                char path[192];

                assert_non_null(m);
                snprintf(path, sizeof(path), PATH_PFX "%s/%s", m->service, m->name);
                assert_string_equal(m->path, path);
                assert_true(strcmp(m->service, "RuntimeService") == 0 ||
                            strcmp(m->service, "ImageService") == 0);
                /* Lookup finds this very entry: no two entries share a path. */
                assert_ptr_equal(lookup(m->path), m);
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(cri_method_at(j)->path, m->path);
                /* A streaming RPC is never served by a unary handler. */
                if (m->streaming)
                        assert_null(m->unary);
        }
        assert_null(cri_method_at(n));
        assert_null(cri_method_at((size_t)-1));
}

static void test_implemented_handlers(void **state)
{
        (void)state;
        assert_ptr_equal(lookup(PATH_PFX "RuntimeService/Version")->unary, cri_version);
        assert_ptr_equal(lookup(PATH_PFX "RuntimeService/Status")->unary, cri_status);
        assert_ptr_equal(lookup(PATH_PFX "RuntimeService/RuntimeConfig")->unary,
                         cri_runtime_config);
        assert_ptr_equal(lookup(PATH_PFX "ImageService/ImageFsInfo")->unary, cri_image_fs_info);
        /* ImageFsInfo walks the disk: it must not run on the completion-queue thread. */
        assert_false(lookup(PATH_PFX "ImageService/ImageFsInfo")->quick);
        assert_true(lookup(PATH_PFX "RuntimeService/Version")->quick);
}

/* The repeated message field of @d, or NULL. */
static const ProtobufCFieldDescriptor *repeated_msg(const ProtobufCMessageDescriptor *d)
{
        for (unsigned i = 0; i < d->n_fields; i++)
                if (d->fields[i].label == PROTOBUF_C_LABEL_REPEATED &&
                    d->fields[i].type == PROTOBUF_C_TYPE_MESSAGE)
                        return &d->fields[i];
        return NULL;
}

/*
 * Each Stream* method names a List form in the table whose request has the same fields
 * (server.c reads the Stream request as the List request), and whose answer has one
 * repeated field of the item type the Stream response repeats (server.c re-frames it).
 */
static void test_stream_forms(void **state)
{
        size_t n_stream = 0;

        (void)state;
        for (size_t i = 0; i < cri_method_count(); i++) {
                const struct cri_method *m = cri_method_at(i), *l;
                const ProtobufCFieldDescriptor *lf, *sf;

                if (!m->list_form)
                        continue;
                n_stream++;
                assert_true(m->streaming);
                assert_null(m->unary);
                l = cri_method_runner(m);
                assert_non_null(l);
                assert_ptr_equal(l, lookup(m->list_form));
                assert_false(l->streaming);
                assert_int_equal(strncmp(m->name, "Stream", 6), 0);
                assert_int_equal(strncmp(l->name, "List", 4), 0);
                assert_int_equal(m->req->n_fields, l->req->n_fields);
                for (unsigned f = 0; f < m->req->n_fields; f++) {
                        const ProtobufCFieldDescriptor *a = &m->req->fields[f];
                        const ProtobufCFieldDescriptor *b = &l->req->fields[f];

                        assert_int_equal(a->id, b->id);
                        assert_int_equal(a->type, b->type);
                        assert_int_equal(a->label, b->label);
                        assert_ptr_equal(a->descriptor, b->descriptor);
                }
                assert_int_equal(l->resp->n_fields, 1);
                assert_int_equal(m->resp->n_fields, 1);
                lf = repeated_msg(l->resp);
                sf = repeated_msg(m->resp);
                assert_non_null(lf);
                assert_non_null(sf);
                assert_ptr_equal(lf->descriptor, sf->descriptor);
        }
        assert_int_equal(n_stream, 6);
        /* Served today by the List handlers; the stats and metrics forms wait for theirs. */
        assert_ptr_equal(
                cri_method_runner(lookup(PATH_PFX "RuntimeService/StreamPodSandboxes"))->unary,
                cri_list_pod_sandbox);
        assert_ptr_equal(cri_method_runner(lookup(PATH_PFX "ImageService/StreamImages"))->unary,
                         cri_list_images);
        assert_true(lookup(PATH_PFX "RuntimeService/GetContainerEvents")->events);
        assert_ptr_equal(cri_method_runner(lookup(PATH_PFX "RuntimeService/Version")),
                         lookup(PATH_PFX "RuntimeService/Version"));
}

static void test_lookup_bounds(void **state)
{
        static const char version[] = PATH_PFX "RuntimeService/Version";
        static const char longer[] = PATH_PFX "RuntimeService/VersionX";
        const struct cri_method *m;

        (void)state;
        m = lookup(version);
        assert_non_null(m);
        assert_string_equal(m->name, "Version");

        /* Length-bounded: the bytes after @len are not part of the path. */
        m = lookup_exact(longer, strlen(version));
        assert_non_null(m);
        assert_string_equal(m->name, "Version");
        m = cri_method_lookup(PATH_PFX "ImageService/ImageStatusAndMore",
                              strlen(PATH_PFX "ImageService/ImageStatus"));
        assert_non_null(m);
        assert_string_equal(m->name, "ImageStatus");

        /* Prefixes and suffixes of a path are not that path. */
        assert_null(lookup(PATH_PFX "RuntimeService/Versio"));
        assert_null(lookup(longer));
        assert_null(lookup(PATH_PFX "RuntimeService/"));
        assert_null(lookup(PATH_PFX "RuntimeService"));
        assert_null(lookup(""));
        assert_null(cri_method_lookup(version, 0));
        assert_null(lookup("/"));
        assert_null(lookup(PATH_PFX "RuntimeService/Version/"));
        assert_null(lookup("/" PATH_PFX "RuntimeService/Version"));
        /* Case, package and service matter. */
        assert_null(lookup("/runtime.v1.runtimeservice/version"));
        assert_null(lookup("/runtime.v1alpha2.RuntimeService/Version"));
        assert_null(lookup(PATH_PFX "ImageService/Version"));
        assert_null(lookup(PATH_PFX "RuntimeService/ListImages"));
}

static void test_lookup_embedded_nul(void **state)
{
        /* A path with a NUL inside is not a method, however it continues. */
        static const char nul[] = PATH_PFX "RuntimeService/Version\0"
                                           "0123456789012345678901234567890123456789";
        static const char nul2[] = PATH_PFX "ImageService/PullImage\0xx";

        (void)state;
        assert_null(lookup_exact(nul, sizeof(nul) - 1));
        assert_null(lookup_exact(nul2, sizeof(nul2) - 1));
        assert_null(lookup_exact(nul, strlen(nul) + 1));
}

/* "FooBar" -> "FooBarRequest" etc. */
static void test_descriptor_names(void **state)
{
        (void)state;
        for (size_t i = 0; i < cri_method_count(); i++) {
                const struct cri_method *m = cri_method_at(i);
                char want_req[128], want_resp[128], full[160];

                if (strcmp(m->name, "GetContainerEvents") == 0) {
                        snprintf(want_req, sizeof(want_req), "GetEventsRequest");
                        snprintf(want_resp, sizeof(want_resp), "ContainerEventResponse");
                } else {
                        snprintf(want_req, sizeof(want_req), "%sRequest", m->name);
                        snprintf(want_resp, sizeof(want_resp), "%sResponse", m->name);
                }
                assert_non_null(m->req);
                assert_non_null(m->resp);
                assert_int_equal(m->req->magic, PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
                assert_int_equal(m->resp->magic, PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
                if (strcmp(m->req->short_name, want_req) != 0)
                        fail_msg("%s: request is %s, want %s", m->name, m->req->short_name,
                                 want_req);
                if (strcmp(m->resp->short_name, want_resp) != 0)
                        fail_msg("%s: response is %s, want %s", m->name, m->resp->short_name,
                                 want_resp);
                snprintf(full, sizeof(full), "runtime.v1.%s", want_req);
                assert_string_equal(m->req->name, full);
                assert_string_equal(m->req->package_name, "runtime.v1");
                assert_string_equal(m->resp->package_name, "runtime.v1");
        }
}

static void test_status_from_errno(void **state)
{
        static const struct {
                int err;
                grpc_status_code code;
        } cases[] = {
                {0, GRPC_STATUS_OK},
                {1, GRPC_STATUS_OK},
                {-ENOENT, GRPC_STATUS_NOT_FOUND},
                {-ESRCH, GRPC_STATUS_NOT_FOUND},
                {-EEXIST, GRPC_STATUS_ALREADY_EXISTS},
                {-EINVAL, GRPC_STATUS_INVALID_ARGUMENT},
                {-ENAMETOOLONG, GRPC_STATUS_INVALID_ARGUMENT},
                {-EOPNOTSUPP, GRPC_STATUS_UNIMPLEMENTED},
                {-ENOSYS, GRPC_STATUS_UNIMPLEMENTED},
                {-ETIMEDOUT, GRPC_STATUS_DEADLINE_EXCEEDED},
                {-ECANCELED, GRPC_STATUS_CANCELLED},
                {-EBUSY, GRPC_STATUS_FAILED_PRECONDITION},
                {-EADDRINUSE, GRPC_STATUS_FAILED_PRECONDITION},
                {-EPERM, GRPC_STATUS_PERMISSION_DENIED},
                {-EACCES, GRPC_STATUS_PERMISSION_DENIED},
                {-ENOMEM, GRPC_STATUS_RESOURCE_EXHAUSTED},
                {-ENOSPC, GRPC_STATUS_RESOURCE_EXHAUSTED},
                {-EMFILE, GRPC_STATUS_RESOURCE_EXHAUSTED},
                {-ENFILE, GRPC_STATUS_RESOURCE_EXHAUSTED},
                {-EAGAIN, GRPC_STATUS_UNAVAILABLE},
                {-EIO, GRPC_STATUS_INTERNAL},
                {-EPROTO, GRPC_STATUS_INTERNAL},
                {-EXDEV, GRPC_STATUS_UNKNOWN},
                {-EDOM, GRPC_STATUS_UNKNOWN},
                {-4095, GRPC_STATUS_UNKNOWN},
                {-1000000, GRPC_STATUS_UNKNOWN},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                if (cri_status_from_errno(cases[i].err) != cases[i].code)
                        fail_msg("errno %d: got %s, want %s", cases[i].err,
                                 cri_status_name(cri_status_from_errno(cases[i].err)),
                                 cri_status_name(cases[i].code));
        /* EOPNOTSUPP and ENOTSUP are one value on Linux; both mean UNIMPLEMENTED. */
        assert_int_equal(cri_status_from_errno(-ENOTSUP), GRPC_STATUS_UNIMPLEMENTED);
}

static void test_status_name(void **state)
{
        (void)state;
        assert_string_equal(cri_status_name(GRPC_STATUS_OK), "OK");
        assert_string_equal(cri_status_name(GRPC_STATUS_NOT_FOUND), "NOT_FOUND");
        assert_string_equal(cri_status_name(GRPC_STATUS_UNIMPLEMENTED), "UNIMPLEMENTED");
        assert_string_equal(cri_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
        assert_string_equal(cri_status_name((grpc_status_code)17), "UNKNOWN");
        assert_string_equal(cri_status_name((grpc_status_code)-1), "UNKNOWN");
}

/* Packs @m, unpacks the bytes with its descriptor and checks that they pack the same. */
static ProtobufCMessage *round_trip(const ProtobufCMessage *m)
{
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(n ? n : 1), *buf2;
        ProtobufCMessage *back;

        assert_non_null(buf);
        assert_int_equal(protobuf_c_message_pack(m, buf), n);
        back = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
        assert_non_null(back);
        assert_int_equal(protobuf_c_message_get_packed_size(back), n);
        buf2 = malloc(n ? n : 1);
        assert_non_null(buf2);
        assert_int_equal(protobuf_c_message_pack(back, buf2), n);
        assert_memory_equal(buf, buf2, n);
        free(buf);
        free(buf2);
        return back;
}

static void test_version(void **state)
{
        struct cri_ctx ctx = {.cfg = NULL};
        Runtime__V1__VersionRequest req = RUNTIME__V1__VERSION_REQUEST__INIT;
        struct sh_error err = {0};
        ProtobufCMessage *resp = NULL, *back;
        Runtime__V1__VersionResponse *v;

        (void)state;
        req.version = "0.1.0";
        assert_int_equal(cri_version(&ctx, &req.base, &resp, &err), 0);
        assert_non_null(resp);
        assert_ptr_equal(resp->descriptor, &runtime__v1__version_response__descriptor);
        v = (Runtime__V1__VersionResponse *)resp;
        assert_string_equal(v->version, "0.1.0");
        assert_string_equal(v->runtime_name, "runt");
        assert_string_equal(v->runtime_version, RUNT_VERSION);
        assert_string_equal(v->runtime_api_version, "v1");

        back = round_trip(resp);
        assert_string_equal(((Runtime__V1__VersionResponse *)back)->runtime_name, "runt");
        protobuf_c_message_free_unpacked(back, NULL);
        protobuf_c_message_free_unpacked(resp, NULL);
}

static void test_runtime_config(void **state)
{
        struct cri_ctx ctx = {.cfg = NULL};
        Runtime__V1__RuntimeConfigRequest req = RUNTIME__V1__RUNTIME_CONFIG_REQUEST__INIT;
        struct sh_error err = {0};
        ProtobufCMessage *resp = NULL, *back;
        Runtime__V1__RuntimeConfigResponse *r;

        (void)state;
        assert_int_equal(cri_runtime_config(&ctx, &req.base, &resp, &err), 0);
        assert_non_null(resp);
        assert_ptr_equal(resp->descriptor, &runtime__v1__runtime_config_response__descriptor);
        r = (Runtime__V1__RuntimeConfigResponse *)resp;
        assert_non_null(r->linux);
        assert_int_equal(r->linux->cgroup_driver, RUNTIME__V1__CGROUP_DRIVER__CGROUPFS);

        back = round_trip(resp);
        r = (Runtime__V1__RuntimeConfigResponse *)back;
        assert_non_null(r->linux);
        assert_int_equal(r->linux->cgroup_driver, RUNTIME__V1__CGROUP_DRIVER__CGROUPFS);
        protobuf_c_message_free_unpacked(back, NULL);
        protobuf_c_message_free_unpacked(resp, NULL);
}

static void test_msg_helpers(void **state)
{
        Runtime__V1__ListImagesResponse *r;
        char *s;
        void **a;

        (void)state;
        r = cri_msg_new(&runtime__v1__list_images_response__descriptor);
        assert_non_null(r);
        assert_ptr_equal(r->base.descriptor, &runtime__v1__list_images_response__descriptor);
        assert_int_equal(r->n_images, 0);
        assert_null(r->images);
        r->images = cri_array_new(2);
        assert_non_null(r->images);
        assert_null(r->images[0]);
        assert_null(r->images[1]);
        protobuf_c_message_free_unpacked(&r->base, NULL);

        a = cri_array_new(0);
        assert_non_null(a);
        free(a);
        s = cri_strdup(NULL);
        assert_string_equal(s, "");
        free(s);
        s = cri_strdup("x");
        assert_string_equal(s, "x");
        free(s);
}

/* Status through real managers: the fake backend and a temp CNI conf dir. */

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)type;
        (void)ftw;
        return remove(path);
}

static char *xjoin(const char *a, const char *b)
{
        char *s = NULL;

        assert_true(asprintf(&s, "%s/%s", a, b) > 0);
        return s;
}

static const Runtime__V1__RuntimeCondition *find_condition(const Runtime__V1__StatusResponse *r,
                                                           const char *type)
{
        for (size_t i = 0; i < r->status->n_conditions; i++)
                if (strcmp(r->status->conditions[i]->type, type) == 0)
                        return r->status->conditions[i];
        return NULL;
}

static void test_status_with_managers(void **state)
{
        char base[] = "/tmp/runt-cri-XXXXXX";
        struct runt_config cfg;
        struct sh_error err = {0};
        struct cri_ctx ctx = {.cfg = NULL};
        Runtime__V1__StatusRequest req = RUNTIME__V1__STATUS_REQUEST__INIT;
        ProtobufCMessage *resp = NULL, *back;
        Runtime__V1__StatusResponse *r;
        const Runtime__V1__RuntimeCondition *c;

        (void)state;
        assert_non_null(mkdtemp(base));
        assert_int_equal(runt_config_defaults(&cfg, &err), 0);
        free(cfg.state_dir);
        free(cfg.root_dir);
        free(cfg.run_dir);
        free(cfg.cni_conf_dir);
        free(cfg.default_runtime);
        cfg.state_dir = xjoin(base, "state");
        cfg.root_dir = xjoin(base, "root");
        cfg.run_dir = xjoin(base, "run");
        cfg.cni_conf_dir = xjoin(base, "net.d"); /* missing: NetworkReady false */
        cfg.default_runtime = strdup("fake");
        free(cfg.handlers[0].name);
        free(cfg.handlers[0].backend);
        cfg.handlers[0].name = strdup("fake");
        cfg.handlers[0].backend = strdup("fake");
        assert_int_equal(cfg.n_handlers, 1);

        ctx.cfg = &cfg;
        assert_int_equal(pod_mgr_new(&cfg, &ctx.pods, &err), 0);
        assert_int_equal(net_mgr_new(&cfg, &ctx.net, &err), 0);
        assert_int_equal(cri_runtime_conf_new(cfg.state_dir, &ctx.runtime_conf, &err), 0);

        ctx.cgroup = (struct sh_cg_host){.version = SH_CG_V2,
                                         .controllers = SH_CG_CPU | SH_CG_MEMORY | SH_CG_PIDS,
                                         .swap = true,
                                         .root = "/sys/fs/cgroup"};
        req.verbose = true;
        assert_int_equal(cri_status(&ctx, &req.base, &resp, &err), 0);
        r = (Runtime__V1__StatusResponse *)resp;
        assert_non_null(r->status);
        assert_int_equal(r->status->n_conditions, 2);
        c = find_condition(r, "RuntimeReady");
        assert_non_null(c);
        assert_true(c->status);
        c = find_condition(r, "NetworkReady");
        assert_non_null(c);
        assert_false(c->status);
        assert_string_equal(c->reason, "NetworkPluginNotReady");
        assert_non_null(strstr(c->message, "net.d"));

        /* "" (the default) and every configured handler. */
        assert_int_equal(r->n_runtime_handlers, 2);
        assert_string_equal(r->runtime_handlers[0]->name, "");
        assert_string_equal(r->runtime_handlers[1]->name, "fake");
        assert_non_null(r->features);

        assert_int_equal(r->n_info, 5);
        for (size_t i = 0; i < r->n_info; i++) {
                json_object *o = json_tokener_parse(r->info[i]->value);

                if (!o)
                        fail_msg("info[%s] is not JSON: %s", r->info[i]->key, r->info[i]->value);
                assert_true(json_object_is_type(o, json_type_object));
                json_object_put(o);
        }
        assert_string_equal(r->info[0]->key, "config");
        assert_string_equal(r->info[1]->key, "runtime");
        assert_string_equal(r->info[2]->key, "network");
        assert_string_equal(r->info[3]->key, "runtimeConfig");
        assert_string_equal(r->info[3]->value, "{\"podCIDR\":\"\"}");
        assert_string_equal(r->info[4]->key, "cgroup");
        assert_string_equal(r->info[4]->value,
                            "{\"version\":2,\"hybrid\":false,\"driver\":\"cgroupfs\","
                            "\"root\":\"/sys/fs/cgroup\",\"controllers\":[\"cpu\",\"memory\","
                            "\"pids\"],\"swapAccounting\":true}");
        /* What runt supports, told truly: neither (see handler_features in runtime.c). */
        for (size_t i = 0; i < r->n_runtime_handlers; i++) {
                assert_false(r->runtime_handlers[i]->features->recursive_read_only_mounts);
                assert_false(r->runtime_handlers[i]->features->user_namespaces);
        }

        back = round_trip(resp);
        protobuf_c_message_free_unpacked(back, NULL);
        protobuf_c_message_free_unpacked(resp, NULL);

        /* Not verbose: no info. */
        req.verbose = false;
        assert_int_equal(cri_status(&ctx, &req.base, &resp, &err), 0);
        assert_int_equal(((Runtime__V1__StatusResponse *)resp)->n_info, 0);
        protobuf_c_message_free_unpacked(resp, NULL);

        net_mgr_free(ctx.net);
        pod_mgr_free(ctx.pods);
        cri_runtime_conf_free(ctx.runtime_conf);
        runt_config_done(&cfg);
        nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_metrics_address(void **state)
{
        static const char *const good[] = {"127.0.0.1:9100", "0.0.0.0:1", "[::1]:65535",
                                           "[fd00::1]:9100", NULL};
        static const char *const bad[] = {"localhost:9100",
                                          "127.0.0.1",
                                          "127.0.0.1:0",
                                          "127.0.0.1:65536",
                                          "127.0.0.1:x",
                                          "::1:9100",
                                          "[::1]9100",
                                          "[localhost]:9100",
                                          ":9100",
                                          "example.com:80",
                                          "127.0.0.1:9100 ",
                                          "",
                                          NULL};
        struct sockaddr_storage sa;
        socklen_t sl;

        (void)state;
        for (size_t i = 0; good[i]; i++) {
                struct sh_error err = {0};

                if (cri_metrics_address_parse(good[i], &sa, &sl, &err) != 0)
                        fail_msg("'%s' refused: %s", good[i], err.msg);
        }
        for (size_t i = 0; bad[i]; i++) {
                struct sh_error err = {0};

                if (cri_metrics_address_parse(bad[i], &sa, &sl, &err) != -EINVAL)
                        fail_msg("'%s' taken", bad[i]);
                assert_non_null(strstr(err.msg, "metrics.address"));
        }
}

static void test_cidr_validate(void **state)
{
        static const char *const good[] = {
                "",          "10.88.0.0/16", "0.0.0.0/0",      "10.0.0.1/32",
                "fd00::/64", "::/0",         "2001:db8::/128", NULL};
        static const char *const bad[] = {
                "10.88.0.0", "10.88.0.0/33", "10.88.0.0/-1", "10.88.0.0/+8", "10.88.0.0/",
                "10.88/16",  "fd00::/129",   "host/24",      "/24",          "10.0.0.0/8/8",
                NULL};

        (void)state;
        for (size_t i = 0; good[i]; i++)
                if (cri_cidr_validate(good[i], NULL) != 0)
                        fail_msg("'%s' refused", good[i]);
        for (size_t i = 0; bad[i]; i++) {
                struct sh_error err = {0};

                if (cri_cidr_validate(bad[i], &err) != -EINVAL)
                        fail_msg("'%s' taken", bad[i]);
                assert_non_null(strstr(err.msg, "pod_cidr"));
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table_matches_rpcs_txt),
                cmocka_unit_test(test_table_entries_distinct_and_consistent),
                cmocka_unit_test(test_implemented_handlers),
                cmocka_unit_test(test_lookup_bounds),
                cmocka_unit_test(test_lookup_embedded_nul),
                cmocka_unit_test(test_descriptor_names),
                cmocka_unit_test(test_status_from_errno),
                cmocka_unit_test(test_stream_forms),
                cmocka_unit_test(test_status_name),
                cmocka_unit_test(test_version),
                cmocka_unit_test(test_runtime_config),
                cmocka_unit_test(test_msg_helpers),
                cmocka_unit_test(test_status_with_managers),
                cmocka_unit_test(test_metrics_address),
                cmocka_unit_test(test_cidr_validate),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
