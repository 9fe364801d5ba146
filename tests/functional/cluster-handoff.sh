#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The cluster on real corosync: three node hosts and a storage host in
# network namespaces, tgtd LUNs shared by all.  A volume created on node 1
# is known on nodes 2 and 3; a pattern written on node 1 reads back on node
# 2 after the Xen migration order (destination attaches --incoming, takes
# over, source detaches), both sides agree on the bitmap generation; the
# failed-migration path (destination detaches, the source's next IO takes
# ownership back); cowctl migrate; two consumers writing in turn are
# stopped as bouncing with a clear error until cowctl migrate; the whole
# cluster restarts and the definitions and data come back.  A create with
# --force on another node, naming vm1's CoW LUN through another portal, is
# refused and vm1's data stays.  An owner stopped (SIGSTOP) past its lease
# while a handoff is asked of it hands over once it runs again.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl timeout

lab_init "cw$(printf %04x $((RANDOM)))"
lab_small_cluster
iqn=$LAB_IQN
declare -A cowd_pid
for n in 1 2 3; do cowd_pid[$n]=$(lab_cowd $n); done
knows() { lab_cowctl "$1" --json list | grep -q '"vm1"'; }
owner_is() {                 # owner_is NODE OWNER: node sees OWNER, active there
  local st; st=$(lab_cowctl "$1" --json status vm1) || return 1
  echo "$st" | jq -e ".owner == $2 and (.state == \"active\" or $1 != $2)" >/dev/null
}

lab_cowctl 1 create vm1 --base "$(lab_iscsi_url 0 $iqn 1)" --cow "$(lab_iscsi_url 0 $iqn 2)"
for n in 2 3; do
  wait_until 10 knows $n \
    || fail "node $n does not know vm1"
done
echo "== vm1 is known on all nodes"

sock() { echo "nbd+unix:///?socket=$(lab_dir "$1")/run/vm1.sock"; }
status() { lab_cowctl "$1" --json status vm1; }
lab_cowctl 1 attach vm1 >/dev/null
wait_until 10 owner_is 1 1 \
  || fail "node 1 did not take ownership: $(status 1)"
qemu-io -f raw "$(sock 1)" -c "write -P 0x5c 0 1M" -c "write -P 0x5d 5M 12k" >/dev/null

echo "== vm1's CoW LUN reached through a second portal of the storage host: refused on node 3, --force or not"
# Another address of the target host is another URL for the same LUN; the
# table compares URLs, node 3 has vm1 unattached, and only the superblock
# (naming vm1, a defined volume) tells whose device it is.
alt=10.213.$LAB_OCTET.200
ip -n "$LAB_ID-h0" addr add "$alt/24" dev eth0
lab_exec 0 tgtadm -C 0 --lld iscsi --op new --mode portal --param portal=$alt:3260 \
  || fail "tgtd did not take a second portal"
altcow=iscsi://$alt:3260/$iqn/2
rc=0; out=$(lab_cowctl 3 create vmx --force --base "$(lab_iscsi_url 0 $iqn 1)" --cow "$altcow" 2>&1) || rc=$?
[ $rc -eq 1 ] && [ "$out" = "cowctl: volume vmx: CoW device $altcow is the CoW device of volume vm1 already; a CoW device belongs to one volume" ] \
  || fail "create over vm1's CoW device through $alt: exit $rc: $out"
qio_ok "$(sock 1)" "vm1's data lost after the refused create" "read -P 0x5c 0 1M" "read -P 0x5d 5M 12k"
! lab_cowctl 1 --json list | grep -q '"vmx"' || fail "the refused vmx is in the table"
# The LUN's VPD identity travelled with vm1's definition to every node.
ident() { defs_sql "$(lab_dir "$1")/state" "SELECT cow_ident FROM volumes WHERE name = 'vm1'"; }
[[ $(ident 1) == naa.* ]] && [ "$(ident 2)" = "$(ident 1)" ] && [ "$(ident 3)" = "$(ident 1)" ] \
  || fail "vm1's CoW identity: node 1 '$(ident 1)', node 2 '$(ident 2)', node 3 '$(ident 3)'"
echo "   $out"

echo "== Xen order: destination attaches --incoming, takes over, source detaches"
lab_cowctl 2 attach vm1 --incoming >/dev/null
wait_until 10 owner_is 2 2 \
  || fail "node 2 did not take over: $(status 2)"
qio_ok "$(sock 2)" "data differs on node 2" "read -P 0x5c 0 1M" "read -P 0x5d 5M 12k"
g1=$(status 1 | jq .generation); g2=$(status 2 | jq .generation)
echo "   generation on node 1 at handoff: $g1, on node 2 after takeover: $g2"
[ "$g2" -eq $((g1 + 1)) ] || fail "generations disagree: node 1 $g1, node 2 $g2"
lab_cowctl 1 detach vm1
qemu-io -f raw "$(sock 2)" -c "write -P 0x6e 8M 64k" >/dev/null

echo "== failed migration: destination (1) detaches, the source's (2) IO takes it back"
lab_cowctl 1 attach vm1 --incoming >/dev/null
wait_until 10 owner_is 1 1 || fail "node 1 did not take over"
lab_cowctl 1 detach vm1
qio_ok "$(sock 2)" "data lost on the way back" "read -P 0x6e 8M 64k" "read -P 0x5c 0 1M"
status 2 | jq -e '.owner == 2 and .state == "active"' >/dev/null || fail "node 2 did not take it back: $(status 2)"

echo "== cowctl migrate to node 3 (attach --incoming --wait-owned answers once node 3 serves)"
lab_cowctl 3 attach vm1 --incoming --wait-owned 20 >/dev/null
owner_is 3 3 || fail "attach --wait-owned answered before node 3 served vm1: $(status 3)"
qio_ok "$(sock 3)" "data differs on node 3" "read -P 0x6e 8M 64k"
lab_cowctl 1 migrate vm1 --to n2
wait_until 10 owner_is 2 2 || fail "migrate to node 2 failed"
lab_cowctl 1 nodes
lab_cowctl 2 status vm1 | grep -E "state|cluster|generation"

echo "== attach --incoming where vm1 is attached but not owned (node 3) asks for it"
status 3 | jq -e '.owner == 2 and .state == "readonly"' >/dev/null \
  || fail "node 3 should hold vm1 attached, not owned: $(status 3)"
lab_cowctl 3 attach vm1 --incoming --wait-owned 20 >/dev/null \
  || fail "attach --incoming of an attached volume did not take it"
owner_is 3 3 || fail "node 3 does not serve vm1: $(status 3)"
qio_ok "$(sock 3)" "data differs on node 3" "read -P 0x6e 8M 64k"
lab_cowctl 1 migrate vm1 --to n2
wait_until 10 owner_is 2 2 || fail "migrate back to node 2 failed"

echo "== attach --wait-owned of an exclusive volume owned elsewhere: refused at once"
new_image "$LAB_DIR/base2.lun" 8M random
new_image "$LAB_DIR/cow2.lun" 12M zero
lab_lun 0 1 $iqn 3 "$LAB_DIR/base2.lun"
lab_lun 0 1 $iqn 4 "$LAB_DIR/cow2.lun"
lab_cowctl 1 create vm2 --exclusive --base "$(lab_iscsi_url 0 $iqn 3)" \
  --cow "$(lab_iscsi_url 0 $iqn 4)" >/dev/null
knows2() { lab_cowctl "$1" --json list | grep -q '"vm2"'; }
wait_until 10 knows2 3 || fail "node 3 does not know vm2"
lab_cowctl 1 --json attach vm2 --wait-owned 20 | jq -e '.name == "vm2"' >/dev/null \
  || fail "attach vm2 --wait-owned on node 1 failed"
lab_cowctl 1 --json status vm2 | jq -e '.owner == 1 and .state == "active"' >/dev/null \
  || fail "attach --wait-owned answered before node 1 served vm2: $(lab_cowctl 1 --json status vm2)"
qemu-io -f raw "nbd+unix:///?socket=$(lab_dir 1)/run/vm2.sock" -c "write -P 0x7a 0 64k" >/dev/null
# The group refuses to move an exclusive volume by request: the wait ends
# at once with that refusal.
t0=$SECONDS rc=0
out=$(lab_cowctl 3 --json attach vm2 --incoming --wait-owned 20) || rc=$?
[ $rc -eq 1 ] || fail "attach --wait-owned of an exclusive volume exited $rc: $out"
echo "   $out (after $((SECONDS - t0)) s)"
[ "$(jq -r .error.code <<<"$out")" = busy ] || fail "wrong error code: $out"
[ "$(jq -r .error.message <<<"$out")" = "volume vm2 is exclusive and owned by node 1; use cowctl migrate" ] \
  || fail "wrong error sentence: $out"
[ $((SECONDS - t0)) -le 5 ] || fail "the refusal took $((SECONDS - t0)) s"
lab_cowctl 3 detach vm2
qio_ok "nbd+unix:///?socket=$(lab_dir 1)/run/vm2.sock" "node 1 lost vm2's data" "read -P 0x7a 0 64k"
lab_cowctl 1 --json status vm2 | jq -e '.owner == 1 and .state == "active"' >/dev/null \
  || fail "node 1 no longer serves vm2 after the refused wait"
lab_cowctl 1 detach vm2
lab_cowctl 1 delete vm2
# delete is the group's: every node forgets vm2.
forgot2() { ! knows2 "$1"; }
for n in 2 3; do wait_until 10 forgot2 $n || fail "node $n still knows deleted vm2"; done
# ... and refuses to delete a volume another node owns.
vm1_owner=$(status 1 | jq .owner)
for n in 1 2 3; do
  [ "$n" != "$vm1_owner" ] && lab_cowctl $n --json status vm1 | jq -e '.state == "detached"' >/dev/null && break
done
rc=0; out=$(lab_cowctl $n delete vm1 2>&1) || rc=$?
[ $rc -ne 0 ] && [ "$out" = "cowctl: volume vm1 is owned by node $vm1_owner; detach it there before deleting it" ] \
  || fail "delete of vm1 (owned by node $vm1_owner) on node $n: exit $rc: $out"
knows $n || fail "the refused delete removed vm1 on node $n"
echo "   vm2 deleted on every node; deleting vm1 on node $n: $out"

echo "== attach --wait-owned times out when the owner does not answer (its cowd stopped)"
# vm3 on deleted vm2's CoW device: vm2's nodes left their keys and a
# reservation there; the format registers first (it was refused before:
# "Permission denied").
lab_cowctl 1 create vm3 --force --base "$(lab_iscsi_url 0 $iqn 3)" --cow "$(lab_iscsi_url 0 $iqn 4)" >/dev/null \
  || fail "vm3 cannot be created on deleted vm2's CoW device"
knows3() { lab_cowctl "$1" --json list | grep -q '"vm3"'; }
wait_until 10 knows3 3 || fail "node 3 does not know vm3"
lab_cowctl 1 attach vm3 --wait-owned 20 >/dev/null || fail "node 1 did not take vm3"
qio_ok "nbd+unix:///?socket=$(lab_dir 1)/run/vm3.sock" "write on vm3" "write -P 0x7b 0 64k"
kill -STOP "${cowd_pid[1]}"
cleanup_fn cont_pid "${cowd_pid[1]}"
t0=$SECONDS rc=0
out=$(lab_cowctl 3 --json attach vm3 --incoming --wait-owned 2) || rc=$?
# Node 1 stays stopped past its lease (3 s): when it runs again its lease
# runs out while it drains vm3 for the handoff node 3 asked for meanwhile.
held1=$(grep -c "writes are held as if quorum were lost" "$(lab_dir 1)/log/cowd.log" || true)
sleep 2.5
kill -CONT "${cowd_pid[1]}"
echo "   $out (after $((SECONDS - t0)) s)"
[ $rc -eq 1 ] || fail "attach --wait-owned with the owner stopped exited $rc: $out"
[ "$(jq -r .error.code <<<"$out")" = timeout ] || fail "wrong error code: $out"
[ "$(jq -r .error.message <<<"$out")" = "volume vm3: node 1 did not hand it over within 2 s (cluster state handing-off, local state readonly)" ] \
  || fail "wrong error sentence: $out"
[ $((SECONDS - t0)) -le 9 ] || fail "the 2 s wait took $((SECONDS - t0)) s"
# Node 1, running again, hands it over: node 3 asked and stays attached.
# The lease that ran out meanwhile holds the handoff, never drops it.
owned3() { lab_cowctl 3 --json status vm3 | jq -e '.owner == 3 and .state == "active"' >/dev/null; }
wait_until 20 owned3 || fail "node 3 did not get vm3 once node 1 ran again: $(lab_cowctl 3 --json status vm3)"
[ "$(grep -c "writes are held as if quorum were lost" "$(lab_dir 1)/log/cowd.log")" -gt "$held1" ] \
  || fail "node 1's lease did not run out while it was stopped"
# Once node 1 runs again, its loop sees the lease run out and come back
# and the handoff's drain in the order its events come: a drain while the
# lease is out waits for it and says so (most runs); a drain after the
# lease is back goes on at once (CI saw it once).  Either way node 3 got
# vm3 (above), so the line is reported, not required.
if grep -q "vm3: the handoff to node 3 waits for this node's lease" "$(lab_dir 1)/log/cowd.log"; then
  echo "   node 1: the handoff waited for its lease"
else
  echo "   node 1: its lease was back before the handoff drained"
fi
qio_ok "nbd+unix:///?socket=$(lab_dir 3)/run/vm3.sock" "vm3's data on node 3" "read -P 0x7b 0 64k"
lab_cowctl 1 detach vm3
lab_cowctl 3 detach vm3
lab_cowctl 3 delete vm3

echo "== two running consumers (nodes 2 and 3) write in turn: bouncing is stopped"
# Each write on the node that does not own vm1 asks for it; more than six
# moves between the same two nodes within 10 s stop the volume moving.
moved=0 last= took=
for i in $(seq 12); do
  n=$(( i % 2 ? 3 : 2 ))
  pat=$(printf '0x%02x' $((0x30 + i))) off=$((12 * 1048576 + i * 65536))
  t_w=$(date +%s%N)
  if ! timeout 5 qemu-io -f raw "$(sock $n)" -c "write -P $pat $off 4k" >/dev/null 2>&1; then
    stuck=$n; break
  fi
  took+=" $(( ($(date +%s%N) - t_w) / 1000000 ))"
  moved=$i last="$pat $off"
done
echo "   ms per write:$took"
[ -n "${stuck:-}" ] || fail "12 writes in turn moved vm1 12 times (ms per write:$took): no bounce detection"
echo "   $moved writes in turn were served; the next one, on node $stuck, waits" \
     "(a write that waits is served once the volume comes, like any other)"
status 2 | jq -e '.bouncing == true' >/dev/null || fail "status does not say bouncing: $(status 2)"
lab_cowctl 2 status vm1 | grep -q BOUNCING || fail "the table of cowctl status does not say BOUNCING"
grep -q "vm1 is bouncing between nodes" "$(lab_dir $stuck)/log/cowd.log" \
  || fail "node $stuck logged no clear error"
# A wait for the volume there ends at once with the refusal, not after
# its timeout.
t0=$(date +%s)
if out=$(lab_cowctl "$stuck" attach vm1 --incoming --wait-owned 20 2>&1); then
  fail "attach --wait-owned on the bouncing volume succeeded: $out"
fi
[ $(( $(date +%s) - t0 )) -lt 10 ] || fail "attach --wait-owned waited out its timeout on a bouncing volume"
[[ $out == *"volume vm1 is bouncing between nodes"*"two running consumers? (stopped; use cowctl migrate)"* ]] \
  || fail "attach --wait-owned on a bouncing volume said: $out"
echo "   attach --wait-owned there: $out"
owner=$(status 2 | jq .owner)
qio_ok "$(sock "$owner")" "the last acknowledged write is not on the owner" "read -P $last 4k"
lab_cowctl 2 migrate vm1 --to "n$stuck"
wait_until 10 owner_is "$stuck" "$stuck" || fail "migrate did not end the bounce: $(status 2)"
status "$stuck" | jq -e '.bouncing == false' >/dev/null || fail "still bouncing after migrate"
qio_ok "$(sock "$stuck")" "the last acknowledged write did not move with vm1" "read -P $last 4k"
echo "   cowctl migrate moved vm1 to node $stuck and cleared the bounce; data intact"

echo "== the whole cluster restarts (every agent, every corosync)"
stop() { kill "$1"; wait_until 15 sh -c "! kill -0 $1 2>/dev/null" || fail "pid $1 did not stop"; }
for n in 1 2 3; do stop "${cowd_pid[$n]}"; done
for n in 1 2 3; do stop "$(lab_corosync_pid $n)"; done
for n in 1 2 3; do lab_corosync_restart $n; done
for n in 1 2 3; do lab_wait_quorate $n 30 || fail "node $n not quorate after the restart"; done
for n in 1 2 3; do cowd_pid[$n]=$(lab_cowd $n); done
for n in 1 2 3; do wait_until 10 knows $n || fail "node $n lost vm1's definition"; done
# Nodes 2 and 3 had vm1 attached: they attach it again and one owns it.
served() { for n in 2 3; do owner_is $n $n && return 0; done; return 1; }
wait_until 15 served || fail "nobody serves vm1 after the restart: $(status 2)"
owner=$(status 2 | jq .owner)
qio_ok "$(sock "$owner")" "data lost across the cluster restart" \
  "read -P $last 4k" "read -P 0x6e 8M 64k" "read -P 0x5c 0 1M"
echo "   every node knows vm1 again; node $owner serves it, data intact"
pass
