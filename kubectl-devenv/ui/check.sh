#!/usr/bin/env bash
# The browser terminal's xterm.js, embedded in the plugin (src/ui/vendor/), is the npm
# registry's package at the version package-lock.json pins: committed, so `cargo build`
# alone builds the plugin on a fresh machine, and checked here against a fresh `npm ci`.
#
#   kubectl-devenv/ui/check.sh           # fails when the copies differ from the registry's
#   kubectl-devenv/ui/check.sh --update  # copies them (after changing package.json)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
vendor="$here/../src/ui/vendor"
pairs=(
  "node_modules/@xterm/xterm/lib/xterm.js:xterm.js"
  "node_modules/@xterm/xterm/css/xterm.css:xterm.css"
  "node_modules/@xterm/xterm/LICENSE:xterm.LICENSE"
)
status=0
for pair in "${pairs[@]}"; do
  from="$work/${pair%%:*}" to="$vendor/${pair##*:}"
  if [ "${1:-}" = --update ]; then
    cp "$from" "$to"
  elif ! cmp -s "$from" "$to"; then
    echo "kubectl-devenv/src/ui/vendor/${pair##*:} differs from ${pair%%:*} of a fresh npm ci; run kubectl-devenv/ui/check.sh --update" >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "portal assets: src/ui/vendor matches npm ci of kubectl-devenv/ui/package-lock.json"
exit "$status"
