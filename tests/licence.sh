#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# licence.sh: the licence files ship, and every source file says its
# licence in an SPDX line among its first three: libdscow (format/) and
# the header-only helpers it may include (common/) are LGPL-2.1-or-later,
# so a program of any licence may link the format library; everything else
# (the daemon, the CLI, the libraries only they link, the tests) is
# GPL-2.0-or-later.  A new file without its line fails here.
source "$(dirname "$0")/functions.sh"
src=$top_srcdir

for f in COPYING COPYING.LIB; do
  [ -s "$src/$f" ] || fail "$f is missing"
done
grep -q "GNU GENERAL PUBLIC LICENSE" "$src/COPYING" || fail "COPYING is not the GPL"
grep -q "GNU LESSER GENERAL PUBLIC LICENSE" "$src/COPYING.LIB" || fail "COPYING.LIB is not the LGPL"
bad=0 n=0
while IFS= read -r f; do
  rel=${f#"$src"/}
  case $rel in
    format/*|common/*) want=LGPL-2.1-or-later ;;
    *) want=GPL-2.0-or-later ;;
  esac
  n=$((n + 1))
  if ! head -3 "$f" | grep -qF "SPDX-License-Identifier: $want"; then
    echo "  $rel: no 'SPDX-License-Identifier: $want' in its first lines"
    bad=$((bad + 1))
  fi
done < <(find "$src" \( -name .git -o -name autom4te.cache -o -name build-aux \
           -o -name _build -o -name _inst -o -name sanitize-build -o -path "$src/cowherd-*" \) -prune -o -type f \
           \( -name '*.c' -o -name '*.h' -o -name '*.sh' -o -name '*.py' \
           -o -name Makefile.am \) -print | grep -v '/config\.h$')
echo "  $n files checked"
[ $n -ge 50 ] || fail "only $n source files found under $src"
[ $bad = 0 ] || fail "$bad files without their SPDX line"
pass
