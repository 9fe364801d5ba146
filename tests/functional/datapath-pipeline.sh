#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Many NBD requests in one packet: cowd reads request headers in gulps and
# sends the replies of one loop pass in one writev.  A raw client sends
# more requests at once than a connection may have in the engine (so input
# waits in cowd's buffer while the connection is throttled, with nothing
# more on the socket to wake it), payloads of
# 512, 4096 and 12288 bytes (copied from the buffer, or read straight into
# place), and a header split across two packets; every reply must come
# back, and every block must read back what was written.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires python3 qemu-io cowd cowctl

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 16M random
truncate -s 20M "$d/cow.img"
start_cowd "$d/run"
c() { cowctl --run-dir "$d/run" "$@"; }
c create v --base "$d/base.img" --cow "$d/cow.img" --commit flush
c attach v >/dev/null

python3 - "$d/run/v.sock" <<'PY' || fail "pipelined requests went wrong"
import os, socket, struct, sys, time

REQ, REP = 0x25609513, 0x67446698
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(20)

def recvn(n):
    b = b""
    while len(b) < n:
        p = s.recv(n - len(b))
        if not p:
            raise SystemExit("server closed the connection")
        b += p
    return b

recvn(18)
s.sendall(struct.pack(">I", 1))
s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 0))   # EXPORT_NAME ""
size = struct.unpack(">Q", recvn(8 + 2 + 124)[:8])[0]

def req(typ, cookie, off, n, data=b""):
    return struct.pack(">IHHQQI", REQ, 0, typ, cookie, off, n) + data

def replies(count, lens):
    got = {}
    for _ in range(count):
        magic, err, cookie = struct.unpack(">IIQ", recvn(16))
        if magic != REP or err:
            raise SystemExit("reply %d: magic %x error %d" % (cookie, magic, err))
        got[cookie] = recvn(lens.get(cookie, 0))
    return got

# 300 writes in one packet: distinct places, three payload sizes.
sizes = (512, 4096, 12288)
writes, pkt = {}, b""
for i in range(300):
    n = sizes[i % 3]
    off = i * 16384
    data = os.urandom(n)
    writes[i] = (off, data)
    pkt += req(1, i, off, n, data)
s.sendall(pkt)
replies(300, {})
# 300 reads and a flush in one packet.
pkt = b"".join(req(0, 1000 + i, off, len(data)) for i, (off, data) in writes.items())
pkt += req(3, 5000, 0, 0)
s.sendall(pkt)
got = replies(301, {1000 + i: len(data) for i, (off, data) in writes.items()})
for i, (off, data) in writes.items():
    if got[1000 + i] != data:
        raise SystemExit("block at %d read back wrong" % off)
# 100 reads in one packet fit cowd's input buffer whole: past the 64 a
# connection may have in the engine, the rest wait there with nothing
# more to come on the socket.
items = list(writes.items())[:100]
s.sendall(b"".join(req(0, 2000 + i, off, len(data)) for i, (off, data) in items))
got = replies(100, {2000 + i: len(data) for i, (off, data) in items})
if any(got[2000 + i] != data for i, (off, data) in items):
    raise SystemExit("a read from the input buffer came back wrong")
# A header split across two packets, then its payload in a third.
h = req(1, 7000, size - 4096, 4096)
s.sendall(h[:11]); time.sleep(0.2); s.sendall(h[11:]); time.sleep(0.2)
s.sendall(b"\x5a" * 4096)
replies(1, {})
s.sendall(req(0, 7001, size - 4096, 4096))
if replies(1, {7001: 4096})[7001] != b"\x5a" * 4096:
    raise SystemExit("the split request's data read back wrong")
s.sendall(req(2, 7002, 0, 0))                       # NBD_CMD_DISC
print("  300 + 301 + 100 pipelined requests and a split header: all "
      "replied, data intact")
PY
# What the raw client wrote is there for another client too, after a restart.
last_block() {
  local out; out=$(qemu-io -f raw "$(c attach v)" \
    -c "read -P 0x5a $((16 * 1048576 - 4096)) 4096")
  grep -q "read 4096/4096" <<<"$out" && ! grep -q failed <<<"$out"
}
last_block || fail "the last block did not read back"
stop_cowd "$d/run"; start_cowd "$d/run"
last_block || fail "the last block was lost across a restart"
pass
