"""Webhooks (EMQX's event hooks) against a real HTTP server started by the test: every event with
its fields, per-client order, the topic filter, headers, the endpoint down and back, and an
endpoint that hangs while clients go on publishing."""
import http.server
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from conftest import BROKER, TIMEOUT, Client, ConfiguredApus, free_port, unique, wait_until

pytestmark = pytest.mark.skipif(BROKER != "apus", reason="apus webhooks")


class Endpoint:
    """A real HTTP/1.1 server (Python's http.server, keep-alive) that records every POST."""

    def __init__(self, port=None, hang=False):
        self.events = []
        self.headers = []
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hang:
                    time.sleep(30)
                    return
                with owner.lock:
                    owner.events.append(json.loads(body))
                    owner.headers.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, event, clientid=None):
        with self.lock:
            return [e for e in self.events if e["event"] == event and (clientid is None or e.get("clientid") == clientid)]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


Apus = ConfiguredApus


@pytest.fixture
def made():
    things = []

    def add(thing):
        things.append(thing)
        return thing

    yield add
    for t in reversed(things):
        try:
            if isinstance(t, Client):
                t.close()
            else:
                t.stop()
        except Exception:
            pass


ALL = "client.connected,client.disconnected,client.connack,session.subscribed,session.unsubscribed,message.publish,message.delivered,message.dropped"


def test_every_event_arrives_with_its_fields_in_order(made):
    endpoint = made(Endpoint())
    d = tempfile.mkdtemp()
    passwd = os.path.join(d, "passwd")
    subprocess.run(["mosquitto_passwd", "-c", "-b", passwd, "alice", "secret"], check=True, capture_output=True)
    a = made(Apus([f"password_file {passwd}", "allow_anonymous false", "webhook all",
                   f"webhook_url http://127.0.0.1:{endpoint.port}/hook", f"webhook_events {ALL}",
                   "webhook_header Authorization: Bearer t0k3n", "webhook_timeout 2"]))
    cid = unique("dev")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.username_pw_set("alice", "secret")
    got = []
    subscribed = []
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.on_subscribe = lambda cl, u, mid, rcs, p: subscribed.append(mid)
    c.connect(a.host, a.port, keepalive=30)
    c.loop_start()
    wait_until(c.is_connected, message="connected")
    c.subscribe("sensors/#", 1)
    wait_until(lambda: subscribed, message="SUBACK")
    c.publish("sensors/t", b"21.5", 1).wait_for_publish(TIMEOUT)
    wait_until(lambda: got, message="own message back")
    c.publish("nobody/here", b"x", 0)
    c.unsubscribe("sensors/#")
    time.sleep(0.1)  # UNSUBACK; then a clean DISCONNECT
    c.disconnect()
    c.loop_stop()
    bad = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("bad"), protocol=mqtt.MQTTv5)
    bad.username_pw_set("alice", "wrong")
    try:
        bad.connect(a.host, a.port)
        bad.loop(timeout=1)
    except Exception:
        pass
    wait_until(lambda: endpoint.of("client.disconnected", cid) and endpoint.of("client.connack"), message="the last events")
    mine = [e for e in endpoint.events if e.get("clientid") == cid]
    order = [e["event"] for e in mine]
    assert order == ["client.connected", "session.subscribed", "message.publish", "message.delivered", "message.publish",
                     "message.dropped", "session.unsubscribed", "client.disconnected"], order
    connected = mine[0]
    assert connected["username"] == "alice" and connected["proto_ver"] == 5 and connected["keepalive"] == 30
    assert connected["clean_start"] is True and connected["connected_at"] > 1_700_000_000_000
    assert mine[1]["topic"] == "sensors/#" and mine[1]["qos"] == 1
    publish = mine[2]
    assert (publish["topic"], publish["payload"], publish["qos"], publish["retain"]) == ("sensors/t", "21.5", 1, False)
    delivered = mine[3]
    assert delivered["from_clientid"] == cid and delivered["topic"] == "sensors/t" and delivered["payload"] == "21.5"
    assert mine[5]["reason"] == "no_subscribers" and mine[5]["topic"] == "nobody/here"
    assert mine[6]["topic"] == "sensors/#"
    assert mine[7]["reason"] == "normal"
    refused = endpoint.of("client.connack")[0]
    assert refused["reason_code"] == "bad_user_name_or_password" and refused["username"] == "alice"
    assert all(e["node"] and e["timestamp"] > 0 for e in endpoint.events)
    assert endpoint.headers[0]["Authorization"] == "Bearer t0k3n"
    assert endpoint.headers[0]["Content-Type"] == "application/json"
    wait_until(lambda: a.metric('apus_webhook_events_total{webhook="all",result="sent"}') >= len(mine) + 1, message="counted as sent")


def test_topic_filter_and_per_client_order_under_load(made):
    endpoint = made(Endpoint())
    a = made(Apus(["webhook sensors", f"webhook_url http://127.0.0.1:{endpoint.port}/",
                   "webhook_events message.publish", "webhook_topic sensors/#"]))
    pubs = [made(Client(a)) for _ in range(4)]
    for i in range(250):
        for n, p in enumerate(pubs):
            p.publish(f"sensors/{n}", f"{i}".encode(), 0)
            p.publish(f"other/{n}", f"{i}".encode(), 0)
    wait_until(lambda: len(endpoint.of("message.publish")) >= 1000, message="1000 events")
    time.sleep(0.2)
    assert len(endpoint.of("message.publish")) == 1000, "only the filter's topics"
    for n, p in enumerate(pubs):
        payloads = [int(e["payload"]) for e in endpoint.of("message.publish", p.client_id)]
        assert payloads == list(range(250)), f"client {n}'s events in order"


def test_endpoint_down_then_back(made):
    port = free_port()
    a = made(Apus(["webhook h", f"webhook_url http://127.0.0.1:{port}/", "webhook_events client.connected", "webhook_timeout 1"]))
    first = made(Client(a, client_id=unique("while-down")))
    wait_until(lambda: a.metric('apus_webhook_events_total{webhook="h",result="failed"}') == 1, message="the failure counted")
    assert "not delivered" in a.log_text()
    endpoint = made(Endpoint(port=port))
    second = made(Client(a, client_id=unique("back")))
    wait_until(lambda: endpoint.of("client.connected", second.client_id), message="delivered once it is back")
    assert not endpoint.of("client.connected", first.client_id)
    # Counted as sent once the endpoint's answer is read (after it recorded the event).
    wait_until(lambda: a.metric('apus_webhook_events_total{webhook="h",result="sent"}') == 1, message="counted as sent")


def test_a_hanging_endpoint_does_not_slow_the_broker(made):
    endpoint = made(Endpoint(hang=True))
    a = made(Apus(["webhook slow", f"webhook_url http://127.0.0.1:{endpoint.port}/", "webhook_events message.publish",
                   "webhook_timeout 2"]))
    sub, pub = made(Client(a)), made(Client(a))
    sub.subscribe("t/#", 1)
    for i in range(2000):
        pub.publish("t/x", f"{i}".encode(), 1)  # each waits for its PUBACK
    got = sub.receive(2000)
    assert [int(p) for _, p, _ in got] == list(range(2000))
    # All delivered while the hook is still stuck on its first POST (2 s timeout, 3 attempts):
    # nothing on the data path waited for it; its events wait in its queue.
    assert a.metric('apus_webhook_events_total{webhook="slow",result="sent"}') == 0
    wait_until(lambda: a.metric('apus_webhook_queue{webhook="slow"}') >= 1999, message="the events queued")
