"""Pod sandboxes on the LXC backend: runt-pause in an LXC container in the pod's network
namespace (real liblxc as root, real CNI plugins). Pods must outlive runtd."""

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import pb
from test_sandbox import EMPTY, Pods, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="LXC containers need root")


class LxcPods(Pods):
    def __init__(self, runtd_factory, tmp_path, ipmasq=False, **runtd_kw):
        import random
        n = random.randrange(1, 250)
        self.bridge = f"rtl{os.getpid() % 10000}{n}"[:15]
        self.prefix = f"10.235.{n}."
        self.ipam = tmp_path / "ipam"
        self.ipmasq = ipmasq
        self.net = f"e2e-pods-{self.bridge}"
        # default handler: lxc
        # Cgroups there before this daemon are not its own (tests may run side by side).
        self.cg_before = set(cgroups())
        self.d = runtd_factory(start=False, allow_log_errors=True, **runtd_kw)
        self.write_conf()
        self.d.start()

    def own_cgroups(self):
        """runt's cgroups of the ids this daemon's log names (runtd logs each sandbox and
        container it makes), so that daemons of tests run side by side do not count."""
        import re
        ids = set(re.findall(r"[0-9a-f]{64}", self.d.log_text()))
        return sorted(c for c in set(cgroups(self.d.root_dir)) - self.cg_before
                      if c.split("/", 1)[1].removeprefix("monitor-") in ids)

    def lxc_dirs(self):
        p = self.d.root_dir / "lxc"
        return sorted(os.listdir(p)) if p.exists() else []

    def leftovers(self):
        left = super().leftovers()
        left["lxc"] = self.lxc_dirs()
        left["cgroups"] = self.own_cgroups()
        left["pause"] = pause_pids(self.d.root_dir)
        return left


def others_ids(root):
    """Ids of the LXC containers that runtd daemons other than the one of @root run now."""
    ids = set()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cl = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # liblxc retitles its monitor "[lxc monitor] LXCPATH NAME".
        words = cl.removeprefix("[lxc monitor] ").split()
        if cl.startswith("[lxc monitor] ") and len(words) >= 2 and \
                not words[0].startswith(f"{root}/"):
            ids.add(words[1])
    return ids


def cgroups(root=None):
    """runt's cgroup dirs on every hierarchy (the shared 'runt' parent excluded); with @root,
    less those of the containers other daemons run (tests may run side by side)."""
    out = []
    skip = others_ids(root) if root is not None else set()
    for base in Path("/sys/fs/cgroup").iterdir():
        d = base / "runt"
        if d.is_dir():
            out += [f"{base.name}/{c.name}" for c in d.iterdir()
                    if c.is_dir() and c.name.removeprefix("monitor-") not in skip]
    return sorted(out)


def pause_pids(root):
    """PIDs of runt-pause processes of the daemon whose root is @root (its LXC monitor, the
    parent, names the lxc path under it); every runt-pause when @root is None."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if (p / "cmdline").read_bytes() != b"/pause\x00":
                continue
            ppid = (p / "stat").read_text().rsplit(")", 1)[1].split()[1]
            mon = Path(f"/proc/{ppid}/cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if root is None or f" {root}/".encode() in mon.replace(b"\0", b" "):
            pids.append(int(p.name))
    return pids


EMPTY_LXC = dict(EMPTY, lxc=[], cgroups=[], pause=[])


@pytest.fixture
def lxc(runtd_factory, tmp_path):
    p = LxcPods(runtd_factory, tmp_path)
    yield p
    p.cleanup()


def ns_inode(path):
    return os.stat(path).st_ino


def test_pause_container_lifecycle(lxc):
    pid = lxc.run(lxc.config("lx", hostname="lx-host", linux=pb.LinuxPodSandboxConfig(
        sysctls={"net.ipv4.ip_unprivileged_port_start": "0"})))
    st = lxc.status(pid).status
    assert st.state == pb.SANDBOX_READY and st.network.ip.startswith(lxc.prefix)
    [pause] = pause_pids(lxc.d.root_dir)
    # PID 1 of the sandbox is in the pod's netns, with the pod's hostname and sysctls.
    assert ns_inode(f"/proc/{pause}/ns/net") == ns_inode(lxc.netns_dir() / pid)
    assert ns_inode(f"/proc/{pause}/ns/pid") != ns_inode("/proc/self/ns/pid")
    assert sh("nsenter", "-t", pause, "-u", "hostname").stdout.strip() == "lx-host"
    assert sh("nsenter", "-t", pause, "-n", "cat",
              "/proc/sys/net/ipv4/ip_unprivileged_port_start").stdout.strip() == "0"
    assert lxc.lxc_dirs() == [pid]
    assert any(c.endswith("/" + pid) for c in cgroups()), cgroups()

    t0 = time.monotonic()
    lxc.stop(pid)
    assert time.monotonic() - t0 < 5  # runt-pause exits on SIGTERM
    assert pause_pids(lxc.d.root_dir) == []
    assert lxc.status(pid).status.state == pb.SANDBOX_NOTREADY
    lxc.remove(pid)
    assert lxc.leftovers() == EMPTY_LXC


def test_pause_death_is_notready(lxc):
    pid = lxc.run(lxc.config("dies"))
    [pause] = pause_pids(lxc.d.root_dir)
    os.kill(pause, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and lxc.status(pid).status.state == pb.SANDBOX_READY:
        time.sleep(0.05)
    assert lxc.status(pid).status.state == pb.SANDBOX_NOTREADY
    lxc.remove(pid)
    assert lxc.leftovers() == EMPTY_LXC


def test_host_network_pause(lxc):
    pid = lxc.run(lxc.config("hn", linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE)))))
    [pause] = pause_pids(lxc.d.root_dir)
    assert ns_inode(f"/proc/{pause}/ns/net") == ns_inode("/proc/self/ns/net")
    assert lxc.status(pid).status.network.ip == ""
    lxc.remove(pid)
    assert lxc.leftovers() == EMPTY_LXC


def test_pods_survive_runtd_kill_and_restart(lxc):
    pid = lxc.run(lxc.config("survivor"))
    ip = lxc.status(pid).status.network.ip
    [pause] = pause_pids(lxc.d.root_dir)
    lxc.d.proc.kill()  # kill -9
    lxc.d.proc.wait()
    time.sleep(0.2)
    assert pause_pids(lxc.d.root_dir) == [pause]  # still running without runtd
    lxc.d.start()
    st = lxc.status(pid).status
    assert st.state == pb.SANDBOX_READY and st.network.ip == ip
    assert [i.id for i in lxc.list(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))] == [pid]
    lxc.remove(pid)
    assert lxc.leftovers() == EMPTY_LXC


def test_many_pods_concurrently_nothing_left(lxc):
    n = 20
    ids, errors = [], []

    def run(i):
        try:
            ids.append(lxc.run(lxc.config(f"m{i}")))
        except grpc.RpcError as e:
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]
    assert len(pause_pids(lxc.d.root_dir)) == n
    assert len({lxc.status(p).status.network.ip for p in ids}) == n
    ts = [threading.Thread(target=lxc.remove, args=(p,)) for p in ids]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert lxc.list() == []
    assert lxc.leftovers() == EMPTY_LXC


def test_cni_failure_beside_the_pause_start_leaves_nothing(runtd_factory, tmp_path):
    """CNI ADD runs beside the pause container's start: when ADD fails (here the bridge's
    IPAM, after the veth was made) the pause container that did start goes too, with its
    LXC dir and cgroups, as do the namespace, veth, lease and chains; the name is free."""
    p = LxcPods(runtd_factory, tmp_path, ipmasq=True)
    try:
        # A pod first: a bridge whose first ADD failed refuses the gateway's MAC later
        # ("could not set bridge's mac", plugins 1.1.1 on this kernel), not runt's doing.
        p.remove(p.run(p.config("first")))
        p.write_conf([{"type": "bridge", "bridge": p.bridge, "isGateway": True, "ipMasq": True,
                       "ipam": {"type": "host-local", "dataDir": str(p.ipam),
                                "ranges": [[{"subnet": "not-a-subnet"}]]}}])
        with pytest.raises(grpc.RpcError) as e:
            p.run(p.config("beside"))
        assert "bridge" in e.value.details() or "host-local" in e.value.details(), \
            e.value.details()
        assert p.leftovers() == EMPTY_LXC
        p.write_conf()
        pid = p.run(p.config("beside"))
        assert len(pause_pids(p.d.root_dir)) == 1
        p.stop(pid)
        assert pause_pids(p.d.root_dir) == []
        p.remove(pid)
        assert p.leftovers() == EMPTY_LXC
    finally:
        p.cleanup()
