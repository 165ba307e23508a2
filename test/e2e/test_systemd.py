"""runtd as systemd runs it (packaging/systemd/runt.service).

- sd_notify: a real datagram socket stands in for systemd's; READY=1 comes only once the CRI
  socket serves, STOPPING=1 at SIGTERM; abstract socket names ("@name") too.
- Restarts that kill nothing: runtd runs in a cgroup of its own as in a unit with
  Delegate=yes; with pods running, every process of runtd's cgroup is killed (what systemd
  does to a unit's cgroup with KillMode=control-group), containers exit while runtd is down,
  runtd starts again in the same cgroup, and every log line and exit status arrives.
"""

import os
import signal
import socket
import subprocess
import time
import types
from pathlib import Path

import grpc
import pytest

from conftest import RUNTD_ENV, START_TIMEOUT, api_pb2_grpc, pb
from test_containers import EMPTY_CTRS, Ctrs, images, shim_pids  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and LXC need root")


def recv_all(sock, timeout):
    """The datagrams that arrive within @timeout seconds of the last one."""
    out = []
    sock.settimeout(timeout)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except socket.timeout:
        return out


def notify_socket(tmp_path, abstract):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"runt-e2e-notify-{os.getpid()}-{time.monotonic_ns()}"
        s.bind("\0" + name)
        return s, "@" + name
    path = str(tmp_path / "notify")
    s.bind(path)
    return s, path


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_once_serving_and_stopping_at_sigterm(runtd_factory, tmp_path, abstract):
    sock, addr = notify_socket(tmp_path, abstract)
    d = runtd_factory(start=False)
    env = dict(RUNTD_ENV, NOTIFY_SOCKET=addr)
    d._stderr = open(d.stderr_file, "wb")
    d.proc = subprocess.Popen(d.argv(), stdin=subprocess.DEVNULL, stdout=d._stderr,
                              stderr=subprocess.STDOUT, env=env)
    seen = []
    deadline = time.monotonic() + START_TIMEOUT
    sock.settimeout(0.5)
    while not any("READY=1" in m.split("\n") for m in seen):
        assert time.monotonic() < deadline, f"no READY=1 within {START_TIMEOUT}s: {seen}\n" \
            + d.diag()
        try:
            seen.append(sock.recv(4096).decode())
        except socket.timeout:
            assert d.alive(), d.diag()
    # The moment READY=1 is read the socket serves: no retry, no wait_for_ready.
    ch = grpc.insecure_channel(d.listen)
    v = api_pb2_grpc.RuntimeServiceStub(ch).Version(pb.VersionRequest(), timeout=2)
    ch.close()
    assert v.runtime_name == "runt"
    ready = seen[-1].split("\n")
    assert any(l.startswith("STATUS=serving CRI on ") for l in ready), seen
    # Before it, a status while it recovers, and READY=1 once only.
    assert seen[0].startswith("STATUS=starting"), seen
    assert sum("READY=1" in m.split("\n") for m in seen) == 1
    assert recv_all(sock, 0.3) == []  # nothing more while it serves
    d.stop()  # SIGTERM, exit 0 checked
    after = recv_all(sock, 0.3)
    assert after and after[0].split("\n")[0] == "STOPPING=1", after
    sock.close()


def test_no_notify_socket_sends_nothing_and_a_bad_one_is_ignored(runtd_factory, tmp_path):
    d = runtd_factory(start=False)
    d._stderr = open(d.stderr_file, "wb")
    d.proc = subprocess.Popen(d.argv(), stdin=subprocess.DEVNULL, stdout=d._stderr,
                              stderr=subprocess.STDOUT,
                              env=dict(RUNTD_ENV, NOTIFY_SOCKET="relative/notify"))
    d.wait_ready()
    assert "NOTIFY_SOCKET is neither an absolute path nor @name" in d.log_text()
    d.stop()


# ------------------------------------------------------------------ restarts that kill nothing


def hierarchies():
    """{name: mount dir} of the hierarchies systemd tracks a unit's processes with: the v2 one
    (/sys/fs/cgroup or /sys/fs/cgroup/unified) and the v1 name=systemd one, where mounted."""
    out = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, post = line.split(" - ")
        fstype, _src, opts = post.split()[:3]
        mnt = pre.split()[4]
        if fstype == "cgroup2":
            out.setdefault("unified", mnt)
        elif fstype == "cgroup" and "name=systemd" in opts.split(","):
            out.setdefault("systemd", mnt)
    return out


def own_path(pid, hier):
    """The cgroup of @pid on @hier ('unified' or 'systemd')."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        num, ctrls, path = line.split(":", 2)
        if (hier == "unified" and num == "0" and ctrls == "") or \
                (hier == "systemd" and ctrls == "name=systemd"):
            return path
    return None


def procs(d):
    try:
        return [int(p) for p in (Path(d) / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def kill_cgroup(d):
    """SIGKILL every process of cgroup dir @d (not below) until none is left."""
    for _ in range(200):
        pids = procs(d)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    raise AssertionError(f"processes left in {d}: {procs(d)}")


def helper_dirs(unit, ids):
    """The helper cgroups (runt-ctr-<id>, runt-pod-<id>) of @ids below the unit cgroups."""
    return sorted(str(p) for u in unit.values() for p in Path(u).iterdir()
                  if p.is_dir() and p.name.removeprefix("runt-ctr-").removeprefix("runt-pod-")
                  in ids)


class Unit:
    """A cgroup standing in for runt.service with Delegate=yes, on every hierarchy systemd
    tracks units with; runtd is started in it as systemd starts a unit's main process."""

    def __init__(self):
        self.name = f"runt-e2e-unit-{os.getpid()}"
        self.dirs = {}
        for h, mnt in hierarchies().items():
            d = Path(mnt) / self.name
            d.mkdir()
            self.dirs[h] = str(d)
        assert self.dirs, "no cgroup hierarchy to run runtd in"

    def spawn(self, d):
        dirs = list(self.dirs.values())

        def enter():
            for u in dirs:
                with open(f"{u}/cgroup.procs", "w") as f:
                    f.write("0")

        if getattr(d, "_stderr", None):
            d._stderr.close()
        d._stderr = open(d.stderr_file, "wb")
        d.proc = subprocess.Popen(d.argv(), stdin=subprocess.DEVNULL, stdout=d._stderr,
                                  stderr=subprocess.STDOUT, env=RUNTD_ENV, preexec_fn=enter)

    def kill_all(self):
        """What a stop or a crash of the unit does with KillMode=process, at its worst:
        SIGKILL every process in the unit's own cgroup and in runtd's leaf, on every
        hierarchy (the helpers' cgroups beside runtd's leaf are not touched)."""
        for u in self.dirs.values():
            for d in (u, f"{u}/runtd"):
                kill_cgroup(d)

    def remove(self):
        for u in self.dirs.values():
            for d in sorted(Path(u).rglob("*"), key=lambda p: -len(p.parts)):
                if d.is_dir():
                    kill_cgroup(d)
                    d.rmdir()
            kill_cgroup(u)
            os.rmdir(u)


@pytest.fixture
def unit():
    u = Unit()
    yield u
    u.remove()


def talker(tag):
    """Writes numbered lines to stdout and stderr until TERM, then exits 0."""
    return dict(command=["/bin/sh", "-c",
                         f"trap 'echo {tag}-end; exit 0' TERM; i=0; "
                         f"while true; do echo {tag}-out $i; echo {tag}-err $i >&2; "
                         f"i=$((i+1)); sleep 0.02; done"])


def seqs(records, stream, tag):
    return [int(msg.split()[1]) for s, t, msg in records
            if s == stream and t == "F" and msg.startswith(f"{tag}-{stream[3:]} ")]


def test_killing_runtds_cgroup_kills_no_container(runtd_factory, tmp_path, images, unit):
    def factory(start=True, **kw):
        d = runtd_factory(start=False, **kw)
        d.spawn = types.MethodType(lambda self: unit.spawn(self), d)
        return d.start() if start else d

    c = Ctrs(factory, tmp_path, images)
    try:
        d = c.d
        # runtd moved itself into a leaf of its own, runtd/, below the unit's cgroup.
        for h in unit.dirs:
            assert own_path(d.proc.pid, h).endswith(f"/{unit.name}/runtd"), \
                Path(f"/proc/{d.proc.pid}/cgroup").read_text()
        pods = [c.pod(f"p{i}") for i in range(2)]
        talkers = [c.run_ctr(pod, cfg, f"talk{i}", **talker(f"t{i}"))
                   for i, (pod, cfg) in enumerate(pods)]
        # Containers that exit with known codes while runtd is down (after their lines).
        codes = {7: pods[0], 42: pods[1], 0: pods[0]}
        exiting = {code: c.run_ctr(pod, cfg, f"exit{code}", command=[
            "/bin/sh", "-c", f"echo before-{code}; sleep 3; echo after-{code}; exit {code}"])
            for code, (pod, cfg) in codes.items()}
        ids = {p for p, _ in pods} | set(talkers) | set(exiting.values())
        # Every monitor is in its container's cgroup beside runtd's, not in runtd's.
        # (Two per container: the shim, and its child that liblxc makes the LXC monitor.)
        shims = shim_pids(d.root_dir)
        assert len(shims) == 2 * (len(talkers) + len(exiting)), shims
        for s in shims:
            for h in unit.dirs:
                p = own_path(s, h)
                assert p.startswith(f"/{unit.name}/runt-ctr-") or \
                    p.startswith(f"/{unit.name}/runt-pod-") or "/runt/" in p, (h, p)
        for u in unit.dirs.values():
            assert procs(f"{u}/runtd") == [d.proc.pid], procs(f"{u}/runtd")
            assert procs(u) == []
        made = helper_dirs(unit.dirs, ids)
        assert len(made) == len(unit.dirs) * (len(talkers) + len(exiting) + len(pods)), made

        time.sleep(0.5)
        unit.kill_all()
        d.proc.wait(timeout=5)
        assert d.proc.returncode == -signal.SIGKILL
        # Nothing of the pods went with runtd: monitors alive, talkers still writing.
        assert sorted(shim_pids(d.root_dir)) == sorted(shims)
        logs = {t: Path(c.logs) / f"p{i}" / f"talk{i}.log" for i, t in enumerate(talkers)}
        sizes = {t: p.stat().st_size for t, p in logs.items()}
        time.sleep(3.5)  # the exit* containers end meanwhile
        assert all(p.stat().st_size > sizes[t] for t, p in logs.items())
        assert len(shim_pids(d.root_dir)) == 2 * len(talkers)

        d.start()  # again in the unit's cgroup, as systemd's Restart=on-failure does
        for h in unit.dirs:
            assert own_path(d.proc.pid, h).endswith(f"/{unit.name}/runtd")
        for code, cid in exiting.items():
            st = c.cstatus(cid)
            assert st.state == pb.CONTAINER_EXITED and st.exit_code == code, (code, st)
            recs = c.log_records(st.log_path)
            assert ("stdout", "F", f"before-{code}") in recs
            assert ("stdout", "F", f"after-{code}") in recs
        for t in talkers:
            assert c.cstatus(t).state == pb.CONTAINER_RUNNING
            c.cstop(t)
            st = c.cstatus(t)
            assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0, st
        # Every line, none lost or repeated, across the kill and the restart.
        for i, t in enumerate(talkers):
            recs = c.log_records(c.cstatus(t).log_path)
            for stream in ("stdout", "stderr"):
                n = seqs(recs, stream, f"t{i}")
                assert n == list(range(len(n))), (t, stream, n[:5], len(n))
                assert len(n) > 100, (stream, len(n))  # wrote through the whole outage
            assert ("stdout", "F", f"t{i}-end") in recs
        for pod, _ in pods:
            c.stop(pod)
            c.remove(pod)
        # The helper cgroups went with their pods and containers.
        assert helper_dirs(unit.dirs, ids) == []
        assert c.leftovers() == EMPTY_CTRS
        d.stop()
    finally:
        c.cleanup()


def test_restart_recovery_removes_helper_cgroups_of_gone_objects(runtd_factory, tmp_path,
                                                                  images, unit):
    """A container removed, then runtd killed before its cgroup could go: the next start
    removes the orphan (a name in the record whose container is gone)."""
    def factory(start=True, **kw):
        d = runtd_factory(start=False, **kw)
        d.spawn = types.MethodType(lambda self: unit.spawn(self), d)
        return d.start() if start else d

    c = Ctrs(factory, tmp_path, images)
    try:
        d = c.d
        pod, cfg = c.pod()
        cid = c.run_ctr(pod, cfg, "short", command=["/bin/sh", "-c", "exit 3"])
        assert c.wait_exit(cid).exit_code == 3
        [made] = [p for p in helper_dirs(unit.dirs, {cid})][:1]
        unit.kill_all()
        d.proc.wait(timeout=5)
        # The container's LXC dir goes behind runtd's back (as a crash in the middle of a
        # removal leaves it): its cgroups are orphans now.
        import shutil
        shutil.rmtree(d.root_dir / "lxc" / cid)
        assert Path(made).is_dir()
        d.start()
        assert helper_dirs(unit.dirs, {cid}) == []
        assert "helper cgroups of pods and containers gone" in d.log_text()
        c.stop(pod)
        c.remove(pod)
        assert helper_dirs(unit.dirs, {pod, cid}) == []
        d.stop()
    finally:
        c.cleanup()
