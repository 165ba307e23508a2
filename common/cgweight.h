#pragma once

/*
 * CRI/OCI cpu_shares as cgroup v2 cpu.weight: libc and libm only, so that runt-agent (static,
 * in a microVM guest or a Proxmox CT) converts as runtd does.
 */

#include <stdint.h>

/*
 * CRI/OCI cpu_shares (v1 cpu.shares, 2 to 262144, 1024 the default) as v2 cpu.weight (1 to
 * 10000, 100 the default), the conversion runc 1.3.2 and crun 1.23 use: a quadratic in
 * log2(shares) through (2, 1), (1024, 100) and (262144, 10000), rounded up. 0 stays 0
 * (unset); below 2 is 1, above 262144 is 10000.
 */
uint64_t sh_cg_shares_to_weight(uint64_t shares);
