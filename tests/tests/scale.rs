//! The scale run of issue 16: running workspaces on simulated nodes, with the real
//! webhook and the real lifecycle controller, at growing counts.
//!
//! kwok (built by `tests/cluster/build.sh`) plays the kubelet of a few big fake nodes
//! beside the real control plane; every workspace is made by `kubectl devenv create`, run
//! by an ordinary user of a tenant namespace (`kubectl devenv tenant add`),
//! its pods are admitted by `devenv-webhook serve` on loopback, scheduled by the real
//! scheduler and marked Running by kwok; its claims bind to volumes made for them
//! (`claimRef`), since no storage is real here. At each count in `DEVENV_SCALE_SIZES`
//! (default `50`, what CI runs; `bench/scale.sh` runs `100 250 500 1000`) the run adds
//! workspaces up to that count and measures:
//!
//! * the time `kubectl devenv create` takes for the new ones, and until their pods run;
//! * the API server's own view of the webhook (`apiserver_admission_webhook_admission_duration_seconds`);
//! * the webhook's and the controller's CPU time and RSS (`/proc`);
//! * how late the controller stops idle workspaces: ten running ones are given
//!   `devenv.io/idle-timeout: 1s` and must be hibernated; the controller's
//!   `devenv_lifecycle_stop_delay_seconds` says how late each stop was against the time
//!   it announced; then they are started again;
//! * `kubectl devenv list -A` (time, peak RSS, and that it shows every workspace) against
//!   `kubectl get statefulsets -A -l devenv.io/workspace`.
//!
//! What is asserted is what could break at scale: every workspace is created, admitted
//! (its pods carry the webhook's mutation) and runs, every idle one is stopped, `list`
//! shows them all. The figures are printed as a table (and written to
//! `$DEVENV_SCALE_REPORT` when set); how they grow is for BENCHMARKS.md, not an
//! assertion (timing belongs in benchmarks).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use devenv_e2e::controller::{controller_user, Controller};
use devenv_e2e::kwok::{usage, Kwok, Usage};
use devenv_e2e::output::ok;
use devenv_e2e::plugin::{devenv, devenv_as, dv, plugin_dir, webhook_for};
use devenv_e2e::webhook::WebhookProcess;
use devenv_e2e::workspace::{volume_for_claim, VOLUMES};
use devenv_e2e::{check_ok, eventually, kubectl_binary, shared, Cluster};
use serde_json::json;

const NS: &str = "scale";
/// The ordinary user who creates every workspace.
const DEVELOPER: &str = "scale-dev";
/// The claims' StorageClass: no provisioner, bound when the scheduler places the pod
/// (WaitForFirstConsumer), as local volumes are. With Immediate binding the claims
/// waited for the PV controller's 15 s resync and the pods for the scheduler's backoff
/// ("pod has unbound immediate PersistentVolumeClaims"): a minute per hundred
/// workspaces that measured the test's storage, not the product.
const CLASS: &str = "devenv-scale";
/// Workspaces per simulated node (the nodes are big; the pod count is what limits).
const PODS_PER_NODE: usize = 110;
/// How many running workspaces are made idle at each count.
const IDLE_PROBES: usize = 10;

/// kubectl itself, not a wrapper script (`/usr/bin/kubectl` here is the Cloud SDK's,
/// which asks the server for its version first): `$DEVENV_SCALE_KUBECTL`, else
/// Debian's `kubectl.1.33`, else the harness's kubectl.
fn direct_kubectl() -> std::path::PathBuf {
    if let Some(k) = std::env::var_os("DEVENV_SCALE_KUBECTL") {
        return k.into();
    }
    let debian = std::path::Path::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33");
    if debian.is_file() {
        return debian.to_path_buf();
    }
    kubectl_binary()
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

/// `DEVENV_SCALE_SIZES`: increasing workspace counts.
fn sizes() -> Vec<usize> {
    let raw = env_or("DEVENV_SCALE_SIZES", "50");
    let sizes: Vec<usize> = raw
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("DEVENV_SCALE_SIZES: {s:?} is not a count"))
        })
        .collect();
    assert!(
        !sizes.is_empty() && sizes.windows(2).all(|w| w[0] < w[1]) && sizes[0] > IDLE_PROBES,
        "DEVENV_SCALE_SIZES must be increasing counts above {IDLE_PROBES}, e.g. \"100 250 500 1000\": {raw:?}"
    );
    sizes
}

fn name(i: usize) -> String {
    format!("ws-{i:05}")
}

/// Volumes for the claims of workspaces `range`, each made for its claim alone.
fn make_volumes(c: &Cluster, range: std::ops::Range<usize>) {
    let names: Vec<usize> = range.collect();
    for chunk in names.chunks(100) {
        let items: Vec<_> = chunk
            .iter()
            .flat_map(|&i| {
                VOLUMES.iter().map(move |(template, _, _)| {
                    let claim = format!("{template}-{}-0", name(i));
                    volume_for_claim(NS, &claim, CLASS, "/tmp/devenv-scale")
                })
            })
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        check_ok(
            &["create persistentvolumes"],
            &c.kubectl_stdin(["create", "-f", "-"], &list.to_string()),
        );
    }
}

/// `kubectl devenv create` for workspaces `range` as the user of `kubeconfig`, `parallel`
/// at a time.
fn create_workspaces(kubeconfig: &Path, range: std::ops::Range<usize>, parallel: usize) {
    let names: Vec<String> = range.map(name).collect();
    let per = names.len().div_ceil(parallel.max(1));
    std::thread::scope(|s| {
        for chunk in names.chunks(per.max(1)) {
            s.spawn(move || {
                for n in chunk {
                    ok(
                        &devenv_as(
                            kubeconfig,
                            ["-n", NS, "create", n, "--storage-class", CLASS],
                        ),
                        &format!("kubectl devenv create {n}"),
                    );
                }
            });
        }
    });
}

/// Lines of a `kubectl get -o jsonpath` over the workspace pods.
fn pod_lines(c: &Cluster, template: &str) -> Vec<String> {
    let out = c.kubectl([
        "get",
        "pods",
        "-n",
        NS,
        "-l",
        "devenv.io/workspace",
        "-o",
        &format!("jsonpath={{range .items[*]}}{template}{{\"\\n\"}}{{end}}"),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_running(c: &Cluster, want: usize, kwok: &Kwok) {
    let timeout = Duration::from_secs(120 + want as u64);
    eventually(
        &format!("{want} workspace pods Running on kwok nodes"),
        timeout,
        || {
            let running = pod_lines(c, "{.status.phase}")
                .iter()
                .filter(|p| *p == "Running")
                .count();
            (running == want).then_some(())
        },
    );
    // Every pod went through the webhook: the workspace user and no capabilities.
    let unmutated: Vec<String> = pod_lines(
        c,
        "{.metadata.name} {.spec.securityContext.runAsUser} {.spec.containers[0].securityContext.capabilities.drop}",
    )
    .into_iter()
    .filter(|l| !l.contains(" 1000 ") || !l.contains("ALL"))
    .collect();
    assert!(
        unmutated.is_empty(),
        "pods not mutated by the webhook: {unmutated:?}\nkwok log tail: {}",
        kwok.log()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Seconds since 1970 of an RFC 3339 UTC time as the API server writes it
/// (`2026-12-03T07:45:42Z`), or `None`.
fn epoch_seconds(t: &str) -> Option<i64> {
    let t = t.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut h = time.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Where the time from `create` to a running pod goes, for the workspaces `range`: the
/// medians (seconds, at the API server's one-second resolution) of StatefulSet → pod
/// created, pod created → scheduled (its claims bound to volumes), scheduled → Ready.
fn stages(c: &Cluster, range: std::ops::Range<usize>) -> [f64; 3] {
    let sts: serde_json::Value =
        serde_json::from_str(&c.kubectl_ok(["get", "statefulsets", "-n", NS, "-o", "json"]))
            .expect("statefulsets as JSON");
    let pods: serde_json::Value =
        serde_json::from_str(&c.kubectl_ok(["get", "pods", "-n", NS, "-o", "json"]))
            .expect("pods as JSON");
    let created: BTreeMap<String, i64> = sts["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some((
                s["metadata"]["name"].as_str()?.to_string(),
                epoch_seconds(s["metadata"]["creationTimestamp"].as_str()?)?,
            ))
        })
        .collect();
    let condition = |p: &serde_json::Value, kind: &str| {
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind)
            .and_then(|c| epoch_seconds(c["lastTransitionTime"].as_str()?))
    };
    let wanted: Vec<String> = range.map(name).collect();
    let mut spans: [Vec<i64>; 3] = Default::default();
    for p in pods["items"].as_array().into_iter().flatten() {
        let Some(ws) = p["metadata"]["labels"]["devenv.io/workspace"].as_str() else {
            continue;
        };
        if !wanted.iter().any(|w| w == ws) {
            continue;
        }
        let (Some(&sts_at), Some(pod_at), Some(scheduled), Some(ready)) = (
            created.get(ws),
            p["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(epoch_seconds),
            condition(p, "PodScheduled"),
            condition(p, "Ready"),
        ) else {
            continue;
        };
        spans[0].push(pod_at - sts_at);
        spans[1].push(scheduled - pod_at);
        spans[2].push(ready - scheduled);
    }
    spans.map(|mut v| {
        v.sort_unstable();
        v.get(v.len() / 2).map_or(f64::NAN, |&x| x as f64)
    })
}

/// `apiserver_admission_webhook_admission_duration_seconds` for the devenv webhooks,
/// by `type` (admit, validating): (count, sum, buckets le -> cumulative count).
type Admission = BTreeMap<String, (f64, f64, BTreeMap<String, f64>)>;

fn labels_of(line: &str) -> BTreeMap<String, String> {
    let inner = line
        .split_once('{')
        .and_then(|(_, r)| r.split_once('}'))
        .map_or("", |(l, _)| l);
    inner
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

fn value_of(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn admission(c: &Cluster) -> Admission {
    let metrics = c.kubectl_ok(["get", "--raw", "/metrics"]);
    let mut out = Admission::new();
    const FAMILY: &str = "apiserver_admission_webhook_admission_duration_seconds";
    for line in metrics.lines().filter(|l| l.starts_with(FAMILY)) {
        let labels = labels_of(line);
        if !labels.get("name").is_some_and(|n| n.contains("devenv")) {
            continue;
        }
        let kind = labels.get("type").cloned().unwrap_or_default();
        let entry = out.entry(kind).or_default();
        let v = value_of(line);
        if line.starts_with(&format!("{FAMILY}_count")) {
            entry.0 += v;
        } else if line.starts_with(&format!("{FAMILY}_sum")) {
            entry.1 += v;
        } else if let Some(le) = labels.get("le") {
            *entry.2.entry(le.clone()).or_default() += v;
        }
    }
    out
}

/// Mean and an upper bound of the 99th percentile (the smallest bucket holding 99%),
/// in milliseconds, of what happened between two readings; and the count.
fn admission_between(before: &Admission, after: &Admission, kind: &str) -> (f64, f64, f64) {
    let empty = (0.0, 0.0, BTreeMap::new());
    let b = before.get(kind).unwrap_or(&empty);
    let a = after.get(kind).unwrap_or(&empty);
    let count = a.0 - b.0;
    if count <= 0.0 {
        return (0.0, 0.0, 0.0);
    }
    let mean = (a.1 - b.1) / count * 1000.0;
    let mut buckets: Vec<(f64, f64)> =
        a.2.iter()
            .map(|(le, n)| {
                let le_s = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                (le_s, n - b.2.get(le).copied().unwrap_or(0.0))
            })
            .collect();
    buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
    let p99 = buckets
        .iter()
        .find(|(_, n)| *n >= count * 0.99)
        .map_or(f64::INFINITY, |(le, _)| le * 1000.0);
    (mean, p99, count)
}

fn metric_sum_count(metrics: &str, family: &str) -> (f64, f64) {
    let find = |suffix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{family}{suffix}")))
            .map_or(0.0, value_of)
    };
    (find("_sum"), find("_count"))
}

/// Makes `IDLE_PROBES` running workspaces idle, waits for the controller to hibernate
/// them, starts them again; returns (mean, max) of how late the stops were, in seconds
/// from the controller's histogram, and the wall time to the last stop.
fn idle_probe(c: &Cluster, ctl: &Controller, running: usize) -> (f64, Duration) {
    let (sum0, count0) = metric_sum_count(&ctl.metrics(), "devenv_lifecycle_stop_delay_seconds");
    let probes: Vec<String> = (running - IDLE_PROBES..running).map(name).collect();
    let t = Instant::now();
    for p in &probes {
        check_ok(
            &["annotate idle-timeout", p],
            &c.kubectl([
                "annotate",
                "statefulset",
                "-n",
                NS,
                p,
                "devenv.io/idle-timeout=1s",
                "--overwrite",
            ]),
        );
    }
    eventually(
        "the idle workspaces to be hibernated",
        Duration::from_secs(120),
        || {
            probes
                .iter()
                .all(|p| {
                    c.kubectl_ok([
                        "get",
                        "statefulset",
                        "-n",
                        NS,
                        p,
                        "-o",
                        "jsonpath={.spec.replicas}",
                    ])
                    .trim()
                        == "0"
                })
                .then_some(())
        },
    );
    let to_last_stop = t.elapsed();
    let (sum1, count1) = metric_sum_count(&ctl.metrics(), "devenv_lifecycle_stop_delay_seconds");
    assert_eq!(
        count1 - count0,
        IDLE_PROBES as f64,
        "every idle stop is timed against its announced stop time:\n{}",
        ctl.log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for p in &probes {
        check_ok(
            &["annotate idle-timeout-", p],
            &c.kubectl([
                "annotate",
                "statefulset",
                "-n",
                NS,
                p,
                "devenv.io/idle-timeout-",
            ]),
        );
        ok(
            &dv(c, NS, &["start", p]),
            &format!("kubectl devenv start {p}"),
        );
    }
    ((sum1 - sum0) / IDLE_PROBES as f64, to_last_stop)
}

/// Median wall time and the largest peak RSS (KiB) of `cmd`, run `runs` times under
/// /usr/bin/time; the last run's stdout.
fn timed(mut make: impl FnMut() -> Command, runs: usize) -> (Duration, u64, String) {
    let mut times = Vec::new();
    let mut peak = 0;
    let mut stdout = String::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir().expect("temp dir");
        let rss_file = dir.path().join("rss");
        let cmd = make();
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let mut wrapped = Command::new("/usr/bin/time");
        wrapped
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(program)
            .args(args);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        let t = Instant::now();
        let out = wrapped.output().expect("run /usr/bin/time");
        times.push(t.elapsed());
        let out_text = ok(&out, "a timed command");
        stdout = out_text;
        let kib: u64 = std::fs::read_to_string(&rss_file)
            .ok()
            .and_then(|s| s.trim().lines().last().and_then(|l| l.parse().ok()))
            .unwrap_or(0);
        peak = peak.max(kib);
    }
    times.sort();
    (times[times.len() / 2], peak, stdout)
}

struct Row {
    workspaces: usize,
    create: Duration,
    created: usize,
    running: Duration,
    stages: [f64; 3],
    admit: (f64, f64, f64),
    validate: (f64, f64, f64),
    webhook: (Usage, Usage),
    controller: (Usage, Usage),
    stop_delay: f64,
    to_stop: Duration,
    list: (Duration, u64),
    kubectl: (Duration, u64),
}

fn report(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workspaces | create (s, ms each) | pods Running (s) | sts→pod / →scheduled / →Ready (median s) | mutate mean / p99 ≤ (ms) | validate mean / p99 ≤ (ms) | webhook CPU (ms per new ws) / RSS (MiB) | controller CPU (s) / RSS (MiB) | idle stop late (s) / to last stop (s) | list -A (ms) / peak RSS (MiB) | kubectl get sts -A (ms) / peak RSS (MiB) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let mib = |k: u64| k as f64 / 1024.0;
        let _ = writeln!(
            s,
            "| {} | {:.1} s, {:.0} | {:.1} | {:.0} / {:.0} / {:.0} | {:.2} / {:.0} | {:.2} / {:.0} | {:.1} / {:.1} | {:.2} / {:.1} | {:.2} / {:.1} | {} / {:.0} | {} / {:.0} |",
            r.workspaces,
            r.create.as_secs_f64(),
            r.create.as_secs_f64() * 1000.0 / r.created.max(1) as f64,
            r.running.as_secs_f64(),
            r.stages[0],
            r.stages[1],
            r.stages[2],
            r.admit.0,
            r.admit.1,
            r.validate.0,
            r.validate.1,
            (r.webhook.1.cpu_seconds - r.webhook.0.cpu_seconds) * 1000.0 / r.created.max(1) as f64,
            mib(r.webhook.1.rss_kib),
            r.controller.1.cpu_seconds - r.controller.0.cpu_seconds,
            mib(r.controller.1.rss_kib),
            r.stop_delay,
            r.to_stop.as_secs_f64(),
            r.list.0.as_millis(),
            mib(r.list.1),
            r.kubectl.0.as_millis(),
            mib(r.kubectl.1),
        );
    }
    s
}

#[test]
fn workspaces_on_simulated_nodes_are_admitted_run_and_stop_when_idle() {
    let sizes = sizes();
    let parallel: usize = env_or("DEVENV_SCALE_PARALLEL", "4")
        .parse()
        .expect("DEVENV_SCALE_PARALLEL is a count");
    let c = shared();
    let mut kwok = Kwok::start(c).expect("starting kwok");
    let max = *sizes.last().unwrap_or(&0);
    kwok.add_nodes(c, max.div_ceil(PODS_PER_NODE - 10).max(1), PODS_PER_NODE);
    let class = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": { "name": CLASS },
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    check_ok(
        &["create storageclass"],
        &c.kubectl_stdin(["create", "-f", "-"], &class.to_string()),
    );
    let wh: WebhookProcess = webhook_for(c, NS);
    // A tenant namespace as a platform team makes one (quota for every workspace, Pod
    // Security restricted) and an ordinary user of it: every admission takes the user's
    // path, owner checks included, not the admin's shortcut.
    ok(
        &devenv(
            c,
            [
                "tenant",
                "add",
                NS,
                "--user",
                DEVELOPER,
                "--workspaces",
                &max.to_string(),
            ],
        ),
        "kubectl devenv tenant add",
    );
    let developer = c
        .user_kubeconfig(DEVELOPER)
        .expect("the developer's kubeconfig");
    let webhook_pid = wh.pid().expect("the webhook runs");
    let ctl = Controller::start(
        &controller_user(c),
        NS,
        "scale",
        "scale",
        // Nothing stops on its own: the idle probes set their own timeout.
        "lifecycle:\n  idleTimeout: 0\n  warningBefore: 2s\n",
    );
    let plugin = plugin_dir()
        .expect("the plugin is built")
        .join("kubectl-devenv");

    let mut rows = Vec::new();
    let mut made = 0;
    for &level in &sizes {
        make_volumes(c, made..level);
        let admission_before = admission(c);
        let webhook_before = usage(webhook_pid).expect("webhook usage");
        let controller_before = usage(ctl.pid()).expect("controller usage");
        let t = Instant::now();
        create_workspaces(&developer, made..level, parallel);
        let create = t.elapsed();
        wait_running(c, level, &kwok);
        let running = t.elapsed();
        let stages = stages(c, made..level);
        let admission_after = admission(c);
        let webhook_after = usage(webhook_pid).expect("webhook usage");
        let controller_after = usage(ctl.pid()).expect("controller usage");
        let (stop_delay, to_stop) = idle_probe(c, &ctl, level);
        wait_running(c, level, &kwok);

        let kubeconfig = c.kubeconfig.clone();
        let (list_time, list_rss, listed) = timed(
            || {
                let mut cmd = Command::new(&plugin);
                cmd.arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["list", "-A"]);
                cmd
            },
            3,
        );
        let rows_listed = listed.lines().filter(|l| l.starts_with(NS)).count();
        assert_eq!(
            rows_listed, level,
            "list -A shows every workspace:\n{listed}"
        );
        let kubectl_run = timed(
            || {
                let mut cmd = Command::new(direct_kubectl());
                cmd.arg("--kubeconfig").arg(&kubeconfig).args([
                    "get",
                    "statefulsets",
                    "-A",
                    "-l",
                    "devenv.io/workspace",
                ]);
                cmd
            },
            3,
        );
        rows.push(Row {
            workspaces: level,
            create,
            created: level - made,
            running,
            stages,
            admit: admission_between(&admission_before, &admission_after, "admit"),
            validate: admission_between(&admission_before, &admission_after, "validating"),
            webhook: (webhook_before, webhook_after),
            controller: (controller_before, controller_after),
            stop_delay,
            to_stop,
            list: (list_time, list_rss),
            kubectl: (kubectl_run.0, kubectl_run.1),
        });
        made = level;
        eprintln!("{}", report(&rows));
    }
    // The webhook answered every pod and StatefulSet of the run.
    let last = rows.last().expect("one count at least");
    assert!(
        last.admit.2 >= (last.created) as f64,
        "the API server called the mutating webhook for each new workspace: {:?}",
        last.admit
    );
    let ok_list = devenv(c, ["list", "-A"]);
    assert!(ok_list.status.success(), "list -A through kubectl");
    let table = report(&rows);
    println!("{table}");
    if let Ok(path) = std::env::var("DEVENV_SCALE_REPORT") {
        std::fs::write(&path, &table).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
    drop(kwok);
}

#[test]
fn api_server_times_are_read_as_seconds_since_1970() {
    assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(epoch_seconds("2026-12-03T07:45:42Z"), Some(1_796_283_942));
    assert_eq!(epoch_seconds("2024-02-29T23:59:59Z"), Some(1_709_251_199));
    assert_eq!(epoch_seconds("2026-12-03 07:45:42"), None);
}
