"""Test-side clients for the Kubernetes streaming protocols runtd's streaming server speaks:
remotecommand (exec, attach) and port-forward, over SPDY/3.1 and over WebSocket. No pytest
in here (plain helpers, like registry.py); `/usr/bin/python3 kstream.py` runs the self test.

They behave as the Kubernetes clients do (client-go remotecommand and portforward over
moby/spdystream, and client-go's WebSocket executor over gorilla/websocket):

- SPDY: the client opens every stream (SYN_STREAM, odd ids 1, 3, 5, ...) and waits for the
  server's SYN_REPLY before opening the next; remotecommand streams come in the order
  error, stdin, stdout, stderr (not with a tty), resize (tty, v3 and later); header names
  are sent lower-case; header blocks share one zlib context per direction, primed with the
  SPDY/3 dictionary (read from stream/spdy.c, the one copy of it), each block sync-flushed; no
  WINDOW_UPDATE is ever sent. Port-forward: per connection an "error" stream (half-closed
  at once, as client-go does) and a "data" stream with the same port and requestid.
- WebSocket: RFC 6455, masked client frames, the channel framings (binary: first byte the
  channel; base64: text, '0' + channel then base64), v5's close signal [255, channel].

Every wait has a timeout (IO_TIMEOUT unless given) and raises Timeout, so a server bug
fails a test instead of hanging it. Each connection has one reader thread that takes
whatever arrives at once (so the server never stalls on us), and the caller writes.

The API, in short:

    r = SpdyRemoteCommand(url, stdin=True, stdout=True, stderr=True, tty=False)
    r = WsRemoteCommand(url, stdin=True, ...)          # same interface
    r = remote_command("spdy" | "ws", url, ...)
    r.protocol, r.version                              # negotiated
    r.write_stdin(b"..."); r.close_stdin(); r.resize(113, 37)
    r.read_until(b"needle", channel="stdout")           # what came so far, once it holds it
    res = r.wait()                                      # ExecResult: stdout, stderr, error,
                                                        # status, exit_code, message
    res = run_exec("spdy", url, stdin=b"...", stdout=True, stderr=True)   # all in one

    pf = SpdyPortForward(url); c = pf.open(8080); c.send(b"..."); c.close_write()
    c.read_all(); c.error_text(); pf.close()
    wp = WsPortForward(url); wp.port(0); wp.send(0, b"..."); wp.read_until(0, b"..")

    SpdyConnection / WsConnection: the framed connections under those (raw frames too),
    http_request(): one plain HTTP request (for the 400/401/403/404 answers).
"""

import base64
import hashlib
import json
import os
import re
import select
import socket
import struct
import threading
import time
import urllib.parse
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPDY_C = REPO / "stream" / "spdy.c"
IO_TIMEOUT = 10.0
CHUNK = 32 * 1024  # what client-go's io.Copy writes at once: one DATA frame or message each

# --------------------------------------------------------------------------- errors


class StreamError(Exception):
    pass


class Timeout(StreamError, TimeoutError):
    pass


class ProtocolError(StreamError):
    pass


class UpgradeFailed(StreamError):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, response):
        self.response = response
        self.status = response.status
        super().__init__(f"upgrade refused: {response.status} {response.reason}: "
                         f"{response.body[:300]!r}")


# --------------------------------------------------------------------------- SPDY/3.1

SPDY_VERSION = 3
SPDY_DICT_ID = 0xE3C6A7C2  # adler32 of the dictionary, the id in each zlib header


def load_spdy_dictionary(path=SPDY_C):
    """The SPDY/3 header dictionary, parsed out of the C array in stream/spdy.c."""
    text = Path(path).read_text()
    m = re.search(r"spdy_dictionary\s*\[\s*\]\s*=\s*\{(.*?)\}\s*;", text, re.S)
    if not m:
        raise RuntimeError(f"no spdy_dictionary array in {path}")
    body = re.sub(r"/\*.*?\*/|//[^\n]*", "", m.group(1), flags=re.S)
    d = bytes(int(x, 0) for x in re.findall(r"0[xX][0-9a-fA-F]+|\d+", body))
    if len(d) != 1423 or zlib.adler32(d) != SPDY_DICT_ID:
        raise RuntimeError(f"spdy_dictionary in {path}: {len(d)} bytes, adler32 "
                           f"{zlib.adler32(d):#x}; want 1423 bytes, {SPDY_DICT_ID:#x}")
    return d


SPDY_DICT = load_spdy_dictionary()

# frame types
DATA = 0
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9
FRAME_NAMES = {DATA: "DATA", SYN_STREAM: "SYN_STREAM", SYN_REPLY: "SYN_REPLY",
               RST_STREAM: "RST_STREAM", SETTINGS: "SETTINGS", PING: "PING", GOAWAY: "GOAWAY",
               HEADERS: "HEADERS", WINDOW_UPDATE: "WINDOW_UPDATE"}

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
RST_PROTOCOL_ERROR = 1
RST_INVALID_STREAM = 2
RST_REFUSED_STREAM = 3
RST_UNSUPPORTED_VERSION = 4
RST_CANCEL = 5
RST_INTERNAL_ERROR = 6
RST_FLOW_CONTROL_ERROR = 7
RST_STREAM_IN_USE = 8
RST_STREAM_ALREADY_CLOSED = 9
RST_FRAME_TOO_LARGE = 11

# GOAWAY status codes
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1
GOAWAY_INTERNAL_ERROR = 2

MAX_LENGTH = 0xFFFFFF

# Sub-protocols, most preferred first, as the Kubernetes clients offer them.
REMOTECOMMAND_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
                           "v2.channel.k8s.io", "channel.k8s.io")
PORTFORWARD_PROTOCOL = "portforward.k8s.io"
WS_EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io",
                     "channel.k8s.io", "base64.channel.k8s.io")
WS_PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io")


def protocol_version(name):
    """remotecommand version of a sub-protocol name: 1 (channel.k8s.io, none) .. 5."""
    if not name or name in ("channel.k8s.io", "base64.channel.k8s.io"):
        return 1
    m = re.match(r"v(\d+)\.", name)
    return int(m.group(1)) if m else 1


def _b(s):
    return s if isinstance(s, (bytes, bytearray)) else str(s).encode()


def _pairs(headers):
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)


def nv_encode(headers):
    """The uncompressed SPDY/3 name/value block of @headers (a dict or (name, value)
    pairs; str or bytes; a list value is joined with NULs, the multi-value form)."""
    pairs = _pairs(headers)
    out = [struct.pack(">I", len(pairs))]
    for name, value in pairs:
        if isinstance(value, (list, tuple)):
            value = b"\0".join(_b(v) for v in value)
        n, v = _b(name), _b(value)
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def nv_decode(block):
    """[(name, value), ...] (str, surrogateescape) of an uncompressed name/value block."""
    def take(off, n):
        if off + n > len(block):
            raise ProtocolError(f"name/value block truncated at {off} (+{n} of {len(block)})")
        return block[off:off + n], off + n

    raw, off = take(0, 4)
    (count,) = struct.unpack(">I", raw)
    if count > len(block) // 8 + 1:
        raise ProtocolError(f"name/value block claims {count} pairs in {len(block)} bytes")
    out = []
    for _ in range(count):
        raw, off = take(off, 4)
        name, off = take(off, struct.unpack(">I", raw)[0])
        raw, off = take(off, 4)
        value, off = take(off, struct.unpack(">I", raw)[0])
        out.append((name.decode("utf-8", "surrogateescape"),
                    value.decode("utf-8", "surrogateescape")))
    if off != len(block):
        raise ProtocolError(f"{len(block) - off} bytes after the name/value pairs")
    return out


class HeaderCompressor:
    """One direction's header compression: one zlib stream for the whole connection,
    primed with the dictionary, sync-flushed after each block (as spdystream does)."""

    def __init__(self, dictionary=SPDY_DICT, level=zlib.Z_BEST_COMPRESSION):
        self.z = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY,
                                  zdict=dictionary)

    def block(self, headers):
        return self.z.compress(nv_encode(headers)) + self.z.flush(zlib.Z_SYNC_FLUSH)

    def raw(self, nv_bytes):
        """Compresses an already encoded (possibly malformed) name/value block."""
        return self.z.compress(nv_bytes) + self.z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self, dictionary=SPDY_DICT, max_block=1 << 20):
        self.z = zlib.decompressobj(zdict=dictionary)
        self.max_block = max_block

    def block(self, data):
        try:
            out = self.z.decompress(data, self.max_block + 1)
        except zlib.error as e:
            raise ProtocolError(f"header block does not inflate: {e}") from None
        if len(out) > self.max_block or self.z.unconsumed_tail:
            raise ProtocolError(f"header block inflates past {self.max_block} bytes")
        return out


def control_frame(ftype, payload=b"", flags=0, version=SPDY_VERSION, length=None):
    """A control frame; @length overrides the length field (for malformed frames)."""
    n = len(payload) if length is None else length
    return struct.pack(">HHI", 0x8000 | version, ftype, (flags << 24) | (n & MAX_LENGTH)) + \
        bytes(payload)


def data_frame(stream_id, data=b"", flags=0, length=None):
    n = len(data) if length is None else length
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | (n & MAX_LENGTH)) + \
        bytes(data)


def syn_stream_frame(comp, stream_id, headers, flags=0, assoc_id=0, priority=0, slot=0,
                     block=None):
    """@block: a header block to send instead of compressing @headers with @comp."""
    if block is None:
        block = comp.block(headers)
    payload = struct.pack(">IIBB", stream_id & 0x7FFFFFFF, assoc_id & 0x7FFFFFFF,
                          (priority & 7) << 5, slot) + block
    return control_frame(SYN_STREAM, payload, flags)


def syn_reply_frame(comp, stream_id, headers=(), flags=0):
    return control_frame(SYN_REPLY, struct.pack(">I", stream_id & 0x7FFFFFFF) +
                         comp.block(headers), flags)


def headers_frame(comp, stream_id, headers, flags=0):
    return control_frame(HEADERS, struct.pack(">I", stream_id & 0x7FFFFFFF) +
                         comp.block(headers), flags)


def rst_stream_frame(stream_id, status):
    return control_frame(RST_STREAM, struct.pack(">II", stream_id & 0x7FFFFFFF, status))


def settings_frame(settings=(), flags=0):
    """@settings: (flags, id, value) triples."""
    payload = struct.pack(">I", len(settings)) + b"".join(
        struct.pack(">II", (f << 24) | (i & 0xFFFFFF), v) for f, i, v in settings)
    return control_frame(SETTINGS, payload, flags)


def ping_frame(ping_id):
    return control_frame(PING, struct.pack(">I", ping_id))


def goaway_frame(last_good_id=0, status=GOAWAY_OK):
    return control_frame(GOAWAY, struct.pack(">II", last_good_id & 0x7FFFFFFF, status))


def window_update_frame(stream_id, delta):
    return control_frame(WINDOW_UPDATE, struct.pack(">II", stream_id & 0x7FFFFFFF,
                                                    delta & 0x7FFFFFFF))


class SpdyFrame:
    """A decoded frame; the fields of its type are set, the others are None."""

    def __init__(self, control, ftype, flags, payload, version=None, stream_id=None):
        self.control = control
        self.type = ftype
        self.flags = flags
        self.payload = payload
        self.version = version
        self.stream_id = stream_id
        self.data = None
        self.headers = None
        self.assoc_id = self.priority = self.slot = None
        self.status = self.last_good_id = self.ping_id = self.delta = None
        self.settings = None

    @property
    def fin(self):
        return bool(self.flags & FLAG_FIN) and self.type in (DATA, SYN_STREAM, SYN_REPLY,
                                                             HEADERS)

    def header(self, name, default=None):
        for n, v in self.headers or ():
            if n.lower() == name.lower():
                return v
        return default

    def __repr__(self):
        name = FRAME_NAMES.get(self.type, f"type{self.type}")
        extra = []
        for k in ("stream_id", "assoc_id", "status", "last_good_id", "ping_id", "delta",
                  "headers", "settings"):
            v = getattr(self, k)
            if v is not None:
                extra.append(f"{k}={v!r}")
        if self.data is not None:
            extra.append(f"data={bytes(self.data[:40])!r}{'...' if len(self.data) > 40 else ''}"
                         f"({len(self.data)})")
        return f"<{name} flags={self.flags:#x} {' '.join(extra)}>"


class SpdyParser:
    """Incremental SPDY/3 frame decoder for one direction (its own header inflater)."""

    def __init__(self, decompressor=None, max_control=1 << 24):
        self.dec = decompressor or HeaderDecompressor()
        self.buf = bytearray()
        self.max_control = max_control

    def feed(self, data):
        self.buf += data
        frames = []
        while len(self.buf) >= 8:
            w0, w1 = struct.unpack_from(">II", self.buf)
            length = w1 & MAX_LENGTH
            if len(self.buf) < 8 + length:
                break
            payload = bytes(self.buf[8:8 + length])
            del self.buf[:8 + length]
            flags = w1 >> 24
            if not w0 & 0x80000000:
                f = SpdyFrame(False, DATA, flags, payload, stream_id=w0 & 0x7FFFFFFF)
                f.data = payload
                frames.append(f)
                continue
            version, ftype = (w0 >> 16) & 0x7FFF, w0 & 0xFFFF
            if version != SPDY_VERSION:
                raise ProtocolError(f"control frame of SPDY version {version}")
            frames.append(self._control(ftype, flags, payload))
        return frames

    def _control(self, ftype, flags, p):
        f = SpdyFrame(True, ftype, flags, p, version=SPDY_VERSION)

        def need(n):
            if len(p) < n:
                raise ProtocolError(f"{FRAME_NAMES.get(ftype, ftype)} frame of {len(p)} bytes")

        if ftype == SYN_STREAM:
            need(10)
            sid, assoc, pri, slot = struct.unpack_from(">IIBB", p)
            f.stream_id, f.assoc_id = sid & 0x7FFFFFFF, assoc & 0x7FFFFFFF
            f.priority, f.slot = pri >> 5, slot
            f.headers = nv_decode(self.dec.block(p[10:]))
        elif ftype in (SYN_REPLY, HEADERS):
            need(4)
            f.stream_id = struct.unpack_from(">I", p)[0] & 0x7FFFFFFF
            f.headers = nv_decode(self.dec.block(p[4:]))
        elif ftype == RST_STREAM:
            need(8)
            sid, f.status = struct.unpack_from(">II", p)
            f.stream_id = sid & 0x7FFFFFFF
        elif ftype == SETTINGS:
            need(4)
            (n,) = struct.unpack_from(">I", p)
            need(4 + 8 * n)
            f.settings = []
            for i in range(n):
                fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                f.settings.append((fid >> 24, fid & 0xFFFFFF, value))
        elif ftype == PING:
            need(4)
            (f.ping_id,) = struct.unpack_from(">I", p)
        elif ftype == GOAWAY:
            need(8)
            last, f.status = struct.unpack_from(">II", p)
            f.last_good_id = last & 0x7FFFFFFF
        elif ftype == WINDOW_UPDATE:
            need(8)
            sid, delta = struct.unpack_from(">II", p)
            f.stream_id, f.delta = sid & 0x7FFFFFFF, delta & 0x7FFFFFFF
        return f


# --------------------------------------------------------------------------- HTTP/1.1


class HttpResponse:
    def __init__(self, status, reason, headers, body=b""):
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] in order
        self.body = body

    def header(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<HTTP {self.status} {self.reason} {self.headers} {self.body[:200]!r}>"


def split_url(url):
    """(host, port, path with query) of an http:// URL."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        raise ValueError(f"not an http:// URL: {url}")
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.hostname, u.port or 80, path, u.netloc


def _deadline(timeout):
    return time.monotonic() + (IO_TIMEOUT if timeout is None else timeout)


def _left(deadline, what):
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout(f"timed out {what}")
    return left


def _connect(host, port, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _read_head(sock, deadline):
    """Reads a response head; returns (status, reason, headers, bytes after the head)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(_left(deadline, "reading the HTTP response head"))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            raise Timeout(f"timed out reading the HTTP response head (got {buf[:200]!r})") \
                from None
        if not d:
            raise StreamError(f"connection closed before the response head ended: {buf!r}")
        buf += d
        if len(buf) > 1 << 20:
            raise ProtocolError("response head over 1 MiB")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
    if not m:
        raise ProtocolError(f"bad status line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return int(m.group(1)), m.group(2), headers, rest


def _read_body(sock, resp, rest, deadline):
    """The body of a non-101 response: Content-Length, chunked, or up to the close."""
    te = (resp.header("Transfer-Encoding") or "").lower()
    cl = resp.header("Content-Length")
    buf = rest

    def more():
        sock.settimeout(_left(deadline, "reading the HTTP response body"))
        try:
            return sock.recv(65536)
        except socket.timeout:
            raise Timeout(f"timed out reading the response body (got {buf[:200]!r})") from None
        except ConnectionResetError:
            return b""

    if "chunked" in te:
        out = b""
        while True:
            while b"\r\n" not in buf:
                d = more()
                if not d:
                    return out + buf
                buf += d
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                d = more()
                if not d:
                    return out + buf
                buf += d
            out, buf = out + buf[:size], buf[size + 2:]
            if size == 0:
                return out
    if cl is not None:
        n = int(cl)
        while len(buf) < n:
            d = more()
            if not d:
                break
            buf += d
        return buf[:n]
    while True:
        d = more()
        if not d:
            return buf
        buf += d


def _request_bytes(method, path, netloc, headers, body=b""):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {netloc}"]
    names = {n.lower() for n, _ in headers}
    lines += [f"{n}: {v}" for n, v in headers]
    if method in ("POST", "PUT", "PATCH") and "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")  # as Go's client sends for POST
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http_request(url, method="GET", headers=(), body=b"", timeout=None):
    """One HTTP/1.1 request on a connection of its own; the response with its body."""
    host, port, path, netloc = split_url(url)
    deadline = _deadline(timeout)
    sock = _connect(host, port, _left(deadline, "connecting"))
    try:
        sock.sendall(_request_bytes(method, path, netloc, list(headers), body))
        status, reason, hdrs, rest = _read_head(sock, deadline)
        resp = HttpResponse(status, reason, hdrs)
        if status != 101:
            resp.body = _read_body(sock, resp, rest, deadline)
        return resp
    finally:
        sock.close()


def upgrade(url, method, headers, timeout=None):
    """Sends an upgrade request; (socket, response, bytes read past the head) on 101, else
    raises UpgradeFailed (with the body read)."""
    host, port, path, netloc = split_url(url)
    deadline = _deadline(timeout)
    sock = _connect(host, port, _left(deadline, "connecting"))
    try:
        sock.sendall(_request_bytes(method, path, netloc, list(headers)))
        status, reason, hdrs, rest = _read_head(sock, deadline)
        resp = HttpResponse(status, reason, hdrs)
        if status != 101:
            resp.body = _read_body(sock, resp, rest, deadline)
            raise UpgradeFailed(resp)
    except BaseException:
        sock.close()
        raise
    return sock, resp, rest


def spdy_upgrade_headers(protocols):
    """The headers client-go's SPDY round tripper sends: one X-Stream-Protocol-Version
    per offered protocol."""
    h = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
    h += [("X-Stream-Protocol-Version", p) for p in protocols]
    h.append(("User-Agent", "kstream/1.0 (runt e2e)"))
    return h


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_upgrade_headers(protocols, key, version="13"):
    h = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
         ("Sec-WebSocket-Version", version)]
    if protocols:
        h.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    h.append(("User-Agent", "kstream/1.0 (runt e2e)"))
    return h


# --------------------------------------------------------------------------- a connection


class _Conn:
    """A non-blocking socket with a reader thread feeding self._on_bytes() under
    self.cond, and a writer with a deadline. Subclasses decode."""

    def __init__(self, sock, extra=b"", timeout=None):
        self.sock = sock
        self.timeout = IO_TIMEOUT if timeout is None else timeout
        self.cond = threading.Condition()
        self.wlock = threading.Lock()
        self.closed = False      # the server closed (EOF) or reset the connection
        self.reset = False       # ... by a reset
        self.error = None        # a decoding error of what the server sent
        self.local_closed = False
        self.bytes_in = 0
        sock.setblocking(False)
        self._extra = extra
        self._wake_r, self._wake_w = os.pipe()  # close() wakes the reader with it
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                        name=f"kstream-{type(self).__name__}")

    def _start(self):
        self._reader.start()

    def _read_loop(self):
        if self._extra:
            self._feed(self._extra)
        p = select.poll()
        p.register(self.sock.fileno(), select.POLLIN)
        p.register(self._wake_r, select.POLLIN)
        while not self.local_closed and not self.closed:
            try:
                ready = dict(p.poll(1000))
                if self._wake_r in ready or self.local_closed:
                    return
                if not ready:
                    continue
                d = self.sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                d, self.reset = b"", True
            if not d:
                with self.cond:
                    self.closed = True
                    self._on_eof()
                    self.cond.notify_all()
                return
            self._feed(d)

    def _feed(self, d):
        with self.cond:
            self.bytes_in += len(d)
            try:
                self._on_bytes(d)
            except ProtocolError as e:
                self.error = e
                self.closed = True
                self._on_eof()
            self.cond.notify_all()

    def _on_bytes(self, d):
        raise NotImplementedError

    def _on_eof(self):
        pass

    def send_raw(self, data, timeout=None):
        """Writes @data, all of it, within @timeout; StreamError if the peer is gone."""
        deadline = _deadline(self.timeout if timeout is None else timeout)
        view = memoryview(bytes(data))
        with self.wlock:
            while view:
                try:
                    n = self.sock.send(view)
                    view = view[n:]
                except (BlockingIOError, InterruptedError):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Timeout(f"timed out sending ({len(view)} bytes left); the "
                                      f"server does not read") from None
                    select.select([], [self.sock], [], min(left, 0.5))
                except OSError as e:
                    raise StreamError(f"send failed: {e}") from None

    def _send_later(self, data):
        """Sends from a thread of its own (for replies the reader thread owes)."""
        def go():
            try:
                self.send_raw(data)
            except StreamError:
                pass
        threading.Thread(target=go, daemon=True).start()

    def wait_for(self, pred, timeout=None, what="a condition"):
        """Waits (under self.cond) until pred() is true; raises Timeout."""
        with self.cond:
            if not self.cond.wait_for(pred, IO_TIMEOUT if timeout is None else timeout):
                raise Timeout(f"timed out waiting for {what}; {self.describe()}")

    def wait_closed(self, timeout=None):
        """True once the server closed the connection (EOF or reset) within @timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self.closed,
                                      IO_TIMEOUT if timeout is None else timeout)

    def describe(self):
        return f"closed={self.closed} reset={self.reset} error={self.error}"

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        """Closes the socket once the reader has let go of it (its fd number could be
        reused at once by the next connection)."""
        if self._wake_w is None:
            return
        self.local_closed = True
        os.write(self._wake_w, b"x")
        if self._reader.is_alive() and self._reader is not threading.current_thread():
            self._reader.join(5)
        try:
            self.sock.close()
        except OSError:
            pass
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = None

    def abort(self):
        """Vanishes: closes with a TCP reset (SO_LINGER 0), no goodbye."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SpdyStream:
    """One stream of a SpdyConnection. Received DATA accumulates in .data."""

    def __init__(self, conn, stream_id, headers):
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self.replied = False
        self.reply_headers = None
        self.data = bytearray()
        self.remote_fin = False
        self.rst = None          # RST_STREAM status from the server
        self.local_fin = False

    @property
    def ended(self):
        """No more data will come: FIN, RST, or the connection is gone."""
        return self.remote_fin or self.rst is not None or self.conn.closed

    def write(self, data, fin=False):
        self.conn.send_data(self.id, data, fin=fin)
        if fin:
            self.local_fin = True

    def close(self):
        """Half-closes our side (an empty DATA frame with FIN), as spdystream's Close."""
        if not self.local_fin:
            self.write(b"", fin=True)

    def reset(self, status=RST_CANCEL):
        self.conn.send_raw(rst_stream_frame(self.id, status))

    def wait_reply(self, timeout=None):
        self.conn.wait_for(lambda: self.replied or self.rst is not None or self.conn.closed,
                           timeout, f"SYN_REPLY of stream {self.id} {self.headers}")
        if not self.replied:
            raise StreamError(f"stream {self.id} {self.headers} not accepted: rst={self.rst} "
                              f"{self.conn.describe()}")

    def read_until(self, needle, timeout=None):
        """Bytes received so far, once they hold @needle (bytes, or a callable on them)."""
        pred = needle if callable(needle) else (lambda d: _b(needle) in d)
        self.conn.wait_for(lambda: pred(bytes(self.data)) or self.ended, timeout,
                           f"{needle!r} on stream {self.id} (have {bytes(self.data[-200:])!r})")
        with self.conn.cond:
            got = bytes(self.data)
        if not pred(got):
            raise StreamError(f"stream {self.id} ended without {needle!r}: {got[-300:]!r} "
                              f"rst={self.rst} {self.conn.describe()}")
        return got

    def read_all(self, timeout=None):
        """Everything until the server's FIN (or RST, or the connection's end)."""
        self.conn.wait_for(lambda: self.ended, timeout,
                           f"the end of stream {self.id} {self.headers} "
                           f"(have {len(self.data)} bytes: {bytes(self.data[-200:])!r})")
        with self.conn.cond:
            return bytes(self.data)

    def __repr__(self):
        return (f"<stream {self.id} {self.headers} replied={self.replied} "
                f"fin={self.remote_fin} rst={self.rst} {len(self.data)}B>")


class SpdyConnection(_Conn):
    """A SPDY/3.1 client session over an upgraded connection."""

    def __init__(self, sock, extra=b"", timeout=None, response=None):
        super().__init__(sock, b"", timeout)
        self.response = response
        self.protocol = response.header("X-Stream-Protocol-Version") if response else None
        self.comp = HeaderCompressor()
        self.parser = SpdyParser()
        self.streams = {}
        self.next_id = 1
        self.next_ping = 1
        self.frames = []         # every frame received, in order
        self.goaway = None       # the GOAWAY frame received
        self.pongs = set()       # ids of our pings the server echoed
        self.server_pings = []   # ids of pings the server sent (echoed back)
        self.orphans = []        # frames for streams we do not know
        self.id_lock = threading.Lock()
        self._extra = extra
        self._start()

    @classmethod
    def connect(cls, url, protocols=REMOTECOMMAND_PROTOCOLS, method="POST", timeout=None,
                extra_headers=()):
        """Upgrades; the negotiated protocol is .protocol (X-Stream-Protocol-Version)."""
        sock, resp, rest = upgrade(url, method, spdy_upgrade_headers(protocols) +
                                   list(extra_headers), timeout)
        return cls(sock, rest, timeout, resp)

    def _on_bytes(self, d):
        for f in self.parser.feed(d):
            self._dispatch(f)

    def _dispatch(self, f):
        self.frames.append(f)
        st = self.streams.get(f.stream_id) if f.stream_id else None
        if f.type == DATA and not f.control:
            if st is None:
                self.orphans.append(f)
                return
            st.data += f.data
            if f.flags & FLAG_FIN:
                st.remote_fin = True
        elif f.type == SYN_REPLY:
            if st is None:
                self.orphans.append(f)
                return
            st.replied, st.reply_headers = True, f.headers
            if f.flags & FLAG_FIN:
                st.remote_fin = True
        elif f.type == HEADERS:
            if st is not None and f.flags & FLAG_FIN:
                st.remote_fin = True
        elif f.type == RST_STREAM:
            if st is None:
                self.orphans.append(f)
            else:
                st.rst = f.status
        elif f.type == PING:
            if f.ping_id & 1:
                self.pongs.add(f.ping_id)
            else:
                self.server_pings.append(f.ping_id)
                self._send_later(ping_frame(f.ping_id))
        elif f.type == GOAWAY:
            self.goaway = f
        elif f.type == SYN_STREAM:
            # Servers do not open streams in these protocols: refuse, as spdystream would.
            self._send_later(rst_stream_frame(f.stream_id, RST_REFUSED_STREAM))

    def describe(self):
        tail = ", ".join(repr(f) for f in self.frames[-6:])
        return f"{super().describe()} goaway={self.goaway!r} last frames: [{tail}]"

    def alloc_id(self):
        with self.id_lock:
            sid = self.next_id
            self.next_id += 2
            return sid

    def open_stream(self, headers, fin=False, wait=True, timeout=None, stream_id=None):
        """SYN_STREAM with @headers; waits for the SYN_REPLY unless @wait is false."""
        with self.id_lock:
            sid = stream_id if stream_id is not None else self.next_id
            self.next_id = max(self.next_id, sid + 2)
            st = SpdyStream(self, sid, dict(headers) if isinstance(headers, dict)
                            else list(headers))
            self.streams[sid] = st
            # One compression context: blocks must go out in the order compressed.
            with self.wlock:
                frame = syn_stream_frame(self.comp, sid, headers, FLAG_FIN if fin else 0)
            self.send_raw(frame)
        if fin:
            st.local_fin = True
        if wait:
            st.wait_reply(timeout)
        return st

    def send_data(self, stream_id, data, fin=False):
        data = bytes(data)
        chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
        for i, c in enumerate(chunks):
            last = i == len(chunks) - 1
            self.send_raw(data_frame(stream_id, c, FLAG_FIN if fin and last else 0))

    def ping(self, ping_id=None, timeout=None):
        """Sends PING (odd ids are ours) and waits for its echo; returns the seconds."""
        with self.id_lock:
            if ping_id is None:
                ping_id = self.next_ping
                self.next_ping += 2
        t0 = time.monotonic()
        self.send_raw(ping_frame(ping_id))
        self.wait_for(lambda: ping_id in self.pongs, timeout, f"the echo of PING {ping_id}")
        return time.monotonic() - t0

    def send_goaway(self, status=GOAWAY_OK):
        self.send_raw(goaway_frame(0, status))

    def wait_goaway(self, timeout=None):
        with self.cond:
            return self.cond.wait_for(lambda: self.goaway is not None or self.closed,
                                      IO_TIMEOUT if timeout is None else timeout) \
                and self.goaway is not None


# --------------------------------------------------------------------------- WebSocket

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


def ws_frame(opcode, payload=b"", fin=True, mask=True, mask_key=None, rsv=0, length=None):
    """One WebSocket frame. Client frames are masked (@mask); @length overrides the
    length field (for malformed frames)."""
    payload = bytes(payload)
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack(">BB", b0, mbit | n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", b0, mbit | 126, n)
    else:
        head = struct.pack(">BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + _mask(payload, key)


def _mask(data, key):
    if not data:
        return b""
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")


def ws_close_payload(code=None, reason=""):
    if code is None:
        return b""
    return struct.pack(">H", code) + reason.encode()


class WsFrame:
    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = \
            fin, rsv, opcode, masked, payload

    def __repr__(self):
        return (f"<ws op={self.opcode} fin={self.fin} rsv={self.rsv} masked={self.masked} "
                f"{self.payload[:40]!r}({len(self.payload)})>")


class WsParser:
    """Incremental frame decoder (unmasks masked frames)."""

    def __init__(self, max_len=64 << 20):
        self.buf = bytearray()
        self.max_len = max_len

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            b = self.buf
            if len(b) < 2:
                break
            fin, rsv, op = bool(b[0] & 0x80), (b[0] >> 4) & 7, b[0] & 0xF
            masked, n, off = bool(b[1] & 0x80), b[1] & 0x7F, 2
            if n == 126:
                if len(b) < 4:
                    break
                n, off = struct.unpack_from(">H", b, 2)[0], 4
            elif n == 127:
                if len(b) < 10:
                    break
                n, off = struct.unpack_from(">Q", b, 2)[0], 10
            if n > self.max_len:
                raise ProtocolError(f"WebSocket frame of {n} bytes")
            key = b""
            if masked:
                if len(b) < off + 4:
                    break
                key, off = bytes(b[off:off + 4]), off + 4
            if len(b) < off + n:
                break
            payload = bytes(b[off:off + n])
            del self.buf[:off + n]
            out.append(WsFrame(fin, rsv, op, masked, _mask(payload, key) if masked else payload))
        return out


class WsConnection(_Conn):
    """A WebSocket client connection; complete data messages go to _on_message()."""

    def __init__(self, sock, extra=b"", timeout=None, response=None, key=None):
        super().__init__(sock, b"", timeout)
        self.response = response
        self.protocol = response.header("Sec-WebSocket-Protocol") if response else None
        self.parser = WsParser()
        self.messages = []       # [(opcode, payload)] data messages
        self.frames = []
        self.close_code = None   # the server's close frame: code (None: none yet/empty)
        self.close_reason = None
        self.close_received = False
        self.close_sent = False
        self.pongs = []
        self.server_pings = []
        self._frag = None        # (opcode, bytearray) of a fragmented message
        self._extra = extra
        self._start()

    @classmethod
    def connect(cls, url, protocols=WS_EXEC_PROTOCOLS, timeout=None, extra_headers=(),
                method="GET", check=True):
        key = base64.b64encode(os.urandom(16)).decode()
        sock, resp, rest = upgrade(url, method, ws_upgrade_headers(protocols, key) +
                                   list(extra_headers), timeout)
        if check:
            try:
                if (resp.header("Upgrade") or "").lower() != "websocket":
                    raise ProtocolError(f"101 without Upgrade: websocket: {resp}")
                if "upgrade" not in (resp.header("Connection") or "").lower():
                    raise ProtocolError(f"101 without Connection: Upgrade: {resp}")
                got = resp.header("Sec-WebSocket-Accept")
                if got != ws_accept(key):
                    raise ProtocolError(f"Sec-WebSocket-Accept {got!r} != {ws_accept(key)!r}")
                p = resp.header("Sec-WebSocket-Protocol")
                if p is not None and p not in protocols:
                    raise ProtocolError(f"server chose {p!r}, not offered ({protocols})")
            except BaseException:
                sock.close()
                raise
        return cls(sock, rest, timeout, resp, key)

    def _on_bytes(self, d):
        for f in self.parser.feed(d):
            self.frames.append(f)
            if f.masked:
                raise ProtocolError("the server sent a masked frame")
            if f.opcode == OP_CLOSE:
                self.close_received = True
                if len(f.payload) >= 2:
                    self.close_code = struct.unpack(">H", f.payload[:2])[0]
                    self.close_reason = f.payload[2:].decode("utf-8", "replace")
                if not self.close_sent:
                    self.close_sent = True
                    self._send_later(ws_frame(OP_CLOSE, f.payload[:2]))
            elif f.opcode == OP_PING:
                self.server_pings.append(f.payload)
                self._send_later(ws_frame(OP_PONG, f.payload))
            elif f.opcode == OP_PONG:
                self.pongs.append(f.payload)
            elif f.opcode in (OP_TEXT, OP_BINARY):
                if self._frag is not None:
                    raise ProtocolError("a new message inside a fragmented one")
                if f.fin:
                    self._message(f.opcode, f.payload)
                else:
                    self._frag = (f.opcode, bytearray(f.payload))
            elif f.opcode == OP_CONT:
                if self._frag is None:
                    raise ProtocolError("a continuation frame outside a message")
                self._frag[1].extend(f.payload)
                if f.fin:
                    op, data = self._frag
                    self._frag = None
                    self._message(op, bytes(data))
            else:
                raise ProtocolError(f"unknown opcode {f.opcode}")

    def _message(self, opcode, payload):
        self.messages.append((opcode, payload))
        self._on_message(opcode, payload)

    def _on_message(self, opcode, payload):
        pass

    @property
    def ended(self):
        return self.close_received or self.closed

    def describe(self):
        return (f"{super().describe()} close={self.close_code} {self.close_reason!r} "
                f"last frames: {self.frames[-6:]}")

    def send_message(self, opcode, payload):
        self.send_raw(ws_frame(opcode, payload))

    def send_binary(self, payload):
        self.send_message(OP_BINARY, payload)

    def send_text(self, text):
        self.send_message(OP_TEXT, _b(text))

    def ping(self, payload=b"kstream", timeout=None):
        t0 = time.monotonic()
        self.send_raw(ws_frame(OP_PING, payload))
        self.wait_for(lambda: payload in self.pongs, timeout, f"a pong for {payload!r}")
        return time.monotonic() - t0

    def send_close(self, code=CLOSE_NORMAL, reason=""):
        with self.cond:
            if self.close_sent:
                return
            self.close_sent = True
        self.send_raw(ws_frame(OP_CLOSE, ws_close_payload(code, reason)))

    def wait_close_frame(self, timeout=None):
        """True once a close frame arrived (False if the connection ended without one)."""
        with self.cond:
            self.cond.wait_for(lambda: self.ended, IO_TIMEOUT if timeout is None else timeout)
            return self.close_received

    def goodbye(self, timeout=2.0):
        """A clean close: our close frame, wait for the server's and the TCP close."""
        try:
            self.send_close()
            self.wait_closed(timeout)
        except StreamError:
            pass
        self.close()


# --------------------------------------------------------------------------- k8s channels

CH_STDIN, CH_STDOUT, CH_STDERR, CH_ERROR, CH_RESIZE = range(5)
CHANNELS = {"stdin": CH_STDIN, "stdout": CH_STDOUT, "stderr": CH_STDERR, "error": CH_ERROR,
            "resize": CH_RESIZE}
WS_CLOSE_SIGNAL = 255


def is_base64_protocol(protocol):
    return bool(protocol) and "base64" in protocol


def k8s_wrap(protocol, channel, data=b""):
    """(opcode, payload) of a channel message in @protocol's framing."""
    if is_base64_protocol(protocol):
        return OP_TEXT, chr(ord("0") + channel).encode() + base64.b64encode(bytes(data))
    return OP_BINARY, bytes([channel]) + bytes(data)


def k8s_unwrap(protocol, opcode, payload):
    """(channel, data) of a received channel message; (None, b"") for an empty one."""
    if not payload:
        return None, b""
    if opcode == OP_TEXT or is_base64_protocol(protocol):
        if opcode != OP_TEXT:
            raise ProtocolError(f"binary message under {protocol}: {payload[:40]!r}")
        try:
            return payload[0] - ord("0"), base64.b64decode(payload[1:], validate=True)
        except ValueError as e:
            raise ProtocolError(f"bad base64 message {payload[:60]!r}: {e}") from None
    return payload[0], payload[1:]


class K8sWsConnection(WsConnection):
    """A WebSocket connection demultiplexed into Kubernetes channels: .chan[n] holds what
    came on channel n; .first is the first data message (channel, data); .chan_closed the
    channels the server closed with v5's close signal."""

    def __init__(self, *a, **kw):
        self.chan = {}
        self.chan_msgs = {}
        self.first = None
        self.chan_closed = set()
        self.empty_messages = 0
        super().__init__(*a, **kw)

    def _on_message(self, opcode, payload):
        ch, data = k8s_unwrap(self.protocol, opcode, payload)
        if ch is None:
            self.empty_messages += 1
            return
        if ch == WS_CLOSE_SIGNAL and self.protocol == "v5.channel.k8s.io" and \
                opcode == OP_BINARY:
            if len(data) == 1:
                self.chan_closed.add(data[0])
            return
        if self.first is None:
            self.first = (ch, data)
        self.chan.setdefault(ch, bytearray()).extend(data)
        self.chan_msgs[ch] = self.chan_msgs.get(ch, 0) + 1

    def channel(self, ch):
        with self.cond:
            return bytes(self.chan.get(ch, b""))

    def send_channel(self, ch, data):
        data = bytes(data)
        for i in range(0, max(len(data), 1), CHUNK):
            op, payload = k8s_wrap(self.protocol, ch, data[i:i + CHUNK])
            self.send_message(op, payload)

    def send_close_signal(self, ch):
        if self.protocol != "v5.channel.k8s.io":
            raise StreamError(f"no close signal in {self.protocol!r} (v5.channel.k8s.io only)")
        self.send_binary(bytes([WS_CLOSE_SIGNAL, ch]))

    def read_until(self, ch, needle, timeout=None):
        pred = needle if callable(needle) else (lambda d: _b(needle) in d)
        self.wait_for(lambda: pred(bytes(self.chan.get(ch, b""))) or self.ended, timeout,
                      f"{needle!r} on channel {ch} (have "
                      f"{bytes(self.chan.get(ch, b''))[-200:]!r})")
        got = self.channel(ch)
        if not pred(got):
            raise StreamError(f"channel {ch} ended without {needle!r}: {got[-300:]!r}; "
                              f"{self.describe()}")
        return got


# --------------------------------------------------------------------------- remotecommand


class ExecResult:
    """The outcome of an exec/attach session.
    status: the metav1.Status (dict) of the error stream (v4 and later), else None;
    exit_code: 0 on success, the ExitCode cause on NonZeroExitCode, else None;
    message: the failure message (v4: status.message, before: the error stream text)."""

    def __init__(self, protocol, stdout, stderr, error):
        self.protocol = protocol
        self.version = protocol_version(protocol)
        self.stdout = stdout
        self.stderr = stderr
        self.error = error
        self.status = None
        self.exit_code = None
        self.message = None
        if self.version >= 4:
            if error:
                try:
                    self.status = json.loads(error)
                except ValueError:
                    raise ProtocolError(f"error stream is not JSON under {protocol}: "
                                        f"{error!r}") from None
            st = self.status or {}
            if st.get("status") == "Success":
                self.exit_code = 0
            elif st.get("status") == "Failure":
                self.message = st.get("message")
                if st.get("reason") == "NonZeroExitCode":
                    for c in (st.get("details") or {}).get("causes") or []:
                        if c.get("reason") == "ExitCode":
                            self.exit_code = int(c.get("message"))
        else:
            if error:
                self.message = error.decode("utf-8", "replace")
            else:
                self.exit_code = 0

    def __repr__(self):
        return (f"<ExecResult {self.protocol} exit={self.exit_code} stdout={self.stdout[:200]!r}"
                f"({len(self.stdout)}) stderr={self.stderr[:200]!r}({len(self.stderr)}) "
                f"error={self.error[:300]!r}>")


class _Session:
    """What every session wrapper here shares: ping, abort, close on leaving a with."""

    def ping(self, timeout=None):
        return self.conn.ping(timeout=timeout)

    def close(self):
        self.conn.close()

    def abort(self):
        self.conn.abort()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SpdyRemoteCommand(_Session):
    """exec or attach over SPDY, as client-go's SPDY executor does it."""

    transport = "spdy"

    def __init__(self, url, stdin=False, stdout=True, stderr=True, tty=False,
                 protocols=REMOTECOMMAND_PROTOCOLS, timeout=None, method="POST"):
        self.timeout = IO_TIMEOUT if timeout is None else timeout
        self.conn = SpdyConnection.connect(url, protocols, method, self.timeout)
        self.protocol = self.conn.protocol
        self.version = protocol_version(self.protocol)
        self.tty = tty
        self.streams = {}
        try:
            kinds = ["error"]
            if stdin:
                kinds.append("stdin")
            if stdout:
                kinds.append("stdout")
            if stderr and not tty:
                kinds.append("stderr")
            if tty and self.version >= 3:
                kinds.append("resize")
            for k in kinds:
                self.streams[k] = self.conn.open_stream({"streamtype": k}, timeout=self.timeout)
        except BaseException:
            self.conn.close()
            raise

    def stream(self, name):
        return self.streams.get(name)

    def write_stdin(self, data):
        self.streams["stdin"].write(data)

    def close_stdin(self):
        self.streams["stdin"].close()

    def resize(self, width, height):
        if "resize" not in self.streams:
            raise StreamError(f"no resize stream (tty={self.tty}, {self.protocol})")
        # json.Encoder.Encode adds a newline, as client-go's does.
        self.streams["resize"].write(json.dumps({"Width": width, "Height": height}).encode()
                                     + b"\n")

    def output(self, channel="stdout"):
        st = self.streams.get(channel)
        if st is None:
            return b""
        with self.conn.cond:
            return bytes(st.data)

    def read_until(self, needle, channel="stdout", timeout=None):
        return self.streams[channel].read_until(needle, self.timeout if timeout is None
                                                else timeout)

    def wait(self, timeout=None):
        """Waits for the end (stdout/stderr and the error stream all ended) -> ExecResult."""
        t = self.timeout if timeout is None else timeout
        outs = [self.streams[k] for k in ("stdout", "stderr", "error") if k in self.streams]
        self.conn.wait_for(lambda: all(s.ended for s in outs), t,
                           "the end of the session: " + ", ".join(map(repr, outs)))
        res = ExecResult(self.protocol, self.output("stdout"), self.output("stderr"),
                         self.output("error"))
        res.goaway = self.conn.goaway
        return res


class WsRemoteCommand(_Session):
    """exec or attach over WebSocket (client-go's WebSocket executor, plus the older
    framings the kubelet serves)."""

    transport = "ws"

    def __init__(self, url, stdin=False, stdout=True, stderr=True, tty=False,
                 protocols=WS_EXEC_PROTOCOLS, timeout=None):
        self.timeout = IO_TIMEOUT if timeout is None else timeout
        self.conn = K8sWsConnection.connect(url, protocols, self.timeout)
        self.protocol = self.conn.protocol or "channel.k8s.io"
        self.version = protocol_version(self.protocol)
        self.tty = tty
        self.stdin = stdin

    def write_stdin(self, data):
        self.conn.send_channel(CH_STDIN, data)

    def close_stdin(self):
        self.conn.send_close_signal(CH_STDIN)

    def resize(self, width, height):
        self.conn.send_channel(CH_RESIZE, json.dumps({"Width": width, "Height": height})
                               .encode() + b"\n")

    def output(self, channel="stdout"):
        return self.conn.channel(CHANNELS[channel])

    def read_until(self, needle, channel="stdout", timeout=None):
        return self.conn.read_until(CHANNELS[channel], needle,
                                    self.timeout if timeout is None else timeout)

    @property
    def first(self):
        return self.conn.first

    def wait(self, timeout=None):
        """Waits for the server's close (close frame or TCP close) -> ExecResult."""
        t = self.timeout if timeout is None else timeout
        self.conn.wait_for(lambda: self.conn.ended, t, "the server to close the session")
        res = ExecResult(self.protocol, self.output("stdout"), self.output("stderr"),
                         self.output("error"))
        res.close_code = self.conn.close_code
        res.first = self.conn.first
        return res

    def close(self):
        self.conn.goodbye()


def remote_command(transport, url, **kw):
    """SpdyRemoteCommand ("spdy") or WsRemoteCommand ("ws") with the same arguments."""
    if transport == "spdy":
        return SpdyRemoteCommand(url, **kw)
    if transport == "ws":
        return WsRemoteCommand(url, **kw)
    raise ValueError(transport)


def run_exec(transport, url, stdin=None, stdout=True, stderr=True, tty=False, resize=None,
             timeout=None, **kw):
    """A whole session: opens it (stdin stream if @stdin is not None), sends @resize
    (width, height) first, then @stdin and its end, and waits -> ExecResult."""
    with remote_command(transport, url, stdin=stdin is not None, stdout=stdout,
                        stderr=stderr, tty=tty, timeout=timeout, **kw) as r:
        if resize:
            r.resize(*resize)
        if stdin is not None:
            if stdin:
                r.write_stdin(stdin)
            r.close_stdin()
        return r.wait()


# --------------------------------------------------------------------------- port-forward


class PortForwardStream:
    """One forwarded connection of a SPDY port-forward session: its data and error
    streams (same port and requestid)."""

    def __init__(self, session, port, request_id, error_stream, data_stream):
        self.session = session
        self.port = port
        self.request_id = request_id
        self.error_stream = error_stream
        self.data_stream = data_stream

    def send(self, data):
        self.data_stream.write(data)

    def close_write(self):
        self.data_stream.close()

    def reset(self):
        self.data_stream.reset()
        self.error_stream.reset()

    @property
    def data(self):
        with self.session.conn.cond:
            return bytes(self.data_stream.data)

    def read_until(self, needle, timeout=None):
        return self.data_stream.read_until(needle, timeout)

    def read_all(self, timeout=None):
        """The pod's bytes until it closed (the server's FIN on the data stream)."""
        return self.data_stream.read_all(timeout)

    def error_text(self, timeout=None):
        """What came on the error stream until it ended."""
        return self.error_stream.read_all(timeout).decode("utf-8", "replace")


class SpdyPortForward(_Session):
    """A port-forward session over SPDY, as client-go's PortForwarder drives it."""

    def __init__(self, url, timeout=None, protocols=(PORTFORWARD_PROTOCOL,), method="POST"):
        self.timeout = IO_TIMEOUT if timeout is None else timeout
        self.conn = SpdyConnection.connect(url, protocols, method, self.timeout)
        self.protocol = self.conn.protocol
        self._next_request = 0
        self._lock = threading.Lock()

    def open(self, port, request_id=None, close_error=True, timeout=None):
        """Error stream (half-closed at once unless @close_error is false, as client-go),
        then the data stream; waits for both replies."""
        with self._lock:
            if request_id is None:
                request_id = self._next_request
            self._next_request = max(self._next_request, int(request_id) + 1) \
                if str(request_id).isdigit() else self._next_request
        h = {"streamtype": "error", "port": str(port), "requestid": str(request_id)}
        err = self.conn.open_stream(h, timeout=timeout)
        if close_error:
            err.close()
        h = dict(h, streamtype="data")
        data = self.conn.open_stream(h, timeout=timeout)
        return PortForwardStream(self, port, request_id, err, data)


class WsPortForward(_Session):
    """A port-forward session over WebSocket: port i of the request uses data channel 2i
    and error channel 2i+1; each starts with the port, 2 bytes little-endian."""

    def __init__(self, url, protocols=("v4.channel.k8s.io",), timeout=None, n_ports=None):
        self.timeout = IO_TIMEOUT if timeout is None else timeout
        self.conn = K8sWsConnection.connect(url, protocols, self.timeout)
        self.protocol = self.conn.protocol or "channel.k8s.io"
        if n_ports:
            for i in range(n_ports):
                self.port(i)

    def _raw(self, ch):
        return self.conn.channel(ch)

    def port(self, i, timeout=None):
        """The port announced on data channel 2i (waits for it; checks channel 2i+1 too)."""
        self.conn.wait_for(lambda: len(self.conn.chan.get(2 * i, b"")) >= 2 and
                           len(self.conn.chan.get(2 * i + 1, b"")) >= 2 or self.conn.ended,
                           timeout, f"the port announcement of port #{i}")
        d, e = self._raw(2 * i), self._raw(2 * i + 1)
        if len(d) < 2 or len(e) < 2:
            raise StreamError(f"no port announcement for #{i}: {d!r} {e!r}; "
                              f"{self.conn.describe()}")
        pd, pe = struct.unpack("<H", d[:2])[0], struct.unpack("<H", e[:2])[0]
        if pd != pe:
            raise ProtocolError(f"port #{i}: data channel says {pd}, error channel {pe}")
        return pd

    def send(self, i, data):
        self.conn.send_channel(2 * i, data)

    def data(self, i):
        return self._raw(2 * i)[2:]

    def error(self, i):
        return self._raw(2 * i + 1)[2:]

    def read_until(self, i, needle, timeout=None):
        pred = needle if callable(needle) else (lambda d: _b(needle) in d)
        self.conn.wait_for(lambda: pred(bytes(self.conn.chan.get(2 * i, b""))[2:]) or
                           self.conn.ended, timeout, f"{needle!r} from port #{i}")
        got = self.data(i)
        if not pred(got):
            raise StreamError(f"port #{i} ended without {needle!r}: {got[-300:]!r}; "
                              f"{self.conn.describe()}")
        return got

    def wait_closed(self, timeout=None):
        return self.conn.wait_closed(timeout)

    def close(self):
        self.conn.goodbye()


# --------------------------------------------------------------------------- self test


class _FakeServer:
    """A tiny in-process streaming server for the self test: one connection, exec of
    'cat' (stdin echoed to stdout, "e" on stderr, Success at stdin's end), over SPDY or
    WebSocket. It shares no code with the clients except the frame codecs."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.url = f"http://127.0.0.1:{self.lsock.getsockname()[1]}/exec/token"
        self.error = None
        self.seen = []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            c, _ = self.lsock.accept()
            c.settimeout(IO_TIMEOUT)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += c.recv(4096)
            head, rest = buf.split(b"\r\n\r\n", 1)
            hdrs = [tuple(x.strip() for x in line.split(":", 1))
                    for line in head.decode().split("\r\n")[1:]]
            up = {n.lower(): v for n, v in hdrs}.get("upgrade", "").lower()
            if up == "spdy/3.1":
                self._spdy(c, hdrs, rest)
            else:
                self._ws(c, hdrs, rest)
            c.close()
        except Exception as e:  # noqa: BLE001 - reported by the self test
            self.error = e
        finally:
            self.lsock.close()

    def _spdy(self, c, hdrs, rest):
        offered = [v for n, v in hdrs if n.lower() == "x-stream-protocol-version"]
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                  b"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: " +
                  offered[0].encode() + b"\r\n\r\n")
        parser, comp, sids = SpdyParser(), HeaderCompressor(), {}
        frames = parser.feed(rest)
        while True:
            for f in frames:
                self.seen.append(f)
                if f.type == SYN_STREAM:
                    sids[f.header("streamtype")] = f.stream_id
                    c.sendall(syn_reply_frame(comp, f.stream_id))
                elif f.type == PING:
                    c.sendall(ping_frame(f.ping_id))
                elif f.type == DATA and f.stream_id == sids.get("stdin"):
                    if f.data:
                        c.sendall(data_frame(sids["stdout"], f.data))
                    if f.flags & FLAG_FIN:
                        c.sendall(data_frame(sids["stdout"], b"", FLAG_FIN) +
                                  data_frame(sids["stderr"], b"e", FLAG_FIN) +
                                  data_frame(sids["error"], b'{"metadata":{},"status":"Success"}',
                                             FLAG_FIN) + goaway_frame(max(sids.values())))
                        return
            d = c.recv(65536)
            if not d:
                return
            frames = parser.feed(d)

    def _ws(self, c, hdrs, rest):
        h = {n.lower(): v for n, v in hdrs}
        proto = h["sec-websocket-protocol"].split(",")[0].strip()
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                  ws_accept(h["sec-websocket-key"]).encode() +
                  b"\r\nSec-WebSocket-Protocol: " + proto.encode() + b"\r\n\r\n")

        def send(ch, data):
            op, p = k8s_wrap(proto, ch, data)
            c.sendall(ws_frame(op, p, mask=False))

        send(CH_STDOUT, b"")
        parser = WsParser()
        frames = parser.feed(rest)
        while True:
            for f in frames:
                self.seen.append(f)
                if not f.masked:
                    raise ProtocolError("client frame not masked")
                if f.opcode == OP_PING:
                    c.sendall(ws_frame(OP_PONG, f.payload, mask=False))
                elif f.opcode == OP_BINARY and f.payload[:2] == bytes([WS_CLOSE_SIGNAL, 0]):
                    send(CH_STDERR, b"e")
                    send(CH_ERROR, b'{"metadata":{},"status":"Success"}')
                    c.sendall(ws_frame(OP_CLOSE, ws_close_payload(CLOSE_NORMAL), mask=False))
                    c.shutdown(socket.SHUT_WR)
                    while c.recv(65536):
                        pass
                    return
                elif f.opcode in (OP_BINARY, OP_TEXT):
                    ch, data = k8s_unwrap(proto, f.opcode, f.payload)
                    if ch == CH_STDIN:
                        send(CH_STDOUT, data)
            d = c.recv(65536)
            if not d:
                return
            frames = parser.feed(d)


def selftest():
    """Round trips of every encoder through its decoder, and whole sessions against an
    in-process fake server. Raises AssertionError on a failure."""
    # The dictionary is the spec's: its zlib id is in every first header block.
    assert len(SPDY_DICT) == 1423 and zlib.adler32(SPDY_DICT) == SPDY_DICT_ID
    assert SPDY_DICT.startswith(b"\x00\x00\x00\x07options") and \
        SPDY_DICT.endswith(b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0.")

    # Name/value blocks.
    hdrs = [("streamtype", "stdin"), ("port", "8080"), ("requestid", "7"), ("x", "")]
    assert nv_decode(nv_encode(hdrs)) == hdrs
    assert nv_decode(nv_encode({"a": ["1", "2"]})) == [("a", "1\x002")]
    for bad in (b"", b"\0\0\0\1", nv_encode(hdrs) + b"x", nv_encode(hdrs)[:-1]):
        try:
            nv_decode(bad)
            raise AssertionError(f"nv_decode accepted {bad!r}")
        except ProtocolError:
            pass

    # Header compression: one context per direction; the first block names the dictionary.
    comp, dec = HeaderCompressor(), HeaderDecompressor()
    b1, b2 = comp.block(hdrs), comp.block(hdrs)
    assert b1[0] & 0x0F == 8 and b1[1] & 0x20, "zlib header without FDICT"
    assert struct.unpack(">I", b1[2:6])[0] == SPDY_DICT_ID
    assert b1.endswith(b"\x00\x00\xff\xff") and b2.endswith(b"\x00\x00\xff\xff")
    assert len(b2) < len(b1)  # the second refers back to the first
    assert nv_decode(dec.block(b1)) == hdrs and nv_decode(dec.block(b2)) == hdrs
    try:
        HeaderDecompressor().block(b2)  # without the context it cannot be read
        raise AssertionError("a later block decoded without its context")
    except ProtocolError:
        pass
    # Python's zlib and the server's must agree on the dictionary: a block made with a
    # plain compressobj primed with SPDY_DICT reads back.
    z = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=SPDY_DICT)
    blk = z.compress(nv_encode({"status": "200 OK"})) + z.flush(zlib.Z_SYNC_FLUSH)
    assert nv_decode(HeaderDecompressor().block(blk)) == [("status", "200 OK")]

    # Every frame type through the parser, fed whole and one byte at a time.
    comp = HeaderCompressor()
    wire = b"".join([
        syn_stream_frame(comp, 1, hdrs, FLAG_FIN, assoc_id=0, priority=7, slot=0),
        syn_reply_frame(comp, 3, {"a": "b"}),
        headers_frame(comp, 3, {"c": "d"}, FLAG_FIN),
        data_frame(5, b"x" * 70000, FLAG_FIN),
        data_frame(7, b""),
        rst_stream_frame(9, RST_CANCEL),
        settings_frame([(1, 7, 65536), (0, 4, 100)]),
        ping_frame(1),
        goaway_frame(9, GOAWAY_PROTOCOL_ERROR),
        window_update_frame(1, 1 << 20),
    ])
    for step in (len(wire), 1, 7):
        p = SpdyParser()
        got = []
        for i in range(0, len(wire), step):
            got += p.feed(wire[i:i + step])
        assert [f.type for f in got] == [SYN_STREAM, SYN_REPLY, HEADERS, DATA, DATA,
                                         RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE], got
        s, r, h, d, e, rst, st, pg, ga, wu = got
        assert s.stream_id == 1 and s.fin and s.priority == 7 and s.headers == hdrs
        assert r.stream_id == 3 and r.headers == [("a", "b")] and not r.fin
        assert h.headers == [("c", "d")] and h.fin
        assert d.stream_id == 5 and d.data == b"x" * 70000 and d.fin
        assert e.stream_id == 7 and e.data == b"" and not e.fin
        assert rst.stream_id == 9 and rst.status == RST_CANCEL
        assert st.settings == [(1, 7, 65536), (0, 4, 100)]
        assert pg.ping_id == 1
        assert ga.last_good_id == 9 and ga.status == GOAWAY_PROTOCOL_ERROR
        assert wu.stream_id == 1 and wu.delta == 1 << 20
        assert not p.buf
    for bad in (control_frame(PING, struct.pack(">I", 1), version=2),
                control_frame(SYN_STREAM, b"\0" * 10 + b"\x78\xbb\x12\x34\x56\x78junk")):
        try:
            SpdyParser().feed(bad)
            raise AssertionError(f"parser accepted {bad!r}")
        except ProtocolError:
            pass

    # WebSocket: the RFC 6455 example key; frames of every length encoding, masked or not.
    assert ws_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    for n in (0, 1, 125, 126, 65535, 65536, 200000):
        payload = os.urandom(n)
        for mask in (True, False):
            fr = ws_frame(OP_BINARY, payload, mask=mask)
            assert (fr[1] & 0x80 != 0) == mask
            assert (fr[1] & 0x7F) == (n if n < 126 else 126 if n < 65536 else 127)
            p = WsParser()
            got = []
            for i in range(0, len(fr), 4093):
                got += p.feed(fr[i:i + 4093])
            assert len(got) == 1 and got[0].payload == payload and got[0].masked == mask
            assert got[0].opcode == OP_BINARY and got[0].fin
    fr = ws_frame(OP_TEXT, b"abc", mask_key=b"\x01\x02\x03\x04")
    assert fr == b"\x81\x83\x01\x02\x03\x04" + bytes([0x61 ^ 1, 0x62 ^ 2, 0x63 ^ 3])
    assert ws_frame(OP_CLOSE, ws_close_payload(1000), mask=False) == b"\x88\x02\x03\xe8"
    huge = ws_frame(OP_BINARY, b"", mask=False, length=1 << 62)
    assert huge[1] == 127 and struct.unpack(">Q", huge[2:10])[0] == 1 << 62
    try:
        WsParser().feed(huge)
        raise AssertionError("parser accepted a 2^62 byte frame")
    except ProtocolError:
        pass

    # Kubernetes channel framings.
    for proto in WS_EXEC_PROTOCOLS:
        op, p = k8s_wrap(proto, CH_STDERR, b"\x00\xffdata")
        assert (op == OP_TEXT) == is_base64_protocol(proto)
        assert k8s_unwrap(proto, op, p) == (CH_STDERR, b"\x00\xffdata")
    assert k8s_wrap("v4.base64.channel.k8s.io", 1, b"hi") == (OP_TEXT, b"1aGk=")
    assert k8s_wrap("v5.channel.k8s.io", 0, b"hi") == (OP_BINARY, b"\x00hi")
    assert k8s_unwrap("v4.channel.k8s.io", OP_BINARY, b"") == (None, b"")

    # Status decoding.
    r = ExecResult("v4.channel.k8s.io", b"", b"", json.dumps({
        "metadata": {}, "status": "Failure", "message": "command terminated with non-zero "
        "exit code: 3", "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}).encode())
    assert r.exit_code == 3 and r.message.startswith("command terminated")
    assert ExecResult("v5.channel.k8s.io", b"", b"",
                      b'{"metadata":{},"status":"Success"}').exit_code == 0
    assert ExecResult("v2.channel.k8s.io", b"", b"", b"").exit_code == 0
    assert ExecResult("v3.channel.k8s.io", b"", b"", b"boom").message == "boom"
    assert protocol_version("v4.base64.channel.k8s.io") == 4
    assert protocol_version("base64.channel.k8s.io") == 1

    # Whole sessions against the fake server: streams in client-go's order, stdin echoed
    # (200 kB: both directions at once), PING, the end.
    big = os.urandom(200000)
    srv = _FakeServer()
    with SpdyRemoteCommand(srv.url, stdin=True, stdout=True, stderr=True, timeout=5) as rc:
        assert rc.protocol == "v5.channel.k8s.io"
        assert rc.ping(timeout=5) < 5
        rc.write_stdin(b"hello\n")
        assert rc.read_until(b"hello\n", timeout=5) == b"hello\n"
        rc.write_stdin(big)
        rc.close_stdin()
        res = rc.wait(timeout=5)
    srv.t.join(5)
    assert srv.error is None, srv.error
    assert res.stdout == b"hello\n" + big and res.stderr == b"e" and res.exit_code == 0, res
    syns = [f for f in srv.seen if f.type == SYN_STREAM]
    assert [f.header("streamtype") for f in syns] == ["error", "stdin", "stdout", "stderr"]
    assert [f.stream_id for f in syns] == [1, 3, 5, 7]
    assert not any(f.type == WINDOW_UPDATE for f in srv.seen)
    ends = [f for f in srv.seen if f.type == DATA and f.fin]
    assert [f.stream_id for f in ends] == [3] and ends[0].data == b""

    srv = _FakeServer()
    with WsRemoteCommand(srv.url, stdin=True, timeout=5) as rc:
        assert rc.protocol == "v5.channel.k8s.io"
        assert rc.ping(timeout=5) < 5
        rc.write_stdin(big)
        rc.close_stdin()
        res = rc.wait(timeout=5)
        assert res.first == (CH_STDOUT, b"") and res.close_code == CLOSE_NORMAL
    srv.t.join(5)
    assert srv.error is None, srv.error
    assert res.stdout == big and res.stderr == b"e" and res.exit_code == 0, res
    assert all(f.masked for f in srv.seen)

    srv = _FakeServer()
    with WsRemoteCommand(srv.url, stdin=True, timeout=5,
                         protocols=("v4.base64.channel.k8s.io",)) as rc:
        rc.write_stdin(b"b64 data\n")
        assert rc.read_until(b"b64 data\n", timeout=5) == b"b64 data\n"
        rc.conn.send_binary(bytes([WS_CLOSE_SIGNAL, 0]))  # what the fake server ends on
        res = rc.wait(timeout=5)
    assert res.exit_code == 0 and res.stdout == b"b64 data\n", res
    return True


if __name__ == "__main__":
    selftest()
    print("kstream self test: ok")
