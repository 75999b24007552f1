#!/usr/bin/env bash
# Run each libFuzzer target for SECONDS on a fresh copy of the seed corpus under BUILD_DIR.
# Usage: test/fuzz/run.sh BUILD_DIR SECONDS   (exits non-zero when a target finds a crash)
set -u
if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
torture="$here/../../../shared/conformance/rfc4475"
status=0
for target in fuzz_parser fuzz_framing; do
  bin="$build/test/fuzz/$target"
  if [ ! -x "$bin" ]; then
    echo "$target: not built in $build (cmake -DSB_FUZZ=ON with clang)" >&2
    exit 2
  fi
  corpus="$build/fuzz/corpus/$target"
  artifacts="$build/fuzz/artifacts/$target"
  rm -rf "$corpus"
  mkdir -p "$corpus" "$artifacts"
  cp "$here"/corpus/* "$corpus"/
  if [ -d "$torture" ]; then
    cp "$torture"/*.dat "$corpus"/ 2>/dev/null
    for f in "$torture"/rfc5118/*.dat; do cp "$f" "$corpus/rfc5118-$(basename "$f")"; done
  fi
  echo "== $target: ${seconds}s, corpus $corpus"
  "$bin" -max_len=70000 -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -dict="$here/sip.dict" -artifact_prefix="$artifacts/" "$corpus"
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "== $target: FAILED (exit $rc), artifacts in $artifacts" >&2
    status=1
  fi
done
exit $status
