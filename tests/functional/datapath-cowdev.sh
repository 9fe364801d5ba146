#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A CoW device belongs to one volume definition, however it is named
# (issue 10, item 1).  The issue's scenario: volume a attached and written,
# then `create b --force` over the same CoW device and b written: a's data
# was overwritten.  Now the second definition is refused with a sentence
# naming both volumes, whether the device is named by a relative path, a
# symlink, a hard link or (block device) a second device node; a second
# cowd cannot format it while a holds it (OFD lock on a file, O_EXCL on a
# block device); a CoW device formatted for another name is refused at
# attach.  After each attempt a's data reads back exactly.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io cowd cowctl losetup sqlite3

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 8M random
truncate -s 10M "$d/shared.img" "$d/x.img" "$d/c.img"
start_cowd "$d/run"
c() { cowctl --run-dir "$d/run" "$@"; }
a_intact() { qio_ok "nbd+unix:///?socket=$d/run/a.sock" "a's data lost ($1)" "read -P 0xa1 0 64k"; }
taken="is the CoW device of volume a already; a CoW device belongs to one volume"

echo "== the issue's scenario"
c create a --base "$d/base.img" --cow "$d/shared.img"
c attach a >/dev/null
qio_ok "nbd+unix:///?socket=$d/run/a.sock" "write a" "write -P 0xa1 0 64k"
expect_exact "volume b: CoW device $d/shared.img $taken" \
  create b --base "$d/base.img" --cow "$d/shared.img" --force
expect_exact "volume b does not exist" attach b
out=$(qemu-io -f raw "nbd+unix:///?socket=$d/run/b.sock" -c 'write -P 0xb2 0 64k' 2>&1) \
  && fail "a write to volume b succeeded: $out"
a_intact "after create b --force"

echo "== the same device under other names"
ln -s shared.img "$d/link.img"
ln "$d/shared.img" "$d/hard.img"
(cd "$d" && expect_exact "volume b: CoW device $d/shared.img $taken" \
  create b --base base.img --cow shared.img --force)
expect_exact "volume b: CoW device $d/link.img $taken" \
  create b --base "$d/base.img" --cow "$d/link.img" --force
expect_exact "volume b: CoW device $d/hard.img $taken" \
  create b --base "$d/base.img" --cow "$d/hard.img" --force
expect_exact "volume b: CoW device $d/./shared.img $taken" \
  create b --base "$d/base.img" --cow "$d/./shared.img" --force
# Detached, the definition still owns the device.
c detach a
expect_exact "volume b: CoW device $d/link.img $taken" \
  create b --base "$d/base.img" --cow "$d/link.img" --force
c attach a >/dev/null
a_intact "after the aliases"

echo "== a second cowd cannot format or serve it while a is attached"
start_cowd "$d/run2"
out=$(cowctl --run-dir "$d/run2" create b --base "$d/base.img" --cow "$d/link.img" --force 2>&1) \
  && fail "a second cowd formatted a's CoW device: $out"
[ "$out" = "cowctl: volume b: CoW device $d/link.img: in use: another volume or process holds its lock (a second cowd?)" ] \
  || fail "second cowd: unexpected sentence: $out"
echo "  $out"
a_intact "after a second cowd tried"

echo "== a CoW device formatted for another volume is refused at attach"
c create x --base "$d/base.img" --cow "$d/x.img"
c delete x
c create cv --base "$d/base.img" --cow "$d/c.img"
stop_cowd "$d/run"
defs_sql "$d/run/state" "UPDATE volumes SET cow = '$d/x.img' WHERE name = 'cv'"
start_cowd "$d/run"
expect_exact "volume cv: CoW device $d/x.img was formatted for volume x; refusing to attach it (it may hold x's data)" \
  attach cv
a_intact "after the restart"

echo "== a detached volume's CoW file removed: a new file that reuses its inode is free"
# The definition keys a CoW file by device and inode; a removed file's
# inode goes to the next file made, which is not that volume's device.
truncate -s 10M "$d/gone.img"
c create g --base "$d/base.img" --cow "$d/gone.img" >/dev/null
ino=$(stat -c %i "$d/gone.img")
rm "$d/gone.img"
truncate -s 10M "$d/fresh.img"
if [ "$(stat -c %i "$d/fresh.img")" = "$ino" ]; then
  out=$(c create f --base "$d/base.img" --cow "$d/fresh.img") \
    || fail "a new file that reuses a removed CoW file's inode was refused: $out"
  echo "  inode $ino reused: $out"
else
  echo "  (the filesystem gave the new file another inode: nothing to check)"
fi
a_intact "after the inode reuse"

echo "== a block device: a second node for it, and a second cowd"
[ "$(id -u)" = 0 ] || { echo "SKIP: block devices need root"; exit 77; }
truncate -s 10M "$d/blk.img"
loop=$(losetup -f --show "$d/blk.img") || fail "no loop device"
cleanup_fn losetup -d "$loop"
c create blk --base "$d/base.img" --cow "$loop"
c attach blk >/dev/null
qio_ok "nbd+unix:///?socket=$d/run/blk.sock" "write blk" "write -P 0xc3 0 64k"
ln -s "$loop" "$d/by-id-alias"
read -r ma mi < <(stat -c '%t %T' "$loop")
mknod "$d/node-alias" b $((16#$ma)) $((16#$mi))
for alias in "$d/by-id-alias" "$d/node-alias"; do
  expect_exact "volume b: CoW device $alias is the CoW device of volume blk already; a CoW device belongs to one volume" \
    create b --base "$d/base.img" --cow "$alias" --force
done
out=$(cowctl --run-dir "$d/run2" create b --base "$d/base.img" --cow "$d/node-alias" --force 2>&1) \
  && fail "a second cowd formatted blk's CoW device: $out"
[ "$out" = "cowctl: volume b: CoW device $d/node-alias: in use: it is open exclusively elsewhere (another volume, a second cowd, or a mounted file system)" ] \
  || fail "second cowd, block device: unexpected sentence: $out"
echo "  $out"
qio_ok "nbd+unix:///?socket=$d/run/blk.sock" "blk's data lost" "read -P 0xc3 0 64k"
a_intact "at the end"
c detach blk
pass
