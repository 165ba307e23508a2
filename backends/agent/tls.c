/*
 * runtd's end of the agent's TLS transport (tls.h): the CA, certificates, the client
 * context and connections.
 *
 * The socket BIO here is OpenSSL's plain one but for send(MSG_NOSIGNAL): OpenSSL's write(2)
 * would raise SIGPIPE on a connection the agent reset, and the client promises never to.
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "tls-internal.h"

#define CA_FILE_MAX    (64u << 10)
#define RENEW_BEFORE_S (30 * 86400)
#define WHY_MAX        160

struct ag_tls_ca {
        EVP_PKEY *key;
        X509 *cert;
        uint8_t *der;
        size_t der_len;
};

struct ag_tls_client {
        const struct ag_tls_ca *ca;
        pthread_mutex_t lock; /* ctx and not_after */
        SSL_CTX *ctx;
        time_t renew_at;
};

struct ag_tls_conn {
        int fd;
        SSL *ssl;
        bool failed; /* a fatal error: no close_notify */
};

static void X509_freep(X509 **p)
{
        X509_free(*p);
        *p = NULL;
}
static void EVP_PKEY_freep(EVP_PKEY **p)
{
        EVP_PKEY_free(*p);
        *p = NULL;
}
static void BIO_freep(BIO **p)
{
        BIO_free(*p);
        *p = NULL;
}

/* OpenSSL's errors as the message of @err, after "@what: ". */
static int ossl_err(struct sh_error *err, int code, const char *what)
{
        char e[256];

        ag_tls_errors(e, sizeof(e));
        return sh_err(err, code, "%s: %s", what, e[0] ? e : "failed");
}

static bool cn_ok(const char *cn)
{
        size_t n = cn ? strlen(cn) : 0;

        if (n == 0 || n > AG_TLS_CN_MAX)
                return false;
        for (const char *c = cn; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                      (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-'))
                        return false;
        return true;
}

/* ---- certificates ---- */

static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
        int ok = e && X509_add_ext(x, e, -1);

        X509_EXTENSION_free(e);
        return ok ? 0 : -EINVAL;
}

static int set_serial(X509 *x)
{
        unsigned char raw[16];
        BIGNUM *bn;
        int ok;

        if (RAND_bytes(raw, sizeof(raw)) != 1)
                return -EIO;
        raw[0] = (raw[0] & 0x7f) | 0x40; /* positive, and 16 bytes long */
        bn = BN_bin2bn(raw, sizeof(raw), NULL);
        ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
        BN_free(bn);
        return ok ? 0 : -ENOMEM;
}

/*
 * A certificate for @key named @cn: self-signed by @key when @ca_key is NULL (the CA),
 * else issued by @ca_cert/@ca_key as @role. *@ret on success.
 */
static int make_cert(EVP_PKEY *key, const char *cn, unsigned days, EVP_PKEY *ca_key, X509 *ca_cert,
                     enum ag_tls_role role, X509 **ret)
{
        _cleanup_(X509_freep) X509 *x = X509_new();
        X509_NAME *name = X509_NAME_new();
        X509V3_CTX v3;
        char san[8 + AG_TLS_CN_MAX];
        int r = 0;

        if (!x || !name) {
                X509_NAME_free(name);
                return -ENOMEM;
        }
        if (!X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                        (const unsigned char *)cn, -1, -1, 0) ||
            !X509_set_subject_name(x, name) ||
            !X509_set_issuer_name(x, ca_cert ? X509_get_subject_name(ca_cert) : name))
                r = -EINVAL;
        X509_NAME_free(name);
        if (r < 0)
                return r;
        if (!X509_set_version(x, X509_VERSION_3) || set_serial(x) < 0 ||
            !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
            !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) ||
            !X509_set_pubkey(x, key))
                return -EINVAL;
        X509V3_set_ctx(&v3, ca_cert ? ca_cert : x, x, NULL, NULL, 0);
        if (!ca_key) {
                r = add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
                if (r == 0)
                        r = add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
        } else {
                r = add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE");
                if (r == 0)
                        r = add_ext(x, &v3, NID_key_usage, "critical,digitalSignature");
                if (r == 0)
                        r = add_ext(x, &v3, NID_ext_key_usage,
                                    role == AG_TLS_AGENT ? "serverAuth" : "clientAuth");
                if (r == 0 && role == AG_TLS_AGENT) {
                        /* cn_ok: no ',' to add another name with */
                        snprintf(san, sizeof(san), "DNS:%s", cn);
                        r = add_ext(x, &v3, NID_subject_alt_name, san);
                }
        }
        if (r == 0)
                r = add_ext(x, &v3, NID_subject_key_identifier, "hash");
        if (r == 0)
                r = add_ext(x, &v3, NID_authority_key_identifier, "keyid:always");
        if (r < 0)
                return r;
        if (!X509_sign(x, ca_key ? ca_key : key, EVP_sha256()))
                return -EINVAL;
        *ret = TAKE_PTR(x);
        return 0;
}

static int der_of_cert(X509 *x, uint8_t **ret, size_t *ret_len)
{
        unsigned char *der = NULL;
        int n = i2d_X509(x, &der);

        if (n <= 0)
                return -ENOMEM;
        *ret = malloc((size_t)n);
        if (*ret) {
                memcpy(*ret, der, (size_t)n);
                *ret_len = (size_t)n;
        }
        OPENSSL_free(der);
        return *ret ? 0 : -ENOMEM;
}

static int der_of_key(EVP_PKEY *k, uint8_t **ret, size_t *ret_len)
{
        PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(k);
        unsigned char *der = NULL;
        int n = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;

        PKCS8_PRIV_KEY_INFO_free(p8);
        if (n <= 0)
                return -ENOMEM;
        *ret = malloc((size_t)n);
        if (*ret) {
                memcpy(*ret, der, (size_t)n);
                *ret_len = (size_t)n;
        }
        OPENSSL_clear_free(der, (size_t)n);
        return *ret ? 0 : -ENOMEM;
}

void ag_tls_cred_done(struct ag_tls_cred *c)
{
        if (c->key)
                explicit_bzero(c->key, c->key_len);
        free(c->key);
        free(c->cert);
        memset(c, 0, sizeof(*c));
}

int ag_tls_issue(const struct ag_tls_ca *ca, enum ag_tls_role role, const char *cn, unsigned days,
                 struct ag_tls_cred *ret, struct sh_error *err)
{
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        _cleanup_(X509_freep) X509 *x = NULL;
        struct ag_tls_cred c = {0};
        int r;

        if (!cn_ok(cn))
                return sh_err(err, -EINVAL,
                              "certificate name '%.80s': want 1 to %d of [A-Za-z0-9._-]",
                              cn ? cn : "", AG_TLS_CN_MAX);
        key = EVP_EC_gen("P-256");
        if (!key)
                return ossl_err(err, -ENOMEM, "certificate: key");
        r = make_cert(key, cn, days ? days : AG_TLS_CERT_DAYS, ca->key, ca->cert, role, &x);
        if (r < 0)
                return ossl_err(err, r, "certificate: signing");
        r = der_of_cert(x, &c.cert, &c.cert_len);
        if (r == 0)
                r = der_of_key(key, &c.key, &c.key_len);
        if (r < 0) {
                ag_tls_cred_done(&c);
                return sh_err(err, r, "certificate for '%s': out of memory", cn);
        }
        *ret = c;
        return 0;
}

/* ---- the CA ---- */

void ag_tls_ca_free(struct ag_tls_ca *ca)
{
        if (!ca)
                return;
        EVP_PKEY_free(ca->key);
        X509_free(ca->cert);
        free(ca->der);
        free(ca);
}

const uint8_t *ag_tls_ca_cert(const struct ag_tls_ca *ca, size_t *ret_len)
{
        *ret_len = ca->der_len;
        return ca->der;
}

static int ca_load(int dfd, const char *dir, struct ag_tls_ca *ca, struct sh_error *err)
{
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        _cleanup_(BIO_freep) BIO *kb = NULL, *cb = NULL;
        size_t len = 0;
        struct stat st;
        int r;

        fd = openat(dfd, AG_TLS_CA_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0 && errno == ENOENT)
                return -ENOENT;
        if (fd < 0 || fstat(fd, &st) < 0)
                return sh_err(err, -errno, "%s/%s", dir, AG_TLS_CA_FILE);
        if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
                return sh_err(err, -EPERM,
                              "%s/%s: must be a regular file of uid %u with mode 0600 (it holds "
                              "the agent CA's key)",
                              dir, AG_TLS_CA_FILE, (unsigned)geteuid());
        if (st.st_size > (off_t)CA_FILE_MAX)
                return sh_err(err, -EFBIG, "%s/%s: too big", dir, AG_TLS_CA_FILE);
        buf = malloc(CA_FILE_MAX + 1);
        if (!buf)
                return sh_err(err, -ENOMEM, "agent CA");
        while (len < CA_FILE_MAX) {
                ssize_t n = read(fd, buf + len, CA_FILE_MAX - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        explicit_bzero(buf, len);
                        return sh_err(err, r, "%s/%s: read", dir, AG_TLS_CA_FILE);
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        kb = BIO_new_mem_buf(buf, (int)len);
        cb = BIO_new_mem_buf(buf, (int)len);
        if (kb && cb) {
                ca->key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
                ca->cert = PEM_read_bio_X509(cb, NULL, NULL, NULL);
        }
        explicit_bzero(buf, len);
        if (!ca->key || !ca->cert)
                return ossl_err(err, -EINVAL, "agent CA file: no PEM private key and certificate");
        if (X509_check_private_key(ca->cert, ca->key) != 1 || X509_check_ca(ca->cert) != 1)
                return ossl_err(err, -EINVAL, "agent CA file: not a CA with its key");
        if (X509_cmp_current_time(X509_get0_notAfter(ca->cert)) <= 0)
                return sh_err(err, -EKEYEXPIRED, "%s/%s: the agent CA has expired", dir,
                              AG_TLS_CA_FILE);
        r = der_of_cert(ca->cert, &ca->der, &ca->der_len);
        return r < 0 ? sh_err(err, r, "agent CA") : 0;
}

static int write_all(int fd, const char *p, size_t n)
{
        while (n) {
                ssize_t w = write(fd, p, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* Makes a CA and links its file into place: -EEXIST when another was there first. */
static int ca_create(int dfd, const char *dir, struct sh_error *err)
{
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        _cleanup_(X509_freep) X509 *x = NULL;
        _cleanup_(BIO_freep) BIO *mem = NULL;
        _cleanup_close_ int fd = -EBADF;
        unsigned char tag[4];
        char cn[64], tmp[64];
        char *data;
        long len;
        int r;

        if (RAND_bytes(tag, sizeof(tag)) != 1)
                return ossl_err(err, -EIO, "agent CA: random");
        snprintf(cn, sizeof(cn), "runt agent CA %02x%02x%02x%02x", tag[0], tag[1], tag[2], tag[3]);
        key = EVP_EC_gen("P-256");
        if (!key)
                return ossl_err(err, -ENOMEM, "agent CA: key");
        r = make_cert(key, cn, AG_TLS_CA_DAYS, NULL, NULL, AG_TLS_AGENT, &x);
        if (r < 0)
                return ossl_err(err, r, "agent CA: certificate");
        mem = BIO_new(BIO_s_secmem());
        if (!mem || !PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL) ||
            !PEM_write_bio_X509(mem, x))
                return ossl_err(err, -ENOMEM, "agent CA: PEM");
        len = BIO_get_mem_data(mem, &data);
        snprintf(tmp, sizeof(tmp), ".%s.%d.%02x%02x%02x%02x", AG_TLS_CA_FILE, (int)getpid(), tag[0],
                 tag[1], tag[2], tag[3]);
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) /* not -EEXIST: that is the caller's "another CA won" */
                return sh_err(err, errno == EEXIST ? -EAGAIN : -errno, "%s/%s", dir, tmp);
        r = fchmod(fd, 0600) < 0 ? -errno : 0;
        if (r == 0)
                r = write_all(fd, data, (size_t)len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r == 0 && linkat(dfd, tmp, dfd, AG_TLS_CA_FILE, 0) < 0)
                r = -errno;
        unlinkat(dfd, tmp, 0);
        if (r == -EEXIST)
                return r;
        if (r < 0)
                return sh_err(err, r, "%s/%s: writing", dir, AG_TLS_CA_FILE);
        fsync(dfd);
        return 0;
}

int ag_tls_ca_open(const char *dir, struct ag_tls_ca **ret, struct sh_error *err)
{
        _cleanup_close_ int dfd = -EBADF;
        struct ag_tls_ca *ca;
        int r;

        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return sh_err(err, -errno, "agent CA directory %s", dir);
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return sh_err(err, -errno, "agent CA directory %s", dir);
        ca = calloc(1, sizeof(*ca));
        if (!ca)
                return sh_err(err, -ENOMEM, "agent CA");
        r = ca_load(dfd, dir, ca, err);
        if (r == -ENOENT) {
                r = ca_create(dfd, dir, err);
                if (r == 0 || r == -EEXIST)
                        r = ca_load(dfd, dir, ca, err);
                if (r == -ENOENT)
                        r = sh_err(err, r, "%s/%s: gone after it was made", dir, AG_TLS_CA_FILE);
        }
        if (r < 0) {
                ag_tls_ca_free(ca);
                return r;
        }
        *ret = ca;
        return 0;
}

/* ---- the agent's environment ---- */

void ag_tls_env_free(char **env)
{
        if (!env)
                return;
        for (char **e = env; *e; e++) {
                explicit_bzero(*e, strlen(*e));
                free(*e);
        }
        free(env);
}

static bool listen_ok(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > 64)
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') ||
                      (*c >= 'A' && *c <= 'F') || *c == '.' || *c == ':' || *c == '[' ||
                      *c == ']' || *c == '%'))
                        return false;
        return strrchr(s, ':') != NULL;
}

static char *env_b64(const char *name, const uint8_t *d, size_t n)
{
        size_t nl = strlen(name);
        char *s = malloc(nl + 1 + ag_tls_b64_len(n) + 1);

        if (!s)
                return NULL;
        memcpy(s, name, nl);
        s[nl] = '=';
        ag_tls_b64_encode(d, n, s + nl + 1);
        return s;
}

int ag_tls_agent_env(const struct ag_tls_ca *ca, const char *pod_id, const char *listen,
                     unsigned days, char ***ret_env, struct sh_error *err)
{
        struct ag_tls_cred c = {0};
        char def[32], **env;
        int r;

        if (!listen) {
                snprintf(def, sizeof(def), "0.0.0.0:%d", AG_TLS_PORT);
                listen = def;
        }
        if (!listen_ok(listen))
                return sh_err(err, -EINVAL,
                              "agent listen address '%.80s': want IPV4:PORT or "
                              "[IPV6]:PORT",
                              listen);
        r = ag_tls_issue(ca, AG_TLS_AGENT, pod_id, days, &c, err);
        if (r < 0)
                return sh_err_prefix(err, r, "agent certificate of pod %.80s", pod_id);
        env = calloc(5, sizeof(*env));
        if (env) {
                env[0] = env_b64(AG_TLS_ENV_CERT, c.cert, c.cert_len);
                env[1] = env[0] ? env_b64(AG_TLS_ENV_KEY, c.key, c.key_len) : NULL;
                env[2] = env[1] ? env_b64(AG_TLS_ENV_CA, ca->der, ca->der_len) : NULL;
                if (env[2] && asprintf(&env[3], "%s=%s", AG_TLS_ENV_LISTEN, listen) < 0)
                        env[3] = NULL;
        }
        ag_tls_cred_done(&c);
        if (!env || !env[3]) {
                ag_tls_env_free(env);
                return sh_err(err, -ENOMEM, "agent environment");
        }
        *ret_env = env;
        return 0;
}

/* ---- a socket BIO that never raises SIGPIPE ---- */

struct nsbio {
        int fd;
        bool eof;
};

static int nsbio_write(BIO *b, const char *buf, int n)
{
        struct nsbio *d = BIO_get_data(b);
        ssize_t w = send(d->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);

        BIO_clear_retry_flags(b);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
                BIO_set_retry_write(b);
        return w < 0 ? -1 : (int)w;
}

static int nsbio_read(BIO *b, char *buf, int n)
{
        struct nsbio *d = BIO_get_data(b);
        ssize_t r = recv(d->fd, buf, (size_t)n, MSG_DONTWAIT);

        BIO_clear_retry_flags(b);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
                BIO_set_retry_read(b);
        if (r == 0)
                d->eof = true;
        return r < 0 ? -1 : (int)r;
}

static long nsbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
        struct nsbio *d = BIO_get_data(b);

        (void)num;
        (void)ptr;
        switch (cmd) {
        case BIO_CTRL_FLUSH:
                return 1;
        case BIO_CTRL_EOF: /* SSL_OP_IGNORE_UNEXPECTED_EOF asks */
                return d && d->eof;
        default:
                return 0;
        }
}

static int nsbio_destroy(BIO *b)
{
        free(BIO_get_data(b));
        BIO_set_data(b, NULL);
        return 1;
}

static BIO_METHOD *nsbio_method;
static pthread_once_t nsbio_once = PTHREAD_ONCE_INIT;

static void nsbio_init(void)
{
        BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "runt-socket");

        if (m && BIO_meth_set_write(m, nsbio_write) && BIO_meth_set_read(m, nsbio_read) &&
            BIO_meth_set_ctrl(m, nsbio_ctrl) && BIO_meth_set_destroy(m, nsbio_destroy))
                nsbio_method = m;
        else
                BIO_meth_free(m);
}

static BIO *nsbio_new(int fd)
{
        struct nsbio *d;
        BIO *b;

        pthread_once(&nsbio_once, nsbio_init);
        if (!nsbio_method)
                return NULL;
        d = calloc(1, sizeof(*d));
        b = d ? BIO_new(nsbio_method) : NULL;
        if (!b) {
                free(d);
                return NULL;
        }
        d->fd = fd;
        BIO_set_data(b, d);
        BIO_set_init(b, 1);
        return b;
}

/* ---- runtd's client ---- */

/* What a handshake's verification knows (the SSL's app data). */
struct hs_info {
        const char *pod_id;
        char why[WHY_MAX];
};

static int verify_agent(int ok, X509_STORE_CTX *x)
{
        SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
        struct hs_info *hi = ssl ? SSL_get_app_data(ssl) : NULL;
        char why[WHY_MAX];

        if (!hi)
                return 0;
        if (!ok) {
                if (!hi->why[0])
                        snprintf(hi->why, sizeof(hi->why), "the agent's certificate: %s",
                                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
                return 0;
        }
        if (X509_STORE_CTX_get_error_depth(x) > 0)
                return 1;
        if (ag_tls_check_peer(X509_STORE_CTX_get_current_cert(x), hi->pod_id, true, why,
                              sizeof(why)) < 0) {
                X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
                snprintf(hi->why, sizeof(hi->why), "the agent's certificate: %s", why);
                return 0;
        }
        return 1;
}

/* A new context with a new client certificate; *@ret_renew_at when to make the next. */
static int client_ctx(const struct ag_tls_ca *ca, SSL_CTX **ret, time_t *ret_renew_at,
                      struct sh_error *err)
{
        struct ag_tls_cred c = {0};
        const unsigned char *p;
        EVP_PKEY *key = NULL;
        X509 *cert = NULL;
        SSL_CTX *ctx;
        int r;

        r = ag_tls_issue(ca, AG_TLS_RUNTD, AG_TLS_CLIENT_CN, AG_TLS_CERT_DAYS, &c, err);
        if (r < 0)
                return sh_err_prefix(err, r, "runtd's agent client certificate");
        p = c.cert;
        cert = d2i_X509(NULL, &p, (long)c.cert_len);
        p = c.key;
        key = d2i_AutoPrivateKey(NULL, &p, (long)c.key_len);
        ag_tls_cred_done(&c);
        ctx = SSL_CTX_new(TLS_client_method());
        if (!cert || !key || !ctx || ag_tls_ctx_setup(ctx) < 0 ||
            SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
            X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca->cert) != 1) {
                r = ossl_err(err, -EPROTO, "agent TLS client context");
                SSL_CTX_free(ctx);
                ctx = NULL;
        }
        X509_free(cert);
        EVP_PKEY_free(key);
        if (!ctx)
                return r;
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_agent);
        *ret = ctx;
        *ret_renew_at = time(NULL) + (time_t)AG_TLS_CERT_DAYS * 86400 - RENEW_BEFORE_S;
        return 0;
}

int ag_tls_client_new(const struct ag_tls_ca *ca, struct ag_tls_client **ret, struct sh_error *err)
{
        struct ag_tls_client *cl = calloc(1, sizeof(*cl));
        int r;

        if (!cl)
                return sh_err(err, -ENOMEM, "agent TLS client");
        r = client_ctx(ca, &cl->ctx, &cl->renew_at, err);
        if (r < 0) {
                free(cl);
                return r;
        }
        cl->ca = ca;
        pthread_mutex_init(&cl->lock, NULL);
        *ret = cl;
        return 0;
}

void ag_tls_client_free(struct ag_tls_client *cl)
{
        if (!cl)
                return;
        SSL_CTX_free(cl->ctx);
        pthread_mutex_destroy(&cl->lock);
        free(cl);
}

/* The current context, a reference the caller drops; renewed when due. */
static SSL_CTX *client_ctx_get(struct ag_tls_client *cl)
{
        SSL_CTX *ctx;

        pthread_mutex_lock(&cl->lock);
        if (time(NULL) >= cl->renew_at) {
                time_t at;

                if (client_ctx(cl->ca, &ctx, &at, NULL) == 0) {
                        SSL_CTX_free(cl->ctx);
                        cl->ctx = ctx;
                        cl->renew_at = at;
                }
                /* else: the old one still serves until it expires */
        }
        ctx = cl->ctx;
        SSL_CTX_up_ref(ctx);
        pthread_mutex_unlock(&cl->lock);
        return ctx;
}

/* ---- connections ---- */

static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll() for @events until @deadline (-1: none): 1 ready, 0 timed out, -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
        for (;;) {
                struct pollfd p = {.fd = fd, .events = events};
                int64_t left = deadline < 0 ? -1 : deadline - mono_ms();
                int n;

                if (deadline >= 0 && left <= 0)
                        return 0;
                n = poll(&p, 1, left < 0 ? -1 : left > 60000 ? 60000 : (int)left);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n > 0)
                        return 1;
        }
}

int64_t ag_tls_conn_peer_until(const struct ag_tls_conn *t)
{
        X509 *x = t && t->ssl ? SSL_get0_peer_certificate(t->ssl) : NULL;
        struct tm tm;

        if (!x || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
                return 0;
        return (int64_t)timegm(&tm);
}

void ag_tls_conn_free(struct ag_tls_conn *t)
{
        if (!t)
                return;
        if (t->ssl && !t->failed && SSL_is_init_finished(t->ssl)) {
                ERR_clear_error();
                (void)SSL_shutdown(t->ssl);
        }
        ERR_clear_error();
        SSL_free(t->ssl);
        if (t->fd >= 0)
                close(t->fd);
        free(t);
}

/* A failed handshake step: the error code and message. */
static int hs_fail(struct ag_tls_conn *t, const struct hs_info *hi, int ssl_err, const char *pod_id,
                   struct sh_error *err)
{
        int sys = errno, alert = -1, r = -EPROTO;
        unsigned long e = ERR_peek_error();
        char msg[256];

        t->failed = true;
        if (ssl_err == SSL_ERROR_SSL && ERR_GET_LIB(e) == ERR_LIB_SSL &&
            ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET)
                alert = ERR_GET_REASON(e) - SSL_AD_REASON_OFFSET;
        ag_tls_errors(msg, sizeof(msg));
        if (hi->why[0]) {
                r = -EACCES;
                snprintf(msg, sizeof(msg), "%s", hi->why);
        } else if (alert == SSL3_AD_BAD_CERTIFICATE || alert == SSL3_AD_UNSUPPORTED_CERTIFICATE ||
                   alert == SSL3_AD_CERTIFICATE_REVOKED || alert == SSL3_AD_CERTIFICATE_EXPIRED ||
                   alert == SSL3_AD_CERTIFICATE_UNKNOWN || alert == TLS1_AD_UNKNOWN_CA ||
                   alert == TLS1_AD_ACCESS_DENIED || alert == TLS13_AD_CERTIFICATE_REQUIRED) {
                r = -EACCES;
                snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
                         " (the agent refused runtd's certificate)");
        } else if (ssl_err == SSL_ERROR_ZERO_RETURN ||
                   (ssl_err == SSL_ERROR_SYSCALL &&
                    (sys == 0 || sys == ECONNRESET || sys == EPIPE))) {
                r = -ECONNRESET;
                snprintf(msg, sizeof(msg), "the agent closed the connection");
        } else if (ssl_err == SSL_ERROR_SYSCALL) {
                r = -sys;
                snprintf(msg, sizeof(msg), "%s", strerror(sys));
        }
        return sh_err(err, r, "TLS with the agent of pod %s: %s", pod_id,
                      msg[0] ? msg : "handshake failed");
}

int ag_tls_handshake(struct ag_tls_client *cl, int fd, const char *pod_id, unsigned timeout_ms,
                     struct ag_tls_conn **ret, struct sh_error *err)
{
        int64_t deadline = timeout_ms ? mono_ms() + timeout_ms : -1;
        struct ag_tls_conn *t;
        struct hs_info hi = {.pod_id = pod_id};
        bool connected = false;
        SSL_CTX *ctx;
        BIO *bio;
        int fl;

        if (!cn_ok(pod_id)) {
                close(fd);
                return sh_err(err, -EINVAL, "agent TLS: bad pod id");
        }
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
                int r = -errno;

                close(fd);
                return sh_err(err, r, "agent TLS: fcntl");
        }
        t = calloc(1, sizeof(*t));
        if (!t) {
                close(fd);
                return sh_err(err, -ENOMEM, "agent TLS");
        }
        t->fd = fd;
        ctx = client_ctx_get(cl);
        t->ssl = SSL_new(ctx);
        SSL_CTX_free(ctx);
        bio = t->ssl ? nsbio_new(fd) : NULL;
        if (!bio) {
                int r = ossl_err(err, -ENOMEM, "agent TLS: connection");

                ag_tls_conn_free(t);
                return r;
        }
        SSL_set_bio(t->ssl, bio, bio);
        SSL_set_app_data(t->ssl, &hi);
        SSL_set_connect_state(t->ssl);
        /*
         * The handshake, then a peek at the first application bytes: with TLS 1.3 the client
         * is done before the server has checked its certificate, and a refusal arrives as
         * an alert instead of them.
         */
        for (;;) {
                char c;
                int n, e, w;

                ERR_clear_error();
                errno = 0;
                n = connected ? SSL_peek(t->ssl, &c, 1) : SSL_do_handshake(t->ssl);
                if (n > 0 && connected)
                        break;
                if (n > 0) {
                        connected = true;
                        continue;
                }
                e = SSL_get_error(t->ssl, n);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                        int r = hs_fail(t, &hi, e, pod_id, err);

                        SSL_set_app_data(t->ssl, NULL);
                        ag_tls_conn_free(t);
                        return r;
                }
                w = wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
                if (w <= 0) {
                        t->failed = true;
                        SSL_set_app_data(t->ssl, NULL);
                        ag_tls_conn_free(t);
                        if (w == 0)
                                return sh_err(err, -ETIMEDOUT,
                                              "TLS with the agent of pod %s: no %s in %u ms",
                                              pod_id, connected ? "READY" : "handshake",
                                              timeout_ms);
                        return sh_err(err, w, "agent TLS: poll");
                }
        }
        SSL_set_app_data(t->ssl, NULL);
        *ret = t;
        return 0;
}

static void tcp_tune(int fd)
{
        int one = 1, idle = 30, intvl = 10, cnt = 3;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* A non-blocking connect to @ai until @deadline: the fd, or -errno. */
static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
        _cleanup_close_ int fd =
                socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        socklen_t len = sizeof(int);
        int w, e = 0;

        if (fd < 0)
                return -errno;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
                return TAKE_FD(fd);
        if (errno != EINPROGRESS)
                return -errno;
        w = wait_fd(fd, POLLOUT, deadline);
        if (w <= 0)
                return w == 0 ? -ETIMEDOUT : w;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
                return -errno;
        if (e)
                return -e;
        return TAKE_FD(fd);
}

int ag_dial_tls(struct ag_tls_client *cl, const char *host, uint16_t port, const char *pod_id,
                unsigned timeout_ms, struct ag_tls_conn **ret, struct sh_error *err)
{
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
        int64_t deadline = timeout_ms ? mono_ms() + timeout_ms : -1;
        struct addrinfo *ai = NULL;
        char ports[8], h[256];
        int fd = -ECONNREFUSED, g;
        const char *bare = host;

        /* "[v6]" as well as "v6" */
        if (host[0] == '[' && strlen(host) < sizeof(h) && host[strlen(host) - 1] == ']') {
                snprintf(h, sizeof(h), "%.*s", (int)strlen(host) - 2, host + 1);
                bare = h;
        }
        snprintf(ports, sizeof(ports), "%u", port);
        g = getaddrinfo(bare, ports, &hints, &ai);
        if (g != 0)
                return sh_err(err, g == EAI_SYSTEM ? -errno : -EHOSTUNREACH,
                              "agent of pod %s: %s: %s", pod_id, host, gai_strerror(g));
        for (struct addrinfo *a = ai; a; a = a->ai_next) {
                fd = connect_one(a, deadline);
                if (fd >= 0 || fd == -ETIMEDOUT)
                        break;
        }
        freeaddrinfo(ai);
        if (fd < 0)
                return sh_err(err, fd, "agent of pod %s: connect to %s port %u: %s", pod_id, host,
                              port, fd == -ETIMEDOUT ? "timed out" : strerror(-fd));
        tcp_tune(fd);
        if (deadline >= 0) {
                int64_t left = deadline - mono_ms();

                timeout_ms = left > 1 ? (unsigned)left : 1;
        }
        return ag_tls_handshake(cl, fd, pod_id, timeout_ms, ret, err);
}

/* ---- I/O (tls-internal.h) ---- */

int ag_tls_conn_fd(const struct ag_tls_conn *t)
{
        return t->fd;
}

static ssize_t io_result(struct ag_tls_conn *t, int n, bool reading, short *ret_want)
{
        int e = SSL_get_error(t->ssl, n);

        switch (e) {
        case SSL_ERROR_WANT_READ:
                *ret_want = POLLIN;
                errno = EAGAIN;
                return -1;
        case SSL_ERROR_WANT_WRITE:
                *ret_want = POLLOUT;
                errno = EAGAIN;
                return -1;
        case SSL_ERROR_ZERO_RETURN:
                if (reading)
                        return 0;
                errno = EPIPE;
                return -1;
        case SSL_ERROR_SYSCALL:
                t->failed = true;
                if (errno == 0 || errno == EAGAIN)
                        errno = ECONNRESET;
                return -1;
        default:
                t->failed = true;
                ERR_clear_error();
                errno = EPROTO;
                return -1;
        }
}

ssize_t ag_tls_conn_read(struct ag_tls_conn *t, void *buf, size_t n, short *ret_want)
{
        int r;

        ERR_clear_error();
        errno = 0;
        r = SSL_read(t->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
        return r > 0 ? r : io_result(t, r, true, ret_want);
}

ssize_t ag_tls_conn_write(struct ag_tls_conn *t, const void *buf, size_t n, short *ret_want)
{
        int r;

        ERR_clear_error();
        errno = 0;
        r = SSL_write(t->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
        return r > 0 ? r : io_result(t, r, false, ret_want);
}

bool ag_tls_conn_pending(const struct ag_tls_conn *t)
{
        return SSL_pending(t->ssl) > 0;
}
