#!/bin/bash
# race.sh BIN LABEL PORT HTTPPORT: subscribe-race at several gaps against BIN (a fresh broker per gap)
BIN=$1; LABEL=$2; PORT=$3; HTTP=$4
cd /tmp/m
printf 'http_listener %s\n' $HTTP > race-$LABEL.conf
for gap in ${GAPS:-0 20 100 500}; do
  tries=${TRIES:-2000}; [ -z "$TRIES" ] && [ $gap -ge 100 ] && tries=5000
  $BIN --port $PORT --config race-$LABEL.conf > log-$LABEL.txt 2>&1 & P=$!; sleep 0.7
  echo "{\"build\": \"$LABEL\", \"result\": $(timeout 400 python3 IntegrationTests/load/subscribe-race.py --port $PORT --http-port $HTTP --tries $tries --gap-us $gap)}"
  kill $P; wait $P 2>/dev/null
done
