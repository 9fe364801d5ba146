# SPDX-License-Identifier: GPL-2.0-or-later
# tests/lab/lab.sh: hosts in network namespaces for cluster tests.
# Sourced after tests/functions.sh.  Interface:
#
#   lab_init ID [OCTET]   a lab named ID (prefix of every namespace, veth and
#                         the directory /tmp/cowherd-lab-ID); subnet
#                         10.213.OCTET.0/24; teardown is registered
#   lab_host N            host N (0 = storage, 1.. = nodes): namespace ID-hN,
#                         a veth to the bridge in ID-sw, address
#                         10.213.OCTET.(10+N), and a private mount namespace
#                         (tmpfs /run and /dev/shm, its own /var/lib/corosync)
#                         held by a "host init" process
#   lab_exec N CMD...     run CMD inside host N (network + mounts)
#   lab_bg N LOG CMD...   the same in the background; prints the pid
#   lab_pinned N CMD...   run CMD here (not inside host N) on host N's CPUs
#   LAB_CPUS="C0 C1 ..."  CPU list CN (taskset -c) for host N: whatever
#                         lab_exec and lab_bg start there (corosync, cowd,
#                         cowctl, tgtd) runs on those CPUs only, as if each
#                         host were a machine of its own; unset or "-"
#                         for a host: any CPU (benchmarks only)
#   lab_ip N              host N's address
#   lab_dir N             host N's directory (state, logs, sockets)
#   lab_link_down N / lab_link_up N   cut / restore host N's link
#   lab_storage N         tgtd in host N on port 3260
#   lab_lun N TID IQN LUN FILE        a target (once) and a file-backed LUN
#   lab_iscsi_url N IQN LUN
#   lab_corosync N...     corosync (knet, token 1000) on the listed hosts;
#                         lab_corosync_pid N gives its pid; each runs
#                         SCHED_RR 99 (corosync's default) unless
#                         LAB_COROSYNC_RR=no (system.sched_rr: no):
#                         benchmarks use it to show what three realtime
#                         corosyncs on this machine's CPUs cost the rest
#   lab_corosync_policy N   host N's corosync's scheduling, as chrt(1)
#                         reads it ("SCHED_RR 99", "SCHED_OTHER 0")
#   lab_corosync_restart N  corosync again on host N (same configuration)
#   lab_wait_quorate N SECS, lab_wait_cowd_quorate N SECS,
#   lab_wait_members N COUNT SECS
#   lab_cowd N [ARGS]     cowd --cluster ID in host N, run dir lab_dir N/run
#   lab_cowctl N ARGS     cowctl against host N's cowd
#   lab_kill N PID        SIGKILL a process of host N (a crash)
#   lab_teardown          stop everything by pid, delete namespaces and the
#                         directory; safe twice and after a partial setup;
#                         after a failure it first prints the last
#                         LAB_DUMP_LINES (80) lines of each host's cowd log
#   lab_pcmk_host N       host N for Pacemaker: as lab_host, but the host
#                         is also in its own PID and UTS namespace
#                         (hostname nN; SIGKILL of its init powers it off),
#                         with private /var/lib/pacemaker, /var/log/pacemaker
#                         and /run/resource-agents, and the OCF providers
#                         heartbeat, pacemaker, cowherd (deploy/ocf) and
#                         cowherd-test (tests/pacemaker) under
#                         /usr/lib/ocf/resource.d
#   lab_pacemaker N...    seed each host's CIB (stonith-enabled=false,
#                         dc-deadtime=2s, no-quorum-policy=stop) and start
#                         pacemakerd -f (after lab_corosync); waits for a DC
#   lab_pcmk_cowd N [ARGS]  cowd --cluster ID in Pacemaker host N with the
#                         default run directory, the host's own /run/cowherd
#                         (lab_cowctl follows)
#   lab_poweroff N        SIGKILL host N's PID namespace: every process dies
#   lab_poweron N         boot host N again (same network, same directories)
#   lab_small_storage     storage host 0 with target $LAB_IQN, LUN 1 a
#                         32 MiB base of random data ($LAB_DIR/base.lun) and
#                         LUN 2 a 40 MiB CoW ($LAB_DIR/cow.lun)
#   lab_small_cluster     the common setup: lab_small_storage; hosts 1-3
#                         running corosync, quorate
#   lab_pcmk_cluster [ARGS]  the same with Pacemaker hosts 1-3 (lab_pcmk_host)
#                         running cowd (lab_pcmk_cowd N ARGS) and volume v
#                         defined on LUNs 1 and 2 and known to all three;
#                         Pacemaker itself is started by lab_pacemaker
#   lab_pcmk_start N      pacemakerd -f in Pacemaker host N (lab_pacemaker
#                         and a host powered on again)
LAB_IQN=iqn.2024-01.org.cowherd:lab
LAB_ID=
LAB_OCTET=
LAB_DIR=
declare -A _lab_init_pid _lab_corosync_pid _lab_nsflags _lab_unshare_pid _lab_run

lab_init() {
  LAB_ID=$1
  LAB_OCTET=${2:-$((100 + $$ % 100))}
  LAB_DIR=/tmp/cowherd-lab-$LAB_ID
  requires ip nsenter unshare corosync
  requires_root
  rm -rf "$LAB_DIR"; mkdir -p "$LAB_DIR"
  cleanup_fn lab_teardown
  ip netns add "$LAB_ID-sw"
  ip -n "$LAB_ID-sw" link add br0 type bridge
  ip -n "$LAB_ID-sw" link set br0 up
  ip -n "$LAB_ID-sw" link set lo up
}

lab_ip() { echo "10.213.$LAB_OCTET.$((10 + $1))"; }
lab_dir() { echo "$LAB_DIR/h$1"; }

lab_host() {
  local n=$1 ns=$LAB_ID-h$1 dir=$LAB_DIR/h$1
  _lab_net "$n"
  ip netns exec "$ns" unshare -m --propagation private sh -c "
    mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /dev/shm &&
    mount --bind '$dir/lib' /var/lib/corosync && exec sleep infinity" &
  _lab_init_pid[$n]=$!
  disown "$!"
  wait_until 5 sh -c "grep -q ' /var/lib/corosync ' /proc/${_lab_init_pid[$n]}/mounts" \
    || fail "host $n did not come up"
}

_lab_net() {
  local n=$1 ns=$LAB_ID-h$1 dir=$LAB_DIR/h$1
  mkdir -p "$dir/lib" "$dir/run" "$dir/log"
  ip netns add "$ns"
  ip link add "$LAB_ID-h$n" type veth peer name "eth0" netns "$ns"
  ip link set "$LAB_ID-h$n" netns "$LAB_ID-sw"
  ip -n "$LAB_ID-sw" link set "$LAB_ID-h$n" master br0 up
  ip -n "$ns" addr add "$(lab_ip "$n")/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
}

# _lab_pin N: sets _lab_pin_cmd to taskset for host N's CPUs, or nothing
_lab_pin() {
  local -a cpus
  read -r -a cpus <<<"${LAB_CPUS:-}"
  _lab_pin_cmd=()
  if [ -n "${cpus[$1]:-}" ] && [ "${cpus[$1]}" != - ]; then _lab_pin_cmd=(taskset -c "${cpus[$1]}"); fi
}

lab_pinned() { local _lab_pin_cmd; _lab_pin "$1"; shift; "${_lab_pin_cmd[@]}" "$@"; }

# shellcheck disable=SC2086
lab_exec() {
  local n=$1 _lab_pin_cmd; shift; _lab_pin "$n"
  nsenter -t "${_lab_init_pid[$n]}" ${_lab_nsflags[$n]:--n -m} -- "${_lab_pin_cmd[@]}" "$@"
}

lab_bg() {
  local n=$1 log=$2 _lab_pin_cmd; shift 2; _lab_pin "$n"
  nsenter -t "${_lab_init_pid[$n]}" ${_lab_nsflags[$n]:--n -m} -- "${_lab_pin_cmd[@]}" "$@" >>"$log" 2>&1 &
  local pid=$!
  disown "$pid"
  echo "$pid" >> "$LAB_DIR/pids"   # a file: callers run this in $(...)
  echo "$pid"
}

lab_kill() { kill -9 "$2" 2>/dev/null || true; wait_until 10 sh -c "! kill -0 $2" || true; }

lab_link_down() { ip -n "$LAB_ID-sw" link set "$LAB_ID-h$1" down; }
lab_link_up() { ip -n "$LAB_ID-sw" link set "$LAB_ID-h$1" up; }

lab_storage() {
  requires tgtd tgtadm
  _lab_tgt_host=$1
  _lab_tgt_pid=$(lab_bg "$1" "$(lab_dir "$1")/log/tgtd.log" tgtd -f -C 0 \
    --iscsi "portal=$(lab_ip "$1"):3260")
  wait_until 10 lab_exec "$1" tgtadm -C 0 --lld iscsi --op show --mode target \
    || fail "tgtd did not start in host $1"
}

lab_lun() {                  # lab_lun N TID IQN LUN FILE
  local n=$1 tid=$2 iqn=$3 lun=$4 file=$5
  local adm=(lab_exec "$n" tgtadm -C 0 --lld iscsi)
  if ! "${adm[@]}" --op show --mode target | grep -q "Target $tid: $iqn\$"; then
    "${adm[@]}" --op new --mode target --tid "$tid" -T "$iqn"
    "${adm[@]}" --op bind --mode target --tid "$tid" -I ALL
  fi
  "${adm[@]}" --op new --mode logicalunit --tid "$tid" --lun "$lun" -b "$file"
}

lab_iscsi_url() { echo "iscsi://$(lab_ip "$1"):3260/$2/$3"; }

lab_corosync() {
  local n nodes=""
  for n in "$@"; do
    nodes+="    node {
        ring0_addr: $(lab_ip "$n")
        nodeid: $n
        name: n$n
    }
"
  done
  local two="" rr=""
  [ $# -eq 2 ] && two="    two_node: 1"
  case ${LAB_COROSYNC_RR:-yes} in
    yes) ;;
    no) rr="system {
    sched_rr: no
}" ;;
    *) fail "LAB_COROSYNC_RR is yes or no, not '$LAB_COROSYNC_RR'" ;;
  esac
  for n in "$@"; do
    cat > "$(lab_dir "$n")/corosync.conf" <<CONF
totem {
    version: 2
    cluster_name: $LAB_ID
    transport: knet
    token: 1000
    crypto_cipher: none
    crypto_hash: none
}
nodelist {
$nodes}
quorum {
    provider: corosync_votequorum
$two
}
$rr
logging {
    to_logfile: yes
    logfile: $(lab_dir "$n")/log/corosync.log
    to_stderr: no
    to_syslog: no
}
CONF
    _lab_corosync_pid[$n]=$(lab_bg "$n" "$(lab_dir "$n")/log/corosync.out" \
      corosync -f -c "$(lab_dir "$n")/corosync.conf")
  done
}

lab_corosync_pid() { echo "${_lab_corosync_pid[$1]}"; }

lab_corosync_policy() {
  # corosync sets its scheduling after it starts: read it once quorate
  chrt -p "${_lab_corosync_pid[$1]}" | awk -F': ' '
    /policy/ { p = $2 } /priority/ { n = $2 } END { print p, n }'
}

lab_corosync_restart() {
  local n=$1
  _lab_corosync_pid[$n]=$(lab_bg "$n" "$(lab_dir "$n")/log/corosync.out" \
    corosync -f -c "$(lab_dir "$n")/corosync.conf")
}

lab_wait_quorate() {
  wait_until "${2:-20}" sh -c "nsenter -t ${_lab_init_pid[$1]} -n -m -- corosync-quorumtool -s | grep -q 'Quorate: *Yes'"
}

# lab_wait_cowd_quorate N SECS: node N's cowd sees quorum and holds its lease
# (corosync's quorum comes back first; cowd renews its lease on the next
# heartbeat after that, and refuses ownership until then).
lab_wait_cowd_quorate() {
  wait_until "${2:-20}" lab_nodes_is "$1" '.quorate == true'
}

lab_wait_members() {
  wait_until "${3:-20}" sh -c "[ \$(nsenter -t ${_lab_init_pid[$1]} -n -m -- corosync-quorumtool -l 2>/dev/null | grep -c ' n[0-9]') -eq $2 ]"
}

lab_cowd() {
  local n=$1; shift
  local dir; dir=$(lab_dir "$n")
  lab_bg "$n" "$dir/log/cowd.log" cowd -f --cluster "$LAB_ID" --run-dir "$dir/run" \
    --state-dir "$dir/state" "$@"
  wait_until 15 lab_cowctl "$n" nodes || fail "cowd did not start in host $n"
}

lab_cowctl() { local n=$1; shift; lab_exec "$n" cowctl --run-dir "${_lab_run[$n]:-$(lab_dir "$n")/run}" "$@"; }

# A failed test's output ends with the last lines of every host's cowd log
# (CI keeps nothing else of a lab): the test's exit status is
# _cleanup_status (functions.sh), not known when lab_teardown is called
# directly.
lab_dump_logs() {
  local f
  for f in "$LAB_DIR"/h*/log/cowd.log; do
    [ -s "$f" ] || continue
    echo "---- ${f#"$LAB_DIR"/}, its last ${LAB_DUMP_LINES:-80} lines"
    tail -n "${LAB_DUMP_LINES:-80}" "$f"
  done
}

lab_teardown() {
  set +e
  local p n
  local pids=""
  [ "${_cleanup_status:-0}" -ne 0 ] && [ -n "$LAB_DIR" ] && lab_dump_logs
  [ -f "$LAB_DIR/pids" ] && pids=$(cat "$LAB_DIR/pids")
  for n in "${!_lab_unshare_pid[@]}"; do lab_poweroff "$n"; done
  for p in $pids; do kill "$p" 2>/dev/null; done
  for p in $pids; do
    wait_until 5 sh -c "! kill -0 $p" 2>/dev/null || kill -9 "$p" 2>/dev/null
  done
  for n in "${!_lab_init_pid[@]}"; do kill -9 "${_lab_init_pid[$n]}" 2>/dev/null; done
  for n in $(ip netns list | awk '{print $1}' | grep "^$LAB_ID-"); do ip netns del "$n"; done
  [ -n "$LAB_DIR" ] && rm -rf "$LAB_DIR"
  _lab_init_pid=()
  _lab_unshare_pid=()
  return 0
}

lab_small_storage() {
  lab_host 0
  new_image "$LAB_DIR/base.lun" 32M random
  new_image "$LAB_DIR/cow.lun" 40M zero
  lab_storage 0
  lab_lun 0 1 "$LAB_IQN" 1 "$LAB_DIR/base.lun"
  lab_lun 0 1 "$LAB_IQN" 2 "$LAB_DIR/cow.lun"
}

_lab_small_ring() {
  local n
  lab_small_storage
  lab_corosync 1 2 3
  for n in 1 2 3; do lab_wait_quorate $n 30 || fail "node $n not quorate"; done
}

lab_small_cluster() {
  local n
  for n in 1 2 3; do lab_host $n; done
  _lab_small_ring
}

lab_pcmk_cluster() {
  local n
  for n in 1 2 3; do lab_pcmk_host $n; done
  _lab_small_ring
  for n in 1 2 3; do lab_pcmk_cowd $n "$@" >/dev/null; done
  lab_cowctl 1 create v --base "$(lab_iscsi_url 0 "$LAB_IQN" 1)" \
    --cow "$(lab_iscsi_url 0 "$LAB_IQN" 2)" >/dev/null
  for n in 2 3; do
    wait_until 10 _lab_knows "$n" v || fail "node $n does not know v: $(lab_cowctl "$n" list)"
  done
}

_lab_knows() { lab_cowctl "$1" --json list | jq -e --arg v "$2" 'map(.name) | index($v) != null'; }

# --- Pacemaker ---

lab_pcmk_host() {
  local n=$1
  requires pacemakerd crm_mon cibadmin
  id hacluster >/dev/null 2>&1 || fail "no hacluster user (package pacemaker)"
  _lab_net "$n"
  lab_poweron "$n"
}

# The init of a Pacemaker host's PID namespace reaps the orphans (an agent's
# daemon whose parent exited), as init does.
_lab_reaper='import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.2)'

lab_poweron() {
  local n=$1 ns=$LAB_ID-h$1 dir=$LAB_DIR/h$1 p
  mkdir -p "$dir/pcmk/cib" "$dir/pcmk/pengine" "$dir/pcmk/blackbox" \
    "$dir/pcmk/cores" "$dir/pcmklog" "$dir/ocf/heartbeat" "$dir/ocf/pacemaker" \
    "$dir/ocf/cowherd" "$dir/ocf/cowherd-test"
  chown -R hacluster:haclient "$dir/pcmk" "$dir/pcmklog"
  for p in cowherd/cowvol:deploy/ocf/cowvol \
           cowherd-test/consumer:tests/pacemaker/consumer; do
    install -m 755 "$top_srcdir/${p#*:}" "$dir/ocf/${p%%:*}"
  done
  ip netns exec "$ns" unshare -m -u -p --fork --kill-child --mount-proc \
    --propagation private sh -c "
    mount -t tmpfs tmpfs /run && mkdir -p /run/resource-agents &&
    mount -t tmpfs tmpfs /dev/shm &&
    mount --bind '$dir/lib' /var/lib/corosync &&
    mount --bind '$dir/pcmk' /var/lib/pacemaker &&
    mount --bind '$dir/pcmklog' /var/log/pacemaker &&
    mount --bind /usr/lib/ocf/resource.d/heartbeat '$dir/ocf/heartbeat' &&
    mount --bind /usr/lib/ocf/resource.d/pacemaker '$dir/ocf/pacemaker' &&
    mount --bind '$dir/ocf' /usr/lib/ocf/resource.d &&
    hostname n$n && exec python3 -c \"$_lab_reaper\"" &
  _lab_unshare_pid[$n]=$!
  disown "$!"    # no "Killed" job notice at power-off
  wait_until 5 sh -c "pgrep -P ${_lab_unshare_pid[$n]} >/dev/null" \
    || fail "host $n did not come up"
  _lab_init_pid[$n]=$(pgrep -P "${_lab_unshare_pid[$n]}")
  _lab_nsflags[$n]="-n -m -u -p"
  wait_until 5 sh -c "grep -q ' /usr/lib/ocf/resource.d ' /proc/${_lab_init_pid[$n]}/mounts" \
    || fail "host $n did not come up"
}

lab_poweroff() {
  local n=$1 p=${_lab_unshare_pid[$1]:-}
  [ -n "$p" ] || return 0
  kill -9 "$p" 2>/dev/null || true
  wait_until 10 sh -c "! kill -0 $p && ! kill -0 ${_lab_init_pid[$n]}" || true
  unset "_lab_unshare_pid[$n]"
}

lab_pacemaker() {
  local n
  for n in "$@"; do
    cat > "$(lab_dir "$n")/pcmk/cib/cib.xml" <<'CIB'
<cib validate-with="pacemaker-3.0" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="opt-stonith-enabled" name="stonith-enabled" value="false"/>
        <nvpair id="opt-dc-deadtime" name="dc-deadtime" value="2s"/>
        <nvpair id="opt-no-quorum-policy" name="no-quorum-policy" value="stop"/>
        <nvpair id="opt-recheck" name="cluster-recheck-interval" value="1min"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources/>
    <constraints/>
  </configuration>
  <status/>
</cib>
CIB
    chown hacluster:haclient "$(lab_dir "$n")/pcmk/cib/cib.xml"
    chmod 600 "$(lab_dir "$n")/pcmk/cib/cib.xml"
    lab_pcmk_start "$n"
  done
  for n in "$@"; do
    wait_until 60 sh -c "nsenter -t ${_lab_init_pid[$n]} ${_lab_nsflags[$n]} -- crm_mon -1 2>/dev/null | grep -q 'Current DC: n[0-9]'" \
      || fail "Pacemaker on host $n has no DC"
  done
}

lab_pcmk_start() {
  lab_bg "$1" "$(lab_dir "$1")/log/pacemakerd.out" env PCMK_logfacility=none \
    PCMK_logfile=/var/log/pacemaker/pacemaker.log pacemakerd -f >/dev/null
}

lab_pcmk_cowd() {
  local n=$1; shift
  local dir; dir=$(lab_dir "$n")
  _lab_run[$n]=/run/cowherd
  lab_bg "$n" "$dir/log/cowd.log" cowd -f --cluster "$LAB_ID" --run-dir /run/cowherd \
    --state-dir "$dir/state" "$@"
  wait_until 15 lab_cowctl "$n" nodes || fail "cowd did not start in host $n"
}

# lab_fast PROGRAM (cowctl or cowd): the built binary run directly, without
# libtool's wrapper script, which costs a shell and a relink check per call
# (about 100 ms before cowd's main), as an installed binary runs; the
# program on PATH when there is none.  For agents and samplers that call
# cowctl often, and for benchmarks that time cowd from its start.
lab_fast() {
  local bin=$top_builddir/node/$1/.libs/$1 f=$LAB_DIR/fast-$1 libs
  if [ ! -x "$bin" ]; then command -v "$1"; return; fi
  libs=$(find "$top_builddir" -path '*/.libs/*.so' -printf '%h\n' | sort -u | paste -sd:)
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$libs" "$bin" > "$f"
  chmod 755 "$f"
  echo "$f"
}
lab_fast_cowctl() { lab_fast cowctl; }

# PID runs and is no zombie (a process that exited is one until its parent
# reaps it, and kill -0 still finds it).
lab_alive() {
  local pid comm st
  read -r pid comm st _ < "/proc/$1/stat" 2>/dev/null && [ "$st" != Z ]
}
# CLOCK_BOOTTIME in ms from /proc/uptime (10 ms steps), without starting a
# process: a stop time must not include a python's start-up.
lab_uptime_ms() { local up _; read -r up _ < /proc/uptime; echo $((10#${up/./} * 10)); }

# A volume on a host: its NBD URI, its status, a jq test on the status;
# a jq test on the host's `cowctl nodes`; a line in the host's cowd log.
lab_sock() { echo "nbd+unix:///?socket=$(lab_dir "$1")/run/$2.sock"; }
lab_status() { lab_cowctl "$1" --json status "$2"; }
lab_vol_is() { lab_status "$1" "$2" | jq -e "$3" >/dev/null; }
lab_nodes_is() { lab_cowctl "$1" --json nodes | jq -e "$2" >/dev/null; }
lab_log_has() { grep -q "$2" "$(lab_dir "$1")/log/cowd.log"; }

# A two_node cluster (corosync two_node, which implies wait_for_all) of
# hosts 1 and 2 with cowd, and a storage host 0 with a base LUN 1 (16M)
# and a CoW LUN 2 (20M) under $LAB_IQN; cowd's pids in lab_cowd_pid[].
# Arguments go to cowd.
declare -A lab_cowd_pid
lab_two_node_cluster() {
  local n
  for n in 0 1 2; do lab_host $n; done
  new_image "$LAB_DIR/base.lun" 16M random
  new_image "$LAB_DIR/cow.lun" 20M zero
  lab_storage 0
  lab_lun 0 1 "$LAB_IQN" 1 "$LAB_DIR/base.lun"
  lab_lun 0 1 "$LAB_IQN" 2 "$LAB_DIR/cow.lun"
  lab_corosync 1 2
  grep -q "two_node: 1" "$(lab_dir 1)/corosync.conf" || fail "the lab did not make a two_node cluster"
  for n in 1 2; do lab_wait_quorate $n 30 || fail "node $n not quorate"; done
  for n in 1 2; do lab_cowd_pid[$n]=$(lab_cowd $n "$@"); done
}
