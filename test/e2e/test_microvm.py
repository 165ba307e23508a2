"""Pods on the microvm backend, end to end: real QEMU (TCG on this host), the Debian cloud
kernel, runt-agent as the guest's PID 1, virtio-fs over runt's layer store, CNI in the pod
netns with a tap redirected to the guest, images built here and pulled from a local
docker-registry. Every test checks that nothing of the VM is left afterwards."""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import pb
from test_containers import EMPTY_CTRS, Ctrs, images, mounts_under, sleeper  # noqa: F401

QEMU = "/usr/bin/qemu-system-x86_64"
KERNELS = sorted(Path("/boot").glob("vmlinuz-*"))
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="microVMs need root"),
    pytest.mark.skipif(not os.path.exists(QEMU) or not KERNELS or
                       not os.path.exists("/usr/lib/qemu/virtiofsd"),
                       reason="qemu-system-x86 and a guest kernel are not installed"),
]
T = 90


def qemu_pids(root):
    """QEMU and virtiofsd processes whose arguments name @root (this runtd's dirs)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cl = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cl and (cl[0].endswith(b"qemu-system-x86_64") or cl[0].endswith(b"virtiofsd")) \
                and str(root).encode() in b" ".join(cl):
            out.append(int(p.name))
    return out


class VmPods(Ctrs):
    def __init__(self, runtd_factory, tmp_path, images, **kw):
        kw.setdefault("runtimes", {"lxc": ("lxc", {}), "microvm": ("microvm", {})})
        super().__init__(runtd_factory, tmp_path, images, **kw)

    def pod(self, name="p", handler="microvm", **kw):
        cfg = self.config(name, log_directory=str(self.logs / name), **kw)
        return self.run(cfg, handler), cfg

    def vm_dirs(self):
        p = self.d.run_dir / "microvm"
        return sorted(x for x in os.listdir(p) if x != "ctr") if p.exists() else []

    def leftovers(self):
        left = super().leftovers()
        left["vms"] = self.vm_dirs()
        left["qemu"] = qemu_pids(self.d.run_dir)
        left["mounts"] = mounts_under(self.d.run_dir) + mounts_under(self.d.root_dir)
        left["ctr_links"] = os.listdir(self.d.run_dir / "microvm" / "ctr") \
            if (self.d.run_dir / "microvm" / "ctr").exists() else []
        return left


EMPTY_VM = dict(EMPTY_CTRS, vms=[], qemu=[], ctr_links=[])


@pytest.fixture
def vms(runtd_factory, tmp_path, images):
    v = VmPods(runtd_factory, tmp_path, images, runtimes={
        "lxc": ("lxc", {}), "microvm": ("microvm", {"console": "true"})})
    yield v
    # What the guests said, for a test that failed (pytest shows it then).
    for d in v.vm_dirs():
        for f in ("console.log", "qemu.log", "virtiofsd.log"):
            p = v.d.run_dir / "microvm" / d / f
            if p.exists():
                print(f"--- {d}/{f}\n" + p.read_text(errors="replace")[-4000:])
    v.cleanup()


def test_lifecycle_logs_exit_codes(vms):
    pod, cfg = vms.pod()
    st = vms.status(pod)
    assert st.status.state == pb.SANDBOX_READY
    ip = st.status.network.ip
    assert ip.startswith(vms.prefix), st
    cid = vms.create(pod, cfg, "job", command=["/bin/sh", "-c",
                                               "echo out-line; echo err-line >&2; "
                                               "printf 'no newline'; exit 3"])
    assert vms.cstatus(cid).state == pb.CONTAINER_CREATED
    vms.start(cid)
    st = vms.wait_exit(cid)
    assert st.exit_code == 3 and st.reason == "Error", st
    assert st.started_at >= st.created_at and st.finished_at >= st.started_at
    recs = vms.log_records(st.log_path)
    assert ("stdout", "F", "out-line") in recs and ("stderr", "F", "err-line") in recs
    assert ("stdout", "P", "no newline") in recs or ("stdout", "F", "no newline") in recs
    ok = vms.run_ctr(pod, cfg, "ok", command=["/bin/true"])
    st = vms.wait_exit(ok)
    assert st.exit_code == 0 and st.reason == "Completed", st
    s = vms.run_ctr(pod, cfg, "s", **sleeper())
    r = vms.exec(s, ["/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 5"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"to-out\n", b"to-err\n", 5)
    # The pod's IP is the guest's; no hostname was asked: the node's, as for lxc.
    r = vms.exec(s, ["/bin/sh", "-c", "ip -4 addr show dev eth0; hostname; cat /etc/hosts"])
    out = r.stdout.decode()
    assert f"inet {ip}/24" in out and f"\n{socket.gethostname()}\n" in out, out
    assert f"{ip}\t{socket.gethostname()}" in out, out
    vms.cstop(s, timeout=5)
    st = vms.cstatus(s)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0, st
    for c in (cid, ok, s):
        vms.crm(c)
    vms.stop(pod)
    vms.remove(pod)
    assert vms.leftovers() == EMPTY_VM


def test_host_namespaces_refused(vms):
    for ns in ("network", "pid", "ipc"):
        cfg = vms.config(f"h{ns}", linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(**{ns: pb.NODE}))))
        with pytest.raises(grpc.RpcError) as e:
            vms.run(cfg, "microvm")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert "microvm" in e.value.details(), e.value.details()
    assert vms.leftovers() == EMPTY_VM


def test_exec_sync_timeout_kills(vms):
    pod, cfg = vms.pod()
    s = vms.run_ctr(pod, cfg, "s", **sleeper())
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        vms.exec(s, ["/bin/sh", "-c", "sleep 4321 & sleep 4321"], timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.value
    assert time.monotonic() - t0 < 3.0
    # The command and what it started are gone.
    ps = vms.exec(s, ["ps", "-o", "args"]).stdout.decode()
    assert "sleep 4321" not in ps, ps
    vms.remove(pod)
    assert vms.leftovers() == EMPTY_VM


def test_stop_reaches_a_trapping_init(vms):
    """SIGTERM reaches PID 1 of the container's pid namespace, which handles it itself."""
    pod, cfg = vms.pod()
    c = vms.run_ctr(pod, cfg, "c", command=["/bin/sh", "-c",
                                            "trap 'exit 0' TERM; sleep 3600 & wait"])
    time.sleep(0.5)
    t0 = time.monotonic()
    vms.cstop(c, timeout=10)
    took = time.monotonic() - t0
    st = vms.cstatus(c)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0, st
    assert took < 5, took
    vms.remove(pod)
    assert vms.leftovers() == EMPTY_VM
