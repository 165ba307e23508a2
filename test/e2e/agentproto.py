"""The pod agent protocol (backends/agent/proto.h) in pure Python, for tests.

Frames: a 16-byte big-endian header (u8 version, u8 kind, u16 op, u32 stream, u32 id,
u32 len) and a payload. Payloads of REQ/RESP/EVENT are TLV attributes (u16 tag, u32 len,
value); integers are 8-byte big-endian two's complement; a nested record is a TLV block.

    c = AgentClient(sock)              # any connected stream socket, or an ssl.SSLSocket
    ev = c.wait_event(EV_READY)
    r = c.call(OP_HELLO)               # -> Attrs; raises AgentError for a failed RESP

Layer records (LAYER_PUT's stream): layer_record() encodes one, LAYER_END ends a stream,
dir_records() walks a directory as runtd's ag_layer_put does, and put_layer() sends them.
"""

import os
import select
import socket
import stat
import struct
import time

VERSION = 1
HDR = struct.Struct(">BBHIII")
MAX_PAYLOAD = 1 << 20
MAX_DATA = 64 << 10
WINDOW_INIT = 256 << 10
AG_PORT_NAME = "runt.agent"

K_REQ, K_RESP, K_EVENT, K_DATA, K_WINDOW, K_CLOSE = range(1, 7)

(OP_HELLO, OP_NET_SETUP, OP_CTR_CREATE, OP_CTR_START, OP_CTR_SIGNAL, OP_CTR_STATUS,
 OP_CTR_LIST, OP_CTR_REMOVE, OP_CTR_UPDATE, OP_EXEC, OP_EXEC_SYNC, OP_ATTACH, OP_PORT_DIAL,
 OP_RESIZE, OP_STATS, OP_LOG_REOPEN, OP_SHUTDOWN, OP_POD_STATS, OP_LOG_ACK, OP_PING,
 OP_LAYER_HAS, OP_LAYER_PUT) = range(1, 23)

EV_READY, EV_EXIT, EV_LOG, EV_STREAM_EXIT, EV_OOM = range(1, 6)
CHAN_STDIN, CHAN_STDOUT, CHAN_STDERR, CHAN_ALL = 0, 1, 2, 0xFFFF
ST_CREATED, ST_RUNNING, ST_EXITED = 0, 1, 2

# Attribute tags, and how each decodes: u int, s str, b bytes, n nested.
TAGS = {
    "ERRNO": (1, "u"), "ERRMSG": (2, "s"), "VERSION": (3, "u"), "BOOT_ID": (4, "s"),
    "UPTIME_NS": (5, "u"), "ID": (6, "s"), "PID": (7, "u"), "SIGNAL": (8, "u"), "ALL": (9, "u"),
    "ARGV": (10, "s"), "TTY": (11, "u"), "STDIN": (12, "u"), "ROWS": (13, "u"), "COLS": (14, "u"),
    "TIMEOUT_MS": (15, "u"), "MAX_OUTPUT": (16, "u"), "EXIT_CODE": (17, "u"), "OUT": (18, "b"),
    "ERR": (19, "b"), "DROPPED": (20, "u"), "PORT": (21, "u"), "SEQ": (22, "u"), "CHAN": (23, "u"),
    "TIME_NS": (24, "u"), "DATA": (25, "b"), "PARTIAL": (26, "u"), "STATUS": (27, "n"),
    "IFACE": (40, "n"), "MAC": (41, "s"), "ADDR": (42, "s"), "MTU": (43, "u"), "ROUTE": (44, "n"),
    "DST": (45, "s"), "GW": (46, "s"), "HOSTNAME": (47, "s"), "SYSCTL": (48, "s"),
    "DEV_MAC": (49, "s"), "DNS": (50, "s"),
    "LOWER": (60, "s"), "CWD": (61, "s"), "ENV": (62, "s"), "UID": (63, "u"), "GID": (64, "u"),
    "GROUPS": (65, "u"), "STDIN_ONCE": (66, "u"), "MOUNT": (67, "n"), "SRC": (68, "s"),
    "RO": (69, "u"), "PROPAGATION": (70, "u"), "READONLY_ROOT": (71, "u"),
    "NO_NEW_PRIVS": (72, "u"), "CAPS": (73, "s"), "SECCOMP": (74, "b"), "MASKED": (75, "s"),
    "RO_PATHS": (76, "s"), "PID_NS": (77, "u"), "PRIVILEGED": (78, "u"), "DEVICE": (79, "n"),
    "PERMS": (80, "s"), "LOG": (81, "u"), "SYSCTLS": (82, "s"), "NAME": (83, "s"),
    "CPU_PERIOD": (100, "u"), "CPU_QUOTA": (101, "u"), "CPU_SHARES": (102, "u"),
    "MEM_LIMIT": (103, "u"), "MEM_SWAP": (104, "u"), "PIDS_MAX": (105, "u"),
    "CPUSET_CPUS": (106, "s"), "CPUSET_MEMS": (107, "s"), "OOM_SCORE_ADJ": (108, "u"),
    "HAS_OOM_SCORE_ADJ": (109, "u"),
    "STATE": (120, "u"), "STARTED_NS": (121, "u"), "FINISHED_NS": (122, "u"),
    "OOM_KILLED": (123, "u"), "REASON": (124, "s"), "MESSAGE": (125, "s"),
    "TIMESTAMP_NS": (140, "u"), "CPU_USAGE_NS": (141, "u"), "CPU_USER_NS": (142, "u"),
    "CPU_SYS_NS": (143, "u"), "MEM_USAGE": (144, "u"), "MEM_WORKING_SET": (145, "u"),
    "MEM_RSS": (146, "u"), "MEM_CACHE": (147, "u"), "MEM_LIMIT_NOW": (148, "u"),
    "PGFAULT": (149, "u"), "PGMAJFAULT": (150, "u"), "SWAP_USAGE": (151, "u"),
    "PIDS_CURRENT": (152, "u"), "FS_USED": (153, "u"), "FS_INODES": (154, "u"),
    "OOM_EVENTS": (155, "u"),
    "PRESENT": (160, "u"), "LAYER_DIR": (161, "s"),
    "L_PATH": (170, "s"), "L_TYPE": (171, "u"), "L_MODE": (172, "u"), "L_UID": (173, "u"),
    "L_GID": (174, "u"), "L_MTIME_NS": (175, "u"), "L_RDEV": (176, "u"), "L_LINK": (177, "s"),
    "L_XATTR": (178, "n"), "L_XNAME": (179, "s"), "L_XVALUE": (180, "b"), "L_SIZE": (181, "u"),
}
BY_NUM = {num: (name, typ) for name, (num, typ) in TAGS.items()}


LT_REG, LT_DIR, LT_SYMLINK, LT_HARDLINK, LT_CHAR, LT_BLOCK, LT_FIFO, LT_SOCKET = range(1, 9)
LAYER_END = b"\0\0\0\0"


class AgentError(Exception):
    def __init__(self, errno_, msg):
        super().__init__(f"agent: errno {errno_}: {msg}")
        self.errno = errno_
        self.msg = msg


def enc_attr(tag, value):
    """One attribute. @value: int, str, bytes, or a list of (name, value) pairs (nested)."""
    num, typ = TAGS[tag] if isinstance(tag, str) else (tag, None)
    if isinstance(value, bool) or isinstance(value, int):
        v = struct.pack(">q", int(value))
    elif isinstance(value, str):
        v = value.encode()
    elif isinstance(value, (bytes, bytearray)):
        v = bytes(value)
    else:
        v = encode_attrs(value)
    return struct.pack(">HI", num, len(v)) + v


def encode_attrs(pairs):
    """[(tag name, value)] -> TLV block; a list value repeats the tag."""
    out = b""
    for tag, value in pairs:
        if isinstance(value, (list, tuple)) and value and not isinstance(value[0], tuple):
            for v in value:
                out += enc_attr(tag, v)
        elif isinstance(value, (list, tuple)) and not value:
            continue
        else:
            out += enc_attr(tag, value)
    return out


class Attrs:
    """A decoded TLV block: a[name] is the first value, a.all(name) every one."""

    def __init__(self, raw):
        self.raw = raw
        self.items = []
        off = 0
        while off < len(raw):
            if len(raw) - off < 6:
                raise ValueError("attribute overruns the block")
            tag, n = struct.unpack_from(">HI", raw, off)
            off += 6
            if n > len(raw) - off:
                raise ValueError("attribute overruns the block")
            val = raw[off:off + n]
            off += n
            name, typ = BY_NUM.get(tag, (tag, "b"))
            if typ == "u":
                val = struct.unpack(">q", val)[0]
            elif typ == "s":
                val = val.decode()
            elif typ == "n":
                val = Attrs(val)
            self.items.append((name, val))

    def get(self, name, default=None):
        for n, v in self.items:
            if n == name:
                return v
        return default

    def __getitem__(self, name):
        v = self.get(name, KeyError)
        if v is KeyError:
            raise KeyError(name)
        return v

    def __contains__(self, name):
        return any(n == name for n, _ in self.items)

    def all(self, name):
        return [v for n, v in self.items if n == name]

    def __repr__(self):
        return f"Attrs({self.items!r})"


def frame(kind, op, stream, id_, payload=b""):
    return HDR.pack(VERSION, kind, op, stream, id_, len(payload)) + payload


class Frame:
    def __init__(self, kind, op, stream, id_, payload):
        self.kind, self.op, self.stream, self.id, self.payload = kind, op, stream, id_, payload

    @property
    def attrs(self):
        return Attrs(self.payload)

    def __repr__(self):
        return f"Frame(kind={self.kind}, op={self.op}, stream={self.stream}, id={self.id}, len={len(self.payload)})"


class Stream:
    """The host's end of a stream: what came on it, per channel."""

    def __init__(self, client, sid):
        self.c, self.sid = client, sid
        self.data = {CHAN_STDOUT: b"", CHAN_STDERR: b""}
        self.closed = set()
        self.exit_code = None
        self.credit = WINDOW_INIT

    def send(self, data, chan=CHAN_STDIN):
        for i in range(0, len(data), MAX_DATA):
            self.c.send_frame(K_DATA, chan, self.sid, 0, data[i:i + MAX_DATA])

    def send_flow(self, data, chan=CHAN_STDIN, timeout=20):
        """send(), within the credit the agent grants (it drops what passes it)."""
        off = 0
        while off < len(data):
            self.c.pump_until(lambda: self.credit > 0, timeout)
            n = min(self.credit, MAX_DATA, len(data) - off)
            self.c.send_frame(K_DATA, chan, self.sid, 0, data[off:off + n])
            self.credit -= n
            off += n

    def close(self, chan=CHAN_STDIN):
        self.c.send_frame(K_CLOSE, chan, self.sid, 0)

    def resize(self, rows, cols):
        return self.c.call(OP_RESIZE, [("ROWS", rows), ("COLS", cols)], stream=self.sid)

    def wait_closed(self, timeout=10):
        self.c.pump_until(lambda: CHAN_ALL in self.closed, timeout)
        return self

    def send_flow(self, data, chan=CHAN_STDIN, timeout=30):
        """Sends @data within the credit the agent grants (a LAYER_PUT's stream counts it).
        Stops early (returns False) when the agent ended the stream."""
        off = 0
        while off < len(data):
            self.c.pump_until(lambda: self.credit > 0 or CHAN_ALL in self.closed, timeout)
            if CHAN_ALL in self.closed:
                return False
            n = min(self.credit, MAX_DATA, len(data) - off)
            self.c.send_frame(K_DATA, chan, self.sid, 0, data[off:off + n])
            self.credit -= n
            off += n
            self.c._read_frames(0)
        return True

    def wait_output(self, needle, chan=CHAN_STDOUT, timeout=10):
        self.c.pump_until(lambda: needle in self.data[chan] or CHAN_ALL in self.closed, timeout)
        return needle in self.data[chan]


class AgentClient:
    def __init__(self, sock, auto_window=True):
        self.sock = sock
        self.buf = b""
        self.next_id = 1
        self.next_stream = 1
        self.resps = {}
        self.events = []
        self.streams = {}
        self.auto_window = auto_window

    # ---- wire ----
    def send_frame(self, kind, op, stream, id_, payload=b""):
        self.sock.sendall(frame(kind, op, stream, id_, payload))

    def _read_frames(self, timeout):
        # A TLS socket (ssl.SSLSocket) may hold decrypted bytes select() cannot see.
        pending = getattr(self.sock, "pending", None)
        if not (pending and pending() > 0):
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("agent closed the connection")
        self.buf += data
        while len(self.buf) >= HDR.size:
            ver, kind, op, stream, id_, n = HDR.unpack_from(self.buf)
            if ver != VERSION:
                raise ValueError(f"bad frame version {ver}")
            if len(self.buf) < HDR.size + n:
                break
            payload = self.buf[HDR.size:HDR.size + n]
            self.buf = self.buf[HDR.size + n:]
            self._dispatch(Frame(kind, op, stream, id_, payload))

    def _dispatch(self, f):
        if f.kind == K_RESP:
            self.resps[f.id] = f
        elif f.kind == K_EVENT:
            if f.op == EV_STREAM_EXIT and f.stream in self.streams:
                self.streams[f.stream].exit_code = f.attrs["EXIT_CODE"]
            self.events.append(f)
        elif f.kind == K_DATA:
            s = self.streams.get(f.stream)
            if s:
                s.data[f.op] = s.data.get(f.op, b"") + f.payload
                if self.auto_window:
                    self.send_frame(K_WINDOW, f.op, f.stream, 0, struct.pack(">I", len(f.payload)))
        elif f.kind == K_WINDOW:
            s = self.streams.get(f.stream)
            if s:
                s.credit += struct.unpack(">I", f.payload)[0]
        elif f.kind == K_CLOSE:
            s = self.streams.get(f.stream)
            if s:
                s.closed.add(f.op)

    def pump_until(self, cond, timeout=10):
        end = time.monotonic() + timeout
        while not cond():
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("agent: timed out waiting")
            self._read_frames(min(left, 0.2))

    # ---- requests ----
    def request(self, op, attrs=(), stream=0):
        id_ = self.next_id
        self.next_id += 1
        self.send_frame(K_REQ, op, stream, id_, encode_attrs(attrs))
        return id_

    def wait_resp(self, id_, timeout=10):
        self.pump_until(lambda: id_ in self.resps, timeout)
        f = self.resps.pop(id_)
        a = f.attrs
        if "ERRNO" in a:
            raise AgentError(a["ERRNO"], a.get("ERRMSG", ""))
        return a

    def call(self, op, attrs=(), stream=0, timeout=10):
        return self.wait_resp(self.request(op, attrs, stream), timeout)

    def open_stream(self, op, attrs=(), timeout=10):
        sid = self.next_stream
        self.next_stream += 1
        s = Stream(self, sid)
        self.streams[sid] = s
        try:
            s.resp = self.call(op, attrs, stream=sid, timeout=timeout)
        except Exception:
            del self.streams[sid]
            raise
        return s

    def wait_event(self, op, pred=lambda a: True, timeout=10):
        """Takes the first event @op whose attributes satisfy @pred off the queue."""
        found = []

        def look():
            for i, f in enumerate(self.events):
                if f.op == op and pred(f.attrs):
                    found.append(self.events.pop(i))
                    return True
            return False
        self.pump_until(look, timeout)
        return found[0]

    def close(self):
        self.sock.close()


def connect_unix(path, timeout=10):
    end = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


# ---- layer records (proto.h, IMAGE LAYERS) ----

def layer_record(path, type_, mode=0o644, uid=0, gid=0, mtime_ns=0, rdev=None, link=None,
                 xattrs=(), data=b"", size=None, extra=(), raw_header=None):
    """One record: u32 header length, the header's TLV attributes, then @data. @path and
    @link may be bytes (hostile tests), @size overrides len(data), @extra adds attributes,
    @raw_header replaces the whole header."""
    if raw_header is None:
        attrs = [("L_PATH", path), ("L_TYPE", type_)]
        if type_ not in (LT_SYMLINK, LT_HARDLINK):
            attrs.append(("L_MODE", mode))
        if type_ != LT_HARDLINK:
            attrs += [("L_UID", uid), ("L_GID", gid), ("L_MTIME_NS", mtime_ns)]
        if rdev is not None:
            attrs.append(("L_RDEV", rdev))
        if link is not None:
            attrs.append(("L_LINK", link))
        for name, value in xattrs:
            attrs.append(("L_XATTR", [("L_XNAME", name), ("L_XVALUE", value)]))
        if type_ == LT_REG or size is not None:
            attrs.append(("L_SIZE", len(data) if size is None else size))
        attrs += list(extra)
        raw_header = encode_attrs(attrs)
    return struct.pack(">I", len(raw_header)) + raw_header + data


def _xattrs(path):
    out = []
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in sorted(names):
        out.append((n, os.getxattr(path, n, follow_symlinks=False)))
    return out


def dir_records(root):
    """The records of directory @root as runtd sends them: the root first, parents before
    children, hard links after their first name, then the end mark."""
    root = os.fspath(root)
    out = []
    seen = {}

    def one(full, rel):
        st = os.lstat(full)
        kw = dict(mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                  mtime_ns=st.st_mtime_ns, xattrs=_xattrs(full))
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in seen:
                out.append(layer_record(rel, LT_HARDLINK, link=seen[key]))
                return st
            seen[key] = rel
        if stat.S_ISDIR(st.st_mode):
            out.append(layer_record(rel, LT_DIR, **kw))
        elif stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                out.append(layer_record(rel, LT_REG, data=f.read(), **kw))
        elif stat.S_ISLNK(st.st_mode):
            del kw["mode"]
            out.append(layer_record(rel, LT_SYMLINK, link=os.readlink(full), **kw))
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            t = LT_CHAR if stat.S_ISCHR(st.st_mode) else LT_BLOCK
            out.append(layer_record(rel, t, rdev=os.major(st.st_rdev) << 32 | os.minor(st.st_rdev),
                                    **kw))
        elif stat.S_ISFIFO(st.st_mode):
            out.append(layer_record(rel, LT_FIFO, **kw))
        elif stat.S_ISSOCK(st.st_mode):
            out.append(layer_record(rel, LT_SOCKET, **kw))
        return st

    stack = [("", root)]
    while stack:
        rel, full = stack.pop()
        st = one(full, rel)
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(full), reverse=True):
                stack.append((f"{rel}/{name}" if rel else name, os.path.join(full, name)))
    return b"".join(out) + LAYER_END


class PutResult:
    def __init__(self, stream, present, layer_dir):
        self.stream, self.present, self.layer_dir = stream, present, layer_dir
        self.exit_code = stream.exit_code
        self.message = stream.data[CHAN_STDERR].decode(errors="replace")


def put_layer(c, chain_id, records, close=True, timeout=30):
    """LAYER_PUT of @chain_id with @records (bytes): sends them, CLOSE(STDIN) when @close,
    waits for the stream's end. -> PutResult (exit_code 0 or an errno, message)."""
    s = c.open_stream(OP_LAYER_PUT, [("ID", chain_id)], timeout=timeout)
    present = s.resp["PRESENT"]
    if not present:
        if s.send_flow(records, timeout=timeout) and close:
            s.close()
    if close or present:
        s.wait_closed(timeout)
    return PutResult(s, present, s.resp["LAYER_DIR"])
