#!/usr/bin/env bash
# Proves that the CI gate bites: doctors a copy of a suite report (Apus's rates × 0.3, p99 ×5, one message lost at QoS 1) and checks that `apus-bench compare` with CI's flags
# exits 1 against the original, and 0 against an undoctored copy.
#
#   IntegrationTests/load/compare-gate.sh .build/ci-latest.json
set -euo pipefail
cd "$(dirname "$0")/../.."
REPORT=${1:-.build/ci-latest.json}
BENCH=${BENCH:-.build/release/apus-bench}
FLAGS=(--gate apus --max-throughput-drop 60 --max-p99-rise 300)
doctored=$(mktemp --suffix=.json)
trap 'rm -f "$doctored"' EXIT

"$BENCH" compare "$REPORT" "$REPORT" "${FLAGS[@]}" >/dev/null || { echo "compare-gate: a report against itself failed the gate" >&2; exit 1; }

python3 - "$REPORT" "$doctored" <<'PY'
import json, sys
suite = json.load(open(sys.argv[1]))
lost = False
for r in suite["results"]:
    if r["label"] != "apus":
        continue
    r["messagesPerSecond"] *= 0.3
    if r.get("connectsPerSecond"):
        r["connectsPerSecond"] *= 0.3
    r["latencyMicroseconds"]["p99"] *= 5
    if r["qos"] >= 1 and not lost and not r.get("connections"):
        r["lost"] = 1
        lost = True
json.dump(suite, open(sys.argv[2], "w"))
PY

set +e
"$BENCH" compare "$REPORT" "$doctored" "${FLAGS[@]}" >/dev/null
status=$?
set -e
if [ "$status" -ne 1 ]; then
  echo "compare-gate: an injected regression passed the gate (exit $status)" >&2
  exit 1
fi
echo "compare-gate: the injected regression fails the gate (exit 1), the report itself passes"
