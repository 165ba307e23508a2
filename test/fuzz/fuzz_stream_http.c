/*
 * libFuzzer target: what the streaming server (stream/stream.c) parses itself from an HTTP
 * request once libmicrohttpd has split it into a path and header lines: the URL's kind and
 * token (both as the request line arrives and as the handler sees it), the Connection
 * header's tokens, repeated X-Stream-Protocol-Version / Sec-WebSocket-Protocol lines joined
 * and negotiated for SPDY and for WebSocket, the WebSocket key and version, and the
 * port-forward "port" query values. The input is newline-separated fields:
 *   path, Connection, Sec-WebSocket-Key, Sec-WebSocket-Version, port, then protocol lines.
 * Beyond not crashing: a token found is ST_TOKEN_LEN bytes inside the path, a chosen
 * protocol is one we offered, an accept key is 28 base64 characters.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "stream-internal.h"
#include "websocket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 64

static bool in_list(const char *const *v, const char *s)
{
        for (; v && *v; v++)
                if (*v == s)
                        return true;
        return false;
}

static void check_path(const char *path, bool query)
{
        enum stream_kind kind;
        const char *token = NULL;
        size_t n = 0;

        if (st_path_token(path, query, &kind, &token, &n) < 0)
                return;
        if (n != ST_TOKEN_LEN || token < path || token + n > path + strlen(path) ||
            kind > STREAM_PORTFORWARD || memchr(token, '/', n) || (query && memchr(token, '?', n)))
                abort();
}

static void check_spdy(const char *offered)
{
        static const enum stream_kind kinds[] = {STREAM_EXEC, STREAM_ATTACH, STREAM_PORTFORWARD};

        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
                const char *name = NULL;
                int version = -1;

                if (st_spdy_choose(offered, kinds[i], &version, &name) < 0)
                        continue;
                if (!name || !strstr(offered, name) ||
                    (kinds[i] == STREAM_PORTFORWARD ? version != 0 : version < 1 || version > 5))
                        abort();
        }
}

static void check_ws(const char *offered)
{
        const char *const *lists[] = {ws_k8s_exec_protocols(), ws_k8s_portforward_protocols()};

        for (size_t i = 0; i < 2; i++) {
                const char *chosen = (const char *)1;
                enum ws_k8s_proto proto;
                int r = ws_choose_protocol(offered, lists[i], &chosen);

                if (r == -ENOENT)
                        continue;
                if (r != 0 || (chosen && !in_list(lists[i], chosen)))
                        abort();
                if (ws_k8s_proto_from_name(chosen, &proto) < 0 || !ws_k8s_proto_name(proto))
                        abort(); /* everything we offer has a framing */
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *buf, *fields[MAX_FIELDS] = {0};
        size_t nf = 0;
        struct st_joined j = {.name = "X-Stream-Protocol-Version"};
        struct sh_error err = {0};
        uint16_t ports[64];
        size_t n_ports = 0;
        char accept[29];

        if (size > 16384)
                return 0;
        buf = malloc(size + 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        buf[size] = '\0';
        /* MHD hands over NUL-terminated strings; a NUL in the input ends that field early. */
        for (char *p = buf, *nl; nf < MAX_FIELDS && p; p = nl ? nl + 1 : NULL) {
                nl = strchr(p, '\n');
                if (nl)
                        *nl = '\0';
                fields[nf++] = p;
        }

        check_path(fields[0], true);
        check_path(fields[0], false);
        (void)st_has_token(fields[1], "upgrade");
        (void)st_has_token(nf > 1 ? NULL : fields[0], "upgrade");
        if (fields[2] && ws_accept_key(fields[2], accept) == 0 &&
            (strlen(accept) != 28 || accept[27] != '='))
                abort();
        if (fields[3] && ws_check_version(fields[3]) == 0 && !strstr(fields[3], "13"))
                abort();
        if (fields[4] && ws_k8s_pf_parse_ports(fields[4], ports, sizeof(ports) / sizeof(ports[0]),
                                               &n_ports, &err) == 0) {
                for (size_t i = 0; i < n_ports; i++)
                        if (!ports[i])
                                abort();
        }
        for (size_t i = 5; i < nf; i++)
                if (!st_joined_add(&j, fields[i]))
                        break;
        if (j.len != strlen(j.buf) || j.len >= sizeof(j.buf))
                abort();
        if (!j.overflow) {
                check_spdy(j.buf);
                check_ws(j.buf);
        }
        free(buf);
        return 0;
}
