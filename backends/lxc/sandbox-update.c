/*
 * Pod-level limits (CRI UpdatePodSandboxResources) for the LXC backend.
 *
 * A pod's containers and its pause container live at <cgroup_parent>/<id> on every
 * hierarchy (lb_cgroup_dir), so the pod's own cgroup is the cgroup_parent the kubelet gave
 * (kubepods/<qos>/pod<uid>): the limits go there, written by the same writer as
 * UpdateContainerResources. A pod created without a cgroup_parent shares runt's base cgroup
 * with every other such pod: it has no cgroup of its own, and that is -EOPNOTSUPP rather
 * than limits set on all of them.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "lxc-internal.h"

int lb_sandbox_update(struct be *be, const char *id, const struct be_resources *res,
                      struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_lxc_ struct lxc_container *c = NULL;
        char cg[PATH_MAX] = "";
        char *slash;
        int n;

        if (lb_look(lb, id, &c) < 0 || !c->is_defined(c))
                return sh_err(err, -ENOENT, "no LXC container for sandbox %.12s", id);
        n = c->get_config_item(c, "lxc.cgroup.dir.container", cg, sizeof(cg));
        if (n <= 0 || (size_t)n >= sizeof(cg))
                return sh_err(err, -EIO, "sandbox %.12s has no cgroup dir", id);
        /* "<parent>/<id>": the parent is the pod's cgroup. */
        slash = strrchr(cg, '/');
        if (!slash || strcmp(slash + 1, id) != 0)
                return sh_err(err, -EIO, "sandbox %.12s: unexpected cgroup dir '%s'", id, cg);
        *slash = '\0';
        if (strcmp(cg, lb->cgroup_base) == 0)
                return sh_err(err, -EOPNOTSUPP,
                              "sandbox %.12s has no cgroup of its own to limit: it was created "
                              "without linux.cgroup_parent, so it shares '%s' with other pods",
                              id, cg);
        return lb_cgroup_write_limits(lb, cg, res, err);
}
