"""Image layers sent to runt-agent over its channel (LAYER_HAS / LAYER_PUT, issue 17): how a
Proxmox CT, which shares no file system with runtd, gets an image's layers. The agent runs
in host mode (--listen-unix), as in test_agent_host.py.

Layers are made as runtd's store has them: tars built with registry.py's helpers, unpacked by
runt-unpack (the store's own unpacker: whiteouts as 0/0 char devices, opaque dirs as
trusted.overlay.opaque). runtd's client (ag_layers_put, through the runt-agentctl test
driver) puts them; a container then runs on them. Hostile streams are sent with
agentproto.py's record encoder.

    /usr/bin/python3 -m pytest test/e2e/test_agent_layers.py -q -p no:cacheprovider
"""

import errno
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import agentproto as ap
import registry as R

REPO = Path(__file__).resolve().parents[2]
RUNTD = Path(os.environ.get("RUNTD", REPO / "build" / "dev" / "cri" / "runtd"))
AGENT = Path(os.environ.get("RUNT_AGENT", RUNTD.parent / "runt-agent"))
UNPACK = RUNTD.parent / "runt-unpack"
AGENTCTL = Path(os.environ.get("RUNT_AGENTCTL",
                               RUNTD.parent.parent / "test" / "tools" / "runt-agentctl"))
LIMIT = 64 << 20  # the test agent's --layer-max-bytes

pytestmark = [
    pytest.mark.skipif(not AGENT.exists(), reason=f"{AGENT} not built"),
    pytest.mark.skipif(not AGENTCTL.exists(), reason=f"{AGENTCTL} not built"),
    pytest.mark.skipif(not UNPACK.exists(), reason=f"{UNPACK} not built"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists(R.BUSYBOX), reason="needs busybox-static"),
]

CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID", "CAP_KILL"]
DEEP = "/".join(["d" * 250] * 20) + "/deep-file"  # 5,030 bytes: longer than PATH_MAX


@pytest.fixture(scope="session")
def runtd_binary():
    """Overrides conftest's: these tests need the agent, not runtd."""
    return None


class Agent:
    """A runt-agent in host mode with a state dir of its own."""

    def __init__(self, tmp, name="agent", limit=LIMIT):
        self.dir = Path(tmp) / name
        self.dir.mkdir()
        self.state = self.dir / "state"
        self.sock = self.dir / "agent.sock"
        self.limit = limit
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.dir / "agent.log", "ab")
        self.proc = subprocess.Popen(
            [str(AGENT), "--listen-unix", str(self.sock), "--state-dir", str(self.state),
             "--layer-max-bytes", str(self.limit)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while not self.sock.exists():
            assert time.monotonic() < deadline, "the agent did not listen"
            time.sleep(0.02)

    def connect(self):
        c = ap.AgentClient(ap.connect_unix(self.sock))
        c.wait_event(ap.EV_READY)
        return c

    @property
    def layers(self):
        return self.state / "layers"

    def layer_entries(self):
        return sorted(os.listdir(self.layers))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                c = self.connect()
                c.call(ap.OP_SHUTDOWN)
                c.close()
                self.proc.wait(timeout=5)
            except Exception:
                pass
        self.kill()
        subprocess.run(["sh", "-c", f"grep -o '{self.state}/[^ ]*' /proc/mounts | sort -r | "
                        "xargs -r -n1 umount -l"], check=False)

    def log_text(self):
        return (self.dir / "agent.log").read_text(errors="replace")


def unpack(tar_bytes, dest):
    """A layer dir as runtd's store has it: @tar_bytes unpacked by runt-unpack."""
    dest.mkdir(parents=True)
    blob = dest.parent / (dest.name + ".tar")
    blob.write_bytes(tar_bytes)
    with open(blob, "rb") as f:
        res = subprocess.run([str(UNPACK), str(dest)], stdin=f, capture_output=True, timeout=60)
    blob.unlink()
    assert res.returncode == 0, res.stdout + res.stderr
    return dest


def rootfs_tar(rootfs):
    """The tar of directory @rootfs, as an image layer (root entry "./")."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(rootfs, arcname=".")
    return buf.getvalue()


def top_entries():
    """The second layer: whiteout, opaque dir, hard link, setuid, owners, symlinks, an mtime,
    an xattr, a path longer than PATH_MAX."""
    E = R
    return [
        E.Dir("etc"),
        E.File("etc/layer2", "two\n"),
        E.Hardlink("etc/hard", "etc/layer2"),
        E.Symlink("etc/abs", "/etc/passwd"),  # meant for the container's root
        E.Symlink("rel", "etc/layer2"),
        E.Symlink("up", "../../../../../.."),
        E.Whiteout("data/remove-me"),
        E.Opaque("opq"),
        E.File("opq/new", "new\n"),
        E.Dir("bin"),
        E.File("bin/suid", "#!/bin/sh\necho suid\n", mode=0o4755),
        E.File("bin/sgid", "x", mode=0o2711, gid=50),
        E.Dir("home", mode=0o755),
        E.Dir("home/user", mode=0o750, uid=1000, gid=1000),
        E.File("home/user/owned", "mine\n", mode=0o640, uid=1000, gid=1000),
        E.Dir("sticky", mode=0o1777),
        E.Dir("mt", mtime=1234567890),
        E.File("mt/f", "f\n", mtime=1500000000),
        E.File("etc/xattr", "x\n", xattrs={"user.runt": "layer"}),
        E.File(DEEP, "deep\n"),
    ]


@pytest.fixture(scope="module")
def env():
    tmp = Path(tempfile.mkdtemp(prefix="runt-agent-layers."))
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    base_rootfs = tmp / "base-rootfs"
    R.busybox_rootfs(base_rootfs)
    base_tar = rootfs_tar(base_rootfs)
    top_tar = R.layer_tar(top_entries())
    chains = R.chain_ids([R.sha256_digest(base_tar), R.sha256_digest(top_tar)])
    dirs = [unpack(base_tar, tmp / "store" / chains[0][7:]),
            unpack(top_tar, tmp / "store" / chains[1][7:])]
    agent = Agent(tmp)
    e = {"tmp": tmp, "outside": outside, "chains": chains, "dirs": dirs, "agent": agent, "n": 0}
    try:
        yield e
    finally:
        agent.stop()
        if os.environ.get("RUNT_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def agentctl(agent, pairs, timeout=60):
    return subprocess.run([str(AGENTCTL), "--unix", str(agent.sock), "layer-put"] +
                          [f"{c}={d}" for c, d in pairs], capture_output=True, text=True,
                          timeout=timeout)


def snapshot(root):
    """Every entry below @root: path -> (type, mode, uid, gid, mtime, size/target/rdev,
    content, xattrs), and the hard link groups. Walked by fd: paths may pass PATH_MAX."""
    out, inodes = {}, {}

    def walk(dfd, rel):
        for name in sorted(os.listdir(dfd)):
            path = f"{rel}/{name}" if rel else name
            st = os.lstat(name, dir_fd=dfd)
            proc = f"/proc/self/fd/{dfd}/{name}"
            try:
                xa = {n: os.getxattr(proc, n, follow_symlinks=False)
                      for n in os.listxattr(proc, follow_symlinks=False)}
            except OSError:
                xa = {}
            extra = None
            if stat.S_ISREG(st.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
                with os.fdopen(fd, "rb") as f:
                    extra = f.read()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(name, dir_fd=dfd)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            out[path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                         st.st_mtime_ns if not stat.S_ISLNK(st.st_mode) else st.st_mtime_ns,
                         extra, tuple(sorted(xa.items())))
            if not stat.S_ISDIR(st.st_mode):
                inodes.setdefault(st.st_ino, []).append(path)
            else:
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    walk(sub, path)
                finally:
                    os.close(sub)

    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.fstat(fd)
        out[""] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                   st.st_mtime_ns)
        walk(fd, "")
    finally:
        os.close(fd)
    links = sorted(tuple(sorted(v)) for v in inodes.values() if len(v) > 1)
    return out, links


def no_leftovers(agent, allowed=()):
    """Nothing but complete layers in the agent's store."""
    left = [n for n in agent.layer_entries() if n not in allowed]
    assert left == [], left


def new_cid(env):
    env["n"] += 1
    return f"lay{env['n']:02d}" + "0" * 8


def exec_sync(c, cid, script):
    r = c.call(ap.OP_EXEC_SYNC, [("ID", cid), ("ARGV", ["/bin/sh", "-c", script]),
                                 ("TIMEOUT_MS", 10000)], timeout=15)
    return r["EXIT_CODE"], r["OUT"].decode(), r["ERR"].decode()


# ---- the image's layers through runtd's client ----

CHECKS = r"""
set -e
cat /etc/layer2
[ "$(stat -c %i /etc/hard)" = "$(stat -c %i /etc/layer2)" ] && echo hardlink-ok
/bin/busybox readlink /etc/abs
cat /rel
/bin/busybox readlink /up
[ -e /data/remove-me ] && echo whiteout-broken || echo whiteout-ok
cat /data/keep
echo "opq: $(ls /opq | tr '\n' ' ')"
stat -c '%a %u:%g' /bin/suid /bin/sgid /home/user /home/user/owned /sticky
stat -c '%Y' /mt /mt/f
cat /home/user/owned
/bin/suid
"""


def test_put_image_layers_and_run(env):
    agent = env["agent"]
    pairs = list(zip(env["chains"], env["dirs"]))
    res = agentctl(agent, pairs)
    assert res.returncode == 0, res.stderr
    lowers = res.stdout.split()
    assert lowers == [str(agent.layers / c[7:]) for c in env["chains"]]
    assert agent.layer_entries() == sorted(c[7:] for c in env["chains"])
    # The agent's copy is the store's, entry for entry: types, modes (setuid too), owners,
    # mtimes, contents, link targets, whiteouts, xattrs (the opaque mark too), hard links.
    for d, lower in zip(env["dirs"], lowers):
        assert snapshot(lower) == snapshot(d)
    top, links = snapshot(lowers[1])
    assert top["data/remove-me"][0] == stat.S_IFCHR and top["data/remove-me"][5] == (0, 0)
    assert ("trusted.overlay.opaque", b"y") in top["opq"][6]
    assert ("user.runt", b"layer") in top["etc/xattr"][6]
    assert top["bin/suid"][1] == 0o4755
    assert top[DEEP][5] == b"deep\n"
    assert links == [("etc/hard", "etc/layer2")]

    c = agent.connect()
    try:
        cid = new_cid(env)
        c.call(ap.OP_CTR_CREATE, [("ID", cid), ("NAME", "layers"), ("LOWER", lowers),
                                  ("ARGV", ["sleep", "100"]), ("ENV", ["PATH=/bin"]),
                                  ("CWD", "/"), ("CAPS", CAPS)])
        c.call(ap.OP_CTR_START, [("ID", cid)])
        code, out, err = exec_sync(c, cid, CHECKS)
        assert code == 0, out + err
        assert out.split("\n") == [
            "two", "hardlink-ok", "/etc/passwd", "two", "../../../../../..", "whiteout-ok",
            "keep", "opq: new ", "4755 0:0", "2711 0:50", "750 1000:1000", "640 1000:1000",
            "1777 0:0", "1234567890", "1500000000", "mine", "suid", ""]
        # The deep file is there too (cd one level at a time: its path passes PATH_MAX).
        code, out, err = exec_sync(c, cid, f"cd /; i=0; while [ $i -lt 20 ]; do "
                                           f"cd -P {'d' * 250} || exit 1; i=$((i+1)); done; "
                                           "cat deep-file")
        assert (code, out) == (0, "deep\n"), err
        c.call(ap.OP_CTR_SIGNAL, [("ID", cid), ("SIGNAL", signal.SIGKILL)])
        c.wait_event(ap.EV_EXIT, lambda a: a["ID"] == cid)
        c.call(ap.OP_CTR_REMOVE, [("ID", cid)])
        # The layers stay (read-only lowers), untouched by the container.
        assert snapshot(lowers[1]) == snapshot(env["dirs"][1])
    finally:
        c.close()
        time.sleep(0.05)


def test_put_twice_is_a_noop(env):
    agent = env["agent"]
    pairs = list(zip(env["chains"], env["dirs"]))
    first = agentctl(agent, pairs)
    assert first.returncode == 0, first.stderr
    before = [os.stat(agent.layers / c[7:]) for c in env["chains"]]
    again = agentctl(agent, pairs)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    after = [os.stat(agent.layers / c[7:]) for c in env["chains"]]
    assert [(s.st_ino, s.st_mtime_ns) for s in before] == [(s.st_ino, s.st_mtime_ns) for s in after]
    # A PUT of a present layer over the protocol: PRESENT=1, the stream ends with 0.
    c = agent.connect()
    try:
        r = ap.put_layer(c, env["chains"][0][7:], b"ignored")
        assert (r.present, r.exit_code) == (1, 0)
        assert r.layer_dir == str(agent.layers / env["chains"][0][7:])
        h = c.call(ap.OP_LAYER_HAS, [("ID", env["chains"][1][7:])])
        assert h["PRESENT"] == 1 and h["LAYER_DIR"] == r.layer_dir[:-64] + env["chains"][1][7:]
    finally:
        c.close()
        time.sleep(0.05)
    no_leftovers(agent, [c[7:] for c in env["chains"]])


# ---- concurrency and interruptions (agentproto.py's encoder) ----

def small_layer(n=3, size=100 << 10):
    recs = ap.layer_record("", ap.LT_DIR, mode=0o755)
    for i in range(n):
        recs += ap.layer_record(f"f{i}", ap.LT_REG, data=bytes([65 + i]) * size)
    return recs + ap.LAYER_END


def fresh_id(env):
    env["n"] += 1
    return f"{env['n']:02x}" * 32


def test_concurrent_puts_of_one_layer_wait(env):
    agent = env["agent"]
    lid = fresh_id(env)
    recs = small_layer()
    c = agent.connect()
    try:
        s1 = c.open_stream(ap.OP_LAYER_PUT, [("ID", lid)])
        assert s1.resp["PRESENT"] == 0
        assert s1.send_flow(recs[:len(recs) // 2])
        # A second PUT of the same layer is answered only once the first ended.
        sid2 = c.next_stream
        c.next_stream += 1
        s2 = ap.Stream(c, sid2)
        c.streams[sid2] = s2
        rid2 = c.request(ap.OP_LAYER_PUT, [("ID", lid)], stream=sid2)
        with pytest.raises(TimeoutError):
            c.pump_until(lambda: rid2 in c.resps, 0.5)
        assert s1.send_flow(recs[len(recs) // 2:])
        s1.close()
        s1.wait_closed()
        assert s1.exit_code == 0
        r2 = c.wait_resp(rid2)
        assert r2["PRESENT"] == 1
        s2.wait_closed()
        assert s2.exit_code == 0

        # The first given up: the one waiting goes on and puts it.
        lid = fresh_id(env)
        s1 = c.open_stream(ap.OP_LAYER_PUT, [("ID", lid)])
        assert s1.send_flow(recs[:1000])
        sid2 = c.next_stream
        c.next_stream += 1
        s2 = ap.Stream(c, sid2)
        c.streams[sid2] = s2
        rid2 = c.request(ap.OP_LAYER_PUT, [("ID", lid)], stream=sid2)
        s1.close(ap.CHAN_ALL)
        r2 = c.wait_resp(rid2)
        assert r2["PRESENT"] == 0
        assert s2.send_flow(recs)
        s2.close()
        s2.wait_closed()
        assert s2.exit_code == 0
        assert (agent.layers / lid / "f2").read_bytes() == b"C" * (100 << 10)
    finally:
        c.close()
        time.sleep(0.05)


def test_interrupted_puts_leave_nothing(env):
    agent = env["agent"]
    keep = agent.layer_entries()
    recs = small_layer(n=8)
    # Given up by the host (CLOSE ALL) in the middle.
    c = agent.connect()
    lid = fresh_id(env)
    s = c.open_stream(ap.OP_LAYER_PUT, [("ID", lid)])
    assert s.send_flow(recs[:300000])
    c.call(ap.OP_PING)
    assert any(".tmp-" in n for n in agent.layer_entries())
    s.close(ap.CHAN_ALL)
    c.call(ap.OP_PING)
    no_leftovers(agent, keep)
    # Ended without the end mark: refused, not half a layer.
    s = c.open_stream(ap.OP_LAYER_PUT, [("ID", lid)])
    assert s.send_flow(recs[:-4])
    s.close()
    s.wait_closed()
    assert s.exit_code == errno.EPROTO and "end mark" in s.data[ap.CHAN_STDERR].decode()
    no_leftovers(agent, keep)
    # The connection dropped in the middle.
    s = c.open_stream(ap.OP_LAYER_PUT, [("ID", lid)])
    assert s.send_flow(recs[:500000])
    c.call(ap.OP_PING)
    c.close()
    c = agent.connect()  # taken once the agent saw the last one end
    c.call(ap.OP_PING)
    no_leftovers(agent, keep)
    c.close()
    time.sleep(0.05)


def test_killed_client_leaves_nothing(env):
    """runtd's client killed in the middle of a big layer (SIGKILL: no goodbye)."""
    agent = env["agent"]
    keep = agent.layer_entries()
    big = env["tmp"] / "big-layer"
    big.mkdir()
    with open(big / "blob", "wb") as f:
        f.write(os.urandom(1 << 20) * 48)
    lid = fresh_id(env)
    p = subprocess.Popen([str(AGENTCTL), "--unix", str(agent.sock), "layer-put",
                          f"{lid}={big}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not any(n.startswith(lid + ".tmp-") for n in agent.layer_entries()):
        assert time.monotonic() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.005)
    p.kill()
    p.wait()
    c = agent.connect()
    c.call(ap.OP_PING)
    c.close()
    time.sleep(0.05)
    no_leftovers(agent, keep)
    shutil.rmtree(big)


def test_killed_agent_cleans_up_at_start(env):
    agent = Agent(env["tmp"], "agent-killed")
    try:
        c = agent.connect()
        lid = fresh_id(env)
        s = c.open_stream(ap.OP_LAYER_PUT, [("ID", lid)])
        assert s.send_flow(small_layer(n=8)[:400000])
        c.call(ap.OP_PING)
        assert [n for n in agent.layer_entries() if n.startswith(lid + ".tmp-")]
        agent.kill()
        c.close()
        agent.start()
        c = agent.connect()
        assert c.call(ap.OP_LAYER_HAS, [("ID", lid)])["PRESENT"] == 0
        c.close()
        no_leftovers(agent)
    finally:
        agent.stop()


# ---- hostile streams ----

R_ = ap.layer_record
ROOT = R_("", ap.LT_DIR, mode=0o755)


def hostile_cases(outside):
    o = str(outside)
    sym = R_("lnk", ap.LT_SYMLINK, link=o)
    return {
        "dotdot": ([R_("../pwned", ap.LT_REG, data=b"x")], errno.EINVAL, "'../pwned'"),
        "dotdot-inside": ([R_("a/../../pwned", ap.LT_REG, data=b"x")], errno.EINVAL,
                          "not a relative path"),
        "absolute": ([R_(o + "/pwned", ap.LT_REG, data=b"x")], errno.EINVAL, "absolute"),
        "nul": ([R_(b"ok\0/../../pwned", ap.LT_REG, data=b"x")], errno.EPROTO, "malformed"),
        "long-name": ([R_("n" * 256, ap.LT_REG)], errno.ENAMETOOLONG, "too long"),
        "long-path": ([R_("/".join(["p" * 200] * 330), ap.LT_DIR)], errno.ENAMETOOLONG,
                      "too long"),
        "symlink-escape": ([sym, R_("lnk/pwned", ap.LT_REG, data=b"x")], errno.EINVAL,
                           "goes through a symlink"),
        "symlink-root-dir": ([R_("lnk", ap.LT_SYMLINK, link="/"),
                              R_("lnk/tmp", ap.LT_DIR)], errno.EINVAL, "symlink"),
        "symlink-relative": ([R_("d", ap.LT_DIR), R_("d/up", ap.LT_SYMLINK, link="../../../.."),
                              R_("d/up/pwned", ap.LT_REG)], errno.EINVAL, "symlink"),
        "symlink-then-file": ([R_("f", ap.LT_SYMLINK, link=o + "/pwned"),
                               R_("f", ap.LT_REG, data=b"x")], errno.EEXIST, "'f': create"),
        "hardlink-outside": ([R_("h", ap.LT_HARDLINK, link="../outside/secret")], errno.EINVAL,
                             "hard link target"),
        "hardlink-absolute": ([R_("h", ap.LT_HARDLINK, link=o + "/secret")], errno.EINVAL,
                              "hard link target"),
        "hardlink-via-symlink": ([sym, R_("h", ap.LT_HARDLINK, link="lnk/secret")],
                                 errno.EINVAL, "goes through a symlink"),
        "hardlink-unsent": ([R_("h", ap.LT_HARDLINK, link="nope")], errno.ENOENT,
                            "no such entry sent before"),
        "hardlink-dir": ([R_("d", ap.LT_DIR), R_("h", ap.LT_HARDLINK, link="d")], errno.EINVAL,
                         "directory"),
        "char-device": ([R_("null", ap.LT_CHAR, rdev=1 << 32 | 3)], errno.EPERM,
                        "device node 1:3 refused"),
        "block-device": ([R_("sda", ap.LT_BLOCK, rdev=8 << 32)], errno.EPERM, "refused"),
        "overlay-xattr": ([R_("d", ap.LT_DIR, xattrs=[("trusted.overlay.redirect", b"/etc")])],
                          errno.EPERM, "trusted.overlay.redirect refused"),
        "opaque-on-file": ([R_("f", ap.LT_REG, xattrs=[("trusted.overlay.opaque", b"y")])],
                           errno.EPERM, "refused"),
        "oversize-claim": ([R_("big", ap.LT_REG, size=LIMIT + 1)], errno.EFBIG, "over the limit"),
        "oversize-bytes": ([R_(f"f{i}", ap.LT_REG, data=b"z" * (1 << 20)) for i in range(66)],
                           errno.EFBIG, "over the limit"),
        "size-beyond-sent": ([R_("short", ap.LT_REG, data=b"abc", size=100)], errno.EPROTO,
                             "truncated"),
        "duplicate": ([R_("d", ap.LT_DIR), R_("d", ap.LT_DIR)], errno.EEXIST, "mkdir"),
        "no-parent": ([R_("nodir/f", ap.LT_REG)], errno.ENOENT, "no such directory"),
        "root-as-file": ([R_("", ap.LT_REG)], errno.EINVAL, "''"),
        "root-twice": ([ROOT], errno.EEXIST, "root sent twice"),
        "content-on-dir": ([R_("d", ap.LT_DIR, size=5, data=b"xxxxx")], errno.EPROTO, "content"),
        "huge-header": ([b"\x00\x10\x00\x00" + b"x" * 64], errno.EPROTO, "header"),
        "after-end": ([ap.LAYER_END + b"more"], errno.EPROTO, "after the end"),
    }


CASES = sorted(hostile_cases("/x"))


@pytest.mark.parametrize("case", CASES)
def test_hostile_records_refused(env, case):
    agent = env["agent"]
    outside = env["outside"]
    keep = agent.layer_entries()
    before = sorted(os.listdir(outside))
    records, want_errno, needle = hostile_cases(outside)[case]
    c = agent.connect()
    try:
        lid = fresh_id(env)
        r = ap.put_layer(c, lid, ROOT + b"".join(records) + ap.LAYER_END, timeout=60)
        assert r.present == 0
        assert (r.exit_code, needle in r.message) == (want_errno, True), r.message
        ev = [f for f in c.events if f.op == ap.EV_STREAM_EXIT and f.stream == r.stream.sid]
        assert ev and ev[0].attrs["ERRMSG"] == r.message
        assert c.call(ap.OP_PING)["UPTIME_NS"] > 0
        assert c.call(ap.OP_LAYER_HAS, [("ID", lid)])["PRESENT"] == 0
    finally:
        c.close()
        time.sleep(0.05)
    no_leftovers(agent, keep)
    assert sorted(os.listdir(outside)) == before
    assert (outside / "secret").read_text() == "host secret\n"
    assert not os.path.exists("/pwned") and not os.path.exists("/tmp/pwned")


def test_bad_requests(env):
    agent = env["agent"]
    c = agent.connect()
    try:
        for bad in ("../../etc", "ab" * 31, "AB" * 32, "sha256:" + "ab" * 32, ""):
            with pytest.raises(ap.AgentError) as ei:
                c.call(ap.OP_LAYER_HAS, [("ID", bad)])
            assert ei.value.errno == errno.EINVAL
            with pytest.raises(ap.AgentError) as ei:
                c.open_stream(ap.OP_LAYER_PUT, [("ID", bad)])
            assert ei.value.errno == errno.EINVAL
        # A PUT needs a stream of its own.
        with pytest.raises(ap.AgentError) as ei:
            c.call(ap.OP_LAYER_PUT, [("ID", "ab" * 32)])
        assert ei.value.errno == errno.EINVAL
        # A container may not be called "layers" (its dir would be the store's).
        with pytest.raises(ap.AgentError) as ei:
            c.call(ap.OP_CTR_CREATE, [("ID", "layers"), ("LOWER", ["/"]), ("ARGV", ["true"])])
        assert ei.value.errno == errno.EINVAL
    finally:
        c.close()
        time.sleep(0.05)
