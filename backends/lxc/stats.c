/*
 * Stats of LXC containers and pods: their cgroups (common/cgstats.c reads v1 and v2), their
 * writable layers, and the pod's network namespace. Only the stats collector
 * (podmgr/stats.c) calls these; the RPCs read its samples.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "lxc-internal.h"
#include "strutil.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

/* CLOCK_REALTIME, what CRI timestamps are (sh_now_ns is monotonic). */
static long long realtime_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * The cgroup of container @id, relative to each hierarchy's root (malloc'd): the start
 * file names its memory cgroup (v1) or its cgroup (v2), which is the one every hierarchy
 * uses; a host without the
 * memory controller has LXC's config say it (slower, but no such host runs the kubelet).
 * -ENOENT: it never started.
 */
static int ctr_cgroup(struct lxc_be *lb, const char *id, char **ret)
{
        /* "<root>/memory/" (v1) or "<root>/" (v2): what precedes the cgroup in the file. */
        _cleanup_free_ char *memroot = sh_cg_dir_for(&lb->cg, "", "memory.max");
        _cleanup_free_ char *start = sh_strdup_printf("%s/%s/start", lb->lxcpath, id);
        _cleanup_free_ char *buf = NULL;
        _cleanup_(sh_strv_freep) char **fields = NULL;
        _cleanup_lxc_ struct lxc_container *c = NULL;
        char cg[PATH_MAX] = "";
        size_t len = 0;
        int r;

        if (!start || !memroot)
                return -ENOMEM;
        r = sh_read_file(start, 1u << 20, &buf, &len);
        if (r < 0)
                return r;
        r = lb_fields_parse(buf, len, &fields);
        if (r < 0)
                return r;
        if (fields[0] && fields[1] && fields[2] &&
            strncmp(fields[2], memroot, strlen(memroot)) == 0) {
                *ret = strdup(fields[2] + strlen(memroot));
                return *ret ? 0 : -ENOMEM;
        }
        if (lb_look(lb, id, &c) < 0 ||
            c->get_config_item(c, "lxc.cgroup.dir.container", cg, sizeof(cg)) <= 0)
                return -ENOENT;
        *ret = strdup(cg);
        return *ret ? 0 : -ENOMEM;
}

int lb_container_stats(struct be *be, const char *id, struct be_ctr_stats *ret,
                       struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_free_ char *dir = lb_dir(lb, id);
        _cleanup_free_ char *cg = NULL;
        int r;

        if (!dir)
                return -ENOMEM;
        if (access(dir, F_OK) < 0)
                return sh_err(err, -ENOENT, "no LXC container %.12s", id);
        r = ctr_cgroup(lb, id, &cg);
        if (r < 0 && r != -ENOENT)
                return sh_err(err, r, "cgroup of container %.12s: %s", id, strerror(-r));
        /*
         * LXC makes the cgroup at start and removes it at exit: without it the container
         * uses nothing, and its counters are 0.
         */
        ret->timestamp_ns = realtime_ns();
        if (cg) {
                struct sh_error e = {0};

                r = sh_cg_stats_read(CGROUP_ROOT, cg, &ret->cg, NULL, &e);
                if (r < 0 && r != -ENOENT) {
                        if (err)
                                *err = e;
                        return sh_err_prefix(err, r, "container %.12s", id);
                }
        }
        ret->cg.has_cpu = ret->cg.has_memory = true;
        return 0;
}

int lb_container_fs_usage(struct be *be, const char *id, struct sh_fs_usage *ret,
                          struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_free_ char *upper = sh_strdup_printf("%s/%s/upper", lb->containers_dir, id);
        int r;

        if (!upper)
                return -ENOMEM;
        r = sh_fs_usage_scan(upper, ret, err);
        if (r < 0)
                return sh_err_prefix(err, r, "writable layer of %.12s", id);
        /* The filesystem is named by the dir ImageFsInfo names: one fs for every container. */
        snprintf(ret->mountpoint, sizeof(ret->mountpoint), "%s", lb->containers_dir);
        return 0;
}

/*
 * The pod's cgroup figures. A pod the kubelet gave a cgroup_parent has that cgroup to itself
 * (the kubelet makes one per pod): it is read whole, as cAdvisor and containerd read it, and
 * it keeps what containers that are gone used. Without one, the sandbox and its containers
 * sit beside every other pod's in runt's base cgroup, so the pod is the sum of its own.
 */
static int pod_cgroup(struct lxc_be *lb, const struct be_sandbox_stats_req *req,
                      struct sh_cg_stats *ret, struct sh_error *err)
{
        const char *parent = req->spec->cgroup_parent;
        int r;

        while (parent && *parent == '/')
                parent++;
        if (parent && parent[0]) {
                r = sh_cg_stats_read(CGROUP_ROOT, parent, ret, NULL, err);
                return r == -ENOENT ? 0 : r;
        }
        for (size_t i = 0;; i++) {
                const char *id = i == 0 ? req->id : req->container_ids[i - 1];
                _cleanup_free_ char *cg = NULL;
                struct sh_cg_stats one = {0};

                if (!id)
                        break;
                cg = lb_cgroup_dir(lb, req->spec, "", id);
                if (!cg)
                        return -ENOMEM;
                r = sh_cg_stats_read(CGROUP_ROOT, cg, &one, NULL, err);
                if (r == -ENOENT)
                        continue; /* it just exited */
                if (r < 0)
                        return r;
                sh_cg_stats_add(ret, &one);
        }
        return 0;
}

int lb_sandbox_stats(struct be *be, const struct be_sandbox_stats_req *req,
                     struct be_sandbox_stats *ret, struct sh_error *err)
{
        struct lxc_be *lb = be->priv;
        _cleanup_free_ char *dir = lb_dir(lb, req->id);
        int r;

        if (!dir)
                return -ENOMEM;
        if (access(dir, F_OK) < 0)
                return sh_err(err, -ENOENT, "no LXC sandbox %.12s", req->id);
        ret->timestamp_ns = realtime_ns();
        r = pod_cgroup(lb, req, &ret->cg, err);
        if (r < 0)
                return sh_err_prefix(err, r, "pod %.12s", req->id);
        ret->cg.has_cpu = ret->cg.has_memory = true;
        if (req->netns && req->netns[0]) {
                r = sh_netdev_read_netns(req->netns, &ret->ifaces, &ret->n_ifaces, err);
                if (r == 0)
                        ret->has_network = true;
                else if (r != -ENOENT)
                        return sh_err_prefix(err, r, "pod %.12s", req->id);
        }
        return 0;
}
