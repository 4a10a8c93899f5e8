//! Leader election through a `coordination.k8s.io/v1` Lease: every replica watches, only
//! the holder acts, and it checks that it still holds the lease (by its own clock, with a
//! renew deadline shorter than the lease duration) right before every write.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devenv_shared::model::keys::LIFECYCLE_FIELD_MANAGER;
use futures::Stream;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::{api_code, lock};

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

    /// Refuses settings under which two replicas could act at once.
    pub fn check(&self) -> anyhow::Result<()> {
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

    pub(super) fn lost(&self) {
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
pub(super) fn leadership_gained(
    rx: watch::Receiver<bool>,
) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    })
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
    fn default_identity_is_unique_per_process() {
        assert!(default_identity().ends_with(&format!("-{}", std::process::id())));
    }
}
