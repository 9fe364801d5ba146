# SPDX-License-Identifier: GPL-2.0-or-later
# voldefs.sh: many volume definitions quickly, for the scale tests and
# benchmarks (tests/functional/scale-join.sh, tests/bench/scale-join).
# Sourced after lab.sh.
#
# voldefs_conf N FILE DEVDIR: writes FILE in the volumes.conf format of
# cowd before issue 17 with N volumes vm000000.. whose CoW devices are
# DEVDIR/cNNNNNN (created empty: definitions only, never attached), base
# DEVDIR/base; commit cycles sync/flush/none, every 7th is exclusive.
# cowd imports such a file into its store at start, which is how a host
# gets N definitions in seconds (and the upgrade path is exercised).
voldefs_conf() {
  local n=$1 file=$2 dev=$3
  mkdir -p "$dev"
  : > "$dev/base"
  (cd "$dev" && seq -f 'c%06g' 0 $((n - 1)) | xargs touch)
  awk -v n="$n" -v dev="$dev" 'BEGIN {
    split("sync flush none", pol, " ")
    for (i = 0; i < n; i++)
      printf "[volume vm%06d]\nbase = %s/base\ncow = %s/c%06d\n" \
             "chunk-size = 65536\ncommit = %s\nexclusive = %s\n" \
             "buffered = no\nattached = no\n", i, dev, dev, i, pol[i % 3 + 1],
             (i % 7 == 0) ? "yes" : "no"
  }' > "$file"
}

# voldefs_synced NODE: cowd on NODE says it is synced.
voldefs_synced() {
  lab_cowctl "$1" --json nodes 2>/dev/null | grep -q '"synced":true'
}

# voldefs_gap NODE: the largest gap between two turns of NODE's loop (ms)
# from its start until it was synced; voldefs_busy NODE: the most CPU time
# it spent between two turns in that time (ms).
voldefs_gap() { lab_cowctl "$1" --json nodes | jq -r .loop.sync_gap_ms; }
voldefs_busy() { lab_cowctl "$1" --json nodes | jq -r .loop.sync_busy_ms; }
# voldefs_own NODE: that largest gap less the time the loop's thread waited
# for a CPU in its interval (ms): the least of it that was the loop's own.
voldefs_own() { lab_cowctl "$1" --json nodes | jq -r .loop.sync_own_gap_ms; }
# voldefs_after NODE: how long after its cowd started it was synced (ms).
voldefs_after() { lab_cowctl "$1" --json nodes | jq -r .synced_after_ms; }
# voldefs_step NODE: the most CPU one step of its state transfer took (ms).
voldefs_step() { lab_cowctl "$1" --json nodes | jq -r .loop.sync_step_ms; }
# voldefs_commit NODE: "ROWS MS", the most rows one commit of a batch of
# definitions held, and the most CPU one such commit took (ms).
voldefs_commit() { lab_cowctl "$1" --json nodes | jq -r '"\(.loop.batch_rows) \(.loop.batch_commit_ms)"'; }

# voldefs_rss PID: VmRSS in KiB.
voldefs_rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# voldefs_now: monotonic-enough seconds with nanoseconds, for intervals.
voldefs_now() { date +%s.%N; }
