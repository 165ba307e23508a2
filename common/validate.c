#include "validate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define SH_ID_LEN 64

int sh_validate_name(const char *s, size_t len, const char *what, struct sh_error *err)
{
        if (!s || len == 0)
                return sh_err(err, -EINVAL, "%s must not be empty", what);
        if (len > SH_NAME_MAX)
                return sh_err(err, -EINVAL, "%s is %zu bytes, longer than %d", what, len,
                              SH_NAME_MAX);
        /* The name is echoed only once it is known to hold no control characters. */
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];

                if (c == '\0')
                        return sh_err(err, -EINVAL, "%s contains a NUL byte at offset %zu", what,
                                      i);
                if (c < 0x20 || c == 0x7f)
                        return sh_err(err, -EINVAL, "%s contains a control character at offset %zu",
                                      what, i);
        }
        if (memchr(s, '/', len))
                return sh_err(err, -EINVAL, "%s '%.*s' must not contain '/'", what, (int)len, s);
        if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
                return sh_err(err, -EINVAL, "%s must not be '%.*s'", what, (int)len, s);
        if (s[0] == '-')
                return sh_err(err, -EINVAL, "%s '%.*s' must not start with '-'", what, (int)len, s);
        return 0;
}

static bool is_lower_hex(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Checks 1..SH_ID_LEN lowercase hex digits, or exactly SH_ID_LEN when @full. */
static int check_hex_id(const char *s, bool full, const char *what, struct sh_error *err)
{
        size_t n;

        if (!s || !*s)
                return sh_err(err, -EINVAL, "%s must not be empty", what);
        for (n = 0; s[n]; n++) {
                if (n >= SH_ID_LEN)
                        return sh_err(err, -EINVAL, "%s is longer than %d hex digits", what,
                                      SH_ID_LEN);
                if (!is_lower_hex(s[n]))
                        return sh_err(err, -EINVAL,
                                      "%s must be lowercase hex digits, bad byte at offset %zu",
                                      what, n);
        }
        if (full && n != SH_ID_LEN)
                return sh_err(err, -EINVAL, "%s '%s' must be %d hex digits, got %zu", what, s,
                              SH_ID_LEN, n);
        return 0;
}

int sh_validate_id(const char *s, const char *what, struct sh_error *err)
{
        return check_hex_id(s, true, what, err);
}

int sh_validate_id_prefix(const char *s, const char *what, struct sh_error *err)
{
        return check_hex_id(s, false, what, err);
}

int sh_validate_cgroup_path(const char *s, const char *what, struct sh_error *err)
{
        static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789._:@-";
        const char *c = s;
        size_t len;

        if (!s || !s[0])
                return 0;
        if (strlen(s) > SH_CGROUP_PATH_MAX)
                return sh_err(err, -EINVAL, "%s is %zu bytes long: at most %d are allowed", what,
                              strlen(s), SH_CGROUP_PATH_MAX);
        if (*c == '/')
                c++;
        while (*c) {
                len = strcspn(c, "/");
                if (len == 0 || (len == 1 && c[0] == '.') ||
                    (len == 2 && c[0] == '.' && c[1] == '.') || strspn(c, ok) < len ||
                    (c[len] == '/' && !c[len + 1]))
                        return sh_err(err, -EINVAL,
                                      "%s '%.64s' is not a clean cgroup path: components of "
                                      "[A-Za-z0-9._:@-], no '.', '..' or empty ones",
                                      what, s);
                c += len + (c[len] == '/');
        }
        return 0;
}

int sh_id_new(char ret[65])
{
        static const char hex[] = "0123456789abcdef";
        unsigned char raw[SH_ID_LEN / 2];
        size_t got = 0;

        while (got < sizeof(raw)) {
                /* Blocks only until the kernel's pool is first initialised, at early boot. */
                ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                got += (size_t)n;
        }
        for (size_t i = 0; i < sizeof(raw); i++) {
                ret[2 * i] = hex[raw[i] >> 4];
                ret[2 * i + 1] = hex[raw[i] & 0xf];
        }
        ret[SH_ID_LEN] = '\0';
        return 0;
}

int sh_parse_host_port(const char *addr, struct sockaddr_storage *ret, socklen_t *ret_len,
                       struct sh_error *err)
{
        char host[INET6_ADDRSTRLEN + 2];
        const char *colon, *port_s, *h = addr;
        size_t hlen;
        char *end;
        long port;

        if (!addr || !addr[0])
                return sh_err(err, -EINVAL, "is empty");
        if (addr[0] == '[') {
                const char *close = strchr(addr, ']');

                if (!close || close[1] != ':')
                        return sh_err(err, -EINVAL,
                                      "'%s': an IPv6 address is written [address]:port", addr);
                h = addr + 1;
                hlen = (size_t)(close - h);
                port_s = close + 2;
        } else {
                colon = strrchr(addr, ':');
                if (!colon)
                        return sh_err(err, -EINVAL, "'%s' is not host:port", addr);
                if (memchr(addr, ':', (size_t)(colon - addr)))
                        return sh_err(err, -EINVAL,
                                      "'%s': an IPv6 address is written [address]:port", addr);
                hlen = (size_t)(colon - addr);
                port_s = colon + 1;
        }
        errno = 0;
        port = strtol(port_s, &end, 10);
        if (!port_s[0] || *end || errno || port < 1 || port > 65535)
                return sh_err(err, -EINVAL, "'%s': port '%s' is not 1 to 65535", addr, port_s);
        if (hlen == 0 || hlen >= sizeof(host))
                return sh_err(err, -EINVAL,
                              "'%s': the host must be a literal IPv4 or [IPv6] address", addr);
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        memset(ret, 0, sizeof(*ret));
        if (addr[0] != '[') {
                struct sockaddr_in *in = (struct sockaddr_in *)ret;

                if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
                        return sh_err(err, -EINVAL,
                                      "'%s': '%s' is not a literal IPv4 address (runt does not "
                                      "resolve names; IPv6 is written [address]:port)",
                                      addr, host);
                in->sin_family = AF_INET;
                in->sin_port = htons((uint16_t)port);
                *ret_len = sizeof(*in);
        } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ret;

                if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
                        return sh_err(err, -EINVAL, "'%s': '%s' is not a literal IPv6 address",
                                      addr, host);
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t)port);
                *ret_len = sizeof(*in6);
        }
        return 0;
}
