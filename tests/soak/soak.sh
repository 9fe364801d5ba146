#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# tests/soak/soak.sh: the soak of issue 16 (not in make check).  A lab of
# three node hosts (tests/lab/lab.sh: Pacemaker-style hosts, each in its
# own PID namespace so that lab_poweroff is a power cut; Pacemaker itself is
# not run) and a storage host (tgtd, one base LUN, one CoW LUN per volume),
# corosync knet, cowd with reservation fencing.  For SOAK_MINUTES:
#   - every volume has a client that follows it from host to host
#     (soakload.py, libnbd): 4 KiB self-describing blocks (volume, index,
#     generation, CRC-32) at SOAK_RATE writes/s with a ledger of every
#     acknowledged write, and every SOAK_FIO_EVERY s a fio segment
#     (ioengine=nbd, random writes, verify=crc32c, do_verify) on a 1 MiB
#     slice on the current host.  The ledger is the rigorous check (fio
#     cannot follow a volume across hosts; its segments are checked when
#     they run and re-read with --verify_only at the end).
#   - a handoff every SOAK_HANDOFF_S (2) s, volumes and destinations in
#     turn, in the Xen order: the client pauses (a suspended domain), the
#     destination runs attach --incoming, it serves, the source detaches,
#     the client resumes on the destination;
#   - every SOAK_POWEROFF_S (120) s the power-off of the owner of a volume
#     (hosts 2 and 3 in turn, given a volume first if they own none, so
#     that host 1's cowd lives the whole run and its RSS series is long):
#     the clients of its volumes turn to a survivor, which attaches them
#     --incoming and takes over once the others fenced the dead host; the
#     host is powered on, corosync and cowd start, and the volumes its
#     new cowd attached again (it had them) are detached there;
#   - every SOAK_TGT_S (300) s tgtd is SIGKILLed and started again with the
#     same LUNs after SOAK_TGT_DOWN_S (1) s: cowd must ride through;
#   - every SOAK_COROSYNC_S (180) s corosync is SIGKILLed on a random host
#     and started again at once; a cowd the others fenced meanwhile and
#     that is still fenced when looked at (after-fence = rejoin: it starts
#     over by itself once it has the group's table) is restarted and its
#     volumes moved.
# After every event but a handoff every volume must be served within 60 s
# (a volume that is not is moved by hand and counted as a failure).
# cowd's RSS and descriptors are sampled every SOAK_SAMPLE_S (10) s after
# SOAK_WARMUP_S (120) s of each cowd's life; a cowd started again (power-on,
# fenced) begins a new series.  A series spanning SOAK_SERIES_MIN_S (240)
# s is judged: the floor (minimum) of its last quarter against the floor
# of its first quarter must grow by less than 5%, RSS and descriptors alike
# (both swing with attaches and connections; a leak raises the floor);
# shorter series are printed, not judged.  The RSS judged is cowd's own
# memory, RssAnon + RssFile; its shared memory (RssShmem: libqb's IPC rings
# with corosync, 2 MiB each for requests, responses and events of CPG and
# quorum, and the blackbox) is fixed in size but its pages are touched
# one after the other as the rings go round, so it rises for as long as
# the first lap of each ring takes (tens of minutes at a soak's rate) and
# falls back at a reconnection: it must stay within the size of cowd's
# /dev/shm mappings, which is checked and printed (found in stop 23 with
# /proc/PID/smaps: the heap flat, qb-event-cpg-data and qb-request-cpg-data
# growing 64 kB a minute, and node 1's VmRSS dropping by 1.2 MB when its
# corosync restarted).  At the end every block of the ledgers
# is read back from the volume's last owner (last acknowledged generation
# or a later unacknowledged attempt, never older, never torn), every fio
# slice whose last segment completed is re-verified and one more fio
# segment runs per volume; every cowd and corosync is stopped and each
# host's /dev/shm must be empty; after the teardown no process the soak
# started may be left.  The report (also written to SOAK_REPORT when set,
# with the samples as "t node pid rss_kB fds shm sockets files anon other
# rss_anon_kB rss_file_kB rss_shmem_kB shm_mapped_kB"
# lines in SOAK_REPORT.samples)
# ends in PASS or FAIL; exit 0 on PASS.
#
# Smoke run: SOAK_MINUTES=3 SOAK_POWEROFF_S=50 SOAK_TGT_S=70 \
#   SOAK_COROSYNC_S=40 SOAK_WARMUP_S=20 SOAK_SERIES_MIN_S=60 tests/soak/soak.sh
# Parameters: SOAK_MINUTES (30), SOAK_VOLUMES (3), SOAK_RATE (100),
# SOAK_FIO_EVERY (15), SOAK_BASE_MB (32: half for the ledger's blocks, half
# for fio's slices).
set -euo pipefail
abs_top_srcdir=$(cd "$(dirname "$0")/../.." && pwd)
export abs_top_srcdir abs_top_builddir=${abs_top_builddir:-$abs_top_srcdir}
source "$abs_top_srcdir/tests/functions.sh"
source "$abs_top_srcdir/tests/lab/lab.sh"
requires fio jq python3 tgtd cowd cowctl
python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd"; exit 77; }

MINUTES=${SOAK_MINUTES:-30}
VOLS=${SOAK_VOLUMES:-3}
RATE=${SOAK_RATE:-100}
FIO_EVERY=${SOAK_FIO_EVERY:-15}
BASE_MB=${SOAK_BASE_MB:-32}
HANDOFF_S=${SOAK_HANDOFF_S:-2}
POWEROFF_S=${SOAK_POWEROFF_S:-120}
TGT_S=${SOAK_TGT_S:-300}
TGT_DOWN_S=${SOAK_TGT_DOWN_S:-1}
COROSYNC_S=${SOAK_COROSYNC_S:-180}
SAMPLE_S=${SOAK_SAMPLE_S:-10}
WARMUP_S=${SOAK_WARMUP_S:-120}
SERIES_MIN_S=${SOAK_SERIES_MIN_S:-240}
# shellcheck disable=SC2154  # top_srcdir, top_builddir: tests/functions.sh
load=$top_srcdir/tests/soak/soakload.py
blocks=$((BASE_MB * 256 / 2))
slices=$((BASE_MB / 2))

lab_init "sk$(printf %03x $((RANDOM % 4096)))"
D=$LAB_DIR
# cowd and cowctl run directly (no libtool wrapper: the pid nsenter's
# child gets is cowd's own, and a cowctl call costs no shell)
mkdir -p "$D/bin"
libs=$(find "$top_builddir" -path '*/.libs/*.so' -printf '%h\n' | sort -u | paste -sd:)
for p in cowd/cowd cowctl/cowctl; do
  [ -x "$top_builddir/node/${p%/*}/.libs/${p#*/}" ] || continue
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$libs" \
    "$top_builddir/node/${p%/*}/.libs/${p#*/}" > "$D/bin/${p#*/}"
  chmod 755 "$D/bin/${p#*/}"
done
export PATH="$D/bin:$PATH"

log() { echo "[$(date +%T) +$((SECONDS - T0))s] $*" | tee -a "$D/events.log"; }
ms() { date +%s%3N; }
T0=$SECONDS

# --- the lab ---------------------------------------------------------------
lab_host 0
for n in 1 2 3; do lab_pcmk_host $n; done
new_image "$D/base.lun" "${BASE_MB}M" random
for i in $(seq "$VOLS"); do new_image "$D/cow$i.lun" "$((BASE_MB + 8))M" zero; done
luns() {
  lab_lun 0 1 "$LAB_IQN" 1 "$D/base.lun"
  for i in $(seq "$VOLS"); do lab_lun 0 1 "$LAB_IQN" $((i + 1)) "$D/cow$i.lun"; done
}
lab_storage 0
luns
lab_corosync 1 2 3
for n in 1 2 3; do lab_wait_quorate $n 30 || fail "node $n not quorate"; done

declare -A cpid up hint wpid
# cowd's own pid: nsenter forks into the PID namespace
real_pid() { local c; c=$(pgrep -P "$1" | head -1); echo "${c:-$1}"; }
start_cowd() {
  local n=$1 p
  p=$(lab_cowd "$n")
  cpid[$n]=$(real_pid "$p")
  echo "$n ${cpid[$n]} $SECONDS" >> "$D/cowds"
}
for n in 1 2 3; do start_cowd $n; up[$n]=1; done
st() { lab_cowctl "$1" --json status "$2" 2>/dev/null; }
serves() { st "$1" "$2" | jq -e ".owner == $1 and .state == \"active\"" >/dev/null; }
synced() { lab_cowctl "$1" --json nodes | jq -e '.quorate and .synced and (.members | length == 3)' >/dev/null; }
knows() { lab_cowctl "$1" --json list | jq -e --arg v "$2" 'map(.name) | index($v) != null' >/dev/null; }
set_hint() { hint[$1]=$2; echo "$2" > "$D/hint.$1.tmp"; mv "$D/hint.$1.tmp" "$D/hint.$1"; }

for i in $(seq "$VOLS"); do
  lab_cowctl 1 create "v$i" --base "$(lab_iscsi_url 0 "$LAB_IQN" 1)" \
    --cow "$(lab_iscsi_url 0 "$LAB_IQN" $((i + 1)))" >/dev/null
done
for i in $(seq "$VOLS"); do
  n=$(( (i - 1) % 3 + 1 ))
  wait_until 15 knows $n "v$i" || fail "node $n does not know v$i"
  lab_cowctl $n attach "v$i" >/dev/null
  wait_until 15 serves $n "v$i" || fail "node $n does not serve v$i: $(st $n "v$i")"
  set_hint "v$i" $n
done

stop_workers() {
  local v
  for v in "${!wpid[@]}"; do kill -TERM "${wpid[$v]}" 2>/dev/null || true; done
  for v in "${!wpid[@]}"; do
    kill -CONT "${wpid[$v]}" 2>/dev/null || true
    wait_until 60 sh -c "! kill -0 ${wpid[$v]}" || kill -9 "${wpid[$v]}" 2>/dev/null || true
  done
}
cleanup_fn stop_workers
for i in $(seq "$VOLS"); do
  python3 "$load" run "v$i" "$D" "$blocks" "$RATE" "$FIO_EVERY" "$slices" \
    2>>"$D/load.v$i.err" & wpid[v$i]=$!
  echo "${wpid[v$i]}" >> "$D/allpids"
done
log "lab up: $VOLS volumes on hosts 1-3, workers started"

# --- events ----------------------------------------------------------------
declare -A done_n ok_n
for e in handoff poweroff tgtd corosync; do done_n[$e]=0; ok_n[$e]=0; done
: > "$D/handoff.ms"; : > "$D/takeover.ms"; : > "$D/samples"
failures=()
restarts=()
restarted=""
declare -i by_design=0
hv=0; hd=0
count() { done_n[$1]=$((done_n[$1] + 1)); [ "$2" = 0 ] && ok_n[$1]=$((ok_n[$1] + 1)); return 0; }
problem() { failures+=("$*"); log "PROBLEM: $*"; }

pause() {                    # pause VOL: the client stops (no write in flight)
  kill -USR1 "${wpid[$1]}" 2>/dev/null || { problem "the client of $1 is gone: $(tail -3 "$D/load.$1.err")"; return 1; }
  wait_until 90 test -e "$D/paused.$1"
}
resume() { kill -USR2 "${wpid[$1]}"; wait_until 10 sh -c "! test -e '$D/paused.$1'" || true; }

# handoff VOL DEST: the Xen order
handoff() {
  local v=$1 dst=$2 src=${hint[$1]} t0 t1 rc=0
  pause "$v" || { problem "handoff $v: the client did not pause"; return 1; }
  t0=$(ms)
  lab_cowctl "$dst" attach "$v" --incoming >/dev/null || rc=1
  if [ $rc = 0 ] && wait_until 20 serves "$dst" "$v"; then
    t1=$(ms); echo "$((t1 - t0))" >> "$D/handoff.ms"
    lab_cowctl "$src" detach "$v" >/dev/null || problem "detach $v on node $src failed"
    set_hint "$v" "$dst"
  else
    rc=1
    problem "handoff of $v from node $src to node $dst: not served in 20 s: $(st "$dst" "$v")"
  fi
  resume "$v"
  return $rc
}

ev_handoff() {
  local v n dst
  hv=$((hv % VOLS + 1)); v=v$hv
  # destinations in turn: the next live host after the owner
  for n in 1 2 3; do
    dst=$(( (${hint[$v]} + n + hd - 1) % 3 + 1 ))
    [ "$dst" != "${hint[$v]}" ] && [ "${up[$dst]}" = 1 ] && break
  done
  hd=$(( (hd + 1) % 2 ))
  local rc=0; handoff "$v" "$dst" || rc=1
  count handoff $rc
  [ $rc = 0 ] || reconcile "a failed handoff" || true
}

owned_by() { local v; for v in "${!hint[@]}"; do [ "${hint[$v]}" = "$1" ] && echo "$v"; done; }

# After an event: a cowd still fenced (it had not started over by itself)
# is started again, as an operator would, and counted; a volume its hinted host does
# not serve within 20 s is followed to the host that serves it, or asked
# for there (attach --incoming), and counted.  Returns 1 when anything had
# to be done.
fenced() { lab_cowctl "$1" --json fence status 2>/dev/null | jq -e '.fenced == true' >/dev/null; }
restart_fenced() {
  local n why=$1 r=0
  for n in 1 2 3; do
    [ "${up[$n]}" = 1 ] || continue
    if fenced $n || ! lab_cowctl $n nodes >/dev/null 2>&1; then
      restarted+=" $n"
      restarts+=("node $n after $why: $(grep -ho 'crit: fence: this node was fenced ([^)]*)' "$(lab_dir $n)/log/cowd.log" | tail -1)")
      log "node $n's cowd is fenced or not answering after $why: starting it again"
      restart_cowd $n; r=1
    fi
  done
  return $r
}
reconcile() {
  local why=$1 v n h o fixed=0
  restart_fenced "$why" || true
  for _ in 1 2 3; do
    local all=1
    for v in $(printf '%s\n' "${!hint[@]}" | sort); do
      h=${hint[$v]}
      wait_until 20 serves "$h" "$v" && continue
      all=0; fixed=1
      restart_fenced "$why" || continue
      o=$(st "$h" "$v" | jq -r .owner)
      if [ "$o" != "$h" ] && [ "${up[$o]:-0}" = 1 ] && serves "$o" "$v"; then
        problem "after $why, $v is served by node $o, not node $h: following it"
        set_hint "$v" "$o"; continue
      fi
      problem "after $why, node $h does not serve $v ($(st "$h" "$v" | jq -c '{owner,state,cluster_state,health}')): attach --incoming there"
      lab_cowctl "$h" attach "$v" --incoming >/dev/null || true
      wait_until 30 serves "$h" "$v" || true
    done
    [ $all = 1 ] && break
  done
  [ $fixed = 0 ] || log "after $why, the soak had to move volumes by hand"
  for v in "${!hint[@]}"; do
    serves "${hint[$v]}" "$v" || problem "after $why, $v is still not served by node ${hint[$v]}: $(st "${hint[$v]}" "$v" | jq -c '{owner,state,cluster_state,health}')"
  done
  return $fixed
}

restart_cowd() {
  local n=$1 v
  kill_pid "${cpid[$n]}" 30
  start_cowd "$n"
  wait_until 30 synced "$n" || problem "node $n's new cowd did not sync"
  for v in "${!hint[@]}"; do
    [ "${hint[$v]}" = "$n" ] || lab_cowctl "$n" detach "$v" >/dev/null 2>&1 || true
  done
}

victim_next=2
ev_poweroff() {
  local x=$victim_next v s t0 t1 rc=0 i=0 vols
  victim_next=$((5 - victim_next))
  vols=$(owned_by $x)
  if [ -z "$vols" ]; then      # give it a volume first
    v=v$(( (done_n[poweroff] % VOLS) + 1 ))
    handoff "$v" "$x" && count handoff 0 || count handoff 1
    vols=$(owned_by $x)
    [ -n "$vols" ] || { problem "power-off: node $x owns no volume"; count poweroff 1; return; }
  fi
  local -a surv=()
  for s in 1 2 3; do [ "$s" != "$x" ] && surv+=("$s"); done
  for v in $vols; do set_hint "$v" "${surv[$((i++ % 2))]}"; done
  log "power-off of node $x (owner of $(echo "$vols" | paste -sd' '))"
  t0=$(ms)
  lab_poweroff $x; up[$x]=0
  echo "$x - $SECONDS" >> "$D/cowds"
  for v in $vols; do lab_cowctl "${hint[$v]}" attach "$v" --incoming >/dev/null || rc=1; done
  for v in $vols; do
    if wait_until 60 serves "${hint[$v]}" "$v"; then
      t1=$(ms); echo "$((t1 - t0)) $v node${hint[$v]}" >> "$D/takeover.ms"
      log "  $v served by node ${hint[$v]} $((t1 - t0)) ms after the power-off"
    else
      rc=1; problem "after the power-off of node $x, node ${hint[$v]} does not serve $v: $(st "${hint[$v]}" "$v")"
    fi
  done
  lab_poweron $x
  lab_corosync_restart $x
  lab_wait_quorate $x 60 || { rc=1; problem "node $x's corosync did not rejoin"; }
  start_cowd $x; up[$x]=1
  wait_until 30 synced $x || { rc=1; problem "node $x's cowd did not sync after power-on"; }
  for v in $vols; do lab_cowctl $x detach "$v" >/dev/null || { rc=1; problem "detach $v on node $x failed"; }; done
  restarted=""
  reconcile "the power-off of node $x" || rc=1
  [ -z "$restarted" ] || { rc=1; problem "the power-off of node $x left fenced agents on nodes$restarted"; }
  count poweroff $rc
  log "node $x is back"
}

ev_tgtd() {
  local rc=0
  log "tgtd restart ($TGT_DOWN_S s down)"
  kill -9 "$_lab_tgt_pid" 2>/dev/null || true
  wait_until 10 sh -c "! kill -0 $_lab_tgt_pid" || true
  sleep "$TGT_DOWN_S"
  lab_storage 0
  luns
  restarted=""
  reconcile "a tgtd restart" || rc=1
  [ -z "$restarted" ] || { rc=1; problem "the tgtd restart fenced the agents of nodes$restarted (cowd did not ride through)"; }
  count tgtd $rc
}

ev_corosync() {
  local n=$((RANDOM % 3 + 1)) rc=0 owned
  [ "${up[$n]}" = 1 ] || n=1
  owned=$(owned_by $n | sort | paste -sd' ')
  log "corosync restart on node $n (owner of ${owned:-nothing})"
  lab_kill $n "$(real_pid "$(lab_corosync_pid $n)")"
  # corosync's own blackbox of the killed process (corosync's, not cowd's)
  lab_exec $n sh -c 'for f in /dev/shm/qb-corosync-*-blackbox-*; do
    p=${f#/dev/shm/qb-corosync-}; p=${p%%-*}
    [ -e "$f" ] && ! kill -0 "$p" 2>/dev/null && rm -f "$f"; done; true'
  lab_corosync_restart $n
  lab_wait_quorate $n 60 || { rc=1; problem "node $n's corosync did not come back"; }
  wait_until 60 synced $n || { rc=1; problem "node $n's cowd did not rejoin: $(lab_cowctl $n --json nodes)"; }
  restarted=""
  reconcile "a corosync restart on node $n" || rc=1
  # an owner whose corosync restarts leaves the membership: it is fenced
  # (by design) and its agent restarted; any other fenced agent is not
  if [ -n "$owned" ] && [[ "$restarted " == *" $n "* ]]; then
    by_design+=1; restarted=${restarted/ $n/}
  fi
  [ -z "$restarted" ] || { rc=1; problem "the corosync restart on node $n fenced the agents of nodes$restarted"; }
  count corosync $rc
}

# The kinds of a process's descriptors: "sockets files anon pipes", so a
# descriptor series that grows says what grew.
fd_kinds() {
  local f s=0 r=0 a=0 o=0 t
  for f in /proc/"$1"/fd/*; do
    t=$(readlink "$f" 2>/dev/null) || continue
    case $t in
      socket:*) s=$((s + 1)) ;;
      /*) r=$((r + 1)) ;;
      anon_inode:*) a=$((a + 1)) ;;
      *) o=$((o + 1)) ;;
    esac
  done
  echo "$s $r $a $o"
}

sample() {
  local n p rss fds shm mem anon file shmem mapped
  for n in 1 2 3; do
    [ "${up[$n]}" = 1 ] || continue
    p=${cpid[$n]}
    mem=$(awk '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2} /^RssShmem/ {s=$2}
               END {if (r != "") print r, a, f, s}' "/proc/$p/status" 2>/dev/null)
    [ -n "$mem" ] || continue
    read -r rss anon file shmem <<<"$mem"
    mapped=$(awk '/^[0-9a-f]+-/ {m = ($6 ~ /^\/dev\/shm\//)} /^Size:/ && m {t += $2} END {print t + 0}' \
      "/proc/$p/smaps" 2>/dev/null) || continue
    fds=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
    shm=$(lab_exec $n ls /dev/shm | wc -l)
    echo "$SECONDS $n $p $rss $fds $shm $(fd_kinds "$p") $anon $file $shmem $mapped" >> "$D/samples"
  done
}

end=$((SECONDS + MINUTES * 60))
next_h=$((SECONDS + HANDOFF_S)); next_p=$((SECONDS + POWEROFF_S))
next_t=$((SECONDS + TGT_S)); next_c=$((SECONDS + COROSYNC_S))
next_s=$SECONDS
off=999999999                # an interval of 0 turns the event off
[ "$POWEROFF_S" -gt 0 ] || { next_p=$off; POWEROFF_S=$off; }
[ "$TGT_S" -gt 0 ] || { next_t=$off; TGT_S=$off; }
[ "$COROSYNC_S" -gt 0 ] || { next_c=$off; COROSYNC_S=$off; }
while [ $SECONDS -lt $end ]; do
  if [ $SECONDS -ge $next_s ]; then sample; next_s=$((SECONDS + SAMPLE_S)); fi
  if [ $SECONDS -ge $next_p ]; then ev_poweroff || true; next_p=$((next_p + POWEROFF_S))
  elif [ $SECONDS -ge $next_t ]; then ev_tgtd || true; next_t=$((next_t + TGT_S))
  elif [ $SECONDS -ge $next_c ]; then ev_corosync || true; next_c=$((next_c + COROSYNC_S))
  elif [ $SECONDS -ge $next_h ]; then
    ev_handoff || true; next_h=$((next_h + HANDOFF_S))
    [ $next_h -gt $SECONDS ] || next_h=$((SECONDS + 1))
  else
    sleep 0.1
  fi
done
sample
log "events over; stopping the clients"

# --- verification ------------------------------------------------------------
stop_workers
reconcile "the end" || problem "the volumes were not all served at the end"
for v in $(printf '%s\n' "${!hint[@]}" | sort); do
  h=${hint[$v]}
  timeout 600 python3 "$load" verify "$v" "$D" "$D/base.lun" \
    "nbd+unix:///?socket=$(lab_dir "$h")/run/$v.sock" > "$D/verify.$v.json" \
    || problem "$v: verification found violations"
  off=$(( (blocks * 4096) + (slices - 1) * 1048576 ))
  if fio --name=final --ioengine=nbd --uri="nbd+unix:///?socket=$(lab_dir "$h")/run/$v.sock" \
      --rw=randwrite --bs=4k --iodepth=8 --offset=$off --size=1M --verify=crc32c \
      --verify_fatal=1 --verify_state_save=0 --do_verify=1 --output-format=terse \
      > "$D/fio-final.$v" 2>&1; then
    echo ok > "$D/fio-final.$v.rc"
  else
    echo failed > "$D/fio-final.$v.rc"; problem "$v: the final fio segment failed: $(tail -c 300 "$D/fio-final.$v")"
  fi
done
for n in 1 2 3; do lab_cowctl $n --json handoff-times > "$D/handoff-times.$n" 2>/dev/null || true; done

# Stop every cowd and corosync cleanly: each host's /dev/shm must be empty.
for n in 1 2 3; do kill_pid "${cpid[$n]}" 30; done
for n in 1 2 3; do kill_pid "$(real_pid "$(lab_corosync_pid $n)")" 30; done
for n in 1 2 3; do
  left=$(lab_exec $n ls -A /dev/shm | paste -sd' ')
  echo "$n ${left:-}" >> "$D/shm-left"
  [ -z "$left" ] || problem "node $n's /dev/shm after stopping cowd and corosync: $left"
done
# Processes: every pid the soak started, and anything still in a namespace
for n in 1 2 3; do echo "${cpid[$n]}" >> "$D/allpids"; done
cat "$D/pids" >> "$D/allpids" 2>/dev/null || true
awk '$2 != "-" {print $2}' "$D/cowds" >> "$D/allpids"
cp -r "$D" "$D.keep"              # the logs survive the teardown for the report
lab_teardown
alive() { local p; for p in $(sort -u "$D.keep/allpids"); do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
for i in $(seq 30); do alive || break; sleep 1; done   # init reaps the killed
left=""
for p in $(sort -u "$D.keep/allpids"); do
  kill -0 "$p" 2>/dev/null && left+=" $p($(cat /proc/$p/comm 2>/dev/null), state $(awk '{print $3}' /proc/$p/stat 2>/dev/null))"
done
# and any process whose command line names the lab (corosync -c, cowd
# --cluster, tgtd's nsenter, fio's socket URI, the clients)
for p in /proc/[0-9]*; do
  tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -qE "$LAB_DIR|--cluster $LAB_ID" || continue
  [ "${p#/proc/}" = $$ ] || [ "${p#/proc/}" = "$BASHPID" ] ||
    left+=" ${p#/proc/}($(tr '\0' ' ' < "$p/cmdline" | cut -c1-60))"
done
[ -z "$left" ] || problem "processes left after the teardown:$left"
[ -z "$(ip netns list | grep "^$LAB_ID-" || true)" ] || problem "namespaces left: $(ip netns list | grep "^$LAB_ID-")"
K=$D.keep
cleanup_fn rm -rf "$K"

# --- report -------------------------------------------------------------------
{
echo "cowherd soak: $MINUTES min, $VOLS volumes, 3 nodes + storage, lab $LAB_ID ($(date -u +%FT%TZ))"
echo "intervals: handoff ${HANDOFF_S}s, power-off ${POWEROFF_S}s, tgtd restart ${TGT_S}s, corosync restart ${COROSYNC_S}s; client $RATE writes/s per volume, fio segment every ${FIO_EVERY}s"
echo "run took $((SECONDS - T0)) s in all"
printf '%-22s %6s %6s\n' event 'done' ok
for e in handoff poweroff tgtd corosync; do printf '%-22s %6d %6d\n' "$e" "${done_n[$e]}" "${ok_n[$e]}"; done
echo "(an interval of 0 turns an event off: power-off ${SOAK_POWEROFF_S:-120}, tgtd ${SOAK_TGT_S:-300}, corosync ${SOAK_COROSYNC_S:-180})"
python3 - "$K" "$WARMUP_S" "$SERIES_MIN_S" "$VOLS" <<'PY'
import json, statistics, sys, os
k, warm, minspan, vols = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
ho = [int(l) for l in open(os.path.join(k, "handoff.ms")) if l.strip()]
if ho:
    print("handoff (attach --incoming -> destination serves, by cowctl polling): n %d, p50 %d ms, p99 %d ms, max %d ms"
          % (len(ho), statistics.median(ho), pct(ho, 99), max(ho)))
served = []
for n in (1, 2, 3):
    try:
        served += json.load(open(os.path.join(k, "handoff-times.%d" % n)))["served"]
    except Exception:
        pass
if served:
    print("handoff served on the new owner (cowd's handoff-times, cowds alive at the end): n %d, p50 %.1f ms, p99 %.1f ms"
          % (len(served), statistics.median(served), pct(served, 99)))
to = [l.split() for l in open(os.path.join(k, "takeover.ms")) if l.strip()]
if to:
    print("takeover after power-off (power cut -> survivor serves): " +
          ", ".join("%s %s ms" % (t[1], t[0]) for t in to))
    t = [int(x[0]) for x in to]
    print("  n %d, p50 %d ms, max %d ms" % (len(t), statistics.median(t), max(t)))
acked = verified = newer = viol = fseg = fok = ffail = fre = 0
for v in range(1, vols + 1):
    try:
        r = json.load(open(os.path.join(k, "verify.v%d.json" % v)))
    except Exception as e:
        print("v%d: no verification result (%s)" % (v, e)); viol += 1; continue
    acked += r["acked_writes"]; verified += r["blocks_verified"]; newer += r["blocks_newer_unacked"]
    viol += r["violations"]; fseg += r["fio_segments"]; fok += r["fio_ok"]; ffail += r["fio_failed"]
    fre += r["fio_slices_reverified"]
    print("v%d: %d writes acknowledged, %d failed (retried on the next owner), %d reconnects; "
          "%d blocks verified (%d hold a later unacknowledged attempt); fio %d segments, %d ok, %d cut by an event; "
          "%d slices re-verified; violations %d"
          % (v, r["acked_writes"], r["failed_writes"], r["reconnects"], r["blocks_verified"],
             r["blocks_newer_unacked"], r["fio_segments"], r["fio_ok"], r["fio_failed"],
             r["fio_slices_reverified"], r["violations"]))
    for d in r["details"]:
        print("    " + d)
print("total: %d writes acknowledged, %d blocks verified, fio %d segments (%d ok), %d slices re-verified, violations %d"
      % (acked, verified, fseg, fok, fre, viol))
# RSS / descriptors: one series per cowd process
series = {}
for l in open(os.path.join(k, "samples")):
    t, n, p, vm, fds, shm, so, fi, an, ot, ra, rf, rs, mapped = map(int, l.split())
    series.setdefault((n, p), []).append(
        (t, ra + rf, fds, shm, (so, fi, an, ot), rs, mapped, vm))
start = {}
for l in open(os.path.join(k, "cowds")):
    n, p, t = l.split()
    if p != "-":
        start[(int(n), int(p))] = int(t)
print("cowd RSS (kB: RssAnon + RssFile, its own memory) and descriptors, samples after %d s of warm-up; growth = floor of the last quarter over floor of the first; judged when the series spans >= %d s" % (warm, minspan))
print("shmem: RssShmem (libqb's IPC rings and blackbox, fixed in size, touched page by page) last and max, against the size of cowd's /dev/shm mappings; VmRSS last")
print("%-4s %-8s %6s %7s %7s %7s %7s %6s %5s %5s %5s %6s %5s %-17s %7s %s" % (
    "node", "pid", "span", "rss1st", "rsslast", "rssmax", "rss%", "fd1st", "fdlst", "fdmax", "fd%", "shm", "n",
    "shmem last/max/map", "vmrss", "verdict"))
bad = 0
judged = 0
for (n, p), s in sorted(series.items(), key=lambda x: (x[0][0], x[1][0][0])):
    s0 = start.get((n, p), s[0][0])
    s = [x for x in s if x[0] - s0 >= warm]
    if len(s) < 2:
        continue
    span = s[-1][0] - s[0][0]
    # the floor of the first and of the last quarter (at least 3 samples):
    # RSS and descriptors swing with attaches and connections; a leak
    # raises the floor
    w = max(3, len(s) // 4) if len(s) >= 6 else 1
    r1 = min(x[1] for x in s[:w]); r2 = min(x[1] for x in s[-w:])
    f1 = min(x[2] for x in s[:w]); f2 = min(x[2] for x in s[-w:])
    rg = 100.0 * (r2 - r1) / r1; fg = 100.0 * (f2 - f1) / f1
    shmem_ok = all(x[5] <= x[6] for x in s)
    verdict = "not judged (short)"
    if span >= minspan:
        judged += 1
        verdict = "flat" if rg < 5 and fg < 5 and shmem_ok else "GROWS"
        bad += verdict == "GROWS"
    if not shmem_ok:
        verdict += " (shared memory beyond its mappings)"
    shmem = "%d/%d/%d" % (s[-1][5], max(x[5] for x in s), max(x[6] for x in s))
    print("%-4d %-8d %5ds %7d %7d %7d %6.1f%% %6d %5d %5d %4.1f%% %2d-%-3d %5d %-17s %7d %s" % (
        n, p, span, s[0][1], s[-1][1], max(x[1] for x in s), rg, s[0][2], s[-1][2],
        max(x[2] for x in s), fg, min(x[3] for x in s), max(x[3] for x in s), len(s),
        shmem, s[-1][7], verdict))
    if fg >= 5 and span >= minspan:
        a = min(s[:w], key=lambda x: x[2])[4]; b = min(s[-w:], key=lambda x: x[2])[4]
        print("     descriptors at the two floors, sockets/files/anon/other: %d/%d/%d/%d -> %d/%d/%d/%d" % (a + b))
print("series judged: %d, growing: %d" % (judged, bad))
open(os.path.join(k, "verdict"), "w").write("%d %d %d\n" % (viol, bad, judged))
PY
echo "/dev/shm after cowd and corosync stopped: $(awk '{ if (NF > 1) print "node " $1 ": " substr($0, length($1) + 2); else print "node " $1 ": empty" }' "$K/shm-left" | paste -sd';')"
echo "processes left after the teardown: ${left:-none}"
echo "cowd restarts by the soak (fenced agents): ${#restarts[@]}, of which $by_design after a corosync restart on an owner (fenced by design)"
for f in "${restarts[@]}"; do echo "  - $f"; done
echo "problems during the run: ${#failures[@]}"
for f in "${failures[@]}"; do echo "  - $f"; done
read -r viol grow judged < "$K/verdict"
verdict=PASS
[ "$viol" = 0 ] || verdict=FAIL
[ "$grow" = 0 ] || verdict=FAIL
[ "$judged" -gt 0 ] || verdict=FAIL
[ ${#failures[@]} = 0 ] || verdict=FAIL
for e in handoff poweroff tgtd corosync; do [ "${done_n[$e]}" = "${ok_n[$e]}" ] || verdict=FAIL; done
echo "$verdict"
} 2>&1 | tee "$K/report"
[ -z "${SOAK_REPORT:-}" ] || cp "$K/report" "$SOAK_REPORT"
# the samples behind the RSS/descriptor table, for a series to be plotted
[ -z "${SOAK_REPORT:-}" ] || cp "$K/samples" "$SOAK_REPORT.samples"
if [ -n "${SOAK_KEEP:-}" ]; then cp -r "$K" "$SOAK_KEEP"; fi
[ "$(tail -1 "$K/report")" = PASS ]
