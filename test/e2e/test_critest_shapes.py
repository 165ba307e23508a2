"""The request shapes of the CRI conformance suite (critest) that no other runt test sends,
end to end on the LXC backend, each checked as the suite checks it (the reply, the
container's view through ExecSync or its log, the host's view) and for what it leaves
behind.

The shapes: pod configs with no `linux` field or an empty one, with no log directory (so
containers without a log path), names of a prefix and a UUID at attempt 2; container
configs with no `linux` field or an empty one (no namespace options: the pod's pid
namespace); the legacy seccomp_profile_path field at pod and container level; namespace
options at pod level (host IPC, host network, host PID, a pod pid mode CONTAINER);
privileged sandboxes; mounts with selinux_relabel or a symlinked host path; and an image
whose applets are hard links of busybox, as the suite's busybox image has them."""

import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest

import kstream as K
import registry as R
from conftest import pb
from test_containers import EMPTY_CTRS, Ctrs
from test_streaming import StreamEnv

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")
T = 60
EXEC_T = 5  # critest's ExecSync timeout, seconds

TOP = ["top"]                       # critest's default container command
PAUSE = ["sh", "-c", "top"]         # its "pause" command
INDEX = b"<html>critest-shapes</html>\n"


@pytest.fixture(scope="module")
def images(registry, tmp_path_factory):
    """"bb": busybox with every applet a hard link in /bin (as critest's busybox image),
    PATH=/bin, a web root /www for httpd."""
    lay = R.OciLayout.create(tmp_path_factory.mktemp("critest-oci"))

    def rootfs(root):
        R.busybox_rootfs(root, {"www/index.html": INDEX})
        bindir = Path(root, "bin")
        applets = subprocess.run([R.BUSYBOX, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for a in applets:
            p = bindir / a
            if a == "busybox":
                continue
            if p.is_symlink() or p.exists():
                p.unlink()
            os.link(bindir / "busybox", p)

    try:
        lay.new_rootfs("bb", rootfs)
        lay.config("bb", cmd=["/bin/sh"], env=["PATH=/bin"])
        lay.push("bb", registry.host, "critest/busybox:1")
    finally:
        lay.remove()
    return {"bb": f"{registry.host}/critest/busybox:1"}


@pytest.fixture
def ctrs(runtd_factory, tmp_path, images):
    c = Ctrs(runtd_factory, tmp_path, images)
    yield c
    c.cleanup()


# --------------------------------------------------------------------------- helpers


def u():
    return str(uuid.uuid4())


def pod(ctrs, prefix, **kw):
    """A pod config as critest builds it: prefix+UUID, uid and namespace of UUIDs, attempt 2,
    and only the fields given (no log directory unless asked)."""
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(
        name=prefix + u(), uid="cri-test-uid" + u(), namespace="cri-test-namespace" + u(),
        attempt=2), **kw)
    return ctrs.run(cfg), cfg


def log_pod(ctrs, prefix, **kw):
    """critest's pod with a log directory: <tmp>/<pod name>, made beforehand."""
    name = prefix + u()
    d = ctrs.logs / name
    d.mkdir()
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(
        name=name, uid="cri-test-uid" + u(), namespace="cri-test-namespace" + u(), attempt=2),
        log_directory=str(d), **kw)
    return ctrs.run(cfg), cfg


def create(ctrs, pod_id, cfg, prefix, image="bb", **kw):
    """CreateContainer with exactly the fields given (no linux field unless asked)."""
    c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=prefix + u(), attempt=2),
                           image=pb.ImageSpec(image=ctrs.images[image]), **kw)
    cid = ctrs.rt().CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=pod_id, config=c, sandbox_config=cfg), timeout=T).container_id
    ctrs.ids.add(cid)
    return cid


def wait_state(ctrs, cid, state, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        st = ctrs.cstatus(cid)
        if st.state == state:
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.05)


def running(ctrs, pod_id, cfg, prefix, **kw):
    cid = create(ctrs, pod_id, cfg, prefix, **kw)
    ctrs.start(cid)
    wait_state(ctrs, cid, pb.CONTAINER_RUNNING)
    return cid


def ex(ctrs, cid, cmd):
    return ctrs.exec(cid, cmd, timeout=EXEC_T)


def ok(ctrs, cid, cmd):
    """critest's execSyncContainer: exit 0, empty stderr; the stdout."""
    r = ex(ctrs, cid, cmd)
    assert r.exit_code == 0 and r.stderr == b"", (cmd, r)
    return r.stdout.decode()


def log_of(cfg, cid_status):
    return Path(cfg.log_directory) / cid_status.log_path if not \
        cid_status.log_path.startswith("/") else Path(cid_status.log_path)


def wait_record(ctrs, path, want, timeout=15):
    """Polls the CRI log at @path for the record (stream, message)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = [(s, m) for s, _, m in ctrs.log_records(path)] if Path(path).exists() else []
        if want in recs:
            return recs
        assert time.monotonic() < deadline, (want, recs)
        time.sleep(0.05)


def finish(ctrs, *pods):
    for p in pods:
        ctrs.stop(p)
        ctrs.remove(p)
    assert ctrs.leftovers() == EMPTY_CTRS


def security(**kw):
    return pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(**kw))


def ns_pod_linux(**modes):
    return pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(**modes)))


def status_line(text, name):
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(None, 1)[1].strip()
    raise AssertionError(f"no {name} in {text!r}")


# --------------------------------------------------------------------------- tests


def test_basic_container_operations_with_default_shapes(ctrs):
    """critest "Container: runtime should support basic operations on container" (create,
    start, stop, remove created/running/stopped, execSync, execSync with timeout) and
    "PodSandbox: running/stopping/removing PodSandbox": an empty `linux` in the pod and the
    container, no log directory nor log path, `top` as the command, a stop timeout of 60."""
    p, cfg = pod(ctrs, "create-PodSandbox-for-container-", linux=pb.LinuxPodSandboxConfig())
    assert [i.id for i in ctrs.list(id=p)] == [p]
    assert ctrs.status(p).status.state == pb.SANDBOX_READY
    created = create(ctrs, p, cfg, "container-for-remove-created-test-", command=PAUSE,
                     linux=pb.LinuxContainerConfig())
    assert [c.id for c in ctrs.clist(id=created)] == [created]
    a = create(ctrs, p, cfg, "container-for-start-test-", command=TOP,
               linux=pb.LinuxContainerConfig())
    ctrs.start(a)
    wait_state(ctrs, a, pb.CONTAINER_RUNNING)
    assert ctrs.cstatus(a).log_path == ""
    # execSync: exactly the output, nothing on stderr.
    assert ok(ctrs, a, ["echo", "-n", "hello"]) == "hello"
    # execSync with timeout: an error, and the timed-out process is gone.
    with pytest.raises(grpc.RpcError):
        ctrs.exec(a, ["sleep", "4321"], timeout=1)
    # (critest asks `pgrep sleep`; this busybox has no pgrep: ps says the same.)
    assert "sleep 4321" not in ok(ctrs, a, ["ps", "-o", "args"])
    # Stop with critest's 60 s: `top` shares the pod's pid namespace and dies on SIGTERM.
    t0 = time.monotonic()
    ctrs.cstop(a, timeout=60)
    assert time.monotonic() - t0 < 10
    wait_state(ctrs, a, pb.CONTAINER_EXITED)
    running_one = running(ctrs, p, cfg, "container-for-remove-running-test-", command=PAUSE,
                          linux=pb.LinuxContainerConfig())
    for cid in (created, running_one, a):
        ctrs.crm(cid)
        assert ctrs.clist(id=cid) == []
    ctrs.stop(p)
    assert ctrs.status(p).status.state == pb.SANDBOX_NOTREADY
    ctrs.remove(p)
    assert ctrs.list(id=p) == []
    assert ctrs.leftovers() == EMPTY_CTRS


def test_dns_config_and_hostname(ctrs):
    """critest "Networking: runtime should support DNS config" and "... set hostname"."""
    p, cfg = pod(ctrs, "create-PodSandbox-with-DNS-config", linux=pb.LinuxPodSandboxConfig(),
                 dns_config=pb.DNSConfig(servers=["10.10.10.10"], searches=["google.com"],
                                         options=["ndots:8"]))
    c = running(ctrs, p, cfg, "container-for-DNS-config-test-", command=TOP,
                linux=pb.LinuxContainerConfig())
    conf = ok(ctrs, c, ["cat", "/etc/resolv.conf"])
    for line in ("nameserver 10.10.10.10", "search google.com", "options ndots:8"):
        assert line in conf, conf
    h, hcfg = pod(ctrs, "create-PodSandbox-with-hostname", hostname="test-hostname")
    hc = running(ctrs, h, hcfg, "container-for-hostname-test-", command=TOP,
                 linux=pb.LinuxContainerConfig())
    assert ok(ctrs, hc, ["hostname"]).strip() == "test-hostname"
    finish(ctrs, p, h)


def http_get(url, timeout=10):
    """The status of GET @url, polled until it answers (critest's Eventually)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url, timeout=2) as r:
                return r.status, r.read()
        except OSError as e:
            assert time.monotonic() < deadline, f"{url}: {e}"
            time.sleep(0.1)


def free_port():
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def test_port_mappings_and_multiple_containers(ctrs):
    """critest "Networking: port mapping with only container port" / "with host port and
    container port" and "Multiple Containers": mappings with no protocol (TCP) and no
    host_ip, the server reached at the pod's IP and at 127.0.0.1:<host port>; a pod with a
    log directory and no `linux`, a second container without `linux`."""
    httpd = ["httpd", "-f", "-p", "80", "-h", "/www"]
    p, cfg = log_pod(ctrs, "PodSandbox-for-multi-container-test-",
                     port_mappings=[pb.PortMapping(container_port=80)])
    web = running(ctrs, p, cfg, "httpd", command=httpd, linux=pb.LinuxContainerConfig(),
                  log_path="httpd.log")
    box = running(ctrs, p, cfg, "busybox", command=["sh", "-c", "echo hello; sleep 1000"],
                  log_path="busybox.log")
    ip = ctrs.status(p).status.network.ip
    assert ipaddress.ip_address(ip)
    assert http_get(f"http://{ip}:80/") == (200, INDEX)
    st = ctrs.cstatus(box)
    assert st.log_path == os.path.join(cfg.log_directory, "busybox.log")
    wait_record(ctrs, st.log_path, ("stdout", "hello"))
    assert ok(ctrs, web, ["echo", "httpd"]) == "httpd\n"
    assert ok(ctrs, box, ["echo", "busybox"]) == "busybox\n"

    hp = free_port()
    h, hcfg = pod(ctrs, "create-PodSandbox-with-port-mapping", linux=pb.LinuxPodSandboxConfig(),
                  port_mappings=[pb.PortMapping(container_port=80, host_port=hp)])
    running(ctrs, h, hcfg, "container-for-host-port", command=httpd,
            linux=pb.LinuxContainerConfig())
    assert http_get(f"http://127.0.0.1:{hp}/") == (200, INDEX)
    finish(ctrs, p, h)


def test_volumes_with_selinux_relabel_and_symlinked_host_path(ctrs):
    """critest "Container: starting container with volume" and "... when host path is a
    symlink": host path mounted at the same path, selinux_relabel set (no SELinux here:
    ignored)."""
    p, cfg = pod(ctrs, "create-PodSandbox-for-container-", linux=pb.LinuxPodSandboxConfig())
    host = tempfile.mkdtemp(prefix="test" + p[:12])
    link = host + "-symlink"
    try:
        Path(host, "testVolume.file").write_text("")
        os.symlink(host, link)
        for path in (host, link):
            c = running(ctrs, p, cfg, "container-with-volume-test-", command=PAUSE,
                        mounts=[pb.Mount(host_path=path, container_path=path,
                                         selinux_relabel=True)])
            assert ok(ctrs, c, ["ls", "-A", path]) == "testVolume.file\n"
        finish(ctrs, p)
    finally:
        shutil.rmtree(host, ignore_errors=True)
        if os.path.islink(link):
            os.unlink(link)


def test_log_and_reopen_log(ctrs):
    """critest "Container: starting container with log" and "reopening container log": a
    pod of only metadata and log directory, containers without `linux`; the new log file
    exists as soon as ReopenContainerLog returns, the old one no longer grows."""
    p, cfg = log_pod(ctrs, "PodSandbox-with-log-directory-")
    c = create(ctrs, p, cfg, "container-with-log-test-", command=["echo", "hello"],
               log_path="one.log")
    ctrs.start(c)
    wait_state(ctrs, c, pb.CONTAINER_EXITED)
    path = Path(cfg.log_directory) / "one.log"
    assert [(s, m) for s, _, m in ctrs.log_records(path)] == [("stdout", "hello")]

    k = create(ctrs, p, cfg, "container-reopen-log-test-", log_path="two.log",
               command=["sh", "-c", "while true; do echo hello; sleep 0.1; done"])
    ctrs.start(k)
    log = Path(cfg.log_directory) / "two.log"
    wait_record(ctrs, log, ("stdout", "hello"))
    old = Path(str(log) + ".new")
    log.rename(old)
    ctrs.rt().ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=k), timeout=T)
    assert log.exists()
    wait_record(ctrs, log, ("stdout", "hello"))
    n = len(ctrs.log_records(old))
    # Two more lines reach the new file; none the old one.
    want = len(ctrs.log_records(log)) + 2
    deadline = time.monotonic() + 10
    while len(ctrs.log_records(log)) < want:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(ctrs.log_records(old)) == n
    finish(ctrs, p)


def ipcmk():
    out = subprocess.run(["ipcmk", "-M", "1048576"], capture_output=True, text=True,
                         check=True).stdout
    return out.strip().removeprefix("Shared memory id: ")


def test_host_ipc(ctrs):
    """critest "Security Context: runtime should support HostIpc is true / is false": a
    segment made on the host is seen in the container only with IPC NODE (pod and
    container both name the mode)."""
    assert shutil.which("ipcmk"), "util-linux's ipcmk is needed"
    seg = ipcmk()
    try:
        pods = []
        for mode, seen in ((pb.NODE, True), (pb.POD, False)):
            modes = dict(pid=pb.POD, ipc=mode, network=pb.POD)
            p, cfg = pod(ctrs, "NamespaceOption-PodSandbox-", linux=ns_pod_linux(**modes))
            pods.append(p)
            c = running(ctrs, p, cfg, "namespace-container-", command=PAUSE,
                        linux=pb.LinuxContainerConfig(
                            security_context=pb.LinuxContainerSecurityContext(
                                namespace_options=pb.NamespaceOption(**modes))))
            # (critest reads `ipcs -m`; this busybox has no ipcs: the kernel's table.)
            ids = [line.split()[1] for line in
                   ok(ctrs, c, ["cat", "/proc/sysvipc/shm"]).splitlines()[1:]]
            assert (seg in ids) == seen, (mode, seg, ids)
        finish(ctrs, *pods)
    finally:
        subprocess.run(["ipcrm", "-m", seg], check=False)


def test_host_network(ctrs):
    """critest "Security Context: runtime should support HostNetwork is true / is false":
    `netstat -ln` in the container lists a port the host listens on only with NET NODE."""
    srv = socket.socket()
    srv.bind(("", 0))
    srv.listen()
    port = srv.getsockname()[1]
    try:
        pods = []
        for mode, seen in ((pb.NODE, True), (pb.POD, False)):
            modes = dict(pid=pb.POD, ipc=pb.POD, network=mode)
            p, cfg = log_pod(ctrs, "NamespaceOption-PodSandbox-", linux=ns_pod_linux(**modes))
            pods.append(p)
            c = create(ctrs, p, cfg, "container-with-HostNetwork-test-",
                       command=["sh", "-c", "netstat -ln"], log_path="net.log",
                       linux=pb.LinuxContainerConfig(
                           security_context=pb.LinuxContainerSecurityContext(
                               namespace_options=pb.NamespaceOption(**modes))))
            ctrs.start(c)
            st = wait_state(ctrs, c, pb.CONTAINER_EXITED)
            assert st.exit_code == 0, st
            lines = [m for s, _, m in ctrs.log_records(st.log_path) if s == "stdout"]
            assert lines, st
            assert any(f":{port} " in m for m in lines) == seen, (mode, port, lines)
        finish(ctrs, *pods)
    finally:
        srv.close()


def host_pids_of(argv):
    want = ("\0".join(argv) + "\0").encode()
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "cmdline").read_bytes() == want:
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def test_host_pid_and_pod_pid_mode_container(ctrs):
    """critest "Security Context: runtime should support HostPID" (pod and containers with
    pid NODE, ipc POD, network POD: one container's host pid is seen by another) and
    "ContainerPID" (the pod's own namespace option pid CONTAINER: the command is PID 1)."""
    modes = dict(pid=pb.NODE, ipc=pb.POD, network=pb.POD)
    nsl = security(namespace_options=pb.NamespaceOption(**modes))
    p, cfg = pod(ctrs, "NamespaceOption-PodSandbox-", linux=ns_pod_linux(**modes))
    secs = str(40000 + os.getpid() % 10000)
    a = running(ctrs, p, cfg, "server-container-", command=["sleep", secs],
                linux=nsl)
    [apid] = host_pids_of(["sleep", secs])
    b = running(ctrs, p, cfg, "container-with-HostPID-test-", command=["sh", "-c", "sleep 1000"],
                linux=security(namespace_options=pb.NamespaceOption(**modes)))
    assert str(apid) in ok(ctrs, b, ["pidof", "sleep"]).split()
    assert ctrs.cstatus(a).state == pb.CONTAINER_RUNNING

    q, qcfg = pod(ctrs, "NamespaceOption-PodSandbox-", linux=ns_pod_linux(pid=pb.CONTAINER))
    c = running(ctrs, q, qcfg, "nginx-container-", command=["sleep", "1000"],
                linux=security(namespace_options=pb.NamespaceOption(pid=pb.CONTAINER)))
    assert ok(ctrs, c, ["cat", "/proc/1/cmdline"]) == "sleep\x001000\x00"
    finish(ctrs, p, q)
    assert host_pids_of(["sleep", secs]) == []


def test_privileged_and_capabilities(ctrs):
    """critest "Security Context: Privileged is true / is false" (a privileged sandbox),
    "adding capability" (NET_ADMIN), "dropping capability" (NET_RAW: ping fails),
    "adding ALL capabilities" and "dropping ALL capabilities" (the bounding set)."""
    p, cfg = pod(ctrs, "create-Privileged-PodSandbox-for-container-",
                 linux=pb.LinuxPodSandboxConfig(
                     security_context=pb.LinuxSandboxSecurityContext(privileged=True)))
    priv = running(ctrs, p, cfg, "container-with-isPrivileged-test-", command=PAUSE,
                   linux=security(privileged=True))
    assert ex(ctrs, priv, ["brctl", "addbr", "foobar"]).exit_code == 0
    q, qcfg = pod(ctrs, "create-Privileged-PodSandbox-for-container-",
                  linux=pb.LinuxPodSandboxConfig(
                      security_context=pb.LinuxSandboxSecurityContext(privileged=False)))
    notpriv = running(ctrs, q, qcfg, "container-with-notPrivileged-test-", command=PAUSE,
                      linux=security(privileged=False))
    r = ex(ctrs, notpriv, ["brctl", "addbr", "foobar"])
    assert r.exit_code != 0 and b"not permitted" in r.stderr, r

    d, dcfg = pod(ctrs, "create-PodSandbox-for-container-", linux=pb.LinuxPodSandboxConfig())

    def capped(add=(), drop=()):
        return running(ctrs, d, dcfg, "container-with-capability-test-", command=PAUSE,
                       linux=security(capabilities=pb.Capability(
                           add_capabilities=list(add), drop_capabilities=list(drop))))

    admin = capped(add=["NET_ADMIN"])
    assert ex(ctrs, admin, ["brctl", "addbr", "bradmin"]).exit_code == 0
    plain = running(ctrs, d, dcfg, "container-with-notCapability-test-", command=TOP,
                    linux=pb.LinuxContainerConfig())
    r = ex(ctrs, plain, ["brctl", "addbr", "brplain"])
    assert r.exit_code != 0 and b"not permitted" in r.stderr, r
    noraw = capped(drop=["NET_RAW"])
    r = ex(ctrs, noraw, ["ping", "127.0.0.1"])
    assert r.exit_code != 0 and r.stdout != b"" and b"permission denied" in r.stderr, r
    every = capped(add=["ALL"])
    assert status_line(ok(ctrs, every, ["cat", "/proc/self/status"]), "CapBnd") != \
        "0000000000000000"
    none = capped(drop=["ALL"])
    st = ok(ctrs, none, ["cat", "/proc/self/status"])
    assert status_line(st, "CapBnd") == "0000000000000000"
    assert status_line(st, "CapEff") == "0000000000000000"
    finish(ctrs, p, q, d)


def test_users_groups_and_readonly_rootfs(ctrs):
    """critest "Security Context: SupplementalGroups" (no user), "RunAsUser", "RunAsUserName"
    (`id -nu`), "RunAsGroup", "return error if RunAsGroup is set without RunAsUser",
    "ReadOnlyRootfs is false / is true" (a relative path in the working directory)."""
    p, cfg = log_pod(ctrs, "PodSandbox-with-log-directory-")
    g = running(ctrs, p, cfg, "container-with-SupplementalGroups-test-", command=PAUSE,
                linux=security(supplemental_groups=[1234, 5678]))
    groups = ok(ctrs, g, ["id", "-G"]).split()
    assert "1234" in groups and "5678" in groups, groups
    uid = running(ctrs, p, cfg, "container-with-RunAsUser-test-", command=PAUSE,
                  linux=security(run_as_user=pb.Int64Value(value=1001)))
    assert ok(ctrs, uid, ["id", "-u"]) == "1001\n"
    name = running(ctrs, p, cfg, "container-with-RunAsUserName-test-", command=PAUSE,
                   linux=security(run_as_username="nobody"))
    assert ok(ctrs, name, ["id", "-nu"]) == "nobody\n"
    grp = create(ctrs, p, cfg, "container-with-RunAsGroup-test-", log_path="group.log",
                 command=["sh", "-c", "echo $(id -u):$(id -g)"],
                 linux=security(run_as_user=pb.Int64Value(value=1001),
                                run_as_group=pb.Int64Value(value=1002)))
    ctrs.start(grp)
    st = wait_state(ctrs, grp, pb.CONTAINER_EXITED)
    assert ("stdout", "F", "1001:1002") in ctrs.log_records(st.log_path)
    before = ctrs.clist()
    with pytest.raises(grpc.RpcError) as e:
        create(ctrs, p, cfg, "container-with-RunAsGroup-without-RunAsUser-test-",
               command=["sh", "-c", "echo $(id -u):$(id -g)"],
               linux=security(run_as_group=pb.Int64Value(value=1002)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    assert ctrs.clist() == before
    for ro, want in ((False, ("stdout", "F", "Found")),
                     (True, ("stderr", "F", "touch: test.go: Read-only file system"))):
        c = create(ctrs, p, cfg, "container-with-ReadOnlyRootfs-test-", log_path=f"ro{ro}.log",
                   command=["sh", "-c", "touch test.go && [ -f test.go ] && echo 'Found'"],
                   linux=security(readonly_rootfs=ro))
        ctrs.start(c)
        st = wait_state(ctrs, c, pb.CONTAINER_EXITED)
        assert want in ctrs.log_records(st.log_path), (ro, ctrs.log_records(st.log_path))
    finish(ctrs, p)


def test_masked_path_on_a_hard_linked_applet(ctrs):
    """critest "Security Context: runtime should support MaskedPaths": /bin/ls masked in an
    image whose /bin/ls is a hard link of busybox; the shell still runs, ls cannot."""
    p, cfg = pod(ctrs, "create-PodSandbox-for-container-", linux=pb.LinuxPodSandboxConfig())
    c = running(ctrs, p, cfg, "container-with-maskedpaths", command=PAUSE,
                linux=security(masked_paths=["/bin/ls"]))
    # critest runs `sh -c ls`; Debian's busybox shell runs its applets without exec, so
    # the path is named here to make it exec the masked file.
    r = ex(ctrs, c, ["/bin/sh", "-c", "/bin/ls"])
    assert r.exit_code != 0 and r.stderr == b"/bin/sh: /bin/ls: Permission denied\n", r
    r = ex(ctrs, c, ["/bin/ls"])
    assert r.exit_code != 0 and b"Permission denied" in r.stderr, r
    st = ok(ctrs, c, ["stat", "-c", "%F %t:%T %s", "/bin/ls", "/bin/busybox"]).splitlines()
    assert st[0] == "character special file 1:3 0" and st[1].startswith("regular file"), st
    assert ok(ctrs, c, ["cat", "/etc/hostname"]) != ""
    finish(ctrs, p)


BLOCK_HOSTNAME = """{"defaultAction": "SCMP_ACT_ALLOW",
 "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}"""
BLOCK_CHMOD = """{"defaultAction": "SCMP_ACT_ALLOW",
 "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}]}"""


def test_seccomp_profile_path_forms(ctrs):
    """critest "Security Context: SeccompProfilePath": the legacy field at pod and container
    level, "unconfined", "", "docker/default", "localhost/<path>" (blocking chmod), a path
    without "localhost/" (refused), "unconfined" and "localhost/" with SYS_ADMIN
    (sethostname), and a privileged container, whose profile is ignored."""
    # critest's profile dir, /tmp/seccomp-tests<digits> (its name goes into a container
    # name, where runt allows no "_" that mkdtemp's suffix may have).
    tmp_path = Path(f"/tmp/seccomp-tests{os.getpid()}{time.monotonic_ns() % 10**9}")
    tmp_path.mkdir()
    try:
        seccomp_forms(ctrs, tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def seccomp_forms(ctrs, tmp_path):
    (tmp_path / "block-host-name.json").write_text(BLOCK_HOSTNAME)
    (tmp_path / "block-chmod.json").write_text(BLOCK_CHMOD)
    hostname_prof = str(tmp_path / "block-host-name.json")
    pods = []
    for prof in ("unconfined", "", "docker/default", "localhost/" + str(tmp_path / "block-chmod.json")):
        p, cfg = pod(ctrs, "seccomp-sandbox-", linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(seccomp_profile_path=prof)))
        pods.append(p)
        c = running(ctrs, p, cfg, f"seccomp-container-{prof.replace('/', '-')}-",
                    command=PAUSE, linux=security(seccomp_profile_path=prof))
        if prof.startswith("localhost/"):
            r = ex(ctrs, c, ["chmod", "400", "/"])
            assert r.exit_code != 0 and b"Operation not permitted" in r.stderr, r
        else:
            mode = status_line(ok(ctrs, c, ["grep", "ecc", "/proc/self/status"]), "Seccomp")
            assert mode == ("2" if prof == "docker/default" else "0"), (prof, mode)

    d, dcfg = pod(ctrs, "create-PodSandbox-for-container-", linux=pb.LinuxPodSandboxConfig())
    pods.append(d)

    def sc(prof, caps=(), privileged=False, p=d, cfg=dcfg):
        return create(ctrs, p, cfg, "container-with-block-hostname-seccomp-profile-test-",
                      command=["sleep", "60"], linux=security(
                          privileged=privileged, seccomp_profile_path=prof,
                          capabilities=pb.Capability(add_capabilities=list(caps))))

    c = sc("unconfined", ["SYS_ADMIN"])
    ctrs.start(c)
    assert ex(ctrs, c, ["hostname", "ANewHostName"]).exit_code == 0
    c = sc("localhost/" + hostname_prof, ["SYS_ADMIN"])
    ctrs.start(c)
    r = ex(ctrs, c, ["hostname", "ANewHostName"])
    assert r.exit_code != 0, r
    before = ctrs.clist()
    with pytest.raises(grpc.RpcError) as e:
        sc(hostname_prof)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    assert ctrs.clist() == before
    pp, ppcfg = pod(ctrs, "create-Privileged-PodSandbox-for-container-",
                    linux=pb.LinuxPodSandboxConfig(
                        security_context=pb.LinuxSandboxSecurityContext(privileged=True)))
    pods.append(pp)
    c = sc("localhost/" + hostname_prof, privileged=True, p=pp, cfg=ppcfg)
    ctrs.start(c)
    assert ex(ctrs, c, ["hostname", "ANewHostName"]).exit_code == 0
    finish(ctrs, *pods)


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True, timeout=T)


def test_mount_propagation_status_and_bind_from_the_container(ctrs, tmp_path):
    """critest "Container Mount Propagation" ('rprivate', 'rshared', 'rslave'): a privileged
    sandbox and container, the source rbind-mounted onto itself and made rshared or
    rprivate; ContainerStatus(verbose) reports the mount as asked; a host mount made after
    start is seen inside unless private; the container's bind mount of /etc reaches the host
    only when bidirectional."""
    p, cfg = pod(ctrs, "create-Privileged-PodSandbox-for-container-",
                 linux=pb.LinuxPodSandboxConfig(
                     security_context=pb.LinuxSandboxSecurityContext(privileged=True)))
    srcs = []
    try:
        for prop, flag, inward, outward in (
                (pb.PROPAGATION_PRIVATE, "--make-rprivate", False, False),
                (pb.PROPAGATION_BIDIRECTIONAL, "--make-rshared", True, True),
                (pb.PROPAGATION_HOST_TO_CONTAINER, "--make-rshared", True, False)):
            host = tmp_path / f"prop{prop}"
            mnt, point, src = host / "mnt", host / "mnt" / "propagationMnt", \
                host / "propagationSrcDir"
            point.mkdir(parents=True)
            src.mkdir()
            (src / "flagFile").write_text("")
            sh("mount", "--rbind", str(mnt), str(mnt))
            srcs.append(mnt)
            sh("mount", flag, str(mnt))
            c = create(ctrs, p, cfg, "mount-propagation-test-", command=PAUSE,
                       linux=security(privileged=True),
                       mounts=[pb.Mount(host_path=str(mnt), container_path=str(mnt),
                                        propagation=prop)])
            [m] = ctrs.rt().ContainerStatus(pb.ContainerStatusRequest(
                container_id=c, verbose=True), timeout=T).status.mounts
            assert (m.container_path, m.host_path, m.readonly, m.selinux_relabel,
                    m.propagation) == (str(mnt), str(mnt), False, False, prop), m
            ctrs.start(c)
            wait_state(ctrs, c, pb.CONTAINER_RUNNING)
            sh("mount", "--rbind", str(src), str(point))
            seen = ok(ctrs, c, ["ls", "-A", str(point)])
            assert seen == ("flagFile\n" if inward else ""), (prop, seen)
            cpoint = mnt / "containerMntPoint"
            ok(ctrs, c, ["sh", "-c", f"mkdir -p {cpoint}"])
            ok(ctrs, c, ["sh", "-c", f"mount --bind /etc {cpoint}"])
            assert bool(os.listdir(cpoint)) == outward, prop
    finally:
        for mnt in srcs:
            subprocess.run(["umount", "-R", "-l", str(mnt)], check=False)
    finish(ctrs, p)


@pytest.fixture
def senv(runtd_factory, tmp_path, images):
    e = StreamEnv(runtd_factory, tmp_path, images)
    yield e
    e.cleanup()


def test_streaming_request_shapes(senv):
    """critest "Streaming: exec with tty=false and stdin=false", "exec with tty=true and
    stdin=true" (no stderr), "attach" (to /bin/sh created with stdin and stdin_once),
    "portforward" and "portforward in host network" (a request naming only the pod: the
    port comes with the stream)."""
    rt = senv.rt()
    p, cfg = pod(senv, "create-PodSandbox-with-port-mapping", linux=pb.LinuxPodSandboxConfig(),
                 port_mappings=[pb.PortMapping(container_port=80)])
    c = running(senv, p, cfg, "container-for-exec-test", command=TOP,
                linux=pb.LinuxContainerConfig())
    url = rt.Exec(pb.ExecRequest(container_id=c, cmd=["echo", "-n", "hello"], stdout=True,
                                 stderr=True), timeout=T).url
    res = K.run_exec("spdy", url)
    assert (res.stdout, res.stderr, res.exit_code) == (b"hello", b"", 0), res
    url = rt.Exec(pb.ExecRequest(container_id=c, cmd=["echo", "-n", "hello"], stdout=True,
                                 tty=True, stdin=True), timeout=T).url
    res = K.run_exec("spdy", url, stdin=b"", stderr=False, tty=True)
    assert b"hello" in res.stdout and res.stderr == b"" and res.exit_code == 0, res

    sh_c = running(senv, p, cfg, "container-for-attach-test", command=["/bin/sh"],
                   linux=pb.LinuxContainerConfig(), stdin=True, stdin_once=True, tty=False)
    url = rt.Attach(pb.AttachRequest(container_id=sh_c, stdin=True, stdout=True, stderr=True,
                                     tty=False), timeout=T).url
    with K.remote_command("spdy", url, stdin=True, stdout=True, stderr=True) as r:
        r.write_stdin(b"echo -n hello\n")
        assert r.read_until(b"hello") == b"hello"
        assert senv.cstatus(sh_c).state == pb.CONTAINER_RUNNING
        r.close_stdin()
    # stdin_once: the end of the first session's stdin is the end of the container's.
    st = wait_state(senv, sh_c, pb.CONTAINER_EXITED)
    assert st.exit_code == 0, st

    get = b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n"
    running(senv, p, cfg, "container-for-portforward-test", linux=pb.LinuxContainerConfig(),
            command=["httpd", "-f", "-p", "80", "-h", "/www"])
    ip = senv.status(p).status.network.ip
    assert http_get(f"http://{ip}:80/index.html") == (200, INDEX)
    hport = free_port()
    h, hcfg = pod(senv, "create-PodSandbox-with-port-mapping",
                  port_mappings=[pb.PortMapping(container_port=hport)],
                  linux=ns_pod_linux(network=pb.NODE))
    running(senv, h, hcfg, "container-for-host-net-portforward-test",
            linux=pb.LinuxContainerConfig(),
            command=["httpd", "-f", "-p", f"127.0.0.1:{hport}", "-h", "/www"])
    assert http_get(f"http://127.0.0.1:{hport}/index.html") == (200, INDEX)
    for pod_id, port in ((p, 80), (h, hport)):
        url = rt.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod_id), timeout=T).url
        with K.SpdyPortForward(url) as pf:
            conn = pf.open(port)
            conn.send(get)
            data = conn.read_all()
            assert data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n")[0], data
            assert data.endswith(INDEX) and conn.error_text() == "", data
    finish(senv, p, h)


def test_image_pull_with_sandbox_config_status_forms_and_remove_by_id(ctrs):
    """critest "Image Manager": the pull carries a sandbox config (only labels, as its
    image tests send; a whole pod config, as its container helpers send), ImageStatus by
    the id, each repo tag and each repo digest is the same message, ListImages with an
    empty (present) filter, RemoveImage by the id leaves no image behind."""
    ims = ctrs.d.image()
    ref = ctrs.images["bb"]

    def status(x):
        return ims.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=x)), timeout=T)

    first = status(ref).image
    ims.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=first.id)), timeout=T)
    assert not status(ref).HasField("image")
    got = ims.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref),
                                            sandbox_config=pb.PodSandboxConfig(labels={})),
                        timeout=T).image_ref
    st = status(ref).image
    assert got == st.id and st.size > 0 and list(st.repo_tags) == [ref], st
    assert status(st.id).image == st
    for x in list(st.repo_tags) + list(st.repo_digests):
        assert status(x).image == st, x
    listed = ims.ListImages(pb.ListImagesRequest(filter=pb.ImageFilter()), timeout=T).images
    assert [list(i.repo_tags) for i in listed if i.id == st.id] == [[ref]]
    # Pulled again with a whole pod config, as before CreateContainer: the same image.
    _, cfg = pod(ctrs, "create-PodSandbox-for-container-", linux=pb.LinuxPodSandboxConfig())
    again = ims.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref),
                                              sandbox_config=cfg), timeout=T).image_ref
    assert again == st.id
    ims.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=st.id)), timeout=T)
    assert not status(ref).HasField("image")
    assert not status(st.id).HasField("image")
    assert all(i.id != st.id for i in ims.ListImages(pb.ListImagesRequest(), timeout=T).images)
    finish(ctrs, *[i.id for i in ctrs.list()])
