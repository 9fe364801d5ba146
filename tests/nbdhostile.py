# SPDX-License-Identifier: GPL-2.0-or-later
"""nbdhostile.py: NBD clients that misbehave, for nbd-hostile.sh.

Each subcommand speaks the NBD protocol over a raw unix socket the way
no well-behaved client would and asserts exactly what the server must
answer (NBD protocol document, "Request types", "Option types", and the
error values).  Exit status 0 when every assertion holds; otherwise a
message on stderr and status 1.

  nbdhostile.py SOCK flags          unknown or misplaced command flags
  nbdhostile.py SOCK zerowrite      a WRITE of length 0
  nbdhostile.py SOCK bigzero PID    WRITE_ZEROES of the whole volume
  nbdhostile.py SOCK unread PID     48 READs of 32 MiB never read
  nbdhostile.py SOCK longopt        an option longer than 4096 bytes
  nbdhostile.py SOCK idle MS        silent / trickling handshakes
"""
import os
import socket
import struct
import sys
import time

REQ_MAGIC, SIMPLE_MAGIC = 0x25609513, 0x67446698
IHAVEOPT, REPLY_MAGIC = 0x49484156454F5054, 0x3E889045565A9
OPT_EXPORT_NAME, OPT_GO, OPT_STRUCTURED = 1, 7, 8
REP_ACK, REP_INFO, REP_ERR_TOO_BIG = 1, 3, 0x80000009
READ, WRITE, DISC, FLUSH, TRIM, WZ = 0, 1, 2, 3, 4, 6
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16
EINVAL = 22


def die(msg):
    sys.stderr.write("nbdhostile: " + msg + "\n")
    sys.exit(1)


def recvn(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(min(n - len(b), 1 << 20))
        if not c:
            die("the server closed the connection after %d of %d bytes"
                % (len(b), n))
        b += c
    return bytes(b)


def connect(path, timeout=20):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    return s


def greet(s):
    hs = recvn(s, 18)
    if struct.unpack(">QQ", hs[:16]) != (0x4E42444D41474943, IHAVEOPT):
        die("bad greeting %r" % hs)
    s.sendall(struct.pack(">I", 3))        # fixed newstyle, no zeroes


def option(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def opt_reply(s):
    magic, opt, rtype, n = struct.unpack(">QIII", recvn(s, 20))
    if magic != REPLY_MAGIC:
        die("bad option reply magic %x" % magic)
    return opt, rtype, recvn(s, n)


def go(s, structured=False):
    """Finish the handshake with NBD_OPT_GO on the default export."""
    if structured:
        option(s, OPT_STRUCTURED)
        if opt_reply(s)[1] != REP_ACK:
            die("STRUCTURED_REPLY not acknowledged")
    option(s, OPT_GO, struct.pack(">IH", 0, 0))
    size = None
    while True:
        opt, rtype, d = opt_reply(s)
        if rtype == REP_INFO and struct.unpack(">H", d[:2])[0] == 0:
            size = struct.unpack(">Q", d[2:10])[0]
        elif rtype == REP_ACK:
            return size
        elif rtype != REP_INFO:
            die("NBD_OPT_GO answered %x" % rtype)


def request(s, cmd, cookie, off, length, flags=0, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off,
                          length) + payload)


def simple_reply(s, data_len=0):
    magic, err, cookie = struct.unpack(">IIQ", recvn(s, 16))
    if magic != SIMPLE_MAGIC:
        die("bad reply magic %x" % magic)
    data = recvn(s, data_len) if err == 0 and data_len else b""
    return err, cookie, data


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    die("no VmRSS for pid %d" % pid)


def t_flags(path):
    """Flags that do not belong to the command (or are unknown) get
    EINVAL; FUA is accepted on every command; the connection lives on."""
    s = connect(path)
    greet(s)
    go(s)                                  # simple replies: no DF on READ
    request(s, READ, 1, 0, 4096)
    err, _, before = simple_reply(s, 4096)
    if err:
        die("plain READ failed with %d" % err)
    cases = [
        (READ, FAST_ZERO, 0, 4096, b""),
        (READ, DF, 0, 4096, b""),          # DF needs structured replies
        (READ, 0x20, 0, 4096, b""),
        (READ, 0x8000, 0, 4096, b""),
        (WRITE, DF, 0, 4096, b"\xee" * 4096),
        (WRITE, NO_HOLE, 0, 4096, b"\xee" * 4096),
        (FLUSH, NO_HOLE, 0, 0, b""),
        (TRIM, REQ_ONE, 0, 4096, b""),
        (WZ, FAST_ZERO, 0, 4096, b""),     # FAST_ZERO is not advertised
        (WZ, DF, 0, 4096, b""),
    ]
    for i, (cmd, fl, off, n, pl) in enumerate(cases):
        request(s, cmd, 100 + i, off, n, fl, pl)
        err, cookie, _ = simple_reply(s)
        if (err, cookie) != (EINVAL, 100 + i):
            die("command %d with flags 0x%x: got error %d cookie %d, want "
                "EINVAL (22)" % (cmd, fl, err, cookie))
    request(s, READ, 2, 0, 4096, FUA)
    err, _, after = simple_reply(s, 4096)
    if err or after != before:
        die("READ with FUA: error %d, or the refused WRITEs changed the "
            "data" % err)
    request(s, FLUSH, 3, 0, 0, FUA)
    if simple_reply(s)[0]:
        die("FLUSH with FUA failed")
    print("  %d commands with foreign flags: EINVAL; FUA accepted; data "
          "unchanged" % len(cases))


def t_zerowrite(path):
    """A WRITE of length 0 is answered at once (EINVAL), without waiting
    for more bytes, and the connection serves the next request."""
    s = connect(path, timeout=5)
    greet(s)
    go(s)
    request(s, WRITE, 9, 0, 0)
    t0 = time.monotonic()
    try:
        err, cookie, _ = simple_reply(s)
    except socket.timeout:
        die("no reply to a zero-length WRITE within 5 s")
    if (err, cookie) != (EINVAL, 9):
        die("zero-length WRITE: error %d cookie %d, want EINVAL" % (err,
                                                                   cookie))
    request(s, READ, 10, 0, 512)
    if simple_reply(s, 512)[0]:
        die("READ after the zero-length WRITE failed")
    print("  zero-length WRITE: EINVAL in %.0f ms; next READ served"
          % ((time.monotonic() - t0) * 1000))


def t_bigzero(path, pid):
    """WRITE_ZEROES over the whole volume must not cost its length in
    memory; afterwards the volume reads zero there."""
    s = connect(path, timeout=120)
    greet(s)
    size = go(s)
    before = rss_kib(pid)
    n = min(size, 0xFFFFF000) & ~4095
    request(s, WZ, 5, 0, n)
    peak = before
    s.settimeout(0.05)
    t0 = time.monotonic()
    while True:
        try:
            err, cookie, _ = simple_reply(s)
            break
        except socket.timeout:
            peak = max(peak, rss_kib(pid))
            if time.monotonic() - t0 > 120:
                die("WRITE_ZEROES of %d bytes not answered in 120 s" % n)
    s.settimeout(20)
    peak = max(peak, rss_kib(pid))
    if (err, cookie) != (0, 5):
        die("WRITE_ZEROES of %d bytes: error %d" % (n, err))
    grew = peak - before
    if grew > 64 * 1024:
        die("cowd grew by %d KiB for a WRITE_ZEROES of %d MiB" % (grew,
                                                                 n >> 20))
    request(s, READ, 6, n - 4096, 4096)
    err, _, data = simple_reply(s, 4096)
    if err or data != b"\0" * 4096:
        die("the zeroed range does not read zero")
    print("  WRITE_ZEROES of %d MiB: cowd grew by %d KiB (bound 65536)"
          % (n >> 20, grew))


def t_unread(path, pid):
    """48 READs of 32 MiB sent and never read: the connection's memory
    stays bounded (it stops reading requests); then every reply comes,
    in full, with its cookie."""
    s = connect(path, timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greet(s)
    size = go(s)
    if size < 32 << 20:
        die("the volume must be at least 32 MiB")
    before = rss_kib(pid)
    for i in range(48):
        request(s, READ, 1000 + i, 0, 32 << 20)
    time.sleep(3)
    grew = rss_kib(pid) - before
    if grew > 192 * 1024:
        die("cowd grew by %d KiB with 48 unread 32 MiB replies" % grew)
    cookies = set()
    for i in range(48):
        err, cookie, data = simple_reply(s, 32 << 20)
        if err or len(data) != 32 << 20:
            die("READ %d failed with %d" % (cookie, err))
        cookies.add(cookie)
    if cookies != set(range(1000, 1048)):
        die("replies for the wrong cookies")
    print("  48 unread READs of 32 MiB: cowd grew by %d KiB (bound 196608);"
          " then 48 full replies" % grew)


def t_longopt(path):
    """An option longer than 4096 bytes gets NBD_REP_ERR_TOO_BIG and the
    handshake goes on."""
    s = connect(path)
    greet(s)
    option(s, OPT_GO, struct.pack(">I", 9000) + b"n" * 9000
           + struct.pack(">H", 0))
    opt, rtype, _ = opt_reply(s)
    if (opt, rtype) != (OPT_GO, REP_ERR_TOO_BIG):
        die("a 9006-byte option: reply %x to option %d, want TOO_BIG" %
            (rtype, opt))
    go(s)
    request(s, READ, 1, 0, 512)
    if simple_reply(s, 512)[0]:
        die("READ after the long option failed")
    print("  9006-byte option: NBD_REP_ERR_TOO_BIG; then GO and a READ")


def closed_within(s, seconds, trickle):
    t0 = time.monotonic()
    s.settimeout(0.3)
    while time.monotonic() - t0 < seconds:
        try:
            if trickle:
                s.send(b"\0")
            if s.recv(4096) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - t0
    return None


def t_idle(path, ms):
    """A client that says nothing, or trickles a byte at a time, is
    dropped once the handshake deadline passes; one that finished its
    handshake is never timed out."""
    limit = ms / 1000.0
    silent = connect(path)
    recvn(silent, 18)
    t = closed_within(silent, limit * 4 + 2, False)
    if t is None or t < limit * 0.8:
        die("a silent client was %s" % ("never dropped" if t is None else
                                       "dropped after only %.2f s" % t))
    trickler = connect(path)
    recvn(trickler, 18)
    trickler.sendall(struct.pack(">I", 3))
    t2 = closed_within(trickler, limit * 4 + 2, True)
    if t2 is None:
        die("a trickling client was never dropped")
    ok = connect(path)
    greet(ok)
    go(ok)
    time.sleep(limit * 2)
    request(ok, READ, 1, 0, 512)
    if simple_reply(ok, 512)[0]:
        die("a client idle after its handshake lost its connection")
    print("  silent client dropped after %.1f s, trickling after %.1f s "
          "(deadline %.1f s); an idle connected client still served"
          % (t, t2, limit))


def t_cut(path):
    """64 WRITEs of 64 KiB sent, then the client goes away without reading
    a reply: cowd finishes or drops them and keeps serving."""
    s = connect(path)
    greet(s)
    go(s)
    data = b"\xa5" * 65536
    for i in range(64):
        request(s, WRITE, i, i * 65536, 65536, payload=data)
    s.close()


def main():
    path, what = sys.argv[1], sys.argv[2]
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    {"flags": lambda: t_flags(path),
     "zerowrite": lambda: t_zerowrite(path),
     "bigzero": lambda: t_bigzero(path, int(arg)),
     "unread": lambda: t_unread(path, int(arg)),
     "longopt": lambda: t_longopt(path),
     "idle": lambda: t_idle(path, int(arg)),
     "cut": lambda: t_cut(path)}[what]()


if __name__ == "__main__":
    main()
