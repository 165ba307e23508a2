#pragma once

/*
 * runt-agent's end of the TLS transport (see tls-common.h): its credentials, from the
 * environment (a Proxmox CT) or from files (tests), and the server's SSL_CTX. libc and
 * OpenSSL only, no agent state: the unit tests build it too. Module prefix: agent_tls_.
 */

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

/* The agent's credentials, DER. */
struct agent_tls_creds {
        uint8_t *cert, *key, *ca; /* malloc'd; the key is zeroed when freed */
        size_t cert_len, key_len, ca_len;
        char *listen; /* RUNT_AGENT_LISTEN's value, malloc'd, or NULL */
};

/*
 * Takes RUNT_AGENT_TLS_CERT, _KEY, _CA and RUNT_AGENT_LISTEN out of the environment: each
 * one found is decoded into @c (a value already in @c is replaced) and scrubbed: removed
 * from environ, and its "NAME=VALUE" bytes zeroed where they are, so that neither a child
 * nor /proc/PID/environ shows the key. Every one of them is scrubbed even when one is bad.
 * 0, or -EINVAL (a value that is not base64) / -ENOMEM with @msg filled.
 */
int agent_tls_env_take(struct agent_tls_creds *c, char *msg, size_t msg_size);

/*
 * Reads credential file @path (PEM, or the base64 of DER as in the environment; at most
 * 64 KiB) into the DER *@ret, *@ret_len. @what: 'c' a certificate, 'k' a private key.
 * 0 or -errno with @msg filled.
 */
int agent_tls_file_load(const char *path, char what, uint8_t **ret, size_t *ret_len, char *msg,
                        size_t msg_size);

/* Frees what @c holds (the key zeroed first) and clears it. */
void agent_tls_creds_done(struct agent_tls_creds *c);

/*
 * The server's SSL_CTX (ag_tls_ctx_setup's settings): @c's certificate and key, a client
 * certificate required, chaining to @c's CA, CN "runtd", clientAuth; anything else fails
 * the handshake. NULL with @msg filled when the credentials are missing or do not parse.
 */
SSL_CTX *agent_tls_ctx_new(const struct agent_tls_creds *c, char *msg, size_t msg_size);

/*
 * An SSL of that context may carry a char[AGENT_TLS_WHY_MAX] as its app data
 * (SSL_set_app_data, "" at first): the verification of the client's certificate writes why
 * it failed there.
 */
#define AGENT_TLS_WHY_MAX 160

/*
 * After a failed handshake on @ssl: why, in @buf (the verification failure of the client's
 * certificate, else OpenSSL's errors). Returns @buf.
 */
const char *agent_tls_why(SSL *ssl, char *buf, size_t size);
