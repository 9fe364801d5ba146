#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A create formats its CoW device off cowd's loop (issue 17: no NBD
# request delayed by definitions), a LUN's session included.  tgtd runs
# with slowsync.so: each SYNCHRONIZE CACHE it makes durable with an
# fdatasync or fsync waits 1000 ms more, and a LUN's format flushes, so a
# create on LUNs takes at least 1 s.  A client reading a file volume every
# 5 ms meanwhile must never wait 500 ms (with the format on the loop, a
# read waited for the whole format).  Two lines of one batch that name one
# LUN by two portal names (127.0.0.1 and localhost), formatted on the
# thread: the first is created; the second is refused with the sentence
# that names the first (its claim, taken on the loop while the thread
# formats), and the first's data reads back.  Two creates at once of one
# LUN by its two names: one is refused (the claim), though the other's
# superblock is not written yet.  A line whose format fails on the thread
# (a LUN too small) ends the batch at that line.  cowd stopped while a
# create formats waits for the format, and after a start nothing names
# the volume; create --force takes its LUN.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/tgtd.sh"
requires_root
requires cowd cowctl jq nbdsh nbdcopy qemu-io
slowsync_shim

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
new_image "$d/base.img" 1M random
truncate -s 2M "$d/c0"
new_image "$d/base.lun" 8M random
for i in 1 2 3 4; do new_image "$d/cow$i.lun" 10M zero; done
new_image "$d/small.lun" 1M zero
new_image "$d/zero" 10M zero
LD_PRELOAD=$shim SLOWSYNC_MS=1000 tgt_start
iqn=iqn.2024-01.org.cowherd:lunoffload
tgt_lun 1 "$iqn" 1 "$d/base.lun"
for i in 1 2 3; do tgt_lun 1 "$iqn" $((i + 1)) "$d/cow$i.lun"; done
tgt_lun 1 "$iqn" 5 "$d/small.lun"
tgt_lun 1 "$iqn" 6 "$d/cow4.lun"
base=$(tgt_url "$iqn" 1)
start_cowd "$d/run"
c create live --base "$d/base.img" --cow "$d/c0" >/dev/null || fail "create live"
uri=$(c attach live) || fail "attach live: $uri"

# timed NAME CMD...: CMD while live is read every 5 ms; its output in
# $d/out-NAME, "EXIT MS" in $d/res-NAME; no read may wait 500 ms.
timed() {
  local name=$1 rpid t0 t1 n worst rc=0
  shift
  read_watch "$uri" "$d/stop-$name" "$d/reads-$name" &
  rpid=$!
  cleanup_fn kill_pid "$rpid"
  sleep 0.3
  t0=$(date +%s%N)
  "$@" > "$d/out-$name" 2>&1 || rc=$?
  t1=$(date +%s%N)
  touch "$d/stop-$name"; wait "$rpid" || fail "the reader failed: $(cat "$d/reads-$name")"
  read -r n worst < "$d/reads-$name"
  echo "   $name: exit $rc in $(((t1 - t0) / 1000000)) ms; $n reads of live meanwhile, the slowest $worst ms"
  awk -v w="$worst" 'BEGIN { exit !(w < 500) }' \
    || fail "$name: a read of live waited $worst ms while the LUN was formatted"
  [ "$n" -ge 10 ] || fail "$name: only $n reads"
  echo "$rc $(((t1 - t0) / 1000000))" > "$d/res-$name"
}

echo "== create on LUNs, tgtd's flushes 1000 ms slower"
timed one c create l1 --base "$base" --cow "$(tgt_url "$iqn" 2)"
read -r rc ms < "$d/res-one"
[ "$rc" = 0 ] || fail "create l1: $(cat "$d/out-one")"
[ "$(cat "$d/out-one")" = "created volume l1 (chunk size 65536, commit sync)" ] \
  || fail "create l1 answered: $(cat "$d/out-one")"
[ "$ms" -ge 1000 ] || fail "create l1 took $ms ms: were tgtd's flushes slowed?"

echo "== one LUN under two names in one batch: the second is refused"
alias="iscsi://localhost:$TGT_PORT/$iqn/3"
printf 'l2 --base %s --cow %s\nl3 --base %s --cow %s\nl4 --base %s --cow %s\n' \
  "$base" "$(tgt_url "$iqn" 3)" "$base" "$alias" "$base" "$(tgt_url "$iqn" 4)" > "$d/defs"
timed batch c --json create --from "$d/defs"
read -r rc ms < "$d/res-batch"
[ "$rc" = 1 ] || fail "the batch: exit $rc: $(cat "$d/out-batch")"
[ "$(jq -c '[.created, [.volumes[].name], .error]' "$d/out-batch")" = \
  "[1,[\"l2\"],{\"code\":\"cow-in-use\",\"line\":2,\"message\":\"volume l3: CoW device $alias is the CoW device of volume l2 already; a CoW device belongs to one volume\"}]" ] \
  || fail "the batch answered: $(cat "$d/out-batch")"
cmp -s "$d/cow3.lun" "$d/zero" || fail "line 3 (after the refused line): its LUN was written"
[ "$(c list | tail -n +2 | awk '{print $1}' | tr '\n' ' ')" = "l1 l2 live " ] \
  || fail "list after the batch: $(c list)"

echo "== one LUN under two names in two creates at once: one is refused"
# Each formats on a thread of its own; the LUN's superblock is written
# only after the slowed flush, so the later one can only learn of the
# earlier from the claim.
c create l7 --base "$base" --cow "$(tgt_url "$iqn" 6)" > "$d/out-l7" 2>&1 & p7=$!
c create l8 --base "$base" --cow "iscsi://localhost:$TGT_PORT/$iqn/6" > "$d/out-l8" 2>&1 & p8=$!
r7=0; wait $p7 || r7=$?
r8=0; wait $p8 || r8=$?
echo "   l7: exit $r7: $(cat "$d/out-l7")"
echo "   l8: exit $r8: $(cat "$d/out-l8")"
if [ $r7 = 0 ]; then
  win=l7 lose=l8 lose_cow="iscsi://localhost:$TGT_PORT/$iqn/6" rl=$r8
else
  win=l8 lose=l7 lose_cow=$(tgt_url "$iqn" 6) rl=$r7
fi
[ "$(cat "$d/out-$win")" = "created volume $win (chunk size 65536, commit sync)" ] && [ "$rl" != 0 ] \
  || fail "two creates of one LUN: l7 exit $r7, l8 exit $r8"
[ "$(cat "$d/out-$lose")" = "cowctl: volume $lose: CoW device $lose_cow is the CoW device of volume $win already; a CoW device belongs to one volume" ] \
  || fail "the refused create said: $(cat "$d/out-$lose")"
c delete $win

echo "== a format that fails on the thread ends the batch at its line"
printf 'l4 --base %s --cow %s\nl5 --base %s --cow %s\nl6 --base %s --cow %s\n' \
  "$base" "$(tgt_url "$iqn" 4)" "$base" "$(tgt_url "$iqn" 5)" "$d/base.img" "$d/c6" > "$d/defs2"
truncate -s 2M "$d/c6"
rc=0; out=$(c create --from "$d/defs2" 2>&1) || rc=$?
[ $rc -eq 1 ] || fail "a LUN too small: exit $rc: $out"
want="cowctl: $d/defs2 line 2: volume l5: CoW device $(tgt_url "$iqn" 5) is too small: it has 1048576 bytes and needs 8454144 (base 8388608 + metadata) (the 1 volumes before it are created; it and the lines after it are not)"
grep -qxF "$want" <<<"$out" || fail "a LUN too small: got '$out', expected the line '$want'"
[ "$(c list | tail -n +2 | awk '{print $1}' | tr '\n' ' ')" = "l1 l2 l4 live " ] \
  || fail "list after the failed format: $(c list)"
cmp -s "$d/small.lun" <(head -c 1M "$d/zero") || fail "the LUN too small was written"

echo "== every volume created reads its base, and keeps what is written"
for v in l1 l2 l4; do
  u=$(c attach $v) || fail "attach $v: $u"
  nbdcopy "$u" "$d/$v.raw" || fail "$v: nbdcopy failed"
  cmp "$d/$v.raw" "$d/base.lun" || fail "$v does not read its base"
  qio_ok "$u" "$v: a write" "write -P 0x5a 64k 64k" "read -P 0x5a 64k 64k"
done

echo "== cowd stopped while a create formats: the stop waits for it; nothing names it"
for v in l1 l2 l4; do c detach $v; done
c create l9 --base "$base" --cow "$(tgt_url "$iqn" 6)" --force > "$d/out-l9" 2>&1 & p9=$!
being() { [ "$(c status l9 2>&1)" = "cowctl: volume l9 is being created: its definition is not durable yet" ]; }
wait_until 10 being || fail "l9 was never being created: $(c status l9 2>&1)"
t0=$(date +%s%N)
stop_cowd "$d/run"
t1=$(date +%s%N)
wait $p9 || true
echo "   stopped in $(((t1 - t0) / 1000000)) ms; create said: $(cat "$d/out-l9")"
[ $(((t1 - t0) / 1000000)) -lt 15000 ] || fail "the stop took $(((t1 - t0) / 1000000)) ms"
grep -q "cowd: stopped" "$d/run.log" || fail "cowd did not stop cleanly: $(tail -5 "$d/run.log")"
start_cowd "$d/run"
[ "$(c list | tail -n +2 | awk '{print $1}' | tr '\n' ' ')" = "l1 l2 l4 live " ] \
  || fail "list after the stop: $(c list)"
c create l9 --base "$base" --cow "$(tgt_url "$iqn" 6)" --force > /dev/null || fail "create l9 again"
pass
