//! The router in process, without TLS or sockets.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use common::{plain_pod, review, workspace_pod};
use devenv_shared::model::policy::Policy;
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

/// The JSON Patch operations of a response.
fn patch_of(json: &serde_json::Value) -> Vec<json_patch::PatchOperation> {
    let patch = base64::engine::general_purpose::STANDARD
        .decode(json["response"]["patch"].as_str().expect("patch"))
        .expect("base64");
    serde_json::from_slice::<json_patch::Patch>(&patch)
        .expect("a JSON Patch")
        .0
}

/// The workspace pod as the mutating webhook leaves it: the pod every rule admits.
async fn admitted_workspace_pod(state: &AppState) -> serde_json::Value {
    let (_, json) = call(state, "/mutate", review("m", workspace_pod())).await;
    let mut pod = workspace_pod();
    json_patch::patch(&mut pod, &patch_of(&json)).expect("the patch applies");
    let (_, json) = call(state, "/validate", review("v", pod.clone())).await;
    assert_eq!(
        json["response"]["allowed"], true,
        "the mutated pod is admitted: {json}"
    );
    pod
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

    // A pod that breaks the privileged rule and no other: the admitted workspace pod with
    // `privileged: true` on its one container.
    let mut pod = admitted_workspace_pod(&state).await;
    pod["spec"]["containers"][0]["securityContext"]["privileged"] = true.into();
    let (status, json) = call(&state, "/validate", review("c", pod)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["response"]["allowed"], false, "{json}");
    assert_eq!(json["response"]["uid"], "c");
    let message = json["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    let reason = message
        .strip_prefix("workspace alice denied: ")
        .unwrap_or_else(|| panic!("{message}"));
    assert!(
        reason.starts_with("spec.containers[0].securityContext.privileged: "),
        "{message}"
    );
    // One violation: the refusal lists each broken rule as `field: message`, joined by "; ".
    assert!(
        !reason.contains("; spec.") && !reason.contains("; metadata."),
        "{message}"
    );
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
    let run_as_user = |json: &serde_json::Value| {
        let mut pod = workspace_pod();
        json_patch::patch(&mut pod, &patch_of(json)).expect("the patch applies");
        pod["spec"]["securityContext"]["runAsUser"].clone()
    };
    assert_eq!(run_as_user(&before), 1000, "{before}");
    assert_eq!(run_as_user(&after), 4242, "{after}");
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
    assert_eq!(
        json["response"]["patchType"], "JSONPatch",
        "still mutated: {json}"
    );
    // Without API access the claims are skipped (logged once) and the pod is still admitted,
    // and still mutated.
    let (status, json) = call(&state, "/mutate", review("e", workspace_pod())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["response"]["allowed"], true);
    assert_eq!(
        json["response"]["patchType"], "JSONPatch",
        "still mutated: {json}"
    );
}
