"""Fixtures for the black-box tests: a real broker process (apus by default, or mosquitto with
BROKER=mosquitto to check the tests themselves), paho-mqtt clients and raw sockets."""
import os
import queue
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
APUS_BIN = os.environ.get("APUS_BIN", os.path.join(ROOT, ".build", "release", "apus"))
BROKER = os.environ.get("BROKER", "apus")
TIMEOUT = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    """The resident memory of process `pid`, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_until(condition, timeout=TIMEOUT, message="condition"):
    """Polls `condition` until it is truthy or `timeout` passes; fails the test then."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {message}")


class Broker:
    def __init__(self, extra_args=(), shards=2, mosquitto_conf=""):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="broker-", suffix=".log", delete=False)
        if BROKER == "mosquitto":
            self.conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
            self.conf.write(f"listener {self.port} 127.0.0.1\n" + (mosquitto_conf or "allow_anonymous true\n"))
            self.conf.close()
            args = ["mosquitto", "-c", self.conf.name]
        else:
            args = [APUS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--shards", str(shards),
                    "--log-level", "info", *extra_args]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"broker exited at start-up ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise AssertionError("broker did not start listening")
                time.sleep(0.02)

    def log_tail(self, lines=40):
        with open(self.log.name, errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def assert_alive(self):
        assert self.proc.poll() is None, f"broker died ({self.proc.returncode}):\n{self.log_tail()}"

    def stop(self):
        self.assert_alive()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("broker did not exit within 5 s of SIGTERM")
        if BROKER == "apus":
            assert code == 0, f"apus exited with {code}:\n{self.log_tail()}"


class ConfiguredApus:
    """apus started with a configuration file: a listener and an HTTP listener on free ports, then
    `lines` (bridges, webhooks, ...)."""

    def __init__(self, lines, shards=2):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.http = free_port()
        self.dir = tempfile.mkdtemp(prefix="apus-conf-")
        conf = os.path.join(self.dir, "apus.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nhttp_listener {self.http}\n" + "\n".join(lines) + "\n")
        self.log = open(os.path.join(self.dir, "apus.log"), "ab")
        self.proc = subprocess.Popen([APUS_BIN, "--config", conf, "--shards", str(shards)], stdout=self.log, stderr=subprocess.STDOUT)

        def listening():
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(listening, message="apus to listen")

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=2) as r:
            return r.read().decode()

    def metric(self, line_prefix):
        """The value of the first /metrics line starting with `line_prefix` and a space, or None."""
        for line in self.metrics().splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.split()[-1])
        return None

    def log_text(self):
        with open(os.path.join(self.dir, "apus.log"), errors="replace") as f:
            return f.read()

    def stop(self):
        assert self.proc.poll() is None, self.log_text()[-3000:]
        self.proc.terminate()
        assert self.proc.wait(timeout=10) == 0, self.log_text()[-3000:]
        self.log.close()


@pytest.fixture(scope="module")
def broker():
    b = Broker()
    yield b
    b.stop()


@pytest.fixture
def make_broker():
    """Starts extra brokers with their own flags (apus only)."""
    started = []

    def make(*extra_args, shards=2):
        if BROKER != "apus":
            pytest.skip("needs apus flags")
        b = Broker(extra_args, shards=shards)
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Client:
    """A paho-mqtt client (callback API v2) that records messages and waits on events."""

    def __init__(self, broker, client_id=None, protocol=mqtt.MQTTv311, clean=True):
        self.client_id = unique("c") if client_id is None else client_id
        kwargs = {}
        if protocol == mqtt.MQTTv5:
            self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol)
        else:
            self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol,
                                    clean_session=clean)
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = {}
        self.mqtt.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.qos))
        self.mqtt.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.mqtt.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.__setitem__(mid, rcs)
        self.mqtt.connect(broker.host, broker.port, keepalive=60, **kwargs)
        self.mqtt.loop_start()
        rc = self.connack.get(timeout=TIMEOUT)
        assert not rc.is_failure, f"CONNACK {rc}"

    def subscribe(self, topic, qos=0):
        result, mid = self.mqtt.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        return wait_until(lambda: self.subacks.get(mid), message=f"SUBACK for {topic}")

    def unsubscribe(self, topic):
        done = queue.Queue()
        self.mqtt.on_unsubscribe = lambda c, u, mid, rcs, props: done.put(mid)
        _, mid = self.mqtt.unsubscribe(topic)
        assert done.get(timeout=TIMEOUT) == mid

    def publish(self, topic, payload, qos=0, wait=True):
        info = self.mqtt.publish(topic, payload, qos)
        if wait and qos > 0:
            info.wait_for_publish(timeout=TIMEOUT)
            assert info.is_published()
        return info

    def receive(self, count, timeout=TIMEOUT):
        out = []
        end = time.monotonic() + timeout
        while len(out) < count:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.client_id}: got {len(out)} of {count} messages")
            try:
                out.append(self.messages.get(timeout=remaining))
            except queue.Empty:
                pass
        return out

    def assert_no_message(self, within=0.3):
        """Used only after a later sentinel message proved the earlier one would have arrived."""
        try:
            m = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {m}")

    def close(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def clients(broker):
    made = []

    def make(**kwargs):
        c = Client(broker, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.close()
        except Exception:
            pass
    broker.assert_alive()


class Raw:
    """A raw TCP connection for byte-level tests."""

    def __init__(self, broker):
        self.sock = socket.create_connection((broker.host, broker.port), timeout=TIMEOUT)

    def send(self, data):
        self.sock.sendall(bytes(data))

    def read(self, n, timeout=TIMEOUT):
        self.sock.settimeout(timeout)
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise AssertionError(f"closed after {data!r}")
            data += chunk
        return data

    def read_packet(self, timeout=TIMEOUT):
        """(first byte, body) of the next whole packet."""
        first = self.read(1, timeout)[0]
        length, shift = 0, 0
        while True:
            b = self.read(1, timeout)[0]
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return first, self.read(length, timeout) if length else b""

    def closed_by_server(self, timeout=TIMEOUT):
        """True when the server closes the connection within `timeout` (data before the close is drained)."""
        self.sock.settimeout(timeout)
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                if not self.sock.recv(4096):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def bytes_until_close(self, timeout=TIMEOUT):
        """Everything the server sends until it closes the connection (an AssertionError if it
        does not close within `timeout`, or resets the connection instead of a clean close)."""
        self.sock.settimeout(timeout)
        data = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            chunk = self.sock.recv(4096)
            if not chunk:
                return data
            data += chunk
        raise AssertionError("the server did not close the connection")

    def close(self):
        self.sock.close()


def connect_packet(client_id, version=4, clean=True, keepalive=60):
    name = b"MQTT" if version >= 4 else b"MQIsdp"
    cid = client_id.encode()
    body = len(name).to_bytes(2, "big") + name + bytes([version, 0x02 if clean else 0]) + keepalive.to_bytes(2, "big")
    if version == 5:
        body += b"\x00"  # no properties
    body += len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


class OpenLoopPublisher:
    """A QoS 1 publisher running open loop (64 in flight; paho queues up to 1,000 more, so that its
    packet ids do not wrap) until `cut_off()`: `message(n)` gives the (topic, payload, retain) of
    the n-th message; `acked()` the numbers whose PUBACK arrived."""

    def __init__(self, broker, message):
        import threading
        self._acked = []
        self._mids = {}
        self.pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("p"))
        self.pub.max_inflight_messages_set(64)
        self.pub.max_queued_messages_set(0)
        self.pub.on_publish = lambda c, u, mid, rc, props: self._acked.append(self._mids.get(mid))
        self.pub.connect(broker.host, broker.port)
        self.pub.loop_start()
        self._stop = threading.Event()

        def run():
            n = 0
            while not self._stop.is_set():
                topic, payload, retain = message(n)
                info = self.pub.publish(topic, payload, 1, retain=retain)
                self._mids[info.mid] = n
                n += 1
                while n - len(self._acked) > 1000 and not self._stop.is_set():
                    time.sleep(0.001)
        self._thread = threading.Thread(target=run)
        self._thread.start()

    def wait_for(self, count, timeout=60):
        wait_until(lambda: len(self._acked) >= count, timeout=timeout, message=f"{count} PUBACKs")

    def cut_off(self):
        """After the broker died: stops publishing; returns the PUBACKed numbers."""
        self._stop.set()
        self._thread.join()
        self.pub.loop_stop()
        return [n for n in list(self._acked) if n is not None]
