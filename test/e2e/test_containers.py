"""Containers on the LXC backend, end to end: real liblxc as root, real CNI plugins, images
built here (busybox-static + umoci) and pulled from a local docker-registry.

Every test checks what is left on the host afterwards: LXC dirs, cgroups, pause and monitor
processes, netns, reservations."""

import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import grpc
import pytest

import cgv
import registry as R
from conftest import fresh_fs_info, pb
from test_lxc_sandbox import EMPTY_LXC, LxcPods, pause_pids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")
T = 60


@pytest.fixture(scope="module")
def images(registry, tmp_path_factory):
    """busybox images in the session registry: name -> reference."""
    lay = R.OciLayout.create(tmp_path_factory.mktemp("ctr-oci"))
    out = {}
    try:
        R.busybox_image(lay, "plain", cmd=["/bin/sh", "-c", "echo from-image-cmd"],
                        env=["PATH=/bin", "FROM_IMAGE=1", "OVERRIDE=image"])
        R.busybox_image(lay, "user", user="user", workdir="/home/user/work",
                        cmd=["/bin/sh", "-c", "id -u; id -g; pwd"])
        # A layer of its own (the others share one), for the image GC test.
        R.busybox_image(lay, "entry", extra={"entry-only": b"e\n"},
                        entrypoint=["/bin/echo", "entry"], cmd=["cmd-arg"])
        # Symlinks an image may carry: a relative one inside (var/run -> ../run, as Debian
        # has), an absolute one (meant for the rootfs, not the host), /etc/passwd -> host file.
        def links(rootfs):
            R.busybox_rootfs(rootfs)
            os.makedirs(os.path.join(rootfs, "run"), exist_ok=True)
            os.makedirs(os.path.join(rootfs, "var"), exist_ok=True)
            os.symlink("../run", os.path.join(rootfs, "var", "run"))
            os.symlink("/etc", os.path.join(rootfs, "escape"))
            os.symlink("/proc", os.path.join(rootfs, "kproc"))
            os.symlink("../sys/kernel", os.path.join(rootfs, "etc", "ksys"))
            for f in ("passwd", "group"):
                os.unlink(os.path.join(rootfs, "etc", f))
            os.symlink("/etc/shadow", os.path.join(rootfs, "etc", "group"))
            os.symlink("/etc/shadow", os.path.join(rootfs, "etc", "passwd"))

        # The shape of critest's test-image-predefined-group: /etc/group lists the user in
        # groups other than its own.
        def grouped(rootfs):
            R.busybox_rootfs(rootfs)
            Path(rootfs, "etc", "group").write_text(
                "root:x:0:\nuser:x:1000:\ngroup-defined-in-image:x:50000:user\n"
                "other:x:50001:root,user\nnot-user:x:50002:user2,users\n")

        lay.new_rootfs("grouped", grouped)
        lay.config("grouped", cmd=["/bin/sh"], env=["PATH=/bin"], user="1000")
        lay.new_rootfs("links", links)
        lay.config("links", cmd=["/bin/sh"], env=["PATH=/bin"])
        for tag in ("plain", "user", "entry", "links", "grouped"):
            lay.push(tag, registry.host, f"ctr/{tag}:1")
            out[tag] = f"{registry.host}/ctr/{tag}:1"
    finally:
        lay.remove()
    return out


def shim_pids(root):
    """runt-lxc-shim processes of the runtd whose root is @root."""
    return helper_pids("runt-lxc-shim", root)


def helper_pids(name, root):
    """Processes of runt's helper program @name whose arguments name @root."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cl = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cl and cl[0].endswith(name.encode()) and str(root).encode() in b" ".join(cl):
            pids.append(int(p.name))
    return pids


def mounts_under(root):
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(root))]


class Ctrs(LxcPods):
    def __init__(self, runtd_factory, tmp_path, images, **kw):
        hosts = sorted({ref.split("/")[0] for ref in images.values()})
        super().__init__(runtd_factory, tmp_path, images={
            "registries": [{"prefix": h, "insecure": True} for h in hosts]}, **kw)
        self.images = images
        self.ids = set()  # every pod and container made here
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        for ref in images.values():
            self.d.image().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)),
                                     timeout=T)

    def run(self, cfg, handler=""):
        pid = super().run(cfg, handler)
        self.ids.add(pid)
        return pid

    def leftovers(self):
        """The host-wide entries (cgroups, runt-pause processes) cut to the pods and
        containers made here: other runs may share the machine."""
        left = super().leftovers()
        left["cgroups"] = [c for c in left["cgroups"]
                           if c.rsplit("/", 1)[-1].removeprefix("monitor-") in self.ids]
        left["pause"] = [p for p in left["pause"] if self._own_pid(p)]
        left["shims"] = shim_pids(self.d.root_dir)
        left["mounts"] = mounts_under(self.d.root_dir)
        return left

    def _own_pid(self, pid):
        try:
            cg = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        return any(i in cg for i in self.ids)

    def pod(self, name="p", **kw):
        cfg = self.config(name, log_directory=str(self.logs / name), **kw)
        return self.run(cfg), cfg

    def create(self, pod, cfg, name="c", image="plain", **kw):
        kw.setdefault("log_path", f"{name}.log")
        # As the kubelet: a pid namespace of its own unless the pod shares one.
        linux = kw.setdefault("linux", pb.LinuxContainerConfig())
        if not linux.security_context.HasField("namespace_options"):
            linux.security_context.namespace_options.pid = pb.CONTAINER
        c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name),
                               image=pb.ImageSpec(image=self.images[image]), **kw)
        cid = self.rt().CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=c, sandbox_config=cfg), timeout=T).container_id
        self.ids.add(cid)
        return cid

    def start(self, cid):
        self.rt().StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)

    def run_ctr(self, pod, cfg, name="c", **kw):
        cid = self.create(pod, cfg, name, **kw)
        self.start(cid)
        return cid

    def cstatus(self, cid):
        return self.rt().ContainerStatus(pb.ContainerStatusRequest(container_id=cid),
                                         timeout=T).status

    def wait_exit(self, cid, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.cstatus(cid)
            if st.state == pb.CONTAINER_EXITED:
                return st
            time.sleep(0.05)
        raise AssertionError(f"container {cid} did not exit: {self.cstatus(cid)}")

    def exec(self, cid, cmd, timeout=10):
        return self.rt().ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd,
                                                     timeout=timeout), timeout=T)

    def cstop(self, cid, timeout=10):
        self.rt().StopContainer(pb.StopContainerRequest(container_id=cid, timeout=timeout),
                                timeout=T)

    def crm(self, cid):
        self.rt().RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=T)

    def clist(self, **f):
        req = pb.ListContainersRequest(filter=pb.ContainerFilter(**f)) if f else \
            pb.ListContainersRequest()
        return list(self.rt().ListContainers(req, timeout=T).containers)

    def log_records(self, path):
        out = []
        for line in Path(path).read_text().splitlines():
            ts, stream, tag, msg = (line.split(" ", 3) + [""])[:4]
            assert ts.endswith("Z") and "T" in ts, line
            out.append((stream, tag, msg))
        return out


EMPTY_CTRS = dict(EMPTY_LXC, shims=[], mounts=[])


@pytest.fixture
def ctrs(runtd_factory, tmp_path, images):
    c = Ctrs(runtd_factory, tmp_path, images)
    yield c
    c.cleanup()


def sleeper(**kw):
    return dict(command=["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"],
                **kw)


@pytest.mark.valgrind
def test_lifecycle_logs_and_exit_code(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.create(pod, cfg, "job", command=["/bin/sh", "-c",
                                                "echo out-line; echo err-line >&2; "
                                                "printf 'no newline'; exit 3"],
                      labels={"app": "job"}, annotations={"a": "b"})
    st = ctrs.cstatus(cid)
    assert st.state == pb.CONTAINER_CREATED and st.created_at > 0 and st.started_at == 0
    assert st.metadata.name == "job" and st.labels["app"] == "job"
    # The image as pulled (its tag) and its digested reference, as api.proto and the kubelet
    # want them; the id is image_id.
    ref = ctrs.images["plain"]
    assert st.image.image == ref and st.image_id.startswith("sha256:")
    assert st.image_ref.startswith(ref.rsplit(":", 1)[0] + "@sha256:"), st.image_ref
    ctrs.start(cid)
    st = ctrs.wait_exit(cid)
    assert st.exit_code == 3 and st.reason == "Error"
    assert st.started_at >= st.created_at and st.finished_at >= st.started_at
    assert st.log_path == str(ctrs.logs / "p" / "job.log")
    recs = ctrs.log_records(st.log_path)
    assert ("stdout", "F", "out-line") in recs and ("stderr", "F", "err-line") in recs
    assert ("stdout", "F", "no newline") in recs
    [item] = ctrs.clist()
    assert item.id == cid and item.pod_sandbox_id == pod and item.state == pb.CONTAINER_EXITED
    ctrs.crm(cid)
    assert ctrs.clist() == []
    ctrs.crm(cid)  # idempotent
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_image_config_merge(ctrs):
    pod, cfg = ctrs.pod()
    a = ctrs.run_ctr(pod, cfg, "a", envs=[pb.KeyValue(key="OVERRIDE", value=b"request")],
                     args=[])
    assert ctrs.wait_exit(a).exit_code == 0
    assert ("stdout", "F", "from-image-cmd") in ctrs.log_records(ctrs.cstatus(a).log_path)
    # args replace the image's Cmd and keep its Entrypoint.
    b = ctrs.run_ctr(pod, cfg, "b", image="entry", args=["x", "y"])
    ctrs.wait_exit(b)
    assert ("stdout", "F", "entry x y") in ctrs.log_records(ctrs.cstatus(b).log_path)
    c = ctrs.run_ctr(pod, cfg, "c", image="entry")
    ctrs.wait_exit(c)
    assert ("stdout", "F", "entry cmd-arg") in ctrs.log_records(ctrs.cstatus(c).log_path)
    # env: the image's, the request's over it; working dir; the image's user by name.
    d = ctrs.run_ctr(pod, cfg, "d", **sleeper(envs=[pb.KeyValue(key="OVERRIDE", value=b"req")],
                                              working_dir="/tmp"))
    env = ctrs.exec(d, ["env"]).stdout.decode().splitlines()
    assert "FROM_IMAGE=1" in env and "OVERRIDE=req" in env and "PATH=/bin" in env
    assert ctrs.exec(d, ["sh", "-c", "pwd"]).stdout.decode().strip() == "/tmp"
    u = ctrs.run_ctr(pod, cfg, "u", image="user")
    ctrs.wait_exit(u)
    out = [m for s, _, m in ctrs.log_records(ctrs.cstatus(u).log_path) if s == "stdout"]
    assert out == ["1000", "1000", "/home/user/work"]
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


@pytest.mark.valgrind
def test_exec_sync(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, **sleeper())
    r = ctrs.exec(cid, ["/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 5"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"to-out\n", b"to-err\n", 5)
    r = ctrs.exec(cid, ["/bin/no-such-program"])
    assert r.exit_code != 0
    # The timeout holds even when a background process keeps the output open.
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        ctrs.exec(cid, ["/bin/sh", "-c", "sleep 30 & sleep 30"], timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 2.0
    t0 = time.monotonic()
    r = ctrs.exec(cid, ["/bin/sh", "-c", "sleep 30 >/dev/null 2>&1 & echo started"], timeout=5)
    assert r.stdout == b"started\n" and time.monotonic() - t0 < 2.0
    ps = ctrs.exec(cid, ["ps", "-o", "pid,args"]).stdout.decode()
    assert "sleep 30" in ps
    ctrs.cstop(cid, timeout=5)
    st = ctrs.cstatus(cid)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0, st
    with pytest.raises(grpc.RpcError) as e:
        ctrs.exec(cid, ["true"])
    assert e.value.code() != grpc.StatusCode.OK
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_two_containers_reach_each_other_on_localhost(ctrs):
    pod, cfg = ctrs.pod()
    ctrs.run_ctr(pod, cfg, "server", command=[
        "/bin/sh", "-c", "mkdir -p /tmp/www; echo hello-from-server > /tmp/www/index.html; "
                         "exec busybox httpd -f -p 127.0.0.1:8080 -h /tmp/www"])
    client = ctrs.run_ctr(pod, cfg, "client", **sleeper())
    deadline = time.monotonic() + 10
    while True:
        r = ctrs.exec(client, ["busybox", "wget", "-q", "-O", "-",
                               "http://127.0.0.1:8080/index.html"])
        if r.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.stdout == b"hello-from-server\n", r
    # Same hostname (uts shared with the sandbox: the node's, none was asked), own pid
    # namespace.
    assert ctrs.exec(client, ["busybox", "hostname"]).stdout.decode().strip() == \
        socket.gethostname()
    assert "httpd" not in ctrs.exec(client, ["ps", "-o", "args"]).stdout.decode()
    assert len(ctrs.clist(pod_sandbox_id=pod)) == 2
    assert len(ctrs.clist(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING))) == 2
    ctrs.stop(pod)  # stops both containers
    assert all(c.state == pb.CONTAINER_EXITED for c in ctrs.clist())
    ctrs.remove(pod)
    assert ctrs.clist() == [] and ctrs.leftovers() == EMPTY_CTRS


def test_shared_pid_namespace(ctrs):
    pod, cfg = ctrs.pod(linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(pid=pb.POD))))
    ns = pb.NamespaceOption(pid=pb.POD)
    a = ctrs.run_ctr(pod, cfg, "a", **sleeper(linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(namespace_options=ns))))
    b = ctrs.run_ctr(pod, cfg, "b", command=["/bin/sh", "-c", "exec sleep 1000"],
                     linux=pb.LinuxContainerConfig(
                         security_context=pb.LinuxContainerSecurityContext(
                             namespace_options=ns)))
    assert ctrs.exec(a, ["cat", "/proc/1/cmdline"]).stdout == b"/pause\x00"
    ps = ctrs.exec(a, ["ps", "-o", "args"]).stdout.decode()
    assert "sleep 1000" in ps, ps
    ctrs.cstop(b, timeout=2)
    assert ctrs.cstatus(b).state == pb.CONTAINER_EXITED
    assert "sleep 1000" not in ctrs.exec(a, ["ps", "-o", "args"]).stdout.decode()
    # PID 1 exits leaving a background process (holding stdout) behind: the container has
    # exited all the same, and the leftover is killed with it.
    c = ctrs.run_ctr(pod, cfg, "c", command=["/bin/sh", "-c", "sleep 999 & echo hi; exit 3"],
                     linux=pb.LinuxContainerConfig(
                         security_context=pb.LinuxContainerSecurityContext(
                             namespace_options=ns)))
    assert ctrs.wait_exit(c, timeout=10).exit_code == 3
    assert "sleep 999" not in ctrs.exec(a, ["ps", "-o", "args"]).stdout.decode()
    assert ("stdout", "F", "hi") in ctrs.log_records(ctrs.cstatus(c).log_path)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


# A shell loop that says, by a file, that its traps are set: a stop sent before would find
# the default dispositions.
READY = "touch /tmp/trapped; while true; do sleep 0.1; done"


def trapped(ctrs, cid, timeout=10):
    deadline = time.monotonic() + timeout
    while ctrs.exec(cid, ["/bin/sh", "-c", "test -e /tmp/trapped"]).exit_code != 0:
        assert time.monotonic() < deadline, "the container never set its traps"
        time.sleep(0.05)


def test_stop_term_ignoring_process_within_grace(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, command=["/bin/sh", "-c",
                                          "trap '' TERM; " + READY])
    trapped(ctrs, cid)
    t0 = time.monotonic()
    ctrs.cstop(cid, timeout=2)
    took = time.monotonic() - t0
    st = ctrs.cstatus(cid)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137, st
    assert 1.9 < took < 5, took
    # A process with a TERM handler ends at once, with its own code.
    c2 = ctrs.run_ctr(pod, cfg, "c2", command=["/bin/sh", "-c",
                                               "trap 'exit 42' TERM; " + READY])
    trapped(ctrs, c2)
    t0 = time.monotonic()
    ctrs.cstop(c2, timeout=10)
    assert time.monotonic() - t0 < 2 and ctrs.cstatus(c2).exit_code == 42
    ctrs.cstop(c2, timeout=10)  # stopped already: fine
    # The request's stop signal (Kubernetes' lifecycle.stopSignal) is the one sent.
    c3 = ctrs.run_ctr(pod, cfg, "c3", stop_signal=pb.SIGINT,
                      command=["/bin/sh", "-c", "trap 'exit 7' INT; trap '' TERM; " + READY])
    trapped(ctrs, c3)
    assert ctrs.cstatus(c3).stop_signal == pb.SIGINT
    t0 = time.monotonic()
    ctrs.cstop(c3, timeout=10)
    assert time.monotonic() - t0 < 2 and ctrs.cstatus(c3).exit_code == 7
    # Any signal it handles reaches PID 1, SIGPWR too.
    c4 = ctrs.run_ctr(pod, cfg, "c4", stop_signal=pb.SIGPWR,
                      command=["/bin/sh", "-c", "trap 'exit 9' PWR; trap '' TERM; " + READY])
    trapped(ctrs, c4)
    t0 = time.monotonic()
    ctrs.cstop(c4, timeout=10)
    assert time.monotonic() - t0 < 2 and ctrs.cstatus(c4).exit_code == 9
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_oom_kill_is_reported(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, command=["/bin/sh", "-c", "sleep 0.3; busybox tail /dev/zero"],
                       linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
                           memory_limit_in_bytes=32 << 20)))
    st = ctrs.wait_exit(cid, timeout=30)
    assert st.reason == "OOMKilled" and st.exit_code == 137, st
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def security(**kw):
    return pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(**kw))


def cap_eff(ctrs, cid):
    for line in ctrs.exec(cid, ["cat", "/proc/self/status"]).stdout.decode().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapEff")


def status_field(ctrs, cid, name):
    for line in ctrs.exec(cid, ["cat", "/proc/self/status"]).stdout.decode().splitlines():
        if line.startswith(name + ":"):
            return line.split()[1]
    raise AssertionError(name)


def test_security_context(ctrs, tmp_path):
    pod, cfg = ctrs.pod()
    vol = tmp_path / "vol"
    vol.mkdir()
    ro = ctrs.run_ctr(pod, cfg, "ro", **sleeper(
        linux=security(readonly_rootfs=True),
        mounts=[pb.Mount(container_path="/data/vol", host_path=str(vol))]))
    r = ctrs.exec(ro, ["touch", "/file"])
    assert r.exit_code != 0 and b"Read-only" in r.stderr, r
    assert ctrs.exec(ro, ["touch", "/data/vol/ok"]).exit_code == 0
    assert (vol / "ok").exists()

    user = ctrs.run_ctr(pod, cfg, "user", **sleeper(linux=security(
        run_as_user=pb.Int64Value(value=1000), supplemental_groups=[4242])))
    assert ctrs.exec(user, ["id", "-u"]).stdout == b"1000\n"
    assert "4242" in ctrs.exec(user, ["id", "-G"]).stdout.decode()
    byname = ctrs.run_ctr(pod, cfg, "byname", **sleeper(linux=security(
        run_as_username="nobody")))
    assert ctrs.exec(byname, ["id", "-u"]).stdout == b"65534\n"

    CAP_CHOWN, CAP_NET_RAW, CAP_SYS_ADMIN = 0, 13, 21
    plain = ctrs.run_ctr(pod, cfg, "plain", **sleeper())
    caps = cap_eff(ctrs, plain)
    assert caps & (1 << CAP_CHOWN) and caps & (1 << CAP_NET_RAW)
    assert not caps & (1 << CAP_SYS_ADMIN)
    assert status_field(ctrs, plain, "Seccomp") == "0"  # no profile named: Unconfined
    r = ctrs.exec(plain, ["busybox", "unshare", "-n", "true"])
    assert r.exit_code != 0
    # Masked paths (containerd's defaults): /proc/keys reads empty, /proc/acpi is empty.
    assert Path("/proc/keys").read_text() != ""
    assert ctrs.exec(plain, ["sh", "-c", "wc -c < /proc/keys"]).stdout.strip() == b"0"
    assert ctrs.exec(plain, ["ls", "-A", "/proc/acpi"]).stdout == b""
    dropped = ctrs.run_ctr(pod, cfg, "dropped", **sleeper(linux=security(
        capabilities=pb.Capability(drop_capabilities=["CHOWN"],
                                   add_capabilities=["SYS_ADMIN"]))))
    caps = cap_eff(ctrs, dropped)
    assert not caps & (1 << CAP_CHOWN) and caps & (1 << CAP_SYS_ADMIN)
    r = ctrs.exec(dropped, ["sh", "-c", "touch /tmp/f; chown 1 /tmp/f"])
    assert r.exit_code != 0 and b"not permitted" in r.stderr, r

    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    sc = ctrs.run_ctr(pod, cfg, "seccomp", **sleeper(linux=security(
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost,
                                   localhost_ref=str(profile)),
        no_new_privs=True)))
    r = ctrs.exec(sc, ["mkdir", "/tmp/denied"])
    assert r.exit_code != 0 and b"not permitted" in r.stderr, r
    assert ctrs.exec(sc, ["touch", "/tmp/allowed"]).exit_code == 0
    assert status_field(ctrs, sc, "NoNewPrivs") == "1"
    assert status_field(ctrs, plain, "NoNewPrivs") == "0"
    unconfined = ctrs.run_ctr(pod, cfg, "unconfined", **sleeper(linux=security(
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined))))
    assert status_field(ctrs, unconfined, "Seccomp") == "0"
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def caps(add=(), drop=()):
    return pb.Capability(add_capabilities=list(add), drop_capabilities=list(drop))


def test_seccomp_unset_is_unconfined(ctrs):
    """No SecurityProfile and no seccomp_profile_path, as the kubelet sends for a pod that
    names none: CRI's Unconfined, for the container and its exec'd processes."""
    pod, cfg = ctrs.pod()
    none = ctrs.run_ctr(pod, cfg, "none", **sleeper())
    assert status_field(ctrs, none, "Seccomp") == "0"
    empty = ctrs.run_ctr(pod, cfg, "empty", **sleeper(linux=security(seccomp_profile_path="")))
    assert status_field(ctrs, empty, "Seccomp") == "0"
    # Unconfined, but the capabilities still hold: no CAP_SYS_ADMIN, no sethostname.
    r = ctrs.exec(empty, ["busybox", "hostname", "ANewHostName"])
    assert r.exit_code != 0, r
    for pid in pause_pids(ctrs.d.root_dir):
        assert "Seccomp:\t0" in Path(f"/proc/{pid}/status").read_text()
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_runtime_default_follows_capabilities(ctrs):
    """RuntimeDefault lets a capability the container holds have the syscalls Docker's
    profile unlocks for it (critest's sethostname with docker/default and SYS_ADMIN)."""
    pod, cfg = ctrs.pod()
    rd = pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault)
    plain = ctrs.run_ctr(pod, cfg, "plain", **sleeper(linux=security(seccomp=rd)))
    assert status_field(ctrs, plain, "Seccomp") == "2"
    r = ctrs.exec(plain, ["busybox", "hostname", "ANewHostName"])
    assert r.exit_code != 0 and b"not permitted" in r.stderr, r
    assert ctrs.exec(plain, ["busybox", "unshare", "-u", "true"]).exit_code != 0
    admin = ctrs.run_ctr(pod, cfg, "admin", **sleeper(linux=security(
        seccomp=rd, capabilities=caps(add=["SYS_ADMIN"]))))
    assert status_field(ctrs, admin, "Seccomp") == "2"
    r = ctrs.exec(admin, ["busybox", "hostname", "ANewHostName"])
    assert r.exit_code == 0, r
    assert ctrs.exec(admin, ["busybox", "hostname"]).stdout == b"ANewHostName\n"
    r = ctrs.exec(admin, ["busybox", "unshare", "-u", "sh", "-c",
                          "busybox hostname inner; busybox hostname"])
    assert (r.exit_code, r.stdout) == (0, b"inner\n"), r
    r = ctrs.exec(admin, ["sh", "-c", "mkdir -p /tmp/m && busybox mount -t tmpfs none /tmp/m && "
                                      "busybox umount /tmp/m"])
    assert r.exit_code == 0, r
    # The old field with CAP_ prefixed names, and "ALL" (critest's request shapes).
    old = ctrs.run_ctr(pod, cfg, "old", **sleeper(linux=security(
        seccomp_profile_path="runtime/default", capabilities=caps(add=["CAP_SYS_ADMIN"]))))
    assert status_field(ctrs, old, "Seccomp") == "2"
    assert ctrs.exec(old, ["busybox", "hostname", "old"]).exit_code == 0
    docker = ctrs.run_ctr(pod, cfg, "docker", **sleeper(linux=security(
        seccomp_profile_path="docker/default")))
    assert ctrs.exec(docker, ["busybox", "hostname", "docker"]).exit_code != 0
    every = ctrs.run_ctr(pod, cfg, "all", **sleeper(linux=security(
        seccomp=rd, capabilities=caps(add=["ALL"]))))
    assert status_field(ctrs, every, "Seccomp") == "2"
    assert ctrs.exec(every, ["busybox", "hostname", "all"]).exit_code == 0
    # Dropped again: the capability and what it unlocked are gone.
    dropped = ctrs.run_ctr(pod, cfg, "dropped", **sleeper(linux=security(
        seccomp=rd, capabilities=caps(add=["ALL"], drop=["SYS_ADMIN"]))))
    r = ctrs.exec(dropped, ["busybox", "unshare", "-u", "true"])
    assert r.exit_code != 0, r
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_home_and_groups_of_the_image_user(ctrs):
    """HOME from the user's passwd entry, "/" without one, the request's or the image's
    env first; groups: the primary one, those /etc/group lists the user in, the request's;
    for PID 1 and for exec (critest's predefined-group spec)."""
    pod, cfg = ctrs.pod()
    show = ["/bin/sh", "-c", "echo HOME=$HOME; id -G; trap 'exit 0' TERM; "
                             "while true; do sleep 0.1; done"]

    def first(cid):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = [m for s, _, m in ctrs.log_records(ctrs.cstatus(cid).log_path)
                   if s == "stdout"]
            if len(out) >= 2:
                return out[:2]
            time.sleep(0.05)
        raise AssertionError(f"{cid} wrote no HOME and groups")

    def both(cid):
        r = ctrs.exec(cid, ["/bin/sh", "-c", "echo HOME=$HOME; id -G"])
        assert r.exit_code == 0, r
        assert r.stdout.decode().splitlines() == first(cid)
        return first(cid)

    g = ctrs.run_ctr(pod, cfg, "g", image="grouped", command=show, linux=security(
        run_as_user=pb.Int64Value(value=1000), supplemental_groups=[1234]))
    assert both(g) == ["HOME=/home/user", "1000 1234 50000 50001"]
    # The image's user ("1000"), no request fields.
    i = ctrs.run_ctr(pod, cfg, "i", image="grouped", command=show)
    assert both(i) == ["HOME=/home/user", "1000 50000 50001"]
    n = ctrs.run_ctr(pod, cfg, "n", image="grouped", command=show, linux=security(
        run_as_user=pb.Int64Value(value=4321), run_as_group=pb.Int64Value(value=4322)))
    assert both(n) == ["HOME=/", "4322"]
    root = ctrs.run_ctr(pod, cfg, "root", command=show)
    assert both(root) == ["HOME=/root", "0"]
    # Root by number in the image whose /etc/group lists root in "other".
    r0 = ctrs.run_ctr(pod, cfg, "r0", image="grouped", command=show, linux=security(
        run_as_user=pb.Int64Value(value=0)))
    assert both(r0) == ["HOME=/root", "0 50001"]
    # By name, with the image's HOME kept.
    byname = ctrs.run_ctr(pod, cfg, "byname", image="grouped", command=show, linux=security(
        run_as_username="nobody"))
    assert both(byname) == ["HOME=/nonexistent", "65534"]
    e = ctrs.run_ctr(pod, cfg, "e", image="grouped", command=show,
                     envs=[pb.KeyValue(key="HOME", value=b"/custom")])
    assert both(e) == ["HOME=/custom", "1000 50000 50001"]
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_resources_and_update(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, **sleeper(linux=pb.LinuxContainerConfig(
        resources=pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20, cpu_shares=512,
                                             cpu_quota=50000, cpu_period=100000))))
    # cgroup v2: cpu.weight 59 for 512 shares, cpu.max "50000 100000", memory.max.
    assert cgv.memory_limit(f"runt/{cid}") == 64 << 20
    assert cgv.cpu(f"runt/{cid}") == (cgv.shares(512), 50000, 100000)
    ctrs.rt().UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(memory_limit_in_bytes=96 << 20)),
        timeout=T)
    assert cgv.memory_limit(f"runt/{cid}") == 96 << 20
    st = ctrs.cstatus(cid)
    assert st.resources.linux.memory_limit_in_bytes == 96 << 20
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_reopen_log(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, command=["/bin/sh", "-c",
                                          "i=0; while true; do echo tick $i; i=$((i+1)); "
                                          "sleep 0.05; done"])
    log = Path(ctrs.cstatus(cid).log_path)
    time.sleep(0.3)
    log.rename(str(log) + ".1")
    ctrs.rt().ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=T)
    time.sleep(0.3)
    assert log.exists() and ctrs.log_records(log)
    assert ctrs.log_records(str(log) + ".1")[0] == ("stdout", "F", "tick 0")
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_bad_requests(ctrs):
    pod, cfg = ctrs.pod()
    rt = ctrs.rt()

    def code(fn, req):
        with pytest.raises(grpc.RpcError) as e:
            fn(req, timeout=T)
        return e.value.code(), e.value.details()

    def creq(pod_id=pod, image=ctrs.images["plain"], name="x", **kw):
        return pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=image), **kw))

    assert code(rt.CreateContainer, pb.CreateContainerRequest())[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code(rt.CreateContainer, creq(pod_id="f" * 64))[0] == grpc.StatusCode.NOT_FOUND
    assert code(rt.CreateContainer, creq(image="127.0.0.1:1/nope:1"))[0] == \
        grpc.StatusCode.NOT_FOUND
    assert code(rt.CreateContainer, creq(name="../x"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    for m in (pb.Mount(container_path="../etc", host_path="/tmp"),
              pb.Mount(container_path="/a/../../etc", host_path="/tmp"),
              pb.Mount(container_path="/x", host_path="relative")):
        assert code(rt.CreateContainer, creq(mounts=[m]))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert code(rt.CreateContainer, creq(working_dir="../w"))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code(rt.CreateContainer, creq(envs=[pb.KeyValue(key="A", value=b"x\ny")]))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code(rt.CreateContainer, creq(linux=security(run_as_username="nosuchuser")))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    # Control characters would end an LXC config line (liblxc takes \r as one too).
    pwned = Path(f"/tmp/runt-e2e-pwned-{os.getpid()}")
    hook = f"\rlxc.hook.pre-start = /bin/touch {pwned}"
    for bad in (creq(envs=[pb.KeyValue(key="A", value=("x" + hook).encode())]),
                creq(working_dir="/w" + hook),
                creq(linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
                    cpuset_cpus="0\n" + hook.strip())))):
        assert code(rt.CreateContainer, bad)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert not pwned.exists()
    # Nothing of the refused ones is left, and the name is free.
    assert ctrs.clist() == [] and sorted(ctrs.lxc_dirs()) == [pod]
    cid = ctrs.create(pod, cfg, "x")
    c, msg = code(rt.CreateContainer, creq())
    assert c == grpc.StatusCode.ALREADY_EXISTS and cid in msg
    # An id of any other form names nothing, as an unknown one (containerd's answer too).
    assert code(rt.StartContainer, pb.StartContainerRequest(container_id="nothex"))[0] == \
        grpc.StatusCode.NOT_FOUND
    for fn, req in ((rt.ContainerStatus, pb.ContainerStatusRequest(container_id="")),
                    (rt.ExecSync, pb.ExecSyncRequest(container_id=cid, cmd=[]))):
        assert code(fn, req)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert code(rt.ContainerStatus, pb.ContainerStatusRequest(container_id="e" * 64))[0] == \
        grpc.StatusCode.NOT_FOUND
    ctrs.start(cid)
    assert code(rt.StartContainer, pb.StartContainerRequest(container_id=cid))[0] != \
        grpc.StatusCode.OK
    ctrs.remove(pod)
    assert ctrs.clist() == [] and ctrs.leftovers() == EMPTY_CTRS


def test_image_layers_kept_while_a_container_uses_them(ctrs):
    pod, cfg = ctrs.pod()
    ref = ctrs.images["entry"]
    img = ctrs.d.image().ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)),
                                     timeout=T).image
    cid = ctrs.create(pod, cfg, "e", image="entry", command=["/bin/sh", "-c", "cat /etc/hostname"])
    layers = sorted(os.listdir(ctrs.d.root_dir / "layers"))
    ctrs.d.image().RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=img.id)),
                               timeout=T)
    assert sorted(os.listdir(ctrs.d.root_dir / "layers")) == layers
    ctrs.start(cid)
    assert ctrs.wait_exit(cid).exit_code == 0
    ctrs.crm(cid)
    assert len(os.listdir(ctrs.d.root_dir / "layers")) < len(layers)
    ctrs.remove(pod)
    ctrs.d.image().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=T)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_restart_and_crash_recovery(ctrs):
    pod, cfg = ctrs.pod()
    long = ctrs.run_ctr(pod, cfg, "long", **sleeper())
    short = ctrs.run_ctr(pod, cfg, "short", command=["/bin/sh", "-c", "sleep 1.5; exit 7"])
    created = ctrs.create(pod, cfg, "later", **sleeper())
    ctrs.d.kill()  # SIGKILL
    time.sleep(2.5)  # short exits while runtd is down
    ctrs.d.start()
    st = ctrs.cstatus(long)
    assert st.state == pb.CONTAINER_RUNNING
    assert ctrs.exec(long, ["echo", "alive"]).stdout == b"alive\n"
    st = ctrs.cstatus(short)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 7 and st.reason == "Error"
    assert ctrs.cstatus(created).state == pb.CONTAINER_CREATED
    ctrs.start(created)
    assert ctrs.cstatus(created).state == pb.CONTAINER_RUNNING
    # A clean stop of runtd leaves them running too.
    ctrs.d.stop()
    ctrs.d.start()
    assert ctrs.cstatus(long).state == pb.CONTAINER_RUNNING
    ctrs.cstop(long)
    assert ctrs.cstatus(long).exit_code == 0
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_fifty_pods_concurrently_leave_nothing(ctrs):
    before = ctrs.leftovers()
    errors = []

    def one(i):
        try:
            pod, cfg = ctrs.pod(f"m{i}")
            cid = ctrs.run_ctr(pod, cfg, "c", **sleeper())
            assert ctrs.exec(cid, ["echo", str(i)]).stdout == f"{i}\n".encode()
            ctrs.cstop(cid, timeout=5)
            ctrs.crm(cid)
            ctrs.stop(pod)
            ctrs.remove(pod)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"pod {i}: {e!r}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert ctrs.list() == [] and ctrs.clist() == []
    assert ctrs.leftovers() == before == EMPTY_CTRS


def test_cgroup_parents_runt_made_are_removed_with_their_last_pod(ctrs):
    parent = f"runt-e2e-{os.getpid()}/pods"
    top = Path("/sys/fs/cgroup/memory") / parent.split("/")[0]
    assert not top.exists()
    cfgs = [ctrs.config(f"cg{i}", linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent))
            for i in range(2)]
    pods = [ctrs.run(c) for c in cfgs]
    cid = ctrs.run_ctr(pods[0], cfgs[0], "c", **sleeper())
    assert (Path("/sys/fs/cgroup/memory") / parent / cid).is_dir()
    assert (Path("/sys/fs/cgroup/memory") / parent / pods[1]).is_dir()
    ctrs.remove(pods[0])
    assert top.exists()  # the other pod is still in it
    ctrs.remove(pods[1])
    assert not any((Path("/sys/fs/cgroup") / h / parent.split("/")[0]).exists()
                   for h in os.listdir("/sys/fs/cgroup"))
    assert ctrs.leftovers() == EMPTY_CTRS


def test_cgroup_parent_is_validated_by_runt(ctrs):
    """cgroup_parent must be a clean cgroup path: INVALID_ARGUMENT naming the field, before
    anything is made. The systemd driver's slice name is one plain component."""
    for bad in ("../../..", "/kubepods/../../x", "a//b", "a/./b", "kubepods/", "a b", "x;y"):
        cfg = ctrs.config("bad", linux=pb.LinuxPodSandboxConfig(cgroup_parent=bad))
        with pytest.raises(grpc.RpcError) as e:
            ctrs.run(cfg)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert "cgroup_parent" in e.value.details(), e.value.details()
    assert ctrs.list() == [] and ctrs.lxc_dirs() == []
    slice_ = f"runt-e2e-{os.getpid()}-burstable-pod0b2f3c4d_1e2f.slice"
    cfg = ctrs.config("sd", linux=pb.LinuxPodSandboxConfig(cgroup_parent=slice_))
    pod = ctrs.run(cfg)
    assert (Path("/sys/fs/cgroup/memory") / slice_ / pod).is_dir()
    ctrs.remove(pod)
    assert not (Path("/sys/fs/cgroup/memory") / slice_).exists()
    assert ctrs.leftovers() == EMPTY_CTRS


def test_tty_devices_privileged_and_host_namespaces(ctrs, tmp_path):
    pod, cfg = ctrs.pod()
    # tty: one stream, on a pty, logged as stdout.
    t = ctrs.run_ctr(pod, cfg, "tty", tty=True,
                     command=["/bin/sh", "-c", "test -t 1 && echo on-a-tty; echo err >&2"])
    ctrs.wait_exit(t)
    recs = ctrs.log_records(ctrs.cstatus(t).log_path)
    assert ("stdout", "F", "on-a-tty") in recs and ("stdout", "F", "err") in recs, recs
    # A device, with the device cgroup letting it through.
    d = ctrs.run_ctr(pod, cfg, "dev", **sleeper(devices=[
        pb.Device(container_path="/dev/my-null", host_path="/dev/null", permissions="rwm")]))
    r = ctrs.exec(d, ["sh", "-c", "echo x > /dev/my-null && stat -c %t:%T /dev/my-null"])
    assert r.exit_code == 0 and r.stdout == b"1:3\n", r
    # Not listed: the device cgroup refuses it even with CAP_MKNOD.
    r = ctrs.exec(d, ["sh", "-c", "busybox mknod /tmp/mem c 1 1 && cat /tmp/mem"])
    assert r.exit_code != 0 and b"not permitted" in r.stderr, r
    # Privileged: every capability, no seccomp.
    p = ctrs.run_ctr(pod, cfg, "priv", **sleeper(linux=security(privileged=True)))
    assert status_field(ctrs, p, "Seccomp") == "0"
    assert cap_eff(ctrs, p) == int(Path("/proc/self/status").read_text().split("CapEff:")[1]
                                   .split()[0], 16)
    ctrs.remove(pod)
    # hostPID: the container sees the host's processes.
    hp, hcfg = ctrs.pod("hostpid", linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(pid=pb.NODE))))
    c = ctrs.run_ctr(hp, hcfg, "c", **sleeper(linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(
            namespace_options=pb.NamespaceOption(pid=pb.NODE)))))
    assert str(os.getpid()).encode() in ctrs.exec(c, ["ls", "/proc"]).stdout.split()
    ctrs.remove(hp)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_mount_propagation_host_to_container(ctrs, tmp_path):
    import subprocess
    vol = tmp_path / "prop"
    vol.mkdir()
    subprocess.run(["mount", "--bind", str(vol), str(vol)], check=True)
    subprocess.run(["mount", "--make-shared", str(vol)], check=True)
    try:
        pod, cfg = ctrs.pod()
        c = ctrs.run_ctr(pod, cfg, "c", **sleeper(mounts=[
            pb.Mount(container_path="/vol", host_path=str(vol), readonly=True,
                     propagation=pb.PROPAGATION_HOST_TO_CONTAINER)]))
        (vol / "sub").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(vol / "sub")], check=True)
        (vol / "sub" / "late").write_text("mounted after start\n")
        assert ctrs.exec(c, ["cat", "/vol/sub/late"]).stdout == b"mounted after start\n"
        r = ctrs.exec(c, ["touch", "/vol/x"])
        assert r.exit_code != 0  # read-only
        subprocess.run(["umount", str(vol / "sub")], check=True)
        ctrs.remove(pod)
    finally:
        subprocess.run(["umount", "-R", str(vol)], check=False)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_writable_layers_count_in_image_fs_info(ctrs):
    def used():
        [c] = fresh_fs_info(ctrs.d.image()).container_filesystems
        return c.used_bytes.value

    pod, cfg = ctrs.pod()
    before = used()
    cid = ctrs.run_ctr(pod, cfg, **sleeper())
    assert ctrs.exec(cid, ["sh", "-c", "head -c 3000000 /dev/zero > /big"]).exit_code == 0
    assert used() >= before + 3000000
    assert (ctrs.d.root_dir / "containers" / cid / "upper" / "big").is_file()
    ctrs.remove(pod)
    assert not (ctrs.d.root_dir / "containers" / cid).exists()
    assert used() < before + 3000000
    assert ctrs.leftovers() == EMPTY_CTRS


def test_long_lines_are_logged_in_partial_records(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, command=[
        "/bin/sh", "-c", "head -c 40000 /dev/zero | tr '\\0' a; echo; echo short"])
    ctrs.wait_exit(cid)
    recs = ctrs.log_records(ctrs.cstatus(cid).log_path)
    assert [(s, t, len(m)) for s, t, m in recs] == [
        ("stdout", "P", 16384), ("stdout", "P", 16384), ("stdout", "F", 40000 - 2 * 16384),
        ("stdout", "F", 5)], [(s, t, len(m)) for s, t, m in recs]
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


BECTL = Path(os.environ.get("RUNT_BECTL", Path(os.environ.get("RUNTD", "build/dev/cri/runtd"))
                            .resolve().parent.parent / "test" / "tools" / "runt-bectl"))


def test_streaming_exec_backend(ctrs):
    """The backend half of CRI Exec (the streaming server is issue 7): stdin, tty, streams,
    exit code, through runt-bectl, a test driver of be_exec_stream."""
    import subprocess
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, **sleeper())

    def bectl(*args, data=b""):
        return subprocess.run([str(BECTL), "--root", str(ctrs.d.root_dir), *args], input=data,
                              capture_output=True, timeout=T)

    r = bectl("--stdin", "exec", cid, "cat", data=b"hello\nworld\n")
    assert (r.returncode, r.stdout) == (0, b"hello\nworld\n"), r
    r = bectl("exec", cid, "/bin/sh", "-c", "echo o; echo e >&2; exit 4")
    assert (r.returncode, r.stdout, r.stderr) == (4, b"o\n", b"e\n"), r
    r = bectl("--tty", "exec", cid, "/bin/sh", "-c", "test -t 0 && test -t 1 && echo on-tty; exit 3")
    assert r.returncode == 3 and b"on-tty" in r.stdout, r
    r = bectl("exec", cid, "/no/such")
    assert r.returncode == 127, r
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_image_symlinks_stay_inside_the_rootfs(ctrs, tmp_path):
    pod, cfg = ctrs.pod()
    vol = tmp_path / "v"
    vol.mkdir()
    (vol / "token").write_text("secret\n")
    marker = f"runt-e2e-{os.getpid()}"
    assert not Path("/etc", marker).exists()
    for ro in (False, True):
        cid = ctrs.run_ctr(pod, cfg, f"l{int(ro)}", image="links", **sleeper(
            linux=security(readonly_rootfs=ro),
            mounts=[pb.Mount(container_path="/var/run/secrets/sa", host_path=str(vol)),
                    pb.Mount(container_path=f"/escape/{marker}", host_path=str(vol))]))
        # /var/run is still the image's symlink, the mount is where it leads.
        assert ctrs.exec(cid, ["busybox", "readlink", "/var/run"]).stdout == b"../run\n"
        assert ctrs.exec(cid, ["cat", "/run/secrets/sa/token"]).stdout == b"secret\n"
        assert ctrs.exec(cid, ["cat", f"/etc/{marker}/token"]).stdout == b"secret\n"
        assert not Path("/etc", marker).exists()  # the host's /etc was not touched
    # /etc/passwd is a link to the host's /etc/shadow: runtd does not read it.
    with pytest.raises(grpc.RpcError) as e:
        ctrs.create(pod, cfg, "byname", image="links",
                    linux=security(run_as_username="root"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_stop_checks_pid1_is_still_the_container_init(ctrs):
    """The monitor records PID 1's start time; a pid whose start time differs (a reused
    number) is never signalled: here the record is forged, so the TERM the process would
    exit 0 on is not sent and only the cgroup kill ends it."""
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, **sleeper())
    started = ctrs.d.root_dir / "lxc" / cid / "started"
    pid, ns, start = started.read_text().split()
    assert int(start) > 0
    started.write_text(f"{pid} {ns} {int(start) + 1}\n")
    ctrs.cstop(cid, timeout=5)
    assert ctrs.cstatus(cid).exit_code == 137
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def wait_log(ctrs, name, text, timeout=30):
    path = ctrs.logs / "p" / f"{name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {path}")


@pytest.mark.valgrind
def test_exit_codes_exact_while_polled(ctrs):
    """Short containers exit, each with a code of its own, while ContainerStatus is asked
    for them without pause from several threads. Each must report its own code: a status
    read that found no exit file yet and then the monitor gone once reported 255, and the
    kubelet's view of an exit is final."""
    pod, cfg = ctrs.pod()
    codes = [0, 1, 3, 255, 2, 42, 126, 127, 128, 254] * 4  # bounded: 40 containers
    got, errors = {}, []

    def poll(cid, want):
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                st = ctrs.cstatus(cid)
                if st.state == pb.CONTAINER_EXITED:
                    got[cid] = (want, st.exit_code, st.reason, st.message)
                    return
        except grpc.RpcError as e:
            errors.append(e)

    for first in range(0, len(codes), 4):
        batch = []
        for i, code in enumerate(codes[first:first + 4]):
            # A moment of sleep, so that the exit falls while the pollers ask.
            cid = ctrs.create(pod, cfg, f"x{first + i}",
                              command=["/bin/sh", "-c", f"sleep 0.{i + 1}; exit {code}"])
            batch.append((cid, code))
        ts = [threading.Thread(target=poll, args=b) for b in batch for _ in range(2)]
        for cid, _ in batch:
            ctrs.start(cid)
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for cid, _ in batch:
            ctrs.crm(cid)
    assert errors == []
    wrong = [v for v in got.values() if v[0] != v[1]]
    assert len(got) == len(codes)
    assert wrong == [], f"{len(wrong)} of {len(codes)} wrong: {wrong}"
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def proc1_cmdline(ctrs, cid):
    return ctrs.exec(cid, ["cat", "/proc/1/cmdline"]).stdout


def test_pid1_is_the_command(ctrs):
    """With a pid namespace of its own (CONTAINER, what the kubelet asks for by default)
    the container's command is PID 1 itself, as with runc: its /proc/1/cmdline is the
    command, and it gets only the signals it handles."""
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, command=["/bin/sleep", "1000"])
    assert proc1_cmdline(ctrs, cid) == b"/bin/sleep\x001000\x00"
    # Nothing but PID 1 and the ps of the exec; execs leave no zombie behind.
    for _ in range(3):
        assert ctrs.exec(cid, ["true"]).exit_code == 0
    ps = ctrs.exec(cid, ["ps", "-o", "pid,stat,args"]).stdout.decode().splitlines()[1:]
    assert [l.split()[0] for l in ps if "ps -o" not in l] == ["1"], ps
    assert not any(l.split()[1].startswith("Z") for l in ps), ps
    # No SIGTERM handler: a pid namespace's init ignores SIGTERM, so the stop waits out
    # the grace period and SIGKILLs it: 137.
    t0 = time.monotonic()
    ctrs.cstop(cid, timeout=2)
    took = time.monotonic() - t0
    st = ctrs.cstatus(cid)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137, st
    assert st.reason == "Error" and 1.9 < took < 5, (st, took)
    # A trapped SIGTERM ends it at once, with the code of its own.
    c2 = ctrs.run_ctr(pod, cfg, "c2", command=["/bin/sh", "-c", "trap 'exit 7' TERM; " + READY])
    trapped(ctrs, c2)
    assert proc1_cmdline(ctrs, c2).startswith(b"/bin/sh\x00-c\x00trap 'exit 7' TERM; ")
    t0 = time.monotonic()
    ctrs.cstop(c2, timeout=10)
    st = ctrs.cstatus(c2)
    assert time.monotonic() - t0 < 2 and st.exit_code == 7 and st.reason == "Error", st
    # Its exit code is the container's, exactly.
    for code in (0, 1, 3, 255):
        c = ctrs.run_ctr(pod, cfg, f"e{code}", command=["/bin/sh", "-c", f"exit {code}"])
        st = ctrs.wait_exit(c)
        assert st.exit_code == code, st
        assert st.reason == ("Completed" if code == 0 else "Error"), st
    # A command that is not there: 127, and why in the container's log.
    c = ctrs.run_ctr(pod, cfg, "missing", command=["/no/such/program"])
    st = ctrs.wait_exit(c)
    assert st.exit_code == 127, st
    assert any("/no/such/program" in m for _, _, m in ctrs.log_records(st.log_path))
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_signal_deaths_in_a_shared_pid_namespace(ctrs):
    """In the pod's pid namespace the process is not PID 1: a signal without a handler
    kills it, and the exit code is 128+signal, as runc and containerd report. A death by
    SIGHUP must not look to liblxc like a reboot request (it would start the container
    again)."""
    pod, cfg = ctrs.pod(linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(pid=pb.POD))))
    shared = pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        namespace_options=pb.NamespaceOption(pid=pb.POD)))
    for sig, code in (("HUP", 129), ("KILL", 137), ("USR1", 138), ("TERM", 143)):
        c = ctrs.run_ctr(pod, cfg, f"k{sig}", linux=shared,
                         command=["/bin/sh", "-c", f"echo ran; kill -{sig} $$; sleep 5"])
        st = ctrs.wait_exit(c)
        assert st.exit_code == code, (sig, st)
        time.sleep(0.2)
        assert ctrs.cstatus(c).exit_code == code
        assert [m for _, _, m in ctrs.log_records(st.log_path)] == ["ran"], sig
    # No handler for the stop signal: it ends at once, 143.
    c = ctrs.run_ctr(pod, cfg, "stopped", linux=shared, command=["/bin/sleep", "1000"])
    t0 = time.monotonic()
    ctrs.cstop(c, timeout=10)
    st = ctrs.cstatus(c)
    assert time.monotonic() - t0 < 2 and st.exit_code == 143, st
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def tree_size(top):
    """Bytes in the files under @top."""
    return sum(p.lstat().st_size for p in Path(top).rglob("*")
               if p.is_file() and not p.is_symlink())


def test_pod_files_live_on_disk_not_in_run_dir(ctrs):
    """/etc/hosts, /etc/hostname and /etc/resolv.conf are the pod's files, bind-mounted
    writable as containerd has them (read-only with a read-only rootfs). They live under
    root_dir: a container appending to one grows nothing under run_dir, a small tmpfs."""
    pod, cfg = ctrs.pod(hostname="files-0")
    pd = ctrs.d.root_dir / "pods" / pod
    assert sorted(os.listdir(pd)) == ["hostname", "hosts", "resolv.conf"]
    assert not (ctrs.d.run_dir / "pods").exists()
    cid = ctrs.run_ctr(pod, cfg, **sleeper())
    assert ctrs.exec(cid, ["cat", "/etc/hostname"]).stdout == b"files-0\n"
    before = tree_size(ctrs.d.run_dir)
    r = ctrs.exec(cid, ["/bin/sh", "-c",
                        "busybox dd if=/dev/zero bs=1M count=20 >> /etc/hosts"], timeout=30)
    assert r.exit_code == 0, r
    assert (pd / "hosts").stat().st_size >= 20 << 20
    assert tree_size(ctrs.d.run_dir) - before < 64 << 10, "run_dir grew"
    ro = ctrs.run_ctr(pod, cfg, "ro", **sleeper(linux=security(readonly_rootfs=True)))
    assert ctrs.exec(ro, ["/bin/sh", "-c", "echo x >> /etc/hosts"]).exit_code != 0
    assert ctrs.exec(ro, ["/bin/sh", "-c", "echo x >> /etc/resolv.conf"]).exit_code != 0
    ctrs.remove(pod)
    assert not pd.exists() and ctrs.leftovers() == EMPTY_CTRS


def test_pod_files_an_older_runtd_kept_in_run_dir(ctrs):
    """A pod made by an older runtd has its files in <run_dir>/pods/<id>: its containers
    still get them, and removal takes them away; files of pods the store does not know are
    swept at start, in both places."""
    pod, cfg = ctrs.pod(hostname="old-0")
    new, old = ctrs.d.root_dir / "pods" / pod, ctrs.d.run_dir / "pods" / pod
    ctrs.d.stop()
    old.parent.mkdir(parents=True)
    shutil.move(new, old)
    orphans = [top / ("e" * 64) for top in (new.parent, old.parent)]
    for o in orphans:
        o.mkdir()
        (o / "hosts").write_text("x\n")
    ctrs.d.start()
    assert not any(o.exists() for o in orphans)
    cid = ctrs.run_ctr(pod, cfg, **sleeper())
    assert ctrs.exec(cid, ["cat", "/etc/hostname"]).stdout == b"old-0\n"
    assert not new.exists()
    ctrs.remove(pod)
    assert not old.exists() and not new.exists()
    assert ctrs.leftovers() == EMPTY_CTRS


def test_log_paths_through_symlinks_are_not_followed(ctrs, tmp_path):
    """The CRI log and the directories made for it are opened without following symlinks,
    at start and at ReopenContainerLog: nothing is made or written where one leads."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = dict(command=["/bin/sh", "-c", "while true; do echo tick; sleep 0.05; done"])

    def refused(pod, cfg, name, **kw):
        cid = ctrs.create(pod, cfg, name, **kw, **cmd)
        with pytest.raises(grpc.RpcError) as e:
            ctrs.start(cid)
        assert "no symlinks followed" in e.value.details(), e.value.details()
        ctrs.crm(cid)

    # The pod's log directory itself a symlink.
    (ctrs.logs / "linked").symlink_to(elsewhere)
    pod, cfg = ctrs.pod("linked")
    refused(pod, cfg, "a")
    ctrs.remove(pod)
    # A directory in log_path a symlink, and the log file a symlink.
    pod, cfg = ctrs.pod("p")
    (ctrs.logs / "p").mkdir()
    (ctrs.logs / "p" / "sub").symlink_to(elsewhere)
    refused(pod, cfg, "b", log_path="sub/deeper/b.log")
    (ctrs.logs / "p" / "c.log").symlink_to(elsewhere / "c.log")
    refused(pod, cfg, "c", log_path="c.log")
    # The file replaced by a symlink before a reopen: the shim does not write through it.
    cid = ctrs.run_ctr(pod, cfg, "d", **cmd)
    log = Path(ctrs.cstatus(cid).log_path)
    time.sleep(0.2)
    log.rename(str(log) + ".1")
    log.symlink_to(elsewhere / "d.log")
    with pytest.raises(grpc.RpcError):
        ctrs.rt().ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=T)
    time.sleep(0.3)
    assert list(elsewhere.iterdir()) == []
    # A proper file again: the next reopen writes there.
    log.unlink()
    ctrs.rt().ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=T)
    time.sleep(0.3)
    assert ctrs.log_records(log)
    ctrs.remove(pod)
    assert list(elsewhere.iterdir()) == []
    assert ctrs.leftovers() == EMPTY_CTRS


def test_mount_targets_in_proc_or_sys_are_refused_at_create(ctrs, tmp_path):
    """A mount point in /proc or /sys, named so or reached through an image symlink, is
    INVALID_ARGUMENT at CreateContainer with runt's message (LXC mounts the kernel's
    filesystems there); the host path is not made. Mounts in /dev, where the kubelet puts
    /dev/termination-log, and ones on paths the kernel's sysfs has, go on working."""
    pod, cfg = ctrs.pod()
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("f\n")
    never = tmp_path / "never"
    for image, target, says in (("plain", "/proc/x", "is in /proc"),
                                ("plain", "/proc", "is in /proc"),
                                ("plain", "/sys/runt-e2e-x", "is in /sys"),
                                ("links", "/kproc/y", "resolves to '/proc/y'"),
                                ("links", "/etc/ksys/z", "resolves to '/sys/kernel/z'")):
        with pytest.raises(grpc.RpcError) as e:
            ctrs.create(pod, cfg, "k", image=image, **sleeper(
                mounts=[pb.Mount(container_path=target, host_path=str(never))]))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, target
        assert "mounts[0]" in e.value.details() and says in e.value.details(), \
            e.value.details()
        assert not never.exists()
    assert ctrs.clist() == [] and sorted(ctrs.lxc_dirs()) == [pod]
    term = tmp_path / "termination-log"
    term.write_text("")
    ok = [pb.Mount(container_path="/dev/termination-log", host_path=str(term)),
          pb.Mount(container_path="/dev/vol", host_path=str(vol)),
          # runc's lxcfs exception; a dir of the kernel's sysfs, as bpffs for CNI agents.
          pb.Mount(container_path="/proc/uptime", host_path=str(vol / "f"))]
    if Path("/sys/fs/bpf").is_dir():
        ok.append(pb.Mount(container_path="/sys/fs/bpf", host_path=str(vol)))
    cid = ctrs.run_ctr(pod, cfg, "dev", **sleeper(mounts=ok))
    assert ctrs.exec(cid, ["cat", "/dev/vol/f"]).stdout == b"f\n"
    assert ctrs.exec(cid, ["cat", "/proc/uptime"]).stdout == b"f\n"
    if Path("/sys/fs/bpf").is_dir():
        assert ctrs.exec(cid, ["cat", "/sys/fs/bpf/f"]).stdout == b"f\n"
    assert ctrs.exec(cid, ["sh", "-c", "echo done > /dev/termination-log"]).exit_code == 0
    assert term.read_text() == "done\n"
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS

