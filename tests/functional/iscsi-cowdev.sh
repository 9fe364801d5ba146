#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A LUN used as a CoW device belongs to one volume, however its URL names
# it (issue 10, item 1): the same URL, and another portal name for the
# same LUN (localhost for 127.0.0.1), which only the LUN's VPD identity
# (page 0x83) tells apart, are refused with a sentence naming both
# volumes, --force or not; the first volume's data reads back exactly.
# Detached, the volume's device is still refused: by the VPD identity
# create recorded, and, for a definition without one (an older cowd's),
# by the superblock that names it; attach records the identity then.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/tgtd.sh"
requires_root
requires qemu-io cowd cowctl

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.lun" 8M random
new_image "$d/cow.lun" 10M zero
new_image "$d/cow2.lun" 10M zero
tgt_start
iqn=iqn.2024-01.org.cowherd:cowdev
tgt_lun 1 "$iqn" 1 "$d/base.lun"
tgt_lun 1 "$iqn" 2 "$d/cow.lun"
tgt_lun 1 "$iqn" 3 "$d/cow2.lun"
start_cowd "$d/run"
c() { cowctl --run-dir "$d/run" "$@"; }
taken="is the CoW device of volume a already; a CoW device belongs to one volume"
base=$(tgt_url "$iqn" 1)
cow=$(tgt_url "$iqn" 2)
alias="iscsi://localhost:$TGT_PORT/$iqn/2"

c create a --base "$base" --cow "$cow"
c attach a >/dev/null
qio_ok "nbd+unix:///?socket=$d/run/a.sock" "write a" "write -P 0xa1 0 64k"
expect_exact "volume b: CoW device $cow $taken" create b --base "$base" --cow "$cow" --force
expect_exact "volume b: CoW device $alias $taken" create b --base "$base" --cow "$alias" --force
c create b --base "$base" --cow "$(tgt_url "$iqn" 3)"     # its own LUN: fine
qio_ok "nbd+unix:///?socket=$d/run/a.sock" "a's data lost" "read -P 0xa1 0 64k"
c detach a
# Detached, a is still defined: its recorded VPD identity names the LUN
# however it is reached, and --force does not format over it.
[[ $(defs_sql "$d/run/state" "SELECT cow_ident FROM volumes WHERE name = 'a'") == naa.* ]] \
  || fail "create did not record a's VPD identity: $(defs_sql "$d/run/state" "SELECT * FROM volumes")"
expect_exact "volume e: CoW device $alias $taken" create e --base "$base" --cow "$alias" --force
# A definition without an identity (made by an older cowd): the device's
# superblock names a, a defined volume, and that refuses it too.
stop_cowd "$d/run"
defs_sql "$d/run/state" "UPDATE volumes SET cow_ident = '' WHERE name = 'a'"
start_cowd "$d/run"
expect_exact "volume e: CoW device $alias $taken" create e --base "$base" --cow "$alias" --force
c attach a >/dev/null
qio_ok "nbd+unix:///?socket=$d/run/a.sock" "a's data lost after the refused create" "read -P 0xa1 0 64k"
[[ $(defs_sql "$d/run/state" "SELECT cow_ident FROM volumes WHERE name = 'a'") == naa.* ]] \
  || fail "attach did not record a's VPD identity"
c detach a
# Deleted, a's device is free for a new volume.
c delete a
c create e --base "$base" --cow "$alias" --force >/dev/null
pass
