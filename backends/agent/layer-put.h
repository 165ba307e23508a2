#pragma once

#include "client.h"
#include "error.h"

/*
 * Image layers to a pod agent over its channel (proto.h, IMAGE LAYERS), for a box that
 * shares no file system with runtd's layer store (a Proxmox CT). Module prefix: ag_.
 */

/*
 * Makes the agent @c talks to hold layer @chain_id ("sha256:<hex>" or "<hex>") with the
 * tree of layer store directory @dir: LAYER_HAS, then, when it is missing there, LAYER_PUT
 * of @dir, walked by directory fd (any depth), no symlink followed, the inodes with more
 * than one name sent once and then as hard links, whiteouts and xattrs as they are on disk.
 * Blocks for the transfer (paced by the agent's credit) and while another PUT of the layer
 * runs on the connection, as long as the agent makes progress or answers PINGs (-ETIMEDOUT
 * after AG_LAYER_STALL_MS without: the stream abandoned). 0 (also when it was there), or -errno:
 * the agent's refusal with its message (-EPROTO, -EINVAL, -EPERM, -EFBIG, -ENOSPC, ...; anything
 * else -EIO), -ECONNRESET when the connection went before the end, or the walk's error naming the
 * entry. Nothing is left in the agent on failure. Any thread but the client's I/O thread.
 */
/* How long a transfer may make no progress, by default: see ag_layer_put. */
#define AG_LAYER_STALL_MS 60000u

/*
 * Sets that (0: the default) for every later ag_layer_put of the process: no byte taken by
 * the agent (no credit granted), no verdict once everything was taken, no answer to the PUT
 * nor to a PING while it waits behind another PUT of the layer, for @ms, abandons the stream
 * with -ETIMEDOUT.
 */
void ag_layer_put_set_stall_ms(unsigned ms);
/* What it is now. */
unsigned ag_layer_put_stall_ms(void);

int ag_layer_put(struct ag_client *c, const char *chain_id, const char *dir, struct sh_error *err);

/*
 * ag_layer_put of each layer of an image, base first: @chain_ids and @dirs NULL-terminated
 * and in step. 0 and *@ret_lowers (NULL-terminated, malloc'd, the caller's): the agent's
 * directories of those layers, base first, as CTR_CREATE's LOWER takes them. Stops at the
 * first failure (the layers put before stay: they are complete).
 */
int ag_layers_put(struct ag_client *c, const char *const *chain_ids, const char *const *dirs,
                  char ***ret_lowers, struct sh_error *err);
