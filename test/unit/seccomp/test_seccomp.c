/* backends/lxc/seccomp.c: RuntimeDefault and OCI JSON -> LXC policy text, and its refusals. */
#include <errno.h>
#include <linux/capability.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cleanup.h"
#include "lxc/seccomp.h"
#include "strutil.h"

#define NUM "(0x[0-9a-f]+|[0-9]+)"
#define ARG                                                                                        \
        "\\[[0-5]," NUM ",SCMP_CMP_(NE|LT|LE|EQ|GE|GT)\\]|\\[[0-5]," NUM                           \
        ",SCMP_CMP_MASKED_EQ," NUM "\\]"
#define ACTION "(allow|kill|trap|errno [0-9]{1,4})"

/*
 * Checks @text against the subset of liblxc's v2 grammar we emit (seccomp.c, top comment):
 * what liblxc's parser would choke on (a trailing blank, arguments before an action, a
 * blank line) fails here.
 */
static void assert_lxc_grammar(const char *text)
{
        regex_t rule, head;
        _cleanup_free_ char *copy = strdup(text);
        char *save = NULL, *line;
        size_t n = 0, rules = 0;

        assert_non_null(copy);
        assert_int_equal(regcomp(&rule, "^[a-z0-9_]+ " ACTION "( (" ARG ")){0,6}$", REG_EXTENDED),
                         0);
        assert_int_equal(regcomp(&head, "^(denylist|allowlist " ACTION ")$", REG_EXTENDED), 0);
        assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
        assert_null(strstr(text, "\n\n"));
        for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
                if (n == 0) {
                        assert_string_equal(line, "2");
                } else if (n == 1) {
                        if (regexec(&head, line, 0, NULL, 0) != 0)
                                fail_msg("bad policy line '%s'", line);
                } else if (line[0] != '#' && strcmp(line, "[all]") != 0) {
                        if (regexec(&rule, line, 0, NULL, 0) != 0)
                                fail_msg("bad rule line '%s'", line);
                        rules++;
                }
        }
        assert_true(n >= 2);
        regfree(&rule);
        regfree(&head);
        (void)rules;
}

/* Converts @json, expecting success; returns the policy (caller frees). */
static char *conv_ok(const char *json)
{
        struct sh_error err = {0};
        char *out = NULL;
        int r = lxc_seccomp_from_oci(json, strlen(json), &out, &err);

        if (r != 0)
                fail_msg("conversion failed (%d): %s", r, err.msg);
        assert_non_null(out);
        assert_lxc_grammar(out);
        return out;
}

/* Converts @json, expecting error @code with @needle in the message; @ret is untouched. */
static void conv_fail(const char *json, int code, const char *needle)
{
        struct sh_error err = {0};
        char *out = (char *)0x1;
        int r = lxc_seccomp_from_oci(json, strlen(json), &out, &err);

        if (r != code)
                fail_msg("'%s': got %d (%s), want %d", json, r, err.msg, code);
        assert_int_equal(err.code, code);
        assert_ptr_equal(out, (char *)0x1);
        if (!strstr(err.msg, needle))
                fail_msg("'%s': message '%s' lacks '%s'", json, err.msg, needle);
}

#define HEAD_DENY     "2\ndenylist\n# converted by runt from an OCI seccomp profile\n[all]\n"
#define HEAD_ALLOW    "# converted by runt from an OCI seccomp profile\n[all]\n"
#define UMOUNT2_EPERM "# liblxc's init umounts itself: EPERM, not the default\numount2 errno 1\n"

#define CAP(n) (UINT64_C(1) << (n))
/* containerd's (and Docker's) default capability set. */
#define DEFAULT_CAPS                                                                               \
        (CAP(CAP_CHOWN) | CAP(CAP_DAC_OVERRIDE) | CAP(CAP_FSETID) | CAP(CAP_FOWNER) |              \
         CAP(CAP_MKNOD) | CAP(CAP_NET_RAW) | CAP(CAP_SETGID) | CAP(CAP_SETUID) |                   \
         CAP(CAP_SETFCAP) | CAP(CAP_SETPCAP) | CAP(CAP_NET_BIND_SERVICE) | CAP(CAP_SYS_CHROOT) |   \
         CAP(CAP_KILL) | CAP(CAP_AUDIT_WRITE))

/* RuntimeDefault for @caps, checked against the grammar (caller frees). */
static char *rd(uint64_t caps)
{
        char *p = NULL;

        assert_int_equal(lxc_seccomp_runtime_default(caps, &p), 0);
        assert_non_null(p);
        assert_lxc_grammar(p);
        assert_true(strncmp(p, "2\ndenylist\n", 11) == 0);
        return p;
}

/* Does policy @p hold rule line @rule (a whole line)? */
static bool has_line(const char *p, const char *rule)
{
        _cleanup_free_ char *line = sh_strdup_printf("\n%s\n", rule);

        return line && strstr(p, line);
}

/* Does policy @p hold any rule for syscall @name? */
static bool has_rule(const char *p, const char *name)
{
        _cleanup_free_ char *line = sh_strdup_printf("\n%s ", name);

        return line && strstr(p, line);
}

static void test_runtime_default(void **state)
{
        _cleanup_free_ char *p = rd(DEFAULT_CAPS);

        (void)state;
        assert_true(strncmp(p, "2\ndenylist\n", 11) == 0);
        const char *denied[] = {"kexec_load",
                                "kexec_file_load",
                                "open_by_handle_at",
                                "init_module",
                                "finit_module",
                                "delete_module",
                                "reboot",
                                "swapon",
                                "swapoff",
                                "mount",
                                "umount",
                                "umount2",
                                "pivot_root",
                                "unshare",
                                "setns",
                                "keyctl",
                                "add_key",
                                "request_key",
                                "bpf",
                                "perf_event_open",
                                "userfaultfd",
                                "acct",
                                "quotactl",
                                "lookup_dcookie",
                                "iopl",
                                "ioperm",
                                "create_module",
                                "get_kernel_syms",
                                "query_module",
                                "nfsservctl",
                                "settimeofday",
                                "stime",
                                "clock_settime",
                                "syslog",
                                "uselib",
                                "vm86",
                                "vm86old",
                                "fsopen",
                                "fsconfig",
                                "fsmount",
                                "move_mount",
                                "open_tree",
                                "fspick",
                                "mount_setattr",
                                "kcmp",
                                "io_uring_setup"};
        for (size_t i = 0; i < SH_ARRAY_SIZE(denied); i++) {
                _cleanup_free_ char *line = sh_strdup_printf("%s errno 1", denied[i]);

                if (!has_line(p, line))
                        fail_msg("RuntimeDefault does not deny %s", denied[i]);
        }
        /* Docker allows these to a container with its default capabilities. */
        const char *allowed[] = {"ptrace",   "process_vm_readv", "process_vm_writev",
                                 "chroot",   "personality",      "name_to_handle_at",
                                 "adjtimex", "clock_adjtime",    "setuid",
                                 "capset",   "execve",           "prctl"};
        for (size_t i = 0; i < SH_ARRAY_SIZE(allowed); i++)
                if (has_rule(p, allowed[i]))
                        fail_msg("RuntimeDefault denies %s", allowed[i]);
        assert_non_null(strstr(p, "\nclone3 errno 38\n"));
        assert_non_null(
                strstr(p, "\nclone errno 1 [0,0x10000000,SCMP_CMP_MASKED_EQ,0x10000000]\n"));
        assert_non_null(strstr(p, "\nsocket errno 1 [0,40,SCMP_CMP_EQ]\n"));
}

/* What each capability unlocks, as Docker's default profile has it (its includes.caps). */
static const struct {
        int cap;
        const char *names[24];
} unlocks[] = {
        {CAP_SYS_ADMIN, {"sethostname",    "setdomainname", "mount",       "umount",
                         "umount2",        "unshare",       "setns",       "fsopen",
                         "fsconfig",       "fsmount",       "fspick",      "move_mount",
                         "open_tree",      "mount_setattr", "bpf",         "perf_event_open",
                         "syslog",         "quotactl",      "quotactl_fd", "fanotify_init",
                         "lookup_dcookie", "clone",         "clone3",      NULL}},
        {CAP_SYS_PTRACE, {"kcmp", "pidfd_getfd", "process_madvise", NULL}},
        {CAP_SYS_BOOT, {"reboot", NULL}},
        {CAP_SYS_MODULE, {"init_module", "finit_module", "delete_module", NULL}},
        {CAP_SYS_TIME, {"settimeofday", "stime", "clock_settime", "clock_settime64", NULL}},
        {CAP_SYS_NICE,
         {"get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind", NULL}},
        {CAP_SYS_RAWIO, {"iopl", "ioperm", NULL}},
        {CAP_SYS_PACCT, {"acct", NULL}},
        {CAP_SYS_TTY_CONFIG, {"vhangup", NULL}},
        {CAP_SYSLOG, {"syslog", NULL}},
        {CAP_BPF, {"bpf", NULL}},
        {CAP_PERFMON, {"perf_event_open", NULL}},
        {CAP_SYS_CHROOT, {"chroot", NULL}},
        {CAP_DAC_READ_SEARCH, {"open_by_handle_at", NULL}},
};

/* Denied whatever the container holds (Docker allows them to no capability). */
static const char *const always[] = {
        "kexec_load",    "kexec_file_load", "create_module",  "query_module", "get_kernel_syms",
        "pivot_root",    "add_key",         "keyctl",         "request_key",  "userfaultfd",
        "swapon",        "swapoff",         "nfsservctl",     "uselib",       "io_uring_setup",
        "migrate_pages", "move_pages",      "pciconfig_read", "socket",       "vm86",
};

static void test_runtime_default_caps(void **state)
{
        _cleanup_free_ char *none = rd(0), *all = rd(UINT64_MAX), *dflt = rd(DEFAULT_CAPS);

        (void)state;
        /* Nothing held: every capability rule is in; the default set only lifts chroot. */
        for (size_t i = 0; i < SH_ARRAY_SIZE(unlocks); i++)
                for (size_t k = 0; unlocks[i].names[k]; k++) {
                        const char *name = unlocks[i].names[k];

                        if (!has_rule(none, name))
                                fail_msg("with no capability, %s is not denied", name);
                        if (has_rule(all, name))
                                fail_msg("with every capability, %s is denied", name);
                        if (has_rule(dflt, name) == (unlocks[i].cap == CAP_SYS_CHROOT))
                                fail_msg("with the default capabilities, %s is %s", name,
                                         has_rule(dflt, name) ? "denied" : "allowed");
                }
        for (size_t i = 0; i < SH_ARRAY_SIZE(always); i++) {
                if (!has_rule(all, always[i]))
                        fail_msg("with every capability, %s is allowed", always[i]);
                if (!has_rule(none, always[i]))
                        fail_msg("with no capability, %s is allowed", always[i]);
        }
        /* Each capability alone lifts its own rules and no other's (the syscalls Docker
         * unlocks for two, as bpf for CAP_SYS_ADMIN or CAP_BPF, need just one). */
        for (size_t i = 0; i < SH_ARRAY_SIZE(unlocks); i++) {
                _cleanup_free_ char *p = rd(DEFAULT_CAPS | CAP(unlocks[i].cap));

                for (size_t j = 0; j < SH_ARRAY_SIZE(unlocks); j++)
                        for (size_t k = 0; unlocks[j].names[k]; k++) {
                                const char *name = unlocks[j].names[k];
                                bool lifted = false;

                                for (size_t m = 0; unlocks[i].names[m]; m++)
                                        lifted |= strcmp(unlocks[i].names[m], name) == 0;
                                lifted |= unlocks[j].cap == CAP_SYS_CHROOT;
                                if (has_rule(p, name) == lifted)
                                        fail_msg("capability %d: %s is %s", unlocks[i].cap, name,
                                                 lifted ? "denied" : "allowed");
                        }
        }
        /* CAP_SYS_ADMIN: clone with namespace flags and clone3 are the kernel's business. */
        {
                _cleanup_free_ char *admin = rd(DEFAULT_CAPS | CAP(CAP_SYS_ADMIN));

                assert_false(has_rule(admin, "clone"));
                assert_false(has_rule(admin, "clone3"));
                assert_true(has_line(admin, "socket errno 1 [0,40,SCMP_CMP_EQ]"));
                assert_true(has_line(admin, "pivot_root errno 1"));
                assert_true(has_line(dflt, "clone3 errno 38"));
        }
        /* Every policy is the full one minus lines: nothing is added, order kept. */
        {
                const char *a = none, *b = all;

                while (*b) {
                        const char *eb = strchr(b, '\n'), *ea;

                        while ((ea = strchr(a, '\n')) && ((size_t)(ea - a) != (size_t)(eb - b) ||
                                                          memcmp(a, b, (size_t)(eb - b)) != 0))
                                a = ea + 1;
                        if (!ea)
                                fail_msg("line '%.*s' is not in the full policy", (int)(eb - b), b);
                        a = ea + 1;
                        b = eb + 1;
                }
        }
        /* Bits above the known capabilities change nothing. */
        {
                _cleanup_free_ char *hi = rd(DEFAULT_CAPS | (UINT64_C(1) << 63));

                assert_string_equal(hi, dflt);
        }
}

static void test_denylist(void **state)
{
        _cleanup_free_ char *out = NULL;

        (void)state;
        out = conv_ok("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": ["
                      "{\"names\": [\"mkdir\", \"mkdirat\"], \"action\": \"SCMP_ACT_ERRNO\"},"
                      "{\"names\": [\"getpid\"], \"action\": \"SCMP_ACT_ALLOW\"},"
                      "{\"names\": [\"reboot\"], \"action\": \"SCMP_ACT_KILL_PROCESS\"},"
                      "{\"names\": [\"ptrace\"], \"action\": \"SCMP_ACT_TRAP\"},"
                      "{\"names\": [\"acct\"], \"action\": \"SCMP_ACT_KILL\"},"
                      "{\"names\": [\"chroot\"], \"action\": \"SCMP_ACT_KILL_THREAD\"},"
                      "{\"names\": [\"uname\"], \"action\": \"SCMP_ACT_LOG\"}]}");
        assert_string_equal(out, HEAD_DENY "mkdir errno 1\nmkdirat errno 1\nreboot kill\n"
                                           "ptrace trap\nacct kill\nchroot kill\n");
}

static void test_denylist_defaults(void **state)
{
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        (void)state;
        /* No syscalls at all, a JSON null and an empty list: nothing is denied. */
        a = conv_ok("{\"defaultAction\": \"SCMP_ACT_ALLOW\"}");
        assert_string_equal(a, HEAD_DENY);
        b = conv_ok("{\"defaultAction\": \"SCMP_ACT_LOG\", \"syscalls\": null,"
                    " \"architectures\": [\"SCMP_ARCH_X86_64\", \"SCMP_ARCH_X86\"],"
                    " \"archMap\": [{\"architecture\": \"SCMP_ARCH_X86_64\","
                    " \"subArchitectures\": null}], \"flags\": [\"SECCOMP_FILTER_FLAG_LOG\"],"
                    " \"listenerPath\": \"\", \"comment\": 1}");
        assert_string_equal(b, HEAD_DENY);
        c = conv_ok("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": []}");
        assert_string_equal(c, HEAD_DENY);
}

static void test_allowlist(void **state)
{
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *f = NULL;

        (void)state;
        a = conv_ok("{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": ["
                    "{\"names\": [\"read\", \"write\"], \"action\": \"SCMP_ACT_ALLOW\"},"
                    "{\"names\": [\"open\"], \"action\": \"SCMP_ACT_ERRNO\"},"
                    "{\"names\": [\"clone3\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 38},"
                    "{\"names\": [\"kill\"], \"action\": \"SCMP_ACT_LOG\"},"
                    "{\"names\": [\"mount\"], \"action\": \"SCMP_ACT_KILL_PROCESS\"}]}");
        assert_string_equal(a, "2\nallowlist errno 1\n" HEAD_ALLOW
                               "read allow\nwrite allow\nclone3 errno 38\nkill allow\n"
                               "mount kill\n");
        /* defaultErrnoRet; a rule's ERRNO without errnoRet is EPERM, not the default's. */
        b = conv_ok("{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": 38,"
                    " \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"},"
                    "{\"names\": [\"open\"], \"action\": \"SCMP_ACT_ERRNO\"},"
                    "{\"names\": [\"stat\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 38},"
                    "{\"names\": [\"statx\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 0}]}");
        assert_string_equal(b, "2\nallowlist errno 38\n" HEAD_ALLOW
                               "read allow\nopen errno 1\nstatx errno 0\n");
        c = conv_ok("{\"defaultAction\": \"SCMP_ACT_KILL_PROCESS\", \"syscalls\": ["
                    "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"},"
                    "{\"names\": [\"exit\"], \"action\": \"SCMP_ACT_KILL\"}]}");
        /* A kill or trap default spares liblxc's init its umount2() of itself. */
        assert_string_equal(c, "2\nallowlist kill\n" HEAD_ALLOW "read allow\n" UMOUNT2_EPERM);
        d = conv_ok("{\"defaultAction\": \"SCMP_ACT_TRAP\", \"syscalls\": ["
                    "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"}]}");
        assert_string_equal(d, "2\nallowlist trap\n" HEAD_ALLOW "read allow\n" UMOUNT2_EPERM);
        /* ... unless the profile says what umount2 gets itself. */
        e = conv_ok("{\"defaultAction\": \"SCMP_ACT_KILL\", \"syscalls\": ["
                    "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"},"
                    "{\"names\": [\"umount2\"], \"action\": \"SCMP_ACT_KILL\"}]}");
        assert_string_equal(e, "2\nallowlist kill\n" HEAD_ALLOW "read allow\n");
        f = conv_ok("{\"defaultAction\": \"SCMP_ACT_TRAP\", \"syscalls\": [{\"names\":"
                    " [\"umount2\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 16}]}");
        assert_string_equal(f, "2\nallowlist trap\n" HEAD_ALLOW "umount2 errno 16\n");
}

static void test_old_name_form(void **state)
{
        _cleanup_free_ char *a = NULL;

        (void)state;
        /* Docker's pre-1.12 "name", alone or beside "names". */
        a = conv_ok(
                "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": ["
                "{\"name\": \"read\", \"action\": \"SCMP_ACT_ALLOW\", \"args\": []},"
                "{\"names\": [\"write\"], \"name\": \"close\", \"action\": \"SCMP_ACT_ALLOW\"}]}");
        assert_string_equal(a, "2\nallowlist errno 1\n" HEAD_ALLOW
                               "read allow\nwrite allow\nclose allow\n");
}

static void test_args(void **state)
{
        _cleanup_free_ char *a = NULL, *b = NULL;

        (void)state;
        a = conv_ok(
                "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": ["
                /* one condition */
                "{\"names\": [\"socket\"], \"action\": \"SCMP_ACT_ALLOW\","
                " \"args\": [{\"index\": 0, \"value\": 40, \"op\": \"SCMP_CMP_NE\"}]},"
                /* MASKED_EQ: OCI value is the mask, valueTwo the datum; LXC wants datum,op,mask */
                "{\"names\": [\"clone\"], \"action\": \"SCMP_ACT_ALLOW\","
                " \"args\": [{\"index\": 0, \"value\": 2114060288, \"valueTwo\": 0,"
                " \"op\": \"SCMP_CMP_MASKED_EQ\"}]},"
                "{\"names\": [\"ioctl\"], \"action\": \"SCMP_ACT_ALLOW\","
                " \"args\": [{\"index\": 1, \"value\": 255, \"valueTwo\": 84,"
                " \"op\": \"SCMP_CMP_MASKED_EQ\"}]},"
                /* distinct indexes: one rule, conditions ANDed, in profile order */
                "{\"names\": [\"mmap\", \"mprotect\"], \"action\": \"SCMP_ACT_ALLOW\","
                " \"args\": [{\"index\": 2, \"value\": 4, \"op\": \"SCMP_CMP_LE\"},"
                " {\"index\": 0, \"value\": 18446744073709551615, \"op\": \"SCMP_CMP_LT\"},"
                " {\"index\": 5, \"value\": 9223372036854775808, \"op\": \"SCMP_CMP_GE\"}]},"
                /* a repeated index: one rule per condition (ORed), like runc */
                "{\"names\": [\"personality\"], \"action\": \"SCMP_ACT_ALLOW\","
                " \"args\": [{\"index\": 0, \"value\": 0, \"op\": \"SCMP_CMP_EQ\"},"
                " {\"index\": 0, \"value\": 8, \"op\": \"SCMP_CMP_EQ\"},"
                " {\"index\": 1, \"value\": 3, \"op\": \"SCMP_CMP_GT\"}]}]}");
        assert_string_equal(
                a, "2\nallowlist errno 1\n" HEAD_ALLOW "socket allow [0,40,SCMP_CMP_NE]\n"
                   "clone allow [0,0,SCMP_CMP_MASKED_EQ,2114060288]\n"
                   "ioctl allow [1,84,SCMP_CMP_MASKED_EQ,255]\n"
                   "mmap allow [2,4,SCMP_CMP_LE] [0,18446744073709551615,SCMP_CMP_LT]"
                   " [5,9223372036854775808,SCMP_CMP_GE]\n"
                   "mprotect allow [2,4,SCMP_CMP_LE] [0,18446744073709551615,SCMP_CMP_LT]"
                   " [5,9223372036854775808,SCMP_CMP_GE]\n"
                   "personality allow [0,0,SCMP_CMP_EQ]\npersonality allow [0,8,SCMP_CMP_EQ]\n"
                   "personality allow [1,3,SCMP_CMP_GT]\n");
        /* Every op, in a denylist with an errno. */
        b = conv_ok("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": ["
                    "{\"names\": [\"kill\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 13,"
                    " \"args\": [{\"index\": 0, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"},"
                    " {\"index\": 1, \"value\": 2, \"op\": \"SCMP_CMP_NE\"},"
                    " {\"index\": 2, \"value\": 3, \"op\": \"SCMP_CMP_LT\"},"
                    " {\"index\": 3, \"value\": 4, \"op\": \"SCMP_CMP_LE\"},"
                    " {\"index\": 4, \"value\": 5, \"op\": \"SCMP_CMP_GT\"},"
                    " {\"index\": 5, \"value\": 6, \"op\": \"SCMP_CMP_GE\"}]}]}");
        assert_string_equal(b, HEAD_DENY "kill errno 13 [0,1,SCMP_CMP_EQ] [1,2,SCMP_CMP_NE]"
                                         " [2,3,SCMP_CMP_LT] [3,4,SCMP_CMP_LE] [4,5,SCMP_CMP_GT]"
                                         " [5,6,SCMP_CMP_GE]\n");
}

static void test_repeats_and_odd_names(void **state)
{
        _cleanup_free_ char *a = NULL;

        (void)state;
        /*
         * Same name and arguments again: written once, the first action wins. The default
         * action is never written (libseccomp: EACCES). Unknown names pass through (liblxc
         * skips them); reject_force_umount is liblxc's, not a syscall, and is dropped.
         */
        a = conv_ok("{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": ["
                    "{\"names\": [\"read\", \"read\"], \"action\": \"SCMP_ACT_ALLOW\"},"
                    "{\"names\": [\"write\"], \"action\": \"SCMP_ACT_ERRNO\"},"
                    "{\"names\": [\"write\"], \"action\": \"SCMP_ACT_ALLOW\"},"
                    "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 5},"
                    "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 5,"
                    " \"args\": [{\"index\": 0, \"value\": 3, \"op\": \"SCMP_CMP_EQ\"}]},"
                    "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_KILL\","
                    " \"args\": [{\"index\": 0, \"value\": 3, \"op\": \"SCMP_CMP_EQ\"}]},"
                    "{\"names\": [\"no_such_syscall_42\", \"reject_force_umount\"],"
                    " \"action\": \"SCMP_ACT_ALLOW\"}]}");
        assert_string_equal(a, "2\nallowlist errno 1\n" HEAD_ALLOW
                               "read allow\nwrite allow\nread errno 5 [0,3,SCMP_CMP_EQ]\n"
                               "no_such_syscall_42 allow\n");
}

static void test_docker_profile_shape(void **state)
{
        _cleanup_free_ char *out = NULL;

        (void)state;
        /* Docker's own format: includes/excludes/comment are ignored, like containerd does. */
        out = conv_ok(
                "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": 1,"
                " \"archMap\": [{\"architecture\": \"SCMP_ARCH_X86_64\","
                " \"subArchitectures\": [\"SCMP_ARCH_X86\", \"SCMP_ARCH_X32\"]}],"
                " \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\","
                " \"includes\": {\"minKernel\": \"4.8\"}, \"excludes\": {}, \"comment\": \"\"}]}");
        assert_string_equal(out, "2\nallowlist errno 1\n" HEAD_ALLOW "read allow\n");
}

static void test_refusals(void **state)
{
        (void)state;
        /* not a profile */
        conv_fail("", -EINVAL, "seccomp profile");
        conv_fail("{", -EINVAL, "seccomp profile: invalid JSON");
        conv_fail("{} x", -EINVAL, "trailing");
        conv_fail("[]", -EINVAL, "must be a JSON object");
        conv_fail("null", -EINVAL, "seccomp profile");
        conv_fail("{}", -EINVAL, "seccomp profile.defaultAction is missing");
        conv_fail("{\"defaultAction\": 1}", -EINVAL, "'defaultAction' must be string");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_NOPE\"}", -EINVAL,
                  "seccomp profile.defaultAction 'SCMP_ACT_NOPE' is not known");
        conv_fail("{\"defaultAction\": \"scmp_act_allow\"}", -EINVAL, "is not known");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_NOTIFY\"}", -EOPNOTSUPP,
                  "defaultAction 'SCMP_ACT_NOTIFY' is not supported by liblxc");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_TRACE\"}", -EOPNOTSUPP, "not supported");
        /* errno values */
        conv_fail("{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": 4096}", -EINVAL,
                  "defaultErrnoRet 4096 is out of range (0-4095)");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": -1}", -EINVAL,
                  "defaultErrnoRet -1 is out of range");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": "
                  "18446744073709551615}",
                  -EINVAL, "defaultErrnoRet is out of range");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": \"1\"}", -EINVAL,
                  "'defaultErrnoRet' must be int");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"defaultErrnoRet\": 1}", -EINVAL,
                  "defaultErrnoRet is only valid with SCMP_ACT_ERRNO");
        /* top-level arrays */
        conv_fail("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": {}}", -EINVAL,
                  "'syscalls' must be array");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"architectures\": \"x86\"}", -EINVAL,
                  "'architectures' must be array");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"architectures\": [1]}", -EINVAL,
                  "architectures[0] must be string");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"archMap\": [\"x\"]}", -EINVAL,
                  "archMap[0] must be object");
        conv_fail("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"flags\": [true]}", -EINVAL,
                  "flags[0] must be string");
}

#define DENY_WITH(entries) "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [" entries "]}"
#define OK_ENTRY           "{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ERRNO\"}"

static void test_entry_refusals(void **state)
{
        (void)state;
        /* the index in the message is the entry's */
        conv_fail(DENY_WITH(OK_ENTRY "," OK_ENTRY "," OK_ENTRY ","
                                     "{\"names\": [\"read\"], \"action\": \"X\"}"),
                  -EINVAL, "seccomp profile: syscalls[3].action 'X' is not known");
        conv_fail(DENY_WITH("1"), -EINVAL, "syscalls[0] must be an object, got int");
        conv_fail(DENY_WITH("{\"names\": [\"read\"]}"), -EINVAL, "syscalls[0].action is missing");
        conv_fail(DENY_WITH("{\"names\": [\"read\"], \"action\": 3}"), -EINVAL,
                  "syscalls[0]: key 'action' must be string");
        conv_fail(DENY_WITH("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_NOTIFY\"}"),
                  -EOPNOTSUPP, "syscalls[0].action 'SCMP_ACT_NOTIFY' is not supported");
        conv_fail(DENY_WITH("{\"action\": \"SCMP_ACT_ERRNO\"}"), -EINVAL,
                  "syscalls[0] has no names");
        conv_fail(DENY_WITH("{\"names\": [], \"action\": \"SCMP_ACT_ERRNO\"}"), -EINVAL,
                  "syscalls[0] has no names");
        conv_fail(DENY_WITH("{\"names\": \"read\", \"action\": \"SCMP_ACT_ERRNO\"}"), -EINVAL,
                  "syscalls[0]: key 'names' must be array");
        conv_fail(DENY_WITH("{\"name\": [\"read\"], \"action\": \"SCMP_ACT_ERRNO\"}"), -EINVAL,
                  "syscalls[0]: key 'name' must be string");
        conv_fail(DENY_WITH("{\"names\": [\"read\", 7], \"action\": \"SCMP_ACT_ERRNO\"}"), -EINVAL,
                  "syscalls[0].names[1] must be a string, got int");
        /* names that would break liblxc's line format, or are not libseccomp names */
        const char *bad_names[] = {
                "read write",
                "read\\nmount errno 1",
                "",
                "Read",
                "read[0",
                "a-b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
        for (size_t i = 0; i < SH_ARRAY_SIZE(bad_names); i++) {
                _cleanup_free_ char *j = sh_strdup_printf(
                        DENY_WITH("{\"names\": [\"%s\"], \"action\": \"SCMP_ACT_ERRNO\"}"),
                        bad_names[i]);

                conv_fail(j, -EINVAL, "syscalls[0].names[0] '");
        }
        conv_fail(DENY_WITH("{\"name\": \"a b\", \"action\": \"SCMP_ACT_ERRNO\"}"), -EINVAL,
                  "syscalls[0].name 'a b' is not a valid syscall name");
        /* errnoRet */
        conv_fail(DENY_WITH("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ERRNO\","
                            " \"errnoRet\": 70000}"),
                  -EINVAL, "syscalls[0].errnoRet 70000 is out of range (0-4095)");
        conv_fail(DENY_WITH("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_KILL\","
                            " \"errnoRet\": 1}"),
                  -EINVAL, "syscalls[0].errnoRet is only valid with SCMP_ACT_ERRNO");
        conv_fail(DENY_WITH("{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ERRNO\","
                            " \"errnoRet\": 1.5}"),
                  -EINVAL, "key 'errnoRet' must be int");
}

#define ARGS_WITH(args)                                                                            \
        DENY_WITH(OK_ENTRY                                                                         \
                  ",{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ERRNO\", \"args\": " args "}")

static void test_arg_refusals(void **state)
{
        (void)state;
        conv_fail(ARGS_WITH("{}"), -EINVAL, "syscalls[1]: key 'args' must be array");
        conv_fail(ARGS_WITH("[1]"), -EINVAL, "syscalls[1].args[0] must be an object, got int");
        conv_fail(ARGS_WITH("[{\"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]"), -EINVAL,
                  "syscalls[1].args[0].index is missing");
        conv_fail(ARGS_WITH("[{\"index\": 0, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"},"
                            " {\"index\": 6, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]"),
                  -EINVAL, "syscalls[1].args[1].index 6 is out of range (0-5)");
        conv_fail(ARGS_WITH("[{\"index\": -1, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]"), -EINVAL,
                  "args[0].index -1 is out of range");
        conv_fail(ARGS_WITH("[{\"index\": 18446744073709551615, \"value\": 1,"
                            " \"op\": \"SCMP_CMP_EQ\"}]"),
                  -EINVAL, "args[0].index is out of range");
        conv_fail(ARGS_WITH("[{\"index\": \"0\", \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]"), -EINVAL,
                  "args[0]: key 'index' must be int");
        conv_fail(ARGS_WITH("[{\"index\": 0, \"op\": \"SCMP_CMP_EQ\"}]"), -EINVAL,
                  "syscalls[1].args[0].value is missing");
        conv_fail(ARGS_WITH("[{\"index\": 0, \"value\": -2, \"op\": \"SCMP_CMP_EQ\"}]"), -EINVAL,
                  "syscalls[1].args[0].value -2 is negative");
        conv_fail(ARGS_WITH("[{\"index\": 0, \"value\": 1.0, \"op\": \"SCMP_CMP_EQ\"}]"), -EINVAL,
                  "args[0]: key 'value' must be int");
        conv_fail(ARGS_WITH("[{\"index\": 0, \"value\": 1, \"valueTwo\": \"2\","
                            " \"op\": \"SCMP_CMP_EQ\"}]"),
                  -EINVAL, "args[0]: key 'valueTwo' must be int");
        conv_fail(ARGS_WITH("[{\"index\": 0, \"value\": 1, \"valueTwo\": -1,"
                            " \"op\": \"SCMP_CMP_MASKED_EQ\"}]"),
                  -EINVAL, "args[0].valueTwo -1 is negative");
        conv_fail(ARGS_WITH("[{\"index\": 0, \"value\": 1}]"), -EINVAL,
                  "syscalls[1].args[0].op is missing");
        conv_fail(ARGS_WITH("[{\"index\": 0, \"value\": 1, \"op\": \"==\"}]"), -EINVAL,
                  "syscalls[1].args[0].op '==' is not known");
        conv_fail(ARGS_WITH("[{\"index\": 0, \"value\": 1, \"op\": \"SCMP_CMP_MASKED_NE\"}]"),
                  -EINVAL, "op 'SCMP_CMP_MASKED_NE' is not known");
}

static void test_limits(void **state)
{
        _cleanup_free_ char *big = NULL, *many = NULL, *out = NULL, *at = NULL;
        struct sh_error err = {0};
        size_t n = LXC_SECCOMP_PROFILE_MAX + 1, off;
        char *p;

        (void)state;
        /* Above 1 MiB: refused before parsing. */
        big = malloc(n);
        assert_non_null(big);
        memset(big, ' ', n);
        at = strdup("{\"defaultAction\": \"SCMP_ACT_ALLOW\"}");
        assert_non_null(at);
        memcpy(big, at, strlen(at));
        free(TAKE_PTR(at));
        assert_int_equal(lxc_seccomp_from_oci(big, n, &out, &err), -EFBIG);
        assert_null(out);
        assert_non_null(strstr(err.msg, "is more than the limit"));
        /* Exactly 1 MiB is fine. */
        sh_err_clear(&err);
        assert_int_equal(lxc_seccomp_from_oci(big, n - 1, &out, &err), 0);
        free(TAKE_PTR(out));

        /* 4096 rules pass, 4097 do not; names times argument sets count, repeats too. */
        many = malloc(128 + 4097 * 8);
        assert_non_null(many);
        off = (size_t)snprintf(many, 64,
                               "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": ["
                               "{\"names\": [");
        p = many + off;
        for (int i = 0; i < 4096; i++)
                p += snprintf(p, 8, "%s\"r%d\"", i ? "," : "", i % 100);
        at = strdup("], \"action\": \"SCMP_ACT_ERRNO\"}]}");
        assert_non_null(at);
        memcpy(p, at, strlen(at) + 1);
        sh_err_clear(&err);
        assert_int_equal(lxc_seccomp_from_oci(many, strlen(many), &out, &err), 0);
        free(TAKE_PTR(out));
        p += snprintf(p, 8, ",\"x\"");
        memcpy(p, at, strlen(at) + 1);
        sh_err_clear(&err);
        assert_int_equal(lxc_seccomp_from_oci(many, strlen(many), &out, &err), -E2BIG);
        assert_null(out);
        assert_non_null(strstr(err.msg, "more than 4096 rules"));

        /* No output pointer, no document. */
        assert_int_equal(lxc_seccomp_from_oci("{}", 2, NULL, &err), -EINVAL);
        assert_int_equal(lxc_seccomp_from_oci(NULL, 0, &out, NULL), -EINVAL);
        assert_null(out);
}

int main(void)
{
        const struct CMUnitTest t[] = {
                cmocka_unit_test(test_runtime_default),
                cmocka_unit_test(test_runtime_default_caps),
                cmocka_unit_test(test_denylist),
                cmocka_unit_test(test_denylist_defaults),
                cmocka_unit_test(test_allowlist),
                cmocka_unit_test(test_old_name_form),
                cmocka_unit_test(test_args),
                cmocka_unit_test(test_repeats_and_odd_names),
                cmocka_unit_test(test_docker_profile_shape),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_entry_refusals),
                cmocka_unit_test(test_arg_refusals),
                cmocka_unit_test(test_limits),
        };
        return cmocka_run_group_tests(t, NULL, NULL);
}
