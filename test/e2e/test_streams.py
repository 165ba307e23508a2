"""The Stream* list RPCs (cri-api v0.36, KEP-5825): each answers what its List form answers,
in chunks of at most 128 items (cri-internal.h CRI_STREAM_CHUNK_*), with no message at all
for an empty result; a client that leaves mid-stream costs runtd nothing.

The pods run on the `fake` handler with host network (no CNI), so hundreds are cheap.
"""

import math
import os
import time

import grpc
import pytest

from conftest import CALL_TIMEOUT, pb
from test_containers import images  # noqa: F401 (the module's image fixture)

T = CALL_TIMEOUT
CHUNK_ITEMS = 128
N_PODS = 300
UNIMPL = grpc.StatusCode.UNIMPLEMENTED


def host_net():
    return pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.NODE)))


class Fake:
    """A runtd whose default handler is `fake`, with pods on the host network."""

    def __init__(self, factory, images=None, server=None):
        regs = None
        if images:
            hosts = sorted({ref.split("/")[0] for ref in images.values()})
            regs = {"registries": [{"prefix": h, "insecure": True} for h in hosts]}
        self.d = factory(runtimes={"fake": ("fake", {})}, default_runtime="fake", images=regs,
                         server=server)
        self.rt = self.d.runtime()
        self.img = self.d.image()
        self.images = images

    def pod(self, name, labels=None, annotations=None):
        cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace="streams", uid="uid-" + name),
            labels=labels or {}, annotations=annotations or {}, linux=host_net())
        pid = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg),
                                    timeout=T).pod_sandbox_id
        return pid, cfg

    def container(self, pod, cfg, name, labels=None, start=True):
        c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), labels=labels or {},
                               image=pb.ImageSpec(image=self.images["plain"]))
        cid = self.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=c, sandbox_config=cfg), timeout=T).container_id
        if start:
            self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)
        return cid


def stream(call, req):
    """All messages of a server stream."""
    return list(call(req, timeout=T))


def flat(msgs, field):
    return [item for m in msgs for item in getattr(m, field)]


def check_chunks(msgs, field, n):
    sizes = [len(getattr(m, field)) for m in msgs]
    assert len(msgs) == math.ceil(n / CHUNK_ITEMS), sizes
    assert all(0 < s <= CHUNK_ITEMS for s in sizes), sizes


@pytest.fixture(scope="module")
def fleet(module_runtd_factory, images):  # noqa: F811
    """300 pods (labels i=0..2, 100 of them stopped) and 150 containers (every other pod
    one, a third of them only created), shared by the tests that only read."""
    f = Fake(module_runtd_factory, images)
    f.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=images["plain"])), timeout=60)
    f.pods, f.ctrs = [], []
    for i in range(N_PODS):
        pid, cfg = f.pod(f"p{i}", labels={"i": str(i % 3)})
        f.pods.append(pid)
        if i % 2 == 0:
            f.ctrs.append(f.container(pid, cfg, f"c{i}", labels={"k": str(i % 3)},
                                      start=i % 3 != 0))
    for pid in f.pods[::3]:
        f.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid), timeout=T)
    return f


POD_FILTERS = [
    None,
    dict(label_selector={"i": "1"}),
    dict(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)),
    dict(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY), label_selector={"i": "0"}),
    dict(label_selector={"i": "nope"}),
    dict(id="zzzz"),
]


@pytest.mark.parametrize("f", POD_FILTERS, ids=lambda f: str(f))
def test_stream_pod_sandboxes(fleet, f):
    filt = pb.PodSandboxFilter(**f) if f is not None else None
    want = list(fleet.rt.ListPodSandbox(pb.ListPodSandboxRequest(filter=filt), timeout=T).items)
    msgs = stream(fleet.rt.StreamPodSandboxes, pb.StreamPodSandboxesRequest(filter=filt))
    assert flat(msgs, "pod_sandboxes") == want
    check_chunks(msgs, "pod_sandboxes", len(want))
    if f is None:
        assert len(want) == N_PODS and len(msgs) == 3


def test_stream_pod_sandboxes_by_id(fleet):
    pid = fleet.pods[7]
    for ident in (pid, pid[:12]):
        filt = pb.PodSandboxFilter(id=ident)
        msgs = stream(fleet.rt.StreamPodSandboxes, pb.StreamPodSandboxesRequest(filter=filt))
        assert [p.id for p in flat(msgs, "pod_sandboxes")] == [pid]


CTR_FILTERS = [
    None,
    dict(label_selector={"k": "2"}),
    dict(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)),
    dict(state=pb.ContainerStateValue(state=pb.CONTAINER_CREATED)),
    dict(label_selector={"k": "nope"}),
]


@pytest.mark.parametrize("f", CTR_FILTERS, ids=lambda f: str(f))
def test_stream_containers(fleet, f):
    filt = pb.ContainerFilter(**f) if f is not None else None
    want = list(fleet.rt.ListContainers(pb.ListContainersRequest(filter=filt),
                                        timeout=T).containers)
    msgs = stream(fleet.rt.StreamContainers, pb.StreamContainersRequest(filter=filt))
    assert flat(msgs, "containers") == want
    check_chunks(msgs, "containers", len(want))
    if f is None:
        assert len(want) == len(fleet.ctrs) == 150 and len(msgs) == 2


def test_stream_containers_of_one_pod(fleet):
    pod = fleet.pods[4]
    filt = pb.ContainerFilter(pod_sandbox_id=pod)
    msgs = stream(fleet.rt.StreamContainers, pb.StreamContainersRequest(filter=filt))
    got = flat(msgs, "containers")
    assert [c.pod_sandbox_id for c in got] == [pod]


def stats_key(s):
    # The figures move between two calls; what is listed, and in which order, must not.
    return (s.attributes.id, s.attributes.metadata.name, dict(s.attributes.labels))


@pytest.mark.parametrize("f", [None, dict(label_selector={"k": "1"}), dict(id="zzzz")],
                         ids=str)
def test_stream_container_stats(fleet, f):
    filt = pb.ContainerStatsFilter(**f) if f is not None else None
    want = fleet.rt.ListContainerStats(pb.ListContainerStatsRequest(filter=filt),
                                       timeout=T).stats
    msgs = stream(fleet.rt.StreamContainerStats, pb.StreamContainerStatsRequest(filter=filt))
    assert [stats_key(s) for s in flat(msgs, "container_stats")] == [stats_key(s) for s in want]
    check_chunks(msgs, "container_stats", len(want))


def test_stream_images(fleet):
    for filt in (None, pb.ImageFilter(image=pb.ImageSpec(image=fleet.images["plain"])),
                 pb.ImageFilter(image=pb.ImageSpec(image="no/such:image"))):
        want = list(fleet.img.ListImages(pb.ListImagesRequest(filter=filt), timeout=T).images)
        msgs = stream(fleet.img.StreamImages, pb.StreamImagesRequest(filter=filt))
        assert flat(msgs, "images") == want
        check_chunks(msgs, "images", len(want))


@pytest.mark.parametrize("list_rpc,list_req,stream_rpc,stream_req,field", [
    ("ListPodSandboxStats", pb.ListPodSandboxStatsRequest(), "StreamPodSandboxStats",
     pb.StreamPodSandboxStatsRequest(), "pod_sandbox_stats"),
    ("ListPodSandboxMetrics", pb.ListPodSandboxMetricsRequest(), "StreamPodSandboxMetrics",
     pb.StreamPodSandboxMetricsRequest(), "pod_sandbox_metrics"),
])
def test_stream_follows_its_list_form(fleet, list_rpc, list_req, stream_rpc, stream_req, field):
    """A Stream form answers UNIMPLEMENTED exactly while its List form does."""
    try:
        want = getattr(fleet.rt, list_rpc)(list_req, timeout=T)
    except grpc.RpcError as e:
        assert e.code() == UNIMPL, e
        with pytest.raises(grpc.RpcError) as s:
            stream(getattr(fleet.rt, stream_rpc), stream_req)
        assert s.value.code() == UNIMPL and stream_rpc in s.value.details(), s.value
        return
    items = list(getattr(want, want.DESCRIPTOR.fields[0].name))
    msgs = stream(getattr(fleet.rt, stream_rpc), stream_req)
    assert len(flat(msgs, field)) == len(items)


def test_empty_result_sends_no_message(fleet):
    """An empty result is the status alone (zero items), never an empty message."""
    filt = pb.PodSandboxFilter(label_selector={"none": "x"})
    it = fleet.rt.StreamPodSandboxes(pb.StreamPodSandboxesRequest(filter=filt), timeout=T)
    assert list(it) == []
    assert it.code() == grpc.StatusCode.OK


def test_malformed_stream_request(fleet):
    ch = fleet.d.channel()
    with pytest.raises(grpc.RpcError) as e:
        list(ch.unary_stream("/runtime.v1.RuntimeService/StreamPodSandboxes")(
            b"\x0a\x05ab", timeout=T))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "StreamPodSandboxes" in e.value.details()


# --------------------------------------------------------------------------- cancellation


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def settle_fds(pid, want, timeout=5):
    deadline = time.monotonic() + timeout
    while fd_count(pid) > want and time.monotonic() < deadline:
        time.sleep(0.05)
    return fd_count(pid)


def cancel_round(d, n=100):
    """@n clients that start a long stream and cancel it: half after the first message,
    half before any; each on a channel of its own, connected first (a channel closed while
    it connects is another matter: see the report of the streams branch)."""
    for i in range(n):
        ch = d.channel()
        rt = d.runtime(ch)
        rt.Version(pb.VersionRequest(), timeout=T)
        it = rt.StreamPodSandboxes(pb.StreamPodSandboxesRequest(), timeout=T)
        if i % 2 == 0:
            assert len(next(it).pod_sandboxes) > 0
        it.cancel()
        if i % 10 == 9:  # and some that just go away, without a cancel
            rt.StreamPodSandboxes(pb.StreamPodSandboxesRequest(), timeout=T)
        ch.close()
    d.close_channels()


def test_cancel_mid_stream(runtd_factory):
    """Clients that leave a long stream early leave no fd or memory behind; runtd answers
    the next calls."""
    f = Fake(runtd_factory)
    big = {"blob": "x" * 8192}  # 300 pods of ~8 KiB: ~2.4 MiB, more than flow control takes
    for i in range(N_PODS):
        f.pod(f"big{i}", annotations=big)
    pid = f.d.proc.pid
    # The first round sets the high-water mark (List answers in flight at once, arenas).
    cancel_round(f.d)
    fds0, rss0 = settle_fds(pid, 0, timeout=0.5), rss_kb(pid)
    for _ in range(2):
        cancel_round(f.d)
    fds = settle_fds(pid, fds0)
    rss = rss_kb(pid)
    print(f"cancel mid-stream: fds {fds0} -> {fds}, rss {rss0} -> {rss} KiB")
    assert fds <= fds0, (fds0, fds)
    assert rss < rss0 + 4 * 1024, (rss0, rss)
    rt = f.d.runtime()
    assert rt.Version(pb.VersionRequest(), timeout=T).runtime_name == "runt"
    assert len(flat(stream(rt.StreamPodSandboxes, pb.StreamPodSandboxesRequest()),
                    "pod_sandboxes")) == N_PODS


def test_slow_reader_holds_no_worker(runtd_factory):
    """Streams nobody reads (as many as there are read workers, and more) leave the read
    lane free: List* calls are answered at once meanwhile."""
    f = Fake(runtd_factory, server={"read_workers": 1, "max_queued": 0})
    big = {"blob": "x" * 8192}
    for i in range(N_PODS):
        f.pod(f"slow{i}", annotations=big)
    held = []
    for _ in range(4):
        ch = f.d.channel()
        it = f.d.runtime(ch).StreamPodSandboxes(pb.StreamPodSandboxesRequest(), timeout=30)
        next(it)  # started, then left unread: its sends wait on flow control
        held.append(it)
    t0 = time.monotonic()
    for _ in range(20):
        assert len(f.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=T).items) == N_PODS
    assert time.monotonic() - t0 < 5
    for it in held:
        it.cancel()
