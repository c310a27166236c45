#!/usr/bin/env bash
# A real Kubernetes API server for the lab and the e2e tests, from Debian's archive only.
#
#   hack/apiserver.sh build          build (once per machine) and print the binary directory
#   hack/apiserver.sh start DIR      start etcd + kube-apiserver on loopback; DIR/kubeconfig
#   hack/apiserver.sh stop DIR       stop what `start DIR` started
#
# `build` compiles kube-apiserver from Debian's `kubernetes` source package (Kubernetes 1.20,
# with vendor/) using Debian's Go 1.19, after replacing two vendored libraries with Debian's
# newer copies (reflect2 < 1.0.2 crashes under Go >= 1.18 on the first custom resource).
# etcd comes from Debian's etcd-server. Nothing is installed system-wide: packages are
# unpacked into the cache, and a private apt source list (the system's sources plus their
# deb-src twins, with its own lists directory) is used to fetch them. The binaries are cached outside the work tree, keyed by the
# source version, in ${FERROLB_CACHE:-~/.cache/ferrolb}/apiserver/<version>/.
#
# The e2e harness starts the same binaries itself inside a lab network namespace; `start` is
# for running the controller by hand against a server on 127.0.0.1.
set -euo pipefail

cache_root="${FERROLB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}/apiserver"
work="$cache_root/work"

log() { echo "apiserver: $*" >&2; }

apt_private() {
  # apt-get (or apt-cache, when the first argument is `cache`) with a private state
  # directory and deb-src twins of the system's sources.
  local tool=apt-get
  if [ "$1" = cache ]; then tool=apt-cache; shift; fi
  local state="$work/apt"
  mkdir -p "$state/lists/partial" "$state/archives/partial"
  if [ ! -s "$state/sources.sources" ]; then
    sed 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources >"$state/sources.sources"
  fi
  "$tool" -q \
    -o Dir::Etc::SourceList=/dev/null \
    -o Dir::Etc::SourceParts="$state" \
    -o Dir::State::Lists="$state/lists" \
    -o Dir::Cache::Archives="$state/archives" \
    -o Debug::NoLocking=1 \
    -o APT::Sandbox::User=root \
    "$@"
}

source_version() {
  # The kubernetes source package version the archive offers.
  apt_private cache showsrc kubernetes 2>/dev/null | awk '/^Version:/ { print $2 }' | sort -V | tail -1
}

build() {
  mkdir -p "$work"
  # One build at a time per machine; a second caller waits and then finds the binaries.
  exec 9>"$cache_root/.lock"
  flock 9
  if [ ! -d "$work/apt/lists" ] || [ -z "$(ls "$work/apt/lists" 2>/dev/null | grep -v partial)" ]; then
    apt_private update >/dev/null
  fi
  local version
  version=$(source_version)
  if [ -z "$version" ]; then
    log "the archive offers no kubernetes source package"
    exit 1
  fi
  local out="$cache_root/$version"
  if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
    echo "$out"
    return
  fi
  log "building kube-apiserver $version (first run on this machine: about 5 minutes)"

  # Toolchain and etcd, unpacked (not installed) into the work directory.
  local root="$work/root"
  mkdir -p "$root" "$work/debs"
  (
    cd "$work/debs"
    apt_private download golang-1.19-go golang-1.19-src etcd-server etcd-client rsync \
      golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev >/dev/null
    for deb in ./*.deb; do dpkg -x "$deb" "$root"; done
  )

  # Source with vendor/, fresh each build.
  local src="$work/src"
  rm -rf "$src"
  mkdir -p "$src"
  (cd "$src" && apt_private source --download-only "kubernetes=$version" >/dev/null)
  local tarball
  tarball=$(ls "$src"/kubernetes_*.orig.tar.gz | head -1)
  tar -xzf "$tarball" -C "$src"
  local tree
  tree=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)

  # Vendored libraries too old for Go 1.19, replaced by Debian's packaged versions.
  local gocode="$root/usr/share/gocode/src/github.com"
  for lib in modern-go/reflect2 json-iterator/go; do
    rm -rf "$tree/vendor/github.com/$lib"
    cp -r "$gocode/$lib" "$tree/vendor/github.com/$lib"
    rm -rf "$tree/vendor/github.com/$lib/go.mod" "$tree/vendor/github.com/$lib/test" \
      "$tree/vendor/github.com/$lib/tests"
  done

  local goroot="$root/usr/lib/go-1.19"
  (
    cd "$tree"
    export GOROOT="$goroot" GOPROXY=off CGO_ENABLED=0 HOME="$work/home"
    export PATH="$goroot/bin:$root/usr/bin:$PATH"
    mkdir -p "$HOME"
    make WHAT=cmd/kube-apiserver KUBE_BUILD_PLATFORMS=linux/amd64 GOLDFLAGS="-s -w" >"$work/build.log" 2>&1 \
      || { tail -40 "$work/build.log" >&2; exit 1; }
  )
  mkdir -p "$out"
  cp "$tree/_output/bin/kube-apiserver" "$out/kube-apiserver.tmp"
  cp "$root/usr/bin/etcd" "$out/etcd.tmp"
  cp "$root/usr/bin/etcdctl" "$out/etcdctl" 2>/dev/null || true
  mv "$out/etcd.tmp" "$out/etcd"
  mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
  # The tree and Go cache are about 3 GB; only the binaries are kept.
  rm -rf "$src" "$work/home"
  log "built: $("$out/kube-apiserver" --version)"
  echo "$out"
}

start() {
  local dir="$1" bin
  bin=$(build)
  mkdir -p "$dir/etcd" "$dir/pki"
  dir=$(cd "$dir" && pwd)
  openssl genrsa -out "$dir/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/pki/sa.key" -pubout -out "$dir/pki/sa.pub" 2>/dev/null
  local token
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$token,admin,admin,system:masters" >"$dir/pki/tokens.csv"
  "$bin/etcd" --data-dir "$dir/etcd" --unsafe-no-fsync \
    --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
    --listen-peer-urls http://127.0.0.1:23800 >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  "$bin/kube-apiserver" --etcd-servers=http://127.0.0.1:23790 \
    --advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port=16443 \
    --cert-dir="$dir/pki" --service-cluster-ip-range=10.96.0.0/16 \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$dir/pki/sa.pub" \
    --service-account-signing-key-file="$dir/pki/sa.key" \
    --token-auth-file="$dir/pki/tokens.csv" --authorization-mode=RBAC \
    --disable-admission-plugins=ServiceAccount --allow-privileged=true >"$dir/apiserver.log" 2>&1 &
  echo $! >"$dir/apiserver.pid"
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://127.0.0.1:16443
    certificate-authority: $dir/pki/apiserver.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: lab
  context: {cluster: lab, user: admin}
current-context: lab
EOF
  for _ in $(seq 1 120); do
    if KUBECONFIG="$dir/kubeconfig" kubectl get --raw /readyz >/dev/null 2>&1; then
      log "ready: KUBECONFIG=$dir/kubeconfig"
      return
    fi
    sleep 0.25
  done
  log "not ready after 30 s; see $dir/apiserver.log"
  stop "$dir"
  exit 1
}

stop() {
  local dir="$1" name pid
  for name in apiserver etcd; do
    if [ -s "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$name.pid"
    fi
  done
}

case "${1:-}" in
  build) build ;;
  start) start "${2:?usage: hack/apiserver.sh start DIR}" ;;
  stop) stop "${2:?usage: hack/apiserver.sh stop DIR}" ;;
  *)
    echo "usage: hack/apiserver.sh build | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
