//! `devenv-webhook lifecycle`: the workspace lifecycle controller.
//!
//! Hibernates idle workspaces (after an `IdleWarning`), and deletes workspaces stopped
//! for longer than their TTL. What to do is [`devenv_shared::lifecycle::decide::decide`]'s
//! [`Step`](devenv_shared::lifecycle::decide::Step); this room is the I/O around it:
//!
//! * [`reconcile`]: the [`kube::runtime::Controller`] over workspace StatefulSets, its
//!   writes and Events;
//! * [`lease`]: leader election through a `coordination.k8s.io/v1` Lease: every replica
//!   watches, only the holder writes;
//! * [`backups`]: scheduled backups (`backup.every`) and their pruning;
//! * [`cpu`]: the CPU rule's `metrics.k8s.io` PodMetrics;
//! * [`metrics`]: its Prometheus metrics, on [`crate::metrics_http`];
//! * the policy file, followed like the admission server's ([`crate::policy`]): the whole
//!   file is validated, the controller uses its `lifecycle:` section.

pub mod backups;
pub mod bare;
pub mod cpu;
pub mod lease;
pub mod metrics;
pub mod reconcile;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use prometheus_client::registry::Registry;

use lease::LeaseConfig;
use metrics::LifecycleMetrics;

/// How often the policy file is reread.
pub const POLICY_RELOAD: Duration = Duration::from_secs(30);
/// Reporting controller of the Events.
pub const CONTROLLER_NAME: &str = "devenv-lifecycle";

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Leader election.
    pub lease: LeaseConfig,
    /// Only this namespace's workspaces; `None` = all namespaces.
    pub namespace: Option<String>,
    /// Policy file; the built-in defaults when absent.
    pub policy_file: Option<PathBuf>,
    /// Plain-HTTP listen address for `GET /metrics` and `GET /healthz`.
    pub metrics_listen: SocketAddr,
}

/// Runs `devenv-webhook lifecycle` until SIGTERM/SIGINT: metrics server, lease, controller.
pub async fn run(config: ControllerConfig) -> anyhow::Result<()> {
    config.lease.check()?;
    let policy = match &config.policy_file {
        None => crate::policy::built_in(),
        Some(path) => crate::policy::reloader(path.clone()).await?,
    };
    let client = Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let mut registry = Registry::default();
    let metrics = LifecycleMetrics::register(&mut registry);
    let listener = crate::metrics_http::bind(config.metrics_listen).await?;
    let server = tokio::spawn(crate::metrics_http::serve(listener, Arc::new(registry)));
    let result = reconcile::run_controller(
        client,
        config,
        policy,
        metrics,
        crate::signal::shutdown_signal(),
    )
    .await;
    server.abort();
    result
}

/// The uids of the workspaces `store` holds now (to forget what is kept per workspace once
/// it is gone).
fn live_uids(
    store: &kube::runtime::reflector::Store<k8s_openapi::api::apps::v1::StatefulSet>,
) -> std::collections::HashSet<String> {
    store
        .state()
        .iter()
        .filter_map(|s| s.metadata.uid.clone())
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
