#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# records.py: the "domain" of the Xen hotplug tests.  It writes numbered
# 4 KiB records on a block device with O_DIRECT|O_DSYNC (a record counts
# as acknowledged once its write returns) and verifies them later.
#
#   records.py write DEV FIRST COUNT    write records FIRST..FIRST+COUNT-1
#   records.py verify DEV COUNT         check records 0..COUNT-1, exact bytes
#
# Record i lives at 4 KiB block (7 * i) mod (blocks - 1): records are spread
# over many chunks of the volume, so every batch faults new chunks into the
# CoW layer.  verify prints the first bad record and exits 1.
import mmap
import os
import sys

BS = 4096


def record(i):
    head = b"cowherd record %08d\n" % i
    return head + bytes([(i * 7 + 1) & 0xFF]) * (BS - len(head))


def offset(i, blocks):
    return (7 * i) % (blocks - 1) * BS


def open_dev(path, flags):
    fd = os.open(path, flags | os.O_DIRECT)
    blocks = os.lseek(fd, 0, os.SEEK_END) // BS
    return fd, blocks


def write(path, first, count):
    fd, blocks = open_dev(path, os.O_WRONLY | os.O_DSYNC)
    buf = mmap.mmap(-1, BS)
    for i in range(first, first + count):
        buf[:] = record(i)
        if os.pwritev(fd, [buf], offset(i, blocks)) != BS:
            sys.exit("short write of record %d" % i)
    os.close(fd)


def verify(path, count):
    fd, blocks = open_dev(path, os.O_RDONLY)
    buf = mmap.mmap(-1, BS)
    for i in range(count):
        if os.preadv(fd, [buf], offset(i, blocks)) != BS or buf[:] != record(i):
            sys.exit("record %d of %d is wrong on %s: %r" % (i, count, path, buf[:28]))
    os.close(fd)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        verify(sys.argv[2], int(sys.argv[3]))
