#pragma once

#include "error.h"

/*
 * The pod image: the OCI image every Proxmox pod CT is created from. It holds runt-agent as
 * /sbin/runt-agent (the entrypoint, "--ct") and the empty directories a CT needs; PVE 9.1+
 * unpacks it into the CT's rootfs (../shared/notes/proxmox-api.md §2 "OCI images", §6).
 *
 * The archive is a plain tar of an OCI image layout (oci-layout, index.json, blobs/sha256/),
 * which is what pve-container's archive_is_oci_format looks for in a ".tar" volume, with one
 * gzip layer. It is reproducible: the same agent gives the same bytes (mtimes 0, owner 0:0,
 * sorted entries, a fixed gzip header), so every runtd names and builds it alike.
 *
 * No /etc/os-release on purpose: pve-container's OS detection dies on an os-release with an
 * unknown ID, and without one falls back to ostype "unmanaged" (with a warning unless the
 * create call passes ostype=unmanaged). An unmanaged CT gets no /etc/hostname, /etc/hosts or
 * /etc/resolv.conf from PVE, so the image carries placeholders for the pod to replace.
 */

/* Bumped whenever the archive's content or layout changes: it is part of the name's hash. */
#define PVE_PODIMAGE_FORMAT "runt-podimage-1"

/* Where runt-agent lives in the CT, and its argv. */
#define PVE_PODIMAGE_AGENT "/sbin/runt-agent"

/* "runt-pod-" + 16 hex digits + ".tar" and the NUL. */
#define PVE_PODIMAGE_NAME_MAX 32

/*
 * The name of the pod image built from the agent binary @agent_path, without building it:
 * "runt-pod-<16 hex>.tar", the first 16 hex digits of SHA-256(PVE_PODIMAGE_FORMAT, NUL,
 * agent bytes). Only [A-Za-z0-9_.-], so it is the file name PVE keeps in the storage's vztmpl
 * content ("<storage>:vztmpl/<name>"). 0, or -errno (reading the agent) with a message.
 */
int pve_podimage_name(const char *agent_path, char ret_name[PVE_PODIMAGE_NAME_MAX],
                      struct sh_error *err);

/*
 * Builds the pod image for the agent binary @agent_path as @cache_dir/<name> (the dir is
 * created 0700 if missing), or reuses the file already there. Written whole to a temp file,
 * fsynced, renamed: a reader or a concurrent builder never sees a partial archive, and two
 * builders write the same bytes. *@ret_path (the archive's path) and *@ret_name (its file
 * name, may be NULL) are malloc'd, the caller frees them. Blocks on file I/O; reads and
 * compresses the agent (a few MB) on a build. -ENOENT (no agent), -EINVAL (empty agent or a
 * bad argument), -EEXIST (something other than a regular file has the name), -EFBIG, -errno.
 */
int pve_podimage_build(const char *agent_path, const char *cache_dir, char **ret_path,
                       char **ret_name, struct sh_error *err);
