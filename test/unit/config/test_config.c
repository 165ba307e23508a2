/* common/config.c: defaults, the full schema, and a message with file, line and key per error. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "config.h"
#include "strutil.h"

/* A temp file holding @len bytes of @data; the caller unlinks and frees the path. */
static char *write_file(const void *data, size_t len)
{
        const char *base = getenv("TMPDIR");
        char *path = NULL;
        int fd;

        assert_true(asprintf(&path, "%s/runt-config-XXXXXX", base && *base ? base : "/tmp") > 0);
        fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        assert_int_equal(close(fd), 0);
        return path;
}

static char *write_yaml(const char *yaml)
{
        return write_file(yaml, strlen(yaml));
}

static void remove_file(char *path)
{
        unlink(path);
        free(path);
}

/* Loads @yaml over the defaults into @cfg; returns what runt_config_load() returned. */
static int load_yaml(const char *yaml, struct runt_config *cfg, struct sh_error *err)
{
        char *path = write_yaml(yaml);
        int r;

        assert_int_equal(runt_config_defaults(cfg, NULL), 0);
        r = runt_config_load(cfg, path, err);
        remove_file(path);
        return r;
}

static void assert_defaults(const struct runt_config *c)
{
        assert_string_equal(c->listen, "unix:///run/runt/runt.sock");
        assert_string_equal(c->state_dir, "/var/lib/runt");
        assert_string_equal(c->root_dir, "/var/lib/runt/root");
        assert_string_equal(c->run_dir, "/run/runt");
        assert_int_equal(c->log_level, SH_LOG_INFO);
        assert_null(c->log_file);
        assert_string_equal(c->default_runtime, "lxc");
        assert_int_equal(c->n_handlers, 1);
        assert_string_equal(c->handlers[0].name, "lxc");
        assert_string_equal(c->handlers[0].backend, "lxc");
        assert_int_equal(c->handlers[0].n_options, 0);
        assert_string_equal(c->cni_conf_dir, "/etc/cni/net.d");
        assert_non_null(c->cni_bin_dirs);
        assert_string_equal(c->cni_bin_dirs[0], "/opt/cni/bin");
        assert_string_equal(c->cni_bin_dirs[1], "/usr/lib/cni");
        assert_null(c->cni_bin_dirs[2]);
        assert_int_equal(c->cni_plugin_timeout_s, 60);
        assert_int_equal(c->pull_timeout_s, 300);
        assert_int_equal(c->n_registries, 0);
        assert_null(c->registries);
        assert_string_equal(c->registries_conf, "/etc/containers/registries.conf");
        assert_string_equal(c->streaming_address, "127.0.0.1");
        assert_int_equal(c->streaming_port, 0);
        assert_int_equal(c->streaming_token_ttl_s, 60);
        assert_int_equal(c->streaming_creation_timeout_s, 30);
        assert_int_equal(c->streaming_idle_timeout_s, 14400);
        assert_int_equal(c->streaming_header_timeout_s, 5);
        assert_null(c->metrics_address);
        assert_int_equal(c->max_log_line, 16384);
        assert_int_equal(c->server_workers, 48);
        assert_int_equal(c->server_read_workers, 4);
        assert_int_equal(c->server_max_queued, 512);
        assert_int_equal(c->server_events_queue, 1000);
        assert_int_equal(c->pids_limit, 4096);
        assert_int_equal(c->stats_interval_s, 10);
        assert_int_equal(c->stats_fs_interval_s, 60);
        assert_string_equal(c->audit_path, "/var/log/runt/audit.log");
}

static void test_defaults(void **state)
{
        struct runt_config c;

        (void)state;
        assert_int_equal(runt_config_defaults(&c, NULL), 0);
        assert_defaults(&c);
        runt_config_done(&c);
}

static void test_empty_files_keep_defaults(void **state)
{
        static const char *const files[] = {
                "",
                "\n\n",
                "# runt config\n# nothing set yet\n",
                "---\n",
                "--- # just a marker\n...\n",
                "~\n",
                "cni:\nimages:\nstreaming:\nmetrics:\nlogs:\n",
                "cni: {}\nimages: {}\n",
        };

        (void)state;
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                struct runt_config c;
                struct sh_error err = {0};

                assert_int_equal(load_yaml(files[i], &c, &err), 0);
                assert_defaults(&c);
                runt_config_done(&c);
        }
}

static const char full_yaml[] =
        "# every key, none at its default\n"
        "listen: unix:///run/other/runt.sock\n"
        "state_dir: /srv/runt/state\n"
        "root_dir: /srv/runt/root\n"
        "run_dir: /run/other\n"
        "log_level: debug\n"
        "log_file: /var/log/runt.log\n"
        "default_runtime: microvm\n"
        "runtimes:\n"
        "  lxc:\n"
        "    backend: lxc\n"
        "    options: { lxcpath: /srv/runt/root/lxc, zeta: '1', alpha: two }\n"
        "  microvm:\n"
        "    backend: microvm\n"
        "  pve-1:\n"
        "    backend: proxmox\n"
        "    options:\n"
        "      url: https://pve.example:8006\n"
        "      empty:\n"
        "cni:\n"
        "  conf_dir: /srv/cni/net.d\n"
        "  bin_dirs: [/srv/cni/bin]\n"
        "  plugin_timeout: 5\n"
        "images:\n"
        "  pull_timeout: 86400\n"
        "  registries_conf: /srv/registries.conf\n"
        "  registries:\n"
        "    - prefix: localhost:5000\n"
        "      insecure: true\n"
        "      mirrors: [127.0.0.1:5001, 'mirror.example/cache']\n"
        "    - prefix: docker.io\n"
        "      insecure: False\n"
        "streaming:\n"
        "  address: 0.0.0.0\n"
        "  port: 65535\n"
        "  token_ttl: 5\n"
        "  stream_creation_timeout: 7\n"
        "  idle_timeout: 0\n"
        "  header_timeout: 2\n"
        "metrics:\n"
        "  address: 127.0.0.1:9090\n"
        "logs:\n"
        "  max_line: 1048576\n"
        "server:\n"
        "  workers: 4\n"
        "  read_workers: 1\n"
        "  max_queued: 0\n"
        "  events_queue: 7\n"
        "containers:\n"
        "  pids_limit: 4194304\n";

static void test_full_file(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        const struct runt_handler *h;

        (void)state;
        assert_int_equal(load_yaml(full_yaml, &c, &err), 0);
        assert_string_equal(c.listen, "unix:///run/other/runt.sock");
        assert_string_equal(c.state_dir, "/srv/runt/state");
        assert_string_equal(c.root_dir, "/srv/runt/root");
        assert_string_equal(c.run_dir, "/run/other");
        assert_int_equal(c.log_level, SH_LOG_DEBUG);
        assert_string_equal(c.log_file, "/var/log/runt.log");
        assert_string_equal(c.default_runtime, "microvm");

        assert_int_equal(c.n_handlers, 3);
        h = &c.handlers[0];
        assert_string_equal(h->name, "lxc");
        assert_string_equal(h->backend, "lxc");
        assert_int_equal(h->n_options, 3);
        /* file order, not sorted */
        assert_string_equal(h->option_keys[0], "lxcpath");
        assert_string_equal(h->option_values[0], "/srv/runt/root/lxc");
        assert_string_equal(h->option_keys[1], "zeta");
        assert_string_equal(h->option_values[1], "1");
        assert_string_equal(h->option_keys[2], "alpha");
        assert_string_equal(h->option_values[2], "two");
        h = &c.handlers[1];
        assert_string_equal(h->name, "microvm");
        assert_string_equal(h->backend, "microvm");
        assert_int_equal(h->n_options, 0);
        h = &c.handlers[2];
        assert_string_equal(h->name, "pve-1");
        assert_string_equal(h->backend, "proxmox");
        assert_int_equal(h->n_options, 2);
        assert_string_equal(h->option_keys[0], "url");
        assert_string_equal(h->option_values[0], "https://pve.example:8006");
        assert_string_equal(h->option_keys[1], "empty");
        assert_string_equal(h->option_values[1], "");

        assert_string_equal(c.cni_conf_dir, "/srv/cni/net.d");
        assert_string_equal(c.cni_bin_dirs[0], "/srv/cni/bin");
        assert_null(c.cni_bin_dirs[1]);
        assert_int_equal(c.cni_plugin_timeout_s, 5);
        assert_int_equal(c.pull_timeout_s, 86400);
        assert_string_equal(c.registries_conf, "/srv/registries.conf");
        assert_int_equal(c.n_registries, 2);
        assert_string_equal(c.registries[0].prefix, "localhost:5000");
        assert_true(c.registries[0].insecure);
        assert_string_equal(c.registries[0].mirrors[0], "127.0.0.1:5001");
        assert_string_equal(c.registries[0].mirrors[1], "mirror.example/cache");
        assert_null(c.registries[0].mirrors[2]);
        assert_string_equal(c.registries[1].prefix, "docker.io");
        assert_false(c.registries[1].insecure);
        assert_non_null(c.registries[1].mirrors);
        assert_null(c.registries[1].mirrors[0]);
        assert_string_equal(c.streaming_address, "0.0.0.0");
        assert_int_equal(c.streaming_port, 65535);
        assert_int_equal(c.streaming_token_ttl_s, 5);
        assert_int_equal(c.streaming_creation_timeout_s, 7);
        assert_int_equal(c.streaming_idle_timeout_s, 0);
        assert_int_equal(c.streaming_header_timeout_s, 2);
        assert_string_equal(c.metrics_address, "127.0.0.1:9090");
        assert_int_equal(c.max_log_line, 1048576);
        assert_int_equal(c.server_workers, 4);
        assert_int_equal(c.server_read_workers, 1);
        assert_int_equal(c.server_max_queued, 0);
        assert_int_equal(c.server_events_queue, 7);
        assert_int_equal(c.pids_limit, 4194304);

        assert_ptr_equal(runt_config_handler(&c, ""), &c.handlers[1]);
        runt_config_done(&c);
}

/* A section given in part keeps the defaults of the keys it leaves out. */
static void test_sections_merge(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(load_yaml("cni:\n  conf_dir: /x\nlogs: {max_line: 256}\n", &c, &err), 0);
        assert_string_equal(c.cni_conf_dir, "/x");
        assert_string_equal(c.cni_bin_dirs[0], "/opt/cni/bin");
        assert_string_equal(c.cni_bin_dirs[1], "/usr/lib/cni");
        assert_int_equal(c.cni_plugin_timeout_s, 60);
        assert_int_equal(c.max_log_line, 256);
        assert_string_equal(c.default_runtime, "lxc");
        assert_int_equal(c.n_handlers, 1);
        runt_config_done(&c);
}

static void test_runtimes_replace_defaults(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(load_yaml("default_runtime: microvm\n"
                                   "runtimes:\n"
                                   "  microvm:\n"
                                   "  test.fake_1:\n"
                                   "    backend: fake\n",
                                   &c, &err),
                         0);
        assert_int_equal(c.n_handlers, 2);
        assert_null(runt_config_handler(&c, "lxc"));
        assert_string_equal(c.handlers[0].name, "microvm");
        /* no backend: the handler name is the backend */
        assert_string_equal(c.handlers[0].backend, "microvm");
        assert_string_equal(c.handlers[1].name, "test.fake_1");
        assert_string_equal(c.handlers[1].backend, "fake");
        runt_config_done(&c);
}

static void test_handler_lookup(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(runt_config_defaults(&c, NULL), 0);
        assert_ptr_equal(runt_config_handler(&c, ""), &c.handlers[0]);
        assert_ptr_equal(runt_config_handler(&c, NULL), &c.handlers[0]);
        assert_ptr_equal(runt_config_handler(&c, "lxc"), &c.handlers[0]);
        assert_null(runt_config_handler(&c, "microvm"));
        assert_null(runt_config_handler(&c, "LXC"));
        runt_config_done(&c);

        assert_int_equal(load_yaml("runtimes:\n"
                                   "  lxc: {backend: lxc}\n"
                                   "  vm: {backend: microvm}\n"
                                   "default_runtime: vm\n",
                                   &c, &err),
                         0);
        assert_string_equal(runt_config_handler(&c, "")->name, "vm");
        assert_string_equal(runt_config_handler(&c, "")->backend, "microvm");
        assert_string_equal(runt_config_handler(&c, "lxc")->backend, "lxc");
        assert_null(runt_config_handler(&c, "nope"));
        runt_config_done(&c);

        /* a zeroed config knows no handler */
        memset(&c, 0, sizeof(c));
        assert_null(runt_config_handler(&c, ""));
        assert_null(runt_config_handler(&c, "lxc"));
}

static void test_nullable_strings(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        char *path;

        (void)state;
        assert_int_equal(load_yaml("metrics: {address: 127.0.0.1:9090}\nlog_file: /l\n", &c, &err),
                         0);
        assert_string_equal(c.metrics_address, "127.0.0.1:9090");
        assert_string_equal(c.log_file, "/l");
        /* a second file overlays the first: "" and null turn them off again */
        path = write_yaml("metrics:\n  address: \"\"\nlog_file: ~\naudit: {path: null}\n");
        assert_int_equal(runt_config_load(&c, path, &err), 0);
        remove_file(path);
        assert_null(c.metrics_address);
        assert_null(c.log_file);
        assert_null(c.audit_path);
        runt_config_done(&c);
        assert_int_equal(load_yaml("audit:\n  path: /a/audit.log\n", &c, &err), 0);
        assert_string_equal(c.audit_path, "/a/audit.log");
        runt_config_done(&c);
}

static void test_aliases(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(load_yaml("state_dir: &d /srv/runt\n"
                                   "root_dir: *d\n"
                                   "cni: {bin_dirs: [*d, /b]}\n",
                                   &c, &err),
                         0);
        assert_string_equal(c.root_dir, "/srv/runt");
        assert_string_equal(c.cni_bin_dirs[0], "/srv/runt");
        assert_string_equal(c.cni_bin_dirs[1], "/b");
        runt_config_done(&c);
}

static void test_log_levels(void **state)
{
        static const struct {
                const char *yaml;
                enum sh_log_level level;
        } cases[] = {
                {"log_level: error\n", SH_LOG_ERROR},   {"log_level: warn\n", SH_LOG_WARN},
                {"log_level: warning\n", SH_LOG_WARN},  {"log_level: info\n", SH_LOG_INFO},
                {"log_level: 'debug'\n", SH_LOG_DEBUG},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct runt_config c;
                struct sh_error err = {0};

                assert_int_equal(load_yaml(cases[i].yaml, &c, &err), 0);
                assert_int_equal(c.log_level, cases[i].level);
                runt_config_done(&c);
        }
}

static void test_range_limits_accepted(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(load_yaml("cni: {plugin_timeout: 1}\n"
                                   "images: {pull_timeout: 1}\n"
                                   "streaming: {port: 0}\n"
                                   "logs: {max_line: 256}\n"
                                   "containers: {pids_limit: 0}\n"
                                   "stats: {interval: 1, fs_interval: 3}\n",
                                   &c, &err),
                         0);
        assert_int_equal(c.stats_interval_s, 1);
        assert_int_equal(c.stats_fs_interval_s, 3);
        assert_int_equal(c.cni_plugin_timeout_s, 1);
        assert_int_equal(c.pull_timeout_s, 1);
        assert_int_equal(c.streaming_port, 0);
        assert_int_equal(c.max_log_line, 256);
        assert_int_equal(c.pids_limit, 0);
        runt_config_done(&c);
}

struct bad_case {
        const char *yaml;
        int line;        /* 1-based line the message must name */
        const char *key; /* key path the message must name, NULL for none */
        const char *what;
};

static const struct bad_case bad_cases[] = {
        /* unknown keys */
        {"listen: unix:///a.sock\nlisten_addr: x\n", 2, "listen_addr", "unknown key"},
        {"cni:\n  conf_dir: /x\n  bin_dir: [/a]\n", 3, "cni.bin_dir", "unknown key"},
        {"audit:\n  file: /a\n", 2, "audit.file", "unknown key"},
        {"audit:\n  path: audit.log\n", 2, "audit.path", "absolute"},
        {"runtimes:\n  lxc:\n    backnd: lxc\n", 3, "runtimes.lxc.backnd", "unknown key"},
        {"images:\n  registries:\n    - prefix: a\n      secure: true\n", 4,
         "images.registries[0].secure", "unknown key"},
        /* wrong types */
        {"state_dir:\n  a: b\n", 2, "state_dir", "expected a string, got a mapping"},
        {"listen: [a]\n", 1, "listen", "expected a string, got a list"},
        {"cni: /etc/cni\n", 1, "cni", "expected a mapping"},
        {"cni:\n  bin_dirs: /opt/cni/bin\n", 2, "cni.bin_dirs", "expected a list"},
        {"cni:\n  bin_dirs: [/a, {b: c}]\n", 2, "cni.bin_dirs[1]", "expected a string"},
        {"runtimes:\n  lxc:\n    options:\n      a: [1]\n", 4, "runtimes.lxc.options.a",
         "expected a string"},
        {"runtimes: [lxc]\n", 1, "runtimes", "expected a mapping"},
        {"images:\n  registries: {prefix: a}\n", 2, "images.registries", "expected a list"},
        {"state_dir:\n", 1, "state_dir", "got null"},
        {"streaming: {address: ''}\n", 1, "streaming.address", "must not be empty"},
        {"metrics:\n  address: {a: 1}\n", 2, "metrics.address", "expected a string"},
        /* numbers */
        {"cni:\n  plugin_timeout: sixty\n", 2, "cni.plugin_timeout", "not a non-negative"},
        {"cni:\n  plugin_timeout: -5\n", 2, "cni.plugin_timeout", "not a non-negative"},
        {"cni:\n  plugin_timeout: 1.5\n", 2, "cni.plugin_timeout", "not a non-negative"},
        {"cni:\n  plugin_timeout: 0x10\n", 2, "cni.plugin_timeout", "not a non-negative"},
        {"cni:\n  plugin_timeout: 010\n", 2, "cni.plugin_timeout", "leading zeros"},
        {"cni:\n  plugin_timeout: \"60\"\n", 2, "cni.plugin_timeout", "quoted string"},
        {"cni:\n  plugin_timeout:\n", 2, "cni.plugin_timeout", "expected a number, got null"},
        {"cni:\n  plugin_timeout: 0\n", 2, "cni.plugin_timeout", "out of range"},
        {"cni:\n  plugin_timeout: 86401\n", 2, "cni.plugin_timeout", "out of range"},
        {"images:\n  pull_timeout: 0\n", 2, "images.pull_timeout", "out of range"},
        {"images:\n  pull_timeout: 99999999999999999999999999\n", 2, "images.pull_timeout",
         "out of range"},
        {"streaming:\n  port: 65536\n", 2, "streaming.port", "out of range"},
        {"server:\n  events_queue: 0\n", 2, "server.events_queue", "out of range"},
        {"server:\n  events_queue: 100001\n", 2, "server.events_queue", "out of range"},
        {"streaming:\n  token_ttl: 0\n", 2, "streaming.token_ttl", "out of range"},
        {"streaming:\n  token_ttl: 3601\n", 2, "streaming.token_ttl", "out of range"},
        {"logs:\n  max_line: 255\n", 2, "logs.max_line", "out of range"},
        {"server:\n  workers: 0\n", 2, "server.workers", "out of range"},
        {"logs:\n  max_line: 1048577\n", 2, "logs.max_line", "out of range"},
        {"containers:\n  pids_limit: 4194305\n", 2, "containers.pids_limit", "out of range"},
        {"containers:\n  pids_limit: -1\n", 2, "containers.pids_limit", "not a non-negative"},
        {"containers:\n  pid_limit: 10\n", 2, "containers.pid_limit", "unknown key"},
        {"stats:\n  interval: 0\n", 2, "stats.interval", "out of range"},
        {"stats:\n  fs_interval: 0\n", 2, "stats.fs_interval", "out of range"},
        /* enums and bools */
        {"log_level: loud\n", 1, "log_level", "not a log level"},
        {"log_level: [info]\n", 1, "log_level", "expected a string"},
        {"images:\n  registries:\n    - prefix: a\n      insecure: yes\n", 4,
         "images.registries[0].insecure", "expected true or false"},
        {"images:\n  registries:\n    - prefix: a\n      insecure: 'true'\n", 4,
         "images.registries[0].insecure", "expected true or false"},
        {"runtimes:\n  vm:\n    backend: qemu\n", 3, "runtimes.vm.backend", "unknown backend"},
        {"runtimes:\n  kata:\n    options: {}\n", 2, "runtimes.kata", "no backend given"},
        /* duplicates */
        {"log_level: info\nstate_dir: /a\nlog_level: debug\n", 3, "log_level",
         "duplicate key (first set at line 1)"},
        {"cni:\n  conf_dir: /a\n  conf_dir: /b\n", 3, "cni.conf_dir", "duplicate key"},
        {"runtimes:\n  lxc: {backend: lxc}\n  lxc: {backend: fake}\n", 3, "runtimes.lxc",
         "duplicate key"},
        {"runtimes:\n  lxc:\n    options: {a: 1, a: 2}\n", 3, "runtimes.lxc.options.a",
         "duplicate key"},
        {"images:\n  registries:\n    - prefix: a\n    - prefix: b\n    - prefix: a\n", 5,
         "images.registries[2].prefix", "listed twice"},
        /* paths and addresses */
        {"state_dir: var/lib/runt\n", 1, "state_dir", "not an absolute path"},
        {"state_dir: \"a\\nb\"\n", 1, "state_dir", "'a?b' is not an absolute path"},
        {"root_dir: ./root\n", 1, "root_dir", "not an absolute path"},
        {"run_dir: run\n", 1, "run_dir", "not an absolute path"},
        {"log_file: runt.log\n", 1, "log_file", "not an absolute path"},
        {"cni:\n  conf_dir: net.d\n", 2, "cni.conf_dir", "not an absolute path"},
        {"cni:\n  bin_dirs:\n    - /opt/cni/bin\n    - bin\n", 4, "cni.bin_dirs[1]",
         "not an absolute path"},
        {"cni:\n  bin_dirs: []\n", 2, "cni.bin_dirs", "at least one"},
        {"images:\n  registries_conf: registries.conf\n", 2, "images.registries_conf",
         "not an absolute path"},
        {"listen: /run/runt.sock\n", 1, "listen", "unix:///"},
        {"listen: unix://run/runt.sock\n", 1, "listen", "unix:///"},
        {"listen: tcp://127.0.0.1:1\n", 1, "listen", "unix:///"},
        {"images:\n  registries:\n    - prefix: https://quay.io\n", 3,
         "images.registries[0].prefix", "no scheme"},
        {"images:\n  registries:\n    - prefix: a\n      mirrors: [b, 'c d']\n", 4,
         "images.registries[0].mirrors[1]", "no scheme, no spaces"},
        {"images:\n  registries:\n    - insecure: true\n", 3, "images.registries[0]",
         "prefix is required"},
        /* handlers */
        {"runtimes:\n  LXC: {backend: lxc}\n", 2, "runtimes.LXC", "may contain only"},
        {"runtimes:\n  .hidden: {backend: lxc}\n", 2, "runtimes..hidden", "must start with"},
        {"runtimes:\n  "
         "a123456789012345678901234567890123456789012345678901234567890123: {backend: lxc}\n",
         2, "runtimes.a123456789012345678901234567890123456789012345678901234567890123",
         "longer than 63"},
        {"runtimes:\n  lxc/x: {backend: lxc}\n", 2, "runtimes.lxc/x", "may contain only"},
        {"default_runtime: Bad\n", 1, "default_runtime", "may contain only"},
        {"state_dir: /a\ndefault_runtime: microvm\n", 2, "default_runtime",
         "handler 'microvm' is not defined"},
        {"runtimes:\n  microvm: {backend: microvm}\n", 1, "default_runtime",
         "handler 'lxc' (the default) is not defined"},
        {"runtimes: {}\n", 1, "runtimes", "at least one handler"},
        {"runtimes:\n  lxc: !unset\n", 1, "runtimes", "at least one handler"},
        /* !unset where it has no meaning, or with a value */
        {"runtimes:\n  lxc:\n    backend: !unset\n", 3, "runtimes.lxc.backend",
         "!unset is not allowed here"},
        {"images:\n  registries:\n    - prefix: a\n      insecure: !unset\n", 4,
         "images.registries[0].insecure", "!unset is not allowed here"},
        {"images:\n  registries:\n    - !unset\n", 3, "images.registries[0]",
         "!unset is not allowed here"},
        {"cni: !unset {conf_dir: /a}\n", 1, "cni", "!unset takes no value, got a mapping"},
        {"!unset listen: x\n", 1, NULL, "keys must be non-empty strings, got !unset"},
        /* metrics.address is checked here, with the rest */
        {"metrics:\n  address: localhost:9100\n", 2, "metrics.address",
         "'localhost' is not a literal IPv4 address"},
        {"metrics:\n  address: 127.0.0.1\n", 2, "metrics.address", "is not host:port"},
        {"metrics:\n  address: '[::1]:0'\n", 2, "metrics.address", "is not 1 to 65535"},
        /* document shape */
        {"- listen: x\n", 1, NULL, "top level must be a mapping"},
        {"\n\njust a string\n", 3, NULL, "top level must be a mapping"},
        {"state_dir: /a\n---\nstate_dir: /b\n", 3, NULL, "only one YAML document"},
        {"? [a, b]\n: c\n", 1, NULL, "keys must be non-empty strings"},
        /* syntax */
        {"cni:\n  conf_dir: /a\n  bin_dirs: [/a, /b\nlogs: {}\n", 4, "cni.bin_dirs",
         "YAML syntax error"},
        {"runtimes:\n  lxc:\n    options:\n      a: b\n     c: d\n", 5, "runtimes.lxc.options",
         "YAML syntax error"},
        {"state_dir: /a\nroot_dir: *nowhere\n", 2, "root_dir", "undefined alias"},
        {"state_dir: /a\n\tlisten: x\n", 2, "state_dir", "tab character"},
        {"\tlisten: x\n", 1, NULL, "YAML syntax error"},
        {"listen: \"unix:///a.sock\n", 2, "listen", "YAML syntax error"},
};

/* Cases whose message must also name the column. */
static const struct {
        struct bad_case c;
        int column;
} bad_cases_at[] = {
        {{"cni:\n  bin_dirs: [/a, !unset ]\n", 2, "cni.bin_dirs[1]", "!unset is not allowed here"},
         18},
        {{"log_level: !unset debug\n", 1, "log_level", "!unset takes no value"}, 12},
        {{"cni:\n  plugin_timeout: sixty\n", 2, "cni.plugin_timeout", "not a non-negative"}, 19},
        {{"cni: {conf_dir: /a, bin_dir: [/b]}\n", 1, "cni.bin_dir", "unknown key"}, 21},
        {{"state_dir: /a\nroot_dir: *nowhere\n", 2, "root_dir", "undefined alias"}, 11},
        {{"runtimes:\n  lxc:\n    backend: !unset\n", 3, "runtimes.lxc.backend",
          "!unset is not allowed here"},
         14},
        {{"metrics:\n  address: localhost:9100\n", 2, "metrics.address",
          "'localhost' is not a literal IPv4 address"},
         12},
};

static void check_bad(const struct bad_case *bc, int column)
{
        char *path = write_yaml(bc->yaml);
        struct sh_error err = {0};
        struct runt_config c;
        char want_at[512], want_key[512];
        bool ok;

        assert_int_equal(runt_config_defaults(&c, NULL), 0);
        if (runt_config_load(&c, path, &err) != -EINVAL) {
                print_error("yaml:\n%s\ngave: %s\n", bc->yaml, err.msg);
                fail();
        }
        assert_int_equal(err.code, -EINVAL);
        if (column)
                snprintf(want_at, sizeof(want_at), "%s:%d:%d: ", path, bc->line, column);
        else
                snprintf(want_at, sizeof(want_at), "%s:%d:", path, bc->line);
        snprintf(want_key, sizeof(want_key), "key '%s': ", bc->key ? bc->key : "");
        ok = strncmp(err.msg, want_at, strlen(want_at)) == 0 && strstr(err.msg, bc->what);
        /* the line, then the column or nothing more */
        ok = ok && (column || strchr(" 0123456789", err.msg[strlen(want_at)]));
        if (bc->key)
                ok = ok && strstr(err.msg, want_key);
        else
                ok = ok && !strstr(err.msg, "key '");
        if (!ok) {
                print_error("yaml:\n%s\nwanted line %d column %d, key %s, '%s'\ngot: %s\n",
                            bc->yaml, bc->line, column, bc->key ? bc->key : "(none)", bc->what,
                            err.msg);
                fail();
        }
        /* a refused file leaves the config as it was */
        assert_defaults(&c);
        runt_config_done(&c);
        remove_file(path);
}

static void test_errors(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
                check_bad(&bad_cases[i], 0);
        for (size_t i = 0; i < sizeof(bad_cases_at) / sizeof(bad_cases_at[0]); i++)
                check_bad(&bad_cases_at[i].c, bad_cases_at[i].column);
}

static void test_invalid_utf8(void **state)
{
        static const char data[] = "state_dir: /a\nroot_dir: /\xff\xfe\n";
        char *path = write_file(data, sizeof(data) - 1);
        struct sh_error err = {0};
        struct runt_config c;
        char want[512];

        (void)state;
        assert_int_equal(runt_config_defaults(&c, NULL), 0);
        assert_int_equal(runt_config_load(&c, path, &err), -EINVAL);
        snprintf(want, sizeof(want), "%s:2: ", path);
        assert_non_null(strstr(err.msg, want));
        assert_non_null(strstr(err.msg, "UTF-8"));
        assert_defaults(&c);
        runt_config_done(&c);
        remove_file(path);
}

static void test_embedded_nul(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(load_yaml("state_dir: \"/a\\0b\"\n", &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "key 'state_dir': contains a NUL byte"));
        runt_config_done(&c);
}

static void test_missing_file(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(runt_config_defaults(&c, NULL), 0);
        assert_int_equal(runt_config_load(&c, "/nonexistent/runt.yaml", &err), -ENOENT);
        assert_int_equal(err.code, -ENOENT);
        assert_non_null(strstr(err.msg, "/nonexistent/runt.yaml"));
        assert_defaults(&c);
        runt_config_done(&c);
}

static void test_directory(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(runt_config_defaults(&c, NULL), 0);
        assert_int_equal(runt_config_load(&c, "/", &err), -EISDIR);
        assert_defaults(&c);
        runt_config_done(&c);
}

/* A failed load after a good one keeps what the good one set, and frees what it built. */
static void test_failed_load_keeps_previous(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        char *path;

        (void)state;
        assert_int_equal(load_yaml(full_yaml, &c, &err), 0);
        path = write_yaml("runtimes:\n"
                          "  a: {backend: lxc, options: {x: y}}\n"
                          "  b: {backend: fake}\n"
                          "images:\n"
                          "  registries: [{prefix: q, mirrors: [m]}]\n"
                          "cni: {bin_dirs: [/x]}\n"
                          "logs: {max_line: 1}\n");
        assert_int_equal(runt_config_load(&c, path, &err), -EINVAL);
        remove_file(path);
        assert_non_null(strstr(err.msg, "key 'logs.max_line'"));
        assert_int_equal(c.n_handlers, 3);
        assert_string_equal(c.handlers[2].name, "pve-1");
        assert_int_equal(c.n_registries, 2);
        assert_string_equal(c.cni_bin_dirs[0], "/srv/cni/bin");
        assert_int_equal(c.max_log_line, 1048576);
        runt_config_done(&c);
}

static void test_done_twice(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(load_yaml(full_yaml, &c, &err), 0);
        runt_config_done(&c);
        runt_config_done(&c);
        assert_null(c.listen);
        assert_null(c.handlers);
        assert_int_equal(c.n_handlers, 0);
        runt_config_done(NULL);
        memset(&c, 0, sizeof(c));
        runt_config_done(&c);
}

/* Drop-ins: runt.yaml and runt.yaml.d/ in a temp dir. */

struct tree {
        char *dir;    /* the temp dir */
        char *main;   /* dir/runt.yaml */
        char *dropin; /* dir/runt.yaml.d */
};

static void tree_new(struct tree *t)
{
        const char *base = getenv("TMPDIR");

        assert_true(asprintf(&t->dir, "%s/runt-dropin-XXXXXX", base && *base ? base : "/tmp") > 0);
        assert_non_null(mkdtemp(t->dir));
        assert_true(asprintf(&t->main, "%s/runt.yaml", t->dir) > 0);
        assert_true(asprintf(&t->dropin, "%s/runt.yaml.d", t->dir) > 0);
}

/* Writes @yaml to runt.yaml (@name NULL) or to runt.yaml.d/@name; returns the path. */
static const char *tree_write(struct tree *t, const char *name, const char *yaml)
{
        static char path[512];
        FILE *f;

        if (name) {
                assert_true(mkdir(t->dropin, 0755) == 0 || errno == EEXIST);
                snprintf(path, sizeof(path), "%s/%s", t->dropin, name);
        } else {
                snprintf(path, sizeof(path), "%s", t->main);
        }
        f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fputs(yaml, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
        return path;
}

static void tree_free(struct tree *t)
{
        assert_int_equal(sh_rm_rf(t->dir), 0);
        free(t->dir);
        free(t->main);
        free(t->dropin);
}

/* Loads the tree over the defaults into @c; returns what runt_config_load_all() returned. */
static int load_tree(struct tree *t, struct runt_config *c, struct sh_error *err)
{
        assert_int_equal(runt_config_defaults(c, NULL), 0);
        return runt_config_load_all(c, t->main, false, err);
}

/* The handler called @name, which must exist. */
static const struct runt_handler *handler(const struct runt_config *c, const char *name)
{
        const struct runt_handler *h = runt_config_handler(c, name);

        if (!h)
                fail_msg("no handler '%s'", name);
        return h;
}

static void assert_options(const struct runt_handler *h, const char *const *kv)
{
        size_t n = 0;

        for (; kv[2 * n]; n++) {
                assert_true(n < h->n_options);
                assert_string_equal(h->option_keys[n], kv[2 * n]);
                assert_string_equal(h->option_values[n], kv[2 * n + 1]);
        }
        assert_int_equal(h->n_options, n);
}

/* A mapping merges key by key, at every depth; what a drop-in does not name stays. */
static void test_dropin_merges_mappings(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        struct tree t;

        (void)state;
        tree_new(&t);
        tree_write(&t, NULL,
                   "cni:\n"
                   "  conf_dir: /a\n"
                   "  plugin_timeout: 5\n"
                   "streaming: {port: 1000}\n"
                   "runtimes:\n"
                   "  lxc:\n"
                   "    options: {a: '1', b: '2'}\n"
                   "  pve:\n"
                   "    backend: proxmox\n"
                   "    options: {url: 'https://pve:8006'}\n");
        tree_write(&t, "50-more.yaml",
                   "cni:\n"
                   "  plugin_timeout: 7\n"
                   "streaming:\n"
                   "  token_ttl: 9\n"
                   "runtimes:\n"
                   "  lxc:\n"
                   "    options:\n"
                   "      b: three\n"
                   "      c: ''\n"
                   "  kata:\n"
                   "    backend: microvm\n"
                   "    options: {x: y}\n"
                   "  pve:         # null: an empty mapping, the handler as it was\n");
        assert_int_equal(load_tree(&t, &c, &err), 0);
        assert_string_equal(c.cni_conf_dir, "/a");
        assert_int_equal(c.cni_plugin_timeout_s, 7);
        assert_string_equal(c.cni_bin_dirs[0], "/opt/cni/bin"); /* the built-in value */
        assert_int_equal(c.streaming_port, 1000);
        assert_int_equal(c.streaming_token_ttl_s, 9);
        /* handlers keep their order, a new one comes last */
        assert_int_equal(c.n_handlers, 3);
        assert_string_equal(c.handlers[0].name, "lxc");
        assert_string_equal(c.handlers[1].name, "pve");
        assert_string_equal(c.handlers[2].name, "kata");
        assert_string_equal(handler(&c, "lxc")->backend, "lxc");
        assert_options(handler(&c, "lxc"),
                       (const char *const[]){"a", "1", "b", "three", "c", "", NULL});
        assert_string_equal(handler(&c, "pve")->backend, "proxmox");
        assert_options(handler(&c, "pve"), (const char *const[]){"url", "https://pve:8006", NULL});
        assert_string_equal(handler(&c, "kata")->backend, "microvm");
        assert_options(handler(&c, "kata"), (const char *const[]){"x", "y", NULL});
        assert_string_equal(c.default_runtime, "lxc");
        runt_config_done(&c);
        tree_free(&t);
}

/* A drop-in's runtimes adds to the built-in lxc handler when runt.yaml names none. */
static void test_dropin_adds_to_builtin_handlers(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        struct tree t;

        (void)state;
        tree_new(&t);
        tree_write(&t, "vm.yaml", "runtimes:\n  microvm:\n");
        /* runt.yaml missing: fine only when asked for */
        assert_int_equal(runt_config_defaults(&c, NULL), 0);
        assert_int_equal(runt_config_load_all(&c, t.main, false, &err), -ENOENT);
        assert_non_null(strstr(err.msg, t.main));
        assert_int_equal(c.n_handlers, 1);
        assert_int_equal(runt_config_load_all(&c, t.main, true, &err), 0);
        assert_int_equal(c.n_handlers, 2);
        assert_string_equal(c.handlers[0].name, "lxc");
        assert_string_equal(c.handlers[1].name, "microvm");
        assert_string_equal(c.handlers[1].backend, "microvm");
        runt_config_done(&c);
        tree_free(&t);
}

/* A scalar or a list in a drop-in replaces the earlier value as a whole. */
static void test_dropin_replaces_scalars_and_lists(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        struct tree t;

        (void)state;
        tree_new(&t);
        tree_write(&t, NULL,
                   "log_level: debug\n"
                   "log_file: /var/log/a.log\n"
                   "cni: {bin_dirs: [/a, /b]}\n"
                   "images:\n"
                   "  pinned: [x, y]\n"
                   "  registries:\n"
                   "    - {prefix: one, mirrors: [m1, m2]}\n"
                   "    - {prefix: two, insecure: true}\n"
                   "metrics: {address: '127.0.0.1:9100'}\n");
        tree_write(&t, "10-a.yaml",
                   "log_level: warn\n"
                   "log_file: null\n"
                   "cni: {bin_dirs: [/c]}\n"
                   "images:\n"
                   "  pinned: []\n"
                   "  registries:\n"
                   "    - {prefix: two, mirrors: [m3]}\n"
                   "metrics: {address: ''}\n");
        assert_int_equal(load_tree(&t, &c, &err), 0);
        assert_int_equal(c.log_level, SH_LOG_WARN);
        assert_null(c.log_file);
        assert_string_equal(c.cni_bin_dirs[0], "/c");
        assert_null(c.cni_bin_dirs[1]);
        assert_null(c.pinned_images[0]);
        assert_int_equal(c.n_registries, 1);
        assert_string_equal(c.registries[0].prefix, "two");
        assert_false(c.registries[0].insecure); /* the entry is new: no merge into the old one */
        assert_string_equal(c.registries[0].mirrors[0], "m3");
        assert_null(c.registries[0].mirrors[1]);
        assert_null(c.metrics_address);
        runt_config_done(&c);
        tree_free(&t);
}

/* The drop-ins apply in byte order of their names, whatever the locale. */
static void test_dropin_order(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        struct tree t;

        (void)state;
        tree_new(&t);
        tree_write(&t, NULL, "state_dir: /main\nroot_dir: /main\nrun_dir: /main\n");
        /* read as 10-x, 9-x, B, a, b: '1' < '9' < 'B' < 'a' < 'b' */
        tree_write(&t, "b.yaml", "state_dir: /b\n");
        tree_write(&t, "a.yaml", "state_dir: /a\nroot_dir: /a\n");
        tree_write(&t, "B.yaml", "state_dir: /B\nroot_dir: /B\n");
        tree_write(&t, "9-x.yaml", "state_dir: /9\nrun_dir: /9\n");
        tree_write(&t, "10-x.yaml", "state_dir: /10\nrun_dir: /10\n");
        assert_int_equal(load_tree(&t, &c, &err), 0);
        assert_string_equal(c.state_dir, "/b");
        assert_string_equal(c.root_dir, "/a"); /* a locale's collation puts "B" after "a" */
        assert_string_equal(c.run_dir, "/9");  /* a version sort puts "10-x" after "9-x" */
        runt_config_done(&c);
        tree_free(&t);
}

/* Only *.yaml files are read: other names, hidden files and subdirectories are not. */
static void test_dropin_other_files_ignored(void **state)
{
        static const char *const ignored[] = {
                "x.yml", "x.yaml.bak", "x.yaml~", ".x.yaml",
                ".yaml", "README",     "x.YAML",  "x.yaml.d",
        };
        struct runt_config c;
        struct sh_error err = {0};
        struct tree t;
        char sub[512];

        (void)state;
        tree_new(&t);
        tree_write(&t, NULL, "log_level: warn\n");
        for (size_t i = 0; i < SH_ARRAY_SIZE(ignored); i++)
                tree_write(&t, ignored[i], "log_level: [not, valid]\n");
        snprintf(sub, sizeof(sub), "%s/sub", t.dropin);
        assert_int_equal(mkdir(sub, 0755), 0);
        tree_write(&t, "sub/10-x.yaml", "log_level: [not, valid]\n");
        tree_write(&t, "50-ok.yaml", "state_dir: /ok\n");
        assert_int_equal(load_tree(&t, &c, &err), 0);
        assert_int_equal(c.log_level, SH_LOG_WARN);
        assert_string_equal(c.state_dir, "/ok");
        runt_config_done(&c);
        tree_free(&t);
}

/* No runt.yaml.d is fine; one that is not a directory, or a *.yaml that is, is not. */
static void test_dropin_dir_missing_or_wrong(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        struct tree t;
        char path[512];

        (void)state;
        tree_new(&t);
        tree_write(&t, NULL, "log_level: warn\n");
        assert_int_equal(load_tree(&t, &c, &err), 0);
        assert_int_equal(c.log_level, SH_LOG_WARN);
        runt_config_done(&c);

        tree_free(&t);

        tree_new(&t);
        tree_write(&t, NULL, "log_level: warn\n");
        {
                FILE *f = fopen(t.dropin, "w"); /* a file where the directory should be */

                assert_non_null(f);
                fclose(f);
        }
        assert_int_equal(load_tree(&t, &c, &err), -ENOTDIR);
        assert_non_null(strstr(err.msg, t.dropin));
        assert_defaults(&c);
        runt_config_done(&c);
        unlink(t.dropin);

        snprintf(path, sizeof(path), "%s/dir.yaml", t.dropin);
        assert_int_equal(mkdir(t.dropin, 0755), 0);
        assert_int_equal(mkdir(path, 0755), 0);
        assert_int_equal(load_tree(&t, &c, &err), -EISDIR);
        assert_non_null(strstr(err.msg, path));
        assert_defaults(&c);
        runt_config_done(&c);
        assert_int_equal(rmdir(path), 0);

        /* a FIFO named *.yaml: refused at once, not read (a blocking open would hang) */
        snprintf(path, sizeof(path), "%s/50-fifo.yaml", t.dropin);
        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(load_tree(&t, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "not a regular file"));
        assert_non_null(strstr(err.msg, path));
        assert_defaults(&c);
        runt_config_done(&c);
        unlink(path);
        tree_free(&t);
}

/*
 * A drop-in is checked as strictly as runt.yaml, and an error names the drop-in, its line
 * and column; nothing of the files before it is kept.
 */
static void test_dropin_error_names_file_and_line(void **state)
{
        static const struct {
                const char *yaml;
                const char *at; /* ":LINE:COLUMN: key '...'" */
                const char *what;
        } cases[] = {
                {"cni:\n  conf_dir: /c\n  plugin_timeout: sixty\n",
                 ":3:19: key 'cni.plugin_timeout': ", "not a non-negative decimal number"},
                {"log_level: info\ncni:\n  bin_dir: [/b]\n",
                 ":3:3: key 'cni.bin_dir': ", "unknown key"},
                {"runtimes:\n  vm:\n    backend: qemu\n",
                 ":3:14: key 'runtimes.vm.backend': ", "unknown backend 'qemu'"},
                {"runtimes:\n  kata: {}\n", ":2:3: key 'runtimes.kata': ", "no backend given"},
                {"images:\n  registries:\n    - {prefix: a}\n    - {prefix: a}\n",
                 ":4:16: key 'images.registries[1].prefix': ", "listed twice"},
                {"cni:\n  bin_dirs: [/a, /b\n", ":3:1: key 'cni.bin_dirs': ", "YAML syntax error"},
                {"log_level: info\nlog_level: debug\n", ":2:1: key 'log_level': ", "duplicate key"},
                {"- a\n", ":1:1: ", "the top level must be a mapping"},
                {"metrics: {address: 'localhost:1'}\n",
                 ":1:20: key 'metrics.address': ", "not a literal IPv4 address"},
        };
        struct tree t;

        (void)state;
        tree_new(&t);
        tree_write(&t, NULL, "log_level: debug\nstate_dir: /main\n");
        tree_write(&t, "10-first.yaml", "state_dir: /first\n");
        for (size_t i = 0; i < SH_ARRAY_SIZE(cases); i++) {
                struct runt_config c;
                struct sh_error err = {0};
                char want[1024];
                const char *second = tree_write(&t, "20-second.yaml", cases[i].yaml);

                snprintf(want, sizeof(want), "%s%s", second, cases[i].at);
                assert_int_equal(load_tree(&t, &c, &err), -EINVAL);
                if (strncmp(err.msg, want, strlen(want)) != 0 || !strstr(err.msg, cases[i].what))
                        fail_msg("yaml:\n%s\nwanted '%s...%s'\ngot: %s", cases[i].yaml, want,
                                 cases[i].what, err.msg);
                assert_defaults(&c); /* neither runt.yaml nor 10-first.yaml is kept */
                runt_config_done(&c);
        }
        tree_free(&t);
}

/* !unset: a setting or a section back to its built-in value, a handler or an option gone. */
static void test_dropin_unset(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        struct tree t;

        (void)state;
        tree_new(&t);
        tree_write(&t, NULL,
                   "log_level: debug\n"
                   "state_dir: /s\n"
                   "cni: {conf_dir: /c, bin_dirs: [/b], plugin_timeout: 5}\n"
                   "images: {pinned: [p], registries: [{prefix: r}]}\n"
                   "metrics: {address: '127.0.0.1:9100'}\n"
                   "runtimes:\n"
                   "  lxc:\n"
                   "    options: {a: '1', b: '2', c: '3'}\n"
                   "  pve:\n"
                   "    backend: proxmox\n"
                   "    options: {url: u}\n"
                   "  kata:\n"
                   "    backend: microvm\n");
        tree_write(&t, "10-unset.yaml",
                   "log_level: !unset\n"
                   "cni: !unset\n"
                   "images:\n"
                   "  pinned: !unset\n"
                   "  registries: !unset\n"
                   "metrics:\n"
                   "  address: !unset\n"
                   "runtimes:\n"
                   "  lxc:\n"
                   "    options:\n"
                   "      b: !unset\n"
                   "      nothere: !unset\n"
                   "  pve:\n"
                   "    options: !unset\n"
                   "  kata: !unset\n"
                   "  nothere: !unset\n");
        assert_int_equal(load_tree(&t, &c, &err), 0);
        assert_int_equal(c.log_level, SH_LOG_INFO);
        assert_string_equal(c.state_dir, "/s");
        assert_string_equal(c.cni_conf_dir, "/etc/cni/net.d");
        assert_string_equal(c.cni_bin_dirs[0], "/opt/cni/bin");
        assert_int_equal(c.cni_plugin_timeout_s, 60);
        assert_null(c.pinned_images[0]);
        assert_int_equal(c.n_registries, 0);
        assert_null(c.metrics_address);
        assert_int_equal(c.n_handlers, 2);
        assert_options(handler(&c, "lxc"), (const char *const[]){"a", "1", "c", "3", NULL});
        assert_string_equal(handler(&c, "pve")->backend, "proxmox");
        assert_int_equal(handler(&c, "pve")->n_options, 0);
        assert_null(runt_config_handler(&c, "kata"));
        runt_config_done(&c);

        /* runtimes: !unset is the built-in list again, and a later drop-in adds to it */
        tree_write(&t, "20-reset.yaml", "runtimes: !unset\n");
        tree_write(&t, "30-add.yaml", "runtimes:\n  fake:\n");
        assert_int_equal(load_tree(&t, &c, &err), 0);
        assert_int_equal(c.n_handlers, 2);
        assert_string_equal(c.handlers[0].name, "lxc");
        assert_int_equal(c.handlers[0].n_options, 0);
        assert_string_equal(c.handlers[1].name, "fake");
        runt_config_done(&c);
        tree_free(&t);
}

/* default_runtime is checked against the handlers once every file is read. */
static void test_dropin_default_runtime(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        struct tree t;
        char want[1024];
        const char *path;

        (void)state;
        tree_new(&t);
        tree_write(&t, NULL, "default_runtime: lxc\nruntimes:\n  lxc:\n  fake:\n");
        /* set in one drop-in, defined in a later one: fine */
        tree_write(&t, "10-default.yaml", "default_runtime: kata\n");
        tree_write(&t, "20-define.yaml", "runtimes:\n  kata: {backend: microvm}\n");
        assert_int_equal(load_tree(&t, &c, &err), 0);
        assert_string_equal(runt_config_handler(&c, "")->name, "kata");
        runt_config_done(&c);

        /* a later drop-in removes it: that drop-in's runtimes is named */
        path = tree_write(&t, "30-remove.yaml", "log_level: info\nruntimes:\n  kata: !unset\n");
        snprintf(want, sizeof(want), "%s:2:1: key 'default_runtime': handler 'kata' (the default)",
                 path);
        assert_int_equal(load_tree(&t, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, want));
        runt_config_done(&c);

        /* the last one names a handler nobody defines: its default_runtime is named */
        path = tree_write(&t, "30-remove.yaml", "\ndefault_runtime: nope\n");
        snprintf(want, sizeof(want),
                 "%s:2:18: key 'default_runtime': handler 'nope' is not defined", path);
        assert_int_equal(load_tree(&t, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, want));
        assert_defaults(&c);
        runt_config_done(&c);
        tree_free(&t);
}

/* Loads @text as a file over the defaults and formats the result. */
static char *reformat(const char *text)
{
        struct runt_config c;
        struct sh_error err = {0};
        char *out = NULL;

        if (load_yaml(text, &c, &err) != 0)
                fail_msg("printed config does not load: %s\n%s", err.msg, text);
        assert_int_equal(runt_config_format(&c, &out, &err), 0);
        runt_config_done(&c);
        return out;
}

static const char defaults_yaml[] = "listen: unix:///run/runt/runt.sock\n"
                                    "state_dir: /var/lib/runt\n"
                                    "root_dir: /var/lib/runt/root\n"
                                    "run_dir: /run/runt\n"
                                    "log_level: info\n"
                                    "log_file: null\n"
                                    "default_runtime: lxc\n"
                                    "runtimes:\n"
                                    "  lxc:\n"
                                    "    backend: lxc\n"
                                    "cni:\n"
                                    "  conf_dir: /etc/cni/net.d\n"
                                    "  bin_dirs: [/opt/cni/bin, /usr/lib/cni]\n"
                                    "  plugin_timeout: 60\n"
                                    "images:\n"
                                    "  pull_timeout: 300\n"
                                    "  registries_conf: /etc/containers/registries.conf\n"
                                    "  registries: []\n"
                                    "  pinned: []\n"
                                    "streaming:\n"
                                    "  address: 127.0.0.1\n"
                                    "  port: 0\n"
                                    "  token_ttl: 60\n"
                                    "  stream_creation_timeout: 30\n"
                                    "  idle_timeout: 14400\n"
                                    "  header_timeout: 5\n"
                                    "metrics:\n"
                                    "  address: null\n"
                                    "logs:\n"
                                    "  max_line: 16384\n"
                                    "server:\n"
                                    "  workers: 48\n"
                                    "  read_workers: 4\n"
                                    "  max_queued: 512\n"
                                    "  events_queue: 1000\n"
                                    "containers:\n"
                                    "  pids_limit: 4096\n"
                                    "stats:\n"
                                    "  interval: 10\n"
                                    "  fs_interval: 60\n"
                                    "audit:\n"
                                    "  path: /var/log/runt/audit.log\n";

/* The defaults print as every key in the documented order. */
static void test_format_defaults(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        char *text = NULL, *again;

        (void)state;
        assert_int_equal(runt_config_defaults(&c, NULL), 0);
        assert_int_equal(runt_config_format(&c, &text, &err), 0);
        assert_string_equal(text, defaults_yaml);
        again = reformat(text);
        assert_string_equal(again, text);
        free(again);
        free(text);
        runt_config_done(&c);
}

/*
 * Round trip: print the merged config, load the printed text, print again: the same text,
 * even for strings that YAML would read as something else if they were not quoted.
 */
static void test_format_round_trip(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};
        char *text = NULL, *again;
        struct tree t;

        (void)state;
        tree_new(&t);
        tree_write(&t, NULL, full_yaml);
        tree_write(&t, "10-tricky.yaml",
                   "log_file: null\n"
                   "runtimes:\n"
                   "  'null':\n"
                   "    backend: fake\n"
                   "    options:\n"
                   "      'true': 'null'\n"
                   "      '1': '1'\n"
                   "      empty: ''\n"
                   "      ~x: '~'\n"
                   "      yes: 'no'\n"
                   "      colon: 'a: b'\n"
                   "      hash: '#x'\n"
                   "      lead: ' space'\n"
                   "      lines: \"one\\ntwo\"\n"
                   "      tab: \"a\\tb\"\n"
                   "      bell: \"\\a\"\n"
                   "      utf8: 'é ✓'\n"
                   "      float: '1.5e3'\n"
                   "      hex: '0x1F'\n"
                   "      sexa: '1:30'\n"
                   "      dash: '-'\n"
                   "      quote: \"it's \\\"x\\\"\"\n"
                   "      flow: '[a, {b: c}]'\n"
                   "      star: '*a'\n"
                   "images:\n"
                   "  pinned: ['1.5', 'on', 'registry.k8s.io/pause:3.10', '- x']\n"
                   "stats: {interval: 1, fs_interval: 86400}\n");
        assert_int_equal(load_tree(&t, &c, &err), 0);
        assert_int_equal(runt_config_format(&c, &text, &err), 0);
        again = reformat(text);
        assert_string_equal(again, text);
        free(again);

        /* and the printed file loads back to the same values */
        {
                struct runt_config d;
                const struct runt_handler *h;

                assert_int_equal(load_yaml(text, &d, &err), 0);
                h = handler(&d, "null");
                assert_int_equal(h->n_options, handler(&c, "null")->n_options);
                for (size_t i = 0; i < h->n_options; i++) {
                        assert_string_equal(h->option_keys[i], handler(&c, "null")->option_keys[i]);
                        assert_string_equal(h->option_values[i],
                                            handler(&c, "null")->option_values[i]);
                }
                assert_string_equal(d.pinned_images[1], "on");
                assert_string_equal(d.default_runtime, "microvm");
                assert_int_equal(d.n_registries, 2);
                assert_true(d.registries[0].insecure);
                assert_string_equal(d.metrics_address, "127.0.0.1:9090");
                assert_null(d.log_file);
                assert_int_equal(d.stats_fs_interval_s, 86400);
                runt_config_done(&d);
        }
        assert_non_null(strstr(text, "'true': 'null'\n"));
        assert_non_null(strstr(text, "'1': '1'\n"));
        assert_non_null(strstr(text, "empty: ''\n"));
        free(text);
        runt_config_done(&c);
        tree_free(&t);
}

/* runt_config_set: a flag is checked as the key in a file, and its message names the flag. */
static void test_set(void **state)
{
        struct runt_config c;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(runt_config_defaults(&c, NULL), 0);
        assert_int_equal(runt_config_set(&c, "listen", "unix:///x.sock", "--listen", &err), 0);
        assert_string_equal(c.listen, "unix:///x.sock");
        assert_int_equal(runt_config_set(&c, "listen", "/x.sock", "--listen", &err), -EINVAL);
        assert_string_equal(err.msg,
                            "--listen: key 'listen': '/x.sock' is not unix:///absolute/path");
        assert_string_equal(c.listen, "unix:///x.sock");
        assert_int_equal(runt_config_set(&c, "state_dir", "rel", "--state-dir", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "--state-dir: key 'state_dir': 'rel' is not an absolute"));
        assert_int_equal(runt_config_set(&c, "log_level", "debug", "--log-level", &err), 0);
        assert_int_equal(c.log_level, SH_LOG_DEBUG);
        assert_int_equal(runt_config_set(&c, "log_level", "null", "--log-level", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "'null' is not a log level"));
        assert_int_equal(runt_config_set(&c, "log_file", "/l", "--log-file", &err), 0);
        assert_string_equal(c.log_file, "/l");
        assert_int_equal(runt_config_set(&c, "log_file", "", "--log-file", &err), 0);
        assert_null(c.log_file);
        assert_int_equal(runt_config_set(&c, "log_file", "~", "--log-file", &err), -EINVAL);
        assert_int_equal(runt_config_set(&c, "state_dir", "/a\xff", "--state-dir", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "UTF-8"));
        assert_int_equal(runt_config_set(&c, "nope", "x", "--nope", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "--nope: key 'nope': unknown key"));
        runt_config_done(&c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_empty_files_keep_defaults),
                cmocka_unit_test(test_full_file),
                cmocka_unit_test(test_sections_merge),
                cmocka_unit_test(test_runtimes_replace_defaults),
                cmocka_unit_test(test_handler_lookup),
                cmocka_unit_test(test_nullable_strings),
                cmocka_unit_test(test_aliases),
                cmocka_unit_test(test_log_levels),
                cmocka_unit_test(test_range_limits_accepted),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_invalid_utf8),
                cmocka_unit_test(test_embedded_nul),
                cmocka_unit_test(test_missing_file),
                cmocka_unit_test(test_directory),
                cmocka_unit_test(test_failed_load_keeps_previous),
                cmocka_unit_test(test_done_twice),
                cmocka_unit_test(test_dropin_merges_mappings),
                cmocka_unit_test(test_dropin_adds_to_builtin_handlers),
                cmocka_unit_test(test_dropin_replaces_scalars_and_lists),
                cmocka_unit_test(test_dropin_order),
                cmocka_unit_test(test_dropin_other_files_ignored),
                cmocka_unit_test(test_dropin_dir_missing_or_wrong),
                cmocka_unit_test(test_dropin_error_names_file_and_line),
                cmocka_unit_test(test_dropin_unset),
                cmocka_unit_test(test_dropin_default_runtime),
                cmocka_unit_test(test_format_defaults),
                cmocka_unit_test(test_format_round_trip),
                cmocka_unit_test(test_set),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
