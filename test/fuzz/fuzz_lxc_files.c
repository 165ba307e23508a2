/*
 * libFuzzer target: the files of an LXC container that runtd reads back
 * (backends/lxc/container.c): the NUL-separated "start" and "process" field files, and the
 * "exit" and "started" files runt-lxc-shim writes. The whole input is given to each parser
 * (the text ones see it as far as its first NUL, as they would a file read with
 * sh_read_file). Beyond not crashing or leaking: the field vector has one entry per NUL,
 * each the text before it; an exit status names a reason that fits its code.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lxc-internal.h"
#include "strutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct be_ctr_status st;
        char **v = NULL;
        char *text;
        size_t nul = 0, k = 0, off = 0;
        unsigned long long starttime = 0;
        long long ns = 0;
        int pid = 0;

        if (size > 1u << 20)
                return 0;
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';

        if (lb_fields_parse(text, size, &v) == 0) {
                for (size_t i = 0; i < size; i++)
                        nul += text[i] == '\0';
                for (; v[k]; k++) {
                        if (strcmp(v[k], text + off) != 0)
                                abort();
                        off += strlen(v[k]) + 1;
                }
                if (k != nul)
                        abort();
                sh_strv_free(v);
        }

        memset(&st, 0, sizeof(st));
        if (lb_exit_parse(text, &st)) {
                if (st.state != BE_CTR_EXITED || !st.reason[0])
                        abort();
                if ((st.exit_code == 0) != (strcmp(st.reason, "Completed") == 0))
                        abort();
        } else if (st.state != 0 || st.reason[0]) {
                abort(); /* untouched */
        }
        pid = -7;
        if (!lb_started_parse(text, &pid, &ns, NULL) && pid != -7)
                abort();
        pid = -7;
        if (!lb_started_parse(text, &pid, &ns, &starttime) && (pid != -7 || starttime))
                abort();
        free(text);
        return 0;
}
