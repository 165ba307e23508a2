#include "cgstats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "strutil.h"

/* A v1 memory limit this high is none: the kernel's "unlimited" rounded down to pages. */
#define V1_UNLIMITED (1ULL << 62)
/* The largest cgroup file read here (memory.stat is about 1.5 KiB). */
#define CG_FILE_MAX (1u << 16)

/* <root>/<ctrl>/<rel>/<file> (ctrl may be ""), read whole; -ENOENT when missing. */
static int cg_read(const char *root, const char *ctrl, const char *rel, const char *file,
                   char **ret)
{
        _cleanup_free_ char *path =
                sh_strdup_printf("%s%s%s/%s/%s", root, ctrl[0] ? "/" : "", ctrl, rel, file);

        return path ? sh_read_file(path, CG_FILE_MAX, ret, NULL) : -ENOMEM;
}

/* A file holding one number ("max" is @max_value when @max_ok). -EIO for anything else. */
static int parse_u64(const char *s, bool max_ok, uint64_t *ret, bool *ret_max)
{
        char *end;
        unsigned long long v;

        if (ret_max)
                *ret_max = false;
        if (max_ok && strncmp(s, "max", 3) == 0 && (s[3] == '\n' || s[3] == '\0')) {
                if (ret_max)
                        *ret_max = true;
                *ret = 0;
                return 0;
        }
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || (*end != '\n' && *end != '\0') || s[0] == '-')
                return -EIO;
        *ret = v;
        return 0;
}

static int read_u64(const char *root, const char *ctrl, const char *rel, const char *file,
                    uint64_t *ret, bool *ret_max)
{
        _cleanup_free_ char *buf = NULL;
        int r = cg_read(root, ctrl, rel, file, &buf);

        return r < 0 ? r : parse_u64(buf, ret_max != NULL, ret, ret_max);
}

/* The value of @key in a flat keyed file ("key value\n" lines); false when absent. */
static bool keyed(const char *text, const char *key, uint64_t *ret)
{
        size_t n = strlen(key);

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                if (strncmp(p, key, n) == 0 && p[n] == ' ') {
                        char *end;

                        errno = 0;
                        *ret = strtoull(p + n + 1, &end, 10);
                        return errno == 0 && end != p + n + 1;
                }
        }
        return false;
}

static void set_working_set(struct sh_cg_stats *s)
{
        /* As cAdvisor and containerd: what cannot be reclaimed without I/O. */
        s->mem_working_set =
                s->mem_usage > s->mem_inactive_file ? s->mem_usage - s->mem_inactive_file : 0;
}

static bool is_dir(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int read_v2(const char *root, const char *rel, struct sh_cg_stats *s, struct sh_error *err)
{
        _cleanup_free_ char *cpu = NULL, *mem = NULL, *events = NULL;
        uint64_t v;
        bool max;
        int r;

        if (cg_read(root, "", rel, "cpu.stat", &cpu) == 0 && keyed(cpu, "usage_usec", &v)) {
                s->has_cpu = true;
                s->cpu_usage_ns = v * 1000;
        }
        r = read_u64(root, "", rel, "memory.current", &s->mem_usage, NULL);
        if (r == 0 && (r = cg_read(root, "", rel, "memory.stat", &mem)) == 0) {
                s->has_memory = true;
                keyed(mem, "inactive_file", &s->mem_inactive_file);
                keyed(mem, "anon", &s->mem_rss);
                keyed(mem, "file", &s->mem_cache);
                keyed(mem, "file_mapped", &s->mem_mapped_file);
                keyed(mem, "pgfault", &s->mem_pgfault);
                keyed(mem, "pgmajfault", &s->mem_pgmajfault);
                set_working_set(s);
                if (cg_read(root, "", rel, "memory.events", &events) == 0)
                        keyed(events, "max", &s->mem_failcnt);
                if (read_u64(root, "", rel, "memory.max", &v, &max) == 0 && !max) {
                        s->has_mem_limit = true;
                        s->mem_limit = v;
                }
        } else if (r != -ENOENT) {
                return sh_err(err, r, "cgroup %s: memory: %s", rel, strerror(-r));
        }
        if (read_u64(root, "", rel, "memory.swap.current", &s->swap_usage, NULL) == 0) {
                s->has_swap = true;
                if (read_u64(root, "", rel, "memory.swap.max", &v, &max) == 0 && !max) {
                        s->has_swap_limit = true;
                        s->swap_limit = v;
                }
        }
        s->has_pids = read_u64(root, "", rel, "pids.current", &s->pids, NULL) == 0;
        return 0;
}

static int read_v1_memory(const char *root, const char *rel, struct sh_cg_stats *s,
                          struct sh_error *err)
{
        _cleanup_free_ char *stat = NULL;
        uint64_t limit = 0, memsw = 0, memsw_limit = 0;
        int r;

        if ((r = read_u64(root, "memory", rel, "memory.usage_in_bytes", &s->mem_usage, NULL)) < 0 ||
            (r = read_u64(root, "memory", rel, "memory.limit_in_bytes", &limit, NULL)) < 0 ||
            (r = cg_read(root, "memory", rel, "memory.stat", &stat)) < 0)
                return r == -ENOENT ? 0
                                    : sh_err(err, r, "cgroup %s: memory: %s", rel, strerror(-r));
        s->has_memory = true;
        /* The hierarchical totals: a container may make child cgroups of its own. */
        keyed(stat, "total_inactive_file", &s->mem_inactive_file);
        keyed(stat, "total_rss", &s->mem_rss);
        keyed(stat, "total_cache", &s->mem_cache);
        keyed(stat, "total_mapped_file", &s->mem_mapped_file);
        keyed(stat, "total_pgfault", &s->mem_pgfault);
        keyed(stat, "total_pgmajfault", &s->mem_pgmajfault);
        set_working_set(s);
        read_u64(root, "memory", rel, "memory.failcnt", &s->mem_failcnt, NULL);
        if (limit > 0 && limit < V1_UNLIMITED) {
                s->has_mem_limit = true;
                s->mem_limit = limit;
        }
        /* memsw counts memory and swap together; only with swap accounting on. */
        if (read_u64(root, "memory", rel, "memory.memsw.usage_in_bytes", &memsw, NULL) == 0) {
                s->has_swap = true;
                s->swap_usage = memsw > s->mem_usage ? memsw - s->mem_usage : 0;
                if (read_u64(root, "memory", rel, "memory.memsw.limit_in_bytes", &memsw_limit,
                             NULL) == 0 &&
                    memsw_limit < V1_UNLIMITED && s->has_mem_limit) {
                        s->has_swap_limit = true;
                        s->swap_limit = memsw_limit > limit ? memsw_limit - limit : 0;
                }
        }
        return 0;
}

static int read_v1(const char *root, const char *rel, struct sh_cg_stats *s, struct sh_error *err)
{
        int r;

        r = read_u64(root, "cpuacct", rel, "cpuacct.usage", &s->cpu_usage_ns, NULL);
        if (r == 0)
                s->has_cpu = true;
        else if (r != -ENOENT)
                return sh_err(err, r, "cgroup %s: cpuacct.usage: %s", rel, strerror(-r));
        r = read_v1_memory(root, rel, s, err);
        if (r < 0)
                return r;
        s->has_pids = read_u64(root, "pids", rel, "pids.current", &s->pids, NULL) == 0;
        return 0;
}

int sh_cg_stats_read(const char *root, const char *rel, struct sh_cg_stats *ret,
                     enum sh_cg_version *ret_version, struct sh_error *err)
{
        _cleanup_free_ char *v2 = NULL;
        struct sh_cg_stats s = {0};
        enum sh_cg_version version;
        int r;

        while (*rel == '/')
                rel++;
        if (strstr(rel, "..") || strchr(rel, '\n'))
                return sh_err(err, -EINVAL, "cgroup '%.200s': not a cgroup path", rel);
        v2 = sh_strdup_printf("%s/%s/cgroup.controllers", root, rel);
        if (!v2)
                return -ENOMEM;
        if (access(v2, F_OK) == 0) {
                version = SH_CG_V2;
                r = read_v2(root, rel, &s, err);
        } else {
                version = SH_CG_V1;
                r = read_v1(root, rel, &s, err);
        }
        if (r < 0)
                return r;
        if (!s.has_cpu && !s.has_memory && !s.has_pids) {
                /* Nothing readable: it is gone, unless a hierarchy still has the directory. */
                _cleanup_free_ char *mem = sh_strdup_printf("%s/memory/%s", root, rel);

                if (!mem)
                        return -ENOMEM;
                if (version == SH_CG_V2 || !is_dir(mem))
                        return sh_err(err, -ENOENT, "cgroup %s: not found", rel);
        }
        *ret = s;
        if (ret_version)
                *ret_version = version;
        return 0;
}

void sh_cg_stats_add(struct sh_cg_stats *a, const struct sh_cg_stats *b)
{
        a->has_cpu |= b->has_cpu;
        a->cpu_usage_ns += b->cpu_usage_ns;
        a->has_mem_limit = a->has_memory && b->has_memory ? a->has_mem_limit && b->has_mem_limit
                                                          : a->has_mem_limit || b->has_mem_limit;
        a->has_memory |= b->has_memory;
        a->mem_usage += b->mem_usage;
        a->mem_working_set += b->mem_working_set;
        a->mem_inactive_file += b->mem_inactive_file;
        a->mem_rss += b->mem_rss;
        a->mem_cache += b->mem_cache;
        a->mem_mapped_file += b->mem_mapped_file;
        a->mem_pgfault += b->mem_pgfault;
        a->mem_pgmajfault += b->mem_pgmajfault;
        a->mem_failcnt += b->mem_failcnt;
        a->mem_limit += b->mem_limit;
        a->has_swap_limit = a->has_swap && b->has_swap ? a->has_swap_limit && b->has_swap_limit
                                                       : a->has_swap_limit || b->has_swap_limit;
        a->has_swap |= b->has_swap;
        a->swap_usage += b->swap_usage;
        a->swap_limit += b->swap_limit;
        a->has_pids |= b->has_pids;
        a->pids += b->pids;
}
