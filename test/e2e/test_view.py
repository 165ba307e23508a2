"""runt's in-memory view of pods and containers (podmgr/view.c): List* and *Status read it,
a watcher learns of exits from the LXC monitors' and pause inits' pidfds, and a restart
rebuilds it from the store and asks the backend once what happened while runtd was away."""

import os
import signal
import time

import pytest

from conftest import pb
from test_containers import EMPTY_CTRS, Ctrs, images, shim_pids, sleeper  # noqa: F401
from test_lxc_sandbox import pause_pids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")


@pytest.fixture
def ctrs(runtd_factory, tmp_path, images):  # noqa: F811
    c = Ctrs(runtd_factory, tmp_path, images)
    yield c
    c.cleanup()


def wait_for(fn, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return fn()


def test_exit_is_seen_by_list_and_status(ctrs):
    pod, cfg = ctrs.pod("exits")
    cid = ctrs.run_ctr(pod, cfg, command=["/bin/sh", "-c", "sleep 0.5; exit 7"])
    assert ctrs.cstatus(cid).state == pb.CONTAINER_RUNNING
    [c] = wait_for(lambda: [c for c in ctrs.clist(id=cid) if c.state == pb.CONTAINER_EXITED])
    assert c.id == cid
    st = ctrs.cstatus(cid)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 7 and st.reason == "Error"
    assert st.finished_at >= st.started_at > 0
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_monitor_killed_from_outside_is_reported(ctrs):
    """The watch is the monitor's pidfd: a monitor killed by someone else ends the container's
    record at once (its status is lost, and says so), not at the next poll of a client."""
    pod, cfg = ctrs.pod("shimkill")
    cid = ctrs.run_ctr(pod, cfg, **sleeper())
    shim = int((ctrs.d.root_dir / "lxc" / cid / "shim.pid").read_text().split()[0])
    assert shim in shim_pids(ctrs.d.root_dir)
    os.kill(shim, signal.SIGKILL)
    st = wait_for(lambda: (lambda s: s if s.state == pb.CONTAINER_EXITED else None)(
        ctrs.cstatus(cid)), timeout=5)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 255
    assert "monitor" in st.message
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_changes_while_runtd_is_down_are_seen_after_the_restart(ctrs):
    pod, cfg = ctrs.pod("away")
    quick = ctrs.run_ctr(pod, cfg, name="quick",
                         command=["/bin/sh", "-c", "sleep 1.5; exit 3"])
    stays = ctrs.run_ctr(pod, cfg, name="stays", **sleeper())
    pod2, cfg2 = ctrs.pod("away2")
    ctrs.d.proc.kill()  # kill -9
    ctrs.d.proc.wait()
    # While runtd is away: one container ends by itself, one pod loses its pause container.
    time.sleep(2.5)
    own = [p for p in pause_pids(ctrs.d.root_dir) if ctrs._own_pid(p)]
    pause2 = [p for p in own if pod2 in open(f"/proc/{p}/cgroup").read()]
    assert len(pause2) == 1
    os.kill(pause2[0], signal.SIGKILL)
    time.sleep(0.5)
    ctrs.d.start()
    st = ctrs.cstatus(quick)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 3
    assert ctrs.cstatus(stays).state == pb.CONTAINER_RUNNING
    states = {c.id: c.state for c in ctrs.clist()}
    assert states == {quick: pb.CONTAINER_EXITED, stays: pb.CONTAINER_RUNNING}
    pods = {p.id: p.state for p in ctrs.list()}
    assert pods == {pod: pb.SANDBOX_READY, pod2: pb.SANDBOX_NOTREADY}
    # The watches were armed again: an exit after the restart is seen too.
    ctrs.cstop(stays, timeout=5)
    assert ctrs.cstatus(stays).state == pb.CONTAINER_EXITED
    ctrs.remove(pod)
    ctrs.remove(pod2)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_list_filters_from_memory(ctrs):
    pod, cfg = ctrs.pod("filt", labels={"app": "a"})
    pod2, cfg2 = ctrs.pod("filt2", labels={"app": "b"})
    c1 = ctrs.run_ctr(pod, cfg, name="one", labels={"tier": "x"}, **sleeper())
    c2 = ctrs.create(pod2, cfg2, name="two", labels={"tier": "y"})
    assert [p.id for p in ctrs.list(label_selector={"app": "b"})] == [pod2]
    assert [p.id for p in ctrs.list(id=pod[:12])] == [pod]
    assert [c.id for c in ctrs.clist(pod_sandbox_id=pod2[:10])] == [c2]
    assert [c.id for c in ctrs.clist(label_selector={"tier": "x"})] == [c1]
    assert [c.id for c in ctrs.clist(state=pb.ContainerStateValue(
        state=pb.CONTAINER_CREATED))] == [c2]
    assert [c.id for c in ctrs.clist()] == [c1, c2]  # oldest first
    ctrs.remove(pod)
    ctrs.remove(pod2)
    assert ctrs.clist() == [] and ctrs.list() == []
    assert ctrs.leftovers() == EMPTY_CTRS
