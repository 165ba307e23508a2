"""LXC containers on a cgroup v2 (unified) host: their limits under v2's file names and
conversions (cpu.weight from cpu_shares, cpu.max, memory.max, memory.swap.max counting swap
alone, cpuset, pids.max), UpdateContainerResources and UpdatePodSandboxResources on the live
cgroup, the device filter liblxc attaches as a BPF program, OOM kills seen through
memory.events, stats from v2's files, and the cgroup version and driver in Status info.

This machine mounts cgroup v1: these tests skip here and run inside the cgroup v2 guest
test_cgroup2_guest.py boots. The Status test runs on both."""

import json
import os
import time

import pytest

import cgv
from conftest import pb
from test_containers import EMPTY_CTRS, Ctrs, images, sleeper  # noqa: F401 (a fixture)

T = 60
MIB = 1 << 20
v2_only = pytest.mark.skipif(not cgv.v2(), reason="not a cgroup v2 host")
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")]


@pytest.fixture
def ctrs(runtd_factory, tmp_path, images):  # noqa: F811
    c = Ctrs(runtd_factory, tmp_path, images)
    yield c
    c.cleanup()


def read(rel, name):
    return cgv.path(rel, "", name).read_text().strip()


def test_status_shows_cgroup_version_and_driver(runtd):
    info = json.loads(runtd.runtime().Status(pb.StatusRequest(verbose=True),
                                             timeout=T).info["cgroup"])
    assert info["version"] == (2 if cgv.v2() else 1), info
    assert info["driver"] == "cgroupfs" and info["root"] == "/sys/fs/cgroup", info
    assert info["hybrid"] == (not cgv.v2() and (cgv.ROOT / "unified").is_dir()), info
    assert "memory" in info["controllers"] and "cpu" in info["controllers"], info
    # Said once in the log at start too.
    log = runtd.log_text() + (runtd.stderr_file.read_text(errors="replace")
                              if runtd.stderr_file.exists() else "")
    assert f"cgroup_version={info['version']}" in log and "cgroup_driver=cgroupfs" in log


@v2_only
def test_limits_under_v2_names(ctrs):
    pod, cfg = ctrs.pod()
    res = pb.LinuxContainerResources(memory_limit_in_bytes=64 * MIB, cpu_shares=1024,
                                     cpu_quota=20000, cpu_period=50000, cpuset_cpus="0",
                                     cpuset_mems="0",
                                     memory_swap_limit_in_bytes=64 * MIB)
    cid = ctrs.run_ctr(pod, cfg, **sleeper(linux=pb.LinuxContainerConfig(resources=res)))
    rel = f"runt/{cid}"
    assert read(rel, "memory.max") == str(64 * MIB)
    assert read(rel, "cpu.weight") == "100"  # 1024 shares: v2's default weight
    assert read(rel, "cpu.max") == "20000 50000"
    assert read(rel, "cpuset.cpus") == "0" and read(rel, "cpuset.mems") == "0"
    assert read(rel, "pids.max") == "4096"
    if cgv.path(rel, "", "memory.swap.max").exists():
        assert read(rel, "memory.swap.max") == "0"  # memory + swap == memory: no swap
    # No v1 name is anywhere: they do not exist on v2.
    assert not cgv.path(rel, "", "memory.limit_in_bytes").exists()
    # The container sees its own cgroup (a cgroup namespace), read-only.
    r = ctrs.exec(cid, ["sh", "-c", "cat /sys/fs/cgroup/memory.max; "
                                    "echo max > /sys/fs/cgroup/memory.max"])
    assert r.stdout.split(b"\n")[0] == str(64 * MIB).encode(), r
    assert b"Read-only" in r.stderr, r

    # Live update: memory.max and cpu.max change at once, and memory.swap.max follows.
    ctrs.rt().UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(
            memory_limit_in_bytes=96 * MIB, memory_swap_limit_in_bytes=128 * MIB,
            cpu_quota=-1, cpu_period=100000, cpu_shares=2)), timeout=T)
    assert read(rel, "memory.max") == str(96 * MIB)
    assert read(rel, "cpu.max") == "max 100000"
    assert read(rel, "cpu.weight") == "1"
    if cgv.path(rel, "", "memory.swap.max").exists():
        assert read(rel, "memory.swap.max") == str(32 * MIB)
    assert ctrs.cstatus(cid).resources.linux.memory_limit_in_bytes == 96 * MIB
    # A swap limit below the memory limit means nothing on v2: refused, naming the fields.
    with pytest.raises(Exception) as e:
        ctrs.rt().UpdateContainerResources(pb.UpdateContainerResourcesRequest(
            container_id=cid, linux=pb.LinuxContainerResources(
                memory_limit_in_bytes=96 * MIB, memory_swap_limit_in_bytes=32 * MIB)),
            timeout=T)
    assert "memory_swap_limit_in_bytes" in e.value.details(), e.value
    assert read(rel, "memory.max") == str(96 * MIB)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


@v2_only
def test_pod_limits_on_the_pod_cgroup(ctrs):
    parent = f"runt-v2test-{os.getpid()}/podabc"
    pod, cfg = ctrs.pod("cgp", linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent))
    cid = ctrs.run_ctr(pod, cfg, **sleeper())
    assert (cgv.ROOT / parent / cid).is_dir() and (cgv.ROOT / parent / pod).is_dir()
    ctrs.rt().UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
        pod_sandbox_id=pod, resources=pb.LinuxContainerResources(
            memory_limit_in_bytes=200 * MIB, cpu_quota=100000, cpu_period=100000,
            cpu_shares=512)), timeout=T)
    assert read(parent, "memory.max") == str(200 * MIB)
    assert read(parent, "cpu.max") == "100000 100000"
    assert read(parent, "cpu.weight") == str(cgv.shares(512))
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS
    assert not (cgv.ROOT / parent.split("/")[0]).exists()


@v2_only
def test_oom_kill_seen_in_memory_events(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, command=["/bin/sh", "-c", "sleep 0.3; busybox tail /dev/zero"],
                       linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
                           memory_limit_in_bytes=32 * MIB)))
    st = ctrs.wait_exit(cid, timeout=60)
    assert st.reason == "OOMKilled" and st.exit_code == 137, st
    # An OOM kill of a process other than PID 1 counts as well while it runs on.
    c2 = ctrs.run_ctr(pod, cfg, "c2", **sleeper(linux=pb.LinuxContainerConfig(
        resources=pb.LinuxContainerResources(memory_limit_in_bytes=32 * MIB))))
    r = ctrs.exec(c2, ["sh", "-c", "busybox tail /dev/zero; echo rc=$?"], timeout=60)
    assert b"rc=137" in r.stdout, r
    assert "oom_kill 1" in read(f"runt/{c2}", "memory.events")
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


@v2_only
def test_devices_filtered_by_bpf(ctrs):
    pod, cfg = ctrs.pod()
    d = ctrs.run_ctr(pod, cfg, "dev", **sleeper(devices=[
        pb.Device(container_path="/dev/my-null", host_path="/dev/null", permissions="rwm")]))
    r = ctrs.exec(d, ["sh", "-c", "echo x > /dev/my-null && echo written"])
    assert r.exit_code == 0 and r.stdout == b"written\n", r
    # /dev/mem is not allowed: mknod works (CAP_MKNOD) but opening it is refused.
    r = ctrs.exec(d, ["sh", "-c", "busybox mknod /tmp/mem c 1 1 && cat /tmp/mem"])
    assert r.exit_code != 0 and b"not permitted" in r.stderr, r
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


@v2_only
def test_stats_from_v2_files(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, command=["/bin/sh", "-c",
                                          "head -c 20000000 /dev/zero > /dev/shm/x; "
                                          "while true; do :; done"],
                       linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
                           memory_limit_in_bytes=128 * MIB)))
    rel = f"runt/{cid}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s = ctrs.rt().ContainerStats(pb.ContainerStatsRequest(container_id=cid),
                                     timeout=T).stats
        if s.memory.working_set_bytes.value > 16 * MIB and s.cpu.usage_core_nano_seconds.value:
            break
        time.sleep(0.5)
    assert s.memory.working_set_bytes.value > 16 * MIB, s
    usage_usec = int(read(rel, "cpu.stat").split()[1])
    assert 0 < s.cpu.usage_core_nano_seconds.value <= usage_usec * 1000, s
    assert s.memory.usage_bytes.value <= int(read(rel, "memory.current")) + 8 * MIB
    ps = ctrs.rt().PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod),
                                   timeout=T).stats
    assert ps.linux.memory.working_set_bytes.value >= 16 * MIB, ps
    assert ps.linux.process.process_count.value >= 1, ps
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS
