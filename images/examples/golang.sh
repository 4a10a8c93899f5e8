#!/bin/sh
# The build step of the example team image (Containerfile.golang, derive.sh): adds
# Debian's Go toolchain, with gcc for cgo and `go test -race`. Runs as root at
# image build time, never in a workspace.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends golang-go gcc libc6-dev make pkg-config
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
# a good workspace image has nothing setuid/setgid: keep it so for what was added
find / -xdev -perm /6000 -exec chmod ug-s {} +
