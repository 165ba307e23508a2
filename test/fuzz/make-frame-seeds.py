#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_spdy, fuzz_websocket and fuzz_stream_http.

SPDY seeds are a chunking byte and a client's stream of frames as kubectl sends them (header
blocks deflated with the SPDY/3 dictionary, read from stream/spdy.c); WebSocket seeds are two
setup bytes (chunk size - 1, protocol/max-message byte) and masked client frames; the
stream_http seeds are newline-separated request fields (see fuzz_stream_http.c).
"""
import os
import re
import struct
import zlib

here = os.path.dirname(os.path.abspath(__file__))
src = open(os.path.join(here, "../../stream/spdy.c")).read()
body = re.search(r"spdy_dictionary\[\] = \{(.*?)\};", src, re.S).group(1)
DICT = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-fA-F]{2})", body))
assert len(DICT) == 1423


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- SPDY/3.1
class Deflater:
    def __init__(self):
        self.z = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICT)

    def block(self, headers):
        nv = struct.pack(">I", len(headers))
        for k, v in headers:
            nv += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
        return self.z.compress(nv) + self.z.flush(zlib.Z_SYNC_FLUSH)


def ctrl(typ, flags, payload):
    return struct.pack(">HHI", 0x8000 | 3, typ, (flags << 24) | len(payload)) + payload


def data(sid, flags, payload):
    return struct.pack(">II", sid, (flags << 24) | len(payload)) + payload


def syn_stream(z, sid, headers, flags=0):
    return ctrl(1, flags, struct.pack(">IIBB", sid, 0, 0, 0) + z.block(headers))


z = Deflater()
exec_session = b"".join([
    ctrl(4, 0, struct.pack(">I", 1) + struct.pack(">II", 7, 65536)),  # SETTINGS window
    syn_stream(z, 1, [(b"streamtype", b"error")]),
    syn_stream(z, 3, [(b"streamtype", b"stdin")]),
    syn_stream(z, 5, [(b"streamtype", b"stdout")]),
    syn_stream(z, 7, [(b"streamtype", b"stderr")]),
    data(3, 0, b"echo hello\n"),
    data(3, 1, b""),
    ctrl(9, 0, struct.pack(">II", 5, 32768)),  # WINDOW_UPDATE
    ctrl(6, 0, struct.pack(">I", 1)),  # PING
    ctrl(3, 0, struct.pack(">II", 5, 5)),  # RST_STREAM CANCEL
    ctrl(7, 0, struct.pack(">II", 7, 0)),  # GOAWAY
])
write("fuzz_spdy", "exec-session", b"\x00" + exec_session)
write("fuzz_spdy", "exec-session-chunked", b"\x07" + exec_session)
z = Deflater()
write("fuzz_spdy", "portforward", b"\x00" + b"".join([
    syn_stream(z, 1, [(b"streamtype", b"error"), (b"port", b"8080"), (b"requestid", b"0")]),
    syn_stream(z, 3, [(b"streamtype", b"data"), (b"port", b"8080"), (b"requestid", b"0")]),
    data(3, 0, b"GET / HTTP/1.0\r\n\r\n"),
    ctrl(8, 1, struct.pack(">I", 3) + z.block([(b"x", b"a\x00b")])),  # HEADERS, multi-value
]))
z = Deflater()
write("fuzz_spdy", "bad-version", b"\x00" + struct.pack(">HHI", 0x8002, 1, 10) + bytes(10))
write("fuzz_spdy", "unknown-type-skipped",
      b"\x00" + struct.pack(">HHI", 0x8003, 0x42, 5) + b"abcde" + ctrl(6, 0, b"\0\0\0\1"))
write("fuzz_spdy", "duplicate-header", b"\x00" + syn_stream(z, 1, [(b"a", b"1"), (b"a", b"2")]))
write("fuzz_spdy", "raw-zlib-no-dict",
      b"\x00" + ctrl(1, 0, struct.pack(">IIBB", 1, 0, 0, 0) + zlib.compress(b"\0\0\0\0")))
write("fuzz_spdy", "data-stream-zero", b"\x00" + data(0, 0, b"x"))

# ---- WebSocket (client frames are masked)
def ws(op, payload, fin=True, mask=b"\x01\x02\x03\x04"):
    n = len(payload)
    h = bytes([(0x80 if fin else 0) | op])
    if n < 126:
        h += bytes([0x80 | n])
    elif n < 65536:
        h += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        h += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# protocol byte: 0 channel, 1 base64, 2 v4, 3 v5, 4 v4.base64; | 0x80 small max_message
write("fuzz_websocket", "v5-exec", b"\xff\x03" + b"".join([
    ws(2, b"\x00ls -l\n"),
    ws(2, b'\x04{"Width":80,"Height":24}'),
    ws(2, b"\xff\x00"),
    ws(9, b"ping"),
    ws(8, struct.pack(">H", 1000) + b"bye"),
]))
write("fuzz_websocket", "v4-bytewise", b"\x00\x02" + ws(2, b"\x00data") + ws(10, b""))
write("fuzz_websocket", "base64", b"\x10\x01" + ws(1, b"0aGVsbG8K") + ws(1, b"4eyJXaWR0aCI6MSwiSGVpZ2h0IjoyfQ=="))
write("fuzz_websocket", "v4-base64-fragmented", b"\x03\x04" + ws(1, b"0aGVs", fin=False)
      + ws(9, b"x") + ws(0, b"bG8K"))
write("fuzz_websocket", "large-16bit", b"\xff\x00" + ws(2, b"\x00" + b"a" * 300))
write("fuzz_websocket", "too-big", b"\xff\x80" + ws(2, b"\x00" + b"a" * 200))
write("fuzz_websocket", "unmasked", b"\xff\x00\x82\x03\x00ab")
write("fuzz_websocket", "bad-utf8", b"\xff\x01" + ws(1, b"\xc0\xaf"))
write("fuzz_websocket", "close-bad-code", b"\xff\x00" + ws(8, struct.pack(">H", 1005)))
write("fuzz_websocket", "len64-top-bit", b"\xff\x00\x82\xff" + b"\x80" + bytes(7) + b"\0\0\0\0")

# ---- stream_http: path, Connection, Sec-WebSocket-Key, Sec-WebSocket-Version, port, protocols
tok = "0123456789abcdef0123456789abcdef"
def req(path, conn, key, ver, port, *protos):
    return "\n".join([path, conn, key, ver, port, *protos]).encode()


write("fuzz_stream_http", "spdy-exec", req("/exec/" + tok, "Upgrade", "", "", "",
      "v4.channel.k8s.io", "v3.channel.k8s.io, v2.channel.k8s.io", "channel.k8s.io"))
write("fuzz_stream_http", "ws-exec", req("/exec/" + tok + "?command=sh&stdin=1", "keep-alive, Upgrade",
      "dGhlIHNhbXBsZSBub25jZQ==", "13", "", "v5.channel.k8s.io,v4.channel.k8s.io"))
write("fuzz_stream_http", "ws-portforward", req("/portforward/" + tok + "?port=80&port=443", "upgrade",
      " dGhlIHNhbXBsZSBub25jZQ== ", " 13 ", "80,443", "portforward.k8s.io", "v4.base64.channel.k8s.io"))
write("fuzz_stream_http", "attach-base64", req("/attach/" + tok, "Upgrade", "AAAAAAAAAAAAAAAAAAAAAA==",
      "13", "65535", "base64.channel.k8s.io"))
write("fuzz_stream_http", "bad", req("/exec/" + tok + "/x", ",,, ,", "dGhlIHNhbXBsZSBub25jZQ",
      "8", "0,,70000", " , ,\t", "v9.channel.k8s.io"))
write("fuzz_stream_http", "short-token", req("/exec/abc?x", "Upgrade\tx", "", "", "1,2,3"))
