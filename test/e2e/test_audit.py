"""The audit log (docs/audit.md): every mutating CRI call, successful or not, is one JSON line
in `audit.path` with the caller's uid, gid and pid as the kernel saw them (SO_PEERCRED), the
method, the object ids and the outcome; reads add nothing; the file is 0600; SIGHUP moves it
to a new file (logrotate); a write error fails no call and is logged once.

The pods run on the `fake` handler with host network (no CNI); the image is a busybox built
here and pulled from the session registry."""

import json
import os
import signal
import stat
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import grpc
import pytest

import registry as R
from conftest import _GEN_DIR, CALL_TIMEOUT, REPO, pb

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runtd needs root")
T = CALL_TIMEOUT
ZERO_ID = "0" * 64


@pytest.fixture(scope="module")
def image(registry, tmp_path_factory):
    lay = R.OciLayout.create(tmp_path_factory.mktemp("audit-oci"))
    try:
        R.busybox_image(lay, "plain", cmd=["/bin/sh", "-c", "sleep 1000"], env=["PATH=/bin"])
        lay.push("plain", registry.host, "audit/plain:1")
    finally:
        lay.remove()
    return f"{registry.host}/audit/plain:1"


def fake_runtd(factory, image_ref=None, **kw):
    regs = None
    if image_ref:
        regs = {"registries": [{"prefix": image_ref.split("/")[0], "insecure": True}]}
    return factory(runtimes={"fake": ("fake", {})}, default_runtime="fake", images=regs, **kw)


def host_net():
    return pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.NODE)))


def audit_lines(path):
    """The audit file's lines, each parsed (a line that is not one JSON object fails)."""
    text = path.read_text() if path.exists() else ""
    assert text == "" or text.endswith("\n"), text[-200:]
    return [json.loads(line) for line in text.splitlines()]


class Recorder:
    """Makes calls and remembers, for each mutating one, what its audit line must say."""

    def __init__(self, d):
        self.d = d
        self.rt = d.runtime()
        self.img = d.image()
        self.want = []

    def call(self, stub, method, req, fields, from_resp=None):
        """Calls @method; @fields are the line's expected object fields, @from_resp
        {key: response attribute} the ones only a successful answer gives ("" otherwise)."""
        t0 = time.time()
        try:
            resp = getattr(stub, method)(req, timeout=T)
            code, msg = "OK", ""
        except grpc.RpcError as e:
            resp, code, msg = None, e.code().name, e.details()
        want = dict(fields)
        for k, attr in (from_resp or {}).items():
            want[k] = getattr(resp, attr) if resp is not None else ""
        self.want.append((method, want, code, msg, t0, time.time()))
        return resp

    def raw(self, rpc, data, fields):
        """Sends raw bytes as the request of /runtime.v1.<rpc>; returns the status code."""
        t0 = time.time()
        with pytest.raises(grpc.RpcError) as ei:
            self.d.raw_unary(rpc)(data, timeout=T)
        e = ei.value
        self.want.append((rpc.split("/")[1], fields, e.code().name, e.details(), t0, time.time()))
        return e.code()

    def reads(self, pod="", ctr="", image=""):
        """Read-only calls of every kind; none may add an audit line."""
        rt, img = self.rt, self.img
        rt.Version(pb.VersionRequest(), timeout=T)
        rt.Status(pb.StatusRequest(verbose=True), timeout=T)
        rt.RuntimeConfig(pb.RuntimeConfigRequest(), timeout=T)
        rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=T)
        rt.ListContainers(pb.ListContainersRequest(), timeout=T)
        rt.ListContainerStats(pb.ListContainerStatsRequest(), timeout=T)
        rt.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(), timeout=T)
        rt.ListMetricDescriptors(pb.ListMetricDescriptorsRequest(), timeout=T)
        rt.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest(), timeout=T)
        list(rt.StreamPodSandboxes(pb.StreamPodSandboxesRequest(), timeout=T))
        list(rt.StreamContainers(pb.StreamContainersRequest(), timeout=T))
        img.ListImages(pb.ListImagesRequest(), timeout=T)
        list(img.StreamImages(pb.StreamImagesRequest(), timeout=T))
        img.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=T)
        with pytest.raises(grpc.RpcError) as ei:
            list(rt.GetContainerEvents(pb.GetEventsRequest(), timeout=0.3))
        assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        for f in (lambda: rt.PodSandboxStatus(pb.PodSandboxStatusRequest(
                      pod_sandbox_id=pod or ZERO_ID), timeout=T),
                  lambda: rt.PodSandboxStats(pb.PodSandboxStatsRequest(
                      pod_sandbox_id=pod or ZERO_ID), timeout=T),
                  lambda: rt.ContainerStatus(pb.ContainerStatusRequest(
                      container_id=ctr or ZERO_ID), timeout=T),
                  lambda: rt.ContainerStats(pb.ContainerStatsRequest(
                      container_id=ctr or ZERO_ID), timeout=T),
                  lambda: img.ImageStatus(pb.ImageStatusRequest(
                      image=pb.ImageSpec(image=image or "nope/none:1")), timeout=T)):
            try:
                f()
            except grpc.RpcError:
                pass  # a read that fails is still a read

    def check(self, path, pid=None, uid=None, gid=None):
        lines = audit_lines(path)
        assert len(lines) == len(self.want), (
            f"{len(lines)} lines for {len(self.want)} calls:\n"
            + "\n".join(json.dumps(x) for x in lines))
        for line, (method, fields, code, msg, t0, t1) in zip(lines, self.want):
            ctx = f"{method}: {line}"
            assert line["method"] == method, ctx
            assert line["uid"] == (os.getuid() if uid is None else uid), ctx
            assert line["gid"] == (os.getgid() if gid is None else gid), ctx
            assert line["pid"] == (os.getpid() if pid is None else pid), ctx
            assert line["code"] == code, ctx
            assert line["message"] == msg, ctx
            for k, v in fields.items():
                assert line.get(k) == v, f"{k}: {ctx}"
            when = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=timezone.utc).timestamp()
            assert t0 - 1 <= when <= t1 + 1, ctx
            assert isinstance(line["duration_us"], int) and line["duration_us"] >= 0, ctx
        return lines


@pytest.mark.valgrind
def test_every_mutating_call_once(runtd_factory, image):
    d = fake_runtd(runtd_factory, image)
    r = Recorder(d)
    rt, img = r.rt, r.img
    r.reads()
    assert audit_lines(d.audit_log) == []

    r.call(img, "PullImage", pb.PullImageRequest(
        image=pb.ImageSpec(image=image), auth=pb.AuthConfig(username="u", password="pw-secret")),
        {"image": image}, {"image_ref": "image_ref"})
    r.call(img, "PullImage", pb.PullImageRequest(image=pb.ImageSpec(image="127.0.0.1:9/no/pe:1")),
           {"image": "127.0.0.1:9/no/pe:1", "image_ref": ""})
    md = pb.PodSandboxMetadata(name="web", namespace="audit-ns", uid="uid-1")
    cfg = pb.PodSandboxConfig(metadata=md, linux=host_net())
    pod = r.call(rt, "RunPodSandbox", pb.RunPodSandboxRequest(config=cfg, runtime_handler="fake"),
                 {"pod_namespace": "audit-ns", "pod_name": "web", "pod_uid": "uid-1",
                  "runtime_handler": "fake"}, {"pod_id": "pod_sandbox_id"}).pod_sandbox_id
    r.call(rt, "RunPodSandbox", pb.RunPodSandboxRequest(config=cfg, runtime_handler="nope"),
           {"pod_name": "web", "runtime_handler": "nope", "pod_id": ""})
    r.reads(pod=pod, image=image)
    ccfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="app"),
                              image=pb.ImageSpec(image=image))
    ctr = r.call(rt, "CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=pod, config=ccfg, sandbox_config=cfg),
        {"pod_id": pod, "container_name": "app", "image": image, "pod_namespace": "audit-ns",
         "pod_name": "web"}, {"container_id": "container_id"}).container_id
    r.call(rt, "CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=ZERO_ID, config=ccfg, sandbox_config=cfg),
        {"pod_id": ZERO_ID, "container_id": ""})
    r.call(rt, "StartContainer", pb.StartContainerRequest(container_id=ctr),
           {"container_id": ctr})
    r.call(rt, "StartContainer", pb.StartContainerRequest(container_id=ZERO_ID),
           {"container_id": ZERO_ID})
    r.reads(pod=pod, ctr=ctr, image=image)
    # An exec's arguments are not logged: only argv[0] and their count.
    r.call(rt, "ExecSync", pb.ExecSyncRequest(container_id=ctr, timeout=5,
                                              cmd=["sh", "-c", "echo exec-secret-1"]),
           {"container_id": ctr, "cmd": "sh", "argc": 3})
    r.call(rt, "ExecSync", pb.ExecSyncRequest(container_id=ZERO_ID, cmd=["true"]),
           {"container_id": ZERO_ID, "cmd": "true", "argc": 1})
    r.call(rt, "Exec", pb.ExecRequest(container_id=ctr, cmd=["cat", "/exec-secret-2"],
                                      stdout=True),
           {"container_id": ctr, "cmd": "cat", "argc": 2})
    r.call(rt, "Attach", pb.AttachRequest(container_id=ctr, stdout=True),
           {"container_id": ctr})
    r.call(rt, "PortForward", pb.PortForwardRequest(pod_sandbox_id=pod, port=[80, 8080]),
           {"pod_id": pod, "ports": [80, 8080]})
    r.call(rt, "UpdateContainerResources", pb.UpdateContainerResourcesRequest(
        container_id=ctr, linux=pb.LinuxContainerResources(cpu_shares=512)),
        {"container_id": ctr})
    r.call(rt, "UpdatePodSandboxResources", pb.UpdatePodSandboxResourcesRequest(
        pod_sandbox_id=pod, resources=pb.LinuxContainerResources(cpu_shares=512)),
        {"pod_id": pod})
    r.call(rt, "ReopenContainerLog", pb.ReopenContainerLogRequest(container_id=ctr),
           {"container_id": ctr})
    r.call(rt, "UpdateRuntimeConfig", pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(
            pod_cidr="10.88.0.0/16"))), {"pod_cidr": "10.88.0.0/16"})
    r.call(rt, "UpdateRuntimeConfig", pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(
            pod_cidr="not-a-cidr"))), {"pod_cidr": "not-a-cidr"})
    r.call(rt, "CheckpointContainer", pb.CheckpointContainerRequest(container_id=ctr),
           {"container_id": ctr})
    # A request that cannot be unpacked: logged, with no ids.
    r.raw("RuntimeService/StopContainer", b"\x0a\xff\xff\xff", {"container_id": ""})
    r.reads(pod=pod, ctr=ctr, image=image)
    r.call(rt, "StopContainer", pb.StopContainerRequest(container_id=ctr, timeout=1),
           {"container_id": ctr})
    r.call(rt, "RemoveContainer", pb.RemoveContainerRequest(container_id=ctr),
           {"container_id": ctr})
    r.call(rt, "StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=pod), {"pod_id": pod})
    r.call(rt, "RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod),
           {"pod_id": pod})
    r.call(rt, "StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id="bad/id"),
           {"pod_id": "bad/id"})
    r.call(img, "RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image=image)),
           {"image": image})
    r.call(img, "RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image="")),
           {"image": ""})
    r.reads()

    lines = r.check(d.audit_log)
    methods = {x["method"] for x in lines}
    assert methods == {"PullImage", "RunPodSandbox", "CreateContainer", "StartContainer",
                       "ExecSync", "Exec", "Attach", "PortForward", "UpdateContainerResources",
                       "UpdatePodSandboxResources", "ReopenContainerLog", "UpdateRuntimeConfig",
                       "CheckpointContainer", "StopContainer", "RemoveContainer",
                       "StopPodSandbox", "RemovePodSandbox", "RemoveImage"}
    codes = {x["code"] for x in lines}
    assert "OK" in codes and len(codes) >= 4, codes  # successes and several kinds of failure
    assert {x["code"] for x in lines if x["method"] == "CheckpointContainer"} == {"UNIMPLEMENTED"}
    text = d.audit_log.read_text()
    for secret in ("exec-secret-1", "exec-secret-2", "pw-secret"):
        assert secret not in text
    st = os.stat(d.audit_log)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0


CLIENT = r"""
import os, sys
import grpc, api_pb2 as pb, api_pb2_grpc
ch = grpc.insecure_channel(sys.argv[1])
rt = api_pb2_grpc.RuntimeServiceStub(ch)
try:
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=sys.argv[2]), timeout=10)
    print(os.getpid(), "OK")
except grpc.RpcError as e:
    print(os.getpid(), e.code().name)
"""


def test_credentials_are_the_callers(runtd_factory):
    """A client in another process, with another gid: its own pid and gid are logged, not
    the test's nor runtd's."""
    d = fake_runtd(runtd_factory)
    env = dict(os.environ, PYTHONPATH=str(_GEN_DIR))
    res = subprocess.run(["/usr/bin/python3", "-c", CLIENT, d.listen, "c0ffee"],
                         capture_output=True, text=True, env=env, group=65534, extra_groups=[],
                         timeout=30)
    assert res.returncode == 0, res.stderr
    pid, code = res.stdout.split()
    lines = audit_lines(d.audit_log)
    assert len(lines) == 1, lines
    assert lines[0]["pid"] == int(pid) != os.getpid()
    assert lines[0]["gid"] == 65534 and lines[0]["uid"] == 0
    assert lines[0]["method"] == "RemoveContainer" and lines[0]["container_id"] == "c0ffee"
    assert lines[0]["code"] == code


PULLER = r"""
import os, sys
import grpc, api_pb2 as pb, api_pb2_grpc
ch = grpc.insecure_channel(sys.argv[1])
img = api_pb2_grpc.ImageServiceStub(ch)
try:
    img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=sys.argv[2])), timeout=1)
    print(os.getpid(), "OK")
except grpc.RpcError as e:
    print(os.getpid(), e.code().name)
"""


def cri_connections(d):
    """runtd's fds that are connections accepted on its CRI socket: {fd: "socket:[inode]"}
    (an accepted unix socket shows its listener's path in /proc/net/unix)."""
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        f = line.split()
        if len(f) >= 8 and f[7] == str(d.socket) and f[5] == "03":  # connected
            inodes.add(f"socket:[{f[6]}]")
    out = {}
    for e in Path(f"/proc/{d.proc.pid}/fd").iterdir():
        try:
            t = os.readlink(e)
        except OSError:
            continue
        if t in inodes:
            out[int(e.name)] = t
    return out


def test_caller_gone_mid_call(runtd_factory):
    """A client that leaves while its call runs: the call's line comes when the call ends, with
    that client's pid. The peer is read from the connection's fd (docs/audit.md, How the caller
    is known), which grpc keeps open while a call of the connection lives: calls on new
    connections made meanwhile cannot take its number."""
    stall = R.StallingRegistry(stall=40).start()
    try:
        d = runtd_factory(runtimes={"fake": ("fake", {})}, default_runtime="fake",
                          images={"registries": [{"prefix": stall.host, "insecure": True}],
                                  "pull_timeout": 3}, allow_log_errors=True)
        before = cri_connections(d)
        ref = f"{stall.host}/stalled:v1"
        env = dict(os.environ, PYTHONPATH=str(_GEN_DIR))
        res = subprocess.run(["/usr/bin/python3", "-c", PULLER, d.listen, ref],
                             capture_output=True, text=True, env=env, timeout=30)
        pid, code = res.stdout.split()
        assert code == "DEADLINE_EXCEEDED", res.stdout + res.stderr
        assert audit_lines(d.audit_log) == []  # the pull still runs
        held = {fd: t for fd, t in cri_connections(d).items() if before.get(fd) != t}
        assert len(held) == 1, held  # the gone client's connection, still open
        for i in range(5):
            ch = d.channel()
            with pytest.raises(grpc.RpcError):
                d.runtime(ch).StopContainer(pb.StopContainerRequest(container_id=f"x{i}"),
                                            timeout=T)
            ch.close()
        deadline = time.monotonic() + 30
        while not any(x["method"] == "PullImage" for x in audit_lines(d.audit_log)):
            assert time.monotonic() < deadline, d.log_text()[-2000:]
            time.sleep(0.1)
        lines = audit_lines(d.audit_log)
        assert [x["method"] for x in lines] == ["StopContainer"] * 5 + ["PullImage"]
        pull = lines[-1]
        assert pull["pid"] == int(pid) != os.getpid() and pull["image"] == ref
        assert pull["code"] != "OK"
        assert {x["pid"] for x in lines[:5]} == {os.getpid()}
        # Once the call is over, its connection goes.
        deadline = time.monotonic() + 10
        while any(cri_connections(d).get(fd) == t for fd, t in held.items()):
            assert time.monotonic() < deadline, "the gone client's connection stays open"
            time.sleep(0.1)
    finally:
        stall.stop()


def test_concurrent_calls_whole_lines(runtd_factory):
    """Many clients at once, each on its own connection: one whole line per call."""
    d = fake_runtd(runtd_factory)
    n_threads, n_calls = 8, 40

    def worker(k):
        rt = d.runtime(d.channel())
        for i in range(n_calls):
            try:
                rt.StopContainer(pb.StopContainerRequest(container_id=f"t{k}-{i}"), timeout=T)
            except grpc.RpcError:
                pass

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = audit_lines(d.audit_log)
    assert len(lines) == n_threads * n_calls
    ids = sorted(x["container_id"] for x in lines)
    assert ids == sorted(f"t{k}-{i}" for k in range(n_threads) for i in range(n_calls))
    assert {x["pid"] for x in lines} == {os.getpid()}


def wait_log(d, text, timeout=5):
    deadline = time.monotonic() + timeout
    while text not in d.log_text():
        assert time.monotonic() < deadline, f"no '{text}' in the log\n" + d.log_text()[-2000:]
        time.sleep(0.05)


def test_sighup_moves_to_a_new_file(runtd_factory):
    """logrotate's way: rename the file, SIGHUP (postrotate), and runtd writes a new one."""
    d = fake_runtd(runtd_factory)
    rt = d.runtime()

    def remove(cid):
        try:
            rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=T)
        except grpc.RpcError:
            pass

    remove("first")
    rotated = d.audit_log.with_name("audit.log.1")
    os.rename(d.audit_log, rotated)
    remove("between")  # still the renamed file: no line is lost while logrotate works
    d.signal(signal.SIGHUP)
    wait_log(d, "audit log reopened")
    assert d.alive()
    remove("second")
    assert [x["container_id"] for x in audit_lines(rotated)] == ["first", "between"]
    assert [x["container_id"] for x in audit_lines(d.audit_log)] == ["second"]
    assert stat.S_IMODE(os.stat(d.audit_log).st_mode) == 0o600
    # Nothing renamed: SIGHUP reopens the same file, appending.
    d.signal(signal.SIGHUP)
    time.sleep(0.2)
    remove("third")
    assert [x["container_id"] for x in audit_lines(d.audit_log)] == ["second", "third"]


def test_logrotate_snippet(runtd_factory):
    """packaging/logrotate/runt run by logrotate itself, its path and postrotate pointed at
    this daemon: the old lines stay in the rotated file, new ones go to a fresh 0600 file."""
    d = fake_runtd(runtd_factory)
    rt = d.runtime()
    with pytest.raises(grpc.RpcError):
        rt.StartContainer(pb.StartContainerRequest(container_id="before"), timeout=T)
    snippet = (REPO / "packaging" / "logrotate" / "runt").read_text()
    assert "/var/log/runt/audit.log {" in snippet and "--signal=HUP" in snippet
    conf = snippet.replace("/var/log/runt/audit.log", str(d.audit_log))
    start, end = conf.index("postrotate"), conf.index("endscript")
    conf = conf[:start] + f"postrotate\n\t\tkill -HUP {d.proc.pid}\n\t" + conf[end:]
    conf_file = d.base / "logrotate.conf"
    conf_file.write_text(conf)
    res = subprocess.run(["logrotate", "-f", "-s", str(d.base / "logrotate.state"),
                          str(conf_file)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    wait_log(d, "audit log reopened")
    with pytest.raises(grpc.RpcError):
        rt.StartContainer(pb.StartContainerRequest(container_id="after"), timeout=T)
    rotated = d.audit_log.with_name("audit.log.1")  # delaycompress: the first stays plain
    assert [x["container_id"] for x in audit_lines(rotated)] == ["before"]
    assert [x["container_id"] for x in audit_lines(d.audit_log)] == ["after"]
    assert stat.S_IMODE(os.stat(d.audit_log).st_mode) == 0o600


def test_sighup_when_the_path_cannot_be_opened(runtd_factory):
    d = fake_runtd(runtd_factory, allow_log_errors=True)
    rt = d.runtime()
    rotated = d.audit_log.with_name("audit.log.1")
    os.rename(d.audit_log, rotated)
    d.audit_log.mkdir()  # what the path is now cannot be the audit log
    d.signal(signal.SIGHUP)
    wait_log(d, "the audit log stays in the file it was")
    with pytest.raises(grpc.RpcError):
        rt.StartContainer(pb.StartContainerRequest(container_id="kept"), timeout=T)
    assert [x["container_id"] for x in audit_lines(rotated)] == ["kept"]


def test_write_error_fails_no_call_and_is_logged_once(runtd_factory):
    """On a full file system: the calls answer as ever, runtd's log says so once, and once
    lines can be written again it says how many were lost."""
    d = fake_runtd(runtd_factory, start=False, allow_log_errors=True)
    fs = d.base / "auditfs"
    fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(fs)],
                   check=True)
    try:
        d.audit_log = fs / "audit.log"
        d.config.write_text(d.config.read_text().replace(
            str(d.base / "audit.log"), str(d.audit_log)))
        d.start()
        rt = d.runtime()
        filler = fs / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"],
                       stderr=subprocess.DEVNULL, check=False)
        for i in range(5):
            with pytest.raises(grpc.RpcError) as ei:
                rt.StartContainer(pb.StartContainerRequest(container_id=f"lost{i}"), timeout=T)
            assert ei.value.code() == grpc.StatusCode.NOT_FOUND
        assert d.runtime().Version(pb.VersionRequest(), timeout=T).runtime_name == "runt"
        log = d.log_text()
        assert log.count("writing the audit log failed") == 1, log[-3000:]
        assert "No space left on device" in log
        filler.unlink()
        with pytest.raises(grpc.RpcError):
            rt.StartContainer(pb.StartContainerRequest(container_id="back"), timeout=T)
        assert [x["container_id"] for x in audit_lines(d.audit_log)] == ["back"]
        assert "lines_lost=5 the audit log is written again" in d.log_text()
        d.stop()
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=False)


def test_bad_audit_path_stops_start(runtd_factory):
    d = runtd_factory(start=False)
    d.audit_log.mkdir()
    d.spawn()
    rc, _ = d.wait_exit(timeout=10)
    assert rc != 0
    text = d.diag()
    assert "audit log" in text and str(d.audit_log) in text, text
    assert not d.socket.exists()


def test_audit_off(runtd_factory):
    d = runtd_factory(audit={"path": None})
    with pytest.raises(grpc.RpcError):
        d.runtime().StartContainer(pb.StartContainerRequest(container_id="x"), timeout=T)
    assert "audit=off" in d.log_text()
    assert not d.audit_log.exists()

