/* common/notify.c (sd_notify), common/helpercg*.c (helper cgroups) and sh_find_helper. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"
#include "helpercg.h"
#include "notify.h"
#include "strutil.h"
#include "test_common.h"

/* A datagram socket standing in for the service manager: bound at @path, or abstract. */
static int manager(const char *path, bool abstract)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        socklen_t len;

        assert_true(fd >= 0);
        if (abstract) {
                memcpy(sa.sun_path + 1, path, strlen(path));
                len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path));
        } else {
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
                len = sizeof(sa);
        }
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
        return fd;
}

static void expect_datagram(int fd, const char *want)
{
        char buf[512];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

        assert_true(n >= 0);
        buf[n] = '\0';
        assert_string_equal(buf, want);
}

static void test_notify_path_socket(void **state)
{
        char *dir = test_tmpdir_new();
        _cleanup_free_ char *path = sh_path_join(dir, "notify");
        struct sh_notify n;
        int fd = manager(path, false);

        (void)state;
        setenv("NOTIFY_SOCKET", path, 1);
        assert_int_equal(sh_notify_init(&n), 0);
        /* Taken out of the environment: nothing runtd starts inherits it. */
        assert_null(getenv("NOTIFY_SOCKET"));
        assert_int_equal(sh_notify_send(&n, "READY=1\nSTATUS=serving"), 0);
        expect_datagram(fd, "READY=1\nSTATUS=serving");
        assert_int_equal(sh_notify_send(&n, "STOPPING=1"), 0);
        expect_datagram(fd, "STOPPING=1");
        close(fd);
        /* The manager gone: an error, never a crash or a block. */
        unlink(path);
        assert_int_equal(sh_notify_send(&n, "READY=1"), -ENOENT);
        test_tmpdir_remove(dir);
}

static void test_notify_abstract_socket(void **state)
{
        char name[64], env[66];
        struct sh_notify n;
        int fd;

        (void)state;
        snprintf(name, sizeof(name), "runt-unit-notify-%d", (int)getpid());
        snprintf(env, sizeof(env), "@%s", name);
        fd = manager(name, true);
        setenv("NOTIFY_SOCKET", env, 1);
        assert_int_equal(sh_notify_init(&n), 0);
        assert_int_equal(sh_notify_send(&n, "READY=1"), 0);
        expect_datagram(fd, "READY=1");
        close(fd);
}

static void test_notify_off_and_bad(void **state)
{
        struct sh_notify n;

        (void)state;
        unsetenv("NOTIFY_SOCKET");
        assert_int_equal(sh_notify_init(&n), 0);
        assert_int_equal(sh_notify_send(&n, "READY=1"), 0); /* no manager: nothing */
        assert_int_equal(sh_notify_send(NULL, "READY=1"), 0);
        for (size_t i = 0; i < 3; i++) {
                static const char *const bad[] = {"relative/path", "@", "x"};

                setenv("NOTIFY_SOCKET", bad[i], 1);
                assert_int_equal(sh_notify_init(&n), -EINVAL);
                assert_null(getenv("NOTIFY_SOCKET"));
                assert_int_equal(sh_notify_send(&n, "READY=1"), 0); /* stays off */
        }
        {
                char longp[200];

                memset(longp, 'a', sizeof(longp) - 1);
                longp[0] = '/';
                longp[sizeof(longp) - 1] = '\0';
                setenv("NOTIFY_SOCKET", longp, 1);
                assert_int_equal(sh_notify_init(&n), -EINVAL);
        }
}

/* The packaged layout: a helper beside the running binary is found, whatever the fallback. */
static void test_find_helper_beside_the_binary(void **state)
{
        char self[PATH_MAX], out[PATH_MAX], want[PATH_MAX + 64];
        ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
        char *slash;
        int fd;

        (void)state;
        assert_true(len > 0);
        self[len] = '\0';
        slash = strrchr(self, '/');
        assert_non_null(slash);
        *slash = '\0';
        snprintf(want, sizeof(want), "%s/runt-unit-helper-%d", self, (int)getpid());
        fd = open(want, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(sh_find_helper(strrchr(want, '/') + 1, "/nonexistent/x", out, sizeof(out)),
                         0);
        assert_string_equal(out, want);
        unlink(want);
        /* Neither beside it nor at the fallback: -ENOENT, the fallback named. */
        assert_int_equal(
                sh_find_helper("runt-unit-no-such-helper", "/nonexistent/y", out, sizeof(out)),
                -ENOENT);
        assert_string_equal(out, "/nonexistent/y");
}

static bool keep_none(const char *name, void *data)
{
        (void)name;
        (void)data;
        return false;
}

static bool keep_all(const char *name, void *data)
{
        (void)name;
        (void)data;
        return true;
}

/* A record line outside /sys/fs/cgroup (a damaged file) is dropped and never acted on. */
static void test_helpercg_record_is_checked(void **state)
{
        char *dir = test_tmpdir_new();
        _cleanup_free_ char *rec = sh_path_join(dir, "record");
        _cleanup_free_ char *victim = sh_path_join(dir, "runt-ctr-abc");
        _cleanup_free_ char *text = sh_strdup_printf("%s\n/sys/fs/cgroup/x/../../etc\n", victim);
        _cleanup_free_ char *after = NULL;
        struct sh_helpercg *h = NULL;
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(mkdir(victim, 0755), 0);
        assert_int_equal(sh_write_file_atomic(rec, text, strlen(text), 0600), 0);
        assert_int_equal(sh_helpercg_new(rec, &h, &err), 0);
        assert_int_equal(sh_helpercg_sweep(h, keep_all, NULL), 0);
        assert_int_equal(sh_read_file(rec, 4096, &after, NULL), 0);
        assert_string_equal(after, text); /* kept: their owners say so */
        assert_int_equal(sh_helpercg_sweep(h, keep_none, NULL), 2);
        assert_int_equal(access(victim, F_OK), 0); /* not removed */
        assert_int_equal(access(rec, F_OK), -1);   /* the record is empty now, and gone */
        /* Names are one plain component. */
        {
                char *dirs = NULL;

                assert_int_equal(sh_helpercg_make(h, "../x", &dirs, &err), -EINVAL);
                assert_int_equal(sh_helpercg_make(h, "", &dirs, &err), -EINVAL);
                assert_null(dirs);
        }
        assert_int_equal(sh_helpercg_remove(h, "runt-ctr-nothing", &err), 0);
        h = sh_helpercg_free(h);
        test_tmpdir_remove(dir);
}

static void test_helpercg_environ_and_join(void **state)
{
        _cleanup_strv_ char **env = NULL;
        char why[300] = "";
        size_t n = 0;
        int fds[2];

        (void)state;
        setenv(SH_HELPERCG_ENV, "old", 1);
        env = sh_helpercg_environ("/sys/fs/cgroup/a/runt-ctr-x\n/sys/fs/cgroup/b/runt-ctr-x");
        assert_non_null(env);
        for (char **e = env; *e; e++)
                if (strncmp(*e, SH_HELPERCG_ENV "=", strlen(SH_HELPERCG_ENV) + 1) == 0)
                        n++;
        assert_int_equal(n, 1);
        unsetenv(SH_HELPERCG_ENV);
        /* No variable: nothing to join. */
        assert_int_equal(sh_helpercg_join_env(why, sizeof(why)), 0);
        /* A dir that is not there: the error names it, the variable is gone. */
        setenv(SH_HELPERCG_ENV, "/nonexistent/runt-ctr-x", 1);
        assert_int_equal(sh_helpercg_join_env(why, sizeof(why)), -ENOENT);
        assert_non_null(strstr(why, "/nonexistent/runt-ctr-x"));
        assert_null(getenv(SH_HELPERCG_ENV));
        assert_int_equal(sh_helpercg_open_procs("/nonexistent/a", fds, 2), -ENOENT);
        assert_int_equal(sh_helpercg_open_procs("", fds, 2), 0);
        assert_int_equal(sh_helpercg_join_fds(fds, 0), 0);
}

int test_notify_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_notify_path_socket),
                cmocka_unit_test(test_notify_abstract_socket),
                cmocka_unit_test(test_notify_off_and_bad),
                cmocka_unit_test(test_find_helper_beside_the_binary),
                cmocka_unit_test(test_helpercg_record_is_checked),
                cmocka_unit_test(test_helpercg_environ_and_join),
        };

        return cmocka_run_group_tests_name("notify", tests, NULL, NULL);
}
