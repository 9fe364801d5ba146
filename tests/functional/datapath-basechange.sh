#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A base changed after create is refused at attach (issue 10, item 2).
# The issue's case: 8 bytes written at 32 MiB of a 64 MiB base file, which
# the old identity (a digest of the first and last MiB) did not see, so the
# volume served the new bytes.  Now the size, inode, modification and
# change times recorded at create are checked at every open (one fstat, no
# cost per IO); the refusal names volume, base and what changed; a restart
# does not re-attach it and says why in status; attach
# --accept-base-change records the base as it is now.  A file put in the
# base's place (new inode) and a chmod (change time only) are refused too;
# a superblock of minor version 0 (no stamp) still opens and gets one.
# The CoW data reads back exactly throughout.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io cowd cowctl jq python3 sqlite3
sbedit="python3 ${abs_top_srcdir:-$(dirname "$0")/../..}/tests/sbedit.py"

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 64M random
truncate -s 70M "$d/cow.img"
start_cowd "$d/run"
c() { cowctl --run-dir "$d/run" "$@"; }
uri="nbd+unix:///?socket=$d/run/v.sock"
t='[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9} UTC'
# refused WHAT-REGEX: attach v fails, exit 1, with the whole sentence.
refused() {
  local out rc=0
  out=$(c attach v 2>&1) || rc=$?
  [ $rc -eq 1 ] || fail "attach v after a base change exited $rc: $out"
  [[ $out =~ ^"cowctl: volume v: base $d/base.img changed since the volume was created, or is another file ("$1"); refusing to serve it; cowctl attach v --accept-base-change records it as it is now"$ ]] \
    || fail "attach v: unexpected sentence: $out"
  echo "  $out"
  [ ! -e "$d/run/v.sock" ] || fail "v is served after a refused attach"
}
cow_intact() { qio_ok "$uri" "the CoW data of v is lost ($1)" "read -P 0x5a 0 64k"; }

c create v --base "$d/base.img" --cow "$d/cow.img"
c attach v >/dev/null
qio_ok "$uri" "write v" "write -P 0x5a 0 64k"
c detach v

echo "== 8 bytes written at 32 MiB of the base"
printf 'wwwwwwww' | dd of="$d/base.img" bs=1 seek=$((32 << 20)) conv=notrunc status=none
refused "modification time $t -> $t, change time $t -> $t"

echo "== a restart does not re-attach it, and says why"
c attach v --accept-base-change >/dev/null
c detach v
printf 'xxxxxxxx' | dd of="$d/base.img" bs=1 seek=$((32 << 20)) conv=notrunc status=none
c attach v >/dev/null 2>&1 && fail "attach after a second change succeeded"
defs_sql "$d/run/state" "UPDATE volumes SET attached = 1"
stop_cowd "$d/run"
start_cowd "$d/run"
st=$(c --json status v)
[ "$(jq -r .state <<<"$st")" = failed ] || fail "status after restart: $st"
[[ $(jq -r .error <<<"$st") =~ ^"volume v: base $d/base.img changed since the volume was created" ]] \
  || fail "status has no cause: $st"
c status v | grep -q "^error:       volume v: base $d/base.img changed since" || fail "status text has no cause"
grep -q "cowd: v: not re-attached at start: volume v: base $d/base.img changed since" "$d/run.log" \
  || fail "the log does not say why v was not re-attached"

echo "== --accept-base-change records the base as it is now"
c attach v --accept-base-change >/dev/null
[ "$(c --json status v | jq -r 'has("error")')" = false ] || fail "the cause stays after a good attach"
qio_ok "$uri" "the new base bytes" "read -P 0x78 $((32 << 20)) 8"
cow_intact "after accepting the change"
c detach v
c attach v >/dev/null       # recorded: no change any more
cow_intact "after re-attaching"
c detach v

echo "== another file in the base's place (new inode), and a chmod"
cp -p "$d/base.img" "$d/base.new" && mv "$d/base.new" "$d/base.img"
refused "inode [0-9]+ -> [0-9]+, change time $t -> $t"
c attach v --accept-base-change >/dev/null; c detach v
chmod 0600 "$d/base.img"
refused "change time $t -> $t"
c attach v --accept-base-change >/dev/null; c detach v

echo "== a superblock of minor version 0 (no stamp) opens, and gets one"
for s in 0 1; do $sbedit "$d/cow.img" $s minor 0 2>/dev/null || true; done
c attach v >/dev/null
grep -q "volume: v: recording the stamp of base $d/base.img (none was recorded)" "$d/run.log" \
  || fail "no stamp recorded for a minor 0 superblock"
cow_intact "minor 0"
c detach v
touch -m -d '2001-01-01 00:00:00' "$d/base.img"
refused "modification time $t -> 2001-01-01 00:00:00.000000000 UTC, change time $t -> $t"
c status v | grep -q "^state:       failed" || fail "a refused attach does not show as failed"
pass
