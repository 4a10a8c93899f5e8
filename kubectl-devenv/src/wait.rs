//! `create --wait`: follow a new workspace through its stages with watches
//! (never polling) and say clearly why it is stuck when it is.
//!
//! The decisions are pure ([`Progress::evaluate`], over the pod diagnosis of
//! [`crate::pod_status`]) and unit-tested; [`until_ready`] only feeds it what
//! the watches see.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

use devenv_shared::build::workspace::selector_string;
use devenv_shared::model::keys::WORKSPACE_CONTAINER;

use crate::client::Cluster;
use crate::error::Error;
use crate::pod_status;

/// The stages a user sees, in order.
pub const STAGES: [&str; 5] = [
    "objects created",
    "pod scheduled",
    "volumes bound",
    "image pulled, container starting",
    "ready",
];

pub use crate::pod_status::Blocker;

/// Where a workspace is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// How many of [`STAGES`] are done (1..=5).
    pub stages_done: usize,
    pub blocker: Option<Blocker>,
}

impl Observation {
    pub fn ready(&self) -> bool {
        self.stages_done == STAGES.len()
    }
}

/// Everything the watches have seen so far.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub name: String,
    pub replicas: i32,
    pub stateful_set: Option<StatefulSet>,
    pub pods: BTreeMap<String, Pod>,
    pub claims: BTreeMap<String, PersistentVolumeClaim>,
    /// Events about the StatefulSet, its pods and claims, newest last.
    pub events: Vec<Event>,
}

fn blocker(reason: String, hint: &str, fatal: bool) -> Option<Blocker> {
    Some(Blocker::new(reason, hint, fatal))
}

/// Whether an event is about workspace `name`: the StatefulSet `name`, a pod
/// `name-N`, or a claim `TEMPLATE-name-N`.
pub fn relevant_event(name: &str, event: &Event) -> bool {
    let Some(object) = event.involved_object.name.as_deref() else {
        return false;
    };
    let kind = event.involved_object.kind.as_deref().unwrap_or_default();
    let ordinal_of = |rest: &str| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit());
    match kind {
        "StatefulSet" => object == name,
        "Pod" => object
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(ordinal_of),
        "PersistentVolumeClaim" => object
            .rsplit_once('-')
            .is_some_and(|(head, n)| ordinal_of(n) && head.ends_with(&format!("-{name}"))),
        _ => false,
    }
}

impl Progress {
    pub fn new(name: &str, replicas: i32) -> Self {
        Self {
            name: name.to_owned(),
            replicas,
            ..Default::default()
        }
    }

    fn expected_pods(&self) -> Vec<String> {
        (0..self.replicas.max(0))
            .map(|i| format!("{}-{i}", self.name))
            .collect()
    }

    fn latest_event(&self, kind: &str, object: &str, reasons: &[&str]) -> Option<&Event> {
        self.events.iter().rev().find(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(object)
                && e.reason.as_deref().is_some_and(|r| reasons.contains(&r))
        })
    }

    /// Where the workspace is, and what blocks it.
    pub fn evaluate(&self) -> Observation {
        let done = |n: usize, b: Option<Blocker>| Observation {
            stages_done: n,
            blocker: b,
        };
        if self.replicas == 0 {
            return done(STAGES.len(), None);
        }
        let expected = self.expected_pods();
        let pods: Vec<&Pod> = expected.iter().filter_map(|n| self.pods.get(n)).collect();

        // Stage 2: every pod exists and is scheduled.
        if pods.len() < expected.len() {
            // The StatefulSet controller could not create a pod: webhook
            // denial, quota, pod security... It says why in an event.
            if let Some(e) = self.latest_event("StatefulSet", &self.name, &["FailedCreate"]) {
                return done(
                    1,
                    blocker(
                        e.message.clone().unwrap_or_default(),
                        "the StatefulSet keeps retrying; fix the cause, or remove it with: kubectl devenv delete NAME",
                        true,
                    ),
                );
            }
            let missing = expected
                .iter()
                .find(|n| !self.pods.contains_key(*n))
                .cloned()
                .unwrap_or_default();
            return done(
                1,
                blocker(
                    format!("pod {missing} not created yet"),
                    "if this lasts, check that the cluster's controller manager is running",
                    false,
                ),
            );
        }
        for pod in &pods {
            if !pod_status::is_scheduled(pod) {
                let pod_name = pod_status::name(pod);
                if let Some(u) = pod_status::unschedulable(pod) {
                    return done(1, Some(u.blocker(&pod_name)));
                }
                return done(
                    1,
                    blocker(format!("pod {pod_name} waits for a node"), "", false),
                );
            }
        }

        // Stage 3: every claim of those pods is bound.
        for pod in &pods {
            for claim in pod_status::claim_names(pod) {
                if !pod_status::is_bound(self.claims.get(&claim)) {
                    let why = self
                        .latest_event(
                            "PersistentVolumeClaim",
                            &claim,
                            &[
                                "ProvisioningFailed",
                                "FailedBinding",
                                "ExternalProvisioning",
                            ],
                        )
                        .and_then(|e| e.message.clone())
                        .unwrap_or_else(|| "waiting for a volume".to_owned());
                    return done(
                        2,
                        blocker(
                            format!("claim {claim} is not bound: {why}"),
                            "check that the storage class exists and can provision volumes (kubectl devenv status shows the default)",
                            false,
                        ),
                    );
                }
            }
        }

        // Stage 4: images pulled, containers started.
        for pod in &pods {
            let pod_name = pod_status::name(pod);
            if let Some(problem) = pod_status::container_problems(pod).first() {
                return done(3, Some(problem.blocker(&pod_name)));
            }
            if !pod_status::container_running(pod, WORKSPACE_CONTAINER) {
                return done(
                    3,
                    blocker(
                        format!("pod {pod_name}: pulling image / starting"),
                        "",
                        false,
                    ),
                );
            }
        }

        // Stage 5: ready.
        for pod in &pods {
            if !pod_status::is_ready(pod) {
                let pod_name = pod_status::name(pod);
                return done(
                    4,
                    blocker(
                        format!("pod {pod_name} is running but not ready yet"),
                        "",
                        false,
                    ),
                );
            }
        }
        done(STAGES.len(), None)
    }
}

// Boxed: the objects are large and move through a stream.
enum Seen {
    StatefulSet(Box<watcher::Event<StatefulSet>>),
    Pod(Box<watcher::Event<Pod>>),
    Claim(Box<watcher::Event<PersistentVolumeClaim>>),
    Event(Box<watcher::Event<Event>>),
}

fn upsert<K: kube::Resource>(map: &mut BTreeMap<String, K>, ev: watcher::Event<K>) {
    match ev {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
            if let Some(n) = o.meta().name.clone() {
                map.insert(n, o);
            }
        }
        watcher::Event::Delete(o) => {
            if let Some(n) = o.meta().name.as_deref() {
                map.remove(n);
            }
        }
        watcher::Event::Init | watcher::Event::InitDone => {}
    }
}

/// Prints stage progress on stderr, each stage with the time since the wait began (what
/// a slow start spends its time on is then on the screen).
struct Display {
    printed: usize,
    last_blocker: Option<String>,
    mark: &'static str,
    started: std::time::Instant,
}

impl Display {
    fn new() -> Self {
        Self {
            printed: 0,
            last_blocker: None,
            mark: if std::io::stderr().is_terminal() {
                "✓"
            } else {
                "ok"
            },
            started: std::time::Instant::now(),
        }
    }
    fn show(&mut self, obs: &Observation) {
        while self.printed < obs.stages_done {
            eprintln!(
                "  {} {} ({:.1}s)",
                self.mark,
                STAGES[self.printed],
                self.started.elapsed().as_secs_f64()
            );
            self.printed += 1;
            self.last_blocker = None;
        }
        if let Some(b) = &obs.blocker {
            if self.last_blocker.as_deref() != Some(b.reason.as_str()) {
                eprintln!("  … {}", b.reason);
                self.last_blocker = Some(b.reason.clone());
            }
        }
    }
}

/// Waits until all `replicas` pods of workspace `name` are ready, showing
/// each stage on stderr.
pub async fn until_ready(
    cluster: &Cluster,
    name: &str,
    replicas: i32,
    timeout: Duration,
) -> Result<(), Error> {
    let ns = cluster.namespace.as_str();
    let client = cluster.client.clone();
    let selector = selector_string(name);
    let sts = watcher(
        Api::<StatefulSet>::namespaced(client.clone(), ns),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .map_ok(|e| Seen::StatefulSet(Box::new(e)));
    let pods = watcher(
        Api::<Pod>::namespaced(client.clone(), ns),
        watcher::Config::default().labels(&selector),
    )
    .default_backoff()
    .map_ok(|e| Seen::Pod(Box::new(e)));
    let claims = watcher(
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns),
        watcher::Config::default().labels(&selector),
    )
    .default_backoff()
    .map_ok(|e| Seen::Claim(Box::new(e)));
    let events = watcher(
        Api::<Event>::namespaced(client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .map_ok(|e| Seen::Event(Box::new(e)));
    let mut seen =
        futures::stream::select_all([sts.boxed(), pods.boxed(), claims.boxed(), events.boxed()]);

    let mut progress = Progress::new(name, replicas);
    let mut display = Display::new();
    display.show(&progress.evaluate());
    let deadline = tokio::time::Instant::now() + timeout;
    let mut warned = false;
    loop {
        let next = tokio::time::timeout_at(deadline, seen.next()).await;
        let item = match next {
            Err(_) => {
                let obs = progress.evaluate();
                let reason = obs
                    .blocker
                    .map(|b| format!("{} ({})", b.reason, b.hint))
                    .unwrap_or_else(|| format!("still at: {}", STAGES[obs.stages_done.min(4)]));
                return Err(Error::Timeout {
                    after: format!("{}s", timeout.as_secs()),
                    what: format!("workspace {name:?} to become ready"),
                    reason,
                });
            }
            Ok(None) => {
                return Err(Error::Other(anyhow::anyhow!(
                    "the watches ended unexpectedly"
                )))
            }
            Ok(Some(Err(e))) => {
                // Watches recover by themselves (with backoff); a user without
                // rights to watch events still gets the other stages.
                if !warned {
                    tracing::warn!("watch error (retrying): {e}");
                    warned = true;
                }
                continue;
            }
            Ok(Some(Ok(item))) => item,
        };
        match item {
            Seen::StatefulSet(ev) => {
                let mut m = BTreeMap::new();
                if let Some(s) = progress.stateful_set.take() {
                    m.insert(name.to_owned(), s);
                }
                upsert(&mut m, *ev);
                progress.stateful_set = m.remove(name);
            }
            Seen::Pod(ev) => upsert(&mut progress.pods, *ev),
            Seen::Claim(ev) => upsert(&mut progress.claims, *ev),
            Seen::Event(ev) => {
                if let watcher::Event::Apply(e) | watcher::Event::InitApply(e) = *ev {
                    if relevant_event(name, &e) && is_recent(&e, progress.stateful_set.as_ref()) {
                        progress.events.push(e);
                    }
                }
            }
        }
        let obs = progress.evaluate();
        display.show(&obs);
        if obs.ready() {
            return Ok(());
        }
        if let Some(b) = obs.blocker.filter(|b| b.fatal) {
            return Err(Error::Stuck {
                name: name.to_owned(),
                reason: b.reason,
                hint: b.hint.replace("NAME", name),
            });
        }
    }
}

/// Whether an event happened after this StatefulSet was created (a workspace
/// of the same name deleted earlier may have left events behind). Compares
/// server timestamps only, so client clock skew does not matter.
fn is_recent(event: &Event, sts: Option<&StatefulSet>) -> bool {
    let Some(created) = sts.and_then(|s| s.metadata.creation_timestamp.as_ref()) else {
        // Not seen yet: keep it; the StatefulSet watch is usually first.
        return true;
    };
    let when = event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0));
    when.is_none_or(|w| w >= created.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, ObjectReference, PersistentVolumeClaimStatus,
        PersistentVolumeClaimVolumeSource, PodCondition, PodSpec, PodStatus, Volume,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cond(
        type_: &str,
        status: &str,
        reason: Option<&str>,
        message: Option<&str>,
    ) -> PodCondition {
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.map(Into::into),
            message: message.map(Into::into),
            ..Default::default()
        }
    }

    fn pod(name: &str, conditions: Vec<PodCondition>, statuses: Vec<ContainerStatus>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(vec![Volume {
                    name: "workspace".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: format!("workspace-{name}"),
                        read_only: None,
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: Some(conditions),
                container_statuses: Some(statuses),
                ..Default::default()
            }),
        }
    }

    fn claim(name: &str, phase: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(PersistentVolumeClaimStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn status(waiting: Option<(&str, &str)>, running: bool) -> ContainerStatus {
        ContainerStatus {
            name: WORKSPACE_CONTAINER.into(),
            state: Some(ContainerState {
                waiting: waiting.map(|(r, m)| ContainerStateWaiting {
                    reason: Some(r.into()),
                    message: Some(m.into()),
                }),
                running: running.then(ContainerStateRunning::default),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn event(kind: &str, name: &str, reason: &str, message: &str) -> Event {
        Event {
            involved_object: ObjectReference {
                kind: Some(kind.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..Default::default()
        }
    }

    fn progress() -> Progress {
        Progress::new("demo", 1)
    }

    #[test]
    fn no_pod_yet_then_webhook_denial_is_fatal() {
        let mut p = progress();
        let o = p.evaluate();
        assert_eq!(o.stages_done, 1);
        assert!(!o.blocker.unwrap().fatal);
        p.events.push(event(
            "StatefulSet",
            "demo",
            "FailedCreate",
            r#"create Pod demo-0 in StatefulSet demo failed error: admission webhook "pods.validate.devenv.io" denied the request: no"#,
        ));
        let b = p.evaluate().blocker.unwrap();
        assert!(b.fatal);
        assert!(b.reason.contains("denied the request: no"));
    }

    #[test]
    fn unschedulable_names_the_reason() {
        let mut p = progress();
        p.pods.insert(
            "demo-0".into(),
            pod(
                "demo-0",
                vec![cond(
                    "PodScheduled",
                    "False",
                    Some("Unschedulable"),
                    Some("0/3 nodes are available: 3 Insufficient cpu."),
                )],
                vec![],
            ),
        );
        let o = p.evaluate();
        assert_eq!(o.stages_done, 1);
        let b = o.blocker.unwrap();
        assert!(
            b.reason.contains("Pending (Unschedulable)") && b.reason.contains("Insufficient cpu"),
            "{b:?}"
        );
        assert!(b.hint.contains("smaller --tier"));
        p.pods.insert(
            "demo-0".into(),
            pod(
                "demo-0",
                vec![cond(
                    "PodScheduled",
                    "False",
                    Some("Unschedulable"),
                    Some("no nodes available to schedule pods"),
                )],
                vec![],
            ),
        );
        assert!(p
            .evaluate()
            .blocker
            .unwrap()
            .hint
            .contains("no schedulable nodes"));
    }

    #[test]
    fn unbound_claim_with_provisioning_event() {
        let mut p = progress();
        p.pods.insert(
            "demo-0".into(),
            pod(
                "demo-0",
                vec![cond("PodScheduled", "True", None, None)],
                vec![],
            ),
        );
        p.claims.insert(
            "workspace-demo-0".into(),
            claim("workspace-demo-0", "Pending"),
        );
        p.events.push(event(
            "PersistentVolumeClaim",
            "workspace-demo-0",
            "ProvisioningFailed",
            "storageclass \"fast\" not found",
        ));
        let o = p.evaluate();
        assert_eq!(o.stages_done, 2);
        let b = o.blocker.unwrap();
        assert!(
            b.reason.contains("workspace-demo-0")
                && b.reason.contains("storageclass \"fast\" not found"),
            "{b:?}"
        );
    }

    #[test]
    fn image_pull_errors_and_crash_loops() {
        let mut p = progress();
        p.claims.insert(
            "workspace-demo-0".into(),
            claim("workspace-demo-0", "Bound"),
        );
        p.pods.insert(
            "demo-0".into(),
            pod(
                "demo-0",
                vec![cond("PodScheduled", "True", None, None)],
                vec![status(
                    Some(("ImagePullBackOff", "Back-off pulling image \"x\"")),
                    false,
                )],
            ),
        );
        let o = p.evaluate();
        assert_eq!(o.stages_done, 3);
        let b = o.blocker.unwrap();
        assert!(
            b.reason.contains("ImagePullBackOff") && b.reason.contains("Back-off pulling"),
            "{b:?}"
        );
        assert!(!b.fatal);

        let mut crash = status(Some(("CrashLoopBackOff", "back-off")), false);
        crash.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 0,
                ..Default::default()
            }),
            ..Default::default()
        });
        p.pods.insert(
            "demo-0".into(),
            pod(
                "demo-0",
                vec![cond("PodScheduled", "True", None, None)],
                vec![crash],
            ),
        );
        let b = p.evaluate().blocker.unwrap();
        assert!(b.hint.contains("--keep-alive"), "{b:?}");
    }

    #[test]
    fn stages_until_ready() {
        let mut p = progress();
        p.claims.insert(
            "workspace-demo-0".into(),
            claim("workspace-demo-0", "Bound"),
        );
        p.pods.insert(
            "demo-0".into(),
            pod(
                "demo-0",
                vec![cond("PodScheduled", "True", None, None)],
                vec![status(Some(("ContainerCreating", "")), false)],
            ),
        );
        let o = p.evaluate();
        assert_eq!(o.stages_done, 3);
        p.pods.insert(
            "demo-0".into(),
            pod(
                "demo-0",
                vec![cond("PodScheduled", "True", None, None)],
                vec![status(None, true)],
            ),
        );
        assert_eq!(p.evaluate().stages_done, 4);
        p.pods.insert(
            "demo-0".into(),
            pod(
                "demo-0",
                vec![
                    cond("PodScheduled", "True", None, None),
                    cond("Ready", "True", None, None),
                ],
                vec![status(None, true)],
            ),
        );
        let o = p.evaluate();
        assert!(o.ready() && o.blocker.is_none());
    }

    #[test]
    fn zero_replicas_is_immediately_done() {
        assert!(Progress::new("demo", 0).evaluate().ready());
    }

    #[test]
    fn events_are_matched_to_the_workspace() {
        assert!(relevant_event(
            "demo",
            &event("StatefulSet", "demo", "x", "")
        ));
        assert!(!relevant_event(
            "demo",
            &event("StatefulSet", "demo2", "x", "")
        ));
        assert!(relevant_event("demo", &event("Pod", "demo-3", "x", "")));
        assert!(!relevant_event("demo", &event("Pod", "demo-x-0", "x", "")));
        assert!(relevant_event(
            "demo",
            &event("PersistentVolumeClaim", "workspace-demo-0", "x", "")
        ));
        assert!(!relevant_event(
            "demo",
            &event("PersistentVolumeClaim", "workspace-other-0", "x", "")
        ));
        assert!(!relevant_event(
            "demo",
            &event("Deployment", "demo", "x", "")
        ));
    }
}
