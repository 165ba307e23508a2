#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/*
 * What a cgroup's controllers say about the processes in it, cgroup v1 and v2 alike, under
 * the names cAdvisor gives them. Counters are cumulative since the cgroup was made. A has_
 * flag is false when that controller was not there to read.
 */
struct sh_cg_stats {
        bool has_cpu;
        uint64_t cpu_usage_ns; /* v1 cpuacct.usage; v2 cpu.stat usage_usec * 1000 */
        bool has_memory;
        uint64_t mem_usage;         /* v1 memory.usage_in_bytes; v2 memory.current */
        uint64_t mem_working_set;   /* usage - inactive_file, floored at 0 (cAdvisor) */
        uint64_t mem_inactive_file; /* v1 total_inactive_file; v2 inactive_file */
        uint64_t mem_rss;           /* v1 total_rss; v2 anon */
        uint64_t mem_cache;         /* v1 total_cache; v2 file */
        uint64_t mem_mapped_file;   /* v1 total_mapped_file; v2 file_mapped */
        uint64_t mem_pgfault;       /* v1 total_pgfault; v2 pgfault */
        uint64_t mem_pgmajfault;    /* v1 total_pgmajfault; v2 pgmajfault */
        uint64_t mem_failcnt;       /* v1 memory.failcnt; v2 memory.events "max" */
        bool has_mem_limit;         /* a limit is set (not "max" nor v1's near-2^63) */
        uint64_t mem_limit;
        bool has_swap;       /* v1 with swap accounting (memory.memsw.*), v2 memory.swap.* */
        uint64_t swap_usage; /* v1 memsw.usage - usage; v2 memory.swap.current */
        bool has_swap_limit;
        uint64_t swap_limit; /* v1 memsw.limit - limit; v2 memory.swap.max */
        bool has_pids;
        uint64_t pids; /* pids.current: processes and threads (tasks) */
};

/* Which cgroup hierarchy a cgroup was read from. */
enum sh_cg_version {
        SH_CG_NONE = 0, /* on none: the cgroup does not exist */
        SH_CG_V1 = 1,
        SH_CG_V2 = 2,
};

/*
 * Reads cgroup @rel (relative to each hierarchy's root) below the cgroup mount @root
 * ("/sys/fs/cgroup"). The version is told per path: when <root>/<rel>/cgroup.controllers
 * exists the cgroup is a v2 one there (a unified host), else each v1 controller is read
 * from <root>/<controller>/<rel> (cpuacct, memory, pids), and a controller that is missing
 * leaves its flag false. *@ret_version (may be NULL) says which; -ENOENT when the cgroup
 * exists on no hierarchy, -EIO for a file that is not what the kernel writes. Reads a few
 * small files; never blocks long.
 */
int sh_cg_stats_read(const char *root, const char *rel, struct sh_cg_stats *ret,
                     enum sh_cg_version *ret_version, struct sh_error *err);

/*
 * Adds the figures of @b to @a (a pod of sibling cgroups); a flag is set in @a when set in
 * either, and limits are summed only when both have one.
 */
void sh_cg_stats_add(struct sh_cg_stats *a, const struct sh_cg_stats *b);
