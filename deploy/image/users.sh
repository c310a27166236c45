#!/bin/sh
# FRR's users with fixed IDs, made before the frr package would pick some: the chart runs the
# frr container as frr (101) and adds the speaker to frrvty (102), which may open FRR's vty
# sockets and its configuration directory. Written straight into the account files of the root
# file system named by $1 (default /), so it runs before any tool is installed: by
# deploy/Dockerfile and by hack/rootfs.sh, which build the image from this one definition.
set -eu
root="${1:-/}"
add() {
  file="$root/etc/$1"
  name="${2%%:*}"
  [ -e "$file" ] || return 0
  grep -q "^$name:" "$file" || echo "$2" >>"$file"
}
add group "frr:x:101:"
add group "frrvty:x:102:frr"
add gshadow "frr:!::"
add gshadow "frrvty:!::frr"
add passwd "frr:x:101:101:FRR:/var/run/frr:/usr/sbin/nologin"
add shadow "frr:!:1::::::"
