#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The control channel's thread, and a stop while a command waits for its
# answer.  libqb's side of the channel runs on a thread of cowd's own
# (cowd-ctl); the commands run on the loop, and an answer given after the
# channel closed is dropped, not sent on a connection that is gone.
#  - cowd has a thread named cowd-ctl;
#  - every fsync and fdatasync of cowd takes 3 s more (slowsync.so):
#    `cowctl detach v` waits for v's commit, and meanwhile `cowctl list`
#    answers within 1 s;
#  - SIGTERM then: cowd exits with status 0 within 30 s and logs no
#    error of its own; the waiting cowctl exits 3 with the sentence that
#    cowd went away before it answered;
#  - a restarted cowd lists v, not attached, and v reads what was
#    written before the detach.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires cowd cowctl qemu-io jq
slowsync_shim

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
new_image "$d/base.img" 8M random
truncate -s 9M "$d/cow.img"
start_cowd "$d/run"
c create v --base "$d/base.img" --cow "$d/cow.img" >/dev/null
uri=$(c attach v) || fail "attach v: $uri"
qio_ok "$uri" "write before the detach" "write -P 0x5a 0 64k"
stop_cowd "$d/run"

echo "== cowd with every sync 3 s slower"
LD_PRELOAD=$shim SLOWSYNC_MS=3000 cowd -f --standalone --run-dir "$d/run" \
  --state-dir "$d/run/state" >>"$d/run.log" 2>&1 &
pid=$!
cleanup_fn kill_pid "$pid"
wait_until 60 c list || fail "cowd did not start: $(tail -5 "$d/run.log")"
wait_until 30 sh -c "cowctl --run-dir '$d/run' --json status v | grep -q '\"state\":\"active\"'" \
  || fail "v is not active again: $(c status v)"
grep -qx cowd-ctl /proc/"$pid"/task/*/comm || fail "cowd has no thread cowd-ctl: $(cat /proc/"$pid"/task/*/comm | tr '\n' ' ')"
echo "   cowd's threads: $(sort /proc/"$pid"/task/*/comm | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')"

c detach v > "$d/detach.out" 2>&1 &
det=$!
cleanup_fn kill_pid "$det"
sleep 0.5
kill -0 "$det" 2>/dev/null || fail "detach did not wait for the slow commit: $(cat "$d/detach.out")"
t0=$(date +%s%N)
c list >/dev/null || fail "list failed while a detach waited"
t1=$(date +%s%N)
[ $(((t1 - t0) / 1000000)) -lt 1000 ] || fail "list took $(((t1 - t0) / 1000000)) ms while a detach waited"
echo "   list answered in $(((t1 - t0) / 1000000)) ms while the detach waited"

echo "== SIGTERM while the detach waits"
kill -TERM "$pid"
wait_until 30 sh -c "! kill -0 $pid 2>/dev/null" || fail "cowd did not stop within 30 s"
set +e
wait "$pid"; rc=$?
wait "$det"; drc=$?
set -e
[ "$rc" -eq 0 ] || fail "cowd exited $rc: $(tail -5 "$d/run.log")"
[ "$drc" -eq 3 ] || fail "the waiting detach exited $drc: $(cat "$d/detach.out")"
[ "$(cat "$d/detach.out")" = "cowctl: cowd at $d/run went away before it answered (it exited or was stopped); whether the command took effect is unknown: look with cowctl status" ] \
  || fail "the waiting detach said: $(cat "$d/detach.out")"
echo "   $(cat "$d/detach.out")"
if grep -E "(ERROR|AddressSanitizer|runtime error)" "$d/run.log" | grep -v 'slowsync'; then
  fail "cowd logged errors while stopping"
fi

echo "== restarted: v is detached and holds its data"
start_cowd "$d/run"
[ "$(c --json status v | jq -r .state)" != active ] || fail "v is attached after the restart"
uri=$(c attach v) || fail "attach v after the restart: $uri"
qio_ok "$uri" "read after the restart" "read -P 0x5a 0 64k"
c detach v >/dev/null
pass
