"""Pods on the proxmox backend, end to end, against the fake PVE (test/pvefake) that really
runs each CT with lxc-start on a host bridge: runt builds and uploads the pod image, creates
the CT over the API, sets the agent's TLS environment, starts it, reaches runt-agent over
mutual TLS at the pod's leased address, sends the image layers and the pod's files over that
channel, and runs the containers there. Every test checks that nothing is left: no CT, no
task running, no lease, no lxc container on the host."""

import calendar
import json
import os
import random
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

import kstream as K
from conftest import CNI_BIN_DIR, pb
from test_containers import (EMPTY_CTRS, Ctrs, cap_eff, images, mounts_under,  # noqa: F401
                             security, sleeper)
from test_microvm import HAVE_VM, NO_VM, StreamVmPods, VmPods, print_vm_logs, qemu_pids, reap
from test_pvefake import free_subnet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pvefake"))
from pvefake_client import PveFake  # noqa: E402

HAVE_LXC = os.geteuid() == 0 and os.path.exists("/usr/bin/lxc-start")
pytestmark = pytest.mark.skipif(not HAVE_LXC, reason="the fake's --run-cts needs root and lxc")
T = 90
NET = free_subnet()  # the fake's bridge: a /24 of its own, so that two runs do not collide
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
        kw.setdefault("runtimes", {"lxc": ("lxc", {}), "proxmox": ("proxmox", opts),
                                   **kw.pop("more_runtimes", {})})
        super().__init__(runtd_factory, tmp_path, images, **kw)

    def pod(self, name="p", handler="proxmox", **kw):
        cfg = self.config(name, log_directory=str(self.logs / name), **kw)
        return self.run(cfg, handler), cfg

    # The streaming helpers are the microvm tests' (the same CRI calls).
    exec_url = StreamVmPods.exec_url
    attach_url = StreamVmPods.attach_url
    pf_url = StreamVmPods.pf_url
    wait_listening = StreamVmPods.wait_listening
    # A runtd with a microvm handler too (more_runtimes) leaves no VM either.
    vm_dirs = VmPods.vm_dirs

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
        left["vms"] = self.vm_dirs()
        left["qemu"] = qemu_pids(self.d.run_dir)
        left["mounts"] += mounts_under(self.d.run_dir)
        left["hostports"] = hostport_rules(ids=self.ids)[1]
        return left


EMPTY_PVE = dict(EMPTY_CTRS, cts=[], tasks=[], leases=[], lxc_host=[], vms=[], qemu=[],
                 hostports=[])

HOSTPORT_NET = "runt-hostport"  # the network of proxmox pods' host ports (netmgr/hostport.c)


def nat_rules():
    return subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def hostport_rules(ids=None, port=None):
    """portmap's entry rules (CNI-HOSTPORT-DNAT) of the runt-hostport network that name one
    of the pod ids @ids or forward host port @port, and the CNI-DN-* chains they jump to:
    (chains, rules)."""
    mark = re.compile(r'dnat name: \\?"' + HOSTPORT_NET + r'\\?" id: \\?"([0-9a-f]{64})')
    chains, rules = set(), []
    for line in nat_rules():
        m = mark.search(line)
        if not line.startswith("-A CNI-HOSTPORT-DNAT ") or not m:
            continue
        if (ids is not None and m.group(1) in ids) or \
                (port is not None and re.search(rf"--dports (\S+,)?{port}(,|\s)", line)):
            rules.append(line)
            chains.add(line.split()[line.split().index("-j") + 1])
    return sorted(chains), sorted(rules)


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


@pytest.fixture
def vm_pods(runtd_factory, tmp_path, images, pve):
    """PvePods whose runtd has the microvm handler as well."""
    if not HAVE_VM:
        pytest.skip(NO_VM)
    for n in pve.nodes:
        pve.set_node(n, True)
    v = PvePods(runtd_factory, tmp_path, images, pve,
                more_runtimes={"microvm": ("microvm", {"console": "true"})})
    yield v
    print_vm_logs(v)
    reap(v)


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
    n_first = print_calls(v, "first pod (with the image upload and the restart reconcile)")
    first = non_poll_calls(v)
    # The steady state's 7, plus the reconcile's listing, the node pick and the storage
    # listing, plus the upload when this fake's node did not hold the image yet (an earlier
    # test's pod may have put it there); stop makes no call: the agent powered the CT off.
    uploads = [c for c in first if c[0] == "POST" and c[1].endswith("/upload")]
    assert len(first) == 10 + len(uploads) and len(uploads) <= 1, first
    assert not [c for c in first if c[1].endswith(("/status/shutdown", "/status/stop"))], first
    print(f"first pod: {n_first} calls, {len(first)} without task polls")
    # A second lifecycle, the image in place: the budget's figure.
    v.pve.reset_calls()
    pod, cfg = v.pod("second")
    c = v.run_ctr(pod, cfg, "c", **sleeper())
    assert v.exec(c, ["echo", "hi"]).stdout == b"hi\n"
    v.cstop(c)
    finish(v, pod)
    n = print_calls(v, "pod lifecycle")
    # 10 with one poll per task (the budget is 12): nextid, create + poll, PUT config, start +
    # poll, PUT config delete=env, GET config (the ownership check), delete + poll. A task
    # that takes longer on a loaded machine is polled again, which is the fake's timing, not
    # runt's calls.
    calls = [(c["method"], c["path"]) for c in v.pve.calls()
             if not (c["method"] == "GET" and re.fullmatch(r"/nodes/[^/]+/lxc", c["path"]))]
    assert len(calls) == n
    assert len(set(c for c in calls if c[1].endswith("/status") and "/tasks/" in c[1])) == 3
    # (The node pick is reused for 5 s: a first pod that took longer makes it again.)
    assert [(m, re.sub(r"^/nodes/[^/]+/lxc(/\d+)?", "CT", p)) for m, p in non_poll_calls(v)
            if (m, p) != ("GET", "/cluster/resources")] == [
        ("GET", "/cluster/nextid"), ("POST", "CT"), ("PUT", "CT/config"),
        ("POST", "CT/status/start"), ("PUT", "CT/config"), ("GET", "CT/config"),
        ("DELETE", "CT")], calls


def test_unprivileged_ct_layers_ids_and_overlay(pods, registry, tmp_path):
    """The CT is unprivileged (PVE refuses feature flags on a privileged CT to any API
    token): its root is uid 100000 on the node. The agent unpacks layers there with the
    opaque mark in user.overlay.opaque, an owner outside the id map as 65534 and a trusted.*
    xattr dropped, and mounts overlay with userxattr, so deletions and opaque directories
    work in the lower layers and in the container's upper one."""
    import registry as R
    from registry import Dir, File, Opaque, Whiteout

    lay = R.OciLayout.create(tmp_path)
    R.busybox_image(lay, "base", cmd=["/bin/sh"], env=["PATH=/bin"])
    lay.append_layer("base", R.layer_tar([
        Dir("data"), Whiteout("data/remove-me"), File("data/added", "added\n"),
        Dir("opq"), Opaque("opq"), File("opq/new1", "new1\n"),
        File("far", "far\n", uid=70000, gid=70001),
        File("near", "near\n", uid=1234, gid=5678),
        File("xa", "xa\n", xattrs={"user.test": "hello", "trusted.test": "t"}),
    ]), new_tag="layered")
    ref = f"{registry.host}/pve/layered:1"
    lay.push("layered", registry.host, ref.split("/", 1)[1])
    v = pods
    v.d.image().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=T)
    v.images["layered"] = ref
    pod, cfg = v.pod("unpriv")
    vmid, ct = pve_state(v, pod)
    assert ct["config"].get("unprivileged") == "1", ct["config"]
    r = subprocess.run(["lxc-info", "-n", str(vmid), "-P", str(Path(v.pve.dir) / "lxc"), "-pH"],
                       capture_output=True, text=True)
    init = int(r.stdout.strip())
    assert Path(f"/proc/{init}/uid_map").read_text().split() == ["0", "100000", "65536"]
    assert os.stat(f"/proc/{init}").st_uid == 100000
    c = v.run_ctr(pod, cfg, "c", image="layered", **sleeper())
    r = v.exec(c, ["/bin/sh", "-c",
                   "ls /data; echo --; ls -a /opq; echo --; stat -c '%u:%g' /far /near; "
                   "echo --; cat /xa; ls -l /dev/null; head -c 4 /dev/zero | wc -c; "
                   "echo x > /dev/null && echo null-ok"])
    assert r.exit_code == 0, r
    out = r.stdout.decode().split("--\n")
    assert out[0].split() == ["added", "keep"], out
    assert out[1].split() == [".", "..", "new1"], out
    assert out[2].split() == ["65534:65534", "1234:5678"], out
    assert out[3].startswith("xa\ncrw-rw-rw-") and "4\nnull-ok\n" in out[3], out
    # In the upper layer: a lower directory removed and made again is empty (an opaque
    # mark overlay sets in user.*), a removed lower file stays gone.
    r = v.exec(c, ["/bin/sh", "-c", "rm -r /opq /data/keep && mkdir /opq && ls -a /opq && "
                   "echo -- && ls /data"])
    assert r.exit_code == 0 and r.stdout.decode().split() == [".", "..", "--", "added"], r
    finish(v, pod)


def non_poll_calls(v):
    """The API calls since the last reset but the task polls and the poller's looks."""
    return [(c["method"], c["path"]) for c in v.pve.calls()
            if not (c["method"] == "GET" and re.fullmatch(r"/nodes/[^/]+/lxc", c["path"]))
            and not ("/tasks/" in c["path"] and c["path"].endswith("/status"))]


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


def test_privileged_all_caps_and_symlinked_volume(pods, tmp_path):
    """As critest sends them: a privileged container and one adding ALL get every capability
    the CT holds (its bounding set is smaller than the full list: PVE's lxc.cap.drop, and
    here this host's), not a capset error; a volume whose host path is a symlink to a
    directory gets the directory's snapshot, as a bind would."""
    v = pods
    pod, cfg = v.pod(linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(privileged=True)))
    vmid, ct = pve_state(v, pod)
    bnd = int(Path(f"/proc/{ct['pid']}/status").read_text().split("CapBnd:")[1].split()[0], 16)
    p = v.run_ctr(pod, cfg, "priv", **sleeper(linux=security(privileged=True)))
    assert cap_eff(v, p) == bnd, (hex(cap_eff(v, p)), hex(bnd))
    a = v.run_ctr(pod, cfg, "all", **sleeper(linux=security(
        capabilities=pb.Capability(add_capabilities=["ALL"], drop_capabilities=["KILL"]))))
    assert cap_eff(v, a) == bnd & ~(1 << 5), (hex(cap_eff(v, a)), hex(bnd))  # CAP_KILL is 5
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("in-vol\n")
    link = tmp_path / "vol-link"
    link.symlink_to(vol)
    m = v.run_ctr(pod, cfg, "m", **sleeper(mounts=[
        pb.Mount(container_path="/data", host_path=str(link))]))
    assert v.exec(m, ["cat", "/data/f"]).stdout == b"in-vol\n"
    for c in (p, a, m):
        v.cstop(c, timeout=2)
    finish(v, pod)


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


def wait_state(v, pod, want, timeout=30):
    deadline = time.monotonic() + timeout
    while v.status(pod).status.state != want:
        assert time.monotonic() < deadline, f"pod {pod[:12]} never {want}: {v.status(pod)}"
        time.sleep(0.2)


def test_node_back_makes_pod_ready_again(pods):
    """A pod whose node went offline is NOTREADY, says why in its verbose status, and is
    READY again once the node is back (its CT and agent alive): exec works through it."""
    v = pods
    pod, cfg = v.pod()
    c = v.run_ctr(pod, cfg, "c", **sleeper())
    vmid, ct = pve_state(v, pod)
    node = ct["node"]
    v.pve.set_node(node, False)
    try:
        wait_state(v, pod, pb.SANDBOX_NOTREADY)
        info = json.loads(v.status(pod, verbose=True).info["info"])
        assert node in info.get("reason", "") and "unreachable" in info["reason"], info
        assert v.cstatus(c).state == pb.CONTAINER_RUNNING
    finally:
        v.pve.set_node(node, True)
    wait_state(v, pod, pb.SANDBOX_READY)
    assert "reason" not in json.loads(v.status(pod, verbose=True).info["info"])
    assert [p.state for p in v.list()] == [pb.SANDBOX_READY]
    assert v.cstatus(c).state == pb.CONTAINER_RUNNING
    assert v.exec(c, ["echo", "back"]).stdout == b"back\n"
    v.cstop(c)
    finish(v, pod)


def iptables(*args):
    subprocess.run(["iptables", "-w", *args], check=True, capture_output=True)


def test_partition_keeps_containers_running(pods):
    """A node unreachable over the API and the agent's connection cut too (a partition):
    the containers keep their last known state, not EXITED; once the network is back the
    layer connects again, the pod is READY and exec works."""
    v = pods
    pod, cfg = v.pod()
    c = v.run_ctr(pod, cfg, "c", **sleeper())
    ip = v.status(pod).status.network.ip
    vmid, ct = pve_state(v, pod)
    node = ct["node"]
    rule = ["OUTPUT", "-d", ip, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]
    v.pve.set_node(node, False)
    cut = False
    try:
        wait_state(v, pod, pb.SANDBOX_NOTREADY)  # runtd knows the node is away
        iptables("-I", *rule)
        cut = True
        # Something goes to the agent: the reset ends its connection.
        with pytest.raises(grpc.RpcError):
            v.exec(c, ["true"])
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            st = v.cstatus(c)
            assert st.state == pb.CONTAINER_RUNNING, st
            time.sleep(0.2)
    finally:
        if cut:
            iptables("-D", *rule)
        v.pve.set_node(node, True)
    wait_state(v, pod, pb.SANDBOX_READY)
    assert v.cstatus(c).state == pb.CONTAINER_RUNNING
    assert v.exec(c, ["echo", "again"]).stdout == b"again\n"
    v.cstop(c)
    finish(v, pod)


def delete_cts(v, vmids):
    """Deletes CTs the test planted (as their owner would) and waits for them to go."""
    for vmid in vmids:
        node = v.pve.state()["cts"][str(vmid)]["node"]
        st, reason, body = v.pve.api("DELETE", f"/nodes/{node}/lxc/{vmid}",
                                     {"purge": "1", "force": "1"})
        assert st == 200, (st, reason)
        v.pve.wait_task(body["data"])
    deadline = time.monotonic() + 10
    while set(map(str, vmids)) & set(v.pve.state()["cts"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def restart(v):
    v.d.kill()
    v.d.close_channels()
    v.d.start()


def test_restart_reconcile_removes_only_own_orphans(runtd_factory, tmp_path, images, pve):
    """The reconcile removes a CT of this runtd and handler whose pod it does not know, and
    nothing else: not a CT tagged "runtime", not one of another runtd (another owner tag),
    not one of this runtd's second proxmox handler."""
    opts2 = {"endpoints": f"https://127.0.0.1:{pve.port}", "ca_file": pve.ca,
             "subnet": f"{NET}.0/24", "range_start": f"{NET}.210", "range_end": f"{NET}.250",
             "gateway": f"{NET}.1", "memory": "256", "task_timeout": "60",
             "poll_interval": "1", "token_file": str(tmp_path / "token")}
    v = PvePods(runtd_factory, tmp_path, images, pve,
                more_runtimes={"proxmox2": ("proxmox", opts2)})
    try:
        a, _ = v.pod("a")
        b, _ = v.pod("b", handler="proxmox2")
        ours = [t for t in pve_state(v, a)[1]["config"]["tags"].split(";") if t != "runt"]
        theirs = [t for t in pve_state(v, b)[1]["config"]["tags"].split(";") if t != "runt"]
        assert len(ours) == 1 and len(theirs) == 1 and ours != theirs, (ours, theirs)
        assert re.fullmatch(r"runt-[0-9a-f]{12}", ours[0]), ours
        desc = "runt pod default/x (uid u), sandbox "
        planted = {
            4242: ("runt;" + ours[0], desc + "ab" * 32),        # ours, pod unknown: removed
            4243: ("runtime", desc + "cd" * 32),                # a user's tag: kept
            4244: ("runt;runt-0123456789ab", desc + "ef" * 32),  # another runtd's: kept
            4245: ("runt;" + ours[0], "runt pod default/x sandbox " + "12" * 31),  # not ours
        }
        for vmid, (tags, d) in planted.items():
            v.pve.add_ct(vmid, "node1", config={"tags": tags, "description": d,
                                                "ostype": "unmanaged", "hostname": f"c{vmid}"})
        restart(v)
        c, _ = v.pod("c")  # the first pod of this runtd: the reconcile runs before it
        cts = v.pve.state()["cts"]
        assert "4242" not in cts, sorted(cts)
        assert {"4243", "4244", "4245"} <= set(cts), sorted(cts)
        assert pve_state(v, b)[0] is not None, "the other handler's CT was removed"
        assert v.status(b).status.state == pb.SANDBOX_READY
        delete_cts(v, [4243, 4244, 4245])
        finish(v, a, b, c)
    finally:
        v.cleanup()


def test_overlapping_proxmox_ranges_refused(tmp_path, pve):
    from conftest import Runtd
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    os.chmod(token, 0o600)
    base = {"endpoints": f"https://127.0.0.1:{pve.port}", "token_file": str(token),
            "ca_file": pve.ca, "subnet": f"{NET}.0/24", "gateway": f"{NET}.1"}
    d = Runtd(runtimes={"lxc": ("lxc", {}),
                        "proxmox": ("proxmox", dict(base, range_end=f"{NET}.100")),
                        "pve2": ("proxmox", dict(base, range_start=f"{NET}.100"))})
    try:
        d.start()  # a handler that cannot start is unavailable; runtd serves the others
        log = d.log_file.read_text()
        assert re.search(r"handler=pve2 .*its pod range overlaps another proxmox handler",
                         log), log[-2000:]
        assert "handler=proxmox backend=proxmox unavailable" not in log, log[-2000:]
        d.stop()
    finally:
        d.kill()
        d.cleanup()


def test_failed_create_leaves_foreign_cts(runtd_factory, tmp_path, images, pve):
    """A create that fails leaves the CTs its vmids named alone: nextid raced every time
    (the ids taken by someone else meanwhile), or the POST itself failed after nextid
    answered an id someone took. The fake makes those foreign CTs on node1: the pods go
    there too, so a DELETE of runt's would hit them."""
    v = PvePods(runtd_factory, tmp_path, images, pve, pve_opts={"nodes": "node1"})
    try:
        before = set(v.pve.state()["cts"])
        v.pve.nextid_stale(5)  # every attempt of runtd (5) finds its id taken
        with pytest.raises(grpc.RpcError) as ei:
            v.pod("stale")
        assert "no free vmid" in ei.value.details(), ei.value.details()
        # Contention, worth a retry: not ALREADY_EXISTS (the pod is not what exists).
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
        foreign = sorted(set(v.pve.state()["cts"]) - before)
        assert len(foreign) == 5, foreign
        v.pve.nextid_stale(1)
        v.pve.fail("POST", "/nodes/node1/lxc", status=500, message="something broke")
        with pytest.raises(grpc.RpcError) as ei:
            v.pod("sync")
        assert "something broke" in ei.value.details(), ei.value.details()
        assert ei.value.code() == grpc.StatusCode.INTERNAL, ei.value
        now = set(v.pve.state()["cts"])
        assert set(foreign) <= now and len(now - before) == 6, sorted(now - before)
        delete_cts(v, [int(x) for x in now - before])
        assert v.leftovers() == EMPTY_PVE, v.leftovers()
    finally:
        v.cleanup()


def test_agent_env_removed_after_ready(pods):
    v = pods
    pod, cfg = v.pod()
    vmid, ct = pve_state(v, pod)
    assert "env" not in ct["config"], ct["config"]
    assert "entrypoint" in ct["config"]
    c = v.run_ctr(pod, cfg, "c", **sleeper())
    assert v.exec(c, ["echo", "hi"]).stdout == b"hi\n"
    v.cstop(c, timeout=2)
    finish(v, pod)


def test_ct_restarted_behind_runts_back_is_a_dead_pod(runtd_factory, tmp_path, images, pve):
    """A CT that someone stops and starts again through PVE (runtd running, or down
    meanwhile) is not the pod any more: its containers' processes are gone, and its agent,
    whose credentials left the CT's config once it was READY, exits at once, so the CT stops
    again. The pod is NOTREADY with its containers EXITED (as when a sandbox's pause process
    dies), and the kubelet makes a new one; stop and remove leave nothing."""
    # Polled every 3 s: the agent's channel closes (CT stopped) long before the poller
    # sees the CT stopped, which must still make the containers EXITED.
    v = PvePods(runtd_factory, tmp_path, images, pve, pve_opts={"poll_interval": "3"})
    dead = []
    for down in (False, True):
        pod, cfg = v.pod("behind-%d" % down)
        c = v.run_ctr(pod, cfg, "c", **sleeper())
        vmid, ct = pve_state(v, pod)
        base = f"/nodes/{ct['node']}/lxc/{vmid}/status"
        if down:
            v.d.kill()
            v.d.close_channels()
        for what in ("stop", "start"):
            st, reason, body = v.pve.api("POST", f"{base}/{what}")
            assert st == 200, (what, st, reason)
            t = v.pve.wait_task(body["data"])
            assert what == "start" or t["exitstatus"] == "OK", t
        # the agent exits without credentials: the CT is stopped again
        deadline = time.monotonic() + 20
        while pve_state(v, pod)[1]["status"] != "stopped":
            assert time.monotonic() < deadline, pve_state(v, pod)
            time.sleep(0.2)
        if down:
            v.d.start()
        wait_state(v, pod, pb.SANDBOX_NOTREADY)
        st = v.wait_exit(c)
        assert st.state == pb.CONTAINER_EXITED and st.exit_code != 0, st
        assert "CT" in st.message or "CT" in st.reason, st
        dead.append(pod)
    try:
        finish(v, *dead)
    finally:
        v.cleanup()


def test_restart_through_api_errors_keeps_pod(pods):
    """runtd restarts while the API answers 500 to status/current: the pod is not declared
    dead; once the API answers, its containers are reached again."""
    v = pods
    pod, cfg = v.pod()
    vmid, ct = pve_state(v, pod)
    a = v.run_ctr(pod, cfg, "a", **sleeper())
    v.d.kill()
    v.d.close_channels()
    v.pve.fail("GET", f"/nodes/{ct['node']}/lxc/{vmid}/status/current", status=500,
               message="proxy loop detected", count=3)
    v.d.start()
    v.status(pod)  # the first call about the pod re-owns it: status/current fails
    assert v.cstatus(a).state == pb.CONTAINER_RUNNING, v.cstatus(a)
    deadline = time.monotonic() + 30
    while True:
        try:
            r = v.exec(a, ["echo", "back"])
            break
        except grpc.RpcError as e:
            assert time.monotonic() < deadline, e
            time.sleep(0.5)
    assert r.stdout == b"back\n", r
    assert v.cstatus(a).state == pb.CONTAINER_RUNNING
    v.cstop(a, timeout=2)
    finish(v, pod)


def test_null_fields_in_replies(pods):
    """PVE answering a field as JSON null (tags, type, description, status, volid) does not
    crash runtd: it keeps answering, and a pod can still be made."""
    v = pods
    pod, cfg = v.pod()
    v.pve.config(null_fields=["tags", "type", "description", "status", "volid"])
    try:
        restart(v)
        v.status(pod)  # the reopen reads status/current
        time.sleep(2.5)  # the poller reads /nodes/<node>/lxc
        assert v.d.alive()
        v.list()
        v.pve.config(null_fields=["tags", "type", "volid"])
        restart(v)
        p2, _ = v.pod("second")  # the reconcile reads /cluster/resources, the image listing
        assert v.d.alive()
    finally:
        v.pve.config(null_fields=[])
    finish(v, pod, p2)


def test_lxc_microvm_and_proxmox_pods_reach_each_other(vm_pods):
    """Three pods in one runtd, each serving a page and fetching the other two's by pod IP:
    the lxc pod and the microvm pod (a tap in its netns redirected to the guest) on the
    suite's CNI bridge, the proxmox pod's CT on the fake's bridge. Both bridges are this
    host's, which routes between them when it forwards IPv4."""
    v = vm_pods
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
        pytest.skip("this host does not forward IPv4: the two bridges are not routed")
    # The suite's CNI network gives a pod no default route: add one via its bridge.
    v.write_conf(plugins=[{"type": "bridge", "bridge": v.bridge, "isGateway": True,
                           "isDefaultGateway": True, "ipMasq": False,
                           "ipam": {"type": "host-local", "dataDir": str(v.ipam),
                                    "ranges": [[{"subnet": v.prefix + "0/24"}]]}}])
    web = {}  # handler -> (pod, its web container)
    for handler in ("proxmox", "lxc", "microvm"):
        pod, cfg = v.pod(handler, handler=handler)
        web[handler] = pod, v.run_ctr(pod, cfg, "web", command=[
            "/bin/sh", "-c", f"mkdir -p /tmp/w && echo from-{handler} > /tmp/w/i && "
            "exec busybox httpd -f -p 8080 -h /tmp/w"])
    for _, cid in web.values():
        v.wait_listening(cid, [8080])
    ips = {h: v.status(pod).status.network.ip for h, (pod, _) in web.items()}
    assert ips["lxc"].startswith(v.prefix) and ips["microvm"].startswith(v.prefix), ips
    assert ips["proxmox"].startswith(NET + "."), ips
    # Off-subnet traffic leaves both CNI pods through the bridge, the guest's as the netns's.
    for h in ("lxc", "microvm"):
        out = v.exec(web[h][1], ["busybox", "ip", "-4", "route"]).stdout.decode()
        assert f"default via {v.prefix}1 dev eth0" in out, (h, out)

    def get(cid, ip):
        return v.exec(cid, ["/bin/sh", "-c", "printf 'GET /i HTTP/1.0\\r\\n\\r\\n' | "
                                             f"busybox nc -w 5 {ip} 8080"], timeout=15)

    got = {(src, dst): get(cid, ips[dst]) for src, (_, cid) in web.items()
           for dst in web if dst != src}
    assert len(got) == 6
    failed = {k: r for k, r in got.items() if not r.stdout.endswith(f"from-{k[1]}\n".encode())}
    assert not failed, (ips, failed)
    print("\n" + ", ".join(f"{h} pod {ip}" for h, ip in ips.items()) +
          ": each reaches the other two")
    finish(v, *(pod for pod, _ in web.values()))


def test_ct_sized_from_the_pods_limits_and_update(pods):
    """A CT is made as large as the pod's limits when they are more than the handler's
    options (RunPodSandbox's linux.resources plus linux.overhead, as the kubelet sizes the pod
    cgroup; rounded up to MiB and cores); UpdatePodSandboxResources grows it (PUT config)
    and never shrinks it; limits of no size keep the options."""
    v = pods
    mib = 1 << 20

    def res(mem, quota=0):
        return pb.LinuxContainerResources(memory_limit_in_bytes=mem, cpu_quota=quota,
                                          cpu_period=100000 if quota else 0)

    def size(pod):
        c = pve_state(v, pod)[1]["config"]
        return int(c["memory"]), int(c.get("cores", 1))

    big, _ = v.pod("big", linux=pb.LinuxPodSandboxConfig(
        resources=res(700 * mib + 1, 250000), overhead=res(64 * mib, 50000)))
    assert size(big) == (765, 3)  # 700 MiB and a byte + 64; 2.5 + 0.5 cores
    small, _ = v.pod("small", linux=pb.LinuxPodSandboxConfig(resources=res(32 * mib, 20000)))
    assert size(small) == (256, 1)  # the options (memory 256 here, cores 1)
    v.rt().UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
        pod_sandbox_id=big, resources=res(1024 * mib, 300000)), timeout=T)
    assert size(big) == (1024, 3)
    v.rt().UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
        pod_sandbox_id=big, resources=res(128 * mib, 100000)), timeout=T)
    assert size(big) == (1024, 3)  # never shrinks
    with pytest.raises(grpc.RpcError) as ei:
        v.pod("bad", linux=pb.LinuxPodSandboxConfig(resources=res(-1)))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value
    assert "linux.resources.memory_limit_in_bytes" in ei.value.details(), ei.value.details()
    finish(v, big, small)


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


def test_planted_pod_image_of_another_size_is_replaced(runtd_factory, tmp_path, images, pve):
    """Someone who may write the vztmpl storage puts a file under the pod image's name: runt
    compares the listed size with its archive's, uploads its own over it (an upload
    overwrites), and the pod runs runt's agent."""
    v = PvePods(runtd_factory, tmp_path, images, pve, pve_opts={"nodes": "node1"})
    try:
        pod, _ = v.pod("first")  # the image is on node1 from here
        finish(v, pod)
        tmpl = Path(v.pve.dir) / "storage" / "node1" / "local" / "template" / "cache"
        (image,) = tmpl.glob("runt-pod-*.tar")
        ours = image.read_bytes()
        # Planted with the fake's upload, as a user with Datastore.AllocateTemplate could.
        st, reason, body = v.pve.upload("node1", "local", image.name, b"not runt's" * 1000)
        assert st == 200, (st, reason)
        v.pve.wait_task(body["data"])
        assert image.read_bytes() != ours
        restart(v)  # a new runtd lists the storage again
        v.pve.reset_calls()
        pod, cfg = v.pod("second")
        assert v.status(pod).status.state == pb.SANDBOX_READY
        uploads = [c for c in v.pve.calls() if c["method"] == "POST"
                   and c["path"] == "/nodes/node1/storage/local/upload"]
        assert len(uploads) == 1, v.pve.calls()
        assert image.read_bytes() == ours
        c = v.run_ctr(pod, cfg, "c", **sleeper())
        assert v.exec(c, ["echo", "hi"]).stdout == b"hi\n"
        v.cstop(c, timeout=2)
        finish(v, pod)
    finally:
        v.cleanup()


def test_create_failure_codes(runtd_factory, tmp_path, images, pve):
    """RunPodSandbox's gRPC code says whose the failure is: PVE refusing a parameter (400) is
    the handler's setup (FAILED_PRECONDITION, not INVALID_ARGUMENT: the pod spec is fine); the
    pod image gone from the storage ("can't find file") is worth a retry (UNAVAILABLE, not
    NOT_FOUND), and the retry lists the storage again and uploads the image; a CT that fails
    to start is INTERNAL. Nothing is left by any of them."""
    v = PvePods(runtd_factory, tmp_path, images, pve, pve_opts={"nodes": "node1"})
    try:
        v.pve.fail("POST", "/nodes/node1/lxc", status=400,
                   message="Parameter verification failed.",
                   errors={"rootfs": "invalid format - unable to parse volume ID"})
        with pytest.raises(grpc.RpcError) as ei:
            v.pod("bad-param")
        assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION, ei.value
        assert "rootfs" in ei.value.details(), ei.value.details()
        assert v.leftovers() == EMPTY_PVE, v.leftovers()

        # The image goes from the storage after runt listed it (the attempt above did).
        tmpl = Path(v.pve.dir) / "storage" / "node1" / "local" / "template" / "cache"
        (image,) = tmpl.glob("runt-pod-*.tar")
        image.unlink()
        with pytest.raises(grpc.RpcError) as ei:
            v.pod("no-image")
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, ei.value
        assert "can't find file" in ei.value.details(), ei.value.details()
        assert v.leftovers() == EMPTY_PVE, v.leftovers()
        v.pve.reset_calls()
        pod, _ = v.pod("retried")
        assert v.status(pod).status.state == pb.SANDBOX_READY
        paths = [(c["method"], c["path"]) for c in v.pve.calls()]
        assert ("GET", "/nodes/node1/storage/local/content") in paths, paths
        assert ("POST", "/nodes/node1/storage/local/upload") in paths, paths
        finish(v, pod)

        v.pve.task_fail("vzstart", "startup for container '101' failed")
        with pytest.raises(grpc.RpcError) as ei:
            v.pod("no-start")
        assert ei.value.code() == grpc.StatusCode.INTERNAL, ei.value
        assert v.leftovers() == EMPTY_PVE, v.leftovers()
    finally:
        v.cleanup()


def agent_cert_days_left(ip, port=7443):
    """What the agent at @ip serves: the days left of its certificate. TLS 1.3 sends the
    server's certificate before it asks for the client's, so openssl s_client sees it
    even though the agent then refuses a client without runtd's certificate."""
    out = subprocess.run(
        f"openssl s_client -connect {ip}:{port} -showcerts </dev/null 2>/dev/null | "
        "openssl x509 -noout -enddate", shell=True, capture_output=True, text=True,
        timeout=30).stdout
    m = re.match(r"notAfter=(.*)", out.strip())
    assert m, out
    end = calendar.timegm(time.strptime(m.group(1).replace(" GMT", ""), "%b %d %H:%M:%S %Y"))
    return (end - time.time()) / 86400


def test_agent_certificate_renewed_before_its_end(runtd_factory, tmp_path, images, pve):
    """A pod outlives its agent's first certificate: with agent_cert_days 1 the agent starts
    with a one-day certificate; runtd restarted with the default (365 days) finds it within
    the renewal window (30 days, or a third of the validity) and sends the agent a new one
    (TLS_RENEW) over its connection; the next connection gets that one, and runtd, killed
    and started again, reaches the agent with it."""
    v = PvePods(runtd_factory, tmp_path, images, pve, pve_opts={"agent_cert_days": "1"})
    try:
        pod, cfg = v.pod("certs")
        c = v.run_ctr(pod, cfg, "c", **sleeper())
        ip = v.status(pod).status.network.ip
        left = agent_cert_days_left(ip)
        assert 0.9 < left <= 1.0, left
        text = v.d.config.read_text()
        assert 'agent_cert_days: "1"\n' in text
        v.d.config.write_text(text.replace('      agent_cert_days: "1"\n', ""))
        restart(v)
        deadline = time.monotonic() + 30
        while agent_cert_days_left(ip) < 300:
            assert time.monotonic() < deadline, "the agent's certificate was not renewed"
            time.sleep(0.5)
        assert 364 < agent_cert_days_left(ip) <= 365
        restart(v)  # a new connection: the agent's new certificate verified
        assert v.exec(c, ["echo", "renewed"]).stdout == b"renewed\n"
        assert "certificate renewed for 365 days" in v.d.log_text()
        finish(v, pod)
    finally:
        v.cleanup()


# ---- host ports: forwarded from this node (the Kubernetes node) to the CT, by CNI portmap


def free_host_port():
    """A TCP port no nat rule names and nothing on this host listens on."""
    nat = "\n".join(nat_rules())
    for _ in range(200):
        port = random.randrange(40000, 50000)
        if re.search(rf"\D{port}\D", nat):
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free host port")


def http_get(addr, port, timeout=5):
    """The body of GET / at @addr:@port (HTTP/1.0, plain sockets: no proxy in the way)."""
    with socket.create_connection((addr, port), timeout=timeout) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1") and b" 200 " in head.split(b"\r\n")[0], data
    return body


def refused(addr, port):
    try:
        socket.create_connection((addr, port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    return False


def web_server(v, pod, cfg, text):
    web = v.run_ctr(pod, cfg, "web", command=[
        "/bin/sh", "-c", f"mkdir -p /tmp/www && echo {text} > /tmp/www/index.html && "
        "exec busybox httpd -f -p 8080 -h /tmp/www"])
    v.wait_listening(web, [8080])
    return web


def host_port_pod(v, name, port):
    """A pod mapping host port @port to its port 8080, with the kubelet's entry for a
    containerPort with no host port beside it (host_port 0: nothing to forward)."""
    return v.pod(name, port_mappings=[
        pb.PortMapping(protocol=pb.TCP, container_port=8080, host_port=port),
        pb.PortMapping(protocol=pb.TCP, container_port=9090, host_port=0)])


def drop_chain(chain):
    """Removes portmap's chain @chain and the rule jumping to it, as a node reboot (or an
    iptables flush) loses them."""
    for line in nat_rules():
        if line.startswith("-A CNI-HOSTPORT-DNAT ") and line.endswith(f"-j {chain}"):
            iptables("-t", "nat", "-D", *shlex.split(line)[1:])
    iptables("-t", "nat", "-F", chain)
    iptables("-t", "nat", "-X", chain)


def chain_exists(chain):
    return f"-N {chain}" in nat_rules()


class OtherHost:
    """A network namespace standing for another host, joined to this one by a veth pair: this
    host is 10.89.N.1 on its end, the other host 10.89.N.2, its default route through here."""

    def __init__(self):
        used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        n = next(n for n in random.sample(range(1, 250), 249) if f"10.89.{n}." not in used)
        self.ns = f"rthp{os.getpid() % 100000}"
        self.here, self.there = self.ns + "a", self.ns + "b"
        self.host_ip, self.ip = f"10.89.{n}.1", f"10.89.{n}.2"
        for argv in (["ip", "netns", "add", self.ns],
                     ["ip", "link", "add", self.here, "type", "veth", "peer", "name", self.there],
                     ["ip", "link", "set", self.there, "netns", self.ns],
                     ["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.here],
                     ["ip", "link", "set", self.here, "up"],
                     ["ip", "-n", self.ns, "addr", "add", f"{self.ip}/24", "dev", self.there],
                     ["ip", "-n", self.ns, "link", "set", self.there, "up"],
                     ["ip", "-n", self.ns, "link", "set", "lo", "up"],
                     ["ip", "-n", self.ns, "route", "add", "default", "via", self.host_ip]):
            subprocess.run(argv, check=True, capture_output=True)

    def http_get(self, addr, port):
        """GET / at @addr:@port from the other host."""
        code = ("import socket,sys; c=socket.create_connection((sys.argv[1],int(sys.argv[2])),5);"
                "c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); d=b''\n"
                "while (b:=c.recv(65536)): d+=b\n"
                "sys.stdout.buffer.write(d)")
        out = subprocess.run(["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-c", code,
                              addr, str(port)], capture_output=True, timeout=30)
        assert out.returncode == 0, out
        return out.stdout.partition(b"\r\n\r\n")[2]

    def remove(self):
        subprocess.run(["ip", "link", "del", self.here], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


@pytest.fixture
def other_host():
    h = OtherHost()
    yield h
    h.remove()


def test_host_port_reaches_the_ct(pods, other_host):
    """A proxmox pod's host port is forwarded from this node to its CT at the pod IP, as CNI
    portmap does for an lxc pod: from the node itself at 127.0.0.1 and at another of its
    addresses, and from another host that reaches the node. A second pod asking the same
    port is refused with a status that names the holder, before anything of it is made.
    Stopping the pod takes the forwarding away."""
    v = pods
    port = free_host_port()
    pod, cfg = host_port_pod(v, "hp", port)
    web_server(v, pod, cfg, "hello-hostport")
    ip = v.status(pod).status.network.ip
    assert ip.startswith(NET + ".") and "/" not in ip, ip
    (chain,), (rule,) = hostport_rules(ids=[pod])
    assert f"--dports {port} " in rule and "9090" not in rule, rule
    dnat = [r for r in nat_rules() if r.startswith(f"-A {chain} ")]
    assert any(f"--to-destination {ip}:8080" in r for r in dnat), dnat
    # the pod's subnet is masqueraded (hairpin: another CT on its bridge), as for a bridge
    assert any(f"-s {NET}.0/24 " in r and "CNI-HOSTPORT-SETMARK" in r for r in dnat), dnat

    assert http_get("127.0.0.1", port) == b"hello-hostport\n"
    assert http_get(other_host.host_ip, port) == b"hello-hostport\n"
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1":
        assert other_host.http_get(other_host.host_ip, port) == b"hello-hostport\n"
    else:
        print("\nthis host does not forward IPv4: no fetch from the other host")
    # what portmap needs for 127.0.0.1 to cross to the CT's link
    route = subprocess.run(["ip", "-o", "route", "get", ip], capture_output=True, text=True,
                           check=True).stdout
    dev = route.split(" dev ")[1].split()[0]
    assert Path(f"/proc/sys/net/ipv4/conf/{dev}/route_localnet").read_text().strip() == "1"

    n_cts = len(v.pve.state()["cts"])
    with pytest.raises(grpc.RpcError) as ei:
        v.pod("hp-again", port_mappings=[pb.PortMapping(container_port=80, host_port=port)])
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION, ei.value
    assert f"host port {port}/tcp is already mapped by pod default/hp (sandbox {pod[:12]})" \
        in ei.value.details(), ei.value.details()
    assert len(v.pve.state()["cts"]) == n_cts and len(v.leases()) == 1
    assert [p.id for p in v.list()] == [pod]
    assert hostport_rules(port=port)[1] == [rule]  # the first pod's forwarding is untouched
    assert http_get("127.0.0.1", port) == b"hello-hostport\n"

    v.stop(pod)
    assert hostport_rules(port=port) == ([], [])
    assert not chain_exists(chain)
    assert refused("127.0.0.1", port) and refused(other_host.host_ip, port)
    v.remove(pod)
    assert v.leftovers() == EMPTY_PVE, v.leftovers()


def test_host_port_across_runtd_kill9(pods):
    """runtd killed (-9) with a host-port pod running: the forwarding is the kernel's and goes
    on; a restart sets it up again when it was lost meanwhile (a node reboot, a flushed
    table), and keeps it, once, when it was not; RemovePodSandbox after the restart takes it
    away, and nothing is left."""
    v = pods
    port = free_host_port()
    pod, cfg = host_port_pod(v, "hpk", port)
    web_server(v, pod, cfg, "still-here")
    (chain,), _ = hostport_rules(ids=[pod])
    assert http_get("127.0.0.1", port) == b"still-here\n"

    v.d.kill()  # SIGKILL
    v.d.close_channels()
    assert http_get("127.0.0.1", port) == b"still-here\n"
    drop_chain(chain)
    assert hostport_rules(port=port) == ([], []) and refused("127.0.0.1", port)
    v.d.start()  # its recovery forwards the pod's host port again, before it serves
    assert v.status(pod).status.state == pb.SANDBOX_READY
    assert hostport_rules(port=port)[0] == [chain]
    assert http_get("127.0.0.1", port) == b"still-here\n"

    restart(v)  # this time the rules are there: kept as they are, not doubled
    assert len(hostport_rules(port=port)[1]) == 1
    assert len([r for r in nat_rules() if r.startswith(f"-A {chain} ") and "DNAT" in r]) == 1
    assert http_get("127.0.0.1", port) == b"still-here\n"

    v.remove(pod)  # no StopPodSandbox first: remove does it all
    assert hostport_rules(port=port) == ([], []) and not chain_exists(chain)
    assert refused("127.0.0.1", port)
    assert v.leftovers() == EMPTY_PVE, v.leftovers()


def test_host_port_of_a_run_cut_by_kill9_is_removed(pods, tmp_path):
    """runtd killed (-9) during RunPodSandbox, after portmap made the pod's chains and before
    the pod was ready: the pod never existed for CRI, and the restart's recovery removes its
    chains with its CT and lease. A portmap wrapper (first in the bin dirs) opens the window:
    it marks the end of its ADD and waits a little before it exits."""
    v = pods
    port = free_host_port()
    wrap = tmp_path / "cni-bin"
    wrap.mkdir()
    mark = tmp_path / "portmap-added"
    (wrap / "portmap").write_text(
        "#!/bin/sh\n"
        f"out=$({CNI_BIN_DIR}/portmap); rc=$?\n"
        "printf '%s' \"$out\"\n"
        f"if [ \"$CNI_COMMAND\" = ADD ] && [ $rc = 0 ]; then touch {mark}; sleep 2; fi\n"
        "exit $rc\n")
    (wrap / "portmap").chmod(0o755)
    text = v.d.config.read_text()
    v.d.config.write_text(text.replace("  bin_dirs:\n", f'  bin_dirs:\n    - "{wrap}"\n', 1))
    restart(v)

    errors = []

    def run():
        try:
            host_port_pod(v, "cut", port)
        except grpc.RpcError as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + T
    while not mark.exists():
        assert time.monotonic() < deadline and t.is_alive(), errors
        time.sleep(0.05)
    (chain,), _ = hostport_rules(port=port)
    v.d.kill()
    v.d.close_channels()
    t.join()
    assert errors, "RunPodSandbox returned though runtd was killed"
    assert chain_exists(chain)
    v.d.start()  # waits for the wrapper a killed runtd left, then undoes the half-made pod
    assert v.list() == []
    assert hostport_rules(port=port) == ([], []) and not chain_exists(chain)
    assert v.leftovers() == EMPTY_PVE, v.leftovers()
