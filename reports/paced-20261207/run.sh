#!/bin/bash
# usage: reports/paced-20261207/run.sh APUS APUS-BENCH [ROUNDS]
# Latency at paced rates: 10 publisher/subscriber pairs, QoS 0, 64 B, each publisher paced at
# 1,000, 5,000 and 10,000 msg/s (10K, 50K and 100K msg/s in all), 2 s warm-up + 5 s measured,
# against Apus (default shards: one per CPU), Apus with --shards 1 and Mosquitto 2.0.11 (Nagle
# off and connection logging off, as the suites run it); a fresh broker per run, brokers
# alternating, ROUNDS rounds (default 3). One JSON report per run next to this script.
set -u
apus=$(realpath "$1"); bench=$(realpath "$2"); rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
conf=$(mktemp /tmp/mosquitto-paced.XXXX.conf); chmod 644 "$conf"
printf 'listener 18883 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nconnection_messages false\n' > "$conf"
wait_port() { for _ in $(seq 500); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.02; done; }
for round in $(seq "$rounds"); do
  for rate in 1000 5000 10000; do
    for broker in apus apus-1-shard mosquitto; do
      case $broker in
        apus) "$apus" --port 18883 --log-level warning & pid=$! ;;
        apus-1-shard) "$apus" --port 18883 --shards 1 --log-level warning & pid=$! ;;
        mosquitto) mosquitto -c "$conf" >/dev/null 2>&1 & pid=$! ;;
      esac
      wait_port 18883
      echo -n "round $round, $broker, $rate msg/s per pair: "
      "$bench" pairs -p 18883 --pairs 10 -q 0 -s 64 --rate $rate --warmup 2 --duration 5 --broker-pid $pid --label $broker \
        --quiet --json "$here/$broker-$rate-r$round.json" | tail -1
      kill $pid; wait $pid 2>/dev/null
    done
  done
done
rm -f "$conf"
python3 - "$here" <<'PY'
import glob, json, statistics, sys
rows = {}
for path in glob.glob(f"{sys.argv[1]}/*-r*.json"):
    r = json.load(open(path))
    key = (r["label"], int(path.rsplit("-", 2)[-2]))
    rows.setdefault(key, []).append(r)
print("broker, msg/s per pair: median of rounds (msg/s in all, p50 µs, p99 µs, p99.9 µs)")
for (label, rate), rs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    med = lambda f: statistics.median(f(r) for r in rs)
    print(f"{label:13} {rate:6}: {med(lambda r: r['messagesPerSecond']):10.0f} {med(lambda r: r['latencyMicroseconds']['p50']):9.0f}"
          f" {med(lambda r: r['latencyMicroseconds']['p99']):9.0f} {med(lambda r: r['latencyMicroseconds'].get('p999', 0)):9.0f}"
          f"   (p50 by round: {[r['latencyMicroseconds']['p50'] for r in rs]})")
PY
