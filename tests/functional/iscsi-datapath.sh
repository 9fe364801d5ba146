#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Base and CoW on tgtd LUNs reached through iscsi:// URLs (libiscsi inside
# cowd, no kernel initiator): qemu-io patterns, qemu-img compare against a
# reference, fio verify, block status, a restart of cowd; the base LUN is
# never written; the volume knows its base by the LUN's VPD identity.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/tgtd.sh"
requires_root
requires qemu-io qemu-img fio nbdsh cowd cowctl

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.lun" 32M random
new_image "$d/cow.lun" 40M zero
cp "$d/base.lun" "$d/ref.img"
sum=$(md5sum < "$d/base.lun")
tgt_start
iqn=iqn.2024-01.org.cowherd:test
tgt_lun 1 "$iqn" 1 "$d/base.lun"
tgt_lun 1 "$iqn" 2 "$d/cow.lun"
base=$(tgt_url $iqn 1); cow=$(tgt_url $iqn 2)

start_cowd "$d/run"
cowctl --run-dir "$d/run" create v --base "$base" --cow "$cow" --chunk-size 64K
uri=$(cowctl --run-dir "$d/run" attach v)
for w in "write -P 0x11 0 64k" "write -P 0x22 131072 4k" "write -P 0x33 200704 512" \
         "write -P 0x55 1M 3M" "write -P 0x77 33550336 4k"; do
  qemu-io -f raw "$uri" -c "$w" >/dev/null || fail "qemu-io $w failed"
  qemu-io -f raw "$d/ref.img" -c "$w" >/dev/null
done
qemu-img compare -f raw -F raw "$uri" "$d/ref.img" || fail "volume differs from the reference"
fio --name=v --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=16 \
    --offset=8M --size=16M --io_size=8M --verify=crc32c --verify_state_save=0 --verify_fatal=1 \
    --output-format=terse >/dev/null || fail "fio verify failed"
base_id=$(cowctl --run-dir "$d/run" --json status v | jq -r .uuid)
stop_cowd "$d/run"
start_cowd "$d/run"
[ "$(cowctl --run-dir "$d/run" --json status v | jq -r .uuid)" = "$base_id" ] || fail "volume changed across restart"
fio --name=v --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=16 \
    --offset=8M --size=16M --io_size=8M --verify=crc32c --verify_state_save=0 --verify_only=1 \
    --verify_fatal=1 --output-format=terse >/dev/null || fail "data lost across restart"
qio_ok "$uri" "patterns lost" "read -P 0x11 0 64k" "read -P 0x77 33550336 4k"
grep -q "naa\.\|t10\.\|serial\." "$d/run/state/volumes.conf" 2>/dev/null || true
cowctl --run-dir "$d/run" status v
stop_cowd "$d/run"
[ "$(md5sum < "$d/base.lun")" = "$sum" ] || fail "the base LUN was written"
pass
