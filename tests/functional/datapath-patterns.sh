#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Patterns through qemu-io at aligned, unaligned, partial-chunk and
# cross-chunk offsets; qemu-img compare against a reference image that had
# the same writes applied; the base is never written; block status shows
# which extents are in the CoW layer.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io qemu-img nbdinfo nbdsh cowd cowctl

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 32M random
truncate -s 40M "$d/cow.img"
cp "$d/base.img" "$d/ref.img"
sum_before=$(md5sum < "$d/base.img")

start_cowd "$d/run"
cowctl --run-dir "$d/run" create v1 --base "$d/base.img" --cow "$d/cow.img" --chunk-size 64K
uri=$(cowctl --run-dir "$d/run" attach v1)
[[ $uri == "nbd+unix:///?socket=$d/run/v1.sock" ]] || fail "attach printed '$uri'"
[ "$(stat -c %a "$d/run/v1.sock")" = 600 ] || fail "socket mode is not 0600"

writes=(
  "write -P 0x11 0 64k"          # one whole chunk: no copy
  "write -P 0x22 131072 4k"      # partial chunk: CoW fault
  "write -P 0x33 200704 512"     # unaligned 512 bytes inside a fault
  "write -P 0x44 262143 3"       # odd bytes across a chunk boundary
  "write -P 0x55 1M 3M"          # many chunks at once
  "write -P 0x66 1052672 4k"     # overwrite inside written chunks
  "write -P 0x77 33550336 4k"    # the last block of the volume
  "write -z 8M 256k"             # write zeroes
)
for w in "${writes[@]}"; do
  qemu-io -f raw "$uri" -c "$w" >/dev/null || fail "qemu-io $w failed"
  qemu-io -f raw "$d/ref.img" -c "$w" >/dev/null
done
qio_ok "$uri" "pattern read back wrong" "read -P 0x11 0 64k" \
  "read -P 0x22 131072 4k" "read -P 0x33 200704 512" "read -P 0x66 1052672 4k" \
  "read -P 0x77 33550336 4k" "read -P 0 8M 256k"
qemu-img compare -f raw -F raw "$uri" "$d/ref.img" || fail "volume differs from the reference"
[ "$(md5sum < "$d/base.img")" = "$sum_before" ] || fail "the base was written"

# Unchanged chunks come from the base: the 64K chunk at 64K was never written.
nbdsh -u "$uri" -c "
import sys
base = open('$d/base.img','rb').read()
assert h.pread(65536, 65536) == base[65536:131072], 'chunk 1 differs from base'
assert h.get_size() == len(base)
"
# cowherd:cow block status: chunk 0 in CoW, chunk 1 not.
map=$(nbdinfo --map=cowherd:cow "$uri")
echo "$map" | head -5
echo "$map" | awk '$1==0 && $2==65536 && $3==1' | grep -q . || fail "chunk 0 not reported in the CoW layer"
echo "$map" | awk '$1==65536 && $3==0' | grep -q . || fail "chunk 1 not reported as base"
nbdinfo --map "$uri" >/dev/null || fail "base:allocation map failed"
st=$(cowctl --run-dir "$d/run" --json status v1)
echo "$st" | jq -e '.cow_chunks > 0 and .chunk_size == 65536 and .size == 33554432' >/dev/null \
  || fail "status json wrong: $st"
cowctl --run-dir "$d/run" status v1
pass
