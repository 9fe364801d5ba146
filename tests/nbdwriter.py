#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nbdwriter.py: a client that records every write it had acknowledged,
for the failover tests and benchmark (libnbd's Python binding).

  nbdwriter.py write LOG COUNT OFFSET URI [URI...]
      Writes COUNT 4 KiB blocks one after the other from OFFSET, block i
      filled with a pattern of its own.  After each acknowledgement it
      appends "i monotonic_ns" to LOG.  When a write fails it drops the
      connection and tries the URIs in turn (every 20 ms, for at most 60 s)
      and writes the same block again: a client that reconnects to the new
      owner.  Exit 0 when all COUNT blocks are acknowledged, or every
      block up to the end of the volume: a write past it would fail, and
      be retried, for ever.
  nbdwriter.py verify LOG OFFSET URI
      Reads back every block LOG says was acknowledged and checks it.
  nbdwriter.py stream LOG URI WRITER RATE SECONDS BLOCKS
      Writes at RATE per second for SECONDS, record n to block n % BLOCKS
      (4 KiB records naming WRITER and n), one at a time, and appends to
      LOG for every invocation "inv W n t", acknowledgement "ack W n t" and
      failure "err W n t" (t: CLOCK_MONOTONIC ns, the clock cowd's lease
      uses).  A failed write is not retried (the next record follows); a
      dropped connection is made again every 20 ms.  Exit 0.
  nbdwriter.py reads LOG URI RATE SECONDS BLOCKS
      Reads block n % BLOCKS at RATE per second and logs "rok n t" for an
      answered read, "rerr n t" for a refused one.
  nbdwriter.py check URI BLOCKS LOG...
      For every block, the record of the last acknowledged write in the
      LOGs (by time) must be what the block holds; blocks nobody wrote are
      not checked.  Prints how many blocks were checked.

Exit status 1 and one line on stderr on failure.
"""
import sys
import time

import nbd

BLOCK = 4096


def pattern(i):
    head = ("cowherd block %08d " % i).encode()
    return (head * (BLOCK // len(head) + 1))[:BLOCK]


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def write(log, count, offset, uris):
    h = connect(uris[0])
    count = min(count, (h.get_size() - offset) // BLOCK)
    i = 0
    with open(log, "a") as f:
        while i < count:
            try:
                h.pwrite(pattern(i), offset + i * BLOCK)
            except nbd.Error as e:
                print("nbdwriter: block %d: %s; reconnecting" % (i, e),
                      file=sys.stderr)
                h = reconnect(uris)
                continue
            f.write("%d %d\n" % (i, time.monotonic_ns()))
            f.flush()
            i += 1


def reconnect(uris):
    end = time.monotonic() + 60
    k = 0
    while time.monotonic() < end:
        try:
            return connect(uris[k % len(uris)])
        except nbd.Error:
            k += 1
            time.sleep(0.02)
    sys.exit("nbdwriter: no server took the connection within 60 s")


def verify(log, offset, uri):
    h = connect(uri)
    acked = set()
    with open(log) as f:
        for line in f:
            acked.add(int(line.split()[0]))
    for i in sorted(acked):
        if h.pread(BLOCK, offset + i * BLOCK) != pattern(i):
            sys.exit("nbdverify: acknowledged block %d is not there" % i)
    print("verified %d acknowledged blocks" % len(acked))


def record(writer, n):
    head = ("cowherd writer %s record %010d " % (writer, n)).encode()
    return (head * (BLOCK // len(head) + 1))[:BLOCK]


def paced(rate, seconds):
    """Yield n = 0, 1, ... at rate per second until seconds have passed."""
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        delay = t0 + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield n
        n += 1


def try_connect(uri):
    try:
        return connect(uri)
    except nbd.Error:
        time.sleep(0.02)
        return None


def paced_ops(log, uri, rate, seconds, op):
    """Run op(h, n, f) at rate per second on a connection to uri, made
    again when it drops; op logs its own outcome to f."""
    h = try_connect(uri)
    with open(log, "a") as f:
        for n in paced(rate, seconds):
            if h is None:
                h = try_connect(uri)
                continue
            try:
                op(h, n, f)
            except nbd.Error:
                if h.aio_is_dead() or h.aio_is_closed():
                    h = None
            f.flush()


def stream(log, uri, writer, rate, seconds, blocks):
    def op(h, n, f):
        f.write("inv %s %d %d\n" % (writer, n, time.monotonic_ns()))
        f.flush()
        try:
            h.pwrite(record(writer, n), (n % blocks) * BLOCK)
        except nbd.Error:
            f.write("err %s %d %d\n" % (writer, n, time.monotonic_ns()))
            raise
        f.write("ack %s %d %d\n" % (writer, n, time.monotonic_ns()))
    paced_ops(log, uri, rate, seconds, op)


def reads(log, uri, rate, seconds, blocks):
    def op(h, n, f):
        try:
            h.pread(BLOCK, (n % blocks) * BLOCK)
        except nbd.Error:
            f.write("rerr %d %d\n" % (n, time.monotonic_ns()))
            raise
        f.write("rok %d %d\n" % (n, time.monotonic_ns()))
    paced_ops(log, uri, rate, seconds, op)


def check(uri, blocks, logs):
    last = {}
    for log in logs:
        with open(log) as f:
            for line in f:
                w = line.split()
                if w[0] == "ack":
                    b = int(w[2]) % blocks
                    t = int(w[3])
                    if b not in last or last[b][0] < t:
                        last[b] = (t, w[1], int(w[2]))
    h = connect(uri)
    for b, (t, writer, n) in sorted(last.items()):
        got = h.pread(BLOCK, b * BLOCK)
        if got != record(writer, n):
            sys.exit("nbdcheck: block %d holds %r, not writer %s record %d, "
                     "the last acknowledged" % (b, got[:40], writer, n))
    print("checked %d blocks" % len(last))


def main():
    a = sys.argv
    if len(a) == 8 and a[1] == "stream":
        stream(a[2], a[3], a[4], float(a[5]), float(a[6]), int(a[7]))
    elif len(a) == 7 and a[1] == "reads":
        reads(a[2], a[3], float(a[4]), float(a[5]), int(a[6]))
    elif len(a) >= 5 and a[1] == "check":
        check(a[2], int(a[3]), a[4:])
    elif len(sys.argv) >= 6 and sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
    elif len(sys.argv) == 5 and sys.argv[1] == "verify":
        verify(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
