#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Layer chains (cowctl snapshot, snapshots, rollback, reset): a volume
# becomes base <- s1 <- s2 <- top.  Every step is checked against an
# expected image of the whole volume (nbdcopy + cmp) and with qemu-io
# patterns:
#  - reads of each chunk come from the nearest layer that has it; partial
#    writes fault from that layer (not from the base);
#  - the chain survives a restart of cowd (it is on disk);
#  - snapshots lists every layer with its name, chunks and time (text and
#    --json); rollback reads as the snapshot again and reports the freed
#    devices, which a later snapshot may reuse; reset empties the top;
#  - the refusals: an unknown snapshot, a name taken, a device of the
#    chain, another volume's CoW device, a device too small; and create
#    --force over a layer of the detached volume.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires nbdcopy qemu-io cowd cowctl jq

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
uri="nbd+unix:///?socket=$d/run/v.sock"
source "$top_srcdir/tests/functional/chain-lib.sh"
new_image "$d/base.img" 8M random
for i in 1 2 3 4; do truncate -s 9M "$d/cow$i.img"; done
truncate -s 4M "$d/small.img"
cp "$d/base.img" "$d/expect.img"
start_cowd "$d/run"
c create v --base "$d/base.img" --cow "$d/cow1.img" >/dev/null
c create w --base "$d/base.img" --cow "$d/cow4.img" >/dev/null
c attach v >/dev/null


w 0x11 0 64k               # chunk 0 whole
w 0x12 1052672 4096        # part of chunk 16 (a fault from the base)
cp "$d/expect.img" "$d/s1.img"
[ "$(c snapshot v --cow "$d/cow2.img" --name s1)" = \
  "v: snapshot s1 taken; writes go to $d/cow2.img" ] || fail "snapshot s1"
same "$d/s1.img" "right after snapshot s1"
w 0x21 65536 64k           # chunk 1
w 0x22 1056768 512         # chunk 16 again: faults from s1, not the base
w 0x23 100 200             # chunk 0: faults from s1
cp "$d/expect.img" "$d/s2.img"
c --json snapshot v --cow "$d/cow3.img" >"$d/snap.json"
[ "$(jq -r .snapshot "$d/snap.json")" = snap2 ] || fail "default name: $(cat "$d/snap.json")"
w 0x31 131072 64k
w 0x32 1060864 4096
same "$d/expect.img" "three layers"
qio_ok "$uri" "patterns through the chain" "read -P 0x23 100 200" \
  "read -P 0x11 300 65236" "read -P 0x21 65536 64k" "read -P 0x31 131072 64k" \
  "read -P 0x12 1052672 4096" "read -P 0x22 1056768 512" \
  "read -P 0x32 1060864 4096"

# The list: three layers, names, chunks per layer, times.
c --json snapshots v >"$d/list.json"
[ "$(jq -c '[.layers[] | [.index, .snapshot, .chunks, .top, .device]]' "$d/list.json")" = \
  "[[0,\"s1\",2,false,\"$d/cow1.img\"],[1,\"snap2\",3,false,\"$d/cow2.img\"],[2,null,2,true,\"$d/cow3.img\"]]" ] \
  || fail "snapshots --json: $(cat "$d/list.json")"
[ "$(jq '[.layers[0].taken, .layers[1].taken] | map(. > 1700000000) | all' "$d/list.json")" = true ] \
  || fail "snapshot times missing: $(cat "$d/list.json")"
c snapshots v | grep -E "^1 +snap2 +3 [0-9T:-]+Z $d/cow2.img\$" >/dev/null \
  || fail "snapshots table: $(c snapshots v)"
c snapshots v | grep -E "^top +- +2 - +$d/cow3.img\$" >/dev/null \
  || fail "snapshots table top: $(c snapshots v)"

# The chain is on disk: a restart finds it.
stop_cowd "$d/run"
start_cowd "$d/run"
same "$d/expect.img" "after a restart"
[ "$(c --json snapshots v | jq '.layers | length')" = 3 ] || fail "chain lost at restart"

# Refusals.
expect_exact "volume v has no snapshot called nope" rollback v nope
expect_exact "volume v: snapshot name 's1' is taken already" \
  snapshot v --cow "$d/cow3.img" --name s1
expect_exact "volume v: CoW device $d/cow4.img is the CoW device of volume w already; a CoW device belongs to one volume" \
  snapshot v --cow "$d/cow4.img" --name s3
expect_exact "volume v: $d/cow2.img is a device of the volume's chain already" \
  snapshot v --cow "$d/cow2.img" --name s3
expect_exact "volume v: $d/small.img is too small for a layer: it has 4194304 bytes and needs 8454144" \
  snapshot v --cow "$d/small.img" --name s3
same "$d/expect.img" "after the refusals"

# Rollback to s1: the volume reads as s1; cow3 is freed, cow2 is the top.
c --json rollback v s1 >"$d/rb.json"
[ "$(jq -c . "$d/rb.json")" = "{\"name\":\"v\",\"snapshot\":\"s1\",\"freed\":[\"$d/cow3.img\"]}" ] \
  || fail "rollback --json: $(cat "$d/rb.json")"
same "$d/s1.img" "after rollback to s1"
cp "$d/s1.img" "$d/expect.img"
w 0x41 0 4096
[ "$(c --json snapshots v | jq -c '[.layers[] | [.snapshot, .chunks]]')" = '[["s1",2],[null,1]]' ] \
  || fail "chain after rollback: $(c --json snapshots v)"
# The freed device serves as a new layer again.
c snapshot v --cow "$d/cow3.img" --name s2b >/dev/null
cp "$d/expect.img" "$d/s2b.img"
w 0x51 196608 64k
same "$d/expect.img" "on the reused device"
# Reset: the top is empty, the volume reads as s2b again.
[ "$(c reset v)" = "v: reset" ] || fail "reset"
same "$d/s2b.img" "after reset: reads as s2b"
[ "$(c --json snapshots v | jq -c '[.layers[] | [.snapshot, .chunks]]')" = '[["s1",2],["s2b",1],[null,0]]' ] \
  || fail "chain after reset: $(c --json snapshots v)"
# Rollback to s1 from there frees cow3 and empties cow2.
c rollback v s1 >"$d/rb.txt"
[ "$(cat "$d/rb.txt")" = "v: rolled back to s1
freed: $d/cow3.img" ] || fail "rollback text: $(cat "$d/rb.txt")"
same "$d/s1.img" "after the second rollback to s1"
qio_ok "$uri" "s1's patterns" "read -P 0x11 0 64k" "read -P 0x12 1052672 4096"
# Detached, the chain's devices are still v's: create --force refuses each
# (the definition names one; the superblock of each names v).
c detach v
for dev in cow1 cow2; do
  expect_exact "volume x: CoW device $d/$dev.img is the CoW device of volume v already; a CoW device belongs to one volume" \
    create x --base "$d/base.img" --cow "$d/$dev.img" --force
done
c attach v >/dev/null
same "$d/s1.img" "after the refused creates on its layers"

# Reset of a volume with no snapshot: it reads as its base again.
c attach w >/dev/null
qio_ok "nbd+unix:///?socket=$d/run/w.sock" "write w" "write -P 0x61 0 1M"
[ "$(c --json reset w)" = '{"name":"w","snapshot":null,"freed":[]}' ] || fail "reset w"
rm -f "$d/out.img"
nbdcopy "nbd+unix:///?socket=$d/run/w.sock" "$d/out.img"
cmp "$d/out.img" "$d/base.img" || fail "w does not read as its base after reset"
[ "$(c --json status w | jq .cow_chunks)" = 0 ] || fail "w's bits are not clear"

# Merge while a client writes and reads at random: m (4 KiB chunks, so
# the copy takes many steps) is base <- s1 <- s2 <- top; the top is merged
# into s2, then that into s1.  The client checks every read against the
# expected image, which it keeps; at the end the volume reads as it.
new_image "$d/mbase.img" 64M random
for i in 1 2 3; do truncate -s 66M "$d/m$i.img"; done
c create m --base "$d/mbase.img" --cow "$d/m1.img" --chunk-size 4096 >/dev/null
c attach m >/dev/null
uri="nbd+unix:///?socket=$d/run/m.sock"
cp "$d/mbase.img" "$d/expect.img"
w 0x71 0 24M
c snapshot m --cow "$d/m2.img" --name s1 >/dev/null
w 0x72 16M 24M
c snapshot m --cow "$d/m3.img" --name s2 >/dev/null
w 0x73 32M 24M
client() { python3 "$top_srcdir/tests/randclient.py" "$uri" "$d/expect.img" "$SEED" "${SECS}s"; }
mstate() { c --json status m | jq -r .merge.state; }
SEED=7 SECS=4 client &
cpid=$!
sleep 1
[ "$(c --json merge m | jq -r '.merge.state, .layers' | tr '\n' ' ')" = "running 3 " ] \
  || fail "merge --json did not say running"
wait "$cpid" || fail "the client saw wrong data during the first merge"
wait_until 30 sh -c "[ \"\$(cowctl --run-dir $d/run --json status m | jq -r .merge.state)\" = off ]" \
  || fail "the merge did not end: $(c status m)"
[ "$(c --json status m | jq -r .merge.freed)" = "$d/m3.img" ] || fail "merge: freed $(c --json status m)"
[ "$(c --json snapshots m | jq -c '[.layers[] | [.snapshot, .device]]')" = \
  "[[\"s1\",\"$d/m1.img\"],[null,\"$d/m2.img\"]]" ] || fail "chain after merge: $(c snapshots m)"
same "$d/expect.img" "m after the first merge"
SEED=8 SECS=3 client &
cpid=$!
sleep 0.5
c merge m >/dev/null
wait "$cpid" || fail "the client saw wrong data during the second merge"
wait_until 30 sh -c "[ \"\$(cowctl --run-dir $d/run --json status m | jq -r .merge.state)\" = off ]" \
  || fail "the second merge did not end: $(c status m)"
[ "$(c --json status m | jq .layers)" = 1 ] || fail "m still has layers: $(c snapshots m)"
same "$d/expect.img" "m after the second merge"
expect_exact "volume m: no merge: it has no snapshot layer below its top" merge m
stop_cowd "$d/run"
start_cowd "$d/run"
same "$d/expect.img" "m after a restart"
pass
