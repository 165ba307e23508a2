#pragma once

#include "imagemgr-internal.h"

/* What runt-unpack reports on its fd 1: one write, smaller than PIPE_BUF. */
struct unpack_msg {
        int code; /* 0 or -errno */
        char msg[480];
        struct img_unpack_result res;
};
_Static_assert(sizeof(struct unpack_msg) <= 4096, "one atomic pipe write");
