#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Hydration follows the volume in the cluster (issue 14): three nodes and a
# storage host in the namespace lab, base and CoW on tgtd LUNs, volume v
# (512 chunks of 64 KiB).  Clients write on nodes 1 and 2; the copy runs at
# --rate 1 so that each owner has time to copy part of it.
#  - node 1 starts `cowctl hydrate`; node 2 takes v by `attach --incoming`
#    (Xen's order): node 1 stops copying, node 2 continues by itself;
#  - `cowctl migrate` gives v back to node 1, which continues;
#  - node 1's cowd and corosync are killed (SIGKILL) mid-copy; node 3
#    takes v over (attach --incoming, after cowd's own fencing) and
#    continues by itself until the superblock says hydrated.
# An export started on node 1 ends as failed at the first handoff, and a
# node that does not own v refuses to export it.
# At each handoff the old owner stops copying (its counter stays) and the
# new owner found on disk exactly the bits the earlier owners set (from
# `cowctl --json status`: done less what it copied and faulted since), so
# it copies only what is clear: none twice, none missed.  After the kill
# the survivor finds the bits counted on the CoW LUN and copies exactly the
# clear ones (512 - bits); at the end all 512 bits are on the LUN and the
# volume, read with nbdcopy, equals base + every write.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io nbdcopy tgtd jq cowd cowctl python3

lab_init "hy$(printf %04x $((RANDOM)))"
lab_small_cluster
declare -A cowd_pid
for n in 1 2 3; do cowd_pid[$n]=$(lab_cowd $n); done
lab_cowctl 1 create v --base "$(lab_iscsi_url 0 "$LAB_IQN" 1)" \
  --cow "$(lab_iscsi_url 0 "$LAB_IQN" 2)" >/dev/null
knows() { lab_cowctl "$1" --json list | jq -e 'map(.name) | index("v") != null'; }
for n in 2 3; do wait_until 10 knows $n || fail "node $n does not know v"; done
cp "$LAB_DIR/base.lun" "$LAB_DIR/expect.img"

sock() { echo "nbd+unix:///?socket=$(lab_dir "$1")/run/v.sock"; }
st() { lab_cowctl "$1" --json status v; }
owner_is() { st "$1" | jq -e --argjson n "$1" '.owner == $n and .state == "active"' >/dev/null; }
# set_here N: the bits node N set since it opened v (copies + faults)
set_here() { st "$1" | jq '.hydration.copied + .stats.cow_faults'; }
# found N C F: the bits node N found on disk when it took v, from one
# status: its bits now less what it set since its counters were C and F
found() { st "$1" | jq --argjson c "${2:-0}" --argjson f "${3:-0}" \
  '.hydration.done - (.hydration.copied - $c) - (.stats.cow_faults - $f)'; }
copied() { st "$1" | jq .hydration.copied; }
hstate() { st "$1" | jq -r .hydration.state; }
# bits_on_disk: bits set in the CoW LUN's bitmap (byte 8192 on, dscow(5))
bits_on_disk() {
  python3 -c 'import sys
b = open(sys.argv[1], "rb").read(8192 + 64)[8192:]
print(sum(bin(x).count("1") for x in b))' "$LAB_DIR/cow.lun"
}
# wr N PATTERN OFF LEN: a client write on node N, kept in expect.img
wr() {
  qio_ok "$(sock "$1")" "write on node $1" "write -P $2 $3 $4"
  python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[3]))
f.write(bytes([int(sys.argv[2], 16)]) * int(sys.argv[4]))' \
    "$LAB_DIR/expect.img" "$2" "$3" "$4"
}
# writes N SEED: three writes at random offsets, some across chunk edges
writes() {
  local i off len
  RANDOM=$2
  for i in 1 2 3; do
    off=$(( (RANDOM * 1024 + RANDOM) % (32 * 1048576 - 200000) ))
    len=$(( RANDOM % 150000 + 1 ))
    wr "$1" "$(printf '0x%02x' $(( (RANDOM % 254) + 1 )))" "$off" "$len"
  done
}
# copying N AT-LEAST: node N's hydration runs and has copied AT-LEAST
copying() { st "$1" | jq -e --argjson m "$2" \
  '.hydration.state == "running" and .hydration.copied >= $m' >/dev/null; }

lab_cowctl 1 attach v >/dev/null
wait_until 10 owner_is 1 || fail "node 1 does not own v: $(st 1)"
writes 1 11
b0=$(bits_on_disk)
[ "$b0" -eq "$(set_here 1)" ] || fail "$b0 bits on disk, node 1 faulted $(set_here 1)"
echo "== node 1 hydrates at 1 MB/s; $b0 of 512 chunks in the CoW layer"
lab_cowctl 1 hydrate v --rate 1 >/dev/null
wait_until 30 copying 1 40 || fail "node 1 does not copy: $(st 1)"
writes 1 12

lab_cowctl 1 export v --to "$LAB_DIR/exp1.img" --rate 1 --no-wait >/dev/null
[ "$(st 1 | jq -r .export.state)" = running ] || fail "node 1's export does not run: $(st 1)"

echo "== node 2 takes v by attach --incoming (Xen's order)"
lab_cowctl 2 attach v --incoming >/dev/null
wait_until 20 owner_is 2 || fail "node 2 did not take v: $(st 2)"
# the handoff ended node 1's export (an export does not follow the volume)
st 1 | jq -e '.export.state == "failed" and .export.code == "held"' >/dev/null \
  || fail "node 1's export did not end at the handoff: $(st 1 | jq -c .export)"
[[ "$(st 1 | jq -r .export.error)" =~ ^"volume v: the export to $LAB_DIR/exp1.img stopped at "[0-9]+" of 512 chunks: the volume was held for a detach, a handoff or a quorum loss"$ ]] \
  || fail "node 1's export error: $(st 1 | jq -r .export.error)"
s1=$(set_here 1); c1=$(copied 1); f1=$((s1 - c1))
f2=$(found 2)
[ "$f2" -eq "$s1" ] \
  || fail "node 2 found $f2 bits at its takeover; node 1 had set $s1 on the new volume"
wait_until 30 copying 2 1 || fail "node 2 did not continue the hydration: $(st 2)"
sleep 1
[ "$(copied 1)" -eq "$c1" ] || fail "node 1 copied on after the handoff: $(st 1)"
[ "$(hstate 1)" = waiting ] || fail "node 1 should wait (not own v): $(st 1)"
echo "   node 1 set $s1 bits ($c1 copied) and stopped; node 2 found $f2 on disk and continues"
wait_until 30 copying 2 40 || fail "node 2 copies too slowly: $(st 2)"
writes 2 13

echo "== cowctl migrate gives v back to node 1"
lab_cowctl 3 migrate v --to n1
wait_until 20 owner_is 1 || fail "node 1 did not take v back: $(st 1)"
s2=$(set_here 2); c2=$(copied 2)
f1b=$(found 1 "$c1" "$f1")
[ "$f1b" -eq $((s1 + s2)) ] \
  || fail "node 1 found $f1b bits when it took v back; nodes 1 and 2 had set $s1 + $s2"
# only the owner exports
out=$(lab_cowctl 2 export v --to "$LAB_DIR/exp2.img" 2>&1) && fail "node 2 exported v without owning it"
[ "$out" = "cowctl: volume v is readonly on this node; run the export on its owner" ] \
  || fail "export on a node that does not own v: $out"
[ ! -e "$LAB_DIR/exp2.img" ] || fail "a refused export created its target"
lab_cowctl 2 detach v
wait_until 30 copying 1 $((c1 + 20)) || fail "node 1 did not continue: $(st 1)"
echo "   node 2 set $s2 bits ($c2 copied); node 1 found $f1b on disk and continues"
writes 1 14

echo "== node 1 goes down mid-copy (cowd and corosync SIGKILLed); node 3 takes over"
[ "$(hstate 1)" = running ] || fail "node 1 finished before the kill: $(st 1)"
kill -9 "${cowd_pid[1]}" "$(lab_corosync_pid 1)"
wait_until 10 sh -c "! kill -0 ${cowd_pid[1]} 2>/dev/null"
sleep 1     # what tgtd had received from node 1 is written
bk=$(bits_on_disk)
[ "$bk" -lt 512 ] || fail "the copy ended before the kill"
wait_until 20 sh -c "nsenter -t ${_lab_init_pid[3]} -n -m -- corosync-quorumtool -s | grep -q 'Quorate: *Yes'" \
  || fail "node 3 is not quorate without node 1"
quorate3() { lab_cowctl 3 --json nodes | jq -e '.quorate == true' >/dev/null; }
wait_until 20 quorate3 || fail "node 3's cowd is not quorate: $(lab_cowctl 3 --json nodes)"
lab_cowctl 3 attach v --incoming >/dev/null
wait_until 60 owner_is 3 || fail "node 3 did not take v over: $(st 3)"
lab_cowctl 3 fence status | grep -q "fenced:     node 1 by node" \
  || fail "cowd did not fence node 1: $(lab_cowctl 3 fence status)"
f3=$(found 3)
[ "$f3" -eq "$bk" ] || fail "node 3 found $f3 bits at its takeover; $bk were on disk"
echo "   $bk bits on disk at the kill; node 3 found them and continues by itself"
hydrated3() { [ "$(hstate 3)" = hydrated ]; }
wait_until 120 hydrated3 || fail "node 3 did not finish: $(st 3)"
c3=$(copied 3)
[ "$(st 3 | jq .stats.cow_faults)" -eq 0 ] || fail "node 3 counts client faults; none were made"
[ "$c3" -eq $((512 - bk)) ] \
  || fail "node 3 copied $c3 chunks; $((512 - bk)) were clear on disk after the kill"
[ "$(bits_on_disk)" -eq 512 ] || fail "hydrated, but $(bits_on_disk) of 512 bits on disk"
st 3 | jq -e '.hydration.percent == 100 and .hydration.done == 512 and .hydration.total == 512' >/dev/null \
  || fail "node 3's progress: $(st 3 | jq -c .hydration)"
echo "   node 3 copied $c3 = 512 - $bk; every bit is on disk; the superblock says hydrated"

nbdcopy "$(sock 3)" "$LAB_DIR/out.img"
cmp "$LAB_DIR/out.img" "$LAB_DIR/expect.img" || fail "v differs from base + writes"
echo "   nbdcopy of v equals base + the 12 writes"
pass
