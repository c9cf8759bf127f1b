#!/usr/bin/env python3
"""Leaves COUNT offline persistent sessions on a broker, each (client id ps-<i>, clean session 0)
subscribed to ps/<i> at QoS 1 with QUEUED QoS 1 messages waiting (SIZE-byte payloads): CONNECT,
SUBSCRIBE, DISCONNECT on 200 connections at a time, then one publisher's QoS 1 PUBLISHes, written
back to back, each PUBACK read (the broker stored the message before it, with persistence).

    fill-sessions.py --port 1883 --count 100000 --queued 1 --size 64
"""
import argparse
import socket
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=1883)
ap.add_argument("--count", type=int, default=100_000)
ap.add_argument("--queued", type=int, default=1)
ap.add_argument("--size", type=int, default=64)
args = ap.parse_args()


def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def s16(b):
    return len(b).to_bytes(2, "big") + b


def read_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise SystemExit(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


started = time.monotonic()
batch = 200
for first in range(0, args.count, batch):
    socks = []
    for i in range(first, min(first + batch, args.count)):
        s = socket.create_connection(("127.0.0.1", args.port))
        connect = packet(0x10, s16(b"MQTT") + b"\x04\x00\x00\x3c" + s16(f"ps-{i}".encode()))
        subscribe = packet(0x82, b"\x00\x01" + s16(f"ps/{i}".encode()) + b"\x01")
        s.sendall(connect + subscribe)
        socks.append(s)
    for s in socks:
        connack = read_exactly(s, 4)
        assert connack[0] == 0x20 and connack[3] == 0, connack
        suback = read_exactly(s, 5)
        assert suback[0] == 0x90 and suback[4] == 1, suback
        s.sendall(b"\xe0\x00")
        s.close()
print(f"{args.count} persistent sessions in {time.monotonic() - started:.1f} s")

started = time.monotonic()
p = socket.create_connection(("127.0.0.1", args.port))
p.sendall(packet(0x10, s16(b"MQTT") + b"\x04\x02\x00\x3c" + s16(b"fill-sessions-pub")))
assert read_exactly(p, 4)[3] == 0
payload = b"q" * args.size
mid = 0
total = args.count * args.queued
chunk = []
sent = 0
for round in range(args.queued):
    for i in range(args.count):
        mid = mid % 65535 + 1
        chunk.append(packet(0x32, s16(f"ps/{i}".encode()) + mid.to_bytes(2, "big") + payload))
        if len(chunk) == 1000:
            p.sendall(b"".join(chunk))
            sent += len(chunk)
            chunk = []
            read_exactly(p, 4 * 1000)  # the PUBACKs of this block
if chunk:
    p.sendall(b"".join(chunk))
    read_exactly(p, 4 * len(chunk))
p.sendall(b"\xe0\x00")
p.close()
print(f"{total} queued QoS 1 messages in {time.monotonic() - started:.1f} s")
