"""07-keepalive: a client silent for 1.5 × keep alive is disconnected (and its will published);
PINGREQ keeps a connection alive."""
import time

from conftest import Raw, connect_packet, unique
from test_06_will import connect_with_will


def test_silent_client_disconnected_after_one_and_a_half_keepalive(broker, clients):
    base = unique("ka")
    watcher = clients()
    watcher.subscribe(f"{base}/#")
    r = Raw(broker)
    start = time.monotonic()
    r.send(connect_with_will(unique("k"), f"{base}/expired", b"ka", keepalive=1))
    assert r.read(4) == b"\x20\x02\x00\x00"
    assert r.closed_by_server(timeout=6)
    elapsed = time.monotonic() - start
    assert elapsed >= 1.0, f"closed after {elapsed:.2f}s, before the keep alive ran out"
    assert watcher.receive(1) == [(f"{base}/expired", b"ka", 0)]


def test_pingreq_keeps_connection_alive(broker):
    r = Raw(broker)
    r.send(connect_packet(unique("alive"), keepalive=1))
    assert r.read(4) == b"\x20\x02\x00\x00"
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        r.send(b"\xc0\x00")
        assert r.read(2) == b"\xd0\x00"
        time.sleep(0.4)  # pacing the client's own pings, below the 1 s keep alive
    r.close()
