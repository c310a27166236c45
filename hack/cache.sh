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
