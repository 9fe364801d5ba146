#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# make-seeds.py: writes the seed corpora of the fuzz targets into
# tests/fuzz/corpus/NAME/ (they are checked in; run this again after a
# wire format changes).  Each seed is a valid input that gets a target past
# its magic numbers and length checks quickly: NBD sessions (fixed newstyle
# haggling then requests), control requests, cluster message frames and
# configuration files.  corpus/super is not made here: it holds the first
# 8192 bytes of CoW devices the engine formatted and used
# (tests/crash/crashcheck --save LOG, then head -c 8192 LOG.cow).
import os
import struct
import sys

top = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(top, "corpus")


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- NBD (big-endian; see node/nbd/nbd-proto.h) ---
IHAVEOPT = b"IHAVEOPT"


def opt(num, data=b""):
    return IHAVEOPT + struct.pack(">II", num, len(data)) + data


def req(typ, off=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", 0x25609513, flags, typ, cookie, off,
                       length) + payload


def meta(names, export=b"fuzz"):
    d = struct.pack(">I", len(export)) + export + struct.pack(">I", len(names))
    for n in names:
        d += struct.pack(">I", len(n)) + n
    return d


def go(export=b"fuzz", infos=(3,)):
    return (struct.pack(">I", len(export)) + export
            + struct.pack(">H", len(infos))
            + b"".join(struct.pack(">H", i) for i in infos))


flags = struct.pack(">I", 3)            # FIXED_NEWSTYLE | NO_ZEROES
requests = (req(1, 0, 4096, payload=b"\xab" * 4096, cookie=1)
            + req(0, 0, 8192, cookie=2)
            + req(1, 70000, 512, flags=1, payload=b"\x11" * 512, cookie=3)
            + req(3, cookie=4)
            + req(6, 131072, 65536, cookie=5)
            + req(4, 196608, 65536, cookie=6)
            + req(7, 0, 1 << 20, cookie=7)
            + req(2, cookie=8))
put("nbd", "structured-go",
    flags + opt(8) + opt(10, meta([b"base:allocation", b"cowherd:cow"]))
    + opt(7, go()) + requests)
put("nbd", "export-name", flags + opt(1, b"fuzz") + requests)
put("nbd", "list-info-abort",
    flags + opt(3) + opt(9, meta([b"base:", b"cowherd:"])) + opt(6, go())
    + opt(5) + opt(2))
put("nbd", "bad-requests",
    flags + opt(7, go(b"", ())) + req(1, 0, 0) + req(3, 0, 512)
    + req(0, 1 << 20, 4096) + req(9, 0, 512) + req(0, 0, 512, flags=0x20))

# --- control protocol (little-endian; see node/ctl/ctl.h) ---
def ctl(args, flags=0, version=3):
    body = b"".join(a + b"\0" for a in args)
    return struct.pack("<III", version, flags, len(args)) + body


put("ctl", "status", ctl([b"status"]))
put("ctl", "create-json",
    ctl([b"create", b"vm1", b"--base", b"/dev/sdb", b"--cow", b"/dev/sdc",
         b"--chunk-size", b"65536", b"--commit", b"sync"], flags=1))
put("ctl", "attach", ctl([b"attach", b"vm1", b"--incoming"]))
put("ctl", "status-v1", ctl([b"status"], version=1))
put("ctl", "create-batch",
    ctl([b"create", b"--from-batch", b"--line=1", b"a1", b"--base", b"/b",
         b"--cow", b"/c1", b"--line=3", b"a2", b"--base", b"/b", b"--cow",
         b"/c2", b"--commit", b"flush"]))
put("ctl", "list-filtered",
    ctl([b"list", b"--owner", b"2", b"--state", b"active", b"vm*"], flags=1))
put("ctl", "hydrate", ctl([b"hydrate", b"vm1", b"--rate", b"20"]))
put("ctl", "snapshot",
    ctl([b"snapshot", b"vm1", b"--cow", b"/dev/sdd", b"--name", b"s1"]))

# --- cluster messages, framed: u8 sender, u16 LE length, message ---
# Header (cluster/msg.c): u16 version, u16 type, u32 length, u64 time_ms.
def clmsg(typ, body, version=3):
    return struct.pack("<HHIQ", version, typ, 16 + len(body), 0) + body


def frame(sender, msg):
    return struct.pack("<BH", sender, len(msg)) + msg


def name(s, size=64):
    b = s.encode()
    return b + b"\0" * (size - len(b))


define = frame(2, clmsg(1, name("vm1") + name("/dev/sdb", 256)
                        + name("/dev/sdc", 256) + struct.pack("<III", 65536,
                                                              1, 0)
                        + name("naa.60000000000000000e00000000010002", 128)))
acquire = clmsg(3, name("vm1"))
put("cluster", "acquire-release",
    define + frame(2, acquire) + frame(3, acquire)
    + frame(2, clmsg(5, name("vm1") + struct.pack("<Q", 7)))
    + frame(0x80 | 0x40 | 2, b""))
put("cluster", "handoff",
    define + frame(2, acquire)
    + frame(2, clmsg(4, name("vm1") + struct.pack("<IQ", 1, 3)))
    + frame(1, clmsg(6, name("vm1") + struct.pack("<I", 3)))
    + frame(3, clmsg(7, struct.pack("<I", 2)))
    + frame(3, clmsg(10, struct.pack("<I", 1))))

# --- configuration files ---
put("config", "cowd.conf",
    b"# cowd\n[cowd]\nnode-name = n1\nrun-dir = /run/cowd\n"
    b"reconnect-deadline-ms = 30000\nquorum-loss-timeout-ms = 5000\n"
    b"log-level = 6\nfencing = reservations\nstandalone = no\n"
    b"[iscsi]\ninitiator-name = iqn.2026-01.org.example:n1\n"
    b"chap-user = u\nchap-password = p\n")
put("config", "named-section", b"[volume \"vm 1\"]\n; comment\n[cowd]\n"
    b"fencing = manual\nunknown = 1\n")
sys.exit(0)
