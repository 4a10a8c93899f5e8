//! The CPU activity rule's input: `metrics.k8s.io/v1beta1` PodMetrics, discovered lazily
//! once (and again at most every [`METRICS_REDISCOVERY`] while absent) and asked only when
//! a warning or a stop is due.

use std::time::{Duration, Instant};

use devenv_shared::model::keys::WORKSPACE_LABEL;
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::Client;

use super::api_code;

/// How long the metrics API is believed absent before it is looked for again.
pub const METRICS_REDISCOVERY: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
enum MetricsApi {
    Unknown,
    Served,
    Absent(Instant),
}

/// Asks `metrics.k8s.io` how much CPU a workspace uses, once it knows the API is served.
#[derive(Debug)]
pub(super) struct CpuProbe {
    state: tokio::sync::Mutex<MetricsApi>,
    resource: ApiResource,
}

impl CpuProbe {
    pub(super) fn new() -> Self {
        Self {
            state: tokio::sync::Mutex::new(MetricsApi::Unknown),
            resource: ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"),
                "pods",
            ),
        }
    }

    async fn served(&self, client: &Client) -> bool {
        let mut state = self.state.lock().await;
        match *state {
            MetricsApi::Served => return true,
            MetricsApi::Absent(since) if since.elapsed() < METRICS_REDISCOVERY => return false,
            _ => {}
        }
        let served = match client
            .list_api_group_resources("metrics.k8s.io/v1beta1")
            .await
        {
            Ok(list) => list.resources.iter().any(|r| r.name == "pods"),
            Err(e) => {
                tracing::debug!(error = %e, "metrics.k8s.io/v1beta1 is not served");
                false
            }
        };
        if served {
            tracing::info!("metrics.k8s.io/v1beta1 is served: the CPU activity rule is in effect");
            *state = MetricsApi::Served;
        } else {
            tracing::warn!("cpuActiveMillicores is set but metrics.k8s.io/v1beta1 is not served: the CPU rule is off until it is");
            *state = MetricsApi::Absent(Instant::now());
        }
        served
    }

    /// Millicores used now by the workspace's pods; `None` when unknown.
    pub(super) async fn usage(
        &self,
        client: &Client,
        namespace: &str,
        workspace: &str,
    ) -> Option<u64> {
        if !self.served(client).await {
            return None;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &self.resource);
        let lp = ListParams::default().labels(&format!("{WORKSPACE_LABEL}={workspace}"));
        let list = match api.list(&lp).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%namespace, %workspace, error = %e, "cannot read pod metrics");
                if api_code(&e) == Some(404) {
                    *self.state.lock().await = MetricsApi::Absent(Instant::now());
                }
                return None;
            }
        };
        if list.items.is_empty() {
            return None;
        }
        let mut total: u64 = 0;
        for pod in &list.items {
            let containers = pod.data.get("containers").and_then(|c| c.as_array());
            for c in containers.into_iter().flatten() {
                let cpu = c
                    .get("usage")
                    .and_then(|u| u.get("cpu"))
                    .and_then(|q| q.as_str())
                    .and_then(devenv_shared::model::quantity::usage_millicores);
                total = total.saturating_add(cpu.unwrap_or(0));
            }
        }
        Some(total)
    }
}
