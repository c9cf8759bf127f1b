#!/bin/bash
# usage: reports/receive-buffers-20261207/run.sh APUS APUS-BENCH [ROUNDS]
# The receive buffers' size (receive_buffer_size): Apus with 16 KiB (the default) and 64 KiB
# buffers, alternating, a fresh broker per run, ROUNDS rounds (default 3) of pairs 10×10 64 B
# (window 64), pairs 10×10 16 KiB (window 50) and pairs 4×4 256 KiB (window 8), QoS 0, 1 s warm-up
# + 4 s measured. One JSON report per run next to this script, then the medians.
set -u
apus=$(realpath "$1"); bench=$(realpath "$2"); rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/apus-receive-buffers.XXXX)
wait_port() { for _ in $(seq 500); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.02; done; }
for size in 16384 65536; do printf 'listener 18883 127.0.0.1\nallow_anonymous true\nreceive_buffer_size %s\n' $size > "$dir/apus-$size.conf"; done
for round in $(seq "$rounds"); do
  for shape in "10 64 64" "10 16384 50" "4 262144 8"; do
    read -r pairs payload window <<< "$shape"
    for size in 16384 65536; do
      "$apus" --config "$dir/apus-$size.conf" --log-level warning & pid=$!
      wait_port 18883
      echo -n "round $round, buffers $size, payload $payload: "
      "$bench" pairs -p 18883 --pairs $pairs -q 0 -s $payload --window $window --warmup 1 --duration 4 --broker-pid $pid \
        --label "buffers-$size" --quiet --json "$here/buffers-$size-payload-$payload-r$round.json" | tail -1
      kill $pid; wait $pid 2>/dev/null
    done
  done
done
rm -rf "$dir"
python3 - "$here" <<'PY'
import glob, json, re, statistics, sys
rows = {}
for path in glob.glob(f"{sys.argv[1]}/buffers-*.json"):
    size, payload = map(int, re.search(r"buffers-(\d+)-payload-(\d+)-r", path).groups())
    rows.setdefault((payload, size), []).append(json.load(open(path)))
print("payload, buffers: medians (msg/s, MB/s, broker CPU µs per message, broker CPU s per GB), by round")
for (payload, size), rs in sorted(rows.items()):
    rate = statistics.median(r["messagesPerSecond"] for r in rs)
    cpu = [r["brokerCPUSecondsPerMillion"] for r in rs]
    print(f"{payload:7} B, {size // 1024:2} KiB buffers: {rate:10.0f} msg/s {rate * payload / 1e6:8.0f} MB/s "
          f"{statistics.median(cpu):7.2f} µs/msg {statistics.median(r['brokerCPUSecondsPerGB'] for r in rs):6.3f} s/GB   (µs/msg by round {cpu})")
PY
