#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# format.sh: the C sources follow .clang-format (issue 11): clang-format 14
# over every .c and .h of the tree changes nothing.  A file written another
# way fails here with the first lines clang-format would change; run
# `clang-format-14 -i FILE` (or `git clang-format` on a change) to fix it.
# Skipped where clang-format 14 is missing (bootstrap installs it): another
# version lays some constructs out differently.
source "$(dirname "$0")/functions.sh"
src=$top_srcdir
cf=$(command -v clang-format-14 || true)
[ -n "$cf" ] || { echo "SKIP: clang-format-14 is not installed"; exit 77; }
[ -f "$src/.clang-format" ] || fail "$src/.clang-format is missing"

bad=0 n=0
while IFS= read -r f; do
  n=$((n + 1))
  if ! out=$("$cf" --style=file --dry-run --Werror "$f" 2>&1); then
    echo "  ${f#"$src"/}: not as .clang-format says:"
    head -6 <<<"$out" | sed 's/^/    /'
    bad=$((bad + 1))
  fi
done < <(find "$src" \( -name .git -o -name autom4te.cache -o -name build-aux \
           -o -name _build -o -name _inst -o -name sanitize-build -o -path "$src/cowherd-*" \) -prune -o -type f \
           \( -name '*.c' -o -name '*.h' \) -print | grep -v '/config\.h$')
echo "  $n files checked"
[ $n -ge 50 ] || fail "only $n C files found under $src"
[ $bad = 0 ] || fail "$bad files not formatted as .clang-format says"
pass
