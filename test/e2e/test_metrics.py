"""The metrics endpoint (metrics.address) and the RuntimeService methods added with it:
UpdateRuntimeConfig, UpdatePodSandboxResources, CheckpointContainer's refusal, Status
features and RuntimeConfig's cgroup driver.

The exposition is read with a strict parser of the Prometheus text format 0.0.4 written
here: every sample belongs to a family declared before it, families are contiguous,
histogram buckets are cumulative and end in +Inf equal to _count, label values are escaped
as the format says."""

import json
import math
import os
import re
import socket
import time
import uuid
from pathlib import Path

import grpc
import pytest

from conftest import CALL_TIMEOUT, Runtd, pb
from test_containers import Ctrs, images  # noqa: F401 (images is a fixture)

ROOT = os.geteuid() == 0
T = 60

# ------------------------------------------------------------------ the parser

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class ParseError(AssertionError):
    pass


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise ParseError(f"bad value {s!r}")
    return float(s)


def parse_labels(s, i, lineno):
    """Parses '{a="x",b="y"}' from s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise ParseError(f"line {lineno}: bad label name at {s[i:]!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ParseError(f"line {lineno}: expected =\" after {name}")
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise ParseError(f"line {lineno}: unterminated label value")
            c = s[i]
            if c == "\\":
                nxt = s[i + 1] if i + 1 < len(s) else ""
                if nxt not in ('\\', '"', "n"):
                    raise ParseError(f"line {lineno}: bad escape \\{nxt}")
                val.append("\n" if nxt == "n" else nxt)
                i += 2
                continue
            if c == '"':
                i += 1
                break
            if c == "\n":
                raise ParseError(f"line {lineno}: raw newline in a label value")
            val.append(c)
            i += 1
        if name in labels:
            raise ParseError(f"line {lineno}: label {name} twice")
        labels[name] = "".join(val)
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise ParseError(f"line {lineno}: expected , or }} at {s[i:]!r}")


def parse_exposition(text):
    """{family: {"type", "help", "samples": [(name, labels, value)]}}; raises ParseError."""
    if text and not text.endswith("\n"):
        raise ParseError("the last line has no newline")
    fams = {}
    current = None
    closed = set()
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if not line:
            raise ParseError(f"line {lineno}: empty line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise ParseError(f"line {lineno}: bad family name {name!r}")
                f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
                if name in closed or (f["samples"] and current != name):
                    raise ParseError(f"line {lineno}: {name} declared after its samples")
                if current and current != name:
                    closed.add(current)
                current = name
                if parts[1] == "HELP":
                    if f["help"] is not None:
                        raise ParseError(f"line {lineno}: second HELP for {name}")
                    help_text = parts[3] if len(parts) > 3 else ""
                    if re.search(r"\\[^\\n]", help_text.replace("\\\\", "")):
                        raise ParseError(f"line {lineno}: bad escape in HELP")
                    f["help"] = help_text
                else:
                    if f["type"] is not None or f["samples"]:
                        raise ParseError(f"line {lineno}: TYPE for {name} again or late")
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise ParseError(f"line {lineno}: bad TYPE line")
                    f["type"] = parts[3]
            continue
        m = NAME.match(line)
        if not m:
            raise ParseError(f"line {lineno}: bad sample {line!r}")
        sname = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i, lineno)
        if i >= len(line) or line[i] != " ":
            raise ParseError(f"line {lineno}: expected a space before the value")
        rest = line[i + 1:].split(" ")
        if len(rest) not in (1, 2):
            raise ParseError(f"line {lineno}: bad value/timestamp {line[i:]!r}")
        value = parse_value(rest[0])
        fam = None
        for cand in (sname, re.sub(r"_(bucket|sum|count)$", "", sname)):
            if cand in fams and fams[cand]["type"]:
                fam = cand
                break
        if fam is None:
            raise ParseError(f"line {lineno}: sample {sname} of no declared family")
        ftype = fams[fam]["type"]
        if fam != current:
            raise ParseError(f"line {lineno}: sample of {fam} outside its family's block")
        if ftype == "histogram":
            if sname == fam:
                raise ParseError(f"line {lineno}: a histogram sample must have a suffix")
            if sname.endswith("_bucket") != ("le" in labels):
                raise ParseError(f"line {lineno}: le belongs to _bucket only")
        elif sname != fam:
            raise ParseError(f"line {lineno}: {sname} in {ftype} family {fam}")
        if ftype == "counter" and (value < 0 or math.isnan(value)):
            raise ParseError(f"line {lineno}: negative counter")
        fams[fam]["samples"].append((sname, labels, value))
    for name, f in fams.items():
        if f["type"] is None:
            raise ParseError(f"{name}: no TYPE")
        if f["type"] == "histogram":
            check_histogram(name, f["samples"])
    return fams


def check_histogram(name, samples):
    series = {}
    for sname, labels, value in samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if sname.endswith("_bucket"):
            s["buckets"].append((parse_value(labels["le"]), value))
        elif sname.endswith("_sum"):
            s["sum"] = value
        else:
            s["count"] = value
    for key, s in series.items():
        b = s["buckets"]
        if not b or b[-1][0] != math.inf:
            raise ParseError(f"{name}{key}: buckets do not end in +Inf")
        if any(b[i][0] >= b[i + 1][0] for i in range(len(b) - 1)):
            raise ParseError(f"{name}{key}: le not ascending")
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            raise ParseError(f"{name}{key}: buckets not cumulative")
        if s["count"] is None or s["sum"] is None:
            raise ParseError(f"{name}{key}: no _count or _sum")
        if b[-1][1] != s["count"]:
            raise ParseError(f"{name}{key}: +Inf {b[-1][1]} != _count {s['count']}")


def value(fams, family, sample=None, **labels):
    """The sample of @family (name @sample, default the family's) whose labels include
    @labels; 0 when there is none (sparse series appear once touched)."""
    sample = sample or family
    found = [v for n, ls, v in fams.get(family, {"samples": []})["samples"]
             if n == sample and all(ls.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, (family, labels, found)
    return found[0] if found else 0


# ------------------------------------------------------------------ helpers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, raw, timeout=10):
    """Sends @raw bytes, returns (status code, headers dict, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    code = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    assert int(headers["content-length"]) == len(body)
    return code, headers, body


def scrape(port):
    code, headers, body = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert code == 200, body
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert headers["connection"] == "close"
    return parse_exposition(body.decode())


# ------------------------------------------------------------------ the endpoint


@pytest.fixture
def fake_runtd(runtd_factory):
    port = free_port()
    d = runtd_factory(runtimes={"fake": ("fake", {})}, default_runtime="fake",
                      metrics={"address": f"127.0.0.1:{port}"})
    d.metrics_port = port
    return d


def test_parser_rejects_what_it_must():
    good = ('# HELP a_total x\n# TYPE a_total counter\na_total{l="q\\"\\\\\\n"} 1\n'
            '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\n'
            'h_count 2\n')
    assert parse_exposition(good)["a_total"]["samples"][0][1] == {"l": 'q"\\\n'}
    for bad in ('a 1\n',                                              # no family
                '# TYPE a counter\na{l="x} 1\n',                      # unterminated
                '# TYPE a counter\na{l="\\t"} 1\n',                   # bad escape
                '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\n'
                'h_count 1\n',                                        # not cumulative
                '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',  # no +Inf
                '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
                '# TYPE a counter\n# TYPE b counter\na 1\n',          # out of its block
                '# TYPE a counter\na 1'):                             # no final newline
        with pytest.raises(ParseError):
            parse_exposition(bad)


def test_endpoint_answers(fake_runtd):
    port = fake_runtd.metrics_port
    fams = scrape(port)
    for name, typ in (("runt_grpc_request_duration_seconds", "histogram"),
                      ("runt_grpc_requests_total", "counter"),
                      ("runt_pod_sandboxes", "gauge"), ("runt_containers", "gauge"),
                      ("runt_image_pull_bytes_total", "counter"),
                      ("runt_image_pull_duration_seconds", "histogram"),
                      ("runt_cni_operation_duration_seconds", "histogram"),
                      ("runt_backend_operation_duration_seconds", "histogram")):
        assert fams[name]["type"] == typ, name
        assert fams[name]["help"], name
    # The Version call runtd_factory made to see it ready is counted.
    assert value(fams, "runt_grpc_requests_total", method="Version", code="OK") >= 1
    code, _, body = http(port, b"GET /other HTTP/1.1\r\n\r\n")
    assert code == 404 and b"/metrics" in body
    code, headers, _ = http(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert code == 405 and headers["allow"] == "GET"
    code, _, _ = http(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert code == 405
    code, _, _ = http(port, b"nonsense\r\n\r\n")
    assert code == 400
    code, _, _ = http(port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
    assert code == 200
    code, _, _ = http(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n")
    assert code == 431


def test_idle_client_is_dropped_and_scrapes_go_on(fake_runtd):
    port = fake_runtd.metrics_port
    idle = socket.create_connection(("127.0.0.1", port))
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"GET /metrics HTTP/1.1\r\n")  # never finishes its headers
    t0 = time.monotonic()
    try:
        for _ in range(3):
            scrape(port)  # the idle ones hold two slots of four, not the server
        idle.settimeout(15)
        assert idle.recv(1) == b""  # closed by the server
        took = time.monotonic() - t0
        assert 4 <= took <= 9, took
        half.settimeout(5)
        assert half.recv(1) == b""
        scrape(port)
    finally:
        idle.close()
        half.close()


def test_full_house_waits_for_a_slot(fake_runtd):
    """Four idle clients fill every slot: a scrape waits in the backlog until the read
    timeout frees one, then is served."""
    port = fake_runtd.metrics_port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        time.sleep(0.2)
        t0 = time.monotonic()
        scrape(port)
        assert time.monotonic() - t0 <= 9
    finally:
        for s in idle:
            s.close()


def test_address_must_be_a_literal(runtd_factory):
    for bad in ("localhost:9100", "127.0.0.1", "::1:9100"):
        d = runtd_factory(start=False, metrics={"address": bad})
        d.spawn()
        rc, _ = d.wait_exit(timeout=10)
        assert rc != 0
        text = d.stderr_file.read_text()
        assert "metrics.address" in text and bad in text, text
        d.proc = None  # nothing to stop at teardown


def test_metrics_off_by_default(runtd):
    assert "metrics=off" in runtd.log_text()


def test_empty_address_is_off(runtd_factory):
    d = runtd_factory(metrics={"address": ""})
    assert "metrics=off" in d.log_text()


# ------------------------------------------------------------------ values that move


@pytest.mark.skipif(not ROOT, reason="LXC containers need root")
def test_values_move_with_a_pod_lifecycle_and_pulls(runtd_factory, tmp_path, images):  # noqa: F811
    port = free_port()
    c = Ctrs(runtd_factory, tmp_path, images, metrics={"address": f"127.0.0.1:{port}"})
    try:
        # Ctrs pulled every test image from the local registry at start.
        m = scrape(port)
        assert value(m, "runt_image_pull_bytes_total") > 0
        assert value(m, "runt_image_pulls_total", result="success") == len(images)
        assert value(m, "runt_image_pull_duration_seconds",
                     "runt_image_pull_duration_seconds_count") == len(images)
        assert value(m, "runt_image_pulls_in_progress") == 0

        before = value(m, "runt_grpc_requests_total", method="ListPodSandbox", code="OK")
        for _ in range(3):
            c.list()
        m = scrape(port)
        assert value(m, "runt_grpc_requests_total", method="ListPodSandbox",
                     code="OK") == before + 3
        assert value(m, "runt_grpc_request_duration_seconds",
                     "runt_grpc_request_duration_seconds_count",
                     method="ListPodSandbox") >= 3

        pid, cfg = c.pod("m")
        cid = c.run_ctr(pid, cfg, command=["/bin/sleep", "600"])
        m = scrape(port)
        ready = sum(1 for p in c.list() if p.state == pb.SANDBOX_READY)
        assert value(m, "runt_pod_sandboxes", state="ready") == ready == 1
        assert value(m, "runt_pod_sandboxes", state="notready") == 0
        assert value(m, "runt_containers", state="running") == 1
        assert value(m, "runt_cni_operation_duration_seconds",
                     "runt_cni_operation_duration_seconds_count", op="ADD") == 1
        for op in ("sandbox_create", "container_create", "container_start"):
            assert value(m, "runt_backend_operation_duration_seconds",
                         "runt_backend_operation_duration_seconds_count",
                         backend="lxc", handler="lxc", op=op) >= 1, op

        c.cstop(cid, timeout=1)
        m = scrape(port)
        assert value(m, "runt_containers", state="exited") == 1
        assert value(m, "runt_containers", state="running") == 0
        c.stop(pid)
        m = scrape(port)
        assert value(m, "runt_pod_sandboxes", state="notready") == 1
        assert value(m, "runt_cni_operation_duration_seconds",
                     "runt_cni_operation_duration_seconds_count", op="DEL") >= 1
        c.remove(pid)
        m = scrape(port)
        assert value(m, "runt_pod_sandboxes", state="notready") == 0
        assert value(m, "runt_containers", state="exited") == 0
        assert value(m, "runt_backend_operation_duration_seconds",
                     "runt_backend_operation_duration_seconds_count",
                     backend="lxc", handler="lxc", op="sandbox_remove") >= 1
        # A failed call is counted under its code.
        with pytest.raises(grpc.RpcError):
            c.status("f" * 64)
        m = scrape(port)
        assert value(m, "runt_grpc_requests_total", method="PodSandboxStatus",
                     code="NOT_FOUND") == 1
    finally:
        c.cleanup()


@pytest.mark.skipif(not ROOT, reason="pulls as root, like the other image tests")
def test_pull_progress_is_logged(runtd_factory, registry, tmp_path):
    """A pull that takes longer than the progress interval logs bytes and rate."""
    import registry as R

    (tmp_path / "oci").mkdir()
    lay = R.OciLayout.create(tmp_path / "oci")
    # Incompressible data, so the layer is big enough to take a while through skopeo.
    R.busybox_image(lay, "big", extra={"big.bin": os.urandom(48 << 20)})
    lay.push("big", registry.host, "metrics/big:1")
    lay.remove()
    port = free_port()
    d = runtd_factory(images={"registries": [{"prefix": registry.host, "insecure": True}]},
                      metrics={"address": f"127.0.0.1:{port}"})
    d.image().PullImage(pb.PullImageRequest(image=pb.ImageSpec(
        image=f"{registry.host}/metrics/big:1")), timeout=T)
    m = scrape(port)
    assert value(m, "runt_image_pull_bytes_total") >= 48 << 20
    lines = [l for l in d.log_text().splitlines() if "rate_bytes_per_s=" in l]
    if not lines:
        pytest.skip("the pull took under the 5 s progress interval on this machine")
    assert "level=info" in lines[0] and "bytes=" in lines[0]


# ------------------------------------------------------------------ RuntimeService


def status_info(d):
    r = d.runtime().Status(pb.StatusRequest(verbose=True), timeout=CALL_TIMEOUT)
    return r, {k: json.loads(v) for k, v in r.info.items()}


def test_update_runtime_config_is_kept(runtd_factory):
    d = runtd_factory(runtimes={"fake": ("fake", {})}, default_runtime="fake")
    rt = d.runtime()

    def update(cidr):
        rt.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(runtime_config=pb.RuntimeConfig(
            network_config=pb.NetworkConfig(pod_cidr=cidr))), timeout=CALL_TIMEOUT)

    assert status_info(d)[1]["runtimeConfig"]["podCIDR"] == ""
    update("10.244.3.0/24")
    assert status_info(d)[1]["runtimeConfig"]["podCIDR"] == "10.244.3.0/24"
    for bad in ("10.244.3.0", "10.244.3.0/33", "fd00::/129", "example/24", "10.0.0.0/8 "):
        with pytest.raises(grpc.RpcError) as e:
            update(bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert "pod_cidr" in e.value.details()
    # A refused one changes nothing; an empty request is allowed.
    assert status_info(d)[1]["runtimeConfig"]["podCIDR"] == "10.244.3.0/24"
    update("fd00:10::/64")
    d.stop()
    d.start()
    assert status_info(d)[1]["runtimeConfig"]["podCIDR"] == "fd00:10::/64"
    rt = d.runtime()
    rt.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(), timeout=CALL_TIMEOUT)
    assert status_info(d)[1]["runtimeConfig"]["podCIDR"] == ""


def test_status_features_and_cgroup_driver(runtd):
    r, _ = status_info(runtd)
    names = [h.name for h in r.runtime_handlers]
    assert "" in names and "lxc" in names and "fake" in names
    for h in r.runtime_handlers:
        assert not h.features.recursive_read_only_mounts, h.name
        assert not h.features.user_namespaces, h.name
    rc = runtd.runtime().RuntimeConfig(pb.RuntimeConfigRequest(), timeout=CALL_TIMEOUT)
    assert rc.linux.cgroup_driver == pb.CGROUPFS


def test_checkpoint_says_why(runtd):
    with pytest.raises(grpc.RpcError) as e:
        runtd.runtime().CheckpointContainer(pb.CheckpointContainerRequest(container_id="x"),
                                            timeout=CALL_TIMEOUT)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "CRIU" in e.value.details()


def update_pod(d, pid, res=None, overhead=None):
    d.runtime().UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
        pod_sandbox_id=pid, resources=res, overhead=overhead), timeout=T)


def test_update_pod_resources_unknown_and_unsupported(runtd_factory, tmp_path):
    from test_sandbox import Pods

    p = Pods(runtd_factory, tmp_path)  # the fake backend: no sandbox_update
    try:
        for bad, code in (("", grpc.StatusCode.INVALID_ARGUMENT),
                          ("0" * 64, grpc.StatusCode.NOT_FOUND),
                          ("../x", grpc.StatusCode.NOT_FOUND)):
            with pytest.raises(grpc.RpcError) as e:
                update_pod(p.d, bad)
            assert e.value.code() == code, bad
        pid = p.run(p.config("f"))
        with pytest.raises(grpc.RpcError) as e:
            update_pod(p.d, pid, pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20))
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "fake" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            update_pod(p.d, pid, pb.LinuxContainerResources(cpu_quota=5))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        p.remove(pid)
    finally:
        p.cleanup()


def cg_read(ctrl, rel, name):
    return Path(f"/sys/fs/cgroup/{ctrl}/{rel}/{name}").read_text().strip()


@pytest.mark.skipif(not ROOT, reason="LXC containers need root")
@pytest.mark.skipif(not Path("/sys/fs/cgroup/memory").is_dir(),
                    reason="cgroup v1 memory hierarchy needed (runt writes v1 names)")
def test_update_pod_resources_writes_the_pod_cgroup(runtd_factory, tmp_path):
    from test_lxc_sandbox import LxcPods

    p = LxcPods(runtd_factory, tmp_path)
    parent = f"runt-e2e-podres-{uuid.uuid4().hex[:8]}"
    try:
        cfg = p.config("r", linux=pb.LinuxPodSandboxConfig(cgroup_parent="/" + parent))
        pid = p.run(cfg)
        res = pb.LinuxContainerResources(memory_limit_in_bytes=256 << 20, cpu_period=100000,
                                         cpu_quota=150000, cpu_shares=1024)
        over = pb.LinuxContainerResources(memory_limit_in_bytes=32 << 20, cpu_period=100000,
                                          cpu_quota=50000, cpu_shares=128)
        update_pod(p.d, pid, res, over)
        # Resources plus overhead, as the kubelet sizes a pod cgroup.
        assert int(cg_read("memory", parent, "memory.limit_in_bytes")) == (256 + 32) << 20
        assert int(cg_read("cpu", parent, "cpu.cfs_quota_us")) == 200000
        assert int(cg_read("cpu", parent, "cpu.cfs_period_us")) == 100000
        assert int(cg_read("cpu", parent, "cpu.shares")) == 1152
        # Without overhead; by an id prefix.
        update_pod(p.d, pid[:12], pb.LinuxContainerResources(memory_limit_in_bytes=128 << 20))
        assert int(cg_read("memory", parent, "memory.limit_in_bytes")) == 128 << 20
        # Sums past 64 bits are refused, the cgroup keeps its limit.
        for res, over in ((pb.LinuxContainerResources(memory_limit_in_bytes=(1 << 63) - 1),
                           pb.LinuxContainerResources(memory_limit_in_bytes=1 << 20)),
                          (pb.LinuxContainerResources(cpu_period=1000000, cpu_quota=1 << 40),
                           pb.LinuxContainerResources(cpu_period=1000,
                                                      cpu_quota=(1 << 62)))):
            with pytest.raises(grpc.RpcError) as e:
                update_pod(p.d, pid, res, over)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert int(cg_read("memory", parent, "memory.limit_in_bytes")) == 128 << 20
        assert p.d.alive()

        # A pod without a cgroup_parent has no cgroup of its own.
        other = p.run(p.config("nocg"))
        with pytest.raises(grpc.RpcError) as e:
            update_pod(p.d, other, res)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "cgroup_parent" in e.value.details()

        p.stop(pid)
        with pytest.raises(grpc.RpcError) as e:
            update_pod(p.d, pid, res)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not ready" in e.value.details()
        p.remove(pid)
        p.remove(other)
        assert not Path(f"/sys/fs/cgroup/memory/{parent}").exists()
    finally:
        p.cleanup()
