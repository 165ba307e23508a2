/*
 * common/exec.c against real programs (/bin/sh, cat, head, sleep). The shell appears only
 * here, to build child behaviour (background jobs, signals); sh_exec itself never uses one.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "exec.h"
#include "strutil.h"
#include "test_common.h"

#define MS 1000000ull

static int run(const char *const *argv, struct sh_exec_result *res, struct sh_error *err)
{
        return sh_exec(&(struct sh_exec_opts){.argv = argv, .timeout_ms = 20000}, res, err);
}

/* A process counts as gone once it is reaped or a zombie (PID 1 of a container may not reap). */
static bool proc_alive(pid_t pid)
{
        char path[64], *stat = NULL, *p;
        bool alive;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        if (sh_read_file(path, 4096, &stat, NULL) < 0)
                return false;
        p = strrchr(stat, ')');
        alive = p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
        free(stat);
        return alive;
}

static bool wait_gone(pid_t pid, unsigned ms)
{
        unsigned long long end = sh_now_ns() + ms * MS;

        while (proc_alive(pid)) {
                if (sh_now_ns() > end)
                        return false;
                nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
        }
        return true;
}

static void test_exec_exit_codes(void **state)
{
        const char *const t[] = {"/bin/true", NULL};
        const char *const f[] = {"/bin/false", NULL};
        const char *const e3[] = {"/bin/sh", "-c", "exit 3", NULL};
        const char *const sig[] = {"/bin/sh", "-c", "kill -9 $$", NULL};
        struct sh_exec_result res = {0};

        (void)state;
        assert_int_equal(run(t, &res, NULL), 0);
        assert_int_equal(res.exit_code, 0);
        assert_true(WIFEXITED(res.status));
        assert_false(res.timed_out);
        assert_string_equal(res.out, "");
        assert_string_equal(res.err, "");
        sh_exec_result_done(&res);

        assert_int_equal(run(f, &res, NULL), 0);
        assert_int_equal(res.exit_code, 1);
        sh_exec_result_done(&res);

        assert_int_equal(run(e3, &res, NULL), 0);
        assert_int_equal(res.exit_code, 3);
        sh_exec_result_done(&res);

        assert_int_equal(run(sig, &res, NULL), 0);
        assert_true(WIFSIGNALED(res.status));
        assert_int_equal(WTERMSIG(res.status), SIGKILL);
        assert_int_equal(res.exit_code, 128 + SIGKILL);
        sh_exec_result_done(&res);
        /* Done is idempotent and leaves a zeroed result. */
        sh_exec_result_done(&res);
        assert_null(res.out);
        sh_exec_result_done(NULL);
}

static void test_exec_captures_stdout_and_stderr(void **state)
{
        const char *const argv[] = {"/bin/sh", "-c", "printf 'to out\\n'; printf 'to err' >&2",
                                    NULL};
        const char *const seq[] = {"/bin/sh", "-c", "printf a; printf b >&2; printf c", NULL};
        struct sh_exec_result res = {0};

        (void)state;
        assert_int_equal(run(argv, &res, NULL), 0);
        assert_string_equal(res.out, "to out\n");
        assert_int_equal(res.out_len, 7);
        assert_string_equal(res.err, "to err");
        assert_int_equal(res.err_len, 6);
        sh_exec_result_done(&res);

        assert_int_equal(
                sh_exec(&(struct sh_exec_opts){.argv = seq, .stderr_to_stdout = true}, &res, NULL),
                0);
        assert_string_equal(res.out, "abc");
        assert_string_equal(res.err, "");
        assert_int_equal(res.err_len, 0);
        sh_exec_result_done(&res);
}

static void test_exec_feeds_stdin(void **state)
{
        const char *const cat[] = {"cat", NULL};
        static const char data[] = "hello\0world";
        struct sh_exec_result res = {0};

        (void)state;
        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = cat,
                                                        .stdin_data = data,
                                                        .stdin_len = sizeof(data) - 1},
                                 &res, NULL),
                         0);
        assert_int_equal(res.out_len, sizeof(data) - 1);
        assert_memory_equal(res.out, data, sizeof(data) - 1);
        sh_exec_result_done(&res);

        /* Without stdin data the child reads /dev/null and gets EOF at once. */
        assert_int_equal(
                sh_exec(&(struct sh_exec_opts){.argv = cat, .timeout_ms = 5000}, &res, NULL), 0);
        assert_int_equal(res.out_len, 0);
        assert_false(res.timed_out);
        sh_exec_result_done(&res);
}

static void test_exec_large_output(void **state)
{
        const char *const head[] = {"head", "-c", "3145728", "/dev/zero", NULL};
        const char *const cat[] = {"cat", NULL};
        const size_t n = 4u << 20;
        struct sh_exec_result res = {0};
        char *in = malloc(n);

        (void)state;
        assert_int_equal(run(head, &res, NULL), 0);
        assert_int_equal(res.exit_code, 0);
        assert_int_equal(res.out_len, 3145728);
        assert_int_equal(res.out[res.out_len - 1], 0);
        sh_exec_result_done(&res);

        /* 4 MiB in and out at once: both pipes fill up unless the parent polls both. */
        assert_non_null(in);
        for (size_t i = 0; i < n; i++)
                in[i] = (char)(i * 7 + i / 4096);
        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = cat,
                                                        .stdin_data = in,
                                                        .stdin_len = n,
                                                        .timeout_ms = 20000},
                                 &res, NULL),
                         0);
        assert_int_equal(res.exit_code, 0);
        assert_int_equal(res.out_len, n);
        assert_memory_equal(res.out, in, n);
        sh_exec_result_done(&res);
        free(in);
}

static void test_exec_output_cap_drops_excess(void **state)
{
        const char *const argv[] = {"/bin/sh", "-c",
                                    "head -c 2000000 /dev/zero; head -c 5000 /dev/zero >&2", NULL};
        struct sh_exec_result res = {0};

        (void)state;
        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = argv,
                                                        .max_output = 1000,
                                                        .timeout_ms = 20000},
                                 &res, NULL),
                         0);
        /* The child was drained to the end (it exited 0, not killed by a full pipe). */
        assert_int_equal(res.exit_code, 0);
        assert_false(res.timed_out);
        assert_int_equal(res.out_len, 1000);
        assert_int_equal(res.err_len, 1000);
        assert_int_equal(res.out[1000], '\0');
        sh_exec_result_done(&res);
}

static void test_exec_shared_cap_counts_what_it_drops(void **state)
{
        const char *const argv[] = {"/bin/sh", "-c",
                                    "head -c 5000 /dev/zero; head -c 5000 /dev/zero >&2; exit 4",
                                    NULL};
        struct sh_exec_result res = {0};

        (void)state;
        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = argv,
                                                        .max_output_total = 6000,
                                                        .timeout_ms = 20000},
                                 &res, NULL),
                         0);
        /* First come, first kept: stdout whole, stderr what is left. */
        assert_int_equal(res.exit_code, 4);
        assert_int_equal(res.out_len, 5000);
        assert_int_equal(res.err_len, 1000);
        assert_int_equal(res.out_dropped, 0);
        assert_int_equal(res.err_dropped, 4000);
        sh_exec_result_done(&res);
}

/* Makes the eventfd-like pipe of @arg readable after 200 ms. */
static void *cancel_later(void *arg)
{
        nanosleep(&(struct timespec){.tv_nsec = 200 * MS}, NULL);
        assert_int_equal(write(*(int *)arg, "x", 1), 1);
        return NULL;
}

static void test_exec_cancel_fd_kills(void **state)
{
        const char *const argv[] = {"/bin/sh", "-c", "sleep 10 & exec sleep 10", NULL};
        struct sh_exec_result res = {0};
        struct sh_error err = {0};
        unsigned long long t0 = sh_now_ns();
        pthread_t t;
        int p[2];

        (void)state;
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(pthread_create(&t, NULL, cancel_later, &p[1]), 0);
        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = argv,
                                                        .cancel_fd = p[0],
                                                        .timeout_ms = 20000},
                                 &res, &err),
                         -ECANCELED);
        pthread_join(t, NULL);
        assert_non_null(strstr(err.msg, "cancelled"));
        assert_false(res.timed_out);
        assert_int_equal(res.exit_code, 128 + SIGKILL);
        /* The kill came at once, and the drain did not wait out the background sleep. */
        assert_true(sh_now_ns() - t0 < 2000 * MS);
        sh_exec_result_done(&res);
        close(p[0]);
        close(p[1]);
}

static void test_exec_timeout_kills(void **state)
{
        const char *const argv[] = {"sleep", "10", NULL};
        struct sh_exec_result res = {0};
        struct sh_error err = {0};
        unsigned long long t0 = sh_now_ns(), dt;

        (void)state;
        assert_int_equal(
                sh_exec(&(struct sh_exec_opts){.argv = argv, .timeout_ms = 200}, &res, &err),
                -ETIMEDOUT);
        dt = sh_now_ns() - t0;
        assert_true(dt >= 200 * MS);
        assert_true(dt < 1500 * MS);
        assert_true(res.timed_out);
        assert_true(WIFSIGNALED(res.status));
        assert_int_equal(res.exit_code, 128 + SIGKILL);
        assert_non_null(res.out);
        assert_int_equal(err.code, -ETIMEDOUT);
        assert_non_null(strstr(err.msg, "sleep"));
        assert_non_null(strstr(err.msg, "timed out"));
        sh_exec_result_done(&res);
}

struct watch_log {
        int calls;
        int stop_after; /* return -ENOLINK on this call */
        size_t last_out;
};

static int watcher(void *data, const char *out, size_t out_len, const char *err, size_t err_len)
{
        struct watch_log *w = data;

        (void)out;
        (void)err;
        (void)err_len;
        w->last_out = out_len;
        return ++w->calls >= w->stop_after ? -ENOLINK : 0;
}

/* A watcher sees output as it comes and can stop the child; its errno is what sh_exec returns. */
static void test_exec_watch_stops_child(void **state)
{
        const char *const argv[] = {"/bin/sh", "-c", "echo hi; sleep 10", NULL};
        struct watch_log w = {.stop_after = 3};
        struct sh_exec_result res = {0};
        struct sh_error err = {0};
        unsigned long long t0 = sh_now_ns(), dt;

        (void)state;
        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = argv,
                                                        .watch = watcher,
                                                        .watch_data = &w,
                                                        .watch_interval_ms = 50},
                                 &res, &err),
                         -ENOLINK);
        dt = sh_now_ns() - t0;
        assert_int_equal(w.calls, 3);
        assert_true(dt >= 150 * MS);
        assert_true(dt < 1500 * MS);
        assert_int_equal(w.last_out, 3); /* "hi\n" was visible to the watcher */
        assert_int_equal(res.exit_code, 128 + SIGKILL);
        assert_string_equal(res.out, "hi\n");
        assert_non_null(strstr(err.msg, "watcher"));
        sh_exec_result_done(&res);

        /* A watcher that never objects changes nothing. */
        const char *const quick[] = {"/bin/sh", "-c", "sleep 0.2; echo done", NULL};
        w = (struct watch_log){.stop_after = 1000};
        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = quick,
                                                        .watch = watcher,
                                                        .watch_data = &w,
                                                        .watch_interval_ms = 20},
                                 &res, &err),
                         0);
        assert_true(w.calls >= 3);
        assert_string_equal(res.out, "done\n");
        sh_exec_result_done(&res);
}

static void test_exec_timeout_kills_process_group(void **state)
{
        /* The shell prints its background child's pid, then waits for it. */
        const char *const argv[] = {"/bin/sh", "-c", "sleep 30 & echo $!; wait", NULL};
        struct sh_exec_result res = {0};
        unsigned long long t0 = sh_now_ns();
        long bg;

        (void)state;
        assert_int_equal(
                sh_exec(&(struct sh_exec_opts){.argv = argv, .timeout_ms = 300}, &res, NULL),
                -ETIMEDOUT);
        assert_true(sh_now_ns() - t0 < 1500 * MS);
        assert_true(res.timed_out);
        bg = strtol(res.out, NULL, 10);
        assert_true(bg > 1);
        /* The grandchild was in the group and got the SIGKILL too. */
        assert_true(wait_gone((pid_t)bg, 2000));
        sh_exec_result_done(&res);
}

static void test_exec_background_holder_does_not_hang(void **state)
{
        /* sleep inherits stdout and keeps the pipe open for 5 s after the shell exits. */
        const char *const argv[] = {"/bin/sh", "-c", "sleep 5 & echo hi $!", NULL};
        struct sh_exec_result res = {0};
        unsigned timeouts[] = {0, 10000};

        (void)state;
        for (size_t i = 0; i < 2; i++) {
                unsigned long long t0 = sh_now_ns();
                long bg;

                assert_int_equal(
                        sh_exec(&(struct sh_exec_opts){.argv = argv, .timeout_ms = timeouts[i]},
                                &res, NULL),
                        0);
                assert_true(sh_now_ns() - t0 < 1500 * MS);
                assert_false(res.timed_out);
                assert_int_equal(res.exit_code, 0);
                assert_memory_equal(res.out, "hi ", 3);
                bg = strtol(res.out + 3, NULL, 10);
                assert_true(bg > 1);
                /* Not ours to keep: a normal exit leaves background jobs alone. */
                assert_true(proc_alive((pid_t)bg));
                kill((pid_t)bg, SIGKILL);
                sh_exec_result_done(&res);
        }
}

static void test_exec_missing_program(void **state)
{
        const char *const abs[] = {"/nonexistent/runt-nope", NULL};
        const char *const rel[] = {"runt-no-such-program", "arg", NULL};
        struct sh_exec_result res = {.exit_code = 4242};
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(run(abs, &res, &err), -ENOENT);
        assert_int_equal(err.code, -ENOENT);
        assert_non_null(strstr(err.msg, "/nonexistent/runt-nope"));
        /* The result is untouched on a failure to start. */
        assert_int_equal(res.exit_code, 4242);
        assert_null(res.out);

        assert_int_equal(run(rel, &res, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "runt-no-such-program"));
        assert_int_equal(res.exit_code, 4242);
}

static void test_exec_not_executable(void **state)
{
        char *dir = test_tmpdir_new();
        char *path = sh_path_join(dir, "script");
        const char *const argv[] = {path, NULL};
        struct sh_exec_result res = {0};
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(sh_write_file_atomic(path, "#!/bin/sh\necho x\n", 17, 0644), 0);
        assert_int_equal(run(argv, &res, &err), -EACCES);
        /* Executable but with no #! line: ENOEXEC, never retried through a shell. */
        assert_int_equal(sh_write_file_atomic(path, "echo x\n", 7, 0755), 0);
        assert_int_equal(run(argv, &res, &err), -ENOEXEC);
        free(path);
        test_tmpdir_remove(dir);
}

static void test_exec_rejects_empty_argv(void **state)
{
        const char *const empty[] = {NULL};
        const char *const blank[] = {"", NULL};
        struct sh_exec_result res = {0};
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = NULL}, &res, &err), -EINVAL);
        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = empty}, &res, &err), -EINVAL);
        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = blank}, &res, &err), -EINVAL);
}

static void test_exec_env_and_cwd(void **state)
{
        const char *const env_argv[] = {"/bin/sh", "-c", "printf '%s|%s' \"$RUNT_T\" \"$HOME\"",
                                        NULL};
        const char *const envp[] = {"RUNT_T=x y", NULL};
        const char *const pwd[] = {"/bin/sh", "-c", "pwd", NULL};
        struct sh_exec_result res = {0};
        struct sh_error err = {0};

        (void)state;
        assert_int_equal(
                sh_exec(&(struct sh_exec_opts){.argv = env_argv, .envp = envp}, &res, NULL), 0);
        assert_string_equal(res.out, "x y|");
        sh_exec_result_done(&res);

        assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = pwd, .cwd = "/proc"}, &res, NULL),
                         0);
        assert_string_equal(res.out, "/proc\n");
        sh_exec_result_done(&res);

        assert_int_equal(
                sh_exec(&(struct sh_exec_opts){.argv = pwd, .cwd = "/nonexistent-cwd"}, &res, &err),
                -ENOENT);
        assert_non_null(strstr(err.msg, "/nonexistent-cwd"));
}

static void test_exec_child_environment_is_clean(void **state)
{
        /* $$ is the shell, so this lists the fds the child was started with. */
        const char *const fds[] = {"/bin/sh", "-c", "ls /proc/$$/fd", NULL};
        const char *pgrp[] = {"/bin/sh",
                              "-c",
                              "read pid comm st ppid pgrp rest </proc/self/stat; "
                              "[ \"$pid\" = \"$pgrp\" ] && [ \"$pgrp\" != \"$1\" ]",
                              "sh",
                              NULL,
                              NULL};
        const char *const sigs[] = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL};
        struct sh_exec_result res = {0};
        struct sigaction ign = {.sa_handler = SIG_IGN}, old_term;
        sigset_t usr1, old_mask;
        unsigned long long ignored;
        char ourpgrp[32];
        int leak;

        (void)state;
        /* An fd opened without O_CLOEXEC must still not reach the child. */
        leak = open("/dev/null", O_RDONLY);
        assert_true(leak >= 3);
        assert_int_equal(run(fds, &res, NULL), 0);
        assert_string_equal(res.out, "0\n1\n2\n");
        sh_exec_result_done(&res);
        close(leak);

        /* Its own process group, not ours. */
        snprintf(ourpgrp, sizeof(ourpgrp), "%d", (int)getpgrp());
        pgrp[4] = ourpgrp;
        assert_int_equal(run(pgrp, &res, NULL), 0);
        assert_int_equal(res.exit_code, 0);
        sh_exec_result_done(&res);

        /* Neither our blocked signals nor our ignored ones are inherited. */
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &usr1, &old_mask);
        sigaction(SIGTERM, &ign, &old_term);
        assert_int_equal(run(sigs, &res, NULL), 0);
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        assert_memory_equal(res.out, "SigBlk:\t0000000000000000\nSigIgn:\t", 33);
        /*
         * libc's posix_spawn leaves its own internal signals (32, 33: below SIGRTMIN, never
         * used by programs) ignored on purpose; every other signal must be at its default.
         */
        ignored = strtoull(res.out + 33, NULL, 16);
        assert_true((ignored & ~((1ull << 31) | (1ull << 32))) == 0);
        assert_true((ignored & (1ull << (SIGTERM - 1))) == 0);
        sh_exec_result_done(&res);
}

static void test_exec_stdin_unread_no_sigpipe(void **state)
{
        const char *const t[] = {"/bin/true", NULL};
        const size_t n = 8u << 20;
        struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
        struct sh_exec_result res = {0};
        sigset_t pending;
        char *in = calloc(1, n);

        (void)state;
        assert_non_null(in);
        /* With the default disposition a stray SIGPIPE would kill this test binary. */
        sigaction(SIGPIPE, &dfl, &old);
        for (int i = 0; i < 5; i++) {
                assert_int_equal(sh_exec(&(struct sh_exec_opts){.argv = t,
                                                                .stdin_data = in,
                                                                .stdin_len = n,
                                                                .timeout_ms = 10000},
                                         &res, NULL),
                                 0);
                assert_int_equal(res.exit_code, 0);
                sh_exec_result_done(&res);
        }
        sigpending(&pending);
        assert_false(sigismember(&pending, SIGPIPE));
        sigaction(SIGPIPE, &old, NULL);
        free(in);
}

static void test_exec_no_fd_leak(void **state)
{
        const char *const cat[] = {"cat", NULL};
        const char *const missing[] = {"/nonexistent/runt-nope", NULL};
        const char *const sleeper[] = {"sleep", "5", NULL};
        struct sh_exec_result res = {0};
        int before = test_count_fds();

        (void)state;
        for (int i = 0; i < 100; i++) {
                struct sh_exec_opts o = {.argv = cat, .timeout_ms = 10000};
                int r;

                if (i % 2)
                        o.stdin_data = "abc", o.stdin_len = 3;
                if (i % 3 == 0)
                        o.stderr_to_stdout = true;
                if (i % 10 == 0)
                        o.argv = missing;
                if (i % 25 == 1)
                        o.argv = sleeper, o.timeout_ms = 20;
                r = sh_exec(&o, &res, NULL);
                if (o.argv == missing)
                        assert_int_equal(r, -ENOENT);
                else if (o.argv == sleeper)
                        assert_int_equal(r, -ETIMEDOUT);
                else
                        assert_int_equal(r, 0);
                sh_exec_result_done(&res);
        }
        assert_int_equal(test_count_fds(), before);
}

#define THREADS 8
#define RUNS    25

struct thread_arg {
        int id;
        int failures;
};

static void *exec_thread(void *p)
{
        struct thread_arg *a = p;
        const char *const cat[] = {"cat", NULL};

        for (int i = 0; i < RUNS; i++) {
                struct sh_exec_result res = {0};
                char in[64];
                int n = snprintf(in, sizeof(in), "thread %d run %d", a->id, i);

                if (sh_exec(&(struct sh_exec_opts){.argv = cat,
                                                   .stdin_data = in,
                                                   .stdin_len = (size_t)n,
                                                   .timeout_ms = 20000},
                            &res, NULL) != 0 ||
                    res.exit_code != 0 || res.out_len != (size_t)n || memcmp(res.out, in, n) != 0)
                        a->failures++;
                sh_exec_result_done(&res);
        }
        return NULL;
}

static void test_exec_concurrent_threads(void **state)
{
        pthread_t th[THREADS];
        struct thread_arg args[THREADS];
        int before = test_count_fds();

        (void)state;
        for (int i = 0; i < THREADS; i++) {
                args[i] = (struct thread_arg){.id = i};
                assert_int_equal(pthread_create(&th[i], NULL, exec_thread, &args[i]), 0);
        }
        for (int i = 0; i < THREADS; i++) {
                assert_int_equal(pthread_join(th[i], NULL), 0);
                assert_int_equal(args[i].failures, 0);
        }
        assert_int_equal(test_count_fds(), before);
}

int test_exec_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_exec_exit_codes),
                cmocka_unit_test(test_exec_captures_stdout_and_stderr),
                cmocka_unit_test(test_exec_feeds_stdin),
                cmocka_unit_test(test_exec_large_output),
                cmocka_unit_test(test_exec_output_cap_drops_excess),
                cmocka_unit_test(test_exec_timeout_kills),
                cmocka_unit_test(test_exec_timeout_kills_process_group),
                cmocka_unit_test(test_exec_watch_stops_child),
                cmocka_unit_test(test_exec_background_holder_does_not_hang),
                cmocka_unit_test(test_exec_missing_program),
                cmocka_unit_test(test_exec_not_executable),
                cmocka_unit_test(test_exec_rejects_empty_argv),
                cmocka_unit_test(test_exec_env_and_cwd),
                cmocka_unit_test(test_exec_child_environment_is_clean),
                cmocka_unit_test(test_exec_stdin_unread_no_sigpipe),
                cmocka_unit_test(test_exec_no_fd_leak),
                cmocka_unit_test(test_exec_concurrent_threads),
                cmocka_unit_test(test_exec_shared_cap_counts_what_it_drops),
                cmocka_unit_test(test_exec_cancel_fd_kills),
        };

        return cmocka_run_group_tests_name("exec", tests, NULL, NULL);
}
