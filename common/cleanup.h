#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * Scope-bound cleanup (gcc/clang __attribute__((cleanup))). Every cleanup function is
 * NULL-safe and safe to call twice; ownership leaves a scope only through TAKE_PTR/TAKE_FD.
 */
#define _cleanup_(f) __attribute__((cleanup(f)))

#define SH_DEFINE_CLEANUP(type, fn)                                                                \
        static inline void fn##p(type *p)                                                          \
        {                                                                                          \
                if (*p) {                                                                          \
                        fn(*p);                                                                    \
                        *p = NULL;                                                                 \
                }                                                                                  \
        }

static inline void sh_freep(void *p)
{
        void **pp = (void **)p;

        free(*pp);
        *pp = NULL;
}

/* Closes the fd if >= 0 and keeps errno, so it can run on an error path. */
static inline void sh_closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;

                close(*fd);
                errno = saved;
        }
        *fd = -EBADF;
}

static inline void sh_fclosep(FILE **f)
{
        if (*f) {
                fclose(*f);
                *f = NULL;
        }
}

/* Frees a NULL-terminated array of strings and the array. */
static inline void sh_strv_free(char **v)
{
        if (!v)
                return;
        for (char **s = v; *s; s++)
                free(*s);
        free(v);
}
SH_DEFINE_CLEANUP(char **, sh_strv_free)

#define _cleanup_free_   _cleanup_(sh_freep)
#define _cleanup_close_  _cleanup_(sh_closep)
#define _cleanup_fclose_ _cleanup_(sh_fclosep)
#define _cleanup_strv_   _cleanup_(sh_strv_freep)

/* Hands ownership out of a cleanup scope. */
#define TAKE_PTR(p)                                                                                \
        __extension__({                                                                            \
                __typeof__(p) _t = (p);                                                            \
                (p) = NULL;                                                                        \
                _t;                                                                                \
        })
#define TAKE_FD(fd)                                                                                \
        __extension__({                                                                            \
                int _f = (fd);                                                                     \
                (fd) = -EBADF;                                                                     \
                _f;                                                                                \
        })

#define SH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
