/* The proxmox handler's options and the values it builds for PVE (proxmox-internal.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "proxmox-internal.h"
#include "strutil.h"

static const char *const px_known[] = {
        "endpoints",
        "token_file",
        "ca_file",
        "fingerprint",
        "insecure",
        "nodes",
        "storage",
        "rootfs",
        "bridge",
        "subnet",
        "range_start",
        "range_end",
        "gateway",
        "dns",
        "memory",
        "cores",
        "agent_port",
        "task_timeout",
        "poll_interval",
        "agent_cert_days",
        "layer_stall_timeout",
};

static int opt_uint(const struct be_config *cfg, const char *key, unsigned def, unsigned min,
                    unsigned max, unsigned *ret, struct sh_error *err)
{
        const char *v = be_config_option(cfg, key);
        char *end = NULL;
        unsigned long n;

        if (!v || !v[0]) {
                *ret = def;
                return 0;
        }
        errno = 0;
        n = strtoul(v, &end, 10);
        if (errno || !end || *end || v[0] == '-' || n < min || n > max)
                return sh_err(err, -EINVAL, "proxmox option %s: '%s' is not a number in %u..%u",
                              key, v, min, max);
        *ret = (unsigned)n;
        return 0;
}

/* @key's value, or @def (NULL: unset is NULL) when missing or empty. */
static int opt_str(const struct be_config *cfg, const char *key, const char *def, char **ret)
{
        const char *v = be_config_option(cfg, key);

        if (!v || !v[0])
                v = def;
        *ret = v ? strdup(v) : NULL;
        return v && !*ret ? -ENOMEM : 0;
}

/* A comma-separated list into a NULL-terminated strv; *@ret NULL when empty. */
static int opt_list(const struct be_config *cfg, const char *key, char ***ret, size_t *ret_n)
{
        const char *cur = be_config_option(cfg, key), *e;
        size_t len, n = 0;
        char **v = NULL;

        *ret = NULL;
        if (ret_n)
                *ret_n = 0;
        while (sh_list_next(&cur, &e, &len)) {
                char **nv = realloc(v, (n + 2) * sizeof(*v));

                if (!nv) {
                        sh_strv_free(v);
                        return -ENOMEM;
                }
                v = nv;
                v[n + 1] = NULL;
                v[n] = strndup(e, len);
                if (!v[n]) {
                        sh_strv_free(v);
                        return -ENOMEM;
                }
                n++;
        }
        *ret = v;
        if (ret_n)
                *ret_n = n;
        return 0;
}

void px_opts_done(struct px_opts *o)
{
        sh_strv_free(o->endpoints);
        sh_strv_free(o->nodes);
        free(o->token_file);
        free(o->ca_file);
        free(o->fingerprint);
        free(o->storage);
        free(o->rootfs);
        free(o->bridge);
        free(o->subnet);
        free(o->range_start);
        free(o->range_end);
        free(o->gateway);
        free(o->dns);
        memset(o, 0, sizeof(*o));
}

int px_opts_parse(const struct be_config *cfg, struct px_opts *o, struct sh_error *err)
{
        _cleanup_free_ char *insecure = NULL;
        int r;

        memset(o, 0, sizeof(*o));
        for (size_t i = 0; i < cfg->n_options; i++) {
                bool ok = false;

                for (size_t k = 0; k < SH_ARRAY_SIZE(px_known) && !ok; k++)
                        ok = strcmp(cfg->option_keys[i], px_known[k]) == 0;
                if (!ok)
                        return sh_err(err, -EINVAL,
                                      "proxmox option '%s' is not known (expected endpoints, "
                                      "token_file, ca_file, fingerprint, insecure, nodes, "
                                      "storage, rootfs, bridge, subnet, range_start, range_end, "
                                      "gateway, dns, memory, cores, agent_port, task_timeout, "
                                      "poll_interval, agent_cert_days or layer_stall_timeout)",
                                      cfg->option_keys[i]);
        }
        if (opt_list(cfg, "endpoints", &o->endpoints, &o->n_endpoints) < 0 ||
            opt_list(cfg, "nodes", &o->nodes, NULL) < 0 ||
            opt_str(cfg, "token_file", NULL, &o->token_file) < 0 ||
            opt_str(cfg, "ca_file", NULL, &o->ca_file) < 0 ||
            opt_str(cfg, "fingerprint", NULL, &o->fingerprint) < 0 ||
            opt_str(cfg, "insecure", "false", &insecure) < 0 ||
            opt_str(cfg, "storage", "local", &o->storage) < 0 ||
            opt_str(cfg, "rootfs", "local-lvm:1", &o->rootfs) < 0 ||
            opt_str(cfg, "bridge", "vmbr0", &o->bridge) < 0 ||
            opt_str(cfg, "subnet", NULL, &o->subnet) < 0 ||
            opt_str(cfg, "range_start", NULL, &o->range_start) < 0 ||
            opt_str(cfg, "range_end", NULL, &o->range_end) < 0 ||
            opt_str(cfg, "gateway", NULL, &o->gateway) < 0 ||
            opt_str(cfg, "dns", NULL, &o->dns) < 0)
                return -ENOMEM;
        if (!o->endpoints)
                return sh_err(err, -EINVAL,
                              "proxmox option endpoints: at least one https URL "
                              "is needed");
        for (size_t i = 0; i < o->n_endpoints; i++)
                if (strncmp(o->endpoints[i], "https://", 8) != 0 || !o->endpoints[i][8])
                        return sh_err(err, -EINVAL,
                                      "proxmox option endpoints: '%s' is not an https URL",
                                      o->endpoints[i]);
        if (!o->token_file)
                return sh_err(err, -EINVAL, "proxmox option token_file is needed");
        if (!o->subnet)
                return sh_err(err, -EINVAL, "proxmox option subnet is needed (the pods' range)");
        if (strcmp(insecure, "true") != 0 && strcmp(insecure, "false") != 0)
                return sh_err(err, -EINVAL, "proxmox option insecure: '%s' is not true or false",
                              insecure);
        o->insecure = strcmp(insecure, "true") == 0;
        if ((o->ca_file != NULL) + (o->fingerprint != NULL) + o->insecure > 1)
                return sh_err(err, -EINVAL,
                              "proxmox options ca_file, fingerprint and insecure exclude each "
                              "other");
        if (o->dns)
                for (char *c = o->dns; *c; c++)
                        if (*c == ',')
                                *c = ' ';
        r = opt_uint(cfg, "memory", 512, 16, 1u << 22, &o->memory_mib, err);
        if (r == 0)
                r = opt_uint(cfg, "cores", 1, 1, 8192, &o->cores, err);
        if (r == 0)
                r = opt_uint(cfg, "agent_port", 7443, 1, 65535, &o->agent_port, err);
        if (r == 0)
                r = opt_uint(cfg, "task_timeout", 120, 1, 86400, &o->task_timeout_s, err);
        if (r == 0)
                r = opt_uint(cfg, "poll_interval", 10, 0, 3600, &o->poll_s, err);
        if (r == 0)
                r = opt_uint(cfg, "agent_cert_days", 365, 1, 3650, &o->cert_days, err);
        if (r == 0)
                r = opt_uint(cfg, "layer_stall_timeout", 60, 1, 3600, &o->layer_stall_s, err);
        return r;
}

int px_env_join(const char *const *env, char **ret, size_t *ret_len, struct sh_error *err)
{
        size_t len = 0, off = 0;
        char *buf;

        if (!env || !env[0])
                return sh_err(err, -EINVAL, "proxmox: an empty env");
        for (size_t i = 0; env[i]; i++) {
                const char *eq = strchr(env[i], '=');

                if (!eq || eq == env[i] || strchr(env[i], '\n'))
                        return sh_err(err, -EINVAL,
                                      "proxmox: env entry %zu is not NAME=VALUE "
                                      "on one line",
                                      i);
                len += strlen(env[i]) + 1;
        }
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; env[i]; i++) {
                size_t n = strlen(env[i]) + 1;

                memcpy(buf + off, env[i], n); /* its NUL is the separator */
                off += n;
        }
        *ret = buf;
        *ret_len = len - 1;
        return 0;
}

char *px_description(const struct be_sandbox_spec *s, const char *pod_id)
{
        return sh_strdup_printf("runt pod %s/%s (uid %s), sandbox %s", s->namespace, s->name,
                                s->uid, pod_id);
}

static bool dns_name(const char *s)
{
        size_t n = strlen(s), label = 0;

        if (!n || n > 63 || s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.')
                return false;
        for (const char *c = s; *c; c++) {
                if (*c == '.') {
                        if (!label || c[-1] == '-' || c[1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
                        return false;
                label++;
        }
        return true;
}

void px_hostname(const struct be_sandbox_spec *s, const char *pod_id, char *out, size_t size)
{
        if (s->hostname && dns_name(s->hostname))
                snprintf(out, size, "%s", s->hostname);
        else if (s->name && dns_name(s->name))
                snprintf(out, size, "%s", s->name);
        else
                snprintf(out, size, "runt-%.12s", pod_id);
}

bool px_tags_have(const char *tags, const char *tag)
{
        size_t n = strlen(tag);

        while (tags && *tags) {
                size_t len;

                tags += strspn(tags, ";, ");
                len = strcspn(tags, ";, ");
                if (len && len == n && strncasecmp(tags, tag, n) == 0)
                        return true;
                tags += len;
        }
        return false;
}

int px_description_sandbox(const char *desc, char ret_id[65])
{
        static const char head[] = "runt pod ", mid[] = ", sandbox ";
        size_t n = desc ? strlen(desc) : 0;
        const char *id;

        if (n && desc[n - 1] == '\n')
                n--;
        if (n < sizeof(head) - 1 + sizeof(mid) - 1 + 64 || strncmp(desc, head, sizeof(head) - 1))
                return -EINVAL;
        id = desc + n - 64;
        if (strncmp(id - (sizeof(mid) - 1), mid, sizeof(mid) - 1) != 0)
                return -EINVAL;
        for (size_t i = 0; i < 64; i++)
                if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
                        return -EINVAL;
        memcpy(ret_id, id, 64);
        ret_id[64] = 0;
        return 0;
}

/* @s as a 16-byte address (IPv4 mapped). */
static int addr16(const char *s, unsigned char out[16], bool *v4)
{
        struct in_addr a4;

        if (inet_pton(AF_INET, s, &a4) == 1) {
                memset(out, 0, 10);
                out[10] = out[11] = 0xff;
                memcpy(out + 12, &a4, 4);
                *v4 = true;
                return 0;
        }
        *v4 = false;
        return inet_pton(AF_INET6, s, out) == 1 ? 0 : -EINVAL;
}

int px_opts_range(const struct px_opts *o, unsigned char lo[16], unsigned char hi[16])
{
        char net[64];
        const char *slash = o->subnet ? strchr(o->subnet, '/') : NULL;
        unsigned long prefix;
        char *end = NULL;
        bool v4, v4b;

        if (!slash || (size_t)(slash - o->subnet) >= sizeof(net))
                return -EINVAL;
        snprintf(net, sizeof(net), "%.*s", (int)(slash - o->subnet), o->subnet);
        prefix = strtoul(slash + 1, &end, 10);
        if (!end || *end || addr16(net, lo, &v4) < 0 || prefix > (v4 ? 32u : 128u))
                return -EINVAL;
        if (v4)
                prefix += 96;
        memcpy(hi, lo, 16);
        for (unsigned bit = (unsigned)prefix; bit < 128; bit++) {
                lo[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
                hi[bit / 8] |= (unsigned char)(0x80u >> (bit % 8));
        }
        if (o->range_start && (addr16(o->range_start, lo, &v4b) < 0 || v4b != v4))
                return -EINVAL;
        if (o->range_end && (addr16(o->range_end, hi, &v4b) < 0 || v4b != v4))
                return -EINVAL;
        return 0;
}

int px_create_errno(int r, const char *msg)
{
        if (!msg)
                msg = "";
        switch (r) {
        case -EINVAL: /* PVE's 400, or an option runt cannot use: the handler's setup */
        case -EACCES: /* the token refused (401), or the agent's certificate */
        case -EPERM:  /* the token lacks a privilege (403) */
                return -EBUSY;
        case -ENOENT:
                /* The pod image gone from the storage: the next try uploads it again. */
                return strstr(msg, "can't find file") ? -EAGAIN : -EIO;
        case -EEXIST:     /* every vmid nextid gave was taken meanwhile */
        case -ECONNRESET: /* the connection broke after the request was sent */
                return -EAGAIN;
        case -ESRCH: /* the CT stopped before its agent answered */
                return -EIO;
        default:
                return r;
        }
}
