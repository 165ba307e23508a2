#pragma once

/*
 * What both ends of the pod agent's TLS transport share (runtd's tls.c and runt-agent's
 * agent-tls.c): the names of the agent's environment, the checks of a peer's certificate,
 * base64, and OpenSSL's error queue as a message. libc and OpenSSL only (the static agent
 * builds this file). Module prefix: ag_tls_.
 *
 * The transport: TCP, TLS 1.3 only, mutual authentication with certificates issued by
 * runtd's own CA (tls.h). The agent's certificate names the pod (CN and a DNS SAN = the pod
 * id, serverAuth); runtd's names "runtd" (CN, clientAuth). Nothing else is accepted.
 */

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The agent's TCP port, unless RUNT_AGENT_LISTEN says another. */
#define AG_TLS_PORT 7443
/* The CN of runtd's client certificate, the only client the agent accepts. */
#define AG_TLS_CLIENT_CN "runtd"
/* The longest CN (X.509's ub-common-name): a pod id fits (64 hex digits). */
#define AG_TLS_CN_MAX 64

/*
 * The agent's environment (a Proxmox CT's `env`, which PVE keeps in a one-line config, so
 * the values have no newline): the base64 (RFC 4648, with padding, no line breaks) of the
 * DER of the agent's certificate, of its private key (PKCS#8), of runtd's CA certificate;
 * and the address to listen on, "IPV4:PORT" or "[IPV6]:PORT".
 */
#define AG_TLS_ENV_CERT   "RUNT_AGENT_TLS_CERT"
#define AG_TLS_ENV_KEY    "RUNT_AGENT_TLS_KEY"
#define AG_TLS_ENV_CA     "RUNT_AGENT_TLS_CA"
#define AG_TLS_ENV_LISTEN "RUNT_AGENT_LISTEN"

/*
 * Checks the certificate a peer showed (the chain to the CA is OpenSSL's to check): its
 * subject has exactly one CN and it is @cn; it has an extended key usage with serverAuth
 * (@server) or clientAuth (!@server) and not the other one, is not a CA; a server
 * certificate also has a DNS SAN equal to @cn and no other. 0, or -EACCES with why in
 * @why.
 */
int ag_tls_check_peer(X509 *cert, const char *cn, bool server, char *why, size_t why_size);

/*
 * Settings both ends' SSL_CTX get: TLS 1.3 only, no session tickets or cache (a new
 * connection always shows its certificate), partial writes from a buffer that may move
 * (the writers' queues grow while a write waits), an EOF without close_notify read as an
 * EOF, the certificate sent without its CA. 0, or -EPROTO when OpenSSL refuses one.
 */
int ag_tls_ctx_setup(SSL_CTX *ctx);

/* Length of the base64 of @n bytes (no NUL). */
size_t ag_tls_b64_len(size_t n);
/* Base64 of @n bytes into @out (ag_tls_b64_len(@n) + 1 bytes, NUL-terminated). */
void ag_tls_b64_encode(const uint8_t *in, size_t n, char *out);
/*
 * Decodes base64 @in (@n chars; padding required, no whitespace) into malloc'd
 * *@ret_out, *@ret_len bytes. 0, -EINVAL for anything that is not base64, -ENOMEM.
 */
int ag_tls_b64_decode(const char *in, size_t n, uint8_t **ret_out, size_t *ret_len);

/*
 * Empties this thread's OpenSSL error queue into @buf ("; "-separated reasons, or "" when
 * it was empty). Returns @buf.
 */
const char *ag_tls_errors(char *buf, size_t size);
