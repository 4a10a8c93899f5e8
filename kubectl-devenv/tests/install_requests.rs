//! `kubectl devenv install` against a fake API server on 127.0.0.1: every object of
//! `devenv_shared::build::install::build` is applied, the `devenv-user` ClusterRole that
//! `tenant add` binds and the policy reader included.

mod common;

use serde_json::Value;

use common::fake_api::{status, FakeApi, Request};

#[test]
fn install_applies_the_user_role_and_the_policy_reader() {
    let api = FakeApi::start(|r: &Request| match r.method.as_str() {
        // Server-side apply answers with the object it stored.
        "PATCH" => (
            200,
            serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null),
        ),
        _ => (404, status(404, "NotFound", "not found")),
    });
    let dir = tempfile::tempdir().unwrap();
    let out = api.run(
        "default",
        &[
            "install",
            "--webhook-url",
            "https://127.0.0.1:1",
            "--cert-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let patches: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.path.clone())
        .collect();
    for path in [
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/devenv-user",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/devenv-system/roles/devenv-policy-reader",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/devenv-system/rolebindings/devenv-policy-reader",
    ] {
        assert!(
            patches.iter().any(|p| p == path),
            "install did not apply {path}; it applied {patches:#?}\n{stderr}"
        );
    }
    let role = api
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/clusterroles/devenv-user"))
        .map(|r| r.json())
        .unwrap();
    assert_eq!(role["kind"], "ClusterRole");
    assert!(
        role["rules"].as_array().is_some_and(|r| !r.is_empty()),
        "{role}"
    );
}
