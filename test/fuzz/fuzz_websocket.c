/*
 * libFuzzer target: the WebSocket framer and the Kubernetes channel framings
 * (stream/websocket.c). The first bytes choose the chunk size, max_message and the channel
 * protocol; the rest is a client's byte stream, fed in chunks to ws_parse as
 * stream-session.c does. Every decoded message goes through ws_k8s_unwrap, and resize
 * payloads through ws_k8s_parse_resize. Beyond not crashing or leaking: errors stick and map
 * to a close code, text is UTF-8, control frames fit in 125 bytes, a close code is valid.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "websocket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_message(enum ws_k8s_proto proto, const struct ws_frame *f, struct ws_buf *scratch)
{
        struct ws_k8s_msg m;
        struct sh_error err = {0};
        uint16_t w, h;

        switch (f->opcode) {
        case WS_OP_TEXT:
                if (!ws_utf8_valid(f->data, f->len))
                        abort();
                /* fall through */
        case WS_OP_BINARY:
                if (ws_k8s_unwrap(proto, f->data, f->len, scratch, &m, &err) == 0 &&
                    m.kind == WS_K8S_DATA && m.channel == WS_K8S_RESIZE)
                        (void)ws_k8s_parse_resize(m.data, m.len, &w, &h, &err);
                break;
        case WS_OP_PING:
        case WS_OP_PONG:
                if (f->len > WS_MAX_CONTROL)
                        abort();
                break;
        case WS_OP_CLOSE:
                if (f->len > WS_MAX_CONTROL - 2 || !ws_utf8_valid(f->data, f->len) ||
                    (f->close_code != WS_CLOSE_NO_STATUS && !ws_close_code_valid(f->close_code)))
                        abort();
                break;
        case WS_OP_CONTINUATION:
        default:
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct ws_parser p;
        struct ws_buf in = {0}, scratch = {0};
        struct sh_error err = {0};
        enum ws_k8s_proto proto;
        size_t pos = 0, chunk;
        int fatal = 0;

        if (size < 2 || size > 256 * 1024)
                return 0;
        chunk = 1 + data[0];
        proto = (enum ws_k8s_proto)(data[1] % 5);
        /* A small max_message now and then, so the size check is reached. */
        ws_parser_init(&p, (data[1] & 0x80) ? 64 + (data[1] & 0x7f) : 0);
        data += 2;
        size -= 2;
        while (pos < size && !fatal) {
                size_t n = chunk < size - pos ? chunk : size - pos;

                if (ws_buf_reserve(&in, n) < 0)
                        abort();
                memcpy(in.data + in.len, data + pos, n);
                in.len += n;
                pos += n;
                for (;;) {
                        struct ws_frame f;
                        size_t consumed = SIZE_MAX;
                        int r;

                        memset(&f, 0, sizeof(f));
                        r = ws_parse(&p, in.data, in.len, &consumed, &f, &err);
                        if (consumed > in.len)
                                abort();
                        memmove(in.data, in.data + consumed, in.len - consumed);
                        in.len -= consumed;
                        if (r == 0) {
                                check_message(proto, &f, &scratch);
                                continue;
                        }
                        if (r == -EAGAIN) {
                                if (in.len)
                                        abort(); /* -EAGAIN consumes everything */
                                break;
                        }
                        if (r != -EPROTO && r != -EILSEQ && r != -EMSGSIZE && r != -ENOMEM)
                                abort();
                        if (r != -ENOMEM && ws_close_code_for(r) == WS_CLOSE_INTERNAL_ERROR)
                                abort();
                        fatal = r;
                        break;
                }
        }
        if (fatal) {
                struct ws_frame f;
                size_t consumed;

                if (ws_parse(&p, (const uint8_t *)"\x81\x80", 2, &consumed, &f, &err) != fatal)
                        abort(); /* errors stick */
        }
        ws_buf_done(&scratch);
        ws_buf_done(&in);
        ws_parser_done(&p);
        return 0;
}
