"""04-retain: retained messages stored from any shard, sent to later subscribers on any shard with
the retain flag, replaced, and deleted by an empty payload."""
import subprocess

import paho.mqtt.client as mqtt
import pytest

from conftest import Client, unique


def pub(broker, *args):
    subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), *args], check=True, timeout=20)


def sub_one(broker, topic):
    """mosquitto_sub that exits after one message: a retained message arrives at once."""
    out = subprocess.run(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", topic, "-C", "1", "-v",
                          "-W", "10"], capture_output=True, text=True, timeout=20)
    return out.returncode, out.stdout.strip()


def test_retained_with_mosquitto_clients(broker):
    base = unique("ret")
    pub(broker, "-t", f"{base}/state", "-m", "on", "-r", "-q", "1")
    # Several fresh subscribers: they land on both shards; each gets the retained message.
    for _ in range(4):
        assert sub_one(broker, f"{base}/+") == (0, f"{base}/state on")
    pub(broker, "-t", f"{base}/state", "-m", "off", "-r")
    assert sub_one(broker, f"{base}/#") == (0, f"{base}/state off")


def test_empty_payload_deletes(broker, clients):
    base = unique("del")
    pub(broker, "-t", f"{base}/a", "-m", "x", "-r", "-q", "1")
    pub(broker, "-t", f"{base}/a", "-n", "-r", "-q", "1")
    pub(broker, "-t", f"{base}/b", "-m", "kept", "-r", "-q", "1")
    for _ in range(4):
        c = clients()
        c.subscribe(f"{base}/+", 1)
        topic, payload, _ = c.receive(1)[0]
        assert (topic, payload) == (f"{base}/b", b"kept")
        # `a` was deleted: a live sentinel published now arrives next, nothing retained before it.
        c.publish(f"{base}/sentinel", b"s", qos=1)
        assert c.receive(1)[0][:2] == (f"{base}/sentinel", b"s")


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_retain_flag_on_stored_not_on_live(broker, clients, protocol):
    base = unique("flag")
    retained_flags = []
    c = clients(protocol=protocol)
    c.mqtt.on_message = lambda cl, u, m: (retained_flags.append(m.retain), c.messages.put((m.topic, m.payload, m.qos)))
    p = clients(protocol=protocol)
    p.publish(f"{base}/t", b"old", qos=1)  # not retained
    p.mqtt.publish(f"{base}/t", b"stored", qos=1, retain=True).wait_for_publish(10)
    c.subscribe(f"{base}/t", 1)
    assert c.receive(1)[0][:2] == (f"{base}/t", b"stored")
    p.mqtt.publish(f"{base}/t", b"live", qos=1, retain=True).wait_for_publish(10)
    assert c.receive(1)[0][:2] == (f"{base}/t", b"live")
    assert retained_flags == [True, False]


def test_retained_qos_is_minimum(broker, clients):
    base = unique("rq")
    pub(broker, "-t", f"{base}/q", "-m", "one", "-r", "-q", "1")
    c = clients()
    c.subscribe(f"{base}/q", 0)
    assert c.receive(1)[0] == (f"{base}/q", b"one", 0)


def test_dollar_retained_not_matched_by_hash(broker, clients):
    base = unique("dr")
    pub(broker, "-t", f"$apus-test/{base}", "-m", "hidden", "-r", "-q", "1")
    pub(broker, "-t", f"{base}/seen", "-m", "seen", "-r", "-q", "1")
    c = clients()
    c.subscribe("#", 1)
    got = set()
    # Everything retained under `#` arrives right after SUBACK; then a sentinel closes the list.
    c.publish(f"{base}/zz-sentinel", b"end", qos=1)
    while True:
        topic, payload, _ = c.receive(1)[0]
        if topic == f"{base}/zz-sentinel":
            break
        got.add(topic)
    assert f"{base}/seen" in got
    assert not any(t.startswith("$") for t in got)
