//! The Kubernetes-API side (the watch caches the rules read) against a fake API server: a
//! small axum app on an ephemeral port that serves lists and records what it is sent.
//! Admission itself makes no API call and creates nothing.

mod common;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{eventually, review, workspace_pod};
use devenv_shared::admission::catalog::{ClaimFacts, Lookup, WorkspaceCatalog};
use devenv_shared::admission::ownership::NOT_SYNCED;
use devenv_shared::admission::violation::SecretCatalog;
use devenv_shared::model::policy::Policy;
use devenv_webhook::server::cluster::ClusterCaches;
use devenv_webhook::RequestLimits;
use devenv_webhook::{router, AppState};
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: String,
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    pods_forbidden: bool,
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

/// A list answer of `items` (metadata-only lists are `PartialObjectMetadataList`).
fn list(kind: &str, items: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": if kind == "StatefulSetList" { "apps/v1" } else { "meta.k8s.io/v1" },
        "kind": kind,
        "metadata": {"resourceVersion": "7"},
        "items": items,
    })
}

fn meta(
    name: &str,
    namespace: &str,
    labels: serde_json::Value,
    owner: Option<&str>,
) -> serde_json::Value {
    let mut m = serde_json::json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7", "labels": labels}
    });
    if let Some(owner) = owner {
        m["metadata"]["annotations"] = serde_json::json!({"devenv.io/owner": owner});
    }
    m
}

/// What the fake cluster holds: an injectable Secret, bob's StatefulSet with its claim and
/// pod, and an unlabelled claim. `pods_forbidden` answers 403 to the pod list (missing RBAC).
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
    drop(bytes);
    if let Ok(mut seen) = fake.seen.lock() {
        seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
        });
    }
    let json = |v: serde_json::Value| {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            v.to_string(),
        )
            .into_response()
    };
    if method == Method::GET && query.contains("watch=true") {
        // A watch that stays open with nothing to say.
        let stream = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    let ws = |w: &str| serde_json::json!({"devenv.io/workspace": w});
    match (method, path.as_str()) {
        (Method::GET, "/api/v1/secrets") => json(list(
            "PartialObjectMetadataList",
            serde_json::json!([meta(
                "git-creds",
                "team-a",
                serde_json::json!({"devenv.io/inject": "true"}),
                None
            )]),
        )),
        (Method::GET, "/apis/apps/v1/statefulsets") => json(list(
            "StatefulSetList",
            serde_json::json!([{
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "bob", "namespace": "team-a", "uid": "u-bob", "resourceVersion": "7",
                             "labels": ws("bob"), "annotations": {"devenv.io/owner": "bob"}},
                "spec": {
                    "selector": {"matchLabels": ws("bob")},
                    "serviceName": "bob",
                    "template": {"metadata": {"labels": ws("bob")}, "spec": {"containers": [{"name": "dev", "image": "x"}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "workspace"}}]
                }
            }]),
        )),
        (Method::GET, "/api/v1/persistentvolumeclaims") => json(list(
            "PartialObjectMetadataList",
            serde_json::json!([
                meta("workspace-bob-0", "team-a", ws("bob"), Some("bob")),
                meta("scratch", "team-a", serde_json::json!({}), None),
            ]),
        )),
        (Method::GET, "/api/v1/pods") if fake.pods_forbidden => status(
            403,
            "Forbidden",
            "pods is forbidden: cannot list resource \"pods\"",
        ),
        (Method::GET, "/api/v1/pods") => json(list(
            "PartialObjectMetadataList",
            serde_json::json!([meta("bob-0", "team-a", ws("bob"), Some("bob"))]),
        )),
        _ => status(404, "NotFound", "not found"),
    }
}

async fn fake_api(pods_forbidden: bool) -> (Fake, kube::Client, tokio::task::JoinHandle<()>) {
    let fake = Fake {
        pods_forbidden,
        ..Fake::default()
    };
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

/// Starts the caches and waits for them to sync (or not, within 10 s).
async fn started(client: kube::Client) -> (ClusterCaches, Vec<tokio::task::JoinHandle<()>>, bool) {
    let (caches, tasks) = ClusterCaches::start(client);
    let synced = eventually(Duration::from_secs(10), || {
        let caches = caches.clone();
        async move { caches.is_synced() }
    })
    .await;
    (caches, tasks, synced)
}

#[tokio::test]
async fn caches_mirror_secrets_statefulsets_claims_and_pods() {
    let (fake, client, _task) = fake_api(false).await;
    let (caches, tasks, synced) = started(client).await;
    assert!(
        synced,
        "caches never synced: {:?} {:?}",
        caches.unsynced(),
        fake.seen()
    );

    assert!(caches.is_injectable("team-a", "git-creds"));
    assert!(!caches.is_injectable("team-b", "git-creds"));
    assert!(!caches.is_injectable("team-a", "other"));

    assert!(matches!(
        caches.claim("team-a", "workspace-bob-0"),
        Lookup::Found(ClaimFacts { workspace: Some(w), owner: Some(o), .. }) if w == "bob" && o == "bob"
    ));
    assert_eq!(
        caches.claim("team-a", "scratch"),
        Lookup::Found(ClaimFacts::default()),
        "unlabelled claims are known too"
    );
    assert_eq!(caches.claim("team-a", "nothing"), Lookup::Missing);
    assert_eq!(caches.claim("team-b", "workspace-bob-0"), Lookup::Missing);

    let Lookup::Found(sts) = caches.statefulset("team-a", "bob") else {
        panic!("bob's StatefulSet is not cached")
    };
    assert_eq!(sts.uid, "u-bob");
    assert_eq!(sts.workspace.as_deref(), Some("bob"));
    assert_eq!(sts.owner.as_deref(), Some("bob"));
    assert_eq!(sts.claim_templates, vec!["workspace".to_string()]);
    assert!(!sts.deleting);

    assert_eq!(
        caches.workspace_owner("team-a", "bob"),
        Lookup::Found(Some("bob".into()))
    );
    assert_eq!(caches.workspace_owner("team-a", "carol"), Lookup::Missing);
    assert_eq!(caches.workspace_owner("team-b", "bob"), Lookup::Missing);

    // Secrets, StatefulSets and pods are selected by label; claims are all listed.
    let query_of = |path: &str| {
        fake.seen()
            .into_iter()
            .find(|s| s.path == path && !s.query.contains("watch=true"))
            .map(|s| s.query)
            .unwrap_or_else(|| panic!("no list of {path}: {:?}", fake.seen()))
    };
    assert!(query_of("/api/v1/secrets").contains("labelSelector=devenv.io%2Finject%3Dtrue"));
    assert!(query_of("/apis/apps/v1/statefulsets").contains("labelSelector=devenv.io%2Fworkspace"));
    assert!(query_of("/api/v1/pods").contains("labelSelector=devenv.io%2Fworkspace"));
    assert!(!query_of("/api/v1/persistentvolumeclaims").contains("labelSelector"));
    assert!(
        fake.seen().iter().all(|s| s.method == Method::GET),
        "the caches only read: {:?}",
        fake.seen()
    );
    for t in tasks {
        t.abort();
    }
}

async fn call(state: &AppState, path: &str, body: Vec<u8>) -> serde_json::Value {
    let response = router(state.clone())
        .oneshot(
            axum::http::Request::post(path)
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
    serde_json::from_slice(&bytes).expect("json")
}

#[tokio::test]
async fn admission_reads_the_caches_and_sends_nothing() {
    let (fake, client, _task) = fake_api(false).await;
    let (caches, tasks, synced) = started(client).await;
    assert!(synced, "{:?}", caches.unsynced());
    let state = AppState::builder(Arc::new(arc_swap::ArcSwap::from_pointee(Policy::default())))
        .caches(caches)
        .build();
    assert_eq!(state.readiness(), Ok("ready"));
    // The snapshot API is not served here: its optional watch retries in the background,
    // which is no admission call.
    let admission_calls = || {
        fake.seen()
            .into_iter()
            .filter(|s| !s.path.starts_with("/apis/snapshot.storage.k8s.io/"))
            .collect::<Vec<_>>()
    };
    let before = admission_calls().len();

    let json = call(&state, "/mutate", review("m", workspace_pod())).await;
    assert_eq!(json["response"]["allowed"], true, "{json}");
    // alice's pod mounting bob's claim: refused from the cache.
    let mut pod = workspace_pod();
    pod["metadata"]["annotations"] = serde_json::json!({"devenv.io/owner": "alice"});
    pod["spec"]["volumes"] = serde_json::json!([
        {"name": "loot", "persistentVolumeClaim": {"claimName": "workspace-bob-0"}}
    ]);
    let json = call(&state, "/validate", review("v", pod)).await;
    assert_eq!(json["response"]["allowed"], false, "{json}");
    let message = json["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("spec.volumes[0].persistentVolumeClaim.claimName")
            && message.contains("workspace bob of bob"),
        "{message}"
    );
    assert_eq!(
        admission_calls().len(),
        before,
        "admission made API calls: {:?}",
        &admission_calls()[before..]
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn unsynced_caches_refuse_what_they_cannot_prove_and_readiness_says_why() {
    // The pod list is forbidden (RBAC missing): the pod cache never syncs.
    let (_fake, client, _task) = fake_api(true).await;
    let (caches, tasks, synced) = started(client).await;
    assert!(!synced);
    assert_eq!(caches.unsynced(), vec!["pods"]);
    let limits = RequestLimits {
        catalog_sync_grace: Duration::from_secs(3600),
        ..RequestLimits::default()
    };
    let state = AppState::builder(Arc::new(arc_swap::ArcSwap::from_pointee(Policy::default())))
        .caches(caches)
        .limits(limits)
        .build();
    let not_ready = state
        .readiness()
        .expect_err("not ready before the caches sync");
    assert!(not_ready.contains("caches"), "{not_ready}");

    // A bare pod cannot be proven new or alice's: refused with "retry", not let through.
    let mut pod = workspace_pod();
    pod["metadata"]["annotations"] = serde_json::json!({"devenv.io/owner": "alice"});
    let json = call(&state, "/validate", review("v", pod)).await;
    assert_eq!(json["response"]["allowed"], false, "{json}");
    let message = json["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains(NOT_SYNCED), "{message}");
    for t in tasks {
        t.abort();
    }
}
