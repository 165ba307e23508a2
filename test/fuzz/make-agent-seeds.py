#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_agent_host and fuzz_agent_guest (backends/agent/proto.h).

Each seed is one chunking byte (the fuzz target feeds its reader byte * 61 + 1 bytes at a
time) and a stream of frames as the agent (host seeds) or runtd (guest seeds) would send it.
"""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
VERSION = 1
REQ, RESP, EVENT, DATA, WINDOW, CLOSE = 1, 2, 3, 4, 5, 6


def frame(kind, op, stream, rid, payload=b""):
    return struct.pack(">BBHIII", VERSION, kind, op, stream, rid, len(payload)) + payload


def u(tag, v):
    return struct.pack(">HIq", tag, 8, v)


def s(tag, v):
    b = v.encode() if isinstance(v, str) else v
    return struct.pack(">HI", tag, len(b)) + b


def n(tag, *attrs):
    return s(tag, b"".join(attrs))


def write(target, name, chunk, frames):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes([chunk]) + b"".join(frames))


CID = "0123456789abcdef" * 4


def status(state=2, code=0, reason="Completed"):
    return (s(6, CID) + u(120, state) + u(7, 42) + u(121, 1000) + u(122, 2000) + u(17, code)
            + u(123, 0) + s(124, reason) + s(125, ""))


STATS = b"".join(u(t, (t - 139) * 1000) for t in range(140, 156))

# host: what the agent sends
write("fuzz_agent_host", "ready-hello", 0, [
    frame(EVENT, 1, 0, 0, u(3, 1) + s(4, "boot-1")),
    frame(RESP, 1, 0, 1, u(3, 1) + s(4, "boot-1") + u(5, 123456789)),
])
write("fuzz_agent_host", "status-stats", 3, [
    frame(RESP, 6, 0, 2, status()),
    frame(RESP, 15, 0, 3, STATS),
    frame(RESP, 18, 0, 4, STATS),
])
write("fuzz_agent_host", "ctr-list", 1, [
    frame(RESP, 7, 0, 5, n(27, status(1)) + n(27, status(2, 137, "OOMKilled"))),
])
write("fuzz_agent_host", "errors", 255, [
    frame(RESP, 4, 0, 6, u(1, 2) + s(2, "no such container")),
    frame(RESP, 3, 0, 7, u(1, 17) + s(2, "exists")),
])
write("fuzz_agent_host", "events", 2, [
    frame(EVENT, 2, 0, 0, status(2, 1, "Error")),
    frame(EVENT, 3, 0, 0, s(6, CID) + u(22, 1) + u(23, 1) + u(24, 5) + s(25, "hello\n")),
    frame(EVENT, 3, 0, 0, s(6, CID) + u(22, 2) + u(23, 2) + u(24, 6) + s(25, "part")
          + u(26, 1)),
    frame(EVENT, 5, 0, 0, s(6, CID)),
])
write("fuzz_agent_host", "exec-stream", 0, [
    frame(RESP, 10, 5, 8),
    frame(DATA, 1, 5, 0, b"out\n"),
    frame(DATA, 2, 5, 0, b"err\n"),
    frame(WINDOW, 0, 5, 0, struct.pack(">I", 65536)),
    frame(CLOSE, 1, 5, 0),
    frame(CLOSE, 2, 5, 0),
    frame(EVENT, 4, 5, 0, u(17, 3)),
    frame(CLOSE, 0xffff, 5, 0),
])
write("fuzz_agent_host", "bad-version", 0, [b"\x02" + frame(RESP, 1, 0, 1)[1:]])

# guest: what runtd sends
MOUNT = n(67, s(68, "/run/runt/vol"), s(45, "/data"), u(69, 1), u(70, 1))
DEVICE = n(79, s(68, "/dev/vdb"), s(45, "/dev/xvda"), s(80, "rwm"))
RES = (u(100, 100000) + u(101, 50000) + u(102, 512) + u(103, 1 << 28) + u(104, 1 << 29)
       + u(105, 100) + s(106, "0-1") + s(107, "0") + u(108, -999) + u(109, 1))
SPEC = (s(6, CID) + s(83, "web") + s(60, "/layers/0") + s(60, "/layers/1") + s(10, "sh")
        + s(10, "-c") + s(10, "sleep 1") + s(62, "PATH=/bin") + s(61, "/") + u(63, 1000)
        + u(64, 1000) + u(65, 10) + u(65, 11) + u(11, 0) + u(12, 1) + u(66, 1) + u(81, 1)
        + MOUNT + DEVICE + u(71, 1) + u(72, 1) + u(78, 0) + u(77, 0) + s(73, "CAP_CHOWN")
        + s(74, '{"defaultAction":"SCMP_ACT_ALLOW"}') + s(75, "/proc/kcore")
        + s(76, "/proc/sys") + s(82, "kernel.shm_rmid_forced=1") + RES)
NET = (n(40, s(41, "aa:bb:cc:dd:ee:ff"), s(42, "10.88.0.5/16"), s(42, "fd00::5/64"),
         u(43, 1500))
       + n(44, s(45, "0.0.0.0/0"), s(46, "10.88.0.1"), s(49, "aa:bb:cc:dd:ee:ff"))
       + s(47, "pod-a") + s(48, "net.ipv4.ip_forward=1"))
write("fuzz_agent_guest", "hello-net", 0, [frame(REQ, 1, 0, 1), frame(REQ, 2, 0, 2, NET)])
write("fuzz_agent_guest", "create-start", 4, [
    frame(REQ, 3, 0, 3, SPEC), frame(REQ, 4, 0, 4, s(6, CID))])
write("fuzz_agent_guest", "update", 1, [frame(REQ, 9, 0, 5, s(6, CID) + RES)])
write("fuzz_agent_guest", "exec-stream", 0, [
    frame(REQ, 10, 9, 6, s(6, CID) + s(10, "cat") + u(11, 0) + u(12, 1) + u(13, 24)
          + u(14, 80)),
    frame(DATA, 0, 9, 0, b"input\n"),
    frame(WINDOW, 1, 9, 0, struct.pack(">I", 4096)),
    frame(REQ, 14, 9, 7, u(13, 50) + u(14, 132)),
    frame(CLOSE, 0, 9, 0),
    frame(CLOSE, 0xffff, 9, 0),
])
write("fuzz_agent_guest", "spec-no-argv", 0, [frame(REQ, 3, 0, 8, s(6, CID))])
