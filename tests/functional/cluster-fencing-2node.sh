#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Fencing in a two-node cluster (corosync two_node, which implies
# wait_for_all): the survivor of an owner crash stays quorate, preempts
# the dead node's key on the real tgtd LUN, takes the volume over, and a
# client that reconnects there finds every write it had acknowledged.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires python3 tgtd jq cowd cowctl
python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd"; exit 77; }
pr="$top_builddir/fence/cowfence-pr"
writer="$top_srcdir/tests/nbdwriter.py"

lab_init "c2$(printf %04x $((RANDOM)))"
lab_two_node_cluster
iqn=$LAB_IQN
declare -A cowd_pid
for n in 1 2; do cowd_pid[$n]=${lab_cowd_pid[$n]}; done
sock() { echo "nbd+unix:///?socket=$(lab_dir "$1")/run/$2.sock"; }
st() { lab_cowctl "$1" --json status "$2"; }
is() { st "$1" "$2" | jq -e "$3" >/dev/null; }
keys() { lab_exec 2 "$pr" --initiator iqn.2024-01.org.cowherd:probe --json "$(lab_iscsi_url 0 $iqn 2)" read-keys; }

lab_cowctl 1 create v --base "$(lab_iscsi_url 0 $iqn 1)" --cow "$(lab_iscsi_url 0 $iqn 2)"
lab_cowctl 1 attach v >/dev/null
wait_until 10 is 1 v '.owner == 1 and .state == "active"' || fail "node 1 does not own v"
keys | jq -e '[.keys[].nodeid] | index(1) != null' >/dev/null || fail "node 1 is not registered: $(keys)"
python3 "$writer" write "$LAB_DIR/v.log" 2000 0 "$(sock 1 v)" "$(sock 2 v)" 2>"$LAB_DIR/writer.err" & w=$!
wait_until 20 sh -c "[ \$(wc -l < '$LAB_DIR/v.log' 2>/dev/null || echo 0) -ge 200 ]" || fail "the writer did not get going"
lab_kill 1 "${cowd_pid[1]}"; lab_kill 1 "$(lab_corosync_pid 1)"
echo "== node 1 killed after $(wc -l < "$LAB_DIR/v.log") acknowledged writes"
lab_cowctl 2 attach v --incoming >/dev/null || fail "node 2 cannot wait for v"
wait_until 20 is 2 v '.owner == 2 and .state == "active"' || fail "node 2 did not take over: $(st 2 v)"
lab_exec 2 corosync-quorumtool -s | grep -q "Quorate: *Yes" || fail "the survivor lost quorum"
keys | jq -e '[.keys[].nodeid] | index(1) == null' >/dev/null || fail "node 1's key survived: $(keys)"
wait $w || fail "the writer failed: $(tail -3 "$LAB_DIR/writer.err")"
python3 "$writer" verify "$LAB_DIR/v.log" 0 "$(sock 2 v)" || fail "an acknowledged write was lost"
lab_cowctl 2 fence status
pass
