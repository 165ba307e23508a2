#pragma once

#include "be.h"

/* The built-in backends; be.c lists them in be_registry. */
extern const struct be_ops be_lxc_ops;
extern const struct be_ops be_fake_ops;
extern const struct be_ops be_microvm_ops;
extern const struct be_ops be_proxmox_ops;
