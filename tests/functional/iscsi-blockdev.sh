#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The open-iscsi path: LUNs as real block devices, the way
# /dev/disk/by-path/ip-...-lun-N gives them to a host that logged in with
# iscsiadm.  iscsiadm cannot log in here (no iscsi_tcp module), so
# qemu-storage-daemon's iscsi driver, its FUSE export and
# `losetup --direct-io=on` make the block devices; cowd opens them O_DIRECT
# through io_uring.  Patterns, fio verify, restart, base unchanged.
#
# fio runs at queue depth 1 here: qemu-storage-daemon's FUSE export (qemu
# 7.2) mixes up concurrent O_DIRECT writes to its file: fio at QD16 on the
# exported file itself, without cowd, fails verification, while QD1
# passes.  That is the stand-in's limit, not the path's.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/tgtd.sh"
requires_root
requires qemu-storage-daemon losetup qemu-io fio cowd cowctl

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.lun" 32M random
new_image "$d/cow.lun" 40M zero
sum=$(md5sum < "$d/base.lun")
tgt_start
iqn=iqn.2024-01.org.cowherd:blk
tgt_lun 1 "$iqn" 1 "$d/base.lun"
tgt_lun 1 "$iqn" 2 "$d/cow.lun"

touch "$d/base.fuse" "$d/cow.fuse"
qemu-storage-daemon \
  --blockdev driver=iscsi,node-name=b,transport=tcp,portal=127.0.0.1:$TGT_PORT,target=$iqn,lun=1,initiator-name=iqn.2024-01.org.cowherd:qsd,cache.direct=on \
  --blockdev driver=iscsi,node-name=c,transport=tcp,portal=127.0.0.1:$TGT_PORT,target=$iqn,lun=2,initiator-name=iqn.2024-01.org.cowherd:qsd,cache.direct=on \
  --export type=fuse,id=eb,node-name=b,mountpoint="$d/base.fuse",writable=on \
  --export type=fuse,id=ec,node-name=c,mountpoint="$d/cow.fuse",writable=on \
  --pidfile "$d/qsd.pid" >"$d/qsd.log" 2>&1 &
qsd=$!
cleanup_fn sh -c "umount '$d/base.fuse' '$d/cow.fuse' 2>/dev/null || true"
cleanup_fn kill_pid "$qsd"
wait_for_file "$d/qsd.pid" 10 || { cat "$d/qsd.log"; fail "qemu-storage-daemon did not start"; }
wait_until 10 sh -c "grep -q ' $d/cow.fuse ' /proc/mounts"
bdev=$(losetup -f --show --direct-io=on "$d/base.fuse"); cleanup_fn losetup -d "$bdev"
cdev=$(losetup -f --show --direct-io=on "$d/cow.fuse"); cleanup_fn losetup -d "$cdev"
echo "block devices: base $bdev, cow $cdev"

start_cowd "$d/run"
cowctl --run-dir "$d/run" create v --base "$bdev" --cow "$cdev" --chunk-size 64K
uri=$(cowctl --run-dir "$d/run" attach v)
qemu-io -f raw "$uri" -c "write -P 0x31 0 64k" -c "write -P 0x32 100k 12k" >/dev/null
fio --name=v --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=1 \
    --offset=4M --size=16M --io_size=2M --verify=crc32c --verify_state_save=0 --verify_fatal=1 \
    --output-format=terse >/dev/null || fail "fio verify failed"
stop_cowd "$d/run"
start_cowd "$d/run"
qio_ok "$uri" "data lost across restart" "read -P 0x31 0 64k" "read -P 0x32 100k 12k"
cowctl --run-dir "$d/run" status v | grep -E "state|chunks"
stop_cowd "$d/run"
[ "$(md5sum < "$d/base.lun")" = "$sum" ] || fail "the base LUN was written"
pass
