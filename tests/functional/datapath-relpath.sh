#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Relative paths, and a volume that cannot re-attach at start (issue 10,
# item 3).  cowd runs in another directory than cowctl (here /, as once it
# is a daemon): `cowctl create rel --base base.img --cow cow.img` failed
# with "No such file" for files right there, or stored the paths as typed.
# Now cowctl makes --base and --cow absolute, the definition holds absolute
# paths, and the volume comes back after a restart.  A definition with a
# relative path (volumes.conf from before) is refused at start with a
# sentence, shown on stderr in the foreground, in the log and in `cowctl
# status` (text and --json).
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io cowd cowctl jq python3 sqlite3

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 8M random
truncate -s 10M "$d/cow.img" "$d/cow2.img" "$d/cow3.img"
c() { cowctl --run-dir "$d/run" "$@"; }
cd /                          # cowd's working directory is not cowctl's
start_cowd "$d/run"
cd "$d"

echo "== relative --base and --cow, both spellings"
c create rel --base base.img --cow cow.img
c create rel2 --base=./base.img --cow=cow2.img
for v in rel rel2; do
  [ "$(c --json status $v | jq -r .base)" = "$d/base.img" ] || fail "$v: base not absolute: $(c --json status $v)"
done
[ "$(c --json status rel | jq -r .cow)" = "$d/cow.img" ] || fail "rel: cow not absolute"
[ "$(c --json status rel2 | jq -r .cow)" = "$d/cow2.img" ] || fail "rel2: cow not absolute"
[ "$(defs_sql "$d/run/state" "SELECT cow FROM volumes WHERE name = 'rel'")" = "$d/cow.img" ] \
  || fail "the store holds a relative path"
c attach rel >/dev/null
qio_ok "nbd+unix:///?socket=$d/run/rel.sock" "write rel" "write -P 0x33 0 1M"

echo "== a restart re-attaches it"
stop_cowd "$d/run"
cd /; start_cowd "$d/run"; cd "$d"
[ "$(c --json status rel | jq -r .state)" = active ] || fail "rel not re-attached: $(c --json status rel)"
qio_ok "nbd+unix:///?socket=$d/run/rel.sock" "rel's data after the restart" "read -P 0x33 0 1M"

echo "== a relative path in a definition (an older cowd's): refused at start, and said why"
c create old --base "$d/base.img" --cow "$d/cow3.img"
c attach old >/dev/null
stop_cowd "$d/run"
defs_sql "$d/run/state" "UPDATE volumes SET cow = 'cow3.img' WHERE name = 'old'"
: > "$d/run.log"
cd /; start_cowd "$d/run"; cd "$d"
why="volume old: CoW path 'cow3.img' is relative; cowd needs an absolute path (cowctl makes the paths it is given absolute)"
st=$(c --json status old)
[ "$(jq -r .state <<<"$st")" = failed ] || fail "old: state after start: $st"
[ "$(jq -r .error <<<"$st")" = "$why" ] || fail "old: no cause in --json status: $st"
[ "$(c status old | grep '^error:')" = "error:       $why" ] || fail "old: no cause in status: $(c status old)"
[ "$(c list | awk '$1 == "old" { print $2 }')" = failed ] || fail "list does not show old as failed"
grep -q "cowd: old: not re-attached at start: $why" "$d/run.log" \
  || fail "cowd's stderr (foreground) does not say why: $(cat "$d/run.log")"
qio_ok "nbd+unix:///?socket=$d/run/rel.sock" "rel's data after the second restart" "read -P 0x33 0 1M"
pass
