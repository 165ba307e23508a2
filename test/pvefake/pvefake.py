#!/usr/bin/python3
"""A fake Proxmox VE API server, for testing runt's Proxmox backend without a PVE cluster.

It answers the part of the PVE REST API runt uses (../shared/notes/proxmox-api.md, sections 1,
2, 5 and 6) over HTTPS with the shapes, status lines and error texts of the real server
(pve-http-server, pve-manager, pve-container, pve-storage, pve-common), and validates every
request against pve-schema.json, a subset of the published API schema (see make_schema.py).
A plain-HTTP control server beside it lets tests inject faults and inspect the state.

With --run-cts, starting a CT made from an uploaded OCI archive really runs it as an LXC
container on this machine (needs root and the lxc tools).

Python standard library only. Run with /usr/bin/python3:

    /usr/bin/python3 test/pvefake/pvefake.py --dir DIR [--port 0] [--nodes node1,node2,node3]
        [--token 'root@pam!runt=SECRET' ...] [--old-errors] [--auth-delay SEC]
        [--task-delay SEC] [--run-cts] [--bridge vmbr0=10.88.7.1/24 ...]

When ready it prints one JSON line to stdout (port, control port, CA paths, the server
certificate's SHA-256 fingerprint, the first token). SIGTERM or SIGINT stops it.
"""

import argparse
import gzip
import hashlib
import http.server
import ipaddress
import json
import mmap
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_FILE = os.path.join(HERE, "pve-schema.json")

API_BASE = "/api2/json"
VERSION = {"version": "9.1.1", "release": "9.1", "repoid": "2d6b4e0a"}
MAC_PREFIX = "BC:24:11"            # datacenter.cfg mac_prefix default
LIMIT_MAX_POST = 512 * 1024        # pve-http-server $limit_max_post
GIB = 1024 ** 3
MIB = 1024 ** 2

# pve-container's limits on indexed config keys (net0..net31, mp0..mp255, ...)
INDEXED_KEYS = {"net": 32, "mp": 256, "unused": 256, "dev": 256}

UPID_RE = re.compile(
    r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
    r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$")
VOLID_RE = re.compile(r"^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$", re.I | re.S)
VZTMPL_RE = re.compile(r"^vztmpl/([^/]+\.(?:(tar)(?!\.)|tar\.(gz|xz|zst|bz2)))$", re.I)
VZTMPL_EXT_RE = re.compile(r"[^/]+\.(?:(tar)(?!\.)|tar\.(gz|xz|zst|bz2))$", re.I)
ISO_EXT_RE = re.compile(r"[^/]+\.(?:iso|img)$", re.I)
LVM_VOL_RE = re.compile(r"^(vm|base)-(\d+)-disk-(\d+)$")


class PVEError(Exception):
    """An API error as pve-http-server sends it: status, message (the reason phrase is its
    first line), optional per-parameter errors."""

    def __init__(self, status, message, errors=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


class Die(PVEError):
    """A plain Perl `die` in a handler: 500 with the text."""

    def __init__(self, message):
        super().__init__(500, message if message.endswith("\n") else message + "\n")


class ParamError(PVEError):
    """raise_param_exc: 400 Parameter verification failed."""

    def __init__(self, errors):
        super().__init__(400, "Parameter verification failed.\n", errors)


class TaskError(Exception):
    """A task's failure; the text becomes its exitstatus (TASK ERROR: <text>)."""


# --------------------------------------------------------------------------- schema checks
# After pve-common src/PVE/JSONSchema.pm (check_prop, check_type, check_object,
# parse_property_string) and the formats registered there and in pve-storage/pve-container.


class FormatError(Exception):
    pass


def perl_re(pattern):
    """A Perl regex from the schema as a Python one ((?^:...) is Perl's default-flags group)."""
    return pattern.replace("(?^:", "(?:")


def perl_str(v):
    """How Perl would print a scalar from decoded JSON or a form."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def nulled(v, keys):
    """@v with the members named in @keys set to null, in objects at any depth (the
    null_fields fault: a PVE reply may hold a null where a string is expected)."""
    if isinstance(v, dict):
        return {k: None if k in keys else nulled(x, keys) for k, x in v.items()}
    if isinstance(v, list):
        return [nulled(x, keys) for x in v]
    return v


def perl_ref(v):
    if isinstance(v, bool):
        return "JSON::PP::Boolean"
    if isinstance(v, list):
        return "ARRAY"
    if isinstance(v, dict):
        return "HASH"
    return None


def is_number(s):
    return re.match(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$", s) is not None


def is_integer(s):
    return re.match(r"^[+-]?\d+$", s) is not None


def split_list(text):
    """PVE::Tools::split_list."""
    if "\0" in text:
        return [x for x in text.split("\0") if x != ""]
    return [x for x in re.split(r"[,;\s]+", text) if x != ""]


def parse_size(value):
    m = re.match(r"^(\d+(\.\d+)?)([KMGT](?:iB)?)?$", value)
    if not m:
        return None
    size = float(m.group(1))
    unit = (m.group(3) or "")[:1]
    return int(size * {"": 1, "K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}[unit])


def fmt_ipv4(v):
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        raise FormatError("value does not look like a valid IPv4 address\n")


def fmt_ipv6(v):
    try:
        ipaddress.IPv6Address(v)
    except ValueError:
        raise FormatError("value does not look like a valid IPv6 address\n")


def cidr_ok(v, version, lo, hi):
    if "/" not in v:
        return False
    addr, plen = v.split("/", 1)
    if not plen.isdigit() or not lo <= int(plen) <= hi:
        return False
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ipaddress.ip_address(addr).version == version


def fmt_ipv4_config(v):
    if v in ("dhcp", "manual") or cidr_ok(v, 4, 8, 32):
        return
    raise FormatError("value does not look like a valid ipv4 network configuration\n")


def fmt_ipv6_config(v):
    if v in ("auto", "dhcp", "manual") or cidr_ok(v, 6, 8, 128):
        return
    raise FormatError("value does not look like a valid ipv6 network configuration\n")


def fmt_vmid(v):
    if not re.match(r"^[1-9][0-9]{2,8}$", v):
        raise FormatError("value does not look like a valid VM ID\n")


def fmt_node(v):
    if not re.match(r"^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$", v):
        raise FormatError("value does not look like a valid node name\n")


def fmt_dns_name(v):
    name = r"([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)"
    if not re.match(r"^(%s\.)*%s$" % (name, name), v):
        raise FormatError("value does not look like a valid DNS name\n")


def fmt_storage_id(v):
    if len(v) < 2:
        raise FormatError("storage ID '%s' cannot be shorter than 2 characters\n" % v)
    if not re.match(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", v, re.I):
        raise FormatError("storage ID '%s' contains illegal characters\n" % v)


def fmt_configid(v):
    if not re.match(r"^[a-z][a-z0-9_-]+$", v, re.I):
        raise FormatError("invalid configuration ID '%s'\n" % v)


def fmt_mac(v):
    if not re.match(r"^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$", v, re.I):
        raise FormatError("value does not look like a valid unicast MAC address\n")


def fmt_disk_size(v):
    if parse_size(v) is None:
        raise FormatError("value does not look like a valid disk size: %s\n" % v)


def fmt_tag(v):
    if not re.match(r"^[a-z0-9_][a-z0-9_\-+.]*$", v, re.I):
        raise FormatError("invalid characters in tag\n")


def fmt_volume_id(v):
    if not VOLID_RE.match(v):
        raise FormatError("unable to parse volume ID '%s'\n" % v)


STORAGE_CONTENT = ("images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import")


def fmt_storage_content(v):
    if v not in STORAGE_CONTENT:
        raise FormatError("invalid content type '%s'\n" % v)


def fmt_poolid(v):
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_\-]+(/[A-Za-z0-9_][A-Za-z0-9_\-]+){0,2}$", v):
        raise FormatError("invalid pool ID '%s'\n" % v)


def listed(check):
    def run(v):
        for item in split_list(v):
            check(item)
    return run


FORMATS = {
    "ipv4": fmt_ipv4,
    "ipv6": fmt_ipv6,
    "pve-ipv4-config": fmt_ipv4_config,
    "pve-ipv6-config": fmt_ipv6_config,
    "pve-vmid": fmt_vmid,
    "pve-node": fmt_node,
    "dns-name": fmt_dns_name,
    "pve-storage-id": fmt_storage_id,
    "pve-configid": fmt_configid,
    "mac-addr": fmt_mac,
    "disk-size": fmt_disk_size,
    "pve-tag": fmt_tag,
    "pve-volume-id": fmt_volume_id,
    "pve-storage-content": fmt_storage_content,
    "pve-poolid": fmt_poolid,
}


def check_format(fmt, value, path):
    if isinstance(fmt, dict):
        parse_property_string(fmt, value, path)
        return
    m = re.match(r"^(.*?)(?:-(list|opt))?$", fmt)
    name, kind = m.group(1), m.group(2)
    check = FORMATS.get(name)
    if check is None:
        return       # a format this fake does not model (startup order, timezone, ...)
    if kind == "list":
        listed(check)(value)
    elif kind == "opt":
        if value:
            check(value)
    else:
        check(value)


def parse_property_string(fmt, value, path):
    """parse_property_string: `k=v,k=v` (plus the default key's bare value) against @fmt."""
    res = {}
    default_key = None
    for part in value.split(","):
        if part == "":
            continue
        m = re.match(r"^([a-z][a-z_\-]*)=(.*)$", part, re.I)
        if m:
            k, v = m.group(1), m.group(2)
            if k in res:
                raise FormatError("duplicate key in comma-separated list property: %s\n" % k)
            if k not in fmt:
                raise FormatError("invalid key in comma-separated list property: %s\n" % k)
            res[k] = v
        elif "=" not in part:
            if default_key:
                raise FormatError("duplicate key in comma-separated list property: %s\n"
                                  % default_key)
            for k, sub in fmt.items():
                if sub.get("default_key"):
                    default_key = k
                    if k in res:
                        raise FormatError(
                            "duplicate key in comma-separated list property: %s\n" % k)
                    res[k] = part
                    break
            if not default_key:
                raise FormatError("value without key, but schema does not define a default "
                                  "key\n")
        else:
            raise FormatError("missing key in comma-separated list property\n")
    errors = {}
    check_object(path, fmt, res, 0, errors)
    if errors:
        text = "format error\n" + "".join("%s: %s\n" % (k, v) for k, v in errors.items())
        raise FormatError(text)
    return res


def add_error(errors, path, msg):
    path = path or "_root"
    if path in errors:
        errors[path] = errors[path] + "\\n" + msg    # Perl's join('\n', ...): a literal \n
    else:
        errors[path] = msg


def check_type(path, typ, value, errors):
    if not typ or typ == "any":
        return True
    ref = perl_ref(value)
    if typ in ("array", "object"):
        want = "ARRAY" if typ == "array" else "HASH"
        if ref != want:
            add_error(errors, path, "type check ('%s') failed" % typ)
            return False
        return True
    if ref:
        if typ == "boolean" and isinstance(value, bool):
            return True
        add_error(errors, path, "type check ('%s') failed - got %s" % (typ, ref))
        return False
    s = perl_str(value)
    if typ == "boolean" and s not in ("0", "1"):
        add_error(errors, path, "type check ('%s') failed - got '%s'" % (typ, s))
        return False
    if typ == "integer" and not is_integer(s):
        add_error(errors, path, "type check ('%s') failed - got '%s'" % (typ, s))
        return False
    if typ == "number" and not is_number(s):
        add_error(errors, path, "type check ('%s') failed - got '%s'" % (typ, s))
        return False
    return True


def num_text(n):
    return perl_str(n)


def check_prop(value, schema, path, errors):
    if value is None:
        if not schema.get("optional"):
            add_error(errors, path, "property is missing and it is not optional")
        return
    if not check_type(path, schema.get("type"), value, errors):
        return
    if perl_ref(value) and not isinstance(value, bool):
        return
    s = perl_str(value)
    fmt = schema.get("format")
    if fmt:
        try:
            check_format(fmt, s, path)
        except FormatError as e:
            add_error(errors, path, "invalid format - %s" % e)
            return
    pattern = schema.get("pattern")
    if pattern and not re.fullmatch(perl_re(pattern), s, re.S):
        add_error(errors, path, "value does not match the regex pattern")
        return
    if "maxLength" in schema and len(s) > int(schema["maxLength"]):
        add_error(errors, path, "value may only be %s characters long" % schema["maxLength"])
        return
    if "minLength" in schema and len(s) < int(schema["minLength"]):
        add_error(errors, path, "value must be at least %s characters long"
                  % schema["minLength"])
        return
    if is_number(s):
        if "maximum" in schema and float(s) > float(schema["maximum"]):
            add_error(errors, path, "value must have a maximum value of %s"
                      % num_text(schema["maximum"]))
            return
        if "minimum" in schema and float(s) < float(schema["minimum"]):
            add_error(errors, path, "value must have a minimum value of %s"
                      % num_text(schema["minimum"]))
            return
    if "enum" in schema and s not in schema["enum"]:
        add_error(errors, path, "value '%s' does not have a value in the enumeration '%s'"
                  % (s, ", ".join(schema["enum"])))


def check_object(path, props, value, additional, errors):
    for k, sub in props.items():
        check_prop(value.get(k), sub, "%s.%s" % (path, k) if path else k, errors)
    for k in value:
        newpath = "%s.%s" % (path, k) if path else k
        sub = props.get(k)
        if sub is not None:
            req = sub.get("requires")
            if isinstance(req, str) and value.get(req) is None:
                add_error(errors, "%s.%s" % (path, req) if path else req,
                          "missing property required by '%s'" % newpath)
            continue
        if not additional:
            add_error(errors, newpath, "property is not defined in schema and the schema "
                      "does not allow additional properties")


class Schema:
    """pve-schema.json: routes and parameter schemas."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        self.source = data.get("source")
        self.routes = []          # (template, [segments], {method: info})
        for tmpl, methods in data["paths"].items():
            for info in methods.values():
                info["parameters"] = self._expand(info["parameters"])
            self.routes.append((tmpl, tmpl.strip("/").split("/"), methods))

    @staticmethod
    def _expand(params):
        out = {}
        for name, sub in params.items():
            m = re.match(r"^(\w+)\[n\]$", name)
            if m:
                for i in range(INDEXED_KEYS.get(m.group(1), 10)):
                    out["%s%d" % (m.group(1), i)] = sub
            else:
                out[name] = sub
        return out

    def find(self, method, rel):
        """(template, info, uri_params) or None, as PVE::RESTHandler::find_handler. The
        storage content {volume} takes the rest of the path (fragmentDelimiter '')."""
        comps = [c for c in rel.split("/") if c]
        for tmpl, segs, methods in self.routes:
            params = {}
            ok = True
            i = 0
            for j, seg in enumerate(segs):
                if i >= len(comps):
                    ok = False
                    break
                m = re.match(r"^\{([\w-]+)\}$", seg)
                if m:
                    if m.group(1) == "volume" and j == len(segs) - 1:
                        params["volume"] = "/".join(comps[i:])
                        i = len(comps)
                        continue
                    if not re.match(r"^\S+$", comps[i]):
                        ok = False
                        break
                    params[m.group(1)] = comps[i]
                elif seg != comps[i]:
                    ok = False
                    break
                i += 1
            if ok and i == len(comps) and method in methods:
                return tmpl, methods[method], params
        return None


def validate(info, params):
    errors = {}
    check_object("", info["parameters"], params, info.get("additionalProperties"), errors)
    if errors:
        raise ParamError(errors)


# --------------------------------------------------------------------------- helpers


def ct_volume_is_oci(path):
    """pve-container archive_is_oci_format: a plain .tar with oci-layout, index.json, blobs/."""
    if not path.endswith(".tar") or not os.path.isfile(path):
        return False
    try:
        with tarfile.open(path, "r:") as tf:
            names = set()
            blobs = False
            for m in tf:
                n = m.name[2:] if m.name.startswith("./") else m.name
                names.add(n)
                blobs = blobs or n.startswith("blobs/")
            return "oci-layout" in names and "index.json" in names and blobs
    except (tarfile.TarError, OSError):
        return False


def shell_quote(arg):
    """String::ShellQuote::shell_quote, as PVE::Tools::cmd2string uses it."""
    if arg == "":
        return "''"
    if re.match(r"^[\w!%+,\-./:=@^]+$", arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


def random_mac():
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFE) | 2
    mac = ":".join("%02X" % x for x in b)
    return MAC_PREFIX + mac[len(MAC_PREFIX):]


def print_property_string(data, fmt):
    """print_property_string: default key, then required keys, then the rest, sorted."""
    out = []
    done = set()
    default_key = next((k for k, s in fmt.items() if s.get("default_key")), None)

    def add(k, bare=False):
        if k in done or data.get(k) is None:
            return
        done.add(k)
        out.append(str(data[k]) if bare else "%s=%s" % (k, data[k]))

    if default_key:
        add(default_key, True)
    for k in sorted(data):
        if k in fmt and not fmt[k].get("optional"):
            add(k)
    for k in sorted(data):
        add(k)
    return ",".join(out)


def ll_ipv6(mac):
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 2
    eui = b[:3] + [0xFF, 0xFE] + b[3:]
    groups = ["%x" % (eui[i] << 8 | eui[i + 1]) for i in range(0, 8, 2)]
    return str(ipaddress.IPv6Address("fe80::" + ":".join(groups)))


class OCIError(Exception):
    pass


def oci_read_image(path):
    """(config dict, [layer (digest, mediaType)]) of the OCI archive at @path; the tar is an
    oci-layout directory (index.json -> manifest, possibly through a nested index)."""
    with tarfile.open(path, "r:") as tf:
        def blob(digest):
            algo, _, hexd = digest.partition(":")
            for name in ("blobs/%s/%s" % (algo, hexd), "./blobs/%s/%s" % (algo, hexd)):
                try:
                    f = tf.extractfile(name)
                except KeyError:
                    continue
                if f is not None:
                    return f.read()
            raise OCIError("blob %s missing from the archive" % digest)

        try:
            idx = tf.extractfile("index.json")
        except KeyError:
            idx = tf.extractfile("./index.json")
        doc = json.loads(idx.read())
        for _ in range(4):
            manifests = doc.get("manifests")
            if not manifests:
                break
            pick = manifests[0]
            for m in manifests:
                plat = m.get("platform") or {}
                if plat.get("architecture") == "amd64" and plat.get("os") == "linux":
                    pick = m
                    break
            doc = json.loads(blob(pick["digest"]))
        if "config" not in doc or "layers" not in doc:
            raise OCIError("no image manifest in the archive")
        config = json.loads(blob(doc["config"]["digest"]))
        layers = [(ly["digest"], ly.get("mediaType", "")) for ly in doc["layers"]]
        return config, layers


# --------------------------------------------------------------------------- state


class Task:
    def __init__(self, fake, node, ttype, tid, user, work):
        self.fake = fake
        self.node = node
        self.type = ttype
        self.id = tid
        self.user = user
        self.pid = fake.next_pid()
        self.pstart = int(time.monotonic() * 100) + 1000000
        self.starttime = int(time.time())
        self.upid = "UPID:%s:%08X:%08X:%08X:%s:%s:%s:" % (
            node, self.pid, self.pstart, self.starttime, ttype, tid, user)
        self.status = "running"
        self.exitstatus = None
        self.t0 = time.monotonic()
        self.t1 = None
        self.log = []
        self.cancel = threading.Event()
        self.work = work
        self.injected = fake.take_task_failure(ttype)
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name="task-%s-%s" % (ttype, tid))

    def say(self, line):
        with self.fake.lock:
            self.log.extend(str(line).rstrip("\n").split("\n"))

    def sleep(self, seconds):
        """Waits @seconds; a DELETE of the task interrupts it (SIGTERM in a real worker)."""
        if seconds > 0 and self.cancel.wait(seconds):
            raise TaskError("received interrupt")
        if self.cancel.is_set():
            raise TaskError("received interrupt")

    def delay(self):
        self.sleep(self.fake.cfg["task_delay"])

    def check_injected(self):
        if self.injected is not None:
            raise TaskError(self.injected)

    def _run(self):
        try:
            self.work(self)
            status = "OK"
        except TaskError as e:
            status = str(e).rstrip("\n")
        except Exception as e:     # a bug in the fake: still end the task
            status = "internal error in pvefake: %r" % (e,)
        with self.fake.lock:
            self.log.append("TASK OK" if status == "OK" else "TASK ERROR: " + status)
            self.exitstatus = status
            self.status = "stopped"
            self.t1 = time.monotonic()
            self.fake.changed.notify_all()

    def status_json(self):
        d = {"upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
             "starttime": self.starttime, "type": self.type, "id": self.id,
             "user": self.user, "status": self.status}
        if "!" in self.user:
            d["user"], d["tokenid"] = self.user.split("!", 1)
        if self.status == "stopped":
            d["exitstatus"] = self.exitstatus
        return d


class CT:
    def __init__(self, vmid, node, config, status="stopped"):
        self.vmid = vmid
        self.node = node
        self.config = config            # key -> str (as the config file has it)
        self.lxc = []                   # raw [key, value] entries
        self.status = status
        self.started = time.time() if status == "running" else None
        self.pid = None
        self.flock = threading.Lock()   # /run/lock/lxc/pve-config-<vmid>.lock
        self.runner = None              # --run-cts: the real container

    def config_text(self):
        lines = []
        for k in sorted(self.config):
            if k == "env":
                continue
            lines.append("%s: %s" % (k, self.config[k]))
        for var in (self.config.get("env") or "").split("\0"):
            if var:
                lines.append("lxc.environment.runtime: %s" % var)
        for k, v in self.lxc:
            lines.append("%s: %s" % (k, v))
        return "\n".join(lines) + "\n"

    def digest(self):
        return hashlib.sha1(self.config_text().encode()).hexdigest()


class Fake:
    def __init__(self, args):
        self.dir = os.path.abspath(args.dir)
        self.nodes = [n for n in args.nodes.split(",") if n]
        self.tokens = {}
        for t in args.token or []:
            tid, _, secret = t.rpartition("=")
            self.tokens[tid] = secret
        if not self.tokens:
            self.tokens["root@pam!runt"] = str(uuid.uuid4())
        self.first_token = "%s=%s" % next(iter(self.tokens.items()))
        self.cfg = {"old_errors": bool(args.old_errors), "auth_delay": float(args.auth_delay),
                    "task_delay": float(args.task_delay), "latency": 0.0,
                    "lock_timeout": 10.0, "node_mem": {}, "null_fields": []}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.online = {n: True for n in self.nodes}
        self.cts = {}
        self.tasks = {}
        self.task_order = []
        self.calls = []
        self.fail_rules = []
        self.task_fail_rules = []
        self.nextid_stale = 0
        self.pid_counter = 600000 + random.randrange(50000)
        self.boot = time.time() - 86400 * 3
        self.schema = Schema(SCHEMA_FILE)
        self.storage_dir = os.path.join(self.dir, "storage")
        self.lvm = {n: {} for n in self.nodes}   # node -> {volname: size}
        for n in self.nodes:
            os.makedirs(self.tmpl_dir(n), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "upload-tmp"), exist_ok=True)
        self.runner = None              # set by main for --run-cts

    # ---- small helpers

    def next_pid(self):
        with self.lock:
            self.pid_counter += random.randrange(3, 40)
            return self.pid_counter

    def tmpl_dir(self, node):
        return os.path.join(self.storage_dir, node, "local", "template", "cache")

    def quorate(self):
        up = sum(1 for n in self.nodes if self.online[n])
        return up * 2 > len(self.nodes)

    def take_task_failure(self, ttype):
        with self.lock:
            for rule in self.task_fail_rules:
                if rule["type"] == ttype and rule["count"] > 0:
                    rule["count"] -= 1
                    return rule["exitstatus"]
        return None

    def take_failure(self, method, path):
        with self.lock:
            for rule in self.fail_rules:
                if rule["count"] <= 0 or rule["method"].upper() != method:
                    continue
                p = rule["path"]
                if p == path or (p.endswith("*") and path.startswith(p[:-1])):
                    rule["count"] -= 1
                    return rule
        return None

    def start_task(self, node, ttype, tid, user, work):
        t = Task(self, node, ttype, tid, user, work)
        with self.lock:
            self.tasks[t.upid] = t
            self.task_order.append(t.upid)
        t.thread.start()
        return t.upid

    def node_mem_used(self, node):
        base = self.cfg["node_mem"].get(node)
        if base is None:
            base = [12, 4, 20, 8, 16][self.nodes.index(node) % 5] * GIB
        with self.lock:
            running = sum(int(c.config.get("memory", 512)) * MIB
                          for c in self.cts.values() if c.node == node and c.status == "running")
        return int(base) + running

    def storages(self):
        return {"local": {"type": "dir", "content": ["vztmpl", "iso", "backup"]},
                "local-lvm": {"type": "lvmthin", "content": ["rootdir", "images"]}}

    def template_path(self, node, volid):
        """The file of a `local:vztmpl/<name>` volid on @node, or None."""
        m = VOLID_RE.match(volid)
        if not m or m.group(1) != "local":
            return None
        t = VZTMPL_RE.match(m.group(2))
        if not t:
            return None
        return os.path.join(self.tmpl_dir(node), t.group(1))

    def templates(self, node):
        out = []
        d = self.tmpl_dir(node)
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            m = VZTMPL_EXT_RE.match(name)
            if not m or not os.path.isfile(p):
                continue
            st = os.stat(p)
            fmt = "tar" if m.group(1) else "t" + m.group(2)
            out.append({"volid": "local:vztmpl/" + name, "format": fmt, "size": st.st_size,
                        "ctime": int(st.st_ctime), "content": "vztmpl"})
        return out

    # ---- CT status shapes (PVE::LXC::vmstatus)

    def refresh(self, ct):
        """--run-cts: a CT whose init has exited is stopped."""
        if self.runner and ct.runner and ct.status == "running" and not self.runner.alive(ct):
            ct.status = "stopped"
            ct.started = None
            ct.pid = None
            ct.runner = None

    def ct_status(self, ct, with_ha):
        self.refresh(ct)
        c = ct.config
        running = ct.status == "running"
        maxdisk = 4 * GIB
        root = c.get("rootfs")
        if root:
            m = re.search(r"(?:^|,)size=([^,]+)", root)
            if m and parse_size(m.group(1)):
                maxdisk = parse_size(m.group(1))
        d = {"vmid": ct.vmid, "type": "lxc", "status": "running" if running else "stopped",
             "name": re.sub(r"\s", "", c.get("hostname") or "CT%d" % ct.vmid),
             "cpus": int(float(c.get("cores") or c.get("cpulimit") or 8) + 0.999),
             "maxmem": int(c.get("memory") or 512) * MIB,
             "maxswap": int(c.get("swap") or 0) * MIB, "maxdisk": maxdisk,
             "mem": 0, "swap": 0, "disk": 0, "uptime": 0, "cpu": 0,
             "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0}
        if c.get("tags"):
            d["tags"] = c["tags"]
        if c.get("lock"):
            d["lock"] = c["lock"]
        if c.get("template") in ("1", 1):
            d["template"] = 1
        if running:
            live = self.runner.live(ct) if (self.runner and ct.runner) else None
            if live:
                d.update(live)
            else:
                d["pid"] = ct.pid
                d["uptime"] = int(time.time() - (ct.started or time.time()))
                d["mem"] = min(d["maxmem"], 24 * MIB + ct.vmid % 97 * 4096)
                d["cpu"] = 0.0012
            d["disk"] = min(maxdisk, 180 * MIB)
            d["netin"] = 1234 + d["uptime"] * 17
            d["netout"] = 567 + d["uptime"] * 5
            for k in ("pressurecpusome", "pressurecpufull", "pressureiosome",
                      "pressureiofull", "pressurememorysome", "pressurememoryfull"):
                d[k] = 0
        if with_ha:
            d["ha"] = {"managed": 0}
        return d

    def config_json(self, ct):
        """GET .../config: integers and booleans as numbers, the rest (cpulimit too) strings
        (PVE::LXC::Config::check_type)."""
        props = self.schema.find("PUT", "/nodes/x/lxc/100/config")[1]["parameters"]
        out = {}
        for k, v in ct.config.items():
            typ = props.get(k, {}).get("type")
            if typ in ("integer", "boolean") and is_integer(str(v)):
                out[k] = int(v)
            else:
                out[k] = v
        if ct.lxc:
            out["lxc"] = [list(e) for e in ct.lxc]
        out["digest"] = ct.digest()
        return out


# --------------------------------------------------------------------------- the API


class API:
    """The handlers. Each gets (fake, ctx) with ctx.params (validated), ctx.user (the token
    id), ctx.node (the node the call runs on) and returns the "data" value."""

    def __init__(self, fake):
        self.f = fake

    # ---- cluster

    def version(self, ctx):
        return dict(VERSION)

    def nextid(self, ctx):
        f = self.f
        with f.lock:
            if ctx.params.get("vmid") is not None:
                vmid = int(perl_str(ctx.params["vmid"]))
                if vmid in f.cts:
                    raise ParamError({"vmid": "VM %d already exists" % vmid})
                return perl_str(ctx.params["vmid"])
            vmid = 100
            while vmid in f.cts:
                vmid += 1
            if f.nextid_stale > 0:
                f.nextid_stale -= 1
                ctx.after = lambda: self._foreign_ct(vmid)
            return str(vmid)

    def _foreign_ct(self, vmid):
        f = self.f
        with f.lock:
            if vmid not in f.cts:
                node = f.nodes[0]
                f.cts[vmid] = CT(vmid, node, {"arch": "amd64", "hostname": "foreign%d" % vmid,
                                              "memory": "512", "swap": "512",
                                              "ostype": "debian", "unprivileged": "1",
                                              "rootfs": "local-lvm:vm-%d-disk-0,size=4G"
                                              % vmid})
                f.lvm[node]["vm-%d-disk-0" % vmid] = 4 * GIB

    def node_entry(self, node):
        f = self.f
        e = {"id": "node/" + node, "node": node, "type": "node", "level": "",
             "maxcpu": 8, "maxmem": 32 * GIB, "maxdisk": 100 * GIB}
        if f.online[node]:
            e.update({"status": "online", "cpu": 0.03 + 0.01 * f.nodes.index(node),
                      "mem": f.node_mem_used(node), "disk": 12 * GIB,
                      "uptime": int(time.time() - f.boot)})
        else:
            e["status"] = "offline"
        return e

    def resources(self, ctx):
        f = self.f
        typ = ctx.params.get("type")
        out = []
        with f.lock:
            if typ in (None, "vm"):
                for vmid in sorted(f.cts, key=str):
                    ct = f.cts[vmid]
                    e = {"id": "lxc/%d" % vmid, "vmid": vmid, "node": ct.node, "type": "lxc",
                         "status": "unknown"}
                    if f.online[ct.node]:
                        st = f.ct_status(ct, False)
                        e.update({k: st[k] for k in (
                            "uptime", "name", "status", "maxmem", "mem", "maxdisk", "disk",
                            "netin", "netout", "diskread", "diskwrite", "cpu")})
                        e["maxcpu"] = st["cpus"]
                        e["template"] = st.get("template", 0)
                    if ct.config.get("tags"):
                        e["tags"] = ct.config["tags"]
                    if ct.config.get("lock"):
                        e["lock"] = ct.config["lock"]
                    out.append(e)
            if typ in (None, "node"):
                for n in f.nodes:
                    out.append(self.node_entry(n))
            if typ in (None, "storage"):
                for n in f.nodes:
                    for sid, s in f.storages().items():
                        e = {"id": "storage/%s/%s" % (n, sid), "storage": sid, "node": n,
                             "type": "storage", "plugintype": s["type"],
                             "content": ",".join(s["content"]), "shared": 0,
                             "status": "available" if f.online[n] else "unknown"}
                        if f.online[n]:
                            e.update({"disk": 3 * GIB, "maxdisk": 100 * GIB})
                        out.append(e)
        return out

    def nodes(self, ctx):
        out = []
        for n in self.f.nodes:
            e = self.node_entry(n)
            e.pop("maxdisk", None)
            e.pop("disk", None)
            e["ssl_fingerprint"] = self.f.fingerprint
            out.append(e)
        return out

    # ---- CTs

    def load(self, ctx):
        """load_config on the node the call runs on."""
        vmid = int(perl_str(ctx.params["vmid"]))
        with self.f.lock:
            ct = self.f.cts.get(vmid)
            if ct is None or ct.node != ctx.node:
                raise Die("Configuration file 'nodes/%s/lxc/%d.conf' does not exist"
                          % (ctx.node, vmid))
            return ct

    def lxc_list(self, ctx):
        with self.f.lock:
            return [self.f.ct_status(ct, False) for _, ct in sorted(self.f.cts.items())
                    if ct.node == ctx.node]

    def lxc_status(self, ctx):
        ct = self.load(ctx)
        with self.f.lock:
            return self.f.ct_status(ct, True)

    def lxc_config_get(self, ctx):
        ct = self.load(ctx)
        with self.f.lock:
            return self.f.config_json(ct)

    def check_storage(self, sid, node):
        if sid not in self.f.storages():
            raise Die("storage '%s' does not exist" % sid)
        if "rootdir" not in self.f.storages()[sid]["content"]:
            raise ParamError({"storage": "storage '%s' does not support container directories"
                              % sid})

    def lxc_create(self, ctx):
        f = self.f
        p = dict(ctx.params)
        node = ctx.node
        vmid = int(perl_str(p.pop("vmid")))
        p.pop("node", None)
        start = perl_str(p.pop("start", "0")) == "1"
        for k in ("ignore-unpack-errors", "bwlimit", "ha-managed", "unprivileged", "restore",
                  "unique", "force", "password", "ssh-public-keys", "pool", "debug"):
            p.pop(k, None)
        unpriv = perl_str(ctx.params.get("unprivileged", "1"))
        self.check_features_perm(ctx.user, None, p.get("features"), unpriv == "1")
        with f.lock:
            other = f.cts.get(vmid)
            if other is not None:
                raise Die("CT %d already exists on node '%s'" % (vmid, other.node))
        ostemplate = perl_str(p.pop("ostemplate"))
        storage = perl_str(p.pop("storage", "local"))
        m = VOLID_RE.match(ostemplate)
        if not m:
            raise Die("Only root can pass arbitrary filesystem paths. at "
                      "/usr/share/perl5/PVE/Storage.pm line 651.")
        sid, volname = m.group(1), m.group(2)
        if sid not in f.storages():
            raise Die("storage '%s' does not exist" % sid)
        if sid == "local":
            if not VZTMPL_RE.match(volname):
                raise Die("unable to parse directory volume name '%s'" % volname)
        elif LVM_VOL_RE.match(volname):
            raise Die("unable to use volume %s - content type needs to be 'vztmpl'"
                      % ostemplate)
        else:
            raise Die("unable to parse lvm volume name '%s'" % volname)

        mps = {}
        for k in list(p):
            if k == "rootfs" or re.match(r"^mp\d+$", k):
                v = perl_str(p.pop(k))
                mps[k] = ("%s:%s" % (storage, v)) if re.match(r"^\d+(\.\d+)?$", v) else v
            elif re.match(r"^unused\d+$", k):
                p.pop(k)
        if mps and "rootfs" not in mps:
            raise Die("mount points configured, but 'rootfs' not set - aborting")
        for k, v in mps.items():
            vol = v.split(",")[0]
            vol = vol[len("volume="):] if vol.startswith("volume=") else vol
            vm = VOLID_RE.match(vol)
            if vm:
                self.check_storage(vm.group(1), node)
            elif not vol.startswith("/"):
                raise Die("unable to parse volume ID '%s'" % vol)
        if "rootfs" not in mps:
            self.check_storage(storage, node)
            mps["rootfs"] = "%s:4" % storage       # storage-only mode: a 4 GiB rootfs

        conf = {}
        for k, v in p.items():
            conf[k] = perl_str(v)
        for k in list(conf):
            if re.match(r"^net\d+$", k):
                d = parse_property_string(
                    f.schema.find("POST", "/nodes/x/lxc")[1]["parameters"][k]["format"],
                    conf[k], k)
                d["type"] = "veth"
                if not d.get("hwaddr"):
                    d["hwaddr"] = random_mac()
                conf[k] = self.net_string(d)
        if unpriv == "1":
            conf["unprivileged"] = "1"
        conf["lock"] = "create"
        with f.lock:
            other = f.cts.get(vmid)
            if other is not None:
                raise Die("unable to create CT %d - CT %d already exists on node '%s'"
                          % (vmid, vmid, other.node))
            ct = CT(vmid, node, conf)
            f.cts[vmid] = ct
        user = ctx.user

        def work(task):
            with self.ct_flock(ct, task):
                try:
                    self.create_work(task, ct, ostemplate, mps, storage)
                except TaskError as e:
                    if f.runner:
                        f.runner.destroy(ct)
                    with f.lock:
                        for vol in list(f.lvm[node]):
                            if LVM_VOL_RE.match(vol) and int(LVM_VOL_RE.match(vol).group(2)) \
                                    == vmid and f.cts.get(vmid) is ct:
                                del f.lvm[node][vol]
                        if f.cts.get(vmid) is ct:
                            del f.cts[vmid]
                    raise TaskError("unable to create CT %d - %s" % (vmid, e)
                                    if task.injected is None else str(e))
            if start:
                self.start_ct(ct, node, user)

        return f.start_task(node, "vzcreate", str(vmid), user, work)

    @staticmethod
    def check_features_perm(user, old, new, unprivileged):
        """PVE::LXC::check_ct_modify_config_perm for `features`: only root@pam itself (not a
        token of it) may set feature flags on a privileged CT, or any flag but nesting."""
        if user == "root@pam" or new is None:
            return
        if not unprivileged:
            raise PVEError(403, "Permission check failed (changing feature flags for privileged "
                                "container is only allowed for root@pam)\n")

        def flags(text):
            return {k: v for k, _, v in (x.partition("=") for x in perl_str(text or "")
                                         .split(",") if x)}
        newf, oldf = flags(new), flags(old)
        changed = {k for k in set(newf) | set(oldf) if newf.get(k) != oldf.get(k)}
        if (changed - {"nesting"}) if old else (set(newf) - {"nesting"}):
            raise PVEError(403, "Permission check failed (changing feature flags (except "
                                "nesting) is only allowed for root@pam)\n")

    def net_string(self, d):
        fmt = self.f.schema.find("POST", "/nodes/x/lxc")[1]["parameters"]["net0"]["format"]
        return print_property_string(d, fmt)

    class _FLock:
        def __init__(self, api, ct, task):
            self.ct, self.task, self.timeout = ct, task, api.f.cfg["lock_timeout"]

        def __enter__(self):
            if not self.ct.flock.acquire(timeout=self.timeout):
                raise TaskError("can't lock file '/run/lock/lxc/pve-config-%d.lock' - got "
                                "timeout" % self.ct.vmid)
            return self

        def __exit__(self, *exc):
            self.ct.flock.release()

    def ct_flock(self, ct, task):
        return API._FLock(self, ct, task)

    def create_work(self, task, ct, ostemplate, mps, storage):
        f = self.f
        node = ct.node
        vmid = ct.vmid
        task.delay()
        task.check_injected()
        with f.lock:
            for k in sorted(mps, key=lambda x: (x != "rootfs", x)):
                v = mps[k]
                parts = v.split(",")
                vol = parts[0][len("volume="):] if parts[0].startswith("volume=") else parts[0]
                rest = [x for x in parts[1:] if not x.startswith("size=")]
                m = VOLID_RE.match(vol)
                if m and re.match(r"^\d+(\.\d+)?$", m.group(2)):
                    size_g = float(m.group(2))
                    n = 0
                    while "vm-%d-disk-%d" % (vmid, n) in f.lvm[node]:
                        n += 1
                    name = "vm-%d-disk-%d" % (vmid, n)
                    f.lvm[node][name] = int(size_g * GIB)
                    task.say('  Logical volume "%s" created.' % name)
                    size = ("%dG" % size_g) if size_g == int(size_g) else "%dM" % (size_g * 1024)
                    ct.config[k] = ",".join(["%s:%s" % (m.group(1), name)] + rest
                                            + ["size=" + size])
                else:
                    ct.config[k] = v
        path = f.template_path(node, ostemplate)
        if path is None or not os.path.isfile(path):
            raise TaskError("can't find file '%s'" % ostemplate)
        if ct_volume_is_oci(path):
            task.say("Detected OCI archive")
            try:
                image, layers = oci_read_image(path)
            except (OCIError, KeyError, ValueError, tarfile.TarError) as e:
                raise TaskError("failed to parse OCI archive: %s" % e)
            task.say("unpacking OCI image (%d layers)" % len(layers))
            self.apply_oci_config(task, ct, image.get("config") or {})
            if f.runner:
                f.runner.prepare(ct, path, task)
            ostype = "unmanaged"
        else:
            task.say("extracting archive '/var/lib/vz/template/cache/%s'"
                     % os.path.basename(path))
            size = os.path.getsize(path)
            task.say("Total bytes read: %d (%.1fMiB, %.1fMiB/s)" % (size, size / MIB, 100.0))
            base = os.path.basename(path).split("-")[0].split("_")[0]
            ostype = base if base in ("debian", "ubuntu", "alpine", "centos", "fedora",
                                      "archlinux", "devuan", "opensuse", "gentoo") \
                else "unmanaged"
            task.say("Detected container architecture: amd64")
        with f.lock:
            c = ct.config
            c.setdefault("arch", "amd64")
            c.setdefault("ostype", ostype)
            c["hostname"] = c.get("hostname") or "CT%d" % vmid
            c["memory"] = c.get("memory") or "512"
            c.setdefault("swap", "512")
            c.pop("lock", None)

    def apply_oci_config(self, task, ct, cfg):
        """restore_oci_archive: Entrypoint+Cmd over entrypoint (and cmode console,
        host-managed nets), Env over env, User/WorkingDir/StopSignal as raw lxc keys."""
        f = self.f
        init = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        with f.lock:
            c = ct.config
            if init and init[0] != "/sbin/init":
                c["entrypoint"] = " ".join(shell_quote(a) for a in init)
                c["cmode"] = "console"
                for k in sorted(c):
                    if not re.match(r"^net\d+$", k):
                        continue
                    fmt = f.schema.find("POST", "/nodes/x/lxc")[1]["parameters"][k]["format"]
                    d = parse_property_string(fmt, c[k], k)
                    if d.get("host-managed") is None:
                        task.say("Auto-Enabling host-managed network for network device %s."
                                 % k)
                        d["host-managed"] = "1"
                        c[k] = self.net_string(d)
            user = cfg.get("User")
            if user:
                uid, _, gid = user.partition(":")
                if uid.isdigit():
                    ct.lxc.append(["lxc.init.uid", uid])
                if gid.isdigit():
                    ct.lxc.append(["lxc.init.gid", gid])
            if cfg.get("WorkingDir"):
                ct.lxc.append(["lxc.init.cwd", cfg["WorkingDir"]])
            if cfg.get("Env"):
                c["env"] = "\0".join(cfg["Env"])
            ct.lxc.append(["lxc.signal.halt", cfg.get("StopSignal") or "SIGTERM"])
            for vol in sorted(cfg.get("Volumes") or {}):
                task.say("creating base directory for volume at %s" % vol)

    def start_ct(self, ct, node, user):
        f = self.f

        def work(task):
            with self.ct_flock(ct, task):
                with f.lock:
                    if f.cts.get(ct.vmid) is not ct:
                        raise TaskError("Configuration file 'nodes/%s/lxc/%d.conf' does not "
                                        "exist" % (node, ct.vmid))
                    if ct.config.get("template") == "1":
                        raise TaskError("you can't start a CT if it's a template")
                    if ct.config.get("lock"):
                        raise TaskError("CT is locked (%s)" % ct.config["lock"])
                task.delay()
                task.check_injected()
                if f.runner and f.runner.wants(ct):
                    f.runner.start(ct, task)
                with f.lock:
                    if ct.status != "running":
                        ct.status = "running"
                        ct.started = time.time()
                        if ct.pid is None:
                            ct.pid = f.next_pid()

        return f.start_task(node, "vzstart", str(ct.vmid), user, work)

    def lxc_start(self, ctx):
        f = self.f
        vmid = int(perl_str(ctx.params["vmid"]))
        with f.lock:
            ct = f.cts.get(vmid)
            if ct is not None:
                f.refresh(ct)
            if ct is not None and ct.node == ctx.node and ct.status == "running":
                raise Die("CT %d already running" % vmid)
        self.quorum()
        if ct is None or ct.node != ctx.node:
            node = ctx.node

            def work(task):
                raise TaskError("Configuration file 'nodes/%s/lxc/%d.conf' does not exist"
                                % (node, vmid))
            return f.start_task(ctx.node, "vzstart", str(vmid), ctx.user, work)
        return self.start_ct(ct, ctx.node, ctx.user)

    def quorum(self):
        if not self.f.quorate():
            raise Die("cluster not ready - no quorum?")

    def running_ct(self, ctx):
        vmid = int(perl_str(ctx.params["vmid"]))
        with self.f.lock:
            ct = self.f.cts.get(vmid)
            if ct is not None:
                self.f.refresh(ct)
            if ct is None or ct.node != ctx.node or ct.status != "running":
                raise Die("CT %d not running" % vmid)
            return ct

    def stop_work(self, ct, graceful, timeout, force_stop, skiplock):
        f = self.f

        def work(task):
            with self.ct_flock(ct, task):
                with f.lock:
                    if f.cts.get(ct.vmid) is not ct:
                        raise TaskError("Configuration file 'nodes/%s/lxc/%d.conf' does not "
                                        "exist" % (ct.node, ct.vmid))
                    lock = ct.config.get("lock")
                    if lock and lock != "mounted" and not skiplock:
                        raise TaskError("CT is locked (%s)" % lock)
                task.delay()
                task.check_injected()
                if f.runner and ct.runner:
                    f.runner.stop(ct, task, graceful, timeout, force_stop)
                with f.lock:
                    ct.status = "stopped"
                    ct.started = None
                    ct.pid = None
        return work

    def lxc_stop(self, ctx):
        ct = self.running_ct(ctx)
        work = self.stop_work(ct, False, None, True,
                              perl_str(ctx.params.get("skiplock", "0")) == "1")
        return self.f.start_task(ctx.node, "vzstop", str(ct.vmid), ctx.user, work)

    def lxc_shutdown(self, ctx):
        ct = self.running_ct(ctx)
        timeout = int(perl_str(ctx.params.get("timeout", 60)))
        force = perl_str(ctx.params.get("forceStop", "0")) == "1"
        work = self.stop_work(ct, True, timeout, force, False)
        return self.f.start_task(ctx.node, "vzshutdown", str(ct.vmid), ctx.user, work)

    def lxc_delete(self, ctx):
        f = self.f
        ct = self.load(ctx)
        vmid = ct.vmid
        force = perl_str(ctx.params.get("force", "0")) == "1"
        with f.lock:
            f.refresh(ct)
            if ct.config.get("protection") == "1":
                raise Die("can't remove CT %d - protection mode enabled" % vmid)
            if ct.config.get("lock"):
                raise Die("CT is locked (%s)" % ct.config["lock"])
            if not force and ct.status == "running":
                raise Die("unable to destroy CT %d - container is running" % vmid)
        self.quorum()
        purge = perl_str(ctx.params.get("purge", "0")) == "1"

        def work(task):
            with self.ct_flock(ct, task):
                with f.lock:
                    if f.cts.get(vmid) is not ct:
                        raise TaskError("Configuration file 'nodes/%s/lxc/%d.conf' does not "
                                        "exist" % (ct.node, vmid))
                    if ct.config.get("lock"):
                        raise TaskError("CT is locked (%s)" % ct.config["lock"])
                    running = ct.status == "running"
                if running and not force:
                    raise TaskError("unable to destroy CT %d - container is running" % vmid)
                task.delay()
                task.check_injected()
                if running:
                    task.say("forced to stop CT %d before destroying!" % vmid)
                    if f.runner and ct.runner:
                        f.runner.stop(ct, task, False, None, True)
                if f.runner:
                    f.runner.destroy(ct)
                with f.lock:
                    for vol in list(f.lvm[ct.node]):
                        m = LVM_VOL_RE.match(vol)
                        if m and int(m.group(2)) == vmid:
                            del f.lvm[ct.node][vol]
                            task.say('  Logical volume "%s" successfully removed.' % vol)
                    ct.status = "stopped"
                    del f.cts[vmid]
                if purge:
                    task.say("purging CT %d from related configurations.." % vmid)

        return f.start_task(ctx.node, "vzdestroy", str(vmid), ctx.user, work)

    def lxc_config_put(self, ctx):
        f = self.f
        p = dict(ctx.params)
        vmid = int(perl_str(p.pop("vmid")))
        p.pop("node", None)
        digest = p.pop("digest", None)
        if not p:
            raise Die("no options specified")
        delete = split_list(perl_str(p.pop("delete", "")))
        revert = split_list(perl_str(p.pop("revert", "")))
        ct = self.load(ctx)
        self.quorum()
        if not ct.flock.acquire(timeout=f.cfg["lock_timeout"]):
            raise Die("can't lock file '/run/lock/lxc/pve-config-%d.lock' - got timeout" % vmid)
        try:
            with f.lock:
                if f.cts.get(vmid) is not ct:
                    raise Die("Configuration file 'nodes/%s/lxc/%d.conf' does not exist"
                              % (ctx.node, vmid))
                if ct.config.get("lock"):
                    raise Die("CT is locked (%s)" % ct.config["lock"])
                if digest and perl_str(digest) != ct.digest():
                    raise Die("detected modified configuration - file changed by other user? "
                              "Try again.")
                props = f.schema.find("PUT", "/nodes/x/lxc/100/config")[1]["parameters"]
                for opt in revert:
                    if opt not in props or opt in ("delete", "revert", "digest"):
                        raise ParamError({"revert": "unknown option '%s'" % opt})
                for opt in delete:
                    if opt not in props or opt in ("delete", "revert", "digest", "node",
                                                   "vmid"):
                        raise ParamError({"delete": "unknown option '%s'" % opt})
                    if opt in p:
                        raise ParamError({"delete": "you can't use '-%s' and -delete %s' at "
                                                    "the same time" % (opt, opt)})
                if "features" in p or "features" in delete:
                    self.check_features_perm(ctx.user, ct.config.get("features"),
                                             p.get("features", ""),
                                             ct.config.get("unprivileged") == "1")
                for opt in delete:
                    ct.config.pop(opt, None)
                for k, v in p.items():
                    v = perl_str(v)
                    if re.match(r"^net\d+$", k):
                        d = parse_property_string(props[k]["format"], v, k)
                        d["type"] = "veth"
                        if not d.get("hwaddr"):
                            old = parse_property_string(props[k]["format"],
                                                        ct.config.get(k, "name=eth0"), k)
                            d["hwaddr"] = old.get("hwaddr") or random_mac()
                        v = self.net_string(d)
                    ct.config[k] = v
        finally:
            ct.flock.release()
        return None

    def lxc_interfaces(self, ctx):
        ct = self.load(ctx)
        f = self.f
        with f.lock:
            f.refresh(ct)
        if ct.status != "running":
            return None
        if f.runner and ct.runner:
            live = f.runner.interfaces(ct)
            if live is not None:
                return live
        out = [{"name": "lo", "hwaddr": "00:00:00:00:00:00",
                "hardware-address": "00:00:00:00:00:00", "inet": "127.0.0.1/8",
                "inet6": "::1/128",
                "ip-addresses": [
                    {"ip-address": "127.0.0.1", "ip-address-type": "inet", "prefix": 8},
                    {"ip-address": "::1", "ip-address-type": "inet6", "prefix": 128}]}]
        fmt = f.schema.find("POST", "/nodes/x/lxc")[1]["parameters"]["net0"]["format"]
        for k in sorted(ct.config, key=lambda x: int(x[3:]) if re.match(r"^net\d+$", x) else -1):
            if not re.match(r"^net\d+$", k):
                continue
            d = parse_property_string(fmt, ct.config[k], k)
            if d.get("link_down") == "1":
                continue
            mac = (d.get("hwaddr") or random_mac()).lower()
            e = {"name": d.get("name", "eth0"), "hwaddr": mac, "hardware-address": mac,
                 "ip-addresses": []}
            ip = d.get("ip")
            if ip == "dhcp":
                # a simulated lease (a real CT gets one from the network's DHCP server)
                ip = "10.%d.%d.%d/16" % (100 + f.nodes.index(ct.node) % 100,
                                         ct.vmid // 256 % 256, ct.vmid % 256)
            if ip and "/" in ip:
                addr, plen = ip.split("/")
                e["inet"] = ip
                e["ip-addresses"].append({"ip-address": addr, "ip-address-type": "inet",
                                          "prefix": int(plen)})
            ll = ll_ipv6(mac)
            e["inet6"] = ll + "/64"
            e["ip-addresses"].append({"ip-address": ll, "ip-address-type": "inet6",
                                      "prefix": 64})
            out.append(e)
        return out

    # ---- tasks

    def task_get(self, ctx, for_log=False):
        upid = perl_str(ctx.params["upid"])
        if not UPID_RE.match(upid):
            raise ParamError({"upid": "unable to parse worker upid"})
        with self.f.lock:
            t = self.f.tasks.get(upid)
        if t is None or t.node != ctx.node:
            if for_log:
                return None
            raise ParamError({"upid": "no such task"})
        return t

    def task_status(self, ctx):
        t = self.task_get(ctx)
        with self.f.lock:
            return t.status_json()

    def task_log(self, ctx):
        t = self.task_get(ctx, for_log=True)
        if perl_str(ctx.params.get("download", "0")) == "1":
            if "start" in ctx.params or "limit" in ctx.params:
                raise Die("'download' cannot be used together with 'start' or 'limit' "
                          "parameters")
        if t is None:
            ctx.total = 1
            return [{"n": 1, "t": "unable to open file - No such file or directory"}]
        start = int(perl_str(ctx.params.get("start", 0)))
        limit = int(perl_str(ctx.params.get("limit", 50)))
        with self.f.lock:
            lines = list(t.log)
        out = []
        for i, line in enumerate(lines):
            if i < start:
                continue
            if limit and len(out) >= limit:
                continue
            out.append({"n": i + 1, "t": line})
        count = len(lines)
        if not count:
            count = 1
            out.append({"n": 1, "t": "no content"})
        ctx.total = count
        return out

    def task_delete(self, ctx):
        t = self.task_get(ctx)
        t.cancel.set()
        return None

    # ---- storage

    def storage_check(self, ctx):
        sid = perl_str(ctx.params["storage"])
        if sid not in self.f.storages():
            raise Die("storage '%s' does not exist" % sid)
        return sid

    def storage_content(self, ctx):
        f = self.f
        sid = self.storage_check(ctx)
        content = ctx.params.get("content")
        vmid = ctx.params.get("vmid")
        out = []
        if sid == "local":
            if content in (None, "vztmpl") and vmid is None:
                out.extend(f.templates(ctx.node))
        else:
            if content in (None, "rootdir", "images"):
                with f.lock:
                    for vol, size in sorted(f.lvm[ctx.node].items()):
                        m = LVM_VOL_RE.match(vol)
                        owner = int(m.group(2))
                        if vmid is not None and int(perl_str(vmid)) != owner:
                            continue
                        kind = "rootdir" if owner in f.cts else "images"
                        if content and content != kind:
                            continue
                        out.append({"volid": "%s:%s" % (sid, vol), "format": "raw",
                                    "size": size, "vmid": owner, "content": kind,
                                    "ctime": int(f.boot)})
        return out

    def storage_delete(self, ctx):
        f = self.f
        sid = perl_str(ctx.params.get("storage") or "")
        volume = perl_str(ctx.params["volume"])
        m = VOLID_RE.match(volume)
        if m:
            sid, volname = m.group(1), m.group(2)
        else:
            if not sid:
                raise Die("unable to parse volume ID '%s'" % volume)
            volname = volume
        if sid not in f.storages():
            raise Die("storage '%s' does not exist" % sid)
        volid = "%s:%s" % (sid, volname)
        owner = None
        if sid == "local":
            t = VZTMPL_RE.match(volname)
            if not t:
                raise Die("unable to parse directory volume name '%s'" % volname)
            path = os.path.join(f.tmpl_dir(ctx.node), t.group(1))
        else:
            lm = LVM_VOL_RE.match(volname)
            if not lm:
                raise Die("unable to parse lvm volume name '%s'" % volname)
            owner = int(lm.group(2))
            path = None
        node = ctx.node

        def work(task):
            task.delay()
            task.check_injected()
            if path is not None:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    raise TaskError("unlink '/var/lib/vz/template/cache/%s' failed - No such "
                                    "file or directory" % os.path.basename(path))
            else:
                with f.lock:
                    if volname not in f.lvm[node]:
                        raise TaskError("lvremove 'pve/%s' error:   Failed to find logical "
                                        "volume \"pve/%s\"" % (volname, volname))
                    del f.lvm[node][volname]
            task.say("Removed volume '%s'" % volid)

        tid = ("%d@" % owner if owner is not None else "") + sid
        upid = f.start_task(node, "imgdel", tid, ctx.user, work)
        delay = ctx.params.get("delay")
        if delay:
            t = f.tasks[upid]
            t.thread.join(int(perl_str(delay)))
            with f.lock:
                if t.status == "stopped":
                    if t.exitstatus == "OK" or t.exitstatus.startswith("WARNINGS"):
                        return None
                    raise Die(t.exitstatus)
        return upid

    def storage_upload(self, ctx):
        f = self.f
        p = ctx.params
        sid = self.storage_check(ctx)
        content = perl_str(p["content"])
        tmp = ctx.upload_file
        if not tmp:
            raise Die("missing temporary file name")
        size = os.path.getsize(tmp)
        filename = perl_str(p["filename"]).rstrip("\n")
        filename = re.sub(r"^.*[/\\]", "", filename)
        filename = re.sub(r"[^a-zA-Z0-9_.-]", "_", filename)
        if content == "vztmpl":
            if not VZTMPL_EXT_RE.search(filename):
                raise ParamError({"filename": "wrong file extension"})
        elif content == "iso":
            if not ISO_EXT_RE.search(filename):
                raise ParamError({"filename": "wrong file extension"})
        else:
            raise ParamError({"content": "upload content type '%s' not allowed" % content})
        if content not in f.storages()[sid]["content"]:
            raise Die("storage '%s' does not support '%s' content" % (sid, content))
        if content != "vztmpl":
            raise Die("storage '%s' does not support '%s' content" % (sid, content))
        target = ctx.node
        runs_on = target if f.online[target] else next(
            (n for n in f.nodes if f.online[n]), target)
        dest = os.path.join(f.tmpl_dir(target), filename)
        ctx.upload_file = None      # the task owns it now

        def work(task):
            try:
                task.say("starting file import from: /var/tmp/%s" % os.path.basename(tmp))
                task.delay()
                task.check_injected()
                if not f.online[target]:
                    raise TaskError(
                        "can't activate storage '%s' on node '%s': command '/usr/bin/ssh -e "
                        "none -o 'BatchMode=yes' -o 'HostKeyAlias=%s' root@%s -- "
                        "/usr/sbin/pvesm status --storage %s' failed: exit code 255"
                        % (sid, target, target, target, sid))
                task.say("target node: %s" % target)
                task.say("target file: /var/lib/vz/template/cache/%s" % filename)
                task.say("file size is: %d" % size)
                task.say("command: cp -- /var/tmp/%s /var/lib/vz/template/cache/%s"
                         % (os.path.basename(tmp), filename))
                part = dest + ".part"
                shutil.copyfile(tmp, part)
                os.replace(part, dest)
                task.say("finished file import successfully")
            finally:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

        return f.start_task(runs_on, "imgcopy", "", ctx.user, work)


HANDLERS = {
    ("/version", "GET"): API.version,
    ("/cluster/nextid", "GET"): API.nextid,
    ("/cluster/resources", "GET"): API.resources,
    ("/nodes", "GET"): API.nodes,
    ("/nodes/{node}/lxc", "GET"): API.lxc_list,
    ("/nodes/{node}/lxc", "POST"): API.lxc_create,
    ("/nodes/{node}/lxc/{vmid}", "DELETE"): API.lxc_delete,
    ("/nodes/{node}/lxc/{vmid}/status/current", "GET"): API.lxc_status,
    ("/nodes/{node}/lxc/{vmid}/status/start", "POST"): API.lxc_start,
    ("/nodes/{node}/lxc/{vmid}/status/stop", "POST"): API.lxc_stop,
    ("/nodes/{node}/lxc/{vmid}/status/shutdown", "POST"): API.lxc_shutdown,
    ("/nodes/{node}/lxc/{vmid}/config", "GET"): API.lxc_config_get,
    ("/nodes/{node}/lxc/{vmid}/config", "PUT"): API.lxc_config_put,
    ("/nodes/{node}/lxc/{vmid}/interfaces", "GET"): API.lxc_interfaces,
    ("/nodes/{node}/tasks/{upid}", "DELETE"): API.task_delete,
    ("/nodes/{node}/tasks/{upid}/status", "GET"): API.task_status,
    ("/nodes/{node}/tasks/{upid}/log", "GET"): API.task_log,
    ("/nodes/{node}/storage/{storage}/content", "GET"): API.storage_content,
    ("/nodes/{node}/storage/{storage}/content/{volume}", "DELETE"): API.storage_delete,
    ("/nodes/{node}/storage/{storage}/upload", "POST"): API.storage_upload,
}

# Calls that still work on a real PVE without quorum (they write no cluster file).
NO_QUORUM_OK = {
    ("/nodes/{node}/lxc/{vmid}/status/stop", "POST"),
    ("/nodes/{node}/lxc/{vmid}/status/shutdown", "POST"),
    ("/nodes/{node}/tasks/{upid}", "DELETE"),
    ("/nodes/{node}/storage/{storage}/upload", "POST"),
    ("/nodes/{node}/storage/{storage}/content/{volume}", "DELETE"),
}


class Ctx:
    def __init__(self):
        self.params = {}
        self.user = None
        self.node = None
        self.total = None
        self.after = None
        self.upload_file = None


def perl_split_eq(kv):
    """Perl's `my ($k, $v) = split(/=/, $kv)`: the first two '='-separated fields (so an
    unescaped '=' in a value cuts it), trailing empty fields dropped."""
    fields = kv.split("=")
    while fields and fields[-1] == "":
        fields.pop()
    k = fields[0] if fields else ""
    v = fields[1] if len(fields) > 1 else None
    return k, v


def decode_urlencoded(data):
    """pve-http-server decode_urlencoded."""
    res = {}
    if not data:
        return res
    for kv in re.split(r"[&;]", data):
        k, v = perl_split_eq(kv)
        k = urllib.parse.unquote_to_bytes(k.replace("+", " ")).decode("latin-1")
        if v is not None:
            v = urllib.parse.unquote_to_bytes(v.replace("+", " ")).decode("utf-8", "replace")
            old = res.get(k)
            if old is not None:
                v = (old if isinstance(old, list) else [old]) + [v]
        res[k] = v
    return res


class ReqHandler(http.server.BaseHTTPRequestHandler):
    """pveproxy: HTTP/1.1 with keep-alive; every reply >= 400 closes the connection."""

    protocol_version = "HTTP/1.1"
    # pve-http-server sets TCP_NODELAY on every client socket. Without it the headers and
    # the body, written apart, meet the client's delayed ACK: 40 ms added to a reply.
    disable_nagle_algorithm = True
    server_version = "pve-api-daemon/3.0"
    timeout = 60

    def log_message(self, fmt, *args):
        pass

    def handle_expect_100(self):
        # pve-http-server never sends "100 Continue"; a client waits for its own timeout.
        return True

    def handle(self):
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, socket.timeout, OSError):
            pass

    # ---- replies

    def drain(self):
        """Reads and drops a request body the reply does not need, so that closing the
        connection does not reset it under the client before it reads the reply (pveproxy's
        event loop keeps reading too)."""
        left = getattr(self, "unread", 0)
        self.unread = 0
        if not 0 < left <= 64 * MIB:
            return
        self.connection.settimeout(2.0)
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def log_call(self, status):
        """Adds this request to /control/calls once, before its reply is sent: a client that
        has the reply finds the call there."""
        rec, t0 = getattr(self, "_record", None) or (None, 0)
        if rec is None or rec["path"] is None:
            return
        self._record = None
        rec["status"] = status
        rec["ms"] = round((time.monotonic() - t0) * 1000, 1)
        with self.server.fake.lock:
            self.server.fake.calls.append(rec)

    def reply_raw(self, code, reason, body=b"", ctype=None, close=False):
        self.log_call(code)
        if code >= 400:
            close = True
        if close:
            self.drain()
        self.send_response_only(code, reason)
        now = self.date_time_string()
        self.send_header("Date", now)
        self.send_header("Expires", now)
        self.send_header("Cache-Control", "max-age=0")
        self.send_header("Pragma", "no-cache")
        self.send_header("Server", self.server_version)
        if body:
            accept = self.headers.get("Accept-Encoding") or ""
            if len(body) > 1024 and "gzip" in accept:
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close" if close else "Keep-Alive")
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()
        if close:
            self.close_connection = True

    def reply_error_text(self, code, msg):
        """pve-http-server `error`: the text as reason phrase and as a plain body."""
        self.reply_raw(code, msg.split("\n")[0], msg.encode(), None, True)
        return code

    def reply_json(self, code, message, data, errors=None, total=None):
        f = self.server.fake
        if f.cfg["null_fields"]:
            data = nulled(data, set(f.cfg["null_fields"]))
        body = {"data": data}
        if errors:
            body["errors"] = errors
        if code >= 400 and not f.cfg["old_errors"]:
            body["message"] = message
        if code < 400 and total:
            body["total"] = total
        reason = (message or "OK").split("\n")[0] if code >= 400 else "OK"
        raw = json.dumps(body, separators=(",", ":")).encode()
        self.reply_raw(code, reason, raw, "application/json;charset=UTF-8")
        return code

    def reply_unreachable(self, code):
        """595/596 from AnyEvent::HTTP when pveproxy cannot reach the target node: no body,
        no Content-Length, connection closed."""
        self.reply_raw(code, "No route to host" if code == 595 else "Connection timed out",
                       b"", None, True)
        return code

    # ---- request entry points

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def _unknown(self):
        self.reply_raw(501, "method '%s' not available" % self.command, b"", None, True)

    do_HEAD = do_PATCH = do_OPTIONS = _unknown

    def dispatch(self, method):
        t0 = time.monotonic()
        record = {"method": method, "path": None, "params": None, "status": None, "ms": 0,
                  "t": round(t0, 4)}
        self._record = (record, t0)
        ctx = Ctx()
        try:
            status = self._dispatch(method, ctx, record)
        except (ConnectionError, ssl.SSLError, socket.timeout, BrokenPipeError):
            self.close_connection = True
            status = 0
        except Exception as e:      # a bug in the fake: say so, loudly, and keep serving
            import traceback
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            try:
                status = self.reply_json(500, "internal error in pvefake: %r\n" % (e,), None)
            except OSError:
                self.close_connection = True
                status = 0
        finally:
            if ctx.upload_file:
                try:
                    os.unlink(ctx.upload_file)
                except OSError:
                    pass
        self.log_call(status)  # when no reply was sent (the client went away)
        if ctx.after:
            ctx.after()

    def _dispatch(self, method, ctx, record):
        f = self.server.fake
        self.unread = 0
        if f.cfg["latency"] > 0:
            time.sleep(f.cfg["latency"])
        raw_path, _, query = self.path.partition("?")
        path = urllib.parse.unquote(raw_path)
        te = self.headers.get("Transfer-Encoding")
        if te:
            if te.lower() == "chunked":
                return self.reply_error_text(501, "chunked transfer encoding not supported")
            return self.reply_error_text(501, "Unknown transfer encoding '%s'" % te)
        m = re.match(r"^/api2/+([a-z][a-z0-9]+)(/.*)?$", path)
        if not m:
            return self.reply_error_text(501, "no such uri")
        if m.group(1) != "json":
            return self.reply_error_text(501, "no formatter for uri %s, %s"
                                         % (m.group(2) or "/", m.group(1)))
        rel = m.group(2) or "/"
        record["path"] = rel
        record["params"] = decode_urlencoded(query)

        try:
            self.unread = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.unread = 0
        # authentication (pve-manager PVE/HTTPServer.pm auth_handler)
        auth = self.headers.get("Authorization") or ""
        am = re.search(r"(?:^|\s)PVEAPIToken(?:=| )([^;]*)", auth)
        token = urllib.parse.unquote(am.group(1)) if am else None
        user = None
        if token:
            tm = re.match(r"^(.+)=(.+)$", token, re.S)
            if tm and f.tokens.get(tm.group(1)) == tm.group(2):
                user = tm.group(1)
        if user is None:
            if f.cfg["auth_delay"] > 0:
                time.sleep(f.cfg["auth_delay"])
            reason = "Authentication failed!" if token else "No ticket"
            self.reply_raw(401, reason, b"", None, True)
            return 401
        ctx.user = user
        is_upload = method == "POST" and re.match(r"^/nodes/([^/]+)/storage/([^/]+)/upload$",
                                                  rel)

        length = self.headers.get("Content-Length")
        try:
            length = int(length) if length else 0
        except ValueError:
            return self.reply_error_text(400, "Bad Request")
        self.unread = length
        params = {}
        if length:
            if method not in ("PUT", "POST"):
                return self.reply_error_text(501, "Unexpected content for method '%s'" % method)
            ctype = self.headers.get("Content-Type") or ""
            ct = ctype.split(";")[0].strip().lower()
            if is_upload:
                bm = re.search(r"boundary=\"?([^\";,]+)\"?", ctype)
                if ct != "multipart/form-data" or not bm:
                    return self.reply_error_text(
                        500, "upload 'Content-Type '%s' not implemented\n" % ctype)
                self.close_connection = True      # pve-http-server: no keep-alive on upload
                self.unread = 0
                try:
                    params, ctx.upload_file = self.read_multipart(length, bm.group(1))
                except ValueError as e:
                    return self.reply_error_text(500, "%s\n" % e)
            else:
                if length > LIMIT_MAX_POST:
                    return self.reply_error_text(501, "for data too large")
                if ct not in ("", "application/x-www-form-urlencoded", "application/json"):
                    return self.reply_error_text(
                        506, "upload 'Content-Type '%s' not implemented" % ctype)
                body = self.rfile.read(length)
                self.unread = 0
                if ct == "application/json":
                    try:
                        params = json.loads(body.decode("utf-8"))
                    except (ValueError, UnicodeDecodeError) as e:
                        return self.reply_json(500, "malformed JSON string: %s\n" % e, None)
                    if not isinstance(params, dict):
                        return self.reply_json(500, "Not a HASH reference\n", None)
                else:
                    params = decode_urlencoded(body.decode("latin-1"))
        elif is_upload:
            return self.reply_error_text(
                500, "upload 'Content-Type '%s' not implemented\n"
                % (self.headers.get("Content-Type") or ""))
        for k, v in decode_urlencoded(query).items():
            params[k] = v
        params.pop("_dc", None)
        record["params"] = {k: v for k, v in params.items()}

        rule = f.take_failure(method, rel)
        if rule:
            st = int(rule["status"])
            if st in (595, 596):
                return self.reply_unreachable(st)
            msg = rule.get("message") or http.server.BaseHTTPRequestHandler.responses.get(
                st, ("error",))[0]
            if not msg.endswith("\n"):
                msg += "\n"
            return self.reply_json(st, msg, None, rule.get("errors"))

        found = f.schema.find(method, rel)
        if not found:
            return self.reply_json(501, "Method '%s %s' not implemented" % (method, rel), None)
        tmpl, info, uri_params = found
        try:
            for k in sorted(params):
                if k in uri_params and uri_params[k] != perl_str(params[k]):
                    raise ParamError({k: "duplicate parameter (already defined in URI) with "
                                         "conflicting values!"})
            merged = dict(params)
            merged.update(uri_params)
            ctx.params = merged
            node = uri_params.get("node")
            if info.get("proxyto") == "node" and node is not None:
                if node not in f.online:
                    raise Die("hostname lookup '%s' failed - failed to get address info for: "
                              "%s: Name or service not known" % (node, node))
                if not f.online[node]:
                    return self.reply_unreachable(595)
            if node is not None:
                ctx.node = node
            if is_upload and node is not None and node not in f.online:
                raise Die("storage 'local' is not available on node '%s'" % node)
            validate(info, merged)
            if method != "GET" and (tmpl, method) not in NO_QUORUM_OK \
                    and tmpl != "/nodes/{node}/lxc/{vmid}/status/start" and not f.quorate():
                raise Die("cluster not ready - no quorum?")
            handler = HANDLERS[(tmpl, method)]
            data = handler(f.api, ctx)
        except PVEError as e:
            return self.reply_json(e.status, e.message, None, e.errors)
        return self.reply_json(200, "OK", data, None, ctx.total)

    def read_multipart(self, length, boundary):
        """The upload body into a temp file, then its form fields and the file part
        (pve-http-server file_upload_multipart: fields before the file, which must be named
        'filename')."""
        fd, tmp = tempfile.mkstemp(prefix="pveupload-",
                                   dir=os.path.join(self.server.fake.dir, "upload-tmp"))
        try:
            with os.fdopen(fd, "wb") as out:
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        raise ValueError("upload failed")
                    out.write(chunk)
                    left -= len(chunk)
            params = {}
            delim = b"--" + boundary.encode()
            with open(tmp, "rb") as fin:
                mm = mmap.mmap(fin.fileno(), 0, access=mmap.ACCESS_READ)
                try:
                    pos = mm.find(delim)
                    if pos < 0:
                        raise ValueError("upload failed")
                    data_range = None
                    while True:
                        pos += len(delim)
                        if mm[pos:pos + 2] == b"--":
                            break
                        hdr_end = mm.find(b"\r\n\r\n", pos)
                        if hdr_end < 0:
                            raise ValueError("upload failed")
                        headers = mm[pos:hdr_end].decode("utf-8", "replace")
                        start = hdr_end + 4
                        nxt = mm.find(b"\r\n" + delim, start)
                        if nxt < 0:
                            raise ValueError("upload failed")
                        dm = re.search(r'Content-Disposition: ([^;\r\n]*); name="([^"]*)"'
                                       r'(?:; filename="([^"]+)")?', headers, re.I)
                        if not dm:
                            raise ValueError("upload failed")
                        if dm.group(1).strip() != "form-data":
                            raise ValueError("wrong Content-Disposition '%s' in multipart, "
                                             "expected 'form-data'" % dm.group(1))
                        if dm.group(3) is not None:
                            if dm.group(2) != "filename":
                                raise ValueError("wrong field name '%s' for file upload, "
                                                 "expected 'filename'" % dm.group(2))
                            params["filename"] = dm.group(3).strip()
                            data_range = (start, nxt)
                            break
                        if dm.group(2) in ("content", "checksum-algorithm", "checksum"):
                            params[dm.group(2)] = mm[start:nxt].decode("utf-8").strip()
                        pos = nxt + 2
                    if data_range is None:
                        raise ValueError("upload failed")
                    fdo, part = tempfile.mkstemp(
                        prefix="pveupload-", dir=os.path.join(self.server.fake.dir,
                                                             "upload-tmp"))
                    with os.fdopen(fdo, "wb") as out:
                        s, e = data_range
                        while s < e:
                            n = min(e - s, 1 << 20)
                            out.write(mm[s:s + n])
                            s += n
                finally:
                    mm.close()
            return params, part
        finally:
            os.unlink(tmp)


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, fake, ctx):
        self.fake = fake
        super().__init__(addr, handler)
        # the handshake happens in the handler thread, so a stalled client blocks nobody
        self.socket = ctx.wrap_socket(self.socket, server_side=True,
                                      do_handshake_on_connect=False)

    def handle_error(self, request, client_address):
        pass


# --------------------------------------------------------------------------- control


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if not n:
            return {}
        return json.loads(self.rfile.read(n))

    def do_GET(self):
        f = self.server.fake
        if self.path == "/control/state":
            with f.lock:
                st = {"cts": {}, "tasks": [], "storage": {}, "nodes": {}}
                for vmid, ct in sorted(f.cts.items()):
                    st["cts"][str(vmid)] = {"node": ct.node, "config": dict(ct.config),
                                            "lxc": [list(e) for e in ct.lxc],
                                            "status": ct.status, "lock": ct.config.get("lock"),
                                            "pid": ct.pid}
                for upid in f.task_order:
                    t = f.tasks[upid]
                    st["tasks"].append({"upid": t.upid, "node": t.node, "type": t.type,
                                        "id": t.id, "status": t.status,
                                        "exitstatus": t.exitstatus, "t0": round(t.t0, 4),
                                        "t1": round(t.t1, 4) if t.t1 else None})
                for n in f.nodes:
                    st["storage"]["%s/local" % n] = [x["volid"] for x in f.templates(n)]
                    st["storage"]["%s/local-lvm" % n] = ["local-lvm:" + v
                                                         for v in sorted(f.lvm[n])]
                    st["nodes"][n] = {"online": f.online[n]}
                st["quorate"] = f.quorate()
                st["config"] = dict(f.cfg)
                st["bridges"] = f.runner.bridges() if f.runner else {}
            return self.send_json(200, st)
        if self.path == "/control/calls":
            with f.lock:
                return self.send_json(200, list(f.calls))
        return self.send_json(404, {"error": "no such control path"})

    def do_POST(self):
        f = self.server.fake
        try:
            req = self.body()
        except ValueError as e:
            return self.send_json(400, {"error": "bad JSON: %s" % e})
        p = self.path
        try:
            with f.lock:
                if p == "/control/config":
                    for k, v in req.items():
                        if k not in f.cfg:
                            return self.send_json(400, {"error": "unknown config key " + k})
                        f.cfg[k] = v if k in ("node_mem", "null_fields") else (
                            bool(v) if k == "old_errors" else float(v))
                    return self.send_json(200, dict(f.cfg))
                if p == "/control/node":
                    n = req["node"]
                    if n not in f.online:
                        return self.send_json(400, {"error": "no such node " + n})
                    f.online[n] = bool(req.get("online", True))
                    return self.send_json(200, {"nodes": dict(f.online),
                                                "quorate": f.quorate()})
                if p == "/control/fail":
                    rule = {"method": req.get("method", "GET").upper(), "path": req["path"],
                            "status": int(req.get("status", 500)),
                            "message": req.get("message", ""),
                            "errors": req.get("errors"), "count": int(req.get("count", 1))}
                    f.fail_rules.append(rule)
                    return self.send_json(200, rule)
                if p == "/control/task_fail":
                    rule = {"type": req["type"], "exitstatus": req["exitstatus"],
                            "count": int(req.get("count", 1))}
                    f.task_fail_rules.append(rule)
                    return self.send_json(200, rule)
                if p == "/control/nextid_stale":
                    f.nextid_stale += int(req.get("count", 1))
                    return self.send_json(200, {"pending": f.nextid_stale})
                if p == "/control/ct":
                    vmid = int(req["vmid"])
                    node = req.get("node", f.nodes[0])
                    if node not in f.online:
                        return self.send_json(400, {"error": "no such node " + node})
                    if vmid in f.cts:
                        return self.send_json(409, {"error": "CT %d exists" % vmid})
                    conf = {k: perl_str(v) for k, v in (req.get("config") or {}).items()}
                    ct = CT(vmid, node, conf, req.get("status", "stopped"))
                    if ct.status == "running":
                        ct.pid = f.next_pid()
                    f.cts[vmid] = ct
                    m = re.match(r"^local-lvm:(vm-\d+-disk-\d+)", conf.get("rootfs", ""))
                    if m:
                        f.lvm[node][m.group(1)] = 4 * GIB
                    return self.send_json(200, {"vmid": vmid})
                if p == "/control/calls/reset":
                    f.calls.clear()
                    return self.send_json(200, {})
        except (KeyError, TypeError, ValueError) as e:
            return self.send_json(400, {"error": "bad request: %r" % (e,)})
        return self.send_json(404, {"error": "no such control path"})


class ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, handler, fake):
        self.fake = fake
        super().__init__(addr, handler)


# --------------------------------------------------------------------------- --run-cts
# CTs that really run: the OCI image's layers unpacked into DIR/cts/<vmid>/rootfs, an LXC
# config written from the CT's config (as PVE::LXC::update_lxc_config does, minus what this
# machine does not have: idmaps, apparmor, PVE's hooks), run with the lxc tools.


def _clean_member_path(name):
    """A layer member's path as a list of components, or None for one that climbs out."""
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            return None
        parts.append(p)
    return parts


def _secure_dir(root, parts, create):
    """The directory @parts under @root, resolving symlinks inside @root (never out of it),
    as an absolute host path; missing directories are made when @create, else None."""
    cur = root
    depth = 0
    todo = list(parts)
    while todo:
        p = todo.pop(0)
        nxt = os.path.join(cur, p)
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            if not create:
                return None
            os.mkdir(nxt, 0o755)
            cur = nxt
            continue
        if os.path.islink(nxt):
            depth += 1
            if depth > 40:
                raise OCIError("too many symlinks below %s" % "/".join(parts))
            target = os.readlink(nxt)
            tparts = _clean_member_path(target) if target.startswith("/") else None
            if target.startswith("/"):
                cur = root
                todo = (tparts or []) + todo
            else:
                rel = os.path.relpath(cur, root)
                base = [] if rel == "." else rel.split("/")
                comb = base + target.split("/")
                norm = []
                for c in comb:
                    if c in ("", "."):
                        continue
                    if c == "..":
                        if norm:
                            norm.pop()
                        continue
                    norm.append(c)
                cur = root
                todo = norm + todo
            continue
        if not os.path.isdir(nxt) or (st.st_mode & 0o170000) != 0o040000:
            if not create:
                return None
            os.unlink(nxt)
            os.mkdir(nxt, 0o755)
        cur = nxt
    return cur


def _remove(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if (st.st_mode & 0o170000) == 0o040000:
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _plain_layer(src, media_type, tmpdir):
    """The layer blob @src (a file object) as a plain tar file in @tmpdir."""
    fd, out = tempfile.mkstemp(prefix="layer-", suffix=".tar", dir=tmpdir)
    with os.fdopen(fd, "wb") as o:
        head = src.read(6)
        rest = src
        if media_type.endswith("+zstd") or head[:4] == b"\x28\xb5\x2f\xfd":
            p = subprocess.Popen(["zstd", "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=o)
            p.stdin.write(head)
            shutil.copyfileobj(rest, p.stdin, 1 << 20)
            p.stdin.close()
            if p.wait() != 0:
                raise OCIError("zstd failed on a layer")
        elif head[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=_Chain(head, rest)) as g:
                shutil.copyfileobj(g, o, 1 << 20)
        else:
            o.write(head)
            shutil.copyfileobj(rest, o, 1 << 20)
    return out


class _Chain:
    """A read-only file object: @head bytes, then @rest."""

    def __init__(self, head, rest):
        self.head, self.rest = head, rest

    def read(self, n=-1):
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.rest.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            if len(out) < n:
                out += self.rest.read(n - len(out))
            return out
        return self.rest.read(n)


ID_SHIFT, ID_COUNT = 100000, 65536   # PVE's default id map of an unprivileged CT


def _owner(m, shift):
    """The host uid, gid of member @m in a CT whose ids start at @shift (0: privileged).
    Unprivileged, PVE unpacks in the CT's user namespace, where an id outside the map fails."""
    if not shift:
        return m.uid, m.gid
    for what, i in (("uid", m.uid), ("gid", m.gid)):
        if i >= ID_COUNT:
            raise OCIError("%s: Cannot change ownership to %s %d: Invalid argument"
                           % (m.name, what, i))
    return m.uid + shift, m.gid + shift


def apply_layer(root, tarpath, shift=0):
    """Applies one plain-tar layer to @root: whiteouts (.wh.<name>) and opaque markers
    (.wh..wh..opq) first, against the lower layers, then the entries. Ownership is moved up
    by @shift (an unprivileged CT's id map), and device nodes are skipped there, as an
    unpack in a user namespace cannot make them."""
    with tarfile.open(tarpath, "r:") as tf:
        members = tf.getmembers()
        for m in members:
            parts = _clean_member_path(m.name)
            if not parts:
                continue
            base = parts[-1]
            if not base.startswith(".wh."):
                continue
            d = _secure_dir(root, parts[:-1], False)
            if d is None:
                continue
            if base == ".wh..wh..opq":
                for e in os.listdir(d):
                    _remove(os.path.join(d, e))
            else:
                _remove(os.path.join(d, base[4:]))
        links = []
        for m in members:
            parts = _clean_member_path(m.name)
            if not parts or parts[-1].startswith(".wh."):
                continue
            d = _secure_dir(root, parts[:-1], True)
            path = os.path.join(d, parts[-1])
            if m.isdir():
                if not (os.path.isdir(path) and not os.path.islink(path)):
                    _remove(path)
                    os.mkdir(path)
                os.chmod(path, m.mode & 0o7777)
                os.lchown(path, *_owner(m, shift))
                continue
            if m.islnk():
                links.append((m, path))
                continue
            _remove(path)
            if m.issym():
                os.symlink(m.linkname, path)
            elif m.isreg():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(tf.extractfile(m), out, 1 << 20)
            elif m.isfifo():
                os.mkfifo(path)
            elif (m.ischr() or m.isblk()) and not shift:
                kind = 0o020000 if m.ischr() else 0o060000
                try:
                    os.mknod(path, kind | (m.mode & 0o777), os.makedev(m.devmajor, m.devminor))
                except OSError:
                    continue
            else:
                continue
            os.lchown(path, *_owner(m, shift))
            if not m.issym():
                os.chmod(path, m.mode & 0o7777)
                os.utime(path, (m.mtime, m.mtime))
        for m, path in links:
            tparts = _clean_member_path(m.linkname)
            if not tparts:
                continue
            td = _secure_dir(root, tparts[:-1], False)
            if td is None:
                continue
            target = os.path.join(td, tparts[-1])
            if not os.path.lexists(target) or os.path.isdir(target):
                continue
            _remove(path)
            os.link(target, path, follow_symlinks=False)


def extract_oci(archive, root, tmpdir, shift=0):
    """Unpacks the image in OCI archive @archive into the new directory @root, its ids moved
    up by @shift (apply_layer)."""
    image, layers = oci_read_image(archive)
    os.makedirs(root, exist_ok=False)
    os.chmod(root, 0o755)
    os.chown(root, shift, shift)
    with tarfile.open(archive, "r:") as tf:
        for digest, media in layers:
            algo, _, hexd = digest.partition(":")
            try:
                f = tf.extractfile("blobs/%s/%s" % (algo, hexd))
            except KeyError:
                f = tf.extractfile("./blobs/%s/%s" % (algo, hexd))
            plain = _plain_layer(f, media, tmpdir)
            try:
                apply_layer(root, plain, shift)
            finally:
                os.unlink(plain)
    for d in ("dev", "proc", "sys", "tmp"):
        if not os.path.lexists(os.path.join(root, d)):
            os.mkdir(os.path.join(root, d), 0o1777 if d == "tmp" else 0o755)
            os.chown(os.path.join(root, d), shift, shift)
    return image


def lxc_split_quoted(s):
    """liblxc's lxc_string_split_quoted (LXC >= 5.0.3/6, as PVE ships it), which turns
    lxc.init.cmd into argv: whitespace-separated words, a word that starts with ' or " runs
    to the next such quote, no escapes, an unterminated quoted word is dropped. Debian 12's
    liblxc 5.0.2 splits on spaces only, so the argv goes to lxc-start after `--`."""
    out = []
    state = " "
    start = 0
    for i, ch in enumerate(s):
        if state == " ":
            if ch.isspace():
                continue
            start = i
            state = ch if ch in "'\"" else "a"
        elif state == "a":
            if ch.isspace():
                out.append(s[start:i])
                state = " "
        elif ch == state:
            out.append(s[start + 1:i])
            state = " "
    if state == "a":
        out.append(s[start:])
    return out


def _proc_starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


class LxcRunner:
    """Runs CTs made from OCI archives as LXC containers under DIR/lxc, on host bridges made
    for --bridge NAME=GATEWAY/PREFIX (named pvf<port>, pvf<port>n1, ...)."""

    def __init__(self, fake, bridge_args, port):
        self.f = fake
        self.port = port
        self.lxcpath = os.path.join(fake.dir, "lxc")
        self.ctdir = os.path.join(fake.dir, "cts")
        self.cgroup_base = "pvefake-%d" % port
        self.veth_prefix = "pw%04x" % port      # + vmid, net index (base 36)
        self.bridge_map = {}               # configured name -> (host name, gateway/prefix)
        for i, b in enumerate(bridge_args):
            name, _, cidr = b.partition("=")
            iface = ipaddress.ip_interface(cidr)
            if iface.version != 4 or iface.network.prefixlen >= 31:
                raise SystemExit("--bridge %s: need an IPv4 gateway/prefix" % b)
            host = "pvf%d" % port if i == 0 else "pvf%dn%d" % (port, i)
            self.bridge_map[name] = (host, cidr)
        self.made = []
        self.closing = False

    # ---- setup / cleanup

    def setup(self):
        for tool in ("lxc-start", "lxc-stop", "lxc-info", "ip", "nsenter"):
            if not shutil.which(tool):
                raise SystemExit("--run-cts needs %s" % tool)
        if os.geteuid() != 0:
            raise SystemExit("--run-cts needs root")
        os.makedirs(self.lxcpath, exist_ok=True)
        os.makedirs(self.ctdir, exist_ok=True)
        # an unprivileged CT's root (host uid 100000) must reach its rootfs
        for d in (self.f.dir, self.ctdir):
            os.chmod(d, 0o711)
        used = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show"], check=True,
                                         capture_output=True, text=True).stdout or "[]")
        for name, (host, cidr) in self.bridge_map.items():
            net = ipaddress.ip_interface(cidr).network
            for link in used:
                for a in link.get("addr_info", []):
                    if ipaddress.ip_address(a["local"]) in net:
                        raise SystemExit("--bridge %s=%s: %s already has %s on this host"
                                         % (name, cidr, link["ifname"], a["local"]))
        for name, (host, cidr) in self.bridge_map.items():
            subprocess.run(["ip", "link", "add", "name", host, "type", "bridge"], check=True)
            self.made.append(host)
            subprocess.run(["ip", "addr", "add", cidr, "dev", host], check=True)
            subprocess.run(["ip", "link", "set", host, "up"], check=True)

    def bridges(self):
        return {name: {"host": host, "address": cidr}
                for name, (host, cidr) in self.bridge_map.items()}

    def cleanup(self):
        """On exit: no new starts, running tasks get a moment to end, then every container
        under DIR/lxc is killed, and the bridges, veths and cgroups go."""
        self.closing = True
        deadline = time.monotonic() + 15
        with self.f.lock:
            tasks = [t for t in self.f.tasks.values() if t.status == "running"]
        for t in tasks:
            t.cancel.set()
        for t in tasks:
            t.thread.join(max(0.0, deadline - time.monotonic()))
        names = os.listdir(self.lxcpath) if os.path.isdir(self.lxcpath) else []
        for name in names:
            self._lxc(["lxc-stop", "-n", name, "-P", self.lxcpath, "--kill"], timeout=30)
        for name in names:
            self._lxc(["lxc-wait", "-n", name, "-P", self.lxcpath, "-s", "STOPPED", "-t",
                       "10"], timeout=15)
        for host in self.made:
            subprocess.run(["ip", "link", "del", host], stderr=subprocess.DEVNULL)
        out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name.startswith(self.veth_prefix):
                subprocess.run(["ip", "link", "del", name], stderr=subprocess.DEVNULL)
        self._rm_cgroups()

    def _rm_cgroups(self):
        """Removes the cgroup directories LXC left under pvefake-<port>, deepest first."""
        import glob
        roots = []
        for depth in range(4):
            roots += glob.glob("/sys/fs/cgroup/" + "*/" * depth + self.cgroup_base)
        for r in roots:
            for dirpath, _, _ in sorted(os.walk(r), key=lambda x: -x[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass

    # ---- per CT

    def rootfs(self, ct):
        return os.path.join(self.ctdir, str(ct.vmid), "rootfs")

    @staticmethod
    def shift(ct):
        return ID_SHIFT if ct.config.get("unprivileged") == "1" else 0

    def wants(self, ct):
        return os.path.isdir(self.rootfs(ct))

    def prepare(self, ct, archive, task):
        """In the create task: unpacks the image (PVE unpacks at create too)."""
        d = os.path.join(self.ctdir, str(ct.vmid))
        if os.path.lexists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        try:
            extract_oci(archive, self.rootfs(ct), d, self.shift(ct))
        except (OCIError, tarfile.TarError, OSError, KeyError, ValueError) as e:
            shutil.rmtree(d, ignore_errors=True)
            raise TaskError("failed to extract OCI image: %s" % e)
        task.say("extracted the image into %s" % self.rootfs(ct))

    def destroy(self, ct):
        for d in (os.path.join(self.ctdir, str(ct.vmid)), os.path.join(self.lxcpath,
                                                                          str(ct.vmid))):
            shutil.rmtree(d, ignore_errors=True)

    def _lxc(self, argv, timeout=60):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 124, "", "timeout")

    def _config(self, ct):
        """The LXC config of @ct (after PVE::LXC::update_lxc_config)."""
        c = ct.config
        vmid = ct.vmid
        d = os.path.join(self.lxcpath, str(vmid))
        lines = ["lxc.uts.name = %s" % (c.get("hostname") or "CT%d" % vmid),
                 "lxc.rootfs.path = dir:%s" % self.rootfs(ct),
                 "lxc.mount.auto = proc:rw sys:rw cgroup:rw",
                 "lxc.apparmor.profile = unconfined",
                 "lxc.autodev = 1",
                 "lxc.tty.max = 0",
                 "lxc.pty.max = 16",
                 "lxc.console.path = none",
                 "lxc.log.file = %s" % os.path.join(d, "lxc.log"),
                 "lxc.log.level = WARN",
                 "lxc.cgroup.dir.container = %s/ct%d" % (self.cgroup_base, vmid),
                 "lxc.cgroup.dir.monitor = %s/monitor-ct%d" % (self.cgroup_base, vmid),
                 "lxc.environment = TERM=linux"]
        if self.shift(ct):
            lines += ["lxc.idmap = u 0 %d %d" % (ID_SHIFT, ID_COUNT),
                      "lxc.idmap = g 0 %d %d" % (ID_SHIFT, ID_COUNT)]
        entry = c.get("entrypoint") or "/sbin/init"
        for text in [entry] + (c.get("env") or "").split("\0"):
            if "\n" in text or "\r" in text:
                raise TaskError("detected invalid newline inside property")
        lines.append("lxc.init.cmd = %s" % entry)
        for var in (c.get("env") or "").split("\0"):
            if var:
                lines.append("lxc.environment = %s" % var)
        for k, v in ct.lxc:
            if k in ("lxc.init.uid", "lxc.init.gid", "lxc.init.cwd", "lxc.signal.halt"):
                lines.append("%s = %s" % (k, v))
        mem = int(c.get("memory") or 512) * MIB
        cores = c.get("cores")
        if os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
            lines.append("lxc.cgroup.memory.limit_in_bytes = %d" % mem)
        elif "memory" in self._v2_controllers():
            lines.append("lxc.cgroup2.memory.max = %d" % mem)
        if cores:
            quota = int(cores) * 100000
            if os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
                lines.append("lxc.cgroup.cpu.cfs_period_us = 100000")
                lines.append("lxc.cgroup.cpu.cfs_quota_us = %d" % quota)
            elif "cpu" in self._v2_controllers():
                lines.append("lxc.cgroup2.cpu.max = %d 100000" % quota)
        fmt = self.f.schema.find("POST", "/nodes/x/lxc")[1]["parameters"]["net0"]["format"]
        for k in sorted(c, key=lambda x: int(x[3:]) if re.match(r"^net\d+$", x) else -1):
            m = re.match(r"^net(\d+)$", k)
            if not m:
                continue
            idx = int(m.group(1))
            net = parse_property_string(fmt, c[k], k)
            bridge = net.get("bridge")
            if bridge not in self.bridge_map:
                raise TaskError("bridge '%s' does not exist" % bridge)
            host, cidr = self.bridge_map[bridge]
            n = "lxc.net.%d." % idx
            lines += [n + "type = veth", n + "link = %s" % host,
                      n + "veth.pair = %s%s%s" % (self.veth_prefix, _b36(vmid), _b36(idx)),
                      n + "name = %s" % net.get("name", "eth%d" % idx)]
            if net.get("hwaddr"):
                lines.append(n + "hwaddr = %s" % net["hwaddr"])
            if net.get("mtu"):
                lines.append(n + "mtu = %s" % net["mtu"])
            if net.get("link_down") != "1":
                ip = net.get("ip")
                if ip and ip not in ("dhcp", "manual"):
                    lines.append(n + "ipv4.address = %s" % ip)
                    if net.get("gw"):
                        lines.append(n + "ipv4.gateway = %s" % net["gw"])
                ip6 = net.get("ip6")
                if ip6 and ip6 not in ("dhcp", "manual", "auto"):
                    lines.append(n + "ipv6.address = %s" % ip6)
                    if net.get("gw6"):
                        lines.append(n + "ipv6.gateway = %s" % net["gw6"])
                lines.append(n + "flags = up")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _v2_controllers():
        try:
            with open("/sys/fs/cgroup/cgroup.controllers") as f:
                return f.read().split()
        except OSError:
            return []

    def start(self, ct, task):
        name = str(ct.vmid)
        d = os.path.join(self.lxcpath, name)
        os.makedirs(d, exist_ok=True)
        conf = self._config(ct)
        with open(os.path.join(d, "config"), "w") as f:
            f.write(conf)
        # a previous run may still be tearing down
        self._lxc(["lxc-wait", "-n", name, "-P", self.lxcpath, "-s", "STOPPED", "-t", "5"],
                  timeout=10)
        if self.closing:
            raise TaskError("received interrupt")
        argv = lxc_split_quoted(ct.config.get("entrypoint") or "/sbin/init")
        if not argv:
            raise TaskError("startup for container '%s' failed" % name)
        r = self._lxc(["lxc-start", "-d", "-n", name, "-P", self.lxcpath, "--"] + argv)
        if r.returncode != 0:
            task.say((r.stderr or r.stdout).strip() or "lxc-start failed")
            try:
                with open(os.path.join(d, "lxc.log")) as f:
                    for line in f.read().splitlines()[-10:]:
                        task.say(line)
            except OSError:
                pass
            raise TaskError("startup for container '%s' failed" % name)
        r = self._lxc(["lxc-info", "-n", name, "-P", self.lxcpath, "-pH"])
        pid = int(r.stdout.strip()) if r.stdout.strip().isdigit() else None
        if pid is None:
            # the init exited at once (pve-container's vm_start: open_lxc_pid)
            raise TaskError("unable to get PID for CT %s (not running?)" % name)
        with self.f.lock:
            ct.runner = {"pid": pid, "pstart": _proc_starttime(pid) if pid else None}
            ct.pid = pid

    def alive(self, ct):
        info = ct.runner
        if not info or not info.get("pid"):
            return False
        return _proc_starttime(info["pid"]) == info["pstart"]

    def live(self, ct):
        """Status fields of a running CT from its init process and cgroup; None (and the CT
        marked stopped) when its init has exited."""
        if not self.alive(ct):
            ct.status = "stopped"
            ct.started = None
            ct.pid = None
            return None
        pid = ct.runner["pid"]
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        out = {"pid": pid, "uptime": int(up - ct.runner["pstart"] / ticks), "cpu": 0}
        mem = self._cgroup_mem(pid)
        if mem is not None:
            out["mem"] = mem
        return out

    @staticmethod
    def _cgroup_mem(pid):
        try:
            with open("/proc/%d/cgroup" % pid) as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        for line in lines:
            _, ctrls, path = line.split(":", 2)
            if "memory" in ctrls.split(","):
                p = "/sys/fs/cgroup/memory%s/memory.usage_in_bytes" % path
                break
        else:
            path = next((ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")), None)
            if path is None:
                return None
            p = "/sys/fs/cgroup%s/memory.current" % path
        try:
            with open(p) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def stop(self, ct, task, graceful, timeout, force_stop):
        name = str(ct.vmid)
        if not self.alive(ct):
            return
        argv = ["lxc-stop", "-n", name, "-P", self.lxcpath]
        wait = 60
        if not graceful:
            argv.append("--kill")
        else:
            if not force_stop:
                argv.append("--nokill")
            if timeout is not None:
                argv += ["--timeout", str(timeout)]
                wait = timeout + 5
        r = self._lxc(argv, timeout=wait)
        if r.returncode != 0 and self.alive(ct):
            task.say((r.stderr or "").strip())
            raise TaskError("container did not stop")
        self._lxc(["lxc-wait", "-n", name, "-P", self.lxcpath, "-s", "STOPPED", "-t", "10"],
                  timeout=15)
        with self.f.lock:
            ct.runner = None

    def interfaces(self, ct):
        """`ip --json a` in the CT's network namespace, as PVE::LXC::get_interfaces."""
        if not self.alive(ct):
            return None
        r = subprocess.run(["nsenter", "-t", str(ct.runner["pid"]), "--net", "--", "ip",
                            "--json", "a"], capture_output=True, text=True)
        if r.returncode != 0:
            return None
        out = []
        for i in json.loads(r.stdout):
            obj = {"name": i["ifname"]}
            addrs = []
            for a in i.get("addr_info", []):
                obj[a["family"]] = "%s/%s" % (a["local"], a["prefixlen"])
                addrs.append({"ip-address-type": a["family"], "ip-address": a["local"],
                              "prefix": a["prefixlen"]})
            obj["ip-addresses"] = addrs
            obj["hardware-address"] = i.get("address")
            obj["hwaddr"] = i.get("address")
            out.append(obj)
        return out


def _b36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    s = ""
    while True:
        n, r = divmod(n, 36)
        s = digits[r] + s
        if not n:
            return s


# --------------------------------------------------------------------------- certificates


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, **kw)


def make_certs(d, node):
    """A cluster CA (as pve-root-ca.pem), a node certificate signed by it (SAN as
    pve-cluster Setup.pm writes it, for loopback), and an unrelated CA."""
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    key, crt = os.path.join(d, "server.key"), os.path.join(d, "server.pem")
    other_key, other = os.path.join(d, "other-ca.key"), os.path.join(d, "other-ca.pem")
    for k, c, cn in ((ca_key, ca, "Proxmox Virtual Environment"),
                     (other_key, other, "Some Other CA")):
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", k,
             "-out", c, "-days", "3650", "-sha256",
             "-subj", "/CN=%s/OU=%s/O=PVE Cluster Manager CA" % (cn, uuid.uuid4()),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    csr = os.path.join(d, "server.csr")
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/OU=PVE Cluster Node/O=Proxmox Virtual Environment/CN=%s.local" % node])
    ext = os.path.join(d, "server.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment,keyAgreement\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:%s\n" % node)
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-out", crt, "-days", "700", "-sha256", "-extfile", ext])
    for p in (csr, ext, os.path.join(d, "ca.srl")):
        try:
            os.unlink(p)
        except OSError:
            pass
    with open(crt) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    digest = hashlib.sha256(der).hexdigest().upper()
    fp = ":".join(digest[i:i + 2] for i in range(0, 64, 2))
    return ca, other, crt, key, fp


# --------------------------------------------------------------------------- main


def parse_args(argv):
    ap = argparse.ArgumentParser(description="A fake Proxmox VE API for runt's tests.")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--nodes", default="node1,node2,node3")
    ap.add_argument("--token", action="append")
    ap.add_argument("--old-errors", action="store_true")
    ap.add_argument("--auth-delay", type=float, default=0.0)
    ap.add_argument("--task-delay", type=float, default=0.0)
    ap.add_argument("--run-cts", action="store_true")
    ap.add_argument("--bridge", action="append", default=[])
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    fake = Fake(args)
    for n in fake.nodes:
        fmt_node(n)
    ca, other, crt, key, fp = make_certs(fake.dir, fake.nodes[0])
    fake.fingerprint = fp
    fake.api = API(fake)

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(crt, key)
    api = TLSServer(("127.0.0.1", args.port), ReqHandler, fake, tls)
    ctl = ControlServer(("127.0.0.1", 0), ControlHandler, fake)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if args.run_cts:
        fake.runner = LxcRunner(fake, args.bridge, api.server_address[1])
        try:
            fake.runner.setup()
        except BaseException:
            fake.runner.cleanup()
            raise

    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                                daemon=True) for s in (api, ctl)]
    for t in threads:
        t.start()
    sys.stdout.write(json.dumps({
        "port": api.server_address[1], "control": ctl.server_address[1], "ca": ca,
        "other_ca": other, "fingerprint": fp, "token": fake.first_token}) + "\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        api.shutdown()
        ctl.shutdown()
        if fake.runner:
            fake.runner.cleanup()
        api.server_close()
        ctl.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
