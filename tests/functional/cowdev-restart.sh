#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A CoW device belongs to one volume right after a restart with many
# definitions.  cowd loads its definitions without the stat of each CoW
# device (its key: device and inode) and takes those keys from its loop
# afterwards, a slice at a time; a lookup before they are all taken takes
# the rest first.  COWD_TEST_NO_KEY_SLICES stops the slices, so that every
# check here runs before any key was taken in the background:
#  - a new volume on another name (a symlink, a hard link) of a loaded
#    volume's CoW device is refused at once, naming that volume;
#  - of two loaded definitions of one device, the first by name keeps it,
#    as when each key was taken at load (attach refuses the second only);
#  - a definition removed before its key was taken leaves its device free.
# Then without the hook: the keys are taken from the loop (logged), and a
# new name of a loaded volume's device is refused just the same.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/voldefs.sh"
requires cowd cowctl sqlite3 jq

N=${COWDEV_RESTART_N:-20000}
d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
vm() { printf 'vm%06d' "$1"; }
dev() { printf '%s/dev/c%06d' "$d" "$1"; }
taken() { echo "volume $1: CoW device $2 is the CoW device of volume $3 already; a CoW device belongs to one volume"; }

new_image "$d/base.img" 8M zero
mkdir -p "$d/run/state"
voldefs_conf "$N" "$d/run/state/volumes.conf" "$d/dev"
start_cowd "$d/run"
[ "$(c --json list | jq length)" = "$N" ] || fail "cowd did not import $N definitions"
# The last definition by name shares the device of the second.
last=$((N - 1))
ln -s "$(dev 1)" "$d/second"
stop_cowd "$d/run"
defs_sql "$d/run/state" "UPDATE volumes SET cow = '$d/second' WHERE name = '$(vm $last)'"

echo "== restarted with $N definitions, no key taken from the loop"
: > "$d/run.log"
COWD_TEST_NO_KEY_SLICES=1 start_cowd "$d/run"
ln -s "$(dev $((last - 1)))" "$d/alias"
ln "$(dev $((N / 2)))" "$d/hard"
expect_exact "$(taken new "$d/alias" "$(vm $((last - 1)))")" \
  create new --base "$d/base.img" --cow "$d/alias" --force
expect_exact "$(taken new "$d/hard" "$(vm $((N / 2)))")" \
  create new --base "$d/base.img" --cow "$d/hard" --force
expect_exact "$(taken "$(vm $last)" "$d/second" "$(vm 1)")" attach "$(vm $last)"
out=$(c attach "$(vm 1)" 2>&1) && fail "attach of an empty CoW file succeeded: $out"
[[ $out != *"is the CoW device of"* ]] || fail "the first definition of a device was refused: $out"
echo "  attach $(vm 1): $out"
grep -q "identified from the loop" "$d/run.log" && fail "keys were taken from the loop despite COWD_TEST_NO_KEY_SLICES"
stop_cowd "$d/run"

echo "== a definition removed before its key was taken leaves its device free"
COWD_TEST_NO_KEY_SLICES=1 start_cowd "$d/run"
c delete "$(vm 7)"
truncate -s 10M "$(dev 7)"
ln -s "$(dev 7)" "$d/seventh"
c create again --base "$d/base.img" --cow "$d/seventh" >/dev/null \
  || fail "the device of a deleted definition was refused"
expect_exact "$(taken other "$d/alias" "$(vm $((last - 1)))")" \
  create other --base "$d/base.img" --cow "$d/alias" --force
stop_cowd "$d/run"

echo "== the keys taken from the loop"
: > "$d/run.log"
start_cowd "$d/run"
wait_until 60 grep -q "identified from the loop" "$d/run.log" \
  || fail "cowd did not log the keys taken from the loop"
grep "identified from the loop" "$d/run.log" | sed 's/^/  /'
expect_exact "$(taken new "$d/alias" "$(vm $((last - 1)))")" \
  create new --base "$d/base.img" --cow "$d/alias" --force
expect_exact "$(taken new "$d/hard" "$(vm $((N / 2)))")" \
  create new --base "$d/base.img" --cow "$d/hard" --force
pass
