//! The controller's Prometheus metrics, served by [`crate::metrics_http`].

use std::sync::{Arc, OnceLock};

use devenv_shared::lifecycle::state::{WorkspacePhase, WorkspaceState};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::lease::Leadership;

/// Buckets of the create-to-Ready histogram, in seconds.
const READY_BUCKETS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0,
];

/// Buckets of the stop-delay histogram (announced stop time → the stop written), seconds.
const STOP_DELAY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// Buckets of the scheduled-backup duration histogram, in seconds.
const BACKUP_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// The controller's Prometheus metrics. Counters and the histogram are only moved by the
/// leader, and the per-state gauge is only reported by the leader (zeros elsewhere), so
/// `sum` over replicas is right.
#[derive(Debug)]
pub struct LifecycleMetrics {
    pub(super) warnings: Counter,
    pub(super) hibernations: Counter,
    pub(super) expiries: Counter,
    pub(super) ready_seconds: Histogram,
    pub(super) stop_delay_seconds: Histogram,
    /// Scheduled backups by `result` (`ok`, `failed`).
    pub(super) backups: Family<Vec<(String, String)>, Counter>,
    pub(super) backup_seconds: Histogram,
    pub(super) backups_pruned: Counter,
    view: Arc<StateView>,
}

#[derive(Debug, Default)]
struct StateView {
    store: OnceLock<Store<StatefulSet>>,
    leadership: OnceLock<Leadership>,
}

impl Collector for StateView {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let leading = self.leadership.get().is_some_and(Leadership::is_leader);
        let mut counts = [0i64; WorkspacePhase::ALL.len()];
        if leading {
            if let Some(store) = self.store.get() {
                for sts in store.state() {
                    let phase = WorkspaceState::from_statefulset(&sts).phase();
                    if let Some(i) = WorkspacePhase::ALL.iter().position(|p| *p == phase) {
                        counts[i] += 1;
                    }
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "devenv_lifecycle_workspaces",
            "Workspaces by lifecycle state (running, warned, stopped, hibernated); reported by the leader only",
            None,
            MetricType::Gauge,
        )?;
        for (phase, count) in WorkspacePhase::ALL.iter().zip(counts) {
            let labels = [("state", phase.as_str())];
            ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
        }
        let leader = encoder.encode_descriptor(
            "devenv_lifecycle_leader",
            "1 on the replica that holds the lifecycle lease",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(leading)).encode(leader)?;
        Ok(())
    }
}

impl LifecycleMetrics {
    /// Creates the metrics and registers them in `registry` (the lifecycle server's own,
    /// or the webhook's when both run in one process).
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Arc::new(Self {
            warnings: Counter::default(),
            hibernations: Counter::default(),
            expiries: Counter::default(),
            ready_seconds: Histogram::new(READY_BUCKETS),
            stop_delay_seconds: Histogram::new(STOP_DELAY_BUCKETS),
            backups: Family::default(),
            backup_seconds: Histogram::new(BACKUP_BUCKETS),
            backups_pruned: Counter::default(),
            view: Arc::new(StateView::default()),
        });
        registry.register(
            "devenv_lifecycle_idle_warnings",
            "Idle warnings issued",
            metrics.warnings.clone(),
        );
        registry.register(
            "devenv_lifecycle_hibernations",
            "Idle workspaces stopped",
            metrics.hibernations.clone(),
        );
        registry.register(
            "devenv_lifecycle_expiries",
            "Stopped workspaces deleted after their TTL",
            metrics.expiries.clone(),
        );
        registry.register(
            "devenv_lifecycle_workspace_ready_seconds",
            "Time from a workspace's creation to its first ready replica",
            metrics.ready_seconds.clone(),
        );
        registry.register(
            "devenv_lifecycle_stop_delay_seconds",
            "Time from an idle workspace's announced stop time to its stop (how late the controller is)",
            metrics.stop_delay_seconds.clone(),
        );
        registry.register(
            "devenv_lifecycle_backups",
            "Scheduled backups taken (result=ok) or failed (result=failed)",
            metrics.backups.clone(),
        );
        registry.register(
            "devenv_lifecycle_backup_seconds",
            "Time a scheduled backup took, read to pushed (good ones)",
            metrics.backup_seconds.clone(),
        );
        registry.register(
            "devenv_lifecycle_backups_pruned",
            "Scheduled backups deleted to keep backup.keep",
            metrics.backups_pruned.clone(),
        );
        registry.register_collector(Box::new(metrics.view.clone()));
        metrics
    }

    /// Counts one scheduled backup by its result.
    pub(super) fn backup(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.backups
            .get_or_create(&vec![("result".to_owned(), result.to_owned())])
            .inc();
    }

    pub(super) fn attach(&self, store: Store<StatefulSet>, leadership: Leadership) {
        // Set once per process; a second controller in the same process keeps the first view.
        let _ = self.view.store.set(store);
        let _ = self.view.leadership.set(leadership);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render() {
        let mut registry = Registry::default();
        let m = LifecycleMetrics::register(&mut registry);
        m.hibernations.inc();
        m.ready_seconds.observe(3.0);
        m.stop_delay_seconds.observe(0.2);
        m.backup(true);
        m.backup(false);
        m.backup(false);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("devenv_lifecycle_hibernations_total 1"),
            "{out}"
        );
        assert!(
            out.contains("devenv_lifecycle_workspaces{state=\"hibernated\"} 0"),
            "{out}"
        );
        assert!(out.contains("devenv_lifecycle_leader 0"), "{out}");
        assert!(
            out.contains("devenv_lifecycle_backups_total{result=\"failed\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("devenv_lifecycle_workspace_ready_seconds_count 1"),
            "{out}"
        );
        assert!(
            out.contains("devenv_lifecycle_stop_delay_seconds_bucket{le=\"0.25\"} 1"),
            "{out}"
        );
    }
}
