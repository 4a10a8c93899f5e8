//! The Kubernetes-API side (Secret catalog, bare-pod claims, Events) against a fake API
//! server: a small axum app on an ephemeral port that records what it is sent.

mod common;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{eventually, review, workspace_pod};
use devenv_shared::policy::Policy;
use devenv_shared::validate::SecretCatalog;
use devenv_webhook::cluster::{ClaimEnsurer, PodRef, SecretStoreCatalog};
use devenv_webhook::metrics::Metrics;
use devenv_webhook::{router, AppState};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    body: serde_json::Value,
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(State(fake): State<Fake>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    if let Ok(mut seen) = fake.seen.lock() {
        seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
        });
    }
    let json = |code: StatusCode, v: serde_json::Value| {
        (code, [("content-type", "application/json")], v.to_string()).into_response()
    };
    match (method, path.as_str()) {
        (Method::GET, "/api/v1/secrets") if query.contains("watch=true") => {
            // A watch that stays open with nothing to say.
            let stream = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        (Method::GET, "/api/v1/secrets") => json(
            StatusCode::OK,
            serde_json::json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                "metadata": {"resourceVersion": "7"},
                "items": [{
                    "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                    "metadata": {"name": "git-creds", "namespace": "team-a", "resourceVersion": "7",
                                 "labels": {"devenv.io/inject": "true"}}
                }]
            }),
        ),
        (Method::POST, p) if p.ends_with("/persistentvolumeclaims") => {
            let name = body["metadata"]["name"].as_str().unwrap_or_default();
            if name.starts_with("exists-") {
                status(
                    409,
                    "AlreadyExists",
                    &format!("persistentvolumeclaims \"{name}\" already exists"),
                )
            } else if name.starts_with("forbidden-") {
                status(403, "Forbidden", "persistentvolumeclaims is forbidden")
            } else {
                json(StatusCode::CREATED, body)
            }
        }
        (Method::POST, p) if p.ends_with("/events") => json(StatusCode::CREATED, body),
        _ => status(404, "NotFound", "not found"),
    }
}

async fn fake_api() -> (Fake, kube::Client, tokio::task::JoinHandle<()>) {
    let fake = Fake::default();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let uri: axum::http::Uri = format!("http://{addr}").parse().expect("uri");
    let client = kube::Client::try_from(kube::Config::new(uri)).expect("client");
    (fake, client, task)
}

fn claim(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("claim")
}

#[tokio::test]
async fn claims_are_created_idempotently_and_failures_become_events() {
    let (fake, client, _task) = fake_api().await;
    let ensurer = ClaimEnsurer::new(client);
    let metrics = Metrics::new();
    let pod = PodRef {
        namespace: "team-a".to_owned(),
        name: "dev-0".to_owned(),
        workspace: Some("alice".to_owned()),
    };
    let claims = [
        claim("workspace-alice"),
        claim("exists-history-alice"),
        claim("forbidden-config-alice"),
    ];
    ensurer.ensure(&pod, &claims, &metrics).await;

    let seen = fake.seen();
    let posts: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path == "/api/v1/namespaces/team-a/persistentvolumeclaims")
        .collect();
    assert_eq!(posts.len(), 3, "{seen:?}");
    assert!(posts.iter().all(|s| s.method == Method::POST));
    assert!(
        posts
            .iter()
            .all(|s| s.query.contains("fieldManager=devenv-webhook")),
        "{posts:?}"
    );
    assert!(seen.iter().all(|s| s.method != Method::DELETE));

    let events: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.ends_with("/events"))
        .collect();
    assert_eq!(events.len(), 1, "{seen:?}");
    assert_eq!(
        events[0].path,
        "/apis/events.k8s.io/v1/namespaces/team-a/events"
    );
    let note = events[0].body["note"].as_str().unwrap_or_default();
    assert!(note.contains("team-a/forbidden-config-alice"), "{note}");
    assert_eq!(events[0].body["regarding"]["name"], "dev-0");
    assert_eq!(events[0].body["type"], "Warning");

    let text = metrics.encode();
    assert!(
        text.contains("devenv_webhook_claims_ensured_total{result=\"ok\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("devenv_webhook_claims_ensured_total{result=\"error\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn secret_catalog_mirrors_labelled_secrets() {
    let (fake, client, _task) = fake_api().await;
    let (catalog, reflector) = SecretStoreCatalog::start(client);
    let synced = eventually(Duration::from_secs(10), || {
        let catalog = catalog.clone();
        async move { catalog.is_synced() }
    })
    .await;
    assert!(synced, "catalog never synced: {:?}", fake.seen());
    assert!(catalog.is_injectable("team-a", "git-creds"));
    assert!(!catalog.is_injectable("team-b", "git-creds"));
    assert!(!catalog.is_injectable("team-a", "other"));
    let list = fake
        .seen()
        .into_iter()
        .find(|s| s.path == "/api/v1/secrets")
        .expect("a list of secrets");
    assert!(
        list.query
            .contains("labelSelector=devenv.io%2Finject%3Dtrue"),
        "{}",
        list.query
    );
    reflector.abort();
}

#[tokio::test]
async fn mutating_a_bare_workspace_pod_creates_its_claims_unless_dry_run() {
    let (fake, client, _task) = fake_api().await;
    let state = AppState::builder(Arc::new(arc_swap::ArcSwap::from_pointee(Policy::default())))
        .claims(ClaimEnsurer::new(client))
        .build();
    let call = |body: Vec<u8>| {
        let app = router(state.clone());
        async move {
            let response = app
                .oneshot(
                    axum::http::Request::post("/mutate")
                        .body(Body::from(body))
                        .expect("request"),
                )
                .await
                .expect("infallible");
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("json")
        }
    };

    let mut dry: serde_json::Value =
        serde_json::from_slice(&review("dry", workspace_pod())).expect("json");
    dry["request"]["dryRun"] = true.into();
    let json = call(serde_json::to_vec(&dry).expect("json")).await;
    assert_eq!(json["response"]["allowed"], true);
    assert!(
        fake.seen().is_empty(),
        "dry run had side effects: {:?}",
        fake.seen()
    );

    let json = call(review("real", workspace_pod())).await;
    assert_eq!(json["response"]["allowed"], true);
    let created: Vec<String> = fake
        .seen()
        .iter()
        .filter(|s| s.path == "/api/v1/namespaces/team-a/persistentvolumeclaims")
        .filter_map(|s| s.body["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        created.contains(&"workspace-alice".to_owned()),
        "{created:?}"
    );
    assert!(!created.is_empty());
}
