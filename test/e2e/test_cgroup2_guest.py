"""The cgroup v2 subset of the e2e suite on a real cgroup v2 hierarchy (issue 18, item 3).

This machine mounts cgroup v1, and a hierarchy cannot be switched while the system runs, so
this test boots a QEMU guest that has cgroup v2 only: the microVM backend's kernel (Debian's
linux-image-cloud-amd64, found in /boot as the backend finds it), an initramfs of
busybox-static and the few modules it needs to mount the host's root read-only over
virtiofs (virtiofsd, as the microVM backend runs it) under a tmpfs overlay, and
cgroup2-guest.sh as PID 1, which mounts cgroup2 at /sys/fs/cgroup with every controller
enabled, fresh tmpfs over the host's state dirs, and runs pytest on GUEST_TESTS against the
runtd of this build inside the guest. The tests' registry runs in the guest on 127.0.0.1,
as it does here; the guest has no other network. QEMU runs TCG (no KVM here), 2 vCPUs.

The guest's pytest output is printed, and this test fails when the run inside fails or does
not finish in time.
"""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import RUNTD

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GUEST_INIT = HERE / "cgroup2-guest.sh"
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
QEMU = shutil.which("qemu-system-x86_64")
BUSYBOX = "/bin/busybox"
# What the cgroup version changes: limits and their updates, OOM, pids, devices, stats,
# Status. Picked to finish in a few minutes under TCG.
GUEST_TESTS = [
    "test/e2e/test_cgroup2.py",
    "test/e2e/test_containers.py::test_resources_and_update",
    "test/e2e/test_containers.py::test_oom_kill_is_reported",
    "test/e2e/test_limits.py::test_default_pids_limits",
    "test/e2e/test_hostile_container.py::test_root_cannot_raise_its_own_limits",
]
EARLY_MODULES = ["virtio_mmio", "virtio-rng", "virtiofs", "overlay"]
MEM_MIB = 3072
TIMEOUT_S = int(os.environ.get("RUNT_CGROUP2_GUEST_TIMEOUT", "2400"))


def guest_kernel():
    """(vmlinuz, kver) of the newest /boot/vmlinuz-* with its modules, or None."""
    found = []
    for k in Path("/boot").glob("vmlinuz-*"):
        kver = k.name[len("vmlinuz-"):]
        if (Path("/lib/modules") / kver / "modules.dep").exists():
            found.append((k.stat().st_mtime, k, kver))
    return (max(found)[1], max(found)[2]) if found else None


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="virtiofsd and LXC need root"),
    pytest.mark.skipif(not QEMU, reason="qemu-system-x86 is not installed"),
    pytest.mark.skipif(not os.access(VIRTIOFSD, os.X_OK), reason="no virtiofsd"),
    pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK), reason="busybox-static is missing"),
    pytest.mark.skipif(guest_kernel() is None, reason="no guest kernel in /boot"),
]


def tsc_khz():
    """The host's TSC rate: the guest kernel's early TSC without calibration, which hangs on
    a microvm machine (no HPET, no PM timer), as the microVM backend passes it."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz").read_text())
    except (OSError, ValueError):
        pass
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return int(float(line.split(":")[1]) * 1000 + 0.5)
    return 0


def modules_in_order(kver, names):
    """The .ko paths (relative to /lib/modules/<kver>) of @names with their dependencies,
    each after what it needs; built-in ones are left out."""
    base = Path("/lib/modules") / kver
    deps = {}
    for line in (base / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.split(".ko")[0].replace("-", "_"): m for m in deps}
    builtin = set()
    if (base / "modules.builtin").exists():
        builtin = {Path(m).name.split(".ko")[0].replace("-", "_")
                   for m in (base / "modules.builtin").read_text().split()}
    out = []

    def add(mod):
        for d in reversed(deps[mod]):
            add(d)
        if mod not in out:
            out.append(mod)

    for n in names:
        key = n.replace("-", "_")
        if key in builtin:
            continue
        assert key in by_name, f"module {n} is not in {base}/modules.dep"
        add(by_name[key])
    return [m for i, m in enumerate(out) if m not in out[:i]]


def cpio_newc(entries):
    """A newc cpio archive of @entries: (name, mode, data) with data bytes or None (a dir)."""
    out = bytearray()
    ino = 1

    def one(name, mode, data, nlink):
        nonlocal ino
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        ino += 1
        out.extend(hdr.encode() + nb)
        out.extend(b"\0" * ((4 - len(out) % 4) % 4))
        out.extend(data)
        out.extend(b"\0" * ((4 - len(out) % 4) % 4))

    for name, mode, data in entries:
        one(name, mode, data if data is not None else b"", 2 if data is None else 1)
    one("TRAILER!!!", 0, b"", 1)
    return bytes(out)


INITRAMFS_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
fail() { echo "initramfs: $*"; echo "RUNT-GUEST-RESULT rc=99"; echo b > /proc/sysrq-trigger; }
for m in $(cat /etc/modules-order); do insmod "/lib/modules/$m" || echo "insmod $m failed"; done
mount -t virtiofs -o ro rootfs /lower || fail "mount virtiofs"
mount -t tmpfs -o mode=0755 tmpfs /up || fail "mount tmpfs"
mkdir -p /up/upper /up/work
mount -t overlay -o lowerdir=/lower,upperdir=/up/upper,workdir=/up/work overlay /newroot \\
        || fail "mount overlay"
init=$(tr ' ' '\\n' < /proc/cmdline | sed -n 's/^runt\\.init=//p')
mount --move /dev /newroot/dev
umount /proc
exec switch_root /newroot /bin/sh "$init"
"""


def build_initramfs(path, kver):
    mods = modules_in_order(kver, EARLY_MODULES)
    entries = [(d, 0o40755, None) for d in
               ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "lower", "up",
                "newroot")]
    for m in mods:
        parts = Path(m).parts
        for i in range(1, len(parts)):
            d = "lib/modules/" + "/".join(parts[:i])
            if (d, 0o40755, None) not in entries:
                entries.append((d, 0o40755, None))
        entries.append(("lib/modules/" + m, 0o100644,
                        (Path("/lib/modules") / kver / m).read_bytes()))
    entries += [
        ("bin/busybox", 0o100755, Path(BUSYBOX).read_bytes()),
        ("etc/modules-order", 0o100644, "\n".join(mods).encode() + b"\n"),
        ("init", 0o100755, INITRAMFS_INIT.encode()),
    ]
    path.write_bytes(cpio_newc(entries))


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cgroup2_subset_in_a_cgroup2_guest(tmp_path):
    kernel, kver = guest_kernel()
    assert RUNTD.exists(), f"build runtd first ({RUNTD})"
    initramfs = tmp_path / "initramfs.cpio"
    build_initramfs(initramfs, kver)
    sock = tmp_path / "vfs.sock"
    console = tmp_path / "console.log"
    cmdline = " ".join([
        "console=ttyS0", "panic=-1", "loglevel=4", "nokaslr", "pci=off", "tsc=reliable",
        f"tsc_early_khz={tsc_khz()}",
        "no_timer_check", "cryptomgr.notests", "i8042.noaux", "i8042.nomux", "i8042.nopnp",
        "i8042.dumbkbd", "8250.nr_uarts=1", "random.trust_cpu=on", "rdinit=/init",
        # Without systemd this does nothing; it says what the guest is for whoever looks.
        "systemd.unified_cgroup_hierarchy=1",
        f"runt.init={GUEST_INIT}", f"runt.dir={REPO}", f"runt.runtd={RUNTD.resolve()}",
        "runt.tests=" + ",".join(GUEST_TESTS),
    ])
    assert len(cmdline) < 2000, cmdline
    vfs = qemu = None
    try:
        vfs = subprocess.Popen(
            [VIRTIOFSD, f"--socket-path={sock}", "-o", "source=/", "-o", "cache=auto",
             "-o", "no_posix_lock", "-o", "log_level=err",
             # chroot: pivot_root into / itself is refused (EBUSY).
             "-o", "sandbox=chroot"],
            stdout=open(tmp_path / "virtiofsd.log", "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            assert vfs.poll() is None, (tmp_path / "virtiofsd.log").read_text()
            time.sleep(0.05)
        assert sock.exists(), "virtiofsd made no socket"
        qemu = subprocess.Popen(
            [QEMU, "-M", "microvm,x-option-roms=off,rtc=on,isa-serial=on,memory-backend=mem",
             "-accel", "tcg", "-smp", "2", "-m", str(MEM_MIB),
             "-object", f"memory-backend-memfd,id=mem,size={MEM_MIB}M,share=on",
             "-global", "virtio-mmio.force-legacy=false", "-nodefaults", "-no-user-config",
             "-display", "none", "-no-reboot",
             "-kernel", str(kernel), "-initrd", str(initramfs), "-append", cmdline,
             "-serial", f"file:{console}",
             "-chardev", f"socket,id=vfs,path={sock}",
             "-device", "vhost-user-fs-device,chardev=vfs,tag=rootfs,queue-size=1024",
             "-object", "rng-random,id=rng0,filename=/dev/urandom",
             "-device", "virtio-rng-device,rng=rng0"],
            stdout=open(tmp_path / "qemu.log", "wb"), stderr=subprocess.STDOUT)
        # Until the guest says how it went (then it powers off), QEMU ends or time is up.
        deadline = time.monotonic() + TIMEOUT_S
        while qemu.poll() is None and time.monotonic() < deadline:
            if console.exists() and "RUNT-GUEST-RESULT" in console.read_text(errors="replace"):
                try:
                    qemu.wait(10)
                except subprocess.TimeoutExpired:
                    pass
                break
            time.sleep(2)
        out = console.read_text(errors="replace") if console.exists() else ""
    finally:
        stop(qemu)
        stop(vfs)
    print(out)
    m = re.search(r"RUNT-GUEST-RESULT rc=(\d+)", out)
    tail = "\n".join(out.splitlines()[-60:])
    assert m, f"the guest did not finish in {TIMEOUT_S} s:\n{tail}\n" + \
        (tmp_path / "qemu.log").read_text(errors="replace")
    assert "cgroup controllers:" in out and "memory" in out.split("cgroup controllers:")[1]
    summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    assert int(m.group(1)) == 0, f"pytest in the guest failed:\n{tail}"
    assert summary and " passed" in summary[-1] and "skipped" not in summary[-1], summary
