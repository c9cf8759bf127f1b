#!/usr/bin/env python3
"""Difference of two jemalloc statistics dumps (malloc_stats_print, merged arenas): bytes and
allocations per connection by size class, and the totals' deltas.

    by-size-class.py BEFORE.txt AFTER.txt CONNECTIONS
"""
import re
import sys


def parse(path):
    classes, totals, mode = {}, {}, None
    for line in open(path):
        t = line.split()
        if not t:
            continue
        if t[0] == "Allocated:":  # Allocated: N, active: N, metadata: N (n_thp 0), resident: N, ...
            totals = {k.lower(): int(v) for k, v in re.findall(r"(\w+): (\d+)", line)}
        if t[0] == "bins:":
            mode = "small"
        elif t[0] == "large:" and len(t) > 1 and t[1] == "size":
            mode = "large"
        elif t[0] == "extents:":
            mode = None
        elif mode and t[0].isdigit() and len(t) > 3:
            classes[(mode, int(t[0]))] = int(t[2])  # size, ind, allocated
    return classes, totals


(a, ta), (b, tb), n = parse(sys.argv[1]), parse(sys.argv[2]), int(sys.argv[3])
for key in sorted(set(a) | set(b), key=lambda k: k[1]):
    delta = b.get(key, 0) - a.get(key, 0)
    if abs(delta) / n >= 1:
        print(f"{key[0]:5} {key[1]:7} B class: {delta / n:8.1f} bytes/conn ({delta / n / key[1]:.2f} allocations)")
for key in ("allocated", "active", "metadata", "resident"):
    print(f"jemalloc {key}: {(tb[key] - ta[key]) / n:8.1f} bytes/conn")
