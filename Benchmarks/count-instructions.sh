#!/usr/bin/env bash
# Instructions per message of the in-process publish path (Tools/PublishPathCount), counted by
# callgrind: repeatable whatever else this shared machine is doing, unlike wall-clock. Each path
# runs twice (10,000 and 20,000 messages after the harness's warm-up); the difference / 10,000 is
# the steady-state cost of one message, harness included (about 10 % of it).
#
#     Benchmarks/count-instructions.sh            # needs valgrind
set -euo pipefail
cd "$(dirname "$0")"
SWIFT=${SWIFT:-swift}
$SWIFT build -c release --product PublishPathCount >/dev/null
binary=$($SWIFT build -c release --show-bin-path)/PublishPathCount
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
strip --strip-debug -o "$stripped" "$binary"  # valgrind 3.19 cannot read Swift 6.3's DWARF
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$stripped" "$@" 2>&1 | awk '/Collected/ { print $4 }'; }
for path in "same 0" "cross 0" "same 1" "cross 1" "fanout 0" "fanout 1"; do
    set -- $path
    small=$(count "$1" "$2" 10000)
    large=$(count "$1" "$2" 20000)
    echo "$1 QoS $2: $(( (large - small) / 10000 )) instructions/message"
done
