#!/usr/bin/env bash
# Loads an frr.conf into a throwaway FRR instance inside its own network namespace, and prints
# FRR's `show running-config` without the lines that depend on the host: the banner,
# `frr version`, `hostname`, `end`. The namespace forwards IPv4 and IPv6, like a Kubernetes
# node. Needs root.
#
#   hack/frr-running-config.sh [--root ROOT] FILE
#
# Without --root it runs Debian's frr package of this machine; with it, the FRR of root file
# system ROOT (hack/rootfs.sh build), chrooted by hack/in-root.sh. The daemons are zebra,
# staticd, bfdd and bgpd, with mgmtd first where that FRR has it (FRR 10 configures zebra and
# staticd through it); their flags are the ones each daemon's --help lists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=""
if [ "${1:-}" = "--root" ]; then
  root=$(realpath "$2")
  shift 2
fi
file=$(realpath "$1")
ns="ferrolb-echo-$$"
dir=$(mktemp -d)
chmod 0755 "$dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# Runs a program of the FRR under test.
in_root=()
[ -z "$root" ] || in_root=("$here/in-root.sh" "$root" "$dir")
frr() { "${in_root[@]}" "$@"; }
passwd="${root}/etc/passwd"
owner="$(awk -F: '$1 == "frr" { print $3 ":" $4 }' "$passwd")"
[ -n "$owner" ] || { echo "frr-running-config: no user frr in $passwd" >&2; exit 1; }

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add eth0 type veth peer name eth1
ip -n "$ns" link set eth0 up
ip -n "$ns" link set eth1 up
ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

run="$dir/run" etc="$dir/etc"
install -d -o "${owner%:*}" -g "${owner#*:}" -m 0755 "$run" "$etc"
install -o "${owner%:*}" -g "${owner#*:}" -m 0644 /dev/null "$etc/vtysh.conf"
install -o "${owner%:*}" -g "${owner#*:}" -m 0644 "$file" "$etc/frr.conf"
daemons=(zebra staticd bfdd bgpd)
[ -x "$root/usr/lib/frr/mgmtd" ] && daemons=(mgmtd "${daemons[@]}")
for daemon in "${daemons[@]}"; do
  help=$(frr "/usr/lib/frr/$daemon" --help 2>&1 || true)
  extra=()
  grep -q -- '--config_file' <<<"$help" && extra+=(-f /dev/null)
  case $daemon in
    zebra) extra+=(-s 90000000) ;;
    bfdd) grep -q -- '--bfdctl' <<<"$help" && extra+=(--bfdctl "$run/bfdd.sock") ;;
    bgpd) extra+=(-p 0) ;;
  esac
  ip netns exec "$ns" "${in_root[@]}" "/usr/lib/frr/$daemon" -F traditional -u frr -g frr -P 0 \
    -i "$run/$daemon.pid" --vty_socket "$run" -z "$run/zserv.api" \
    --log "file:$run/$daemon.log" "${extra[@]}" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$run/$daemon.vty" ] && break; sleep 0.05; done
  [ -S "$run/$daemon.vty" ] || { echo "frr-running-config: $daemon did not start" >&2; exit 1; }
done

vtysh=(frr vtysh --vty_socket "$run" --config_dir "$etc")
if ! "${vtysh[@]}" -b >"$dir/boot.log" 2>&1; then
  echo "frr-running-config: FRR rejected $1:" >&2
  grep -v -e '^Graceful restart configuration changed' -e 'Echo mode works correctly' "$dir/boot.log" >&2 || true
  exit 1
fi
"${vtysh[@]}" -c 'show running-config' \
  | sed -e '1,/^Current configuration:/d' \
  | sed -e '1{/^!$/d}' \
  | grep -v -E '^(frr version |hostname |end$)'
