#pragma once

#include <stdbool.h>

#include "netmgr.h"

/* The run dir netns mounts go below (borrowed). */
const char *net_mgr_run_dir(struct net_mgr *nm);
/* Is @path a live network namespace (an nsfs mount a plugin can enter)? */
bool net_netns_live(const char *path);
/* <run_dir>/netns/<id>, malloc'd. */
char *net_netns_path(struct net_mgr *nm, const char *id);
/* The configuration it was made with (borrowed). */
const struct runt_config *net_mgr_config(struct net_mgr *nm);
/* <state_dir>/cni: one <pod id>.json per pod with networking set up. */
const char *net_mgr_cache_dir(struct net_mgr *nm);
/* Adds @ns to the plugin time counter (net_mgr_plugin_ns). */
void net_mgr_count_plugin(struct net_mgr *nm, unsigned long long ns);
