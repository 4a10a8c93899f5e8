//! Issue 13: the release images on the real node, pulled from a real registry.
//!
//!     cargo build --workspace --bins
//!     cargo test -p devenv-e2e --test e2e_release -- --test-threads=1 --nocapture
//!
//! `images/build.sh` builds the webhook image (from `target/release/devenv-webhook`,
//! built first when stale) and the default workspace image, cached outside the
//! repository by their inputs; Debian's `docker-registry` serves them on `127.0.0.1`
//! (pushed with `images/build.sh push`, i.e. `skopeo`), and the node's containerd pulls
//! them from there, by the registry's names and by the release's own names
//! (`ghcr.io/devenv-io/...`, which `node.sh registry` serves from the loopback registry:
//! nothing is pulled from the internet). Then the in-cluster install, with no
//! `--webhook-url`: the API server calls the replicas through their Service (the test
//! cluster's `--enable-aggregator-routing`), and a workspace on the default image.
//!
//! Needs root, the Kubernetes binaries, `tests/cluster/node/install-deps.sh` and
//! `images/install-deps.sh` (CI's `.ci/run` runs both). Missing pieces fail the tests.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use devenv_e2e::node::{shared_node, Node};
use devenv_e2e::objects::{
    absent, create, events_about, get, get_in, is_ready, name_of, replicas, uid,
};
use devenv_e2e::output::{assert_mentions, both, fails, ok};
use devenv_e2e::plugin::{
    devenv, devenv_command, dv, dv_ok, uninstall, wait_install_namespace_usable, CONFIGS,
    CONFIG_NAME, INSTALL_NS,
};
use devenv_e2e::release::{build_images, forget_image, Registry, ReleaseImages};
use devenv_e2e::workspace::{assert_every_mutation, workspace_pod};
use devenv_e2e::{eventually, shared, Cluster};
use serde_json::{json, Value};

struct Suite {
    cluster: &'static Cluster,
    node: &'static Node,
    images: ReleaseImages,
    registry: Registry,
    /// `127.0.0.1:PORT/devenv-io`, where `./release.sh` pushed both images.
    pushed: String,
    /// `./release.sh`'s output directory (`DIST`) and what it printed.
    dist: tempfile::TempDir,
    release: Output,
}

/// Cluster, node, images, registry: once per test binary. The registry's watchdog stops
/// it when the process ends (a static is never dropped).
fn suite() -> &'static Suite {
    static SUITE: OnceLock<Suite> = OnceLock::new();
    SUITE.get_or_init(|| {
        let cluster = shared();
        let node = shared_node();
        let images = build_images().expect("building the release images (images/build.sh)");
        let registry = Registry::start().expect("starting docker-registry on 127.0.0.1");
        // The release script itself pushes them (and packs the plugin for krew).
        let dist = tempfile::tempdir().expect("a directory for the release");
        let t0 = Instant::now();
        let (pushed, release) = registry
            .release("devenv-io", dist.path())
            .expect("running ./release.sh against the loopback registry");
        eprintln!(
            "devenv-e2e: ./release.sh {pushed} in {:.1}s ({}):\n{}",
            t0.elapsed().as_secs_f64(),
            release.status,
            both(&release)
        );
        // Pushed or not, the suite goes on only with the images in the registry; what
        // else the release did is judged by its own test.
        assert!(
            dist.path().join("images.env").is_file(),
            "./release.sh pushed no images: {}",
            both(&release)
        );
        registry
            .serve_node(node)
            .expect("pointing the node's containerd at the loopback registry");
        Suite {
            cluster,
            node,
            images,
            registry,
            pushed,
            dist,
            release,
        }
    })
}

fn c() -> &'static Cluster {
    suite().cluster
}

/// The name the image was pushed under in the loopback registry.
fn pushed_ref(release_ref: &str) -> String {
    let s = suite();
    let tail = release_ref
        .rsplit('/')
        .next()
        .expect("an image reference has a name");
    format!("{}/{tail}", s.pushed)
}

/// What went wrong in the install namespace, for failure messages.
fn install_diagnostics() -> String {
    let s = suite();
    format!(
        "{}\n{}\n---- kubelet:\n{}\n---- containerd:\n{}\n---- registry:\n{}",
        both(&c().kubectl(["get", "deploy,pods", "-o", "wide", "-n", INSTALL_NS])),
        both(&c().kubectl([
            "get",
            "events",
            "--sort-by=.lastTimestamp",
            "-n",
            INSTALL_NS
        ])),
        s.node.log_tail("kubelet", 15),
        s.node.log_tail("containerd", 15),
        s.registry.log()
    )
}

/// `kubectl devenv install --image IMAGE` (no --webhook-url), then waits until both
/// replicas are Ready; returns install's output, how long install ran (it waits for
/// the replicas itself) and the time to Ready.
fn install_in_cluster(image: &str) -> (Output, Duration, Duration) {
    wait_install_namespace_usable(c());
    let t0 = Instant::now();
    let out = devenv(c(), ["install", "--image", image]);
    let install_took = t0.elapsed();
    assert!(
        out.status.success(),
        "kubectl devenv install --image {image}: {}\n{}",
        both(&out),
        install_diagnostics()
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let d = get(c(), &["deployment", CONFIG_NAME, "-n", INSTALL_NS]);
        let ready = d
            .as_ref()
            .and_then(|d| d["status"]["readyReplicas"].as_i64())
            .unwrap_or(0);
        if ready == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook's replicas did not become Ready in 240s:\n{}",
            install_diagnostics()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    (out, install_took, t0.elapsed())
}

fn webhook_pods() -> Vec<Value> {
    let list = get(
        c(),
        &[
            "pods",
            "-n",
            INSTALL_NS,
            "-l",
            "app.kubernetes.io/name=devenv-webhook",
        ],
    )
    .expect("listing the webhook pods");
    list["items"].as_array().cloned().unwrap_or_default()
}

// ------------------------------------------------------------------ the webhook

#[test]
fn in_cluster_install_pulls_from_the_registry_and_admits_through_the_service() {
    let s = suite();
    // The plugin's default names exactly what images/build.sh tagged.
    let help = both(&devenv(c(), ["install", "--help"]));
    assert!(help.contains(&s.images.webhook), "install --help: {help}");
    let image = pushed_ref(&s.images.webhook);
    // From nothing: not installed (an earlier test may have left it so), and the image
    // not on the node, so the replicas pull it from the loopback registry.
    uninstall(c());
    let forgotten = forget_image(s.node, &s.images.webhook_digest)
        .expect("removing the webhook image from the node's containerd");
    eprintln!("devenv-e2e: removed {forgotten} name(s) of the webhook image from the node");
    let (out, install_took, took) = install_in_cluster(&image);
    let text = both(&out);
    println!("{text}");
    // install itself waited until both replicas were Ready and the API server could
    // call them (a server-side dry run of a workspace pod).
    assert_mentions(
        &text,
        &[
            INSTALL_NS,
            &image,
            "webhook ready: 2/2 replicas, admission checked",
        ],
        "install's output",
    );
    println!("BENCH install-to-replicas-ready: {} ms", took.as_millis());
    println!(
        "BENCH install-command-wait: {} ms",
        install_took.as_millis()
    );
    // The kubelet pulled it (an event per pod), and says how long the pull took.
    let events = get(c(), &["events", "-n", INSTALL_NS]).expect("events");
    let pulled: Vec<String> = events["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| e["reason"] == "Pulled")
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .filter(|m| m.contains("Successfully pulled") && m.contains(&image))
        .collect();
    assert!(
        !pulled.is_empty(),
        "no replica pulled {image}:\n{}",
        install_diagnostics()
    );
    for m in &pulled {
        println!("BENCH webhook-image-pull: {m}");
    }

    // Pulled from the loopback registry: the running image is the built digest.
    let pods = webhook_pods();
    assert_eq!(pods.len(), 2, "two replicas: {pods:?}");
    for pod in &pods {
        assert!(is_ready(pod), "{} is not Ready", name_of(pod));
        for cs in pod["status"]["containerStatuses"]
            .as_array()
            .expect("statuses")
        {
            let id = cs["imageID"].as_str().unwrap_or_default();
            assert!(
                id.ends_with(&s.images.webhook_digest),
                "{}: container {} runs {id}, not {}",
                name_of(pod),
                cs["name"],
                s.images.webhook_digest
            );
            assert_eq!(cs["restartCount"], 0, "{}: {cs}", name_of(pod));
        }
        let sc = &pod["spec"]["containers"][0]["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
        assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 65532);
        // The replica reached the API server through the `kubernetes` Service
        // (10.96.0.1:443, which node.sh DNATs to loopback): its Secret catalog synced,
        // so /readyz says plain "ready", not "ready (Secret catalog not synced yet)".
        let readyz = format!(
            "/api/v1/namespaces/{INSTALL_NS}/pods/https:{}:8443/proxy/readyz",
            name_of(pod)
        );
        let said = ok(
            &c().kubectl(["get", "--raw", &readyz]),
            "the replica's /readyz",
        );
        assert_eq!(said.trim(), "ready", "{}: /readyz", name_of(pod));
    }
    // Registered through the Service, not a URL.
    for kind in CONFIGS {
        let cfg = get(c(), &[kind, CONFIG_NAME]).expect("webhook configuration");
        for w in cfg["webhooks"].as_array().expect("webhooks") {
            assert_eq!(w["clientConfig"]["service"]["name"], CONFIG_NAME, "{w}");
            assert!(w["clientConfig"]["url"].is_null(), "{w}");
        }
    }

    // The API server calls the replicas through the Service: a workspace pod is mutated
    // as stored, a privileged one is denied with a message that reaches kubectl.
    let ns = c().fresh_namespace("release-admit");
    // Where PodSecurity enforces nothing, so that the refusal below is the webhook's (in
    // a `restricted` namespace the built-in PodSecurity plugin runs before validating
    // webhooks and refuses first).
    c().kubectl_ok([
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=privileged",
        "--overwrite",
    ]);
    s.node.ensure_pv_sets(1).expect("PVs for the workspace");
    let created = dv(
        c(),
        &ns,
        &[
            "create",
            "bob",
            "--image",
            "devenv.test/workspace:1",
            "--no-wait",
        ],
    );
    assert!(
        created.status.success(),
        "kubectl devenv create bob: {}\n{}",
        both(&created),
        install_diagnostics()
    );
    let stored = eventually(
        "pod bob-0, admitted by the in-cluster webhook",
        Duration::from_secs(90),
        || get_in(c(), &ns, "pod/bob-0"),
    );
    assert_every_mutation(&stored, ("500m", "2Gi"), ("2", "4Gi"), |t| {
        format!("{t}-bob-0")
    });
    let denied = workspace_pod(
        "priv",
        "carol",
        json!({"name": "workspace", "image": "devenv.test/workspace:1",
               "securityContext": {"privileged": true}}),
        None,
    );
    let refusal = fails(&create(c(), &ns, &denied), "a privileged workspace pod");
    assert_mentions(&refusal, &["denied", "privileged"], "the refusal");
    assert!(absent(c(), &["pod", "priv", "-n", &ns]));

    // status: healthy, both replicas ready, through the Service.
    let status = ok(&devenv(c(), ["status"]), "kubectl devenv status");
    assert_mentions(
        &status,
        &["2/2 ready", &format!("service {INSTALL_NS}/{CONFIG_NAME}")],
        "status",
    );

    // Re-running install changes nothing: same pods, same Deployment generation.
    let deployment = get(c(), &["deployment", CONFIG_NAME, "-n", INSTALL_NS]).expect("deploy");
    let before: Vec<String> = webhook_pods().iter().map(uid).collect();
    let again = devenv(c(), ["install", "--image", &image]);
    assert!(again.status.success(), "{}", both(&again));
    assert_mentions(&both(&again), &["reused"], "the certificate on re-run");
    std::thread::sleep(Duration::from_secs(3));
    let after = get(c(), &["deployment", CONFIG_NAME, "-n", INSTALL_NS]).expect("deploy");
    assert_eq!(
        after["metadata"]["generation"], deployment["metadata"]["generation"],
        "install again rolled the Deployment"
    );
    let now: Vec<String> = webhook_pods().iter().map(uid).collect();
    assert_eq!(now, before, "install again replaced the webhook pods");

    // An image that cannot be pulled: install names it and fails at its timeout, and
    // the old replicas keep serving meanwhile.
    let missing = format!("{}/devenv-webhook-missing:0", s.pushed);
    let bad = devenv(c(), ["install", "--image", &missing, "--timeout", "25s"]);
    let err = fails(&bad, "install with an image that does not exist");
    assert_mentions(
        &err,
        &["timed out after 25s", &missing],
        "install's timeout",
    );
    assert!(
        err.contains("ImagePullBackOff") || err.contains("ErrImagePull"),
        "the pull failure is not named: {err}"
    );
    // status says the old ReplicaSet's two replicas still serve, that a rollout is under
    // way, and names what blocks it (views::status::deployment_health_line); the
    // webhook still judges pods.
    let st = both(&devenv(c(), ["status"]));
    assert_mentions(
        &st,
        &[
            &format!("Deployment {INSTALL_NS}/{CONFIG_NAME}: 2/2 ready, rollout in progress"),
            "the webhook's rollout is stuck",
            &missing,
        ],
        "status during the stuck rollout",
    );
    let refusal = fails(
        &create(c(), &ns, &denied),
        "a privileged workspace pod during the stuck rollout",
    );
    assert_mentions(
        &refusal,
        &["denied", "privileged"],
        "the refusal during the stuck rollout",
    );
    // Back to the good image: install waits until it serves again.
    let (back, _, _) = install_in_cluster(&image);
    assert_mentions(
        &both(&back),
        &["webhook ready: 2/2"],
        "install after the bad image",
    );
    let _ = c().kubectl(["delete", "namespace", &ns, "--wait=false"]);
}

// ------------------------------------------------------------------ the default workspace

/// `kubectl devenv exec NAME -i` with `script` on stdin (the default shell), as the
/// admin; its stdout.
fn shell_stdin(ns: &str, name: &str, script: &str) -> String {
    let mut cmd = devenv_command(&c().kubeconfig);
    cmd.args(["-n", ns, "exec", name, "-i"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running kubectl devenv exec -i");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("writing the script");
    let out = child.wait_with_output().expect("kubectl devenv exec -i");
    ok(&out, "kubectl devenv exec -i")
}

/// The host keys sshd serves on 2222, as `ssh-keyscan` inside the pod sees them. Waits
/// for sshd (up to 60 s): Ready is not "sshd up" on a first start, where the entrypoint
/// makes three host keys before it execs sshd (a CI run scanned too early).
fn served_host_keys(ns: &str, name: &str) -> Vec<String> {
    eventually(
        &format!("sshd in {name} to serve host keys"),
        Duration::from_secs(60),
        || {
            let out = dv(
                c(),
                ns,
                &[
                    "exec",
                    name,
                    "--",
                    "sh",
                    "-c",
                    "ssh-keyscan -p 2222 -t ed25519,ecdsa,rsa 127.0.0.1 2>/dev/null",
                ],
            );
            let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
                .collect();
            keys.sort();
            (!keys.is_empty()).then_some(keys)
        },
    )
}

#[test]
fn default_image_workspace_runs_zsh_and_sshd_as_1000_and_keeps_its_host_key() {
    let s = suite();
    let image = pushed_ref(&s.images.webhook);
    install_in_cluster(&image);
    let ns = c().fresh_namespace("release-ws");
    s.node.ensure_pv_sets(1).expect("PVs for the workspace");
    let help = both(&devenv(c(), ["create", "--help"]));
    assert!(help.contains(&s.images.workspace), "create --help: {help}");
    // No --image: the release's own name, served to the node from the loopback registry.
    let t0 = Instant::now();
    let out = dv(c(), &ns, &["create", "alice", "--wait", "--timeout", "4m"]);
    assert!(
        out.status.success(),
        "kubectl devenv create alice (default image): {}\n{}\n{}",
        both(&out),
        both(&c().kubectl(["get", "pods,pvc,events", "-n", &ns])),
        s.node.log_tail("kubelet", 20)
    );
    println!(
        "BENCH create-to-ready-default-image: {} ms",
        t0.elapsed().as_millis()
    );
    let pod = get_in(c(), &ns, "pod/alice-0").expect("pod alice-0");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], s.images.workspace.as_str());
    let id = pod["status"]["containerStatuses"][0]["imageID"]
        .as_str()
        .unwrap_or_default();
    assert!(id.ends_with(&s.images.workspace_digest), "{id}");

    // exec's default shell is zsh, as uid 1000.
    let shell = shell_stdin(
        &ns,
        "alice",
        "echo \"zsh=$ZSH_VERSION uid=$(id -u) home=$HOME\"\n",
    );
    assert!(shell.contains("zsh=5"), "not zsh: {shell}");
    assert!(shell.contains("uid=1000 home=/home/dev"), "{shell}");

    // sshd is the workspace's main process, as uid 1000, listening on 2222. Ready is
    // not "sshd up": on a first start the entrypoint makes three host keys before it
    // execs sshd, which takes seconds on a busy node (a CI run saw no sshd yet here).
    let ps = eventually("sshd to run in alice-0", Duration::from_secs(60), || {
        let out = dv(
            c(),
            &ns,
            &["exec", "alice", "--", "sh", "-c", "ps -eo uid=,args="],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .any(|l| l.contains("sshd") && !l.contains("ps -eo"))
            .then_some(text)
    });
    assert!(
        ps.lines()
            .filter(|l| l.contains("sshd"))
            .all(|l| l.trim_start().starts_with("1000 ")),
        "sshd not (only) as uid 1000: {ps}"
    );
    let listen = sh(&ns, "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null");
    // 0x08AE = 2222, state 0A = LISTEN, uid column 1000.
    assert!(
        listen.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 7 && f[1].ends_with(":08AE") && f[3] == "0A" && f[7] == "1000"
        }),
        "nothing listens on 2222 as uid 1000:\n{listen}"
    );
    let keys = served_host_keys(&ns, "alice");
    assert!(keys.len() >= 2, "host keys: {keys:?}");

    // The host keys live on the config volume: the same after the pod is replaced.
    let old_uid = uid(&pod);
    ok(
        &c().kubectl(["delete", "pod", "alice-0", "-n", &ns, "--wait=true"]),
        "kubectl delete pod alice-0",
    );
    eventually(
        "a new alice-0 to be Ready",
        Duration::from_secs(180),
        || {
            let p = get_in(c(), &ns, "pod/alice-0")?;
            (uid(&p) != old_uid && is_ready(&p)).then_some(())
        },
    );
    let again = eventually("sshd to answer again", Duration::from_secs(30), || {
        let k = served_host_keys(&ns, "alice");
        (!k.is_empty()).then_some(k)
    });
    assert_eq!(again, keys, "the host keys changed with the pod");

    // uninstall leaves the workspace running.
    let ws_uid = uid(&get_in(c(), &ns, "pod/alice-0").expect("alice-0"));
    ok(&devenv(c(), ["uninstall"]), "kubectl devenv uninstall");
    for kind in CONFIGS {
        assert!(absent(c(), &[kind, CONFIG_NAME]), "{kind} left behind");
    }
    std::thread::sleep(Duration::from_secs(3));
    let p = get_in(c(), &ns, "pod/alice-0").expect("alice-0 after uninstall");
    assert_eq!(uid(&p), ws_uid, "uninstall replaced the workspace pod");
    assert!(is_ready(&p), "alice-0 is not Ready after uninstall");
    wait_install_namespace_usable(c());
    let _ = c().kubectl(["delete", "namespace", &ns, "--wait=false"]);
}

/// `kubectl devenv exec alice -- sh -c SCRIPT`: its stdout, which must succeed.
fn sh(ns: &str, script: &str) -> String {
    dv_ok(c(), ns, &["exec", "alice", "--", "sh", "-c", script]).0
}

// ------------------------------------------------------------------ operating it

/// Admissions made over and over from two threads while something changes under the
/// webhook: each is a server-side dry run of a workspace pod, which the API server sends
/// to both webhooks (`failurePolicy: Fail`), so an unreachable or untrusted replica is a
/// failed admission.
struct AdmissionLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl AdmissionLoad {
    fn start(ns: &str) -> AdmissionLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let pod = workspace_pod(
            "admission-probe",
            "probe",
            json!({"name": "workspace", "image": "devenv.test/workspace:1"}),
            None,
        )
        .to_string();
        let threads = (0..2)
            .map(|_| {
                let (stop, pod, ns) = (stop.clone(), pod.clone(), ns.to_owned());
                std::thread::spawn(move || {
                    let (mut n, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        let out = c().kubectl_stdin(
                            [
                                "create",
                                "--dry-run=server",
                                "-n",
                                &ns,
                                "-f",
                                "-",
                                "-o",
                                "name",
                            ],
                            &pod,
                        );
                        n += 1;
                        if !out.status.success() {
                            failures.push(both(&out));
                        }
                    }
                    (n, failures)
                })
            })
            .collect();
        AdmissionLoad { stop, threads }
    }

    /// Stops the threads and asserts that at least ten admissions were made `during`
    /// the change, and that none failed.
    fn finish_without_failures(self, during: &str) {
        let (n, failures) = self.finish();
        println!(
            "devenv-e2e: {n} admissions during the {during}, {} failed",
            failures.len()
        );
        assert!(n >= 10, "only {n} admissions during the {during}");
        assert!(
            failures.is_empty(),
            "admissions failed during the {during}: {failures:#?}"
        );
    }

    /// Stops the threads; how many admissions were made, and the failures' messages.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut n, mut failures) = (0, Vec::new());
        for t in self.threads {
            let (k, f) = t.join().expect("an admission thread");
            n += k;
            failures.extend(f);
        }
        (n, failures)
    }
}

/// How often each webhook replica has logged that it reloaded its serving certificate.
fn certificate_reloads() -> Vec<(String, usize)> {
    webhook_pods()
        .iter()
        .map(|p| {
            let name = name_of(p);
            let logs = c().kubectl(["logs", &name, "-c", "webhook", "-n", INSTALL_NS]);
            let n = String::from_utf8_lossy(&logs.stdout)
                .matches("serving certificate reloaded")
                .count();
            (name, n)
        })
        .collect()
}

/// Waits until every replica has logged more certificate reloads than in `before`.
fn wait_every_replica_reloaded(before: &[(String, usize)], what: &str) {
    eventually(what, Duration::from_secs(120), || {
        let now = certificate_reloads();
        now.iter()
            .all(|(pod, n)| before.iter().any(|(p, b)| p == pod && n > b))
            .then_some(())
    });
}

/// A CA and a serving certificate for the webhook's Service names, valid `days` days, made
/// with openssl (not with the plugin's own code, which is what is under test): files
/// `ca.crt`, `tls.crt`, `tls.key` in `dir`.
fn openssl_certificate(dir: &std::path::Path, sans: &str, days: u32) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        ok(&out, &format!("openssl {}", args.join(" ")));
    };
    let days = days.to_string();
    std::fs::write(dir.join("san.ext"), format!("subjectAltName={sans}\n")).expect("san.ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        &days,
        "-subj",
        "/CN=devenv-e2e-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=devenv-webhook",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        &days,
        "-extfile",
        "san.ext",
        "-out",
        "tls.crt",
    ]);
}

/// A replica's count of good policy reloads, from its `/metrics` (through the API
/// server's pod proxy).
fn policy_reloads(pod: &str) -> u64 {
    let path = format!("/api/v1/namespaces/{INSTALL_NS}/pods/https:{pod}:8443/proxy/metrics");
    let metrics = ok(
        &c().kubectl(["get", "--raw", &path]),
        "a replica's /metrics",
    );
    metrics
        .lines()
        .find(|l| l.starts_with("devenv_webhook_policy_reloads_total{result=\"ok\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no policy reload counter in {pod}'s /metrics:\n{metrics}"))
}

/// Replaces every webhook's caBundle, in both configurations, with `bundle_pem`.
fn set_ca_bundles(bundle_pem: &str) {
    use std::fmt::Write as _;
    let b64 = ok(
        &c().kubectl_stdin(
            [
                "create",
                "secret",
                "generic",
                "x",
                "--from-file=b=/dev/stdin",
                "--dry-run=client",
                "-o",
                "jsonpath={.data.b}",
            ],
            bundle_pem,
        ),
        "base64 of the bundle",
    );
    for kind in CONFIGS {
        let cfg = get(c(), &[kind, CONFIG_NAME]).expect("webhook configuration");
        let n = cfg["webhooks"].as_array().map_or(0, Vec::len);
        let mut patch = String::from("[");
        for i in 0..n {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                patch,
                r#"{sep}{{"op":"replace","path":"/webhooks/{i}/clientConfig/caBundle","value":"{b64}"}}"#
            );
        }
        patch.push(']');
        c().kubectl_ok(["patch", kind, CONFIG_NAME, "--type=json", "-p", &patch]);
    }
}

/// The caBundle registered in the mutating configuration's first webhook, as PEM.
fn registered_bundle() -> String {
    let cfg = get(c(), &[CONFIGS[0], CONFIG_NAME]).expect("webhook configuration");
    let b64 = cfg["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .expect("a caBundle")
        .to_owned();
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b64.as_bytes())?;
            child.wait_with_output()
        })
        .expect("base64 -d");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The in-cluster webhook as a platform team runs it, day to day: the lifecycle controller
/// holds its Lease in a replica and hibernates an idle workspace; a policy ConfigMap
/// edited in place reaches the running replicas; `install` renews a certificate close to
/// expiry; a rolling restart. No admission fails during the renewal or the restart.
#[test]
fn in_cluster_lease_policy_reload_renewal_and_rolling_restart_fail_no_admission() {
    let s = suite();
    let image = pushed_ref(&s.images.webhook);
    install_in_cluster(&image);
    let ns = c().fresh_namespace("release-ops");
    s.node.ensure_pv_sets(1).expect("PVs for the workspace");
    let replica_names: Vec<String> = webhook_pods().iter().map(name_of).collect();

    // ---- the lifecycle controller: one replica holds the Lease and acts.
    let holder = eventually(
        "the lifecycle Lease to be held",
        Duration::from_secs(60),
        || {
            let lease = get(c(), &["lease", "devenv-lifecycle", "-n", INSTALL_NS])?;
            lease["spec"]["holderIdentity"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
        },
    );
    assert!(
        replica_names.contains(&holder), // the controller's identity is its POD_NAME
        "the Lease is held by {holder}, not by a replica ({replica_names:?})"
    );
    let created = dv(
        c(),
        &ns,
        &[
            "create",
            "idler",
            "--image",
            "devenv.test/workspace:1",
            "--idle-timeout",
            "8s",
            "--no-wait",
        ],
    );
    ok(&created, "kubectl devenv create idler --idle-timeout 8s");
    let hibernated = eventually(
        "the in-cluster controller to hibernate idler",
        Duration::from_secs(90),
        || {
            let sts = get_in(c(), &ns, "statefulset/idler")?;
            (replicas(&sts) == 0).then_some(sts)
        },
    );
    assert!(
        hibernated["metadata"]["annotations"]["devenv.io/hibernated"].is_string(),
        "{hibernated}"
    );
    let by = eventually("a Hibernated event", Duration::from_secs(30), || {
        events_about(c(), &ns, "idler")
            .into_iter()
            .find(|e| e["reason"] == "Hibernated")
    });
    assert_eq!(by["reportingController"], "devenv-lifecycle", "{by}");
    assert_eq!(by["reportingInstance"], holder.as_str(), "{by}");
    // The claims stay.
    let claims = get(c(), &["pvc", "-n", &ns]).expect("claims");
    assert_eq!(
        claims["items"].as_array().map_or(0, Vec::len),
        3,
        "hibernation kept the three claims: {claims}"
    );

    // ---- the policy ConfigMap, edited in place, reaches the running replicas.
    let probe = |tier: &str| {
        let mut pod = workspace_pod(
            "tier-probe",
            "tiers",
            json!({"name": "workspace", "image": "devenv.test/workspace:1"}),
            None,
        );
        pod["metadata"]["annotations"] = json!({"devenv.io/tier": tier});
        let out = c().kubectl_stdin(
            [
                "create",
                "--dry-run=server",
                "-n",
                &ns,
                "-f",
                "-",
                "-o",
                "json",
            ],
            &pod.to_string(),
        );
        out.status
            .success()
            .then(|| devenv_e2e::output::json_of(&devenv_e2e::output::stdout(&out)))
            .map(|p| p["spec"]["containers"][0]["resources"]["limits"]["memory"].clone())
    };
    assert_ne!(
        probe("xl"),
        Some(json!("3Gi")),
        "tier xl before the policy has it"
    );
    let cm = get(c(), &["configmap", "devenv-policy", "-n", INSTALL_NS]).expect("policy");
    let installed = cm["data"]["policy.yaml"]
        .as_str()
        .expect("policy.yaml")
        .to_owned();
    assert!(installed.contains("\ntiers:\n"), "{installed}");
    let edited = installed.replacen(
        "\ntiers:\n",
        "\ntiers:\n  xl:\n    requests:\n      cpu: '1'\n      memory: 3Gi\n    limits:\n      cpu: '3'\n      memory: 3Gi\n",
        1,
    );
    let patch = json!({"data": {"policy.yaml": edited}}).to_string();
    let reloads_before: Vec<u64> = replica_names.iter().map(|p| policy_reloads(p)).collect();
    let t0 = Instant::now();
    c().kubectl_ok([
        "patch",
        "configmap",
        "devenv-policy",
        "-n",
        INSTALL_NS,
        "--type=merge",
        "-p",
        &patch,
    ]);
    // Every replica reloaded it (its own counter), without a restart...
    eventually(
        "every replica to reload the edited policy",
        Duration::from_secs(120),
        || {
            replica_names
                .iter()
                .zip(&reloads_before)
                .all(|(p, before)| policy_reloads(p) > *before)
                .then_some(())
        },
    );
    println!(
        "BENCH policy-configmap-edit-to-reload: {} ms",
        t0.elapsed().as_millis()
    );
    let still: Vec<String> = webhook_pods().iter().map(name_of).collect();
    assert_eq!(
        still, replica_names,
        "the policy edit restarted the replicas"
    );
    // ...and admits with it.
    for _ in 0..4 {
        assert_eq!(probe("xl"), Some(json!("3Gi")), "tier xl after the edit");
    }
    // Back to the installed policy (install itself would also put it back).
    let restore = json!({"data": {"policy.yaml": installed}}).to_string();
    c().kubectl_ok([
        "patch",
        "configmap",
        "devenv-policy",
        "-n",
        INSTALL_NS,
        "--type=merge",
        "-p",
        &restore,
    ]);

    // ---- a certificate close to expiry: install renews it, and no admission fails.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let secret = get(c(), &["secret", "devenv-webhook-tls", "-n", INSTALL_NS]).expect("TLS");
    assert!(secret["data"]["tls.crt"].is_string(), "{secret}");
    let sans = format!(
        "DNS:{CONFIG_NAME}.{INSTALL_NS}.svc,DNS:{CONFIG_NAME}.{INSTALL_NS}.svc.cluster.local,DNS:{CONFIG_NAME}.{INSTALL_NS},DNS:{CONFIG_NAME}"
    );
    openssl_certificate(dir.path(), &sans, 10);
    let near_ca = std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca.crt");
    // Trusted first, then served: this switch is the test's own, not under test.
    let bundle = registered_bundle();
    set_ca_bundles(&format!("{}\n{near_ca}", bundle.trim_end()));
    let before = certificate_reloads();
    let secret_yaml = ok(
        &c().kubectl([
            "create",
            "secret",
            "generic",
            "devenv-webhook-tls",
            "-n",
            INSTALL_NS,
            &format!(
                "--from-file=tls.crt={}",
                dir.path().join("tls.crt").display()
            ),
            &format!(
                "--from-file=tls.key={}",
                dir.path().join("tls.key").display()
            ),
            &format!("--from-file=ca.crt={}", dir.path().join("ca.crt").display()),
            "--type=kubernetes.io/tls",
            "--dry-run=client",
            "-o",
            "json",
        ]),
        "the near-expiry Secret",
    );
    ok(
        &c().kubectl_stdin(["replace", "-f", "-"], &secret_yaml),
        "replacing the TLS Secret",
    );
    wait_every_replica_reloaded(&before, "the replicas to serve the near-expiry certificate");
    let st = both(&devenv(c(), ["status"]));
    assert_mentions(
        &st,
        &["expires in", "re-run kubectl devenv install"],
        "status",
    );

    let load = AdmissionLoad::start(&ns);
    std::thread::sleep(Duration::from_secs(2));
    let before = certificate_reloads();
    let t0 = Instant::now();
    let renewed = devenv(c(), ["install", "--image", &image]);
    let text = ok(&renewed, "kubectl devenv install (renewal)");
    assert_mentions(
        &text,
        &["new, valid until", "within 30 days"],
        "install's renewal",
    );
    wait_every_replica_reloaded(&before, "the replicas to serve the renewed certificate");
    println!(
        "BENCH certificate-renewal-to-served: {} ms",
        t0.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_secs(3));
    load.finish_without_failures("renewal");
    // The new CA is registered, and the near-expiry one that was being served still is
    // (until it expires; pods reload at their own pace).
    let bundle = registered_bundle();
    assert!(
        bundle.contains(near_ca.trim()),
        "the old CA left the bundle too early"
    );
    assert!(
        bundle.matches("BEGIN CERTIFICATE").count() >= 2,
        "no new CA in the bundle: {bundle}"
    );
    let st = both(&devenv(c(), ["status"]));
    assert!(!st.contains("expires in 9 days"), "{st}");

    // ---- a rolling restart while workspaces are admitted: readiness, drain, PDB.
    let load = AdmissionLoad::start(&ns);
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    c().kubectl_ok([
        "rollout",
        "restart",
        "deployment",
        CONFIG_NAME,
        "-n",
        INSTALL_NS,
    ]);
    ok(
        &c().kubectl([
            "rollout",
            "status",
            "deployment",
            CONFIG_NAME,
            "-n",
            INSTALL_NS,
            "--timeout=240s",
        ]),
        "the rolling restart",
    );
    println!("BENCH rolling-restart: {} ms", t0.elapsed().as_millis());
    // Until the old replicas are gone, not just until the new ones are Ready.
    eventually(
        "the old replicas to be gone",
        Duration::from_secs(60),
        || {
            webhook_pods()
                .iter()
                .all(|p| !replica_names.contains(&name_of(p)))
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    load.finish_without_failures("rolling restart");
    let status = ok(
        &devenv(c(), ["status"]),
        "kubectl devenv status after the restart",
    );
    assert_mentions(&status, &["2/2 ready"], "status after the restart");
    let _ = c().kubectl(["delete", "namespace", &ns, "--wait=false"]);
}

// ------------------------------------------------------------------ the release script

/// `./release.sh REGISTRY` as a platform team runs it (here against the loopback
/// registry): the krew archive of this machine's platform with the binary and LICENSE,
/// the manifest with that archive's sha256, both images pushed with the digests built.
#[test]
fn release_script_packs_the_plugin_writes_the_manifest_and_pushes_the_images() {
    let s = suite();
    let text = both(&s.release);
    let dist = s.dist.path();
    let version = &s.images.version;
    // Exit 0, or 1 only because cross platforms cannot be built on this machine (no
    // Rust targets offline): then the manifest is said to be NOT publishable.
    match s.release.status.code() {
        Some(0) => {}
        Some(1) => {
            assert_mentions(&text, &["NOT publishable", "darwin/arm64"], "./release.sh");
            assert!(
                !text.contains(&format!("linux/amd64 ({})", dist.display())),
                "the host platform is missing: {text}"
            );
        }
        other => panic!("./release.sh exited {other:?}:\n{text}"),
    }
    let archive = dist.join(format!("kubectl-devenv_{version}_linux_amd64.tar.gz"));
    let listed = Command::new("tar")
        .arg("-tzf")
        .arg(&archive)
        .output()
        .expect("tar");
    let mut names: Vec<String> = ok(&listed, "tar -tzf the archive")
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["LICENSE", "kubectl-devenv"],
        "{}",
        archive.display()
    );
    let unpacked = tempfile::tempdir().expect("a directory");
    ok(
        &Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(unpacked.path())
            .output()
            .expect("tar -x"),
        "unpacking the archive",
    );
    let licence = std::fs::read_to_string(unpacked.path().join("LICENSE")).expect("LICENSE");
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0"));
    let shown = Command::new(unpacked.path().join("kubectl-devenv"))
        .arg("--version")
        .output()
        .expect("running the packed binary");
    assert_mentions(
        &ok(&shown, "kubectl-devenv --version"),
        &[version],
        "--version",
    );
    // The manifest names this archive's sha256 and the version.
    let sum = ok(
        &Command::new("sha256sum")
            .arg(&archive)
            .output()
            .expect("sha256sum"),
        "sha256sum",
    );
    let sum = sum.split_whitespace().next().expect("a sum").to_owned();
    let manifest = std::fs::read_to_string(dist.join("devenv.yaml")).expect("dist/devenv.yaml");
    assert!(
        manifest.contains(&format!("sha256: \"{sum}\"")) || manifest.contains(&sum),
        "{manifest}"
    );
    assert!(
        manifest.contains(&format!("version: v{version}")),
        "{manifest}"
    );
    // The images it pushed are the ones built, by digest, in the registry.
    let env = std::fs::read_to_string(dist.join("images.env")).expect("dist/images.env");
    assert!(
        env.contains(&format!("WEBHOOK_DIGEST={}", s.images.webhook_digest)),
        "{env}"
    );
    assert!(
        env.contains(&format!("WORKSPACE_DIGEST={}", s.images.workspace_digest)),
        "{env}"
    );
    for (name, digest) in [
        ("devenv-webhook", &s.images.webhook_digest),
        ("workspace", &s.images.workspace_digest),
    ] {
        let reference = format!("docker://{}/{name}:{version}", s.pushed);
        let inspect = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg(&reference)
            .output()
            .expect("skopeo inspect");
        let got = ok(&inspect, &format!("skopeo inspect {reference}"));
        assert_eq!(got.trim(), digest.as_str(), "{reference}");
    }
}

// ------------------------------------------------------------------ ssh (issue 14)

/// A developer's machine for the ssh tests: a HOME of its own (the plugin's ssh files,
/// `~/.ssh/config`) and a client key pair in it.
struct Laptop {
    home: tempfile::TempDir,
    key: std::path::PathBuf,
}

impl Laptop {
    fn new() -> Laptop {
        let home = tempfile::tempdir().expect("a HOME");
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(&ssh).expect("~/.ssh");
        let key = ssh.join("id_ed25519");
        ok(
            &Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "dev@laptop", "-f"])
                .arg(&key)
                .output()
                .expect("ssh-keygen"),
            "ssh-keygen",
        );
        Laptop { home, key }
    }

    /// `kubectl devenv -n NS ARGS` with this HOME (and no XDG_CONFIG_HOME).
    fn devenv(&self, kubeconfig: &std::path::Path, ns: &str, args: &[&str]) -> Output {
        let mut cmd = devenv_command(kubeconfig);
        cmd.env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .args(["-n", ns])
            .args(args);
        cmd.output().expect("kubectl devenv")
    }

    /// The ssh config `ssh-config --write` wrote.
    fn config(&self) -> std::path::PathBuf {
        self.home.path().join(".config/kubectl-devenv/ssh_config")
    }

    fn known_hosts(&self) -> std::path::PathBuf {
        self.home.path().join(".config/kubectl-devenv/known_hosts")
    }

    /// The real OpenSSH client with the generated config and this key (OpenSSH takes
    /// `~` from the password database, not from $HOME, hence -i).
    fn ssh(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-F")
            .arg(self.config())
            .arg("-i")
            .arg(&self.key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .env("HOME", self.home.path())
            .stdin(Stdio::null());
        cmd
    }
}

/// The user as `kubectl devenv ssh` and plain ssh (through the generated config) see it:
/// commands and exit codes, a pty, scp, rsync, git, port-forward, strict host keys, the
/// RBAC gate, activity, and the host key kept across a pod's replacement.
#[test]
fn ssh_through_the_api_server_with_plain_openssh() {
    let s = suite();
    install_in_cluster(&pushed_ref(&s.images.webhook));
    let ns = c().fresh_namespace("release-ssh");
    s.node.ensure_pv_sets(3).expect("PVs for three workspaces");
    let laptop = Laptop::new();
    let admin = &c().kubeconfig;

    // create picks up ~/.ssh/id_ed25519.pub and says so.
    let out = laptop.devenv(
        admin,
        &ns,
        &["create", "alice", "--wait", "--timeout", "4m"],
    );
    ok(&out, "kubectl devenv create alice");
    assert_mentions(
        &both(&out),
        &["id_ed25519.pub", "alice-0 accepts"],
        "create",
    );
    let listed = ok(
        &laptop.devenv(admin, &ns, &["ssh-key", "list", "alice"]),
        "ssh-key list",
    );
    assert!(listed.contains("dev@laptop"), "{listed}");

    // ssh-config --write: the Host block, the host keys read through the API, the Include.
    let wrote = laptop.devenv(admin, &ns, &["ssh-config", "alice", "--write", "--yes"]);
    ok(&wrote, "kubectl devenv ssh-config alice --write --yes");
    let alias = format!("alice.{ns}.devenv");
    let user_config =
        std::fs::read_to_string(laptop.home.path().join(".ssh/config")).expect("~/.ssh/config");
    assert!(
        user_config.contains(&format!("Include {}", laptop.config().display())),
        "{user_config}"
    );
    let known = std::fs::read_to_string(laptop.known_hosts()).expect("known_hosts");
    assert!(
        known
            .lines()
            .any(|l| l.starts_with(&format!("{alias} ssh-ed25519 "))),
        "{known}"
    );
    let keys_in_pod = served_host_keys(&ns, "alice");
    assert!(
        keys_in_pod.iter().any(|k| known.contains(k.as_str())),
        "known_hosts {known} holds none of the served keys {keys_in_pod:?}"
    );

    // Plain ssh through the generated config: id -u, an exit code, a pty.
    let id = laptop
        .ssh("ssh")
        .arg(&alias)
        .args(["id", "-u"])
        .output()
        .expect("ssh");
    assert_eq!(ok(&id, "ssh alias id -u").trim(), "1000");
    let three = laptop
        .ssh("ssh")
        .arg(&alias)
        .arg("exit 3")
        .output()
        .expect("ssh");
    assert_eq!(three.status.code(), Some(3), "{}", both(&three));
    let pty = laptop
        .ssh("ssh")
        .arg("-tt")
        .arg(&alias)
        .arg("tty; exit 0")
        .output()
        .expect("ssh -tt");
    assert!(ok(&pty, "ssh -tt").contains("/dev/pts/"), "{}", both(&pty));
    // kubectl devenv ssh: the same, with its own exit code. OpenSSH finds keys by the
    // password database's home, not $HOME: DEVENV_SSH names a wrapper that adds ours.
    let wrapper = laptop.home.path().join("ssh-with-key");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec ssh -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes \"$@\"\n",
            laptop.key.display()
        ),
    )
    .expect("wrapper");
    ok(
        &Command::new("chmod")
            .arg("+x")
            .arg(&wrapper)
            .output()
            .expect("chmod"),
        "chmod",
    );
    let mut own = devenv_command(admin);
    own.env("HOME", laptop.home.path())
        .env("DEVENV_SSH", &wrapper)
        .args(["-n", &ns, "ssh", "alice", "--", "exit 4"]);
    let four = own.output().expect("kubectl devenv ssh");
    assert_eq!(four.status.code(), Some(4), "{}", both(&four));

    // scp into /workspace, seen by exec; rsync; git clone over ssh.
    let local = laptop.home.path().join("hello.txt");
    std::fs::write(&local, "hello over scp\n").expect("a file");
    let scp = laptop
        .ssh("scp")
        .arg(&local)
        .arg(format!("{alias}:/workspace/hello.txt"))
        .output()
        .expect("scp");
    ok(&scp, "scp");
    assert_eq!(sh(&ns, "cat /workspace/hello.txt"), "hello over scp\n");
    let tree = laptop.home.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).expect("tree");
    std::fs::write(tree.join("sub/a.txt"), "synced\n").expect("a.txt");
    let rsync = Command::new("rsync")
        .arg("-a")
        .arg("-e")
        .arg(format!(
            "ssh -F {} -i {} -o IdentitiesOnly=yes -o BatchMode=yes",
            laptop.config().display(),
            laptop.key.display()
        ))
        .arg(format!("{}/", tree.display()))
        .arg(format!("{alias}:/workspace/tree/"))
        .env("HOME", laptop.home.path())
        .output()
        .expect("rsync");
    ok(&rsync, "rsync over ssh");
    assert_eq!(sh(&ns, "cat /workspace/tree/sub/a.txt"), "synced\n");
    sh(
        &ns,
        "cd /workspace && git init -q repo && cd repo && echo one > f && git add f && \
         git -c user.name=t -c user.email=t@t commit -qm one && echo done",
    );
    let clone_dir = laptop.home.path().join("clone");
    let git = Command::new("git")
        .arg("clone")
        .arg(format!("{alias}:/workspace/repo"))
        .arg(&clone_dir)
        .env(
            "GIT_SSH_COMMAND",
            format!(
                "ssh -F {} -i {} -o IdentitiesOnly=yes -o BatchMode=yes",
                laptop.config().display(),
                laptop.key.display()
            ),
        )
        .env("HOME", laptop.home.path())
        .stdin(Stdio::null())
        .output()
        .expect("git clone");
    ok(&git, "git clone over ssh");
    assert_eq!(
        std::fs::read_to_string(clone_dir.join("f")).expect("f"),
        "one\n"
    );

    // port-forward reaches an HTTP server started in the workspace on 8080.
    sh(
        &ns,
        "setsid perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>8080,Listen=>5,ReuseAddr=>1) or die $!; \
         while($c=$s->accept){<$c>; print $c \"HTTP/1.0 200 OK\\r\\n\\r\\nhello from the workspace\\n\"; close $c}' \
         </dev/null >/dev/null 2>&1 & sleep 1; echo started",
    );
    let mut pf = devenv_command(admin);
    pf.args(["-n", &ns, "port-forward", "alice", "0:8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = pf.spawn().expect("kubectl devenv port-forward");
    let mut first = String::new();
    {
        use std::io::BufRead;
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .expect("its first line");
    }
    let port: u16 = first
        .trim()
        .rsplit_once("127.0.0.1:")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no local port in {first:?}"));
    for _ in 0..2 {
        // Twice: every connection gets its own forward.
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("request");
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut tcp, &mut answer).expect("answer");
        assert!(answer.contains("hello from the workspace"), "{answer}");
    }
    let _ = child.kill();
    let _ = child.wait();

    // A tampered known_hosts entry: ssh refuses.
    let genuine = std::fs::read_to_string(laptop.known_hosts()).expect("known_hosts");
    let other_key = std::fs::read_to_string(laptop.key.with_extension("pub")).expect("pub");
    let other_data = other_key.split_whitespace().nth(1).expect("key data");
    let tampered: String = genuine
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{alias} ssh-ed25519 ")) {
                format!("{alias} ssh-ed25519 {other_data}\n")
            } else if l.starts_with(&format!("{alias} ")) {
                String::new()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(laptop.known_hosts(), tampered).expect("tamper");
    let refused = laptop
        .ssh("ssh")
        .arg(&alias)
        .arg("true")
        .output()
        .expect("ssh");
    assert_eq!(refused.status.code(), Some(255), "{}", both(&refused));
    assert_mentions(
        &both(&refused),
        &["Host key verification failed"],
        "ssh on a tampered key",
    );
    std::fs::write(laptop.known_hosts(), &genuine).expect("restore");

    // Without pods/portforward: refused, naming the permission.
    let user = c().user_kubeconfig("ssh-no-forward").expect("a user");
    c().kubectl_ok([
        "create",
        "role",
        "exec-only",
        "-n",
        &ns,
        "--verb=get,list",
        "--resource=pods",
    ]);
    c().kubectl_ok([
        "patch", "role", "exec-only", "-n", &ns, "--type=json", "-p",
        r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["pods/exec"],"verbs":["create","get"]}},
            {"op":"add","path":"/rules/-","value":{"apiGroups":["apps"],"resources":["statefulsets"],"verbs":["get"]}}]"#,
    ]);
    c().kubectl_ok([
        "create",
        "rolebinding",
        "exec-only",
        "-n",
        &ns,
        "--role=exec-only",
        "--user=ssh-no-forward",
    ]);
    // Another person, another machine: `kubectl devenv ssh` writes the Host block pinned
    // to whoever runs it.
    let other = Laptop::new();
    let mut limited = devenv_command(&user);
    limited
        .env("HOME", other.home.path())
        .env("DEVENV_SSH", &wrapper)
        .args(["-n", &ns, "ssh", "alice", "--", "true"]);
    let denied = limited
        .output()
        .expect("kubectl devenv ssh as a limited user");
    assert_ne!(denied.status.code(), Some(0), "{}", both(&denied));
    assert_mentions(
        &both(&denied),
        &["pods/portforward"],
        "the refusal without port-forward",
    );

    // An open ssh session keeps a short-idle workspace running; an untouched one with the
    // same timeout is hibernated. Idleness counts from creation, so `busy` is made last
    // and its session opened at once (a CI run that made `busy` first saw it hibernated
    // while `untouched` was still being created).
    for name in ["untouched", "busy"] {
        let out = laptop.devenv(
            admin,
            &ns,
            &[
                "create",
                name,
                "--idle-timeout",
                "30s",
                "--wait",
                "--timeout",
                "4m",
            ],
        );
        ok(&out, &format!("kubectl devenv create {name}"));
    }
    ok(
        &laptop.devenv(admin, &ns, &["ssh-config", "busy", "--write", "--yes"]),
        "ssh-config busy",
    );
    let busy_alias = format!("busy.{ns}.devenv");
    let mut session = laptop
        .ssh("ssh")
        .arg(&busy_alias)
        .arg("sleep 75")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("a long ssh session");
    let t0 = Instant::now();
    // The session is open and recorded as use before anything is judged from it; a
    // session that ended says why (its stderr) instead of leaving only its absence.
    let session_ended = |session: &mut std::process::Child| -> Option<String> {
        let status = session.try_wait().ok()??;
        let mut err = String::new();
        if let Some(mut e) = session.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        Some(format!("the ssh session to busy ended ({status}): {err}"))
    };
    eventually(
        "busy's ssh session to record activity",
        Duration::from_secs(60),
        || {
            if let Some(why) = session_ended(&mut session) {
                panic!("{why}");
            }
            get_in(c(), &ns, "statefulset/busy")?["metadata"]["annotations"]
                ["devenv.io/last-activity"]
                .is_string()
                .then_some(())
        },
    );
    eventually(
        "untouched to be hibernated",
        Duration::from_secs(90),
        || (replicas(&get_in(c(), &ns, "statefulset/untouched")?) == 0).then_some(()),
    );
    // Past the idle timeout for busy too, by the clock; still running.
    while t0.elapsed() < Duration::from_secs(45) {
        std::thread::sleep(Duration::from_secs(1));
    }
    if let Some(why) = session_ended(&mut session) {
        panic!("{why}");
    }
    let busy = get_in(c(), &ns, "statefulset/busy").expect("busy");
    assert_eq!(
        replicas(&busy),
        1,
        "the ssh session did not count as activity: {busy}"
    );
    assert!(
        busy["metadata"]["annotations"]["devenv.io/last-activity"].is_string(),
        "{busy}"
    );
    let _ = session.kill();
    let _ = session.wait();

    // The pod replaced: ssh connects again with the same host key, no warning.
    ok(
        &c().kubectl(["delete", "pod", "alice-0", "-n", &ns, "--wait=true"]),
        "kubectl delete pod alice-0",
    );
    eventually("alice-0 back and Ready", Duration::from_secs(180), || {
        get_in(c(), &ns, "pod/alice-0").filter(is_ready).map(|_| ())
    });
    let again = eventually("ssh to answer again", Duration::from_secs(120), || {
        let o = laptop
            .ssh("ssh")
            .arg(&alias)
            .args(["id", "-u"])
            .output()
            .ok()?;
        o.status.success().then_some(o)
    });
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "1000");
    assert!(
        !both(&again).contains("WARNING"),
        "a warning after the pod came back: {}",
        both(&again)
    );
    let _ = c().kubectl(["delete", "namespace", &ns, "--wait=false"]);
}
