#!/bin/bash
# usage: reports/idle-memory-20261207/run.sh APUS [COUNT]
# Where an idle connection's memory goes in Apus: a fresh broker (a plain and a TLS listener, the
# ECDSA P-256 certificates of reports/tls-20261204/run.sh made here) with 0 and then COUNT
# (default 1000) idle connections held by hold.py, plain then TLS; with them open, the broker's
# RSS and jemalloc's statistics (malloc_stats_print, called with gdb), and their difference by size
# class (by-size-class.py). Then Mosquitto 2.0.11 with the same TLS listener: its RSS and glibc's
# malloc_stats (in-use bytes). And OpenSSL's own allocations for one server connection, by call
# site (openssl-allocations.c).
set -u
apus=$(realpath "$1"); count=${2:-1000}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/apus-idle-memory.XXXX); chmod 755 "$dir"; cd "$dir"
key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
openssl req -x509 "${key[@]}" -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=bench-ca 2>/dev/null
openssl req "${key[@]}" -nodes -keyout server.key -out server.csr -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 30 -copy_extensions copy 2>/dev/null
chmod 644 ./*  # Mosquitto drops to its own user
printf 'allow_anonymous true\nlistener 18883 127.0.0.1\nlistener 18884 127.0.0.1\ncertfile %s/server.crt\nkeyfile %s/server.key\n' "$dir" "$dir" > apus.conf
printf 'allow_anonymous true\nmax_connections -1\nlistener 18885 127.0.0.1\ncertfile %s/server.crt\nkeyfile %s/server.key\n' "$dir" "$dir" > mosquitto.conf
wait_port() { for _ in $(seq 500); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.02; done; }
rss() { awk '/VmRSS/ { print $2 }' /proc/$1/status; }

snapshot() {  # broker-kind port n tls? -> stats-KIND-PORT-N.txt, prints RSS
  local name=$1 port=$2 n=$3 tls=$4 pid out
  out=stats-$name-$port-$n.txt; rm -f release
  if [ "$name" = apus ]; then "$apus" --config apus.conf --log-level warning 2>"$out" & pid=$!
  else mosquitto -c mosquitto.conf 2>"$out" >/dev/null & pid=$!; fi
  wait_port "$port"
  python3 "$here/hold.py" --port "$port" --count "$n" ${tls:+--cafile ca.crt} --until release > held.txt & local h=$!
  for _ in $(seq 1200); do grep -q held held.txt 2>/dev/null && break; sleep 0.1; done
  sleep 4  # quiet: idle connections give their buffers back after a second or two
  echo "$name port $port, $n connections: RSS $(rss $pid) KiB"
  if [ "$name" = apus ]; then gdb -p $pid -batch -ex 'call (void)malloc_stats_print(0,0,"dax")' >/dev/null 2>&1
  else gdb -p $pid -batch -ex 'call (void)malloc_stats()' >/dev/null 2>&1; fi
  touch release; wait $h; kill $pid; wait $pid 2>/dev/null
}

for port in 18883 18884; do
  tls=; [ $port = 18884 ] && tls=1
  snapshot apus $port 0 "$tls"; snapshot apus $port "$count" "$tls"
  echo "by size class, $([ -n "$tls" ] && echo TLS || echo plain):"
  python3 "$here/by-size-class.py" stats-apus-$port-0.txt stats-apus-$port-$count.txt "$count"
done
snapshot mosquitto 18885 0 1; snapshot mosquitto 18885 "$count" 1
for n in 0 "$count"; do echo "mosquitto, $n connections, glibc: $(grep -A2 'Total (incl. mmap)' stats-mosquitto-18885-$n.txt | tr -s ' \n' ' ')"; done
gcc -O1 -o openssl-allocations "$here/openssl-allocations.c" -lssl -lcrypto && ./openssl-allocations server.crt server.key ca.crt
cd /; rm -rf "$dir"
