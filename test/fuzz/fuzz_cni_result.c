/*
 * libFuzzer target: what runtd reads from CNI (netmgr/cni.c). The first byte picks the
 * source: a plugin's answer on success (then its result's facts, as ADD takes them), a
 * plugin's answer on failure (the CNI error JSON), or a pod's cache file as net_status and
 * net_teardown read it back (then the result's facts from it). Beyond not crashing or
 * leaking: every failure says why; addresses come out IPv4 first, without a prefix, and
 * the result's JSON is kept.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netmgr-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_facts(json_object *result, const char *network)
{
        struct net_result res;
        bool v6 = false;

        if (net_result_facts(result, network, &res) < 0)
                return; /* only -ENOMEM */
        if (!res.ips || !res.json || !res.network || strcmp(res.network, network) != 0)
                abort();
        for (size_t i = 0; res.ips[i]; i++) {
                bool colon = strchr(res.ips[i], ':') != NULL;

                if (strchr(res.ips[i], '/') || (v6 && !colon))
                        abort();
                v6 = colon;
        }
        net_result_done(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct sh_error err = {0};
        json_object *obj = NULL;
        char *text;
        uint8_t mode;
        int r;

        if (size < 1 || size > 64 * 1024)
                return 0;
        mode = data[0] % 3;
        data++;
        size--;
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';

        if (mode == 0) {
                r = net_plugin_output("bridge", "ADD", 0, text, size, NULL, &obj, &err);
                if (r < 0 && (r != -EPROTO || !err.msg[0] || obj))
                        abort();
                if (r == 0) {
                        if (!json_object_is_type(obj, json_type_object))
                                abort();
                        check_facts(obj, "runt-net");
                        json_object_put(obj);
                }
        } else if (mode == 1) {
                r = net_plugin_output("bridge", "DEL", 1, text, size, "stderr text", NULL, &err);
                if (r != -EIO || !err.msg[0])
                        abort();
        } else {
                struct net_cached c;

                memset(&c, 0, sizeof(c));
                r = net_cache_parse(text, size, "cache.json", &c.doc, &err);
                if (r < 0) {
                        if (c.doc || !err.msg[0])
                                abort();
                } else if (net_cached_fields(&c, "pod", &err) < 0) {
                        if (c.doc)
                                abort(); /* released on error */
                } else {
                        if (!c.name || !c.version || !c.plugins || !c.list)
                                abort();
                        if (c.result)
                                check_facts(c.result, c.name);
                        json_object_put(c.doc);
                }
        }
        free(text);
        return 0;
}
