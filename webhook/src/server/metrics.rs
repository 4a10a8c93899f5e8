//! Prometheus metrics. Every series is created once at startup and the hot path only
//! touches atomics: no registry lookup, no lock per request.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The admission endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /mutate`
    Mutate,
    /// `POST /validate`
    Validate,
}

impl Endpoint {
    const ALL: [Endpoint; 2] = [Endpoint::Mutate, Endpoint::Validate];

    /// The `endpoint` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How an admission request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted unchanged.
    Allowed,
    /// Refused by policy.
    Denied,
    /// Admitted with a patch.
    Patched,
    /// The request could not be used (bad body, not an AdmissionReview, timeout, too large).
    Error,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Allowed,
        Outcome::Denied,
        Outcome::Patched,
        Outcome::Error,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Patched => "patched",
            Outcome::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Upper bounds, in seconds, of the latency buckets: 100µs .. 1s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A histogram made of atomics (the stock one takes a mutex on every observation).
#[derive(Clone, Debug, Default)]
pub struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug, Default)]
struct HistogramInner {
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let idx = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if let Some(b) = self.inner.buckets.get(idx) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.inner.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        let mut count = 0;
        for (i, b) in self.inner.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            let le = LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((le, n));
        }
        // Sum in seconds; count from the buckets so that both agree in one scrape.
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// All of the webhook's metrics.
pub struct Metrics {
    registry: Arc<Registry>,
    requests: [[Counter; 4]; 2],
    latency: [AtomicHistogram; 2],
    policy_reloads: [Counter; 2],
    cert_reloads: [Counter; 2],
    claims: [Counter; 2],
    open_connections: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Result of a reload or of creating a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// It worked.
    Ok,
    /// It failed (and the previous value was kept).
    Error,
}

impl ReloadResult {
    fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Error => "error",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

fn result_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    ok: &'static str,
    err: &'static str,
) -> [Counter; 2] {
    let family = Family::<ResultLabels, Counter>::default();
    registry.register(name, help, family.clone());
    let ok = family.get_or_create(&ResultLabels { result: ok }).clone();
    let err = family.get_or_create(&ResultLabels { result: err }).clone();
    [ok, err]
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every series.
    pub fn new() -> Self {
        let mut registry = Registry::default();

        let requests_family = Family::<RequestLabels, Counter>::default();
        registry.register(
            "devenv_webhook_requests",
            "Admission requests by endpoint and outcome",
            requests_family.clone(),
        );
        let requests = Endpoint::ALL.map(|e| {
            Outcome::ALL.map(|o| {
                requests_family
                    .get_or_create(&RequestLabels {
                        endpoint: e.as_str(),
                        outcome: o.as_str(),
                    })
                    .clone()
            })
        });

        let latency_family = Family::<EndpointLabels, AtomicHistogram>::default();
        registry.register(
            "devenv_webhook_request_duration_seconds",
            "Time from the request head to the response, by endpoint",
            latency_family.clone(),
        );
        let latency = Endpoint::ALL.map(|e| {
            latency_family
                .get_or_create(&EndpointLabels {
                    endpoint: e.as_str(),
                })
                .clone()
        });

        let policy_reloads = result_family(
            &mut registry,
            "devenv_webhook_policy_reloads",
            "Policy file reloads; on error the last good policy stays in force",
            ReloadResult::Ok.as_str(),
            ReloadResult::Error.as_str(),
        );
        let cert_reloads = result_family(
            &mut registry,
            "devenv_webhook_certificate_reloads",
            "Serving certificate reloads; on error the previous certificate stays in use",
            ReloadResult::Ok.as_str(),
            ReloadResult::Error.as_str(),
        );
        let claims = result_family(
            &mut registry,
            "devenv_webhook_claims_ensured",
            "PersistentVolumeClaims of bare workspace pods ensured (created or already there)",
            ReloadResult::Ok.as_str(),
            ReloadResult::Error.as_str(),
        );

        let open_connections = Gauge::default();
        registry.register(
            "devenv_webhook_open_connections",
            "TLS connections being served",
            open_connections.clone(),
        );

        Metrics {
            registry: Arc::new(registry),
            requests,
            latency,
            policy_reloads,
            cert_reloads,
            claims,
            open_connections,
        }
    }

    /// Counts one admission request and its latency.
    pub fn record(&self, endpoint: Endpoint, outcome: Outcome, elapsed: Duration) {
        if let Some(c) = self
            .requests
            .get(endpoint.index())
            .and_then(|row| row.get(outcome.index()))
        {
            c.inc();
        }
        if let Some(h) = self.latency.get(endpoint.index()) {
            h.observe(elapsed);
        }
    }

    /// How many requests ended so at this endpoint.
    pub fn requests(&self, endpoint: Endpoint, outcome: Outcome) -> u64 {
        self.requests
            .get(endpoint.index())
            .and_then(|row| row.get(outcome.index()))
            .map_or(0, Counter::get)
    }

    /// Counts a policy reload.
    pub fn policy_reload(&self, result: ReloadResult) {
        if let Some(c) = self.policy_reloads.get(result.index()) {
            c.inc();
        }
    }

    /// Policy reloads so far with this result.
    pub fn policy_reloads(&self, result: ReloadResult) -> u64 {
        self.policy_reloads
            .get(result.index())
            .map_or(0, Counter::get)
    }

    /// Counts a certificate reload.
    pub fn cert_reload(&self, result: ReloadResult) {
        if let Some(c) = self.cert_reloads.get(result.index()) {
            c.inc();
        }
    }

    /// Certificate reloads so far with this result.
    pub fn cert_reloads(&self, result: ReloadResult) -> u64 {
        self.cert_reloads
            .get(result.index())
            .map_or(0, Counter::get)
    }

    /// Counts a claim ensured (or not).
    pub fn claim(&self, result: ReloadResult) {
        if let Some(c) = self.claims.get(result.index()) {
            c.inc();
        }
    }

    /// A connection opened; the guard closes it.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.open_connections.inc();
        ConnectionGuard(self.open_connections.clone())
    }

    /// Renders every metric in the OpenMetrics text format
    /// ([`crate::metrics_http::CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        crate::metrics_http::encode(&self.registry)
    }

    /// The registry holding every series, for [`crate::metrics_http::serve`].
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }
}

/// Decrements the open-connection gauge when dropped.
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_encodes() {
        let m = Metrics::new();
        m.record(
            Endpoint::Mutate,
            Outcome::Patched,
            Duration::from_micros(300),
        );
        m.record(Endpoint::Mutate, Outcome::Patched, Duration::from_millis(3));
        m.record(Endpoint::Validate, Outcome::Denied, Duration::from_secs(10));
        assert_eq!(m.requests(Endpoint::Mutate, Outcome::Patched), 2);
        assert_eq!(m.requests(Endpoint::Validate, Outcome::Denied), 1);
        assert_eq!(m.requests(Endpoint::Validate, Outcome::Allowed), 0);
        let text = m.encode();
        assert!(text
            .contains("devenv_webhook_requests_total{endpoint=\"mutate\",outcome=\"patched\"} 2"));
        assert!(text.contains(
            "devenv_webhook_request_duration_seconds_bucket{le=\"0.0005\",endpoint=\"mutate\"} 1"
        ) || text.contains(
            "devenv_webhook_request_duration_seconds_bucket{endpoint=\"mutate\",le=\"0.0005\"} 1"
        ), "{text}");
        assert!(
            text.contains("devenv_webhook_request_duration_seconds_count{endpoint=\"validate\"} 1")
        );
        assert!(text.contains("le=\"+Inf\""));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn connection_gauge_follows_guards() {
        let m = Metrics::new();
        let a = m.connection_opened();
        let b = m.connection_opened();
        drop(a);
        assert!(m.encode().contains("devenv_webhook_open_connections 1"));
        drop(b);
        assert!(m.encode().contains("devenv_webhook_open_connections 0"));
    }
}
