"""runtd killed with SIGKILL at random moments under concurrent pod lifecycles, and calls
on one pod or container racing each other. Whatever the timing, once every pod is stopped
and removed through CRI nothing is left on the host: no netns, veth, mount, LXC dir,
process, cgroup, IP lease or iptables chain.

What is counted is this test's own: its runtd's dirs, its bridge, its network's name (the
nat rules' comments), its IPAM dataDir, and a cgroup parent of its own for the cgroups and
the processes in them, so tests running beside it on the machine do not count.
"""

import collections
import json
import os
import random
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import CNI_BIN_DIR, api_pb2_grpc, make_config, pb
from test_containers import Ctrs, images, sleeper  # noqa: F401 (images is a fixture)
from test_sandbox import Pods

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC and netns need root")
T = 60
# The kill moments are the only random thing; RUNT_CRASH_SEED repeats a run.
SEED = int(os.environ.get("RUNT_CRASH_SEED", "0")) or random.randrange(1, 1 << 30)
KILLS = 20
CLIENTS = 4


def own_cgroups(parent):
    """Every cgroup dir at or below @parent, on every hierarchy."""
    out = []
    for base in Path("/sys/fs/cgroup").iterdir():
        d = base / parent
        if d.is_dir():
            out += [f"{base.name}/{parent}"]
            out += [f"{base.name}/{p.relative_to(base)}" for p in d.rglob("*") if p.is_dir()]
    return sorted(out)


def own_procs(root, parent, daemon_pid):
    """Processes of this test: in a cgroup below @parent (pause, the containers), or naming
    @root on their command line (shims, LXC monitors), runtd itself excluded."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == daemon_pid:
            continue
        try:
            cl = (p / "cmdline").read_bytes()
            cg = (p / "cgroup").read_text()
        except OSError:
            continue
        if cl and (str(root).encode() in cl or f"/{parent}/" in cg):
            pids.append(int(p.name))
    return sorted(pids)


class CrashCtrs(Ctrs):
    def __init__(self, runtd_factory, tmp_path, images):
        super().__init__(runtd_factory, tmp_path, images, ipmasq=True)
        self.parent = f"runt-crash-{os.getpid()}-{self.bridge}"

    def leftovers(self):
        left = super().leftovers()
        left["cgroups"] = own_cgroups(self.parent)
        left["pause"] = own_procs(self.d.root_dir, self.parent,
                                  self.d.proc.pid if self.d.alive() else 0)
        return left

    def pod_config(self, name):
        return self.config(name, log_directory=str(self.logs / name),
                           linux=pb.LinuxPodSandboxConfig(cgroup_parent=self.parent))

    def ctr_config(self, name="c"):
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=self.images["plain"]),
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=pb.NamespaceOption(pid=pb.CONTAINER))), **sleeper())

    def remove_everything(self):
        """As the kubelet after the storm: stop and remove every pod through CRI."""
        for item in self.list():
            self.stop(item.id)
            self.remove(item.id)
        assert self.list() == [] and self.clist() == []


@pytest.fixture
def crash(runtd_factory, tmp_path, images):
    c = CrashCtrs(runtd_factory, tmp_path, images)
    yield c
    c.cleanup()


def counts(left):
    return {k: len(v[0]) + len(v[1]) if k == "nat" else len(v) for k, v in left.items()}


def lifecycle_client(d, ctrs, k, stop, stats):
    """RunPodSandbox, CreateContainer, StartContainer, StopPodSandbox, RemovePodSandbox in a
    loop; any error (runtd killed under it, or down) just starts the next round."""
    ch = grpc.insecure_channel(d.listen, options=[("grpc.initial_reconnect_backoff_ms", 50),
                                                  ("grpc.min_reconnect_backoff_ms", 50),
                                                  ("grpc.max_reconnect_backoff_ms", 200)])
    rt = api_pb2_grpc.RuntimeServiceStub(ch)
    i = 0
    try:
        while not stop.is_set():
            i += 1
            step = "run"
            try:
                cfg = ctrs.pod_config(f"k{k}-{i}")
                pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg),
                                       timeout=T).pod_sandbox_id
                step = "create"
                cid = rt.CreateContainer(pb.CreateContainerRequest(
                    pod_sandbox_id=pod, config=ctrs.ctr_config(), sandbox_config=cfg),
                    timeout=T).container_id
                step = "start"
                rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)
                step = "stop"
                rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=T)
                step = "remove"
                rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=T)
                stats["completed"] += 1
            except grpc.RpcError as e:
                stats[f"{step}:{e.code().name}"] += 1
                time.sleep(0.05)
    finally:
        ch.close()


def test_sigkill_under_concurrent_lifecycles_leaves_nothing(crash):
    rng = random.Random(SEED)
    print(f"\nkill moments: seed {SEED} (RUNT_CRASH_SEED={SEED} repeats them)")
    before = crash.leftovers()
    # The leak check sees what a pod has: its lease and its ipMasq chain.
    probe = crash.run(crash.pod_config("probe"))
    seen = crash.leftovers()
    assert len(seen["reserved"]) == 1 and len(seen["nat"][0]) == 1, seen
    crash.remove(probe)
    stop, stats = threading.Event(), collections.Counter()
    clients = [threading.Thread(target=lifecycle_client, args=(crash.d, crash, k, stop, stats))
               for k in range(CLIENTS)]
    t0 = time.monotonic()
    for t in clients:
        t.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.05, 1.0))
            crash.d.proc.kill()
            crash.d.proc.wait()
            crash.d.start()
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=2 * T)
    storm = time.monotonic() - t0
    crash.remove_everything()
    after = crash.leftovers()
    recovered = crash.d.log_text().count("half-created before a restart")
    print(f"storm {storm:.1f}s, {KILLS} kills, outcomes {dict(stats)}, "
          f"half-created undone at restart: {recovered}")
    print(f"counts before {counts(before)}")
    print(f"counts after  {counts(after)}")
    assert not any(t.is_alive() for t in clients)
    assert after == before, f"seed {SEED}"


def race(a, b, b_delay=0.0):
    """Runs @a and @b at once (@b after @b_delay seconds, to land in the middle of @a);
    returns their (result, grpc.RpcError or None) pairs."""
    out = [None, None]
    barrier = threading.Barrier(2)

    def one(k, f):
        barrier.wait()
        if k == 1:
            time.sleep(b_delay)
        try:
            out[k] = (f(), None)
        except grpc.RpcError as e:
            out[k] = (None, e)

    ts = [threading.Thread(target=one, args=(k, f)) for k, f in enumerate((a, b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=2 * T)
    return out


def test_start_and_remove_container_race(crash):
    before = crash.leftovers()
    cfg = crash.pod_config("race")
    pod = crash.run(cfg)
    seen = collections.Counter()
    for i in range(8):
        cid = crash.rt().CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=crash.ctr_config(f"c{i}"), sandbox_config=cfg),
            timeout=T).container_id
        # Odd rounds: Remove lands while the start is under way.
        (_, start_err), (_, rm_err) = race(lambda: crash.start(cid), lambda: crash.crm(cid),
                                           0.03 * (i % 2))
        assert rm_err is None, rm_err
        # Start first (then Remove stops and removes it) or Remove first (nothing to start).
        if start_err is not None:
            assert start_err.code() == grpc.StatusCode.NOT_FOUND, start_err
            assert cid in start_err.details(), start_err.details()
        seen["start failed" if start_err else "started"] += 1
        assert crash.clist() == []
        assert not (crash.d.root_dir / "lxc" / cid).exists()
        assert [c for c in crash.leftovers()["cgroups"] if c.endswith(cid)] == []
    print(f"\noutcomes: {dict(seen)}")
    crash.stop(pod)
    crash.remove(pod)
    assert crash.leftovers() == before


def test_create_container_and_remove_pod_race(crash):
    before = crash.leftovers()
    seen = collections.Counter()
    for i in range(6):
        cfg = crash.pod_config(f"rp{i}")
        pod = crash.run(cfg)
        (created, create_err), (_, rm_err) = race(
            lambda: crash.rt().CreateContainer(pb.CreateContainerRequest(
                pod_sandbox_id=pod, config=crash.ctr_config(), sandbox_config=cfg),
                timeout=T).container_id,
            lambda: crash.remove(pod), 0.03 * (i % 2))
        assert rm_err is None, rm_err
        # Create first (the pod's removal takes the container along) or the pod is gone.
        if create_err is not None:
            assert create_err.code() == grpc.StatusCode.NOT_FOUND, create_err
            assert pod in create_err.details(), create_err.details()
        seen["create failed" if create_err else "created"] += 1
        assert crash.list() == [] and crash.clist() == []
        if created:
            assert not (crash.d.root_dir / "lxc" / created).exists()
    print(f"\noutcomes: {dict(seen)}")
    assert crash.leftovers() == before


SLOW_DEL = """#!/usr/bin/python3
import json, os, sys, time
conf = json.load(sys.stdin)
cmd = os.environ.get("CNI_COMMAND")
if cmd == "DEL":
    time.sleep(float(conf.get("delay", 3)))
elif cmd == "ADD":
    print(json.dumps(conf.get("prevResult") or {"cniVersion": conf["cniVersion"]}))
elif cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}))
"""


def test_slow_stop_holds_up_only_its_own_pod(runtd_factory, tmp_path):
    """A StopPodSandbox that takes seconds (a plugin slow to DEL) holds the lock of its pod
    only: listing, status of another pod and a new pod go on meanwhile."""
    bins = tmp_path / "bin"
    bins.mkdir()
    (bins / "slowdel").write_text(SLOW_DEL)
    (bins / "slowdel").chmod(0o755)
    p = Pods(runtd_factory, tmp_path, start=False)
    p.d.config.write_text(make_config(str(p.d.cni_dir), bin_dirs=(str(bins), CNI_BIN_DIR),
                                      runtimes={"fake": ("fake", {})}, default_runtime="fake"))
    p.write_conf([{"type": "bridge", "bridge": p.bridge, "isGateway": True, "ipMasq": False,
                   "ipam": {"type": "host-local", "dataDir": str(p.ipam),
                            "ranges": [[{"subnet": p.prefix + "0/24"}]]}},
                  {"type": "slowdel", "delay": 6}])
    try:
        p.d.start()
        a, b = p.run(p.config("slow-a")), p.run(p.config("quick-b"))
        stopper = threading.Thread(target=p.stop, args=(a,))
        stopper.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        assert sorted(i.id for i in p.list()) == sorted([a, b])
        assert p.status(b).status.state == pb.SANDBOX_READY
        c = p.run(p.config("quick-c"))
        took = time.monotonic() - t0
        # Still stopping: so none of these calls waited for it (a time bound would flake).
        assert stopper.is_alive(), f"calls on other pods took {took:.1f}s: behind the stop?"
        stopper.join(timeout=T)
        assert p.status(a).status.state == pb.SANDBOX_NOTREADY
        removers = [threading.Thread(target=p.remove, args=(x,)) for x in (a, b, c)]
        for t in removers:
            t.start()
        for t in removers:
            t.join(timeout=T)
        assert p.list() == []
        left = p.leftovers()
        assert left["netns"] == [] and left["reserved"] == [] and left["veths"] == []
        assert left["cni_cache"] == [] and left["pod_dirs"] == []
    finally:
        p.cleanup()


# The bridge plugin, but its DEL fails while the file named by "stuck" exists.
FLAKY_BRIDGE = """#!/usr/bin/python3
import json, os, sys
raw = sys.stdin.buffer.read()
conf = json.loads(raw)
if os.environ.get("CNI_COMMAND") == "DEL" and os.path.exists(conf["stuck"]):
    print(json.dumps({"cniVersion": conf["cniVersion"], "code": 11, "msg": "stuck"}))
    sys.exit(1)
r, w = os.pipe()
os.write(w, raw)
os.close(w)
os.dup2(r, 0)
os.execv("%s/bridge", ["bridge"])
""" % CNI_BIN_DIR
# ADD always fails (after the bridge made the veth and took an address).
FAIL_ADD = """#!/usr/bin/python3
import json, os, sys
conf = json.load(sys.stdin)
if os.environ.get("CNI_COMMAND") == "ADD":
    print(json.dumps({"cniVersion": conf["cniVersion"], "code": 11, "msg": "no"}))
    sys.exit(1)
if os.environ.get("CNI_COMMAND") == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}))
"""


def test_failed_undo_of_a_failed_add_is_retried_after_a_restart(runtd_factory, tmp_path):
    """RunPodSandbox fails in CNI ADD and the DEL that undoes it fails too: the CNI cache
    stays (the sandbox's record goes, so no client will remove it), and the next start of
    runtd DELs it: the address and the cache are gone."""
    bins = tmp_path / "bin"
    bins.mkdir()
    for name, text in (("flakybridge", FLAKY_BRIDGE), ("failadd", FAIL_ADD)):
        (bins / name).write_text(text)
        (bins / name).chmod(0o755)
    stuck = tmp_path / "stuck"
    stuck.write_text("")
    p = Pods(runtd_factory, tmp_path, start=False)
    p.d.config.write_text(make_config(str(p.d.cni_dir), bin_dirs=(str(bins), CNI_BIN_DIR),
                                      runtimes={"fake": ("fake", {})}, default_runtime="fake"))
    p.write_conf([{"type": "flakybridge", "stuck": str(stuck), "bridge": p.bridge,
                   "isGateway": True, "ipMasq": False,
                   "ipam": {"type": "host-local", "dataDir": str(p.ipam),
                            "ranges": [[{"subnet": p.prefix + "0/24"}]]}},
                  {"type": "failadd"}])
    try:
        p.d.start()
        with pytest.raises(grpc.RpcError) as e:
            p.run(p.config("doomed"))
        assert "no" in e.value.details()
        assert p.list() == []
        left = p.leftovers()
        assert len(left["reserved"]) == 1 and len(left["cni_cache"]) == 1, left
        # The DEL would work now; the next start of runtd finds the cache of no sandbox.
        stuck.unlink()
        p.d.stop()
        p.d.start()
        assert p.leftovers() == {**left, "reserved": [], "cni_cache": [], "veths": []}
        p.write_conf()
        pid = p.run(p.config("after"))
        p.remove(pid)
        assert p.list() == []
    finally:
        p.cleanup()
