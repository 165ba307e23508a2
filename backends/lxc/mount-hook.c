/*
 * runt-lxc-hook SPEC NAME lxc start-host: LXC's start-host hook for mounts with
 * PROPAGATION_BIDIRECTIONAL. SPEC holds NUL-terminated fields, three per mount: the host
 * path, the mount point in the container (resolved, relative to its root) and "ro" or "rw".
 *
 * Why a hook: liblxc turns every mount of the container's namespace into a slave before it
 * makes the mount entries, so a bind made there receives the host's mounts but never gives
 * its own back. A mount must be a peer of the host's to propagate both ways. This runs on
 * the host once the container's namespaces are set up and before its init runs (LXC_PID is
 * that init): it clones each host tree, which keeps the peer groups of shared mounts,
 * enters the container's mount namespace and attaches the clones there, shared.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_MOUNTS 128 /* runtd refuses more (lxc/container.c) */

static int fail(const char *what, const char *path)
{
        fprintf(stderr, "runt-lxc-hook: %s '%s': %s\n", what, path, strerror(errno));
        return 1;
}

/*
 * runt-lxc-hook --once FILE ...: LXC's pre-start hook of every app container. liblxc starts a
 * container again when its init dies of SIGHUP (reboot() in its pid namespace does that),
 * behind the kubelet's back. The first start makes FILE; a second one finds it and fails,
 * and FILE.refused tells the monitor (lxc/shim.c) the run ended with SIGHUP.
 */
static int once(const char *file)
{
        int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);

        if (fd < 0) {
                char refused[4096];

                /* Tells the container's monitor why its start() never came back. */
                snprintf(refused, sizeof(refused), "%s.refused", file);
                fd = open(refused, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd >= 0)
                        close(fd);
                fprintf(stderr, "runt-lxc-hook: the container ran once: no restart\n");
                return 1;
        }
        close(fd);
        return 0;
}

int main(int argc, char **argv)
{
        static char spec[1 << 20];
        const char *field[MAX_MOUNTS * 3];
        int trees[MAX_MOUNTS];
        size_t n = 0, len = 0;
        const char *pid = getenv("LXC_PID");
        char ns_path[64];
        ssize_t got;
        int fd, ns;

        if (argc >= 3 && strcmp(argv[1], "--once") == 0)
                return once(argv[2]);
        if (argc < 2 || !pid || !pid[0] || strspn(pid, "0123456789") != strlen(pid)) {
                fprintf(stderr, "usage: runt-lxc-hook SPEC (as LXC's start-host hook)\n");
                return 2;
        }
        fd = open(argv[1], O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return fail("open", argv[1]);
        while ((got = read(fd, spec + len, sizeof(spec) - 1 - len)) > 0)
                len += (size_t)got;
        close(fd);
        if (got < 0)
                return fail("read", argv[1]);
        spec[len] = '\0';
        for (size_t off = 0; off < len; off += strlen(spec + off) + 1) {
                if (n == MAX_MOUNTS * 3) {
                        fprintf(stderr, "runt-lxc-hook: more than %d mounts\n", MAX_MOUNTS);
                        return 1;
                }
                field[n++] = spec + off;
        }
        if (n % 3) {
                fprintf(stderr, "runt-lxc-hook: %s is damaged\n", argv[1]);
                return 1;
        }
        /* The clones, taken in the host's mount namespace. */
        for (size_t i = 0; i < n; i += 3) {
                trees[i / 3] = (int)open_tree(AT_FDCWD, field[i],
                                              OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
                if (trees[i / 3] < 0)
                        return fail("clone the mount tree of", field[i]);
        }
        snprintf(ns_path, sizeof(ns_path), "/proc/%s/ns/mnt", pid);
        ns = open(ns_path, O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNS) < 0)
                return fail("enter the mount namespace", ns_path);
        close(ns);
        /* setns() put us at the root of the container's namespace: the paths are relative. */
        if (chdir("/") < 0)
                return fail("chdir", "/");
        for (size_t i = 0; i < n; i += 3) {
                const char *at = field[i + 1];

                if (move_mount(trees[i / 3], "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                        return fail("attach the mount at", at);
                if (mount(NULL, at, NULL, MS_SHARED | MS_REC, NULL) < 0)
                        return fail("make shared", at);
                if (strcmp(field[i + 2], "ro") == 0 &&
                    mount(NULL, at, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
                        return fail("make read-only", at);
                close(trees[i / 3]);
        }
        return 0;
}
