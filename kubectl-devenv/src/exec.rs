//! `kubectl devenv exec` / `kubectl devenv shell`: run a command in a
//! workspace pod over the Kubernetes exec subresource and return its exit
//! code, the way `kubectl exec` does.
//!
//! * The command runs in the container named [`WORKSPACE_CONTAINER`], or in
//!   the pod's first container when there is none by that name.
//! * With `tty`, the local terminal is put in raw mode for the session (a
//!   guard restores it on every exit path: return, error, unwinding panic),
//!   local stdin goes to the remote terminal, the remote terminal's output to
//!   local stdout, and the local window size is sent at start and on every
//!   `SIGWINCH`. When local stdin is not a terminal, `tty` is dropped with a
//!   warning, as kubectl does.
//! * Without `tty`, remote stdout and stderr stay separate. Local stdin is
//!   passed through only when it is not a terminal (a pipe or a file:
//!   `echo hi | kubectl devenv exec w -- cat` prints `hi`); its EOF closes the
//!   remote stdin.
//! * The exit code comes from the exec status channel (see
//!   [`exit_code_from_status`]).
//!
//! Windows has no raw mode/`SIGWINCH` support here: a `tty` session there
//! falls back to a non-tty one.

use std::future::Future;
use std::io::{IsTerminal, Read};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use devenv_shared::model::keys::WORKSPACE_CONTAINER;

/// Exit code reported when local stdout/stderr is closed under us
/// (`kubectl devenv exec w -- yes | head`): 128 + SIGPIPE, as a shell reports.
pub const BROKEN_PIPE_EXIT_CODE: i32 = 141;

/// Shell script behind [`default_shell_command`].
pub const DEFAULT_SHELL_SCRIPT: &str = "if command -v zsh >/dev/null 2>&1; then exec zsh -l; \
elif command -v bash >/dev/null 2>&1; then exec bash -l; \
else exec sh -l; fi";

/// Size of the in-memory pipes between the websocket task and our pumps
/// (kube's default is 1 KiB, which costs throughput on bulk output).
const PIPE_BUF_SIZE: usize = 64 * 1024;
/// Read size for local stdin and for remote output.
const CHUNK_SIZE: usize = 16 * 1024;
/// Heartbeats are never sent more often than this.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a finished session still waits for its first heartbeat to land.
const FIRST_BEAT_GRACE: Duration = Duration::from_secs(3);

/// The command of `kubectl devenv shell`: the image's zsh, else bash, else sh,
/// as a login shell.
pub fn default_shell_command() -> Vec<String> {
    vec![
        "sh".to_string(),
        "-c".to_string(),
        DEFAULT_SHELL_SCRIPT.to_string(),
    ]
}

/// Maps a user's argument to `(statefulset, pod)`.
///
/// * `alice` → `("alice", "alice-0")`: a workspace name; its pod is ordinal 0.
/// * `alice-2` → `("alice", "alice-2")`: a name ending in `-<ordinal>` is
///   taken as a pod name. The ordinal must be canonical (`0` or no leading
///   zero) and fit an `i32`, as StatefulSet ordinals do.
///
/// Ambiguity: a workspace *named* `team-2` is addressed as `team-2-0`, because
/// `team-2` reads as ordinal 2 of workspace `team`. Callers that take user
/// input should try [`candidates`] in order and use the first pod that
/// exists. `resolve_pod(pod_name).0` is always the statefulset owning a pod
/// name produced here.
pub fn resolve_pod(workspace_or_pod: &str) -> (String, String) {
    match split_ordinal(workspace_or_pod) {
        Some((statefulset, _)) => (statefulset.to_string(), workspace_or_pod.to_string()),
        None => (
            workspace_or_pod.to_string(),
            format!("{workspace_or_pod}-0"),
        ),
    }
}

/// Pod names to try, in order, for a user's argument: [`resolve_pod`]'s pod
/// first, then, when the argument ends in `-<ordinal>`, ordinal 0 of a
/// workspace named exactly like the argument (`team-2` → `team-2`,
/// `team-2-0`).
pub fn candidates(input: &str) -> Vec<String> {
    let (_, pod) = resolve_pod(input);
    let mut out = vec![pod];
    if split_ordinal(input).is_some() {
        out.push(format!("{input}-0"));
    }
    out
}

/// `name-<ordinal>` → `(name, ordinal)`; `None` when there is no canonical
/// ordinal suffix or nothing before it.
fn split_ordinal(input: &str) -> Option<(&str, &str)> {
    let (base, ordinal) = input.rsplit_once('-')?;
    let canonical = !ordinal.is_empty()
        && ordinal.bytes().all(|b| b.is_ascii_digit())
        && (ordinal == "0" || !ordinal.starts_with('0'))
        && ordinal.parse::<i32>().is_ok();
    (canonical && !base.is_empty()).then_some((base, ordinal))
}

/// The exit code carried by an exec status, as kubectl reads it:
/// `Success` → 0; `Failure` with reason `NonZeroExitCode` → the number in the
/// cause whose reason is `ExitCode`; any other status → an error carrying the
/// status message (e.g. the runtime could not start the command).
pub fn exit_code_from_status(status: &Status) -> anyhow::Result<i32> {
    let message = status
        .message
        .as_deref()
        .filter(|m| !m.is_empty())
        .unwrap_or("no message");
    match status.status.as_deref() {
        Some("Success") => Ok(0),
        Some("Failure") if status.reason.as_deref() == Some("NonZeroExitCode") => {
            let cause = status
                .details
                .as_ref()
                .and_then(|d| d.causes.as_deref())
                .unwrap_or_default()
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"));
            let Some(code) = cause.and_then(|c| c.message.as_deref()) else {
                bail!("remote command failed without an exit code: {message}");
            };
            code.trim()
                .parse::<i32>()
                .with_context(|| format!("remote command reported a bad exit code {code:?}"))
        }
        Some("Failure") => match status.reason.as_deref().filter(|r| !r.is_empty()) {
            Some(reason) => bail!("remote command failed ({reason}): {message}"),
            None => bail!("remote command failed: {message}"),
        },
        other => bail!("unexpected exec status {other:?}: {message}"),
    }
}

/// The container to exec in: [`WORKSPACE_CONTAINER`] if the pod has it, else
/// its first container.
pub fn pick_container(pod: &Pod) -> anyhow::Result<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("<unnamed>");
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .find(|c| c.name == WORKSPACE_CONTAINER)
        .or_else(|| containers.first())
        .map(|c| c.name.clone())
        .ok_or_else(|| anyhow!("pod {name} has no containers"))
}

/// Fails with a readable message when the pod or the container cannot take
/// an exec ([`crate::pod_status::exec_refusal`]).
fn check_running(pod: &Pod, container: &str) -> anyhow::Result<()> {
    match crate::pod_status::exec_refusal(pod, container) {
        Some(why) => bail!("{why}"),
        None => Ok(()),
    }
}

/// The container of `pod` to exec in, once the pod can take an exec.
async fn running_container(pods: &Api<Pod>, namespace: &str, pod: &str) -> anyhow::Result<String> {
    let pod_object = pods
        .get(pod)
        .await
        .with_context(|| format!("getting pod {namespace}/{pod}"))?;
    let container = pick_container(&pod_object)?;
    check_running(&pod_object, &container)?;
    Ok(container)
}

/// A terminal session for the portal's browser terminal: `command` in `pod` with a tty,
/// its stdin and stdout, the same container choice, running check and activity heartbeat
/// as `exec` (a workspace with an open browser terminal is in use). The caller pumps
/// `attached`; the heartbeat stops when the session is dropped.
pub struct TerminalSession {
    pub attached: kube::api::AttachedProcess,
    _heartbeat: HeartbeatTasks,
}

pub async fn open_terminal(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    command: Vec<String>,
    heartbeat: Heartbeat,
) -> anyhow::Result<TerminalSession> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let container = running_container(&pods, namespace, pod).await?;
    let params = AttachParams::default()
        .container(container.clone())
        .stdin(true)
        .stdout(true)
        .stderr(false)
        .tty(true)
        .max_stdin_buf_size(PIPE_BUF_SIZE)
        .max_stdout_buf_size(PIPE_BUF_SIZE);
    tracing::debug!(%namespace, %pod, %container, ?command, "terminal");
    let attached = pods
        .exec(pod, command, &params)
        .await
        .with_context(|| format!("exec in pod {namespace}/{pod} container {container}"))?;
    Ok(TerminalSession {
        attached,
        _heartbeat: HeartbeatTasks::start(heartbeat),
    })
}

/// What a [`capture`]d command printed, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` in `pod` with `input` on its stdin (none when `None`) and returns what
/// it printed instead of showing it: how the plugin reads and writes files of a workspace
/// (host keys, authorized_keys) through the same `pods/exec` RBAC as `exec`.
pub async fn capture(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    command: Vec<String>,
    input: Option<&str>,
) -> anyhow::Result<Captured> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let container = running_container(&pods, namespace, pod).await?;
    let params = AttachParams::default()
        .container(container.clone())
        .stdin(input.is_some())
        .stdout(true)
        .stderr(true);
    let mut attached = pods
        .exec(pod, command, &params)
        .await
        .with_context(|| format!("exec in pod {namespace}/{pod} container {container}"))?;
    let status = attached
        .take_status()
        .ok_or_else(|| anyhow!("exec status channel already taken"))?;
    if let (Some(text), Some(mut stdin)) = (input, attached.stdin()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .context("writing the command's stdin")?;
        stdin
            .shutdown()
            .await
            .context("closing the command's stdin")?;
    }
    let (stdout, stderr) =
        tokio::try_join!(read_all(attached.stdout()), read_all(attached.stderr()))
            .context("reading the command's output")?;
    let status = status
        .await
        .ok_or_else(|| anyhow!("exec closed before the command reported an exit status"))?;
    let code = exit_code_from_status(&status)?;
    attached.join().await.context("exec stream failed")?;
    Ok(Captured {
        code,
        stdout,
        stderr,
    })
}

/// What a [`stream`]ed command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    pub code: i32,
    /// The end of what it wrote on stderr (at most 4 KiB).
    pub stderr: String,
    /// Digest and size of what it wrote on stdout, when that went to a file.
    pub stdout: Option<devenv_shared::build::backup::Blob>,
}

/// Runs `command` in `container` of `pod` with the file `input` on its stdin and its stdout
/// spooled to the file `output` (hashed as it goes), a chunk at a time: how backups read and
/// write volumes through `pods/exec`, with the user's rights and bounded memory.
pub async fn stream(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    container: &str,
    command: Vec<String>,
    input: Option<&std::path::Path>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<Streamed> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    // kube's pipes between the websocket and us hold 1 KiB by default: a volume would
    // cross them a KiB at a time. 1 MiB, like the spool's chunks.
    let params = AttachParams::default()
        .container(container.to_owned())
        .stdin(input.is_some())
        .stdout(true)
        .stderr(true)
        .max_stdin_buf_size(1 << 20)
        .max_stdout_buf_size(1 << 20);
    let mut attached = pods
        .exec(pod, command, &params)
        .await
        .with_context(|| format!("exec in pod {namespace}/{pod} container {container}"))?;
    let status = attached
        .take_status()
        .ok_or_else(|| anyhow!("exec status channel already taken"))?;
    let stdin = attached.stdin();
    let stdout = attached.stdout();
    let stderr = attached.stderr();
    let feed = async {
        if let (Some(path), Some(mut stdin)) = (input, stdin) {
            let mut file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            tokio::io::copy(&mut file, &mut stdin)
                .await
                .context("writing the command's stdin")?;
            stdin
                .shutdown()
                .await
                .context("closing the command's stdin")?;
        }
        anyhow::Ok(())
    };
    let drain = async {
        match (stdout, output) {
            (Some(out), Some(path)) => crate::registry::spool(out, path)
                .await
                .map(Some)
                .context("reading the command's output"),
            (Some(mut out), None) => {
                tokio::io::copy(&mut out, &mut tokio::io::sink())
                    .await
                    .context("reading the command's output")?;
                Ok(None)
            }
            (None, _) => Ok(None),
        }
    };
    let errors = async {
        let mut tail = Vec::new();
        if let Some(mut err) = stderr {
            let mut buf = vec![0u8; 8192];
            loop {
                let n = err.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(buf.get(..n).unwrap_or_default());
                if tail.len() > 4096 {
                    tail.drain(..tail.len() - 4096);
                }
            }
        }
        anyhow::Ok(String::from_utf8_lossy(&tail).into_owned())
    };
    let ((), stdout, stderr) = tokio::try_join!(feed, drain, errors)?;
    let status = status
        .await
        .ok_or_else(|| anyhow!("exec closed before the command reported an exit status"))?;
    let code = exit_code_from_status(&status)?;
    attached.join().await.context("exec stream failed")?;
    Ok(Streamed {
        code,
        stderr,
        stdout,
    })
}

/// All of a stream, as text (nothing when there is no stream).
async fn read_all(stream: Option<impl AsyncRead + Unpin>) -> std::io::Result<String> {
    let mut buf = Vec::new();
    if let Some(mut s) = stream {
        s.read_to_end(&mut buf).await?;
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A hook called periodically while an exec session is open, so a later
/// lifecycle feature can record activity (e.g. bump an annotation that an
/// idle reaper reads). The first beat is at session start; beats stop when the
/// session ends. A beat that takes longer than `interval` delays the next one.
/// Errors are the hook's own business (log them inside the future).
pub struct Heartbeat {
    /// Time between beats; clamped to at least one second.
    pub interval: Duration,
    /// Called once per beat; the returned future is awaited before the next.
    pub beat: Box<dyn FnMut() -> BoxFuture<'static, ()> + Send>,
}

/// Runs `command` in `pod` and returns its exit code. See the module docs.
pub async fn run(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    command: Vec<String>,
    tty: bool,
) -> anyhow::Result<i32> {
    run_inner(client, namespace, pod, command, tty, None).await
}

/// [`run`], calling `heartbeat` while the session is open.
pub async fn run_with_heartbeat(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    command: Vec<String>,
    tty: bool,
    heartbeat: Heartbeat,
) -> anyhow::Result<i32> {
    run_inner(client, namespace, pod, command, tty, Some(heartbeat)).await
}

async fn run_inner(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    command: Vec<String>,
    tty: bool,
    heartbeat: Option<Heartbeat>,
) -> anyhow::Result<i32> {
    if command.is_empty() {
        bail!("no command to run");
    }
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let container = running_container(&pods, namespace, pod).await?;

    let stdin_is_terminal = std::io::stdin().is_terminal();
    // Raw mode is entered before connecting so that a terminal we cannot use
    // degrades to a non-tty session rather than failing. The guard restores
    // the terminal when it drops, on every path out of this function.
    let raw_mode = if !tty {
        None
    } else if !stdin_is_terminal {
        eprintln!("Unable to use a TTY - input is not a terminal; running without one");
        None
    } else {
        match term::RawModeGuard::enable() {
            Ok(guard) => Some(guard),
            Err(e) => {
                eprintln!("Unable to use a TTY ({e}); running without one");
                None
            }
        }
    };
    let tty = raw_mode.is_some();
    let pass_stdin = tty || !stdin_is_terminal;

    let params = AttachParams::default()
        .container(container.clone())
        .stdin(pass_stdin)
        .stdout(true)
        .stderr(!tty)
        .tty(tty)
        .max_stdin_buf_size(PIPE_BUF_SIZE)
        .max_stdout_buf_size(PIPE_BUF_SIZE)
        .max_stderr_buf_size(PIPE_BUF_SIZE);
    tracing::debug!(%namespace, %pod, %container, tty, pass_stdin, ?command, "exec");
    let mut attached = pods
        .exec(pod, command, &params)
        .await
        .with_context(|| format!("exec in pod {namespace}/{pod} container {container}"))?;

    let status = attached
        .take_status()
        .ok_or_else(|| anyhow!("exec status channel already taken"))?;
    let remote_stdout = attached.stdout();
    let remote_stderr = attached.stderr();

    // Every task below is aborted when its guard drops, i.e. on any return.
    let _resize = attached
        .terminal_size()
        .map(|sizes| AbortOnDrop(tokio::spawn(term::forward_resizes(sizes))));
    let _stdin = match attached.stdin() {
        Some(remote_stdin) => {
            let chunks = spawn_stdin_reader().context("starting the stdin reader")?;
            Some(AbortOnDrop(tokio::spawn(forward_stdin(
                chunks,
                remote_stdin,
            ))))
        }
        None => None,
    };
    let heartbeat = heartbeat.map(HeartbeatTasks::start);

    let outputs = drain_outputs(remote_stdout, remote_stderr);
    let code = await_completion(status, outputs, attached.join()).await;
    drop(raw_mode);
    if let Some(heartbeat) = heartbeat {
        heartbeat.finish().await;
    }
    code
}

/// Waits for the end of a session: the exit status, with all output written
/// out before the code is returned.
///
/// `outputs` copies remote output to local stdout/stderr and ends at remote
/// EOF, which kube signals right after the status (or after a clean close).
/// `join` is the websocket task's result, polled only when no status came:
/// then it tells a broken stream (outputs would never end) from a clean close.
async fn await_completion<S, O, J, E>(status: S, outputs: O, join: J) -> anyhow::Result<i32>
where
    S: Future<Output = Option<Status>>,
    O: Future<Output = std::io::Result<()>>,
    J: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut status = std::pin::pin!(status);
    let mut outputs = std::pin::pin!(outputs);
    let mut outputs_done = None;
    let status = tokio::select! {
        status = &mut status => status,
        written = &mut outputs => {
            if let Err(e) = written {
                return local_write_failure(e);
            }
            outputs_done = Some(());
            status.await
        }
    };
    let Some(status) = status else {
        join.await.context("exec stream failed")?;
        if outputs_done.is_none() {
            if let Err(e) = outputs.await {
                return local_write_failure(e);
            }
        }
        bail!("exec connection closed before the remote command reported an exit status");
    };
    if outputs_done.is_none() {
        if let Err(e) = outputs.await {
            return local_write_failure(e);
        }
    }
    exit_code_from_status(&status)
}

fn local_write_failure(e: std::io::Error) -> anyhow::Result<i32> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        tracing::debug!("local output closed: {e}");
        Ok(BROKEN_PIPE_EXIT_CODE)
    } else {
        Err(anyhow::Error::new(e).context("writing the command's output"))
    }
}

async fn drain_outputs<R1, R2>(stdout: Option<R1>, stderr: Option<R2>) -> std::io::Result<()>
where
    R1: AsyncRead + Unpin,
    R2: AsyncRead + Unpin,
{
    let out = async {
        match stdout {
            Some(r) => pump(r, tokio::io::stdout()).await,
            None => Ok(()),
        }
    };
    let err = async {
        match stderr {
            Some(r) => pump(r, tokio::io::stderr()).await,
            None => Ok(()),
        }
    };
    futures::try_join!(out, err).map(|_| ())
}

/// Copies `from` to `to` until EOF, flushing after every chunk so prompts
/// and partial lines show up at once (std's stdout is line-buffered).
async fn pump<R, W>(mut from: R, mut to: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.flush().await;
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}

/// Reads local stdin on a dedicated thread: tokio's stdin reads on a blocking
/// pool thread that cannot be cancelled, which can hold up runtime shutdown.
/// The channel closes at EOF or on a read error. The thread may outlive the
/// session while blocked in `read` (an interactive terminal); it exits at its
/// next read once the receiver is gone, and never holds the process open.
fn spawn_stdin_reader() -> std::io::Result<tokio::sync::mpsc::Receiver<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::Builder::new()
        .name("devenv-exec-stdin".to_string())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; CHUNK_SIZE];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!("reading stdin: {e}");
                        break;
                    }
                }
            }
        })?;
    Ok(rx)
}

/// Forwards stdin chunks to the remote stdin, then shuts the remote stdin
/// down so the server sees EOF. (Dropping kube's stdin writer is not enough:
/// it is one half of a split pipe, and only `shutdown` closes it.)
async fn forward_stdin<W>(
    mut chunks: tokio::sync::mpsc::Receiver<Vec<u8>>,
    mut remote: W,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    while let Some(chunk) = chunks.recv().await {
        remote.write_all(&chunk).await?;
    }
    remote.shutdown().await
}

/// Carries local stdin to `stream` and `stream` to local stdout until the remote side
/// closes (what `ssh --stdio`, a ProxyCommand, does with a port-forwarded connection),
/// calling `heartbeat` meanwhile. Local EOF half-closes the stream; the remote's EOF ends
/// the session.
pub async fn bridge_stdio<S>(stream: S, heartbeat: Option<Heartbeat>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut remote_out, remote_in) = tokio::io::split(stream);
    let chunks = spawn_stdin_reader()?;
    let _up = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = forward_stdin(chunks, remote_in).await {
            tracing::debug!("forwarding stdin: {e}");
        }
    }));
    let heartbeat = heartbeat.map(HeartbeatTasks::start);
    let mut stdout = tokio::io::stdout();
    let copied = tokio::io::copy(&mut remote_out, &mut stdout).await;
    let flushed = stdout.flush().await;
    if let Some(heartbeat) = heartbeat {
        heartbeat.finish().await;
    }
    copied.map(|_| ()).and(flushed)
}

/// The heartbeat of one session: its first beat (the record of the session's start)
/// and the periodic ones after it.
struct HeartbeatTasks {
    first: JoinHandle<()>,
    rest: AbortOnDrop<()>,
}

impl HeartbeatTasks {
    fn start(mut heartbeat: Heartbeat) -> Self {
        let interval = heartbeat.interval.max(MIN_HEARTBEAT_INTERVAL);
        let first = tokio::spawn((heartbeat.beat)());
        let rest = AbortOnDrop(tokio::spawn(heartbeat_loop(interval, heartbeat.beat)));
        Self { first, rest }
    }

    /// Stops the periodic beats, and gives the first one up to [`FIRST_BEAT_GRACE`] to
    /// land: a one-off `exec -- CMD` that ends before its start is recorded is use too.
    async fn finish(self) {
        drop(self.rest);
        if tokio::time::timeout(FIRST_BEAT_GRACE, self.first)
            .await
            .is_err()
        {
            tracing::debug!("the session's start was not recorded within {FIRST_BEAT_GRACE:?}");
        }
    }
}

/// Beats every `interval`, the first one `interval` after the start (the session's
/// start is [`HeartbeatTasks`]' own first beat).
async fn heartbeat_loop(
    interval: Duration,
    mut beat: Box<dyn FnMut() -> BoxFuture<'static, ()> + Send>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        beat().await;
    }
}

/// Aborts the task when dropped, so no helper outlives the session.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(unix)]
mod term {
    use futures::channel::mpsc::Sender;
    use futures::SinkExt;
    use kube::api::TerminalSize;
    use rustix::termios::{self, OptionalActions, Termios};

    /// Holds the terminal in raw mode; restores the saved mode when dropped.
    pub(super) struct RawModeGuard {
        saved: Termios,
    }

    impl RawModeGuard {
        pub(super) fn enable() -> std::io::Result<Self> {
            let stdin = std::io::stdin();
            let saved = termios::tcgetattr(&stdin)?;
            let mut raw = saved.clone();
            raw.make_raw();
            termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
            Ok(Self { saved })
        }
    }

    impl Drop for RawModeGuard {
        fn drop(&mut self) {
            let stdin = std::io::stdin();
            if let Err(e) = termios::tcsetattr(&stdin, OptionalActions::Now, &self.saved) {
                tracing::warn!("restoring the terminal mode: {e}");
            }
        }
    }

    /// The local window size, from stdout or else stdin; `None` if neither is
    /// a terminal that knows its size.
    fn size() -> Option<TerminalSize> {
        let from_stdout = termios::tcgetwinsize(std::io::stdout());
        let ws = from_stdout
            .or_else(|_| termios::tcgetwinsize(std::io::stdin()))
            .ok()?;
        (ws.ws_col > 0 && ws.ws_row > 0).then_some(TerminalSize {
            width: ws.ws_col,
            height: ws.ws_row,
        })
    }

    /// Sends the current size, then the new size on every SIGWINCH, until the
    /// session stops listening.
    pub(super) async fn forward_resizes(mut sizes: Sender<TerminalSize>) {
        use tokio::signal::unix::{signal, SignalKind};
        // Subscribe first so a resize between the two steps is not lost.
        let mut winch = match signal(SignalKind::window_change()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!("cannot watch SIGWINCH: {e}");
                None
            }
        };
        if let Some(size) = size() {
            if sizes.send(size).await.is_err() {
                return;
            }
        }
        let Some(winch) = winch.as_mut() else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some(size) = size() {
                if sizes.send(size).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(not(unix))]
mod term {
    use futures::channel::mpsc::Sender;
    use kube::api::TerminalSize;

    pub(super) struct RawModeGuard;

    impl RawModeGuard {
        pub(super) fn enable() -> std::io::Result<Self> {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "raw terminal mode is not supported on this platform",
            ))
        }
    }

    pub(super) async fn forward_resizes(_sizes: Sender<TerminalSize>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStateWaiting, ContainerStatus,
        PodSpec, PodStatus,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Status objects as the kubelet sends them on the exec status channel.
    fn status(json: &str) -> Status {
        match serde_json::from_str(json) {
            Ok(s) => s,
            Err(e) => panic!("bad test status {json}: {e}"),
        }
    }

    const SUCCESS: &str = r#"{"metadata":{},"status":"Success"}"#;
    const EXIT_3: &str = r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
    const NOT_FOUND: &str = r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: failed to exec in container: failed to start exec: OCI runtime exec failed: exec failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH: unknown","reason":"InternalError","details":{"causes":[{"message":"error executing command in container: failed to exec in container"}]},"code":500}"#;

    #[test]
    fn success_is_zero() {
        assert_eq!(exit_code_from_status(&status(SUCCESS)).ok(), Some(0));
    }

    #[test]
    fn non_zero_exit_code_comes_from_the_exit_code_cause() {
        assert_eq!(exit_code_from_status(&status(EXIT_3)).ok(), Some(3));
        let with_kind = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"Other","message":"x"},{"reason":"ExitCode","message":"130"}]}}"#;
        assert_eq!(exit_code_from_status(&status(with_kind)).ok(), Some(130));
    }

    #[test]
    fn non_zero_exit_code_without_a_usable_cause_is_an_error() {
        let no_cause =
            r#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","message":"boom"}"#;
        let err = exit_code_from_status(&status(no_cause))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("remote command failed without an exit code: boom")
        );
        let garbage = r#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"three"}]}}"#;
        assert!(exit_code_from_status(&status(garbage)).is_err());
    }

    #[test]
    fn other_failures_are_errors_with_the_message() {
        let err = match exit_code_from_status(&status(NOT_FOUND)) {
            Ok(code) => panic!("expected an error, got {code}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("InternalError"), "{err}");
        assert!(err.contains("executable file not found"), "{err}");
        let unknown = r#"{"metadata":{},"status":"Weird"}"#;
        assert!(exit_code_from_status(&status(unknown)).is_err());
        assert!(exit_code_from_status(&Status::default()).is_err());
    }

    #[test]
    fn resolve_pod_workspace_and_pod_names() {
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(resolve_pod("alice"), pair("alice", "alice-0"));
        assert_eq!(resolve_pod("alice-0"), pair("alice", "alice-0"));
        assert_eq!(resolve_pod("alice-2"), pair("alice", "alice-2"));
        assert_eq!(resolve_pod("team-2-0"), pair("team-2", "team-2-0"));
        assert_eq!(resolve_pod("my-box"), pair("my-box", "my-box-0"));
        // Not canonical ordinals: taken as workspace names.
        assert_eq!(resolve_pod("alice-02"), pair("alice-02", "alice-02-0"));
        assert_eq!(resolve_pod("alice-"), pair("alice-", "alice--0"));
        assert_eq!(resolve_pod("-2"), pair("-2", "-2-0"));
        assert_eq!(
            resolve_pod("x-99999999999"),
            pair("x-99999999999", "x-99999999999-0")
        );
    }

    #[test]
    fn candidates_try_the_pod_then_the_workspace_reading() {
        assert_eq!(candidates("alice"), vec!["alice-0"]);
        assert_eq!(candidates("team-2"), vec!["team-2", "team-2-0"]);
        assert_eq!(candidates("team-2-0"), vec!["team-2-0", "team-2-0-0"]);
        for input in ["alice", "team-2", "team-2-0", "a-b-c"] {
            assert_eq!(candidates(input)[0], resolve_pod(input).1);
        }
    }

    #[test]
    fn default_shell_is_sh_c_with_the_fallback_chain() {
        let cmd = default_shell_command();
        assert_eq!(cmd.len(), 3);
        assert_eq!(cmd[0], "sh");
        assert_eq!(cmd[1], "-c");
        assert_eq!(cmd[2], DEFAULT_SHELL_SCRIPT);
    }

    /// Runs the shell script with a PATH holding only fake shells that print
    /// their name and arguments.
    #[cfg(unix)]
    fn run_shell_script_with(shells: &[&str]) -> String {
        use std::os::unix::fs::PermissionsExt;
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "devenv-exec-shell-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let setup = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            for shell in shells {
                let path = dir.join(shell);
                std::fs::write(&path, format!("#!/bin/sh\necho {shell} \"$@\"\n"))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            panic!("setting up {}: {e}", dir.display());
        }
        let output = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(DEFAULT_SHELL_SCRIPT)
            .env_clear()
            .env("PATH", &dir)
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        match output {
            Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            Err(e) => panic!("running /bin/sh: {e}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn default_shell_prefers_zsh_then_bash_then_sh() {
        assert_eq!(run_shell_script_with(&["zsh", "bash", "sh"]), "zsh -l");
        assert_eq!(run_shell_script_with(&["bash", "sh"]), "bash -l");
        assert_eq!(run_shell_script_with(&["sh"]), "sh -l");
    }

    fn pod(containers: &[&str], phase: &str, statuses: Vec<ContainerStatus>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("alice-0".to_string());
        p.spec = Some(PodSpec {
            containers: containers
                .iter()
                .map(|n| Container {
                    name: n.to_string(),
                    ..Container::default()
                })
                .collect(),
            ..PodSpec::default()
        });
        p.status = Some(PodStatus {
            phase: Some(phase.to_string()),
            container_statuses: Some(statuses),
            ..PodStatus::default()
        });
        p
    }

    fn container_status(name: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: name.to_string(),
            state: Some(state),
            ..ContainerStatus::default()
        }
    }

    #[test]
    fn picks_workspace_then_first_container() {
        let p = pod(&["sidecar", "workspace"], "Running", vec![]);
        assert_eq!(pick_container(&p).ok().as_deref(), Some("workspace"));
        let p = pod(&["main", "sidecar"], "Running", vec![]);
        assert_eq!(pick_container(&p).ok().as_deref(), Some("main"));
        let p = pod(&[], "Running", vec![]);
        assert!(pick_container(&p).is_err());
        assert!(pick_container(&Pod::default()).is_err());
    }

    #[test]
    fn check_running_reports_phase_and_container_state() {
        let running = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        };
        let waiting = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".to_string()),
                ..ContainerStateWaiting::default()
            }),
            ..ContainerState::default()
        };
        let ok = pod(
            &["workspace"],
            "Running",
            vec![container_status("workspace", running)],
        );
        assert!(check_running(&ok, "workspace").is_ok());

        let pending = pod(&["workspace"], "Pending", vec![]);
        let err = check_running(&pending, "workspace")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("pod alice-0 is not running (phase Pending)")
        );

        let crashing = pod(
            &["workspace"],
            "Running",
            vec![container_status("workspace", waiting)],
        );
        let err = check_running(&crashing, "workspace")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("container workspace of pod alice-0 is not running (CrashLoopBackOff)")
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("websocket reset")]
    struct StreamError;

    fn never<T>() -> futures::future::Pending<T> {
        futures::future::pending()
    }

    #[tokio::test]
    async fn completion_returns_the_status_code_after_output() {
        let status = async { Some(status(EXIT_3)) };
        let outputs = async { Ok(()) };
        let join = async { Ok::<(), StreamError>(()) };
        assert_eq!(await_completion(status, outputs, join).await.ok(), Some(3));
    }

    #[tokio::test]
    async fn completion_waits_for_output_that_ends_after_the_status() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let status = async move {
            let _ = tx.send(());
            Some(status(SUCCESS))
        };
        let outputs = async move {
            let _ = rx.await;
            tokio::task::yield_now().await;
            Ok(())
        };
        let join = never::<Result<(), StreamError>>();
        assert_eq!(await_completion(status, outputs, join).await.ok(), Some(0));
    }

    #[tokio::test]
    async fn completion_reports_a_broken_stream_without_waiting_for_output() {
        // The websocket task failed: no status, and kube never closes the
        // output pipes, so waiting for them would hang.
        let status = async { None };
        let outputs = never::<std::io::Result<()>>();
        let join = async { Err(StreamError) };
        let err = await_completion(status, outputs, join)
            .await
            .err()
            .map(|e| format!("{e:#}"));
        assert_eq!(err.as_deref(), Some("exec stream failed: websocket reset"));
    }

    #[tokio::test]
    async fn completion_without_status_after_clean_close_is_an_error() {
        let status = async { None };
        let outputs = async { Ok(()) };
        let join = async { Ok::<(), StreamError>(()) };
        let result = await_completion(status, outputs, join).await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn completion_on_broken_local_pipe_is_141() {
        let status = never::<Option<Status>>();
        let outputs = async { Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)) };
        let join = never::<Result<(), StreamError>>();
        assert_eq!(
            await_completion(status, outputs, join).await.ok(),
            Some(BROKEN_PIPE_EXIT_CODE)
        );
        let status = never::<Option<Status>>();
        let outputs = async { Err(std::io::Error::other("disk full")) };
        let join = never::<Result<(), StreamError>>();
        assert!(await_completion(status, outputs, join).await.is_err());
    }

    #[tokio::test]
    async fn stdin_eof_shuts_the_remote_stdin() -> anyhow::Result<()> {
        // The same pipe kube uses for the remote stdin.
        let (mut remote_reader, remote_writer) = tokio::io::simplex(64);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let forward = tokio::spawn(forward_stdin(rx, remote_writer));
        tx.send(b"hi\n".to_vec()).await?;
        tx.send(b"there\n".to_vec()).await?;
        drop(tx);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), remote_reader.read_to_end(&mut got)).await??;
        assert_eq!(got, b"hi\nthere\n");
        forward.await??;
        Ok(())
    }

    #[tokio::test]
    async fn pump_copies_until_eof() -> anyhow::Result<()> {
        let (reader, mut writer) = tokio::io::simplex(8);
        let feed = tokio::spawn(async move {
            writer.write_all(b"a long line of output").await?;
            writer.shutdown().await
        });
        let mut out = Vec::new();
        pump(reader, &mut out).await?;
        feed.await??;
        assert_eq!(out, b"a long line of output");
        Ok(())
    }

    #[tokio::test]
    async fn a_session_that_ends_at_once_still_records_its_start() {
        let beats = Arc::new(AtomicUsize::new(0));
        let counter = beats.clone();
        let beat: Box<dyn FnMut() -> BoxFuture<'static, ()> + Send> = Box::new(move || {
            let counter = counter.clone();
            Box::pin(async move {
                // A slow API server: the session is over before the patch lands.
                tokio::time::sleep(Duration::from_millis(200)).await;
                counter.fetch_add(1, Ordering::SeqCst);
            })
        });
        let tasks = HeartbeatTasks::start(Heartbeat {
            interval: Duration::from_secs(60),
            beat,
        });
        tasks.finish().await;
        assert_eq!(beats.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn heartbeat_beats_until_aborted() -> anyhow::Result<()> {
        let beats = Arc::new(AtomicUsize::new(0));
        let counter = beats.clone();
        let beat: Box<dyn FnMut() -> BoxFuture<'static, ()> + Send> = Box::new(move || {
            let counter = counter.clone();
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
            })
        });
        let guard = AbortOnDrop(tokio::spawn(heartbeat_loop(
            Duration::from_millis(10),
            beat,
        )));
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(guard);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after_abort = beats.load(Ordering::SeqCst);
        assert!(after_abort >= 2, "only {after_abort} beats");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(beats.load(Ordering::SeqCst), after_abort);
        Ok(())
    }
}
