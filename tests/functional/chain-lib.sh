# SPDX-License-Identifier: GPL-2.0-or-later
# tests/functional/chain-lib.sh: helpers of the layer-chain tests (sourced
# after functions.sh, with $d the test's directory and $uri volume v's NBD
# URI).  $d/expect.img is the image the volume should read as.
#   c ARGS...              cowctl on the test's cowd
#   w PATTERN OFF LEN      write to the volume and to expect.img
#   same IMAGE WHY         the whole volume reads as IMAGE (nbdcopy + cmp)
#   layers                 the chain as [[snapshot, chunks], ...]
c() { cowctl --run-dir "$d/run" "$@"; }
w() {
  qio_ok "$uri" "writing $3 bytes of $1 at $2" "write -P $1 $2 $3"
  qemu-io -f raw -c "write -P $1 $2 $3" "$d/expect.img" >/dev/null
}
same() {
  rm -f "$d/out.img"
  nbdcopy "$uri" "$d/out.img" || fail "nbdcopy failed ($2)"
  cmp "$d/out.img" "$1" || fail "the volume does not read as expected: $2"
}
layers() { c --json snapshots v | jq -c '[.layers[] | [.snapshot, .chunks]]'; }
