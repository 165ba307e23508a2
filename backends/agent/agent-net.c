/*
 * runt-agent: NET_SETUP. The guest's NICs are found by MAC; addresses and routes go in by
 * rtnetlink, flags and MTU by ioctl; no tool is run.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"

static int if_flags_up(const char *name, int mtu)
{
        struct ifreq ifr = {0};
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;

        if (fd < 0)
                return -errno;
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
        if (mtu > 0) {
                ifr.ifr_mtu = mtu;
                if (ioctl(fd, SIOCSIFMTU, &ifr) < 0)
                        r = -errno;
        }
        if (r == 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
                ifr.ifr_flags |= IFF_UP;
                if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                        r = -errno;
        } else if (r == 0) {
                r = -errno;
        }
        close(fd);
        return r;
}

int net_lo_up(void)
{
        return if_flags_up("lo", 0);
}

/* The ifindex of the NIC with @mac, its name in @name. */
static int if_by_mac(const char *mac, char name[IF_NAMESIZE])
{
        unsigned m[6];
        struct if_nameindex *ifs, *i;
        int fd, r = -ENODEV;

        if (!mac || sscanf(mac, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
                return -EINVAL;
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ifs = if_nameindex();
        for (i = ifs; fd >= 0 && i && i->if_index; i++) {
                struct ifreq ifr = {0};
                bool same = true;

                snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", i->if_name);
                if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
                        continue;
                for (int k = 0; k < 6; k++)
                        same = same && (unsigned char)ifr.ifr_hwaddr.sa_data[k] == m[k];
                if (same) {
                        snprintf(name, IF_NAMESIZE, "%s", i->if_name);
                        r = (int)i->if_index;
                        break;
                }
        }
        if (ifs)
                if_freenameindex(ifs);
        if (fd >= 0)
                close(fd);
        return r;
}

struct nlreq {
        struct nlmsghdr h;
        union {
                struct ifaddrmsg a;
                struct rtmsg r;
        };
        char attrs[512];
};

static void nl_attr(struct nlreq *q, unsigned short type, const void *d, size_t n)
{
        struct rtattr *rta = (struct rtattr *)((char *)q + NLMSG_ALIGN(q->h.nlmsg_len));

        rta->rta_type = type;
        rta->rta_len = (unsigned short)RTA_LENGTH(n);
        memcpy(RTA_DATA(rta), d, n);
        q->h.nlmsg_len = NLMSG_ALIGN(q->h.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

static int nl_talk(struct nlreq *q)
{
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
        char buf[4096];
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), r = -EIO;
        ssize_t n;

        if (fd < 0)
                return -errno;
        q->h.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
        q->h.nlmsg_seq = 1;
        if (sendto(fd, q, q->h.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        n = recv(fd, buf, sizeof(buf), 0);
        if (n >= (ssize_t)sizeof(struct nlmsghdr)) {
                struct nlmsghdr *h = (struct nlmsghdr *)buf;

                if (h->nlmsg_type == NLMSG_ERROR) {
                        struct nlmsgerr *e = NLMSG_DATA(h);

                        r = e->error;
                }
        }
        close(fd);
        return r == -EEXIST ? 0 : r;
}

/* "10.88.0.5/16" into family, bytes, prefix. */
static int parse_cidr(const char *s, int *fam, unsigned char addr[16], int *prefix)
{
        char buf[64], *slash;

        snprintf(buf, sizeof(buf), "%s", s ? s : "");
        slash = strchr(buf, '/');
        if (slash)
                *slash = 0;
        if (inet_pton(AF_INET, buf, addr) == 1)
                *fam = AF_INET;
        else if (inet_pton(AF_INET6, buf, addr) == 1)
                *fam = AF_INET6;
        else
                return -EINVAL;
        *prefix = slash ? atoi(slash + 1) : (*fam == AF_INET ? 32 : 128);
        if (*prefix < 0 || *prefix > (*fam == AF_INET ? 32 : 128))
                return -EINVAL;
        return 0;
}

static int add_addr(int ifindex, const char *cidr)
{
        struct nlreq q = {0};
        unsigned char a[16];
        int fam, prefix;

        if (parse_cidr(cidr, &fam, a, &prefix) < 0)
                return -EINVAL;
        q.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
        q.h.nlmsg_type = RTM_NEWADDR;
        q.h.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
        q.a.ifa_family = (unsigned char)fam;
        q.a.ifa_prefixlen = (unsigned char)prefix;
        q.a.ifa_index = (unsigned)ifindex;
        nl_attr(&q, IFA_LOCAL, a, fam == AF_INET ? 4 : 16);
        nl_attr(&q, IFA_ADDRESS, a, fam == AF_INET ? 4 : 16);
        return nl_talk(&q);
}

static int add_route(const struct ag_route *rt, int ifindex)
{
        struct nlreq q = {0};
        unsigned char dst[16], gw[16];
        int fam, prefix, gfam = 0, gp;

        if (parse_cidr(rt->dst, &fam, dst, &prefix) < 0)
                return -EINVAL;
        if (rt->gw && rt->gw[0] && (parse_cidr(rt->gw, &gfam, gw, &gp) < 0 || gfam != fam))
                return -EINVAL;
        q.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
        q.h.nlmsg_type = RTM_NEWROUTE;
        q.h.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
        q.r.rtm_family = (unsigned char)fam;
        q.r.rtm_dst_len = (unsigned char)prefix;
        q.r.rtm_table = RT_TABLE_MAIN;
        q.r.rtm_protocol = RTPROT_BOOT;
        q.r.rtm_scope = gfam ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
        q.r.rtm_type = RTN_UNICAST;
        if (prefix > 0)
                nl_attr(&q, RTA_DST, dst, fam == AF_INET ? 4 : 16);
        if (gfam)
                nl_attr(&q, RTA_GATEWAY, gw, fam == AF_INET ? 4 : 16);
        if (ifindex > 0)
                nl_attr(&q, RTA_OIF, &ifindex, sizeof(ifindex));
        return nl_talk(&q);
}

static int write_sysctl(const char *kv)
{
        char path[PATH_MAX];
        const char *eq = strchr(kv, '=');
        int fd, r = 0;

        if (!eq || eq == kv || strstr(kv, "..") || memchr(kv, '/', (size_t)(eq - kv)))
                return -EINVAL;
        snprintf(path, sizeof(path), "/proc/sys/%.*s", (int)(eq - kv), kv);
        for (char *p = path + 10; *p; p++)
                if (*p == '.')
                        *p = '/';
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (write(fd, eq + 1, strlen(eq + 1)) < 0)
                r = -errno;
        close(fd);
        return r;
}

void net_op_setup(const struct ag_hdr *h, const uint8_t *p)
{
        struct ag_net n;
        char name[IF_NAMESIZE];
        int r, idx;

        r = ag_net_decode(p, h->len, &n);
        if (r < 0) {
                agent_resp_err(h, -r, "bad NET_SETUP");
                return;
        }
        net_lo_up();
        for (size_t i = 0; i < n.n_ifaces; i++) {
                const struct ag_iface *f = &n.ifaces[i];

                idx = if_by_mac(f->mac, name);
                if (idx < 0) {
                        agent_resp_err(h, -idx, "no NIC with MAC %s", f->mac ? f->mac : "");
                        goto out;
                }
                r = if_flags_up(name, (int)f->mtu);
                for (size_t k = 0; r == 0 && f->addrs[k]; k++)
                        if ((r = add_addr(idx, f->addrs[k])) < 0) {
                                agent_resp_err(h, -r, "%s: address %s: %s", name, f->addrs[k],
                                               strerror(-r));
                                goto out;
                        }
                if (r < 0) {
                        agent_resp_err(h, -r, "%s: up/mtu: %s", name, strerror(-r));
                        goto out;
                }
        }
        for (size_t i = 0; i < n.n_routes; i++) {
                const struct ag_route *rt = &n.routes[i];

                idx = 0;
                if (rt->dev_mac && rt->dev_mac[0])
                        idx = if_by_mac(rt->dev_mac, name);
                else if (n.n_ifaces == 1)
                        idx = if_by_mac(n.ifaces[0].mac, name);
                if (idx < 0 || (r = add_route(rt, idx)) < 0) {
                        r = idx < 0 ? idx : r;
                        agent_resp_err(h, -r, "route %s via %s: %s", rt->dst ? rt->dst : "",
                                       rt->gw ? rt->gw : "", strerror(-r));
                        goto out;
                }
        }
        if (n.hostname && n.hostname[0] && sethostname(n.hostname, strlen(n.hostname)) < 0) {
                agent_resp_err(h, errno, "hostname: %s", strerror(errno));
                goto out;
        }
        for (size_t i = 0; n.sysctls[i]; i++)
                if ((r = write_sysctl(n.sysctls[i])) < 0) {
                        agent_resp_err(h, -r, "sysctl %s: %s", n.sysctls[i], strerror(-r));
                        goto out;
                }
        agent_resp_ok(h);
out:
        ag_net_done(&n);
}
