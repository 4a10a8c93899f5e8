#!/usr/bin/env bash
# One release: the krew archives and manifest, and both images pushed to a registry.
#
#   ./release.sh REGISTRY [--tls-verify=false]
#     e.g. ./release.sh ghcr.io/devenv-io
#          ./release.sh 127.0.0.1:5000/devenv-io --tls-verify=false   (a plain-HTTP registry)
#
# 1. krew/release.sh: dist/kubectl-devenv_<version>_<os>_<arch>.{tar.gz,zip} (binary +
#    LICENSE) for every platform this machine can build, and dist/devenv.yaml with each
#    archive's sha256 (exit 1 if a platform is missing: the manifest is not publishable,
#    the images are still pushed; build the rest elsewhere, krew/release.sh --manifest).
# 2. images/build.sh push REGISTRY: REGISTRY/devenv-webhook:<version> and
#    REGISTRY/workspace:<version>, from the release binary (cargo build --release).
# 3. dist/images.env: the refs pushed and their digests.
#
# Needs root for the images (see images/README.md) and `skopeo login` for a registry
# that wants credentials.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
registry=${1:-}
[ -n "$registry" ] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
shift
dist=${DIST:-$root/dist}
target=${CARGO_TARGET_DIR:-$root/target}

manifest_rc=0
"$root/krew/release.sh" || manifest_rc=$?

(cd "$root" && cargo build --release --locked -p devenv-webhook)
out=$("$root/images/build.sh" push "$registry" --webhook-binary "$target/release/devenv-webhook" "$@" | tail -1)
mkdir -p "$dist"
# shellcheck disable=SC1091
. "$out/images.env"
{
  echo "REGISTRY=$registry"
  echo "WEBHOOK_IMAGE=${registry%/}/devenv-webhook:$VERSION"
  echo "WORKSPACE_IMAGE=${registry%/}/workspace:$VERSION"
  echo "WEBHOOK_DIGEST=$WEBHOOK_DIGEST"
  echo "WORKSPACE_DIGEST=$WORKSPACE_DIGEST"
} >"$dist/images.env"
echo "images: $dist/images.env"
cat "$dist/images.env"
exit "$manifest_rc"
