#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* One network interface's counters, as /proc/net/dev gives them. */
struct sh_netdev {
        char name[16]; /* IFNAMSIZ */
        uint64_t rx_bytes, rx_packets, rx_errors, rx_dropped;
        uint64_t tx_bytes, tx_packets, tx_errors, tx_dropped;
};

/*
 * Parses the text of /proc/net/dev into *@ret (malloc'd, *@ret_n entries, in file order),
 * leaving out the loopback. -EIO when the text is not that file's format, -ENOMEM.
 */
int sh_netdev_parse(const char *text, struct sh_netdev **ret, size_t *ret_n);

/*
 * The interfaces of network namespace @netns (a path: an `ip netns` bind mount or
 * /proc/<pid>/ns/net), read from a short-lived thread that enters it (the calling thread
 * stays where it is). Needs CAP_SYS_ADMIN. -ENOENT when @netns is gone. Blocks briefly.
 */
int sh_netdev_read_netns(const char *netns, struct sh_netdev **ret, size_t *ret_n,
                         struct sh_error *err);
