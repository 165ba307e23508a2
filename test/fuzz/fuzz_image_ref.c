/*
 * libFuzzer target: image references (imagemgr/ref.c, a hand-written parser of the docker
 * reference grammar). Beyond not crashing: a reference that parses normalises to a string
 * that parses again to itself (normalisation is idempotent), names a registry, and carries a
 * tag or a digest; one that does not parse says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imagemgr-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct img_ref a = {0}, b = {0};
        struct sh_error err = {0};
        char *s, *norm, *again, *dom;

        if (size > 8192)
                return 0;
        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        if (img_ref_parse(s, &a, &err) < 0) {
                if (!err.msg[0])
                        abort(); /* a refusal must say why */
                free(s);
                return 0;
        }
        if (!a.tag && !a.digest)
                abort();
        norm = img_ref_string(&a);
        if (!norm || img_ref_parse(norm, &b, &err) < 0)
                abort(); /* what we produce, we accept */
        again = img_ref_string(&b);
        if (!again || strcmp(norm, again) != 0)
                abort(); /* and it is a fixed point */
        dom = img_ref_domain(&b);
        if (!dom || !dom[0] || strchr(dom, '/'))
                abort();
        free(dom);
        free(again);
        free(norm);
        img_ref_done(&a);
        img_ref_done(&b);
        free(s);
        return 0;
}
