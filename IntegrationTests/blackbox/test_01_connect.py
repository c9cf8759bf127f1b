"""01-connect: CONNECT/CONNACK in every version, and what happens to clients that misbehave."""
import paho.mqtt.client as mqtt
import pytest

from conftest import BROKER, Client, Raw, connect_packet, unique, wait_until


@pytest.mark.parametrize("protocol", [mqtt.MQTTv31, mqtt.MQTTv311, mqtt.MQTTv5])
def test_paho_connects_in_every_version(broker, clients, protocol):
    c = clients(protocol=protocol)
    assert c.mqtt.is_connected()


def test_connack_bytes_for_311(broker):
    r = Raw(broker)
    r.send(connect_packet(unique("raw")))
    assert r.read(4) == b"\x20\x02\x00\x00"
    r.close()


def test_connack_for_31(broker):
    r = Raw(broker)
    r.send(connect_packet(unique("raw31")[:20], version=3))
    assert r.read(4) == b"\x20\x02\x00\x00"
    r.close()


def test_empty_client_id_without_clean_session_refused(broker):
    r = Raw(broker)
    r.send(connect_packet("", clean=False))
    assert r.read(4) == b"\x20\x02\x00\x02"
    assert r.closed_by_server()


def test_pingreq_gets_pingresp(broker):
    r = Raw(broker)
    r.send(connect_packet(unique("ping")))
    r.read(4)
    r.send(b"\xc0\x00")
    assert r.read(2) == b"\xd0\x00"
    r.close()


def test_publish_before_connect_closes(broker):
    r = Raw(broker)
    r.send(b"\x30\x05\x00\x01a" + b"hi")
    assert r.closed_by_server()


def test_second_connect_closes(broker):
    r = Raw(broker)
    r.send(connect_packet(unique("twice")))
    assert r.read(4) == b"\x20\x02\x00\x00"
    r.send(connect_packet(unique("twice")))
    assert r.closed_by_server()


def test_garbage_closes_only_that_client(broker, clients):
    sub = clients()
    sub.subscribe("garbage/ok", 1)
    bad = Raw(broker)
    bad.send(bytes(range(256)) * 4)
    assert bad.closed_by_server()
    pub = clients()
    pub.publish("garbage/ok", b"still here", qos=1)
    assert sub.receive(1) == [("garbage/ok", b"still here", 1)]


def test_oversized_remaining_length_closes(broker, clients):
    bad = Raw(broker)
    bad.send(connect_packet(unique("big")))
    bad.read(4)
    bad.send(b"\x30\xff\xff\xff\xff\x7f")
    assert bad.closed_by_server()
    # The broker still serves everyone else.
    c = clients()
    c.subscribe("big/ok")
    c.publish("big/ok", b"1")
    assert c.receive(1)[0][1] == b"1"


def test_max_packet_size_enforced(make_broker):
    b = make_broker("--max-packet-size", "1024")
    r = Raw(b)
    r.send(connect_packet(unique("mps"), version=5))
    assert r.read_packet()[0] == 0x20
    payload = b"x" * 2000
    body = b"\x00\x01a" + b"\x00" + payload
    length = len(body)
    r.send(bytes([0x30, (length & 0x7F) | 0x80, length >> 7]) + body)
    # v5: DISCONNECT with 0x95 (packet too large) before the close.
    first, body = r.read_packet()
    assert (first, body[0]) == (0xE0, 0x95)
    assert r.closed_by_server()


@pytest.mark.skipif(BROKER != "apus", reason="mosquitto does not send DISCONNECT before closing")
def test_v5_malformed_packet_gets_disconnect_reason(broker):
    r = Raw(broker)
    r.send(connect_packet(unique("v5bad"), version=5))
    connack = r.read(2)
    assert connack[0] == 0x20
    r.read(connack[1])
    r.send(b"\x36\x03\x00\x01a")  # PUBLISH with QoS 3
    first, body = r.read_packet()
    assert (first, body[0]) == (0xE0, 0x81)
    assert r.closed_by_server()


def test_connect_timeout(make_broker):
    b = make_broker("--connect-timeout", "1")
    r = Raw(b)
    assert r.closed_by_server(timeout=5)


def test_unsupported_protocol_level(broker):
    r = Raw(broker)
    body = b"\x00\x04MQTT\x07\x02\x00\x3c\x00\x01x"
    r.send(bytes([0x10, len(body)]) + body)
    assert r.read(4) == b"\x20\x02\x00\x01"
    assert r.closed_by_server()


def test_takeover_closes_previous_connection(broker):
    """A second CONNECT with the same client id, on whichever shard it lands, ends the first."""
    cid = unique("take")
    for _ in range(4):  # several rounds so that both shard combinations are likely exercised
        first = Raw(broker)
        first.send(connect_packet(cid))
        assert first.read(4) == b"\x20\x02\x00\x00"
        second = Raw(broker)
        second.send(connect_packet(cid))
        assert second.read(4) == b"\x20\x02\x00\x00"
        assert first.closed_by_server()
        second.send(b"\xc0\x00")
        assert second.read(2) == b"\xd0\x00"
        second.close()


def test_takeover_v5_gets_session_taken_over(broker):
    cid = unique("take5")
    first = Raw(broker)
    first.send(connect_packet(cid, version=5))
    head = first.read(2)
    first.read(head[1])
    second = Raw(broker)
    second.send(connect_packet(cid, version=5))
    assert second.read(2)[0] == 0x20
    if BROKER == "apus":
        kind, body = first.read_packet()
        assert (kind, body[0]) == (0xE0, 0x8E)
    assert first.closed_by_server()


def test_empty_client_id_with_clean_session_is_assigned(broker):
    r = Raw(broker)
    r.send(connect_packet(""))
    assert r.read(4) == b"\x20\x02\x00\x00"
    r.send(b"\xc0\x00")
    assert r.read(2) == b"\xd0\x00"
    r.close()


def test_v5_assigned_client_identifier(broker, clients):
    c = clients(protocol=mqtt.MQTTv5, client_id="")
    assert c.mqtt.is_connected()


def test_v5_clients_told_server_shutting_down():
    """On SIGTERM a v5 client gets DISCONNECT 0x8B before the connection closes; apus exits 0."""
    from conftest import Broker
    if BROKER != "apus":
        pytest.skip("apus-only: mosquitto closes without DISCONNECT")
    b = Broker()
    r = Raw(b)
    r.send(connect_packet(unique("bye"), version=5))
    head = r.read(2)
    r.read(head[1])
    b.stop()  # SIGTERM, asserts exit code 0
    first, body = r.read_packet()
    assert (first, body[0]) == (0xE0, 0x8B)
    assert r.closed_by_server()
