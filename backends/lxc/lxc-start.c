/*
 * runt-lxc-start LXCPATH NAME ARG...: starts the LXC container NAME (its config saved
 * already) daemonized, running ARG... as its PID 1, and exits 0 once it runs.
 *
 * runtd does not call liblxc's start() itself: a daemonized start() moves the calling
 * process, every thread of it, into the container's monitor cgroup, and calling liblxc in a
 * child forked from the multi-threaded daemon could meet a lock another thread held. This
 * program is small, single-threaded, and starts with a clean signal mask, which the monitor
 * and the container inherit.
 */
#include <signal.h>
#include <stdio.h>

#include <lxc/lxccontainer.h>

#include "helpercg.h"

int main(int argc, char **argv)
{
        struct lxc_container *c;
        sigset_t none;
        bool ok;

        if (argc < 4) {
                fprintf(stderr, "usage: runt-lxc-start LXCPATH NAME ARG... (run by runtd)\n");
                return 2;
        }
        {
                /* First: the LXC monitor this forks is born in the pod's cgroup (helpercg.h),
                 * on any hierarchy liblxc leaves it on. */
                char why[300];

                if (sh_helpercg_join_env(why, sizeof(why)) < 0) {
                        fprintf(stderr, "runt-lxc-start: %s\n", why);
                        return 1;
                }
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        c = lxc_container_new(argv[2], argv[1]);
        if (!c || !c->is_defined(c))
                return 3;
        c->want_daemonize(c, true);
        c->want_close_all_fds(c, true);
        ok = c->start(c, 0, argv + 3);
        lxc_container_put(c);
        return ok ? 0 : 1;
}
