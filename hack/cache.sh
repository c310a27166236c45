# Sourced by the build scripts (k8s.sh, rootfs.sh, metallb.sh): a build lives in its own
# directory under the cache, finished once it holds a `.complete` marker, and is made under the
# cache's lock so two runs never build it at once.

# cached DIR PRINT: when DIR holds a finished build, prints PRINT and ends the script.
cached() {
  if [ -f "$1/.complete" ]; then
    echo "$2"
    exit 0
  fi
}

# lock_cache CACHE DIR PRINT: takes CACHE's lock (held until the script ends), then does as
# cached, for a build another run finished while this one waited.
lock_cache() {
  mkdir -p "$1"
  exec 9>"$1/.lock"
  flock 9
  cached "$2" "$3"
}

# begin_go_build CACHE NAME [SUBDIR]: the build of NAME from the go.mod and go.sum of the current
# directory lives in $out = CACHE/NAME-<their digest>. When it is finished, prints $out (or
# $out/SUBDIR) and ends the script; otherwise checks that go is there, takes the cache's lock and
# leaves an empty $out/bin to build into, with $started set and Go's build settings exported.
begin_go_build() {
  local print
  out="$1/$2-$(cat go.mod go.sum | sha256sum | cut -c1-12)"
  print="$out${3:+/$3}"
  cached "$out" "$print"
  if ! command -v go >/dev/null 2>&1; then
    echo "$(basename "$0" .sh): the go command is needed (Go $(awk '$1 == "go" { print $2 }' go.mod) or newer)" >&2
    exit 1
  fi
  lock_cache "$1" "$out" "$print"
  rm -rf "$out"
  mkdir -p "$out/bin"
  started=$SECONDS
  export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
}
