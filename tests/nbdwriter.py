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
      owner.  Exit 0 when all COUNT blocks are acknowledged.
  nbdwriter.py verify LOG OFFSET URI
      Reads back every block LOG says was acknowledged and checks it.

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


def main():
    if len(sys.argv) >= 6 and sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
    elif len(sys.argv) == 5 and sys.argv[1] == "verify":
        verify(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
