#!/usr/bin/env python3
"""Opens COUNT idle MQTT connections over TLS (each: handshake, CONNECT, CONNACK) to a broker and
prints its resident memory before and after, per connection; the connections stay open while the
broker's RSS is read (--pid), then close.

    idle-tls.py --port 8883 --cafile ca.crt --pid PID --count 1000
"""
import argparse
import socket
import ssl
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--cafile", required=True)
ap.add_argument("--pid", type=int, required=True)
ap.add_argument("--count", type=int, default=1000)
args = ap.parse_args()


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


context = ssl.create_default_context(cafile=args.cafile)
context.check_hostname = False
time.sleep(1)
before = rss(args.pid)
conns = []
for i in range(args.count):
    raw = socket.create_connection(("127.0.0.1", args.port))
    s = context.wrap_socket(raw)
    cid = f"idle-{i}".encode()
    body = b"\x00\x04MQTT\x04\x02\x01\x2c" + len(cid).to_bytes(2, "big") + cid
    s.sendall(bytes([0x10, len(body)]) + body)
    assert s.recv(4)[:1] == b"\x20", "CONNACK"
    conns.append(s)
time.sleep(4)  # quiet connections give their buffers back after a second or two
after = rss(args.pid)
print(f"{args.count} idle TLS connections: RSS {before} -> {after} KiB, {(after - before) * 1024 / args.count:.0f} bytes per connection")
for s in conns:
    s.close()
