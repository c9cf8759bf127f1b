#!/usr/bin/env bash
# Builds the decoder fuzz target with libFuzzer (and AddressSanitizer) and runs it for
# FUZZ_SECONDS (default 60) on a copy of the seed corpus. Exits non-zero on a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
out=fuzz/apus-fuzz-decoder
if [ ! -x "$out" ] || [ -n "$(find Sources/Codec fuzz/DecoderFuzz.swift -newer "$out" -print -quit)" ]; then
  echo "building $out"
  swiftc -sanitize=fuzzer,address -parse-as-library -O -swift-version 6 \
    -module-name ApusFuzz Sources/Codec/*.swift fuzz/DecoderFuzz.swift -o "$out"
fi
rm -rf fuzz/corpus-run
mkdir -p fuzz/corpus-run
cp fuzz/corpus/* fuzz/corpus-run/
echo "fuzzing the decoder for ${seconds}s"
"$out" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 fuzz/corpus-run 2>&1 | tail -n 25
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then echo "fuzzer found a crash (exit $status)"; exit "$status"; fi
echo "fuzz run clean"
