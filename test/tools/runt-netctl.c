/*
 * runt-netctl: netmgr's pod networking from the command line, for the network tests and
 * the benchmark (each call is a fresh process, so a DEL always comes from the on-disk cache,
 * as after a runtd restart). Prints one JSON object per call.
 *
 *   runt-netctl [--state-dir D] [--run-dir D] [--conf-dir D] [--bin-dir D]...
 *               [--plugin-timeout SECONDS] CMD ...
 *     netns-add ID | netns-del ID
 *     add ID NAME NAMESPACE UID NETNS [PROTO:HOSTPORT:CONTAINERPORT]...
 *     del ID | check ID | status ID
 *     cycle ID NAME NAMESPACE UID    netns + ADD + DEL + netns removal, with timings
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "config.h"
#include "netmgr.h"
#include "strutil.h"

static void print_result(const struct net_result *r, unsigned long long total_ns,
                         unsigned long long plugin_ns)
{
        printf("{\"ok\":true,\"network\":\"%s\",\"ips\":[", r && r->network ? r->network : "");
        for (size_t i = 0; r && r->ips && r->ips[i]; i++)
                printf("%s\"%s\"", i ? "," : "", r->ips[i]);
        printf("],\"total_ns\":%llu,\"plugin_ns\":%llu}\n", total_ns, plugin_ns);
}

static int fail(const struct sh_error *err, int r)
{
        char msg[sizeof(err->msg) * 2];
        size_t o = 0;

        for (const char *p = err->msg[0] ? err->msg : strerror(-r); *p && o + 2 < sizeof(msg);
             p++) {
                if (*p == '"' || *p == '\\')
                        msg[o++] = '\\';
                msg[o++] = (unsigned char)*p < 0x20 ? ' ' : *p;
        }
        msg[o] = '\0';
        printf("{\"ok\":false,\"errno\":%d,\"error\":\"%s\"}\n", -r, msg);
        return 1;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"state-dir", required_argument, NULL, 's'},
                {"run-dir", required_argument, NULL, 'r'},
                {"conf-dir", required_argument, NULL, 'c'},
                {"bin-dir", required_argument, NULL, 'b'},
                {"plugin-timeout", required_argument, NULL, 't'},
                {NULL, 0, NULL, 0},
        };
        struct runt_config cfg = {0};
        struct sh_error err = {0};
        struct net_mgr *nm = NULL;
        char *bins[9] = {0};
        size_t nb = 0;
        int c, r = 0;

        if (runt_config_defaults(&cfg, &err) < 0)
                return fail(&err, -ENOMEM);
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                char **dst = c == 's'   ? &cfg.state_dir
                             : c == 'r' ? &cfg.run_dir
                             : c == 'c' ? &cfg.cni_conf_dir
                                        : NULL;

                if (c == 't') {
                        cfg.cni_plugin_timeout_s = (unsigned)atoi(optarg);
                } else if (c == 'b' && nb < 8) {
                        bins[nb++] = optarg;
                } else if (dst) {
                        free(*dst);
                        *dst = strdup(optarg);
                } else {
                        fprintf(stderr, "usage: see the comment at the top of runt-netctl.c\n");
                        return 2;
                }
        }
        if (nb) {
                sh_strv_free(cfg.cni_bin_dirs);
                cfg.cni_bin_dirs = calloc(nb + 1, sizeof(char *));
                for (size_t i = 0; i < nb; i++)
                        cfg.cni_bin_dirs[i] = strdup(bins[i]);
        }
        if (optind >= argc || net_mgr_new(&cfg, &nm, &err) < 0) {
                fprintf(stderr, "usage: see the comment at the top of runt-netctl.c\n");
                return 2;
        }
        const char *cmd = argv[optind], *id = optind + 1 < argc ? argv[optind + 1] : "";
        unsigned long long t0 = sh_now_ns(), p0 = net_mgr_plugin_ns(nm);

        if (!strcmp(cmd, "netns-add")) {
                char *path = NULL;

                r = net_netns_create(nm, id, &path, &err);
                if (r == 0)
                        printf("{\"ok\":true,\"path\":\"%s\"}\n", path);
                free(path);
        } else if (!strcmp(cmd, "netns-del")) {
                r = net_netns_remove(nm, id, &err);
        } else if (!strcmp(cmd, "add") && argc - optind >= 6) {
                struct net_port ports[16];
                char protos[16][8];
                size_t np = 0;
                struct net_result res = {0};

                for (int i = optind + 6; i < argc && np < 16; i++, np++) {
                        ports[np] = (struct net_port){.protocol = protos[np]};
                        if (sscanf(argv[i], "%7[a-z]:%d:%d", protos[np], &ports[np].host_port,
                                   &ports[np].container_port) != 3)
                                return 2;
                }
                struct net_pod pod = {.id = id,
                                      .name = argv[optind + 2],
                                      .namespace = argv[optind + 3],
                                      .uid = argv[optind + 4],
                                      .ports = ports,
                                      .n_ports = np};

                r = net_setup(nm, &pod, argv[optind + 5], &res, &err);
                if (r == 0)
                        print_result(&res, sh_now_ns() - t0, net_mgr_plugin_ns(nm) - p0);
                net_result_done(&res);
        } else if (!strcmp(cmd, "del")) {
                r = net_teardown(nm, id, &err);
        } else if (!strcmp(cmd, "check")) {
                r = net_check(nm, id, &err);
        } else if (!strcmp(cmd, "status")) {
                struct net_result res = {0};

                r = net_status(nm, id, &res, &err);
                if (r == 0)
                        print_result(&res, 0, 0);
                net_result_done(&res);
        } else if (!strcmp(cmd, "cycle") && argc - optind >= 5) {
                struct net_pod pod = {.id = id,
                                      .name = argv[optind + 2],
                                      .namespace = argv[optind + 3],
                                      .uid = argv[optind + 4]};
                struct net_result res = {0};
                char *path = NULL;

                r = net_netns_create(nm, id, &path, &err);
                if (r == 0)
                        r = net_setup(nm, &pod, path, &res, &err);
                if (r == 0)
                        r = net_teardown(nm, id, &err);
                if (path && r == 0)
                        r = net_netns_remove(nm, id, &err);
                if (r == 0)
                        print_result(&res, sh_now_ns() - t0, net_mgr_plugin_ns(nm) - p0);
                net_result_done(&res);
                free(path);
        } else {
                fprintf(stderr, "runt-netctl: unknown command or missing arguments\n");
                r = -EINVAL;
        }
        if (r < 0)
                fail(&err, r);
        else if (strcmp(cmd, "add") && strcmp(cmd, "status") && strcmp(cmd, "cycle") &&
                 strcmp(cmd, "netns-add"))
                printf("{\"ok\":true}\n");
        net_mgr_free(nm);
        runt_config_done(&cfg);
        return r < 0 ? 1 : 0;
}
