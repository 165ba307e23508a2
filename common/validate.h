#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "error.h"

/* Longest name or id runt accepts; beyond it a client gets INVALID_ARGUMENT. */
#define SH_NAME_MAX 253

/*
 * Checks a client-supplied name that becomes part of a path or an LXC name: non-empty,
 * at most SH_NAME_MAX bytes, no '/', no NUL, not "." or "..", no control characters,
 * no leading '-' . @what names the field in the message ("sandbox name").
 * Returns 0 or -EINVAL.
 */
int sh_validate_name(const char *s, size_t len, const char *what, struct sh_error *err);

/* Longest cgroup path runt accepts (the kubelet's are under 200 bytes). */
#define SH_CGROUP_PATH_MAX 1024

/*
 * Checks a client-supplied cgroup path (cgroup_parent): empty, or an optional leading '/'
 * then components of [A-Za-z0-9._:@-] separated by single '/', none "." or "..", no
 * trailing '/', at most SH_CGROUP_PATH_MAX bytes. Covers the cgroupfs driver's
 * "/kubepods/burstable/pod<uid>" and the systemd driver's "kubepods-burstable-pod<uid>.slice".
 * @what names the field in the message. Returns 0 or -EINVAL.
 */
int sh_validate_cgroup_path(const char *s, const char *what, struct sh_error *err);

/* A runt id: exactly 64 lowercase hex digits. Returns 0 or -EINVAL. */
int sh_validate_id(const char *s, const char *what, struct sh_error *err);

/* An id or a unique prefix of one: 1..64 lowercase hex digits. Returns 0 or -EINVAL. */
int sh_validate_id_prefix(const char *s, const char *what, struct sh_error *err);

/* Fills @ret (65 bytes) with a new random id (64 hex digits). Returns 0 or -errno. */
int sh_id_new(char ret[65]);

/*
 * Parses a listen address "a.b.c.d:port" or "[v6]:port": literal addresses only (runt
 * resolves no names) and a port of 1 to 65535. Fills @ret and @ret_len. Returns 0 or
 * -EINVAL with a message that quotes @addr but names no key (the caller prefixes it).
 */
int sh_parse_host_port(const char *addr, struct sockaddr_storage *ret, socklen_t *ret_len,
                       struct sh_error *err);
