#!/usr/bin/env bash
# Installs every Debian package the build and the tests need. Idempotent: does nothing
# when all are present. Needs root (or sudo) only when something is missing.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  libuv1-dev libssl-dev libc-ares-dev liblua5.4-dev nlohmann-json3-dev doctest-dev
  libsqlite3-dev libhiredis-dev libhttp-parser-dev libbenchmark-dev libgoogle-perftools-dev
  sip-tester dnsmasq-base redis-server baresip-core linphone-cli python3 openssl procps iproute2
)
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
