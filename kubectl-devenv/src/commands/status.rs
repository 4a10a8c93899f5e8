//! `kubectl devenv status`: is the webhook installed, trusted and healthy, and
//! what does the cluster offer workspaces (default storage, network policy).
//! The calls are here; what each answer means, and the text, in
//! [`crate::views::status`].
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
use time::OffsetDateTime;

use devenv_shared::build::certs;
use devenv_shared::build::install::{NAME, POLICY_CONFIGMAP, POLICY_KEY, TLS_SECRET};

use crate::cli::{GlobalArgs, ObjectFormat, StatusArgs};
use crate::client::{self, Cluster};
use crate::error::chain;
use crate::output;
use crate::views::status::{
    backup_line, base_url, ca_bundle_text, check_tls_secret, configuration_line,
    deployment_health_line, describe_endpoint, expansion_line, network_policy_line, render_text,
    snapshot_line, storage_line, url_certificate_lines, url_health_line, StatusReport,
};

fn forbidden_or(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => "unknown (not allowed to read it)".into(),
        other => format!("unknown ({})", chain(other)),
    }
}

/// GETs `URL/healthz`, trusting only the CAs of the webhook's caBundle.
async fn url_health(url: &str, ca_bundle_pem: &str) -> Result<String, String> {
    let base: http::Uri = base_url(url)
        .parse()
        .map_err(|e| format!("invalid URL {url}: {e}"))?;
    let mut config = kube::Config::new(base);
    config.root_cert = Some(certs::pem_certificates(ca_bundle_pem));
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    config.read_timeout = Some(std::time::Duration::from_secs(5));
    let client = kube::Client::try_from(config).map_err(|e| chain(&e))?;
    let req = http::Request::get("/healthz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client.request_text(req).await.map_err(|e| chain(&e))
}

/// Every check of `status`, for its text and JSON and for the portal's admin view.
pub(crate) async fn report(cluster: &Cluster, ns: &str) -> StatusReport {
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
        .await
        .map(|m| {
            m.map(|m| {
                m.webhooks
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| h.client_config)
                    .collect::<Vec<_>>()
            })
        });
    let validating = Api::<ValidatingWebhookConfiguration>::all(c.clone())
        .get_opt(NAME)
        .await
        .map(|v| {
            v.map(|v| {
                v.webhooks
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| h.client_config)
                    .collect::<Vec<_>>()
            })
        });
    let mut client_configs: Vec<WebhookClientConfig> = Vec::new();
    for (kind, found, line) in [
        (
            "MutatingWebhookConfiguration",
            mutating,
            &mut r.mutating_webhook,
        ),
        (
            "ValidatingWebhookConfiguration",
            validating,
            &mut r.validating_webhook,
        ),
    ] {
        match found {
            Ok(configs) => {
                let (text, problem) = configuration_line(kind, configs.as_deref());
                *line = text;
                r.problems.extend(problem);
                client_configs.extend(configs.unwrap_or_default());
            }
            Err(e) => *line = forbidden_or(&e),
        }
    }
    let bundles: Vec<Option<String>> = client_configs.iter().map(ca_bundle_text).collect();
    let client_config = client_configs.first();
    r.endpoint = client_config
        .map(describe_endpoint)
        .unwrap_or_else(|| "-".into());
    let url = client_config.and_then(|cc| cc.url.clone());
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
                let (crt, ca) = (text("tls.crt"), text("ca.crt"));
                let check = check_tls_secret(ns, crt.as_deref(), ca.as_deref(), &bundles, now);
                r.certificate = check.certificate;
                r.ca_bundle = check.ca_bundle;
                r.problems.extend(check.problems);
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
        (r.certificate, r.ca_bundle) = url_certificate_lines(bundle.as_deref());
    }

    // Health.
    r.webhook_health = match (&url, &bundle) {
        (Some(url), Some(bundle)) => {
            let (line, problem) = url_health_line(url, url_health(url, bundle).await);
            r.problems.extend(problem);
            line
        }
        (Some(url), None) => format!("{url}: cannot check without a caBundle"),
        (None, _) => match Api::<Deployment>::namespaced(c.clone(), ns)
            .get_opt(NAME)
            .await
        {
            Ok(d) => {
                let blockers = crate::commands::install::current_blockers(cluster, ns)
                    .await
                    .unwrap_or_default();
                let (line, problem) = deployment_health_line(ns, d.as_ref(), &blockers);
                r.problems.extend(problem);
                line
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
            let (line, problem) = storage_line(&list.items);
            r.problems.extend(problem);
            r.expansion = expansion_line(&list.items);
            line
        }
        Err(e) => {
            r.expansion = forbidden_or(&e);
            forbidden_or(&e)
        }
    };

    // Data safety: backups need only a registry; snapshots need the snapshot API.
    let installed = crate::commands::installed_policy(cluster, ns)
        .await
        .ok()
        .flatten();
    r.backup = backup_line(
        installed
            .as_ref()
            .and_then(|(p, _)| p.backup.repository.as_deref()),
    );
    r.snapshots = match c
        .list_api_group_resources("snapshot.storage.k8s.io/v1")
        .await
    {
        // Discovery of a group that is not served: 404 (as a Status, or a bare body).
        Err(e)
            if matches!(&e, kube::Error::Api(s) if s.code == 404)
                || e.to_string().contains("404") =>
        {
            snapshot_line(None)
        }
        Err(e) => forbidden_or(&e),
        Ok(_) => {
            let gvk = kube::api::GroupVersionKind::gvk(
                "snapshot.storage.k8s.io",
                "v1",
                "VolumeSnapshotClass",
            );
            let resource = kube::api::ApiResource::from_gvk(&gvk);
            match Api::<kube::api::DynamicObject>::all_with(c.clone(), &resource)
                .list(&ListParams::default())
                .await
            {
                Ok(list) => {
                    let names: Vec<String> = list
                        .items
                        .into_iter()
                        .filter_map(|o| o.metadata.name)
                        .collect();
                    snapshot_line(Some(&names))
                }
                Err(e) => forbidden_or(&e),
            }
        }
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
            network_policy_line(&names)
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

pub async fn run(global: &GlobalArgs, args: &StatusArgs) -> Result<i32, crate::error::Error> {
    let cluster = client::connect(global).await?;
    // Fail fast, with the usual "cannot reach" error, if there is no cluster.
    cluster
        .client
        .apiserver_version()
        .await
        .map_err(cluster.err(crate::error::ApiCall::new("get", "version", "version")))?;
    let r = report(&cluster, &global.install_namespace).await;
    match args.output {
        Some(f @ (ObjectFormat::Json | ObjectFormat::Yaml)) => {
            output::print(&[output::to_value(&r)?], f)?;
        }
        None => print!("{}", render_text(&r)),
    }
    Ok(if r.problems.is_empty() { 0 } else { 1 })
}
