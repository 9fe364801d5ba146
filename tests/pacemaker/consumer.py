#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""consumer.py: the stand-in for a domain in the Pacemaker tests: a client
of one cowherd volume that verifies, then writes numbered records.

  consumer.py LOG URI NODE READY FAIL
  consumer.py verify LOG URI      check as at start, print "verified N"

Connects to URI (retrying for 30 s), reads LOG ("i node time_ns" per
acknowledged record i) and checks that the newest record of every slot is
on the volume; then writes READY ("verified N") and writes records
i = last+1, last+2, .. forever, record i as 4 KiB block i % SLOTS with a
pattern of its own, appending "i NODE time.time_ns()" to LOG after each
acknowledgement.  A record that is not there: one sentence in FAIL, exit 1.
A failed write: exit 1 (the agent's monitor then reports the failure).
"""
import os
import sys
import time

import nbd

BLOCK = 4096
SLOTS = 4096


def pattern(i):
    head = ("cowherd record %010d " % i).encode()
    return (head * (BLOCK // len(head) + 1))[:BLOCK]


def connect(uri):
    end = time.monotonic() + 30
    while True:
        try:
            h = nbd.NBD()
            h.connect_uri(uri)
            return h
        except nbd.Error:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def newest(log):
    slots = {}
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    i = int(parts[0])
                    slots[i % SLOTS] = max(i, slots.get(i % SLOTS, -1))
    return slots


def verify(h, slots):
    for slot, i in sorted(slots.items()):
        if h.pread(BLOCK, slot * BLOCK) != pattern(i):
            return "acknowledged record %d (block %d) is not on the volume" % (i, slot)
    return None


def main():
    if sys.argv[1] == "verify":
        slots = newest(sys.argv[2])
        err = verify(connect(sys.argv[3]), slots)
        if err:
            sys.exit("consumer: " + err)
        print("verified %d" % len(slots))
        return
    log, uri, node, ready, failfile = sys.argv[1:6]
    h = connect(uri)
    slots = newest(log)
    err = verify(h, slots)
    if err:
        with open(failfile, "a") as f:
            f.write("node %s: %s\n" % (node, err))
        sys.exit("consumer: " + err)
    with open(ready, "w") as f:
        f.write("verified %d\n" % len(slots))
    i = max(slots.values(), default=-1) + 1
    with open(log, "a") as f:
        while True:
            h.pwrite(pattern(i), (i % SLOTS) * BLOCK)
            f.write("%d %s %d\n" % (i, node, time.time_ns()))
            f.flush()
            i += 1
            time.sleep(0.005)


if __name__ == "__main__":
    main()
