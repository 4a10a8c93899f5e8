#!/usr/bin/env bash
# Builds the two release images of kubectl devenv without a Docker engine:
#
#   devenv-webhook   the release binary, exactly the glibc/libgcc libraries it
#                    links (from Debian's libc6, libgcc-s1), CA certificates,
#                    passwd/group for nonroot 65532; no shell; user 65532:65532;
#                    entrypoint /usr/local/bin/devenv-webhook
#   workspace        a Debian developer machine (mmdebstrap): user dev 1000:1000
#                    with zsh, git, sshd on :2222 run as dev, tini as PID 1;
#                    entrypoint `tini -- /usr/local/bin/devenv-workspace-entrypoint`
#
# Each as an OCI archive (skopeo copy oci-archive:...) and a docker-archive (ctr
# images import, docker load), cached outside the repository under a key that
# hashes every file under images/workspace/, this script, the webhook binary, the
# Debian suite, mirrors and SOURCE_DATE_EPOCH, the version and the image names.
#
#   images/build.sh [--webhook-binary PATH] [--version V] [--rebuild]
#       build (or reuse); the last line of stdout is the output directory, holding
#       devenv-webhook.{oci,docker}.tar, workspace.{oci,docker}.tar, images.env
#       (refs, digests, sizes), packages.txt, setuid-stripped.txt, webhook-files.txt
#   images/build.sh push REGISTRY [--tls-verify=false] [build options]
#       ... then copy both to REGISTRY/devenv-webhook:V and REGISTRY/workspace:V
#       (REGISTRY may hold a path: registry.example.com/devenv). Credentials are
#       skopeo's: `skopeo login REGISTRY` first, or REGISTRY_AUTH_FILE.
#
# Defaults: V = [workspace.package] version of Cargo.toml; the binary is
# target/release/devenv-webhook (built with cargo when missing).
# Environment:
#   DEVENV_RELEASE_IMAGES_CACHE   cache root (default ~/.cache/devenv-release-images)
#   DEVENV_IMAGE_REPO             name prefix inside the archives (ghcr.io/devenv-io)
#   DEVENV_DEBIAN_SUITE           bookworm
#   DEVENV_DEBIAN_MIRROR          http://deb.debian.org/debian
#   DEVENV_DEBIAN_SECURITY_MIRROR http://deb.debian.org/debian-security
#   SOURCE_DATE_EPOCH             timestamps of files and images (default: the time
#                                 of the last commit that touched images/, else a
#                                 fixed date)
# Needs root (mmdebstrap --mode=root, chroot) and images/install-deps.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache_root=${DEVENV_RELEASE_IMAGES_CACHE:-$HOME/.cache/devenv-release-images}
image_repo=${DEVENV_IMAGE_REPO:-ghcr.io/devenv-io}
suite=${DEVENV_DEBIAN_SUITE:-bookworm}
mirror=${DEVENV_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEVENV_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
source_url=https://github.com/devenv-io/kubectl-devenv

die() { echo "images/build.sh: $*" >&2; exit 1; }
say() { echo "images/build.sh: $*" >&2; }
usage() { sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'; }

# --- arguments -------------------------------------------------------------------
cmd=build registry='' tls_verify=true webhook_bin='' version='' rebuild=''
if [ "${1:-}" = push ]; then
  cmd=push; registry=${2:-}; shift 2 || true
  [ -n "$registry" ] || die "usage: build.sh push REGISTRY [--tls-verify=false]"
  registry=${registry%/}
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --webhook-binary) webhook_bin=${2:?--webhook-binary needs a path}; shift ;;
    --webhook-binary=*) webhook_bin=${1#*=} ;;
    --version) version=${2:?--version needs a value}; shift ;;
    --version=*) version=${1#*=} ;;
    --tls-verify=*) tls_verify=${1#*=} ;;
    --tls-verify) tls_verify=true ;;
    --rebuild) rebuild=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
  shift
done
case "$tls_verify" in true|false) ;; *) die "--tls-verify=true|false" ;; esac

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap --mode=root and chroot need it)"
for t in mmdebstrap umoci skopeo readelf tar sha256sum flock jq; do
  command -v "$t" >/dev/null || die "missing $t (run images/install-deps.sh)"
done
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || die "missing debian-archive-keyring (run images/install-deps.sh)"

if [ -z "$version" ]; then
  version=$(awk '/^\[/{s=($0=="[workspace.package]")} s && $1=="version" {gsub(/[" ]/,"",$3); print $3; exit}' "$repo/Cargo.toml")
  [ -n "$version" ] || die "no [workspace.package] version in $repo/Cargo.toml"
fi
[[ "$version" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "bad tag $version"

if [ -z "$webhook_bin" ]; then
  webhook_bin="${CARGO_TARGET_DIR:-$repo/target}/release/devenv-webhook"
  if [ ! -x "$webhook_bin" ]; then
    say "building $webhook_bin (cargo build --release -p devenv-webhook)"
    (cd "$repo" && cargo build --release -p devenv-webhook) >&2
  fi
fi
[ -x "$webhook_bin" ] || die "$webhook_bin is not an executable"
webhook_bin=$(readlink -f "$webhook_bin")
readelf -h "$webhook_bin" 2>/dev/null | grep -q 'Advanced Micro Devices X86-64' || die "$webhook_bin is not an x86-64 ELF"

mapfile -t packages < <(sed 's/#.*//' "$here/workspace/packages.txt" | tr -s ' \t' '\n' | sed '/^$/d')
[ ${#packages[@]} -gt 5 ] || die "images/workspace/packages.txt is short"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct -- images 2>/dev/null || true)
  # no commit yet (or no git): a fixed date, 2026-01-01T00:00:00Z
  SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}
fi
[[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds"
export SOURCE_DATE_EPOCH
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

webhook_sha=$(sha256sum <"$webhook_bin" | cut -d' ' -f1)
key=$({
  # contents only: the same inputs give the same key from any checkout path
  sha256sum <"$here/build.sh"
  (cd "$here/workspace" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  echo "webhook $webhook_sha"
  echo "suite $suite $mirror $security_mirror"
  echo "packages ${packages[*]}"
  echo "version $version repo $image_repo epoch $SOURCE_DATE_EPOCH"
  mmdebstrap --version; umoci --version; skopeo --version
} | sha256sum | cut -c1-16)
out="$cache_root/$key"
WEBHOOK_REF="$image_repo/devenv-webhook:$version"
WORKSPACE_REF="$image_repo/workspace:$version"

# Deterministic layer tarball of a directory: sorted, numeric owners, mtimes clamped
# to SOURCE_DATE_EPOCH, no atime/ctime, no xattrs (so no file capabilities either),
# nothing under /dev, /proc, /sys, /run (the runtime mounts those).
mktar() {
  local dir=$1 tarball=$2
  (cd "$dir" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort) >"$tarball.list"
  LC_ALL=C tar --create --file "$tarball" --directory "$dir" \
    --sort=name --format=posix --numeric-owner \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime \
    --anchored --exclude='dev/*' --exclude='proc/*' --exclude='sys/*' --exclude='run/*' \
    --files-from "$tarball.list"
  rm -f "$tarball.list"
}

# The shared libraries an ELF file needs (its PT_INTERP and the NEEDED closure),
# resolved inside the Debian tree ROOT; prints paths relative to ROOT's lib dir.
needed_libs() {
  local root=$1 elf=$2 libdir=usr/lib/x86_64-linux-gnu
  local -A seen=()
  local queue=("$elf") f so
  while [ ${#queue[@]} -gt 0 ]; do
    f=${queue[0]}; queue=("${queue[@]:1}")
    while read -r so; do
      [ -n "$so" ] && [ -z "${seen[$so]:-}" ] || continue
      [ -e "$root/$libdir/$so" ] || die "$so (needed by $(basename "$f")) is not in $libdir of the Debian tree"
      seen[$so]=1
      echo "$so"
      queue+=("$root/$libdir/$so")
    done < <(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
             readelf -l "$f" | sed -n 's|.*Requesting program interpreter: .*/\(.*\)\]|\1|p')
  done
}

layer_bytes() { # LAYOUT TAG -> "compressed uncompressed-unknown" (compressed: config + layers)
  local L=$1 tag=$2 m
  m=$(jq -r --arg t "$tag" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) | .digest' "$L/index.json")
  jq '[.config.size] + [.layers[].size] | add' "$L/blobs/sha256/${m#sha256:}"
}

tmp=
build() {
  local t0=$SECONDS
  tmp="$out.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  trap 'rm -rf --one-file-system "$tmp"' EXIT
  local ws="$tmp/workspace-rootfs" wh="$tmp/webhook-rootfs" L="$tmp/oci"
  local pkglist; pkglist=$(IFS=,; echo "${packages[*]}")

  # --- workspace: Debian tree -------------------------------------------------------
  say "mmdebstrap $suite (${#packages[@]} packages) from $mirror"
  TMPDIR="$tmp" mmdebstrap --mode=root --variant=apt --format=directory --quiet \
    --aptopt='APT::Install-Recommends "false"' --aptopt='APT::Install-Suggests "false"' \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --include="$pkglist" \
    --customize-hook="\"$here/workspace/customize.sh\" \"\$1\"" \
    "$suite" "$ws" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" \
    "deb $security_mirror $suite-security main" >&2
  chroot --userspec=1000:1000 "$ws" /bin/zsh -c 'git --version && ssh -V && test -x /usr/sbin/sshd && /usr/bin/tini --version' >/dev/null 2>&1 \
    || die "workspace tree smoke test failed"
  dpkg-query --admindir="$ws/var/lib/dpkg" -W -f '${Package} ${Version}\n' | LC_ALL=C sort >"$tmp/packages.txt"
  cp "$ws/usr/share/devenv/setuid-stripped.txt" "$tmp/setuid-stripped.txt"

  # --- webhook: the binary and exactly what it links, from the same Debian tree -------
  mkdir -p "$wh"/usr/{lib/x86_64-linux-gnu,lib64,local/bin} "$wh"/etc/ssl/certs "$wh"/tmp \
    "$wh"/home/nonroot "$wh"/var/lib/dpkg/status.d "$wh"/dev "$wh"/proc "$wh"/sys
  ln -s usr/lib "$wh/lib"; ln -s usr/lib64 "$wh/lib64"
  install -m 0755 "$webhook_bin" "$wh/usr/local/bin/devenv-webhook"
  local so pkgs=() p
  while read -r so; do
    cp -L --preserve=mode "$ws/usr/lib/x86_64-linux-gnu/$so" "$wh/usr/lib/x86_64-linux-gnu/$so"
    p=$(dpkg-query --admindir="$ws/var/lib/dpkg" -S "*/$so" | head -n1 | cut -d: -f1)
    [ -n "$p" ] || die "no Debian package owns $so"
    pkgs+=("$p")
  done < <(needed_libs "$ws" "$webhook_bin")
  [ -e "$wh/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ] || die "no dynamic loader found for $webhook_bin"
  ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$wh/usr/lib64/ld-linux-x86-64.so.2"
  install -m 0644 "$ws/etc/ssl/certs/ca-certificates.crt" "$wh/etc/ssl/certs/ca-certificates.crt"
  pkgs+=(ca-certificates)
  # what the libraries came from, for scanners (distroless style) and licences
  for p in $(printf '%s\n' "${pkgs[@]}" | LC_ALL=C sort -u); do
    dpkg-query --admindir="$ws/var/lib/dpkg" -s "$p" >"$wh/var/lib/dpkg/status.d/$p"
    install -D -m 0644 "$ws/usr/share/doc/$p/copyright" "$wh/usr/share/doc/$p/copyright"
  done
  install -m 0644 "$ws/usr/lib/os-release" "$wh/usr/lib/os-release"
  ln -s ../usr/lib/os-release "$wh/etc/os-release"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$wh/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$wh/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$wh/etc/nsswitch.conf"
  chmod 1777 "$wh/tmp"; chown 65532:65532 "$wh/home/nonroot"; chmod 0700 "$wh/home/nonroot"
  chroot --userspec=65532:65532 "$wh" /usr/local/bin/devenv-webhook --version >/dev/null \
    || die "the webhook does not run in its tree"
  (cd "$wh" && find . -mindepth 1 \( -type f -o -type l \) -printf '/%P\n' | LC_ALL=C sort) >"$tmp/webhook-files.txt"
  [ -z "$(cd "$wh" && find . -perm /6000 -print -quit)" ] || die "setuid file in the webhook tree"

  # --- layers and images ---------------------------------------------------------------
  mktar "$ws" "$tmp/workspace.layer.tar"
  mktar "$wh" "$tmp/webhook.layer.tar"
  rm -rf "$ws" "$wh"
  umoci init --layout "$L"
  local labels=(
    --config.label "org.opencontainers.image.source=$source_url"
    --config.label "org.opencontainers.image.version=$version"
    --config.label "org.opencontainers.image.licenses=Apache-2.0"
    --config.label "org.opencontainers.image.created=$created"
  )
  local common=(--created "$created" --author "kubectl devenv" --os linux --architecture amd64
    --history.created "$created")

  umoci new --image "$L:devenv-webhook"
  umoci raw add-layer --image "$L:devenv-webhook" --history.created "$created" \
    --history.created_by "images/build.sh: devenv-webhook $version, libc6/libgcc-s1/ca-certificates from Debian $suite" \
    "$tmp/webhook.layer.tar"
  umoci config --image "$L:devenv-webhook" "${common[@]}" "${labels[@]}" \
    --config.label "org.opencontainers.image.title=devenv-webhook" \
    --config.label "org.opencontainers.image.description=kubectl devenv admission webhook and lifecycle controller" \
    --config.user 65532:65532 --config.workingdir / \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin \
    --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --config.entrypoint /usr/local/bin/devenv-webhook \
    --config.exposedports 8443/tcp --config.exposedports 9090/tcp \
    --history.created_by "images/build.sh: devenv-webhook config"

  umoci new --image "$L:workspace"
  umoci raw add-layer --image "$L:workspace" --history.created "$created" \
    --history.created_by "images/build.sh: mmdebstrap $suite --variant=apt ${packages[*]}" \
    "$tmp/workspace.layer.tar"
  umoci config --image "$L:workspace" "${common[@]}" "${labels[@]}" \
    --config.label "org.opencontainers.image.title=devenv workspace" \
    --config.label "org.opencontainers.image.description=kubectl devenv default workspace: Debian $suite, zsh, git, sshd on 2222 as user dev" \
    --config.label "org.opencontainers.image.base.name=debian:$suite" \
    --config.user 1000:1000 --config.workingdir /workspace \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env HOME=/home/dev --config.env LANG=en_US.UTF-8 \
    --config.env SHELL=/bin/zsh --config.env TERM=xterm-256color \
    --config.entrypoint /usr/bin/tini --config.entrypoint -- \
    --config.entrypoint /usr/local/bin/devenv-workspace-entrypoint \
    --config.exposedports 2222/tcp --config.exposedports 8080/tcp \
    --config.stopsignal SIGTERM \
    --history.created_by "images/build.sh: workspace config"
  umoci gc --layout "$L"

  local wh_bytes ws_bytes
  wh_bytes=$(layer_bytes "$L" devenv-webhook); ws_bytes=$(layer_bytes "$L" workspace)
  local n ref
  for n in devenv-webhook workspace; do
    [ "$n" = workspace ] && ref=$WORKSPACE_REF || ref=$WEBHOOK_REF
    skopeo --insecure-policy copy -q "oci:$L:$n" "oci-archive:$tmp/$n.oci.tar:$ref"
    skopeo --insecure-policy copy -q "oci:$L:$n" "docker-archive:$tmp/$n.docker.tar:$ref"
  done
  local wh_digest ws_digest
  wh_digest=$(skopeo inspect --raw "oci-archive:$tmp/devenv-webhook.oci.tar" | sha256sum | cut -d' ' -f1)
  ws_digest=$(skopeo inspect --raw "oci-archive:$tmp/workspace.oci.tar" | sha256sum | cut -d' ' -f1)
  cat >"$tmp/images.env" <<E
VERSION=$version
WEBHOOK_IMAGE=$WEBHOOK_REF
WORKSPACE_IMAGE=$WORKSPACE_REF
WEBHOOK_DIGEST=sha256:$wh_digest
WORKSPACE_DIGEST=sha256:$ws_digest
WEBHOOK_COMPRESSED_BYTES=$wh_bytes
WEBHOOK_UNCOMPRESSED_BYTES=$(stat -c %s "$tmp/webhook.layer.tar")
WORKSPACE_COMPRESSED_BYTES=$ws_bytes
WORKSPACE_UNCOMPRESSED_BYTES=$(stat -c %s "$tmp/workspace.layer.tar")
WEBHOOK_BINARY_SHA256=$webhook_sha
DEBIAN_SUITE=$suite
DEBIAN_MIRROR=$mirror
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH
BUILD_SECONDS=$((SECONDS - t0))
E
  rm -rf "$L" "$tmp"/*.layer.tar
  rm -rf "$out"
  mv "$tmp" "$out"
  trap - EXIT
  # keep the three newest builds (older keys come from older inputs)
  local old
  for old in $(ls -1td "$cache_root"/*/ 2>/dev/null | tail -n +4); do
    case $old in *.tmp.*) continue ;; esac
    [ -f "$old/images.env" ] && rm -rf "$old"
  done
  return 0
}

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9   # one build at a time per cache
if [ -n "$rebuild" ] || [ ! -f "$out/images.env" ]; then
  say "building images into $out"
  build
  say "built in $(grep ^BUILD_SECONDS= "$out/images.env" | cut -d= -f2)s"
else
  say "reusing $out"
fi

if [ "$cmd" = push ]; then
  for n in devenv-webhook workspace; do
    say "pushing $registry/$n:$version"
    skopeo --insecure-policy copy -q --dest-tls-verify="$tls_verify" \
      "oci-archive:$out/$n.oci.tar" "docker://$registry/$n:$version"
  done
fi
echo "$out"
