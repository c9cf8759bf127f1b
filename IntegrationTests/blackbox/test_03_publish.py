"""03-publish: QoS 2 end to end in both directions, exactly once even when the publisher resends
the PUBLISH before PUBREL; delivery QoS is min(publish QoS, granted QoS)."""
import os
import socket
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import Client, Raw, connect_packet, unique
from mqtt5_raw import varint


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_qos2_end_to_end(broker, clients, protocol):
    topic = unique("q2")
    sub = clients(protocol=protocol)
    assert sub.subscribe(topic, 2)[0].value == 2
    pub = clients(protocol=protocol)
    for i in range(20):
        pub.publish(topic, f"m{i}".encode(), qos=2)
    got = sub.receive(20)
    assert [m[1] for m in got] == [f"m{i}".encode() for i in range(20)]
    assert all(m[2] == 2 for m in got)


def test_qos2_resend_before_pubrel_delivered_once(broker, clients):
    topic = unique("q2dup")
    sub = clients()
    sub.subscribe(topic, 2)
    r = Raw(broker)
    r.send(connect_packet(unique("q2pub")))
    assert r.read(4) == b"\x20\x02\x00\x00"
    t = topic.encode()
    publish = bytes([0x34, 2 + len(t) + 2 + 4]) + len(t).to_bytes(2, "big") + t + b"\x00\x07" + b"once"
    r.send(publish)
    assert r.read(4) == b"\x50\x02\x00\x07"  # PUBREC
    dup = bytes([publish[0] | 0x08]) + publish[1:]
    r.send(dup)  # the client did not see PUBREC (as far as it knows) and resends with DUP
    assert r.read(4) == b"\x50\x02\x00\x07"
    r.send(b"\x62\x02\x00\x07")  # PUBREL
    assert r.read(4) == b"\x70\x02\x00\x07"  # PUBCOMP
    r.close()
    assert sub.receive(1) == [(topic, b"once", 2)]
    # Nothing more: a later message is the next one.
    pub = clients()
    pub.publish(topic, b"next", qos=1)
    assert sub.receive(1) == [(topic, b"next", 1)]


def test_qos_downgrade_to_granted(broker, clients):
    topic = unique("down")
    sub = clients()
    sub.subscribe(topic, 1)
    pub = clients()
    pub.publish(topic, b"x", qos=2)
    assert sub.receive(1) == [(topic, b"x", 1)]


# Large payloads (the broker holds them once, receives the rest of a large packet straight into
# its storage, and sends them gathered from where they are held): every subscriber gets every
# byte, in order, on either shard, whatever QoS, also when it reads slowly.

def _publish(topic, payload, qos, packet_id):
    body = len(topic).to_bytes(2, "big") + topic + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | qos << 1]) + varint(len(body)) + body


def test_large_payloads_reach_every_subscriber_intact(broker, clients):
    topic = unique("big")
    subscribers = [clients(protocol=mqtt.MQTTv5 if i % 2 else mqtt.MQTTv311) for i in range(6)]
    for i, s in enumerate(subscribers):
        s.subscribe(topic, i % 3)
    # A raw subscriber with a small receive buffer that reads slowly: the broker's sends to it
    # end part-way through a payload again and again.
    slow = Raw(broker)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    slow.send(connect_packet(unique("slow")))
    assert slow.read(4) == b"\x20\x02\x00\x00"
    t = topic.encode()
    slow.send(b"\x82" + varint(2 + 2 + len(t) + 1) + b"\x00\x01" + len(t).to_bytes(2, "big") + t + b"\x01")
    assert slow.read_packet()[0] == 0x90
    pub = clients()
    sizes = [20_000, 70_000, 300_000, 1_000_000, 16_384, 65_536 + 17]
    payloads = [os.urandom(n) for n in sizes]
    for i, p in enumerate(payloads):
        pub.publish(topic, p, qos=i % 3)
    for i, s in enumerate(subscribers):
        got = s.receive(len(payloads), timeout=30)
        # paho hands a QoS 2 message over at PUBREL, after later QoS 0/1 ones may have come: the
        # order is checked on the raw subscriber below.
        expected = sorted((p, min(j % 3, i % 3)) for j, p in enumerate(payloads))
        assert sorted((m[1], m[2]) for m in got) == expected, f"subscriber {i}"
    received = []
    while len(received) < len(payloads):
        time.sleep(0.01)
        first, body = slow.read_packet(timeout=30)
        assert first >> 4 == 3
        qos = (first >> 1) & 3
        n = int.from_bytes(body[:2], "big")
        assert body[2:2 + n] == t
        received.append(body[2 + n + (2 if qos else 0):])
        if qos:
            slow.send(b"\x40\x02" + body[2 + n:2 + n + 2])  # PUBACK
    assert received == payloads
    slow.close()


@pytest.mark.parametrize("size", [4096, 16384])
def test_payloads_with_smaller_receive_buffers(make_broker, tmp_path, size):
    # receive_buffer_size below its 64 KiB default (docs/configuration.md): packets smaller than,
    # about and larger than one buffer, and 1 MB, at every QoS, arrive whole and in order.
    conf = tmp_path / "apus.conf"
    conf.write_text(f"receive_buffer_size {size}\n")
    b = make_broker("--config", str(conf))
    topic = unique("bufs")
    sub = Client(b)
    sub.subscribe(topic, 2)
    pub = Client(b)
    payloads = [os.urandom(n) for n in (100, size - 20, size + 17, 16_384, 65_536 + 17, 200_000, 1_000_000)]
    for i, p in enumerate(payloads):
        pub.publish(topic, p, qos=i % 3)
    got = sub.receive(len(payloads), timeout=30)
    assert sorted((m[1], m[2]) for m in got) == sorted((p, i % 3) for i, p in enumerate(payloads))
    sub.close()
    pub.close()
    b.assert_alive()


def test_large_packet_arriving_in_small_pieces_with_the_next_packet_behind_it(broker, clients):
    # The publisher writes a 1 MB PUBLISH in 10 KB pieces with pauses (the broker receives most of
    # it straight into its storage, a piece at a time) and the next PUBLISH in the same write as
    # the first one's last bytes.
    topic = unique("pieces")
    sub = clients()
    sub.subscribe(topic, 1)
    r = Raw(broker)
    r.send(connect_packet(unique("pieces-pub")))
    assert r.read(4) == b"\x20\x02\x00\x00"
    first, second = os.urandom(1_000_000), os.urandom(200_000)
    stream = _publish(topic.encode(), first, 1, 1) + _publish(topic.encode(), second, 1, 2)
    cut = len(stream) - 200_050
    for start in range(0, cut, 10_000):
        r.send(stream[start:min(start + 10_000, cut)])
        if start % 200_000 == 0:
            time.sleep(0.02)
    r.send(stream[cut:])
    assert r.read(8) == b"\x40\x02\x00\x01\x40\x02\x00\x02"
    got = sub.receive(2, timeout=20)
    assert [m[1] for m in got] == [first, second]
    r.close()


def test_client_gone_in_the_middle_of_a_large_packet(broker, clients):
    # Half of a 1 MB PUBLISH, then the client goes: its storage is let go, the broker serves on.
    topic = unique("gone")
    for _ in range(5):
        r = Raw(broker)
        r.send(connect_packet(unique("gone-pub")))
        assert r.read(4) == b"\x20\x02\x00\x00"
        r.send(_publish(topic.encode(), os.urandom(1_000_000), 1, 1)[:500_000])
        time.sleep(0.05)
        r.close()
    sub = clients()
    sub.subscribe(topic, 1)
    pub = clients()
    big = os.urandom(400_000)
    pub.publish(topic, big, qos=1)
    assert sub.receive(1) == [(topic, big, 1)]
    broker.assert_alive()
