# SPDX-License-Identifier: GPL-2.0-or-later
# tests/tgtd.sh: a tgtd on loopback for tests (sourced after functions.sh).
#
#   tgt_start                 start tgtd on 127.0.0.1:$TGT_PORT in a private
#                             mount namespace (its own /run); registers cleanup
#   tgt_lun TID IQN LUN FILE  a target (created once) and a file-backed LUN
#   tgt_account USER PASS TID CHAP account bound to a target
#   tgt_url IQN LUN           print iscsi://127.0.0.1:PORT/IQN/LUN
#   tgt_restart               SIGKILL tgtd (it ignores SIGTERM) and start it
#                             again with the same targets, LUNs and accounts
#   tgt_kill                  SIGKILL it and leave it down
TGT_PORT=${TGT_PORT:-$((3300 + $$ % 600))}
TGT_CTL=$((TGT_PORT + 1000))
_tgt_pid=
_tgt_cmds=()

tgt_adm() { nsenter -t "$_tgt_pid" -m tgtadm -C "$TGT_CTL" --lld iscsi "$@"; }

_tgt_run() {
  unshare -m sh -c "mount -t tmpfs tmpfs /run && exec tgtd -f -C $TGT_CTL \
    --iscsi portal=127.0.0.1:$TGT_PORT" >/dev/null 2>&1 &
  _tgt_pid=$!
  wait_until 10 tgt_adm --op show --mode target || fail "tgtd did not start"
}

tgt_start() {
  requires tgtd tgtadm nsenter unshare
  cleanup_fn tgt_kill           # first: _tgt_run may fail after the start
  _tgt_run
}

tgt_kill() {
  [ -n "$_tgt_pid" ] || return 0
  kill -9 "$_tgt_pid" 2>/dev/null || true
  wait_until 10 sh -c "! kill -0 $_tgt_pid" || true
  _tgt_pid=
}

_tgt_do() { _tgt_cmds+=("$*"); tgt_adm "$@"; }

tgt_lun() {                  # tgt_lun TID IQN LUN FILE
  local tid=$1 iqn=$2 lun=$3 file=$4
  if ! tgt_adm --op show --mode target | grep -q "Target $tid: $iqn\$"; then
    _tgt_do --op new --mode target --tid "$tid" -T "$iqn"
    _tgt_do --op bind --mode target --tid "$tid" -I ALL
  fi
  _tgt_do --op new --mode logicalunit --tid "$tid" --lun "$lun" -b "$file"
}

tgt_account() {              # tgt_account USER PASS TID
  _tgt_do --op new --mode account --user "$1" --password "$2"
  _tgt_do --op bind --mode account --tid "$3" --user "$1"
}

tgt_url() { echo "iscsi://127.0.0.1:$TGT_PORT/$1/$2"; }

tgt_restart() {
  tgt_kill
  _tgt_run
  local c
  for c in "${_tgt_cmds[@]}"; do
    # shellcheck disable=SC2086
    tgt_adm $c
  done
}
