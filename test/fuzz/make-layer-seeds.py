#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_agent_layer (proto.h IMAGE LAYERS) with the record encoder
of test/e2e/agentproto.py. Each seed is one chunking byte (the target feeds its reader
byte * 61 + 1 bytes at a time) and a LAYER_PUT record stream: well-formed layers and the
hostile shapes test_agent_layers.py sends."""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "e2e"))
import agentproto as ap  # noqa: E402

R = ap.layer_record
ROOT = R("", ap.LT_DIR, mode=0o755, mtime_ns=1700000000123456789)


def write(name, chunk, records, end=True):
    d = os.path.join(here, "corpus", "fuzz_agent_layer")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes([chunk]) + ROOT + b"".join(records) + (ap.LAYER_END if end else b""))


write("image", 0, [
    R("bin", ap.LT_DIR, mode=0o755),
    R("bin/busybox", ap.LT_REG, mode=0o4755, uid=0, gid=0, data=b"\x7fELF" + b"\0" * 200),
    R("bin/sh", ap.LT_SYMLINK, link="busybox"),
    R("bin/ash", ap.LT_HARDLINK, link="bin/busybox"),
    R("etc", ap.LT_DIR, xattrs=[("trusted.overlay.opaque", b"y")]),
    R("etc/gone", ap.LT_CHAR, mode=0, rdev=0),
    R("etc/caps", ap.LT_REG, data=b"ping", xattrs=[("security.capability", b"\1\0\0\2" * 5)]),
    R("run", ap.LT_DIR, mode=0o1777),
    R("run/fifo", ap.LT_FIFO, mode=0o600),
    R("run/sock", ap.LT_SOCKET, mode=0o600),
])
write("split-small", 1, [R("f", ap.LT_REG, data=b"0123456789" * 30)])
write("deep", 3, [R("/".join(["d"] * 600), ap.LT_DIR), R("/".join(["d"] * 600) + "/f",
                                                        ap.LT_REG, data=b"deep")])
write("hostile-paths", 0, [R("../x", ap.LT_REG), R(b"a\0/..", ap.LT_REG), R("/abs", ap.LT_DIR)])
write("hostile-links", 2, [R("l", ap.LT_SYMLINK, link="/"), R("l/x", ap.LT_REG),
                           R("h", ap.LT_HARDLINK, link="../../etc/shadow")])
write("hostile-dev", 0, [R("null", ap.LT_CHAR, rdev=1 << 32 | 3), R("sda", ap.LT_BLOCK, rdev=8 << 32)])
write("oversize", 0, [R("big", ap.LT_REG, size=1 << 40)])
write("truncated", 5, [R("short", ap.LT_REG, data=b"abc", size=100)], end=False)
write("huge-header", 0, [b"\x00\x10\x00\x00" + b"x" * 32])
write("after-end", 0, [ap.LAYER_END + b"junk"])
write("refused-by-callback", 0, [R("X", ap.LT_REG, data=b"no room")])
