#!/bin/bash
# usage: ab.sh OUTDIR LABEL "APUS ENV/ARGS" BENCH-ARGS...
out=$1; label=$2; envargs=$3; shift 3
printf 'match_cache_entries 0\n' > /tmp/nocache.conf
env $envargs .build/release/apus --port 18840 --log-level warning $APUS_ARGS >/dev/null 2>&1 &
P=$!; sleep 0.5
.build/release/apus-bench "$@" -p 18840 --warmup 2 --duration 5 --broker-pid $P --label $label --json $out --quiet >/dev/null 2>&1
kill -INT $P; wait $P
