/*
 * Boots microVMs through backends/microvm the way the backend does and measures them:
 * spawn -> "READY" line on the agent port, QEMU/virtiofsd RSS and PSS at READY. Used by
 * hack/microvm-bench.sh and test/e2e/test_microvm_plumbing.py; one VM at a time.
 *
 *   mv-boot --agent test-init [--runs 5] [--gzip 0|1] [--mem 256] [--tb 32] [--cmdline ..]
 *           [--machine ..] [--console] [--balloon] [--netns /run/netns/x --ifname eth0]
 *           [--udp-port N] [--shared DIR] [--reopen] [--guest-off] [--settle-ms N]
 *           [--modules virtio_mmio,virtio_console]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/proto.h"
#include "cleanup.h"
#include "error.h"
#include "microvm/vm.h"
#include "strutil.h"

static long smaps(pid_t pid, const char *key)
{
        char path[64], line[256];
        FILE *f;
        long v = -1;

        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, strlen(key)) == 0 && line[strlen(key)] == ':')
                        v = strtol(line + strlen(key) + 1, NULL, 10);
        fclose(f);
        return v;
}

static int cmp_d(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
        qsort(v, (size_t)n, sizeof(*v), cmp_d);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int read_line(int fd, char *buf, size_t size, int timeout_ms)
{
        size_t n = 0;

        while (n + 1 < size) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                ssize_t r;

                if (poll(&p, 1, timeout_ms) <= 0)
                        return -ETIMEDOUT;
                r = read(fd, buf + n, 1);
                if (r <= 0)
                        return -EPIPE;
                if (buf[n] == '\n')
                        break;
                n++;
        }
        buf[n] = '\0';
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option lo[] = {{"agent", 1, 0, 'a'},     {"runs", 1, 0, 'n'},
                                           {"gzip", 1, 0, 'z'},      {"mem", 1, 0, 'm'},
                                           {"tb", 1, 0, 't'},        {"cmdline", 1, 0, 'c'},
                                           {"machine", 1, 0, 'M'},   {"console", 0, 0, 'C'},
                                           {"balloon", 0, 0, 'b'},   {"netns", 1, 0, 'N'},
                                           {"ifname", 1, 0, 'i'},    {"udp-port", 1, 0, 'u'},
                                           {"shared", 1, 0, 's'},    {"reopen", 0, 0, 'r'},
                                           {"guest-off", 0, 0, 'g'}, {"settle-ms", 1, 0, 'S'},
                                           {"dir", 1, 0, 'd'},       {"cache", 1, 0, 'k'},
                                           {"kernel", 1, 0, 'K'},    {"verbose", 0, 0, 'v'},
                                           {"modules", 1, 0, 'L'},   {0, 0, 0, 0}};
        const char *agent = NULL, *netns = NULL, *ifname = "eth0", *dir = "/tmp/mvb",
                   *cache = "/tmp/mvb-cache", *kcfg = NULL;
        struct mv_vm_opts o = {.tap_fd = -1};
        int runs = 1, gz = -1, udp_port = 0, reopen = 0, guest_off = 0, settle = 0, verbose = 0;
        _cleanup_free_ char *kernel = NULL, *kver = NULL, *mods = NULL, *initrd = NULL,
                            *accel = NULL;
        double t_ready[64], t_guest[64], pss[64], rss[64], pss2[64];
        struct sh_error err = {0};
        const char *modv[32];
        int c, r, fails = 0, use_modv = 0;

        while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
                switch (c) {
                case 'a':
                        agent = optarg;
                        break;
                case 'n':
                        runs = atoi(optarg);
                        break;
                case 'z':
                        gz = atoi(optarg);
                        break;
                case 'm':
                        o.mem_mib = (unsigned)atoi(optarg);
                        break;
                case 't':
                        o.tb_size_mib = (unsigned)atoi(optarg);
                        break;
                case 'c':
                        o.cmdline_extra = optarg;
                        break;
                case 'M':
                        o.machine_extra = optarg;
                        break;
                case 'C':
                        o.console = true;
                        break;
                case 'b':
                        o.balloon = true;
                        break;
                case 'N':
                        netns = optarg;
                        break;
                case 'i':
                        ifname = optarg;
                        break;
                case 'u':
                        udp_port = atoi(optarg);
                        break;
                case 's':
                        o.shared_dir = optarg;
                        break;
                case 'r':
                        reopen = 1;
                        break;
                case 'g':
                        guest_off = 1;
                        break;
                case 'S':
                        settle = atoi(optarg);
                        break;
                case 'd':
                        dir = optarg;
                        break;
                case 'k':
                        cache = optarg;
                        break;
                case 'K':
                        kcfg = optarg;
                        break;
                case 'v':
                        verbose = 1;
                        break;
                case 'L': {
                        int k = 0;

                        for (char *t = strtok(optarg, ","); t && k < 31; t = strtok(NULL, ","))
                                modv[k++] = t;
                        modv[k] = NULL;
                        use_modv = 1;
                        break;
                }
                default:
                        return 2;
                }
        }
        if (!agent || runs < 1 || runs > 64) {
                fprintf(stderr, "usage: mv-boot --agent PATH [options]\n");
                return 2;
        }
        if (mv_kernel_find(kcfg, &kernel, &kver, &mods, &err) < 0 ||
            mv_accel_probe("auto", &accel, &err) < 0) {
                fprintf(stderr, "mv-boot: %s\n", err.msg);
                return 1;
        }
        {
                struct mv_initramfs_opts io = {.agent_path = agent,
                                               .kver = kver,
                                               .modules_dir = mods,
                                               .cache_dir = cache,
                                               .gzip = gz,
                                               .modules = use_modv ? modv : NULL};
                unsigned long long t = sh_now_ns();

                if (mv_initramfs_get(&io, &initrd, &err) < 0) {
                        fprintf(stderr, "mv-boot: %s\n", err.msg);
                        return 1;
                }
                printf("kernel=%s accel=%s initramfs=%s (%.1f ms) tsc_khz=%u\n", kernel, accel,
                       initrd, (double)(sh_now_ns() - t) / 1e6, mv_host_tsc_khz());
        }
        o.kernel = kernel;
        o.initramfs = initrd;
        o.accel = accel;
        o.dir = dir;
        for (int i = 0; i < runs; i++) {
                struct mv_vm vm = {0};
                struct ag_net net = {0};
                _cleanup_close_ int tap = -EBADF, afd = -EBADF, udp = -EBADF;
                _cleanup_free_ char *extra = NULL;
                char line[512], mac[32] = "";
                unsigned long long t0;

                if (netns) {
                        if (mv_tap_create(netns, ifname, &tap, &net, &err) < 0) {
                                fprintf(stderr, "mv-boot: %s\n", err.msg);
                                return 1;
                        }
                        snprintf(mac, sizeof(mac), "%s", net.ifaces[0].mac);
                        if (i == 0) {
                                printf("net: mac=%s mtu=%lld", net.ifaces[0].mac,
                                       (long long)net.ifaces[0].mtu);
                                for (char **a = net.ifaces[0].addrs; *a; a++)
                                        printf(" addr=%s", *a);
                                for (size_t k = 0; k < net.n_routes; k++)
                                        printf(" route=%s,gw=%s,dev=%s", net.routes[k].dst,
                                               net.routes[k].gw, net.routes[k].dev_mac);
                                printf("\n");
                        }
                        o.tap_fd = tap;
                        o.mac = mac;
                        if (udp_port && net.ifaces[0].addrs[0]) {
                                struct sockaddr_in sin = {.sin_family = AF_INET,
                                                          .sin_port = htons((uint16_t)udp_port)};
                                const char *peer = NULL;

                                for (size_t k = 0; k < net.n_routes; k++)
                                        if (*net.routes[k].gw)
                                                peer = net.routes[k].gw;
                                udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                                if (udp < 0 || bind(udp, (struct sockaddr *)&sin, sizeof(sin)) < 0)
                                        perror("udp bind");
                                extra = sh_strdup_printf("%s rt.ip=%s rt.peer=%s rt.port=%d",
                                                         o.cmdline_extra ? o.cmdline_extra : "",
                                                         net.ifaces[0].addrs[0], peer ? peer : "",
                                                         udp_port);
                        }
                }
                if (o.shared_dir && !extra)
                        extra = sh_strdup_printf("%s rt.fs=1",
                                                 o.cmdline_extra ? o.cmdline_extra : "");
                else if (o.shared_dir)
                        extra = sh_strdup_printf("%s rt.fs=1", extra);
                {
                        struct mv_vm_opts oo = o;

                        if (extra)
                                oo.cmdline_extra = extra;
                        t0 = sh_now_ns();
                        r = mv_vm_start(&oo, &vm, &err);
                }
                if (r < 0) {
                        fprintf(stderr, "mv-boot: %s\n", err.msg);
                        return 1;
                }
                sh_closep(&tap); /* QEMU has its own copy */
                if (reopen) {    /* as after a runtd restart */
                        pid_t qp = vm.qemu_pid;

                        mv_vm_done(&vm);
                        r = mv_vm_open(dir, &vm, &err);
                        /* qemu.pid may not be written yet: QEMU writes it early in startup */
                        for (int k = 0; r == -ENOENT || (r == -ESRCH && k < 200); k++) {
                                mv_vm_done(&vm);
                                usleep(5000);
                                r = mv_vm_open(dir, &vm, &err);
                        }
                        if (r < 0 || vm.qemu_pid != qp) {
                                fprintf(stderr, "mv-boot: reopen: %s\n", err.msg);
                                fails++;
                        }
                }
                r = mv_vm_connect_agent(&vm, &afd, 10000, &err);
                if (r >= 0)
                        r = read_line(afd, line, sizeof(line), 30000);
                t_ready[i] = (double)(sh_now_ns() - t0) / 1e9;
                if (r < 0 || strncmp(line, "READY ", 6) != 0) {
                        fprintf(stderr, "mv-boot: run %d: no READY (%d %s); see %s/qemu.log\n", i,
                                r, err.msg, dir);
                        fails++;
                        snprintf(line, sizeof(line), "-");
                }
                t_guest[i] = strtod(line + 6, NULL);
                rss[i] = (double)smaps(vm.qemu_pid, "Rss") / 1024;
                pss[i] = (double)smaps(vm.qemu_pid, "Pss") / 1024;
                if (vm.vfsd_pid)
                        pss[i] += (double)smaps(vm.vfsd_pid, "Pss") / 1024;
                pss2[i] = pss[i];
                if (settle) {
                        usleep((unsigned)settle * 1000);
                        pss2[i] = (double)smaps(vm.qemu_pid, "Pss") / 1024;
                        if (vm.vfsd_pid)
                                pss2[i] += (double)smaps(vm.vfsd_pid, "Pss") / 1024;
                }
                if (udp >= 0) {
                        struct pollfd p = {.fd = udp, .events = POLLIN};
                        char b[64] = "";

                        if (poll(&p, 1, 2000) > 0 && recv(udp, b, sizeof(b) - 1, 0) > 0)
                                printf("udp: got \"%s\" from the guest\n", b);
                        else {
                                printf("udp: nothing from the guest\n");
                                fails++;
                        }
                }
                printf("run=%d ready_s=%.3f guest_uptime=%.3f qemu_rss_mb=%.1f pss_mb=%.1f "
                       "pss_settled_mb=%.1f line=\"%s\"\n",
                       i, t_ready[i], t_guest[i], rss[i], pss[i], pss2[i], line);
                fflush(stdout);
                if (guest_off) {
                        if (write(afd, "OFF\n", 4) != 4 || mv_vm_shutdown(&vm, 10000, &err) < 0)
                                fails++;
                } else {
                        unsigned long long ts = sh_now_ns();

                        if (mv_vm_shutdown(&vm, 5000, &err) < 0) {
                                fprintf(stderr, "mv-boot: shutdown: %s\n", err.msg);
                                fails++;
                        }
                        if (verbose)
                                printf("shutdown %.1f ms\n", (double)(sh_now_ns() - ts) / 1e6);
                }
                if (verbose) {
                        char cmd[256];

                        snprintf(cmd, sizeof(cmd),
                                 "cat %s/qemu.log %s/console.log 2>/dev/null | tail -400", dir,
                                 dir);
                        if (system(cmd) < 0)
                                perror("system");
                }
                mv_vm_done(&vm);
                if (mv_vm_cleanup_dir(dir, &err) < 0) {
                        fprintf(stderr, "mv-boot: cleanup: %s\n", err.msg);
                        fails++;
                }
                mv_net_done(&net);
        }
        printf("SUMMARY runs=%d fails=%d ready_median_s=%.3f guest_median_s=%.3f "
               "pss_median_mb=%.1f pss_settled_median_mb=%.1f rss_median_mb=%.1f\n",
               runs, fails, median(t_ready, runs), median(t_guest, runs), median(pss, runs),
               median(pss2, runs), median(rss, runs));
        return fails ? 1 : 0;
}
