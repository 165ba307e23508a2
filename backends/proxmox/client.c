/* The Proxmox VE API client: see client.h. */
#define SH_LOG_MODULE "proxmox"
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "auth.h"
#include "cleanup.h"
#include "cluster.h"
#include "log.h"
#include "strutil.h"

#define POOL_MAX        8            /* idle curl handles kept, each with its connections */
#define REPLY_MAX       (16u << 20)  /* a reply body; PVE's largest lists are far smaller */
#define FORM_MAX        (512u << 10) /* PVE refuses bigger bodies, uploads apart (notes §6.13) */
#define BACKOFF_MAX_MS  5000
#define NODE_MAX        64
#define UPLOAD_WAIT_MS  (10u * 60 * 1000)
#define LOW_SPEED_BYTES 1024

struct node_mark {
        char node[NODE_MAX];
        unsigned long long until_ns;
};

/* How long tasks of one type took: see pve_task_hint. */
#define TASK_HINTS 16
struct task_hint {
        char type[32];
        unsigned ms;
};

struct pve_client {
        char **endpoints; /* "https://host:8006", no trailing '/' */
        size_t n_endpoints;
        char *auth;       /* "Authorization: PVEAPIToken=...": wiped when freed */
        char *token_file; /* for messages only */
        char *ca_file;
        uint8_t (*pins)[32];
        size_t n_pins;
        bool insecure;
        unsigned connect_timeout_ms, timeout_ms, retries, backoff_ms, node_recheck_ms;
        atomic_size_t good; /* the endpoint that answered last */
        atomic_ulong calls, retried;

        pthread_mutex_t lock; /* protects pool, n_pool, marks, n_marks, hints, n_hints */
        CURL *pool[POOL_MAX];
        size_t n_pool;
        struct node_mark *marks;
        size_t n_marks;
        struct task_hint hints[TASK_HINTS];
        size_t n_hints;
};

/*
 * Process-wide, once: curl_global_init (not thread-safe itself, so never called twice) and
 * the OpenSSL ex-data slot through which the verify callback finds its client.
 */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;
static int ssl_idx = -1;

static void global_init(void)
{
        global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
        ssl_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static unsigned long long now_ns(void)
{
        return sh_now_ns();
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void wipe_free(char *s)
{
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

/* The header list of one request: the Authorization line is wiped before it is freed. */
static void headers_free(struct curl_slist *l)
{
        for (struct curl_slist *i = l; i; i = i->next)
                if (i->data)
                        explicit_bzero(i->data, strlen(i->data));
        curl_slist_free_all(l);
}
SH_DEFINE_CLEANUP(struct curl_slist *, headers_free)

void pve_client_free(struct pve_client *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_pool; i++)
                curl_easy_cleanup(c->pool[i]);
        for (size_t i = 0; i < c->n_endpoints; i++)
                free(c->endpoints[i]);
        free(c->endpoints);
        wipe_free(c->auth);
        free(c->token_file);
        free(c->ca_file);
        free(c->pins);
        free(c->marks);
        pthread_mutex_destroy(&c->lock);
        free(c);
}
SH_DEFINE_CLEANUP(struct pve_client *, pve_client_free)

/* "https://host[:port]" with an optional trailing "/" or "/api2/json": the base, malloc'd. */
static int endpoint_parse(const char *s, char **ret, struct sh_error *err)
{
        size_t n = s ? strlen(s) : 0;

        if (n <= 8 || strncasecmp(s, "https://", 8) != 0)
                return sh_err(err, -EINVAL, "PVE endpoint '%s': not an https:// URL", s ? s : "");
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f || s[i] == '?' || s[i] == '#' ||
                    s[i] == '@')
                        return sh_err(err, -EINVAL,
                                      "PVE endpoint '%s': only https://HOST[:PORT] is allowed", s);
        while (n > 8 && s[n - 1] == '/')
                n--;
        if (n > 8 + 10 && strncmp(s + n - 10, "/api2/json", 10) == 0)
                n -= 10;
        if (memchr(s + 8, '/', n - 8))
                return sh_err(err, -EINVAL,
                              "PVE endpoint '%s': only https://HOST[:PORT] is allowed", s);
        *ret = strndup(s, n);
        return *ret ? 0 : -ENOMEM;
}

/* One or more fingerprints separated by commas or white space. */
static int pins_parse(struct pve_client *c, const char *s, struct sh_error *err)
{
        size_t n = 0;

        for (const char *p = s; *p;) {
                char one[128];
                size_t len = strcspn(p, ", \t\n");

                if (len == 0) {
                        p++;
                        continue;
                }
                if (len >= sizeof(one))
                        return sh_err(err, -EINVAL,
                                      "PVE fingerprint '%.*s...': not a SHA-256 "
                                      "fingerprint",
                                      20, p);
                memcpy(one, p, len);
                one[len] = 0;
                uint8_t(*grown)[32] = realloc(c->pins, (n + 1) * sizeof(*c->pins));

                if (!grown)
                        return -ENOMEM;
                c->pins = grown;
                if (pve_fingerprint_parse(one, c->pins[n]) < 0)
                        return sh_err(err, -EINVAL,
                                      "PVE fingerprint '%s': not a SHA-256 fingerprint "
                                      "(AB:CD:... 32 bytes, as pvenode cert info shows it)",
                                      one);
                n++;
                p += len;
        }
        if (!n)
                return sh_err(err, -EINVAL, "PVE fingerprint: empty");
        c->n_pins = n;
        return 0;
}

int pve_client_new(const struct pve_client_opts *o, struct pve_client **ret, struct sh_error *err)
{
        _cleanup_(pve_client_freep) struct pve_client *c = NULL;
        char *token = NULL;
        int r;

        pthread_once(&global_once, global_init);
        if (global_rc != CURLE_OK || ssl_idx < 0)
                return sh_err(err, -ENOMEM, "PVE client: libcurl: %s",
                              curl_easy_strerror(global_rc));
        if (!o->n_endpoints || !o->endpoints)
                return sh_err(err, -EINVAL, "PVE client: no endpoint");
        if (!o->token_file || !o->token_file[0])
                return sh_err(err, -EINVAL, "PVE client: no token file");
        if ((o->ca_file && o->fingerprint) || (o->insecure && (o->ca_file || o->fingerprint)))
                return sh_err(err, -EINVAL,
                              "PVE client: a CA file, a fingerprint and insecure exclude each "
                              "other");
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        c->endpoints = calloc(o->n_endpoints, sizeof(*c->endpoints));
        if (!c->endpoints)
                return -ENOMEM;
        for (size_t i = 0; i < o->n_endpoints; i++) {
                r = endpoint_parse(o->endpoints[i], &c->endpoints[i], err);
                if (r < 0)
                        return r;
                c->n_endpoints++;
        }
        if (o->fingerprint) {
                r = pins_parse(c, o->fingerprint, err);
                if (r < 0)
                        return r;
        }
        if (o->ca_file) {
                if (access(o->ca_file, R_OK) < 0)
                        return sh_err(err, -errno, "PVE CA file '%s': %s", o->ca_file,
                                      strerror(errno));
                c->ca_file = strdup(o->ca_file);
                if (!c->ca_file)
                        return -ENOMEM;
        }
        c->insecure = o->insecure;
        c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
        c->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
        c->retries = o->retries == UINT_MAX ? 0 : o->retries ? o->retries : 3;
        c->backoff_ms = o->backoff_ms ? o->backoff_ms : 200;
        c->node_recheck_ms = o->node_recheck_ms ? o->node_recheck_ms : 30000;
        c->token_file = strdup(o->token_file);
        if (!c->token_file)
                return -ENOMEM;
        r = pve_token_load(o->token_file, &token, err);
        if (r < 0)
                return r;
        c->auth = sh_strdup_printf("Authorization: %s", token);
        wipe_free(token);
        if (!c->auth)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

/* Handles ---------------------------------------------------------------------------------- */

static CURL *pool_get(struct pve_client *c)
{
        CURL *h = NULL;

        pthread_mutex_lock(&c->lock);
        if (c->n_pool)
                h = c->pool[--c->n_pool];
        pthread_mutex_unlock(&c->lock);
        /* Each request resets its handle, which keeps the live connections and TLS sessions. */
        return h ? h : curl_easy_init();
}

static void pool_put(struct pve_client *c, CURL *h)
{
        if (!h)
                return;
        pthread_mutex_lock(&c->lock);
        if (c->n_pool < POOL_MAX) {
                c->pool[c->n_pool++] = h;
                h = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        if (h)
                curl_easy_cleanup(h);
}

/* Node marks ------------------------------------------------------------------------------- */

/* The node of a path "/nodes/<node>[/...]" into @out; false for other paths. */
static bool path_node(const char *path, char out[NODE_MAX])
{
        size_t n;

        if (strncmp(path, "/nodes/", 7) != 0)
                return false;
        n = strcspn(path + 7, "/");
        if (!n || n >= NODE_MAX)
                return false;
        memcpy(out, path + 7, n);
        out[n] = 0;
        return true;
}

/* With c->lock held. */
static struct node_mark *mark_find(struct pve_client *c, const char *node)
{
        for (size_t i = 0; i < c->n_marks; i++)
                if (strcmp(c->marks[i].node, node) == 0)
                        return &c->marks[i];
        return NULL;
}

void pve_node_mark_unavailable(struct pve_client *c, const char *node, const char *why)
{
        struct node_mark *m;

        if (!node || strlen(node) >= NODE_MAX)
                return;
        pthread_mutex_lock(&c->lock);
        m = mark_find(c, node);
        if (!m) {
                struct node_mark *grown = realloc(c->marks, (c->n_marks + 1) * sizeof(*grown));

                if (grown) {
                        c->marks = grown;
                        m = &c->marks[c->n_marks++];
                        snprintf(m->node, sizeof(m->node), "%s", node);
                }
        }
        if (m)
                m->until_ns = now_ns() + (unsigned long long)c->node_recheck_ms * 1000000ULL;
        pthread_mutex_unlock(&c->lock);
        sh_log_debug("pve: node=%s marked unavailable for %u ms: %s", node, c->node_recheck_ms,
                     why ? why : "");
}

static void node_mark_clear(struct pve_client *c, const char *node)
{
        struct node_mark *m;

        pthread_mutex_lock(&c->lock);
        m = mark_find(c, node);
        if (m) {
                *m = c->marks[--c->n_marks];
                sh_log_debug("pve: node=%s available again", node);
        }
        pthread_mutex_unlock(&c->lock);
}

/* Milliseconds until @node may be called again; 0 when it may now. */
static unsigned node_wait_ms(struct pve_client *c, const char *node)
{
        unsigned long long now = now_ns(), left = 0;
        struct node_mark *m;

        pthread_mutex_lock(&c->lock);
        m = mark_find(c, node);
        if (m && m->until_ns > now)
                left = (m->until_ns - now) / 1000000ULL + 1;
        pthread_mutex_unlock(&c->lock);
        return (unsigned)left;
}

bool pve_node_available(struct pve_client *c, const char *node)
{
        return node && node_wait_ms(c, node) == 0;
}

unsigned pve_task_hint(struct pve_client *c, const char *type, unsigned def_ms)
{
        unsigned ms = def_ms;

        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->n_hints; i++)
                if (strcmp(c->hints[i].type, type) == 0) {
                        ms = c->hints[i].ms;
                        break;
                }
        pthread_mutex_unlock(&c->lock);
        return ms;
}

void pve_task_hint_set(struct pve_client *c, const char *type, unsigned ms)
{
        size_t i;

        if (strlen(type) >= sizeof(c->hints[0].type))
                return;
        pthread_mutex_lock(&c->lock);
        for (i = 0; i < c->n_hints && strcmp(c->hints[i].type, type) != 0; i++)
                ;
        if (i == c->n_hints && c->n_hints < TASK_HINTS)
                snprintf(c->hints[c->n_hints++].type, sizeof(c->hints[0].type), "%s", type);
        if (i < c->n_hints)
                c->hints[i].ms = ms;
        pthread_mutex_unlock(&c->lock);
}

unsigned long pve_client_calls(struct pve_client *c)
{
        return atomic_load(&c->calls);
}

unsigned long pve_client_retries(struct pve_client *c)
{
        return atomic_load(&c->retried);
}

/* TLS pinning ------------------------------------------------------------------------------ */

static bool pin_match(const struct pve_client *c, X509 *cert)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;

        if (!cert || !X509_digest(cert, EVP_sha256(), md, &n) || n != 32)
                return false;
        for (size_t i = 0; i < c->n_pins; i++)
                if (CRYPTO_memcmp(md, c->pins[i], 32) == 0)
                        return true;
        return false;
}

/*
 * OpenSSL's verify callback in fingerprint mode, as pve-apiclient's verify_cert_callback:
 * the leaf certificate must match a pin, and that is the whole trust decision, so what the
 * chain lacks (an issuer nobody here trusts, a self-signed CA) is forgiven. The error is
 * cleared when accepting, so the handshake's verify result is OK.
 */
static int verify_cb(int preverify_ok, X509_STORE_CTX *store)
{
        SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
        const struct pve_client *c =
                ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ssl_idx) : NULL;

        (void)preverify_ok;
        if (!c)
                return 0;
        if (X509_STORE_CTX_get_error_depth(store) > 0) {
                X509_STORE_CTX_set_error(store, X509_V_OK);
                return 1;
        }
        if (pin_match(c, X509_STORE_CTX_get_current_cert(store))) {
                X509_STORE_CTX_set_error(store, X509_V_OK);
                return 1;
        }
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
}

/* CURLOPT_SSL_CTX_FUNCTION: runs for each new connection, before its handshake. */
static CURLcode on_ssl_ctx(CURL *h, void *sslctx, void *userdata)
{
        (void)h;
        if (!SSL_CTX_set_ex_data(sslctx, ssl_idx, userdata))
                return CURLE_OUT_OF_MEMORY;
        SSL_CTX_set_verify(sslctx, SSL_VERIFY_PEER, verify_cb);
        return CURLE_OK;
}

/* One request's state. */
struct xfer {
        struct pve_client *c;
        CURL *h;
        long http;
        char reason[256]; /* the status line's reason phrase */
        char *body;
        size_t len, cap;
        bool too_big;
        bool oom;
        bool pin_mismatch;
};

/*
 * CURLOPT_PREREQFUNCTION: the connection is up (new or reused) and the request not yet sent.
 * In fingerprint mode the peer's certificate is checked again here, so no request (and no
 * token) ever leaves on a connection whose certificate was not the pinned one, whatever
 * path the handshake took (a resumed session, a verify callback OpenSSL did not call).
 */
static int on_prereq(void *userdata, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
        struct xfer *x = userdata;
        struct curl_tlssessioninfo *info = NULL;

        (void)primary_ip;
        (void)local_ip;
        (void)primary_port;
        (void)local_port;
        if (!x->c->n_pins)
                return CURL_PREREQFUNC_OK;
        if (curl_easy_getinfo(x->h, CURLINFO_TLS_SSL_PTR, &info) != CURLE_OK || !info ||
            info->backend != CURLSSLBACKEND_OPENSSL || !info->internals ||
            !pin_match(x->c, SSL_get0_peer_certificate(info->internals))) {
                x->pin_mismatch = true;
                return CURL_PREREQFUNC_ABORT;
        }
        return CURL_PREREQFUNC_OK;
}

/*
 * The status line, "HTTP/1.1 595 No route to host": before libpve-http-server-perl 5.2.0
 * its reason phrase is the only text of an error (notes §1). The last one counts (after a
 * 100 Continue).
 */
static size_t on_header(char *buf, size_t size, size_t n, void *userdata)
{
        struct xfer *x = userdata;
        size_t len = size * n, at = 0, m = 0;

        if (len < 5 || memcmp(buf, "HTTP/", 5) != 0)
                return len;
        while (at < len && buf[at] != ' ')
                at++;
        while (at < len && buf[at] == ' ')
                at++;
        while (at < len && buf[at] >= '0' && buf[at] <= '9')
                at++;
        if (at < len && buf[at] == ' ')
                at++;
        while (at < len && buf[at] != '\r' && buf[at] != '\n' && m + 1 < sizeof(x->reason))
                x->reason[m++] = buf[at++];
        x->reason[m] = 0;
        return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *userdata)
{
        struct xfer *x = userdata;
        size_t len = size * n;

        if (x->len + len + 1 > x->cap) {
                size_t cap = x->cap ? x->cap : 4096;
                char *grown;

                while (cap < x->len + len + 1)
                        cap *= 2;
                if (cap > REPLY_MAX + 1) {
                        x->too_big = true;
                        return 0;
                }
                grown = realloc(x->body, cap);
                if (!grown) {
                        x->oom = true;
                        return 0;
                }
                x->body = grown;
                x->cap = cap;
        }
        memcpy(x->body + x->len, buf, len);
        x->len += len;
        x->body[x->len] = 0;
        return len;
}

/* Requests --------------------------------------------------------------------------------- */

struct req {
        const char *method;
        const char *path;  /* for messages */
        const char *query; /* "" or "?k=v&..." */
        const char *body;  /* POST, PUT */
        size_t body_len;
        const char *upload_file, *upload_name, *upload_content; /* a multipart upload */
};

/* k=v&k=v with both URL-encoded; malloc'd. */
static int form_encode(const struct pve_param *p, size_t n, char **ret, size_t *ret_len)
{
        _cleanup_free_ char *out = NULL;
        size_t len = 0, cap = 0;

        for (size_t i = 0; i < n; i++) {
                char *k, *v = NULL;
                size_t kl, vl = 0, need;

                if (!p[i].key || !p[i].key[0] || (!p[i].value && p[i].len))
                        return -EINVAL;
                if (strlen(p[i].key) > INT_MAX || p[i].len > INT_MAX)
                        return -E2BIG;
                k = curl_easy_escape(NULL, p[i].key, (int)strlen(p[i].key));
                /* curl_easy_escape takes a length of 0 as "use strlen". */
                if (p[i].len)
                        v = curl_easy_escape(NULL, p[i].value, (int)p[i].len);
                if (!k || (p[i].len && !v)) {
                        curl_free(k);
                        curl_free(v);
                        return -ENOMEM;
                }
                kl = strlen(k);
                vl = v ? strlen(v) : 0;
                need = len + (i ? 1 : 0) + kl + 1 + vl + 1;
                if (need > cap) {
                        size_t grown_cap = cap ? cap * 2 : 256;
                        char *grown;

                        while (grown_cap < need)
                                grown_cap *= 2;
                        grown = realloc(out, grown_cap);
                        if (!grown) {
                                curl_free(k);
                                curl_free(v);
                                return -ENOMEM;
                        }
                        out = grown;
                        cap = grown_cap;
                }
                if (i)
                        out[len++] = '&';
                memcpy(out + len, k, kl);
                len += kl;
                out[len++] = '=';
                if (vl)
                        memcpy(out + len, v, vl);
                len += vl;
                out[len] = 0;
                curl_free(k);
                curl_free(v);
        }
        if (!out) {
                out = strdup("");
                if (!out)
                        return -ENOMEM;
        }
        *ret_len = len;
        *ret = TAKE_PTR(out);
        return 0;
}

char *pve_escape(const char *s)
{
        char *e = curl_easy_escape(NULL, s ? s : "", s ? (int)strnlen(s, INT_MAX) : 0);
        char *r = e ? strdup(e) : NULL;

        curl_free(e);
        return r;
}

static void xfer_reset(struct xfer *x)
{
        free(x->body);
        *x = (struct xfer){.c = x->c, .h = x->h};
}

/*
 * A curl failure: its errno and whether the request surely never left (so another endpoint
 * or a retry cannot do it twice).
 */
static int curl_errno(CURLcode rc, bool *not_sent)
{
        switch ((int)rc) { /* a table of a few of curl's many codes */
        case CURLE_COULDNT_RESOLVE_HOST:
                *not_sent = true;
                return -EHOSTUNREACH;
        case CURLE_COULDNT_CONNECT:
                *not_sent = true;
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_SSL_CONNECT_ERROR:
                *not_sent = true;
                return -EPROTO;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
                return -EPROTO;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

/*
 * One request to one endpoint. 0 when an HTTP reply came (x->http, x->reason, x->body), else
 * -errno with the message; *@again when another endpoint or a later try may do better
 * (nothing was sent, or the request is a GET).
 */
static int perform(struct pve_client *c, const char *endpoint, const struct req *rq, struct xfer *x,
                   bool *again, struct sh_error *err)
{
        _cleanup_(headers_freep) struct curl_slist *hdrs = NULL;
        _cleanup_free_ char *url = NULL;
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_mime *mime = NULL;
        struct curl_slist *l;
        curl_off_t sent = 0;
        CURLcode rc;
        CURL *h = x->h;
        bool not_sent = false;
        int r;

        *again = false;
        url = sh_strdup_printf("%s/api2/json%s%s", endpoint, rq->path, rq->query);
        if (!url)
                return -ENOMEM;
        l = curl_slist_append(NULL, c->auth);
        if (l)
                hdrs = l;
        l = l ? curl_slist_append(hdrs, "Expect:") : NULL; /* no 100-continue round trip */
        l = l ? curl_slist_append(hdrs, "Accept: application/json") : NULL;
        if (!l)
                return -ENOMEM;

        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_PROXY, ""); /* none from the environment */
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        /* HTTP/2 has no reason phrase, and that is where old servers put the error. */
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, ""); /* PVE gzips replies over 1 KiB */
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
        if (rq->upload_file) {
                /* A big file takes long: no total timeout, but no stall either. */
                curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, (long)LOW_SPEED_BYTES);
                curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)(c->timeout_ms / 1000 + 1));
        } else {
                curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
        }
        if (c->insecure) {
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        } else if (c->n_pins) {
                /* The pin replaces the chain and the host name (see verify_cb). */
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
                curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
                curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, c);
                curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, on_prereq);
                curl_easy_setopt(h, CURLOPT_PREREQDATA, x);
        } else {
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
                if (c->ca_file) {
                        /* The cluster's CA alone, not the system's as well. */
                        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
                        curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
                }
        }
        if (rq->upload_file) {
                curl_mimepart *part;

                mime = curl_mime_init(h);
                part = mime ? curl_mime_addpart(mime) : NULL;
                if (part) {
                        curl_mime_name(part, "content");
                        curl_mime_data(part, rq->upload_content, CURL_ZERO_TERMINATED);
                        part = curl_mime_addpart(mime);
                }
                /* The file last: PVE reads the parameters before the file's bytes. */
                if (!part || curl_mime_name(part, "filename") != CURLE_OK ||
                    curl_mime_filedata(part, rq->upload_file) != CURLE_OK ||
                    curl_mime_filename(part, rq->upload_name) != CURLE_OK ||
                    curl_mime_type(part, "application/octet-stream") != CURLE_OK) {
                        curl_mime_free(mime);
                        return -ENOMEM;
                }
                curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
        } else if (strcmp(rq->method, "POST") == 0 || strcmp(rq->method, "PUT") == 0) {
                /* A known size: a Content-Length, never a chunked body (PVE refuses those). */
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body);
                if (rq->method[1] == 'U')
                        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
        } else if (strcmp(rq->method, "DELETE") == 0) {
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
        } else {
                curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        }

        atomic_fetch_add(&c->calls, 1);
        rc = curl_easy_perform(h);
        curl_easy_setopt(h, CURLOPT_MIMEPOST, NULL);
        curl_mime_free(mime);
        /* Nothing of this request may outlive it in the handle: the header list is wiped. */
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        if (rc == CURLE_OK) {
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &x->http);
                return 0;
        }
        if (curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent) != CURLE_OK)
                sent = 1;
        if (x->pin_mismatch || (c->n_pins && rc == CURLE_PEER_FAILED_VERIFICATION))
                return sh_err(err, -EPROTO,
                              "%s %s: %s: the server's certificate matches no pinned "
                              "fingerprint",
                              rq->method, rq->path, endpoint);
        if (x->too_big)
                return sh_err(err, -EFBIG, "%s %s: %s: a reply over %u bytes", rq->method, rq->path,
                              endpoint, REPLY_MAX);
        if (x->oom)
                return -ENOMEM;
        if (rc == CURLE_READ_ERROR && rq->upload_file)
                return sh_err(err, -EIO, "%s %s: reading '%s': %s", rq->method, rq->path,
                              rq->upload_file, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        r = curl_errno(rc, &not_sent);
        if (sent == 0)
                not_sent = true;
        /* A request sent and lost is only repeated when repeating it cannot do harm. */
        *again = r != -EPROTO || rc == CURLE_SSL_CONNECT_ERROR;
        *again = *again && (not_sent || (strcmp(rq->method, "GET") == 0 && r != -ETIMEDOUT));
        if (r == -ETIMEDOUT)
                return sh_err(err, r, "%s %s: %s: %s after %u ms", rq->method, rq->path, endpoint,
                              not_sent ? "no connection" : "no reply",
                              not_sent ? c->connect_timeout_ms : c->timeout_ms);
        return sh_err(err, r, "%s %s: %s: %s", rq->method, rq->path, endpoint,
                      errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

/* pve_reply_parse's "PVE: HTTP 500 text" as "METHOD PATH: text". */
static int reply_error(struct pve_client *c, int r, const struct req *rq, long http,
                       const struct sh_error *inner, struct sh_error *err)
{
        char head[32];
        const char *text = inner->msg;
        int n = snprintf(head, sizeof(head), "PVE: HTTP %ld", http);

        if (n > 0 && strncmp(text, head, (size_t)n) == 0) {
                text += n;
                if (*text == ' ')
                        text++;
        }
        if (!*text) {
                snprintf(head, sizeof(head), "HTTP %ld", http);
                text = head;
        }
        if (http == 401)
                return sh_err(err, r, "%s %s: %s (the API token from '%s' was refused)", rq->method,
                              rq->path, text, c->token_file);
        return sh_err(err, r, "%s %s: %s", rq->method, rq->path, text);
}

/*
 * One try: the endpoints in turn from the last good one, until one answers. 0 with the reply
 * in @ret, or -errno; *@again when a later try may help (no endpoint reached, or a 595/596).
 */
static int attempt(struct pve_client *c, const struct req *rq, struct xfer *x,
                   struct pve_reply *ret, bool *again, struct sh_error *err)
{
        size_t start = atomic_load(&c->good) % c->n_endpoints;
        struct sh_error inner = {0};
        int r = -EIO;

        *again = false;
        for (size_t k = 0; k < c->n_endpoints; k++) {
                size_t i = (start + k) % c->n_endpoints;

                xfer_reset(x);
                r = perform(c, c->endpoints[i], rq, x, again, err);
                if (r == 0) {
                        atomic_store(&c->good, i);
                        break;
                }
                if (!*again)
                        return r;
        }
        if (r < 0)
                return r;
        r = pve_reply_parse((int)x->http, x->reason, x->body, x->len, ret, &inner);
        if (r < 0) {
                *again = ret->retry;
                return reply_error(c, r, rq, x->http, &inner, err);
        }
        return 0;
}

static int call(struct pve_client *c, const struct req *rq, struct pve_reply *ret,
                struct sh_error *err)
{
        struct pve_reply reply = {0};
        struct xfer x = {.c = c};
        char node[NODE_MAX];
        bool on_node = path_node(rq->path, node);
        unsigned delay = c->backoff_ms, wait;
        unsigned long long t0 = now_ns();
        int r;

        if (on_node && (wait = node_wait_ms(c, node)) > 0)
                return sh_err(err, -EHOSTUNREACH,
                              "%s %s: node '%s' is unavailable (PVE could not reach it); it is "
                              "tried again in %u s",
                              rq->method, rq->path, node, (wait + 999) / 1000);
        x.h = pool_get(c);
        if (!x.h)
                return -ENOMEM;
        for (unsigned n = 0;; n++) {
                bool again = false;

                pve_reply_done(&reply);
                r = attempt(c, rq, &x, &reply, &again, err);
                if (r >= 0 || !again || n >= c->retries)
                        break;
                sleep_ms(delay);
                delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
                atomic_fetch_add(&c->retried, 1);
        }
        sh_log_debug("pve: %s %s -> %ld (%d) in %llu ms", rq->method, rq->path, x.http, r,
                     (now_ns() - t0) / 1000000ULL);
        if (on_node && x.http) {
                if (r < 0 && reply.retry) {
                        pve_node_mark_unavailable(c, node, x.reason);
                        if (err) {
                                char msg[sizeof(err->msg)];

                                snprintf(msg, sizeof(msg), "%s", err->msg);
                                sh_err(err, r, "%s (node '%s' marked unavailable)", msg, node);
                        }
                } else {
                        node_mark_clear(c, node);
                }
        }
        free(x.body);
        pool_put(c, x.h);
        if (r < 0) {
                pve_reply_done(&reply);
                return r;
        }
        if (ret)
                *ret = reply;
        else
                pve_reply_done(&reply);
        return 0;
}

static bool path_ok(const char *path)
{
        if (!path || path[0] != '/')
                return false;
        for (const char *p = path; *p; p++)
                if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '?' || *p == '#')
                        return false;
        return true;
}

int pve_call_params(struct pve_client *c, const char *method, const char *path,
                    const struct pve_param *params, size_t n, struct pve_reply *ret,
                    struct sh_error *err)
{
        _cleanup_free_ char *form = NULL, *query = NULL;
        struct req rq = {.method = method, .path = path, .query = ""};
        bool body;
        size_t len = 0;
        int r;

        if (!method || (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 &&
                        strcmp(method, "PUT") != 0 && strcmp(method, "DELETE") != 0))
                return sh_err(err, -EINVAL,
                              "PVE call: method '%s' is not one of GET, POST, "
                              "PUT, DELETE",
                              method ? method : "");
        if (!path_ok(path))
                return sh_err(err, -EINVAL, "PVE call %s: bad path '%s'", method, path ? path : "");
        body = method[0] == 'P';
        r = form_encode(params, params ? n : 0, &form, &len);
        if (r < 0)
                return sh_err(err, r, "%s %s: %s", method, path,
                              r == -EINVAL ? "a parameter without a name" : "parameters too long");
        if (body) {
                if (len > FORM_MAX)
                        return sh_err(err, -E2BIG, "%s %s: a body of %zu bytes, over PVE's %u",
                                      method, path, len, FORM_MAX);
                rq.body = form;
                rq.body_len = len;
        } else if (len) {
                query = sh_strdup_printf("?%s", form);
                if (!query)
                        return -ENOMEM;
                rq.query = query;
        }
        return call(c, &rq, ret, err);
}

int pve_call(struct pve_client *c, const char *method, const char *path, const char *const *params,
             struct pve_reply *ret, struct sh_error *err)
{
        _cleanup_free_ struct pve_param *p = NULL;
        size_t n = 0;

        while (params && params[n])
                n++;
        if (n % 2)
                return sh_err(err, -EINVAL, "%s %s: parameter '%s' without a value",
                              method ? method : "", path ? path : "", params[n - 1]);
        if (n) {
                p = calloc(n / 2, sizeof(*p));
                if (!p)
                        return -ENOMEM;
                for (size_t i = 0; i < n / 2; i++)
                        p[i] = (struct pve_param){params[2 * i], params[2 * i + 1],
                                                  strlen(params[2 * i + 1])};
        }
        return pve_call_params(c, method, path, p, n / 2, ret, err);
}

int pve_callf(struct pve_client *c, const char *method, const char *const *params,
              struct pve_reply *ret, struct sh_error *err, const char *fmt, ...)
{
        char path[1024];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(path, sizeof(path), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(path))
                return sh_err(err, -ENAMETOOLONG, "PVE call %s: path too long", method);
        return pve_call(c, method, path, params, ret, err);
}

int pve_upload(struct pve_client *c, const char *node, const char *storage, const char *content,
               const char *file, const char *name, unsigned timeout_ms, struct sh_error *err)
{
        _cleanup_close_ int fd = -EBADF;
        struct pve_reply reply = {0};
        struct stat st;
        char path[256];
        struct req rq = {.method = "POST", .path = path, .query = ""};
        int r;

        if (!node || !storage || !content || !file || !name || !name[0] || strchr(name, '/') ||
            strchr(name, '"') || strpbrk(name, "\r\n"))
                return sh_err(err, -EINVAL, "PVE upload: bad arguments");
        if ((size_t)snprintf(path, sizeof(path), "/nodes/%s/storage/%s/upload", node, storage) >=
            sizeof(path))
                return sh_err(err, -ENAMETOOLONG, "PVE upload: node or storage name too long");
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return sh_err(err, -errno, "PVE upload: '%s': %s", file, strerror(errno));
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return sh_err(err, -EINVAL, "PVE upload: '%s' is not a regular file", file);
        rq.upload_file = file;
        rq.upload_name = name;
        rq.upload_content = content;
        r = call(c, &rq, &reply, err);
        if (r < 0)
                return r;
        if (!reply.data || !json_object_is_type(reply.data, json_type_string)) {
                pve_reply_done(&reply);
                return sh_err(err, -EPROTO, "POST %s: no task id in the reply", path);
        }
        r = pve_task_wait(c, json_object_get_string(reply.data),
                          timeout_ms ? timeout_ms : UPLOAD_WAIT_MS, err);
        pve_reply_done(&reply);
        if (r < 0)
                return sh_err_prefix(err, r, "upload of '%s' to %s on %s", name, storage, node);
        return 0;
}
