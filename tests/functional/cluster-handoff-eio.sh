#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A handoff whose owner's storage fails: vm1's CoW LUN (tgtd) is backed by
# a qemu-storage-daemon FUSE export of nbdkit with its error filter, which
# fails every write while a trigger file exists.  Node 2 asks for vm1
# (attach --incoming --wait-owned) while node 1's writes fail: node 1
# cannot mark vm1 clean, keeps serving it and tells the group, so node 2's
# wait fails at once with the sentence that names the volume, the node
# and the cause; both nodes' tables say owned by node 1 (not handing-off
# for ever); node 1's data reads back.  Once the storage works again, node
# 2's next request takes vm1 over with the data.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl nbdkit qemu-storage-daemon timeout

lab_init "ce$(printf %04x $((RANDOM)))"
iqn=$LAB_IQN
new_image "$LAB_DIR/base.img" 16M random
truncate -s 24M "$LAB_DIR/cow.img"
# Before the hosts exist: their mount namespaces copy the FUSE mount.
cleanup_fn kill_pidfile "$LAB_DIR/nc.pid"
nbdkit -U "$LAB_DIR/nc.sock" -P "$LAB_DIR/nc.pid" --filter=error file "$LAB_DIR/cow.img" \
  error=EIO error-pwrite-rate=100% error-pwrite-file="$LAB_DIR/fail-writes"
wait_for_pidfile "$LAB_DIR/nc.pid" || fail "nbdkit did not write $LAB_DIR/nc.pid"
fuse_exports "$LAB_DIR" "$LAB_DIR/nc.sock:$LAB_DIR/ecow.img:on"

for n in 0 1 2; do lab_host $n; done
lab_storage 0
lab_lun 0 1 "$iqn" 1 "$LAB_DIR/base.img"
lab_lun 0 1 "$iqn" 2 "$LAB_DIR/ecow.img"
lab_corosync 1 2
for n in 1 2; do lab_wait_quorate $n 30 || fail "node $n not quorate"; done
for n in 1 2; do lab_cowd $n >/dev/null; done

sock() { echo "nbd+unix:///?socket=$(lab_dir "$1")/run/vm1.sock"; }
status() { lab_cowctl "$1" --json status vm1; }
owned_by() { status "$1" | jq -e ".owner == $2 and .cluster_state == \"owned\"" >/dev/null; }
lab_cowctl 1 create vm1 --base "$(lab_iscsi_url 0 "$iqn" 1)" --cow "$(lab_iscsi_url 0 "$iqn" 2)" >/dev/null \
  || fail "cannot create vm1"
knows() { lab_cowctl "$1" --json list | grep -q '"vm1"'; }
wait_until 10 knows 2 || fail "node 2 does not know vm1"
lab_cowctl 1 attach vm1 --wait-owned 20 >/dev/null || fail "node 1 did not take vm1: $(status 1)"
qemu-io -f raw "$(sock 1)" -c "write -P 0x6a 0 1M" -c "write -P 0x6b 7M 64k" >/dev/null \
  || fail "cannot write vm1 on node 1"

echo "== node 2 asks for vm1 while node 1's CoW LUN fails writes"
touch "$LAB_DIR/fail-writes"
rc=0; t0=$(date +%s)
out=$(lab_cowctl 2 attach vm1 --incoming --wait-owned 30 2>&1) || rc=$?
t1=$(date +%s)
want="cowctl: volume vm1: node 1 cannot hand it over: making it clean on its CoW device failed (Input/output error); node 1 keeps serving it"
[ $rc -ne 0 ] && [ "$out" = "$want" ] || fail "attach --incoming on node 2 while node 1's storage fails: exit $rc: $out"
[ $((t1 - t0)) -lt 20 ] || fail "node 2's wait took $((t1 - t0)) s, not ended by the refusal"
echo "   node 2: $out (after $((t1 - t0)) s)"
grep -q "cluster: vm1: cannot hand it to node 2: making it clean on its CoW device failed (Input/output error); this node keeps serving it" \
  "$(lab_dir 1)/log/cowd.log" || fail "node 1 did not log why it kept vm1"
for n in 1 2; do owned_by $n 1 || fail "node $n does not see vm1 owned by node 1: $(status $n)"; done
rm "$LAB_DIR/fail-writes"
qio_ok "$(sock 1)" "node 1 lost vm1's data after the failed handoff" "read -P 0x6a 0 1M" "read -P 0x6b 7M 64k"
status 1 | jq -e '.state == "active"' >/dev/null || fail "node 1 does not serve vm1: $(status 1)"
qemu-io -f raw "$(sock 1)" -c "write -P 0x6c 9M 64k" >/dev/null || fail "node 1 cannot write vm1 after the failed handoff"

echo "== the storage works again: node 2 takes vm1 with its data"
lab_cowctl 2 attach vm1 --incoming --wait-owned 30 >/dev/null || fail "node 2 did not take vm1: $(status 2)"
for n in 1 2; do owned_by $n 2 || fail "node $n does not see vm1 owned by node 2: $(status $n)"; done
qio_ok "$(sock 2)" "vm1's data did not follow it to node 2" "read -P 0x6a 0 1M" "read -P 0x6b 7M 64k" "read -P 0x6c 9M 64k"
pass
