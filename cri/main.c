/* runtd: the runt CRI daemon. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>

#define SH_LOG_MODULE "runtd"
#include "audit.h"
#include "cleanup.h"
#include "config.h"
#include "cri-internal.h"
#include "events.h"
#include "helpercg.h"
#include "imagemgr.h"
#include "log.h"
#include "metrics.h"
#include "netmgr.h"
#include "notify.h"
#include "podmgr.h"
#include "strutil.h"

#define DEFAULT_CONFIG "/etc/runt/runt.yaml"

struct opts {
        const char *config;
        bool config_given;
        const char *listen;
        const char *state_dir;
        const char *root_dir;
        const char *run_dir;
        const char *log_level;
        const char *log_file;
        bool print_config;
};

static void usage(FILE *f)
{
        fprintf(f, "usage: runtd [options]\n"
                   "\n"
                   "The runt CRI daemon: serves the CRI v1 RuntimeService and ImageService.\n"
                   "\n"
                   "  -c, --config FILE     configuration file (default " DEFAULT_CONFIG "),\n"
                   "                        then the drop-ins FILE.d/*.yaml in name order\n"
                   "  -l, --listen ADDR     listen address, unix:///path\n"
                   "      --state-dir DIR   state directory (runt.db, exit status, CNI cache)\n"
                   "      --root-dir DIR    root directory (layers, container rootfs)\n"
                   "      --run-dir DIR     runtime directory (netns mounts, sockets)\n"
                   "      --log-level LVL   error, warn, info or debug\n"
                   "      --log-file FILE   log to FILE instead of stderr\n"
                   "      --print-config    print the effective configuration (the file, its\n"
                   "                        drop-ins and these flags) as YAML and exit\n"
                   "  -h, --help            show this help\n"
                   "  -V, --version         show the version\n"
                   "\n"
                   "Flags override the configuration file; see docs/configuration.md.\n");
}

enum {
        OPT_STATE_DIR = 256,
        OPT_ROOT_DIR,
        OPT_RUN_DIR,
        OPT_LOG_LEVEL,
        OPT_LOG_FILE,
        OPT_PRINT_CONFIG,
};

/* Returns 0 to run, 1 to exit successfully (help, version), -EINVAL on a usage error. */
static int parse_args(int argc, char **argv, struct opts *o)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"listen", required_argument, NULL, 'l'},
                {"state-dir", required_argument, NULL, OPT_STATE_DIR},
                {"root-dir", required_argument, NULL, OPT_ROOT_DIR},
                {"run-dir", required_argument, NULL, OPT_RUN_DIR},
                {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
                {"log-file", required_argument, NULL, OPT_LOG_FILE},
                {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {NULL, 0, NULL, 0},
        };
        int c;

        o->config = DEFAULT_CONFIG;
        while ((c = getopt_long(argc, argv, "c:l:hV", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        o->config = optarg;
                        o->config_given = true;
                        break;
                case 'l':
                        o->listen = optarg;
                        break;
                case OPT_STATE_DIR:
                        o->state_dir = optarg;
                        break;
                case OPT_ROOT_DIR:
                        o->root_dir = optarg;
                        break;
                case OPT_RUN_DIR:
                        o->run_dir = optarg;
                        break;
                case OPT_LOG_LEVEL:
                        o->log_level = optarg;
                        break;
                case OPT_LOG_FILE:
                        o->log_file = optarg;
                        break;
                case OPT_PRINT_CONFIG:
                        o->print_config = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 1;
                case 'V':
                        printf("runtd %s (CRI v1)\n", RUNT_VERSION);
                        return 1;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "runtd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 0;
}

/*
 * The built-in defaults, runt.yaml and its drop-ins (runt.yaml.d/NAME.yaml), then the flags,
 * each checked as the same key in a file would be. A bad value is reported on stderr.
 */
static int load_config(const struct opts *o, struct runt_config *cfg)
{
        const struct {
                const char *key, *value, *flag;
        } flags[] = {
                {"listen", o->listen, "--listen"},
                {"state_dir", o->state_dir, "--state-dir"},
                {"root_dir", o->root_dir, "--root-dir"},
                {"run_dir", o->run_dir, "--run-dir"},
                {"log_level", o->log_level, "--log-level"},
                {"log_file", o->log_file, "--log-file"},
        };
        struct sh_error err = {0};
        int r;

        r = runt_config_defaults(cfg, &err);
        if (r < 0) {
                fprintf(stderr, "runtd: %s\n", err.msg);
                return r;
        }
        /* No file where none was asked for: the built-in defaults (and drop-ins, if any). */
        r = runt_config_load_all(cfg, o->config, !o->config_given, &err);
        if (r < 0) {
                fprintf(stderr, "runtd: config: %s\n", err.msg[0] ? err.msg : strerror(-r));
                return r;
        }
        for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
                if (!flags[i].value)
                        continue;
                r = runt_config_set(cfg, flags[i].key, flags[i].value, flags[i].flag, &err);
                if (r < 0) {
                        fprintf(stderr, "runtd: %s\n", err.msg);
                        return r;
                }
        }
        return 0;
}

/* --print-config: the configuration runtd would run with, as YAML on stdout. */
static int print_config(const struct runt_config *cfg)
{
        _cleanup_free_ char *text = NULL;
        struct sh_error err = {0};
        int r;

        r = runt_config_format(cfg, &text, &err);
        if (r < 0) {
                fprintf(stderr, "runtd: %s\n", err.msg);
                return r;
        }
        if (fputs(text, stdout) == EOF || fflush(stdout) == EOF) {
                r = -errno;
                fprintf(stderr, "runtd: --print-config: %s\n", strerror(errno));
                return r;
        }
        return 0;
}

struct sig_thread {
        sigset_t set;
        struct cri_server *srv;
        const struct sh_notify *notify;
        struct cri_audit *audit;
};

/*
 * The streaming server alone may hold some 600 sockets (stream.c MAX_CONNECTIONS and MHD's
 * slack) besides its sessions' pipes; a soft NOFILE of 1024 leaves too little for the rest.
 * Raised to NOFILE_WANT at most (not to the hard limit: children inherit it, and some close
 * every fd up to it).
 */
#define NOFILE_WANT 8192
static void raise_nofile(void)
{
        struct rlimit rl;
        rlim_t want = NOFILE_WANT;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
                return;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
                want = rl.rlim_max;
        if (want <= rl.rlim_cur)
                return;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                sh_log_warn("cannot raise the soft NOFILE limit to %llu: %s",
                            (unsigned long long)want, strerror(errno));
}

static void *signal_loop(void *arg)
{
        struct sig_thread *st = arg;
        int sig = 0;

        for (;;) {
                if (sigwait(&st->set, &sig) != 0)
                        continue;
                if (sig == SIGTERM || sig == SIGINT)
                        break;
                /* logrotate's postrotate: the audit log goes on in a new file. */
                if (sig == SIGHUP && st->audit) {
                        struct sh_error err = {0};

                        if (cri_audit_reopen(st->audit, &err) < 0)
                                sh_log_error("signal=SIGHUP the audit log stays in the file "
                                             "it was: %s",
                                             err.msg);
                        else
                                sh_log_info("signal=SIGHUP audit log reopened");
                }
        }
        sh_log_info("signal=%s stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        sh_notify_send(st->notify, "STOPPING=1\nSTATUS=stopping: pods keep running");
        cri_server_stop(st->srv);
        return NULL;
}

struct serving {
        const struct sh_notify *notify;
        const char *listen;
};

/* The server takes calls now: the service manager may count runtd as started. */
static void on_serving(void *data)
{
        const struct serving *sv = data;
        _cleanup_free_ char *msg =
                sh_strdup_printf("READY=1\nSTATUS=serving CRI on %s", sv->listen);
        int r = sh_notify_send(sv->notify, msg ? msg : "READY=1");

        if (r < 0)
                sh_log_warn("cannot tell the service manager runtd is ready: %s", strerror(-r));
}

int main(int argc, char **argv)
{
        struct runt_config cfg = {0};
        struct cri_ctx ctx = {0};
        struct sh_error err = {0};
        struct cri_server *srv = NULL;
        struct cri_metrics_http *mhttp = NULL;
        struct sh_metrics *metrics = NULL;
        struct sig_thread st = {0};
        struct sh_notify notify = {0};
        struct serving serving = {0};
        struct opts o = {0};
        struct timespec ts;
        pthread_t sig_tid;
        int r, rc = EXIT_FAILURE;

        /*
         * Before any thread: glibc gives threads arenas of their own, up to 8 per core, and an
         * arena's freed memory mostly stays mapped. Two arenas keep a burst's high-water mark
         * from becoming the daemon's size for good (issue 14); the slow lane also trims.
         */
        mallopt(M_ARENA_MAX, 2);
        /*
         * Blocks of 128 KiB and more (a List answer of hundreds of pods, a packed stats reply)
         * are mapped and unmapped each time: glibc would otherwise raise this threshold after
         * the first such free and serve the next ones from the heap, where they stay (issue 15:
         * runtd under 25 MB with 500 pods).
         */
        mallopt(M_MMAP_THRESHOLD, 128 << 10);
        r = parse_args(argc, argv, &o);
        if (r != 0)
                return r > 0 ? EXIT_SUCCESS : 2;
        if (load_config(&o, &cfg) < 0) {
                runt_config_done(&cfg);
                return EXIT_FAILURE;
        }
        if (o.print_config) {
                r = print_config(&cfg);
                runt_config_done(&cfg);
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        if (sh_log_open(cfg.log_file, cfg.log_level, &err) < 0) {
                fprintf(stderr, "runtd: %s\n", err.msg);
                runt_config_done(&cfg);
                return EXIT_FAILURE;
        }

        raise_nofile();
        /*
         * Before any thread (unsetenv, and the move below covers every thread by moving the
         * one there is). NOTIFY_SOCKET leaves the environment, so no helper or container
         * inherits it.
         */
        if (sh_notify_init(&notify) < 0)
                sh_log_warn("NOTIFY_SOCKET is neither an absolute path nor @name: ignored");
        {
                /* runtd's own leaf beside its helpers' cgroups (helpercg.h). */
                struct sh_error e = {0};
                int n = sh_helpercg_enter_leaf(&e);

                if (n < 0 || e.code)
                        sh_log_warn("helpers may share runtd's cgroup (a stop of runtd's cgroup "
                                    "would end them): %s",
                                    n < 0 ? strerror(-n) : e.msg);
                else
                        sh_log_debug("cgroup: runtd in a leaf of its own on %d hierarchies", n);
        }
        sh_notify_send(&notify, "STATUS=starting: opening the state, recovering pods");
        /* Before grpc_init, so every grpc thread inherits the mask (notes/grpc-c-core.md). */
        sigemptyset(&st.set);
        sigaddset(&st.set, SIGTERM);
        sigaddset(&st.set, SIGINT);
        sigaddset(&st.set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &st.set, NULL);
        signal(SIGPIPE, SIG_IGN);

        clock_gettime(CLOCK_REALTIME, &ts);
        ctx.cfg = &cfg;
        if (sh_cg_host_detect("/sys/fs/cgroup", &ctx.cgroup, &err) < 0) {
                sh_log_error("start failed: %s", err.msg);
                goto out;
        }
        {
                char names[128];

                sh_cg_ctrl_names(ctx.cgroup.controllers, names, sizeof(names));
                sh_log_info("cgroup_version=%d%s cgroup_driver=%s cgroup_root=%s "
                            "controllers=\"%s\" swap_accounting=%s",
                            (int)ctx.cgroup.version, ctx.cgroup.hybrid ? " (hybrid)" : "",
                            sh_cg_driver(), ctx.cgroup.root, names, ctx.cgroup.swap ? "yes" : "no");
        }
        ctx.started_ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        ctx.fs_cache = cri_fs_cache_new(); /* NULL (no memory): ImageFsInfo measures per call */
        if (cfg.audit_path && cri_audit_new(cfg.audit_path, &ctx.audit, &err) < 0) {
                sh_log_error("start failed: %s", err.msg);
                goto out;
        }
        st.audit = ctx.audit;
        ctx.events = cri_events_new(cfg.server_events_queue);
        if (!ctx.events) {
                sh_log_error("start failed: out of memory");
                goto out;
        }
        /* Metrics are measured only when served: with metrics.address null, no registry. */
        if (cfg.metrics_address && !(metrics = sh_metrics_new())) {
                sh_log_error("start failed: no memory for the metrics registry");
                goto out;
        }
        if (pod_mgr_new_with_metrics(&cfg, metrics, &ctx.pods, &err) < 0 ||
            img_mgr_new(&cfg, pod_mgr_store_path(ctx.pods), &ctx.stopping, &ctx.images, &err) < 0 ||
            net_mgr_new(&cfg, &ctx.net, &err) < 0 ||
            cri_runtime_conf_new(cfg.state_dir, &ctx.runtime_conf, &err) < 0) {
                sh_log_error("start failed: %s", err.msg);
                goto out;
        }
        if (metrics && (img_mgr_set_metrics(ctx.images, metrics, &err) < 0 ||
                        net_mgr_set_metrics(ctx.net, metrics, &err) < 0 ||
                        cri_metrics_new(metrics, ctx.pods, &ctx.metrics, &err) < 0)) {
                sh_log_error("start failed: metrics: %s", err.msg);
                goto out;
        }
        pod_mgr_set_net(ctx.pods, ctx.net);
        /* Before recovery: what changed while runtd was down (a container that exited) is
         * published then, and waits in the backlog for the kubelet's GetContainerEvents. */
        pod_mgr_set_event_sink(ctx.pods, cri_events_sink, &ctx);
        if (pod_mgr_recover(ctx.pods, &err) < 0) {
                sh_log_error("recovery failed: %s", err.msg);
                goto out;
        }
        for (size_t i = 0; i < cfg.n_handlers; i++) {
                const char *why = pod_mgr_handler_error(ctx.pods, cfg.handlers[i].name);

                if (why)
                        sh_log_warn("handler=%s backend=%s unavailable: %s", cfg.handlers[i].name,
                                    cfg.handlers[i].backend, why);
        }

        if (cri_stream_new(&ctx, &ctx.stream, &err) < 0) {
                sh_log_error("streaming server failed: %s", err.msg);
                goto out;
        }
        if (metrics && cri_metrics_http_new(cfg.metrics_address, metrics, &mhttp, &err) < 0) {
                sh_log_error("metrics endpoint failed: %s", err.msg);
                goto out;
        }
        grpc_init();
        if (cri_server_new(&ctx, cfg.listen, &srv, &err) < 0) {
                sh_log_error("listen failed: %s", err.msg);
                grpc_shutdown_blocking();
                goto out;
        }
        st.srv = srv;
        st.notify = &notify;
        serving = (struct serving){.notify = &notify, .listen = cfg.listen};
        cri_server_on_serving(srv, on_serving, &serving);
        if (pthread_create(&sig_tid, NULL, signal_loop, &st) != 0) {
                sh_log_error("cannot start the signal thread");
                cri_server_stop(srv);
                cri_server_run(srv);
                cri_server_free(srv);
                grpc_shutdown_blocking();
                goto out;
        }
        sh_log_info("listen=%s version=%s state_dir=%s root_dir=%s metrics=%s audit=%s ready",
                    cfg.listen, RUNT_VERSION, cfg.state_dir, cfg.root_dir,
                    cfg.metrics_address ? cfg.metrics_address : "off",
                    cfg.audit_path ? cfg.audit_path : "off");
        r = cri_server_run(srv);
        pthread_join(sig_tid, NULL);
        if (r == -ETIMEDOUT) {
                /* Handlers still running: leave without tearing grpc down under them. */
                sh_log_warn("exiting with calls in flight");
                _exit(EXIT_SUCCESS);
        }
        cri_server_free(srv);
        grpc_shutdown_blocking();
        cri_stream_free(ctx.stream);
        ctx.stream = NULL;
        sh_log_info("stopped");
        rc = EXIT_SUCCESS;
out:
        /* The endpoint first: its scrapes read the managers. */
        mhttp = cri_metrics_http_free(mhttp);
        /* The sink reads the image manager, which goes first. */
        if (ctx.pods)
                pod_mgr_set_event_sink(ctx.pods, NULL, NULL);
        cri_stream_free(ctx.stream);
        ctx.fs_cache = cri_fs_cache_free(ctx.fs_cache); /* its thread walks the managers' dirs */
        net_mgr_free(ctx.net);
        img_mgr_free(ctx.images);
        pod_mgr_free(ctx.pods);
        /* After the pod manager: it publishes until it is gone; the server's streams are. */
        cri_events_free(ctx.events);
        ctx.metrics = cri_metrics_free(ctx.metrics);
        ctx.runtime_conf = cri_runtime_conf_free(ctx.runtime_conf);
        ctx.audit = cri_audit_free(ctx.audit); /* after the server: no call writes a line */
        sh_metrics_free(metrics);              /* after every module that holds its series */
        runt_config_done(&cfg);
        sh_log_close();
        return rc;
}
