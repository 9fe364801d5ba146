#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The Debian packages build offline from a clean tree (make distdir, then
# deploy/debian copied to debian/): dpkg-buildpackage -us -uc -b gives
# cowherd, libdscow0 and libdscow-dev; cowherd holds cowd, cowctl, the man
# pages, the Type=notify unit, the tmpfiles entry and the Xen script; the
# cowd and cowctl unpacked from the packages run a volume; lintian (when
# installed) reports no error.
source "${abs_top_srcdir:-$(dirname "$0")/../..}/tests/functions.sh"
requires dpkg-buildpackage dh dpkg-deb qemu-io jq

d=$(mktemp -d /tmp/cowherd-deb.XXXXXX); cleanup_fn rm -rf "$d"
ver=$(sed -n 's/^PACKAGE_VERSION = //p' "$top_builddir/Makefile")
src=$d/cowherd-$ver
rm -rf "$top_builddir/cowherd-$ver"
make -s -C "$top_builddir" distdir >/dev/null || fail "make distdir failed"
mv "$top_builddir/cowherd-$ver" "$src"
cp -r "$src/deploy/debian" "$src/debian"
echo "== dpkg-buildpackage -us -uc -b in a clean tree"
(cd "$src" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
   dpkg-buildpackage -us -uc -b) > "$d/build.log" 2>&1 ||
  { tail -30 "$d/build.log"; fail "dpkg-buildpackage failed"; }
arch=$(dpkg --print-architecture)
for p in cowherd libdscow0 libdscow-dev; do
  [ -f "$d/${p}_${ver}_$arch.deb" ] || fail "no package $p: $(ls "$d")"
done
deb=$d/cowherd_${ver}_$arch.deb
dpkg-deb -c "$deb" | awk '{print $6}' > "$d/contents"
for f in ./usr/sbin/cowd ./usr/sbin/cowctl ./etc/xen/scripts/block-cow \
         ./lib/systemd/system/cowd.service ./usr/lib/tmpfiles.d/cowherd.conf \
         ./etc/cowherd/cowd.conf ./usr/share/man/man8/block-cow.8.gz \
         ./usr/share/man/man8/cowd.8.gz ./usr/share/man/man8/cowctl.8.gz \
         ./usr/share/man/man5/dscow.5.gz; do
  grep -qx "$f" "$d/contents" || fail "cowherd.deb lacks $f"
done
dev=$(dpkg-deb -c "$d/libdscow-dev_${ver}_$arch.deb")
grep -q '/usr/include/dscow.h$' <<<"$dev" || fail "libdscow-dev lacks dscow.h"
grep -q 'libdscow0' <<<"$(dpkg-deb -f "$deb" Depends)" || fail "cowherd does not depend on libdscow0"

echo "== the packaged cowd and cowctl run a volume"
root=$d/root
for p in cowherd libdscow0; do dpkg-deb -x "$d/${p}_${ver}_$arch.deb" "$root"; done
grep -qx 'Type=notify' "$root/lib/systemd/system/cowd.service" || fail "the packaged unit is not Type=notify"
grep -q 'device_helper' "$root/etc/xen/scripts/block-cow" || fail "block-cow is not the script"
export LD_LIBRARY_PATH=$root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)
[ "$("$root/usr/sbin/cowd" --version)" = "cowd $ver" ] || fail "cowd --version: $("$root/usr/sbin/cowd" --version)"
[ "$("$root/usr/sbin/cowctl" --version)" = "cowctl $ver" ] || fail "cowctl --version"
ldd "$root/usr/sbin/cowd" | grep -c "$LD_LIBRARY_PATH/libdscow.so.0" >/dev/null || fail "cowd does not use the packaged libdscow"
"$root/usr/sbin/cowd" -f --standalone --run-dir "$d/run" --state-dir "$d/state" >"$d/cowd.log" 2>&1 &
cleanup_fn kill_pid $!
wait_until 10 "$root/usr/sbin/cowctl" --run-dir "$d/run" list || fail "the packaged cowd did not start"
new_image "$d/base.img" 4M random
truncate -s 6M "$d/cow.img"
"$root/usr/sbin/cowctl" --run-dir "$d/run" create v --base "$d/base.img" --cow "$d/cow.img" >/dev/null
uri=$("$root/usr/sbin/cowctl" --run-dir "$d/run" attach v)
qemu-io -f raw "$uri" -c "write -P 0x3c 64k 64k" >/dev/null
qio_ok "$uri" "the packaged cowd lost a write" "read -P 0x3c 64k 64k"
"$root/usr/sbin/cowctl" --run-dir "$d/run" --json status v | jq -e '.cow_chunks == 1' >/dev/null ||
  fail "the packaged cowd's status is wrong"

if command -v lintian >/dev/null; then
  echo "== lintian"
  out=$(lintian "$d"/*.changes 2>&1 || true)
  echo "$out" | grep '^E:' && fail "lintian reports errors"
  echo "$out" | grep -c '^W:' | xargs echo "   lintian warnings:"
fi
pass
