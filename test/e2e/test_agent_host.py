"""runt-agent in host mode (--listen-unix), driven over its protocol (agentproto.py).

Run as root with Debian's interpreter; skipped when the binary is missing:

    /usr/bin/python3 -m pytest test/e2e/test_agent_host.py -q -p no:cacheprovider

The agent is built next to runtd (RUNT_AGENT, default <repo>/build/dev/cri/runt-agent).
Containers share the host's pid namespace (PID_NS 0) or get their own (PID_NS 1) and run
from an overlay of a busybox layer made here. No cgroups in host mode (this host's cgroup2
has no controllers), so limits and stats figures are not checked here.
"""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import agentproto as ap

REPO = Path(__file__).resolve().parents[2]
RUNTD = Path(os.environ.get("RUNTD", REPO / "build" / "dev" / "cri" / "runtd"))
AGENT = Path(os.environ.get("RUNT_AGENT", RUNTD.parent / "runt-agent"))
BUSYBOX = "/bin/busybox"

pytestmark = [
    pytest.mark.skipif(not AGENT.exists(), reason=f"{AGENT} not built"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static"),
]

DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/acpi"]
RO_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@pytest.fixture(scope="session")
def runtd_binary():
    """Overrides conftest's: these tests need the agent, not runtd."""
    return None


def make_layer(d):
    d = Path(d)
    for sub in ("bin", "etc", "tmp", "root", "proc", "sys", "dev"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(d / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, d / "bin" / "busybox")
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
    for name in out.split():
        if name != "busybox":
            (d / "bin" / name).symlink_to("busybox")
    (d / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                      "user:x:1000:1000:user:/:/bin/sh\n")
    (d / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    (d / "etc" / "layer-file").write_text("from the layer\n")
    return d


@pytest.fixture(scope="module")
def env():
    tmp = Path(tempfile.mkdtemp(prefix="runt-agent-test."))
    layer = make_layer(tmp / "layer")
    state = tmp / "state"
    sock = tmp / "agent.sock"
    log = open(tmp / "agent.log", "wb")
    proc = subprocess.Popen([str(AGENT), "--listen-unix", str(sock), "--state-dir", str(state)],
                            stdout=log, stderr=subprocess.STDOUT)
    e = {"tmp": tmp, "layer": layer, "sock": sock, "proc": proc, "n": 0}
    try:
        yield e
    finally:
        # SHUTDOWN kills every container; then the overlays and state go.
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
        subprocess.run(["sh", "-c", f"grep -o '{state}/[^ ]*' /proc/mounts | sort -r | "
                        "xargs -r -n1 umount -l"], check=False)
        if os.environ.get("RUNT_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def connect(e):
    c = ap.AgentClient(ap.connect_unix(e["sock"]))
    ready = c.wait_event(ap.EV_READY)
    c.boot_id = ready.attrs["BOOT_ID"]
    return c


@pytest.fixture
def c(env):
    cl = connect(env)
    yield cl
    cl.close()
    time.sleep(0.05)  # the agent takes the next connection once it saw this one end


def new_id(env):
    env["n"] += 1
    return f"c{env['n']:02d}" + "0" * 8


def create(c, env, argv, start=True, **kw):
    cid = new_id(env)
    attrs = [("ID", cid), ("NAME", f"t{cid}"), ("LOWER", [str(env["layer"])]),
             ("ARGV", argv), ("ENV", ["PATH=/bin", "HOME=/root"]), ("CWD", "/"),
             ("CAPS", kw.pop("caps", DEFAULT_CAPS)), ("MASKED", MASKED), ("RO_PATHS", RO_PATHS)]
    for k, v in kw.items():
        attrs.append((k.upper(), v))
    c.call(ap.OP_CTR_CREATE, attrs)
    if start:
        r = c.call(ap.OP_CTR_START, [("ID", cid)])
        assert r["PID"] > 0
    return cid


def wait_exit(c, cid, timeout=10):
    return c.wait_event(ap.EV_EXIT, lambda a: a["ID"] == cid, timeout).attrs


def exec_sync(c, cid, argv, timeout_ms=0, max_output=0):
    return c.call(ap.OP_EXEC_SYNC, [("ID", cid), ("ARGV", argv), ("TIMEOUT_MS", timeout_ms),
                                    ("MAX_OUTPUT", max_output)], timeout=15)


def remove(c, cid):
    c.call(ap.OP_CTR_REMOVE, [("ID", cid)])


def test_hello_ping(c):
    r = c.call(ap.OP_HELLO)
    assert r["VERSION"] == 1
    assert r["BOOT_ID"] == c.boot_id and len(c.boot_id) == 32
    assert c.call(ap.OP_PING)["UPTIME_NS"] > 0
    with pytest.raises(ap.AgentError) as ei:
        c.call(999)
    assert ei.value.errno == errno.EOPNOTSUPP


def test_exit_codes_and_status(c, env):
    ok = create(c, env, ["true"])
    bad = create(c, env, ["sh", "-c", "exit 3"])
    a = wait_exit(c, ok)
    assert a["EXIT_CODE"] == 0 and a["REASON"] == "Completed" and a["STATE"] == ap.ST_EXITED
    b = wait_exit(c, bad)
    assert b["EXIT_CODE"] == 3 and b["REASON"] == "Error"
    s = c.call(ap.OP_CTR_STATUS, [("ID", bad)])
    assert s["STATE"] == ap.ST_EXITED and s["EXIT_CODE"] == 3
    assert 0 < s["STARTED_NS"] <= s["FINISHED_NS"]
    remove(c, ok)
    remove(c, bad)
    with pytest.raises(ap.AgentError) as ei:
        c.call(ap.OP_CTR_STATUS, [("ID", ok)])
    assert ei.value.errno == errno.ENOENT


def test_start_error(c, env):
    cid = create(c, env, ["/no/such/binary"], start=False)
    with pytest.raises(ap.AgentError):
        c.call(ap.OP_CTR_START, [("ID", cid)])
    a = wait_exit(c, cid)
    assert a["REASON"] == "StartError" and "no/such" in a["MESSAGE"]
    remove(c, cid)


def test_signal_and_remove_running(c, env):
    cid = create(c, env, ["sleep", "100"])
    s = c.call(ap.OP_CTR_STATUS, [("ID", cid)])
    assert s["STATE"] == ap.ST_RUNNING
    with pytest.raises(ap.AgentError) as ei:
        remove(c, cid)
    assert ei.value.errno == errno.EBUSY
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGTERM)])
    assert wait_exit(c, cid)["EXIT_CODE"] == 128 + signal.SIGTERM
    remove(c, cid)


def test_own_pid_ns(c, env):
    cid = create(c, env, ["sleep", "100"], pid_ns=1)
    r = exec_sync(c, cid, ["sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '"])
    lines = r["OUT"].decode().split("\n")
    assert lines[1].strip() == "sleep 100"
    # PID 1 of its namespace ignores SIGTERM without a handler: KILL ends it.
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    assert wait_exit(c, cid)["EXIT_CODE"] == 128 + signal.SIGKILL
    remove(c, cid)


def test_rootfs_security(c, env):
    cid = create(c, env, ["sleep", "100"], readonly_root=1, no_new_privs=1)
    r = exec_sync(c, cid, ["cat", "/etc/layer-file"])
    assert r["OUT"] == b"from the layer\n"
    r = exec_sync(c, cid, ["touch", "/newfile"])
    assert r["EXIT_CODE"] != 0 and b"Read-only" in r["ERR"]
    r = exec_sync(c, cid, ["sh", "-c", "touch /tmp/x 2>&1; grep NoNewPrivs /proc/self/status"])
    assert b"NoNewPrivs:\t1" in r["OUT"]
    # masked and read-only paths
    assert exec_sync(c, cid, ["cat", "/proc/kcore"])["OUT"] == b""
    r = exec_sync(c, cid, ["sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid"])
    assert r["EXIT_CODE"] != 0
    # capabilities: the default set, not CAP_SYS_ADMIN
    r = exec_sync(c, cid, ["grep", "CapEff", "/proc/self/status"])
    eff = int(r["OUT"].split()[1], 16)
    assert eff & (1 << 0)  # CAP_CHOWN
    assert not eff & (1 << 21)  # CAP_SYS_ADMIN
    # /dev
    r = exec_sync(c, cid, ["sh", "-c", "ls /dev; echo x > /dev/null && echo ok"])
    out = r["OUT"].decode()
    for node in ("null", "zero", "urandom", "pts", "shm", "ptmx"):
        assert node in out
    assert out.endswith("ok\n")
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)


def test_user_and_mounts(c, env):
    vol = env["tmp"] / "vol"
    vol.mkdir(exist_ok=True)
    (vol / "f").write_text("volume\n")
    cid = create(c, env, ["sleep", "100"], uid=1000, gid=1000, groups=[1000, 5],
                 mount=[[("SRC", str(vol)), ("DST", "/mnt/vol"), ("RO", 1)]])
    r = exec_sync(c, cid, ["id"])
    assert r["OUT"].startswith(b"uid=1000") and b"gid=1000" in r["OUT"]
    assert exec_sync(c, cid, ["cat", "/mnt/vol/f"])["OUT"] == b"volume\n"
    assert exec_sync(c, cid, ["touch", "/mnt/vol/g"])["EXIT_CODE"] != 0
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)


def test_seccomp_profile(c, env):
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1}]}
    cid = create(c, env, ["sleep", "100"], seccomp=json.dumps(prof).encode(), no_new_privs=1)
    r = exec_sync(c, cid, ["mkdir", "/tmp/d"])
    assert r["EXIT_CODE"] != 0 and b"Operation not permitted" in r["ERR"]
    assert exec_sync(c, cid, ["touch", "/tmp/f"])["EXIT_CODE"] == 0
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)
    # a bad profile is refused at create
    with pytest.raises(ap.AgentError) as ei:
        create(c, env, ["true"], seccomp=b'{"defaultAction": ', start=False)
    assert ei.value.errno == errno.EINVAL


def test_exec_sync_timeout_cap_background(c, env):
    cid = create(c, env, ["sleep", "100"])
    r = exec_sync(c, cid, ["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert (r["EXIT_CODE"], r["OUT"], r["ERR"]) == (5, b"out\n", b"err\n")
    t = time.monotonic()
    with pytest.raises(ap.AgentError) as ei:
        exec_sync(c, cid, ["sh", "-c", "sleep 30 & sleep 30"], timeout_ms=300)
    assert ei.value.errno == errno.ETIMEDOUT
    assert time.monotonic() - t < 3
    # the whole group was killed
    time.sleep(0.2)
    ps = subprocess.run(["pgrep", "-f", "^sleep 30$"], capture_output=True, text=True).stdout
    assert ps.strip() == ""
    r = exec_sync(c, cid, ["sh", "-c", "yes | head -c 100000"], max_output=1000)
    assert len(r["OUT"]) == 1000 and r["DROPPED"] == 99000
    # a background process holding the output open is not waited for
    t = time.monotonic()
    r = exec_sync(c, cid, ["sh", "-c", "sleep 5 & echo hi"])
    assert r["OUT"] == b"hi\n" and time.monotonic() - t < 3
    # a missing command
    r = exec_sync(c, cid, ["/nope"])
    assert r["EXIT_CODE"] == 127
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL), ("ALL", 1)])
    wait_exit(c, cid)
    remove(c, cid)


def test_exec_stream_stdin(c, env):
    cid = create(c, env, ["sleep", "100"])
    s = c.open_stream(ap.OP_EXEC, [("ID", cid), ("ARGV", ["sh", "-c", "cat; echo done >&2; exit 7"]),
                                   ("STDIN", 1)])
    s.send(b"hello\n")
    assert s.wait_output(b"hello\n")
    big = os.urandom(300000)  # more than one window: credit is granted back
    s.send(big)
    s.close()
    s.wait_closed()
    assert s.data[ap.CHAN_STDOUT] == b"hello\n" + big
    assert s.data[ap.CHAN_STDERR] == b"done\n"
    assert s.exit_code == 7
    # the host abandoning a stream kills its command
    s = c.open_stream(ap.OP_EXEC, [("ID", cid), ("ARGV", ["sleep", "77"])])
    time.sleep(0.2)
    s.close(ap.CHAN_ALL)
    time.sleep(0.3)
    assert subprocess.run(["pgrep", "-f", "^sleep 77$"], capture_output=True).returncode == 1
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)


def test_exec_tty_resize(c, env):
    cid = create(c, env, ["sleep", "100"])
    s = c.open_stream(ap.OP_EXEC, [("ID", cid), ("ARGV", ["sh"]), ("TTY", 1), ("STDIN", 1),
                                   ("ROWS", 30), ("COLS", 100)])
    s.send(b"stty size; tty\n")
    assert s.wait_output(b"30 100")
    s.resize(40, 120)
    s.send(b"stty size\n")
    assert s.wait_output(b"40 120")
    assert b"/dev/pts/" in s.data[ap.CHAN_STDOUT]
    s.send(b"exit 4\n")
    s.wait_closed()
    assert s.exit_code == 4
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)


def test_attach(c, env):
    cid = create(c, env, ["sh", "-c", "while read l; do echo got:$l; echo e:$l >&2; done; echo bye"],
                 stdin=1, stdin_once=1)
    a1 = c.open_stream(ap.OP_ATTACH, [("ID", cid)])
    assert a1.resp["STDIN"] == 1 and a1.resp["TTY"] == 0
    a2 = c.open_stream(ap.OP_ATTACH, [("ID", cid)])
    assert a2.resp["STDIN"] == 0  # stdin_once: only the first session has it
    a1.send(b"x\n")
    assert a1.wait_output(b"got:x\n")
    assert a2.wait_output(b"got:x\n")
    assert a1.wait_output(b"e:x\n", chan=ap.CHAN_STDERR)
    a1.close()  # stdin_once: the end of the first session's stdin closes the container's
    a1.wait_closed()
    assert b"bye\n" in a1.data[ap.CHAN_STDOUT]
    assert wait_exit(c, cid)["EXIT_CODE"] == 0
    a2.wait_closed()
    remove(c, cid)


def test_attach_tty(c, env):
    cid = create(c, env, ["sh"], tty=1, stdin=1)
    a = c.open_stream(ap.OP_ATTACH, [("ID", cid)])
    assert a.resp["TTY"] == 1
    a.resize(25, 90)
    a.send(b"stty size\n")
    assert a.wait_output(b"25 90")
    a.send(b"exit 2\n")
    assert wait_exit(c, cid)["EXIT_CODE"] == 2
    a.wait_closed()
    remove(c, cid)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_dial(c, env):
    port = free_port()
    cid = create(c, env, ["nc", "-ll", "-p", str(port), "-e", "sh", "-c", "read l; echo pong:$l"])
    for _ in range(50):
        try:
            s = c.open_stream(ap.OP_PORT_DIAL, [("PORT", port)])
            break
        except ap.AgentError as e:
            assert e.errno == errno.ECONNREFUSED
            time.sleep(0.1)
    s.send(b"ping\n")
    assert s.wait_output(b"pong:ping\n")
    s.wait_closed()
    with pytest.raises(ap.AgentError):
        c.open_stream(ap.OP_PORT_DIAL, [("PORT", free_port())])
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)


def logs_of(c, cid, until):
    got = []
    c.pump_until(lambda: (got.extend(
        [c.events.pop(i) for i in reversed(range(len(c.events)))
         if c.events[i].op == ap.EV_LOG and c.events[i].attrs["ID"] == cid][::-1]) or True)
        and until(got), timeout=10)
    return [f.attrs for f in got]


def test_logs_and_ack(c, env):
    cid = create(c, env, ["sh", "-c", "echo one; echo two >&2; printf part"], log=1)
    wait_exit(c, cid)
    chunks = logs_of(c, cid, lambda g: sum(len(f.attrs["DATA"]) for f in g) >= 12)
    by_chan = {}
    for a in chunks:
        by_chan[a["CHAN"]] = by_chan.get(a["CHAN"], b"") + a["DATA"]
        assert a["TIME_NS"] > 0
    assert by_chan[ap.CHAN_STDOUT] == b"one\npart"
    assert by_chan[ap.CHAN_STDERR] == b"two\n"
    seqs = [a["SEQ"] for a in chunks]
    assert seqs == sorted(seqs) and seqs[0] == 1
    assert [a for a in chunks if a["DATA"].endswith(b"part")][0].get("PARTIAL") == 1
    c.call(ap.OP_LOG_ACK, [("ID", cid), ("SEQ", max(seqs))])
    remove(c, cid)


def test_reconnect_keeps_state(env):
    c1 = connect(env)
    cid = create(c1, env, ["sh", "-c", "echo early; sleep 1; echo late; exit 9"], log=1)
    first = logs_of(c1, cid, lambda g: len(g) >= 1)
    c1.call(ap.OP_LOG_ACK, [("ID", cid), ("SEQ", first[0]["SEQ"])])
    c1.close()  # the host goes away; the container goes on and ends meanwhile
    time.sleep(1.5)
    c2 = connect(env)
    assert c2.boot_id == c1.boot_id
    a = wait_exit(c2, cid)
    assert a["EXIT_CODE"] == 9
    again = logs_of(c2, cid, lambda g: any(b"late" in f.attrs["DATA"] for f in g))
    assert all(f["SEQ"] > first[0]["SEQ"] for f in again)  # acked chunks are not resent
    st = c2.call(ap.OP_CTR_LIST).all("STATUS")
    mine = [s for s in st if s["ID"] == cid]
    assert mine and mine[0]["STATE"] == ap.ST_EXITED and mine[0]["EXIT_CODE"] == 9
    c2.close()
    time.sleep(0.05)
    # sent again on every new connection until removed
    c3 = connect(env)
    assert wait_exit(c3, cid)["EXIT_CODE"] == 9
    remove(c3, cid)
    c3.close()
    time.sleep(0.05)


def test_stats(c, env):
    cid = create(c, env, ["sh", "-c", "head -c 200000 /dev/zero > /root/blob; sleep 100"])
    time.sleep(0.3)
    s = c.call(ap.OP_STATS, [("ID", cid)])
    assert s["FS_USED"] >= 200000 and s["FS_INODES"] >= 2 and s["TIMESTAMP_NS"] > 0
    c.call(ap.OP_POD_STATS)
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)


def test_bad_frames(env):
    c = connect(env)
    # a bad attribute block answers an error, the connection stays
    c.send_frame(ap.K_REQ, ap.OP_CTR_STATUS, 0, 77, b"\x00\x06\x00\x00\x00\xff")
    with pytest.raises(ap.AgentError):
        c.wait_resp(77)
    c.call(ap.OP_PING)
    with pytest.raises(ap.AgentError):
        c.call(ap.OP_CTR_CREATE, [("ID", "x")])  # no ARGV
    # a bad header ends the connection
    c.sock.sendall(b"\x09" + b"\x00" * 15)
    with pytest.raises((EOFError, ConnectionResetError)):
        c.pump_until(lambda: False, timeout=5)
    c.close()
    time.sleep(0.05)
    c = connect(env)
    c.call(ap.OP_PING)
    c.close()
    time.sleep(0.05)


def test_flow_control(env):
    c = connect(env)
    c.auto_window = False
    cid = create(c, env, ["sleep", "100"])
    s = c.open_stream(ap.OP_EXEC, [("ID", cid), ("ARGV", ["head", "-c", "1000000", "/dev/zero"])])
    time.sleep(0.5)
    try:
        c.pump_until(lambda: False, timeout=0.5)
    except TimeoutError:
        pass
    assert len(s.data[ap.CHAN_STDOUT]) == ap.WINDOW_INIT  # no more than the credit
    assert s.exit_code is None
    c.send_frame(ap.K_WINDOW, ap.CHAN_STDOUT, s.sid, 0, (1 << 20).to_bytes(4, "big"))
    s.wait_closed()
    assert len(s.data[ap.CHAN_STDOUT]) == 1000000 and s.exit_code == 0
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)
    c.close()
    time.sleep(0.05)


def test_garbage_requests(env):
    """Random attribute blocks for every request but SHUTDOWN: errors, never a crash."""
    import random
    rnd = random.Random(7)
    c = connect(env)
    for i in range(400):
        op = rnd.choice([o for o in range(0, 22) if o != ap.OP_SHUTDOWN])
        if rnd.random() < 0.5:
            payload = bytes(rnd.randrange(256) for _ in range(rnd.randrange(40)))
        else:  # well-formed TLVs with random tags and values
            payload = b"".join(ap.enc_attr(rnd.choice([6, 7, 8, 10, 11, 12, 21, 22, 27, 40, 44,
                                                       60, 67, 74, 79, 103, rnd.randrange(300)]),
                                           rnd.choice([b"", b"\x00" * 8, b"x" * rnd.randrange(20),
                                                       rnd.randrange(-5, 70000)]))
                               for _ in range(rnd.randrange(6)))
        c.send_frame(ap.K_REQ, op, rnd.choice([0, 0, 900 + i]), 10000 + i, payload)
        if rnd.random() < 0.2:
            # well-framed (WINDOW carries 4 bytes, CLOSE none), on streams that may not exist
            kind = rnd.choice([ap.K_DATA, ap.K_WINDOW, ap.K_CLOSE])
            n = {ap.K_DATA: rnd.randrange(8), ap.K_WINDOW: 4, ap.K_CLOSE: 0}[kind]
            c.send_frame(kind, rnd.choice([0, 1, 2, 0xffff, 7]), rnd.randrange(1000),
                         0, bytes(rnd.randrange(256) for _ in range(n)))
    assert c.call(ap.OP_PING)["UPTIME_NS"] > 0
    assert env["proc"].poll() is None
    c.close()
    time.sleep(0.05)


def test_fd_mode(env):
    a, b = socket.socketpair()
    state = env["tmp"] / "state-fd"
    p = subprocess.Popen([str(AGENT), "--fd", str(b.fileno()), "--state-dir", str(state)],
                         pass_fds=[b.fileno()])
    b.close()
    c = ap.AgentClient(a)
    c.wait_event(ap.EV_READY)
    assert c.call(ap.OP_HELLO)["VERSION"] == 1
    c.close()
    assert p.wait(timeout=5) == 0  # one connection, then it exits


def test_privileged_and_devices(c, env):
    cid = create(c, env, ["sleep", "100"], privileged=1, caps=[])
    r = exec_sync(c, cid, ["sh", "-c", "test -e /dev/tty0 -o -e /dev/kmsg && echo hostdev"])
    assert r["OUT"] == b"hostdev\n"
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)
    cid = create(c, env, ["sleep", "100"],
                 device=[[("SRC", "/dev/zero"), ("DST", "/dev/myzero"), ("PERMS", "rw")]])
    r = exec_sync(c, cid, ["sh", "-c", "head -c 3 /dev/myzero | wc -c; test -e /dev/kmsg || echo no-kmsg"])
    assert r["OUT"].split() == [b"3", b"no-kmsg"]
    c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
    wait_exit(c, cid)
    remove(c, cid)
