/* QEMU -M microvm per pod: argv, detached spawn, re-own, agent connect, shutdown. */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "helpercg.h"
#include "strutil.h"
#include "vm-internal.h"

#define SH_LOG_MODULE "microvm"
#include "log.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static const char *const vm_files[] = {"agent.sock",    "qmp.sock",    "vfs.sock", "qemu.pid",
                                       "virtiofsd.pid", "console.log", "qemu.log", "virtiofsd.log"};

/* ---- small helpers ---- */

static int pidfd_open_(pid_t pid)
{
        return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_signal(int pidfd, int sig)
{
        return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Waits until @pidfd's process is gone: 0, or -ETIMEDOUT. */
static int pidfd_wait(int pidfd, unsigned timeout_ms)
{
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        unsigned long long end = sh_now_ns() + (unsigned long long)timeout_ms * 1000000ull;

        for (;;) {
                unsigned long long now = sh_now_ns();
                int r;

                if (now >= end)
                        return -ETIMEDOUT;
                r = poll(&p, 1, (int)((end - now) / 1000000ull) + 1);
                if (r > 0)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

static char *strv_join_space(char **v)
{
        size_t n = 1;
        char *s, *p;

        for (char **a = v; *a; a++)
                n += strlen(*a) + 1;
        s = malloc(n);
        if (!s)
                return NULL;
        p = s;
        for (char **a = v; *a; a++)
                p += snprintf(p, n - (size_t)(p - s), "%s%s", a == v ? "" : " ", *a);
        *p = '\0';
        return s;
}

struct argv_b {
        char **v;
        size_t n;
        int oom;
};

static void argv_add(struct argv_b *a, char *s) /* takes @s */
{
        char **v;

        if (!s || a->oom) {
                free(s);
                a->oom = 1;
                return;
        }
        v = realloc(a->v, (a->n + 2) * sizeof(char *));
        if (!v) {
                free(s);
                a->oom = 1;
                return;
        }
        a->v = v;
        a->v[a->n++] = s;
        a->v[a->n] = NULL;
}

#define ARG(a, ...) argv_add((a), sh_strdup_printf(__VA_ARGS__))

static int argv_end(struct argv_b *a, char ***ret)
{
        if (a->oom || !a->v) {
                sh_strv_free(a->v);
                return -ENOMEM;
        }
        *ret = a->v;
        return 0;
}

/* ---- host facts ---- */

unsigned mv_host_tsc_khz(void)
{
        _cleanup_free_ char *buf = NULL;
        const char *p;

        if (sh_read_file("/sys/devices/system/cpu/cpu0/tsc_freq_khz", 64, &buf, NULL) >= 0) {
                unsigned long v = strtoul(buf, NULL, 10);

                if (v > 0 && v < 100000000ul)
                        return (unsigned)v;
        }
        free(buf);
        buf = NULL;
        if (sh_read_file("/proc/cpuinfo", 4u << 20, &buf, NULL) < 0)
                return 0;
        p = strstr(buf, "cpu MHz"); /* the first one is cpu0's */
        if (!p || !(p = strchr(p, ':')))
                return 0;
        return (unsigned)(strtod(p + 1, NULL) * 1000.0 + 0.5);
}

/* ---- argv ---- */

char *mv_kernel_cmdline(const struct mv_vm_opts *o, unsigned tsc_khz)
{
        /*
         * Measured with hack/microvm-bench.sh (TCG): tsc_early_khz avoids the TSC calibration
         * hang (no HPET, no PM timer on microvm); nokaslr keeps the decompressed kernel where
         * it was decompressed (20 MB less guest memory touched, no time cost); the rest skips
         * work the guest never needs (PCI, i8042 and UART probing, crypto self-tests, the
         * clocksource watchdog, RCU grace-period waits).
         */
        return sh_strdup_printf(
                "console=ttyS0 panic=-1 quiet loglevel=%d tsc_early_khz=%u tsc=reliable "
                "no_timer_check nokaslr cryptomgr.notests pci=off i8042.noaux i8042.nomux "
                "i8042.nopnp i8042.dumbkbd 8250.nr_uarts=1 rcupdate.rcu_expedited=1 "
                "random.trust_cpu=on%s%s",
                o->console ? 4 : 0, tsc_khz, o->cmdline_extra && *o->cmdline_extra ? " " : "",
                o->cmdline_extra ? o->cmdline_extra : "");
}

int mv_qemu_argv(const struct mv_vm_opts *o, unsigned tsc_khz, char ***ret_argv,
                 struct sh_error *err)
{
        struct argv_b a = {0};
        unsigned mem = o->mem_mib ? o->mem_mib : MV_DEFAULT_MEM_MIB;
        const char *accel = o->accel ? o->accel : "tcg";
        bool kvm = strcmp(accel, "kvm") == 0;

        if (!o->kernel || !o->initramfs || !o->dir)
                return sh_err(err, -EINVAL, "vm: kernel, initramfs and dir are needed");
        if (!kvm && strcmp(accel, "tcg") != 0)
                return sh_err(err, -EINVAL, "vm: accel %s: not kvm or tcg", accel);
        ARG(&a, "%s", o->qemu ? o->qemu : "qemu-system-x86_64");
        ARG(&a, "-name");
        ARG(&a, "runt-vm,debug-threads=off");
        ARG(&a, "-M");
        /* acpi stays on: the cloud kernel finds the virtio-mmio devices through the DSDT. */
        /*
         * rtc, pit and pic stay on: without the RTC the guest boots 1.7 s slower under TCG,
         * without the PIT/PIC 0.3 s (hack/microvm-bench.sh). No option ROMs, no serial port
         * unless a console is wanted.
         */
        ARG(&a, "microvm,x-option-roms=off,rtc=on,isa-serial=%s,memory-backend=mem%s%s",
            o->console ? "on" : "off", o->machine_extra ? "," : "",
            o->machine_extra ? o->machine_extra : "");
        ARG(&a, "-accel");
        if (kvm)
                ARG(&a, "kvm");
        else
                ARG(&a, "tcg,tb-size=%u", o->tb_size_mib ? o->tb_size_mib : MV_DEFAULT_TB_MIB);
        if (kvm) {
                ARG(&a, "-cpu");
                ARG(&a, "host");
        }
        ARG(&a, "-m");
        ARG(&a, "%u", mem);
        ARG(&a, "-smp");
        ARG(&a, "%u", o->vcpus ? o->vcpus : 1);
        ARG(&a, "-object");
        ARG(&a, "memory-backend-memfd,id=mem,size=%uM,share=on", mem);
        ARG(&a, "-global");
        ARG(&a, "virtio-mmio.force-legacy=false");
        ARG(&a, "-nodefaults");
        ARG(&a, "-no-user-config");
        ARG(&a, "-display");
        ARG(&a, "none");
        ARG(&a, "-no-reboot");
        ARG(&a, "-kernel");
        ARG(&a, "%s", o->kernel);
        ARG(&a, "-initrd");
        ARG(&a, "%s", o->initramfs);
        ARG(&a, "-append");
        argv_add(&a, mv_kernel_cmdline(o, tsc_khz));
        ARG(&a, "-pidfile");
        ARG(&a, "%s/qemu.pid", o->dir);
        ARG(&a, "-qmp");
        ARG(&a, "unix:%s/qmp.sock,server=on,wait=off", o->dir);
        if (o->console) {
                ARG(&a, "-serial");
                ARG(&a, "file:%s/console.log", o->dir);
        }
        ARG(&a, "-device");
        ARG(&a, "virtio-serial-device,max_ports=2");
        ARG(&a, "-chardev");
        ARG(&a, "socket,id=agent,path=%s/agent.sock,server=on,wait=off", o->dir);
        ARG(&a, "-device");
        ARG(&a, "virtserialport,chardev=agent,name=runt.agent");
        if (o->shared_dir) {
                ARG(&a, "-chardev");
                ARG(&a, "socket,id=vfs,path=%s/vfs.sock", o->dir);
                ARG(&a, "-device");
                ARG(&a, "vhost-user-fs-device,chardev=vfs,tag=%s,queue-size=1024", MV_FS_TAG);
        }
        if (o->tap_fd > 0) {
                ARG(&a, "-netdev");
                ARG(&a, "tap,id=n0,fd=%d", MV_TAP_CHILD_FD);
                ARG(&a, "-device");
                if (o->mac)
                        ARG(&a, "virtio-net-device,netdev=n0,mac=%s", o->mac);
                else
                        ARG(&a, "virtio-net-device,netdev=n0");
        }
        /*
         * The host's randomness for the guest: without it (no RDRAND under TCG) the guest's
         * pool fills seconds after boot, and anything in a container reading /dev/urandom
         * or getrandom() waits for it.
         */
        ARG(&a, "-object");
        ARG(&a, "rng-random,id=rng0,filename=/dev/urandom");
        ARG(&a, "-device");
        ARG(&a, "virtio-rng-device,rng=rng0");
        if (o->balloon) {
                ARG(&a, "-device");
                ARG(&a, "virtio-balloon-device,free-page-reporting=on");
        }
        return argv_end(&a, ret_argv);
}

int mv_virtiofsd_argv(const struct mv_vm_opts *o, char ***ret_argv, struct sh_error *err)
{
        struct argv_b a = {0};

        if (!o->shared_dir || !o->dir)
                return sh_err(err, -EINVAL, "virtiofsd: shared dir and vm dir needed");
        ARG(&a, "%s", o->virtiofsd ? o->virtiofsd : "/usr/lib/qemu/virtiofsd");
        ARG(&a, "--socket-path=%s/vfs.sock", o->dir);
        ARG(&a, "-o");
        ARG(&a, "source=%s", o->shared_dir);
        ARG(&a, "-o");
        ARG(&a, "cache=auto");
        /*
         * xattr + CAP_SYS_ADMIN: the guest overlay reads trusted.overlay.opaque on its lower
         * dirs, and trusted.* is only visible to a holder of CAP_SYS_ADMIN (virtiofsd drops
         * it by default). Whiteouts (char 0/0) need nothing. thread-pool-size=1: less memory,
         * one vCPU cannot use more.
         */
        ARG(&a, "-o");
        ARG(&a, "xattr");
        ARG(&a, "-o");
        ARG(&a, "modcaps=+sys_admin");
        ARG(&a, "-o");
        ARG(&a, "announce_submounts");
        return argv_end(&a, ret_argv);
}

/* ---- detached spawn ---- */

/* Finds @name in PATH unless it has a '/'. */
static char *find_exe(const char *name)
{
        const char *path = getenv("PATH");

        if (strchr(name, '/'))
                return strdup(name);
        if (!path || !*path)
                path = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
        for (const char *p = path; p && *p;) {
                const char *c = strchr(p, ':');
                size_t n = c ? (size_t)(c - p) : strlen(p);
                char *f = sh_strdup_printf("%.*s/%s", (int)n, p, name);

                if (!f)
                        return NULL;
                if (access(f, X_OK) == 0)
                        return f;
                free(f);
                p = c ? c + 1 : NULL;
        }
        return strdup(name);
}

/*
 * In a forked child that does not exec at once: closes every fd but the @n in @keep. Other
 * threads' pipes are copied into the child by fork(), and a child that held them would keep
 * those threads' readers from ever seeing EOF (two spawns at once then wait on each other).
 * Only close_range(2): safe after fork in a threaded process.
 */
static void close_all_but(int *keep, size_t n)
{
        unsigned lo = 0;

        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
                        int t = keep[j];

                        keep[j] = keep[j - 1];
                        keep[j - 1] = t;
                }
        for (size_t i = 0; i < n; i++) {
                if (keep[i] < 0 || (unsigned)keep[i] < lo)
                        continue;
                if ((unsigned)keep[i] > lo)
                        syscall(SYS_close_range, lo, (unsigned)keep[i] - 1, 0U);
                lo = (unsigned)keep[i] + 1;
        }
        syscall(SYS_close_range, lo, ~0U, 0U);
}

static void child_fail(int fd, int e)
{
        ssize_t w = write(fd, &e, sizeof(e));

        (void)w;
        _exit(127);
}

/*
 * Runs @argv in a new session as a grandchild (reparented to init or the nearest subreaper,
 * never left as runtd's zombie), fds: 0 /dev/null, 1+2 @log_path, 3 @keep_fd (if >= 0),
 * nothing else. The pidfd is opened while the intermediate child still holds the pid.
 */
int mv_spawn_detached(char **argv, int keep_fd, const char *log_path, const char *cgroup_dirs,
                      pid_t *ret_pid, int *ret_pidfd, struct sh_error *err)
{
        _cleanup_close_ int devnull = -EBADF, logfd = -EBADF;
        int errp[2] = {-1, -1}, pidp[2] = {-1, -1}, hold[2] = {-1, -1};
        int cg[32], n_cg = 0; /* one per hierarchy (helpercg.c: at most 32) */
        _cleanup_free_ char *exe = find_exe(argv[0]);
        pid_t mid, pid = 0;
        int pidfd = -1, e = 0, status, r = 0;
        ssize_t n;

        if (!exe)
                return -ENOMEM;
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (devnull < 0 || logfd < 0)
                return sh_err(err, -errno, "open %s", logfd < 0 ? log_path : "/dev/null");
        if (pipe2(errp, O_CLOEXEC) < 0 || pipe2(pidp, O_CLOEXEC) < 0 ||
            pipe2(hold, O_CLOEXEC) < 0) {
                r = sh_err(err, -errno, "pipe");
                goto out;
        }
        /* Opened here, joined in the child before it forks the program (helpercg.h). */
        n_cg = cgroup_dirs ? sh_helpercg_open_procs(cgroup_dirs, cg, SH_ARRAY_SIZE(cg)) : 0;
        if (n_cg < 0) {
                r = sh_err(err, n_cg, "open cgroup.procs of %s", cgroup_dirs);
                n_cg = 0;
                goto out;
        }
        mid = fork();
        if (mid < 0) {
                r = sh_err(err, -errno, "fork");
                goto out;
        }
        if (mid == 0) {
                int keep_fds[6 + SH_ARRAY_SIZE(cg)] = {devnull, logfd,   keep_fd,
                                                       errp[1], pidp[1], hold[0]};
                pid_t g;
                char c;
                int q;

                for (int i = 0; i < n_cg; i++)
                        keep_fds[6 + i] = cg[i];
                close_all_but(keep_fds, 6 + (size_t)n_cg);
                setsid();
                /* Out of runtd's cgroup before the program exists: its children follow. */
                q = sh_helpercg_join_fds(cg, (size_t)n_cg);
                if (q < 0)
                        child_fail(errp[1], -q);
                for (int i = 0; i < n_cg; i++)
                        close(cg[i]);
                g = fork();
                if (g < 0)
                        child_fail(errp[1], errno);
                if (g == 0) {
                        struct sigaction dfl = {.sa_handler = SIG_DFL};
                        sigset_t none;
                        int keep = -1;

                        for (int s = 1; s < NSIG; s++)
                                sigaction(s, &dfl, NULL);
                        sigemptyset(&none);
                        sigprocmask(SIG_SETMASK, &none, NULL);
                        if (keep_fd >= 0) {
                                keep = fcntl(keep_fd, F_DUPFD_CLOEXEC, 10);
                                if (keep < 0)
                                        child_fail(errp[1], errno);
                        }
                        if (dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
                                child_fail(errp[1], errno);
                        if (keep >= 0 && dup2(keep, MV_TAP_CHILD_FD) < 0)
                                child_fail(errp[1], errno);
                        syscall(SYS_close_range, keep >= 0 ? MV_TAP_CHILD_FD + 1 : 3, ~0U,
                                CLOSE_RANGE_CLOEXEC);
                        execv(exe, argv);
                        child_fail(errp[1], errno);
                }
                close(errp[1]);
                if (write(pidp[1], &g, sizeof(g)) != sizeof(g))
                        _exit(1);
                /* hold @g's pid (an unreaped child of ours) until the parent has its pidfd */
                close(hold[1]);
                while (read(hold[0], &c, 1) < 0 && errno == EINTR)
                        ;
                _exit(0);
        }
        close(errp[1]);
        close(pidp[1]);
        close(hold[0]);
        errp[1] = pidp[1] = hold[0] = -1;
        do
                n = read(pidp[0], &pid, sizeof(pid));
        while (n < 0 && errno == EINTR);
        if (n == sizeof(pid) && pid > 0)
                pidfd = pidfd_open_(pid);
        if (n == sizeof(pid) && pidfd < 0)
                e = errno;
        close(hold[1]);
        hold[1] = -1;
        while (waitpid(mid, &status, 0) < 0 && errno == EINTR)
                ;
        do
                n = read(errp[0], &e, sizeof(e));
        while (n < 0 && errno == EINTR);
        if (n == sizeof(e) || pidfd < 0) {
                if (pidfd >= 0)
                        close(pidfd);
                r = sh_err(err, e ? -e : -ECHILD, "exec %s", exe);
                goto out;
        }
        *ret_pid = pid;
        *ret_pidfd = pidfd;
out:
        for (int i = 0; i < n_cg; i++)
                close(cg[i]);
        for (int i = 0; i < 2; i++) {
                if (errp[i] >= 0)
                        close(errp[i]);
                if (pidp[i] >= 0)
                        close(pidp[i]);
                if (hold[i] >= 0)
                        close(hold[i]);
        }
        return r;
}

static int wait_socket(const char *path, int pidfd, unsigned timeout_ms)
{
        unsigned long long end = sh_now_ns() + (unsigned long long)timeout_ms * 1000000ull;
        struct stat st;

        while (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
                struct pollfd p = {.fd = pidfd, .events = POLLIN};

                if (sh_now_ns() >= end)
                        return -ETIMEDOUT;
                if (poll(&p, 1, 2) > 0)
                        return -ESRCH;
        }
        return 0;
}

static int write_pidfile(const char *path, pid_t pid)
{
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);

        return sh_write_file_replace(path, buf, (size_t)n, 0644);
}

static void kill_wait(int pidfd)
{
        if (pidfd < 0)
                return;
        pidfd_signal(pidfd, SIGKILL);
        pidfd_wait(pidfd, 5000);
}

int mv_vm_start(const struct mv_vm_opts *o, struct mv_vm *ret, struct sh_error *err)
{
        _cleanup_strv_ char **qargv = NULL, **fargv = NULL;
        _cleanup_free_ char *qlog = NULL, *flog = NULL, *vsock = NULL, *fpid = NULL;
        struct mv_vm vm = {.qemu_pidfd = -1, .vfsd_pidfd = -1};
        unsigned tsc = o->tsc_khz ? o->tsc_khz : mv_host_tsc_khz();
        int r;

        if (!o->dir ||
            strlen(o->dir) + sizeof("/agent.sock") > sizeof(((struct sockaddr_un *)0)->sun_path))
                return sh_err(err, -ENAMETOOLONG, "vm: dir missing or too long for a socket path");
        r = mv_qemu_argv(o, tsc, &qargv, err);
        if (r < 0)
                return r;
        r = sh_mkdir_p(o->dir, 0700);
        if (r < 0)
                return sh_err(err, r, "vm: mkdir %s", o->dir);
        /* stale sockets of an earlier run would make QEMU or virtiofsd fail */
        for (size_t i = 0; i < SH_ARRAY_SIZE(vm_files); i++) {
                _cleanup_free_ char *f = sh_path_join(o->dir, vm_files[i]);

                if (f)
                        unlink(f);
        }
        qlog = sh_path_join(o->dir, "qemu.log");
        flog = sh_path_join(o->dir, "virtiofsd.log");
        vsock = sh_path_join(o->dir, "vfs.sock");
        fpid = sh_path_join(o->dir, "virtiofsd.pid");
        vm.dir = strdup(o->dir);
        if (!qlog || !flog || !vsock || !fpid || !vm.dir) {
                r = -ENOMEM;
                goto fail;
        }
        if (o->shared_dir) {
                r = mv_virtiofsd_argv(o, &fargv, err);
                if (r < 0)
                        goto fail;
                r = mv_spawn_detached(fargv, -1, flog, o->cgroup_dirs, &vm.vfsd_pid, &vm.vfsd_pidfd,
                                      err);
                if (r < 0) {
                        sh_err_prefix(err, r, "vm: virtiofsd");
                        goto fail;
                }
                r = write_pidfile(fpid, vm.vfsd_pid);
                if (r < 0) {
                        sh_err(err, r, "vm: write %s", fpid);
                        goto fail;
                }
                r = wait_socket(vsock, vm.vfsd_pidfd, 5000);
                if (r < 0) {
                        sh_err(err, r, "vm: virtiofsd did not make %s (see virtiofsd.log)", vsock);
                        goto fail;
                }
        }
        r = mv_spawn_detached(qargv, o->tap_fd > 0 ? o->tap_fd : -1, qlog, o->cgroup_dirs,
                              &vm.qemu_pid, &vm.qemu_pidfd, err);
        if (r < 0) {
                sh_err_prefix(err, r, "vm: qemu");
                goto fail;
        }
        {
                _cleanup_free_ char *line = strv_join_space(qargv);

                sh_log_debug("vm=%s qemu_pid=%d vfsd_pid=%d argv=\"%s\"", o->dir, (int)vm.qemu_pid,
                             (int)vm.vfsd_pid, line ? line : "");
        }
        *ret = vm;
        return 0;
fail:
        kill_wait(vm.qemu_pidfd);
        kill_wait(vm.vfsd_pidfd);
        mv_vm_done(&vm);
        return r;
}

/* ---- re-own ---- */

static int read_pid(const char *dir, const char *name, pid_t *ret)
{
        _cleanup_free_ char *path = sh_path_join(dir, name), *buf = NULL;
        long v;
        int r;

        if (!path)
                return -ENOMEM;
        r = sh_read_file(path, 64, &buf, NULL);
        if (r < 0)
                return r;
        v = strtol(buf, NULL, 10);
        if (v <= 0)
                return -EINVAL;
        *ret = (pid_t)v;
        return 0;
}

/* Opens a pidfd for @pid and checks, after opening (no pid reuse race), that its cmdline
 * names @dir and its argv[0] ends with @exe_tail. */
static int open_verified(pid_t pid, const char *dir, const char *exe_tail, int *ret_pidfd)
{
        _cleanup_close_ int pidfd = pidfd_open_(pid);
        _cleanup_free_ char *path = NULL, *cmd = NULL;
        size_t len = 0;
        bool found = false;
        int r;

        if (pidfd < 0)
                return -errno;
        path = sh_strdup_printf("/proc/%d/cmdline", (int)pid);
        if (!path)
                return -ENOMEM;
        r = sh_read_file(path, 1u << 20, &cmd, &len);
        if (r < 0)
                return r == -ENOENT ? -ESRCH : r;
        if (!strstr(cmd, exe_tail))
                return -ESRCH;
        for (size_t i = 0; i < len; i += strlen(cmd + i) + 1)
                if (strstr(cmd + i, dir))
                        found = true;
        if (!found)
                return -ESRCH;
        /* the pid may have died and been reused between pidfd_open and the read: recheck */
        {
                struct pollfd p = {.fd = pidfd, .events = POLLIN};

                if (poll(&p, 1, 0) > 0)
                        return -ESRCH;
        }
        *ret_pidfd = TAKE_FD(pidfd);
        return 0;
}

int mv_vm_open(const char *dir, struct mv_vm *ret, struct sh_error *err)
{
        struct mv_vm vm = {.qemu_pidfd = -1, .vfsd_pidfd = -1};
        pid_t pid;
        int r;

        vm.dir = strdup(dir);
        if (!vm.dir)
                return -ENOMEM;
        if (read_pid(dir, "virtiofsd.pid", &pid) >= 0 &&
            open_verified(pid, dir, "virtiofsd", &vm.vfsd_pidfd) >= 0)
                vm.vfsd_pid = pid;
        r = read_pid(dir, "qemu.pid", &pid);
        if (r >= 0)
                r = open_verified(pid, dir, "qemu", &vm.qemu_pidfd);
        else if (r == -ENOENT)
                r = -ESRCH;
        if (r >= 0)
                vm.qemu_pid = pid;
        *ret = vm; /* also on -ESRCH: a virtiofsd left over can still be shut down */
        if (r < 0)
                return sh_err(err, r, "vm %s: qemu not running", dir);
        return 0;
}

bool mv_vm_running(const struct mv_vm *vm)
{
        struct pollfd p = {.fd = vm->qemu_pidfd, .events = POLLIN};

        return vm->qemu_pidfd >= 0 && poll(&p, 1, 0) == 0;
}

/* ---- agent ---- */

int mv_vm_connect_agent(const struct mv_vm *vm, int *ret_fd, unsigned timeout_ms,
                        struct sh_error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        unsigned long long end = sh_now_ns() + (unsigned long long)timeout_ms * 1000000ull;
        int e = 0;

        if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/agent.sock", vm->dir) >=
            (int)sizeof(sa.sun_path))
                return sh_err(err, -ENAMETOOLONG, "vm %s: agent socket path too long", vm->dir);
        for (;;) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct pollfd p = {.fd = vm->qemu_pidfd, .events = POLLIN};

                if (fd < 0)
                        return sh_err(err, -errno, "socket");
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
                        *ret_fd = fd;
                        return 0;
                }
                e = errno;
                close(fd);
                if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN && e != EINTR)
                        return sh_err(err, -e, "vm %s: connect agent.sock", vm->dir);
                if (vm->qemu_pidfd >= 0 && poll(&p, 1, 0) > 0)
                        return sh_err(err, -ESRCH, "vm %s: QEMU exited (see qemu.log)", vm->dir);
                if (sh_now_ns() >= end)
                        return sh_err(err, -ETIMEDOUT, "vm %s: agent.sock: %s", vm->dir,
                                      strerror(e));
                nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
        }
}

/* ---- stop ---- */

static int stop_one(int pidfd, int first_sig, unsigned timeout_ms)
{
        if (pidfd < 0)
                return 0;
        if (first_sig && pidfd_signal(pidfd, first_sig) < 0 && errno == ESRCH)
                return 0;
        if (pidfd_wait(pidfd, timeout_ms) == 0)
                return 0;
        if (pidfd_signal(pidfd, SIGKILL) < 0 && errno != ESRCH)
                return -errno;
        return pidfd_wait(pidfd, 5000);
}

int mv_vm_shutdown(struct mv_vm *vm, unsigned timeout_ms, struct sh_error *err)
{
        int r = 0, q;

        if (mv_vm_running(vm)) {
                _cleanup_free_ char *qmp = sh_path_join(vm->dir, "qmp.sock");
                struct sh_error qe = {0};

                if (!qmp)
                        return -ENOMEM;
                q = mv_qmp_command(qmp, "quit", timeout_ms, &qe);
                if (q < 0)
                        sh_log_debug("vm=%s qmp quit: %s", vm->dir, qe.msg);
                r = stop_one(vm->qemu_pidfd, 0, q < 0 ? 0 : timeout_ms);
                if (r < 0)
                        return sh_err(err, r, "vm %s: qemu did not stop", vm->dir);
        }
        /* virtiofsd exits once QEMU disconnects; give it a moment, then signal it */
        if (vm->vfsd_pidfd >= 0 && pidfd_wait(vm->vfsd_pidfd, 500) < 0) {
                r = stop_one(vm->vfsd_pidfd, SIGTERM, 2000);
                if (r < 0)
                        return sh_err(err, r, "vm %s: virtiofsd did not stop", vm->dir);
        }
        return 0;
}

int mv_vm_kill(struct mv_vm *vm, struct sh_error *err)
{
        int r = stop_one(vm->qemu_pidfd, SIGKILL, 5000);

        if (r >= 0)
                r = stop_one(vm->vfsd_pidfd, SIGKILL, 5000);
        if (r < 0)
                return sh_err(err, r, "vm %s: kill", vm->dir);
        return 0;
}

void mv_vm_done(struct mv_vm *vm)
{
        if (vm->qemu_pidfd >= 0)
                close(vm->qemu_pidfd);
        if (vm->vfsd_pidfd >= 0)
                close(vm->vfsd_pidfd);
        free(vm->dir);
        *vm = (struct mv_vm){.qemu_pidfd = -1, .vfsd_pidfd = -1};
}

int mv_vm_cleanup_dir(const char *dir, struct sh_error *err)
{
        int r = 0;

        for (size_t i = 0; i < SH_ARRAY_SIZE(vm_files); i++) {
                _cleanup_free_ char *f = sh_path_join(dir, vm_files[i]);

                if (!f)
                        return -ENOMEM;
                if (unlink(f) < 0 && errno != ENOENT && r == 0)
                        r = sh_err(err, -errno, "unlink %s", f);
        }
        if (rmdir(dir) < 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST && r == 0)
                r = sh_err(err, -errno, "rmdir %s", dir);
        return r;
}
