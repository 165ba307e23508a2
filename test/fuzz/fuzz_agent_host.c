/*
 * libFuzzer target: the host's side of the pod agent protocol (backends/agent/proto.c). The
 * input is what the agent sent, fed to a frame reader in chunks whose sizes come from the
 * first input byte; each whole frame is decoded as runtd does: a RESP's failure, and its
 * payload as a status, a stats record and a CTR_LIST of nested statuses; an EVENT's
 * attributes. Beyond not crashing or leaking: a frame never passes its kind's maximum, a
 * decoded string fits its field, and a reader error is -EPROTO and ends the stream.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_status(const struct ag_status *s)
{
        if (memchr(s->id, '\0', sizeof(s->id)) == NULL ||
            memchr(s->reason, '\0', sizeof(s->reason)) == NULL ||
            memchr(s->message, '\0', sizeof(s->message)) == NULL)
                abort();
        if (s->state < AG_ST_CREATED || s->state > AG_ST_EXITED)
                abort();
}

static void decode_payload(const struct ag_hdr *h, const uint8_t *p)
{
        struct ag_status st;
        struct ag_stats stats;
        struct ag_iter it;
        struct ag_attr a;
        char msg[64], *s;
        int64_t v;
        int r;

        if (h->kind == AG_K_RESP) {
                r = ag_resp_error(p, h->len, msg, sizeof(msg));
                if (r > 0 || r < -4095 || !memchr(msg, '\0', sizeof(msg)))
                        abort();
                if (ag_status_decode(p, h->len, &st) == 0)
                        check_status(&st);
                (void)ag_stats_decode(p, h->len, &stats);
                (void)ag_find_i64(p, h->len, AG_A_PID, &v);
                if (ag_find_str(p, h->len, AG_A_BOOT_ID, &s) == 0) {
                        if (strlen(s) > h->len)
                                abort();
                        free(s);
                }
                ag_iter_init(&it, p, h->len);
                while ((r = ag_iter_next(&it, &a)) > 0) {
                        if (a.tag == AG_A_STATUS && ag_status_decode(a.val, a.len, &st) == 0)
                                check_status(&st);
                }
                if (r != 0 && r != -EPROTO)
                        abort();
        } else if (h->kind == AG_K_EVENT) {
                if (h->op == AG_EV_EXIT && ag_status_decode(p, h->len, &st) == 0)
                        check_status(&st);
                ag_iter_init(&it, p, h->len);
                while (ag_iter_next(&it, &a) > 0) {
                        if ((a.tag == AG_A_ID || a.tag == AG_A_BOOT_ID) && ag_attr_str(&a, &s) == 0)
                                free(s);
                        else
                                (void)ag_attr_i64(&a, &v);
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct ag_reader r;
        struct ag_hdr h;
        const uint8_t *p;
        size_t chunk, pos = 1;
        int rc = 0;

        if (size < 1 || size > 4u << 20)
                return 0;
        chunk = (size_t)data[0] * 61 + 1;
        ag_reader_init(&r);
        while (pos < size && rc >= 0) {
                size_t n = size - pos < chunk ? size - pos : chunk;

                if (ag_reader_feed(&r, data + pos, n) < 0)
                        abort();
                pos += n;
                while ((rc = ag_reader_next(&r, &h, &p)) == 1) {
                        if (h.version != AG_VERSION || h.len > AG_MAX_PAYLOAD ||
                            (h.kind == AG_K_DATA && h.len > AG_MAX_DATA))
                                abort();
                        decode_payload(&h, p);
                }
                if (rc < 0 && rc != -EPROTO)
                        abort();
        }
        ag_reader_done(&r);
        return 0;
}
