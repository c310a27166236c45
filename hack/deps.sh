#!/usr/bin/env bash
# Installs what the tests, the lab and the benchmarks need on a fresh Debian machine (as root),
# and does nothing when it is all there. hack/test.sh and hack/lab.sh call it; .ci/run through
# hack/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done

need=()
# FRR from Debian: golden frr.conf files are checked by vtysh and loaded into real FRR daemons;
# the speaker falls back to frr-reload.py (frr-pythontools) when FRR's state is unknown.
[ -x /usr/lib/frr/bgpd ] || need+=(frr)
[ -x /usr/lib/frr/frr-reload.py ] || need+=(frr-pythontools)
# FRR 10.3 runs from a Debian 13 root file system that mmdebstrap makes (hack/rootfs.sh).
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
# iproute2 for the network namespaces those daemons run in; flock for the build caches' locks,
# unshare for the mount namespaces FRR 10.3 runs in (hack/in-root.sh).
command -v ip >/dev/null 2>&1 || need+=(iproute2)
{ command -v flock && command -v unshare; } >/dev/null 2>&1 || need+=(util-linux)
# openssl makes the control plane's service-account key; curl sends the webhook test's
# AdmissionReviews.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
# The Helm chart is checked with Helm's engine from PyPI, in a venv (hack/chart.sh).
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3 python3-venv)
# The Argo CD health checks shipped in deploy/argocd are Lua.
command -v lua5.4 >/dev/null 2>&1 || need+=(lua5.4)
# A router that is not FRR: BIRD 2 peers with a node in e2e/tests/bird.rs.
command -v bird >/dev/null 2>&1 || need+=(bird2)
command -v gobgpd >/dev/null 2>&1 || need+=(gobgpd)
# The lab's client checks layer-2 answers the way a user would.
command -v arping >/dev/null 2>&1 || need+=(iputils-arping)
command -v ndisc6 >/dev/null 2>&1 || need+=(ndisc6)
# Real nodes: containerd (built by hack/k8s.sh build-node) runs containers with Debian's runc,
# pods are wired by Debian's CNI plugins (bridge, host-local, portmap), kube-proxy programs
# nftables, and the pause image is busybox's static binary.
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
