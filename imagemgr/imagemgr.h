#pragma once

#include "config.h"
#include "error.h"
#include "fsusage.h"

/*
 * Images: pulls with skopeo into a content-addressed layer store under
 * <root_dir>/layers, image records in the state store. Thread-safe.
 */
struct img_mgr;

/* Creates the layer store directories. Borrows @cfg. */
int img_mgr_new(const struct runt_config *cfg, struct img_mgr **ret, struct sh_error *err);
struct img_mgr *img_mgr_free(struct img_mgr *im);

/* The layer store's directory (borrowed). */
const char *img_mgr_layers_dir(struct img_mgr *im);

/* Bytes and inodes the layer store uses now. Walks the store: blocks, call off the CQ thread. */
int img_mgr_fs_usage(struct img_mgr *im, struct sh_fs_usage *ret, struct sh_error *err);
