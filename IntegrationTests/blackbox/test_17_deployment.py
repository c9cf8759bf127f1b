"""17-deployment: systemd's notify protocol played by the test against the real apus (READY=1 once
the port serves, WATCHDOG=1 only while every shard ticks, STOPPING=1), GET /health per shard (503
when one is stalled) and /health/ready, and configuration from APUS_<KEY> environment variables
(flags > environment > file)."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import APUS_BIN, BROKER, TIMEOUT, connect_packet, free_port, unique

pytestmark = pytest.mark.skipif(BROKER != "apus", reason="apus's own supervision and environment")


class Notified:
    """An apus started as systemd would start a Type=notify service, with the test holding the
    NOTIFY_SOCKET end."""

    def __init__(self, tmp_path, env=(), args=(), watchdog_usec=None):
        self.path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.port, self.http = free_port(), free_port()
        conf = tmp_path / "apus.conf"
        conf.write_text(f"http_listener {self.http}\n")
        environment = dict(os.environ, NOTIFY_SOCKET=self.path, **dict(env))
        if watchdog_usec:
            environment["WATCHDOG_USEC"] = str(watchdog_usec)
        self.log = tempfile.NamedTemporaryFile(prefix="apus-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([APUS_BIN, "--port", str(self.port), "--shards", "2", "--config", str(conf), *args],
                                     env=environment, stdout=self.log, stderr=subprocess.STDOUT)

    def message(self, timeout=TIMEOUT):
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def health(self, path="/health"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=TIMEOUT) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def log_tail(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()[-3000:]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


def mqtt_connects(port):
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(connect_packet(unique("ready")))
        return s.recv(4) == b"\x20\x02\x00\x00"


def test_ready_watchdog_and_stopping(tmp_path):
    n = Notified(tmp_path, watchdog_usec=400_000)
    try:
        first = n.message()
        assert first.startswith("READY=1"), first
        # READY came after the listeners were bound and every shard serves: connect at once.
        assert mqtt_connects(n.port)
        status, body = n.health("/health/ready")
        assert status == 200 and body["status"] == "ready"
        pings = [n.message(timeout=2) for _ in range(4)]  # every 0.2 s
        assert all(p == "WATCHDOG=1" for p in pings), pings
        status, body = n.health()
        assert status == 200 and body["status"] == "ok"
        assert [s["shard"] for s in body["shard_loops"]] == [0, 1]
        assert all(s["last_tick_ms"] < 1000 and not s["stalled"] for s in body["shard_loops"]), body
        n.proc.send_signal(signal.SIGTERM)
        rest = []
        while True:
            m = n.message(timeout=5)
            rest.append(m)
            if m != "WATCHDOG=1":
                break
        assert rest[-1] == "STOPPING=1", rest
        assert n.proc.wait(timeout=10) == 0
    finally:
        n.close()


def test_watchdog_keeps_its_schedule_through_frequent_sighups(tmp_path):
    """SIGHUPs more often than the ping period do not delay the pings (each used to restart the
    wait): WATCHDOG_USEC 2 s means a ping every second, and a reload every 0.3 s must not starve it."""
    n = Notified(tmp_path, watchdog_usec=2_000_000)
    try:
        assert n.message().startswith("READY=1")
        start = time.monotonic()
        pings = 0
        n.sock.settimeout(0.3)
        while time.monotonic() - start < 4.5:
            n.proc.send_signal(signal.SIGHUP)
            try:
                if n.sock.recv(4096).decode() == "WATCHDOG=1":
                    pings += 1
            except socket.timeout:
                pass
        assert pings >= 3, f"{pings} pings in 4.5 s with a SIGHUP every 0.3 s\n{n.log_tail()}"
        assert n.proc.poll() is None
    finally:
        n.close()


def test_watchdog_stops_when_a_shard_stalls(tmp_path):
    # Fault injection (docs/operations.md): shard 1 stops ticking 1.5 s after start.
    n = Notified(tmp_path, watchdog_usec=400_000,
                 env={"APUS_FAULT_STALL_SHARD": "1", "APUS_FAULT_STALL_AFTER": "1.5"})
    try:
        assert n.message().startswith("READY=1")
        started = time.monotonic()
        last_ping = started
        while time.monotonic() - started < 6:
            try:
                m = n.message(timeout=1.5)
            except socket.timeout:
                break  # no ping for 1.5 s: systemd (WatchdogSec 0.4 s) would have restarted apus
            assert m == "WATCHDOG=1", m
            last_ping = time.monotonic()
        else:
            raise AssertionError("watchdog pings went on although shard 1 stopped ticking")
        assert 1.0 < last_ping - started < 4.0, last_ping - started
        status, body = n.health()
        assert status == 503 and body["status"] == "stalled", body
        assert [s["stalled"] for s in body["shard_loops"]] == [False, True], body
        assert "watchdog pings withheld" in n.log_tail()
    finally:
        n.close()


def v5_maximum_packet_size(port):
    """The Maximum Packet Size a v5 CONNACK advertises (None when absent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(connect_packet(unique("env"), version=5))
        head = s.recv(2)
        body = b""
        while len(body) < head[1]:
            body += s.recv(head[1] - len(body))
    props = body[3:]  # flags, reason code, property length (one byte here)
    fixed = {0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1, 0x21: 2, 0x22: 2, 0x13: 2, 0x27: 4, 0x11: 4}
    strings = {0x12: 1, 0x1A: 1, 0x1F: 1, 0x1C: 1, 0x15: 1, 0x16: 1, 0x26: 2}
    i = 0
    while i < len(props):
        pid = props[i]
        i += 1
        if pid == 0x27:
            return int.from_bytes(props[i:i + 4], "big")
        if pid in fixed:
            i += fixed[pid]
        elif pid in strings:
            for _ in range(strings[pid]):
                i += 2 + int.from_bytes(props[i:i + 2], "big")
        else:
            raise AssertionError(f"unexpected CONNACK property {pid:#x}")
    return None


def start(args, env, tmp_path):
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="apus-env-", suffix=".log", delete=False)
    proc = subprocess.Popen([APUS_BIN, "--port", str(port), "--shards", "1", *args], env=dict(os.environ, **env),
                            stdout=log, stderr=subprocess.STDOUT)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(open(log.name).read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port, log.name
        except OSError:
            time.sleep(0.02)
    raise AssertionError("apus did not start")


def test_environment_configuration_and_precedence(tmp_path):
    conf = tmp_path / "apus.conf"
    conf.write_text("max_packet_size 4096\n")
    cases = [
        ((), {}, 1048576),  # built-in default
        (("--config", str(conf)), {}, 4096),  # file
        (("--config", str(conf)), {"APUS_MAX_PACKET_SIZE": "2048"}, 2048),  # environment > file
        (("--config", str(conf), "--max-packet-size", "3000"), {"APUS_MAX_PACKET_SIZE": "2048"}, 3000),  # flag > environment
    ]
    for args, env, expected in cases:
        proc, port, log = start(args, env, tmp_path)
        try:
            assert v5_maximum_packet_size(port) == expected, (args, env, open(log).read()[-500:])
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


def test_environment_errors_and_unknown_names(tmp_path):
    bad = subprocess.run([APUS_BIN, "--port", str(free_port())], env=dict(os.environ, APUS_MAX_QOS="7"),
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0 and "max_qos" in bad.stderr, bad.stderr
    # A name that is no key is not fatal (other tools share the prefix) but is logged.
    proc, port, log = start((), {"APUS_MAX_QUEUED": "5", "APUS_ALLOW_ANONYMOUS": "false"}, tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(connect_packet(unique("anon")))
            assert s.recv(4) == b"\x20\x02\x00\x05", "APUS_ALLOW_ANONYMOUS=false refuses anonymous clients"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "APUS_MAX_QUEUED names no setting" in open(log).read()
    finally:
        if proc.poll() is None:
            proc.kill()
