#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The installed product works with its own defaults (issue 10 item 5):
# `make install DESTDIR=D`, then, with D seen at the build's prefix (a
# private mount namespace binds D/PREFIX over PREFIX, so nothing outside D
# is touched), the installed unit's ExecStart starts the installed cowd
# with no configuration file, and the installed cowctl reaches it with no
# options.  The example configuration installs with the same defaults.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires make unshare mount cowctl
requires_root

d=$(mktemp -d /tmp/cowherd-test.XXXXXX); cleanup_fn rm -rf "$d"
make -C "$top_builddir" install DESTDIR="$d/dest" >"$d/install.log" 2>&1 \
  || { tail -20 "$d/install.log"; fail "make install DESTDIR=$d/dest failed"; }
prefix=$(sed -n 's/^prefix = //p' "$top_builddir/Makefile")
unit=$(find "$d/dest" -name cowd.service)
[ -n "$unit" ] || fail "no cowd.service installed"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
echo "  prefix $prefix; ExecStart=$exec_start"
[ -n "$prefix" ] && [ -d "$d/dest$prefix" ] || fail "nothing installed under $d/dest$prefix"
example=$(find "$d/dest" -name cowd.conf.example)
[ -n "$example" ] || fail "no cowd.conf.example installed"
runstatedir=$(sed -n 's/^runstatedir = //p' "$top_builddir/Makefile")
grep -qxF "# run-dir = ${runstatedir/\$\{localstatedir\}/$prefix/var}/cowherd" "$example" \
  || fail "the example's run-dir is not the default: $(grep run-dir "$example")"

# Inside: PREFIX is D/PREFIX.  Start the unit's command (-f: as systemd
# does), reach it with the installed cowctl and no options, stop it.
cat > "$d/inside.sh" <<EOS
set -e
mount --bind "$d/dest$prefix" "$prefix"
export LD_LIBRARY_PATH=$prefix/lib
unset COWHERD_RUN_DIR
$exec_start >"$d/cowd.log" 2>&1 &
pid=\$!
for i in \$(seq 100); do
  $prefix/sbin/cowctl list >/dev/null 2>&1 && break
  sleep 0.1
done
rc=0
$prefix/sbin/cowctl --json list >"$d/list.out" 2>&1 || rc=\$?
$prefix/sbin/cowctl help >/dev/null
kill \$pid
wait \$pid || true
exit \$rc
EOS
rc=0
unshare -m --propagation private bash "$d/inside.sh" || rc=$?
cat "$d/cowd.log"
[ $rc = 0 ] || fail "the installed cowctl could not reach the installed cowd: $(cat "$d/list.out")"
[ "$(cat "$d/list.out")" = "[]" ] || fail "cowctl --json list printed $(cat "$d/list.out")"
grep -q "cowd: .* serving, run directory ${runstatedir/\$\{localstatedir\}/$prefix/var}/cowherd" "$d/cowd.log" \
  || fail "cowd did not serve on the default run directory"
pass
