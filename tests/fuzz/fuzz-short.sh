#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# fuzz-short.sh: every libFuzzer target for 10 seconds (make check), when
# clang with libFuzzer is installed; fuzz.sh does the work and fails on
# any crash or sanitizer report.  Long runs: tests/fuzz/fuzz.sh SECONDS.
source "$(dirname "$0")/../functions.sh"
requires clang
probe=$(mktemp -d)
cleanup_fn rm -rf "$probe"
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}' \
  > "$probe/p.c"
clang -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" 2>/dev/null \
  || { echo "SKIP: clang has no libFuzzer runtime (libclang-rt-dev)"; exit 77; }
"$top_srcdir/tests/fuzz/fuzz.sh" "${FUZZ_SECONDS:-10}" \
  || fail "a fuzz target failed"
pass
