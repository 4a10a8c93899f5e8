#!/usr/bin/env bash
# mmdebstrap --customize-hook of the workspace image (images/build.sh runs it):
# runs on the build host with the finished Debian tree as $1, after all packages
# are installed. Adds the user, the locale, the entrypoint and shell files, strips
# setuid/setgid bits, and removes what is not needed or not reproducible.
set -euo pipefail
r=${1:?usage: customize.sh ROOTFS}
here=$(cd "$(dirname "$0")" && pwd)
inroot() { chroot "$r" "$@"; }

# --- usrmerge: apt picks it for init-system-helpers' "usrmerge | usr-is-merged"
# although the tree is merged already; usr-is-merged (in the list) stays ---------
if inroot dpkg-query -W usrmerge >/dev/null 2>&1; then
  inroot env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq \
    usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl >/dev/null
fi

# --- the user: dev 1000:1000, zsh, no password (nor a locked one: sshd without
# PAM refuses accounts whose password starts with '!') -------------------------
grep -qx /bin/zsh "$r/etc/shells" || echo /bin/zsh >>"$r/etc/shells"
inroot groupadd --gid 1000 dev
inroot useradd --uid 1000 --gid 1000 --create-home --home-dir /home/dev \
  --shell /bin/zsh --comment dev dev
inroot usermod --password '*' dev
install -m 0644 "$here/zshrc" "$r/etc/skel/.zshrc"
install -m 0644 -o 1000 -g 1000 "$here/zshrc" "$r/home/dev/.zshrc"
install -d -m 0700 -o 1000 -g 1000 "$r/home/dev/.ssh"
install -d -m 0755 -o 1000 -g 1000 "$r/home/dev/.config" "$r/home/dev/.cache" "$r/workspace"
chmod 0755 "$r/home/dev"

# --- locale ----------------------------------------------------------------------
echo 'en_US.UTF-8 UTF-8' >"$r/etc/locale.gen"
inroot locale-gen >/dev/null
printf 'LANG=en_US.UTF-8\n' >"$r/etc/default/locale"

# --- entrypoint, shell environment, mount points ------------------------------------
install -m 0755 "$here/devenv-workspace-entrypoint" "$r/usr/local/bin/devenv-workspace-entrypoint"
cat "$here/zshenv" >>"$r/etc/zsh/zshenv"
install -m 0644 "$here/profile-devenv.sh" "$r/etc/profile.d/devenv.sh"
# the product mounts its managed authorized_keys here (read-only)
install -d -m 0755 "$r/etc/devenv/ssh"

# --- sshd: never ship host keys (each workspace makes its own on first start) ----
rm -f "$r"/etc/ssh/ssh_host_*

# --- no privilege to gain: strip every setuid/setgid bit, keep the list -------------
install -d -m 0755 "$r/usr/share/devenv"
# (directories too: setgid /var/mail, /var/local only pass on a group, but the
# rule is simply "nothing with these bits")
(cd "$r" && find . -xdev -perm /6000 -printf '%m %u:%g %y /%P\n' | LC_ALL=C sort -k4) \
  >"$r/usr/share/devenv/setuid-stripped.txt"
(cd "$r" && find . -xdev -perm /6000 -exec chmod ug-s {} +)
[ -z "$(cd "$r" && find . -xdev -perm /6000 -print -quit)" ] || { echo "customize.sh: setuid bits left" >&2; exit 1; }

# --- size: docs, manuals, translations (dpkg's path-exclude keeps them out of later
# installs too; copyright files stay) ----------------------------------------------
# (level-1 symlinks such as libgcc-s1 -> gcc-12-base stay: they lead to a copyright)
find "$r/usr/share/doc" -mindepth 2 ! -type d ! -name copyright -delete 2>/dev/null || true
find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/lintian "$r"/usr/share/linda
find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true

# --- reproducibility: logs, backups, caches, host files ----------------------------
rm -f "$r"/etc/{passwd,group,shadow,gshadow,subuid,subgid}- "$r"/var/lib/dpkg/*-old \
  "$r"/var/cache/debconf/*-old "$r"/var/cache/ldconfig/aux-cache \
  "$r"/etc/resolv.conf "$r"/etc/hostname "$r"/etc/ssh/sshd_config.ucf-old
rm -f "$r"/etc/subuid "$r"/etc/subgid   # no user namespaces for anyone in here
find "$r/var/log" -type f -delete
rm -rf "$r"/tmp/* "$r"/var/tmp/* "$r"/root/.cache "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/*
: >"$r/etc/machine-id"
