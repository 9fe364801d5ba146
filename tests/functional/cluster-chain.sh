#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Layer chains follow ownership in a cluster (issue 14): three nodes on real
# corosync, tgtd LUNs with SCSI-3 reservations, one volume vm1 whose
# layers are LUNs 2 (its CoW device), 3 and 4.
#  - snapshot on the owner (node 2); the old owner (node 1, still attached)
#    takes the volume back and reads the new layer: its takeover walked the
#    chain again from the disk;
#  - rollback on node 2 while node 1 holds a stale chain of three layers;
#    node 1 takes it back and reads the rolled-back data;
#  - a merge started on node 1 is interrupted by a handoff to node 2, which
#    goes on with it by itself and ends with one layer;
#  - node 2 (owner, with a snapshot on LUN 4) is killed: the fencer removes
#    its key from every layer of the chain (LUN 4 is found by walking from
#    LUN 2), node 1 takes over and reads everything acknowledged.
# Every read is checked for its exact pattern.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl
pr="$top_builddir/fence/cowfence-pr"

lab_init "cc$(printf %04x $((RANDOM)))"
lab_host 0
for n in 1 2 3; do lab_host $n; done
new_image "$LAB_DIR/base.lun" 32M random
for i in 2 3 4; do new_image "$LAB_DIR/l$i.lun" 40M zero; done
lab_storage 0
iqn=iqn.2024-01.org.cowherd:chain
lab_lun 0 1 $iqn 1 "$LAB_DIR/base.lun"
for i in 2 3 4; do lab_lun 0 1 $iqn $i "$LAB_DIR/l$i.lun"; done
lab_corosync 1 2 3
for n in 1 2 3; do lab_wait_quorate $n 30 || fail "node $n not quorate"; done
declare -A cowd_pid
printf '[cowd]\nafter-fence = stay\n' > "$LAB_DIR/cowd.conf"
# Each merge copy waits 1 s, so a handoff can come in the middle of one.
for n in 1 2 3; do
  cowd_pid[$n]=$(COWD_TEST_MERGE_STEP_MS=1000 lab_cowd $n --config "$LAB_DIR/cowd.conf")
done
for n in 1 2 3; do lab_wait_cowd_quorate $n 20 || fail "cowd on node $n is not quorate"; done

url() { lab_iscsi_url 0 $iqn "$1"; }
sock() { lab_sock "$1" vm1; }
st() { lab_status "$1" vm1; }
is() { lab_vol_is "$1" vm1 "$2"; }
keys() { lab_exec 3 "$pr" --initiator iqn.2024-01.org.cowherd:probe --json "$(url "$1")" read-keys; }
has_key() { keys "$1" | jq -e "[.keys[].nodeid] | index($2) != null" >/dev/null; }
no_key() { ! has_key "$@"; }
layers() { lab_cowctl "$1" --json snapshots vm1 | jq -c '[.layers[] | [.snapshot, .chunks]]'; }
owns() { wait_until 20 is "$1" ".owner == $1 and .state == \"active\"" || fail "$2: node $1 does not own vm1: $(st "$1")"; }

lab_cowctl 1 create vm1 --base "$(url 1)" --cow "$(url 2)" >/dev/null
for n in 2 3; do wait_until 10 _lab_knows $n vm1 || fail "node $n does not know vm1"; done
lab_cowctl 1 attach vm1 >/dev/null
owns 1 "after attach"
qemu-io -f raw "$(sock 1)" -c "write -P 0x11 0 64k" -c "write -P 0x12 64k 64k" >/dev/null

echo "== snapshot on the owner; the old owner takes vm1 back and reads the new layer"
lab_cowctl 2 attach vm1 --incoming >/dev/null
owns 2 "after the handoff to node 2"
out=$(lab_cowctl 2 snapshot vm1 --cow "$(url 3)" --name s1) || fail "snapshot on node 2: $out"
[ "$out" = "vm1: snapshot s1 taken; writes go to $(url 3)" ] || fail "snapshot on node 2 said: $out"
has_key 3 2 || fail "node 2 did not register its key on the new layer: $(keys 3)"
qemu-io -f raw "$(sock 2)" -c "write -P 0x22 64k 64k" >/dev/null
lab_cowctl 2 detach vm1
# node 1 is still attached with the chain it opened (LUN 2 alone): its
# read asks for ownership, and the takeover finds LUN 2 frozen.
qio_ok "$(sock 1)" "node 1 does not read what node 2 wrote over the snapshot" \
  "read -P 0x11 0 64k" "read -P 0x22 64k 64k"
owns 1 "after taking vm1 back"
[ "$(layers 1)" = '[["s1",2],[null,1]]' ] || fail "node 1's chain: $(layers 1)"
lab_log_has 1 "volume: vm1: the layer chain changed while another host owned the volume: 1 snapshot layers now, top $(url 3)" \
  || fail "node 1's log does not say it walked the chain again"
has_key 3 1 || fail "node 1 did not register its key on LUN 3: $(keys 3)"
echo "   node 1 reads s1's layer and the top (LUN 3); chain $(layers 1)"

echo "== rollback on node 2 while node 1 holds a stale chain of three layers"
lab_cowctl 1 snapshot vm1 --cow "$(url 4)" --name s2 >/dev/null
qemu-io -f raw "$(sock 1)" -c "write -P 0x33 128k 64k" >/dev/null
[ "$(layers 1)" = '[["s1",2],["s2",1],[null,1]]' ] || fail "node 1's chain: $(layers 1)"
lab_cowctl 2 attach vm1 --incoming >/dev/null
owns 2 "after the second handoff to node 2"
qio_ok "$(sock 2)" "node 2 does not read node 1's layers" \
  "read -P 0x11 0 64k" "read -P 0x22 64k 64k" "read -P 0x33 128k 64k"
out=$(lab_cowctl 2 rollback vm1 s1) || fail "rollback on node 2: $out"
[ "$out" = "vm1: rolled back to s1
freed: $(url 4)" ] || fail "rollback on node 2 said: $out"
qemu-io -f raw "$(sock 2)" -c "write -P 0x44 192k 64k" >/dev/null
for off in 1M 2M 3M 4M; do qemu-io -f raw "$(sock 2)" -c "write -P 0x45 $off 64k" >/dev/null; done
lab_cowctl 2 detach vm1
qio_ok "$(sock 1)" "node 1 does not read the rolled-back volume" \
  "read -P 0x11 0 64k" "read -P 0x12 64k 64k" "read -P 0x44 192k 64k" "read -P 0x45 4M 64k"
# 128k is the base's again: s2's layer (LUN 4) is gone from the chain
[ "$(qemu-io -f raw "$(sock 1)" -c "read -v 128k 16" | head -1)" = \
  "$(qemu-io -f raw -r "$LAB_DIR/base.lun" -c "read -v 128k 16" | head -1)" ] \
  || fail "node 1 still reads the freed layer at 128k"
owns 1 "after the rollback elsewhere"
[ "$(layers 1)" = '[["s1",2],[null,5]]' ] || fail "node 1's chain after the rollback: $(layers 1)"
echo "   node 1 reads the rolled-back data; chain $(layers 1)"

echo "== a merge on node 1, handed over in the middle, finished by node 2"
out=$(lab_cowctl 1 merge vm1) || fail "merge on node 1: $out"
sleep 1.5
is 1 '.merge.state == "running"' || fail "node 1's merge is not running: $(st 1 | jq -c .merge)"
lab_cowctl 2 attach vm1 --incoming >/dev/null
owns 2 "after the handoff in the middle of the merge"
is 1 '.merge.state == "off"' || fail "node 1 still merges after the handoff: $(st 1 | jq -c .merge)"
wait_until 30 is 2 '.merge.state == "off" and .layers == 1' || fail "node 2 did not finish the merge: $(st 2 | jq -c '{layers, merge}')"
lab_log_has 2 "volume: vm1: the merge of $(url 3) into snapshot s1 on $(url 2) was interrupted; it starts again" \
  || fail "node 2's log does not say it took the merge over"
qio_ok "$(sock 2)" "the merge lost data" \
  "read -P 0x11 0 64k" "read -P 0x12 64k 64k" "read -P 0x44 192k 64k" "read -P 0x45 1M 64k" "read -P 0x45 4M 64k"
echo "   node 2 finished the merge: chain $(layers 2)"

echo "== node 2, owner of a chain on LUNs 2 and 4, is killed: fenced on both"
lab_cowctl 2 snapshot vm1 --cow "$(url 4)" --name s3 >/dev/null
qemu-io -f raw "$(sock 2)" -c "write -P 0x55 5M 64k" >/dev/null
has_key 2 2 && has_key 4 2 || fail "node 2 is not registered on both layers: $(keys 2) $(keys 4)"
lab_kill 2 "${cowd_pid[2]}"; lab_kill 2 "$(lab_corosync_pid 2)"
wait_until 15 lab_nodes_is 1 '.quorate == true' || fail "node 1 is not quorate after node 2 went down"
wait_until 30 no_key 2 2 || fail "node 2's key is still on LUN 2: $(keys 2)"
wait_until 10 no_key 4 2 || fail "node 2's key is still on LUN 4, the top above its CoW LUN: $(keys 4)"
# The fencer (node 1, or node 3) logs the walk when its job is back.
walk="fence: node 2: $(url 2) is a snapshot of vm1; fencing the layer above it, $(url 4), too"
fencer_logged() { lab_log_has 1 "$1" || lab_log_has 3 "$1"; }
wait_until 10 fencer_logged "$walk" \
  || fail "no fencer logged the walk up the chain"
echo "   READ KEYS: LUN 2 $(keys 2 | jq -c '[.keys[].nodeid]'), LUN 4 $(keys 4 | jq -c '[.keys[].nodeid]')"
qio_ok "$(sock 1)" "node 1 lost data at the failover" \
  "read -P 0x11 0 64k" "read -P 0x12 64k 64k" "read -P 0x44 192k 64k" "read -P 0x45 4M 64k" "read -P 0x55 5M 64k"
owns 1 "after the failover"
[ "$(layers 1)" = '[["s3",7],[null,1]]' ] || fail "node 1's chain after the failover: $(layers 1)"
has_key 4 1 || fail "node 1 did not register on LUN 4: $(keys 4)"
echo "   node 1 took over the chain it had not seen: $(layers 1)"
pass
