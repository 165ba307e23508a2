#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "be.h"
#include "error.h"

/*
 * The proxmox backend's pure parts (module prefix px_), apart so unit tests reach them: the
 * handler's options and the values it sends PVE.
 */

/* The handler's options (runt.yaml runtimes.<name>.options), parsed; strings malloc'd. */
struct px_opts {
        char **endpoints; /* NULL-terminated, at least one "https://..." */
        size_t n_endpoints;
        char *token_file;
        char *ca_file;     /* NULL when unset */
        char *fingerprint; /* NULL when unset */
        bool insecure;
        char **nodes; /* NULL-terminated allow-list, NULL: every node */
        char *storage;
        char *rootfs;
        char *bridge;
        char *subnet;
        char *range_start, *range_end, *gateway; /* NULL when unset */
        char *dns;                               /* "1.1.1.1 8.8.8.8" or NULL */
        unsigned memory_mib;
        unsigned cores;
        unsigned agent_port;
        unsigned task_timeout_s;
        unsigned poll_s;        /* how often the nodes' CTs are looked at; 0: never */
        unsigned cert_days;     /* an agent certificate's validity */
        unsigned layer_stall_s; /* how long a layer transfer may make no progress */
};

/*
 * Parses @cfg's options into @ret (zeroed first; px_opts_done it even on failure). Unknown
 * options, missing required ones (endpoints, token_file, subnet), bad numbers and two TLS
 * modes at once are -EINVAL with a message naming the option.
 */
int px_opts_parse(const struct be_config *cfg, struct px_opts *ret, struct sh_error *err);
void px_opts_done(struct px_opts *o);

/*
 * PVE's `env` value (notes §2: a NUL-separated K=V list) from "K=V" strings @env
 * (NULL-terminated): joined by NUL bytes, malloc'd in *@ret (NUL-terminated as well), its
 * length without that last NUL in *@ret_len. -EINVAL for an empty list, an entry without a
 * name before '=' or one with a newline (PVE's config file is line-based); -ENOMEM.
 */
int px_env_join(const char *const *env, char **ret, size_t *ret_len, struct sh_error *err);

/* The CT's description: names the pod so an operator knows whose CT it is. malloc'd. */
char *px_description(const struct be_sandbox_spec *s, const char *pod_id);

/*
 * The CT's hostname (its UTS name, which the pod's containers share): the pod's hostname,
 * else its name, when PVE takes it (a DNS name: [a-z0-9-] labels, at most 63 characters),
 * else "runt-<12 digits of the id>".
 */
void px_hostname(const struct be_sandbox_spec *s, const char *pod_id, char *out, size_t size);

/*
 * Whether PVE tag list @tags (';', ',' or space separated, as pve-tag-list) holds @tag
 * exactly: "runtime" is not "runt". NULL @tags holds nothing.
 */
bool px_tags_have(const char *tags, const char *tag);

/*
 * The sandbox id of a description px_description wrote, parsed strictly: "runt pod " at the
 * start and ", sandbox <64 lower-case hex>" at the end (one trailing newline allowed, as PVE
 * may give one back). 0 with the id in @ret_id, else -EINVAL.
 */
int px_description_sandbox(const char *desc, char ret_id[65]);

/*
 * The range of addresses @o's pods get, as 16-byte big-endian bounds (IPv4 mapped into
 * ::ffff:0:0/96): range_start/range_end, else the subnet's bounds. -EINVAL when they do not
 * parse (pve_ipam_open gives the message).
 */
int px_opts_range(const struct px_opts *o, unsigned char ret_lo[16], unsigned char ret_hi[16]);

/*
 * The errno RunPodSandbox answers for failure @r (message @msg, may be NULL) of a proxmox
 * pod's making once its spec was accepted, so the gRPC code (cri/translate.c) says what went
 * wrong to a containerd user: nothing there is the spec's fault or a missing object.
 * -EINVAL (PVE's 400: a parameter from the handler's options, or a server that differs),
 * -EACCES and -EPERM (the API token) become -EBUSY (FAILED_PRECONDITION: the setup needs
 * fixing); -ENOENT with "can't find file" (the pod image went from the storage), -EEXIST (no
 * free vmid after the retries) and -ECONNRESET become -EAGAIN (UNAVAILABLE: worth a retry);
 * -ESRCH (the CT stopped while it started) and any other -ENOENT become -EIO (INTERNAL).
 * Other values are returned as they are.
 */
int px_create_errno(int r, const char *msg);
