"""Bridges and webhooks measured (issue 19), everything on this machine's loopback:

  python3 reports/bridge-webhook-20261207/measure.py [--rounds 2]

1. Messages per second through a bridge: apus-bench pairs 10x10 (64 B, closed loop) with the
   publishers on one broker and the subscribers on another, the first bridging `bench/# out 1` to
   the second: apus → apus, apus → Mosquitto 2.0.11, and Mosquitto → Mosquitto (its own bridge)
   for comparison; QoS 0 and 1.
2. Webhooks: pairs 10x10 QoS 0 on apus alone, then with a webhook whose filter matches nothing
   the load publishes (message.publish on nothing/#, plus client events): the cost of a hook that
   matches nothing hot. Then events per second delivered by a hook on message.publish for the
   load's topics, paced at 5,000 msg/s for 10 s, to a minimal asyncio HTTP/1.1 endpoint.
Writes results.json beside this file (and every apus-bench report)."""
import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
APUS = os.path.join(ROOT, ".build", "release", "apus")
BENCH = os.path.join(ROOT, ".build", "release", "apus-bench")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing on {port}")


class Proc:
    def __init__(self, kind, conf_lines, http=False):
        self.port = free_port()
        self.http = free_port() if http else None
        self.dir = tempfile.mkdtemp(prefix=f"{kind}-")
        os.chmod(self.dir, 0o777)
        conf = os.path.join(self.dir, f"{kind}.conf")
        lines = [f"listener {self.port} 127.0.0.1"] + ([f"http_listener {self.http}"] if http else []) + conf_lines
        if kind == "mosquitto":
            lines.insert(1, "allow_anonymous true")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        args = [APUS, "--config", conf] if kind == "apus" else ["mosquitto", "-c", conf]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def metric(self, prefix):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(prefix + " "):
                    return float(line.split()[-1])
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def bench(pub, sub, qos, label, out, extra=()):
    args = [BENCH, "run", "pairs", "--pairs", "10", "-q", str(qos), "-s", "64", "--warmup", "2", "--duration", "8",
            "-p", str(pub.port), "--sub-port", str(sub.port), "--label", label, "--json", out, "--quiet", *extra]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        r = json.load(f)
    return {"msgs_per_s": round(r["messagesPerSecond"]), "lost": r["lost"], "p50_us": r["latencyMicroseconds"]["p50"],
            "p99_us": r["latencyMicroseconds"]["p99"], "command": " ".join(args[1:])}


def bridge_line(kind, remote):
    name = "b"
    lines = [f"connection {name}", f"address 127.0.0.1:{remote.port}", "topic bench/# out 1"]
    if kind == "apus":
        lines.append("restart_timeout 1 2")
    return lines


def wait_bridge(pub, sub):
    """Until a message published on `pub` reaches `sub` (the bridge is up)."""
    for _ in range(200):
        got = subprocess.Popen(["mosquitto_sub", "-p", str(sub.port), "-t", "bench/ready", "-C", "1", "-W", "2"], stdout=subprocess.PIPE)
        time.sleep(0.2)
        subprocess.run(["mosquitto_pub", "-p", str(pub.port), "-t", "bench/ready", "-m", "x", "-q", "1"], check=True)
        out, _ = got.communicate(timeout=5)
        if out.strip() == b"x":
            return
    raise RuntimeError("bridge not up")


class Endpoint:
    """A minimal HTTP/1.1 keep-alive server (asyncio) that answers every POST 200 and counts."""

    def __init__(self):
        self.count = 0
        self.port = free_port()
        ready = threading.Event()

        async def handle(reader, writer):
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
                    await reader.readexactly(length)
                    self.count += 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            except Exception:
                writer.close()

        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            ready.set()
            async with server:
                await server.serve_forever()

        threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
        ready.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results = {"machine": f"{os.cpu_count()} vCPU", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "bridge": {}, "webhook": {}}
    for first, second in (("apus", "apus"), ("apus", "mosquitto"), ("mosquitto", "mosquitto")):
        remote = Proc(second, [])
        local = Proc(first, bridge_line(first, remote))
        try:
            wait_bridge(local, remote)
            for qos in (0, 1):
                runs = [bench(local, remote, qos, f"{first}->{second}", os.path.join(HERE, f"bridge-{first}-{second}-q{qos}-{r + 1}.json"))
                        for r in range(args.rounds)]
                key = f"{first}_to_{second}_q{qos}"
                results["bridge"][key] = {"runs": runs, "median_msgs_per_s": statistics.median(r["msgs_per_s"] for r in runs)}
                print(key, [(r["msgs_per_s"], r["lost"]) for r in runs], flush=True)
        finally:
            local.stop()
            remote.stop()
    # Webhooks.
    endpoint = Endpoint()
    hook_cold = ["webhook cold", f"webhook_url http://127.0.0.1:{endpoint.port}/", "webhook_events client.connected,client.disconnected,message.publish",
                 "webhook_topic nothing/#"]
    rounds = []
    for r in range(args.rounds + 1):
        for label, lines in (("no_hook", []), ("cold_hook", hook_cold)):
            a = Proc("apus", lines, http=True)
            try:
                rounds.append((label, bench(a, a, 0, f"apus-{label}", os.path.join(HERE, f"webhook-{label}-{r + 1}.json"))))
                print(label, rounds[-1][1]["msgs_per_s"], flush=True)
            finally:
                a.stop()
    for label in ("no_hook", "cold_hook"):
        runs = [x for l, x in rounds if l == label]
        results["webhook"][label] = {"runs": runs, "median_msgs_per_s": statistics.median(x["msgs_per_s"] for x in runs)}
    hot = Proc("apus", ["webhook hot", f"webhook_url http://127.0.0.1:{endpoint.port}/", "webhook_events message.publish", "webhook_topic bench/#"], http=True)
    try:
        before = endpoint.count
        started = time.monotonic()
        report = bench(hot, hot, 0, "apus-hot-hook", os.path.join(HERE, "webhook-hot.json"), extra=("--rate", "500"))
        time.sleep(1)
        elapsed = time.monotonic() - started
        sent = hot.metric('apus_webhook_events_total{webhook="hot",result="sent"}')
        dropped = hot.metric('apus_webhook_events_total{webhook="hot",result="dropped"}')
        failed = hot.metric('apus_webhook_events_total{webhook="hot",result="failed"}')
        results["webhook"]["hot_hook"] = {"load": report, "events_sent": sent, "events_dropped": dropped, "events_failed": failed,
                                          "endpoint_received": endpoint.count - before, "seconds": round(elapsed, 1),
                                          "events_per_s": round(sent / elapsed)}
        print("hot hook", results["webhook"]["hot_hook"], flush=True)
    finally:
        hot.stop()
    # The sender's ceiling: a load beyond it (30,000 msg/s), events sent per second while it runs.
    ceiling = Proc("apus", ["webhook hot", f"webhook_url http://127.0.0.1:{endpoint.port}/", "webhook_events message.publish", "webhook_topic bench/#"], http=True)
    try:
        sent0 = ceiling.metric('apus_webhook_events_total{webhook="hot",result="sent"}') or 0
        started = time.monotonic()
        report = bench(ceiling, ceiling, 0, "apus-hook-ceiling", os.path.join(HERE, "webhook-ceiling.json"), extra=("--rate", "3000"))
        elapsed = time.monotonic() - started
        sent = ceiling.metric('apus_webhook_events_total{webhook="hot",result="sent"}') - sent0
        dropped = ceiling.metric('apus_webhook_events_total{webhook="hot",result="dropped"}')
        results["webhook"]["hook_ceiling"] = {"load": report, "events_sent": sent, "events_dropped": dropped, "seconds": round(elapsed, 1),
                                              "events_per_s": round(sent / elapsed)}
        print("hook ceiling", results["webhook"]["hook_ceiling"], flush=True)
    finally:
        ceiling.stop()
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
