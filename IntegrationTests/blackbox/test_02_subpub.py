"""02-subpub: SUBSCRIBE with wildcards, PUBLISH at QoS 0 and 1 with mosquitto clients and paho,
publishers and subscribers spread over both shards, per-publisher order, UNSUBSCRIBE."""
import queue
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import TIMEOUT, Client, unique


class MosquittoSub:
    """mosquitto_sub with its output read line by line. It gives no signal once subscribed, so
    `wait_ready` publishes probe messages until the first one comes back."""

    def __init__(self, broker, topic, qos=0):
        self.broker = broker
        self.topic = topic
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", topic, "-v", "-q", str(qos),
             "-i", unique("msub")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_ready(self, probe_topic):
        end = time.monotonic() + TIMEOUT
        while time.monotonic() < end:
            mosquitto_pub(self.broker, probe_topic, "probe")
            try:
                line = self.lines.get(timeout=0.2)
                assert "/probe/" in line, line
                break
            except queue.Empty:
                continue
        else:
            raise AssertionError("mosquitto_sub never became ready")

    def take(self, count):
        """The next `count` lines, skipping probes (which may arrive late, from any publisher)."""
        out = []
        while len(out) < count:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"mosquitto_sub {self.topic}: got {out}, wanted {count} lines")
            if "/probe/" not in line:
                out.append(line)
        return out

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=5)


def mosquitto_pub(broker, topic, message, qos=0):
    subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-t", topic, "-m", message,
                    "-q", str(qos), "-i", unique("mpub")], check=True, timeout=20)


@pytest.mark.parametrize("qos", [0, 1])
def test_mosquitto_clients_wildcards(broker, qos):
    base = unique("w")
    plus = MosquittoSub(broker, f"{base}/+/c", qos)
    everything = MosquittoSub(broker, f"{base}/#", qos)
    try:
        plus.wait_ready(f"{base}/probe/c")
        everything.wait_ready(f"{base}/probe/x")
        mosquitto_pub(broker, f"{base}/b/c", "one", qos)
        mosquitto_pub(broker, f"{base}/b/d", "not-for-plus", qos)
        mosquitto_pub(broker, f"{base}/x/c", "two", qos)
        assert plus.take(2) == [f"{base}/b/c one", f"{base}/x/c two"]
        assert everything.take(3) == [f"{base}/b/c one", f"{base}/b/d not-for-plus", f"{base}/x/c two"]
        # `b/d` never reached the `+/c` subscriber: after `two` nothing else is queued for it.
        mosquitto_pub(broker, f"{base}/end/c", "end", qos)
        assert plus.take(1) == [f"{base}/end/c end"]
    finally:
        plus.close()
        everything.close()


def test_mosquitto_sub_count_exit(broker, clients):
    """mosquitto_sub -C N exits by itself after N messages: the plain CLI workflow works."""
    topic = unique("count") + "/x"
    watcher = clients()
    watcher.subscribe(topic)
    proc = subprocess.Popen(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", topic, "-C", "3",
                             "-q", "1", "-W", "20"], stdout=subprocess.PIPE, text=True)
    # Probe until the paho watcher *and* the CLI subscriber are in place: the watcher sees every probe,
    # mosquitto_sub exits after 3 messages, so send numbered messages until it exits.
    sent = 0
    while proc.poll() is None and sent < 200:
        sent += 1
        mosquitto_pub(broker, topic, f"m{sent}", qos=1)
    out, _ = proc.communicate(timeout=20)
    lines = out.split()
    assert proc.returncode == 0
    assert len(lines) == 3
    first = int(lines[0][1:])
    assert lines == [f"m{first}", f"m{first + 1}", f"m{first + 2}"]


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
@pytest.mark.parametrize("qos", [0, 1])
def test_many_publishers_and_subscribers_in_order(broker, clients, protocol, qos):
    base = unique("order")
    publishers = [clients(protocol=protocol) for _ in range(6)]
    exact = [clients(protocol=protocol) for _ in range(3)]
    wildcard = clients(protocol=protocol)
    for i, s in enumerate(exact):
        assert s.subscribe(f"{base}/{i}", qos)[0].value == qos
    assert wildcard.subscribe(f"{base}/+", qos)[0].value == qos
    n = 50
    threads = []
    for i, p in enumerate(publishers):
        def run(p=p, i=i):
            for k in range(n):
                p.publish(f"{base}/{i}", f"{i}:{k}".encode(), qos=qos, wait=(qos == 1))
        threads.append(threading.Thread(target=run))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for i, s in enumerate(exact):
        got = s.receive(n)
        assert [m[1] for m in got] == [f"{i}:{k}".encode() for k in range(n)]
    got = wildcard.receive(n * len(publishers))
    for i in range(len(publishers)):
        mine = [m[1] for m in got if m[0] == f"{base}/{i}"]
        assert mine == [f"{i}:{k}".encode() for k in range(n)], f"publisher {i}"
    if qos == 1:
        assert all(m[2] == 1 for m in got)


def test_unsubscribe_stops_delivery(broker, clients):
    base = unique("unsub")
    sub = clients()
    sub.subscribe(f"{base}/gone", 1)
    sub.subscribe(f"{base}/kept", 1)
    pub = clients()
    pub.publish(f"{base}/gone", b"before", qos=1)
    assert sub.receive(1) == [(f"{base}/gone", b"before", 1)]
    sub.unsubscribe(f"{base}/gone")
    pub.publish(f"{base}/gone", b"after", qos=1)
    pub.publish(f"{base}/kept", b"sentinel", qos=1)
    # The sentinel was published later and arrives; nothing for the unsubscribed filter came first.
    assert sub.receive(1) == [(f"{base}/kept", b"sentinel", 1)]


def test_granted_qos_in_suback(broker, clients):
    sub = clients()
    base = unique("grant")
    assert sub.subscribe(f"{base}/0", 0)[0].value == 0
    assert sub.subscribe(f"{base}/1", 1)[0].value == 1


def test_delivery_qos_is_minimum(broker, clients):
    base = unique("minq")
    sub = clients()
    sub.subscribe(f"{base}/t", 0)
    pub = clients()
    pub.publish(f"{base}/t", b"x", qos=1)
    assert sub.receive(1) == [(f"{base}/t", b"x", 0)]


def test_dollar_topics_not_matched_by_wildcards(broker, clients):
    base = unique("dollar")
    everything = clients()
    everything.subscribe("#")
    dollar = clients()
    dollar.subscribe(f"$apus-test/{base}/#")
    pub = clients()
    pub.publish(f"$apus-test/{base}/x", b"hidden", qos=1)
    assert dollar.receive(1) == [(f"$apus-test/{base}/x", b"hidden", 0)]
    pub.publish(f"{base}/visible", b"seen", qos=1)
    # `#` got the later, ordinary message, and it is the first thing it got from this test.
    while True:
        topic, payload, _ = everything.receive(1)[0]
        if topic.startswith(base) or topic.startswith("$"):
            break
    assert (topic, payload) == (f"{base}/visible", b"seen")


def test_resubscribe_replaces_qos_and_overlap_delivers_once(broker, clients):
    base = unique("replace")
    sub = clients()
    assert sub.subscribe(f"{base}/t", 0)[0].value == 0
    assert sub.subscribe(f"{base}/t", 1)[0].value == 1  # same filter: replaced, not added
    assert sub.subscribe(f"{base}/+", 0)[0].value == 0  # overlapping filter
    pub = clients()
    pub.publish(f"{base}/t", b"once", qos=1)
    pub.publish(f"{base}/end", b"sentinel", qos=1)
    got = sub.receive(2)
    assert got == [(f"{base}/t", b"once", 1), (f"{base}/end", b"sentinel", 0)]
