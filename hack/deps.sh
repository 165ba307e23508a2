#!/usr/bin/env bash
# Installs what runt needs from Debian's packages, only what is missing.
# usage: hack/deps.sh run|test     (idempotent, non-interactive; needs root)
set -euo pipefail

run_pkgs=(
  build-essential cmake pkg-config
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
  lxc lxc-dev containernetworking-plugins skopeo
  libarchive-dev libyaml-dev libjson-c-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev
  libmicrohttpd-dev zlib1g-dev libseccomp-dev libcap-dev
  iptables iproute2 busybox-static
  qemu-system-x86 linux-image-cloud-amd64
)
test_pkgs=(
  libcmocka-dev python3-grpcio python3-grpc-tools python3-pytest
  docker-registry umoci apache2-utils clang libclang-rt-14-dev valgrind clang-format sqlite3
  openssl logrotate debhelper lintian
)

want=("${run_pkgs[@]}")
if [ "${1:-run}" = test ]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "hack/deps.sh: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi
echo "hack/deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# docker-registry starts a system service on :5000 at install; runt's tests run their own.
if [ -x /usr/bin/docker-registry ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
