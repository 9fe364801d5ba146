#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A cut-off owner goes silent (issue 15, 1 and 4).  Node 1 owns v and a
# client writes to it at 200 writes/s; node 1 is cut off from the other
# nodes only (blackhole routes inside its namespace: the storage stays
# reachable, so only the lease can stop it).  Its corosync forms a ring of
# its own and goes on delivering its heartbeats there; they must renew
# nothing.  Checked against the client's log (CLOCK_MONOTONIC, one clock
# for every host): node 1 acknowledges nothing later than its lease
# (1500 ms) after the cut and nothing after node 2's first acknowledgement;
# node 2 fences it, takes over and writes; after the heal node 1 knows it
# was fenced, answers no read and says "fenced"; the last acknowledged
# record of every block is what the block holds.  Then SIGTERM stops the
# fenced agent within a second, without claiming a clean close.  Last, node
# 1's link is cut (storage too) with a write in flight: past the lease it
# drops its iSCSI session (a reset: the kernel does not deliver the write
# when the link is back) and after the heal, fenced, it does not send the
# write again; the target never sees a write of the fenced node.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
source "$top_srcdir/tests/lab/deposed.sh"
requires python3 tgtd jq cowd cowctl
python3 -c "import nbd" 2>/dev/null || { echo "SKIP: python3-libnbd"; exit 77; }

lab_init "cp$(printf %04x $((RANDOM)))"
dep_setup 1500

echo "== node 1 cut off from nodes 2 and 3 (storage reachable)"
dep_partition
dep_report
[ "$DEP_LATE_LEASE" -eq 0 ] \
  || fail "node 1 acknowledged $DEP_LATE_LEASE writes after its lease ran out (last at $(dep_ms "$DEP_A_LAST") ms)"
[ "$DEP_LATE_TAKEOVER" -eq 0 ] || fail "node 1 acknowledged $DEP_LATE_TAKEOVER writes after node 2's first"
dep_check_data || fail "data on node 2: $(cat "$DEP_LOG.check")"
[ "$DEP_READS" -gt 0 ] || fail "no read was tried through node 1"
[ "$DEP_STALE" -eq 0 ] || fail "node 1 answered $DEP_STALE of $DEP_READS reads after it was deposed"
dep_is 1 '.state == "fenced"' || fail "node 1 does not say v is fenced: $(dep_st 1)"
dep_log1 -q "which votequorum has not called quorate .*: it renews no lease" \
  || fail "node 1 did not refuse a heartbeat of its own ring: $(dep_log1 cluster: | head -8)"
echo "   $(cat "$DEP_LOG.check"); node 1 says v is $(dep_st 1 | jq -r .state)"

echo "== SIGTERM stops the fenced agent"
dep_restart
echo "   stopped in $DEP_STOP_MS ms"
[ "$DEP_STOP_MS" -lt 1000 ] || fail "the fenced cowd took $DEP_STOP_MS ms to stop"
wait_until 5 dep_log1 -q "w: closed without marking it clean (this host was fenced)" \
  || fail "the fenced cowd does not say it left w dirty: $(dep_log1 'volume: w' | tail -3)"
dep_log1 -q "closed clean at generation" && fail "the fenced cowd claims a clean close: $(dep_log1 'closed clean')"
wait_until 5 dep_log1 -q "v: closed without marking it clean (this host was fenced)" \
  || fail "the fenced cowd does not say it left v dirty: $(dep_log1 'volume: v' | tail -3)"
echo "   node 1 serves v again after the restart"

echo "== node 1's link cut (storage too): the write it had in flight never reaches the LUN"
dep_start_writer
lab_link_down 1
DEP_T_FAULT=$(dep_mono)
wait_until 20 dep_is 2 '.cluster_state == "unowned"' || fail "node 1 was not fenced: $(dep_st 2)"
lab_cowctl 2 attach v >/dev/null
dep_takeover
lab_link_up 1
dep_finish
dep_report
[ "$DEP_LATE_LEASE" -eq 0 ] || fail "node 1 acknowledged $DEP_LATE_LEASE writes after its lease ran out"
[ "$DEP_LATE_TAKEOVER" -eq 0 ] || fail "node 1 acknowledged $DEP_LATE_TAKEOVER writes after node 2's first"
[ "$DEP_STALE" -eq 0 ] || fail "node 1 answered $DEP_STALE of $DEP_READS reads after it was deposed"
dep_check_data || fail "data on node 2: $(cat "$DEP_LOG.check")"
dep_log1 -q "dropping the session with writes in flight" \
  || fail "node 1 kept its session with a write in flight past the lease: $(dep_log1 iscsi: | head -5)"
wait_until 20 dep_log1 -q "write(s) that waited for the session were not sent: this host was fenced" \
  || fail "node 1 did not hold back its stuck write after the heal: $(dep_log1 'iscsi:\|fence:' | tail -5)"
dep_log1 -q "write rejected: reservation conflict" \
  && fail "node 1 sent a write to the LUN after it was fenced: $(dep_log1 'reservation conflict')"
echo "   $(dep_log1 -o "[0-9]* write(s) that waited for the session were not sent: this host was fenced" | head -1);" \
     "$(cat "$DEP_LOG.check")"
dep_restart
[ "$DEP_STOP_MS" -lt 1000 ] || fail "the fenced cowd took $DEP_STOP_MS ms to stop"
pass
