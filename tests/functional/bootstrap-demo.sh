#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The README's first step, `./bootstrap demo` (issue 10 item 7): its
# output is the demo's (the build's is hidden when it succeeds), "first
# MiB identical to base" really prints, and the status it shows adds up
# (a CoW fault's copy from the base is not a read: issue 10 item 9).
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io nbdcopy cowd cowctl
requires_root
# The demo builds in the source tree: only where the tree is the build.
[ "$(cd "$top_srcdir" && pwd -P)" = "$(cd "$top_builddir" && pwd -P)" ] \
  || { echo "SKIP: the demo needs an in-tree build"; exit 77; }

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
stop_demo() { [ -f "$d/demo/run/cowd.pid" ] && kill_pid "$(cat "$d/demo/run/cowd.pid")"; true; }
cleanup_fn stop_demo
rc=0
DEMO_DIR=$d/demo BOOTSTRAP_SKIP_DEPS=1 "$top_srcdir/bootstrap" demo >"$d/out" 2>&1 || rc=$?
cat "$d/out"
[ $rc = 0 ] || fail "bootstrap demo: exit $rc"
[ "$(head -1 "$d/out")" = "== a 256 MiB golden image (random data) and a CoW file for changes" ] \
  || fail "the demo's output does not come first: $(head -1 "$d/out")"
grep -qxF "first MiB identical to base" "$d/out" || fail "no 'first MiB identical to base'"
# reads: N (TOTAL bytes: BASE from base, COW from CoW); nbdcopy's reads
# vary, the sum must not.
line=$(grep '^reads:' "$d/out")
[[ $line =~ \(([0-9]+)\ bytes:\ ([0-9]+)\ from\ base,\ ([0-9]+)\ from\ CoW\) ]] \
  || fail "no reads line: $line"
[ $((BASH_REMATCH[2] + BASH_REMATCH[3])) = "${BASH_REMATCH[1]}" ] \
  || fail "the status's reads do not add up: $line"
pass
