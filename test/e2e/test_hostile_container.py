"""What a hostile container with more than the default rights cannot do to the host or to
its own limits (issue 14's review): rewrite the init every container runs, or raise the
limits of its own cgroup."""

import hashlib
import os

import pytest

import cgv
from conftest import RUNTD, pb
from test_containers import EMPTY_CTRS, Ctrs, images, sleeper  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")


@pytest.fixture
def ctrs(runtd_factory, tmp_path, images):  # noqa: F811
    c = Ctrs(runtd_factory, tmp_path, images)
    yield c
    c.cleanup()


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_cap_sys_admin_cannot_rewrite_the_hosts_init(ctrs):
    """/dev/.runt-init is a read-only bind; CAP_SYS_ADMIN may remount it read-write. What it
    then writes is the container's own copy, never the binary runtd runs every container
    with."""
    host_init = RUNTD.parent / "runt-init"
    before = sha(host_init)
    pod, cfg = ctrs.pod()
    sc = pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(add_capabilities=["SYS_ADMIN"]),
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault))
    cid = ctrs.run_ctr(pod, cfg, "c", linux=pb.LinuxContainerConfig(security_context=sc),
                       **sleeper())
    r = ctrs.exec(cid, ["sh", "-c", "mount -o remount,rw,bind /dev/.runt-init && "
                                    "echo pwned > /dev/.runt-init && echo written"])
    # The remount and the write work (the container holds the right to them)...
    assert r.exit_code == 0 and r.stdout == b"written\n", r
    # ...on its own copy only.
    assert sha(host_init) == before
    # A second container still starts with the real init.
    other = ctrs.run_ctr(pod, cfg, "d", command=["/bin/sh", "-c", "exit 7"])
    assert ctrs.wait_exit(other).exit_code == 7
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_root_cannot_raise_its_own_limits(ctrs):
    """Its cgroup is mounted read-only, as runc mounts it: root in the container cannot
    write its memory limit (or any other) up."""
    pod, cfg = ctrs.pod()
    limit = 64 << 20
    cid = ctrs.run_ctr(pod, cfg, "c", linux=pb.LinuxContainerConfig(
        resources=pb.LinuxContainerResources(memory_limit_in_bytes=limit)), **sleeper())
    inside = "memory.max" if cgv.v2() else "memory/memory.limit_in_bytes"
    r = ctrs.exec(cid, ["sh", "-c", f"f=/sys/fs/cgroup/{inside}; "
                                    "cat $f && echo 9999999999 > $f && echo raised"])
    # The file is there (its own limit, read), and the write is refused.
    assert r.stdout.split(b"\n")[0] == str(limit).encode(), r
    assert b"raised" not in r.stdout and b"Read-only file system" in r.stderr, r
    assert cgv.memory_limit(f"runt/{cid}") == limit
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS
