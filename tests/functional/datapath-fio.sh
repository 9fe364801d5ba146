#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# fio's nbd engine, QD16 random writes with crc32c verification, two jobs
# on two connections at once (multi-conn consistency), then a verify pass
# on a fresh connection after a restart of cowd.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires fio cowd cowctl

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
new_image "$d/base.img" 64M random
truncate -s 70M "$d/cow.img"
start_cowd "$d/run"
cowctl --run-dir "$d/run" create v --base "$d/base.img" --cow "$d/cow.img" --chunk-size 16K
uri=$(cowctl --run-dir "$d/run" attach v)
fio --name=w --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=16 \
    --io_size=16M --numjobs=2 --offset_increment=32M --size=32M \
    --verify=crc32c --verify_state_save=0 --verify_fatal=1 --do_verify=1 --output-format=terse >/dev/null \
  || fail "fio verify failed"
stop_cowd "$d/run"
start_cowd "$d/run"
fio --name=w --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=16 \
    --size=32M --numjobs=2 --offset_increment=32M --io_size=16M \
    --verify=crc32c --verify_state_save=0 --verify_only=1 --verify_fatal=1 --output-format=terse >/dev/null \
  || fail "data did not survive a restart of cowd"
cowctl --run-dir "$d/run" stats v
pass
