#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# An attach opens its devices off cowd's loop, and gives up on a target
# that answers nothing.  tgtd is frozen (SIGSTOP: its socket accepts
# connections, nothing answers) while a volume on its LUNs is attached:
# before, the iSCSI login waited on the loop for ever, and every volume of
# the host with it.  Now:
#   - a client reading a file volume every 5 ms meanwhile never waits
#     500 ms;
#   - while the login waits, status says "attaching" (and list --state
#     attaching lists it), a detach and a delete are refused with code
#     busy and the exact sentence, and a second attach waits for the same
#     open and fails with the same sentence;
#   - the attach fails after the reconnect deadline (3 s here) with the
#     exact sentence naming the volume, the LUN and the cause, and status
#     keeps it;
#   - once tgtd runs again the volume attaches, its base reads back and a
#     write reads back; after a detach it attaches again with its data;
#   - cowd stopped while an attach waits for the frozen target stops
#     within the deadline, and after a start nothing is attached;
#   - a start with v and live saved attached and the target frozen (a
#     deadline of 8 s): live serves while v's login waits (before, the
#     start opened them one after another on the loop); cowctl answers
#     only once the saved volumes have opened, so it finds v active and
#     serving its data; the log counts them;
#   - worker-threads = 1: an attach of a file volume waits for the one
#     thread, busy with v's login, and then attaches; bad values of the
#     key stop cowd with the sentence.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/tgtd.sh"
requires_root
requires cowd cowctl jq nbdsh nbdcopy qemu-io

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
new_image "$d/base.lun" 8M random
new_image "$d/cow.lun" 10M zero
new_image "$d/lbase.img" 1M random
truncate -s 2M "$d/lcow.img"
tgt_start
iqn=iqn.2024-01.org.cowherd:attachoffload
tgt_lun 1 "$iqn" 1 "$d/base.lun"
tgt_lun 1 "$iqn" 2 "$d/cow.lun"
base=$(tgt_url "$iqn" 1)
printf '[cowd]\nreconnect-deadline-ms = 3000\n' > "$d/cowd.conf"
start_cowd "$d/run" --config "$d/cowd.conf"
c create v --base "$base" --cow "$(tgt_url "$iqn" 2)" >/dev/null || fail "create v"
c create live --base "$d/lbase.img" --cow "$d/lcow.img" >/dev/null || fail "create live"
uri=$(c attach live) || fail "attach live: $uri"
thaw() { [ -n "$_tgt_pid" ] && kill -CONT "$_tgt_pid" 2>/dev/null || true; }
cleanup_fn thaw

# frozen_attach_v OUT: tgtd frozen, an attach of v in the background (its
# pid in apid, its output in OUT), waiting in its login.
frozen_attach_v() {
  kill -STOP "$_tgt_pid"
  ( timeout 20 cowctl --run-dir "$d/run" attach v > "$1" 2>&1 || true ) &
  apid=$!
  wait_until 5 sh -c "[ \"\$(timeout 5 cowctl --run-dir '$d/run' --json status v | jq -r .state)\" = attaching ]" \
    || fail "v is not attaching: $(timeout 5 cowctl --run-dir "$d/run" --json status v 2>&1)"
}

echo "== attach v with tgtd frozen"
kill -STOP "$_tgt_pid"
read_watch "$uri" "$d/stop" "$d/reads" &
rpid=$!
cleanup_fn kill_pid "$rpid"
sleep 0.3
t0=$(date +%s%N)
( rc=0; timeout 20 cowctl --run-dir "$d/run" attach v > "$d/attach.out" 2>&1 || rc=$?
  echo "$rc $((($(date +%s%N) - t0) / 1000000))" > "$d/attach.res" ) &
apid=$!
wait_until 5 sh -c "[ \"\$(timeout 5 cowctl --run-dir '$d/run' --json status v | jq -r .state)\" = attaching ]" \
  || fail "status of v while its login waits: $(timeout 5 cowctl --run-dir "$d/run" --json status v 2>&1)"
echo "  status: attaching"
[ "$(timeout 5 cowctl --run-dir "$d/run" --json list --state attaching | jq -r '.[].name')" = v ] \
  || fail "list --state attaching: $(timeout 5 cowctl --run-dir "$d/run" --json list --state attaching 2>&1)"
( rc=0; timeout 20 cowctl --run-dir "$d/run" attach v > "$d/attach-j.out" 2>&1 || rc=$?
  echo "$rc" > "$d/attach-j.res" ) &
jpid=$!
busy="volume v is being attached; try again"
for cmd in detach delete; do
  rc=0; out=$(timeout 5 cowctl --run-dir "$d/run" --json $cmd v) || rc=$?
  [ $rc = 1 ] && [ "$(jq -r .error.code <<<"$out")" = busy ] \
    && [ "$(jq -r .error.message <<<"$out")" = "$busy" ] \
    || fail "$cmd v while it is being attached: exit $rc: $out"
  echo "  $cmd: busy: $busy"
done
wait "$apid" || true
wait "$jpid" || true
read -r rc ms < "$d/attach.res"
[ "$rc" != 124 ] || fail "attach v did not answer in 20 s with the target frozen"
[ "$rc" = 1 ] || fail "attach v exited $rc: $(cat "$d/attach.out")"
want="cowctl: volume v: base $base: cannot log in (command timed out)"
[ "$(cat "$d/attach.out")" = "$want" ] || fail "attach v: got '$(cat "$d/attach.out")', expected '$want'"
[ "$ms" -ge 3000 ] && [ "$ms" -le 10000 ] || fail "attach v failed after $ms ms; the deadline is 3000 ms, never earlier"
echo "  $(cat "$d/attach.out") (after $ms ms)"
[ "$(cat "$d/attach-j.res")" = 1 ] && [ "$(cat "$d/attach-j.out")" = "$want" ] \
  || fail "a second attach of v while it opened: exit $(cat "$d/attach-j.res"): $(cat "$d/attach-j.out")"
echo "  a second attach meanwhile waited for the same open: the same sentence"
read_watch_end "$rpid" "$d/stop" "$d/reads" 100 "the login waited for a frozen target" "reads of live"
[ "$(c --json status v | jq -r '.state + " / " + .error')" = "failed / ${want#cowctl: }" ] \
  || fail "status of v after the failed attach: $(c --json status v)"

echo "== tgtd runs again: v attaches and serves"
kill -CONT "$_tgt_pid"
vuri=$(c attach v) || fail "attach v after the thaw: $vuri"
nbdcopy "$vuri" "$d/v.out" && cmp <(head -c 8M "$d/base.lun") "$d/v.out" \
  || fail "v does not read its base"
qio_ok "$vuri" "a write to v" "write -P 0x5a 1M 64k" "read -P 0x5a 1M 64k"
c detach v >/dev/null || fail "detach v"
vuri=$(c attach v) || fail "attach v again: $vuri"
qio_ok "$vuri" "v's data after a detach and an attach" "read -P 0x5a 1M 64k"
[ "$(c --json status v | jq -r .state)" = active ] || fail "v not active: $(c --json status v)"
c detach v >/dev/null || fail "detach v"
qio_ok "$uri" "live after all this" "read 0 4k"

echo "== cowd stopped while an attach waits for the frozen target"
frozen_attach_v "$d/attach2.out"
t0=$(date +%s%N)
stop_cowd "$d/run"
ms=$((($(date +%s%N) - t0) / 1000000))
wait "$apid" || true
echo "  cowd stopped in $ms ms"
[ "$ms" -le 8000 ] || fail "cowd took $ms ms to stop while an attach waited (deadline 3000 ms)"
kill -CONT "$_tgt_pid"
start_cowd "$d/run" --config "$d/cowd.conf"
[ "$(c --json status v | jq -r .state)" = detached ] || fail "v after the restart: $(c --json status v)"
vuri=$(c attach v) || fail "attach v after the restart: $vuri"
qio_ok "$vuri" "v's data after the restart" "read -P 0x5a 1M 64k"

echo "== a start with v and live saved attached, the target frozen"
stop_cowd "$d/run"
printf '[cowd]\nreconnect-deadline-ms = 8000\n' > "$d/cowd8.conf"
kill -STOP "$_tgt_pid"
t0=$(date +%s%N)
cowd -f --standalone --run-dir "$d/run" --state-dir "$d/run/state" --config "$d/cowd8.conf" \
  >>"$d/run.log" 2>&1 &
_cowd_pid[$d/run]=$!
cleanup_fn kill_pid "$!"
wait_until 5 test -S "$d/run/live.sock" || fail "live was not served while v's login waited"
qio_ok "$uri" "live while v's login waits at the start" "read 0 4k"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -lt 5000 ] || fail "live served its first read $ms ms after the start; v's login waits up to 8000 ms"
rc=0; out=$(timeout 5 cowctl --run-dir "$d/run" list 2>&1) || rc=$?
[ $rc != 0 ] || fail "cowctl answered while a saved volume still opened: $out"
echo "  live read $ms ms after the start while v's login waited; cowctl not answered yet (exit $rc)"
kill -CONT "$_tgt_pid"
t0=$(date +%s%N)
wait_until 15 cowctl --run-dir "$d/run" list || fail "cowctl did not answer once tgtd ran again"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$(c --json status v | jq -r .state)" = active ] \
  || fail "v when cowctl first answered: $(c --json status v)"
qio_ok "$vuri" "v's data after a start that waited for its target" "read -P 0x5a 1M 64k"
grep -q 'cowd: 2 saved volume(s) attached again in [0-9]* ms, 0 of them failed' "$d/run.log" \
  || fail "no line counts the saved volumes: $(grep 'saved volume' "$d/run.log")"
echo "  cowctl answered $ms ms after the thaw, v active; $(grep -o 'cowd: 2 saved volume(s) attached again in [0-9]* ms, 0 of them failed' "$d/run.log" | tail -1)"

echo "== worker-threads = 1: an attach waits for the one thread"
c detach v >/dev/null || fail "detach v"
stop_cowd "$d/run"
printf '[cowd]\nreconnect-deadline-ms = 3000\nworker-threads = 1\n' > "$d/cowd1.conf"
start_cowd "$d/run" --config "$d/cowd1.conf"
new_image "$d/l2base.img" 1M random
truncate -s 2M "$d/l2cow.img"
c create live2 --base "$d/l2base.img" --cow "$d/l2cow.img" >/dev/null || fail "create live2"
frozen_attach_v "$d/attach3.out"
t0=$(date +%s%N)
l2=$(timeout 20 cowctl --run-dir "$d/run" attach live2) || fail "attach live2 behind v: $l2"
ms=$((($(date +%s%N) - t0) / 1000000))
wait "$apid" || true
[ "$ms" -ge 1500 ] || fail "live2 attached after $ms ms, beside v's login: the one thread was not waited for"
grep -qF "cannot log in (command timed out)" "$d/attach3.out" || fail "attach v: $(cat "$d/attach3.out")"
qio_ok "$l2" "live2 after it waited for the thread" "read 0 4k"
echo "  live2 attached after $ms ms, when v's login had timed out"
kill -CONT "$_tgt_pid"
for bad in 0 4097 x; do
  printf '[cowd]\nworker-threads = %s\n' "$bad" > "$d/bad.conf"
  rc=0; out=$(timeout 10 cowd -f --standalone -c "$d/bad.conf" --run-dir "$d/r4" \
    --state-dir "$d/r4/state" 2>&1) || rc=$?
  [ $rc = 2 ] && grep -qF "worker-threads: '$bad' is not a number of threads from 1 to 4096" <<<"$out" \
    || fail "worker-threads = $bad: exit $rc: $out"
done
echo "  worker-threads 0, 4097, x: exit 2, the sentence"
pass
