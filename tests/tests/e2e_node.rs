//! Issue 6: the user's journey through the real `kubectl devenv` against the real
//! control plane *and* a real node (`tests/cluster/node`: containerd, bridge CNI, the
//! v1.33 kubelet, local PVs), with the real `devenv-webhook` registered on loopback.
//!
//!     cargo build --workspace --bins
//!     cargo test -p devenv-e2e --test e2e_node -- --test-threads=1 --nocapture
//!
//! Needs root, the Kubernetes binaries (`tests/cluster/build.sh`) and the node's system
//! packages (`tests/cluster/node/install-deps.sh`, which CI's `.ci/run` calls). When
//! anything is missing the tests fail and say what; they never skip.
//!
//! Every test works in its own namespace (Pod Security `restricted` enforced), deleted
//! when the test ends, pass or fail, so a failed test does not hold the node's CPU or
//! volumes for the next one. The workspaces run `devenv.test/workspace:1`, imported
//! into the node's containerd (never pulled). Workspace start time is printed as
//! `BENCH create-to-ready: N ms`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use devenv_e2e::browser::{screenshot_path, Browser};
use devenv_e2e::controller::{controller_user, Controller};
use devenv_e2e::metrics::MetricsServer;
use devenv_e2e::node::{shared_node, Node, GIT_DAEMON_IMAGE, WORKSPACE_IMAGE};
use devenv_e2e::objects::{annotation, event_reasons, get_in, is_ready, replicas, uid};
use devenv_e2e::output::ok_both;
use devenv_e2e::plugin::{devenv_command, dv, dv_ok, install};
use devenv_e2e::portal::Portal;
use devenv_e2e::webhook::WebhookProcess;
use devenv_e2e::workspace::{HIBERNATED, IDLE_WARNING, LAST_ACTIVITY, VOLUMES};
use devenv_e2e::{check_ok, eventually, shared, unique_name, Cluster};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};
use serde_json::{json, Value};

/// The stages `create --wait` shows, in order (kubectl-devenv/src/wait.rs `STAGES`).
const STAGES: [&str; 5] = [
    "objects created",
    "pod scheduled",
    "volumes bound",
    "image pulled, container starting",
    "ready",
];

/// Where the default policy mounts the three claims of a workspace.
const WORKSPACE_DIR: &str = VOLUMES[0].2;
const HISTORY_DIR: &str = VOLUMES[1].2;
const CONFIG_DIR: &str = VOLUMES[2].2;

// ------------------------------------------------------------------ the suite

struct Suite {
    cluster: &'static Cluster,
    node: &'static Node,
}

/// The webhook of the suite, stopped at exit (before the node and the cluster:
/// `atexit` handlers run last-registered first).
static WEBHOOK: Mutex<Option<WebhookProcess>> = Mutex::new(None);

extern "C" fn stop_webhook_at_exit() {
    if let Ok(mut w) = WEBHOOK.lock() {
        w.take();
    }
}

/// Cluster, node and webhook, started once for the whole binary.
fn suite() -> &'static Suite {
    static SUITE: OnceLock<Suite> = OnceLock::new();
    SUITE.get_or_init(|| {
        let cluster = shared();
        let node = shared_node();
        let webhook =
            WebhookProcess::start(cluster, None).expect("starting devenv-webhook on loopback");
        install(cluster, &webhook);
        *WEBHOOK.lock().unwrap() = Some(webhook);
        // SAFETY: registers a plain `extern "C" fn()` with no captured state.
        unsafe { libc::atexit(stop_webhook_at_exit) };
        Suite { cluster, node }
    })
}

/// The suite's cluster.
fn c() -> &'static Cluster {
    suite().cluster
}

/// A namespace of the test's own; deleted (without waiting) when dropped. When the test
/// fails, the namespace's [`diagnostics`] are printed first.
struct Ns(String);

impl Ns {
    fn new(prefix: &str) -> Ns {
        Ns(suite().cluster.fresh_namespace(prefix))
    }
}

impl std::ops::Deref for Ns {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- diagnostics for namespace {}:\n{}",
                self.0,
                diagnostics(&self.0)
            );
        }
        let _ = suite()
            .cluster
            .kubectl(["delete", "namespace", &self.0, "--wait=false"]);
    }
}

/// Pods, claims and recent events of a namespace, and the kubelet's last lines.
fn diagnostics(ns: &str) -> String {
    let c = suite().cluster;
    let text = |out: Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    format!(
        "{}\n{}\n{}\n---- kubelet:\n{}",
        text(c.kubectl(["get", "pods,pvc", "-o", "wide", "-n", ns])),
        text(c.kubectl(["get", "events", "--sort-by=.lastTimestamp", "-n", ns])),
        text(c.kubectl(["get", "pv"])),
        suite().node.log_tail("kubelet", 15)
    )
}

// ------------------------------------------------------------------ helpers

/// `kubectl devenv exec TARGET -- sh -c SCRIPT`: its stdout, which must succeed.
fn sh(ns: &str, target: &str, script: &str) -> String {
    dv_ok(c(), ns, &["exec", target, "--", "sh", "-c", script]).0
}

/// `kubectl ARGS` as the admin of the suite's cluster, which must succeed; its stdout.
fn kubectl_ok(args: &[&str]) -> String {
    check_ok(args, &c().kubectl(args))
}

/// `kubectl devenv create NAME --wait --image devenv.test/workspace:1 EXTRA..`, with a
/// free PV set; returns (stdout, stderr, wall time).
fn create_ready(ns: &str, name: &str, extra: &[&str]) -> (String, String, Duration) {
    suite()
        .node
        .ensure_pv_sets(1)
        .expect("PVs for the workspace");
    let mut args = vec!["create", name, "--wait", "--image", WORKSPACE_IMAGE];
    args.extend_from_slice(extra);
    let t0 = Instant::now();
    let out = dv(c(), ns, &args);
    let took = t0.elapsed();
    if !out.status.success() {
        panic!(
            "kubectl devenv create {name} failed ({}):\nstdout: {}\nstderr: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            diagnostics(ns)
        );
    }
    let (stdout, stderr) = ok_both(&out, "create");
    (stdout, stderr, took)
}

/// Waits until pod `name` is Ready and is not the pod whose uid is `not_uid`; returns it.
fn wait_ready(ns: &str, name: &str, not_uid: Option<&str>) -> Value {
    eventually(
        &format!("pod {name} to be Ready (a new one: {not_uid:?})"),
        Duration::from_secs(120),
        || {
            let pod = get_in(c(), ns, &format!("pod/{name}"))?;
            let uid = pod["metadata"]["uid"].as_str()?.to_owned();
            (Some(uid.as_str()) != not_uid && is_ready(&pod)).then_some(pod)
        },
    )
}

fn wait_gone(ns: &str, name: &str) {
    eventually(
        &format!("pod {name} to be gone"),
        Duration::from_secs(90),
        || {
            get_in(c(), ns, &format!("pod/{name}"))
                .is_none()
                .then_some(())
        },
    )
}

/// A pod running `git daemon` (the locally built `devenv.test/git-daemon:1`) serving
/// `/srv/git`, which holds the seeded `demo.git`; returns its IP on the node's bridge.
fn git_daemon(ns: &str) -> String {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "git", "namespace": ns, "labels": {"app": "git"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "containers": [{
                "name": "git",
                "image": GIT_DAEMON_IMAGE,
                "imagePullPolicy": "Never",
                "ports": [{"name": "git", "containerPort": 9418}],
                "readinessProbe": {"tcpSocket": {"port": 9418}, "periodSeconds": 1},
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}
                }
            }]
        }
    });
    let out = suite()
        .cluster
        .kubectl_stdin(["apply", "-f", "-"], &pod.to_string());
    check_ok(&["apply git daemon pod"], &out);
    let pod = wait_ready(ns, "git", None);
    let ip = pod["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        ip.starts_with("10.244."),
        "git daemon pod IP {ip:?} is not on the node's bridge"
    );
    ip
}

// ------------------------------------------------------------------ 1. create --wait, list

#[test]
fn create_wait_shows_each_stage_reaches_ready_and_list_shows_running() {
    let ns = Ns::new("node-create");
    let (stdout, stderr, _) = create_ready(&ns, "alice", &[]);
    assert!(
        stdout.contains("workspace/alice created"),
        "stdout: {stdout}"
    );

    // Each stage on its own line, in order, with the seconds since the wait began ("ok"
    // marks: stderr is not a terminal).
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let mut last = None;
    for stage in STAGES {
        let want = format!("ok {stage} (");
        let at = lines
            .iter()
            .position(|l| l.starts_with(&want) && l.ends_with("s)"))
            .unwrap_or_else(|| panic!("no line {want:?} in create's stderr:\n{stderr}"));
        assert!(
            last.is_none_or(|l| at > l),
            "stage {stage:?} out of order in:\n{stderr}"
        );
        last = Some(at);
    }
    assert!(
        stderr.contains("workspace alice is ready"),
        "stderr: {stderr}"
    );

    // Really Ready, with the local-only image under the plugin's default pull policy.
    let pod = get_in(c(), &ns, "pod/alice-0").expect("pod alice-0");
    assert!(
        is_ready(&pod),
        "alice-0 not Ready after create --wait: {pod}"
    );
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], WORKSPACE_IMAGE);
    assert_ne!(
        container["imagePullPolicy"], "Always",
        "a local-only image cannot start with imagePullPolicy Always"
    );
    assert_eq!(
        pod["spec"]["nodeName"],
        suite().node.name.as_str(),
        "scheduled on the test node"
    );

    let (list, _) = dv_ok(c(), &ns, &["list"]);
    let row: Vec<&str> = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some("alice"))
        .unwrap_or_else(|| panic!("no row for alice in:\n{list}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[1..3], ["1/1", "Running"], "list:\n{list}");
}

// ------------------------------------------------------------------ 2. exec: identity, secrets, claims

#[test]
fn exec_runs_as_1000_without_capabilities_with_secrets_and_writable_claims() {
    let ns = Ns::new("node-exec");
    let token = unique_name("tok");
    let literal = format!("E2E_TOKEN={token}");
    let (out, err) = dv_ok(
        c(),
        &ns,
        &[
            "secrets",
            "set",
            "--from-literal",
            &literal,
            "--from-literal",
            "E2E_OTHER=second value",
        ],
    );
    assert!(
        !out.contains(&token) && !err.contains(&token),
        "secrets set printed a value: {out}{err}"
    );
    create_ready(&ns, "alice", &[]);

    assert_eq!(
        dv_ok(c(), &ns, &["exec", "alice", "--", "id", "-u"])
            .0
            .trim(),
        "1000"
    );
    assert_eq!(
        dv_ok(c(), &ns, &["exec", "alice", "--", "id", "-g"])
            .0
            .trim(),
        "1000"
    );

    let status = dv_ok(c(), &ns, &["exec", "alice", "--", "cat", "/proc/1/status"]).0;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in /proc/1/status:\n{status}"));
    assert_eq!(cap_eff.trim(), "0000000000000000", "{status}");
    // The exec'd process too, and it cannot gain any.
    let own = sh(
        &ns,
        "alice",
        "grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status",
    );
    assert!(own.contains("CapEff:\t0000000000000000"), "{own}");
    assert!(own.contains("CapPrm:\t0000000000000000"), "{own}");
    assert!(own.contains("NoNewPrivs:\t1"), "{own}");

    // The Secret's keys are environment variables of the workspace.
    assert_eq!(sh(&ns, "alice", "echo \"$E2E_TOKEN\"").trim(), token);
    assert_eq!(
        sh(&ns, "alice", "echo \"$E2E_OTHER\"").trim(),
        "second value"
    );

    // Three claims, each its own mount, writable by uid 1000.
    for dir in [WORKSPACE_DIR, HISTORY_DIR, CONFIG_DIR] {
        let mounted = sh(&ns, "alice", &format!("awk '$2 == \"{dir}\"' /proc/mounts"));
        assert!(!mounted.trim().is_empty(), "{dir} is not a mount point");
        let owner = sh(
            &ns,
            "alice",
            &format!(
                "touch {dir}/e2e-probe && stat -c %u:%g {dir}/e2e-probe && rm {dir}/e2e-probe"
            ),
        );
        assert_eq!(owner.trim(), "1000:1000", "file made in {dir}");
    }
    // Bound to the node's local PVs.
    let claims = kubectl_ok(&[
        "get",
        "pvc",
        "-n",
        &ns,
        "-l",
        "devenv.io/workspace=alice",
        "-o",
        "jsonpath={range .items[*]}{.status.phase} {.spec.storageClassName}{\"\\n\"}{end}",
    ]);
    let claims: Vec<&str> = claims.lines().collect();
    assert_eq!(claims, ["Bound devenv-local"; 3], "claims of alice");
}

// ------------------------------------------------------------------ 3. interactive, under a pty

/// A process on the slave side of a pseudo-terminal, as its controlling terminal,
/// driven from the master side like a user at a terminal would.
struct Pty {
    master: File,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Runs `cmd` as `setsid --ctty --wait CMD`: in a new session whose controlling
    /// terminal is the pty's slave (its stdin), so the kernel sends it SIGWINCH when
    /// the size changes, as a terminal emulator's resize does; `--wait` passes the
    /// exit status through.
    fn spawn(cmd: Command, rows: u16, cols: u16) -> Pty {
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        tcsetwinsize(&master, winsize(rows, cols)).expect("setting the terminal size");
        let slave_path = ptsname(&master, Vec::new()).expect("ptsname");
        // std opens with O_CLOEXEC; the child gets the slave as 0/1/2 only.
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(slave_path.to_string_lossy().as_ref())
            .expect("opening the pty slave");

        let mut wrapped = Command::new("setsid");
        wrapped.args(["--ctty", "--wait"]).arg(cmd.get_program());
        wrapped.args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        wrapped
            .stdin(Stdio::from(slave.try_clone().expect("dup slave")))
            .stdout(Stdio::from(slave.try_clone().expect("dup slave")))
            .stderr(Stdio::from(slave));
        let child = wrapped.spawn().expect("spawning under a pty");
        // The parent's copies of the slave go with `wrapped`: reads on the master then
        // end (EIO) once the child and its descendants have closed the terminal.
        drop(wrapped);
        let master = File::from(master);
        let mut reader = master.try_clone().expect("dup master");
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            child,
            output,
        }
    }

    /// Everything the terminal showed so far.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn mark(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    /// Types `text` (a user's keystrokes: end lines with `\r`).
    fn send(&mut self, text: &str) {
        use std::io::Write;
        self.master
            .write_all(text.as_bytes())
            .expect("writing to the pty");
        self.master.flush().expect("flushing the pty");
    }

    /// Waits until the output after byte `from` contains `needle`.
    fn expect(&self, from: usize, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let out = self.output.lock().unwrap();
                let tail = String::from_utf8_lossy(&out[from.min(out.len())..]);
                if tail.contains(needle) {
                    return true;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resizes the terminal (TIOCSWINSZ on the master: the kernel sends SIGWINCH to
    /// the terminal's foreground process group, here the plugin).
    fn resize(&self, rows: u16, cols: u16) {
        tcsetwinsize(&self.master, winsize(rows, cols)).expect("TIOCSWINSZ on the master");
    }

    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the child") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn interactive_session_under_a_pty_prompt_command_resize_exit_code() {
    let ns = Ns::new("node-tty");
    create_ready(&ns, "alice", &[]);

    let mut cmd = devenv_command(&suite().cluster.kubeconfig);
    cmd.args(["-n", &ns, "exec", "alice"]);
    let mut pty = Pty::spawn(cmd, 24, 80);
    let fail =
        |pty: &Pty, what: &str| -> ! { panic!("{what}; the terminal showed:\n{:?}", pty.screen()) };

    // A login shell's prompt (bash as uid 1000: "bash-5.2$ ").
    if !pty.expect(0, "$ ", Duration::from_secs(30)) {
        fail(&pty, "no shell prompt within 30s");
    }

    let m = pty.mark();
    pty.send("echo R=$((6*7))\r");
    if !pty.expect(m, "R=42", Duration::from_secs(15)) {
        fail(&pty, "`echo $((6*7))` did not print 42");
    }

    // The size at start is the terminal's.
    let m = pty.mark();
    pty.send("echo S=$(stty size)=\r");
    if !pty.expect(m, "S=24 80=", Duration::from_secs(15)) {
        fail(
            &pty,
            "`stty size` in the container is not the terminal's 24x80",
        );
    }

    // A resize reaches the container.
    pty.resize(40, 132);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = pty.mark();
        pty.send("echo S=$(stty size)=\r");
        if pty.expect(m, "S=40 132=", Duration::from_secs(2)) {
            break;
        }
        if Instant::now() > deadline {
            fail(
                &pty,
                "`stty size` did not follow the resize to 40x132 within 15s",
            );
        }
    }

    // The shell's exit code is the plugin's.
    pty.send("exit 3\r");
    match pty.wait(Duration::from_secs(30)) {
        Some(status) => assert_eq!(
            status.code(),
            Some(3),
            "kubectl devenv exec exited with {status}; terminal:\n{:?}",
            pty.screen()
        ),
        None => fail(
            &pty,
            "kubectl devenv exec did not exit within 30s of `exit 3`",
        ),
    }
}

// ------------------------------------------------------------------ 4. data survives

/// Writes a file in /workspace and a line of bash history in /commandhistory.
///
/// Nothing in the image or the workspace sets HISTFILE (bash's default is
/// ~/.bash_history, on the image's filesystem, lost with the pod), so the test points
/// bash at the history claim itself.
fn write_work(ns: &str, target: &str, token: &str) {
    sh(
        ns,
        target,
        &format!("echo {token} > {WORKSPACE_DIR}/keep.txt"),
    );
    let script = format!(
        "HISTFILE={HISTORY_DIR}/.bash_history; set -o history; history -s 'echo history-{token}'; history -a"
    );
    dv_ok(c(), ns, &["exec", target, "--", "bash", "-c", &script]);
}

fn assert_work(ns: &str, target: &str, token: &str, after: &str) {
    let kept = sh(ns, target, &format!("cat {WORKSPACE_DIR}/keep.txt"));
    assert_eq!(kept.trim(), token, "/workspace/keep.txt after {after}");
    let history = sh(ns, target, &format!("cat {HISTORY_DIR}/.bash_history"));
    assert!(
        history
            .lines()
            .any(|l| l == format!("echo history-{token}")),
        "shell history after {after}:\n{history}"
    );
}

#[test]
fn work_and_history_survive_pod_delete_stop_start_and_scaling() {
    let ns = Ns::new("node-persist");
    create_ready(&ns, "alice", &[]);
    let token = unique_name("kept");
    write_work(&ns, "alice", &token);
    let histfile = sh(
        &ns,
        "alice",
        "bash -lic 'echo \"HISTFILE=${HISTFILE:-<unset>}\"' 2>/dev/null",
    );
    eprintln!(
        "NOTE: an interactive login bash in the workspace has {} (the history claim is {HISTORY_DIR})",
        histfile.trim()
    );
    assert_work(&ns, "alice", &token, "writing");

    // The pod deleted: the StatefulSet makes a new one, on the same claims.
    let old = uid(&get_in(c(), &ns, "pod/alice-0").expect("alice-0"));
    kubectl_ok(&["delete", "pod", "alice-0", "-n", &ns, "--wait=true"]);
    let pod = wait_ready(&ns, "alice-0", Some(&old));
    assert_work(&ns, "alice", &token, "the pod was deleted and re-created");

    // stop / start.
    dv_ok(c(), &ns, &["stop", "alice"]);
    let replicas = kubectl_ok(&[
        "get",
        "sts",
        "alice",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "0", "replicas after stop");
    wait_gone(&ns, "alice-0");
    dv_ok(c(), &ns, &["start", "alice"]);
    let pod = wait_ready(&ns, "alice-0", Some(&uid(&pod)));
    assert_work(&ns, "alice", &token, "stop and start");

    // 1 -> 2 -> 1: the second pod has volumes of its own; the first keeps its data.
    suite().node.ensure_pv_sets(1).expect("PVs for alice-1");
    dv_ok(c(), &ns, &["scale", "alice", "--replicas", "2"]);
    wait_ready(&ns, "alice-1", None);
    let second = sh(&ns, "alice-1", &format!("ls -A {WORKSPACE_DIR}"));
    assert!(
        !second.contains("keep.txt"),
        "alice-1 sees alice-0's workspace: {second}"
    );
    assert_work(&ns, "alice", &token, "scaling to 2");
    dv_ok(c(), &ns, &["scale", "alice", "--replicas", "1"]);
    wait_gone(&ns, "alice-1");
    assert_work(&ns, "alice-0", &token, "scaling back to 1");

    // 0 and up again.
    dv_ok(c(), &ns, &["scale", "alice", "--replicas", "0"]);
    wait_gone(&ns, "alice-0");
    dv_ok(c(), &ns, &["scale", "alice", "--replicas", "1"]);
    wait_ready(&ns, "alice-0", Some(&uid(&pod)));
    assert_work(&ns, "alice", &token, "scaling to 0 and back to 1");
}

// ------------------------------------------------------------------ 4b. idle hibernation

fn sts_annotation(ns: &str, name: &str, key: &str) -> Option<String> {
    annotation(&get_in(c(), ns, &format!("statefulset/{name}"))?, key)
}

fn sts_replicas(ns: &str, name: &str) -> Option<i64> {
    get_in(c(), ns, &format!("statefulset/{name}")).map(|s| replicas(&s))
}

/// Waits until workspace `name` is scaled to 0 by the lifecycle controller, and checks
/// that it was warned (an `IdleWarning` Event) first.
fn wait_hibernated_after_warning(ns: &str, name: &str, timeout: Duration) {
    eventually(&format!("{name} to be hibernated"), timeout, || {
        (sts_replicas(ns, name)? == 0).then_some(())
    });
    let reasons = event_reasons(c(), ns, name);
    assert!(
        reasons.iter().any(|r| r == "IdleWarning"),
        "{name} was stopped without an IdleWarning Event first: {reasons:?}"
    );
}

/// Issue 7 on the real node: with a 30s idle timeout, an untouched workspace is
/// warned and hibernated while one with an open `kubectl devenv exec` session keeps
/// running (the session's heartbeat, paced to the timeout); once the session ends it
/// is hibernated too; `start` brings a hibernated workspace back with its data.
#[test]
fn open_exec_session_keeps_a_workspace_running_and_start_brings_hibernated_data_back() {
    let ns = Ns::new("node-idle");
    let cluster = suite().cluster;
    let _controller = Controller::start(
        &controller_user(cluster),
        &ns,
        "devenv-lifecycle",
        "node-idle",
        "lifecycle:\n  warningBefore: 10s\n",
    );
    create_ready(&ns, "busy", &["--idle-timeout", "30s"]);
    let busy_since = Instant::now();
    let mut session = devenv_command(&cluster.kubeconfig)
        .args(["-n", &ns, "exec", "busy", "--", "sh", "-c", "sleep 600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl devenv exec busy");

    create_ready(&ns, "idle", &["--idle-timeout", "30s"]);
    let token = unique_name("hibernated");
    write_work(&ns, "idle", &token);

    eventually("idle to be hibernated", Duration::from_secs(120), || {
        (sts_replicas(&ns, "idle")? == 0 && sts_annotation(&ns, "idle", HIBERNATED).is_some())
            .then_some(())
    });
    let reasons = event_reasons(c(), &ns, "idle");
    let warned = reasons.iter().position(|r| r == "IdleWarning");
    assert!(
        warned.is_some() && reasons.iter().any(|r| r == "Hibernated"),
        "idle was hibernated without the warning event first: {reasons:?}"
    );
    wait_gone(&ns, "idle-0");
    let (listed, _) = dv_ok(c(), &ns, &["list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("idle ") && l.contains("Hibernated")),
        "list does not show idle as Hibernated:\n{listed}"
    );

    // busy has outlived its idle timeout (and the warning lead) with the session open.
    assert!(
        busy_since.elapsed() > Duration::from_secs(35),
        "busy has not been idle long enough to prove anything: {:?}",
        busy_since.elapsed()
    );
    assert!(
        session.try_wait().expect("session status").is_none(),
        "the exec session ended on its own"
    );
    assert_eq!(
        sts_replicas(&ns, "busy"),
        Some(1),
        "busy was stopped with a session open"
    );
    assert_eq!(sts_annotation(&ns, "busy", HIBERNATED), None);
    assert_eq!(sts_annotation(&ns, "busy", IDLE_WARNING), None);
    assert!(
        is_ready(&get_in(c(), &ns, "pod/busy-0").expect("busy-0")),
        "busy-0 is not Ready"
    );
    let (got, _) = dv_ok(c(), &ns, &["get", "busy"]);
    let row: Vec<&str> = got
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // ... AGE, LAST ACTIVITY ("Ns ago"), STOPS ("in Ns")
    let ago = row
        .iter()
        .position(|c| *c == "ago")
        .expect("a LAST ACTIVITY column");
    let seconds: u64 = row[ago - 1]
        .trim_end_matches('s')
        .parse()
        .unwrap_or(u64::MAX);
    assert!(
        seconds <= 20,
        "busy's last activity is {seconds}s old with a session open:\n{got}"
    );
    assert_eq!(row.get(ago + 1), Some(&"in"), "STOPS of busy:\n{got}");

    // The session ends (the user disconnects): busy is hibernated too, after a warning.
    let _ = session.kill();
    let output = session.wait_with_output().expect("session output");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !said.contains("cannot record activity") && !said.contains("will be stopped"),
        "the session's heartbeat failed:\n{said}"
    );
    wait_hibernated_after_warning(&ns, "busy", Duration::from_secs(90));

    // start just works, and the data is there.
    let (_, started) = dv_ok(c(), &ns, &["start", "idle"]);
    wait_ready(&ns, "idle-0", None);
    assert_work(
        &ns,
        "idle",
        &token,
        &format!("hibernation and start ({})", started.trim()),
    );
    assert_eq!(
        sts_annotation(&ns, "idle", HIBERNATED),
        None,
        "start leaves the hibernation marker"
    );
}

/// CPU used by the pods of workspace `name` as the metrics API reports it, in millicores.
fn metrics_millicores(ns: &str, name: &str) -> Option<u64> {
    let out = suite().cluster.kubectl([
        "get",
        "--raw",
        &format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{name}-0"),
    ]);
    let pod: Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut total = 0;
    for c in pod["containers"].as_array()? {
        let cpu = c["usage"]["cpu"].as_str()?;
        total += match cpu.strip_suffix('n') {
            Some(n) => n.parse::<u64>().ok()? / 1_000_000,
            None => match cpu.strip_suffix('m') {
                Some(m) => m.parse().ok()?,
                None => cpu.parse::<u64>().ok()? * 1000,
            },
        };
    }
    Some(total)
}

/// Issue 7, where the metrics API exists: with `cpuActiveMillicores` set, a workspace
/// busy with CPU work and no session is not stopped, while an idle one with the same
/// timeout is; once the work stops, the busy one is hibernated too. metrics-server
/// runs beside the node, served through the real aggregation layer.
#[test]
fn cpu_load_counts_as_activity_where_the_metrics_api_is_served() {
    let ns = Ns::new("node-cpu");
    let cluster = suite().cluster;
    let metrics = MetricsServer::start(cluster, suite().node).expect("metrics-server");
    create_ready(&ns, "cruncher", &["--idle-timeout", "40s"]);
    create_ready(&ns, "sleeper", &["--idle-timeout", "40s"]);
    // Work that outlives the exec session that starts it (which records activity once).
    // Its own session: the exec's process group does not survive the exec.
    sh(
        &ns,
        "cruncher",
        "setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & echo $! > /workspace/burn.pid",
    );
    let load_started = Instant::now();
    let session_activity =
        sts_annotation(&ns, "cruncher", LAST_ACTIVITY).expect("the exec session recorded activity");
    let busy = eventually(
        "the metrics API to see cruncher busy",
        Duration::from_secs(120),
        || metrics_millicores(&ns, "cruncher").filter(|m| *m >= 200),
    );
    eprintln!("metrics.k8s.io: cruncher-0 uses {busy}m CPU");
    let _controller = Controller::start(
        &controller_user(cluster),
        &ns,
        "devenv-lifecycle",
        "node-cpu",
        "lifecycle:\n  warningBefore: 10s\n  cpuActiveMillicores: 200\n",
    );
    eventually("sleeper to be hibernated", Duration::from_secs(120), || {
        (sts_replicas(&ns, "sleeper")? == 0).then_some(())
    });
    // The controller saw cruncher's CPU when its stop came due and recorded it as use:
    // a last activity later than the session's (no session has run since).
    let noted = eventually(
        "the controller to record cruncher's CPU as activity",
        Duration::from_secs(60),
        || sts_annotation(&ns, "cruncher", LAST_ACTIVITY).filter(|t| *t > session_activity),
    );
    // Well past the idle timeout since the session: still running.
    let past = Duration::from_secs(50);
    std::thread::sleep(past.saturating_sub(load_started.elapsed()));
    assert_eq!(
        sts_replicas(&ns, "cruncher"),
        Some(1),
        "cruncher was stopped while busy"
    );
    assert_eq!(sts_annotation(&ns, "cruncher", HIBERNATED), None);
    eprintln!("cruncher: session activity {session_activity}, CPU activity recorded {noted}");

    // The work ends: cruncher is warned, then hibernated like any idle workspace.
    sh(&ns, "cruncher", "kill $(cat /workspace/burn.pid)");
    wait_hibernated_after_warning(&ns, "cruncher", Duration::from_secs(150));
    drop(metrics);
}

// ------------------------------------------------------------------ 5. --repo

#[test]
fn repo_is_cloned_on_first_start_and_never_over_local_changes() {
    let ns = Ns::new("node-repo");
    let ip = git_daemon(&ns);
    let url = format!("git://{ip}/demo.git");
    create_ready(&ns, "alice", &["--repo", &url]);

    let log = kubectl_ok(&["logs", "alice-0", "-c", "clone", "-n", &ns]);
    assert!(
        log.contains(&format!("cloning {url} into {WORKSPACE_DIR}")),
        "clone log:\n{log}"
    );
    // The repository is the workspace. (safe.directory: see the test below.)
    let git = format!("git -c safe.directory='*' -C {WORKSPACE_DIR}");
    assert_eq!(
        sh(&ns, "alice", &format!("cat {WORKSPACE_DIR}/README")).trim(),
        "devenv test repository"
    );
    assert_eq!(
        sh(&ns, "alice", &format!("{git} log --format=%s")).trim(),
        "initial"
    );
    assert_eq!(
        sh(&ns, "alice", &format!("{git} remote get-url origin")).trim(),
        url
    );

    // Local work; and upstream moves on meanwhile (a re-clone would bring UPSTREAM).
    sh(
        &ns,
        "alice",
        &format!(
            "echo local-change >> {WORKSPACE_DIR}/README && echo mine > {WORKSPACE_DIR}/notes.txt"
        ),
    );
    let push = "set -e; cd /tmp; rm -rf w; git clone -q /srv/git/demo.git w; cd w; \
        echo upstream-2 > UPSTREAM; git add UPSTREAM; \
        git -c user.name=e2e -c user.email=e2e@devenv.test commit -qm second; git push -q origin HEAD";
    kubectl_ok(&["exec", "git", "-n", &ns, "--", "sh", "-c", push]);

    let old = uid(&get_in(c(), &ns, "pod/alice-0").expect("alice-0"));
    kubectl_ok(&["delete", "pod", "alice-0", "-n", &ns, "--wait=true"]);
    wait_ready(&ns, "alice-0", Some(&old));

    let log = kubectl_ok(&["logs", "alice-0", "-c", "clone", "-n", &ns]);
    assert!(log.contains("not cloning"), "clone log on restart:\n{log}");
    assert_eq!(
        sh(&ns, "alice", &format!("cat {WORKSPACE_DIR}/README")),
        "devenv test repository\nlocal-change\n"
    );
    assert_eq!(
        sh(&ns, "alice", &format!("cat {WORKSPACE_DIR}/notes.txt")),
        "mine\n"
    );
    let listing = sh(&ns, "alice", &format!("ls -A {WORKSPACE_DIR}"));
    assert!(
        !listing.contains("UPSTREAM") && !listing.contains("demo"),
        "the workspace was re-cloned or cloned again into a subdirectory: {listing}"
    );
    assert_eq!(
        sh(&ns, "alice", &format!("{git} status --porcelain")),
        " M README\n?? notes.txt\n"
    );
}

/// The workspace user must be able to use git on the clone `--repo` made. When the
/// volume's root is an empty directory (local/hostPath/NFS/local-path provisioners;
/// unlike a fresh ext4 volume with lost+found), the clone script clones into the
/// mount point itself, a directory owned by root, and git refuses to work in it as
/// uid 1000: "detected dubious ownership in repository at '/workspace'".
#[test]
fn repo_clone_is_usable_by_git_as_the_workspace_user() {
    let ns = Ns::new("node-repo-git");
    let ip = git_daemon(&ns);
    create_ready(&ns, "alice", &["--repo", &format!("git://{ip}/demo.git")]);
    let out = dv(
        c(),
        &ns,
        &[
            "exec",
            "alice",
            "--",
            "git",
            "-C",
            WORKSPACE_DIR,
            "log",
            "--format=%s",
        ],
    );
    let (stdout, _) = ok_both(
        &out,
        "git -C /workspace log as the workspace user (the repository --repo cloned)",
    );
    assert_eq!(stdout.trim(), "initial");
}

// ------------------------------------------------------------------ 6. NetworkPolicy

/// Present, as made by `create`. The node's bridge CNI does not enforce NetworkPolicy
/// (no policy agent), so only its presence and shape are checked.
#[test]
fn network_policy_is_present() {
    let ns = Ns::new("node-netpol");
    suite().node.ensure_pv_sets(1).expect("PVs");
    dv_ok(
        c(),
        &ns,
        &["create", "alice", "--no-wait", "--image", WORKSPACE_IMAGE],
    );
    kubectl_ok(&["get", "networkpolicy", "alice", "-n", &ns]);
    let np = get_in(c(), &ns, "networkpolicy/alice").expect("networkpolicy alice");
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"]["devenv.io/workspace"], "alice",
        "{np}"
    );
    assert_eq!(
        np["spec"]["policyTypes"],
        json!(["Ingress", "Egress"]),
        "{np}"
    );
}

// ------------------------------------------------------------------ kubectl debug

/// `kubectl debug` with its default profile, which states no securityContext: the
/// webhook fills it, and the debug container really runs beside the workspace as uid
/// 1000 with no capabilities.
#[test]
fn kubectl_debug_container_runs_non_root_without_capabilities() {
    let ns = Ns::new("node-debug");
    create_ready(&ns, "alice", &[]);
    let script = "id -u; grep CapEff /proc/self/status; sleep 3600";
    kubectl_ok(&[
        "debug",
        "alice-0",
        "-n",
        &ns,
        "--image",
        WORKSPACE_IMAGE,
        "--image-pull-policy=IfNotPresent",
        "--container=dbg",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let logs = eventually(
        "the debug container's output",
        Duration::from_secs(60),
        || {
            let out = suite()
                .cluster
                .kubectl(["logs", "alice-0", "-n", &ns, "-c", "dbg"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && text.contains("CapEff")).then_some(text)
        },
    );
    let mut lines = logs.lines();
    assert_eq!(lines.next().map(str::trim), Some("1000"), "{logs}");
    let cap_eff = lines
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff line: {logs}"));
    assert_eq!(cap_eff.trim(), "0000000000000000", "{logs}");
    // The workspace itself is untouched: still Ready, same container.
    let pod = get_in(c(), &ns, "pod/alice-0").expect("pod alice-0");
    assert!(is_ready(&pod), "{pod:#}");
}

// ------------------------------------------------------------------ 7. start time

/// Wall time of `kubectl devenv create NAME --wait` (objects, scheduling, local PV
/// binding, sandbox, container, Ready), image already on the node.
#[test]
fn bench_create_to_ready() {
    const RUNS: usize = 7;
    let ns = Ns::new("node-bench");
    let mut times = Vec::new();
    for i in 0..RUNS {
        let name = format!("bench-{i}");
        let (_, stderr, took) = create_ready(&ns, &name, &[]);
        // Where the time went: the stages with the seconds since the wait began.
        let stages: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("ok "))
            .collect();
        println!(
            "BENCH create-to-ready run {} stages: {}",
            i + 1,
            stages.join(", ")
        );
        assert!(
            is_ready(&get_in(c(), &ns, &format!("pod/{name}-0")).expect("bench pod")),
            "{name}-0 not Ready after create --wait"
        );
        let ms = took.as_millis();
        println!("BENCH create-to-ready run {}/{RUNS}: {ms} ms", i + 1);
        times.push(ms);
        dv_ok(
            c(),
            &ns,
            &["delete", &name, "--purge", "--yes", "--no-backup"],
        );
        wait_gone(&ns, &format!("{name}-0"));
    }
    times.sort_unstable();
    let (min, median) = (times[0], times[RUNS / 2]);
    println!(
        "BENCH create-to-ready: {median} ms (median of {RUNS} runs; min {min} ms; all {times:?})"
    );
    assert!(
        median < 60_000,
        "a workspace took {median} ms (median) to become ready"
    );
}

// ------------------------------------------------------------------ issue 17: the portal

/// The uids of workspace `name`'s claims, by claim name.
fn claim_uids_of(ns: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    devenv_e2e::workspace::claim_uids(c(), ns, name)
}

#[test]
fn the_portal_creates_to_ready_deletes_keeping_data_and_its_terminal_runs_as_1000() {
    const LIVE: Duration = Duration::from_secs(60);
    let ns = Ns::new("node-portal");
    // Started first: the metrics API takes a minute to report a new pod.
    let _metrics = MetricsServer::start(suite().cluster, suite().node).expect("metrics-server");
    create_ready(&ns, "alice", &[]);
    let portal = Portal::start(&c().kubeconfig, &["-n", &ns], &[]);
    let mut browser = Browser::start().expect("headless chromium");
    browser.navigate(&portal.url).expect("open the portal");
    let row = format!("#workspaces tbody tr[data-key=\"{}/alice\"]", &*ns);
    browser.wait_for(
        "alice Running and Ready",
        LIVE,
        &format!(
            "(() => {{ const tr = document.querySelector('{row}'); \
             return tr && tr.cells[1].textContent === 'Running' && tr.cells[2].textContent === '1/1'; }})()"
        ),
    );
    browser
        .screenshot(&screenshot_path("portal-running.png"))
        .expect("a screenshot of the table");

    browser
        .eval(&format!("document.querySelector('{row}').click()"))
        .expect("open alice's page");
    browser.wait_for(
        "alice's page",
        LIVE,
        "!document.getElementById('detail').hidden",
    );
    let activity_before = sts_annotation(&ns, "alice", LAST_ACTIVITY);
    browser
        .eval("document.getElementById('open-terminal').click()")
        .expect("open the terminal");
    browser.wait_for(
        "the terminal connected",
        LIVE,
        "document.getElementById('terminal-status').textContent === 'connected to alice'",
    );
    browser
        .eval("document.querySelector('#terminal .xterm-helper-textarea').focus()")
        .expect("focus the terminal");
    browser
        .type_text("id -u; echo portal-$((6*7))")
        .expect("type a command");
    browser.press_enter().expect("press Enter");
    let rows = browser.wait_for(
        "the command's output in the terminal",
        LIVE,
        "(() => { const rows = Array.from(document.querySelectorAll('#terminal .xterm-rows > div'), \
         d => d.textContent.trim()); return rows.includes('portal-42') ? rows : null; })()",
    );
    let rows: Vec<&str> = rows
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let at = rows.iter().position(|r| *r == "portal-42").unwrap_or(0);
    assert!(
        at > 0 && rows[at - 1] == "1000",
        "id -u printed 1000 in the browser terminal, just above portal-42: {rows:?}"
    );
    browser
        .screenshot(&screenshot_path("portal-terminal.png"))
        .expect("a screenshot of the terminal");
    // Create from the form, to Ready on the node; then delete from the page, data kept.
    suite()
        .node
        .ensure_pv_sets(1)
        .expect("PVs for the second workspace");
    browser
        .eval("document.getElementById('create-box').open = true; document.querySelector('#create input[name=name]').focus()")
        .expect("open the form");
    browser.type_text("bob").expect("type the name");
    browser
        .eval(&format!(
            "(() => {{ const f = document.getElementById('create'); \
             f.elements.image.value = '{WORKSPACE_IMAGE}'; f.elements.tier.value = 'micro'; \
             f.requestSubmit(); }})()"
        ))
        .expect("submit the form");
    browser.wait_for(
        "the CLI's words for the create",
        LIVE,
        "document.getElementById('result').textContent === 'workspace/bob created'",
    );
    let bob = format!("#workspaces tbody tr[data-key=\"{}/bob\"]", &*ns);
    browser.wait_for(
        "bob Running and Ready",
        Duration::from_secs(180),
        &format!(
            "(() => {{ const tr = document.querySelector('{bob}'); \
             return tr && tr.cells[1].textContent === 'Running' && tr.cells[2].textContent === '1/1' \
             && tr.cells[3].textContent === 'micro'; }})()"
        ),
    );
    let bob_claims = claim_uids_of(&ns, "bob");
    assert_eq!(bob_claims.len(), 3, "bob's three claims: {bob_claims:?}");
    browser
        .eval(&format!("document.querySelector('{bob}').click()"))
        .expect("open bob's page");
    browser
        .eval("document.getElementById('delete').click()")
        .expect("click Delete");
    browser.wait_for(
        "the CLI's words for the delete",
        LIVE,
        "document.getElementById('result').textContent.startsWith('workspace/bob deleted; its volumes are kept')",
    );
    browser.wait_for(
        "bob gone from the table",
        LIVE,
        &format!("!document.querySelector('{bob}')"),
    );
    assert_eq!(
        claim_uids_of(&ns, "bob"),
        bob_claims,
        "delete from the page keeps the claims"
    );

    // CPU and memory in use, from the metrics API, against the tier's requests.
    let used = browser.wait_for(
        "alice's CPU and memory in use",
        Duration::from_secs(180),
        &format!(
            "(() => {{ const heads = Array.from(document.querySelectorAll('#workspaces thead th'), t => t.textContent); \
             const i = heads.indexOf('CPU in use'), j = heads.indexOf('Memory in use'); \
             const tr = document.querySelector('{row}'); \
             if (i < 0 || !tr || tr.cells[i].textContent === '-') return null; \
             return [tr.cells[i].textContent, tr.cells[j].textContent]; }})()"
        ),
    );
    assert!(
        used[0].as_str().is_some_and(|c| c.ends_with('m'))
            && used[1].as_str().is_some_and(|m| m.ends_with("Mi")),
        "usage in the table's units: {used}"
    );
    browser
        .screenshot(&screenshot_path("portal-usage.png"))
        .expect("a screenshot with usage");

    // The session counts as use, as `exec` does: its heartbeat recorded activity.
    eventually("the terminal's activity recorded on alice", LIVE, || {
        sts_annotation(&ns, "alice", LAST_ACTIVITY)
            .filter(|now| Some(now) != activity_before.as_ref())
    });
}

// ------------------------------------------------------------------ issue 15: backups

/// `kubectl devenv backups alice --from REPO -o json`: the items.
fn backups_of(ns: &str, repo: &str, name: &str) -> Vec<Value> {
    let (out, _) = dv_ok(c(), ns, &["backups", name, "--from", repo, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("backups -o json is JSON");
    v["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn backup_restore_in_place_and_as_new_through_a_loopback_registry() {
    let registry = devenv_e2e::release::Registry::start().expect("docker-registry on 127.0.0.1");
    let repo = format!("{}/devenv/backups", registry.addr);
    let ns = Ns::new("node-backup");
    create_ready(&ns, "alice", &[]);
    let first = unique_name("first");
    write_work(&ns, "alice", &first);
    sh(
        &ns,
        "alice",
        &format!("mkdir -p '{WORKSPACE_DIR}/a dir' && echo dot > {WORKSPACE_DIR}/.hidden && ln -s keep.txt {WORKSPACE_DIR}/link"),
    );

    // 1. Back up the running workspace: one artifact, a layer per volume, listed.
    let (pushed, said) = dv_ok(c(), &ns, &["backup", "alice", "--to", &repo]);
    let backup1 = pushed.trim().to_owned();
    assert!(
        backup1.starts_with(&format!("{repo}@sha256:")),
        "backup prints the pushed reference by digest: {backup1}\n{said}"
    );
    let listed = backups_of(&ns, &repo, "alice");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["reason"], "manual");
    assert_eq!(listed[0]["workspace"], "alice");
    assert_eq!(
        listed[0]["volumes"].as_array().map(Vec::len),
        Some(3),
        "{listed:?}"
    );
    assert!(backup1.ends_with(listed[0]["digest"].as_str().unwrap_or("?")));
    let (table, _) = dv_ok(c(), &ns, &["backups", "--from", &repo]);
    assert!(
        table.starts_with("WORKSPACE") && table.contains("manual"),
        "{table}"
    );

    // 2. Change the data, then restore in place: the old data is back, what was there is
    // in a pre-restore backup.
    let second = unique_name("second");
    write_work(&ns, "alice", &second);
    sh(&ns, "alice", &format!("echo new > {WORKSPACE_DIR}/new.txt"));
    let (_, said) = dv_ok(c(), &ns, &["restore", "alice", "--from", &backup1]);
    assert!(said.contains("verified"), "{said}");
    assert_work(&ns, "alice", &first, "restore in place");
    let files = sh(&ns, "alice", &format!("ls -A {WORKSPACE_DIR}"));
    assert!(
        !files.contains("new.txt"),
        "a file made after the backup survived the restore: {files}"
    );
    assert!(
        files.contains("a dir") && files.contains(".hidden"),
        "{files}"
    );
    assert_eq!(
        sh(&ns, "alice", &format!("readlink {WORKSPACE_DIR}/link")).trim(),
        "keep.txt"
    );
    assert_eq!(sh(&ns, "alice", "id -u").trim(), "1000");
    let listed = backups_of(&ns, &repo, "alice");
    let pre: Vec<&Value> = listed
        .iter()
        .filter(|b| b["reason"] == "pre-restore")
        .collect();
    assert_eq!(pre.len(), 1, "one pre-restore backup: {listed:?}");
    let pre_ref = format!("{repo}@{}", pre[0]["digest"].as_str().unwrap_or_default());

    // 3. The pre-restore backup --as a new workspace: it holds what alice held before.
    suite().node.ensure_pv_sets(1).expect("PVs for alice2");
    dv_ok(
        c(),
        &ns,
        &["restore", "alice", "--from", &pre_ref, "--as", "alice2"],
    );
    assert_work(
        &ns,
        "alice2",
        &second,
        "restore --as of the pre-restore backup",
    );
    assert_eq!(
        sh(&ns, "alice2", &format!("cat {WORKSPACE_DIR}/new.txt")).trim(),
        "new"
    );

    // 4. A stopped workspace is backed up (and restored) through a helper pod.
    let third = unique_name("third");
    write_work(&ns, "alice", &third);
    dv_ok(c(), &ns, &["stop", "alice"]);
    wait_gone(&ns, "alice-0");
    let stopped_tag = format!("{repo}:alice-stopped");
    let (pushed, said) = dv_ok(c(), &ns, &["backup", "alice", "--to", &stopped_tag]);
    assert!(said.contains("through pod alice-volumes-"), "{said}");
    let stopped_ref = pushed.trim().to_owned();
    // In place while stopped: back to the first backup (what was there is backed up first).
    dv_ok(c(), &ns, &["restore", "alice", "--from", &backup1]);
    let helpers = kubectl_ok(&[
        "get",
        "pods",
        "-n",
        &ns,
        "-l",
        "devenv.io/volume-helper-of=alice",
        "-o",
        "name",
    ]);
    eventually("helper pods to be gone", Duration::from_secs(60), || {
        kubectl_ok(&[
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            "devenv.io/volume-helper-of=alice",
            "-o",
            "name",
        ])
        .trim()
        .is_empty()
        .then_some(())
    });
    eprintln!("helper pods right after restore: {helpers:?}");
    dv_ok(c(), &ns, &["start", "alice"]);
    wait_ready(&ns, "alice-0", None);
    assert_work(&ns, "alice", &first, "restore in place while stopped");
    // The backup of the stopped workspace has the data it had: restore it over the running one.
    dv_ok(
        c(),
        &ns,
        &["restore", "alice", "--from", &stopped_ref, "--no-backup"],
    );
    assert_work(
        &ns,
        "alice",
        &third,
        "restore of the stopped workspace's backup",
    );

    // 5. Only the backup's owner (or an admin) restores it.
    let bob = unique_name("bob");
    let bob_cfg = c().user_kubeconfig(&bob).expect("bob's kubeconfig");
    kubectl_ok(&[
        "create",
        "rolebinding",
        "bob-devenv",
        "-n",
        &ns,
        "--clusterrole=devenv-user",
        &format!("--user={bob}"),
    ]);
    let out = eventually("bob's refusal", Duration::from_secs(30), || {
        let out = devenv_e2e::plugin::devenv_as(
            &bob_cfg,
            [
                "-n", &ns, "restore", "alice", "--from", &backup1, "--as", "bobs",
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        err.contains("restore refused").then_some(err)
    });
    assert!(out.contains("only its owner"), "{out}");
    assert!(
        get_in(c(), &ns, "statefulset/bobs").is_none(),
        "a refused restore made a workspace"
    );

    // 6. A damaged blob is refused by digest before anything is written.
    let workspace_layer = listed[0]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|l| l["volume"] == "workspace"))
        .and_then(|l| l["digest"].as_str())
        .expect("the workspace layer of the first backup")
        .to_owned();
    let path = registry.blob_path(&workspace_layer);
    let mut bytes = std::fs::read(&path).expect("the layer blob on disk");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).expect("damaging the blob");
    let out = dv(
        c(),
        &ns,
        &["restore", "alice", "--from", &backup1, "--no-backup"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a damaged backup was restored: {err}"
    );
    assert!(
        err.contains("digest"),
        "the refusal names the digest: {err}"
    );
    assert_work(
        &ns,
        "alice",
        &third,
        "a refused restore of a damaged backup",
    );

    // 7. delete --purge backs up first; without a repository it refuses, unless --no-backup.
    let (_, said) = dv_ok(
        c(),
        &ns,
        &["delete", "alice2", "--purge", "--yes", "--backup-to", &repo],
    );
    assert!(said.contains("before deleting its data"), "{said}");
    let purged = backups_of(&ns, &repo, "alice2");
    assert!(
        purged.iter().any(|b| b["reason"] == "pre-purge"),
        "{purged:?}"
    );
    let out = dv(c(), &ns, &["delete", "alice", "--purge", "--yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--no-backup"),
        "{err}"
    );
    assert!(
        get_in(c(), &ns, "pvc/workspace-alice-0").is_some(),
        "refused purge deleted a claim"
    );
}

/// The notes of the Events with `reason` about `name`.
fn event_notes(ns: &str, name: &str, reason: &str) -> Vec<String> {
    devenv_e2e::objects::events_about(c(), ns, name)
        .iter()
        .filter(|e| e["reason"] == reason)
        .filter_map(|e| e["note"].as_str().map(str::to_owned))
        .collect()
}

/// Scheduled backups (`backup.every`, `backup.keep`): the lifecycle controller, with the
/// rights the install grants for them, backs a running workspace up on the period, prunes
/// its scheduled backups to `keep` and never a manual one, records the last one on the
/// workspace (`get`), backs a stopped workspace up once (through a helper pod) and then
/// waits for its start; a scheduled backup restores; a registry that is down is a Warning
/// Event and a failed count, not a crash.
#[test]
fn scheduled_backups_are_taken_pruned_to_keep_and_restorable() {
    let registry = devenv_e2e::release::Registry::start().expect("docker-registry on 127.0.0.1");
    let repo = format!("{}/devenv/scheduled", registry.addr);
    let ns = Ns::new("node-sched");
    let cluster = suite().cluster;
    let _grant = devenv_e2e::controller::grant_backups(cluster);
    create_ready(&ns, "sam", &[]);
    let token = unique_name("sched");
    write_work(&ns, "sam", &token);
    let (manual, _) = dv_ok(c(), &ns, &["backup", "sam", "--to", &repo]);
    let manual = manual.trim().to_owned();
    let recorded = sts_annotation(&ns, "sam", "devenv.io/last-backup-ref");
    assert_eq!(
        recorded.as_deref(),
        Some(manual.as_str()),
        "a manual backup is recorded on the workspace"
    );
    let controller = Controller::start(
        &controller_user(cluster),
        &ns,
        "devenv-lifecycle",
        "node-sched",
        &format!(
            "lifecycle:\n  idleTimeout: 0\nbackup:\n  repository: {repo}\n  every: 8s\n  keep: 2\n"
        ),
    );

    // Four scheduled backups: two are kept, the manual one is never pruned.
    let taken = |controller: &Controller| -> u64 {
        controller
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix("devenv_lifecycle_backups_total{result=\"ok\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    eventually("four scheduled backups", Duration::from_secs(180), || {
        (taken(&controller) >= 4).then_some(())
    });
    let listed = backups_of(&ns, &repo, "sam");
    let reasons: Vec<&str> = listed.iter().filter_map(|b| b["reason"].as_str()).collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "scheduled").count(),
        2,
        "keep: 2 scheduled backups: {reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == "manual").count(),
        1,
        "the manual backup is kept: {reasons:?}"
    );
    let notes = event_notes(&ns, "sam", "BackedUp");
    assert!(
        notes.iter().any(|n| n.contains(&format!("go to {repo};"))),
        "{notes:?}"
    );
    let metrics = controller.metrics();
    assert!(
        !metrics.contains("devenv_lifecycle_backups_pruned_total 0"),
        "{metrics}"
    );
    // `get` shows the newest: the last scheduled one, by digest.
    let (json_out, _) = dv_ok(c(), &ns, &["get", "sam", "-o", "json"]);
    let got: Value = serde_json::from_str(&json_out).expect("get -o json");
    let newest = listed
        .iter()
        .rfind(|b| b["reason"] == "scheduled")
        .and_then(|b| b["digest"].as_str())
        .unwrap_or("?")
        .to_owned();
    let last_ref = got["lastBackupRef"].as_str().unwrap_or_default().to_owned();
    assert!(got["lastBackup"].is_string(), "{got}");
    assert!(
        last_ref.starts_with(&format!("{repo}@sha256:")),
        "get names the last backup: {got}"
    );
    let (table, _) = dv_ok(c(), &ns, &["get", "sam"]);
    assert!(table.contains("LAST BACKUP"), "{table}");

    // A scheduled backup restores like any other.
    suite().node.ensure_pv_sets(1).expect("PVs for sam2");
    dv_ok(
        c(),
        &ns,
        &[
            "restore",
            "sam",
            "--from",
            &format!("{repo}@{newest}"),
            "--as",
            "sam2",
        ],
    );
    assert_work(&ns, "sam2", &token, "restore --as of a scheduled backup");
    dv_ok(
        c(),
        &ns,
        &["delete", "sam2", "--purge", "--no-backup", "--yes"],
    );

    // Stopped: backed up once more (through a helper pod), then not until it starts.
    dv_ok(c(), &ns, &["stop", "sam"]);
    wait_gone(&ns, "sam-0");
    let stopped_at = sts_annotation(&ns, "sam", "devenv.io/stopped-at").unwrap_or_default();
    eventually("a backup after the stop", Duration::from_secs(120), || {
        let last = sts_annotation(&ns, "sam", "devenv.io/last-backup")?;
        (last >= stopped_at).then_some(())
    });
    let after_stop = taken(&controller);
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(
        taken(&controller),
        after_stop,
        "a stopped workspace backed up since its stop was backed up again"
    );
    let (json_out, _) = dv_ok(c(), &ns, &["get", "sam", "-o", "json"]);
    let got: Value = serde_json::from_str(&json_out).expect("get -o json");
    assert!(
        got["lastBackup"].as_str() >= Some(stopped_at.as_str()),
        "{got}"
    );
    let log = controller.log();
    assert!(log.contains("scheduled backup taken"), "{log}");

    // The registry down: a Warning Event that says so, a failed count, and a retry.
    dv_ok(c(), &ns, &["start", "sam"]);
    drop(registry);
    eventually("a BackupFailed event", Duration::from_secs(120), || {
        event_notes(&ns, "sam", "BackupFailed").into_iter().next()
    });
    let failed = event_notes(&ns, "sam", "BackupFailed");
    assert!(
        failed[0].contains("Scheduled backup of workspace sam failed")
            && failed[0].contains("tried again every"),
        "{failed:?}"
    );
    let metrics = controller.metrics();
    assert!(
        metrics.contains("devenv_lifecycle_backups_total{result=\"failed\"}"),
        "{metrics}"
    );
}

/// `/usr/bin/time -f '%M %e' kubectl-devenv ARGS` (the plugin itself, not through
/// kubectl, so the peak is the plugin's): (max RSS in MiB, seconds), checked.
fn timed_devenv(ns: &str, args: &[&str]) -> (f64, f64) {
    let plugin = devenv_e2e::plugin::plugin_dir()
        .expect("the plugin is built")
        .join("kubectl-devenv");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %M %e"])
        .arg(plugin)
        .arg("--kubeconfig")
        .arg(&c().kubeconfig)
        .args(["-n", ns])
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("running /usr/bin/time (Debian package time)");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "kubectl-devenv {} failed:\n{err}",
        args.join(" ")
    );
    let line = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("TIME "))
        .unwrap_or_else(|| panic!("no TIME line in:\n{err}"));
    eprintln!("kubectl-devenv {}:\n{err}", args.join(" "));
    let mut parts = line.split_whitespace();
    let kib: f64 = parts.next().and_then(|p| p.parse().ok()).expect("max RSS");
    let secs: f64 = parts.next().and_then(|p| p.parse().ok()).expect("elapsed");
    (kib / 1024.0, secs)
}

/// The BENCHMARKS.md figures of backups: a 1 GiB volume backed up and restored through
/// the API server and a loopback registry, beside `kubectl exec tar` alone (the bytes
/// through the same API server, to nowhere). Memory must stay far below the volume's size:
/// the plugin streams, it never holds a volume.
#[test]
fn backup_of_a_gib_streams_in_bounded_memory() {
    const MIB: u64 = 1024;
    let registry = devenv_e2e::release::Registry::start().expect("docker-registry on 127.0.0.1");
    let repo = format!("{}/devenv/bench", registry.addr);
    let ns = Ns::new("node-backup-bench");
    create_ready(&ns, "big", &[]);
    sh(
        &ns,
        "big",
        &format!(
            "head -c {} /dev/urandom > {WORKSPACE_DIR}/big.bin",
            MIB << 20
        ),
    );

    // The peer: the same bytes through `kubectl exec`, written nowhere.
    let t0 = Instant::now();
    let out = c()
        .kubectl_command()
        .args([
            "exec",
            "-n",
            &ns,
            "big-0",
            "-c",
            "workspace",
            "--",
            "tar",
            "-C",
            WORKSPACE_DIR,
            "-cf",
            "-",
            ".",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("kubectl exec tar");
    let exec_secs = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "kubectl exec tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (backup_mib, backup_secs) = timed_devenv(
        &ns,
        &[
            "backup",
            "big",
            "--volume",
            "workspace",
            "--to",
            &format!("{repo}:big"),
        ],
    );
    let (restore_mib, restore_secs) = timed_devenv(
        &ns,
        &[
            "restore",
            "big",
            "--from",
            &format!("{repo}:big"),
            "--no-backup",
        ],
    );
    let rate = |secs: f64| 1024.0 / secs;
    println!(
        "BENCH backup 1 GiB: {backup_secs:.1} s ({:.0} MiB/s), plugin max RSS {backup_mib:.1} MiB",
        rate(backup_secs)
    );
    println!(
        "BENCH restore 1 GiB: {restore_secs:.1} s ({:.0} MiB/s), plugin max RSS {restore_mib:.1} MiB",
        rate(restore_secs)
    );
    println!(
        "BENCH kubectl exec tar 1 GiB to /dev/null: {exec_secs:.1} s ({:.0} MiB/s)",
        rate(exec_secs)
    );
    let size = sh(&ns, "big", &format!("wc -c < {WORKSPACE_DIR}/big.bin"));
    assert_eq!(size.trim(), (MIB << 20).to_string(), "the restored file");
    for (what, mib) in [("backup", backup_mib), ("restore", restore_mib)] {
        assert!(
            mib < 128.0,
            "{what} of 1 GiB took {mib:.1} MiB: it does not stream"
        );
    }
}
