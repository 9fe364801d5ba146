#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A long gap of cowd's loop is logged with what its thread was doing
# (probe.c's watcher), and the longest one's is in `cowctl --json nodes`
# (loop.max_gap_in).  Node 1 of a one-node cluster serves volume v, whose
# CoW device is a file on a FUSE export of qemu-storage-daemon.  With
# qemu-storage-daemon stopped, `cowctl snapshot v` makes the loop flush
# that device (fdatasync, a blocking call of the held snapshot), which
# waits in the kernel for the stopped FUSE server; after 1 s the server
# runs again and the snapshot completes.  cowd's log line for that gap
# gives at least 0.7 s and names the call, the descriptor and the
# device's path, seen by nine looks in ten at least, with under 50 ms on
# a CPU between the first look and the last; nodes --json gives
# the same; the snapshot is taken and v reads the data written before it.
# First, an idle standalone cowd: its loop wakes for the probe's 20
# firings a second and little else (strace counts its epoll_wait calls
# over 3 s: at most 120; with the probe on a qb_loop timer, which polls
# without waiting through the last millisecond of each, there were 635).
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-storage-daemon qemu-io cowd cowctl jq strace

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"

echo "== an idle cowd's loop wakes for its probe, and does not poll in between"
start_cowd "$d/idle"
pid=$(cat "$d/idle/cowd.pid")
timeout -s INT 3 strace -f -c -e trace=epoll_wait -p "$pid" 2>"$d/strace.out" || true
n=$(awk '$NF == "epoll_wait" { print $4 }' "$d/strace.out")
echo "   $n epoll_wait calls in 3 s"
[ -n "$n" ] && [ "$n" -ge 30 ] && [ "$n" -le 120 ] \
  || fail "an idle cowd called epoll_wait '$n' times in 3 s (30 to 120 expected): $(cat "$d/strace.out")"
stop_cowd "$d/idle"

new_image "$d/base.img" 8M random
truncate -s 9M "$d/cow1.back" "$d/cow2.img"
touch "$d/cow1.img"
qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$d/cow1.back" \
  --export "type=fuse,id=e,node-name=f,mountpoint=$d/cow1.img,writable=on" \
  --pidfile "$d/qsd.pid" >"$d/qsd.log" 2>&1 &
qsd=$!
cleanup_fn sh -c "umount -l '$d/cow1.img' 2>/dev/null || true"
cleanup_fn kill_pid "$qsd"
cleanup_fn cont_pid "$qsd"
wait_for_file "$d/qsd.pid" 10 || fail "qemu-storage-daemon did not start: $(cat "$d/qsd.log")"
wait_until 10 grep -q " $d/cow1.img " /proc/mounts || fail "no FUSE export on $d/cow1.img"

# the export first: the host's mount namespace is a copy of this one
lab_init "lw$(printf %04x $((RANDOM)))"
lab_host 1
lab_corosync 1
lab_wait_quorate 1 30 || fail "node 1 not quorate"
lab_cowd 1 >/dev/null
c() { lab_cowctl 1 "$@"; }
c create v --base "$d/base.img" --cow "$d/cow1.img" >/dev/null || fail "create v"
c attach v >/dev/null || fail "attach v"
uri="nbd+unix:///?socket=$(lab_dir 1)/run/v.sock"
wait_until 20 c --json status v >/dev/null || fail "no status of v"
qio_ok "$uri" "a write before the snapshot" "write -P 0x5a 0 64k"

echo "== snapshot while the FUSE server of v's CoW device is stopped 1 s"
kill -STOP "$qsd"
c snapshot v --cow "$d/cow2.img" --name s1 >"$d/snap.out" 2>&1 &
snap=$!
sleep 1
kill -CONT "$qsd"
wait "$snap" || fail "snapshot failed: $(cat "$d/snap.out")"
[ "$(cat "$d/snap.out")" = "v: snapshot s1 taken; writes go to $d/cow2.img" ] \
  || fail "snapshot: $(cat "$d/snap.out")"
qio_ok "$uri" "the data written before the snapshot" "read -P 0x5a 0 64k"

line=$(grep "the loop did not turn" "$(lab_dir 1)/log/cowd.log" | tail -1)
echo "   ${line#*cowd: }"
re="the loop did not turn for ([0-9]+)\.[0-9] ms \(its thread waited [0-9.]+ ms for a CPU since the turn before\); it was in fdatasync on fd [0-9]+ \($d/cow1.img\)(, in the kernel at [a-z_0-9]+)? \(([0-9]+) of ([0-9]+) looks, every 10 ms; from the first to the last it ran ([0-9]+)\.[0-9] ms and waited [0-9.]+ ms for a CPU\)$"
[[ $line =~ $re ]] || fail "no log line naming the flush of $d/cow1.img: '$line'"
[ "${BASH_REMATCH[1]}" -ge 700 ] || fail "the gap was ${BASH_REMATCH[1]} ms, not the 1 s the server was stopped"
# the last looks may see the snapshot's next call, once the server runs
[ "${BASH_REMATCH[3]}" -ge 20 ] && [ $((BASH_REMATCH[3] * 10)) -ge $((BASH_REMATCH[4] * 9)) ] \
  || fail "most looks did not see the flush: ${BASH_REMATCH[3]} of ${BASH_REMATCH[4]}"
[ "${BASH_REMATCH[5]}" -lt 50 ] || fail "the loop's thread ran ${BASH_REMATCH[5]} ms while it waited in fdatasync"
in=$(c --json nodes | jq -r .loop.max_gap_in)
[ "$in" = "${line#*; it was }" ] || fail "nodes --json gives loop.max_gap_in '$in'"
c detach v >/dev/null || fail "detach v"
pass
