//! The workspace lifecycle controller (`devenv-webhook lifecycle`) against the real
//! control plane: an idle workspace is warned, then hibernated; activity cancels a
//! warning; `0` means never; stopped workspaces expire after their TTL (claims kept
//! unless purging); only the Lease holder acts and a successor takes over.
//!
//!     cargo build -p devenv-webhook && cargo test -p devenv-e2e --test controller -- --nocapture
//!
//! Every controller runs as its own process, restricted to the test's namespace, as a
//! user bound to exactly the ClusterRole of `tests/lifecycle/rbac.yaml` (so the RBAC
//! the install must grant is tested too), with a short Lease (3s, renewed every 1s).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use devenv_e2e::controller::{controller_user, Controller};
use devenv_e2e::objects::{annotation, create_ok, events_about, fetch, replicas};
use devenv_e2e::workspace::{
    HIBERNATED, IDLE_TIMEOUT, IDLE_WARNING, LAST_ACTIVITY, REPLICAS_BEFORE_STOP, STOPPED_AT, TTL,
    WORKSPACE_LABEL as WORKSPACE,
};
use devenv_e2e::{check_ok, eventually, shared, Cluster};
use serde_json::{json, Value};

/// RFC 3339 (UTC, whole seconds) of a system time.
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now() -> String {
    rfc3339(SystemTime::now())
}

fn workspace(
    name: &str,
    replicas: i32,
    annotations: &[(&str, &str)],
    claim_template: bool,
) -> Value {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let mut sts = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": {WORKSPACE: name}, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {WORKSPACE: name}},
            "template": {
                "metadata": {"labels": {WORKSPACE: name}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "workspace",
                        "image": "registry.k8s.io/pause:3.10",
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        },
    });
    if claim_template {
        sts["spec"]["volumeClaimTemplates"] = json!([{
            "metadata": {"name": "home", "labels": {WORKSPACE: name}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }]);
    }
    sts
}

fn claim(c: &Cluster, ns: &str, name: &str, workspace: Option<&str>) {
    let labels = workspace.map_or(json!({}), |w| json!({WORKSPACE: w}));
    let pvc = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    });
    create_ok(c, ns, &pvc);
}

/// The StatefulSet as JSON, or `None` once it is gone.
fn get_sts(c: &Cluster, ns: &str, name: &str) -> Option<Value> {
    fetch(c, &["statefulset", name, "-n", ns])
}

/// Whether a claim is gone or being deleted.
fn claim_deleted(c: &Cluster, ns: &str, name: &str) -> bool {
    let out = c.kubectl(["get", "pvc", name, "-n", ns, "-o", "json"]);
    if !out.status.success() {
        return true;
    }
    let pvc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    !pvc["metadata"]["deletionTimestamp"].is_null()
}

/// events.k8s.io Events about `name` with `reason`.
fn events(c: &Cluster, ns: &str, name: &str, reason: &str) -> Vec<Value> {
    events_about(c, ns, name)
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

fn lease_holder(c: &Cluster, ns: &str, lease: &str) -> Option<String> {
    let out = c.kubectl(["get", "lease", lease, "-n", ns, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let l: Value = serde_json::from_slice(&out.stdout).ok()?;
    l["spec"]["holderIdentity"].as_str().map(str::to_string)
}

#[test]
fn idle_workspace_is_warned_before_it_is_hibernated() {
    let c = shared();
    let ns = c.fresh_namespace("lc-idle");
    let user = controller_user(c);
    let ctl = Controller::start(
        &user,
        &ns,
        "lc",
        "only",
        "lifecycle:\n  idleTimeout: 10s\n  warningBefore: 4s\n",
    );
    let name = "alice";
    create_ok(c, &ns, &workspace(name, 1, &[], false));

    // Watch closely: the warning must be on the object, with the workspace still running,
    // for at least (about) warningBefore before the stop.
    let mut warned: Option<(Instant, String)> = None;
    let stopped = eventually(
        "the workspace to be hibernated",
        Duration::from_secs(60),
        || {
            let sts = get_sts(c, &ns, name)?;
            if replicas(&sts) == 0 {
                return Some((Instant::now(), sts));
            }
            if let (None, Some(stop_at)) = (&warned, annotation(&sts, IDLE_WARNING)) {
                warned = Some((Instant::now(), stop_at));
            }
            None
        },
    );
    let (warned_at, stop_at) = warned.expect("never stopped without a warning first");
    let (stopped_at, sts) = stopped;
    assert!(
        stopped_at.duration_since(warned_at) >= Duration::from_secs(3),
        "stopped {:?} after the warning (warningBefore 4s)",
        stopped_at.duration_since(warned_at)
    );
    assert!(
        stop_at.ends_with('Z'),
        "idle-warning is an RFC 3339 time: {stop_at}"
    );
    assert!(annotation(&sts, HIBERNATED).is_some(), "{sts}");
    assert!(annotation(&sts, STOPPED_AT).is_some(), "{sts}");
    assert_eq!(annotation(&sts, REPLICAS_BEFORE_STOP).as_deref(), Some("1"));
    assert_eq!(
        annotation(&sts, IDLE_WARNING),
        None,
        "the warning is removed by the stop"
    );

    let warning = eventually("an IdleWarning event", Duration::from_secs(20), || {
        events(c, &ns, name, "IdleWarning").pop()
    });
    assert_eq!(warning["reportingController"], "devenv-lifecycle");
    assert_eq!(warning["type"], "Warning");
    assert!(
        warning["note"].as_str().unwrap_or("").contains(&stop_at),
        "{warning}"
    );
    eventually("a Hibernated event", Duration::from_secs(20), || {
        events(c, &ns, name, "Hibernated").pop()
    });

    let metrics = ctl.metrics();
    assert!(
        metrics.contains("devenv_lifecycle_hibernations_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("devenv_lifecycle_idle_warnings_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("devenv_lifecycle_workspaces{state=\"hibernated\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("devenv_lifecycle_leader 1"), "{metrics}");
    // The one stop was timed against its announced stop time (a few seconds late at most:
    // the controller requeues itself for that moment).
    assert!(
        metrics.contains("devenv_lifecycle_stop_delay_seconds_count 1")
            && metrics.contains("devenv_lifecycle_stop_delay_seconds_bucket{le=\"10.0\"} 1"),
        "{metrics}"
    );
}

#[test]
fn activity_cancels_the_warning_and_zero_means_never() {
    let c = shared();
    let ns = c.fresh_namespace("lc-activity");
    let user = controller_user(c);
    let _ctl = Controller::start(
        &user,
        &ns,
        "lc",
        "only",
        "lifecycle:\n  idleTimeout: 12s\n  warningBefore: 5s\n",
    );
    create_ok(c, &ns, &workspace("busy", 1, &[], false));
    create_ok(
        c,
        &ns,
        &workspace("forever", 1, &[(IDLE_TIMEOUT, "0")], false),
    );
    let t0 = Instant::now();

    let first = eventually("an idle warning on busy", Duration::from_secs(40), || {
        annotation(&get_sts(c, &ns, "busy")?, IDLE_WARNING)
    });
    // Activity recorded without touching the warning: the controller cancels it.
    let out = c.kubectl([
        "annotate",
        "statefulset",
        "busy",
        "-n",
        &ns,
        "--overwrite",
        &format!("{LAST_ACTIVITY}={}", now()),
    ]);
    check_ok(&["annotate", "busy"], &out);
    eventually(
        "the cancelled warning to be removed",
        Duration::from_secs(20),
        || {
            let sts = get_sts(c, &ns, "busy")?;
            annotation(&sts, IDLE_WARNING).is_none().then_some(())
        },
    );
    // Past the first stop time and well within the new idle period: still running.
    std::thread::sleep(Duration::from_secs(6));
    let sts = get_sts(c, &ns, "busy").expect("busy exists");
    assert_eq!(
        replicas(&sts),
        1,
        "a workspace used after its warning was stopped: {sts}"
    );
    // Idle again: a new warning with a later stop time.
    let second = eventually("a new warning on busy", Duration::from_secs(40), || {
        annotation(&get_sts(c, &ns, "busy")?, IDLE_WARNING)
    });
    assert!(
        second > first,
        "new stop time {second} after the first {first}"
    );

    assert!(t0.elapsed() >= Duration::from_secs(12));
    let sts = get_sts(c, &ns, "forever").expect("forever exists");
    assert_eq!(replicas(&sts), 1, "idle-timeout 0 means never: {sts}");
    assert_eq!(annotation(&sts, IDLE_WARNING), None, "{sts}");
}

#[test]
fn stopped_workspaces_expire_after_their_ttl_and_keep_their_claims() {
    let c = shared();
    let ns = c.fresh_namespace("lc-expiry");
    let user = controller_user(c);
    let _ctl = Controller::start(
        &user,
        &ns,
        "lc",
        "only",
        "lifecycle:\n  idleTimeout: 0\n  stoppedTtl: 6s\n",
    );
    let stopped = [(STOPPED_AT, now()), (REPLICAS_BEFORE_STOP, "1".to_string())];
    let stopped: Vec<(&str, &str)> = stopped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    create_ok(c, &ns, &workspace("old", 0, &stopped, true));
    claim(c, &ns, "home-old-0", Some("old"));
    // Scaled to 0 by hand, no stop time: the TTL runs from when the controller sees it.
    create_ok(c, &ns, &workspace("scaled", 0, &[], false));
    // TTL 0 on the workspace: kept forever.
    let mut kept = stopped.clone();
    kept.push((TTL, "0"));
    create_ok(c, &ns, &workspace("kept", 0, &kept, false));
    // Running workspaces never expire.
    create_ok(c, &ns, &workspace("running", 1, &[], false));

    let stamped = eventually("scaled to get a stop time", Duration::from_secs(20), || {
        annotation(&get_sts(c, &ns, "scaled")?, STOPPED_AT)
    });
    assert!(stamped.ends_with('Z'));
    eventually("old to expire", Duration::from_secs(40), || {
        get_sts(c, &ns, "old").is_none().then_some(())
    });
    eventually("scaled to expire", Duration::from_secs(40), || {
        get_sts(c, &ns, "scaled").is_none().then_some(())
    });
    assert!(
        !claim_deleted(c, &ns, "home-old-0"),
        "claims are kept unless purgeOnExpiry"
    );
    let expired = eventually("an Expired event", Duration::from_secs(20), || {
        events(c, &ns, "old", "Expired").pop()
    });
    assert!(
        expired["note"].as_str().unwrap_or("").contains("kept"),
        "{expired}"
    );
    assert!(
        get_sts(c, &ns, "kept").is_some(),
        "ttl 0 keeps a stopped workspace"
    );
    assert!(
        get_sts(c, &ns, "running").is_some(),
        "a running workspace never expires"
    );
}

#[test]
fn purge_on_expiry_deletes_the_workspace_claims_only() {
    let c = shared();
    let ns = c.fresh_namespace("lc-purge");
    let user = controller_user(c);
    let _ctl = Controller::start(
        &user,
        &ns,
        "lc",
        "only",
        "lifecycle:\n  idleTimeout: 0\n  stoppedTtl: 3s\n  purgeOnExpiry: true\n",
    );
    let at = now();
    let mut sts = workspace(
        "gone",
        0,
        &[(STOPPED_AT, &at), (REPLICAS_BEFORE_STOP, "2")],
        true,
    );
    // Two more claims mounted by the pod template: one labelled for this workspace, one not.
    sts["spec"]["template"]["spec"]["volumes"] = json!([
        {"name": "cache", "persistentVolumeClaim": {"claimName": "gone-cache"}},
        {"name": "shared", "persistentVolumeClaim": {"claimName": "team-shared"}},
    ]);
    claim(c, &ns, "home-gone-0", Some("gone"));
    claim(c, &ns, "home-gone-1", Some("gone"));
    claim(c, &ns, "gone-cache", Some("gone"));
    claim(c, &ns, "team-shared", None);
    create_ok(c, &ns, &sts);

    eventually("gone to expire", Duration::from_secs(40), || {
        get_sts(c, &ns, "gone").is_none().then_some(())
    });
    for name in ["home-gone-0", "home-gone-1", "gone-cache"] {
        eventually(
            &format!("claim {name} to be deleted"),
            Duration::from_secs(30),
            || claim_deleted(c, &ns, name).then_some(()),
        );
    }
    assert!(
        !claim_deleted(c, &ns, "team-shared"),
        "a claim without the workspace label is never purged"
    );
}

#[test]
fn only_the_lease_holder_acts_and_a_successor_takes_over() {
    let c = shared();
    let ns = c.fresh_namespace("lc-lease");
    let user = controller_user(c);
    let policy = "lifecycle:\n  idleTimeout: 0\n  warningBefore: 2s\n";
    let mut a = Controller::start(&user, &ns, "lc", "replica-a", policy);
    let mut b = Controller::start(&user, &ns, "lc", "replica-b", policy);

    let first = eventually("a lease holder", Duration::from_secs(30), || {
        lease_holder(c, &ns, "lc")
    });
    assert!(
        first == "replica-a" || first == "replica-b",
        "holder {first}"
    );
    let (leader, follower) = if first == "replica-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(leader.metrics().contains("devenv_lifecycle_leader 1"));
    assert!(follower.metrics().contains("devenv_lifecycle_leader 0"));

    create_ok(c, &ns, &workspace("one", 1, &[(IDLE_TIMEOUT, "6s")], false));
    eventually("one to be hibernated", Duration::from_secs(40), || {
        (replicas(&get_sts(c, &ns, "one")?) == 0).then_some(())
    });
    let by: Vec<String> = events(c, &ns, "one", "IdleWarning")
        .into_iter()
        .chain(events(c, &ns, "one", "Hibernated"))
        .map(|e| {
            e["reportingInstance"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(!by.is_empty());
    assert!(
        by.iter().all(|i| *i == first),
        "events by {by:?}, holder {first}"
    );

    // The holder dies without releasing: the other takes over once the lease runs out.
    leader.kill();
    let killed = Instant::now();
    let second = eventually("a new lease holder", Duration::from_secs(30), || {
        lease_holder(c, &ns, "lc").filter(|h| *h != first)
    });
    assert!(
        killed.elapsed() >= Duration::from_millis(1500),
        "taken over {:?} after the holder died, before its 3s lease could run out",
        killed.elapsed()
    );
    assert_eq!(second, follower.identity());

    create_ok(c, &ns, &workspace("two", 1, &[(IDLE_TIMEOUT, "6s")], false));
    eventually(
        "two to be hibernated by the successor",
        Duration::from_secs(40),
        || (replicas(&get_sts(c, &ns, "two")?) == 0).then_some(()),
    );
    let by = eventually(
        "a Hibernated event for two",
        Duration::from_secs(20),
        || events(c, &ns, "two", "Hibernated").pop(),
    );
    assert_eq!(by["reportingInstance"], second.as_str());

    // A clean shutdown gives the lease up at once.
    follower.terminate();
    let holder = lease_holder(c, &ns, "lc");
    assert!(
        holder.is_none() || holder.as_deref() == Some(""),
        "lease still held by {holder:?}"
    );
}

#[test]
fn rfc3339_formatting() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(1_735_689_600 + 3_723)),
        "2025-01-01T01:02:03Z"
    );
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00Z"
    );
}

/// A bare workspace pod (made directly; the mutating webhook gates it and records its
/// owner) gets its claims from the controller, with the owner, and then its gate lifted;
/// a pod whose claim name is taken by someone else's claim stays gated, with a Warning
/// saying whose it is. No webhook here: the pods are written as the webhook leaves them.
#[test]
fn bare_pods_get_their_claims_then_their_gate_lifted() {
    let c = shared();
    let ns = c.fresh_namespace("lc-bare");
    let user = controller_user(c);
    let _ctl = Controller::start(&user, &ns, "lc", "only", "");
    let gated_pod = |name: &str, ws: &str, owner: &str| {
        let volumes: Vec<Value> = ["workspace", "history", "config"]
            .iter()
            .map(|v| json!({"name": v, "persistentVolumeClaim": {"claimName": format!("{v}-{ws}-bare")}}))
            .collect();
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {WORKSPACE: ws},
                         "annotations": {"devenv.io/owner": owner}},
            "spec": {
                "schedulingGates": [{"name": "devenv.io/claims"}],
                "automountServiceAccountToken": false,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "dev", "image": "busybox:1.36", "securityContext": {
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
                "volumes": volumes
            }
        })
    };
    create_ok(c, &ns, &gated_pod("alice-pod", "alice", "alice"));
    let gates = |name: &str| {
        fetch(c, &["pod", name, "-n", &ns]).map(|p| p["spec"]["schedulingGates"].clone())
    };
    eventually("the gate to be lifted", Duration::from_secs(60), || {
        gates("alice-pod")
            .filter(|g| g.is_null() || g == &json!([]))
            .map(|_| ())
    });
    for v in ["workspace", "history", "config"] {
        let claim = fetch(c, &["pvc", &format!("{v}-alice-bare"), "-n", &ns])
            .unwrap_or_else(|| panic!("no claim {v}-alice-bare"));
        assert_eq!(claim["metadata"]["labels"][WORKSPACE], "alice", "{claim}");
        assert_eq!(
            claim["metadata"]["annotations"]["devenv.io/owner"], "alice",
            "{claim}"
        );
    }

    // mallory's pod of workspace alice (two users racing for a new workspace): the claims
    // are alice's, so it waits, and is told why.
    create_ok(c, &ns, &gated_pod("mallory-pod", "alice", "mallory"));
    let warned = eventually("a ClaimsRefused Warning", Duration::from_secs(60), || {
        let e = events(c, &ns, "mallory-pod", "ClaimsRefused");
        (!e.is_empty()).then_some(e)
    });
    let note = warned[0]["note"]
        .as_str()
        .or(warned[0]["message"].as_str())
        .unwrap_or_default();
    assert!(
        note.contains("workspace-alice-bare") && note.contains("alice"),
        "{note}"
    );
    assert_eq!(
        gates("mallory-pod"),
        Some(json!([{"name": "devenv.io/claims"}])),
        "a pod whose claims are someone else's must stay gated"
    );
}
