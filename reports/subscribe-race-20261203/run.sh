#!/bin/bash
# usage: run.sh APUS-BINARY OUT.json [PREFIX...]   (PREFIX: e.g. chrt -f 10)
# 10,000 subscribe-then-publish tries, GAP_US (default 1000) µs between the two writes, against a fresh 2-shard broker.
set -u
bin=$1; out=$2; shift 2
"$@" "$bin" --port 18850 --set "http_listener=18081 127.0.0.1" --log-level warning >/dev/null 2>&1 &
P=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18850) 2>/dev/null && break; sleep 0.05; done
python3 IntegrationTests/load/subscribe-race.py --port 18850 --http-port 18081 --tries 10000 --gap-us "${GAP_US:-1000}" > "$out" 2>"${out%.json}.stderr"
kill -INT $P; wait $P
