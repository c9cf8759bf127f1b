#!/bin/bash
# usage: reports/sessions-20261203/clean.sh APUS-BINARY OUT-DIR [ROUNDS]
# What persistence costs clean sessions: QoS 1 pairs (10 → 10, clean sessions, 64 B, window 64,
# 2 s + 5 s) against Apus without and with `persistence true` (written), alternating. Nothing is
# stored; a PUBACK of a message that went to the other shard waits for that shard's answer to a
# store barrier (one per loop turn).
set -u
bin=$1; out=$2; rounds=${3:-3}
mkdir -p "$out"
dir=/tmp/apus-sessions-bench
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; }
for r in $(seq "$rounds"); do
    for mode in memory written; do
        rm -rf "$dir"; mkdir -p "$dir"
        args=(--port 18870 --log-level warning)
        [ "$mode" != memory ] && args+=(--set persistence=true --set "persistence_location=$dir")
        "$bin" "${args[@]}" >/dev/null 2>&1 & P=$!
        wait_port 18870
        .build/release/apus-bench pairs --pairs 10 -q 1 -s 64 --window 64 -p 18870 --warmup 2 --duration 5 \
            --broker-pid $P --label "clean-$mode" --json "$out/clean-$mode-r$r.json" --quiet >/dev/null 2>&1
        kill -INT $P; wait $P
    done
done
rm -rf "$dir"
