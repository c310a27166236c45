#!/usr/bin/env bash
# MetalLB for the side-by-side benchmarks and the switch scenario, built from the Go modules
# pinned in hack/tools/metallb: MetalLB's controller and speaker, the tools its FRR mode runs
# beside FRR (cp-tool, frr-metrics, frr-reloader.sh), frr-k8s (the daemon MetalLB's FRR-K8s
# mode hands its configuration to) with its own tools, and MetalLB's Helm chart as that
# module's archive holds it (with the CRDs and frr-k8s subcharts). Nothing from MetalLB enters
# ferrolb; the lab runs these beside it.
#
#   hack/metallb.sh build    build once per machine and print the directory holding bin/
#                            (controller, speaker, cp-tool, frr-metrics, frr-reloader.sh),
#                            frr-k8s/ (frr-k8s, statuscleaner, frr-metrics, frr-status,
#                            frr-reloader.sh) and
#                            chart/ (MetalLB's chart)
#   hack/metallb.sh version  print the pinned MetalLB version
#   hack/metallb.sh build-legacy
#                            build MetalLB v0.12.1 (hack/tools/metallb-legacy), the last
#                            release configured by its ConfigMap, once per machine and print
#                            the directory holding bin/ (controller, speaker), manifests/ (its
#                            metallb.yaml and namespace.yaml) and version
#
# Cached per pinned set (the version and a digest of the module's go.mod and go.sum) in
# ~/.cache/ferrolb/metallb/ (FERROLB_CACHE overrides the ~/.cache/ferrolb part), under a lock.
set -euo pipefail
source "$(dirname "$0")/cache.sh"

module=go.universe.tf/metallb
cache="${FERROLB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}/metallb"
# pinned DIR: the version of MetalLB the tools module in DIR requires.
pinned() {
  awk -v m="$module" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1/go.mod"
}

case "${1:-}" in
  version)
    pinned "$(dirname "$0")/tools/metallb"
    exit 0
    ;;
  build) ;;
  build-legacy)
    cd "$(dirname "$0")/tools/metallb-legacy"
    version="$(pinned .)"
    begin_go_build "$cache" "legacy-$version"
    echo "metallb: building MetalLB $version (first run on this machine: about a minute)" >&2
    go build -trimpath -ldflags "-s -w" -o "$out/bin/" "$module/controller" "$module/speaker"
    cp -r "$(go list -m -f '{{.Dir}}' "$module")/manifests" "$out/manifests"
    chmod -R u+w "$out/manifests"
    echo "$version" >"$out/version"
    touch "$out/.complete"
    echo "metallb: built in $((SECONDS - started)) s" >&2
    echo "$out"
    exit 0
    ;;
  *)
    echo "usage: hack/metallb.sh build | build-legacy | version" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")/tools/metallb"
version="$(pinned .)"

begin_go_build "$cache" "$version"
echo "metallb: building MetalLB $version (first run on this machine: about 3 minutes)" >&2
go build -trimpath -ldflags "-s -w" -o "$out/bin/" \
  "$module/controller" "$module/speaker" "$module/frr-tools/cp-tool"
go build -trimpath -ldflags "-s -w" -o "$out/bin/frr-metrics" "$module/frr-tools/metrics"
source="$(go list -m -f '{{.Dir}}' "$module")"
install -m 0755 "$source/frr-tools/reloader/frr-reloader.sh" "$out/bin/"
frrk8s=github.com/metallb/frr-k8s
mkdir -p "$out/frr-k8s"
# The daemon, and the webhook server that also clears the status of nodes gone.
go build -trimpath -ldflags "-s -w" -o "$out/frr-k8s/frr-k8s" "$frrk8s/cmd/frr-k8s-controller"
go build -trimpath -ldflags "-s -w" -o "$out/frr-k8s/statuscleaner" "$frrk8s/cmd/statuscleaner"
go build -trimpath -ldflags "-s -w" -o "$out/frr-k8s/frr-metrics" "$frrk8s/cmd/metrics"
go build -trimpath -ldflags "-s -w" -o "$out/frr-k8s/frr-status" "$frrk8s/cmd/status"
install -m 0755 "$(go list -m -f '{{.Dir}}' "$frrk8s")/cmd/reloader/frr-reloader.sh" \
  "$out/frr-k8s/"
cp -r "$source/charts/metallb" "$out/chart"
chmod -R u+w "$out/chart"
touch "$out/.complete"
echo "metallb: built in $((SECONDS - started)) s" >&2
echo "$out"
