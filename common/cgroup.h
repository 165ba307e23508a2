#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cgstats.h"
#include "cgweight.h"
#include "error.h"

/*
 * The host's cgroups as runt drives them: which version limits are written to, which
 * controllers there are, and the limit files a container's resources become on it.
 *
 * The driver is always "cgroupfs": runt makes and removes its cgroups itself below the cgroup
 * mount, under the cgroup_parent the kubelet gives (a systemd-style "x.slice" name is taken
 * as a directory name, not expanded into a slice path nor made through systemd's D-Bus API).
 */

/* Controllers, as bits. */
enum sh_cg_ctrl {
        SH_CG_CPU = 1u << 0,
        SH_CG_CPUACCT = 1u << 1, /* v1 only; v2's cpu.stat is always there */
        SH_CG_CPUSET = 1u << 2,
        SH_CG_MEMORY = 1u << 3,
        SH_CG_PIDS = 1u << 4,
        SH_CG_HUGETLB = 1u << 5,
        SH_CG_IO = 1u << 6,      /* v2 io; v1 blkio */
        SH_CG_DEVICES = 1u << 7, /* v1 only; v2 filters devices with a BPF program */
};

struct sh_cg_host {
        enum sh_cg_version version; /* V2: unified; V1: legacy or hybrid; NONE: no cgroups */
        bool hybrid;                /* v1, with a cgroup2 mount at <root>/unified beside it */
        unsigned controllers;       /* enum sh_cg_ctrl: v2 the root's cgroup.controllers, v1
                                       the hierarchies mounted */
        bool swap;                  /* swap accounting: v1 memory.memsw.*, v2 memory.swap.* */
        char root[256];             /* the cgroup mount, "/sys/fs/cgroup" */
};

/*
 * Tells how @root ("/sys/fs/cgroup", or a fake tree in tests) is laid out. Unified (v2)
 * when <root>/cgroup.controllers exists, else v1 with a hierarchy per <root>/<name>/ that
 * has a cgroup.procs (cpu,cpuacct-style joined mounts and their symlinks count for each
 * name). Swap accounting on v2 is seen on a child cgroup that has memory.max (the root has
 * none): memory.swap.max beside it; with no such child, on the kernel command line
 * (swapaccount=0 turns it off). -ENAMETOOLONG for a root too long; a root that is no cgroup
 * mount at all gives version NONE and 0. Reads a few small files.
 */
int sh_cg_host_detect(const char *root, struct sh_cg_host *ret, struct sh_error *err);

/* "cgroupfs": the only driver runt has (see above). */
const char *sh_cg_driver(void);

/* The names of the bits in @controllers, space-separated ("cpu memory pids"), into @buf. */
void sh_cg_ctrl_names(unsigned controllers, char *buf, size_t size);

/*
 * CRI's memory_swap_limit_in_bytes (@memsw: memory and swap together, cgroup v1's memsw; 0
 * unset, -1 unlimited) as v2 memory.swap.max, which counts swap alone, given the memory
 * limit @memory (0 unset, -1 unlimited): "max" for -1, memsw - memory otherwise, as runc
 * and crun convert it. 0 with @ret "" when nothing is to be written; -EINVAL with a message
 * for a swap limit without a memory limit or below it.
 */
int sh_cg_swap_v2(long long memory, long long memsw, char *ret, size_t size, struct sh_error *err);

/* A container's limits, as plain figures (0 or NULL: unset). */
struct sh_cg_limits {
        long long cpu_shares;
        long long cpu_quota;  /* us; -1 unlimited */
        long long cpu_period; /* us */
        const char *cpuset_cpus, *cpuset_mems;
        long long memory;      /* bytes; -1 unlimited */
        long long memory_swap; /* memory + swap, as CRI says it; -1 unlimited */
        unsigned long long pids_max;
        const char *const *hugepage_sizes;  /* "2MB", n_hugepages of them */
        const char *const *hugepage_limits; /* bytes, in step */
        size_t n_hugepages;
};

/*
 * Calls @fn(@data, file, value, err) for each cgroup file @l sets on @host, in the order to
 * write them, under the version's names: v1 cpu.shares, cpu.cfs_period_us, cpu.cfs_quota_us,
 * memory.limit_in_bytes, memory.memsw.limit_in_bytes, pids.max, hugetlb.<size>.limit_in_bytes;
 * v2 cpu.weight, cpu.max ("<quota|max> [<period>]"), memory.max, memory.swap.max, pids.max,
 * hugetlb.<size>.max; cpuset.cpus and cpuset.mems on both. A figure whose controller (or
 * swap accounting) the host lacks is left out: it cannot be set there, nor exceeded. Stops at
 * the first error @fn returns and returns it; -EINVAL for figures v2 cannot take (a swap
 * limit without a memory limit).
 */
int sh_cg_limit_items(const struct sh_cg_host *host, const struct sh_cg_limits *l,
                      int (*fn)(void *data, const char *file, const char *value,
                                struct sh_error *err),
                      void *data, struct sh_error *err);

/*
 * The directory of cgroup @rel for the controller that owns @file ("memory.max" ->
 * "memory"): <root>/<rel> on v2, <root>/<ctrl>/<rel> on v1. malloc'd; NULL on ENOMEM or for
 * a file name without a controller prefix.
 */
char *sh_cg_dir_for(const struct sh_cg_host *host, const char *rel, const char *file);
