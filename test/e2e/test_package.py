"""The Debian package, end to end: built from a copy of this tree with dpkg-buildpackage,
checked by lintian, installed on a node, runtd started through the unit's ExecStart line
with the packaged configuration, a pod run over the packaged socket, and purged leaving
nothing behind.

The node is this machine seen through namespaces of its own, so that installing and purging
touch nothing the machine (and the tests running beside these) holds: a mount namespace in
which /etc, /usr and /var are copy-on-write overlays of the host's, /var/lib and /run are
empty directories (dpkg's database an overlay of the host's), a network namespace (the
package's bridge, iptables rules and veths are the node's own) and a PID namespace (the
node's processes are countable, and die with it). The overlays' upper directories are the
record of every file the package, runtd and the purge changed.

The build takes most of the time (a release build with two jobs, no tests); it is skipped,
saying why, only when debhelper, dpkg-buildpackage or lintian is missing (hack/deps.sh test
installs them). RUNT_DEB=<a runt .deb> tests that package instead of building one.
"""

import json
import os
import re
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import grpc
import pytest

import registry as R
from conftest import REPO, api_pb2_grpc, pb

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installing a package needs root")

T = 60
BUILD_TOOLS = ("dpkg-buildpackage", "dh", "lintian")
LIBEXEC = "/usr/libexec/runt"
UNIT = "/lib/systemd/system/runt.service"
CONFLIST = "/etc/cni/net.d/99-runt.conflist"
POD_SUBNET = "10.211."
REGISTRY = "127.0.0.1:5000"
# What systemd gives a service: no terminal, a plain PATH.
UNIT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}


@pytest.fixture(scope="session", autouse=True)
def runtd_binary():
    """Overrides conftest's: these tests run the packaged runtd, not a build tree's."""
    return None


# --------------------------------------------------------------------------- the build


def source_files():
    """The tree's files as git sees them (tracked and new, not ignored), relative paths."""
    if (REPO / ".git").exists():
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "-c", "-o",
                              "--exclude-standard"], check=True, capture_output=True).stdout
        return sorted({p for p in out.decode().split("\0") if p})
    skip = {"build", ".git", "__pycache__"}
    files = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in skip and not d.startswith("obj-")]
        files += [os.path.relpath(os.path.join(dirpath, f), REPO) for f in filenames]
    return sorted(files)


def copy_tree(dest):
    for rel in source_files():
        src = REPO / rel
        if not os.path.lexists(src):
            continue  # tracked, deleted in the work tree
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


class Package:
    def __init__(self, deb, build_dir, workdir):
        self.deb, self.build_dir = deb, build_dir
        self.extracted = workdir / "extracted"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(self.extracted)], check=True)

    def field(self, name):
        return subprocess.run(["dpkg-deb", "-f", str(self.deb), name], check=True,
                              capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    if os.environ.get("RUNT_DEB"):  # a package built already (to work on these tests)
        deb = Path(os.environ["RUNT_DEB"]).resolve()
        return Package(deb, None, tmp_path_factory.mktemp("deb"))
    missing = [t for t in BUILD_TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip(f"the package build tools are not installed ({', '.join(missing)}): "
                    "hack/deps.sh test installs debhelper and lintian")
    base = tmp_path_factory.mktemp("deb")
    src = base / "runt"
    copy_tree(src)
    log = base / "build.log"
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2 noautodbgsym")
    t0 = time.monotonic()
    with open(log, "wb") as f:
        res = subprocess.run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src, env=env,
                             stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             timeout=1200)
    text = log.read_text(errors="replace")
    assert res.returncode == 0, f"dpkg-buildpackage failed:\n{text[-5000:]}"
    debs = [p for p in base.glob("runt_*_amd64.deb")]
    assert len(debs) == 1, f"expected one runt .deb in {base}: {os.listdir(base)}"
    print(f"package built in {time.monotonic() - t0:.0f} s: {debs[0].name}, "
          f"{debs[0].stat().st_size} bytes")
    return Package(debs[0], src, base)


@pytest.fixture(scope="module")
def image_layout(tmp_path_factory):
    """A busybox image in an OCI layout, pushed into each node's registry."""
    lay = R.OciLayout.create(tmp_path_factory.mktemp("pkg-oci"))
    R.busybox_image(lay, "busybox")
    yield lay
    lay.remove()


# --------------------------------------------------------------------------- the node

# PID 1 of the node: reaps what is orphaned there (as an init does), so that exited
# processes do not linger as zombies and count as left behind.
NODE_INIT = """
import os, sys, time
sys.stdout.write("ready\\n")
sys.stdout.flush()
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.1)
"""

# Run in the node's namespaces, once: the overlays and the empty directories.
NODE_SETUP = r"""
set -eu
T=$1
for d in etc usr var dpkg; do mkdir -p "$T/up/$d" "$T/work/$d"; done
mkdir -p "$T/varlib/dpkg" "$T/run/lock"
# Mounts copied from the host under runt's default paths (pods of a runtd the host runs)
# are not the node's.
awk '{print $5}' /proc/self/mountinfo | grep -E '^/(run/runt|var/lib/runt)(/|$)' | sort -r |
    while read -r m; do umount -l "$m"; done
mount -t overlay runt-node -o "lowerdir=/var/lib/dpkg,upperdir=$T/up/dpkg,workdir=$T/work/dpkg" \
    "$T/varlib/dpkg"
for d in etc usr var; do
    mount -t overlay runt-node -o "lowerdir=/$d,upperdir=$T/up/$d,workdir=$T/work/$d" "/$d"
done
mount --rbind "$T/varlib" /var/lib
mount --bind "$T/run" /run
ip link set lo up
# A node with no runt and no CNI network; the node's registry is plain HTTP.
rm -rf /etc/runt /etc/systemd/system/multi-user.target.wants/runt.service
rm -f /etc/cni/net.d/*
mkdir -p /etc/containers
printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$2" >/etc/containers/registries.conf
"""


def readlink(p):
    try:
        return os.readlink(p)
    except OSError:
        return None


def own_cgroup_dirs():
    """This process's cgroup directory on every hierarchy it is in (v1 and v2)."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fstype, _, sopts = right.split()[:3]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append((fstype, left.split()[4], set(sopts.split(","))))
    dirs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for fstype, mnt, opts in mounts:
            if (fstype == "cgroup2" and not ctrls) or \
                    (fstype == "cgroup" and ctrls and set(ctrls.split(",")) <= opts):
                if os.path.isdir(mnt + path):
                    dirs.append(Path(mnt + path))
                break
    return dirs


class UnitCgroup:
    """The cgroup systemd makes for the unit (system.slice/runt.service, delegated), here
    below this process's own cgroups: runtd is started in it, and what is in it when the
    unit stops (KillMode=process) is what a stop leaves running."""

    def __init__(self, name):
        self.dirs = []
        for d in own_cgroup_dirs():
            try:
                (d / name).mkdir()
                # v1 cpuset: a new cgroup starts with no CPUs and no memory nodes.
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if (d / name / f).exists() and not (d / name / f).read_text().strip():
                        (d / name / f).write_text((d / f).read_text())
            except OSError:
                continue  # a hierarchy this process may not write
            self.dirs.append(d / name)

    def walk(self):
        for top in self.dirs:
            for dirpath, dirnames, _ in os.walk(top):
                yield Path(dirpath), dirnames

    def pids(self):
        out = set()
        for d, _ in self.walk():
            try:
                out |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return out

    def subgroups(self):
        """Cgroups below the unit's but runtd's own leaf ("runtd"), which goes with it."""
        return sorted(str(d / n) for d, names in self.walk() for n in names
                      if not (d in self.dirs and n == "runtd"))

    def remove(self):
        """As systemd does once the unit is stopped and empty."""
        for d, _ in sorted(self.walk(), key=lambda e: len(str(e[0])), reverse=True):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


class Node:
    """This machine as a fresh node, in namespaces of its own (see the module's comment)."""

    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="runt-node-", dir="/tmp"))
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
             "--propagation", "private", "/usr/bin/python3", "-c", NODE_INIT],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, start_new_session=True)
        self.registry = None
        self.runtd = None
        self.runtd_pid = None
        self.ids = []  # pods and containers made here: their cgroups are the host's
        self.unit = UnitCgroup(f"runt-node-{os.getpid()}-{self.base.name}.service")
        try:
            assert self.holder.stdout.readline() == b"ready\n", "the node's init did not start"
            self.init = self._child(self.holder.pid)
            self.pidns = readlink(f"/proc/{self.init}/ns/pid")
            self.sh(NODE_SETUP, str(self.base), REGISTRY)
            self.mounts_before = set(self.mount_points())
        except BaseException:
            self.destroy()
            raise

    @staticmethod
    def _child(pid, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                kids = []
            if kids:
                return int(kids[0])
            time.sleep(0.01)
        raise AssertionError(f"process {pid} has no child")

    def enter(self, net_only=False):
        if net_only:
            return ["nsenter", "-t", str(self.init), "-n", "--"]
        return ["nsenter", "-t", str(self.init), "-m", "-n", "-p", "--wd=/", "--"]

    def run(self, argv, check=True, timeout=120, **kw):
        if "input" not in kw:
            kw["stdin"] = subprocess.DEVNULL
        res = subprocess.run(self.enter() + [str(a) for a in argv], capture_output=True,
                             text=True, timeout=timeout,
                             env=dict(UNIT_ENV, DEBIAN_FRONTEND="noninteractive"), **kw)
        if check:
            assert res.returncode == 0, \
                f"{argv} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        return res

    def sh(self, script, *args, **kw):
        return self.run(["/bin/sh", "-c", script, "sh", *args], **kw)

    def read(self, path):
        return self.run(["cat", path]).stdout

    def exists(self, path):
        return self.run(["test", "-e", path], check=False).returncode == 0

    def sha256(self, path):
        return self.run(["sha256sum", path]).stdout.split()[0]

    def mount_points(self):
        return [line.split()[4] for line in
                Path(f"/proc/{self.init}/mountinfo").read_text().splitlines()]

    def processes(self):
        """The node's processes but its init: (pid, cmdline)."""
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit() or int(p.name) == self.init:
                continue
            if readlink(p / "ns" / "pid") != self.pidns:
                continue
            try:
                cl = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            out.append((int(p.name), cl.strip()))
        return out

    def upper_entries(self):
        """Every entry of the overlays' upper directories and of the empty ones: what the
        node changed. {path: kind}, kind "dir", "whiteout" or "file"."""
        out = {}
        for top in ("up", "varlib", "run"):
            root = self.base / top
            for dirpath, dirnames, filenames in os.walk(root):
                if top == "varlib" and Path(dirpath) == root:
                    dirnames[:] = [d for d in dirnames if d != "dpkg"]  # seen as up/dpkg
                for n in dirnames + filenames:
                    p = Path(dirpath) / n
                    st = p.lstat()
                    if stat.S_ISDIR(st.st_mode):
                        kind = "dir"
                    elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        kind = "whiteout"
                    else:
                        kind = "file"
                    out[str(p.relative_to(self.base))] = kind
        return out

    # -- the package

    def dpkg(self, *args, check=True):
        return self.run(["dpkg", *args], check=check)

    def installed(self):
        res = self.run(["dpkg-query", "-W", "-f", "${Status}", "runt"], check=False)
        return res.returncode == 0 and res.stdout.endswith(" installed")

    # -- the registry of the node's network

    def start_registry(self, layout, tag, dest):
        reg = self.base / "registry"
        (reg / "storage").mkdir(parents=True)
        (reg / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {reg / 'storage'}\nhttp:\n  addr: {REGISTRY}\n"
            "  secret: runt-node-not-a-secret\n")
        self.registry = subprocess.Popen(
            self.enter(net_only=True) + [R.DOCKER_REGISTRY, "serve", str(reg / "config.yml")],
            stdin=subprocess.DEVNULL, stdout=open(reg / "log", "wb"),
            stderr=subprocess.STDOUT, start_new_session=True)
        argv = self.enter(net_only=True) + [
            R.SKOPEO, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
            f"oci:{layout.path}:{tag}", f"docker://{REGISTRY}/{dest}"]
        deadline = time.monotonic() + 30
        while True:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                 env=R.skopeo_env(), stdin=subprocess.DEVNULL)
            if res.returncode == 0:
                return f"{REGISTRY}/{dest}"
            assert time.monotonic() < deadline and self.registry.poll() is None, \
                f"push to the node's registry failed: {res.stderr}"
            time.sleep(0.2)

    # -- runtd, as systemd would start it

    def exec_start(self):
        """argv of the installed unit's ExecStart line, and its LimitNOFILE."""
        argv, nofile = None, None
        for line in self.read(UNIT).splitlines():
            line = line.strip()
            if line.startswith("ExecStart="):
                argv = shlex.split(line.split("=", 1)[1].lstrip("-@:+!"))
            elif line.startswith("LimitNOFILE="):
                v = line.split("=", 1)[1].split(":")[-1]
                nofile = resource.RLIM_INFINITY if v == "infinity" else int(v)
        assert argv, f"no ExecStart= in {UNIT}"
        return argv, nofile

    @property
    def socket(self):
        return self.base / "run" / "runt" / "runt.sock"  # the node's /run/runt/runt.sock

    def start_runtd(self):
        """ExecStart run as systemd would: in the unit's cgroup, with its LimitNOFILE (as far
        as this process may raise it: systemd, PID 1, may go further)."""
        argv, nofile = self.exec_start()
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if nofile is None:
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        elif hard != resource.RLIM_INFINITY:
            nofile = min(nofile, hard)
        wrapper = ('for d in "$@"; do [ "$d" = -- ] && break; echo $$ >"$d/cgroup.procs"; done; '
                   f"ulimit -n {nofile}; "
                   'while [ "$1" != -- ]; do shift; done; shift; exec "$@"')
        cmd = ["/bin/sh", "-c", wrapper, "sh", *map(str, self.unit.dirs), "--",
               *self.enter(), *argv]
        log = open(self.base / "runtd.log", "ab")
        self.runtd = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, env=UNIT_ENV,
                                      start_new_session=True)
        log.close()
        self.runtd_pid = self._child(self.runtd.pid)
        if self.unit.dirs:
            name = self.unit.dirs[0].name
            assert f"/{name}" in Path(f"/proc/{self.runtd_pid}/cgroup").read_text(), \
                "runtd is not in the unit's cgroup"
        deadline = time.monotonic() + T
        last = None
        while time.monotonic() < deadline:
            assert self.runtd.poll() is None, \
                f"runtd exited with {self.runtd.returncode}:\n{self.runtd_log()[-3000:]}"
            if self.socket.exists():
                with grpc.insecure_channel(f"unix://{self.socket}") as ch:
                    try:
                        api_pb2_grpc.RuntimeServiceStub(ch).Version(pb.VersionRequest(),
                                                                    timeout=2)
                        return
                    except grpc.RpcError as e:
                        last = e
            time.sleep(0.05)
        raise AssertionError(f"runtd not ready in {T} s ({last}):\n{self.runtd_log()[-3000:]}")

    def stop_runtd(self):
        """SIGTERM to runtd alone (KillMode=process); its exit status."""
        os.kill(self.runtd_pid, signal.SIGTERM)
        rc = self.runtd.wait(timeout=30)
        self.runtd = None
        return rc

    def runtd_log(self):
        p = self.base / "runtd.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def channel(self):
        return grpc.insecure_channel(f"unix://{self.socket}")

    # -- the end

    def destroy(self):
        for p in (self.registry, self.runtd):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if self.holder.poll() is None:
            # With unshare, the node's init (--kill-child): the kernel kills every process of
            # the node with it, and the node's mounts and network go with the last one.
            self.holder.kill()
            self.holder.wait(timeout=30)
        self.holder.stdout.close()
        for _ in range(50):
            if not self.unit.pids():
                break
            time.sleep(0.1)
        self.unit.remove()
        for _ in range(50 if self.ids else 0):
            cleanup_cgroups(self.ids)
            if not cgroups_named(self.ids):
                break
            time.sleep(0.1)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def node_factory():
    nodes = []

    def make():
        n = Node()
        nodes.append(n)
        return n

    yield make
    for n in nodes:
        n.destroy()


def cgroups_named(ids):
    """Cgroup directories, on every hierarchy, whose name holds one of @ids."""
    hits = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        for d in dirnames:
            if any(i in d for i in ids):
                hits.append(os.path.join(dirpath, d))
    return hits


def cleanup_cgroups(ids):
    for d in sorted(cgroups_named(ids), key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass


# Files the node's bookkeeping changes whatever is installed: dpkg's database and log, the
# man page index, logs of the tools; and skopeo's blob-info cache, which every
# containers/image tool of the node (skopeo, podman, buildah) shares, and none can move.
BOOKKEEPING = ("up/dpkg/", "up/var/log/", "up/var/cache/", "varlib/systemd/",
               "varlib/containers/cache/blob-info-cache-")


def leftovers(node, before, package_files, allowed=()):
    """What the package left on the node after its purge; {} when nothing."""
    left = {}
    left["package files"] = [p for p in package_files if node.exists(p)]
    left["paths"] = [p for p in ("/etc/runt", "/var/lib/runt", "/run/runt", "/var/log/runt",
                                 LIBEXEC, "/usr/share/runt", "/usr/share/doc/runt",
                                 "/usr/sbin/runtd", CONFLIST, "/var/lib/cni/networks/runt")
                     if p not in allowed and node.exists(p)]
    left["dpkg"] = ["runt is still known to dpkg"] if node.run(
        ["dpkg-query", "-W", "runt"], check=False).returncode == 0 else []
    changed = []
    for path, kind in node.upper_entries().items():
        if path in before or kind == "whiteout":  # whiteouts are deletions, not leftovers
            continue
        if any(path == "up" + a for a in allowed):
            continue
        if "runt" in Path(path).name or (kind == "file" and not path.startswith(BOOKKEEPING)):
            changed.append(f"{path} ({kind})")
    left["files"] = changed
    left["processes"] = node.processes()
    left["unit cgroup"] = node.unit.subgroups() + sorted(node.unit.pids())
    left["cgroups"] = cgroups_named(node.ids) if node.ids else []
    left["mounts"] = sorted(set(node.mount_points()) - node.mounts_before)
    links = node.run(["ip", "-o", "link", "show"]).stdout.splitlines()
    left["links"] = [l for l in links if ": lo:" not in l]
    rules = node.run(["iptables-save"]).stdout + node.run(["ip6tables-save"]).stdout
    left["iptables"] = [l for l in rules.splitlines() if "CNI" in l or "runt" in l]
    return {k: v for k, v in left.items() if v}


# --------------------------------------------------------------------------- pods


class PodRun:
    """One pod with one container on the node's runtd, over the packaged socket."""

    def __init__(self, node, image):
        self.node, self.image = node, image
        self.logs = node.base / "pod-logs"
        self.logs.mkdir(exist_ok=True)
        self.ch = node.channel()
        self.rt = api_pb2_grpc.RuntimeServiceStub(self.ch)
        self.img = api_pb2_grpc.ImageServiceStub(self.ch)
        self.cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="pkg", namespace="default", uid="uid-pkg"),
            hostname="pkg", log_directory=str(self.logs))
        self.pod = self.cid = None

    def start(self):
        self.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=self.image)),
                           timeout=120)
        self.pod = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=self.cfg),
                                         timeout=T).pod_sandbox_id
        self.node.ids.append(self.pod)
        c = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image=self.image),
            command=["/bin/sh", "-c",
                     "echo runt-package-ok; trap 'exit 0' TERM; while true; do sleep 0.1; done"],
            log_path="c.log",
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=pb.NamespaceOption(pid=pb.CONTAINER))))
        self.cid = self.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=self.pod, config=c, sandbox_config=self.cfg),
            timeout=T).container_id
        self.node.ids.append(self.cid)
        self.rt.StartContainer(pb.StartContainerRequest(container_id=self.cid), timeout=T)
        return self

    def reconnect(self):
        self.ch.close()
        self.ch = self.node.channel()
        self.rt = api_pb2_grpc.RuntimeServiceStub(self.ch)
        self.img = api_pb2_grpc.ImageServiceStub(self.ch)

    def check_running(self):
        """The container runs, logs, execs, on the packaged network."""
        st = self.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=self.cid),
                                     timeout=T).status
        assert st.state == pb.CONTAINER_RUNNING, st
        log = self.logs / "c.log"
        deadline = time.monotonic() + 20
        while "runt-package-ok" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, f"no output in {log}"
            time.sleep(0.1)
        r = self.rt.ExecSync(pb.ExecSyncRequest(container_id=self.cid, timeout=10,
                                                cmd=["/bin/sh", "-c", "echo exec-ok"]),
                             timeout=T)
        assert (r.exit_code, r.stdout) == (0, b"exec-ok\n"), r
        ps = self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=self.pod),
                                      timeout=T).status
        assert ps.state == pb.SANDBOX_READY, ps
        assert ps.network.ip.startswith(POD_SUBNET), \
            f"pod IP {ps.network.ip} is not from the packaged network {POD_SUBNET}0.0/16"

    def remove(self):
        self.rt.StopContainer(pb.StopContainerRequest(container_id=self.cid, timeout=10),
                              timeout=T)
        self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=self.cid), timeout=T)
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=self.pod), timeout=T)
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=self.pod),
                                 timeout=T)

    def close(self):
        self.ch.close()


def package_files(node):
    """The package's files and symlinks (not directories) as dpkg lists them."""
    out = []
    for p in node.dpkg("-L", "runt").stdout.splitlines():
        res = node.run(["test", "-d", p], check=False)
        if p.startswith("/") and res.returncode != 0:
            out.append(p)
    return out


def no_errors_logged(node):
    errors = [l for l in node.runtd_log().splitlines() if "level=error" in l]
    assert not errors, "runtd logged errors:\n" + "\n".join(errors[:20])


# --------------------------------------------------------------------------- the tests


def test_lintian_passes(package):
    res = subprocess.run(["lintian", "--fail-on", "error", "--display-info", str(package.deb)],
                         capture_output=True, text=True, timeout=300)
    tags = [l for l in res.stdout.splitlines() if re.match(r"^[EWIXPO]: ", l)]
    print("lintian:\n" + "\n".join(tags or ["(no tags)"]))
    assert res.returncode == 0 and not [t for t in tags if t.startswith("E: ")], \
        f"lintian failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    assert not [t for t in tags if t.startswith("W: ")], "lintian warnings:\n" + res.stdout


def test_package_contents(package):
    x = package.extracted
    # runtd and every helper it looks for beside itself.
    src = "\n".join(p.read_text() for d in ("backends", "imagemgr", "cri", "podmgr", "netmgr")
                    for p in (REPO / d).rglob("*.c"))
    helpers = set(re.findall(r'sh_find_helper\("([a-z0-9-]+)"', src))
    assert {"runt-lxc-shim", "runt-unpack", "runt-agent"} <= helpers, helpers
    for name in helpers | {"runtd"}:
        f = x / LIBEXEC.lstrip("/") / name
        assert f.is_file() and os.access(f, os.X_OK), f"{f} missing"
    link = x / "usr/sbin/runtd"
    assert os.path.normpath(link.parent / os.readlink(link)) == str(x / LIBEXEC.lstrip("/") / "runtd")
    # No build path is compiled in (a helper missing beside runtd must not be looked for
    # in a directory a user may create); the installed one is.
    runtd = (x / LIBEXEC.lstrip("/") / "runtd").read_bytes()
    if package.build_dir:
        assert str(package.build_dir).encode() not in runtd
    assert f"{LIBEXEC}/runt-lxc-shim".encode() in runtd
    # The configuration is a conffile; the unit has the settings the issue asks for.
    res = subprocess.run(["dpkg-deb", "-I", str(package.deb), "conffiles"], check=True,
                         capture_output=True, text=True)
    assert set(res.stdout.split()) == {"/etc/runt/runt.yaml", "/etc/logrotate.d/runt"}
    assert (x / "etc/runt/runt.yaml").read_text() == (REPO / "hack/runt.yaml").read_text()
    unit = (x / UNIT.lstrip("/")).read_text()
    for want in ("Type=notify", "KillMode=process", "Delegate=yes", "Restart=on-failure"):
        assert re.search(rf"^{re.escape(want)}$", unit, re.M), f"{want} not in the unit"
    assert re.search(rf"^ExecStart={LIBEXEC}/runtd .*--config /etc/runt/runt.yaml", unit, re.M)
    assert re.search(r"^LimitNOFILE=(\d+|infinity)$", unit, re.M)
    for page in ("usr/share/man/man8/runtd.8.gz", "usr/share/man/man5/runt.yaml.5.gz"):
        assert (x / page).is_file(), page
    # Every package it depends on, recommends or suggests is one Debian 12 has (Built-Using
    # names the source packages of the static helpers' libraries).
    names = set()
    for field in ("Depends", "Recommends", "Suggests"):
        for dep in re.split(r"[,|]", package.field(field)):
            if dep.strip():
                names.add(dep.split()[0])
    assert {"skopeo", "containernetworking-plugins", "iptables", "liblxc1"} <= names, names
    res = subprocess.run(["apt-cache", "policy", *sorted(names)], capture_output=True,
                         text=True, check=True)
    candidates = dict(re.findall(r"^(\S+):\n(?:  .*\n)*?  Candidate: (\S+)", res.stdout, re.M))
    unknown = sorted(n for n in names if candidates.get(n, "(none)") == "(none)")
    assert not unknown, f"not Debian packages here: {unknown}\n{res.stdout}"
    built_using = package.field("Built-Using")
    for src in ("glibc", "libseccomp", "libcap2", "openssl"):
        assert f"{src} (= " in built_using, built_using


def test_install_run_a_pod_and_purge(package, image_layout, node_factory):
    node = node_factory()
    image = node.start_registry(image_layout, "busybox", "pkg/busybox:1")
    assert not node.installed(), "the host has runt installed: the node would not be fresh"
    before = node.upper_entries()

    res = node.dpkg("-i", package.deb)
    assert node.installed(), res.stdout + res.stderr
    files = package_files(node)
    # The default network (the node had none), the configuration, the unit enabled.
    assert node.read(CONFLIST) == (REPO / "hack/10-runt.conflist").read_text()
    assert node.read("/etc/runt/runt.yaml") == (REPO / "hack/runt.yaml").read_text()
    assert node.exists("/etc/systemd/system/multi-user.target.wants/runt.service")

    node.start_runtd()
    run = PodRun(node, image)
    try:
        run.start()
        run.check_running()
        # The pod's masquerade rule is the node's, named by the pod (so the check after the
        # purge looks at the right table).
        assert run.pod in node.run(["iptables-save"]).stdout
        run.remove()
    finally:
        run.close()
    assert node.stop_runtd() == 0, node.runtd_log()[-3000:]
    assert not node.socket.exists(), "runtd left its socket"
    no_errors_logged(node)
    # runtd removed liblxc's lock files with its containers (the purge would hide it).
    assert not node.run(["find", "/run/lxc/lock", "-type", "f"]).stdout

    res = node.dpkg("--purge", "runt")
    assert "still running" not in res.stderr, res.stderr
    left = leftovers(node, before, files)
    assert not left, f"left behind after the purge: {json.dumps(left, indent=1)}"


def test_default_network_only_on_a_node_without_one(package, node_factory):
    # A node with a network of its own: none added, and the purge leaves it alone.
    node = node_factory()
    other = json.dumps({"cniVersion": "1.0.0", "name": "other",
                        "plugins": [{"type": "loopback"}]}) + "\n"
    node.sh("mkdir -p /etc/cni/net.d && cat >/etc/cni/net.d/50-other.conflist",
            input=other)
    before = node.upper_entries()
    node.dpkg("-i", package.deb)
    files = package_files(node)
    assert not node.exists(CONFLIST)
    node.dpkg("--purge", "runt")
    assert node.read("/etc/cni/net.d/50-other.conflist") == other
    assert not leftovers(node, before, files)

    # The default network, changed by the administrator: neither a reinstall nor the purge
    # touches it.
    node = node_factory()
    before = node.upper_entries()
    node.dpkg("-i", package.deb)
    files = package_files(node)
    assert node.run(["stat", "-c", "%a %U", CONFLIST]).stdout.split() == ["644", "root"]
    node.sh(f"sed -i 's/10.211.0.0/10.212.0.0/' {CONFLIST}")
    changed = node.sha256(CONFLIST)
    node.dpkg("-i", package.deb)
    assert node.sha256(CONFLIST) == changed
    res = node.dpkg("--purge", "runt")
    assert "was changed; it is left in place" in res.stderr, res.stderr
    assert node.sha256(CONFLIST) == changed
    assert not leftovers(node, before, files, allowed=(CONFLIST,))

    # Removed by the administrator: an upgrade (a reinstall) does not bring it back.
    node = node_factory()
    before = node.upper_entries()
    node.dpkg("-i", package.deb)
    files = package_files(node)
    node.run(["rm", CONFLIST])
    node.dpkg("-i", package.deb)
    assert not node.exists(CONFLIST)
    node.dpkg("--purge", "runt")
    assert not leftovers(node, before, files)


def test_pods_outlive_runtd_and_the_package(package, image_layout, node_factory):
    """runtd stopped (KillMode=process) and the package purged with a pod running: the pod
    keeps running and its state is kept; reinstalled, runtd takes it back; once it is
    removed, a purge leaves nothing."""
    node = node_factory()
    image = node.start_registry(image_layout, "busybox", "pkg/busybox:1")
    before = node.upper_entries()
    node.dpkg("-i", package.deb)
    files = package_files(node)
    node.start_runtd()
    run = PodRun(node, image)
    try:
        run.start()
        run.check_running()
        assert node.stop_runtd() == 0
        mine = [p for p, cl in node.processes() if run.cid in cl]
        assert mine, f"no process of container {run.cid} after runtd stopped"

        res = node.dpkg("--purge", "runt")
        assert "pods are still running" in res.stderr, res.stderr
        assert node.exists("/var/lib/runt/runt.db") and node.exists(CONFLIST)
        assert all(Path(f"/proc/{p}").exists() for p in mine), "the pod died with the purge"
        assert not node.exists(f"{LIBEXEC}/runtd")

        node.dpkg("-i", package.deb)
        node.start_runtd()
        run.reconnect()
        run.check_running()
        run.remove()
    finally:
        run.close()
    assert node.stop_runtd() == 0
    no_errors_logged(node)
    res = node.dpkg("--purge", "runt")
    assert "still running" not in res.stderr, res.stderr
    left = leftovers(node, before, files)
    assert not left, f"left behind after the purge: {json.dumps(left, indent=1)}"


# --------------------------------------------------------------------------- man pages


def config_keys():
    """Every key common/config.c reads, dotted ("cni.conf_dir"), plus the keys of a
    registries entry and of a handler."""
    src = (REPO / "common" / "config.c").read_text()
    tables = {}
    for name, body in re.findall(r"static const struct field (\w+)\[\] = \{(.*?)\n\};", src,
                                 re.S):
        entries = re.findall(r'F_(?:STR|NUM|FN)\("(\w+)"|\.key = "(\w+)"|F_SUB\("(\w+)", (\w+)\)',
                             body)
        tables[name] = entries
    keys = []

    def walk(table, prefix):
        for plain, dotted, sub, subtable in tables[table]:
            if sub:
                walk(subtable, prefix + sub + ".")
            else:
                keys.append(prefix + (plain or dotted))

    walk("top_fields", "")
    keys += re.findall(r'strcmp\(scalar\(key\), "(\w+)"\)', src)
    return keys


def backend_options():
    mv = (REPO / "backends/microvm/microvm.c").read_text()
    known = re.search(r"known\[\] = \{(.*?)\};", mv, re.S).group(1)
    px = (REPO / "backends/proxmox/px-opts.c").read_text()
    pknown = re.search(r"px_known\[\] = \{(.*?)\};", px, re.S).group(1)
    lxc = "".join(p.read_text() for p in (REPO / "backends/lxc").glob("*.c"))
    return (re.findall(r'"(\w+)"', known) + re.findall(r'"(\w+)"', pknown)
            + re.findall(r'be_config_option\(cfg, "(\w+)"\)', lxc))


def test_man_pages_document_every_key_and_option():
    page = (REPO / "docs/man/runt.yaml.5").read_text()
    keys = config_keys()
    assert "cni.conf_dir" in keys and "stats.fs_interval" in keys and "backend" in keys, keys
    # Each is the head of an item (the line after .TP), alone or among others.
    lines = page.splitlines()
    heads = set()
    for i, line in enumerate(lines[:-1]):
        if line == ".TP":
            heads |= set(re.findall(r"[\w.]+", lines[i + 1].replace("\\-", "-")))
    missing = [k for k in keys + backend_options() if k not in heads]
    assert not missing, f"runt.yaml(5) does not document: {missing}"

    page = (REPO / "docs/man/runtd.8").read_text()
    main = (REPO / "cri/main.c").read_text()
    longopts = re.findall(r'\{"([a-z-]+)", (?:no|required)_argument', main)
    assert "config" in longopts and "log-file" in longopts, longopts
    missing = [o for o in longopts if "\\-\\-" + o.replace("-", "\\-") not in page]
    assert not missing, f"runtd(8) does not document --{missing}"

    for p in ("docs/man/runtd.8", "docs/man/runt.yaml.5"):
        res = subprocess.run(["groff", "-man", "-ww", "-z", str(REPO / p)], capture_output=True,
                             text=True)
        assert res.returncode == 0 and not res.stderr, f"{p}: {res.stderr}"
