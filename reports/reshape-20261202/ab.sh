#!/bin/bash
# usage: ab.sh APUS-BINARY OUT.json LABEL BENCH-ARGS...
# One apus-bench run against a fresh broker started from APUS-BINARY (waits for its port).
set -u
bin=$1; out=$2; label=$3; shift 3
"$bin" --port 18840 --log-level warning >/dev/null 2>&1 &
P=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18840) 2>/dev/null && break; sleep 0.05; done
.build/release/apus-bench "$@" -p 18840 --warmup 2 --duration 5 --broker-pid $P --label "$label" --json "$out" --quiet >/dev/null 2>&1
kill -INT $P; wait $P
