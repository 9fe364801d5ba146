#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A full disk and IO errors from the backends: each gets one sentence in
# cowd's log naming the volume and the cause, the client gets the error
# (ENOSPC or EIO), the daemon keeps serving its other volumes, nothing
# acknowledged is lost, and the volume works again once the cause is gone.
#
#   full disk   the CoW is a sparse file on a small tmpfs that fills up
#   IO errors   base and CoW are files of qemu-storage-daemon FUSE exports
#               of nbdkit with its error filter, which fails reads (base)
#               or writes (CoW) while a trigger file exists
#   commit errors  a CoW of nbdkit's eval plugin whose bitmap writes or
#               flushes fail while a trigger file exists: the writes of
#               that commit fail, nothing is acknowledged before its bit is
#               durable, and the next commit writes the bitmap again
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io nbdkit qemu-storage-daemon mount cowd cowctl
requires_root

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
uri() { echo "nbd+unix:///?socket=$d/run/$1.sock"; }
log_has() { grep -q -- "$1" "$d/run.log" || fail "cowd's log has no line matching '$1'"; }
# client_fails VOLUME ERROR QEMU-IO-COMMAND: the client gets ERROR.
client_fails() {
  local out; out=$(qemu-io -f raw "$(uri "$1")" -c "$3" 2>&1 || true)
  echo "  $1: $3: $(echo "$out" | grep -m1 failed)"
  echo "$out" | grep -q "$2" || fail "volume $1: '$3' did not fail with '$2': $out"
}
# client_ok VOLUME WHY QEMU-IO-COMMAND...: every command succeeds (reads
# with -P verify); otherwise the test fails saying WHY.
client_ok() {
  local v=$1 why=$2; shift 2
  qio_ok "$(uri "$v")" "volume $v: $why" "$@"
}
# new_volume NAME COW [BASE]: create and attach over base.img, commit sync.
# A BASE given here is a qemu-storage-daemon FUSE export, which reports the
# current time as the file's times: its stamp changes between create and
# attach, so it is taken as it is (dscow(5), BASE CHECKS).
new_volume() {
  c create "$1" --base "${3:-$d/base.img}" --cow "$2" --commit sync
  c attach "$1" ${3:+--accept-base-change} >/dev/null
}
good_serves() {
  client_ok good "lost data" "read -P 0x42 0 1M"
  c status good | grep -q "state: *active" || fail "the good volume stopped serving"
}

new_image "$d/base.img" 16M random
truncate -s 20M "$d/cow-good.img"
start_cowd "$d/run"
new_volume good "$d/cow-good.img"
client_ok good "the first write failed" "write -P 0x42 0 1M"

echo "== full disk: the CoW file's filesystem fills up"
mkdir "$d/small"
mount -t tmpfs -o size=6M tmpfs "$d/small"
# Lazily: cowd, stopped later, still has the CoW file open.
cleanup_fn umount -l "$d/small"
truncate -s 20M "$d/small/cow.img"
new_volume full "$d/small/cow.img"
client_ok full "a write that fits failed" "write -P 0xa1 0 2M"
client_fails full "write failed: No space left on device" "write -P 0xa2 4M 8M"
log_has "volume: full: write to the CoW device at offset [0-9]* failed: No space left on device"
good_serves
client_ok full "the full volume lost acknowledged writes" "read -P 0xa1 0 2M"
# Room again: the same write now succeeds.
mount -o remount,size=64M "$d/small"
client_ok full "the full volume does not write after space was freed" "write -P 0xa2 4M 8M"

echo "== IO errors from the backends"
cleanup_fn kill_pidfile "$d/nb.pid"
nbdkit -U "$d/nb.sock" -P "$d/nb.pid" --filter=error file "$d/base.img" \
  error=EIO error-pread-rate=100% error-pread-file="$d/fail-reads"
wait_for_pidfile "$d/nb.pid" || fail "nbdkit did not write $d/nb.pid"
cleanup_fn kill_pidfile "$d/nc.pid"
nbdkit -U "$d/nc.sock" -P "$d/nc.pid" --filter=error memory 20M \
  error=EIO error-pwrite-rate=100% error-pwrite-file="$d/fail-writes"
wait_for_pidfile "$d/nc.pid" || fail "nbdkit did not write $d/nc.pid"
# A CoW file through shell methods: the bitmap (writes below 1 MiB) and
# flushes fail on demand.
truncate -s 20M "$d/cow3.raw"
cleanup_fn kill_pidfile "$d/nm.pid"
nbdkit -U "$d/nm.sock" -P "$d/nm.pid" eval \
  get_size='echo 20971520' \
  pread="dd if=$d/cow3.raw iflag=skip_bytes,count_bytes skip=\$4 count=\$3 status=none" \
  pwrite="if [ -e $d/fail-bitmap ] && [ \$4 -lt 1048576 ]; then echo 'EIO injected' >&2; exit 1; fi
          dd of=$d/cow3.raw oflag=seek_bytes conv=notrunc seek=\$4 status=none" \
  flush="if [ -e $d/fail-flush ]; then echo 'EIO injected' >&2; exit 1; fi; sync $d/cow3.raw"
wait_for_pidfile "$d/nm.pid" || fail "nbdkit did not write $d/nm.pid"
fuse_exports "$d" "$d/nb.sock:$d/ebase.img:off" "$d/nc.sock:$d/ecow.img:on" \
  "$d/nm.sock:$d/ecow3.img:on"
new_volume eio "$d/ecow.img" "$d/ebase.img"
client_ok eio "a write failed before any error was injected" "write -P 0xb1 0 256k"

# The base fails reads: a read of the base and a CoW fault (which copies
# from the base) fail; chunks in the CoW layer still read.
touch "$d/fail-reads"
client_fails eio "read failed: Input/output error" "read 8M 64k"
log_has "volume: eio: read at offset [0-9]* failed: Input/output error"
client_fails eio "write failed: Input/output error" "write -P 0xb2 9M 4k"
log_has "volume: eio: reading offset [0-9]* of $d/ebase.img for a CoW copy failed: Input/output error"
client_ok eio "chunks in the CoW layer do not read while the base fails" "read -P 0xb1 0 256k"
rm "$d/fail-reads"

# The CoW fails writes: a fault and an overwrite fail, nothing is acked.
touch "$d/fail-writes"
client_fails eio "write failed: Input/output error" "write -P 0xb3 10M 64k"
log_has "volume: eio: write to the CoW device at offset [0-9]* failed: Input/output error"
client_fails eio "write failed: Input/output error" "write -P 0xb4 0 4k"
good_serves
rm "$d/fail-writes"

# Errors gone: the volume serves, and what was acknowledged is there; the
# failed fault left no bit behind (its chunk still reads from the base).
client_ok eio "the volume does not write after the errors stopped" "write -P 0xb5 12M 64k"
client_ok eio "acknowledged writes were lost" "read -P 0xb1 0 256k" "read -P 0xb5 12M 64k"
nbdsh -u "$(uri eio)" -c "
base = open('$d/base.img', 'rb').read()
assert h.pread(65536, 10 << 20) == base[10 << 20:(10 << 20) + 65536], 'a failed fault changed the volume'
"
c status eio | grep -q "state: *active" || fail "the eio volume is not active"

echo "== commit errors: the bitmap write or the flush fails"
new_volume cmt "$d/ecow3.img"
client_ok cmt "a write failed before any error was injected" "write -P 0xc1 0 128k"
touch "$d/fail-bitmap"
client_fails cmt "write failed: Input/output error" "write -P 0xc2 1M 4k"
log_has "volume: cmt: writing the bitmap failed: Input/output error"
rm "$d/fail-bitmap"
touch "$d/fail-flush"
client_fails cmt "write failed: Input/output error" "write -P 0xc3 2M 4k"
log_has "volume: cmt: flushing the CoW device failed: Input/output error"
good_serves
rm "$d/fail-flush"
client_ok cmt "the volume does not write after the commit errors stopped" "write -P 0xc4 3M 4k"
# Every acknowledged write survives a crash; the chunks of the failed
# commits were written again by a later one (their bits stayed dirty).
kill -9 "$(cat "$d/run/cowd.pid")"
wait_until 10 sh -c "! kill -0 $(cat "$d/run/cowd.pid") 2>/dev/null"
start_cowd "$d/run"
client_ok cmt "an acknowledged write was lost after the commit errors" \
  "read -P 0xc1 0 128k" "read -P 0xc4 3M 4k"
[ "$(c --json status cmt | jq .cow_chunks)" = 5 ] \
  || fail "cmt has $(c --json status cmt | jq .cow_chunks) chunks in the CoW layer, want 5"
pass
