#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# block-cow, the Xen hotplug script, driven as libxl drives it (no Xen
# here: tests/xen/xenlib.sh), in the cluster lab: corosync on three hosts,
# cowd on hosts 1 and 2, tgtd LUNs shared by all, the test's device helper
# (qemu-storage-daemon FUSE + a buffered loop device) giving each "domain"
# a real block device on which it writes numbered records (O_DIRECT|O_DSYNC).
#   - refusals, each an exact hotplug-error sentence with hotplug-status
#     error, exit 1, nothing held: an unknown volume, no cowd on the host,
#     a second domain on the same host, a running domain on another host;
#   - create, write, destroy (unowned, nothing left), create on the other
#     host: every record reads back;
#   - 20 live migrations in xl's order (suspend, destination add, unpause,
#     source remove): the destination owns the volume when add returns, at
#     the generation the source committed plus one; all records read back
#     there; the source's remove leaves the new owner serving;
#   - a failed migration (destination add, then remove; the source resumes
#     with no hotplug call): the source's next writes take the volume back
#     and every record reads back;
#   - a host without quorum: add fails with the sentence, holds nothing;
#   - the owner host crashes (cowd and corosync killed): add on the other
#     host waits for the fence and takes over inside libxl's 40 s, and
#     every record reads back there.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
source "$top_srcdir/tests/lab/lab.sh"
source "$top_srcdir/tests/xen/xenlib.sh"
requires tgtd jq timeout

lab_init "xb$(printf %04x $((RANDOM)))"
lab_small_cluster
xen_init
declare -A cowd_pid
for n in 1 2; do cowd_pid[$n]=$(lab_cowd $n); done
lab_cowctl 1 create vm1 --base "$(lab_iscsi_url 0 $LAB_IQN 1)" --cow "$(lab_iscsi_url 0 $LAB_IQN 2)"
knows() { lab_cowctl 2 --json list | grep -q '"vm1"'; }
wait_until 10 knows || fail "node 2 does not know vm1"
st() { lab_cowctl "$1" --json status vm1; }
records="$top_srcdir/tests/xen/records.py"

# expect_refusal N DOMID SENTENCE: add fails as libxl must see it.
expect_refusal() {
  local rc=0
  xen_hotplug "$1" add "$2" || rc=$?
  [ $rc -eq 1 ] || fail "add of domain $2 on host $1 exited $rc, not 1"
  [ "$(xen_read "$1" "$2" hotplug-status)" = error ] || fail "hotplug-status is '$(xen_read "$1" "$2" hotplug-status)', not error"
  [ "$(xen_read "$1" "$2" hotplug-error)" = "$3" ] ||
    fail "hotplug-error is '$(xen_read "$1" "$2" hotplug-error)', not '$3'"
  [ -z "$(xen_read "$1" "$2" physical-device)" ] || fail "a refused add wrote physical-device"
  echo "   refused: $3"
}

echo "== refusals: unknown volume, no cowd on host 3"
xen_domain 1 9 other nope
expect_refusal 1 9 "volume nope does not exist"
xen_domain 3 9 vm1 vm1
expect_refusal 3 9 "volume vm1: cowd is not running on this host"

echo "== create on host 1 (domain 1), write records 0-39"
xen_domain 1 1 vm1 vm1
xen_hotplug 1 add 1 || fail "add on host 1 failed: $(xen_read 1 1 hotplug-error)"
[ "$(xen_read 1 1 hotplug-status)" = connected ] || fail "hotplug-status is not connected"
dev=$(xen_dev 1 1) || fail "no device"
st 1 | jq -e '.owner == 1 and .state == "active"' >/dev/null || fail "host 1 does not own vm1: $(st 1)"
python3 "$records" write "$dev" 0 40
python3 "$records" verify "$dev" 40 || fail "records do not read back on host 1"
echo "   $dev ($(xen_read 1 1 physical-device)) serves vm1"

echo "== a retried add of the same backend writes the same device"
xen_hotplug 1 add 1 || fail "a retried add failed: $(xen_read 1 1 hotplug-error)"
[ "$(xen_dev 1 1)" = "$dev" ] || fail "a retried add made another device"

echo "== refusals: a second domain on host 1, a domain on host 2 while host 1 runs it"
xen_domain 1 2 vm1-copy vm1
expect_refusal 1 2 "volume vm1 is in use by another domain on this host (backend/vbd/1/$XEN_DEVID)"
xen_domain 2 3 vm1-elsewhere vm1
expect_refusal 2 3 "volume vm1 is owned by node 1, where a running domain uses it; migrate that domain or destroy it first"
st 2 | jq -e '.state == "detached" and .owner == 1' >/dev/null || fail "the refusal left vm1 held on host 2: $(st 2)"
python3 "$records" verify "$dev" 40 || fail "records lost after the refusals"

echo "== destroy on host 1: unowned, clean, no device left"
xen_hotplug 1 remove 1 || fail "remove on host 1 failed"
xen_gone 1 1
st 1 | jq -e '.owner == 0 and .state == "detached"' >/dev/null || fail "vm1 is still held after destroy: $(st 1)"
losetup "$dev" >/dev/null 2>&1 && losetup "$dev" | grep -q "$LAB_DIR" && fail "$dev is still attached"
[ ! -e "$(lab_dir 1)/block-cow/vol.vm1" ] || fail "host 1 still records vm1"

echo "== create on host 2 (domain 4): records 0-39 intact, write 40-59"
xen_domain 2 4 vm1 vm1
xen_hotplug 2 add 4 || fail "add on host 2 failed: $(xen_read 2 4 hotplug-error)"
dev=$(xen_dev 2 4) || fail "no device on host 2"
python3 "$records" verify "$dev" 40 || fail "records lost between hosts"
python3 "$records" write "$dev" 40 20
nrec=60 src=2 srcdom=4 dom=10

migrate() {                  # one live migration from $src to the other host
  local dst=$((3 - src)) g
  xen_rename $src $srcdom vm1--migratedaway        # suspended
  xen_domain $dst $dom vm1--incoming vm1
  xen_hotplug $dst add $dom || fail "migration $1: add on host $dst failed: $(xen_read $dst $dom hotplug-error)"
  st $dst | jq -e ".owner == $dst and .state == \"active\"" >/dev/null ||
    fail "migration $1: host $dst does not serve vm1 when add returns: $(st $dst)"
  g=$(st $src | jq .generation)
  [ "$(st $dst | jq .generation)" -eq $((g + 1)) ] ||
    fail "migration $1: generation $g on host $src, $(st $dst | jq .generation) on host $dst"
  dev=$(xen_dev $dst $dom) || fail "migration $1: no device"
  python3 "$records" verify "$dev" $nrec || fail "migration $1: records lost"
  xen_rename $dst $dom vm1                          # unpaused
  xen_hotplug $src remove $srcdom || fail "migration $1: remove on host $src failed"
  xen_gone $src $srcdom
  st $dst | jq -e ".owner == $dst and .state == \"active\"" >/dev/null ||
    fail "migration $1: the source's remove disturbed host $dst: $(st $dst)"
  st $src | jq -e '.state == "detached"' >/dev/null || fail "migration $1: host $src still holds vm1"
  python3 "$records" write "$dev" $nrec 10
  nrec=$((nrec + 10)) src=$dst srcdom=$dom dom=$((dom + 1))
}

echo "== 20 live migrations in xl's order, 10 records written after each"
for i in $(seq 20); do migrate "$i"; done
python3 "$records" verify "$dev" $nrec || fail "records lost after 20 migrations"
echo "   $nrec records read back on host $src after 20 migrations"

echo "== failed migration: destination add then remove; the source resumes"
dst=$((3 - src))
xen_domain $dst $dom vm1--incoming vm1
xen_hotplug $dst add $dom || fail "add on host $dst failed: $(xen_read $dst $dom hotplug-error)"
st $dst | jq -e ".owner == $dst" >/dev/null || fail "host $dst did not take vm1"
xen_hotplug $dst remove $dom || fail "remove on host $dst failed"
xen_gone $dst $dom
# Unowned, or already back on the source if a request of its waited.
st $src | jq -e ".owner == 0 or .owner == $src" >/dev/null || fail "the failed destination kept vm1: $(st $src)"
st $dst | jq -e '.state == "detached"' >/dev/null || fail "host $dst still holds vm1: $(st $dst)"
python3 "$records" write "$dev" $nrec 10            # no hotplug call on the source
nrec=$((nrec + 10))
python3 "$records" verify "$dev" $nrec || fail "records lost after the failed migration"
st $src | jq -e ".owner == $src and .state == \"active\"" >/dev/null || fail "host $src did not take vm1 back: $(st $src)"
echo "   host $src took vm1 back with its first write; $nrec records read back"

echo "== destroy; then host 1 without quorum refuses vm1"
xen_hotplug $src remove $srcdom || fail "remove failed"
xen_gone $src $srcdom
lab_link_down 1
nq() { lab_cowctl 1 --json nodes | jq -e '.quorate == false'; }
wait_until 20 nq || fail "host 1 kept quorum without its link"
xen_domain 1 30 vm1 vm1
expect_refusal 1 30 "volume vm1: this node is not quorate; it cannot take ownership"
st 1 | jq -e '.state == "detached" or .state == "failed"' >/dev/null || fail "a refused add left vm1 attached on host 1: $(st 1)"
[ ! -e "$(lab_dir 1)/block-cow/vol.vm1" ] || fail "host 1 records vm1 after a refusal"
lab_link_up 1
[ -z "$(find "$(lab_dir 1)/qsd" "$(lab_dir 2)/qsd" -mindepth 1 2>/dev/null)" ] || fail "a device helper state is left: $(find "$(lab_dir 1)/qsd" "$(lab_dir 2)/qsd" -mindepth 1 2>/dev/null)"

echo "== the owner host crashes: add on host 2 waits for the fence, inside 40 s"
lab_wait_quorate 1 30 || fail "host 1 did not get quorum back"
lab_wait_cowd_quorate 1 30 || fail "cowd on host 1 did not get quorum back: $(lab_cowctl 1 --json nodes)"
xen_domain 1 40 vm1 vm1
xen_hotplug 1 add 40 || fail "add on host 1 failed: $(xen_read 1 40 hotplug-error)"
dev=$(xen_dev 1 40) || fail "no device on host 1"
python3 "$records" write "$dev" $nrec 10
nrec=$((nrec + 10))
lab_kill 1 "${cowd_pid[1]}"
lab_kill 1 "$(lab_corosync_pid 1)"
# The toolstack (or Pacemaker) restarts the domain once the cluster has
# seen the host go; before that, node 1 is a live owner and add refuses.
gone1() { lab_cowctl 2 --json nodes | jq -e '.members | index(1) == null'; }
wait_until 20 gone1 || fail "host 2 still sees host 1 as a member"
xen_domain 2 41 vm1 vm1
t0=$SECONDS
xen_hotplug 2 add 41 || fail "add on host 2 after host 1 crashed failed: $(xen_read 2 41 hotplug-error)"
echo "   add on host 2 returned after $((SECONDS - t0)) s"
[ $((SECONDS - t0)) -le 40 ] || fail "add after the owner's crash took $((SECONDS - t0)) s, past libxl's 40 s"
st 2 | jq -e '.owner == 2 and .state == "active"' >/dev/null || fail "host 2 does not serve vm1: $(st 2)"
dev=$(xen_dev 2 41) || fail "no device on host 2"
python3 "$records" verify "$dev" $nrec || fail "records lost across the owner's crash"
echo "   $nrec records read back on host 2"
pass
