"""Pods on the proxmox backend, end to end, against the fake PVE (test/pvefake) that really
runs each CT with lxc-start on a host bridge: runt builds and uploads the pod image, creates
the CT over the API, sets the agent's TLS environment, starts it, reaches runt-agent over
mutual TLS at the pod's leased address, sends the image layers and the pod's files over that
channel, and runs the containers there. Every test checks that nothing is left: no CT, no
task running, no lease, no lxc container on the host."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

import kstream as K
from conftest import pb
from test_containers import EMPTY_CTRS, Ctrs, images, sleeper  # noqa: F401
from test_microvm import StreamVmPods

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pvefake"))
from pvefake_client import PveFake  # noqa: E402

HAVE_LXC = os.geteuid() == 0 and os.path.exists("/usr/bin/lxc-start")
pytestmark = pytest.mark.skipif(not HAVE_LXC, reason="the fake's --run-cts needs root and lxc")
T = 90
NET = "10.88.7"
TOKEN = "root@pam!runt=" + "4f1c2d3e-1111-2222-3333-444455556666"


class PvePods(Ctrs):
    def __init__(self, runtd_factory, tmp_path, images, pve, **kw):
        self.pve = pve
        token = tmp_path / "token"
        token.write_text(TOKEN + "\n")
        os.chmod(token, 0o600)
        opts = {"endpoints": f"https://127.0.0.1:{pve.port}",
                "token_file": str(token), "ca_file": pve.ca,
                "subnet": f"{NET}.0/24", "range_start": f"{NET}.10",
                "range_end": f"{NET}.200", "gateway": f"{NET}.1",
                "memory": "256", "task_timeout": "60", "poll_interval": "1"}
        opts.update(kw.pop("pve_opts", {}))
        kw.setdefault("runtimes", {"lxc": ("lxc", {}), "proxmox": ("proxmox", opts)})
        super().__init__(runtd_factory, tmp_path, images, **kw)

    def pod(self, name="p", handler="proxmox", **kw):
        cfg = self.config(name, log_directory=str(self.logs / name), **kw)
        return self.run(cfg, handler), cfg

    # The streaming helpers are the microvm tests' (the same CRI calls).
    exec_url = StreamVmPods.exec_url
    attach_url = StreamVmPods.attach_url
    pf_url = StreamVmPods.pf_url
    wait_listening = StreamVmPods.wait_listening

    def leases(self):
        d = self.d.state_dir / "proxmox" / "ipam" / "proxmox"
        return sorted(x for x in os.listdir(d) if x[0].isdigit()) if d.exists() else []

    def leftovers(self):
        left = super().leftovers()
        st = self.pve.state()
        left["cts"] = sorted(st["cts"])
        left["tasks"] = [t["upid"] for t in st["tasks"] if t["status"] == "running"]
        left["leases"] = self.leases()
        lxc = Path(self.pve.dir) / "lxc"
        left["lxc_host"] = sorted(x for x in os.listdir(lxc)
                                  if (lxc / x / "config").exists()) if lxc.exists() else []
        return left


EMPTY_PVE = dict(EMPTY_CTRS, cts=[], tasks=[], leases=[], lxc_host=[])


@pytest.fixture(scope="module")
def pve():
    if not HAVE_LXC:
        pytest.skip("needs root and lxc")
    p = PveFake(run_cts=True, bridges=[f"vmbr0={NET}.1/24"], tokens=[TOKEN])
    p.start()
    try:
        yield p
    finally:
        assert p.stop() == 0


@pytest.fixture
def pods(runtd_factory, tmp_path, images, pve):
    for n in pve.nodes:
        pve.set_node(n, True)
    v = PvePods(runtd_factory, tmp_path, images, pve)
    yield v
    v.cleanup()


def finish(v, *pods_):
    for p in pods_:
        v.stop(p)
        v.remove(p)
    assert v.leftovers() == EMPTY_PVE, v.leftovers()


def pve_state(v, pod):
    """The fake's record of @pod's CT (found by its description)."""
    for vmid, ct in v.pve.state()["cts"].items():
        if pod in (ct["config"].get("description") or ""):
            return int(vmid), ct
    return None, None


def print_calls(v, what):
    """Prints the API calls since the last reset, less the poller's looks (GET
    /nodes/<node>/lxc, one per node every poll_interval for all its pods); their number."""
    calls = [c for c in v.pve.calls()
             if not (c["method"] == "GET" and re.fullmatch(r"/nodes/[^/]+/lxc", c["path"]))]
    print(f"\nAPI calls, {what}: {len(calls)}")
    for c in calls:
        print("   ", c["method"], c["path"], c["status"], f'{c["ms"]} ms')
    return len(calls)


def test_two_container_pod_exec_logs_exit_codes(pods):
    v = pods
    v.pve.reset_calls()
    pod, cfg = v.pod(hostname="web-1")
    st = v.status(pod).status
    assert st.state == pb.SANDBOX_READY
    ip = st.network.ip
    assert ip.startswith(NET + "."), st
    vmid, ct = pve_state(v, pod)
    assert ct and ct["status"] == "running" and "runt" in ct["config"]["tags"], ct
    assert ct["config"]["features"] == "nesting=1" and ct["config"]["ostype"] == "unmanaged"
    # two containers, one long-running, one that exits 3 with output
    a = v.run_ctr(pod, cfg, "a", **sleeper())
    b = v.run_ctr(pod, cfg, "b", command=["/bin/sh", "-c",
                                          "echo out-line; echo err-line >&2; exit 3"])
    st_b = v.wait_exit(b)
    assert st_b.exit_code == 3, st_b
    log = Path(st_b.log_path).read_text()
    assert " stdout F out-line\n" in log and " stderr F err-line\n" in log, log
    r = v.exec(a, ["/bin/sh", "-c", "echo exec-out; hostname; cat /etc/hosts; exit 4"])
    assert r.exit_code == 4 and r.stdout.startswith(b"exec-out\n"), r
    assert r.stdout.startswith(b"exec-out\nweb-1\n") and f"{ip}\tweb-1".encode() in r.stdout, \
        r.stdout
    # the pod's address is the CT's
    r = v.exec(a, ["/bin/sh", "-c", "ip -4 addr show eth0 || cat /proc/net/fib_trie"])
    assert ip.encode() in r.stdout, r
    assert v.cstatus(a).state == pb.CONTAINER_RUNNING
    v.cstop(a)
    assert v.wait_exit(a).exit_code == 0
    for c in (a, b):
        v.rt().RemoveContainer(pb.RemoveContainerRequest(container_id=c), timeout=T)
    finish(v, pod)
    assert not (Path(v.pve.dir) / "lxc" / str(vmid)).exists()
    print_calls(v, "first pod (with the image upload and the restart reconcile)")
    # A second lifecycle, the image in place: the budget's figure.
    v.pve.reset_calls()
    pod, cfg = v.pod("second")
    c = v.run_ctr(pod, cfg, "c", **sleeper())
    assert v.exec(c, ["echo", "hi"]).stdout == b"hi\n"
    v.cstop(c)
    finish(v, pod)
    n = print_calls(v, "pod lifecycle")
    assert n <= 14, n


def test_streams_attach_port_forward(pods):
    v = pods
    pod, cfg = v.pod()
    web = v.run_ctr(pod, cfg, "web", command=[
        "/bin/sh", "-c", "mkdir -p /tmp/www && echo hello-from-ct > /tmp/www/index.html && "
        "exec busybox httpd -f -p 8080 -h /tmp/www"])
    v.wait_listening(web, [8080])
    with K.remote_command("spdy", v.exec_url(web, ["/bin/sh", "-c", "cat; echo done"],
                                             stdin=True), stdin=True, stdout=True,
                          stderr=True, timeout=30) as r:
        r.write_stdin(b"via-exec\n")
        r.close_stdin()
        res = r.wait(timeout=20)
    assert res.stdout == b"via-exec\ndone\n" and res.exit_code == 0, res
    cat = v.run_ctr(pod, cfg, "cat", stdin=True, stdin_once=True,
                    command=["/bin/sh", "-c", "cat; echo after-eof"])
    with K.remote_command("spdy", v.attach_url(cat, stdin=True), stdin=True, stdout=True,
                          stderr=True, timeout=30) as r:
        r.write_stdin(b"line\n")
        r.read_until(b"line\n")
        r.close_stdin()
        res = r.wait(timeout=20)
    assert res.stdout == b"line\nafter-eof\n", res
    get = b"GET /index.html HTTP/1.0\r\n\r\n"
    with K.SpdyPortForward(v.pf_url(pod, [8080]), timeout=60) as pf:
        c = pf.open(8080)
        c.send(get)
        data = c.read_all()
        assert data.startswith(b"HTTP/1") and data.endswith(b"hello-from-ct\n"), data
    finish(v, pod)


def test_task_failure_surfaces_and_leaves_nothing(pods):
    v = pods
    v.pve.task_fail("vzstart", "startup for container failed", count=1)
    with pytest.raises(grpc.RpcError) as ei:
        v.pod("bad")
    assert "startup for container" in ei.value.details(), ei.value.details()
    assert v.list() == []
    assert v.leftovers() == EMPTY_PVE, v.leftovers()


def test_host_namespaces_refused(pods):
    v = pods
    cfg = v.config("hn", linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.NODE))))
    with pytest.raises(grpc.RpcError) as ei:
        v.run(cfg, "proxmox")
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value
    assert v.leftovers() == EMPTY_PVE


def test_runtd_kill9_and_restart(pods):
    v = pods
    pod, cfg = v.pod()
    a = v.run_ctr(pod, cfg, "a", **sleeper())
    j = v.run_ctr(pod, cfg, "j", command=["/bin/sh", "-c", "sleep 2; echo late; exit 7"])
    v.d.kill()  # SIGKILL
    v.d.close_channels()
    time.sleep(3)  # j exits while runtd is down
    v.d.start()
    assert v.status(pod).status.state == pb.SANDBOX_READY
    assert v.cstatus(a).state == pb.CONTAINER_RUNNING
    st = v.wait_exit(j)
    assert st.exit_code == 7, st
    assert v.exec(a, ["echo", "again"]).stdout == b"again\n"
    finish(v, pod)


def test_node_offline_notready_then_back(pods):
    v = pods
    pod, cfg = v.pod()
    vmid, ct = pve_state(v, pod)
    node = ct["node"]
    v.pve.set_node(node, False)
    deadline = time.monotonic() + 20
    while v.status(pod).status.state == pb.SANDBOX_READY:
        assert time.monotonic() < deadline, "the pod stayed ready with its node offline"
        time.sleep(0.2)
    # not lost: the CT is still there, and runtd still knows the pod
    assert pve_state(v, pod)[0] == vmid
    assert [p.id for p in v.list()] == [pod]
    v.pve.set_node(node, True)
    # Stop needs the node: refused (UNAVAILABLE) until runtd tries it again (5 s).
    deadline = time.monotonic() + 20
    while True:
        try:
            v.stop(pod)
            break
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE and \
                time.monotonic() < deadline, e
            time.sleep(0.5)
    finish(v, pod)


def test_restart_reconcile_removes_unknown_runt_ct(pods):
    v = pods
    orphan = 4242
    v.pve.add_ct(orphan, "node1", config={
        "tags": "runt", "description": "runt pod default/x (uid u), sandbox " + "ab" * 32,
        "ostype": "unmanaged", "hostname": "orphan"}, status="stopped")
    other = 4243  # not runt's: left alone
    v.pve.add_ct(other, "node1", config={"hostname": "other", "ostype": "unmanaged"})
    pod, cfg = v.pod()
    cts = v.pve.state()["cts"]
    assert str(orphan) not in cts and str(other) in cts, sorted(cts)
    v.pve.api("DELETE", f"/nodes/node1/lxc/{other}")
    deadline = time.monotonic() + 10
    while str(other) in v.pve.state()["cts"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    finish(v, pod)


def test_lxc_and_proxmox_pods_reach_each_other(pods):
    """The lxc pod is on its CNI bridge, the proxmox pod's CT on the fake's bridge; both
    bridges are this host's, which routes between them when it forwards IPv4."""
    v = pods
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
        pytest.skip("this host does not forward IPv4: the two bridges are not routed")
    # The suite's CNI network gives a pod no default route: add one via its bridge.
    v.write_conf(plugins=[{"type": "bridge", "bridge": v.bridge, "isGateway": True,
                           "isDefaultGateway": True, "ipMasq": False,
                           "ipam": {"type": "host-local", "dataDir": str(v.ipam),
                                    "ranges": [[{"subnet": v.prefix + "0/24"}]]}}])
    pp, pcfg = v.pod("pve")
    web = v.run_ctr(pp, pcfg, "web", command=[
        "/bin/sh", "-c", "mkdir -p /tmp/w && echo from-pve > /tmp/w/i && "
        "exec busybox httpd -f -p 8080 -h /tmp/w"])
    lp, lcfg = v.pod("lxc", handler="lxc")
    lweb = v.run_ctr(lp, lcfg, "web", command=[
        "/bin/sh", "-c", "mkdir -p /tmp/w && echo from-lxc > /tmp/w/i && "
        "exec busybox httpd -f -p 8080 -h /tmp/w"])
    v.wait_listening(web, [8080])
    v.wait_listening(lweb, [8080])
    pip = v.status(pp).status.network.ip
    lip = v.status(lp).status.network.ip

    def get(cid, ip):
        return v.exec(cid, ["/bin/sh", "-c", "printf 'GET /i HTTP/1.0\\r\\n\\r\\n' | "
                                             f"busybox nc -w 5 {ip} 8080"], timeout=15)

    r = get(lweb, pip)
    assert r.stdout.endswith(b"from-pve\n"), (r, pip)
    r = get(web, lip)
    assert r.stdout.endswith(b"from-lxc\n"), (r, lip)
    print(f"\nlxc pod {lip} <-> proxmox pod {pip}: reachable both ways")
    finish(v, pp, lp)


def test_update_resources_grows_the_ct(pods):
    """The CT's memory and cores follow the sum of its containers' limits when that sum
    exceeds them (PUT config), never below the handler's options (memory 256 here, cores 1),
    and never shrink while the pod lives; the containers' own cgroups are the agent's."""
    v = pods
    pod, cfg = v.pod()
    mib = 1 << 20

    def limits(mem, quota=0):
        return pb.LinuxContainerResources(memory_limit_in_bytes=mem, cpu_quota=quota,
                                          cpu_period=100000 if quota else 0)

    def ct_size():
        ct = pve_state(v, pod)[1]
        return int(ct["config"]["memory"]), int(ct["config"].get("cores", 1))

    a = v.run_ctr(pod, cfg, "a", **sleeper(linux=pb.LinuxContainerConfig(
        resources=limits(128 * mib, 50000))))
    b = v.run_ctr(pod, cfg, "b", **sleeper(linux=pb.LinuxContainerConfig(
        resources=limits(64 * mib))))
    assert ct_size() == (256, 1)  # 192 MiB, half a core: within the options
    v.pve.reset_calls()
    v.rt().UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=b, linux=limits(200 * mib, 150000)), timeout=T)
    assert ct_size() == (328, 2)  # 128 + 200 MiB; 0.5 + 1.5 cores
    puts = [c for c in v.pve.calls() if c["method"] == "PUT"]
    assert [c["params"] for c in puts] == [{"memory": "328", "cores": "2"}], puts
    # The agent took the container's new limits (it answers an error when it cannot set
    # them). This host's cgroup v1 is not mounted in the CT's containers, so they are not
    # read back from inside here, as test_microvm's test does in its guest.
    assert v.cstatus(b).resources.linux.memory_limit_in_bytes == 200 * mib
    # Lower again: the CT keeps its size (no call); the container's cgroup follows.
    v.pve.reset_calls()
    v.rt().UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=b, linux=limits(32 * mib)), timeout=T)
    assert [c for c in v.pve.calls() if c["method"] == "PUT"] == []
    assert ct_size() == (328, 2)
    # A third container that takes the sum over again, at its creation: the CT grows.
    v.run_ctr(pod, cfg, "c", **sleeper(linux=pb.LinuxContainerConfig(
        resources=limits(256 * mib))))
    assert ct_size() == (416, 2)  # 128 + 32 + 256
    # The node away: an update that needs the CT to grow fails UNAVAILABLE, and is done once
    # the node is back.
    node = pve_state(v, pod)[1]["node"]
    v.pve.set_node(node, False)
    try:
        with pytest.raises(grpc.RpcError) as ei:
            v.rt().UpdateContainerResources(pb.UpdateContainerResourcesRequest(
                container_id=a, linux=limits(512 * mib)), timeout=T)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
    finally:
        v.pve.set_node(node, True)
    deadline = time.monotonic() + 20
    while True:  # the client tries the node again 5 s after a 595
        try:
            v.rt().UpdateContainerResources(pb.UpdateContainerResourcesRequest(
                container_id=a, linux=limits(512 * mib)), timeout=T)
            break
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, e
            time.sleep(0.5)
    assert ct_size() == (800, 2)  # 512 + 32 + 256
    finish(v, pod)


def test_remove_with_node_offline_fails_then_retried(pods):
    """A RemovePodSandbox that cannot delete the CT (its node went offline after the stop)
    fails UNAVAILABLE and keeps the pod, so the kubelet retries it; once the node is back a
    remove leaves nothing: no CT, no lease, no pod dir."""
    v = pods
    pod, cfg = v.pod()
    c = v.run_ctr(pod, cfg, "c", **sleeper())
    vmid, ct = pve_state(v, pod)
    node = ct["node"]
    v.cstop(c)
    v.stop(pod)
    v.pve.set_node(node, False)
    try:
        with pytest.raises(grpc.RpcError) as ei:
            v.remove(pod)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
        assert f"CT {vmid}" in ei.value.details(), ei.value.details()
        # Kept, all of it: the pod in CRI, the CT, the lease, the pod dir.
        assert [p.id for p in v.list()] == [pod]
        assert pve_state(v, pod)[0] == vmid
        assert len(v.leases()) == 1
        pod_dir = v.d.state_dir / "proxmox" / "proxmox" / pod[:20]
        assert pod_dir.exists(), pod_dir
    finally:
        v.pve.set_node(node, True)
    deadline = time.monotonic() + 20
    while True:  # the client tries the node again 5 s after its 595
        try:
            v.remove(pod)
            break
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, e
            time.sleep(0.5)
    assert v.list() == []
    assert not pod_dir.exists()
    assert v.leftovers() == EMPTY_PVE, v.leftovers()
