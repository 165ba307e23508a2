/* The TLS pieces both ends of the agent transport share (tls-common.h). */
#include "tls-common.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ag_tls_check_peer(X509 *cert, const char *cn, bool server, char *why, size_t why_size)
{
        X509_NAME *subj = X509_get_subject_name(cert);
        uint32_t want = server ? XKU_SSL_SERVER : XKU_SSL_CLIENT;
        uint32_t other = server ? XKU_SSL_CLIENT : XKU_SSL_SERVER;
        GENERAL_NAMES *sans;
        char got[AG_TLS_CN_MAX + 1] = "";
        int idx, r = 0;

        idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
        if (idx < 0 || X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0) {
                snprintf(why, why_size, "the certificate has %s CN",
                         idx < 0 ? "no" : "more than one");
                return -EACCES;
        }
        {
                const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
                int n = ASN1_STRING_length(s);
                const unsigned char *d = ASN1_STRING_get0_data(s);

                if (n <= 0 || n > AG_TLS_CN_MAX || memchr(d, 0, (size_t)n) ||
                    (size_t)n != strlen(cn) || memcmp(d, cn, (size_t)n) != 0) {
                        if (n > 0 && n <= AG_TLS_CN_MAX)
                                memcpy(got, d, (size_t)n);
                        for (char *c = got; *c; c++)
                                if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                                        *c = '?';
                        snprintf(why, why_size, "the certificate's CN is '%s', not '%s'", got, cn);
                        return -EACCES;
                }
        }
        /* X509_get_extension_flags computes the cached extensions, EXFLAG_INVALID included. */
        if (X509_get_extension_flags(cert) & EXFLAG_INVALID) {
                snprintf(why, why_size, "the certificate has invalid extensions");
                return -EACCES;
        }
        if (X509_check_ca(cert) != 0) {
                snprintf(why, why_size, "the certificate is a CA's");
                return -EACCES;
        }
        if (!(X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) ||
            !(X509_get_extended_key_usage(cert) & want) ||
            (X509_get_extended_key_usage(cert) & other)) {
                snprintf(why, why_size, "the certificate is not for TLS %s authentication only",
                         server ? "server" : "client");
                return -EACCES;
        }
        if (!server)
                return 0;
        sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
        if (!sans || sk_GENERAL_NAME_num(sans) != 1) {
                r = -EACCES;
        } else {
                const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, 0);
                const ASN1_IA5STRING *dns = g->type == GEN_DNS ? g->d.dNSName : NULL;

                if (!dns || (size_t)ASN1_STRING_length(dns) != strlen(cn) ||
                    memcmp(ASN1_STRING_get0_data(dns), cn, strlen(cn)) != 0)
                        r = -EACCES;
        }
        GENERAL_NAMES_free(sans);
        if (r < 0)
                snprintf(why, why_size, "the certificate's subjectAltName is not DNS:%s alone", cn);
        return r;
}

int ag_tls_ctx_setup(SSL_CTX *ctx)
{
        if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
            !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
                return -EPROTO;
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                         SSL_OP_NO_RENEGOTIATION);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        if (!SSL_CTX_set_num_tickets(ctx, 0))
                return -EPROTO;
        /* NO_AUTO_CHAIN: a peer sends its certificate alone, the CA is the other's already. */
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                      SSL_MODE_NO_AUTO_CHAIN);
        /*
         * No read-ahead (the default, relied on): OpenSSL then reads a record at a time and
         * holds no whole record unread, so poll() is right but for the decrypted bytes a read
         * left over (SSL_pending), which both ends check. SSL_has_pending would also count a
         * partial record, and waiting for its rest without poll() spins.
         */
        SSL_CTX_set_read_ahead(ctx, 0);
        /* Certificates are one CA and one leaf: nothing deeper is ours. */
        SSL_CTX_set_verify_depth(ctx, 1);
        return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ag_tls_b64_len(size_t n)
{
        return (n + 2) / 3 * 4;
}

void ag_tls_b64_encode(const uint8_t *in, size_t n, char *out)
{
        size_t i, o = 0;

        for (i = 0; i + 2 < n; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

                out[o++] = b64[v >> 18];
                out[o++] = b64[(v >> 12) & 63];
                out[o++] = b64[(v >> 6) & 63];
                out[o++] = b64[v & 63];
        }
        if (i < n) {
                uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);

                out[o++] = b64[v >> 18];
                out[o++] = b64[(v >> 12) & 63];
                out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
                out[o++] = '=';
        }
        out[o] = '\0';
}

static int b64_val(char c)
{
        const char *p = c ? strchr(b64, c) : NULL;

        return p ? (int)(p - b64) : -1;
}

int ag_tls_b64_decode(const char *in, size_t n, uint8_t **ret_out, size_t *ret_len)
{
        size_t pad = 0, o = 0;
        uint8_t *out;

        if (n == 0 || n % 4)
                return -EINVAL;
        if (in[n - 1] == '=')
                pad = in[n - 2] == '=' ? 2 : 1;
        out = malloc(n / 4 * 3);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i += 4) {
                bool last = i + 4 == n;
                int v[4];

                for (int k = 0; k < 4; k++) {
                        v[k] = b64_val(in[i + k]);
                        /* '=' only as the padding of the last quantum */
                        if (v[k] < 0 && !(last && in[i + k] == '=' && k >= 4 - (int)pad))
                                goto bad;
                }
                out[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
                if (!last || pad < 2)
                        out[o++] = (uint8_t)((v[1] & 15) << 4 | v[2] >> 2);
                else if (v[1] & 15)
                        goto bad; /* not canonical */
                if (!last || pad < 1)
                        out[o++] = (uint8_t)((v[2] & 3) << 6 | v[3]);
                else if (pad == 1 && (v[2] & 3))
                        goto bad;
        }
        *ret_out = out;
        *ret_len = o;
        return 0;
bad:
        free(out);
        return -EINVAL;
}

const char *ag_tls_errors(char *buf, size_t size)
{
        size_t off = 0;
        unsigned long e;

        if (size)
                buf[0] = '\0';
        while ((e = ERR_get_error()) != 0) {
                const char *reason = ERR_reason_error_string(e);
                char tmp[64];

                if (!reason) {
                        snprintf(tmp, sizeof(tmp), "error %lx", e);
                        reason = tmp;
                }
                if (off < size) {
                        int n = snprintf(buf + off, size - off, "%s%s", off ? "; " : "", reason);

                        off += n > 0 ? (size_t)n : 0;
                }
        }
        return buf;
}
