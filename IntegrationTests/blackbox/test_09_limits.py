"""09-limits: max_connections, max_packet_size, message_size_limit, and a stalled subscriber
that must not cost the broker unbounded memory nor slow anyone else."""
import os
import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import BROKER, Client, Raw, connect_packet, rss_kib, unique, wait_until


def test_max_connections_refused_with_connack(make_broker):
    b = make_broker("--max-connections", "2", shards=1)
    held = [Raw(b) for _ in range(2)]
    for i, r in enumerate(held):
        r.send(connect_packet(unique(f"mc{i}")))
        assert r.read(4) == b"\x20\x02\x00\x00"
    third = Raw(b)
    third.send(connect_packet(unique("mc3")))
    assert third.read(4) == b"\x20\x02\x00\x03"  # server unavailable
    assert third.closed_by_server()
    v5 = Raw(b)
    v5.send(connect_packet(unique("mc5"), version=5))
    head = v5.read(3)
    assert head[0] == 0x20 and v5.read(1) == b"\x97"  # quota exceeded
    # A slot frees up when a client leaves.
    held[0].send(b"\xe0\x00")
    assert held[0].closed_by_server()
    again = Raw(b)
    again.send(connect_packet(unique("mc4")))
    assert again.read(4) == b"\x20\x02\x00\x00"


def test_message_size_limit(make_broker):
    b = make_broker("--message-size-limit", "100")
    sub = Client(b)
    pub = Client(b)
    try:
        sub.subscribe("msl/t", 1)
        pub.publish("msl/t", b"x" * 200, qos=1)  # acknowledged, not routed
        pub.publish("msl/t", b"small", qos=1)
        assert sub.receive(1) == [("msl/t", b"small", 1)]
    finally:
        sub.close()
        pub.close()
    wait_until(lambda: "message_size_limit" in b.log_tail(200), message="the drop to be logged")


@pytest.mark.skipif(BROKER != "apus", reason="reads the apus process's RSS and log")
def test_stalled_subscriber_is_bounded(make_broker):
    b = make_broker()
    topic = unique("slow")
    # Stalled subscribers: subscribe at QoS 0 and QoS 1, then never read (small receive buffers).
    stalled = []
    for qos in (0, 1):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((b.host, b.port))
        s.sendall(connect_packet(unique("stall")))
        assert s.recv(4) == b"\x20\x02\x00\x00"
        t = topic.encode()
        body = b"\x00\x01" + len(t).to_bytes(2, "big") + t + bytes([qos])
        s.sendall(bytes([0x82, len(body)]) + body)
        assert s.recv(5)[0] == 0x90
        stalled.append(s)
    healthy = Client(b)
    healthy.subscribe(topic, 1)
    pub = Client(b)
    payload = b"p" * 2048
    per_phase = 4000

    def phase(n, batch=200):
        # The healthy subscriber (a Python client) reads slower than the broker delivers, so the
        # publisher goes in batches that it keeps up with: it must get every message.
        for _ in range(n // batch):
            for _ in range(batch):
                info = pub.mqtt.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout=30)
            got = healthy.receive(batch, timeout=30)
            assert len(got) == batch

    try:
        phase(per_phase)
        rss_after_first = rss_kib(b.proc.pid)
        phase(per_phase)
        phase(per_phase)
        rss_after_third = rss_kib(b.proc.pid)
        # Two more phases' worth of traffic (16 MB towards each stalled client) must not grow
        # memory by more than a fraction of that: the stalled clients' buffers are bounded.
        assert rss_after_third - rss_after_first < 12 * 1024, (rss_after_first, rss_after_third)
        b.assert_alive()
        assert "subscriber queues full" in b.log_tail(400) or "slow subscribers" in b.log_tail(400)
    finally:
        for s in stalled:
            s.close()
        healthy.close()
        pub.close()
