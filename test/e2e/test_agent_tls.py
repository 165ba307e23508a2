"""runt-agent over TCP with mutual TLS (a Proxmox CT's transport), driven over its protocol.

The credentials are runtd's own (test/tools/runt-agentca makes them with backends/agent/tls.c):
the agent gets its certificate, key and runtd's CA in its environment as a CT would
(RUNT_AGENT_TLS_CERT/_KEY/_CA, base64 of DER), and listens on 127.0.0.1 (--listen-tls, port 0:
the kernel's pick, read from its log). The client is agentproto.py over Python's ssl module
with runtd's client certificate. Run as root with Debian's interpreter:

    /usr/bin/python3 -m pytest test/e2e/test_agent_tls.py -q -p no:cacheprovider

Also CT mode: the agent as PID 1 of a pid namespace (unshare), its whole configuration from
the environment, reaping orphans and stopping on SIGTERM as LXC stops a CT.
"""

import errno
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import agentproto as ap
from test_agent_host import create, exec_sync, make_layer, remove, wait_exit

REPO = Path(__file__).resolve().parents[2]
RUNTD = Path(os.environ.get("RUNTD", REPO / "build" / "dev" / "cri" / "runtd"))
AGENT = Path(os.environ.get("RUNT_AGENT", RUNTD.parent / "runt-agent"))
AGENTCA = Path(os.environ.get("RUNT_AGENTCA",
                              RUNTD.parent.parent / "test" / "tools" / "runt-agentca"))
BUSYBOX = "/bin/busybox"
POD = "f00d" * 16

pytestmark = [
    pytest.mark.skipif(not AGENT.exists(), reason=f"{AGENT} not built"),
    pytest.mark.skipif(not AGENTCA.exists(), reason=f"{AGENTCA} not built"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static"),
]


@pytest.fixture(scope="session")
def runtd_binary():
    """Overrides conftest's: these tests need the agent, not runtd."""
    return None


def credentials(ca_dir, out, listen="127.0.0.1:0"):
    """runtd's CA in @ca_dir (made once), credentials for pod POD in @out: the agent's
    environment as a dict, and the PEM files (agent.crt/.key, runtd.crt/.key, ca.crt)."""
    subprocess.run([str(AGENTCA), str(ca_dir), POD, str(out), listen], check=True)
    env = {}
    for line in (Path(out) / "agent.env").read_text().splitlines():
        k, v = line.split("=", 1)
        env[k] = v
    return env


def wait_listening(log, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+) \(TLS\)", Path(log).read_text())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise AssertionError(f"the agent did not listen: {Path(log).read_text()}")


def cleanup_mounts(state):
    subprocess.run(["sh", "-c", f"grep -o '{state}/[^ ]*' /proc/mounts | sort -r | "
                    "xargs -r -n1 umount -l"], check=False)


@pytest.fixture(scope="module")
def env():
    tmp = Path(tempfile.mkdtemp(prefix="runt-agent-tls."))
    layer = make_layer(tmp / "layer")
    creds = tmp / "creds"
    agent_env = credentials(tmp / "ca", creds)
    credentials(tmp / "other-ca", tmp / "other")  # runtd of another CA
    state = tmp / "state"
    log_path = tmp / "agent.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(AGENT), "--listen-tls", "127.0.0.1:0", "--state-dir", str(state)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **agent_env})
    e = {"tmp": tmp, "layer": layer, "creds": creds, "other": tmp / "other", "proc": proc,
         "log": log_path, "n": 0, "agent_env": agent_env}
    try:
        e["port"] = wait_listening(log_path)
        yield e
    finally:
        try:
            c = connect(e)
            c.call(ap.OP_SHUTDOWN)
        except Exception:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        cleanup_mounts(state)
        if os.environ.get("RUNT_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def tls_socket(port, cert_dir, ca_dir, cert="runtd"):
    """A TLS 1.3 connection to the agent with @cert_dir's @cert.crt/.key (None: no
    certificate), trusting @ca_dir's ca.crt; the agent's certificate must name POD."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # a pod id is no host name; checked below
    ctx.load_verify_locations(str(Path(ca_dir) / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(Path(cert_dir) / f"{cert}.crt"), str(Path(cert_dir) / f"{cert}.key"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw)
    peer = s.getpeercert()
    assert dict(x[0] for x in peer["subject"])["commonName"] == POD
    assert peer["subjectAltName"] == (("DNS", POD),)
    return s


def connect(e, port=None):
    c = ap.AgentClient(tls_socket(port or e["port"], e["creds"], e["creds"]))
    ready = c.wait_event(ap.EV_READY)
    c.boot_id = ready.attrs["BOOT_ID"]
    return c


def refused(s):
    """True when the agent ends @s without sending a byte (an alert or EOF)."""
    try:
        s.settimeout(5)
        return s.recv(1) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


def log_has(e, text, timeout=5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in Path(e["log"]).read_text():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def c(env):
    cl = connect(env)
    yield cl
    cl.close()


def test_lifecycle_and_exec_over_tls(c, env):
    r = c.call(ap.OP_HELLO)
    assert r["VERSION"] == 1 and r["BOOT_ID"] == c.boot_id
    cid = create(c, env, ["sleep", "100"])
    r = exec_sync(c, cid, ["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert (r["EXIT_CODE"], r["OUT"], r["ERR"]) == (5, b"out\n", b"err\n")
    # a stream over TLS, more than one window each way
    s = c.open_stream(ap.OP_EXEC, [("ID", cid), ("ARGV", ["sh", "-c", "cat; exit 7"]),
                                   ("STDIN", 1)])
    big = os.urandom(600000)
    s.send_flow(big)
    s.close()
    s.wait_closed(timeout=20)
    assert s.data[ap.CHAN_STDOUT] == big and s.exit_code == 7
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGTERM)])
    assert wait_exit(c, cid)["EXIT_CODE"] == 128 + signal.SIGTERM
    remove(c, cid)
    # another user (the agent is not dumpable in TLS mode: its children still work)
    cid = create(c, env, ["sh", "-c", "id; cat /proc/self/status | grep ^Uid"], uid=1000,
                 gid=1000, log=1)
    assert wait_exit(c, cid)["EXIT_CODE"] == 0

    def out():
        return b"".join(f.attrs["DATA"] for f in c.events
                        if f.op == ap.EV_LOG and f.attrs["ID"] == cid)
    c.pump_until(lambda: b"Uid:" in out())
    assert out().startswith(b"uid=1000") and b"Uid:\t1000" in out()
    remove(c, cid)


def test_secrets_not_in_any_environment(c, env):
    key = env["agent_env"]["RUNT_AGENT_TLS_KEY"]
    # the agent's own: its variables gone, their bytes zeroed
    environ = Path(f"/proc/{env['proc'].pid}/environ").read_bytes()
    assert b"RUNT_AGENT" not in environ and key.encode() not in environ
    assert b"PATH=" in environ
    # a container's, and what a container can see of the agent's
    cid = create(c, env, ["sleep", "100"])
    r = exec_sync(c, cid, ["sh", "-c", f"cat /proc/self/environ; echo; cat /proc/1/environ; "
                                       f"cat /proc/{env['proc'].pid}/environ; true"])
    assert b"RUNT_AGENT" not in r["OUT"] and key.encode() not in r["OUT"]
    assert b"PATH=/bin" in r["OUT"]
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)


def test_client_without_certificate_refused(env):
    s = tls_socket(env["port"], env["creds"], env["creds"], cert=None)
    # TLS 1.3: the client is through its handshake before the agent judged it; whatever it
    # sends then is never read (a SHUTDOWN here would stop the agent)
    try:
        s.sendall(ap.frame(ap.K_REQ, ap.OP_SHUTDOWN, 0, 1))
    except (ssl.SSLError, OSError):
        pass
    assert refused(s)
    s.close()
    assert log_has(env, "refused: peer did not return a certificate")
    assert env["proc"].poll() is None
    c = connect(env)
    assert c.call(ap.OP_PING)["UPTIME_NS"] > 0
    c.close()


def test_other_certificates_refused(env):
    # runtd's certificate from another CA (trusting the right one to get that far)
    s = tls_socket(env["port"], env["other"], env["creds"])
    assert refused(s)
    s.close()
    assert log_has(env, "refused: client certificate: unable to get local issuer certificate")
    # the agent's own certificate (right CA, serverAuth) as a client's
    s = tls_socket(env["port"], env["creds"], env["creds"], cert="agent")
    assert refused(s)
    s.close()
    assert log_has(env, "refused: client certificate: unsuitable certificate purpose")
    # the client side: runtd of another CA does not trust this agent
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_socket(env["port"], env["other"], env["other"])
    # TLS 1.2
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ctx.wrap_socket(socket.create_connection(("127.0.0.1", env["port"]), timeout=10))
    assert env["proc"].poll() is None


def test_new_connection_replaces_the_old(env):
    c1 = connect(env)
    cid = create(c1, env, ["sleep", "100"])
    s = c1.open_stream(ap.OP_EXEC, [("ID", cid), ("ARGV", ["sleep", "77"])])
    assert s.resp is not None
    # runtd restarted: its new connection is the channel, the old one ends
    c2 = connect(env)
    assert c2.boot_id == c1.boot_id
    with pytest.raises((EOFError, ssl.SSLError, ConnectionResetError)):
        c1.pump_until(lambda: False, timeout=5)
    c1.close()
    assert log_has(env, "it replaces the connection")
    # the old connection's streams ended with it; the containers did not
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-f", "^sleep 77$"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the old connection's exec outlived it"
        time.sleep(0.05)
    st = c2.call(ap.OP_CTR_STATUS, [("ID", cid)])
    assert st["STATE"] == ap.ST_RUNNING
    c2.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c2, cid)
    remove(c2, cid)
    c2.close()


def test_handshake_that_stalls_does_not_block(env):
    """Half-open connections (no TLS at all) do not keep runtd out."""
    idle = [socket.create_connection(("127.0.0.1", env["port"]), timeout=10) for _ in range(6)]
    c = connect(env)
    assert c.call(ap.OP_PING)["UPTIME_NS"] > 0
    c.close()
    for s in idle:
        s.close()


def agent_host_pid(unshare_pid, timeout=5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["pgrep", "-P", str(unshare_pid)], capture_output=True,
                             text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.05)
    raise AssertionError("no agent under unshare")


def test_ct_mode_pid1(env):
    """As a CT's entrypoint: PID 1, configured by its environment alone (no --ct, no
    --listen-tls: PID 1 with RUNT_AGENT_TLS_KEY set is CT mode)."""
    tmp = env["tmp"]
    ct_env = credentials(tmp / "ca", tmp / "ct", listen="127.0.0.1:0")
    state = tmp / "ct-state"
    log_path = tmp / "ct.log"
    log = open(log_path, "wb")
    # --cgroup-root "": this pid namespace's /sys/fs/cgroup is the host's
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                             str(AGENT), "--state-dir", str(state), "--cgroup-root", ""],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **ct_env})
    try:
        port = wait_listening(log_path)
        pid = agent_host_pid(proc.pid)
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"RUNT_AGENT" not in environ
        assert ct_env["RUNT_AGENT_TLS_KEY"].encode() not in environ
        c = ap.AgentClient(tls_socket(port, tmp / "ct", tmp / "ct"))
        c.wait_event(ap.EV_READY)
        cid = create(c, env, ["sleep", "100"])
        # the container shares the agent's pid namespace, where the agent is PID 1
        r = exec_sync(c, cid, ["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"])
        assert r["OUT"].startswith(str(AGENT).encode())
        # orphans come to PID 1, which reaps them
        exec_sync(c, cid, ["sh", "-c", "(sleep 0.2 &) ; true"])
        time.sleep(1)
        r = exec_sync(c, cid, ["sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z ' "
                                           "|| true"])
        assert r["OUT"].strip() == b"0", r["OUT"]
        # LXC stops a CT with a signal to its init: the containers go, the agent ends
        os.kill(pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert log_has({"log": log_path}, "killing the containers, exiting")
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        cleanup_mounts(state)


def test_credentials_from_files(env):
    """--tls-cert/--tls-key/--tls-ca: PEM files, or the base64 of DER as in the environment."""
    tmp, creds = env["tmp"], env["creds"]
    b64 = tmp / "key.b64"
    b64.write_text(env["agent_env"]["RUNT_AGENT_TLS_KEY"] + "\n")
    log_path = tmp / "files.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(AGENT), "--listen-tls", "127.0.0.1:0",
                                 "--state-dir", str(tmp / "files-state"),
                                 "--tls-cert", str(creds / "agent.crt"), "--tls-key", str(b64),
                                 "--tls-ca", str(creds / "ca.crt")],
                                stdout=log, stderr=subprocess.STDOUT,
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    try:
        c = connect(env, port=wait_listening(log_path))
        c.call(ap.OP_SHUTDOWN)
        c.close()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
