#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A detach marks the volume's superblock clean without blocking cowd's
# loop.  cowd runs with slowsync.so, which makes every fsync and
# fdatasync it calls 1000 ms slower (the engine's asynchronous flushes go
# through io_uring and are not slowed).  A client reads volume live every
# 5 ms while volume d, written to, is detached: no read may wait 500 ms
# (with the blocking mark, a read waited 996.9 ms).  The mark is on disk:
# cowd logs "closed clean", and d attached again was closed cleanly and
# reads what was written.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires cowd cowctl nbdsh qemu-io
slowsync_shim

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
new_image "$d/base.img" 8M random
truncate -s 10M "$d/c0" "$d/c1"
export LD_PRELOAD=$shim SLOWSYNC_MS=1000
start_cowd "$d/run"
unset LD_PRELOAD SLOWSYNC_MS
c create live --base "$d/base.img" --cow "$d/c0" >/dev/null || fail "create live"
c create d --base "$d/base.img" --cow "$d/c1" --commit flush >/dev/null || fail "create d"
uri=$(c attach live) || fail "attach live: $uri"
du=$(c attach d) || fail "attach d: $du"
qio_ok "$du" "write d" "write -P 0x3c 1M 256k"

read_watch "$uri" "$d/stop" "$d/reads" &
rpid=$!
cleanup_fn kill_pid "$rpid"
sleep 0.3
t0=$(date +%s%N)
c detach d || fail "detach d failed"
t1=$(date +%s%N)
sleep 0.2
read_watch_end "$rpid" "$d/stop" "$d/reads" 10 "d was detached (live)" \
  "detach in $(((t1 - t0) / 1000000)) ms; of live"
grep -q "volume: d: closed clean at generation" "$d/run.log" \
  || fail "d was not closed clean: $(grep 'volume: d:' "$d/run.log" | tail -3)"
du=$(c attach d) || fail "attach d again: $du"
grep -q "volume: d: was not closed cleanly" "$d/run.log" && fail "d's superblock was not clean on disk"
qio_ok "$du" "d's data after the detach" "read -P 0x3c 1M 256k"
pass
