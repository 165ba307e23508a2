#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "error.h"

struct ag_net;

/*
 * Host-side plumbing of the microVM backend (prefix mv_): one QEMU `-M microvm` per pod,
 * its guest initramfs (/init = runt-agent), the accelerator probe, and the pod netns tap.
 * Nothing here logs above debug; every call returns 0 or -errno with detail in @err.
 *
 * FILES IN A VM DIR (mv_vm_opts.dir, one per pod, created by the caller or by
 * mv_vm_start): agent.sock (virtio-serial port "runt.agent", QEMU listens),
 * qmp.sock (QMP, QEMU listens), vfs.sock (virtiofsd listens, QEMU connects),
 * qemu.pid (written by QEMU), virtiofsd.pid (written by us), console.log (guest
 * serial console), qemu.log and virtiofsd.log (their stdout+stderr).
 * mv_vm_cleanup_dir removes exactly these (and the dir itself when it is empty then).
 *
 * THE GUEST sees: virtio-serial port "runt.agent" (AG_PORT_NAME), the virtio-fs tag
 * "runt" (MV_FS_TAG) when a shared dir was given, one virtio-net NIC with the MAC given,
 * kernel modules to load listed in /etc/runt-modules (guest paths, load order), and
 * the cmdline "console=ttyS0 panic=-1 ... tsc_early_khz=N" plus opts->cmdline_extra.
 */

#define MV_FS_TAG   "runt"
#define MV_TAP_NAME "tap0"

/* ---- initramfs (initramfs.c) ---- */

struct mv_initramfs_opts {
        const char *agent_path;     /* becomes /init (static binary) */
        const char *kver;           /* "6.1.0-57-cloud-amd64" */
        const char *modules_dir;    /* /lib/modules/<kver>, with modules.dep */
        const char *cache_dir;      /* where initramfs-<sha256>.cpio[.gz] are kept */
        const char *const *modules; /* module names; NULL: mv_default_modules */
        int gzip; /* 1: gzip, 0: plain cpio, -1: the default (MV_INITRAMFS_GZIP_DEFAULT) */
};

/* virtio_mmio virtio_console virtio_net overlay fuse virtiofs virtio_balloon, NULL-ended. */
extern const char *const mv_default_modules[];

/*
 * Finds or builds the initramfs for @o in its cache dir and returns its path (malloc'd).
 * Safe against concurrent callers (temp file + rename; identical content wins).
 */
int mv_initramfs_get(const struct mv_initramfs_opts *o, char **ret_path, struct sh_error *err);

/*
 * The guest kernel: @configured if not NULL/empty, else the newest /boot/vmlinuz-*-cloud-amd64,
 * else the newest /boot/vmlinuz-*. @ret_kver is the name's tail, @ret_modules_dir
 * /lib/modules/<kver> (all malloc'd). -ENOENT when there is none.
 */
int mv_kernel_find(const char *configured, char **ret_kernel, char **ret_kver,
                   char **ret_modules_dir, struct sh_error *err);

/* ---- accelerator and host facts (vm.c) ---- */

/*
 * @want "kvm", "tcg" or "auto"/NULL. "auto" is "kvm" only when KVM really runs a tiny
 * real-mode guest to the expected I/O exit and HLT (in a child, bounded to 2 s), else
 * "tcg". "kvm" fails with -ENODEV when that probe fails. @ret_accel is malloc'd.
 */
int mv_accel_probe(const char *want, char **ret_accel, struct sh_error *err);

/* The host TSC in kHz (sysfs tsc_freq_khz, else cpu0's "cpu MHz"); 0 when unknown. */
unsigned mv_host_tsc_khz(void);

/* ---- the VM (vm.c) ---- */

struct mv_vm_opts {
        const char *qemu;          /* NULL: "qemu-system-x86_64" from PATH */
        const char *kernel;        /* vmlinuz */
        const char *initramfs;     /* from mv_initramfs_get */
        unsigned mem_mib;          /* 0: MV_DEFAULT_MEM_MIB */
        unsigned vcpus;            /* 0: 1 */
        const char *accel;         /* "kvm" or "tcg" (from mv_accel_probe); NULL: "tcg" */
        const char *dir;           /* the VM dir (created 0700 if missing); short: sun_path! */
        int tap_fd;                /* tap fd (IFF_VNET_HDR), fd 3 in QEMU; 0/-1: none */
        const char *mac;           /* the guest NIC's MAC ("aa:bb:..."); NULL: QEMU's */
        const char *virtiofsd;     /* NULL: /usr/lib/qemu/virtiofsd */
        const char *shared_dir;    /* NULL: no virtio-fs */
        const char *cmdline_extra; /* appended to the kernel cmdline; NULL: none */
        unsigned tsc_khz;          /* 0: mv_host_tsc_khz() */
        unsigned tb_size_mib;      /* TCG translation cache; 0: MV_DEFAULT_TB_MIB */
        bool console;              /* true: guest serial console to console.log (slower boot) */
        bool balloon;              /* virtio-balloon with free page reporting */
        const char *machine_extra; /* appended to the -M microvm options; NULL: none */
        const char *cgroup_dirs;   /* QEMU's and virtiofsd's cgroups (helpercg.h); NULL: runtd's */
};

#define MV_DEFAULT_MEM_MIB 256
#define MV_DEFAULT_TB_MIB  32

struct mv_vm {
        char *dir;
        pid_t qemu_pid;
        int qemu_pidfd; /* -1 when not owned */
        pid_t vfsd_pid; /* 0 when none */
        int vfsd_pidfd; /* -1 when none */
};

/*
 * Starts virtiofsd (when @o->shared_dir) and QEMU, both detached: own session, reparented
 * away from runtd (double fork), fds 0-2 on /dev/null and the logs, no other fd but the
 * tap, default signal dispositions. They outlive runtd. On failure nothing is left running.
 * @ret is filled only on success; release it with mv_vm_done.
 */
int mv_vm_start(const struct mv_vm_opts *o, struct mv_vm *ret, struct sh_error *err);

/*
 * Re-owns the VM running from @dir (after a runtd restart): reads qemu.pid and
 * virtiofsd.pid, checks /proc/<pid>/cmdline names @dir, opens pidfds. -ESRCH when QEMU
 * is gone (virtiofsd may still be filled then, to be shut down).
 */
int mv_vm_open(const char *dir, struct mv_vm *ret, struct sh_error *err);

/*
 * Connects to agent.sock, retrying (every 5 ms) until it exists and QEMU accepts, up to
 * @timeout_ms. @ret_fd is a blocking SOCK_STREAM, close-on-exec. -ETIMEDOUT, or -ESRCH when
 * QEMU exited meanwhile.
 */
int mv_vm_connect_agent(const struct mv_vm *vm, int *ret_fd, unsigned timeout_ms,
                        struct sh_error *err);

/*
 * Stops the VM: QMP "quit", wait up to @timeout_ms for QEMU to go, else SIGKILL and wait;
 * then the same for virtiofsd (SIGTERM, then SIGKILL). Returns 0 once both are gone.
 */
int mv_vm_shutdown(struct mv_vm *vm, unsigned timeout_ms, struct sh_error *err);

/* SIGKILLs QEMU and virtiofsd and waits (up to 5 s) until they are gone. */
int mv_vm_kill(struct mv_vm *vm, struct sh_error *err);

/* true while QEMU runs. */
bool mv_vm_running(const struct mv_vm *vm);

/* Closes the pidfds and frees; the processes are not touched. Safe on a zeroed struct. */
void mv_vm_done(struct mv_vm *vm);

/* Removes the files mv_vm_start made in @dir, then @dir if empty. 0 or -errno. */
int mv_vm_cleanup_dir(const char *dir, struct sh_error *err);

/* ---- pod network (tap.c, netinfo.c) ---- */

/*
 * In the netns at @netns_path (on a dedicated thread that never returns to runtd's netns):
 * creates the non-persistent tap "tap0" (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR) with @ifname's MTU,
 * up; tc ingress qdiscs + u32 match-all mirred redirects both ways @ifname <-> tap0; reads
 * @ifname's MAC, addresses (no link-local) and MTU and the routes through it (not the
 * kernel's connected ones) into @ret_net (one iface; the guest NIC gets that MAC; release
 * with ag_net_done). @ret_tap_fd is close-on-exec. When the tap fd's last holder (QEMU)
 * closes it, tap0 and its qdisc vanish; what is left on @ifname goes with the netns.
 */
int mv_tap_create(const char *netns_path, const char *ifname, int *ret_tap_fd,
                  struct ag_net *ret_net, struct sh_error *err);

/* Undoes mv_tap_create in @netns_path as far as it got (tap0 deleted, @ifname's ingress
 * qdisc removed). Missing pieces are fine. */
int mv_tap_remove(const char *netns_path, const char *ifname, struct sh_error *err);

/* Frees what mv_tap_create put in @n (ag_net_done). */
void mv_net_done(struct ag_net *n);
