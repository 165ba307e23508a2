#pragma once

#include <stdarg.h>

/*
 * The error currency of runt: functions return 0 or -errno, and fill an optional
 * caller-owned struct sh_error with a human message. The message grows context on the
 * way up ("sandbox ab12: start: lxc: EBUSY"); cri/ logs it once and maps the code.
 */
struct sh_error {
        int code;      /* -errno, 0 when unset */
        char msg[512]; /* NUL-terminated, truncated if longer */
};

/* Sets @e (if not NULL) to @code and the formatted message. Returns @code. */
int sh_err(struct sh_error *e, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/*
 * Prefixes the message already in @e with "PREFIX: " and sets its code to @code.
 * When @e holds no message yet, the errno text of @code is appended instead. Returns @code.
 */
int sh_err_prefix(struct sh_error *e, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Clears @e. */
void sh_err_clear(struct sh_error *e);
