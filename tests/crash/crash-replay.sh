#!/usr/bin/env bash
# crash-replay.sh: the bounded crash replay of make check (issue 16).
# Per policy, a few hundred crash points of the write log replayed and
# checked with the real engine (crashcheck.c says what is checked); then
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

for policy in sync flush none; do
  "$bin/crashcheck" --policy "$policy" --workloads 2 --boundary 60 \
    --random 90 --seed 1 --dir "$dir" | tee "$out"
  grep -Eq "crash points \(.*\), 0 with violations$" "$out" \
    || fail "crash replay under $policy found violations"
done

# The bug: bits durable before their data.  It must be seen.
"$bin/crashcheck-nodataflush" --policy sync --workloads 2 --boundary 60 \
  --random 90 --seed 1 --dir "$dir" --expect-violations | tee "$out" \
  || fail "the checker did not catch the missing data flush"
grep -Eq ", [1-9][0-9]* with violations$" "$out" \
  || fail "the checker did not report the missing data flush"
pass
