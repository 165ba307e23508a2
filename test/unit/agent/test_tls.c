/*
 * Unit tests of the agent's TLS pieces: runtd's CA and certificates (backends/agent/tls.c),
 * the agent's credentials and server context (agent-tls.c), and handshakes between the two
 * over socketpairs, the agent's end on a thread. Which certificates each side refuses: a
 * wrong CA, a wrong pod id, a certificate of the other role, none at all, TLS 1.2.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent-tls.h"
#include "client.h"
#include "error.h"
#include "proto.h"
#include "tls-common.h"
#include "tls-internal.h"
#include "tls.h"

extern char **environ;

struct fix {
        char dir[64];
        char ca1_dir[96], ca2_dir[96];
        struct ag_tls_ca *ca1, *ca2;
        struct ag_tls_client *cl1;
};

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(p);
}

static int setup(void **state)
{
        struct fix *f = calloc(1, sizeof(*f));
        struct sh_error err = {0};

        snprintf(f->dir, sizeof(f->dir), "/tmp/runt-tls-test.XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->ca1_dir, sizeof(f->ca1_dir), "%s/ca1", f->dir);
        snprintf(f->ca2_dir, sizeof(f->ca2_dir), "%s/ca2", f->dir);
        if (ag_tls_ca_open(f->ca1_dir, &f->ca1, &err) < 0 ||
            ag_tls_ca_open(f->ca2_dir, &f->ca2, &err) < 0 ||
            ag_tls_client_new(f->ca1, &f->cl1, &err) < 0) {
                fprintf(stderr, "setup: %s\n", err.msg);
                return -1;
        }
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fix *f = *state;

        ag_tls_client_free(f->cl1);
        ag_tls_ca_free(f->ca1);
        ag_tls_ca_free(f->ca2);
        nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

/* ---- the CA ---- */

static void test_ca_reload(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_ca *again = NULL;
        const uint8_t *a, *b;
        size_t al, bl;
        char path[160];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", f->ca1_dir, AG_TLS_CA_FILE);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(stat(f->ca1_dir, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        /* a restart finds the same CA */
        assert_int_equal(ag_tls_ca_open(f->ca1_dir, &again, &err), 0);
        a = ag_tls_ca_cert(f->ca1, &al);
        b = ag_tls_ca_cert(again, &bl);
        assert_int_equal(al, bl);
        assert_memory_equal(a, b, al);
        ag_tls_ca_free(again);
        /* two CAs differ */
        b = ag_tls_ca_cert(f->ca2, &bl);
        assert_false(al == bl && memcmp(a, b, al) == 0);
        /* no temporary file left */
        {
                char cmd[200];

                snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) = 1", f->ca1_dir);
                assert_int_equal(system(cmd), 0);
        }
}

static void test_ca_refuses_bad_files(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_ca *ca = NULL;
        char path[160], d[128], link[160];
        FILE *fp;

        /* readable by others: refused, the key would be everyone's */
        snprintf(path, sizeof(path), "%s/%s", f->ca1_dir, AG_TLS_CA_FILE);
        assert_int_equal(chmod(path, 0640), 0);
        assert_int_equal(ag_tls_ca_open(f->ca1_dir, &ca, &err), -EPERM);
        assert_non_null(strstr(err.msg, "0600"));
        assert_int_equal(chmod(path, 0600), 0);
        /* not PEM */
        snprintf(d, sizeof(d), "%s/garbage", f->dir);
        mkdir(d, 0700);
        snprintf(path, sizeof(path), "%s/%s", d, AG_TLS_CA_FILE);
        fp = fopen(path, "w");
        fputs("not a key\n", fp);
        fclose(fp);
        chmod(path, 0600);
        assert_int_equal(ag_tls_ca_open(d, &ca, &err), -EINVAL);
        /* a key without its certificate (ca2's key, ca1's certificate) */
        {
                char cmd[600];

                snprintf(cmd, sizeof(cmd),
                         "{ sed -n '/BEGIN PRIVATE/,/END PRIVATE/p' %s/%s; "
                         "sed -n '/BEGIN CERT/,/END CERT/p' %s/%s; } > %s",
                         f->ca2_dir, AG_TLS_CA_FILE, f->ca1_dir, AG_TLS_CA_FILE, path);
                assert_int_equal(system(cmd), 0);
        }
        assert_int_equal(ag_tls_ca_open(d, &ca, &err), -EINVAL);
        /* a symlink */
        snprintf(d, sizeof(d), "%s/symlink", f->dir);
        mkdir(d, 0700);
        snprintf(path, sizeof(path), "%s/%s", f->ca1_dir, AG_TLS_CA_FILE);
        snprintf(link, sizeof(link), "%s/%s", d, AG_TLS_CA_FILE);
        assert_int_equal(symlink(path, link), 0);
        assert_int_equal(ag_tls_ca_open(d, &ca, &err), -ELOOP);
        assert_null(ca);
}

struct race {
        const char *dir;
        struct ag_tls_ca *ca;
        int r;
};

static void *race_open(void *arg)
{
        struct race *r = arg;

        r->r = ag_tls_ca_open(r->dir, &r->ca, NULL);
        return NULL;
}

/* Several makers at once: all end up with the one CA that was linked first. */
static void test_ca_concurrent_create(void **state)
{
        struct fix *f = *state;
        struct race r[6];
        pthread_t t[6];
        char d[128];

        snprintf(d, sizeof(d), "%s/race", f->dir);
        for (int i = 0; i < 6; i++) {
                r[i] = (struct race){.dir = d};
                pthread_create(&t[i], NULL, race_open, &r[i]);
        }
        for (int i = 0; i < 6; i++)
                pthread_join(t[i], NULL);
        for (int i = 0; i < 6; i++) {
                size_t l0, li;
                const uint8_t *c0, *ci;

                assert_int_equal(r[i].r, 0);
                c0 = ag_tls_ca_cert(r[0].ca, &l0);
                ci = ag_tls_ca_cert(r[i].ca, &li);
                assert_int_equal(l0, li);
                assert_memory_equal(c0, ci, l0);
        }
        for (int i = 0; i < 6; i++)
                ag_tls_ca_free(r[i].ca);
}

/* ---- certificates ---- */

static X509 *parse(const uint8_t *d, size_t n)
{
        const unsigned char *p = d;
        X509 *x = d2i_X509(NULL, &p, (long)n);

        assert_non_null(x);
        return x;
}

static void test_issue(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_cred c = {0};
        const uint8_t *cad;
        size_t cal;
        X509 *x, *ca;
        char why[200];
        int days, secs;

        cad = ag_tls_ca_cert(f->ca1, &cal);
        ca = parse(cad, cal);
        assert_int_equal(X509_check_ca(ca), 1);
        assert_int_equal(ag_tls_issue(f->ca1, AG_TLS_AGENT, "pod-1", 0, &c, &err), 0);
        x = parse(c.cert, c.cert_len);
        assert_int_equal(X509_verify(x, X509_get0_pubkey(ca)), 1);
        assert_int_equal(X509_check_issued(ca, x), X509_V_OK);
        assert_int_equal(ag_tls_check_peer(x, "pod-1", true, why, sizeof(why)), 0);
        /* the same certificate is no client's, and names no other pod */
        assert_int_equal(ag_tls_check_peer(x, "pod-1", false, why, sizeof(why)), -EACCES);
        assert_int_equal(ag_tls_check_peer(x, "pod-2", true, why, sizeof(why)), -EACCES);
        assert_non_null(strstr(why, "pod-1"));
        /* a year, from an hour ago */
        assert_int_equal(
                ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
        assert_int_equal(days, AG_TLS_CERT_DAYS);
        assert_int_equal(secs, 3600);
        assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(x)), 256);
        X509_free(x);
        ag_tls_cred_done(&c);
        assert_null(c.key);

        assert_int_equal(ag_tls_issue(f->ca1, AG_TLS_RUNTD, AG_TLS_CLIENT_CN, 7, &c, &err), 0);
        x = parse(c.cert, c.cert_len);
        assert_int_equal(ag_tls_check_peer(x, "runtd", false, why, sizeof(why)), 0);
        assert_int_equal(ag_tls_check_peer(x, "runtd", true, why, sizeof(why)), -EACCES);
        assert_int_equal(
                ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
        assert_int_equal(days, 7);
        X509_free(x);
        ag_tls_cred_done(&c);
        /* the CA's own certificate is no peer's */
        {
                char cn[80];

                assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn,
                                                      sizeof(cn)) > 0);
                assert_int_equal(ag_tls_check_peer(ca, cn, true, why, sizeof(why)), -EACCES);
                assert_non_null(strstr(why, "CA"));
        }
        X509_free(ca);

        /* names that could say more than one name */
        assert_int_equal(ag_tls_issue(f->ca1, AG_TLS_AGENT, "a,DNS:b", 0, &c, &err), -EINVAL);
        assert_int_equal(ag_tls_issue(f->ca1, AG_TLS_AGENT, "", 0, &c, &err), -EINVAL);
        assert_int_equal(
                ag_tls_issue(f->ca1, AG_TLS_AGENT,
                             "0123456789012345678901234567890123456789012345678901234567890123"
                             "4",
                             0, &c, &err),
                -EINVAL);
        /* a pod id: 64 hex digits */
        assert_int_equal(
                ag_tls_issue(f->ca1, AG_TLS_AGENT,
                             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 0,
                             &c, &err),
                0);
        ag_tls_cred_done(&c);
}

static void test_b64(void **state)
{
        static const char *const bad[] = {"",     "abc",      "ab=c", "a===", "YQ",
                                          "YR==", "YWI=YWI=", "YW J", "YWJ\n"};
        uint8_t all[256], *d = NULL;
        char enc[400];
        size_t n;

        (void)state;
        for (int i = 0; i < 256; i++)
                all[i] = (uint8_t)i;
        for (size_t len = 0; len <= 256; len += 1 + len / 8) {
                ag_tls_b64_encode(all, len, enc);
                assert_int_equal(strlen(enc), ag_tls_b64_len(len));
                if (len == 0)
                        continue;
                assert_int_equal(ag_tls_b64_decode(enc, strlen(enc), &d, &n), 0);
                assert_int_equal(n, len);
                assert_memory_equal(d, all, len);
                free(d);
        }
        assert_int_equal(ag_tls_b64_decode("YQ==", 4, &d, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(d[0], 'a');
        free(d);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(ag_tls_b64_decode(bad[i], strlen(bad[i]), &d, &n), -EINVAL);
}

/* ---- the environment ---- */

static bool in_environ(const char *prefix)
{
        for (char **e = environ; *e; e++)
                if (strncmp(*e, prefix, strlen(prefix)) == 0)
                        return true;
        return false;
}

static void test_env_round_trip_and_scrub(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct agent_tls_creds c = {0};
        char **env = NULL, *mine[4], msg[256];
        SSL_CTX *ctx;
        size_t cal;

        assert_int_equal(ag_tls_agent_env(f->ca1, "pod-1", "[::]:7443", 0, &env, &err), 0);
        assert_string_equal(env[3], "RUNT_AGENT_LISTEN=[::]:7443");
        assert_null(env[4]);
        for (int i = 0; i < 4; i++) {
                assert_null(strchr(env[i], '\n'));
                assert_non_null(strchr(env[i], '='));
        }
        assert_int_equal(strncmp(env[0], AG_TLS_ENV_CERT "=", strlen(AG_TLS_ENV_CERT) + 1), 0);
        assert_int_equal(strncmp(env[1], AG_TLS_ENV_KEY "=", strlen(AG_TLS_ENV_KEY) + 1), 0);
        assert_int_equal(strncmp(env[2], AG_TLS_ENV_CA "=", strlen(AG_TLS_ENV_CA) + 1), 0);

        /* into this process's environment (our own buffers: putenv keeps them) */
        for (int i = 0; i < 4; i++) {
                mine[i] = strdup(env[i]);
                assert_int_equal(putenv(mine[i]), 0);
        }
        setenv("RUNT_AGENT_OTHER", "stays", 1);
        assert_int_equal(agent_tls_env_take(&c, msg, sizeof(msg)), 0);
        assert_false(in_environ("RUNT_AGENT_TLS_"));
        assert_false(in_environ("RUNT_AGENT_LISTEN"));
        assert_string_equal(getenv("RUNT_AGENT_OTHER"), "stays");
        for (int i = 0; i < 4; i++) {
                /* zeroed where they were */
                for (size_t k = 0; k < strlen(env[i]); k++)
                        assert_int_equal(mine[i][k], 0);
                free(mine[i]);
        }
        unsetenv("RUNT_AGENT_OTHER");
        assert_string_equal(c.listen, "[::]:7443");
        assert_memory_equal(c.ca, ag_tls_ca_cert(f->ca1, &cal), c.ca_len);
        ctx = agent_tls_ctx_new(&c, msg, sizeof(msg));
        assert_non_null(ctx);
        SSL_CTX_free(ctx);
        agent_tls_creds_done(&c);
        ag_tls_env_free(env);

        /* a bad value: an error, and still scrubbed */
        setenv(AG_TLS_ENV_KEY, "not base64!", 1);
        setenv(AG_TLS_ENV_CA, "YQ==", 1);
        assert_int_equal(agent_tls_env_take(&c, msg, sizeof(msg)), -EINVAL);
        assert_non_null(strstr(msg, AG_TLS_ENV_KEY));
        assert_false(in_environ("RUNT_AGENT_TLS_"));
        agent_tls_creds_done(&c);
        /* no credentials: no context */
        assert_null(agent_tls_ctx_new(&c, msg, sizeof(msg)));

        /* defaults and refusals */
        assert_int_equal(ag_tls_agent_env(f->ca1, "pod-1", NULL, 0, &env, &err), 0);
        assert_string_equal(env[3], "RUNT_AGENT_LISTEN=0.0.0.0:7443");
        ag_tls_env_free(env);
        assert_int_equal(ag_tls_agent_env(f->ca1, "pod-1", "1.2.3.4:1\nX=y", 0, &env, &err),
                         -EINVAL);
        assert_int_equal(ag_tls_agent_env(f->ca1, "pod 1", NULL, 0, &env, &err), -EINVAL);
}

/* ---- handshakes: the agent on a thread, runtd here ---- */

struct agent_end {
        int fd;
        struct agent_tls_creds creds;
        pthread_t thread;
        int ok; /* 1 the handshake passed, 0 it failed */
        char why[AGENT_TLS_WHY_MAX + 200];
};

static void *agent_thread(void *arg)
{
        struct agent_end *a = arg;
        char msg[256], why[AGENT_TLS_WHY_MAX] = "";
        SSL_CTX *ctx = agent_tls_ctx_new(&a->creds, msg, sizeof(msg));
        SSL *ssl = ctx ? SSL_new(ctx) : NULL;

        if (!ssl) {
                snprintf(a->why, sizeof(a->why), "no context: %s", msg);
                goto out;
        }
        SSL_set_fd(ssl, a->fd);
        SSL_set_app_data(ssl, why);
        if (SSL_accept(ssl) == 1) {
                char buf[64];
                int n;

                a->ok = 1;
                SSL_write(ssl, "READY", 5);
                /* echo until the other end goes */
                while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0)
                        SSL_write(ssl, buf, n);
        } else {
                agent_tls_why(ssl, a->why, sizeof(a->why));
        }
out:
        ERR_clear_error();
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        close(a->fd);
        return NULL;
}

/* An agent end's credentials: a certificate of @role named @cn from @ca, trusting @trust. */
static void agent_creds(struct agent_end *a, const struct ag_tls_ca *ca, enum ag_tls_role role,
                        const char *cn, const struct ag_tls_ca *trust)
{
        struct ag_tls_cred c = {0};
        const uint8_t *t;
        size_t tl;

        memset(a, 0, sizeof(*a));
        assert_int_equal(ag_tls_issue(ca, role, cn, 0, &c, NULL), 0);
        a->creds.cert = c.cert;
        a->creds.cert_len = c.cert_len;
        a->creds.key = c.key;
        a->creds.key_len = c.key_len;
        t = ag_tls_ca_cert(trust, &tl);
        a->creds.ca = malloc(tl);
        memcpy(a->creds.ca, t, tl);
        a->creds.ca_len = tl;
}

/* Starts an agent end (agent_creds) on a thread; returns runtd's end of the socketpair. */
static int agent_start(struct agent_end *a, const struct ag_tls_ca *ca, enum ag_tls_role role,
                       const char *cn, const struct ag_tls_ca *trust)
{
        int sv[2];

        agent_creds(a, ca, role, cn, trust);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        a->fd = sv[1];
        pthread_create(&a->thread, NULL, agent_thread, a);
        return sv[0];
}

static void agent_join(struct agent_end *a)
{
        pthread_join(a->thread, NULL);
        agent_tls_creds_done(&a->creds);
}

static void test_handshake_ok(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_conn *t = NULL;
        struct agent_end a;
        char buf[16];
        short want;
        ssize_t n;
        int fd = agent_start(&a, f->ca1, AG_TLS_AGENT, "pod-1", f->ca1);

        assert_int_equal(ag_tls_handshake(f->cl1, fd, "pod-1", 5000, &t, &err), 0);
        /* the READY is there, unread, and poll() cannot know: SSL_pending */
        assert_true(ag_tls_conn_pending(t));
        n = ag_tls_conn_read(t, buf, sizeof(buf), &want);
        assert_int_equal(n, 5);
        assert_memory_equal(buf, "READY", 5);
        assert_int_equal(ag_tls_conn_write(t, "ping", 4, &want), 4);
        do {
                n = ag_tls_conn_read(t, buf, sizeof(buf), &want);
                if (n < 0)
                        assert_int_equal(errno, EAGAIN);
        } while (n < 0 && usleep(1000) == 0);
        assert_int_equal(n, 4);
        assert_memory_equal(buf, "ping", 4);
        ag_tls_conn_free(t);
        agent_join(&a);
        assert_int_equal(a.ok, 1);
}

static void test_runtd_refuses_other_ca(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_conn *t = NULL;
        struct agent_end a;
        int fd = agent_start(&a, f->ca2, AG_TLS_AGENT, "pod-1", f->ca1);

        assert_int_equal(ag_tls_handshake(f->cl1, fd, "pod-1", 5000, &t, &err), -EACCES);
        assert_null(t);
        assert_non_null(strstr(err.msg, "agent's certificate"));
        agent_join(&a);
        assert_int_equal(a.ok, 0);
}

static void test_runtd_refuses_other_pod(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_conn *t = NULL;
        struct agent_end a;
        int fd = agent_start(&a, f->ca1, AG_TLS_AGENT, "pod-1", f->ca1);

        assert_int_equal(ag_tls_handshake(f->cl1, fd, "pod-2", 5000, &t, &err), -EACCES);
        assert_non_null(strstr(err.msg, "CN is 'pod-1', not 'pod-2'"));
        agent_join(&a);
        assert_int_equal(a.ok, 0);
}

/* A client certificate (clientAuth) as the agent's: refused, even with the right CN. */
static void test_runtd_refuses_client_cert_as_server(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_conn *t = NULL;
        struct agent_end a;
        int fd = agent_start(&a, f->ca1, AG_TLS_RUNTD, "pod-1", f->ca1);

        assert_int_equal(ag_tls_handshake(f->cl1, fd, "pod-1", 5000, &t, &err), -EACCES);
        agent_join(&a);
        assert_int_equal(a.ok, 0);
}

/* The agent trusts another CA: it refuses runtd, which hears it as an alert. */
static void test_agent_refusal_reaches_runtd(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_conn *t = NULL;
        struct agent_end a;
        int fd = agent_start(&a, f->ca1, AG_TLS_AGENT, "pod-1", f->ca2);

        assert_int_equal(ag_tls_handshake(f->cl1, fd, "pod-1", 5000, &t, &err), -EACCES);
        assert_non_null(strstr(err.msg, "refused runtd's certificate"));
        agent_join(&a);
        assert_int_equal(a.ok, 0);
        assert_non_null(strstr(a.why, "client certificate"));
}

/*
 * A plain OpenSSL client against the agent's end: with @cred (NULL: none) and at most TLS
 * @max_version. The agent's verdict is in @a.
 */
static void raw_client(struct agent_end *a, int fd, const struct ag_tls_cred *cred, int max_version)
{
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        SSL *ssl;
        char buf[8];

        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_max_proto_version(ctx, max_version);
        if (cred) {
                const unsigned char *p = cred->cert;
                X509 *x = d2i_X509(NULL, &p, (long)cred->cert_len);
                EVP_PKEY *k;

                p = cred->key;
                k = d2i_AutoPrivateKey(NULL, &p, (long)cred->key_len);
                assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
                assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
                X509_free(x);
                EVP_PKEY_free(k);
        }
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        /* TLS 1.3: the client is through before the agent judged it; the read tells. */
        if (SSL_connect(ssl) == 1)
                assert_true(SSL_read(ssl, buf, sizeof(buf)) <= 0);
        ERR_clear_error();
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        close(fd);
        agent_join(a);
        assert_int_equal(a->ok, 0);
}

static void test_agent_refuses_clients(void **state)
{
        struct fix *f = *state;
        struct ag_tls_cred c = {0};
        struct agent_end a;
        int fd;

        /* no certificate */
        fd = agent_start(&a, f->ca1, AG_TLS_AGENT, "pod-1", f->ca1);
        raw_client(&a, fd, NULL, TLS1_3_VERSION);
        assert_non_null(strstr(a.why, "did not return a certificate"));

        /* runtd's certificate from another CA */
        assert_int_equal(ag_tls_issue(f->ca2, AG_TLS_RUNTD, AG_TLS_CLIENT_CN, 0, &c, NULL), 0);
        fd = agent_start(&a, f->ca1, AG_TLS_AGENT, "pod-1", f->ca1);
        raw_client(&a, fd, &c, TLS1_3_VERSION);
        assert_non_null(strstr(a.why, "client certificate"));
        ag_tls_cred_done(&c);

        /* an agent's certificate (serverAuth) from the right CA */
        assert_int_equal(ag_tls_issue(f->ca1, AG_TLS_AGENT, AG_TLS_CLIENT_CN, 0, &c, NULL), 0);
        fd = agent_start(&a, f->ca1, AG_TLS_AGENT, "pod-1", f->ca1);
        raw_client(&a, fd, &c, TLS1_3_VERSION);
        assert_non_null(strstr(a.why, "client certificate"));
        ag_tls_cred_done(&c);

        /* a client certificate of the right CA that is not runtd's */
        assert_int_equal(ag_tls_issue(f->ca1, AG_TLS_RUNTD, "mallory", 0, &c, NULL), 0);
        fd = agent_start(&a, f->ca1, AG_TLS_AGENT, "pod-1", f->ca1);
        raw_client(&a, fd, &c, TLS1_3_VERSION);
        assert_non_null(strstr(a.why, "CN is 'mallory', not 'runtd'"));
        ag_tls_cred_done(&c);

        /* runtd's own, but over TLS 1.2 */
        assert_int_equal(ag_tls_issue(f->ca1, AG_TLS_RUNTD, AG_TLS_CLIENT_CN, 0, &c, NULL), 0);
        fd = agent_start(&a, f->ca1, AG_TLS_AGENT, "pod-1", f->ca1);
        raw_client(&a, fd, &c, TLS1_2_VERSION);
        ag_tls_cred_done(&c);
}

/* ---- the client's I/O thread and records that come in pieces ---- */

/* Relays @from to @to; once *@slow is set, 500 bytes every 40 ms. */
struct relay {
        int from, to;
        volatile int *slow;
        pthread_t thread;
};

static void *relay_thread(void *arg)
{
        struct relay *r = arg;
        char buf[65536];
        ssize_t n;

        while ((n = read(r->from, buf, sizeof(buf))) > 0) {
                for (ssize_t off = 0; off < n;) {
                        ssize_t k = *r->slow && n - off > 500 ? 500 : n - off;

                        if (write(r->to, buf + off, (size_t)k) != k)
                                return NULL;
                        off += k;
                        if (*r->slow)
                                usleep(40000);
                }
        }
        shutdown(r->to, SHUT_WR);
        return NULL;
}

struct slow_agent {
        struct agent_end a; /* its creds; fd: the agent's socket */
        volatile int slow;
        int go[2]; /* a byte: send the big event */
};

static void agent_frame(SSL *ssl, uint16_t ev, size_t data_len)
{
        static uint8_t data[20000];
        struct ag_buf b;

        ag_buf_init(&b);
        ag_frame_begin(&b, AG_K_EVENT, ev, 0, 0);
        if (data_len)
                ag_put_bytes(&b, AG_A_DATA, data, data_len);
        assert_int_equal(ag_frame_end(&b), 0);
        assert_int_equal(SSL_write(ssl, b.data, (int)b.len), (int)b.len);
        ag_buf_done(&b);
}

static void *slow_agent_thread(void *arg)
{
        struct slow_agent *sa = arg;
        char msg[256], c;
        SSL_CTX *ctx = agent_tls_ctx_new(&sa->a.creds, msg, sizeof(msg));
        SSL *ssl = SSL_new(ctx);

        SSL_set_fd(ssl, sa->a.fd);
        if (SSL_accept(ssl) == 1) {
                agent_frame(ssl, AG_EV_READY, 0);
                if (read(sa->go[0], &c, 1) == 1) {
                        sa->slow = 1;
                        agent_frame(ssl, AG_EV_LOG, 16000); /* two records */
                }
                while (SSL_read(ssl, msg, sizeof(msg)) > 0)
                        ;
        }
        ERR_clear_error();
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        close(sa->a.fd);
        return NULL;
}

static int logs_seen;
static pthread_mutex_t logs_lock = PTHREAD_MUTEX_INITIALIZER;

static void count_log(void *data, enum ag_event ev, const uint8_t *p, size_t n)
{
        (void)data;
        (void)p;
        (void)n;
        pthread_mutex_lock(&logs_lock);
        logs_seen += ev == AG_EV_LOG;
        pthread_mutex_unlock(&logs_lock);
}

static double cpu_s(void)
{
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6;
}

/*
 * A record that arrives in pieces over a second: the client's I/O thread waits in poll()
 * for the rest (OpenSSL holds the first pieces, but no byte a read could return) instead of
 * spinning, and the event comes whole.
 */
static void test_client_waits_for_partial_records(void **state)
{
        static const struct ag_client_ops ops = {.on_event = count_log};
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_conn *t = NULL;
        struct ag_client *c = NULL;
        struct slow_agent sa;
        struct relay down, up;
        int a2r[2], r2c[2], seen = 0;
        double cpu;
        pthread_t th;

        /* agent <-> relay <-> runtd */
        agent_creds(&sa.a, f->ca1, AG_TLS_AGENT, "pod-1", f->ca1);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a2r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r2c), 0);
        assert_int_equal(pipe2(sa.go, O_CLOEXEC), 0);
        sa.a.fd = a2r[0];
        sa.slow = 0;
        down = (struct relay){.from = a2r[1], .to = r2c[0], .slow = &sa.slow};
        up = (struct relay){.from = r2c[0], .to = a2r[1], .slow = &(int){0}};
        pthread_create(&down.thread, NULL, relay_thread, &down);
        pthread_create(&up.thread, NULL, relay_thread, &up);
        pthread_create(&th, NULL, slow_agent_thread, &sa);

        assert_int_equal(ag_tls_handshake(f->cl1, r2c[1], "pod-1", 5000, &t, &err), 0);
        assert_int_equal(ag_client_new_tls(t, &ops, NULL, &c, &err), 0);
        cpu = cpu_s();
        assert_int_equal(write(sa.go[1], "g", 1), 1);
        for (int i = 0; i < 500 && !seen; i++) {
                usleep(10000);
                pthread_mutex_lock(&logs_lock);
                seen = logs_seen;
                pthread_mutex_unlock(&logs_lock);
        }
        assert_int_equal(seen, 1);
        cpu = cpu_s() - cpu;
        /* about a second of waiting; a spinning thread would burn most of it */
        assert_true(cpu < 0.25);
        ag_client_free(c);
        close(sa.go[1]);
        pthread_join(th, NULL);
        shutdown(a2r[1], SHUT_RDWR);
        shutdown(r2c[0], SHUT_RDWR);
        pthread_join(down.thread, NULL);
        pthread_join(up.thread, NULL);
        close(a2r[1]);
        close(r2c[0]);
        close(sa.go[0]);
        agent_tls_creds_done(&sa.a.creds);
}

static void test_handshake_timeout(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_conn *t = NULL;
        int sv[2];

        /* a peer that says nothing */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(ag_tls_handshake(f->cl1, sv[0], "pod-1", 200, &t, &err), -ETIMEDOUT);
        /* a peer that hangs up */
        close(sv[1]);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        close(sv[1]);
        assert_int_equal(ag_tls_handshake(f->cl1, sv[0], "pod-1", 2000, &t, &err), -ECONNRESET);
}

static void test_dial_errors(void **state)
{
        struct fix *f = *state;
        struct sh_error err = {0};
        struct ag_tls_conn *t = NULL;
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t sl = sizeof(sa);
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        /* a port nobody listens on: bind one, close it */
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
        close(l);
        assert_int_equal(
                ag_dial_tls(f->cl1, "127.0.0.1", ntohs(sa.sin_port), "pod-1", 2000, &t, &err),
                -ECONNREFUSED);
        assert_non_null(strstr(err.msg, "127.0.0.1"));
        assert_int_equal(ag_dial_tls(f->cl1, "no-such-host.invalid", 7443, "pod-1", 2000, &t, &err),
                         -EHOSTUNREACH);
        /* a listener that never accepts: the handshake times out */
        l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sa.sin_port = 0;
        assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(l, 1), 0);
        sl = sizeof(sa);
        assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
        assert_int_equal(
                ag_dial_tls(f->cl1, "127.0.0.1", ntohs(sa.sin_port), "pod-1", 300, &t, &err),
                -ETIMEDOUT);
        close(l);
}

int main(void)
{
        const struct CMUnitTest t[] = {
                cmocka_unit_test_setup_teardown(test_ca_reload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ca_refuses_bad_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ca_concurrent_create, setup, teardown),
                cmocka_unit_test_setup_teardown(test_issue, setup, teardown),
                cmocka_unit_test(test_b64),
                cmocka_unit_test_setup_teardown(test_env_round_trip_and_scrub, setup, teardown),
                cmocka_unit_test_setup_teardown(test_handshake_ok, setup, teardown),
                cmocka_unit_test_setup_teardown(test_runtd_refuses_other_ca, setup, teardown),
                cmocka_unit_test_setup_teardown(test_runtd_refuses_other_pod, setup, teardown),
                cmocka_unit_test_setup_teardown(test_runtd_refuses_client_cert_as_server, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_agent_refusal_reaches_runtd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_agent_refuses_clients, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_waits_for_partial_records, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_handshake_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dial_errors, setup, teardown),
        };

        signal(SIGPIPE, SIG_IGN); /* as runtd and runt-agent */
        return cmocka_run_group_tests(t, NULL, NULL);
}
