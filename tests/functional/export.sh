#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# cowctl export: the volume's contents at the moment the export starts,
# written as a raw image to a file or an iSCSI LUN while the volume serves.
#  1. an idle volume with data in the CoW layer and on the base (and a
#     zero region): the image is byte-identical to an nbdcopy of the
#     volume, to a new file (created sparse: zero chunks skipped), to an
#     existing one and to a loop block device (every chunk written);
#  2. point in time: during a slow export a client rewrites the whole
#     volume (write, write-zeroes, trim): the image is the volume as it was
#     at the start, byte for byte, and the volume reads the new data;
#  3. to an iSCSI LUN on tgtd: the LUN holds the volume;
#  4. bad input: each exact sentence and exit status, the volume unchanged
#     (a target too small, the volume's own base or CoW, another volume's
#     devices, no such volume, an unreachable portal, a second export,
#     --cancel with nothing to cancel, a cancel under a waiting cowctl,
#     rollback during an export, a detach and a restart of cowd during
#     one (no resume: the waiting cowctl fails), a target that fills
#     up (ENOSPC on a small tmpfs) while the volume keeps serving);
#  5. a chain volume (after a snapshot) exports its top view.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/tgtd.sh"
requires_root
requires nbdcopy qemu-io qemu-img cowd cowctl jq losetup

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
xp() { c --json stats "$1" | jq -r ".export.$2"; }
uri="nbd+unix:///?socket=$d/run/v.sock"
new_image "$d/base.img" 16M random
dd if=/dev/zero of="$d/base.img" bs=1M seek=8 count=2 conv=notrunc status=none
basesum=$(sha256sum < "$d/base.img")
new_image "$d/wbase.img" 8M random
truncate -s 18M "$d/cow.img" "$d/cow2.img"
truncate -s 10M "$d/wcow.img"
start_cowd "$d/run"
c create v --base "$d/base.img" --cow "$d/cow.img" >/dev/null
c create w --base "$d/wbase.img" --cow "$d/wcow.img" >/dev/null
c attach v >/dev/null
c attach w >/dev/null
qio_ok "$uri" "writing v" "write -P 0x11 0 1M" "write -P 0x22 5M 100k" \
  "write -P 0x33 12M 64k" "write -P 0x44 16711680 64k"

# 1. idle: a new file (sparse, zero chunks skipped), an existing one and a
#    block device (every chunk written)
nbdcopy "$uri" "$d/ref.img"
c export v --to "$d/new.img" > "$d/out1" || fail "export to a new file: $(cat "$d/out1")"
grep -qx "v: exported to $d/new.img: 16777216 bytes in [0-9.]* s ([0-9.]* MB/s)" "$d/out1" \
  || fail "export did not end with its summary: $(cat "$d/out1")"
cmp "$d/ref.img" "$d/new.img" || fail "the exported new file differs from the volume"
[ "$(xp v skipped)" = 32 ] || fail "a new file: the 32 zero chunks should be skipped: $(xp v skipped)"
new_image "$d/old.img" 20M random
c --json export v --to "$d/old.img" > "$d/out1j" || fail "export --json: $(cat "$d/out1j")"
[ "$(jq -r '.name + " " + .export.state + " " + (.export.done|tostring) + " " + (.export.skipped|tostring) + " " + (.export.percent|tostring)' "$d/out1j")" = "v done 256 0 100" ] \
  || fail "export --json: $(cat "$d/out1j")"
cmp -n 16777216 "$d/ref.img" "$d/old.img" || fail "the export to an existing file differs from the volume"
new_image "$d/blk.img" 16M random
loop=$(losetup --find --show "$d/blk.img"); cleanup_fn losetup -d "$loop"
c export v --to "$loop" >/dev/null || fail "export to block device $loop"
cmp "$d/ref.img" "$loop" || fail "the block device differs from the volume"
[ "$(xp v skipped)" = 0 ] || fail "a block device must get every chunk written"
echo "  idle: a new file, an existing file and a block device equal the volume"

# 2. point in time: writes during the export are not in it
c export v --to "$d/pit.img" --rate 1 > "$d/out2" 2>&1 & xpid=$!
cleanup_fn kill_pid "$xpid"
wait_until 10 sh -c "[ \"\$(cowctl --run-dir $d/run --json stats v | jq -r .export.state)\" = running ] && [ \"\$(cowctl --run-dir $d/run --json stats v | jq -r .export.target)\" = $d/pit.img ]" \
  || fail "the slow export is not running: $(c stats v)"
c stats v | grep -E "^export: +running to $d/pit.img, [0-9.]+% \([0-9]+ of 256 chunks, 0 copied ahead of writes\), [0-9.]+ MB/s \(limit 1 MB/s\)" >/dev/null \
  || fail "stats shows no export progress: $(c stats v)"
qemu-io -f raw "$uri" -c "write -z 2M 1M" -c "discard 0 1M" > "$d/qio" 2>&1 || true
grep -qx "discard 1048576/1048576 bytes at offset 0" "$d/qio" && grep -qx "wrote 1048576/1048576 bytes at offset 2097152" "$d/qio" \
  || fail "write-zeroes and trim during the export: $(cat "$d/qio")"
qio_ok "$uri" "writing during the export" "write -P 0x5a 0 16M" "write -z 15M 64k"
qio_ok "$uri" "the volume does not read the new data" "read -P 0x5a 0 15M" \
  "read -P 0 15M 64k" "read -P 0x5a 15794176 960k"
wait "$xpid" || fail "the export during writes failed: $(cat "$d/out2")"
cmp "$d/ref.img" "$d/pit.img" || fail "writes made during the export reached the image"
ahead=$(xp v ahead)
[ "$ahead" -gt 0 ] || fail "no chunk was copied ahead of a write"
echo "  point in time: $ahead of 256 chunks copied ahead of the writes; image = volume at the start"
qemu-io -f raw "$uri" -c "write -P 0x11 0 1M" -c "write -P 0x22 5M 100k" \
  -c "write -P 0x33 12M 64k" -c "write -P 0x44 16711680 64k" >/dev/null
nbdcopy "$uri" "$d/ref2.img"

# 3. an iSCSI LUN
new_image "$d/x.lun" 20M zero
tgt_start
iqn=iqn.2024-01.org.cowherd:export
tgt_lun 1 "$iqn" 1 "$d/x.lun"
lun=$(tgt_url $iqn 1)
c export v --to "$lun" > "$d/out3" || fail "export to a LUN: $(cat "$d/out3")"
grep -qx "v: exported to $lun: 16777216 bytes in [0-9.]* s ([0-9.]* MB/s)" "$d/out3" \
  || fail "export to a LUN: $(cat "$d/out3")"
cmp -n 16777216 "$d/ref2.img" "$d/x.lun" || fail "the LUN's file differs from the volume"
qemu-img compare -q -f raw -F raw "$lun" "$d/ref2.img" \
  || fail "the LUN read back over iSCSI differs from the volume (or its 4M tail is not zero)"
[ "$(xp v skipped)" = 0 ] || fail "a LUN must get every chunk written"
echo "  iSCSI LUN equals the volume"

# 4. bad input
truncate -s 8M "$d/small.img"
expect_exact "volume v: the export target $d/small.img is too small: it has 8388608 bytes and the volume 16777216 bytes" \
  export v --to "$d/small.img"
[ "$(c --json export v --to "$d/small.img" | jq -r .error.code)" = bad-device ] || fail "too small: not bad-device"
expect_exact "volume v: the export target $d/base.img is the volume's own base" export v --to "$d/base.img"
expect_exact "volume v: the export target $d/cow.img is a CoW layer of the volume itself" export v --to "$d/cow.img"
expect_exact "volume v: the export target $d/wbase.img is the base of volume w" export v --to "$d/wbase.img"
expect_exact "volume v: the export target $d/wcow.img is the CoW device of volume w" export v --to "$d/wcow.img"
expect_exact "volume nosuch does not exist" export nosuch --to "$d/n.img"
rc=0; out=$(c export v --to "iscsi://127.0.0.1:9/$iqn/1" 2>&1) || rc=$?
[ $rc = 1 ] || fail "an unreachable portal: exit $rc"
[[ $out == "cowctl: volume v: the export target cannot be used: iscsi://127.0.0.1:9/$iqn/1: cannot reach the portal"* ]] \
  || fail "unreachable portal: $out"
echo "  $out"
[ ! -e "$d/n.img" ] || fail "a refused export created its target"
expect_exact "volume v has no export running" export v --cancel
rc=0; c export v >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || fail "export without --to exited $rc, not 2"
(cd "$d" && c export v --to rel.img --rate 1 --no-wait) | grep -qx "v: export to $d/rel.img started; writes from now on are not in it" \
  || fail "a relative target is not made absolute"
expect_exact "volume v: an export to $d/rel.img runs already; cancel it first (cowctl export v --cancel)" \
  export v --to "$d/other.img"
[ "$(c --json export v --to "$d/other.img" | jq -r .error.code)" = busy ] || fail "second export: not busy"
expect_exact "volume v: no reset while an export runs (it would change what the export copies)" reset v
c export v --cancel | grep -qx "v: export cancelled" || fail "cancel"
[ "$(xp v state)" = cancelled ] || fail "not cancelled: $(c stats v)"
# a waiting cowctl whose export is cancelled, then one whose volume is detached
c export v --to "$d/c.img" --rate 1 > "$d/out4" 2>&1 & xpid=$!
wait_until 10 sh -c "[ \"\$(cowctl --run-dir $d/run --json stats v | jq -r .export.target)\" = $d/c.img ]" || fail "export to c.img did not start"
c export v --cancel >/dev/null
rc=0; wait "$xpid" || rc=$?
[ $rc = 1 ] || fail "a cancelled export's cowctl exited $rc"
grep -Eqx "cowctl: volume v: the export to $d/c.img was cancelled at [0-9]+ of 256 chunks" "$d/out4" \
  || fail "cancelled: $(cat "$d/out4")"
c export v --to "$d/det.img" --rate 1 > "$d/out5" 2>&1 & xpid=$!
wait_until 10 sh -c "[ \"\$(cowctl --run-dir $d/run --json stats v | jq -r .export.target)\" = $d/det.img ]" || fail "export to det.img did not start"
c detach v
rc=0; wait "$xpid" || rc=$?
[ $rc = 1 ] || fail "the cowctl of an export whose volume was detached exited $rc"
grep -Eqx "cowctl: volume v: (the export ended without a result: the volume was detached or cowd restarted \(an export does not survive either\)|the export to $d/det.img stopped at [0-9]+ of 256 chunks: the volume was held for a detach, a handoff or a quorum loss)" "$d/out5" \
  || fail "detached: $(cat "$d/out5")"
c attach v >/dev/null
# ... and one whose cowd restarts: no resume, a failure either way
c export v --to "$d/rst.img" --rate 1 > "$d/out6" 2>&1 & xpid=$!
wait_until 10 sh -c "[ \"\$(cowctl --run-dir $d/run --json stats v | jq -r .export.target)\" = $d/rst.img ]" || fail "export to rst.img did not start"
stop_cowd "$d/run"
start_cowd "$d/run"
rc=0; wait "$xpid" || rc=$?
grep -Eqx "cowctl: volume v: (the export ended without a result: (the volume was detached or cowd restarted \(an export does not survive either\)|cowd at $d/run went away \(an export does not survive a restart\))|the export to $d/rst.img stopped at [0-9]+ of 256 chunks: the volume was held for a detach, a handoff or a quorum loss)" "$d/out6" \
  || fail "restarted: $(cat "$d/out6")"
[ $rc = 1 ] || [ $rc = 3 ] || fail "the cowctl of an export whose cowd restarted exited $rc"
[ "$(xp v state)" = null ] || fail "an export came back after a restart: $(c stats v)"
echo "  restart: $(cat "$d/out6") (exit $rc)"
nbdcopy "$uri" "$d/now.img"
cmp "$d/ref2.img" "$d/now.img" || fail "the bad input changed the volume"
# the target fills up: the export fails naming it, the volume serves on
mkdir "$d/mnt"
mount -t tmpfs -o size=4m tmpfs "$d/mnt"; cleanup_fn umount "$d/mnt"
out=$(c export v --to "$d/mnt/full.img" 2>&1 >/dev/null) && fail "an export to a full filesystem succeeded"
[[ $out =~ ^"cowctl: volume v: the export to $d/mnt/full.img failed at "[0-9]+" of 256 chunks: writing to the target: No space left on device"$ ]] \
  || fail "ENOSPC: $out"
echo "  $out"
qio_ok "$uri" "the volume does not serve after a failed export" "write -P 0x66 6M 64k" "read -P 0x66 6M 64k"

# 5. a chain: the top view
c snapshot v --cow "$d/cow2.img" --name s1 >/dev/null
qio_ok "$uri" "writing the top layer" "write -P 0x77 64k 64k" "write -P 0x78 9M 1M"
nbdcopy "$uri" "$d/ref5.img"
c export v --to "$d/chain.img" >/dev/null || fail "export of a chain"
cmp "$d/ref5.img" "$d/chain.img" || fail "the exported chain differs from its top view"
expect_exact "volume v: the export target $d/cow2.img is a CoW layer of the volume itself" export v --to "$d/cow2.img"
echo "  chain: the top view exported"
stop_cowd "$d/run"
[ "$(sha256sum < "$d/base.img")" = "$basesum" ] || fail "the base was written"
pass
