#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A partition in a two_node cluster (issue 16): both halves stay quorate,
# so the owner keeps its quorum and lease while the other node fences it.
#  - node 1 owns v; its link is cut; a client's write on node 1 waits for
#    the iSCSI session (the storage is out of reach too);
#  - node 2, quorate alone, fences node 1 (READ KEYS: node 1's key gone),
#    takes v and writes the same block;
#  - node 1's iSCSI connections break (ss -K, as TCP would give up in a
#    longer partition); the link comes back; node 1's session logs in again
#    and finds its key gone.  Node 1 kept quorum and lease throughout (its lease, 15 s, is
#    longer than the new ring takes to form), but lost its majority:
#    it must take the lost key for a fence (not for a target that forgot
#    its registrations), stop as fenced and not register again, and the
#    client's write that waited must fail, never reach the LUN.
#  - then node 1 comes back by itself (issue 16: the loser of a two_node
#    fence race rejoins after the heal): it asks for the group's table,
#    closes its volumes and attaches them again like a restarted agent
#    (v, node 2's now, is left to the operator), and takes v back by
#    handoff with node 2's data, same cowd process;
#  - a second partition with nothing owned: both halves keep quorum and
#    each defines a volume; after the heal node 2 takes node 1's table
#    (the lower id) and defines its own volume again: both have both.
# Failed before: node 1 took the lost key for a restarted target,
# registered again and wrote its waiting block over node 2's; and a
# fenced agent stayed fenced (and on its own table) until restarted.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq ss cowd cowctl
pr="$top_builddir/fence/cowfence-pr"

lab_init "cp$(printf %04x $((RANDOM)))"
# A lease longer than corosync takes to form the new ring after the cut
# (token + consensus): node 1 keeps quorum and lease without a break.
printf '[cowd]\nquorum-loss-timeout-ms = 15000\n' > "$LAB_DIR/cowd.conf"
lab_two_node_cluster --config "$LAB_DIR/cowd.conf"
url() { lab_iscsi_url 0 "$LAB_IQN" "$1"; }
keys() { lab_exec 2 "$pr" --initiator iqn.2024-01.org.cowherd:probe --json "$(url 2)" read-keys; }
has_key() { keys | jq -e "[.keys[].nodeid] | index($1) != null" >/dev/null; }
fenced() { lab_cowctl "$1" --json fence status | jq -e '.fenced == true' >/dev/null; }

lab_cowctl 1 create v --base "$(url 1)" --cow "$(url 2)"
lab_cowctl 1 attach v --wait-owned 20 >/dev/null || fail "node 1 did not take v"
qio_ok "$(lab_sock 1 v)" "write on node 1 failed" "write -P 0x1a 0 64k" "write -P 0x1b 1M 64k"
has_key 1 || fail "node 1 is not registered: $(keys)"

echo "== node 1's link is cut; a write on node 1 waits for its session"
lab_link_down 1
cleanup_fn lab_link_up 1
(rc=0; timeout 60 qemu-io -f raw "$(lab_sock 1 v)" -c "write -P 0x99 1M 64k" \
   > "$LAB_DIR/late.out" 2>&1 || rc=$?; echo $rc > "$LAB_DIR/late.rc") &
late=$!
wait_until 30 lab_nodes_is 2 '.quorate and (.members | length == 1)' \
  || fail "node 2 is not quorate alone: $(lab_cowctl 2 --json nodes)"
lab_nodes_is 1 '.quorate' || fail "node 1 lost quorum in a two_node partition: $(lab_cowctl 1 --json nodes)"

echo "== node 2 fences node 1, takes v and writes the same block"
lab_cowctl 2 attach v --incoming --wait-owned 30 >/dev/null \
  || fail "node 2 did not take v: $(lab_status 2 v)"
has_key 1 && fail "node 1's key survived the fence: $(keys)"
qio_ok "$(lab_sock 2 v)" "node 2 cannot write v" "write -P 0x2b 1M 64k"

echo "== node 1's iSCSI connections break; the link comes back; node 1 logs in again"
# A partition that lasts makes TCP give up on node 1's connections to the
# target; here they are reset (ss -K) while the link is still down.
lab_exec 1 ss -K dst "$(lab_ip 0)" dport = 3260 >/dev/null 2>&1
wait_until 10 lab_log_has 1 "iscsi: .*/2: session lost" || fail "node 1's session to v's LUN did not break"
lab_link_up 1
# (node 1 may be fenced and back already: after-fence = rejoin, and the
# group's table can come within the second; the log says it stopped)
stopped() { lab_log_has 1 "fence: this node was fenced (its key was removed from a LUN)"; }
relogged() { fenced 1 || stopped || lab_log_has 1 "registered key .* on the new session"; }
wait_until 40 relogged || fail "node 1's session did not log in again: $(grep -E 'fence:|iscsi:' "$(lab_dir 1)/log/cowd.log" | tail -6)"
wait "$late" || true
rc=$(cat "$LAB_DIR/late.rc")
echo "   node 1's waiting write: exit $rc, $(tr '\n' ' ' < "$LAB_DIR/late.out")"
qio_ok "$(lab_sock 2 v)" "node 1's late write reached v, or node 2's data is gone" \
  "read -P 0x2b 1M 64k" "read -P 0x1a 0 64k"
if [ "$rc" = 0 ] && grep -q "^wrote" "$LAB_DIR/late.out" && ! grep -q "failed" "$LAB_DIR/late.out"; then
  fail "node 1 acknowledged the write that waited through the partition"
fi
stopped || fail "node 1 did not stop as fenced: $(grep -E 'fence:|iscsi:' "$(lab_dir 1)/log/cowd.log" | tail -6)"
lab_log_has 1 "this node has not held quorum and its lease without a break since it registered there: another node fenced it" \
  || fail "node 1 did not say why it stopped: $(grep -E 'fence:|iscsi:' "$(lab_dir 1)/log/cowd.log" | tail -6)"
! lab_log_has 1 "it registers again" || fail "node 1 registered again: $(grep 'fence:' "$(lab_dir 1)/log/cowd.log" | tail -3)"
lab_log_has 1 "cluster: 1 of 2 members are left after nodes went away, no majority" \
  || fail "node 1 did not note that it lost its majority"
has_key 1 && fail "node 1 registered on v's LUN again: $(keys)"
echo "   node 2's data stands; node 1 is fenced and not registered"

echo "== node 1 comes back by itself: the group's table, new sessions, v by handoff"
wait_until 30 lab_log_has 1 "fence: node 1 has the group's table again after it was fenced: its volumes were closed, and it attaches them again as a restarted agent would" \
  || fail "node 1 did not recover: $(grep -E 'fence:|cluster:' "$(lab_dir 1)/log/cowd.log" | tail -6)"
! fenced 1 || fail "node 1 still says it is fenced"
lab_vol_is 1 v '.owner == 2' || fail "node 1 does not have node 2's table: $(lab_status 1 v)"
# As after a restart: a volume another node owns now is not attached
# again by itself (that would ask for it), the operator moves it back.
wait_until 10 lab_vol_is 1 v '.state == "failed" and (.error | startswith("volume v is owned by node 2; attach it with --incoming"))' \
  || fail "node 1 did not try v again as a restarted agent would: $(lab_status 1 v)"
[ "$(cat /proc/${lab_cowd_pid[1]}/stat 2>/dev/null | cut -d' ' -f1)" = "${lab_cowd_pid[1]}" ] \
  || fail "node 1's cowd is not the one started before"
lab_cowctl 1 attach v --incoming --wait-owned 30 >/dev/null \
  || fail "node 1 did not take v back by handoff: $(lab_status 1 v)"
has_key 1 || fail "node 1 did not register again on its new session: $(keys)"
qio_ok "$(lab_sock 1 v)" "node 1 after its recovery: v's data or a write" \
  "read -P 0x2b 1M 64k" "read -P 0x1a 0 64k" "write -P 0x3c 2M 64k" "read -P 0x3c 2M 64k"
for n in 1 2; do lab_vol_is $n v '.owner == 1' || fail "node $n disagrees on v's owner: $(lab_status $n v)"; done
echo "   node 1 serves v again with node 2's data; its cowd was not restarted"

echo "== both halves keep quorum and define volumes apart; after the heal both have both"
# Nothing is owned, so nobody fences: each side keeps its own table.  At
# the merge node 2 takes node 1's (the lower id) and defines fb again.
lab_cowctl 1 detach v
for f in fa fb; do truncate -s 8M "$LAB_DIR/$f-base.img"; truncate -s 9M "$LAB_DIR/$f-cow.img"; done
lab_link_down 1
wait_until 30 lab_nodes_is 2 '.quorate and (.members | length == 1)' \
  || fail "node 2 is not quorate alone: $(lab_cowctl 2 --json nodes)"
wait_until 30 lab_nodes_is 1 '.quorate and (.members | length == 1)' \
  || fail "node 1 is not quorate alone: $(lab_cowctl 1 --json nodes)"
lab_cowctl 1 create fa --base "$LAB_DIR/fa-base.img" --cow "$LAB_DIR/fa-cow.img" >/dev/null
lab_cowctl 2 create fb --base "$LAB_DIR/fb-base.img" --cow "$LAB_DIR/fb-cow.img" >/dev/null
lab_link_up 1
lab_wait_members 1 2 30 || fail "the two halves did not merge"
names() { lab_cowctl "$1" --json list | jq -c '[.[].name] | sort'; }
both_know() { [ "$(names 1)" = '["fa","fb","v"]' ] && [ "$(names 2)" = '["fa","fb","v"]' ]; }
wait_until 20 both_know || fail "the halves did not exchange their definitions: node 1 $(names 1), node 2 $(names 2)"
lab_log_has 2 "cluster: both sides of the partition kept quorum and a table; node 1's side has the lower id: this node takes its table" \
  || fail "node 2 did not say it took node 1's table"
! lab_log_has 1 "node 2's side has the lower id" || fail "node 1 took node 2's table too"
for n in 1 2; do lab_vol_is $n v '.owner == 0 or .owner == null' || fail "node $n: v's owner after the merge: $(lab_status $n v)"; done
echo "   both nodes list $(names 1)"
pass
