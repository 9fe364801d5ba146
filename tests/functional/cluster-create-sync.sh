#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A volume is defined in the group only once its create has made it
# durable, also when the group changes meanwhile.  tgtd runs with
# slowsync.so: each SYNCHRONIZE CACHE waits 2000 ms more, so a create on
# LUNs takes 4 s.  Node 1 creates x; while it formats, node 3's cowd
# starts and syncs; nodes 2 and 3 must not list x while node 1 still says
# it is being created (asked after them: x is no longer "being created"
# before node 1 tells the group), and node 2 lists it after.  A create that fails in its format
# (a LUN too small) leaves no node listing it.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires tgtd jq cowd cowctl
slowsync_shim

lab_init "cs$(printf %04x $((RANDOM)))"
for n in 0 1 2 3; do lab_host $n; done
new_image "$LAB_DIR/base.lun" 32M random
new_image "$LAB_DIR/cow.lun" 40M zero
new_image "$LAB_DIR/small.lun" 1M zero
LD_PRELOAD=$shim SLOWSYNC_MS=2000 lab_storage 0
lab_lun 0 1 "$LAB_IQN" 1 "$LAB_DIR/base.lun"
lab_lun 0 1 "$LAB_IQN" 2 "$LAB_DIR/cow.lun"
lab_lun 0 1 "$LAB_IQN" 3 "$LAB_DIR/small.lun"
lab_corosync 1 2 3
for n in 1 2 3; do lab_wait_quorate $n 30 || fail "node $n not quorate"; done
lab_cowd 1 >/dev/null
lab_cowd 2 >/dev/null
base=$(lab_iscsi_url 0 "$LAB_IQN" 1)
listed() { lab_cowctl "$1" --json list "$2" | jq -r '.[].name'; }
being() { [ "$(lab_cowctl 1 status "$1" 2>&1)" = "cowctl: volume $1 is being created: its definition is not durable yet" ]; }

# create_during_join NAME LUN: node 1 creates NAME on LUN; node 3's cowd
# starts while the format runs; node 2 lists nothing of NAME meanwhile.
# The create's exit status and output in $LAB_DIR/rc-NAME, out-NAME.
create_during_join() {
  local name=$1 lun=$2 pid t0 t1
  t0=$(date +%s%N)
  lab_cowctl 1 create "$name" --base "$base" --cow "$(lab_iscsi_url 0 "$LAB_IQN" "$lun")" \
    > "$LAB_DIR/out-$name" 2>&1 &
  pid=$!
  wait_until 10 being "$name" || fail "node 1 never said $name was being created"
  cowd3=$(lab_cowd 3)
  wait_until 10 sh -c "grep -q 'cluster: synced' '$(lab_dir 3)/log/cowd.log'" || fail "node 3 did not sync"
  sleep 0.3
  kill -0 "$pid" 2>/dev/null \
    || fail "the create of $name ended before the sync could show anything: $(cat "$LAB_DIR/out-$name")"
  local l2 l3
  l2=$(listed 2 "$name")
  l3=$(listed 3 "$name")
  # Only what was listed while node 1 still said so proves anything.
  being "$name" || fail "node 1 was done with $name before nodes 2 and 3 were asked (the machine was too slow for this test's window): they listed '$l2' and '$l3'"
  [ -z "$l2" ] || fail "node 2 lists $name while node 1 still formats it"
  [ -z "$l3" ] || fail "node 3 lists $name while node 1 still formats it"
  local rc=0; wait "$pid" || rc=$?
  t1=$(date +%s%N)
  echo "$rc" > "$LAB_DIR/rc-$name"
  echo "   create $name: exit $rc in $(((t1 - t0) / 1000000)) ms: $(cat "$LAB_DIR/out-$name")"
  kill "$cowd3"
  wait_until 20 sh -c "! kill -0 $cowd3 2>/dev/null" || fail "node 3's cowd did not stop"
  rm -f "$(lab_dir 3)/log/cowd.log"
}

echo "== node 3 joins while node 1 formats x"
create_during_join x 2
[ "$(cat "$LAB_DIR/rc-x")" = 0 ] || fail "create x failed: $(cat "$LAB_DIR/out-x")"
wait_until 10 sh -c "[ \"\$(nsenter -t ${_lab_init_pid[2]} -n -m -- cowctl --run-dir $(lab_dir 2)/run --json list x | jq -r '.[].name')\" = x ]" \
  || fail "node 2 does not list x after the create: $(listed 2 x)"

echo "== a create whose format fails defines nothing anywhere"
rc=0; out=$(lab_cowctl 1 create y --base "$base" --cow "$(lab_iscsi_url 0 "$LAB_IQN" 3)" 2>&1) || rc=$?
[ "$rc" = 1 ] && [ "$out" = "cowctl: volume y: CoW device $(lab_iscsi_url 0 "$LAB_IQN" 3) is too small: it has 1048576 bytes and needs 33619968 (base 33554432 + metadata)" ] \
  || fail "create y: exit $rc: $out"
sleep 1
for n in 1 2; do
  [ -z "$(listed $n y)" ] || fail "node $n lists y, whose create failed"
done
pass
