#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*
 * What the Proxmox VE client authenticates with (../shared/notes/proxmox-api.md §1): an API
 * token from a file of its own, and the cluster's certificate pinned by SHA-256 fingerprint.
 */

/*
 * Reads the API token file @path: one line `USER@REALM!TOKENID=SECRET` (a trailing newline
 * is fine). The file must be a regular file (not followed through a symlink) owned by root
 * or by runtd's user, readable by its owner only (0600 or 0400). *@ret: the value of the
 * Authorization header, "PVEAPIToken=USER@REALM!TOKENID=SECRET", malloc'd; the caller
 * wipes and frees it. Errors name the file and what is wrong with it, never its content:
 * -ENOENT, -EPERM (mode or owner), -EINVAL (format), -EFBIG.
 */
int pve_token_load(const char *path, char **ret, struct sh_error *err);

/*
 * A SHA-256 certificate fingerprint as PVE shows it ("AB:CD:..." 32 colon-separated bytes)
 * or as 64 hex digits, either case, into @out. 0 or -EINVAL.
 */
int pve_fingerprint_parse(const char *s, uint8_t out[32]);
