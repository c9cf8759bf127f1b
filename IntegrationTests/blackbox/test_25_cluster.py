"""Several apus nodes as one broker: a real etcd (Debian etcd-server) and three real apus processes
on loopback, with paho clients on different nodes. Membership (join, kill -9, SIGSTOP, rejoin,
etcd restarting), routes (subscribe, unsubscribe, wildcards), QoS 0/1/2 and v5 properties across
nodes, retained messages replicated to every node, /api/v5/nodes and the cluster metrics."""
import os
import shutil
import signal
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cluster_procs import LEASE_TTL, Etcd, Node
from conftest import BROKER, TIMEOUT, Client, unique, wait_until

pytestmark = pytest.mark.skipif(BROKER != "apus", reason="apus clustering")

def running(node, names):
    nodes = node.nodes()
    return all(n in nodes and nodes[n]["node_status"] == "running" for n in names)


@pytest.fixture(scope="module")
def cluster():
    etcd = Etcd()
    name = unique("cl")
    nodes = {n: Node(n, etcd, name, extra=("--set", "sys_interval=1")) for n in ("a", "b", "c")}
    for node in nodes.values():
        wait_until(lambda: running(node, nodes) and node.metric("apus_cluster_links_up") == 2, timeout=15,
                   message=f"{node.name} to link with every node")
    yield etcd, nodes, name
    for node in nodes.values():
        node.stop()
    etcd.stop()
    shutil.rmtree(etcd.dir, ignore_errors=True)


@pytest.fixture
def clients():
    made = []

    def make(node, **kwargs):
        c = Client(node, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.close()
        except Exception:
            pass


def await_route(subscriber, publisher, topic, qos=0):
    """Publishes probes on `topic` from `publisher` until `subscriber` receives one: the route has
    crossed. Returns the number of probes sent; the probes received are taken out of the queue."""
    sent = 0
    end = time.monotonic() + TIMEOUT
    while time.monotonic() < end:
        publisher.publish(topic, b"probe", qos)
        sent += 1
        try:
            got = subscriber.messages.get(timeout=0.05)
        except Exception:
            continue
        assert got[1] == b"probe", got
        # Later probes may still be on their way: drain them after a last sentinel.
        publisher.publish(topic, b"probe-end", qos)
        while subscriber.messages.get(timeout=TIMEOUT)[1] != b"probe-end":
            pass
        return sent
    raise AssertionError(f"no route for {topic} within {TIMEOUT} s")


def test_membership_in_etcd_and_nodes_api(cluster):
    etcd, nodes, name = cluster
    assert etcd.members(name) == ["a", "b", "c"]
    view = nodes["a"].nodes()
    assert sorted(view) == ["a", "b", "c"]
    for n in view.values():
        assert n["node_status"] == "running"
        assert n["uptime"] >= 0
    assert nodes["a"].metric("apus_cluster_etcd_up") == 1
    # $SYS/broker/cluster/... (every sys_interval, retained).
    sys = Client(nodes["a"])
    try:
        sys.subscribe("$SYS/broker/cluster/#", 0)
        seen = {}
        wanted = {"$SYS/broker/cluster/nodes/running": b"3", "$SYS/broker/cluster/links/up": b"2",
                  "$SYS/broker/cluster/node/b/status": b"running", "$SYS/broker/cluster/node/c/status": b"running"}
        while any(seen.get(t) != v for t, v in wanted.items()):
            topic, payload, _ = sys.messages.get(timeout=TIMEOUT)  # every second; a missing topic fails here
            seen[topic] = payload
    finally:
        sys.close()


def test_publishes_from_two_nodes_reach_a_subscriber_on_a_third_at_every_qos(cluster, clients):
    _, nodes, _ = cluster
    root = unique("x")
    for qos in (0, 1, 2):
        sub = clients(nodes["a"])
        sub.subscribe(f"{root}/{qos}/+/temp", qos)
        pub_b, pub_c = clients(nodes["b"]), clients(nodes["c"])
        await_route(sub, pub_b, f"{root}/{qos}/probe/temp", qos)
        await_route(sub, pub_c, f"{root}/{qos}/probe/temp", qos)
        for i in range(50):
            pub_b.publish(f"{root}/{qos}/b/temp", f"b{i}".encode(), qos)
            pub_c.publish(f"{root}/{qos}/c/temp", f"c{i}".encode(), qos)
        got = sub.receive(100)
        assert all(q == qos for _, _, q in got)
        for origin in ("b", "c"):
            # Each publisher's messages arrive once each and in order.
            payloads = [p.decode() for t, p, _ in got if t == f"{root}/{qos}/{origin}/temp"]
            assert payloads == [f"{origin}{i}" for i in range(50)]
        sub.assert_no_message()


def test_v5_properties_cross_nodes_intact(cluster, clients):
    _, nodes, _ = cluster
    topic = unique("v5")
    received = []
    sub = clients(nodes["c"], protocol=mqtt.MQTTv5)
    sub.mqtt.on_message = lambda c, u, m: (received.append(m), sub.messages.put((m.topic, m.payload, m.qos)))
    sub.subscribe(topic, 1)
    pub = clients(nodes["a"], protocol=mqtt.MQTTv5)
    await_route(sub, pub, topic)
    received.clear()
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("site", "lab-7"), ("unit", "C")]
    props.ContentType = "application/json"
    props.ResponseTopic = "replies/1"
    props.CorrelationData = b"\x01\x02"
    props.PayloadFormatIndicator = 1
    pub.mqtt.publish(topic, b'{"t":21.5}', 1, properties=props).wait_for_publish(TIMEOUT)
    sub.receive(1)
    p = received[0].properties
    assert p.UserProperty == [("site", "lab-7"), ("unit", "C")]
    assert p.ContentType == "application/json"
    assert p.ResponseTopic == "replies/1"
    assert p.CorrelationData == b"\x01\x02"
    assert p.PayloadFormatIndicator == 1


def test_unsubscribe_stops_forwarding(cluster, clients):
    _, nodes, _ = cluster
    topic, sentinel = unique("gone"), unique("sentinel")
    sub = clients(nodes["a"])
    sub.subscribe(topic, 1)
    sub.subscribe(sentinel, 1)
    pub = clients(nodes["b"])
    await_route(sub, pub, topic, 1)
    await_route(sub, pub, sentinel, 1)
    sub.unsubscribe(topic)

    def forwarded_alone():
        """Publishes the unsubscribed topic, then the sentinel, on one connection (so b's shard,
        gateway and link keep their order): once b counts the sentinel as sent, it has counted the
        first message too if that crossed. True when only the sentinel crossed."""
        sent_before = nodes["b"].metric("apus_cluster_publishes_sent_total")
        pub.publish(topic, b"nobody", 1)
        pub.publish(sentinel, b"after", 1)
        assert sub.receive(1) == [(sentinel, b"after", 1)]
        sent = wait_until(lambda: (lambda v: v if v >= sent_before + 1 else None)(nodes["b"].metric("apus_cluster_publishes_sent_total")),
                          message="the sentinel counted on b")
        return sent == sent_before + 1

    # The route's removal reaches b within moments; from then on nothing of `topic` crosses.
    wait_until(forwarded_alone, message="b to stop forwarding the unsubscribed topic")
    assert forwarded_alone()
    sub.assert_no_message()


def test_retained_messages_are_replicated_to_every_node(cluster, clients):
    _, nodes, _ = cluster
    topic = unique("ret")
    pub = clients(nodes["b"])
    pub.mqtt.publish(topic, b"kept", 1, retain=True).wait_for_publish(TIMEOUT)

    def replicated(node):
        c = Client(node)
        try:
            c.subscribe(topic, 1)
            try:
                return c.messages.get(timeout=0.2)
            except Exception:
                return None
        finally:
            c.close()

    for name in ("a", "c"):
        got = wait_until(lambda: replicated(nodes[name]), message=f"retained on {name}")
        assert got == (topic, b"kept", 1)
    # A deletion replicates too.
    pub.mqtt.publish(topic, b"", 1, retain=True).wait_for_publish(TIMEOUT)
    wait_until(lambda: nodes["a"].metric("apus_cluster_retained_received_total") >= 2, message="deletion on a")
    assert replicated(nodes["a"]) is None


def test_shared_group_members_on_several_nodes_get_each_message_once(cluster, clients):
    _, nodes, _ = cluster
    root = unique("jobs")
    members = [clients(nodes["a"]), clients(nodes["b"]), clients(nodes["b"])]
    for m in members:
        m.subscribe(f"$share/workers/{root}/#", 1)
    pub = clients(nodes["c"])
    # c learns the group's members on a and b (3 in all): probes until each node's member got one.
    wait_until(lambda: nodes["c"].metric("apus_cluster_shared_remote_members") == 3, message="c counts 3 remote members")
    for i in range(300):
        pub.publish(f"{root}/{i}", f"{i}".encode(), 1)
    got = [[], [], []]
    deadline = time.monotonic() + TIMEOUT
    while sum(map(len, got)) < 300 and time.monotonic() < deadline:
        for i, m in enumerate(members):
            while not m.messages.empty():
                got[i].append(m.messages.get())
        time.sleep(0.01)
    payloads = sorted(int(p) for each in got for _, p, _ in each)
    assert payloads == list(range(300)), "every message once, to one member"
    for m in members:
        m.assert_no_message(within=0.1)
    # Round robin over the cluster's members, each node weighted by its members: a's one member
    # gets a third, b's two share two thirds.
    assert len(got[0]) == 100, [len(g) for g in got]
    assert len(got[1]) > 0 and len(got[2]) > 0 and len(got[1]) + len(got[2]) == 200


def test_a_client_id_taken_over_on_another_node_brings_its_session(cluster, clients):
    _, nodes, _ = cluster
    cid, topic = unique("roam"), unique("roam/t")
    # A persistent session on a: subscribed, then offline.
    first = Client(nodes["a"], client_id=cid, clean=False)
    first.subscribe(topic, 1)
    pub = clients(nodes["b"])
    await_route(first, pub, topic, 1)
    first.close()
    # Messages for it while it is offline, published on b, queue in its session on a (a counts
    # them in before the client comes back elsewhere: docs/architecture.md says what happens to a
    # message still on its way when the session moves).
    received_before = nodes["a"].metric("apus_cluster_publishes_received_total")
    for i in range(10):
        pub.publish(topic, f"q{i}".encode(), 1)
    wait_until(lambda: nodes["a"].metric("apus_cluster_publishes_received_total") >= received_before + 10, message="a has them")
    # It comes back on c: session present, its queued messages follow.
    connack = {}
    again = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False)
    got = []
    again.on_connect = lambda c, u, flags, rc, p: connack.update(present=flags.session_present, rc=rc)
    again.on_message = lambda c, u, m: got.append(m.payload)
    again.connect(nodes["c"].host, nodes["c"].port)
    again.loop_start()
    try:
        wait_until(lambda: connack, message="CONNACK on c")
        assert connack["present"] is True, "the session on a came along"
        wait_until(lambda: len(got) >= 10, message="the queued messages on c")
        assert got[:10] == [f"q{i}".encode() for i in range(10)]
        # Its subscription moved too: a new message from b reaches it on c.
        pub.publish(topic, b"live", 1)
        wait_until(lambda: got[-1:] == [b"live"], message="a live message on c")
    finally:
        again.disconnect()
        again.loop_stop()


def test_a_connected_client_is_taken_over_from_another_node(cluster, clients):
    _, nodes, _ = cluster
    cid = unique("twice")
    disconnected = []
    first = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    first.on_disconnect = lambda c, u, flags, rc, p: disconnected.append(rc)
    first.connect(nodes["a"].host, nodes["a"].port)
    first.loop_start()
    try:
        wait_until(first.is_connected, message="first connection on a")
        second = clients(nodes["b"], client_id=cid, protocol=mqtt.MQTTv5)
        wait_until(lambda: disconnected, message="a to end the first connection")
        assert disconnected[0] == 142, f"v5 DISCONNECT 0x8E Session taken over, got {disconnected[0]}"
        assert second.mqtt.is_connected()
    finally:
        first.loop_stop()


def test_a_killed_node_leaves_within_the_lease_and_rejoins(cluster, clients):
    etcd, nodes, name = cluster
    c = nodes["c"]
    topic = unique("dead")
    sub = clients(c)
    sub.subscribe(topic, 0)
    pub = clients(nodes["a"])
    await_route(sub, pub, topic)
    filters_with_c = wait_until(lambda: nodes["a"].metric("apus_cluster_remote_filters"), message="c's filters on a")
    killed = time.monotonic()
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    wait_until(lambda: nodes["a"].nodes()["c"]["node_status"] == "stopped", timeout=LEASE_TTL + 5, message="c stopped on a")
    left = time.monotonic() - killed
    # Its link broke at once, so its routes went before its lease ended.
    assert nodes["a"].metric("apus_cluster_remote_filters") < filters_with_c
    wait_until(lambda: etcd.members(name) == ["a", "b"], timeout=LEASE_TTL + 5, message="c's record gone from etcd")
    assert left < LEASE_TTL + 3
    kept = unique("kept")
    pub.mqtt.publish(kept, b"while c was down", 1, retain=True).wait_for_publish(TIMEOUT)
    c.start()
    for node in nodes.values():
        wait_until(lambda: running(node, nodes) and node.metric("apus_cluster_links_up") == 2, timeout=15,
                   message=f"{node.name} linked again")
    sub2 = clients(c)
    sub2.subscribe(topic, 1)
    await_route(sub2, pub, topic, 1)
    # The restarted c holds nothing of its own: the retained message published while it was away
    # came in the snapshot its peers sent when their links came up.
    late = clients(c)
    late.subscribe(kept, 1)
    assert late.receive(1) == [(kept, b"while c was down", 1)]


def test_a_stopped_node_leaves_and_comes_back(cluster, clients):
    _, nodes, _ = cluster
    b = nodes["b"]
    topic = unique("stop")
    sub = clients(nodes["a"])
    sub.subscribe(topic, 1)
    b.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: nodes["a"].nodes()["b"]["node_status"] == "stopped", timeout=LEASE_TTL + 5, message="b stopped on a")
        wait_until(lambda: nodes["c"].nodes()["b"]["node_status"] == "stopped", timeout=LEASE_TTL + 5, message="b stopped on c")
        # Meanwhile a and c still serve each other.
        pub_c = clients(nodes["c"])
        await_route(sub, pub_c, topic, 1)
    finally:
        b.proc.send_signal(signal.SIGCONT)
    for node in nodes.values():
        wait_until(lambda: running(node, nodes) and node.metric("apus_cluster_links_up") == 2, timeout=15,
                   message=f"{node.name} linked again after SIGCONT")
    pub_b = Client(b)
    try:
        await_route(sub, pub_b, topic, 1)
    finally:
        pub_b.close()


def test_etcd_restarting_drops_no_client(cluster, clients):
    etcd, nodes, name = cluster
    topic = unique("etcd")
    sub = clients(nodes["a"])
    sub.subscribe(topic, 1)
    pub = clients(nodes["c"])
    await_route(sub, pub, topic, 1)
    etcd.stop()
    wait_until(lambda: nodes["a"].metric("apus_cluster_etcd_up") == 0, timeout=10, message="a notices etcd is gone")
    # Clients and links stay: messages still cross while etcd is down.
    for i in range(20):
        pub.publish(topic, f"m{i}".encode(), 1)
    assert [p for _, p, _ in sub.receive(20)] == [f"m{i}".encode() for i in range(20)]
    assert all(running(n, nodes) for n in nodes.values())
    etcd.start()
    for node in nodes.values():
        wait_until(lambda: node.metric("apus_cluster_etcd_up") == 1, timeout=15, message=f"{node.name} reaches etcd again")
    assert etcd.members(name) == ["a", "b", "c"]
    for i in range(5):
        pub.publish(topic, f"n{i}".encode(), 1)
    assert [p for _, p, _ in sub.receive(5)] == [f"n{i}".encode() for i in range(5)]
    for n in nodes.values():
        assert n.alive()


def test_ten_thousand_clients_over_the_nodes_get_one_publish(cluster, clients):
    """10,200 raw MQTT connections spread over the three nodes, all subscribed to one topic; one
    QoS 1 publish on node a reaches every one of them."""
    import selectors
    import socket

    _, nodes, _ = cluster
    topic = unique("all")
    tb = topic.encode()
    per_node = 3400

    def connect_and_subscribe(i):
        cid = f"{topic}-{i}".encode()
        connect = bytes([0x10, 12 + len(cid)]) + b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
        sub_body = b"\x00\x01" + len(tb).to_bytes(2, "big") + tb + b"\x01"
        return connect + bytes([0x82, len(sub_body)]) + sub_body

    # paho's clients first: its loop uses select(), which takes no descriptor above 1023.
    pub = clients(nodes["a"])
    probes = {other: clients(nodes[other]) for other in ("b", "c")}
    sel = selectors.DefaultSelector()
    socks = []
    try:
        names = list(nodes)
        for i in range(per_node * len(names)):
            node = nodes[names[i % len(names)]]
            s = socket.create_connection((node.host, node.port))
            s.sendall(connect_and_subscribe(i))
            s.setblocking(False)
            socks.append(s)
        # CONNACK (4 bytes) and SUBACK (5 bytes) on every connection.
        pending = {s.fileno(): [s, b""] for s in socks}
        for s in socks:
            sel.register(s, selectors.EVENT_READ)

        def read_until(done, what):
            end = time.monotonic() + 60
            while any(not done(v[1]) for v in pending.values()):
                if time.monotonic() > end:
                    missing = sum(1 for v in pending.values() if not done(v[1]))
                    raise AssertionError(f"{missing} connections without {what}")
                for key, _ in sel.select(timeout=1):
                    entry = pending[key.fd]
                    data = entry[0].recv(65536)
                    assert data, "a connection was closed"
                    entry[1] += data

        read_until(lambda b: len(b) >= 9, "CONNACK and SUBACK")
        for v in pending.values():
            assert v[1][:4] == b"\x20\x02\x00\x00" and v[1][4] == 0x90 and v[1][8] == 1, v[1][:9]
            v[1] = b""
        # The routes of b and c reach a (the probe's route follows theirs on each link).
        for probe in probes.values():
            probe.subscribe(topic + "/probe", 0)
            await_route(probe, pub, topic + "/probe")
        pub.publish(topic, b"to everyone", 1)
        expected = bytes([0x32, 2 + len(tb) + 2 + 11]) + len(tb).to_bytes(2, "big") + tb
        read_until(lambda b: len(b) >= len(expected) + 2 + 11, "the PUBLISH")
        for v in pending.values():
            assert v[1].startswith(expected) and v[1][len(expected) + 2:len(expected) + 13] == b"to everyone"
        # /api/v5/nodes counts them on every node (each node's figures are at most a second old).
        for name in names:
            wait_until(lambda: all(n["connections"] >= per_node for n in nodes[name].nodes().values()),
                       message=f"{name} to list {per_node}+ connections on every node")
    finally:
        sel.close()
        for s in socks:
            s.close()


def iptables(*rule):
    subprocess.run(["iptables", *rule], check=True, capture_output=True, timeout=10)


@pytest.mark.skipif(os.geteuid() != 0, reason="iptables and setpriv need root (CI runs as root)")
def test_a_partition_keeps_both_sides_serving_and_heals_without_loss(cluster, clients):
    """Node b cut off from a and c (iptables drops b's link traffic both ways; everyone still
    reaches etcd, so no lease ends): each side serves its own clients, messages for the other side
    wait in the links, and once the partition heals they arrive — late, none lost, none twice."""
    etcd, _, _ = cluster
    name = unique("part")
    nodes = {"a": Node("a", etcd, name), "b": Node("b", etcd, name, uid=65534), "c": Node("c", etcd, name)}
    rules = [("INPUT", "-p", "tcp", "--dport", str(nodes["b"].link), "-j", "DROP"),
             ("OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", "65534", "--dport", str(nodes["a"].link), "-j", "DROP"),
             ("OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", "65534", "--dport", str(nodes["c"].link), "-j", "DROP")]
    inserted = []
    try:
        for node in nodes.values():
            wait_until(lambda: running(node, nodes) and node.metric("apus_cluster_links_up") == 2, timeout=15, message="links")
        topic = unique("p")
        sa, sb, sc = clients(nodes["a"]), clients(nodes["b"]), clients(nodes["c"])
        for s in (sa, sb, sc):
            s.subscribe(f"{topic}/#", 1)
        pa, pb = clients(nodes["a"]), clients(nodes["b"])
        await_route(sa, pb, f"{topic}/probe", 1)
        await_route(sb, pa, f"{topic}/probe", 1)
        await_route(sc, pb, f"{topic}/probe", 1)
        # Every subscriber gets the probes meant for the others: drain up to a last sentinel from
        # each publisher (each link keeps its order).
        pa.publish(f"{topic}/sync", b"sync-a", 1)
        pb.publish(f"{topic}/sync", b"sync-b", 1)
        for s in (sa, sb, sc):
            seen = set()
            while seen != {b"sync-a", b"sync-b"}:
                _, payload, _ = s.messages.get(timeout=TIMEOUT)
                if payload.startswith(b"sync-"):
                    seen.add(payload)
        for rule in rules:
            iptables("-I", *rule)
            inserted.append(rule)
        cut = time.monotonic()
        # b's messages first, then a's: when a's own have reached sa, b's are still held back.
        for i in range(20):
            pb.publish(f"{topic}/b", f"b{i}".encode(), 1)
        for i in range(20):
            pa.publish(f"{topic}/a", f"a{i}".encode(), 1)
        got_a = sa.receive(20)
        assert [p for _, p, _ in got_a] == [f"a{i}".encode() for i in range(20)], "a serves its own clients; b's are held"
        got_b_local = sb.receive(20)
        assert [p for _, p, _ in got_b_local] == [f"b{i}".encode() for i in range(20)], "b serves its own clients"
        got_c = sc.receive(20)
        assert sorted(p for _, p, _ in got_c) == sorted(f"a{i}".encode() for i in range(20)), "a and c still talk"
        # The partition lasts 5 s (longer than the lease TTL, 3 s): no lease ends, since every node
        # still reaches etcd, and every node still lists every node running.
        time.sleep(max(0.0, 5 - (time.monotonic() - cut)))
        assert all(running(n, nodes) for n in nodes.values())
        sa.assert_no_message(within=0.1)  # b's messages are still held back
        partitioned = time.monotonic() - cut
        for rule in inserted:
            iptables("-D", *rule)
        inserted.clear()
        healed = time.monotonic()
        # After the heal the held messages arrive, in order, once each.
        late_a = sa.receive(20, timeout=60)
        assert [p for _, p, _ in late_a] == [f"b{i}".encode() for i in range(20)]
        late_b = sb.receive(20, timeout=60)
        assert [p for _, p, _ in late_b] == [f"a{i}".encode() for i in range(20)]
        late_c = sc.receive(20, timeout=60)
        assert [p for _, p, _ in late_c] == [f"b{i}".encode() for i in range(20)]
        recovered = time.monotonic() - healed
        for s in (sa, sb, sc):
            s.assert_no_message(within=0.5)
        print(f"partition held {partitioned:.1f} s; the held messages arrived {recovered:.1f} s after the heal")
    finally:
        for rule in inserted:
            iptables("-D", *rule)
        for node in nodes.values():
            node.stop()
