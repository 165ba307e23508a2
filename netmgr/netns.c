/*
 * Network namespaces, made without `ip`: a short-lived thread unshares its network
 * namespace and bind-mounts /proc/self/task/<tid>/ns/net on <run_dir>/netns/<id>. The mount
 * keeps the namespace alive after the thread is gone, and the caller's own namespace is
 * never touched (namespaces are per thread).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "netmgr-internal.h"
#include "strutil.h"
#include "validate.h"

struct ns_job {
        const char *path;
        int rc;
        char what[32];
};

static void *ns_thread(void *arg)
{
        struct ns_job *j = arg;
        char self[64];

        if (unshare(CLONE_NEWNET) < 0) {
                j->rc = -errno;
                snprintf(j->what, sizeof(j->what), "unshare");
                return NULL;
        }
        snprintf(self, sizeof(self), "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
        /* The type is ignored for a bind mount; "none" rather than NULL keeps valgrind quiet. */
        if (mount(self, j->path, "none", MS_BIND, NULL) < 0) {
                j->rc = -errno;
                snprintf(j->what, sizeof(j->what), "bind mount");
        }
        return NULL;
}

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

bool net_netns_live(const char *path)
{
        struct statfs sf;

        return path && path[0] && statfs(path, &sf) == 0 && sf.f_type == NSFS_MAGIC;
}

char *net_netns_path(struct net_mgr *nm, const char *id)
{
        return sh_strdup_printf("%s/netns/%s", net_mgr_run_dir(nm), id);
}

int net_netns_create(struct net_mgr *nm, const char *id, char **ret_path, struct sh_error *err)
{
        _cleanup_free_ char *dir = sh_path_join(net_mgr_run_dir(nm), "netns");
        _cleanup_free_ char *path = NULL;
        struct ns_job j = {0};
        pthread_t t;
        int fd, r;

        r = sh_validate_name(id, strlen(id), "pod id", err);
        if (r < 0)
                return r;
        path = net_netns_path(nm, id);
        if (!dir || !path)
                return -ENOMEM;
        r = sh_mkdir_p(dir, 0755);
        if (r < 0)
                return sh_err(err, r, "create '%s': %s", dir, strerror(-r));
        fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        if (fd < 0)
                return sh_err(err, -errno, "netns '%s': %s", path, strerror(errno));
        close(fd);
        j.path = path;
        r = pthread_create(&t, NULL, ns_thread, &j);
        if (r != 0) {
                unlink(path);
                return sh_err(err, -r, "netns thread: %s", strerror(r));
        }
        pthread_join(t, NULL);
        if (j.rc < 0) {
                unlink(path);
                return sh_err(err, j.rc, "netns '%s': %s: %s", path, j.what, strerror(-j.rc));
        }
        *ret_path = TAKE_PTR(path);
        return 0;
}

int net_netns_remove(struct net_mgr *nm, const char *id, struct sh_error *err)
{
        _cleanup_free_ char *path = NULL;
        int r;

        r = sh_validate_name(id, strlen(id), "pod id", err);
        if (r < 0)
                return r;
        path = net_netns_path(nm, id);
        if (!path)
                return -ENOMEM;
        if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                return sh_err(err, -errno, "unmount netns '%s': %s", path, strerror(errno));
        if (unlink(path) < 0 && errno != ENOENT)
                return sh_err(err, -errno, "remove netns '%s': %s", path, strerror(errno));
        return 0;
}
