#!/usr/bin/env bash
# The project's test command (README.md): formatting, lints, unit and server
# tests, the fuzz smoke run, then the end-to-end suites against a real
# Kubernetes v1.33 control plane and node built from source (tests/cluster).
#
#   tests/run.sh                         # everything
#   tests/run.sh --no-e2e                # skip the real-cluster suites (says so loudly)
#   DEVENV_SKIP=conformance tests/run.sh # opt out of suites by name (says so loudly)
#
# Nothing is skipped silently. A suite whose input or tool is missing fails, unless the
# user opted out of it by name in DEVENV_SKIP (comma- or space-separated):
#
#   conformance   shared/tests/conformance.rs without ../shared/conformance/ fixtures
#   fuzz          fuzz/smoke.sh (it needs a nightly toolchain and cargo-fuzz)
#   deny          cargo deny check licenses bans sources (deny.toml; it needs cargo-deny:
#                 cargo install cargo-deny --locked, as .ci/run does)
#   e2e           the real-cluster suites (as --no-e2e)
#
# Every test binary must pass every test it lists (`-- --list`), and at least the
# minimum MINIMUMS below gives it, so a binary that ran nothing (or lost tests) is not
# hidden by the others; a summary per binary is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

OPT_OUTS="conformance fuzz e2e deny"
skip=" $(printf '%s' "${DEVENV_SKIP:-}" | tr ',' ' ') "
for name in $skip; do
  case " $OPT_OUTS " in
    *" $name "*) ;;
    *) echo "tests/run.sh: DEVENV_SKIP names an unknown suite '$name' (known: $OPT_OUTS)" >&2; exit 2 ;;
  esac
done
case "${1:-}" in
  "") ;;
  --no-e2e) skip="$skip e2e " ;;
  *) echo "usage: tests/run.sh [--no-e2e]" >&2; exit 2 ;;
esac
skipped() { [[ "$skip" == *" $1 "* ]]; }

# Said when it happens and again at the end, where the user looks.
notices=()
loud() {
  notices+=("$*")
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!!! %s\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' "$*" >&2
}
summary=()
finish() {
  local rc=$?
  if [ ${#summary[@]} -gt 0 ]; then
    printf '\n== test binaries: listed / passed / minimum\n'
    printf '%s\n' "${summary[@]}"
  fi
  for n in "${notices[@]}"; do printf '!!! %s\n' "$n" >&2; done
  [ "$rc" = 0 ] && echo "tests/run.sh: all passed" || echo "tests/run.sh: FAILED (exit $rc)" >&2
}
trap finish EXIT

step() { printf '\n== %s\n' "$*"; }

# The fewest tests each binary must pass, by binary (as `cargo test` names it: the
# crate's unit tests, an integration test file, or doc-tests). Raise a number when
# tests are added; lower it only when tests are removed on purpose. A binary not in
# this table must still pass at least one test.
MINIMUMS='
devenv_shared src/lib.rs                           153
admission tests/admission.rs                        15
conformance tests/conformance.rs                     2
isolation tests/isolation.rs                        24
mutate tests/mutate.rs                              22
one_rule tests/one_rule.rs                           4
properties tests/properties.rs                       4
validate tests/validate.rs                          23
devenv_webhook src/lib.rs                           24
devenv_webhook src/main.rs                           0
binary tests/binary.rs                               5
kube_api tests/kube_api.rs                           3
router tests/router.rs                               3
server tests/server.rs                              18
kubectl_devenv src/lib.rs                           134
kubectl_devenv src/main.rs                           0
cli tests/cli.rs                                    11
delete_requests tests/delete_requests.rs             7
install_requests tests/install_requests.rs           1
dry_run tests/dry_run.rs                            10
krew tests/krew.rs                                   7
kubectl_plugin tests/kubectl_plugin.rs               4
manifests tests/manifests.rs                         4
quota tests/quota.rs                                 2
tenant_requests tests/tenant_requests.rs            10
devenv_bench src/lib.rs                             11
devenv_loadgen src/bin/devenv-loadgen.rs             1
faults tests/faults.rs                               4
doc-tests devenv_shared                              0
doc-tests devenv_webhook                             0
doc-tests kubectl_devenv                             0
doc-tests devenv_bench                               0
devenv_e2e src/lib.rs                                2
control_plane tests/control_plane.rs                 5
e2e_control_plane tests/e2e_control_plane/main.rs   23
e2e_node tests/e2e_node.rs                          15
e2e_release tests/e2e_release.rs                     5
controller tests/controller.rs                       7
scale tests/scale.rs                                 2
doc-tests devenv_e2e                                 0
'

# check_counts LIST_LOG RUN_LOG: every binary of RUN_LOG passed all it listed in
# LIST_LOG (`cargo test ... -- --list`) and at least its minimum. Appends to `summary`.
check_counts() {
  local report rc=0
  report=$(awk -v minimums="$MINIMUMS" '
    function key(line,    f, n, path, bin) {
      n = split(line, f, " ")
      if (f[1] == "Doc-tests") return "doc-tests " f[2]
      path = (f[2] == "unittests") ? f[3] : f[2]
      bin = f[n]; gsub(/[()]/, "", bin); sub(/.*\//, "", bin); sub(/-[0-9a-f]+$/, "", bin)
      return bin " " path
    }
    function unique(k, seen) { seen[k]++; return seen[k] > 1 ? k " #" seen[k] : k }
    BEGIN {
      n = split(minimums, rows, "\n")
      for (i = 1; i <= n; i++) {
        if (split(rows[i], f, " ") < 2) continue
        k = f[1]; for (j = 2; j < length(f); j++) k = k " " f[j]
        floor[k] = f[length(f)]
      }
    }
    FNR == 1 { file++; current = "" }
    /^ *(Running|Doc-tests) / {
      sub(/^ +/, "")
      current = (file == 1) ? unique(key($0), seen_list) : unique(key($0), seen_run)
      if (file == 2) order[++count] = current
      next
    }
    file == 1 && current != "" && /^[0-9]+ tests?, [0-9]+ benchmarks?$/ { listed[current] = $1 }
    file == 2 && current != "" && /^test result: / {
      passed[current] = $4; failed[current] = $6; ignored[current] = $8; done_[current] = 1
    }
    END {
      bad = 0
      for (i = 1; i <= count; i++) {
        k = order[i]; note = ""
        base = k; sub(/ #[0-9]+$/, "", base)
        min = (base in floor) ? floor[base] : 1
        if (!(k in done_)) { note = "NO RESULT (did not run, or crashed)"; bad = 1 }
        else if (failed[k] > 0) { note = "FAILED"; bad = 1 }
        else if (!(k in listed)) { note = "not in the --list output"; bad = 1 }
        else if (passed[k] + ignored[k] != listed[k]) { note = "ran " passed[k] + ignored[k] " of " listed[k] " listed"; bad = 1 }
        else if (passed[k] < min) { note = "fewer than the minimum " min; bad = 1 }
        else if (!(base in floor)) note = "ok (not in MINIMUMS: add it)"
        else note = "ok"
        if (ignored[k] > 0) note = note ", " ignored[k] " ignored"
        shown[base] = 1
        printf "%-58s %4s / %4s / %4s  %s\n", k, (k in listed) ? listed[k] : "-", (k in done_) ? passed[k] : "-", min, note
      }
      print (bad ? "BAD" : "GOOD")
    }
  ' "$1" "$2") || rc=$?
  [ "$rc" = 0 ] || { echo "tests/run.sh: cannot read the test counts ($rc)" >&2; return 1; }
  while IFS= read -r line; do
    case "$line" in GOOD|BAD) ;; *) summary+=("$line") ;; esac
  done <<<"$report"
  printf '%s\n' "$report" | grep -v -x -E 'GOOD|BAD'
  [ "$(printf '%s\n' "$report" | tail -1)" = GOOD ]
}

# The binaries of MINIMUMS that the real-cluster suites run (crate devenv-e2e).
E2E_BINARIES=" devenv_e2e control_plane e2e_control_plane e2e_node e2e_release controller scale "

# check_present RUN_LOG e2e|other: every binary of MINIMUMS of that group ran.
check_present() {
  local log=$1 group=$2 missing=() bin rest path
  while read -r bin rest; do
    [ -n "$bin" ] || continue
    path=${rest% *}; path=${path%"${path##*[! ]}"}
    local is_e2e=no
    [[ "$E2E_BINARIES" == *" $bin "* || "$bin $path" == "doc-tests devenv_e2e" ]] && is_e2e=yes
    if [ "$group" = e2e ] && [ "$is_e2e" = no ]; then continue; fi
    if [ "$group" != e2e ] && [ "$is_e2e" = yes ]; then continue; fi
    if [ "$bin" = doc-tests ]; then
      grep -q -x -E " *Doc-tests $path" "$log" || missing+=("doc-tests $path")
    else
      grep -F " $path (" "$log" | grep -q -E "/deps/$bin-[0-9a-f]+\)\$" || missing+=("$bin $path")
    fi
  done <<<"$MINIMUMS"
  if [ ${#missing[@]} -gt 0 ]; then
    printf '!!! a test binary of MINIMUMS did not run: %s\n' "${missing[@]}" >&2
    return 1
  fi
}

# run_counted GROUP CARGO_TEST_ARGS.. -- TEST_ARGS..: lists the tests, runs them, then
# checks the count of every binary (check_counts) and that none of GROUP is missing.
run_counted() {
  local group=$1 list run rc=0 counted=0 present=0 cargo_args=() test_args=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do cargo_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  test_args=("$@")
  list=$(mktemp) run=$(mktemp)
  if ! cargo test "${cargo_args[@]}" -- --list >"$list" 2>&1; then
    cat "$list"; rm -f "$list" "$run"; return 1
  fi
  set +e
  cargo test "${cargo_args[@]}" -- "${test_args[@]}" 2>&1 | tee "$run"
  rc=${PIPESTATUS[0]}
  set -e
  step "tests per binary: listed / passed / minimum"
  check_counts "$list" "$run" || counted=$?
  check_present "$run" "$group" || present=$?
  rm -f "$list" "$run"
  [ "$rc" = 0 ] || return "$rc"
  [ "$counted" = 0 ] && [ "$present" = 0 ]
}

for name in $skip; do
  case $name in
    conformance) loud "DEVENV_SKIP=conformance: the Pod Security conformance suite (shared/tests/conformance.rs) is SKIPPED" ;;
    fuzz) loud "DEVENV_SKIP=fuzz: the fuzz smoke run (fuzz/smoke.sh) is SKIPPED" ;;
    deny) loud "DEVENV_SKIP=deny: cargo deny (licences, duplicate versions, sources) is SKIPPED" ;;
    e2e) loud "the real-cluster suites (tests/tests) are SKIPPED (--no-e2e or DEVENV_SKIP=e2e)" ;;
  esac
done
export DEVENV_SKIP="${skip// /,}"

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
if ! skipped deny; then
  # Licences, duplicate versions (listed as warnings) and sources, from Cargo.lock and
  # cargo's cache; the advisories check needs the RustSec database and is not run.
  step "cargo deny check licenses bans sources"
  if ! cargo deny --version >/dev/null 2>&1; then
    echo "tests/run.sh: cargo-deny is not installed (cargo install cargo-deny --locked); opt out with DEVENV_SKIP=deny" >&2
    exit 1
  fi
  # --offline reads crates from cargo's cache, which a fresh machine fills only for
  # this platform: fetch every crate of Cargo.lock first (all targets, from crates.io).
  cargo fetch --locked
  cargo deny --offline check licenses bans sources
fi
step "build binaries"
cargo build --workspace --bins
step "unit, server, conformance and fault tests"
run_counted other --workspace --exclude devenv-e2e --

step "portal: view component tests (node --test) and the embedded xterm.js against npm ci"
node --test kubectl-devenv/ui/view.test.js
kubectl-devenv/ui/check.sh

step "fuzz smoke run"
# fuzz/smoke.sh fails when it cannot run (no nightly, no cargo-fuzz), and honours
# DEVENV_SKIP=fuzz itself (saying so).
fuzz/smoke.sh

if skipped e2e; then
  exit 0
fi

step "Kubernetes v1.33 binaries"
if [ -n "${DEVENV_K8S_BUILD_STATUS:-}" ]; then
  # .ci/run started the build in the background; it writes its exit status here.
  echo "waiting for the background build ($DEVENV_K8S_BUILD_STATUS)"
  while [ ! -s "$DEVENV_K8S_BUILD_STATUS" ]; do sleep 5; done
  if [ "$(cat "$DEVENV_K8S_BUILD_STATUS")" != 0 ]; then
    tail -50 target/k8s-build.log
    exit 1
  fi
fi
DEVENV_K8S_BIN=$(tests/cluster/build.sh | tail -1)
export DEVENV_K8S_BIN
echo "using $DEVENV_K8S_BIN"

step "end-to-end suites against the real control plane and node"
run_counted e2e -p devenv-e2e --no-fail-fast -- --test-threads=1
