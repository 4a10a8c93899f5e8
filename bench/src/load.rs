//! The load generator proper: N keep-alive HTTPS connections, closed or open loop.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use hdrhistogram::Histogram;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::fixture::{Fixture, RequestTemplate, UID_LEN};
use crate::http::{Conn, HttpError};
use crate::{rss, tls};

/// Where the webhook listens: `https://HOST:PORT[/PREFIX]`.
#[derive(Clone, Debug)]
pub struct Target {
    /// Resolved socket address.
    pub addr: SocketAddr,
    /// Name (DNS name or IP address) the certificate is checked against.
    pub server_name: ServerName<'static>,
    /// `Host` header value.
    pub authority: String,
    /// Path prefix, without trailing slash (usually empty).
    pub base_path: String,
}

impl Target {
    /// Parses an `https://` URL.
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("{url:?}: only https:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = if let Some(after) = authority.strip_prefix('[') {
            let (h, p) = after
                .split_once(']')
                .ok_or_else(|| anyhow!("{url:?}: unterminated IPv6 address"))?;
            (h, p.strip_prefix(':').unwrap_or("443"))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => (authority, "443"),
            }
        };
        if host.is_empty() {
            bail!("{url:?}: no host");
        }
        let port: u16 = port
            .parse()
            .with_context(|| format!("{url:?}: bad port {port:?}"))?;
        let addr = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to no address"))?;
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| anyhow!("{host:?} is not a valid TLS server name: {e}"))?;
        Ok(Self {
            addr,
            server_name,
            authority: authority.to_owned(),
            base_path: path.to_owned(),
        })
    }

    /// The request path of an endpoint (`mutate`, `validate`).
    pub fn path(&self, endpoint: &str) -> String {
        format!("{}/{}", self.base_path, endpoint.trim_start_matches('/'))
    }
}

/// What every response must say, beyond echoing the uid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Any well-formed AdmissionReview response.
    #[default]
    Any,
    /// `allowed: true`.
    Allowed,
    /// `allowed: false`.
    Denied,
    /// `allowed: true` with a JSONPatch.
    Patched,
    /// `allowed: true` without a patch.
    Unpatched,
}

/// A custom check of every successful response (e.g. "the patch sets the old tier's limits").
pub type Check = Arc<dyn Fn(&ReviewView<'_>) -> Result<(), String> + Send + Sync>;

/// Everything a load run needs.
#[derive(Clone)]
pub struct LoadConfig {
    /// The webhook.
    pub target: Target,
    /// TLS client settings (trusted CAs).
    pub tls: Arc<ClientConfig>,
    /// Request path, e.g. `/mutate`.
    pub path: String,
    /// The AdmissionReview sent.
    pub fixture: Fixture,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Measured time, after `warmup`.
    pub duration: Duration,
    /// Time at the start whose requests are sent but not measured (errors still count).
    pub warmup: Duration,
    /// Open loop at this many requests per second in total; closed loop (saturation) when `None`.
    pub rate: Option<f64>,
    /// Reconnect after this many requests on a connection (new TLS handshakes under load).
    pub requests_per_connection: Option<u64>,
    /// A request without a complete response after this long is an error.
    pub request_timeout: Duration,
    /// Expected verdict.
    pub expect: Expect,
    /// Extra check of every response.
    pub check: Option<Check>,
    /// Sample this process's memory (the webhook) during the run.
    pub pid: Option<u32>,
}

impl LoadConfig {
    /// Defaults: 8 connections, 10 s, 1 s warm-up, closed loop, 10 s request timeout.
    pub fn new(target: Target, tls: Arc<ClientConfig>, endpoint: &str, fixture: Fixture) -> Self {
        Self {
            path: target.path(endpoint),
            target,
            tls,
            fixture,
            connections: 8,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            rate: None,
            requests_per_connection: None,
            request_timeout: Duration::from_secs(10),
            expect: Expect::Any,
            check: None,
            pid: None,
        }
    }
}

/// Latency percentiles, microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

/// The outcome of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Fixture name.
    pub fixture: String,
    /// Request path.
    pub path: String,
    /// `closed-loop` or `open-loop`.
    pub mode: &'static str,
    /// Connections.
    pub connections: usize,
    /// Requested rate (open loop).
    pub target_rate: Option<f64>,
    /// Measured window, seconds (excludes warm-up).
    pub duration_s: f64,
    /// Successful requests completed in the measured window.
    pub ok: u64,
    /// Successful requests per second in the measured window.
    pub requests_per_second: f64,
    /// Latency of the successful requests in the measured window.
    pub latency: Latency,
    /// Failed requests over the whole run, warm-up included (not counting the two below).
    pub errors: u64,
    /// Failed requests by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// Requests whose connection was closed/reset before any response byte.
    pub closed_before_response: u64,
    /// Connection attempts refused.
    pub connect_refused: u64,
    /// TLS connections established.
    pub connections_opened: u64,
    /// Open loop: sends more than 1 ms behind schedule (the connection was still busy).
    pub late_sends: u64,
    /// Seconds from start to the last successful response.
    pub last_ok_s: Option<f64>,
    /// Seconds from start to the first refused connection.
    pub first_refused_s: Option<f64>,
    /// Peak resident memory of `pid` (max of VmHWM and sampled VmRSS), KiB.
    pub peak_rss_kib: Option<u64>,
    /// CPU time (user + system) the webhook (`pid`) used in the measured window, seconds.
    pub webhook_cpu_s: Option<f64>,
    /// Webhook CPU time per successful request in the window, microseconds: the
    /// figure that load on the machine disturbs least.
    pub webhook_cpu_us_per_request: Option<f64>,
    /// CPU time the load generator itself used in the measured window, seconds.
    pub loadgen_cpu_s: Option<f64>,
    /// Machine load average (1 min) at the end of the run.
    pub loadavg_1m: Option<f64>,
    /// All latencies, nanoseconds.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

impl Report {
    /// Every failure: errors, closed-before-response and refused connections.
    pub fn total_failures(&self) -> u64 {
        self.errors + self.closed_before_response + self.connect_refused
    }

    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} {} {} conns={}{}: {:.0} req/s over {:.1}s, ok={}, errors={} closed-before-response={} refused={}\n\
             latency p50={:.0}us p90={:.0}us p99={:.0}us p99.9={:.0}us max={:.0}us\n\
             connections opened={} late sends={}",
            self.path,
            self.fixture,
            self.mode,
            self.connections,
            self.target_rate.map(|r| format!(" rate={r}")).unwrap_or_default(),
            self.requests_per_second,
            self.duration_s,
            self.ok,
            self.errors,
            self.closed_before_response,
            self.connect_refused,
            self.latency.p50_us,
            self.latency.p90_us,
            self.latency.p99_us,
            self.latency.p999_us,
            self.latency.max_us,
            self.connections_opened,
            self.late_sends,
        );
        if let Some(kib) = self.peak_rss_kib {
            s.push_str(&format!(
                "\nwebhook peak RSS {:.1} MiB",
                kib as f64 / 1024.0
            ));
        }
        if let Some(c) = self.webhook_cpu_s {
            s.push_str(&format!(
                "\nwebhook CPU {c:.2}s = {:.1}us/request",
                self.webhook_cpu_us_per_request.unwrap_or_default()
            ));
        }
        if let Some(c) = self.loadgen_cpu_s {
            s.push_str(&format!(
                "\nload generator CPU {c:.2}s = {:.1}us/request",
                if self.ok > 0 {
                    c * 1e6 / self.ok as f64
                } else {
                    0.0
                }
            ));
        }
        if let Some(l) = self.loadavg_1m {
            s.push_str(&format!("\nmachine load average (1 min) {l:.2}"));
        }
        for (k, n) in &self.error_kinds {
            s.push_str(&format!("\n  error {k}: {n}"));
        }
        for e in &self.error_samples {
            s.push_str(&format!("\n  e.g. {e}"));
        }
        s
    }
}

/// The parts of an AdmissionReview response the load generator looks at.
#[derive(Debug, Deserialize)]
pub struct ReviewView<'a> {
    /// Echo of the request uid.
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    /// The verdict.
    pub allowed: bool,
    /// Base64 JSONPatch.
    #[serde(borrow, default)]
    pub patch: Option<Cow<'a, str>>,
    /// `JSONPatch` when there is a patch.
    #[serde(rename = "patchType", borrow, default)]
    pub patch_type: Option<Cow<'a, str>>,
    /// Reason of a denial.
    #[serde(borrow, default)]
    pub status: Option<StatusView<'a>>,
}

/// `response.status`.
#[derive(Debug, Deserialize)]
pub struct StatusView<'a> {
    /// Message shown to the user.
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
    /// HTTP-like code.
    #[serde(default)]
    pub code: Option<u16>,
}

impl ReviewView<'_> {
    /// The decoded JSONPatch, if any.
    pub fn decode_patch(&self) -> Result<Option<serde_json::Value>, String> {
        let Some(p) = &self.patch else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p.as_bytes())
            .map_err(|e| format!("patch is not base64: {e}"))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("patch is not JSON: {e}"))
    }
}

#[derive(Deserialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response: Option<ReviewView<'a>>,
}

/// Checks a response body: an `admission.k8s.io/v1` AdmissionReview whose
/// response echoes `uid` and meets `expect` and `check`. Errors are `(kind, message)`.
pub fn check_response(
    status: u16,
    body: &[u8],
    uid: &[u8],
    expect: Expect,
    check: Option<&Check>,
) -> Result<(), (&'static str, String)> {
    if status != 200 {
        return Err((
            "status",
            format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        ));
    }
    let review: ReviewOut<'_> =
        serde_json::from_slice(body).map_err(|e| ("unparsable", format!("response body: {e}")))?;
    if review.api_version.as_deref() != Some("admission.k8s.io/v1")
        || review.kind.as_deref() != Some("AdmissionReview")
    {
        return Err((
            "unparsable",
            format!(
                "not an admission.k8s.io/v1 AdmissionReview: apiVersion={:?} kind={:?}",
                review.api_version, review.kind
            ),
        ));
    }
    let response = review
        .response
        .ok_or_else(|| ("unparsable", "AdmissionReview without response".to_owned()))?;
    if response.uid.as_bytes() != uid {
        return Err((
            "wrong-uid",
            format!(
                "sent uid {} got {}",
                String::from_utf8_lossy(uid),
                response.uid
            ),
        ));
    }
    let has_patch = response.patch.as_deref().is_some_and(|p| !p.is_empty());
    let verdict_ok = match expect {
        Expect::Any => true,
        Expect::Allowed => response.allowed,
        Expect::Denied => !response.allowed,
        Expect::Patched => response.allowed && has_patch,
        Expect::Unpatched => response.allowed && !has_patch,
    };
    if !verdict_ok {
        return Err((
            "unexpected-verdict",
            format!(
                "expected {expect:?}, got allowed={} patch={} message={:?}",
                response.allowed,
                has_patch,
                response.status.as_ref().and_then(|s| s.message.as_deref())
            ),
        ));
    }
    if has_patch && response.patch_type.as_deref() != Some("JSONPatch") {
        return Err((
            "unexpected-verdict",
            format!("patch with patchType {:?}", response.patch_type),
        ));
    }
    if let Some(check) = check {
        check(&response).map_err(|m| ("check", m))?;
    }
    Ok(())
}

const MAX_SAMPLES: usize = 8;

struct Stats {
    hist: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<&'static str, u64>,
    samples: Vec<String>,
    closed: u64,
    refused: u64,
    opened: u64,
    late: u64,
    last_ok: Option<Instant>,
    first_refused: Option<Instant>,
}

impl Stats {
    fn new() -> Result<Self> {
        Ok(Self {
            // 1 ns .. 100 s, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3)?,
            ok: 0,
            errors: BTreeMap::new(),
            samples: Vec::new(),
            closed: 0,
            refused: 0,
            opened: 0,
            late: 0,
            last_ok: None,
            first_refused: None,
        })
    }

    fn error(&mut self, kind: &'static str, msg: String) {
        *self.errors.entry(kind).or_default() += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(format!("{kind}: {msg}"));
        }
    }

    fn merge(&mut self, other: Stats) -> Result<()> {
        self.hist
            .add(&other.hist)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        self.ok += other.ok;
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        for s in other.samples {
            if self.samples.len() < MAX_SAMPLES {
                self.samples.push(s);
            }
        }
        self.closed += other.closed;
        self.refused += other.refused;
        self.opened += other.opened;
        self.late += other.late;
        self.last_ok = self.last_ok.max(other.last_ok);
        self.first_refused = match (self.first_refused, other.first_refused) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }
}

struct Shared {
    cfg: LoadConfig,
    template: RequestTemplate,
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

type TlsConn = Conn<TlsStream<TcpStream>>;

async fn worker(id: u32, shared: Arc<Shared>) -> Result<Stats> {
    let cfg = &shared.cfg;
    let mut stats = Stats::new()?;
    let mut template = shared.template.clone();
    let mut body = Vec::with_capacity(16 * 1024);
    let mut conn: Option<TlsConn> = None;
    let interval = cfg
        .rate
        .map(|r| Duration::from_secs_f64(cfg.connections as f64 / r.max(1e-9)));
    // Spread the connections' schedules evenly over one interval.
    let mut next = shared.start
        + interval
            .map(|iv| iv.mul_f64(f64::from(id) / cfg.connections as f64))
            .unwrap_or_default();
    let mut prev_done = shared.start;
    let mut seq: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= shared.end {
            break;
        }
        let begin = match interval {
            Some(iv) => {
                let intended = next;
                next += iv;
                if intended >= shared.end {
                    break;
                }
                if prev_done > intended {
                    // Still busy with the previous request when this one was
                    // due: measure from when it was due (no coordinated omission).
                    if prev_done - intended > Duration::from_millis(1) {
                        stats.late += 1;
                    }
                    intended
                } else {
                    // Idle: wait for the slot; timer slack is the client's, not
                    // the server's, so measure from the actual send.
                    tokio::time::sleep_until(intended.into()).await;
                    Instant::now()
                }
            }
            None => now,
        };
        if conn.is_none() {
            match tls::connect(
                cfg.target.addr,
                &cfg.target.server_name,
                &cfg.tls,
                cfg.request_timeout,
            )
            .await
            {
                Ok(s) => {
                    stats.opened += 1;
                    conn = Some(Conn::new(s));
                }
                Err(e) => {
                    let at = Instant::now();
                    prev_done = at;
                    if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        stats.refused += 1;
                        stats.first_refused.get_or_insert(at);
                    } else {
                        stats.error("connect", e.to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let uid = template.set_uid(id, seq);
        seq += 1;
        let result =
            tokio::time::timeout(cfg.request_timeout, c.exchange(template.bytes(), &mut body))
                .await;
        let done = Instant::now();
        prev_done = done;
        let reconnect = match result {
            Err(_) => {
                stats.error(
                    "timeout",
                    format!("no response within {:?}", cfg.request_timeout),
                );
                true
            }
            Ok(Err(HttpError::ClosedBeforeResponse(m))) => {
                stats.closed += 1;
                if stats.samples.len() < MAX_SAMPLES {
                    stats.samples.push(format!("closed-before-response: {m}"));
                }
                true
            }
            Ok(Err(e)) => {
                let kind = match e {
                    HttpError::Truncated(_) => "truncated",
                    HttpError::Malformed(_) => "malformed",
                    HttpError::Write(_) => "write",
                    HttpError::ClosedBeforeResponse(_) => "closed-before-response",
                };
                stats.error(kind, e.to_string());
                true
            }
            Ok(Ok(head)) => {
                match check_response(
                    head.status,
                    &body,
                    &uid[..UID_LEN],
                    cfg.expect,
                    cfg.check.as_ref(),
                ) {
                    Ok(()) => {
                        stats.last_ok = Some(done);
                        if done >= shared.measure_from {
                            stats.ok += 1;
                            let ns = u64::try_from((done - begin).as_nanos()).unwrap_or(u64::MAX);
                            stats.hist.saturating_record(ns.max(1));
                        }
                    }
                    Err((kind, msg)) => stats.error(kind, msg),
                }
                head.close || cfg.requests_per_connection.is_some_and(|n| c.requests >= n)
            }
        };
        if reconnect {
            conn = None;
        }
    }
    Ok(stats)
}

fn loadavg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the load described by `cfg` (inside a Tokio runtime) and reports.
pub async fn run(cfg: LoadConfig) -> Result<Report> {
    if cfg.connections == 0 {
        bail!("at least one connection is needed");
    }
    if cfg.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("the rate must be a positive number");
    }
    let connections = u32::try_from(cfg.connections).context("too many connections")?;
    let template = RequestTemplate::new(&cfg.fixture, &cfg.target.authority, &cfg.path);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        template,
        start,
        measure_from: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
        cfg,
    });

    let sampler = shared.cfg.pid.map(|pid| {
        let end = shared.end;
        tokio::spawn(async move {
            let mut peak = 0u64;
            while let Some(m) = rss::read(pid) {
                peak = peak.max(m.vm_rss_kib).max(m.vm_hwm_kib);
                if Instant::now() >= end {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        })
    });

    // CPU time of the webhook and of this process over the measured window.
    let cpu_sampler = {
        let (pid, from, end) = (shared.cfg.pid, shared.measure_from, shared.end);
        tokio::spawn(async move {
            tokio::time::sleep_until(from.into()).await;
            let before = (pid.and_then(rss::cpu_time), rss::own_cpu_time());
            tokio::time::sleep_until(end.into()).await;
            let after = (pid.and_then(rss::cpu_time), rss::own_cpu_time());
            let delta = |a: Option<Duration>, b: Option<Duration>| {
                a.zip(b).map(|(a, b)| b.saturating_sub(a).as_secs_f64())
            };
            (delta(before.0, after.0), delta(before.1, after.1))
        })
    };

    let workers: Vec<_> = (0..connections)
        .map(|id| tokio::spawn(worker(id, Arc::clone(&shared))))
        .collect();
    let mut total = Stats::new()?;
    for w in workers {
        let stats = w.await.context("load worker panicked")??;
        total.merge(stats)?;
    }
    let peak_rss_kib = match sampler {
        Some(s) => Some(s.await.context("memory sampler panicked")?).filter(|&k| k > 0),
        None => None,
    };
    let (webhook_cpu_s, loadgen_cpu_s) = cpu_sampler.await.context("CPU sampler panicked")?;
    let cfg = &shared.cfg;
    let window = cfg.duration.as_secs_f64();
    let h = &total.hist;
    let us = |ns: u64| ns as f64 / 1000.0;
    let latency = if h.is_empty() {
        Latency::default()
    } else {
        Latency {
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    };
    let since_start = |t: Option<Instant>| t.map(|t| (t - shared.start).as_secs_f64());
    Ok(Report {
        fixture: cfg.fixture.name.clone(),
        path: cfg.path.clone(),
        mode: if cfg.rate.is_some() {
            "open-loop"
        } else {
            "closed-loop"
        },
        connections: cfg.connections,
        target_rate: cfg.rate,
        duration_s: window,
        ok: total.ok,
        requests_per_second: if window > 0.0 {
            total.ok as f64 / window
        } else {
            0.0
        },
        latency,
        errors: total.errors.values().sum(),
        error_kinds: total
            .errors
            .iter()
            .map(|(k, n)| ((*k).to_owned(), *n))
            .collect(),
        error_samples: total.samples,
        closed_before_response: total.closed,
        connect_refused: total.refused,
        connections_opened: total.opened,
        late_sends: total.late,
        last_ok_s: since_start(total.last_ok),
        first_refused_s: since_start(total.first_refused),
        peak_rss_kib,
        webhook_cpu_s,
        webhook_cpu_us_per_request: webhook_cpu_s
            .filter(|_| total.ok > 0)
            .map(|s| s * 1e6 / total.ok as f64),
        loadgen_cpu_s,
        loadavg_1m: loadavg_1m(),
        histogram: total.hist,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_targets() {
        let t = Target::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(t.path("mutate"), "/mutate");
        assert_eq!(t.authority, "127.0.0.1:8443");
        let t = Target::parse("https://[::1]:9443/hooks/").unwrap();
        assert_eq!(t.addr, "[::1]:9443".parse().unwrap());
        assert_eq!(t.path("validate"), "/hooks/validate");
        let t = Target::parse("https://localhost").unwrap();
        assert_eq!(t.addr.port(), 443);
        assert!(Target::parse("http://127.0.0.1:80").is_err());
        assert!(Target::parse("https://127.0.0.1:x").is_err());
    }

    const UID: &[u8] = b"00000001-0000-4000-8000-000000000002";

    fn body(resp: &str) -> Vec<u8> {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{resp}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn response_checks() {
        // [{"op":"add","path":"/x","value":1}]
        let patch = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"add","path":"/x","value":1}]"#);
        let patched = body(&format!(
            r#"{{"uid":"{}","allowed":true,"patchType":"JSONPatch","patch":"{patch}"}}"#,
            std::str::from_utf8(UID).unwrap()
        ));
        assert!(check_response(200, &patched, UID, Expect::Patched, None).is_ok());
        assert_eq!(
            check_response(200, &patched, UID, Expect::Unpatched, None)
                .unwrap_err()
                .0,
            "unexpected-verdict"
        );
        assert_eq!(
            check_response(
                200,
                &patched,
                b"00000001-0000-4000-8000-000000000003",
                Expect::Any,
                None
            )
            .unwrap_err()
            .0,
            "wrong-uid"
        );
        assert_eq!(
            check_response(500, &patched, UID, Expect::Any, None)
                .unwrap_err()
                .0,
            "status"
        );
        assert_eq!(
            check_response(200, b"{", UID, Expect::Any, None)
                .unwrap_err()
                .0,
            "unparsable"
        );
        assert_eq!(
            check_response(200, b"{\"kind\":\"Status\"}", UID, Expect::Any, None)
                .unwrap_err()
                .0,
            "unparsable"
        );
        let check: Check = Arc::new(|v: &ReviewView<'_>| {
            let p = v.decode_patch()?.ok_or("no patch")?;
            (p[0]["value"] == 1)
                .then_some(())
                .ok_or_else(|| "value".to_owned())
        });
        assert!(check_response(200, &patched, UID, Expect::Any, Some(&check)).is_ok());
        let denied = body(&format!(
            r#"{{"uid":"{}","allowed":false,"status":{{"message":"privileged","code":403}}}}"#,
            std::str::from_utf8(UID).unwrap()
        ));
        assert!(check_response(200, &denied, UID, Expect::Denied, None).is_ok());
        assert_eq!(
            check_response(200, &denied, UID, Expect::Any, Some(&check))
                .unwrap_err()
                .0,
            "check"
        );
    }
}
