#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "strutil.h"

static const struct {
        const char *name;
        unsigned bit;
} ctrl_names[] = {
        {"cpu", SH_CG_CPU},       {"cpuacct", SH_CG_CPUACCT}, {"cpuset", SH_CG_CPUSET},
        {"memory", SH_CG_MEMORY}, {"pids", SH_CG_PIDS},       {"hugetlb", SH_CG_HUGETLB},
        {"io", SH_CG_IO},         {"blkio", SH_CG_IO},        {"devices", SH_CG_DEVICES},
};

static unsigned ctrl_bit(const char *name, size_t len)
{
        for (size_t i = 0; i < SH_ARRAY_SIZE(ctrl_names); i++)
                if (strlen(ctrl_names[i].name) == len &&
                    strncmp(ctrl_names[i].name, name, len) == 0)
                        return ctrl_names[i].bit;
        return 0;
}

static bool exists(const char *dir, const char *a, const char *b)
{
        _cleanup_free_ char *p = sh_strdup_printf("%s/%s%s%s", dir, a, b[0] ? "/" : "", b);

        return p && access(p, F_OK) == 0;
}

/* v2: a child cgroup with memory.max tells whether memory.swap.max is made beside it. */
static bool v2_swap(const char *root)
{
        _cleanup_free_ char *cmdline = NULL;
        DIR *d = opendir(root);
        struct dirent *de;
        int found = -1;

        while (d && found < 0 && (de = readdir(d))) {
                _cleanup_free_ char *p = NULL;

                if (de->d_name[0] == '.' || de->d_type != DT_DIR)
                        continue;
                p = sh_path_join(root, de->d_name);
                if (p && exists(p, "memory.max", ""))
                        found = exists(p, "memory.swap.max", "");
        }
        if (d)
                closedir(d);
        if (found >= 0)
                return found;
        /* No cgroup with the memory controller yet: the kernel's default, unless turned off. */
        if (sh_read_file("/proc/cmdline", 1 << 16, &cmdline, NULL) < 0)
                return false;
        return !strstr(cmdline, "swapaccount=0") && !strstr(cmdline, "cgroup.memory=noswap");
}

int sh_cg_host_detect(const char *root, struct sh_cg_host *ret, struct sh_error *err)
{
        struct sh_cg_host h = {0};
        _cleanup_free_ char *ctl = NULL;

        if (strlen(root) >= sizeof(h.root))
                return sh_err(err, -ENAMETOOLONG, "cgroup root '%.64s...' is too long", root);
        snprintf(h.root, sizeof(h.root), "%s", root);
        if (exists(root, "cgroup.controllers", "")) {
                _cleanup_free_ char *p = sh_path_join(root, "cgroup.controllers");
                int r;

                if (!p)
                        return -ENOMEM;
                r = sh_read_file(p, 4096, &ctl, NULL);
                if (r < 0)
                        return sh_err(err, r, "read '%s': %s", p, strerror(-r));
                h.version = SH_CG_V2;
                for (char *s = ctl; *s;) {
                        size_t n = strcspn(s, " \n");

                        h.controllers |= ctrl_bit(s, n);
                        s += n;
                        s += strspn(s, " \n");
                }
                h.swap = (h.controllers & SH_CG_MEMORY) && v2_swap(root);
        } else {
                for (size_t i = 0; i < SH_ARRAY_SIZE(ctrl_names); i++)
                        if (exists(root, ctrl_names[i].name, "cgroup.procs"))
                                h.controllers |= ctrl_names[i].bit;
                if (h.controllers)
                        h.version = SH_CG_V1;
                h.hybrid = h.version == SH_CG_V1 && exists(root, "unified", "cgroup.controllers");
                h.swap = exists(root, "memory", "memory.memsw.limit_in_bytes");
        }
        *ret = h;
        return 0;
}

const char *sh_cg_driver(void)
{
        return "cgroupfs";
}

void sh_cg_ctrl_names(unsigned controllers, char *buf, size_t size)
{
        size_t n = 0;

        if (size)
                buf[0] = '\0';
        for (size_t i = 0; i < SH_ARRAY_SIZE(ctrl_names); i++) {
                /* "io" and "blkio" share a bit: the version's name only. */
                if (!(controllers & ctrl_names[i].bit) || strcmp(ctrl_names[i].name, "blkio") == 0)
                        continue;
                if (n < size)
                        n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? " " : "",
                                              ctrl_names[i].name);
        }
}

int sh_cg_swap_v2(long long memory, long long memsw, char *ret, size_t size, struct sh_error *err)
{
        if (size)
                ret[0] = '\0';
        if (memsw == 0)
                return 0;
        if (memsw < 0) {
                snprintf(ret, size, "max");
                return 0;
        }
        if (memory <= 0)
                return sh_err(err, -EINVAL,
                              "memory_swap_limit_in_bytes %lld needs memory_limit_in_bytes too "
                              "(cgroup v2 limits swap apart from memory)",
                              memsw);
        if (memsw < memory)
                return sh_err(err, -EINVAL,
                              "memory_swap_limit_in_bytes %lld is below memory_limit_in_bytes %lld "
                              "(it counts memory and swap together)",
                              memsw, memory);
        snprintf(ret, size, "%lld", memsw - memory);
        return 0;
}

#define ITEM(file, value)                                                                          \
        do {                                                                                       \
                r = fn(data, file, value, err);                                                    \
                if (r < 0)                                                                         \
                        return r;                                                                  \
        } while (0)

static int items_v1(const struct sh_cg_host *h, const struct sh_cg_limits *l,
                    int (*fn)(void *, const char *, const char *, struct sh_error *), void *data,
                    struct sh_error *err)
{
        char v[64];
        int r;

        if (l->cpu_shares > 0 && (h->controllers & SH_CG_CPU)) {
                snprintf(v, sizeof(v), "%lld", l->cpu_shares < 2 ? 2 : l->cpu_shares);
                ITEM("cpu.shares", v);
        }
        if (l->cpu_period > 0 && (h->controllers & SH_CG_CPU)) {
                snprintf(v, sizeof(v), "%lld", l->cpu_period);
                ITEM("cpu.cfs_period_us", v);
        }
        if (l->cpu_quota != 0 && (h->controllers & SH_CG_CPU)) {
                snprintf(v, sizeof(v), "%lld", l->cpu_quota < 0 ? -1 : l->cpu_quota);
                ITEM("cpu.cfs_quota_us", v);
        }
        if (l->memory > 0 && (h->controllers & SH_CG_MEMORY)) {
                snprintf(v, sizeof(v), "%lld", l->memory);
                ITEM("memory.limit_in_bytes", v);
        }
        if (l->memory_swap > 0 && h->swap) {
                snprintf(v, sizeof(v), "%lld", l->memory_swap);
                ITEM("memory.memsw.limit_in_bytes", v);
        }
        for (size_t i = 0; i < l->n_hugepages && (h->controllers & SH_CG_HUGETLB); i++) {
                _cleanup_free_ char *f =
                        sh_strdup_printf("hugetlb.%s.limit_in_bytes", l->hugepage_sizes[i]);

                if (!f)
                        return -ENOMEM;
                ITEM(f, l->hugepage_limits[i]);
        }
        return 0;
}

static int items_v2(const struct sh_cg_host *h, const struct sh_cg_limits *l,
                    int (*fn)(void *, const char *, const char *, struct sh_error *), void *data,
                    struct sh_error *err)
{
        char v[64];
        int r;

        if (l->cpu_shares > 0 && (h->controllers & SH_CG_CPU)) {
                snprintf(v, sizeof(v), "%llu",
                         (unsigned long long)sh_cg_shares_to_weight((uint64_t)l->cpu_shares));
                ITEM("cpu.weight", v);
        }
        if ((l->cpu_quota != 0 || l->cpu_period > 0) && (h->controllers & SH_CG_CPU)) {
                char q[24] = "max";

                /* One file for both; a period alone lifts the quota, as with runc. */
                if (l->cpu_quota > 0)
                        snprintf(q, sizeof(q), "%lld", l->cpu_quota);
                if (l->cpu_period > 0)
                        snprintf(v, sizeof(v), "%s %lld", q, l->cpu_period);
                else
                        snprintf(v, sizeof(v), "%s", q);
                ITEM("cpu.max", v);
        }
        if (l->memory != 0 && (h->controllers & SH_CG_MEMORY)) {
                if (l->memory < 0)
                        snprintf(v, sizeof(v), "max");
                else
                        snprintf(v, sizeof(v), "%lld", l->memory);
                ITEM("memory.max", v);
        }
        if (l->memory_swap != 0 && (h->controllers & SH_CG_MEMORY)) {
                r = sh_cg_swap_v2(l->memory, l->memory_swap, v, sizeof(v), err);
                if (r < 0)
                        return r;
                if (v[0] && h->swap)
                        ITEM("memory.swap.max", v);
        }
        for (size_t i = 0; i < l->n_hugepages && (h->controllers & SH_CG_HUGETLB); i++) {
                _cleanup_free_ char *f = sh_strdup_printf("hugetlb.%s.max", l->hugepage_sizes[i]);

                if (!f)
                        return -ENOMEM;
                ITEM(f, l->hugepage_limits[i]);
        }
        return 0;
}

int sh_cg_limit_items(const struct sh_cg_host *host, const struct sh_cg_limits *l,
                      int (*fn)(void *data, const char *file, const char *value,
                                struct sh_error *err),
                      void *data, struct sh_error *err)
{
        char v[32];
        int r;

        switch (host->version) {
        case SH_CG_V1:
                r = items_v1(host, l, fn, data, err);
                break;
        case SH_CG_V2:
                r = items_v2(host, l, fn, data, err);
                break;
        case SH_CG_NONE:
        default:
                return 0;
        }
        if (r < 0)
                return r;
        /* The cpuset files have the same names on both; v2's take effect in the cgroup only. */
        if (l->cpuset_cpus && l->cpuset_cpus[0] && (host->controllers & SH_CG_CPUSET))
                ITEM("cpuset.cpus", l->cpuset_cpus);
        if (l->cpuset_mems && l->cpuset_mems[0] && (host->controllers & SH_CG_CPUSET))
                ITEM("cpuset.mems", l->cpuset_mems);
        if (l->pids_max > 0 && (host->controllers & SH_CG_PIDS)) {
                snprintf(v, sizeof(v), "%llu", l->pids_max);
                ITEM("pids.max", v);
        }
        return 0;
}

char *sh_cg_dir_for(const struct sh_cg_host *host, const char *rel, const char *file)
{
        const char *dot = strchr(file, '.');

        while (*rel == '/')
                rel++;
        if (!dot || dot == file)
                return NULL;
        if (host->version == SH_CG_V2)
                return sh_strdup_printf("%s/%s", host->root, rel);
        return sh_strdup_printf("%s/%.*s/%s", host->root, (int)(dot - file), file, rel);
}
