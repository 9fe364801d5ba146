#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A volume attached when cowd stopped is attached again once the node is
# quorate, also when cowd starts while the node is cut off.  Node 1 owns
# v; its cowd stops (SIGTERM: v stays attached in its store); node 1 is cut off from nodes 2 and 3 (blackhole routes in its
# namespace; the storage stays reachable) until its corosync says it is
# not quorate; cowd starts there and cannot take v ("not quorate"); the
# routes go, and without any command node 1 owns and serves v again, with
# the data written before.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl corosync-quorumtool

lab_init "cq$(printf %04x $((RANDOM)))"
lab_small_cluster
iqn=$LAB_IQN
cowd1=$(lab_cowd 1)
lab_cowd 2 >/dev/null
lab_cowd 3 >/dev/null
log1=$(lab_dir 1)/log/cowd.log
ns=$LAB_ID-h1

lab_cowctl 1 create v --base "$(lab_iscsi_url 0 $iqn 1)" --cow "$(lab_iscsi_url 0 $iqn 2)" >/dev/null
lab_cowctl 1 attach v >/dev/null
wait_until 20 lab_vol_is 1 v '.owner == 1 and .state == "active"' \
  || fail "node 1 does not own v: $(lab_status 1 v)"
qio_ok "$(lab_sock 1 v)" "write v" "write -P 0x77 0 64k"

echo "== cowd on node 1 stops; node 1 is cut off; cowd starts there"
kill -TERM "$cowd1"
wait_until 20 sh -c "! kill -0 $cowd1 2>/dev/null" || fail "cowd on node 1 did not stop"
printf 'route add blackhole %s/32\nroute add blackhole %s/32\n' "$(lab_ip 2)" "$(lab_ip 3)" \
  | ip -n "$ns" -batch -
heal() {
  ip -n "$ns" route del blackhole "$(lab_ip 2)/32" 2>/dev/null || true
  ip -n "$ns" route del blackhole "$(lab_ip 3)/32" 2>/dev/null || true
}
cleanup_fn heal
unquorate() { ! lab_exec 1 corosync-quorumtool -s 2>/dev/null | grep -q 'Quorate: *Yes'; }
wait_until 30 unquorate || fail "node 1's corosync stayed quorate while cut off"
cowd1=$(lab_cowd 1)
wait_until 20 grep -q "cowd: v: not re-attached at start: volume v: this node is not quorate; it cannot take ownership" "$log1" \
  || fail "cowd on node 1 did not say why v was not attached: $(tail -5 "$log1")"
[ "$(lab_status 1 v | jq -r .error)" = "volume v: this node is not quorate; it cannot take ownership" ] \
  || fail "status of v on node 1 while cut off: $(lab_status 1 v)"

echo "== the routes go: node 1 serves v again by itself"
heal
wait_until 40 lab_vol_is 1 v '.owner == 1 and .state == "active" and .error == null' \
  || fail "node 1 did not take v again: $(lab_status 1 v)"
grep -E "cowd: v: (re-attached now that this node is quorate|attached)" "$log1" | tail -2 | sed 's/^/   /'
qio_ok "$(lab_sock 1 v)" "v's data after the heal" "read -P 0x77 0 64k"
pass
