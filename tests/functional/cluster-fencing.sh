#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Fencing with real SCSI-3 reservations on tgtd and real corosync, three
# nodes, each step checked with data:
#  - host crash: corosync and cowd of the owner SIGKILLed under a writing
#    client; the fencer preempts its key (READ KEYS of our own shows it
#    gone), the waiting node takes over, the client reconnects there and
#    every acknowledged write is read back;
#  - partition: the owner's link is cut; it stops acknowledging writes; the
#    majority fences it and takes over; after the link is back a write
#    through the cut-off host's own session gets RESERVATION CONFLICT,
#    there is still exactly one owner, and the fenced agent, restarted,
#    rejoins and serves another volume;
#  - a hung agent (SIGSTOP) fenced by hand (cowctl fence NODE, as Pacemaker
#    would after a failed monitor); after SIGCONT the request a client
#    queued on it while it was stopped fails, a write through its own
#    session is refused by the target, and the new owner's data stands;
#  - a fencer whose own key was removed from a LUN it registered on (named
#    without its port in the volume's definition) finds itself fenced
#    there instead of registering again and fencing the owner.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io python3 tgtd jq cowd cowctl
python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd"; exit 77; }
pr="$top_builddir/fence/cowfence-pr"
writer="$top_srcdir/tests/nbdwriter.py"

lab_init "cf$(printf %04x $((RANDOM)))"
lab_host 0
for n in 1 2 3; do lab_host $n; done
new_image "$LAB_DIR/base.lun" 32M random
for i in 2 3 4 5; do new_image "$LAB_DIR/cow$i.lun" 40M zero; done
lab_storage 0
iqn=iqn.2024-01.org.cowherd:fence
lab_lun 0 1 $iqn 1 "$LAB_DIR/base.lun"
for i in 2 3 4 5; do lab_lun 0 1 $iqn $i "$LAB_DIR/cow$i.lun"; done
lab_corosync 1 2 3
for n in 1 2 3; do lab_wait_quorate $n 30 || fail "node $n not quorate"; done
declare -A cowd_pid
# The fenced agents are examined fenced (their own sessions refused by
# the target): they stay fenced (after-fence = stay) rather than start over
# (cluster-2node-partition.sh tests that).
printf '[cowd]\nafter-fence = stay\n' > "$LAB_DIR/cowd.conf"
for n in 1 2 3; do cowd_pid[$n]=$(lab_cowd $n --config "$LAB_DIR/cowd.conf"); done

sock() { echo "nbd+unix:///?socket=$(lab_dir "$1")/run/$2.sock"; }
st() { lab_cowctl "$1" --json status "$2"; }
is() { st "$1" "$2" | jq -e "$3" >/dev/null; }
url() { lab_iscsi_url 0 $iqn "$1"; }
keys() { lab_exec 2 "$pr" --initiator iqn.2024-01.org.cowherd:probe --json "$(url "$1")" read-keys; }
has_key() { keys "$1" | jq -e "[.keys[].nodeid] | index($2) != null" >/dev/null; }
acked() { [ -f "$1" ] && wc -l < "$1" || echo 0; }

lab_cowctl 1 create a --base "$(url 1)" --cow "$(url 2)"
lab_cowctl 1 create b --base "$(url 1)" --cow "$(url 3)"
lab_cowctl 1 create c --base "$(url 1)" --cow "$(url 4)"
knows() { lab_cowctl "$1" --json list | grep -q "\"$2\""; }
wait_until 10 knows 3 c || fail "node 3 does not know c"

echo "== host crash: node 1 owns a, a client writes, node 1 is killed"
lab_cowctl 1 attach a >/dev/null
wait_until 10 is 1 a '.owner == 1 and .state == "active"' || fail "node 1 does not own a"
has_key 2 1 || fail "node 1 did not register its key on a's LUN: $(keys 2)"
python3 "$writer" write "$LAB_DIR/a.log" 3000 0 "$(sock 1 a)" "$(sock 2 a)" 2>"$LAB_DIR/writer.err" & w=$!
wait_until 20 sh -c "[ \$(wc -l < '$LAB_DIR/a.log' 2>/dev/null || echo 0) -ge 300 ]" || fail "the writer did not get going"
lab_kill 1 "${cowd_pid[1]}"; lab_kill 1 "$(lab_corosync_pid 1)"
before=$(acked "$LAB_DIR/a.log")
echo "   killed node 1 after $before acknowledged writes"
# The survivors' lease renews only in the new quorate ring (issue 15), as
# in cluster-failures.sh: wait for node 2 to act as quorate first.
quorate2() { lab_cowctl 2 --json nodes | jq -e '.quorate == true' >/dev/null; }
wait_until 15 quorate2 || fail "node 2 is not quorate after node 1 went down: $(lab_cowctl 2 --json nodes)"
lab_cowctl 2 attach a --incoming >/dev/null || fail "node 2 cannot wait for a"
wait_until 20 is 2 a '.cluster_state == "unowned" or .owner == 2' || fail "node 1 was not fenced: $(st 2 a)"
has_key 2 1 && fail "node 1's key is still registered on a's LUN: $(keys 2)"
echo "   READ KEYS on a's LUN: $(keys 2 | jq -c '[.keys[].nodeid]') (node 1's key gone)"
lab_cowctl 2 fence status | grep -q "fenced:     node 1 by node 2 (reservation)" \
  || fail "fence status does not record the fence: $(lab_cowctl 2 fence status)"
wait_until 20 is 2 a '.owner == 2 and .state == "active"' || fail "node 2 did not take over a: $(st 2 a)"
wait $w || fail "the writer failed: $(tail -3 "$LAB_DIR/writer.err")"
python3 "$writer" verify "$LAB_DIR/a.log" 0 "$(sock 2 a)" || fail "an acknowledged write was lost"
echo "   the client reconnected to node 2: all $(acked "$LAB_DIR/a.log") acknowledged writes verified"

echo "== node 1 restarts and rejoins"
lab_corosync_restart 1
lab_wait_quorate 1 30 || fail "node 1 did not rejoin"
cowd_pid[1]=$(lab_cowd 1 --config "$LAB_DIR/cowd.conf")
wait_until 15 is 1 a '.owner == 2' || fail "node 1 has a wrong table after rejoining: $(st 1 a)"

echo "== partition: node 3 owns b and is cut off"
lab_cowctl 3 attach b >/dev/null
wait_until 10 is 3 b '.owner == 3 and .state == "active"' || fail "node 3 does not own b"
qio_ok "$(sock 3 b)" "write on node 3 failed" "write -P 0x3b 1M 64k"
lab_link_down 3
wait_until 15 sh -c "! nsenter -t ${_lab_init_pid[3]} -n -m -- corosync-quorumtool -s | grep -q 'Quorate: *Yes'" \
  || fail "node 3 stayed quorate alone"
if timeout 4 qemu-io -f raw "$(sock 3 b)" -c "write -P 0x99 1M 4k" >/dev/null 2>&1; then
  fail "node 3 acknowledged a write without quorum"
fi
echo "   node 3 holds writes without quorum"
wait_until 20 is 1 b '.cluster_state == "unowned"' || fail "the majority did not fence node 3: $(st 1 b)"
has_key 3 3 && fail "node 3's key is still on b's LUN"
lab_cowctl 2 attach b >/dev/null
wait_until 15 is 2 b '.owner == 2 and .state == "active"' || fail "node 2 did not take over b: $(st 2 b)"
qio_ok "$(sock 2 b)" "node 3's acknowledged write is lost" "read -P 0x3b 1M 64k"
qio_ok "$(sock 2 b)" "node 2 cannot write b" "write -P 0x2b 2M 64k"
lab_link_up 3
lab_wait_members 3 3 30 || fail "node 3 did not rejoin the ring"
wait_until 20 is 3 b '.owner == 2' || fail "node 3 still thinks it owns b: $(st 3 b)"
wait_until 10 is 3 b '.state == "fenced"' || fail "node 3 does not report b fenced: $(st 3 b)"
out=$(lab_cowctl 3 fence probe b) || fail "probe failed: $out"
echo "   node 3's own session: $out"
[[ $out == *"RESERVATION CONFLICT"* ]] || fail "the target let fenced node 3 write: $out"
for n in 1 2 3; do is $n b '.owner == 2' || fail "node $n disagrees on b's owner: $(st $n b)"; done
qio_ok "$(sock 2 b)" "b's data changed after node 3 came back" \
  "read -P 0x2b 2M 64k" "read -P 0x3b 1M 64k"
echo "   exactly one owner (node 2), data intact"
kill "${cowd_pid[3]}"; wait_until 10 sh -c "! kill -0 ${cowd_pid[3]}" || true
cowd_pid[3]=$(lab_cowd 3 --config "$LAB_DIR/cowd.conf")
wait_until 15 is 3 b '.owner == 2' || fail "restarted node 3 has a wrong table"
lab_cowctl 3 fence status | grep -q FENCED && fail "restarted agent still fenced"
echo "   node 3's agent restarted and rejoined cleanly"

echo "== a hung agent: node 1 owns c, SIGSTOP, fenced by hand from node 2"
lab_cowctl 1 attach c >/dev/null
wait_until 10 is 1 c '.owner == 1 and .state == "active"' || fail "node 1 does not own c"
qio_ok "$(sock 1 c)" "write on node 1 failed" "write -P 0x1c 0 64k"
kill -STOP "${cowd_pid[1]}"
timeout 20 qemu-io -f raw "$(sock 1 c)" -c "write -P 0xee 0 64k" > "$LAB_DIR/late.out" 2>&1 & late=$!
lab_cowctl 2 fence 1 || fail "cowctl fence 1 failed"
wait_until 10 is 2 c '.cluster_state == "unowned"' || fail "c was not released: $(st 2 c)"
lab_cowctl 2 attach c >/dev/null
wait_until 10 is 2 c '.owner == 2 and .state == "active"' || fail "node 2 did not take over c"
qio_ok "$(sock 2 c)" "c lost node 1's acknowledged write" "read -P 0x1c 0 64k"
qio_ok "$(sock 2 c)" "node 2 cannot write c" "write -P 0x2c 0 64k"
kill -CONT "${cowd_pid[1]}"
wait $late || true
grep -q "wrote" "$LAB_DIR/late.out" && ! grep -qi "error\|failed" "$LAB_DIR/late.out" \
  && fail "the hung agent acknowledged its late write: $(cat "$LAB_DIR/late.out")"
echo "   the request queued on node 1 while it was stopped: $(tr '\n' ' ' < "$LAB_DIR/late.out")"
out=$(lab_cowctl 1 fence probe c) || fail "probe failed: $out"
[[ $out == *"RESERVATION CONFLICT"* ]] || fail "the target let fenced node 1 write: $out"
qio_ok "$(sock 2 c)" "the late write reached c" "read -P 0x2c 0 64k"
echo "   node 1's session: $out; node 2's data stands"

echo "== node 2's key removed from a LUN it registered on: fencing from there finds node 2 fenced"
# Node 2 serves d first (it registers on LUN 5), node 3 takes it over.
lab_cowctl 2 create d --base "$(url 1)" --cow "iscsi://$(lab_ip 0)/$iqn/5" >/dev/null
lab_cowctl 2 attach d >/dev/null
wait_until 10 is 2 d '.owner == 2 and .state == "active"' || fail "node 2 does not own d"
wait_until 10 has_key 5 2 || fail "node 2 did not register on d's LUN"
lab_cowctl 3 attach d --incoming >/dev/null
wait_until 10 is 3 d '.owner == 3 and .state == "active"' || fail "node 3 did not take d over"
key2=$(keys 5 | jq -r '.keys[] | select(.nodeid == 2) | .key' | head -1)
printf 'register 0x4242\npreempt 0x4242 %s\n' "$key2" |
  lab_exec 2 "$pr" --initiator iqn.2024-01.org.cowherd:probe "$(url 5)" - >/dev/null
has_key 5 2 && fail "the probe did not remove node 2's key"
lab_cowctl 2 fence 3 >/dev/null 2>&1 && fail "node 2 fenced node 3 with its own key gone"
wait_until 10 grep -q "this node was fenced (its own key was gone when it came to fence" "$(lab_dir 2)/log/cowd.log" \
  || fail "node 2 did not find itself fenced: $(grep fence: "$(lab_dir 2)/log/cowd.log" | tail -3)"
has_key 5 2 && fail "node 2 registered again after it was fenced"
has_key 5 3 || fail "node 3 was fenced by a fenced node"
echo "   node 2: $(grep -o "this node was fenced (its own key[^)]*)" "$(lab_dir 2)/log/cowd.log" | tail -1)"
pass
