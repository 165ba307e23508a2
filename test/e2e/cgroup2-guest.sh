#!/bin/sh
# PID 1 of the cgroup v2 guest that test_cgroup2_guest.py boots: the host's root, read-only
# through virtiofs under a tmpfs overlay, with cgroup2 alone at /sys/fs/cgroup. Sets up what
# runtd and the e2e tests need, runs pytest on the tests named on the kernel command line
# (runt.dir, runt.runtd, runt.tests: comma-separated) and says how it went on the console:
# "RUNT-GUEST-RESULT rc=<pytest's exit code>". Then the guest powers off (QEMU exits; the
# test stops it anyway once the result is out). No network but loopback: the tests' registry runs in here, on 127.0.0.1.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8

end() {
        echo "RUNT-GUEST-RESULT rc=$1"
        sync
        echo 1 >/proc/sys/kernel/sysrq
        echo o >/proc/sysrq-trigger
        sleep 10
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,gid=5,mode=620 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx 2>/dev/null
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t mqueue mqueue /dev/mqueue
# cgroup v2 only, every controller handed down from the root (no systemd here to do it).
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || end 90
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
        echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || echo "cgroup2: +$c refused"
done
# The host's state must not show through: fresh writable dirs over it.
for d in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$d"; done
for d in /run /var/lib/runt /var/lib/lxc /var/log /root /etc/cni/net.d; do
        mkdir -p "$d" && mount -t tmpfs -o mode=0755 tmpfs "$d"
done
mkdir -p /run/lock /run/netns
ip link set lo up
hostname runt-cgroup2
sysctl -qw net.ipv4.ip_forward=1 || true

arg() {
        tr ' ' '\n' </proc/cmdline | sed -n "s/^runt\.$1=//p"
}
dir=$(arg dir)
runtd=$(arg runtd)
tests=$(arg tests | tr ',' ' ')
echo "guest: $(uname -r), cgroup controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
echo "guest: $(nproc) cpus, $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
cd "$dir" || end 91
# shellcheck disable=SC2086 # one argument per test
RUNTD="$runtd" /usr/bin/python3 -m pytest $tests -q -p no:cacheprovider -rfEs --color=no \
        -o console_output_style=classic </dev/null 2>&1
end $?
