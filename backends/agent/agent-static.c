/*
 * Stand-ins, in the static runt-agent only, for two things static glibc does badly and the
 * agent never does, and that static OpenSSL links in:
 *   - name resolution through NSS: OpenSSL's BIO_lookup and BIO_gethostbyname, unused (the
 *     agent binds numeric addresses and connects nowhere by name). Defined here, glibc's
 *     are not linked, nor their warnings that a static program calling them needs glibc's
 *     shared NSS modules at run time;
 *   - loading shared objects: OpenSSL's DSO code, unused (no openssl.cnf is read,
 *     OPENSSL_INIT_NO_LOAD_CONFIG, so no engine or provider module is loaded). glibc links
 *     its static dlopen anyway (for iconv modules), so the linker still warns that
 *     libcrypto refers to dlopen; what it refers to is this one, which loads nothing.
 * Each fails the way a missing library or an unknown name does, should OpenSSL ever call it.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stddef.h>

static char no_dl[] = "runt-agent is static: no shared objects";

void *dlopen(const char *file, int mode)
{
        (void)file;
        (void)mode;
        return NULL;
}

void *dlsym(void *restrict handle, const char *restrict name)
{
        (void)handle;
        (void)name;
        return NULL;
}

int dlclose(void *handle)
{
        (void)handle;
        return -1;
}

char *dlerror(void)
{
        return no_dl;
}

int dladdr(const void *addr, Dl_info *info)
{
        (void)addr;
        (void)info;
        return 0;
}

int getaddrinfo(const char *restrict node, const char *restrict service,
                const struct addrinfo *restrict hints, struct addrinfo **restrict res)
{
        (void)node;
        (void)service;
        (void)hints;
        *res = NULL;
        return EAI_FAIL;
}

void freeaddrinfo(struct addrinfo *ai)
{
        (void)ai;
}

const char *gai_strerror(int code)
{
        (void)code;
        return "runt-agent resolves no names";
}

int getnameinfo(const struct sockaddr *restrict addr, socklen_t addrlen, char *restrict host,
                socklen_t hostlen, char *restrict serv, socklen_t servlen, int flags)
{
        (void)addr;
        (void)addrlen;
        (void)host;
        (void)hostlen;
        (void)serv;
        (void)servlen;
        (void)flags;
        return EAI_FAIL;
}

struct hostent *gethostbyname(const char *name)
{
        (void)name;
        h_errno = NO_RECOVERY;
        return NULL;
}
