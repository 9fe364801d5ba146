#!/usr/bin/env bash
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
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires nbdcopy qemu-io cowd cowctl jq

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
c() { cowctl --run-dir "$d/run" "$@"; }
uri="nbd+unix:///?socket=$d/run/v.sock"
new_image "$d/base.img" 8M random
for i in 1 2 3; do truncate -s 9M "$d/cow$i.img"; done
cp "$d/base.img" "$d/expect.img"
start_cowd "$d/run"
c create v --base "$d/base.img" --cow "$d/cow1.img" >/dev/null
c attach v >/dev/null

w() {
  qio_ok "$uri" "writing $3 bytes of $1 at $2" "write -P $1 $2 $3"
  qemu-io -f raw -c "write -P $1 $2 $3" "$d/expect.img" >/dev/null
}
same() {
  rm -f "$d/out.img"
  nbdcopy "$uri" "$d/out.img" || fail "nbdcopy failed ($2)"
  cmp "$d/out.img" "$1" || fail "the volume reads as neither chain: $2"
}
layers() { c --json snapshots v | jq -c '[.layers[] | [.snapshot, .chunks]]'; }

# crash_at STEP CMD...: cowd runs CMD and exits at STEP; restarted.
crash_at() {
  local step=$1 pid out; shift
  stop_cowd "$d/run"
  COWD_TEST_CRASH_AT=$step start_cowd "$d/run"
  pid=${_cowd_pid[$d/run]}
  out=$(c "$@" 2>&1) && fail "cowctl $* succeeded although cowd exits at $step: $out"
  wait_until 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "cowd did not exit at $step"
  grep -q "test hook: exiting at $step" "$d/run.log" || fail "cowd never reached $step"
  rm -f "$d/run/cowd.pid"
  start_cowd "$d/run"
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
same "$d/expect.img" "after the last restart"
pass
