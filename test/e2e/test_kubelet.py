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


def rm_kubelet_cgroups():
    for base in Path("/sys/fs/cgroup").iterdir():
        top = base / "kubepods"
        if top.is_dir():
            for d in sorted((x for x in top.rglob("*") if x.is_dir()), key=lambda x: -len(x.parts)):
                d.rmdir()
            top.rmdir()


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


def shared_dir(tmp_path):
    src = tmp_path / "mnt"
    src.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    subprocess.run(["mount", "--make-rshared", str(src)], check=True)
    return src


def umount_all(path):
    subprocess.run(["umount", "-R", "-l", str(path)], check=False)


@pytest.mark.parametrize("prop", [pb.PROPAGATION_BIDIRECTIONAL, pb.PROPAGATION_HOST_TO_CONTAINER,
                                  pb.PROPAGATION_PRIVATE])
def test_mount_propagation(ctrs, tmp_path, prop):
    src = shared_dir(tmp_path)
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
                      (pb.LinuxContainerResources(oom_score_adj=1001), "oom_score_adj")):
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
