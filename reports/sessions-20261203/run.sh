#!/bin/bash
# usage: reports/sessions-20261203/run.sh APUS-BINARY OUT-DIR [ROUNDS]
# QoS 1 pairs with persistent sessions (10 publishers → 10 subscribers, clean session 0, 64 B,
# window 64, 2 s warm-up + 5 s) against a fresh broker per run, alternating: Apus without
# persistence, Apus with persistence at each durability (written, synced, none), Mosquitto 2.0.11
# with `persistence true` (its default autosave_interval 1800: it writes at shutdown). Every
# message goes to a persistent session: with persistence, each is a store record (its delivery
# and its PUBACK too). The store directory is on the same file system for all.
set -u
bin=$1; out=$2; rounds=${3:-3}
mkdir -p "$out"
dir=/tmp/apus-sessions-bench
bench() {  # label pid port
    .build/release/apus-bench pairs --pairs 10 -q 1 -s 64 --window 64 --clean false -p "$3" --warmup 2 --duration 5 \
        --broker-pid "$2" --label "$1" --json "$out/$1-r$r.json" --quiet >/dev/null 2>&1
}
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; }
for r in $(seq "$rounds"); do
    for mode in memory written synced none; do
        rm -rf "$dir"; mkdir -p "$dir"
        args=(--port 18870 --log-level warning)
        [ "$mode" != memory ] && args+=(--set persistence=true --set "persistence_location=$dir" --set "persistence_durability=$mode")
        "$bin" "${args[@]}" >/dev/null 2>&1 & P=$!
        wait_port 18870
        bench "apus-$mode" $P 18870
        kill -INT $P; wait $P
    done
    rm -rf "$dir"; mkdir -p "$dir"; chmod 777 "$dir"  # mosquitto drops to its own user
    printf 'listener 18871 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n' "$dir" > /tmp/mosquitto-sessions.conf
    mosquitto -c /tmp/mosquitto-sessions.conf >/dev/null 2>&1 & P=$!
    wait_port 18871
    bench mosquitto-persistence $P 18871
    kill -INT $P; wait $P
done
rm -rf "$dir"
