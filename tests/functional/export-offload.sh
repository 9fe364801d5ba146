#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# An export opens its target off cowd's loop.  tgtd is frozen (SIGSTOP:
# its socket accepts connections, nothing answers) while v is exported to
# one of its LUNs: before, the iSCSI login waited on the loop for the
# reconnect deadline, and every volume of the host with it.  Now:
#   - a client reading another volume every 5 ms meanwhile never waits
#     500 ms;
#   - a second export of v while the target opens is refused with code
#     busy and the exact sentence;
#   - the export fails after the reconnect deadline (3 s here) with the
#     exact sentence naming the volume, the LUN and the cause; v has no
#     export and serves its data;
#   - a detach of v while its export's target opens detaches it; once the
#     target answers, the export fails with the exact sentence and the LUN
#     is untouched; v attaches again with its data;
#   - once tgtd runs again the export to the LUN runs to its end, and the
#     LUN holds v byte for byte.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/tgtd.sh"
requires_root
requires cowd cowctl jq nbdsh nbdcopy qemu-io

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
new_image "$d/base.img" 4M random
truncate -s 6M "$d/cow.img"
new_image "$d/lbase.img" 1M random
truncate -s 2M "$d/lcow.img"
new_image "$d/target.lun" 4M zero
tgt_start
iqn=iqn.2024-01.org.cowherd:exportoffload
tgt_lun 1 "$iqn" 1 "$d/target.lun"
lun=$(tgt_url "$iqn" 1)
printf '[cowd]\nreconnect-deadline-ms = 3000\n' > "$d/cowd.conf"
start_cowd "$d/run" --config "$d/cowd.conf"
c create v --base "$d/base.img" --cow "$d/cow.img" >/dev/null || fail "create v"
c create live --base "$d/lbase.img" --cow "$d/lcow.img" >/dev/null || fail "create live"
vuri=$(c attach v) || fail "attach v: $vuri"
uri=$(c attach live) || fail "attach live: $uri"
qio_ok "$vuri" "a write to v" "write -P 0x5a 1M 64k"
nbdcopy "$vuri" "$d/ref.img"
thaw() { [ -n "$_tgt_pid" ] && kill -CONT "$_tgt_pid" 2>/dev/null || true; }
cleanup_fn thaw
want="cowctl: volume v: the export target cannot be used: $lun: cannot log in (command timed out)"

# frozen_export OUT RES: tgtd frozen, an export of v to the LUN in the
# background (its pid in xpid; "EXIT MS" in RES), its target opening.
frozen_export() {
  kill -STOP "$_tgt_pid"
  local t0; t0=$(date +%s%N)
  ( rc=0; timeout 20 cowctl --run-dir "$d/run" export v --to "$lun" > "$1" 2>&1 || rc=$?
    echo "$rc $((($(date +%s%N) - t0) / 1000000))" > "$2" ) &
  xpid=$!
  # the login waits (tgtd accepted the connection): no reply yet
  sleep 0.5
  [ ! -s "$2" ] || fail "the export answered at once: $(cat "$1")"
}

echo "== export v to a LUN of a frozen tgtd"
read_watch "$uri" "$d/stop" "$d/reads" &
rpid=$!
cleanup_fn kill_pid "$rpid"
sleep 0.3
frozen_export "$d/x1.out" "$d/x1.res"
rc=0; out=$(timeout 5 cowctl --run-dir "$d/run" --json export v --to "$d/other.img") || rc=$?
[ $rc = 1 ] && [ "$(jq -r .error.code <<<"$out")" = busy ] \
  && [ "$(jq -r .error.message <<<"$out")" = "volume v: the target of another export of it is being opened; try again" ] \
  || fail "a second export while the target opens: exit $rc: $out"
[ ! -e "$d/other.img" ] || fail "the refused export created its target"
echo "  a second export meanwhile: busy, the sentence"
wait "$xpid" || true
read -r rc ms < "$d/x1.res"
[ "$rc" != 124 ] || fail "the export did not answer in 20 s with the target frozen"
[ "$rc" = 1 ] && [ "$(cat "$d/x1.out")" = "$want" ] \
  || fail "export v to the frozen LUN: exit $rc: got '$(cat "$d/x1.out")', expected '$want'"
[ "$ms" -ge 2500 ] && [ "$ms" -le 10000 ] || fail "the export failed after $ms ms; the deadline is 3000 ms"
echo "  $(cat "$d/x1.out") (after $ms ms)"
read_watch_end "$rpid" "$d/stop" "$d/reads" 100 "an export's login waited for a frozen target" "reads of live"
[ "$(c --json stats v | jq -r .export)" = null ] || fail "v has an export after the failed one: $(c stats v)"
[ "$(c --json status v | jq -r .state)" = active ] || fail "v after the failed export: $(c --json status v)"
nbdcopy "$vuri" "$d/v1.img" && cmp "$d/ref.img" "$d/v1.img" || fail "v's data after the failed export"

echo "== v detached while its export's target opens"
frozen_export "$d/x2.out" "$d/x2.res"
c detach v >/dev/null || fail "detach v while its export's target opened"
[ "$(c --json status v | jq -r .state)" = detached ] || fail "v after the detach: $(c --json status v)"
kill -CONT "$_tgt_pid"   # within the deadline: the login ends, the open succeeds
wait "$xpid" || true
read -r rc ms < "$d/x2.res"
want2="cowctl: volume v was detached while the export target $lun was being opened"
[ "$rc" = 1 ] && [ "$(cat "$d/x2.out")" = "$want2" ] \
  || fail "the export of a detached v: exit $rc: got '$(cat "$d/x2.out")', expected '$want2'"
echo "  $(cat "$d/x2.out")"
cmp -n 4194304 "$d/target.lun" /dev/zero || fail "the export of a detached v wrote to the LUN"
vuri=$(c attach v) || fail "attach v again: $vuri"
nbdcopy "$vuri" "$d/v2.img" && cmp "$d/ref.img" "$d/v2.img" || fail "v's data after the detach"

echo "== tgtd runs again: the export to the LUN runs to its end"
out=$(c export v --to "$lun") || fail "export v to the LUN: $out"
grep -qx "v: exported to $lun: 4194304 bytes in [0-9.]* s ([0-9.]* MB/s)" <<<"$out" \
  || fail "the export did not end with its summary: $out"
cmp "$d/ref.img" "$d/target.lun" || fail "the LUN does not hold v"
echo "  $out; the LUN holds v"
qio_ok "$uri" "live after all this" "read 0 4k"
pass
