# SPDX-License-Identifier: GPL-2.0-or-later
# tests/functions.sh: shared helpers for cowherd's system tests (sourced).
#
#   requires CMD...        skip (exit 77) when a tool is missing
#   requires_root          skip unless root
#   cleanup_fn CMD ARGS    run at exit, in reverse order, even on failure
#   fail MSG / pass        end the test
#   wait_for_file PATH SECS, wait_for_socket PATH SECS, wait_until SECS CMD..
#   kill_pid PID [SECS]    TERM, wait, then KILL: only ever by pid
#   kill_pidfile FILE, wait_for_pidfile FILE [SECS]  a daemon's own pid file
#   new_image FILE SIZE random|zero
#   expect_error REGEX ARGS, expect_exact SENTENCE ARGS  (c is cowctl)
#   start_cowd RUNDIR [ARGS], stop_cowd RUNDIR
#   crash_restart_cowd RUNDIR "LISTED" VOLS...  kill -9, start, check
#   qio_ok URI WHY CMD...  qemu-io runs every command and each succeeds
#   read_watch URI STOPFILE OUT  the slowest of reads every 5 ms (nbdsh)
#   read_watch_end PID STOPFILE OUT MIN WHAT  stop it; none 500 ms, MIN reads
set -euo pipefail
export LC_ALL=C
top_srcdir=${abs_top_srcdir:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
top_builddir=${abs_top_builddir:-$top_srcdir}
# System tools first: nbdsh needs the python3 that has the nbd module.
export PATH="$top_builddir/node/cowd:$top_builddir/node/cowctl:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

_cleanups=()
cleanup_fn() { _cleanups+=("$(printf '%q ' "$@")"); }
_cleanup_status=0             # the exit status, while the cleanups run
_run_cleanups() {
  local rc=$? i
  _cleanup_status=$rc
  # A second INT or TERM (a harness's, timeout's, a second Ctrl-C) must not
  # end the cleanups half way: it left a tgtd running after a test that
  # was stopped twice.
  trap '' INT TERM
  set +e
  for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
    eval "${_cleanups[$i]}" || echo "cleanup failed: ${_cleanups[$i]}" >&2
  done
  _cleanups=()
  exit $rc
}
# The libqb blackbox rings (/dev/shm/qb-cowd-PID-blackbox-*) of the cowd
# processes a test killed with SIGKILL: removed at the end, whatever the
# test did (the rings of live cowd processes stay).
_shm_clean() {
  local f pid
  for f in /dev/shm/qb-cowd-*-blackbox-*; do
    [ -e "$f" ] || continue
    pid=${f#/dev/shm/qb-cowd-}; pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || rm -f "$f"
  done
}
_cleanups=("_shm_clean")
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

requires() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || { echo "SKIP: $c is not installed"; exit 77; }
  done
}
# slowsync_shim: shim= the path of tests/helpers' slowsync.so (every sync
# of the process it is preloaded in waits SLOWSYNC_MS more); fails the
# test when it is not built.
slowsync_shim() {
  shim=${abs_top_builddir:-$top_srcdir}/tests/helpers/.libs/slowsync.so
  [ -f "$shim" ] || fail "the shim $shim is not built (make check builds it)"
}
requires_root() { [ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }; }

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "PASS: $(basename "$0")"; exit 0; }

wait_until() {               # wait_until SECS CMD...
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.05
  done
}
wait_for_file() { wait_until "${2:-10}" test -e "$1"; }
wait_for_socket() { wait_until "${2:-10}" test -S "$1"; }

# defs_sql STATE_DIR SQL: run SQL on cowd's definitions store there
# (volumes.db, one row per volume: see cowd(8) VOLUMES).
defs_sql() { sqlite3 -cmd '.timeout 2000' "$1/volumes.db" "$2"; }

kill_pid() {                 # kill_pid PID [SECS]
  local pid=$1 secs=${2:-10}
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  wait_until "$secs" sh -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
  wait_until 5 sh -c "! kill -0 $pid" || true
}

# cont_pid PID: a process this test stopped runs again, if it is still
# there (a cleanup after the test killed it has nothing to do).
cont_pid() { kill -0 "$1" 2>/dev/null || return 0; kill -CONT "$1"; }

# kill_pidfile FILE: kill_pid the pid FILE names, if it names one.  For a
# daemon that writes its own pid file (nbdkit -P), registered with
# cleanup_fn before it starts: the file is read at the end, not while the
# daemon may still be writing it (an empty read killed nothing and left
# the daemon running).
kill_pidfile() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [ -z "$pid" ] || kill_pid "$pid"
}
# wait_for_pidfile FILE [SECS]: until FILE holds a pid.
wait_for_pidfile() { wait_until "${2:-10}" grep -q '^[0-9]' "$1"; }

# fuse_exports DIR SOCKET:FILE:on|off...: one qemu-storage-daemon (pid
# file, log in DIR) with, per argument, a FUSE export on FILE (made here)
# of the NBD server on SOCKET, writable or not; stopped and unmounted at
# the end of the test.
fuse_exports() {
  local dir=$1 a i=0 files=() args=(); shift
  for a in "$@"; do
    IFS=: read -r sock file rw <<<"$a"
    touch "$file"; files+=("$file"); i=$((i + 1))
    args+=(--blockdev "driver=nbd,node-name=n$i,server.type=unix,server.path=$sock"
      --export "type=fuse,id=e$i,node-name=n$i,mountpoint=$file,writable=$rw")
  done
  qemu-storage-daemon "${args[@]}" --pidfile "$dir/qsd.pid" >"$dir/qsd.log" 2>&1 &
  local qsd=$!
  cleanup_fn sh -c "umount -l $(printf "'%s' " "${files[@]}") 2>/dev/null || true"
  cleanup_fn kill_pid "$qsd"
  wait_for_file "$dir/qsd.pid" 10 || fail "qemu-storage-daemon did not start: $(cat "$dir/qsd.log")"
  for a in "${files[@]}"; do
    wait_until 10 grep -q " $a " /proc/mounts || fail "no FUSE export on $a"
  done
}

new_image() {                # new_image FILE SIZE random|zero
  local bytes; bytes=$(numfmt --from=iec "$2")
  case ${3:-zero} in
    random) head -c "$bytes" /dev/urandom > "$1" ;;
    *) rm -f "$1"; truncate -s "$bytes" "$1" ;;
  esac
}

# expect_error REGEX ARGS...: the test's c() (a cowctl wrapper) must fail
# with a message matching REGEX.
expect_error() {
  local re=$1; shift
  local out rc=0
  out=$(c "$@" 2>&1) || rc=$?
  [ $rc -ne 0 ] || fail "cowctl $* succeeded; expected an error"
  echo "  $out"
  [[ $out =~ $re ]] || fail "error for 'cowctl $*' does not match /$re/: $out"
}

# expect_exact SENTENCE ARGS...: c ARGS fails with exit 1 and prints exactly
# "cowctl: SENTENCE".
expect_exact() {
  local want=$1 out rc=0; shift
  out=$(c "$@" 2>&1) || rc=$?
  [ $rc -eq 1 ] || fail "cowctl $* exited $rc (expected 1): $out"
  [ "$out" = "cowctl: $want" ] || fail "cowctl $*: got '$out', expected 'cowctl: $want'"
  echo "  $out"
}

# cowd instances, one per run directory; logs in RUNDIR.log.
declare -A _cowd_pid
start_cowd() {               # start_cowd RUNDIR [ARGS]
  local run=$1; shift
  mkdir -p "$run"
  cowd -f --standalone --run-dir "$run" --state-dir "$run/state" "$@" \
    >>"$run.log" 2>&1 &
  local pid=$!
  _cowd_pid[$run]=$pid
  cleanup_fn kill_pid "$pid"
  wait_until 30 cowctl --run-dir "$run" list \
    || { cat "$run.log" >&2; fail "cowd did not start in $run"; }
}
# crash_restart_cowd RUNDIR "LISTED" VOLS...: cowd killed at once (no
# clean stop) and started again lists exactly LISTED (names in order,
# blank-separated), and each of VOLS attaches and reads its first bytes:
# what cowd answered before the kill was durable.
crash_restart_cowd() {
  local run=$1 listed=$2 pid=${_cowd_pid[$1]} u v; shift 2
  kill -9 "$pid"; wait_until 10 sh -c "! kill -0 $pid" || fail "cowd did not die"
  rm -f "$run/cowd.pid"
  start_cowd "$run"
  [ "$(cowctl --run-dir "$run" list | tail -n +2 | awk '{print $1}' | tr '\n' ' ')" = "$listed " ] \
    || fail "list after kill -9 and a restart: $(cowctl --run-dir "$run" list)"
  for v in "$@"; do
    u=$(cowctl --run-dir "$run" attach "$v") || fail "$v does not attach after kill -9: $u"
    qemu-io -f raw "$u" -c "read -v 0 16" | head -1 | grep -q "^00000000:" || fail "$v does not read"
    cowctl --run-dir "$run" detach "$v" >/dev/null
  done
}
# read_watch URI STOPFILE OUT: read 4K of URI every 5 ms (nbdsh) until
# STOPFILE exists; then "COUNT WORST-MS" in OUT, the slowest read's time.
read_watch() {
  STOP=$2 nbdsh -u "$1" -c '
import os, time
n, worst = 0, 0.0
while not os.path.exists(os.environ["STOP"]):
    t = time.monotonic()
    h.pread(4096, 0)
    worst = max(worst, time.monotonic() - t)
    n += 1
    time.sleep(0.005)
print(n, round(worst * 1000, 1))
' > "$3" 2>&1
}
# read_watch_end PID STOPFILE OUT MIN WHAT [SAY]: stop the read_watch of
# pid PID (a child of this shell: not in a $(...)) and check it: at least
# MIN reads, none of them 500 ms or more (WHAT says what went on
# meanwhile); prints "   SAY; N reads meanwhile, the slowest W ms".
read_watch_end() {
  local n worst
  touch "$2"; wait "$1" || fail "the reader failed: $(cat "$3")"
  read -r n worst < "$3"
  awk -v w="$worst" 'BEGIN { exit !(w < 500) }' || fail "a read waited $worst ms while $5"
  [ "$n" -ge "$4" ] || fail "only $n reads while $5"
  echo "   ${6:+$6; }$n reads meanwhile, the slowest $worst ms"
}
stop_cowd() {                # stop_cowd RUNDIR
  local run=$1 pid=${_cowd_pid[$1]:-}
  [ -n "$pid" ] || pid=$(cat "$run/cowd.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill_pid "$pid" 30
  wait_until 5 sh -c "! test -e '$run/cowd.pid'" || true
}

# qio_ok URI WHY QEMU-IO-COMMAND...: every command succeeds (reads with -P
# verify their pattern): qemu-io exits 0, prints one "read N/N bytes" or
# "wrote N/N bytes" line per command and no "failed".  A client that cannot
# connect fails the test as well, never passes it.
qio_ok() {
  local uri=$1 why=$2 a out rc n args=(); shift 2
  for a in "$@"; do args+=(-c "$a"); done
  set +e
  out=$(qemu-io -f raw "$uri" "${args[@]}" 2>&1)
  rc=$?
  set -e
  n=$(grep -cE '^(read|wrote) ([0-9]+)/\2 bytes at offset' <<<"$out" || true)
  if [ $rc -ne 0 ] || [ "$n" -ne $# ] || grep -q failed <<<"$out"; then
    fail "$why (qemu-io exit $rc, $n of $# commands done): $out"
  fi
}
