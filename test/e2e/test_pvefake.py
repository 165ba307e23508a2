"""The fake Proxmox VE (test/pvefake/pvefake.py) answers as a real PVE 9 does.

runt's Proxmox backend is tested against this fake, so the fake itself is tested here over
real HTTPS: reply shapes, both error styles, auth, schema validation, tasks and locks, the
nextid race, offline nodes and quorum, fault injection, upload -> create -> start, and (as
root, with lxc) CTs that really run.

    /usr/bin/python3 -m pytest test/e2e/test_pvefake.py -q -p no:cacheprovider
"""

import glob
import gzip
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pvefake"))
from pvefake_client import PveFake, build_oci_archive, busybox_layer  # noqa: E402

UPID_RE = re.compile(
    r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
    r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$")
TOKEN = "root@pam!runt=5ecret-0000-1111"


@pytest.fixture(scope="session", autouse=True)
def runtd_binary():
    """Overrides conftest's: these tests run no runtd, so they need no build."""
    yield


@pytest.fixture(scope="module")
def pve():
    """One fake for the tests that leave no global fault behind."""
    with PveFake(tokens=[TOKEN, "ci@pve!deploy=other-secret"]) as p:
        yield p


@pytest.fixture
def fresh():
    """A fake of its own, for tests that change faults, delays or node state."""
    with PveFake(tokens=[TOKEN]) as p:
        yield p


def q(upid):
    return urllib.parse.quote(upid, safe="")


def raw_request(pve, data, read_timeout=10.0):
    """Sends @data over a fresh TLS connection and reads the reply up to the end of the
    connection (or of Content-Length, then checks whether the server closed).
    Returns (status_line, {header: value}, body, closed)."""
    ctx = ssl.create_default_context(cafile=pve.ca)
    s = socket.create_connection(("127.0.0.1", pve.port), timeout=read_timeout)
    s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    try:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        closed = False
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(body) < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            s.settimeout(0.5)
            try:
                closed = s.recv(1) == b""
            except (socket.timeout, ssl.SSLError):
                closed = False
            except ConnectionError:
                closed = True
        else:
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionError:
                    chunk = b""
                if not chunk:
                    break
                body += chunk
            closed = True
        return lines[0], headers, body, closed
    finally:
        s.close()


def req_bytes(pve, method, path, body=b"", headers=None, token=True):
    lines = ["%s /api2/json%s HTTP/1.1" % (method, path), "Host: 127.0.0.1"]
    if token:
        lines.append("Authorization: PVEAPIToken=" + pve.token)
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    if body and not any(k.lower() in ("content-length", "transfer-encoding")
                        for k in (headers or {})):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def upload_template(pve, node, name, data):
    st, reason, body = pve.upload(node, "local", name, data)
    assert st == 200, (st, reason, body)
    t = pve.wait_task(body["data"])
    assert t["exitstatus"] == "OK", t
    return "local:vztmpl/" + name


def create_ct(pve, node, vmid, ostemplate, **params):
    p = {"vmid": vmid, "ostemplate": ostemplate, "storage": "local-lvm"}
    p.update(params)
    st, reason, body = pve.api("POST", "/nodes/%s/lxc" % node, p)
    assert st == 200, (st, reason, body)
    return body["data"]


def busybox_image(path, config=None, gzip_layers=True):
    cfg = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["sleep 1000"],
           "Env": ["PATH=/bin", "GREETING=hello world"], "WorkingDir": "/root"}
    cfg.update(config or {})
    build_oci_archive(path, [busybox_layer()], cfg, gzip_layers=gzip_layers)
    return Path(path).read_bytes()


# --------------------------------------------------------------------------- transport, TLS


def test_ready_line_certs_and_fingerprint(pve):
    r = pve.ready
    assert set(r) == {"port", "control", "ca", "other_ca", "fingerprint", "token"}
    assert r["token"] == TOKEN
    d = Path(pve.dir)
    for name in ("ca.pem", "ca.key", "server.pem", "server.key", "other-ca.pem"):
        assert (d / name).is_file(), name
    der = ssl.PEM_cert_to_DER_cert((d / "server.pem").read_text())
    hexd = hashlib.sha256(der).hexdigest().upper()
    assert r["fingerprint"] == ":".join(hexd[i:i + 2] for i in range(0, 64, 2))
    # the server certificate chains to ca.pem, not to other-ca.pem
    ok = subprocess.run(["openssl", "verify", "-CAfile", r["ca"], str(d / "server.pem")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(["openssl", "verify", "-CAfile", r["other_ca"],
                          str(d / "server.pem")], capture_output=True, text=True)
    assert bad.returncode != 0
    text = subprocess.run(["openssl", "x509", "-in", str(d / "server.pem"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text
    # /nodes shows the same fingerprint, as PVE does
    st, _, body = pve.api("GET", "/nodes")
    assert {n["ssl_fingerprint"] for n in body["data"]} == {r["fingerprint"]}


def test_hostname_verification_and_wrong_ca(pve):
    # by name (localhost) and by IP both verify against the cluster CA
    for host in ("localhost", "127.0.0.1"):
        ctx = ssl.create_default_context(cafile=pve.ca)
        c = http.client.HTTPSConnection(host, pve.port, context=ctx, timeout=10)
        c.request("GET", "/api2/json/version", headers={"Authorization":
                                                        "PVEAPIToken=" + pve.token})
        assert c.getresponse().status == 200
        c.close()
    ctx = ssl.create_default_context(cafile=pve.other_ca)
    c = http.client.HTTPSConnection("127.0.0.1", pve.port, context=ctx, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        c.request("GET", "/api2/json/version")
    c.close()
    # the fake keeps serving after a failed handshake
    assert pve.api("GET", "/version")[0] == 200


def test_keepalive_reuses_one_connection(pve):
    conn = pve.connection()
    try:
        st, _, _ = pve.api("GET", "/version", conn=conn)
        assert st == 200
        sock = conn.sock
        for _ in range(20):
            st, _, hdrs, _ = pve.api_full("GET", "/cluster/nextid", conn=conn)
            assert st == 200
            assert hdrs["Connection"] == "Keep-Alive"
        assert conn.sock is sock
    finally:
        conn.close()


def test_success_headers_and_gzip(pve):
    st, reason, hdrs, body = pve.api_full("GET", "/version")
    assert (st, reason) == (200, "OK")
    assert hdrs["Content-Type"] == "application/json;charset=UTF-8"
    assert hdrs["Server"] == "pve-api-daemon/3.0"
    assert hdrs["Cache-Control"] == "max-age=0" and hdrs["Pragma"] == "no-cache"
    # replies over 1 KiB are gzipped when the client accepts it (notes 6.13)
    line, h, raw, _ = raw_request(pve, req_bytes(pve, "GET", "/cluster/resources",
                                                 headers={"Accept-Encoding": "gzip"}))
    assert line == "HTTP/1.1 200 OK"
    assert h["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw))["data"]
    line, h, raw, _ = raw_request(pve, req_bytes(pve, "GET", "/version",
                                                 headers={"Accept-Encoding": "gzip",
                                                          "Connection": "close"}))
    assert "content-encoding" not in h and json.loads(raw)["data"]["version"]


# --------------------------------------------------------------------------- auth


def test_auth_failures_are_empty_401s_that_close(pve):
    for token, reason in ((None, "No ticket"), ("root@pam!runt=wrong", "Authentication failed!"),
                          ("nobody@pam!x=5ecret-0000-1111", "Authentication failed!"),
                          ("garbage", "Authentication failed!")):
        hdrs = {"Authorization": "PVEAPIToken=" + token} if token else {}
        line, h, body, closed = raw_request(pve, req_bytes(pve, "GET", "/version",
                                                           headers=hdrs, token=False))
        assert line == "HTTP/1.1 401 " + reason
        assert body == b"" and "content-length" not in h and closed
    # a ticket cookie header that is not a token is "No ticket" too
    st, reason, body = pve.api("GET", "/version", token=False,
                               headers={"Authorization": "Bearer abc"})
    assert (st, reason, body) == (401, "No ticket", None)


def test_second_token_and_task_user_split(pve):
    st, _, body = pve.api("GET", "/version", token="ci@pve!deploy=other-secret")
    assert st == 200
    st, _, body = pve.api("POST", "/nodes/node2/lxc/4242/status/start",
                          token="ci@pve!deploy=other-secret")
    assert st == 200
    upid = body["data"]
    assert upid.endswith(":vzstart:4242:ci@pve!deploy:")
    t = pve.wait_task(upid)
    assert t["user"] == "ci@pve" and t["tokenid"] == "deploy"


def test_auth_delay_does_not_block_others(fresh):
    fresh.config(auth_delay=3.0)
    res = {}

    def bad():
        t0 = time.monotonic()
        res["st"] = fresh.api("GET", "/version", token="root@pam!runt=nope")[0]
        res["dt"] = time.monotonic() - t0

    th = threading.Thread(target=bad)
    th.start()
    time.sleep(0.1)
    # The good request is answered while the bad one still waits out its delay (an order,
    # not a time limit: the delay is long enough for any load).
    assert fresh.api("GET", "/version")[0] == 200
    assert "st" not in res
    th.join()
    assert res["st"] == 401 and res["dt"] >= 3.0


# --------------------------------------------------------------------------- framing errors


def test_body_on_get_is_501_plain_text(pve):
    line, h, body, closed = raw_request(pve, req_bytes(pve, "GET", "/version", b"a=b",
                                                       {"Content-Type":
                                                        "application/x-www-form-urlencoded"}))
    assert line == "HTTP/1.1 501 Unexpected content for method 'GET'"
    assert body == b"Unexpected content for method 'GET'" and closed
    line, _, _, _ = raw_request(pve, req_bytes(pve, "DELETE", "/nodes/node1/lxc/100", b"x=1"))
    assert line == "HTTP/1.1 501 Unexpected content for method 'DELETE'"


def test_chunked_and_oversized_bodies_are_501(pve):
    chunked = b"3\r\na=b\r\n0\r\n\r\n"
    line, _, body, closed = raw_request(pve, req_bytes(pve, "POST", "/nodes/node1/lxc", chunked,
                                                       {"Transfer-Encoding": "chunked"}))
    assert line == "HTTP/1.1 501 chunked transfer encoding not supported" and closed
    big = b"description=" + b"x" * (512 * 1024)
    st, reason, _ = pve.api("PUT", "/nodes/node1/lxc/100/config", raw_body=big,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (st, reason) == (501, "for data too large")


def test_unknown_path_and_method(pve):
    st, reason, body = pve.api("GET", "/foo")
    assert (st, reason) == (501, "Method 'GET /foo' not implemented")
    assert body == {"data": None, "message": "Method 'GET /foo' not implemented"}
    st, reason, _ = pve.api("PUT", "/version", {"a": 1})
    assert (st, reason) == (501, "Method 'PUT /version' not implemented")
    line, _, _, closed = raw_request(pve, req_bytes(pve, "PATCH", "/version"))
    assert line == "HTTP/1.1 501 method 'PATCH' not available" and closed


# --------------------------------------------------------------------------- schema


def test_schema_rejects_unknown_missing_type_min_enum_format(pve):
    st, reason, body = pve.api("POST", "/nodes/node1/lxc",
                               {"vmid": 150, "ostemplate": "local:vztmpl/a.tar", "bogus": 1,
                                "memory": 8, "cores": "two", "arch": "sparc",
                                "hostname": "bad_name!"})
    assert (st, reason) == (400, "Parameter verification failed.")
    assert body["message"] == "Parameter verification failed.\n"
    e = body["errors"]
    assert e["bogus"] == ("property is not defined in schema and the schema does not allow "
                          "additional properties")
    assert e["memory"] == "value must have a minimum value of 16"
    assert e["cores"] == "type check ('integer') failed - got 'two'"
    assert e["arch"].startswith("value 'sparc' does not have a value in the enumeration")
    assert e["hostname"] == "invalid format - value does not look like a valid DNS name\n"
    st, _, body = pve.api("POST", "/nodes/node1/lxc", {"vmid": 150})
    assert body["errors"] == {"ostemplate": "property is missing and it is not optional"}
    # path parameters are validated too
    st, _, body = pve.api("GET", "/nodes/node1/lxc/99/status/current")
    assert st == 400 and body["errors"]["vmid"].startswith("invalid format")
    st, _, body = pve.api("GET", "/nodes/node1/lxc/abc/status/current")
    assert body["errors"]["vmid"] == "type check ('integer') failed - got 'abc'"
    st, _, body = pve.api("GET", "/nodes/node1/tasks/x/log", {"start": -1})
    assert body["errors"]["start"] == "value must have a minimum value of 0"


def test_json_bodies_and_booleans(pve):
    st, _, body = pve.api("POST", "/nodes/node1/lxc", json_body={
        "vmid": 151, "ostemplate": "local:vztmpl/none.tar", "start": "yes", "onboot": True})
    assert st == 400
    assert body["errors"] == {"start": "type check ('boolean') failed - got 'yes'"}
    st, _, body = pve.api("POST", "/nodes/node1/lxc", json_body={
        "vmid": 151, "ostemplate": "local:vztmpl/none.tar", "storage": "local-lvm",
        "onboot": 1, "net0": {"name": "eth0"}})
    assert body["errors"] == {"net0": "type check ('string') failed - got HASH"}


def test_property_strings_are_checked(pve):
    st, _, body = pve.api("POST", "/nodes/node1/lxc", {
        "vmid": 152, "ostemplate": "local:vztmpl/a.tar", "net0": "name=eth0,colour=red"})
    assert body["errors"]["net0"] == ("invalid format - invalid key in comma-separated list "
                                      "property: colour\n")
    st, _, body = pve.api("POST", "/nodes/node1/lxc", {
        "vmid": 152, "ostemplate": "local:vztmpl/a.tar", "net0": "name=eth0,mtu=10"})
    assert body["errors"]["net0"] == ("invalid format - format error\nnet0.mtu: value must "
                                      "have a minimum value of 64\n")


def test_unescaped_equals_in_a_form_value_is_cut(pve):
    # pve-http-server splits each pair on every '=' and keeps two fields: a client must
    # percent-encode the '=' inside net0's value
    body = b"vmid=153&ostemplate=local%3Avztmpl%2Fa.tar&net0=name=eth0,bridge=vmbr0"
    st, _, reply = pve.api("POST", "/nodes/node1/lxc", raw_body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert st == 400
    assert reply["errors"]["net0"] == ("invalid format - value without key, but schema does "
                                       "not define a default key\n")


def test_duplicate_uri_parameter(pve):
    st, _, body = pve.api("GET", "/nodes/node1/lxc/100/config", {"vmid": 101})
    assert st == 400
    assert body["errors"] == {"vmid": "duplicate parameter (already defined in URI) with "
                                      "conflicting values!"}


# --------------------------------------------------------------------------- error styles


def test_error_styles_new_and_old(fresh):
    st, reason, body = fresh.api("GET", "/nodes/node1/lxc/777/status/current")
    msg = "Configuration file 'nodes/node1/lxc/777.conf' does not exist"
    assert (st, reason) == (500, msg)
    assert body == {"data": None, "message": msg + "\n"}
    fresh.config(old_errors=True)
    st, reason, body = fresh.api("GET", "/nodes/node1/lxc/777/status/current")
    assert (st, reason, body) == (500, msg, {"data": None})
    st, reason, body = fresh.api("GET", "/cluster/nextid", {"vmid": 5})
    assert (st, reason) == (400, "Parameter verification failed.")
    assert body == {"data": None, "errors": {
        "vmid": "invalid format - value does not look like a valid VM ID\n"}}


def test_old_errors_flag():
    with PveFake(old_errors=True) as p:
        st, reason, body = p.api("GET", "/nodes/node1/lxc/777/config")
        assert st == 500 and body == {"data": None}
        assert reason == "Configuration file 'nodes/node1/lxc/777.conf' does not exist"


# --------------------------------------------------------------------------- cluster


def test_version_nextid_and_resources(fresh):
    st, _, body = fresh.api("GET", "/version")
    assert set(body["data"]) == {"version", "release", "repoid"}
    assert re.match(r"^[0-9a-fA-F]{8,64}$", body["data"]["repoid"])
    st, _, body = fresh.api("GET", "/cluster/nextid")
    assert body == {"data": "100"}               # a string, as PVE sends it
    st, _, body = fresh.api("GET", "/cluster/nextid", {"vmid": 4000})
    assert body == {"data": "4000"}
    fresh.add_ct(100, "node2", {"hostname": "web", "memory": 1024, "tags": "a;b"}, "running")
    st, _, body = fresh.api("GET", "/cluster/nextid")
    assert body == {"data": "101"}
    st, reason, body = fresh.api("GET", "/cluster/nextid", {"vmid": 100})
    assert (st, body["errors"]) == (400, {"vmid": "VM 100 already exists"})

    st, _, body = fresh.api("GET", "/cluster/resources", {"type": "node"})
    nodes = {e["node"]: e for e in body["data"]}
    assert set(nodes) == {"node1", "node2", "node3"}
    for n, e in nodes.items():
        assert e["id"] == "node/" + n and e["type"] == "node" and e["status"] == "online"
        for k in ("maxmem", "mem", "maxcpu", "cpu", "uptime"):
            assert isinstance(e[k], (int, float)), k
    free = {n: e["maxmem"] - e["mem"] for n, e in nodes.items()}
    assert len(set(free.values())) == 3
    fresh.config(node_mem={"node3": 1024})
    st, _, body = fresh.api("GET", "/cluster/resources", {"type": "node"})
    assert {e["node"]: e["mem"] for e in body["data"]}["node3"] == 1024

    st, _, body = fresh.api("GET", "/cluster/resources", {"type": "vm"})
    (ct,) = body["data"]
    assert ct["id"] == "lxc/100" and ct["type"] == "lxc" and ct["vmid"] == 100
    assert ct["node"] == "node2" and ct["status"] == "running" and ct["name"] == "web"
    assert ct["tags"] == "a;b" and ct["maxmem"] == 1024 * 1024 * 1024
    st, _, body = fresh.api("GET", "/cluster/resources", {"type": "qemu"})
    assert body["errors"]["type"].startswith("value 'qemu' does not have a value")


# --------------------------------------------------------------------------- CT lifecycle


def test_plain_template_lifecycle(fresh):
    fresh.config(task_delay=0.2)
    vol = upload_template(fresh, "node1", "debian-12-standard_12.7-1_amd64.tar.zst",
                          b"\x28\xb5\x2f\xfd" + b"0" * 100)
    st, _, body = fresh.api("GET", "/nodes/node1/storage/local/content", {"content": "vztmpl"})
    (item,) = body["data"]
    assert item["volid"] == vol and item["format"] == "tzst" and item["content"] == "vztmpl"
    assert item["size"] == 104 and isinstance(item["ctime"], int)

    upid = create_ct(fresh, "node1", 200, vol, hostname="web1", memory=256, cores=2,
                     cpulimit="1.5", net0="name=eth0,bridge=vmbr0,ip=dhcp")
    m = UPID_RE.match(upid)
    assert m and m.group(1) == "node1" and m.group(6) == "vzcreate" and m.group(7) == "200"
    assert m.group(8) == "root@pam!runt"
    st, _, body = fresh.api("GET", "/nodes/node1/lxc/200/status/current")
    assert body["data"]["lock"] == "create" and body["data"]["status"] == "stopped"
    st, _, body = fresh.api("GET", "/nodes/node1/tasks/%s/status" % q(upid))
    assert body["data"]["status"] == "running" and "exitstatus" not in body["data"]
    t = fresh.wait_task(upid)
    assert t["exitstatus"] == "OK" and t["type"] == "vzcreate" and t["id"] == "200"
    assert t["user"] == "root@pam" and t["tokenid"] == "runt" and t["node"] == "node1"
    assert isinstance(t["pid"], int) and isinstance(t["pstart"], int)

    st, _, body = fresh.api("GET", "/nodes/node1/lxc/200/config")
    c = body["data"]
    assert c["hostname"] == "web1" and c["memory"] == 256 and c["cores"] == 2
    assert c["cpulimit"] == "1.5"                       # a number type: a string (6.13)
    assert c["rootfs"] == "local-lvm:vm-200-disk-0,size=4G" and c["unprivileged"] == 1
    assert re.match(r"^name=eth0,bridge=vmbr0,hwaddr=BC:24:11(:[0-9A-F]{2}){3},ip=dhcp,"
                    r"type=veth$", c["net0"])
    assert re.match(r"^[0-9a-f]{40}$", c["digest"]) and "lock" not in c
    assert c["ostype"] == "debian"

    st, _, body = fresh.api("GET", "/nodes/node1/lxc/200/interfaces")
    assert body == {"data": None}                       # null while stopped
    upid = fresh.api("POST", "/nodes/node1/lxc/200/status/start")[2]["data"]
    assert ":vzstart:200:" in upid
    assert fresh.wait_task(upid)["exitstatus"] == "OK"
    st, reason, _ = fresh.api("POST", "/nodes/node1/lxc/200/status/start")
    assert (st, reason) == (500, "CT 200 already running")
    st, _, body = fresh.api("GET", "/nodes/node1/lxc/200/status/current")
    s = body["data"]
    assert s["status"] == "running" and s["pid"] > 0 and s["ha"] == {"managed": 0}
    assert s["maxmem"] == 256 * 1024 * 1024 and s["cpus"] == 2 and s["type"] == "lxc"
    st, _, body = fresh.api("GET", "/nodes/node1/lxc")
    assert [e["vmid"] for e in body["data"]] == [200] and "ha" not in body["data"][0]
    assert fresh.api("GET", "/nodes/node2/lxc")[2] == {"data": []}
    st, reason, _ = fresh.api("GET", "/nodes/node2/lxc/200/status/current")
    assert reason == "Configuration file 'nodes/node2/lxc/200.conf' does not exist"

    st, reason, _ = fresh.api("DELETE", "/nodes/node1/lxc/200")
    assert (st, reason) == (500, "unable to destroy CT 200 - container is running")
    upid = fresh.api("POST", "/nodes/node1/lxc/200/status/shutdown",
                     {"timeout": 5, "forceStop": 1})[2]["data"]
    assert ":vzshutdown:200:" in upid and fresh.wait_task(upid)["exitstatus"] == "OK"
    st, reason, _ = fresh.api("POST", "/nodes/node1/lxc/200/status/stop")
    assert (st, reason) == (500, "CT 200 not running")
    st, reason, _ = fresh.api("POST", "/nodes/node1/lxc/200/status/shutdown")
    assert (st, reason) == (500, "CT 200 not running")
    upid = fresh.api("DELETE", "/nodes/node1/lxc/200",
                     {"purge": 1, "destroy-unreferenced-disks": 1})[2]["data"]
    assert ":vzdestroy:200:" in upid and fresh.wait_task(upid)["exitstatus"] == "OK"
    st, reason, _ = fresh.api("GET", "/nodes/node1/lxc/200/config")
    assert reason == "Configuration file 'nodes/node1/lxc/200.conf' does not exist"
    assert fresh.state()["storage"]["node1/local-lvm"] == []
    log = fresh.api("GET", "/nodes/node1/tasks/%s/log" % q(upid))[2]
    assert log["data"][-1]["t"] == "TASK OK"
    assert any("vm-200-disk-0" in line["t"] for line in log["data"])


def test_create_checks(fresh):
    vol = upload_template(fresh, "node1", "alpine-3.20-default_20240908_amd64.tar.xz", b"xz")
    fresh.add_ct(300, "node2")
    st, reason, body = fresh.api("POST", "/nodes/node1/lxc", {"vmid": 300, "ostemplate": vol,
                                                             "storage": "local-lvm"})
    assert (st, reason) == (500, "CT 300 already exists on node 'node2'")
    st, _, body = fresh.api("POST", "/nodes/node1/lxc", {"vmid": 301, "ostemplate": vol})
    assert (st, body["errors"]) == (400, {
        "storage": "storage 'local' does not support container directories"})
    st, _, body = fresh.api("POST", "/nodes/node1/lxc", {"vmid": 301, "ostemplate": vol,
                                                        "rootfs": "local:8"})
    assert body["errors"]["storage"] == "storage 'local' does not support container directories"
    st, reason, _ = fresh.api("POST", "/nodes/node1/lxc", {"vmid": 301, "ostemplate": vol,
                                                          "storage": "nfs"})
    assert (st, reason) == (500, "storage 'nfs' does not exist")
    st, reason, _ = fresh.api("POST", "/nodes/node1/lxc", {"vmid": 301,
                                                          "ostemplate": "local:vztmpl/x.iso",
                                                          "storage": "local-lvm"})
    assert reason == "unable to parse directory volume name 'vztmpl/x.iso'"
    st, reason, _ = fresh.api("POST", "/nodes/node1/lxc", {"vmid": 301,
                                                          "ostemplate": "/tmp/x.tar",
                                                          "storage": "local-lvm"})
    assert reason.startswith("Only root can pass arbitrary filesystem paths.")
    # a template only on node1 cannot create on node2; the CT is gone again after the error
    upid = create_ct(fresh, "node2", 302, vol)
    t = fresh.wait_task(upid)
    assert t["exitstatus"] == "unable to create CT 302 - can't find file '%s'" % vol
    log = fresh.api("GET", "/nodes/node2/tasks/%s/log" % q(upid))[2]["data"]
    assert log[-1]["t"] == "TASK ERROR: " + t["exitstatus"]
    assert "302" not in fresh.state()["cts"]
    assert fresh.state()["storage"]["node2/local-lvm"] == []
    # rootfs on local-lvm with size, and a mount point
    upid = create_ct(fresh, "node1", 303, vol, rootfs="local-lvm:2",
                     mp0="local-lvm:1,mp=/data")
    assert fresh.wait_task(upid)["exitstatus"] == "OK"
    c = fresh.api("GET", "/nodes/node1/lxc/303/config")[2]["data"]
    assert c["rootfs"] == "local-lvm:vm-303-disk-0,size=2G"
    assert c["mp0"] == "local-lvm:vm-303-disk-1,mp=/data,size=1G"
    st, _, body = fresh.api("GET", "/nodes/node1/storage/local-lvm/content")
    assert [(v["volid"], v["vmid"], v["content"], v["format"]) for v in body["data"]] == [
        ("local-lvm:vm-303-disk-0", 303, "rootdir", "raw"),
        ("local-lvm:vm-303-disk-1", 303, "rootdir", "raw")]
    # Feature flags (PVE::LXC::check_ct_modify_config_perm): an API token, even root@pam's,
    # may set only nesting, and only on an unprivileged CT (the default at create).
    priv = "changing feature flags for privileged container is only allowed for root@pam"
    other = "changing feature flags (except nesting) is only allowed for root@pam"
    for params, msg in (({"unprivileged": 0, "features": "nesting=1"}, priv),
                        ({"features": "nesting=1,keyctl=1"}, other)):
        st, reason, _ = fresh.api("POST", "/nodes/node1/lxc", dict(
            vmid=304, ostemplate=vol, storage="local-lvm", **params))
        assert (st, reason) == (403, "Permission check failed (%s)" % msg), params
    assert "304" not in fresh.state()["cts"]
    assert fresh.api("GET", "/nodes/node1/lxc/303/config")[2]["data"]["unprivileged"] == 1
    st, reason, _ = fresh.api("PUT", "/nodes/node1/lxc/303/config", {"features": "fuse=1"})
    assert (st, reason) == (403, "Permission check failed (%s)" % other)
    assert fresh.api("PUT", "/nodes/node1/lxc/303/config", {"features": "nesting=1"})[0] == 200


def test_oci_create_overwrites_entrypoint_and_env(fresh, tmp_path):
    data = busybox_image(tmp_path / "bb.tar", {"StopSignal": "SIGINT"})
    vol = upload_template(fresh, "node1", "busybox_1.36.tar", data)
    st, _, body = fresh.api("GET", "/nodes/node1/storage/local/content")
    assert [(v["volid"], v["format"]) for v in body["data"]] == [(vol, "tar")]
    upid = create_ct(fresh, "node1", 400, vol, entrypoint="/bin/true", env="A=1\0B=2",
                     net0="name=eth0,bridge=vmbr0,ip=10.1.2.3/24,gw=10.1.2.1",
                     net1="name=eth1,bridge=vmbr1,ip=dhcp,host-managed=0", start=1)
    t = fresh.wait_task(upid)
    assert t["exitstatus"] == "OK"
    log = [x["t"] for x in fresh.api("GET", "/nodes/node1/tasks/%s/log" % q(upid))[2]["data"]]
    assert "Detected OCI archive" in log
    assert "Auto-Enabling host-managed network for network device net0." in log
    c = fresh.api("GET", "/nodes/node1/lxc/400/config")[2]["data"]
    assert c["entrypoint"] == "/bin/sh -c 'sleep 1000'"     # the image's, not the request's
    assert c["env"] == "PATH=/bin\0GREETING=hello world"
    assert c["cmode"] == "console"
    assert "host-managed=1" in c["net0"] and "host-managed=0" in c["net1"]
    assert ["lxc.init.cwd", "/root"] in c["lxc"] and ["lxc.signal.halt", "SIGINT"] in c["lxc"]
    # start=1 is a separate vzstart task (notes 6.2)
    tasks = fresh.state()["tasks"]
    starts = [x for x in tasks if x["type"] == "vzstart" and x["id"] == "400"]
    assert len(starts) == 1
    assert fresh.wait_task(starts[0]["upid"])["exitstatus"] == "OK"
    # a PUT after the create sets the client's own entrypoint and env
    st, _, _ = fresh.api("PUT", "/nodes/node1/lxc/400/config",
                         {"entrypoint": "/bin/sh -c 'echo hi'", "env": "X=1\0Y=two words"})
    assert st == 200
    c = fresh.api("GET", "/nodes/node1/lxc/400/config")[2]["data"]
    assert c["entrypoint"] == "/bin/sh -c 'echo hi'" and c["env"] == "X=1\0Y=two words"
    ifs = fresh.api("GET", "/nodes/node1/lxc/400/interfaces")[2]["data"]
    names = [i["name"] for i in ifs]
    assert names == ["lo", "eth0", "eth1"]
    assert ifs[2]["inet"] == "10.100.1.144/16"            # ip=dhcp: a simulated lease
    eth0 = ifs[1]
    assert eth0["hwaddr"] == eth0["hardware-address"] == eth0["hwaddr"].lower()
    assert eth0["hwaddr"].upper() in c["net0"]
    assert eth0["inet"] == "10.1.2.3/24"
    assert {"ip-address": "10.1.2.3", "ip-address-type": "inet", "prefix": 24} in \
        eth0["ip-addresses"]
    assert any(a["ip-address"].startswith("fe80::") for a in eth0["ip-addresses"])


def test_config_put_digest_delete_and_errors(fresh):
    fresh.add_ct(500, "node1", {"hostname": "a", "memory": 512, "description": "x",
                                "rootfs": "local-lvm:vm-500-disk-0,size=4G"})
    c = fresh.api("GET", "/nodes/node1/lxc/500/config")[2]["data"]
    st, reason, body = fresh.api("PUT", "/nodes/node1/lxc/500/config",
                                 {"memory": 1024, "digest": "0" * 40})
    assert (st, reason) == (500, "detected modified configuration - file changed by other "
                                 "user? Try again.")
    st, reason, body = fresh.api("PUT", "/nodes/node1/lxc/500/config",
                                 {"memory": 1024, "digest": c["digest"], "delete": "description"})
    assert (st, body) == (200, {"data": None})          # synchronous, returns null
    c2 = fresh.api("GET", "/nodes/node1/lxc/500/config")[2]["data"]
    assert c2["memory"] == 1024 and "description" not in c2 and c2["digest"] != c["digest"]
    st, _, body = fresh.api("PUT", "/nodes/node1/lxc/500/config", {"delete": "colour"})
    assert body["errors"] == {"delete": "unknown option 'colour'"}
    st, reason, _ = fresh.api("PUT", "/nodes/node1/lxc/500/config", {})
    assert reason == "no options specified"
    st, reason, _ = fresh.api("PUT", "/nodes/node1/lxc/501/config", {"memory": 600})
    assert reason == "Configuration file 'nodes/node1/lxc/501.conf' does not exist"


def test_config_lock_waits_for_the_task(fresh):
    fresh.config(task_delay=1.5, lock_timeout=0.5)
    fresh.add_ct(600, "node1", {"hostname": "a", "memory": 512})
    upid = fresh.api("POST", "/nodes/node1/lxc/600/status/start")[2]["data"]
    time.sleep(0.2)
    t0 = time.monotonic()
    st, reason, _ = fresh.api("PUT", "/nodes/node1/lxc/600/config", {"memory": 700})
    assert (st, reason) == (500, "can't lock file '/run/lock/lxc/pve-config-600.lock' - got "
                                 "timeout")
    assert time.monotonic() - t0 > 0.4      # it waited for the lock, then gave up
    fresh.config(lock_timeout=10)
    t0 = time.monotonic()
    st, _, _ = fresh.api("PUT", "/nodes/node1/lxc/600/config", {"memory": 700})
    assert st == 200 and time.monotonic() - t0 > 0.3      # waited for vzstart to end
    assert fresh.wait_task(upid)["exitstatus"] == "OK"
    # the config lock of a create: PUT, start and delete all refuse it
    vol = upload_template(fresh, "node1", "debian-12-standard_12.7-1_amd64.tar.zst", b"z")
    fresh.config(task_delay=1.0, lock_timeout=0.2)
    upid = create_ct(fresh, "node1", 601, vol)
    st, reason, _ = fresh.api("DELETE", "/nodes/node1/lxc/601")
    assert (st, reason) == (500, "CT is locked (create)")
    st, reason, _ = fresh.api("PUT", "/nodes/node1/lxc/601/config", {"memory": 700})
    assert reason.startswith("can't lock file '/run/lock/lxc/pve-config-601.lock'")
    fresh.config(lock_timeout=10)
    start = fresh.api("POST", "/nodes/node1/lxc/601/status/start")[2]["data"]
    assert fresh.wait_task(upid)["exitstatus"] == "OK"
    assert fresh.wait_task(start)["exitstatus"] == "OK"   # waited for the create's lock


def test_start_locked_ct_fails_in_the_task(fresh):
    fresh.add_ct(650, "node1", {"hostname": "a", "lock": "backup"})
    upid = fresh.api("POST", "/nodes/node1/lxc/650/status/start")[2]["data"]
    assert fresh.wait_task(upid)["exitstatus"] == "CT is locked (backup)"
    st, reason, _ = fresh.api("DELETE", "/nodes/node1/lxc/650")
    assert reason == "CT is locked (backup)"
    # starting an unknown CT is accepted, then the task fails
    upid = fresh.api("POST", "/nodes/node1/lxc/651/status/start")[2]["data"]
    assert fresh.wait_task(upid)["exitstatus"] == \
        "Configuration file 'nodes/node1/lxc/651.conf' does not exist"


# --------------------------------------------------------------------------- tasks


def test_task_endpoints(fresh):
    fresh.config(task_delay=5)
    fresh.add_ct(700, "node1", {"hostname": "a"})
    upid = fresh.api("POST", "/nodes/node1/lxc/700/status/start")[2]["data"]
    st, _, body = fresh.api("GET", "/nodes/node1/tasks/nonsense/status")
    assert (st, body["errors"]) == (400, {"upid": "unable to parse worker upid"})
    other = "UPID:node1:000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam!ci:"
    st, _, body = fresh.api("GET", "/nodes/node1/tasks/%s/status" % q(other))
    assert (st, body["errors"]) == (400, {"upid": "no such task"})
    st, _, body = fresh.api("GET", "/nodes/node2/tasks/%s/status" % q(upid))
    assert body["errors"] == {"upid": "no such task"}       # asked on the wrong node
    st, _, body = fresh.api("GET", "/nodes/node1/tasks/%s/log" % q(other))
    assert st == 200 and body["data"] == [
        {"n": 1, "t": "unable to open file - No such file or directory"}]
    # DELETE stops a running task; it ends with an error and the CT stays stopped
    st, _, body = fresh.api("DELETE", "/nodes/node1/tasks/%s" % q(upid))
    assert (st, body) == (200, {"data": None})
    t = fresh.wait_task(upid, timeout=3)
    assert t["exitstatus"] == "received interrupt"
    assert fresh.state()["cts"]["700"]["status"] == "stopped"
    # the unescaped UPID works in the path too (':' '@' '!' are legal there)
    st, _, _ = fresh.api("GET", "/nodes/node1/tasks/%s/status" % upid)
    assert st == 200


def test_task_log_paging(fresh):
    vol = upload_template(fresh, "node1", "debian-12-standard_12.7-1_amd64.tar.zst", b"z" * 10)
    upid = create_ct(fresh, "node1", 710, vol, rootfs="local-lvm:1", mp0="local-lvm:1,mp=/a",
                     mp1="local-lvm:1,mp=/b")
    fresh.wait_task(upid)
    st, _, full = fresh.api("GET", "/nodes/node1/tasks/%s/log" % q(upid))
    n = full["total"]
    assert n >= 5 and [x["n"] for x in full["data"]] == list(range(1, n + 1))
    st, _, part = fresh.api("GET", "/nodes/node1/tasks/%s/log" % q(upid),
                            {"start": 2, "limit": 2})
    assert part["data"] == full["data"][2:4] and part["total"] == n
    st, _, tail = fresh.api("GET", "/nodes/node1/tasks/%s/log" % q(upid), {"start": n - 1})
    assert tail["data"] == [{"n": n, "t": "TASK OK"}]


def test_upid_format_roundtrip():
    upid = "UPID:node1:000A1B2C:0012D687:6560F00D:vzcreate:101:root@pam!ci:"
    m = UPID_RE.match(upid)
    assert m and int(m.group(3), 16) == 662316 and int(m.group(4), 16) == 1234567
    assert int(m.group(5), 16) == 1700851725
    assert "UPID:%s:%08X:%08X:%08X:%s:%s:%s:" % ("node1", 662316, 1234567, 1700851725,
                                                 "vzcreate", "101", "root@pam!ci") == upid


# --------------------------------------------------------------------------- faults


def test_nextid_race(fresh):
    vol = upload_template(fresh, "node1", "debian-12-standard_12.7-1_amd64.tar.zst", b"z")
    fresh.nextid_stale(1)
    vmid = int(fresh.api("GET", "/cluster/nextid")[2]["data"])
    st, reason, body = fresh.api("POST", "/nodes/node2/lxc", {"vmid": vmid, "ostemplate": vol,
                                                             "storage": "local-lvm"})
    assert (st, reason) == (500, "CT %d already exists on node 'node1'" % vmid)
    assert body["message"] == reason + "\n"
    nxt = int(fresh.api("GET", "/cluster/nextid")[2]["data"])
    assert nxt == vmid + 1
    assert fresh.api("GET", "/cluster/nextid")[2]["data"] == str(nxt)   # only once


def test_parallel_creates_with_nextid_retry(fresh):
    """Clients racing for ids: the create's own check decides; retrying with the next id
    gives every client its own CT."""
    for node in ("node1", "node2", "node3"):
        vol = upload_template(fresh, node, "debian-12-standard_12.7-1_amd64.tar.zst", b"z")
    fresh.config(task_delay=0.05)
    got, errors = [], []

    def client(n):
        conn = fresh.connection()
        try:
            for _ in range(30):
                vmid = int(fresh.api("GET", "/cluster/nextid", conn=conn)[2]["data"])
                st, reason, body = fresh.api("POST", "/nodes/node%d/lxc" % (1 + n % 3), {
                    "vmid": vmid, "ostemplate": vol, "storage": "local-lvm"}, conn=conn)
                if st == 500 and "already exists" in reason:
                    conn.close()
                    conn = fresh.connection()
                    continue
                assert st == 200, (st, reason)
                got.append((vmid, body["data"]))
                return
            errors.append("no id after 30 tries")
        except Exception as e:
            errors.append(repr(e))
        finally:
            conn.close()

    ths = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    assert errors == []
    assert len({v for v, _ in got}) == 12, got
    for vmid, upid in got:
        assert fresh.wait_task(upid)["exitstatus"] == "OK"
    assert sorted(int(v) for v in fresh.state()["cts"]) == sorted(v for v, _ in got)


def test_offline_node_595_and_quorum(fresh):
    fresh.add_ct(800, "node2", {"hostname": "a"}, "running")
    fresh.set_node("node2", online=False)
    line, h, body, closed = raw_request(fresh, req_bytes(fresh, "GET", "/nodes/node2/lxc"))
    assert line == "HTTP/1.1 595 No route to host"
    assert body == b"" and "content-length" not in h and closed
    # proxied before any check: even a bad request gets 595
    st, reason, body = fresh.api("POST", "/nodes/node2/lxc", {"bogus": 1})
    assert (st, reason, body) == (595, "No route to host", None)
    st, _, body = fresh.api("GET", "/cluster/resources")
    by_id = {e["id"]: e for e in body["data"]}
    assert by_id["node/node2"]["status"] == "offline"
    assert "mem" not in by_id["node/node2"] and "uptime" not in by_id["node/node2"]
    assert by_id["lxc/800"]["status"] == "unknown"
    assert {n["node"]: n["status"] for n in fresh.api("GET", "/nodes")[2]["data"]} == {
        "node1": "online", "node2": "offline", "node3": "online"}
    # two of three up: still quorate, writes on node1 work
    fresh.add_ct(801, "node1", {"hostname": "b"})
    upid = fresh.api("POST", "/nodes/node1/lxc/801/status/start")[2]["data"]
    assert fresh.wait_task(upid)["exitstatus"] == "OK"
    fresh.set_node("node3", online=False)
    st, reason, _ = fresh.api("PUT", "/nodes/node1/lxc/801/config", {"memory": 600})
    assert (st, reason) == (500, "cluster not ready - no quorum?")
    st, reason, _ = fresh.api("POST", "/nodes/node1/lxc", {"vmid": 802, "ostemplate":
                                                          "local:vztmpl/a.tar"})
    assert reason == "cluster not ready - no quorum?"
    st, reason, _ = fresh.api("DELETE", "/nodes/node1/lxc/801", {"force": 1})
    assert reason == "cluster not ready - no quorum?"
    assert fresh.api("GET", "/nodes/node1/lxc/801/config")[0] == 200   # reads work
    # stopping needs no quorum on a real PVE either
    upid = fresh.api("POST", "/nodes/node1/lxc/801/status/stop")[2]["data"]
    assert fresh.wait_task(upid)["exitstatus"] == "OK"
    st, reason, _ = fresh.api("POST", "/nodes/node1/lxc/801/status/start")
    assert reason == "cluster not ready - no quorum?"
    fresh.set_node("node2", online=True)
    fresh.set_node("node3", online=True)
    assert fresh.api("GET", "/nodes/node2/lxc")[0] == 200
    st, reason, _ = fresh.api("GET", "/nodes/node9/lxc")
    assert reason.startswith("hostname lookup 'node9' failed")


def test_two_node_cluster_loses_quorum_with_one_down():
    with PveFake(nodes=("node1", "node2")) as p:
        p.add_ct(100, "node1", {"hostname": "a"})
        p.set_node("node2", online=False)
        st, reason, _ = p.api("POST", "/nodes/node1/lxc/100/status/start")
        assert (st, reason) == (500, "cluster not ready - no quorum?")


def test_fail_injection(fresh):
    fresh.fail("POST", "/nodes/node1/lxc", 500, "got lost somewhere", count=2)
    for _ in range(2):
        st, reason, body = fresh.api("POST", "/nodes/node1/lxc", {"vmid": 1})
        assert (st, reason) == (500, "got lost somewhere")
        assert body == {"data": None, "message": "got lost somewhere\n"}
    st, _, body = fresh.api("POST", "/nodes/node1/lxc", {"vmid": 1})
    assert st == 400                                      # the schema again
    fresh.fail("GET", "/nodes/node3/*", 596, count=1)
    line, h, body, closed = raw_request(fresh, req_bytes(fresh, "GET", "/nodes/node3/lxc"))
    assert line.startswith("HTTP/1.1 596 ") and body == b"" and closed
    assert fresh.api("GET", "/nodes/node3/lxc")[0] == 200
    fresh.fail("GET", "/version", 503, "Service Unavailable\nsecond line")
    st, reason, body = fresh.api("GET", "/version")
    assert (st, reason) == (503, "Service Unavailable")
    assert body["message"] == "Service Unavailable\nsecond line\n"


def test_task_fail_injection(fresh):
    fresh.add_ct(900, "node1", {"hostname": "a"})
    fresh.task_fail("vzstart", "command 'systemctl start pve-container@900' failed: exit code 1")
    upid = fresh.api("POST", "/nodes/node1/lxc/900/status/start")[2]["data"]
    t = fresh.wait_task(upid)
    assert t["exitstatus"] == "command 'systemctl start pve-container@900' failed: exit code 1"
    log = fresh.api("GET", "/nodes/node1/tasks/%s/log" % q(upid))[2]["data"]
    assert log[-1]["t"] == "TASK ERROR: " + t["exitstatus"]
    assert fresh.state()["cts"]["900"]["status"] == "stopped"
    upid = fresh.api("POST", "/nodes/node1/lxc/900/status/start")[2]["data"]
    assert fresh.wait_task(upid)["exitstatus"] == "OK"    # count 1: the next one works


def test_latency_is_per_request_and_parallel(fresh):
    fresh.config(latency=0.4)
    t0 = time.monotonic()
    ths = [threading.Thread(target=lambda: fresh.api("GET", "/version")) for _ in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    dt = time.monotonic() - t0
    # Each waits its own 0.4 s, in parallel: well under the 1.6 s of one after another.
    assert 0.4 <= dt < 1.6


def test_calls_log(fresh):
    fresh.reset_calls()
    fresh.api("GET", "/cluster/nextid", {"vmid": 123})
    fresh.api("GET", "/version", token="root@pam!runt=no")
    fresh.api("POST", "/nodes/node1/lxc", {"vmid": 5})
    calls = fresh.calls()
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("GET", "/cluster/nextid", 200), ("GET", "/version", 401),
        ("POST", "/nodes/node1/lxc", 400)]
    assert calls[0]["params"] == {"vmid": "123"} and calls[2]["params"] == {"vmid": "5"}
    assert all(isinstance(c["ms"], (int, float)) for c in calls)
    fresh.reset_calls()
    assert fresh.calls() == []


# --------------------------------------------------------------------------- storage


def test_upload_and_storage_content(fresh):
    fresh.config(task_delay=0.5)
    st, _, body = fresh.upload("node1", "local", "my image.tar", b"0" * 1000)
    upid = body["data"]
    assert re.match(r"^UPID:node1:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:imgcopy::root@pam!runt:$",
                    upid)
    # the volume appears when the task ends
    assert fresh.api("GET", "/nodes/node1/storage/local/content")[2]["data"] == []
    t = fresh.wait_task(upid)
    assert t["exitstatus"] == "OK" and t["id"] == ""
    (item,) = fresh.api("GET", "/nodes/node1/storage/local/content")[2]["data"]
    assert item["volid"] == "local:vztmpl/my_image.tar" and item["size"] == 1000
    log = [x["t"] for x in fresh.api("GET", "/nodes/node1/tasks/%s/log" % q(upid))[2]["data"]]
    assert "file size is: 1000" in log and log[-1] == "TASK OK"
    assert fresh.api("GET", "/nodes/node2/storage/local/content")[2]["data"] == []
    # errors
    fresh.config(task_delay=0)
    st, _, body = fresh.upload("node1", "local", "x.qcow2", b"0")
    assert body["errors"] == {"filename": "wrong file extension"}
    st, reason, _ = fresh.upload("node1", "local-lvm", "x.tar", b"0")
    assert reason == "storage 'local-lvm' does not support 'vztmpl' content"
    st, reason, _ = fresh.api("POST", "/nodes/node1/storage/local/upload",
                              {"content": "vztmpl", "filename": "a.tar"})
    assert st == 500 and reason.startswith("upload 'Content-Type '")
    # an offline target node: accepted, then the imgcopy task fails
    fresh.set_node("node3", online=False)
    st, _, body = fresh.upload("node3", "local", "y.tar", b"0")
    assert st == 200
    t = fresh.wait_task(body["data"])
    assert t["exitstatus"].startswith("can't activate storage 'local' on node 'node3'")
    fresh.set_node("node3", online=True)
    # delete: a task; a missing file fails in it
    st, _, body = fresh.api("DELETE", "/nodes/node1/storage/local/content/local:vztmpl/"
                                      "my_image.tar")
    t = fresh.wait_task(body["data"])
    assert t["type"] == "imgdel" and t["id"] == "local" and t["exitstatus"] == "OK"
    assert fresh.api("GET", "/nodes/node1/storage/local/content")[2]["data"] == []
    st, _, body = fresh.api("DELETE", "/nodes/node1/storage/local/content/%s"
                            % q("local:vztmpl/my_image.tar"))
    assert fresh.wait_task(body["data"])["exitstatus"].startswith("unlink ")
    st, reason, _ = fresh.api("DELETE", "/nodes/node1/storage/local/content/vztmpl/none.tar",
                              {"delay": 5})
    assert st == 500 and reason.startswith("unlink ")


def test_control_ct_behind_the_back(fresh):
    fresh.add_ct(950, "node3", {"hostname": "sneaky", "memory": 64}, "running")
    st, _, body = fresh.api("GET", "/nodes/node3/lxc")
    assert [(e["vmid"], e["status"], e["name"]) for e in body["data"]] == [
        (950, "running", "sneaky")]
    s = fresh.state()
    assert s["cts"]["950"]["node"] == "node3" and s["cts"]["950"]["status"] == "running"
    assert s["cts"]["950"]["config"]["memory"] == "64" and s["cts"]["950"]["lock"] is None
    assert s["nodes"] == {"node1": {"online": True}, "node2": {"online": True},
                          "node3": {"online": True}}


def test_sigterm_exits_zero():
    p = PveFake().start()
    try:
        assert p.api("GET", "/version")[0] == 200
    finally:
        assert p.stop() == 0


# --------------------------------------------------------------------------- --run-cts

HAVE_LXC = os.geteuid() == 0 and all(
    shutil.which(t) for t in ("lxc-start", "lxc-stop", "lxc-info", "nsenter", "ip"))
needs_lxc = pytest.mark.skipif(not HAVE_LXC, reason="--run-cts needs root and the lxc tools")
BUSYBOX = "/bin/busybox"


def free_subnet():
    """A 10.88.N.0/24 no interface on this host has an address in."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
    used = {a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])}
    taken = {int(ip.split(".")[2]) for ip in used if ip.startswith("10.88.")}
    for n in random.sample(range(100, 250), 150):
        if n not in taken:
            return "10.88.%d" % n
    pytest.skip("no free 10.88.N.0/24")


def host_leftovers(port):
    """What a fake on @port could leave on the host: links and cgroup dirs."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [ln.split(":")[1].strip().split("@")[0] for ln in links.splitlines()]
    ours = [n for n in names if n == "pvf%d" % port or n.startswith("pvf%dn" % port)
            or n.startswith("pw%04x" % port)]
    cgroups = []
    for depth in range(4):
        cgroups += glob.glob("/sys/fs/cgroup/" + "*/" * depth + "pvefake-%d" % port)
    return ours, cgroups


@pytest.fixture(scope="module")
def ctpve(tmp_path_factory):
    """A fake that runs its CTs, with one busybox OCI image uploaded to node1."""
    if not HAVE_LXC:
        pytest.skip("--run-cts needs root and the lxc tools")
    if not os.path.isfile(BUSYBOX):
        pytest.skip("no static busybox at %s" % BUSYBOX)
    net = free_subnet()
    p = PveFake(run_cts=True, bridges=["vmbr0=%s.1/24" % net], tokens=[TOKEN])
    p.start()
    p.net = net
    try:
        img = tmp_path_factory.mktemp("img") / "web.tar"
        data = busybox_image(img, {"Cmd": [
            'echo "$GREETING" > /tmp/index.html; hostname > /tmp/host; '
            'httpd -p 8080 -h /tmp; trap "exit 0" TERM; while :; do sleep 1; done']})
        p.web = upload_template(p, "node1", "web_1.0.tar", data)
        yield p
    finally:
        port = p.port
        assert p.stop() == 0
        assert host_leftovers(port) == ([], [])


def wait_for(cond, timeout=15.0, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(step)


def http_get(url, timeout=2.0):
    return urllib.request.urlopen(url, timeout=timeout).read()


@needs_lxc
def test_run_ct_reachable_over_the_bridge(ctpve):
    ip = ctpve.net + ".10"
    upid = create_ct(ctpve, "node1", 1001, ctpve.web, hostname="web1", memory=96, cores=1,
                     net0="name=eth0,bridge=vmbr0,ip=%s/24,gw=%s.1" % (ip, ctpve.net),
                     start=1)
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    start = [t for t in ctpve.state()["tasks"] if t["type"] == "vzstart" and t["id"] == "1001"]
    assert ctpve.wait_task(start[0]["upid"])["exitstatus"] == "OK"
    s = ctpve.api("GET", "/nodes/node1/lxc/1001/status/current")[2]["data"]
    assert s["status"] == "running"
    pid = s["pid"]
    # the real init of the CT: its own pid and uts namespaces, the image's rootfs
    assert os.readlink("/proc/%d/ns/pid" % pid) != os.readlink("/proc/self/ns/pid")
    assert os.readlink("/proc/%d/ns/net" % pid) != os.readlink("/proc/self/ns/net")
    assert Path("/proc/%d/root/bin/busybox" % pid).is_file()
    assert s["mem"] > 0 and s["maxmem"] == 96 * 1024 * 1024
    assert s["uptime"] >= 0
    body = wait_for(lambda: _try_get("http://%s:8080/index.html" % ip))
    assert body == b"hello world\n"                      # the image's Env reached the init
    assert http_get("http://%s:8080/host" % ip) == b"web1\n"
    ifs = ctpve.api("GET", "/nodes/node1/lxc/1001/interfaces")[2]["data"]
    eth0 = next(i for i in ifs if i["name"] == "eth0")
    assert eth0["inet"] == ip + "/24"
    c = ctpve.api("GET", "/nodes/node1/lxc/1001/config")[2]["data"]
    assert eth0["hwaddr"] == eth0["hardware-address"] == \
        re.search(r"hwaddr=([0-9A-F:]+)", c["net0"]).group(1).lower()
    # memory as a cgroup limit
    limit = _cgroup_memory_limit(pid)
    if limit is not None:
        assert limit == 96 * 1024 * 1024
    # shutdown: SIGTERM to the init, which traps it
    upid = ctpve.api("POST", "/nodes/node1/lxc/1001/status/shutdown", {"timeout": 10})[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    assert ctpve.api("GET", "/nodes/node1/lxc/1001/status/current")[2]["data"]["status"] == \
        "stopped"
    assert not Path("/proc/%d" % pid).exists() or _not_same_process(pid)
    assert ctpve.api("GET", "/nodes/node1/lxc/1001/interfaces")[2]["data"] is None
    # starts again from the same rootfs; a forced delete stops and removes it
    upid = ctpve.api("POST", "/nodes/node1/lxc/1001/status/start")[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    assert wait_for(lambda: _try_get("http://%s:8080/index.html" % ip)) == b"hello world\n"
    upid = ctpve.api("DELETE", "/nodes/node1/lxc/1001", {"force": 1, "purge": 1})[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    assert not (Path(ctpve.dir) / "cts" / "1001").exists()
    assert not (Path(ctpve.dir) / "lxc" / "1001").exists()


def _try_get(url):
    try:
        return http_get(url, timeout=1.0)
    except OSError:
        return None


def _not_same_process(pid):
    try:
        return "busybox" not in os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return True


def _cgroup_memory_limit(pid):
    for line in Path("/proc/%d/cgroup" % pid).read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if "memory" in ctrls.split(","):
            f = Path("/sys/fs/cgroup/memory%s/memory.limit_in_bytes" % path)
            return int(f.read_text()) if f.exists() else None
        if ctrls == "":
            f = Path("/sys/fs/cgroup%s/memory.max" % path)
            if f.exists():
                return int(f.read_text())
    return None


@needs_lxc
def test_run_ct_init_exit_shows_stopped_and_kill(ctpve, tmp_path):
    data = busybox_image(tmp_path / "short.tar", {"Entrypoint": ["/bin/sleep"], "Cmd": ["2"]},
                         gzip_layers=False)
    vol = upload_template(ctpve, "node1", "short_1.tar", data)
    upid = create_ct(ctpve, "node1", 1002, vol)
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    c = ctpve.api("GET", "/nodes/node1/lxc/1002/config")[2]["data"]
    assert c["entrypoint"] == "/bin/sleep 2"
    upid = ctpve.api("POST", "/nodes/node1/lxc/1002/status/start")[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    assert ctpve.api("GET", "/nodes/node1/lxc/1002/status/current")[2]["data"]["status"] == \
        "running"
    st = wait_for(lambda: ctpve.api("GET", "/nodes/node1/lxc/1002/status/current")[2]["data"]
                  ["status"] == "stopped", timeout=10)
    assert st
    st, reason, _ = ctpve.api("POST", "/nodes/node1/lxc/1002/status/stop")
    assert reason == "CT 1002 not running"
    # PID 1 ignores SIGTERM it has no handler for: shutdown without forceStop fails
    ctpve.api("PUT", "/nodes/node1/lxc/1002/config", {"entrypoint": "/bin/sleep 1000"})
    upid = ctpve.api("POST", "/nodes/node1/lxc/1002/status/start")[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    upid = ctpve.api("POST", "/nodes/node1/lxc/1002/status/shutdown", {"timeout": 1})[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "container did not stop"
    assert ctpve.api("GET", "/nodes/node1/lxc/1002/status/current")[2]["data"]["status"] == \
        "running"
    upid = ctpve.api("POST", "/nodes/node1/lxc/1002/status/stop")[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    assert ctpve.api("GET", "/nodes/node1/lxc/1002/status/current")[2]["data"]["status"] == \
        "stopped"
    upid = ctpve.api("DELETE", "/nodes/node1/lxc/1002")[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"


@needs_lxc
def test_run_ct_layers_whiteouts_and_quoted_entrypoint(ctpve, tmp_path):
    base = busybox_layer() + [
        ("data", "dir", None, 0o755), ("data/a", "file", b"a", 0o644),
        ("data/b", "file", b"b", 0o600), ("opq", "dir", None, 0o755),
        ("opq/x", "file", b"x", 0o644), ("lnk", "symlink", "data", None)]
    top = [("data/.wh.a", "whiteout", None, None), ("opq/.wh..wh..opq", "whiteout", None, None),
           ("opq/y", "file", b"y", 0o644), ("data/c", "hardlink", "data/b", None),
           ("lnk/d", "file", b"through a symlink", 0o644),
           ("../escape", "file", b"no", 0o644)]
    img = tmp_path / "layers.tar"
    build_oci_archive(img, [base, top], {
        "Entrypoint": ["/bin/sh", "-c", 'echo "$1 $2" > /tmp/args; exec sleep 1000', "sh",
                       "two words", "it's"]}, gzip_layers=True, nested_index=True)
    vol = upload_template(ctpve, "node1", "layers_1.tar", img.read_bytes())
    upid = create_ct(ctpve, "node1", 1003, vol)
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    root = Path(ctpve.dir) / "cts" / "1003" / "rootfs"
    assert sorted(os.listdir(root / "data")) == ["b", "c", "d"]
    assert os.listdir(root / "opq") == ["y"]
    assert (root / "data" / "b").stat().st_mode & 0o777 == 0o600
    # unprivileged (the default): unpacked with the CT's id map, root is 100000 on the host
    assert (os.stat(root).st_uid, (root / "data" / "b").stat().st_gid) == (100000, 100000)
    assert os.stat(root / "data" / "c").st_ino == os.stat(root / "data" / "b").st_ino
    assert (root / "data" / "d").read_bytes() == b"through a symlink"
    assert not (Path(ctpve.dir) / "cts" / "1003" / "escape").exists()
    assert os.readlink(root / "bin" / "sh") == "busybox"
    # PVE writes the entrypoint shell-quoted; LXC splits it without escapes, so an argument
    # with a quote in it arrives cut (the same on a real PVE)
    c = ctpve.api("GET", "/nodes/node1/lxc/1003/config")[2]["data"]
    assert c["entrypoint"] == ("/bin/sh -c 'echo \"$1 $2\" > /tmp/args; exec sleep 1000' sh "
                               "'two words' 'it'\\''s'")
    upid = ctpve.api("POST", "/nodes/node1/lxc/1003/status/start")[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    args = wait_for(lambda: (root / "tmp" / "args").exists() and
                    (root / "tmp" / "args").read_text())
    assert args == "two words it\n"
    upid = ctpve.api("DELETE", "/nodes/node1/lxc/1003", {"force": 1})[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    assert not root.exists()


@needs_lxc
def test_run_ct_unknown_bridge_fails_the_start(ctpve):
    upid = create_ct(ctpve, "node1", 1004, ctpve.web, net0="name=eth0,bridge=vmbr7,ip=dhcp")
    assert ctpve.wait_task(upid)["exitstatus"] == "OK"
    upid = ctpve.api("POST", "/nodes/node1/lxc/1004/status/start")[2]["data"]
    assert ctpve.wait_task(upid)["exitstatus"] == "bridge 'vmbr7' does not exist"
    assert ctpve.api("GET", "/nodes/node1/lxc/1004/status/current")[2]["data"]["status"] == \
        "stopped"
    ctpve.wait_task(ctpve.api("DELETE", "/nodes/node1/lxc/1004")[2]["data"])


@needs_lxc
def test_run_ct_sigterm_cleans_up_everything(tmp_path):
    if not os.path.isfile(BUSYBOX):
        pytest.skip("no static busybox at %s" % BUSYBOX)
    net = free_subnet()
    net1 = free_subnet()
    while net1 == net:
        net1 = free_subnet()
    p = PveFake(run_cts=True, bridges=["vmbr0=%s.1/24" % net, "vmbr1=%s.1/24" % net1])
    p.start()
    port = p.port
    try:
        st = p.state()
        hosts = [b["host"] for b in st["bridges"].values()]
        assert hosts == ["pvf%d" % port, "pvf%dn1" % port]
        data = busybox_image(tmp_path / "bb.tar", {"Entrypoint": ["/bin/sleep", "1000"],
                                                   "Cmd": []})
        vol = upload_template(p, "node1", "bb_1.tar", data)
        pids = []
        for i, vmid in enumerate((2001, 2002)):
            upid = create_ct(p, "node1", vmid, vol, start=1,
                             net0="name=eth0,bridge=vmbr%d,ip=%s.20/24" % (i, (net, net1)[i]))
            assert p.wait_task(upid)["exitstatus"] == "OK"
            pids.append(wait_for(lambda: p.api("GET", "/nodes/node1/lxc/%d/status/current"
                                               % vmid)[2]["data"].get("pid")))
        links, _ = host_leftovers(port)
        assert len(links) == 4                          # two bridges, two veths
        running = subprocess.run(["lxc-ls", "-P", os.path.join(p.dir, "lxc"), "--running"],
                                 capture_output=True, text=True).stdout.split()
        assert sorted(running) == ["2001", "2002"]
    finally:
        rc = p.stop(keep_dir=True)
    try:
        assert rc == 0
        assert host_leftovers(port) == ([], [])
        for pid in pids:
            assert not Path("/proc/%d" % pid).exists() or _not_same_process(pid)
        running = subprocess.run(["lxc-ls", "-P", os.path.join(p.dir, "lxc"), "--running"],
                                 capture_output=True, text=True).stdout.split()
        assert running == []
    finally:
        shutil.rmtree(p.dir, ignore_errors=True)
