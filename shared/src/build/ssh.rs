//! SSH access to a workspace, as pure functions: the one parser of OpenSSH public keys,
//! the authorized_keys file the plugin keeps on the workspace's config volume, the host
//! alias of a workspace pod, known_hosts lines, and the `Host` block of the generated ssh
//! config whose `ProxyCommand` is the plugin itself (`kubectl-devenv ssh --stdio`), which
//! carries the connection over the API server's `pods/portforward`.
//!
//! Public keys are not secrets: they live in a plain file of the workspace's own config
//! claim (pinned to the workspace and its owner by the webhook), written through `exec`,
//! which the same RBAC already governs. sshd reads the file at every login, so a key
//! added or removed counts at once, without a restart.

use base64::Engine;

/// The port sshd listens on in a workspace (a non-root user cannot bind 22).
pub const SSH_PORT: u16 = 2222;

/// The pseudo top-level domain of host aliases (`alice.team.devenv`): it never resolves
/// in DNS, so a typo cannot reach a real host, and `Host *.devenv` matches every workspace.
pub const HOST_SUFFIX: &str = "devenv";

/// Where the plugin keeps the keys it manages, relative to the config volume's mount
/// (`user.configDir` of the policy; the image's sshd reads it, see `images/README.md`).
pub const AUTHORIZED_KEYS_IN_CONFIG: &str = "devenv/ssh/authorized_keys";

/// Where the workspace image keeps its host keys, relative to the config volume's mount.
pub const HOST_KEYS_IN_CONFIG: &str = "devenv/ssh";

/// Key types sshd accepts for users (`ssh -Q key`, without certificates and DSA).
const KEY_TYPES: [&str; 8] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
];

/// Why a line is not an OpenSSH public key. The text completes "not a public key: ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the line is empty")]
    Empty,
    #[error("this is a PRIVATE key: pass the public one (the .pub file next to it)")]
    PrivateKey,
    #[error("unknown key type {0:?} (expected one of {types})", types = KEY_TYPES.join(", "))]
    UnknownType(String),
    #[error("no key data after the type {0}")]
    MissingData(String),
    #[error("the key data is not base64")]
    NotBase64,
    #[error("the key data says it is {inside:?}, the line says {declared:?}")]
    Mismatch { declared: String, inside: String },
}

/// One OpenSSH public key: `TYPE BASE64 [COMMENT]`, as in a `.pub` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kind: String,
    pub data: String,
    /// Usually `user@host`; may be empty.
    pub comment: String,
}

impl PublicKey {
    /// Parses one line of a `.pub` file or of authorized_keys without options. The key
    /// data is decoded and must name the same type as the line (so a truncated or
    /// mangled paste is refused here, not by sshd later).
    pub fn parse(line: &str) -> Result<PublicKey, KeyError> {
        let line = line.trim();
        if line.is_empty() {
            return Err(KeyError::Empty);
        }
        if line.contains("PRIVATE KEY") {
            return Err(KeyError::PrivateKey);
        }
        let mut fields = line.splitn(3, char::is_whitespace);
        let kind = fields.next().unwrap_or_default().to_owned();
        if !KEY_TYPES.contains(&kind.as_str()) {
            return Err(KeyError::UnknownType(kind));
        }
        let data = fields
            .next()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| KeyError::MissingData(kind.clone()))?
            .to_owned();
        let blob = base64::engine::general_purpose::STANDARD
            .decode(&data)
            .map_err(|_| KeyError::NotBase64)?;
        let inside = blob_type(&blob).ok_or(KeyError::NotBase64)?;
        // rsa-sha2-* are signature names that some tools print for RSA keys.
        let declared = if kind.starts_with("rsa-sha2-") {
            "ssh-rsa"
        } else {
            kind.as_str()
        };
        if inside != declared {
            return Err(KeyError::Mismatch {
                declared: kind,
                inside,
            });
        }
        let comment = fields.next().unwrap_or_default().trim().to_owned();
        Ok(PublicKey {
            kind: declared.to_owned(),
            data,
            comment,
        })
    }

    /// The line as OpenSSH writes it.
    pub fn line(&self) -> String {
        if self.comment.is_empty() {
            format!("{} {}", self.kind, self.data)
        } else {
            format!("{} {} {}", self.kind, self.data, self.comment)
        }
    }

    /// The same key, whatever the comments say.
    pub fn same_key(&self, other: &PublicKey) -> bool {
        self.kind == other.kind && self.data == other.data
    }

    /// A short name for messages: the comment, else the end of the key data.
    pub fn label(&self) -> String {
        if self.comment.is_empty() {
            let tail = self
                .data
                .get(self.data.len().saturating_sub(12)..)
                .unwrap_or(&self.data);
            format!("{} …{tail}", self.kind)
        } else {
            format!("{} {}", self.kind, self.comment)
        }
    }
}

/// The type name at the start of a key blob (an SSH string: u32 length, bytes).
fn blob_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    String::from_utf8(name.to_vec()).ok()
}

/// The keys of an authorized_keys file (blank lines and `#` comments skipped), and the
/// lines that are not keys, with their 1-based numbers.
pub fn parse_authorized_keys(text: &str) -> (Vec<PublicKey>, Vec<(usize, KeyError)>) {
    let mut keys = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match PublicKey::parse(t) {
            Ok(k) => keys.push(k),
            Err(e) => bad.push((i + 1, e)),
        }
    }
    (keys, bad)
}

/// The file's text for `keys`, one per line, with a header saying who writes it.
pub fn render_authorized_keys(keys: &[PublicKey]) -> String {
    let mut out = String::from(
        "# Managed by kubectl devenv ssh-key (add, remove, list); edits here are kept.\n",
    );
    for k in keys {
        out.push_str(&k.line());
        out.push('\n');
    }
    out
}

/// `existing` with `new` added (a key already there is not added twice); the keys added.
pub fn add_keys(existing: &[PublicKey], new: &[PublicKey]) -> (Vec<PublicKey>, Vec<PublicKey>) {
    let mut all = existing.to_vec();
    let mut added = Vec::new();
    for k in new {
        if !all.iter().any(|e| e.same_key(k)) {
            all.push(k.clone());
            added.push(k.clone());
        }
    }
    (all, added)
}

/// Which keys `ssh-key remove` takes away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// This key (from a `.pub` file or a pasted line).
    Key(PublicKey),
    /// Every key whose comment is exactly this.
    Comment(String),
}

/// `existing` without the selected keys; the keys removed.
pub fn remove_keys(
    existing: &[PublicKey],
    which: &KeySelector,
) -> (Vec<PublicKey>, Vec<PublicKey>) {
    existing.iter().cloned().partition(|k| match which {
        KeySelector::Key(sel) => !k.same_key(sel),
        KeySelector::Comment(c) => k.comment != *c,
    })
}

/// The ssh host alias of a workspace pod: `NAME.NAMESPACE.devenv` for ordinal 0 (what
/// users type: `ssh alice.team.devenv`), `POD.NAMESPACE.devenv` for the others
/// (`team-2.team.devenv`). The part before the namespace is a valid `exec` target, so
/// the ProxyCommand resolves it the way `exec` would.
pub fn host_alias(workspace: &str, pod: &str, namespace: &str) -> String {
    let target = if pod == format!("{workspace}-0") {
        workspace
    } else {
        pod
    };
    format!("{target}.{namespace}.{HOST_SUFFIX}")
}

/// The `exec`-style target of a host alias of `namespace` (`alice.team.devenv` → `alice`).
pub fn alias_target<'a>(alias: &'a str, namespace: &str) -> Option<&'a str> {
    alias
        .strip_suffix(HOST_SUFFIX)?
        .strip_suffix('.')?
        .strip_suffix(namespace)?
        .strip_suffix('.')
        .filter(|t| !t.is_empty())
}

/// The platform whose OpenSSH client runs the `ProxyCommand`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPlatform {
    /// Linux, macOS, BSD: OpenSSH runs the command with `$SHELL -c`.
    Unix,
    /// Windows' OpenSSH starts the command itself (CreateProcess), splitting it the way
    /// C programs split their command line: double quotes, backslashes literal.
    Windows,
}

impl ClientPlatform {
    /// The platform this program was built for.
    pub fn current() -> ClientPlatform {
        if cfg!(windows) {
            ClientPlatform::Windows
        } else {
            ClientPlatform::Unix
        }
    }
}

/// One word of a `ProxyCommand`, quoted for `platform`, with `%` doubled (ssh expands
/// `%h`, `%p`... in the command before running it).
pub fn quote_word(word: &str, platform: ClientPlatform) -> String {
    let quoted = match platform {
        ClientPlatform::Unix => {
            if !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b))
            {
                word.to_owned()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        }
        ClientPlatform::Windows => {
            if !word.is_empty() && !word.contains([' ', '\t', '"']) {
                word.to_owned()
            } else {
                format!("\"{}\"", word.replace('"', "\\\""))
            }
        }
    };
    quoted.replace('%', "%%")
}

/// A value in ssh_config (a path, say): double-quoted when it has spaces.
fn config_value(value: &str) -> String {
    if value.contains([' ', '\t']) {
        format!("\"{value}\"")
    } else {
        value.to_owned()
    }
}

/// Everything one `Host` block of the generated ssh config says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub alias: String,
    /// The `exec`-style target the ProxyCommand connects to (`alice`, `team-2`).
    pub target: String,
    pub namespace: String,
    /// The plugin's own path, so the ProxyCommand does not depend on `PATH`.
    pub plugin: String,
    /// Pinned so that the entry keeps working when the current context changes.
    pub context: Option<String>,
    pub kubeconfig: Option<String>,
    /// The workspace user sshd logs in (the image's user: `dev` by default).
    pub user: String,
    /// The known_hosts file the plugin writes the host keys into.
    pub known_hosts: String,
    /// `LocalForward LOCAL 127.0.0.1:REMOTE` lines.
    pub local_forwards: Vec<(u16, u16)>,
}

/// The `ProxyCommand` of `entry`: the plugin, pinned to its kubeconfig, context and
/// namespace, in `ssh --stdio` mode.
pub fn proxy_command(entry: &HostEntry, platform: ClientPlatform) -> String {
    let mut words: Vec<&str> = vec![&entry.plugin];
    if let Some(k) = &entry.kubeconfig {
        words.extend(["--kubeconfig", k]);
    }
    if let Some(c) = &entry.context {
        words.extend(["--context", c]);
    }
    words.extend([
        "--namespace",
        &entry.namespace,
        "ssh",
        "--stdio",
        &entry.target,
    ]);
    words
        .iter()
        .map(|w| quote_word(w, platform))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `Host` block of `entry`. Host keys are checked strictly against the plugin's
/// known_hosts (which it fills from the API, never on first use), under the alias.
pub fn host_block(entry: &HostEntry, platform: ClientPlatform) -> String {
    let mut out = format!(
        "Host {alias}\n  HostName {alias}\n  User {user}\n  HostKeyAlias {alias}\n  \
         UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  CheckHostIP no\n  \
         ProxyCommand {proxy}\n  ServerAliveInterval 30\n",
        alias = entry.alias,
        user = entry.user,
        known = config_value(&entry.known_hosts),
        proxy = proxy_command(entry, platform),
    );
    for (local, remote) in &entry.local_forwards {
        out.push_str(&format!(
            "  LocalForward 127.0.0.1:{local} 127.0.0.1:{remote}\n"
        ));
    }
    out
}

/// The known_hosts lines of `alias` for `keys`.
pub fn known_hosts_lines(alias: &str, keys: &[PublicKey]) -> String {
    keys.iter()
        .map(|k| format!("{alias} {} {}\n", k.kind, k.data))
        .collect()
}

/// The keys known_hosts `text` holds for `alias` (plain, unhashed entries: the plugin's
/// own file; a `@revoked` or `@cert-authority` line is not a host key).
pub fn known_host_keys(text: &str, alias: &str) -> Vec<PublicKey> {
    text.lines()
        .filter_map(|line| {
            let (hosts, key) = line.trim().split_once(char::is_whitespace)?;
            hosts
                .split(',')
                .any(|h| h == alias)
                .then(|| PublicKey::parse(key).ok())
                .flatten()
        })
        .collect()
}

/// What to do with known_hosts for a host, given the keys read through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPlan {
    /// Nothing known yet: add these lines (trusted because the API said so, over TLS,
    /// to a user the cluster authenticated: no trust on first use).
    Add(String),
    /// Known, and one of the known keys is served: nothing to do.
    Known,
    /// Known with other keys: leave the file alone, so that ssh refuses with its usual
    /// warning; the user decides (`ssh-config --refresh-host-keys`).
    Changed,
}

/// Compares known_hosts `text` for `alias` with `served` (read through the API).
pub fn plan_host_keys(text: &str, alias: &str, served: &[PublicKey]) -> HostKeyPlan {
    let known = known_host_keys(text, alias);
    if known.is_empty() {
        return HostKeyPlan::Add(known_hosts_lines(alias, served));
    }
    if served.iter().any(|s| known.iter().any(|k| k.same_key(s))) {
        HostKeyPlan::Known
    } else {
        HostKeyPlan::Changed
    }
}

/// known_hosts `text` without the lines of `alias` (for a deliberate refresh).
pub fn forget_host(text: &str, alias: &str) -> String {
    text.lines()
        .filter(|line| {
            line.trim()
                .split_once(char::is_whitespace)
                .is_none_or(|(hosts, _)| !hosts.split(',').any(|h| h == alias))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Replaces (or appends) the block between `# BEGIN devenv NAME` and `# END devenv NAME`
/// markers in a generated config file, so re-writing one workspace leaves the others.
pub fn upsert_block(file: &str, name: &str, block: &str) -> String {
    let begin = format!("# BEGIN devenv {name}");
    let end = format!("# END devenv {name}");
    let mut out = String::new();
    let mut skipping = false;
    let mut replaced = false;
    for line in file.lines() {
        if line == begin {
            skipping = true;
            if !replaced {
                out.push_str(&format!("{begin}\n{block}{end}\n"));
                replaced = true;
            }
            continue;
        }
        if skipping {
            if line == end {
                skipping = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !replaced {
        out.push_str(&format!("{begin}\n{block}{end}\n"));
    }
    out
}

/// The line that makes `~/.ssh/config` read the generated file, and whether `config`
/// already has it. OpenSSH reads `Include` relative to `~/.ssh`, or absolute.
pub fn include_line(generated: &str) -> String {
    format!("Include {}", config_value(generated))
}

/// `~/.ssh/config` with the `Include` of the generated file at the top (an `Include`
/// inside a `Host` block would apply only there), unless it is already there.
pub fn with_include(config: &str, generated: &str) -> Option<String> {
    let line = include_line(generated);
    if config.lines().any(|l| l.trim() == line) {
        return None;
    }
    Some(format!(
        "# Added by kubectl devenv ssh-config --write: the workspaces' Host blocks.\n{line}\n\n{config}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `ssh-keygen -t ed25519 -C alice@laptop` (and `-C bob@desk`).
    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGe747Fe7kLHr8edLEssr7E+r9XHAak6P7Xg4gRdA3Ci alice@laptop";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIChiCTdA6C65pK+GPzlo5sOaAHqH/xv1+gHSS3OJoi5+ bob@desk";

    fn key(s: &str) -> PublicKey {
        PublicKey::parse(s).expect("a key")
    }

    #[test]
    fn public_keys_parse_and_bad_lines_say_why() {
        let k = key(ED);
        assert_eq!(k.kind, "ssh-ed25519");
        assert_eq!(k.comment, "alice@laptop");
        assert_eq!(k.line(), ED);
        assert_eq!(
            key(&format!("  {}  ", ED.replace(" alice@laptop", ""))).comment,
            ""
        );
        assert_eq!(PublicKey::parse(""), Err(KeyError::Empty));
        assert_eq!(
            PublicKey::parse("-----BEGIN OPENSSH PRIVATE KEY-----"),
            Err(KeyError::PrivateKey)
        );
        assert!(matches!(
            PublicKey::parse("ssh-dss AAAA"),
            Err(KeyError::UnknownType(t)) if t == "ssh-dss"
        ));
        assert_eq!(
            PublicKey::parse("ssh-ed25519"),
            Err(KeyError::MissingData("ssh-ed25519".into()))
        );
        assert_eq!(
            PublicKey::parse("ssh-ed25519 !!!"),
            Err(KeyError::NotBase64)
        );
        // Truncated paste: valid base64 whose length prefix runs past the end.
        assert_eq!(
            PublicKey::parse("ssh-ed25519 AAAAC3Nz"),
            Err(KeyError::NotBase64)
        );
        // An ed25519 blob labelled RSA.
        assert!(matches!(
            PublicKey::parse(&ED.replace("ssh-ed25519", "ssh-rsa")),
            Err(KeyError::Mismatch { inside, .. }) if inside == "ssh-ed25519"
        ));
        let msg = PublicKey::parse("ssh-dss AAAA").unwrap_err().to_string();
        assert!(msg.contains("ssh-ed25519"), "{msg}");
    }

    #[test]
    fn authorized_keys_add_remove_and_keep_other_lines_out() {
        let (keys, bad) = parse_authorized_keys(&format!("# header\n\n{ED}\nnot a key\n{ED2}\n"));
        assert_eq!(keys.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 4);
        // Adding a key already there (another comment) adds nothing.
        let again = key(&ED.replace("alice@laptop", "other comment"));
        let (all, added) = add_keys(&keys, &[again]);
        assert_eq!(all.len(), 2);
        assert!(added.is_empty());
        let (one, removed) = remove_keys(&all, &KeySelector::Comment("bob@desk".into()));
        assert_eq!((one.len(), removed.len()), (1, 1));
        assert_eq!(removed[0].comment, "bob@desk");
        let (none, removed) = remove_keys(&one, &KeySelector::Key(key(ED)));
        assert!(none.is_empty());
        assert_eq!(removed.len(), 1);
        let text = render_authorized_keys(&all);
        assert!(text.starts_with("# Managed by kubectl devenv"));
        assert_eq!(parse_authorized_keys(&text).0, all);
    }

    #[test]
    fn aliases_name_the_namespace_and_read_back_as_exec_targets() {
        assert_eq!(host_alias("alice", "alice-0", "team"), "alice.team.devenv");
        assert_eq!(host_alias("team", "team-2", "dev"), "team-2.dev.devenv");
        assert_eq!(alias_target("alice.team.devenv", "team"), Some("alice"));
        assert_eq!(alias_target("team-2.dev.devenv", "dev"), Some("team-2"));
        assert_eq!(alias_target("alice.other.devenv", "team"), None);
        assert_eq!(alias_target(".team.devenv", "team"), None);
        assert_eq!(alias_target("alice.team.example", "team"), None);
    }

    fn entry() -> HostEntry {
        HostEntry {
            alias: "alice.team.devenv".into(),
            target: "alice".into(),
            namespace: "team".into(),
            plugin: "/home/al ice/bin/kubectl-devenv".into(),
            context: Some("prod's".into()),
            kubeconfig: Some("/home/al ice/.kube/config".into()),
            user: "dev".into(),
            known_hosts: "/home/al ice/.config/kubectl-devenv/known_hosts".into(),
            local_forwards: vec![(8080, 8080)],
        }
    }

    #[test]
    fn proxy_command_is_quoted_for_the_client_platform() {
        assert_eq!(
            proxy_command(&entry(), ClientPlatform::Unix),
            "'/home/al ice/bin/kubectl-devenv' --kubeconfig '/home/al ice/.kube/config' \
             --context 'prod'\\''s' --namespace team ssh --stdio alice"
        );
        let mut e = entry();
        e.plugin = r"C:\Users\Al Ice\kubectl-devenv.exe".into();
        e.kubeconfig = Some(r"C:\Users\Al Ice\.kube\config".into());
        e.context = Some("100%".into());
        assert_eq!(
            proxy_command(&e, ClientPlatform::Windows),
            r#""C:\Users\Al Ice\kubectl-devenv.exe" --kubeconfig "C:\Users\Al Ice\.kube\config" --context 100%% --namespace team ssh --stdio alice"#
        );
        assert_eq!(quote_word("", ClientPlatform::Unix), "''");
        assert_eq!(quote_word("a%h", ClientPlatform::Unix), "'a%%h'");
    }

    #[test]
    fn host_block_pins_strict_host_keys_and_forwards_loopback_only() {
        let b = host_block(&entry(), ClientPlatform::Unix);
        assert!(b.starts_with("Host alice.team.devenv\n"), "{b}");
        for line in [
            "  User dev\n",
            "  HostKeyAlias alice.team.devenv\n",
            "  UserKnownHostsFile \"/home/al ice/.config/kubectl-devenv/known_hosts\"\n",
            "  StrictHostKeyChecking yes\n",
            "  LocalForward 127.0.0.1:8080 127.0.0.1:8080\n",
        ] {
            assert!(b.contains(line), "{line:?} in\n{b}");
        }
        assert!(
            b.contains("  ProxyCommand '/home/al ice/bin/kubectl-devenv' "),
            "{b}"
        );
    }

    #[test]
    fn host_keys_are_added_once_and_a_change_is_left_for_ssh_to_refuse() {
        let served = vec![key(ED)];
        let HostKeyPlan::Add(lines) = plan_host_keys("", "a.ns.devenv", &served) else {
            panic!("nothing known: add")
        };
        let bare = ED.replace(" alice@laptop", "");
        assert_eq!(lines, format!("a.ns.devenv {bare}\n"));
        let file = format!("other.ns.devenv {ED2}\n{lines}");
        assert_eq!(known_host_keys(&file, "a.ns.devenv"), vec![key(&bare)]);
        assert_eq!(
            plan_host_keys(&file, "a.ns.devenv", &served),
            HostKeyPlan::Known
        );
        assert_eq!(
            plan_host_keys(&file, "a.ns.devenv", &[key(ED2)]),
            HostKeyPlan::Changed
        );
        let forgotten = forget_host(&file, "a.ns.devenv");
        assert_eq!(forgotten, format!("other.ns.devenv {ED2}\n"));
    }

    #[test]
    fn generated_config_blocks_are_replaced_in_place_and_included_once() {
        let one = upsert_block("", "a", "Host a\n");
        let two = upsert_block(&one, "b", "Host b\n");
        let again = upsert_block(&two, "a", "Host a2\n");
        assert_eq!(
            again,
            "# BEGIN devenv a\nHost a2\n# END devenv a\n# BEGIN devenv b\nHost b\n# END devenv b\n"
        );
        let cfg = with_include("Host x\n  User y\n", "~/.ssh/devenv.config").expect("added");
        assert!(
            cfg.contains("Include ~/.ssh/devenv.config\n\nHost x"),
            "{cfg}"
        );
        assert_eq!(with_include(&cfg, "~/.ssh/devenv.config"), None);
    }
}
