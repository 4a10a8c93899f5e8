#!/usr/bin/env bash
# The scale run of issue 16: workspaces on simulated nodes (kwok) beside the real
# control plane, with the real webhook and lifecycle controller, at growing counts.
# Prints (and writes to $OUT) one table row per count; see tests/tests/scale.rs for
# what each column measures and what is asserted.
#
#   bench/scale.sh                       # 100 250 500 1000 workspaces, release builds
#   SIZES="50" bench/scale.sh            # what CI runs (tests/run.sh runs the same test)
#
# Environment: SIZES (increasing counts, default "100 250 500 1000"), PARALLEL
# (concurrent `kubectl devenv create`s, default 4), OUT (default /tmp/devenv-scale.md),
# DEVENV_K8S_BIN (default: what tests/cluster/build.sh builds; it builds kwok too).
# Takes about 15 minutes at 1,000 on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
SIZES=${SIZES:-"100 250 500 1000"}
OUT=${OUT:-/tmp/devenv-scale.md}
export DEVENV_K8S_BIN=${DEVENV_K8S_BIN:-$(tests/cluster/build.sh | tail -n1)}
# The binaries a platform team runs are release builds; the test harness may be a debug one.
cargo build --release -p kubectl-devenv -p devenv-webhook --bins
target=${CARGO_TARGET_DIR:-$root/target}
export DEVENV_WEBHOOK_BIN=$target/release/devenv-webhook
export DEVENV_PLUGIN_DIR=$target/release
# Production log levels: per-request debug lines are not what a cluster runs with.
export DEVENV_E2E_WEBHOOK_LOG=info DEVENV_E2E_CONTROLLER_LOG=info
export DEVENV_SCALE_SIZES=$SIZES DEVENV_SCALE_PARALLEL=${PARALLEL:-4} DEVENV_SCALE_REPORT=$OUT
cargo test -p devenv-e2e --test scale -- --nocapture
echo "bench/scale.sh: report in $OUT" >&2
