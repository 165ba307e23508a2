/*
 * Proxmox VE task ids (see upid.h). The rules are PVE::UPID's decoder regex, written out:
 *   ^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):
 *   ([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$
 */
#include "upid.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int pve_hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static bool is_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A node name: a DNS label. */
static bool node_ok(const char *s, size_t n)
{
        if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_alnum(s[i]) && s[i] != '-')
                        return false;
        return true;
}

/* A type, id or user: no ':', '/' nor whitespace (Perl's \s: space, \t, \n, \v, \f, \r). */
static bool free_ok(const char *s, size_t n, bool may_be_empty)
{
        if (n == 0)
                return may_be_empty;
        for (size_t i = 0; i < n; i++)
                if (s[i] == ':' || s[i] == '/' || strchr(" \t\n\v\f\r", s[i]))
                        return false;
        return true;
}

/* @n hex digits (@min..@max of them) from @s into *@ret. */
static bool hex_ok(const char *s, size_t n, size_t min, size_t max, uint64_t *ret)
{
        uint64_t v = 0;

        if (n < min || n > max)
                return false;
        for (size_t i = 0; i < n; i++) {
                int d = pve_hexval(s[i]);

                if (d < 0)
                        return false;
                v = v << 4 | (uint64_t)d;
        }
        *ret = v;
        return true;
}

static bool copy_field(char *dst, size_t size, const char *s, size_t n)
{
        if (n >= size)
                return false;
        memcpy(dst, s, n);
        dst[n] = 0;
        return true;
}

int pve_upid_parse(const char *s, struct pve_upid *ret)
{
        const char *f[7];
        size_t len[7], k = 0;
        struct pve_upid u = {0};
        uint64_t v;
        const char *p;

        if (!s || strncmp(s, "UPID:", 5) != 0)
                return -EINVAL;
        /* Seven fields after "UPID:", each ended by ':', and nothing after the last ':'. */
        p = s + 5;
        for (k = 0; k < 7; k++) {
                const char *colon = strchr(p, ':');

                if (!colon)
                        return -EINVAL;
                f[k] = p;
                len[k] = (size_t)(colon - p);
                p = colon + 1;
        }
        if (*p)
                return -EINVAL;
        if (!node_ok(f[0], len[0]) || !copy_field(u.node, sizeof(u.node), f[0], len[0]))
                return -EINVAL;
        if (!hex_ok(f[1], len[1], 8, 8, &v))
                return -EINVAL;
        u.pid = (uint32_t)v;
        if (!hex_ok(f[2], len[2], 8, 9, &u.pstart))
                return -EINVAL;
        if (!hex_ok(f[3], len[3], 8, 8, &v))
                return -EINVAL;
        u.starttime = (uint32_t)v;
        if (!free_ok(f[4], len[4], false) || !copy_field(u.type, sizeof(u.type), f[4], len[4]) ||
            !free_ok(f[5], len[5], true) || !copy_field(u.id, sizeof(u.id), f[5], len[5]) ||
            !free_ok(f[6], len[6], false) || !copy_field(u.user, sizeof(u.user), f[6], len[6]))
                return -EINVAL;
        *ret = u;
        return 0;
}

int pve_upid_format(const struct pve_upid *u, char *buf, size_t size)
{
        int n;

        if (!node_ok(u->node, strlen(u->node)) || !free_ok(u->type, strlen(u->type), false) ||
            !free_ok(u->id, strlen(u->id), true) || !free_ok(u->user, strlen(u->user), false) ||
            u->pstart > 0xfffffffffULL)
                return -EINVAL;
        n = snprintf(buf, size, "UPID:%s:%08X:%08llX:%08X:%s:%s:%s:", u->node, u->pid,
                     (unsigned long long)u->pstart, u->starttime, u->type, u->id, u->user);
        if (n < 0)
                return -EINVAL;
        return (size_t)n < size ? n : -ENOSPC;
}

int pve_task_failed(const char *exitstatus)
{
        if (!exitstatus)
                return 1;
        if (strcmp(exitstatus, "OK") == 0)
                return 0;
        return strncmp(exitstatus, "WARNINGS: ", 10) == 0 ? 0 : 1;
}
