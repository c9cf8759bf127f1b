#!/usr/bin/env python3
"""Leaves COUNT retained messages (topics fill/<i>, SIZE-byte payloads) on a broker: QoS 0 PUBLISHes
with the retain flag written back to back on one connection, then one QoS 1 retained PUBLISH whose
PUBACK says the broker has handled (and, with persistence, stored) everything before it.

    fill.py --port 1883 --count 1000000 --size 64
"""
import argparse
import socket
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=1883)
ap.add_argument("--count", type=int, default=1_000_000)
ap.add_argument("--size", type=int, default=64)
args = ap.parse_args()


def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


s = socket.create_connection(("127.0.0.1", args.port))
var = b"\x00\x04MQTT\x04\x02\x00\x3c"
cid = b"fill"
s.sendall(bytes([0x10, len(var) + 2 + len(cid)]) + var + len(cid).to_bytes(2, "big") + cid)
assert s.recv(4) == b"\x20\x02\x00\x00"
payload = b"p" * args.size
start = time.monotonic()
chunk = []
for i in range(args.count):
    topic = f"fill/{i}".encode()
    body = len(topic).to_bytes(2, "big") + topic + payload
    chunk.append(b"\x31" + varint(len(body)) + body)
    if len(chunk) == 10_000:
        s.sendall(b"".join(chunk))
        chunk = []
if chunk:
    s.sendall(b"".join(chunk))
topic = b"fill/done"
body = len(topic).to_bytes(2, "big") + topic + b"\x00\x01" + b"done"
s.sendall(b"\x33" + varint(len(body)) + body)
got = b""
while b"\x40\x02\x00\x01" not in got:
    data = s.recv(65536)
    assert data, "broker closed the connection"
    got += data
print(f"{args.count + 1} retained messages in {time.monotonic() - start:.1f} s")
s.sendall(b"\xe0\x00")
s.close()
