# SPDX-License-Identifier: GPL-2.0-or-later
# tests/xen/xenlib.sh: drive block-cow as libxl does, in lab hosts (sourced
# after functions.sh and lab.sh).  No hypervisor: xenstore is the
# directory-backed stand-in tests/xen/xenstore-fake, one store per host
# ($(lab_dir N)/xs); the script runs from a scripts directory holding
# Xen's own helpers (xen-utils-common's /etc/xen/scripts/*.sh) as installed,
# but for hotplugpath.sh's bindir, which points at the stand-ins.
#
#   xen_init                          scripts directory and fake tools
#   xen_domain N DOMID NAME VOL       what libxl writes before "add": the
#                                     domain's name and the vbd backend
#                                     (params, mode, type, frontend, ...)
#   xen_rename N DOMID NAME           xl renaming a domain (--incoming off)
#   xen_hotplug N add|remove DOMID    run block-cow as libxl does (41 s cap,
#                                     or $XEN_HOTPLUG_TIMEOUT; $BLOCK_COW_TIMEOUT
#                                     passed on when set;
#                                     stderr to $(lab_dir N)/log/block-cow.err);
#                                     returns the script's exit status
#   xen_read N DOMID KEY              a backend key ("" when absent)
#   xen_gone N DOMID                  libxl deleting the backend and domain
#   xen_dev N DOMID                   the block device of a connected backend
#   xen_record N VOL KEY              block-cow's record on host N
XEN_DEVID=51712              # xvda

xen_init() {
  requires qemu-storage-daemon losetup jq python3 flock
  [ -r /etc/xen/scripts/block-common.sh ] || { echo "SKIP: xen-utils-common is not installed"; exit 77; }
  XEN_SCRIPTS=$LAB_DIR/xen-scripts XEN_BIN=$LAB_DIR/xen-bin
  mkdir -p "$XEN_SCRIPTS" "$XEN_BIN"
  local f
  for f in /etc/xen/scripts/*; do ln -s "$f" "$XEN_SCRIPTS/"; done
  # Xen's helpers put hotplugpath.sh's bindir (where xenstore-utils live)
  # first on PATH: the stand-ins take its place, the rest is as installed.
  rm "$XEN_SCRIPTS/hotplugpath.sh"
  sed "s|^bindir=.*|bindir=\"$XEN_BIN\"|" /etc/xen/scripts/hotplugpath.sh > "$XEN_SCRIPTS/hotplugpath.sh"
  ln -s "$top_builddir/deploy/xen/block-cow" "$XEN_SCRIPTS/block-cow"
  for f in read write exists rm list chmod; do
    ln -s "$top_srcdir/tests/xen/xenstore-fake" "$XEN_BIN/xenstore-$f"
  done
  mkdir -p /var/log/xen
  cleanup_fn xen_cleanup
}

# Undo every device the helper made on any host (before the lab goes).
xen_cleanup() {
  local d
  for d in "$LAB_DIR"/h*/qsd/*; do
    [ -d "$d" ] || continue
    [ -s "$d/loop" ] && losetup -d "$(cat "$d/loop")" 2>/dev/null
    [ -s "$d/qsd.pid" ] && kill_pid "$(cat "$d/qsd.pid")"
  done
  return 0
}

xs() { local n=$1; shift; XENSTORE_FAKE_DIR=$(lab_dir "$n")/xs "$XEN_BIN/$1" "${@:2}"; }

xen_domain() {               # xen_domain N DOMID NAME VOL
  local n=$1 d=$2 be=backend/vbd/$2/$XEN_DEVID
  xs "$n" xenstore-write "/local/domain/$d/name" "$3" \
    "/local/domain/$d/device/vbd/$XEN_DEVID/backend" "/local/domain/0/$be" \
    "/local/domain/$d/device/vbd/$XEN_DEVID/state" 1 \
    "$be/frontend" "/local/domain/$d/device/vbd/$XEN_DEVID" \
    "$be/frontend-id" "$d" "$be/params" "$4" "$be/mode" w "$be/type" phy \
    "$be/online" 1 "$be/state" 1 "$be/dev" xvda "$be/removable" 0 \
    "$be/bootable" 1 "$be/script" "/etc/xen/scripts/block-cow"
}

xen_rename() { xs "$1" xenstore-write "/local/domain/$2/name" "$3"; }

# The cowctl the script runs: the built program itself when libtool made a
# wrapper script for it (the wrapper costs four more processes a call,
# which an installed host does not pay), with the build's libdscow.
xen_cowctl_env() {
  local real=$top_builddir/node/cowctl/.libs/cowctl
  if [ -x "$real" ]; then
    echo "COWCTL=$real LD_LIBRARY_PATH=$top_builddir/format/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    echo "COWCTL=$top_builddir/node/cowctl/cowctl"
  fi
}

xen_hotplug() {              # xen_hotplug N add|remove DOMID
  local n=$1 dir; dir=$(lab_dir "$1")
  # shellcheck disable=SC2046  # the words of xen_cowctl_env
  lab_exec "$n" env XENSTORE_FAKE_DIR="$dir/xs" PATH="$XEN_BIN:$PATH" \
    XENBUS_PATH="backend/vbd/$3/$XEN_DEVID" XENBUS_TYPE=vbd XENBUS_BASE_PATH=backend \
    BLOCK_COW_CONF=/nonexistent $(xen_cowctl_env) \
    COWHERD_RUN_DIR="$dir/run" BLOCK_COW_STATE_DIR="$dir/block-cow" \
    BLOCK_COW_DEVICE_HELPER="$top_srcdir/tests/xen/qsd-loop-device" QSD_LOOP_DIR="$dir/qsd" \
    ${BLOCK_COW_TIMEOUT:+BLOCK_COW_TIMEOUT=$BLOCK_COW_TIMEOUT} \
    timeout "${XEN_HOTPLUG_TIMEOUT:-41}" "$XEN_SCRIPTS/block-cow" "$2" 2>>"$dir/log/block-cow.err"
  local rc=$?
  [ $rc -eq 0 ] || echo "block-cow $2 (domain $3, host $n) exited $rc" >&2
  return $rc
}

xen_read() { xs "$1" xenstore-read "backend/vbd/$2/$XEN_DEVID/$3" 2>/dev/null || true; }

xen_gone() { xs "$1" xenstore-rm "backend/vbd/$2" "/local/domain/$2"; }

xen_dev() {                  # the device, checked against physical-device
  local dev mm
  dev=$(xen_read "$1" "$2" physical-device-path)
  [ -b "$dev" ] || { echo "no block device for domain $2 on host $1" >&2; return 1; }
  mm=$(stat -L -c %t:%T "$dev")
  [ "$mm" = "$(xen_read "$1" "$2" physical-device)" ] ||
    { echo "physical-device $(xen_read "$1" "$2" physical-device) is not $dev ($mm)" >&2; return 1; }
  echo "$dev"
}

xen_record() { sed -n "s/^$3=//p" "$(lab_dir "$1")/block-cow/vol.$2" 2>/dev/null; }
