"""15-operability: the HTTP listener (GET /metrics in Prometheus format, GET /health, POST
/api/v5/publish with EMQX's body, bad HTTP clients), $SYS/broker topics every sys_interval, several
listeners, SIGHUP reloading password_file and acl_file without dropping connections, failed logins
logged with client id and address, persistent_client_expiration, and config file errors with their
line number, against the real apus process with curl, mosquitto_pub/sub, mosquitto_passwd and paho."""
import json
import os
import queue
import re
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import APUS_BIN, BROKER, TIMEOUT, Broker, free_port, unique, wait_until

pytestmark = pytest.mark.skipif(BROKER != "apus", reason="apus HTTP listener and configuration")

ACL = """\
# anonymous clients
topic read $SYS/#
topic readwrite open/#

user alice
topic readwrite alice/#
"""


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    d = tmp_path_factory.mktemp("ops")
    pw, acl = d / "passwd", d / "acl"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "alice", "secret"], check=True)
    acl.write_text(ACL)
    second, http = free_port(), free_port()
    conf = d / "apus.conf"
    # The first listener's port is overridden by the fixture's --port (flags win over the file).
    conf.write_text(f"# mosquitto.conf syntax\nlistener 1 127.0.0.1\nlistener {second}\nhttp_listener {http}\n"
                    f"sys_interval 1\nset_tcp_nodelay true\npassword_file {pw}\nacl_file {acl}\nallow_anonymous true\n")
    b = Broker(["--config", str(conf)])
    b.second_port, b.http_port, b.pw, b.acl = second, http, pw, acl
    yield b
    b.stop()


def http(broker, method, path, body=None):
    """(status, content type, body bytes) of one request."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(f"http://127.0.0.1:{broker.http_port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def metrics(broker):
    status, ctype, body = http(broker, "GET", "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    values = {}
    for line in body.decode().splitlines():
        if line.startswith("#"):
            assert re.match(r"# (HELP|TYPE) apus_\w+ ", line), line
            continue
        m = re.fullmatch(r'(apus_\w+(?:\{[a-z_]+="[^"]*"\})?) (\d+)', line)
        assert m, f"not a Prometheus sample: {line!r}"
        values[m.group(1)] = int(m.group(2))
    return values


class V5:
    """A paho MQTT 5 client recording messages with their properties, PUBACKs and disconnects."""

    def __init__(self, broker, port=None, user=None, password=None, client_id=None):
        self.m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or unique("ops"), protocol=mqtt.MQTTv5)
        if user:
            self.m.username_pw_set(user, password)
        self.messages, self.events, self.connack = queue.Queue(), queue.Queue(), queue.Queue()
        self.m.on_message = lambda c, u, msg: self.messages.put(msg)
        self.m.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc.value)
        self.m.on_subscribe = lambda c, u, mid, rcs, props: self.events.put(("suback", [r.value for r in rcs]))
        self.m.on_publish = lambda c, u, mid, rc, props: self.events.put(("puback", mid, rc.value))
        self.m.on_disconnect = lambda c, u, flags, rc, props: self.events.put(("disconnect", rc.value))
        self.m.connect(broker.host, port or broker.port)
        self.m.loop_start()
        self.rc = self.connack.get(timeout=TIMEOUT)

    def subscribe(self, topic, qos=1):
        self.m.subscribe(topic, qos)
        return self.event("suback")

    def event(self, kind):
        while True:
            e = self.events.get(timeout=TIMEOUT)
            if e[0] == kind:
                return e

    def close(self):
        self.m.disconnect()
        self.m.loop_stop()


# ---- HTTP listener ----

def test_health(ops):
    status, ctype, body = http(ops, "GET", "/health")
    assert status == 200 and ctype == "application/json"
    doc = json.loads(body)
    assert doc["status"] == "ok" and doc["shards"] == 2 and doc["version"]


def test_metrics_count_real_traffic(ops):
    before = metrics(ops)
    sub = V5(ops)
    assert sub.subscribe("open/metrics/#") == ("suback", [1])
    pub = V5(ops)
    for i in range(20):
        info = pub.m.publish(f"open/metrics/{i % 3}", b"x" * 64, qos=1)
        info.wait_for_publish(TIMEOUT)
    for _ in range(20):
        sub.messages.get(timeout=TIMEOUT)

    def counted():
        m = metrics(ops)
        return m if (m["apus_messages_received_total"] - before["apus_messages_received_total"] >= 20
                     and m["apus_messages_sent_total"] - before["apus_messages_sent_total"] >= 20
                     and m["apus_connections_count"] >= 2 and m["apus_subscriptions_count"] >= 1) else None
    m = wait_until(counted, message="/metrics to count the 20 messages")  # shards report once a second
    assert m["apus_bytes_received_total"] - before["apus_bytes_received_total"] >= 20 * 64
    assert m["apus_bytes_sent_total"] - before["apus_bytes_sent_total"] >= 20 * 64
    assert m["apus_sessions_count"] >= m["apus_connections_count"]
    assert m['apus_build_info{version="0.1.0"}'] == 1
    for shard in ("0", "1"):
        assert f'apus_shard_connections_count{{shard="{shard}"}}' in m
    assert sum(m[f'apus_shard_messages_received_total{{shard="{s}"}}'] for s in "01") == m["apus_messages_received_total"]
    assert 'apus_messages_dropped_total{reason="queue_full"}' in m
    sub.close()
    pub.close()


def test_metrics_with_curl(ops):
    out = subprocess.run(["curl", "-sS", "-i", f"http://127.0.0.1:{ops.http_port}/metrics"], capture_output=True,
                         timeout=TIMEOUT, check=True).stdout.decode()
    assert out.startswith("HTTP/1.1 200 OK\r\n")
    assert "\r\nConnection: keep-alive\r\n" in out
    assert re.search(r"^apus_connections_count \d+$", out, re.M)


def test_http_keep_alive_pipelining_and_close(ops):
    """Several requests on one connection (as a Prometheus server scrapes), two pipelined in one
    write answered in order, then `Connection: close` ends it."""
    s = socket.create_connection(("127.0.0.1", ops.http_port), timeout=TIMEOUT)
    buffered = b""

    def response():
        nonlocal buffered
        while b"\r\n\r\n" not in buffered:
            chunk = s.recv(65536)
            assert chunk, "closed before an answer"
            buffered += chunk
        head, rest = buffered.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(rest) < length:
            rest += s.recv(65536)
        buffered = rest[length:]
        return head.decode(), rest[:length]

    for _ in range(3):
        s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = response()
        assert head.startswith("HTTP/1.1 200") and "Connection: keep-alive" in head and b"ready" in body
    s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    first, second = response(), response()
    assert b"ready" in first[1] and b"apus_connections_count" in second[1]
    s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _ = response()
    assert "Connection: close" in head
    assert s.recv(1) == b"", "the connection ends after a Connection: close request"
    s.close()


def test_publish_api_delivers_with_properties(ops):
    sub = V5(ops)
    assert sub.subscribe("open/api/#", qos=1) == ("suback", [1])
    body = {"topic": "open/api/a", "payload": "hello", "qos": 1, "retain": False,
            "properties": {"payload_format_indicator": 1, "message_expiry_interval": 60, "content_type": "text/plain",
                           "response_topic": "open/reply", "correlation_data": "c-42",
                           "user_properties": {"k1": "v1", "k2": "v2"}}}
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
                          "-d", json.dumps(body), f"http://127.0.0.1:{ops.http_port}/api/v5/publish"],
                         capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout
    text, code = out.rsplit("\n", 1)
    assert code == "200", out
    assert re.fullmatch(r"[0-9A-F]{32}", json.loads(text)["id"])
    msg = sub.messages.get(timeout=TIMEOUT)
    assert (msg.topic, msg.payload, msg.qos) == ("open/api/a", b"hello", 1)
    p = msg.properties
    assert p.PayloadFormatIndicator == 1 and p.ContentType == "text/plain" and p.ResponseTopic == "open/reply"
    assert p.CorrelationData == b"c-42" and 0 < p.MessageExpiryInterval <= 60
    assert p.UserProperty == [("k1", "v1"), ("k2", "v2")]

    # base64 payloads, to a 3.1.1 mosquitto_sub on the other listener
    topic = "open/b64/" + unique("b64")
    ms = subprocess.Popen(["mosquitto_sub", "-p", str(ops.second_port), "-t", topic, "-C", "1", "-W", "10"],
                          stdout=subprocess.PIPE)
    try:
        def sent():
            status, _, answer = http(ops, "POST", "/api/v5/publish",
                                     {"topic": topic, "payload": "AAEC/w==", "payload_encoding": "base64"})
            assert status in (200, 202), answer
            return status == 200  # 202 until mosquitto_sub's subscription is in place
        wait_until(sent, message="a subscriber for the API message")
        assert ms.communicate(timeout=TIMEOUT)[0] == b"\x00\x01\x02\xff\n"
    finally:
        ms.kill()
    sub.close()


def test_publish_api_without_subscribers_and_retained(ops):
    topic = "open/none/" + unique("nobody")
    status, _, body = http(ops, "POST", "/api/v5/publish", {"topic": topic, "payload": "kept", "retain": True})
    assert status == 202
    doc = json.loads(body)
    assert doc["reason_code"] == 16 and doc["message"] == "no_matching_subscribers"
    out = subprocess.run(["mosquitto_sub", "-p", str(ops.port), "-t", topic, "-C", "1", "-W", "10", "-v"],
                         capture_output=True, text=True, timeout=15)
    assert out.stdout == f"{topic} kept\n"


def test_publish_bulk_api(ops):
    """POST /api/v5/publish/bulk (EMQX's): messages published in order; 200 when every one reached
    a subscriber, 202 when one reached none (its answer has reason code 16); one bad element is a
    400 and nothing is published."""
    base = "open/bulk/" + unique("bulk")
    sub = V5(ops)
    assert sub.subscribe(base + "/#", qos=1) == ("suback", [1])
    batch = [{"topic": f"{base}/{i}", "payload": f"m{i}", "qos": i % 3} for i in range(5)]
    status, _, body = http(ops, "POST", "/api/v5/publish/bulk", json.dumps(batch).encode())
    assert status == 200, body
    answers = json.loads(body)
    assert len(answers) == 5 and all(re.fullmatch(r"[0-9A-F]{32}", a["id"]) for a in answers)
    got = [sub.messages.get(timeout=TIMEOUT) for _ in range(5)]
    assert [(m.topic, m.payload) for m in got] == [(f"{base}/{i}", f"m{i}".encode()) for i in range(5)]

    partly = [{"topic": f"{base}/x", "payload": "seen"}, {"topic": "open/nobody/" + unique("n"), "payload": "lost"}]
    status, _, body = http(ops, "POST", "/api/v5/publish/bulk", json.dumps(partly).encode())
    assert status == 202, body
    first, second = json.loads(body)
    assert "id" in first and "reason_code" not in first
    assert second["reason_code"] == 16 and second["message"] == "no_matching_subscribers"
    assert sub.messages.get(timeout=TIMEOUT).payload == b"seen"

    # One bad element: 400 naming it, and the good ones before it are not published either.
    bad = [{"topic": f"{base}/y", "payload": "never"}, {"topic": "open/+/bad", "payload": "x"}]
    status, _, body = http(ops, "POST", "/api/v5/publish/bulk", json.dumps(bad).encode())
    assert status == 400 and json.loads(body)["message"].startswith("message 1:"), body
    status, _, body = http(ops, "POST", "/api/v5/publish/bulk", json.dumps([{"topic": f"{base}/z", "payload": "end"}]).encode())
    assert status == 200, body
    assert sub.messages.get(timeout=TIMEOUT).payload == b"end"  # "never" would have come first
    sub.close()


@pytest.mark.parametrize("method,path,body,status", [
    ("POST", "/api/v5/publish/bulk", b"[]", 400),
    ("POST", "/api/v5/publish/bulk", {"topic": "open/x"}, 400),
    ("POST", "/api/v5/publish/bulk", b'[{"topic": "$SYS/x"}]', 400),
    ("GET", "/api/v5/publish/bulk", None, 405),
    ("POST", "/api/v5/publish", b"{not json", 400),
    ("POST", "/api/v5/publish", {"payload": "no topic"}, 400),
    ("POST", "/api/v5/publish", {"topic": "open/+", "payload": "x"}, 400),
    ("POST", "/api/v5/publish", {"topic": "open/x", "qos": 3}, 400),
    ("POST", "/api/v5/publish", {"topic": "open/x", "payload": "%%%", "payload_encoding": "base64"}, 400),
    ("POST", "/api/v5/publish", {"topic": "$SYS/fake", "payload": "x"}, 400),
    ("GET", "/api/v5/publish", None, 405),
    ("POST", "/metrics", b"", 405),
    ("GET", "/nowhere", None, 404),
])
def test_http_errors(ops, method, path, body, status):
    got, ctype, answer = http(ops, method, path, body)
    assert got == status, answer
    assert ctype == "application/json" and json.loads(answer)["message"]


def test_bad_http_clients_do_not_hurt(ops):
    idle = socket.create_connection(("127.0.0.1", ops.http_port))
    partial = [socket.create_connection(("127.0.0.1", ops.http_port)) for _ in range(10)]
    for s in partial:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
    garbage = socket.create_connection(("127.0.0.1", ops.http_port))
    garbage.sendall(b"\x00\x01 nonsense\r\n\r\n")
    garbage.settimeout(TIMEOUT)
    assert garbage.recv(100).startswith(b"HTTP/1.1 400 ")
    huge = socket.create_connection(("127.0.0.1", ops.http_port))
    huge.sendall(b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20000)
    huge.settimeout(TIMEOUT)
    assert huge.recv(100).startswith(b"HTTP/1.1 431 ")
    # Everyone else is still served, HTTP and MQTT alike.
    assert http(ops, "GET", "/health")[0] == 200
    c = V5(ops)
    assert c.rc == 0
    c.close()
    # A client that never sends a request is cut off (10 s), and so is the unfinished one.
    idle.settimeout(15)
    start = time.monotonic()
    assert idle.recv(10) == b""
    assert time.monotonic() - start < 14
    for s in partial:
        s.settimeout(5)
        assert s.recv(10) == b""
        s.close()
    ops.assert_alive()


def test_http_and_mqtt_connections_share_the_shard_table(ops):
    """HTTP connections are entries of shard 0's one connection table beside MQTT clients: at most
    64 open at once (the next is closed at once), never counted as clients, and their slots are
    reused by MQTT clients and HTTP requests alike."""
    base = metrics(ops)["apus_connections_count"]
    # 70 at once (the idle ones are cut off only after 10 s): at least 6 are closed at once.
    opened = [socket.create_connection(("127.0.0.1", ops.http_port)) for _ in range(70)]
    refused = set()

    def closed_at_once():
        readable, _, _ = select.select([s for s in opened if s not in refused], [], [], 0.05)
        for s in readable:
            try:
                if s.recv(10) == b"":
                    refused.add(s)
            except ConnectionResetError:
                refused.add(s)
        return len(refused) >= 6 or None
    wait_until(closed_at_once, timeout=5, message="the connections past 64 closed")
    held = [s for s in opened if s not in refused]
    assert len(held) <= 64
    clients = [V5(ops) for _ in range(4)]
    assert all(c.rc == 0 for c in clients)
    for s in held:
        s.close()

    def served():
        try:
            return http(ops, "GET", "/health")[0] == 200 or None
        except (OSError, urllib.error.URLError):
            return None
    wait_until(served, message="HTTP served once the held connections closed")
    # MQTT clients come and go on the same shards while requests are answered: slots freed by
    # one protocol are taken by the other.
    for i in range(100):
        assert http(ops, "GET", "/health")[0] == 200
        if i % 10 == 0:
            c = V5(ops)
            assert c.rc == 0
            c.close()
    m = wait_until(lambda: (lambda m: m if m["apus_connections_count"] == base + 4 else None)(metrics(ops)),
                   message="4 more MQTT connections counted, no HTTP one")
    assert m["apus_connections_count"] == base + 4
    for c in clients:
        c.close()
    ops.assert_alive()


# ---- $SYS, listeners, logging ----

def test_sys_topics(ops):
    out = subprocess.run(["mosquitto_sub", "-p", str(ops.port), "-t", "$SYS/broker/version", "-C", "1", "-W", "10"],
                         capture_output=True, text=True, timeout=15)
    assert out.stdout.startswith("apus ")
    seen = {}
    c = V5(ops)
    c.subscribe("$SYS/broker/#", qos=0)
    required = {"version", "uptime", "clients/connected", "clients/disconnected", "clients/total", "clients/maximum",
                "messages/received", "messages/sent", "messages/stored", "publish/messages/received",
                "publish/messages/sent", "publish/messages/dropped", "bytes/received", "bytes/sent",
                "subscriptions/count", "retained messages/count", "load/messages/received/1min",
                "load/messages/received/5min", "load/messages/received/15min", "load/bytes/sent/1min"}

    def all_seen():
        while True:
            try:
                m = c.messages.get(timeout=0.1)
            except queue.Empty:
                # The first (retained) values may predate this client; later ones count it.
                return required <= seen.keys() and int(seen["clients/connected"]) >= 1 \
                    and int(seen["subscriptions/count"]) >= 1
            seen[m.topic.removeprefix("$SYS/broker/")] = m.payload.decode()
    wait_until(all_seen, timeout=6, message=f"$SYS topics (missing {required - seen.keys()})")
    assert re.fullmatch(r"\d+ seconds", seen["uptime"])
    assert re.fullmatch(r"\d+\.\d\d", seen["load/messages/received/1min"])
    c.close()


def test_several_listeners(ops):
    topic = "open/" + unique("listeners")
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(ops.second_port), "-t", topic, "-C", "1", "-W", "10"],
                           stdout=subprocess.PIPE, text=True)
    try:
        def delivered():
            subprocess.run(["mosquitto_pub", "-p", str(ops.port), "-t", topic, "-m", "across"], check=True, timeout=TIMEOUT)
            return sub.poll() is not None
        wait_until(delivered, message="a message from one listener to the other")
        assert sub.communicate(timeout=TIMEOUT)[0] == "across\n"
    finally:
        sub.kill()


def test_failed_login_is_logged(ops):
    cid = unique("intruder")
    r = subprocess.run(["mosquitto_pub", "-p", str(ops.port), "-i", cid, "-u", "alice", "-P", "wrong", "-t", "open/x",
                        "-m", "x"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode != 0
    line = wait_until(lambda: next((l for l in ops.log_tail(200).splitlines() if cid in l), None),
                      message="the refused login in the log")
    assert "login refused" in line and "username=alice" in line and "address=127.0.0.1:" in line, line


# ---- SIGHUP (last: it changes the files) ----

def test_sighup_reloads_passwords_and_acl_without_dropping_connections(ops):
    alice = V5(ops, user="alice", password="secret")
    assert alice.rc == 0
    info = alice.m.publish("later/x", b"1", qos=1)
    assert alice.event("puback")[2] == 0x87  # not in alice's ACL yet
    assert V5(ops, user="bob", password="pw2").rc == 0x86

    subprocess.run(["mosquitto_passwd", "-b", str(ops.pw), "bob", "pw2"], check=True)
    ops.acl.write_text(ACL + "topic readwrite later/#\n")
    ops.proc.send_signal(signal.SIGHUP)

    def bob_gets_in():
        b = V5(ops, user="bob", password="pw2")
        b.close()
        return b.rc == 0
    wait_until(bob_gets_in, message="bob's login after SIGHUP")

    def alice_may_publish():
        alice.m.publish("later/x", b"2", qos=1)
        return alice.event("puback")[2] != 0x87
    wait_until(alice_may_publish, message="alice's new ACL rule")  # on her same connection
    assert alice.m.is_connected() and alice.events.empty()

    # A broken file on SIGHUP keeps what was loaded.
    ops.acl.write_text("frobnicate everything\n")
    ops.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in ops.log_tail(50), message="the reload error in the log")
    alice.m.publish("later/x", b"3", qos=1)
    assert alice.event("puback")[2] != 0x87
    ops.acl.write_text(ACL)
    alice.close()
    ops.assert_alive()


# ---- other brokers ----

def test_persistent_client_expiration(tmp_path):
    conf = tmp_path / "apus.conf"
    conf.write_text("persistent_client_expiration 2s\n")
    b = Broker(["--config", str(conf)])
    try:
        cid = unique("persist")

        def connect():
            present = queue.Queue()
            m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311, clean_session=False)
            m.on_connect = lambda c, u, flags, rc, props: present.put(flags.session_present)
            m.connect(b.host, b.port)
            m.loop_start()
            p = present.get(timeout=TIMEOUT)
            m.disconnect()
            m.loop_stop()
            return p

        assert connect() is False
        assert connect() is True   # kept while offline for less than 2 s
        time.sleep(3.5)            # the expiry itself is what is tested: the session must be gone by now
        assert connect() is False
    finally:
        b.stop()


@pytest.mark.parametrize("text,expected", [
    ("sys_interval 5\nbogus_key 1\n", ":2: unknown"),
    ("listener 1883\nmax_inflight_messages many\n", ":2: max_inflight_messages needs an integer"),
    ("persistent_client_expiration 3 fortnights\n", ":1: persistent_client_expiration needs a duration"),
    ("http_listener\n", ":1:"),
    ("http_api_key nocolon\n", ":1: http_api_key needs KEY:SECRET"),
])
def test_config_errors_name_the_line(tmp_path, text, expected):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    r = subprocess.run([APUS_BIN, "--config", str(conf)], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode != 0
    assert str(conf) + expected in r.stderr, r.stderr


def test_mosquitto_conf_with_every_supported_key(tmp_path):
    """A mosquitto.conf using every key Apus supports loads, and the values take effect."""
    pw, acl = tmp_path / "passwd", tmp_path / "acl"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "alice", "secret"], check=True)
    acl.write_text("user alice\ntopic readwrite #\n")
    extra = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"""# a mosquitto 2.0 configuration
listener 1 127.0.0.1
listener {extra} 127.0.0.1
allow_anonymous false
password_file {pw}
acl_file {acl}
max_inflight_messages 10
max_queued_messages 100
max_packet_size 10000
message_size_limit 5000
max_keepalive 30
max_connections 50
persistent_client_expiration 1d
sys_interval 0
retain_available true
set_tcp_nodelay false
shards 2
http_listener 0
""")
    b = Broker(["--config", str(conf)])
    try:
        c = V5(b, port=extra, user="alice", password="secret")
        assert c.rc == 0
        c.close()
        got = queue.Queue()
        m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("ka"), protocol=mqtt.MQTTv5)
        m.username_pw_set("alice", "secret")
        m.on_connect = lambda cl, u, flags, rc, p: got.put(p)
        m.connect(b.host, b.port, keepalive=600)
        m.loop_start()
        connack = got.get(timeout=TIMEOUT)
        m.disconnect()
        m.loop_stop()
        assert connack.ServerKeepAlive == 30
        assert connack.MaximumPacketSize == 10000
        assert V5(b).rc == 0x87  # allow_anonymous false
    finally:
        b.stop()


def test_hash_inside_a_value_is_kept_and_comments_after_whitespace(tmp_path):
    """`#` starts a comment at a line's start or after whitespace only: a path containing `#`
    (valid in mosquitto.conf, which has only whole-line comments) is read whole."""
    folder = tmp_path / "conf#2"
    folder.mkdir()
    pw = folder / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "bob", "pw#1"], check=True)
    conf = tmp_path / "apus.conf"
    conf.write_text(f"""# whole-line comment
   # indented comment
allow_anonymous false   # trailing comment
password_file {pw}
""")
    b = Broker(["--config", str(conf)])
    try:
        assert V5(b, user="bob", password="pw#1").rc == 0
        assert V5(b, user="bob", password="wrong").rc == 0x86
        assert V5(b).rc == 0x87  # allow_anonymous false took effect despite its comment
    finally:
        b.stop()


def test_http_api_key(tmp_path):
    """With http_api_key, /api/v5/... needs HTTP Basic authentication (EMQX's API key and secret);
    /metrics and /health stay open for scrapers and probes."""
    port = free_port()
    conf = tmp_path / "apus.conf"
    conf.write_text(f"http_listener {port}\nhttp_api_key ops:s3cret\n")
    b = Broker(["--config", str(conf)])
    try:
        url = f"http://127.0.0.1:{port}"
        body = json.dumps({"topic": "open/k", "payload": "x"})

        def post(*auth):
            out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *auth, "-X", "POST", "-d", body,
                                  url + "/api/v5/publish"], capture_output=True, text=True, timeout=TIMEOUT, check=True)
            return out.stdout
        assert post() == "401"
        assert post("-u", "ops:wrong") == "401"
        assert post("-u", "ops:s3cret") == "202"
        headers = subprocess.run(["curl", "-sS", "-i", "-X", "POST", "-d", body, url + "/api/v5/publish"],
                                 capture_output=True, timeout=TIMEOUT, check=True).stdout.decode()
        assert 'WWW-Authenticate: Basic realm="apus"' in headers
        for auth, expected in (([], "401"), (["-u", "ops:s3cret"], "202")):
            code = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *auth, "-X", "POST",
                                   "-d", "[" + body + "]", url + "/api/v5/publish/bulk"],
                                  capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout
            assert code == expected, ("bulk", auth)
        for path in ("/metrics", "/health"):
            code = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url + path],
                                  capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout
            assert code == "200", path
    finally:
        b.stop()
