#pragma once

#include <netinet/in.h>
#include <stddef.h>

#include "cleanup.h"
#include "error.h"

/*
 * Pod IPs of the Proxmox backend: runt hands them out itself from a configured range, with
 * the semantics of CNI's host-local plugin, and PVE gets them as a static net0 (a CT on a
 * remote node has no CNI to ask).
 *
 * A range lives in <state_dir>/proxmox/ipam/<name>/ (0700):
 *
 *      lock                the flock(2) every read-modify-write holds (LOCK_EX; readers LOCK_SH)
 *      <ip>                one file per lease, named by the address ("10.0.0.5", "fd00::5"),
 *                          holding "<owner>\n<ifname>\n"; host-local's "\r\n" is read too
 *      last_reserved_ip    the address handed out last; the next search starts after it
 *      .lease.tmp          a lease being written (only under the lock; a crash may leave one)
 *
 * A lease file is written whole and fsynced under a temp name, then link(2)ed to its address:
 * link is atomic and fails if the name exists, so a crash leaves the lease complete or not at
 * all, and no two owners can hold one address even if a lock were lost. Safe across threads
 * (any number of handles, or one shared) and across processes.
 *
 * Allocation is host-local's round-robin: from last_reserved_ip + 1 to the range end, then
 * from the range start, skipping the gateway and every leased address. A released address is
 * not handed out again until the search wraps around to it.
 */

#define PVE_IPAM_NAME_MAX   64
#define PVE_IPAM_OWNER_MAX  128
#define PVE_IPAM_IFNAME_MAX 15

struct pve_ipam_config {
        const char *name;        /* the range's directory: [A-Za-z0-9_.-], not starting with '.' */
        const char *subnet;      /* "10.0.0.0/24" or "fd00::/64", host bits zero */
        const char *range_start; /* NULL: the subnet's first host (network + 1) */
        const char *range_end;   /* NULL: its last host (broadcast - 1; IPv6: the last address) */
        const char *gateway;     /* NULL: network + 1, as host-local; never handed out */
};

struct pve_ipam_lease {
        int family;                           /* AF_INET or AF_INET6 */
        char ip[INET6_ADDRSTRLEN];            /* canonical text, the lease file's name */
        unsigned prefix;                      /* of the range's subnet; 0 if outside it (below) */
        char gateway[INET6_ADDRSTRLEN];       /* the range's; "" if outside its subnet */
        char owner[PVE_IPAM_OWNER_MAX + 1];   /* the pod (sandbox) id */
        char ifname[PVE_IPAM_IFNAME_MAX + 1]; /* "eth0" */
};

/* One range, opened. Immutable once open: share it between threads freely. */
struct pve_ipam;

/*
 * Checks @cfg and opens (creating it if missing) the range's directory under @state_dir.
 * Refused with -EINVAL and a message naming the range and the value: a bad name, an address
 * that does not parse, a subnet with host bits set or too small for any pod (an IPv4 /31 or
 * /32, IPv6 /127 or /128), a gateway or range bound outside the subnet (or on its network or
 * broadcast address), start after end, families mixed, a range holding nothing but the
 * gateway. Leases already on disk are kept, even outside a changed range. 0 or -errno.
 */
int pve_ipam_open(const char *state_dir, const struct pve_ipam_config *cfg, struct pve_ipam **ret,
                  struct sh_error *err);

/* Closes @r (NULL is fine); leases stay on disk. Returns NULL. */
struct pve_ipam *pve_ipam_free(struct pve_ipam *r);
SH_DEFINE_CLEANUP(struct pve_ipam *, pve_ipam_free)

/* The range's directory (owned by @r). */
const char *pve_ipam_dir(const struct pve_ipam *r);

/*
 * Leases an address to @owner (printable ASCII without spaces, at most PVE_IPAM_OWNER_MAX)
 * for interface @ifname ([A-Za-z0-9_.-], at most 15). An owner holds at most one lease per
 * range: when it already holds one for @ifname, that lease is returned (so a retry after a
 * crash gets the address the first try took; host-local would refuse); for another ifname,
 * or outside the current subnet, -EEXIST. -ENOSPC when every address is leased, with a
 * message naming the range. Blocks on the range's lock and fsyncs.
 */
int pve_ipam_alloc(struct pve_ipam *r, const char *owner, const char *ifname,
                   struct pve_ipam_lease *ret, struct sh_error *err);

/*
 * Releases every lease of @owner in the range. Idempotent: an owner with none is 0.
 * last_reserved_ip is left as it is (host-local's order). Blocks on the lock; 0 or -errno.
 */
int pve_ipam_release(struct pve_ipam *r, const char *owner, struct sh_error *err);

/* The lease of @owner (as after a runtd restart). -ENOENT if it holds none. */
int pve_ipam_get(struct pve_ipam *r, const char *owner, struct pve_ipam_lease *ret,
                 struct sh_error *err);

/*
 * Every lease in the range's directory, in address order, for reconciling leases whose pod
 * is gone: *@ret is a malloc'd array of *@ret_n (NULL and 0 when none), the caller frees it.
 * A file named by an address whose content is not "<owner>\n<ifname>" is not listed (and its
 * address never handed out). 0 or -errno.
 */
int pve_ipam_list(struct pve_ipam *r, struct pve_ipam_lease **ret, size_t *ret_n,
                  struct sh_error *err);

/* "XX:XX:XX:XX:XX:XX" and the NUL. */
#define PVE_IPAM_MAC_LEN 18

/*
 * The MAC of @pod_id's interface: the first 6 bytes of SHA-256(@pod_id) with the locally
 * administered bit set and the multicast bit clear (PVE refuses a non-unicast hwaddr), upper
 * case as PVE writes it. The same pod id always gives the same MAC.
 */
void pve_ipam_mac(const char *pod_id, char out[PVE_IPAM_MAC_LEN]);

/*
 * PVE's net0 value for a pod (notes §2, create parameter net[n]) from its IPv4 lease @v4
 * and/or IPv6 lease @v6 (either may be NULL, not both; with both, on the same ifname):
 *
 *      name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1[,ip6=fd00::5/64,gw6=fd00::1],
 *      hwaddr=02:..,firewall=0,host-managed=1
 *
 * host-managed=1 makes PVE (LXC) put the address and route on the interface, since the pod
 * image has no network manager; pve-container's OCI create would set it anyway for an
 * entrypoint other than /sbin/init, but only when the CT is created with the net, not when
 * it is added later. The length written, or -EINVAL (no lease, a lease outside its subnet, a
 * bad @bridge or @pod_id, families wrong), -ENOSPC (@size too small).
 */
int pve_ipam_net0(const struct pve_ipam_lease *v4, const struct pve_ipam_lease *v6,
                  const char *bridge, const char *pod_id, char *buf, size_t size,
                  struct sh_error *err);
