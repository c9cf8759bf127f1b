"""Bridges (mosquitto's `connection` blocks) with a real Mosquitto 2.0 as the remote broker, and
between two apus brokers: out, in and both directions with prefixes, QoS 0/1/2, the remote
restarting in the middle of a QoS 1 stream (nothing apus acknowledged is lost), no loop, the
state notifications."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import BROKER, TIMEOUT, Client, ConfiguredApus, free_port, unique, wait_until

pytestmark = pytest.mark.skipif(BROKER != "apus", reason="apus bridges")


class Mosquitto:
    """A real mosquitto on loopback, with persistence in a temporary directory."""

    def __init__(self):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="mosquitto-")
        os.chmod(self.dir, 0o777)  # mosquitto started as root runs as user mosquitto: it must write its database here
        with open(os.path.join(self.dir, "mosquitto.conf"), "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {self.dir}/\nmax_queued_messages 10000\n")
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "mosquitto.log"), "ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", os.path.join(self.dir, "mosquitto.conf")], stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self.listening, message="mosquitto to listen")

    def listening(self):
        import socket
        try:
            socket.create_connection((self.host, self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # mosquitto saves its database on SIGTERM
            self.proc.wait(timeout=10)
        self.log.close()


Apus = ConfiguredApus


def bridge_lines(name, remote, *topics, extra=()):
    return [f"connection {name}", f"address 127.0.0.1:{remote.port}", *[f"topic {t}" for t in topics],
            "restart_timeout 1 2", *extra]


def connected(apus, name):
    return f'apus_bridge_connected{{bridge="{name}"}} 1' in apus.metrics()


@pytest.fixture
def mosquitto():
    m = Mosquitto()
    yield m
    m.stop()
    shutil.rmtree(m.dir, ignore_errors=True)


@pytest.fixture
def made():
    clients = []
    procs = []

    def client(broker, **kwargs):
        c = Client(broker, **kwargs)
        clients.append(c)
        return c

    def apus(lines):
        a = Apus(lines)
        procs.append(a)
        return a

    yield client, apus
    for c in clients:
        try:
            c.close()
        except Exception:
            pass
    for a in procs:
        a.stop()


def test_out_and_in_with_prefixes_at_every_qos(mosquitto, made):
    client, apus = made
    a = apus(bridge_lines("cloud", mosquitto, "sensors/# out 2 site1/ cloud/site1/", 'commands/# in 2 "" fleet/site1/'))
    wait_until(lambda: connected(a, "cloud"), message="the bridge up")
    remote_sub = client(mosquitto)
    remote_sub.subscribe("cloud/#", 2)
    local_sub = client(a)
    local_sub.subscribe("commands/#", 2)
    local_pub, remote_pub = client(a), client(mosquitto)
    for qos in (0, 1, 2):
        local_pub.publish(f"site1/sensors/q{qos}", f"out{qos}".encode(), qos)
        assert remote_sub.receive(1) == [(f"cloud/site1/sensors/q{qos}", f"out{qos}".encode(), qos)]
        remote_pub.publish(f"fleet/site1/commands/q{qos}", f"in{qos}".encode(), qos)
        assert local_sub.receive(1) == [(f"commands/q{qos}", f"in{qos}".encode(), qos)]
    # What matches no line stays where it is.
    local_pub.publish("site2/sensors/x", b"stays", 1)
    remote_pub.publish("fleet/site2/commands/x", b"stays", 1)
    local_pub.publish("site1/sensors/last", b"sentinel", 1)
    assert remote_sub.receive(1) == [("cloud/site1/sensors/last", b"sentinel", 1)]
    remote_sub.assert_no_message()
    local_sub.assert_no_message()
    # The state notification, here and on the remote.
    state = client(mosquitto)
    state.subscribe("$SYS/broker/connection/cloud/state", 1)
    assert state.receive(1)[0][1] == b"1"
    here = client(a)
    here.subscribe("$SYS/broker/connection/cloud/state", 1)
    assert here.receive(1)[0][1] == b"1"


def test_both_directions_with_mosquitto_do_not_loop(mosquitto, made):
    client, apus = made
    a = apus(bridge_lines("m", mosquitto, "shared/# both 1"))  # 3.1.1 with try_private
    wait_until(lambda: connected(a, "m"), message="the bridge up")
    local_sub, remote_sub = client(a), client(mosquitto)
    local_sub.subscribe("shared/#", 1)
    remote_sub.subscribe("shared/#", 1)
    client(a).publish("shared/from-apus", b"a", 1)
    client(mosquitto).publish("shared/from-mosquitto", b"m", 1)
    got_local = sorted(p for _, p, _ in local_sub.receive(2))
    got_remote = sorted(p for _, p, _ in remote_sub.receive(2))
    assert got_local == [b"a", b"m"] and got_remote == [b"a", b"m"]
    # A loop would bring copies back: after a sentinel each way, nothing more.
    client(a).publish("shared/sentinel", b"s", 1)
    assert local_sub.receive(1)[0][1] == b"s"
    assert remote_sub.receive(1)[0][1] == b"s"
    local_sub.assert_no_message(within=0.5)
    remote_sub.assert_no_message(within=0.5)
    wait_until(lambda: 'apus_bridge_messages_total{bridge="m",direction="out"} 2' in a.metrics()
               and 'apus_bridge_messages_total{bridge="m",direction="in"} 1' in a.metrics(), message="the bridge's counts")


def test_the_remote_restarting_mid_stream_loses_nothing_acknowledged(mosquitto, made):
    client, apus = made
    a = apus(bridge_lines("cloud", mosquitto, "stream/# out 1"))
    wait_until(lambda: connected(a, "cloud"), message="the bridge up")
    received = set()

    def remote_subscriber():
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="remote-stream-sub", clean_session=False)
        c.on_message = lambda cl, u, m: received.add(m.payload)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("stream/#", 1)
        c.connect(mosquitto.host, mosquitto.port)
        c.loop_start()
        return c

    sub = remote_subscriber()
    pub = client(a)
    wait_until(lambda: (pub.publish("stream/probe", b"probe", 1), b"probe" in received)[1], message="the stream's route")
    total = 400
    for i in range(total):
        pub.publish(f"stream/{i % 7}", f"m{i}".encode(), 1)  # waits for apus's PUBACK
        if i == 120:
            sub.loop_stop()
            sub.disconnect()
            mosquitto.stop()  # the remote goes away mid-stream
            wait_until(lambda: not connected(a, "cloud"), message="the bridge down")
        if i == 260:
            mosquitto.start()
            sub = remote_subscriber()
    wait_until(lambda: connected(a, "cloud"), message="the bridge back")
    wait_until(lambda: all(f"m{i}".encode() in received for i in range(total)), timeout=30,
               message="every message apus acknowledged on the remote")
    sub.loop_stop()
    sub.disconnect()


def test_two_apus_brokers_bridged_both_ways_do_not_loop(made):
    client, apus = made
    b = apus([])
    a = apus(bridge_lines("to-b", b, "loop/# both 2", extra=["bridge_protocol_version mqttv50"]))
    wait_until(lambda: connected(a, "to-b"), message="the bridge up")
    sub_a, sub_b = client(a), client(b)
    sub_a.subscribe("loop/#", 2)
    sub_b.subscribe("loop/#", 2)
    pub_a, pub_b = client(a), client(b)
    for i in range(20):
        pub_a.publish("loop/a", f"a{i}".encode(), 2)
        pub_b.publish("loop/b", f"b{i}".encode(), 1)
    for sub in (sub_a, sub_b):
        got = sorted(p.decode() for _, p, _ in sub.receive(40))
        assert got == sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)])
    pub_a.publish("loop/end", b"end", 1)
    assert sub_b.receive(1)[0][1] == b"end"
    assert sub_a.receive(1)[0][1] == b"end"
    sub_a.assert_no_message(within=0.5)
    sub_b.assert_no_message(within=0.5)
    # 3.1.1 with try_private to an apus remote: it honours the bridge bit too.
    c = apus(bridge_lines("to-b-311", b, "old/# both 1"))
    wait_until(lambda: connected(c, "to-b-311"), message="the 3.1.1 bridge up")
    sub_c = client(c)
    sub_c.subscribe("old/#", 1)
    sub_b.subscribe("old/#", 1)
    client(b).publish("old/x", b"x", 1)
    assert sub_c.receive(1) == [("old/x", b"x", 1)]
    assert sub_b.receive(1) == [("old/x", b"x", 1)]
    client(c).publish("old/y", b"y", 1)
    assert sub_b.receive(1) == [("old/y", b"y", 1)]
    assert sub_c.receive(1) == [("old/y", b"y", 1)]
    sub_b.assert_no_message(within=0.5)
    sub_c.assert_no_message(within=0.5)


def test_a_remote_that_is_down_at_start_is_reached_later_and_the_queue_drains(mosquitto, made):
    client, apus = made
    # A persistent subscriber session on the remote, then the remote goes away.
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("late-sub"), clean_session=False)
    subscribed = []
    c.on_message = lambda cl, u, msg: got.append(msg.payload)
    c.on_subscribe = lambda cl, u, mid, rcs, p: subscribed.append(mid)
    c.connect(mosquitto.host, mosquitto.port)
    c.loop_start()
    c.subscribe("q/#", 1)
    wait_until(lambda: subscribed, message="the remote subscription")
    c.loop_stop()
    c.disconnect()
    mosquitto.stop()
    a = apus(bridge_lines("late", mosquitto, "q/# out 1"))
    pub = client(a)
    for i in range(30):
        pub.publish("q/x", f"{i}".encode(), 1)  # acknowledged: kept in the bridge's session
    wait_until(lambda: 'apus_bridge_connected{bridge="late"} 0' in a.metrics(), message="the bridge's state")
    wait_until(lambda: "bridge late" in a.log_text(), message="the failure logged")
    mosquitto.start()
    wait_until(lambda: connected(a, "late"), timeout=15, message="the bridge up")
    c.connect(mosquitto.host, mosquitto.port)
    c.loop_start()
    try:
        wait_until(lambda: len(got) >= 30, message="the queued messages")
        assert got[:30] == [f"{i}".encode() for i in range(30)]
    finally:
        c.loop_stop()
        c.disconnect()


def test_bridge_over_tls_to_mosquitto_with_a_client_certificate(made):
    from test_23_tls import CA

    client, apus = made
    root = tempfile.mkdtemp(prefix="bridge-tls-")
    os.chmod(root, 0o755)
    ca = CA(root)
    other = CA(root, "other-ca")
    server_crt, server_key = ca.issue("server", "localhost", san="DNS:localhost,IP:127.0.0.1")
    bridge_crt, bridge_key = ca.issue("edge", "edge")
    for path in (root, ca.dir, other.dir, server_key, server_crt, ca.cert):
        os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)  # mosquitto runs as user mosquitto
    m = Mosquitto.__new__(Mosquitto)
    m.host, m.port, m.dir = "127.0.0.1", free_port(), tempfile.mkdtemp(prefix="mosquitto-")
    os.chmod(m.dir, 0o777)
    with open(os.path.join(m.dir, "mosquitto.conf"), "w") as f:
        f.write(f"listener {m.port} 127.0.0.1\nallow_anonymous true\ncafile {ca.cert}\ncertfile {server_crt}\nkeyfile {server_key}\n"
                "require_certificate true\n")
    m.listening = lambda: Mosquitto.listening(m)
    m.start()
    try:
        good = apus(bridge_lines("secure", m, "tls/# out 1", extra=[f"bridge_cafile {ca.cert}", f"bridge_certfile {bridge_crt}",
                                                                    f"bridge_keyfile {bridge_key}"]))
        wait_until(lambda: connected(good, "secure"), message="the TLS bridge up")
        got = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("tls-sub"))
        sub.tls_set(ca_certs=ca.cert, certfile=bridge_crt, keyfile=bridge_key)
        sub.on_message = lambda cl, u, msg: got.append((msg.topic, msg.payload, msg.qos))
        subscribed = []
        sub.on_subscribe = lambda cl, u, mid, rcs, p: subscribed.append(mid)
        sub.connect("localhost", m.port)
        sub.subscribe("tls/#", 1)
        sub.loop_start()
        wait_until(lambda: subscribed, message="the remote subscriber")
        pub = client(good)
        for i in range(50):
            pub.publish(f"tls/{i}", f"{i}".encode(), 1)
        wait_until(lambda: len(got) >= 50, message="50 messages over the TLS bridge")
        assert sorted(int(p) for _, p, _ in got) == list(range(50))
        sub.loop_stop()
        sub.disconnect()
        # A bridge trusting another CA never connects: the handshake fails and is logged.
        wrong = apus(bridge_lines("wrong-ca", m, "tls/# out 1", extra=[f"bridge_cafile {other.cert}", f"bridge_certfile {bridge_crt}",
                                                                       f"bridge_keyfile {bridge_key}"]))
        wait_until(lambda: "TLS handshake failed" in wrong.log_text(), message="the refused handshake logged")
        assert not connected(wrong, "wrong-ca")
    finally:
        m.stop()
