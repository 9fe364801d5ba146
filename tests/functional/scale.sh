#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Scale (issue 17): a few thousand volumes defined through cowctl create
# --from on one standalone cowd, files on tmpfs so the test measures
# cowd's own work, not the disk.  Fails if a definition costs more than
# twice as much at the end as at the start (the median of the first three
# and of the last three batches of SCALE_BATCH volumes, each timed as one
# request: a batch of 500 takes 40-120 ms, and one slow syncfs or a test
# beside it could double one), or if any list command (text, --json, each
# filter, paging) fails or returns a wrong count.  SCALE_N volumes
# (default 6000).
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires cowd cowctl jq truncate

n=${SCALE_N:-6000}
b=${SCALE_BATCH:-500}
d=$(mktemp -d /dev/shm/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
truncate -s 1M "$d/base.img"
mkdir "$d/cow"
(cd "$d/cow" && seq -f 'c%g' 1 "$n" | xargs truncate -s 2M)
start_cowd "$d/run"

# defs FIRST LAST: the definitions of volumes FIRST..LAST
defs() { seq "$1" "$2" | awk -v d="$d" '{ printf "v%d --base %s/base.img --cow %s/cow/c%d\n", $1, d, d, $1 }'; }
# batch FIRST LAST: create them; print the seconds it took per volume
batch() {
  local j
  j=$(defs "$1" "$2" | c --json create --from -) || fail "create --from, volumes $1 to $2: $j"
  [ "$(jq .created <<<"$j")" -eq $(($2 - $1 + 1)) ] || fail "volumes $1 to $2: $j"
  echo "  volumes $1-$2: $(jq -r '"\(.per_second) per second; cowd: \(.cowd_seconds)"' <<<"$j")" >&2
  jq -r ".seconds / $(($2 - $1 + 1))" <<<"$j"
}
# median3 FROM: the median per volume of three batches of b from FROM
median3() {
  local i
  for i in 0 1 2; do batch $(($1 + i * b)) $(($1 + (i + 1) * b - 1)); done \
    | sort -g | sed -n 2p
}
[ "$n" -ge $((6 * b)) ] || fail "SCALE_N ($n) must be at least 6 x SCALE_BATCH ($b)"
first=$(median3 1)
[ "$n" -gt $((6 * b)) ] && batch $((3 * b + 1)) $((n - 3 * b)) >/dev/null
last=$(median3 $((n - 3 * b + 1)))
echo "  per volume, median of 3 batches of $b: first $first s, last $last s"
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l <= 2 * f) }' \
  || fail "a definition costs $last s at $n volumes, more than twice the $first s at the start"

# count WHAT WANT CMD...: the command succeeds and gives WANT
count() {
  local what=$1 want=$2 got; shift 2
  got=$("$@") || fail "$what failed"
  [ "$got" = "$want" ] || fail "$what: $got volumes, expected $want"
}
rows() { c list "$@" | tail -n +2 | wc -l; }
jlen() { c --json list "$@" | jq length; }
c attach v1 >/dev/null; c attach v2 >/dev/null; c attach v3 >/dev/null
t0=$(date +%s%N); count "list" "$n" rows; t1=$(date +%s%N)
count "--json list" "$n" jlen; t2=$(date +%s%N)
echo "  list $(((t1 - t0) / 1000000)) ms, --json list $(((t2 - t1) / 1000000)) ms for $n volumes"
v1x=$(seq 1 "$n" | grep -c '^1')
count "list 'v1*'" "$v1x" rows 'v1*'
count "--json list 'v1*'" "$v1x" jlen 'v1*'
count "list --state active" 3 rows --state active
count "--json list --state detached" $((n - 3)) jlen --state detached
count "list --state active 'v[23]'" 2 rows --state active 'v[23]'
count "list --limit 7" 7 rows --limit 7
count "--json list --limit 7 'v2*'" 7 jlen --limit 7 'v2*'
[ "$(c --json list --limit 3 | jq -c 'map(.name)')" = '["v1","v10","v100"]' ] \
  || fail "list --limit 3: $(c --json list --limit 3)"
# paging: pages of 1000 by --after cover every volume once, in order
after=; total=0; : > "$d/names"
while :; do
  page=$(c --json list --limit 1000 ${after:+--after "$after"})
  k=$(jq length <<<"$page")
  [ "$k" -gt 0 ] || break
  jq -r '.[].name' <<<"$page" >> "$d/names"
  total=$((total + k)); after=$(jq -r '.[-1].name' <<<"$page")
done
[ "$total" -eq "$n" ] || fail "paging gave $total volumes, expected $n"
[ "$(sort -u "$d/names" | wc -l)" -eq "$n" ] || fail "paging repeated volumes"
sort -c "$d/names" || fail "pages are not in name order"
# refusals: exact sentences and exit codes
rc=0; out=$(c list --owner 1 2>&1) || rc=$?
[ $rc -eq 1 ] && [ "$out" = "cowctl: list --owner: this cowd runs standalone; volumes have owners only in a cluster" ] \
  || fail "list --owner on a standalone cowd: exit $rc: $out"
rc=0; out=$(c list --state bogus 2>&1) || rc=$?
[ $rc -eq 2 ] && [ "$out" = "cowctl: list: state 'bogus' is not one of active, held, readonly, fenced, degraded, reconnecting, detached, failed, attaching, detaching" ] \
  || fail "list --state bogus: exit $rc: $out"
rc=0; out=$(c list --limit 0 2>&1) || rc=$?
[ $rc -eq 2 ] && [ "$out" = "cowctl: list: limit '0' is not a whole number above 0" ] \
  || fail "list --limit 0: exit $rc: $out"
rc=0; out=$(c list a b 2>&1) || rc=$?
[ $rc -eq 2 ] && [ "$out" = "cowctl: usage: cowctl list [--owner NODE] [--state STATE] [--after NAME] [--limit N] [PATTERN]" ] \
  || fail "list a b: exit $rc: $out"
pass
