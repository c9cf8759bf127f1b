#!/bin/bash
# The container's health check: GET /health on apus's HTTP listener; healthy on HTTP 200.
# bash's /dev/tcp does the request, so the runtime image needs no curl.
# Usage: healthcheck.sh [HOST] [PORT]   (default 127.0.0.1 8080, the image's http_listener)
set -euo pipefail
host=${1:-127.0.0.1}
port=${2:-8080}
exec 3<>"/dev/tcp/${host}/${port}"
printf 'GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
IFS= read -r -t 5 status <&3
[[ $status == "HTTP/1."?" 200 "* ]]
