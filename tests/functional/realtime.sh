#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# cowd.conf realtime-priority: cowd's loop (its main thread: NBD, CPG,
# the lease) runs SCHED_RR at that priority, and so do io_uring's workers,
# which do its reads and writes; no other thread of cowd does.
#  - with realtime-priority = 50: the main thread is SCHED_RR at 50 and
#    says so in the log; after a create (a thread formats), an attach and
#    writes, while a client reads, io_uring's workers (iou-wrk-*, at least
#    one) are SCHED_RR at 50 and every other thread of cowd (the store's
#    checkpointer at least) is SCHED_OTHER; the volume reads back what was
#    written;
#  - without the key: SCHED_OTHER, no such line;
#  - a kernel that refuses (cowd without CAP_SYS_NICE): a warning with the
#    cause, cowd runs at ordinary priority and serves;
#  - bad values (99, -1, abc, 1.5) stop cowd with exit status 2 and one
#    sentence naming the key and the value;
#  - in a cluster, `cowctl --json nodes` gives loop.realtime_priority.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io chrt setpriv jq
requires_root

T=$(mktemp -d /tmp/cowherd-rt.XXXXXX)
cleanup_fn rm -rf "$T"
new_image "$T/base.img" 8M random
new_image "$T/cow1.img" 16M zero
new_image "$T/cow3.img" 16M zero

# policy TID: "SCHED_RR 50", "SCHED_OTHER 0": chrt's two lines as one.
policy() {
  chrt -p "$1" | sed -n 's/.*policy: \([A-Z_]*\).*/\1/p; s/.*priority: \([0-9]*\)/\1/p' \
    | tr '\n' ' ' | sed 's/ $//'
}
# threads_as PID PRIO: io_uring's workers (iou-wrk-*) run SCHED_RR PRIO and
# every other thread but the main one SCHED_OTHER; "W O", how many of each
# (the caller sees that neither check was empty).
threads_as() {
  local t w=0 o=0 p c
  for t in /proc/"$1"/task/*; do
    t=${t##*/}
    [ "$t" = "$1" ] && continue
    c=$(cat "/proc/$1/task/$t/comm" 2>/dev/null) || continue # gone meanwhile
    p=$(policy "$t" 2>/dev/null) || continue
    case $c in
      iou-wrk-*)
        [ "$p" = "SCHED_RR $2" ] || fail "io_uring worker $t ($c) runs $p, not SCHED_RR $2"
        w=$((w + 1)) ;;
      *)
        [ "$p" = "SCHED_OTHER 0" ] || fail "thread $t ($c) of cowd runs $p, not SCHED_OTHER 0"
        o=$((o + 1)) ;;
    esac
  done
  [ $o -ge 1 ] || fail "cowd has no thread besides its loop and io_uring's workers to check"
  echo "$w $o"
}

echo "== realtime-priority = 50"
printf '[cowd]\nrealtime-priority = 50\n' > "$T/rt.conf"
start_cowd "$T/r1" -c "$T/rt.conf"
pid=${_cowd_pid[$T/r1]}
[ "$(policy "$pid")" = "SCHED_RR 50" ] \
  || fail "cowd's loop runs $(policy "$pid"), not SCHED_RR 50: $(chrt -p "$pid")"
! chrt -p "$pid" | grep -q 'SCHED_RESET_ON_FORK' \
  || fail "cowd's loop does not pass SCHED_RR on to io_uring's workers: $(chrt -p "$pid")"
grep -q 'cowd: the loop runs at realtime priority 50 (SCHED_RR)' "$T/r1.log" \
  || fail "no log line says the loop is realtime: $(cat "$T/r1.log")"
cowctl --run-dir "$T/r1" create v --base "$T/base.img" --cow "$T/cow1.img" >/dev/null
u=$(cowctl --run-dir "$T/r1" attach v)
qio_ok "$u" "writes on a realtime cowd" "write -P 0x5a 0 1M" "write -P 0xa5 4M 64k" \
  "read -P 0x5a 0 1M" "read -P 0xa5 4M 64k"
# io_uring's workers are started for I/O and leave after a few idle
# seconds: a client reads (O_DIRECT, which the kernel hands to a worker)
# while they are looked at.
reads=(); for i in $(seq 200); do reads+=(-c "read $(((i * 37 % 120) * 65536)) 64k"); done
qemu-io -r -f raw "${reads[@]}" "$u" >/dev/null &
rd=$!
w=0
for i in $(seq 50); do
  read -r w o <<<"$(threads_as "$pid" 50)"
  [ "$w" -ge 1 ] && break
  sleep 0.1
done
wait "$rd" || fail "reading while the threads were looked at failed"
[ "$w" -ge 1 ] || fail "cowd started no io_uring worker while a client read"
echo "   loop SCHED_RR 50; $w io_uring worker(s) SCHED_RR 50; $o other thread(s) SCHED_OTHER"
[ "$(policy "$pid")" = "SCHED_RR 50" ] || fail "the loop's policy changed: $(policy "$pid")"
stop_cowd "$T/r1"

echo "== no realtime-priority: ordinary"
start_cowd "$T/r2"
pid=${_cowd_pid[$T/r2]}
[ "$(policy "$pid")" = "SCHED_OTHER 0" ] || fail "cowd's loop runs $(policy "$pid") by default"
! grep -q 'realtime' "$T/r2.log" || fail "a default cowd logs about realtime: $(grep realtime "$T/r2.log")"
stop_cowd "$T/r2"

echo "== the kernel refuses (no CAP_SYS_NICE)"
mkdir -p "$T/r3"
setpriv --inh-caps=-sys_nice --bounding-set=-sys_nice \
  cowd -f --standalone -c "$T/rt.conf" --run-dir "$T/r3" --state-dir "$T/r3/state" \
  >>"$T/r3.log" 2>&1 &
pid=$!
cleanup_fn kill_pid "$pid"
wait_until 30 cowctl --run-dir "$T/r3" list || fail "cowd without CAP_SYS_NICE did not start: $(cat "$T/r3.log")"
grep -q 'cowd: cannot run the loop at realtime priority 50 (Operation not permitted): it runs at ordinary priority' "$T/r3.log" \
  || fail "no warning when SCHED_RR is refused: $(cat "$T/r3.log")"
[ "$(policy "$pid")" = "SCHED_OTHER 0" ] || fail "refused, the loop runs $(policy "$pid")"
cowctl --run-dir "$T/r3" create w --base "$T/base.img" --cow "$T/cow3.img" >/dev/null
u=$(cowctl --run-dir "$T/r3" attach w)
qio_ok "$u" "writes on a cowd refused realtime" "write -P 0x33 0 64k" "read -P 0x33 0 64k"
kill_pid "$pid"

echo "== bad values"
for bad in 99 -1 abc 1.5 ""; do
  printf '[cowd]\nrealtime-priority = %s\n' "$bad" > "$T/bad.conf"
  rc=0
  out=$(timeout 10 cowd -f --standalone -c "$T/bad.conf" --run-dir "$T/r4" \
    --state-dir "$T/r4/state" 2>&1) || rc=$?
  [ $rc = 2 ] || fail "realtime-priority = '$bad': exit $rc, not 2: $out"
  grep -qF "realtime-priority: '$bad' is not a realtime priority from 0 to 98" <<<"$out" \
    || fail "realtime-priority = '$bad': $out"
done
[ ! -e "$T/r4/cowd.pid" ] || fail "a refused configuration left a pid file"
echo "   99, -1, abc, 1.5 and nothing: exit 2, the sentence"

echo "== in a cluster: cowctl --json nodes"
lab_init "rt$(printf %04x $((RANDOM)))"
lab_host 1
lab_corosync 1
lab_wait_quorate 1 30 || fail "node 1 not quorate"
lab_cowd 1 -c "$T/rt.conf" >/dev/null
got=$(lab_cowctl 1 --json nodes | jq -r .loop.realtime_priority)
[ "$got" = 50 ] || fail "nodes --json gives loop.realtime_priority '$got', not 50"
echo "   loop.realtime_priority 50"
pass
