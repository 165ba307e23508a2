/*
 * libFuzzer target: the agent's side of the pod agent protocol (backends/agent/proto.c). The
 * input is what the host sent, fed to a frame reader in chunks whose sizes come from the
 * first input byte; each whole REQ is decoded as runt-agent does: a container spec, a
 * network setup and resources. Beyond not crashing or leaking: a decoded spec has an id and
 * a non-empty argv, and every string vector is there and NULL-terminated.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_strv(char **v)
{
        if (!v)
                abort();
        for (; *v; v++)
                (void)strlen(*v);
}

static void decode_req(const struct ag_hdr *h, const uint8_t *p)
{
        struct ag_ctr_spec spec;
        struct ag_resources res;
        struct ag_net net;

        if (ag_ctr_spec_decode(p, h->len, &spec) == 0) {
                if (!spec.id || !spec.argv || !spec.argv[0])
                        abort();
                check_strv(spec.lower);
                check_strv(spec.env);
                check_strv(spec.caps);
                check_strv(spec.masked);
                check_strv(spec.ro_paths);
                check_strv(spec.sysctls);
                if (spec.seccomp && spec.seccomp[spec.seccomp_len] != '\0')
                        abort();
                for (size_t i = 0; i < spec.n_groups; i++)
                        (void)spec.groups[i];
                ag_ctr_spec_done(&spec);
        }
        if (ag_net_decode(p, h->len, &net) == 0) {
                check_strv(net.sysctls);
                for (size_t i = 0; i < net.n_ifaces; i++)
                        check_strv(net.ifaces[i].addrs);
                ag_net_done(&net);
        }
        if (ag_resources_decode(p, h->len, &res) == 0)
                ag_resources_done(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct ag_reader r;
        struct ag_hdr h;
        const uint8_t *p;
        size_t chunk, pos = 1;
        int rc = 0;

        if (size < 1 || size > 4u << 20)
                return 0;
        chunk = (size_t)data[0] * 61 + 1;
        ag_reader_init(&r);
        while (pos < size && rc >= 0) {
                size_t n = size - pos < chunk ? size - pos : chunk;

                if (ag_reader_feed(&r, data + pos, n) < 0)
                        abort();
                pos += n;
                while ((rc = ag_reader_next(&r, &h, &p)) == 1) {
                        if (h.kind == AG_K_REQ)
                                decode_req(&h, p);
                        else if (h.kind == AG_K_WINDOW && h.len > 4)
                                abort();
                }
                if (rc < 0 && rc != -EPROTO)
                        abort();
        }
        ag_reader_done(&r);
        return 0;
}
