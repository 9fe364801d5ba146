#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A takeover does not stall the host's other volumes.  Volume "big" (1 TiB
# at 64 KiB chunks: 2 MiB of bitmap) lives on tgtd LUNs reached through a
# proxy that delays every answer of the target by 200 ms once switched on
# (tests/delayproxy.py: the kernel here has no netem); "fast" is a file
# volume served by node 2.
# While a probe reads "fast" on node 2 every 2 ms without waiting for
# earlier reads (as a running domain does), "big" is migrated between nodes
# 1 and 2 four times: each takeover on node 2 reads superblock and bitmap
# and writes the new epoch through the slow link (>= 400 ms).  A takeover
# that blocked cowd's loop would hold every probe read for that long.
# Asserted: node 2's loop waited less than 50 ms in blocking IO for big
# during the moves (status: blocking_io_ms; a blocking takeover adds >= 400
# ms each), while its slowest takeover took 400 ms or more; the probe's
# reads all succeed.  The probe's p50/p99/max are printed, with nothing
# moving first and then during the moves: scheduling noise on a loaded
# machine alone exceeds 10 ms, so they are reported, not asserted.  The data written to big
# before the moves reads back after them.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl python3
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd"; exit 77; }

lab_init "ct$(printf %04x $((RANDOM)))"
for n in 0 1 2 3; do lab_host $n; done
truncate -s 1T "$LAB_DIR/big-base.lun"
truncate -s 1025G "$LAB_DIR/big-cow.lun"
lab_storage 0
lab_lun 0 1 "$LAB_IQN" 1 "$LAB_DIR/big-base.lun"
lab_lun 0 1 "$LAB_IQN" 2 "$LAB_DIR/big-cow.lun"
new_image "$LAB_DIR/fast-base.img" 64M random
truncate -s 80M "$LAB_DIR/fast-cow.img"
slow=$LAB_DIR/slow              # exists: the proxy delays
lab_bg 0 "$LAB_DIR/proxy.log" /usr/bin/python3 "$top_srcdir/tests/delayproxy.py" \
  3261 "$(lab_ip 0):3260" 200 "$slow" >/dev/null
wait_until 10 grep -q ready "$LAB_DIR/proxy.log" || fail "the delay proxy did not start"
url() { echo "iscsi://$(lab_ip 0):3261/$LAB_IQN/$1"; }
lab_corosync 1 2 3
for n in 1 2 3; do lab_wait_quorate $n 30 || fail "node $n not quorate"; done
for n in 1 2 3; do lab_cowd $n >/dev/null; done

owner_is() {                 # owner_is NODE: NODE owns big and serves it
  lab_cowctl "$1" --json status big | jq -e ".owner == $1 and .state == \"active\"" >/dev/null
}
lab_cowctl 1 create big --base "$(url 1)" --cow "$(url 2)" --chunk-size 64K >/dev/null
lab_cowctl 2 create fast --base "$LAB_DIR/fast-base.img" \
  --cow "$LAB_DIR/fast-cow.img" >/dev/null
knows() { lab_cowctl "$1" --json list | grep -q "\"$2\""; }
wait_until 10 knows 2 big || fail "node 2 does not know big"
lab_cowctl 1 attach big >/dev/null
wait_until 10 owner_is 1 || fail "node 1 does not own big"
big1="nbd+unix:///?socket=$(lab_dir 1)/run/big.sock"
qio_ok "$big1" "writing big on node 1" "write -P 0x3c 0 64k" "write -P 0x3d 512G 64k"
lab_cowctl 2 attach big --incoming >/dev/null
wait_until 10 owner_is 2 || fail "node 2 did not take big over"
lab_cowctl 2 attach fast >/dev/null
fast="nbd+unix:///?socket=$(lab_dir 2)/run/fast.sock"
qio_ok "$fast" "reading fast" "read 0 64k"

blocked() { lab_cowctl 2 --json status big | jq .stats.blocking_io_ms; }
# The same probe with nothing moving, for comparison (printed).
/usr/bin/python3 "$top_srcdir/tests/nbdprobe.py" "$fast" 6 2 > "$LAB_DIR/probe0.json" \
  || fail "the probe's reads failed with nothing moving: $(cat "$LAB_DIR/probe0.json")"
echo "   probe with nothing moving: $(cat "$LAB_DIR/probe0.json")"
before=$(blocked)
# From here on every answer of the target comes 200 ms late.
touch "$slow"
/usr/bin/python3 "$top_srcdir/tests/nbdprobe.py" "$fast" 12 2 > "$LAB_DIR/probe.json" &
probe=$!
cleanup_fn kill_pid "$probe"
sleep 1
t0=$SECONDS
for to in 1 2 1 2; do
  lab_cowctl "$to" migrate big --to "n$to" >/dev/null
  # polled every 0.5 s: the test's own processes (nsenter, cowctl, jq)
  # must not be what the probe measures on these two cores
  for _ in $(seq 30); do owner_is "$to" && break; sleep 0.5; done
  owner_is "$to" || fail "big did not move to node $to"
done
echo "   4 moves of big through a 200 ms link in $((SECONDS - t0)) s"
wait "$probe" || fail "the probe's reads failed: $(cat "$LAB_DIR/probe.json")"
probe=
echo "   probe during the moves:    $(cat "$LAB_DIR/probe.json")"
echo "   node 2's loop: $(lab_cowctl 2 --json nodes | jq -c .loop)"
ms=$(lab_cowctl 2 handoff-times | awk '$1 == "served" && $2 > m { m = $2 } END { print m + 0 }')
echo "   node 2's slowest takeover, asking to serving: $ms ms"
awk -v ms="$ms" 'BEGIN { exit !(ms >= 400) }' \
  || fail "the takeovers on node 2 took $ms ms: the link delay did not apply"
jq -e '.count > 4000 and .errors == 0' "$LAB_DIR/probe.json" >/dev/null \
  || fail "the probe did not run: $(cat "$LAB_DIR/probe.json")"
after=$(blocked)
echo "   node 2's loop waited for big's devices: $before ms before the moves, $after ms after"
awk -v a="$after" -v b="$before" 'BEGIN { exit !(a - b < 50) }' \
  || fail "node 2's loop blocked $(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }') ms in big's IO during the moves"
rm -f "$slow"
qio_ok "nbd+unix:///?socket=$(lab_dir 2)/run/big.sock" "big lost data on the moves" \
  "read -P 0x3c 0 64k" "read -P 0x3d 512G 64k" "read -P 0 1G 64k"
pass
