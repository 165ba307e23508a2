#include "error.h"

#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 3, 0))) static void vset(struct sh_error *e, int code,
                                                       const char *fmt, va_list ap)
{
        e->code = code;
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

int sh_err(struct sh_error *e, int code, const char *fmt, ...)
{
        va_list ap;

        if (!e)
                return code;
        va_start(ap, fmt);
        vset(e, code, fmt, ap);
        va_end(ap);
        return code;
}

int sh_err_prefix(struct sh_error *e, int code, const char *fmt, ...)
{
        char prefix[sizeof(e->msg)];
        char old[sizeof(e->msg)];
        va_list ap;

        if (!e)
                return code;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        if (e->msg[0])
                memcpy(old, e->msg, sizeof(old));
        else
                snprintf(old, sizeof(old), "%s", strerror(code < 0 ? -code : code));
        e->code = code;
        /* Truncation is fine: the innermost detail is least useful once the message is long. */
        size_t cap = sizeof(e->msg) - 1, n = 0, lp = strlen(prefix), lo = strlen(old);

        n = lp < cap ? lp : cap;
        memcpy(e->msg, prefix, n);
        if (n + 2 <= cap) {
                memcpy(e->msg + n, ": ", 2);
                n += 2;
                lo = lo < cap - n ? lo : cap - n;
                memcpy(e->msg + n, old, lo);
                n += lo;
        }
        e->msg[n] = '\0';
        return code;
}

void sh_err_clear(struct sh_error *e)
{
        if (!e)
                return;
        e->code = 0;
        e->msg[0] = '\0';
}
