#include "netmgr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct net_mgr {
        const struct runt_config *cfg;
};

int net_mgr_new(const struct runt_config *cfg, struct net_mgr **ret, struct sh_error *err)
{
        struct net_mgr *nm = calloc(1, sizeof(*nm));

        (void)err;
        if (!nm)
                return -ENOMEM;
        nm->cfg = cfg;
        *ret = nm;
        return 0;
}

struct net_mgr *net_mgr_free(struct net_mgr *nm)
{
        free(nm);
        return NULL;
}

void net_mgr_condition(struct net_mgr *nm, struct sh_condition *ret)
{
        struct net_conf c;
        struct sh_error err = {0};

        memset(ret, 0, sizeof(*ret));
        if (net_conf_load(nm->cfg->cni_conf_dir, nm->cfg->cni_bin_dirs, &c, &err) == 0) {
                ret->ok = true;
                net_conf_done(&c);
                return;
        }
        snprintf(ret->reason, sizeof(ret->reason), "NetworkPluginNotReady");
        snprintf(ret->message, sizeof(ret->message), "cni config not ready: %s", err.msg);
}

char *net_mgr_info_json(struct net_mgr *nm)
{
        json_object *o = json_object_new_object();
        json_object *bins = json_object_new_array();
        struct net_conf c;
        struct sh_error err = {0};
        char *s;

        json_object_object_add(o, "confDir", json_object_new_string(nm->cfg->cni_conf_dir));
        for (size_t i = 0; nm->cfg->cni_bin_dirs && nm->cfg->cni_bin_dirs[i]; i++)
                json_object_array_add(bins, json_object_new_string(nm->cfg->cni_bin_dirs[i]));
        json_object_object_add(o, "binDirs", bins);
        if (net_conf_load(nm->cfg->cni_conf_dir, nm->cfg->cni_bin_dirs, &c, &err) == 0) {
                json_object_object_add(o, "configFile", json_object_new_string(c.path));
                json_object_object_add(o, "network", json_object_new_string(c.name));
                json_object_object_add(o, "config", json_object_get(c.list));
                net_conf_done(&c);
        } else {
                json_object_object_add(o, "error", json_object_new_string(err.msg));
        }
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}
