#!/bin/bash
# The container's health check (liveness): GET /health on apus's HTTP listener; healthy on HTTP
# 200 only. apus answers 503 {"status":"stalled",...} when a shard's loop has not ticked for 1 s,
# and nothing at all when shard 0's has not (shard 0 serves HTTP): both are unhealthy, the second
# once the read below times out (2 s, within the HEALTHCHECK's --timeout=3s).
# bash's /dev/tcp does the request, so the runtime image needs no curl.
# Usage: healthcheck.sh [HOST] [PORT]   (default 127.0.0.1 8080, the image's http_listener)
set -euo pipefail
host=${1:-127.0.0.1}
port=${2:-8080}
exec 3<>"/dev/tcp/${host}/${port}"
printf 'GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
IFS= read -r -t 2 status <&3
[[ $status == "HTTP/1."?" 200 "* ]]
