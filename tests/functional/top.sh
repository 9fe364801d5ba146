#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# cowctl top (issues 14 and 17): the rates of every volume served here,
# from two samples of cowd's counters.  A known client sequence (4 writes
# into 3 chunks, 3 CoW faults, 3 commits, 2 reads) between the samples of
# one interval shows up with exactly those counts in that interval, and
# nothing in the next; rates are counts divided by the interval; an idle
# volume is listed after a busy one; --once, -n, plain lines when stdout
# is not a terminal, and usage errors.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io cowd cowctl jq

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
new_image "$d/base.img" 8M random
truncate -s 10M "$d/cow.img" "$d/idle.img"
start_cowd "$d/run"
c create v --base "$d/base.img" --cow "$d/cow.img" >/dev/null
c create idle --base "$d/base.img" --cow "$d/idle.img" >/dev/null
c attach v >/dev/null
c attach idle >/dev/null

# One refresh of a 4 s interval: cowctl samples at once, the IO starts a
# second later and ends well before the second sample.
c --json top --once --interval 4 > "$d/top.json" &
top=$!
cleanup_fn kill_pid "$top"
sleep 1
uri="nbd+unix:///?socket=$d/run/v.sock"
qio_ok "$uri" "client IO" "write -P 1 0 4k" "write -P 2 64k 4k" \
  "write -P 3 128k 4k" "write -P 4 0 4k" "read -P 4 0 4k" "read 1M 8k"
wait "$top" || fail "cowctl top --once failed: $(cat "$d/top.json")"
j=$(cat "$d/top.json")
[ "$(wc -l < "$d/top.json")" -eq 1 ] || fail "--once printed more than one refresh: $j"
[ "$(jq -c '[.volumes[] | [.name, .reads, .writes, .bytes_read, .bytes_written, .cow_faults, .commits]]' <<<"$j")" \
  = '[["v",2,4,12288,16384,3,3],["idle",0,0,0,0,0,0]]' ] || fail "counts of the interval: $j"
jq -e '.interval_s >= 3.9 and .interval_s < 8' <<<"$j" >/dev/null || fail "interval: $j"
jq -e '.volumes[0] | (.writes_s - 4 / $dt | fabs) < 0.01 and (.faults_s - 3 / $dt | fabs) < 0.01
       and (.mb_s - 28672 / $dt / 1e6 | fabs) < 0.001 and .commit_p99_ms > 0' \
  --argjson dt "$(jq .interval_s <<<"$j")" <<<"$j" >/dev/null || fail "rates: $j"
jq -e '.volumes[1].commit_p99_ms == null' <<<"$j" >/dev/null || fail "idle p99: $j"

# Nothing happened since: two quiet refreshes, plain lines (not a terminal)
out=$(c top -n 2 --interval 0.2)
[ "$(grep -cE '^cowctl top ..:..:..: 2 volumes, interval [0-9]+\.[0-9] s$' <<<"$out")" -eq 2 ] || fail "plain top: $out"
[ "$(grep -cE '^v +0\.0 +0\.0 +0\.00 +0\.0 +0\.0 +-$' <<<"$out")" -eq 2 ] || fail "quiet v: $out"
[ "$(grep -c '^NAME  *READS/s  *WRITES/s  *MB/s  *FAULTS/s  *COMMITS/s  *COMMIT-P99$' <<<"$out")" -eq 2 ] \
  || fail "header: $out"

rc=0; out=$(c top -n 0 2>&1) || rc=$?
[ $rc -eq 2 ] && [ "$out" = "cowctl: usage: cowctl top [--once] [-n ITERATIONS] [--interval SEC] (ITERATIONS a whole number above 0, SEC from 0.1 to 3600)" ] \
  || fail "top -n 0: exit $rc: $out"
pass
