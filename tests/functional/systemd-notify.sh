#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# cowd's readiness for systemd (Type=notify): with $NOTIFY_SOCKET set, a
# restarted cowd sends READY=1 only once cowctl works and the volume that
# was attached when it stopped is attached again (a listener runs cowctl the
# moment READY=1 arrives), then STATUS=serving 1 volume, and STOPPING=1 at
# SIGTERM.  deploy/cowd.service (Type=notify) passes systemd-analyze verify
# (--man=no: the man pages are not installed where the test runs).
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires cowd cowctl jq python3

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 8M random
truncate -s 10M "$d/cow.img"
start_cowd "$d/run"
cowctl --run-dir "$d/run" create va --base "$d/base.img" --cow "$d/cow.img"
cowctl --run-dir "$d/run" attach va >/dev/null
stop_cowd "$d/run"

echo "== cowd restarts under a notify listener"
python3 "$top_srcdir/tests/notify-listen.py" "$d/notify" "$d/notify.log" \
  cowctl --run-dir "$d/run" --json status va &
lpid=$!
cleanup_fn kill_pid "$lpid"
wait_until 10 grep -q LISTENING "$d/notify.log" || fail "the listener did not start"
NOTIFY_SOCKET=$d/notify cowd -f --standalone --run-dir "$d/run" --state-dir "$d/run/state" \
  >>"$d/cowd.log" 2>&1 &
cpid=$!
cleanup_fn kill_pid "$cpid"
wait_until 10 grep -q '^CHECK' "$d/notify.log" || { cat "$d/notify.log"; fail "no READY=1 from cowd"; }
cat "$d/notify.log"
check=$(grep '^CHECK' "$d/notify.log")
[[ $check == "CHECK 0 "* ]] || fail "cowctl did not work when READY=1 arrived: $check"
jq -e '.state == "active"' <<<"${check#CHECK 0 }" >/dev/null || fail "va was not attached again at READY=1: $check"
[ "$(grep -c '^MSG READY=1$' "$d/notify.log")" -eq 1 ] || fail "READY=1 was not sent exactly once"
wait_until 5 grep -qx 'MSG STATUS=serving 1 volume' "$d/notify.log" || fail "no STATUS line after READY"

echo "== SIGTERM: STOPPING=1"
kill "$cpid"
wait_until 30 sh -c "! kill -0 $cpid" || fail "cowd did not stop"
grep -qx 'MSG STOPPING=1' "$d/notify.log" || fail "no STOPPING=1: $(cat "$d/notify.log")"

if command -v systemd-analyze >/dev/null; then
  echo "== systemd-analyze verify cowd.service"
  mkdir -p "$d/unit"
  sed "s|^ExecStart=[^ ]*|ExecStart=$(command -v cowd)|" "$top_builddir/deploy/cowd.service" > "$d/unit/cowd.service"
  grep -qx 'Type=notify' "$d/unit/cowd.service" || fail "cowd.service is not Type=notify"
  out=$(systemd-analyze verify --man=no "$d/unit/cowd.service" 2>&1) || fail "systemd-analyze verify failed: $out"
  [ -z "$(grep cowd.service <<<"$out")" ] || fail "systemd-analyze verify: $out"
fi
pass
