#!/usr/bin/env python3
"""The overload issue's memory flood against a running broker: CLIENTS connections each send a
PUBLISH header declaring a 256,000,000-byte packet, then stream MIB MiB of its body. Reports the
broker's RSS before and after (its pid given), and how many bytes each client could send before
the broker closed it.

    IntegrationTests/load/header-flood.py --port 1883 --pid BROKER_PID [--clients 10 --mib 30]
"""
import argparse
import json
import socket
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--mib", type=int, default=30)
    a = ap.parse_args()
    before = rss_kib(a.pid)
    socks, sent = [], []
    for i in range(a.clients):
        s = socket.create_connection(("127.0.0.1", a.port))
        cid = f"flood{i}".encode()
        var = b"\x00\x04MQTT\x04\x02\x00\x3c"
        s.sendall(bytes([0x10, len(var) + 2 + len(cid)]) + var + len(cid).to_bytes(2, "big") + cid)
        s.recv(4)
        # remaining length 256,000,000 as a variable byte integer
        n, vbi = 256_000_000, b""
        while True:
            b, n = n & 0x7F, n >> 7
            vbi += bytes([b | (0x80 if n else 0)])
            if not n:
                break
        s.sendall(b"\x30" + vbi + b"\x00\x01t")
        s.settimeout(0.5)
        socks.append(s)
        sent.append(0)
    chunk = b"z" * (1 << 20)
    start = time.monotonic()
    for _ in range(a.mib):
        for i, s in enumerate(socks):
            try:
                s.sendall(chunk)
                sent[i] += len(chunk)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                pass
    elapsed = time.monotonic() - start
    peak = rss_kib(a.pid)
    for s in socks:
        s.close()
    print(json.dumps({"clients": a.clients, "mib_each": a.mib, "rss_before_kib": before, "rss_after_kib": peak,
                      "rss_growth_kib": peak - before, "bytes_accepted_per_client": sent, "seconds": round(elapsed, 2)}))


if __name__ == "__main__":
    main()
