"""03-load: 20 publishers × 20 subscribers on distinct topics at QoS 1, spread over both shards:
every message arrives exactly once and in order."""
import threading

from conftest import Client, unique


def test_20x20_qos1_loses_nothing(broker):
    base = unique("load")
    n = 500
    subs = [Client(broker) for _ in range(20)]
    pubs = [Client(broker) for _ in range(20)]
    try:
        for i, s in enumerate(subs):
            assert s.subscribe(f"{base}/{i}", 1)[0].value == 1
        def run(i):
            for k in range(n):
                pubs[i].publish(f"{base}/{i}", k.to_bytes(4, "big"), qos=1, wait=False)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for i, s in enumerate(subs):
            got = s.receive(n, timeout=60)
            seq = [int.from_bytes(m[1], "big") for m in got]
            assert seq == list(range(n)), f"subscriber {i}"
            assert all(m[0] == f"{base}/{i}" and m[2] == 1 for m in got)
            s.assert_no_message(within=0.05)
    finally:
        for c in subs + pubs:
            c.close()
    broker.assert_alive()
