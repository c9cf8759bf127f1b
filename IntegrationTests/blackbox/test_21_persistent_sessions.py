"""21-persistent-sessions: with `persistence true`, persistent sessions (3.1.1 clean session 0, v5
Session Expiry) survive a SIGTERM restart and kill -9 with their subscriptions (options and
identifiers), queued messages, QoS 1 messages in flight (sent again with DUP and the same packet
id), QoS 2 deliveries past PUBREC (PUBREL again) and inbound QoS 2 ids awaiting PUBREL (no second
delivery); every QoS 1 message a publisher running open loop got PUBACKed before kill -9 reaches
the persistent subscribers afterwards, on this shard and the other; clean sessions write nothing."""
import signal
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from conftest import BROKER, TIMEOUT, Broker, Client, OpenLoopPublisher, Raw, connect_packet, free_port, unique, wait_until

pytestmark = pytest.mark.skipif(BROKER != "apus", reason="apus persistence settings")


def start(directory, *extra, shards=2):
    return Broker(("--set", "persistence=true", "--set", f"persistence_location={directory}", *extra), shards=shards)


def kill9(b):
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(timeout=5)


class V5:
    """A paho v5 client with a session that expires after an hour; `client_id` "" lets the broker
    assign one (it names the shard: apus-<shard>-...)."""

    def __init__(self, b, client_id, clean_start=False, subscription_id=None):
        self.messages = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.session_present = None
        self.assigned = None
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)

        def on_connect(_c, _u, flags, rc, props):
            self.session_present = flags.session_present
            self.assigned = getattr(props, "AssignedClientIdentifier", None)
            self.connected.set()

        def on_message(_c, _u, m):
            with self.lock:
                self.messages.append(m)
        self.c.on_connect = on_connect
        self.c.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        # An empty client id needs Clean Start; the session (expiry an hour) outlives the connection.
        self.c.connect(b.host, b.port, clean_start=clean_start or client_id == "", properties=props)
        self.c.loop_start()
        assert self.connected.wait(TIMEOUT), "CONNACK"
        self.client_id = self.assigned or client_id

    @property
    def shard(self):
        return int(self.client_id.split("-")[1])

    def subscribe(self, topic, qos, identifier=None):
        done = threading.Event()
        self.c.on_subscribe = lambda c, u, mid, rcs, props: done.set()
        props = None
        if identifier:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = identifier
        self.c.subscribe(topic, qos, properties=props)
        assert done.wait(TIMEOUT), "SUBACK"

    def payloads(self):
        with self.lock:
            return [m.payload for m in self.messages]

    def close(self, end_session=False):
        props = None
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self.c.disconnect(properties=props)
        self.c.loop_stop()

    def drop(self):
        """The connection goes away without DISCONNECT (the session stays as it was)."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:  # None once the broker's death closed it
            sock.close()


def test_sessions_with_subscriptions_and_queued_messages_survive_a_restart(tmp_path):
    b = start(tmp_path)
    old = Client(b, client_id=unique("s311"), clean=False)
    old.subscribe("ps/#", 1)
    v5 = V5(b, unique("s5"))
    v5.subscribe("ps/v5/#", 1, identifier=7)
    old.close()
    v5.close()
    pub = Client(b)
    for topic in ["ps/1", "ps/2", "ps/v5/3"]:
        pub.publish(topic, topic.encode(), qos=1)
    pub.close()
    b.stop()
    b = start(tmp_path)
    try:
        back = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=old.client_id, clean_session=False)
        got, present = [], threading.Event()
        back.on_connect = lambda c, u, flags, rc, props: (present.set() if flags.session_present else None)
        back.on_message = lambda c, u, m: got.append((m.topic, m.qos))
        back.connect(b.host, b.port)
        back.loop_start()
        assert present.wait(TIMEOUT), "session present after the restart"
        wait_until(lambda: len(got) >= 3, message="the 3 queued messages")
        assert got == [("ps/1", 1), ("ps/2", 1), ("ps/v5/3", 1)]
        v5b = V5(b, v5.client_id)
        assert v5b.session_present
        wait_until(lambda: len(v5b.messages) >= 1, message="the v5 session's queued message")
        assert v5b.messages[0].topic == "ps/v5/3"
        assert v5b.messages[0].properties.SubscriptionIdentifier == [7]
        # The subscriptions themselves came back: a new message reaches both.
        pub = Client(b)
        pub.publish("ps/v5/after", b"after", qos=1)
        wait_until(lambda: ("ps/v5/after", 1) in got, message="a new message on the restored 3.1.1 subscription")
        wait_until(lambda: len(v5b.messages) >= 2, message="a new message on the restored v5 subscription")
        assert v5b.messages[1].properties.SubscriptionIdentifier == [7]
        back.disconnect()
        back.loop_stop()
        v5b.close()
        pub.close()
    finally:
        b.stop()


def publish_packet(topic, payload, qos, packet_id, dup=False):
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + packet_id.to_bytes(2, "big") + payload
    return bytes([0x30 | (0x08 if dup else 0) | qos << 1, len(body)]) + body


def parse_publish(first, body):
    qos = (first >> 1) & 3
    n = int.from_bytes(body[:2], "big")
    return {"topic": body[2:2 + n].decode(), "qos": qos, "dup": bool(first & 0x08),
            "id": int.from_bytes(body[2 + n:4 + n], "big"), "payload": body[4 + n:]}


def raw_session(b, client_id):
    r = Raw(b)
    r.send(connect_packet(client_id, clean=False))
    first, body = r.read_packet()
    assert first == 0x20 and body[1] == 0, (first, body)
    return r, body[0] == 1


def test_in_flight_qos_1_and_qos_2_survive_kill_9(tmp_path):
    """A subscriber holds a QoS 1 PUBLISH unacknowledged and a QoS 2 one past PUBREC (PUBREL read,
    no PUBCOMP). After kill -9 and a restart it gets the PUBLISH again with DUP and the same
    packet id, and PUBREL again, in that order [MQTT-4.4.0-1]."""
    b = start(tmp_path)
    cid = unique("inflight")
    r, _ = raw_session(b, cid)
    topic = b"inf/#"
    r.send(bytes([0x82, 2 + 2 + len(topic) + 1, 0, 1, 0, len(topic)]) + topic + b"\x02")
    assert r.read_packet()[0] == 0x90
    pub = Client(b)
    pub.publish("inf/one", b"one", qos=1)   # PUBACKed: the subscriber's copy is stored
    pub.publish("inf/two", b"two", qos=2)   # PUBCOMP from the broker
    one = parse_publish(*r.read_packet())
    two = parse_publish(*r.read_packet())
    assert (one["topic"], one["qos"], one["dup"]) == ("inf/one", 1, False)
    assert (two["topic"], two["qos"]) == ("inf/two", 2)
    r.send(bytes([0x50, 2]) + two["id"].to_bytes(2, "big"))  # PUBREC
    assert r.read_packet() == (0x62, two["id"].to_bytes(2, "big")), "PUBREL (sent once stored)"
    kill9(b)
    pub.close()
    b = start(tmp_path)
    try:
        r, present = raw_session(b, cid)
        assert present
        again = parse_publish(*r.read_packet())
        assert again == dict(one, dup=True), again
        assert r.read_packet() == (0x62, two["id"].to_bytes(2, "big")), "PUBREL again"
        r.send(bytes([0x40, 2]) + one["id"].to_bytes(2, "big"))
        r.send(bytes([0x70, 2]) + two["id"].to_bytes(2, "big"))
        pub = Client(b)
        pub.publish("inf/end", b"end", qos=1)
        end = parse_publish(*r.read_packet())
        assert end["topic"] == "inf/end" and not end["dup"], end
        pub.close()
        r.close()
    finally:
        b.stop()


def test_an_inbound_qos_2_id_awaiting_pubrel_survives_kill_9(tmp_path):
    """The broker sent PUBREC for a QoS 2 PUBLISH and was killed before PUBREL: after the restart
    a resent PUBLISH with that id is not delivered a second time, and PUBREL gets PUBCOMP."""
    b = start(tmp_path)
    sub = Client(b)
    sub.subscribe("in/#", 2)
    cid = unique("q2pub")
    r, _ = raw_session(b, cid)
    r.send(publish_packet("in/x", b"once", 2, 5))
    assert r.read_packet() == (0x50, b"\x00\x05"), "PUBREC (sent once the id is stored)"
    assert sub.receive(1)[0][:2] == ("in/x", b"once")
    kill9(b)
    sub.close()
    b = start(tmp_path)
    try:
        sub = Client(b)
        sub.subscribe("in/#", 2)
        r, present = raw_session(b, cid)
        assert present
        r.send(publish_packet("in/x", b"once", 2, 5, dup=True))  # as a client that missed PUBREC
        assert r.read_packet() == (0x50, b"\x00\x05")
        r.send(b"\x62\x02\x00\x05")  # PUBREL
        assert r.read_packet() == (0x70, b"\x00\x05"), "PUBCOMP"
        r.send(publish_packet("in/after", b"after", 2, 6))
        assert r.read_packet() == (0x50, b"\x00\x06")
        r.send(b"\x62\x02\x00\x06")
        assert r.read_packet() == (0x70, b"\x00\x06")
        got = sub.receive(1)
        assert got[0][:2] == ("in/after", b"after"), f"the resent PUBLISH was delivered again: {got}"
        sub.assert_no_message()
        sub.close()
        r.close()
    finally:
        b.stop()


def subscribers_on_both_shards(b, topic):
    """Two persistent v5 subscribers of `topic`, one on each shard (assigned ids say where)."""
    found = {}
    for _ in range(40):
        s = V5(b, "")
        if s.shard in found:
            s.close(end_session=True)
            continue
        s.subscribe(topic, 1)
        found[s.shard] = s
        if len(found) == 2:
            return [found[0], found[1]]
    raise AssertionError("no subscriber landed on the second shard")


@pytest.mark.parametrize("write_delay_ms", [0, 200])
def test_every_acknowledged_message_reaches_the_persistent_subscribers_after_kill_9_under_load(tmp_path, monkeypatch, write_delay_ms):
    """A QoS 1 publisher runs open loop (64 in flight) while two persistent subscribers (one on
    each shard) receive; kill -9 cuts it off. After the restart each subscriber, coming back,
    gets every message the publisher had PUBACKed (duplicates allowed, none missing). With a slow
    disk (the log's writes wait 200 ms: fault injection) a broker that acknowledged before its
    subscribers' records were written would lose about 200 ms of PUBACKed messages here."""
    if write_delay_ms:
        monkeypatch.setenv("APUS_FAULT_STORE_WRITE_DELAY_MS", str(write_delay_ms))
    b = start(tmp_path)
    monkeypatch.delenv("APUS_FAULT_STORE_WRITE_DELAY_MS", raising=False)
    subs = subscribers_on_both_shards(b, "load/q1")
    pub = OpenLoopPublisher(b, lambda n: ("load/q1", str(n).encode(), False))
    pub.wait_for(1000 if write_delay_ms else 3000)
    kill9(b)
    acked_now = set(pub.cut_off())
    before = []
    for s in subs:
        s.drop()
        before.append({int(p) for p in s.payloads()})
    b = start(tmp_path)
    try:
        for s, seen in zip(subs, before):
            back = V5(b, s.client_id)
            assert back.session_present
            got = lambda: seen | {int(p) for p in back.payloads()}
            try:
                wait_until(lambda: acked_now <= got(), timeout=30, message="every PUBACKed message")
            except AssertionError:
                missing = sorted(acked_now - got())
                raise AssertionError(f"shard {s.shard}'s subscriber misses {len(missing)} of {len(acked_now)} PUBACKed messages, e.g. {missing[:5]}")
            back.close()
    finally:
        b.stop()


def test_clean_sessions_write_nothing(tmp_path):
    http = free_port()
    b = start(tmp_path, "--set", f"http_listener={http} 127.0.0.1")

    def written():
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=TIMEOUT) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("apus_store_bytes_written_total"):
                    return int(line.rsplit(" ", 1)[1])
    try:
        start_bytes = written()
        subs = [Client(b) for _ in range(4)]
        for s in subs:
            s.subscribe("clean/#", 2)
        pub = Client(b)
        for i in range(200):
            pub.publish(f"clean/{i}", b"x", qos=1 + i % 2)
        for s in subs:
            s.receive(200)
        assert written() == start_bytes, "clean sessions and non-retained messages are not stored"
        # A persistent session is.
        p = Client(b, client_id=unique("persistent"), clean=False)
        p.subscribe("clean/#", 1)
        wait_until(lambda: written() > start_bytes, message="the persistent session's records")
        for c in subs + [pub, p]:
            c.close()
    finally:
        b.stop()
