#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Crash safety of the layer chain: cowd is made to exit (COWD_TEST_CRASH_AT,
# an _exit at a named step, as abrupt as SIGKILL) at each step of snapshot,
# reset and rollback; after a restart the volume must read exactly as the
# old chain or exactly as the new one (nbdcopy + cmp against the expected
# image), the chain listed must be that one, and the volume must take
# writes again.
#   snapshot-start      drained, nothing written          -> old chain
#   snapshot-formatted  the new layer formatted, unlinked -> old chain
#   snapshot-committed  the old top frozen and linked     -> new chain
#   reset-start / rollback-start                          -> old chain
#   reset-committed / rollback-committed: the superblock says "resetting",
#                       the bitmap is not zeroed yet      -> new chain
#   reset-zeroed        zeroed, the flag still set        -> new chain
#   merge-start         the lower layer marked merging    -> old chain
#   merge-copying       the first run copied               -> old chain
#   merge-copied        held, every chunk copied           -> old chain
#   merge-bitmap        the lower layer's bitmap written   -> old chain
#   merge-committed     the lower layer is the top         -> new chain
# A merge interrupted before its commit starts again by itself when cowd
# is back (the log says so, status says "resumed") and ends with the new
# chain; the data reads the same all along.  While it runs (slowed by
# COWD_TEST_MERGE_STEP_MS) the snapshot merged into is gone: a rollback
# to it is refused.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires nbdcopy qemu-io cowd cowctl jq

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
uri="nbd+unix:///?socket=$d/run/v.sock"
source "$top_srcdir/tests/functional/chain-lib.sh"
new_image "$d/base.img" 8M random
for i in 1 2 3; do truncate -s 9M "$d/cow$i.img"; done
cp "$d/base.img" "$d/expect.img"
start_cowd "$d/run"
c create v --base "$d/base.img" --cow "$d/cow1.img" >/dev/null
c attach v >/dev/null


# crash_at STEP CMD...: cowd runs CMD and exits at STEP; restarted.
merged() {
  wait_until 30 sh -c "[ \"\$(cowctl --run-dir $d/run --json status v | jq -r .merge.state)\" = off ]" \
    || fail "the merge did not end: $(c status v)"
}
crash_at() {                 # RESTART_STEP_MS=N: the restarted cowd's merge pauses
  local step=$1 pid out; shift
  stop_cowd "$d/run"
  COWD_TEST_CRASH_AT=$step start_cowd "$d/run"
  pid=${_cowd_pid[$d/run]}
  local t0=$SECONDS rc=0 gone
  out=$(c "$@" 2>&1) || rc=$?   # merge answers before its later steps
  # cowctl notices that cowd went away, at once and with this sentence.
  [ $((SECONDS - t0)) -lt 10 ] \
    || fail "cowctl $1 waited $((SECONDS - t0)) s for a cowd that exited at $step"
  gone="cowctl: cowd at $d/run went away before it answered (it exited or was stopped); whether the command took effect is unknown: look with cowctl status"
  [ $rc -eq 0 ] || { [ $rc -eq 3 ] && [ "$out" = "$gone" ]; } \
    || fail "cowctl $1 at $step: exit $rc, '$out'"
  wait_until 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "cowd did not exit at $step"
  grep -q "test hook: exiting at $step" "$d/run.log" || fail "cowd never reached $step"
  rm -f "$d/run/cowd.pid"
  COWD_TEST_MERGE_STEP_MS=${RESTART_STEP_MS:-0} start_cowd "$d/run"
  echo "  killed at $step"
}

w 0x11 0 64k
w 0x12 1052672 4096
cp "$d/expect.img" "$d/e0.img"

crash_at snapshot-start snapshot v --cow "$d/cow2.img" --name s1
same "$d/e0.img" "snapshot-start"
[ "$(layers)" = '[[null,2]]' ] || fail "snapshot-start: chain $(layers)"
crash_at snapshot-formatted snapshot v --cow "$d/cow2.img" --name s1
same "$d/e0.img" "snapshot-formatted"
[ "$(layers)" = '[[null,2]]' ] || fail "snapshot-formatted: chain $(layers)"
# cow2 holds an unlinked layer now; the retry formats it again.
crash_at snapshot-committed snapshot v --cow "$d/cow2.img" --name s1
same "$d/e0.img" "snapshot-committed"
[ "$(layers)" = '[["s1",2],[null,0]]' ] || fail "snapshot-committed: chain $(layers)"
w 0x21 65536 64k
w 0x22 1056768 512
cp "$d/expect.img" "$d/e1.img"
c snapshot v --cow "$d/cow3.img" --name s2 >/dev/null
w 0x31 131072 64k
cp "$d/expect.img" "$d/e2.img"
[ "$(layers)" = '[["s1",2],["s2",2],[null,1]]' ] || fail "chain $(layers)"

crash_at reset-start reset v
same "$d/e2.img" "reset-start"
[ "$(layers)" = '[["s1",2],["s2",2],[null,1]]' ] || fail "reset-start: chain $(layers)"
crash_at reset-committed reset v
same "$d/e1.img" "reset-committed"
[ "$(layers)" = '[["s1",2],["s2",2],[null,0]]' ] || fail "reset-committed: chain $(layers)"
cp "$d/e1.img" "$d/expect.img"
w 0x32 131072 4096
crash_at reset-zeroed reset v
same "$d/e1.img" "reset-zeroed"
[ "$(layers)" = '[["s1",2],["s2",2],[null,0]]' ] || fail "reset-zeroed: chain $(layers)"
cp "$d/e1.img" "$d/expect.img"
w 0x33 131072 64k

crash_at rollback-start rollback v s1
cp "$d/e1.img" "$d/e2.img"
qemu-io -f raw -c "write -P 0x33 131072 64k" "$d/e2.img" >/dev/null
same "$d/e2.img" "rollback-start"
[ "$(layers)" = '[["s1",2],["s2",2],[null,1]]' ] || fail "rollback-start: chain $(layers)"
crash_at rollback-committed rollback v s1
same "$d/e0.img" "rollback-committed"
[ "$(layers)" = '[["s1",2],[null,0]]' ] || fail "rollback-committed: chain $(layers)"
cp "$d/e0.img" "$d/expect.img"
w 0x41 0 4096
c snapshot v --cow "$d/cow3.img" --name s2 >/dev/null
w 0x42 65536 4096
crash_at reset-zeroed rollback v s1
same "$d/e0.img" "rollback, reset-zeroed"
[ "$(layers)" = '[["s1",2],[null,0]]' ] || fail "rollback reset-zeroed: chain $(layers)"
# It takes writes, and they last across a clean restart.
cp "$d/e0.img" "$d/expect.img"
w 0x51 0 64k
stop_cowd "$d/run"
start_cowd "$d/run"
same "$d/expect.img" "after a clean restart"

# Merge: the data never changes; the chain does at the commit.  Each
# interrupted merge starts again by itself and ends with the new chain;
# then a new top over it for the next step.
resumes=0
for step in merge-start merge-copying merge-copied merge-bitmap; do
  c snapshot v --cow "$d/cow3.img" --name s2 >/dev/null
  w 0x61 65536 128k
  w 0x62 3145728 4096
  cp "$d/expect.img" "$d/e3.img"
  [ "$(layers)" = '[["s1",2],["s2",'$([ $step = merge-start ] && echo 1 || echo 4)'],[null,3]]' ] \
    || fail "before $step: chain $(layers)"
  if [ $step = merge-bitmap ]; then RESTART_STEP_MS=1500; else RESTART_STEP_MS=0; fi
  crash_at $step merge v
  same "$d/e3.img" "$step, as cowd came back"
  if [ $step = merge-bitmap ]; then
    st=$(cowctl --run-dir "$d/run" --json status v)
    [ "$(jq -c '[.merge.state, .merge.resumed]' <<<"$st")" = '["running",true]' ] \
      || fail "merge-bitmap: the merge did not start again by itself: $(jq -c .merge <<<"$st")"
    c status v | grep -q "^merge:       running (started again after an interruption), " \
      || fail "merge-bitmap: status does not say the merge started again: $(c status v)"
    expect_exact "volume v: snapshot s2 is the target of a merge: its layer no longer holds the snapshot; the merge is running (cowctl status shows it)" \
      rollback v s2
  fi
  merged
  resumes=$((resumes + 1))
  [ "$(grep -c "volume: v: the merge of $d/cow3.img into snapshot s2 on $d/cow2.img was interrupted; it starts again" "$d/run.log")" = $resumes ] \
    || fail "$step: the log does not say the merge started again"
  same "$d/e3.img" "$step, merged after the restart"
  [ "$(layers)" = '[["s1",2],[null,4]]' ] || fail "$step, merged after the restart: chain $(layers)"
done
c snapshot v --cow "$d/cow3.img" --name s2 >/dev/null
w 0x61 65536 128k
w 0x62 3145728 4096
cp "$d/expect.img" "$d/e3.img"
crash_at merge-committed merge v
same "$d/e3.img" "merge-committed"
[ "$(layers)" = '[["s1",2],[null,4]]' ] || fail "merge-committed: chain $(layers)"
[ "$(grep -c "was interrupted; it starts again" "$d/run.log")" = $resumes ] \
  || fail "merge-committed: a committed merge was started again"
w 0x63 0 4096
c merge v >/dev/null
merged
same "$d/expect.img" "after the last merge"
[ "$(layers)" = '[[null,5]]' ] || fail "after the last merge: chain $(layers)"
stop_cowd "$d/run"
start_cowd "$d/run"
same "$d/expect.img" "after the last restart"
pass
