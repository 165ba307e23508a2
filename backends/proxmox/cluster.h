#pragma once

#include <stdint.h>

#include "client.h"
#include "error.h"

/*
 * What the Proxmox VE backend asks of a cluster beyond single calls
 * (../shared/notes/proxmox-api.md §2): waiting for tasks, choosing a node, choosing a vmid.
 * Thread-safe as client.h is; every function here blocks on API calls.
 */

/*
 * Waits for the task @upid: polls GET /nodes/<the UPID's node>/tasks/<upid>/status until it
 * is stopped or @timeout_ms have passed. The first look comes when the last task of the
 * same type that ended OK was seen done (50 ms for a type not seen yet, 1/8 earlier after a
 * task that had ended by the first look; between 50 ms and 1 s: pve_task_hint), so a task
 * as long as the last one costs one look; a task still running then is looked at again after
 * half that wait (25 ms at least; 100 ms for a new type), then doubling up to 1 s.
 * 0 when it ended OK or with WARNINGS. A failed task: its exit status and the last lines of
 * its log (GET .../log) in @err, with -EEXIST ("already exists"), -ENOENT ("does not exist",
 * "can't find file"), -EBUSY ("is locked", "can't lock file") or else -EIO. Still running at
 * @timeout_ms: the task is stopped (DELETE .../tasks/<upid>) and -ETIMEDOUT. A malformed
 * @upid is -EINVAL; the status calls' own errors are returned as they are.
 */
int pve_task_wait(struct pve_client *c, const char *upid, unsigned timeout_ms,
                  struct sh_error *err);

/*
 * The node for a new pod, from GET /cluster/resources?type=node: online, not marked
 * unavailable (pve_node_available), in @allowed when that is not NULL (a NULL-terminated
 * list), with the most free memory (maxmem - mem; ties go to the first name in order).
 * *@ret_node malloc'd. -EHOSTUNREACH when no node qualifies (the message says why each was
 * left out), the call's errors otherwise.
 */
int pve_node_pick(struct pve_client *c, const char *const *allowed, char **ret_node,
                  struct sh_error *err);

/* GET /cluster/nextid: a free vmid (PVE sends a JSON string; a number is read too). */
int pve_nextid(struct pve_client *c, uint32_t *ret_vmid, struct sh_error *err);

/*
 * Creates something under a new vmid: runs @create with pve_nextid's id and, while it fails
 * because that id was taken meanwhile (PVE's 500 "CT <id> already exists on node '<n>'",
 * or -EEXIST), again with a fresh id, up to @attempts times (0: 5). *@ret_vmid: the id it
 * succeeded with. @create's other errors are returned as they are; -EEXIST when every
 * attempt collided.
 */
typedef int (*pve_create_fn)(struct pve_client *c, uint32_t vmid, void *userdata,
                             struct sh_error *err);
int pve_create_with_nextid(struct pve_client *c, unsigned attempts, pve_create_fn create,
                           void *userdata, uint32_t *ret_vmid, struct sh_error *err);
