#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Volume definitions survive a restart of cowd; the socket path stays the
# same, a client reconnects, and status reports the same volume.  Two
# cowd instances run side by side with their own run directories.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io cowd cowctl jq

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 8M random
truncate -s 10M "$d/cow1.img" "$d/cow2.img"
start_cowd "$d/a"
start_cowd "$d/b"
cowctl --run-dir "$d/a" create va --base "$d/base.img" --cow "$d/cow1.img"
COWHERD_RUN_DIR="$d/b" cowctl create vb --base "$d/base.img" --cow "$d/cow2.img" --commit flush
cowctl --run-dir "$d/a" attach va >/dev/null
[ "$(cowctl --run-dir "$d/a" --json list | jq -r '.[].name')" = va ] || fail "instance a lists the wrong volumes"
[ "$(cowctl --run-dir "$d/b" list --json | jq -r '.[].name')" = vb ] || fail "instance b lists the wrong volumes"
uuid=$(cowctl --run-dir "$d/a" --json status va | jq -r .uuid)
qemu-io -f raw "nbd+unix:///?socket=$d/a/va.sock" -c "write -P 0x5a 0 1M" >/dev/null
stop_cowd "$d/a"
start_cowd "$d/a"
st=$(cowctl --run-dir "$d/a" --json status va)
[ "$(echo "$st" | jq -r .uuid)" = "$uuid" ] || fail "volume changed across restart: $st"
[ "$(echo "$st" | jq -r .state)" = active ] || fail "volume not re-attached after restart: $st"
qio_ok "nbd+unix:///?socket=$d/a/va.sock" "data lost across restart" "read -P 0x5a 0 1M"
[ "$(cowctl --run-dir "$d/b" --json status vb | jq -r .state)" = detached ] || fail "vb should be detached"
cowctl --run-dir "$d/a" detach va
[ -e "$d/a/va.sock" ] && fail "socket left after detach"
stop_cowd "$d/a"
start_cowd "$d/a"
[ "$(cowctl --run-dir "$d/a" --json status va | jq -r .state)" = detached ] || fail "detached volume came back attached"
pass
