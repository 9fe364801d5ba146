#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Hydration (cowctl hydrate, unbase): the owner copies every chunk still
# on the base into the CoW layer while the volume serves.
#  - a client writing and reading at random offsets during the copy:
#    every read matches, nothing written is overwritten by the copy;
#  - --rate holds the copy to its limit;
#  - cowd killed with SIGKILL mid-copy resumes by itself after a restart
#    and copies exactly the chunks whose bits were clear on disk (none
#    twice, none missed);
#  - the result reads exactly as base + writes; the superblock says
#    hydrated; unbase refuses a volume that is not, drops the base of one
#    that is, and the volume then serves with the base file removed;
#  - cancel stops it and a restart does not start it again.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires nbdsh nbdcopy qemu-io cowd cowctl jq python3 sqlite3

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
hyd() { c --json status "$1" | jq -r ".hydration.$2"; }
uri="nbd+unix:///?socket=$d/run/v.sock"
new_image "$d/base.img" 32M random
truncate -s 34M "$d/cow.img" "$d/cow2.img"
cp "$d/base.img" "$d/expect.img"
cp "$d/base.img" "$d/base-w.img"    # w's own: v's base goes away below
start_cowd "$d/run"
c create v --base "$d/base.img" --cow "$d/cow.img" >/dev/null
c create w --base "$d/base-w.img" --cow "$d/cow2.img" >/dev/null
c attach v >/dev/null
c attach w >/dev/null
[ "$(hyd v state)" = off ] || fail "a new volume should not be hydrating"

# A client that writes and reads at random while the copy runs; it keeps
# the expected image up to date and checks each read against it.
client() { python3 "$top_srcdir/tests/randclient.py" "$uri" "$d/expect.img" "$SEED" "$N"; }

t0=$(date +%s.%N)
c hydrate v --rate 1 >/dev/null
SEED=1 N=60 client || fail "the client saw wrong data during hydration"
copied=$(c --json stats v | jq .stats.hydrated_chunks)
t=$(echo "$(date +%s.%N) - $t0" | bc)
[ "$(hyd v state)" = running ] || fail "hydration is not running: $(c status v)"
[ "$copied" -gt 0 ] || fail "nothing copied after ${t}s"
# 1 MB/s: at most 1 MB a second, plus one copy of 1 MiB in flight
max=$(echo "(1000000 * $t + 1048576) / 65536" | bc)
[ "$copied" -le "$max" ] || fail "copied $copied chunks in ${t}s at --rate 1 (at most $max)"
echo "  $copied chunks copied in ${t}s at --rate 1"
c status v | grep -E '^hydration: +running, [0-9.]+% \([0-9]+ of 512 chunks, [0-9]+ copied here\), [0-9.]+ MB/s \(limit 1 MB/s\)(, ETA [0-9]+ s)?$' \
  >/dev/null || fail "status shows no progress line: $(c status v)"

# SIGKILL mid-copy; count the bits on disk; the restart resumes alone.
kill -9 "${_cowd_pid[$d/run]}"
wait_until 5 sh -c "! kill -0 ${_cowd_pid[$d/run]}"
ondisk=$(python3 -c '
import sys
b = open(sys.argv[1], "rb").read(8192 + 64)
print(sum(bin(x).count("1") for x in b[8192:8192 + 64]))' "$d/cow.img")
[ "$ondisk" -lt 512 ] || fail "hydration finished before the kill"
rm -f "$d/run/cowd.pid"
start_cowd "$d/run"
wait_until 10 sh -c "[ \"\$(cowctl --run-dir $d/run --json status v | jq -r .hydration.state)\" = running ]" \
  || fail "hydration did not resume after the restart: $(c status v)"
# --wait, not on a terminal: plain lines, the last one says hydrated
c hydrate v --wait > "$d/wait.out" || fail "hydrate --wait failed: $(cat "$d/wait.out")"
tail -1 "$d/wait.out" | grep -qx 'v: hydrated 100.0% (512/512 chunks) 0.0 MB/s' \
  || fail "hydrate --wait ended with: $(tail -1 "$d/wait.out")"
copied=$(c --json stats v | jq .stats.hydrated_chunks)
[ "$copied" -eq $((512 - ondisk)) ] \
  || fail "after the restart $copied chunks were copied; $((512 - ondisk)) were clear on disk"
echo "  killed with $ondisk of 512 bits on disk; the restart copied $copied"
[ "$(hyd v state)" = hydrated ] || fail "not hydrated: $(c status v)"
SEED=2 N=50 client || fail "the client saw wrong data after hydration"
nbdcopy "$uri" "$d/out.img"
cmp "$d/out.img" "$d/expect.img" || fail "hydrated volume differs from base + writes"
expect_error '^cowctl: volume v is hydrated already$' hydrate v

# unbase: w is not hydrated; v is, and serves without its base
expect_error '^cowctl: volume w is not hydrated \(0 of 512 chunks in the CoW layer\); it still needs its base$' unbase w
c detach v
c unbase v | grep -qx 'v: the base is no longer used' || fail "unbase v"
[ "$(defs_sql "$d/run/state" "SELECT base FROM volumes WHERE name = 'v'")" = none ] \
  || fail "the definition keeps the base"
rm "$d/base.img"
c attach v >/dev/null
nbdcopy "$uri" "$d/out2.img"
cmp "$d/out2.img" "$d/expect.img" || fail "volume without base differs"
SEED=3 N=50 client || fail "the client saw wrong data without a base"

# cancel: w stops and stays stopped across a restart
c hydrate w --rate 1 >/dev/null
[ "$(hyd w state)" = running ] || fail "w is not hydrating"
c hydrate --cancel w | grep -qx 'w: hydration cancelled' || fail "cancel w"
[ "$(hyd w state)" = off ] || fail "w still hydrating after cancel"
expect_error '^cowctl: volume w is not being hydrated$' hydrate --cancel w
stop_cowd "$d/run"
start_cowd "$d/run"
[ "$(hyd w state)" = off ] || fail "a cancelled hydration came back after a restart: $(c status w; tail -5 "$d/run.log")"
pass
