#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A volume deleted in the cluster while this node opens it for an attach
# (its devices open on a thread: issue 17's follow-up, attach-offload.sh).
# The storage host's tgtd is frozen (SIGSTOP) so that node 1's attach of
# v waits in its iSCSI login; node 2 deletes v meanwhile (nobody owns it:
# the delete is allowed); tgtd runs again before the login's deadline,
# so the open succeeds.  Node 1's attach must then fail with the exact
# sentence, v must be gone from node 1's list and store and from its run
# directory (no socket), and node 1 keeps serving: a new volume on the
# same LUNs (create --force: the device holds v's superblock) attaches
# there and takes writes.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl sqlite3

lab_init "cad$(printf %04x $((RANDOM)))"
lab_small_cluster
iqn=$LAB_IQN
printf '[cowd]\nreconnect-deadline-ms = 8000\n' > "$LAB_DIR/cowd.conf"
for n in 1 2; do lab_cowd $n --config "$LAB_DIR/cowd.conf" >/dev/null; done
base=$(lab_iscsi_url 0 "$iqn" 1) cow=$(lab_iscsi_url 0 "$iqn" 2)
lab_cowctl 1 create v --base "$base" --cow "$cow" >/dev/null || fail "create v"
wait_until 10 _lab_knows 2 v || fail "node 2 does not know v"
thaw() { kill -CONT "$_lab_tgt_pid" 2>/dev/null || true; }
cleanup_fn thaw
# cowctl on node 1, bounded (timeout runs a program, not lab_exec).
ctl1() { local t=$1; shift; timeout "$t" nsenter -t "${_lab_init_pid[1]}" -n -m -- cowctl --run-dir "$(lab_dir 1)/run" "$@"; }
state() { ctl1 5 --json status v | jq -r .state; }

echo "== node 1 attaches v while tgtd is frozen; node 2 deletes v meanwhile"
kill -STOP "$_lab_tgt_pid"
( rc=0; ctl1 30 attach v > "$LAB_DIR/attach.out" 2>&1 || rc=$?
  echo "$rc" > "$LAB_DIR/attach.rc" ) &
apid=$!
attaching() { [ "$(state)" = attaching ]; }
wait_until 5 attaching \
  || fail "v is not attaching on node 1: $(state)"
echo "  node 1: v is attaching"
lab_cowctl 2 delete v > "$LAB_DIR/delete.out" 2>&1 || fail "node 2 could not delete v: $(cat "$LAB_DIR/delete.out")"
echo "  node 2 deleted v"
thaw
wait "$apid" || true
want="cowctl: volume v was deleted in the cluster while it was being attached"
[ "$(cat "$LAB_DIR/attach.rc")" = 1 ] && [ "$(cat "$LAB_DIR/attach.out")" = "$want" ] \
  || fail "node 1's attach: exit $(cat "$LAB_DIR/attach.rc"): $(cat "$LAB_DIR/attach.out")"
echo "  $want"

gone() { ! _lab_knows "$1" v >/dev/null; }
for n in 1 2; do wait_until 10 gone $n || fail "node $n still lists v: $(lab_cowctl $n list)"; done
[ "$(sqlite3 -cmd '.timeout 2000' "$(lab_dir 1)/state/volumes.db" "SELECT count(*) FROM volumes WHERE name = 'v'")" = 0 ] \
  || fail "node 1's store still holds v"
[ ! -e "$(lab_dir 1)/run/v.sock" ] || fail "node 1 serves a socket for the deleted v"
echo "  v is gone from both nodes' lists, node 1's store and run directory"

echo "== node 1 still serves: a new volume on the same LUNs"
lab_cowctl 1 create w --base "$base" --cow "$cow" --force >/dev/null || fail "create w"
lab_cowctl 1 attach w --wait-owned 20 >/dev/null || fail "node 1 did not take w"
qio_ok "nbd+unix:///?socket=$(lab_dir 1)/run/w.sock" "w on node 1" \
  "write -P 0x6d 0 64k" "read -P 0x6d 0 64k"
pass
