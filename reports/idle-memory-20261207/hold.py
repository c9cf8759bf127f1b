#!/usr/bin/env python3
"""Holds COUNT idle MQTT connections (plain, or TLS with --cafile) to 127.0.0.1:PORT, each with
CONNECT/CONNACK done and client id idle-N (at most 15 bytes: Swift keeps it inline), prints
"held", and keeps them open until the file --until exists.

    hold.py --port 8883 --count 1000 [--cafile ca.crt] --until /tmp/release
"""
import argparse
import os
import socket
import ssl
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--count", type=int, default=1000)
ap.add_argument("--cafile")
ap.add_argument("--until", required=True)
args = ap.parse_args()
context = None
if args.cafile:
    context = ssl.create_default_context(cafile=args.cafile)
    context.check_hostname = False
conns = []
for i in range(args.count):
    s = socket.create_connection(("127.0.0.1", args.port))
    if context:
        s = context.wrap_socket(s)
    cid = f"idle-{i}".encode()
    body = b"\x00\x04MQTT\x04\x02\x01\x2c" + len(cid).to_bytes(2, "big") + cid
    s.sendall(bytes([0x10, len(body)]) + body)
    assert s.recv(4)[:1] == b"\x20", "CONNACK"
    conns.append(s)
print("held", flush=True)
while not os.path.exists(args.until):
    time.sleep(0.1)
