//! The router in process, without TLS or sockets.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{plain_pod, privileged_workspace_pod, review, workspace_pod};
use devenv_shared::policy::Policy;
use devenv_webhook::{router, AppState};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn call(state: &AppState, path: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
    let response = router(state.clone())
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("request"),
        )
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

#[tokio::test]
async fn mutate_and_validate_in_process() {
    let state = AppState::new(Policy::default());
    let (status, json) = call(&state, "/mutate", review("a", workspace_pod())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["response"]["patchType"], "JSONPatch", "{json}");
    assert!(json["response"]["patch"].is_string(), "{json}");

    let (status, json) = call(&state, "/validate", review("b", plain_pod())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["response"]["allowed"], true);
    assert_eq!(json["response"]["uid"], "b");

    let (_, json) = call(&state, "/validate", review("c", privileged_workspace_pod())).await;
    assert_eq!(json["response"]["allowed"], false, "{json}");
}

#[tokio::test]
async fn policy_swap_applies_to_the_next_request() {
    let state = AppState::new(Policy::default());
    let (_, before) = call(&state, "/mutate", review("a", workspace_pod())).await;
    let mut policy = Policy::default();
    policy.user.uid = 4242;
    policy.user.gid = 4242;
    policy.user.fs_group = 4242;
    state.set_policy(policy);
    let (_, after) = call(&state, "/mutate", review("a", workspace_pod())).await;
    assert_ne!(before["response"]["patch"], after["response"]["patch"]);
    use base64::Engine as _;
    let patch = base64::engine::general_purpose::STANDARD
        .decode(after["response"]["patch"].as_str().expect("patch"))
        .expect("base64");
    assert!(String::from_utf8_lossy(&patch).contains("4242"));
}

#[tokio::test]
async fn dry_run_and_no_api_access_create_nothing_and_still_admit() {
    let state = AppState::new(Policy::default());
    let mut body: serde_json::Value =
        serde_json::from_slice(&review("d", workspace_pod())).expect("json");
    body["request"]["dryRun"] = true.into();
    let (status, json) = call(&state, "/mutate", serde_json::to_vec(&body).expect("json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["response"]["allowed"], true);
    // Without API access the claims are skipped (logged once) and the pod is still admitted.
    let (status, json) = call(&state, "/mutate", review("e", workspace_pod())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["response"]["allowed"], true);
}
