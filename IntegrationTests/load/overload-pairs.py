#!/usr/bin/env python3
"""The overload issue's first scenario against a running broker: PAIRS publisher/subscriber pairs,
each publisher sending COUNT QoS 1 messages as fast as it can with at most WINDOW unacknowledged
(its PUBACKs pace it, as a real client's inflight window does), each subscriber acknowledging what
it receives. Counts exactly which PUBACKed messages never arrived (60 s at most).

    IntegrationTests/load/overload-pairs.py --port 1883 [--pairs 20 --count 2000 --window 64] [--pid BROKER_PID]

Prints one JSON object (acked, received, acked_not_received, seconds, broker RSS in KiB).
The same loop is the black-box test IntegrationTests/blackbox/test_16_overload.py.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "blackbox"))
import test_16_overload as overload  # noqa: E402


class Address:
    host = "127.0.0.1"
    port = 1883


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--pid", type=int, help="the broker's pid, to report its RSS")
    a = ap.parse_args()
    broker = Address()
    broker.port = a.port
    start = time.monotonic()
    acked, received = overload.run_pairs(broker, a.pairs, a.count, a.window, overload.unique("ov"), deadline_s=60)
    elapsed = time.monotonic() - start
    print(json.dumps({
        "pairs": a.pairs, "count": a.count, "window": a.window,
        "acked": sum(map(len, acked)), "received": sum(map(len, received)),
        "acked_not_received": sum(len(acked[i] - received[i]) for i in range(a.pairs)),
        "seconds": round(elapsed, 2), "broker_rss_kib": overload.rss_kib(a.pid) if a.pid else None,
    }))


if __name__ == "__main__":
    main()
