/*
 * What runtd writes for a container of an agent pod: its CRI log, from the agent's AG_EV_LOG
 * chunks (the agent keeps chunks until LOG_ACK, runtd records the last one it wrote in
 * c/<id>/logseq so a chunk resent after a restart is not written twice), and the seccomp
 * RuntimeDefault profile the agent applies, as OCI JSON.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../lxc/seccomp.h"
#include "ap-internal.h"
#include "cleanup.h"
#include "nofollow.h"
#include "strutil.h"

#define AP_LOG_LINE_DEFAULT (16u << 10)

/* Opens @c's log file for appending (its directory made), or -errno. */
static int log_open_fd(struct ap_ctr *c)
{
        {
                /* As the kubelet expects of a runtime: the pod's log directory is made. */
                _cleanup_free_ char *dir = strdup(c->log_path);
                char *slash = dir ? strrchr(dir, '/') : NULL;

                if (slash && slash != dir) {
                        *slash = 0;
                        sh_mkdir_p(dir, 0755);
                }
        }
        return sh_open_append_nofollow(c->log_path, 0640);
}

int ap_log_open(struct ap_ctr *c)
{
        int fd, old;

        if (!c->log_path[0])
                return 0;
        fd = log_open_fd(c);
        if (fd < 0)
                return fd;
        pthread_mutex_lock(&c->pod->mu);
        old = c->log_fd;
        c->log_fd = fd;
        pthread_mutex_unlock(&c->pod->mu);
        if (old >= 0)
                close(old);
        return 0;
}

/* Writes one CRI log record: "<time> <stream> <F|P> <text>\n". */
static void put_line(struct ap_ctr *c, const char *ts, int chan, const uint8_t *d, size_t n,
                     bool full)
{
        char head[64];
        int hn = snprintf(head, sizeof(head), "%s %s %c ", ts,
                          chan == AG_CHAN_STDERR ? "stderr" : "stdout", full ? 'F' : 'P');
        struct iovec iov[3] = {{head, (size_t)hn}, {(void *)d, n}, {"\n", 1}};
        size_t total = (size_t)hn + n + 1, done = 0;

        while (done < total) {
                ssize_t w = writev(c->log_fd, iov, 3);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return; /* a full disk loses the line, as with lxc's monitor */
                done += (size_t)w;
                for (int i = 0; i < 3; i++) {
                        size_t k = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;

                        iov[i].iov_base = (char *)iov[i].iov_base + k;
                        iov[i].iov_len -= k;
                        w -= (ssize_t)k;
                }
        }
}

/* Called with the pod's lock held, from the agent client's thread. */
void ap_log_chunk(struct ap_ctr *c, int64_t seq, int chan, int64_t time_ns, const uint8_t *data,
                  size_t len, bool partial)
{
        unsigned max = c->log_max_line ? c->log_max_line : AP_LOG_LINE_DEFAULT;
        struct timespec now;
        struct tm tm;
        char ts[48];
        size_t off = 0;
        int idx = chan == AG_CHAN_STDERR ? 2 : 1;

        (void)time_ns; /* the guest's clock is its own: runtd's receipt time is the host's */
        /* An entry loaded after runtd restarted has no log fd yet: the chunks the agent
         * kept while runtd was down go to the file, not away. */
        if (seq > c->log_seq && c->log_fd < 0 && c->log_path[0])
                c->log_fd = log_open_fd(c);
        if (seq <= c->log_seq || c->log_fd < 0)
                goto done;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec);
        while (off < len) {
                const uint8_t *nl = memchr(data + off, '\n', len - off);
                size_t end = nl ? (size_t)(nl - data) : len;

                /* A line longer than the maximum goes in P parts, the last one F. */
                while (end - off > max) {
                        put_line(c, ts, chan, data + off, max, false);
                        off += max;
                }
                put_line(c, ts, chan, data + off, end - off, nl != NULL);
                off = nl ? end + 1 : end;
        }
        c->partial[idx] = partial || (len && data[len - 1] != '\n');
done:
        if (seq > c->log_seq) {
                c->log_seq = seq;
                if (c->seq_fd >= 0 && pwrite(c->seq_fd, &c->log_seq, sizeof(c->log_seq), 0) < 0) {
                        /* At worst a chunk resent after a restart is written twice. */
                }
        }
}

/* ------------------------------------------------------------ seccomp */

/* Appends printf output to the growing string *@s (@len, @cap); -ENOMEM. */
static int app(char **s, size_t *len, size_t *cap, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int app(char **s, size_t *len, size_t *cap, const char *fmt, ...)
{
        va_list ap;
        int n;

        for (;;) {
                va_start(ap, fmt);
                n = vsnprintf(*s ? *s + *len : NULL, *s ? *cap - *len : 0, fmt, ap);
                va_end(ap);
                if (n < 0)
                        return -EINVAL;
                if (*s && *len + (size_t)n < *cap) {
                        *len += (size_t)n;
                        return 0;
                }
                {
                        size_t ncap = (*cap ? *cap * 2 : 4096) + (size_t)n;
                        char *ns = realloc(*s, ncap);

                        if (!ns)
                                return -ENOMEM;
                        *s = ns;
                        *cap = ncap;
                }
        }
}

int ap_seccomp_default_json(uint64_t caps, char **ret)
{
        _cleanup_free_ char *text = NULL;
        char *out = NULL, *save = NULL;
        size_t len = 0, cap = 0;
        bool first = true;
        int r = lxc_seccomp_runtime_default(caps, &text);

        if (r < 0)
                return r;
        /*
         * The policy is a denylist of "name errno N [index,value,OP(,value2)]..." lines:
         * the same rules as an allow-by-default OCI profile.
         */
        r = app(&out, &len, &cap, "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[");
        for (char *line = strtok_r(text, "\n", &save); r == 0 && line;
             line = strtok_r(NULL, "\n", &save)) {
                char name[64];
                int errn = 0, used = 0;

                if (sscanf(line, "%63s errno %d%n", name, &errn, &used) != 2)
                        continue;
                r = app(&out, &len, &cap,
                        "%s{\"names\":[\"%s\"],\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":%d,"
                        "\"args\":[",
                        first ? "" : ",", name, errn);
                first = false;
                for (const char *a = strchr(line + used, '['); r == 0 && a;
                     a = strchr(a + 1, '[')) {
                        unsigned idx = 0;
                        char v1[32] = "", op[32] = "", v2[32] = "0";
                        int k = sscanf(a, "[%u,%31[^,],%31[^],],%31[^]]", &idx, v1, op, v2);

                        if (k < 3)
                                continue;
                        r = app(&out, &len, &cap,
                                "%s{\"index\":%u,\"value\":%llu,\"valueTwo\":%llu,\"op\":\"%s\"}",
                                a == strchr(line + used, '[') ? "" : ",", idx,
                                strtoull(v1, NULL, 0), strtoull(v2, NULL, 0), op);
                }
                if (r == 0)
                        r = app(&out, &len, &cap, "]}");
        }
        if (r == 0)
                r = app(&out, &len, &cap, "]}");
        if (r < 0) {
                free(out);
                return r;
        }
        *ret = out;
        return 0;
}
