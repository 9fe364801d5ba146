#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A storage target restarted without persisting its reservations (tgtd
# keeps them in memory) loses every registration, and its PR generation
# starts again at 0.  The agents must ride through: on the new session each
# finds its key gone but the generation gone back, holds its lease in a
# quorate group, and registers again (not "fenced": before, every agent
# with a volume on the target stopped as fenced).  Then the volume keeps
# serving on its owner with its data, both nodes' keys are on the LUN, a
# handoff works, and fencing a node that crashes still works afterwards.
# Before the restart, node 3's corosync goes and comes back: the ring
# changes break the leases, and node 1 confirms its key (READ KEYS) once
# quorum and the lease are back; without that it stopped as fenced at the
# target restart (found by the soak, where a power-off came first).  Node
# 2 had v open before and detached it: it attaches v again afterwards
# without taking its lost key for a fence (found by the soak too).
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl

lab_init "ct$(printf %04x $((RANDOM)))"
lab_small_cluster
iqn=$LAB_IQN
declare -A cowd_pid
for n in 1 2; do cowd_pid[$n]=$(lab_cowd $n); done
lab_cowctl 1 create v --base "$(lab_iscsi_url 0 $iqn 1)" --cow "$(lab_iscsi_url 0 $iqn 2)" >/dev/null
knows() { lab_cowctl 2 --json list | grep -q '"v"'; }
wait_until 10 knows || fail "node 2 does not know v"
sock() { echo "nbd+unix:///?socket=$(lab_dir "$1")/run/v.sock"; }
st() { lab_cowctl "$1" --json status v; }
lab_cowctl 1 attach v --wait-owned 20 >/dev/null || fail "node 1 did not take v"
qio_ok "$(sock 1)" "first write" "write -P 0x41 0 1M"
# Node 2 registers too: it takes v, hands it back and detaches it; when it
# attaches v again after the target restart its login is a first one (its
# key gone then is no news of a fence: nobody fences a node on the LUN of
# a volume it does not own).
lab_cowctl 2 attach v --incoming --wait-owned 20 >/dev/null || fail "node 2 did not take v"
lab_cowctl 2 migrate v --to n1
lab_cowctl 1 attach v --wait-owned 20 >/dev/null || fail "node 1 did not take v back"
lab_cowctl 2 detach v >/dev/null || fail "node 2 cannot detach v"
fenced() { lab_cowctl "$1" --json fence status | jq -e '.fenced == true' >/dev/null; }

echo "== node 3's corosync dies and comes back: node 1 loses its lease meanwhile"
# corosync forms the new ring after token + consensus, longer than the
# lease: every membership change breaks the lease, and a registration made
# before it is not trusted across a target restart unless the node
# confirms its key once quorum and the lease are back.
confirmed() { [ "$(grep -c "fence: key confirmed on 1 of 1 LUN now that quorum and the lease are back" "$(lab_dir "$1")/log/cowd.log")" -ge "$2" ]; }
lab_kill 3 "$(lab_corosync_pid 3)"
for n in 1; do
  wait_until 20 lab_log_has $n "cluster: corosync delivered no heartbeat of node $n for" \
    || fail "node $n's lease did not break when node 3 went away"
  wait_until 20 confirmed $n 1 || fail "node $n did not confirm its key: $(grep 'fence:' "$(lab_dir $n)/log/cowd.log" | tail -3)"
done
lab_corosync_restart 3
lab_wait_members 1 3 30 || fail "node 3's corosync did not come back"
# A join may or may not break the lease: one confirmation per break.
breaks() { grep -c "cluster: corosync delivered no heartbeat of node $1 for" "$(lab_dir "$1")/log/cowd.log"; }
for n in 1; do
  wait_until 20 lab_nodes_is $n '.quorate and (.members | length == 2)' || fail "node $n is not quorate again"
  wait_until 20 confirmed $n "$(breaks $n)" || fail "node $n did not confirm its key after its last lease break: $(grep 'fence:' "$(lab_dir $n)/log/cowd.log" | tail -3)"
  echo "   node $n: $(breaks $n) lease break(s), key confirmed after each"
done

echo "== tgtd killed and started again: every registration is gone"
kill -9 "$_lab_tgt_pid"
wait_until 10 sh -c "! kill -0 $_lab_tgt_pid" || fail "tgtd did not die"
sleep 1
lab_storage 0
lab_lun 0 1 "$iqn" 1 "$LAB_DIR/base.lun"
lab_lun 0 1 "$iqn" 2 "$LAB_DIR/cow.lun"
# The owner's next write logs in again and registers again.
qio_ok "$(sock 1)" "a write after the target restart" "write -P 0x42 1M 64k"
for n in 1 2; do
  ! fenced $n || fail "node $n stopped as fenced after the target restart: $(grep 'fence:' "$(lab_dir $n)/log/cowd.log" | tail -3)"
done
grep -q "the target lost its registrations (restarted without persisting them); it registers again" \
  "$(lab_dir 1)/log/cowd.log" || fail "node 1 did not log why it registered again: $(grep 'fence:' "$(lab_dir 1)/log/cowd.log" | tail -3)"
# The write went through the CoW's session; the base's logs in again by
# itself (reconnecting until then).
serves1() { st 1 | jq -e '.owner == 1 and .state == "active"' >/dev/null; }
wait_until 20 serves1 || fail "node 1 no longer serves v: $(st 1)"
qio_ok "$(sock 1)" "data lost across the target restart" "read -P 0x41 0 1M" "read -P 0x42 1M 64k"
echo "   node 1 registered again and serves v with its data"

echo "== a handoff to node 2 after the restart"
lab_cowctl 2 attach v --incoming --wait-owned 20 >/dev/null || fail "node 2 did not take v over"
qio_ok "$(sock 2)" "data differs on node 2" "read -P 0x41 0 1M" "read -P 0x42 1M 64k"
! fenced 2 || fail "node 2 is fenced after the handoff"

echo "== fencing still works: node 2 (the owner) crashes, node 1 fences it and takes v"
lab_kill 2 "${cowd_pid[2]}"
lab_kill 2 "$(lab_corosync_pid 2)"
lab_cowctl 1 attach v --incoming --wait-owned 30 >/dev/null \
  || fail "node 1 did not take v after node 2 crashed: $(st 1)"
grep -q "fenced on" "$(lab_dir 1)/log/cowd.log" || fail "node 1 logged no fence of node 2"
qio_ok "$(sock 1)" "data lost across the failover" "read -P 0x41 0 1M" "read -P 0x42 1M 64k"
echo "   node 2 fenced, node 1 serves v with its data"
pass
