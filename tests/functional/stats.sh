#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Statistics: cowctl stats (text and --json) counts exactly what a client
# did (reads, writes, bytes, CoW faults, commits, faults per commit,
# commit latency, chunks in the CoW layer, takeovers, errors), and the
# Prometheus textfile (metrics-file in cowd.conf) carries the same numbers,
# is replaced whole, and passes a check of the exposition format (promtool
# check metrics as well when promtool is installed).
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io cowd cowctl jq python3

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
uri="nbd+unix:///?socket=$d/run/v.sock"
new_image "$d/base.img" 8M random
truncate -s 10M "$d/cow.img"
printf '[cowd]\nmetrics-file = %s\nmetrics-interval-ms = 200\n' "$d/cowherd.prom" > "$d/cowd.conf"
start_cowd "$d/run" --config "$d/cowd.conf"
c create v --base "$d/base.img" --cow "$d/cow.img" >/dev/null
c attach v >/dev/null
# 3 partial writes into 3 chunks (3 faults, each its own commit: one
# client, one request at a time), 1 rewrite, 2 reads
qio_ok "$uri" "client IO" "write -P 1 0 4k" "write -P 2 64k 4k" \
  "write -P 3 128k 4k" "write -P 4 0 4k" "read -P 4 0 4k" "read 1M 8k"
s=$(c --json stats v)
check() { [ "$(jq -r "$1" <<<"$s")" = "$2" ] || fail "$1 is $(jq -r "$1" <<<"$s"), expected $2: $s"; }
check .stats.reads 2
check .stats.writes 4
check .stats.bytes_written 16384
check .stats.bytes_read 12288
check .stats.cow_faults 3
check .stats.commits 3
check .stats.committed_requests 3
check .stats.errors 0
check .stats.takeovers 1
check .stats.handoffs 0
check .cow_chunks 3
check .hydration.done 3
check .hydration.total 128
jq -e '.stats.commit_p50_s > 0 and .stats.commit_p99_s >= .stats.commit_p50_s' <<<"$s" >/dev/null \
  || fail "no commit latency: $s"
c stats v | grep -qx 'commits:     3 covering 3 requests (1.0 per commit)' || fail "stats text: $(c stats v)"
c stats v | grep -qE '^commit time: p50 < [0-9.]+ ms, p99 < [0-9.]+ ms$' || fail "stats text: $(c stats v)"
c stats v | grep -qx 'ownership:   taken 1 times, handed off 0' || fail "stats text: $(c stats v)"

# The textfile: same numbers, replaced within an interval
wait_until 5 grep -q 'cowherd_volume_writes_total{volume="v"} 4' "$d/cowherd.prom" \
  || fail "metrics file: $(cat "$d/cowherd.prom" 2>&1)"
m=$(cat "$d/cowherd.prom")
for kv in 'reads_total 2' 'written_bytes_total 16384' 'cow_faults_total 3' \
          'commits_total 3' 'cow_chunks 3' 'chunks 128' 'takeovers_total 1'; do
  grep -qx "cowherd_volume_${kv% *}{volume=\"v\"} ${kv#* }" <<<"$m" || fail "metrics file lacks $kv: $m"
done
grep -qE '^cowherd_volume_commit_duration_seconds_count\{volume="v"\} 3$' <<<"$m" || fail "no commit summary: $m"
# exposition format: every sample's family has HELP and TYPE first, names
# and labels are well-formed, counters end in _total
python3 - "$d/cowherd.prom" <<'PY' || fail "the metrics file is not valid exposition format"
import re, sys
types = {}
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("# HELP ") or line.startswith("# TYPE "):
        parts = line.split(" ", 3)
        if line.startswith("# TYPE "):
            types[parts[2]] = parts[3]
        continue
    m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)\{volume="[A-Za-z0-9._-]+"(,quantile="[0-9.]+")?\} [0-9.e+-]+', line)
    if not m:
        sys.exit("bad sample line: " + line)
    name = m.group(1)
    fam = re.sub(r"_(sum|count)$", "", name) if name not in types else name
    if fam not in types:
        sys.exit("sample before its TYPE: " + line)
    if types[fam] == "counter" and not name.endswith("_total"):
        sys.exit("counter without _total: " + name)
PY
if command -v promtool >/dev/null; then
  promtool check metrics < "$d/cowherd.prom" || fail "promtool check metrics failed"
fi
pass
