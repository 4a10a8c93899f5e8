#!/usr/bin/env bash
# Builds the release archives of kubectl-devenv for krew and writes their
# sha256 (and the version) into krew/devenv.yaml.
#
#   krew/release.sh                 build what this machine can, update the manifest
#   krew/release.sh --print-names   print "os arch target archive" per platform, build nothing
#
# Archives: dist/kubectl-devenv_<version>_<os>_<arch>.tar.gz (.zip for
# windows), holding the binary and LICENSE at the top level.
#
# Cross targets need their Rust standard library (rustup target add ...) and
# a linker; neither can be downloaded on an offline machine. Platforms that
# cannot be built are listed at the end and keep their previous sha256: the
# manifest is then NOT publishable until they are built elsewhere.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
manifest="${MANIFEST:-$root/krew/devenv.yaml}"
dist="${DIST:-$root/dist}"
version="${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)}"
[ -n "$version" ] || { echo "release.sh: cannot read the version from Cargo.toml" >&2; exit 1; }

# os arch rust-target
platforms=(
  "linux amd64 x86_64-unknown-linux-gnu"
  "linux arm64 aarch64-unknown-linux-gnu"
  "darwin amd64 x86_64-apple-darwin"
  "darwin arm64 aarch64-apple-darwin"
  "windows amd64 x86_64-pc-windows-gnu"
  "windows arm64 aarch64-pc-windows-gnullvm"
)

archive_name() { # os arch
  local ext="tar.gz"
  [ "$1" = windows ] && ext="zip"
  echo "kubectl-devenv_${version}_${1}_${2}.${ext}"
}

if [ "${1:-}" = "--print-names" ]; then
  for p in "${platforms[@]}"; do
    read -r os arch target <<<"$p"
    echo "$os $arch $target $(archive_name "$os" "$arch")"
  done
  exit 0
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
installed="$(rustup target list --installed 2>/dev/null || echo "$host")"
mkdir -p "$dist"
built=()
skipped=()

license="$root/LICENSE"
if [ ! -f "$license" ]; then
  # The workspace is Apache-2.0 (Cargo.toml); ship its name if the text is absent.
  license="$(mktemp)"
  echo "Licensed under the Apache License, Version 2.0: https://www.apache.org/licenses/LICENSE-2.0" >"$license"
fi

for p in "${platforms[@]}"; do
  read -r os arch target <<<"$p"
  name="$(archive_name "$os" "$arch")"
  if [ "$target" != "$host" ] && ! grep -qx "$target" <<<"$installed"; then
    skipped+=("$os/$arch ($target): Rust target not installed (rustup target add $target)")
    continue
  fi
  echo "building $target ..." >&2
  if ! cargo build --release --locked -p kubectl-devenv --target "$target" --manifest-path "$root/Cargo.toml" >&2; then
    skipped+=("$os/$arch ($target): build failed (missing linker or SDK?)")
    continue
  fi
  exe="kubectl-devenv"
  [ "$os" = windows ] && exe="kubectl-devenv.exe"
  stage="$(mktemp -d)"
  cp "$root/target/$target/release/$exe" "$stage/$exe"
  cp "$license" "$stage/LICENSE"
  chmod 0755 "$stage/$exe"
  chmod 0644 "$stage/LICENSE"
  rm -f "$dist/$name"
  if [ "$os" = windows ]; then
    (cd "$stage" && zip -q "$dist/$name" "$exe" LICENSE)
  else
    # Reproducible: fixed owner, order and mtime.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' \
      -C "$stage" -czf "$dist/$name" "$exe" LICENSE
  fi
  rm -rf "$stage"
  sum="$(sha256sum "$dist/$name" | cut -d' ' -f1)"
  # The sha256 line right after this archive's uri line.
  awk -v name="$name" -v sum="$sum" '
    index($0, "uri:") && index($0, "/" name) { print; want = 1; next }
    want && $1 == "sha256:" { sub(/sha256:.*/, "sha256: \"" sum "\""); want = 0 }
    { print }
  ' "$manifest" >"$manifest.tmp" && mv "$manifest.tmp" "$manifest"
  built+=("$dist/$name  $sum")
done

# Version in spec.version and in every uri.
sed -i -E \
  -e "s|^(  version: )v[0-9][^ ]*|\1v$version|" \
  -e "s|/download/v[^/]+/kubectl-devenv_[^_]+_|/download/v$version/kubectl-devenv_${version}_|" \
  "$manifest"

echo "built:"
for b in "${built[@]}"; do echo "  $b"; done
if [ "${#skipped[@]}" -gt 0 ]; then
  echo "NOT built (their sha256 in krew/devenv.yaml is stale; build them on a machine that can):"
  for s in "${skipped[@]}"; do echo "  $s"; done
fi
