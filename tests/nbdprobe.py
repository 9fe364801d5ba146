#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nbdprobe.py: open-loop latency of an NBD export, as a guest sees it.

  nbdprobe.py URI SECONDS INTERVAL_MS

Sends a 4 KiB read at a random aligned offset every INTERVAL_MS for
SECONDS, without waiting for earlier ones (libnbd's asynchronous API), so
a server that stalls for T ms shows T / INTERVAL_MS late requests instead
of one, as a domain issuing IO all the time would see.  Prints one JSON
object: count, errors, p50_ms, p99_ms, max_ms.  Exit 1 when a read fails.
"""
import json
import random
import sys
import time

import nbd


def main():
    uri, seconds, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]) / 1000
    h = nbd.NBD()
    h.connect_uri(uri)
    blocks = h.get_size() // 4096
    lat, errors, sent = [], 0, {}
    start = time.monotonic()
    nxt = start
    buf = nbd.Buffer(4096)
    while True:
        now = time.monotonic()
        if now >= nxt and now - start < seconds:
            t0 = now

            def done(err, t0=t0):
                nonlocal errors
                if err.value:
                    errors += 1
                lat.append((time.monotonic() - t0) * 1000)
                return 1

            h.aio_pread(buf, random.randrange(blocks) * 4096, completion=done)
            nxt += interval
        if now - start >= seconds and h.aio_in_flight() == 0:
            break
        wait = max(0, min(nxt - time.monotonic(), 0.05)) if now - start < seconds else 0.05
        h.poll(int(wait * 1000))
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0
    print(json.dumps({"count": len(lat), "errors": errors,
                      "p50_ms": round(pick(0.50), 3), "p99_ms": round(pick(0.99), 3),
                      "max_ms": round(lat[-1], 3) if lat else 0}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
