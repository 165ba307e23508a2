#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "reply.h"

/*
 * The Proxmox VE API client (../shared/notes/proxmox-api.md §1, §4, §6): HTTPS with libcurl
 * to https://HOST:8006/api2/json, an API token from a file, replies read by pve_reply_parse.
 *
 * Threads: every function may be called from many threads at once on one client. A client
 * keeps a small mutex-protected pool of curl handles (their keep-alive connections), the
 * node marks and counters; nothing else is shared. Calls block for at most the timeouts
 * below (times the retries, plus the backoff); no function logs above debug.
 *
 * Secrets: the token is read once, kept in memory only as the Authorization header value,
 * and wiped when the client is freed; each request's copy of the header list is wiped after
 * the request. It is never logged, never put in an error message, never on a command line
 * and never sent in clear (https only, no redirects followed, no proxy from the environment).
 * libcurl's own buffer of the request it sent is freed without being wiped.
 *
 * TLS, one of:
 *   - @ca_file: the cluster CA (pve-root-ca.pem), normal peer and host name verification;
 *   - @fingerprint: the SHA-256 fingerprint(s) of the nodes' certificates, as the GUI or
 *     `pvenode cert info` shows them, comma-separated for several endpoints. The leaf
 *     certificate must match one of them (checked in an OpenSSL verify callback installed by
 *     CURLOPT_SSL_CTX_FUNCTION, as pve-apiclient does, and again on the connection before
 *     each request is sent); its chain and host name are not checked;
 *   - neither: the system's CA store with normal verification (an ACME certificate);
 *   - @insecure: no verification at all, only when the configuration says so.
 * Combining them is -EINVAL.
 *
 * Errors: "METHOD PATH: what PVE said" (pve_reply_parse's text and errno: 400 -EINVAL, 401
 * -EACCES, 403 -EPERM, 595/596 -EHOSTUNREACH, 500 -EIO, ...). Transport failures: -ECONNREFUSED
 * (no endpoint could be reached), -ETIMEDOUT, -EPROTO (TLS: an untrusted certificate, a pin
 * that does not match, a failed handshake), -ECONNRESET (the connection broke after the
 * request was sent), -EHOSTUNREACH (a node marked unavailable), -EFBIG (a reply over 16 MiB).
 * Module prefix: pve_.
 */

struct pve_client;

struct pve_client_opts {
        const char *const *endpoints; /* "https://host:8006", tried in order: see pve_call */
        size_t n_endpoints;
        const char *token_file;  /* see pve_token_load (auth.h) */
        const char *ca_file;     /* or NULL */
        const char *fingerprint; /* "AB:CD:...[,EF:...]" or NULL */
        bool insecure;
        unsigned connect_timeout_ms; /* per connection attempt; 0: 5000 */
        unsigned timeout_ms;         /* per request, in all; 0: 30000 (PVE delays a 401 by 3 s) */
        unsigned retries;            /* connect failures and 595/596; 0: 3 (UINT_MAX: none) */
        unsigned backoff_ms;         /* before the first retry, doubling; 0: 200 */
        unsigned node_recheck_ms;    /* how long a node stays marked unavailable; 0: 30000 */
};

/*
 * A new client: checks the options, reads the token file (its errors, see auth.h), parses
 * the fingerprints. Connects to nothing. 0 or -EINVAL / -ENOMEM / pve_token_load's errors.
 */
int pve_client_new(const struct pve_client_opts *o, struct pve_client **ret, struct sh_error *err);
/* Frees @c (NULL is fine), wiping the token. No call may be in flight. */
void pve_client_free(struct pve_client *c);

/* A key and a value of a request, which may hold any byte, NUL included (env's K=V list). */
struct pve_param {
        const char *key;
        const char *value;
        size_t len; /* of @value */
};

/*
 * One API call: @method "GET", "POST", "PUT" or "DELETE", @path below /api2/json
 * ("/nodes/node1/lxc", no query). @params: NULL-terminated key, value pairs (NULL for none),
 * URL-encoded (curl_easy_escape) into the query string for GET and DELETE, into an
 * application/x-www-form-urlencoded body with a Content-Length for POST and PUT (never
 * chunked; over 512 KiB is -E2BIG, as PVE refuses it). On success the reply's "data" is in
 * @ret (NULL data for JSON null; pve_reply_done it), @ret may be NULL.
 *
 * Endpoints are tried in order from the one that answered last; a connect failure
 * (resolve, refuse, connect timeout, a handshake that broke before the request was sent)
 * moves to the next one. When all fail, or PVE answers 595/596 (it could not reach the
 * node), the call is repeated up to @retries times after @backoff_ms, doubling. A 401 (PVE
 * answers it after 3 s) and any other reply are not retried; neither is a request that was
 * sent and then lost (it may have been done).
 *
 * Nodes: a call on /nodes/<node>/... that still gets 595/596 marks <node> unavailable for
 * @node_recheck_ms; until then calls on it fail at once with -EHOSTUNREACH and pve_node_pick
 * skips it. The first call after that is the probe: any reply other than 595/596 clears it.
 */
int pve_call(struct pve_client *c, const char *method, const char *path, const char *const *params,
             struct pve_reply *ret, struct sh_error *err);
/* pve_call with @n params that may hold NUL bytes. */
int pve_call_params(struct pve_client *c, const char *method, const char *path,
                    const struct pve_param *params, size_t n, struct pve_reply *ret,
                    struct sh_error *err);
/*
 * pve_call with the path written by @fmt (snprintf; path components are the caller's to
 * escape, see pve_escape). The only function here whose @err is not last.
 */
int pve_callf(struct pve_client *c, const char *method, const char *const *params,
              struct pve_reply *ret, struct sh_error *err, const char *fmt, ...)
        __attribute__((format(printf, 6, 7)));

/* @s URL-encoded for a path component (a UPID, a volume id), malloc'd; NULL on ENOMEM. */
char *pve_escape(const char *s);

/*
 * Uploads the local file @file (multipart/form-data, with a Content-Length) into @storage on
 * @node as @name: POST /nodes/{node}/storage/{storage}/upload with content=@content
 * ("vztmpl", "iso", "import"), then waits up to @timeout_ms (0: 10 minutes) for the imgcopy
 * task it starts (pve_task_wait). The transfer itself has no total timeout, only a minimum
 * speed (1 KiB/s over the client's timeout). -ENOENT when @file cannot be read; the call's
 * and the task's errors otherwise. (@timeout_ms is an addition to the brief's signature:
 * the copy's duration grows with the file.)
 */
int pve_upload(struct pve_client *c, const char *node, const char *storage, const char *content,
               const char *file, const char *name, unsigned timeout_ms, struct sh_error *err);

/* Whether @node may be called: not marked unavailable, or its mark has expired. */
bool pve_node_available(struct pve_client *c, const char *node);
/* Marks @node unavailable for the client's node_recheck_ms (what a 595 after retries does). */
void pve_node_mark_unavailable(struct pve_client *c, const char *node, const char *why);

/*
 * When to look at a task of @type ("vzstart") first, in ms: what pve_task_hint_set last said
 * for that type, else @def_ms. Kept per client for at most 16 types (more are not kept).
 */
unsigned pve_task_hint(struct pve_client *c, const char *type, unsigned def_ms);
void pve_task_hint_set(struct pve_client *c, const char *type, unsigned ms);

/*
 * HTTP requests made so far (each attempt and each task poll counts), for the bench's
 * calls-per-pod budget; and the number of retries among them.
 */
unsigned long pve_client_calls(struct pve_client *c);
unsigned long pve_client_retries(struct pve_client *c);
