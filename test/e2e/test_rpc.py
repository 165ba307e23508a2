"""The implemented RPCs: Version, Status, RuntimeConfig, ImageFsInfo."""

import json
import os
import subprocess
import time

import pytest

from conftest import CALL_TIMEOUT, CNI_BIN_DIR, RUNTD, fresh_fs_info, pb

T = CALL_TIMEOUT


def conditions(resp):
    return {c.type: c for c in resp.status.conditions}


def good_conflist(name="runt-e2e"):
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": "runt0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2)


@pytest.mark.valgrind
def test_version(runtd):
    r = runtd.runtime().Version(pb.VersionRequest(version="v1"), timeout=T)
    assert r.runtime_name == "runt"
    assert r.runtime_api_version == "v1"
    assert r.version  # the kubelet API version string, non-empty
    assert r.runtime_version
    # --version prints the same runtime version as the RPC reports.
    out = subprocess.run([str(RUNTD), "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    assert r.runtime_version in out.stdout


def test_version_ignores_request_version(runtd):
    rt = runtd.runtime()
    a = rt.Version(pb.VersionRequest(), timeout=T)
    b = rt.Version(pb.VersionRequest(version="0.0.0-whatever"), timeout=T)
    assert a == b


@pytest.mark.skipif(os.geteuid() != 0, reason="the lxc backend needs root")
def test_status_runtime_ready_lxc(runtd_factory):
    d = runtd_factory(runtimes={"lxc": ("lxc", {})}, default_runtime="lxc")
    r = d.runtime().Status(pb.StatusRequest(), timeout=T)
    c = conditions(r)
    assert set(c) == {"RuntimeReady", "NetworkReady"}
    assert c["RuntimeReady"].status is True, c["RuntimeReady"]
    assert c["RuntimeReady"].reason == ""
    # The kubelet looks the default handler up as "", so it is listed as "" and by name.
    names = [h.name for h in r.runtime_handlers]
    assert names[0] == ""
    assert "lxc" in names
    assert not r.info  # not verbose


def test_status_runtime_not_ready_fake(runtd_factory):
    d = runtd_factory(runtimes={"lxc": ("lxc", {}), "slow": ("fake", {"ready": "false"})},
                      default_runtime="slow")
    r = d.runtime().Status(pb.StatusRequest(verbose=True), timeout=T)
    rt = conditions(r)["RuntimeReady"]
    assert rt.status is False
    assert rt.reason == "RuntimeNotReady"
    assert "slow" in rt.message and "not ready" in rt.message, rt.message
    info = json.loads(r.info["runtime"])
    assert info["defaultRuntime"] == "slow"
    handlers = {h["name"]: h for h in info["handlers"]}
    assert handlers["slow"]["backend"] == "fake"
    assert handlers["slow"]["ready"] is False
    assert "not ready" in handlers["slow"]["error"]
    assert sorted(h.name for h in r.runtime_handlers) == ["", "lxc", "slow"]


def test_status_fake_ready_true(runtd_factory):
    d = runtd_factory(runtimes={"f": ("fake", {"ready": "true"})}, default_runtime="f")
    c = conditions(d.runtime().Status(pb.StatusRequest(), timeout=T))
    assert c["RuntimeReady"].status is True


def test_network_ready_follows_conf_dir(runtd):
    rt = runtd.runtime()

    def net():
        return conditions(rt.Status(pb.StatusRequest(), timeout=T))["NetworkReady"]

    # Empty conf dir.
    n = net()
    assert n.status is False
    assert n.reason == "NetworkPluginNotReady"
    assert str(runtd.cni_dir) in n.message, n.message

    # A valid conflist appears: picked up without a restart.
    good = runtd.cni_dir / "10-runt.conflist"
    good.write_text(good_conflist())
    n = net()
    assert n.status is True, n.message
    assert n.reason == ""

    # A broken file lexically first does not hide the valid one (first valid file wins).
    broken = runtd.cni_dir / "05-broken.conflist"
    broken.write_text('{"cniVersion": "1.0.0", "name": "x", "plugins": [')
    r = rt.Status(pb.StatusRequest(verbose=True), timeout=T)
    assert conditions(r)["NetworkReady"].status is True
    assert json.loads(r.info["network"])["configFile"] == str(good)

    # Only the broken one left: not ready, naming the file.
    good.unlink()
    n = net()
    assert n.status is False
    assert n.reason == "NetworkPluginNotReady"
    assert "05-broken.conflist" in n.message, n.message

    # Valid JSON but a plugin binary that is not in the bin dirs: not ready, naming it.
    broken.unlink()
    missing = runtd.cni_dir / "20-missing.conflist"
    missing.write_text(json.dumps({"cniVersion": "1.0.0", "name": "m",
                                   "plugins": [{"type": "no-such-plugin-e2e"}]}))
    n = net()
    assert n.status is False
    assert "no-such-plugin-e2e" in n.message and "20-missing.conflist" in n.message, n.message

    # Files with other suffixes are ignored.
    missing.unlink()
    (runtd.cni_dir / "10-runt.conflist.bak").write_text(good_conflist())
    assert net().status is False

    # A single-plugin .conf is accepted too.
    (runtd.cni_dir / "50-single.conf").write_text(json.dumps(
        {"cniVersion": "0.4.0", "name": "single", "type": "loopback"}))
    assert net().status is True


@pytest.mark.valgrind
def test_status_verbose_info(runtd):
    (runtd.cni_dir / "10-runt.conflist").write_text(good_conflist("e2e-net"))
    r = runtd.runtime().Status(pb.StatusRequest(verbose=True), timeout=T)
    assert set(r.info) == {"config", "runtime", "network", "runtimeConfig", "cgroup"}
    info = {k: json.loads(v) for k, v in r.info.items()}

    cfg = info["config"]
    assert cfg["stateDir"] == str(runtd.state_dir)
    assert cfg["rootDir"] == str(runtd.root_dir)
    assert cfg["runDir"] == str(runtd.run_dir)
    assert cfg["cniConfDir"] == str(runtd.cni_dir)
    assert cfg["cniBinDirs"] == [CNI_BIN_DIR]
    assert cfg["listen"] == runtd.listen
    assert cfg["logLevel"] == "debug"
    assert cfg["pidsLimit"] == 4096

    net = info["network"]
    assert net["confDir"] == str(runtd.cni_dir)
    assert net["binDirs"] == [CNI_BIN_DIR]
    assert net["network"] == "e2e-net"
    assert net["configFile"] == str(runtd.cni_dir / "10-runt.conflist")
    assert [p["type"] for p in net["config"]["plugins"]] == ["bridge", "portmap"]

    rt = info["runtime"]
    assert {h["name"] for h in rt["handlers"]} == {"lxc", "fake"}
    assert isinstance(rt["stateSchema"], int)

    c = conditions(r)
    assert c["NetworkReady"].status is True
    # Not verbose: no info at all.
    assert not runtd.runtime().Status(pb.StatusRequest(verbose=False), timeout=T).info


def test_runtime_config(runtd):
    r = runtd.runtime().RuntimeConfig(pb.RuntimeConfigRequest(), timeout=T)
    assert r.HasField("linux")
    assert r.linux.cgroup_driver == pb.CGROUPFS


@pytest.mark.valgrind
def test_image_fs_info(runtd):
    img = runtd.image()
    t0 = time.time_ns()
    r = img.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=T)
    t1 = time.time_ns()
    assert len(r.image_filesystems) == 1
    assert len(r.container_filesystems) == 1
    layers, ctrs = r.image_filesystems[0], r.container_filesystems[0]
    assert layers.fs_id.mountpoint == str(runtd.root_dir / "layers")
    assert ctrs.fs_id.mountpoint == str(runtd.root_dir / "containers")
    for u in (layers, ctrs):
        assert t0 - 10**9 <= u.timestamp <= t1 + 10**9
        assert u.HasField("used_bytes") and u.HasField("inodes_used")
        assert u.inodes_used.value >= 1  # the directory itself

    # 1 MiB of real data in the layer store shows up; the container fs does not change.
    (runtd.root_dir / "layers" / "blob").write_bytes(os.urandom(1 << 20))
    os.sync()
    r2 = fresh_fs_info(img)
    l2, c2 = r2.image_filesystems[0], r2.container_filesystems[0]
    assert l2.used_bytes.value >= layers.used_bytes.value + (1 << 20)
    assert l2.inodes_used.value == layers.inodes_used.value + 1
    assert c2.used_bytes.value == ctrs.used_bytes.value
    assert c2.inodes_used.value == ctrs.inodes_used.value
    assert l2.timestamp >= layers.timestamp

    # And in the container filesystem.
    sub = runtd.root_dir / "containers" / "c1"
    sub.mkdir()
    (sub / "f").write_bytes(os.urandom(1 << 20))
    r3 = fresh_fs_info(img)
    c3 = r3.container_filesystems[0]
    assert c3.used_bytes.value >= ctrs.used_bytes.value + (1 << 20)
    assert c3.inodes_used.value == ctrs.inodes_used.value + 2


def test_image_fs_info_hardlinks_counted_once(runtd):
    img = runtd.image()
    layers = runtd.root_dir / "layers"
    (layers / "a").write_bytes(os.urandom(1 << 20))
    before = img.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=T).image_filesystems[0]
    for i in range(3):
        os.link(layers / "a", layers / f"link{i}")
    after = fresh_fs_info(img).image_filesystems[0]
    assert after.used_bytes.value == before.used_bytes.value
    assert after.inodes_used.value == before.inodes_used.value
