"""Pod networking with the real CNI plugins (Debian's containernetworking-plugins) in real
network namespaces, driven through netmgr by runt-netctl (a test build of its API; every
call is a new process, so each DEL works from the on-disk cache as after a runtd restart).

Only addresses inside namespaces these tests make are used: a private bridge per test run,
a /24 that lives on it, and the bridge's own address on the host side. Nothing is routed
off the machine (ipMasq off, no default route in the pods).
"""

import json
import os
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import RUNTD

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

NETCTL = Path(os.environ.get("RUNT_NETCTL", RUNTD.parent.parent / "test" / "tools" /
                             "runt-netctl"))
CNI_BIN = "/usr/lib/cni"
T = 30


def sh(*argv, check=True, timeout=T):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, check=check)


class Net:
    """A CNI setup of its own: conf dir, bin dirs, state and run dirs, bridge, subnet."""

    def __init__(self, tmp, plugins=None, version="1.0.0", extra_bin=None):
        self.tmp = tmp
        n = random.randrange(1, 250)
        self.bridge = f"rte{os.getpid() % 10000}{n}"[:15]
        self.subnet = f"10.237.{n}.0/24"
        self.gateway = f"10.237.{n}.1"
        self.ipam = tmp / "ipam"
        self.conf = tmp / "conf"
        self.state = tmp / "state"
        self.run = tmp / "run"
        self.conf.mkdir()
        self.bins = ([str(extra_bin)] if extra_bin else []) + [CNI_BIN]
        bridge = {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
                  "hairpinMode": True,
                  "ipam": {"type": "host-local", "dataDir": str(self.ipam),
                           "ranges": [[{"subnet": self.subnet}]]}}
        if plugins is None:
            plugins = [bridge, {"type": "portmap", "capabilities": {"portMappings": True}}]
        else:
            plugins = [bridge if p == "bridge" else p for p in plugins]
        self.name = "e2e"
        (self.conf / "10-e2e.conflist").write_text(json.dumps(
            {"cniVersion": version, "name": self.name, "plugins": plugins}))

    def ctl(self, *args, ok=True, timeout=None):
        argv = [NETCTL, "--state-dir", self.state, "--run-dir", self.run, "--conf-dir",
                self.conf]
        if timeout:
            argv += ["--plugin-timeout", str(timeout)]
        for b in self.bins:
            argv += ["--bin-dir", b]
        res = sh(*argv, *args, check=False)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        if ok:
            assert out["ok"], (args, out, res.stderr)
        return out

    def pod(self, pid, *ports):
        ns = self.ctl("netns-add", pid)["path"]
        out = self.ctl("add", pid, f"name-{pid}", "e2e-ns", f"uid-{pid}", ns, *ports)
        return ns, out

    def netns(self, pid):
        return self.run / "netns" / pid

    def reserved(self):
        d = self.ipam / self.name
        return sorted(p.name for p in d.iterdir()
                      if p.name[0].isdigit() and p.name != "last_reserved_ip.0") \
            if d.exists() else []

    def host_veths(self):
        out = sh("ip", "-o", "link", "show", "master", self.bridge, check=False).stdout
        return [l.split(":")[1].strip().split("@")[0] for l in out.splitlines() if l.strip()]

    def cleanup(self):
        for ns in (self.run / "netns").glob("*") if (self.run / "netns").exists() else []:
            sh("umount", "-l", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


def nat_chains():
    """The per-pod CNI chains in the nat table (the shared CNI-HOSTPORT-* ones excluded)."""
    out = sh("iptables", "-t", "nat", "-S").stdout
    return sorted(l.split()[1] for l in out.splitlines()
                  if l.startswith("-N CNI-") and not l.startswith("-N CNI-HOSTPORT"))


@pytest.fixture
def net(tmp_path):
    n = Net(tmp_path)
    yield n
    n.cleanup()


def in_ns(ns, *argv, check=True):
    return sh("nsenter", f"--net={ns}", *argv, check=check)


def test_two_pods_get_distinct_ips_and_reach_each_other(net):
    chains0 = nat_chains()
    ns_a, a = net.pod("pod-a")
    ns_b, b = net.pod("pod-b")
    ip_a, ip_b = a["ips"][0], b["ips"][0]
    assert ip_a != ip_b
    assert ip_a.startswith(net.subnet.rsplit(".", 1)[0] + ".")
    assert a["network"] == "e2e"
    assert net.reserved() == sorted([ip_a, ip_b])
    # loopback is up, eth0 has the address
    out = in_ns(ns_a, "ip", "-o", "addr", "show").stdout
    assert "lo " in out and "127.0.0.1" in out and f"{ip_a}/24" in out and "eth0" in out
    in_ns(ns_a, "busybox", "ping", "-c", "1", "-W", "3", ip_b)
    in_ns(ns_b, "busybox", "ping", "-c", "1", "-W", "3", ip_a)
    assert len(net.host_veths()) == 2
    assert net.ctl("status", "pod-a")["ips"] == [ip_a]
    # CHECK with the chain set up (portmap in Debian's 1.1.1 fails CHECK on hosts without
    # ip6tables chains; its message comes through verbatim).
    chk = net.ctl("check", "pod-a", ok=False)
    assert chk["ok"] or "portmap" in chk["error"], chk

    for pid in ("pod-a", "pod-b"):
        net.ctl("del", pid)
        net.ctl("del", pid)  # idempotent
        net.ctl("netns-del", pid)
    assert net.reserved() == []
    assert net.host_veths() == []
    assert nat_chains() == chains0
    assert list((net.run / "netns").iterdir()) == []
    assert list((net.state / "cni").iterdir()) == []


def test_check_runs_the_chain(tmp_path):
    n = Net(tmp_path, plugins=["bridge"])
    try:
        ns, _ = n.pod("pod-c")
        assert n.ctl("check", "pod-c")["ok"]
        # Break the pod's side: the bridge plugin's CHECK notices.
        in_ns(ns, "ip", "link", "del", "eth0")
        chk = n.ctl("check", "pod-c", ok=False)
        assert not chk["ok"] and "bridge" in chk["error"], chk
        n.ctl("del", "pod-c")
        n.ctl("netns-del", "pod-c")
        assert n.reserved() == []
    finally:
        n.cleanup()


def serve_once(ns, port, payload):
    """A one-shot TCP server inside the pod's namespace (Debian's python3 under nsenter)."""
    code = ("import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
            "socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',%d));s.listen(1);s.settimeout(20);"
            "c,_=s.accept();c.sendall(%r);c.close()" % (port, payload))
    return subprocess.Popen(["nsenter", f"--net={ns}", "/usr/bin/python3", "-c", code])


def test_host_port_reaches_the_pod(net):
    host_port = 20000 + random.randrange(10000)
    chains0 = nat_chains()
    ns, pod = net.pod("pod-hp", f"tcp:{host_port}:8080")
    assert len(nat_chains()) > len(chains0)  # portmap's DNAT chain
    srv = serve_once(ns, 8080, b"hello from the pod")
    try:
        deadline = time.monotonic() + 10
        data = b""
        while time.monotonic() < deadline:
            try:
                # The bridge address is the host's own: OUTPUT's DNAT sends it to the pod.
                with socket.create_connection((net.gateway, host_port), timeout=2) as c:
                    data = c.recv(100)
                    break
            except OSError:
                time.sleep(0.1)
        assert data == b"hello from the pod"
    finally:
        srv.kill()
        srv.wait()
    net.ctl("del", "pod-hp")
    net.ctl("netns-del", "pod-hp")
    assert nat_chains() == chains0
    assert net.reserved() == []


def test_del_after_restart_uses_the_cache(net):
    """ADD and DEL in separate processes (the runtd restart case), with a port mapping that
    portmap can only remove if DEL gets the same portMappings."""
    chains0 = nat_chains()
    ns, pod = net.pod("pod-r", "tcp:31080:80")
    cache = json.loads((net.state / "cni" / "pod-r.json").read_text())
    assert cache["netns"] == ns
    assert cache["runtimeConfig"]["portMappings"][0]["hostPort"] == 31080
    assert "K8S_POD_NAME=name-pod-r" in cache["cniArgs"]
    assert "K8S_POD_INFRA_CONTAINER_ID=pod-r" in cache["cniArgs"]
    assert cache["result"]["ips"][0]["address"].startswith(pod["ips"][0] + "/")
    # The config file changes after ADD: DEL still uses what ADD used.
    (net.conf / "10-e2e.conflist").write_text('{"cniVersion": "1.0.0", "name": "other", '
                                              '"plugins": [{"type": "loopback"}]}')
    net.ctl("del", "pod-r")
    net.ctl("netns-del", "pod-r")
    assert nat_chains() == chains0
    assert net.reserved() == []
    assert net.host_veths() == []


def fake_plugin(tmp, name, script):
    d = tmp / "fakebin"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text("#!/bin/sh\n" + script)
    p.chmod(0o755)
    return d


def test_failing_second_plugin_rolls_back_the_first(tmp_path):
    fb = fake_plugin(tmp_path, "e2e-fail", 'cat >/dev/null\n'
                     'if [ "$CNI_COMMAND" = ADD ]; then\n'
                     '  echo \'{"cniVersion":"1.0.0","code":7,"msg":"e2e says no",'
                     '"details":"on purpose"}\'; exit 1\nfi\nexit 0\n')
    n = Net(tmp_path, plugins=["bridge", {"type": "e2e-fail"}], extra_bin=fb)
    try:
        chains0 = nat_chains()
        ns = n.ctl("netns-add", "pod-f")["path"]
        out = n.ctl("add", "pod-f", "f", "ns", "uid", ns, ok=False)
        assert not out["ok"]
        assert "e2e says no" in out["error"] and "on purpose" in out["error"], out
        assert "e2e-fail" in out["error"] and "code 7" in out["error"], out
        # bridge's ADD was undone: no veth, no address reserved, no cache.
        assert n.host_veths() == []
        assert n.reserved() == []
        assert nat_chains() == chains0
        assert not (n.state / "cni" / "pod-f.json").exists()
        assert in_ns(ns, "ip", "-o", "link", "show", "eth0", check=False).returncode != 0
        n.ctl("netns-del", "pod-f")
    finally:
        n.cleanup()


def test_plugin_timeout(tmp_path):
    fb = fake_plugin(tmp_path, "e2e-hang", 'cat >/dev/null\n'
                     '[ "$CNI_COMMAND" = ADD ] && exec sleep 60\nexit 0\n')
    n = Net(tmp_path, plugins=["bridge", {"type": "e2e-hang"}], extra_bin=fb)
    try:
        ns = n.ctl("netns-add", "pod-t")["path"]
        t0 = time.monotonic()
        out = n.ctl("add", "pod-t", "t", "ns", "uid", ns, ok=False, timeout=1)
        assert time.monotonic() - t0 < 10
        assert "e2e-hang" in out["error"] and "1 s" in out["error"], out
        assert out["errno"] == 110  # ETIMEDOUT
        assert n.reserved() == [] and n.host_veths() == []
        assert sh("pgrep", "-f", str(fb), check=False).returncode != 0  # killed, group and all
        n.ctl("netns-del", "pod-t")
    finally:
        n.cleanup()


def test_bad_json_from_a_plugin(tmp_path):
    fb = fake_plugin(tmp_path, "e2e-garbage", 'cat >/dev/null\necho "this is not json"\n')
    n = Net(tmp_path, plugins=["bridge", {"type": "e2e-garbage"}], extra_bin=fb)
    try:
        ns = n.ctl("netns-add", "pod-g")["path"]
        out = n.ctl("add", "pod-g", "g", "ns", "uid", ns, ok=False)
        assert "e2e-garbage" in out["error"] and "bad result" in out["error"], out
        assert out["errno"] == 71  # EPROTO
        assert n.reserved() == [] and n.host_veths() == []
        n.ctl("netns-del", "pod-g")
    finally:
        n.cleanup()


def test_missing_plugin(tmp_path):
    n = Net(tmp_path, plugins=["bridge", {"type": "no-such-plugin-e2e"}])
    try:
        ns = n.ctl("netns-add", "pod-m")["path"]
        out = n.ctl("add", "pod-m", "m", "ns", "uid", ns, ok=False)
        assert "no-such-plugin-e2e" in out["error"], out
        assert n.reserved() == [] and n.host_veths() == []
        n.ctl("netns-del", "pod-m")
    finally:
        n.cleanup()


def test_capabilities_only_where_declared(tmp_path):
    """runtimeConfig reaches a plugin only for the capabilities it declares; name and
    cniVersion are injected; prevResult is the previous plugin's result."""
    dump = tmp_path / "stdin.json"
    fb = fake_plugin(tmp_path, "e2e-dump",
                     f'cat > {dump}.$CNI_COMMAND\n'
                     'echo "$CNI_ARGS" > ' f'{dump}.args\n'
                     'if [ "$CNI_COMMAND" = ADD ]; then\n'
                     f'  python3 -c \'import json,sys;print(json.dumps(json.load(open("{dump}.ADD"))["prevResult"]))\'\n'
                     'fi\n')
    n = Net(tmp_path, plugins=["bridge",
                               {"type": "e2e-dump", "capabilities": {"portMappings": True}},
                               {"type": "e2e-dump"}],
            version="0.4.0", extra_bin=fb)
    try:
        ns = n.ctl("netns-add", "pod-d")["path"]
        n.ctl("add", "pod-d", "dname", "dns", "duid", ns, "udp:5353:53")
        # The last dump is the third plugin (no capabilities): no runtimeConfig.
        last = json.loads(Path(f"{dump}.ADD").read_text())
        assert last["name"] == "e2e" and last["cniVersion"] == "0.4.0"
        assert "runtimeConfig" not in last
        assert last["prevResult"]["ips"][0]["address"].startswith("10.237.")
        args = Path(f"{dump}.args").read_text().strip()
        assert args == ("IgnoreUnknown=1;K8S_POD_NAMESPACE=dns;K8S_POD_NAME=dname;"
                        "K8S_POD_INFRA_CONTAINER_ID=pod-d;K8S_POD_UID=duid")
        cache = json.loads((n.state / "cni" / "pod-d.json").read_text())
        assert cache["runtimeConfig"]["portMappings"] == [
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": ""}]
        n.ctl("del", "pod-d")
        deldump = json.loads(Path(f"{dump}.DEL").read_text())
        # DEL (reverse order: the second plugin's DEL runs last of the two) gets the cached
        # result as prevResult, and the declared capability's runtimeConfig.
        assert deldump["prevResult"]["ips"][0]["address"].startswith("10.237.")
        assert deldump["runtimeConfig"]["portMappings"][0]["hostPort"] == 5353
        assert n.reserved() == []
        n.ctl("netns-del", "pod-d")
    finally:
        n.cleanup()


def test_netns_names_are_checked(tmp_path):
    n = Net(tmp_path)
    for bad in ("../escape", "a/b", ".."):
        out = n.ctl("netns-add", bad, ok=False)
        assert not out["ok"] and out["errno"] == 22, out
    assert not (tmp_path / "escape").exists()
    out = n.ctl("netns-add", "dup")
    assert n.ctl("netns-add", "dup", ok=False)["errno"] == 17
    n.ctl("netns-del", "dup")
    n.ctl("netns-del", "dup")  # idempotent
    n.cleanup()
