"""runt-agent as PID 1 of a QEMU microvm guest (TCG), over virtio-serial.

Builds a minimal initramfs here: /init = runt-agent and the virtio/overlay/virtiofs modules
of the Debian cloud kernel listed in /etc/runt-modules. A busybox layer is shared by
virtio-fs (QEMU's virtiofsd), mounted by the agent from "runt.virtiofs=share:/run/share:ro". Skipped when
the agent, QEMU, the kernel or its modules are missing. Slow under TCG (a boot is ~3-5 s).

    /usr/bin/python3 -m pytest test/e2e/test_agent_vm.py -q -p no:cacheprovider
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import agentproto as ap
from test_agent_host import AGENT, BUSYBOX, make_layer, runtd_binary  # noqa: F401

KVER = os.environ.get("RUNT_VM_KVER", "6.1.0-57-cloud-amd64")
KERNEL = Path(f"/boot/vmlinuz-{KVER}")
MODDIR = Path(f"/lib/modules/{KVER}/kernel")
QEMU = shutil.which("qemu-system-x86_64")
MODULES = ["drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko",
           "drivers/virtio/virtio_mmio.ko", "drivers/char/virtio_console.ko",
           "net/core/failover.ko", "drivers/net/net_failover.ko", "drivers/net/virtio_net.ko",
           "fs/overlayfs/overlay.ko", "fs/fuse/fuse.ko", "fs/fuse/virtiofs.ko"]
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
MAC = "52:54:00:12:34:56"

pytestmark = [
    pytest.mark.skipif(not AGENT.exists(), reason=f"{AGENT} not built"),
    pytest.mark.skipif(not QEMU or not KERNEL.exists() or not MODDIR.exists(),
                       reason="needs qemu-system-x86_64 and the cloud kernel with its modules"),
    pytest.mark.skipif(not os.path.exists(VIRTIOFSD), reason="needs QEMU's virtiofsd"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


def tsc_khz():
    m = re.search(r"cpu MHz\s*:\s*([0-9.]+)", Path("/proc/cpuinfo").read_text())
    return int(float(m.group(1)) * 1000) if m else 0


def build_initrd(w):
    root = w / "root"
    (root / "etc").mkdir(parents=True)
    shutil.copy2(AGENT, root / "init")
    lines = []
    for m in MODULES:
        dst = root / "lib" / "modules" / KVER / "kernel" / m
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(MODDIR / m, dst)
        lines.append(f"/lib/modules/{KVER}/kernel/{m}")
    (root / "etc" / "runt-modules").write_text("\n".join(lines) + "\n")
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    cpio = subprocess.run([BUSYBOX, "cpio", "-o", "-H", "newc"], cwd=root, input=files,
                          capture_output=True, check=True).stdout
    (w / "initrd").write_bytes(cpio)
    return w / "initrd"


@pytest.fixture(scope="module")
def vm():
    w = Path(tempfile.mkdtemp(prefix="runt-agent-vm."))
    initrd = build_initrd(w)
    sock = w / "agent.sock"
    khz = tsc_khz()
    # The layer reaches the guest as the host's share (virtio-fs), mounted by the agent from
    # the kernel command line.
    make_layer(w / "share" / "layer")
    vfsd = subprocess.Popen([VIRTIOFSD, f"--socket-path={w}/vfs.sock", "-o",
                             f"source={w}/share", "-o", "cache=auto"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if (w / "vfs.sock").exists():
            break
        time.sleep(0.05)
    q = subprocess.Popen([
        QEMU, "-M", "microvm,memory-backend=mem", "-global", "virtio-mmio.force-legacy=false",
        "-object", "memory-backend-memfd,id=mem,size=256M,share=on",
        "-chardev", f"socket,id=vfs,path={w}/vfs.sock",
        "-device", "vhost-user-fs-device,chardev=vfs,tag=share,queue-size=1024",
        "-nographic", "-nodefaults", "-no-user-config", "-m", "256",
        "-smp", "1", "-serial", f"file:{w}/console.log", "-kernel", str(KERNEL),
        "-initrd", str(initrd), "-no-reboot",
        "-append", "console=ttyS0 panic=-1 runt.virtiofs=share:/run/share:ro" + (f" tsc_early_khz={khz}" if khz else ""),
        "-device", "virtio-serial-device",
        "-chardev", f"socket,id=agent,path={sock},server=on,wait=off",
        "-device", f"virtserialport,chardev=agent,name={ap.AG_PORT_NAME}",
        "-netdev", "user,id=n0", "-device", f"virtio-net-device,netdev=n0,mac={MAC}"])
    try:
        yield {"w": w, "sock": sock, "q": q}
    finally:
        if q.poll() is None:
            q.kill()
            q.wait()
        if vfsd.poll() is None:
            vfsd.kill()
        vfsd.wait()
        if os.environ.get("RUNT_KEEP"):
            print("kept", w)
        else:
            shutil.rmtree(w, ignore_errors=True)


def connect(vm, timeout=60):
    c = ap.AgentClient(ap.connect_unix(vm["sock"]))
    c.boot_id = c.wait_event(ap.EV_READY, timeout=timeout).attrs["BOOT_ID"]
    return c


BASE = [("LOWER", ["/run/share/layer"]), ("ENV", ["PATH=/bin"]),
        ("CAPS", ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SETUID", "CAP_SETGID", "CAP_KILL"]),
        ("MASKED", ["/proc/kcore"]), ("RO_PATHS", ["/proc/sys"])]


def test_vm_agent(vm):
    c = connect(vm)
    assert c.call(ap.OP_HELLO)["VERSION"] == 1
    c.call(ap.OP_NET_SETUP, [
        ("IFACE", [("MAC", MAC), ("ADDR", ["10.0.2.15/24"]), ("MTU", 1500)]),
        ("ROUTE", [("DST", "0.0.0.0/0"), ("GW", "10.0.2.2")]), ("HOSTNAME", "podvm"),
        ("SYSCTL", ["net.ipv4.ip_forward=1"])])
    c.call(ap.OP_CTR_CREATE, [("ID", "a1"), ("ARGV", ["sleep", "1000"]), ("MEM_LIMIT", 64 << 20),
                              ("PIDS_MAX", 50), ("CPU_SHARES", 512), ("PID_NS", 1)] + BASE)
    c.call(ap.OP_CTR_START, [("ID", "a1")])
    r = c.call(ap.OP_EXEC_SYNC, [("ID", "a1"), ("ARGV", ["sh", "-c", (
        "hostname; ip -4 addr show eth0 | grep -c 10.0.2.15/24; ip route | grep -c default; "
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /proc/self/cgroup; "
        "cat /proc/1/cmdline | tr '\\0' ' '")])], timeout=30)
    assert r["OUT"].decode().split("\n")[:7] == ["podvm", "1", "1", "67108864", "50", "0::/",
                                                "sleep 1000 "]
    s = c.open_stream(ap.OP_EXEC, [("ID", "a1"), ("ARGV", ["sh", "-c", "tty; stty size"]),
                                   ("TTY", 1), ("ROWS", 24), ("COLS", 80)])
    s.wait_closed(30)
    assert s.data[ap.CHAN_STDOUT] == b"/dev/pts/0\r\n24 80\r\n" and s.exit_code == 0
    st = c.call(ap.OP_STATS, [("ID", "a1")])
    assert st["MEM_LIMIT_NOW"] == 64 << 20 and st["PIDS_CURRENT"] >= 1 and st["CPU_USAGE_NS"] > 0
    c.call(ap.OP_POD_STATS)
    c.call(ap.OP_CTR_UPDATE, [("ID", "a1"), ("MEM_LIMIT", 32 << 20), ("CPU_QUOTA", 50000),
                              ("CPU_PERIOD", 100000)])
    r = c.call(ap.OP_EXEC_SYNC, [("ID", "a1"), ("ARGV", ["cat", "/sys/fs/cgroup/memory.max",
                                                         "/sys/fs/cgroup/cpu.max"])])
    assert r["OUT"] == b"33554432\n50000 100000\n"

    c.call(ap.OP_CTR_CREATE, [("ID", "oom"), ("ARGV", ["sh", "-c", "x=a; while true; do x=$x$x; done"]),
                              ("MEM_LIMIT", 16 << 20), ("MEM_SWAP", 16 << 20)] + BASE)
    c.call(ap.OP_CTR_START, [("ID", "oom")])
    e = c.wait_event(ap.EV_EXIT, lambda a: a["ID"] == "oom", timeout=60).attrs
    assert e["REASON"] == "OOMKilled" and e["OOM_KILLED"] == 1 and e["EXIT_CODE"] == 137
    assert c.wait_event(ap.EV_OOM, lambda a: a["ID"] == "oom", timeout=5)
    # an OOM kill of a child while the container goes on: an OOM event, it keeps running
    c.call(ap.OP_CTR_CREATE, [("ID", "oom2"), ("ARGV", ["sh", "-c", (
        "sh -c 'x=a; while true; do x=$x$x; done'; echo survived; sleep 1000")]),
        ("MEM_LIMIT", 16 << 20), ("MEM_SWAP", 16 << 20), ("LOG", 1)] + BASE)
    c.call(ap.OP_CTR_START, [("ID", "oom2")])
    assert c.wait_event(ap.EV_OOM, lambda a: a["ID"] == "oom2", timeout=60)
    assert c.wait_event(ap.EV_LOG, lambda a: a["ID"] == "oom2" and b"survived" in a["DATA"],
                        timeout=10)
    assert c.call(ap.OP_CTR_STATUS, [("ID", "oom2")])["STATE"] == ap.ST_RUNNING

    # runtd goes away and comes back: same boot, the exit again, the running container kept
    c.close()
    time.sleep(0.3)
    c = connect(vm, timeout=10)
    assert c.wait_event(ap.EV_EXIT, lambda a: a["ID"] == "oom", timeout=10)
    states = {s["ID"]: s["STATE"] for s in c.call(ap.OP_CTR_LIST).all("STATUS")}
    assert states == {"oom": ap.ST_EXITED, "a1": ap.ST_RUNNING, "oom2": ap.ST_RUNNING}
    c.call(ap.OP_SHUTDOWN)
    assert vm["q"].wait(timeout=30) == 0  # powered off
