#!/usr/bin/env bash
# The Debian 13 (trixie) root file system that FRR 10 runs from: the tests, the lab and the
# benchmarks run its daemons chrooted into it inside their network namespaces, and the lab's
# ferrolb image is made of it. It follows the image's definition, which deploy/Dockerfile reads
# too: FRR's users with fixed IDs (deploy/image/users.sh) and the packages listed in
# deploy/image/packages.
#
#   hack/rootfs.sh build     build once per machine and print the root file system's path
#   hack/rootfs.sh image     the same root file system as a tar archive (the image's base
#                            layer, without the marker the tests use); print its path
#   hack/rootfs.sh packages  print the packages it holds beyond Debian's minimal base
#
# It is made by Debian 12's mmdebstrap from the archive this machine's apt already uses (the
# URIs of its Debian sources, the suite swapped for trixie); nothing is added to the system's
# apt sources. The result is cached per definition (a digest of this script) in
# ~/.cache/ferrolb/rootfs/ (FERROLB_CACHE overrides the ~/.cache/ferrolb part), under a lock.
set -euo pipefail
source "$(dirname "$0")/cache.sh"

suite=trixie
definition="$(cd "$(dirname "$0")/../deploy/image" && pwd)"
read -r -a packages <<<"$(tr '\n' ' ' <"$definition/packages")"
cache="${FERROLB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}/rootfs"

case "${1:-}" in
  packages)
    echo "${packages[@]}"
    exit 0
    ;;
  build | image) ;;
  *)
    echo "usage: hack/rootfs.sh build | image | packages" >&2
    exit 2
    ;;
esac

digest="$(cat "$0" "$definition/packages" "$definition/users.sh" | sha256sum | cut -c1-12)"
out="$cache/$suite-$digest"

# The image's base layer: the root file system as it is, less the tests' marker.
if [ "$1" = image ]; then
  root="$("$0" build)"
  archive="$root.image.tar"
  if [ ! -f "$archive" ]; then
    tar --numeric-owner --xattrs --exclude=./.complete --exclude=./.frr-version \
      --exclude=./etc/ferrolb-rootfs -C "$root" -cf "$archive.tmp" .
    mv "$archive.tmp" "$archive"
  fi
  echo "$archive"
  exit 0
fi

cached "$out" "$out"

# The archive's URIs, read from the system's apt sources (deb822 or one-line form): the first
# Debian archive and the first security archive.
sources() {
  {
    sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n'
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | sed 's:/*$::' | awk 'NF' | awk '!seen[$0]++'
}
archive="$(sources | grep -E '/debian$' | head -n1 || true)"
security="$(sources | grep -E '/debian-security$' | head -n1 || true)"
if [ -z "$archive" ]; then
  echo "rootfs: no Debian archive found in this machine's apt sources" >&2
  exit 1
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "rootfs: mmdebstrap is needed (hack/deps.sh installs it)" >&2
  exit 1
fi

lock_cache "$cache" "$out" "$out"

echo "rootfs: building Debian $suite with ${packages[*]} (first run on this machine:" \
  "about a minute)" >&2
rm -rf "$out" "$out.tmp"
mirrors=("deb $archive $suite main" "deb $archive $suite-updates main")
[ -z "$security" ] || mirrors+=("deb $security $suite-security main")
started=$SECONDS
mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
  --essential-hook="sh '$definition/users.sh' \"\$1\"" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$suite" "$out.tmp" "${mirrors[@]}" >&2
# How a program tells it runs inside (see the vtysh wrapper of e2e/src/frr.rs).
touch "$out.tmp/etc/ferrolb-rootfs"
mv "$out.tmp" "$out"
chroot "$out" dpkg-query -W -f='${Package} ${Version}\n' frr >"$out/.frr-version"
touch "$out/.complete"
echo "rootfs: built in $((SECONDS - started)) s: $(cat "$out/.frr-version")" >&2
echo "$out"
