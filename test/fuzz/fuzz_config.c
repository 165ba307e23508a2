/*
 * libFuzzer target: runt.yaml. The input is written to a memfd and loaded with
 * runt_config_load over the defaults. Beyond not crashing or leaking, the loader's contract
 * is checked: a failure leaves the config as it was and says why; a success yields a config
 * whose default handler exists, loading the same file again over it succeeds too, and the
 * config printed by runt_config_format() loads back to the same config and prints the same.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool str_eq(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool strv_eq(char *const *a, char *const *b)
{
        if (!a || !b)
                return a == b;
        for (; *a && *b; a++, b++)
                if (strcmp(*a, *b) != 0)
                        return false;
        return !*a && !*b;
}

static bool handler_eq(const struct runt_handler *a, const struct runt_handler *b)
{
        if (!str_eq(a->name, b->name) || !str_eq(a->backend, b->backend) ||
            a->n_options != b->n_options)
                return false;
        for (size_t i = 0; i < a->n_options; i++)
                if (!str_eq(a->option_keys[i], b->option_keys[i]) ||
                    !str_eq(a->option_values[i], b->option_values[i]))
                        return false;
        return true;
}

/* Deep equality of two configs. */
static bool config_eq(const struct runt_config *a, const struct runt_config *b)
{
        if (!str_eq(a->listen, b->listen) || !str_eq(a->state_dir, b->state_dir) ||
            !str_eq(a->root_dir, b->root_dir) || !str_eq(a->run_dir, b->run_dir) ||
            a->log_level != b->log_level || !str_eq(a->log_file, b->log_file) ||
            !str_eq(a->default_runtime, b->default_runtime) || a->n_handlers != b->n_handlers ||
            !str_eq(a->cni_conf_dir, b->cni_conf_dir) ||
            !strv_eq(a->cni_bin_dirs, b->cni_bin_dirs) ||
            a->cni_plugin_timeout_s != b->cni_plugin_timeout_s ||
            a->pull_timeout_s != b->pull_timeout_s || a->n_registries != b->n_registries ||
            !str_eq(a->registries_conf, b->registries_conf) ||
            !str_eq(a->streaming_address, b->streaming_address) ||
            a->streaming_port != b->streaming_port ||
            !str_eq(a->metrics_address, b->metrics_address) || a->max_log_line != b->max_log_line ||
            a->pids_limit != b->pids_limit || !strv_eq(a->pinned_images, b->pinned_images) ||
            a->streaming_token_ttl_s != b->streaming_token_ttl_s ||
            a->streaming_creation_timeout_s != b->streaming_creation_timeout_s ||
            a->streaming_idle_timeout_s != b->streaming_idle_timeout_s ||
            a->streaming_header_timeout_s != b->streaming_header_timeout_s ||
            a->server_workers != b->server_workers ||
            a->server_read_workers != b->server_read_workers ||
            a->server_max_queued != b->server_max_queued ||
            a->server_events_queue != b->server_events_queue ||
            a->stats_interval_s != b->stats_interval_s ||
            a->stats_fs_interval_s != b->stats_fs_interval_s)
                return false;
        for (size_t i = 0; i < a->n_handlers; i++)
                if (!handler_eq(&a->handlers[i], &b->handlers[i]))
                        return false;
        for (size_t i = 0; i < a->n_registries; i++)
                if (!str_eq(a->registries[i].prefix, b->registries[i].prefix) ||
                    !strv_eq(a->registries[i].mirrors, b->registries[i].mirrors) ||
                    a->registries[i].insecure != b->registries[i].insecure)
                        return false;
        return true;
}

/* Prints @cfg, loads the text over the defaults, prints again: same config, same text. */
static void check_round_trip(const struct runt_config *cfg)
{
        static int fd = -1;
        static char path[64];
        struct runt_config back;
        struct sh_error err = {0};
        char *text = NULL, *again = NULL;
        size_t len;

        if (fd < 0) {
                fd = memfd_create("printed.yaml", MFD_CLOEXEC);
                if (fd < 0)
                        abort();
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        }
        if (runt_config_format(cfg, &text, &err) != 0)
                abort();
        len = strlen(text);
        if (ftruncate(fd, 0) < 0 || pwrite(fd, text, len, 0) != (ssize_t)len)
                abort();
        if (runt_config_defaults(&back, &err) < 0 || runt_config_load(&back, path, &err) != 0 ||
            !config_eq(cfg, &back) || runt_config_format(&back, &again, &err) != 0 ||
            strcmp(text, again) != 0)
                abort();
        free(text);
        free(again);
        runt_config_done(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static int fd = -1;
        static char path[64];
        struct runt_config cfg, ref;
        struct sh_error err = {0};
        int r;

        if (fd < 0) {
                fd = memfd_create("runt.yaml", MFD_CLOEXEC);
                if (fd < 0)
                        abort();
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        }
        if (ftruncate(fd, 0) < 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
                abort();

        if (runt_config_defaults(&cfg, &err) < 0 || runt_config_defaults(&ref, &err) < 0)
                abort();
        r = runt_config_load(&cfg, path, &err);
        if (r < 0) {
                /* A failure says why, with the code it returns, and leaves @cfg as it was. */
                if (r != -ENOMEM && (!err.msg[0] || err.code != r))
                        abort();
                if (!config_eq(&cfg, &ref))
                        abort();
        } else {
                if (r != 0)
                        abort();
                /* The default handler exists and every handler has a backend. */
                if (!runt_config_handler(&cfg, NULL) || !cfg.cni_bin_dirs || !cfg.cni_bin_dirs[0])
                        abort();
                for (size_t i = 0; i < cfg.n_handlers; i++)
                        if (!cfg.handlers[i].name || !cfg.handlers[i].backend)
                                abort();
                /* Deterministic, and idempotent: the file over its own result changes nothing. */
                if (runt_config_load(&ref, path, &err) != 0 || !config_eq(&cfg, &ref))
                        abort();
                if (runt_config_load(&cfg, path, &err) != 0 || !config_eq(&cfg, &ref))
                        abort();
                check_round_trip(&cfg);
        }
        runt_config_done(&cfg);
        runt_config_done(&ref);
        return 0;
}
