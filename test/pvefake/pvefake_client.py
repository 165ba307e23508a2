"""Starts runt's fake Proxmox VE (pvefake.py) for a test and talks to it.

    import sys; sys.path.insert(0, "<repo>/test/pvefake")
    from pvefake_client import PveFake

    with PveFake(task_delay=0.2) as pve:
        pve.url             # https://127.0.0.1:<port>/api2/json
        pve.ca, pve.fingerprint, pve.token
        st, reason, body = pve.api("POST", "/nodes/node1/lxc", {"vmid": 101, ...})
        pve.wait_task(body["data"])
        pve.set_node("node2", online=False)
        pve.fail("POST", "/nodes/node1/lxc", 500, "boom")
        pve.state()["cts"]

Nothing here depends on pytest; the e2e tests and benchmarks import it.
"""

import http.client
import json
import os
import select
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
PVEFAKE = os.path.join(HERE, "pvefake.py")
PYTHON = "/usr/bin/python3"


class PveFakeError(Exception):
    pass


class PveFake:
    """One pvefake process. Arguments map onto its command line flags."""

    def __init__(self, dir=None, nodes=("node1", "node2", "node3"), tokens=None,
                 old_errors=False, auth_delay=0.0, task_delay=0.0, run_cts=False,
                 bridges=(), port=0, start_timeout=30.0):
        self._own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="pvefake-", dir="/tmp")
        self.nodes = list(nodes)
        self.argv = [PYTHON, PVEFAKE, "--dir", self.dir, "--port", str(port),
                     "--nodes", ",".join(self.nodes),
                     "--auth-delay", str(auth_delay), "--task-delay", str(task_delay)]
        for t in tokens or ():
            self.argv += ["--token", t]
        if old_errors:
            self.argv.append("--old-errors")
        if run_cts:
            self.argv.append("--run-cts")
        for b in bridges:
            self.argv += ["--bridge", b]
        self.start_timeout = start_timeout
        self.proc = None
        self.ready = None
        self.stderr_path = os.path.join(self.dir, "pvefake.stderr")

    # ---- process

    def start(self):
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                err = self.stderr()
                self.stop()
                raise PveFakeError("pvefake did not start: %s" % err)
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                b = os.read(self.proc.stdout.fileno(), 4096)
                if not b:
                    continue
                line += b
        self.ready = json.loads(line.decode())
        return self

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout=20.0, keep_dir=False):
        """SIGTERM and wait; the exit code (None if it had to be killed). A directory this
        object made is removed unless @keep_dir."""
        rc = self._stop(timeout)
        if self._own_dir and not keep_dir:
            import shutil
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def _stop(self, timeout):
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = None
                self._reap_leftovers()
        self.proc.stdout.close()
        self._stderr.close()
        self.proc = None
        return rc

    def _reap_leftovers(self):
        """After a SIGKILL: what a --run-cts fake would have removed itself (its containers,
        its bridges pvf<port>[nN], its veths pw<port hex>...)."""
        if not self.ready or "--run-cts" not in self.argv:
            return
        lxcpath = os.path.join(self.dir, "lxc")
        if os.path.isdir(lxcpath):
            for name in os.listdir(lxcpath):
                subprocess.run(["lxc-stop", "-n", name, "-P", lxcpath, "--kill"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self.ready["port"]
        out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name == "pvf%d" % port or name.startswith("pvf%dn" % port) or \
                    name.startswith("pw%04x" % port):
                subprocess.run(["ip", "link", "del", name], stderr=subprocess.DEVNULL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- what the ready line says

    @property
    def port(self):
        return self.ready["port"]

    @property
    def control_port(self):
        return self.ready["control"]

    @property
    def ca(self):
        return self.ready["ca"]

    @property
    def other_ca(self):
        return self.ready["other_ca"]

    @property
    def fingerprint(self):
        return self.ready["fingerprint"]

    @property
    def token(self):
        return self.ready["token"]

    @property
    def url(self):
        return "https://127.0.0.1:%d/api2/json" % self.port

    # ---- control server

    def control(self, method, path, body=None, timeout=30.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            out = json.loads(r.read() or b"null")
            if r.status != 200:
                raise PveFakeError("control %s %s: %s %s" % (method, path, r.status, out))
            return out
        finally:
            conn.close()

    def config(self, **kw):
        return self.control("POST", "/control/config", kw)

    def set_node(self, node, online):
        return self.control("POST", "/control/node", {"node": node, "online": online})

    def fail(self, method, path, status=500, message="", count=1, errors=None):
        body = {"method": method, "path": path, "status": status, "message": message,
                "count": count}
        if errors is not None:
            body["errors"] = errors
        return self.control("POST", "/control/fail", body)

    def task_fail(self, ttype, exitstatus, count=1):
        return self.control("POST", "/control/task_fail",
                            {"type": ttype, "exitstatus": exitstatus, "count": count})

    def nextid_stale(self, count=1):
        return self.control("POST", "/control/nextid_stale", {"count": count})

    def add_ct(self, vmid, node="node1", config=None, status="stopped"):
        return self.control("POST", "/control/ct", {"vmid": vmid, "node": node,
                                                    "config": config or {}, "status": status})

    def state(self):
        return self.control("GET", "/control/state")

    def calls(self):
        return self.control("GET", "/control/calls")

    def reset_calls(self):
        return self.control("POST", "/control/calls/reset", {})

    # ---- the API itself (a small client for tests; runt has its own in C)

    def ssl_context(self, ca=None):
        ctx = ssl.create_default_context(cafile=ca or self.ca)
        return ctx

    def connection(self, ca=None, timeout=30.0):
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                           context=self.ssl_context(ca))

    def api(self, method, path, params=None, json_body=None, token=None, headers=None,
            conn=None, timeout=30.0, raw_body=None):
        """One API call. @params: form-encoded (body for POST/PUT, query otherwise);
        @json_body: sent as application/json instead. Returns (status, reason, body) where
        body is the decoded JSON (or the raw bytes when not JSON)."""
        st, reason, _, body = self.api_full(method, path, params, json_body, token, headers,
                                            conn, timeout, raw_body)
        return st, reason, body

    def api_full(self, method, path, params=None, json_body=None, token=None, headers=None,
                 conn=None, timeout=30.0, raw_body=None):
        own = conn is None
        conn = conn or self.connection(timeout=timeout)
        url = "/api2/json" + path
        hdrs = {}
        if token is not False:
            hdrs["Authorization"] = "PVEAPIToken=" + (token or self.token)
        body = raw_body
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        elif params:
            enc = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
            if method in ("POST", "PUT"):
                body = enc.encode()
                hdrs["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                url += "?" + enc
        hdrs.update(headers or {})
        try:
            conn.request(method, url, body=body, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = raw
            return r.status, r.reason, r.headers, data
        finally:
            if own:
                conn.close()

    def wait_task(self, upid, timeout=30.0):
        """Polls the task until it stops; its status object."""
        node = upid.split(":")[1]
        deadline = time.monotonic() + timeout
        quoted = urllib.parse.quote(upid, safe="")
        while True:
            st, reason, body = self.api("GET", "/nodes/%s/tasks/%s/status" % (node, quoted))
            if st != 200:
                raise PveFakeError("task status %s: %s %s" % (upid, st, reason))
            if body["data"]["status"] == "stopped":
                return body["data"]
            if time.monotonic() > deadline:
                raise PveFakeError("task %s still running after %ss" % (upid, timeout))
            time.sleep(0.05)

    def upload(self, node, storage, filename, data, content="vztmpl", token=None):
        """POST .../upload as multipart/form-data (content field, then the file part named
        'filename'). Returns (status, reason, body)."""
        boundary = "----runt-pvefake-%d" % time.monotonic_ns()
        head = ("--%s\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n%s\r\n"
                "--%s\r\nContent-Disposition: form-data; name=\"filename\"; "
                "filename=\"%s\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                % (boundary, content, boundary, filename)).encode()
        tail = ("\r\n--%s--\r\n" % boundary).encode()
        body = head + data + tail
        return self.api("POST", "/nodes/%s/storage/%s/upload" % (node, storage),
                        raw_body=body, token=token,
                        headers={"Content-Type": "multipart/form-data; boundary=" + boundary})


# --------------------------------------------------------------------------- OCI archives


def _tar_bytes(entries, compress):
    """A tar of @entries: [(path, kind, data_or_target, mode)] with kind 'file', 'dir',
    'symlink' or 'whiteout' (an empty '.wh.<name>' file)."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, kind, data, mode in entries:
            ti = tarfile.TarInfo(path)
            ti.mtime = 0
            ti.uid = ti.gid = 0
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = mode or 0o755
                tf.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                ti.mode = 0o777
                tf.addfile(ti)
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = data
                tf.addfile(ti)
            else:
                if kind == "whiteout":
                    data = b""
                ti.size = len(data)
                ti.mode = mode or 0o644
                tf.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    if compress:
        import gzip
        raw = gzip.compress(raw, mtime=0)
    return raw


def build_oci_archive(path, layers, config=None, gzip_layers=True, nested_index=False):
    """Writes an OCI image archive (an oci-layout directory as a tar, the shape `skopeo copy
    ... oci-archive:` makes and PVE's upload/create take) to @path. @layers: a list of entry
    lists for _tar_bytes, lowest first; @config: the image config's "config" object
    (Entrypoint, Cmd, Env, WorkingDir, User, StopSignal, ...). Returns the manifest digest."""
    import hashlib
    import io
    import tarfile

    blobs = {}

    def add(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return d, len(data)

    layer_descs = []
    diff_ids = []
    for entries in layers:
        plain = _tar_bytes(entries, False)
        diff_ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
        data = _tar_bytes(entries, True) if gzip_layers else plain
        d, n = add(data)
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar"
                            + ("+gzip" if gzip_layers else ""), "digest": d, "size": n})
    image_config = {"architecture": "amd64", "os": "linux", "config": config or {},
                    "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": []}
    cd, cn = add(json.dumps(image_config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": cd, "size": cn},
                "layers": layer_descs}
    md, mn = add(json.dumps(manifest).encode())
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
            "size": mn, "platform": {"architecture": "amd64", "os": "linux"}}
    if nested_index:
        inner = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [desc]}
        idd, idn = add(json.dumps(inner).encode())
        desc = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": idd,
                "size": idn}
    index = {"schemaVersion": 2, "manifests": [desc]}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        def put(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
        for name in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tf.addfile(ti)
        for d, data in blobs.items():
            put("blobs/sha256/" + d.split(":", 1)[1], data)
        put("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        put("index.json", json.dumps(index).encode())
    return md


def busybox_layer(busybox="/bin/busybox", applets=("sh", "ls", "cat", "echo", "sleep",
                                                    "httpd", "ip", "ifconfig", "nc", "ps",
                                                    "mkdir", "hostname", "env", "kill",
                                                    "true", "wget", "id", "pwd")):
    """Layer entries for a minimal image: a static busybox and symlinks for @applets."""
    with open(busybox, "rb") as f:
        data = f.read()
    entries = [("bin", "dir", None, 0o755), ("bin/busybox", "file", data, 0o755)]
    for a in applets:
        entries.append(("bin/" + a, "symlink", "busybox", None))
    for d in ("etc", "proc", "sys", "dev", "tmp", "root", "var", "run"):
        entries.append((d, "dir", None, 0o1777 if d == "tmp" else 0o755))
    entries.append(("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n", 0o644))
    entries.append(("etc/group", "file", b"root:x:0:\n", 0o644))
    return entries
