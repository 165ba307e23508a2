#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/*
 * Runs an external program (skopeo, a CNI plugin, qemu-img ...) with execve argv only,
 * never a shell. The child gets stdin from @stdin_data (or /dev/null), a clean fd table
 * (only 0, 1, 2), and its own process group so a timeout kills the whole group.
 */
struct sh_exec_opts {
        const char *const *argv; /* argv[0]: a path, or a name searched in our own PATH */
        const char *const *envp; /* NULL: inherit the environment */
        const char *cwd;         /* NULL: inherit */
        const void *stdin_data;  /* NULL: /dev/null */
        size_t stdin_len;
        unsigned timeout_ms; /* 0: no timeout */
        size_t max_output;   /* cap per stream in bytes, 0: 16 MiB; beyond it output is dropped */
        size_t max_output_total; /* cap for stdout and stderr together, first come first kept;
                                    0: none */
        /*
         * Readable once the caller gives up (its client went away): the child's process group
         * is killed as on a timeout and sh_exec returns -ECANCELED. 0 or less: none (an
         * fd 0 is never one).
         */
        int cancel_fd;
        bool stderr_to_stdout; /* merge stderr into the stdout capture */
        /*
         * Optional watcher, called about every @watch_interval_ms (default 1000) while the
         * child runs, with the output captured so far. A negative return kills the child's
         * process group and sh_exec returns that value (with @ret filled); @err then says
         * only that the watcher stopped it, so the watcher keeps its own reason.
         */
        int (*watch)(void *data, const char *out, size_t out_len, const char *err, size_t err_len);
        void *watch_data;
        unsigned watch_interval_ms;
};

struct sh_exec_result {
        int status;     /* raw wait status */
        int exit_code;  /* WEXITSTATUS, or 128+signal when killed by a signal */
        bool timed_out; /* killed because timeout_ms elapsed */
        char *out;      /* captured stdout, NUL-terminated, owned by the result */
        size_t out_len;
        char *err; /* captured stderr, NUL-terminated, owned by the result */
        size_t err_len;
        size_t out_dropped; /* bytes read past the caps and dropped */
        size_t err_dropped;
};

/*
 * Runs @opts->argv, waits for it (up to the timeout, then SIGKILL to its process group) and
 * fills @ret. Returns 0 when the program ran (whatever its exit code), -ETIMEDOUT on timeout
 * or -ECANCELED on cancel_fd (with @ret filled), a watcher's negative return (with @ret
 * filled), or -errno when it could not be started (-ENOENT for a missing program); on other
 * errors @ret is untouched. Output a background grandchild keeps writing after the child
 * exited, or after it was killed, is read for 200 ms at most.
 * Thread-safe; blocks the caller. The process must not ignore SIGCHLD or reap with waitpid(-1), or
 * the child's status is lost (-ECHILD).
 */
int sh_exec(const struct sh_exec_opts *opts, struct sh_exec_result *ret, struct sh_error *err);

/* Frees the captures of @r and zeroes it; safe on a zeroed or already-freed result. */
void sh_exec_result_done(struct sh_exec_result *r);
