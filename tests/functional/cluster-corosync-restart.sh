#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# corosync restarts under a running cowd (issue 16): cowd holds writes,
# reconnects by itself once corosync is back, rejoins the group, takes the
# table from the quorate side and serves again, with no operator action.
#  - node 2 (owns nothing) loses corosync: node 1 keeps serving v; once
#    node 2's corosync is back its cowd says it reconnected, is quorate and
#    synced, and takes v over by handoff (asked with attach --incoming while
#    it had no quorum) with the data intact; the IPC directories of its
#    connections to the killed corosync are gone from /dev/shm;
#  - node 2 (now the owner) loses corosync for longer than the token: it
#    stops acknowledging writes, the others fence it and node 1 takes v; the
#    same cowd on node 2 rejoins with the others' table (v owned by node 1)
#    and exactly one node serves v.
# Fails without reconnection: cowd stayed out of the group until restarted.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl

lab_init "cr$(printf %04x $((RANDOM)))"
lab_small_cluster
declare -A cowd_pid
for n in 1 2 3; do cowd_pid[$n]=$(lab_cowd $n); done
url() { lab_iscsi_url 0 "$LAB_IQN" "$1"; }

lab_cowctl 1 create v --base "$(url 1)" --cow "$(url 2)"
lab_cowctl 1 attach v >/dev/null
wait_until 10 lab_vol_is 1 v '.owner == 1 and .state == "active"' || fail "node 1 does not own v"
qio_ok "$(lab_sock 1 v)" "write on node 1 failed" "write -P 0x1a 0 64k"

echo "== node 2's corosync stops and comes back"
old_cs=$(lab_corosync_pid 2)
lab_kill 2 "$old_cs"
wait_until 10 lab_log_has 2 "cluster: node 2 lost the connection to corosync (.*): writes are held; reconnecting every 1000 ms" \
  || fail "node 2's cowd did not notice corosync going away"
lab_nodes_is 2 '.quorate == false' || fail "node 2 still says quorate without corosync"
qio_ok "$(lab_sock 1 v)" "node 1 stopped serving while node 2 lost corosync" "write -P 0x1b 64k 64k"
# attach --incoming waits for quorum as it waits for the volume: the
# request goes out once node 2 is back.
lab_cowctl 2 attach v --incoming >/dev/null || fail "attach --incoming refused without quorum"
lab_vol_is 2 v '.state == "readonly"' || fail "node 2 serves v without quorum: $(lab_status 2 v)"
sleep 2                                  # a few failed reconnection attempts
lab_corosync_restart 2
lab_wait_quorate 2 30 || fail "node 2's corosync did not rejoin"
wait_until 20 lab_log_has 2 "cluster: node 2 reconnected to corosync and rejoined group" \
  || fail "node 2's cowd did not reconnect"
wait_until 20 lab_nodes_is 2 '.quorate and .synced and (.members | length == 3)' \
  || fail "node 2 is not back in the group: $(lab_cowctl 2 --json nodes)"
[ "$(cat /proc/${cowd_pid[2]}/stat 2>/dev/null | cut -d' ' -f1)" = "${cowd_pid[2]}" ] \
  || fail "node 2's cowd is not the one started before"
echo "   node 2's cowd (pid ${cowd_pid[2]}) reconnected: $(lab_cowctl 2 --json nodes)"
# libqb leaves the (emptied) directory of each IPC connection whose
# server died; cowd removes its own once corosync is back
left=$(lab_exec 2 ls -A /dev/shm | grep "^qb-$old_cs-" || true)
[ -z "$left" ] || fail "node 2's /dev/shm still holds the IPC directories of cowd's connections to the killed corosync (pid $old_cs): $left"
wait_until 15 lab_vol_is 2 v '.owner == 2 and .state == "active"' || fail "node 2 did not take v: $(lab_status 2 v)"
qio_ok "$(lab_sock 2 v)" "v's data after the handoff" "read -P 0x1a 0 64k" "read -P 0x1b 64k 64k"
qio_ok "$(lab_sock 2 v)" "node 2 cannot write v" "write -P 0x2c 128k 64k"
echo "   node 2 took v over by handoff; data intact"

echo "== the owner's corosync stops for longer than the token"
lab_kill 2 "$(lab_corosync_pid 2)"
if timeout 5 qemu-io -f raw "$(lab_sock 2 v)" -c "write -P 0x99 128k 4k" >/dev/null 2>&1; then
  fail "node 2 acknowledged a write without corosync"
fi
wait_until 30 lab_vol_is 1 v '.cluster_state == "unowned" or .owner == 1' \
  || fail "the others did not fence node 2: $(lab_status 1 v)"
# Node 1 still has v open read-only since the handoff: a client's write
# there asks for the unowned volume and waits for it.
qio_ok "$(lab_sock 1 v)" "v's data after the takeover" "write -P 0x1c 256k 64k" \
  "read -P 0x2c 128k 64k" "read -P 0x1a 0 64k"
wait_until 20 lab_vol_is 1 v '.owner == 1 and .state == "active"' || fail "node 1 did not take v: $(lab_status 1 v)"
lab_corosync_restart 2
lab_wait_quorate 2 30 || fail "node 2's corosync did not rejoin"
wait_until 20 lab_nodes_is 2 '.quorate and .synced and (.members | length == 3)' \
  || fail "node 2 is not back in the group: $(lab_cowctl 2 --json nodes)"
wait_until 15 lab_vol_is 2 v '.owner == 1' || fail "node 2 kept its own table: $(lab_status 2 v)"
for n in 1 2 3; do lab_vol_is $n v '.owner == 1' || fail "node $n disagrees on v's owner: $(lab_status $n v)"; done
if timeout 5 qemu-io -f raw "$(lab_sock 2 v)" -c "read 0 4k" >/dev/null 2>&1; then
  fail "node 2 still serves v"
fi
qio_ok "$(lab_sock 1 v)" "node 1 cannot write v" "write -P 0x1d 192k 64k"
echo "   node 2 rejoined with node 1 as v's owner; node 2 serves nothing"

echo "== node 1, first in the group, takes a table for the first time after its corosync restarts"
# Its descriptors come back as they were: the transfer's eventfd is made at
# start, not when a table first comes (the soak saw one appear mid-run).
lab_cowctl 1 detach v
eventfds() { ls -l "/proc/${cowd_pid[1]}/fd" | grep -c 'anon_inode:\[eventfd\]'; }
before=$(eventfds)
lab_kill 1 "$(lab_corosync_pid 1)"
wait_until 10 lab_log_has 1 "cluster: node 1 lost the connection to corosync" \
  || fail "node 1's cowd did not notice corosync going away"
lab_corosync_restart 1
lab_wait_quorate 1 30 || fail "node 1's corosync did not rejoin"
wait_until 20 lab_log_has 1 "cluster: node 1 reconnected to corosync and rejoined group" || fail "node 1 did not rejoin"
wait_until 20 lab_nodes_is 1 '.quorate and .synced and (.members | length == 3)' \
  || fail "node 1 is not back in the group: $(lab_cowctl 1 --json nodes)"
[ "$(eventfds)" = "$before" ] \
  || fail "node 1's cowd has $(eventfds) eventfds after taking a table, $before before"
echo "   node 1 took the group's table; eventfds $before before and after"
pass
