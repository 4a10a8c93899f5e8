//! `kubectl devenv status`: is the webhook installed, trusted and healthy, and
//! what does the cluster offer workspaces (default storage, network policy).
//!
//! Each check is independent: one that may not be read (RBAC) says so and the
//! others still run. Exit code 1 when the webhook is missing or unhealthy.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ListParams;
use kube::Api;
use serde::Serialize;
use time::OffsetDateTime;

use devenv_shared::certs;
use devenv_shared::install::{
    self, NAME, POLICY_CONFIGMAP, POLICY_KEY, RENEW_BEFORE_DAYS, TLS_SECRET,
};

use crate::cli::{GlobalArgs, ObjectFormat, StatusArgs};
use crate::client::{self, Cluster};
use crate::error::chain;
use crate::output;

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

fn describe_endpoint(cc: &WebhookClientConfig) -> String {
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

fn forbidden_or(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => "unknown (not allowed to read it)".into(),
        other => format!("unknown ({})", chain(other)),
    }
}

/// The webhook's base URL from a webhook configuration URL (`.../mutate`).
pub fn base_url(url: &str) -> &str {
    url.trim_end_matches("/mutate")
        .trim_end_matches("/validate")
}

/// GETs `URL/healthz`, trusting only the CAs of the webhook's caBundle.
async fn url_health(url: &str, ca_bundle_pem: &str) -> Result<String, String> {
    let base: http::Uri = base_url(url)
        .parse()
        .map_err(|e| format!("invalid URL {url}: {e}"))?;
    let mut config = kube::Config::new(base);
    config.root_cert = Some(install::pem_certificates(ca_bundle_pem));
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    config.read_timeout = Some(std::time::Duration::from_secs(5));
    let client = kube::Client::try_from(config).map_err(|e| chain(&e))?;
    let req = http::Request::get("/healthz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client.request_text(req).await.map_err(|e| chain(&e))
}

async fn report(cluster: &Cluster, ns: &str) -> StatusReport {
    let c = cluster.client.clone();
    let mut r = StatusReport {
        server: cluster.server.clone(),
        install_namespace: ns.to_owned(),
        ..Default::default()
    };
    let now = OffsetDateTime::now_utc();

    // Webhook configurations.
    let mutating = Api::<MutatingWebhookConfiguration>::all(c.clone())
        .get_opt(NAME)
        .await;
    let validating = Api::<ValidatingWebhookConfiguration>::all(c.clone())
        .get_opt(NAME)
        .await;
    let mut client_config: Option<WebhookClientConfig> = None;
    let mut bundles: Vec<Option<String>> = Vec::new();
    match &mutating {
        Ok(Some(m)) => {
            let hooks = m.webhooks.clone().unwrap_or_default();
            r.mutating_webhook = format!("present ({} webhooks)", hooks.len());
            for h in hooks {
                bundles.push(
                    h.client_config
                        .ca_bundle
                        .clone()
                        .and_then(|b| String::from_utf8(b.0).ok()),
                );
                client_config.get_or_insert(h.client_config);
            }
        }
        Ok(None) => {
            r.mutating_webhook = "missing".into();
            r.problems.push(format!(
                "MutatingWebhookConfiguration {NAME} is missing: run kubectl devenv install"
            ));
        }
        Err(e) => r.mutating_webhook = forbidden_or(e),
    }
    match &validating {
        Ok(Some(v)) => {
            let hooks = v.webhooks.clone().unwrap_or_default();
            r.validating_webhook = format!("present ({} webhooks)", hooks.len());
            for h in hooks {
                bundles.push(
                    h.client_config
                        .ca_bundle
                        .clone()
                        .and_then(|b| String::from_utf8(b.0).ok()),
                );
                client_config.get_or_insert(h.client_config);
            }
        }
        Ok(None) => {
            r.validating_webhook = "missing".into();
            r.problems.push(format!(
                "ValidatingWebhookConfiguration {NAME} is missing: run kubectl devenv install"
            ));
        }
        Err(e) => r.validating_webhook = forbidden_or(e),
    }
    r.endpoint = client_config
        .as_ref()
        .map(describe_endpoint)
        .unwrap_or_else(|| "-".into());
    let url = client_config.as_ref().and_then(|cc| cc.url.clone());
    let bundle = bundles.iter().flatten().next().cloned();

    // Certificate: the TLS Secret for an in-cluster webhook; for a URL
    // webhook only its CA (in caBundle) can be seen from here.
    if url.is_none() {
        match Api::<Secret>::namespaced(c.clone(), ns)
            .get_opt(TLS_SECRET)
            .await
        {
            Ok(Some(s)) => {
                let text = |k: &str| {
                    s.data
                        .as_ref()
                        .and_then(|d| d.get(k))
                        .and_then(|b| String::from_utf8(b.0.clone()).ok())
                };
                match (text("tls.crt"), text("ca.crt")) {
                    (Some(crt), ca) => {
                        r.certificate = match certs::not_after(&crt) {
                            Ok(end) => {
                                let days = (end - now).whole_days();
                                if certs::needs_renewal(
                                    &crt,
                                    now,
                                    time::Duration::days(RENEW_BEFORE_DAYS),
                                ) {
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
                            && bundles.iter().all(|b| match (b, &ca) {
                                (Some(b), Some(ca)) => install::bundle_contains(b, ca),
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
                    }
                    (None, _) => {
                        r.certificate = "Secret has no tls.crt".into();
                        r.problems
                            .push(format!("Secret {ns}/{TLS_SECRET} has no tls.crt"));
                    }
                }
            }
            Ok(None) => {
                r.certificate = "missing".into();
                r.problems.push(format!(
                    "Secret {ns}/{TLS_SECRET} is missing: run kubectl devenv install (or let cert-manager issue it)"
                ));
            }
            Err(e) => r.certificate = forbidden_or(&e),
        }
    } else {
        r.certificate = match bundle.as_deref().map(certs::not_after) {
            Some(Ok(end)) => format!(
                "CA valid until {} (serving certificate: see the webhook's --cert-dir)",
                end.date()
            ),
            Some(Err(e)) => format!("caBundle unreadable: {e}"),
            None => "no caBundle".into(),
        };
        r.ca_bundle = if bundle.is_some() {
            "set".into()
        } else {
            "missing".into()
        };
    }

    // Health.
    r.webhook_health = match (&url, &bundle) {
        (Some(url), Some(bundle)) => match url_health(url, bundle).await {
            Ok(body) => format!("healthy ({}/healthz says {:?})", base_url(url), body.trim()),
            Err(e) => {
                r.problems.push(format!(
                    "the webhook at {} is not healthy: {e} (is devenv-webhook serve running there?)",
                    base_url(url)
                ));
                format!("unhealthy: {e}")
            }
        },
        (Some(url), None) => format!("{url}: cannot check without a caBundle"),
        (None, _) => match Api::<Deployment>::namespaced(c.clone(), ns)
            .get_opt(NAME)
            .await
        {
            Ok(Some(d)) => {
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let ready = d
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                if ready == 0 {
                    r.problems.push(format!(
                        "no webhook replica is ready: workspace pods cannot be created (kubectl -n {ns} describe deployment {NAME})"
                    ));
                }
                format!("Deployment {ns}/{NAME}: {ready}/{want} ready")
            }
            Ok(None) => {
                r.problems.push(format!(
                    "Deployment {ns}/{NAME} is missing: run kubectl devenv install"
                ));
                "Deployment missing".into()
            }
            Err(e) => forbidden_or(&e),
        },
    };

    // Storage.
    r.default_storage_class = match Api::<StorageClass>::all(c.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => {
            let defaults = default_storage_classes(&list.items);
            match defaults.as_slice() {
                [] => {
                    r.problems.push(
                        "the cluster has no default StorageClass: pass --storage-class to create, or set one in the policy".into(),
                    );
                    "none".into()
                }
                [one] => one.clone(),
                many => format!("{} (several defaults)", many.join(", ")),
            }
        }
        Err(e) => forbidden_or(&e),
    };

    // NetworkPolicy enforcement can only be guessed from the CNI.
    r.network_policy = match Api::<DaemonSet>::namespaced(c.clone(), "kube-system")
        .list(&ListParams::default())
        .await
    {
        Ok(list) => {
            let names: Vec<String> = list
                .items
                .into_iter()
                .filter_map(|d| d.metadata.name)
                .collect();
            match detect_cni(&names) {
                Some(cni) => format!("enforced ({cni})"),
                None => "unknown (no known enforcing CNI found in kube-system)".into(),
            }
        }
        Err(e) => forbidden_or(&e),
    };

    // Policy.
    r.policy = match Api::<ConfigMap>::namespaced(c, ns)
        .get_opt(POLICY_CONFIGMAP)
        .await
    {
        Ok(cm) => cm
            .and_then(|c| c.data)
            .and_then(|mut d| d.remove(POLICY_KEY)),
        Err(e) => Some(format!("# {}", forbidden_or(&e))),
    };
    r
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

pub async fn run(global: &GlobalArgs, args: &StatusArgs) -> Result<i32, crate::error::Error> {
    let cluster = client::connect(global).await?;
    // Fail fast, with the usual "cannot reach" error, if there is no cluster.
    cluster
        .client
        .apiserver_version()
        .await
        .map_err(cluster.err(crate::error::Action::new("get", "version", "version")))?;
    let r = report(&cluster, &global.install_namespace).await;
    match args.output {
        Some(f @ (ObjectFormat::Json | ObjectFormat::Yaml)) => {
            output::print(&[output::to_value(&r)?], f)?;
        }
        None => print!("{}", render_text(&r)),
    }
    Ok(if r.problems.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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
}
