//! The HTTP application: the admission endpoints, health, readiness and metrics.
//!
//! Everything a request needs is reached through [`AppState`] with atomic loads only
//! (the policy is an [`ArcSwap`]); bodies are parsed straight from bytes.

use super::cluster::ClusterCaches;
use super::metrics::{Endpoint, Metrics, Outcome};
use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use devenv_shared::admission::catalog::{Cluster, EmptyCluster};
use devenv_shared::admission::request;
use devenv_shared::model::policy::Policy;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body as _;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, Operation, META_API_VERSION_V1, META_KIND,
};
use kube::core::DynamicObject;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body accepted (the API server caps objects well below this).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Limits applied inside request handling.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Bodies larger than this are answered 413.
    pub max_body_bytes: usize,
    /// The whole body must arrive within this time, else 408.
    pub body_read_timeout: Duration,
    /// How long readiness waits for the cluster caches' first sync before reporting ready
    /// regardless (so missing RBAC does not take the webhook down with it: until they sync,
    /// only the workspace requests that need them are refused, with "retry").
    pub catalog_sync_grace: Duration,
    /// A denial by the validating rules is decided again once after this long when the
    /// webhook answers from watch caches: an object created a moment ago (a workspace's
    /// StatefulSet, whose controller at once creates its claims) may not have reached the
    /// cache yet, and a denial then would be wrong. Only denials wait; allowed requests
    /// never do.
    pub recheck_denial_after: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: MAX_BODY_BYTES,
            body_read_timeout: Duration::from_secs(10),
            catalog_sync_grace: Duration::from_secs(30),
            recheck_denial_after: Duration::from_millis(1500),
        }
    }
}

/// Shared state of the handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Arc<ArcSwap<Policy>>,
    cluster: Arc<dyn Cluster + Send + Sync>,
    caches: Option<ClusterCaches>,
    metrics: Arc<Metrics>,
    limits: RequestLimits,
    started: Instant,
    draining: AtomicBool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("limits", &self.inner.limits)
            .field("caches", &self.inner.caches)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AppState`].
pub struct AppStateBuilder {
    policy: Arc<ArcSwap<Policy>>,
    cluster: Arc<dyn Cluster + Send + Sync>,
    caches: Option<ClusterCaches>,
    metrics: Arc<Metrics>,
    limits: RequestLimits,
}

impl AppStateBuilder {
    /// Answers the rules' questions about the cluster with `cluster` (default:
    /// [`EmptyCluster`], what a webhook without API access knows).
    pub fn cluster(mut self, cluster: Arc<dyn Cluster + Send + Sync>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Uses the watch caches; readiness waits for their first sync.
    pub fn caches(mut self, caches: ClusterCaches) -> Self {
        self.cluster = Arc::new(caches.clone());
        self.caches = Some(caches);
        self
    }

    /// Records into these metrics (default: a fresh set).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Request limits (default: [`RequestLimits::default`]).
    pub fn limits(mut self, limits: RequestLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The state.
    pub fn build(self) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                policy: self.policy,
                cluster: self.cluster,
                caches: self.caches,
                metrics: self.metrics,
                limits: self.limits,
                started: Instant::now(),
                draining: AtomicBool::new(false),
            }),
        }
    }
}

impl AppState {
    /// State with `policy`, no Kubernetes API access, default limits and fresh metrics.
    pub fn new(policy: Policy) -> Self {
        Self::builder(Arc::new(ArcSwap::from_pointee(policy))).build()
    }

    /// A builder around a shared, swappable policy (e.g. one a reloader updates).
    pub fn builder(policy: Arc<ArcSwap<Policy>>) -> AppStateBuilder {
        AppStateBuilder {
            policy,
            cluster: Arc::new(EmptyCluster),
            caches: None,
            metrics: Arc::new(Metrics::new()),
            limits: RequestLimits::default(),
        }
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy.load_full()
    }

    /// Puts `policy` in force for the next requests.
    pub fn set_policy(&self, policy: Policy) {
        self.inner.policy.store(Arc::new(policy));
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Marks the server as shutting down: readiness fails from now on.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Whether [`AppState::set_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// Whether the server should receive traffic, and why not.
    pub fn readiness(&self) -> Result<&'static str, &'static str> {
        if self.inner.draining.load(Ordering::Acquire) {
            return Err("shutting down");
        }
        match &self.inner.caches {
            None => Ok("ready"),
            Some(caches) if caches.is_synced() => Ok("ready"),
            Some(_) if self.inner.started.elapsed() >= self.inner.limits.catalog_sync_grace => {
                Ok("ready (cluster caches not synced yet: workspace requests that need them are refused)")
            }
            Some(_) => Err("waiting for the cluster caches (secrets, statefulsets, claims, pods) to sync"),
        }
    }
}

/// The routes: `POST /mutate`, `POST /validate`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    let version = request.version();
    let response = admit(&state, Endpoint::Mutate, request.into_body()).await;
    close_if_draining(&state, version, response)
}

async fn validate(State(state): State<AppState>, request: Request) -> Response {
    let version = request.version();
    let response = admit(&state, Endpoint::Validate, request.into_body()).await;
    close_if_draining(&state, version, response)
}

/// While draining, HTTP/1 responses carry `Connection: close`: the client learns with its
/// answer that the connection ends, instead of sending its next request into a connection
/// the server is about to close (an unanswered POST is not retried by the API server).
/// HTTP/2 connections get a GOAWAY instead.
fn close_if_draining(state: &AppState, version: Version, mut response: Response) -> Response {
    if version <= Version::HTTP_11 && state.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness() {
        Ok(msg) => (StatusCode::OK, msg).into_response(),
        Err(msg) => (StatusCode::SERVICE_UNAVAILABLE, msg).into_response(),
    }
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics_http::CONTENT_TYPE)],
        state.inner.metrics.encode(),
    )
        .into_response()
}

async fn admit(state: &AppState, endpoint: Endpoint, body: Body) -> Response {
    let started = Instant::now();
    let (outcome, response) = admit_inner(state, endpoint, body).await;
    state
        .inner
        .metrics
        .record(endpoint, outcome, started.elapsed());
    response
}

enum BodyError {
    TooLarge,
    Timeout,
    Read(String),
}

impl BodyError {
    fn into_response(self, limits: &RequestLimits) -> Response {
        match self {
            BodyError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds {} bytes\n", limits.max_body_bytes),
            )
                .into_response(),
            BodyError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {:?}\n",
                    limits.body_read_timeout
                ),
            )
                .into_response(),
            BodyError::Read(e) => (
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}\n"),
            )
                .into_response(),
        }
    }
}

/// How much of an over-limit body is still read (and thrown away) before the 413 is sent.
/// Over HTTP/2 a response sent while the client is still sending ends the stream with a
/// reset, which clients such as curl report as a framing error instead of the 413; read to
/// its end, the request is complete and the 413 arrives as an ordinary answer. A body
/// larger than this is answered at once: its sender gets the reset.
pub const DRAIN_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

async fn read_body(mut body: Body, limits: &RequestLimits) -> Result<Bytes, BodyError> {
    let max = limits.max_body_bytes;
    let deadline = tokio::time::Instant::now() + limits.body_read_timeout;
    let declared = body.size_hint().lower();
    if declared > max as u64 {
        if declared <= DRAIN_LIMIT_BYTES {
            discard_until(&mut body, deadline).await;
        }
        return Err(BodyError::TooLarge);
    }
    let read = tokio::time::timeout_at(deadline, Limited::new(&mut body, max).collect()).await;
    match read {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            discard_until(&mut body, deadline).await;
            Err(BodyError::TooLarge)
        }
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}

/// Reads and drops the rest of `body`, at most [`DRAIN_LIMIT_BYTES`] and until `deadline`.
async fn discard_until(body: &mut Body, deadline: tokio::time::Instant) {
    let mut seen: u64 = 0;
    let drain = async {
        while seen <= DRAIN_LIMIT_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                Some(Err(_)) | None => return,
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, drain).await;
}

/// Why a body is not something to decide on.
#[derive(Debug)]
enum Unusable {
    /// Not JSON at all: 400.
    NotJson(String),
    /// JSON, but not a usable AdmissionReview: 200 with a denial, echoing the uid if any.
    Review { uid: String, reason: String },
}

fn parse_review(bytes: &[u8]) -> Result<AdmissionRequest<DynamicObject>, Unusable> {
    let review = match devenv_shared::admission::review::parse_review(bytes) {
        Ok(review) => review,
        Err(typed) => return Err(explain_unusable(bytes, &typed)),
    };
    let uid = || {
        review
            .request
            .as_ref()
            .map(|r| r.uid.clone())
            .unwrap_or_default()
    };
    if review.types.kind != META_KIND {
        return Err(Unusable::Review {
            uid: uid(),
            reason: format!(
                "not an AdmissionReview: kind is {:?}, expected {META_KIND}",
                review.types.kind
            ),
        });
    }
    if review.types.api_version != META_API_VERSION_V1 {
        return Err(Unusable::Review {
            uid: uid(),
            reason: format!(
                "apiVersion {:?} is not supported, expected {META_API_VERSION_V1}",
                review.types.api_version
            ),
        });
    }
    // try_into copies apiVersion/kind into the request, which the response is built from.
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| Unusable::Review {
            uid: String::new(),
            reason: "AdmissionReview has no request".to_owned(),
        })?;
    if request.object.is_none()
        && matches!(request.operation, Operation::Create | Operation::Update)
    {
        return Err(Unusable::Review {
            uid: request.uid,
            reason: format!(
                "AdmissionReview request for {:?} has no object",
                request.operation
            ),
        });
    }
    Ok(request)
}

fn explain_unusable(bytes: &[u8], typed: &serde_json::Error) -> Unusable {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return Unusable::NotJson(format!("request body is not JSON: {e}")),
    };
    let uid = value
        .pointer("/request/uid")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let reason = match &value {
        serde_json::Value::Object(map) => {
            let kind = map.get("kind").and_then(serde_json::Value::as_str);
            let api_version = map.get("apiVersion").and_then(serde_json::Value::as_str);
            if kind != Some(META_KIND) {
                format!("not an AdmissionReview: kind is {kind:?}, expected {META_KIND}")
            } else if api_version != Some(META_API_VERSION_V1) {
                format!(
                    "apiVersion {api_version:?} is not supported, expected {META_API_VERSION_V1}"
                )
            } else if map.get("request").is_none_or(serde_json::Value::is_null) {
                "AdmissionReview has no request".to_owned()
            } else {
                format!("AdmissionReview is not usable: {typed}")
            }
        }
        _ => "not an AdmissionReview: expected a JSON object".to_owned(),
    };
    Unusable::Review { uid, reason }
}

/// The wire form of the answer. kube-core would write `patch` as an array of numbers; the API
/// documents (and every other webhook sends) base64, which is also a quarter of the size.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a kube::core::Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    audit_annotations: &'a std::collections::HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a Vec<String>>,
}

fn json_review(response: &AdmissionResponse) -> Response {
    use base64::Engine as _;
    let patch = response
        .patch
        .as_ref()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    let review = ReviewOut {
        api_version: META_API_VERSION_V1,
        kind: META_KIND,
        response: ResponseOut {
            uid: &response.uid,
            allowed: response.allowed,
            status: &response.result,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            audit_annotations: &response.audit_annotations,
            warnings: response.warnings.as_ref(),
        },
    };
    match serde_json::to_vec(&review) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise the AdmissionReview response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot serialise the response\n",
            )
                .into_response()
        }
    }
}

fn denial(uid: String, reason: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid(reason);
    response.uid = uid;
    response
}

/// Name of the object for logs: the request's, else the object's, else its generateName.
fn object_name(request: &AdmissionRequest<DynamicObject>) -> &str {
    if !request.name.is_empty() {
        return &request.name;
    }
    request
        .object
        .as_ref()
        .and_then(|o| {
            o.metadata
                .name
                .as_deref()
                .or(o.metadata.generate_name.as_deref())
        })
        .unwrap_or_default()
}

async fn admit_inner(state: &AppState, endpoint: Endpoint, body: Body) -> (Outcome, Response) {
    let limits = &state.inner.limits;
    let bytes = match read_body(body, limits).await {
        Ok(b) => b,
        Err(e) => return (Outcome::Error, e.into_response(limits)),
    };
    let request = match parse_review(&bytes) {
        Ok(r) => r,
        Err(Unusable::NotJson(msg)) => {
            tracing::warn!(endpoint = endpoint.as_str(), error = %msg, "rejected a body that is not JSON");
            return (
                Outcome::Error,
                (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response(),
            );
        }
        Err(Unusable::Review { uid, reason }) => {
            tracing::warn!(endpoint = endpoint.as_str(), uid = %uid, reason = %reason,
                "denied an unusable AdmissionReview");
            return (Outcome::Error, json_review(&denial(uid, &reason)));
        }
    };
    drop(bytes);

    let decide = || {
        let policy = state.inner.policy.load();
        let cluster: &dyn Cluster = &*state.inner.cluster;
        std::panic::catch_unwind(AssertUnwindSafe(|| match endpoint {
            Endpoint::Mutate => request::mutate(&policy, &request),
            Endpoint::Validate => request::validate(&policy, cluster, &request),
        }))
    };
    let mut decided = decide();
    let denied_from_caches = endpoint == Endpoint::Validate
        && state.inner.caches.is_some()
        && matches!(&decided, Ok(d) if !d.response.allowed);
    if denied_from_caches {
        tokio::time::sleep(limits.recheck_denial_after).await;
        decided = decide();
    }
    let decision = match decided {
        Ok(d) => d,
        Err(_) => {
            tracing::error!(endpoint = endpoint.as_str(), uid = %request.uid,
                namespace = request.namespace.as_deref().unwrap_or_default(),
                name = object_name(&request), "admission decision panicked; denying");
            return (
                Outcome::Error,
                json_review(&denial(
                    request.uid,
                    "internal error in devenv-webhook (see its logs)",
                )),
            );
        }
    };

    let mut response = decision.response;
    if response.uid != request.uid {
        response.uid.clone_from(&request.uid);
    }
    let outcome = if !response.allowed {
        Outcome::Denied
    } else if response.patch.is_some() {
        Outcome::Patched
    } else {
        Outcome::Allowed
    };

    if !response.allowed {
        let reason = decision
            .denied
            .as_deref()
            .unwrap_or(response.result.message.as_str());
        tracing::info!(
            endpoint = endpoint.as_str(),
            workspace = decision.workspace.as_deref().unwrap_or_default(),
            namespace = request.namespace.as_deref().unwrap_or_default(),
            name = object_name(&request),
            uid = %request.uid,
            reason,
            "denied"
        );
    }

    (outcome, json_review(&response))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(body: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&body).unwrap_or_default()
    }

    fn pod_review(api_version: &str, with_object: bool) -> Vec<u8> {
        let mut request = serde_json::json!({
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "p",
            "namespace": "ns",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "dryRun": false
        });
        if with_object {
            request["object"] = serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            });
        }
        review(serde_json::json!({
            "apiVersion": api_version, "kind": "AdmissionReview", "request": request
        }))
    }

    #[test]
    fn good_review_parses_with_types() {
        let req = parse_review(&pod_review(META_API_VERSION_V1, true));
        let req = match req {
            Ok(r) => r,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(req.uid, "u-1");
        assert_eq!(req.types.api_version, META_API_VERSION_V1);
        assert!(req.object.is_some());
    }

    #[test]
    fn unusable_reviews_explain_and_echo_uid() {
        let cases: [(Vec<u8>, &str, &str); 5] = [
            (
                pod_review("admission.k8s.io/v1beta1", true),
                "u-1",
                "apiVersion",
            ),
            (pod_review(META_API_VERSION_V1, false), "u-1", "no object"),
            (
                review(
                    serde_json::json!({"apiVersion": META_API_VERSION_V1, "kind": "AdmissionReview"}),
                ),
                "",
                "no request",
            ),
            (
                review(serde_json::json!({"kind": "Pod", "request": {"uid": "x"}})),
                "x",
                "kind",
            ),
            (review(serde_json::json!([1, 2])), "", "JSON object"),
        ];
        for (body, uid, needle) in cases {
            match parse_review(&body) {
                Err(Unusable::Review { uid: got, reason }) => {
                    assert_eq!(got, uid, "{reason}");
                    assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
                }
                other => panic!("expected an unusable review, got {other:?}"),
            }
        }
    }

    #[test]
    fn not_json_is_its_own_case() {
        assert!(matches!(parse_review(b"{nope"), Err(Unusable::NotJson(_))));
        assert!(matches!(parse_review(b""), Err(Unusable::NotJson(_))));
    }
}
