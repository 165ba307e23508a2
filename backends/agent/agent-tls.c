/*
 * runt-agent's end of the TLS transport (agent-tls.h): credentials and the server context.
 * The handshakes and the connection's I/O are agent-main.c's.
 */
#include "agent-tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls-common.h"

extern char **environ;

void agent_tls_creds_done(struct agent_tls_creds *c)
{
        if (c->key)
                explicit_bzero(c->key, c->key_len);
        free(c->cert);
        free(c->key);
        free(c->ca);
        free(c->listen);
        memset(c, 0, sizeof(*c));
}

static int take_one(const char *entry, const char *name, struct agent_tls_creds *c, char *msg,
                    size_t msize)
{
        const char *v = entry + strlen(name) + 1;
        uint8_t **dst = NULL, *der = NULL;
        size_t *dst_len = NULL, len = 0;
        int r;

        if (strcmp(name, AG_TLS_ENV_LISTEN) == 0) {
                char *s = strdup(v);

                if (!s) {
                        snprintf(msg, msize, "%s: out of memory", name);
                        return -ENOMEM;
                }
                free(c->listen);
                c->listen = s;
                return 0;
        }
        if (strcmp(name, AG_TLS_ENV_CERT) == 0)
                dst = &c->cert, dst_len = &c->cert_len;
        else if (strcmp(name, AG_TLS_ENV_KEY) == 0)
                dst = &c->key, dst_len = &c->key_len;
        else
                dst = &c->ca, dst_len = &c->ca_len;
        r = ag_tls_b64_decode(v, strlen(v), &der, &len);
        if (r < 0) {
                snprintf(msg, msize, "%s: %s", name,
                         r == -EINVAL ? "not base64 (of DER)" : "out of memory");
                return r;
        }
        if (*dst && dst == &c->key)
                explicit_bzero(*dst, *dst_len);
        free(*dst);
        *dst = der;
        *dst_len = len;
        return 0;
}

int agent_tls_env_take(struct agent_tls_creds *c, char *msg, size_t msize)
{
        static const char *const names[] = {AG_TLS_ENV_CERT, AG_TLS_ENV_KEY, AG_TLS_ENV_CA,
                                            AG_TLS_ENV_LISTEN};
        int ret = 0;

        if (!environ)
                return 0;
        for (size_t i = 0; environ[i];) {
                char *e = environ[i];
                const char *name = NULL;

                for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
                        size_t n = strlen(names[k]);

                        if (strncmp(e, names[k], n) == 0 && e[n] == '=')
                                name = names[k];
                }
                if (!name) {
                        i++;
                        continue;
                }
                if (ret == 0) {
                        int r = take_one(e, name, c, msg, msize);

                        if (r < 0)
                                ret = r;
                }
                /*
                 * Zeroed in place: the first environment a process gets is what
                 * /proc/PID/environ reads, whatever environ points to later.
                 */
                explicit_bzero(e, strlen(e));
                for (size_t j = i; environ[j]; j++)
                        environ[j] = environ[j + 1];
        }
        return ret;
}

int agent_tls_file_load(const char *path, char what, uint8_t **ret, size_t *ret_len, char *msg,
                        size_t msize)
{
        char buf[65536 + 1];
        size_t len = 0;
        struct stat st;
        int fd, r = 0;
        BIO *bio;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                r = -errno;
        else if (fstat(fd, &st) < 0)
                r = -errno;
        else if (!S_ISREG(st.st_mode))
                r = -EINVAL;
        else if (st.st_size >= (off_t)sizeof(buf))
                r = -EFBIG;
        if (r < 0) {
                snprintf(msg, msize, "%s: %s", path,
                         r == -EINVAL ? "not a regular file" : strerror(-r));
                if (fd >= 0)
                        close(fd);
                return r;
        }
        while (len < sizeof(buf) - 1) {
                ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : 0;
                        break;
                }
                len += (size_t)n;
        }
        close(fd);
        buf[len] = '\0';
        if (r < 0) {
                snprintf(msg, msize, "%s: %s", path, strerror(-r));
                goto out;
        }
        if (!strstr(buf, "-----BEGIN ")) {
                while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
                        buf[--len] = '\0';
                r = ag_tls_b64_decode(buf, len, ret, ret_len);
                if (r < 0)
                        snprintf(msg, msize, "%s: neither PEM nor the base64 of DER", path);
                goto out;
        }
        bio = BIO_new_mem_buf(buf, (int)len);
        r = -EINVAL;
        if (bio && what == 'c') {
                X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
                unsigned char *der = NULL;
                int n = x ? i2d_X509(x, &der) : -1;

                if (n > 0) {
                        *ret = malloc((size_t)n);
                        if (*ret) {
                                memcpy(*ret, der, (size_t)n);
                                *ret_len = (size_t)n;
                        }
                        r = *ret ? 0 : -ENOMEM;
                }
                OPENSSL_free(der);
                X509_free(x);
        } else if (bio) {
                EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
                unsigned char *der = NULL;
                int n = k ? i2d_PrivateKey(k, &der) : -1;

                if (n > 0) {
                        *ret = malloc((size_t)n);
                        if (*ret) {
                                memcpy(*ret, der, (size_t)n);
                                *ret_len = (size_t)n;
                        }
                        r = *ret ? 0 : -ENOMEM;
                        OPENSSL_clear_free(der, (size_t)n);
                }
                EVP_PKEY_free(k);
        }
        BIO_free(bio);
        if (r < 0) {
                char e[256];

                snprintf(msg, msize, "%s: not a PEM %s (%s)", path,
                         what == 'c' ? "certificate" : "private key", ag_tls_errors(e, sizeof(e)));
        }
out:
        explicit_bzero(buf, sizeof(buf));
        return r;
}

/* Where the verification of a handshake puts why it failed (the SSL's app data). */
static void why_set(X509_STORE_CTX *x, const char *s)
{
        SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
        char *why = ssl ? SSL_get_app_data(ssl) : NULL;

        if (why && !why[0])
                snprintf(why, AGENT_TLS_WHY_MAX, "client certificate: %s", s);
}

static int verify_client(int ok, X509_STORE_CTX *x)
{
        char why[160];

        if (!ok) {
                why_set(x, X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
                return 0;
        }
        if (X509_STORE_CTX_get_error_depth(x) > 0)
                return 1;
        if (ag_tls_check_peer(X509_STORE_CTX_get_current_cert(x), AG_TLS_CLIENT_CN, false, why,
                              sizeof(why)) < 0) {
                X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
                why_set(x, why);
                return 0;
        }
        return 1;
}

const char *agent_tls_why(SSL *ssl, char *buf, size_t size)
{
        const char *why = SSL_get_app_data(ssl);
        char e[256];

        ag_tls_errors(e, sizeof(e));
        if (why && why[0])
                snprintf(buf, size, "%s", why);
        else
                snprintf(buf, size, "%s", e[0] ? e : "connection closed");
        return buf;
}

static X509 *der_cert(const uint8_t *d, size_t n)
{
        const unsigned char *p = d;
        X509 *x = n ? d2i_X509(NULL, &p, (long)n) : NULL;

        if (x && p != d + n) {
                X509_free(x);
                return NULL;
        }
        return x;
}

SSL_CTX *agent_tls_ctx_new(const struct agent_tls_creds *c, char *msg, size_t msize)
{
        const unsigned char *p = c->key;
        EVP_PKEY *key = NULL;
        X509 *cert = NULL, *ca = NULL;
        SSL_CTX *ctx = NULL;
        char e[256];

        if (!c->cert || !c->key || !c->ca) {
                snprintf(msg, msize, "no TLS credentials (%s, %s, %s)", AG_TLS_ENV_CERT,
                         AG_TLS_ENV_KEY, AG_TLS_ENV_CA);
                return NULL;
        }
        cert = der_cert(c->cert, c->cert_len);
        ca = der_cert(c->ca, c->ca_len);
        key = d2i_AutoPrivateKey(NULL, &p, (long)c->key_len);
        if (!cert || !ca || !key) {
                snprintf(msg, msize, "TLS credentials: the %s is not DER (%s)",
                         !cert ? "certificate"
                         : !ca ? "CA certificate"
                               : "private key",
                         ag_tls_errors(e, sizeof(e)));
                goto out;
        }
        ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx || ag_tls_ctx_setup(ctx) < 0 || SSL_CTX_use_certificate(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1 ||
            X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca) != 1) {
                snprintf(msg, msize, "TLS context: %s", ag_tls_errors(e, sizeof(e)));
                SSL_CTX_free(ctx);
                ctx = NULL;
                goto out;
        }
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_client);
out:
        X509_free(cert);
        X509_free(ca);
        EVP_PKEY_free(key);
        return ctx;
}
