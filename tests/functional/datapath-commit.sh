#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The three commit policies across a crash (SIGKILL of cowd) and a clean
# restart:
#   sync   every acknowledged write survives a crash
#   flush  writes followed by a flush survive a crash
#   none   the volume is reset to the base when it is opened again
# and `sync` over a buffered (page cache) CoW file, whose bitmap blocks are
# written around the page cache: after the crash the bitmap read back
# through the page cache must hold every acknowledged bit.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io cowd cowctl

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 16M random
for p in sync flush none syncb; do truncate -s 20M "$d/cow-$p.img"; done
start_cowd "$d/run"
for p in sync flush none syncb; do
  extra=(--commit "$p")
  [ $p = syncb ] && extra=(--commit sync --buffered)
  cowctl --run-dir "$d/run" create "v$p" --base "$d/base.img" --cow "$d/cow-$p.img" \
    --chunk-size 64K "${extra[@]}"
  cowctl --run-dir "$d/run" attach "v$p" >/dev/null
done
cowctl --run-dir "$d/run" status vsyncb | grep -q "(buffered)" || fail "status does not say the buffered volume is buffered"
sock() { echo "nbd+unix:///?socket=$d/run/$1.sock"; }
# qemu-io flushes when it closes the image, so every write below is acked
# and flushed; the sync volume gets one more write without any flush.
for p in sync flush none syncb; do
  qemu-io -f raw "$(sock v$p)" -c "write -P 0xa1 4k 4k" -c "write -P 0xa2 1M 128k" >/dev/null
done
nbdsh -u "$(sock vsync)" -c 'h.pwrite(b"\xb7" * 4096, 5 * 1024 * 1024)'
# The buffered volume: a CoW fault in each of 64 chunks, none flushed, the
# first before its bitmap block was ever written since open.
nbdsh -u "$(sock vsyncb)" -c '
for i in range(64):
    h.pwrite(bytes([i + 1]) * 4096, (96 + 2 * i) * 65536 + 8192)
'

echo "== crash: SIGKILL cowd"
kill -9 "$(cat "$d/run/cowd.pid")"
wait_until 10 sh -c "! kill -0 $(cat "$d/run/cowd.pid") 2>/dev/null"
start_cowd "$d/run"
qio_ok "$(sock vsync)" "sync lost an acknowledged write" \
  "read -P 0xa1 4k 4k" "read -P 0xa2 1M 128k" "read -P 0xb7 5M 4k"
qio_ok "$(sock vflush)" "flush lost a flushed write" \
  "read -P 0xa1 4k 4k" "read -P 0xa2 1M 128k"
qio_ok "$(sock vsyncb)" "buffered sync lost an acknowledged write" \
  "read -P 0xa1 4k 4k" "read -P 0xa2 1M 128k"
nbdsh -u "$(sock vsyncb)" -c "
base = open('$d/base.img','rb').read()
for i in range(64):
    c = (96 + 2 * i) * 65536
    got = h.pread(65536, c)
    want = base[c:c + 8192] + bytes([i + 1]) * 4096 + base[c + 12288:c + 65536]
    assert got == want, 'buffered sync: chunk %d wrong after the crash' % (96 + 2 * i)
"
[ "$(cowctl --run-dir "$d/run" --json status vsyncb | jq .cow_chunks)" = 67 ] \
  || fail "buffered sync bitmap lost bits: $(cowctl --run-dir "$d/run" --json status vsyncb | jq .cow_chunks) chunks, want 67"
nbdsh -u "$(sock vnone)" -c "
base = open('$d/base.img','rb').read()
assert h.pread(4096, 4096) == base[4096:8192], 'none volume was not reset'
"
[ "$(cowctl --run-dir "$d/run" --json status vnone | jq .cow_chunks)" = 0 ] || fail "none volume has CoW chunks after reopen"
[ "$(cowctl --run-dir "$d/run" --json status vsync | jq .cow_chunks)" -ge 4 ] || fail "sync bitmap lost bits"
# sync: one commit (one bitmap write) may cover many faults.
cowctl --run-dir "$d/run" --json status vsync | jq -e '.stats' >/dev/null
pass
