#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# crash-replay.sh: the bounded crash replay of make check (issue 16).
# Per policy, a few hundred crash points of the write log replayed and
# checked with the real engine (crashcheck.c says what is checked), and
# the same with a hydration running (--hydrate); then
# the engine built without the data flush before the bitmap write must be
# caught with violations under sync.  The long run is crash/long-run.
source "$(dirname "$0")/../functions.sh"
set -o pipefail
bin=$top_builddir/tests/crash
out=$(mktemp)
shm=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && shm=/dev/shm     # it fsyncs a lot
dir=$(mktemp -d "$shm/crash-replay.XXXXXX")
cleanup_fn rm -rf "$out" "$dir"

# The replayer: the whole log rebuilds the device the workload left, byte
# for byte; a damaged or cut log is refused with a sentence.
"$bin/crashcheck" --workloads 1 --boundary 0 --random 0 --seed 7 \
  --dir "$dir" --save "$dir/log" >/dev/null || fail "the workload failed"
"$bin/crashcheck" --replay "$dir/log" "$dir/img" || fail "replay failed"
cmp "$dir/img" "$dir/log.cow" || fail "the replayed device differs"
cp "$dir/log" "$dir/bad"
printf '\xff' | dd of="$dir/bad" bs=1 seek=5000 conv=notrunc status=none
"$bin/crashcheck" --replay "$dir/bad" "$dir/img" 2>"$out" \
  && fail "a damaged log was replayed"
grep -q "bad: record checksum mismatch at record [0-9]*$" "$out" \
  || fail "no checksum sentence: $(cat "$out")"
head -c 100000 "$dir/log" >"$dir/short"
"$bin/crashcheck" --replay "$dir/short" "$dir/img" 2>"$out" \
  && fail "a cut log was replayed"
grep -q "short: truncated record at record [0-9]*$" "$out" \
  || fail "no truncation sentence: $(cat "$out")"
rm -f "$dir/log" "$dir/log.cow" "$dir/bad" "$dir/short" "$dir/img"

for policy in sync flush none; do
  "$bin/crashcheck" --policy "$policy" --workloads 2 --boundary 60 \
    --random 90 --seed 1 --dir "$dir" | tee "$out"
  grep -Eq "crash points \(.*\), 0 with violations$" "$out" \
    || fail "crash replay under $policy found violations"
done

# Hydration (issue 14: kills at each step of it): the copy runs beside the
# workload and to the end, crash points fall at each of its steps; some
# points are taken over again and must finish copying exactly the chunks
# clear on them.
for policy in sync flush; do
  "$bin/crashcheck" --policy "$policy" --workloads 2 --boundary 30 \
    --random 30 --seed 1 --hydrate --dir "$dir" | tee "$out"
  grep -Eq "crash points \(.*\), 0 with violations$" "$out" \
    || fail "crash replay of a hydration under $policy found violations"
  grep -Eq "^crashcheck: hydration: [1-9][0-9]* points resumed to the end$" "$out" \
    || fail "no crash point of the hydration under $policy was resumed"
done

# The bug: bits durable before their data.  It must be seen.
"$bin/crashcheck-nodataflush" --policy sync --workloads 2 --boundary 60 \
  --random 90 --seed 1 --dir "$dir" --expect-violations | tee "$out" \
  || fail "the checker did not catch the missing data flush"
grep -Eq ", [1-9][0-9]* with violations$" "$out" \
  || fail "the checker did not report the missing data flush"
pass
