#!/usr/bin/env bash
# Installs the Debian packages images/build.sh and images/smoke.sh need. Idempotent:
# installs only what is missing, and runs `apt-get update` only when something is.
#
#   images/install-deps.sh
set -euo pipefail

pkgs=(
  mmdebstrap                  # the workspace image's Debian tree
  debian-archive-keyring      #   (verifies the mirror)
  umoci                       # OCI layouts without a daemon
  skopeo                      # oci-archive / docker-archive / registry copies
  binutils                    # readelf: the webhook's shared libraries
  jq                          # manifest sizes
  util-linux                  # flock, unshare
  tar
  git                         # SOURCE_DATE_EPOCH from the last commit of images/
  # smoke.sh only:
  runc                        # runs the images' trees as their users
  docker-registry             # a loopback registry to push to
  openssh-client              # ssh into the workspace
  rsync                       # rsync over ssh into the workspace
  curl                        # the registry and the webhook's /healthz
  iproute2                    # ip netns, ss
)

missing=()
for p in "${pkgs[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "images/install-deps: all present" >&2
  exit 0
fi
echo "images/install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
# docker-registry's maintainer scripts must not start a system registry:
# smoke.sh runs its own on loopback. policy-rc.d makes invoke-rc.d refuse.
prc=/usr/sbin/policy-rc.d
made_prc=
if [ ! -e "$prc" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$prc" >/dev/null
  $sudo chmod +x "$prc"
  made_prc=1
fi
cleanup() { if [ -n "$made_prc" ]; then $sudo rm -f "$prc"; fi; }
trap cleanup EXIT
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "images/install-deps: done" >&2
