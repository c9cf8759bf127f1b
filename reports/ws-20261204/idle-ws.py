#!/usr/bin/env python3
"""Opens COUNT idle MQTT connections to a broker — over WebSocket (--ws: the upgrade, then CONNECT
in one masked binary frame) or plain TCP — and prints its resident memory before and after, per
connection; the connections stay open while the broker's RSS is read (--pid), then close.

    idle-ws.py --port 8083 --ws --pid PID --count 1000
"""
import argparse
import base64
import os
import socket
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--pid", type=int, required=True)
ap.add_argument("--count", type=int, default=1000)
ap.add_argument("--ws", action="store_true")
args = ap.parse_args()


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def read_until(s, marker):
    data = b""
    while marker not in data:
        chunk = s.recv(4096)
        assert chunk, "closed by the broker"
        data += chunk
    return data


def masked(payload):
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


time.sleep(1)
before = rss(args.pid)
conns = []
for i in range(args.count):
    s = socket.create_connection(("127.0.0.1", args.port))
    cid = f"idle-{i}".encode()
    body = b"\x00\x04MQTT\x04\x02\x01\x2c" + len(cid).to_bytes(2, "big") + cid
    connect = bytes([0x10, len(body)]) + body
    if args.ws:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
        head = read_until(s, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        rest = head.split(b"\r\n\r\n", 1)[1]
        s.sendall(masked(connect))
        while len(rest) < 6:  # frame header (2) + CONNACK (4)
            rest += s.recv(64)
        assert rest[0] == 0x82 and rest[2] == 0x20, rest
    else:
        s.sendall(connect)
        assert s.recv(4)[:1] == b"\x20", "CONNACK"
    conns.append(s)
time.sleep(4)  # quiet connections give their buffers back after a second or two
after = rss(args.pid)
kind = "WebSocket" if args.ws else "TCP"
print(f"{args.count} idle {kind} connections: RSS {before} -> {after} KiB, {(after - before) * 1024 / args.count:.0f} bytes per connection")
for s in conns:
    s.close()
