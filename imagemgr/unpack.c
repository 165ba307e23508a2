/*
 * Running the layer unpacker (runt-unpack, unpack-helper.c): one process per layer, its
 * result read from a pipe. Several may run at once; the caller collects each one.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "imagemgr-internal.h"
#include "unpack-proto.h"

/* Where runt-unpack is: beside our own binary, else where the build put it. */
static char helper[PATH_MAX];
static pthread_once_t helper_once = PTHREAD_ONCE_INIT;

static void find_helper(void)
{
        sh_find_helper("runt-unpack", RUNT_UNPACK_FALLBACK, helper, sizeof(helper));
}

const char *img_unpack_helper(void)
{
        pthread_once(&helper_once, find_helper);
        return helper;
}

/* @fd moved to 10 or above (close-on-exec), so the child's dup2 onto 0..3 cannot clobber it. */
static int fd_high(int fd)
{
        return fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

int img_unpack_start_at(int dirfd, const char *name, bool follow, const char *dest,
                        struct img_unpack_proc *ret, struct sh_error *err)
{
        _cleanup_close_ int blob0 = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_close_ int blob = -EBADF, rd = -EBADF, wr = -EBADF, dir = -EBADF;
        const char *argv[4] = {img_unpack_helper(), dest, follow ? name : NULL, NULL};
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        int pfd[2], r;
        pid_t pid;

        if (blob0 < 0)
                return sh_err(err, -errno, "open layer blob '%s': %s", name, strerror(errno));
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return sh_err(err, -errno, "pipe: %s", strerror(errno));
        rd = fd_high(pfd[0]);
        wr = fd_high(pfd[1]);
        close(pfd[0]);
        close(pfd[1]);
        blob = fd_high(blob0);
        if (follow)
                dir = fd_high(dirfd);
        if (rd < 0 || wr < 0 || blob < 0 || (follow && dir < 0))
                return sh_err(err, -EMFILE, "layer unpacker: out of file descriptors");

        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_adddup2(&fa, blob, STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&fa, wr, STDOUT_FILENO);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        if (follow)
                posix_spawn_file_actions_adddup2(&fa, dir, 3);
        posix_spawn_file_actions_addclosefrom_np(&fa, follow ? 4 : 3);
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        r = posix_spawn(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r != 0)
                return sh_err(err, -r, "run layer unpacker '%s': %s", argv[0], strerror(r));
        ret->pid = pid;
        ret->fd = TAKE_FD(rd);
        return 0;
}

int img_unpack_start(const char *blob_path, const char *dest, struct img_unpack_proc *ret,
                     struct sh_error *err)
{
        return img_unpack_start_at(AT_FDCWD, blob_path, false, dest, ret, err);
}

bool img_unpack_done(const struct img_unpack_proc *p)
{
        struct pollfd pfd = {.fd = p->fd, .events = POLLIN};

        return p->pid > 0 && poll(&pfd, 1, 0) > 0;
}

static void reap_child(pid_t pid, int *status)
{
        while (waitpid(pid, status, 0) < 0 && errno == EINTR)
                ;
}

int img_unpack_wait(struct img_unpack_proc *p, struct img_unpack_result *ret, struct sh_error *err)
{
        struct unpack_msg m = {0};
        int status = 0;
        ssize_t n;

        if (p->pid <= 0)
                return sh_err(err, -ECHILD, "no layer unpacker running");
        do
                n = read(p->fd, &m, sizeof(m));
        while (n < 0 && errno == EINTR);
        close(p->fd);
        reap_child(p->pid, &status);
        *p = (struct img_unpack_proc){.fd = -EBADF};
        if (n != (ssize_t)sizeof(m))
                return sh_err(err, -EIO, "layer unpacker %s died (status 0x%x)",
                              img_unpack_helper(), status);
        if (m.code < 0)
                return sh_err(err, m.code, "%s", m.msg);
        *ret = m.res;
        return 0;
}

void img_unpack_abort(struct img_unpack_proc *p)
{
        int status;

        if (p->pid <= 0)
                return;
        kill(p->pid, SIGKILL);
        close(p->fd);
        reap_child(p->pid, &status);
        *p = (struct img_unpack_proc){.fd = -EBADF};
}

int img_unpack_layer(const char *blob_path, const char *dest, struct img_unpack_result *ret,
                     struct sh_error *err)
{
        struct img_unpack_proc p = {.fd = -EBADF};
        int r = img_unpack_start(blob_path, dest, &p, err);

        return r < 0 ? r : img_unpack_wait(&p, ret, err);
}
