#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# cowctl create --from FILE|- (issue 17): one volume per line with create's
# options, comments and blank lines skipped, relative paths taken from
# cowctl's directory; a bad line is refused with its line number and
# cause, the lines before it stay created, it and the lines after it are
# not (its CoW device is not even formatted); --json gives a result per
# volume; stdin works.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires cowd cowctl jq cmp qemu-io

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
new_image "$d/base.img" 1M random
for i in 1 2 3 4 5 6 7 8 9; do truncate -s 2M "$d/c$i"; done
truncate -s 2M "$d/zero"
start_cowd "$d/run"

cat > "$d/defs" <<DEFS
# golden image clones
v1 --base $d/base.img --cow $d/c1

v2 --base $d/base.img --cow c2 --commit flush   # relative: from cowctl's cwd
   v3	--base $d/base.img --cow $d/c3 --chunk-size 128K
v4 --base $d/base.img --cow $d/c4 --chunk-size 3
v5 --base $d/base.img --cow $d/c5
DEFS
rc=0
out=$(cd "$d" && c create --from defs 2>&1) || rc=$?
[ $rc -eq 1 ] || fail "a bad line: exit $rc (expected 1): $out"
want="cowctl: defs line 6: chunk size '3' is not a power of two between 4K and 1M (the 3 volumes before it are created; it and the lines after it are not)"
grep -qxF "$want" <<<"$out" || fail "a bad line: got '$out', expected the line '$want'"
grep -qE '^created 3 volumes from defs in [0-9.]+ s \([0-9.]+ per second\); in cowd: check [0-9.]+ s, format [0-9.]+ s, store [0-9.]+ s, cluster [0-9.]+ s$' <<<"$out" \
  || fail "no summary: $out"
[ "$(c --json list | jq -c 'map([.name, .commit])')" = '[["v1","sync"],["v2","flush"],["v3","sync"]]' ] \
  || fail "lines before the bad one: $(c --json list)"
[ "$(c --json list | jq -r '.[1].cow')" = "$d/c2" ] || fail "relative path: $(c --json list)"
c status v3 | grep -qx 'commit:      sync (O_DIRECT)' || fail "v3: $(c status v3)"
# nothing of the bad line or after it: not defined, CoW devices untouched
for i in 4 5; do cmp -s "$d/c$i" "$d/zero" || fail "line of v$i: its CoW device was written"; done

# --json: per volume results; an error names code, line and message
rc=0
j=$(printf 'v6 --base %s --cow %s\nv7 --base %s --cow %s\nv1 --base %s --cow %s\n' \
      "$d/base.img" "$d/c6" "$d/base.img" "$d/c7" "$d/base.img" "$d/c8" \
    | c --json create --from -) || rc=$?
[ $rc -eq 1 ] || fail "--json, a volume that exists: exit $rc: $j"
[ "$(jq -c '[.created, .volumes, .error]' <<<"$j")" = \
  '[2,[{"line":1,"name":"v6","chunk_size":65536,"commit":"sync"},{"line":2,"name":"v7","chunk_size":65536,"commit":"sync"}],{"code":"exists","line":3,"message":"volume v1 already exists"}]' ] \
  || fail "--json: $j"
cmp -s "$d/c8" "$d/zero" || fail "line 3 of stdin: its CoW device was written"

# all good, from stdin: exit 0, every volume listed
printf 'v8 --base %s --cow %s\n# end\n' "$d/base.img" "$d/c8" | c create --from - >/dev/null \
  || fail "a good file from stdin failed"
[ "$(c list | tail -n +2 | awk '{print $1}' | tr '\n' ' ')" = "v1 v2 v3 v6 v7 v8 " ] \
  || fail "list after the batches: $(c list)"
# What create answered is on disk: cowd killed at once (no clean stop)
# and started again has every definition, and each volume attaches with
# its superblock and reads its base (a slice's CoW files are synced, then
# its definitions committed, before the answer)
crash_restart_cowd "$d/run" "v1 v2 v3 v6 v7 v8" v1 v6 v8
# usage and unreadable files
rc=0; out=$(c create --from 2>&1) || rc=$?
[ $rc -eq 2 ] && [ "$out" = "cowctl: usage: cowctl create --from FILE|-" ] \
  || fail "create --from without a file: exit $rc: $out"
rc=0; out=$(c create --from "$d/none" 2>&1) || rc=$?
[ $rc -eq 2 ] && [ "$out" = "cowctl: cannot read $d/none: No such file or directory" ] \
  || fail "unreadable file: exit $rc: $out"

# A batch's work on the loop gives way to I/O: with a client reading v1
# every 5 ms, the turns of the loop the 400 checks ran in outnumber their
# slices (each slice's checks are cut wherever a request waits, and go on
# in the next turn; the formats are on a thread); every volume is created
# all the same.
u=$(c attach v1) || fail "attach v1: $u"
mkdir -p "$d/many"
for i in $(seq 400); do
  truncate -s 2M "$d/many/c$i"
  echo "m$i --base $d/base.img --cow $d/many/c$i"
done > "$d/many.defs"
read_watch "$u" "$d/many.stop" "$d/many.reads" &
rpid=$!
cleanup_fn kill_pid "$rpid"
sleep 0.3
out=$(c create --from "$d/many.defs") || fail "400 volumes: $out"
touch "$d/many.stop"; wait "$rpid" || fail "the reader failed: $(cat "$d/many.reads")"
grep -qE "^created 400 volumes from $d/many.defs in " <<<"$out" || fail "400 volumes: $out"
[ "$(c list 'm*' | tail -n +2 | wc -l)" = 400 ] || fail "400 volumes: $(c list 'm*' | tail -n +2 | wc -l) listed"
# cowctl sends 200 definitions a request: two log lines
read -r slices turns <<<"$(grep -o 'create --from: 200 volumes created in [0-9]* slices over [0-9]* turns' "$d/run.log" \
  | tail -2 | awk '{ s += $7; t += $10 } END { print s + 0, t + 0 }')"
echo "   400 volumes in $slices slices over $turns turns while $(cut -d' ' -f1 "$d/many.reads") reads of v1 went on"
[ "$slices" -gt 0 ] && [ "$turns" -gt "$slices" ] \
  || fail "the checks never gave way to the reads: $(grep 'create --from:' "$d/run.log" | tail -2)"
pass
