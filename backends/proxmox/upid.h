#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * Proxmox VE task ids (UPIDs), as pve-common's PVE::UPID writes and reads them
 * (../shared/notes/proxmox-api.md, "Tasks"):
 *
 *      UPID:<node>:<pid %08X>:<pstart %08X, 8 or 9 digits>:<starttime %08X>:<type>:<id>:<user>:
 *
 * <node> is a DNS label (letters, digits, '-' inside); <type> and <user> are non-empty and
 * <id> may be empty; none of the three holds ':', '/' or whitespace. Hex is read in either
 * case and written upper case. <user> is the token id ("root@pam!ci") for a token's task.
 * Module prefix: pve_.
 */

#define PVE_UPID_MAX 512

struct pve_upid {
        char node[64];
        uint32_t pid;
        uint64_t pstart; /* up to 9 hex digits */
        uint32_t starttime;
        char type[64];
        char id[128];
        char user[128];
};

/* Parses @s. 0, or -EINVAL for anything PVE's own decoder refuses (or a field too long). */
int pve_upid_parse(const char *s, struct pve_upid *ret);

/* Writes @u into @buf. The length written, or -EINVAL (a field PVE would refuse), -ENOSPC. */
int pve_upid_format(const struct pve_upid *u, char *buf, size_t size);

/*
 * A stopped task's exitstatus: PVE counts "OK" and "WARNINGS: <n>" as success, anything else
 * (the error text) as failure. 1 for a failure, 0 for success.
 */
int pve_task_failed(const char *exitstatus);

/* The value of hex digit @c (either case), or -1. */
int pve_hexval(char c);
