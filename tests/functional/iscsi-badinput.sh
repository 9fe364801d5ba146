#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# iSCSI bad input: an unreachable portal, a wrong IQN, a wrong LUN, failed
# CHAP, a LUN too small for the volume, a URL that is not one: one clear
# sentence each from cowctl; a volume already attached keeps serving.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/tgtd.sh"
requires_root
requires qemu-io cowd cowctl

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.lun" 16M random
new_image "$d/cow.lun" 20M zero
new_image "$d/small.lun" 8M zero
new_image "$d/cbase.lun" 8M random
new_image "$d/ccow.lun" 10M zero
tgt_start
iqn=iqn.2024-01.org.cowherd:bad
tgt_lun 1 "$iqn" 1 "$d/base.lun"
tgt_lun 1 "$iqn" 2 "$d/cow.lun"
tgt_lun 1 "$iqn" 3 "$d/small.lun"
chap=iqn.2024-01.org.cowherd:chap
tgt_lun 2 "$chap" 1 "$d/cbase.lun"
tgt_lun 2 "$chap" 2 "$d/ccow.lun"
tgt_account cowherd right-secret-1 2
cat > "$d/cowd.conf" <<CONF
[iscsi]
chap-user = cowherd
chap-password = wrong-secret-1
CONF
start_cowd "$d/run" --config "$d/cowd.conf"
c() { cowctl --run-dir "$d/run" "$@"; }
c create good --base "$(tgt_url $iqn 1)" --cow "$(tgt_url $iqn 2)"
good=$(c attach good)
qemu-io -f raw "$good" -c "write -P 0x42 0 256k" >/dev/null

port=$TGT_PORT
# LUN 2 is good's CoW device, which no other definition may name: the bad
# bases are tried with LUN 3 as CoW (the base is opened first).
expect_error "volume x: base iscsi://127.0.0.1:9/$iqn/1: cannot reach the portal" \
  create x --base "iscsi://127.0.0.1:9/$iqn/1" --cow "$(tgt_url $iqn 3)"
expect_error "volume x: base iscsi://127.0.0.1:$port/iqn.2024-01.org.cowherd:nosuch/1: login failed: no such target" \
  create x --base "iscsi://127.0.0.1:$port/iqn.2024-01.org.cowherd:nosuch/1" --cow "$(tgt_url $iqn 3)"
expect_error "volume x: base iscsi://127.0.0.1:$port/$iqn/7: the LUN does not exist" \
  create x --base "$(tgt_url $iqn 7)" --cow "$(tgt_url $iqn 3)"
expect_error "volume x: base iscsi://127.0.0.1:$port/$chap/1: login failed: CHAP authentication rejected" \
  create x --base "$(tgt_url $chap 1)" --cow "$(tgt_url $chap 2)"
expect_error "volume x: CoW device iscsi://127.0.0.1:$port/$iqn/3 is too small" \
  create x --base "$(tgt_url $iqn 1)" --cow "$(tgt_url $iqn 3)"
expect_error "not an iSCSI URL" create x --base "iscsi://127.0.0.1/" --cow "$(tgt_url $iqn 3)"
! grep -q wrong-secret "$d/run.log" || fail "the CHAP password reached the log"
qio_ok "$good" "the good volume lost data" "read -P 0x42 0 256k"
c --json status good | jq -e '.state == "active"' >/dev/null || fail "the good volume stopped serving"
pass
