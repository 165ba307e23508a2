/*
 * The microvm backend: one QEMU microvm per pod, its containers inside, run by runt-agent
 * (backends/agent/) over a virtio-serial port. The pods, their containers, logs and the
 * agent's events are the agent pod layer's (backends/agentpod/); this file is its pod
 * host: configuration, the VM's start (sandbox_create), reaching, stopping, re-owning and
 * removing it, and the share that carries image layers and mounts into the guest. The VM
 * itself: vm.c, initramfs.c, tap.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fswalk.h"
#include "helpercg.h"
#include "log.h"
#include "microvm-internal.h"
#include "netdev.h"
#include "strutil.h"
#include "validate.h"

#undef SH_LOG_MODULE
#define SH_LOG_MODULE "microvm"

static const struct ap_host_ops mv_host_ops;

/* ---------------------------------------------------------------- configuration */

static int opt_uint(const struct be_config *cfg, const char *key, unsigned def, unsigned min,
                    unsigned max, unsigned *ret, struct sh_error *err)
{
        const char *v = be_config_option(cfg, key);
        char *end = NULL;
        unsigned long n;

        if (!v || !v[0]) {
                *ret = def;
                return 0;
        }
        errno = 0;
        n = strtoul(v, &end, 10);
        if (errno || !end || *end || n < min || n > max)
                return sh_err(err, -EINVAL, "microvm option %s: '%s' is not a number in %u..%u",
                              key, v, min, max);
        *ret = (unsigned)n;
        return 0;
}

static int opt_str(const struct be_config *cfg, const char *key, const char *def, char **ret)
{
        const char *v = be_config_option(cfg, key);

        *ret = strdup(v && v[0] ? v : def);
        return *ret ? 0 : -ENOMEM;
}

static void mv_fini(struct be *be)
{
        struct mv_be *mb = be->priv;

        if (!mb)
                return;
        /* The VMs run on: runtd re-owns them when it starts again. */
        ap_be_fini(&mb->ap);
        free(mb->qemu);
        free(mb->kernel);
        free(mb->kver);
        free(mb->modules_dir);
        free(mb->initramfs);
        free(mb->accel);
        free(mb->virtiofsd);
        free(mb->agent_bin);
        free(mb->cmdline);
        free(mb->cache_dir);
        sh_helpercg_free(mb->hcg);
        free(mb);
        be->priv = NULL;
}

/* Is "runt-pod-<id>" the cgroup of a pod this backend still has a dir of? */
static bool pod_cgroup_known(const char *name, void *data)
{
        struct mv_be *mb = data;
        _cleanup_free_ char *dir = NULL;

        if (strncmp(name, "runt-pod-", 9) != 0 || strlen(name + 9) < 20)
                return false;
        dir = sh_strdup_printf("%s/%.20s", mb->ap.dir, name + 9);
        return !dir || access(dir, F_OK) == 0; /* no memory: keep it */
}

static void pod_cgroup_remove(struct mv_be *mb, const char *id)
{
        _cleanup_free_ char *name = sh_strdup_printf("runt-pod-%s", id);
        struct sh_error e = {0};

        if (name && sh_helpercg_remove(mb->hcg, name, &e) < 0)
                sh_log_debug("%s left for the next start's sweep: %s", name, e.msg);
}

static int mv_init(struct be *be, const struct be_config *cfg, struct sh_error *err)
{
        struct mv_be *mb = calloc(1, sizeof(*mb));
        char agent[PATH_MAX];
        _cleanup_free_ char *accel = NULL, *kernel = NULL, *console = NULL;
        int r;

        if (!mb)
                return -ENOMEM;
        be->priv = mb;
        {
                _cleanup_free_ char *dir = sh_path_join(cfg->run_dir, "microvm");

                if (!dir || ap_be_init(&mb->ap, &mv_host_ops, dir) < 0)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < cfg->n_options; i++) {
                static const char *const known[] = {"qemu",    "kernel",       "memory",
                                                    "vcpus",   "accel",        "virtiofsd",
                                                    "cmdline", "boot_timeout", "console"};
                bool ok = false;

                for (size_t k = 0; k < SH_ARRAY_SIZE(known) && !ok; k++)
                        ok = strcmp(cfg->option_keys[i], known[k]) == 0;
                if (!ok)
                        return sh_err(err, -EINVAL,
                                      "microvm option '%s' is not known (expected qemu, kernel, "
                                      "memory, vcpus, accel, virtiofsd, cmdline, boot_timeout "
                                      "or console)",
                                      cfg->option_keys[i]);
        }
        r = opt_uint(cfg, "memory", 128, 64, 1 << 20, &mb->memory_mib, err);
        if (r == 0)
                r = opt_uint(cfg, "vcpus", 1, 1, 64, &mb->vcpus, err);
        if (r == 0)
                r = opt_uint(cfg, "boot_timeout", 20, 1, 600, &mb->boot_timeout_ms, err);
        if (r < 0)
                return r;
        mb->boot_timeout_ms *= 1000;
        if (opt_str(cfg, "qemu", "/usr/bin/qemu-system-x86_64", &mb->qemu) < 0 ||
            opt_str(cfg, "virtiofsd", "/usr/lib/qemu/virtiofsd", &mb->virtiofsd) < 0 ||
            opt_str(cfg, "accel", "auto", &accel) < 0 || opt_str(cfg, "kernel", "", &kernel) < 0 ||
            opt_str(cfg, "cmdline", "", &mb->cmdline) < 0 ||
            opt_str(cfg, "console", "false", &console) < 0)
                return -ENOMEM;
        if (strcmp(accel, "auto") != 0 && strcmp(accel, "kvm") != 0 && strcmp(accel, "tcg") != 0)
                return sh_err(err, -EINVAL, "microvm option accel: '%s' is not auto, kvm or tcg",
                              accel);
        if (strcmp(console, "true") != 0 && strcmp(console, "false") != 0)
                return sh_err(err, -EINVAL, "microvm option console: '%s' is not true or false",
                              console);
        mb->console = strcmp(console, "true") == 0;
        mb->cache_dir = sh_path_join(cfg->root_dir, "microvm");
        if (!mb->cache_dir)
                return -ENOMEM;
        r = ap_be_mkdir(&mb->ap);
        if (r == 0)
                r = sh_mkdir_p(mb->cache_dir, 0700);
        if (r < 0)
                return sh_err(err, r, "create '%s': %s", mb->ap.dir, strerror(-r));
        {
                _cleanup_free_ char *record = sh_path_join(cfg->root_dir, "microvm-helper-cgroups");

                if (!record)
                        return -ENOMEM;
                r = sh_helpercg_new(record, &mb->hcg, err);
                if (r < 0)
                        return r;
                /* Those of pods that went while runtd was away (a crash). */
                r = sh_helpercg_sweep(mb->hcg, pod_cgroup_known, mb);
                if (r > 0)
                        sh_log_info("microvm: removed %d cgroups of pods gone", r);
        }
        /*
         * What may be missing on this host (no QEMU, no kernel) makes the handler not
         * ready, with the reason, rather than runtd refusing to start.
         */
        if (sh_find_helper("runt-agent", RUNT_AGENT_FALLBACK, agent, sizeof(agent)) == 0)
                mb->agent_bin = strdup(agent);
        if (mv_kernel_find(kernel[0] ? kernel : NULL, &mb->kernel, &mb->kver, &mb->modules_dir,
                           NULL) < 0)
                mb->kernel = kernel[0] ? TAKE_PTR(kernel) : NULL;
        r = mv_accel_probe(accel, &mb->accel, err);
        if (r < 0)
                return r;
        sh_log_info("microvm: handler %s, accel %s, kernel %s, %u MiB, %u vCPU", cfg->handler,
                    mb->accel, mb->kernel ? mb->kernel : "(none)", mb->memory_mib, mb->vcpus);
        return 0;
}

static int mv_ready(struct be *be, struct sh_error *err)
{
        struct mv_be *mb = be->priv;

        if (access(mb->qemu, X_OK) < 0)
                return sh_err(err, -ENOENT, "microvm: QEMU '%s' is not installed (qemu-system-x86)",
                              mb->qemu);
        if (!mb->kernel || !mb->kver || access(mb->kernel, R_OK) < 0)
                return sh_err(err, -ENOENT,
                              "microvm: no guest kernel (install linux-image-cloud-amd64 or set "
                              "the kernel option)");
        if (!mb->agent_bin)
                return sh_err(err, -ENOENT, "microvm: runt-agent is not installed");
        if (access(mb->virtiofsd, X_OK) < 0)
                return sh_err(err, -ENOENT, "microvm: virtiofsd '%s' is not installed",
                              mb->virtiofsd);
        return 0;
}

/* ---------------------------------------------------------------- the pod host */

/* The VM of an agent pod (agentpod.h): what the layer asks of a microvm pod. */

static int mv_pod_init(struct ap_pod *ap)
{
        struct mv_pod *p = mv_pod(ap);

        p->share = sh_path_join(ap->dir, "share");
        p->vm.qemu_pidfd = p->vm.vfsd_pidfd = -1;
        return p->share ? 0 : -ENOMEM;
}

static void mv_pod_done(struct ap_pod *ap)
{
        struct mv_pod *p = mv_pod(ap);

        mv_vm_done(&p->vm);
        free(p->share);
}

static bool mv_alive(struct ap_pod *ap)
{
        struct mv_pod *p = mv_pod(ap);

        return p->vm.qemu_pidfd >= 0 && mv_vm_running(&p->vm);
}

/* The agent's virtio-serial port, through QEMU's chardev socket (one client at a time). */
static int mv_connect(struct ap_pod *ap, unsigned timeout_ms, const struct ag_client_ops *cbs,
                      void *cb_data, struct ag_client **ret, struct sh_error *err)
{
        _cleanup_close_ int fd = -1;
        int r = mv_vm_connect_agent(&mv_pod(ap)->vm, &fd, timeout_ms, err);

        if (r < 0)
                return r;
        return ag_client_new(TAKE_FD(fd), cbs, cb_data, ret, err);
}

static int mv_reopen(struct ap_pod *ap, struct sh_error *err)
{
        struct mv_pod *p = mv_pod(ap);

        if (mv_vm_open(ap->dir, &p->vm, err) < 0 || !mv_alive(ap)) {
                /* QEMU is gone; a virtiofsd it left goes too. */
                mv_vm_shutdown(&p->vm, 0, NULL);
                return -ESRCH;
        }
        return 0;
}

static int mv_stop(struct ap_pod *ap, struct sh_error *err)
{
        /* QMP quit, then SIGKILL; a virtiofsd left would pin the share's binds. */
        return mv_vm_shutdown(&mv_pod(ap)->vm, 3000, err);
}

static int share_teardown(struct mv_pod *p);

/* The netns pod @p's tap was made in (recorded at its creation); false when unknown. */
static bool sb_netns(struct ap_pod *p, char *buf, size_t size)
{
        _cleanup_free_ char *f = sh_path_join(p->dir, "netns"), *text = NULL;

        if (!f || sh_read_file(f, 4096, &text, NULL) < 0 || text[0] != '/')
                return false;
        snprintf(buf, size, "%s", text);
        return true;
}

/* 0, or -EBUSY when the share's mounts would not go (its dir kept); never fails else. */
static int mv_teardown(struct ap_pod *ap, struct sh_error *err)
{
        char netns[PATH_MAX];

        (void)err;
        if (sb_netns(ap, netns, sizeof(netns)))
                mv_tap_remove(netns, "eth0", NULL);
        mv_vm_cleanup_dir(ap->dir, NULL);
        /* QEMU and virtiofsd are gone (stop ran): their cgroup goes. */
        pod_cgroup_remove((struct mv_be *)ap->be, ap->id);
        return share_teardown(mv_pod(ap));
}

/*
 * Binds what container @bc needs under the share: share/c/<id>/l<N> (layers, read-only)
 * and m<N> (mounts), which the guest sees under MV_GUEST_SHARE; the pod's files are
 * share/pod (bound at the pod's creation).
 */
static int mv_prepare_container(struct ap_pod *ap, const struct be_container *bc,
                                struct ap_ctr_paths *ret, struct sh_error *err)
{
        struct mv_pod *p = mv_pod(ap);
        const struct be_container_spec *s = bc->spec;
        size_t n_layers = 0;
        int r;

        while (s->layer_dirs[n_layers])
                n_layers++;
        ret->lower = calloc(n_layers + 1, sizeof(char *));
        ret->mount_src = calloc(s->n_mounts + 1, sizeof(char *));
        ret->pod_files = strdup(MV_GUEST_SHARE "/pod");
        if (!ret->lower || !ret->mount_src || !ret->pod_files)
                return -ENOMEM;
        for (size_t i = 0; i < n_layers; i++) {
                _cleanup_free_ char *rel = sh_strdup_printf("c/%s/l%zu", bc->id, i);

                if (!rel)
                        return -ENOMEM;
                r = mv_bind(p->share, rel, s->layer_dirs[i], true, err);
                if (r < 0)
                        return sh_err_prefix(err, r, "layer %zu", i);
                /*
                 * "/.": each bind is a submount virtiofsd announces, which the guest mounts
                 * when a lookup walks through it; overlay refuses the automount point itself.
                 */
                ret->lower[i] = sh_strdup_printf(MV_GUEST_SHARE "/c/%s/l%zu/.", bc->id, i);
                if (!ret->lower[i])
                        return -ENOMEM;
        }
        for (size_t i = 0; i < s->n_mounts; i++) {
                _cleanup_free_ char *rel = sh_strdup_printf("c/%s/m%zu", bc->id, i);
                struct stat st;

                if (!rel)
                        return -ENOMEM;
                if (stat(s->mounts[i].host_path, &st) < 0 && errno == ENOENT) {
                        /* As for lxc: a missing source directory is made. */
                        r = sh_mkdir_p(s->mounts[i].host_path, 0755);
                        if (r < 0)
                                return sh_err(err, r, "create mount source '%s': %s",
                                              s->mounts[i].host_path, strerror(-r));
                }
                r = mv_bind(p->share, rel, s->mounts[i].host_path, s->mounts[i].readonly, err);
                if (r < 0)
                        return sh_err_prefix(err, r, "mount %s", s->mounts[i].container_path);
                ret->mount_src[i] = sh_strdup_printf(MV_GUEST_SHARE "/c/%s/m%zu", bc->id, i);
                if (!ret->mount_src[i])
                        return -ENOMEM;
        }
        return 0;
}

/* Unbinds and removes what mv_prepare_container made for container @id. */
static void mv_release_container(struct ap_pod *ap, const char *id)
{
        _cleanup_free_ char *cdir = sh_strdup_printf("%s/c/%s", mv_pod(ap)->share, id);

        if (cdir) {
                mv_umount_below(cdir);
                sh_rm_rf(cdir);
        }
}

static const struct ap_host_ops mv_host_ops = {
        .name = "microvm",
        .box = "VM",
        .box_exited = "QEMU exited",
        .pod_size = sizeof(struct mv_pod),
        .pod_init = mv_pod_init,
        .pod_done = mv_pod_done,
        .alive = mv_alive,
        .connect = mv_connect,
        .reopen = mv_reopen,
        .stop = mv_stop,
        .teardown = mv_teardown,
        .prepare_container = mv_prepare_container,
        .release_container = mv_release_container,
};

/* ---------------------------------------------------------------- the share */

/* Unmounts every mount at or below @dir (deepest first), lazily. */
/* Decodes mountinfo's octal escapes (\040 space, \011 tab, \012 newline, \134 '\') in place. */
static void unescape_mountinfo(char *s)
{
        char *w = s;

        for (const char *r = s; *r; w++) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
                    r[3] >= '0' && r[3] <= '7') {
                        *w = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
                        r += 4;
                } else {
                        *w = *r++;
                }
        }
        *w = 0;
}

/* The mount points at or below @dir, in mountinfo's order; *@ret_n of them. */
static char **mounts_below(const char *dir, size_t *ret_n)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        _cleanup_free_ char *line = NULL;
        size_t cap = 0, n = 0, len = strlen(dir);
        char **v = NULL;

        *ret_n = 0;
        if (!f)
                return NULL;
        /* getline: an overlay with many layers makes lines of any length. */
        while (getline(&line, &cap, f) > 0) {
                char *mp = line, **nv;

                /* id parent major:minor root mountpoint ... */
                for (int field = 0; field < 4 && mp; field++) {
                        mp = strchr(mp, ' ');
                        mp = mp ? mp + 1 : NULL;
                }
                if (!mp)
                        continue;
                mp[strcspn(mp, " ")] = 0;
                unescape_mountinfo(mp);
                if (strncmp(mp, dir, len) != 0 || (mp[len] && mp[len] != '/'))
                        continue;
                nv = realloc(v, (n + 2) * sizeof(*v));
                if (!nv)
                        break;
                v = nv;
                v[n] = strdup(mp);
                if (v[n])
                        n++;
                v[n] = NULL;
        }
        *ret_n = n;
        return v;
}

void mv_umount_below(const char *dir)
{
        size_t n = 0;
        char **v = mounts_below(dir, &n);

        /* Later in mountinfo is on top or deeper. */
        while (n--) {
                umount2(v[n], MNT_DETACH);
                free(v[n]);
        }
        free(v);
}

/* True when nothing is mounted at or below @dir any more. */
bool mv_no_mounts_below(const char *dir)
{
        size_t n = 0;
        char **v = mounts_below(dir, &n);

        sh_strv_free(v);
        return n == 0;
}

/*
 * Binds @src at @rel below @share (made: a dir, or an empty file for a file), read-only when
 * @ro. The guest can write in the share: every component of @rel is made and opened without
 * following a symlink, and the bind is attached to the directory or file opened so, never
 * through a path the guest could have swapped meanwhile.
 */
int mv_bind(const char *share, const char *rel, const char *src, bool ro, struct sh_error *err)
{
        _cleanup_close_ int dir = -1, dst = -1, tree = -1;
        _cleanup_free_ char *path = strdup(rel);
        char *save = NULL, *comp, *next;
        struct stat st;

        if (!path)
                return -ENOMEM;
        if (stat(src, &st) < 0)
                return sh_err(err, -errno, "mount source '%s': %s", src, strerror(errno));
        dir = open(share, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir < 0)
                return sh_err(err, -errno, "open '%s': %s", share, strerror(errno));
        for (comp = strtok_r(path, "/", &save); comp; comp = next) {
                bool last;
                int fd;

                next = strtok_r(NULL, "/", &save);
                last = next == NULL;
                if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0)
                        return sh_err(err, -EINVAL, "bind target '%s'", rel);
                if (!last || S_ISDIR(st.st_mode)) {
                        if (mkdirat(dir, comp, 0755) < 0 && errno != EEXIST)
                                return sh_err(err, -errno, "create '%s/%s': %s", share, rel,
                                              strerror(errno));
                        fd = openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                } else {
                        fd = openat(dir, comp, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
                        if (fd >= 0) {
                                int pfd = openat(dir, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);

                                close(fd);
                                fd = pfd;
                        }
                }
                if (fd < 0)
                        return sh_err(err, -errno, "open '%s/%s': %s", share, rel, strerror(errno));
                if (last)
                        dst = fd;
                else {
                        close(dir);
                        dir = fd;
                }
        }
        if (dst < 0)
                return sh_err(err, -EINVAL, "bind target '%s'", rel);
        tree = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0)
                return sh_err(err, -errno, "bind '%s': %s", src, strerror(errno));
        if (ro) {
                struct mount_attr a = {.attr_set = MOUNT_ATTR_RDONLY};

                if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof(a)) < 0)
                        return sh_err(err, -errno, "read-only bind '%s': %s", src, strerror(errno));
        }
        if (move_mount(tree, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                return sh_err(err, -errno, "bind '%s' at '%s/%s': %s", src, share, rel,
                              strerror(errno));
        return 0;
}

/* ---------------------------------------------------------------- sandbox ops */

/* The last line QEMU or the guest console wrote, for a start that failed. */
static void log_tail(const char *dir, char *out, size_t size)
{
        static const char *const logs[] = {"qemu.log", "console.log"};

        snprintf(out, size, "QEMU said nothing");
        for (size_t i = 0; i < SH_ARRAY_SIZE(logs); i++) {
                _cleanup_free_ char *path = sh_path_join(dir, logs[i]), *buf = NULL;
                size_t n = 0;

                if (!path || sh_read_file(path, 1 << 20, &buf, &n) < 0 || !n)
                        continue;
                while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                        buf[--n] = 0;
                {
                        char *last = strrchr(buf, '\n');

                        snprintf(out, size, "%s: %.150s", logs[i], last ? last + 1 : buf);
                }
                return;
        }
}

static int refuse_host_ns(const struct be_sandbox_spec *s, struct sh_error *err)
{
        const char *what = s->net_mode == BE_NS_NODE   ? "network (hostNetwork)"
                           : s->pid_mode == BE_NS_NODE ? "PID (hostPID)"
                           : s->ipc_mode == BE_NS_NODE ? "IPC (hostIPC)"
                                                       : NULL;

        if (!what)
                return 0;
        return sh_err(err, -EINVAL,
                      "a microvm pod runs in a VM of its own and cannot share the host's %s "
                      "namespace; use an lxc handler for it",
                      what);
}

/* Unmounts everything under @p's share: 0, or -EBUSY when mounts would not go. */
static int share_teardown(struct mv_pod *p)
{
        mv_umount_below(p->share);
        /*
         * Never remove through a bind that is still there (a volume's data would go): the
         * guest can rename what is under the share, so check, and keep the dir if need be.
         */
        if (!mv_no_mounts_below(p->share)) {
                sh_log_error("pod %.12s: mounts under '%s' would not go; its directory is kept",
                             p->ap.id, p->share);
                return -EBUSY;
        }
        return 0;
}

static long long mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int mv_sandbox_create(struct be *be, const struct be_sandbox *sb, struct sh_error *err)
{
        long long t0 = mono_ms(), t_init = 0, t_tap = 0, t_spawn = 0, t_ready = 0;
        struct mv_be *mb = be->priv;
        struct mv_pod *p = NULL;
        struct ag_net net = {0};
        _cleanup_close_ int tap = -1;
        _cleanup_free_ char *initramfs = NULL, *cmdline = NULL, *cg_dirs = NULL;
        int r;

        r = refuse_host_ns(sb->spec, err);
        if (r < 0)
                return r;
        r = mv_ready(be, err);
        if (r < 0)
                return r;
        if (!sb->netns)
                return sh_err(err, -EINVAL, "a microvm pod needs a network namespace");
        p = (struct mv_pod *)ap_pod_new(&mb->ap, sb->id);
        if (!p)
                return -ENOMEM;
        r = sh_mkdir_p(p->share, 0700);
        if (r < 0) {
                sh_err(err, r, "create '%s': %s", p->share, strerror(-r));
                goto fail;
        }
        r = ap_pod_mkdir(&p->ap, err);
        if (r < 0)
                goto fail;
        {
                /* QEMU and virtiofsd live beside runtd's cgroup: runtd's stop ends neither. */
                _cleanup_free_ char *name = sh_strdup_printf("runt-pod-%s", sb->id);

                r = name ? sh_helpercg_make(mb->hcg, name, &cg_dirs, err) : -ENOMEM;
                if (r < 0)
                        goto fail;
        }
        /*
         * The share is a mount of its own with shared propagation: virtiofsd's private mount
         * namespace (a slave of runtd's) then sees the binds made under it later, for
         * containers created after the VM booted.
         */
        /*
         * A small tmpfs of its own: what the guest writes in the share outside the binds
         * (they are the CRI volumes' own) cannot fill runtd's run dir.
         */
        if (mount("runt-share", p->share, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") < 0 ||
            mount(NULL, p->share, NULL, MS_SHARED, NULL) < 0) {
                r = sh_err(err, -errno, "make '%s' a shared mount: %s", p->share, strerror(errno));
                goto fail;
        }
        /* The pod's files (hosts, resolv.conf, hostname), written after this returns. */
        r = sh_mkdir_p(sb->pod_dir, 0755);
        if (r == 0)
                r = mv_bind(p->share, "pod", sb->pod_dir, true, err);
        if (r < 0)
                goto fail;
        {
                struct mv_initramfs_opts io = {
                        .agent_path = mb->agent_bin,
                        .kver = mb->kver,
                        .modules_dir = mb->modules_dir,
                        .cache_dir = mb->cache_dir,
                        .gzip = -1,
                };

                r = mv_initramfs_get(&io, &initramfs, err);
                t_init = mono_ms();
        }
        if (r < 0)
                goto fail;
        r = mv_tap_create(sb->netns, "eth0", &tap, &net, err);
        t_tap = mono_ms();
        if (r < 0)
                goto fail;
        /* The agent mounts the share before it says READY. */
        cmdline = sh_strdup_printf("runt.virtiofs=" MV_FS_TAG ":" MV_GUEST_SHARE "%s%s",
                                   mb->cmdline[0] ? " " : "", mb->cmdline);
        /*
         * Under TCG on a loaded host a guest kernel can stall early in boot (a rare timer
         * calibration hang): a VM that does not come up is killed and started once more,
         * with its console kept this time, so a second failure says why.
         */
        for (int attempt = 0; attempt < 2; attempt++) {
                struct mv_vm_opts o = {
                        .qemu = mb->qemu,
                        .kernel = mb->kernel,
                        .initramfs = initramfs,
                        .mem_mib = mb->memory_mib,
                        .vcpus = mb->vcpus,
                        .accel = mb->accel,
                        .dir = p->ap.dir,
                        .tap_fd = tap,
                        .mac = net.n_ifaces ? net.ifaces[0].mac : NULL,
                        .virtiofsd = mb->virtiofsd,
                        .shared_dir = p->share,
                        .cmdline_extra = cmdline,
                        .console = mb->console || attempt > 0,
                        .cgroup_dirs = cg_dirs,
                };
                char tail[200];

                r = cmdline ? mv_vm_start(&o, &p->vm, err) : -ENOMEM;
                t_spawn = mono_ms();
                if (r < 0)
                        goto fail_net;
                r = ap_pod_connect(&p->ap, mb->boot_timeout_ms, err);
                t_ready = mono_ms();
                if (r == 0)
                        break;
                log_tail(p->ap.dir, tail, sizeof(tail));
                sh_err_prefix(err, r, "the VM did not come up in %u ms (%s)", mb->boot_timeout_ms,
                              tail);
                mv_vm_shutdown(&p->vm, 0, NULL);
                mv_vm_done(&p->vm);
                p->vm.qemu_pidfd = p->vm.vfsd_pidfd = -1;
                if (r != -ETIMEDOUT || attempt > 0)
                        goto fail_net;
                sh_log_warn("pod %.12s: %s; starting its VM again", p->ap.id, err ? err->msg : "");
                mv_vm_cleanup_dir(p->ap.dir, NULL);
        }
        {
                struct ag_buf b;
                _cleanup_free_ uint8_t *resp = NULL;
                size_t n = 0;
                char **sysctls = calloc(sb->spec->n_sysctls + 1, sizeof(*sysctls));

                if (!sysctls) {
                        r = -ENOMEM;
                        goto fail_vm;
                }
                for (size_t i = 0; i < sb->spec->n_sysctls; i++)
                        sysctls[i] = sh_strdup_printf("%s=%s", sb->spec->sysctls[i].key,
                                                      sb->spec->sysctls[i].value);
                free(net.hostname);
                net.hostname = strdup(sb->spec->hostname[0] ? sb->spec->hostname : sb->spec->name);
                sh_strv_free(net.sysctls);
                net.sysctls = sysctls;
                ag_buf_init(&b);
                ag_net_put(&b, &net);
                r = ag_client_call(p->ap.agent, AG_OP_NET_SETUP, &b, AP_CALL_MS, &resp, &n, err);
                sh_log_debug("pod %.12s: initramfs %lld ms, tap %lld ms, spawn %lld ms, agent "
                             "ready %lld ms, net setup %lld ms",
                             p->ap.id, t_init - t0, t_tap - t_init, t_spawn - t_tap,
                             t_ready - t_spawn, mono_ms() - t_ready);
                ag_buf_done(&b);
                if (r < 0) {
                        sh_err_prefix(err, r, "set up the guest's network");
                        goto fail_vm;
                }
        }
        r = ap_pod_add(&mb->ap, &p->ap);
        if (r < 0)
                goto fail_vm;
        ag_net_done(&net);
        return 0;

fail_vm:
        mv_vm_shutdown(&p->vm, 0, NULL);
fail_net:
        mv_tap_remove(sb->netns, "eth0", NULL);
fail:
        ag_net_done(&net);
        pod_cgroup_remove(mb, p->ap.id);
        if (share_teardown(p) == 0)
                sh_rm_rf(p->ap.dir);
        ap_pod_free(&p->ap);
        return r;
}

static int mv_sandbox_watch(struct be *be, const char *id, int *ret_fd, struct sh_error *err)
{
        struct ap_pod *p = NULL;
        int r = ap_pod_get(be->priv, id, &p, err), fd;

        if (r < 0)
                return r;
        if (!ap_pod_alive(p)) {
                ap_pod_put(p);
                return -ESRCH;
        }
        fd = fcntl(mv_pod(p)->vm.qemu_pidfd, F_DUPFD_CLOEXEC, 3);
        r = fd < 0 ? sh_err(err, -errno, "dup: %s", strerror(errno)) : 0;
        ap_pod_put(p);
        if (r == 0)
                *ret_fd = fd;
        return r;
}

static int mv_sandbox_stats(struct be *be, const struct be_sandbox_stats_req *req,
                            struct be_sandbox_stats *ret, struct sh_error *err)
{
        int r = ap_sandbox_stats(be, req, ret, err);

        if (r < 0)
                return r;
        if (req->netns) {
                struct sh_netdev *all = NULL;
                size_t n = 0;

                /* The pod's traffic crosses its netns's CNI interface (the tap is its twin). */
                if (sh_netdev_read_netns(req->netns, &all, &n, NULL) == 0) {
                        size_t k = 0;

                        for (size_t i = 0; i < n; i++)
                                if (strcmp(all[i].name, "tap0") != 0)
                                        all[k++] = all[i];
                        ret->ifaces = all;
                        ret->n_ifaces = k;
                        ret->has_network = true;
                }
        }
        return 0;
}

const struct be_ops be_microvm_ops = {
        .name = "microvm",
        .caps = BE_CAP_EXEC | BE_CAP_ATTACH | BE_CAP_STATS | BE_CAP_SHARED_NETNS,
        .init = mv_init,
        .ready = mv_ready,
        .sandbox_create = mv_sandbox_create,
        .sandbox_stop = ap_sandbox_stop,
        .sandbox_remove = ap_sandbox_remove,
        .sandbox_running = ap_sandbox_running,
        .container_create = ap_container_create,
        .container_start = ap_container_start,
        .container_stop = ap_container_stop,
        .container_remove = ap_container_remove,
        .container_status = ap_container_status,
        .container_update = ap_container_update,
        .container_reopen_log = ap_container_reopen_log,
        .exec_sync = ap_exec_sync,
        .exec_stream = ap_exec_stream,
        .container_attach = ap_container_attach,
        .container_stats = ap_container_stats,
        .container_watch = ap_container_watch,
        .sandbox_watch = mv_sandbox_watch,
        .container_fs_usage = ap_container_fs_usage,
        .sandbox_stats = mv_sandbox_stats,
        .fini = mv_fini,
        .sandbox_dial = ap_sandbox_dial,
};
