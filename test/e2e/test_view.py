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


def test_lxc_events_and_an_exit_while_runtd_is_down(ctrs):
    """Events from the real backend: a container's own exit comes from the watcher (not from
    a call), and one that ended while runtd was down is told to the first subscriber after
    the restart."""
    from test_events import CREATED, DELETED, STARTED, STOPPED, Sub, kinds_of
    sub = Sub(ctrs.d)
    pod, cfg = ctrs.pod("ev")
    cid = ctrs.run_ctr(pod, cfg, command=["/bin/sh", "-c", "sleep 0.3; exit 5"])
    evs = sub.wait(lambda es: STOPPED in kinds_of(es, cid))
    assert kinds_of(evs, pod)[:2] == [CREATED, STARTED]
    assert kinds_of(evs, cid) == [CREATED, STARTED, STOPPED]
    stop = [e for e in evs if e.container_id == cid][-1]
    [st] = [s for s in stop.containers_statuses if s.id == cid]
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 5
    assert stop.pod_sandbox_status.id == pod
    assert stop.pod_sandbox_status.state == pb.SANDBOX_READY
    assert stop.created_at > 0
    sub.close()

    later = ctrs.run_ctr(pod, cfg, name="later", command=["/bin/sh", "-c", "sleep 1; exit 9"])
    ctrs.d.proc.kill()  # kill -9, and the container ends while runtd is away
    ctrs.d.proc.wait()
    time.sleep(2)
    ctrs.d.start()
    sub = Sub(ctrs.d)
    evs = sub.wait(lambda es: STOPPED in kinds_of(es, later))
    stop = [e for e in evs if e.container_id == later and e.container_event_type == STOPPED][0]
    [st] = [s for s in stop.containers_statuses if s.id == later]
    assert st.exit_code == 9
    ctrs.remove(pod)
    evs = sub.wait(lambda es: DELETED in kinds_of(es, pod))
    assert DELETED in kinds_of(evs, later) and DELETED in kinds_of(evs, cid)
    sub.close()
    assert ctrs.leftovers() == EMPTY_CTRS


def test_a_start_cut_off_by_a_crash_can_be_done_again(ctrs):
    """A row left 'starting' (runtd killed inside StartContainer, before the backend ran it)
    is 'created' again after the restart, so the kubelet's next StartContainer works; one
    that did start is recorded running."""
    import sqlite3
    pod, cfg = ctrs.pod("cut")
    never = ctrs.create(pod, cfg, name="never", **sleeper())
    ran = ctrs.run_ctr(pod, cfg, name="ran", **sleeper())
    ctrs.d.proc.kill()
    ctrs.d.proc.wait()
    db = sqlite3.connect(ctrs.d.state_dir / "runt.db")
    db.execute("UPDATE containers SET state = 'starting' WHERE id IN (?, ?)", (never, ran))
    db.commit()
    ctrs.d.start()
    assert ctrs.cstatus(never).state == pb.CONTAINER_CREATED
    assert ctrs.cstatus(ran).state == pb.CONTAINER_RUNNING
    rows = dict(db.execute("SELECT id, state FROM containers").fetchall())
    assert rows[never] == "created" and rows[ran] == "running"
    db.close()
    ctrs.start(never)
    assert ctrs.cstatus(never).state == pb.CONTAINER_RUNNING
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS
