#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The owner's host restarts corosync and cowd before the group has fenced
# it (issue 16; the soak left volumes in `fencing` for good this way):
#  - node 1 owns v; the fence-command fails for now, so node 2, the
#    fencer, cannot finish fencing node 1 when its corosync and cowd are
#    killed, and retries;
#  - node 1's corosync and a new cowd come back while v is still held in
#    fencing for node 1.  Node 1 is the lowest member, but it does not
#    fence itself: the new agent waits, and says so;
#  - the fence-command works again: node 2 fences node 1's previous agent
#    (READ KEYS shows node
#    1's key gone); the new agent on node 1 is not fenced by that: it
#    attaches v again by itself (v was attached there), registers its key
#    again and serves v with every acknowledged byte intact;
#  - a second round in which the new agent opens v while it waits (attach
#    --incoming), so that the fence removes the new agent's own
#    registration too, and it registers again.
# Failed before the fix: node 1, the lowest member again, took itself for
# the fencer of node 1 and fenced its own new agent.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl
pr="$top_builddir/fence/cowfence-pr"

lab_init "fr$(printf %04x $((RANDOM)))"
lab_small_cluster
declare -A cowd_pid
# Every node's fence-command fails while $LAB_DIR/fence-fails exists.
printf '[cowd]\nfence-command = test ! -e %s/fence-fails\n' "$LAB_DIR" > "$LAB_DIR/cowd.conf"
for n in 1 2 3; do cowd_pid[$n]=$(lab_cowd $n --config "$LAB_DIR/cowd.conf"); done
url() { lab_iscsi_url 0 "$LAB_IQN" "$1"; }
keys() { lab_exec 3 "$pr" --initiator iqn.2024-01.org.cowherd:probe --json "$(url 2)" read-keys; }
has_key() { keys | jq -e "[.keys[].nodeid] | index($1) != null" >/dev/null; }

# One round: node 1 owns v with data; fencing fails; node 1's corosync
# and cowd die and come back; fencing works again and node 2 fences node
# 1's previous agent.  With incoming=1, node 1's new agent asks for v (attach
# --incoming) while v waits in fencing: it opens v and registers on v's
# LUN, the fence removes that key (the previous agent's key is the same),
# and the agent registers again.  With incoming=0 the new agent cannot
# attach v at start and attaches it by itself after the fence.
round() {
  local incoming=$1 pat=$2 log
  log=$(lab_dir 1)/log/cowd.log
  echo "== round $((incoming + 1)): fencing fails; node 1's corosync and cowd die"
  wait_until 20 lab_vol_is 1 v '.owner == 1 and .state == "active"' || fail "node 1 does not own v: $(lab_status 1 v)"
  qio_ok "$(lab_sock 1 v)" "write on node 1 failed" "write -P $pat 0 64k"
  has_key 1 || fail "node 1 is not registered on v's CoW LUN: $(keys)"
  : > "$LAB_DIR/fence-fails"
  lab_kill 1 "${cowd_pid[1]}"
  lab_kill 1 "$(lab_corosync_pid 1)"
  wait_until 20 lab_vol_is 3 v '.cluster_state == "fencing"' || fail "v is not held in fencing: $(lab_status 3 v)"
  wait_until 20 lab_log_has 2 "fence: cannot fence node 1: fence-command" \
    || fail "node 2 did not try to fence node 1"
  mv "$log" "$log.$incoming"

  echo "== node 1 comes back before anyone fenced it"
  lab_corosync_restart 1
  lab_wait_quorate 1 30 || fail "node 1's corosync did not rejoin"
  cowd_pid[1]=$(lab_cowd 1 --config "$LAB_DIR/cowd.conf")
  wait_until 30 lab_nodes_is 1 '.synced and (.members | length == 3)' \
    || fail "node 1's new cowd did not sync: $(lab_cowctl 1 --json nodes)"
  wait_until 10 lab_log_has 1 "fence: the group holds volumes of node 1's previous agent in fencing; this agent waits for another node to fence it, then registers again" \
    || fail "node 1's new agent did not say it waits: $(grep fence: "$log")"
  if [ "$incoming" = 1 ]; then
    lab_cowctl 1 attach v --incoming >/dev/null || fail "node 1 cannot wait for v"
    wait_until 10 lab_log_has 1 "fence: .*/2: registered key" || fail "node 1 did not open v while waiting"
  fi
  sleep 2                               # a wrong fencer would have started by now
  ! lab_log_has 1 "fence: fencing node 1" || fail "node 1 tried to fence itself"
  lab_vol_is 1 v '.cluster_state == "fencing"' || fail "v left fencing while fencing failed: $(lab_status 1 v)"
  echo "   node 1's new agent waits: $(lab_status 1 v | jq -c '{owner,cluster_state,state}')"

  echo "== fencing works again: node 2 fences node 1's previous agent"
  rm "$LAB_DIR/fence-fails"
  wait_until 30 lab_vol_is 3 v '.cluster_state == "unowned" or .owner == 1' || fail "node 1 was not fenced: $(lab_status 3 v)"
  fenced2() { [ "$(grep -c "fence: node 1 fenced on 1 LUN" "$(lab_dir 2)/log/cowd.log")" -gt "$incoming" ]; }
  wait_until 10 fenced2 || fail "node 2 did not fence node 1"
  wait_until 10 lab_log_has 1 "fence: that was this node's previous agent; this one was not fenced and registers again" \
    || fail "node 1's new agent did not take the fence for its predecessor's"
  ! lab_log_has 1 "this node was fenced" || fail "node 1's new agent stopped as fenced"

  echo "== node 1's new agent serves v again, data intact"
  wait_until 20 lab_vol_is 1 v '.owner == 1 and .state == "active"' \
    || fail "node 1 did not take v again: $(lab_status 1 v); $(grep -E 'fence|attach' "$log" | tail -5)"
  has_key 1 || fail "node 1's new agent did not register again: $(keys)"
  qio_ok "$(lab_sock 1 v)" "node 1's new agent: v's data or a write" "read -P $pat 0 64k" \
    "write -P 0x5b 64k 64k" "read -P 0x5b 64k 64k"
  for n in 2 3; do lab_vol_is $n v '.owner == 1' || fail "node $n disagrees on v's owner: $(lab_status $n v)"; done
}

lab_cowctl 1 create v --base "$(url 1)" --cow "$(url 2)"
lab_cowctl 1 attach v >/dev/null
round 0 0x1a
round 1 0x2a
pass
