#!/usr/bin/env bash
# bench/bench.sh quick|full [more sbbench.py campaign options]
#
# The side-by-side benchmark (make bench = full, make bench-quick = quick): installs what
# only the benchmark needs when it is missing (Kamailio with its Lua modules, SIPp, a packet
# capturer), builds Switchboard in Release into build-bench/, then runs
# bench/sbbench.py campaign: Switchboard, Kamailio (native config) and Kamailio (KEMI Lua)
# under the same SIPp load, one after the other, on 127.0.0.1. The table is printed and
# written to bench/results/latest.json. See docs/performance.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-full}
shift || true
case $MODE in quick | full) ;; *) echo "usage: bench/bench.sh quick|full [campaign options]" >&2; exit 2 ;; esac

# Benchmark-only packages (not part of `make deps`): installed when missing.
PKGS=(kamailio kamailio-lua-modules sip-tester tcpdump python3 procps)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "bench: installing ${missing[*]}"
	SUDO=""
	[[ $(id -u) -eq 0 ]] || SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Release build of the proxy and the memory benchmark. -g keeps symbols for perf (it does
# not change the code).
BUILD=$ROOT/build-bench
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
if [[ ! -f $BUILD/CMakeCache.txt ]]; then
	cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS=-g"
fi
targets=(switchboard)
for t in bench_memory udp_pingpong; do
	if cmake --build "$BUILD" --target help 2>/dev/null | grep -qE "(^|\.\.\. )$t"; then
		targets+=("$t")
	else
		echo "bench: no $t target (SB_BENCH off in $BUILD?): skipped"
	fi
done
cmake --build "$BUILD" -j "$(nproc)" --target "${targets[@]}"

exec python3 "$ROOT/bench/sbbench.py" campaign --mode "$MODE" --sb-bin "$BUILD/app/switchboard" "$@"
