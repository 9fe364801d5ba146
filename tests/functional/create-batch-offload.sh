#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# create --from waits for the disk off cowd's loop (issue 17: no NBD request
# delayed by definitions).  cowd runs with slowsync.so, which makes every
# syncfs and fdatasync 400 ms slower.  A slice of the batch waits for two
# of them (its CoW files' syncfs, then the store's log), so the batch takes
# at least 800 ms; a client reading another volume every 5 ms meanwhile
# must never wait more than 200 ms for a read (on the loop, one read
# waited 400 ms or more).  While the slice waits, its volumes are refused
# with "is being created"; once answered they are there, and still there
# after cowd is killed (-9) and started again.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires cowd cowctl jq nbdsh qemu-io
shim=${abs_top_builddir:-$top_srcdir}/tests/helpers/.libs/slowsync.so
[ -f "$shim" ] || fail "the shim $shim is not built (make check builds it)"

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
new_image "$d/base.img" 1M random
for i in 0 1 2 3; do truncate -s 2M "$d/c$i"; done
export LD_PRELOAD=$shim SLOWSYNC_MS=400
start_cowd "$d/run"
unset LD_PRELOAD SLOWSYNC_MS
c create live --base "$d/base.img" --cow "$d/c0" >/dev/null || fail "create live"
uri=$(c attach live) || fail "attach live: $uri"

touch "$d/go"
STOP=$d/stop nbdsh -u "$uri" -c '
import os, time
n, worst = 0, 0.0
while not os.path.exists(os.environ["STOP"]):
    t = time.monotonic()
    h.pread(4096, 0)
    worst = max(worst, time.monotonic() - t)
    n += 1
    time.sleep(0.005)
print(n, round(worst * 1000, 1))
' > "$d/reads" 2>&1 &
reader=$!
cleanup_fn kill_pid "$reader"
sleep 0.3
for i in 1 2 3; do echo "b$i --base $d/base.img --cow $d/c$i"; done > "$d/defs"
t0=$(date +%s%N)
c create --from "$d/defs" > "$d/batch" 2>&1 &
batch=$!
cleanup_fn kill_pid "$batch"
# While the slice waits for the disk: b1 exists for nobody but create.
refused() { [ "$(c status b1 2>&1)" = "cowctl: volume b1 is being created (its create --from has not made it durable yet)" ]; }
wait_until 10 refused || fail "b1 was never refused as being created: $(c status b1 2>&1)"
out=$(c --json status b1 2>&1) || true
[ "$(jq -r .error.code <<<"$out")" = busy ] || fail "being created, --json: $out"
wait "$batch" || fail "create --from failed: $(cat "$d/batch")"
t1=$(date +%s%N)
touch "$d/stop"; wait "$reader" || fail "the reader failed: $(cat "$d/reads")"
ms=$(((t1 - t0) / 1000000))
read -r n worst < "$d/reads"
echo "   batch of 3 in $ms ms (two syncs of 400 ms); $n reads of live meanwhile, the slowest $worst ms"
awk -v w="$worst" 'BEGIN { exit !(w < 200) }' \
  || fail "a read of live waited $worst ms while create --from waited for the disk"
[ "$ms" -ge 800 ] || fail "the batch took $ms ms: were its syncfs and fdatasync slowed?"
[ "$n" -ge 20 ] || fail "only $n reads during the batch"
grep -qE "^created 3 volumes from $d/defs in [0-9.]+ s" "$d/batch" \
  || fail "create --from answered: $(cat "$d/batch")"
[ "$(c list | tail -n +2 | awk '{print $1}' | tr '\n' ' ')" = "b1 b2 b3 live " ] \
  || fail "list after the batch: $(c list)"
[ "$(c --json status b1 | jq -r '.name + " " + .cow')" = "b1 $d/c1" ] \
  || fail "status b1 after the batch: $(c --json status b1 2>&1)"

# Durable when answered: kill -9, start again, every volume attaches.
crash_restart_cowd "$d/run" "b1 b2 b3 live" b1 b2 b3
pass
