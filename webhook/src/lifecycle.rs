//! `devenv-webhook lifecycle`: the workspace lifecycle controller.
//!
//! Hibernates idle workspaces (after an `IdleWarning`), and deletes workspaces stopped
//! for longer than their TTL. The decisions are [`devenv_shared::lifecycle::decide`];
//! this module is the I/O around them:
//!
//! * a [`kube::runtime::Controller`] over the StatefulSets labelled `devenv.io/workspace`
//!   (one watch, an in-memory reflector; no LIST polling). Every reconcile decides from the
//!   cached object and requeues at the next decision time (capped at [`MAX_REQUEUE`]);
//! * leader election through a `coordination.k8s.io/v1` Lease ([`run_lease`]): every
//!   replica watches, only the holder writes, and it checks that it still holds the lease
//!   (by its own clock, with a renew deadline shorter than the lease duration) right
//!   before every write;
//! * writes are JSON merge patches with field manager `devenv-lifecycle` and the
//!   StatefulSet's resourceVersion as a precondition, so a decision made from a stale
//!   view (a heartbeat just recorded activity) fails with 409 and is made again; deletes
//!   carry uid and resourceVersion preconditions;
//! * Events (`IdleWarning`, `Hibernated`, `Expired`) through [`Recorder`];
//! * the CPU rule asks `metrics.k8s.io/v1beta1` PodMetrics, discovered lazily once (and
//!   again at most every [`METRICS_REDISCOVERY`] while absent), only when a warning or a
//!   stop is due;
//! * Prometheus metrics ([`LifecycleMetrics`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use clap::Args;
use devenv_shared::keys::WORKSPACE_LABEL;
use devenv_shared::lifecycle::{
    self as lc, Action as Decision, LifecyclePolicy, WorkspacePhase, WorkspaceState,
    LIFECYCLE_FIELD_MANAGER,
};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Longest time between two looks at a workspace (a safety net against missed watch events;
/// it only reads the cache).
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// How long the metrics API is believed absent before it is looked for again.
pub const METRICS_REDISCOVERY: Duration = Duration::from_secs(600);
/// How often the policy file is reread.
pub const POLICY_RELOAD: Duration = Duration::from_secs(30);
/// Reporting controller of the Events.
pub const CONTROLLER_NAME: &str = "devenv-lifecycle";

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

fn duration_arg(s: &str) -> Result<Duration, String> {
    let d = lc::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!("invalid duration {s:?}: must be more than 0"));
    }
    Ok(d)
}

/// `devenv-webhook lifecycle` options.
#[derive(Debug, Clone, Args)]
pub struct LifecycleArgs {
    /// Policy file (YAML) whose `lifecycle:` section applies; reread every 30s (a bad
    /// file never replaces a good policy). The built-in defaults when absent.
    #[arg(long, env = "DEVENV_LIFECYCLE_POLICY")]
    pub policy: Option<PathBuf>,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "devenv-system")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "devenv-lifecycle")]
    pub lease_name: String,
    /// This replica's identity in the Lease [default: $POD_NAME, else HOSTNAME-PID].
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Manage the workspaces of this namespace only [default: all namespaces].
    #[arg(long)]
    pub namespace: Option<String>,
    /// Plain-HTTP listen address for GET /metrics and GET /healthz.
    #[arg(
        long,
        env = "DEVENV_LIFECYCLE_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,
    /// Lease duration: how long a silent leader keeps the lease.
    #[arg(long, default_value = "15s", value_parser = duration_arg)]
    pub lease_duration: Duration,
    /// Lease renew period (the leader stops acting when it could not renew for 2/3 of
    /// the lease duration).
    #[arg(long, default_value = "5s", value_parser = duration_arg)]
    pub renew_every: Duration,
    /// Log format.
    #[arg(long, env = "DEVENV_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = crate::cli::LogFormat::Text)]
    pub log_format: crate::cli::LogFormat,
}

impl LifecycleArgs {
    /// The lease settings these options describe.
    pub fn lease_config(&self) -> anyhow::Result<LeaseConfig> {
        let config = LeaseConfig {
            namespace: self.lease_namespace.clone(),
            name: self.lease_name.clone(),
            identity: self.identity.clone().unwrap_or_else(default_identity),
            lease_duration: self.lease_duration,
            renew_every: self.renew_every,
        };
        config.check()?;
        Ok(config)
    }
}

/// `HOSTNAME-PID`: unique per process (two controllers may share a host in tests).
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "devenv-lifecycle".to_string());
    format!("{host}-{}", std::process::id())
}

/// Runs `devenv-webhook lifecycle` until SIGTERM/SIGINT: metrics server, lease, controller.
pub async fn run(args: LifecycleArgs) -> anyhow::Result<()> {
    let lease = args.lease_config()?;
    let policy = PolicySource::load(args.policy.clone())?;
    let client = Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let mut registry = Registry::default();
    let metrics = LifecycleMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {} for metrics", args.metrics_listen))?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(args.metrics_listen), "serving /metrics and /healthz");
    let server = tokio::spawn(serve_metrics(listener, registry));
    let config = LifecycleConfig {
        lease,
        namespace: args.namespace.clone(),
    };
    let result = run_controller(client, config, policy, metrics, crate::shutdown_signal()).await;
    server.abort();
    result
}

/// Serves `GET /metrics` (OpenMetrics text) and `GET /healthz` until the task is aborted.
pub async fn serve_metrics(listener: tokio::net::TcpListener, registry: Arc<Registry>) {
    use axum::http::header;
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = String::new();
                    if prometheus_client::encoding::text::encode(&mut body, &registry).is_err() {
                        body.clear();
                    }
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

/// The lifecycle policy in force, reread from its file.
#[derive(Debug, Clone)]
pub struct PolicySource {
    path: Option<PathBuf>,
    current: Arc<ArcSwap<LifecyclePolicy>>,
}

impl PolicySource {
    /// Reads `path` now (a missing or bad file is an error: the controller refuses to start
    /// rather than run with a policy nobody wrote); `None` = the built-in defaults.
    pub fn load(path: Option<PathBuf>) -> anyhow::Result<Self> {
        let policy = match &path {
            None => LifecyclePolicy::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the policy file {}", p.display()))?;
                LifecyclePolicy::from_policy_document(&text)
                    .with_context(|| format!("policy file {}", p.display()))?
            }
        };
        Ok(Self::fixed_at(path, policy))
    }

    /// A policy source that starts with `policy` (tests; or a caller that parsed the file).
    pub fn fixed_at(path: Option<PathBuf>, policy: LifecyclePolicy) -> Self {
        Self {
            path,
            current: Arc::new(ArcSwap::from_pointee(policy)),
        }
    }

    /// The policy in force.
    pub fn get(&self) -> Arc<LifecyclePolicy> {
        self.current.load_full()
    }

    /// Rereads the file every [`POLICY_RELOAD`]; bumps `changed` for every new good policy.
    async fn reload_loop(self, changed: watch::Sender<u64>, mut shutdown: watch::Receiver<bool>) {
        let Some(path) = self.path.clone() else {
            return;
        };
        // Empty: the first read is parsed and compared with the policy loaded at start.
        let mut last = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLICY_RELOAD) => {}
                _ = shutdown.changed() => return,
            }
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot reread the policy file; keeping the policy in force");
                    continue;
                }
            };
            if bytes == last {
                continue;
            }
            last = bytes;
            let text = String::from_utf8_lossy(&last);
            match LifecyclePolicy::from_policy_document(&text) {
                Ok(policy) => {
                    if *self.current.load_full() != policy {
                        tracing::info!(path = %path.display(), ?policy, "lifecycle policy reloaded");
                        self.current.store(Arc::new(policy));
                        changed.send_modify(|v| *v = v.wrapping_add(1));
                    }
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "bad policy file; keeping the policy in force");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Leader election
// ---------------------------------------------------------------------------

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's `holderIdentity`.
    pub identity: String,
    /// `leaseDurationSeconds`: others take over a lease not renewed for this long.
    pub lease_duration: Duration,
    /// How often the holder renews (and others try to acquire).
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// The holder stops acting when it has not renewed for this long: 2/3 of the lease
    /// duration, so it has stopped well before anyone else may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.identity.is_empty(),
            "the lease identity must not be empty"
        );
        anyhow::ensure!(
            self.lease_duration >= Duration::from_secs(1),
            "the lease duration must be at least 1s"
        );
        anyhow::ensure!(
            self.renew_every < self.renew_deadline(),
            "the renew period ({:?}) must be shorter than 2/3 of the lease duration ({:?})",
            self.renew_every,
            self.lease_duration
        );
        Ok(())
    }
}

/// Whether this replica may act. Cheap to clone and to ask.
#[derive(Debug, Clone)]
pub struct Leadership {
    inner: Arc<LeadershipInner>,
}

#[derive(Debug)]
struct LeadershipInner {
    /// Leading until this instant (renew time + renew deadline); `None` = not leading.
    valid_until: Mutex<Option<Instant>>,
    changes: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Default for Leadership {
    fn default() -> Self {
        Self::new()
    }
}

impl Leadership {
    /// Not leading.
    pub fn new() -> Self {
        let (changes, _) = watch::channel(false);
        Self {
            inner: Arc::new(LeadershipInner {
                valid_until: Mutex::new(None),
                changes,
            }),
        }
    }

    /// Leadership that never ends (tests, single-replica setups without a Lease).
    pub fn always() -> Self {
        let l = Self::new();
        l.renewed(Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
        l
    }

    /// True while this replica holds the lease and renewed it recently enough.
    pub fn is_leader(&self) -> bool {
        lock(&self.inner.valid_until).is_some_and(|until| Instant::now() < until)
    }

    /// `true` when leadership is gained, `false` when it is lost (may lag `is_leader`
    /// by a renew period when it runs out without a renew).
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.inner.changes.subscribe()
    }

    fn renewed(&self, until: Instant) {
        *lock(&self.inner.valid_until) = Some(until);
        self.inner
            .changes
            .send_if_modified(|v| !std::mem::replace(v, true));
    }

    fn lost(&self) {
        *lock(&self.inner.valid_until) = None;
        self.inner
            .changes
            .send_if_modified(|v| std::mem::replace(v, false));
    }

    fn expire_if_due(&self) {
        if !self.is_leader() {
            self.lost();
        }
    }
}

/// A stream that yields each time leadership is gained.
fn leadership_gained(rx: watch::Receiver<bool>) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    })
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// What this replica last saw of the Lease: its resourceVersion, and when (by the local
/// clock) it last saw it change. A foreign holder's lease is expired when it has not
/// changed for its duration by *our* clock, so clock skew between replicas does not matter.
#[derive(Debug, Default)]
struct Observed {
    resource_version: String,
    changed_at: Option<Instant>,
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Observed,
) -> Result<bool, kube::Error> {
    let now = MicroTime(Timestamp::now());
    let pp = PostParams {
        field_manager: Some(LIFECYCLE_FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(config.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&pp, &lease).await {
            Ok(created) => {
                observed.resource_version = created.resource_version().unwrap_or_default();
                observed.changed_at = Some(Instant::now());
                Ok(true)
            }
            Err(e) if api_code(&e) == Some(409) => Ok(false),
            Err(e) => Err(e),
        };
    };
    let rv = lease.resource_version().unwrap_or_default();
    if observed.changed_at.is_none() || observed.resource_version != rv {
        observed.resource_version = rv;
        observed.changed_at = Some(Instant::now());
    }
    let spec = lease.spec.take().unwrap_or_default();
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
    let mine = holder == Some(config.identity.as_str());
    if let (Some(_), false) = (holder, mine) {
        let held_for = u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(1);
        let unchanged_for = observed
            .changed_at
            .map_or(Duration::ZERO, |at| at.elapsed());
        if unchanged_for < Duration::from_secs(held_for) {
            return Ok(false);
        }
    }
    let mut next = spec.clone();
    next.holder_identity = Some(config.identity.clone());
    next.lease_duration_seconds = Some(config.duration_seconds());
    next.renew_time = Some(now.clone());
    if !mine {
        next.acquire_time = Some(now);
        next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    lease.spec = Some(next);
    // `replace` sends the resourceVersion read above: 409 if anyone wrote in between.
    match api.replace(&config.name, &pp, &lease).await {
        Ok(updated) => {
            observed.resource_version = updated.resource_version().unwrap_or_default();
            observed.changed_at = Some(Instant::now());
            if !mine {
                tracing::info!(lease = %config.name, identity = %config.identity, previous = ?holder, "acquired the lifecycle lease");
            }
            Ok(true)
        }
        Err(e) if api_code(&e) == Some(409) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the lease up (on shutdown) so another replica takes over at once.
async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    let pp = PostParams {
        field_manager: Some(LIFECYCLE_FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    match api.replace(&config.name, &pp, &lease).await {
        Ok(_) => tracing::info!(lease = %config.name, "released the lifecycle lease"),
        Err(e) => {
            tracing::warn!(lease = %config.name, error = %e, "cannot release the lifecycle lease")
        }
    }
}

/// The lease loop: acquires or renews every `renew_every`; `leadership` says whether this
/// replica may act. Losing the lease (someone else holds it, or no renew for the renew
/// deadline) ends leadership at once. On `shutdown`, stops acting, then releases the lease.
pub async fn run_lease(
    client: Client,
    config: LeaseConfig,
    leadership: Leadership,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed = Observed::default();
    let retry = config.renew_every.min(Duration::from_secs(2));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let started = Instant::now();
        let delay = match try_acquire_or_renew(&api, &config, &mut observed).await {
            Ok(true) => {
                leadership.renewed(started + config.renew_deadline());
                config.renew_every
            }
            Ok(false) => {
                if leadership.is_leader() {
                    tracing::warn!(lease = %config.name, "lost the lifecycle lease; no longer acting");
                }
                leadership.lost();
                config.renew_every
            }
            Err(e) => {
                tracing::warn!(lease = %config.name, error = %e, "cannot acquire or renew the lifecycle lease");
                leadership.expire_if_due();
                retry
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    // Stop acting first, then give the lease up (if this replica still holds it).
    leadership.lost();
    release(&api, &config).await;
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// Buckets of the create-to-Ready histogram, in seconds.
const READY_BUCKETS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0,
];

/// The controller's Prometheus metrics. Counters and the histogram are only moved by the
/// leader, and the per-state gauge is only reported by the leader (zeros elsewhere), so
/// `sum` over replicas is right.
#[derive(Debug)]
pub struct LifecycleMetrics {
    warnings: Counter,
    hibernations: Counter,
    expiries: Counter,
    ready_seconds: Histogram,
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
        registry.register_collector(Box::new(metrics.view.clone()));
        metrics
    }

    fn attach(&self, store: Store<StatefulSet>, leadership: Leadership) {
        // Set once per process; a second controller in the same process keeps the first view.
        let _ = self.view.store.set(store);
        let _ = self.view.leadership.set(leadership);
    }
}

// ---------------------------------------------------------------------------
// CPU usage (metrics.k8s.io)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum MetricsApi {
    Unknown,
    Served,
    Absent(Instant),
}

#[derive(Debug)]
struct CpuProbe {
    state: tokio::sync::Mutex<MetricsApi>,
    resource: ApiResource,
}

impl CpuProbe {
    fn new() -> Self {
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
    async fn usage(&self, client: &Client, namespace: &str, workspace: &str) -> Option<u64> {
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
                    .and_then(lc::cpu_millicores);
                total = total.saturating_add(cpu.unwrap_or(0));
            }
        }
        Some(total)
    }
}

// ---------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------

/// Controller settings.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// Leader election.
    pub lease: LeaseConfig,
    /// Only this namespace's workspaces; `None` = all namespaces.
    pub namespace: Option<String>,
}

struct Ctx {
    client: Client,
    policy: PolicySource,
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
    config: LifecycleConfig,
    policy: PolicySource,
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
    let reload_task = tokio::spawn(policy.clone().reload_loop(policy_tx, stop_rx.clone()));

    let api: Api<StatefulSet> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(api, watcher::Config::default().labels(WORKSPACE_LABEL))
        .with_config(ControllerConfig::default().concurrency(8));
    let store = controller.store();
    metrics.attach(store.clone(), leadership.clone());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some(config.lease.identity.clone()),
        },
    );
    let ctx = Arc::new(Ctx {
        client,
        policy,
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
    reload_task.abort();
    Ok(())
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
            let live: std::collections::HashSet<String> = self
                .store
                .state()
                .iter()
                .filter_map(|s| s.metadata.uid.clone())
                .collect();
            seen.retain(|uid, _| live.contains(uid));
        }
    }

    async fn publish(
        &self,
        sts: &StatefulSet,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &sts.object_ref(&())).await {
            tracing::warn!(statefulset = sts.name_any(), %reason, error = %e, "cannot publish event");
        }
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
    let policy = ctx.policy.get();
    let mut state = WorkspaceState::from_statefulset(&sts);
    for problem in &state.problems {
        tracing::warn!(%namespace, statefulset = %name, "{problem}");
    }
    let mut decision = lc::decide(now, &state, &policy);
    if matches!(decision, Decision::Warn { .. } | Decision::Hibernate)
        && policy.cpu_active_millicores.is_some()
    {
        if let Some(used) = ctx
            .cpu
            .usage(&ctx.client, &namespace, &state.workspace)
            .await
        {
            state.cpu_millicores = Some(used);
            decision = lc::decide(now, &state, &policy);
        }
    }
    tracing::debug!(%namespace, statefulset = %name, ?decision, "lifecycle decision");
    if let Decision::Nothing { next_check } = decision {
        return Ok(requeue(next_check));
    }
    // Last look before writing: a replica that lost the lease must not act.
    if !ctx.leadership.is_leader() {
        return Ok(Action::await_change());
    }
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let workspace = state.workspace.as_str();
    match &decision {
        Decision::Nothing { .. } => Ok(Action::await_change()),
        Decision::Annotate { .. } | Decision::Warn { .. } | Decision::Hibernate => {
            let Some(patch) = decision.patch(&sts, now) else {
                return Ok(Action::await_change());
            };
            let result = api
                .patch(&name, &patch_params(), &Patch::Merge(&patch))
                .await
                .map(|_| ());
            if let Some(action) = write_result(result)? {
                return Ok(action);
            }
            match &decision {
                Decision::Warn { stop_at } => {
                    let stop_at = *stop_at;
                    ctx.metrics.warnings.inc();
                    let idle_since = state
                        .last_activity()
                        .map_or_else(|| "its creation".to_string(), lc::format_time);
                    tracing::info!(%namespace, %workspace, stop_at = %lc::format_time(stop_at), "idle warning issued");
                    ctx.publish(
                        &sts,
                        EventType::Warning,
                        lc::REASON_IDLE_WARNING,
                        "Warn",
                        format!(
                            "Workspace {workspace} has been idle since {idle_since}; it will be stopped at {} unless it is used (kubectl devenv exec {workspace}). Annotate {}=0 to never stop it.",
                            lc::format_time(stop_at),
                            lc::IDLE_TIMEOUT,
                        ),
                    )
                    .await;
                    Ok(requeue(Some(
                        Duration::try_from(stop_at.duration_since(now)).unwrap_or_default(),
                    )))
                }
                Decision::Hibernate => {
                    ctx.metrics.hibernations.inc();
                    let timeout = state
                        .effective_idle_timeout(&policy)
                        .map_or_else(|| "-".to_string(), lc::format_duration);
                    tracing::info!(%namespace, %workspace, "idle workspace hibernated");
                    ctx.publish(
                        &sts,
                        EventType::Normal,
                        lc::REASON_HIBERNATED,
                        "Hibernate",
                        format!(
                            "Workspace {workspace} was idle for longer than {timeout} and has been stopped; its volumes are kept. Start it again with: kubectl devenv start {workspace}"
                        ),
                    )
                    .await;
                    Ok(requeue(None))
                }
                _ => Ok(requeue(Some(Duration::from_secs(60)))),
            }
        }
        Decision::Expire { purge } => {
            let dp = DeleteParams::background().preconditions(Preconditions {
                uid: sts.metadata.uid.clone(),
                resource_version: sts.metadata.resource_version.clone(),
            });
            let result = api.delete(&name, &dp).await.map(|_| ());
            if let Some(action) = write_result(result)? {
                return Ok(action);
            }
            ctx.metrics.expiries.inc();
            let ttl = state
                .effective_ttl(&policy)
                .map_or_else(|| "-".to_string(), lc::format_duration);
            let claims = if *purge {
                let deleted = purge_claims(&ctx.client, &namespace, &sts, workspace).await;
                format!("its volume claims were deleted ({})", deleted.join(", "))
            } else {
                "its volume claims are kept".to_string()
            };
            tracing::info!(%namespace, %workspace, purge = *purge, "stopped workspace expired");
            ctx.publish(
                &sts,
                EventType::Normal,
                lc::REASON_EXPIRED,
                "Delete",
                format!("Workspace {workspace} was stopped for longer than {ttl} and has been deleted; {claims}."),
            )
            .await;
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
    for claim in lc::workspace_claims(sts) {
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
    fn renew_deadline_is_two_thirds() {
        let c = LeaseConfig {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        assert_eq!(c.renew_deadline(), Duration::from_secs(10));
        assert!(c.check().is_ok());
        let bad = LeaseConfig {
            renew_every: Duration::from_secs(10),
            ..c.clone()
        };
        assert!(bad.check().is_err());
        let nobody = LeaseConfig {
            identity: String::new(),
            ..c
        };
        assert!(nobody.check().is_err());
    }

    #[test]
    fn leadership_runs_out_without_renewal() {
        let l = Leadership::new();
        let rx = l.changes();
        assert!(!l.is_leader());
        l.renewed(Instant::now() + Duration::from_secs(60));
        assert!(l.is_leader());
        assert!(*rx.borrow());
        l.renewed(Instant::now());
        assert!(
            !l.is_leader(),
            "validity is checked against the clock, not a flag"
        );
        l.expire_if_due();
        assert!(!*rx.borrow());
        assert!(Leadership::always().is_leader());
    }

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
    fn duration_args() {
        assert_eq!(duration_arg("15s"), Ok(Duration::from_secs(15)));
        assert!(duration_arg("0").is_err());
        assert!(duration_arg("fast").unwrap_err().contains("\"fast\""));
    }

    #[test]
    fn default_identity_is_unique_per_process() {
        assert!(default_identity().ends_with(&format!("-{}", std::process::id())));
    }

    #[test]
    fn metrics_render() {
        let mut registry = Registry::default();
        let m = LifecycleMetrics::register(&mut registry);
        m.hibernations.inc();
        m.ready_seconds.observe(3.0);
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
            out.contains("devenv_lifecycle_workspace_ready_seconds_count 1"),
            "{out}"
        );
    }

    #[test]
    fn policy_source_reads_the_lifecycle_section() {
        let dir = std::env::temp_dir().join(format!("devenv-lifecycle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.yaml");
        std::fs::write(&path, "lifecycle:\n  idleTimeout: 30m\n").unwrap();
        let source = PolicySource::load(Some(path.clone())).unwrap();
        assert_eq!(source.get().idle_timeout, Some(Duration::from_secs(1800)));
        std::fs::write(&path, "lifecycle:\n  idleTimeout: soon\n").unwrap();
        let err = PolicySource::load(Some(path)).unwrap_err();
        assert!(format!("{err:#}").contains("\"soon\""), "{err:#}");
        assert_eq!(
            PolicySource::load(None).unwrap().get().idle_timeout,
            Some(lc::DEFAULT_IDLE_TIMEOUT)
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
