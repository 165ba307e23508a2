"""Pods on the microvm backend, end to end: real QEMU (TCG on this host), the Debian cloud
kernel, runt-agent as the guest's PID 1, virtio-fs over runt's layer store, CNI in the pod
netns with a tap redirected to the guest, images built here and pulled from a local
docker-registry. Every test checks that nothing of the VM is left afterwards."""

import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

import kstream as K
from conftest import pb
from test_containers import EMPTY_CTRS, Ctrs, images, mounts_under, sleeper  # noqa: F401

QEMU = "/usr/bin/qemu-system-x86_64"
KERNELS = sorted(Path("/boot").glob("vmlinuz-*"))
HAVE_VM = os.path.exists(QEMU) and bool(KERNELS) and os.path.exists("/usr/lib/qemu/virtiofsd")
NO_VM = "qemu-system-x86 and a guest kernel are not installed"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="microVMs need root"),
    pytest.mark.skipif(not HAVE_VM, reason=NO_VM),
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
    print_vm_logs(v)
    reap(v)


def print_vm_logs(v):
    """What the guests said, for a test that failed (pytest shows it then)."""
    for d in v.vm_dirs():
        for f in ("console.log", "qemu.log", "virtiofsd.log"):
            p = v.d.run_dir / "microvm" / d / f
            if p.exists():
                print(f"--- {d}/{f}\n" + p.read_text(errors="replace")[-4000:])


def reap(v):
    """Removes what a failed test left (its VMs would outlive runtd), then the daemon."""
    try:
        for p in v.rt().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=T).items:
            try:
                v.remove(p.id)
            except grpc.RpcError:
                pass
    except grpc.RpcError:
        pass
    for pid in set(qemu_pids(v.d.run_dir) + qemu_pids(v.d.root_dir)):
        try:
            os.kill(pid, 9)
        except OSError:
            pass
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


# --------------------------------------------------------------------------- more end to end

STREAMING = {"address": "127.0.0.1", "port": 0, "token_ttl": 60,
             "stream_creation_timeout": 5, "idle_timeout": 14400, "header_timeout": 6}
STATS = {"interval": 1, "fs_interval": 1}
SUCCESS = {"metadata": {}, "status": "Success"}


class StreamVmPods(VmPods):
    """VmPods with the streaming server and a short stats interval."""

    def exec_url(self, cid, cmd, stdin=False, stdout=True, stderr=True, tty=False):
        return self.rt().Exec(pb.ExecRequest(container_id=cid, cmd=cmd, stdin=stdin,
                                             stdout=stdout, stderr=stderr, tty=tty),
                              timeout=T).url

    def attach_url(self, cid, stdin=False, stdout=True, stderr=True, tty=False):
        return self.rt().Attach(pb.AttachRequest(container_id=cid, stdin=stdin, stdout=stdout,
                                                 stderr=stderr, tty=tty), timeout=T).url

    def pf_url(self, pod, ports):
        return self.rt().PortForward(pb.PortForwardRequest(pod_sandbox_id=pod, port=ports),
                                     timeout=T).url

    def wait_listening(self, cid, ports, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            out = self.exec(cid, ["busybox", "netstat", "-ltn"]).stdout.decode()
            if all(re.search(rf":{p}\s", out) for p in ports):
                return
            assert time.monotonic() < deadline, f"ports {ports} not listening:\n{out}"
            time.sleep(0.2)

    def wait_gone(self, cid, marker, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            out = self.exec(cid, ["ps", "-o", "args"]).stdout.decode()
            if marker not in out:
                return
            assert time.monotonic() < deadline, out
            time.sleep(0.2)


@pytest.fixture
def svms(runtd_factory, tmp_path, images):
    v = StreamVmPods(runtd_factory, tmp_path, images, streaming=STREAMING, stats=STATS,
                     runtimes={"lxc": ("lxc", {}), "microvm": ("microvm", {"console": "true"})})
    yield v
    print_vm_logs(v)
    reap(v)


def wait_for(fn, what, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: never happened")
        time.sleep(0.2)


def finish(v, pod):
    v.stop(pod)
    v.remove(pod)
    assert v.leftovers() == EMPTY_VM


def test_two_images_reach_each_other_on_localhost(vms):
    pod, cfg = vms.pod()
    # Every container is made after the VM booted, each from an image of its own.
    web = vms.run_ctr(pod, cfg, "web", image="plain", command=[
        "/bin/sh", "-c", "mkdir -p /tmp/www && echo served-by-plain > /tmp/www/index.html && "
        "exec busybox httpd -f -p 8080 -h /tmp/www"])
    cli = vms.run_ctr(pod, cfg, "cli", image="entry", command=[
        "/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"])
    usr = vms.run_ctr(pod, cfg, "usr", image="user", **sleeper())
    for c in (web, cli, usr):
        assert vms.cstatus(c).state == pb.CONTAINER_RUNNING
    deadline = time.monotonic() + 20
    while True:
        r = vms.exec(cli, ["busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"])
        if r.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (r.exit_code, r.stdout) == (0, b"served-by-plain\n"), r
    # Each sees its own image: entry-only is in "entry" alone; "user" runs as its user.
    assert vms.exec(cli, ["cat", "/entry-only"]).stdout == b"e\n"
    assert vms.exec(web, ["test", "-e", "/entry-only"]).exit_code == 1
    assert vms.exec(usr, ["test", "-e", "/entry-only"]).exit_code == 1
    assert vms.exec(usr, ["id", "-u"]).stdout == b"1000\n"
    assert vms.exec(usr, ["sh", "-c", "pwd"]).stdout == b"/home/user/work\n"
    # Files one container writes are its own.
    assert vms.exec(web, ["test", "-e", "/tmp/www/index.html"]).exit_code == 0
    assert vms.exec(cli, ["test", "-e", "/tmp/www/index.html"]).exit_code == 1
    for c in (web, cli, usr):
        assert vms.cstatus(c).state == pb.CONTAINER_RUNNING
    finish(vms, pod)


@pytest.mark.parametrize("transport", ["spdy", "ws"])
def test_streaming_exec(svms, transport):
    v = svms
    pod, cfg = v.pod()
    box = v.run_ctr(pod, cfg, "box", **sleeper())
    url = v.exec_url(box, ["/bin/sh", "-c", "echo hi; echo err >&2; exit 3"])
    t0 = time.monotonic()
    res = K.run_exec(transport, url)
    print(f"exec round trip ({transport}): {(time.monotonic() - t0) * 1000:.0f} ms")
    assert (res.stdout, res.stderr, res.exit_code) == (b"hi\n", b"err\n", 3), res
    url = v.exec_url(box, ["/bin/true"])
    res = K.run_exec(transport, url)
    assert res.status == SUCCESS and res.exit_code == 0, res
    # stdin, and its end as EOF.
    url = v.exec_url(box, ["/bin/sh", "-c", "cat; echo eof-seen"], stdin=True)
    res = K.run_exec(transport, url, stdin=b"hello\nworld\n")
    assert (res.stdout, res.stderr, res.exit_code) == (b"hello\nworld\neof-seen\n", b"", 0), res
    big = os.urandom(1 << 20)
    url = v.exec_url(box, ["cat"], stdin=True, stderr=False)
    res = K.run_exec(transport, url, stdin=big, stderr=False, timeout=60)
    assert len(res.stdout) == len(big) and res.stdout == big and res.exit_code == 0
    # A reader that lags (its stdin backs up in the guest): nothing is lost.
    url = v.exec_url(box, ["/bin/sh", "-c", "sleep 1; busybox md5sum"], stdin=True,
                     stderr=False)
    res = K.run_exec(transport, url, stdin=big, stderr=False, timeout=60)
    assert res.stdout.split()[0].decode() == hashlib.md5(big).hexdigest(), res
    # A tty: the size sent first, then a resize reaches the running process.
    cmd = ["/bin/sh", "-c", "busybox stty size; read x; busybox stty size; exit 4"]
    url = v.exec_url(box, cmd, stdin=True, stdout=True, stderr=False, tty=True)
    with K.remote_command(transport, url, stdin=True, stdout=True, stderr=False,
                          tty=True, timeout=30) as r:
        r.resize(80, 24)
        r.read_until(b"24 80\r\n")
        r.resize(200, 50)
        time.sleep(0.3)
        r.write_stdin(b"\n")
        r.read_until(b"50 200\r\n")
        res = r.wait()
    assert res.exit_code == 4, res
    # The exit code through a tty; a tty is a terminal.
    url = v.exec_url(box, ["/bin/sh", "-c", "test -t 1 && echo x; exit 5"], stderr=False,
                     tty=True)
    res = K.run_exec(transport, url, stderr=False, tty=True)
    assert res.stdout == b"x\r\n" and res.exit_code == 5, res
    # Far more output than SPDY's window, on both streams.
    url = v.exec_url(box, ["/bin/sh", "-c", "busybox seq 1 60000; busybox seq 1 40000 >&2"])
    res = K.run_exec(transport, url, timeout=60)
    assert res.stdout == "".join(f"{i}\n" for i in range(1, 60001)).encode(), len(res.stdout)
    assert res.stderr == "".join(f"{i}\n" for i in range(1, 40001)).encode(), len(res.stderr)
    url = v.exec_url(box, ["head", "-c", "3000000", "/dev/zero"], stderr=False)
    t0 = time.monotonic()
    res = K.run_exec(transport, url, stderr=False, timeout=60)
    print(f"exec 3 MB of output ({transport}): {time.monotonic() - t0:.2f} s")
    assert len(res.stdout) == 3000000 and res.exit_code == 0, len(res.stdout)
    # A program that is not there fails with a code.
    url = v.exec_url(box, ["/no/such/program"])
    res = K.run_exec(transport, url)
    assert res.status["status"] == "Failure" and res.exit_code not in (None, 0), res
    # A client that goes away mid-exec: the process in the guest is killed, tty or not.
    for tty in (False, True):
        marker = f"sleep {4321 + tty}"
        url = v.exec_url(box, ["/bin/sh", "-c", f"echo started; exec {marker}"],
                         stderr=not tty, tty=tty)
        r = K.remote_command(transport, url, stderr=not tty, tty=tty, timeout=30)
        r.read_until(b"started")
        assert marker in v.exec(box, ["ps", "-o", "args"]).stdout.decode()
        r.abort()
        v.wait_gone(box, marker)
    assert v.cstatus(box).state == pb.CONTAINER_RUNNING
    # Created and exited containers: Exec and Attach fail at the RPC as ExecSync does.
    stopped = v.run_ctr(pod, cfg, "stopped", **sleeper())
    v.cstop(stopped, timeout=5)
    created = v.create(pod, cfg, "created", **sleeper())
    rt = v.rt()

    def code(fn, req):
        try:
            fn(req, timeout=T)
        except grpc.RpcError as e:
            return e.code()
        return grpc.StatusCode.OK
    for cid in (stopped, created):
        want = code(rt.ExecSync, pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=5))
        assert want != grpc.StatusCode.OK
        assert code(rt.Exec, pb.ExecRequest(container_id=cid, cmd=["true"], stdout=True)) == want
        assert code(rt.Attach, pb.AttachRequest(container_id=cid, stdout=True)) == want
    finish(v, pod)


@pytest.mark.parametrize("transport", ["spdy", "ws"])
def test_streaming_attach(svms, transport):
    v = svms
    pod, cfg = v.pod()
    reader = v.run_ctr(pod, cfg, "reader", stdin=True, command=[
        "/bin/sh", "-c", "while read l; do echo got:$l; done"])
    for word in ("one", "two"):
        url = v.attach_url(reader, stdin=True, stdout=True, stderr=True)
        with K.remote_command(transport, url, stdin=True, stdout=True, stderr=True,
                              timeout=30) as r:
            r.write_stdin(f"{word}\n".encode())
            r.read_until(f"got:{word}\n".encode())
        assert v.cstatus(reader).state == pb.CONTAINER_RUNNING
    log = v.cstatus(reader).log_path
    wait_for(lambda: {("stdout", "F", "got:one"), ("stdout", "F", "got:two")} <=
             set(v.log_records(log)), "attach output in the log")
    # stdin and a tty: the terminal echoes, the shell reads lines.
    term = v.run_ctr(pod, cfg, "term", stdin=True, tty=True, command=[
        "/bin/sh", "-c", "while read l; do echo tty:$l; busybox stty size; done"])
    url = v.attach_url(term, stdin=True, stdout=True, stderr=False, tty=True)
    with K.remote_command(transport, url, stdin=True, stdout=True, stderr=False, tty=True,
                          timeout=30) as r:
        r.resize(120, 40)
        time.sleep(0.3)
        r.write_stdin(b"abc\n")
        out = r.read_until(b"40 120\r\n")
    assert b"tty:abc\r\n" in out, out
    # stdout alone, of a container that writes on its own.
    ticker = v.run_ctr(pod, cfg, "ticker", command=[
        "/bin/sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"])
    url = v.attach_url(ticker, stdout=True, stderr=False)
    with K.remote_command(transport, url, stdout=True, stderr=False, timeout=30) as r:
        out = r.read_until(lambda d: len(re.findall(rb"tick (\d+)\n", d)) >= 3)
    nums = [int(n) for n in re.findall(rb"tick (\d+)\n", out)]
    assert nums == list(range(nums[0], nums[0] + len(nums))), out
    assert v.cstatus(ticker).state == pb.CONTAINER_RUNNING
    # The container's end ends the attach with its exit code.
    once = v.run_ctr(pod, cfg, "once", stdin=True, command=[
        "/bin/sh", "-c", "read l; echo bye:$l; echo err >&2; exit 2"])
    url = v.attach_url(once, stdin=True, stdout=True, stderr=True)
    with K.remote_command(transport, url, stdin=True, stdout=True, stderr=True,
                          timeout=30) as r:
        r.write_stdin(b"x\n")
        res = r.wait(timeout=20)
    assert res.stdout == b"bye:x\n" and res.stderr == b"err\n", res
    # As with runc: an attach ends in Success, whatever the container's exit code.
    assert res.status == SUCCESS and res.exit_code == 0, res
    assert v.wait_exit(once).exit_code == 2
    finish(v, pod)


def test_streaming_port_forward(svms):
    v = svms
    pod, cfg = v.pod()
    web = v.run_ctr(pod, cfg, "web", command=[
        "/bin/sh", "-c", "mkdir -p /tmp/www && echo hello-from-vm > /tmp/www/index.html && "
        "exec busybox httpd -f -p 8080 -h /tmp/www"])
    v.run_ctr(pod, cfg, "echo", command=["/bin/sh", "-c",
                                         "exec busybox nc -ll -p 9090 -e /bin/cat"])
    v.wait_listening(web, [8080, 9090])
    get = b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n"
    url = v.pf_url(pod, [8080, 9090])
    with K.SpdyPortForward(url, timeout=60) as pf:
        for _ in range(2):
            c = pf.open(8080)
            c.send(get)
            data = c.read_all()
            assert data.startswith(b"HTTP/1") and data.endswith(b"hello-from-vm\n"), data
            assert c.error_text() == ""
        # 10 MB through cat and back, the client's half-close the server's EOF.
        big = os.urandom(10 << 20)
        c = pf.open(9090)
        errors = []

        def pump():
            try:
                for i in range(0, len(big), 65536):
                    c.send(big[i:i + 65536])
                c.close_write()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        t0 = time.monotonic()
        t = threading.Thread(target=pump)
        t.start()
        got = c.read_all(timeout=120)
        dt = time.monotonic() - t0
        t.join(10)
        print(f"port-forward 10 MiB each way: {dt:.2f} s, {10 / dt:.1f} MiB/s")
        assert not errors, errors
        assert len(got) == len(big) and got == big
        assert c.error_text() == ""
        # A port nobody listens on: an error on its stream, the session goes on.
        c = pf.open(8081)
        assert "8081" in c.error_text()
        c = pf.open(8080)
        c.send(get)
        assert c.read_all().endswith(b"hello-from-vm\n")
    url = v.pf_url(pod, [8080, 9090])
    with K.WsPortForward(url, timeout=30) as wp:
        wp.send(0, get)
        assert wp.read_until(0, b"hello-from-vm\n").endswith(b"hello-from-vm\n")
        blob = os.urandom(300000)
        wp.send(1, blob)
        assert wp.read_until(1, lambda d: len(d) >= len(blob)) == blob
    finish(v, pod)


def test_oom_and_update_resources(vms):
    pod, cfg = vms.pod()
    cid = vms.run_ctr(pod, cfg, "hog", command=[
        "/bin/sh", "-c", "sleep 0.3; busybox tail /dev/zero"],
        linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
            memory_limit_in_bytes=32 << 20)))
    st = vms.wait_exit(cid, timeout=60)
    assert st.reason == "OOMKilled" and st.exit_code == 137, st
    s = vms.run_ctr(pod, cfg, "s", **sleeper(linux=pb.LinuxContainerConfig(
        resources=pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20))))
    r = vms.exec(s, ["cat", "/sys/fs/cgroup/memory.max"])
    assert r.stdout == str(64 << 20).encode() + b"\n", r
    vms.rt().UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=s, linux=pb.LinuxContainerResources(memory_limit_in_bytes=96 << 20)),
        timeout=T)
    r = vms.exec(s, ["cat", "/sys/fs/cgroup/memory.max"])
    assert r.stdout == str(96 << 20).encode() + b"\n", r
    assert vms.cstatus(s).resources.linux.memory_limit_in_bytes == 96 << 20
    vms.rt().UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=s, linux=pb.LinuxContainerResources(
            memory_limit_in_bytes=96 << 20, cpu_quota=50000, cpu_period=100000,
            cpu_shares=512)), timeout=T)
    r = vms.exec(s, ["cat", "/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/memory.max",
                     "/sys/fs/cgroup/cpu.weight"])
    # 512 shares: weight 59, the conversion the lxc backend uses on cgroup v2 (runc, crun)
    assert r.stdout == b"50000 100000\n" + str(96 << 20).encode() + b"\n59\n", r
    # A container that ignores SIGTERM is killed at the end of the grace: 137.
    k = vms.run_ctr(pod, cfg, "stubborn", command=[
        "/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
    t0 = time.monotonic()
    vms.cstop(k, timeout=1)
    st = vms.cstatus(k)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137, st
    assert st.reason == "Error" and time.monotonic() - t0 < 10, st
    finish(vms, pod)


def test_stats(svms):
    v = svms
    pod, cfg = v.pod()
    busy = v.run_ctr(pod, cfg, "busy", command=[
        "/bin/sh", "-c", "x=$(head -c 8000000 /dev/zero | tr '\\0' a); "
        "trap 'exit 0' TERM; while :; do :; done"])
    idle = v.run_ctr(pod, cfg, "idle", **sleeper())
    rt = v.rt()

    def cst(cid):
        return rt.ContainerStats(pb.ContainerStatsRequest(container_id=cid), timeout=T).stats

    s = wait_for(lambda: (x := cst(busy)).cpu.usage_core_nano_seconds.value > 0 and
                 x.memory.working_set_bytes.value > 8_000_000 and x, "busy's stats", 40)
    assert s.attributes.id == busy and s.attributes.metadata.name == "busy"
    s2 = wait_for(lambda: (x := cst(busy)).cpu.timestamp > s.cpu.timestamp and x, "a new sample")
    assert s2.cpu.usage_core_nano_seconds.value > s.cpu.usage_core_nano_seconds.value
    print(f"busy: cpu {s2.cpu.usage_core_nano_seconds.value} ns, "
          f"nano_cores {s2.cpu.usage_nano_cores.value}, ws {s2.memory.working_set_bytes.value}")
    lst = list(rt.ListContainerStats(pb.ListContainerStatsRequest(), timeout=T).stats)
    assert sorted(x.attributes.id for x in lst) == sorted([busy, idle])
    ps = wait_for(lambda: (x := rt.PodSandboxStats(pb.PodSandboxStatsRequest(
        pod_sandbox_id=pod), timeout=T).stats).linux.cpu.usage_core_nano_seconds.value > 0
        and x, "pod stats")
    assert ps.linux.memory.working_set_bytes.value > 0
    assert sorted(c.attributes.id for c in ps.linux.containers) == sorted([busy, idle])
    ip = v.status(pod).status.network.ip

    def net():
        return rt.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod),
                                  timeout=T).stats.linux.network
    # The host resolves the guest's address first: datagrams sent meanwhile would wait in
    # the host's small ARP queue (and most would be dropped, the guest answering slowly).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(b"arp", (ip, 9))
    wait_for(lambda: re.search(r"lladdr \S+ (REACHABLE|STALE|DELAY)", subprocess.run(
        ["ip", "neigh", "show", ip], capture_output=True, text=True).stdout), "ARP")
    time.sleep(STATS["interval"] + 0.5)
    before = net()
    assert before.default_interface.name == "eth0", before
    assert [i.name for i in before.interfaces] == ["eth0"], before
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for _ in range(300):
            u.sendto(b"x" * 1000, (ip, 9))
    after = wait_for(lambda: (x := net()).default_interface.rx_bytes.value >=
                     before.default_interface.rx_bytes.value + 300000 and x, "rx bytes")
    print(f"eth0 rx {before.default_interface.rx_bytes.value} -> "
          f"{after.default_interface.rx_bytes.value}")
    # The writable layer: a file written there counts.
    fs0 = cst(idle).writable_layer.used_bytes.value
    v.exec(idle, ["sh", "-c", "head -c 3000000 /dev/zero > /big"])
    wait_for(lambda: cst(idle).writable_layer.used_bytes.value >= fs0 + 3000000,
             "the writable layer's growth")
    # An exited container has stats still (its CPU time is no more).
    done = v.run_ctr(pod, cfg, "done", command=["/bin/true"])
    v.wait_exit(done)
    s = cst(done)
    assert s.attributes.id == done, s
    lp = list(rt.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(), timeout=T).stats)
    assert [p.attributes.id for p in lp] == [pod]
    finish(v, pod)


def test_events_and_reopen_log(vms):
    from test_events import CREATED, DELETED, STARTED, STOPPED, Sub
    sub = Sub(vms.d)
    try:
        pod, cfg = vms.pod()
        cid = vms.run_ctr(pod, cfg, "ticker", command=[
            "/bin/sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done"])
        log = Path(vms.cstatus(cid).log_path)
        wait_for(lambda: log.exists() and len(vms.log_records(log)) > 3, "ticks")
        log.rename(str(log) + ".1")
        vms.rt().ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=T)
        wait_for(lambda: log.exists() and len(vms.log_records(log)) > 3, "ticks in the new log")
        old = vms.log_records(str(log) + ".1")
        assert old[0] == ("stdout", "F", "tick 0")
        n_old = int(old[-1][2].split()[1])
        assert int(vms.log_records(log)[0][2].split()[1]) == n_old + 1
        vms.cstop(cid, timeout=2)
        vms.crm(cid)
        mine = lambda es: [e.container_event_type for e in es if e.container_id == cid]  # noqa
        evs = sub.wait(lambda es: DELETED in mine(es), timeout=30)
        assert mine(evs) == [CREATED, STARTED, STOPPED, DELETED], evs
        e = [e for e in evs if e.container_id == cid][-1]
        assert e.pod_sandbox_status.id == pod
        finish(vms, pod)
    finally:
        sub.close()


def test_security_context(vms):
    from test_containers import cap_eff, security, status_field
    pod, cfg = vms.pod()
    CAP_CHOWN, CAP_NET_RAW, CAP_SYS_ADMIN = 0, 13, 21
    user = vms.run_ctr(pod, cfg, "user", **sleeper(linux=security(
        run_as_user=pb.Int64Value(value=1234), run_as_group=pb.Int64Value(value=2345),
        supplemental_groups=[4242])))
    assert vms.exec(user, ["id", "-u"]).stdout == b"1234\n"
    assert vms.exec(user, ["id", "-g"]).stdout == b"2345\n"
    assert "4242" in vms.exec(user, ["id", "-G"]).stdout.decode()
    ro = vms.run_ctr(pod, cfg, "ro", **sleeper(linux=security(readonly_rootfs=True)))
    r = vms.exec(ro, ["touch", "/file"])
    assert r.exit_code != 0 and b"Read-only" in r.stderr, r
    plain = vms.run_ctr(pod, cfg, "plain", **sleeper())
    caps = cap_eff(vms, plain)
    assert caps & (1 << CAP_CHOWN) and caps & (1 << CAP_NET_RAW)
    assert not caps & (1 << CAP_SYS_ADMIN)
    dropped = vms.run_ctr(pod, cfg, "dropped", **sleeper(linux=security(
        capabilities=pb.Capability(drop_capabilities=["NET_RAW"]),
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault))))
    caps = cap_eff(vms, dropped)
    assert not caps & (1 << CAP_NET_RAW) and caps & (1 << CAP_CHOWN)
    assert status_field(vms, dropped, "Seccomp") == "2"
    assert status_field(vms, plain, "Seccomp") == "0"
    r = vms.exec(dropped, ["busybox", "unshare", "-n", "true"])
    assert r.exit_code != 0
    assert status_field(vms, plain, "NoNewPrivs") == "0"
    nnp = vms.run_ctr(pod, cfg, "nnp", **sleeper(linux=security(no_new_privs=True)))
    assert status_field(vms, nnp, "NoNewPrivs") == "1"
    # Masked paths: /proc/keys reads empty.
    assert vms.exec(plain, ["sh", "-c", "wc -c < /proc/keys"]).stdout.strip() == b"0"
    r = vms.exec(plain, ["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"])
    assert r.exit_code != 0, r
    profile = vms.d.base / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    sc = vms.run_ctr(pod, cfg, "seccomp", **sleeper(linux=security(
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost,
                                   localhost_ref=str(profile)))))
    r = vms.exec(sc, ["mkdir", "/tmp/denied"])
    assert r.exit_code != 0 and b"not permitted" in r.stderr, r
    assert vms.exec(sc, ["touch", "/tmp/allowed"]).exit_code == 0
    priv = vms.run_ctr(pod, cfg, "priv", **sleeper(linux=security(privileged=True)))
    last_cap = int(vms.exec(priv, ["cat", "/proc/sys/kernel/cap_last_cap"]).stdout)
    assert cap_eff(vms, priv) == (1 << (last_cap + 1)) - 1
    assert status_field(vms, priv, "Seccomp") == "0"
    finish(vms, pod)


def test_users_groups_and_exec_sync_timeouts(vms):
    from test_containers import security
    pod, cfg = vms.pod()
    show = ["/bin/sh", "-c", "echo HOME=$HOME; id -G; trap 'exit 0' TERM; "
                             "while true; do sleep 0.1; done"]

    def both(cid):
        out = wait_for(lambda: (x := [m for s, _, m in vms.log_records(
            vms.cstatus(cid).log_path) if s == "stdout"]) and len(x) >= 2 and x[:2],
            "HOME and groups")
        r = vms.exec(cid, ["/bin/sh", "-c", "echo HOME=$HOME; id -G"])
        assert r.exit_code == 0 and r.stdout.decode().splitlines() == out, (r, out)
        return out
    g = vms.run_ctr(pod, cfg, "g", image="grouped", command=show, linux=security(
        run_as_user=pb.Int64Value(value=1000), supplemental_groups=[1234]))
    assert both(g) == ["HOME=/home/user", "1000 1234 50000 50001"]
    i = vms.run_ctr(pod, cfg, "i", image="grouped", command=show)
    assert both(i) == ["HOME=/home/user", "1000 50000 50001"]
    n = vms.run_ctr(pod, cfg, "n", image="grouped", command=show, linux=security(
        run_as_user=pb.Int64Value(value=4321), run_as_group=pb.Int64Value(value=4322)))
    assert both(n) == ["HOME=/", "4322"]
    byname = vms.run_ctr(pod, cfg, "byname", image="grouped", command=show, linux=security(
        run_as_username="nobody"))
    assert both(byname) == ["HOME=/nonexistent", "65534"]
    e = vms.run_ctr(pod, cfg, "e", image="plain", command=show,
                    envs=[pb.KeyValue(key="HOME", value=b"/custom"),
                          pb.KeyValue(key="OVERRIDE", value=b"request")])
    assert both(e) == ["HOME=/custom", "0"]
    r = vms.exec(e, ["/bin/sh", "-c", "echo $FROM_IMAGE $OVERRIDE"])
    assert r.stdout == b"1 request\n", r
    # ExecSync's timeout kills the command in the guest, and what it started.
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ex:
        vms.exec(e, ["sh", "-c", "sleep 7771 & exec sleep 7772"], timeout=2)
    assert ex.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, ex.value
    assert 1.9 < time.monotonic() - t0 < 8
    ps = lambda: vms.exec(e, ["ps", "-o", "args"]).stdout.decode()  # noqa: E731
    wait_for(lambda: "sleep 777" not in ps(), "the timed-out command gone", 10)
    # A client that cancels its call: the command goes too.
    fut = vms.rt().ExecSync.future(pb.ExecSyncRequest(
        container_id=e, timeout=100, cmd=["sh", "-c", "sleep 7773 & exec sleep 7774"]),
        timeout=T)
    wait_for(lambda: "sleep 7774" in ps(), "the command started", 10)
    fut.cancel()
    wait_for(lambda: "sleep 777" not in ps(), "the cancelled command gone", 10)
    assert vms.exec(e, ["echo", "still-fine"]).stdout == b"still-fine\n"
    finish(vms, pod)


def test_attach_stdin_once_and_tty_logs(svms):
    v = svms
    pod, cfg = v.pod()
    # stdin_once: the first attach's end of stdin is the container's EOF.
    once = v.run_ctr(pod, cfg, "once", stdin=True, stdin_once=True, command=[
        "/bin/sh", "-c", "cat; echo after-eof"])
    url = v.attach_url(once, stdin=True, stdout=True, stderr=True)
    with K.remote_command("spdy", url, stdin=True, stdout=True, stderr=True, timeout=30) as r:
        r.write_stdin(b"line\n")
        r.read_until(b"line\n")
        r.close_stdin()
        res = r.wait(timeout=20)
    assert res.stdout == b"line\nafter-eof\n" and res.exit_code == 0, res
    st = v.wait_exit(once)
    assert st.exit_code == 0, st
    # A tty container's output goes to its log, as stdout.
    t = v.run_ctr(pod, cfg, "t", tty=True, command=["/bin/sh", "-c",
                                                    "echo on-tty; test -t 1 && echo is-tty"])
    st = v.wait_exit(t)
    assert st.exit_code == 0, st

    def lines():
        """The log's lines, partial records joined (as the kubelet reads them)."""
        out, cur = [], ""
        for rec in Path(st.log_path).read_text().split("\n")[:-1]:
            ts, stream, tag, msg = (rec.split(" ", 3) + [""])[:4]
            assert stream == "stdout" and tag in ("P", "F"), rec
            cur += msg
            if tag == "F":
                out.append(cur)
                cur = ""
        return out
    got = wait_for(lambda: len(x := lines()) >= 2 and x, "the tty's log")
    assert [x.rstrip("\r") for x in got] == ["on-tty", "is-tty"], got
    finish(v, pod)


def test_sessions_end_with_their_container_and_pod(svms):
    v = svms
    pod, cfg = v.pod()
    box = v.run_ctr(pod, cfg, "box", **sleeper())
    # Without a limit, a hog past the guest's memory: the guest's OOM killer takes it, the
    # agent (PID 1) and the pod live on.
    hog = v.run_ctr(pod, cfg, "hog", command=["/bin/sh", "-c", "busybox tail /dev/zero"])
    st = v.wait_exit(hog, timeout=60)
    assert st.exit_code == 137, st
    assert v.exec(box, ["echo", "alive"]).stdout == b"alive\n"
    assert v.status(pod).status.state == pb.SANDBOX_READY
    # Concurrent port-forward connections.
    v.run_ctr(pod, cfg, "echo", command=["/bin/sh", "-c",
                                         "exec busybox nc -ll -p 9090 -e /bin/cat"])
    v.wait_listening(box, [9090])
    blobs = [os.urandom(1 << 20) for _ in range(4)]
    with K.SpdyPortForward(v.pf_url(pod, [9090]), timeout=60) as pf:
        conns = [pf.open(9090) for _ in blobs]
        errors = []

        def pump(c, b):
            try:
                for i in range(0, len(b), 65536):
                    c.send(b[i:i + 65536])
                c.close_write()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        ts = [threading.Thread(target=pump, args=(c, b)) for c, b in zip(conns, blobs)]
        for t in ts:
            t.start()
        for c, b in zip(conns, blobs):
            assert c.read_all(timeout=60) == b
        for t in ts:
            t.join(10)
        assert not errors, errors
    # An exec session and an attach end when their container is stopped.
    url = v.exec_url(box, ["/bin/sh", "-c", "echo in; exec sleep 5555"])
    ex = K.remote_command("spdy", url, timeout=30)
    ex.read_until(b"in\n")
    url = v.attach_url(box, stdout=True, stderr=True)
    at = K.remote_command("ws", url, timeout=30)
    time.sleep(0.3)
    v.cstop(box, timeout=2)
    res = ex.wait(timeout=20)
    assert res.exit_code not in (None, 0), res
    res = at.wait(timeout=20)
    assert res.status == SUCCESS, res
    ex.close()
    at.close()
    # Sessions open when the pod goes: they end, nothing is left.
    s2 = v.run_ctr(pod, cfg, "s2", **sleeper())
    url = v.exec_url(s2, ["/bin/sh", "-c", "echo in; exec sleep 5556"])
    ex = K.remote_command("ws", url, timeout=30)
    ex.read_until(b"in\n")
    pf = K.SpdyPortForward(v.pf_url(pod, [9090]), timeout=30)
    c = pf.open(9090)
    c.send(b"ping\n")
    assert c.read_until(b"ping\n") == b"ping\n"
    v.stop(pod)
    res = ex.wait(timeout=20)
    assert res.exit_code not in (None, 0), res
    c.read_all(timeout=20)
    ex.close()
    pf.close()
    v.remove(pod)
    assert v.leftovers() == EMPTY_VM


def test_pod_config_and_mounts(vms, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "from-host").write_text("host-data\n")
    rovol = tmp_path / "rovol"
    rovol.mkdir()
    (rovol / "f").write_text("ro\n")
    hfile = tmp_path / "single"
    hfile.write_text("single-file\n")
    pod, cfg = vms.pod(hostname="vmhost", dns_config=pb.DNSConfig(
        servers=["10.9.8.7"], searches=["example.test"], options=["ndots:3"]),
        linux=pb.LinuxPodSandboxConfig(sysctls={"net.ipv4.ip_unprivileged_port_start": "99"}))
    c = vms.run_ctr(pod, cfg, "c", **sleeper(mounts=[
        pb.Mount(container_path="/data/vol", host_path=str(vol)),
        pb.Mount(container_path="/data/ro", host_path=str(rovol), readonly=True),
        pb.Mount(container_path="/etc/single", host_path=str(hfile))]))
    r = vms.exec(c, ["/bin/sh", "-c", "hostname; cat /etc/resolv.conf; "
                     "cat /proc/sys/net/ipv4/ip_unprivileged_port_start"])
    out = r.stdout.decode()
    assert out.startswith("vmhost\n"), out
    assert "nameserver 10.9.8.7" in out and "search example.test" in out, out
    assert "options ndots:3" in out and out.endswith("99\n"), out
    assert vms.exec(c, ["cat", "/data/vol/from-host"]).stdout == b"host-data\n"
    assert vms.exec(c, ["sh", "-c", "echo from-guest > /data/vol/new"]).exit_code == 0
    assert (vol / "new").read_text() == "from-guest\n"
    assert vms.exec(c, ["cat", "/data/ro/f"]).stdout == b"ro\n"
    r = vms.exec(c, ["touch", "/data/ro/x"])
    assert r.exit_code != 0 and b"Read-only" in r.stderr, r
    assert vms.exec(c, ["cat", "/etc/single"]).stdout == b"single-file\n"
    # What the host changes later shows inside.
    (vol / "later").write_text("later\n")
    assert vms.exec(c, ["cat", "/data/vol/later"]).stdout == b"later\n"
    finish(vms, pod)


def test_exec_slow_client_gets_all_output(svms):
    v = svms
    pod, cfg = v.pod()
    box = v.run_ctr(pod, cfg, "box", **sleeper())

    def slow_exec(script, pause):
        url = v.exec_url(box, ["/bin/sh", "-c", script], stdout=True, stderr=False)
        sock, resp, rest = K.upgrade(url, "POST", K.spdy_upgrade_headers(["v4.channel.k8s.io"]),
                                     timeout=10)
        try:
            comp = K.HeaderCompressor()
            sock.sendall(K.syn_stream_frame(comp, 1, {"streamtype": "error"}) +
                         K.syn_stream_frame(comp, 3, {"streamtype": "stdout"}))
            time.sleep(pause)
            parser, got, status, done = K.SpdyParser(), 0, b"", False
            sock.settimeout(20)
            data = rest
            while not done:
                for f in parser.feed(data):
                    if f.control and f.type == K.GOAWAY:
                        done = True
                    elif not f.control and f.stream_id == 3:
                        got += len(f.data)
                    elif not f.control and f.stream_id == 1:
                        status += f.data
                if not done:
                    data = sock.recv(1 << 20)
                    assert data, "closed before GOAWAY"
        finally:
            sock.close()
        return got, status

    n = 8 << 20
    got, status = slow_exec(f"head -c {3 * n} /dev/zero; exit 5", 1.0)
    assert got == 3 * n, got
    assert json.loads(status)["details"]["causes"][0]["message"] == "5", status
    # The command exits while a process it left still writes: its output comes too.
    got, status = slow_exec(f"head -c {n} /dev/zero & sleep 0.2; exit 5", 1.0)
    assert got == n, got
    assert json.loads(status)["details"]["causes"][0]["message"] == "5", status
    finish(v, pod)
