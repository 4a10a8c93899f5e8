//! `kubectl devenv delete` against a fake API server on 127.0.0.1: the exact
//! requests it sends. Without --purge the claims (the workspace's data) are
//! listed, named, and never deleted; with --purge --yes they are deleted, last;
//! a --purge that cannot be confirmed sends nothing at all.

mod common;

use serde_json::{json, Value};

use common::fake_api::{status, FakeApi, Request};

const NS: &str = "team";

fn claim(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"devenv.io/workspace": "demo"},
        },
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"},
    })
}

/// An object of workspace `demo` (labelled when `ours`) as a GET returns it.
fn object(kind: &str, ours: bool) -> Value {
    let labels = if ours {
        json!({"devenv.io/workspace": "demo"})
    } else {
        json!({"app": "someone-else"})
    };
    json!({
        "apiVersion": if kind == "StatefulSet" { "apps/v1" } else if kind == "NetworkPolicy" { "networking.k8s.io/v1" } else { "v1" },
        "kind": kind,
        "metadata": {"name": "demo", "namespace": NS, "uid": format!("uid-{kind}"), "labels": labels},
    })
}

/// The kind an object path of `demo` names.
fn kind_of(path: &str) -> Option<&'static str> {
    [
        ("/statefulsets/demo", "StatefulSet"),
        ("/services/demo", "Service"),
        ("/networkpolicies/demo", "NetworkPolicy"),
        ("/serviceaccounts/demo", "ServiceAccount"),
    ]
    .into_iter()
    .find(|(suffix, _)| path.ends_with(suffix))
    .map(|(_, kind)| kind)
}

/// A cluster where workspace `demo` exists with two claims.
fn cluster() -> FakeApi {
    cluster_with_foreign_service(false)
}

/// Workspace `demo`, and (when `foreign`) a Service `demo` that is someone else's.
fn cluster_with_foreign_service(foreign: bool) -> FakeApi {
    FakeApi::start(move |r: &Request| {
        let claims = format!("/api/v1/namespaces/{NS}/persistentvolumeclaims");
        if r.method == "GET" {
            if let Some(kind) = kind_of(&r.path) {
                return (200, object(kind, !(foreign && kind == "Service")));
            }
        }
        match r.method.as_str() {
            "GET" if r.path == claims => (
                200,
                json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaimList",
                    "metadata": {"resourceVersion": "7"},
                    "items": [claim("workspace-demo-0"), claim("history-demo-0")],
                }),
            ),
            "DELETE"
                if r.path.starts_with(&format!("/api/v1/namespaces/{NS}/"))
                    || r.path.starts_with("/apis/") =>
            {
                (200, status(200, "", ""))
            }
            _ => (
                404,
                status(404, "NotFound", "not served by the fake API server"),
            ),
        }
    })
}

const LIST_CLAIMS: &str =
    "GET /api/v1/namespaces/team/persistentvolumeclaims?labelSelector=devenv.io/workspace=demo";

/// The workspace's own objects, in the order `delete` removes them: each read first (it is
/// deleted only when it carries the workspace's label), then deleted.
const WORKSPACE_DELETES: [&str; 8] = [
    "GET /apis/apps/v1/namespaces/team/statefulsets/demo",
    "DELETE /apis/apps/v1/namespaces/team/statefulsets/demo",
    "GET /api/v1/namespaces/team/services/demo",
    "DELETE /api/v1/namespaces/team/services/demo",
    "GET /apis/networking.k8s.io/v1/namespaces/team/networkpolicies/demo",
    "DELETE /apis/networking.k8s.io/v1/namespaces/team/networkpolicies/demo",
    "GET /api/v1/namespaces/team/serviceaccounts/demo",
    "DELETE /api/v1/namespaces/team/serviceaccounts/demo",
];

const CLAIM_DELETES: [&str; 2] = [
    "DELETE /api/v1/namespaces/team/persistentvolumeclaims/workspace-demo-0",
    "DELETE /api/v1/namespaces/team/persistentvolumeclaims/history-demo-0",
];

fn lines(requests: &[Request]) -> Vec<String> {
    requests.iter().map(Request::line).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every DELETE asks for background propagation (the StatefulSet's pods go
/// with it; its claims do not, by the retention policy) and is a dry run
/// exactly when `dry_run`.
fn assert_delete_options(requests: &[Request], dry_run: bool) {
    for r in requests.iter().filter(|r| r.method == "DELETE") {
        let body = r.json();
        if let Some(kind) = kind_of(&r.path) {
            assert_eq!(
                body["preconditions"]["uid"],
                format!("uid-{kind}"),
                "{}: the object judged is the object deleted: {body}",
                r.line()
            );
        }
        assert_eq!(
            body["propagationPolicy"],
            "Background",
            "{}: {body}",
            r.line()
        );
        if dry_run {
            assert_eq!(body["dryRun"], json!(["All"]), "{}: {body}", r.line());
        } else {
            assert!(body.get("dryRun").is_none(), "{}: {body}", r.line());
        }
    }
}

#[test]
fn delete_without_purge_never_deletes_a_claim() {
    let api = cluster();
    let out = api.run(NS, &["delete", "demo"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let requests = api.requests();
    let mut expected = vec![LIST_CLAIMS];
    expected.extend(WORKSPACE_DELETES);
    assert_eq!(lines(&requests), expected);
    assert!(
        !requests
            .iter()
            .any(|r| r.method == "DELETE" && r.path.contains("persistentvolumeclaims")),
        "a claim was deleted without --purge"
    );
    assert_delete_options(&requests, false);
    assert_eq!(
        stdout,
        "statefulset.apps/demo deleted\nservice/demo deleted\n\
         networkpolicy.networking.k8s.io/demo deleted\nserviceaccount/demo deleted\n"
    );
    assert!(
        stderr.contains(
            "Kept 2 claim(s) with the workspace's data: workspace-demo-0, history-demo-0"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("kubectl devenv delete demo --purge"),
        "{stderr}"
    );
}

#[test]
fn delete_purge_without_a_backup_repository_deletes_nothing() {
    let api = cluster();
    let out = api.run(NS, &["delete", "demo", "--purge", "--yes"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no backup repository") && stderr.contains("--no-backup"),
        "{stderr}"
    );
    assert!(
        !api.requests().iter().any(|r| r.method == "DELETE"),
        "a refused purge sent a DELETE: {:?}",
        lines(&api.requests())
    );
}

#[test]
fn delete_purge_yes_deletes_the_claims_after_the_workspace() {
    let api = cluster();
    let out = api.run(NS, &["delete", "demo", "--purge", "--yes", "--no-backup"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let requests = api.requests();
    let mut expected = vec![LIST_CLAIMS];
    expected.extend(WORKSPACE_DELETES);
    expected.extend(CLAIM_DELETES);
    assert_eq!(lines(&requests), expected);
    assert_delete_options(&requests, false);
    for claim in ["workspace-demo-0", "history-demo-0"] {
        assert!(
            stdout.contains(&format!("persistentvolumeclaim/{claim} deleted\n")),
            "{stdout}"
        );
    }
    assert!(!stderr.contains("Kept"), "{stderr}");
    assert!(stderr.contains("without a backup"), "{stderr}");
}

#[test]
fn delete_purge_without_yes_or_terminal_sends_nothing() {
    let api = cluster();
    let out = api.run(NS, &["delete", "demo", "--purge"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("without a terminal to confirm on, pass --yes"),
        "{stderr}"
    );
    assert_eq!(lines(&api.requests()), Vec::<String>::new());
}

#[test]
fn delete_server_dry_run_sends_dry_run_deletes_only() {
    let api = cluster();
    let out = api.run(
        NS,
        &["delete", "demo", "--purge", "--yes", "--dry-run=server"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let requests = api.requests();
    let mut expected = vec![LIST_CLAIMS];
    expected.extend(WORKSPACE_DELETES);
    expected.extend(CLAIM_DELETES);
    assert_eq!(lines(&requests), expected);
    assert_delete_options(&requests, true);
    assert!(
        stdout.contains("statefulset.apps/demo deleted (server dry run)"),
        "{stdout}"
    );
}

#[test]
fn delete_dry_run_client_sends_nothing() {
    let api = cluster();
    let out = api.run(NS, &["delete", "demo", "--purge", "--dry-run=client"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("statefulset.apps/demo deleted (dry run)"));
    assert_eq!(lines(&api.requests()), Vec::<String>::new());
}

#[test]
fn delete_leaves_an_object_of_the_same_name_that_is_not_the_workspaces() {
    let api = cluster_with_foreign_service(true);
    let out = api.run(NS, &["delete", "demo"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let requests = api.requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.method == "DELETE" && r.path.ends_with("/services/demo")),
        "someone else's Service was deleted: {:?}",
        lines(&requests)
    );
    assert!(!stdout.contains("service/demo"), "{stdout}");
    assert!(
        stderr.contains("not deleting service/demo: it is not workspace demo's"),
        "{stderr}"
    );
    assert!(stdout.contains("statefulset.apps/demo deleted"), "{stdout}");
}
