#!/usr/bin/env bash
# Derives a team image from the workspace image without a Docker engine, as a
# Containerfile's `USER root` + `RUN SCRIPT` + `USER 1000:1000` + `ENV ...` would:
# unpacks BASE (an OCI archive, e.g. workspace.oci.tar from images/build.sh), runs
# SCRIPT as root in it (chroot, with /proc, /dev and this host's resolv.conf for
# apt, removed again), strips setuid/setgid bits, adds the change as one layer,
# sets the ENV values and writes an OCI archive named REF.
#
#   images/examples/derive.sh BASE.oci.tar SCRIPT OUT.oci.tar REF [--env K=V]...
#   images/examples/derive.sh "$(images/build.sh | tail -1)/workspace.oci.tar" \
#     images/examples/golang.sh /tmp/workspace-go.oci.tar registry.example.com/team/workspace-go:1 \
#     --env GOPATH=/workspace/.go --env GOCACHE=/workspace/.cache/go-build \
#     --env PATH=/workspace/.go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#   skopeo copy oci-archive:/tmp/workspace-go.oci.tar docker://registry.example.com/team/workspace-go:1
#
# Needs root, umoci, skopeo (images/install-deps.sh).
set -euo pipefail
die() { echo "derive.sh: $*" >&2; exit 1; }
[ $# -ge 4 ] || die "usage: derive.sh BASE.oci.tar SCRIPT OUT.oci.tar REF [--env K=V]..."
base=$1 script=$2 out=$3 ref=$4; shift 4
envs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --env) [[ "${2:-}" == *=* ]] || die "--env K=V"; envs+=(--config.env "$2"); shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root (chroot)"
[ -f "$base" ] || die "no $base"
[ -f "$script" ] || die "no $script"

tmp=$(mktemp -d /tmp/devenv-derive.XXXXXX)
r="$tmp/bundle/rootfs"
cleanup() {
  set +e
  for m in dev proc; do mountpoint -q "$r/$m" && umount -l "$r/$m"; done
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

skopeo --insecure-policy copy -q "oci-archive:$base" "oci:$tmp/oci:image"
umoci unpack --image "$tmp/oci:image" "$tmp/bundle" >/dev/null
mount --bind /proc "$r/proc"
mount --bind /dev "$r/dev"
had_resolv=; [ -e "$r/etc/resolv.conf" ] && had_resolv=1
[ -n "$had_resolv" ] || cp /etc/resolv.conf "$r/etc/resolv.conf"
install -m 0755 "$script" "$r/tmp/derive-step"
chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 /bin/sh /tmp/derive-step
rm -f "$r/tmp/derive-step"
[ -n "$had_resolv" ] || rm -f "$r/etc/resolv.conf"
umount "$r/dev" "$r/proc"
find "$r" -xdev -perm /6000 -exec chmod ug-s {} +
umoci repack --image "$tmp/oci:image" --history.created_by "derive.sh: $(basename "$script")" "$tmp/bundle"
# the base's user (1000:1000), entrypoint and the rest stay as they are
umoci config --image "$tmp/oci:image" "${envs[@]}" \
  --config.label "org.opencontainers.image.base.name=$(basename "$base")" \
  --history.created_by "derive.sh: env"
rm -f "$out"
skopeo --insecure-policy copy -q "oci:$tmp/oci:image" "oci-archive:$out:$ref"
echo "$out"
