"""22-import-mosquitto: a real Mosquitto 2.0 with `persistence true` is left with retained
messages (v5 properties, message expiry), offline persistent sessions (3.1.1 and v5, with
subscription options and identifiers) holding queued QoS 1/2 messages, a QoS 1 message in flight
(sent, not acknowledged) and an inbound QoS 2 message waiting for PUBREL; SIGTERM makes it save.
`apus --import-mosquitto` reads its mosquitto.db into an empty store and verifies what it wrote;
Apus started on that store gives real clients all of it back."""
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from conftest import APUS_BIN, BROKER, TIMEOUT, Broker, Client, Raw, connect_packet, free_port, wait_until

pytestmark = pytest.mark.skipif(BROKER != "apus" or shutil.which("mosquitto") is None, reason="apus import; needs mosquitto")


class Mosquitto:
    def __init__(self, directory):
        self.host, self.port = "127.0.0.1", free_port()
        os.chmod(directory, 0o777)  # mosquitto drops to its own user
        conf = os.path.join(directory, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {directory}/\n")
        self.log = tempfile.NamedTemporaryFile(prefix="mosquitto-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self.accepts, message="mosquitto listening")

    def accepts(self):
        import socket
        try:
            socket.create_connection((self.host, self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


def v5_session(host, port, client_id, topic, qos, identifier):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect(host, port, clean_start=False, properties=props)
    c.loop_start()
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = identifier
    c.subscribe(topic, qos, properties=sp)
    assert done.wait(TIMEOUT)
    c.disconnect()
    c.loop_stop()


def read_publish(r):
    first, body = r.read_packet()
    assert first & 0xF0 == 0x30, (first, body)
    n = int.from_bytes(body[:2], "big")
    return {"topic": body[2:2 + n].decode(), "dup": bool(first & 0x08), "qos": (first >> 1) & 3,
            "id": int.from_bytes(body[2 + n:4 + n], "big") if first & 0x06 else 0, "payload": body[4 + n:]}


def test_a_database_mosquitto_wrote_is_imported_and_served(tmp_path):
    # Mosquitto drops to its own user: its directory must be reachable by it (pytest's are not).
    mdir = tempfile.mkdtemp(prefix="apus-import-")
    try:
        run_import(tmp_path, mdir)
    finally:
        shutil.rmtree(mdir, ignore_errors=True)


def run_import(tmp_path, mdir):
    m = Mosquitto(mdir)
    try:
        # Retained: plain, with v5 properties, with an expiry.
        subprocess.run(["mosquitto_pub", "-p", str(m.port), "-t", "imp/r/plain", "-m", "plain", "-r", "-q", "1"], check=True)
        subprocess.run(["mosquitto_pub", "-p", str(m.port), "-V", "5", "-t", "imp/r/props", "-m", "props", "-r", "-q", "1",
                        "-D", "publish", "user-property", "k", "v", "-D", "publish", "message-expiry-interval", "3000"], check=True)
        # A 3.1.1 session (QoS 1, "imp/a/#") and a v5 one (QoS 2, identifier 42, "imp/b/+").
        old = Client(m, client_id="imp-311", clean=False)
        old.subscribe("imp/a/#", 1)
        old.close()
        v5_session(m.host, m.port, "imp-v5", "imp/b/+", 2, 42)
        # A 3.1.1 session that received a QoS 1 message and did not acknowledge it.
        r = Raw(m)
        r.send(connect_packet("imp-inflight", clean=False))
        assert r.read_packet()[0] == 0x20
        r.send(bytes([0x82, 2 + 2 + 7 + 1, 0, 1, 0, 7]) + b"imp/f/x" + b"\x01")
        assert r.read_packet()[0] == 0x90
        pub = Client(m)
        pub.publish("imp/f/x", b"in flight", qos=1)
        inflight = read_publish(r)
        r.close()
        for i in range(3):
            pub.publish(f"imp/a/{i}", f"a{i}".encode(), qos=1)
        pub.publish("imp/b/1", b"b1", qos=2)
        pub.close()
        # An inbound QoS 2 PUBLISH, PUBREC received, PUBREL never sent (Mosquitto holds the message).
        q2 = Raw(m)
        q2.send(connect_packet("imp-q2pub", clean=False))
        assert q2.read_packet()[0] == 0x20
        t = b"imp/a/held"
        q2.send(bytes([0x34, 2 + len(t) + 2 + 4]) + len(t).to_bytes(2, "big") + t + b"\x00\x09" + b"held")
        assert q2.read_packet() == (0x50, b"\x00\x09")
        q2.close()
        time.sleep(0.3)
    finally:
        m.stop()
    db = os.path.join(mdir, "mosquitto.db")
    assert os.path.exists(db), open(m.log.name).read()

    store = tmp_path / "apus"
    out = subprocess.run([APUS_BIN, "--import-mosquitto", db, "--set", f"persistence_location={store}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "retained messages      2" in out.stdout, out.stdout
    assert "persistent sessions    4 (3 subscriptions, 6 queued or in-flight messages, 1 QoS 2 ids awaiting PUBREL)" in out.stdout, out.stdout
    assert "queued for matching sessions: 1" in out.stdout, out.stdout
    assert "verified: the store holds what the file holds" in out.stdout, out.stdout
    # A second import into the same store is refused (it holds one now).
    again = subprocess.run([APUS_BIN, "--import-mosquitto", db, "--set", f"persistence_location={store}"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "holds a store already" in again.stderr, again.stderr

    b = Broker(("--set", "persistence=true", "--set", f"persistence_location={store}"))
    try:
        got = {}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="reader", protocol=mqtt.MQTTv5)
        c.on_message = lambda cl, u, msg: got.__setitem__(msg.topic, msg)
        c.connect(b.host, b.port)
        c.loop_start()
        c.subscribe("imp/r/#", 1)
        wait_until(lambda: len(got) == 2, message="the two imported retained messages")
        c.disconnect()
        c.loop_stop()
        assert got["imp/r/plain"].payload == b"plain" and got["imp/r/plain"].retain
        assert got["imp/r/props"].properties.UserProperty == [("k", "v")]
        assert 2900 <= got["imp/r/props"].properties.MessageExpiryInterval <= 3000

        # The 3.1.1 session: session present, its queue in order, then the held QoS 2 message.
        r = Raw(b)
        r.send(connect_packet("imp-311", clean=False))
        assert r.read_packet() == (0x20, b"\x01\x00"), "session present"
        queued = [read_publish(r) for _ in range(4)]
        assert [(q["topic"], q["payload"]) for q in queued] == [("imp/a/0", b"a0"), ("imp/a/1", b"a1"), ("imp/a/2", b"a2"),
                                                               ("imp/a/held", b"held")]
        for q in queued:
            r.send(bytes([0x40, 2]) + q["id"].to_bytes(2, "big"))
        # Its subscription came along: a new message reaches it.
        sub_check = Client(b)
        sub_check.publish("imp/a/new", b"new", qos=1)
        assert read_publish(r)["topic"] == "imp/a/new"
        r.close()

        # The in-flight message comes again with DUP and its packet id.
        f = Raw(b)
        f.send(connect_packet("imp-inflight", clean=False))
        assert f.read_packet() == (0x20, b"\x01\x00")
        again = read_publish(f)
        assert (again["topic"], again["payload"], again["dup"], again["id"]) == ("imp/f/x", b"in flight", True, inflight["id"])
        f.close()

        # The v5 session: QoS 2, with its subscription identifier.
        msgs = []
        v = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="imp-v5", protocol=mqtt.MQTTv5)
        v.on_message = lambda cl, u, msg: msgs.append(msg)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        v.connect(b.host, b.port, clean_start=False, properties=props)
        v.loop_start()
        wait_until(lambda: msgs, message="the v5 session's queued message")
        assert msgs[0].topic == "imp/b/1" and msgs[0].qos == 2 and msgs[0].payload == b"b1"
        assert msgs[0].properties.SubscriptionIdentifier == [42]
        v.disconnect()
        v.loop_stop()

        # The QoS 2 publisher's PUBREL is answered with PUBCOMP (the id came along).
        q = Raw(b)
        q.send(connect_packet("imp-q2pub", clean=False))
        assert q.read_packet() == (0x20, b"\x01\x00")
        q.send(b"\x62\x02\x00\x09")
        assert q.read_packet() == (0x70, b"\x00\x09")
        q.close()
        sub_check.close()
    finally:
        b.stop()
