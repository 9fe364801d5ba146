#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# layering-selftest.sh: layering.sh fails when it should.  On copies, never
# on the tree: an include of the daemon's header from the engine, and a
# call of a daemon-only symbol compiled into the engine's archive.
source "$(dirname "$0")/functions.sh"
requires gcc ar pkg-config
tmp=$(mktemp -d); cleanup_fn rm -rf "$tmp"

expect_failure() {           # expect_failure WHAT ENV=VALUE SENTENCE...
  local what=$1 env=$2 out rc s; shift 2
  set +e
  out=$(env "$env" bash "$top_srcdir/tests/layering.sh" 2>&1)
  rc=$?
  set -e
  [ $rc -eq 1 ] || fail "$what: layering.sh exited $rc, not 1"
  for s in "$@"; do
    grep -qF "$s" <<< "$out" || fail "$what: '$s' not in: $out"
  done
}

# 1. An upward include.
for room in common format fence cluster node/engine node/nbd node/ctl \
            node/cowd node/cowctl; do
  mkdir -p "$tmp/src/$room"
  cp "$top_srcdir/$room"/*.[ch] "$tmp/src/$room/"
done
LAYERING_TOP=$tmp/src bash "$top_srcdir/tests/layering.sh" > /dev/null 2>&1 \
  || fail "layering.sh fails on an unchanged copy of the tree"
echo '#include "cowd.h"' >> "$tmp/src/node/engine/volume.c"
expect_failure "an upward include" "LAYERING_TOP=$tmp/src" \
  "layering: node/engine/volume.c includes node/cowd/cowd.h, but node/engine may include only: common format"

# 2. A daemon symbol inside the engine library.
mkdir -p "$tmp/b/format/.libs" "$tmp/b/node/engine/.libs"
cp -P "$top_builddir"/format/.libs/libdscow.so* "$tmp/b/format/.libs/"
cp "$top_builddir/node/engine/.libs/libcowengine.a" "$tmp/b/node/engine/.libs/"
printf 'void cmds_dispatch (void *);\nvoid engine_upcall (void);\nvoid engine_upcall (void) { cmds_dispatch (0); }\n' > "$tmp/up.c"
gcc -c -o "$tmp/up.o" "$tmp/up.c"
ar r "$tmp/b/node/engine/.libs/libcowengine.a" "$tmp/up.o" 2>/dev/null
expect_failure "a daemon symbol in the engine" "LAYERING_BUILD=$tmp/b" \
  "undefined reference to \`cmds_dispatch'" \
  "libcowengine has undefined symbols that only a program defines"
pass
