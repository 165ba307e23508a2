/* A minimal QMP client: greeting, qmp_capabilities, one command. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "error.h"
#include "strutil.h"
#include "vm-internal.h"

int mv_qmp_parse_greeting(const char *line, int *ret_major, int *ret_minor, int *ret_micro)
{
        struct json_object *root = json_tokener_parse(line), *qmp, *ver, *q, *v;
        int r = -EPROTO;

        if (!root)
                return -EPROTO;
        if (json_object_object_get_ex(root, "QMP", &qmp) &&
            json_object_object_get_ex(qmp, "version", &ver) &&
            json_object_object_get_ex(ver, "qemu", &q)) {
                int x[3] = {0, 0, 0};
                static const char *const k[] = {"major", "minor", "micro"};

                r = 0;
                for (int i = 0; i < 3; i++) {
                        if (!json_object_object_get_ex(q, k[i], &v) ||
                            !json_object_is_type(v, json_type_int))
                                r = -EPROTO;
                        else
                                x[i] = json_object_get_int(v);
                }
                if (r == 0) {
                        *ret_major = x[0];
                        *ret_minor = x[1];
                        *ret_micro = x[2];
                }
        }
        json_object_put(root);
        return r;
}

int mv_qmp_parse_reply(const char *line, char *msg, size_t msg_size)
{
        struct json_object *root = json_tokener_parse(line), *e, *d;
        int r = -EPROTO;

        if (!root)
                return -EPROTO;
        if (json_object_object_get_ex(root, "return", NULL)) {
                r = 1;
        } else if (json_object_object_get_ex(root, "error", &e)) {
                r = -EIO;
                if (msg && msg_size)
                        snprintf(msg, msg_size, "%s",
                                 json_object_object_get_ex(e, "desc", &d)
                                         ? json_object_get_string(d)
                                         : "error");
        } else if (json_object_object_get_ex(root, "event", NULL)) {
                r = 0;
        }
        json_object_put(root);
        return r;
}

struct qmp_conn {
        int fd;
        char buf[8192];
        size_t len;
        unsigned long long end;
};

/* Reads one line into @line (NUL-terminated, '\n' cut). 0, -ETIMEDOUT, -EPIPE, -EPROTO. */
static int qmp_line(struct qmp_conn *c, char *line, size_t size)
{
        for (;;) {
                char *nl = memchr(c->buf, '\n', c->len);
                struct pollfd p = {.fd = c->fd, .events = POLLIN};
                unsigned long long now;
                ssize_t n;
                int pr;

                if (nl) {
                        size_t l = (size_t)(nl - c->buf);

                        if (l >= size)
                                return -EPROTO;
                        memcpy(line, c->buf, l);
                        line[l] = '\0';
                        memmove(c->buf, nl + 1, c->len - l - 1);
                        c->len -= l + 1;
                        return 0;
                }
                if (c->len == sizeof(c->buf))
                        return -EPROTO;
                now = sh_now_ns();
                if (now >= c->end)
                        return -ETIMEDOUT;
                pr = poll(&p, 1, (int)((c->end - now) / 1000000ull) + 1);
                if (pr < 0 && errno != EINTR)
                        return -errno;
                if (pr <= 0)
                        continue;
                n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
                if (n == 0)
                        return -EPIPE;
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                c->len += (size_t)n;
        }
}

/* Sends @cmd and waits for its return (events skipped). */
static int qmp_exec(struct qmp_conn *c, const char *cmd, bool eof_ok, struct sh_error *err)
{
        char line[8192], msg[256] = "";
        int n = snprintf(line, sizeof(line), "{\"execute\":\"%s\"}\n", cmd);
        int r;

        if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL) != n)
                return sh_err(err, -errno, "qmp: send %s", cmd);
        for (;;) {
                r = qmp_line(c, line, sizeof(line));
                if (r == -EPIPE && eof_ok)
                        return 0;
                if (r < 0)
                        return sh_err(err, r, "qmp: %s: no reply", cmd);
                r = mv_qmp_parse_reply(line, msg, sizeof(msg));
                if (r == 1)
                        return 0;
                if (r < 0)
                        return sh_err(err, r, "qmp: %s: %s", cmd, r == -EIO ? msg : "bad reply");
        }
}

int mv_qmp_command(const char *path, const char *command, unsigned timeout_ms, struct sh_error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -EBADF;
        struct qmp_conn c = {.end = sh_now_ns() + (unsigned long long)timeout_ms * 1000000ull};
        char line[8192];
        int maj, min, mic, r;

        if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path) >= (int)sizeof(sa.sun_path))
                return sh_err(err, -ENAMETOOLONG, "qmp: %s: path too long", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return sh_err(err, -errno, "qmp: socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return sh_err(err, -errno, "qmp: connect %s", path);
        c.fd = fd;
        r = qmp_line(&c, line, sizeof(line));
        if (r < 0)
                return sh_err(err, r, "qmp: no greeting");
        r = mv_qmp_parse_greeting(line, &maj, &min, &mic);
        if (r < 0)
                return sh_err(err, r, "qmp: not a greeting: %.80s", line);
        r = qmp_exec(&c, "qmp_capabilities", false, err);
        if (r < 0)
                return r;
        /* "quit" may close the socket before its return arrives */
        return qmp_exec(&c, command, strcmp(command, "quit") == 0, err);
}
