/*
 * runt-init ARG...: PID 1 of an app container (bind-mounted at /dev/.runt-init).
 *
 * A pid namespace's init gets no signal it has no handler for, so a process run as PID 1
 * would ignore StopContainer's SIGTERM. This init runs ARG... as its child, hands it the
 * signals it gets (all but KILL, STOP and CHLD), reaps whatever is orphaned to it, and exits
 * with the child's exit code (128+signal when a signal ended it). Static: it runs in
 * whatever rootfs the image has.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child;

static void forward(int sig)
{
        if (child > 0)
                kill(child, sig);
}

int main(int argc, char **argv)
{
        struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
        sigset_t none, all;
        int st;

        if (argc < 2) {
                fprintf(stderr, "usage: runt-init ARG... (PID 1 of a runt container)\n");
                return 127;
        }
        sigemptyset(&none);
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        child = fork();
        if (child < 0) {
                fprintf(stderr, "runt-init: fork: %s\n", strerror(errno));
                return 127;
        }
        if (child == 0) {
                sigprocmask(SIG_SETMASK, &none, NULL);
                execvp(argv[1], argv + 1);
                fprintf(stderr, "runt-init: exec %s: %s\n", argv[1], strerror(errno));
                _exit(errno == ENOENT ? 127 : 126);
        }
        /* Every signal but those that cannot be caught and the children's own (as tini). */
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP && sig != SIGCHLD)
                        sigaction(sig, &sa, NULL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (;;) {
                pid_t p = waitpid(-1, &st, 0);

                if (p < 0 && errno == EINTR)
                        continue;
                if (p < 0)
                        return 127;
                if (p == child)
                        break;
        }
        if (WIFEXITED(st))
                return WEXITSTATUS(st);
        return 128 + WTERMSIG(st);
}
