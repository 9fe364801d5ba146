# SPDX-License-Identifier: GPL-2.0-or-later
# tests/lab/deposed.sh: a deposed or cut-off owner must go silent (issue
# 15).  Rounds shared by functional/cluster-partition.sh,
# functional/cluster-freeze.sh and bench/deposed.  Sourced after
# tests/functions.sh and tests/lab/lab.sh.
#
#   dep_setup LEASE_MS   lab_small_cluster, cowd on nodes 1-3 (fencing by
#                        reservations, the given quorum-loss-timeout-ms),
#                        volume v (base LUN 1, CoW LUN 2) owned by node 1,
#                        and w (CoW LUN 3, commit flush) owned by node 1,
#                        which each round leaves with bits not yet
#                        committed: a fenced node 1 cannot commit them when
#                        it stops
#   dep_partition        one round: a writer on node 1; node 1 is cut off
#                        from the other nodes only (blackhole routes inside
#                        its namespace: storage stays reachable); node 2
#                        takes v over once node 1 is fenced and writes;
#                        the routes go; reads through node 1
#   dep_freeze           one round: a write of node 1 in flight at the
#                        storage (tgtd stopped 30 ms around it) as node 1's
#                        cowd is SIGSTOPped; node 2 asks for v (a handoff
#                        request node 1 has pending when it wakes), fences
#                        node 1 (cowctl fence 1), takes over and writes;
#                        SIGCONT after DEP_FROZEN_S; reads through node 1
#   dep_restart          SIGTERM node 1's cowd (timed), start it again and
#                        give v back to node 1 (node 2 detaches)
#
# After a round (all times CLOCK_MONOTONIC ns, one clock for every host):
#   DEP_T_FAULT          the cut / the stop
#   DEP_LEASE_END        DEP_T_FAULT + the lease: no acknowledgement of the
#                        old owner may come later
#   DEP_B_FIRST          the new owner's first acknowledgement
#   DEP_LATE_LEASE       the old owner's acknowledgements after DEP_LEASE_END
#   DEP_LATE_TAKEOVER    ... after DEP_B_FIRST
#   DEP_A_LAST           its last acknowledgement
#   DEP_STALE            reads the old owner answered after the takeover
#   DEP_READS            reads tried through it then
# dep_check_data checks the data (the last acknowledged record of each
# block is there; the result in $DEP_LOG.check).
# and after dep_restart: DEP_STOP_MS (SIGTERM to exit; SIGKILL after 10 s).
DEP_RATE=200                 # writes per second (each writer)
DEP_BLOCKS=64                # records cycle over 64 blocks (4 chunks)
DEP_FROZEN_S=${DEP_FROZEN_S:-6}
DEP_SLACK_NS=100000000       # scheduling of the writer's own timestamp
DEP_ROUND=0

dep_writer=$top_srcdir/tests/nbdwriter.py
dep_mono() { python3 -c 'import time; print(time.monotonic_ns())'; }
dep_sock() { echo "nbd+unix:///?socket=$(lab_dir "$1")/run/v.sock"; }
dep_st() { lab_cowctl "$1" --json status v; }
dep_is() { dep_st "$1" | jq -e "$2" >/dev/null; }

dep_setup() {
  DEP_LEASE_MS=$1
  lab_small_cluster
  # The deposed owner is examined fenced (reads refused, SIGTERM, writes
  # not sent): it stays fenced rather than starting over.
  printf '[cowd]\nquorum-loss-timeout-ms = %s\nafter-fence = stay\n' "$DEP_LEASE_MS" > "$LAB_DIR/cowd.conf"
  declare -gA dep_cowd
  local n
  for n in 1 2 3; do dep_cowd[$n]=$(lab_cowd $n --config "$LAB_DIR/cowd.conf"); done
  lab_cowctl 1 create v --base "$(lab_iscsi_url 0 "$LAB_IQN" 1)" \
    --cow "$(lab_iscsi_url 0 "$LAB_IQN" 2)" >/dev/null
  lab_cowctl 1 attach v >/dev/null
  wait_until 10 dep_is 1 '.owner == 1 and .state == "active"' || fail "node 1 does not own v"
  wait_until 10 dep_is 2 '.owner == 1' || fail "node 2 does not know v"
  new_image "$LAB_DIR/cow3.lun" 40M zero
  lab_lun 0 1 "$LAB_IQN" 3 "$LAB_DIR/cow3.lun"
  lab_cowctl 1 create w --commit flush --base "$(lab_iscsi_url 0 "$LAB_IQN" 1)" \
    --cow "$(lab_iscsi_url 0 "$LAB_IQN" 3)" >/dev/null
  lab_cowctl 1 attach w >/dev/null
}

# A write to a new chunk of w, never flushed: a bit left to commit.
dep_dirty_w() {
  wait_until 20 sh -c "nsenter -t ${_lab_init_pid[1]} -n -m -- cowctl --run-dir '$(lab_dir 1)/run' --json status w | jq -e '.owner == 1 and .state == \"active\"'" \
    || fail "node 1 does not own w: $(lab_cowctl 1 --json status w)"
  python3 -c 'import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"w" * 4096, int(sys.argv[2]) * 65536); h.shutdown()' \
    "nbd+unix:///?socket=$(lab_dir 1)/run/w.sock" "$DEP_ROUND" \
    || fail "writing w on node 1 failed"
}

# Start the old owner's writer; wait until it is acknowledged.
dep_start_writer() {
  DEP_ROUND=$((DEP_ROUND + 1))
  DEP_LOG=$LAB_DIR/round$DEP_ROUND
  DEP_LOGLINE=$(wc -l < "$(lab_dir 1)/log/cowd.log")
  dep_dirty_w
  python3 "$dep_writer" stream "$DEP_LOG.a" "$(dep_sock 1)" a$DEP_ROUND $DEP_RATE 60 \
    $DEP_BLOCKS 2>"$DEP_LOG.a.err" & dep_wa=$!
  wait_until 10 grep -q "^ack" "$DEP_LOG.a" || fail "the writer on node 1 got no acknowledgement"
  sleep 0.5
}

# Node 2 owns v (it asked before, or asks now); its writer runs 2 s.
dep_takeover() {
  wait_until 20 dep_is 2 '.owner == 2 and .state == "active"' \
    || fail "node 2 did not take v over: $(dep_st 2)"
  python3 "$dep_writer" stream "$DEP_LOG.b" "$(dep_sock 2)" b$DEP_ROUND $DEP_RATE 2 \
    $DEP_BLOCKS 2>"$DEP_LOG.b.err" || fail "node 2's writer failed"
  DEP_B_FIRST=$(awk '$1 == "ack" {print $4; exit}' "$DEP_LOG.b")
  [ -n "$DEP_B_FIRST" ] || fail "node 2 acknowledged no write"
}

# Reads through node 1 (the deposed owner) for 1 s; then the analysis.
dep_finish() {
  wait_until 20 dep_log1 -q "fence: this node was fenced" \
    || fail "node 1 does not know it was fenced: $(grep cluster: "$(lab_dir 1)/log/cowd.log" | tail -5)"
  python3 "$dep_writer" reads "$DEP_LOG.r" "$(dep_sock 1)" 100 1 $DEP_BLOCKS 2>/dev/null || true
  sleep 0.5
  kill "$dep_wa" 2>/dev/null; wait "$dep_wa" 2>/dev/null || true
  DEP_LEASE_END=$((DEP_T_FAULT + DEP_LEASE_MS * 1000000))
  DEP_LATE_LEASE=$(awk -v t=$((DEP_LEASE_END + DEP_SLACK_NS)) '$1 == "ack" && $4 > t' "$DEP_LOG.a" | wc -l)
  DEP_LATE_TAKEOVER=$(awk -v t="$DEP_B_FIRST" '$1 == "ack" && $4 > t' "$DEP_LOG.a" | wc -l)
  DEP_A_LAST=$(awk '$1 == "ack" {t = $4} END {print t}' "$DEP_LOG.a")
  DEP_STALE=$(grep -c "^rok" "$DEP_LOG.r" || true)
  DEP_READS=$(grep -c "^r" "$DEP_LOG.r" || true)
}

# The last acknowledged record of every block is what node 2 reads there.
dep_check_data() {
  python3 "$dep_writer" check "$(dep_sock 2)" $DEP_BLOCKS "$DEP_LOG.a" "$DEP_LOG.b" \
    > "$DEP_LOG.check" 2>&1
}

# grep in node 1's log of this round
dep_log1() { tail -n +$((DEP_LOGLINE + 1)) "$(lab_dir 1)/log/cowd.log" | grep "$@"; }

dep_ms() { echo $(( ($1 - DEP_T_FAULT) / 1000000 )); }

dep_report() {
  echo "   fault at 0 ms; node 1 acknowledged last at $(dep_ms "$DEP_A_LAST") ms (lease end" \
       "$DEP_LEASE_MS ms); node 2 first at $(dep_ms "$DEP_B_FIRST") ms; node 1 late:" \
       "$DEP_LATE_LEASE after the lease, $DEP_LATE_TAKEOVER after the takeover;" \
       "reads answered by node 1 after it: $DEP_STALE of $DEP_READS"
}

dep_partition() {
  local ns=$LAB_ID-h1
  dep_start_writer
  # Both routes at once; the fault's time is when they are in place.
  printf 'route add blackhole %s/32\nroute add blackhole %s/32\n' "$(lab_ip 2)" \
    "$(lab_ip 3)" | ip -n "$ns" -batch -
  DEP_T_FAULT=$(dep_mono)
  wait_until 20 dep_is 2 '.cluster_state == "unowned"' || fail "node 1 was not fenced: $(dep_st 2)"
  lab_cowctl 2 attach v >/dev/null
  dep_takeover
  ip -n "$ns" route del blackhole "$(lab_ip 2)/32"
  ip -n "$ns" route del blackhole "$(lab_ip 3)/32"
  dep_finish
}

dep_freeze() {
  dep_start_writer
  local tgt=$_lab_tgt_pid
  kill -STOP "$tgt"; sleep 0.03
  DEP_T_FAULT=$(dep_mono)
  kill -STOP "${dep_cowd[1]}"
  kill -CONT "$tgt"
  lab_cowctl 2 attach v --incoming >/dev/null
  wait_until 10 dep_is 2 '.cluster_state == "handing-off"' || fail "node 2 did not ask for v: $(dep_st 2)"
  lab_cowctl 2 fence 1 >/dev/null || fail "cowctl fence 1 failed"
  dep_takeover
  local wake=$((DEP_T_FAULT + DEP_FROZEN_S * 1000000000 - $(dep_mono)))
  [ $wake -gt 0 ] && sleep "$(printf '%d.%09d' $((wake / 1000000000)) $((wake % 1000000000)))"
  kill -CONT "${dep_cowd[1]}"
  dep_finish
  sleep 1
  DEP_STATE=$(dep_st 1 | jq -r .state)
}

# SIGTERM to exit of node 1's cowd; then node 1 serves v again.
dep_restart() {
  local pid=${dep_cowd[1]} t0 t1
  t0=$(lab_uptime_ms)
  kill -TERM "$pid"
  local end=$((SECONDS + 10))
  while lab_alive "$pid" && [ $SECONDS -lt $end ]; do sleep 0.01; done
  t1=$(lab_uptime_ms)
  DEP_STOP_MS=$((t1 - t0))
  if lab_alive "$pid"; then     # given up after 10 s
    kill -9 "$pid"
    while lab_alive "$pid"; do sleep 0.01; done
  fi
  lab_cowctl 2 detach v >/dev/null
  wait_until 10 dep_is 2 '.cluster_state == "unowned"' || fail "node 2 did not release v"
  dep_cowd[1]=$(lab_cowd 1 --config "$LAB_DIR/cowd.conf")
  lab_cowctl 1 attach v >/dev/null 2>&1 || true
  wait_until 20 dep_is 1 '.owner == 1 and .state == "active"' || fail "node 1 does not own v again: $(dep_st 1)"
}
