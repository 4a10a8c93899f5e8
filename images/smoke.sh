#!/usr/bin/env bash
# Smoke test of the release images, for real and without a Docker engine:
#
#   images/smoke.sh [build.sh options]       (root; images/install-deps.sh first)
#
# 1. builds (or reuses) them with images/build.sh;
# 2. pushes both to a private docker-registry on 127.0.0.1 (a free port, storage in
#    a temp dir) with `build.sh push`, and reads them back with skopeo inspect;
# 3. runs each image's tree with runc as its user, without capabilities, with
#    noNewPrivileges and a read-only root filesystem:
#    - webhook: --version/--help exit 0, no shell in the image, and `serve` answers
#      /healthz over HTTPS inside a network namespace made here (ip netns add; only
#      its loopback is up);
#    - workspace, laid out as the product mounts it (config, history and workspace
#      volumes, a read-only authorized_keys, tmpfs /tmp): sshd runs as uid 1000 on
#      2222 under tini, host keys land in the config volume, `ssh dev@127.0.0.1 id -u`
#      (a throwaway key, inside the namespace) prints 1000, the session sees the
#      pod's environment, zsh is dev's login shell, the locale is UTF-8, nothing is
#      setuid/setgid, SIGTERM stops it at once, and a second start with the same
#      config volume serves the same host keys; --keep-alive and a passed command
#      work too;
# 4. with DEVENV_SMOKE_DERIVE=1, also derives the example team image
#    (examples/derive.sh with examples/golang.sh) and runs `go run` in it.
# Everything it starts (registry, containers, namespaces, temp dirs) is removed on
# exit (DEVENV_SMOKE_LOGS=DIR keeps the registry's and containers' logs there).
# Prints one line per check and "N passed, N failed"; exits 1 on a failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "images/smoke.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "run as root (runc, ip netns, chroot)"
for t in runc umoci skopeo docker-registry ip ss ssh ssh-keygen ssh-keyscan curl jq timeout; do
  command -v "$t" >/dev/null || die "missing $t (run images/install-deps.sh)"
done

passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() { # DESCRIPTION COMMAND...
  local d=$1; shift
  if "$@" >/dev/null 2>&1; then ok "$d"; else fail "$d"; fi
}
section() { echo; echo "== $*"; }

tmp=$(mktemp -d /tmp/devenv-smoke.XXXXXX)
chmod 0755 "$tmp"
id=smoke$$
ns="devenv-smoke-$$"
registry_pid=
containers=()
cleanup() {
  set +e
  local c
  for c in "${containers[@]}"; do
    runc kill "$c" KILL >/dev/null 2>&1
    runc delete -f "$c" >/dev/null 2>&1
  done
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null; fi
  ip netns del "$ns" 2>/dev/null
  if [ -n "${DEVENV_SMOKE_LOGS:-}" ]; then mkdir -p "$DEVENV_SMOKE_LOGS"; cp "$tmp"/*.log "$DEVENV_SMOKE_LOGS/"; fi
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

section "build"
out=$("$here/build.sh" "$@" | tail -n1)
[ -f "$out/images.env" ] || die "build.sh printed no output dir"
# shellcheck disable=SC1091
. "$out/images.env"
echo "images in $out"
echo "  $WEBHOOK_IMAGE  $WEBHOOK_DIGEST  $((WEBHOOK_COMPRESSED_BYTES / 1024)) KiB compressed"
echo "  $WORKSPACE_IMAGE  $WORKSPACE_DIGEST  $((WORKSPACE_COMPRESSED_BYTES / 1024)) KiB compressed"
for f in devenv-webhook.oci.tar devenv-webhook.docker.tar workspace.oci.tar workspace.docker.tar; do
  check "$f exists" test -s "$out/$f"
done
check "docker-archive of the workspace is tagged $WORKSPACE_IMAGE" \
  sh -c "tar -xOf '$out/workspace.docker.tar' manifest.json | jq -e '.[0].RepoTags[0] == \"$WORKSPACE_IMAGE\"'"

section "registry push (docker-registry on 127.0.0.1 only)"
port=
for p in $(shuf -i 20000-40000 -n 50); do
  if [ -z "$(ss -Hltn "sport = :$p")" ]; then port=$p; break; fi
done
[ -n "$port" ] || die "no free port"
mkdir -p "$tmp/registry"
cat >"$tmp/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $tmp/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.2; done
check "registry answers on 127.0.0.1:$port" curl -fs "http://127.0.0.1:$port/v2/"
reg="127.0.0.1:$port"
if "$here/build.sh" push "$reg" --tls-verify=false "$@" >"$tmp/push.log" 2>&1; then
  ok "build.sh push $reg --tls-verify=false"
else
  fail "build.sh push $reg --tls-verify=false"; sed 's/^/    /' "$tmp/push.log"
fi
for n in workspace devenv-webhook; do
  if skopeo inspect --tls-verify=false "docker://$reg/$n:$VERSION" >"$tmp/inspect-$n.json" 2>"$tmp/inspect.err"; then
    ok "skopeo inspect docker://$reg/$n:$VERSION"
  else
    fail "skopeo inspect docker://$reg/$n:$VERSION: $(cat "$tmp/inspect.err")"
  fi
done
check "registry digest of workspace:$VERSION is the built one ($WORKSPACE_DIGEST)" \
  jq -e --arg d "$WORKSPACE_DIGEST" '.Digest == $d' "$tmp/inspect-workspace.json"
check "registry digest of devenv-webhook:$VERSION is the built one" \
  jq -e --arg d "$WEBHOOK_DIGEST" '.Digest == $d' "$tmp/inspect-devenv-webhook.json"
check "workspace labels: version $VERSION, licence Apache-2.0" \
  jq -e --arg v "$VERSION" '.Labels["org.opencontainers.image.version"] == $v and .Labels["org.opencontainers.image.licenses"] == "Apache-2.0"' "$tmp/inspect-workspace.json"

# --- runc bundles --------------------------------------------------------------------
# BUNDLE UID:GID READONLY -> a config.json with that user, no capabilities at all,
# noNewPrivileges, no terminal, the network namespace $ns, tmpfs /tmp.
unpack() { # NAME ARCHIVE BUNDLE
  skopeo --insecure-policy copy -q "oci-archive:$2" "oci:$tmp/oci:$1"
  umoci unpack --image "$tmp/oci:$1" "$3" >/dev/null
}
harden() { # BUNDLE UID GID
  local c="$1/config.json"
  jq --argjson uid "$2" --argjson gid "$3" --arg ns "/var/run/netns/$ns" '
    .process.user = {uid: $uid, gid: $gid, additionalGids: [$gid]}
    | .process.terminal = false
    | .process.noNewPrivileges = true
    | .process.capabilities = {bounding: [], effective: [], inheritable: [], permitted: [], ambient: []}
    | .process.rlimits = [{type: "RLIMIT_NOFILE", hard: 1024, soft: 1024}]
    | .root.readonly = true
    | .hostname = "devenv-smoke"
    | .linux.namespaces = ([.linux.namespaces[] | select(.type != "network" and .type != "user")] + [{type: "network", path: $ns}])
    | .mounts += [{destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777", "size=64m"]}]
  ' "$c" >"$c.new" && mv "$c.new" "$c"
}
bind() { # BUNDLE SRC DEST ro|rw
  local c="$1/config.json"
  jq --arg s "$2" --arg d "$3" --arg m "$4" \
    '.mounts += [{destination: $d, type: "bind", source: $s, options: ["rbind", $m, "nosuid", "nodev"]}]' \
    "$c" >"$c.new" && mv "$c.new" "$c"
}
set_args() { # BUNDLE ARGS...
  local c="$1/config.json"; shift
  local a; a=$(printf '%s\n' "$@" | jq -R . | jq -s .)
  jq --argjson a "$a" '.process.args = $a' "$c" >"$c.new" && mv "$c.new" "$c"
}
add_env() { # BUNDLE K=V
  local c="$1/config.json"
  jq --arg e "$2" '.process.env += [$e]' "$c" >"$c.new" && mv "$c.new" "$c"
}
in_ns() { ip netns exec "$ns" "$@"; }
wait_port() { # PORT SECONDS
  for _ in $(seq $(($2 * 5))); do
    [ -n "$(in_ns ss -Hltn "sport = :$1")" ] && return 0
    sleep 0.2
  done
  return 1
}
stop_container() { # ID -> prints milliseconds it took to stop after SIGTERM
  local c=$1 t0; t0=$(date +%s%3N)
  runc kill "$c" TERM 2>/dev/null || true
  for _ in $(seq 200); do
    [ "$(runc state "$c" 2>/dev/null | jq -r .status)" = stopped ] && break
    sleep 0.05
  done
  echo $(( $(date +%s%3N) - t0 ))
  runc delete -f "$c" >/dev/null 2>&1 || true
}

ip netns add "$ns"
ip -n "$ns" link set lo up

section "devenv-webhook image (uid 65532, no capabilities, read-only root)"
wb="$tmp/webhook-bundle"
unpack devenv-webhook "$out/devenv-webhook.oci.tar" "$wb"
harden "$wb" 65532 65532
check "config: user 65532:65532, entrypoint /usr/local/bin/devenv-webhook" \
  jq -e '.process.args[0] == "/usr/local/bin/devenv-webhook" and .process.user.uid == 65532' "$wb/config.json"
check "no shell in the image (/bin/sh, /usr/bin/sh, busybox absent)" \
  sh -c "! ls '$wb/rootfs/bin/sh' '$wb/rootfs/usr/bin/sh' '$wb/rootfs/usr/bin/busybox' 2>/dev/null | grep -q ."
check "nothing setuid/setgid in the webhook tree" sh -c "[ -z \"\$(find '$wb/rootfs' -xdev -perm /6000)\" ]"
check "CA bundle /etc/ssl/certs/ca-certificates.crt" grep -q 'BEGIN CERTIFICATE' "$wb/rootfs/etc/ssl/certs/ca-certificates.crt"
check "passwd has nonroot 65532" grep -q '^nonroot:x:65532:65532:' "$wb/rootfs/etc/passwd"
cp "$wb/config.json" "$tmp/webhook-config.json"
set_args "$wb" /usr/local/bin/devenv-webhook --version
v=$(runc run --bundle "$wb" "$id-wh" 2>&1) && rc=0 || rc=$?
if [ "$rc" = 0 ] && [ "$v" = "devenv-webhook $VERSION" ]; then ok "devenv-webhook --version prints '$v' and exits 0"; else fail "devenv-webhook --version: rc $rc, '$v'"; fi
set_args "$wb" /usr/local/bin/devenv-webhook --help
h=$(runc run --bundle "$wb" "$id-wh" 2>&1) && rc=0 || rc=$?
if [ "$rc" = 0 ] && grep -q '^Usage: devenv-webhook' <<<"$h"; then ok "devenv-webhook --help exits 0"; else fail "devenv-webhook --help: rc $rc"; fi
# certificates made by the image itself into a volume its user owns, then `serve`
mkdir -p "$tmp/tls"; chown 65532:65532 "$tmp/tls"
cp "$tmp/webhook-config.json" "$wb/config.json"
bind "$wb" "$tmp/tls" /etc/devenv/tls rw
set_args "$wb" /usr/local/bin/devenv-webhook gen-certs --out /etc/devenv/tls --san 127.0.0.1 --san localhost
check "devenv-webhook gen-certs writes into a volume as 65532" runc run --bundle "$wb" "$id-wh"
cp "$tmp/webhook-config.json" "$wb/config.json"
bind "$wb" "$tmp/tls" /etc/devenv/tls ro
set_args "$wb" /usr/local/bin/devenv-webhook serve --listen 0.0.0.0:8443 --cert-dir /etc/devenv/tls
containers+=("$id-wh")
runc run -d --bundle "$wb" "$id-wh" >"$tmp/webhook.log" 2>&1 </dev/null || true
if wait_port 8443 20 && in_ns curl -fsS --cacert "$tmp/tls/ca.crt" https://127.0.0.1:8443/healthz >"$tmp/healthz" 2>&1; then
  ok "devenv-webhook serve (read-only root) answers https://127.0.0.1:8443/healthz in the namespace"
else
  fail "devenv-webhook serve: $(cat "$tmp/webhook.log" "$tmp/healthz" 2>/dev/null | tail -5)"
fi
s=$(stop_container "$id-wh")
if [ "$s" -le 5000 ]; then ok "webhook stopped ${s}ms after SIGTERM"; else fail "webhook took ${s}ms to stop after SIGTERM"; fi

section "workspace image (uid 1000, no capabilities, read-only root, product volumes)"
wsb="$tmp/workspace-bundle"
unpack workspace "$out/workspace.oci.tar" "$wsb"
harden "$wsb" 1000 1000
check "config: entrypoint tini -- devenv-workspace-entrypoint, cwd /workspace" \
  jq -e '.process.args == ["/usr/bin/tini", "--", "/usr/local/bin/devenv-workspace-entrypoint"] and .process.cwd == "/workspace"' "$wsb/config.json"
check "config: env HOME, SHELL, LANG (UTF-8), TERM" \
  jq -e '(.process.env | index("HOME=/home/dev")) and (.process.env | index("SHELL=/bin/zsh")) and (.process.env | index("TERM=xterm-256color")) and (.process.env | map(select(test("^LANG=.*UTF-8$"))) | length == 1)' "$wsb/config.json"
for v in config history work; do mkdir -p "$tmp/vol-$v"; chown 1000:1000 "$tmp/vol-$v"; done
mkdir -p "$tmp/keys"
ssh-keygen -q -t ed25519 -N '' -C smoke -f "$tmp/client_key"
cp "$tmp/client_key.pub" "$tmp/keys/authorized_keys"; chmod 0644 "$tmp/keys/authorized_keys"
bind "$wsb" "$tmp/vol-config" /home/dev/.config rw
bind "$wsb" "$tmp/vol-history" /commandhistory rw
bind "$wsb" "$tmp/vol-work" /workspace rw
bind "$wsb" "$tmp/keys/authorized_keys" /etc/devenv/ssh/authorized_keys ro
add_env "$wsb" DEVENV_SMOKE_SECRET=s3cr3t
add_env "$wsb" HISTFILE=/commandhistory/.shell_history
cp "$wsb/config.json" "$tmp/workspace-config.json"

sshopts=(-F /dev/null -p 2222 -i "$tmp/client_key" -o IdentitiesOnly=yes -o BatchMode=yes
  -o UserKnownHostsFile="$tmp/known_hosts" -o StrictHostKeyChecking=yes -o ConnectTimeout=5)

starts=0
start_workspace() {
  starts=$((starts + 1))
  containers+=("$id-ws")
  runc run -d --bundle "$wsb" "$id-ws" >"$tmp/workspace-$starts.log" 2>&1 </dev/null || true
  wait_port 2222 30
}
if start_workspace; then ok "first start: sshd listens on 2222"; else fail "first start: sshd not listening: $(tail -5 "$tmp/workspace-1.log")"; fi
check "PID 1 is tini" sh -c "runc exec --user 1000:1000 $id-ws cat /proc/1/cmdline | tr '\0' ' ' | grep -q '^/usr/bin/tini -- /usr/local/bin/devenv-workspace-entrypoint'"
check "sshd runs as uid 1000 (listener owned by uid 1000)" sh -c "ip netns exec $ns ss -Hltne 'sport = :2222' | grep -q 'uid:1000'"
check "sshd process uid is 1000" sh -c "runc exec --user 1000:1000 $id-ws ps -o uid=,comm= -C sshd | awk '{print \$1}' | sort -u | grep -qx 1000"
check "process has no capabilities and NoNewPrivs" sh -c "runc exec --user 1000:1000 $id-ws grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/1/status | tr -s '\t ' ' ' | sort | tr '\n' ' ' | grep -qx 'CapBnd: 0000000000000000 CapEff: 0000000000000000 CapPrm: 0000000000000000 NoNewPrivs: 1 '"
check "host keys generated in the config volume (devenv/ssh/)" \
  test -s "$tmp/vol-config/devenv/ssh/ssh_host_ed25519_key" -a -s "$tmp/vol-config/devenv/ssh/ssh_host_rsa_key" -a -s "$tmp/vol-config/devenv/ssh/ssh_host_ecdsa_key"
check "host keys owned by 1000, mode 0600" sh -c "[ \"\$(stat -c '%u %a' '$tmp/vol-config/devenv/ssh/ssh_host_ed25519_key')\" = '1000 600' ]"
check "no host keys in the image's /etc/ssh" sh -c "! ls '$wsb'/rootfs/etc/ssh/ssh_host_* 2>/dev/null | grep -q ."
in_ns ssh-keyscan -p 2222 127.0.0.1 2>/dev/null | sed 's/^127.0.0.1/[127.0.0.1]:2222/' | sort >"$tmp/known_hosts"
ssh-keygen -l -f "$tmp/vol-config/devenv/ssh/ssh_host_ed25519_key.pub" | awk '{print $2}' >"$tmp/fp1"
check "ssh-keyscan sees the config volume's ed25519 key" \
  sh -c "ssh-keygen -l -f '$tmp/known_hosts' | grep -q \"\$(cat '$tmp/fp1')\""
u=$(in_ns ssh "${sshopts[@]}" dev@127.0.0.1 id -u 2>"$tmp/ssh.err") || true
if [ "$u" = 1000 ]; then ok "ssh -p 2222 dev@127.0.0.1 id -u prints 1000 (key from read-only /etc/devenv/ssh/authorized_keys)"; else fail "ssh id -u printed '$u': $(tail -3 "$tmp/ssh.err")"; fi
e=$(in_ns ssh "${sshopts[@]}" dev@127.0.0.1 'echo "$DEVENV_SMOKE_SECRET $HISTFILE $SHELL $0"' 2>/dev/null) || true
if [ "$e" = "s3cr3t /commandhistory/.shell_history /bin/zsh zsh" ]; then ok "ssh session: pod environment carried over, zsh"; else fail "ssh session environment: '$e'"; fi
check "ssh as root is refused (Permission denied)" \
  sh -c "ip netns exec $ns ssh ${sshopts[*]} root@127.0.0.1 true 2>&1 | grep -q 'Permission denied'"
check "only publickey is offered (password refused: 'Permission denied (publickey)')" \
  sh -c "ip netns exec $ns ssh ${sshopts[*]} -o PreferredAuthentications=password,keyboard-interactive -o PubkeyAuthentication=no dev@127.0.0.1 true 2>&1 | grep -q 'Permission denied (publickey)'"
check "rsync over ssh into /workspace" sh -c "echo hello >'$tmp/hello' && ip netns exec $ns rsync -e 'ssh ${sshopts[*]}' '$tmp/hello' dev@127.0.0.1:/workspace/ && [ \"\$(stat -c %u '$tmp/vol-work/hello')\" = 1000 ]"
check "zsh is dev's login shell (passwd: 1000:1000:/home/dev:/bin/zsh)" \
  sh -c "[ \"\$(runc exec --user 1000:1000 $id-ws getent passwd dev | cut -d: -f3,4,6,7)\" = '1000:1000:/home/dev:/bin/zsh' ]"
check "locale: LANG en_US.UTF-8, charmap UTF-8" sh -c "runc exec --user 1000:1000 $id-ws sh -c 'locale; locale charmap' | grep -qx UTF-8"
check "en_US.utf8 is generated" sh -c "runc exec --user 1000:1000 $id-ws locale -a | grep -qx en_US.utf8"
check "find / -xdev -perm /6000 is empty" \
  sh -c "[ \"\$(runc exec --user 1000:1000 $id-ws sh -c 'find / -xdev -perm /6000 2>/dev/null; echo end')\" = end ]"
check "no sudo, su cannot gain root" \
  sh -c "[ \"\$(runc exec --user 1000:1000 $id-ws sh -c 'command -v sudo || echo none; su -c id root </dev/null >/dev/null 2>&1 || echo refused')\" = 'none
refused' ]"
check "tools: git, curl, rsync, less, vi, ps, bash, zsh" \
  runc exec --user 1000:1000 "$id-ws" sh -c 'git --version && curl --version && rsync --version && command -v less && command -v vi && ps -p 1 && bash --version && zsh --version'
check "interactive zsh starts without the new-user wizard" \
  sh -c "runc exec --user 1000:1000 --env HOME=/home/dev $id-ws zsh -i -c 'echo ready' </dev/null 2>&1 | grep -qx ready"
check "/workspace, /home/dev writable by dev where volumes are; / read-only" \
  sh -c "runc exec --user 1000:1000 $id-ws sh -c 'touch /workspace/x /home/dev/.config/x /commandhistory/x && ! touch /etc/x 2>/dev/null'"
# a zombie: tini must reap it (orphan a short-lived child)
runc exec --user 1000:1000 "$id-ws" sh -c '(sleep 0.1 &) ; exit 0' >/dev/null 2>&1 || true
sleep 1
check "no zombie processes (tini reaps an orphan)" \
  sh -c "[ \"\$(runc exec --user 1000:1000 $id-ws sh -c 'ps -eo stat= | grep -c ^Z')\" = 0 ]"
s=$(stop_container "$id-ws")
if [ "$s" -le 3000 ]; then ok "workspace stopped ${s}ms after SIGTERM (tini forwards it to sshd)"; else fail "workspace took ${s}ms to stop after SIGTERM"; fi

# a volume whose fsGroup handling made the key group-readable: fixed at start
chmod 0640 "$tmp/vol-config/devenv/ssh/ssh_host_ed25519_key"
cp "$tmp/workspace-config.json" "$wsb/config.json"
if start_workspace; then ok "second start with the same config volume: sshd listens"; else fail "second start: $(tail -5 "$tmp/workspace-2.log")"; fi
ssh-keygen -l -f "$tmp/vol-config/devenv/ssh/ssh_host_ed25519_key.pub" | awk '{print $2}' >"$tmp/fp2"
check "same host key fingerprint after restart ($(cat "$tmp/fp1"))" cmp -s "$tmp/fp1" "$tmp/fp2"
u=$(in_ns ssh "${sshopts[@]}" dev@127.0.0.1 id -u 2>"$tmp/ssh.err") || true
if [ "$u" = 1000 ]; then ok "ssh with StrictHostKeyChecking against the first start's keys: id -u = 1000"; else fail "ssh after restart: '$u' $(tail -3 "$tmp/ssh.err")"; fi
s=$(stop_container "$id-ws")
check "stopped ${s}ms after SIGTERM" test "$s" -le 3000

cp "$tmp/workspace-config.json" "$wsb/config.json"
set_args "$wsb" /usr/bin/tini -- /usr/local/bin/devenv-workspace-entrypoint --keep-alive
containers+=("$id-ws")
runc run -d --bundle "$wsb" "$id-ws" >"$tmp/workspace.log" 2>&1 </dev/null || true
sleep 1
check "--keep-alive: running, no sshd" sh -c "[ \"\$(runc state $id-ws | jq -r .status)\" = running ] && [ \"\$(runc exec --user 1000:1000 $id-ws sh -c 'pgrep -x sshd || echo none')\" = none ]"
s=$(stop_container "$id-ws")
check "--keep-alive stopped ${s}ms after SIGTERM" test "$s" -le 3000
cp "$tmp/workspace-config.json" "$wsb/config.json"
add_env "$wsb" DEVENV_KEEP_ALIVE=1
containers+=("$id-ws")
runc run -d --bundle "$wsb" "$id-ws" >"$tmp/workspace.log" 2>&1 </dev/null || true
sleep 1
check "DEVENV_KEEP_ALIVE=1: running, no sshd" sh -c "[ \"\$(runc state $id-ws | jq -r .status)\" = running ] && [ \"\$(runc exec --user 1000:1000 $id-ws sh -c 'pgrep -x sshd || echo none')\" = none ]"
s=$(stop_container "$id-ws")
check "DEVENV_KEEP_ALIVE=1 stopped ${s}ms after SIGTERM" test "$s" -le 3000
cp "$tmp/workspace-config.json" "$wsb/config.json"
set_args "$wsb" /usr/bin/tini -- /usr/local/bin/devenv-workspace-entrypoint id -u
o=$(runc run --bundle "$wsb" "$id-ws" 2>&1) || true
if [ "$o" = 1000 ]; then ok "entrypoint CMD passes through: 'id -u' -> 1000"; else fail "entrypoint id -u: '$o'"; fi

if [ "${DEVENV_SMOKE_DERIVE:-0}" = 1 ]; then
  section "derived team image (examples/derive.sh + examples/golang.sh, downloads Go from Debian)"
  if "$here/examples/derive.sh" "$out/workspace.oci.tar" "$here/examples/golang.sh" "$tmp/go.oci.tar" \
      devenv.test/workspace-go:1 --env GOPATH=/workspace/.go --env GOCACHE=/workspace/.cache/go-build \
      >"$tmp/derive.log" 2>&1; then
    ok "derive.sh built workspace-go from workspace.oci.tar"
  else
    fail "derive.sh: $(tail -5 "$tmp/derive.log")"
  fi
  gb="$tmp/go-bundle"
  unpack workspace-go "$tmp/go.oci.tar" "$gb"
  harden "$gb" 1000 1000
  bind "$gb" "$tmp/vol-work" /workspace rw
  set_args "$gb" /usr/bin/tini -- /usr/local/bin/devenv-workspace-entrypoint sh -c \
    'cd /workspace && printf "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello from go\") }\n" >hello.go && go run hello.go && find / -xdev -perm /6000 2>/dev/null | wc -l && id -u'
  o=$(runc run --bundle "$gb" "$id-go" 2>&1 | tr '\n' ' ') || true
  if [ "$o" = "hello from go 0 1000 " ]; then ok "derived image: go run as uid 1000, nothing setuid"; else fail "derived image: '$o'"; fi
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
