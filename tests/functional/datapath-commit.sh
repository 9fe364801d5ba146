#!/usr/bin/env bash
# The three commit policies across a crash (SIGKILL of cowd) and a clean
# restart:
#   sync   every acknowledged write survives a crash
#   flush  writes followed by a flush survive a crash
#   none   the volume is reset to the base when it is opened again
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires qemu-io cowd cowctl

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 16M random
for p in sync flush none; do truncate -s 20M "$d/cow-$p.img"; done
start_cowd "$d/run"
for p in sync flush none; do
  cowctl --run-dir "$d/run" create "v$p" --base "$d/base.img" --cow "$d/cow-$p.img" \
    --chunk-size 64K --commit "$p"
  cowctl --run-dir "$d/run" attach "v$p" >/dev/null
done
sock() { echo "nbd+unix:///?socket=$d/run/$1.sock"; }
# qemu-io flushes when it closes the image, so every write below is acked
# and flushed; the sync volume gets one more write without any flush.
for p in sync flush none; do
  qemu-io -f raw "$(sock v$p)" -c "write -P 0xa1 4k 4k" -c "write -P 0xa2 1M 128k" >/dev/null
done
nbdsh -u "$(sock vsync)" -c 'h.pwrite(b"\xb7" * 4096, 5 * 1024 * 1024)'

echo "== crash: SIGKILL cowd"
kill -9 "$(cat "$d/run/cowd.pid")"
wait_until 10 sh -c "! kill -0 $(cat "$d/run/cowd.pid") 2>/dev/null"
start_cowd "$d/run"
qemu-io -f raw "$(sock vsync)" -c "read -P 0xa1 4k 4k" -c "read -P 0xa2 1M 128k" \
  -c "read -P 0xb7 5M 4k" | grep -q "verification failed" && fail "sync lost an acknowledged write"
qemu-io -f raw "$(sock vflush)" -c "read -P 0xa1 4k 4k" -c "read -P 0xa2 1M 128k" \
  | grep -q "verification failed" && fail "flush lost a flushed write"
nbdsh -u "$(sock vnone)" -c "
base = open('$d/base.img','rb').read()
assert h.pread(4096, 4096) == base[4096:8192], 'none volume was not reset'
"
[ "$(cowctl --run-dir "$d/run" --json status vnone | jq .cow_chunks)" = 0 ] || fail "none volume has CoW chunks after reopen"
[ "$(cowctl --run-dir "$d/run" --json status vsync | jq .cow_chunks)" -ge 4 ] || fail "sync bitmap lost bits"
# sync: one commit (one bitmap write) may cover many faults.
cowctl --run-dir "$d/run" --json status vsync | jq -e '.stats' >/dev/null
pass
