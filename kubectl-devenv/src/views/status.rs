//! What `status` reports: each check's line (and problem) from what was read,
//! and the report as text. Pure: the caller reads the cluster and passes `now`.

use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::storage::v1::StorageClass;
use serde::Serialize;
use time::OffsetDateTime;

use devenv_shared::build::certs;
use devenv_shared::build::install::{NAME, RENEW_BEFORE_DAYS, TLS_SECRET};

use crate::pod_status;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub server: String,
    pub install_namespace: String,
    pub mutating_webhook: String,
    pub validating_webhook: String,
    /// Where the API server calls the webhook.
    pub endpoint: String,
    pub ca_bundle: String,
    pub certificate: String,
    pub webhook_health: String,
    pub default_storage_class: String,
    pub network_policy: String,
    /// Data safety: which of backup, volume expansion and snapshots this cluster offers.
    pub backup: String,
    pub expansion: String,
    pub snapshots: String,
    pub policy: Option<String>,
    pub problems: Vec<String>,
}

/// CNIs known to enforce NetworkPolicy, by the name of their DaemonSet in kube-system.
pub const ENFORCING_CNIS: [&str; 5] = ["calico", "cilium", "antrea", "kube-router", "weave"];

/// Which known NetworkPolicy-enforcing CNI runs, from kube-system's DaemonSet names.
pub fn detect_cni(daemonsets: &[String]) -> Option<&'static str> {
    ENFORCING_CNIS
        .into_iter()
        .find(|cni| daemonsets.iter().any(|d| d.contains(cni)))
}

/// The default StorageClass(es), by annotation.
pub fn default_storage_classes(classes: &[StorageClass]) -> Vec<String> {
    const KEYS: [&str; 2] = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ];
    classes
        .iter()
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| KEYS.iter().any(|k| a.get(*k).is_some_and(|v| v == "true")))
        })
        .filter_map(|c| c.metadata.name.clone())
        .collect()
}

/// Where the API server calls the webhook, as `status` says it.
pub fn describe_endpoint(cc: &WebhookClientConfig) -> String {
    match (&cc.service, &cc.url) {
        (Some(s), _) => format!(
            "service {}/{}:{}",
            s.namespace,
            s.name,
            s.port.unwrap_or(443)
        ),
        (None, Some(url)) => url.clone(),
        _ => "unset".into(),
    }
}

/// The webhook's base URL from a webhook configuration URL (`.../mutate`).
pub fn base_url(url: &str) -> &str {
    url.trim_end_matches("/mutate")
        .trim_end_matches("/validate")
}

/// `status`'s line for a webhook configuration (whose webhooks' client
/// configs are given, `None` when it is missing) and the problem, if any.
pub fn configuration_line(
    kind: &str,
    client_configs: Option<&[WebhookClientConfig]>,
) -> (String, Option<String>) {
    match client_configs {
        Some(hooks) => (format!("present ({} webhooks)", hooks.len()), None),
        None => (
            "missing".into(),
            Some(format!(
                "{kind} {NAME} is missing: run kubectl devenv install"
            )),
        ),
    }
}

/// The caBundle of a webhook client config, as text.
pub fn ca_bundle_text(cc: &WebhookClientConfig) -> Option<String> {
    cc.ca_bundle
        .clone()
        .and_then(|b| String::from_utf8(b.0).ok())
}

/// What `status` says about an in-cluster webhook's certificate: the TLS
/// Secret's `tls.crt` and `ca.crt` against the caBundles registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateCheck {
    pub certificate: String,
    pub ca_bundle: String,
    pub problems: Vec<String>,
}

/// Checks the TLS Secret `ns/devenv-webhook-tls` (its `tls.crt` and `ca.crt`,
/// `None` when absent) against the caBundles of the configurations.
pub fn check_tls_secret(
    ns: &str,
    crt: Option<&str>,
    ca: Option<&str>,
    bundles: &[Option<String>],
    now: OffsetDateTime,
) -> CertificateCheck {
    let mut r = CertificateCheck::default();
    let Some(crt) = crt else {
        r.certificate = "Secret has no tls.crt".into();
        r.problems
            .push(format!("Secret {ns}/{TLS_SECRET} has no tls.crt"));
        return r;
    };
    r.certificate = match certs::not_after(crt) {
        Ok(end) => {
            let days = (end - now).whole_days();
            if certs::needs_renewal(crt, now, time::Duration::days(RENEW_BEFORE_DAYS)) {
                r.problems.push(format!(
                    "the webhook certificate expires in {days} days: re-run kubectl devenv install to renew it"
                ));
            }
            format!("valid until {} ({days} days)", end.date())
        }
        Err(e) => {
            r.problems
                .push(format!("the webhook certificate cannot be read: {e}"));
            "unreadable".into()
        }
    };
    let all_match = !bundles.is_empty()
        && bundles.iter().all(|b| match (b, ca) {
            (Some(b), Some(ca)) => certs::bundle_contains(b, ca),
            _ => false,
        });
    r.ca_bundle = if all_match {
        "matches the TLS Secret".into()
    } else if bundles.is_empty() {
        "-".into()
    } else {
        r.problems.push(
            "caBundle does not match the TLS Secret's CA: the API server will reject the webhook's certificate (re-run kubectl devenv install)".into(),
        );
        "does NOT match the TLS Secret".into()
    };
    r
}

/// `status`'s certificate and caBundle lines for a webhook outside the
/// cluster: only its CA (in caBundle) can be seen from here.
pub fn url_certificate_lines(bundle: Option<&str>) -> (String, String) {
    let certificate = match bundle.map(certs::not_after) {
        Some(Ok(end)) => format!(
            "CA valid until {} (serving certificate: see the webhook's --cert-dir)",
            end.date()
        ),
        Some(Err(e)) => format!("caBundle unreadable: {e}"),
        None => "no caBundle".into(),
    };
    let ca_bundle = if bundle.is_some() { "set" } else { "missing" };
    (certificate, ca_bundle.into())
}

/// `status`'s health line for a webhook outside the cluster, from the answer
/// of its `/healthz`, and the problem, if any.
pub fn url_health_line(url: &str, answer: Result<String, String>) -> (String, Option<String>) {
    match answer {
        Ok(body) => (
            format!("healthy ({}/healthz says {:?})", base_url(url), body.trim()),
            None,
        ),
        Err(e) => (
            format!("unhealthy: {e}"),
            Some(format!(
                "the webhook at {} is not healthy: {e} (is devenv-webhook serve running there?)",
                base_url(url)
            )),
        ),
    }
}

/// What keeps the webhook's replicas from being Ready, one line per problem, read
/// from its pods (pure; `install` waits on it and `status` reports it): a pod the
/// scheduler cannot place, an image that cannot be pulled (with the image's name), a
/// crash (with the container's last log line, when `last_log` has it, keyed by
/// `(pod, container)`), or another waiting reason of the kubelet.
pub fn replica_blockers(
    pods: &[Pod],
    last_log: &std::collections::BTreeMap<(String, String), String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod_status::name(pod);
        if let Some(u) = pod_status::unschedulable(pod) {
            out.push(u.blocker(&name).reason);
            continue;
        }
        for p in pod_status::container_problems(pod) {
            let mut line = p.blocker(&name).reason;
            if matches!(
                p.reason.as_str(),
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName"
            ) {
                let image = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|c| c.name == p.container))
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                if !line.contains(&image) {
                    line.push_str(&format!(" (image {image})"));
                }
            }
            if let Some(log) = last_log.get(&(name.clone(), p.container.clone())) {
                line.push_str(&format!("; last log line: {}", log.trim()));
            }
            out.push(line);
        }
    }
    out
}

/// The (pod, container) pairs in CrashLoopBackOff or terminated with an error:
/// whose last log line [`replica_blockers`] would quote.
pub fn crashing_containers(pods: &[Pod]) -> Vec<(String, String)> {
    pods.iter()
        .flat_map(|pod| {
            let name = pod_status::name(pod);
            pod_status::container_problems(pod)
                .into_iter()
                .filter(|p| p.reason == "CrashLoopBackOff" || p.last_exit_code.is_some())
                .map(move |p| (name.clone(), p.container))
        })
        .collect()
}

/// `status`'s health line for the webhook Deployment (`None`: missing), and
/// the problem, if any: with what keeps replicas from being Ready
/// ([`replica_blockers`] of its pods) when not all are, or when a rollout is under way
/// and its new replicas are blocked (the previous ones still serve, so admission works,
/// but the new version never arrives: an image that cannot be pulled, say).
pub fn deployment_health_line(
    ns: &str,
    deployment: Option<&Deployment>,
    blockers: &[String],
) -> (String, Option<String>) {
    let Some(d) = deployment else {
        return (
            "Deployment missing".into(),
            Some(format!(
                "Deployment {ns}/{NAME} is missing: run kubectl devenv install"
            )),
        );
    };
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0);
    // A rollout is under way while the controller has not seen the latest spec, or
    // some of the replicas it runs are of an older template.
    let rolling = observed < generation || total > updated;
    let why = if blockers.is_empty() {
        String::new()
    } else {
        format!(": {}", blockers.join("; "))
    };
    let problem = if ready == 0 {
        Some(format!(
            "no webhook replica is ready: workspace pods cannot be created (kubectl -n {ns} describe deployment {NAME}){why}"
        ))
    } else if ready < want && !blockers.is_empty() {
        Some(format!("{ready}/{want} webhook replicas ready{why}"))
    } else if rolling && !blockers.is_empty() {
        Some(format!(
            "the webhook's rollout is stuck ({updated}/{want} replicas updated; the previous ones still serve){why}"
        ))
    } else {
        None
    };
    let mut line = format!("Deployment {ns}/{NAME}: {ready}/{want} ready");
    if rolling {
        line.push_str(&format!(", rollout in progress ({updated}/{want} updated)"));
    }
    (line, problem)
}

/// `status`'s default StorageClass line, and the problem, if any.
pub fn storage_line(classes: &[StorageClass]) -> (String, Option<String>) {
    let defaults = default_storage_classes(classes);
    match defaults.as_slice() {
        [] => (
            "none".into(),
            Some(
                "the cluster has no default StorageClass: pass --storage-class to create, or set one in the policy".into(),
            ),
        ),
        [one] => (one.clone(), None),
        many => (format!("{} (several defaults)", many.join(", ")), None),
    }
}

/// `status`'s NetworkPolicy line, from the names of kube-system's DaemonSets.
pub fn network_policy_line(daemonsets: &[String]) -> String {
    match detect_cni(daemonsets) {
        Some(cni) => format!("enforced ({cni})"),
        None => "unknown (no known enforcing CNI found in kube-system)".into(),
    }
}

/// `status`'s backup line: backups work on any storage; where they go by default.
pub fn backup_line(repository: Option<&str>) -> String {
    match repository {
        Some(r) => format!("yes, on any storage (backup.repository: {r})"),
        None => {
            "yes, on any storage, with --to REGISTRY/REPO (the policy sets no backup.repository)"
                .into()
        }
    }
}

/// `status`'s expansion line: the StorageClasses that let `scale --workspace-size` grow claims.
pub fn expansion_line(classes: &[StorageClass]) -> String {
    let growable: Vec<&str> = classes
        .iter()
        .filter(|c| c.allow_volume_expansion == Some(true))
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    if growable.is_empty() {
        "no: no StorageClass sets allowVolumeExpansion (scale --workspace-size is refused)".into()
    } else {
        format!("yes, on StorageClass {}", growable.join(", "))
    }
}

/// `status`'s snapshot line: whether `snapshot.storage.k8s.io/v1` is served, and its
/// VolumeSnapshotClasses (`None`: not served).
pub fn snapshot_line(classes: Option<&[String]>) -> String {
    match classes {
        None => "no: snapshot.storage.k8s.io/v1 is not served (install the CSI snapshot CRDs and controller); backups work without it".into(),
        Some([]) => "no: snapshot.storage.k8s.io/v1 is served but there is no VolumeSnapshotClass".into(),
        Some(c) => format!(
            "API served, VolumeSnapshotClass {} (kubectl devenv snapshot NAME; restore --from-snapshot SET --as NEW)",
            c.join(", ")
        ),
    }
}

pub fn render_text(r: &StatusReport) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<24}{v}\n"));
    line("API server:", &r.server);
    line("Install namespace:", &r.install_namespace);
    line("Mutating webhook:", &r.mutating_webhook);
    line("Validating webhook:", &r.validating_webhook);
    line("Endpoint:", &r.endpoint);
    line("caBundle:", &r.ca_bundle);
    line("Certificate:", &r.certificate);
    line("Webhook health:", &r.webhook_health);
    line("Default StorageClass:", &r.default_storage_class);
    line("NetworkPolicy:", &r.network_policy);
    line("Backups:", &r.backup);
    line("Volume expansion:", &r.expansion);
    line("Snapshots:", &r.snapshots);
    match &r.policy {
        Some(p) => {
            out.push_str("Policy in force:\n");
            for l in p.lines() {
                out.push_str("  ");
                out.push_str(l);
                out.push('\n');
            }
        }
        None => out.push_str(
            "Policy in force:        none installed (the built-in default applies to create)\n",
        ),
    }
    if r.problems.is_empty() {
        out.push_str("\nNo problems found.\n");
    } else {
        out.push_str("\nProblems:\n");
        for p in &r.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn data_safety_lines_say_what_the_cluster_offers_and_what_to_do() {
        let class = |name: &str, grow: Option<bool>| StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            allow_volume_expansion: grow,
            provisioner: "x".into(),
            ..Default::default()
        };
        assert_eq!(
            expansion_line(&[
                class("a", Some(true)),
                class("b", None),
                class("c", Some(true))
            ]),
            "yes, on StorageClass a, c"
        );
        assert!(expansion_line(&[class("b", Some(false))]).starts_with("no: "));
        assert!(snapshot_line(None).contains("not served"));
        assert!(snapshot_line(Some(&[])).contains("no VolumeSnapshotClass"));
        assert!(snapshot_line(Some(&["csi".to_owned()])).contains("VolumeSnapshotClass csi"));
        assert!(backup_line(Some("r/x")).contains("backup.repository: r/x"));
        assert!(backup_line(None).contains("--to"));
    }
    use std::collections::BTreeMap;

    #[test]
    fn known_cnis_are_detected() {
        assert_eq!(
            detect_cni(&["kube-proxy".into(), "calico-node".into()]),
            Some("calico")
        );
        assert_eq!(detect_cni(&["cilium".into()]), Some("cilium"));
        assert_eq!(detect_cni(&["kube-proxy".into(), "kindnet".into()]), None);
    }

    #[test]
    fn default_storage_class_by_annotation() {
        let sc = |name: &str, default: bool| StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: default.then(|| {
                    BTreeMap::from([(
                        "storageclass.kubernetes.io/is-default-class".to_owned(),
                        "true".to_owned(),
                    )])
                }),
                ..Default::default()
            },
            provisioner: "x".into(),
            ..Default::default()
        };
        assert_eq!(
            default_storage_classes(&[sc("a", false), sc("b", true)]),
            vec!["b"]
        );
        assert!(default_storage_classes(&[sc("a", false)]).is_empty());
    }

    #[test]
    fn text_report_lists_problems() {
        let r = StatusReport {
            problems: vec!["x is missing".into()],
            ..Default::default()
        };
        let t = render_text(&r);
        assert!(t.contains("Problems:\n  - x is missing"));
    }

    fn bundle(days: i64) -> certs::CertBundle {
        certs::generate(
            &["devenv-webhook.devenv-system.svc".to_owned()],
            time::Duration::days(days),
        )
        .unwrap()
    }

    #[test]
    fn tls_secret_is_checked_against_the_registered_bundles() {
        let now = OffsetDateTime::now_utc();
        let good = bundle(365);
        let registered = vec![
            Some(good.ca_cert_pem.clone()),
            Some(good.ca_cert_pem.clone()),
        ];
        let c = check_tls_secret(
            "devenv-system",
            Some(&good.cert_pem),
            Some(&good.ca_cert_pem),
            &registered,
            now,
        );
        assert!(c.certificate.starts_with("valid until "), "{c:?}");
        assert_eq!(c.ca_bundle, "matches the TLS Secret");
        assert!(c.problems.is_empty(), "{c:?}");

        // Another CA registered: the API server would reject the certificate.
        let other = bundle(365);
        let c = check_tls_secret(
            "devenv-system",
            Some(&good.cert_pem),
            Some(&good.ca_cert_pem),
            &[Some(other.ca_cert_pem)],
            now,
        );
        assert_eq!(c.ca_bundle, "does NOT match the TLS Secret");
        assert!(c.problems[0].contains("caBundle does not match"), "{c:?}");

        // Close to expiry: renew.
        let soon = bundle(10);
        let c = check_tls_secret(
            "devenv-system",
            Some(&soon.cert_pem),
            Some(&soon.ca_cert_pem),
            &[Some(soon.ca_cert_pem.clone())],
            now,
        );
        assert!(
            c.problems[0].contains("re-run kubectl devenv install to renew"),
            "{c:?}"
        );

        let c = check_tls_secret("devenv-system", None, None, &[], now);
        assert_eq!(c.certificate, "Secret has no tls.crt");
        assert_eq!(
            c.problems,
            ["Secret devenv-system/devenv-webhook-tls has no tls.crt"]
        );
        let c = check_tls_secret("devenv-system", Some("garbage"), None, &[], now);
        assert_eq!(
            (c.certificate.as_str(), c.ca_bundle.as_str()),
            ("unreadable", "-")
        );
    }

    #[test]
    fn lines_and_problems_of_each_check() {
        let (line, problem) = configuration_line("MutatingWebhookConfiguration", None);
        assert_eq!(line, "missing");
        assert_eq!(
            problem.as_deref(),
            Some("MutatingWebhookConfiguration devenv-webhook is missing: run kubectl devenv install")
        );
        let hooks = vec![WebhookClientConfig::default(); 2];
        assert_eq!(
            configuration_line("x", Some(&hooks)),
            ("present (2 webhooks)".to_owned(), None)
        );

        let (line, problem) = url_health_line("https://127.0.0.1:8443/mutate", Ok("ok\n".into()));
        assert_eq!(
            line,
            r#"healthy (https://127.0.0.1:8443/healthz says "ok")"#
        );
        assert!(problem.is_none());
        let (line, problem) =
            url_health_line("https://127.0.0.1:8443/validate", Err("refused".into()));
        assert_eq!(line, "unhealthy: refused");
        assert!(problem
            .unwrap()
            .contains("the webhook at https://127.0.0.1:8443 is not healthy"));
        assert_eq!(
            url_certificate_lines(None),
            ("no caBundle".to_owned(), "missing".to_owned())
        );

        let (line, problem) = deployment_health_line("devenv-system", None, &[]);
        assert_eq!(line, "Deployment missing");
        assert!(problem.unwrap().contains("run kubectl devenv install"));
        let d = Deployment {
            spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec {
                replicas: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (line, problem) = deployment_health_line("devenv-system", Some(&d), &[]);
        assert_eq!(line, "Deployment devenv-system/devenv-webhook: 0/2 ready");
        assert!(problem.unwrap().starts_with("no webhook replica is ready"));

        // With a blocker, status names it.
        let (_, problem) = deployment_health_line(
            "devenv-system",
            Some(&d),
            &["pod p container webhook: ImagePullBackOff".to_owned()],
        );
        assert!(problem
            .unwrap()
            .ends_with(": pod p container webhook: ImagePullBackOff"));

        // All Ready, but a rollout whose new replica cannot start: the line says the
        // rollout is under way and the problem names what blocks it.
        let rolling: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"generation": 3},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 3, "replicas": 3, "readyReplicas": 2,
                       "updatedReplicas": 1}
        }))
        .expect("a Deployment");
        let blocked = ["pod new container webhook: ImagePullBackOff (image x)".to_owned()];
        let (line, problem) = deployment_health_line("devenv-system", Some(&rolling), &blocked);
        assert_eq!(
            line,
            "Deployment devenv-system/devenv-webhook: 2/2 ready, rollout in progress (1/2 updated)"
        );
        let problem = problem.expect("a stuck rollout is a problem");
        assert!(
            problem.starts_with("the webhook's rollout is stuck (1/2 replicas updated")
                && problem.ends_with("ImagePullBackOff (image x)"),
            "{problem}"
        );
        // A rollout with nothing blocking it yet is progress, not a problem.
        assert!(deployment_health_line("devenv-system", Some(&rolling), &[])
            .1
            .is_none());
        // Done: updated, observed, ready.
        let done: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"generation": 3},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 2,
                       "updatedReplicas": 2}
        }))
        .expect("a Deployment");
        assert_eq!(
            deployment_health_line("devenv-system", Some(&done), &[]),
            (
                "Deployment devenv-system/devenv-webhook: 2/2 ready".to_owned(),
                None
            )
        );

        let (line, problem) = storage_line(&[]);
        assert_eq!(line, "none");
        assert!(problem.unwrap().contains("no default StorageClass"));
        assert_eq!(
            network_policy_line(&["calico-node".into()]),
            "enforced (calico)"
        );
        assert!(network_policy_line(&[]).starts_with("unknown"));
    }

    fn webhook_pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [
                {"name": "webhook", "image": "registry.example/devenv-webhook:9"},
                {"name": "lifecycle", "image": "registry.example/devenv-webhook:9"}
            ]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn replica_blockers_name_the_image_the_scheduler_and_the_crash() {
        let pull = webhook_pod(
            "w-1",
            serde_json::json!({"phase": "Pending", "containerStatuses": [
                {"name": "webhook", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                 "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}}}
            ]}),
        );
        let unsched = webhook_pod(
            "w-2",
            serde_json::json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/1 nodes are available: 1 Insufficient cpu."}
            ]}),
        );
        let crash = webhook_pod(
            "w-3",
            serde_json::json!({"phase": "Running", "containerStatuses": [
                {"name": "lifecycle", "ready": false, "restartCount": 3, "image": "x", "imageID": "",
                 "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                 "lastState": {"terminated": {"exitCode": 1}}}
            ]}),
        );
        let ready = webhook_pod("w-4", serde_json::json!({"phase": "Running"}));
        let pods = vec![pull, unsched, crash, ready];
        assert_eq!(
            crashing_containers(&pods),
            vec![("w-3".to_owned(), "lifecycle".to_owned())]
        );
        let logs = std::collections::BTreeMap::from([(
            ("w-3".to_owned(), "lifecycle".to_owned()),
            "Error: cannot configure the Kubernetes client\n".to_owned(),
        )]);
        let b = replica_blockers(&pods, &logs);
        assert_eq!(b.len(), 3, "{b:?}");
        assert!(
            b[0].contains("pod w-1 container webhook: ImagePullBackOff"),
            "{}",
            b[0]
        );
        assert!(
            b[0].contains("registry.example/devenv-webhook:9"),
            "{}",
            b[0]
        );
        assert!(
            b[1].contains("pod w-2 is Pending (Unschedulable)"),
            "{}",
            b[1]
        );
        assert!(b[1].contains("Insufficient cpu"), "{}", b[1]);
        assert!(
            b[2].contains("pod w-3 container lifecycle: CrashLoopBackOff"),
            "{}",
            b[2]
        );
        assert!(
            b[2].ends_with("last log line: Error: cannot configure the Kubernetes client"),
            "{}",
            b[2]
        );
        assert!(replica_blockers(&pods[3..], &logs).is_empty());
    }
}
