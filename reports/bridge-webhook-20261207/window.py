"""The bridges inflight window measured: apus -> apus bridge, pairs 10x10 QoS 1 (64 B, closed loop),
bridge_max_inflight_messages 20 (a client's window) against 1000 (the default), two rounds each.

  python3 reports/bridge-webhook-20261207/window.py
"""
import sys, os, statistics
sys.path.insert(0, "reports/bridge-webhook-20261207")
import measure as m
out = {}
for window in (20, 1000):
    remote = m.Proc("apus", [])
    local = m.Proc("apus", m.bridge_line("apus", remote) + [f"bridge_max_inflight_messages {window}"])
    try:
        m.wait_bridge(local, remote)
        runs = [m.bench(local, remote, 1, f"apus->apus-w{window}", f"reports/bridge-webhook-20261207/bridge-window{window}-q1-{r+1}.json") for r in range(2)]
        print(window, [(r["msgs_per_s"], r["lost"]) for r in runs], flush=True)
    finally:
        local.stop(); remote.stop()
