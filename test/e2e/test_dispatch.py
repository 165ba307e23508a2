"""The dispatch surface: unimplemented and unknown methods, malformed input, limits, load."""

import random
import threading
import time

import grpc
import pytest

from conftest import (CALL_TIMEOUT, IMPLEMENTED, LONG_LIVED, NEEDS_FIELDS, PROTO, RPCS, VALGRIND,
                      full_path, method_descriptor, parses, pb, valid_request)

T = CALL_TIMEOUT
UNIMPLEMENTED_RPCS = [(n, s) for n, s in RPCS if n not in IMPLEMENTED]
OK, INVALID, UNIMPL = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, \
    grpc.StatusCode.UNIMPLEMENTED


def ids(rpcs):
    return [n.split("/")[1] for n, _ in rpcs]


def call_raw(d, ch, rpc, streaming, data, timeout=T):
    """Sends @data as the request of @rpc; returns (status code, details). A long-lived
    stream that was accepted (it runs until its short deadline) counts as OK."""
    if rpc in LONG_LIVED:
        try:
            for _ in d.raw_stream(rpc, ch)(data, timeout=0.3 if not VALGRIND else 3):
                pass
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                return e.code(), e.details()
        return OK, ""
    try:
        if streaming:
            for _ in d.raw_stream(rpc, ch)(data, timeout=timeout):
                pass
        else:
            d.raw_unary(rpc, ch)(data, timeout=timeout)
        return OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def assert_alive(d, ch=None):
    assert d.alive(), f"runtd died ({d.proc.returncode})\n" + d.diag()
    r = d.runtime(ch).Version(pb.VersionRequest(), timeout=T)
    assert r.runtime_name == "runt"


def test_rpcs_txt_matches_proto():
    assert len(RPCS) >= 40
    for rpc, streaming in RPCS:
        md = method_descriptor(rpc)  # KeyError if the proto lacks it
        # The descriptor of the old protoc does not say which side streams: read the text.
        text = PROTO.read_text()
        sig = f"rpc {md.name}({md.input_type.name}) returns ("
        line = next(l for l in text.splitlines() if sig in l)
        assert ("returns (stream " in line) == streaming, line
    assert {r for r, _ in RPCS} >= IMPLEMENTED


@pytest.mark.valgrind
def test_unimplemented_methods(shared_runtd):
    d = shared_runtd
    ch = d.channel()
    assert_alive(d, ch)  # connected and warm: the timings below are per call
    limit = 2.0 if VALGRIND else 0.1
    slow = []
    for rpc, streaming in UNIMPLEMENTED_RPCS:
        md = method_descriptor(rpc)
        req = getattr(pb, md.input_type.name)().SerializeToString()
        t0 = time.monotonic()
        code, details = call_raw(d, ch, rpc, streaming, req)
        dt = time.monotonic() - t0
        assert code == UNIMPL, (rpc, code, details)
        assert md.name in details, (rpc, details)
        if dt > limit:
            slow.append((rpc, dt))
    assert not slow, f"answers slower than {limit}s: {slow}"


def test_unimplemented_through_stubs(shared_runtd):
    """The generated stubs (serializing real messages) get the same answers."""
    d = shared_runtd
    rt, img = d.runtime(), d.image()
    with pytest.raises(grpc.RpcError) as e:
        rt.CheckpointContainer(pb.CheckpointContainerRequest(container_id="a" * 64), timeout=T)
    assert e.value.code() == UNIMPL and "CheckpointContainer" in e.value.details()


@pytest.mark.parametrize("path", [
    "/runtime.v1.RuntimeService/NoSuchMethod",
    "/runtime.v1.NoSuchService/Version",
    "/runtime.v1alpha2.RuntimeService/Version",
    "/runtime.v1.RuntimeService/version",
    "/runtime.v1.RuntimeService/VersionX",
    "/runtime.v1.RuntimeService/",
    "/runtime.v1.RuntimeService/Version/",
    "/runtime.v1.RuntimeService/Vers",
    "/runtime.v1.RuntimeService/Version\x00",
    "/runtime.v1.RuntimeService/Version\x00junk",
    "/runtime.v1.ImageService/ImageFsInfo\x00",
    "/x",
    "/" + "a" * 5000,
], ids=lambda p: repr(p[:48]))
def test_unknown_method(shared_runtd, path):
    ch = shared_runtd.channel()
    for call in (ch.unary_unary(path), ch.unary_stream(path)):
        with pytest.raises(grpc.RpcError) as e:
            r = call(b"", timeout=T)
            if not isinstance(r, bytes):
                list(r)
        assert e.value.code() == UNIMPL, (path, e.value)
        # The message names the path (up to a NUL, and cut when very long).
        assert path.split("\x00")[0][:150] in e.value.details(), e.value.details()
    assert_alive(shared_runtd, ch)


def random_inputs(rpc, n):
    rng = random.Random(f"runt-e2e-{rpc}")
    out = []
    for i in range(n):
        length = rng.choice([1, 2, 3, 5, 8, 13, 32, 100, 1000]) if i else 1
        out.append(bytes(rng.randrange(256) for _ in range(length)))
    # Some hand-picked nasties: overlong varints, huge length prefixes, group wire types,
    # field number 0, a length that runs past the end, deep nesting.
    out += [
        b"\x08" + b"\xff" * 11,
        b"\x0a\xff\xff\xff\xff\x0f",
        b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
        b"\x0b\x0c", b"\x0b", b"\x0c",
        b"\x00\x00", b"\x07", b"\x0d\x01",
        b"\x0a\x05abc",
        (b"\x0a\x02" * 4000),
        b"\xfa\x3f\x10" + b"\x00" * 3,
    ]
    return out


# What a well-formed request may get besides OK: a pull of whatever name the fuzz made
# fails, quickly (runtd's proxy is not there), or the name is no valid reference at all, or
# (the fully filled request) it carries auth.registry_token, which runt refuses.
# A fuzzed RunPodSandbox reaches the network step at most (the daemon has no CNI config),
# a fuzzed sandbox id names no sandbox.
# The daemon has no container and no image: a fuzzed container id names nothing (NOT_FOUND),
# an empty one is refused. A fuzzed CreateContainer names an
# image never pulled or a sandbox that is not there, or asks for what runt refuses to fake
# (CDI devices, image or id-mapped mounts, the TARGET pid namespace: UNIMPLEMENTED).
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PARSED_CODES = {
    "ImageService/PullImage": (grpc.StatusCode.UNAVAILABLE, INVALID, UNIMPL),
    "RuntimeService/RunPodSandbox": (grpc.StatusCode.UNAVAILABLE, INVALID, UNIMPL),
    "RuntimeService/PodSandboxStatus": (NOT_FOUND, INVALID, OK),
    # Stopping or removing a sandbox that is not there, whatever the form of its id, is
    # success; only an empty id is refused.
    "RuntimeService/StopPodSandbox": (OK, INVALID),
    "RuntimeService/RemovePodSandbox": (OK, INVALID),
    "RuntimeService/CreateContainer": (NOT_FOUND, INVALID, UNIMPL),
    "RuntimeService/StartContainer": (NOT_FOUND, INVALID),
    # Stopping an unknown container is NOT_FOUND (as containerd); removing one is success.
    "RuntimeService/StopContainer": (NOT_FOUND, INVALID),
    "RuntimeService/RemoveContainer": (OK, INVALID),
    "RuntimeService/ContainerStatus": (NOT_FOUND, INVALID),
    "RuntimeService/UpdateContainerResources": (NOT_FOUND, INVALID),
    "RuntimeService/ReopenContainerLog": (NOT_FOUND, INVALID),
    "RuntimeService/ExecSync": (NOT_FOUND, INVALID),
    "RuntimeService/Exec": (NOT_FOUND, INVALID),
    "RuntimeService/Attach": (NOT_FOUND, INVALID),
    "RuntimeService/PortForward": (NOT_FOUND, INVALID),
    "RuntimeService/ContainerStats": (NOT_FOUND, INVALID),
    "RuntimeService/PodSandboxStats": (NOT_FOUND, INVALID),
    # A fuzzed pod_cidr is rarely a CIDR; a fuzzed sandbox id names nothing.
    "RuntimeService/UpdateRuntimeConfig": (OK, INVALID),
    "RuntimeService/UpdatePodSandboxResources": (NOT_FOUND, INVALID),
}


def check_bad_inputs(d, ch, rpc, streaming, n_random, truncations):
    implemented = rpc in IMPLEMENTED
    failures = []
    counts = {}
    parsed_ok = PARSED_CODES.get(rpc, (OK,))

    def one(data, what, must_parse=None):
        code, details = call_raw(d, ch, rpc, streaming, data)
        counts[code] = counts.get(code, 0) + 1
        if not implemented:
            ok = code == UNIMPL
        elif must_parse is None:
            ok = code in (INVALID,) + parsed_ok
        else:
            # For truncations the outcome is exact: a cut at a field boundary is itself a
            # valid message, any other cut is malformed.
            ok = code in parsed_ok if must_parse else code == INVALID
        if code == INVALID and not details:
            ok = False
        if not ok:
            failures.append((what, data[:40], code, details))

    for i, data in enumerate(random_inputs(rpc, n_random)):
        one(data, f"random#{i}")
    valid = valid_request(rpc)
    one(valid, "valid", True)
    cuts = range(1, len(valid)) if truncations == "all" else \
        sorted(set(random.Random(rpc).sample(range(1, len(valid)), min(8, len(valid) - 1))))
    for k in cuts:
        one(valid[:k], f"truncated to {k}/{len(valid)}", parses(rpc, valid[:k]))
    assert not failures, f"{rpc}: {len(failures)} unexpected answers, first: {failures[:5]}"
    return counts


@pytest.mark.parametrize("rpc,streaming", RPCS, ids=ids(RPCS))
def test_bad_input(shared_runtd, rpc, streaming):
    d = shared_runtd
    ch = d.channel()
    # Each parsed PullImage runs skopeo: a sample of truncations is enough there.
    counts = check_bad_inputs(d, ch, rpc, streaming, 50,
                              "some" if rpc == "ImageService/PullImage" else "all")
    if rpc in IMPLEMENTED:
        assert counts.get(INVALID, 0) > 0, counts
        assert sum(counts.get(c, 0) for c in PARSED_CODES.get(rpc, (OK,))) > 0, counts
    assert_alive(d, ch)
    ch.close()


@pytest.mark.valgrind
def test_bad_input_lite(runtd):
    """A few malformed requests for every method, for the valgrind run."""
    ch = runtd.channel()
    for rpc, streaming in RPCS:
        check_bad_inputs(runtd, ch, rpc, streaming, 3, "some")
    assert_alive(runtd, ch)


@pytest.mark.valgrind
def test_malformed_status_and_imagefsinfo_messages(runtd):
    ch = runtd.channel()
    for rpc in ("RuntimeService/Status", "RuntimeService/Version", "ImageService/ImageFsInfo"):
        code, details = call_raw(runtd, ch, rpc, False, b"\x0a\x05ab")
        assert code == INVALID, (rpc, code)
        assert rpc.split("/")[1] in details and "malformed" in details, details
    assert_alive(runtd, ch)


@pytest.mark.parametrize("rpc", ["RuntimeService/Version", "RuntimeService/RunPodSandbox",
                                 "ImageService/ImageFsInfo"])
def test_message_over_16mib_rejected(shared_runtd, rpc):
    d = shared_runtd
    ch = d.channel(**{"grpc.max_send_message_length": 64 << 20})
    # A VersionRequest whose "version" string is 17 MiB: well-formed, just too big.
    big = b"\x0a" + _varint(17 << 20) + b"v" * (17 << 20)
    code, details = call_raw(d, ch, rpc, False, big, timeout=max(T, 20))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert_alive(d, ch)
    # Just under the limit is fine for an implemented method.
    if rpc == "RuntimeService/Version":
        ok = b"\x0a" + _varint((16 << 20) - 16) + b"v" * ((16 << 20) - 16)
        code, details = call_raw(d, ch, rpc, False, ok, timeout=max(T, 20))
        assert code == OK, (code, details)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def test_empty_request_is_valid(shared_runtd):
    d = shared_runtd
    ch = d.channel()
    streaming = dict(RPCS)
    for rpc in sorted(IMPLEMENTED):
        code, details = call_raw(d, ch, rpc, streaming.get(rpc, False), b"")
        if rpc in NEEDS_FIELDS:
            assert code == INVALID and "required" in details, (rpc, code, details)
        else:
            assert code == OK, (rpc, code, details)


@pytest.mark.parametrize("rpc,streaming", RPCS, ids=ids(RPCS))
def test_no_request_message(shared_runtd, rpc, streaming):
    """A client that half-closes without sending the request message."""
    ch = shared_runtd.channel()
    with pytest.raises(grpc.RpcError) as e:
        ch.stream_unary(full_path(rpc))(iter([]), timeout=T)
    name = rpc.split("/")[1]
    if rpc in IMPLEMENTED:
        assert e.value.code() == INVALID, e.value
        assert name in e.value.details() and "no request" in e.value.details()
    else:
        assert e.value.code() == UNIMPL, e.value
        assert name in e.value.details()


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_compressed_requests(shared_runtd, compression):
    rt = shared_runtd.runtime()
    r = rt.Version(pb.VersionRequest(version="v" * 4096), timeout=T, compression=compression)
    assert r.runtime_name == "runt"
    r = rt.Status(pb.StatusRequest(verbose=True), timeout=T, compression=compression)
    assert set(r.info) == {"config", "runtime", "network", "runtimeConfig", "cgroup"}


def test_concurrent_version_calls(shared_runtd):
    d = shared_runtd
    n_threads, n_calls = 8, 200
    errors, done = [], [0] * n_threads
    barrier = threading.Barrier(n_threads)

    def worker(i):
        ch = grpc.insecure_channel(d.listen)
        try:
            rt = d.runtime(ch)
            barrier.wait()
            for _ in range(n_calls):
                r = rt.Version(pb.VersionRequest(), timeout=T)
                assert r.runtime_name == "runt"
                done[i] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            ch.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert done == [n_calls] * n_threads
    assert_alive(d)


def test_concurrent_mixed_calls_one_channel(shared_runtd):
    """Many calls multiplexed on one HTTP/2 connection, handler threads included."""
    d = shared_runtd
    ch = d.channel()
    rt, img = d.runtime(ch), d.image(ch)
    futures = []
    for i in range(100):
        futures.append(rt.Version.future(pb.VersionRequest(), timeout=T))
        futures.append(rt.Status.future(pb.StatusRequest(verbose=bool(i & 1)), timeout=T))
        futures.append(img.ImageFsInfo.future(pb.ImageFsInfoRequest(), timeout=T))
        futures.append(rt.ListContainers.future(pb.ListContainersRequest(), timeout=T))
        futures.append(rt.ContainerStats.future(pb.ContainerStatsRequest(), timeout=T))
        futures.append(rt.PodSandboxStats.future(pb.PodSandboxStatsRequest(), timeout=T))
    codes = {}
    for f in futures:
        c = f.code()
        codes[c] = codes.get(c, 0) + 1
    assert codes == {OK: 400, INVALID: 200}, codes
