"""runtd as a process: command line, config errors, the socket, signals."""

import os
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import (CALL_TIMEOUT, RUNTD, START_TIMEOUT, STOP_TIMEOUT, VALGRIND,
                      make_config, pb)

T = CALL_TIMEOUT


def run(args, timeout=10):
    return subprocess.run([str(RUNTD)] + args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def tmpdir_short():
    d = Path(tempfile.mkdtemp(prefix="runt-e2e-", dir="/tmp"))
    yield d
    subprocess.run(["rm", "-rf", str(d)])


def dir_args(base):
    return ["--listen", f"unix://{base}/runt.sock", "--state-dir", f"{base}/state",
            "--root-dir", f"{base}/root", "--run-dir", f"{base}/run"]


# --------------------------------------------------------------------------- command line


def test_help():
    r = run(["--help"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: runtd")
    for flag in ("--config", "--listen", "--state-dir", "--root-dir", "--run-dir",
                 "--log-level", "--log-file", "--print-config", "--help", "--version"):
        assert flag in r.stdout, flag
    assert r.stderr == ""


def test_version_flag():
    r = run(["--version"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("runtd ")
    assert r.stderr == ""
    assert run(["-V"]).stdout == r.stdout


def test_bad_usage(tmpdir_short):
    r = run(["--no-such-flag"])
    assert r.returncode != 0
    assert "usage" in r.stderr
    r = run(["extra-argument"])
    assert r.returncode != 0 and "extra-argument" in r.stderr
    cfg = tmpdir_short / "c.yaml"
    cfg.write_text(make_config(str(tmpdir_short)))
    r = run(["--config", str(cfg), "--state-dir", "relative/dir"] + dir_args(tmpdir_short)[:2])
    assert r.returncode != 0 and "relative/dir" in r.stderr
    r = run(["--config", str(cfg), "--log-level", "chatty"] + dir_args(tmpdir_short))
    assert r.returncode != 0 and "chatty" in r.stderr
    assert not (tmpdir_short / "runt.sock").exists()


def test_missing_explicit_config(tmpdir_short):
    missing = tmpdir_short / "nope.yaml"
    r = run(["--config", str(missing)] + dir_args(tmpdir_short))
    assert r.returncode != 0
    assert str(missing) in r.stderr
    assert not (tmpdir_short / "runt.sock").exists()


@pytest.mark.parametrize("body,line,key", [
    # unknown keys, top level and nested
    ("log_level: debug\nno_such_key: 1\n", 2, "no_such_key"),
    ("cni:\n  conf_dir: /tmp\n  bogus: 1\n", 3, "cni.bogus"),
    ("runtimes:\n  lxc:\n    backend: lxc\n    flavour: x\n", 4, "flavour"),
    # wrong types
    ("cni:\n  bin_dirs: 5\n", 2, "cni.bin_dirs"),
    ("streaming:\n  port: \"abc\"\n", 2, "streaming.port"),
    ("cni:\n  conf_dir: [a, b]\n", 2, "cni.conf_dir"),
    ("log_level: 3\n", 1, "log_level"),
    ("\n\nruntimes: []\n", 3, "runtimes"),
    # a value that is the right type but not allowed
    ("cni:\n  conf_dir: relative/path\n", 2, "cni.conf_dir"),
    ("runtimes:\n  x:\n    backend: qemu\n", 3, "backend"),
])
def test_bad_config_refused(tmpdir_short, body, line, key):
    cfg = tmpdir_short / "bad.yaml"
    cfg.write_text(body)
    r = run(["--config", str(cfg)] + dir_args(tmpdir_short))
    assert r.returncode != 0, r.stderr
    assert f"{cfg}:{line}:" in r.stderr, r.stderr
    assert key in r.stderr, r.stderr
    assert not (tmpdir_short / "runt.sock").exists()


@pytest.mark.parametrize("listen,msg", [
    ("unix://relative.sock", "is not unix:///absolute/path"),
    ("tcp://127.0.0.1:10010", "is not unix:///absolute/path"),
    ("unix:///tmp/" + "x" * 120 + ".sock", "socket path is longer than 107 bytes"),
])
def test_bad_listen_address(tmpdir_short, listen, msg):
    cfg = tmpdir_short / "c.yaml"
    cfg.write_text(make_config(str(tmpdir_short)))
    args = dir_args(tmpdir_short)
    args[1] = listen
    # The flag is checked as the listen key in a file is, before anything starts.
    r = run(["--config", str(cfg)] + args)
    assert r.returncode != 0
    assert "--listen: key 'listen': " in r.stderr and msg in r.stderr, r.stderr
    # and the same key in the file
    cfg.write_text(make_config(str(tmpdir_short)) + f"listen: {listen}\n")
    r = run(["--config", str(cfg)] + args[2:])
    assert r.returncode != 0
    assert f"{cfg}:" in r.stderr and msg in r.stderr, r.stderr


def test_yaml_syntax_error(tmpdir_short):
    cfg = tmpdir_short / "bad.yaml"
    cfg.write_text("cni:\n  conf_dir: /tmp\n bin_dirs: [\n")
    r = run(["--config", str(cfg)] + dir_args(tmpdir_short))
    assert r.returncode != 0
    assert f"{cfg}:" in r.stderr, r.stderr


# --------------------------------------------------------------------------- the socket


def test_socket_mode_0660(runtd):
    st = os.lstat(runtd.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    assert "ready" in runtd.log_text()


def test_socket_directory_created(runtd_factory):
    d = runtd_factory(start=False)
    d.socket = d.base / "a" / "b" / "runt.sock"
    d.listen = f"unix://{d.socket}"
    d.start()
    assert stat.S_ISSOCK(os.lstat(d.socket).st_mode)
    assert d.runtime().Version(pb.VersionRequest(), timeout=T).runtime_name == "runt"


def test_stale_socket_replaced(runtd_factory):
    d = runtd_factory(start=False)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(d.socket))
    s.close()  # the file stays, nobody listens
    assert stat.S_ISSOCK(os.lstat(d.socket).st_mode)
    d.start()
    assert d.runtime().Version(pb.VersionRequest(), timeout=T).runtime_name == "runt"
    assert stat.S_IMODE(os.lstat(d.socket).st_mode) == 0o660
    assert "stale" in d.log_text()


def test_non_socket_at_path_refused(runtd_factory):
    d = runtd_factory(start=False)
    d.socket.write_text("precious")
    d.spawn()
    rc, _ = d.wait_exit(START_TIMEOUT)
    assert rc != 0
    assert "not a socket" in d.diag()
    assert d.socket.read_text() == "precious"  # left alone
    d.proc = None


def test_second_instance_refused(runtd_factory):
    first = runtd_factory()
    ch = first.channel()
    rt = first.runtime(ch)
    assert rt.Version(pb.VersionRequest(), timeout=T).runtime_name == "runt"

    second = runtd_factory(start=False, socket_path=str(first.socket), log_to_file=False)
    second.spawn()
    rc, _ = second.wait_exit(START_TIMEOUT)
    second.proc = None
    assert rc != 0
    err = second.stderr_file.read_text()
    assert "another server is listening" in err and str(first.socket) in err, err

    # The first one is untouched: same connection and new ones both work.
    assert first.alive()
    assert first.socket.exists()
    assert rt.Version(pb.VersionRequest(), timeout=T).runtime_name == "runt"
    assert first.runtime().Status(pb.StatusRequest(), timeout=T).status.conditions


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_idle(runtd_factory, sig):
    d = runtd_factory()
    d.runtime().Version(pb.VersionRequest(), timeout=T)
    t0 = time.monotonic()
    d.signal(sig)
    rc, _ = d.wait_exit()
    d.exit_seconds = time.monotonic() - t0
    d.check_exit(rc)
    assert d.exit_seconds < STOP_TIMEOUT
    log = d.log_text()
    assert ("SIGTERM" if sig == signal.SIGTERM else "SIGINT") in log
    assert "stopped" in log


def hammer(d, stop, counts, errors, i):
    ch = grpc.insecure_channel(d.listen)
    rt, img = d.runtime(ch), d.image(ch)
    calls = [lambda: rt.Version(pb.VersionRequest(), timeout=T),
             lambda: rt.Status(pb.StatusRequest(verbose=True), timeout=T),
             lambda: img.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=T),
             lambda: rt.RuntimeConfig(pb.RuntimeConfigRequest(), timeout=T)]
    try:
        n = 0
        while not stop.is_set():
            try:
                calls[(n + i) % len(calls)]()
                counts[i] += 1
            except grpc.RpcError as e:
                if d.alive():
                    errors.append(f"{e.code()}: {e.details()} while the daemon was up")
                stop.wait(0.01)
            n += 1
    finally:
        ch.close()


@pytest.mark.valgrind
def test_sigterm_under_load(runtd_factory):
    d = runtd_factory(allow_log_errors=True)
    stop, errors, counts = threading.Event(), [], [0] * 4
    threads = [threading.Thread(target=hammer, args=(d, stop, counts, errors, i))
               for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + START_TIMEOUT
    while min(counts) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert min(counts) >= 20, counts
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc, _ = d.wait_exit()
    d.exit_seconds = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    # Calls failing between the signal and the exit are fine; failing before is not.
    assert not [e for e in errors if "while the daemon was up" in e and "UNAVAILABLE" not in e
                and "CANCELLED" not in e], errors[:5]
    d.check_exit(rc)
    assert d.exit_seconds < STOP_TIMEOUT, d.exit_seconds


@pytest.mark.valgrind
def test_sigterm_with_half_sent_requests(runtd_factory):
    """Calls whose request message never arrives are in flight; SIGTERM cancels them."""
    d = runtd_factory()
    ch = d.channel()
    release = threading.Event()

    def never():
        release.wait(60)
        return
        yield  # noqa: unreachable - a generator that yields nothing until released

    futures = []
    for path in ("/runtime.v1.RuntimeService/Version", "/runtime.v1.RuntimeService/Status",
                 "/runtime.v1.ImageService/ImageFsInfo", "/runtime.v1.RuntimeService/Exec"):
        futures.append(ch.stream_unary(path).future(never(), timeout=60))
    time.sleep(0.5 if not VALGRIND else 3)
    assert not any(f.done() for f in futures)
    assert d.runtime().Version(pb.VersionRequest(), timeout=T).runtime_name == "runt"

    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc, _ = d.wait_exit()
    d.exit_seconds = time.monotonic() - t0
    release.set()
    for f in futures:
        assert f.exception(timeout=10) is not None
        assert f.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE), f.code()
    d.check_exit(rc)
    assert d.exit_seconds < STOP_TIMEOUT


def test_restart_same_dirs(runtd_factory):
    """A clean stop leaves nothing that prevents the next start on the same paths."""
    d = runtd_factory()
    d.runtime().Version(pb.VersionRequest(), timeout=T)
    d.stop()
    d.spawn()
    d.wait_ready()
    assert d.runtime().Status(pb.StatusRequest(), timeout=T).status.conditions
    assert (d.state_dir / "runt.db").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")
def test_sigterm_with_slow_handlers_in_flight(runtd_factory):
    """ImageFsInfo runs on handler threads; walks still running at SIGTERM do not hold up
    the exit past the drain limit (the process leaves without waiting for them)."""
    d = runtd_factory(start=False, allow_log_errors=True)
    # 60k files, on a tmpfs so that making them is quick whatever the disk.
    d.root_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs",
                    str(d.root_dir)], check=True)
    try:
        # The containers' writable layers: ImageFsInfo's container filesystem walks them
        # (runtd keeps no stray entries in the layer store itself, so not there).
        layers = d.root_dir / "containers"
        layers.mkdir()
        for i in range(60):
            sub = layers / str(i)
            sub.mkdir()
            for j in range(1000):
                os.close(os.open(sub / str(j), os.O_CREAT | os.O_WRONLY, 0o600))
        d.start()
        img = d.image()
        futures = [img.ImageFsInfo.future(pb.ImageFsInfoRequest(), timeout=60)
                   for _ in range(16)]
        time.sleep(0.05)
        assert sum(not f.done() for f in futures) > 0
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc, _ = d.wait_exit()
        d.exit_seconds = time.monotonic() - t0
        d.check_exit(rc)
        assert d.exit_seconds < STOP_TIMEOUT, d.exit_seconds
        for f in futures:
            if f.code() == grpc.StatusCode.OK:
                assert f.result().container_filesystems[0].inodes_used.value == 60 * 1001 + 1
            else:
                assert f.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    finally:
        d.kill()
        subprocess.run(["umount", "-l", str(d.root_dir)])
