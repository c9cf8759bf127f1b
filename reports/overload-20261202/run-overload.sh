#!/bin/bash
# The overload scenarios against Apus before (e5a4827), Apus after, and Mosquitto 2.0.11 (default config).
OUT=/work/main/reports/overload-20261202
cd /work/main
run_broker() { # name -> starts broker on port 18850, sets P
  case $1 in
    before) /tmp/apus-before/.build/release/apus --port 18850 > /tmp/m/b.log 2>&1 & P=$! ;;
    after) .build/release/apus --port 18850 > /tmp/m/b.log 2>&1 & P=$! ;;
    mosquitto) mosquitto -p 18850 > /tmp/m/b.log 2>&1 & P=$! ;;
  esac
  sleep 0.8
}
for b in before after mosquitto; do
  for r in 1 2 3; do
    run_broker $b
    echo "{\"broker\": \"$b\", \"round\": $r, \"result\": $(timeout 90 python3 IntegrationTests/load/overload-pairs.py --port 18850 --pid $P)}" >> $OUT/pairs-20x2000-acked.jsonl
    kill $P; wait $P 2>/dev/null
  done
done
for b in before after mosquitto; do
  for r in 1 2 3; do
    run_broker $b
    .build/release/apus-bench pairs -p 18850 --pairs 10 -q 1 --ack-window --window 64 --warmup 1 --duration 8 --broker-pid $P --quiet --label "$b-$r" --json $OUT/ackwindow-10pairs-$b-$r.json > /dev/null 2>&1
    echo "{\"broker\": \"$b\", \"round\": $r, \"rss_kib\": $(grep VmRSS /proc/$P/status | awk '{print $2}')}" >> $OUT/ackwindow-rss.jsonl
    kill $P; wait $P 2>/dev/null
  done
done
