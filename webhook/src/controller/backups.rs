//! Scheduled backups: every `backup.every` (the policy's), the Lease holder backs each due
//! workspace up to `backup.repository` and prunes its scheduled backups to `backup.keep`.
//! When one is due is [`devenv_shared::lifecycle::schedule`]'s to say; the bytes go through
//! the plugin's own engine ([`kubectl_devenv::commands::backup::scheduled`]: exec into the
//! running pod, or a helper pod for a stopped one), so a scheduled backup is the same
//! artifact `kubectl devenv backup` makes and `restore` reads.
//!
//! One backup at a time (they stream whole volumes; the API server and the registry carry
//! them), never two started within the same second (tags have whole seconds), and never a
//! workspace twice within a period of its last good backup by this controller, whatever its
//! annotations say (they are the owner's to write). A failure is a Warning Event on the
//! workspace, `devenv_lifecycle_backups_total{result="failed"}` and a retry after half a
//! period (10s to 15m). Only StatefulSets whose pod template carries the workspace's label
//! are backed up: the ones the webhook judges.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use devenv_shared::lifecycle::events;
use devenv_shared::lifecycle::schedule::{is_due, next_backup, NextBackup};
use devenv_shared::lifecycle::state::WorkspaceState;
use devenv_shared::model::policy::Policy;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use kubectl_devenv::cli::{DockerConfigJson, RegistryArgs};
use kubectl_devenv::client::Cluster;
use tokio::sync::watch;

use super::lease::Leadership;
use super::metrics::LifecycleMetrics;
use super::reconcile::publish;

/// Longest a single backup may take before it counts as failed.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

/// What the loop needs from the controller.
pub struct BackupLoop {
    pub client: Client,
    /// Where the policy's `backup.credentialsSecret` is (the install namespace).
    pub install_namespace: String,
    pub policy: Arc<ArcSwap<Policy>>,
    pub leadership: Leadership,
    pub recorder: Recorder,
    pub store: Store<StatefulSet>,
    pub metrics: Arc<LifecycleMetrics>,
}

/// A StatefulSet whose pod template carries the workspace label of its own name (the
/// webhook judges those); one labelled on its metadata only is not backed up.
fn is_judged_workspace(sts: &StatefulSet) -> bool {
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    sts.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(devenv_shared::model::keys::WORKSPACE_LABEL))
        .is_some_and(|w| w == name)
}

/// How often the loop looks for due workspaces: a quarter of the period, 1s to 60s.
fn tick(every: Option<Duration>) -> Duration {
    every.map_or(Duration::from_secs(30), |e| {
        (e / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    })
}

/// When a failed backup is tried again: half a period later, 10s to 15m.
fn retry_after(every: Duration) -> Duration {
    (every / 2).clamp(Duration::from_secs(10), Duration::from_secs(900))
}

impl BackupLoop {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // uid -> no backup before this time (the last good one + a period, or a retry).
        let mut not_before: HashMap<String, Timestamp> = HashMap::new();
        loop {
            let policy = self.policy.load_full();
            if let Some(every) = policy.backup.every {
                if self.leadership.is_leader() {
                    self.pass(&policy, every, &mut not_before, &stop).await;
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(tick(policy.backup.every)) => {}
            }
        }
    }

    /// Backs up every workspace due now, longest overdue first.
    async fn pass(
        &self,
        policy: &Policy,
        every: Duration,
        not_before: &mut HashMap<String, Timestamp>,
        stop: &watch::Receiver<bool>,
    ) {
        let now = Timestamp::now();
        let mut due: Vec<(Timestamp, Arc<StatefulSet>)> = self
            .store
            .state()
            .into_iter()
            .filter(|sts| sts.metadata.deletion_timestamp.is_none() && is_judged_workspace(sts))
            .filter(|sts| {
                let uid = sts.metadata.uid.as_deref().unwrap_or_default();
                not_before.get(uid).is_none_or(|t| *t <= now)
            })
            .filter_map(|sts| {
                let state = WorkspaceState::from_statefulset(&sts);
                match next_backup(&state, every, now) {
                    NextBackup::At(t) if t <= now => Some((t, sts)),
                    _ => None,
                }
            })
            .collect();
        due.sort_by_key(|(t, _)| *t);
        for (_, sts) in due {
            if *stop.borrow() || !self.leadership.is_leader() {
                return;
            }
            // The newest copy: a manual backup may have moved the schedule meanwhile.
            let namespace = sts.namespace().unwrap_or_default();
            let current = self
                .store
                .get(&kube::runtime::reflector::ObjectRef::new(&sts.name_any()).within(&namespace));
            let Some(sts) = current else { continue };
            if sts.metadata.deletion_timestamp.is_some()
                || !is_due(
                    &WorkspaceState::from_statefulset(&sts),
                    every,
                    Timestamp::now(),
                )
            {
                continue;
            }
            let started = Timestamp::now();
            let uid = sts.metadata.uid.clone().unwrap_or_default();
            let wait = match self.back_up(policy, &sts).await {
                Ok(()) => every,
                Err(()) => retry_after(every),
            };
            not_before.insert(uid, devenv_shared::model::time::add(started, wait));
            // Tags carry whole seconds: the next backup starts in a later second.
            let next_second =
                Timestamp::from_second(started.as_second().saturating_add(1)).unwrap_or(started);
            if let Ok(wait) = Duration::try_from(next_second.duration_since(Timestamp::now())) {
                tokio::time::sleep(wait).await;
            }
        }
        let live = super::live_uids(&self.store);
        not_before.retain(|uid, _| live.contains(uid));
    }

    /// One scheduled backup of `sts`, told as an Event and in the metrics.
    async fn back_up(&self, policy: &Policy, sts: &StatefulSet) -> Result<(), ()> {
        let namespace = sts.namespace().unwrap_or_default();
        let state = WorkspaceState::from_statefulset(sts);
        let workspace = state.workspace.as_str();
        let began = Instant::now();
        tracing::info!(%namespace, %workspace, "scheduled backup starting");
        let result = match self.credentials(policy).await {
            Err(why) => Err(why),
            Ok(docker_config_json) => {
                let cluster = Cluster {
                    client: self.client.clone(),
                    namespace: namespace.clone(),
                    server: "the API server".to_owned(),
                };
                let args = RegistryArgs {
                    docker_config_json,
                    ..Default::default()
                };
                let name = sts.name_any();
                let run =
                    kubectl_devenv::commands::backup::scheduled(&cluster, policy, &name, &args);
                match tokio::time::timeout(BACKUP_TIMEOUT, run).await {
                    Ok(Ok(done)) => Ok(done),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!(
                        "it did not finish within {}s",
                        BACKUP_TIMEOUT.as_secs()
                    )),
                }
            }
        };
        match result {
            Ok((pushed, pruned)) => {
                self.metrics.backup(true);
                self.metrics
                    .backup_seconds
                    .observe(began.elapsed().as_secs_f64());
                self.metrics.backups_pruned.inc_by(pruned.len() as u64);
                tracing::info!(%namespace, %workspace, reference = %pushed.whole(), pruned = ?pruned, seconds = began.elapsed().as_secs_f64(), "scheduled backup taken");
                let repository = policy.backup.repository.as_deref().unwrap_or_default();
                let event = events::backed_up(workspace, repository);
                publish(&self.recorder, sts, event).await;
                Ok(())
            }
            Err(why) => {
                self.metrics.backup(false);
                let retry = retry_after(policy.backup.every.unwrap_or_default());
                tracing::warn!(%namespace, %workspace, error = %why, retry_in = ?retry, "scheduled backup failed");
                let event = events::backup_failed(workspace, &why, retry);
                publish(&self.recorder, sts, event).await;
                Err(())
            }
        }
    }

    /// The docker config of the policy's `backup.credentialsSecret`, if it names one.
    async fn credentials(&self, policy: &Policy) -> Result<Option<DockerConfigJson>, String> {
        let Some(name) = &policy.backup.credentials_secret else {
            return Ok(None);
        };
        let at = format!("{}/{name}", self.install_namespace);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.install_namespace);
        let secret = api
            .get(name)
            .await
            .map_err(|e| format!("cannot read backup.credentialsSecret {at}: {e}"))?;
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(".dockerconfigjson"))
            .ok_or_else(|| {
                format!("backup.credentialsSecret {at} has no .dockerconfigjson (make it with kubectl create secret docker-registry)")
            })?;
        let text = String::from_utf8(data.0.clone()).map_err(|_| {
            format!("backup.credentialsSecret {at}: .dockerconfigjson is not UTF-8")
        })?;
        Ok(Some(DockerConfigJson(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_looks_often_enough_and_retries_within_bounds() {
        assert_eq!(tick(None), Duration::from_secs(30));
        assert_eq!(
            tick(Some(Duration::from_secs(86_400))),
            Duration::from_secs(60)
        );
        assert_eq!(tick(Some(Duration::from_secs(20))), Duration::from_secs(5));
        assert_eq!(tick(Some(Duration::from_secs(2))), Duration::from_secs(1));
        assert_eq!(
            retry_after(Duration::from_secs(86_400)),
            Duration::from_secs(900)
        );
        assert_eq!(
            retry_after(Duration::from_secs(20)),
            Duration::from_secs(10)
        );
        assert_eq!(
            retry_after(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
    }
}
