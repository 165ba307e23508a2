/*
 * The streaming server (stream/) wired to the pod manager: the ops its sessions run exec,
 * attach and port-forward through. The RPCs that hand out its URLs are in container.c
 * (Exec, Attach) and sandbox.c (PortForward).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "cleanup.h"
#include "cri-internal.h"
#include "podmgr.h"
#include "stream.h"

/* Each op's @data is the struct cri_ctx: ctx->pods is read when a session needs it. */

static int op_exec(void *data, const char *id, const char *const *argv, bool tty, bool want_stdin,
                   struct stream_exec *ret, struct sh_error *err)
{
        struct cri_ctx *ctx = data;
        struct be_exec_stream es = {.stdin_fd = ret->stdin_fd,
                                    .stdout_fd = ret->stdout_fd,
                                    .stderr_fd = ret->stderr_fd,
                                    .pty_fd = ret->pty_fd,
                                    .pid = ret->pid,
                                    .exit_fd = ret->exit_fd,
                                    .rows = ret->rows,
                                    .cols = ret->cols};
        int r;

        r = pod_container_exec_stream(ctx->pods, id, argv, tty, want_stdin, &es, err);
        if (r < 0)
                return r;
        *ret = (struct stream_exec){.stdin_fd = es.stdin_fd,
                                    .stdout_fd = es.stdout_fd,
                                    .stderr_fd = es.stderr_fd,
                                    .pty_fd = es.pty_fd,
                                    .pid = es.pid,
                                    .exit_fd = es.exit_fd,
                                    .rows = es.rows,
                                    .cols = es.cols};
        return 0;
}

static int op_attach(void *data, const char *id, int *ret_fd, bool *ret_tty, bool *ret_stdin,
                     struct sh_error *err)
{
        struct cri_ctx *ctx = data;

        return pod_container_attach(ctx->pods, id, ret_fd, ret_tty, ret_stdin, err);
}

static int op_container_running(void *data, const char *id, struct sh_error *err)
{
        struct cri_ctx *ctx = data;
        _cleanup_free_ char *full = NULL;

        /* The exit is on disk once the attach socket ends; the watcher may not know yet. */
        pod_container_refresh(ctx->pods, id);
        return pod_container_running(ctx->pods, id, &full, err);
}

static int op_sandbox_dial(void *data, const char *id, unsigned port, int *ret_fd,
                           struct sh_error *err)
{
        struct cri_ctx *ctx = data;

        if (!ctx->pods)
                return -EOPNOTSUPP;
        return pod_sandbox_dial(ctx->pods, id, port, ret_fd, err);
}

static const struct stream_ops cri_stream_ops = {
        .exec = op_exec,
        .attach = op_attach,
        .container_running = op_container_running,
        .sandbox_dial = op_sandbox_dial,
};

int cri_stream_new(struct cri_ctx *ctx, struct stream_server **ret, struct sh_error *err)
{
        return stream_server_new(ctx->cfg, &cri_stream_ops, ctx, ret, err);
}

void cri_stream_free(struct stream_server *s)
{
        stream_server_free(s);
}
