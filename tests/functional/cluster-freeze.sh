#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A frozen owner that was deposed goes silent on waking (issue 15, 2-4).
# Node 1 owns v and a client writes to it at 200 writes/s.  tgtd stops for
# 30 ms around the SIGSTOP of node 1's cowd, so that a write of node 1 is
# certainly in flight at the storage; node 2 asks for v (a handoff request
# that node 1 finds pending when it wakes), fences node 1 by hand (cowctl
# fence 1, as Pacemaker would) and takes v over; 6 s after the stop node 1
# wakes up.  Checked against the client's log (one CLOCK_MONOTONIC for
# every host): node 1 acknowledges nothing after its lease (1500 ms) from
# the stop, nothing after node 2's first acknowledgement, and fails the
# write it had in flight; the pending handoff cannot bring v back to
# active: v stays fenced and node 1 answers none of 100 reads; cowctl says
# "fenced".  SIGTERM stops the fenced agent within a second, logging a
# failing flush at most once and no clean close.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
source "$top_srcdir/tests/lab/deposed.sh"
requires python3 tgtd jq cowd cowctl
python3 -c "import nbd" 2>/dev/null || { echo "SKIP: python3-libnbd"; exit 77; }

lab_init "cz$(printf %04x $((RANDOM)))"
dep_setup 1500

echo "== node 1's cowd stopped with a write in flight, fenced, taken over, woken"
dep_freeze
dep_report
[ "$DEP_LATE_LEASE" -eq 0 ] \
  || fail "node 1 acknowledged $DEP_LATE_LEASE writes after its lease ran out (last at $(dep_ms "$DEP_A_LAST") ms)"
[ "$DEP_LATE_TAKEOVER" -eq 0 ] || fail "node 1 acknowledged $DEP_LATE_TAKEOVER writes after node 2's first"
failed=$(awk -v t="$DEP_T_FAULT" '$1 == "err" && $4 > t' "$DEP_LOG.a" | wc -l)
[ "$failed" -gt 0 ] || fail "the write node 1 had in flight was not failed: $(tail -3 "$DEP_LOG.a")"
dep_check_data || fail "data on node 2: $(cat "$DEP_LOG.check")"
[ "$DEP_READS" -gt 0 ] || fail "no read was tried through node 1"
[ "$DEP_STALE" -eq 0 ] || fail "node 1 answered $DEP_STALE of $DEP_READS reads after it was deposed"
dep_log1 -q "cannot mark the volume clean; keeping it" && fail "node 1 kept v after it was fenced"
[ "$DEP_STATE" = fenced ] || fail "node 1 says v is $DEP_STATE, not fenced: $(dep_st 1)"
lab_cowctl 1 list | grep -q "^v  *fenced " || fail "cowctl list on node 1: $(lab_cowctl 1 list)"
echo "   $failed of node 1's writes failed after the stop; $(cat "$DEP_LOG.check");" \
     "node 1 says v is $DEP_STATE"

echo "== SIGTERM stops the fenced agent"
dep_restart
echo "   stopped in $DEP_STOP_MS ms"
[ "$DEP_STOP_MS" -lt 1000 ] || fail "the fenced cowd took $DEP_STOP_MS ms to stop"
dep_log1 -q "w: closed without marking it clean (this host was fenced)" \
  || fail "the fenced cowd does not say it left w dirty: $(dep_log1 'volume: w' | tail -3)"
n=$(dep_log1 -c "flushing the CoW device failed" || true)
[ "$n" -le 1 ] || fail "node 1 logged the failing flush $n times"
dep_log1 -q "closed clean at generation" && fail "the fenced cowd claims a clean close: $(dep_log1 'closed clean')"
echo "   node 1 serves v again after the restart"
pass
