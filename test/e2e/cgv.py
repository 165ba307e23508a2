"""The host's cgroup layout for the e2e tests: where a cgroup's limit files are on cgroup v1
(a hierarchy per controller) and on v2 (one tree), and what runt writes there."""

from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def v2():
    """A unified (v2-only) host: what Debian 12 boots, and the test_cgroup2_guest VM."""
    return (ROOT / "cgroup.controllers").exists()


def has(ctrl):
    """Controller @ctrl can limit runt's cgroups on this host."""
    if v2():
        return ctrl in (ROOT / "cgroup.controllers").read_text().split()
    return (ROOT / ctrl).is_dir()


def path(rel, ctrl, name):
    """File @name ("memory.max", "pids.current") of cgroup @rel ("runt/<id>"), controller
    @ctrl's on v1."""
    rel = rel.lstrip("/")
    return ROOT / rel / name if v2() else ROOT / ctrl / rel / name


def memory_limit(rel):
    """The memory limit of cgroup @rel in bytes, None for none."""
    f = path(rel, "memory", "memory.max" if v2() else "memory.limit_in_bytes")
    v = f.read_text().strip()
    return None if v == "max" or int(v) >= 1 << 62 else int(v)


def cpu(rel):
    """(weight or shares, quota or None, period) of cgroup @rel, in the version's terms."""
    if v2():
        q, p = path(rel, "cpu", "cpu.max").read_text().split()
        return (int(path(rel, "cpu", "cpu.weight").read_text()),
                None if q == "max" else int(q), int(p))
    q = int(path(rel, "cpu", "cpu.cfs_quota_us").read_text())
    return (int(path(rel, "cpu", "cpu.shares").read_text()), None if q < 0 else q,
            int(path(rel, "cpu", "cpu.cfs_period_us").read_text()))


def shares(s):
    """What CRI cpu_shares @s becomes in the cgroup: itself on v1, cpu.weight on v2."""
    if not v2():
        return max(s, 2)
    import math
    if s <= 2:
        return 1
    if s >= 262144:
        return 10000
    lg = math.log2(s)
    return math.ceil(10 ** ((lg * lg + 125 * lg) / 612 - 7 / 34))


def in_cgroup(pid_dir, ctrl, suffix):
    """Process dir /proc/<pid> is in a cgroup ending with @suffix (controller @ctrl's on v1)."""
    for line in (pid_dir / "cgroup").read_text().splitlines():
        _, ctrls, p = line.split(":", 2)
        if (ctrls == "" if v2() else ctrl in ctrls.split(",")) and p.endswith(suffix):
            return True
    return False
