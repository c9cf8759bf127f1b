#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer (and AddressSanitizer) and runs each for FUZZ_SECONDS
# (default 60) on a copy of its seed corpus. Exits non-zero on a crash.
#   apus-fuzz-decoder  the MQTT decoder (Codec)
#   apus-fuzz-records  the shard contract's records and serialised sessions (ShardContract)
#   apus-fuzz-store    the store's segment scan and recovery (Store)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
# One module per target: the sources of the modules it needs, compiled together (Codec's
# re-export of ApusBase is left out, the two being one module here).
base_and_codec=(Sources/ApusBase/*.swift $(ls Sources/Codec/*.swift | grep -v Exports.swift))

build() {  # output, sources...
  local out=$1; shift
  if [ ! -x "$out" ] || [ -n "$(find "$@" -newer "$out" -print -quit)" ]; then
    echo "building $out"
    # The sources import the modules they come from; here they are one module.
    local dir; dir=$(mktemp -d)
    for f in "$@"; do sed -e '/^@_exported import /d' -e '/^import ApusBase$/d' -e '/^import Codec$/d' "$f" > "$dir/$(echo "$f" | tr / _)"; done
    # The store's CRC-32C instruction is a C module (its header's module map, its object file).
    local extra=()
    if grep -q '^import CCRC32C' "$@"; then
      clang -c -O2 -fsanitize=fuzzer-no-link,address Sources/CCRC32C/crc32c.c -ISources/CCRC32C/include -o "$dir/crc32c.o"
      extra=(-I Sources/CCRC32C/include "$dir/crc32c.o")
    fi
    swiftc -sanitize=fuzzer,address -parse-as-library -O -swift-version 6 -module-name ApusFuzz "$dir"/*.swift "${extra[@]}" -o "$out"
    rm -rf "$dir"
  fi
}

run() {  # binary, corpus, max_len, what
  rm -rf fuzz/corpus-run
  mkdir -p fuzz/corpus-run
  cp "$2"/* fuzz/corpus-run/ 2>/dev/null || true
  echo "fuzzing $4 for ${seconds}s"
  set +e
  "$1" -max_total_time="$seconds" -max_len="$3" -print_final_stats=1 fuzz/corpus-run 2>&1 | tail -n 25
  local status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then echo "fuzzer found a crash in $4 (exit $status)"; exit "$status"; fi
}

build fuzz/apus-fuzz-decoder "${base_and_codec[@]}" fuzz/DecoderFuzz.swift
build fuzz/apus-fuzz-records "${base_and_codec[@]}" Sources/ShardContract/*.swift fuzz/RecordFuzz.swift
build fuzz/apus-fuzz-store Sources/ApusBase/*.swift Sources/Store/*.swift Sources/CCRC32C/crc32c.c fuzz/StoreFuzz.swift
run fuzz/apus-fuzz-decoder fuzz/corpus 4096 "the decoder"
run fuzz/apus-fuzz-records fuzz/records-corpus 4096 "the shard records"
run fuzz/apus-fuzz-store fuzz/store-corpus 8192 "the store's recovery"
echo "fuzz run clean"
