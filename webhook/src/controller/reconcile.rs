//! The reconcile loop: a [`kube::runtime::Controller`] over the StatefulSets labelled
//! `devenv.io/workspace` (one watch, an in-memory reflector; no LIST polling). Every
//! reconcile takes the next [`Step`] from the cached object and requeues at the next
//! decision time (capped at [`MAX_REQUEUE`]).
//!
//! Writes are JSON merge patches with field manager `devenv-lifecycle` and the
//! StatefulSet's resourceVersion as a precondition, so a step chosen from a stale view (a
//! heartbeat just recorded activity) fails with 409 and is chosen again; deletes carry uid
//! and resourceVersion preconditions. The Events' texts are
//! [`devenv_shared::lifecycle::events`]'.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use devenv_shared::lifecycle as lc;
use devenv_shared::lifecycle::decide::{decide, Step};
use devenv_shared::lifecycle::events::{self, WorkspaceEvent};
use devenv_shared::lifecycle::state::WorkspaceState;
use devenv_shared::model::keys::{LIFECYCLE_FIELD_MANAGER, WORKSPACE_LABEL};
use devenv_shared::model::policy::Policy;
use devenv_shared::model::time::format_time;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;

use super::cpu::CpuProbe;
use super::lease::{leadership_gained, run_lease, Leadership};
use super::metrics::LifecycleMetrics;
use super::{api_code, lock, ControllerConfig, CONTROLLER_NAME, POLICY_RELOAD};
use crate::reload::{FileReloader, Reload};

/// Longest time between two looks at a workspace (a safety net against missed watch events;
/// it only reads the cache).
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);

struct Ctx {
    client: Client,
    /// The policy in force; the controller follows its `lifecycle:` section.
    policy: Arc<ArcSwap<Policy>>,
    leadership: Leadership,
    recorder: Recorder,
    metrics: Arc<LifecycleMetrics>,
    store: Store<StatefulSet>,
    cpu: CpuProbe,
    /// uid -> whether the workspace has been seen ready (create-to-Ready histogram).
    ready_seen: Mutex<HashMap<String, bool>>,
}

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

/// Runs the lease loop and the controller until `shutdown` resolves; then stops acting,
/// lets running reconciles finish and releases the lease.
pub async fn run_controller(
    client: Client,
    config: ControllerConfig,
    policy: FileReloader<Policy>,
    metrics: Arc<LifecycleMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.lease.check()?;
    let leadership = Leadership::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let lease_task = tokio::spawn(run_lease(
        client.clone(),
        config.lease.clone(),
        leadership.clone(),
        stop_rx.clone(),
    ));
    let (policy_tx, policy_rx) = watch::channel(0u64);
    let current_policy = policy.current();
    let mut reload_stop = stop_rx.clone();
    let reload_task = tokio::spawn(policy.on_reload(lifecycle_changes(policy_tx)).run(
        POLICY_RELOAD,
        async move {
            let _ = reload_stop.wait_for(|stop| *stop).await;
        },
    ));

    let api: Api<StatefulSet> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(api, watcher::Config::default().labels(WORKSPACE_LABEL))
        .with_config(kube::runtime::controller::Config::default().concurrency(8));
    let store = controller.store();
    metrics.attach(store.clone(), leadership.clone());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some(config.lease.identity.clone()),
        },
    );
    let (bare_stop_tx, bare_stop_rx) = futures::channel::oneshot::channel::<()>();
    let bare_task = tokio::spawn(super::bare::run(
        client.clone(),
        config.namespace.clone(),
        current_policy.clone(),
        leadership.clone(),
        recorder.clone(),
        futures::FutureExt::map(bare_stop_rx, |_| ()),
    ));
    let backup_task = tokio::spawn(
        super::backups::BackupLoop {
            client: client.clone(),
            install_namespace: config.lease.namespace.clone(),
            policy: current_policy.clone(),
            leadership: leadership.clone(),
            recorder: recorder.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
        }
        .run(stop_rx.clone()),
    );
    let ctx = Arc::new(Ctx {
        client,
        policy: current_policy,
        leadership: leadership.clone(),
        recorder,
        metrics,
        store,
        cpu: CpuProbe::new(),
        ready_seen: Mutex::new(HashMap::new()),
    });

    let policy_changed = futures::stream::unfold(policy_rx, |mut rx| async move {
        rx.changed().await.ok().map(|_| ((), rx))
    });
    let (graceful_tx, graceful_rx) = futures::channel::oneshot::channel::<()>();
    let stopper = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down the lifecycle controller");
        let _ = graceful_tx.send(());
        let _ = bare_stop_tx.send(());
    });

    tracing::info!(
        lease = %format!("{}/{}", config.lease.namespace, config.lease.name),
        identity = %config.lease.identity,
        namespace = config.namespace.as_deref().unwrap_or("(all)"),
        "lifecycle controller starting",
    );
    controller
        .reconcile_all_on(futures::stream::select(
            leadership_gained(leadership.changes()),
            policy_changed,
        ))
        .graceful_shutdown_on(futures::FutureExt::map(graceful_rx, |_| ()))
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "lifecycle reconcile failed"),
            }
        })
        .await;

    // The controller only ends on shutdown (or when its watch stream ends): stop acting
    // and give the lease up.
    leadership.lost();
    stopper.abort();
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = lease_task.await;
    })
    .await;
    bare_task.abort();
    backup_task.abort();
    reload_task.abort();
    Ok(())
}

/// Bumps `changed` for every reloaded policy whose `lifecycle:` section differs from the
/// one in force (a change elsewhere in the file decides nothing here), so that every
/// workspace is decided again under the new rules.
fn lifecycle_changes(changed: watch::Sender<u64>) -> impl FnMut(Reload<'_, Policy>) + Send {
    move |event| {
        if let Reload::Loaded {
            value,
            previous,
            paths,
            ..
        } = event
        {
            if value.lifecycle != previous.lifecycle {
                let path = paths.first().map(|p| p.display().to_string());
                tracing::info!(path = path.unwrap_or_default(), policy = ?value.lifecycle, "lifecycle policy reloaded");
                changed.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
}

fn error_policy(sts: Arc<StatefulSet>, error: &ReconcileError, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(
        namespace = sts.namespace().unwrap_or_default(),
        statefulset = sts.name_any(),
        error = %error,
        "lifecycle action failed; retrying in 15s",
    );
    Action::requeue(Duration::from_secs(15))
}

/// Requeue `next` from now (a second late, so the decision is due when it runs).
fn requeue(next: Option<Duration>) -> Action {
    match next {
        Some(d) => Action::requeue(d.saturating_add(Duration::from_secs(1)).min(MAX_REQUEUE)),
        None => Action::requeue(MAX_REQUEUE),
    }
}

impl Ctx {
    /// Feeds the create-to-Ready histogram when a workspace's readyReplicas first reaches 1.
    fn observe_ready(&self, sts: &StatefulSet, now: Timestamp) {
        let Some(uid) = sts.metadata.uid.as_deref() else {
            return;
        };
        let ready = sts
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            >= 1;
        let mut seen = lock(&self.ready_seen);
        match seen.get(uid) {
            // First sight: when it is already ready, when it became ready is unknown.
            None => {
                seen.insert(uid.to_string(), ready);
            }
            Some(false) if ready => {
                seen.insert(uid.to_string(), true);
                if self.leadership.is_leader() {
                    if let Some(created) = sts.metadata.creation_timestamp.as_ref() {
                        let secs = now.duration_since(created.0).as_secs_f64().max(0.0);
                        self.metrics.ready_seconds.observe(secs);
                    }
                }
            }
            _ => {}
        }
        if seen.len() > self.store.len().saturating_mul(2).saturating_add(64) {
            let live = super::live_uids(&self.store);
            seen.retain(|uid, _| live.contains(uid));
        }
    }

    async fn publish(&self, sts: &StatefulSet, event: WorkspaceEvent) {
        publish(&self.recorder, sts, event).await;
    }
}

/// Publishes `event` on the workspace StatefulSet; a failure is logged, not fatal.
pub(super) async fn publish(recorder: &Recorder, sts: &StatefulSet, event: WorkspaceEvent) {
    let reason = event.reason;
    let event = Event {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.into(),
        note: Some(event.note),
        action: event.action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &sts.object_ref(&())).await {
        tracing::warn!(statefulset = sts.name_any(), %reason, error = %e, "cannot publish event");
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(LIFECYCLE_FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// What a failed write means for the reconcile: a conflict or a vanished object is not an
/// error (the watch brings the new state and the decision is made again).
fn write_result(result: Result<(), kube::Error>) -> Result<Option<Action>, ReconcileError> {
    match result {
        Ok(()) => Ok(None),
        Err(e) if api_code(&e) == Some(409) => Ok(Some(Action::requeue(Duration::from_secs(2)))),
        Err(e) if api_code(&e) == Some(404) => Ok(Some(Action::await_change())),
        Err(e) => Err(e.into()),
    }
}

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let now = Timestamp::now();
    ctx.observe_ready(&sts, now);
    if sts.metadata.deletion_timestamp.is_some() || !ctx.leadership.is_leader() {
        // Followers act on nothing; gaining the lease reconciles every workspace.
        return Ok(Action::await_change());
    }
    let namespace = sts.namespace().unwrap_or_default();
    let name = sts.name_any();
    let document = ctx.policy.load_full();
    let policy = &document.lifecycle;
    let mut state = WorkspaceState::from_statefulset(&sts);
    for problem in &state.problems {
        tracing::warn!(%namespace, statefulset = %name, "{problem}");
    }
    let mut step = decide(now, &state, policy);
    if matches!(step, Step::Warn { .. } | Step::Hibernate) && policy.cpu_active_millicores.is_some()
    {
        if let Some(used) = ctx
            .cpu
            .usage(&ctx.client, &namespace, &state.workspace)
            .await
        {
            state.cpu_millicores = Some(used);
            step = decide(now, &state, policy);
        }
    }
    tracing::debug!(%namespace, statefulset = %name, ?step, "lifecycle step");
    if let Step::Nothing { next_check } = step {
        return Ok(requeue(next_check));
    }
    // Last look before writing: a replica that lost the lease must not act.
    if !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let workspace = state.workspace.as_str();
    match &step {
        Step::Nothing { .. } => Ok(Action::await_change()),
        Step::Annotate { .. } | Step::Warn { .. } | Step::Hibernate => {
            let Some(patch) = step.patch(&sts, now) else {
                return Ok(Action::await_change());
            };
            let result = api
                .patch(&name, &patch_params(), &Patch::Merge(&patch))
                .await
                .map(|_| ());
            if let Some(action) = write_result(result)? {
                return Ok(action);
            }
            match &step {
                Step::Warn { stop_at } => {
                    let stop_at = *stop_at;
                    ctx.metrics.warnings.inc();
                    tracing::info!(%namespace, %workspace, stop_at = %format_time(stop_at), "idle warning issued");
                    let event = events::idle_warning(workspace, state.last_activity(), stop_at);
                    ctx.publish(&sts, event).await;
                    Ok(requeue(Some(
                        Duration::try_from(stop_at.duration_since(now)).unwrap_or_default(),
                    )))
                }
                Step::Hibernate => {
                    ctx.metrics.hibernations.inc();
                    // How late the stop is against the time the warning announced.
                    if let Some(stop_at) = state.idle_warning {
                        let late = Timestamp::now().duration_since(stop_at).as_secs_f64();
                        ctx.metrics.stop_delay_seconds.observe(late.max(0.0));
                    }
                    tracing::info!(%namespace, %workspace, "idle workspace hibernated");
                    let event = events::hibernated(workspace, state.effective_idle_timeout(policy));
                    ctx.publish(&sts, event).await;
                    Ok(requeue(None))
                }
                _ => Ok(requeue(Some(Duration::from_secs(60)))),
            }
        }
        Step::Expire { purge } => {
            let dp = DeleteParams::background().preconditions(Preconditions {
                uid: sts.metadata.uid.clone(),
                resource_version: sts.metadata.resource_version.clone(),
            });
            let result = api.delete(&name, &dp).await.map(|_| ());
            if let Some(action) = write_result(result)? {
                return Ok(action);
            }
            ctx.metrics.expiries.inc();
            let purged = if *purge {
                Some(purge_claims(&ctx.client, &namespace, &sts, workspace).await)
            } else {
                None
            };
            tracing::info!(%namespace, %workspace, purge = *purge, "stopped workspace expired");
            let event = events::expired(workspace, state.effective_ttl(policy), purged.as_deref());
            ctx.publish(&sts, event).await;
            Ok(Action::await_change())
        }
    }
}

/// Deletes the claims of an expired workspace (after its StatefulSet is gone, so a
/// workspace restarted meanwhile never loses its data). Claims from the StatefulSet's
/// templates are its own; a claim only mounted by its pod template is deleted only when it
/// carries this workspace's label. Retries a few times: there is no later reconcile.
async fn purge_claims(
    client: &Client,
    namespace: &str,
    sts: &StatefulSet,
    workspace: &str,
) -> Vec<String> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let mut deleted = Vec::new();
    for claim in lc::claims::workspace_claims(sts) {
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=5 {
            let result: Result<bool, kube::Error> = async {
                let Some(pvc) = api.get_opt(&claim.name).await? else {
                    return Ok(false);
                };
                let labelled = pvc.labels().get(WORKSPACE_LABEL).map(String::as_str) == Some(workspace);
                if !claim.from_template && !labelled {
                    tracing::info!(%namespace, claim = %claim.name, "not deleting a claim without this workspace's label");
                    return Ok(false);
                }
                let dp = DeleteParams::background().preconditions(Preconditions {
                    uid: pvc.metadata.uid.clone(),
                    resource_version: None,
                });
                match api.delete(&claim.name, &dp).await {
                    Ok(_) => Ok(true),
                    Err(e) if api_code(&e) == Some(404) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            .await;
            match result {
                Ok(true) => {
                    deleted.push(claim.name.clone());
                    break;
                }
                Ok(false) => break,
                Err(e) if attempt < 5 => {
                    tracing::warn!(%namespace, claim = %claim.name, error = %e, "cannot delete claim; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    tracing::error!(%namespace, claim = %claim.name, error = %e, "cannot delete claim of an expired workspace; delete it by hand");
                }
            }
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_is_capped() {
        assert_eq!(
            requeue(Some(Duration::from_secs(10))),
            Action::requeue(Duration::from_secs(11))
        );
        assert_eq!(
            requeue(Some(Duration::from_secs(100_000))),
            Action::requeue(MAX_REQUEUE)
        );
        assert_eq!(requeue(None), Action::requeue(MAX_REQUEUE));
    }

    #[test]
    fn only_a_new_lifecycle_section_decides_every_workspace_again() {
        let (tx, rx) = watch::channel(0u64);
        let mut hook = lifecycle_changes(tx);
        let paths = [std::path::PathBuf::from("policy.yaml")];
        let before = Policy::default();
        let mut tiers_changed = before.clone();
        tiers_changed.default_tier = "large".to_string();
        let mut lifecycle_changed = before.clone();
        lifecycle_changed.lifecycle.idle_timeout = Some(Duration::from_secs(60));
        for (value, bumps) in [(&tiers_changed, 0), (&lifecycle_changed, 1)] {
            hook(Reload::Loaded {
                value,
                previous: &before,
                paths: &paths,
                contents: &[],
            });
            assert_eq!(*rx.borrow(), bumps, "{value:?}");
        }
        hook(Reload::Rejected);
        hook(Reload::Unreadable);
        assert_eq!(*rx.borrow(), 1);
    }
}
