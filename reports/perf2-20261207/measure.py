"""Performance, second round (issue 21), measured on this machine's loopback:

  python3 reports/perf2-20261207/measure.py [--rounds 3] [--only tools,payloads,subscriptions,storm,latency,affinity] [--out DIR]

Brokers: apus (.build/release/apus, its defaults: 2 shards here) and Mosquitto 2.0.11
(`listener PORT 127.0.0.1`, `allow_anonymous true`), each started fresh per run, in alternating
order. Load: apus-bench (.build/release/apus-bench) and two independent C tools built here from
IntegrationTests/load/independent/ (mqtt-blast: epoll, one thread, MQTT written from the spec;
tcp-pump: bare loopback TCP).

1. tools: pairs 10x10 QoS 0 64 B, 500 in flight per publisher, 8 s, as the issue ran it: mqtt-blast
   and apus-bench on the same broker, both brokers. msg/s, loss, tool and broker CPU per million.
2. payloads: 1 KiB, 16 KiB, 256 KiB and 1 MB (10^6 B: Apus's default max_packet_size is 1 MiB),
   QoS 0 and 1, pairs and fan-out 1->8, with apus-bench: bytes/s, msg/s, broker CPU per GB; and
   tcp-pump's loopback ceiling at each size (one hop, and a relay: two hops as through a broker).
3. subscriptions: mqtt-blast --subscriptions 100 --filters 10000 (1M subscriptions, 100K topics,
   exact and t/A/B/+ filters), 4 publishers QoS 1 window 100 on a shuffled topic order.
4. storm: connect storms with mqtt-blast (5,000 clients, 100 in flight) and apus-bench
   (connect-storm -c 3000, the CI suite's shape), first on the default configuration (every thread
   free to use both CPUs), then with the load generator on its own CPU (CPU 1; apus --shards 1 on
   CPU 0, Mosquitto pinned to CPU 0).
5. latency: mqtt-blast paced, 100 pairs at 500 and 1,000 msg/s each (publishers staggered),
   QoS 0 64 B: apus (2 shards), apus --shards 1, Mosquitto; apus-bench fan-out 1->1000 paced at
   100 msg/s for p99.9 and max.

6. affinity: apus with cpu_affinity true and with its default (auto: unpinned on this machine,
   whose CPUs it shares), and Mosquitto: the paced
   latencies of 5., the mqtt-blast connect storm of 4. and pairs 10x10 QoS 0/1 64 B closed loop.

Writes every run's JSON and results.json (medians and ranges) beside this file."""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = HERE  # where the runs' JSON and results.json go (--out)
APUS = os.path.join(ROOT, ".build", "release", "apus")
BENCH = os.path.join(ROOT, ".build", "release", "apus-bench")
TOOLS = os.path.join(ROOT, ".build", "tools")
BLAST = os.path.join(TOOLS, "mqtt-blast")
PUMP = os.path.join(TOOLS, "tcp-pump")


def build_tools():
    os.makedirs(TOOLS, exist_ok=True)
    src = os.path.join(ROOT, "IntegrationTests", "load", "independent")
    subprocess.run(["gcc", "-O2", "-o", BLAST, os.path.join(src, "mqtt-blast.c")], check=True)
    subprocess.run(["gcc", "-O2", "-pthread", "-o", PUMP, os.path.join(src, "tcp-pump.c")], check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc):
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("broker did not listen")


class Broker:
    """apus or mosquitto on a free port; `cpu` pins Mosquitto (taskset), `shards` sizes apus."""

    def __init__(self, kind, shards=None, cpu=None, extra=()):
        self.kind, self.port = kind, free_port()
        self.dir = tempfile.mkdtemp()
        os.chmod(self.dir, 0o777)
        if kind == "apus":
            cmd = [APUS, "--port", str(self.port), "--log-level", "warning"]
            if shards:
                cmd += ["--shards", str(shards)]
            cmd += list(extra)
        else:
            conf = os.path.join(self.dir, "m.conf")
            with open(conf, "w") as f:
                f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
            cmd = ["mosquitto", "-c", conf]
            if cpu is not None:
                cmd = ["taskset", "-c", str(cpu)] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log"), "w"))
        wait_port(self.port, self.proc)
        time.sleep(0.3)
        self.pid = self.proc.pid  # taskset execs the broker: same process

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_json(cmd, cpu=None, timeout=600):
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stdout[-500:]} {out.stderr[-500:]}")
    return json.loads(lines[-1])


def bench(args, broker, name, cpu=None):
    path = os.path.join(OUT, f"{name}.json")
    cmd = [BENCH] + args + ["-p", str(broker.port), "--broker-pid", str(broker.pid), "--quiet", "--json", path, "--label", broker.kind]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    with open(path) as f:
        return json.load(f)


def blast(args, broker, name, cpu=None):
    r = run_json([BLAST] + args + ["-p", str(broker.port), "--broker-pid", str(broker.pid), "--label", broker.kind], cpu=cpu)
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(r, f, indent=1)
    return r


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def brokers_in_order(i):
    return ["apus", "mosquitto"] if i % 2 == 0 else ["mosquitto", "apus"]


def tools(rounds, results):
    rows = {}
    for i in range(rounds):
        for kind in brokers_in_order(i):
            b = Broker(kind)
            try:
                for tool in (["blast", "bench"] if i % 2 == 0 else ["bench", "blast"]):
                    name = f"tools-{kind}-{tool}-{i + 1}"
                    if tool == "blast":
                        r = blast(["--pairs", "10", "--window", "500", "-s", "64", "--warmup", "1", "--duration", "8"], b, name)
                        row = (r["messagesPerSecond"], r["lost"], r["toolCPUSecondsPerMillion"], r["brokerCPUSecondsPerMillion"])
                    else:
                        r = bench(["pairs", "--pairs", "10", "-q", "0", "-s", "64", "--window", "500", "--warmup", "1", "--duration", "8"], b, name)
                        row = (r["messagesPerSecond"], r["lost"], r.get("toolCPUSecondsPerMillion"), r.get("brokerCPUSecondsPerMillion"))
                    rows.setdefault(f"{kind} {tool}", []).append(row)
                    print(f"tools {kind} {tool}: {row}", flush=True)
            finally:
                b.stop()
    results["tools"] = {k: {"messagesPerSecond": summary([r[0] for r in v]), "lost": [r[1] for r in v],
                            "toolCPUSecondsPerMillion": summary([r[2] for r in v]),
                            "brokerCPUSecondsPerMillion": summary([r[3] for r in v])} for k, v in rows.items()}


PAYLOADS = [  # size, pairs shape (pairs, window), fan-out shape (subs, window)
    (1024, (10, 100), (8, 100)),
    (16384, (10, 50), (8, 50)),
    (262144, (4, 8), (8, 8)),
    (1000000, (4, 4), (8, 4)),
]


def payloads(rounds, results):
    out = {}
    for size, (pairs, pw), (subs, fw) in PAYLOADS:
        for chunk_relay in (False, True):
            args = ["--conns", "4", "--chunk", str(size), "--seconds", "3"] + (["--relay"] if chunk_relay else [])
            r = run_json([PUMP] + args)
            out.setdefault(f"loopback {size}", {})["relay" if chunk_relay else "one hop"] = r
            print(f"tcp-pump {size} relay={chunk_relay}: {r['bytesPerSecond'] / 1e9:.2f} GB/s", flush=True)
    for size, (pairs, pw), (subs, fw) in PAYLOADS:
        for qos in ("0", "1"):
            for shape in ("pairs", "fan-out"):
                rows = {}
                for i in range(rounds):
                    for kind in brokers_in_order(i):
                        b = Broker(kind)
                        try:
                            if shape == "pairs":
                                a = ["pairs", "--pairs", str(pairs), "--window", str(pw)]
                            else:
                                a = ["fan-out", "--subs", str(subs), "--window", str(fw)]
                            a += ["-q", qos, "-s", str(size), "--warmup", "1", "--duration", "4"]
                            r = bench(a, b, f"payload-{size}-q{qos}-{shape}-{kind}-{i + 1}")
                        finally:
                            b.stop()
                        rows.setdefault(kind, []).append(r)
                        print(f"payload {size} q{qos} {shape} {kind}: {r['bytesPerSecond'] / 1e9:.3f} GB/s "
                              f"{r['messagesPerSecond']:.0f} msg/s lost {r['lost']} CPU/GB {r.get('brokerCPUSecondsPerGB')}", flush=True)
                key = f"{size} B QoS {qos} {shape}"
                out[key] = {kind: {"bytesPerSecond": summary([r["bytesPerSecond"] for r in v]),
                                   "messagesPerSecond": summary([r["messagesPerSecond"] for r in v]),
                                   "brokerCPUSecondsPerGB": summary([r.get("brokerCPUSecondsPerGB") for r in v]),
                                   "lost": [r["lost"] for r in v]} for kind, v in rows.items()}
                a, m = out[key]["apus"], out[key]["mosquitto"]
                out[key]["ratio bytes/s"] = a["bytesPerSecond"]["median"] / m["bytesPerSecond"]["median"]
                out[key]["ratio CPU/GB"] = a["brokerCPUSecondsPerGB"]["median"] / m["brokerCPUSecondsPerGB"]["median"]
    results["payloads"] = out


def subscriptions(rounds, results):
    rows = {}
    for i in range(rounds):
        for kind in brokers_in_order(i):
            b = Broker(kind)
            try:
                r = blast(["--subscriptions", "100", "--filters", "10000", "--pubs", "4", "--window", "100", "--duration", "5"],
                          b, f"subscriptions-{kind}-{i + 1}")
            finally:
                b.stop()
            rows.setdefault(kind, []).append(r)
            print(f"subscriptions {kind}: {r['subscriptionsPerSecond']:.0f} subs/s {r['bytesPerSubscription']} B/sub "
                  f"{r['publishesPerSecond']:.0f} pub/s {r['deliveriesPerSecond']:.0f} deliveries/s", flush=True)
    results["subscriptions"] = {k: {f: summary([r[f] for r in v]) for f in
                                    ("subscriptionsPerSecond", "bytesPerSubscription", "publishesPerSecond",
                                     "deliveriesPerSecond", "brokerCPUSecondsPerMillionPublishes")}
                                | {"expected=arrived": [r["deliveriesExpected"] == r["deliveriesArrived"] for r in v]}
                                for k, v in rows.items()}


def storm(rounds, results):
    out = {}
    for setting in ("shared CPUs", "own CPU"):
        rows = {}
        for i in range(rounds):
            for kind in brokers_in_order(i):
                own = setting == "own CPU"
                b = Broker(kind, shards=1 if own and kind == "apus" else None, cpu=0 if own and kind == "mosquitto" else None)
                try:
                    tool_cpu = 1 if own else None
                    r1 = blast(["--storm", "5000", "--batch", "100"], b, f"storm-{setting.replace(' ', '-')}-{kind}-blast-{i + 1}", cpu=tool_cpu)
                    r2 = bench(["connect-storm", "-c", "3000", "--connect-batch", "100", "--duration", "0"], b,
                               f"storm-{setting.replace(' ', '-')}-{kind}-bench-{i + 1}", cpu=tool_cpu)
                finally:
                    b.stop()
                rows.setdefault(f"{kind} mqtt-blast", []).append(r1)
                rows.setdefault(f"{kind} apus-bench", []).append(r2)
                print(f"storm {setting} {kind}: blast {r1['connectsPerSecond']:.0f}/s (broker {r1['brokerCPUSecondsPerMillion']} s/M, "
                      f"tool {r1['toolCPUSecondsPerMillion']} s/M), apus-bench {r2['connectsPerSecond']:.0f}/s", flush=True)
        out[setting] = {k: {"connectsPerSecond": summary([r["connectsPerSecond"] for r in v]),
                            "brokerCPUSecondsPerMillion": summary([r.get("brokerCPUSecondsPerMillion") for r in v]),
                            "toolCPUSecondsPerMillion": summary([r.get("toolCPUSecondsPerMillion") for r in v]),
                            "p50": summary([r["latencyMicroseconds"]["p50"] for r in v])} for k, v in rows.items()}
    results["storm"] = out


def latency(rounds, results):
    out = {}
    for rate in (500, 1000):
        rows = {}
        for i in range(rounds):
            for label in (["apus", "apus --shards 1", "mosquitto"] if i % 2 == 0 else ["mosquitto", "apus --shards 1", "apus"]):
                b = Broker("mosquitto" if label == "mosquitto" else "apus", shards=1 if "shards" in label else None)
                try:
                    r = blast(["--pairs", "100", "--rate", str(rate), "-s", "64", "--warmup", "1", "--duration", "5"], b,
                              f"latency-{rate}-{label.replace(' ', '').replace('--', '-')}-{i + 1}")
                finally:
                    b.stop()
                rows.setdefault(label, []).append(r)
                l = r["latencyMicroseconds"]
                print(f"latency {rate}/s {label}: {r['messagesPerSecond']:.0f} msg/s p50 {l['p50']} p99 {l['p99']} p99.9 {l['p99.9']} max {l['max']}", flush=True)
        out[f"100 pairs x {rate} msg/s"] = {k: {"messagesPerSecond": summary([r["messagesPerSecond"] for r in v]),
                                                **{p: summary([r["latencyMicroseconds"][p] for r in v]) for p in ("p50", "p90", "p99", "p99.9", "max")},
                                                "brokerCPUSecondsPerMillion": summary([r["brokerCPUSecondsPerMillion"] for r in v])}
                                            for k, v in rows.items()}
    rows = {}
    for i in range(rounds):
        for kind in brokers_in_order(i):
            b = Broker(kind)
            try:
                r = bench(["fan-out", "--subs", "1000", "-q", "0", "-s", "64", "--rate", "100", "--warmup", "1", "--duration", "5"], b,
                          f"latency-fanout1000-{kind}-{i + 1}")
            finally:
                b.stop()
            rows.setdefault(kind, []).append(r)
            l = r["latencyMicroseconds"]
            print(f"fan-out 1->1000 at 100/s {kind}: {r['messagesPerSecond']:.0f} deliveries/s p50 {l['p50']} p99 {l['p99']} p99.9 {l['p999']} max {l['max']}", flush=True)
    out["fan-out 1->1000 x 100 msg/s"] = {k: {"messagesPerSecond": summary([r["messagesPerSecond"] for r in v]),
                                              **{p: summary([r["latencyMicroseconds"][p] for r in v]) for p in ("p50", "p99", "p999", "max")},
                                              "lost": [r["lost"] for r in v]} for k, v in rows.items()}
    results["latency"] = out


def affinity(rounds, results):
    """cpu_affinity true against the default (auto: unpinned here), and Mosquitto: paced latency, connect storm
    and peak rate, all with the load generator on the same two CPUs."""
    labels = {"apus cpu_affinity=true": ("apus", ("--set", "cpu_affinity=true")),
              "apus (default: cpu_affinity auto, unpinned here)": ("apus", ()),
              "mosquitto": ("mosquitto", ())}
    rows = {}
    for i in range(rounds):
        for label in (list(labels) if i % 2 == 0 else list(reversed(labels))):
            kind, extra = labels[label]
            b = Broker(kind, extra=extra)
            tag = {"apus cpu_affinity=true": "apus-pinned", "mosquitto": "mosquitto"}.get(label, "apus-default-unpinned")
            try:
                row = {}
                for rate in (500, 1000):
                    r = blast(["--pairs", "100", "--rate", str(rate), "-s", "64", "--warmup", "1", "--duration", "5"], b,
                              f"affinity-latency{rate}-{tag}-{i + 1}")
                    row[f"paced {rate}"] = r
                row["storm"] = blast(["--storm", "5000", "--batch", "100"], b, f"affinity-storm-{tag}-{i + 1}")
                for q in ("0", "1"):
                    row[f"pairs q{q}"] = bench(["pairs", "--pairs", "10", "-q", q, "-s", "64", "--window", "64", "--warmup", "1",
                                                "--duration", "4"], b, f"affinity-pairs-q{q}-{tag}-{i + 1}")
            finally:
                b.stop()
            rows.setdefault(label, []).append(row)
            print(f"affinity {label}: p50 at 500/s {row['paced 500']['latencyMicroseconds']['p50']}, at 1000/s "
                  f"{row['paced 1000']['latencyMicroseconds']['p50']} ({row['paced 1000']['messagesPerSecond']:.0f} msg/s), "
                  f"storm {row['storm']['connectsPerSecond']}/s, pairs q0 {row['pairs q0']['messagesPerSecond']:.0f} "
                  f"q1 {row['pairs q1']['messagesPerSecond']:.0f}", flush=True)
    out = {}
    for label, v in rows.items():
        o = {}
        for rate in (500, 1000):
            o[f"100 pairs x {rate} msg/s"] = {"messagesPerSecond": summary([r[f"paced {rate}"]["messagesPerSecond"] for r in v]),
                                              **{p: summary([r[f"paced {rate}"]["latencyMicroseconds"][p] for r in v]) for p in ("p50", "p90", "p99", "p99.9")}}
        o["connect storm 5000 (mqtt-blast)"] = summary([r["storm"]["connectsPerSecond"] for r in v])
        for q in ("0", "1"):
            o[f"pairs 10x10 QoS {q} msg/s"] = summary([r[f"pairs q{q}"]["messagesPerSecond"] for r in v])
        out[label] = o
    results["affinity"] = out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="tools,payloads,subscriptions,storm,latency")
    ap.add_argument("--out", default=HERE, help="directory for the runs' JSON and results.json (default: beside this file)")
    a = ap.parse_args()
    global OUT
    OUT = os.path.abspath(a.out)
    os.makedirs(OUT, exist_ok=True)
    build_tools()
    path = os.path.join(OUT, "results.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    results["command"] = "python3 reports/perf2-20261207/measure.py " + " ".join(sys.argv[1:])
    results["machine"] = subprocess.check_output(["uname", "-srm"], text=True).strip() + f", {os.cpu_count()} CPUs"
    results["mosquitto"] = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    for part in a.only.split(","):
        globals()[part](a.rounds, results)
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
    print(f"written {path}")


if __name__ == "__main__":
    main()
