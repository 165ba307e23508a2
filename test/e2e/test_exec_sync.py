"""ExecSync on the LXC backend: what a timeout, a client that gives up, a huge output and bad
requests leave behind (real liblxc as root, busybox images from the session registry)."""

import os
import time
from pathlib import Path

import grpc
import pytest

from test_containers import EMPTY_CTRS, Ctrs, images  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")
T = 60
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


def sleeps_inside(c, cid):
    """`sleep` processes seen from another ExecSync (the image's busybox has no pgrep)."""
    r = c.exec(cid, ["ps", "-o", "args"])
    assert r.exit_code == 0 and r.stderr == b"", r
    return [a for a in r.stdout.decode().splitlines() if a.startswith("sleep")]


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
    assert r.stdout == b"started\n" and len(host_sleeps(BASE + 9)) == 1
    ctrs.remove(pod)
    assert_clean(ctrs)
