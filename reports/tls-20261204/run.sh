#!/bin/bash
# usage: reports/tls-20261204/run.sh APUS APUS-BENCH [ROUNDS]
# Apus (TLS and plain listeners) and Mosquitto 2.0.11 (a TLS listener) with the same ECDSA P-256
# certificates made here: pairs QoS 0 and QoS 1 over TLS and Apus over plain TCP, alternating,
# ROUNDS rounds (default 3); full TLS handshakes per second (openssl s_time -new, one client,
# ECDSA P-256 and RSA-2048 server keys); resident memory per idle TLS connection.
set -u
apus=$(realpath "$1"); bench=$(realpath "$2"); rounds=${3:-3}
dir=$(mktemp -d /tmp/apus-tls-bench.XXXX); chmod 755 "$dir"
here=$(dirname "$0")
cd "$dir"
for kind in ec rsa; do
  if [ $kind = ec ]; then key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); else key=(-newkey rsa:2048); fi
  openssl req -x509 "${key[@]}" -nodes -keyout ca-$kind.key -out ca-$kind.crt -days 30 -subj /CN=bench-ca-$kind 2>/dev/null
  openssl req "${key[@]}" -nodes -keyout server-$kind.key -out server-$kind.csr -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null
  openssl x509 -req -in server-$kind.csr -CA ca-$kind.crt -CAkey ca-$kind.key -CAcreateserial -out server-$kind.crt -days 30 -copy_extensions copy 2>/dev/null
done
chmod 644 ./*
conf_apus() {  # kind
  printf 'allow_anonymous true\nlistener 18883 127.0.0.1\nlistener 18884 127.0.0.1\ncertfile %s/server-%s.crt\nkeyfile %s/server-%s.key\n' "$dir" "$1" "$dir" "$1" > apus-$1.conf
}
conf_mosquitto() {
  printf 'allow_anonymous true\nmax_connections -1\nlistener 18885 127.0.0.1\ncertfile %s/server-%s.crt\nkeyfile %s/server-%s.key\n' "$dir" "$1" "$dir" "$1" > mosquitto-$1.conf
}
wait_port() { for _ in $(seq 500); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.02; done; }
for kind in ec rsa; do conf_apus $kind; conf_mosquitto $kind; done

"$apus" --config apus-ec.conf --log-level warning & A=$!
mosquitto -c mosquitto-ec.conf >/dev/null 2>&1 & M=$!
wait_port 18884; wait_port 18885
for round in $(seq "$rounds"); do
  for qos in 0 1; do
    "$bench" run -p 18884 --cafile ca-ec.crt --pairs 10 -q $qos --duration 10 --broker-pid $A --label apus-tls --quiet --json "$dir/apus-tls-q$qos-r$round.json" | tail -1
    "$bench" run -p 18885 --cafile ca-ec.crt --pairs 10 -q $qos --duration 10 --broker-pid $M --label mosquitto-tls --quiet --json "$dir/mosquitto-tls-q$qos-r$round.json" | tail -1
    "$bench" run -p 18883 --pairs 10 -q $qos --duration 10 --broker-pid $A --label apus-plain --quiet --json "$dir/apus-plain-q$qos-r$round.json" | tail -1
  done
done
python3 "$OLDPWD/$here/idle-tls.py" --port 18884 --cafile ca-ec.crt --pid $A --count 1000 | sed 's/^/apus: /'
python3 "$OLDPWD/$here/idle-tls.py" --port 18885 --cafile ca-ec.crt --pid $M --count 1000 | sed 's/^/mosquitto: /'
kill $A $M; wait $A $M 2>/dev/null

cpu() { awk '{ print $14 + $15 }' /proc/$1/stat; }  # utime + stime, clock ticks
for kind in ec rsa; do
  "$apus" --config apus-$kind.conf --log-level warning & A=$!
  mosquitto -c mosquitto-$kind.conf >/dev/null 2>&1 & M=$!
  wait_port 18884; wait_port 18885
  for round in $(seq "$rounds"); do
    for target in apus:18884:$A mosquitto:18885:$M; do
      IFS=: read -r name port pid <<< "$target"
      before=$(cpu $pid)
      # Four clients at once (openssl s_time: full handshakes, a new session each, for 5 s).
      for c in 1 2 3 4; do openssl s_time -connect 127.0.0.1:$port -new -time 5 -CAfile ca-$kind.crt > s_time-$c.txt 2>&1 & done
      wait $(jobs -p | grep -v -e "^$A$" -e "^$M$") 2>/dev/null
      after=$(cpu $pid)
      total=$(cat s_time-*.txt | awk '/connections in .* real seconds/ { n += $1 } END { print n }')
      echo "handshakes $kind $name round $round: $total in 5 s by 4 clients ($((total / 5))/s), broker CPU $(( (after - before) * 10 )) ms ($(( (after - before) * 10000 / (total > 0 ? total : 1) )) µs per handshake)"
    done
  done
  kill $A $M; wait $A $M 2>/dev/null
done
cp "$dir"/*.json "$OLDPWD/$here/" 2>/dev/null
rm -rf "$dir"
