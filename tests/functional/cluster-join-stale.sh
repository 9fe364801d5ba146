#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A join whose lowest old member cannot send the table (found by
# tests/soak/soak.sh): node 2 owns v and is fenced by hand while it stays a
# member (its agent is fenced, its table stale); node 1's cowd restarts and
# joins.  The lowest member that was there before the join is node 2, which
# sends no table; node 3 must send it, or node 1 waits for ever (and at the
# next join node 1, unsynced, is the lowest old member in turn: the whole
# cluster stayed unsynced in the soak).  Node 1 must be synced and know v;
# then node 2's cowd restarts and is synced too, and v can be attached.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl

lab_init "cj$(printf %04x $((RANDOM)))"
lab_small_cluster
declare -A cowd_pid
# A fenced agent that stays fenced (and stale) while it stays a member.
printf '[cowd]\nafter-fence = stay\n' > "$LAB_DIR/cowd.conf"
for n in 1 2 3; do cowd_pid[$n]=$(lab_cowd $n --config "$LAB_DIR/cowd.conf"); done
st() { lab_cowctl "$1" --json status v; }
is() { st "$1" | jq -e "$2" >/dev/null; }
synced() { lab_cowctl "$1" --json nodes | jq -e '.synced and (.members | length == 3)' >/dev/null; }
knows_v() { lab_cowctl "$1" --json list | jq -e 'map(.name) | index("v") != null' >/dev/null; }

lab_cowctl 1 create v --base "$(lab_iscsi_url 0 "$LAB_IQN" 1)" \
  --cow "$(lab_iscsi_url 0 "$LAB_IQN" 2)" >/dev/null
wait_until 10 knows_v 2 || fail "node 2 does not know v"
lab_cowctl 2 attach v >/dev/null
wait_until 10 is 2 '.owner == 2 and .state == "active"' || fail "node 2 does not own v: $(st 2)"

echo "== node 2 is fenced by hand and stays a member"
lab_cowctl 3 fence 2 >/dev/null || fail "cowctl fence 2 failed"
wait_until 10 sh -c "grep -q 'crit: fence: this node was fenced' '$(lab_dir 2)/log/cowd.log'" \
  || fail "node 2's agent does not know it was fenced"

echo "== node 1's cowd restarts: the lowest old member (node 2) is stale"
kill_pid "${cowd_pid[1]}" 15
cowd_pid[1]=$(lab_cowd 1 --config "$LAB_DIR/cowd.conf")
wait_until 20 synced 1 || fail "node 1 got no table after joining: $(lab_cowctl 1 --json nodes)"
knows_v 1 || fail "node 1 is synced but does not know v"
grep -q "no member sent the table to the nodes that joined" "$(lab_dir 3)/log/cowd.log" \
  || fail "node 3 did not say why it sent the table"
echo "   node 1 synced: $(grep -o 'cluster: no member sent the table[^;]*; node [0-9] sends it' "$(lab_dir 3)/log/cowd.log" | tail -1)"

echo "== node 2's cowd restarts too"
kill_pid "${cowd_pid[2]}" 15
cowd_pid[2]=$(lab_cowd 2 --config "$LAB_DIR/cowd.conf")
wait_until 20 synced 2 || fail "node 2 got no table after its restart: $(lab_cowctl 2 --json nodes)"
lab_cowctl 1 attach v --incoming >/dev/null
wait_until 20 is 1 '.owner == 1 and .state == "active"' || fail "node 1 cannot take v: $(st 1)"
qio_ok "nbd+unix:///?socket=$(lab_dir 1)/run/v.sock" "node 1 cannot write v" "write -P 0x5a 0 64k" "read -P 0x5a 0 64k"
echo "   every node synced; node 1 serves v"
pass
