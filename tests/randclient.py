#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""randclient.py: a client that writes and reads at random while the
volume does background work (hydration, merge), keeping an expected image
up to date and checking every read against it (libnbd's Python binding).

  randclient.py URI EXPECT SEED COUNT|SECONDs
      COUNT rounds (or, with a trailing "s", rounds for that many seconds)
      of one write (1 to 12000 bytes of random data at a random offset,
      also written to the file EXPECT) and one read (1 to 200000 bytes),
      which must equal EXPECT.  Exit 0, or 1 with a line on stderr.
"""
import os
import random
import sys
import time

import nbd


def main():
    uri, expect, seed, amount = sys.argv[1:5]
    random.seed(int(seed))
    secs = float(amount[:-1]) if amount.endswith("s") else None
    count = None if secs is not None else int(amount)
    end = time.time() + (secs or 0)
    h = nbd.NBD()
    h.connect_uri(uri)
    size = h.get_size()
    i = 0
    with open(expect, "r+b") as f:
        while (count is not None and i < count) or \
              (secs is not None and time.time() < end):
            i += 1
            n = random.randint(1, 12000)
            off = random.randrange(0, size - n)
            data = os.urandom(n)
            h.pwrite(data, off)
            f.seek(off)
            f.write(data)
            f.flush()
            n = random.randint(1, 200000)
            off = random.randrange(0, size - n)
            f.seek(off)
            if h.pread(n, off) != f.read(n):
                sys.exit("randclient: read of %d bytes at %d differs from "
                         "the expected image" % (n, off))


if __name__ == "__main__":
    main()
