/*
 * UpdatePodSandboxResources: pod-level limits. A file of its own, beside sandbox.c, so it
 * stays clear of the sandbox state machine: it only reads the pod and has the backend
 * apply the limits.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"
#include "cleanup.h"
#include "podmgr-internal.h"
#include "strutil.h"

/* @a + @b for a limit where 0 is "unset": unset stays unset (no limit plus overhead is none). */
static long long add_limit(long long a, long long b, bool *ovf)
{
        long long sum;

        if (a <= 0)
                return a;
        if (__builtin_add_overflow(a, b > 0 ? b : 0, &sum))
                *ovf = true;
        return sum;
}

/*
 * The pod's limits as the kubelet sizes a pod cgroup: the sum of its containers' (@res)
 * plus the RuntimeClass overhead (@over), as Kubernetes' Pod Overhead asks for. An unset
 * or unlimited (-1) figure of @res stays so: overhead on top of no limit is no limit.
 */
static int pod_limits(const struct be_resources *res, const struct be_resources *over,
                      struct be_resources *ret)
{
        bool ovf = false;

        memset(ret, 0, sizeof(*ret));
        ret->cpu_period = res->cpu_period > 0 ? res->cpu_period : over->cpu_period;
        ret->cpu_quota = res->cpu_quota;
        if (res->cpu_quota > 0 && over->cpu_quota > 0) {
                long long op = over->cpu_period > 0 ? over->cpu_period : 100000;
                long long rp = ret->cpu_period > 0 ? ret->cpu_period : 100000;

                long long q;

                /* The overhead's quota in the pod's period (figures from a client: checked). */
                if (__builtin_mul_overflow(over->cpu_quota, rp, &q) ||
                    __builtin_add_overflow(ret->cpu_quota, q / op, &ret->cpu_quota))
                        ovf = true;
        }
        if (__builtin_add_overflow(res->cpu_shares > 0 ? res->cpu_shares : 0,
                                   over->cpu_shares > 0 ? over->cpu_shares : 0, &ret->cpu_shares))
                ovf = true;
        ret->memory_limit = add_limit(res->memory_limit, over->memory_limit, &ovf);
        ret->memory_swap_limit = add_limit(
                res->memory_swap_limit,
                over->memory_swap_limit > 0 ? over->memory_swap_limit : over->memory_limit, &ovf);
        if (ovf)
                return -ERANGE;
        ret->cpuset_cpus = strdup(res->cpuset_cpus ? res->cpuset_cpus : "");
        ret->cpuset_mems = strdup(res->cpuset_mems ? res->cpuset_mems : "");
        ret->hugepages = calloc(res->n_hugepages + 1, sizeof(*ret->hugepages));
        if (!ret->cpuset_cpus || !ret->cpuset_mems || !ret->hugepages)
                return -ENOMEM;
        for (size_t i = 0; i < res->n_hugepages; i++) {
                unsigned long long v = strtoull(res->hugepages[i].value, NULL, 10);

                for (size_t j = 0; j < over->n_hugepages; j++)
                        if (strcmp(over->hugepages[j].key, res->hugepages[i].key) == 0)
                                if (__builtin_add_overflow(
                                            v, strtoull(over->hugepages[j].value, NULL, 10), &v))
                                        return -ERANGE;
                ret->hugepages[i].key = strdup(res->hugepages[i].key);
                ret->hugepages[i].value = sh_strdup_printf("%llu", v);
                ret->n_hugepages = i + 1;
                if (!ret->hugepages[i].key || !ret->hugepages[i].value)
                        return -ENOMEM;
        }
        return 0;
}

int pod_sandbox_update_resources(struct pod_mgr *pm, const char *id, const struct be_resources *res,
                                 const struct be_resources *overhead, struct sh_error *err)
{
        _cleanup_pod_lock_ struct pod_lock *lock = NULL;
        struct pod_sandbox_info *i = NULL, *now = NULL;
        struct be_resources total = {0};
        struct be *be = NULL;
        int r;

        r = pod_sandbox_status(pm, id, &i, err);
        if (r < 0)
                return r;
        /* Shared, as a container call: a Stop or Remove of the pod waits for this. */
        lock = pod_lock_take(pm, 'p', i->id, false);
        if (!lock) {
                pod_sandbox_info_free(i);
                return -ENOMEM;
        }
        r = pod_sandbox_status(pm, i->id, &now, err);
        if (r == 0 && now->state != POD_READY)
                r = sh_err(err, -EALREADY,
                           "pod sandbox %.12s is not ready: its limits cannot be changed", i->id);
        if (r == 0)
                r = pod_mgr_backend(pm, i->spec.handler, &be, err);
        if (r == 0)
                r = pod_limits(res, overhead, &total);
        if (r == -ERANGE)
                r = sh_err(err, -EINVAL, "resources plus overhead are out of range");
        if (r == 0)
                r = be_sandbox_update(be, i->id, &total, err);
        if (r < 0)
                sh_err_prefix(err, r, "update resources of sandbox %.12s", i->id);
        be_resources_done(&total);
        pod_sandbox_info_free(now);
        pod_sandbox_info_free(i);
        return r;
}

int pod_sandbox_dial(struct pod_mgr *pm, const char *id, unsigned port, int *ret_fd,
                     struct sh_error *err)
{
        struct pod_sandbox_info *i = NULL;
        struct be *be = NULL;
        int r = pod_sandbox_status(pm, id, &i, err);

        if (r < 0)
                return r;
        if (i->state != POD_READY)
                r = sh_err(err, -EINVAL, "pod sandbox %.12s is not ready", i->id);
        if (r == 0)
                r = pod_mgr_backend(pm, i->spec.handler, &be, err);
        if (r == 0 && !be->ops->sandbox_dial)
                r = -EOPNOTSUPP; /* the caller enters the netns */
        else if (r == 0)
                r = be_sandbox_dial(be, i->id, port, ret_fd, err);
        pod_sandbox_info_free(i);
        return r;
}
