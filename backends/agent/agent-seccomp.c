/*
 * runt-agent: seccomp from an OCI/Docker JSON profile (the "defaultAction", "syscalls"
 * form of containerd's and Docker's default), compiled with libseccomp.
 *
 * The profile is untrusted input: a small JSON parser of our own with a depth and size
 * bound. What is understood: defaultAction, defaultErrnoRet, architectures, archMap,
 * syscalls[].{names,name,action,errnoRet,args[].{index,value,valueTwo,op},
 * includes/excludes.{caps,arches,minKernel}}. Unknown syscall names are skipped (an older
 * kernel); unknown keys are ignored.
 */

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <seccomp.h>

#include "agent.h"

enum jt { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
        enum jt t;
        bool b;
        double num;
        unsigned long long u; /* a non-negative integer, exactly */
        char *s;
        struct jv *kids;
        char **keys;
        size_t n;
};

struct jp {
        const char *p, *end;
        int depth;
};

static void jfree(struct jv *v)
{
        free(v->s);
        for (size_t i = 0; i < v->n; i++) {
                jfree(&v->kids[i]);
                if (v->keys)
                        free(v->keys[i]);
        }
        free(v->kids);
        free(v->keys);
        memset(v, 0, sizeof(*v));
}

static void ws(struct jp *j)
{
        while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
                j->p++;
}

static int jparse(struct jp *j, struct jv *v);

static int jstr(struct jp *j, char **ret)
{
        size_t cap = 16, len = 0;
        char *s;

        if (j->p >= j->end || *j->p != '"')
                return -EINVAL;
        j->p++;
        s = malloc(cap);
        if (!s)
                return -ENOMEM;
        while (j->p < j->end && *j->p != '"') {
                char ch = *j->p++;

                if ((unsigned char)ch < 0x20)
                        goto bad;
                if (ch == '\\') {
                        if (j->p >= j->end)
                                goto bad;
                        ch = *j->p++;
                        switch (ch) {
                        case 'n':
                                ch = '\n';
                                break;
                        case 't':
                                ch = '\t';
                                break;
                        case 'r':
                                ch = '\r';
                                break;
                        case 'b':
                                ch = '\b';
                                break;
                        case 'f':
                                ch = '\f';
                                break;
                        case 'u':
                                if (j->end - j->p < 4)
                                        goto bad;
                                j->p += 4;
                                ch = '?'; /* no name we look for has one */
                                break;
                        case '"':
                        case '\\':
                        case '/':
                                break;
                        default:
                                goto bad;
                        }
                }
                if (len + 2 > cap) {
                        char *n = realloc(s, cap *= 2);

                        if (!n) {
                                free(s);
                                return -ENOMEM;
                        }
                        s = n;
                }
                s[len++] = ch;
        }
        if (j->p >= j->end)
                goto bad;
        j->p++;
        s[len] = 0;
        *ret = s;
        return 0;
bad:
        free(s);
        return -EINVAL;
}

static int jadd(struct jv *v, char *key, struct jv *kid)
{
        struct jv *k = realloc(v->kids, (v->n + 1) * sizeof(*k));

        if (!k)
                return -ENOMEM;
        v->kids = k;
        if (v->t == J_OBJ) {
                char **ks = realloc(v->keys, (v->n + 1) * sizeof(*ks));

                if (!ks)
                        return -ENOMEM;
                v->keys = ks;
                ks[v->n] = key;
        }
        k[v->n++] = *kid;
        return 0;
}

static int jparse_value(struct jp *j, struct jv *v);

/* One value into @v; on an error @v holds nothing. */
static int jparse(struct jp *j, struct jv *v)
{
        int r = jparse_value(j, v);

        if (r < 0)
                jfree(v);
        return r;
}

static int jparse_value(struct jp *j, struct jv *v)
{
        int r;

        memset(v, 0, sizeof(*v));
        ws(j);
        if (j->p >= j->end || ++j->depth > 32)
                return -EINVAL;
        if (*j->p == '{' || *j->p == '[') {
                bool obj = *j->p == '{';
                char close = obj ? '}' : ']';

                v->t = obj ? J_OBJ : J_ARR;
                j->p++;
                ws(j);
                if (j->p < j->end && *j->p == close) {
                        j->p++;
                        j->depth--;
                        return 0;
                }
                for (;;) {
                        char *key = NULL;
                        struct jv kid;

                        ws(j);
                        if (obj) {
                                if ((r = jstr(j, &key)) < 0)
                                        return r;
                                ws(j);
                                if (j->p >= j->end || *j->p++ != ':') {
                                        free(key);
                                        return -EINVAL;
                                }
                        }
                        r = jparse(j, &kid);
                        if (r == 0 && (r = jadd(v, key, &kid)) < 0)
                                jfree(&kid);
                        if (r < 0) {
                                free(key);
                                return r;
                        }
                        ws(j);
                        if (j->p < j->end && *j->p == ',') {
                                j->p++;
                                continue;
                        }
                        if (j->p < j->end && *j->p == close) {
                                j->p++;
                                break;
                        }
                        return -EINVAL;
                }
        } else if (*j->p == '"') {
                v->t = J_STR;
                if ((r = jstr(j, &v->s)) < 0)
                        return r;
        } else if (j->end - j->p >= 4 && !strncmp(j->p, "true", 4)) {
                v->t = J_BOOL, v->b = true, j->p += 4;
        } else if (j->end - j->p >= 5 && !strncmp(j->p, "false", 5)) {
                v->t = J_BOOL, j->p += 5;
        } else if (j->end - j->p >= 4 && !strncmp(j->p, "null", 4)) {
                j->p += 4;
        } else {
                char buf[64];
                size_t n = 0;

                while (j->p + n < j->end && n < sizeof(buf) - 1 &&
                       strchr("+-0123456789.eE", j->p[n]))
                        n++;
                if (n == 0)
                        return -EINVAL;
                memcpy(buf, j->p, n);
                buf[n] = 0;
                j->p += n;
                v->t = J_NUM;
                v->num = strtod(buf, NULL);
                v->u = buf[0] == '-' ? 0 : strtoull(buf, NULL, 10);
        }
        j->depth--;
        return 0;
}

static const struct jv *jget(const struct jv *o, const char *key)
{
        if (!o || o->t != J_OBJ)
                return NULL;
        for (size_t i = 0; i < o->n; i++)
                if (strcmp(o->keys[i], key) == 0)
                        return &o->kids[i];
        return NULL;
}

static int action_of(const char *a, const struct jv *errno_ret, int def_errno, uint32_t *ret)
{
        int e = errno_ret && errno_ret->t == J_NUM ? (int)errno_ret->u : def_errno;

        if (!a)
                return -EINVAL;
        if (!strcmp(a, "SCMP_ACT_ALLOW"))
                *ret = SCMP_ACT_ALLOW;
        else if (!strcmp(a, "SCMP_ACT_ERRNO"))
                *ret = SCMP_ACT_ERRNO((uint16_t)e);
        else if (!strcmp(a, "SCMP_ACT_KILL") || !strcmp(a, "SCMP_ACT_KILL_THREAD"))
                *ret = SCMP_ACT_KILL;
        else if (!strcmp(a, "SCMP_ACT_KILL_PROCESS"))
                *ret = SCMP_ACT_KILL_PROCESS;
        else if (!strcmp(a, "SCMP_ACT_TRAP"))
                *ret = SCMP_ACT_TRAP;
        else if (!strcmp(a, "SCMP_ACT_LOG"))
                *ret = SCMP_ACT_LOG;
        else if (!strcmp(a, "SCMP_ACT_TRACE"))
                *ret = SCMP_ACT_TRACE((uint16_t)e);
        else
                return -EINVAL;
        return 0;
}

static bool has_str(const struct jv *arr, const char *s)
{
        if (!arr || arr->t != J_ARR)
                return false;
        for (size_t i = 0; i < arr->n; i++)
                if (arr->kids[i].t == J_STR && !strcasecmp(arr->kids[i].s, s))
                        return true;
        return false;
}

static bool has_cap(char **caps, const char *c)
{
        for (size_t i = 0; caps && caps[i]; i++)
                if (!strcasecmp(caps[i], c))
                        return true;
        return false;
}

static bool kernel_at_least(const char *v)
{
        struct utsname u;
        int a = 0, b = 0, x = 0, y = 0;

        if (uname(&u) < 0 || sscanf(v, "%d.%d", &a, &b) < 1)
                return true;
        sscanf(u.release, "%d.%d", &x, &y);
        return x > a || (x == a && y >= b);
}

/* Whether a syscalls[] entry applies to this container. */
static bool applies(const struct jv *e, char **caps)
{
        const struct jv *inc = jget(e, "includes"), *exc = jget(e, "excludes"), *x;

        if ((x = jget(inc, "caps")) && x->t == J_ARR)
                for (size_t i = 0; i < x->n; i++)
                        if (x->kids[i].t == J_STR && !has_cap(caps, x->kids[i].s))
                                return false;
        if ((x = jget(inc, "arches")) && x->t == J_ARR && x->n && !has_str(x, "amd64") &&
            !has_str(x, "x86_64") && !has_str(x, "SCMP_ARCH_X86_64"))
                return false;
        if ((x = jget(inc, "minKernel")) && x->t == J_STR && !kernel_at_least(x->s))
                return false;
        if ((x = jget(exc, "caps")) && x->t == J_ARR)
                for (size_t i = 0; i < x->n; i++)
                        if (x->kids[i].t == J_STR && has_cap(caps, x->kids[i].s))
                                return false;
        if ((x = jget(exc, "arches")) && (has_str(x, "amd64") || has_str(x, "x86_64")))
                return false;
        return true;
}

static int op_of(const char *s, enum scmp_compare *ret)
{
        static const struct {
                const char *n;
                enum scmp_compare op;
        } ops[] = {{"SCMP_CMP_NE", SCMP_CMP_NE},
                   {"SCMP_CMP_LT", SCMP_CMP_LT},
                   {"SCMP_CMP_LE", SCMP_CMP_LE},
                   {"SCMP_CMP_EQ", SCMP_CMP_EQ},
                   {"SCMP_CMP_GE", SCMP_CMP_GE},
                   {"SCMP_CMP_GT", SCMP_CMP_GT},
                   {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};

        for (size_t i = 0; s && i < sizeof(ops) / sizeof(ops[0]); i++)
                if (!strcmp(s, ops[i].n)) {
                        *ret = ops[i].op;
                        return 0;
                }
        return -EINVAL;
}

static int add_arch(scmp_filter_ctx ctx, const char *name)
{
        uint32_t a;

        if (!strncasecmp(name, "SCMP_ARCH_", 10))
                name += 10;
        char low[32];
        size_t i;

        for (i = 0; name[i] && i + 1 < sizeof(low); i++)
                low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
        low[i] = 0;
        a = seccomp_arch_resolve_name(low);
        if (!a || a == seccomp_arch_native())
                return 0;
        if (a != SCMP_ARCH_X86 && a != SCMP_ARCH_X32)
                return 0; /* not runnable on this machine */
        int r = seccomp_arch_add(ctx, a);

        return r == -EEXIST ? 0 : r;
}

static int build(const struct jv *root, char **caps, scmp_filter_ctx *ret, char *msg, size_t msize)
{
        const struct jv *da = jget(root, "defaultAction"), *sys = jget(root, "syscalls"), *x;
        int def_errno = EPERM;
        uint32_t defact;
        scmp_filter_ctx ctx;
        int r;

        if ((x = jget(root, "defaultErrnoRet")) && x->t == J_NUM)
                def_errno = (int)x->u;
        if (!da || da->t != J_STR || action_of(da->s, NULL, def_errno, &defact) < 0) {
                snprintf(msg, msize, "bad defaultAction");
                return -EINVAL;
        }
        ctx = seccomp_init(defact);
        if (!ctx)
                return -ENOMEM;
        seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
        if ((x = jget(root, "architectures")) && x->t == J_ARR)
                for (size_t i = 0; i < x->n; i++)
                        if (x->kids[i].t == J_STR)
                                add_arch(ctx, x->kids[i].s);
        if ((x = jget(root, "archMap")) && x->t == J_ARR)
                for (size_t i = 0; i < x->n; i++) {
                        const struct jv *a = jget(&x->kids[i], "architecture"),
                                        *subs = jget(&x->kids[i], "subArchitectures");

                        if (!a || a->t != J_STR || strcasecmp(a->s, "SCMP_ARCH_X86_64"))
                                continue;
                        for (size_t k = 0; subs && subs->t == J_ARR && k < subs->n; k++)
                                if (subs->kids[k].t == J_STR)
                                        add_arch(ctx, subs->kids[k].s);
                }
        for (size_t i = 0; sys && sys->t == J_ARR && i < sys->n; i++) {
                const struct jv *e = &sys->kids[i], *names = jget(e, "names"),
                                *name = jget(e, "name"), *args = jget(e, "args"),
                                *act = jget(e, "action");
                struct scmp_arg_cmp cmp[6];
                unsigned ncmp = 0;
                uint32_t action;

                if (!applies(e, caps))
                        continue;
                if (!act || act->t != J_STR ||
                    action_of(act->s, jget(e, "errnoRet"), def_errno, &action) < 0) {
                        snprintf(msg, msize, "syscalls[%zu]: bad action", i);
                        seccomp_release(ctx);
                        return -EINVAL;
                }
                if (action == defact)
                        continue;
                for (size_t k = 0; args && args->t == J_ARR && k < args->n; k++) {
                        const struct jv *a = &args->kids[k], *idx = jget(a, "index"),
                                        *val = jget(a, "value"), *two = jget(a, "valueTwo"),
                                        *op = jget(a, "op");
                        enum scmp_compare o;

                        if (ncmp >= 6 || !idx || idx->t != J_NUM || idx->u > 5 || !op ||
                            op->t != J_STR || op_of(op->s, &o) < 0) {
                                snprintf(msg, msize, "syscalls[%zu]: bad args", i);
                                seccomp_release(ctx);
                                return -EINVAL;
                        }
                        cmp[ncmp++] = (struct scmp_arg_cmp){
                                .arg = (unsigned)idx->u,
                                .op = o,
                                .datum_a = val && val->t == J_NUM ? val->u : 0,
                                .datum_b = two && two->t == J_NUM ? two->u : 0,
                        };
                }
                size_t nn = names && names->t == J_ARR ? names->n : 0;

                for (size_t k = 0; k < nn + (name && name->t == J_STR ? 1 : 0); k++) {
                        const char *sn = k < nn ? names->kids[k].s : name->s;
                        int nr;

                        if (k < nn && names->kids[k].t != J_STR)
                                continue;
                        nr = seccomp_syscall_resolve_name(sn);
                        if (nr == __NR_SCMP_ERROR)
                                continue;
                        r = seccomp_rule_add_array(ctx, action, nr, ncmp, cmp);
                        if (r == -EINVAL && ncmp > 1) {
                                /* Comparisons of one argument twice: one rule each (an OR,
                                 * which is what such profiles mean). */
                                for (unsigned c = 0; c < ncmp && r != 0; c++)
                                        r = 0,
                                        r = seccomp_rule_add_array(ctx, action, nr, 1, &cmp[c]);
                        }
                        if (r < 0 && r != -EACCES && r != -EEXIST) {
                                snprintf(msg, msize, "rule for %s: %s", sn, strerror(-r));
                                seccomp_release(ctx);
                                return r;
                        }
                }
        }
        *ret = ctx;
        return 0;
}

/* Parses @json and builds its filter into *@ret (seccomp_release frees it). */
static int parse_build(const char *json, size_t len, char **caps, scmp_filter_ctx *ret, char *msg,
                       size_t msize)
{
        struct jp j = {.p = json, .end = json + len};
        struct jv root;
        int r;

        if (len > (1u << 20)) {
                snprintf(msg, msize, "profile too large");
                return -E2BIG;
        }
        r = jparse(&j, &root);
        ws(&j);
        if (r == 0 && (j.p != j.end || root.t != J_OBJ))
                r = -EINVAL;
        if (r < 0) {
                snprintf(msg, msize, "profile is not a JSON object");
                jfree(&root);
                return r;
        }
        r = build(&root, caps, ret, msg, msize);
        jfree(&root);
        return r;
}

int seccomp_apply(const char *json, size_t len, char **caps, bool load, char *msg, size_t msize)
{
        scmp_filter_ctx ctx = NULL;
        int r = parse_build(json, len, caps, &ctx, msg, msize);

        if (r < 0)
                return r;
        if (load && (r = seccomp_load(ctx)) < 0)
                snprintf(msg, msize, "seccomp_load: %s", strerror(-r));
        seccomp_release(ctx);
        return r;
}

int seccomp_compile(const char *json, size_t len, char **caps, void **ret_bpf, size_t *ret_len,
                    char *msg, size_t msize)
{
        scmp_filter_ctx ctx = NULL;
        struct stat st;
        void *bpf = NULL;
        int r = parse_build(json, len, caps, &ctx, msg, msize), fd;

        if (r < 0)
                return r;
        /* The filter as the kernel takes it, once: an exec then only installs it. */
        fd = memfd_create("seccomp", MFD_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                snprintf(msg, msize, "memfd: %s", strerror(errno));
        } else if ((r = seccomp_export_bpf(ctx, fd)) < 0) {
                snprintf(msg, msize, "seccomp_export_bpf: %s", strerror(-r));
        } else if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % 8 ||
                   !(bpf = malloc((size_t)st.st_size)) ||
                   pread(fd, bpf, (size_t)st.st_size, 0) != st.st_size) {
                r = -EIO;
                snprintf(msg, msize, "reading the compiled filter back");
                free(bpf);
                bpf = NULL;
        }
        if (fd >= 0)
                close(fd);
        seccomp_release(ctx);
        if (r < 0)
                return r;
        *ret_bpf = bpf;
        *ret_len = (size_t)st.st_size;
        return 0;
}

int seccomp_install(const void *bpf, size_t len)
{
        struct sock_fprog prog = {.len = (unsigned short)(len / 8),
                                  .filter = (struct sock_filter *)(uintptr_t)bpf};

        if (len / 8 > 0xffff)
                return -E2BIG;
        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0 ? -errno : 0;
}
