#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# layering.sh: the rooms of the tree and the only directions their arrows
# may run.  Two checks, both failing the test:
#
#  1. includes: every `#include "X.h"` in a room resolves to the room that
#     owns X.h (by file name), and that room must be the room itself or one
#     it may depend on (ALLOWED below).  A library that includes a
#     program's header, or a library that includes one above it, fails.
#  2. symbols: each library is linked whole (--whole-archive) into an empty
#     program together with only the libraries it may depend on; a symbol
#     that only a program defines (cowd_loop once was one) fails the link.
#
# LAYERING_TOP=DIR checks another tree's sources, LAYERING_BUILD=DIR
# another build's libraries (layering-selftest.sh adds an upward include
# and a daemon symbol to copies and expects both to fail).
source "$(dirname "$0")/functions.sh"
requires gcc pkg-config
src=${LAYERING_TOP:-$top_srcdir}

# room: the rooms it may include, besides itself.
declare -A ALLOWED=(
  [common]=""
  [format]="common"
  [fence]="common"
  [cluster]="common"
  [node/engine]="common format"
  [node/nbd]="common format node/engine"
  [node/ctl]="common format"
  [node/cowd]="common format cluster fence node/engine node/nbd node/ctl"
  [node/cowctl]="common format node/ctl"
)

declare -A owner
for room in "${!ALLOWED[@]}"; do
  for h in "$src/$room"/*.h; do
    [ -e "$h" ] && owner[$(basename "$h")]=$room
  done
done

bad=0
for room in "${!ALLOWED[@]}"; do
  for f in "$src/$room"/*.[ch]; do
    [ -e "$f" ] || continue
    while IFS= read -r inc; do
      to=${owner[$inc]:-}
      [ -n "$to" ] || continue             # config.h, system headers
      [ "$to" = "$room" ] && continue
      case " ${ALLOWED[$room]} " in
        *" $to "*) ;;
        *) echo "layering: $room/$(basename "$f") includes $to/$inc," \
             "but $room may include only: ${ALLOWED[$room]:-nothing of ours}" >&2
           bad=$((bad + 1)) ;;
      esac
    done < <(sed -n 's/^#include "\(.*\)".*/\1/p' "$f")
  done
done
[ $bad -eq 0 ] || fail "$bad upward or sideways include(s)"
echo "includes: every room includes only the rooms below it"

[ -n "${LAYERING_TOP:-}" ] && pass    # a source copy: no objects to link

# Link each library whole, with only what it may depend on.
b=${LAYERING_BUILD:-$top_builddir}
tmp=$(mktemp -d); cleanup_fn rm -rf "$tmp"
echo 'int main (void) { return 0; }' > "$tmp/main.c"
pc() { pkg-config --libs "$@"; }
link_alone() {               # link_alone NAME ARCHIVE [DEPS...]
  local name=$1 ar=$2; shift 2
  [ -e "$ar" ] || { echo "$name: not built, skipped"; return 0; }
  if ! gcc -o "$tmp/$name" "$tmp/main.c" -Wl,--whole-archive "$ar" \
       -Wl,--no-whole-archive "$@" -pthread 2> "$tmp/$name.err"; then
    grep -o "undefined reference to \`[^']*'" "$tmp/$name.err" | sort -u >&2
    fail "$name has undefined symbols that only a program defines"
  fi
  echo "symbols: $name links on its own"
}
dscow=$b/format/.libs/libdscow.so
iscsi=$(pkg-config --exists libiscsi && pc libiscsi || true)
link_alone libdscow "$dscow"
link_alone libcowfence "$b/fence/.libs/libcowfence.a" $iscsi
link_alone libcowcluster "$b/cluster/.libs/libcowcluster.a" \
  $(pc libcpg libquorum libvotequorum libcfg libcmap libqb 2>/dev/null || true)
engine_deps=("$dscow" $(pc libqb liburing uuid) $iscsi)
link_alone libcowengine "$b/node/engine/.libs/libcowengine.a" "${engine_deps[@]}"
link_alone libcownbd "$b/node/nbd/.libs/libcownbd.a" \
  "$b/node/engine/.libs/libcowengine.a" "${engine_deps[@]}"
link_alone libcowctl "$b/node/ctl/.libs/libcowctl.a" "$dscow" $(pc libqb)
pass
