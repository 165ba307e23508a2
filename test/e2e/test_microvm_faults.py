"""microvm pods when things go wrong: runtd killed (-9) and restarted with VMs running,
QEMU killed from outside (with runtd up, or while it is down), pods started and removed
concurrently, an lxc pod and a microvm pod on one bridge (pod IPs, a hostPort), and a guest
that never comes up (the boot watchdog). Every test ends with nothing of the VMs left."""

import os
import shutil
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from conftest import pb
from test_containers import images, sleeper  # noqa: F401
from test_events import Sub
from test_microvm import EMPTY_VM, KERNELS, QEMU, VmPods, pytestmark, qemu_pids  # noqa: F401

T = 90


@pytest.fixture
def vms(runtd_factory, tmp_path, images):  # noqa: F811
    v = VmPods(runtd_factory, tmp_path, images, runtimes={
        "lxc": ("lxc", {}), "microvm": ("microvm", {"console": "true"})})
    yield v
    dump(v)
    v.cleanup()


def dump(v):
    if os.environ.get("MV_DUMP_LOG"):
        print("--- runtd.log\n" + v.d.log_text()[-15000:])
    for d in v.vm_dirs():
        for f in ("console.log", "qemu.log", "virtiofsd.log"):
            p = v.d.run_dir / "microvm" / d / f
            if p.exists():
                print(f"--- {d}/{f}\n" + p.read_text(errors="replace")[-3000:])


def vm_dir(v, pod):
    return v.d.run_dir / "microvm" / pod[:20]


def qemu_pid(v, pod):
    return int((vm_dir(v, pod) / "qemu.pid").read_text().split()[0])


def gone(pid):
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True


def kill_runtd(v):
    v.d.proc.kill()  # kill -9
    v.d.proc.wait()
    v.d.close_channels()


def wait_for(what, fn, timeout=20, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if r:
            return r
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)


def counter(tag="line"):
    """A container that writes a numbered line every 0.2 s."""
    return dict(command=["/bin/sh", "-c",
                         f"trap 'exit 0' TERM; i=0; while true; do echo {tag}-$i; "
                         "i=$((i+1)); sleep 0.2; done"])


def numbered(v, path, tag="line"):
    recs = v.log_records(path)
    nums = [int(m[2].split("-", 1)[1]) for m in recs if m[2].startswith(tag + "-")]
    return nums


def assert_consecutive(nums):
    assert nums, "no lines"
    assert nums == list(range(nums[0], nums[0] + len(nums))), \
        f"gaps or duplicates: {nums}"
    assert nums[0] == 0, nums[:5]


def finish(v, pods, ctrs=()):
    for c in ctrs:
        v.crm(c)
    for p in pods:
        v.stop(p)
        v.remove(p)
    assert v.leftovers() == EMPTY_VM
    assert v.list() == []


def test_runtd_kill9_with_a_vm_running(vms):
    pod, cfg = vms.pod("k9")
    run = vms.run_ctr(pod, cfg, "run", **counter())
    wait_for("the counter's first lines",
             lambda: len(numbered(vms, vms.cstatus(run).log_path)) >= 3)
    out = vms.logs / "out"
    out.mkdir()
    # It leaves a mark on the host (through virtio-fs) just before it exits.
    job = vms.run_ctr(pod, cfg, "job",
                      command=["/bin/sh", "-c", "sleep 2; touch /out/done; exit 7"],
                      mounts=[pb.Mount(container_path="/out", host_path=str(out))])
    started = vms.cstatus(job).started_at
    assert started > 0
    log_path = vms.cstatus(run).log_path
    qpid = qemu_pid(vms, pod)
    kill_runtd(vms)
    before = len(numbered(vms, log_path))
    wait_for("the job's mark", lambda: (out / "done").exists(), timeout=60, step=0.05)
    done = time.time_ns()
    time.sleep(4)  # the counter writes ~20 lines meanwhile
    assert not gone(qpid)
    down_until = time.time_ns()
    vms.d.start()
    st = vms.status(pod).status
    assert st.state == pb.SANDBOX_READY, st
    s = vms.cstatus(run)
    assert s.state == pb.CONTAINER_RUNNING, s
    r = vms.exec(run, ["/bin/sh", "-c", "echo alive"])
    assert (r.stdout, r.exit_code) == (b"alive\n", 0)
    j = vms.wait_exit(job)
    assert j.exit_code == 7 and j.reason == "Error", j
    # It ended 2 s (or more, on a busy host) after it started, while runtd was down: not
    # when runtd learned it.
    assert started + 1_900_000_000 <= j.finished_at <= done + 1_000_000_000 < down_until, \
        (started, j.finished_at, done, down_until)
    # What it wrote while runtd was down reached its log, once.
    wait_for("lines written while runtd was down",
             lambda: len(numbered(vms, log_path)) >= before + 20, timeout=10)
    vms.cstop(run, timeout=5)
    assert vms.cstatus(run).state == pb.CONTAINER_EXITED
    assert_consecutive(numbered(vms, log_path))
    finish(vms, [pod], [run, job])


def check_vm_ended(v, pod, cids, sub=None):
    st = wait_for("the pod to be NOTREADY",
                  lambda: (s := v.status(pod).status).state == pb.SANDBOX_NOTREADY and s)
    assert st.state == pb.SANDBOX_NOTREADY
    for c in cids:
        s = wait_for(f"container {c[:12]} to exit",
                     lambda: (s := v.cstatus(c)).state == pb.CONTAINER_EXITED and s)
        assert s.exit_code != 0 and s.reason == "Error", s
        assert "VM" in s.message and "ended" in s.message, s
        assert s.finished_at >= s.started_at > 0, s
    if sub:
        for c in cids:
            sub.wait(lambda evs: any(e.container_id == c and e.container_event_type ==
                                     pb.CONTAINER_STOPPED_EVENT for e in evs), timeout=20)


def test_qemu_killed_from_outside(vms):
    pod, cfg = vms.pod("qk")
    a = vms.run_ctr(pod, cfg, "a", **sleeper())
    b = vms.run_ctr(pod, cfg, "b", **counter())
    wait_for("the counter's first lines",
             lambda: len(numbered(vms, vms.cstatus(b).log_path)) >= 2)
    sub = Sub(vms.d)
    try:
        qpid = qemu_pid(vms, pod)
        os.kill(qpid, signal.SIGKILL)
        check_vm_ended(vms, pod, [a, b], sub)
    finally:
        sub.close()
    # exec in a VM that is gone: an error, not a hang.
    with pytest.raises(grpc.RpcError):
        vms.exec(a, ["/bin/true"])
    assert numbered(vms, vms.cstatus(b).log_path)
    finish(vms, [pod], [a, b])


def test_qemu_killed_while_runtd_is_down(vms):
    pod, cfg = vms.pod("qd")
    a = vms.run_ctr(pod, cfg, "a", **sleeper())
    b = vms.run_ctr(pod, cfg, "b", **counter())
    wait_for("the counter's first lines",
             lambda: len(numbered(vms, vms.cstatus(b).log_path)) >= 2)
    qpid = qemu_pid(vms, pod)
    kill_runtd(vms)
    os.kill(qpid, signal.SIGKILL)
    wait_for("QEMU to go", lambda: gone(qpid))
    vms.d.start()
    sub = Sub(vms.d)
    try:
        check_vm_ended(vms, pod, [a, b], sub)
    finally:
        sub.close()
    finish(vms, [pod], [a, b])


@pytest.fixture
def slow_vms(runtd_factory, tmp_path, images):  # noqa: F811
    """Three VMs booting at once under TCG on a busy host take longer than the default 20 s
    watchdog allows."""
    v = VmPods(runtd_factory, tmp_path, images, runtimes={
        "lxc": ("lxc", {}), "microvm": ("microvm", {"console": "true", "boot_timeout": "90"})})
    yield v
    dump(v)
    v.cleanup()


def test_three_pods_at_once(slow_vms):
    vms = slow_vms
    out, errors = {}, []

    def one(i):
        try:
            pod, cfg = vms.pod(f"m{i}")
            out[i] = (pod, vms.run_ctr(pod, cfg, "s", **sleeper()))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert len(out) == 3
    ips = set()
    for pod, c in out.values():
        st = vms.status(pod).status
        assert st.state == pb.SANDBOX_READY, st
        ips.add(st.network.ip)
        assert vms.cstatus(c).state == pb.CONTAINER_RUNNING
        assert vms.exec(c, ["/bin/echo", "hi"]).stdout == b"hi\n"
    assert len(ips) == 3
    assert len([p for p in qemu_pids(vms.d.run_dir)
                if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0] == QEMU.encode()]) == 3

    def rm(pod):
        try:
            vms.stop(pod)
            vms.remove(pod)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=rm, args=(p,)) for p, _ in out.values()]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert vms.leftovers() == EMPTY_VM


def free_port():
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def http_get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def httpd(name):
    return dict(command=["/bin/sh", "-c", f"mkdir -p /tmp/www; echo {name} > /tmp/www/index.html;"
                         " exec busybox httpd -f -p 8080 -h /tmp/www"])


def test_lxc_and_microvm_pods_on_one_bridge(vms):
    port = free_port()
    vp, vcfg = vms.pod("vmweb", port_mappings=[pb.PortMapping(container_port=8080,
                                                              host_port=port)])
    lcfg = vms.config("lxweb", log_directory=str(vms.logs / "lxweb"))
    lp = vms.run(lcfg, "lxc")
    vweb = vms.run_ctr(vp, vcfg, "web", **httpd("from-vm"))
    lweb = vms.run_ctr(lp, lcfg, "web", **httpd("from-lxc"))
    vip = vms.status(vp).status.network.ip
    lip = vms.status(lp).status.network.ip
    assert vip.startswith(vms.prefix) and lip.startswith(vms.prefix) and vip != lip

    def get(cid, ip):
        # (no -T: this busybox's wget crashes with it)
        r = vms.exec(cid, ["busybox", "wget", "-q", "-O", "-", f"http://{ip}:8080/"], timeout=5)
        return r.exit_code, r.stdout

    wait_for("httpd in the VM", lambda: get(lweb, vip) == (0, b"from-vm\n"), timeout=20)
    wait_for("httpd in the lxc pod", lambda: get(vweb, lip) == (0, b"from-lxc\n"), timeout=20)
    # The hostPort, from the host: through the bridge's address (the host's own) and
    # through localhost.
    gw = vms.prefix + "1"
    assert http_get(f"http://{gw}:{port}/") == (200, b"from-vm\n")
    assert http_get(f"http://127.0.0.1:{port}/") == (200, b"from-vm\n")
    finish(vms, [vp, lp], [vweb, lweb])


def test_boot_watchdog(runtd_factory, tmp_path, images):  # noqa: F811
    kver = KERNELS[-1].name.removeprefix("vmlinuz-")
    bad = tmp_path / "k" / f"vmlinuz-{kver}"
    bad.parent.mkdir()
    bad.write_bytes(b"this is not a kernel\n" * 1000)
    v = VmPods(runtd_factory, tmp_path, images, runtimes={
        "lxc": ("lxc", {}),
        # QEMU refuses it at once.
        "notakernel": ("microvm", {"kernel": str(bad), "console": "true"}),
        # The kernel finds no init and waits forever (panic=0): only the watchdog ends it.
        "hang": ("microvm", {"cmdline": "rdinit=/no-such-init panic=0", "boot_timeout": "4",
                             "console": "true"})})
    try:
        # "hang" is started twice (the watchdog gives a VM that never came up one more go).
        for handler, within, words in (("notakernel", 15, ["QEMU"]),
                                       ("hang", 30, ["4000 ms"])):
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as e:
                v.pod(f"w{handler}", handler=handler)
            took = time.monotonic() - t0
            msg = e.value.details()
            assert took < within, (handler, took, msg)
            assert "did not come up" in msg and all(w in msg for w in words), msg
            assert e.value.code() != grpc.StatusCode.OK
            assert v.leftovers() == EMPTY_VM, handler
            assert v.list() == []
        if handler == "hang":
            # Two boots of 4 s each, the second with its console kept.
            assert took >= 8, took
            assert "starting its VM again" in v.d.log_text()
    finally:
        dump(v)
        v.cleanup()
        shutil.rmtree(bad.parent, ignore_errors=True)
