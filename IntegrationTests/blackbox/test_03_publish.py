"""03-publish: QoS 2 end to end in both directions, exactly once even when the publisher resends
the PUBLISH before PUBREL; delivery QoS is min(publish QoS, granted QoS)."""
import paho.mqtt.client as mqtt
import pytest

from conftest import Raw, connect_packet, unique


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
