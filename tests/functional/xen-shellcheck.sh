#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The Xen hotplug script and the tests' Xen helpers pass shellcheck (no
# finding at all, info level included).
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires shellcheck
out=$(shellcheck -s bash "$top_builddir/deploy/xen/block-cow" \
  "$top_srcdir/tests/xen/xenstore-fake" "$top_srcdir/tests/xen/qsd-loop-device" 2>&1) ||
  fail "shellcheck: $out"
pass
