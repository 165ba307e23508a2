#pragma once

/*
 * The service manager's readiness protocol (sd_notify(3)), written here rather than linked
 * from libsystemd: one datagram of "KEY=VALUE" lines to the unix socket $NOTIFY_SOCKET names
 * (a path, or an abstract name written "@name"). runtd says READY=1 once it serves, STATUS=
 * what it does, STOPPING=1 on its way out (docs/operations-systemd.md).
 */
#include <stddef.h>

struct sh_notify {
        char addr[108];  /* sockaddr_un.sun_path as sent: "" when there is no manager */
        size_t addr_len; /* bytes of addr that count (an abstract name has no NUL) */
};

/*
 * Takes $NOTIFY_SOCKET into @n and removes it from the environment, so no helper or
 * container runtd starts can speak for runtd. No variable: @n stays off (every send is a
 * no-op). -EINVAL for a value that is neither an absolute path nor "@name" (@n stays off).
 */
int sh_notify_init(struct sh_notify *n);

/*
 * Sends @state ("READY=1", "STATUS=...\nREADY=1" ...) as one datagram, without blocking.
 * 0 (also when @n is off), or -errno.
 */
int sh_notify_send(const struct sh_notify *n, const char *state);
