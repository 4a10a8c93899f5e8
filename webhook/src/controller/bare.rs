//! Bare workspace pods: a [`Controller`] over the workspace-labelled pods that makes the
//! claims of those the mutating webhook gated ([`devenv_shared::lifecycle::bare`]), then
//! lifts the gate. Only the Lease holder acts. Claims are read with one metadata GET each
//! (a gated pod is rare: it is made by hand, not by `kubectl devenv create`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use devenv_shared::admission::access::owner_of;
use devenv_shared::admission::catalog::{ClaimFacts, Lookup};
use devenv_shared::admission::ownership::workspace_label;
use devenv_shared::lifecycle::bare::{bare_pod_step, BareStep};
use devenv_shared::model::keys::{LIFECYCLE_FIELD_MANAGER, WORKSPACE_LABEL};
use devenv_shared::model::policy::Policy;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use super::api_code;
use super::lease::{leadership_gained, Leadership};
use super::reconcile::ReconcileError;

struct Ctx {
    client: Client,
    policy: Arc<ArcSwap<Policy>>,
    leadership: Leadership,
    recorder: Recorder,
}

/// Runs until `shutdown` resolves.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    policy: Arc<ArcSwap<Policy>>,
    leadership: Leadership,
    recorder: Recorder,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<Pod> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ctx = Arc::new(Ctx {
        client,
        policy,
        leadership: leadership.clone(),
        recorder,
    });
    Controller::new(api, watcher::Config::default().labels(WORKSPACE_LABEL))
        .reconcile_all_on(leadership_gained(leadership.changes()))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "bare pod reconcile failed"),
            }
        })
        .await;
}

fn error_policy(pod: Arc<Pod>, error: &ReconcileError, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(
        namespace = pod.namespace().unwrap_or_default(),
        pod = pod.name_any(),
        error = %error,
        "cannot make a bare workspace pod's claims; retrying in 10s",
    );
    Action::requeue(Duration::from_secs(10))
}

fn is_gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| {
            g.iter()
                .any(|g| g.name == devenv_shared::model::keys::CLAIMS_GATE)
        })
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    if !is_gated(&pod) || !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut known: HashMap<String, Lookup<ClaimFacts>> = HashMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(source) = &volume.persistent_volume_claim else {
            continue;
        };
        let facts = match claims.get_metadata_opt(&source.claim_name).await? {
            Some(c) => Lookup::Found(ClaimFacts {
                workspace: workspace_label(&c.metadata).map(str::to_string),
                owner: owner_of(&c.metadata).map(str::to_string),
                created: c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            }),
            None => Lookup::Missing,
        };
        known.insert(source.claim_name.clone(), facts);
    }
    let policy = ctx.policy.load_full();
    let step = bare_pod_step(&policy, &pod, |claim| {
        known.get(claim).cloned().unwrap_or(Lookup::Unknown)
    });
    match step {
        BareStep::Nothing => Ok(Action::await_change()),
        BareStep::Retry => Ok(Action::requeue(Duration::from_secs(5))),
        BareStep::Create(new_claims) => {
            let params = PostParams {
                field_manager: Some(LIFECYCLE_FIELD_MANAGER.to_string()),
                ..PostParams::default()
            };
            for claim in &new_claims {
                match claims.create(&params, claim).await {
                    Ok(_) => tracing::info!(%namespace, pod = %name,
                        claim = claim.metadata.name.as_deref().unwrap_or_default(),
                        "created a bare workspace pod's claim"),
                    // Made meanwhile: judged again on the next look.
                    Err(e) if api_code(&e) == Some(409) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        BareStep::LiftGate(patch) => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
            let params = PatchParams {
                field_manager: Some(LIFECYCLE_FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            };
            match pods.patch(&name, &params, &Patch::Json::<()>(patch)).await {
                Ok(_) => {
                    tracing::info!(%namespace, pod = %name, "claims ready; pod may schedule");
                    Ok(Action::await_change())
                }
                // The gates moved (the test operation failed) or the pod went: look again.
                Err(e) if matches!(api_code(&e), Some(409 | 422 | 404)) => {
                    Ok(Action::requeue(Duration::from_secs(1)))
                }
                Err(e) => Err(e.into()),
            }
        }
        BareStep::Refuse(why) => {
            tracing::warn!(%namespace, pod = %name, reason = %why, "bare workspace pod stays gated");
            let event = Event {
                type_: EventType::Warning,
                reason: "ClaimsRefused".into(),
                note: Some(why),
                action: "CreateClaims".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &pod.object_ref(&())).await {
                tracing::warn!(pod = %name, error = %e, "cannot publish event");
            }
            Ok(Action::requeue(Duration::from_secs(300)))
        }
    }
}
