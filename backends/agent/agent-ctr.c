/*
 * runt-agent: containers. CREATE mounts the overlay (lowers from the host's share, upper and
 * work in state_dir/<id>) and makes the cgroup; START clones the init into a mount namespace
 * of its own (and a pid namespace with PID_NS=1; otherwise it shares the guest's, which is
 * the pod's), sets up its root, and execs. Output is read here and goes to the log (AG_EV_LOG
 * chunks kept until LOG_ACK) and to attachers.
 *
 * Cgroups (v2): <cgroup_root>/pod is the pod, <cgroup_root>/pod/<id> a container.
 */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"
#include "cgweight.h"

struct ctr *ctr_list;
static struct ctr *ctr_dead;
static struct ew oom_w = {.kind = EW_OOM, .fd = -1};

static void oom_watch(struct ctr *c);

struct ctr *ctr_find(const char *id)
{
        for (struct ctr *c = ctr_list; c; c = c->next)
                if (strcmp(c->spec.id, id) == 0)
                        return c;
        return NULL;
}

/* ---- cgroups ---- */

int cg_write(const char *dir, const char *file, const char *val)
{
        char path[PATH_MAX];
        int fd, r = 0;

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (write(fd, val, strlen(val)) < 0)
                r = -errno;
        close(fd);
        return r;
}

static int cg_read(const char *dir, const char *file, char *buf, size_t size)
{
        char path[PATH_MAX];
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        return 0;
}

/* "key value" lines: the value of @key, 0 when absent. */
static int64_t cg_key(const char *dir, const char *file, const char *key)
{
        char buf[8192], *p;
        size_t kl = strlen(key);

        if (cg_read(dir, file, buf, sizeof(buf)) < 0)
                return 0;
        for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
                        return strtoll(p + kl + 1, NULL, 10);
        return 0;
}

static int64_t cg_num(const char *dir, const char *file)
{
        char buf[64];

        if (cg_read(dir, file, buf, sizeof(buf)) < 0 || strncmp(buf, "max", 3) == 0)
                return 0;
        return strtoll(buf, NULL, 10);
}

static char pod_cg[PATH_MAX];

int ctr_setup_cgroups(void)
{
        static const char *const ctl[] = {"+cpu", "+memory", "+pids", "+cpuset"};
        char probe[PATH_MAX];

        snprintf(probe, sizeof(probe), "%s/cgroup.controllers", agent_cfg.cgroup_root);
        if (access(probe, F_OK) < 0)
                return -errno;
        snprintf(pod_cg, sizeof(pod_cg), "%s/pod", agent_cfg.cgroup_root);
        for (size_t i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++)
                cg_write(agent_cfg.cgroup_root, "cgroup.subtree_control", ctl[i]);
        if (mkdir(pod_cg, 0755) < 0 && errno != EEXIST)
                return -errno;
        for (size_t i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++)
                cg_write(pod_cg, "cgroup.subtree_control", ctl[i]);
        agent_cfg.have_cgroups = true;
        return 0;
}

static int cg_apply(const char *dir, const struct ag_resources *r, char *msg, size_t msize)
{
        char v[64];
        int e;

#define W(file, val)                                                                               \
        do {                                                                                       \
                e = cg_write(dir, file, val);                                                      \
                if (e < 0) {                                                                       \
                        snprintf(msg, msize, "%s = %s: %s", file, val, strerror(-e));              \
                        return e;                                                                  \
                }                                                                                  \
        } while (0)
        if (r->mem_limit > 0) {
                snprintf(v, sizeof(v), "%lld", (long long)r->mem_limit);
                W("memory.max", v);
        }
        if (r->mem_swap > 0 && r->mem_limit > 0 && r->mem_swap >= r->mem_limit) {
                /* CRI's swap limit is memory + swap (cgroup v1 memsw). */
                snprintf(v, sizeof(v), "%lld", (long long)(r->mem_swap - r->mem_limit));
                cg_write(dir, "memory.swap.max", v); /* absent without swap accounting */
        } else if (r->mem_swap < 0) {
                cg_write(dir, "memory.swap.max", "max");
        }
        if (r->cpu_quota != 0 || r->cpu_period > 0) {
                int64_t period = r->cpu_period > 0 ? r->cpu_period : 100000;

                if (r->cpu_quota > 0)
                        snprintf(v, sizeof(v), "%lld %lld", (long long)r->cpu_quota,
                                 (long long)period);
                else
                        snprintf(v, sizeof(v), "max %lld", (long long)period);
                W("cpu.max", v);
        }
        if (r->cpu_shares > 0) {
                /* as runtd converts for the lxc backend (common/cgweight.c) */
                snprintf(v, sizeof(v), "%llu",
                         (unsigned long long)sh_cg_shares_to_weight((uint64_t)r->cpu_shares));
                W("cpu.weight", v);
        }
        if (r->pids_max > 0) {
                snprintf(v, sizeof(v), "%lld", (long long)r->pids_max);
                W("pids.max", v);
        }
        if (r->cpuset_cpus && r->cpuset_cpus[0])
                W("cpuset.cpus", r->cpuset_cpus);
        if (r->cpuset_mems && r->cpuset_mems[0])
                W("cpuset.mems", r->cpuset_mems);
#undef W
        return 0;
}

/* ---- status ---- */

static void ctr_status(const struct ctr *c, struct ag_status *s)
{
        memset(s, 0, sizeof(*s));
        snprintf(s->id, sizeof(s->id), "%s", c->spec.id);
        s->state = c->state;
        s->pid = c->pid;
        s->started_ns = c->started_ns;
        s->finished_ns = c->finished_ns;
        s->exit_code = c->exit_code;
        s->oom_killed = c->oom_killed;
        snprintf(s->reason, sizeof(s->reason), "%s", c->reason);
        snprintf(s->message, sizeof(s->message), "%s", c->message);
}

static void send_exit(struct ctr *c)
{
        struct ag_status s;
        struct ag_buf b;

        ctr_status(c, &s);
        ag_buf_init(&b);
        ag_frame_begin(&b, AG_K_EVENT, AG_EV_EXIT, 0, 0);
        ag_status_put(&b, &s);
        if (ag_frame_end(&b) == 0 && agent_connected()) {
                agent_send(&b);
                c->exit_sent = true;
        }
        ag_buf_done(&b);
}

static void send_chunk(struct ctr *c, const struct log_chunk *k)
{
        struct ag_buf b;

        ag_buf_init(&b);
        ag_frame_begin(&b, AG_K_EVENT, AG_EV_LOG, 0, 0);
        ag_put_str(&b, AG_A_ID, c->spec.id);
        ag_put_u64(&b, AG_A_SEQ, (int64_t)k->seq);
        ag_put_u64(&b, AG_A_CHAN, k->chan);
        ag_put_u64(&b, AG_A_TIME_NS, k->time_ns);
        ag_put_bytes(&b, AG_A_DATA, k->data, k->len);
        if (k->partial)
                ag_put_u64(&b, AG_A_PARTIAL, 1);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
}

void ctr_resend(void)
{
        for (struct ctr *c = ctr_list; c; c = c->next) {
                c->exit_sent = false;
                for (struct log_chunk *k = c->log_head; k; k = k->next)
                        send_chunk(c, k);
                if (c->state == AG_ST_EXITED)
                        send_exit(c);
        }
}

static void log_add(struct ctr *c, int chan, const uint8_t *d, size_t n)
{
        struct log_chunk *k = malloc(sizeof(*k) + n);

        if (!k)
                return;
        k->next = NULL;
        k->seq = ++c->log_seq;
        k->time_ns = agent_now_ns();
        k->chan = chan;
        k->partial = d[n - 1] != '\n';
        k->len = n;
        memcpy(k->data, d, n);
        if (c->log_tail)
                c->log_tail->next = k;
        else
                c->log_head = k;
        c->log_tail = k;
        c->log_bytes += n;
        while (c->log_bytes > AGENT_LOG_KEEP && c->log_head != k) {
                struct log_chunk *o = c->log_head;

                c->log_head = o->next;
                c->log_bytes -= o->len;
                free(o);
        }
        send_chunk(c, k);
}

static void log_free(struct ctr *c, uint64_t upto)
{
        while (c->log_head && c->log_head->seq <= upto) {
                struct log_chunk *o = c->log_head;

                c->log_head = o->next;
                c->log_bytes -= o->len;
                free(o);
        }
        if (!c->log_head)
                c->log_tail = NULL;
}

/* Reads once from a container's output; false at EOF (the fd is closed then). */
static bool output_once(struct ctr *c, struct ew *w)
{
        uint8_t buf[AG_MAX_DATA];
        int chan = w == &c->out ? AG_CHAN_STDOUT : AG_CHAN_STDERR;
        ssize_t n = read(w->fd, buf, sizeof(buf));

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return true;
        if (n <= 0) {
                ew_close(w);
                /* A running container's attaches end when it is reaped, after its exit
                 * event: the host asks, at an attach's end, whether it still runs. */
                if (c->out.fd < 0 && c->err.fd < 0 && c->state != AG_ST_RUNNING)
                        st_attach_eof(c);
                return false;
        }
        if (c->spec.log)
                log_add(c, chan, buf, (size_t)n);
        st_attach_output(c, chan, buf, (size_t)n);
        return n == (ssize_t)sizeof(buf);
}

void ctr_output(struct ew *w)
{
        output_once(w->obj, w);
}

void ctr_throttle(bool stop)
{
        for (struct ctr *c = ctr_list; c; c = c->next) {
                /* Without a host there is nothing to wait for: logs are kept capped. */
                ew_set(&c->out, stop ? 0 : EPOLLIN);
                ew_set(&c->err, stop ? 0 : EPOLLIN);
        }
}

/* ---- create ---- */

static bool valid_id(const char *id)
{
        size_t n = strlen(id);

        if (n == 0 || n > 64 || strcmp(id, "layers") == 0) /* state_dir/layers: the layers */
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)id[i]) && id[i] != '-' && id[i] != '_')
                        return false;
        return true;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)ftw;
        if (flag == FTW_DP)
                rmdir(path);
        else
                unlink(path);
        return 0;
}

static void rm_rf(const char *path)
{
        nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void ctr_free(struct ctr *c)
{
        free(c->bpf);
        log_free(c, UINT64_MAX);
        ag_ctr_spec_done(&c->spec);
        free(c);
}

static int mount_overlay(struct ctr *c, char *msg, size_t msize)
{
        size_t cap = 4096, len = 0;
        char *opts = malloc(cap);
        size_t n = 0;
        int r = 0;

        if (!opts)
                return -ENOMEM;
        while (c->spec.lower[n])
                n++;
        len = (size_t)snprintf(opts, cap, "lowerdir=");
        for (size_t i = n; i-- > 0;) {
                const char *l = c->spec.lower[i];

                if (l[0] != '/' || strpbrk(l, ",:")) {
                        snprintf(msg, msize, "lower '%s': not an absolute path without , or :", l);
                        free(opts);
                        return -EINVAL;
                }
                if (len + strlen(l) + 2 >= cap) {
                        snprintf(msg, msize, "too many lower layers for the mount options");
                        free(opts);
                        return -E2BIG;
                }
                len += (size_t)snprintf(opts + len, cap - len, "%s%s", l, i ? ":" : "");
        }
        /* In a user namespace overlay cannot use trusted.* xattrs: its marks are in user.* (the
         * layer writer puts the opaque marks there, agent-layer.c). */
        snprintf(opts + len, cap - len, ",upperdir=%s/upper,workdir=%s/work%s", c->dir, c->dir,
                 agent_cfg.userns ? ",userxattr" : "");
        if (n == 0) {
                snprintf(msg, msize, "no lower layer");
                r = -EINVAL;
        } else if (mount("overlay", c->rootfs, "overlay", 0, opts) < 0) {
                r = -errno;
                snprintf(msg, msize, "mount overlay: %s", strerror(errno));
        }
        free(opts);
        return r;
}

void ctr_op_create(const struct ag_hdr *h, const uint8_t *p)
{
        struct ctr *c = calloc(1, sizeof(*c));
        char msg[256] = "";
        int r;

        if (!c) {
                agent_resp_err(h, ENOMEM, "out of memory");
                return;
        }
        c->out = (struct ew){.kind = EW_CTR_OUT, .obj = c, .fd = -1};
        c->err = (struct ew){.kind = EW_CTR_ERR, .obj = c, .fd = -1};
        c->in_fd = c->mntns_fd = c->pidns_fd = c->cgns_fd = c->oom_wd = -1;
        r = ag_ctr_spec_decode(p, h->len, &c->spec);
        if (r < 0) {
                free(c);
                agent_resp_err(h, -r, "bad container spec");
                return;
        }
        if (!valid_id(c->spec.id) || ctr_find(c->spec.id)) {
                agent_resp_err(h, valid_id(c->spec.id) ? EEXIST : EINVAL, "container id '%s'",
                               c->spec.id);
                ctr_free(c);
                return;
        }
        if (c->spec.seccomp &&
            (r = seccomp_compile(c->spec.seccomp, c->spec.seccomp_len, c->spec.caps, &c->bpf,
                                 &c->bpf_len, msg, sizeof(msg))) < 0) {
                agent_resp_err(h, -r, "seccomp: %s", msg);
                ctr_free(c);
                return;
        }
        snprintf(c->dir, sizeof(c->dir), "%s/%s", agent_cfg.state_dir, c->spec.id);
        snprintf(c->rootfs, sizeof(c->rootfs), "%s/rootfs", c->dir);
        if (mkdir(c->dir, 0700) < 0) {
                agent_resp_err(h, errno, "mkdir %s: %s", c->dir, strerror(errno));
                ctr_free(c);
                return;
        }
        char sub[PATH_MAX];

        snprintf(sub, sizeof(sub), "%s/upper", c->dir);
        mkdir(sub, 0755);
        snprintf(sub, sizeof(sub), "%s/work", c->dir);
        mkdir(sub, 0700);
        mkdir(c->rootfs, 0755);
        r = mount_overlay(c, msg, sizeof(msg));
        if (r == 0)
                c->mounted = true;
        if (r == 0 && agent_cfg.have_cgroups) {
                snprintf(c->cgroup, sizeof(c->cgroup), "%s/%s", pod_cg, c->spec.id);
                if (mkdir(c->cgroup, 0755) < 0 && errno != EEXIST) {
                        r = -errno;
                        snprintf(msg, sizeof(msg), "mkdir %s: %s", c->cgroup, strerror(errno));
                        c->cgroup[0] = 0;
                } else {
                        r = cg_apply(c->cgroup, &c->spec.res, msg, sizeof(msg));
                }
        }
        if (r < 0) {
                agent_resp_err(h, -r, "%s", msg);
                if (c->mounted)
                        umount2(c->rootfs, MNT_DETACH);
                if (c->cgroup[0])
                        rmdir(c->cgroup);
                rm_rf(c->dir);
                ctr_free(c);
                return;
        }
        c->state = AG_ST_CREATED;
        c->next = ctr_list;
        ctr_list = c;
        agent_resp_ok(h);
}

/* ---- the container's init, in the child ---- */

/* An O_PATH fd of @path inside the root @rootfd (symlinks resolved inside it), made when
 * missing: a directory, or a file when @file. */
static int open_in_root(int rootfd, const char *path, bool file)
{
        struct open_how how = {.flags = O_PATH | O_CLOEXEC,
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        char buf[PATH_MAX], *s, *save = NULL;
        int fd, dfd;

        while (*path == '/')
                path++;
        if (!*path)
                return (int)syscall(SYS_openat2, rootfd, ".", &how, sizeof(how));
        fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
        if (fd >= 0 || errno != ENOENT)
                return fd < 0 ? -errno : fd;
        snprintf(buf, sizeof(buf), "%s", path);
        dfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
        for (s = strtok_r(buf, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
                bool last = !save || !*save;
                int nfd;

                if (strcmp(s, "..") == 0) {
                        close(dfd);
                        return -EINVAL;
                }
                nfd = (int)syscall(SYS_openat2, dfd, s, &how, sizeof(how));
                if (nfd < 0 && errno == ENOENT) {
                        if (last && file) {
                                int f = openat(dfd, s, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
                                               0644);
                                if (f >= 0)
                                        close(f);
                        } else {
                                mkdirat(dfd, s, 0755);
                        }
                        nfd = (int)syscall(SYS_openat2, dfd, s, &how, sizeof(how));
                }
                close(dfd);
                if (nfd < 0)
                        return -errno;
                dfd = nfd;
        }
        return dfd;
}

static int mount_at(int rootfd, const char *src, const char *dst, const char *type,
                    unsigned long fl, const char *data, bool file, char *msg, size_t msize)
{
        char at[64];
        int fd = open_in_root(rootfd, dst, file), r = 0;

        if (fd < 0) {
                snprintf(msg, msize, "mount point %s: %s", dst, strerror(-fd));
                return fd;
        }
        snprintf(at, sizeof(at), "/proc/self/fd/%d", fd);
        if (mount(src, at, type, fl, data) < 0) {
                r = -errno;
                snprintf(msg, msize, "mount %s on %s: %s", src, dst, strerror(errno));
        } else if ((fl & MS_BIND) && (fl & MS_RDONLY)) {
                /* A bind mount is made read-only by a remount of it. */
                close(fd);
                fd = open_in_root(rootfd, dst, file);
                snprintf(at, sizeof(at), "/proc/self/fd/%d", fd);
                if (fd < 0 || mount(NULL, at, NULL,
                                    MS_REMOUNT | MS_BIND | MS_RDONLY |
                                            (fl & (MS_NOSUID | MS_NODEV | MS_NOEXEC)),
                                    NULL) < 0) {
                        r = -errno;
                        snprintf(msg, msize, "remount %s read-only: %s", dst, strerror(errno));
                }
        }
        if (fd >= 0)
                close(fd);
        return r;
}

static int setup_dev(int rootfd, bool privileged, char *msg, size_t msize)
{
        static const struct {
                const char *name;
                unsigned maj, min;
        } nodes[] = {{"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
                     {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
        int r, dfd;

        if (privileged)
                return mount_at(rootfd, "/dev", "/dev", NULL, MS_BIND | MS_REC, NULL, false, msg,
                                msize);
        r = mount_at(rootfd, "tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC,
                     "mode=755,size=65536k", false, msg, msize);
        if (r < 0)
                return r;
        dfd = open_in_root(rootfd, "/dev", false);
        if (dfd < 0)
                return dfd;
        char at[64];

        snprintf(at, sizeof(at), "/proc/self/fd/%d", dfd);
        int real = open(at, O_DIRECTORY | O_RDONLY | O_CLOEXEC);

        close(dfd);
        if (real < 0)
                return -errno;
        for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
                char src[32], dst[32];

                /* In a user namespace mknod fails, and a node on this tmpfs would not open
                 * anyway (the kernel makes it nodev there): the agent's own device is bind
                 * mounted on an empty file, as LXC makes an unprivileged CT's /dev. */
                if (agent_cfg.userns) {
                        snprintf(src, sizeof(src), "/dev/%s", nodes[i].name);
                        snprintf(dst, sizeof(dst), "/dev/%s", nodes[i].name);
                        r = mount_at(rootfd, src, dst, NULL, MS_BIND, NULL, true, msg, msize);
                        if (r < 0) {
                                close(real);
                                return r;
                        }
                        continue;
                }
                if (mknodat(real, nodes[i].name, S_IFCHR | 0666,
                            makedev(nodes[i].maj, nodes[i].min)) < 0) {
                        r = -errno;
                        snprintf(msg, msize, "mknod /dev/%s: %s", nodes[i].name, strerror(errno));
                        close(real);
                        return r;
                }
        }
        symlinkat("pts/ptmx", real, "ptmx");
        symlinkat("/proc/self/fd", real, "fd");
        symlinkat("/proc/self/fd/0", real, "stdin");
        symlinkat("/proc/self/fd/1", real, "stdout");
        symlinkat("/proc/self/fd/2", real, "stderr");
        symlinkat("/proc/kcore", real, "core");
        close(real);
        r = mount_at(rootfd, "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                     "newinstance,ptmxmode=0666,mode=0620,gid=5", false, msg, msize);
        if (r == 0)
                r = mount_at(rootfd, "shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                             "mode=1777,size=65536k", false, msg, msize);
        if (r == 0)
                mount_at(rootfd, "mqueue", "/dev/mqueue", "mqueue",
                         MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, false, msg, msize);
        return r;
}

static bool is_dir(const char *p)
{
        struct stat st;

        return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int setup_root(struct ctr *c, char *msg, size_t msize)
{
        const struct ag_ctr_spec *s = &c->spec;
        unsigned long nfl = MS_NOSUID | MS_NODEV | MS_NOEXEC;
        int rootfd, r;

        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) {
                snprintf(msg, msize, "make / rslave: %s", strerror(errno));
                return -errno;
        }
        /* A mount of its own, so that pivot_root takes it and it can be made read-only. */
        if (mount(c->rootfs, c->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) {
                snprintf(msg, msize, "bind rootfs: %s", strerror(errno));
                return -errno;
        }
        rootfd = open(c->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return -errno;
        r = mount_at(rootfd, "proc", "/proc", "proc", nfl, NULL, false, msg, msize);
        if (r == 0)
                r = setup_dev(rootfd, s->privileged, msg, msize);
        if (r == 0)
                r = mount_at(rootfd, "sysfs", "/sys", "sysfs",
                             nfl | (s->privileged ? 0 : MS_RDONLY), NULL, false, msg, msize);
        if (r == 0 && agent_cfg.have_cgroups)
                r = mount_at(rootfd, "cgroup2", "/sys/fs/cgroup", "cgroup2",
                             nfl | (s->privileged ? 0 : MS_RDONLY), NULL, false, msg, msize);
        for (size_t i = 0; r == 0 && i < s->n_mounts; i++) {
                const struct ag_mount *m = &s->mounts[i];
                unsigned long prop[] = {MS_PRIVATE, MS_SLAVE, MS_SHARED};
                char at[64];
                int fd;

                r = mount_at(rootfd, m->src, m->dst, NULL,
                             MS_BIND | MS_REC | (m->ro ? MS_RDONLY : 0), NULL, !is_dir(m->src), msg,
                             msize);
                if (r < 0)
                        break;
                fd = open_in_root(rootfd, m->dst, false);
                if (fd >= 0) {
                        snprintf(at, sizeof(at), "/proc/self/fd/%d", fd);
                        mount(NULL, at, NULL,
                              MS_REC | prop[m->propagation >= 0 && m->propagation <= 2
                                                    ? m->propagation
                                                    : 0],
                              NULL);
                        close(fd);
                }
        }
        for (size_t i = 0; r == 0 && i < s->n_devices; i++)
                r = mount_at(rootfd, s->devices[i].src, s->devices[i].dst, NULL, MS_BIND, NULL,
                             true, msg, msize);
        for (size_t i = 0; r == 0 && s->masked[i]; i++) {
                char at[64];
                struct stat st;
                int fd;

                /* Only what exists (in the image, or the kernel's under /proc and /sys). */
                struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};

                fd = (int)syscall(SYS_openat2, rootfd, s->masked[i], &how, sizeof(how));
                if (fd < 0)
                        continue;
                snprintf(at, sizeof(at), "/proc/self/fd/%d", fd);
                if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
                        mount("tmpfs", at, "tmpfs", MS_RDONLY | nfl, "size=0");
                else
                        mount("/dev/null", at, NULL, MS_BIND, NULL);
                close(fd);
        }
        for (size_t i = 0; r == 0 && s->ro_paths[i]; i++) {
                struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
                char at[64];
                int fd = (int)syscall(SYS_openat2, rootfd, s->ro_paths[i], &how, sizeof(how));

                if (fd < 0)
                        continue;
                snprintf(at, sizeof(at), "/proc/self/fd/%d", fd);
                if (mount(at, at, NULL, MS_BIND | MS_REC, NULL) == 0) {
                        close(fd);
                        fd = (int)syscall(SYS_openat2, rootfd, s->ro_paths[i], &how, sizeof(how));
                        snprintf(at, sizeof(at), "/proc/self/fd/%d", fd);
                        if (fd >= 0)
                                mount(NULL, at, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC,
                                      NULL);
                }
                if (fd >= 0)
                        close(fd);
        }
        for (size_t i = 0; r == 0 && s->sysctls[i]; i++) {
                char path[PATH_MAX], *eq = strchr(s->sysctls[i], '=');
                size_t kl;

                if (!eq || strstr(s->sysctls[i], ".."))
                        continue;
                kl = (size_t)(eq - s->sysctls[i]);
                snprintf(path, sizeof(path), "/proc/sys/%.*s", (int)kl, s->sysctls[i]);
                for (char *q = path + 10; *q; q++)
                        if (*q == '.')
                                *q = '/';
                cg_write("/", path + 1, eq + 1);
        }
        /* The working dir is made when the image lacks it, as runc does. */
        if (r == 0 && s->cwd && s->cwd[0]) {
                int fd = open_in_root(rootfd, s->cwd, false);

                if (fd < 0) {
                        r = fd;
                        snprintf(msg, msize, "working dir %s: %s", s->cwd, strerror(-r));
                } else {
                        close(fd);
                }
        }
        close(rootfd);
        if (r < 0)
                return r;
        if (chdir(c->rootfs) < 0)
                return -errno;
        if (syscall(SYS_pivot_root, ".", ".") == 0) {
                umount2(".", MNT_DETACH);
        } else {
                /* The initramfs's rootfs cannot be pivoted from: move and chroot. */
                if (mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0) {
                        snprintf(msg, msize, "switching root: %s", strerror(errno));
                        return -errno;
                }
        }
        if (chdir("/") < 0)
                return -errno;
        if (s->readonly_root &&
            mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) {
                snprintf(msg, msize, "read-only root: %s", strerror(errno));
                return -errno;
        }
        return 0;
}

/* ---- start ---- */

static int send_fd(int sock, int fd)
{
        char c = 0, cbuf[CMSG_SPACE(sizeof(int))] = {0};
        struct iovec iov = {.iov_base = &c, .iov_len = 1};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cbuf,
                            .msg_controllen = sizeof(cbuf)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static int recv_fd(int sock)
{
        char c, cbuf[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {.iov_base = &c, .iov_len = 1};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cbuf,
                            .msg_controllen = sizeof(cbuf)};
        struct cmsghdr *cm;
        ssize_t n;
        int fd;

        do
                n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
                return n < 0 ? -errno : -EPIPE;
        cm = CMSG_FIRSTHDR(&mh);
        if (!cm || cm->cmsg_type != SCM_RIGHTS)
                return -EBADMSG;
        memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        return fd;
}

int ctr_open_pty(struct ctr *c, int *master, int *slave)
{
        char path[64];
        int m, s;

        /* From the container's own devpts, so that its programs find their terminal there. */
        snprintf(path, sizeof(path), "/proc/%d/root/dev/pts/ptmx", c->pid);
        m = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m < 0) {
                agent_log("%s: %s", path, strerror(errno));
                m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        }
        if (m < 0)
                return -errno;
        if (unlockpt(m) < 0 || (s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
                int r = -errno;

                close(m);
                return r;
        }
        *master = m;
        *slave = s;
        return 0;
}

pid_t ctr_fork(struct ctr *c)
{
        static int self_pidns = -2;
        pid_t pid;

        if (!c || c->pidns_fd < 0 || !c->spec.own_pid_ns)
                return fork();
        if (self_pidns == -2)
                self_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
        if (self_pidns < 0 || setns(c->pidns_fd, CLONE_NEWPID) < 0)
                return -1;
        pid = fork();
        if (pid != 0)
                setns(self_pidns, CLONE_NEWPID);
        return pid;
}

static void child_fail(int efd, int err, const char *msg)
{
        char buf[300];
        int n = snprintf(buf, sizeof(buf), "%d:%s", err, msg);

        if (write(efd, buf, (size_t)n) < 0)
                _exit(127);
        _exit(127);
}

/* Runs in the cloned child: never returns. */
static void ctr_init_child(struct ctr *c, int efd, int fd0, int fd1, int fd2, int ptysock)
{
        char msg[256] = "";
        int r;

        setsid();
        if (dup2(fd0, 0) < 0 || dup2(fd1, 1) < 0 || dup2(fd2, 2) < 0)
                child_fail(efd, errno, "stdio");
        /* Nothing of the agent's signal set-up (SIGCHLD blocked, SIGPIPE ignored) stays. */
        sigset_t none;

        for (int sig = 1; sig < NSIG; sig++)
                signal(sig, SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (c->cgroup[0]) {
                r = cg_write(c->cgroup, "cgroup.procs", "0");
                if (r < 0)
                        child_fail(efd, -r, "joining the cgroup");
                unshare(CLONE_NEWCGROUP);
        }
        if (c->spec.res.has_oom_score_adj) {
                char v[32];

                snprintf(v, sizeof(v), "%lld", (long long)c->spec.res.oom_score_adj);
                cg_write("/proc/self", "oom_score_adj", v);
        }
        umask(0);
        r = setup_root(c, msg, sizeof(msg));
        umask(022);
        if (r < 0)
                child_fail(efd, -r, msg[0] ? msg : strerror(-r));
        if (c->spec.tty) {
                /* The terminal comes from the container's devpts; the agent gets its master. */
                int m = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC), sl = -1;

                if (m < 0 || unlockpt(m) < 0 || (sl = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY)) < 0)
                        child_fail(efd, errno, "terminal");
                if (dup2(sl, 0) < 0 || dup2(sl, 1) < 0 || dup2(sl, 2) < 0 ||
                    ioctl(0, TIOCSCTTY, 0) < 0)
                        child_fail(efd, errno, "terminal as stdio");
                if (sl > 2)
                        close(sl);
                r = send_fd(ptysock, m);
                if (r < 0)
                        child_fail(efd, -r, "passing the terminal");
                close(m);
                close(ptysock);
        }
        r = ctr_child_exec(c, c->spec.argv, false, msg, sizeof(msg));
        child_fail(efd, -r, msg);
}

void ctr_op_start(const struct ag_hdr *h, const uint8_t *p)
{
        char *id = NULL, ebuf[300] = "";
        int pipes[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}}, ep[2] = {-1, -1}, r;
        int cfd[3] = {-1, -1, -1}; /* the child's stdio */
        int null = -1, sp[2] = {-1, -1};
        struct ctr *c;
        pid_t pid;
        ssize_t n;

        if (ag_find_str(p, h->len, AG_A_ID, &id) < 0 || !(c = ctr_find(id))) {
                agent_resp_err(h, ENOENT, "no container '%s'", id ? id : "");
                free(id);
                return;
        }
        free(id);
        if (c->state != AG_ST_CREATED) {
                agent_resp_err(h, EALREADY, "container %s was started", c->spec.id);
                return;
        }
        null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (c->spec.tty) {
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
                        agent_resp_err(h, errno, "socketpair: %s", strerror(errno));
                        close(null);
                        return;
                }
                cfd[0] = cfd[1] = cfd[2] = null;
        } else {
                if (pipe2(pipes[1], O_CLOEXEC) < 0 || pipe2(pipes[2], O_CLOEXEC) < 0 ||
                    (c->spec.stdin_open && pipe2(pipes[0], O_CLOEXEC) < 0)) {
                        agent_resp_err(h, errno, "pipe: %s", strerror(errno));
                        for (int i = 0; i < 3; i++)
                                for (int j = 0; j < 2; j++)
                                        if (pipes[i][j] >= 0)
                                                close(pipes[i][j]);
                        close(null);
                        return;
                }
                c->out.fd = pipes[1][0];
                c->err.fd = pipes[2][0];
                c->in_fd = pipes[0][1];
                cfd[0] = pipes[0][0] >= 0 ? pipes[0][0] : null;
                cfd[1] = pipes[1][1];
                cfd[2] = pipes[2][1];
        }
        if (pipe2(ep, O_CLOEXEC) < 0) {
                ep[0] = ep[1] = -1;
        }
        pid = (pid_t)syscall(SYS_clone,
                             CLONE_NEWNS | (c->spec.own_pid_ns ? CLONE_NEWPID : 0) | SIGCHLD, NULL,
                             NULL, NULL, NULL);
        if (pid == 0) {
                close(ep[0]);
                ctr_init_child(c, ep[1], cfd[0], cfd[1], cfd[2], sp[1]);
        }
        close(ep[1]);
        if (c->spec.tty) {
                close(sp[1]);
                if (pid > 0) {
                        int m = recv_fd(sp[0]);

                        if (m >= 0) {
                                c->out.fd = m;
                                c->in_fd = c->spec.stdin_open ? fcntl(m, F_DUPFD_CLOEXEC, 3) : -1;
                        }
                }
                close(sp[0]);
        } else
                for (int i = 0; i < 3; i++)
                        if (pipes[i][i == 0 ? 0 : 1] >= 0)
                                close(pipes[i][i == 0 ? 0 : 1]);
        close(null);
        if (pid < 0) {
                r = errno;
                ew_close(&c->out);
                ew_close(&c->err);
                if (c->in_fd >= 0)
                        close(c->in_fd);
                c->in_fd = -1;
                close(ep[0]);
                agent_resp_err(h, r, "clone: %s", strerror(r));
                return;
        }
        c->pid = pid;
        c->started_ns = agent_now_ns();
        c->state = AG_ST_RUNNING;
        do
                n = read(ep[0], ebuf, sizeof(ebuf) - 1);
        while (n < 0 && errno == EINTR);
        close(ep[0]);
        if (n > 0) {
                /* It failed before the exec: the reaper records the exit. */
                ebuf[n] = 0;
                char *colon = strchr(ebuf, ':');
                int err = atoi(ebuf);

                snprintf(c->reason, sizeof(c->reason), "StartError");
                snprintf(c->message, sizeof(c->message), "%s", colon ? colon + 1 : ebuf);
                agent_resp_err(h, err > 0 ? err : EIO, "start: %s", c->message);
                /* Its output fds stay until it is reaped. */
                ew_set(&c->out, EPOLLIN);
                ew_set(&c->err, EPOLLIN);
                return;
        }
        if (c->cgroup[0]) {
                c->oom_base = c->oom_seen = cg_key(c->cgroup, "memory.events", "oom_kill");
                oom_watch(c);
        }
        char ns[64];

        snprintf(ns, sizeof(ns), "/proc/%d/ns/mnt", pid);
        c->mntns_fd = open(ns, O_RDONLY | O_CLOEXEC);
        snprintf(ns, sizeof(ns), "/proc/%d/ns/pid", pid);
        c->pidns_fd = open(ns, O_RDONLY | O_CLOEXEC);
        snprintf(ns, sizeof(ns), "/proc/%d/ns/cgroup", pid);
        c->cgns_fd = c->cgroup[0] ? open(ns, O_RDONLY | O_CLOEXEC) : -1;
        if (c->in_fd >= 0)
                fcntl(c->in_fd, F_SETFL, fcntl(c->in_fd, F_GETFL) | O_NONBLOCK);
        if (c->out.fd >= 0)
                fcntl(c->out.fd, F_SETFL, fcntl(c->out.fd, F_GETFL) | O_NONBLOCK);
        if (c->err.fd >= 0)
                fcntl(c->err.fd, F_SETFL, fcntl(c->err.fd, F_GETFL) | O_NONBLOCK);
        ew_set(&c->out, agent_outq() > (8u << 20) ? 0 : EPOLLIN);
        ew_set(&c->err, agent_outq() > (8u << 20) ? 0 : EPOLLIN);

        struct ag_buf b;

        ag_buf_init(&b);
        agent_resp_begin(&b, h);
        ag_put_u64(&b, AG_A_PID, pid);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
}

static void send_oom(struct ctr *c)
{
        struct ag_buf b;

        ag_buf_init(&b);
        ag_frame_begin(&b, AG_K_EVENT, AG_EV_OOM, 0, 0);
        ag_put_str(&b, AG_A_ID, c->spec.id);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
}

/* memory.events changed: an OOM kill in a container that may go on running. */
void ctr_oom_events(struct ew *w)
{
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        ssize_t n;

        while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *e = (const struct inotify_event *)p;

                        for (struct ctr *c = ctr_list; c; c = c->next) {
                                int64_t k;

                                if (c->oom_wd != e->wd || c->state != AG_ST_RUNNING)
                                        continue;
                                k = cg_key(c->cgroup, "memory.events", "oom_kill");
                                if (k > c->oom_seen) {
                                        c->oom_seen = k;
                                        send_oom(c);
                                }
                        }
                        p += sizeof(*e) + e->len;
                }
        }
}

static void oom_watch(struct ctr *c)
{
        char path[PATH_MAX];

        if (!c->cgroup[0])
                return;
        if (oom_w.fd < 0) {
                oom_w.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
                ew_set(&oom_w, EPOLLIN);
        }
        snprintf(path, sizeof(path), "%s/memory.events", c->cgroup);
        if (oom_w.fd >= 0)
                c->oom_wd = inotify_add_watch(oom_w.fd, path, IN_MODIFY);
}

static void oom_unwatch(struct ctr *c)
{
        if (c->oom_wd >= 0 && oom_w.fd >= 0)
                inotify_rm_watch(oom_w.fd, c->oom_wd);
        c->oom_wd = -1;
}

bool ctr_reaped(pid_t pid, int st)
{
        struct ctr *c;

        for (c = ctr_list; c; c = c->next)
                if (c->state == AG_ST_RUNNING && c->pid == pid)
                        break;
        if (!c)
                return false;
        c->state = AG_ST_EXITED;
        c->finished_ns = agent_now_ns();
        c->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        oom_unwatch(c);
        if (c->cgroup[0]) {
                int64_t k = cg_key(c->cgroup, "memory.events", "oom_kill");

                /* OOMKilled: the kernel killed one of its processes while it ran. */
                c->oom_killed = k > c->oom_base;
                if (k > c->oom_seen)
                        send_oom(c);
        }
        if (!c->reason[0])
                snprintf(c->reason, sizeof(c->reason), "%s",
                         c->oom_killed       ? "OOMKilled"
                         : c->exit_code == 0 ? "Completed"
                                             : "Error");
        /* What it wrote before it ended, then its output is closed: whatever still holds
         * the pipes (a background process of a shared pid namespace) is not waited for. */
        while (c->out.fd >= 0 && output_once(c, &c->out))
                ;
        while (c->err.fd >= 0 && output_once(c, &c->err))
                ;
        ew_close(&c->out);
        ew_close(&c->err);
        if (c->in_fd >= 0)
                close(c->in_fd);
        c->in_fd = -1;
        if (c->mntns_fd >= 0)
                close(c->mntns_fd);
        if (c->pidns_fd >= 0)
                close(c->pidns_fd);
        if (c->cgns_fd >= 0)
                close(c->cgns_fd);
        c->mntns_fd = c->pidns_fd = c->cgns_fd = -1;
        /* The exit first: an attach client's end has the host ask whether it still runs. */
        send_exit(c);
        st_attach_eof(c);
        return true;
}

/* ---- the other ops ---- */

static struct ctr *req_ctr(const struct ag_hdr *h, const uint8_t *p)
{
        char *id = NULL;
        struct ctr *c;

        if (ag_find_str(p, h->len, AG_A_ID, &id) < 0) {
                agent_resp_err(h, EINVAL, "no ID");
                return NULL;
        }
        c = ctr_find(id);
        if (!c)
                agent_resp_err(h, ENOENT, "no container '%s'", id);
        free(id);
        return c;
}

static void kill_cgroup(struct ctr *c, int sig)
{
        char buf[65536], *s, *save = NULL;

        if (!c->cgroup[0] || cg_read(c->cgroup, "cgroup.procs", buf, sizeof(buf)) < 0)
                return;
        for (s = strtok_r(buf, "\n", &save); s; s = strtok_r(NULL, "\n", &save))
                kill((pid_t)atoi(s), sig);
}

void ctr_op_signal(const struct ag_hdr *h, const uint8_t *p)
{
        struct ctr *c = req_ctr(h, p);
        int64_t sig = 0, all = 0;

        if (!c)
                return;
        ag_find_i64(p, h->len, AG_A_SIGNAL, &sig);
        ag_find_i64(p, h->len, AG_A_ALL, &all);
        if (sig <= 0 || sig >= NSIG) {
                agent_resp_err(h, EINVAL, "bad signal %lld", (long long)sig);
                return;
        }
        if (c->state == AG_ST_CREATED) {
                agent_resp_err(h, EINVAL, "container %s is not started", c->spec.id);
                return;
        }
        if (c->state == AG_ST_RUNNING) {
                if (all) {
                        kill_cgroup(c, (int)sig);
                        kill(-c->pid, (int)sig);
                }
                kill(c->pid, (int)sig);
        }
        agent_resp_ok(h);
}

void ctr_op_status(const struct ag_hdr *h, const uint8_t *p)
{
        struct ctr *c = req_ctr(h, p);
        struct ag_status s;
        struct ag_buf b;

        if (!c)
                return;
        ctr_status(c, &s);
        ag_buf_init(&b);
        agent_resp_begin(&b, h);
        ag_status_put(&b, &s);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
}

void ctr_op_list(const struct ag_hdr *h, const uint8_t *p)
{
        struct ag_status s;
        struct ag_buf b;

        (void)p;
        ag_buf_init(&b);
        agent_resp_begin(&b, h);
        for (struct ctr *c = ctr_list; c; c = c->next) {
                size_t off = ag_nest_begin(&b, AG_A_STATUS);

                ctr_status(c, &s);
                ag_status_put(&b, &s);
                ag_nest_end(&b, off);
        }
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        else
                agent_resp_err(h, E2BIG, "too many containers for one answer");
        ag_buf_done(&b);
}

void ctr_op_remove(const struct ag_hdr *h, const uint8_t *p)
{
        struct ctr *c = req_ctr(h, p), **pp;

        if (!c)
                return;
        if (c->state == AG_ST_RUNNING) {
                agent_resp_err(h, EBUSY, "container %s is running", c->spec.id);
                return;
        }
        st_ctr_gone(c);
        oom_unwatch(c);
        ew_close(&c->out);
        ew_close(&c->err);
        if (c->in_fd >= 0)
                close(c->in_fd);
        c->in_fd = -1;
        if (c->mounted && umount2(c->rootfs, MNT_DETACH) < 0 && errno != EINVAL)
                agent_log("umount %s: %s", c->rootfs, strerror(errno));
        if (c->cgroup[0]) {
                kill_cgroup(c, SIGKILL);
                for (int i = 0; i < 100 && rmdir(c->cgroup) < 0 && errno == EBUSY; i++)
                        usleep(1000);
        }
        rm_rf(c->dir);
        for (pp = &ctr_list; *pp != c; pp = &(*pp)->next)
                ;
        *pp = c->next;
        c->dead = true;
        c->next = ctr_dead;
        ctr_dead = c;
        agent_resp_ok(h);
}

void ctr_gc(void)
{
        while (ctr_dead) {
                struct ctr *c = ctr_dead;

                ctr_dead = c->next;
                ctr_free(c);
        }
}

void ctr_op_update(const struct ag_hdr *h, const uint8_t *p)
{
        struct ctr *c = req_ctr(h, p);
        struct ag_resources r;
        char msg[256] = "";
        int e;

        if (!c)
                return;
        e = ag_resources_decode(p, h->len, &r);
        if (e < 0) {
                agent_resp_err(h, -e, "bad resources");
                return;
        }
        if (c->cgroup[0] && (e = cg_apply(c->cgroup, &r, msg, sizeof(msg))) < 0) {
                agent_resp_err(h, -e, "%s", msg);
                ag_resources_done(&r);
                return;
        }
        ag_resources_done(&c->spec.res);
        c->spec.res = r;
        agent_resp_ok(h);
}

struct walk_sum {
        int64_t bytes, inodes;
};
static struct walk_sum walk_sum;

static int walk_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)path;
        (void)flag;
        (void)ftw;
        walk_sum.bytes += (int64_t)st->st_blocks * 512;
        walk_sum.inodes++;
        return 0;
}

static void stats_of(const char *cg, struct ag_stats *s)
{
        memset(s, 0, sizeof(*s));
        s->timestamp_ns = agent_now_ns();
        if (!cg || !cg[0])
                return;
        s->cpu_usage_ns = cg_key(cg, "cpu.stat", "usage_usec") * 1000;
        s->cpu_user_ns = cg_key(cg, "cpu.stat", "user_usec") * 1000;
        s->cpu_sys_ns = cg_key(cg, "cpu.stat", "system_usec") * 1000;
        s->mem_usage = cg_num(cg, "memory.current");
        int64_t inactive = cg_key(cg, "memory.stat", "inactive_file");

        s->mem_working_set = s->mem_usage > inactive ? s->mem_usage - inactive : 0;
        s->mem_rss = cg_key(cg, "memory.stat", "anon");
        s->mem_cache = cg_key(cg, "memory.stat", "file");
        s->mem_limit = cg_num(cg, "memory.max");
        s->pgfault = cg_key(cg, "memory.stat", "pgfault");
        s->pgmajfault = cg_key(cg, "memory.stat", "pgmajfault");
        s->swap_usage = cg_num(cg, "memory.swap.current");
        s->pids_current = cg_num(cg, "pids.current");
        s->oom_events = cg_key(cg, "memory.events", "oom_kill");
}

static void send_stats(const struct ag_hdr *h, const struct ag_stats *s)
{
        struct ag_buf b;

        ag_buf_init(&b);
        agent_resp_begin(&b, h);
        ag_stats_put(&b, s);
        if (ag_frame_end(&b) == 0)
                agent_send(&b);
        ag_buf_done(&b);
}

void ctr_op_stats(const struct ag_hdr *h, const uint8_t *p)
{
        struct ctr *c = req_ctr(h, p);
        struct ag_stats s;
        char upper[PATH_MAX];

        if (!c)
                return;
        stats_of(c->cgroup, &s);
        snprintf(upper, sizeof(upper), "%s/upper", c->dir);
        walk_sum = (struct walk_sum){0, 0};
        nftw(upper, walk_entry, 32, FTW_PHYS | FTW_MOUNT);
        s.fs_used = walk_sum.bytes;
        s.fs_inodes = walk_sum.inodes;
        send_stats(h, &s);
}

void ctr_op_pod_stats(const struct ag_hdr *h, const uint8_t *p)
{
        struct ag_stats s;

        (void)p;
        stats_of(agent_cfg.have_cgroups ? pod_cg : NULL, &s);
        send_stats(h, &s);
}

void ctr_op_log_ack(const struct ag_hdr *h, const uint8_t *p)
{
        struct ctr *c = req_ctr(h, p);
        int64_t seq = 0;

        if (!c)
                return;
        ag_find_i64(p, h->len, AG_A_SEQ, &seq);
        if (seq > 0)
                log_free(c, (uint64_t)seq);
        agent_resp_ok(h);
}

void ctr_kill_all(void)
{
        for (struct ctr *c = ctr_list; c; c = c->next)
                if (c->state == AG_ST_RUNNING) {
                        kill_cgroup(c, SIGKILL);
                        kill(-c->pid, SIGKILL);
                        kill(c->pid, SIGKILL);
                }
}
