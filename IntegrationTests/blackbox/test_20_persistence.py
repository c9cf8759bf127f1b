"""20-persistence: with `persistence true`, retained messages (and their deletions, QoS, v5
properties and message expiry) survive a SIGTERM restart and a kill -9 in the middle of a stream of
QoS 1 retained PUBLISHes (every one that was PUBACKed is there afterwards), a torn tail and a
corrupt record in a log do not stop the broker (unless persistence_strict, which names the file and
offset), and the disk stays bounded while retained messages are overwritten."""
import glob
import os
import signal
import subprocess
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from conftest import APUS_BIN, BROKER, TIMEOUT, Broker, Client, OpenLoopPublisher, free_port, unique, wait_until

pytestmark = pytest.mark.skipif(BROKER != "apus", reason="apus persistence settings")


def start(directory, *extra):
    return Broker(("--set", "persistence=true", "--set", f"persistence_location={directory}", *extra))


def kill9(b):
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(timeout=5)


def retained(b, filter, count, protocol=mqtt.MQTTv311):
    """The retained messages a new subscription to `filter` gets: {topic: (payload, qos, properties)}."""
    got = {}
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("r"), protocol=protocol)

    def on_message(_c, _u, m):
        assert m.retain
        got[m.topic] = (m.payload, m.qos, getattr(m, "properties", None))
        if len(got) >= count:
            done.set()
    c.on_message = on_message
    c.connect(b.host, b.port)
    c.loop_start()
    c.subscribe(filter, 2)
    done.wait(TIMEOUT if count else 0.5)
    time.sleep(0.3)  # any more than `count` would arrive in this time too
    c.disconnect()
    c.loop_stop()
    return got


def test_retained_messages_survive_a_restart(tmp_path):
    b = start(tmp_path)
    c = Client(b, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k", "v")]
    props.ContentType = "text/plain"
    c.mqtt.publish("keep/props", b"with properties", 1, retain=True, properties=props).wait_for_publish(TIMEOUT)
    expiring = Properties(PacketTypes.PUBLISH)
    expiring.MessageExpiryInterval = 300
    c.mqtt.publish("keep/expiry", b"expires", 1, retain=True, properties=expiring).wait_for_publish(TIMEOUT)
    short = Properties(PacketTypes.PUBLISH)
    short.MessageExpiryInterval = 1
    c.mqtt.publish("keep/gone", b"expires soon", 1, retain=True, properties=short).wait_for_publish(TIMEOUT)
    c.mqtt.publish("keep/deleted", b"x", 1, retain=True).wait_for_publish(TIMEOUT)
    c.mqtt.publish("keep/deleted", b"", 1, retain=True).wait_for_publish(TIMEOUT)
    c.mqtt.publish("keep/q2", b"exactly once", 2, retain=True).wait_for_publish(TIMEOUT)
    c.mqtt.publish("keep/q0", b"at most once", 0, retain=True)
    c.mqtt.publish("$SYS/keep", b"not stored", 0, retain=True)
    c.close()
    time.sleep(0.3)
    b.stop()
    time.sleep(1.1)  # keep/gone expires meanwhile
    b = start(tmp_path)
    try:
        got = retained(b, "keep/#", 4, protocol=mqtt.MQTTv5)
        assert set(got) == {"keep/props", "keep/expiry", "keep/q2", "keep/q0"}, got
        payload, qos, p = got["keep/props"]
        assert payload == b"with properties" and qos == 1
        assert p.UserProperty == [("k", "v")] and p.ContentType == "text/plain"
        assert 290 <= got["keep/expiry"][2].MessageExpiryInterval <= 300
        assert got["keep/q2"][:2] == (b"exactly once", 2)
        assert got["keep/q0"][:2] == (b"at most once", 0)
        assert retained(b, "$SYS/keep", 0) == {}
        assert "store: recovered" in open(b.log.name).read()
    finally:
        b.stop()


def test_every_acknowledged_retained_message_survives_kill_9_under_load(tmp_path):
    """A QoS 1 publisher runs open loop (64 in flight) over fresh topics and is cut off by kill -9:
    every PUBLISH that was PUBACKed is a retained message after the restart."""
    b = start(tmp_path)
    pub = OpenLoopPublisher(b, lambda n: (f"load/{n}", f"payload {n}".encode(), True))
    pub.wait_for(2000, timeout=30)
    kill9(b)
    acked_now = pub.cut_off()
    b = start(tmp_path)
    try:
        got = retained(b, "load/#", len(acked_now))
        missing = [n for n in acked_now if got.get(f"load/{n}", (None,))[0] != f"payload {n}".encode()]
        assert not missing, f"{len(missing)} of {len(acked_now)} PUBACKed retained messages missing, e.g. {missing[:5]}"
    finally:
        b.stop()


def segments(directory):
    return sorted(glob.glob(os.path.join(directory, "apus-s*-*.log")))


def test_torn_tail_and_corrupt_record_do_not_stop_the_broker(tmp_path):
    b = Broker(("--set", "persistence=true", "--set", f"persistence_location={tmp_path}"), shards=1)
    c = Client(b)
    for i in range(5):
        c.mqtt.publish(f"t/{i}", f"value {i}".encode(), 1, retain=True).wait_for_publish(TIMEOUT)
    c.close()
    b.stop()
    [log] = segments(tmp_path)
    data = bytearray(open(log, "rb").read())
    # Corrupt one byte inside the record of t/2 (its payload), and append half a record.
    at = data.index(b"value 2")
    data[at] ^= 0x20
    data += data[-30:-10]
    open(log, "wb").write(bytes(data))
    # persistence_strict: the start is refused, naming the file and the offset.
    strict = subprocess.run([APUS_BIN, "--port", "0", "--shards", "1", "--set", "persistence=true",
                             "--set", f"persistence_location={tmp_path}", "--set", "persistence_strict=true"],
                            capture_output=True, text=True, timeout=30)
    assert strict.returncode != 0
    assert f"{log}: corrupt record at offset" in strict.stderr, strict.stderr
    assert open(log, "rb").read() == bytes(data), "a refused start leaves the files as they were"
    b = Broker(("--set", "persistence=true", "--set", f"persistence_location={tmp_path}"), shards=1)
    try:
        got = retained(b, "t/#", 4)
        assert set(got) == {"t/0", "t/1", "t/3", "t/4"}, got
        text = open(b.log.name).read()
        assert "torn_tail_bytes=20" in text, text
        assert "corrupt records skipped" in text, text
        # The broker wrote a fresh segment: the next restart finds no damage.
        b.stop()
        b = Broker(("--set", "persistence=true", "--set", f"persistence_location={tmp_path}"), shards=1)
        assert set(retained(b, "t/#", 4)) == {"t/0", "t/1", "t/3", "t/4"}
        assert "corrupt records skipped" not in open(b.log.name).read()
    finally:
        b.stop()


def test_disk_stays_bounded_while_retained_messages_are_overwritten(tmp_path):
    """1 GB of retained PUBLISHes to 10 topics: the logs are compacted as they grow (16 MiB and
    four times the snapshot), so the directory stays a few tens of MB, and the last value of each
    topic is what a restart brings back."""
    http = free_port()
    b = start(tmp_path, "--set", f"http_listener={http} 127.0.0.1")
    try:
        line = "x" * 10_000
        lines = "".join(f"{line}\n" for _ in range(1000))
        for round in range(10):
            for topic in range(10):
                subprocess.run(["mosquitto_pub", "-p", str(b.port), "-t", f"big/{topic}", "-r", "-q", "1", "-l"],
                               input=lines.encode(), check=True, timeout=60)
            size = sum(os.path.getsize(p) for p in segments(tmp_path))
            assert size < 48 << 20, f"{size} bytes on disk after {(round + 1) * 100} MB of retained messages"
        for topic in range(10):
            subprocess.run(["mosquitto_pub", "-p", str(b.port), "-t", f"big/{topic}", "-r", "-q", "1", "-m", f"last {topic}"],
                           check=True, timeout=10)
        assert max(int(p.rsplit("-", 1)[1][:-4]) for p in segments(tmp_path)) > 1, "no compaction happened"
        def store_metrics():
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=TIMEOUT) as r:
                return dict(line.rsplit(" ", 1) for line in r.read().decode().splitlines() if line.startswith("apus_store_"))
        # The shards report their gauges once a second: wait for a report after the last PUBACK.
        metrics = wait_until(lambda: (m := store_metrics())["apus_store_waiting_connections"] == "0" and m,
                             message="no connection waiting for the store")
        assert int(metrics["apus_store_compactions_total"]) >= 2, metrics
        assert int(metrics["apus_store_bytes_written_total"]) >= 100_000_000, metrics
        assert int(metrics["apus_store_failures_total"]) == 0, metrics
        assert int(metrics["apus_store_waiting_connections"]) == 0, metrics
        assert int(metrics["apus_store_segment_bytes"]) < 48 << 20, metrics
    finally:
        b.stop()
    b = start(tmp_path)
    try:
        got = retained(b, "big/#", 10)
        assert {t: v[0] for t, v in got.items()} == {f"big/{i}": f"last {i}".encode() for i in range(10)}
    finally:
        b.stop()


def test_a_full_disk_stops_acknowledging_and_recovers(tmp_path):
    """The store's file system fills up: a 3.1.1 QoS 1 retained PUBLISH is not acknowledged (it
    cannot say no) and a v5 one gets PUBACK 0x97; the failures show in /metrics. When space comes
    back the held PUBACK goes out by itself, v5 PUBLISHes are taken again, and a restart has the
    message that was held."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        http = free_port()
        b = Broker(("--set", "persistence=true", "--set", f"persistence_location={disk}/store",
                    "--set", f"http_listener={http} 127.0.0.1"), shards=1)

        def metric(name):
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=TIMEOUT) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith(name):
                        return int(line.rsplit(" ", 1)[1])
        try:
            filler = disk / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            for chunk in (65536, 4096):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError:
                    pass
            os.close(fd)
            old = Client(b)
            big = b"held while full" + b"." * 100_000  # more than the segment's last page can take
            held = old.mqtt.publish("full/held", big, 1, retain=True)
            wait_until(lambda: metric("apus_store_failures_total") > 0, message="a failed write in /metrics")
            wait_until(lambda: metric("apus_store_waiting_connections") == 1, message="the 3.1.1 publisher waiting")
            assert not held.is_published(), "PUBACK before the record was written"
            v5 = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("v5"), protocol=mqtt.MQTTv5)
            codes = []
            v5.on_publish = lambda c, u, mid, rc, props: codes.append(rc)
            v5.connect(b.host, b.port)
            v5.loop_start()
            v5.publish("full/v5", b"refused", 1, retain=True)
            wait_until(lambda: codes, message="PUBACK for the v5 publisher")
            assert codes[0].value == 0x97, codes
            os.unlink(filler)  # space again: the writes resume by themselves
            held.wait_for_publish(TIMEOUT)
            assert held.is_published()
            taken = v5.publish("full/v5", b"taken", 1, retain=True)
            taken.wait_for_publish(TIMEOUT)
            assert len(codes) == 2 and codes[1].value < 0x80, f"v5 PUBLISHes taken again: {codes}"  # 0x10: no subscribers
            wait_until(lambda: metric("apus_messages_dropped_total{reason=\"store_unavailable\"}") == 1,
                       message="the refusal counted")
            v5.disconnect()
            v5.loop_stop()
            old.close()
        finally:
            b.stop()
        b = Broker(("--set", "persistence=true", "--set", f"persistence_location={disk}/store"), shards=1)
        try:
            got = retained(b, "full/#", 2)
            assert got["full/held"][0] == big
            assert got["full/v5"][0] == b"taken"
        finally:
            b.stop()
    finally:
        subprocess.run(["umount", str(disk)])


def test_an_http_api_publish_is_answered_once_stored(tmp_path, monkeypatch):
    """POST /api/v5/publish of a retained message is answered, like a PUBACK, only once its record
    is written: with a slow disk (writes wait 500 ms, fault injection), a kill -9 right after the
    answer still finds the message after the restart."""
    import json
    http = free_port()
    monkeypatch.setenv("APUS_FAULT_STORE_WRITE_DELAY_MS", "500")
    b = start(tmp_path, "--set", f"http_listener={http} 127.0.0.1")
    monkeypatch.delenv("APUS_FAULT_STORE_WRITE_DELAY_MS")
    request = urllib.request.Request(f"http://127.0.0.1:{http}/api/v5/publish", method="POST",
                                     data=json.dumps({"topic": "api/kept", "payload": "via http", "retain": True, "qos": 1}).encode())
    with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
        assert r.status in (200, 202)
    kill9(b)
    b = start(tmp_path)
    try:
        assert retained(b, "api/#", 1)["api/kept"][0] == b"via http"
    finally:
        b.stop()
