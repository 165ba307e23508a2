/* Reading a pod netns's interface and routes over rtnetlink into struct ag_net. */
#include "netinfo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/proto.h"
#include "cleanup.h"
#include "error.h"
#include "strutil.h"
#include "vm.h"

void mv_net_done(struct ag_net *n)
{
        ag_net_done(n);
}

int mv_nl_open(void)
{
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

        return fd < 0 ? -errno : fd;
}

/*
 * Sends @req and reads the answer: a dump (each message to @cb, until NLMSG_DONE) or an ack.
 * 0 or -errno (from an NLMSG_ERROR, or the callback's).
 */
int mv_nl_talk(int fd, struct nlmsghdr *req, int (*cb)(const struct nlmsghdr *h, void *data),
               void *data)
{
        static unsigned seq;
        char buf[32768] __attribute__((aligned(NLMSG_ALIGNTO)));
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
        unsigned s = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
        int r = 0;

        req->nlmsg_seq = s;
        if (sendto(fd, req, req->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), 0);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
                     h = NLMSG_NEXT(h, n)) {
                        if (h->nlmsg_seq != s)
                                continue;
                        if (h->nlmsg_type == NLMSG_DONE)
                                return r;
                        if (h->nlmsg_type == NLMSG_ERROR) {
                                const struct nlmsgerr *e = NLMSG_DATA(h);

                                return e->error < 0 ? e->error : r;
                        }
                        if (cb && r >= 0)
                                r = cb(h, data);
                        if (!(h->nlmsg_flags & NLM_F_MULTI))
                                return r;
                }
        }
}

struct collect {
        int ifindex;
        const char *mac;
        struct ag_net *net;
        int oom;
};

static int strv_push(char ***v, char *s)
{
        size_t n = 0;
        char **nv;

        if (!s)
                return -ENOMEM;
        while (*v && (*v)[n])
                n++;
        nv = realloc(*v, (n + 2) * sizeof(char *));
        if (!nv) {
                free(s);
                return -ENOMEM;
        }
        nv[n] = s;
        nv[n + 1] = NULL;
        *v = nv;
        return 0;
}

static char *addr_str(int family, const void *a, unsigned prefix, bool with_prefix)
{
        char ip[INET6_ADDRSTRLEN];

        if (!inet_ntop(family, a, ip, sizeof(ip)))
                return NULL;
        return with_prefix ? sh_strdup_printf("%s/%u", ip, prefix) : strdup(ip);
}

static int on_addr(const struct nlmsghdr *h, void *data)
{
        struct collect *c = data;
        const struct ifaddrmsg *ifa = NLMSG_DATA(h);
        const struct rtattr *local = NULL, *addr = NULL;
        int len = (int)IFA_PAYLOAD(h);

        if (h->nlmsg_type != RTM_NEWADDR || (int)ifa->ifa_index != c->ifindex)
                return 0;
        if (ifa->ifa_scope == RT_SCOPE_LINK || ifa->ifa_scope == RT_SCOPE_HOST)
                return 0; /* the guest makes its own link-local (from the same MAC) */
        for (const struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                if (a->rta_type == IFA_LOCAL)
                        local = a;
                else if (a->rta_type == IFA_ADDRESS)
                        addr = a;
        }
        if (local) /* on point-to-point links IFA_ADDRESS is the peer */
                addr = local;
        if (!addr || (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6))
                return 0;
        return strv_push(&c->net->ifaces[0].addrs,
                         addr_str(ifa->ifa_family, RTA_DATA(addr), ifa->ifa_prefixlen, true));
}

static int on_route(const struct nlmsghdr *h, void *data)
{
        struct collect *c = data;
        const struct rtmsg *rt = NLMSG_DATA(h);
        const void *dst = NULL, *gw = NULL;
        unsigned table = rt->rtm_table;
        int oif = -1, len = (int)RTM_PAYLOAD(h);
        struct ag_route *v, *route;

        if (h->nlmsg_type != RTM_NEWROUTE || rt->rtm_type != RTN_UNICAST ||
            rt->rtm_protocol == RTPROT_KERNEL)
                return 0; /* connected routes come back in the guest with the addresses */
        if (rt->rtm_family != AF_INET && rt->rtm_family != AF_INET6)
                return 0;
        for (const struct rtattr *a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                switch (a->rta_type) {
                case RTA_DST:
                        dst = RTA_DATA(a);
                        break;
                case RTA_GATEWAY:
                        gw = RTA_DATA(a);
                        break;
                case RTA_OIF:
                        oif = *(const int *)RTA_DATA(a);
                        break;
                case RTA_TABLE:
                        table = *(const unsigned *)RTA_DATA(a);
                        break;
                default:
                        break;
                }
        }
        if (table != RT_TABLE_MAIN || oif != c->ifindex)
                return 0;
        v = realloc(c->net->routes, (c->net->n_routes + 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        c->net->routes = v;
        route = &v[c->net->n_routes];
        *route = (struct ag_route){0};
        c->net->n_routes++;
        if (dst) {
                route->dst = addr_str(rt->rtm_family, dst, rt->rtm_dst_len, true);
        } else {
                route->dst = strdup(rt->rtm_family == AF_INET ? "0.0.0.0/0" : "::/0");
        }
        route->gw = gw ? addr_str(rt->rtm_family, gw, 0, false) : strdup("");
        route->dev_mac = strdup(c->mac);
        if (!route->dst || !route->gw || !route->dev_mac)
                return -ENOMEM;
        return 0;
}

static int dump(int fd, int type, int family, struct collect *c,
                int (*cb)(const struct nlmsghdr *h, void *data))
{
        struct {
                struct nlmsghdr h;
                struct rtmsg m; /* same size as ifaddrmsg's leading family byte */
        } req = {
                .h = {.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg)),
                      .nlmsg_type = (unsigned short)type,
                      .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
                .m = {.rtm_family = (unsigned char)family},
        };

        return mv_nl_talk(fd, &req.h, cb, c);
}

int mv_netinfo_read(int ifindex, const char *mac, unsigned mtu, struct ag_net *ret,
                    struct sh_error *err)
{
        _cleanup_close_ int fd = mv_nl_open();
        struct ag_net net = {0};
        struct collect c = {.ifindex = ifindex, .mac = mac, .net = &net};
        int r;

        if (fd < 0)
                return sh_err(err, fd, "netlink socket");
        net.ifaces = calloc(1, sizeof(*net.ifaces));
        if (!net.ifaces)
                return -ENOMEM;
        net.n_ifaces = 1;
        net.ifaces[0].mac = strdup(mac);
        net.ifaces[0].mtu = mtu;
        net.ifaces[0].addrs = calloc(1, sizeof(char *));
        if (!net.ifaces[0].mac || !net.ifaces[0].addrs) {
                mv_net_done(&net);
                return -ENOMEM;
        }
        r = dump(fd, RTM_GETADDR, AF_UNSPEC, &c, on_addr);
        if (r < 0) {
                mv_net_done(&net);
                return sh_err(err, r, "netlink: addresses");
        }
        r = dump(fd, RTM_GETROUTE, AF_UNSPEC, &c, on_route);
        if (r < 0) {
                mv_net_done(&net);
                return sh_err(err, r, "netlink: routes");
        }
        *ret = net;
        return 0;
}

int mv_nl_link_del(const char *ifname)
{
        _cleanup_close_ int fd = mv_nl_open();
        struct {
                struct nlmsghdr h;
                struct ifinfomsg i;
                char attrs[64];
        } req = {
                .h = {.nlmsg_type = RTM_DELLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK},
                .i = {.ifi_family = AF_UNSPEC},
        };
        struct rtattr *a;
        size_t n = strlen(ifname) + 1;

        if (fd < 0)
                return fd;
        if (n > IFNAMSIZ)
                return -EINVAL;
        a = (struct rtattr *)req.attrs;
        a->rta_type = IFLA_IFNAME;
        a->rta_len = (unsigned short)RTA_LENGTH(n);
        memcpy(RTA_DATA(a), ifname, n);
        req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)) + RTA_ALIGN(a->rta_len);
        return mv_nl_talk(fd, &req.h, NULL, NULL);
}
