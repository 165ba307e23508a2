#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "log.h"

/*
 * The runtd configuration, read from /etc/runt/runt.yaml and the drop-ins in
 * /etc/runt/runt.yaml.d/ (docs/configuration.md lists every key and the merge rules).
 * Every key is optional: runt_config_defaults() fills the built-in values and
 * runt_config_load_all() overlays the files on them. The struct owns every string and
 * array in it; runt_config_done() frees them. Read-only once runtd has started, so no lock.
 */

#define RUNT_CONFIG_PATH "/etc/runt/runt.yaml"

/* A RuntimeClass handler: the name the kubelet sends and the backend that serves it. */
struct runt_handler {
        char *name;           /* e.g. "lxc", "microvm"; [a-z0-9._-], 1..63 chars */
        char *backend;        /* "lxc", "microvm", "proxmox" or "fake" */
        size_t n_options;     /* backend-specific string options, in file order */
        char **option_keys;   /* n_options entries */
        char **option_values; /* n_options entries, never NULL ("" for an empty value) */
};

/* Pull settings for one registry. */
struct runt_registry {
        char *prefix;   /* "docker.io", "localhost:5000" */
        char **mirrors; /* NULL-terminated, may be empty */
        bool insecure;  /* plain HTTP / no TLS verify */
};

struct runt_config {
        char *listen;                /* "unix:///run/runt/runt.sock" */
        char *state_dir;             /* "/var/lib/runt": runt.db, exit files, CNI cache */
        char *root_dir;              /* "/var/lib/runt/root": layers, rootfs upper dirs, LXC dirs */
        char *run_dir;               /* "/run/runt": netns mounts, sockets */
        enum sh_log_level log_level; /* SH_LOG_INFO */
        char *log_file;              /* NULL = stderr */
        char *default_runtime;       /* "lxc": the handler used for "" */
        struct runt_handler *handlers; /* default: one handler "lxc" -> backend "lxc" */
        size_t n_handlers;
        char *cni_conf_dir;               /* "/etc/cni/net.d" */
        char **cni_bin_dirs;              /* NULL-terminated; {"/opt/cni/bin", "/usr/lib/cni"} */
        unsigned cni_plugin_timeout_s;    /* 60 */
        unsigned pull_timeout_s;          /* no-progress timeout of a pull, 300 */
        struct runt_registry *registries; /* default none */
        size_t n_registries;
        char *registries_conf;          /* "/etc/containers/registries.conf" */
        char **pinned_images;           /* NULL-terminated references never garbage-collected; {} */
        char *streaming_address;        /* "127.0.0.1" */
        unsigned streaming_port;        /* 0 = pick a free port */
        unsigned streaming_token_ttl_s; /* a URL's life before first use, 60 */
        unsigned streaming_creation_timeout_s; /* a session's streams must arrive within, 30 */
        unsigned streaming_idle_timeout_s;     /* a session with no traffic ends, 14400; 0 never */
        unsigned streaming_header_timeout_s;   /* request line and headers, from accept, 5 */
        char *metrics_address;                 /* NULL = off */
        unsigned max_log_line;                 /* container log line split size, 16384 */
        unsigned server_workers;               /* handler threads for calls that may block, 32 */
        unsigned server_read_workers;          /* handler threads for List*, *Status, *Stats, 2 */
        unsigned server_max_queued;            /* calls that may wait for a worker, per lane, 512 */
        unsigned server_events_queue; /* events a GetContainerEvents client may lag, 1000 */
        unsigned pids_limit;          /* pids.max of every container, 4096; 0 = no limit */
        unsigned stats_interval_s;    /* the stats collector samples cgroups and netns, 10 */
        unsigned stats_fs_interval_s; /* and walks writable layers, 60 (rounded up to rounds) */
        char *audit_path;             /* the audit log, "/var/log/runt/audit.log"; NULL = off */
};

/*
 * Fills @cfg (overwritten, not freed) with the built-in defaults. Returns 0 or -ENOMEM;
 * on failure @cfg holds nothing that needs freeing.
 */
int runt_config_defaults(struct runt_config *cfg, struct sh_error *err);

/*
 * Loads the YAML file @path, as runt.yaml, over the values already in @cfg (normally the
 * defaults); its drop-ins are not read. Returns 0, -ENOENT when @path does not exist (the
 * caller decides whether that is fine), -EINVAL for a bad file with
 * "FILE:LINE:COLUMN: key 'a.b': what is wrong" in @err, -ENOMEM, or another -errno from
 * reading. On any failure @cfg is left exactly as it was.
 */
int runt_config_load(struct runt_config *cfg, const char *path, struct sh_error *err);

/*
 * As runt_config_load(), then the drop-ins: the files in "@path.d/" whose names end in
 * ".yaml" (hidden ones left out), in byte order of their names, each merged over the
 * result (docs/configuration.md, "Drop-in files") and checked as strictly as @path. A
 * missing "@path.d" has none. A missing @path is -ENOENT, unless @missing_ok: then the
 * drop-ins apply over @cfg alone. An error names the file it is in. On any failure @cfg is
 * left exactly as it was.
 */
int runt_config_load_all(struct runt_config *cfg, const char *path, bool missing_ok,
                         struct sh_error *err);

/*
 * Sets the top-level key @key ("listen", "state_dir", "log_level", ...) to the text @value,
 * checked as the same key in a file is (a command-line flag). @origin names the source in
 * the message ("--listen: key 'listen': ..."). Returns 0, -EINVAL or -ENOMEM; on failure
 * @cfg is left as it was.
 */
int runt_config_set(struct runt_config *cfg, const char *key, const char *value, const char *origin,
                    struct sh_error *err);

/*
 * Writes @cfg as a YAML document with every key, in the order of docs/configuration.md;
 * loading it over the defaults gives @cfg again, and writing that gives the same text.
 * *@ret_text is malloc'd. Returns 0, -ENOMEM, or -EINVAL for a string YAML cannot hold
 * (not UTF-8).
 */
int runt_config_format(const struct runt_config *cfg, char **ret_text, struct sh_error *err);

/* Frees everything @cfg owns and zeroes it; safe to call twice. */
void runt_config_done(struct runt_config *cfg);

/*
 * The handler called @name, with NULL or "" meaning default_runtime. Returns a pointer
 * into @cfg (valid until runt_config_done()), or NULL if no handler has that name.
 */
const struct runt_handler *runt_config_handler(const struct runt_config *cfg, const char *name);
