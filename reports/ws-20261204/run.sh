#!/bin/bash
# usage: reports/ws-20261204/run.sh APUS APUS-BENCH [ROUNDS]
# Apus (plain, ws and wss listeners) and Mosquitto 2.0.11 (plain, ws and wss listeners: its
# websockets listeners do not start without a plain one) with the same ECDSA P-256 certificate
# made here, both running at once: pairs 10→10 QoS 0 and QoS 1 over ws, wss and plain TCP,
# alternating, ROUNDS rounds (default 3); resident memory per idle WebSocket and TCP connection.
set -u
apus=$(realpath "$1"); bench=$(realpath "$2"); rounds=${3:-3}
dir=$(mktemp -d /tmp/apus-ws-bench.XXXX); chmod 755 "$dir"
here=$(dirname "$0")
cd "$dir"
key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
openssl req -x509 "${key[@]}" -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=bench-ca 2>/dev/null
openssl req "${key[@]}" -nodes -keyout server.key -out server.csr -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 30 -copy_extensions copy 2>/dev/null
chmod 644 ./*
printf 'allow_anonymous true\nlistener 18883 127.0.0.1\nlistener 18886 127.0.0.1\nprotocol websockets\nlistener 18889 127.0.0.1\nprotocol websockets\ncertfile %s/server.crt\nkeyfile %s/server.key\n' "$dir" "$dir" > apus.conf
printf 'allow_anonymous true\nmax_connections -1\nlistener 18888 127.0.0.1\nlistener 18887 127.0.0.1\nprotocol websockets\nlistener 18890 127.0.0.1\nprotocol websockets\ncertfile %s/server.crt\nkeyfile %s/server.key\n' "$dir" "$dir" > mosquitto.conf
wait_port() { for _ in $(seq 500); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.02; done; echo "port $1 never opened"; }

"$apus" --config apus.conf --log-level warning & A=$!
mosquitto -c mosquitto.conf > mosquitto.log 2>&1 & M=$!
wait_port 18886; wait_port 18887; wait_port 18889; wait_port 18890
for round in $(seq "$rounds"); do
  for qos in 0 1; do
    "$bench" run -p 18886 --ws --pairs 10 -q $qos --duration 10 --broker-pid $A --label apus-ws --quiet --json "$dir/apus-ws-q$qos-r$round.json" | tail -1
    "$bench" run -p 18887 --ws --pairs 10 -q $qos --duration 10 --broker-pid $M --label mosquitto-ws --quiet --json "$dir/mosquitto-ws-q$qos-r$round.json" | tail -1
    "$bench" run -p 18883 --pairs 10 -q $qos --duration 10 --broker-pid $A --label apus-plain --quiet --json "$dir/apus-plain-q$qos-r$round.json" | tail -1
    "$bench" run -p 18889 --ws --cafile ca.crt --pairs 10 -q $qos --duration 10 --broker-pid $A --label apus-wss --quiet --json "$dir/apus-wss-q$qos-r$round.json" | tail -1
    "$bench" run -p 18890 --ws --cafile ca.crt --pairs 10 -q $qos --duration 10 --broker-pid $M --label mosquitto-wss --quiet --json "$dir/mosquitto-wss-q$qos-r$round.json" | tail -1
  done
done
kill $A $M; wait $A $M 2>/dev/null

# Memory: fresh brokers, 1,000 idle connections each over ws, then over TCP.
for kind in ws tcp; do
  "$apus" --config apus.conf --log-level warning & A=$!
  mosquitto -c mosquitto.conf > mosquitto.log 2>&1 & M=$!
  wait_port 18886; wait_port 18887
  if [ $kind = ws ]; then
    python3 "$OLDPWD/$here/idle-ws.py" --ws --port 18886 --pid $A --count 1000 | sed 's/^/apus: /'
    python3 "$OLDPWD/$here/idle-ws.py" --ws --port 18887 --pid $M --count 1000 | sed 's/^/mosquitto: /'
  else
    python3 "$OLDPWD/$here/idle-ws.py" --port 18883 --pid $A --count 1000 | sed 's/^/apus: /'
    python3 "$OLDPWD/$here/idle-ws.py" --port 18888 --pid $M --count 1000 | sed 's/^/mosquitto: /'
  fi
  kill $A $M; wait $A $M 2>/dev/null
done
cp "$dir"/*.json "$OLDPWD/$here/" 2>/dev/null
rm -rf "$dir"
