"""GetContainerEvents: every subscriber sees each sandbox and container event in order with
the statuses PodSandboxStatus and ContainerStatus give; a subscriber that stops reading is
dropped (RESOURCE_EXHAUSTED) without costing runtd memory or holding up the others; events
that come while nobody listens wait for the next subscriber; subscribers that come and go
leave nothing behind; shutdown ends every stream at once.

The events come from the pod manager (podmgr's event sink). The tests that need events skip
while podmgr publishes none (the sink's calls land in podmgr separately).
"""

import signal
import threading
import time

import grpc
import pytest

from conftest import CALL_TIMEOUT, pb
from test_containers import images  # noqa: F401 (the module's image fixture)
from test_streams import Fake, fd_count, rss_kb, settle_fds

T = CALL_TIMEOUT
CREATED, STARTED, STOPPED, DELETED = (pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT,
                                      pb.CONTAINER_STOPPED_EVENT, pb.CONTAINER_DELETED_EVENT)


class Sub:
    """One GetContainerEvents stream, read on a thread of its own into .events."""

    def __init__(self, d, read=True):
        self.ch = d.channel()
        d.runtime(self.ch).Version(pb.VersionRequest(), timeout=T)  # connected first
        self.call = d.runtime(self.ch).GetContainerEvents(pb.GetEventsRequest())
        self.events = []
        self.error = None
        self.cond = threading.Condition()
        self.thread = None
        if read:
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self):
        try:
            for e in self.call:
                with self.cond:
                    self.events.append(e)
                    self.cond.notify_all()
        except grpc.RpcError as e:
            with self.cond:
                self.error = e
                self.cond.notify_all()

    def wait(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.events):
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; {len(self.events)} events, error {self.error}"
                self.cond.wait(left)
            return list(self.events)

    def wait_error(self, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.error is None:
                left = deadline - time.monotonic()
                assert left > 0, "the stream did not end"
                self.cond.wait(left)
            return self.error

    def close(self):
        self.call.cancel()
        if self.thread:
            self.thread.join(5)
        self.ch.close()


def kinds_of(events, ident):
    return [e.container_event_type for e in events if e.container_id == ident]


def has(ident, *kinds):
    return lambda evs: kinds_of(evs, ident)[:len(kinds)] == list(kinds)


def lifecycle(f, name):
    pid, _ = f.pod(name)
    f.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid), timeout=T)
    f.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid), timeout=T)
    return pid


def require_producer(f):
    """Skips unless podmgr publishes events; leaves no event behind for the test."""
    s = Sub(f.d)
    pid = lifecycle(f, "probe")
    try:
        s.wait(has(pid, CREATED), timeout=2)
    except AssertionError:
        s.close()
        pytest.skip("podmgr publishes no events yet (its calls of the event sink)")
    s.wait(lambda evs: DELETED in kinds_of(evs, pid))
    s.close()


@pytest.fixture
def fake(runtd_factory, images):  # noqa: F811
    f = Fake(runtd_factory, images)
    f.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=images["plain"])), timeout=60)
    return f


def test_two_subscribers_see_a_pod_and_a_container(fake):
    f = fake
    require_producer(f)
    subs = [Sub(f.d), Sub(f.d)]
    pid, cfg = f.pod("ev")
    cid = f.container(pid, cfg, "c")
    f.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=T)
    f.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=T)
    f.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid), timeout=T)
    f.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid), timeout=T)
    for s in subs:
        evs = s.wait(lambda evs: DELETED in kinds_of(evs, pid) and DELETED in kinds_of(evs, cid))
        assert kinds_of(evs, pid) == [CREATED, STARTED, STOPPED, DELETED], evs
        assert kinds_of(evs, cid) == [CREATED, STARTED, STOPPED, DELETED], evs
        # In the order they happened: the container lives inside the pod's life.
        order = [(e.container_id, e.container_event_type) for e in evs
                 if e.container_id in (pid, cid)]
        assert order.index((pid, STARTED)) < order.index((cid, CREATED))
        assert order.index((cid, DELETED)) < order.index((pid, STOPPED))
        for e in evs:
            assert e.created_at > 0
            assert e.pod_sandbox_status.id == pid
            assert e.pod_sandbox_status.metadata.name == "ev"
        by = {(e.container_id, e.container_event_type): e for e in evs}
        assert by[(pid, STARTED)].pod_sandbox_status.state == pb.SANDBOX_READY
        assert by[(pid, STOPPED)].pod_sandbox_status.state == pb.SANDBOX_NOTREADY
        started = [c for c in by[(cid, STARTED)].containers_statuses if c.id == cid]
        assert started and started[0].state == pb.CONTAINER_RUNNING
        assert started[0].metadata.name == "c"
        assert started[0].image.image == f.images["plain"]
        stopped = [c for c in by[(cid, STOPPED)].containers_statuses if c.id == cid]
        assert stopped and stopped[0].state == pb.CONTAINER_EXITED
        assert not [c for c in by[(cid, DELETED)].containers_statuses if c.id == cid] or \
            by[(cid, DELETED)].containers_statuses[0].id == cid
    # The same bytes for both: the events agree field for field.
    a = [e for e in subs[0].events if e.container_id in (pid, cid)]
    b = [e for e in subs[1].events if e.container_id in (pid, cid)]
    assert a == b
    for s in subs:
        s.close()


def test_events_wait_for_the_next_subscriber(fake):
    """What happens while nobody listens reaches the next subscriber, once."""
    f = fake
    require_producer(f)
    pid = lifecycle(f, "alone")
    s = Sub(f.d)
    evs = s.wait(lambda evs: DELETED in kinds_of(evs, pid))
    assert kinds_of(evs, pid) == [CREATED, STARTED, STOPPED, DELETED]
    s2 = Sub(f.d)
    time.sleep(0.3)
    assert s2.events == []
    s.close()
    s2.close()


def test_reader_that_stops_is_dropped(runtd_factory):
    """A subscriber that never reads is dropped once server.events_queue events wait for it;
    one that reads gets every event; runtd's memory stays bounded meanwhile."""
    f = Fake(runtd_factory)
    require_producer(f)
    pid = f.d.proc.pid
    blob = {"blob": "x" * 4096}  # ~4 KiB events: flow control fills after a few hundred
    for i in range(20):  # warm up: threads, arenas
        lifecycle(f, f"warm{i}")
    reader = Sub(f.d)
    stuck = Sub(f.d, read=False)
    rss0 = rss_kb(pid)
    n = 2000
    ids = []
    for i in range(n):
        p, _ = f.pod(f"l{i}", annotations=blob)
        f.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p), timeout=T)
        f.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p), timeout=T)
        ids.append(p)
    rss1 = rss_kb(pid)
    evs = reader.wait(lambda evs: DELETED in kinds_of(evs, ids[-1]), timeout=60)
    for p in ids:
        assert kinds_of(evs, p) == [CREATED, STARTED, STOPPED, DELETED], p
    assert reader.error is None
    # The one that never read: its stream ended with the reason.
    got = []
    try:
        for e in stuck.call:
            got.append(e)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
        assert "events behind" in e.details() and "server.events_queue" in e.details()
    else:
        pytest.fail("the stuck subscriber was not dropped")
    assert len(got) < 4 * n
    print(f"dropped after {len(got)} of {4 * n} events; rss {rss0} -> {rss1} KiB")
    assert rss1 < rss0 + 48 * 1024, (rss0, rss1)
    reader.close()
    stuck.close()


def test_subscribers_come_and_go(runtd_factory):
    """Hundreds of subscribers that connect and cancel (or just go) leave no fd, memory or
    subscription behind; runtd's answers go on."""
    f = Fake(runtd_factory)
    pid = f.d.proc.pid

    def churn(k):
        for i in range(k):
            s = Sub(f.d, read=False)
            if i % 3 == 0:
                s.call.cancel()
            s.ch.close()
        f.d.close_channels()

    churn(50)
    fds0, rss0 = settle_fds(pid, 0, timeout=0.5), rss_kb(pid)
    churn(300)
    fds = settle_fds(pid, fds0)
    rss = rss_kb(pid)
    print(f"subscriber churn: fds {fds0} -> {fds}, rss {rss0} -> {rss} KiB")
    assert fds <= fds0, (fds0, fds)
    assert rss < rss0 + 4 * 1024, (rss0, rss)
    # Still serving, and a new subscriber works.
    f.rt = f.d.runtime()
    s = Sub(f.d)
    f.pod("after")
    s.close()
    assert f.d.runtime().Version(pb.VersionRequest(), timeout=T).runtime_name == "runt"


def test_stop_with_open_event_streams(runtd_factory):
    """SIGTERM with event streams open (idle ones and one nobody reads) exits at once; the
    clients see UNAVAILABLE."""
    f = Fake(runtd_factory)
    subs = [Sub(f.d) for _ in range(5)] + [Sub(f.d, read=False)]
    time.sleep(0.2)
    t0 = time.monotonic()
    f.d.signal(signal.SIGTERM)
    rc, _ = f.d.wait_exit(timeout=5)
    took = time.monotonic() - t0
    assert rc == 0, f.d.diag()
    assert took < 1.0, took
    for s in subs[:5]:
        assert s.wait_error().code() in (grpc.StatusCode.UNAVAILABLE,
                                         grpc.StatusCode.CANCELLED), s.error
    assert "calls=" not in f.d.log_text()  # nothing was left in flight at exit
    for s in subs:
        s.close()
    f.d.exit_seconds = took
    f.d.check_exit(rc)
