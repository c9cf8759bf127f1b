#!/bin/bash
# usage: reports/persistence-20261203/restart.sh APUS-BINARY COUNT
# COUNT retained messages (64 B) into Apus (persistence true) and Mosquitto 2.0.11 (persistence
# true), SIGTERM, restart on the same data: how long until each serves again (its port accepts
# and, for Apus, the store's "recovered" line), resident memory after, disk bytes, and the
# retained count the restarted broker reports.
set -u
bin=$1; count=$2
dir=/tmp/apus-restart-bench
wait_port() { for _ in $(seq 2000); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.01; done; }
# Apus binds its listeners before it recovers (connections wait in the backlog): its log line
# "listening on" says when it serves.
wait_log() { for _ in $(seq 6000); do grep -q "listening on" "$1" && return; sleep 0.01; done; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
rss() { awk '/VmRSS/ { print $2 }' /proc/$1/status; }

rm -rf "$dir"; mkdir -p "$dir"
args=(--port 18880 --set persistence=true --set "persistence_location=$dir" --set "http_listener=18082 127.0.0.1" --log-level info)
"$bin" "${args[@]}" >"$dir.apus1.log" 2>&1 & P=$!
wait_port 18880
python3 reports/persistence-20261203/fill.py --port 18880 --count "$count"
echo "apus rss before restart: $(rss $P) KiB; disk: $(du -sb "$dir" | cut -f1) bytes"
kill -TERM $P; wait $P
t=$(date +%s%N)
"$bin" "${args[@]}" >"$dir.apus2.log" 2>&1 & P=$!
wait_log "$dir.apus2.log"
echo "apus serves again after $(ms $t) ms; $(grep -o 'milliseconds=[0-9]*' "$dir.apus2.log") (store recovery)"
sleep 1.5
echo "apus rss after restart: $(rss $P) KiB; disk: $(du -sb "$dir" | cut -f1) bytes; $(curl -s http://127.0.0.1:18082/metrics | grep '^apus_retained_count')"
kill -TERM $P; wait $P

rm -rf "$dir"; mkdir -p "$dir"; chmod 777 "$dir"  # mosquitto drops to its own user
printf 'listener 18881 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nsys_interval 1\n' "$dir" > /tmp/mosquitto-restart.conf
mosquitto -c /tmp/mosquitto-restart.conf >/dev/null 2>&1 & P=$!
wait_port 18881
python3 reports/persistence-20261203/fill.py --port 18881 --count "$count"
echo "mosquitto rss before restart: $(rss $P) KiB"
t=$(date +%s%N)
kill -TERM $P; wait $P
echo "mosquitto saved in $(ms $t) ms; disk: $(du -sb "$dir" | cut -f1) bytes"
t=$(date +%s%N)
mosquitto -c /tmp/mosquitto-restart.conf >/dev/null 2>&1 & P=$!
wait_port 18881
echo "mosquitto serves again after $(ms $t) ms"
sleep 1.5
echo "mosquitto rss after restart: $(rss $P) KiB; $(timeout 5 mosquitto_sub -p 18881 -t '$SYS/broker/retained messages/count' -C 1 -v)"
kill -TERM $P; wait $P
rm -rf "$dir" "$dir".apus*.log
