#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The one process-wide sink; written before threads start, read-only afterwards. */
static int log_fd = STDERR_FILENO;
static atomic_int log_level = SH_LOG_INFO;

static const char *const level_names[] = {
        [SH_LOG_ERROR] = "error",
        [SH_LOG_WARN] = "warn",
        [SH_LOG_INFO] = "info",
        [SH_LOG_DEBUG] = "debug",
};

int sh_log_level_parse(const char *s, enum sh_log_level *ret_level)
{
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
                if (strcmp(s, level_names[i]) == 0) {
                        *ret_level = (enum sh_log_level)i;
                        return 0;
                }
        if (strcmp(s, "warning") == 0) {
                *ret_level = SH_LOG_WARN;
                return 0;
        }
        return -EINVAL;
}

const char *sh_log_level_name(enum sh_log_level level)
{
        if ((unsigned)level > SH_LOG_DEBUG)
                return "unknown";
        return level_names[level];
}

int sh_log_open(const char *path, enum sh_log_level level, struct sh_error *err)
{
        if (path && *path) {
                int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                if (fd < 0)
                        return sh_err(err, -errno, "open log file '%s': %s", path, strerror(errno));
                if (log_fd > STDERR_FILENO)
                        close(log_fd);
                log_fd = fd;
        }
        atomic_store(&log_level, (int)level);
        return 0;
}

void sh_log_close(void)
{
        if (log_fd > STDERR_FILENO)
                close(log_fd);
        log_fd = STDERR_FILENO;
}

void sh_log_set_level(enum sh_log_level level)
{
        atomic_store(&log_level, (int)level);
}

bool sh_log_enabled(enum sh_log_level level)
{
        return (int)level <= atomic_load(&log_level);
}

int sh_log_write(enum sh_log_level level, const char *module, int errnum, const char *fmt, ...)
{
        char line[4096];
        struct timespec ts;
        struct tm tm;
        va_list ap;
        size_t n;
        int saved = errno;

        if (!sh_log_enabled(level))
                return errnum;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof(line) - n, ".%06ldZ level=%s module=%s ",
                              ts.tv_nsec / 1000, sh_log_level_name(level), module);
        if (n >= sizeof(line))
                n = sizeof(line) - 1;
        errno = errnum < 0 ? -errnum : saved;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (m < 0)
                m = 0;
        size_t start = n;

        n += (size_t)m;
        if (n > sizeof(line) - 2)
                n = sizeof(line) - 2;
        /* Client-supplied text must not forge log lines. */
        for (size_t i = start; i < n; i++)
                if ((unsigned char)line[i] < 0x20)
                        line[i] = ' ';
        line[n++] = '\n';
        /* One write per line; a short or failed write to the log is not worth failing for. */
        ssize_t w = write(log_fd, line, n);
        (void)w;
        errno = saved;
        return errnum;
}
