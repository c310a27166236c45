#!/usr/bin/env bash
# Kubernetes for the tests, the lab and the benchmarks, built from the Go modules pinned in
# hack/tools: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
# kubectl, etcd and helm; and a node's container runtime from hack/tools/node: containerd,
# containerd-shim-runc-v2 and ctr.
#
#   hack/k8s.sh build       build Kubernetes once per machine and print the binary directory
#   hack/k8s.sh build-node  the same for containerd
#   hack/k8s.sh version     print the pinned Kubernetes version (v1.37.2)
#
# The binaries are cached per pinned set (the version and a digest of the module's go.mod and
# go.sum) in ~/.cache/ferrolb/k8s/ (FERROLB_CACHE overrides the ~/.cache/ferrolb part); a lock
# keeps two builds from racing. Build times go to stderr.
set -euo pipefail
source "$(dirname "$0")/cache.sh"
cd "$(dirname "$0")/tools"

cache="${FERROLB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}/k8s"

module_version() {
  awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' go.mod
}

k8s_version="$(module_version k8s.io/kubernetes)"
helm_version="$(module_version helm.sh/helm/v4)"
etcd_version="$(module_version go.etcd.io/etcd/server/v3)"

containerd_version="$(cd node && module_version github.com/containerd/containerd/v2)"

case "${1:-}" in
  version)
    echo "$k8s_version"
    exit 0
    ;;
  build)
    name="$k8s_version"
    ;;
  build-node)
    cd node
    name="containerd-$containerd_version"
    ;;
  *)
    echo "usage: hack/k8s.sh build | build-node | version" >&2
    exit 2
    ;;
esac

begin_go_build "$cache" "$name" bin

if [ "$1" = build-node ]; then
  echo "k8s: building containerd $containerd_version (first run on this machine: about a minute)" >&2
  pkg=github.com/containerd/containerd/v2/version
  go build -trimpath -ldflags "-s -w -X $pkg.Version=$containerd_version" -o "$out/bin/" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr
  "$out/bin/containerd" --version >&2
  touch "$out/.complete"
  echo "k8s: containerd built in $((SECONDS - started)) s" >&2
  echo "$out/bin"
  exit 0
fi

echo "k8s: building Kubernetes $k8s_version, etcd $etcd_version and Helm $helm_version" \
  "(first run on this machine: about 10 minutes on 2 cores)" >&2

minor="${k8s_version#v1.}"
minor="${minor%%.*}"
pkg=k8s.io/component-base/version
k8s_ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"

go build -trimpath -ldflags "$k8s_ldflags" -o "$out/bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kubectl
echo "k8s: Kubernetes built in $((SECONDS - started)) s" >&2

step=$SECONDS
go build -trimpath -ldflags "-s -w" -o "$out/bin/etcd" go.etcd.io/etcd/server/v3
echo "k8s: etcd built in $((SECONDS - step)) s" >&2

step=$SECONDS
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" \
  -o "$out/bin/helm" helm.sh/helm/v4/cmd/helm
echo "k8s: helm built in $((SECONDS - step)) s" >&2

"$out/bin/kube-apiserver" --version >&2
touch "$out/.complete"
echo "k8s: all built in $((SECONDS - started)) s" >&2
echo "$out/bin"
