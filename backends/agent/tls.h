#pragma once

/*
 * runtd's end of the pod agent's TLS transport (a Proxmox CT's runt-agent listens on TCP;
 * see tls-common.h for the rules both ends follow). Module prefix: ag_tls_.
 *
 *   - a CA of runtd's own (ECDSA P-256), made once in a directory and reloaded after;
 *   - per pod, the agent's certificate (CN and DNS SAN = the pod id, serverAuth), handed to
 *     the CT in its environment (ag_tls_agent_env);
 *   - runtd's client certificate (CN "runtd", clientAuth), issued from the same CA;
 *   - connections (ag_dial_tls): TLS 1.3, the agent's certificate must chain to the CA and
 *     name the pod runtd asked for. ag_client_new_tls (client.h) runs the protocol on one.
 *
 * Every function may be called from any thread; the objects are immutable once made, but
 * for ag_tls_client's certificate, which it renews under its own lock.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tls-common.h"

/* The CA's file in the directory given to ag_tls_ca_open: its key (PKCS#8) and
 * certificate, PEM, mode 0600. */
#define AG_TLS_CA_FILE   "agent-ca.pem"
#define AG_TLS_CA_DAYS   3650 /* the CA's validity */
#define AG_TLS_CERT_DAYS 365  /* a certificate's validity, by default */

struct ag_tls_ca;
struct ag_tls_client;
struct ag_tls_conn;

/*
 * Loads the CA from @dir/AG_TLS_CA_FILE, or makes it when the file is not there (@dir is
 * created 0700 if missing, not its parents). The file is written under a temporary name and
 * linked into place, so a crash leaves no half file, and of two runtds making it at once
 * both end up with the one that won. A file that is not a regular file owned by this user
 * with mode 0600 or stricter is refused (-EPERM), as is one whose key and certificate do not
 * match or whose certificate is not a CA (-EINVAL) or has expired (-EKEYEXPIRED: remove it
 * to make a new one; the agents already running then refuse runtd until their pods are
 * made again). 0 or -errno.
 */
int ag_tls_ca_open(const char *dir, struct ag_tls_ca **ret, struct sh_error *err);
/* NULL-safe. */
void ag_tls_ca_free(struct ag_tls_ca *ca);
/* The CA's certificate, DER (owned by @ca). */
const uint8_t *ag_tls_ca_cert(const struct ag_tls_ca *ca, size_t *ret_len);

enum ag_tls_role {
        AG_TLS_AGENT, /* a server certificate: CN and DNS SAN @cn, serverAuth */
        AG_TLS_RUNTD, /* a client certificate: CN @cn, clientAuth */
};

/* A certificate and its private key, DER (the key PKCS#8), malloc'd. */
struct ag_tls_cred {
        uint8_t *cert, *key;
        size_t cert_len, key_len;
};
/* Frees what @c holds, the key zeroed first, and clears it. */
void ag_tls_cred_done(struct ag_tls_cred *c);

/*
 * Issues a certificate with a new ECDSA P-256 key, signed by @ca, valid from an hour ago
 * (clocks differ) for @days days (0: AG_TLS_CERT_DAYS). @cn: 1 to AG_TLS_CN_MAX characters
 * of [A-Za-z0-9._-] (-EINVAL otherwise). 0 or -errno.
 */
int ag_tls_issue(const struct ag_tls_ca *ca, enum ag_tls_role role, const char *cn, unsigned days,
                 struct ag_tls_cred *ret, struct sh_error *err);

/*
 * The environment that starts an agent for pod @pod_id: a new agent certificate for it and
 * the CA's, as "NAME=VALUE" strings with no newline (AG_TLS_ENV_CERT, _KEY, _CA,
 * AG_TLS_ENV_LISTEN; see tls-common.h), NULL-terminated, in *@ret_env (free it with
 * ag_tls_env_free). @listen: the agent's listen address, "IPV4:PORT" or "[IPV6]:PORT";
 * NULL: "0.0.0.0:AG_TLS_PORT". The certificate is valid @days days (0: AG_TLS_CERT_DAYS).
 * 0 or -errno (-EINVAL for a bad @pod_id or @listen).
 */
int ag_tls_agent_env(const struct ag_tls_ca *ca, const char *pod_id, const char *listen,
                     unsigned days, char ***ret_env, struct sh_error *err);
/* Zeroes and frees ag_tls_agent_env's strings. NULL-safe. */
void ag_tls_env_free(char **env);

/*
 * runtd's client: a client certificate (CN "runtd") issued from @ca, renewed by the dial
 * that finds it within 30 days of its end, and the CA as the only trust anchor. @ca must
 * outlive the client. 0 or -errno.
 */
int ag_tls_client_new(const struct ag_tls_ca *ca, struct ag_tls_client **ret, struct sh_error *err);
/* NULL-safe. No connection may be in a handshake with it. */
void ag_tls_client_free(struct ag_tls_client *cl);

/*
 * The TLS handshake on connected stream socket @fd (owned from here, closed on failure),
 * as runtd, with the agent of pod @pod_id: its certificate must chain to the CA, have CN
 * and DNS SAN @pod_id and serverAuth. Returns once the agent's first bytes came (its READY
 * event, left unread): with TLS 1.3 that is when runtd knows the agent accepted its own
 * certificate. At most @timeout_ms (0: no limit). 0; -EACCES when either side refused the
 * other's certificate; -ETIMEDOUT; -ECONNRESET when the agent closed the connection;
 * -EPROTO for any other TLS failure.
 */
int ag_tls_handshake(struct ag_tls_client *cl, int fd, const char *pod_id, unsigned timeout_ms,
                     struct ag_tls_conn **ret, struct sh_error *err);

/*
 * Connects to the agent of pod @pod_id at @host (a name or an address; name resolution may
 * block beyond @timeout_ms) TCP @port, and does ag_tls_handshake. The whole takes at most
 * @timeout_ms (0: the kernel's connect timeout, no limit of ours). The socket gets
 * TCP_NODELAY and keepalives (a peer gone for about a minute is noticed). 0, the errors of
 * ag_tls_handshake, -ECONNREFUSED, -EHOSTUNREACH (the name does not resolve), or the
 * connect's -errno.
 */
int ag_dial_tls(struct ag_tls_client *cl, const char *host, uint16_t port, const char *pod_id,
                unsigned timeout_ms, struct ag_tls_conn **ret, struct sh_error *err);

/* The end of the agent's certificate on @t (seconds since the epoch); 0 when unknown. */
int64_t ag_tls_conn_peer_until(const struct ag_tls_conn *t);

/* Sends the agent a close_notify (not waiting for anything), closes, frees. NULL-safe. */
void ag_tls_conn_free(struct ag_tls_conn *t);
