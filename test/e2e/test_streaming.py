"""Exec, attach and port-forward through runtd's streaming server, end to end: the CRI RPC
hands out a URL, kstream's clients speak SPDY/3.1 or WebSocket to it as kubectl (through
the kubelet) would, real LXC containers run the commands, the pod's network namespace
answers the forwarded ports. Also: malformed and vanishing clients (runtd must not leak a
descriptor, a thread or an exec helper, and must go on serving), and log rotation under
load.

One daemon, pod and image for the module (the daemon's streaming.stream_creation_timeout is
short, so a stalled session ends in seconds); the token expiry test has a daemon of its
own. Every socket wait is bounded (kstream.IO_TIMEOUT unless said otherwise)."""

import base64
import hashlib
import json
import os
import re
import resource
import socket
import struct
import threading
import time
from pathlib import Path

import grpc
import pytest

import kstream as K
import registry as R
from conftest import pb
from test_containers import EMPTY_CTRS, Ctrs, helper_pids, sleeper
from test_lxc_sandbox import LxcPods
from test_sandbox import EMPTY, Pods

T = 60
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="LXC containers need root")
TRANSPORTS = ["spdy", "ws"]
CREATION_TIMEOUT = 5
HEADER_TIMEOUT = 6  # long enough to open the flood below while its first sockets live
STREAMING = {"address": "127.0.0.1", "port": 0, "token_ttl": 60,
             "stream_creation_timeout": CREATION_TIMEOUT, "idle_timeout": 14400,
             "header_timeout": HEADER_TIMEOUT}
FATAL_CLOSE = 3.0  # a protocol error ends the session at once, well before the timeout
INDEX = b"hello-from-pod\n"
HTTP_GET = b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n"
SUCCESS = {"metadata": {}, "status": "Success"}
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stream_images(registry, tmp_path_factory):
    """One busybox image with /www/index.html for httpd."""
    lay = R.OciLayout.create(tmp_path_factory.mktemp("stream-oci"))
    try:
        R.busybox_image(lay, "stream", extra={"www/index.html": INDEX})
        lay.push("stream", registry.host, "stream/busybox:1")
    finally:
        lay.remove()
    return {"plain": f"{registry.host}/stream/busybox:1"}


class StreamEnv(Ctrs):
    """Ctrs with streaming settings, one cached stub, and the streaming RPCs."""

    def __init__(self, runtd_factory, tmp_path, images, streaming=STREAMING):
        hosts = sorted({ref.split("/")[0] for ref in images.values()})
        LxcPods.__init__(self, runtd_factory, tmp_path, streaming=streaming, images={
            "registries": [{"prefix": h, "insecure": True} for h in hosts]})
        self._rt = None
        self.ids = set()  # every pod and container made here
        self.images = images
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        for ref in images.values():
            self.d.image().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)),
                                     timeout=T)

    def rt(self):
        if self._rt is None:
            self._rt = self.d.runtime()
        return self._rt

    def run(self, cfg, handler=""):
        pid = super().run(cfg, handler)
        self.ids.add(pid)
        return pid

    def create(self, pod, cfg, name="c", image="plain", **kw):
        cid = super().create(pod, cfg, name, image, **kw)
        self.ids.add(cid)
        return cid

    def own_leftovers(self):
        """leftovers(), with the host-wide entries (cgroups, runt-pause processes) cut to
        this module's pods and containers: other runs may share the machine."""
        left = self.leftovers()
        left["cgroups"] = [c for c in left["cgroups"] if c.rsplit("/", 1)[-1] in self.ids]
        mine = []
        for p in left["pause"]:
            try:
                cg = Path(f"/proc/{p}/cgroup").read_text()
            except OSError:
                continue
            if any(i in cg for i in self.ids):
                mine.append(p)
        left["pause"] = mine
        return left

    @property
    def pid(self):
        return self.d.proc.pid

    def exec_url(self, cid, cmd, stdin=False, stdout=True, stderr=True, tty=False):
        return self.rt().Exec(pb.ExecRequest(container_id=cid, cmd=cmd, stdin=stdin,
                                             stdout=stdout, stderr=stderr, tty=tty),
                              timeout=T).url

    def attach_url(self, cid, stdin=False, stdout=True, stderr=True, tty=False):
        return self.rt().Attach(pb.AttachRequest(container_id=cid, stdin=stdin, stdout=stdout,
                                                 stderr=stderr, tty=tty), timeout=T).url

    def pf_url(self, ports, pod=None):
        return self.rt().PortForward(pb.PortForwardRequest(
            pod_sandbox_id=pod or self.pod_id, port=ports), timeout=T).url

    def wait_listening(self, cid, ports, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            out = self.exec(cid, ["busybox", "netstat", "-ltn"]).stdout.decode()
            if all(re.search(rf":{p}\s", out) for p in ports):
                return
            assert time.monotonic() < deadline, f"ports {ports} not listening:\n{out}"
            time.sleep(0.1)

    def processes(self, cid):
        return self.exec(cid, ["ps", "-o", "args"]).stdout.decode()

    def drop(self, cid):
        try:
            self.cstop(cid, timeout=2)
        finally:
            self.crm(cid)


@pytest.fixture(scope="module")
def senv(module_runtd_factory, tmp_path_factory, stream_images):
    """The module's daemon and pod: 'box' (a sleeper to exec into), 'web' (httpd on 8080
    serving /www) and 'echo' (nc on 9090 running cat per connection)."""
    if not ROOT:
        pytest.skip("LXC containers need root")
    e = StreamEnv(module_runtd_factory, tmp_path_factory.mktemp("streaming"), stream_images)
    try:
        e.pod_id, e.pod_cfg = e.pod("st")
        e.box = e.run_ctr(e.pod_id, e.pod_cfg, "box", **sleeper())
        e.web = e.run_ctr(e.pod_id, e.pod_cfg, "web", command=[
            "/bin/sh", "-c", "exec busybox httpd -f -p 8080 -h /www"])
        e.echo = e.run_ctr(e.pod_id, e.pod_cfg, "echo", command=[
            "/bin/sh", "-c", "exec busybox nc -ll -p 9090 -e /bin/cat"])
        e.wait_listening(e.box, [8080, 9090])
        yield e
        e.remove(e.pod_id)
        assert e.own_leftovers() == EMPTY_CTRS
    finally:
        e.cleanup()


# --------------------------------------------------------------------------- leak checks


def runtd_counts(pid):
    return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def fd_targets(pid):
    out = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/{pid}/fd/{fd}')}")
        except OSError:
            pass
    return out


def exec_helpers(root):
    """runt-lxc-exec processes of the daemon whose root is @root."""
    return helper_pids("runt-lxc-exec", root)


def settle(senv, quiet=1.0, timeout=10.0):
    """runtd's (fds, threads) once they have not changed for @quiet seconds."""
    deadline = time.monotonic() + timeout
    last, since = runtd_counts(senv.pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = runtd_counts(senv.pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet and not exec_helpers(senv.d.root_dir):
            return now
    return last


def assert_exec_works(senv):
    for t in TRANSPORTS:
        url = senv.exec_url(senv.box, ["/bin/sh", "-c", "echo ok; echo err >&2"])
        res = K.run_exec(t, url)
        assert (res.stdout, res.stderr, res.exit_code) == (b"ok\n", b"err\n", 0), res


def assert_recovered(senv, base, timeout=5.0):
    """runtd serves a new exec normally, and its descriptors, threads and exec helpers are
    back to @base within @timeout."""
    assert senv.d.alive(), "runtd died\n" + senv.d.diag()
    assert_exec_works(senv)
    deadline = time.monotonic() + timeout
    while True:
        now = runtd_counts(senv.pid)
        helpers = exec_helpers(senv.d.root_dir)
        if now[0] <= base[0] and now[1] <= base[1] and not helpers:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"runtd (fds, threads) {now}, baseline {base}; runt-lxc-exec "
                                 f"left: {helpers}\nfds: {fd_targets(senv.pid)}")
        time.sleep(0.1)


@pytest.fixture
def baseline(senv):
    """(fds, threads) of runtd after a normal exec each way, once they are steady."""
    assert_exec_works(senv)
    return settle(senv)


def wait_gone(senv, cid, marker, timeout=5.0):
    deadline = time.monotonic() + timeout
    while marker in senv.processes(cid):
        assert time.monotonic() < deadline, \
            f"{marker!r} still runs after its client left:\n{senv.processes(cid)}"
        time.sleep(0.1)


def code_of(fn, req):
    with pytest.raises(grpc.RpcError) as e:
        fn(req, timeout=T)
    return e.value.code()


# --------------------------------------------------------------------------- the clients


def test_kstream_selftest():
    """kstream's own codecs and session logic, against an in-process fake server."""
    assert K.selftest()


# --------------------------------------------------------------------------- RPCs


@needs_root
def test_rpc_validation(senv):
    rt, box = senv.rt(), senv.box
    E, A, P = pb.ExecRequest, pb.AttachRequest, pb.PortForwardRequest
    assert code_of(rt.Exec, E(container_id=box, cmd=["sh"], tty=True, stdout=True,
                              stderr=True)) == INVALID
    assert code_of(rt.Exec, E(container_id=box, cmd=["sh"])) == INVALID  # no stream at all
    assert code_of(rt.Exec, E(container_id=box, cmd=[], stdout=True)) == INVALID
    assert code_of(rt.Exec, E(container_id=box, cmd=[""], stdout=True)) == INVALID
    assert code_of(rt.Exec, E(cmd=["sh"], stdout=True)) == INVALID
    assert code_of(rt.Exec, E(container_id="e" * 64, cmd=["sh"], stdout=True)) == NOT_FOUND
    assert code_of(rt.Attach, A(container_id=box, tty=True, stdout=True, stderr=True)) == \
        INVALID
    assert code_of(rt.Attach, A(container_id=box)) == INVALID
    assert code_of(rt.Attach, A(stdout=True)) == INVALID
    assert code_of(rt.Attach, A(container_id="e" * 64, stdout=True)) == NOT_FOUND
    assert code_of(rt.PortForward, P(pod_sandbox_id="f" * 64, port=[80])) == NOT_FOUND
    for bad in (0, -1, 65536, 70000):
        assert code_of(rt.PortForward, P(pod_sandbox_id=senv.pod_id, port=[8080, bad])) == \
            INVALID, bad
    # The valid ones answer single-use URLs on the streaming server.
    urls = [senv.exec_url(box, ["true"]), senv.exec_url(box, ["true"]),
            senv.attach_url(box), senv.pf_url([8080]), senv.pf_url([])]
    for u, kind in zip(urls, ["exec", "exec", "attach", "portforward", "portforward"]):
        assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/{kind}/[A-Za-z0-9_-]+", u), u
    assert len({u.rsplit("/", 1)[1] for u in urls}) == len(urls)
    assert len({u.split("/")[2] for u in urls}) == 1  # one server


@needs_root
def test_exec_and_attach_need_a_running_container(senv):
    """Created and exited containers: Exec and Attach fail at the RPC with ExecSync's
    status."""
    stopped = senv.run_ctr(senv.pod_id, senv.pod_cfg, "stopped", **sleeper())
    senv.cstop(stopped, timeout=5)
    created = senv.create(senv.pod_id, senv.pod_cfg, "created", **sleeper())
    rt = senv.rt()
    try:
        for cid in (stopped, created):
            want = code_of(rt.ExecSync, pb.ExecSyncRequest(container_id=cid, cmd=["true"],
                                                           timeout=5))
            assert want != OK
            assert code_of(rt.Exec, pb.ExecRequest(container_id=cid, cmd=["true"],
                                                   stdout=True)) == want
            assert code_of(rt.Attach, pb.AttachRequest(container_id=cid, stdout=True)) == want
    finally:
        senv.crm(stopped)
        senv.crm(created)


# --------------------------------------------------------------------------- exec


@pytest.mark.valgrind
@needs_root
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_stdout_and_stderr_apart(senv, transport):
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "echo hi; echo err >&2"])
    res = K.run_exec(transport, url)
    assert res.stdout == b"hi\n" and res.stderr == b"err\n", res
    assert res.protocol == "v5.channel.k8s.io", res  # what client-go offers first
    assert res.status == SUCCESS and res.exit_code == 0, res
    if transport == "ws":
        # First an empty message on stdout (the session is up), at the end a close frame.
        assert res.first == (K.CH_STDOUT, b"") and res.close_code == K.CLOSE_NORMAL, res
    # Only the streams asked for: stderr alone (the first message is then on stderr).
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "echo hi; echo err >&2"], stdout=False)
    res = K.run_exec(transport, url, stdout=False)
    assert (res.stdout, res.stderr, res.exit_code) == (b"", b"err\n", 0), res
    if transport == "ws":
        assert res.first == (K.CH_STDERR, b""), res
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "echo hi; echo err >&2"], stderr=False)
    res = K.run_exec(transport, url, stderr=False)
    assert (res.stdout, res.stderr, res.exit_code) == (b"hi\n", b"", 0), res


@pytest.mark.valgrind
@needs_root
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_tty_and_resize(senv, transport):
    """Through a pty: one output stream, \\r\\n line ends, the size the client sent."""
    cmd = ["/bin/sh", "-c", "read x; busybox stty size; test -t 0 && test -t 1 && echo tty:$x"]
    url = senv.exec_url(senv.box, cmd, stdin=True, stdout=True, stderr=False, tty=True)
    with K.remote_command(transport, url, stdin=True, stdout=True, stderr=False,
                          tty=True) as r:
        if transport == "spdy":
            assert sorted(r.streams) == ["error", "resize", "stdin", "stdout"]
        r.resize(113, 37)
        r.write_stdin(b"go\n")
        r.read_until(b"tty:go\r\n")
        res = r.wait()
    assert b"37 113\r\n" in res.stdout, res
    assert re.search(rb"(?<!\r)\n", res.stdout) is None, res  # every \n comes as \r\n
    assert res.stderr == b"" and res.exit_code == 0, res
    # A later resize reaches the running process too.
    cmd = ["/bin/sh", "-c", "busybox stty size; read x; busybox stty size"]
    url = senv.exec_url(senv.box, cmd, stdin=True, stdout=True, stderr=False, tty=True)
    with K.remote_command(transport, url, stdin=True, stdout=True, stderr=False,
                          tty=True) as r:
        r.resize(80, 24)
        r.read_until(lambda d: re.search(rb"\d+ \d+\r\n", d))
        r.resize(200, 50)
        time.sleep(0.2)
        r.write_stdin(b"\n")
        r.read_until(b"50 200\r\n")
        res = r.wait()
    assert res.exit_code == 0, res
    # The exit code comes through a tty too.
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "echo x; exit 4"], stdout=True,
                        stderr=False, tty=True)
    res = K.run_exec(transport, url, stderr=False, tty=True)
    assert res.stdout == b"x\r\n" and res.exit_code == 4, res
    # The size the client sends first is there when the command starts (it waits for it).
    url = senv.exec_url(senv.box, ["busybox", "stty", "size"], stdout=True, stderr=False,
                        tty=True)
    res = K.run_exec(transport, url, stderr=False, tty=True, resize=(90, 30))
    assert res.stdout == b"30 90\r\n" and res.exit_code == 0, res
    # The terminal is one of the container's own devpts, as runc gives: `tty` names it, and
    # it is the process's controlling terminal (its session's, the shell leads it).
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "busybox tty; ls /dev/pts; "
                                   "cat /proc/self/stat"], stdout=True, stderr=False, tty=True)
    res = K.run_exec(transport, url, stderr=False, tty=True)
    out = res.stdout.decode()
    m = re.match(r"(/dev/pts/(\d+))\r\n", out)
    assert m and res.exit_code == 0, res
    assert m.group(2) in out.split("\r\n")[1].split(), out  # it is there, in /dev/pts
    stat = out.split("\r\n")[2].rsplit(")", 1)[1].split()
    assert int(stat[4]) != 0, stat  # tty_nr: it has a controlling terminal


@pytest.mark.valgrind
@needs_root
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_stdin(senv, transport):
    """stdin to cat and back; the client's end of stdin (FIN, v5 close signal) is EOF."""
    url = senv.exec_url(senv.box, ["cat"], stdin=True, stdout=True, stderr=True)
    res = K.run_exec(transport, url, stdin=b"hello\nworld\n")
    assert (res.stdout, res.stderr, res.exit_code) == (b"hello\nworld\n", b"", 0), res
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "cat; echo eof-seen"], stdin=True)
    res = K.run_exec(transport, url, stdin=b"")
    assert (res.stdout, res.exit_code) == (b"eof-seen\n", 0), res
    # 1 MiB each way at once (the reader takes output while the writer sends).
    big = os.urandom(1 << 20)
    url = senv.exec_url(senv.box, ["cat"], stdin=True, stdout=True, stderr=False)
    with K.remote_command(transport, url, stdin=True, stdout=True, stderr=False,
                          timeout=30) as r:
        r.write_stdin(big)
        r.close_stdin()
        res = r.wait(timeout=30)
    assert len(res.stdout) == len(big), res
    assert hashlib.sha256(res.stdout).digest() == hashlib.sha256(big).digest()
    assert res.exit_code == 0, res


@needs_root
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_exit_codes(senv, transport):
    for code in (3, 1, 255):
        url = senv.exec_url(senv.box, ["/bin/sh", "-c", f"exit {code}"])
        res = K.run_exec(transport, url)
        st = res.status
        assert res.exit_code == code, res
        assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode", st
        assert st["metadata"] == {}, st
        assert st["details"]["causes"] == [{"reason": "ExitCode", "message": str(code)}], st
        assert st["message"].startswith("command terminated with non-zero exit code"), st
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "exit 0"])
    res = K.run_exec(transport, url)
    assert res.status == SUCCESS and res.exit_code == 0, res
    # A command that cannot run fails with a code, as ExecSync's 127.
    url = senv.exec_url(senv.box, ["/no/such/program"])
    res = K.run_exec(transport, url)
    assert res.status["status"] == "Failure" and res.exit_code not in (None, 0), res


SPDY_OLD = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"]
WS_OLD = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io",
          "base64.channel.k8s.io"]


@needs_root
@pytest.mark.parametrize("transport,proto", [("spdy", p) for p in SPDY_OLD] +
                         [("ws", p) for p in WS_OLD])
def test_exec_older_protocols(senv, transport, proto):
    """v4 has the Status JSON; before v4 the error stream carries only a failure's text."""
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    res = K.run_exec(transport, url, protocols=[proto])
    assert res.protocol == proto and (res.stdout, res.stderr) == (b"out\n", b"err\n"), res
    if res.version >= 4:
        assert res.exit_code == 3 and res.status["reason"] == "NonZeroExitCode", res
    else:
        text = res.error.decode()
        assert text.startswith("command terminated with non-zero exit code"), res
        assert "3" in text and not text.startswith("{"), res
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "echo fine"])
    res = K.run_exec(transport, url, protocols=[proto])
    assert res.stdout == b"fine\n" and res.exit_code == 0, res
    if res.version >= 4:
        assert res.status == SUCCESS, res
    else:
        assert res.error == b"", res  # nothing on success
    if transport == "spdy" and res.version < 3:
        # No resize stream before v3: a tty session must start without one.
        url = senv.exec_url(senv.box, ["/bin/sh", "-c", "test -t 1 && echo on-tty"],
                            stderr=False, tty=True)
        with K.SpdyRemoteCommand(url, stderr=False, tty=True, protocols=[proto]) as r:
            assert "resize" not in r.streams
            res = r.wait()
        assert res.stdout == b"on-tty\r\n" and res.exit_code == 0, res


@needs_root
def test_protocol_negotiation(senv):
    """The first protocol the client offers that the server speaks; 403 if none."""
    def url():
        return senv.exec_url(senv.box, ["true"])

    for offered, chosen in ((["v4.channel.k8s.io", "v3.channel.k8s.io"], "v4.channel.k8s.io"),
                            (["v3.channel.k8s.io", "v4.channel.k8s.io"], "v3.channel.k8s.io"),
                            (["v9.channel.k8s.io", "v2.channel.k8s.io"], "v2.channel.k8s.io"),
                            (list(K.REMOTECOMMAND_PROTOCOLS), "v5.channel.k8s.io")):
        with K.SpdyConnection.connect(url(), offered) as c:
            assert c.response.status == 101 and c.protocol == chosen, c.response
            assert c.response.header("Upgrade").lower() == "spdy/3.1", c.response
            assert len(c.response.header_all("X-Stream-Protocol-Version")) == 1
    with K.SpdyConnection.connect(url(), method="GET") as c:  # GET is fine too
        assert c.protocol == "v5.channel.k8s.io"
    with K.WsConnection.connect(url(), ["v9.channel.k8s.io", "v5.channel.k8s.io"]) as c:
        assert c.protocol == "v5.channel.k8s.io", c.response
    refusals = [(K.SpdyConnection.connect, url(), ["v9.channel.k8s.io"]),
                (K.SpdyConnection.connect, url(), [K.PORTFORWARD_PROTOCOL]),
                (K.SpdyConnection.connect, senv.pf_url([8080]), ["v4.channel.k8s.io"]),
                (K.WsConnection.connect, url(), ["v9.channel.k8s.io"]),
                (K.WsConnection.connect, url(), [K.PORTFORWARD_PROTOCOL])]
    for connect, u, offered in refusals:
        with pytest.raises(K.UpgradeFailed) as e:
            connect(u, offered)
        assert e.value.status == 403 and e.value.response.body.strip(), \
            (offered, e.value.response)


@needs_root
def test_websocket_protocol_choice_is_the_clients(senv):
    """As for SPDY, the first protocol in the client's list that the server speaks wins:
    the kubelet's wsstream handshake walks the client's Sec-WebSocket-Protocol list and
    takes the first entry it allows."""
    for offered, chosen in ((["v4.channel.k8s.io", "v5.channel.k8s.io"], "v4.channel.k8s.io"),
                            (["base64.channel.k8s.io", "v4.channel.k8s.io"],
                             "base64.channel.k8s.io"),
                            (["v4.base64.channel.k8s.io", "v5.channel.k8s.io"],
                             "v4.base64.channel.k8s.io")):
        with K.WsConnection.connect(senv.exec_url(senv.box, ["true"]), offered) as c:
            assert c.protocol == chosen, (offered, c.response)


@needs_root
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_large_output(senv, transport):
    """Far more than SPDY's 64 KiB initial window, which spdystream never updates."""
    url = senv.exec_url(senv.box, ["/bin/sh", "-c",
                                   "busybox seq 1 60000; busybox seq 1 40000 >&2"])
    res = K.run_exec(transport, url, timeout=30)
    want_out = "".join(f"{i}\n" for i in range(1, 60001)).encode()
    want_err = "".join(f"{i}\n" for i in range(1, 40001)).encode()
    assert len(res.stdout) == len(want_out) and res.stdout == want_out, res
    assert len(res.stderr) == len(want_err) and res.stderr == want_err, res
    assert res.exit_code == 0, res
    url = senv.exec_url(senv.box, ["head", "-c", "3000000", "/dev/zero"], stderr=False)
    res = K.run_exec(transport, url, stderr=False, timeout=30)
    assert len(res.stdout) == 3000000 and res.stdout.count(0) == 3000000, res
    assert res.exit_code == 0


@needs_root
def slow_exec(senv, script, pause):
    """Exec of @script, read by a client that waits @pause s first; -> (bytes of stdout,
    the status)."""
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", script], stdout=True, stderr=False)
    sock, resp, rest = K.upgrade(url, "POST", K.spdy_upgrade_headers(["v4.channel.k8s.io"]),
                                 timeout=10)
    try:
        comp = K.HeaderCompressor()
        sock.sendall(K.syn_stream_frame(comp, 1, {"streamtype": "error"}) +
                     K.syn_stream_frame(comp, 3, {"streamtype": "stdout"}))
        time.sleep(pause)
        parser, got, status, done = K.SpdyParser(), 0, b"", False
        sock.settimeout(10)
        data = rest
        while not done:
            for f in parser.feed(data):
                if f.control and f.type == K.GOAWAY:
                    done = True
                elif not f.control and f.stream_id == 3:
                    got += len(f.data)
                elif not f.control and f.stream_id == 1:
                    status += f.data
            if not done:
                data = sock.recv(1 << 20)
                assert data, "closed before GOAWAY"
    finally:
        sock.close()
    return got, status


def test_exec_slow_client_gets_all_output(senv):
    """A client that reads nothing for a while still gets all the output: the server stops
    reading the pipe while the client lags, and the drain after the command's exit counts
    only the time the client keeps up. Here the command exits (0.2 s) while a process it
    left writes 8 MiB into the pipe and the client reads nothing until 1 s."""
    n = 8 << 20
    got, status = slow_exec(senv, f"head -c {n} /dev/zero & sleep 0.2; exit 5", 1.0)
    assert got == n, got
    assert json.loads(status)["details"]["causes"][0]["message"] == "5", status
    # And a command that writes more than all the buffers hold, then exits.
    got, status = slow_exec(senv, f"head -c {3 * n} /dev/zero; exit 5", 1.0)
    assert got == 3 * n, got


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ping_during_a_session(senv, transport):
    """SPDY PING and WebSocket ping (client-go's heartbeat) are answered mid-session."""
    url = senv.exec_url(senv.box, ["cat"], stdin=True, stdout=True, stderr=False)
    with K.remote_command(transport, url, stdin=True, stdout=True, stderr=False) as r:
        for _ in range(3):
            assert r.ping() < K.IO_TIMEOUT
        r.write_stdin(b"x")
        r.read_until(b"x")
        assert r.ping() < K.IO_TIMEOUT
        r.close_stdin()
        res = r.wait()
    assert res.stdout == b"x" and res.exit_code == 0, res


@needs_root
def test_spdy_ignores_settings_window_updates_and_unknown_frames(senv):
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "echo hi"], stderr=False)
    with K.SpdyConnection.connect(url) as c:
        c.send_raw(K.settings_frame([(0, 7, 1 << 20), (0, 4, 100)]) +
                   K.window_update_frame(0, 1 << 20) +
                   K.control_frame(0x55, b"an unknown control frame type") +
                   K.ping_frame(1))
        err = c.open_stream({"streamtype": "error"})
        c.send_raw(K.window_update_frame(err.id, 1000))
        out = c.open_stream({"streamtype": "stdout"})
        assert out.read_all() == b"hi\n"
        assert json.loads(err.read_all()) == SUCCESS
        assert 1 in c.pongs
        assert not c.orphans, c.orphans


# --------------------------------------------------------------------------- attach


@pytest.mark.valgrind
@needs_root
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach_with_stdin(senv, transport):
    cid = senv.run_ctr(senv.pod_id, senv.pod_cfg, f"reader-{transport}", stdin=True,
                       command=["/bin/sh", "-c", "while read l; do echo got:$l; done"])
    try:
        for word in ("one", "two"):  # the container outlives each attach
            url = senv.attach_url(cid, stdin=True, stdout=True, stderr=True)
            with K.remote_command(transport, url, stdin=True, stdout=True, stderr=True) as r:
                r.write_stdin(f"{word}\n".encode())
                out = r.read_until(f"got:{word}\n".encode())
            assert out.endswith(f"got:{word}\n".encode()), out
            assert senv.cstatus(cid).state == pb.CONTAINER_RUNNING
        # What the container wrote went to its log as well.
        log = senv.cstatus(cid).log_path
        deadline = time.monotonic() + 5
        while not {("stdout", "F", "got:one"), ("stdout", "F", "got:two")} <= \
                set(senv.log_records(log)):
            assert time.monotonic() < deadline, senv.log_records(log)
            time.sleep(0.1)
    finally:
        senv.drop(cid)


@needs_root
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach_stdout_only(senv, transport):
    cid = senv.run_ctr(senv.pod_id, senv.pod_cfg, f"ticker-{transport}", command=[
        "/bin/sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"])
    try:
        url = senv.attach_url(cid, stdout=True, stderr=False)
        with K.remote_command(transport, url, stdout=True, stderr=False) as r:
            if transport == "spdy":
                assert sorted(r.streams) == ["error", "stdout"]
            out = r.read_until(lambda d: len(re.findall(rb"tick (\d+)\n", d)) >= 3)
            if transport == "ws":
                assert r.first == (K.CH_STDOUT, b"")
        nums = [int(n) for n in re.findall(rb"tick (\d+)\n", out)]
        assert nums == list(range(nums[0], nums[0] + len(nums))), out
        assert senv.cstatus(cid).state == pb.CONTAINER_RUNNING
    finally:
        senv.drop(cid)


@needs_root
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach_until_the_container_exits(senv, transport):
    cid = senv.run_ctr(senv.pod_id, senv.pod_cfg, f"once-{transport}", stdin=True,
                       command=["/bin/sh", "-c", "read l; echo bye:$l; echo err >&2"])
    try:
        url = senv.attach_url(cid, stdin=True, stdout=True, stderr=True)
        with K.remote_command(transport, url, stdin=True, stdout=True, stderr=True) as r:
            r.write_stdin(b"x\n")
            res = r.wait(timeout=15)
        assert res.stdout == b"bye:x\n" and res.stderr == b"err\n", res
        assert res.exit_code == 0 and res.status == SUCCESS, res
        assert senv.wait_exit(cid).exit_code == 0
    finally:
        senv.crm(cid)


# --------------------------------------------------------------------------- port-forward


def http_ok(data):
    head = data.split(b"\r\n", 1)[0]
    return re.match(rb"HTTP/1\.[01] 200", head) is not None and data.endswith(INDEX)


@pytest.mark.valgrind
@needs_root
def test_portforward_spdy_http(senv):
    url = senv.pf_url([8080])
    with K.SpdyPortForward(url) as pf:
        assert pf.protocol == K.PORTFORWARD_PROTOCOL
        for _ in range(2):  # one connection after the other in one session
            c = pf.open(8080)
            c.send(HTTP_GET)
            data = c.read_all()  # the server's FIN once httpd closed
            assert http_ok(data), data
            assert c.error_text() == ""
            assert c.data_stream.rst is None


@needs_root
def test_portforward_spdy_two_ports_and_concurrent_connections(senv):
    url = senv.pf_url([8080, 9090])
    big, small = os.urandom(1 << 20), b"small;" * 1000
    with K.SpdyPortForward(url, timeout=30) as pf:
        a, b, h = pf.open(9090), pf.open(9090), pf.open(8080)
        assert len({a.request_id, b.request_id, h.request_id}) == 3
        errors = []

        def pump():
            try:
                for i in range(0, len(big), 65536):
                    a.send(big[i:i + 65536])
                a.close_write()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        t = threading.Thread(target=pump)
        t.start()
        b.send(small)
        h.send(HTTP_GET)
        b.close_write()
        assert b.read_all() == small
        assert http_ok(h.read_all())
        t.join(30)
        assert not errors and not t.is_alive(), errors
        got = a.read_all(timeout=30)
        assert len(got) == len(big) and got == big
        for c in (a, b, h):
            assert c.error_text() == "" and c.data_stream.rst is None


@needs_root
def test_portforward_spdy_port_nobody_listens_on(senv):
    url = senv.pf_url([8081, 8080])
    with K.SpdyPortForward(url) as pf:
        c = pf.open(8081)
        text = c.error_text()
        assert "8081" in text, text
        assert c.read_all() == b""
        c = pf.open(8080)  # the session goes on
        c.send(HTTP_GET)
        assert http_ok(c.read_all())


@pytest.mark.valgrind
@needs_root
@pytest.mark.parametrize("proto", K.WS_PORTFORWARD_PROTOCOLS)
def test_portforward_websocket(senv, proto):
    url = senv.pf_url([8080, 9090])
    blob = os.urandom(300000)
    with K.WsPortForward(url, protocols=(proto,), timeout=20) as wp:
        assert wp.protocol == proto
        assert (wp.port(0), wp.port(1)) == (8080, 9090)
        wp.send(0, HTTP_GET)
        wp.send(1, blob)
        assert http_ok(wp.read_until(0, INDEX))
        got = wp.read_until(1, lambda d: len(d) >= len(blob))
        assert got == blob
        assert wp.error(0) == b"" and wp.error(1) == b""


@needs_root
def test_portforward_websocket_ports_from_the_query(senv):
    url = senv.pf_url([])
    with K.WsPortForward(url + "?port=9090&port=8080") as wp:
        assert (wp.port(0), wp.port(1)) == (9090, 8080)
        wp.send(1, HTTP_GET)
        assert http_ok(wp.read_until(1, INDEX))
        wp.send(0, b"ping\n")
        assert wp.read_until(0, b"ping\n") == b"ping\n"
    # Without ports in the request or the query there is nothing to forward.
    resp = K.http_request(senv.pf_url([]), "GET", K.ws_upgrade_headers(
        ["v4.channel.k8s.io"], "dGhlIHNhbXBsZSBub25jZQ=="))
    assert resp.status == 400 and resp.body.strip(), resp


# --------------------------------------------------------------------------- HTTP answers


@pytest.mark.valgrind
@needs_root
def test_http_errors_for_tokens_and_upgrades(senv):
    url = senv.exec_url(senv.box, ["true"])
    assert K.run_exec("spdy", url).exit_code == 0
    # Used: 401, over either transport, with a text saying why.
    for connect in (K.SpdyConnection.connect, K.WsConnection.connect):
        with pytest.raises(K.UpgradeFailed) as e:
            connect(url)
        r = e.value.response
        assert r.status == 401 and r.body.strip(), r
        assert (r.header("Content-Type") or "").startswith("text/plain"), r
    # Unknown: 404.
    base = url.split("/exec/")[0]
    fresh = senv.exec_url(senv.box, ["true"])
    for path in (f"/exec/{os.urandom(16).hex()}", f"/attach/{os.urandom(16).hex()}",
                 f"/portforward/{os.urandom(16).hex()}", "/exec/", "/exec/x/y", "/",
                 "/attach/" + fresh.rsplit("/", 1)[1]):  # an exec token is no attach token
        r = K.http_request(base + path, "POST",
                           K.spdy_upgrade_headers(K.REMOTECOMMAND_PROTOCOLS))
        assert r.status == 404 and r.body.strip(), (path, r)
        assert (r.header("Content-Type") or "").startswith("text/plain"), r
    # No proper upgrade: 400.
    for headers in ([], [("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version",
                                                   "v4.channel.k8s.io")],
                    [("Connection", "Upgrade"), ("Upgrade", "h2c")]):
        r = K.http_request(senv.exec_url(senv.box, ["true"]), "GET", headers)
        assert r.status == 400 and r.body.strip(), (headers, r)


@needs_root
def test_token_expiry(runtd_factory, tmp_path):
    """A daemon with streaming.token_ttl 1: a URL used at once works, one used 2 s later
    is refused with 401 (a fake pod: only the token matters here)."""
    pods = Pods(lambda **kw: runtd_factory(streaming=dict(STREAMING, token_ttl=1), **kw),
                tmp_path)
    try:
        pid = pods.run(pods.config("ttl"))
        rt = pods.rt()

        def url():
            return rt.PortForward(pb.PortForwardRequest(pod_sandbox_id=pid, port=[80]),
                                  timeout=T).url

        with K.SpdyPortForward(url()) as pf:
            assert pf.protocol == K.PORTFORWARD_PROTOCOL
        stale = [url(), url()]
        time.sleep(2.2)
        for u, connect in zip(stale, (K.SpdyPortForward, K.WsPortForward)):
            with pytest.raises(K.UpgradeFailed) as e:
                connect(u)
            assert e.value.status == 401 and e.value.response.body.strip(), e.value.response
        pods.remove(pid)
        assert pods.leftovers() == EMPTY
    finally:
        pods.cleanup()


# --------------------------------------------------------------------------- hostile clients


def bad_zlib_dictionary(conn):
    block = b"\x78\xbb" + struct.pack(">I", 0x12345678) + b"\x00\x00\xff\xff"
    return K.syn_stream_frame(None, conn.next_id, None, block=block)


def corrupt_deflate(conn):
    good = K.HeaderCompressor().block({"streamtype": "stdout"})
    # After the zlib header and dictionary id: 0xff is a final block of the reserved type.
    return K.syn_stream_frame(None, conn.next_id, None, block=good[:6] + b"\xff" * 16)


def bad_name_value_block(conn):
    nv = struct.pack(">I", 5) + struct.pack(">I", 10) + b"streamtype"  # 5 pairs, 1/2 there
    return K.syn_stream_frame(None, conn.next_id, None, block=conn.comp.raw(nv))


SPDY_FATAL = {
    "garbage": lambda c: b"\xff" * 64,
    "huge-control-frame": lambda c: K.control_frame(K.SYN_STREAM, b"\0\0\0\1",
                                                    length=K.MAX_LENGTH),
    "bad-zlib-dictionary": bad_zlib_dictionary,
    "corrupt-deflate": corrupt_deflate,
    "even-stream-id": lambda c: K.syn_stream_frame(c.comp, 2, {"streamtype": "stdout"}),
}
# Errors a server may take as the stream's (RST_STREAM) rather than the session's.
SPDY_LENIENT = {
    "spdy-version-2": lambda c: K.control_frame(K.SYN_STREAM, struct.pack(
        ">IIBB", c.next_id, 0, 0, 0) + b"\0\0\0\0", version=2),
    "bad-name-value-block": bad_name_value_block,
}


@needs_root
@pytest.mark.parametrize("phase", ["before-streams", "mid-session"])
@pytest.mark.parametrize("case", sorted(SPDY_FATAL) + sorted(SPDY_LENIENT))
def test_spdy_hostile_frames(senv, baseline, case, phase):
    url = senv.exec_url(senv.box, ["cat"], stdin=True, stdout=True, stderr=False)
    conn = K.SpdyConnection.connect(url)
    try:
        if phase == "mid-session":
            for kind in ("error", "stdin", "stdout"):
                conn.open_stream({"streamtype": kind})
            conn.send_data(3, b"alive\n")
            conn.streams[5].read_until(b"alive\n")
        sid = conn.next_id
        frame = (SPDY_FATAL.get(case) or SPDY_LENIENT[case])(conn)
        conn.send_raw(frame)
        if case in SPDY_FATAL:
            assert conn.wait_closed(FATAL_CLOSE), \
                f"session still open {FATAL_CLOSE}s after {case}: {conn.describe()}"
            if conn.goaway is not None:
                assert conn.goaway.status == K.GOAWAY_PROTOCOL_ERROR, conn.goaway
        else:
            # Refused as a stream (RST_STREAM) or as the session (GOAWAY, close).
            conn.wait_for(lambda: conn.closed or any(
                f.type == K.RST_STREAM and f.stream_id == sid for f in conn.frames),
                CREATION_TIMEOUT + 5, f"a refusal of {case}")
            if phase == "before-streams":
                # No stream will come: the session ends by the creation timeout at the latest.
                assert conn.wait_closed(CREATION_TIMEOUT + 5), conn.describe()
            elif not conn.closed:
                # Only the stream was refused: the session goes on, and ends normally.
                conn.send_data(3, b"still\n", fin=True)
                assert conn.streams[5].read_all() == b"alive\nstill\n"
                assert json.loads(conn.streams[1].read_all()) == SUCCESS
    finally:
        conn.close()
    assert_recovered(senv, baseline)


def ws_frames(case):
    return {
        "unmasked": K.ws_frame(K.OP_BINARY, b"\x00unmasked", mask=False),
        "oversized-length": K.ws_frame(K.OP_BINARY, b"", length=1 << 62),
        "length-top-bit": K.ws_frame(K.OP_BINARY, b"", length=(1 << 63) | 5),
        "reserved-opcode": K.ws_frame(0x3, b"\x00x"),
        "rsv-bits": K.ws_frame(K.OP_BINARY, b"\x00x", rsv=4),
        "fragmented-ping": K.ws_frame(K.OP_PING, b"p", fin=False),
        "long-ping": K.ws_frame(K.OP_PING, b"p" * 126),
        "lone-continuation": K.ws_frame(K.OP_CONT, b"\x00x"),
        "text-under-binary-protocol-bad-utf8": K.ws_frame(K.OP_TEXT, b"\x00\xff\xfe"),
        "bad-close-code": K.ws_frame(K.OP_CLOSE, struct.pack(">H", 999)),
    }[case]


WS_CASES = ["unmasked", "oversized-length", "length-top-bit", "reserved-opcode", "rsv-bits",
            "fragmented-ping", "long-ping", "lone-continuation",
            "text-under-binary-protocol-bad-utf8", "bad-close-code"]
WS_ERROR_CODES = {K.CLOSE_PROTOCOL_ERROR, K.CLOSE_UNSUPPORTED, K.CLOSE_INVALID_DATA,
                  K.CLOSE_POLICY, K.CLOSE_TOO_BIG}


@pytest.mark.valgrind
@needs_root
@pytest.mark.parametrize("case", WS_CASES)
def test_websocket_hostile_frames(senv, baseline, case):
    url = senv.exec_url(senv.box, ["cat"], stdin=True, stdout=True, stderr=False)
    with K.WsRemoteCommand(url, stdin=True, stderr=False) as r:
        r.write_stdin(b"alive\n")
        r.read_until(b"alive\n")
        r.conn.send_raw(ws_frames(case))
        assert r.conn.wait_closed(FATAL_CLOSE), \
            f"connection still open {FATAL_CLOSE}s after {case}: {r.conn.describe()}"
        if r.conn.close_code is not None:
            assert r.conn.close_code in WS_ERROR_CODES, r.conn.describe()
    assert_recovered(senv, baseline)


@needs_root
def test_websocket_bad_base64(senv, baseline):
    url = senv.exec_url(senv.box, ["cat"], stdin=True, stdout=True, stderr=False)
    with K.WsRemoteCommand(url, stdin=True, stderr=False,
                           protocols=["v4.base64.channel.k8s.io"]) as r:
        r.write_stdin(b"alive\n")
        r.read_until(b"alive\n")
        r.conn.send_text(b"0@@not base64@@")
        assert r.conn.wait_closed(FATAL_CLOSE), r.conn.describe()
        if r.conn.close_code is not None:
            assert r.conn.close_code in WS_ERROR_CODES, r.conn.describe()
    assert_recovered(senv, baseline)


VANISH = ["after-upgrade", "blocked", "flooding", "mid-frame"]


@pytest.mark.valgrind
@needs_root
@pytest.mark.parametrize("when", VANISH)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_vanishes(senv, baseline, transport, when):
    """The client disappears (TCP reset): the command is killed, nothing stays behind."""
    marker = f"sleep 43{VANISH.index(when)}{TRANSPORTS.index(transport)}"
    if when == "flooding":
        marker = f"yes flood-{when}-{transport}"
        cmd = ["/bin/sh", "-c", f"exec busybox {marker}"]
    else:
        cmd = ["/bin/sh", "-c", f"echo started; exec busybox {marker}"]
    url = senv.exec_url(senv.box, cmd, stdin=True, stdout=True, stderr=True)
    if transport == "spdy":
        conn = K.SpdyConnection.connect(url)
        if when != "after-upgrade":
            streams = {k: conn.open_stream({"streamtype": k})
                       for k in ("error", "stdin", "stdout", "stderr")}
            if when == "flooding":
                streams["stdout"].read_until(lambda d: len(d) > 300000)
            else:
                streams["stdout"].read_until(b"started\n")
            if when == "mid-frame":
                conn.send_raw(K.data_frame(streams["stdin"].id, b"", length=100000) +
                              b"x" * 1000)
    else:
        r = K.WsRemoteCommand(url, stdin=True, stdout=True, stderr=True)
        conn = r.conn
        if when == "flooding":
            r.read_until(lambda d: len(d) > 300000)
        elif when != "after-upgrade":
            r.read_until(b"started\n")
        if when == "mid-frame":
            conn.send_raw(K.ws_frame(K.OP_BINARY, b"\x00" + b"x" * 1000, length=100000)[:1014])
    conn.abort()
    if when != "after-upgrade" or transport == "ws":
        wait_gone(senv, senv.box, marker)
    assert_recovered(senv, baseline)
    assert marker not in senv.processes(senv.box)


def vm_rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ping_flood_without_reading_is_bounded(senv, baseline, transport):
    """A client that sends PINGs (WebSocket pings) as fast as it can and reads none of the
    replies: the server stops reading it once its replies pile up, instead of growing."""
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "exec busybox sleep 4401"], stdout=True)
    if transport == "spdy":
        sock, _, _ = K.upgrade(url, "POST", K.spdy_upgrade_headers(["v4.channel.k8s.io"]))
        comp = K.HeaderCompressor()
        sock.sendall(K.syn_stream_frame(comp, 1, {"streamtype": "error"}) +
                     K.syn_stream_frame(comp, 3, {"streamtype": "stdout"}))
        burst = b"".join(K.ping_frame(2 * i + 1) for i in range(50000))  # 600 kB
    else:
        key = base64.b64encode(os.urandom(16)).decode()
        sock, _, _ = K.upgrade(url, "GET", K.ws_upgrade_headers(["v4.channel.k8s.io"], key))
        burst = K.ws_frame(K.OP_PING, b"p" * 125) * 4000  # 524 kB
    before = vm_rss_kb(senv.pid)
    sock.settimeout(2)
    sent = 0
    try:
        while sent < 200 << 20:
            sock.sendall(burst)
            sent += len(burst)
    except (socket.timeout, OSError):
        pass
    grown = vm_rss_kb(senv.pid) - before
    assert sent < 200 << 20, "the server read 200 MB of pings it could not answer"
    assert grown < 16 * 1024, f"runtd grew {grown} kB"
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    wait_gone(senv, senv.box, "sleep 4401")
    assert_recovered(senv, baseline)


def test_portforward_spdy_many_connections_in_turn(senv):
    """kubectl uses a new requestid for every local connection: a session serves far more
    than the 128 live connections it allows at once."""
    with K.SpdyPortForward(senv.pf_url([9090])) as pf:
        for i in range(150):
            c = pf.open(9090)
            c.send(b"n%d\n" % i)
            assert c.read_until(b"n%d\n" % i) == b"n%d\n" % i
            c.close_write()
            c.read_all()


def test_exec_tty_session_goes_with_its_client(senv, baseline):
    """A tty command has a session of its own, which the exec's process group does not
    hold: it still goes when the client does, even if it ignores the hangup."""
    marker = "sleep 4402"
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", f"trap '' HUP; echo up; busybox {marker}; "
                                   "echo after"], stdin=True, stdout=True, stderr=False,
                        tty=True)
    r = K.SpdyRemoteCommand(url, stdin=True, stdout=True, stderr=False, tty=True)
    r.read_until(b"up")
    r.abort()
    wait_gone(senv, senv.box, marker)
    assert "trap '' HUP" not in senv.processes(senv.box)  # its shell too
    assert_recovered(senv, baseline)


def test_client_leaving_with_stdin_backed_up(senv, baseline):
    """The command reads no stdin, the client sends more than the buffers hold and leaves:
    that is seen although the server has stopped reading it, and the command goes."""
    marker = "sleep 4403"
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", f"exec busybox {marker}"], stdin=True,
                        stdout=True)
    conn = K.SpdyConnection.connect(url)
    conn.open_stream({"streamtype": "error"})
    stdin = conn.open_stream({"streamtype": "stdin"})
    conn.open_stream({"streamtype": "stdout"})
    conn.sock.settimeout(2)
    try:
        for _ in range(64):
            conn.sock.sendall(K.data_frame(stdin.id, b"x" * 32768))
    except (socket.timeout, OSError):
        pass
    conn.close()
    wait_gone(senv, senv.box, marker)
    assert_recovered(senv, baseline)


def test_attach_slots_come_back_from_clients_gone(senv):
    """Clients that leave stdin behind which the container never reads do not hold the
    monitor's 32 attach slots: a new attach still works (their stdin is given up)."""
    cid = senv.run_ctr(senv.pod_id, senv.pod_cfg, "deaf", stdin=True, command=[
        "/bin/sh", "-c", "while true; do echo tick; sleep 0.2; done"])
    try:
        for _ in range(34):
            r = K.SpdyRemoteCommand(senv.attach_url(cid, stdin=True, stdout=True,
                                                    stderr=False),
                                    stdin=True, stdout=True, stderr=False)
            r.write_stdin(b"x" * (128 << 10))
            r.abort()
        with K.SpdyRemoteCommand(senv.attach_url(cid, stdout=True, stderr=False),
                                 stdout=True, stderr=False) as r:
            assert b"tick" in r.read_until(b"tick\n")
    finally:
        senv.drop(cid)


@needs_root
def test_spdy_streams_never_created(senv, baseline):
    """A client that opens the error stream only: the session ends at
    streaming.stream_creation_timeout, and the command never ran."""
    url = senv.exec_url(senv.box, ["/bin/sh", "-c", "echo ran"])
    with K.SpdyConnection.connect(url) as c:
        t0 = time.monotonic()
        err = c.open_stream({"streamtype": "error"})
        assert c.wait_closed(CREATION_TIMEOUT + 5), c.describe()
        took = time.monotonic() - t0
        assert CREATION_TIMEOUT - 1.5 <= took <= CREATION_TIMEOUT + 3, took
        assert not any(f.type == K.DATA and f.data and f.stream_id != err.id
                       for f in c.frames), c.frames
    assert_recovered(senv, baseline)


@needs_root
def test_many_sessions_at_once(senv, baseline):
    """20 concurrent exec sessions, half of each transport, each its own output."""
    results, errors = {}, []

    def one(i):
        try:
            t = TRANSPORTS[i % 2]
            url = senv.exec_url(senv.box, ["/bin/sh", "-c", f"busybox seq 1 {1000 + i}"])
            results[i] = K.run_exec(t, url, timeout=30)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{i}: {e!r}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for i, res in results.items():
        assert res.stdout == "".join(f"{n}\n" for n in range(1, 1001 + i)).encode(), (i, res)
        assert res.exit_code == 0
    assert_recovered(senv, baseline)


# --------------------------------------------------------------------------- a local attacker
# (issue 14) Any local user reaches the streaming port: idle, trickling or token-less
# connections must not keep a valid URL from being served.

MAX_CONNECTIONS = 512  # stream.c


def raw_connect(url, timeout=5.0):
    host, port, _, _ = K.split_url(url)
    return socket.create_connection((host, port), timeout=timeout)


def closed_within(sock, timeout):
    """Seconds until the server ends @sock (EOF or reset), or None after @timeout; what it
    sends first (a reply) is read and dropped."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(min(left, 0.2))
        try:
            if not sock.recv(4096):
                return time.monotonic() - start
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - start


def is_open(sock):
    """Not ended by the server (no EOF, no reset) at this instant; never waits."""
    old = sock.gettimeout()
    sock.settimeout(0)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(old)


def more_fds(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@needs_root
def test_token_refused_at_the_request_line(senv):
    """A request line with an unknown, used or malformed token: the server closes the
    connection at once, without waiting for headers; a valid token's waits for them."""
    used = senv.exec_url(senv.box, ["true"])
    assert K.run_exec("spdy", used).exit_code == 0
    base = used.split("/exec/")[0]
    for path in (f"/exec/{os.urandom(16).hex()}", "/exec/" + used.rsplit("/", 1)[1],
                 f"/portforward/{os.urandom(16).hex()}?port=80", "/exec/", "/"):
        with raw_connect(base) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\n".encode())
            t = closed_within(s, 2.0)
            assert t is not None and t < 1.0, (path, t)
    fresh = senv.exec_url(senv.box, ["true"])
    with raw_connect(fresh) as s:
        s.sendall(f"GET {K.split_url(fresh)[2]} HTTP/1.1\r\n".encode())
        assert closed_within(s, 1.0) is None  # in time still: its headers may come


@needs_root
def test_header_deadline_counts_from_accept(senv):
    """A byte every 0.5 s keeps no connection: it ends streaming.header_timeout after the
    accept, whether or not it ever sent a request line."""
    url = senv.exec_url(senv.box, ["true"])
    fresh = K.split_url(url)[2]
    with raw_connect(url) as a, raw_connect(url) as b:
        start = time.monotonic()
        drip = [iter(b"GET /exec/" + b"a" * 64), iter(f"GET {fresh} HTTP/1.1\r\nX-A: ".encode()
                                                    + b"b" * 64)]
        ends = [None, None]
        while None in ends and time.monotonic() - start < HEADER_TIMEOUT + 3:
            for i, s in enumerate((a, b)):
                if ends[i] is not None:
                    continue
                try:
                    s.send(bytes([next(drip[i])]))
                except OSError:
                    ends[i] = time.monotonic() - start
                    continue
                if not is_open(s):
                    ends[i] = time.monotonic() - start
            time.sleep(0.5)
    for t in ends:
        assert t is not None and HEADER_TIMEOUT - 0.5 <= t <= HEADER_TIMEOUT + 1.5, ends


@needs_root
def test_idle_and_trickling_flood(senv, baseline):
    """1000 idle connections and 100 trickling ones (a byte a second): a fresh exec URL is
    served within a second all the same; the tricklers end at the header deadline; once the
    attackers are gone runtd's descriptors and threads are back to where they were."""
    assert more_fds(4096) >= 1200, "the test needs 1200 descriptors"
    base_url = senv.exec_url(senv.box, ["true"])
    idle, drips, opened_at = [], [], []
    stop = threading.Event()
    trickled = {}

    def trickle():
        n = 0
        while not stop.wait(1.0) and n < 60:
            n += 1
            for i, s in enumerate(drips):
                if i in trickled:
                    continue
                try:
                    s.send(b"G")
                except OSError:
                    trickled.setdefault(i, time.monotonic() - opened_at[i])

    try:
        for _ in range(1000):
            idle.append(raw_connect(base_url))
        for _ in range(100):
            drips.append(raw_connect(base_url))
            opened_at.append(time.monotonic())
        dripper = threading.Thread(target=trickle, daemon=True)
        dripper.start()
        t0 = time.monotonic()
        fds = runtd_counts(senv.pid)[0]
        assert fds <= baseline[0] + MAX_CONNECTIONS + 64 + 8, (fds, baseline)
        for t in TRANSPORTS:
            start = time.monotonic()
            url = senv.exec_url(senv.box, ["/bin/sh", "-c", "echo ok"])
            res = K.run_exec(t, url, timeout=5)
            took = time.monotonic() - start
            assert (res.stdout, res.exit_code) == (b"ok\n", 0), res
            print(f"exec over {t} during the flood: {took * 1000:.0f} ms")
        # The limit, not the deadline, made room: the server was full then (the time is
        # hack/bench's to measure; this bound only says no attacker had timed out yet).
        assert time.monotonic() - t0 < HEADER_TIMEOUT - 1
        held = sum(is_open(s) for s in idle + drips)
        assert held >= MAX_CONNECTIONS - 16, held
        assert all(is_open(s) for s in drips[-50:])  # the newest were not the ones dropped
        # The tricklers go at the deadline, not later.
        deadline = time.monotonic() + HEADER_TIMEOUT + 5
        while len(trickled) < len(drips) and time.monotonic() < deadline:
            for i, s in enumerate(drips):
                if i not in trickled and not is_open(s):
                    trickled[i] = time.monotonic() - opened_at[i]
            time.sleep(0.1)
        late = sorted(trickled.values())
        assert len(late) == len(drips), f"{len(drips) - len(late)} trickling ones still open"
        assert late[-1] <= HEADER_TIMEOUT + 3.0, late[-5:]
    finally:
        stop.set()
        for s in idle + drips:
            s.close()
    deadline = time.monotonic() + 10
    while True:
        now = runtd_counts(senv.pid)
        if now[0] <= baseline[0] + 2 and now[1] <= baseline[1]:
            break
        assert time.monotonic() < deadline, (now, baseline, fd_targets(senv.pid)[-20:])
        time.sleep(0.1)
    assert_recovered(senv, baseline, timeout=10)


# --------------------------------------------------------------------------- logs

CRI_LOG = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)) "
                     r"(stdout|stderr) ([PF]) (.*)")


def log_time_ns(ts):
    """Nanoseconds of an RFC3339Nano time (UTC only, as runtd writes)."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", ts)
    assert m, f"not an RFC 3339 UTC time: {ts}"
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = int((m.group(7) or "0").ljust(9, "0"))
    secs = time.mktime((y, mo, d, h, mi, s, 0, 0, 0)) - time.timezone
    return int(secs) * 10**9 + frac


@needs_root
def test_log_rotation_under_load_keeps_every_line(senv):
    """The kubelet's rotation (rename, then ReopenContainerLog) four times while the
    container writes lines as fast as it can: every line is in exactly one file, in
    order, in CRI format; a 40000-byte line is three records, P P F."""
    script = ("i=0; while test ! -e /tmp/stop; do j=0; while test $j -lt 200; do "
              "echo line-$i; i=$((i+1)); j=$((j+1)); done; sleep 0.01; done; "
              "busybox head -c 40000 /dev/zero | busybox tr '\\0' a; echo; echo done-$i")
    cid = senv.run_ctr(senv.pod_id, senv.pod_cfg, "logger", command=["/bin/sh", "-c", script])
    try:
        log = Path(senv.cstatus(cid).log_path)

        def wait_size(n=20000, timeout=10):
            deadline = time.monotonic() + timeout
            while not (log.exists() and log.stat().st_size > n):
                assert time.monotonic() < deadline, f"{log} does not grow"
                time.sleep(0.02)

        wait_size()
        rotated = []
        for k in range(1, 5):
            dst = Path(f"{log}.{k}")
            log.rename(dst)
            rotated.append(dst)
            time.sleep(0.05)  # lines written now still go to the renamed file
            senv.rt().ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid),
                                         timeout=T)
            wait_size()
        assert senv.exec(cid, ["touch", "/tmp/stop"]).exit_code == 0
        assert senv.wait_exit(cid, timeout=30).exit_code == 0
        records, last_ns = [], 0
        for f in rotated + [log]:
            lines = f.read_text().splitlines()
            assert lines, f"{f} is empty"
            for line in lines:
                m = CRI_LOG.fullmatch(line)
                assert m, f"{f.name}: not a CRI log line: {line[:200]!r}"
                ns = log_time_ns(m.group(1))
                assert ns >= last_ns, f"{f.name}: time goes back: {line[:80]}"
                last_ns = ns
                records.append((m.group(4), m.group(5), m.group(6)))
        assert {s for s, _, _ in records} == {"stdout"}
        full, part = [], ""
        for _, tag, msg in records:
            part += msg
            if tag == "F":
                full.append(part)
                part = ""
        assert part == "", "the log ends in a partial record"
        assert full[-1].startswith("done-"), full[-3:]
        n = int(full[-1][len("done-"):])
        assert n > 1000, n
        assert full[-2] == "a" * 40000
        assert [(t, len(m)) for _, t, m in records[-4:-1]] == \
            [("P", 16384), ("P", 16384), ("F", 40000 - 2 * 16384)]
        lines = full[:-2]
        missing = sorted(set(range(n)) - {int(x[5:]) for x in lines if x.startswith("line-")})
        assert not missing, f"{len(missing)} lines lost, first {missing[:10]}"
        assert len(lines) == n, f"{len(lines) - n} lines more than written"
        assert lines == [f"line-{i}" for i in range(n)]
        assert all(t == "F" for _, t, _ in records[:-4])
    finally:
        senv.crm(cid)
