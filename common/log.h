#pragma once

#include <stdbool.h>

#include "error.h"

/*
 * Structured logging: one line per event, "TIME level=L module=M <message>", where the
 * message is itself key=value pairs followed by free text. The sink is stderr or a file,
 * chosen once at start; each line is one write(2), so threads never interleave.
 * Core modules log at debug only (STYLE R3); cri/ logs failed RPCs once.
 */
enum sh_log_level {
        SH_LOG_ERROR = 0,
        SH_LOG_WARN = 1,
        SH_LOG_INFO = 2,
        SH_LOG_DEBUG = 3,
};

/* Parses "error", "warn"/"warning", "info", "debug". Returns 0 or -EINVAL. */
int sh_log_level_parse(const char *s, enum sh_log_level *ret_level);
const char *sh_log_level_name(enum sh_log_level level);

/*
 * Sends log lines to @path (appended, created 0600) or, with NULL, to stderr, at @level
 * and above. Not thread-safe against concurrent logging: call before starting threads.
 */
int sh_log_open(const char *path, enum sh_log_level level, struct sh_error *err);
void sh_log_close(void);
void sh_log_set_level(enum sh_log_level level);
bool sh_log_enabled(enum sh_log_level level);

/*
 * Writes one line. @errnum (a -errno or 0) is put into errno first, so "%m" in @fmt prints
 * its text. Returns @errnum, so a caller can `return sh_log_warn_errno(r, ...)`.
 */
int sh_log_write(enum sh_log_level level, const char *module, int errnum, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#ifndef SH_LOG_MODULE
#define SH_LOG_MODULE "runt"
#endif

#define sh_log_error(...) sh_log_write(SH_LOG_ERROR, SH_LOG_MODULE, 0, __VA_ARGS__)
#define sh_log_warn(...)  sh_log_write(SH_LOG_WARN, SH_LOG_MODULE, 0, __VA_ARGS__)
#define sh_log_info(...)  sh_log_write(SH_LOG_INFO, SH_LOG_MODULE, 0, __VA_ARGS__)
#define sh_log_debug(...)                                                                          \
        (sh_log_enabled(SH_LOG_DEBUG) ? sh_log_write(SH_LOG_DEBUG, SH_LOG_MODULE, 0, __VA_ARGS__)  \
                                      : 0)
#define sh_log_error_errno(r, ...) sh_log_write(SH_LOG_ERROR, SH_LOG_MODULE, (r), __VA_ARGS__)
#define sh_log_warn_errno(r, ...)  sh_log_write(SH_LOG_WARN, SH_LOG_MODULE, (r), __VA_ARGS__)
#define sh_log_debug_errno(r, ...) sh_log_write(SH_LOG_DEBUG, SH_LOG_MODULE, (r), __VA_ARGS__)
