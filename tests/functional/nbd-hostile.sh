#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# NBD clients nobody here wrote (issue 16, gaps found with nbd-tester-client,
# libnbd's test programs and raw sockets): none may hurt the other volumes
# or cowd itself.  tests/nbdhostile.py speaks the protocol over raw sockets
# and asserts the exact replies; this script checks what cowd does with it.
#  - unread replies are bounded per connection (48 x 32 MiB never read);
#  - WRITE_ZEROES of 4 GiB costs no memory; a zero-length WRITE gets EINVAL
#    at once; flags foreign to a command get EINVAL;
#  - an option over 4096 bytes gets NBD_REP_ERR_TOO_BIG; silent or trickling
#    handshakes are dropped at nbd-handshake-timeout-ms;
#  - out of descriptors, cowd does not spin on accept or flood its log, and
#    accepts again once descriptors are free.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io python3 prlimit cowd cowctl
hostile="python3 ${abs_top_srcdir:-$(dirname "$0")/../..}/tests/nbdhostile.py"

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 64M random
truncate -s 4G "$d/big-base.img"
truncate -s 80M "$d/cow.img"
truncate -s 4200M "$d/big-cow.img"
printf '[cowd]\nnbd-handshake-timeout-ms = 1500\n' > "$d/cowd.conf"
start_cowd "$d/run" --config "$d/cowd.conf"
pid=${_cowd_pid[$d/run]}
c() { cowctl --run-dir "$d/run" "$@"; }
c create v --base "$d/base.img" --cow "$d/cow.img"
c create big --base "$d/big-base.img" --cow "$d/big-cow.img" --commit flush
v=$(c attach v); c attach big >/dev/null
qemu-io -f raw "$v" -c "write -P 0x5a 1M 64k" >/dev/null

echo "== command flags"
$hostile "$d/run/v.sock" flags
echo "== zero-length WRITE"
$hostile "$d/run/v.sock" zerowrite
echo "== replies the client never reads"
$hostile "$d/run/v.sock" unread "$pid"
echo "== WRITE_ZEROES of 4 GiB"
$hostile "$d/run/big.sock" bigzero "$pid"
echo "== an option of 9006 bytes"
$hostile "$d/run/v.sock" longopt
echo "== idle and trickling handshakes (deadline 1500 ms)"
$hostile "$d/run/v.sock" idle 1500
grep -q "nbd: v: dropping the client: no export chosen within 1500 ms of connecting" "$d/run.log" \
  || fail "no sentence in the log for the dropped handshake"
qio_ok "$v" "v lost data among hostile clients" "read -P 0x5a 1M 64k"

echo "== out of descriptors"
stop_cowd "$d/run"
start_cowd "$d/run"
pid=${_cowd_pid[$d/run]}
v=$(c attach v)
nfd=$(ls /proc/$pid/fd | wc -l)
prlimit --pid "$pid" --nofile=$((nfd + 4)):   # the soft limit
lines0=$(wc -l < "$d/run.log")
python3 - "$d/run/v.sock" "$pid" <<'PY' || fail "cowd spun on accept with no descriptors"
import os, socket, sys, time
path, pid = sys.argv[1], int(sys.argv[2])
def cpu():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
held = []
for i in range(30):                     # more than the limit; backlog 64
    s = socket.socket(socket.AF_UNIX); s.connect(path); held.append(s)
time.sleep(0.5)
c0, t0 = cpu(), time.monotonic()
time.sleep(3)
share = (cpu() - c0) / (time.monotonic() - t0)
print("  30 clients over the descriptor limit: cowd used %.0f%% of a CPU "
      "for 3 s" % (share * 100))
for s in held: s.close()
sys.exit(0 if share < 0.2 else 1)
PY
lines=$(tail -n +$((lines0 + 1)) "$d/run.log" | grep -c "cannot accept" || true)
echo "  accept failures logged: $lines line(s)"
if [ "$lines" -gt 3 ]; then
  tail -n +$((lines0 + 1)) "$d/run.log" | head -n 20 >&2
  fail "cowd logged $lines accept failures in 3.5 s out of descriptors"
fi
grep -q "nbd: v: cannot accept a client on .*v.sock: Too many open files; not accepting for 100 ms" "$d/run.log" \
  || fail "no sentence in the log for the failing accept"
prlimit --pid "$pid" --nofile=1024:
wait_until 10 qemu-io -f raw "$v" -c "read -P 0x5a 1M 64k" \
  || fail "cowd did not accept clients again once descriptors were free"
qio_ok "$v" "v lost data after running out of descriptors" "read -P 0x5a 1M 64k"
pass
