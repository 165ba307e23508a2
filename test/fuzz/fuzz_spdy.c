/*
 * libFuzzer target: the SPDY/3.1 framer (stream/spdy.c), as a session's receive side sees a
 * client: the input is an incoming byte stream, cut into chunks whose sizes come from the
 * input's first bytes, appended to a buffer and parsed frame by frame as stream-session.c
 * does. Small limits make the size checks reachable. Beyond not crashing or leaking: a
 * fatal error sticks, *consumed never passes what was given, and a decoded header block
 * holds what the header says it does.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "spdy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_frame(const struct spdy_frame *f)
{
        for (size_t i = 0; i < f->n_headers; i++) {
                const struct spdy_header *h = &f->headers[i];

                if (!h->name || !h->value || strlen(h->name) != h->name_len || !h->name_len ||
                    h->value[h->value_len] != '\0')
                        abort();
        }
        if (f->n_headers && spdy_frame_header(f, f->headers[0].name) != &f->headers[0])
                abort(); /* names are unique, so the first is found */
        if (f->type == SPDY_DATA && f->data_len && !f->data)
                abort();
        (void)spdy_frame_type_name(f->type);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const struct spdy_limits limits = {
                .max_data_frame = 4096,
                .max_header_frame = 8192,
                .max_header_block = 16384,
        };
        struct spdy_session s = {0};
        struct spdy_buf in = {0};
        struct sh_error err = {0};
        size_t pos = 0;
        uint8_t chunking;
        int fatal = 0;

        if (size < 1 || size > 256 * 1024)
                return 0;
        chunking = data[0];
        data++;
        size--;
        if (spdy_session_init(&s, &limits, &err) < 0)
                abort();
        while (pos < size && !fatal) {
                /* Chunks of 1..chunking+1 bytes, varied by the data itself. */
                size_t n = chunking ? 1 + (data[pos] % ((size_t)chunking + 1)) : size - pos;

                if (n > size - pos)
                        n = size - pos;
                if (spdy_buf_append(&in, data + pos, n) < 0)
                        abort();
                pos += n;
                for (;;) {
                        struct spdy_frame f;
                        size_t consumed = SIZE_MAX;
                        int r;

                        memset(&f, 0, sizeof(f));
                        r = spdy_parse(&s, in.data, in.len, &consumed, &f, &err);
                        if (consumed > in.len)
                                abort();
                        spdy_buf_consume(&in, consumed);
                        if (r == 0) {
                                check_frame(&f);
                                continue;
                        }
                        if (r == -EBADMSG)
                                continue; /* stream error: the session carries on */
                        if (r == -EAGAIN)
                                break;
                        if (r != -EPROTO && r != -EMSGSIZE && r != -ENOMEM)
                                abort();
                        fatal = r;
                        break;
                }
        }
        if (fatal && fatal != -ENOMEM) {
                size_t consumed;
                struct spdy_frame f;

                /* A session error is final. */
                if (spdy_parse(&s, in.data, in.len, &consumed, &f, &err) >= 0 || !s.rx_broken)
                        abort();
        }
        spdy_buf_done(&in);
        spdy_session_done(&s);
        return 0;
}
