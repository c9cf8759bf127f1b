"""08-shared: `$share/{group}/{filter}` for 3.1.1 and 5.0 clients, members spread over the shards:
each message reaches exactly one member of each group, and plain subscribers as usual."""
import collections

import paho.mqtt.client as mqtt
import pytest

from conftest import BROKER, unique, wait_until


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_each_message_to_exactly_one_member_per_group(broker, clients, protocol):
    base = unique("share")
    group_a = [clients(protocol=protocol) for _ in range(4)]
    group_b = [clients(protocol=protocol) for _ in range(2)]
    plain = clients(protocol=protocol)
    for c in group_a:
        assert c.subscribe(f"$share/a/{base}/+", 1)[0].value == 1
    for c in group_b:
        assert c.subscribe(f"$share/b/{base}/#", 1)[0].value == 1
    plain.subscribe(f"{base}/+", 1)
    pub = clients(protocol=protocol)
    n = 40
    for i in range(n):
        pub.publish(f"{base}/job", str(i).encode(), qos=1)
    assert [m[1] for m in plain.receive(n)] == [str(i).encode() for i in range(n)]
    # Every message reaches exactly one member of each group: collect until each group has n.
    for group in (group_a, group_b):
        got = collections.Counter()

        def drained():
            for c in group:
                while not c.messages.empty():
                    got[c.messages.get()[1]] += 1
            return sum(got.values()) >= n

        wait_until(drained, message="every message to one member of the group")
        assert sorted(got) == sorted(str(i).encode() for i in range(n))
        assert all(v == 1 for v in got.values()), "a message went to two members of one group"
        for c in group:
            c.assert_no_message(within=0.1)


def test_round_robin_spreads_evenly(broker, clients):
    base = unique("rr")
    members = [clients() for _ in range(4)]
    for c in members:
        c.subscribe(f"$share/g/{base}", 0)
    pub = clients()
    for i in range(40):
        pub.publish(base, str(i).encode(), qos=1)
    counts = [len(c.receive(10)) for c in members]
    assert counts == [10, 10, 10, 10]
    for c in members:
        c.assert_no_message(within=0.2)


def test_emqx_queue_syntax(broker, clients):
    """EMQX's `$queue/{filter}`: a shared subscription without a group name."""
    if BROKER != "apus":
        pytest.skip("mosquitto does not know $queue/")
    base = unique("queue")
    members = [clients() for _ in range(3)]
    for c in members:
        assert c.subscribe(f"$queue/{base}/+", 1)[0].value == 1
    pub = clients()
    for i in range(30):
        pub.publish(f"{base}/x", str(i).encode(), qos=1)
    got = [m[1] for c in members for m in c.receive(10)]
    assert sorted(got) == sorted(str(i).encode() for i in range(30))
