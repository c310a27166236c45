#!/bin/sh
# Runs a program of another root file system (the Debian 13 one from hack/rootfs.sh) for an FRR
# instance kept in a directory of this machine:
#
#   hack/in-root.sh ROOT DIR PROGRAM [ARG...]
#
# In a mount namespace of its own it mounts a fresh /run, /tmp, /proc and /sys in ROOT, binds
# DIR (under /tmp or /run, which are fresh there) at the same path inside ROOT (so every path an instance is given means the same inside
# and out) and DIR/run as ROOT's /run/frr (where FRR 10's mgmtd keeps the sockets its daemons
# meet on), then replaces itself with PROGRAM chrooted into ROOT: the process keeps this one's
# PID, so it is ended as any other. Started inside a network namespace, /sys is that
# namespace's. Needs root.
set -eu
[ "$#" -ge 3 ] || { echo "usage: hack/in-root.sh ROOT DIR PROGRAM [ARG...]" >&2; exit 2; }
case "$2" in
  /tmp/?* | /run/?*) ;;
  *) echo "in-root: $2: an instance's directory must be under /tmp or /run" >&2; exit 2 ;;
esac
exec unshare --mount -- sh -c '
  set -eu
  root=$1 dir=$2
  shift 2
  mount -t tmpfs run "$root/run"
  mount -t tmpfs tmp "$root/tmp"
  mkdir -p "$root/run/frr" "$root$dir"
  mount --bind "$dir" "$root$dir"
  mount --bind "$dir/run" "$root/run/frr"
  mount -t proc proc "$root/proc"
  mount -t sysfs sys "$root/sys"
  exec chroot "$root" "$@"
' in-root "$@"
