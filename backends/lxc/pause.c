/*
 * runt-pause: the process that holds a pod sandbox's namespaces. PID 1 of the sandbox: it
 * reaps whatever is reparented to it (shared pid namespaces) and exits on SIGTERM or SIGINT
 * (a pid namespace's init ignores signals it has no handler for). Linked statically so it
 * runs in a rootfs that holds nothing else.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t done;

static void on_stop(int sig)
{
        (void)sig;
        done = 1;
}

static void on_child(int sig)
{
        (void)sig;
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
}

int main(void)
{
        struct sigaction stop = {.sa_handler = on_stop};
        struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
        sigset_t none;

        /* Whatever mask we were started with (runtd blocks TERM for its sigwait thread). */
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        sigaction(SIGTERM, &stop, NULL);
        sigaction(SIGINT, &stop, NULL);
        sigaction(SIGCHLD, &child, NULL);
        while (!done)
                pause();
        return 0;
}
