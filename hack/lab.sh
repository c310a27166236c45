#!/usr/bin/env bash
# The local lab: a whole ferrolb cluster on this machine, in network namespaces. Needs root.
#
#   hack/lab.sh up        build, start the lab on real nodes (kubelets, containerd, kube-proxy),
#                         helm install the chart, apply examples/lab/lab.yaml and demo backends,
#                         print what it does and which pods answer the client
#   hack/lab.sh up --processes
#                         the same with ferrolb's controller and speakers as processes beside
#                         FRR instances of the lab's own (no kubelet, no pod, no chart)
#   hack/lab.sh status    Service IPs, the router's routes to them, BFD sessions
#   hack/lab.sh kubectl … kubectl against the lab's API server (it lives in the lab network)
#   hack/lab.sh down      stop everything the lab started and delete its namespaces
#
# Installs what it needs (hack/deps.sh) and uses the pinned Kubernetes and containerd built by
# hack/k8s.sh (about 10 minutes, once per machine) and the ferrolb image's and the nodes' FRR
# 10.3 from hack/rootfs.sh (about a minute, once per machine); the routers run this machine's
# FRR 8.4. State is in /run/ferrolb-lab (FERROLB_LAB_DIR overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "lab: needs root (it creates network namespaces)" >&2
  exit 1
fi
dir="${FERROLB_LAB_DIR:-/run/ferrolb-lab}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

case "${1:-}" in
  up)
    hack/deps.sh
    cargo build --release -q -p ferrolb -p ferrolb-e2e
    ;;
  down | status | kubectl) ;;
  *)
    echo "usage: hack/lab.sh up | status | kubectl ARGS... | down" >&2
    exit 2
    ;;
esac
FERROLB_K8S_DIR="$(hack/k8s.sh build)"
FERROLB_FRR_ROOT="$(hack/rootfs.sh build)"
export FERROLB_K8S_DIR FERROLB_FRR_ROOT
if [ "${1:-}" = up ]; then
  FERROLB_CONTAINERD_DIR="$(hack/k8s.sh build-node)"
  FERROLB_IMAGE_ROOT="$(hack/rootfs.sh image)"
  export FERROLB_CONTAINERD_DIR FERROLB_IMAGE_ROOT
fi
export FERROLB_BIN="$CARGO_TARGET_DIR/release/ferrolb"
exec "$CARGO_TARGET_DIR/release/ferrolb-lab" --dir "$dir" "$@"
