/*
 * A stand-in guest /init for the microVM boot checks (not the agent): loads the modules in
 * /etc/runt-modules, finds the virtio-serial port "runt.agent", checks the pod NIC and the
 * virtio-fs share as asked on the kernel cmdline, writes one line
 *   "READY <uptime> mods=<ms> net=<...> fs=<...>\n"
 * to the port, then waits for "OFF\n" (or EOF) and powers off. Static, libc only.
 *
 * Cmdline keys: rt.ip=10.250.0.2/24 rt.peer=10.250.0.1 rt.port=9999 (sends one UDP datagram
 * "hello-from-guest" to peer:port), rt.fs=1 (mounts virtio-fs tag "runt" on /mnt/lower,
 * overlays its top/ over its base/ and checks that the whiteout top/gone (char 0/0) hides
 * base/gone and that the opaque dir top/opaque (trusted.overlay.opaque=y) hides
 * base/opaque/hidden; hack/microvm-bench.sh and test_microvm_plumbing.py make that fixture).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static char cmdline[4096];
static int net_sock = -1; /* sends "hello-from-guest" while waiting for OFF */
static struct sockaddr_in net_to;

/* The value of "key=value" on the kernel cmdline (malloc'd, never freed: PID 1 of a test). */
static const char *arg(const char *key)
{
        size_t kl = strlen(key);

        for (char *p = cmdline; p && *p;) {
                while (*p == ' ')
                        p++;
                if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
                        size_t n = strcspn(p + kl + 1, " \n");

                        return strndup(p + kl + 1, n);
                }
                p = strchr(p, ' ');
        }
        return NULL;
}

static double uptime(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_small(const char *path, char *buf, size_t size)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -1;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n < 0)
                return -1;
        buf[n] = '\0';
        return (int)n;
}

static void load_modules(void)
{
        static char list[8192];
        char *save = NULL;

        if (read_small("/etc/runt-modules", list, sizeof(list)) < 0)
                return;
        for (char *l = strtok_r(list, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                int fd = open(l, O_RDONLY | O_CLOEXEC);

                if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST))
                        dprintf(2, "test-init: module %s: %s\n", l, strerror(errno));
                if (fd >= 0)
                        close(fd);
        }
}

static int find_port(char *dev, size_t size)
{
        for (int tries = 0; tries < 1000; tries++) {
                DIR *d = opendir("/sys/class/virtio-ports");
                struct dirent *de;

                while (d && (de = readdir(d))) {
                        char path[300], name[64];

                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", de->d_name);
                        if (read_small(path, name, sizeof(name)) > 0 &&
                            strcmp(name, "runt.agent\n") == 0) {
                                snprintf(dev, size, "/dev/%s", de->d_name);
                                closedir(d);
                                if (access(dev, F_OK) == 0)
                                        return 0;
                                d = NULL;
                                break;
                        }
                }
                if (d)
                        closedir(d);
                usleep(2000);
        }
        return -1;
}

static const char *check_net(char *out, size_t size)
{
        const char *ip = arg("rt.ip"), *peer = arg("rt.peer"), *port = arg("rt.port");
        char addr[64];
        struct ifreq ifr = {0};
        struct sockaddr_in sin = {.sin_family = AF_INET};
        int s, prefix = 24, wait;
        char *slash;

        if (!ip)
                return "none";
        snprintf(addr, sizeof(addr), "%s", ip);
        slash = strchr(addr, '/');
        if (slash) {
                *slash = '\0';
                prefix = atoi(slash + 1);
        }
        s = socket(AF_INET, SOCK_DGRAM, 0);
        snprintf(ifr.ifr_name, IFNAMSIZ, "eth0");
        for (wait = 0; wait < 500 && ioctl(s, SIOCGIFINDEX, &ifr) < 0; wait++)
                usleep(2000);
        inet_pton(AF_INET, addr, &sin.sin_addr);
        memcpy(&ifr.ifr_addr, &sin, sizeof(sin));
        if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
                return "fail:addr";
        /* the classful mask SIOCSIFADDR sets covers the test's peer; the prefix is unused */
        (void)prefix;
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                return "fail:flags";
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                return "fail:up";
        if (ioctl(s, SIOCGIFHWADDR, &ifr) == 0) {
                unsigned char *m = (unsigned char *)ifr.ifr_hwaddr.sa_data;

                snprintf(out, size, "mac=%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
                         m[4], m[5]);
        }
        if (peer && port) {
                net_to = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(atoi(port))};
                inet_pton(AF_INET, peer, &net_to.sin_addr);
                net_sock = s;
                return out;
        }
        close(s);
        return out;
}

static const char *check_fs(void)
{
        struct stat st;
        char v[8];

        if (!arg("rt.fs"))
                return "none";
        mkdir("/mnt/lower", 0755);
        mkdir("/mnt/rw", 0755);
        mkdir("/mnt/root", 0755);
        if (mount("runt", "/mnt/lower", "virtiofs", MS_RDONLY, NULL) < 0)
                return "fail:mount-virtiofs";
        if (stat("/mnt/lower/top/gone", &st) < 0 || !S_ISCHR(st.st_mode) ||
            st.st_rdev != makedev(0, 0))
                return "fail:whiteout-not-visible";
        if (getxattr("/mnt/lower/top/opaque", "trusted.overlay.opaque", v, sizeof(v)) != 1 ||
            v[0] != 'y')
                return "fail:opaque-xattr-not-visible";
        if (mount("rw", "/mnt/rw", "tmpfs", 0, NULL) < 0)
                return "fail:tmpfs";
        mkdir("/mnt/rw/u", 0755);
        mkdir("/mnt/rw/w", 0755);
        if (mount("overlay", "/mnt/root", "overlay", 0,
                  "lowerdir=/mnt/lower/top:/mnt/lower/base,upperdir=/mnt/rw/u,workdir=/mnt/rw/w") <
            0)
                return "fail:overlay";
        if (stat("/mnt/root/gone", &st) == 0)
                return "fail:whiteout-ignored";
        if (stat("/mnt/root/keep", &st) < 0)
                return "fail:keep-missing";
        if (stat("/mnt/root/opaque/hidden", &st) == 0)
                return "fail:opaque-ignored";
        if (stat("/mnt/root/opaque/shown", &st) < 0)
                return "fail:opaque-upper-missing";
        return "ok";
}

int main(void)
{
        char dev[64], line[512], netbuf[64] = "up";
        const char *net, *fs;
        double t0, t1;
        int fd;

        mount("proc", "/proc", "proc", 0, NULL);
        mount("sys", "/sys", "sysfs", 0, NULL);
        mount("dev", "/dev", "devtmpfs", 0, NULL);
        read_small("/proc/cmdline", cmdline, sizeof(cmdline));
        t0 = uptime();
        load_modules();
        t1 = uptime();
        if (find_port(dev, sizeof(dev)) < 0) {
                dprintf(2, "test-init: no runt.agent port\n");
                reboot(RB_POWER_OFF);
        }
        net = check_net(netbuf, sizeof(netbuf));
        fs = check_fs();
        fd = open(dev, O_RDWR | O_CLOEXEC);
        /* the port reports POLLHUP until the host has it open; what is written before is lost */
        for (int i = 0; fd >= 0 && i < 30000; i++) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};

                if (poll(&p, 1, 0) == 1 && !(p.revents & POLLHUP))
                        break;
                usleep(1000);
        }
        snprintf(line, sizeof(line), "READY %.3f mods=%.0f init=%.3f net=%s fs=%s\n", uptime(),
                 (t1 - t0) * 1000, t0, net, fs);
        if (fd >= 0) {
                char buf[64];
                ssize_t n;

                if (write(fd, line, strlen(line)) < 0)
                        dprintf(2, "test-init: write: %s\n", strerror(errno));
                for (;;) {
                        struct pollfd p = {.fd = fd, .events = POLLIN};

                        if (poll(&p, 1, 200) == 0) {
                                if (net_sock >= 0)
                                        sendto(net_sock, "hello-from-guest", 16, 0,
                                               (struct sockaddr *)&net_to, sizeof(net_to));
                                continue;
                        }
                        n = read(fd, buf, sizeof(buf));
                        if (n <= 0 || memmem(buf, (size_t)n, "OFF", 3))
                                break;
                }
        }
        sync();
        reboot(RB_POWER_OFF);
        return 0;
}
