#pragma once

#include <stdbool.h>

#include "agentpod.h"
#include "be-internal.h"
#include "vm.h"

/*
 * The microvm backend's own state (backends/microvm/microvm.c): the pod host of an agent
 * pod (backends/agentpod/agentpod.h) that is one QEMU microvm. The layer keeps the pods,
 * their containers and the agent; this backend makes, reaches and removes the VM.
 *
 * A pod's dir is <run_dir>/microvm/<the id's first 20 digits>/ (its sockets must fit
 * sun_path); besides the layer's files (agentpod.h: c/, stopped) it holds:
 *   qemu.pid, qmp.sock, agent.sock, vfs.sock, console.log   the VM (vm.c)
 *   share/        the one directory virtiofsd serves to the guest (tag "runt"), where the
 *                 guest sees it at MV_GUEST_SHARE: pod/ is a bind of the pod's files
 *                 (hosts, resolv.conf, hostname), c/<ctr>/l<N> binds of the image layers
 *                 and c/<ctr>/m<N> binds of the CRI mounts, made before CTR_CREATE
 *                 (ap_host_ops.prepare_container)
 */

#define MV_GUEST_SHARE "/run/runt/share"

struct mv_pod {
        struct ap_pod ap; /* first: the layer's pod */
        char *share;      /* <dir>/share */
        struct mv_vm vm;
};

struct sh_helpercg;

struct mv_be {
        struct ap_be ap; /* first: be->priv is the layer's too */
        char *qemu, *kernel, *kver, *modules_dir, *initramfs, *accel, *virtiofsd, *agent_bin;
        char *cmdline;
        unsigned memory_mib, vcpus, boot_timeout_ms;
        bool console; /* the guest's console to console.log (a slower boot) */
        char *cache_dir;
        struct sh_helpercg *hcg; /* the pods' cgroups "runt-pod-<id>": QEMU and virtiofsd */
};

static inline struct mv_pod *mv_pod(struct ap_pod *p)
{
        return (struct mv_pod *)p;
}

/*
 * Binds @src at @rel below @share (made: a dir, or an empty file for a file), read-only when
 * @ro; never following a symlink below @share (the guest writes there).
 */
int mv_bind(const char *share, const char *rel, const char *src, bool ro, struct sh_error *err);
/* Lazily unmounts every mount at or below @dir, deepest first. */
void mv_umount_below(const char *dir);
/* True when nothing is mounted at or below @dir. */
bool mv_no_mounts_below(const char *dir);
