"""11-v5: MQTT 5 subscription options with paho's v5 client, across shards: No Local and Retain
As Published. (The rest of the v5 feature list is the MQTT 5.0 issue.)"""
import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from conftest import unique, wait_until


def subscribe_v5(client, topic, **options):
    result, mid = client.mqtt.subscribe(topic, options=SubscribeOptions(**options))
    assert result == mqtt.MQTT_ERR_SUCCESS

    wait_until(lambda: client.subacks.get(mid), message="SUBACK")


def test_no_local(broker, clients):
    topic = unique("nolocal")
    me = clients(protocol=mqtt.MQTTv5)
    subscribe_v5(me, topic, qos=1, noLocal=True)
    other = clients(protocol=mqtt.MQTTv5)
    subscribe_v5(other, topic, qos=1)
    me.publish(topic, b"from-me", qos=1)
    other.publish(topic, b"from-other", qos=1)
    assert other.receive(2)[0][1] == b"from-me"
    # `me` gets the other client's message, and it is the first thing it gets: its own was not sent back.
    assert me.receive(1) == [(topic, b"from-other", 1)]


def test_retain_as_published(broker, clients):
    topic = unique("rap")
    flags = {}
    keeps = clients(protocol=mqtt.MQTTv5)
    clears = clients(protocol=mqtt.MQTTv5)
    for name, c in (("keeps", keeps), ("clears", clears)):
        c.mqtt.on_message = (lambda n, cl: lambda client, u, m: (flags.setdefault(n, []).append(m.retain),
                                                                   cl.messages.put((m.topic, m.payload, m.qos))))(name, c)
    subscribe_v5(keeps, topic, qos=1, retainAsPublished=True)
    subscribe_v5(clears, topic, qos=1)
    pub = clients(protocol=mqtt.MQTTv5)
    pub.mqtt.publish(topic, b"r", qos=1, retain=True).wait_for_publish(10)
    keeps.receive(1)
    clears.receive(1)
    assert flags == {"keeps": [True], "clears": [False]}
    pub.mqtt.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)  # clean up the retained message


def test_inbound_topic_alias(broker, clients):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    topic = unique("alias") + "/a/rather/long/topic/name"
    sub = clients(protocol=mqtt.MQTTv5)
    sub.subscribe(topic, 1)
    pub = clients(protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.PUBLISH)
    props.TopicAlias = 1
    pub.mqtt.publish(topic, b"first", qos=1, properties=props).wait_for_publish(10)
    pub.mqtt.publish("", b"by-alias", qos=1, properties=props).wait_for_publish(10)
    assert sub.receive(2) == [(topic, b"first", 1), (topic, b"by-alias", 1)]


def test_message_expiry_while_offline(broker, clients):
    """A QoS 1 message for an offline session is dropped once its Message Expiry Interval has
    passed; another is delivered with the interval it has left."""
    import time
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from test_05_session import Session
    topic = unique("expiry")
    s = Session(broker, unique("exp-sub"), protocol=mqtt.MQTTv5)
    s.connect(clean=True, expiry=300)
    s.subscribe(topic, 1)
    s.disconnect()
    pub = clients(protocol=mqtt.MQTTv5)
    short, long_ = Properties(PacketTypes.PUBLISH), Properties(PacketTypes.PUBLISH)
    short.MessageExpiryInterval = 1
    long_.MessageExpiryInterval = 100
    pub.mqtt.publish(topic, b"short", qos=1, properties=short).wait_for_publish(10)
    pub.mqtt.publish(topic, b"long", qos=1, properties=long_).wait_for_publish(10)
    time.sleep(2.2)  # the time that must pass for the first message to expire (the point of the test)
    assert s.connect(clean=False, expiry=300) is True
    got = s.receive(1)
    assert got[0][1] == b"long"
    remaining = getattr(s.properties[0], "MessageExpiryInterval", None)
    assert remaining is not None and 90 <= remaining <= 98, remaining
    s.disconnect()


def test_subscription_identifiers(broker, clients):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    base = unique("subid")
    sub = clients(protocol=mqtt.MQTTv5)
    ids = {}
    sub.mqtt.on_message = lambda c, u, m: (ids.setdefault(m.payload, []).extend(getattr(m.properties, "SubscriptionIdentifier", [])),
                                           sub.messages.put((m.topic, m.payload, m.qos)))
    for filter_, identifier in ((f"{base}/+", 11), (f"{base}/t", 222)):
        props = Properties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = identifier
        _, mid = sub.mqtt.subscribe(filter_, options=SubscribeOptions(qos=1), properties=props)
        wait_until(lambda: sub.subacks.get(mid), message="SUBACK")
    pub = clients(protocol=mqtt.MQTTv5)
    pub.publish(f"{base}/t", b"both", qos=1)
    pub.publish(f"{base}/u", b"one", qos=1)
    # With overlapping subscriptions a broker may send one message carrying both identifiers
    # (Apus) or one message per subscription (mosquitto) [MQTT-3.3.4-3/-4]: wait for "one", which
    # was published last.
    while sub.receive(1)[0][1] != b"one":
        pass
    assert sorted(ids[b"both"]) == [11, 222]
    assert ids[b"one"] == [11]


def test_mixed_versions(broker, clients):
    """A v5 publisher's properties reach a v5 subscriber unchanged and are stripped for a 3.1.1
    one; a 3.1.1 publisher reaches a v5 subscriber."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    topic = unique("mixed")
    old = clients(protocol=mqtt.MQTTv311)
    old.subscribe(topic, 1)
    new = clients(protocol=mqtt.MQTTv5)
    seen = []
    new.mqtt.on_message = lambda c, u, m: (seen.append(m.properties), new.messages.put((m.topic, m.payload, m.qos)))
    subscribe_v5(new, topic, qos=1)
    v5pub = clients(protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("a", "1"), ("b", "2"), ("a", "3")]
    props.ContentType = "text/plain"
    props.ResponseTopic = "reply/here"
    props.CorrelationData = b"\x00\x01"
    v5pub.mqtt.publish(topic, b"from-v5", qos=1, properties=props).wait_for_publish(10)
    assert old.receive(1) == [(topic, b"from-v5", 1)]
    assert new.receive(1) == [(topic, b"from-v5", 1)]
    p = seen[0]
    assert p.UserProperty == [("a", "1"), ("b", "2"), ("a", "3")]
    assert (p.ContentType, p.ResponseTopic, p.CorrelationData) == ("text/plain", "reply/here", b"\x00\x01")
    v3pub = clients(protocol=mqtt.MQTTv311)
    v3pub.publish(topic, b"from-311", qos=1)
    assert new.receive(1) == [(topic, b"from-311", 1)]
    assert old.receive(1) == [(topic, b"from-311", 1)]
