#!/usr/bin/env python3
"""How often a PUBLISH sent right after a SUBSCRIBE on another connection misses the new subscriber.

Each try: connection S sends SUBSCRIBE to a topic new to the broker, and connection P, written to by
the same thread microseconds later (before SUBACK), sends a QoS 0 PUBLISH to it. A try is missed
when S does not receive the message within --wait seconds. S and P are drawn from pools of
connections, so with two shards about half of the tries cross shards (the reported
`cross_shard_tries` counts them when --http-port is given: each connection's shard is found from
/metrics' per-shard connection gauge as it connects).

    IntegrationTests/load/subscribe-race.py --port 1883 --tries 10000 [--http-port 8080] [--gap-us 50]
        [--large-before BYTES]

With --large-before, S sends a QoS 0 PUBLISH of that many payload bytes (to a topic nobody
subscribes to) in the same write as each SUBSCRIBE: the broker receives a large packet's rest with
single recvs, and the SUBSCRIBE right behind it, so the SUBSCRIBE is dated by that path. P
publishes once the kernel has taken all of S's bytes into the broker's socket (S's send queue is
empty: on loopback the ACK is immediate), so the SUBSCRIBE has arrived first (a send queue still
holding it would deliver it after the PUBLISH, and no broker could tell).

Prints one JSON object: tries, misses, miss rate, cross-shard tries and misses when known.
"""
import argparse
import fcntl
import json
import re
import socket
import struct
import sys
import termios
import time
import urllib.request


def connect(host, port, client_id):
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = len(cid).to_bytes(2, "big") + cid
    s.sendall(bytes([0x10, len(var) + len(payload)]) + var + payload)
    assert s.recv(4) == b"\x20\x02\x00\x00"
    return s


def shard_counts(http_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {int(m.group(1)): int(m.group(2))
            for m in re.finditer(r'apus_shard_connections_count\{shard="(\d+)"\} (\d+)', text)}


def connect_on_known_shard(host, port, http_port, client_id):
    """Connects and waits for the per-shard gauge (reported once a second) to show which shard."""
    before = shard_counts(http_port)
    s = connect(host, port, client_id)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        now = shard_counts(http_port)
        grown = [k for k in now if now[k] > before.get(k, 0)]
        if len(grown) == 1:
            return s, grown[0]
        time.sleep(0.05)
    raise SystemExit("could not tell the shard of a connection")


def read_packets(sock, buf, deadline, done):
    """Reads packets (after the bytes `buf` already read), calling `done(type, body)` for each,
    until it returns True or the deadline passes. Returns (finished, bytes read past it)."""
    while True:
        while len(buf) >= 2:
            length, shift, i = 0, 0, 1
            complete = False
            while i < len(buf):
                b = buf[i]
                length |= (b & 0x7F) << shift
                shift += 7
                i += 1
                if not b & 0x80:
                    complete = True
                    break
            if not complete or len(buf) < i + length:
                break
            kind, body = buf[0] >> 4, buf[i:i + length]
            buf = buf[i + length:]
            if done(kind, body):
                return True, buf
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            # Past the deadline: still take what already arrived (this client may have been
            # descheduled meanwhile; that is not the broker's miss).
            sock.setblocking(False)
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                return False, buf
            finally:
                sock.setblocking(True)
            if not chunk:
                raise SystemExit("broker closed a connection")
            buf += chunk
            deadline = time.monotonic()  # one more pass over what came, then stop
            continue
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            raise SystemExit("broker closed a connection")
        buf += chunk


def unacknowledged(sock):
    """Bytes in the socket's send queue not yet acknowledged by the peer (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def varint(n):
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("--tries", type=int, default=10000)
    ap.add_argument("--pool", type=int, default=4, help="subscriber and publisher connections each")
    ap.add_argument("--wait", type=float, default=0.05, help="seconds to wait for the message")
    ap.add_argument("--gap-us", type=float, default=0.0,
                    help="microseconds between SUBSCRIBE and PUBLISH writes (spun below 50, slept from 50: at least that)")
    ap.add_argument("--large-before", type=int, default=0,
                    help="payload bytes of a QoS 0 PUBLISH S sends in the same write before each SUBSCRIBE")
    args = ap.parse_args()
    tag = f"race{int(time.time() * 1000) % 100000000}"
    subs, pubs = [], []
    for i in range(args.pool):
        for pool, role in ((subs, "s"), (pubs, "p")):
            cid = f"{tag}-{role}{i}"
            if args.http_port:
                pool.append(connect_on_known_shard(args.host, args.port, args.http_port, cid))
            else:
                pool.append((connect(args.host, args.port, cid), None))
    if args.http_port:
        # All on one shard (a 1 in 128 draw with two shards and pools of 4): replace publishers by
        # new connections until one lands on another shard, so that some tries cross shards (the
        # replaced ones stay open: the per-shard gauge that tells a connection's shard only grows).
        spare = []
        for attempt in range(64):
            if len({shard for _, shard in subs + pubs}) > 1:
                break
            spare.append(pubs[attempt % len(pubs)])
            pubs[attempt % len(pubs)] = connect_on_known_shard(args.host, args.port, args.http_port, f"{tag}-m{attempt}")
    large = b""
    if args.large_before:
        bulk = f"{tag}/bulk".encode()
        body = len(bulk).to_bytes(2, "big") + bulk + bytes(args.large_before)
        large = bytes([0x30]) + varint(len(body)) + body
    misses = cross = cross_misses = 0
    for n in range(args.tries):
        s, s_shard = subs[n % len(subs)]
        p, p_shard = pubs[(n // len(subs)) % len(pubs)]
        topic = f"{tag}/{n}".encode()
        sub = b"\x00\x01" + len(topic).to_bytes(2, "big") + topic + b"\x00"
        pub = len(topic).to_bytes(2, "big") + topic + b"x"
        s.sendall(large + bytes([0x82, len(sub)]) + sub)
        if large:
            until = time.monotonic() + 5
            while unacknowledged(s) and time.monotonic() < until:
                pass
        if args.gap_us >= 50:
            # Sleep, not spin: on a small machine a spinning client takes the CPU a shard needs.
            time.sleep(args.gap_us / 1e6)
        elif args.gap_us:
            until = time.perf_counter() + args.gap_us / 1e6
            while time.perf_counter() < until:
                pass
        p.sendall(bytes([0x30, len(pub)]) + pub)
        deadline = time.monotonic() + args.wait
        # The PUBLISH may come before the SUBACK (which waits until every shard has the route).
        seen = {"suback": False, "publish": False}

        def done(kind, body, topic=topic, seen=seen):
            if kind == 9:
                seen["suback"] = True
            elif kind == 3 and body[2:2 + len(topic)] == topic:
                seen["publish"] = True
            return seen["suback"] and seen["publish"]

        _, rest = read_packets(s, b"", deadline, done)
        assert seen["suback"] or read_packets(s, rest, time.monotonic() + 5, done)[0] or seen["suback"], "no SUBACK"
        got = seen["publish"]
        is_cross = s_shard is not None and s_shard != p_shard
        cross += is_cross
        if not got:
            print(f"missed try {n}: subscriber {n % len(subs)} (shard {s_shard}), publisher {(n // len(subs)) % len(pubs)} (shard {p_shard})",
                  file=sys.stderr)
            misses += 1
            cross_misses += is_cross
        unsub = b"\x00\x02" + len(topic).to_bytes(2, "big") + topic
        s.sendall(bytes([0xA2, len(unsub)]) + unsub)
        ok, _ = read_packets(s, b"", time.monotonic() + 5, lambda kind, body: kind == 11)  # UNSUBACK
        assert ok, "no UNSUBACK"
    result = {"tries": args.tries, "gap_us": args.gap_us, "misses": misses, "miss_rate": misses / args.tries}
    if args.http_port:
        result.update(cross_shard_tries=cross, cross_shard_misses=cross_misses)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
