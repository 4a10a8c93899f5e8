#!/usr/bin/env bash
# Installs the Debian packages the test node (tests/cluster/node/node.sh) and the
# image builder (tests/cluster/images/build.sh) need. Idempotent: installs only
# what is missing, and runs `apt-get update` only when something is.
#
#   tests/cluster/node/install-deps.sh
set -euo pipefail

pkgs=(
  containerd                   # Debian's 1.6: the CRI runtime the kubelet talks to
  runc                         # OCI runtime containerd runs pods with
  containernetworking-plugins  # /usr/lib/cni/{bridge,host-local,loopback,portmap}
  umoci                        # builds OCI image layouts without a daemon
  skopeo                       # oci layout -> docker-archive for `ctr images import`
  busybox-static               # the userland of the pause and test images
  iptables                     # the bridge/portmap CNI plugins and kubelet use it
  iproute2                     # ip link / ip netns for cleanup
  conntrack                    # kubelet/CNI flush conntrack entries
  git                          # the git-daemon image and bash/git in the workspace image
  bash
  openssl                      # node client and serving certificates
  python3                      # free-port check (shared with cluster.sh)
  util-linux                   # setsid, flock
  gcc                          # the static pause binary of the pause image
  libc6-dev                    #   (libc.a)
  time                         # /usr/bin/time: the plugin's peak memory in the backup benchmark
  chromium                     # headless browser of the portal suite (tests/src/browser.rs)
)

missing=()
for p in "${pkgs[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all present" >&2
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
# The packages' maintainer scripts must not start a system containerd: the test
# node runs its own private instance. policy-rc.d makes invoke-rc.d refuse.
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
echo "install-deps: done" >&2
