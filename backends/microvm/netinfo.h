#pragma once

#include <linux/netlink.h>

#include "error.h"

struct ag_net;

/* rtnetlink helpers for tap.c (they act in the calling thread's netns). */
int mv_nl_open(void);
int mv_nl_talk(int fd, struct nlmsghdr *req, int (*cb)(const struct nlmsghdr *h, void *data),
               void *data);
/* One iface (@mac, @mtu, addresses of @ifindex) and the main-table routes through it. */
int mv_netinfo_read(int ifindex, const char *mac, unsigned mtu, struct ag_net *ret,
                    struct sh_error *err);
/* RTM_DELLINK by name; -ENODEV when there is none. */
int mv_nl_link_del(const char *ifname);
