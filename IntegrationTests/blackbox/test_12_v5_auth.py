"""12-v5 (2): enhanced authentication (AUTH flow, SCRAM-SHA-256/512, re-authentication, unknown
method), password_file / allow_anonymous with mosquitto_passwd files, Reason Strings under Request
Problem Information, Response Information, and broker-assigned (outbound) topic aliases, with paho's
v5 client and raw sockets against the real apus process."""
import base64
import hashlib
import hmac
import os
import queue
import socket
import subprocess
import tempfile

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import APUS_BIN, BROKER, TIMEOUT, Client, unique, wait_until

pytestmark = pytest.mark.skipif(BROKER != "apus", reason="apus configuration and v5 features mosquitto lacks")


from mqtt5_raw import Conn, auth_packet, connect_v5, string, varint


class Scram:
    """The client side of RFC 5802."""

    def __init__(self, hash_name, user, password):
        self.hash_name, self.user, self.password = hash_name, user, password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.bare = f"n={user},r={self.nonce}"

    def first(self):
        return ("n,," + self.bare).encode()

    def final(self, server_first):
        text = server_first.decode()
        attrs = dict(field.split("=", 1) for field in text.split(","))
        assert attrs["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac(self.hash_name, self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{self.bare},{text},{without_proof}".encode()
        client_key = hmac.new(salted, b"Client Key", self.hash_name).digest()
        signature = hmac.new(hashlib.new(self.hash_name, client_key).digest(), auth_message, self.hash_name).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", self.hash_name).digest()
        self.expected = b"v=" + base64.b64encode(hmac.new(server_key, auth_message, self.hash_name).digest())
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """An apus with a password file made by mosquitto_passwd (plus a SCRAM-SHA-256 line made by apus)
    and allow_anonymous false."""
    from conftest import Broker
    d = tmp_path_factory.mktemp("auth")
    pw = d / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "alice", "secret"], check=True)
    subprocess.run(["mosquitto_passwd", "-H", "sha512", "-b", str(pw), "bob", "hunter2"], check=True)
    line = subprocess.run([APUS_BIN, "--scram-sha-256-entry", "carol"], input="pencil\n", capture_output=True,
                          text=True, check=True).stdout
    with open(pw, "a") as f:
        f.write(line)
    conf = d / "apus.conf"
    conf.write_text(f"password_file {pw}\nallow_anonymous false\n")
    b = Broker(["--config", str(conf)])
    yield b
    b.stop()


def scram_login(broker, method, hash_name, user, password, client_id=None):
    c = Conn(broker)
    scram = Scram(hash_name, user, password)
    c.send(connect_v5(client_id or unique("scram"), method, scram.first()))
    kind, reason, props = c.packet()
    assert (kind, reason) == (0xF0, 0x18), (kind, reason, props)
    assert props[0x15] == method.encode()
    c.send(auth_packet(0x18, method, scram.final(props[0x16])))
    return c, scram, c.packet()


@pytest.mark.parametrize("method,hash_name,user,password", [
    ("SCRAM-SHA-256", "sha256", "carol", "pencil"),
    ("SCRAM-SHA-512", "sha512", "alice", "secret"),  # over mosquitto_passwd's $7$ entry
])
def test_scram_success_then_reauthentication(secured, method, hash_name, user, password):
    c, scram, (kind, reason, props) = scram_login(secured, method, hash_name, user, password)
    assert (kind, reason) == (0x20, 0x00), (kind, reason, props)
    assert props[0x15] == method.encode() and props[0x16] == scram.expected, "server proves it knows the verifier"
    # Re-authentication (AUTH 0x19) on the live connection, then AUTH 0x00 with the server's proof.
    again = Scram(hash_name, user, password)
    c.send(auth_packet(0x19, method, again.first()))
    kind, reason, props = c.packet()
    assert (kind, reason) == (0xF0, 0x18)
    c.send(auth_packet(0x18, method, again.final(props[0x16])))
    kind, reason, props = c.packet()
    assert (kind, reason) == (0xF0, 0x00) and props[0x16] == again.expected
    c.send(b"\xc0\x00")  # PINGREQ: the session is still served
    assert c.read_exact(2) == b"\xd0\x00"
    c.close()


def test_scram_wrong_password_and_unknown_user(secured):
    for user, password in (("carol", "wrong"), ("nobody", "pencil")):
        c, _, (kind, reason, props) = scram_login(secured, "SCRAM-SHA-256", "sha256", user, password)
        assert (kind, reason) == (0x20, 0x86), (user, kind, reason)
        assert c.closed()


def test_unknown_authentication_method(secured):
    c = Conn(secured)
    c.send(connect_v5(unique("m"), "KERBEROS", b"x"))
    kind, reason, props = c.packet()
    assert (kind, reason) == (0x20, 0x8C)
    assert b"KERBEROS" in props[0x1F]
    assert c.closed()


def test_non_auth_packet_during_authentication_closes(secured):
    c = Conn(secured)
    c.send(connect_v5(unique("m"), "SCRAM-SHA-256", Scram("sha256", "carol", "pencil").first()))
    assert c.packet()[1] == 0x18
    c.send(b"\xc0\x00")  # PINGREQ before CONNACK
    assert c.closed()


def connack_of(broker, protocol, username=None, password=None):
    result = queue.Queue()
    kwargs = {} if protocol == mqtt.MQTTv5 else {"clean_session": True}
    m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("pw"), protocol=protocol, **kwargs)
    if username is not None:
        m.username_pw_set(username, password)
    m.on_connect = lambda c, u, flags, rc, props: result.put(rc)
    m.connect(broker.host, broker.port)
    m.loop_start()
    try:
        return result.get(timeout=TIMEOUT).value
    finally:
        m.loop_stop()
        m.disconnect()


def test_password_file_with_mosquitto_clients(secured):
    topic = unique("pw")
    sub = subprocess.Popen(["mosquitto_sub", "-h", secured.host, "-p", str(secured.port), "-u", "alice", "-P", "secret",
                            "-t", topic, "-C", "1", "-W", "10"], stdout=subprocess.PIPE, text=True)
    try:
        def published():
            r = subprocess.run(["mosquitto_pub", "-h", secured.host, "-p", str(secured.port), "-u", "bob", "-P", "hunter2",
                                "-t", topic, "-m", "hello", "-q", "1"], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            return sub.poll() is not None
        wait_until(published, message="mosquitto_sub to get the message")
        assert sub.communicate(timeout=TIMEOUT)[0] == "hello\n"
    finally:
        sub.kill()
    bad = subprocess.run(["mosquitto_pub", "-h", secured.host, "-p", str(secured.port), "-u", "bob", "-P", "nope",
                          "-t", topic, "-m", "x"], capture_output=True, text=True)
    assert bad.returncode != 0 and "bad user name or password" in bad.stderr.lower(), bad.stderr


def connack_311(broker, username=None, password=None):
    """The raw 3.1.1 CONNACK bytes (paho reports 3.1.1 return codes as v5 reason codes)."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    body = string("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + string(unique("r"))
    if username:
        body += string(username)
    if password:
        body += string(password)
    c = Conn(broker)
    c.send(b"\x10" + varint(len(body)) + body)
    try:
        return c.read_exact(4)
    finally:
        c.close()


def test_password_refusal_codes(secured):
    assert connack_311(secured, "alice", "secret") == b"\x20\x02\x00\x00"
    assert connack_311(secured, "alice", "wrong") == b"\x20\x02\x00\x04"
    assert connack_311(secured, "nobody", "secret") == b"\x20\x02\x00\x04"
    assert connack_311(secured) == b"\x20\x02\x00\x05"
    assert connack_of(secured, mqtt.MQTTv5, "bob", "hunter2") == 0
    assert connack_of(secured, mqtt.MQTTv5, "bob", "wrong") == 0x86
    assert connack_of(secured, mqtt.MQTTv5) == 0x87


# ---- Reason Strings, Response Information, outbound topic aliases (default broker) ----

def v5_client(broker, **connect_props):
    c = Client.__new__(Client)
    c.client_id = unique("v5")
    c.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=c.client_id, protocol=mqtt.MQTTv5)
    c.messages = queue.Queue()
    c.connack = queue.Queue()
    c.subacks = {}
    c.received = queue.Queue()
    c.events = queue.Queue()
    c.mqtt.on_message = lambda cl, u, m: c.received.put((m.topic, m.payload, getattr(m.properties, "TopicAlias", None)))
    c.mqtt.on_connect = lambda cl, u, flags, rc, props: c.connack.put((rc, props))
    c.mqtt.on_subscribe = lambda cl, u, mid, rcs, props: c.subacks.__setitem__(mid, rcs)
    c.mqtt.on_publish = lambda cl, u, mid, rc, props: c.events.put(("puback", mid, rc.value, getattr(props, "ReasonString", None)))
    c.mqtt.on_disconnect = lambda cl, u, flags, rc, props: c.events.put(("disconnect", rc.value, getattr(props, "ReasonString", None)))
    props = Properties(PacketTypes.CONNECT)
    for name, value in connect_props.items():
        setattr(props, name, value)
    c.mqtt.connect(broker.host, broker.port, properties=props if connect_props else None)
    c.mqtt.loop_start()
    rc, c.connack_props = c.connack.get(timeout=TIMEOUT)
    assert not rc.is_failure
    return c


def test_response_information(broker):
    asks = v5_client(broker, RequestResponseInformation=1)
    assert asks.connack_props.ResponseInformation == f"response/{asks.client_id}"
    quiet = v5_client(broker)
    assert not hasattr(quiet.connack_props, "ResponseInformation")
    for c in (asks, quiet):
        c.close()


def test_outbound_topic_aliases(broker):
    topic = unique("oa") + "/some/long/topic/name"
    sub = v5_client(broker, TopicAliasMaximum=4)
    sub.subscribe(topic, 1)
    pub = v5_client(broker)
    for payload in (b"1", b"2", b"3"):
        pub.mqtt.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT)
    got = [sub.received.get(timeout=TIMEOUT) for _ in range(3)]
    # The first delivery sets the alias with the topic; later ones carry the alias alone (paho
    # reports the empty topic it received).
    assert got == [(topic, b"1", 1), ("", b"2", 1), ("", b"3", 1)]
    plain = v5_client(broker)  # sent no Topic Alias Maximum: never gets an alias
    plain.subscribe(topic, 0)
    pub.mqtt.publish(topic, b"4", qos=1).wait_for_publish(TIMEOUT)
    assert plain.received.get(timeout=TIMEOUT) == (topic, b"4", None)
    for c in (sub, pub, plain):
        c.close()


@pytest.mark.parametrize("request_problem,expected", [(None, "payload larger than message_size_limit"), (0, None)])
def test_reason_string_follows_request_problem_information(make_broker, request_problem, expected):
    b = make_broker("--message-size-limit", "10")
    c = v5_client(b) if request_problem is None else v5_client(b, RequestProblemInformation=request_problem)
    info = c.mqtt.publish(unique("rs"), b"x" * 100, qos=1)
    event = c.events.get(timeout=TIMEOUT)
    assert event == ("puback", info.mid, 0x97, expected)
    c.close()


def test_server_disconnect_carries_reason_string(broker):
    c = v5_client(broker, RequestProblemInformation=0)  # DISCONNECT may still carry one
    props = Properties(PacketTypes.PUBLISH)
    props.TopicAlias = 50  # above the broker's Topic Alias Maximum (10)
    c.mqtt.publish("t", b"x", qos=0, properties=props)
    event = c.events.get(timeout=TIMEOUT)
    while event[0] == "puback":  # paho reports QoS 0 publishes as sent
        event = c.events.get(timeout=TIMEOUT)
    assert event[0] == "disconnect" and event[1] == 0x94 and "Topic Alias Maximum" in event[2], event
    c.mqtt.loop_stop()
