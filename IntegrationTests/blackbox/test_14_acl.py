"""14-acl: mosquitto-format acl_file with a mosquitto_passwd password file: user rules, rules for
anonymous clients, %c/%u patterns, deny winning, denied PUBLISH (v5 0x87) and SUBSCRIBE (0x80 /
0x87), deliveries filtered by read rules. Runs against mosquitto too (BROKER=mosquitto) with the
same two files."""
import queue
import subprocess

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from conftest import BROKER, TIMEOUT, Broker, unique

ACL = """\
# anonymous clients
topic read public/#

user alice
topic readwrite sensors/#
topic deny sensors/bob/private

user bob
topic readwrite sensors/bob/#

pattern readwrite devices/%c/#
pattern read inbox/%u
"""


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory):
    d = tmp_path_factory.mktemp("acl")
    pw, acl = d / "passwd", d / "acl"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "alice", "secret"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "bob", "hunter2"], check=True)
    acl.write_text(ACL)
    if BROKER != "apus":  # mosquitto drops root for its own user, which must reach the files
        import os
        for p in (d.parent.parent, d.parent, d):
            os.chmod(p, 0o755)
        for p in (pw, acl):
            os.chmod(p, 0o644)
    settings = f"password_file {pw}\nacl_file {acl}\nallow_anonymous true\n"
    if BROKER == "apus":
        conf = d / "apus.conf"
        conf.write_text(settings)
        b = Broker(["--config", str(conf)])
    else:
        b = Broker(mosquitto_conf=settings)
    yield b
    b.stop()


class C:
    def __init__(self, broker, user=None, password=None, protocol=mqtt.MQTTv5, client_id=None):
        self.protocol = protocol
        self.m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or unique("acl"), protocol=protocol)
        if user:
            self.m.username_pw_set(user, password)
        self.messages, self.events = queue.Queue(), queue.Queue()
        self.m.on_message = lambda c, u, msg: self.messages.put((msg.topic, msg.payload))
        self.m.on_connect = lambda c, u, f, rc, p: self.events.put(("connack", rc.value))
        self.m.on_subscribe = lambda c, u, mid, rcs, p: self.events.put(("suback", [r.value for r in rcs]))
        self.m.on_publish = lambda c, u, mid, rc, p: self.events.put(("puback", rc.value))
        self.m.connect(broker.host, broker.port)
        self.m.loop_start()
        assert self.event("connack") == 0

    def event(self, kind):
        while True:
            e = self.events.get(timeout=TIMEOUT)
            if e[0] == kind:
                return e[1]

    def subscribe(self, topic, qos=1):
        if self.protocol == mqtt.MQTTv5:
            self.m.subscribe(topic, options=SubscribeOptions(qos=qos))
        else:
            self.m.subscribe(topic, qos)
        return self.event("suback")

    def publish(self, topic, payload, qos=1):
        self.m.publish(topic, payload, qos=qos)
        return self.event("puback")

    def close(self):
        self.m.disconnect()
        self.m.loop_stop()


@pytest.mark.skipif(BROKER != "apus", reason="mosquitto grants every subscription and only filters deliveries")
def test_subscribe_denied_v5_and_311(acl_broker):
    a5 = C(acl_broker, "alice", "secret")
    assert a5.subscribe("other/#") == [0x87], "no read rule matches any of it"
    assert a5.subscribe("sensors/bob/private") == [0x87], "all of it denied"
    assert a5.subscribe("sensors/#") == [1]
    a3 = C(acl_broker, "alice", "secret", protocol=mqtt.MQTTv311)
    assert a3.subscribe("other/x") == [0x80]
    assert a3.subscribe("sensors/x") == [1]
    anon = C(acl_broker)
    assert anon.subscribe("sensors/#") == [0x87]
    bob = C(acl_broker, "bob", "hunter2")
    assert bob.subscribe("inbox/alice") == [0x87]
    for c in (a5, a3, anon, bob):
        c.close()


def test_wildcard_subscription_sees_only_readable_topics(acl_broker):
    alice = C(acl_broker, "alice", "secret")
    assert alice.subscribe("#") == [1]
    bob = C(acl_broker, "bob", "hunter2")
    assert bob.subscribe("inbox/bob") == [1]
    dev = C(acl_broker, client_id="dev9")
    assert dev.publish("devices/dev9/x", b"not alice's") == 0
    assert bob.publish("sensors/bob/private", b"denied to alice") == 0
    assert bob.publish("sensors/bob/ok", b"readable") == 0
    assert alice.messages.get(timeout=TIMEOUT) == ("sensors/bob/ok", b"readable")
    for c in (alice, bob, dev):
        c.close()


def test_publish_denied_is_not_delivered(acl_broker):
    alice = C(acl_broker, "alice", "secret")
    assert alice.subscribe("sensors/#") == [1]
    bob = C(acl_broker, "bob", "hunter2")
    assert bob.publish("sensors/a", b"not bob's") == 0x87
    assert bob.publish("sensors/bob/1", b"bob's") == 0
    assert alice.messages.get(timeout=TIMEOUT) == ("sensors/bob/1", b"bob's")
    # 3.1.1 cannot be told no: acknowledged, not delivered.
    bob3 = C(acl_broker, "bob", "hunter2", protocol=mqtt.MQTTv311)
    assert bob3.publish("sensors/b", b"dropped") == 0
    assert bob.publish("sensors/bob/2", b"marker") == 0
    assert alice.messages.get(timeout=TIMEOUT) == ("sensors/bob/2", b"marker")
    for c in (alice, bob, bob3):
        c.close()


def test_deny_filters_deliveries(acl_broker):
    alice = C(acl_broker, "alice", "secret")
    assert alice.subscribe("sensors/#") == [1]
    bob = C(acl_broker, "bob", "hunter2")
    assert bob.publish("sensors/bob/private", b"for bob only") == 0
    assert bob.publish("sensors/bob/public", b"for all") == 0
    assert alice.messages.get(timeout=TIMEOUT) == ("sensors/bob/public", b"for all"), "deny wins at delivery"
    for c in (alice, bob):
        c.close()


def test_anonymous_rules_and_patterns(acl_broker):
    anon = C(acl_broker, client_id="dev1")
    assert anon.subscribe("public/#") == [1]
    assert anon.publish("public/news", b"x") == 0x87, "read only"
    assert anon.subscribe("devices/dev1/#") == [1]
    assert anon.publish("devices/dev1/t", b"own") == 0
    assert anon.messages.get(timeout=TIMEOUT) == ("devices/dev1/t", b"own")
    assert anon.publish("devices/dev2/t", b"other") == 0x87
    bob = C(acl_broker, "bob", "hunter2")
    assert bob.subscribe("inbox/bob") == [1]
    for c in (anon, bob):
        c.close()


def test_mosquitto_clients_with_acl(acl_broker):
    topic = "sensors/bob/" + unique("m")
    sub = subprocess.Popen(["mosquitto_sub", "-h", acl_broker.host, "-p", str(acl_broker.port), "-u", "alice", "-P", "secret",
                            "-t", "sensors/#", "-C", "1", "-W", "10"], stdout=subprocess.PIPE, text=True)
    try:
        watcher = C(acl_broker, "alice", "secret")
        assert watcher.subscribe("sensors/#") == [1]
        for _ in range(50):  # until mosquitto_sub has subscribed too (its message arrives at watcher as well)
            subprocess.run(["mosquitto_pub", "-h", acl_broker.host, "-p", str(acl_broker.port), "-u", "bob", "-P", "hunter2",
                            "-t", topic, "-m", "hi", "-q", "1"], check=True)
            assert watcher.messages.get(timeout=TIMEOUT) == (topic, b"hi")
            if sub.poll() is not None:
                break
        assert sub.communicate(timeout=TIMEOUT)[0] == "hi\n"
        watcher.close()
    finally:
        sub.kill()
