"""Cluster measurements (issue 18): a real etcd and three apus nodes on this machine.

  python3 reports/cluster-20261207/measure.py [--rounds 3] [--out reports/cluster-20261207]

1. route convergence: 1,000 subscriptions on node a, each timed from its SUBACK to the first
   message published on node b that reached it (b publishes the topic every ~0.2 ms until one
   arrives); p50 / p99 / max.
2. pairs 10x10 QoS 0 and QoS 1 (apus-bench, 64 B, closed loop, 8 s): publishers on b and
   subscribers on a, against publishers and subscribers both on a (one node of the same cluster);
   medians of --rounds rounds, loss reported.
3. takeover across nodes: a persistent session connected on a, the same client id connecting on
   b: CONNECT sent to CONNACK (session present) received; against the same on one node. 200 times.
4. detection of a dead node: kill -9 of node c: when a drops c's routes (its link broke) and when
   a lists c as stopped (its lease ended; cluster_lease_ttl 3 and 10).
Writes results.json and prints a summary."""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "IntegrationTests", "blackbox"))
from cluster_procs import Etcd, Node  # noqa: E402
from conftest import wait_until  # noqa: E402

BENCH = os.path.join(ROOT, ".build", "release", "apus-bench")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def mqtt_str(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def connect_packet(cid, clean=True):
    flags = 0x02 if clean else 0x00
    return packet(0x10, mqtt_str("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + mqtt_str(cid))


class Raw:
    def __init__(self, port, cid, clean=True):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sock.sendall(connect_packet(cid, clean))
        first, body = self.read_packet(5)
        assert first == 0x20 and body[1] == 0, (first, body)
        self.session_present = body[0] & 1

    def read_packet(self, timeout):
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 2:
                n, shift, i = 0, 0, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    n |= (b & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    i = None
                if i is not None and len(self.buf) >= i + n:
                    first, body = self.buf[0], self.buf[i:i + n]
                    self.buf = self.buf[i + n:]
                    return first, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def subscribe(self, topic, pid=1):
        self.sock.sendall(packet(0x82, pid.to_bytes(2, "big") + mqtt_str(topic) + b"\x00"))
        while True:
            first, body = self.read_packet(5)
            if first == 0x90:
                return

    def publish(self, topic, payload):
        self.sock.sendall(packet(0x30, mqtt_str(topic) + payload))

    def close(self):
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def route_convergence(a, b, count=1000):
    sub = Raw(a.port, "conv-sub")
    pub = Raw(b.port, "conv-pub")
    times = []
    for i in range(count):
        topic = f"conv/{os.getpid()}/{i}"
        sub.subscribe(topic, pid=(i % 60000) + 1)
        t0 = time.perf_counter_ns()
        while True:
            sent = time.perf_counter_ns()
            pub.publish(topic, sent.to_bytes(8, "big"))
            try:
                first, body = sub.read_packet(0.0002)
            except socket.timeout:
                continue
            if first & 0xF0 == 0x30:
                tlen = int.from_bytes(body[0:2], "big")
                first_sent = int.from_bytes(body[2 + tlen:2 + tlen + 8], "big")
                times.append((first_sent - t0) / 1e6)
                break
        # Later copies of the probe still on their way: drain them.
        try:
            while True:
                sub.read_packet(0.002)
        except socket.timeout:
            pass
    sub.close()
    pub.close()
    return {"subscriptions": count, "p50_ms": round(pct(times, 50), 3), "p99_ms": round(pct(times, 99), 3),
            "max_ms": round(max(times), 3), "mean_ms": round(statistics.mean(times), 3)}


def bench(pub_node, sub_node, qos, label, out):
    args = [BENCH, "run", "pairs", "--pairs", "10", "-q", str(qos), "-s", "64", "--window", "64", "--warmup", "2",
            "--duration", "8", "-h", "127.0.0.1", "-p", str(pub_node.port), "--sub-port", str(sub_node.port),
            "--label", label, "--json", out, "--quiet"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        report = json.load(f)
    return report, " ".join(args[1:])


def takeover(first_node, second_node, rounds=200):
    times = []
    for i in range(rounds):
        cid = f"roam-{os.getpid()}-{i}"
        holder = Raw(first_node.port, cid, clean=False)
        holder.subscribe(f"roam/{i}")
        t0 = time.perf_counter_ns()
        taker = Raw(second_node.port, cid, clean=False)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        assert taker.session_present == 1
        taker.close()
        holder.sock.close()
        # End the session (clean start) so that nothing accumulates.
        Raw(second_node.port, cid, clean=True).close()
    return {"rounds": rounds, "p50_ms": round(pct(times, 50), 3), "p99_ms": round(pct(times, 99), 3), "max_ms": round(max(times), 3)}


def detection(etcd, name, ttl):
    nodes = {n: Node(n, etcd, name, lease_ttl=ttl) for n in ("a", "b", "c")}
    try:
        for node in nodes.values():
            wait_until(lambda: node.metric("apus_cluster_links_up") == 2, timeout=20, message="links")
        sub = Raw(nodes["c"].port, "dead-sub")
        sub.subscribe("dead/topic")
        wait_until(lambda: nodes["a"].metric("apus_cluster_remote_filters"), message="c's route on a")
        t0 = time.monotonic()
        nodes["c"].proc.send_signal(signal.SIGKILL)
        nodes["c"].proc.wait()
        routes_gone = wait_until(lambda: nodes["a"].metric("apus_cluster_remote_filters") == 0 and time.monotonic(), timeout=30,
                                 message="routes gone") - t0
        stopped = wait_until(lambda: nodes["a"].nodes()["c"]["node_status"] == "stopped" and time.monotonic(), timeout=ttl + 10,
                             message="c stopped") - t0
        return {"lease_ttl_s": ttl, "routes_gone_ms": round(routes_gone * 1000, 1), "listed_stopped_s": round(stopped, 2)}
    finally:
        for n in ("a", "b"):
            nodes[n].stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=HERE)
    args = parser.parse_args()
    results = {"machine": f"{os.cpu_count()} vCPU", "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    etcd = Etcd()
    name = f"m{os.getpid()}"
    nodes = {n: Node(n, etcd, name, lease_ttl=10) for n in ("a", "b", "c")}
    try:
        for node in nodes.values():
            wait_until(lambda: node.metric("apus_cluster_links_up") == 2, timeout=20, message="links")
        a, b = nodes["a"], nodes["b"]
        results["route_convergence"] = route_convergence(a, b)
        print("route convergence:", results["route_convergence"], flush=True)
        pairs = {}
        for qos in (0, 1):
            for shape, pub, sub in (("one_node", a, a), ("cross_node", b, a)):
                runs = []
                for r in range(args.rounds):
                    out = os.path.join(args.out, f"pairs-q{qos}-{shape}-{r + 1}.json")
                    report, command = bench(pub, sub, qos, f"apus-{shape}", out)
                    lat = report["latencyMicroseconds"]
                    runs.append({"msgs_per_s": round(report["messagesPerSecond"]), "lost": report["lost"],
                                 "p50_us": lat["p50"], "p99_us": lat["p99"], "command": command})
                    print(f"pairs QoS {qos} {shape} round {r + 1}: {runs[-1]}", flush=True)
                pairs[f"q{qos}_{shape}"] = {"runs": runs, "median_msgs_per_s": statistics.median(x["msgs_per_s"] for x in runs)}
        results["pairs"] = pairs
        results["takeover_cross_node"] = takeover(a, b)
        results["takeover_one_node"] = takeover(a, a)
        print("takeover:", results["takeover_cross_node"], results["takeover_one_node"], flush=True)
    finally:
        for node in nodes.values():
            node.stop()
    results["dead_node_ttl3"] = detection(etcd, name + "d3", 3)
    results["dead_node_ttl10"] = detection(etcd, name + "d10", 10)
    print("detection:", results["dead_node_ttl3"], results["dead_node_ttl10"], flush=True)
    etcd.stop()
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
