//! `kubectl devenv ssh`, `ssh-config`, `ssh-key`, `port-forward` and `code`: SSH and
//! ports of a workspace through the API server, with nothing exposed and the user's own
//! RBAC as the gate.
//!
//! * The tunnel is `pods/portforward` (kube's `Portforwarder`): `ssh --stdio TARGET` is the
//!   `ProxyCommand` of the generated ssh config and carries the connection to sshd on
//!   2222; while it is open it records activity, as `exec` does.
//! * Host keys are read through the API (`pods/exec`: the key files on the workspace's
//!   config volume) into the plugin's own known_hosts, never trusted on first use; a key
//!   that changed is left for ssh to refuse with its usual warning.
//! * Public keys are kept on the workspace's config volume, written through `exec`; sshd
//!   reads them at every login (no restart).
//!
//! The files: `$XDG_CONFIG_HOME/kubectl-devenv/` (default `~/.config/kubectl-devenv/`):
//! `ssh_config` (one `Host` block per workspace pod, between markers) and `known_hosts`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;

use devenv_shared::build::ssh::{
    self as sshb, ClientPlatform, HostEntry, HostKeyPlan, KeySelector, PublicKey,
    AUTHORIZED_KEYS_IN_CONFIG, HOST_KEYS_IN_CONFIG, SSH_PORT,
};
use devenv_shared::model::keys::{WORKSPACE_CONTAINER, WORKSPACE_LABEL};

use crate::cli::{
    ChangeArgs, CodeArgs, DryRun, GlobalArgs, PortForwardArgs, SshArgs, SshConfigArgs,
    SshKeyAddArgs, SshKeyListArgs, SshKeyRemoveArgs, StopStartArgs,
};
use crate::client::{self, Cluster};
use crate::commands::exec::{heartbeat, idle_timeout, resolve_pod};
use crate::error::{ApiCall, Error};
use crate::exec::{bridge_stdio, capture};
use crate::{activity, wait};

/// The workspace's HTTP port, `port-forward`'s default.
const HTTP_PORT: u16 = 8080;

/// The plugin's SSH files.
#[derive(Debug, Clone)]
pub struct SshFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub known_hosts: PathBuf,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

impl SshFiles {
    /// `$XDG_CONFIG_HOME/kubectl-devenv`, else `~/.config/kubectl-devenv`.
    pub fn locate() -> Result<SshFiles, Error> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".config")))
            .ok_or_else(|| {
                Error::Usage(
                    "cannot find a home directory for the ssh files: set HOME (or XDG_CONFIG_HOME)"
                        .into(),
                )
            })?;
        let dir = base.join("kubectl-devenv");
        Ok(SshFiles {
            config: dir.join("ssh_config"),
            known_hosts: dir.join("known_hosts"),
            dir,
        })
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Other(anyhow::anyhow!("{what} {}: {e}", path.display()))
}

fn read_or_empty(path: &Path) -> Result<String, Error> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io_error("reading", path, e)),
    }
}

/// Writes through a temporary file and a rename: a file half-written is never read.
fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
    }
    let tmp = path.with_extension("devenv-tmp");
    std::fs::write(&tmp, text).map_err(|e| io_error("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error("renaming into", path, e))
}

/// What the plugin learns of a workspace pod before ssh connects.
#[derive(Debug, Clone)]
struct PodSsh {
    /// The `exec`-style target of the alias (`alice`, `team-2`).
    target: String,
    alias: String,
    /// The user sshd runs as (the only one it can log in).
    user: String,
    host_keys: Vec<PublicKey>,
}

/// The config volume's directory in the pod, as the image's entrypoint computes it.
const CONFIG_DIR_SH: &str = "${DEVENV_CONFIG_DIR:-$HOME/.config}";

/// How long after its workspace container started a pod's sshd may still be making host
/// keys: the entrypoint generates three on a first start (RSA takes seconds on a busy
/// node), so `create --wait && ssh` right away waits for them instead of failing.
const SSHD_START_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads the user and the host keys of the pod `target` names, through exec; on a pod
/// whose workspace container started less than [`SSHD_START_GRACE`] ago, waits for them.
async fn read_pod_ssh(cluster: &Cluster, target: &str) -> Result<PodSsh, Error> {
    let (pod, workspace) = resolve_pod(cluster, target).await?;
    let mut said = false;
    let (user, host_keys) = loop {
        let (user, keys) = read_user_and_host_keys(cluster, &pod).await?;
        if !user.is_empty() && !keys.is_empty() {
            break (user, keys);
        }
        let starting = workspace_started_at(cluster, &pod)
            .await
            .and_then(|t| Timestamp::now().duration_since(t).try_into().ok())
            .is_some_and(|age: std::time::Duration| age < SSHD_START_GRACE);
        if !starting {
            return Err(Error::Usage(format!(
                "pod {pod} has no SSH host keys in ~/.config/{HOST_KEYS_IN_CONFIG}: its image does \
                 not run the devenv sshd on port {SSH_PORT} (the default workspace image does; see \
                 images/README.md for what a workspace image needs)"
            )));
        }
        if !said {
            eprintln!(
                "kubectl devenv: pod {pod} has just started; waiting for its sshd's host keys"
            );
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    let alias = sshb::host_alias(&workspace, &pod, &cluster.namespace);
    let target = sshb::alias_target(&alias, &cluster.namespace)
        .unwrap_or(&pod)
        .to_owned();
    Ok(PodSsh {
        target,
        alias,
        user,
        host_keys,
    })
}

/// `id -un` and the host public keys of `pod`, through exec (empty when there are none).
async fn read_user_and_host_keys(
    cluster: &Cluster,
    pod: &str,
) -> Result<(String, Vec<PublicKey>), Error> {
    let script = format!(
        "id -un; cat {CONFIG_DIR_SH}/{HOST_KEYS_IN_CONFIG}/ssh_host_*_key.pub 2>/dev/null; true"
    );
    let got = capture(
        cluster.client.clone(),
        &cluster.namespace,
        pod,
        vec!["sh".into(), "-c".into(), script],
        None,
    )
    .await
    .map_err(|e| exec_error(cluster, pod, e))?;
    let mut lines = got.stdout.lines();
    let user = lines.next().unwrap_or_default().trim().to_owned();
    let (host_keys, _) = sshb::parse_authorized_keys(&lines.collect::<Vec<_>>().join("\n"));
    Ok((user, host_keys))
}

/// When the workspace container of `pod` started running, if it is running.
async fn workspace_started_at(cluster: &Cluster, pod: &str) -> Option<Timestamp> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let pod = api.get_opt(pod).await.ok()??;
    pod.status?
        .container_statuses?
        .into_iter()
        .find(|c| c.name == WORKSPACE_CONTAINER)?
        .state?
        .running?
        .started_at
        .map(|t| t.0)
}

/// An exec failure, with the permission named when RBAC refused it.
fn exec_error(cluster: &Cluster, pod: &str, e: anyhow::Error) -> Error {
    let text = crate::error::chain(e.as_ref());
    if text.contains("403") || text.to_lowercase().contains("forbidden") {
        return Error::Forbidden {
            verb: "create".into(),
            resource: "pods/exec".into(),
            namespace: Some(cluster.namespace.clone()),
            user: "you".into(),
        };
    }
    Error::Other(anyhow::anyhow!("exec in pod {pod}: {text}"))
}

/// Parses `[LOCAL:]REMOTE` port pairs (`8080`, `9000:8080`, `0:8080`).
pub fn parse_forward(spec: &str) -> Result<(u16, u16), Error> {
    let bad = || {
        Error::Usage(format!(
            "invalid port forward {spec:?}: expected [LOCAL:]REMOTE, e.g. 8080 or 9000:8080 \
             (LOCAL 0 picks a free port)"
        ))
    };
    let (local, remote) = match spec.split_once(':') {
        Some((l, r)) => (
            l.parse::<u16>().map_err(|_| bad())?,
            r.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = spec.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if remote == 0 {
        return Err(bad());
    }
    Ok((local, remote))
}

/// The kubeconfig and context the ProxyCommand is pinned to.
fn host_entry(
    global: &GlobalArgs,
    cluster: &Cluster,
    pod: &PodSsh,
    files: &SshFiles,
    local_forwards: Vec<(u16, u16)>,
) -> Result<HostEntry, Error> {
    let plugin = std::env::current_exe()
        .map_err(|e| Error::Other(anyhow::anyhow!("cannot find this program's path: {e}")))?;
    let (context, kubeconfig) = client::pinned_context(global);
    Ok(HostEntry {
        alias: pod.alias.clone(),
        target: pod.target.clone(),
        namespace: cluster.namespace.clone(),
        plugin: plugin.display().to_string(),
        context,
        kubeconfig: kubeconfig.map(|k| k.display().to_string()),
        user: pod.user.clone(),
        known_hosts: files.known_hosts.display().to_string(),
        local_forwards,
    })
}

/// Brings known_hosts in line with the keys read through the API (see [`HostKeyPlan`]).
fn trust_host_keys(files: &SshFiles, pod: &PodSsh, refresh: bool) -> Result<(), Error> {
    let mut text = read_or_empty(&files.known_hosts)?;
    if refresh {
        text = sshb::forget_host(&text, &pod.alias);
    }
    match sshb::plan_host_keys(&text, &pod.alias, &pod.host_keys) {
        HostKeyPlan::Known => Ok(()),
        HostKeyPlan::Add(lines) => {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&lines);
            write_file(&files.known_hosts, &text)
        }
        HostKeyPlan::Changed => {
            eprintln!(
                "kubectl devenv: the host key of {} read through the API is not the one in {}: \
                 ssh will refuse it. If the workspace was re-created, run again with \
                 --refresh-host-keys.",
                pod.alias,
                files.known_hosts.display()
            );
            Ok(())
        }
    }
}

/// Writes the `Host` block of `entry` into the plugin's ssh config.
fn write_host_block(files: &SshFiles, entry: &HostEntry) -> Result<(), Error> {
    let block = sshb::host_block(entry, ClientPlatform::current());
    let text = read_or_empty(&files.config)?;
    write_file(
        &files.config,
        &sshb::upsert_block(&text, &entry.alias, &block),
    )
}

/// The StatefulSet of `workspace` is scaled to zero: stopped or hibernated.
async fn is_stopped(cluster: &Cluster, workspace: &str) -> bool {
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    matches!(
        api.get_opt(workspace).await,
        Ok(Some(sts)) if sts.spec.as_ref().and_then(|s| s.replicas) == Some(0)
    )
}

/// `kubectl devenv ssh TARGET [-- CMD]`, and `--stdio`, its ProxyCommand.
pub async fn ssh(global: &GlobalArgs, args: &SshArgs) -> Result<i32, Error> {
    if args.stdio {
        return stdio(global, &args.target).await;
    }
    let cluster = client::connect(global).await?;
    let (workspace, _) = crate::exec::resolve_pod(&args.target);
    if is_stopped(&cluster, &workspace).await {
        if !args.start {
            return Err(Error::Usage(format!(
                "workspace {workspace} is stopped (or hibernated for inactivity): start it with \
                 kubectl devenv start {workspace}, or run ssh with --start"
            )));
        }
        crate::commands::scale::start(
            global,
            &StopStartArgs {
                name: workspace.clone(),
                change: ChangeArgs {
                    dry_run: DryRun::None,
                    output: None,
                },
            },
        )
        .await?;
        wait::until_ready(&cluster, &workspace, 1, std::time::Duration::from_secs(300)).await?;
    }
    let files = SshFiles::locate()?;
    let pod = read_pod_ssh(&cluster, &args.target).await?;
    let entry = host_entry(global, &cluster, &pod, &files, Vec::new())?;
    write_host_block(&files, &entry)?;
    trust_host_keys(&files, &pod, args.refresh_host_keys)?;
    let mut cmd = std::process::Command::new(ssh_program());
    cmd.arg("-F").arg(&files.config);
    if args.forward_agent {
        cmd.arg("-A");
    }
    for l in &args.local {
        cmd.arg("-L").arg(l);
    }
    for r in &args.remote {
        cmd.arg("-R").arg(r);
    }
    cmd.arg(&pod.alias);
    if !args.command.is_empty() {
        cmd.arg("--").args(&args.command);
    }
    tracing::info!(?cmd, "running ssh");
    let status = cmd.status().map_err(|e| {
        Error::Usage(format!(
            "cannot run {}: {e} (install the OpenSSH client; kubectl devenv exec needs none)",
            ssh_program()
        ))
    })?;
    // ssh exits 255 for its own errors and with the remote command's code otherwise.
    Ok(status.code().unwrap_or(255))
}

/// The OpenSSH client: `$DEVENV_SSH`, else `ssh` on PATH.
fn ssh_program() -> String {
    std::env::var("DEVENV_SSH")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "ssh".into())
}

/// Opens a port-forward of `port` to `pod`; RBAC refusals name the permission.
async fn forward(
    cluster: &Cluster,
    pod: &str,
    port: u16,
) -> Result<(kube::api::Portforwarder, tokio::io::DuplexStream), Error> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut pf = api.portforward(pod, &[port]).await.map_err(|e| {
        let text = crate::error::chain(&e);
        if text.contains("403") || text.to_lowercase().contains("forbidden") {
            Error::Forbidden {
                verb: "create".into(),
                resource: "pods/portforward".into(),
                namespace: Some(cluster.namespace.clone()),
                user: "you".into(),
            }
        } else {
            Error::Other(anyhow::anyhow!(
                "port-forward to pod {pod} port {port}: {text}"
            ))
        }
    })?;
    let stream = pf
        .take_stream(port)
        .ok_or_else(|| Error::Other(anyhow::anyhow!("port-forward gave no stream for {port}")))?;
    Ok((pf, stream))
}

/// How long the tunnel waits for sshd's identification line on one connection.
const BANNER_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// One connection to sshd, proven to be answered: the port-forward, its stream, the
/// bytes sshd sent first (its identification line, which an SSH server sends at once),
/// and the port's error future, still pending.
struct SshdConnection {
    pf: kube::api::Portforwarder,
    stream: tokio::io::DuplexStream,
    first_bytes: Vec<u8>,
    errors: Option<ErrorFuture>,
}

/// The port's error message, once (`None` when the forward ends without one).
type ErrorFuture = futures::future::BoxFuture<'static, Option<String>>;

/// Connects to sshd in `pod` and waits for it to speak first. A workspace container that
/// has just started may still be generating host keys with nothing listening on
/// [`SSH_PORT`]; within [`SSHD_START_GRACE`] of its start the connection is retried every
/// second, so `create --wait` followed at once by `ssh` works. Nothing is read from
/// stdin until sshd has answered: ssh's own identification line waits in the pipe, so
/// a retry loses nothing.
async fn connect_sshd(cluster: &Cluster, pod: &str) -> Result<SshdConnection, Error> {
    use futures::FutureExt;
    use tokio::io::AsyncReadExt;
    let mut said = false;
    loop {
        let (mut pf, mut stream) = forward(cluster, pod, SSH_PORT).await?;
        // Fused: it may complete (with `None`) during the wait and is polled again later.
        let mut errors = pf
            .take_error(SSH_PORT)
            .map(|f| -> ErrorFuture { Box::pin(f.fuse()) });
        let mut buf = vec![0u8; 4096];
        let answer: Result<usize, String> = {
            let first_read = tokio::time::timeout(BANNER_WAIT, stream.read(&mut buf));
            tokio::pin!(first_read);
            let read = match errors.as_mut() {
                Some(errs) => tokio::select! {
                    read = &mut first_read => Ok(read),
                    Some(e) = errs => Err(e),
                },
                None => Ok(first_read.await),
            };
            match read {
                Ok(Ok(Ok(0))) => Err("the connection closed".into()),
                Ok(Ok(Ok(n))) => Ok(n),
                Ok(Ok(Err(e))) => Err(e.to_string()),
                Ok(Err(_)) => Err(format!("no answer in {}s", BANNER_WAIT.as_secs())),
                Err(e) => Err(e),
            }
        };
        let reason = match answer {
            Ok(n) => {
                buf.truncate(n);
                return Ok(SshdConnection {
                    pf,
                    stream,
                    first_bytes: buf,
                    errors,
                });
            }
            Err(reason) => reason,
        };
        pf.abort();
        let starting = workspace_started_at(cluster, pod)
            .await
            .and_then(|t| Timestamp::now().duration_since(t).try_into().ok())
            .is_some_and(|age: std::time::Duration| age < SSHD_START_GRACE);
        if !starting {
            return Err(Error::Usage(format!(
                "nothing answers on port {SSH_PORT} of pod {pod}: {reason}\n  \
                 the workspace image must run sshd on {SSH_PORT} (see images/README.md)"
            )));
        }
        if !said {
            eprintln!("kubectl devenv: pod {pod} has just started; waiting for its sshd");
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// `ssh --stdio TARGET`: the connection to sshd, on stdin/stdout, with the heartbeat.
async fn stdio(global: &GlobalArgs, target: &str) -> Result<i32, Error> {
    use tokio::io::AsyncWriteExt;
    let cluster = client::connect(global).await?;
    let (pod, workspace) = resolve_pod(&cluster, target).await?;
    let interval = activity::heartbeat_interval(idle_timeout(&cluster, global, &workspace).await);
    let mut beat = heartbeat(&cluster, &workspace, interval);
    // Opening a session is use, even while a just-started sshd keeps it waiting: a
    // workspace with a short idle timeout is not stopped under a connecting user.
    (beat.beat)().await;
    let SshdConnection {
        pf,
        stream,
        first_bytes,
        errors,
    } = connect_sshd(&cluster, &pod).await?;
    let tunnel_error =
        |e: std::io::Error| Error::Other(anyhow::anyhow!("ssh tunnel to pod {pod}: {e}"));
    let mut stdout = tokio::io::stdout();
    stdout.write_all(&first_bytes).await.map_err(tunnel_error)?;
    stdout.flush().await.map_err(tunnel_error)?;
    let bridged = bridge_stdio(stream, Some(beat));
    tokio::pin!(bridged);
    let code = match errors {
        Some(errors) => {
            tokio::select! {
                done = &mut bridged => done.map(|()| 0),
                Some(e) = errors => {
                    eprintln!("kubectl devenv: the ssh tunnel to pod {pod} failed: {e}");
                    Ok(1)
                }
            }
        }
        None => bridged.await.map(|()| 0),
    }
    .map_err(tunnel_error)?;
    pf.abort();
    Ok(code)
}

/// The running workspace pods of the namespace, as `exec` targets.
async fn all_targets(cluster: &Cluster) -> Result<Vec<String>, Error> {
    let ns = cluster.namespace.as_str();
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let pods = api
        .list(&kube::api::ListParams::default().labels(WORKSPACE_LABEL))
        .await
        .map_err(cluster.err(ApiCall::new("list", "pods", "Pod").ns(ns)))?;
    Ok(pods
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.metadata.name.clone())
        .collect())
}

/// `kubectl devenv ssh-config [TARGET | --all] [--write]`.
pub async fn ssh_config(global: &GlobalArgs, args: &SshConfigArgs) -> Result<i32, Error> {
    let forwards = args
        .forwards
        .iter()
        .map(|f| parse_forward(f))
        .collect::<Result<Vec<_>, _>>()?;
    let cluster = client::connect(global).await?;
    let files = SshFiles::locate()?;
    let targets = match (&args.target, args.all) {
        (Some(t), _) => vec![t.clone()],
        (None, _) => all_targets(&cluster).await?,
    };
    if targets.is_empty() {
        eprintln!(
            "no running workspace pods in namespace {}",
            cluster.namespace
        );
        return Ok(0);
    }
    let mut blocks = String::new();
    let mut aliases = Vec::new();
    for t in &targets {
        let pod = read_pod_ssh(&cluster, t).await?;
        let entry = host_entry(global, &cluster, &pod, &files, forwards.clone())?;
        trust_host_keys(&files, &pod, args.refresh_host_keys)?;
        if args.write {
            write_host_block(&files, &entry)?;
        }
        blocks.push_str(&sshb::host_block(&entry, ClientPlatform::current()));
        aliases.push(pod.alias);
    }
    if !args.write {
        print!("{blocks}");
        return Ok(0);
    }
    eprintln!(
        "wrote {} to {} (host keys in {})",
        aliases.join(", "),
        files.config.display(),
        files.known_hosts.display()
    );
    include_in_user_config(&files, args.yes)?;
    if let Some(first) = aliases.first() {
        eprintln!(
            "connect with: ssh {first}   (VS Code: kubectl devenv code {})",
            targets[0]
        );
    }
    Ok(0)
}

/// Adds `Include <plugin's ssh_config>` at the top of `~/.ssh/config`, once, with consent.
fn include_in_user_config(files: &SshFiles, yes: bool) -> Result<(), Error> {
    let Some(home) = home() else { return Ok(()) };
    let user_config = home.join(".ssh").join("config");
    let generated = files.config.display().to_string();
    let current = read_or_empty(&user_config)?;
    let Some(updated) = sshb::with_include(&current, &generated) else {
        return Ok(());
    };
    let line = sshb::include_line(&generated);
    let consent = yes || {
        if crate::commands::stdin_is_terminal() {
            eprint!(
                "add `{line}` at the top of {}? [y/N] ",
                user_config.display()
            );
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).is_ok()
                && matches!(answer.trim(), "y" | "Y" | "yes")
        } else {
            false
        }
    };
    if !consent {
        eprintln!(
            "{} does not include the workspaces yet: add this line at its top (or run again \
             with --yes), or use ssh -F {generated}\n  {line}",
            user_config.display()
        );
        return Ok(());
    }
    write_file(&user_config, &updated)?;
    eprintln!("added `{line}` to {}", user_config.display());
    Ok(())
}

/// The pod's authorized_keys file path, for a shell in the pod.
fn authorized_keys_sh() -> String {
    format!("{CONFIG_DIR_SH}/{AUTHORIZED_KEYS_IN_CONFIG}")
}

/// The keys the pod accepts now (the plugin-managed file).
async fn read_keys(cluster: &Cluster, pod: &str) -> Result<Vec<PublicKey>, Error> {
    let script = format!("cat {} 2>/dev/null; true", authorized_keys_sh());
    let got = capture(
        cluster.client.clone(),
        &cluster.namespace,
        pod,
        vec!["sh".into(), "-c".into(), script],
        None,
    )
    .await
    .map_err(|e| exec_error(cluster, pod, e))?;
    Ok(sshb::parse_authorized_keys(&got.stdout).0)
}

/// Replaces the pod's authorized_keys with `keys` (through a temporary file and a
/// rename, mode 0600).
async fn write_keys(cluster: &Cluster, pod: &str, keys: &[PublicKey]) -> Result<(), Error> {
    let file = authorized_keys_sh();
    let script = format!(
        "set -e; umask 077; f={file}; mkdir -p \"$(dirname \"$f\")\"; cat > \"$f.new\"; mv -f \"$f.new\" \"$f\""
    );
    let got = capture(
        cluster.client.clone(),
        &cluster.namespace,
        pod,
        vec!["sh".into(), "-c".into(), script],
        Some(&sshb::render_authorized_keys(keys)),
    )
    .await
    .map_err(|e| exec_error(cluster, pod, e))?;
    if got.code != 0 {
        return Err(Error::Other(anyhow::anyhow!(
            "writing the authorized keys of pod {pod} failed ({}): {}",
            got.code,
            got.stderr.trim()
        )));
    }
    Ok(())
}

/// The public keys in `path`, or a clear error naming the file and the line.
pub fn read_key_file(path: &Path) -> Result<Vec<PublicKey>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error("reading", path, e))?;
    let (keys, bad) = sshb::parse_authorized_keys(&text);
    if let Some((line, why)) = bad.first() {
        return Err(Error::Usage(format!(
            "{}:{line}: not a public key: {why}",
            path.display()
        )));
    }
    if keys.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no public key in it",
            path.display()
        )));
    }
    Ok(keys)
}

/// The user's default public key: the first of ~/.ssh/id_{ed25519,ecdsa,rsa}.pub.
pub fn default_key_file() -> Option<PathBuf> {
    let ssh = home()?.join(".ssh");
    [
        "id_ed25519.pub",
        "id_ecdsa.pub",
        "id_rsa.pub",
        "id_ed25519_sk.pub",
        "id_ecdsa_sk.pub",
    ]
    .iter()
    .map(|f| ssh.join(f))
    .find(|p| p.is_file())
}

/// The key files named, else the default one (saying which), else an error.
pub fn key_files(named: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    match default_key_file() {
        Some(p) => {
            eprintln!("using your public key {}", p.display());
            Ok(vec![p])
        }
        None => Err(Error::Usage(
            "no public key given and none in ~/.ssh (id_ed25519.pub, id_ecdsa.pub, id_rsa.pub): \
             make one with ssh-keygen -t ed25519, or name a .pub file"
                .into(),
        )),
    }
}

/// Adds the keys of `files` to the pod `target` names; what was added.
pub async fn add_keys_to(
    cluster: &Cluster,
    target: &str,
    files: &[PathBuf],
) -> Result<Vec<PublicKey>, Error> {
    let mut new = Vec::new();
    for f in files {
        new.extend(read_key_file(f)?);
    }
    let (pod, _) = resolve_pod(cluster, target).await?;
    let existing = read_keys(cluster, &pod).await?;
    let (all, added) = sshb::add_keys(&existing, &new);
    if !added.is_empty() {
        write_keys(cluster, &pod, &all).await?;
    }
    Ok(added)
}

pub async fn key_add(global: &GlobalArgs, args: &SshKeyAddArgs) -> Result<i32, Error> {
    let files = key_files(&args.keys)?;
    let cluster = client::connect(global).await?;
    let added = add_keys_to(&cluster, &args.target, &files).await?;
    if added.is_empty() {
        println!("{}: already accepts these keys", args.target);
    }
    for k in &added {
        println!("{}: added {}", args.target, k.label());
    }
    Ok(0)
}

pub async fn key_remove(global: &GlobalArgs, args: &SshKeyRemoveArgs) -> Result<i32, Error> {
    let selectors: Vec<KeySelector> = match (&args.key, &args.comment) {
        (Some(path), _) => read_key_file(path)?
            .into_iter()
            .map(KeySelector::Key)
            .collect(),
        (None, Some(c)) => vec![KeySelector::Comment(c.clone())],
        (None, None) => return Err(Error::Usage("name a .pub file or --comment".into())),
    };
    let cluster = client::connect(global).await?;
    let (pod, _) = resolve_pod(&cluster, &args.target).await?;
    let mut keys = read_keys(&cluster, &pod).await?;
    let mut removed = Vec::new();
    for s in &selectors {
        let (kept, gone) = sshb::remove_keys(&keys, s);
        keys = kept;
        removed.extend(gone);
    }
    if removed.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no such key among the {} it accepts (see kubectl devenv ssh-key list {})",
            args.target,
            keys.len(),
            args.target
        )));
    }
    write_keys(&cluster, &pod, &keys).await?;
    for k in &removed {
        println!("{}: removed {}", args.target, k.label());
    }
    Ok(0)
}

pub async fn key_list(global: &GlobalArgs, args: &SshKeyListArgs) -> Result<i32, Error> {
    let cluster = client::connect(global).await?;
    let (pod, _) = resolve_pod(&cluster, &args.target).await?;
    for k in read_keys(&cluster, &pod).await? {
        println!("{}", k.line());
    }
    Ok(0)
}

/// `kubectl devenv port-forward TARGET [LOCAL:]REMOTE...`: listens on 127.0.0.1 and opens
/// a port-forward per connection, resolving the pod each time (so a restarted pod is
/// reached again), until interrupted.
pub async fn port_forward(global: &GlobalArgs, args: &PortForwardArgs) -> Result<i32, Error> {
    let pairs = if args.ports.is_empty() {
        vec![(HTTP_PORT, HTTP_PORT)]
    } else {
        args.ports
            .iter()
            .map(|p| parse_forward(p))
            .collect::<Result<Vec<_>, _>>()?
    };
    let cluster = client::connect(global).await?;
    // Fail now, not at the first connection, when the workspace is not there.
    resolve_pod(&cluster, &args.target).await?;
    let mut tasks = Vec::new();
    for (local, remote) in pairs {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", local))
            .await
            .map_err(|e| Error::Usage(format!("cannot listen on 127.0.0.1:{local}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| Error::Other(e.into()))?;
        println!("Forwarding from {bound} -> {remote}");
        let (cluster, target) = (cluster.clone(), args.target.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((mut tcp, peer)) = listener.accept().await else {
                    continue;
                };
                let (cluster, target) = (cluster.clone(), target.clone());
                tokio::spawn(async move {
                    let opened = match resolve_pod(&cluster, &target).await {
                        Ok((pod, _)) => forward(&cluster, &pod, remote).await,
                        Err(e) => Err(e),
                    };
                    match opened {
                        Ok((pf, mut stream)) => {
                            if let Err(e) =
                                tokio::io::copy_bidirectional(&mut tcp, &mut stream).await
                            {
                                tracing::debug!(%peer, error = %e, "forwarded connection ended");
                            }
                            pf.abort();
                        }
                        Err(e) => eprintln!("kubectl devenv: connection from {peer}: {e}"),
                    }
                });
            }
        }));
    }
    let _ = tokio::signal::ctrl_c().await;
    for t in tasks {
        t.abort();
    }
    Ok(0)
}

/// `kubectl devenv code TARGET [PATH]`: VS Code Remote-SSH on the workspace.
pub async fn code(global: &GlobalArgs, args: &CodeArgs) -> Result<i32, Error> {
    let cluster = client::connect(global).await?;
    let files = SshFiles::locate()?;
    let pod = read_pod_ssh(&cluster, &args.target).await?;
    let entry = host_entry(global, &cluster, &pod, &files, Vec::new())?;
    write_host_block(&files, &entry)?;
    trust_host_keys(&files, &pod, false)?;
    include_in_user_config(&files, false)?;
    let remote = format!("ssh-remote+{}", pod.alias);
    let program = if cfg!(windows) { "code.cmd" } else { "code" };
    match std::process::Command::new(program)
        .args(["--remote", &remote, &args.path])
        .stdin(Stdio::null())
        .status()
    {
        Ok(s) => Ok(s.code().unwrap_or(1)),
        Err(_) => {
            println!("code --remote {remote} {}", args.path);
            eprintln!("(VS Code's `code` is not on PATH: run the line above where it is)");
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_parse_and_bad_ones_say_the_grammar() {
        assert_eq!(parse_forward("8080").ok(), Some((8080, 8080)));
        assert_eq!(parse_forward("9000:8080").ok(), Some((9000, 8080)));
        assert_eq!(parse_forward("0:22").ok(), Some((0, 22)));
        for bad in ["", "x", "1:2:3", "70000", "8080:0", ":80"] {
            let e = parse_forward(bad).expect_err(bad).to_string();
            assert!(e.contains("[LOCAL:]REMOTE"), "{bad}: {e}");
        }
    }
}
