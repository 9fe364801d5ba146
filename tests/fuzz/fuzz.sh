#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# fuzz.sh: build the libFuzzer targets with clang (ASan + UBSan) and run
# each for SECONDS over a copy of its seed corpus (corpus/NAME, in the
# tree).  Prints one line per target: runs, executions per second, corpus
# size.  Fails on the first crash, leak, sanitizer report or failed check
# (the reproducer is kept and named).
#
#   tests/fuzz/fuzz.sh SECONDS [TARGET...]      (default: all)
#
# Targets: super (format/ superblock), cluster (cluster messages and the
# ownership table), ctl (control requests), config (cowd.conf), nbd (the
# NBD server driven through a socket: handshake, options, requests).
# make check runs it for 10 s each (fuzz-short.sh); long runs:
#   FUZZ_KEEP=DIR tests/fuzz/fuzz.sh 3600 nbd
# keeps the grown corpus in DIR/NAME.  Needs clang and libclang-rt
# (bootstrap installs them) and a configured build tree (config.h).
set -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${abs_top_builddir:-$src}
secs=${1:?usage: fuzz.sh SECONDS [TARGET...]}
shift
targets=${*:-super cluster ctl config nbd}
bin=${FUZZ_BIN:-$build/tests/fuzz/bin}
work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin"

E=$src/node/engine
FMT="$src/format/super.c $src/format/crc32c.c $src/format/bitmap.c $src/format/stamp.c"
declare -A SRCS=(
  [super]="$FMT"
  [cluster]="$src/cluster/msg.c $src/cluster/table.c"
  [ctl]="$src/node/ctl/ctl-client.c $src/node/ctl/ctl-frame.c $src/node/ctl/strbuf.c $src/format/crc32c.c"
  [config]=""
  [nbd]="$FMT $E/loop.c $E/defer.c $E/backend.c $E/backend-file.c $E/volume.c $E/vol-io.c $E/vol-lock.c $E/vol-commit.c $E/vol-hydrate.c $E/vol-chain.c $E/vol-merge.c $E/vol-export.c $E/lograte.c"
)
declare -A MAXLEN=([super]=8192 [cluster]=4096 [ctl]=4096 [config]=4096
                   [nbd]=60000)
INC="-I$build -I$src/common -I$src/format -I$src/cluster -I$src/node/ctl
     -I$src/node/cowd -I$src/node/engine -I$src/node/nbd"

build_target() {
  local t=$1 out=$bin/fuzz_$1
  # Up to date when no source (targets include files of the tree) is newer.
  if [ -x "$out" ] && [ -z "$(find "$src/common" "$src/format" \
       "$src/cluster" "$src/node" "$src/tests/fuzz" -name '*.[ch]' \
       -newer "$out" | head -1)" ]; then
    return 0
  fi
  # shellcheck disable=SC2086
  clang -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined $INC "$src/tests/fuzz/fuzz_$t.c" \
    ${SRCS[$t]} -o "$out" -lqb -luring -luuid
}

status=0
printf '%-8s %10s %10s %8s\n' target runs exec/s corpus
for t in $targets; do
  [ -n "${MAXLEN[$t]}" ] || { echo "fuzz.sh: no target $t" >&2; exit 2; }
  build_target "$t" || { echo "fuzz.sh: building fuzz_$t failed" >&2; exit 2; }
  corpus=${FUZZ_KEEP:+$FUZZ_KEEP/$t}
  corpus=${corpus:-$work/$t}
  mkdir -p "$corpus" "$work/art-$t"
  seeds=$src/tests/fuzz/corpus/$t
  [ -d "$seeds" ] || seeds=
  log=$work/$t.log
  if ! ( cd "$work" && TMPDIR=$work "$bin/fuzz_$t" -max_total_time="$secs" \
         -max_len="${MAXLEN[$t]}" -timeout=10 -rss_limit_mb=2048 \
         -artifact_prefix="$work/art-$t/" "$corpus" $seeds ) >"$log" 2>&1; then
    keep=$build/tests/fuzz/crash-$t
    mkdir -p "$keep" && cp "$work/art-$t"/* "$log" "$keep"/ 2>/dev/null
    grep -E "ERROR|SUMMARY|==[0-9]+==" "$log" | head -5 >&2
    echo "fuzz.sh: fuzz_$t failed; reproducer and log in $keep" >&2
    status=1
    continue
  fi
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  runs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$done_line")
  eps=$(sed -E 's/.*exec\/s: ([0-9]+).*/\1/' <<<"$done_line")
  n=$(find "$corpus" -type f | wc -l)
  printf '%-8s %10s %10s %8s\n' "$t" "${runs:-?}" "${eps:-?}" "$n"
done
exit $status
