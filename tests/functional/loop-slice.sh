#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# cowd.conf loop-slice-us: cowd's loop (its main thread) asks the kernel
# for time slices of that many microseconds (sched_setattr's
# sched_runtime, Linux 6.12 or later), and no other thread of cowd does.
#  - by default: the loop's slice is 100 us and the log says so; every
#    other thread (after a create and an attach: the store's checkpointer
#    at least) has the kernel's; the volume reads back what was written;
#  - loop-slice-us = 2000: 2000 us; = 0: the kernel's, no such line;
#  - bad values (50, 100001, -1, abc, 1.5, nothing) stop cowd with exit
#    status 2 and one sentence naming the key and the value;
#  - in a cluster, `cowctl --json nodes` gives loop.slice_us.
# On a kernel that keeps no slice of a thread's own, the log must say so
# and every thread keeps the kernel's.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io python3 jq

T=$(mktemp -d /tmp/cowherd-slice.XXXXXX)
cleanup_fn rm -rf "$T"
new_image "$T/base.img" 8M random
new_image "$T/cow1.img" 16M zero

# slice TID: the thread's slice in us as sched_getattr gives it back
# (sched_runtime of an ordinary thread; 0 from a kernel that gives none).
slice() {
  python3 - "$1" <<'PY'
import ctypes, os, struct, sys
nr = {"x86_64": 315, "aarch64": 275, "riscv64": 275, "ppc64le": 356,
      "s390x": 346, "i686": 352}.get(os.uname().machine)
if nr is None:
    sys.exit("no sched_getattr number for " + os.uname().machine)
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(48)
if libc.syscall(nr, int(sys.argv[1]), buf, 48, 0) != 0:
    sys.exit("sched_getattr: " + os.strerror(ctypes.get_errno()))
size, policy, flags, nice, prio, runtime = struct.unpack_from("=IIQiIQ", buf)
print(runtime // 1000 if policy == 0 else 0)
PY
}
# The kernel's slice (a thread that asked for none: this shell), and
# whether the kernel keeps a thread's own (asked of a python of our own).
kernel_slice=$(slice $$)
kernel_keeps=$(python3 - <<'PY'
import ctypes, os, struct
nr = {"x86_64": 314, "aarch64": 274, "riscv64": 274, "ppc64le": 355,
      "s390x": 345, "i686": 351}[os.uname().machine]
libc = ctypes.CDLL(None, use_errno=True)
a = struct.pack("=IIQiIQQQ", 48, 0, 0, os.nice(0), 0, 300000, 0, 0)
libc.syscall(nr, 0, ctypes.create_string_buffer(a, 48), 0)
b = ctypes.create_string_buffer(48)
libc.syscall(nr + 1, 0, b, 48, 0)
print("yes" if struct.unpack_from("=IIQiIQ", b)[5] == 300000 else "no")
PY
)
echo "   this kernel ($(uname -r)): its slice ${kernel_slice} us; keeps a thread's own: $kernel_keeps"
echo "== by default: 100 us"
start_cowd "$T/s1"
pid=${_cowd_pid[$T/s1]}
if [ "$kernel_keeps" = yes ]; then
  [ "$(slice "$pid")" = 100 ] || fail "cowd's loop has a slice of $(slice "$pid") us, not 100"
  grep -q 'cowd: the loop runs with time slices of 100 us' "$T/s1.log" \
    || fail "no log line gives the loop's slice: $(cat "$T/s1.log")"
else
  [ "$(slice "$pid")" = "$kernel_slice" ] || fail "an old kernel, and the loop has a slice of $(slice "$pid") us"
  grep -q "cowd: this kernel keeps no time slice of a thread's own (Linux 6.12 or later does): the loop has the kernel's" "$T/s1.log" \
    || fail "no log line says the kernel keeps no slice: $(cat "$T/s1.log")"
fi
cowctl --run-dir "$T/s1" create v --base "$T/base.img" --cow "$T/cow1.img" >/dev/null
u=$(cowctl --run-dir "$T/s1" attach v)
qio_ok "$u" "writes on a cowd of short slices" "write -P 0x5a 0 1M" "write -P 0xa5 4M 64k" \
  "read -P 0x5a 0 1M" "read -P 0xa5 4M 64k"
n=$(other_threads "$pid" slice "$kernel_slice" "a slice in us of")
echo "   loop: $(slice "$pid") us; $n other thread(s) the kernel's"
stop_cowd "$T/s1"

echo "== loop-slice-us = 2000, and = 0"
printf '[cowd]\nloop-slice-us = 2000\n' > "$T/2000.conf"
start_cowd "$T/s2" -c "$T/2000.conf"
pid=${_cowd_pid[$T/s2]}
want=2000; [ "$kernel_keeps" = yes ] || want=$kernel_slice
[ "$(slice "$pid")" = $want ] || fail "loop-slice-us = 2000: the loop has $(slice "$pid") us, not $want"
stop_cowd "$T/s2"
printf '[cowd]\nloop-slice-us = 0\n' > "$T/0.conf"
start_cowd "$T/s3" -c "$T/0.conf"
pid=${_cowd_pid[$T/s3]}
[ "$(slice "$pid")" = "$kernel_slice" ] || fail "loop-slice-us = 0: the loop has $(slice "$pid") us, not the kernel's $kernel_slice"
! grep -q 'time slice' "$T/s3.log" || fail "loop-slice-us = 0 logs a slice: $(grep 'time slice' "$T/s3.log")"
stop_cowd "$T/s3"
echo "   2000: $want us; 0: the kernel's $kernel_slice us, not logged"

echo "== bad values"
for bad in 50 100001 -1 abc 1.5 ""; do
  printf '[cowd]\nloop-slice-us = %s\n' "$bad" > "$T/bad.conf"
  rc=0
  out=$(timeout 10 cowd -f --standalone -c "$T/bad.conf" --run-dir "$T/s4" \
    --state-dir "$T/s4/state" 2>&1) || rc=$?
  [ $rc = 2 ] || fail "loop-slice-us = '$bad': exit $rc, not 2: $out"
  if [ "$bad" = 50 ]; then
    want="loop-slice-us: '50' is below the kernel's least time slice of 100 microseconds (0: the kernel's default)"
  else
    want="loop-slice-us: '$bad' is not 0 or a time slice in microseconds from 0 to 100000"
  fi
  grep -qF "$want" <<<"$out" || fail "loop-slice-us = '$bad': $out"
done
[ ! -e "$T/s4/cowd.pid" ] || fail "a refused configuration left a pid file"
echo "   50, 100001, -1, abc, 1.5 and nothing: exit 2, the sentence"

echo "== in a cluster: cowctl --json nodes"
lab_init "sl$(printf %04x $((RANDOM)))"
lab_host 1
lab_corosync 1
lab_wait_quorate 1 30 || fail "node 1 not quorate"
lab_cowd 1 -c "$T/2000.conf" >/dev/null
got=$(lab_cowctl 1 --json nodes | jq -r .loop.slice_us)
want=2000; [ "$kernel_keeps" = yes ] || want=$kernel_slice
[ "$got" = $want ] || fail "nodes --json gives loop.slice_us '$got', not $want"
echo "   loop.slice_us $got"
pass
