#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# create and create --from wait for the disk off cowd's loop (issue 17: no
# NBD request delayed by definitions).  cowd runs with slowsync.so, which
# makes every syncfs, fsync and fdatasync 1000 ms slower.  A slice of the
# batch waits for two of them (its CoW files' syncfs, then the store's
# log), so the batch takes at least 2 s; a client reading another volume
# every 5 ms meanwhile must never wait 500 ms for a read (on the
# loop, one read waited 1000 ms or more).  While the slice waits, its
# volumes are refused with "is being created"; once answered they are
# there.  Then the same for a plain create (its CoW file's fsync, then the
# log) and a delete (the log).  What was answered is still so after cowd
# is killed (-9) and started again.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires cowd cowctl jq nbdsh qemu-io
slowsync_shim

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
new_image "$d/base.img" 1M random
for i in 0 1 2 3 4; do truncate -s 2M "$d/c$i"; done
export LD_PRELOAD=$shim SLOWSYNC_MS=1000
start_cowd "$d/run"
unset LD_PRELOAD SLOWSYNC_MS
c create live --base "$d/base.img" --cow "$d/c0" >/dev/null || fail "create live"
uri=$(c attach live) || fail "attach live: $uri"

# reader NAME: read live every 5 ms until $d/stop-NAME; "COUNT WORST-MS"
# in $d/reads-NAME.
reader() { read_watch "$uri" "$d/stop-$1" "$d/reads-$1"; }
# check_reads NAME MS WHAT SYNCS: the reads went on, none waited 500 ms,
# and WHAT took at least SYNCS x 1000 ms (its slowed syncs).
check_reads() {
  local n worst
  read -r n worst < "$d/reads-$1"
  echo "   $3 in $2 ms ($4 syncs of 1000 ms); $n reads of live meanwhile, the slowest $worst ms"
  awk -v w="$worst" 'BEGIN { exit !(w < 500) }' \
    || fail "a read of live waited $worst ms while $3 waited for the disk"
  [ "$2" -ge $(($4 * 1000)) ] || fail "$3 took $2 ms: were its syncs slowed?"
  [ "$n" -ge 10 ] || fail "only $n reads during $3"
}
# watched NAME WHAT SYNCS CHECK CMD...: CMD, its output in $d/out-NAME,
# while live is read; CHECK runs while CMD is under way; then check_reads.
watched() {
  local name=$1 what=$2 syncs=$3 check=$4 rpid cpid t0 t1
  shift 4
  reader "$name" &
  rpid=$!
  cleanup_fn kill_pid "$rpid"
  sleep 0.3
  t0=$(date +%s%N)
  "$@" > "$d/out-$name" 2>&1 &
  cpid=$!
  cleanup_fn kill_pid "$cpid"
  $check
  wait "$cpid" || fail "$what failed: $(cat "$d/out-$name")"
  t1=$(date +%s%N)
  touch "$d/stop-$name"; wait "$rpid" || fail "the reader failed: $(cat "$d/reads-$name")"
  check_reads "$name" $(((t1 - t0) / 1000000)) "$what" "$syncs"
}
refused() { [ "$(c status "$1" 2>&1)" = "cowctl: volume $1 is being created: its definition is not durable yet" ]; }
# While the slice waits for the disk: b1 exists for nobody but create.
b1_refused() {
  wait_until 10 refused b1 || fail "b1 was never refused as being created: $(c status b1 2>&1)"
  out=$(c --json status b1 2>&1) || true
  [ "$(jq -r .error.code <<<"$out")" = busy ] || fail "being created, --json: $out"
}
s1_refused() {
  wait_until 10 refused s1 || fail "s1 was never refused as being created: $(c status s1 2>&1)"
}

for i in 1 2 3; do echo "b$i --base $d/base.img --cow $d/c$i"; done > "$d/defs"
watched batch "a batch of 3" 2 b1_refused c create --from "$d/defs"
grep -qE "^created 3 volumes from $d/defs in [0-9.]+ s" "$d/out-batch" \
  || fail "create --from answered: $(cat "$d/out-batch")"
[ "$(c list | tail -n +2 | awk '{print $1}' | tr '\n' ' ')" = "b1 b2 b3 live " ] \
  || fail "list after the batch: $(c list)"
[ "$(c --json status b1 | jq -r '.name + " " + .cow')" = "b1 $d/c1" ] \
  || fail "status b1 after the batch: $(c --json status b1 2>&1)"

# A plain create: refused while it waits, answered once durable.
watched single "create s1" 2 s1_refused c create s1 --base "$d/base.img" --cow "$d/c4"
[ "$(cat "$d/out-single")" = "created volume s1 (chunk size 65536, commit sync)" ] \
  || fail "create s1 answered: $(cat "$d/out-single")"
[ "$(c --json status s1 | jq -r '.name + " " + .cow')" = "s1 $d/c4" ] \
  || fail "status s1: $(c --json status s1 2>&1)"

# delete: answered once the removal is durable (one fdatasync), reads
# go on meanwhile.
watched delete "delete b3" 1 : c delete b3
[ -z "$(cat "$d/out-delete")" ] || fail "delete b3 answered: $(cat "$d/out-delete")"
[ "$(c status b3 2>&1)" = "cowctl: volume b3 does not exist" ] || fail "status b3: $(c status b3 2>&1)"

# Durable when answered: kill -9, start again, every volume attaches.
crash_restart_cowd "$d/run" "b1 b2 live s1" b1 b2 s1
pass
