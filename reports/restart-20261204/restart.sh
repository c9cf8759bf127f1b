#!/bin/bash
# usage: reports/restart-20261204/restart.sh APUS-BINARY RETAINED SESSIONS
# RETAINED retained messages (64 B) and SESSIONS offline persistent sessions (one subscription,
# one queued QoS 1 message of 64 B each) into Apus (persistence true) and Mosquitto 2.0.11
# (persistence true), SIGTERM, restart on the same data: how long until each serves again, its
# resident memory after, the disk bytes, and the counts the restarted broker reports.
set -u
bin=$1; retained=$2; sessions=$3
dir=/tmp/apus-restart-bench
here=reports/sessions-20261203  # fill-sessions.py lives there
wait_port() { for _ in $(seq 3000); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.01; done; }
wait_log() { for _ in $(seq 6000); do grep -q "listening on" "$1" && return; sleep 0.01; done; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
rss() { awk '/VmRSS/ { print $2 }' /proc/$1/status; }
fill() {
    python3 reports/persistence-20261203/fill.py --port "$1" --count "$retained"
    python3 $here/fill-sessions.py --port "$1" --count "$sessions"
}

rm -rf "$dir"; mkdir -p "$dir"
args=(--port 18880 --set persistence=true --set "persistence_location=$dir" --set "http_listener=18082 127.0.0.1" --log-level info)
"$bin" "${args[@]}" >"$dir.apus1.log" 2>&1 & P=$!
wait_port 18880
fill 18880
echo "apus rss before restart: $(rss $P) KiB; disk: $(du -sb "$dir" | cut -f1) bytes"
kill -TERM $P; wait $P
t=$(date +%s%N)
"$bin" "${args[@]}" >"$dir.apus2.log" 2>&1 & P=$!
wait_log "$dir.apus2.log"
echo "apus serves again after $(ms $t) ms; $(grep 'store: recovered' "$dir.apus2.log" | grep -o 'milliseconds=[0-9]*\|read_ms=[0-9]*\|merge_ms=[0-9]*\|write_ms=[0-9]*\|sessions=[0-9]*\|session_messages=[0-9]*' | tr '\n' ' ')"
sleep 1.5
echo "apus rss after restart: $(rss $P) KiB; disk: $(du -sb "$dir" | cut -f1) bytes; $(curl -s http://127.0.0.1:18082/metrics | grep '^apus_retained_count\|^apus_sessions_count' | tr '\n' ' ')"
kill -TERM $P; wait $P
# Once more: the first start spread the retained messages over the shards' logs.
t=$(date +%s%N)
"$bin" "${args[@]}" >"$dir.apus3.log" 2>&1 & P=$!
wait_log "$dir.apus3.log"
echo "apus serves again (second restart) after $(ms $t) ms; $(grep 'store: recovered' "$dir.apus3.log" | grep -o 'milliseconds=[0-9]*\|read_ms=[0-9]*\|merge_ms=[0-9]*\|write_ms=[0-9]*' | tr '\n' ' ')"
sleep 1.5
echo "apus rss after the second restart: $(rss $P) KiB"
kill -TERM $P; wait $P

rm -rf "$dir"; mkdir -p "$dir"; chmod 777 "$dir"  # mosquitto drops to its own user
printf 'listener 18881 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nsys_interval 1\nmax_connections -1\n' "$dir" > /tmp/mosquitto-restart.conf
mosquitto -c /tmp/mosquitto-restart.conf >/dev/null 2>&1 & P=$!
wait_port 18881
fill 18881
echo "mosquitto rss before restart: $(rss $P) KiB"
t=$(date +%s%N)
kill -TERM $P; wait $P
echo "mosquitto saved in $(ms $t) ms; disk: $(du -sb "$dir" | cut -f1) bytes"
t=$(date +%s%N)
mosquitto -c /tmp/mosquitto-restart.conf >/dev/null 2>&1 & P=$!
wait_port 18881
echo "mosquitto serves again after $(ms $t) ms"
sleep 1.5
echo "mosquitto rss after restart: $(rss $P) KiB; $(timeout 5 mosquitto_sub -p 18881 -t '$SYS/broker/retained messages/count' -t '$SYS/broker/clients/disconnected' -C 2 -v | tr '\n' ' ')"
kill -TERM $P; wait $P
t=$(date +%s%N)
mosquitto -c /tmp/mosquitto-restart.conf >/dev/null 2>&1 & P=$!
wait_port 18881
echo "mosquitto serves again (second restart) after $(ms $t) ms"
kill -TERM $P; wait $P
rm -rf "$dir" "$dir".apus*.log
