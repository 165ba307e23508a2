"""End-to-end tests of runtd over its real gRPC unix socket.

Run with Debian's interpreter (python3-grpcio, python3-grpc-tools, python3-pytest):

    /usr/bin/python3 -m pytest test/e2e -q

Environment:
    RUNTD           the runtd binary (default <repo>/build/dev/cri/runtd)
    RUNT_VALGRIND=1 run every daemon the fixtures start under valgrind and check its leak
                    report at teardown; only the tests marked "valgrind" run then (set
                    RUNT_VALGRIND_ALL=1 to run all of them anyway). `-m valgrind` selects
                    the same subset without valgrind.
    RUNT_SHARED_DIR the shared directory holding cri-golden/RPCS.txt (default <repo>/../shared)

The Python stubs are generated from proto/api.proto at session start, into a temp dir.
"""

import atexit
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "proto" / "api.proto"
SHARED = Path(os.environ.get("RUNT_SHARED_DIR", REPO.parent / "shared"))
RPCS_TXT = SHARED / "cri-golden" / "RPCS.txt"
RUNTD = Path(os.environ.get("RUNTD", REPO / "build" / "dev" / "cri" / "runtd"))
CNI_BIN_DIR = "/usr/lib/cni"
VALGRIND = os.environ.get("RUNT_VALGRIND", "") not in ("", "0")

# The fake Proxmox VE and its client helper (test/pvefake) are importable from every e2e test.
sys.path.insert(0, str(REPO / "test" / "pvefake"))

# Under valgrind everything is 20-50x slower.
START_TIMEOUT = 30.0 if VALGRIND else 5.0
STOP_TIMEOUT = 15.0 if VALGRIND else 1.0
CALL_TIMEOUT = 30.0 if VALGRIND else 5.0

# The RPCs runtd implements today; every other one must answer UNIMPLEMENTED.
IMPLEMENTED = {
    "RuntimeService/Version",
    "RuntimeService/Status",
    "RuntimeService/RuntimeConfig",
    "ImageService/ImageFsInfo",
    "ImageService/ListImages",
    "ImageService/ImageStatus",
    "ImageService/PullImage",
    "ImageService/RemoveImage",
    "RuntimeService/RunPodSandbox",
    "RuntimeService/StopPodSandbox",
    "RuntimeService/RemovePodSandbox",
    "RuntimeService/PodSandboxStatus",
    "RuntimeService/ListPodSandbox",
    "RuntimeService/CreateContainer",
    "RuntimeService/StartContainer",
    "RuntimeService/StopContainer",
    "RuntimeService/RemoveContainer",
    "RuntimeService/ListContainers",
    "RuntimeService/ContainerStatus",
    "RuntimeService/UpdateContainerResources",
    "RuntimeService/ReopenContainerLog",
    "RuntimeService/ExecSync",
    "RuntimeService/Exec",
    "RuntimeService/Attach",
    "RuntimeService/PortForward",
    "RuntimeService/PodSandboxStats",
    "RuntimeService/ListPodSandboxStats",
    "RuntimeService/ListMetricDescriptors",
    "RuntimeService/ListPodSandboxMetrics",
    "RuntimeService/ContainerStats",
    "RuntimeService/ListContainerStats",
    "RuntimeService/StreamPodSandboxes",
    "RuntimeService/StreamContainers",
    "RuntimeService/StreamContainerStats",
    "RuntimeService/StreamPodSandboxStats",
    "RuntimeService/StreamPodSandboxMetrics",
    "ImageService/StreamImages",
    "RuntimeService/GetContainerEvents",
    "RuntimeService/UpdateRuntimeConfig",
    "RuntimeService/UpdatePodSandboxResources",
}
# Server streams that never end by themselves: a call that was accepted runs until its
# deadline (callers give them a short one and count DEADLINE_EXCEEDED as accepted).
LONG_LIVED = {"RuntimeService/GetContainerEvents"}
# Implemented RPCs whose empty request is invalid (a required field is missing).
NEEDS_FIELDS = {"ImageService/ImageStatus", "ImageService/PullImage", "ImageService/RemoveImage",
                "RuntimeService/RunPodSandbox", "RuntimeService/StopPodSandbox",
                "RuntimeService/RemovePodSandbox", "RuntimeService/PodSandboxStatus",
                "RuntimeService/PodSandboxStats",
                "RuntimeService/CreateContainer", "RuntimeService/StartContainer",
                "RuntimeService/StopContainer", "RuntimeService/RemoveContainer",
                "RuntimeService/ContainerStatus", "RuntimeService/UpdateContainerResources",
                "RuntimeService/ReopenContainerLog", "RuntimeService/ExecSync",
                "RuntimeService/Exec", "RuntimeService/Attach", "RuntimeService/PortForward",
                "RuntimeService/ContainerStats", "RuntimeService/UpdatePodSandboxResources"}

# Every runtd the tests start sends its non-loopback HTTP(S) through a proxy that is not
# there, so a reference that names a real registry (fuzzed requests make such names) fails
# at once with "connection refused" and nothing leaves this machine, not even a DNS query.
# Go never proxies loopback, so the local registries are reached directly.
RUNTD_ENV = dict(os.environ, HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
                 http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
                 NO_PROXY="127.0.0.1,localhost,::1", no_proxy="127.0.0.1,localhost,::1")


# --------------------------------------------------------------------------- stubs


def _generate_stubs():
    out = Path(tempfile.mkdtemp(prefix="runt-e2e-gen-"))
    cmd = [
        "/usr/bin/python3", "-m", "grpc_tools.protoc",
        f"-I{PROTO.parent}", f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"protoc failed ({res.returncode}): {res.stderr}")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    sys.path.insert(0, str(out))
    return out


_GEN_DIR = _generate_stubs()
import grpc  # noqa: E402
import api_pb2  # noqa: E402
import api_pb2_grpc  # noqa: E402

pb = api_pb2


def load_rpcs():
    """[(\"RuntimeService/Version\", streaming: bool), ...] from the golden RPCS.txt."""
    rpcs = []
    for line in RPCS_TXT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, kind = line.split()
        assert kind in ("unary", "server-streaming"), line
        rpcs.append((name, kind == "server-streaming"))
    return rpcs


RPCS = load_rpcs() if RPCS_TXT.exists() else []


def full_path(rpc):
    return f"/runtime.v1.{rpc}"


def method_descriptor(rpc):
    svc, name = rpc.split("/")
    return pb.DESCRIPTOR.services_by_name[svc].methods_by_name[name]


# --------------------------------------------------------------------------- pytest hooks


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "valgrind: small subset also run with RUNT_VALGRIND=1 (leak checked)")
    config.addinivalue_line("markers", "root: needs root")


def pytest_collection_modifyitems(config, items):
    if not VALGRIND or os.environ.get("RUNT_VALGRIND_ALL"):
        return
    skip = pytest.mark.skip(reason="RUNT_VALGRIND=1 runs only the tests marked valgrind")
    for item in items:
        if "valgrind" not in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------- the daemon


def yaml_str(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_config(cni_conf_dir, bin_dirs=(CNI_BIN_DIR,), runtimes=None, default_runtime=None,
                images=None, streaming=None, server=None, containers=None, stats=None, metrics=None,
                audit=None):
    """A runt.yaml text. runtimes: {name: (backend, {option: value})}. images, streaming,
    server, containers: the `images:` / `streaming:` / `server:` / `containers:` sections as
    dicts (written as JSON, a YAML flow mapping), or None (no such section). audit: the
    `audit:` section; None turns the audit log off (its built-in path is the host's
    /var/log/runt)."""
    if runtimes is None:
        runtimes = {"lxc": ("lxc", {}), "fake": ("fake", {})}
    lines = [
        "cni:",
        f"  conf_dir: {yaml_str(cni_conf_dir)}",
        "  bin_dirs:",
    ]
    lines += [f"    - {yaml_str(b)}" for b in bin_dirs]
    lines.append("runtimes:")
    for name, (backend, options) in runtimes.items():
        lines.append(f"  {name}:")
        lines.append(f"    backend: {backend}")
        if options:
            lines.append("    options:")
            lines += [f"      {k}: {yaml_str(v)}" for k, v in options.items()]
    if default_runtime:
        lines.append(f"default_runtime: {default_runtime}")
    if images is not None:
        lines.append("images: " + json.dumps(images))
    if streaming is not None:
        lines.append("streaming: " + json.dumps(streaming))
    if server is not None:
        lines.append("server: " + json.dumps(server))
    if containers is not None:
        lines.append("containers: " + json.dumps(containers))
    if stats is not None:
        lines.append("stats: " + json.dumps(stats))
    if metrics is not None:
        lines.append("metrics: " + json.dumps(metrics))
    lines.append("audit: " + json.dumps(audit if audit is not None else {"path": None}))
    return "\n".join(lines) + "\n"


class Runtd:
    """One runtd process with its own directories under a short /tmp path."""

    def __init__(self, runtimes=None, default_runtime=None, valgrind=VALGRIND,
                 allow_log_errors=False, socket_path=None, log_to_file=True, images=None,
                 streaming=None, server=None, containers=None, stats=None, metrics=None,
                 audit=None):
        self.base = Path(tempfile.mkdtemp(prefix="runt-e2e-", dir="/tmp"))
        # Every daemon keeps an audit log of its own (test_audit.py reads it).
        self.audit_log = self.base / "audit.log"
        if audit is None:
            audit = {"path": str(self.audit_log)}
        self.cni_dir = self.base / "cni"
        self.state_dir = self.base / "state"
        self.root_dir = self.base / "root"
        self.run_dir = self.base / "run"
        self.cni_dir.mkdir()
        self.socket = Path(socket_path) if socket_path else self.base / "runt.sock"
        self.listen = f"unix://{self.socket}"
        self.config = self.base / "runt.yaml"
        self.config.write_text(make_config(str(self.cni_dir), runtimes=runtimes,
                                           default_runtime=default_runtime, images=images,
                                           streaming=streaming, server=server,
                                           containers=containers, stats=stats, metrics=metrics,
                                           audit=audit))
        self.log_file = self.base / "runtd.log"
        self.stderr_file = self.base / "stderr"
        self.vg_log = self.base / "valgrind.log"
        self.valgrind = valgrind
        self.log_to_file = log_to_file
        self.allow_log_errors = allow_log_errors
        self.proc = None
        self.channels = []
        self.exit_seconds = None

    # -- process

    def argv(self):
        argv = [
            str(RUNTD), "--config", str(self.config), "--listen", self.listen,
            "--state-dir", str(self.state_dir), "--root-dir", str(self.root_dir),
            "--run-dir", str(self.run_dir), "--log-level", "debug",
        ]
        if self.log_to_file:
            argv += ["--log-file", str(self.log_file)]
        if self.valgrind:
            argv = ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                    "--child-silent-after-fork=yes",
                    "--error-exitcode=99", f"--log-file={self.vg_log}"] + argv
        return argv

    def spawn(self):
        if getattr(self, "_stderr", None):
            self._stderr.close()
        self._stderr = open(self.stderr_file, "wb")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=subprocess.STDOUT,
                                     env=RUNTD_ENV)

    def start(self):
        if not RUNTD.exists():
            pytest.fail(f"runtd binary {RUNTD} does not exist (set RUNTD)")
        self.spawn()
        self.wait_ready()
        return self

    def diag(self):
        out = []
        for f in (self.stderr_file, self.log_file, self.vg_log):
            if f.exists():
                text = f.read_text(errors="replace")
                out.append(f"--- {f.name} (last 3000 chars)\n{text[-3000:]}")
        return "\n".join(out)

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"runtd exited with {self.proc.returncode} during start\n"
                            + self.diag())
            if self.socket.exists():
                ch = grpc.insecure_channel(self.listen)
                try:
                    api_pb2_grpc.RuntimeServiceStub(ch).Version(pb.VersionRequest(), timeout=1.0)
                    ch.close()
                    return
                except grpc.RpcError as e:
                    last = e
                finally:
                    ch.close()
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"runtd not ready after {START_TIMEOUT}s (last error {last})\n" + self.diag())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Waits for the process; returns (returncode, seconds since the call)."""
        t0 = time.monotonic()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"runtd did not exit within {timeout}s\n" + self.diag())
        return rc, time.monotonic() - t0

    def stop(self):
        """SIGTERM and check a clean, quick exit (and a clean valgrind report)."""
        if self.proc is None:
            return
        assert self.alive(), f"runtd died before teardown ({self.proc.returncode})\n" + self.diag()
        t0 = time.monotonic()
        self.signal(signal.SIGTERM)
        rc, _ = self.wait_exit()
        self.exit_seconds = time.monotonic() - t0
        self.close_channels()
        self.check_exit(rc)

    def check_exit(self, rc):
        assert rc == 0, f"runtd exited with {rc}\n" + self.diag()
        assert self.exit_seconds is None or self.exit_seconds < STOP_TIMEOUT
        assert not self.socket.exists(), f"socket {self.socket} left behind after exit"
        if self.valgrind:
            check_valgrind_log(self.vg_log)
        if not self.allow_log_errors and self.log_file.exists():
            errors = [l for l in self.log_file.read_text(errors="replace").splitlines()
                      if "level=error" in l]
            assert not errors, "runtd logged errors:\n" + "\n".join(errors[:20])

    def cleanup(self):
        self.close_channels()
        self.kill()
        if getattr(self, "_stderr", None):
            self._stderr.close()
        # microvm pods outlive runtd by design: a test that failed half-way leaves them.
        # Their VMs go, then the binds under the pod shares (before any rm: a bind of a
        # layer or volume must not be emptied through it).
        base = str(self.base).encode() + b"/"
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                cl = (p / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cl and (cl[0].endswith(b"qemu-system-x86_64") or cl[0].endswith(b"virtiofsd")) \
                    and base in b" ".join(cl):
                try:
                    os.kill(int(p.name), signal.SIGKILL)
                except OSError:
                    pass
        mounts = [line.split()[4] for line in
                  Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4].startswith(str(self.base) + "/")]
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL, check=False)
        try:
            shutil.rmtree(self.base, ignore_errors=True)
        except RecursionError:  # a tree deeper than Python's stack (test_deep_trees.py)
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], check=False)

    # -- clients

    def channel(self, **opts):
        ch = grpc.insecure_channel(self.listen, options=list(opts.items()))
        self.channels.append(ch)
        return ch

    def close_channels(self):
        for ch in self.channels:
            ch.close()
        self.channels = []

    def runtime(self, ch=None):
        return api_pb2_grpc.RuntimeServiceStub(ch or self.channel())

    def image(self, ch=None):
        return api_pb2_grpc.ImageServiceStub(ch or self.channel())

    def raw_unary(self, rpc, ch=None):
        """A callable sending raw request bytes to /runtime.v1.<rpc>, returning raw bytes."""
        return (ch or self.channel()).unary_unary(full_path(rpc))

    def raw_stream(self, rpc, ch=None):
        return (ch or self.channel()).unary_stream(full_path(rpc))

    def log_text(self):
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


# runtd refreshes ImageFsInfo's figures in the background, at most every few seconds
# (issue 14): a test that changed the disk waits for figures measured after its change.
FS_INFO_FRESH_TIMEOUT = 20


def fresh_fs_info(img, since_ns=None, timeout=FS_INFO_FRESH_TIMEOUT):
    """An ImageFsInfoResponse whose figures were all measured at or after since_ns
    (CLOCK_REALTIME ns, default now)."""
    since_ns = time.time_ns() if since_ns is None else since_ns
    deadline = time.monotonic() + timeout
    while True:
        r = img.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=CALL_TIMEOUT)
        stamps = [u.timestamp for u in (*r.image_filesystems, *r.container_filesystems)]
        if stamps and min(stamps) >= since_ns:
            return r
        assert time.monotonic() < deadline, f"ImageFsInfo not refreshed since {since_ns}: {r}"
        time.sleep(0.2)


def check_valgrind_log(path):
    text = Path(path).read_text(errors="replace")
    assert "ERROR SUMMARY: 0 errors" in text, f"valgrind reported errors:\n{text[-6000:]}"
    assert ("definitely lost: 0 bytes" in text or "no leaks are possible" in text
            or "All heap blocks were freed" in text), f"valgrind found leaks:\n{text[-6000:]}"


@pytest.fixture(scope="session", autouse=True)
def runtd_binary():
    if not RUNTD.is_file() or not os.access(RUNTD, os.X_OK):
        pytest.fail(f"runtd binary {RUNTD} not found: build it or set RUNTD", pytrace=False)
    if VALGRIND and not shutil.which("valgrind"):
        pytest.fail("RUNT_VALGRIND=1 but valgrind is not installed", pytrace=False)
    return RUNTD


def _runtd_factory():
    started = []

    def make(start=True, **kw):
        d = Runtd(**kw)
        started.append(d)
        return d.start() if start else d

    yield make
    try:
        for d in started:
            if d.proc is not None and d.proc.returncode is None:
                d.stop()
    finally:
        for d in started:
            d.cleanup()


@pytest.fixture
def runtd_factory():
    """runtd_factory(**Runtd kwargs) -> a started Runtd, stopped and checked at teardown."""
    yield from _runtd_factory()


@pytest.fixture(scope="module")
def module_runtd_factory():
    """As runtd_factory, for daemons a whole module of tests shares."""
    yield from _runtd_factory()


@pytest.fixture
def runtd(runtd_factory):
    return runtd_factory()


@pytest.fixture(scope="module")
def shared_runtd():
    """One daemon for a whole module of tests that do not change its state."""
    d = Runtd()
    try:
        d.start()
        yield d
        d.stop()
    finally:
        d.cleanup()


# --------------------------------------------------------------------------- registries

REGISTRY_USER = "runt-e2e"
# Unique per session, so that a test can look for it in logs and files.
REGISTRY_PASSWORD = "pw-" + os.urandom(12).hex()


@pytest.fixture(scope="session")
def registry():
    """A plain-HTTP docker-registry on 127.0.0.1:<free port>, once per session."""
    from registry import Registry

    r = Registry()
    try:
        yield r.start()
    finally:
        r.stop()


@pytest.fixture(scope="session")
def auth_registry():
    """A docker-registry with htpasswd auth (REGISTRY_USER / REGISTRY_PASSWORD)."""
    from registry import Registry

    r = Registry(auth=(REGISTRY_USER, REGISTRY_PASSWORD))
    try:
        yield r.start()
    finally:
        r.stop()


# --------------------------------------------------------------------------- messages


def fill_message(msg, depth=0, max_depth=2, rng=None):
    """Sets every field of @msg to some non-default value, nesting @max_depth levels."""
    from google.protobuf.descriptor import FieldDescriptor as F

    rng = rng or random.Random(1)
    for f in msg.DESCRIPTOR.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            kf, vf = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            if vf.message_type is None:
                getattr(msg, f.name)[_scalar(kf, rng)] = _scalar(vf, rng)
            elif depth < max_depth:
                fill_message(getattr(msg, f.name)[_scalar(kf, rng)], depth + 1, max_depth, rng)
            continue
        if f.type == F.TYPE_MESSAGE:
            if depth >= max_depth:
                continue
            if f.label == F.LABEL_REPEATED:
                fill_message(getattr(msg, f.name).add(), depth + 1, max_depth, rng)
            else:
                fill_message(getattr(msg, f.name), depth + 1, max_depth, rng)
                getattr(msg, f.name).SetInParent()
            continue
        if f.label == F.LABEL_REPEATED:
            getattr(msg, f.name).extend([_scalar(f, rng), _scalar(f, rng)])
        else:
            setattr(msg, f.name, _scalar(f, rng))
    return msg


def _scalar(f, rng):
    from google.protobuf.descriptor import FieldDescriptor as F

    t = f.type
    if t == F.TYPE_STRING:
        return rng.choice(["a", "pod-1", "k8s.io/x", "ümlaut"])
    if t == F.TYPE_BYTES:
        return bytes([rng.randrange(256) for _ in range(3)])
    if t == F.TYPE_BOOL:
        return True
    if t == F.TYPE_ENUM:
        values = [v.number for v in f.enum_type.values]
        return max(values)
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return 1.5
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return -7
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return -(1 << 40)
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return 300
    if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return 1 << 40
    raise AssertionError(f"unhandled field type {t} of {f.full_name}")


# Unknown fields (numbers no CRI request uses) that a conforming parser skips: a varint,
# a length-delimited field and a fixed64. They make every request non-empty, even those
# whose message has no fields (ImageFsInfoRequest, RuntimeConfigRequest ...).
UNKNOWN_FIELDS = (bytes([0xF8, 0x3F, 0x96, 0x01])            # field 1023 varint 150
                  + bytes([0xFA, 0x3F, 0x03]) + b"abc"       # field 1023 bytes "abc"
                  + bytes([0xF9, 0x3F]) + bytes(range(8)))   # field 1023 fixed64


def valid_request(rpc, max_depth=2):
    """A valid, non-empty serialized request for @rpc (with known and unknown fields)."""
    md = method_descriptor(rpc)
    cls = getattr(pb, md.input_type.name)
    data = fill_message(cls(), max_depth=max_depth).SerializeToString() + UNKNOWN_FIELDS
    cls().ParseFromString(data)  # sanity: it is valid
    return data


def parses(rpc, data):
    md = method_descriptor(rpc)
    try:
        getattr(pb, md.input_type.name)().ParseFromString(data)
        return True
    except Exception:
        return False
