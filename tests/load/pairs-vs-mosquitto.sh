#!/usr/bin/env bash
# The `pairs` scenario (10 publisher → subscriber pairs, 64-byte payloads, closed loop with 64
# messages in flight per pair) at QoS 0 and 1, against Apus and Mosquitto on this machine,
# alternating, ROUNDS times; one JSON report per run and a summary of medians.
#
#   tests/load/pairs-vs-mosquitto.sh            # ROUNDS=3 DURATION=5 OUT=reports/pairs-YYYYMMDD
#
# Mosquitto runs with `set_tcp_nodelay true` (Apus disables Nagle too): like against like.
# Both brokers and the load generator share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
PAIRS=${PAIRS:-10}
OUT=${OUT:-reports/pairs-$(date -u +%Y%m%d)}
APUS=${APUS:-.build/release/apus}
BENCH=${BENCH:-.build/release/apus-bench}
mkdir -p "$OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "broker did not listen on $1" >&2; return 1
}

start_broker() {  # $1 = apus|mosquitto, $2 = port; prints the PID
  if [ "$1" = apus ]; then
    "$APUS" --port "$2" --log-level warning >"${TMPDIR:-/tmp}/bench-$1.log" 2>&1 &
  else
    conf=$(mktemp)
    printf "listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n" "$2" >"$conf"
    mosquitto -c "$conf" >"${TMPDIR:-/tmp}/bench-$1.log" 2>&1 &
  fi
  echo $!
}

for round in $(seq 1 "$ROUNDS"); do
  for qos in 0 1; do
    for broker in apus mosquitto; do
      port=$(free_port)
      pid=$(start_broker "$broker" "$port")
      wait_port "$port"
      "$BENCH" pairs -p "$port" --pairs "$PAIRS" -q "$qos" -s 64 --window 64 --warmup "$WARMUP" --duration "$DURATION" \
        --broker-pid "$pid" --label "$broker" --json "$OUT/$broker-qos$qos-run$round.json" || echo "run failed: $broker qos $qos" >&2
      kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    done
  done
done

python3 - "$OUT" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
rows = {}
for path in sorted(glob.glob(os.path.join(out, "*-run*.json"))):
    r = json.load(open(path))
    rows.setdefault((r["label"], r["qos"]), []).append(r)
summary = []
print("| broker | QoS | msg/s (median) | runs | p50 µs | p99 µs | lost | broker CPU s per M msgs |")
print("|---|---|---|---|---|---|---|---|")
for (label, qos), runs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    rate = statistics.median(r["messagesPerSecond"] for r in runs)
    p50 = statistics.median(r["latencyMicroseconds"]["p50"] for r in runs)
    p99 = statistics.median(r["latencyMicroseconds"]["p99"] for r in runs)
    lost = sum(r["lost"] for r in runs)
    cpu = statistics.median(r.get("brokerCPUSecondsPerMillion") or 0 for r in runs)
    summary.append({"broker": label, "qos": qos, "medianMessagesPerSecond": rate, "runs": len(runs),
                    "medianP50Microseconds": p50, "medianP99Microseconds": p99, "lost": lost,
                    "medianBrokerCPUSecondsPerMillion": cpu, "command": runs[0]["command"]})
    print(f"| {label} | {qos} | {rate:,.0f} | {len(runs)} | {p50:.0f} | {p99:.0f} | {lost} | {cpu:.2f} |")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
PY
