#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A cowd that dies with a cowctl connected leaves the connection's shared
# memory (libqb's /dev/shm/qb-SERVER-CLIENT-N-XXXXXX); the
# next cowd of the run directory removes those of its own control service
# whose server is gone, and nothing else:
#  - a cowd made to exit in the middle of a snapshot (COWD_TEST_CRASH_AT,
#    as abrupt as SIGKILL) while cowctl waits for the answer: what it left
#    (the files and their directory, or only the directory when libqb's
#    client removed the files) is gone after the restart;
#  - a directory laid out as libqb does, its server pid dead: removed;
#    an empty one of a dead server and a dead client: removed;
#  - kept: the same with a live server pid, one of another service, an
#    empty one whose client lives;
#  - the log says how many it removed (the no one's ones another cowd
#    starting meanwhile may take first: make -j2 check), and cowd serves
#    the volume.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires cowd cowctl qemu-io
requires_root
[ -d /dev/shm ] || { echo "SKIP: no /dev/shm"; exit 77; }

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 8M random
truncate -s 9M "$d/cow1.img" "$d/cow2.img"
start_cowd "$d/run"
svc=$(sed -n 's/.*ctl: listening as \(cowd-[0-9a-f]*\)$/\1/p' "$d/run.log" | tail -1)
[ -n "$svc" ] || fail "cowd did not log its control service's name: $(cat "$d/run.log")"
c() { cowctl --run-dir "$d/run" "$@"; }
c create v --base "$d/base.img" --cow "$d/cow1.img" >/dev/null
c attach v >/dev/null

cleanup_fn sh -c "rm -rf /dev/shm/qb-*-$$-7-rt*"

echo "== cowd exits in a snapshot while cowctl waits"
stop_cowd "$d/run"
COWD_TEST_CRASH_AT=snapshot-start start_cowd "$d/run"
pid=${_cowd_pid[$d/run]}
rc=0; out=$(c snapshot v --cow "$d/cow2.img" 2>&1) || rc=$?
[ $rc = 3 ] || fail "the snapshot in a crashing cowd: exit $rc, $out"
wait_until 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "cowd did not exit at snapshot-start"
grep -q "test hook: exiting at snapshot-start" "$d/run.log" || fail "cowd never reached snapshot-start"
rm -f "$d/run/cowd.pid"
left=$(ls -d /dev/shm/qb-"$pid"-* 2>/dev/null | wc -l)
echo "   the dead cowd (pid $pid) left $left connection director(y/ies) in /dev/shm:" \
  "$(ls /dev/shm/qb-"$pid"-* 2>/dev/null | grep -c "^qb-.*-$svc-" || true) file(s) of $svc"

# A directory as libqb lays it out: qb-SERVER-CLIENT-N-XXXXXX.
sleep 0 & dead=$!; wait $dead
fake() {                     # fake SERVERPID SUFFIX SERVICE
  local dir=/dev/shm/qb-$1-$$-7-$2 k p
  mkdir -p "$dir"
  for k in request response event; do
    for p in header data; do echo x > "$dir/qb-$k-$3-$p"; done
  done
}
fake "$dead" rtgone "$svc"
fake $$ rtkeep "$svc"
fake "$dead" rtother cowd-00000000
mkdir "/dev/shm/qb-$dead-$dead-7-rtempty" "/dev/shm/qb-$dead-$$-7-rtclient"
start_cowd "$d/run"

[ ! -e "/dev/shm/qb-$dead-$$-7-rtgone" ] || fail "a dead server's directory of $svc stayed"
[ -z "$(ls -d /dev/shm/qb-"$pid"-* 2>/dev/null)" ] \
  || fail "the crashed cowd's connections stayed: $(ls -d /dev/shm/qb-"$pid"-*)"
[ ! -e "/dev/shm/qb-$dead-$dead-7-rtempty" ] || fail "an empty directory of a dead server and client stayed"
[ -d "/dev/shm/qb-$dead-$$-7-rtclient" ] || fail "an empty directory whose client lives was removed"
[ -e "/dev/shm/qb-$$-$$-7-rtkeep/qb-request-$svc-header" ] || fail "a live server's directory was removed"
[ -e "/dev/shm/qb-$dead-$$-7-rtother/qb-request-cowd-00000000-header" ] \
  || fail "another service's directory was removed"
# The count: this service's dead directory (rtgone) is this cowd's alone
# to remove; the empty ones of a dead server and a dead client (rtempty,
# and the crashed cowd's when its client removed the files) are no one's,
# and any cowd starting meanwhile on this machine (another test, under
# make -j) may remove them first.  So from 1 to left + 2, all of them gone.
re="ctl: removed the shared memory of \([0-9]*\) control connection(s) that an earlier cowd of run directory $d/run left in /dev/shm"
got=$(sed -n "s#.*$re\$#\1#p" "$d/run.log" | tail -1)
[ -n "$got" ] && [ "$got" -ge 1 ] && [ "$got" -le $((left + 2)) ] \
  || fail "no line 'ctl: removed the shared memory of 1 to $((left + 2)) control connection(s) ... $d/run ...': $(grep 'ctl:' "$d/run.log")"
echo "   removed $got of $((left + 2)) (the rest no one's, removed by another cowd meanwhile); a live server's, another service's and a live client's kept"

u=$(c attach v)
qio_ok "$u" "after the sweep" "write -P 0x42 0 64k" "read -P 0x42 0 64k"
pass
