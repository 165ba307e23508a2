"""Requests shaped as the kubelet and the CRI conformance suite send them, end to end on the
LXC backend: long names and no hostname, port mappings without a host port, sysctls, a pod
cgroup the kubelet made, /dev/termination-log, read-only and masked paths, bidirectional
mounts, and the values a client may get wrong. Each test checks what is left on the host."""

import os
import socket
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from conftest import pb
from test_containers import EMPTY_CTRS, Ctrs, images, sleeper  # noqa: F401 (fixture)
from test_lxc_sandbox import pause_pids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")
T = 60
# critest's pod names: a prefix and a UUID, 68 characters.
LONG = "podsandbox-for-hostname-test-" + "0123456789abcdef0123456789abcdef0123456"


@pytest.fixture
def ctrs(runtd_factory, tmp_path, images):  # noqa: F811
    c = Ctrs(runtd_factory, tmp_path, images)
    yield c
    c.cleanup()


def code(fn, req):
    try:
        fn(req, timeout=T)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def pause_of(ctrs):
    [pid] = pause_pids(ctrs.d.root_dir)
    return pid


def nsenter(pid, flags, *argv):
    return subprocess.run(["nsenter", "-t", str(pid), *flags, *argv], capture_output=True,
                          text=True, timeout=T, check=True).stdout.strip()


def out(ctrs, cid, cmd):
    r = ctrs.exec(cid, cmd)
    assert r.exit_code == 0, (cmd, r)
    return r.stdout.decode().strip()


def test_no_hostname_and_a_long_name(ctrs):
    """No hostname (critest's and any kubelet pod without spec.hostname set by it): the
    node's, as containerd gives; the 68-character pod name is no host name."""
    assert len(LONG) == 68
    pod, cfg = ctrs.pod(LONG)
    assert nsenter(pause_of(ctrs), ["-u"], "hostname") == socket.gethostname()
    cid = ctrs.run_ctr(pod, cfg, "c", **sleeper())
    assert out(ctrs, cid, ["cat", "/proc/sys/kernel/hostname"]) == socket.gethostname()
    assert out(ctrs, cid, ["cat", "/etc/hostname"]) == socket.gethostname()
    assert out(ctrs, cid, ["sh", "-c", "echo $HOSTNAME"]) == socket.gethostname()
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_hostname_limits(ctrs):
    ok = "h" * 63
    pod, cfg = ctrs.pod("host63", hostname=ok)
    assert nsenter(pause_of(ctrs), ["-u"], "hostname") == ok
    ctrs.stop(pod)
    ctrs.remove(pod)
    c, msg = code(ctrs.rt().RunPodSandbox, pb.RunPodSandboxRequest(
        config=ctrs.config("host64", hostname="h" * 64, log_directory=str(ctrs.logs))))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "63" in msg, msg
    assert ctrs.leftovers() == EMPTY_CTRS


def test_port_mappings_without_host_port(ctrs):
    """The kubelet sends a mapping for every declared containerPort, host_port 0 for most:
    not host ports, so not portmap's; one with a host port still is."""
    nat = lambda: subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True,  # noqa
                                 text=True, check=True).stdout
    ports = [pb.PortMapping(protocol=pb.TCP, container_port=80),
             pb.PortMapping(protocol=pb.UDP, container_port=53),
             pb.PortMapping(protocol=pb.TCP, container_port=8080, host_port=30188)]
    pod, cfg = ctrs.pod("ports", port_mappings=ports)
    assert ctrs.status(pod).status.state == pb.SANDBOX_READY
    rules = nat()
    assert "--dport 30188" in rules and "--dport 80 " not in rules
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert "--dport 30188" not in nat()
    assert ctrs.leftovers() == EMPTY_CTRS


def test_cni_errors_name_the_network(ctrs):
    ctrs.write_conf(plugins=[{"type": "bridge", "bridge": ctrs.bridge,
                              "ipam": {"type": "host-local", "ranges": "not-a-list"}}])
    c, msg = code(ctrs.rt().RunPodSandbox, pb.RunPodSandboxRequest(config=ctrs.config("n")))
    assert c != grpc.StatusCode.OK and "network e2e-pods" in msg and "?" not in msg, msg
    ctrs.write_conf()
    assert ctrs.leftovers() == EMPTY_CTRS


def test_namespaced_sysctls(ctrs):
    sysctls = {"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "17",
               "kernel.msgmax": "8193", "net.ipv4.ip_unprivileged_port_start": "22",
               "net/ipv4/conf/all/forwarding": "0"}
    host = {k: Path("/proc/sys/" + k.replace(".", "/")).read_text()
            for k in ("kernel.shm_rmid_forced", "fs.mqueue.msg_max", "kernel.msgmax")}
    pod, cfg = ctrs.pod("sysctl", linux=pb.LinuxPodSandboxConfig(sysctls=sysctls))
    cid = ctrs.run_ctr(pod, cfg, "c", **sleeper())
    for k, v in sysctls.items():
        path = "/proc/sys/" + (k if "/" in k else k.replace(".", "/"))
        assert out(ctrs, cid, ["cat", path]) == v, k
    # The host's own values did not move.
    for k, v in host.items():
        assert Path("/proc/sys/" + k.replace(".", "/")).read_text() == v, k
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


@pytest.mark.parametrize("sysctls,host_net,word", [
    ({"kernel.core_pattern": "|/tmp/x"}, False, "kernel.core_pattern"),
    ({"vm.overcommit_memory": "1"}, False, "vm.overcommit_memory"),
    ({"net.ipv4.ip_forward": "0"}, True, "host"),
    ({"kernel/../../x": "1"}, False, "not a sysctl name"),
    ({"kernel.shmmax": "1\nkernel.core_pattern=x"}, False, "one line"),
    ({"net.ipv4.conf.nosuchif0.rp_filter": "1"}, False, "does not exist"),
])
def test_sysctls_refused(ctrs, sysctls, host_net, word):
    """Not namespaced, or of a namespace shared with the host: refused before anything
    touches the host."""
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    linux = pb.LinuxPodSandboxConfig(sysctls=sysctls)
    if host_net:
        linux.security_context.namespace_options.network = pb.NODE
    c, msg = code(ctrs.rt().RunPodSandbox, pb.RunPodSandboxRequest(
        config=ctrs.config("bad", linux=linux, log_directory=str(ctrs.logs))))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and word in msg, msg
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before
    assert ctrs.leftovers() == EMPTY_CTRS


def kubelet_cgroup(uid, make):
    """kubepods/burstable/pod<uid> on every hierarchy, made as the kubelet's cgroupfs driver
    makes it on cgroup v1 (cpuset.cpus and mems copied from the parent, clone_children as
    the kernel leaves it) when @make; returns its path relative to the hierarchies."""
    rel = f"kubepods/burstable/pod{uid}"
    if not make:
        return rel
    for base in Path("/sys/fs/cgroup").iterdir():
        p = base
        for part in rel.split("/"):
            parent, p = p, p / part
            p.mkdir(exist_ok=True)
            if base.name == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not (p / f).read_text().strip():
                        (p / f).write_text((parent / f).read_text().strip())
    return rel


def rm_cgroup_tree(name):
    """Removes cgroup @name and all below it on every hierarchy, deepest first."""
    for base in Path("/sys/fs/cgroup").iterdir():
        top = base / name
        if top.is_dir():
            for d in sorted((x for x in top.rglob("*") if x.is_dir()), key=lambda x: -len(x.parts)):
                d.rmdir()
            top.rmdir()


def rm_kubelet_cgroups():
    rm_cgroup_tree("kubepods")


@pytest.mark.parametrize("made", [True, False], ids=["kubelet-made", "absent"])
def test_kubelet_pod_cgroup(ctrs, made):
    assert not Path("/sys/fs/cgroup/memory/kubepods").exists(), "a kubelet runs here"
    try:
        rel = kubelet_cgroup("a1b2", made)
        pod, cfg = ctrs.pod("cg", linux=pb.LinuxPodSandboxConfig(cgroup_parent="/" + rel))
        cid = ctrs.run_ctr(pod, cfg, "c", **sleeper())
        for ctrl in ("memory", "cpuset", "pids"):
            assert (Path("/sys/fs/cgroup") / ctrl / rel / cid).is_dir(), ctrl
        assert (Path("/sys/fs/cgroup/cpuset") / rel / cid / "cpuset.cpus").read_text().strip()
        assert "memory" in out(ctrs, cid, ["cat", "/proc/self/cgroup"])
        ctrs.stop(pod)
        ctrs.remove(pod)
        # The kubelet's cgroups are the kubelet's; runt's own below them are gone.
        mem = Path("/sys/fs/cgroup/memory") / rel
        assert mem.is_dir() == made
        if made:
            assert [d for d in mem.iterdir() if d.is_dir()] == []
        assert ctrs.leftovers() == EMPTY_CTRS
    finally:
        ctrs.cleanup()
        rm_kubelet_cgroups()


def test_termination_log_under_dev(ctrs, tmp_path):
    """Every kubelet container has /dev/termination-log, a file bind-mounted from the host;
    a directory under /dev works as well."""
    tlog = tmp_path / "termination-log"
    tlog.write_text("")
    ddir = tmp_path / "devdir"
    ddir.mkdir()
    (ddir / "f").write_text("in-dir\n")
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, "c", command=["/bin/sh", "-c",
                                                "echo bye > /dev/termination-log; "
                                                "cat /dev/extra/f; ls /dev/null >/dev/null"],
                       mounts=[pb.Mount(container_path="/dev/termination-log",
                                        host_path=str(tlog)),
                               pb.Mount(container_path="/dev/extra", host_path=str(ddir),
                                        readonly=True)])
    st = ctrs.wait_exit(cid)
    assert st.exit_code == 0, ctrs.log_records(st.log_path)
    assert tlog.read_text() == "bye\n"
    assert ("stdout", "F", "in-dir") in ctrs.log_records(st.log_path)
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_readonly_and_masked_image_paths(ctrs):
    pod, cfg = ctrs.pod()
    sc = pb.LinuxContainerSecurityContext(readonly_paths=["/tmp", "/proc/bus"],
                                          masked_paths=["/etc/passwd", "/data", "/proc/kcore"])
    cid = ctrs.run_ctr(pod, cfg, "c", linux=pb.LinuxContainerConfig(security_context=sc),
                       **sleeper())
    r = ctrs.exec(cid, ["touch", "/tmp/test"])
    assert r.exit_code != 0 and r.stderr == b"touch: /tmp/test: Read-only file system\n", r
    assert ctrs.exec(cid, ["touch", "/root-is-writable"]).exit_code == 0
    assert out(ctrs, cid, ["cat", "/etc/passwd"]) == ""
    assert out(ctrs, cid, ["ls", "-A", "/data"]) == ""
    assert ctrs.exec(cid, ["touch", "/data/x"]).exit_code != 0
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def bound_dir(tmp_path, name="mnt", propagation="--make-rshared"):
    """A dir bind-mounted on itself with @propagation, as a volume's source."""
    src = tmp_path / name
    src.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    subprocess.run(["mount", propagation, str(src)], check=True)
    return src


def umount_all(path):
    subprocess.run(["umount", "-R", "-l", str(path)], check=False)


@pytest.mark.parametrize("prop", [pb.PROPAGATION_BIDIRECTIONAL, pb.PROPAGATION_HOST_TO_CONTAINER,
                                  pb.PROPAGATION_PRIVATE])
def test_mount_propagation(ctrs, tmp_path, prop):
    src = bound_dir(tmp_path)
    try:
        pod, cfg = ctrs.pod()
        cid = ctrs.run_ctr(pod, cfg, "c", linux=pb.LinuxContainerConfig(
            security_context=pb.LinuxContainerSecurityContext(privileged=True)),
            mounts=[pb.Mount(container_path=str(src), host_path=str(src), propagation=prop)],
            **sleeper())
        # Host to container.
        (src / "from-host").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "host-made",
                        str(src / "from-host")], check=True)
        (src / "from-host" / "flag").write_text("x")
        seen = ctrs.exec(cid, ["ls", str(src / "from-host")]).stdout.decode().split()
        assert seen == ([] if prop == pb.PROPAGATION_PRIVATE else ["flag"])
        # Container to host.
        out(ctrs, cid, ["sh", "-c", f"mkdir -p {src}/from-ctr && "
                                    f"mount -t tmpfs -o size=1m ctr-made {src}/from-ctr && "
                                    f"touch {src}/from-ctr/flag"])
        back = sorted(os.listdir(src / "from-ctr"))
        assert back == (["flag"] if prop == pb.PROPAGATION_BIDIRECTIONAL else [])
        ctrs.stop(pod)
        ctrs.remove(pod)
        assert ctrs.leftovers() == EMPTY_CTRS
    finally:
        umount_all(src)


def test_values_a_client_gets_wrong(ctrs):
    rt = ctrs.rt()
    c, msg = code(rt.RunPodSandbox, pb.RunPodSandboxRequest(
        config=ctrs.config("rel", log_directory="relative/logs")))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "log_directory" in msg, msg
    pod, cfg = ctrs.pod()
    for res, word in ((pb.LinuxContainerResources(cpu_shares=-5), "cpu_shares"),
                      (pb.LinuxContainerResources(cpu_quota=10), "cpu_quota"),
                      (pb.LinuxContainerResources(cpu_period=10), "cpu_period"),
                      (pb.LinuxContainerResources(memory_limit_in_bytes=-1), "memory_limit"),
                      (pb.LinuxContainerResources(oom_score_adj=1001), "oom_score_adj"),
                      (pb.LinuxContainerResources(hugepage_limits=[pb.HugepageLimit(
                          page_size="../../../etc/x", limit=1)]), "page_size")):
        req = pb.CreateContainerRequest(pod_sandbox_id=pod, sandbox_config=cfg,
                                        config=pb.ContainerConfig(
                                            metadata=pb.ContainerMetadata(name="r"),
                                            image=pb.ImageSpec(image=ctrs.images["plain"]),
                                            linux=pb.LinuxContainerConfig(resources=res)))
        c, msg = code(rt.CreateContainer, req)
        assert c == grpc.StatusCode.INVALID_ARGUMENT and word in msg, (word, msg)
    cid = ctrs.run_ctr(pod, cfg, "c", **sleeper())
    c, msg = code(rt.UpdateContainerResources, pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(cpu_shares=-5)))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "cpu_shares" in msg, msg
    rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(cpu_shares=512)), timeout=T)
    # Ids of any form: an unknown one is NOT_FOUND, removing it is success.
    for bad in ("nothex", "../../etc", "Z" * 64, "x" * 500):
        assert code(rt.ContainerStatus, pb.ContainerStatusRequest(container_id=bad))[0] == \
            grpc.StatusCode.NOT_FOUND
        assert code(rt.StopContainer, pb.StopContainerRequest(container_id=bad))[0] == \
            grpc.StatusCode.NOT_FOUND
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=bad), timeout=T)
    ctrs.crm(cid)
    ctrs.crm(cid)
    ctrs.stop(pod)
    ctrs.stop(pod)
    ctrs.remove(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_host_network_pod_has_the_hosts_uts(ctrs):
    linux = pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.NODE)))
    pod, cfg = ctrs.pod("hostnet", linux=linux)
    pause = pause_of(ctrs)
    assert os.stat(f"/proc/{pause}/ns/uts").st_ino == os.stat("/proc/self/ns/uts").st_ino
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


# The masked and read-only paths the kubelet sends for every container (its defaults).
KUBELET_MASKED = ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                  "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                  "/sys/firmware"]
KUBELET_READONLY = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                    "/proc/sysrq-trigger"]


class Kubelet:
    """The calls kubelet 1.3x makes for one pod, in its order and shapes (kuberuntime's
    sandbox and container managers, the prober, the PLEG relist)."""

    def __init__(self, ctrs, tmp_path, uid="6f2c1a8e-9d2b-4e8a-b1d3-0c9f7e5a4b21"):
        self.c, self.rt = ctrs, ctrs.rt()
        self.uid, self.name, self.ns = uid, "web-7d9c5b8f6d-x2k4p", "default"
        self.pod_dir = tmp_path / "kubelet" / "pods" / uid
        self.log_dir = tmp_path / "log" / "pods" / f"{self.ns}_{self.name}_{uid}"
        self.log_dir.mkdir(parents=True)
        (self.pod_dir / "etc-hosts").parent.mkdir(parents=True)
        (self.pod_dir / "etc-hosts").write_text("127.0.0.1\tlocalhost\n10.0.0.1\tweb\n")
        self.cgroup = kubelet_cgroup(uid.replace("-", "_"), True)
        labels = {"io.kubernetes.pod.name": self.name, "io.kubernetes.pod.namespace": self.ns,
                  "io.kubernetes.pod.uid": uid, "app": "web", "pod-template-hash": "7d9c5b8f6d"}
        self.cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=self.name, namespace=self.ns, uid=uid),
            hostname=self.name, log_directory=str(self.log_dir),
            dns_config=pb.DNSConfig(servers=["10.96.0.10"],
                                    searches=["default.svc.cluster.local", "svc.cluster.local",
                                              "cluster.local"], options=["ndots:5"]),
            port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=8080)],
            labels=labels,
            annotations={"kubernetes.io/config.seen": "2026-12-05T00:00:00Z",
                         "kubernetes.io/config.source": "api"},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent="/" + self.cgroup,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER,
                                                         ipc=pb.POD)),
                sysctls={}))

    def run_pod(self):
        self.pod = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=self.cfg),
                                         timeout=T).pod_sandbox_id
        self.c.ids.add(self.pod)
        st = self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=self.pod),
                                      timeout=T).status
        assert st.state == pb.SANDBOX_READY and st.network.ip
        return st

    def ensure_image(self, ref):
        """ImageStatus first, PullImage with the sandbox config if absent; the container is
        then created with the image id, as the kubelet does."""
        img = self.c.d.image()
        st = img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)), timeout=T)
        if not st.HasField("image"):
            img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref),
                                              sandbox_config=self.cfg), timeout=T)
            st = img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)),
                                 timeout=T)
        return st.image.id

    def create(self, name, image_id, command, attempt=0, probes=False):
        cdir = self.pod_dir / "containers" / name
        cdir.mkdir(parents=True, exist_ok=True)
        tlog = cdir / f"term-{attempt}"
        tlog.write_text("")
        (self.log_dir / name).mkdir(exist_ok=True)
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=attempt),
            image=pb.ImageSpec(image=image_id), command=command,
            working_dir="/", log_path=f"{name}/{attempt}.log",
            envs=[pb.KeyValue(key="KUBERNETES_SERVICE_HOST", value=b"10.96.0.1"),
                  pb.KeyValue(key="KUBERNETES_SERVICE_PORT", value=b"443"),
                  pb.KeyValue(key="POD_NAME", value=self.name.encode())],
            mounts=[pb.Mount(container_path="/etc/hosts", host_path=str(self.pod_dir / "etc-hosts")),
                    pb.Mount(container_path="/dev/termination-log", host_path=str(tlog))],
            labels={"io.kubernetes.container.name": name, "io.kubernetes.pod.name": self.name,
                    "io.kubernetes.pod.namespace": self.ns, "io.kubernetes.pod.uid": self.uid},
            annotations={"io.kubernetes.container.hash": "1a2b3c4d",
                         "io.kubernetes.container.restartCount": str(attempt),
                         "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                         "io.kubernetes.container.terminationMessagePolicy": "File",
                         "io.kubernetes.pod.terminationGracePeriod": "2"},
            linux=pb.LinuxContainerConfig(
                resources=pb.LinuxContainerResources(cpu_period=100000, cpu_quota=50000,
                                                     cpu_shares=512, oom_score_adj=999,
                                                     memory_limit_in_bytes=128 << 20),
                security_context=pb.LinuxContainerSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER,
                                                         ipc=pb.POD),
                    masked_paths=KUBELET_MASKED, readonly_paths=KUBELET_READONLY)))
        cid = self.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=self.pod, config=cfg, sandbox_config=self.cfg), timeout=T).container_id
        self.c.ids.add(cid)
        return cid, tlog

    def start(self, cid):
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)

    def status(self, cid):
        return self.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid),
                                       timeout=T).status

    def relist(self):
        """The PLEG: every sandbox and container, then the pod's status."""
        pods = self.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=T).items
        ctrs = self.rt.ListContainers(pb.ListContainersRequest(), timeout=T).containers
        self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=self.pod,
                                                            verbose=True), timeout=T)
        return pods, {c.id: c for c in ctrs if c.pod_sandbox_id == self.pod}

    def probe(self, cid, cmd, timeout=1):
        return self.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout),
                                timeout=T)

    def wait_state(self, cid, state, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, ctrs = self.relist()
            if cid in ctrs and ctrs[cid].state == state:
                return self.status(cid)
            time.sleep(0.05)
        raise AssertionError(f"{cid} never reached {state}: {self.status(cid)}")


def test_kubelet_sequence_init_two_containers_probes_restart(ctrs, tmp_path):
    """A kubelet's whole sequence for a pod with an init container and two app containers:
    the pod (its own cgroup made first, DNS, a containerPort), ImageStatus/PullImage,
    the init container run to completion, both app containers with exec probes, the PLEG
    relist, a liveness failure and the restart as attempt 1, then the pod's termination
    (StopContainer with the grace period, StopPodSandbox, RemoveContainer, RemovePodSandbox)
    and the image left for the image GC."""
    assert not Path("/sys/fs/cgroup/memory/kubepods").exists(), "a kubelet runs here"
    k = Kubelet(ctrs, tmp_path)
    try:
        st = k.run_pod()
        image = k.ensure_image(ctrs.images["plain"])
        assert image.startswith("sha256:")

        # The init container, run to completion before anything else starts.
        init, _ = k.create("init-config", image, ["/bin/sh", "-c",
                                                   "echo initialised > /tmp/ready-marker; "
                                                   "echo init-done"])
        k.start(init)
        s = k.wait_state(init, pb.CONTAINER_EXITED)
        assert s.exit_code == 0 and s.reason == "Completed", s
        assert ("stdout", "F", "init-done") in ctrs.log_records(k.log_dir / "init-config" / "0.log")

        # Two app containers with readiness and liveness probes.
        app_cmd = ["/bin/sh", "-c", "touch /tmp/healthy; trap 'exit 0' TERM; "
                                    "while true; do sleep 0.1; done"]
        web, _ = k.create("web", image, app_cmd)
        side, side_tlog = k.create("sidecar", image, [
            "/bin/sh", "-c", "trap 'echo bye > /dev/termination-log; exit 0' TERM; "
                             "while true; do sleep 0.1; done"])
        k.start(web)
        k.start(side)
        for cid in (web, side):
            k.wait_state(cid, pb.CONTAINER_RUNNING)
        # Readiness until it passes: the command of a probe runs in the container.
        deadline = time.monotonic() + 10
        while k.probe(web, ["cat", "/tmp/healthy"]).exit_code != 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = k.probe(side, ["sh", "-c", "cat /etc/hosts; cat /etc/resolv.conf; hostname; "
                                       "cat /proc/1/cmdline | tr '\\0' ' '"])
        text = r.stdout.decode()
        assert r.exit_code == 0 and "10.0.0.1\tweb" in text and "nameserver 10.96.0.10" in text
        assert "ndots:5" in text and k.name in text and "trap" in text, text
        # The pod's cgroup is the kubelet's; both containers sit in it.
        for cid in (web, side):
            assert (Path("/sys/fs/cgroup/memory") / k.cgroup / cid).is_dir()
            assert (Path("/sys/fs/cgroup/memory") / k.cgroup / cid /
                    "memory.limit_in_bytes").read_text().strip() == str(128 << 20)
        pods, listed = k.relist()
        assert [p.id for p in pods if p.id == k.pod] == [k.pod]
        assert {listed[c].state for c in (web, side)} == {pb.CONTAINER_RUNNING}
        assert listed[init].state == pb.CONTAINER_EXITED

        # Liveness fails: the kubelet kills the container with the grace period and starts
        # attempt 1 of it; the dead one stays listed until the GC removes it.
        assert k.probe(web, ["sh", "-c", "rm /tmp/healthy"]).exit_code == 0
        assert k.probe(web, ["cat", "/tmp/healthy"]).exit_code != 0
        k.rt.StopContainer(pb.StopContainerRequest(container_id=web, timeout=2), timeout=T)
        s = k.wait_state(web, pb.CONTAINER_EXITED)
        assert s.exit_code == 0 and s.reason == "Completed", s
        web1, _ = k.create("web", image, app_cmd, attempt=1)
        k.start(web1)
        s = k.wait_state(web1, pb.CONTAINER_RUNNING)
        assert s.metadata.attempt == 1 and s.log_path == str(k.log_dir / "web" / "1.log")
        assert k.probe(web1, ["cat", "/tmp/healthy"]).exit_code == 0
        k.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=web), timeout=T)
        _, listed = k.relist()
        assert web not in listed and web1 in listed

        # Termination: every container stopped with the grace period, then the sandbox.
        for cid in (web1, side):
            k.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=2), timeout=T)
        assert side_tlog.read_text() == "bye\n"
        assert k.status(side).exit_code == 0
        k.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=k.pod), timeout=T)
        st = k.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=k.pod),
                                   timeout=T).status
        assert st.state == pb.SANDBOX_NOTREADY
        for cid in (init, web1, side):
            k.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=T)
        k.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=k.pod), timeout=T)
        k.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=k.pod), timeout=T)
        assert list(k.rt.ListContainers(pb.ListContainersRequest(), timeout=T).containers) == []
        # The logs stay for the kubelet to rotate and remove.
        assert (k.log_dir / "web" / "0.log").exists() and (k.log_dir / "web" / "1.log").exists()
        mem = Path("/sys/fs/cgroup/memory") / k.cgroup
        assert [d for d in mem.iterdir() if d.is_dir()] == []
        assert ctrs.leftovers() == EMPTY_CTRS
    finally:
        ctrs.cleanup()
        rm_kubelet_cgroups()


@pytest.mark.parametrize("parent", ["../../../../var/tmp/x", "/kubepods/../..", "a//b",
                                    "kubepods/pod;x"])
def test_cgroup_parent_refused(ctrs, parent):
    c, msg = code(ctrs.rt().RunPodSandbox, pb.RunPodSandboxRequest(config=ctrs.config(
        "cgp", log_directory=str(ctrs.logs),
        linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent))))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "cgroup_parent" in msg, msg
    assert ctrs.leftovers() == EMPTY_CTRS


def test_bidirectional_needs_a_shared_source(ctrs, tmp_path):
    """As containerd: a source on a private mount cannot propagate back; refused, not
    silently one-way."""
    src = bound_dir(tmp_path, "priv", "--make-rprivate")
    try:
        pod, cfg = ctrs.pod()
        c, msg = code(ctrs.rt().CreateContainer, pb.CreateContainerRequest(
            pod_sandbox_id=pod, sandbox_config=cfg, config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="b"),
                image=pb.ImageSpec(image=ctrs.images["plain"]),
                mounts=[pb.Mount(container_path="/m", host_path=str(src),
                                 propagation=pb.PROPAGATION_BIDIRECTIONAL)])))
        assert c == grpc.StatusCode.INVALID_ARGUMENT and "shared" in msg, msg
        ctrs.stop(pod)
        ctrs.remove(pod)
        assert ctrs.leftovers() == EMPTY_CTRS
    finally:
        umount_all(src)


def test_readonly_path_inside_a_volume_is_not_followed(ctrs, tmp_path):
    """A read-only path that lies in a volume is the volume's, not the image's: a symlink a
    container planted there must never make runt bind a host file into the container."""
    vol = tmp_path / "vol"
    vol.mkdir()
    secret = tmp_path / "host-secret"
    secret.write_text("host-only\n")
    os.symlink(str(secret), vol / "x")
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, "c", mounts=[pb.Mount(container_path="/data", host_path=str(vol))],
                       linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                           readonly_paths=["/data/x"], masked_paths=["/data/x"])), **sleeper())
    r = ctrs.exec(cid, ["cat", "/data/x"])
    assert b"host-only" not in r.stdout, r
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_reboot_in_a_container_ends_it(ctrs):
    """reboot() with CAP_SYS_BOOT in a pid namespace of its own ends the container (its
    init dies); it is never started again behind the kubelet's back."""
    pod, cfg = ctrs.pod()
    sc = pb.LinuxContainerSecurityContext(capabilities=pb.Capability(
        add_capabilities=["SYS_BOOT"]))
    cid = ctrs.run_ctr(pod, cfg, "rb", command=["/bin/sh", "-c", "echo started; busybox reboot -f; "
                                                                  "sleep 3600"],
                       linux=pb.LinuxContainerConfig(security_context=sc))
    st = ctrs.wait_exit(cid)
    # Its init died of SIGHUP, as the kernel ends a pid namespace on reboot().
    assert st.exit_code == 129 and st.reason == "Error", st
    time.sleep(0.5)
    assert ctrs.cstatus(cid).state == pb.CONTAINER_EXITED
    recs = ctrs.log_records(st.log_path)
    assert recs.count(("stdout", "F", "started")) == 1, recs
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_log_directory_under_a_symlinked_node_dir(ctrs, tmp_path):
    """The node's own directories above the pod's log directory may be symlinks (/var/log
    on a data disk): logs work. The pod's directory and below are refused as symlinks."""
    real = tmp_path / "data-disk-log"
    (real / "pods").mkdir(parents=True)
    os.symlink(real, tmp_path / "varlog")
    logdir = tmp_path / "varlog" / "pods" / "ns_pod_uid"
    cfg = ctrs.config("symlog", log_directory=str(logdir))
    pod = ctrs.run(cfg)
    cid = ctrs.create(pod, cfg, "c", command=["/bin/sh", "-c", "echo through-the-link"])
    ctrs.start(cid)
    st = ctrs.wait_exit(cid)
    assert st.exit_code == 0
    assert "through-the-link" in (real / "pods" / "ns_pod_uid" / "c.log").read_text()
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_a_cgroup_parent_made_by_someone_else_is_kept(ctrs):
    """A cgroup_parent that existed before the pod, even on one controller only, is not
    runt's to remove when the pod goes."""
    name = f"runt-e2e-theirs-{os.getpid()}"
    theirs = Path("/sys/fs/cgroup/pids") / name
    theirs.mkdir()
    try:
        pod, cfg = ctrs.pod("theirs", linux=pb.LinuxPodSandboxConfig(cgroup_parent="/" + name))
        ctrs.stop(pod)
        ctrs.remove(pod)
        assert theirs.is_dir()
        assert ctrs.leftovers() == EMPTY_CTRS
    finally:
        rm_cgroup_tree(name)
