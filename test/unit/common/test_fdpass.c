/* common/fdpass.c: one fd from a socket, and no other fd of the message kept open. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fdpass.h"
#include "test_common.h"

/* Sends one byte on @sock with the @n fds of @fds in one SCM_RIGHTS message. */
static void send_fds(int sock, const int *fds, size_t n)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * 64)];
        } u;
        char byte = 'm';
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

        memset(u.buf, 0, sizeof(u.buf));
        if (n) {
                m.msg_control = u.buf;
                m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
                u.h.cmsg_level = SOL_SOCKET;
                u.h.cmsg_type = SCM_RIGHTS;
                u.h.cmsg_len = CMSG_LEN(sizeof(int) * n);
                memcpy(CMSG_DATA(&u.h), fds, sizeof(int) * n);
        }
        assert_int_equal(sendmsg(sock, &m, 0), 1);
}

/* Sends @n fds (dups of /dev/null) and returns what sh_recv_fd made of them. */
static int pass(size_t n)
{
        int sv[2], fds[64], got;

        assert_true(n <= 64);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        for (size_t i = 0; i < n; i++)
                assert_true((fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
        send_fds(sv[1], fds, n);
        for (size_t i = 0; i < n; i++)
                close(fds[i]);
        got = sh_recv_fd(sv[0], 1000);
        close(sv[0]);
        close(sv[1]);
        return got;
}

static void test_recv_fd_one(void **state)
{
        int before = test_count_fds(), fd;

        (void)state;
        fd = pass(1);
        assert_true(fd >= 0);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
        assert_int_equal(test_count_fds(), before);
}

static void test_recv_fd_two_or_three_leak_none(void **state)
{
        int before = test_count_fds();

        (void)state;
        assert_int_equal(pass(2), -EBADMSG);
        assert_int_equal(test_count_fds(), before);
        assert_int_equal(pass(3), -EBADMSG);
        assert_int_equal(test_count_fds(), before);
}

static void test_recv_fd_truncated_leaks_none(void **state)
{
        int before = test_count_fds();

        (void)state;
        /* More than the receiver has room for: MSG_CTRUNC, and the ones that fit closed. */
        assert_int_equal(pass(40), -EBADMSG);
        assert_int_equal(test_count_fds(), before);
}

static void test_recv_fd_none(void **state)
{
        int sv[2];

        (void)state;
        assert_int_equal(pass(0), -ENOMSG);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(sh_recv_fd(sv[0], 10), -ETIMEDOUT);
        close(sv[1]);
        assert_int_equal(sh_recv_fd(sv[0], 1000), -EPIPE);
        close(sv[0]);
}

int test_fdpass_run(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_recv_fd_one),
                cmocka_unit_test(test_recv_fd_two_or_three_leak_none),
                cmocka_unit_test(test_recv_fd_truncated_leaks_none),
                cmocka_unit_test(test_recv_fd_none),
        };

        return cmocka_run_group_tests_name("fdpass", tests, NULL, NULL);
}
