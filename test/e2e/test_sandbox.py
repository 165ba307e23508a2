"""Pod sandboxes over gRPC: RunPodSandbox / PodSandboxStatus / ListPodSandbox /
StopPodSandbox / RemovePodSandbox on the `fake` backend (no containers yet), with real
network namespaces and the real CNI plugins, so the network side is the real thing.

Addresses are confined to a bridge and /24 of each test's own; ipMasq is off.
"""

import json
import os
import random
import re
import subprocess
import threading
import time

import grpc
import pytest

from conftest import pb

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
T = 30


def sh(*argv, check=True):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=T,
                          check=check)


def own_nat(net):
    """The nat table's CNI chains and rules of network @net: the rules whose comment names
    it (bridge's ipMasq and portmap write `name: "<net>" id: "<container id>"`), and the
    chains those rules are in or jump to. The shared CNI-HOSTPORT-* chains are left out, and
    so is everything of other networks, so tests running beside this one do not count."""
    out = sh("iptables", "-t", "nat", "-S").stdout
    mark = re.compile(r'name: \\?"' + re.escape(net) + r'\\?" id: ')
    chains, rules = set(), []
    for line in out.splitlines():
        if not line.startswith("-A ") or not mark.search(line):
            continue
        rules.append(line)
        words = line.split()
        for c in (words[1], words[words.index("-j") + 1] if "-j" in words else ""):
            if c.startswith("CNI-") and not c.startswith("CNI-HOSTPORT-"):
                chains.add(c)
    declared = {line.split()[1] for line in out.splitlines() if line.startswith("-N CNI-")}
    return sorted(chains & declared), sorted(rules)


def leases(ipam, net):
    """host-local's leases of network @net in dataDir @ipam (IPv4 and IPv6)."""
    p = ipam / net
    return sorted(x.name for x in p.iterdir() if x.name != "lock"
                  and not x.name.startswith("last_reserved_ip")) if p.exists() else []


class Pods:
    def __init__(self, runtd_factory, tmp_path, fail_create=None, start=True, ipmasq=False):
        n = random.randrange(1, 250)
        self.bridge = f"rts{os.getpid() % 10000}{n}"[:15]
        self.prefix = f"10.236.{n}."
        self.ipam = tmp_path / "ipam"
        self.ipmasq = ipmasq
        # Unique, so the leak check can tell this network's chains from other tests'.
        self.net = f"e2e-pods-{self.bridge}"
        opts = {"fail_create": fail_create} if fail_create else {}
        self.d = runtd_factory(start=False, runtimes={"fake": ("fake", opts)},
                               default_runtime="fake", allow_log_errors=True)
        self.write_conf()
        if start:
            self.d.start()

    def write_conf(self, plugins=None):
        bridge = {"type": "bridge", "bridge": self.bridge, "isGateway": True,
                  "ipMasq": self.ipmasq,
                  "ipam": {"type": "host-local", "dataDir": str(self.ipam),
                           "ranges": [[{"subnet": self.prefix + "0/24"}]]}}
        (self.d.cni_dir / "10-e2e.conflist").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": self.net,
             "plugins": plugins or [bridge, {"type": "portmap",
                                             "capabilities": {"portMappings": True}}]}))

    def rt(self):
        return self.d.runtime()

    def config(self, name="web", ns="default", uid=None, attempt=0, **kw):
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace=ns, uid=uid or f"uid-{name}",
                                           attempt=attempt), **kw)

    def run(self, cfg, handler=""):
        return self.rt().RunPodSandbox(pb.RunPodSandboxRequest(config=cfg,
                                                               runtime_handler=handler),
                                       timeout=T).pod_sandbox_id

    def status(self, pid, verbose=False):
        return self.rt().PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pid,
                                                                     verbose=verbose),
                                          timeout=T)

    def stop(self, pid):
        self.rt().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid), timeout=T)

    def remove(self, pid):
        self.rt().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid), timeout=T)

    def list(self, **f):
        req = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(**f)) if f else \
            pb.ListPodSandboxRequest()
        return list(self.rt().ListPodSandbox(req, timeout=T).items)

    def netns_dir(self):
        return self.d.run_dir / "netns"

    def reserved(self):
        return leases(self.ipam, self.net)

    def veths(self):
        out = sh("ip", "-o", "link", "show", "master", self.bridge, check=False).stdout
        return [l for l in out.splitlines() if l.strip()]

    def leftovers(self):
        nd = self.netns_dir()
        return {"netns": sorted(os.listdir(nd)) if nd.exists() else [],
                "reserved": self.reserved(), "veths": self.veths(),
                "nat": own_nat(self.net),
                "cni_cache": sorted(os.listdir(self.d.state_dir / "cni"))
                if (self.d.state_dir / "cni").exists() else [],
                "pod_dirs": self.pod_dirs()}

    def pod_dirs(self):
        """The pod files' dirs: <root_dir>/pods, and <run_dir>/pods where an older runtd
        kept them."""
        return sorted(str(p.relative_to(self.d.base)) for top in
                      (self.d.root_dir / "pods", self.d.run_dir / "pods")
                      if top.exists() for p in top.iterdir())

    def cleanup(self):
        """Best effort, for a test that failed half-way: no pod (nor its portmap rules)
        outlives its test."""
        try:
            if self.d.alive():
                for i in self.list():
                    self.remove(i.id)
        except grpc.RpcError:
            pass
        sh("ip", "link", "del", self.bridge, check=False)


EMPTY = {"netns": [], "reserved": [], "veths": [], "nat": ([], []), "cni_cache": [],
         "pod_dirs": []}


@pytest.fixture
def pods(runtd_factory, tmp_path):
    p = Pods(runtd_factory, tmp_path)
    yield p
    p.cleanup()


@pytest.mark.valgrind
def test_lifecycle_with_network(pods):
    cfg = pods.config("web", hostname="web-0", labels={"app": "web", "tier": "front"},
                      annotations={"note": "x"},
                      dns_config=pb.DNSConfig(servers=["10.96.0.10"], searches=["svc.local"],
                                              options=["ndots:5"]),
                      port_mappings=[pb.PortMapping(container_port=80, host_port=30081)])
    pid = pods.run(cfg)
    assert len(pid) == 64 and all(c in "0123456789abcdef" for c in pid)
    st = pods.status(pid, verbose=True).status
    assert st.id == pid and st.state == pb.SANDBOX_READY
    assert st.metadata.name == "web" and st.metadata.namespace == "default"
    assert st.metadata.uid == "uid-web" and st.metadata.attempt == 0
    assert dict(st.labels) == {"app": "web", "tier": "front"}
    assert dict(st.annotations) == {"note": "x"}
    assert st.network.ip.startswith(pods.prefix), st.network
    assert st.created_at > 0
    assert st.linux.namespaces.options.network == pb.POD
    info = json.loads(pods.status(pid, verbose=True).info["info"])
    netns = info["netns"]
    assert netns == str(pods.netns_dir() / pid)
    # The pod's namespace holds its address; the pod files follow DNSConfig and hostname.
    out = sh("nsenter", f"--net={netns}", "ip", "-o", "addr").stdout
    assert st.network.ip + "/24" in out
    pd = pods.d.root_dir / "pods" / pid
    assert (pd / "resolv.conf").read_text() == ("search svc.local\nnameserver 10.96.0.10\n"
                                                 "options ndots:5\n")
    assert (pd / "hostname").read_text() == "web-0\n"
    assert f"{st.network.ip}\tweb-0\n" in (pd / "hosts").read_text()
    cache = json.loads((pods.d.state_dir / "cni" / f"{pid}.json").read_text())
    assert cache["runtimeConfig"]["portMappings"][0]["hostPort"] == 30081

    items = pods.list()
    assert [i.id for i in items] == [pid]
    assert items[0].state == pb.SANDBOX_READY and items[0].metadata.name == "web"

    pods.stop(pid)
    st = pods.status(pid).status
    assert st.state == pb.SANDBOX_NOTREADY
    # Stopping tears the network down (and frees the address) but keeps the record.
    assert pods.reserved() == [] and pods.veths() == []
    pods.stop(pid)  # idempotent
    pods.remove(pid)
    pods.remove(pid)  # idempotent
    with pytest.raises(grpc.RpcError) as e:
        pods.status(pid)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and pid in e.value.details()
    assert pods.list() == []
    assert pods.leftovers() == EMPTY


def test_two_pods_reach_each_other(pods):
    a = pods.run(pods.config("a"))
    b = pods.run(pods.config("b"))
    ip_a, ip_b = pods.status(a).status.network.ip, pods.status(b).status.network.ip
    assert ip_a != ip_b
    ns_a = pods.d.run_dir / "netns" / a
    sh("nsenter", f"--net={ns_a}", "busybox", "ping", "-c", "1", "-W", "3", ip_b)
    for p in (a, b):
        pods.remove(p)  # remove without stop first: stops, then removes
    assert pods.leftovers() == EMPTY


def test_taken_host_port_is_refused(pods):
    """portmap reserves nothing: runt refuses a second pod asking a host port a pod holds
    (same protocol and port; an unset host IP is every address), naming the holder, and
    leaves nothing of it; another protocol is another port; a stopped pod holds none."""
    a = pods.run(pods.config("holder", port_mappings=[
        pb.PortMapping(container_port=80, host_port=30084)]))
    for name, pm in (("again", pb.PortMapping(container_port=8080, host_port=30084)),
                     ("on-ip", pb.PortMapping(container_port=80, host_port=30084,
                                              host_ip="127.0.0.1"))):
        with pytest.raises(grpc.RpcError) as e:
            pods.run(pods.config(name, port_mappings=[pm]))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value
        assert "host port 30084/tcp" in e.value.details() and \
            f"default/holder (sandbox {a[:12]})" in e.value.details(), e.value.details()
    assert [i.id for i in pods.list()] == [a] and len(pods.reserved()) == 1
    udp = pods.run(pods.config("udp", port_mappings=[
        pb.PortMapping(protocol=pb.UDP, container_port=53, host_port=30084)]))
    pods.stop(a)
    b = pods.run(pods.config("after", port_mappings=[
        pb.PortMapping(container_port=80, host_port=30084)]))
    for p in (a, udp, b):
        pods.remove(p)
    assert pods.leftovers() == EMPTY


def test_host_network_pod_has_no_netns(pods):
    cfg = pods.config("hostnet", linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE))))
    pid = pods.run(cfg)
    st = pods.status(pid).status
    assert st.network.ip == ""
    assert st.linux.namespaces.options.network == pb.NODE
    assert pods.leftovers()["netns"] == [] and pods.reserved() == []
    assert not (pods.d.state_dir / "cni" / f"{pid}.json").exists()
    pods.remove(pid)
    assert pods.leftovers() == EMPTY


def test_name_is_reserved_and_released(pods):
    pid = pods.run(pods.config("dup"))
    with pytest.raises(grpc.RpcError) as e:
        pods.run(pods.config("dup"))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert pid in e.value.details() and "dup_default_uid-dup_0" in e.value.details()
    # Another attempt is another name.
    pid2 = pods.run(pods.config("dup", attempt=1))
    pods.remove(pid)
    pid3 = pods.run(pods.config("dup"))  # released with the sandbox
    for p in (pid2, pid3):
        pods.remove(p)
    assert pods.leftovers() == EMPTY


def test_failure_halfway_leaves_nothing_and_frees_the_name(runtd_factory, tmp_path):
    p = Pods(runtd_factory, tmp_path, fail_create="doomed")
    try:
        with pytest.raises(grpc.RpcError) as e:
            p.run(p.config("doomed"))
        assert "told to fail" in e.value.details(), e.value.details()
        # The network was set up before the backend failed: all of it is gone again.
        assert p.leftovers() == EMPTY
        assert p.list() == []
        # A broken network: the CNI error comes back, nothing is left, the name is free.
        p.write_conf([{"type": "bridge", "bridge": p.bridge, "ipam": {"type": "host-local",
                       "ranges": [[{"subnet": "not-a-subnet"}]], "dataDir": str(p.ipam)}}])
        with pytest.raises(grpc.RpcError) as e:
            p.run(p.config("netfail"))
        assert "bridge" in e.value.details() or "host-local" in e.value.details(), \
            e.value.details()
        assert p.leftovers() == EMPTY
        p.write_conf()
        pid = p.run(p.config("netfail"))
        p.remove(pid)
        assert p.leftovers() == EMPTY
    finally:
        p.cleanup()


def test_bad_requests(pods):
    rt = pods.rt()
    bad = [
        (pb.RunPodSandboxRequest(), "config"),
        (pb.RunPodSandboxRequest(config=pb.PodSandboxConfig()), "metadata"),
        (pb.RunPodSandboxRequest(config=pods.config("../x")), "metadata.name"),
        (pb.RunPodSandboxRequest(config=pods.config("a/b")), "metadata.name"),
        (pb.RunPodSandboxRequest(config=pods.config("x" * 300)), "metadata.name"),
        (pb.RunPodSandboxRequest(config=pods.config("ok", ns="..")), "metadata.namespace"),
        (pb.RunPodSandboxRequest(config=pods.config("ok", uid="a;b=c")), ";"),
        (pb.RunPodSandboxRequest(config=pods.config("ok"), runtime_handler="no-such"),
         "no-such"),
        (pb.RunPodSandboxRequest(config=pods.config(
            "ok", port_mappings=[pb.PortMapping(container_port=0, host_port=80)])),
         "port"),
    ]
    for req, word in bad:
        with pytest.raises(grpc.RpcError) as e:
            rt.RunPodSandbox(req, timeout=T)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (req, e.value)
        assert word in e.value.details(), (word, e.value.details())
    # An id of any form names a sandbox or nothing (NOT_FOUND); only an empty one is refused.
    for rpc, req, want in [
            (rt.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id="../x"),
             grpc.StatusCode.NOT_FOUND),
            (rt.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id="Pod-1"),
             grpc.StatusCode.NOT_FOUND),
            (rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=""),
             grpc.StatusCode.INVALID_ARGUMENT)]:
        with pytest.raises(grpc.RpcError) as e:
            rpc(req, timeout=T)
        assert e.value.code() == want, e.value
    # Stopping and removing what is not there is success (api.proto), whatever the id's form.
    for pid in ("zz", "../x", "f" * 64, "x" * 300):
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid), timeout=T)
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid), timeout=T)
    assert pods.leftovers() == EMPTY


def test_list_filters(pods):
    a = pods.run(pods.config("fa", labels={"app": "x", "env": "prod"}))
    b = pods.run(pods.config("fb", labels={"app": "x", "env": "dev"}))
    c = pods.run(pods.config("fc", labels={"app": "y"}))
    pods.stop(c)
    ids = lambda items: sorted(i.id for i in items)  # noqa: E731
    assert ids(pods.list()) == sorted([a, b, c])
    assert ids(pods.list(id=a)) == [a]
    assert ids(pods.list(id=a[:10])) == [a]
    assert ids(pods.list(id="nothex")) == []
    assert ids(pods.list(label_selector={"app": "x"})) == sorted([a, b])
    assert ids(pods.list(label_selector={"app": "x", "env": "dev"})) == [b]
    assert ids(pods.list(label_selector={"app": "z"})) == []
    ready = pb.PodSandboxStateValue(state=pb.SANDBOX_READY)
    notready = pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)
    assert ids(pods.list(state=ready)) == sorted([a, b])
    assert ids(pods.list(state=notready)) == [c]
    assert ids(pods.list(state=ready, label_selector={"env": "prod"})) == [a]
    # Status by a unique prefix.
    assert pods.status(a[:12]).status.id == a
    for p in (a, b, c):
        pods.remove(p)


def test_restart_and_remove_from_the_cache(pods):
    """kill -9 runtd with a pod running: after a restart it is still listed, and removing it
    tears its network down from the on-disk CNI cache (portmap needs the same mappings)."""
    chains = lambda: sorted(l for l in sh("iptables", "-t", "nat", "-S").stdout.splitlines()  # noqa: E731
                            if l.startswith("-N CNI-") and "HOSTPORT" not in l)
    before = chains()
    pid = pods.run(pods.config("survivor", port_mappings=[
        pb.PortMapping(container_port=80, host_port=30082)]))
    ip = pods.status(pid).status.network.ip
    assert chains() != before
    pods.d.proc.kill()
    pods.d.proc.wait()
    pods.d.start()
    st = pods.status(pid).status
    # The fake backend's sandboxes live in runtd's memory: after the restart it reports this
    # one as not running, so it is NOTREADY (an LXC pod stays READY: test_lxc_sandbox.py).
    assert st.network.ip == ip and st.state == pb.SANDBOX_NOTREADY
    pods.remove(pid)
    assert chains() == before
    assert pods.leftovers() == EMPTY


def test_concurrent_pods(pods):
    n = 10
    ids, errors = [], []

    def one(i):
        try:
            ids.append(pods.run(pods.config(f"c{i}")))
        except grpc.RpcError as e:
            errors.append(e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    ips = {pods.status(p).status.network.ip for p in ids}
    assert len(ips) == n
    ts = [threading.Thread(target=pods.remove, args=(p,)) for p in ids]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert pods.list() == []
    assert pods.leftovers() == EMPTY


def test_dual_stack_ips(pods):
    """IPv4 and IPv6 from one result: the first is the pod IP, the other additional_ips."""
    n = pods.prefix.split(".")[2]
    pods.write_conf([{"type": "bridge", "bridge": pods.bridge, "isGateway": True,
                      "ipMasq": False,
                      "ipam": {"type": "host-local", "dataDir": str(pods.ipam),
                               "ranges": [[{"subnet": f"fd00:236:{n}::/64"}],
                                          [{"subnet": pods.prefix + "0/24"}]]}}])
    pid = pods.run(pods.config("dual"))
    st = pods.status(pid).status
    assert st.network.ip.startswith(pods.prefix), st.network  # IPv4 first, whatever the order
    assert [a.ip for a in st.network.additional_ips][0].startswith(f"fd00:236:{n}:"), st.network
    pd = pods.d.root_dir / "pods" / pid
    hosts = (pd / "hosts").read_text()
    assert st.network.ip in hosts and st.network.additional_ips[0].ip in hosts
    pods.remove(pid)
    assert pods.leftovers() == EMPTY


def test_stop_and_remove_when_the_netns_is_gone(pods):
    """Someone unmounted and removed the pod's namespace: Stop still runs CNI DEL (the
    namespace passed as none), so the address is released and portmap's chains go."""
    pid = pods.run(pods.config("lost", port_mappings=[
        pb.PortMapping(container_port=80, host_port=30083)]))
    assert len(pods.reserved()) == 1 and pods.leftovers()["nat"] != ([], [])
    ns = pods.netns_dir() / pid
    sh("umount", ns)
    ns.unlink()
    pods.stop(pid)
    assert pods.reserved() == [] and pods.leftovers()["nat"] == ([], [])
    pods.remove(pid)
    wait_veths_gone(pods)
    assert pods.leftovers() == EMPTY


def test_stop_and_remove_when_a_file_is_left_where_the_netns_was(pods):
    """Unmounted but not removed (a crash between the two): DEL must not fail on a path that
    is no namespace."""
    pid = pods.run(pods.config("unmounted"))
    ns = pods.netns_dir() / pid
    sh("umount", ns)
    assert ns.exists()
    pods.remove(pid)
    wait_veths_gone(pods)
    assert pods.leftovers() == EMPTY


def wait_veths_gone(pods, timeout=10):
    """The kernel frees an unmounted namespace, and the veth end in it, from a work queue of
    its own: the host end goes a moment after the last reference did."""
    deadline = time.monotonic() + timeout
    while pods.veths() and time.monotonic() < deadline:
        time.sleep(0.05)
