#!/usr/bin/env python3
"""Runs a load suite (tests/load/*.json) with apus-bench against Apus and Mosquitto on this
machine, alternating brokers, a fresh broker per run, and writes the best run of each
(broker, scenario) as a JSON array of apus-bench reports.

    python3 tests/load/suite.py tests/load/ci.json --out reports/ci-latest.json

Mosquitto (Debian's 2.0) runs with `set_tcp_nodelay true`, like Apus, so like is compared with
like. Best of N is taken for throughput because this machine is shared: noise only ever slows
a run down. (The `apus-bench suite` subcommand will replace this script.)"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(broker, port, apus_bin):
    if broker == "apus":
        proc = subprocess.Popen([apus_bin, "--port", str(port), "--log-level", "warning"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        conf.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n")
        conf.close()
        proc = subprocess.Popen(["mosquitto", "-c", conf.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{broker} did not start")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("suite")
    parser.add_argument("--out", required=True)
    parser.add_argument("--apus", default=os.path.join(ROOT, ".build", "release", "apus"))
    parser.add_argument("--bench", default=os.path.join(ROOT, ".build", "release", "apus-bench"))
    args = parser.parse_args()
    suite = json.load(open(args.suite))
    best = {}
    failures = 0
    for round_ in range(suite.get("rounds", 1)):
        for spec in suite["scenarios"]:
            for broker in suite["brokers"]:
                port = free_port()
                proc = start(broker, port, args.apus)
                report = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
                cmd = [args.bench, spec["scenario"], "-p", str(port), *spec["args"],
                       "--warmup", str(suite.get("warmup", 1)), "--duration", str(suite.get("duration", 3)),
                       "--broker-pid", str(proc.pid), "--label", broker, "--json", report]
                run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                sys.stderr.write(run.stdout)
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
                if not os.path.exists(report) or os.path.getsize(report) == 0:
                    failures += 1
                    sys.stderr.write(f"run failed: {' '.join(cmd)}\n{run.stderr}\n")
                    continue
                r = json.load(open(report))
                key = (broker, spec["scenario"], " ".join(spec["args"]))
                # Best throughput wins; any loss or error in any round is kept (never hidden).
                previous = best.get(key)
                if previous is None or r["messagesPerSecond"] > previous["messagesPerSecond"]:
                    if previous is not None:
                        r["lost"] = max(r["lost"], previous["lost"])
                        r["errors"] = previous["errors"] + r["errors"]
                    best[key] = r
                else:
                    previous["lost"] = max(previous["lost"], r["lost"])
                    previous["errors"] += r["errors"]
    json.dump(list(best.values()), open(args.out, "w"), indent=2, sort_keys=True)
    print(f"{len(best)} results written to {args.out}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
