/*
 * runt-init ARG...: what liblxc starts in an app container (bind-mounted at /dev/.runt-init).
 *
 * In a pid namespace of the container's own, runt-init is that namespace's PID 1 and execs
 * ARG... in its place, so that the command is PID 1 as with runc: /proc/1/cmdline is its
 * own, and it gets only the signals it has a handler for (the kernel keeps the others from
 * a namespace's init: a StopContainer's SIGTERM is answered by the SIGKILL after the grace
 * period). It first clears the signal mask and what was set to be ignored, which the
 * command would otherwise inherit from liblxc.
 *
 * In a pid namespace the container shares (the pod's; with NODE the host's) it is not PID 1.
 * There it runs ARG... as its child, hands it the signals it gets (all but KILL, STOP and
 * CHLD), reaps what is orphaned to it and exits with the child's exit code, 128+signal when
 * a signal ended it. liblxc, whose child it is, takes an init killed by SIGHUP for a reboot
 * request and would start the container again; an exit code never looks like one.
 *
 * An ARG[0] that cannot be run exits 127 (not found) or 126 with why on stderr, which is the
 * container's log. Static: it runs in whatever rootfs the image has.
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

/* Execs @argv with default signal dispositions and an empty mask; returns only on failure. */
static int run(char **argv)
{
        sigset_t none;

        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        signal(sig, SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(argv[0], argv);
        fprintf(stderr, "runt-init: exec %s: %s\n", argv[0], strerror(errno));
        return errno == ENOENT ? 127 : 126;
}

int main(int argc, char **argv)
{
        struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
        sigset_t none, all;
        int st;

        if (argc < 2) {
                fprintf(stderr, "usage: runt-init ARG... (the init of a runt container)\n");
                return 127;
        }
        if (getpid() == 1)
                return run(argv + 1);
        sigemptyset(&none);
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        child = fork();
        if (child < 0) {
                fprintf(stderr, "runt-init: fork: %s\n", strerror(errno));
                return 127;
        }
        if (child == 0)
                _exit(run(argv + 1));
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
