#!/bin/sh
# Boot-time and memory levers of the microVM backend, measured one VM at a time through
# backends/microvm (test/tools/microvm/mv-boot): spawn -> READY on the agent port, QEMU
# (+ virtiofsd) PSS at READY and RUNS_SETTLE ms later. Needs root, qemu-system-x86_64, a
# /boot/vmlinuz-* with its modules, and a built tree (cmake --build --preset dev).
#
#   hack/microvm-bench.sh [RUNS] [LEVER-NAME...]     (default 5 runs, every lever)
set -eu
B=${BUILD:-$(dirname "$0")/../build/dev}
RUNS=${1:-5}
[ $# -gt 0 ] && shift
BOOT="$B/test/tools/mv-boot --agent $B/test/tools/mv-test-init --runs $RUNS --settle-ms ${SETTLE:-3000}"

levers() {
cat <<'L'
default|
gzip|--gzip 1
pit-pic-off|--machine pit=off,pic=off
rtc-off|--machine rtc=off
all-off|--machine pit=off,pic=off,rtc=off
nokaslr|--cmdline nokaslr
tb-16|--tb 16
tb-64|--tb 64
tb-256|--tb 256
mem-128|--mem 128
mem-192|--mem 192
mem-512|--mem 512
balloon|--balloon
console|--console
no-extra-levers|--cmdline "tsc=unstable cryptomgr.notests=0 pci=on rcupdate.rcu_expedited=0"
mitigations-off|--cmdline mitigations=off
noinit-on-alloc|--cmdline init_on_alloc=0
noshuffle|--cmdline page_alloc.shuffle=0
lsm-off|--cmdline "lsm=lockdown,capability apparmor=0 security=none ima_appraise=off audit=0"
rodata-off|--cmdline "rodata=off"
nosmp|--cmdline "nosmp"
balloon-noshuffle|--balloon --cmdline "nokaslr page_alloc.shuffle=0"
best-mem|--mem 128 --cmdline "nokaslr page_alloc.shuffle=0" --balloon --tb 16
L
}

levers | while IFS='|' read -r name args; do
        if [ $# -gt 0 ]; then
                case " $* " in *" $name "*) ;; *) continue ;; esac
        fi
        out=$(eval "$BOOT $args" 2>&1 | grep SUMMARY || echo "SUMMARY failed")
        printf '%-18s %s\n' "$name" "${out#SUMMARY }"
done
