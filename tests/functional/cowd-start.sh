#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# cowd's start-up (issue 10 items 4 and 8): without -f, cowd returns only
# once it serves (exit 0) or has failed (exit 1, the sentence on stderr,
# no pid file left behind, the running cowd's pid file untouched); its
# blackbox is written where an operator reads it with qb-blackbox, on
# `cowctl debug dump` and on a fatal signal, and the /dev/shm rings of
# dead cowd processes are removed at the next start.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires cowd cowctl qb-blackbox
requires_root

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
# start_daemon RUNDIR ARGS...: cowd without -f; sets rc and err.
start_daemon() {
  local run=$1; shift
  rc=0
  cowd --run-dir "$run" --state-dir "$run/state" "$@" 2>"$d/err" || rc=$?
  err=$(cat "$d/err")
  echo "  cowd $* -> exit $rc: $err"
}
daemon_pid() { cat "$1/cowd.pid"; }
# bb_has FILE TEXT: qb-blackbox prints a record containing TEXT.
bb_has() { local out; out=$(qb-blackbox "$1" 2>/dev/null || true); grep -qF -- "$2" <<<"$out"; }

echo "== a daemon that starts: exit 0, serving when cowd returns"
start_daemon "$d/a" --standalone
[ $rc = 0 ] && [ -z "$err" ] || fail "start: exit $rc: $err"
pid=$(daemon_pid "$d/a")
cleanup_fn kill_pid "$pid"
cowctl --run-dir "$d/a" list >/dev/null || fail "cowd returned before it served"

echo "== 1: another cowd on the run directory"
start_daemon "$d/a" --standalone
[ $rc = 1 ] || fail "second cowd on one run directory: exit $rc"
[ "$err" = "cowd: another cowd already runs with run directory $d/a" ] \
  || fail "second cowd: stderr '$err'"
[ "$(daemon_pid "$d/a")" = "$pid" ] || fail "the running cowd's pid file changed"
kill -0 "$pid" || fail "the running cowd died"

echo "== 2: cluster-name in the configuration and no corosync"
printf '[cowd]\ncluster-name = nocluster\n' > "$d/cluster.conf"
start_daemon "$d/b" --config "$d/cluster.conf"
[ $rc = 1 ] || fail "cluster start without corosync: exit $rc"
[ "$err" = "cowd: cannot join cluster nocluster: corosync does not run on this host, or refused the connection" ] \
  || fail "cluster start: stderr '$err'"
[ ! -e "$d/b/cowd.pid" ] || fail "a failed start left $d/b/cowd.pid"

echo "== 3: a broken volumes.conf"
mkdir -p "$d/c/state"
echo "garbage" > "$d/c/state/volumes.conf"
start_daemon "$d/c" --standalone
[ $rc = 1 ] || fail "broken volumes.conf: exit $rc"
[ "$err" = "cowd: $d/c/state/volumes.conf:1: expected 'key = value' inside a [section]" ] \
  || fail "broken volumes.conf: stderr '$err'"
[ ! -e "$d/c/cowd.pid" ] || fail "a failed start left $d/c/cowd.pid"

echo "== 4: an after-fence value that is neither rejoin nor stay"
printf '[cowd]\nafter-fence = maybe\n' > "$d/af.conf"
start_daemon "$d/e" --standalone --config "$d/af.conf"
[ $rc = 2 ] || fail "bad after-fence: exit $rc"
[ "$err" = "cowd: $d/af.conf:2: after-fence: 'maybe' is neither rejoin nor stay" ] \
  || fail "bad after-fence: stderr '$err'"
[ ! -e "$d/e/cowd.pid" ] || fail "a failed start left $d/e/cowd.pid"

echo "== the blackbox on request: cowctl debug dump"
out=$(cowctl --run-dir "$d/a" debug dump)
[ "$out" = "$(ls "$d/a/state/cowd-blackbox-$pid-"*)" ] || fail "debug dump said '$out'"
bb_has "$out" "serving, run directory $d/a" \
  || fail "qb-blackbox does not show the start in $out"
jout=$(cowctl --run-dir "$d/a" --json debug dump)
[[ $jout == "{\"blackbox\":\"$d/a/state/cowd-blackbox-$pid-"*'"}' ]] || fail "debug dump --json: $jout"

echo "== the blackbox on a fatal signal (SIGABRT)"
kill -ABRT "$pid"
wait_until 10 sh -c "! kill -0 $pid" || fail "cowd survived SIGABRT"
crash=$d/a/state/cowd-blackbox-$pid-crash
[ -s "$crash" ] || fail "no $crash after SIGABRT"
bb_has "$crash" "cowd: blackbox written to $out" \
  || fail "qb-blackbox does not show the start in $crash"
# make check runs two tests at once, and any cowd that starts on this host
# removes the rings of dead cowds; so the dead cowd's ring may already be
# gone.  A planted ring in its name makes the next check independent of that.
cleanup_fn rm -f /dev/shm/qb-cowd-"$pid"-blackbox-planted
: > /dev/shm/qb-cowd-"$pid"-blackbox-planted

echo "== the next start removes the dead cowd's /dev/shm ring"
start_daemon "$d/a" --standalone
[ $rc = 0 ] || fail "restart: exit $rc: $err"
pid2=$(daemon_pid "$d/a")
cleanup_fn kill_pid "$pid2"
! ls /dev/shm/qb-cowd-"$pid"-blackbox-* >/dev/null 2>&1 \
  || fail "the ring of dead cowd $pid is still in /dev/shm"
echo "== a clean stop leaves no ring"
kill_pid "$pid2"
! ls /dev/shm/qb-cowd-"$pid2"-blackbox-* >/dev/null 2>&1 \
  || fail "cowd $pid2 stopped by SIGTERM left its ring in /dev/shm"
[ ! -e "$d/a/cowd.pid" ] || fail "a clean stop left the pid file"
pass
