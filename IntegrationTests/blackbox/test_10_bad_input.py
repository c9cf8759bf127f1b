"""10-bad-input: malformed input on the live broker ends only the offending connection; the spec's
answer (SUBACK failure, v5 DISCONNECT reason) where there is one."""
import random

import pytest

from conftest import BROKER, Raw, connect_packet, unique


def test_random_bytes_from_many_clients(broker, clients):
    good = clients()
    good.subscribe("bad/ok", 1)
    rng = random.Random(1234)
    for i in range(40):
        r = Raw(broker)
        if i % 2:
            r.send(connect_packet(unique("fz")))
            assert r.read(4) == b"\x20\x02\x00\x00"
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        r.send(junk)
        r.close()  # whatever the broker made of it, this client goes away
    pub = clients()
    pub.publish("bad/ok", b"alive", qos=1)
    assert good.receive(1) == [("bad/ok", b"alive", 1)]
    broker.assert_alive()


def test_truncated_frame_then_close(broker, clients):
    r = Raw(broker)
    r.send(connect_packet(unique("tr")))
    r.read(4)
    r.send(b"\x30\x20\x00\x03a/b")  # claims 32 bytes, sends 5
    r.close()
    c = clients()
    c.subscribe("tr/ok")
    c.publish("tr/ok", b"1")
    assert c.receive(1)[0][1] == b"1"


def test_publish_to_wildcard_topic_closes(broker):
    r = Raw(broker)
    r.send(connect_packet(unique("wc")))
    r.read(4)
    r.send(b"\x30\x05\x00\x03a/+")
    assert r.closed_by_server()


@pytest.mark.parametrize("bad", [b"a/#/b", b"a+/b", b"#x"])
def test_invalid_filter_closes_311(broker, bad):
    # 3.1.1 has no reason code for a malformed filter: a protocol violation closes the connection
    # (section 4.8), and nothing of the SUBSCRIBE is kept (the valid filter beside it is not subscribed).
    r = Raw(broker)
    r.send(connect_packet(unique("if")))
    assert r.read(4) == b"\x20\x02\x00\x00"
    body = b"\x00\x07" + b"\x00\x01x\x01" + len(bad).to_bytes(2, "big") + bad + b"\x01"
    r.send(bytes([0x82, len(body)]) + body)
    assert r.bytes_until_close() == b"", "no SUBACK: the connection is closed"


def test_invalid_unsubscribe_filter_closes_311(broker):
    r = Raw(broker)
    r.send(connect_packet(unique("iu")))
    assert r.read(4) == b"\x20\x02\x00\x00"
    f = b"a/#/b"
    body = b"\x00\x08" + len(f).to_bytes(2, "big") + f
    r.send(bytes([0xA2, len(body)]) + body)
    assert r.bytes_until_close() == b""


def test_invalid_filter_gets_suback_0x8f_v5(broker):
    if BROKER != "apus":
        pytest.skip("apus-only: mosquitto's answer differs")
    r = Raw(broker)
    r.send(connect_packet(unique("if5"), version=5))
    head = r.read(2)
    r.read(head[1])
    f = b"a/b#"
    body = b"\x00\x08\x00" + len(f).to_bytes(2, "big") + f + b"\x00"
    r.send(bytes([0x82, len(body)]) + body)
    first, body = r.read_packet()
    assert (first, body[:2], body[-1]) == (0x90, b"\x00\x08", 0x8F)  # properties (a Reason String) between
    r.close()


def test_v5_publish_to_wildcard_gets_disconnect_0x90(broker):
    if BROKER != "apus":
        pytest.skip("apus-only: mosquitto's answer differs")
    r = Raw(broker)
    r.send(connect_packet(unique("wc5"), version=5))
    head = r.read(2)
    r.read(head[1])
    r.send(b"\x30\x06\x00\x03a/#\x00")
    first, body = r.read_packet()
    assert (first, body[0]) == (0xE0, 0x90)
    assert r.closed_by_server()
