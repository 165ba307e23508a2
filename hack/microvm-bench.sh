#!/bin/sh
# Boot-time and memory levers of the microVM backend, measured one VM at a time through
# backends/microvm (test/tools/microvm/mv-boot): spawn -> READY on the agent port (median of
# RUNS), QEMU (+ virtiofsd) PSS at READY and SETTLE ms later. Each lever is the defaults of
# mv_vm_start plus one change. Needs root, qemu-system-x86_64, /usr/lib/qemu/virtiofsd, tc,
# ip, a /boot/vmlinuz-* with its modules, and a built tree (cmake --build --preset dev).
#
#   hack/microvm-bench.sh [RUNS] [LEVER-NAME...]     (default 5 runs, every lever)
set -eu
B=${BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build/dev}
RUNS=${1:-5}
[ $# -gt 0 ] && shift
BOOT="$B/test/tools/mv-boot --agent $B/test/tools/mv-test-init --runs $RUNS --settle-ms ${SETTLE:-2000}"

# A CNI-like pod netns (veth, eth0 with an address and a default route) and a virtio-fs share
# with an overlay whiteout and an opaque dir, for the tap and virtiofs levers.
NETNS=mvbench$$
SHARE=$(mktemp -d /tmp/mvb-share.XXXXXX)
cleanup() {
        ip netns del "$NETNS" 2>/dev/null || true
        rm -rf "$SHARE"
}
trap cleanup EXIT INT TERM
ip netns add "$NETNS"
ip link add mvb$$h type veth peer name mvb$$p
ip link set mvb$$p netns "$NETNS"
ip addr add 10.251.7.1/24 dev mvb$$h
ip link set mvb$$h up
ip -n "$NETNS" link set mvb$$p name eth0
ip -n "$NETNS" addr add 10.251.7.2/24 dev eth0
ip -n "$NETNS" link set eth0 up
ip -n "$NETNS" link set lo up
ip -n "$NETNS" route add default via 10.251.7.1
mkdir -p "$SHARE/top/opaque" "$SHARE/base/opaque"
touch "$SHARE/top/keep" "$SHARE/base/gone" "$SHARE/top/opaque/shown" "$SHARE/base/opaque/hidden"
mknod "$SHARE/top/gone" c 0 0
python3 -c "import os,sys; os.setxattr(sys.argv[1], 'trusted.overlay.opaque', b'y')" "$SHARE/top/opaque"

levers() {
cat <<L
default|
gzip|--gzip 1
pit-pic-off|--machine pit=off,pic=off
rtc-off|--machine rtc=off
all-off|--machine pit=off,pic=off,rtc=off
tb-8|--tb 8
tb-32|--tb 32
tb-64|--tb 64
tb-256|--tb 256
mem-128|--mem 128
mem-512|--mem 512
balloon|--balloon
balloon-order0|--balloon --cmdline "page_alloc.shuffle=0 page_reporting.page_reporting_order=0"
console|--console
no-extra-levers|--cmdline "cryptomgr.notests=0 pci=on rcupdate.rcu_expedited=0 i8042.noaux=0"
mitigations-off|--cmdline mitigations=off
lsm-off|--cmdline "lsm=lockdown,capability apparmor=0 security=none ima_appraise=off audit=0"
init-on-alloc-off|--cmdline init_on_alloc=0
channel-mods-only|--modules virtio_mmio,virtio_console
virtiofs|--shared $SHARE
tap|--netns /run/netns/$NETNS --ifname eth0 --udp-port 9999
tap+virtiofs|--netns /run/netns/$NETNS --ifname eth0 --udp-port 9999 --shared $SHARE
L
}

levers | while IFS='|' read -r name args; do
        if [ $# -gt 0 ]; then
                case " $* " in *" $name "*) ;; *) continue ;; esac
        fi
        log=$(eval "$BOOT $args" 2>&1 || true)
        sum=$(printf '%s\n' "$log" | sed -n 's/^SUMMARY //p')
        checks=$(printf '%s\n' "$log" | sed -n 's/.* \(net=[^ ]*\) \(fs=[^"]*\)".*/\1 \2/p' | tail -1)
        udp=$(printf '%s\n' "$log" | grep -c 'udp: got' || true)
        printf '%-18s %s %s udp_ok=%s\n' "$name" "${sum:-FAILED $(printf '%s' "$log" | tail -2)}" "$checks" "$udp"
done
