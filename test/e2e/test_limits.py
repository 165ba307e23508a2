"""Limits a container cannot exceed by default (issue 14): the pids cgroup limit every
container and every pause container gets (runt.yaml containers.pids_limit), on the LXC
backend with real liblxc as root and the host's pids controller (cgroup v1 or v2)."""

import os
from pathlib import Path

import grpc
import pytest

import cgv
from conftest import pb
from test_containers import EMPTY_CTRS, Ctrs, images  # noqa: F401 (a fixture)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root"),
    pytest.mark.skipif(not cgv.has("pids"), reason="no pids controller"),
]
T = 60
LIMIT = 50
# A sleep length no other test uses: it marks the processes the fork loop made.
NAPS = 40000 + os.getpid() % 10000


def pids_file(cid, name):
    return cgv.path(f"runt/{cid}", "pids", name)


def host_procs_in(cid):
    """Host processes whose pids cgroup is @cid's, counted through /proc: what the
    container costs the host's pid space."""
    n = 0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            n += cgv.in_cgroup(p, "pids", "/" + cid)
        except OSError:
            continue
    return n


@pytest.fixture
def ctrs(runtd_factory, tmp_path, images):  # noqa: F811
    c = Ctrs(runtd_factory, tmp_path, images)
    yield c
    c.cleanup()


@pytest.fixture
def small(runtd_factory, tmp_path, images):  # noqa: F811
    c = Ctrs(runtd_factory, tmp_path, images, containers={"pids_limit": LIMIT})
    yield c
    c.cleanup()


def test_default_pids_limits(ctrs):
    pod, cfg = ctrs.pod()
    cid = ctrs.run_ctr(pod, cfg, "c", command=["/bin/sleep", "3600"])
    assert pids_file(cid, "pids.max").read_text().strip() == "4096"
    # The pause container runs one process; it gets a small fixed limit.
    assert pids_file(pod, "pids.max").read_text().strip() == "16"
    ctrs.cstop(cid, timeout=1)
    ctrs.crm(cid)
    ctrs.stop(pod)
    ctrs.remove(pod)
    assert ctrs.leftovers() == EMPTY_CTRS


def test_fork_loop_stays_inside_the_pids_limit(small):
    c = small
    pod, cfg = c.pod("bomb")
    # The main process forks nothing, so it outlives the exhausted limit.
    cid = c.run_ctr(pod, cfg, "bomb", command=["/bin/sleep", "3600"])
    assert pids_file(cid, "pids.max").read_text().strip() == str(LIMIT)
    # Three times the limit of background sleeps: the shell's fork fails with EAGAIN
    # ("can't fork") and ends it; the sleeps it made stay, holding the limit.
    r = c.exec(cid, ["/bin/sh", "-c",
                     f"i=0; while [ $i -lt {3 * LIMIT} ]; do "
                     f"sleep {NAPS} >/dev/null 2>&1 & i=$((i+1)); done; echo spawned $i"],
               timeout=20)
    assert r.exit_code != 0 and b"spawned" not in r.stdout, r
    assert b"can't fork" in r.stderr, r.stderr
    assert int(pids_file(cid, "pids.current").read_text()) <= LIMIT
    assert int(pids_file(cid, "pids.events").read_text().split()[1]) > 0
    assert LIMIT // 2 < host_procs_in(cid) <= LIMIT

    # runtd and a container of another pod go on working.
    other, ocfg = c.pod("other")
    oid = c.run_ctr(other, ocfg, "ok", command=["/bin/sleep", "3600"])
    r = c.exec(oid, ["/bin/echo", "still-here"])
    assert r.exit_code == 0 and r.stdout == b"still-here\n"
    assert {x.id for x in c.clist()} == {cid, oid}
    # The failed shell's pid came free: one more exec may fit, or fail; it does not hang.
    try:
        r = c.exec(cid, ["/bin/echo", "fits"], timeout=10)
        assert r.exit_code == 0 or b"fits" not in r.stdout, r
    except grpc.RpcError as e:
        assert e.code() != grpc.StatusCode.DEADLINE_EXCEEDED, e
    assert host_procs_in(cid) <= LIMIT

    for x, p in ((cid, pod), (oid, other)):
        c.cstop(x, timeout=1)
        c.crm(x)
        c.stop(p)
        c.remove(p)
    assert c.leftovers() == EMPTY_CTRS
    assert host_procs_in(cid) == 0
