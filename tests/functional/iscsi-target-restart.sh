#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# tgtd is killed and restarted in the middle of a verified fio run: cowd's
# iSCSI sessions reconnect, requests in flight are sent again, the run
# completes and verifies, and the volume is active again.  Then the target
# stays down past the reconnect deadline: requests fail with EIO, the
# daemon keeps serving its other volume, and after the target is back the
# data acknowledged before the outage is intact; a snapshot of the
# degraded volume is refused at once with code degraded.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/tgtd.sh"
requires_root
requires fio qemu-io cowd cowctl

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.lun" 64M random
new_image "$d/cow.lun" 70M zero
new_image "$d/lbase.img" 8M random
new_image "$d/lcow.img" 10M zero
tgt_start
iqn=iqn.2024-01.org.cowherd:restart
tgt_lun 1 "$iqn" 1 "$d/base.lun"
tgt_lun 1 "$iqn" 2 "$d/cow.lun"
cat > "$d/cowd.conf" <<CONF
[cowd]
reconnect-deadline-ms = 8000
CONF
start_cowd "$d/run" --config "$d/cowd.conf"
c() { cowctl --run-dir "$d/run" "$@"; }
c create v --base "$(tgt_url $iqn 1)" --cow "$(tgt_url $iqn 2)" --chunk-size 64K
c create local --base "$d/lbase.img" --cow "$d/lcow.img"
uri=$(c attach v); luri=$(c attach local)

fio --name=v --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=16 \
    --size=64M --io_size=48M --rate_iops=1500 --verify=crc32c --verify_state_save=0 --verify_fatal=1 \
    --do_verify=1 --output-format=terse > "$d/fio.out" 2>&1 &
fio_pid=$!
sleep 3
echo "== SIGKILL tgtd mid-run, restart it 1 s later"
tgt_kill; sleep 1; tgt_restart
wait $fio_pid || { cat "$d/fio.out"; grep -E "iscsi|vol|error" "$d/run.log" | tail -20; fail "fio failed or did not verify across the target restart"; }
c --json status v | jq -e '.state == "active"' >/dev/null || fail "volume not active after the restart"
qemu-io -f raw "$uri" -c "write -P 0x6b 0 64k" >/dev/null

echo "== target down past the deadline"
tgt_kill
start=$SECONDS
if qemu-io -f raw "$uri" -c "read 32M 4k" >"$d/q.out" 2>&1 && ! grep -qi "error" "$d/q.out"; then
  fail "read succeeded with the target down"
fi
echo "  request failed after $((SECONDS - start)) s: $(grep -i error "$d/q.out" | head -1)"
[ $((SECONDS - start)) -le 20 ] || fail "the deadline was not honoured"
c --json status v | jq -e '.state == "degraded"' >/dev/null || fail "volume does not report degraded"
rc=0; out=$(c --json snapshot v --cow "$d/layer.img") || rc=$?
[ $rc -eq 1 ] && [ "$(jq -r .error.code <<<"$out")" = degraded ] \
  && [ "$(jq -r .error.message <<<"$out")" = "volume v is degraded on this host (a device failed past its deadline); no snapshot until it is back" ] \
  || fail "snapshot of a degraded volume: exit $rc: $out"
[ ! -e "$d/layer.img" ] || fail "the refused snapshot touched $d/layer.img"
qio_ok "$luri" "other volume stopped" "write -P 0x21 0 4k" "read -P 0x21 0 4k"
tgt_restart
wait_until 15 qemu-io -f raw "$uri" -c "read -P 0x6b 0 64k" \
  || fail "volume did not recover after the target came back"
qio_ok "$uri" "acknowledged data lost" "read -P 0x6b 0 64k"
grep -E "iscsi: .*(session|degraded|re-established)" "$d/run.log" | head -5
pass
