#!/usr/bin/env bash
# Builds the real Kubernetes and etcd binaries the end-to-end suites run against,
# from the Go module proxy, and caches them outside the repository keyed by version.
#
#   tests/cluster/build.sh            # build (or reuse) and print the bin directory
#
# Environment: DEVENV_K8S_CACHE (default ~/.cache/devenv-k8s). Cold build on
# 2 cores takes tens of minutes; a warm cache returns at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=v1.33.13
ETCD_VERSION=v3.5.35
cache_root=${DEVENV_K8S_CACHE:-$HOME/.cache/devenv-k8s}
bin="$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
# metrics-server serves metrics.k8s.io for the lifecycle controller's CPU rule (node suite).
METRICS_SERVER_VERSION=v0.8.0
# kwok simulates nodes and their pods for the scale run (tests/tests/scale.rs, bench/scale.sh).
KWOK_VERSION=v0.7.0
k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet)

complete() {
  for b in "${k8s_bins[@]}" etcd metrics-server kwok; do [ -x "$bin/$b" ] || return 1; done
}
if complete; then echo "$bin"; exit 0; fi
mkdir -p "$bin"
tmp="$bin.tmp.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

major=${K8S_VERSION#v}; major=${major%%.*}
minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

export GOFLAGS="-mod=mod"
# The compile cache of a Kubernetes build is several GB and worth nothing once the
# binaries are cached: keep it in the temporary directory, removed on exit.
export GOCACHE="$tmp/go-build"
if [ ! -x "$bin/etcd" ]; then
  echo "building etcd $ETCD_VERSION into $bin" >&2
  (cd "$here/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  mv "$tmp/etcd" "$bin/etcd"
fi
for b in "${k8s_bins[@]}"; do
  [ -x "$bin/$b" ] && continue
  echo "building $b $K8S_VERSION into $bin" >&2
  # Static binaries: the kubelet needs no cgo for what the node suite uses.
  (cd "$here/k8s" && CGO_ENABLED=0 go build -trimpath -tags selinux,notest,grpcnotrace \
      -ldflags "$ldflags" -o "$tmp/$b" "k8s.io/kubernetes/cmd/$b")
  mv "$tmp/$b" "$bin/$b"
done
if [ ! -x "$bin/metrics-server" ]; then
  echo "building metrics-server $METRICS_SERVER_VERSION into $bin" >&2
  # Its own module (no replace directives), so `go install module@version` works.
  (cd "$tmp" && GOFLAGS= CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "-s -w" \
      "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION")
  mv "$tmp/metrics-server" "$bin/metrics-server"
fi
if [ ! -x "$bin/kwok" ]; then
  echo "building kwok $KWOK_VERSION into $bin" >&2
  # Its own module without replace directives, like metrics-server.
  (cd "$tmp" && GOFLAGS= CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "-s -w" \
      "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
  mv "$tmp/kwok" "$bin/kwok"
fi
echo "$bin"
