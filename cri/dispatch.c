/* The dispatch table: every method of CRI v1 RuntimeService and ImageService. */
#include <string.h>

#include "cri-internal.h"

#define M(svc_, name_, req_, resp_, streaming_, quick_, fn_)                                       \
        {                                                                                          \
                .path = "/runtime.v1." #svc_ "/" #name_, .service = #svc_, .name = #name_,         \
                .req = &runtime__v1__##req_##__descriptor,                                         \
                .resp = &runtime__v1__##resp_##__descriptor, .streaming = (streaming_),            \
                .quick = (quick_), .unary = (fn_),                                                 \
        }
/* A read the kubelet polls: its own lane of workers, so it never waits behind a slow call. */
#define R(svc_, name_, req_, resp_, fn_)                                                           \
        {                                                                                          \
                .path = "/runtime.v1." #svc_ "/" #name_, .service = #svc_, .name = #name_,         \
                .req = &runtime__v1__##req_##__descriptor,                                         \
                .resp = &runtime__v1__##resp_##__descriptor, .read = true, .unary = (fn_),         \
        }
/*
 * A read that walks container trees (stats, ImageFsInfo): a lane of its own, so a container
 * whose tree takes long to walk never holds up the kubelet's List* and *Status.
 */
#define W(svc_, name_, req_, resp_, fn_)                                                           \
        {                                                                                          \
                .path = "/runtime.v1." #svc_ "/" #name_, .service = #svc_, .name = #name_,         \
                .req = &runtime__v1__##req_##__descriptor,                                         \
                .resp = &runtime__v1__##resp_##__descriptor, .walk = true, .unary = (fn_),         \
        }
/* A method whose handler learns when its client is gone (cri_cancellable_fn). */
#define MC(svc_, name_, req_, resp_, fn_)                                                          \
        {                                                                                          \
                .path = "/runtime.v1." #svc_ "/" #name_, .service = #svc_, .name = #name_,         \
                .req = &runtime__v1__##req_##__descriptor,                                         \
                .resp = &runtime__v1__##resp_##__descriptor, .cancellable = (fn_),                 \
        }
/*
 * A Stream* form of a List RPC (cri-api v0.36): no handler of its own, its List form's
 * answers it in that form's lane, so wiring a List handler in wires its Stream form too.
 */
#define S(svc_, name_, req_, resp_, list_)                                                         \
        {                                                                                          \
                .path = "/runtime.v1." #svc_ "/" #name_, .service = #svc_, .name = #name_,         \
                .req = &runtime__v1__##req_##__descriptor,                                         \
                .resp = &runtime__v1__##resp_##__descriptor, .streaming = true,                    \
                .list_form = "/runtime.v1." #svc_ "/" #list_,                                      \
        }

/*
 * quick: answered on the completion-queue thread, because it never blocks (no disk walk,
 * no lock held across I/O). R: the read lane (List*, *Status: they may read files or wait
 * for a lock briefly, so not on the queue thread; the stats and metrics RPCs too, which read
 * podmgr's collector's samples). W: the walk lane (ImageFsInfo walks trees). Everything else: the
 * slow lane. The lanes and their limits: server.c, docs/configuration.md (server.*).
 */
static const struct cri_method methods[] = {
        M(RuntimeService, Version, version_request, version_response, false, true, cri_version),
        M(RuntimeService, RunPodSandbox, run_pod_sandbox_request, run_pod_sandbox_response, false,
          false, cri_run_pod_sandbox),
        M(RuntimeService, StopPodSandbox, stop_pod_sandbox_request, stop_pod_sandbox_response,
          false, false, cri_stop_pod_sandbox),
        M(RuntimeService, RemovePodSandbox, remove_pod_sandbox_request, remove_pod_sandbox_response,
          false, false, cri_remove_pod_sandbox),
        R(RuntimeService, PodSandboxStatus, pod_sandbox_status_request, pod_sandbox_status_response,
          cri_pod_sandbox_status),
        R(RuntimeService, ListPodSandbox, list_pod_sandbox_request, list_pod_sandbox_response,
          cri_list_pod_sandbox),
        S(RuntimeService, StreamPodSandboxes, stream_pod_sandboxes_request,
          stream_pod_sandboxes_response, ListPodSandbox),
        M(RuntimeService, CreateContainer, create_container_request, create_container_response,
          false, false, cri_create_container),
        M(RuntimeService, StartContainer, start_container_request, start_container_response, false,
          false, cri_start_container),
        M(RuntimeService, StopContainer, stop_container_request, stop_container_response, false,
          false, cri_stop_container),
        M(RuntimeService, RemoveContainer, remove_container_request, remove_container_response,
          false, false, cri_remove_container),
        R(RuntimeService, ListContainers, list_containers_request, list_containers_response,
          cri_list_containers),
        S(RuntimeService, StreamContainers, stream_containers_request, stream_containers_response,
          ListContainers),
        R(RuntimeService, ContainerStatus, container_status_request, container_status_response,
          cri_container_status),
        M(RuntimeService, UpdateContainerResources, update_container_resources_request,
          update_container_resources_response, false, false, cri_update_container_resources),
        M(RuntimeService, ReopenContainerLog, reopen_container_log_request,
          reopen_container_log_response, false, false, cri_reopen_container_log),
        MC(RuntimeService, ExecSync, exec_sync_request, exec_sync_response, cri_exec_sync),
        M(RuntimeService, Exec, exec_request, exec_response, false, false, cri_exec),
        M(RuntimeService, Attach, attach_request, attach_response, false, false, cri_attach),
        M(RuntimeService, PortForward, port_forward_request, port_forward_response, false, false,
          cri_port_forward),
        R(RuntimeService, ContainerStats, container_stats_request, container_stats_response,
          cri_container_stats),
        R(RuntimeService, ListContainerStats, list_container_stats_request,
          list_container_stats_response, cri_list_container_stats),
        S(RuntimeService, StreamContainerStats, stream_container_stats_request,
          stream_container_stats_response, ListContainerStats),
        R(RuntimeService, PodSandboxStats, pod_sandbox_stats_request, pod_sandbox_stats_response,
          cri_pod_sandbox_stats),
        R(RuntimeService, ListPodSandboxStats, list_pod_sandbox_stats_request,
          list_pod_sandbox_stats_response, cri_list_pod_sandbox_stats),
        S(RuntimeService, StreamPodSandboxStats, stream_pod_sandbox_stats_request,
          stream_pod_sandbox_stats_response, ListPodSandboxStats),
        M(RuntimeService, UpdateRuntimeConfig, update_runtime_config_request,
          update_runtime_config_response, false, false, cri_update_runtime_config),
        M(RuntimeService, Status, status_request, status_response, false, true, cri_status),
        {
                .path = "/runtime.v1.RuntimeService/CheckpointContainer",
                .service = "RuntimeService",
                .name = "CheckpointContainer",
                .req = &runtime__v1__checkpoint_container_request__descriptor,
                .resp = &runtime__v1__checkpoint_container_response__descriptor,
                .quick = true,
                .unimplemented = "runt has no CRIU support: checkpointing would need CRIU, "
                                 "liblxc's checkpoint/restore for the container and its "
                                 "monitor, and its rootfs diff and logs packed as a checkpoint "
                                 "archive, with a restore path in CreateContainer",
        },
        /* Long-lived: a subscriber of the event hub, driven from the completion queue. */
        {.path = "/runtime.v1.RuntimeService/GetContainerEvents",
         .service = "RuntimeService",
         .name = "GetContainerEvents",
         .req = &runtime__v1__get_events_request__descriptor,
         .resp = &runtime__v1__container_event_response__descriptor,
         .streaming = true,
         .quick = true,
         .events = true},
        M(RuntimeService, ListMetricDescriptors, list_metric_descriptors_request,
          list_metric_descriptors_response, false, true, cri_list_metric_descriptors),
        R(RuntimeService, ListPodSandboxMetrics, list_pod_sandbox_metrics_request,
          list_pod_sandbox_metrics_response, cri_list_pod_sandbox_metrics),
        S(RuntimeService, StreamPodSandboxMetrics, stream_pod_sandbox_metrics_request,
          stream_pod_sandbox_metrics_response, ListPodSandboxMetrics),
        M(RuntimeService, RuntimeConfig, runtime_config_request, runtime_config_response, false,
          true, cri_runtime_config),
        M(RuntimeService, UpdatePodSandboxResources, update_pod_sandbox_resources_request,
          update_pod_sandbox_resources_response, false, false, cri_update_pod_sandbox_resources),
        R(ImageService, ListImages, list_images_request, list_images_response, cri_list_images),
        S(ImageService, StreamImages, stream_images_request, stream_images_response, ListImages),
        R(ImageService, ImageStatus, image_status_request, image_status_response, cri_image_status),
        M(ImageService, PullImage, pull_image_request, pull_image_response, false, false,
          cri_pull_image),
        M(ImageService, RemoveImage, remove_image_request, remove_image_response, false, false,
          cri_remove_image),
        W(ImageService, ImageFsInfo, image_fs_info_request, image_fs_info_response,
          cri_image_fs_info),
};

const struct cri_method *cri_method_lookup(const char *path, size_t len)
{
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
                const char *p = methods[i].path;

                /* @path is length-bounded and may hold a NUL: compare lengths first. */
                if (strlen(p) == len && memcmp(p, path, len) == 0)
                        return &methods[i];
        }
        return NULL;
}

size_t cri_method_count(void)
{
        return sizeof(methods) / sizeof(methods[0]);
}

const struct cri_method *cri_method_at(size_t i)
{
        return i < cri_method_count() ? &methods[i] : NULL;
}

const struct cri_method *cri_method_runner(const struct cri_method *m)
{
        if (!m || !m->list_form)
                return m;
        return cri_method_lookup(m->list_form, strlen(m->list_form));
}
