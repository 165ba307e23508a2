/*
 * runt-agentca: the agent TLS credentials runtd makes (backends/agent/tls.h), for the e2e
 * tests of runt-agent over TLS (test/e2e/test_agent_tls.py).
 *
 *   runt-agentca CA_DIR POD_ID OUT_DIR [LISTEN]
 *
 * Opens (or makes) the CA in CA_DIR and writes to OUT_DIR:
 *   agent.env             the agent's environment (ag_tls_agent_env), one NAME=VALUE a line
 *   agent.crt, agent.key  the same agent certificate and key, PEM
 *   runtd.crt, runtd.key  a runtd client certificate (CN "runtd") and key, PEM
 *   ca.crt                the CA's certificate, PEM
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "tls.h"

static int write_file(const char *dir, const char *name, const char *data, size_t n)
{
        char path[4096];
        FILE *f;
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
                fprintf(stderr, "runt-agentca: %s: %s\n", path, strerror(errno));
                return -1;
        }
        return 0;
}

/* DER @d (a certificate when @cert, else a private key) as PEM into @dir/@name. */
static int write_pem(const char *dir, const char *name, const uint8_t *d, size_t n, int cert)
{
        const unsigned char *p = d;
        BIO *mem = BIO_new(BIO_s_mem());
        X509 *x = NULL;
        EVP_PKEY *k = NULL;
        char *data;
        long len;
        int ok, r;

        if (cert)
                x = d2i_X509(NULL, &p, (long)n);
        else
                k = d2i_AutoPrivateKey(NULL, &p, (long)n);
        ok = mem && (cert ? x && PEM_write_bio_X509(mem, x)
                          : k && PEM_write_bio_PrivateKey(mem, k, NULL, NULL, 0, NULL, NULL));
        X509_free(x);
        EVP_PKEY_free(k);
        if (!ok) {
                fprintf(stderr, "runt-agentca: %s: cannot encode\n", name);
                BIO_free(mem);
                return -1;
        }
        len = BIO_get_mem_data(mem, &data);
        r = write_file(dir, name, data, (size_t)len);
        BIO_free(mem);
        return r;
}

/* The DER in env string @e ("NAME=base64") into @dir/@name as PEM. */
static int env_pem(const char *dir, const char *name, const char *e, int cert)
{
        const char *v = strchr(e, '=') + 1;
        uint8_t *d;
        size_t n;
        int r;

        if (ag_tls_b64_decode(v, strlen(v), &d, &n) < 0)
                return -1;
        r = write_pem(dir, name, d, n, cert);
        free(d);
        return r;
}

int main(int argc, char **argv)
{
        struct sh_error err = {0};
        struct ag_tls_ca *ca = NULL;
        struct ag_tls_cred runtd = {0};
        char **env = NULL, *all = NULL;
        const uint8_t *cad;
        size_t cal, len = 0;
        int r;

        if (argc < 4 || argc > 5) {
                fprintf(stderr, "usage: runt-agentca CA_DIR POD_ID OUT_DIR [LISTEN]\n");
                return 2;
        }
        r = ag_tls_ca_open(argv[1], &ca, &err);
        if (r == 0)
                r = ag_tls_agent_env(ca, argv[2], argc == 5 ? argv[4] : NULL, 0, &env, &err);
        if (r == 0)
                r = ag_tls_issue(ca, AG_TLS_RUNTD, AG_TLS_CLIENT_CN, 0, &runtd, &err);
        if (r < 0) {
                fprintf(stderr, "runt-agentca: %s\n", err.msg);
                ag_tls_ca_free(ca);
                ag_tls_env_free(env);
                return 1;
        }
        mkdir(argv[3], 0700);
        for (char **e = env; *e; e++)
                len += strlen(*e) + 1;
        all = malloc(len + 1);
        len = 0;
        for (char **e = env; all && *e; e++)
                len += (size_t)snprintf(all + len, strlen(*e) + 2, "%s\n", *e);
        cad = ag_tls_ca_cert(ca, &cal);
        r = !all || write_file(argv[3], "agent.env", all, len) < 0 ||
            env_pem(argv[3], "agent.crt", env[0], 1) < 0 ||
            env_pem(argv[3], "agent.key", env[1], 0) < 0 ||
            write_pem(argv[3], "ca.crt", cad, cal, 1) < 0 ||
            write_pem(argv[3], "runtd.crt", runtd.cert, runtd.cert_len, 1) < 0 ||
            write_pem(argv[3], "runtd.key", runtd.key, runtd.key_len, 0) < 0;
        free(all);
        ag_tls_cred_done(&runtd);
        ag_tls_env_free(env);
        ag_tls_ca_free(ca);
        return r;
}
