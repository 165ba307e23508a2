"""The microVM plumbing (backends/microvm) booting a real guest: the cloud kernel from
/boot, an initramfs built by mv_initramfs_get whose /init is test/tools/microvm/test-init.c,
QEMU -M microvm (TCG unless KVM really runs a guest), virtiofsd, and the pod tap in a netns
made here (veth + eth0 with an address and a default route, as a CNI plugin leaves it).

mv-boot (test/tools/microvm/mv-boot.c) drives mv_tap_create, mv_vm_start, mv_vm_open,
mv_vm_connect_agent and mv_vm_shutdown as the backend does, and the guest reports what it saw.
One VM at a time: these boots are CPU-bound under TCG. Skips without root, QEMU or a kernel.
"""

import glob
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import RUNTD

TOOLS = RUNTD.parent.parent / "test" / "tools"
MV_BOOT = Path(os.environ.get("RUNT_MV_BOOT", TOOLS / "mv-boot"))
TEST_INIT = TOOLS / "mv-test-init"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="netns, tap and virtiofsd need root"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no qemu-system-x86_64"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/qemu/virtiofsd"), reason="no virtiofsd"),
    pytest.mark.skipif(not glob.glob("/boot/vmlinuz-*"), reason="no guest kernel in /boot"),
]


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def podns():
    """A pod netns with eth0 = one end of a veth, 10.251.9.2/24, default via 10.251.9.1."""
    tag = uuid.uuid4().hex[:6]
    ns, host, peer = f"mvt{tag}", f"mvt{tag}h", f"mvt{tag}p"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", ns)
        sh("ip", "addr", "add", "10.251.9.1/24", "dev", host)
        sh("ip", "link", "set", host, "up")
        sh("ip", "-n", ns, "link", "set", peer, "name", "eth0")
        sh("ip", "-n", ns, "addr", "add", "10.251.9.2/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.251.9.1")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def share(tmp_path):
    """An overlay lower pair over virtio-fs: top/ whites out base/gone, top/opaque is opaque."""
    d = tmp_path / "share"
    for p in ("top/opaque", "base/opaque"):
        (d / p).mkdir(parents=True)
    for p in ("top/keep", "base/gone", "top/opaque/shown", "base/opaque/hidden"):
        (d / p).touch()
    os.mknod(d / "top/gone", 0o600 | 0o020000, os.makedev(0, 0))
    os.setxattr(d / "top/opaque", "trusted.overlay.opaque", b"y")
    return d


def boot(tmp_path, *args):
    if not MV_BOOT.exists() or not TEST_INIT.exists():
        pytest.fail(f"{MV_BOOT} / {TEST_INIT} not built", pytrace=False)
    vmdir = Path("/tmp") / f"mvt-{uuid.uuid4().hex[:8]}"  # short: unix socket paths
    r = subprocess.run([str(MV_BOOT), "--agent", str(TEST_INIT), "--dir", str(vmdir),
                        "--cache", str(tmp_path / "cache"), *args],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not vmdir.exists(), "mv_vm_cleanup_dir left the VM dir"
    return r.stdout


def test_boot_tap_virtiofs_reopen(tmp_path, podns, share):
    out = boot(tmp_path, "--netns", f"/run/netns/{podns}", "--ifname", "eth0",
               "--udp-port", "9997", "--shared", str(share), "--reopen")
    assert "fs=ok" in out, out
    assert 'udp: got "hello-from-guest"' in out, out
    assert "addr=10.251.9.2/24" in out and "route=0.0.0.0/0,gw=10.251.9.1" in out, out
    # the tap went with QEMU; the netns keeps only the CNI interface and lo
    links = subprocess.run(["ip", "-n", podns, "-o", "link"], capture_output=True,
                           text=True).stdout
    assert "tap0" not in links, links


def test_guest_poweroff(tmp_path):
    out = boot(tmp_path, "--guest-off")
    assert "fs=none" in out and "fails=0" in out, out


def test_gzip_initramfs(tmp_path):
    out = boot(tmp_path, "--gzip", "1")
    assert ".cpio.gz" in out and "fails=0" in out, out
