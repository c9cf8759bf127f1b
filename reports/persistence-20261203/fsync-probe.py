#!/usr/bin/env python3
"""Latency of a plain fdatasync after a 4 KiB append on the file system of /tmp (the store's
directory in run.sh): what one `persistence_durability synced` group commit waits for."""
import os
import time

fd = os.open("/tmp/fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
lat = []
for _ in range(300):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter()
    os.fdatasync(fd)
    lat.append((time.perf_counter() - t) * 1e6)
os.close(fd)
os.unlink("/tmp/fsync-probe")
lat.sort()
print("fdatasync after a 4 KiB append: p50 %.0f us p90 %.0f us p99 %.0f us" % (lat[150], lat[270], lat[297]))
