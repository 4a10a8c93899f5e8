#!/usr/bin/env bash
# Builds the test cluster's container images without a registry or a Docker engine,
# from this machine's Debian binaries, as OCI layouts (umoci) converted to
# docker-archive tarballs (skopeo), cached outside the repository under a key that
# hashes this script, pause.c and every host file copied into the images.
#
#   tests/cluster/images/build.sh                 # build (or reuse); prints the cache dir
#   tests/cluster/images/build.sh import SOCKET [SNAPSHOTTER]
#                                                 # ... and import all into containerd
#                                                 #     (namespace k8s.io) at SOCKET,
#                                                 #     unpacked for SNAPSHOTTER (overlayfs)
#
# Images (fixed tags; pods use imagePullPolicy: Never or IfNotPresent):
#   devenv.test/pause:1       static pause, the CRI sandbox image
#   devenv.test/workspace:1   busybox userland + bash + git; user dev 1000:1000,
#                             HOME /home/dev; runs as 1000 and sleeps by default
#   devenv.test/git-daemon:1  the workspace image whose command is
#                             `git daemon` on :9418 serving /srv/git (holds a
#                             seeded bare repo /srv/git/demo.git; mount another
#                             dir over /srv/git to serve it instead)
#
# Environment: DEVENV_IMAGES_CACHE (default ~/.cache/devenv-images).
# Needs: tests/cluster/node/install-deps.sh (umoci, skopeo, busybox-static, git, bash), gcc.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${DEVENV_IMAGES_CACHE:-$HOME/.cache/devenv-images}
PAUSE_TAG=devenv.test/pause:1
WORKSPACE_TAG=devenv.test/workspace:1
GITD_TAG=devenv.test/git-daemon:1

die() { echo "images/build.sh: $*" >&2; exit 1; }
for t in umoci skopeo busybox git bash gcc ldd sha256sum; do
  command -v "$t" >/dev/null || die "missing $t (run tests/cluster/node/install-deps.sh)"
done
bb=$(command -v busybox)
# ldd fails on a static binary
if ldd "$bb" >/dev/null 2>&1; then die "$bb is not static (install busybox-static)"; fi

# Host files copied into the workspace image: bash, git with its exec dir, their
# shared libraries (ldd), the terminfo bash's readline uses, git's templates.
host_files() {
  local elves=(/bin/bash "$(command -v git)")
  local f
  for f in /usr/lib/git-core/*; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then elves+=("$f"); fi
  done
  {
    printf '%s\n' "${elves[@]}"
    for f in "${elves[@]}"; do
      # only ELF files have libs; scripts make ldd fail: ignore
      { ldd "$f" 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
    done
    find /usr/lib/git-core /usr/share/git-core/templates /lib/terminfo -type f
  } | sort -u
}
mapfile -t files < <(host_files)
[ ${#files[@]} -gt 100 ] || die "host file list is short (${#files[@]}): is git installed?"
key=$({
  # contents only: the same inputs give the same key whatever path runs this
  cat "$here/build.sh" "$here/pause.c" | sha256sum
  sha256sum <"$bb"
  for f in "${files[@]}"; do sha256sum "$(readlink -f "$f")" | sed "s|  .*|  $f|"; done
} | sha256sum | cut -c1-16)
out="$cache_root/$key"

build() {
  local tmp="$out.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  local L="$tmp/oci"
  umoci init --layout "$L"

  # --- pause ---------------------------------------------------------------
  umoci new --image "$L:pause"
  umoci unpack --image "$L:pause" "$tmp/pause-bundle" >/dev/null
  gcc -Os -static -s -o "$tmp/pause-bundle/rootfs/pause" "$here/pause.c"
  umoci repack --image "$L:pause" "$tmp/pause-bundle"
  umoci config --image "$L:pause" --config.user 65535:65535 --config.entrypoint /pause \
    --author devenv-tests --history.created_by "tests/cluster/images/build.sh pause"

  # --- workspace -------------------------------------------------------------
  umoci new --image "$L:workspace"
  umoci unpack --image "$L:workspace" "$tmp/ws-bundle" >/dev/null
  local r="$tmp/ws-bundle/rootfs"
  # merged-/usr layout like Debian's, so ldd's /lib paths and /usr/lib agree
  mkdir -p "$r"/usr/{bin,sbin,lib,lib64,local/bin} "$r"/{etc,home,root,tmp,var/tmp,proc,sys,dev,run,srv/git}
  ln -s usr/bin "$r/bin"; ln -s usr/sbin "$r/sbin"; ln -s usr/lib "$r/lib"; ln -s usr/lib64 "$r/lib64"
  cp "$bb" "$r/usr/bin/busybox"
  local a
  while read -r a; do
    a=${a#/}
    case "$a" in bin/*|sbin/*) a="usr/$a" ;; esac
    [ -e "$r/$a" ] || [ -L "$r/$a" ] || { mkdir -p "$(dirname "$r/$a")"; ln -s /usr/bin/busybox "$r/$a"; }
  done < <("$bb" --list-full)
  local f
  for f in "${files[@]}"; do
    local d="$r${f}"
    case "$f" in /bin/*|/sbin/*|/lib/*|/lib64/*) d="$r/usr$f" ;; esac
    mkdir -p "$(dirname "$d")"
    rm -f "$d"
    cp -L --preserve=mode "$f" "$d"
  done
  # git-core's symlinks (git-foo -> git) and the loader's canonical name
  find /usr/lib/git-core -type l | while read -r f; do
    rm -f "$r$f"; cp -P "$f" "$r$f"
  done
  [ -e "$r/lib64/ld-linux-x86-64.so.2" ] || ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$r/usr/lib64/ld-linux-x86-64.so.2"
  ln -sf bash "$r/usr/bin/rbash" 2>/dev/null || true
  cat > "$r/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
dev:x:1000:1000:dev:/home/dev:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
  cat > "$r/etc/group" <<'G'
root:x:0:
dev:x:1000:
nogroup:x:65534:
G
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$r/etc/nsswitch.conf"
  printf '/bin/sh\n/bin/bash\n' > "$r/etc/shells"
  mkdir -p "$r/home/dev"
  chown 1000:1000 "$r/home/dev"; chmod 0755 "$r/home/dev"
  chmod 1777 "$r/tmp" "$r/var/tmp"; chmod 0700 "$r/root"
  # git daemon's seeded repository (fixed dates: same content every build)
  local seed="$tmp/seed"
  (
    export GIT_AUTHOR_NAME=devenv GIT_AUTHOR_EMAIL=devenv@devenv.test GIT_COMMITTER_NAME=devenv \
      GIT_COMMITTER_EMAIL=devenv@devenv.test GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' \
      GIT_COMMITTER_DATE='2020-01-01T00:00:00Z' HOME="$tmp" GIT_CONFIG_NOSYSTEM=1
    git init -q -b main "$seed"
    echo "devenv test repository" > "$seed/README"
    git -C "$seed" add README
    git -C "$seed" commit -q -m "initial"
    git clone -q --bare "$seed" "$r/srv/git/demo.git"
    git -C "$r/srv/git/demo.git" config daemon.receivepack true
  )
  chown -R 1000:1000 "$r/srv/git"
  cat > "$r/usr/local/bin/git-daemon-serve" <<'S'
#!/bin/sh
# Serves every repository under ${GIT_BASE:-/srv/git} over git:// on ${GIT_PORT:-9418}.
exec git daemon --reuseaddr --export-all --enable=receive-pack --informative-errors \
  --base-path="${GIT_BASE:-/srv/git}" --listen=0.0.0.0 --port="${GIT_PORT:-9418}" \
  "$@" "${GIT_BASE:-/srv/git}"
S
  chmod 0755 "$r/usr/local/bin/git-daemon-serve"
  # smoke test the rootfs before packing it
  chroot "$r" /bin/bash -c 'git --version >/dev/null && id dev >/dev/null && stty --help >/dev/null 2>&1; cat /etc/passwd >/dev/null' \
    || die "workspace rootfs smoke test failed"
  umoci repack --image "$L:workspace" "$tmp/ws-bundle"
  local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  umoci config --image "$L:workspace" --config.user 1000:1000 --config.workingdir /home/dev \
    --config.env PATH=$path --config.env HOME=/home/dev --config.env LANG=C.UTF-8 \
    --config.env TERM=xterm \
    --config.cmd /bin/sh --config.cmd -c --config.cmd "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done" \
    --author devenv-tests --history.created_by "tests/cluster/images/build.sh workspace"
  umoci config --image "$L:workspace" --tag git-daemon --config.workingdir /srv/git \
    --clear=config.cmd --config.cmd /usr/local/bin/git-daemon-serve \
    --config.exposedports 9418/tcp \
    --author devenv-tests --history.created_by "tests/cluster/images/build.sh git-daemon"

  skopeo --insecure-policy copy -q "oci:$L:pause" "docker-archive:$tmp/pause.tar:$PAUSE_TAG"
  skopeo --insecure-policy copy -q "oci:$L:workspace" "docker-archive:$tmp/workspace.tar:$WORKSPACE_TAG"
  skopeo --insecure-policy copy -q "oci:$L:git-daemon" "docker-archive:$tmp/git-daemon.tar:$GITD_TAG"
  rm -rf "$tmp/pause-bundle" "$tmp/ws-bundle" "$seed"
  cat > "$tmp/images.env" <<E
PAUSE_IMAGE=$PAUSE_TAG
WORKSPACE_IMAGE=$WORKSPACE_TAG
GIT_DAEMON_IMAGE=$GITD_TAG
E
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

if [ ! -f "$out/images.env" ]; then
  echo "images/build.sh: building images into $out" >&2
  mkdir -p "$cache_root"
  build
fi

case "${1:-}" in
  "") ;;
  import)
    sock=${2:?usage: build.sh import CONTAINERD_SOCKET [SNAPSHOTTER]}
    for t in pause workspace git-daemon; do
      ctr -a "$sock" -n k8s.io images import --snapshotter "${3:-overlayfs}" "$out/$t.tar" >/dev/null
    done
    ;;
  *) die "usage: build.sh [import SOCKET [SNAPSHOTTER]]" ;;
esac
echo "$out"
