#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# ocf:cowherd:cowvol against a real cowd (cluster mode, a one-node corosync
# ring) in a lab host:
#  - ocf-tester (resource-agents) passes: meta-data valid against
#    ra-api-1.dtd, validate-all, probes, start/stop twice, monitor;
#  - the meta-data is valid with xmllint --dtdvalid, the agent passes
#    ShellCheck finds nothing in the agents (when installed);
#  - the exact OCF codes, each with the state that causes it: monitor 0
#    while this node owns and serves the volume, 7 when it is detached, 7
#    when the volume is not defined here, 7 when cowd is not running;
#    validate-all 6 for an undefined volume and a missing parameter, 5 when
#    cowd is not running; stop 0 when cowd is not running; after stop the
#    volume is unowned.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
requires ocf-tester xmllint jq cowd cowctl
dtd=/usr/share/resource-agents/ra-api-1.dtd
[ -f $dtd ] || { echo "SKIP: $dtd (resource-agents)"; exit 77; }
agent=$top_srcdir/deploy/ocf/cowvol
export OCF_ROOT=/usr/lib/ocf

"$agent" meta-data | (cd "$(dirname $dtd)" && xmllint --noout --dtdvalid $dtd -) \
  || fail "cowvol's meta-data is not valid against $dtd"
if command -v shellcheck >/dev/null; then
  shellcheck "$agent" "$top_srcdir/deploy/pacemaker/cowherd-alert" || fail "shellcheck"
fi

lab_init "ot$(printf %04x $((RANDOM)))"
lab_host 1
lab_corosync 1
lab_wait_quorate 1 30 || fail "node 1 not quorate"
lab_cowd 1 >/dev/null
run=$(lab_dir 1)/run
ctl=$(lab_fast_cowctl)
new_image "$LAB_DIR/base.img" 16M random
new_image "$LAB_DIR/cow.img" 20M zero
lab_cowctl 1 create v --base "$LAB_DIR/base.img" --cow "$LAB_DIR/cow.img" >/dev/null

ra() {   # ra ACTION [VAR=VALUE...]: the agent in host 1; prints rc and stderr
  local action=$1; shift
  lab_exec 1 env OCF_ROOT=$OCF_ROOT OCF_RESOURCE_INSTANCE=vol \
    OCF_RESKEY_volume=v OCF_RESKEY_run_dir="$run" \
    OCF_RESKEY_cowctl="$ctl" OCF_RESKEY_CRM_meta_interval=10000 "$@" \
    "$agent" "$action"
}
expect_rc() {   # expect_rc RC WHY ACTION [VAR=VALUE...]
  local want=$1 why=$2 rc=0; shift 2
  out=$(ra "$@" 2>&1) || rc=$?
  [ $rc -eq "$want" ] || fail "$why: $1 returned $rc, expected $want: $out"
  local why; why=$(grep -o 'ocf-exit-reason:.*' <<<"$out" | head -1 || true)
  echo "   $1${2:+ ($2)}: $rc${why:+: $why}"
}
is() { lab_cowctl 1 --json status v | jq -e "$1" >/dev/null; }

echo "== ocf-tester"
lab_exec 1 env OCF_ROOT=$OCF_ROOT ocf-tester -n vol -o volume=v -o run_dir="$run" \
  -o cowctl="$ctl" "$agent" > "$LAB_DIR/ocf-tester.out" 2>&1 \
  || fail "ocf-tester failed: $(cat "$LAB_DIR/ocf-tester.out")"
grep -q "^$agent passed all tests" "$LAB_DIR/ocf-tester.out" \
  || fail "ocf-tester did not pass: $(cat "$LAB_DIR/ocf-tester.out")"
sed 's/^/   /' "$LAB_DIR/ocf-tester.out"
is '.state == "detached" and .cluster_state == "unowned"' \
  || fail "ocf-tester left v attached or owned: $(lab_cowctl 1 --json status v)"

echo "== exact codes"
expect_rc 7 "a detached volume" monitor
expect_rc 0 "start" start
is '.state == "active" and .owner == 1' || fail "start did not attach and own v"
expect_rc 0 "an owned, served volume" monitor
expect_rc 0 "start again" start
# The error codes of JSON-ERRORS.md (cowctl --json prints {"error":..},
# exits 3 when cowd is unreachable): the branches that need them.
nosuch=$(lab_cowctl 1 --json status w 2>/dev/null || true)
# (jq 1.6 -e succeeds on empty input: test for it first.)
if [ -n "$nosuch" ] && jq -e '.error.code == "no-such-volume"' <<<"$nosuch" >/dev/null 2>&1; then
  expect_rc 7 "a volume not defined here (probe)" monitor OCF_RESKEY_volume=w OCF_RESKEY_CRM_meta_interval=0
  expect_rc 6 "an undefined volume" validate-all OCF_RESKEY_volume=w
  [[ $out == *"ocf-exit-reason:volume w is not defined (cowctl create)"* ]] || fail "validate-all's reason: $out"
  # A live pid in the pid file but no cowd behind the run directory:
  # cowctl exits 3 (unreachable).
  mkdir -p "$LAB_DIR/nocowd"; echo $$ > "$LAB_DIR/nocowd/cowd.pid"
  expect_rc 7 "cowctl exit 3" monitor OCF_RESKEY_run_dir="$LAB_DIR/nocowd"
  expect_rc 5 "cowctl exit 3" validate-all OCF_RESKEY_run_dir="$LAB_DIR/nocowd"
  [[ $out == *"ocf-exit-reason:cowd is not reachable at $LAB_DIR/nocowd"* ]] || fail "validate-all's reason: $out"
  expect_rc 0 "cowctl exit 3" stop OCF_RESKEY_run_dir="$LAB_DIR/nocowd"
else
  echo "   NOTE: this cowctl prints no --json error codes (JSON-ERRORS.md): the no-such-volume and exit-3 checks are skipped"
fi
expect_rc 6 "no volume parameter" validate-all OCF_RESKEY_volume=
expect_rc 6 "migrate_to without a target" migrate_to
expect_rc 0 "stop" stop
is '.state == "detached" and .cluster_state == "unowned"' || fail "stop left v owned: $(lab_cowctl 1 --json status v)"
expect_rc 0 "stop again" stop
expect_rc 0 "start before cowd stops" start
lab_exec 1 sh -c "kill \$(cat '$run/cowd.pid')"
wait_until 20 sh -c "! test -e '$run/cowd.pid'" || fail "cowd did not stop"
expect_rc 7 "cowd not running" monitor
expect_rc 5 "cowd not running" validate-all
[[ $out == *"ocf-exit-reason:cowd is not running with run directory $run"* ]] || fail "validate-all's reason: $out"
expect_rc 0 "cowd not running" stop
pass
