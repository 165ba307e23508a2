"""Issue 14: calls run on bounded lanes of workers (server.workers, server.read_workers,
server.max_queued), and no ExecSync helper outlives its deadline or runtd (real liblxc as
root, busybox images from the session registry). Nothing here measures time: every check
waits for a state, with a generous bound."""

import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from conftest import RUNTD, pb
from test_containers import Ctrs, images  # noqa: F401 (a fixture)
from test_exec_sync import host_sleeps, idler, wait_gone, wait_started

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")
T = 60
# Sleep lengths no other test uses: each marks one process of ours.
BASE = 70000 + os.getpid() % 10000


def make(runtd_factory, tmp_path, images, **server):  # noqa: F811
    return Ctrs(runtd_factory, tmp_path, images, server=server)


@pytest.fixture
def small(runtd_factory, tmp_path, images):  # noqa: F811
    """One slow worker and no queue: a single running ExecSync fills the slow lane. A call
    leaves its lane before its answer goes out, so one client's calls in a row always fit."""
    c = make(runtd_factory, tmp_path, images, workers=1, read_workers=1, max_queued=0)
    yield c
    c.cleanup()


@pytest.fixture
def four(runtd_factory, tmp_path, images):  # noqa: F811
    c = make(runtd_factory, tmp_path, images, workers=4, max_queued=8)
    yield c
    c.cleanup()


def helpers_of(d):
    """Pids of runt-lxc-exec processes working on this daemon's containers."""
    lxcpath = str(d.root_dir / "lxc").encode()
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"runt-lxc-exec") and lxcpath in argv:
            pids.append(int(p.name))
    return pids


def helpers_under(pid):
    """runt-lxc-exec children of @pid (the others are their supervisors in containers)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            comm = (p / "comm").read_text().strip()
        except OSError:
            continue
        if comm == "runt-lxc-exec" and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(p.name))
    return out


def wait_no_helpers(d, timeout=10.0):
    deadline = time.monotonic() + timeout
    while helpers_of(d) and time.monotonic() < deadline:
        time.sleep(0.05)
    return helpers_of(d)


def admitted(fn, *a, **kw):
    """fn(...), again while the lane is still full: a cancelled call's worker may take a
    moment to finish its helper after the command is gone."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return fn(*a, **kw)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def sleep_req(cid, secs, timeout=0):
    return pb.ExecSyncRequest(container_id=cid, cmd=["sleep", str(secs)], timeout=timeout)


def test_beyond_the_limit_resource_exhausted(small):
    pod, cfg = small.pod()
    cid = small.run_ctr(pod, cfg, **idler())
    rt = small.rt()
    fut = rt.ExecSync.future(sleep_req(cid, BASE), timeout=T)
    wait_started([BASE])
    # The slow lane holds workers + max_queued = 1 call: the next is refused at once.
    for method, req in (("ExecSync", sleep_req(cid, BASE + 1)),
                        ("StopContainer", pb.StopContainerRequest(container_id="nope"))):
        with pytest.raises(grpc.RpcError) as e:
            getattr(rt, method)(req, timeout=T)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, method
        assert "limit of 1 calls in the slow lane" in e.value.details()
        assert "server.workers" in e.value.details()
    assert host_sleeps(BASE + 1) == []
    fut.cancel()
    assert wait_gone([BASE]) == []
    # Room again once the call is done.
    assert admitted(small.exec, cid, ["echo", "again"]).stdout == b"again\n"
    admitted(small.remove, pod)


def test_reads_succeed_while_the_slow_lane_is_full(small):
    pod, cfg = small.pod()
    cid = small.run_ctr(pod, cfg, **idler())
    rt = small.rt()
    fut = rt.ExecSync.future(sleep_req(cid, BASE + 2), timeout=T)
    wait_started([BASE + 2])
    with pytest.raises(grpc.RpcError) as e:
        rt.ExecSync(sleep_req(cid, BASE + 3), timeout=T)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The reads have a lane of their own, and Version/Status run on the queue thread.
    assert [p.id for p in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=T).items] == [pod]
    assert [c.id for c in rt.ListContainers(pb.ListContainersRequest(), timeout=T).containers] \
        == [cid]
    st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=T).status
    assert st.state == pb.CONTAINER_RUNNING
    rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=T)
    small.d.image().ImageFsInfo(pb.ImageFsInfoRequest(), timeout=T)
    small.d.image().ListImages(pb.ListImagesRequest(), timeout=T)
    rt.Version(pb.VersionRequest(), timeout=T)
    rt.Status(pb.StatusRequest(), timeout=T)
    fut.cancel()
    assert wait_gone([BASE + 2]) == []
    admitted(small.remove, pod)


def test_the_helper_enforces_its_deadline_alone(four):
    """runt-lxc-exec --timeout-ms, run by hand (no runtd behind it): it ends the command."""
    pod, cfg = four.pod()
    cid = four.run_ctr(pod, cfg, **idler())
    helper = Path(RUNTD).parent / "runt-lxc-exec"
    s = [BASE + 4, BASE + 5]
    p = subprocess.Popen([str(helper), "--timeout-ms=1000", str(four.d.root_dir / "lxc"), cid,
                          "0", "0", "/", "-", "sh", "-c",
                          f"setsid sleep {s[0]} & exec sleep {s[1]}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, err = p.communicate(timeout=T)
    assert p.returncode == 128 + signal.SIGKILL, err
    assert b"deadline passed" in err
    assert wait_gone(s) == []
    four.remove(pod)


def test_deadline_holds_after_runtd_is_killed_and_restarted(four):
    pod, cfg = four.pod()
    cid = four.run_ctr(pod, cfg, **idler())
    s = BASE + 6
    # No timeout (0: run until done): only the helper's dying with runtd can end it.
    fut = four.rt().ExecSync.future(sleep_req(cid, s, timeout=0), timeout=T)
    wait_started([s])
    four.d.proc.kill()
    four.d.proc.wait()
    four.d.close_channels()
    assert fut.exception(timeout=T) is not None
    four.d.start()
    # Gone long before the sleep would end: the helper died with runtd.
    assert wait_gone([s], timeout=10) == []
    assert wait_no_helpers(four.d) == []
    assert four.exec(cid, ["echo", "after"]).stdout == b"after\n"
    four.remove(pod)


def test_sigterm_with_exec_syncs_in_flight_leaves_no_helper(four):
    pod, cfg = four.pod()
    cid = four.run_ctr(pod, cfg, **idler())
    rt = four.rt()
    # 4 run (server.workers), 6 wait in the queue.
    secs = [BASE + 10 + i for i in range(10)]
    futs = [rt.ExecSync.future(sleep_req(cid, x, timeout=100), timeout=T) for x in secs]
    deadline = time.monotonic() + 20
    while len(host_sleeps(*secs)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(host_sleeps(*secs)) == 4
    assert len(helpers_under(four.d.proc.pid)) == 4
    four.d.signal(signal.SIGTERM)
    four.d.wait_exit()
    four.d.close_channels()
    for f in futs:
        assert f.exception(timeout=T) is not None
    assert wait_no_helpers(four.d) == []
    assert wait_gone(secs, timeout=10) == []
    four.d.start()
    four.remove(pod)
