#!/usr/bin/env bash
# critest --runtime-handler=proxmox against the fake PVE running real CTs (test/pvefake).
#
#   hack/critest-proxmox.sh [OUTDIR]          (default /var/tmp/critest-out-px)
#
# Starts test/pvefake/pvefake.py --run-cts with one bridge (vmbr0) on a range of its own,
# writes an API token file (0600) and a runt config: the critest config of ../shared/critest
# (its mirrors of registry.k8s.io and gcr.io to the local registry) with its own socket and
# dirs, plus a `proxmox` runtime pointed at the fake (its CA, endpoint, the bridge's range).
# Then starts the release runtd with it, runs critest.sh with RUNTIME_HANDLER=proxmox and, on
# any exit, removes the pods left, stops runtd and the fake (which stops its CTs and removes
# its bridges and veths) and checks nothing is left. Downloads nothing.
#
# Needs root, lxc, a release build (cmake --build --preset release), critest and crictl
# v1.26.1 and the local registry (../shared/critest/README.md: registry.sh start).
#
# Env: CRITEST_DIR (../shared/critest), CRITEST, CRICTL (/var/tmp/critools/v1.26.1/...),
#      BUILD (build/release), NET (10.88.27: the pods' /24), WORK (/var/tmp/runt-critest-px),
#      FOCUS, SKIP (passed to critest.sh), KEEP=1 (keep WORK).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-/var/tmp/critest-out-px}
CRITEST_DIR=${CRITEST_DIR:-$REPO/../shared/critest}
CRITEST=${CRITEST:-/var/tmp/critools/v1.26.1/critest}
CRICTL=${CRICTL:-/var/tmp/critools/v1.26.1/crictl}
BUILD=${BUILD:-$REPO/build/release}
NET=${NET:-10.88.27}
WORK=${WORK:-/var/tmp/runt-critest-px}
RUN=/run/runt-critest-px
SOCK=unix://$RUN/runt.sock

die() {
	echo "critest-proxmox: $*" >&2
	exit 2
}

[ "$(id -u)" = 0 ] || die "needs root (the fake runs CTs with lxc-start)"
for f in "$CRITEST_DIR/critest.sh" "$CRITEST_DIR/runt-critest.yaml" "$CRITEST" "$CRICTL" \
	"$BUILD/cri/runtd" "$BUILD/cri/runt-agent"; do
	[ -e "$f" ] || die "missing $f"
done
curl -fsS -o /dev/null --max-time 3 http://localhost:5000/v2/ ||
	die "no registry on localhost:5000 (bash $CRITEST_DIR/registry.sh start)"

FAKE_PID=
RUNTD_PID=
cleanup() {
	local rc=$? left
	trap - EXIT INT TERM
	if [ -n "$RUNTD_PID" ] && kill -0 "$RUNTD_PID" 2>/dev/null; then
		# the pods critest left: their CTs and leases go through runtd
		for p in $("$CRICTL" -r "$SOCK" --timeout 60s pods -q 2>/dev/null); do
			"$CRICTL" -r "$SOCK" --timeout 120s stopp "$p" >/dev/null 2>&1
			"$CRICTL" -r "$SOCK" --timeout 120s rmp "$p" >/dev/null 2>&1
		done
		kill -TERM "$RUNTD_PID"
		for _ in $(seq 100); do kill -0 "$RUNTD_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$RUNTD_PID" 2>/dev/null
		wait "$RUNTD_PID" 2>/dev/null
	fi
	if [ -n "$FAKE_PID" ] && kill -0 "$FAKE_PID" 2>/dev/null; then
		kill -TERM "$FAKE_PID" # it stops its CTs, removes its bridges, veths and cgroups
		for _ in $(seq 400); do kill -0 "$FAKE_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$FAKE_PID" 2>/dev/null
		wait "$FAKE_PID" 2>/dev/null
	fi
	left=$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' |
		grep -E "^(pvf$PORT|pw$(printf %04x "${PORT:-0}"))" || true)
	[ -z "$left" ] || echo "critest-proxmox: left behind: $left" >&2
	if [ -d "$WORK/fake/lxc" ] && [ -n "$(ls "$WORK/fake/lxc")" ]; then
		echo "critest-proxmox: CTs left in $WORK/fake/lxc: $(ls "$WORK/fake/lxc")" >&2
	fi
	[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK" "$RUN"
	exit "$rc"
}
PORT=
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK" "$RUN"
mkdir -p "$WORK/fake" "$WORK/net.d" "$OUT"
cp "$CRITEST_DIR/cni-critest.conflist" "$WORK/net.d/" 2>/dev/null

TOKEN="root@pam!runt=$(cat /proc/sys/kernel/random/uuid)"
(umask 077 && printf '%s\n' "$TOKEN" >"$WORK/token")

/usr/bin/python3 "$REPO/test/pvefake/pvefake.py" --dir "$WORK/fake" --port 0 --token "$TOKEN" \
	--run-cts --bridge "vmbr0=$NET.1/24" >"$WORK/fake.out" 2>"$OUT/pvefake.log" &
FAKE_PID=$!
for _ in $(seq 300); do
	[ -s "$WORK/fake.out" ] && break
	kill -0 "$FAKE_PID" 2>/dev/null || die "the fake did not start: $(tail -3 "$OUT/pvefake.log")"
	sleep 0.1
done
PORT=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["port"])' <"$WORK/fake.out") ||
	die "no ready line from the fake"
CA=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["ca"])' <"$WORK/fake.out")

# The critest config with this run's socket and dirs, and the proxmox runtime after `runtimes:`.
sed -e "s#/run/runt-critest#$RUN#g" -e "s#/var/tmp/runt-critest#$WORK#g" \
	-e '/^runtimes:/r /dev/stdin' "$CRITEST_DIR/runt-critest.yaml" >"$WORK/runt.yaml" <<EOF
  proxmox:
    backend: proxmox
    options:
      endpoints: https://127.0.0.1:$PORT
      token_file: $WORK/token
      ca_file: $CA
      subnet: $NET.0/24
      range_start: $NET.10
      range_end: $NET.200
      gateway: $NET.1
      memory: "256"
      task_timeout: "60"
      poll_interval: "2"
EOF

"$BUILD/cri/runtd" --config "$WORK/runt.yaml" >"$OUT/runtd.log" 2>&1 &
RUNTD_PID=$!
for _ in $(seq 100); do
	[ -S "$RUN/runt.sock" ] && break
	kill -0 "$RUNTD_PID" 2>/dev/null || die "runtd did not start: $(tail -3 "$OUT/runtd.log")"
	sleep 0.1
done

CRITEST=$CRITEST CRICTL=$CRICTL RUNTIME_HANDLER=proxmox "$CRITEST_DIR/critest.sh" "$SOCK" "$OUT"
