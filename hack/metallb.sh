#!/usr/bin/env bash
# MetalLB for the side-by-side benchmarks and the switch scenario, built from the Go module
# pinned in hack/tools/metallb: its controller and speaker binaries, and its Helm chart as
# that module's archive holds it (with the CRDs subchart). Nothing from MetalLB enters
# ferrolb; the lab runs these beside it.
#
#   hack/metallb.sh build    build once per machine and print the directory holding bin/
#                            (controller, speaker) and chart/ (MetalLB's chart)
#   hack/metallb.sh version  print the pinned MetalLB version
#
# Cached per pinned set (the version and a digest of the module's go.mod and go.sum) in
# ~/.cache/ferrolb/metallb/ (FERROLB_CACHE overrides the ~/.cache/ferrolb part), under a lock.
set -euo pipefail
source "$(dirname "$0")/cache.sh"
cd "$(dirname "$0")/tools/metallb"

module=go.universe.tf/metallb
version="$(awk -v m="$module" '$1 == m && $2 ~ /^v/ { print $2; exit }' go.mod)"
cache="${FERROLB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}/metallb"

case "${1:-}" in
  version)
    echo "$version"
    exit 0
    ;;
  build) ;;
  *)
    echo "usage: hack/metallb.sh build | version" >&2
    exit 2
    ;;
esac

begin_go_build "$cache" "$version"
echo "metallb: building MetalLB $version (first run on this machine: about 3 minutes)" >&2
go build -trimpath -ldflags "-s -w" -o "$out/bin/" \
  "$module/controller" "$module/speaker"
source="$(go list -m -f '{{.Dir}}' "$module")"
cp -r "$source/charts/metallb" "$out/chart"
chmod -R u+w "$out/chart"
touch "$out/.complete"
echo "metallb: built in $((SECONDS - started)) s" >&2
echo "$out"
