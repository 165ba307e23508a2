"""ExecSync on the LXC backend: what a timeout, a client that gives up, a huge output and bad
requests leave behind (real liblxc as root, busybox images from the session registry)."""

import os
import time
from pathlib import Path

import grpc
import pytest

from conftest import pb
from test_containers import EMPTY_CTRS, Ctrs, images  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")
T = 60
# The server's limit on a reply (cri/server.c), and what ExecSync keeps of the output below it.
MAX_MESSAGE = 16 << 20
OUTPUT_CAP = MAX_MESSAGE - 4096
# Sleep lengths no other test (nor critest's 4321) uses: each marks one process of ours.
BASE = 50000 + os.getpid() % 10000


@pytest.fixture
def ctrs(runtd_factory, tmp_path, images):  # noqa: F811
    """As test_containers' fixture, without its check for runt-pause processes of other
    runtds (the host may run other suites at once): leftovers() counts only ours."""
    c = Ctrs(runtd_factory, tmp_path, images)
    yield c
    c.cleanup()


def assert_clean(c):
    """Nothing of ours is left; cgroups and runt-pause processes are counted host-wide (other
    suites may run at once), so those are left to the suites that run alone."""
    left, want = c.leftovers(), dict(EMPTY_CTRS)
    for k in ("cgroups", "pause"):
        left.pop(k)
        want.pop(k)
    assert left == want


def idler():
    """A container whose main process runs no `sleep` (so pgrep sleep finds only ours)."""
    return dict(command=["/bin/sh", "-c", "trap 'exit 0' TERM; tail -f /dev/null & wait"])


def host_sleeps(*secs):
    """Host pids of processes whose argv is `sleep N` for an N in @secs."""
    want = {f"sleep\0{s}\0".encode() for s in secs}
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if (p / "cmdline").read_bytes() in want:
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


def wait_gone(secs, timeout=5.0):
    deadline = time.monotonic() + timeout
    while host_sleeps(*secs) and time.monotonic() < deadline:
        time.sleep(0.05)
    return host_sleeps(*secs)


def wait_started(secs, timeout=10.0):
    deadline = time.monotonic() + timeout
    while len(host_sleeps(*secs)) < len(secs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(host_sleeps(*secs)) == len(secs)


def sleeps_inside(c, cid):
    """`sleep` processes seen from another ExecSync (the image's busybox has no pgrep)."""
    r = c.exec(cid, ["ps", "-o", "args"])
    assert r.exit_code == 0 and r.stderr == b"", r
    return [a for a in r.stdout.decode().splitlines() if a.startswith("sleep")]


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def code_of(fn, req, **kw):
    try:
        fn(req, timeout=T, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def test_timeout_kills_the_command_and_all_it_started(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, **idler())
    # critest's case: a plain sleep past its timeout.
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        ctrs.exec(cid, ["sleep", str(BASE)], timeout=2)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 1.9 < time.monotonic() - t0 < 5
    assert sleeps_inside(ctrs, cid) == []
    assert host_sleeps(BASE) == []
    # Children in the group, in a session of their own, and a daemon whose parent is gone.
    s = [BASE + i for i in range(1, 5)]
    with pytest.raises(grpc.RpcError) as e:
        ctrs.exec(cid, ["sh", "-c", f"sleep {s[0]} & setsid sleep {s[1]} & "
                                    f"(setsid sleep {s[2]} &) ; exec sleep {s[3]}"], timeout=2)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_gone(s) == []
    assert sleeps_inside(ctrs, cid) == []
    # A background process of a command that ended in time stays, as before.
    r = ctrs.exec(cid, ["sh", "-c", f"sleep {BASE + 9} >/dev/null 2>&1 & echo started"])
    assert r.stdout == b"started\n"
    wait_started([BASE + 9])  # the shell may answer before its child has exec'd sleep
    ctrs.remove(pod)
    assert_clean(ctrs)


def test_client_deadline_or_cancel_kills_the_command(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, **idler())
    rt = ctrs.rt()
    # The gRPC deadline is shorter than the request's timeout (here none).
    s = [BASE + 11, BASE + 12]
    req = pb.ExecSyncRequest(container_id=cid, timeout=0,
                             cmd=["sh", "-c", f"setsid sleep {s[0]} & exec sleep {s[1]}"])
    with pytest.raises(grpc.RpcError) as e:
        rt.ExecSync(req, timeout=2)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_gone(s) == []
    # The client cancels the call.
    s = [BASE + 13, BASE + 14]
    req = pb.ExecSyncRequest(container_id=cid, timeout=100,
                             cmd=["sh", "-c", f"setsid sleep {s[0]} & exec sleep {s[1]}"])
    fut = rt.ExecSync.future(req, timeout=T)
    wait_started(s)
    fut.cancel()
    assert wait_gone(s) == []
    # The client's channel goes away.
    s = [BASE + 15, BASE + 16]
    ch = ctrs.d.channel()
    fut = ctrs.d.runtime(ch).ExecSync.future(pb.ExecSyncRequest(
        container_id=cid, timeout=100,
        cmd=["sh", "-c", f"setsid sleep {s[0]} & exec sleep {s[1]}"]), timeout=T)
    wait_started(s)
    ch.close()
    assert wait_gone(s) == []
    assert fut.cancelled() or fut.exception() is not None
    assert ctrs.exec(cid, ["echo", "still-fine"]).stdout == b"still-fine\n"
    ctrs.remove(pod)
    assert_clean(ctrs)


def test_output_past_the_message_limit_is_cut(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, **idler())
    big = ctrs.d.runtime(ctrs.d.channel(**{
        "grpc.max_receive_message_length": MAX_MESSAGE}))

    def run(cmd):
        return big.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=60),
                            timeout=T)

    r = run(["head", "-c", str(64 << 20), "/dev/zero"])
    assert r.exit_code == 0 and len(r.stdout) == OUTPUT_CAP and r.stdout.count(0) == OUTPUT_CAP
    assert r.stderr.startswith(b"runt: ") and b"cut" in r.stderr, r.stderr
    assert str((64 << 20) - OUTPUT_CAP).encode() in r.stderr
    assert r.ByteSize() <= MAX_MESSAGE
    # The real exit code, stderr first in line, both streams within the one cap.
    r = run(["sh", "-c", "echo early >&2; head -c 33554432 /dev/zero; "
                         "head -c 1048576 /dev/zero >&2; exit 7"])
    assert r.exit_code == 7 and r.stderr.startswith(b"early\n")
    note = r.stderr[r.stderr.index(b"runt: "):]
    assert len(r.stdout) + len(r.stderr) - len(note) == OUTPUT_CAP
    assert r.ByteSize() <= MAX_MESSAGE
    # Just under the cap: untouched, no note.
    r = run(["head", "-c", str(OUTPUT_CAP), "/dev/zero"])
    assert len(r.stdout) == OUTPUT_CAP and r.stderr == b""
    # runtd reads and drops the rest: its memory stays far below what went through it.
    rss0 = rss_kib(ctrs.d.proc.pid)
    for _ in range(3):
        r = run(["sh", "-c", "head -c 268435456 /dev/zero & head -c 268435456 /dev/zero >&2; "
                             "wait"])
        assert r.exit_code == 0 and len(r.stdout) + len(r.stderr) < MAX_MESSAGE
    grown = rss_kib(ctrs.d.proc.pid) - rss0
    assert grown < 96 * 1024, f"runtd grew by {grown} KiB"
    ctrs.remove(pod)
    assert_clean(ctrs)


def test_bad_requests(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, **idler())
    rt = ctrs.rt()
    bad = grpc.StatusCode.INVALID_ARGUMENT
    for cmd in ([], [""], ["", "x"]):
        c, msg = code_of(rt.ExecSync, pb.ExecSyncRequest(container_id=cid, cmd=cmd))
        assert c == bad and "cmd" in msg, (cmd, c, msg)
    c, msg = code_of(rt.ExecSync, pb.ExecSyncRequest(container_id=cid, cmd=["true"],
                                                     timeout=-1))
    assert c == bad and "timeout" in msg, msg
    c, msg = code_of(rt.ExecSync, pb.ExecSyncRequest(container_id="", cmd=["true"]))
    assert c == bad, msg
    c, msg = code_of(rt.ExecSync, pb.ExecSyncRequest(container_id="f" * 64, cmd=["true"]))
    assert c == grpc.StatusCode.NOT_FOUND and "f" * 12 in msg, msg
    # Created, never started; then stopped: the command does not run, and the status says why.
    created = ctrs.create(pod, cfg, "created", **idler())
    c, msg = code_of(rt.ExecSync, pb.ExecSyncRequest(container_id=created, cmd=["true"]))
    assert c == bad and "not running" in msg, (c, msg)
    ctrs.cstop(cid, timeout=5)
    c, msg = code_of(rt.ExecSync, pb.ExecSyncRequest(container_id=cid, cmd=["true"]))
    assert c == bad and "not running" in msg, (c, msg)
    ctrs.remove(pod)
    assert_clean(ctrs)
