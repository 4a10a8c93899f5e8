#!/usr/bin/env bash
# Prints the directory holding the CSI snapshot CRDs (snapshot.storage.k8s.io/v1
# VolumeSnapshot, VolumeSnapshotContent, VolumeSnapshotClass) of external-snapshotter v8:
# its client module's config/crd, fetched through the Go module proxy into the module
# cache (outside the repository, kept by version). The e2e suites apply them to the test
# cluster, so the VolumeSnapshots kubectl devenv makes are checked by the real schema.
set -euo pipefail
version=${DEVENV_SNAPSHOTTER_VERSION:-v8.7.0}
module=github.com/kubernetes-csi/external-snapshotter/client/v8
json=$(cd "${TMPDIR:-/tmp}" && GOFLAGS= GO111MODULE=on go mod download -json "$module@$version")
dir=$(printf '%s' "$json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
test -f "$dir/config/crd/snapshot.storage.k8s.io_volumesnapshots.yaml" || {
  echo "snapshot-crds: $module@$version has no config/crd/snapshot.storage.k8s.io_volumesnapshots.yaml" >&2
  exit 1
}
echo "$dir/config/crd"
