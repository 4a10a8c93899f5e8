//! `kubectl devenv tenant add|remove` against a fake API server on 127.0.0.1: the exact
//! requests they send. `remove` without --purge takes the access away and deletes the
//! workspaces, and never deletes a claim nor the namespace; with --purge --yes it deletes
//! the namespace; it never touches a namespace that is not labelled as the tenant.

mod common;

use serde_json::{json, Value};

use common::fake_api::{status, FakeApi, Request};

const NS: &str = "team-a";

fn namespace(labelled: bool) -> Value {
    let labels = if labelled {
        json!({"devenv.io/tenant": NS, "pod-security.kubernetes.io/enforce": "restricted"})
    } else {
        json!({"kubernetes.io/metadata.name": NS})
    };
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NS, "labels": labels},
    })
}

fn claim(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS, "labels": {"devenv.io/workspace": "w"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"resourceVersion": "7"},
        "items": items,
    })
}

fn role_binding() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "devenv-user", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "devenv-user"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"},
        ],
    })
}

fn quota() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "devenv", "namespace": NS, "annotations": {"devenv.io/tier": "large"}},
        "spec": {"hard": {"pods": "3", "requests.cpu": "6"}},
    })
}

fn statefulset(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS, "labels": {"devenv.io/workspace": name}},
        "spec": {
            "selector": {"matchLabels": {"devenv.io/workspace": name}},
            "serviceName": name,
            "template": {"metadata": {}, "spec": {"containers": []}},
            "volumeClaimTemplates": [
                {"metadata": {"name": "workspace"}},
                {"metadata": {"name": "history"}},
            ],
        },
    })
}

/// A cluster with tenant namespace `team-a` (labelled when `labelled`), holding workspaces
/// `w1` and `w2` and three claims.
fn cluster(labelled: bool) -> FakeApi {
    FakeApi::start(move |r: &Request| {
        let core = format!("/api/v1/namespaces/{NS}");
        let rbac = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings");
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", p) if p == core => (200, namespace(labelled)),
            ("GET", p) if p == format!("{core}/persistentvolumeclaims") => (
                200,
                list(
                    "PersistentVolumeClaimList",
                    vec![
                        claim("workspace-w1-0"),
                        claim("history-w1-0"),
                        claim("workspace-w2-0"),
                    ],
                ),
            ),
            ("GET", p) if p == format!("{rbac}/devenv-user") => (200, role_binding()),
            ("GET", p) if p == format!("{core}/resourcequotas/devenv") => (200, quota()),
            ("GET", p) if p == format!("/apis/apps/v1/namespaces/{NS}/statefulsets") => (
                200,
                list(
                    "StatefulSetList",
                    vec![statefulset("w1"), statefulset("w2")],
                ),
            ),
            // Each workspace object, read before it is deleted (labelled as its workspace).
            ("GET", p)
                if p.starts_with(&format!("/api/v1/namespaces/{NS}/"))
                    || p.starts_with(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets/"))
                    || p.starts_with(&format!(
                        "/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/"
                    )) =>
            {
                match p.rsplit('/').next() {
                    Some(name @ ("w1" | "w2")) => {
                        let (api_version, kind) = if p.contains("/statefulsets/") {
                            ("apps/v1", "StatefulSet")
                        } else if p.contains("/networkpolicies/") {
                            ("networking.k8s.io/v1", "NetworkPolicy")
                        } else if p.contains("/services/") {
                            ("v1", "Service")
                        } else {
                            ("v1", "ServiceAccount")
                        };
                        (
                            200,
                            json!({"apiVersion": api_version, "kind": kind,
                                   "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
                                                "labels": {"devenv.io/workspace": name}}}),
                        )
                    }
                    _ => (
                        404,
                        status(404, "NotFound", "not served by the fake API server"),
                    ),
                }
            }
            ("DELETE", _) => (200, status(200, "", "")),
            _ => (
                404,
                status(404, "NotFound", "not served by the fake API server"),
            ),
        }
    })
}

fn lines(requests: &[Request]) -> Vec<String> {
    requests.iter().map(Request::line).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn deletes(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(Request::line)
        .collect()
}

#[test]
fn remove_without_purge_never_deletes_a_claim_or_the_namespace() {
    let api = cluster(true);
    let out = api.run("default", &["tenant", "remove", NS]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let requests = api.requests();
    assert_eq!(
        lines(&requests),
        [
            "GET /api/v1/namespaces/team-a",
            "GET /api/v1/namespaces/team-a/persistentvolumeclaims",
            "GET /apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/devenv-user",
            "GET /api/v1/namespaces/team-a/resourcequotas/devenv",
            "DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/devenv-user",
            "GET /apis/apps/v1/namespaces/team-a/statefulsets?labelSelector=devenv.io/workspace",
            "GET /apis/apps/v1/namespaces/team-a/statefulsets/w1",
            "DELETE /apis/apps/v1/namespaces/team-a/statefulsets/w1",
            "GET /api/v1/namespaces/team-a/services/w1",
            "DELETE /api/v1/namespaces/team-a/services/w1",
            "GET /apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies/w1",
            "DELETE /apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies/w1",
            "GET /api/v1/namespaces/team-a/serviceaccounts/w1",
            "DELETE /api/v1/namespaces/team-a/serviceaccounts/w1",
            "GET /apis/apps/v1/namespaces/team-a/statefulsets/w2",
            "DELETE /apis/apps/v1/namespaces/team-a/statefulsets/w2",
            "GET /api/v1/namespaces/team-a/services/w2",
            "DELETE /api/v1/namespaces/team-a/services/w2",
            "GET /apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies/w2",
            "DELETE /apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies/w2",
            "GET /api/v1/namespaces/team-a/serviceaccounts/w2",
            "DELETE /api/v1/namespaces/team-a/serviceaccounts/w2",
        ]
    );
    for d in deletes(&requests) {
        assert!(
            !d.contains("persistentvolumeclaims"),
            "a claim was deleted without --purge: {d}"
        );
        assert_ne!(
            d, "DELETE /api/v1/namespaces/team-a",
            "the namespace was deleted without --purge"
        );
        assert!(
            !d.contains("resourcequotas") && !d.contains("limitranges"),
            "{d}"
        );
    }
    assert!(
        stdout.starts_with("rolebinding.rbac.authorization.k8s.io/devenv-user deleted\n"),
        "{stdout}"
    );
    assert!(stdout.contains("statefulset.apps/w2 deleted\n"), "{stdout}");
    assert!(
        stderr.contains("Kept namespace team-a, its quota and limits, and 3 claim(s)"),
        "{stderr}"
    );
    // How to get it back: the same users, groups and size.
    assert!(
        stderr.contains(
            "kubectl devenv tenant add team-a --user alice --group devs --workspaces 3 --tier large"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("kubectl devenv tenant remove team-a --purge"),
        "{stderr}"
    );
}

#[test]
fn remove_purge_backs_up_first_and_without_a_repository_deletes_nothing() {
    let api = cluster(true);
    let out = api.run("default", &["tenant", "remove", NS, "--purge", "--yes"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no backup repository") && stderr.contains("--no-backup"),
        "{stderr}"
    );
    assert!(
        deletes(&api.requests()).is_empty(),
        "{:?}",
        lines(&api.requests())
    );
}

#[test]
fn remove_purge_yes_deletes_the_namespace_only() {
    let api = cluster(true);
    let out = api.run(
        "default",
        &["tenant", "remove", NS, "--purge", "--yes", "--no-backup"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let requests = api.requests();
    assert_eq!(
        lines(&requests),
        [
            "GET /api/v1/namespaces/team-a",
            "GET /api/v1/namespaces/team-a/persistentvolumeclaims",
            "DELETE /api/v1/namespaces/team-a",
        ]
    );
    let body = requests[2].json();
    assert_eq!(body["propagationPolicy"], "Background", "{body}");
    assert!(body.get("dryRun").is_none(), "{body}");
    assert_eq!(stdout, "namespace/team-a deleted\n");
    assert!(stderr.contains("their 3 claim(s)"), "{stderr}");
    assert!(stderr.contains("deleted without a backup"), "{stderr}");
}

#[test]
fn remove_server_dry_run_sends_dry_run_deletes_only() {
    let api = cluster(true);
    let out = api.run(
        "default",
        &[
            "tenant",
            "remove",
            NS,
            "--purge",
            "--yes",
            "--dry-run=server",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let requests = api.requests();
    let dels: Vec<&Request> = requests.iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(dels.len(), 1);
    assert_eq!(dels[0].json()["dryRun"], json!(["All"]));
    assert_eq!(
        text(&out.stdout),
        "namespace/team-a deleted (server dry run)\n"
    );
}

#[test]
fn remove_refuses_a_namespace_not_labelled_as_the_tenant() {
    for purge in [false, true] {
        let api = cluster(false);
        let mut args = vec!["tenant", "remove", NS];
        if purge {
            args.extend(["--purge", "--yes"]);
        }
        let out = api.run("default", &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(
                r#"namespace "team-a" is not a devenv tenant: it is not labelled devenv.io/tenant=team-a"#
            ),
            "{stderr}"
        );
        assert_eq!(lines(&api.requests()), ["GET /api/v1/namespaces/team-a"]);
    }
}

#[test]
fn remove_purge_without_yes_or_terminal_sends_nothing() {
    let api = cluster(true);
    let out = api.run("default", &["tenant", "remove", NS, "--purge"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(lines(&api.requests()), Vec::<String>::new());
}

#[test]
fn remove_of_a_missing_tenant_says_how_to_list_them() {
    let api = FakeApi::start(|_| (404, status(404, "NotFound", "namespaces \"x\" not found")));
    let out = api.run("default", &["tenant", "remove", "gone"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tenant \"gone\" not found")
            && stderr.contains("kubectl devenv tenant list"),
        "{stderr}"
    );
    assert!(deletes(&api.requests()).is_empty());
}

/// `tenant add` on a cluster where the namespace does not exist yet and install has not
/// run: applies the four objects, in order, as server-side apply by kubectl-devenv, and
/// warns that the ClusterRole is missing.
#[test]
fn add_applies_the_four_objects_and_warns_without_the_cluster_role() {
    let api = FakeApi::start(|r: &Request| match r.method.as_str() {
        "PATCH" => {
            // Server-side apply answers with the object it stored.
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            (200, body)
        }
        _ => (404, status(404, "NotFound", "not found")),
    });
    let out = api.run(
        "default",
        &["tenant", "add", NS, "--user", "alice", "--workspaces", "2"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let requests = api.requests();
    let paths: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            // The installed policy (none here: the built-in default sizes the quota).
            "GET /api/v1/namespaces/devenv-system/configmaps/devenv-policy",
            "GET /api/v1/namespaces/team-a",
            "GET /apis/rbac.authorization.k8s.io/v1/clusterroles/devenv-user",
            "PATCH /api/v1/namespaces/team-a",
            "PATCH /api/v1/namespaces/team-a/resourcequotas/devenv",
            "PATCH /api/v1/namespaces/team-a/limitranges/devenv",
            "PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/devenv-user",
        ]
    );
    for r in requests.iter().filter(|r| r.method == "PATCH") {
        assert!(
            r.query
                .contains(&("fieldManager".to_owned(), "kubectl-devenv".to_owned())),
            "{}",
            r.line()
        );
        assert!(!r.query.iter().any(|(k, _)| k == "force"), "{}", r.line());
    }
    let quota = requests[4].json();
    assert_eq!(quota["spec"]["hard"]["requests.cpu"], "1");
    assert_eq!(quota["spec"]["hard"]["pods"], "2");
    assert!(
        stderr.contains("ClusterRole devenv-user does not exist")
            && stderr.contains("run kubectl devenv install first"),
        "{stderr}"
    );
    assert!(stdout.contains("namespace/team-a created\n"), "{stdout}");
    assert!(
        stdout.contains("tenant team-a: room for 2 workspace(s) of tier small"),
        "{stdout}"
    );
}

/// `tenant add` never takes over a namespace that is not the tenant's: nothing is applied.
#[test]
fn add_refuses_an_existing_namespace_that_is_not_the_tenants() {
    let api = FakeApi::start(|r: &Request| {
        if r.method == "GET" && r.path == "/api/v1/namespaces/team-a" {
            (200, namespace(false))
        } else {
            (404, status(404, "NotFound", "not found"))
        }
    });
    let out = api.run("default", &["tenant", "add", NS, "--user", "alice"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a devenv tenant"), "{stderr}");
    assert!(
        stderr.contains("kubectl label namespace team-a devenv.io/tenant=team-a"),
        "{stderr}"
    );
    assert!(
        !api.requests().iter().any(|r| r.method == "PATCH"),
        "{:?}",
        lines(&api.requests())
    );
}

/// Re-running `tenant add` with other users updates the binding and names who lost access.
#[test]
fn add_again_says_whose_access_it_removes() {
    let api = FakeApi::start(|r: &Request| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/namespaces/team-a") => (200, namespace(true)),
        ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/devenv-user") => (
            200,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "devenv-user"}, "rules": []}),
        ),
        (
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/devenv-user",
        ) => (200, role_binding()),
        ("PATCH", _) => (200, serde_json::from_slice(&r.body).unwrap_or(Value::Null)),
        _ => (404, status(404, "NotFound", "not found")),
    });
    let out = api.run(
        "default",
        &["tenant", "add", NS, "--user", "alice", "--user", "bob"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("namespace/team-a configured\n"), "{stdout}");
    assert!(stderr.contains("access removed for group devs"), "{stderr}");
    assert!(!stderr.contains("user alice"), "{stderr}");
    assert!(!stderr.contains("does not exist"), "{stderr}");
}
