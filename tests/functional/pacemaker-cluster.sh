#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# ocf:cowherd:cowvol on a real Pacemaker 2.1 cluster: three hosts, each in
# its own network, mount, UTS and PID namespace running corosync, cowd and
# pacemakerd; base and CoW on tgtd LUNs in a storage host.  A cowvol
# primitive (allow-migrate=true) and a consumer (ocf:cowherd-test:consumer,
# colocated with it and ordered after it) that verifies every record
# acknowledged so far, on any host, before it writes numbered records
# through the volume's NBD export.
#  - crm_resource --move to each other host in turn, 10 moves: migrate_to
#    and migrate_from run (Pacemaker's log), every acknowledged record is
#    there after each move; the time from --move to the consumer's first
#    acknowledged write on the new host is reported (p50/p99);
#  - power-off of the host running it: Pacemaker starts both on a survivor
#    after cowd's own fencing (reservations); the records are there; the
#    host, powered on again, rejoins and does not write (never owns, never
#    serves, no record from it);
#  - target-role=Stopped: the volume is detached and unowned on every host,
#    closed clean;
#  - throughout, each host's view read again 100 ms after its last answer
#    (one sampler per host): never two hosts serving the volume, never two
#    hosts that each think they own it, over runs of answers in time.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires qemu-io python3 tgtd jq cowd cowctl pacemakerd crm_resource crm_mon cibadmin crm
python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd"; exit 77; }
[ -f /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] || { echo "SKIP: resource-agents"; exit 77; }
moves=${MOVES:-3}   # MOVES=10 for the p50/p99 of the report

lab_init "pc$(printf %04x $((RANDOM)))"
[ -n "${KEEP_LOGS:-}" ] && cleanup_fn sh -c "rm -rf '$KEEP_LOGS'; mkdir -p '$KEEP_LOGS'; cp -r '$LAB_DIR'/h? '$LAB_DIR'/*.log '$LAB_DIR'/samples '$KEEP_LOGS'/ 2>/dev/null || true"
lab_pcmk_cluster
t=$SECONDS
lab_pacemaker 1 2 3
echo "== Pacemaker up on n1 n2 n3 in $((SECONDS - t)) s"

ctl=$(lab_fast_cowctl)   # the agent and the sampler name the run dir
log=$LAB_DIR/records.log
failf=$LAB_DIR/consumer.fail
lab_exec 1 crm configure <<CRM || fail "crm configure failed"
rsc_defaults resource-stickiness=100
primitive vol ocf:cowherd:cowvol \
  params volume=v cowctl=$ctl handoff_timeout=60 \
  op monitor interval=2s timeout=20s op start timeout=90s op stop timeout=60s \
  op migrate_to timeout=60s op migrate_from timeout=90s \
  meta allow-migrate=true
primitive app ocf:cowherd-test:consumer \
  params uri="nbd+unix:///?socket=/run/cowherd/v.sock" log=$log fail=$failf \
    program=$top_srcdir/tests/pacemaker/consumer.py \
  op monitor interval=2s timeout=10s op start timeout=60s op stop timeout=20s
colocation app-with-vol inf: app vol
order vol-then-app Mandatory: vol app
commit
CRM

where() {   # the node a resource is started on
  lab_exec "${1:-1}" crm_resource --locate --resource "${2:-app}" 2>/dev/null |
    sed -n 's/.* is running on: \(n[0-9]\).*/\1/p' | head -1
}
records_on() { grep -c " $1 " "$log" 2>/dev/null || true; }
wait_until 60 sh -c "grep -q ' n[0-9] ' '$log'" || fail "the consumer did not start: $(lab_exec 1 crm_mon -1)"
cur=$(where)
echo "   vol and app started on $cur; records: $(wc -l < "$log")"

# The sampler: one loop per host, every 100 ms, each reply a line
# "TIME NODE STATE OWNER" (TIME when the answer came).  The hosts are not
# read at one instant, so a move between two reads is no overlap: the check
# below compares runs of replies in time.
sample() {
  local n=$1 out
  while [ ! -e "$LAB_DIR/sampler.stop" ]; do
    out=$(timeout 2 nsenter -t "${_lab_init_pid[$n]}" -n -m -u -p -- "$ctl" \
      --run-dir /run/cowherd --timeout 1 --json status v 2>/dev/null) || out='{}'
    echo "$(date +%s%N) $n $(jq -r '"\(.state // "-") \(.owner // "-")"' <<<"$out" 2>/dev/null)" \
      >> "$LAB_DIR/samples"
    sleep 0.1
  done
}
samplers=()
for n in 1 2 3; do
  sample $n 2>/dev/null & samplers+=($!)
  cleanup_fn kill_pid "${samplers[-1]}"
done

echo "== $moves moves with crm_resource --move"
declare -a ms
nodes=(n1 n2 n3)
for ((i = 0; i < moves; i++)); do
  src=$(where)
  dst=${nodes[$(( ${src#n} % 3 ))]}   # the next host: each in turn
  t0=$(date +%s%N)
  lab_exec 1 crm_resource --move --resource vol --node "$dst" >/dev/null 2>&1 \
    || fail "crm_resource --move vol to $dst failed"
  wait_until 60 sh -c "awk -v n=$dst -v t=$t0 '\$2 == n && \$3 > t { found = 1 } END { exit !found }' '$log'" \
    || fail "move $((i + 1)): no acknowledged write on $dst: $(lab_exec 1 crm_mon -1)"
  t1=$(awk -v n=$dst -v t=$t0 '$2 == n && $3 > t { print $3; exit }' "$log")
  ms+=($(( (t1 - t0) / 1000000 )))
  [ "$(where)" = "$dst" ] || fail "move $((i + 1)): app is not on $dst"
  [ -s "$failf" ] && fail "a record was lost: $(cat "$failf")"
  echo "   move $((i + 1)): $src -> $dst, first write after ${ms[-1]} ms"
done
lab_exec 1 crm_resource --clear --resource vol >/dev/null 2>&1
migs=0
for n in 1 2 3; do
  migs=$((migs + $(grep -c 'Result of migrate_from operation for vol on n[0-9]: ok' "$(lab_dir $n)/pcmklog/pacemaker.log" || true)))
done
[ $migs -ge "$moves" ] || fail "migrate_from ran $migs times for $moves moves"
grep -h 'migrate_from: volume v taken from' "$LAB_DIR"/h*/pcmklog/pacemaker.log | tail -1 | sed 's/^/   /'
echo "   migrate_from ok in Pacemaker's logs: $migs"
printf '%s\n' "${ms[@]}" | sort -n > "$LAB_DIR/ms"
p50=$(awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }' "$LAB_DIR/ms")
p99=$(awk '{ a[NR] = $1 } END { i = int(NR * 0.99 + 0.999); print a[i] }' "$LAB_DIR/ms")
echo "   --move to first acknowledged write on the new host: p50 $p50 ms, p99 $p99 ms over $moves moves"

echo "== power-off of the host running it"
victim=$(where)
other=1; [ "$victim" = n1 ] && other=2
before=$(wc -l < "$log")
t0=$(date +%s%N)
lab_poweroff "${victim#n}"
t_off=$(date +%s%N)
wait_until 90 sh -c "awk -v n=$victim -v t=$t0 '\$2 != n && \$3 > t { found = 1 } END { exit !found }' '$log'" \
  || fail "no survivor took over after $victim's power-off: $(lab_exec $other crm_mon -1)"
t1=$(awk -v n="$victim" -v t="$t0" '$2 != n && $3 > t { print $3; exit }' "$log")
survivor=$(where $other)
[ -s "$failf" ] && fail "a record was lost: $(cat "$failf")"
echo "   $victim powered off after $before records; $survivor writes after $(( (t1 - t0) / 1000000 )) ms (records verified first)"
lab_cowctl $other fence status | grep -q "fenced:     node ${victim#n} by node" \
  || fail "cowd did not fence ${victim#n}: $(lab_cowctl $other fence status)"

echo "== $victim powered on again"
lab_poweron "${victim#n}"
lab_corosync_restart "${victim#n}"
lab_wait_quorate "${victim#n}" 30 || fail "$victim did not rejoin"
lab_pcmk_cowd "${victim#n}" >/dev/null
lab_pcmk_start "${victim#n}"
wait_until 60 sh -c "nsenter -t ${_lab_init_pid[$other]} -n -m -u -p -- crm_mon -1 | grep -q 'Online: \[ n1 n2 n3 \]'" \
  || fail "$victim did not come back online: $(lab_exec $other crm_mon -1)"
sleep 3
[ "$(where $other)" = "$survivor" ] || fail "app moved away from $survivor"
lab_cowctl "${victim#n}" --json status v | jq -e --argjson s "${survivor#n}" \
  '.owner == $s and .state != "active"' >/dev/null \
  || fail "returning $victim: $(lab_cowctl "${victim#n}" --json status v)"
late=$(awk -v n="$victim" -v t="$t_off" '$2 == n && $3 > t' "$log" | wc -l)
[ "$late" -eq 0 ] || fail "$victim wrote $late records after its power-off"
echo "   $victim: $(lab_cowctl "${victim#n}" --json status v | jq -c '{state, owner}'), no record from it"

echo "== target-role=Stopped"
lab_exec 1 crm_resource --resource vol --meta --set-parameter target-role --parameter-value Stopped >/dev/null 2>&1
wait_until 60 sh -c "nsenter -t ${_lab_init_pid[1]} -n -m -u -p -- crm_resource --locate --resource vol 2>&1 | grep -q 'vol is NOT running'" \
  || fail "vol did not stop: $(lab_exec 1 crm_mon -1)"
# (failed: detached, its re-attach at cowd's start refused, on the host that
# came back.)
for n in 1 2 3; do
  lab_cowctl $n --json status v | jq -e '(.state == "detached" or .state == "failed") and .cluster_state == "unowned" and .owner == 0' >/dev/null \
    || fail "after stop, node $n: $(lab_cowctl $n --json status v)"
done
grep -q "volume: v: closed clean at generation" "$(lab_dir "${survivor#n}")/log/cowd.log" \
  || fail "$survivor did not close v clean"
for n in 1 2 3; do
  lab_exec $n test -S /run/cowherd/v.sock && fail "v is still served on n$n after stop"
done
echo "   detached and unowned on n1 n2 n3; closed clean on $survivor"

touch "$LAB_DIR/sampler.stop"; wait "${samplers[@]}" || true
# A host serves v from the first to the last of a run of its replies that
# say active (owns it: active or held with itself as owner); two hosts'
# runs that overlap in time are two hosts serving (owning) v at once.
bad=$(sort -n "$LAB_DIR/samples" | awk '
  function close_run(key,   p) {
    if (!(key in s0)) return
    split(key, p, ":"); n++; rk[n] = p[1]; rh[n] = p[2]
    r0[n] = s0[key]; r1[n] = last[key]; delete s0[key] }
  { t = $1 + 0; h = $2
    for (k = 1; k <= 2; k++) {
      on = k == 1 ? $3 == "active" : (($3 == "active" || $3 == "held") && $4 == h)
      key = k ":" h
      if (on) { if (!(key in s0)) s0[key] = t; last[key] = t } else close_run(key) } }
  END {
    for (h = 1; h <= 3; h++) for (k = 1; k <= 2; k++) close_run(k ":" h)
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
      if (rk[i] == rk[j] && rh[i] != rh[j] && r0[i] <= r1[j] && r0[j] <= r1[i])
        printf "%s: n%s %.0f..%.0f and n%s %.0f..%.0f\n", rk[i] == 1 ? "serving" : "owning",
          rh[i], r0[i], r1[i], rh[j], r0[j], r1[j] }')
[ -z "$bad" ] || fail "two hosts served or owned v at once: $bad"
# The sampler saw something: a sampler that cannot reach cowd sees "-"
# everywhere and would prove nothing.
total=$(wc -l < "$LAB_DIR/samples")
serving=$(awk '$3 == "active"' "$LAB_DIR/samples" | wc -l)
[ $((serving * 6)) -gt "$total" ] || fail "only $serving of $total replies saw v served"
echo "   $total replies of the three hosts ($serving saying v is served here): never two serving or owning"

# Every acknowledged record, read back through a fresh attach.
lab_cowctl 2 attach v >/dev/null
lab_exec 2 python3 "$top_srcdir/tests/pacemaker/consumer.py" verify "$log" \
  "nbd+unix:///?socket=/run/cowherd/v.sock" || fail "an acknowledged record was lost"
lab_cowctl 2 detach v
pass
