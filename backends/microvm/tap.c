/* The pod's tap: tap0 in the pod netns, tc mirred both ways with the CNI interface. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/proto.h"
#include "cleanup.h"
#include "error.h"
#include "exec.h"
#include "netinfo.h"
#include "strutil.h"
#include "vm.h"

struct tap_job {
        int nsfd;
        const char *ifname;
        bool remove;
        /* results */
        int r;
        int tap_fd;
        struct ag_net net;
        struct sh_error err;
};

static const char *tc_path(void)
{
        static const char *const c[] = {"/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc", "/bin/tc"};

        for (size_t i = 0; i < SH_ARRAY_SIZE(c); i++)
                if (access(c[i], X_OK) == 0)
                        return c[i];
        return "tc";
}

/* Runs `tc -force -batch -` with @script in the calling thread's netns. */
static int run_tc(const char *script, bool check, struct sh_error *err)
{
        const char *argv[] = {tc_path(), "-force", "-batch", "-", NULL};
        struct sh_exec_opts o = {.argv = argv,
                                 .stdin_data = script,
                                 .stdin_len = strlen(script),
                                 .timeout_ms = 10000,
                                 .stderr_to_stdout = true};
        struct sh_exec_result res = {0};
        int r = sh_exec(&o, &res, err);

        if (r >= 0 && check && res.exit_code != 0)
                r = sh_err(err, -EIO, "tc: exit %d: %.300s", res.exit_code, res.out ? res.out : "");
        sh_exec_result_done(&res);
        return r;
}

static int tap_setup(struct tap_job *j)
{
        _cleanup_close_ int sock = -EBADF, tun = -EBADF;
        struct ifreq ifr = {0};
        unsigned char *m;
        char mac[18];
        int ifindex, mtu, r;
        _cleanup_free_ char *script = NULL;

        sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (sock < 0)
                return sh_err(&j->err, -errno, "socket");
        snprintf(ifr.ifr_name, IFNAMSIZ, "%s", j->ifname);
        if (ioctl(sock, SIOCGIFINDEX, &ifr) < 0)
                return sh_err(&j->err, -errno, "interface %s", j->ifname);
        ifindex = ifr.ifr_ifindex;
        if (ioctl(sock, SIOCGIFMTU, &ifr) < 0)
                return sh_err(&j->err, -errno, "%s: mtu", j->ifname);
        mtu = ifr.ifr_mtu;
        if (ioctl(sock, SIOCGIFHWADDR, &ifr) < 0)
                return sh_err(&j->err, -errno, "%s: mac", j->ifname);
        m = (unsigned char *)ifr.ifr_hwaddr.sa_data;
        snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                 m[5]);

        /* tun's netns is the opener's: this thread's, the pod's */
        tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (tun < 0)
                return sh_err(&j->err, -errno, "open /dev/net/tun");
        memset(&ifr, 0, sizeof(ifr));
        snprintf(ifr.ifr_name, IFNAMSIZ, "%s", MV_TAP_NAME);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if (ioctl(tun, TUNSETIFF, &ifr) < 0)
                return sh_err(&j->err, -errno, "TUNSETIFF %s", MV_TAP_NAME);
        memset(&ifr, 0, sizeof(ifr));
        snprintf(ifr.ifr_name, IFNAMSIZ, "%s", MV_TAP_NAME);
        ifr.ifr_mtu = mtu;
        if (ioctl(sock, SIOCSIFMTU, &ifr) < 0)
                return sh_err(&j->err, -errno, "%s: set mtu %d", MV_TAP_NAME, mtu);
        if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
                return sh_err(&j->err, -errno, "%s: flags", MV_TAP_NAME);
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
                return sh_err(&j->err, -errno, "%s: up", MV_TAP_NAME);

        /* a qdisc left by an earlier failed start would make "add" fail */
        script = sh_strdup_printf("qdisc del dev %s ingress\n", j->ifname);
        if (!script)
                return -ENOMEM;
        (void)run_tc(script, false, NULL);
        free(script);
        script = sh_strdup_printf(
                "qdisc add dev %1$s ingress\n"
                "filter add dev %1$s parent ffff: protocol all prio 1 u32 match u32 0 0 "
                "action mirred egress redirect dev %2$s\n"
                "qdisc add dev %2$s ingress\n"
                "filter add dev %2$s parent ffff: protocol all prio 1 u32 match u32 0 0 "
                "action mirred egress redirect dev %1$s\n",
                j->ifname, MV_TAP_NAME);
        if (!script)
                return -ENOMEM;
        r = run_tc(script, true, &j->err);
        if (r < 0)
                return r;
        r = mv_netinfo_read(ifindex, mac, (unsigned)mtu, &j->net, &j->err);
        if (r < 0)
                return r;
        j->tap_fd = TAKE_FD(tun);
        return 0;
}

static int tap_teardown(struct tap_job *j)
{
        _cleanup_free_ char *script = sh_strdup_printf("qdisc del dev %s ingress\n", j->ifname);
        int r;

        if (!script)
                return -ENOMEM;
        r = mv_nl_link_del(MV_TAP_NAME);
        if (r < 0 && r != -ENODEV)
                return sh_err(&j->err, r, "delete %s", MV_TAP_NAME);
        (void)run_tc(script, false, NULL);
        return 0;
}

/*
 * The thread enters the pod netns and never leaves it: it ends right after. runtd's other
 * threads (and this one's creator) stay where they are. Its children (tc) inherit the netns.
 */
static void *tap_thread(void *data)
{
        struct tap_job *j = data;

        if (unshare(CLONE_FS) < 0 || setns(j->nsfd, CLONE_NEWNET) < 0) {
                j->r = sh_err(&j->err, -errno, "setns");
                return NULL;
        }
        j->r = j->remove ? tap_teardown(j) : tap_setup(j);
        if (j->r < 0 && !j->err.code)
                sh_err(&j->err, j->r, "tap");
        return NULL;
}

static int run_job(const char *netns_path, struct tap_job *j, struct sh_error *err)
{
        pthread_t t;
        int r;

        if (!j->ifname || !*j->ifname || strlen(j->ifname) >= IFNAMSIZ ||
            strpbrk(j->ifname, " \t\n/"))
                return sh_err(err, -EINVAL, "tap: bad interface name");
        j->nsfd = open(netns_path, O_RDONLY | O_CLOEXEC);
        if (j->nsfd < 0)
                return sh_err(err, -errno, "tap: open netns %s", netns_path);
        j->tap_fd = -1;
        r = pthread_create(&t, NULL, tap_thread, j);
        if (r != 0) {
                close(j->nsfd);
                return sh_err(err, -r, "tap: thread");
        }
        pthread_join(t, NULL);
        close(j->nsfd);
        if (j->r < 0 && err)
                return sh_err(err, j->r, "tap %s: %s", netns_path, j->err.msg);
        return j->r;
}

int mv_tap_create(const char *netns_path, const char *ifname, int *ret_tap_fd,
                  struct ag_net *ret_net, struct sh_error *err)
{
        struct tap_job j = {.ifname = ifname};
        int r = run_job(netns_path, &j, err);

        if (r < 0) {
                struct tap_job u = {.ifname = ifname, .remove = true};

                (void)run_job(netns_path, &u, NULL);
                return r;
        }
        *ret_tap_fd = j.tap_fd;
        *ret_net = j.net;
        return 0;
}

int mv_tap_remove(const char *netns_path, const char *ifname, struct sh_error *err)
{
        struct tap_job j = {.ifname = ifname, .remove = true};

        return run_job(netns_path, &j, err);
}
