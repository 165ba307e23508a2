"""Local OCI registries and images for runt's tests, made without any download.

Plain helpers (no pytest in here), used by test/e2e and usable by hack/bench:

    reg = Registry(auth=("user", "pass")).start()       # docker-registry on 127.0.0.1:<free>
    lay = OciLayout.create()                             # umoci init in a temp dir
    lay.new_rootfs("base", busybox_rootfs)               # umoci new + unpack + repack
    lay.append_layer("base", layer_tar([...]), new_tag="multi")   # a hand-crafted layer
    lay.config("multi", user="1000", cmd=["/bin/sh"])    # umoci config
    digest = lay.push("base", reg.host, "base:latest")   # skopeo copy, manifest digest
    reg.stop(); lay.remove()

Every process runs with a timeout and talks only to 127.0.0.1. The tools are Debian's:
docker-registry, umoci, skopeo, htpasswd (apache2-utils), busybox-static.
"""

import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

DOCKER_REGISTRY = "/usr/bin/docker-registry"
UMOCI = "/usr/bin/umoci"
SKOPEO = "/usr/bin/skopeo"
HTPASSWD = "/usr/bin/htpasswd"
BUSYBOX = "/bin/busybox"

TOOL_TIMEOUT = 60
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"

# What busybox_rootfs links to /bin/busybox.
BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "id", "sleep", "true", "false", "env", "stat",
                   "mkdir", "rm", "touch", "test", "ps", "wc", "head")


def run(argv, timeout=TOOL_TIMEOUT, **kw):
    """subprocess.run with a timeout, raising with the tool's stderr on failure."""
    res = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({res.returncode}):\n"
                           f"{res.stdout}{res.stderr}")
    return res


def free_port():
    """A TCP port on 127.0.0.1 nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def sha256_digest(data):
    return "sha256:" + sha256_hex(data)


def chain_ids(diff_ids):
    """OCI chain ids ("sha256:...") of a list of diff ids, base layer first."""
    out = []
    for d in diff_ids:
        out.append(d if not out else sha256_digest(f"{out[-1]} {d}".encode("ascii")))
    return out


def _no_proxy_opener():
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url, timeout=2.0, headers=None):
    """The HTTP status of GET @url (no proxy), or None when nothing answers."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with _no_proxy_opener().open(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


# --------------------------------------------------------------------------- registries


class Registry:
    """Debian's docker-registry on 127.0.0.1:<free port>, plain HTTP, storage in a temp dir.

    auth=(user, password) turns on htpasswd (bcrypt) authentication. The registry's log
    (its access log included) goes to .log_path; count requests with .count().
    """

    def __init__(self, auth=None, port=None, base=None):
        self.auth = auth
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.base = Path(base or tempfile.mkdtemp(prefix="runt-registry-", dir="/tmp"))
        self.storage = self.base / "storage"
        self.config_path = self.base / "config.yml"
        self.log_path = self.base / "registry.log"
        self.proc = None
        self._log = None

    def _config(self):
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.host}",
            "  secret: runt-e2e-not-a-secret",
        ]
        if self.auth:
            user, password = self.auth
            htpasswd = self.base / "htpasswd"
            out = run([HTPASSWD, "-Bbn", user, password]).stdout
            htpasswd.write_text(out.strip() + "\n")
            lines += ["auth:", "  htpasswd:", "    realm: runt-e2e", f"    path: {htpasswd}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout=15.0):
        self.storage.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config())
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        want = (401,) if self.auth else (200,)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}:\n"
                                   + self.log_text()[-3000:])
            if http_status(self.url + "/v2/", timeout=1.0) in want:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry on {self.host} not ready after {timeout}s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log:
            self._log.close()
            self._log = None
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- introspection

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_offset(self):
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def access_lines(self, since=0):
        """The access-log request lines ("GET /v2/... HTTP/1.1") written after @since bytes."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            # 127.0.0.1 - - [date] "GET /v2/x/blobs/sha256:... HTTP/1.1" 200 123 "" "ua"
            if line.startswith("127.0.0.1 ") and '"' in line:
                out.append(line.split('"')[1])
        return out

    def count(self, method, path, since=0):
        """How many @method requests for exactly @path (e.g. /v2/x/blobs/sha256:..)."""
        return sum(1 for l in self.access_lines(since)
                   if l.split(" ")[:2] == [method, path])

    def blob_path(self, digest):
        algo, hexd = digest.split(":", 1)
        blobs = self.storage / "docker" / "registry" / "v2" / "blobs"
        return blobs / algo / hexd[:2] / hexd / "data"

    def corrupt_blob(self, digest):
        """Flips bytes of a stored blob in place (same size), so that what the registry
        serves no longer matches @digest. skopeo refuses to push such a blob; writing the
        storage directly is the only way to make one."""
        p = self.blob_path(digest)
        data = bytearray(p.read_bytes())
        for i in range(len(data) // 2, min(len(data), len(data) // 2 + 16)):
            data[i] ^= 0xFF
        p.write_bytes(bytes(data))


class StallingRegistry:
    """An HTTP server on 127.0.0.1 that answers GET /v2/ with 200 and then never answers
    anything else: each other request sleeps until .stop() (or @stall seconds)."""

    def __init__(self, stall=60.0):
        self.stall = stall
        self.stopping = threading.Event()
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                outer.requests.append(f"{self.command} {self.path}")
                if self.path in ("/v2/", "/v2"):
                    body = b"{}"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return
                outer.stopping.wait(outer.stall)
                self.close_connection = True

            do_GET = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------- layers


class Entry:
    """One tar member of a hand-crafted layer. kind: file, dir, symlink, hardlink, raw."""

    def __init__(self, name, kind="file", data=b"", mode=None, uid=0, gid=0, target="",
                 xattrs=None, mtime=1700000000):
        self.name, self.kind, self.data, self.target = name, kind, data, target
        self.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
        self.uid, self.gid, self.xattrs, self.mtime = uid, gid, xattrs or {}, mtime

    def tarinfo(self):
        ti = tarfile.TarInfo(self.name)
        ti.mode, ti.uid, ti.gid, ti.mtime = self.mode, self.uid, self.gid, self.mtime
        ti.uname = ti.gname = ""
        data = None
        if self.kind == "file":
            ti.type, ti.size, data = tarfile.REGTYPE, len(self.data), io.BytesIO(self.data)
        elif self.kind == "dir":
            ti.type = tarfile.DIRTYPE
        elif self.kind == "symlink":
            ti.type, ti.linkname = tarfile.SYMTYPE, self.target
        elif self.kind == "hardlink":
            ti.type, ti.linkname = tarfile.LNKTYPE, self.target
        else:
            raise ValueError(self.kind)
        if self.xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in self.xattrs.items()}
        return ti, data


def File(name, data=b"", **kw):
    return Entry(name, "file", data=data if isinstance(data, bytes) else data.encode(), **kw)


def Dir(name, **kw):
    return Entry(name, "dir", **kw)


def Symlink(name, target, **kw):
    return Entry(name, "symlink", target=target, **kw)


def Hardlink(name, target, **kw):
    return Entry(name, "hardlink", target=target, **kw)


def Whiteout(path):
    """The entry deleting @path (a file or dir of a lower layer): DIR/.wh.NAME."""
    d, _, n = path.rstrip("/").rpartition("/")
    return File((d + "/" if d else "") + ".wh." + n, b"")


def Opaque(dirpath):
    """The entry hiding every lower-layer entry of @dirpath: DIR/.wh..wh..opq."""
    return File(dirpath.rstrip("/") + "/.wh..wh..opq", b"")


def layer_tar(entries):
    """Uncompressed tar bytes (PAX) of @entries, in order, names exactly as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti, data = e.tarinfo()
            tf.addfile(ti, data)
    return buf.getvalue()


def gzip_bytes(data):
    return gzip.compress(data, compresslevel=6, mtime=0)


def busybox_rootfs(rootfs, extra=None):
    """Fills @rootfs with /bin/busybox (Debian's busybox-static), applet symlinks, a minimal
    /etc and the test files base images carry. @extra: {relative path: bytes}."""
    rootfs = Path(rootfs)
    for d in ("bin", "etc", "tmp", "data", "opq/sub"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    os.chmod(rootfs / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    os.chmod(rootfs / "bin" / "busybox", 0o755)
    for a in BUSYBOX_APPLETS:
        link = rootfs / "bin" / a
        if not link.is_symlink():
            link.symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "user:x:1000:1000:user:/home/user:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")
    (rootfs / "etc" / "hostname").write_text("runt-e2e\n")
    (rootfs / "data" / "keep").write_text("keep\n")
    (rootfs / "data" / "remove-me").write_text("bye\n")
    (rootfs / "opq" / "old1").write_text("old1\n")
    (rootfs / "opq" / "sub" / "old2").write_text("old2\n")
    for rel, data in (extra or {}).items():
        p = rootfs / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


# --------------------------------------------------------------------------- OCI layouts


class OciLayout:
    """An OCI image layout directory built with umoci, tags named by ref.name annotation."""

    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def create(cls, parent=None):
        base = Path(tempfile.mkdtemp(prefix="runt-oci-", dir=parent or "/tmp"))
        lay = cls(base / "layout")
        run([UMOCI, "init", "--layout", lay.path])
        return lay

    def remove(self):
        shutil.rmtree(self.path.parent, ignore_errors=True)

    def ref(self, tag):
        return f"{self.path}:{tag}"

    # -- umoci

    def new_rootfs(self, tag, populate):
        """umoci new TAG, unpack, populate(rootfs_path), repack: an image with one layer."""
        run([UMOCI, "new", "--image", self.ref(tag)])
        self.add_rootfs_layer(tag, populate)

    def add_rootfs_layer(self, tag, populate, new_tag=None):
        """unpack TAG, populate(rootfs_path) changes it, repack as NEW_TAG (default TAG):
        one new layer with the diff (umoci writes file whiteouts for deletions)."""
        bundle = Path(tempfile.mkdtemp(prefix="bundle-", dir=self.path.parent))
        bundle.rmdir()
        try:
            run([UMOCI, "unpack", "--image", self.ref(tag), bundle])
            populate(bundle / "rootfs")
            if new_tag and new_tag != tag:
                run([UMOCI, "tag", "--image", self.ref(tag), new_tag])
            run([UMOCI, "repack", "--image", self.ref(new_tag or tag), bundle])
        finally:
            shutil.rmtree(bundle, ignore_errors=True)

    def config(self, tag, new_tag=None, user=None, cmd=None, entrypoint=None, env=(),
               workdir=None, labels=None, clear=()):
        """umoci config on TAG (writes NEW_TAG when given, else replaces TAG)."""
        argv = [UMOCI, "config", "--image", self.ref(tag)]
        if new_tag:
            argv += ["--tag", new_tag]
        for c in clear:
            argv += ["--clear", c]
        if user is not None:
            argv += ["--config.user", user]
        for c in cmd or ():
            argv += ["--config.cmd", c]
        for c in entrypoint or ():
            argv += ["--config.entrypoint", c]
        for e in env:
            argv += ["--config.env", e]
        if workdir is not None:
            argv += ["--config.workingdir", workdir]
        for k, v in (labels or {}).items():
            argv += ["--config.label", f"{k}={v}"]
        run(argv)

    def tag(self, tag, new_tag):
        run([UMOCI, "tag", "--image", self.ref(tag), new_tag])

    # -- raw layout access

    def blob_path(self, digest):
        algo, hexd = digest.split(":", 1)
        return self.path / "blobs" / algo / hexd

    def read_blob(self, digest):
        return self.blob_path(digest).read_bytes()

    def write_blob(self, data):
        d = sha256_digest(data)
        p = self.blob_path(d)
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_bytes(data)
        return d

    def index(self):
        return json.loads((self.path / "index.json").read_text())

    def _write_index(self, idx):
        tmp = self.path / "index.json.tmp"
        tmp.write_text(json.dumps(idx))
        os.replace(tmp, self.path / "index.json")

    def manifest_desc(self, tag):
        for m in self.index().get("manifests", []):
            if m.get("annotations", {}).get(REF_NAME) == tag:
                return m
        raise KeyError(f"no tag {tag} in {self.path}")

    def manifest_digest(self, tag):
        return self.manifest_desc(tag)["digest"]

    def manifest(self, tag):
        return json.loads(self.read_blob(self.manifest_digest(tag)))

    def config_digest(self, tag):
        """The image id: the digest of the config blob."""
        return self.manifest(tag)["config"]["digest"]

    def image_config(self, tag):
        return json.loads(self.read_blob(self.config_digest(tag)))

    def diff_ids(self, tag):
        return list(self.image_config(tag)["rootfs"]["diff_ids"])

    def chain_ids(self, tag):
        return chain_ids(self.diff_ids(tag))

    def layer_digests(self, tag):
        return [l["digest"] for l in self.manifest(tag)["layers"]]

    def blob_digests(self, tag):
        """Config and layer blob digests of TAG (what a pull GETs from /blobs/)."""
        return [self.config_digest(tag)] + self.layer_digests(tag)

    def set_tag(self, tag, manifest_bytes):
        """Points TAG at a manifest (written as a blob), replacing what TAG was."""
        d = self.write_blob(manifest_bytes)
        idx = self.index()
        ms = [m for m in idx.get("manifests", [])
              if m.get("annotations", {}).get(REF_NAME) != tag]
        ms.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d,
                   "size": len(manifest_bytes), "annotations": {REF_NAME: tag}})
        idx["manifests"] = ms
        self._write_index(idx)
        return d

    def append_layer(self, tag, tar_bytes, new_tag=None, compress=True, created_by=None):
        """Appends a hand-crafted layer (uncompressed tar @tar_bytes) to TAG's image and
        saves the result as NEW_TAG (default: TAG). Writes the (gzip) blob, the config with
        rootfs.diff_ids += sha256(tar) and a history entry, the manifest, index.json.
        Returns the new manifest digest."""
        manifest = self.manifest(tag)
        config = self.image_config(tag)
        blob = gzip_bytes(tar_bytes) if compress else tar_bytes
        layer_digest = self.write_blob(blob)
        config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        config["rootfs"].setdefault("diff_ids", []).append(sha256_digest(tar_bytes))
        config.setdefault("history", []).append({
            "created": "2024-01-01T00:00:00Z",
            "created_by": created_by or "runt-e2e: hand-crafted layer",
        })
        config_bytes = json.dumps(config).encode()
        manifest["config"] = {"mediaType": manifest["config"]["mediaType"],
                              "digest": self.write_blob(config_bytes),
                              "size": len(config_bytes)}
        manifest.setdefault("layers", []).append({
            "mediaType": LAYER_GZIP if compress else LAYER_TAR,
            "digest": layer_digest, "size": len(blob)})
        return self.set_tag(new_tag or tag, json.dumps(manifest).encode())

    # -- skopeo

    def push(self, tag, host, dest, creds=None, timeout=TOOL_TIMEOUT):
        """skopeo copy oci:LAYOUT:TAG docker://HOST/DEST over plain HTTP; returns the
        manifest digest as pushed ("sha256:...")."""
        dfile = self.path.parent / f"digest-{os.getpid()}-{time.monotonic_ns()}"
        argv = [SKOPEO, "--insecure-policy", "copy", "--quiet", "--preserve-digests",
                "--dest-tls-verify=false",
                "--digestfile", dfile]
        if creds:
            argv += ["--dest-creds", f"{creds[0]}:{creds[1]}"]
        argv += [f"oci:{self.path}:{tag}", f"docker://{host}/{dest}"]
        run(argv, timeout=timeout, env=skopeo_env())
        try:
            return dfile.read_text().strip()
        finally:
            dfile.unlink()


def busybox_image(layout, tag="busybox", extra=None, **config):
    """A one-layer busybox image TAG in @layout (umoci), config from @config (see
    OciLayout.config; default cmd /bin/sh). Returns the image id (config digest)."""
    layout.new_rootfs(tag, lambda rootfs: busybox_rootfs(rootfs, extra))
    config.setdefault("cmd", ["/bin/sh"])
    config.setdefault("env", ["PATH=/bin"])
    layout.config(tag, **config)
    return layout.config_digest(tag)


def skopeo_env():
    """The environment for skopeo: no proxy for anything, an empty auth file."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def skopeo_fetch(ref, dest_dir, creds=None, timeout=TOOL_TIMEOUT):
    """skopeo copy docker://REF dir:DEST (to check what a registry serves)."""
    argv = [SKOPEO, "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false"]
    if creds:
        argv += ["--src-creds", f"{creds[0]}:{creds[1]}"]
    run(argv + [f"docker://{ref}", f"dir:{dest_dir}"], timeout=timeout, env=skopeo_env())


def skopeo_inspect_raw(ref, creds=None, timeout=TOOL_TIMEOUT):
    argv = [SKOPEO, "--insecure-policy", "inspect", "--raw", "--tls-verify=false"]
    if creds:
        argv += ["--creds", f"{creds[0]}:{creds[1]}"]
    return run(argv + [f"docker://{ref}"], timeout=timeout, env=skopeo_env()).stdout


# --------------------------------------------------------------------------- files


def walk_files(top):
    """Every regular file under @top (not following symlinks)."""
    for dirpath, dirnames, filenames in os.walk(top):
        for n in filenames:
            p = Path(dirpath) / n
            try:
                if stat.S_ISREG(p.lstat().st_mode):
                    yield p
            except FileNotFoundError:
                pass


def find_names(top, names):
    """Paths under @top (any type, symlinks not followed) whose basename is in @names."""
    names = set(names)
    hits = []
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            if n in names:
                hits.append(str(Path(dirpath) / n))
    return hits
