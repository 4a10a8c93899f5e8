#!/usr/bin/env bash
# Builds the release archives of kubectl-devenv for krew and writes the krew
# manifest to publish, dist/devenv.yaml, from the template krew/devenv.yaml.
#
#   krew/release.sh                 build what this machine can, then --manifest
#   krew/release.sh --manifest      write the manifest from the archives in dist/, build nothing
#   krew/release.sh --print-names   print "os arch target archive" per platform, build nothing
#   krew/release.sh --package OS ARCH BINARY
#                                   pack BINARY (built elsewhere) as OS/ARCH's archive in dist/
#
# Archives: dist/kubectl-devenv_<version>_<os>_<arch>.tar.gz (.zip for
# windows), holding the binary and LICENSE (the repository's Apache-2.0 text,
# which krew requires in every archive) at the top level, and nothing else.
#
# The manifest is the template with the version of Cargo.toml and, in place of
# each @SHA256_<os>_<arch>@, the sha256 of that platform's archive. The template
# in git is never changed. A platform without an archive keeps its placeholder
# (krew refuses it: it is not a sha256): the manifest is then NOT publishable,
# the missing platforms are listed, and the exit status is 1.
#
# Cross targets need their Rust standard library (rustup target add ...) and
# a linker; neither can be downloaded on an offline machine. Platforms that
# cannot be built are listed at the end; build them elsewhere into dist/ and
# run --manifest again.
#
# Environment: DIST (default dist/), TEMPLATE (default krew/devenv.yaml),
# OUT (default $DIST/devenv.yaml), VERSION (default Cargo.toml's).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
template="${TEMPLATE:-$root/krew/devenv.yaml}"
dist="${DIST:-$root/dist}"
out="${OUT:-$dist/devenv.yaml}"
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

# The manifest from the template and the archives in $dist; 1 when one is missing.
write_manifest() {
  local missing=() text os arch target name sum placeholder
  text="$(cat "$template")"
  for p in "${platforms[@]}"; do
    read -r os arch target <<<"$p"
    name="$(archive_name "$os" "$arch")"
    placeholder="@SHA256_${os}_${arch}@"
    grep -qF "\"$placeholder\"" <<<"$text" || {
      echo "release.sh: $template has no placeholder $placeholder" >&2
      exit 1
    }
    if [ -f "$dist/$name" ]; then
      sum="$(sha256sum "$dist/$name" | cut -d' ' -f1)"
      text="${text//"$placeholder"/"$sum"}"
    else
      missing+=("$os/$arch ($dist/$name)")
    fi
  done
  mkdir -p "$(dirname "$out")"
  {
    echo "# krew plugin manifest of kubectl-devenv v$version, written by krew/release.sh"
    echo "# from the template krew/devenv.yaml; publish it, do not edit it."
    # The template's leading comment (about its placeholders) is not repeated;
    # the version goes in spec.version and in every uri.
    sed -E \
      -e '1,/^[^#]/{/^#/d}' \
      -e "s|^(  version: )v[0-9][^ ]*|\1v$version|" \
      -e "s|/download/v[^/]+/kubectl-devenv_[^_]+_|/download/v$version/kubectl-devenv_${version}_|" \
      <<<"$text"
  } >"$out"
  echo "manifest: $out"
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "NOT publishable: no archive for (their sha256 is still a placeholder):" >&2
    for m in "${missing[@]}"; do echo "  $m" >&2; done
    return 1
  fi
}

license="$root/LICENSE"
# package OS ARCH BINARY: the archive of one platform in $dist, from BINARY and LICENSE
package() {
  local os=$1 arch=$2 bin=$3 name exe stage
  [ -f "$license" ] || { echo "release.sh: no $license: krew needs the licence in every archive" >&2; exit 1; }
  grep -q 'Apache License' "$license" && grep -q 'Version 2.0' "$license" \
    || { echo "release.sh: $license is not the Apache-2.0 text Cargo.toml names" >&2; exit 1; }
  [ -f "$bin" ] || { echo "release.sh: no binary $bin" >&2; exit 1; }
  name="$(archive_name "$os" "$arch")"
  exe="kubectl-devenv"
  [ "$os" = windows ] && exe="kubectl-devenv.exe"
  stage="$(mktemp -d)"
  cp "$bin" "$stage/$exe"
  cp "$license" "$stage/LICENSE"
  chmod 0755 "$stage/$exe"
  chmod 0644 "$stage/LICENSE"
  mkdir -p "$dist"
  rm -f "$dist/$name"
  if [ "$os" = windows ]; then
    (cd "$stage" && zip -q -X "$dist/$name" "$exe" LICENSE)
  else
    # Reproducible: fixed owner, order and mtime.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' \
      -C "$stage" -cf - "$exe" LICENSE | gzip -n >"$dist/$name"
  fi
  rm -rf "$stage"
  echo "$dist/$name"
}

if [ "${1:-}" = "--package" ]; then
  [ $# -eq 4 ] || { echo "usage: release.sh --package OS ARCH BINARY" >&2; exit 2; }
  known=""
  for p in "${platforms[@]}"; do
    read -r os arch target <<<"$p"
    [ "$os $arch" = "$2 $3" ] && known=1
  done
  [ -n "$known" ] || { echo "release.sh: no platform $2/$3" >&2; exit 2; }
  package "$2" "$3" "$4"
  exit 0
fi

if [ "${1:-}" = "--manifest" ]; then
  write_manifest
  exit $?
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
installed="$(rustup target list --installed 2>/dev/null || echo "$host")"
mkdir -p "$dist"
# Only what this run builds goes into the manifest.
rm -f "$dist"/kubectl-devenv_"${version}"_*
built=()
skipped=()

for p in "${platforms[@]}"; do
  read -r os arch target <<<"$p"
  name="$(archive_name "$os" "$arch")"
  if [ "$target" != "$host" ] && ! grep -qx "$target" <<<"$installed"; then
    skipped+=("$os/$arch ($target): Rust target not installed (rustup target add $target)")
    continue
  fi
  echo "building $target ..." >&2
  # The host's binary is built without --target, into target/release: the same binary,
  # sharing the release build of the webhook (./release.sh builds both).
  target_args=(--target "$target")
  out_dir="${CARGO_TARGET_DIR:-$root/target}/$target/release"
  if [ "$target" = "$host" ]; then
    target_args=()
    out_dir="${CARGO_TARGET_DIR:-$root/target}/release"
  fi
  if ! cargo build --release --locked -p kubectl-devenv "${target_args[@]}" --manifest-path "$root/Cargo.toml" >&2; then
    skipped+=("$os/$arch ($target): build failed (missing linker or SDK?)")
    continue
  fi
  exe="kubectl-devenv"
  [ "$os" = windows ] && exe="kubectl-devenv.exe"
  package "$os" "$arch" "$out_dir/$exe" >/dev/null
  built+=("$dist/$name  $(sha256sum "$dist/$name" | cut -d' ' -f1)")
done

echo "built:"
for b in "${built[@]}"; do echo "  $b"; done
if [ "${#skipped[@]}" -gt 0 ]; then
  echo "NOT built (build them on a machine that can, into $dist, then run krew/release.sh --manifest):"
  for s in "${skipped[@]}"; do echo "  $s"; done
fi
write_manifest
