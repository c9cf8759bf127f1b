"""05-session: persistent sessions (clean session 0 / v5 session expiry): subscriptions and QoS 1
messages survive a disconnect, session present is right, a clean connect discards, and the
session follows the client to whichever shard its next connection lands on."""
import subprocess

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from conftest import TIMEOUT, Raw, connect_packet, unique


class Session:
    """A paho client with an explicit session, reconnectable with the same client id."""

    def __init__(self, broker, client_id, protocol=mqtt.MQTTv311):
        self.broker = broker
        self.client_id = client_id
        self.protocol = protocol
        self.messages = []
        self.present = None

    def connect(self, clean, expiry=None):
        import queue
        self.acks = queue.Queue()
        if self.protocol == mqtt.MQTTv5:
            self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol)
        else:
            self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol,
                                 clean_session=clean)
        self.inbox = queue.Queue()
        self.properties = []  # v5 properties of each received message, in order

        def on_message(c, u, m):
            self.properties.append(m.properties)
            self.inbox.put((m.topic, m.payload, m.qos))
        self.c.on_message = on_message
        self.c.on_connect = lambda c, u, flags, rc, props: self.acks.put((flags.session_present, rc))
        subscribed = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, rcs, props: subscribed.put(mid)
        self.subscribed = subscribed
        kwargs = {}
        if self.protocol == mqtt.MQTTv5:
            kwargs["clean_start"] = clean
            if expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = expiry
                kwargs["properties"] = props
        self.c.connect(self.broker.host, self.broker.port, 60, **kwargs)
        self.c.loop_start()
        self.present, rc = self.acks.get(timeout=TIMEOUT)
        assert not rc.is_failure
        return self.present

    def subscribe(self, topic, qos=1):
        _, mid = self.c.subscribe(topic, qos)
        assert self.subscribed.get(timeout=TIMEOUT) == mid

    def receive(self, n):
        return [self.inbox.get(timeout=TIMEOUT) for _ in range(n)]

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()


def publish_qos1(broker, topic, payloads):
    for p in payloads:
        subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-t", topic, "-m", p, "-q", "1"],
                       check=True, timeout=20)


def test_persistent_session_311_across_reconnects(broker):
    cid = unique("persist")
    topic = unique("pt") + "/x"
    s = Session(broker, cid)
    assert s.connect(clean=False) is False
    s.subscribe(topic.rsplit("/", 1)[0] + "/#", 1)
    s.disconnect()
    # Several offline rounds: each reconnect lands on a shard of the kernel's choosing.
    for round_ in range(4):
        publish_qos1(broker, topic, [f"r{round_}-{k}" for k in range(3)])
        assert s.connect(clean=False) is True
        got = s.receive(3)
        assert [m[1] for m in got] == [f"r{round_}-{k}".encode() for k in range(3)]
        assert all(m[2] == 1 for m in got)
        s.disconnect()
    # A clean connect discards the session: nothing queued, session present 0.
    publish_qos1(broker, topic, ["lost"])
    assert s.connect(clean=True) is False
    publish_qos1(broker, topic, ["not-subscribed"])
    s.c.subscribe(topic, 1)
    assert s.subscribed.get(timeout=TIMEOUT)
    publish_qos1(broker, topic, ["fresh"])
    assert s.receive(1)[0][1] == b"fresh"
    s.disconnect()


def test_v5_session_expiry_keeps_session(broker):
    cid = unique("v5persist")
    topic = unique("v5t")
    s = Session(broker, cid, protocol=mqtt.MQTTv5)
    assert s.connect(clean=True, expiry=300) is False
    s.subscribe(topic, 1)
    s.disconnect()
    publish_qos1(broker, topic, ["while-away"])
    assert s.connect(clean=False, expiry=300) is True
    assert s.receive(1)[0][1] == b"while-away"
    s.disconnect()


def test_mosquitto_sub_persistent_session(broker):
    """mosquitto_sub -c -i ID: the CLI's own persistent-session mode gets queued messages."""
    cid = unique("msubc")
    topic = unique("mt")
    first = subprocess.run(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-c", "-i", cid, "-q", "1",
                            "-t", topic, "-W", "1"], capture_output=True, text=True, timeout=20)
    assert first.returncode in (0, 27)  # 27: timed out waiting, as asked (-W 1)
    publish_qos1(broker, topic, ["queued-1", "queued-2"])
    second = subprocess.run(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-c", "-i", cid, "-q", "1",
                             "-t", topic, "-C", "2", "-W", "10"], capture_output=True, text=True, timeout=20)
    assert second.stdout.split() == ["queued-1", "queued-2"]


def read_packet(r):
    """One whole packet from a raw connection: (first byte, body)."""
    head = r.read(2)
    length, shift = 0, 0
    b = head[1]
    while True:
        length |= (b & 0x7F) << shift
        if b & 0x80 == 0:
            break
        shift += 7
        b = r.read(1)[0]
    return head[0], r.read(length) if length else b""


def subscribe_raw(r, topic, qos):
    t = topic.encode()
    body = b"\x00\x01" + len(t).to_bytes(2, "big") + t + bytes([qos])
    r.send(bytes([0x82, len(body)]) + body)
    first, body = read_packet(r)
    assert first == 0x90 and body[-1] == qos


def test_unacknowledged_message_resent_with_dup(broker, clients):
    cid = unique("dupres")
    topic = unique("dupt")
    r = Raw(broker)
    r.send(connect_packet(cid, clean=False))
    assert r.read(4) == b"\x20\x02\x00\x00"
    subscribe_raw(r, topic, 1)
    pub = clients()
    pub.publish(topic, b"unacked", qos=1)
    first, body = read_packet(r)
    assert first & 0xF0 == 0x30 and first & 0x08 == 0  # PUBLISH, not DUP
    packet_id = body[2 + len(topic):4 + len(topic)]
    r.close()  # no PUBACK
    again = Raw(broker)
    again.send(connect_packet(cid, clean=False))
    assert again.read(4) == b"\x20\x02\x01\x00"  # session present
    first2, body2 = read_packet(again)
    assert first2 & 0x08, "re-sent with DUP"
    assert body2 == body and body2[2 + len(topic):4 + len(topic)] == packet_id
    again.send(b"\x40\x02" + packet_id)
    again.close()


def test_takeover_continues_the_session(broker, clients):
    cid = unique("takesess")
    topic = unique("tst")
    a = Raw(broker)
    a.send(connect_packet(cid, clean=False))
    assert a.read(4) == b"\x20\x02\x00\x00"
    subscribe_raw(a, topic, 1)
    b = Raw(broker)
    b.send(connect_packet(cid, clean=False))
    assert b.read(4) == b"\x20\x02\x01\x00"  # the session came along
    assert a.closed_by_server()
    pub = clients()
    pub.publish(topic, b"to-b", qos=1)
    first, body = read_packet(b)
    assert first & 0xF0 == 0x30 and body.endswith(b"to-b")
    b.close()
