"""WebSocket listeners (MQTT over WebSocket, RFC 6455 and MQTT's section 6), ws and wss, with real
clients: paho-mqtt's websockets transport (also over TLS), the websocket-client library for
frame-level tests (packets split over frames, several packets in one frame, fragmented messages with
a ping between the fragments, text and oversized frames, the close handshake), a raw socket for what
a library will not send (the upgrade request by hand, unmasked frames, bad lengths and codes), and
a real browser: headless Chromium running a page whose JavaScript speaks MQTT 3.1.1 through its own
`WebSocket` API. One broker serves a plain listener, ws listeners with and without a required path
and an origin allow-list, wss, and the listener the browser's page origin is allowed on; after each
hostile case the broker must still serve a TCP client. A second broker has a short connect_timeout
and a listener that trusts X-Forwarded-For. Needs the websocket-client package (the module is
skipped without it); the browser test needs Debian's `chromium` (skipped without it)."""
import base64
import hashlib
import json
import http.server
import os
import queue
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse

import paho.mqtt.client as mqtt
import pytest

from conftest import APUS_BIN, BROKER, TIMEOUT, Client, connect_packet, free_port, unique, wait_until

websocket = pytest.importorskip("websocket", reason="the websocket-client package (pip install websocket-client)")
ABNF = websocket.ABNF

pytestmark = pytest.mark.skipif(BROKER != "apus", reason="apus configuration")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HEADERS_SIZE = 1024  # websockets_headers_size of the module's broker
MAX_FRAME = 1000  # websockets_max_frame_size of its /mqtt listener
ALLOWED_ORIGIN = "http://allowed.example"
CONNACK_OK = (0x20, b"\x00\x00")


# MARK: MQTT packets by hand

def remaining_length(n):
    out = bytearray()
    while True:
        digit, n = n % 128, n // 128
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + remaining_length(len(body)) + body


def mqtt_string(s):
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def subscribe_packet(packet_id, topic, qos=0):
    return packet(0x82, packet_id.to_bytes(2, "big") + mqtt_string(topic) + bytes([qos]))


def publish_packet(topic, payload, qos=0, packet_id=1):
    return packet(0x30 | qos << 1, mqtt_string(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload)


def will_connect_packet(client_id, topic, message, qos=1):
    body = mqtt_string("MQTT") + bytes([4, 0x02 | 0x04 | qos << 3]) + (60).to_bytes(2, "big")
    return packet(0x10, body + mqtt_string(client_id) + mqtt_string(topic) + mqtt_string(message))


def split_packet(stream):
    """(first byte, body, rest) of the first whole packet in `stream`, or None."""
    length, shift, i = 0, 0, 1
    while True:
        if i >= len(stream):
            return None
        b = stream[i]
        length |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            break
    if len(stream) < i + length:
        return None
    return stream[0], bytes(stream[i:i + length]), stream[i + length:]


def publish_fields(first, body):
    """(topic, payload, qos) of a PUBLISH packet."""
    assert first >> 4 == 3, f"not a PUBLISH: {first:#x}"
    qos = (first >> 1) & 3
    n = int.from_bytes(body[:2], "big")
    return body[2:2 + n].decode(), body[2 + n + (2 if qos else 0):], qos


# MARK: the WebSocket handshake and frames by hand

def accept_value(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(path="/", key=None, version="13", upgrade=True, connection="Upgrade", protocols="mqtt",
                    origin=None, host="127.0.0.1", method="GET", http_version="HTTP/1.1", extra=()):
    lines = [f"{method} {path} {http_version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    if upgrade:
        lines.append("Upgrade: websocket")
    if connection:
        lines.append(f"Connection: {connection}")
    if key is not False:
        lines.append(f"Sec-WebSocket-Key: {key or new_key()}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_head(head):
    """(status, {lower-case name: value}) of an HTTP response head."""
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ")[:2]
    assert version == "HTTP/1.1", lines[0]
    headers = {}
    for line in lines[1:]:
        if line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(status), headers


def client_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length_form=None):
    """A client frame; `length_form` forces the 16- or 64-bit length encoding (126, 127)."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    form = length_form or (n if n < 126 else 126 if n <= 0xFFFF else 127)
    out = bytes([first, (0x80 if mask else 0) | form])
    if form == 126:
        out += n.to_bytes(2, "big")
    elif form == 127:
        out += n.to_bytes(8, "big")
    if not mask:
        return out + payload
    key = os.urandom(4)
    return out + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class RawWS:
    """A WebSocket connection on a plain socket, the upgrade request written by hand."""

    def __init__(self, port, request=None, **request_args):
        self.key = request_args.pop("key", None) or new_key()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.sendall(request if request is not None else upgrade_request(key=self.key, **request_args))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed before the response head ended: {data!r}"
            data += chunk
        head, self.buf = data.split(b"\r\n\r\n", 1)
        self.status, self.headers = parse_head(head)
        self.stream = b""

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kwargs):
        self.sock.sendall(client_frame(opcode, payload, **kwargs))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed in a frame ({len(self.buf)} of {n} bytes)"
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self):
        """(fin, opcode, payload) of the next server frame, which must be unmasked."""
        first, second = self._read(2)
        assert not second & 0x80, "a server frame is never masked"
        n = second & 0x7F
        if n == 126:
            n = int.from_bytes(self._read(2), "big")
        elif n == 127:
            n = int.from_bytes(self._read(8), "big")
        return bool(first & 0x80), first & 0x0F, self._read(n)

    def send_packet(self, data):
        self.send_frame(ABNF.OPCODE_BINARY, data)

    def read_packet(self):
        while True:
            p = split_packet(self.stream)
            if p:
                first, body, self.stream = p
                return first, body
            fin, opcode, payload = self.read_frame()
            assert (fin, opcode) == (True, ABNF.OPCODE_BINARY), f"frame {opcode} {payload!r}"
            self.stream += payload

    def expect_close(self):
        """The server's close frame (code, reason), and then the end of the TCP stream."""
        fin, opcode, payload = self.read_frame()
        assert (fin, opcode) == (True, ABNF.OPCODE_CLOSE), f"not a close frame: {opcode} {payload!r}"
        assert_eof(self.sock, self.buf)
        return int.from_bytes(payload[:2], "big"), payload[2:]

    def close(self):
        self.sock.close()


def assert_eof(sock, pending=b""):
    """The server closes the TCP connection without sending more than `pending` (already read)."""
    assert not pending, f"bytes after the close frame: {pending!r}"
    sock.settimeout(TIMEOUT)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        data = b""
    assert data == b"", f"bytes after the close frame: {data!r}"


def http_refusal(port, request):
    """Sends `request`; (status, headers, body) of the answer, which the server must follow with a close."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(request)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "no answer before the close"
    status, headers = parse_head(head)
    return status, headers, body


class WSClient:
    """A websocket-client connection that carries MQTT packets by hand."""

    def __init__(self, port, path="/", subprotocols=("mqtt",), scheme="ws", **kwargs):
        kwargs.setdefault("suppress_origin", True)
        self.ws = websocket.create_connection(f"{scheme}://127.0.0.1:{port}{path}", timeout=TIMEOUT,
                                              subprotocols=list(subprotocols), **kwargs)
        self.stream = b""

    def frame(self, data, opcode=ABNF.OPCODE_BINARY, fin=1):
        self.ws.send_frame(ABNF.create_frame(data, opcode, fin))

    def recv(self):
        """(opcode, payload) of the next message or control frame."""
        return self.ws.recv_data(control_frame=True)

    def read_packet(self):
        while True:
            p = split_packet(self.stream)
            if p:
                first, body, self.stream = p
                return first, body
            opcode, data = self.recv()
            assert opcode == ABNF.OPCODE_BINARY, f"frame {opcode} {data!r}"
            self.stream += data

    def connect(self, client_id=None):
        self.frame(connect_packet(client_id or unique("wsc")))
        assert self.read_packet() == CONNACK_OK

    def expect_close(self):
        """The server's close frame (code, reason) (websocket-client answers it), then the TCP end."""
        opcode, data = self.recv()
        assert opcode == ABNF.OPCODE_CLOSE, f"not a close frame: {opcode} {data!r}"
        assert_eof(self.ws.sock)
        return int.from_bytes(data[:2], "big"), data[2:]

    def close(self):
        try:
            self.ws.sock and self.ws.sock.close()
        except OSError:
            pass


class WSPaho(Client):
    """conftest's paho client (its subscribe/publish/receive), over paho's websockets transport."""

    def __init__(self, port, path="/mqtt", ca=None, headers=None):
        self.client_id = unique("ws")
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, transport="websockets")
        self.mqtt.ws_set_options(path=path, headers=headers)
        if ca:
            self.mqtt.tls_set(ca_certs=ca)
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = {}
        self.mqtt.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.qos))
        self.mqtt.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.mqtt.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.__setitem__(mid, rcs)
        self.mqtt.connect("127.0.0.1", port, keepalive=60)
        self.mqtt.loop_start()
        rc = self.connack.get(timeout=TIMEOUT)
        assert not rc.is_failure, f"CONNACK {rc}"


# MARK: the broker

class WSBroker:
    """apus started on a configuration file; `ports` are its listeners' ports by name (`plain` is
    the MQTT-over-TCP one, which `host` and `port` name for conftest's clients)."""

    def __init__(self, conf_text, ports, shards=2):
        self.ports = ports
        self.host, self.port = "127.0.0.1", ports["plain"]
        self.conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        self.conf.write(conf_text)
        self.conf.close()
        self.log = tempfile.NamedTemporaryFile(prefix="broker-ws-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([APUS_BIN, "--config", self.conf.name, "--shards", str(shards), "--log-level", "info"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 15
        waiting = [p for name, p in ports.items() if name != "wss"]
        while waiting:
            assert self.proc.poll() is None, f"apus exited at start-up:\n{self.log_text()}"
            try:
                socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2).close()
                waiting.pop(0)
            except OSError:
                assert time.monotonic() < end, "apus did not start listening"
                time.sleep(0.02)

    def log_text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def alive(self):
        assert self.proc.poll() is None, f"apus died:\n{self.log_text()[-3000:]}"

    assert_alive = alive  # conftest's `clients` fixture calls this at teardown

    def stop(self):
        self.alive()
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=10) == 0, self.log_text()[-3000:]


def assert_serves(broker):
    """The broker is alive and a TCP client still gets its CONNACK and PINGRESP."""
    broker.alive()
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", broker.ports["plain"]), timeout=TIMEOUT) as s:
            s.sendall(connect_packet(unique("alive")) + b"\xc0\x00")
            while len(data) < 6:
                chunk = s.recv(64)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        data += f" ({e!r})".encode()
    assert data == b"\x20\x02\x00\x00\xd0\x00", f"a TCP client got {data!r}; the broker's log:\n{broker.log_text()[-3000:]}"


GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class PageServer:
    """The browser test's page and what its JavaScript reports back (GET /report?kind=&value=).
    GET /hold (an image of the page) is answered only once the page reported the kinds in HOLD_FOR
    (or after 20 s): the page's load event, and so Chromium's --dump-dom, waits for the MQTT exchange."""

    HOLD_FOR = {"close", "denied"}

    def __init__(self):
        self.reports = {}
        self.changed = threading.Condition()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/page.html":
                    body, kind = PAGE.encode(), "text/html; charset=utf-8"
                elif url.path == "/report":
                    q = urllib.parse.parse_qs(url.query)
                    with server.changed:
                        server.reports.setdefault(q.get("kind", [""])[0], q.get("value", [""])[0])
                        server.changed.notify_all()
                    body, kind = b"ok", "text/plain"
                elif url.path == "/hold":
                    server.wait_for(server.HOLD_FOR, timeout=20)
                    body, kind = GIF, "image/gif"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, kinds, timeout):
        """The reports so far ({kind: first value}) once all of `kinds` are in, or at `timeout`."""
        with self.changed:
            self.changed.wait_for(lambda: kinds <= self.reports.keys(), timeout=timeout)
            return dict(self.reports)

    def clear(self):
        with self.changed:
            self.reports.clear()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def certs():
    root = tempfile.mkdtemp(prefix="apus-ws-")
    crt, key = os.path.join(root, "server.crt"), os.path.join(root, "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=20)
    return {"crt": crt, "key": key}


@pytest.fixture(scope="module")
def page():
    p = PageServer()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def broker(certs, page):
    ports = {"plain": free_port(), "ws": free_port(), "ws_mqtt": free_port(), "wss": free_port(), "browser": free_port()}
    conf = f"""allow_anonymous true
websockets_headers_size {HEADERS_SIZE}
listener {ports['plain']} 127.0.0.1
listener {ports['ws']} 127.0.0.1
protocol websockets
listener {ports['ws_mqtt']} 127.0.0.1
protocol websockets
websockets_path /mqtt
websockets_origin {ALLOWED_ORIGIN}
websockets_max_frame_size {MAX_FRAME}
listener {ports['wss']} 127.0.0.1
protocol websockets
certfile {certs['crt']}
keyfile {certs['key']}
listener {ports['browser']} 127.0.0.1
protocol websockets
websockets_path /mqtt
websockets_origin {page.origin}
"""
    b = WSBroker(conf, ports)
    yield b
    b.stop()


@pytest.fixture
def ws_clients(broker):
    """Makes paho websockets clients (`paho(port, ...)`) and websocket-client ones (`raw(port, ...)`);
    closes them after the test."""
    made = []

    class Make:
        @staticmethod
        def paho(port, **kwargs):
            c = WSPaho(port, **kwargs)
            made.append(c)
            return c

        @staticmethod
        def raw(port, **kwargs):
            c = WSClient(port, **kwargs)
            made.append(c)
            return c

    yield Make
    for c in made:
        try:
            c.close()
        except Exception:
            pass
    broker.alive()


# MARK: 1, 2: real clients, ws and wss, with TCP ones

@pytest.mark.parametrize("listener", ["ws", "wss"])
def test_paho_subscribes_and_publishes_qos0_and_qos1(broker, certs, ws_clients, listener):
    c = ws_clients.paho(broker.ports[listener], path="/mqtt", ca=certs["crt"] if listener == "wss" else None)
    topic = unique(f"paho/{listener}")
    assert c.subscribe(f"{topic}/#", qos=1)[0] == 1
    c.publish(f"{topic}/q0", b"zero", qos=0)
    c.publish(f"{topic}/q1", b"one", qos=1)  # waits for the PUBACK
    got = sorted(c.receive(2))
    assert got == [(f"{topic}/q0", b"zero", 0), (f"{topic}/q1", b"one", 1)]


@pytest.mark.parametrize("listener", ["ws", "wss"])
def test_ws_and_tcp_clients_exchange_small_and_70000_byte_payloads(broker, certs, clients, ws_clients, listener):
    ca = certs["crt"] if listener == "wss" else None
    topic = unique(f"mix/{listener}")
    big = os.urandom(70_000)  # a frame with the 64-bit length each way, many TCP segments (TLS records)
    # WebSocket subscriber, TCP publisher.
    ws_sub = ws_clients.paho(broker.ports[listener], ca=ca)
    ws_sub.subscribe(f"{topic}/to-ws", qos=1)
    tcp_pub = clients()
    tcp_pub.publish(f"{topic}/to-ws", b"small", qos=1)
    tcp_pub.publish(f"{topic}/to-ws", big, qos=1)
    assert ws_sub.receive(2) == [(f"{topic}/to-ws", b"small", 1), (f"{topic}/to-ws", big, 1)]
    # TCP subscriber, WebSocket publisher.
    tcp_sub = clients()
    tcp_sub.subscribe(f"{topic}/to-tcp", qos=1)
    ws_pub = ws_clients.paho(broker.ports[listener], ca=ca)
    ws_pub.publish(f"{topic}/to-tcp", b"small", qos=1)
    ws_pub.publish(f"{topic}/to-tcp", big, qos=0)
    assert tcp_sub.receive(2) == [(f"{topic}/to-tcp", b"small", 1), (f"{topic}/to-tcp", big, 0)]


def test_paho_on_a_listener_with_an_origin_allow_list(broker, ws_clients):
    # paho sends Origin: http://127.0.0.1:PORT, which that listener does not allow: the upgrade is refused.
    with pytest.raises(mqtt.WebsocketConnectionError, match="handshake error"):
        ws_clients.paho(broker.ports["ws_mqtt"], path="/mqtt")
    paho_origin = f"http://127.0.0.1:{broker.ports['ws_mqtt']}"
    status, _, _ = http_refusal(broker.ports["ws_mqtt"], upgrade_request(path="/mqtt", origin=paho_origin))
    assert status == 403
    # With the allowed origin it connects (and paho's Sec-Websocket-Version spelling is accepted).
    c = ws_clients.paho(broker.ports["ws_mqtt"], path="/mqtt", headers={"Origin": ALLOWED_ORIGIN})
    topic = unique("origin/ok")
    c.subscribe(topic, qos=1)
    c.publish(topic, b"allowed", qos=1)
    assert c.receive(1) == [(topic, b"allowed", 1)]
    assert_serves(broker)


# MARK: 3: frames

def test_handwritten_connect_gets_connack_with_the_mqtt_subprotocol(broker, ws_clients):
    c = ws_clients.raw(broker.ports["ws"], path="/mqtt")
    assert c.ws.getsubprotocol() == "mqtt"
    c.frame(connect_packet(unique("hand")))
    assert c.read_packet() == CONNACK_OK
    c.frame(b"\xc0\x00")  # PINGREQ
    assert c.read_packet() == (0xD0, b"")


def test_a_connect_split_over_three_frames(broker, ws_clients):
    c = ws_clients.raw(broker.ports["ws"])
    connect = connect_packet(unique("split3"))
    for part in (connect[:1], connect[1:7], connect[7:]):  # three messages, each FIN
        c.frame(part)
    assert c.read_packet() == CONNACK_OK
    # A PUBLISH to itself spread over many small frames, then its bytes back.
    topic = unique("split/self")
    c.frame(subscribe_packet(1, topic, 1))
    assert c.read_packet() == (0x90, b"\x00\x01\x01")
    payload = os.urandom(3000)
    pub = publish_packet(topic, payload, qos=1, packet_id=2)
    for i in range(0, len(pub), 97):
        c.frame(pub[i:i + 97])
    got = {c.read_packet() for _ in range(2)}
    assert (0x40, b"\x00\x02") in got  # PUBACK
    (first, body), = got - {(0x40, b"\x00\x02")}
    assert publish_fields(first, body) == (topic, payload, 1)


def test_connect_subscribe_and_publish_in_one_frame(broker, ws_clients):
    c = ws_clients.raw(broker.ports["ws"])
    topic = unique("one/frame")
    c.frame(connect_packet(unique("oneframe")) + subscribe_packet(7, topic, 1) + publish_packet(topic, b"together", 1, 8))
    assert c.read_packet() == CONNACK_OK
    # SUBACK, PUBACK and the message, in an order MQTT leaves open (a matching PUBLISH may come
    # before the SUBACK, MQTT 3.1.1 §3.8.4).
    got = {c.read_packet() for _ in range(3)}
    assert {(0x90, b"\x00\x07\x01"), (0x40, b"\x00\x08")} <= got, got
    (first, body), = got - {(0x90, b"\x00\x07\x01"), (0x40, b"\x00\x08")}
    assert publish_fields(first, body) == (topic, b"together", 1)


def test_a_fragmented_message_with_a_ping_between_the_fragments(broker, ws_clients):
    c = ws_clients.raw(broker.ports["ws"])
    topic = unique("frag")
    data = connect_packet(unique("frag")) + subscribe_packet(1, topic, 0) + publish_packet(topic, b"in fragments")
    c.frame(data[:5], ABNF.OPCODE_BINARY, fin=0)
    c.frame(b"ping-1", ABNF.OPCODE_PING)
    # The pong comes before anything else: the CONNECT is not complete yet.
    assert c.recv() == (ABNF.OPCODE_PONG, b"ping-1")
    c.frame(data[5:20], ABNF.OPCODE_CONT, fin=0)
    c.frame(b"x" * 125, ABNF.OPCODE_PING)  # the largest control frame
    c.frame(data[20:], ABNF.OPCODE_CONT, fin=1)
    assert c.recv() == (ABNF.OPCODE_PONG, b"x" * 125)
    assert c.read_packet() == CONNACK_OK
    got = {c.read_packet() for _ in range(2)}
    assert (0x90, b"\x00\x01\x00") in got, got
    (first, body), = got - {(0x90, b"\x00\x01\x00")}
    assert publish_fields(first, body) == (topic, b"in fragments", 0)
    # An empty ping gets an empty pong on the open connection too; an unsolicited pong is ignored.
    c.frame(b"", ABNF.OPCODE_PING)
    assert c.recv() == (ABNF.OPCODE_PONG, b"")
    c.frame(b"unsolicited", ABNF.OPCODE_PONG)
    c.frame(b"\xc0\x00")
    assert c.read_packet() == (0xD0, b"")


def test_frames_over_wss(broker, certs, ws_clients):
    c = ws_clients.raw(broker.ports["wss"], scheme="wss", sslopt={"ca_certs": certs["crt"]})
    assert c.ws.getsubprotocol() == "mqtt"
    topic = unique("wss/frames")
    data = connect_packet(unique("wssf")) + subscribe_packet(1, topic, 0)
    c.frame(data[:3], ABNF.OPCODE_BINARY, fin=0)
    c.frame(b"tls-ping", ABNF.OPCODE_PING)
    assert c.recv() == (ABNF.OPCODE_PONG, b"tls-ping")
    c.frame(data[3:], ABNF.OPCODE_CONT, fin=1)
    assert c.read_packet() == CONNACK_OK
    assert c.read_packet() == (0x90, b"\x00\x01\x00")
    payload = os.urandom(70_000)
    pub = publish_packet(topic, payload)
    c.frame(pub[:40_000])
    c.frame(pub[40_000:])
    assert publish_fields(*c.read_packet()) == (topic, payload, 0)
    c.frame(b"text over tls", ABNF.OPCODE_TEXT)
    assert c.expect_close()[0] == 1003
    assert_serves(broker)


def test_a_text_frame_is_closed_with_1003(broker, ws_clients):
    c = ws_clients.raw(broker.ports["ws"])
    c.connect()
    c.frame(b"\xc0\x00", ABNF.OPCODE_TEXT)
    code, _ = c.expect_close()
    assert code == 1003
    assert_serves(broker)


def test_a_frame_over_websockets_max_frame_size_is_closed_with_1009(broker, ws_clients):
    port = broker.ports["ws_mqtt"]
    c = ws_clients.raw(port, path="/mqtt", origin=ALLOWED_ORIGIN, suppress_origin=False)
    c.connect()
    topic = unique("max")
    c.frame(subscribe_packet(1, topic, 0))
    assert c.read_packet() == (0x90, b"\x00\x01\x00")
    # A frame of exactly MAX_FRAME bytes passes (a PUBLISH of that size, received back).
    payload_len = next(n for n in range(MAX_FRAME) if len(publish_packet(topic, b"y" * n)) == MAX_FRAME)
    at_limit = publish_packet(topic, b"y" * payload_len)
    c.frame(at_limit)
    assert publish_fields(*c.read_packet()) == (topic, b"y" * payload_len, 0)
    # One byte more: 1009, before the payload is read (frame sent in one write, so that it is all in
    # the server's read and the close is not turned into a reset).
    c.ws.sock.sendall(client_frame(ABNF.OPCODE_BINARY, publish_packet(topic, b"y" * (payload_len + 1))))
    code, reason = c.expect_close()
    assert code == 1009, reason
    # A fragmented message whose fragments together pass the limit: 1009 too (the limit is the message's).
    c2 = ws_clients.raw(port, path="/mqtt", origin=ALLOWED_ORIGIN, suppress_origin=False)
    c2.connect()
    big = publish_packet(topic, b"z" * 1200)
    c2.ws.sock.sendall(client_frame(ABNF.OPCODE_BINARY, big[:600], fin=False) +
                       client_frame(ABNF.OPCODE_CONT, big[600:], fin=True))
    code, reason = c2.expect_close()
    assert code == 1009, reason
    # A header claiming 2^40 bytes: refused at the header, before any payload.
    c4 = ws_clients.raw(port, path="/mqtt", origin=ALLOWED_ORIGIN, suppress_origin=False)
    c4.connect()
    c4.ws.sock.sendall(bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + b"mask")
    code, reason = c4.expect_close()
    assert code == 1009, reason
    # Frames of the default listener are limited by max_packet_size only: 5000 bytes pass there.
    c3 = ws_clients.raw(broker.ports["ws"])
    c3.connect()
    c3.frame(subscribe_packet(1, topic, 0))
    assert c3.read_packet() == (0x90, b"\x00\x01\x00")
    c3.frame(publish_packet(topic, b"w" * 5000))
    assert publish_fields(*c3.read_packet()) == (topic, b"w" * 5000, 0)
    # and a message has no limit of its own there: three 400 KB PUBLISHes in one frame (1.2 MB,
    # over max_packet_size together) all pass — the limit is each packet's, as on TCP.
    c3.frame(b"".join(publish_packet(topic, bytes([0x41 + i]) * 400_000) for i in range(3)))
    for i in range(3):
        assert publish_fields(*c3.read_packet()) == (topic, bytes([0x41 + i]) * 400_000, 0)
    # One packet over max_packet_size (1 MiB): that client is closed (close 1000, then FIN).
    c3.frame(publish_packet(topic, b"z" * (1 << 20)))
    code, _ = c3.expect_close()
    assert code == 1000
    assert_serves(broker)


@pytest.mark.parametrize("frame, code", [
    pytest.param(client_frame(ABNF.OPCODE_BINARY, b"\xc0\x00", mask=False), 1002, id="unmasked"),
    pytest.param(client_frame(ABNF.OPCODE_BINARY, b"\xc0\x00", rsv=4), 1002, id="reserved-bit"),
    pytest.param(client_frame(0x3, b"\xc0\x00"), 1002, id="unknown-opcode"),
    pytest.param(client_frame(ABNF.OPCODE_CONT, b"\xc0\x00"), 1002, id="continuation-without-a-message"),
    pytest.param(client_frame(ABNF.OPCODE_BINARY, b"\xc0", fin=False) + client_frame(ABNF.OPCODE_BINARY, b"\x00"),
                 1002, id="new-message-inside-a-fragmented-one"),
    pytest.param(client_frame(ABNF.OPCODE_PING, b"p", fin=False), 1002, id="fragmented-ping"),
    pytest.param(client_frame(ABNF.OPCODE_PING, b"p" * 126), 1002, id="ping-over-125-bytes"),
    pytest.param(client_frame(ABNF.OPCODE_BINARY, b"\xc0\x00", length_form=126), 1002, id="length-not-shortest"),
    pytest.param(client_frame(ABNF.OPCODE_CLOSE, b"\x03"), 1002, id="close-with-1-byte"),
    pytest.param(client_frame(ABNF.OPCODE_CLOSE, close_payload(1005)), 1002, id="close-code-1005"),
    pytest.param(client_frame(ABNF.OPCODE_CLOSE, close_payload(999)), 1002, id="close-code-999"),
    pytest.param(bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + b"mask", 1002, id="length-over-2^63"),
    pytest.param(client_frame(ABNF.OPCODE_CLOSE, close_payload(1000, b"\xff\xfe")), 1007, id="close-reason-not-utf8"),
    pytest.param(client_frame(ABNF.OPCODE_TEXT, b"hello"), 1003, id="text"),
])
def test_protocol_errors_close_with_their_code(broker, frame, code):
    ws = RawWS(broker.ports["ws"])
    try:
        assert ws.status == 101
        ws.send_packet(connect_packet(unique("bad")))
        assert ws.read_packet() == CONNACK_OK
        ws.send(frame)
        got, reason = ws.expect_close()
        assert got == code, reason
    finally:
        ws.close()
    assert_serves(broker)


def test_the_close_handshake(broker, ws_clients):
    # A close with a code and a reason: the code is echoed, then the TCP connection ends.
    ws = RawWS(broker.ports["ws"])
    ws.send_packet(connect_packet(unique("bye")))
    assert ws.read_packet() == CONNACK_OK
    ws.send_frame(ABNF.OPCODE_CLOSE, close_payload(1000, "goodbye ✓".encode()))
    assert ws.expect_close() == (1000, b"")
    ws.close()
    # A close without a code is answered with 1000; an application code (4000) is echoed.
    for sent, echoed in ((b"", 1000), (close_payload(4000), 4000), (close_payload(1001), 1001)):
        ws = RawWS(broker.ports["ws"])
        ws.send_packet(connect_packet(unique("bye")))
        assert ws.read_packet() == CONNACK_OK
        ws.send_frame(ABNF.OPCODE_CLOSE, sent)
        assert ws.expect_close() == (echoed, b"")
        ws.close()
    # The same through websocket-client's own close: it gets its close back (status 1000).
    c = ws_clients.raw(broker.ports["ws"])
    c.connect()
    c.frame(close_payload(1000), ABNF.OPCODE_CLOSE)
    assert c.expect_close() == (1000, b"")
    # DISCONNECT: the broker ends the connection with its own close frame (1000) and FIN.
    ws = RawWS(broker.ports["ws"])
    ws.send_packet(connect_packet(unique("disc")))
    assert ws.read_packet() == CONNACK_OK
    ws.send_packet(b"\xe0\x00")
    assert ws.expect_close() == (1000, b"")
    ws.close()
    assert_serves(broker)


# MARK: 4: the upgrade request by hand

def test_an_rfc_6455_handshake(broker):
    # RFC 6455 §1.3's own example key.
    ws = RawWS(broker.ports["ws"], key="dGhlIHNhbXBsZSBub25jZQ==", path="/chat")
    assert ws.status == 101
    assert ws.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    ws.close()
    ws = RawWS(broker.ports["ws"])
    assert ws.status == 101
    assert ws.headers["upgrade"].lower() == "websocket"
    assert ws.headers["connection"].lower() == "upgrade"
    assert ws.headers["sec-websocket-accept"] == accept_value(ws.key)
    assert ws.headers["sec-websocket-protocol"] == "mqtt"
    assert "sec-websocket-extensions" not in ws.headers
    ws.send_packet(connect_packet(unique("rfc")))
    assert ws.read_packet() == CONNACK_OK
    ws.close()
    # The upgrade request and the first frame in one TCP write; header names in another case,
    # tokens in lists, permessage-deflate offered (and not taken).
    key = new_key()
    request = (f"GET /mqtt HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
               f"sec-websocket-key: {key}\r\nsec-websocket-version: 13\r\nsec-websocket-protocol: mqtt\r\n"
               f"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n").encode()
    ws = RawWS(broker.ports["ws"], request=request + client_frame(ABNF.OPCODE_BINARY, connect_packet(unique("one-write"))))
    assert ws.status == 101
    assert ws.headers["sec-websocket-accept"] == accept_value(key)
    assert "sec-websocket-extensions" not in ws.headers
    assert ws.read_packet() == CONNACK_OK
    ws.close()
    # The request in 7-byte writes (however TCP coalesces them, the answer is the same).
    key = new_key()
    with socket.create_connection(("127.0.0.1", broker.ports["ws"]), timeout=TIMEOUT) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = upgrade_request(key=key)
        for i in range(0, len(request), 7):
            s.sendall(request[i:i + 7])
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
    status, headers = parse_head(data.split(b"\r\n\r\n")[0])
    assert (status, headers["sec-websocket-accept"]) == (101, accept_value(key))


@pytest.mark.parametrize("offered, answered", [
    ("mqtt", "mqtt"),
    ("foo, mqttv3.1", "mqttv3.1"),
    ("foo,mqttv3.1.1, mqtt", "mqttv3.1.1"),
    ("mqtt-v3.1.1", "mqtt-v3.1.1"),
    ("mqttv5, mqtt", "mqttv5"),
    ("mqtt-v5", "mqtt-v5"),
    (None, None),
])
def test_the_subprotocol_answered(broker, offered, answered):
    ws = RawWS(broker.ports["ws"], protocols=offered)
    try:
        assert ws.status == 101
        assert ws.headers.get("sec-websocket-protocol") == answered
        ws.send_packet(connect_packet(unique("sp")))
        assert ws.read_packet() == CONNACK_OK
    finally:
        ws.close()


@pytest.mark.parametrize("port, request_args, status, header", [
    pytest.param("ws", {"version": "8"}, 426, ("sec-websocket-version", "13"), id="version-8"),
    pytest.param("ws", {"version": None}, 426, ("sec-websocket-version", "13"), id="no-version"),
    pytest.param("ws", {"upgrade": False}, 426, ("sec-websocket-version", "13"), id="no-upgrade-header"),
    pytest.param("ws", {"connection": "keep-alive"}, 426, ("upgrade", "websocket"), id="no-connection-upgrade"),
    pytest.param("ws", {"method": "POST"}, 405, ("allow", "GET"), id="post"),
    pytest.param("ws", {"http_version": "HTTP/1.0"}, 400, None, id="http-1.0"),
    pytest.param("ws", {"key": "c2hvcnQ="}, 400, None, id="key-not-16-bytes"),
    pytest.param("ws", {"key": "not base64!!"}, 400, None, id="key-not-base64"),
    pytest.param("ws", {"key": False}, 400, None, id="no-key"),
    pytest.param("ws", {"host": None}, 400, None, id="no-host"),
    pytest.param("ws", {"protocols": "foo"}, 400, None, id="only-non-mqtt-subprotocols"),
    pytest.param("ws", {"protocols": "foo, bar"}, 400, None, id="two-non-mqtt-subprotocols"),
    pytest.param("ws_mqtt", {"path": "/"}, 404, None, id="path-slash-on-mqtt-listener"),
    pytest.param("ws_mqtt", {"path": "/mqtt/x"}, 404, None, id="path-below-mqtt"),
    pytest.param("ws_mqtt", {"path": "/mqtt", "origin": "http://evil.example"}, 403, None, id="origin-not-allowed"),
    pytest.param("ws_mqtt", {"path": "/mqtt", "origin": "http://allowed.example:8080"}, 403, None, id="origin-other-port"),
    pytest.param("ws", {"extra": ["Content-Length: 5"]}, 413, None, id="upgrade-with-a-body"),
])
def test_refused_upgrades(broker, port, request_args, status, header):
    got, headers, body = http_refusal(broker.ports[port], upgrade_request(**request_args))
    assert got == status, body
    assert "sec-websocket-accept" not in headers
    assert body.strip(), "the refusal says why"
    if header:
        assert headers.get(header[0]) == header[1], headers
    assert_serves(broker)


def test_whitespace_around_header_values_is_not_part_of_them(broker):
    # RFC 9110 5.5: optional whitespace before and after a field value; a key with a trailing
    # blank still yields the accept value of the key itself.
    key = new_key()
    with socket.create_connection(("127.0.0.1", broker.ports["ws"]), timeout=5) as s:
        s.sendall(upgrade_request(key=key + "  ", protocols=" mqtt \t", connection=" Upgrade "))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, head
            head += chunk
    status, headers = parse_head(head.split(b"\r\n\r\n")[0])
    assert status == 101, head
    assert headers["sec-websocket-accept"] == accept_value(key)
    assert headers["sec-websocket-protocol"] == "mqtt"


def test_paths(broker):
    # The /mqtt listener: exactly that path (a query string is not part of it).
    for path in ("/mqtt", "/mqtt?token=abc"):
        ws = RawWS(broker.ports["ws_mqtt"], path=path)
        assert ws.status == 101, path
        ws.close()
    # The default listener: any path.
    for path in ("/", "/mqtt", "/anything/deeper", "/ws?x=1"):
        ws = RawWS(broker.ports["ws"], path=path)
        assert ws.status == 101, path
        ws.send_packet(connect_packet(unique("path")))
        assert ws.read_packet() == CONNACK_OK
        ws.close()


def test_origins(broker):
    port = broker.ports["ws_mqtt"]
    # Allowed, or absent (not a browser): 101.
    for origin in (ALLOWED_ORIGIN, None):
        ws = RawWS(port, path="/mqtt", origin=origin)
        assert ws.status == 101, origin
        ws.send_packet(connect_packet(unique("origin")))
        assert ws.read_packet() == CONNACK_OK
        ws.close()
    status, _, _ = http_refusal(port, upgrade_request(path="/mqtt", origin="http://evil.example"))
    assert status == 403
    # The default listener has no allow-list: any origin.
    ws = RawWS(broker.ports["ws"], origin="http://evil.example")
    assert ws.status == 101
    ws.close()


def test_upgrade_requests_over_websockets_headers_size(broker):
    def request(total):
        """An upgrade request of exactly `total` bytes (padded with an X-Pad header)."""
        base = upgrade_request(extra=["X-Pad: "])
        pad = total - len(base)
        assert pad >= 0
        return upgrade_request(extra=["X-Pad: " + "p" * pad])

    # At the limit (request line, headers and the blank line): upgraded.
    req = request(HEADERS_SIZE)
    assert len(req) == HEADERS_SIZE
    ws = RawWS(broker.ports["ws"], request=req)
    assert ws.status == 101
    ws.send_packet(connect_packet(unique("hdr")))
    assert ws.read_packet() == CONNACK_OK
    ws.close()
    # One byte over: 431 and closed.
    req = request(HEADERS_SIZE + 1)
    assert len(req) == HEADERS_SIZE + 1
    status, _, _ = http_refusal(broker.ports["ws"], req)
    assert status == 431
    # Headers that never end: answered 431 once past the limit, without waiting for their end.
    with socket.create_connection(("127.0.0.1", broker.ports["ws"]), timeout=TIMEOUT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * (HEADERS_SIZE + 100))
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 431 "), data[:100]
    # On the wss listener too (the limit is the broker's).
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", broker.ports["wss"]), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw) as s:
            s.sendall(request(HEADERS_SIZE + 1))
            data = b""
            while True:
                try:
                    chunk = s.recv(4096)
                except (ssl.SSLError, ConnectionResetError):
                    break
                if not chunk:
                    break
                data += chunk
    assert data.startswith(b"HTTP/1.1 431 "), data[:100]
    assert_serves(broker)


@pytest.fixture(scope="module")
def second_broker():
    """A broker with a short connect_timeout and a listener that trusts X-Forwarded-For."""
    ports = {"plain": free_port(), "trusted": free_port(), "untrusted": free_port()}
    b = WSBroker(f"""allow_anonymous true
connect_timeout 1
listener {ports['plain']} 127.0.0.1
listener {ports['trusted']} 127.0.0.1
protocol websockets
websockets_x_forwarded_for true
listener {ports['untrusted']} 127.0.0.1
protocol websockets
""", ports)
    yield b
    b.stop()


def test_x_forwarded_for_is_logged_only_where_trusted(second_broker):
    b = second_broker
    for name, forwarded in (("trusted", "203.0.113.7"), ("untrusted", "198.51.100.9")):
        ws = RawWS(b.ports[name], extra=[f"X-Forwarded-For: {forwarded}, 10.1.2.3"])
        assert ws.status == 101
        ws.send_frame(ABNF.OPCODE_TEXT, b"x")  # broken: the broker logs the peer's address
        assert ws.expect_close()[0] == 1003
        ws.close()
    wait_until(lambda: b.log_text().count("WebSocket close 1003") >= 2, message="both failures logged")
    lines = [line for line in b.log_text().splitlines() if "WebSocket close 1003" in line]
    assert any("address=203.0.113.7 " in line for line in lines), lines
    assert not any("10.1.2.3" in line or "198.51.100.9" in line for line in lines), lines
    assert any("address=127.0.0.1" in line for line in lines), lines
    assert_serves(b)


def test_an_upgrade_or_connect_that_never_comes_is_closed_at_connect_timeout(second_broker):
    b = second_broker
    # Half an upgrade request, then nothing: closed after connect_timeout (1 s).
    with socket.create_connection(("127.0.0.1", b.ports["untrusted"]), timeout=TIMEOUT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        while s.recv(4096):
            pass
        took = time.monotonic() - started
    assert 0.7 <= took <= 5, took
    # Upgraded, but no CONNECT: the broker's close frame (1000), then the end, at the same deadline.
    ws = RawWS(b.ports["untrusted"])
    assert ws.status == 101
    started = time.monotonic()
    assert ws.expect_close() == (1000, b"")
    took = time.monotonic() - started
    ws.close()
    assert 0.7 <= took <= 5, took
    assert_serves(b)


def test_keepalive_expiry_of_a_ws_client_publishes_its_will(second_broker):
    b = second_broker
    watcher = Client(b)
    try:
        topic = unique("ka/will")
        watcher.subscribe(topic, qos=1)
        ws = RawWS(b.ports["untrusted"])
        body = mqtt_string("MQTT") + bytes([4, 0x02 | 0x04 | 1 << 3]) + (1).to_bytes(2, "big")  # keepalive 1 s
        ws.send_packet(packet(0x10, body + mqtt_string(unique("ka")) + mqtt_string(topic) + mqtt_string(b"silent")))
        assert ws.read_packet() == CONNACK_OK
        started = time.monotonic()
        assert ws.expect_close() == (1000, b"")  # after 1.5 x keepalive
        took = time.monotonic() - started
        ws.close()
        assert 1.0 <= took <= 5, took
        assert watcher.receive(1) == [(topic, b"silent", 1)]
    finally:
        watcher.close()


# MARK: 5: wills

def test_will_when_the_tcp_connection_of_a_ws_client_drops(broker, clients, ws_clients):
    base = unique("wswill")
    watcher = clients()
    watcher.subscribe(f"{base}/#", qos=1)
    # TCP dropped under the WebSocket (no close frame, no DISCONNECT).
    c = ws_clients.raw(broker.ports["ws"])
    c.frame(will_connect_packet(unique("w"), f"{base}/dropped", b"gone", qos=1))
    assert c.read_packet() == CONNACK_OK
    c.ws.sock.shutdown(socket.SHUT_RDWR)
    c.ws.sock.close()
    assert watcher.receive(1) == [(f"{base}/dropped", b"gone", 1)]
    # A close frame without DISCONNECT: still not a clean MQTT end, the will is published.
    c = ws_clients.raw(broker.ports["ws"])
    c.frame(will_connect_packet(unique("w"), f"{base}/closed", b"closed-without-disconnect", qos=0))
    assert c.read_packet() == CONNACK_OK
    c.frame(close_payload(1000), ABNF.OPCODE_CLOSE)
    assert c.expect_close()[0] == 1000
    assert watcher.receive(1) == [(f"{base}/closed", b"closed-without-disconnect", 0)]
    # A protocol error (text frame): the will too.
    c = ws_clients.raw(broker.ports["ws"])
    c.frame(will_connect_packet(unique("w"), f"{base}/broken", b"broken", qos=1))
    assert c.read_packet() == CONNACK_OK
    c.frame(b"oops", ABNF.OPCODE_TEXT)
    assert c.expect_close()[0] == 1003
    assert watcher.receive(1) == [(f"{base}/broken", b"broken", 1)]
    # DISCONNECT first: no will; a sentinel published afterwards is the next thing the watcher sees.
    c = ws_clients.raw(broker.ports["ws"])
    c.frame(will_connect_packet(unique("w"), f"{base}/polite", b"must-not-appear", qos=1))
    assert c.read_packet() == CONNACK_OK
    c.frame(b"\xe0\x00")
    assert c.expect_close()[0] == 1000
    clients().publish(f"{base}/sentinel", b"s", qos=1)
    assert watcher.receive(1) == [(f"{base}/sentinel", b"s", 1)]


def test_will_of_a_paho_ws_client_whose_socket_dies(broker, clients):
    base = unique("pahowill")
    watcher = clients()
    watcher.subscribe(f"{base}/#", qos=1)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("pw"), transport="websockets")
    c.ws_set_options(path="/mqtt")
    c.will_set(f"{base}/status", b"paho-offline", qos=1)
    connected = queue.Queue()
    c.on_connect = lambda cl, u, f, rc, p: connected.put(rc)
    c.connect("127.0.0.1", broker.ports["ws"], keepalive=60)
    c.loop_start()
    try:
        assert not connected.get(timeout=TIMEOUT).is_failure
        # The TCP socket under paho's WebSocket goes away without a close frame or DISCONNECT.
        raw_socket = c.socket()
        raw_socket = getattr(raw_socket, "_socket", raw_socket)
        raw_socket.shutdown(socket.SHUT_RDWR)
        assert watcher.receive(1) == [(f"{base}/status", b"paho-offline", 1)]
    finally:
        c.loop_stop()
        try:
            c.disconnect()
        except Exception:
            pass


# MARK: 7: a real browser

PAGE = r"""<!doctype html>
<html><head><meta charset="utf-8"><title>apus websocket</title></head>
<body><div id="result">pending</div><div id="denied">pending</div><div id="closed">pending</div>
<img src="/hold" width="1" height="1" loading="eager" alt="">
<script>
"use strict";
const params = new URLSearchParams(location.search);
const topic = params.get("topic");
const enc = new TextEncoder(), dec = new TextDecoder();
function report(kind, value) {
  return fetch("/report?kind=" + kind + "&value=" + encodeURIComponent(value), {cache: "no-store"});
}
window.onerror = (msg) => { report("error", String(msg)); };
function str(s) { const b = enc.encode(s); return [b.length >> 8, b.length & 255, ...b]; }
function packet(first, body) {
  const len = [];
  let n = body.length;
  do { let d = n % 128; n = Math.floor(n / 128); if (n > 0) d |= 128; len.push(d); } while (n > 0);
  return new Uint8Array([first, ...len, ...body]);
}
function take(buf) {  // [first, body, rest] of the first whole packet, or null
  let len = 0, mul = 1, i = 1, b;
  do { if (i >= buf.length) return null; b = buf[i++]; len += (b & 127) * mul; mul *= 128; } while (b & 128);
  if (buf.length < i + len) return null;
  return [buf[0], buf.slice(i, i + len), buf.slice(i + len)];
}

// A listener whose allow-list does not hold this page's origin: the handshake fails (403).
const denied = new WebSocket(params.get("denied"), "mqtt");
denied.onopen = () => { document.getElementById("denied").textContent = "DENIED:opened"; report("denied", "opened"); };
denied.onclose = (e) => { document.getElementById("denied").textContent = "DENIED:" + e.code; report("denied", "closed:" + e.code); };

const ws = new WebSocket(params.get("ws"), "mqtt");
ws.binaryType = "arraybuffer";
let buf = new Uint8Array(0);
ws.onopen = () => {
  report("protocol", ws.protocol + ";" + ws.extensions);
  ws.send(packet(0x10, [...str("MQTT"), 4, 2, 0, 60, ...str("chromium-" + Math.random().toString(16).slice(2, 10))]));
};
ws.onmessage = (e) => {
  if (!(e.data instanceof ArrayBuffer)) { report("error", "not binary: " + typeof e.data); return; }
  const joined = new Uint8Array(buf.length + e.data.byteLength);
  joined.set(buf); joined.set(new Uint8Array(e.data), buf.length);
  buf = joined;
  let p;
  while ((p = take(buf)) !== null) {
    const [first, body, rest] = p;
    buf = rest;
    if (first === 0x20) {  // CONNACK
      if (body[1] !== 0) { report("error", "CONNACK " + body[1]); return; }
      ws.send(packet(0x82, [0, 1, ...str(topic), 0]));
    } else if (first === 0x90) {  // SUBACK
      if (body[2] !== 0) { report("error", "SUBACK " + body[2]); return; }
      ws.send(packet(0x30, [...str(topic), ...enc.encode("hello from chromium")]));
    } else if ((first >> 4) === 3) {  // PUBLISH
      const n = (body[0] << 8) | body[1];
      const qos = (first >> 1) & 3;
      const t = dec.decode(body.slice(2, 2 + n));
      const payload = dec.decode(body.slice(2 + n + (qos ? 2 : 0)));
      const result = "RESULT:" + t + ":" + payload;
      document.getElementById("result").textContent = result;
      report("result", document.getElementById("result").textContent)
        .then(() => ws.send(new Uint8Array([0xe0, 0])));  // then DISCONNECT
    } else {
      report("error", "unexpected packet " + first);
    }
  }
};
ws.onerror = () => { report("wserror", "error event"); };
ws.onclose = (e) => { document.getElementById("closed").textContent = "CLOSED:" + e.code; report("close", e.code); };
</script></body></html>
"""


def test_a_real_browser(broker, page, clients, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed")
    topic = unique("browser/t")
    watcher = clients()  # a TCP subscriber sees the browser's message too
    watcher.subscribe(topic, qos=0)
    page.clear()
    query = urllib.parse.urlencode({
        "topic": topic,
        "ws": f"ws://127.0.0.1:{broker.ports['browser']}/mqtt",
        "denied": f"ws://127.0.0.1:{broker.ports['ws_mqtt']}/mqtt",
    })
    url = f"http://127.0.0.1:{page.port}/page.html?{query}"
    # Headless, its own profile, the DOM printed after the load event (which /hold delays until
    # the page is done). Nothing may leave the machine: every host name but 127.0.0.1 is
    # unresolvable and any other request goes to a closed loopback port.
    proc = subprocess.Popen([
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run", "--no-default-browser-check",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
        "--disable-default-apps", "--disable-domain-reliability", "--no-pings", "--metrics-recording-only",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
        "--dump-dom", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        dom, stderr = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"chromium did not finish; the page reported {page.wait_for(set(), 0)}")
    got = page.wait_for({"result", "denied", "close", "protocol"}, timeout=TIMEOUT)
    why = (got, stderr[-2000:])
    assert proc.returncode == 0, why
    assert "error" not in got and "wserror" not in got, why
    # In the browser's DOM: its own PUBLISH came back through the broker, decoded by the page.
    assert f'<div id="result">RESULT:{topic}:hello from chromium</div>' in dom, (dom, why)
    assert '<div id="denied">DENIED:1006</div>' in dom, dom  # refused (403): a failed handshake is 1006 to a page
    assert '<div id="closed">CLOSED:1000</div>' in dom, dom  # the broker's close frame after DISCONNECT
    assert got["result"] == f"RESULT:{topic}:hello from chromium", why
    assert got["protocol"] == "mqtt;", why  # the subprotocol named, no extension (permessage-deflate) taken
    assert watcher.receive(1) == [(topic, b"hello from chromium", 0)]
    assert_serves(broker)


# MARK: 6: still serving after everything

def test_metrics_and_sys_count_websocket_connections_upgrades_refusals_and_errors():
    ports = {"plain": free_port(), "ws": free_port(), "http": free_port()}
    b = WSBroker(f"""allow_anonymous true
sys_interval 1
listener {ports['plain']} 127.0.0.1
listener {ports['ws']} 127.0.0.1
protocol websockets
websockets_path /mqtt
listener {ports['http']} 127.0.0.1
protocol http
""", ports)
    try:
        def metrics():
            import urllib.request
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/metrics", timeout=TIMEOUT) as r:
                text = r.read().decode()
            values = {}
            for line in text.splitlines():
                if line.startswith("apus_websocket_"):
                    name, value = line.rsplit(" ", 1)
                    values[name] = float(value)
            return values

        sys_values = {}
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("sys"))
        watcher.on_message = lambda c, u, m: sys_values.__setitem__(m.topic, m.payload.decode())
        watcher.connect("127.0.0.1", ports["plain"])
        watcher.subscribe("$SYS/broker/websockets/#")
        watcher.loop_start()
        open_ones = [RawWS(ports["ws"], path="/mqtt") for _ in range(3)]
        for ws in open_ones:
            assert ws.status == 101
            ws.send_packet(connect_packet(unique("metrics")))
            assert ws.read_packet() == CONNACK_OK
        status, _, _ = http_refusal(ports["ws"], upgrade_request(path="/elsewhere"))
        assert status == 404
        broken = RawWS(ports["ws"], path="/mqtt")
        broken.send_frame(ABNF.OPCODE_BINARY, connect_packet(unique("broken")), mask=False)
        assert broken.expect_close()[0] == 1002
        want = {"apus_websocket_connections": 3, "apus_websocket_upgrades_total": 4,
                "apus_websocket_upgrades_refused_total": 1, "apus_websocket_protocol_errors_total": 1}
        wait_until(lambda: metrics() == want, message=f"/metrics to say {want}")
        wait_until(lambda: sys_values.get("$SYS/broker/websockets/connections") == "3"
                   and sys_values.get("$SYS/broker/websockets/upgrades") == "4", message=f"$SYS values, got {sys_values}")
        for ws in open_ones:
            ws.close()
        wait_until(lambda: metrics()["apus_websocket_connections"] == 0, message="connections back to 0")
        watcher.loop_stop()
        watcher.disconnect()
    finally:
        b.stop()


@pytest.mark.parametrize("listener, size", [("ws", 300), ("wss", 300), ("ws", 70_000)])
def test_apus_bench_over_ws_and_wss_counts_every_message(broker, certs, listener, size, tmp_path):
    """apus-bench's WebSocket transport (its own client layer, masked frames; over TLS for wss)
    against the real broker: every QoS 1 message of a counted run arrives once, in order, with
    payloads large enough to take 16- and 64-bit frame lengths."""
    bench = os.path.join(os.path.dirname(APUS_BIN), "apus-bench")
    if not os.path.exists(bench):
        pytest.skip("apus-bench is not built next to apus (make test builds it)")
    port = broker.ports[listener]
    out = tmp_path / "report.json"
    args = [bench, "run", "-p", str(port), "--ws", "--pairs", "2", "-q", "1", "--count", "500", "--size", str(size),
            "--quiet", "--json", str(out)]
    if listener == "wss":
        args += ["--cafile", certs["crt"]]
    run = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    assert (report["sent"], report["received"], report["lost"], report["duplicates"], report["errors"]) == (1000, 1000, 0, 0, []), report


def test_the_broker_still_serves_tcp_and_ws_clients_at_the_end(broker, clients, ws_clients):
    assert_serves(broker)
    topic = unique("end")
    tcp = clients()
    tcp.subscribe(topic, qos=1)
    ws = ws_clients.paho(broker.ports["ws"])
    ws.subscribe(topic, qos=1)
    tcp.publish(topic, b"last", qos=1)
    assert tcp.receive(1) == [(topic, b"last", 1)]
    assert ws.receive(1) == [(topic, b"last", 1)]
    log = broker.log_text()
    assert "WebSocket connection refused or broken" in log
    broker.alive()
