#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# An export opens its target, and a snapshot its new layer, off cowd's
# loop.  tgtd is frozen (SIGSTOP: its socket accepts connections, nothing
# answers) while v is exported to one of its LUNs, or takes a snapshot on
# one: before, the iSCSI login waited on the loop for the reconnect
# deadline, and every volume of the host with it.  The export:
#   - a client reading another volume every 5 ms meanwhile never waits
#     500 ms;
#   - a second export of v while the target opens is refused with code
#     busy and the exact sentence;
#   - the export fails after the reconnect deadline (3 s here) with the
#     exact sentence naming the volume, the LUN and the cause; v has no
#     export and serves its data;
#   - a detach of v while its export's target opens detaches it; once the
#     target answers, the export fails with the exact sentence and the LUN
#     is untouched; v attaches again with its data;
#   - once tgtd runs again the export to the LUN runs to its end, and the
#     LUN holds v byte for byte.
# The snapshot (the volume is held only once the new layer is open):
#   - reads of live and of v itself never wait 500 ms meanwhile;
#   - it fails after the deadline with the exact sentence, and v's chain
#     is as it was (one layer) with its data;
#   - a detach of v meanwhile detaches it at once; once the target answers
#     the snapshot fails with the exact sentence and the LUN is untouched;
#   - with tgtd running it is taken: v reads its data, a write after it
#     reads back, and v has two layers, also after a detach and an attach;
#   - a snapshot of w while a read of w waits for w's base (on the frozen
#     tgtd) is not refused: it waits for the read, then is taken, and the
#     read returns the base's data.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/tgtd.sh"
requires_root
requires cowd cowctl jq nbdsh nbdcopy qemu-io

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
new_image "$d/base.img" 4M random
truncate -s 6M "$d/cow.img"
new_image "$d/lbase.img" 1M random
truncate -s 2M "$d/lcow.img"
new_image "$d/target.lun" 4M zero
new_image "$d/layer.lun" 8M zero
new_image "$d/wbase.lun" 4M random
truncate -s 6M "$d/wcow.img" "$d/wlayer.img"
tgt_start
iqn=iqn.2024-01.org.cowherd:openoffload
tgt_lun 1 "$iqn" 1 "$d/target.lun"
tgt_lun 1 "$iqn" 2 "$d/layer.lun"
tgt_lun 1 "$iqn" 3 "$d/wbase.lun"
lun=$(tgt_url "$iqn" 1)
llun=$(tgt_url "$iqn" 2)
printf '[cowd]\nreconnect-deadline-ms = 3000\n' > "$d/cowd.conf"
start_cowd "$d/run" --config "$d/cowd.conf"
c create v --base "$d/base.img" --cow "$d/cow.img" >/dev/null || fail "create v"
c create live --base "$d/lbase.img" --cow "$d/lcow.img" >/dev/null || fail "create live"
vuri=$(c attach v) || fail "attach v: $vuri"
uri=$(c attach live) || fail "attach live: $uri"
qio_ok "$vuri" "a write to v" "write -P 0x5a 1M 64k"
nbdcopy "$vuri" "$d/ref.img"
thaw() { [ -n "$_tgt_pid" ] && kill -CONT "$_tgt_pid" 2>/dev/null || true; }
cleanup_fn thaw
want="cowctl: volume v: the export target cannot be used: $lun: cannot log in (command timed out)"

# frozen_run OUT RES COWCTL-ARGS...: tgtd frozen, cowctl ARGS in the
# background (its pid in bpid; "EXIT MS" in RES once it ends), waiting in
# its login (tgtd accepted the connection): no answer yet.
frozen_run() {
  local out=$1 res=$2 t0; shift 2
  kill -STOP "$_tgt_pid"
  t0=$(date +%s%N)
  ( rc=0; timeout 20 cowctl --run-dir "$d/run" "$@" > "$out" 2>&1 || rc=$?
    echo "$rc $((($(date +%s%N) - t0) / 1000000))" > "$res" ) &
  bpid=$!
  sleep 0.5
  [ ! -s "$res" ] || fail "cowctl $* answered at once: $(cat "$out")"
}
# ended_as PID OUT RES WANT WHAT: the background cowctl of pid PID ended,
# exit 1, with exactly the sentence WANT; its time in ms in $ms.
ended_as() {
  local rc
  wait "$1" || true
  read -r rc ms < "$3"
  [ "$rc" != 124 ] || fail "$5 did not answer in 20 s"
  [ "$rc" = 1 ] && [ "$(cat "$2")" = "$4" ] \
    || fail "$5: exit $rc: got '$(cat "$2")', expected '$4'"
  echo "  $(cat "$2") (after $ms ms)"
}
# detached_meanwhile OUT RES WANT LUNFILE WHAT COWCTL-ARGS...: v detached
# at once while cowctl ARGS waits in its login; once tgtd runs again it
# ends with WANT, and LUNFILE was not written.
detached_meanwhile() {
  local out=$1 res=$2 want=$3 file=$4 what=$5 t0 dms; shift 5
  frozen_run "$out" "$res" "$@"
  t0=$(date +%s%N)
  c detach v >/dev/null || fail "detach v while $what waited"
  dms=$((($(date +%s%N) - t0) / 1000000))
  [ "$dms" -lt 2000 ] || fail "the detach waited $dms ms for $what"
  [ "$(c --json status v | jq -r .state)" = detached ] || fail "v after the detach: $(c --json status v)"
  kill -CONT "$_tgt_pid"   # within the deadline: the login ends, the open succeeds
  ended_as "$bpid" "$out" "$res" "$want" "$what of a detached v"
  cmp -n "$(stat -c %s "$file")" "$file" /dev/zero || fail "$what of a detached v wrote to the LUN"
}
echo "== export v to a LUN of a frozen tgtd"
read_watch "$uri" "$d/stop" "$d/reads" &
rpid=$!
cleanup_fn kill_pid "$rpid"
sleep 0.3
frozen_run "$d/x1.out" "$d/x1.res" export v --to "$lun"
rc=0; out=$(timeout 5 cowctl --run-dir "$d/run" --json export v --to "$d/other.img") || rc=$?
[ $rc = 1 ] && [ "$(jq -r .error.code <<<"$out")" = busy ] \
  && [ "$(jq -r .error.message <<<"$out")" = "volume v: the target of another export of it is being opened; try again" ] \
  || fail "a second export while the target opens: exit $rc: $out"
[ ! -e "$d/other.img" ] || fail "the refused export created its target"
echo "  a second export meanwhile: busy, the sentence"
ended_as "$bpid" "$d/x1.out" "$d/x1.res" "$want" "export v to the frozen LUN"
[ "$ms" -ge 2500 ] && [ "$ms" -le 10000 ] || fail "the export failed after $ms ms; the deadline is 3000 ms"
read_watch_end "$rpid" "$d/stop" "$d/reads" 100 "an export's login waited for a frozen target" "reads of live"
[ "$(c --json stats v | jq -r .export)" = null ] || fail "v has an export after the failed one: $(c stats v)"
[ "$(c --json status v | jq -r .state)" = active ] || fail "v after the failed export: $(c --json status v)"
nbdcopy "$vuri" "$d/v1.img" && cmp "$d/ref.img" "$d/v1.img" || fail "v's data after the failed export"

echo "== v detached while its export's target opens"
detached_meanwhile "$d/x2.out" "$d/x2.res" \
  "cowctl: volume v was detached while the export target $lun was being opened" \
  "$d/target.lun" "the export" export v --to "$lun"
vuri=$(c attach v) || fail "attach v again: $vuri"
nbdcopy "$vuri" "$d/v2.img" && cmp "$d/ref.img" "$d/v2.img" || fail "v's data after the detach"

echo "== tgtd runs again: the export to the LUN runs to its end"
out=$(c export v --to "$lun") || fail "export v to the LUN: $out"
grep -qx "v: exported to $lun: 4194304 bytes in [0-9.]* s ([0-9.]* MB/s)" <<<"$out" \
  || fail "the export did not end with its summary: $out"
cmp "$d/ref.img" "$d/target.lun" || fail "the LUN does not hold v"
echo "  $out; the LUN holds v"

layers() { c --json snapshots v | jq '.layers | length'; }

echo "== a snapshot of v on a LUN of a frozen tgtd"
rm -f "$d/stop" "$d/stop2"
read_watch "$uri" "$d/stop" "$d/reads" &
rpid=$!
read_watch "$vuri" "$d/stop2" "$d/reads2" &
rpid2=$!
sleep 0.3
frozen_run "$d/s1.out" "$d/s1.res" snapshot v --cow "$llun" --name s1
ended_as "$bpid" "$d/s1.out" "$d/s1.res" "cowctl: volume v: new layer $llun: cannot log in (command timed out)" \
  "snapshot on the frozen LUN"
[ "$ms" -ge 2500 ] && [ "$ms" -le 10000 ] || fail "the snapshot failed after $ms ms; the deadline is 3000 ms"
read_watch_end "$rpid" "$d/stop" "$d/reads" 100 "a snapshot's login waited for a frozen target" "reads of live"
read_watch_end "$rpid2" "$d/stop2" "$d/reads2" 100 "its snapshot's login waited for a frozen target" "reads of v itself"
[ "$(layers)" = 1 ] || fail "v's chain after the failed snapshot: $(c snapshots v)"
nbdcopy "$vuri" "$d/v3.img" && cmp "$d/ref.img" "$d/v3.img" || fail "v's data after the failed snapshot"

echo "== v detached while its snapshot's layer opens"
detached_meanwhile "$d/s2.out" "$d/s2.res" \
  "cowctl: volume v was detached while the new layer $llun was being opened" \
  "$d/layer.lun" "the snapshot" snapshot v --cow "$llun" --name s1
vuri=$(c attach v) || fail "attach v again: $vuri"
[ "$(layers)" = 1 ] || fail "v's chain after the detach: $(c snapshots v)"

echo "== tgtd runs: the snapshot is taken"
out=$(c snapshot v --cow "$llun" --name s1) || fail "snapshot on the LUN: $out"
[ "$out" = "v: snapshot s1 taken; writes go to $llun" ] || fail "snapshot on the LUN: $out"
nbdcopy "$vuri" "$d/v4.img" && cmp "$d/ref.img" "$d/v4.img" || fail "v's data after the snapshot"
qio_ok "$vuri" "a write to v's new layer" "write -P 0x6b 2M 64k" "read -P 0x6b 2M 64k" "read -P 0x5a 1M 64k"
c detach v >/dev/null || fail "detach v"
vuri=$(c attach v) || fail "attach v after the snapshot: $vuri"
[ "$(layers)" = 2 ] || fail "v's chain after the snapshot: $(c snapshots v)"
qio_ok "$vuri" "v's data over two layers" "read -P 0x6b 2M 64k" "read -P 0x5a 1M 64k"
echo "  $out; two layers, the data of both"

echo "== a snapshot of w while a read of w waits for its base"
c create w --base "$(tgt_url "$iqn" 3)" --cow "$d/wcow.img" >/dev/null || fail "create w"
wuri=$(c attach w) || fail "attach w: $wuri"
kill -STOP "$_tgt_pid"
nbdsh -u "$wuri" -c 'import sys; sys.stdout.buffer.write(h.pread(4096, 0))' > "$d/wread" 2>"$d/wread.err" &
rdpid=$!
sleep 0.5   # the read waits for the frozen base
( rc=0; timeout 20 cowctl --run-dir "$d/run" snapshot w --cow "$d/wlayer.img" --name s1 > "$d/w.out" 2>&1 || rc=$?
  echo "$rc" > "$d/w.res" ) &
wpid=$!
sleep 1
[ ! -s "$d/w.res" ] || { kill -CONT "$_tgt_pid"; fail "the snapshot of w answered while a read was in flight: $(cat "$d/w.out")"; }
kill -CONT "$_tgt_pid"
wait "$wpid" || true
[ "$(cat "$d/w.res")" = 0 ] && [ "$(cat "$d/w.out")" = "w: snapshot s1 taken; writes go to $d/wlayer.img" ] \
  || fail "the snapshot of w with a read in flight: exit $(cat "$d/w.res"): $(cat "$d/w.out")"
wait "$rdpid" || fail "the read of w failed: $(cat "$d/wread.err")"
cmp "$d/wread" <(head -c 4096 "$d/wbase.lun") || fail "the read of w does not return its base's data"
echo "  $(cat "$d/w.out"), after the read that was in flight returned the base's data"
qio_ok "$uri" "live after all this" "read 0 4k"
pass
