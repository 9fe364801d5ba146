#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Bad input gets one clear sentence naming the volume and the cause, the
# daemon keeps serving its other volumes, and nothing is lost.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io nbdsh python3 cowd cowctl sqlite3
sbedit="python3 ${abs_top_srcdir:-$(dirname "$0")/../..}/tests/sbedit.py"

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 8M random
new_image "$d/other.img" 8M random
truncate -s 10M "$d/good.img" "$d/cow.img"
truncate -s 8M "$d/small.img"
start_cowd "$d/run"
c() { cowctl --run-dir "$d/run" "$@"; }
# A healthy volume with data, which must keep serving throughout.
c create good --base "$d/base.img" --cow "$d/good.img"
good=$(c attach good)
qemu-io -f raw "$good" -c "write -P 0x42 0 256k" >/dev/null


echo "== CoW device too small"
expect_error "volume small: CoW device .*small.img is too small" \
  create small --base "$d/base.img" --cow "$d/small.img"
echo "== bad options"
expect_error "chunk size '3K' is not a power of two" create x --base "$d/base.img" --cow "$d/cow.img" --chunk-size 3K
expect_error "commit policy 'often'" create x --base "$d/base.img" --cow "$d/cow.img" --commit often
expect_error "volume nosuch does not exist" status nosuch
expect_error "base .*/missing.img: cannot open" create x --base "$d/missing.img" --cow "$d/cow.img"
echo "== formatted twice without --force"
c create v --base "$d/base.img" --cow "$d/cow.img"
c delete v
expect_error "already holds a dscow volume; use --force" create v --base "$d/base.img" --cow "$d/cow.img"
c create v --base "$d/base.img" --cow "$d/cow.img" --force
echo "== base identity mismatch"
c delete v
c create v --base "$d/other.img" --cow "$d/cow.img" --force
c delete v
# The definition now names base.img but the CoW was made over other.img.
sed_state() { defs_sql "$d/run/state" "UPDATE volumes SET base = '$d/base.img' WHERE base = '$d/other.img'"; }
c create w --base "$d/other.img" --cow "$d/cow.img" --force
stop_cowd "$d/run"; sed_state; start_cowd "$d/run"
expect_error "^cowctl: volume w: base .*/base.img changed since the volume was created, or is another file \(inode .*identity digest:8388608:[0-9a-f]{8} -> digest:8388608:[0-9a-f]{8}\); refusing to serve it" attach w
echo "== unknown incompatible feature"
# Both slots hold the superblock (a fresh format has it in slot B only).
dd if="$d/cow.img" of="$d/cow.img" bs=4096 skip=1 seek=0 count=1 conv=notrunc status=none
sb() { $sbedit "$d/cow.img" 0 "$@"; $sbedit "$d/cow.img" 1 "$@"; }
sb incompat 0x100
expect_error "volume w: .*cow.img: .*incompatible feature" attach w
echo "== future major version"
sb incompat 0; sb major 9
expect_error "volume w: .*cow.img: .*version" attach w
echo "== bad checksum"
sb major 1; sb crc break
expect_error "volume w: .*cow.img: .*checksum" attach w
echo "== bad magic"
dd if=/dev/zero of="$d/cow.img" bs=8k count=1 conv=notrunc status=none  # both slots
expect_error "volume w: .*cow.img: .*magic" attach w

echo "== NBD requests out of range, and a client that goes away mid-request"
nbdsh -u "$good" -c '
h.set_strict_mode(0)         # let the requests reach the server
size = h.get_size()
for off, n in ((size, 512), (size - 512, 1024), (2**62, 4096)):
    try:
        h.pread(n, off)
        raise SystemExit("read past the end succeeded")
    except nbd.Error as e:
        print("  out of range:", e.string)
    try:
        h.pwrite(b"x" * n, off)
        raise SystemExit("write past the end succeeded")
    except nbd.Error as e:
        pass
assert h.pread(4096, 0) == b"\x42" * 4096
'
python3 - "$d/run/good.sock" <<'PY'
import socket, struct, sys
# A client that sends garbage, one that sends half a request, one that
# asks for a write and disconnects before sending the data.
def hs(s):
    s.recv(18); s.sendall(struct.pack(">I", 1))
    s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 0))  # EXPORT_NAME ""
    s.recv(8 + 2 + 124)
for payload in (b"\0" * 100, None):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
    if payload: s.sendall(payload)
    else:
        hs(s)
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 1, 0, 1 << 20) + b"x" * 1000)
    s.close()
PY
echo "== FLUSH with a length: EINVAL, and the connection keeps serving"
# (found by fuzz_nbd: the length was counted in the connection's budget and
# never given back, so a 1 GiB one stopped the connection for good)
python3 - "$d/run/good.sock" <<'PY' || fail "FLUSH with a length wedged the connection"
import socket, struct, sys
def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit("server closed the connection")
        b += c
    return b
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)
recvn(s, 18); s.sendall(struct.pack(">I", 3))         # no zeroes
s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 0))  # EXPORT_NAME ""
recvn(s, 8 + 2)
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 3, 7, 0, 0x3a000200))
magic, err, cookie = struct.unpack(">IIQ", recvn(s, 16))
assert (magic, err, cookie) == (0x67446698, 22, 7), (hex(magic), err, cookie)
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 8, 0, 4096))
magic, err, cookie = struct.unpack(">IIQ", recvn(s, 16))
assert (magic, err, cookie) == (0x67446698, 0, 8), (hex(magic), err, cookie)
assert recvn(s, 4096) == b"\x42" * 4096
print("  FLUSH with a length: EINVAL; the next READ served")
PY
qio_ok "$good" "the good volume lost data" "read -P 0x42 0 256k"
c status good | grep -q "state:       active" || fail "the good volume stopped serving"
pass
