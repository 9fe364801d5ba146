#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# cowctl's errors as scripts see them (cowctl(8) ERRORS): with --json
# exactly one object {"error": {"code": CODE, "message": SENTENCE}} on
# stdout, without it "cowctl: SENTENCE" on stderr; exit 0 ok, 1 error,
# 2 usage, 3 cowd unreachable.  Each case asserts the exact code, the
# exact sentence and the exact exit status.  Also: one command list (help
# names what cowd serves, and cowd serves every command help names), and
# the sentences of issue 10 item 9.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires cowd cowctl setpriv
requires_root

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
chmod 755 "$d"
new_image "$d/base.img" 8M random
truncate -s 9M "$d/cow.img" "$d/cow2.img" "$d/cow3.img"
truncate -s 4M "$d/small.img"
: > "$d/empty.img"

# expect RC STDOUT ARGS...: cowctl ARGS exits RC and prints exactly STDOUT.
expect() {
  local want_rc=$1 want_out=$2 rc=0 out; shift 2
  out=$(cowctl "$@" 2>"$d/stderr") || rc=$?
  echo "  cowctl $* -> $rc $out"
  [ "$rc" = "$want_rc" ] || fail "cowctl $*: exit $rc, expected $want_rc"
  [ "$out" = "$want_out" ] || fail "cowctl $*: printed '$out', expected '$want_out'"
}
# jerr RC CODE MESSAGE ARGS...: the --json error object, exactly.
jerr() {
  local rc=$1 code=$2 msg=$3; shift 3
  expect "$rc" "{\"error\": {\"code\": \"$code\", \"message\": \"$msg\"}}" \
    --json "$@"
  [ ! -s "$d/stderr" ] || fail "cowctl --json $*: wrote to stderr: $(cat "$d/stderr")"
}

echo "== unreachable: no cowd on the run directory (exit 3)"
jerr 3 unreachable "no cowd serves run directory $d/none" --run-dir "$d/none" list
expect 3 "" --run-dir "$d/none" list
[ "$(cat "$d/stderr")" = "cowctl: no cowd serves run directory $d/none" ] \
  || fail "stderr: $(cat "$d/stderr")"
echo "== usage errors need no cowd (exit 2)"
jerr 2 usage "unknown command 'frobnicate' (see cowctl help)" --run-dir "$d/none" frobnicate
jerr 2 usage "--timeout 'abc' is not a whole number of seconds from 1 to 86400" \
  --run-dir "$d/none" --timeout abc list
jerr 2 usage "unknown option '--frob' (see cowctl --help)" --run-dir "$d/none" --frob list
expect 2 "" --run-dir "$d/none" frobnicate
[ "$(cat "$d/stderr")" = "cowctl: unknown command 'frobnicate' (see cowctl help)" ] \
  || fail "stderr: $(cat "$d/stderr")"

start_cowd "$d/run"
r=(--run-dir "$d/run")
echo "== permission denied is unreachable too (exit 3)"
rc=0; out=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
  "$(command -v cowctl)" "${r[@]}" --json list 2>&1) || rc=$?
echo "  $rc $out"
[ $rc = 3 ] || fail "non-root cowctl: exit $rc"
[ "$out" = "{\"error\": {\"code\": \"unreachable\", \"message\": \"cowd at $d/run refused the connection: permission denied (only root or the user cowd runs as may use it)\"}}" ] \
  || fail "non-root cowctl: $out"

echo "== usage errors from cowd (exit 2)"
jerr 2 usage "usage: cowctl list [--owner NODE] [--state STATE] [--after NAME] [--limit N] [PATTERN]" \
  "${r[@]}" list extra words
jerr 2 usage "create: unknown option '-bad'" "${r[@]}" create -bad --base "$d/base.img" --cow "$d/cow.img"
jerr 2 usage "create: option '--cow' needs a value" "${r[@]}" create x --base "$d/base.img" --cow
jerr 2 usage "volume name 'a/b' is not valid: the volume name is empty, longer than 63 bytes or has characters other than letters, digits, '.', '_' and '-'" \
  "${r[@]}" create a/b --base "$d/base.img" --cow "$d/cow.img"
jerr 2 usage "usage: cowctl attach NAME [--incoming] [--wait-owned SECS] [--accept-base-change]" "${r[@]}" attach
jerr 2 usage "usage: cowctl debug dump" "${r[@]}" debug

echo "== errors (exit 1)"
jerr 1 no-such-volume "volume nosuch does not exist" "${r[@]}" status nosuch
jerr 1 not-clustered "this cowd runs standalone; cluster commands need cowd --cluster NAME and corosync" \
  "${r[@]}" nodes
jerr 1 bad-device "volume x: base $d: is a directory, not a regular file or block device" \
  "${r[@]}" create x --base "$d" --cow "$d/cow.img"
jerr 1 bad-device "volume x: base /dev/null: is a character device, not a regular file or block device" \
  "${r[@]}" create x --base /dev/null --cow "$d/cow.img"
jerr 1 bad-device "volume x: base $d/empty.img is empty (0 bytes)" \
  "${r[@]}" create x --base "$d/empty.img" --cow "$d/cow.img"
jerr 1 cow-too-small "volume x: CoW device $d/small.img is too small: it has 4194304 bytes and needs 8454144 (base 8388608 + metadata)" \
  "${r[@]}" create x --base "$d/base.img" --cow "$d/small.img"
# A long path keeps its cause (messages were cut at 512 bytes).
long=$d/$(printf 'x%.0s' $(seq 200))/$(printf 'y%.0s' $(seq 200))/$(printf 'z%.0s' $(seq 200))
jerr 1 bad-device "volume x: base $long/base.img: cannot open: No such file or directory" \
  "${r[@]}" create x --base "$long/base.img" --cow "$d/cow.img"
expect 0 "created volume v (chunk size 65536, commit sync)" "${r[@]}" create v --base "$d/base.img" --cow "$d/cow.img"
jerr 1 exists "volume v already exists" "${r[@]}" create v --base "$d/base.img" --cow "$d/cow2.img"
jerr 1 cow-in-use "volume w: CoW device $d/cow.img is the CoW device of volume v already; a CoW device belongs to one volume" \
  "${r[@]}" create w --base "$d/base.img" --cow "$d/cow.img"
expect 0 "nbd+unix:///?socket=$d/run/v.sock" "${r[@]}" attach v
jerr 1 attached "volume v is attached; detach it first" "${r[@]}" delete v
echo "== a CoW device changed behind cowd's back, found at attach"
c() { cowctl "${r[@]}" "$@"; }
c create e --base "$d/base.img" --cow "$d/cow2.img" >/dev/null
c create s --base "$d/base.img" --cow "$d/cow3.img" >/dev/null
truncate -s 0 "$d/cow2.img"
truncate -s 8M "$d/cow3.img"
jerr 1 bad-superblock "volume e: CoW device $d/cow2.img holds no dscow volume: it has 0 bytes, less than the 8192 of the superblocks" \
  "${r[@]}" attach e
jerr 1 cow-too-small "volume s: CoW device $d/cow3.img is too small: it has 8388608 bytes and needs 8454144 (base 8388608 + metadata)" \
  "${r[@]}" attach s
expect 1 "" "${r[@]}" attach s
[ "$(cat "$d/stderr")" = "cowctl: volume s: CoW device $d/cow3.img is too small: it has 8388608 bytes and needs 8454144 (base 8388608 + metadata)" ] \
  || fail "stderr: $(cat "$d/stderr")"

echo "== one command list: help names handoff-times, fence probe, --buffered"
help=$(cowctl help)
for w in handoff-times "fence probe NAME" "--buffered" "debug dump"; do
  grep -qF -- "$w" <<<"$help" || fail "help does not mention $w"
done
echo "== and cowd serves every command that help names"
for cmd in $(sed -n 's/^  \([a-z-]*\) .*/\1/p' <<<"$help" | sort -u); do
  rc=0; out=$(c --json "$cmd" --no-such-option 2>&1) || rc=$?
  echo "  $cmd -> $rc $out"
  [[ $out != *"unknown command"* ]] || fail "cowd does not serve $cmd"
done
expect 0 '{"served":[],"held":[]}' "${r[@]}" --json handoff-times
pass
