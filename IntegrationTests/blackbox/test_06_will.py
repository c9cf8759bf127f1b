"""06-will: the will is published on abnormal disconnect (socket closed, protocol violation),
not after DISCONNECT; will QoS and retain are honoured; across shards."""
import socket

import pytest

from conftest import BROKER, Raw, unique


def connect_with_will(client_id, topic, message, qos=0, retain=False, keepalive=60):
    cid = client_id.encode()
    flags = 0x02 | 0x04 | (qos << 3) | (0x20 if retain else 0)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + keepalive.to_bytes(2, "big")
    body += len(cid).to_bytes(2, "big") + cid
    body += len(topic).to_bytes(2, "big") + topic.encode()
    body += len(message).to_bytes(2, "big") + message
    return bytes([0x10, len(body)]) + body


def test_will_on_socket_close_not_on_disconnect(broker, clients):
    base = unique("will")
    watcher = clients()
    watcher.subscribe(f"{base}/#", 1)
    for i in range(4):  # several connections: both shards
        r = Raw(broker)
        r.send(connect_with_will(unique("w"), f"{base}/gone", f"dead-{i}".encode(), qos=1))
        assert r.read(4) == b"\x20\x02\x00\x00"
        r.sock.shutdown(socket.SHUT_RDWR)
        r.close()
        assert watcher.receive(1) == [(f"{base}/gone", f"dead-{i}".encode(), 1)]
    polite = Raw(broker)
    polite.send(connect_with_will(unique("p"), f"{base}/polite", b"should-not-appear"))
    assert polite.read(4) == b"\x20\x02\x00\x00"
    polite.send(b"\xe0\x00")
    assert polite.closed_by_server()
    # A sentinel published afterwards is the next thing the watcher sees: no will came first.
    sentinel = clients()
    sentinel.publish(f"{base}/sentinel", b"s", qos=1)
    assert watcher.receive(1) == [(f"{base}/sentinel", b"s", 1)]


@pytest.mark.skipif(BROKER != "apus", reason="mosquitto drops the will on this malformed CONNECT; the spec says publish [MQTT-3.1.2-8]")
def test_will_on_protocol_violation(broker, clients):
    base = unique("willpv")
    watcher = clients()
    watcher.subscribe(f"{base}/#")
    r = Raw(broker)
    r.send(connect_with_will(unique("v"), f"{base}/bad", b"violated"))
    assert r.read(4) == b"\x20\x02\x00\x00"
    r.send(b"\x10\x00")  # a second CONNECT (and a malformed one)
    assert r.closed_by_server()
    assert watcher.receive(1) == [(f"{base}/bad", b"violated", 0)]


def test_retained_will(broker, clients):
    base = unique("willret")
    r = Raw(broker)
    r.send(connect_with_will(unique("r"), f"{base}/status", b"offline", qos=1, retain=True))
    assert r.read(4) == b"\x20\x02\x00\x00"
    r.close()
    # A subscriber that arrives later gets the will as a retained message.
    def arrived():
        c = clients()
        c.subscribe(f"{base}/status", 1)
        return c.receive(1)
    assert arrived() == [(f"{base}/status", b"offline", 1)]


def connect_v5_with_will_delay(client_id, topic, message, delay):
    cid, t = client_id.encode(), topic.encode()
    will_props = b"\x18" + delay.to_bytes(4, "big")
    body = b"\x00\x04MQTT\x05" + bytes([0x02 | 0x04]) + (60).to_bytes(2, "big") + b"\x00"
    body += len(cid).to_bytes(2, "big") + cid + bytes([len(will_props)]) + will_props
    body += len(t).to_bytes(2, "big") + t + len(message).to_bytes(2, "big") + message
    return bytes([0x10, len(body)]) + body


def test_wills_published_at_shutdown():
    """SIGTERM ends every session: the wills (a delayed one too) reach subscribers still connected,
    before the broker closes their connections."""
    from conftest import Broker
    b = Broker()
    base = unique("bye")
    watcher = Raw(b)
    cid = unique("watch").encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    watcher.send(bytes([0x10, len(body)]) + body)
    assert watcher.read(4) == b"\x20\x02\x00\x00"
    f = f"{base}/#".encode()
    sub = b"\x00\x01" + len(f).to_bytes(2, "big") + f + b"\x00"
    watcher.send(bytes([0x82, len(sub)]) + sub)
    assert watcher.read(5) == b"\x90\x03\x00\x01\x00"
    held = []
    for i in range(4):  # on both shards
        r = Raw(b)
        r.send(connect_with_will(unique("w"), f"{base}/w{i}", f"will-{i}".encode()))
        assert r.read(4) == b"\x20\x02\x00\x00"
        held.append(r)
    r = Raw(b)
    r.send(connect_v5_with_will_delay(unique("d"), f"{base}/delayed", b"delayed", 3600))
    first, _ = r.read_packet()
    assert first == 0x20
    held.append(r)
    b.stop()
    payloads = set()
    while True:
        try:
            first, packet = watcher.read_packet(timeout=5)
        except (AssertionError, OSError):
            break  # the broker closed the connection
        assert first >> 4 == 3, first
        n = int.from_bytes(packet[:2], "big")
        payloads.add(packet[2 + n:])
    assert payloads == {b"will-0", b"will-1", b"will-2", b"will-3", b"delayed"}
    for r in held:
        r.close()
