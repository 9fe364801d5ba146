#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Fencing that Pacemaker and cowd agree on, with cowd's `fencing = manual`:
# three Pacemaker hosts, the cowherd-alert agent in the CIB's alerts
# (select fencing, recipient /run/cowherd, run as hacluster through sudo as
# the agent's header says), a cowvol primitive.  The host running it is
# powered off; Pacemaker starts cowvol on a survivor, whose start waits:
# cowd fences nobody by itself and the volume stays "fencing".  Then the
# fencing event: `stonith_admin --confirm` on a survivor, which Pacemaker's
# fencer reports to every node's alert agents as a successful fencing
# (CRM_alert_kind=fencing, CRM_alert_rc=0).  The alert agent confirms the
# node to cowd, the volume is released, the survivor takes it over and the
# data written on the dead host is there.  The test itself never runs
# `cowctl fence confirm`.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io tgtd jq cowd cowctl pacemakerd crm_resource crm stonith_admin sudo
[ -f /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] || { echo "SKIP: resource-agents"; exit 77; }
alert=$top_srcdir/deploy/pacemaker/cowherd-alert
su hacluster -s /bin/sh -c "test -x '$alert'" || { echo "SKIP: hacluster cannot run $alert"; exit 77; }

lab_init "pa$(printf %04x $((RANDOM)))"
[ -n "${KEEP_LOGS:-}" ] && cleanup_fn sh -c "rm -rf '$KEEP_LOGS'; mkdir -p '$KEEP_LOGS'; cp -r '$LAB_DIR'/h? '$KEEP_LOGS'/ 2>/dev/null || true"
ctl=$(lab_fast_cowctl)
printf '[cowd]\nfencing = manual\n' > "$LAB_DIR/cowd.conf"
mkdir -p "$LAB_DIR/sudoers.d"
echo "hacluster ALL=(root) NOPASSWD: $ctl --run-dir * --json fence confirm *" > "$LAB_DIR/sudoers.d/cowherd"
chmod 440 "$LAB_DIR/sudoers.d/cowherd"
lab_pcmk_cluster -c "$LAB_DIR/cowd.conf"
for n in 1 2 3; do lab_exec $n mount --bind "$LAB_DIR/sudoers.d" /etc/sudoers.d; done
lab_cowctl 1 fence status | grep -q 'manual' || fail "cowd is not in manual fencing: $(lab_cowctl 1 fence status)"
lab_pacemaker 1 2 3
lab_exec 1 crm configure <<CRM || fail "crm configure failed"
alert cowherd "$alert" attributes COWHERD_COWCTL="$ctl" select fencing to /run/cowherd
rsc_defaults resource-stickiness=100
primitive vol ocf:cowherd:cowvol params volume=v cowctl=$ctl handoff_timeout=80 \
  op monitor interval=2s timeout=20s op start timeout=90s op stop timeout=60s
commit
CRM
where() {
  lab_exec "$1" crm_resource --locate --resource vol 2>/dev/null |
    sed -n 's/.* is running on: \(n[0-9]\).*/\1/p' | head -1
}
wait_until 60 sh -c "[ -n \"\$(nsenter -t ${_lab_init_pid[1]} -n -m -u -p -- crm_resource --locate --resource vol 2>/dev/null | grep 'running on')\" ]" \
  || fail "vol did not start: $(lab_exec 1 crm_mon -1)"
victim=$(where 1); v=${victim#n}
other=1; [ $v = 1 ] && other=2
# crm_resource --locate names the node while its start is still pending:
# wait for the start to succeed and for cowd there to serve v.
serves() { lab_cowctl $1 --json status v | jq -e --argjson n $1 '.owner == $n and .state == "active"' >/dev/null; }
wait_until 60 sh -c "nsenter -t ${_lab_init_pid[1]} -n -m -u -p -- crm_mon -1 | grep -q 'vol.*Started $victim'" \
  || fail "Pacemaker's start on $victim did not succeed: $(lab_exec 1 crm_mon -1)"
wait_until 30 serves $v || fail "$victim does not serve v: $(lab_cowctl $v --json status v)"
echo "== vol runs on $victim; a write there, then $victim is powered off"
lab_exec $v qemu-io -f raw "nbd+unix:///?socket=/run/cowherd/v.sock" -c "write -P 0x5a 1M 256k" \
  | grep -q "^wrote 262144/262144 bytes" || fail "cannot write v on $victim"
lab_poweroff $v
wait_until 40 sh -c "nsenter -t ${_lab_init_pid[$other]} -n -m -u -p -- $ctl --run-dir /run/cowherd --json status v | jq -e '.cluster_state == \"fencing\"'" \
  || fail "v is not waiting for $victim's fencing: $(lab_cowctl $other --json status v)"
sleep 5
lab_cowctl $other --json status v | jq -e '.cluster_state == "fencing"' >/dev/null \
  || fail "with fencing = manual, v left fencing by itself: $(lab_cowctl $other --json status v)"
echo "   5 s later v still waits for $victim to be fenced (manual); Pacemaker's start waits in attach --incoming"

echo "== the fencing event: stonith_admin --confirm $victim"
lab_exec $other stonith_admin --confirm "$victim" >/dev/null 2>&1 || fail "stonith_admin --confirm failed"
wait_until 60 sh -c "nsenter -t ${_lab_init_pid[$other]} -n -m -u -p -- crm_resource --locate --resource vol 2>/dev/null | grep -q 'running on: n[0-9]'" \
  || fail "vol did not start on a survivor: $(lab_exec $other crm_mon -1)"
survivor=$(where $other); s=${survivor#n}
wait_until 60 serves $s || fail "$survivor does not serve v: $(lab_cowctl $s --json status v)"
wait_until 30 sh -c "nsenter -t ${_lab_init_pid[$s]} -n -m -u -p -- crm_mon -1 | grep -q 'vol.*Started $survivor'" \
  || fail "Pacemaker's start on $survivor did not succeed: $(lab_exec $s crm_mon -1)"
grep -q "operator confirmed node $v is down" "$(lab_dir $s)/log/cowd.log" "$(lab_dir $other)/log/cowd.log" \
  || fail "nobody confirmed node $v to cowd"
lab_cowctl $s fence status | grep -q "node $v by node [0-9]* (confirmed)" \
  || fail "the fence history has no confirmation: $(lab_cowctl $s fence status)"
echo "   the alert agent confirmed node $v: $(lab_cowctl $s fence status | grep "node $v by")"
lab_exec $s qemu-io -f raw "nbd+unix:///?socket=/run/cowherd/v.sock" -c "read -P 0x5a 1M 256k" \
  | grep -q "^read 262144/262144 bytes" || fail "$victim's write is not on v"
echo "   $survivor took v over; $victim's write is there"
pass
