#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*
 * seccomp policies for liblxc: the text of an `lxc.seccomp.profile` file, version 2
 * (grammar and liblxc's handling of it: see the comment at the top of seccomp.c).
 * Pure string work: nothing here touches liblxc, libseccomp or the filesystem.
 */

/* Largest OCI profile lxc_seccomp_from_oci() reads, in bytes. */
#define LXC_SECCOMP_PROFILE_MAX (1024 * 1024)
/* Most rules (syscall name x argument set) an OCI profile may hold. */
#define LXC_SECCOMP_RULES_MAX 4096

/*
 * runt's RuntimeDefault policy for a container holding the capabilities @caps (bit n is
 * capability n of <linux/capability.h>): Docker's default profile with its per-capability
 * rules, as an LXC denylist returning EPERM. Malloc'd into @ret (caller frees); -ENOMEM.
 */
int lxc_seccomp_runtime_default(uint64_t caps, char **ret);

/*
 * Converts the OCI/Docker JSON seccomp profile in @json (@len bytes, a Kubernetes Localhost
 * profile) into LXC policy text, malloc'd into @ret (caller frees). A default action of
 * SCMP_ACT_ALLOW (or SCMP_ACT_LOG) gives a denylist of the other rules, any other an
 * allowlist with that default action (with a kill or trap default and no umount2 rule,
 * umount2 also gets EPERM, for liblxc's init). Errors: -EINVAL for malformed JSON or a field with a
 * wrong type or value (the message names the field), -EOPNOTSUPP for SCMP_ACT_NOTIFY and
 * SCMP_ACT_TRACE, which liblxc cannot express, -EFBIG above LXC_SECCOMP_PROFILE_MAX bytes,
 * -E2BIG above LXC_SECCOMP_RULES_MAX rules, -ENOMEM. @ret is untouched on error.
 */
int lxc_seccomp_from_oci(const char *json, size_t len, char **ret, struct sh_error *err);
