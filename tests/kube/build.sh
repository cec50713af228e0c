#!/usr/bin/env bash
# Build (or reuse) the real Kubernetes control plane of the cluster test tier, and KEDA.
#
#   tests/kube/build.sh [plane|keda|all]      (default: all)
#
# Binaries go to $GRIDSHIFT_KUBE_CACHE (default ~/.cache/gridshift-kube)/<module>-<hash of go.mod
# and go.sum>/bin, so a change to a module's go.mod/go.sum rebuilds it and nothing else does. Go's
# module and build caches live under ~/.cache too (GOMODCACHE, GOCACHE), so a warm rebuild takes
# seconds. Only the Go module proxy is needed. Prints the bin directory of each module built.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${GRIDSHIFT_KUBE_CACHE:-$HOME/.cache/gridshift-kube}"
export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$HOME/.cache/go-mod}"
export GOCACHE="${GOCACHE_OVERRIDE:-$HOME/.cache/go-build}"
export GOFLAGS="-mod=mod -buildvcs=false -trimpath"
export CGO_ENABLED=0
export GOTOOLCHAIN=local

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: no 'go' on PATH (Go 1.26 needed to build the test control plane)" >&2
  exit 1
fi

# The directory a module's binaries go to: keyed by the hash of its go.mod and go.sum.
bin_dir() {
  local module="$1" key
  key="$(cat "$here/$module/go.mod" "$here/$module/go.sum" | sha256sum | cut -c1-16)"
  echo "$cache/$module-$key/bin"
}

# build MODULE BINARY=PACKAGE...: builds each package into the module's bin directory, unless a
# complete earlier build (marked by .complete) is there.
build() {
  local module="$1"; shift
  local out; out="$(bin_dir "$module")"
  if [ -f "$out/.complete" ]; then
    echo "$module: reusing $out" >&2
    echo "$out"
    return
  fi
  mkdir -p "$out"
  local start=$SECONDS spec
  for spec in "$@"; do
    echo "$module: building ${spec%%=*} (${spec#*=})" >&2
    (cd "$here/$module" && nice go build -ldflags "-s -w" -o "$out/${spec%%=*}" "${spec#*=}")
  done
  touch "$out/.complete"
  echo "$module: built in $((SECONDS - start)) s into $out" >&2
  echo "$out"
}

what="${1:-all}"
case "$what" in
  plane|all)
    build plane \
      etcd=./etcd \
      kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
      kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
      kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
      kubectl=k8s.io/kubernetes/cmd/kubectl
    ;;&
  keda|all)
    if [ -d "$here/keda" ]; then
      build keda \
        keda-operator=github.com/kedacore/keda/v2/cmd/operator \
        keda-adapter=github.com/kedacore/keda/v2/cmd/adapter
    fi
    ;;
  plane) ;;
  keda) ;;
  *) echo "usage: $0 [plane|keda|all]" >&2; exit 2 ;;
esac
