#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The quorum lease on real corosync: corosync on the owner stops (SIGSTOP)
# for a second, shorter than the token timeout, so the group itself sees
# nothing.  cowd hears none of its own heartbeats back, holds writes within
# quorum-loss-timeout-ms (400 ms here), and serves again once corosync
# delivers them; a client writing all along loses nothing and sees no
# error, and a write in flight when the lease runs out (its session
# dropped, tgtd stopped meanwhile) waits for the lease.  Then corosync
# on the owner goes away for good: cowd holds writes and says so, and a
# SIGTERM then ends cowd at once, the write waiting for the lease failed
# and the volume left dirty.  And a
# lease not shorter than corosync's token + consensus gets a warning.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires python3 qemu-io tgtd jq cowd cowctl
python3 -c "import nbd" 2>/dev/null || { echo "SKIP: python3-libnbd"; exit 77; }
writer="$top_srcdir/tests/nbdwriter.py"

lab_init "cl$(printf %04x $((RANDOM)))"
lab_small_cluster
iqn=$LAB_IQN
printf '[cowd]\nfencing = manual\nquorum-loss-timeout-ms = 400\n' > "$LAB_DIR/cowd.conf"
printf '[cowd]\nfencing = manual\nquorum-loss-timeout-ms = 4000\n' > "$LAB_DIR/cowd-long.conf"
cowd1=$(lab_cowd 1 --config "$LAB_DIR/cowd.conf")
lab_cowd 2 --config "$LAB_DIR/cowd-long.conf" >/dev/null

sock() { echo "nbd+unix:///?socket=$(lab_dir "$1")/run/$2.sock"; }
is() { lab_cowctl "$1" --json status "$2" | jq -e "$3" >/dev/null; }
mono() { python3 -c 'import time; print(time.monotonic_ns())'; }
log1=$(lab_dir 1)/log/cowd.log

echo "== the lease against corosync's token + consensus"
wait_until 10 grep -q "lease 400 ms, corosync decides a new membership after token + consensus" "$log1" \
  || fail "node 1 did not compare its lease with token + consensus"
wait_until 10 grep -q "quorum-loss-timeout-ms (4000) is not shorter than corosync's token + consensus" \
  "$(lab_dir 2)/log/cowd.log" || fail "node 2 did not warn about a lease longer than token + consensus"
grep -h "token + consensus" "$log1" "$(lab_dir 2)/log/cowd.log" | sed 's/^/  /'

lab_cowctl 1 create v --base "$(lab_iscsi_url 0 $iqn 1)" --cow "$(lab_iscsi_url 0 $iqn 2)" >/dev/null
lab_cowctl 1 attach v >/dev/null
wait_until 10 is 1 v '.owner == 1 and .state == "active"' || fail "node 1 does not own v"

echo "== corosync on the owner stops for 1 s"
# (as many as the volume holds: 8192, about 4 s of this machine's writes
# unhindered, more than the 4 s below, which hold writes for 1 s of them)
python3 "$writer" write "$LAB_DIR/v.log" 1000000 0 "$(sock 1 v)" 2>"$LAB_DIR/writer.err" & w=$!
sleep 1
cpid=$(lab_corosync_pid 1)
t_stop=$(mono); kill -STOP "$cpid"
sleep 1
t_cont=$(mono); kill -CONT "$cpid"
sleep 2
kill "$w" 2>/dev/null || true # done if it wrote every block
wait "$w" 2>/dev/null || true
grep -q "writes are held as if quorum were lost" "$log1" \
  || fail "cowd did not hold writes: $(grep cluster: "$log1" | tail -5)"
grep -q "delivers this node's heartbeats again" "$log1" || fail "cowd did not resume"
# Acknowledgements: none between stop + 400 ms (+ 300 ms for the write in
# flight and the timer) and the restart; some after it.
late=$(awk -v a=$((t_stop + 700000000)) -v b="$t_cont" '$2 > a && $2 < b' "$LAB_DIR/v.log" | wc -l)
after=$(awk -v b="$t_cont" '$2 > b' "$LAB_DIR/v.log" | wc -l)
before=$(awk -v a="$t_stop" '$2 < a' "$LAB_DIR/v.log" | wc -l)
last=$(awk -v b="$t_cont" '$2 < b {t = $2} END {print t}' "$LAB_DIR/v.log")
echo "   $before writes acknowledged before the stop; the last one while stopped came" \
     "$(( (last - t_stop) / 1000000 )) ms after it; $after after corosync came back"
[ "$late" -eq 0 ] || fail "$late writes were acknowledged more than 700 ms into the stop"
[ "$before" -gt 0 ] && [ "$after" -gt 0 ] || fail "the writer did not write before and after"
is 1 v '.owner == 1 and .state == "active"' || fail "node 1 does not serve v again"
# Held, never failed: a write in flight when the lease ran out waits for it.
[ ! -s "$LAB_DIR/writer.err" ] || fail "a write failed while the lease was out: $(head -3 "$LAB_DIR/writer.err")"
python3 "$writer" verify "$LAB_DIR/v.log" 0 "$(sock 1 v)" || fail "an acknowledged write was lost"

echo "== a write in flight when the lease runs out waits for it (no EIO)"
# tgtd stops with a write of node 1 sent and unanswered; the lease runs out
# (corosync on node 1 stopped for 1.2 s); cowd drops the session with the
# write in flight; tgtd comes back and the session with it while the lease
# is still out: the write waits, and goes out once the lease is back.
from=$(($(wc -l <"$log1") + 1))
kill -STOP "$_lab_tgt_pid"
cleanup_fn cont_pid "$_lab_tgt_pid"
timeout 20 qemu-io -f raw "$(sock 1 v)" -c "write -P 0x77 8M 64k" >"$LAB_DIR/w77.out" 2>&1 & w=$!
sleep 0.3
held=$(grep -c "writes are held as if quorum were lost" "$log1" || true)
kill -STOP "$cpid"
sleep 0.8
kill -CONT "$_lab_tgt_pid"
wait_until 5 lab_log_has 1 "session re-established" || fail "node 1's session did not come back: $(tail -5 "$log1")"
sleep 0.4
kill -CONT "$cpid"
rc=0; wait "$w" || rc=$?
[ "$(grep -c "writes are held as if quorum were lost" "$log1")" -gt "$held" ] \
  || fail "the lease did not run out while corosync was stopped"
grep -q "dropping the session with writes in flight" "$log1" \
  || fail "cowd did not drop the session with the write in flight"
! grep -q "were not sent: this host's lease ran out" "$log1" \
  || fail "a write that waited for the session was failed for the lease"
[ $rc -eq 0 ] || fail "the write in flight failed (qemu-io exit $rc): $(cat "$LAB_DIR/w77.out")"
tail -n +"$from" "$log1" | grep -E "iscsi:|held|heartbeats" | sed 's/^/   /'
qio_ok "$(sock 1 v)" "the write that waited for the lease is not on v" "read -P 0x77 8M 64k"
is 1 v '.owner == 1 and .state == "active"' || fail "node 1 does not serve v"
echo "   the write waited for the lease and was acknowledged; the data is there"

echo "== corosync on the owner goes away"
# With a write of node 1 in flight (tgtd stopped, then back): it waits for
# the lease, which does not come back.
from=$(($(wc -l <"$log1") + 1))
kill -STOP "$_lab_tgt_pid"
timeout 30 qemu-io -f raw "$(sock 1 v)" -c "write -P 0x99 9M 64k" >"$LAB_DIR/w99.out" 2>&1 & w=$!
sleep 0.3
kill -9 "$cpid"
wait_until 5 grep -q "lost the connection to corosync" "$log1" \
  || fail "cowd did not notice corosync going away"
kill -CONT "$_lab_tgt_pid"
since() { tail -n +"$from" "$log1" | grep -q "$1"; }
wait_until 10 since "write(s) that waited for the session wait for this host's lease" \
  || fail "node 1's write in flight does not wait for the lease: $(tail -n +"$from" "$log1" | grep iscsi: | tail -3)"
if timeout 3 qemu-io -f raw "$(sock 1 v)" -c "write -P 0x88 0 4k" >/dev/null 2>&1; then
  fail "node 1 acknowledged a write without corosync"
fi
lab_cowctl 1 nodes | grep -q "quorate:    NO" || fail "cowd on node 1 does not report quorum loss"
echo "   writes are held and cowd says why"

echo "== SIGTERM with a write waiting for the lease: cowd exits at once"
t0=$(lab_uptime_ms)
kill -TERM "$cowd1"
end=$((SECONDS + 10))
while lab_alive "$cowd1" && [ $SECONDS -lt $end ]; do sleep 0.01; done
stop_ms=$(($(lab_uptime_ms) - t0))
! lab_alive "$cowd1" || fail "cowd did not exit within 10 s of SIGTERM"
rc=0; wait "$w" || rc=$?
tail -n +"$from" "$log1" | grep -E "iscsi: .*lease|closed without" | sed 's/^/   /'
echo "   cowd exited $stop_ms ms after SIGTERM; the waiting write's client: exit $rc"
[ "$stop_ms" -lt 1000 ] || fail "cowd took $stop_ms ms to exit with a write waiting for the lease"
[ $rc -ne 0 ] || fail "the write that waited for the lease was acknowledged"
grep -q "write(s) that waited for this host's lease were not sent: the volume closes" "$log1" \
  || fail "cowd did not say it gave up the write that waited for the lease"
grep -q "v: closed without marking it clean (the lease ran out)" "$log1" \
  || fail "cowd does not say it left v dirty: $(grep 'volume: v' "$log1" | tail -3)"
pass
