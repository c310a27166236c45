#!/usr/bin/env bash
# The local lab: a whole ferrolb cluster on this machine, in network namespaces. Needs root.
#
#   hack/lab.sh up        build, start the lab, apply examples/lab/lab.yaml, print what it does
#   hack/lab.sh status    Service IPs, the router's routes to them, BFD sessions
#   hack/lab.sh kubectl … kubectl against the lab's API server (it lives in the lab network)
#   hack/lab.sh down      stop everything the lab started and delete its namespaces
#
# Needs Debian's frr, kubectl and openssl (installed here when missing), and a kube-apiserver
# built by hack/apiserver.sh (about 5 minutes, once per machine). State is in /run/ferrolb-lab
# (FERROLB_LAB_DIR overrides).
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
    need=()
    [ -x /usr/lib/frr/bgpd ] || need+=(frr)
    command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    if [ "${#need[@]}" -gt 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    cargo build --release -q -p ferrolb -p ferrolb-e2e
    FERROLB_APISERVER_DIR="$(hack/apiserver.sh build)"
    export FERROLB_APISERVER_DIR
    ;;
  down | status | kubectl) ;;
  *)
    echo "usage: hack/lab.sh up | status | kubectl ARGS... | down" >&2
    exit 2
    ;;
esac
export FERROLB_BIN="$CARGO_TARGET_DIR/release/ferrolb"
exec "$CARGO_TARGET_DIR/release/ferrolb-lab" --dir "$dir" "$@"
