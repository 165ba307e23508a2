/*
 * seccomp policies in liblxc's own format (`lxc.seccomp.profile`, version 2).
 *
 * The grammar, as liblxc 5.0 parses it (lxc:src/lxc/seccomp.c, parse_config(),
 * parse_config_v2(), get_v2_default_action(), parse_v2_rules(), get_seccomp_arg_value()):
 *
 *   2                                line 1: the version
 *   denylist|allowlist [ACTION]      line 2: the policy type and its default action
 *   [all]                            an architecture section (optional)
 *   NAME [ACTION [ARG]...]           one rule per line; '#' at column 0 starts a comment
 *
 *   ACTION := kill | trap | allow | notify | errno N
 *   ARG    := [INDEX,VALUE,OP] | [INDEX,VALUE,SCMP_CMP_MASKED_EQ,MASK]
 *   OP     := SCMP_CMP_NE | _LT | _LE | _EQ | _GE | _GT | _MASKED_EQ
 *
 * Quirks this file works around:
 * - A denylist defaults to "allow" and its rules to "kill"; an allowlist defaults to "kill"
 *   and its rules to "allow". We always write both actions out.
 * - Arguments are read only after an action: "mkdir [0,1,SCMP_CMP_EQ]" is a parse error.
 *   A trailing blank after the last ']' or after line 2's action is one too.
 * - MASKED_EQ matches (arg & MASK) == VALUE: VALUE is libseccomp's datum_b, MASK datum_a.
 *   OCI's "value" is the mask and "valueTwo" the datum, so they swap places.
 * - There is no "log" and no "kill_process": "kill" is SCMP_ACT_KILL, i.e. KILL_THREAD.
 * - On x86_64 liblxc adds every rule to the native filter and to i386 and x32 filters it
 *   merges in, whatever the section ([all], [x86_64], [x86] and [x32] all behave alike
 *   there); a name the compat ABI does not have is skipped for it alone. So [all] covers
 *   the compat ABIs, and OCI's "architectures" cannot narrow anything.
 * - A name libseccomp does not know is logged at INFO and skipped, so profiles naming
 *   syscalls newer than the host's libseccomp still load. libseccomp then refuses, and
 *   liblxc fails the start on, a rule whose action is the default action (EACCES), two
 *   conditions on one argument (EINVAL) and one name with equal conditions but another
 *   action (EEXIST): the converter never writes any of those.
 * - A name starting with "reject_force_umount" is not looked up but installs liblxc's
 *   own umount2(MNT_FORCE) rule; the converter drops such names.
 * - Under a kill or trap default, an allowlist that never names umount2 also gets
 *   "umount2 errno 1": liblxc's init umounts itself under the filter (see
 *   lxc_seccomp_from_oci()), and killing that kills the container.
 * - liblxc loads the filter at the very end of its setup in the container's init
 *   (lxc:src/lxc/start.c do_start(): after lxc_setup() mounted the rootfs, pivoted and
 *   dropped capabilities; before lxc.hook.start, setgroups/setuid and exec) and before
 *   exec in lxc-attach. It loads nothing if the starting process is already under
 *   seccomp (use_seccomp(), unless lxc.seccomp.allow_nesting = 1).
 */
#include "seccomp.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "json.h"
#include "strutil.h"

/*
 * RuntimeDefault. Docker's default profile (moby/profiles seccomp/default.json) is an
 * allowlist with errno EPERM. Ours is the same policy turned round: every syscall the
 * host's libseccomp knows for x86_64, i386, x32, aarch64 and arm that Docker does not allow
 * to a container holding the container's capabilities, denied with EPERM. Docker allows
 * some syscalls only to holders of a capability (mount and sethostname with CAP_SYS_ADMIN,
 * reboot with CAP_SYS_BOOT...): their lines below name it, and a container holding it gets
 * a policy without them. ptrace and process_vm_{read,write}v are allowed to all, as Docker
 * allows them on kernels >= 4.8. Why a denylist:
 * - An LXC allowlist binds liblxc's own code too: the filter is live while liblxc still
 *   runs lxc.hook.start, setgroups, setresuid, capset, prctl, close_range and the exec of
 *   init.lxc, so the list would have to track liblxc's internals, and any syscall it or the
 *   libc grows gets the default action (kill unless "allowlist errno 1" is spelt out).
 * - Names the host's libseccomp does not know are dropped from an LXC allowlist (they are
 *   skipped), so an allowlist written for newer kernels denies what it means to allow,
 *   and EPERM for an unknown syscall defeats libc fallbacks that expect ENOSYS.
 * What differs from Docker:
 * - A syscall newer than this list (or than the host's libseccomp) is allowed, not EPERM.
 * - personality() is allowed with any argument (Docker allows five values; an "allow only
 *   these" test needs conditions on one argument ANDed, which libseccomp refuses).
 * - The socket(AF_ALG / AF_VSOCK) and clone(namespace flags) conditions apply to the native
 *   ABI and x32 only: on i386 libseccomp resolves socket to a socketcall pseudo-syscall,
 *   which liblxc skips, and clone's flags are argument 1 on s390x, which is not handled.
 * clone3 returns ENOSYS without CAP_SYS_ADMIN, as in Docker: its flags sit in memory
 * seccomp cannot read, and ENOSYS sends glibc back to clone(), whose flags the rules below
 * can check. init.lxc still works: it only fork()s, and its umount2() of its own bind
 * mount fails quietly.
 */
#define CAP(n) (UINT64_C(1) << (n))

/*
 * One line of RuntimeDefault, and the capabilities any one of which leaves it out (Docker's
 * "includes": {"caps": [...]} on the allow rule, or "excludes" on the deny rule); 0: kept
 * whatever the container holds.
 */
struct rd_line {
        const char *text;
        uint64_t unless;
};

static const char rd_head[] =
        "2\n"
        "denylist\n"
        "# runt RuntimeDefault: Docker's default profile as a denylist (EPERM)\n"
        "[all]\n";

static const struct rd_line rd_lines[] = {
        {"# modules, kexec, reboot", 0},
        {"create_module errno 1", 0},
        {"delete_module errno 1", CAP(CAP_SYS_MODULE)},
        {"finit_module errno 1", CAP(CAP_SYS_MODULE)},
        {"get_kernel_syms errno 1", 0},
        {"init_module errno 1", CAP(CAP_SYS_MODULE)},
        {"kexec_file_load errno 1", 0},
        {"kexec_load errno 1", 0},
        {"query_module errno 1", 0},
        {"reboot errno 1", CAP(CAP_SYS_BOOT)},
        {"# mounts, namespaces, host and domain name", 0},
        {"fsconfig errno 1", CAP(CAP_SYS_ADMIN)},
        {"fsmount errno 1", CAP(CAP_SYS_ADMIN)},
        {"fsopen errno 1", CAP(CAP_SYS_ADMIN)},
        {"fspick errno 1", CAP(CAP_SYS_ADMIN)},
        {"mount errno 1", CAP(CAP_SYS_ADMIN)},
        {"mount_setattr errno 1", CAP(CAP_SYS_ADMIN)},
        {"move_mount errno 1", CAP(CAP_SYS_ADMIN)},
        {"open_tree errno 1", CAP(CAP_SYS_ADMIN)},
        {"open_tree_attr errno 1", 0},
        {"pivot_root errno 1", 0},
        {"chroot errno 1", CAP(CAP_SYS_CHROOT)},
        {"setns errno 1", CAP(CAP_SYS_ADMIN)},
        {"umount errno 1", CAP(CAP_SYS_ADMIN)},
        {"umount2 errno 1", CAP(CAP_SYS_ADMIN)},
        {"unshare errno 1", CAP(CAP_SYS_ADMIN)},
        {"clone3 errno 38", CAP(CAP_SYS_ADMIN)},
        {"clone errno 1 [0,0x00020000,SCMP_CMP_MASKED_EQ,0x00020000]", CAP(CAP_SYS_ADMIN)},
        {"clone errno 1 [0,0x02000000,SCMP_CMP_MASKED_EQ,0x02000000]", CAP(CAP_SYS_ADMIN)},
        {"clone errno 1 [0,0x04000000,SCMP_CMP_MASKED_EQ,0x04000000]", CAP(CAP_SYS_ADMIN)},
        {"clone errno 1 [0,0x08000000,SCMP_CMP_MASKED_EQ,0x08000000]", CAP(CAP_SYS_ADMIN)},
        {"clone errno 1 [0,0x10000000,SCMP_CMP_MASKED_EQ,0x10000000]", CAP(CAP_SYS_ADMIN)},
        {"clone errno 1 [0,0x20000000,SCMP_CMP_MASKED_EQ,0x20000000]", CAP(CAP_SYS_ADMIN)},
        {"clone errno 1 [0,0x40000000,SCMP_CMP_MASKED_EQ,0x40000000]", CAP(CAP_SYS_ADMIN)},
        {"sethostname errno 1", CAP(CAP_SYS_ADMIN)},
        {"setdomainname errno 1", CAP(CAP_SYS_ADMIN)},
        {"# keyrings", 0},
        {"add_key errno 1", 0},
        {"keyctl errno 1", 0},
        {"request_key errno 1", 0},
        {"# tracing, profiling, other processes' memory and files", 0},
        {"bpf errno 1", CAP(CAP_SYS_ADMIN) | CAP(CAP_BPF)},
        {"fanotify_init errno 1", CAP(CAP_SYS_ADMIN)},
        {"kcmp errno 1", CAP(CAP_SYS_PTRACE)},
        {"lookup_dcookie errno 1", CAP(CAP_SYS_ADMIN)},
        {"open_by_handle_at errno 1", CAP(CAP_DAC_READ_SEARCH)},
        {"perf_event_open errno 1", CAP(CAP_SYS_ADMIN) | CAP(CAP_PERFMON)},
        {"pidfd_getfd errno 1", CAP(CAP_SYS_PTRACE)},
        {"process_madvise errno 1", CAP(CAP_SYS_PTRACE)},
        {"userfaultfd errno 1", 0},
        {"lsm_get_self_attr errno 1", 0},
        {"lsm_list_modules errno 1", 0},
        {"lsm_set_self_attr errno 1", 0},
        {"io_uring_enter errno 1", 0},
        {"io_uring_register errno 1", 0},
        {"io_uring_setup errno 1", 0},
        {"# host-wide state: clock, swap, accounting, quotas, kernel log", 0},
        {"clock_settime errno 1", CAP(CAP_SYS_TIME)},
        {"clock_settime64 errno 1", CAP(CAP_SYS_TIME)},
        {"settimeofday errno 1", CAP(CAP_SYS_TIME)},
        {"stime errno 1", CAP(CAP_SYS_TIME)},
        {"acct errno 1", CAP(CAP_SYS_PACCT)},
        {"bdflush errno 1", 0},
        {"nfsservctl errno 1", 0},
        {"quotactl errno 1", CAP(CAP_SYS_ADMIN)},
        {"quotactl_fd errno 1", CAP(CAP_SYS_ADMIN)},
        {"swapoff errno 1", 0},
        {"swapon errno 1", 0},
        {"syslog errno 1", CAP(CAP_SYS_ADMIN) | CAP(CAP_SYSLOG)},
        {"_sysctl errno 1", 0},
        {"sysfs errno 1", 0},
        {"ustat errno 1", 0},
        {"uselib errno 1", 0},
        {"vhangup errno 1", CAP(CAP_SYS_TTY_CONFIG)},
        {"# hardware and NUMA (CAP_SYS_RAWIO, CAP_SYS_NICE in Docker)", 0},
        {"ioperm errno 1", CAP(CAP_SYS_RAWIO)},
        {"iopl errno 1", CAP(CAP_SYS_RAWIO)},
        {"pciconfig_iobase errno 1", 0},
        {"pciconfig_read errno 1", 0},
        {"pciconfig_write errno 1", 0},
        {"get_mempolicy errno 1", CAP(CAP_SYS_NICE)},
        {"mbind errno 1", CAP(CAP_SYS_NICE)},
        {"migrate_pages errno 1", 0},
        {"move_pages errno 1", 0},
        {"set_mempolicy errno 1", CAP(CAP_SYS_NICE)},
        {"set_mempolicy_home_node errno 1", CAP(CAP_SYS_NICE)},
        {"# AF_ALG and AF_VSOCK sockets", 0},
        {"socket errno 1 [0,38,SCMP_CMP_EQ]", 0},
        {"socket errno 1 [0,40,SCMP_CMP_EQ]", 0},
        {"# obsolete or unimplemented, mostly i386 (Docker does not allow them)", 0},
        {"afs_syscall errno 1", 0},
        {"break errno 1", 0},
        {"ftime errno 1", 0},
        {"getpmsg errno 1", 0},
        {"gtty errno 1", 0},
        {"idle errno 1", 0},
        {"lock errno 1", 0},
        {"mpx errno 1", 0},
        {"nice errno 1", 0},
        {"oldfstat errno 1", 0},
        {"oldlstat errno 1", 0},
        {"oldolduname errno 1", 0},
        {"oldstat errno 1", 0},
        {"olduname errno 1", 0},
        {"prof errno 1", 0},
        {"profil errno 1", 0},
        {"putpmsg errno 1", 0},
        {"readdir errno 1", 0},
        {"security errno 1", 0},
        {"sgetmask errno 1", 0},
        {"sigaction errno 1", 0},
        {"signal errno 1", 0},
        {"sigpending errno 1", 0},
        {"sigsuspend errno 1", 0},
        {"ssetmask errno 1", 0},
        {"stty errno 1", 0},
        {"tuxcall errno 1", 0},
        {"ulimit errno 1", 0},
        {"vm86 errno 1", 0},
        {"vm86old errno 1", 0},
        {"vserver errno 1", 0},
};

int lxc_seccomp_runtime_default(uint64_t caps, char **ret)
{
        size_t len = sizeof(rd_head), n;
        char *out;

        for (size_t i = 0; i < SH_ARRAY_SIZE(rd_lines); i++)
                if (!(rd_lines[i].unless & caps))
                        len += strlen(rd_lines[i].text) + 1;
        out = malloc(len);
        if (!out)
                return -ENOMEM;
        memcpy(out, rd_head, sizeof(rd_head));
        n = sizeof(rd_head) - 1;
        for (size_t i = 0; i < SH_ARRAY_SIZE(rd_lines); i++) {
                size_t l = strlen(rd_lines[i].text);

                if (rd_lines[i].unless & caps)
                        continue;
                memcpy(out + n, rd_lines[i].text, l);
                out[n + l] = '\n';
                n += l + 1;
        }
        out[n] = '\0';
        *ret = out;
        return 0;
}

/* ---- OCI JSON -> LXC text ---- */

#define WHAT      "seccomp profile"
#define ERRNO_MAX 4095 /* MAX_ERRNO: the kernel clamps larger SECCOMP_RET_ERRNO data */

enum act_kind {
        ACT_ALLOW,
        ACT_ERRNO,
        ACT_KILL,
        ACT_TRAP,
        ACT_UNSUPPORTED,
};

struct act {
        enum act_kind kind;
        int errnum; /* ACT_ERRNO only */
};

static const struct {
        const char *oci;
        enum act_kind kind;
} act_table[] = {
        {"SCMP_ACT_ALLOW", ACT_ALLOW},
        {"SCMP_ACT_LOG", ACT_ALLOW}, /* allow and audit-log: liblxc cannot log, so allow */
        {"SCMP_ACT_ERRNO", ACT_ERRNO},
        {"SCMP_ACT_KILL", ACT_KILL},
        {"SCMP_ACT_KILL_THREAD", ACT_KILL},
        {"SCMP_ACT_KILL_PROCESS", ACT_KILL}, /* liblxc has only KILL_THREAD */
        {"SCMP_ACT_TRAP", ACT_TRAP},
        {"SCMP_ACT_TRACE", ACT_UNSUPPORTED},  /* no tracer; liblxc has no trace action */
        {"SCMP_ACT_NOTIFY", ACT_UNSUPPORTED}, /* needs lxc.seccomp.notify.proxy */
};

static const char *const op_table[] = {
        "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",        "SCMP_CMP_EQ",
        "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
};

struct arg {
        unsigned index;
        uint64_t value, value_two;
        const char *op; /* static, from op_table */
};

/* A growing NUL-terminated string. */
struct buf {
        char *s;
        size_t len, cap;
};

static void buf_done(struct buf *b)
{
        free(b->s);
        *b = (struct buf){0};
}

static int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int buf_printf(struct buf *b, const char *fmt, ...)
{
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if (b->len + (size_t)n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                char *s;

                while (cap < b->len + (size_t)n + 1)
                        cap *= 2;
                s = realloc(b->s, cap);
                if (!s)
                        return -ENOMEM;
                b->s = s;
                b->cap = cap;
        }
        va_start(ap, fmt);
        vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
        return 0;
}

/* The rules written so far, as "NAME ARGS" keys, to drop repeats. */
struct seen {
        uint64_t *hash;
        char **key;
        size_t n, cap;
};

static void seen_done(struct seen *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->key[i]);
        free(s->key);
        free(s->hash);
        *s = (struct seen){0};
}

static uint64_t fnv1a(const char *s)
{
        uint64_t h = 0xcbf29ce484222325ULL;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
        return h;
}

/* 1 if (@name, @args) was seen before, else records it and returns 0; -ENOMEM. */
static int seen_check_add(struct seen *s, const char *name, const char *args)
{
        _cleanup_free_ char *key = sh_strdup_printf("%s %s", name, args);
        uint64_t h;

        if (!key)
                return -ENOMEM;
        h = fnv1a(key);
        for (size_t i = 0; i < s->n; i++)
                if (s->hash[i] == h && strcmp(s->key[i], key) == 0)
                        return 1;
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 64;
                uint64_t *nh = realloc(s->hash, cap * sizeof(*nh));
                char **nk;

                if (!nh)
                        return -ENOMEM;
                s->hash = nh;
                nk = realloc(s->key, cap * sizeof(*nk));
                if (!nk)
                        return -ENOMEM;
                s->key = nk;
                s->cap = cap;
        }
        s->hash[s->n] = h;
        s->key[s->n] = TAKE_PTR(key);
        s->n++;
        return 0;
}

static bool act_equal(const struct act *a, const struct act *b)
{
        return a->kind == b->kind && (a->kind != ACT_ERRNO || a->errnum == b->errnum);
}

static int act_format(const struct act *a, char *out, size_t size)
{
        switch (a->kind) {
        case ACT_ALLOW:
                return snprintf(out, size, "allow");
        case ACT_ERRNO:
                return snprintf(out, size, "errno %d", a->errnum);
        case ACT_KILL:
                return snprintf(out, size, "kill");
        case ACT_TRAP:
                return snprintf(out, size, "trap");
        case ACT_UNSUPPORTED:
                break;
        }
        return -EINVAL;
}

/*
 * Reads the optional errno key @key of @obj into @ret (-1 when absent), checking its range.
 * @what names @obj in messages.
 */
static int get_errno(json_object *obj, const char *key, const char *what, int *ret,
                     struct sh_error *err)
{
        int64_t v;
        int r = sh_json_get_int64(obj, key, what, &v, err);

        if (r == -ENOENT) {
                sh_err_clear(err);
                *ret = -1;
                return 0;
        }
        if (r == -ERANGE)
                return sh_err(err, -EINVAL, "%s.%s is out of range (0-%d)", what, key, ERRNO_MAX);
        if (r < 0)
                return r;
        if (v < 0 || v > ERRNO_MAX)
                return sh_err(err, -EINVAL, "%s.%s %" PRId64 " is out of range (0-%d)", what, key,
                              v, ERRNO_MAX);
        *ret = (int)v;
        return 0;
}

/*
 * Maps the OCI action string @name (field @field of @what) with its errno (-1: absent) to an
 * LXC action. An errno is only valid with SCMP_ACT_ERRNO (OCI: the runtime must fail); a
 * missing one means EPERM.
 */
static int parse_act(const char *name, int errnum, const char *what, const char *field,
                     const char *errno_field, struct act *ret, struct sh_error *err)
{
        for (size_t i = 0; i < SH_ARRAY_SIZE(act_table); i++) {
                if (strcmp(name, act_table[i].oci) != 0)
                        continue;
                if (act_table[i].kind == ACT_UNSUPPORTED)
                        return sh_err(err, -EOPNOTSUPP, "%s.%s '%s' is not supported by liblxc",
                                      what, field, name);
                if (act_table[i].kind != ACT_ERRNO && errnum >= 0)
                        return sh_err(err, -EINVAL, "%s.%s is only valid with SCMP_ACT_ERRNO", what,
                                      errno_field);
                ret->kind = act_table[i].kind;
                ret->errnum = act_table[i].kind == ACT_ERRNO ? (errnum >= 0 ? errnum : EPERM) : 0;
                return 0;
        }
        return sh_err(err, -EINVAL, "%s.%s '%s' is not known", what, field, name);
}

/* Like sh_json_get_int64, for OCI's uint64 fields: negative is -EINVAL, > INT64_MAX fine. */
static int get_u64(json_object *obj, const char *key, const char *what, uint64_t *ret,
                   struct sh_error *err)
{
        json_object *v = NULL;
        int64_t i;
        int r = sh_json_get_int64(obj, key, what, &i, err);

        if (r == -ERANGE && json_object_object_get_ex(obj, key, &v)) {
                /* json-c holds it as a uint64 (and clamps anything above UINT64_MAX). */
                sh_err_clear(err);
                *ret = json_object_get_uint64(v);
                return 0;
        }
        if (r < 0)
                return r;
        if (i < 0)
                return sh_err(err, -EINVAL, "%s.%s %" PRId64 " is negative", what, key, i);
        *ret = (uint64_t)i;
        return 0;
}

/* A required key: absent is -EINVAL, not -ENOENT, with the field named. */
static int required(int r, const char *what, const char *key, struct sh_error *err)
{
        if (r == -ENOENT)
                return sh_err(err, -EINVAL, "%s.%s is missing", what, key);
        return r;
}

/* Optional array key @key whose elements must all be of type @type (type check only). */
static int check_array_of(json_object *obj, const char *key, json_type type, struct sh_error *err)
{
        json_object *a = NULL;
        int r = sh_json_get_array(obj, key, WHAT, &a, err);

        if (r == -ENOENT) {
                sh_err_clear(err);
                return 0;
        }
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_object_array_length(a); i++)
                if (!json_object_is_type(json_object_array_get_idx(a, i), type))
                        return sh_err(err, -EINVAL, WHAT ": %s[%zu] must be %s, got %s", key, i,
                                      json_type_to_name(type),
                                      json_type_to_name(json_object_get_type(
                                              json_object_array_get_idx(a, i))));
        return 0;
}

/* libseccomp's names are [a-z0-9_]; anything else could break the line-based format. */
static bool valid_name(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > 64)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return true;
}

static int parse_arg(json_object *o, const char *what, struct arg *ret, struct sh_error *err)
{
        const char *op = NULL;
        int64_t index;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return sh_err(err, -EINVAL, "%s must be an object, got %s", what,
                              json_type_to_name(json_object_get_type(o)));
        r = required(sh_json_get_int64(o, "index", what, &index, err), what, "index", err);
        if (r == -ERANGE)
                return sh_err(err, -EINVAL, "%s.index is out of range (0-5)", what);
        if (r < 0)
                return r;
        if (index < 0 || index > 5)
                return sh_err(err, -EINVAL, "%s.index %" PRId64 " is out of range (0-5)", what,
                              index);
        r = required(get_u64(o, "value", what, &ret->value, err), what, "value", err);
        if (r < 0)
                return r;
        ret->value_two = 0;
        r = get_u64(o, "valueTwo", what, &ret->value_two, err);
        if (r == -ENOENT)
                sh_err_clear(err);
        else if (r < 0)
                return r;
        r = required(sh_json_get_string(o, "op", what, &op, err), what, "op", err);
        if (r < 0)
                return r;
        ret->op = NULL;
        for (size_t i = 0; i < SH_ARRAY_SIZE(op_table); i++)
                if (strcmp(op, op_table[i]) == 0)
                        ret->op = op_table[i];
        if (!ret->op)
                return sh_err(err, -EINVAL, "%s.op '%s' is not known", what, op);
        ret->index = (unsigned)index;
        return 0;
}

/* Appends @a in liblxc's bracket form (see the MASKED_EQ note at the top) to @b. */
static int format_arg(struct buf *b, const struct arg *a)
{
        if (strcmp(a->op, "SCMP_CMP_MASKED_EQ") == 0)
                return buf_printf(b, "%s[%u,%" PRIu64 ",%s,%" PRIu64 "]", b->len ? " " : "",
                                  a->index, a->value_two, a->op, a->value);
        return buf_printf(b, "%s[%u,%" PRIu64 ",%s]", b->len ? " " : "", a->index, a->value, a->op);
}

/* The state of one conversion. */
struct conv {
        struct act def;
        struct buf out;
        struct seen seen;
        size_t rules;       /* (name, argument set) pairs read, written or not */
        bool names_umount2; /* some rule names umount2 */
};

/* Writes the rule @name @act @args once, counting it against the limit. */
static int emit(struct conv *c, const char *name, const struct act *act, const char *args,
                struct sh_error *err)
{
        char word[32];
        int r;

        if (++c->rules > LXC_SECCOMP_RULES_MAX)
                return sh_err(err, -E2BIG,
                              WHAT ": more than %d rules (syscall names times argument sets)",
                              LXC_SECCOMP_RULES_MAX);
        /* libseccomp refuses a rule that repeats the default action. */
        if (act_equal(act, &c->def))
                return 0;
        /* liblxc would not look this up but install its own umount2(MNT_FORCE) rule. */
        if (strncmp(name, "reject_force_umount", strlen("reject_force_umount")) == 0)
                return 0;
        /*
         * First one wins for a repeated name and argument set: libseccomp keeps the first
         * action of an unconditional repeat and fails the start on a conditional one.
         */
        r = seen_check_add(&c->seen, name, args);
        if (r < 0)
                return sh_err(err, r, WHAT ": out of memory");
        if (r > 0)
                return 0;
        if (act_format(act, word, sizeof(word)) < 0)
                return sh_err(err, -EINVAL, WHAT ": internal: unformattable action");
        r = buf_printf(&c->out, "%s %s%s%s\n", name, word, args[0] ? " " : "", args);
        return r < 0 ? sh_err(err, r, WHAT ": out of memory") : 0;
}

/* Collects the names of syscalls[@i] (@e): "names" and the old single "name". */
static int entry_names(json_object *e, const char *what, const char ***ret, size_t *ret_n,
                       struct sh_error *err)
{
        _cleanup_free_ const char **v = NULL;
        json_object *names = NULL;
        const char *one = NULL;
        size_t n = 0, k = 0;
        int r;

        r = sh_json_get_array(e, "names", what, &names, err);
        if (r < 0 && r != -ENOENT)
                return r;
        r = sh_json_get_string(e, "name", what, &one, err);
        if (r < 0 && r != -ENOENT)
                return r;
        sh_err_clear(err);
        n = (names ? json_object_array_length(names) : 0) + (one ? 1 : 0);
        if (n == 0)
                return sh_err(err, -EINVAL, "%s has no names", what);
        if (n > LXC_SECCOMP_RULES_MAX)
                return sh_err(err, -E2BIG, "%s: more than %d rules (names)", what,
                              LXC_SECCOMP_RULES_MAX);
        v = calloc(n, sizeof(*v));
        if (!v)
                return sh_err(err, -ENOMEM, WHAT ": out of memory");
        for (size_t j = 0; names && j < json_object_array_length(names); j++) {
                json_object *s = json_object_array_get_idx(names, j);

                if (!json_object_is_type(s, json_type_string))
                        return sh_err(err, -EINVAL, "%s.names[%zu] must be a string, got %s", what,
                                      j, json_type_to_name(json_object_get_type(s)));
                v[k] = json_object_get_string(s);
                if (!valid_name(v[k]))
                        return sh_err(err, -EINVAL,
                                      "%s.names[%zu] '%s' is not a valid syscall name", what, j,
                                      v[k]);
                k++;
        }
        if (one) {
                if (!valid_name(one))
                        return sh_err(err, -EINVAL, "%s.name '%s' is not a valid syscall name",
                                      what, one);
                v[k++] = one;
        }
        *ret = TAKE_PTR(v);
        *ret_n = k;
        return 0;
}

static int convert_entry(struct conv *c, json_object *e, size_t i, struct sh_error *err)
{
        _cleanup_free_ const char **names = NULL;
        _cleanup_free_ struct arg *args = NULL;
        json_object *jargs = NULL;
        const char *action = NULL;
        size_t n_names = 0, n_args = 0;
        bool split = false;
        struct act act;
        char what[64];
        int errnum = -1, r;

        snprintf(what, sizeof(what), WHAT ": syscalls[%zu]", i);
        if (!json_object_is_type(e, json_type_object))
                return sh_err(err, -EINVAL, "%s must be an object, got %s", what,
                              json_type_to_name(json_object_get_type(e)));
        r = entry_names(e, what, &names, &n_names, err);
        if (r < 0)
                return r;
        for (size_t k = 0; k < n_names; k++)
                if (strcmp(names[k], "umount2") == 0)
                        c->names_umount2 = true;
        r = required(sh_json_get_string(e, "action", what, &action, err), what, "action", err);
        if (r < 0)
                return r;
        r = get_errno(e, "errnoRet", what, &errnum, err);
        if (r < 0)
                return r;
        r = parse_act(action, errnum, what, "action", "errnoRet", &act, err);
        if (r < 0)
                return r;

        r = sh_json_get_array(e, "args", what, &jargs, err);
        if (r < 0 && r != -ENOENT)
                return r;
        sh_err_clear(err);
        n_args = jargs ? json_object_array_length(jargs) : 0;
        if (n_args > LXC_SECCOMP_RULES_MAX)
                return sh_err(err, -E2BIG, "%s: more than %d rules (args)", what,
                              LXC_SECCOMP_RULES_MAX);
        if (n_args > 0) {
                unsigned used = 0;

                args = calloc(n_args, sizeof(*args));
                if (!args)
                        return sh_err(err, -ENOMEM, WHAT ": out of memory");
                for (size_t j = 0; j < n_args; j++) {
                        char awhat[96];

                        snprintf(awhat, sizeof(awhat), "%s.args[%zu]", what, j);
                        r = parse_arg(json_object_array_get_idx(jargs, j), awhat, &args[j], err);
                        if (r < 0)
                                return r;
                        /*
                         * libseccomp takes one condition per argument in a rule; like runc,
                         * a repeated index turns the conditions into one rule each (OR).
                         */
                        if (used & (1u << args[j].index))
                                split = true;
                        used |= 1u << args[j].index;
                }
        }

        /* One argument set with every condition (AND), or one set per condition (OR). */
        for (size_t set = 0; set < (split ? n_args : 1); set++) {
                _cleanup_(buf_done) struct buf text = {0};

                for (size_t j = split ? set : 0; j < (split ? set + 1 : n_args); j++)
                        if (format_arg(&text, &args[j]) < 0)
                                return sh_err(err, -ENOMEM, WHAT ": out of memory");
                for (size_t k = 0; k < n_names; k++) {
                        r = emit(c, names[k], &act, text.s ? text.s : "", err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static void json_object_putp(json_object **o)
{
        if (*o) {
                json_object_put(*o);
                *o = NULL;
        }
}

int lxc_seccomp_from_oci(const char *json, size_t len, char **ret, struct sh_error *err)
{
        _cleanup_(json_object_putp) json_object *root = NULL;
        struct conv c = {0};
        json_object *syscalls = NULL;
        const char *def = NULL;
        char word[32];
        int errnum = -1, r;

        if (!ret)
                return sh_err(err, -EINVAL, WHAT ": no output");
        if (len > LXC_SECCOMP_PROFILE_MAX)
                return sh_err(err, -EFBIG, WHAT ": %zu bytes is more than the limit of %d", len,
                              LXC_SECCOMP_PROFILE_MAX);
        r = sh_json_parse(json, len, WHAT, &root, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(root, json_type_object))
                return sh_err(err, -EINVAL, WHAT ": must be a JSON object, got %s",
                              json_type_to_name(json_object_get_type(root)));

        r = required(sh_json_get_string(root, "defaultAction", WHAT, &def, err), WHAT,
                     "defaultAction", err);
        if (r < 0)
                return r;
        r = get_errno(root, "defaultErrnoRet", WHAT, &errnum, err);
        if (r < 0)
                return r;
        r = parse_act(def, errnum, WHAT, "defaultAction", "defaultErrnoRet", &c.def, err);
        if (r < 0)
                return r;
        /*
         * Checked for shape only: liblxc builds the filter for the host's ABI and its compat
         * ABIs whatever they say (see the top of this file), and has no filter flags.
         */
        if ((r = check_array_of(root, "architectures", json_type_string, err)) < 0 ||
            (r = check_array_of(root, "archMap", json_type_object, err)) < 0 ||
            (r = check_array_of(root, "flags", json_type_string, err)) < 0)
                return r;
        r = sh_json_get_array(root, "syscalls", WHAT, &syscalls, err);
        if (r < 0 && r != -ENOENT)
                return r;
        sh_err_clear(err);

        if (c.def.kind == ACT_ALLOW)
                r = buf_printf(&c.out, "2\ndenylist\n");
        else if (act_format(&c.def, word, sizeof(word)) >= 0)
                r = buf_printf(&c.out, "2\nallowlist %s\n", word);
        else
                r = -EINVAL;
        if (r >= 0)
                r = buf_printf(&c.out, "# converted by runt from an OCI seccomp profile\n[all]\n");
        if (r < 0) {
                buf_done(&c.out);
                return sh_err(err, r, WHAT ": out of memory");
        }
        for (size_t i = 0; syscalls && i < json_object_array_length(syscalls); i++) {
                r = convert_entry(&c, json_object_array_get_idx(syscalls, i), i, err);
                if (r < 0)
                        break;
        }
        /*
         * liblxc's init (lxc_container_init(), which is init.lxc and lxc-execute's PID 1)
         * umount2()s its own bind mount under the filter and ignores the error. Killed or
         * trapped (it forwards the SIGSYS to the workload), the container dies at start.
         * EPERM is what Docker's own profile gives umount2 without CAP_SYS_ADMIN.
         */
        if (r >= 0 && (c.def.kind == ACT_KILL || c.def.kind == ACT_TRAP) && !c.names_umount2 &&
            buf_printf(&c.out, "# liblxc's init umounts itself: EPERM, not the default\n"
                               "umount2 errno 1\n") < 0)
                r = sh_err(err, -ENOMEM, WHAT ": out of memory");
        seen_done(&c.seen);
        if (r < 0) {
                buf_done(&c.out);
                return r;
        }
        *ret = TAKE_PTR(c.out.s);
        return 0;
}
