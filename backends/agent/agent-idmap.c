/*
 * runt-agent: the user namespace the agent runs in. An unprivileged Proxmox CT maps only
 * part of the ids (PVE's default: 0-65535 inside to 100000-165535 on the node). There the
 * agent cannot make device nodes nor set trusted.* xattrs, overlay keeps its marks in user.*
 * (the userxattr mount option), and a chown to an id outside the map fails (EINVAL): the
 * layer writer gives such a file the overflow id, which is what the kernel shows for an
 * unmapped owner anyway.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent.h"

#define IDMAP_MAX 32 /* ranges the kernel accepts in one map (5.10+: 340; 32 is plenty here) */

struct idrange {
        uint32_t first, count; /* count: the ids after first (the map's count - 1) */
};

static struct idmap {
        struct idrange r[IDMAP_MAX];
        size_t n;
        uint32_t overflow;
} maps[2];

/* Reads /proc/self/{uid,gid}_map; false when it cannot be read (no /proc: nothing known). */
static bool idmap_read(struct idmap *m, const char *path, const char *overflow)
{
        FILE *f = fopen(path, "re");
        unsigned long long in, out, count;
        char buf[32];

        m->n = 0;
        m->overflow = 65534;
        if (!f)
                return false;
        while (m->n < IDMAP_MAX && fscanf(f, "%llu %llu %llu", &in, &out, &count) == 3)
                if (count && in <= UINT32_MAX && count <= (unsigned long long)UINT32_MAX + 1 - in)
                        m->r[m->n++] = (struct idrange){(uint32_t)in, (uint32_t)(count - 1)};
        fclose(f);
        f = fopen(overflow, "re");
        if (f) {
                if (fgets(buf, sizeof(buf), f))
                        m->overflow = (uint32_t)strtoul(buf, NULL, 10);
                fclose(f);
        }
        return true;
}

/* The initial namespace's map: "0 0 4294967295" (every id but (uid_t)-1). */
static bool idmap_full(const struct idmap *m)
{
        return m->n == 1 && m->r[0].first == 0 && m->r[0].count >= UINT32_MAX - 1;
}

void agent_idmap_init(void)
{
        bool u = idmap_read(&maps[0], "/proc/self/uid_map", "/proc/sys/kernel/overflowuid");
        bool g = idmap_read(&maps[1], "/proc/self/gid_map", "/proc/sys/kernel/overflowgid");

        agent_cfg.userns = (u && !idmap_full(&maps[0])) || (g && !idmap_full(&maps[1]));
        if (agent_cfg.userns)
                agent_log("in a user namespace that maps %zu uid and %zu gid range(s): devices "
                          "by bind mount, overlay with userxattr",
                          maps[0].n, maps[1].n);
}

uint32_t agent_map_id(bool gid, uint32_t id)
{
        const struct idmap *m = &maps[gid ? 1 : 0];

        if (!agent_cfg.userns)
                return id;
        for (size_t i = 0; i < m->n; i++)
                if (id >= m->r[i].first && id - m->r[i].first <= m->r[i].count)
                        return id;
        return m->overflow;
}
