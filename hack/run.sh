#!/usr/bin/env bash
# Builds runtd and runs it in the foreground with a working default setup:
# the LXC backend (and the microvm handler), a default CNI bridge network, state under
# /var/lib/runt.
# usage: sudo hack/run.sh [runtd flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

hack/deps.sh run
# Without the unit tests: their cmocka comes with the test command's packages only.
cmake --preset release -DRUNT_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" --target runtd >/dev/null

# A default config and CNI network, only when none exists (never overwritten).
if [ ! -e /etc/runt/runt.yaml ]; then
  install -D -m 0644 hack/runt.yaml /etc/runt/runt.yaml
fi
mkdir -p /etc/cni/net.d
if ! ls /etc/cni/net.d/*.conf /etc/cni/net.d/*.conflist /etc/cni/net.d/*.json >/dev/null 2>&1; then
  install -m 0644 hack/10-runt.conflist /etc/cni/net.d/10-runt.conflist
fi

exec build/release/cri/runtd "$@"
