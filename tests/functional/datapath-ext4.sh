#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A real ext4 on a volume: qemu-storage-daemon's FUSE export of the NBD
# volume, a loop device, mkfs.ext4, mount, files, umount, e2fsck clean;
# restart cowd; the filesystem checks clean again and the files are intact.
# With COWHERD_TEST_ISCSI=1 (iscsi-ext4.sh) base and CoW are tgtd LUNs.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-storage-daemon losetup mkfs.ext4 e2fsck mount cowd cowctl
requires_root

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 128M zero
truncate -s 140M "$d/cow.img"
base=$d/base.img cow=$d/cow.img
if [ "${COWHERD_TEST_ISCSI:-0}" = 1 ]; then
  source "$top_srcdir/tests/tgtd.sh"
  tgt_start
  tgt_lun 1 iqn.2024-01.org.cowherd:ext4 1 "$d/base.img"
  tgt_lun 1 iqn.2024-01.org.cowherd:ext4 2 "$d/cow.img"
  base=$(tgt_url iqn.2024-01.org.cowherd:ext4 1)
  cow=$(tgt_url iqn.2024-01.org.cowherd:ext4 2)
fi
start_cowd "$d/run"
cowctl --run-dir "$d/run" create fs --base "$base" --cow "$cow"
cowctl --run-dir "$d/run" attach fs >/dev/null
sock=$d/run/fs.sock

qsd_pid=
loopdev=
fs_up() {
  touch "$d/export"
  qemu-storage-daemon --blockdev driver=nbd,node-name=n0,server.type=unix,server.path="$sock" \
    --export type=fuse,id=e0,node-name=n0,mountpoint="$d/export",writable=on \
    --pidfile "$d/qsd.pid" >"$d/qsd.log" 2>&1 &
  qsd_pid=$!
  wait_for_file "$d/qsd.pid" 10 || fail "qemu-storage-daemon did not start"
  wait_until 10 sh -c "grep -q ' $d/export ' /proc/mounts"
  loopdev=$(losetup -f --show "$d/export")
}
fs_down() {
  [ -n "$loopdev" ] && { losetup -d "$loopdev" || true; loopdev=; }
  [ -n "$qsd_pid" ] && { kill_pid "$qsd_pid"; qsd_pid=; }
  umount "$d/export" 2>/dev/null || true
}
cleanup_fn fs_down
cleanup_fn sh -c "umount '$d/mnt' 2>/dev/null || true"

fs_up
mkfs.ext4 -q -F "$loopdev"
mkdir -p "$d/mnt"
mount "$loopdev" "$d/mnt"
for i in $(seq 20); do head -c $((i * 37 * 1024)) /dev/urandom > "$d/mnt/file$i"; done
mkdir "$d/mnt/dir"; cp -a "$d/mnt"/file1* "$d/mnt/dir/"
(cd "$d/mnt" && find . -type f -exec md5sum {} + | sort -k2) > "$d/sums"
umount "$d/mnt"
e2fsck -fn "$loopdev" || fail "e2fsck found errors before restart"
fs_down

stop_cowd "$d/run"
start_cowd "$d/run"

fs_up
e2fsck -fn "$loopdev" || fail "e2fsck found errors after restart"
mount "$loopdev" "$d/mnt"
(cd "$d/mnt" && find . -type f -exec md5sum {} + | sort -k2) | diff - "$d/sums" || fail "files changed"
umount "$d/mnt"
fs_down
cmp -s "$d/base.img" <(head -c 128M /dev/zero) || fail "the base was written"
cowctl --run-dir "$d/run" status fs
pass
