//! `kubectl devenv install` / `uninstall`.
//!
//! Install is server-side apply of [`devenv_shared::build::install::build`]'s objects,
//! so re-running it upgrades in place. The certificate is reused while it is
//! valid for more than 30 days and has the right names; otherwise a new one is
//! made, and the previous CA stays in caBundle next to the new one so webhook
//! pods still serving the old certificate keep working until they reload it.

use std::path::Path;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use time::{Duration, OffsetDateTime};

use devenv_shared::build::certs;
use devenv_shared::build::install;
use devenv_shared::build::install::{
    Endpoint, InstallObjects, InstallSpec, Tls, NAME, POLICY_CONFIGMAP, RENEW_BEFORE_DAYS,
    TLS_SECRET,
};
use devenv_shared::model::policy::Policy;

use crate::cli::{DryRun, GlobalArgs, InstallArgs, ObjectFormat, UninstallArgs};
use crate::client::{self, Cluster};
use crate::commands::{apply_owned, get_opt, installed_policy, read_policy_file};
use crate::error::{ApiCall, Error};
use crate::output;
use crate::views::status::{crashing_containers, replica_blockers};

/// The certificate found in the cluster (or in --cert-dir).
#[derive(Clone, PartialEq, Eq)]
pub struct ExistingTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    /// caBundle currently registered, if any.
    pub registered_bundle: Option<String>,
}

/// What install does about the certificate, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPlan {
    /// Keep the existing one: re-running install changes nothing.
    Reuse,
    /// Make a new one.
    Renew(String),
}

/// Decides whether the existing certificate can stay. Pure, for tests.
pub fn plan_tls(
    existing: Option<&ExistingTls>,
    wanted_sans: &[String],
    now: OffsetDateTime,
) -> TlsPlan {
    let Some(e) = existing else {
        return TlsPlan::Renew("no certificate yet".into());
    };
    if e.key_pem.trim().is_empty() || certs::pem_certificates(&e.ca_pem).is_empty() {
        return TlsPlan::Renew("the stored certificate is incomplete".into());
    }
    let end = match certs::not_after(&e.cert_pem) {
        Ok(end) => end,
        Err(err) => return TlsPlan::Renew(format!("the stored certificate cannot be read: {err}")),
    };
    if certs::needs_renewal(&e.cert_pem, now, Duration::days(RENEW_BEFORE_DAYS)) {
        return TlsPlan::Renew(format!(
            "it expires on {} (within {RENEW_BEFORE_DAYS} days)",
            end.date()
        ));
    }
    match certs::cert_sans(&e.cert_pem) {
        Ok(sans) if certs::sans_match(&sans, wanted_sans) => TlsPlan::Reuse,
        Ok(sans) => TlsPlan::Renew(format!(
            "its names changed (has {}, needs {})",
            sans.join(", "),
            wanted_sans.join(", ")
        )),
        Err(err) => TlsPlan::Renew(format!("the stored certificate cannot be read: {err}")),
    }
}

/// The TLS material to install according to the plan.
pub fn make_tls(
    plan: &TlsPlan,
    existing: Option<&ExistingTls>,
    sans: &[String],
    now: OffsetDateTime,
) -> Result<Tls, Error> {
    match (plan, existing) {
        (TlsPlan::Reuse, Some(e)) => {
            // Keep a registered bundle that still trusts our CA (it may hold
            // the previous CA during a rotation): nothing changes on re-run.
            let bundle = e
                .registered_bundle
                .clone()
                .filter(|b| certs::bundle_contains(b, &e.ca_pem))
                .unwrap_or_else(|| e.ca_pem.clone());
            Ok(Tls {
                ca_bundle: bundle,
                ca_cert_pem: e.ca_pem.clone(),
                cert_pem: e.cert_pem.clone(),
                key_pem: e.key_pem.clone(),
            })
        }
        _ => {
            let fresh = certs::generate(sans, Duration::days(install::CERT_VALIDITY_DAYS))
                .map_err(|e| {
                    Error::Other(anyhow::anyhow!("generating the webhook certificate: {e}"))
                })?;
            let mut bundle = fresh.ca_cert_pem.clone();
            // Trust the old CA too while it is valid: pods reload the new
            // certificate only when kubelet refreshes the mounted Secret.
            if let Some(old) = existing {
                let old_valid = certs::not_after(&old.ca_pem).is_ok_and(|end| end > now);
                if old_valid && !certs::pem_certificates(&old.ca_pem).is_empty() {
                    if !bundle.ends_with('\n') {
                        bundle.push('\n');
                    }
                    bundle.push_str(&old.ca_pem);
                }
            }
            Ok(Tls {
                ca_bundle: bundle,
                ca_cert_pem: fresh.ca_cert_pem,
                cert_pem: fresh.cert_pem,
                key_pem: fresh.key_pem,
            })
        }
    }
}

/// The built-in policy as YAML.
pub fn default_policy_yaml() -> Result<String, Error> {
    serde_yaml::to_string(&Policy::default()).map_err(|e| Error::Other(e.into()))
}

fn endpoint(args: &InstallArgs) -> Endpoint {
    match &args.webhook_url {
        Some(url) => Endpoint::Url(url.clone()),
        None => Endpoint::Service,
    }
}

/// Objects for `install --dry-run=client`: no cluster is read, so a fresh
/// certificate is generated (or none with --no-certs).
pub fn offline_objects(global: &GlobalArgs, args: &InstallArgs) -> Result<InstallObjects, Error> {
    let policy_yaml = match &args.policy_file {
        Some(path) => read_policy_file(path)?.1,
        None => default_policy_yaml()?,
    };
    let mut spec = InstallSpec::new(&global.install_namespace, &policy_yaml);
    spec.image = args.image.clone();
    spec.replicas = args.replicas;
    spec.endpoint = endpoint(args);
    let sans = install::sans(&spec.namespace, &spec.endpoint)?;
    if !args.no_certs {
        let now = OffsetDateTime::now_utc();
        spec.tls = Some(make_tls(
            &TlsPlan::Renew("dry run".into()),
            None,
            &sans,
            now,
        )?);
    }
    Ok(install::build(&spec)?)
}

fn read_cert_dir(dir: &Path) -> Option<ExistingTls> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    Some(ExistingTls {
        cert_pem: read("tls.crt")?,
        key_pem: read("tls.key")?,
        ca_pem: read("ca.crt")?,
        registered_bundle: None,
    })
}

fn write_cert_dir(dir: &Path, tls: &Tls) -> Result<(), Error> {
    let io = |e: std::io::Error| {
        Error::Other(anyhow::anyhow!(
            "writing certificates to {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(dir.join("tls.crt"), &tls.cert_pem).map_err(io)?;
    std::fs::write(dir.join("ca.crt"), &tls.ca_cert_pem).map_err(io)?;
    write_private(&dir.join("tls.key"), &tls.key_pem).map_err(io)
}

/// Writes a private key readable by its owner only.
#[cfg(unix)]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its old mode on open: tighten it explicitly.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(content.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, content)
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

pub async fn install(global: &GlobalArgs, args: &InstallArgs) -> Result<i32, Error> {
    let dry_run = args.change.dry_run;
    let ns = global.install_namespace.clone();
    if dry_run == DryRun::Client {
        let objects = offline_objects(global, args)?;
        output::print(
            &objects.to_values().map_err(anyhow::Error::from)?,
            args.change.output.unwrap_or(ObjectFormat::Yaml),
        )?;
        return Ok(0);
    }
    if args.webhook_url.is_some() && args.cert_dir.is_none() && !args.no_certs {
        return Err(Error::Usage(
            "--webhook-url needs --cert-dir DIR: the certificate the webhook serves is kept there \
             (start it with: devenv-webhook serve --cert-dir DIR ...), or pass --no-certs"
                .into(),
        ));
    }

    let cluster = client::connect(global).await?;
    let c = cluster.client.clone();
    let end = endpoint(args);
    let mut spec = InstallSpec::new(&ns, "");
    spec.image = args.image.clone();
    spec.replicas = args.replicas;
    spec.endpoint = end.clone();

    // The policy: the file given, else keep what is installed, else the default.
    spec.policy_yaml = match &args.policy_file {
        Some(path) => read_policy_file(path)?.1,
        None => match installed_policy(&cluster, &ns).await? {
            Some((_, yaml)) => yaml,
            None => default_policy_yaml()?,
        },
    };

    let sans = install::sans(&ns, &end)?;
    let mutating_api: Api<MutatingWebhookConfiguration> = Api::all(c.clone());
    let secret_api: Api<Secret> = Api::namespaced(c.clone(), &ns);
    let mut cert_note =
        String::from("none (--no-certs: cert-manager or an out-of-band Secret provides it)");
    if !args.no_certs {
        let registered_bundle = get_opt(
            &cluster,
            &mutating_api,
            NAME,
            ApiCall::new(
                "get",
                "mutatingwebhookconfigurations.admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
            ),
        )
        .await?
        .and_then(|m| m.webhooks)
        .and_then(|w| w.into_iter().next())
        .and_then(|w| w.client_config.ca_bundle)
        .and_then(|b| String::from_utf8(b.0).ok());
        let existing = match (&end, &args.cert_dir) {
            (Endpoint::Url(_), Some(dir)) => read_cert_dir(dir),
            _ => get_opt(
                &cluster,
                &secret_api,
                TLS_SECRET,
                ApiCall::new("get", "secrets", "Secret").ns(&ns),
            )
            .await?
            .and_then(|s| {
                Some(ExistingTls {
                    cert_pem: secret_text(&s, "tls.crt")?,
                    key_pem: secret_text(&s, "tls.key")?,
                    ca_pem: secret_text(&s, "ca.crt")?,
                    registered_bundle: None,
                })
            }),
        }
        .map(|mut e| {
            e.registered_bundle = registered_bundle;
            e
        });
        let now = OffsetDateTime::now_utc();
        let plan = plan_tls(existing.as_ref(), &sans, now);
        let tls = make_tls(&plan, existing.as_ref(), &sans, now)?;
        let expires = certs::not_after(&tls.cert_pem)
            .map(|t| t.date().to_string())
            .unwrap_or_else(|_| "unknown".into());
        cert_note = match &plan {
            TlsPlan::Reuse => format!("reused (valid until {expires})"),
            TlsPlan::Renew(why) => format!("new, valid until {expires} ({why})"),
        };
        if let (Endpoint::Url(_), Some(dir), TlsPlan::Renew(_), DryRun::None) =
            (&end, &args.cert_dir, &plan, dry_run)
        {
            write_cert_dir(dir, &tls)?;
            cert_note.push_str(&format!(
                "; written to {} — restart the webhook with --cert-dir {}",
                dir.display(),
                dir.display()
            ));
        }
        spec.tls = Some(tls);
    }
    let objects = install::build(&spec)?;

    // The namespace: created (and labelled as ours) only when missing; an
    // existing namespace of someone else's is left exactly as it is, so
    // uninstall will never delete it.
    let ns_api: Api<Namespace> = Api::all(c.clone());
    let mut existing_ns = get_opt(
        &cluster,
        &ns_api,
        &ns,
        ApiCall::new("get", "namespaces", "Namespace"),
    )
    .await?;
    // Right after an uninstall the namespace is still terminating and the API server
    // refuses new objects in it: wait for it to go rather than fail half-way.
    if dry_run == DryRun::None {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while existing_ns
            .as_ref()
            .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
        {
            if std::time::Instant::now() > deadline {
                return Err(Error::Other(anyhow::anyhow!(
                    "namespace {ns} is still being deleted after 3 minutes (a previous \
                     uninstall); check `kubectl get namespace {ns} -o yaml` for what holds it, \
                     then run install again"
                )));
            }
            eprintln!(
                "namespace {ns} is being deleted (a previous uninstall); waiting for it to go"
            );
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            existing_ns = get_opt(
                &cluster,
                &ns_api,
                &ns,
                ApiCall::new("get", "namespaces", "Namespace"),
            )
            .await?;
        }
    }
    let mut applied = Vec::new();
    let apply_ns = existing_ns.as_ref().is_none_or(install::is_our_namespace);
    if apply_ns {
        applied.push(output::to_value(
            &apply_owned(
                &cluster,
                &ns_api,
                &objects.namespace,
                dry_run,
                ApiCall::new("patch", "namespaces", "Namespace"),
            )
            .await?,
        )?);
    } else {
        eprintln!(
            "namespace {ns} exists and is not managed by kubectl-devenv: leaving it as it is"
        );
    }
    let nsd = |verb, res, kind| ApiCall::new(verb, res, kind).ns(&ns);
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &Api::<ServiceAccount>::namespaced(c.clone(), &ns),
            &objects.service_account,
            dry_run,
            nsd("patch", "serviceaccounts", "ServiceAccount"),
        )
        .await?,
    )?);
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &Api::<ClusterRole>::all(c.clone()),
            &objects.cluster_role,
            dry_run,
            ApiCall::new(
                "patch",
                "clusterroles.rbac.authorization.k8s.io",
                "ClusterRole",
            ),
        )
        .await?,
    )?);
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &Api::<ClusterRoleBinding>::all(c.clone()),
            &objects.cluster_role_binding,
            dry_run,
            ApiCall::new(
                "patch",
                "clusterrolebindings.rbac.authorization.k8s.io",
                "ClusterRoleBinding",
            ),
        )
        .await?,
    )?);
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &Api::<Role>::namespaced(c.clone(), &ns),
            &objects.role,
            dry_run,
            nsd("patch", "roles.rbac.authorization.k8s.io", "Role"),
        )
        .await?,
    )?);
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &Api::<RoleBinding>::namespaced(c.clone(), &ns),
            &objects.role_binding,
            dry_run,
            nsd(
                "patch",
                "rolebindings.rbac.authorization.k8s.io",
                "RoleBinding",
            ),
        )
        .await?,
    )?);
    // What a tenant's users may do in their namespace (`tenant add` binds it), and the
    // policy every authenticated user may read.
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &Api::<ClusterRole>::all(c.clone()),
            &objects.user_role,
            dry_run,
            ApiCall::new(
                "patch",
                "clusterroles.rbac.authorization.k8s.io",
                "ClusterRole",
            ),
        )
        .await?,
    )?);
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &Api::<Role>::namespaced(c.clone(), &ns),
            &objects.policy_reader,
            dry_run,
            nsd("patch", "roles.rbac.authorization.k8s.io", "Role"),
        )
        .await?,
    )?);
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &Api::<RoleBinding>::namespaced(c.clone(), &ns),
            &objects.policy_reader_binding,
            dry_run,
            nsd(
                "patch",
                "rolebindings.rbac.authorization.k8s.io",
                "RoleBinding",
            ),
        )
        .await?,
    )?);
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &Api::<ConfigMap>::namespaced(c.clone(), &ns),
            &objects.config_map,
            dry_run,
            nsd("patch", "configmaps", "ConfigMap"),
        )
        .await?,
    )?);
    if let Some(secret) = &objects.secret {
        let s = apply_owned(
            &cluster,
            &secret_api,
            secret,
            dry_run,
            nsd("patch", "secrets", "Secret"),
        )
        .await?;
        // The live private key is never printed.
        applied.push(output::redact_secret(output::to_value(&s)?));
    }
    if let Some(svc) = &objects.service {
        applied.push(output::to_value(
            &apply_owned(
                &cluster,
                &Api::<Service>::namespaced(c.clone(), &ns),
                svc,
                dry_run,
                nsd("patch", "services", "Service"),
            )
            .await?,
        )?);
    }
    if let Some(d) = &objects.deployment {
        applied.push(output::to_value(
            &apply_owned(
                &cluster,
                &Api::<Deployment>::namespaced(c.clone(), &ns),
                d,
                dry_run,
                nsd("patch", "deployments.apps", "Deployment"),
            )
            .await?,
        )?);
    }
    if let Some(p) = &objects.pod_disruption_budget {
        applied.push(output::to_value(
            &apply_owned(
                &cluster,
                &Api::<PodDisruptionBudget>::namespaced(c.clone(), &ns),
                p,
                dry_run,
                nsd(
                    "patch",
                    "poddisruptionbudgets.policy",
                    "PodDisruptionBudget",
                ),
            )
            .await?,
        )?);
    }
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &mutating_api,
            &objects.mutating,
            dry_run,
            ApiCall::new(
                "patch",
                "mutatingwebhookconfigurations.admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
            ),
        )
        .await?,
    )?);
    applied.push(output::to_value(
        &apply_owned(
            &cluster,
            &Api::<ValidatingWebhookConfiguration>::all(c.clone()),
            &objects.validating,
            dry_run,
            ApiCall::new(
                "patch",
                "validatingwebhookconfigurations.admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
            ),
        )
        .await?,
    )?);

    if let Some(format) = args.change.output {
        output::print(&applied, format)?;
        return Ok(0);
    }
    let suffix = if dry_run == DryRun::Server {
        " (server dry run)"
    } else {
        ""
    };
    println!("devenv webhook installed in namespace {ns}{suffix}");
    match &end {
        Endpoint::Service => println!(
            "  webhook:     Deployment {ns}/{NAME} ({} replicas, image {})",
            args.replicas, args.image
        ),
        Endpoint::Url(url) => println!("  webhook:     {url} (outside the cluster)"),
    }
    println!("  certificate: {cert_note}");
    println!("  policy:      ConfigMap {ns}/{POLICY_CONFIGMAP}");
    if end == Endpoint::Service && dry_run == DryRun::None && !args.no_wait {
        wait_until_serving(&cluster, &ns, args.replicas, args.timeout).await?;
    } else {
        println!("check it with: kubectl devenv status");
    }
    Ok(0)
}

/// The webhook's pods (label `app.kubernetes.io/name=devenv-webhook`).
async fn webhook_pods(cluster: &Cluster, ns: &str) -> Result<Vec<Pod>, Error> {
    Api::<Pod>::namespaced(cluster.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/name={NAME}")))
        .await
        .map(|l| l.items)
        .map_err(cluster.err(ApiCall::new("list", "pods", "Pod").ns(ns)))
}

/// What keeps the webhook's replicas from being Ready now
/// ([`replica_blockers`]), with the last log line of each crashing container.
pub async fn current_blockers(cluster: &Cluster, ns: &str) -> Result<Vec<String>, Error> {
    let pods = webhook_pods(cluster, ns).await?;
    let api = Api::<Pod>::namespaced(cluster.client.clone(), ns);
    let mut logs = std::collections::BTreeMap::new();
    for (pod, container) in crashing_containers(&pods) {
        let params = LogParams {
            container: Some(container.clone()),
            previous: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        // The log is a help, not a requirement (RBAC may not allow it).
        if let Ok(text) = api.logs(&pod, &params).await {
            if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                logs.insert((pod, container), line.to_owned());
            }
        }
    }
    Ok(replica_blockers(&pods, &logs))
}

/// A workspace pod that only a server-side dry run ever creates: the API server must
/// call both webhooks (mutating, then validating) through their Service to answer.
fn probe_pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "devenv-install-check",
            "labels": {devenv_shared::model::keys::WORKSPACE_LABEL: "devenv-install-check"}
        },
        "spec": {"containers": [{
            "name": "workspace",
            "image": devenv_shared::build::images::workspace()
        }]}
    }))
    .unwrap_or_default()
}

/// Whether the API server could call the webhook for a dry-run workspace pod in
/// `default`: `Ok(None)` when it did (admitted or denied by our webhook), `Ok(Some(why))`
/// when it could not reach it yet.
async fn probe_admission(cluster: &Cluster) -> Result<Option<String>, Error> {
    let api = Api::<Pod>::namespaced(cluster.client.clone(), "default");
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&params, &probe_pod()).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.message.contains("failed calling webhook") => {
            Ok(Some(s.message))
        }
        // Refused by our webhook (e.g. the policy's image rules) or by Pod Security:
        // either way the webhook answered.
        Err(kube::Error::Api(s)) if s.message.contains("denied") || s.code == 403 => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            eprintln!(
                "  (no namespace default to dry-run a workspace pod in: admission not checked)"
            );
            Ok(None)
        }
        Err(e) => Err(crate::error::from_kube(
            e,
            &ApiCall::new("create", "pods", "Pod")
                .ns("default")
                .name("devenv-install-check"),
            &cluster.server,
        )),
    }
}

/// Waits until `replicas` replicas of the rolled-out Deployment are Ready and the API
/// server can call them (a server-side dry run of a workspace pod), printing progress
/// and what blocks; fails after `timeout`, naming it.
async fn wait_until_serving(
    cluster: &Cluster,
    ns: &str,
    replicas: i32,
    timeout: std::time::Duration,
) -> Result<(), Error> {
    let t0 = std::time::Instant::now();
    let deployments = Api::<Deployment>::namespaced(cluster.client.clone(), ns);
    let mut last_line = String::new();
    let mut say = |line: String| {
        if line != last_line {
            eprintln!("  {line}");
            last_line = line;
        }
    };
    eprintln!(
        "waiting for the webhook (up to {}s; --no-wait returns at once)",
        timeout.as_secs()
    );
    let mut reason;
    loop {
        let d = deployments.get_opt(NAME).await.map_err(
            cluster.err(
                ApiCall::new("get", "deployments.apps", "Deployment")
                    .ns(ns)
                    .name(NAME),
            ),
        )?;
        let status = d
            .as_ref()
            .and_then(|d| d.status.clone())
            .unwrap_or_default();
        let generation = d.as_ref().and_then(|d| d.metadata.generation).unwrap_or(0);
        let ready = status.ready_replicas.unwrap_or(0);
        let updated = status.updated_replicas.unwrap_or(0);
        let rolled = status.observed_generation.unwrap_or(0) >= generation
            && updated >= replicas
            && status.replicas.unwrap_or(0) <= replicas;
        if rolled && ready >= replicas {
            match probe_admission(cluster).await? {
                None => {
                    say(format!("{ready}/{replicas} replicas ready"));
                    eprintln!(
                        "  the API server calls the webhook (dry-run workspace pod admitted) after {:.1}s",
                        t0.elapsed().as_secs_f64()
                    );
                    println!("webhook ready: {ready}/{replicas} replicas, admission checked");
                    return Ok(());
                }
                Some(why) => {
                    reason = format!("the API server cannot call the webhook yet: {why}");
                    say(reason.clone());
                }
            }
        } else {
            let blockers = current_blockers(cluster, ns).await?;
            reason = if blockers.is_empty() {
                format!("{ready}/{replicas} replicas ready ({updated} updated)")
            } else {
                format!("{ready}/{replicas} replicas ready: {}", blockers.join("; "))
            };
            say(reason.clone());
        }
        if t0.elapsed() >= timeout {
            return Err(Error::Timeout {
                after: format!("{}s", timeout.as_secs()),
                what: format!("the webhook Deployment {ns}/{NAME}"),
                reason: format!(
                    "{reason}\n  see kubectl -n {ns} describe deployment {NAME}; `kubectl devenv status` says the same"
                ),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Deletes one object; absent objects are fine (uninstall is re-runnable).
async fn remove<K>(
    cluster: &Cluster,
    api: &Api<K>,
    name: &str,
    dry_run: DryRun,
    what: &str,
    call: ApiCall,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let suffix = if dry_run == DryRun::Server {
        " (server dry run)"
    } else {
        ""
    };
    if dry_run == DryRun::Client {
        println!("{what}/{name} deleted (dry run)");
        return Ok(());
    }
    let mut params = DeleteParams::background();
    if dry_run == DryRun::Server {
        params = params.dry_run();
    }
    match api.delete(name, &params).await {
        Ok(_) => {
            println!("{what}/{name} deleted{suffix}");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(crate::error::from_kube(
            e,
            &call.name(name),
            &cluster.server,
        )),
    }
}

pub async fn uninstall(global: &GlobalArgs, args: &UninstallArgs) -> Result<i32, Error> {
    let dry_run = args.change.dry_run;
    let ns = global.install_namespace.clone();
    if dry_run == DryRun::Client {
        for what in [
            "mutatingwebhookconfiguration.admissionregistration.k8s.io",
            "validatingwebhookconfiguration.admissionregistration.k8s.io",
        ] {
            println!("{what}/{NAME} deleted (dry run)");
        }
        println!("(and the webhook's Deployment, Service, PDB, Secret, ConfigMap, RBAC in {ns}; the namespace if install created it)");
        return Ok(0);
    }
    let cluster = client::connect(global).await?;
    let c = cluster.client.clone();
    let g = |res, kind| ApiCall::new("delete", res, kind);
    let n = |res, kind| ApiCall::new("delete", res, kind).ns(&ns);
    // The webhook configurations go first: once they are gone, no API request
    // depends on the webhook any more, so removing it cannot block anything.
    remove(
        &cluster,
        &Api::<MutatingWebhookConfiguration>::all(c.clone()),
        NAME,
        dry_run,
        "mutatingwebhookconfiguration.admissionregistration.k8s.io",
        g(
            "mutatingwebhookconfigurations.admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
        ),
    )
    .await?;
    remove(
        &cluster,
        &Api::<ValidatingWebhookConfiguration>::all(c.clone()),
        NAME,
        dry_run,
        "validatingwebhookconfiguration.admissionregistration.k8s.io",
        g(
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
        ),
    )
    .await?;
    remove(
        &cluster,
        &Api::<Deployment>::namespaced(c.clone(), &ns),
        NAME,
        dry_run,
        "deployment.apps",
        n("deployments.apps", "Deployment"),
    )
    .await?;
    remove(
        &cluster,
        &Api::<PodDisruptionBudget>::namespaced(c.clone(), &ns),
        NAME,
        dry_run,
        "poddisruptionbudget.policy",
        n("poddisruptionbudgets.policy", "PodDisruptionBudget"),
    )
    .await?;
    remove(
        &cluster,
        &Api::<Service>::namespaced(c.clone(), &ns),
        NAME,
        dry_run,
        "service",
        n("services", "Service"),
    )
    .await?;
    remove(
        &cluster,
        &Api::<Secret>::namespaced(c.clone(), &ns),
        TLS_SECRET,
        dry_run,
        "secret",
        n("secrets", "Secret"),
    )
    .await?;
    remove(
        &cluster,
        &Api::<ConfigMap>::namespaced(c.clone(), &ns),
        POLICY_CONFIGMAP,
        dry_run,
        "configmap",
        n("configmaps", "ConfigMap"),
    )
    .await?;
    remove(
        &cluster,
        &Api::<RoleBinding>::namespaced(c.clone(), &ns),
        NAME,
        dry_run,
        "rolebinding.rbac.authorization.k8s.io",
        n("rolebindings.rbac.authorization.k8s.io", "RoleBinding"),
    )
    .await?;
    remove(
        &cluster,
        &Api::<Role>::namespaced(c.clone(), &ns),
        NAME,
        dry_run,
        "role.rbac.authorization.k8s.io",
        n("roles.rbac.authorization.k8s.io", "Role"),
    )
    .await?;
    remove(
        &cluster,
        &Api::<ClusterRoleBinding>::all(c.clone()),
        NAME,
        dry_run,
        "clusterrolebinding.rbac.authorization.k8s.io",
        g(
            "clusterrolebindings.rbac.authorization.k8s.io",
            "ClusterRoleBinding",
        ),
    )
    .await?;
    remove(
        &cluster,
        &Api::<ClusterRole>::all(c.clone()),
        NAME,
        dry_run,
        "clusterrole.rbac.authorization.k8s.io",
        g("clusterroles.rbac.authorization.k8s.io", "ClusterRole"),
    )
    .await?;
    remove(
        &cluster,
        &Api::<ServiceAccount>::namespaced(c.clone(), &ns),
        NAME,
        dry_run,
        "serviceaccount",
        n("serviceaccounts", "ServiceAccount"),
    )
    .await?;
    let ns_api: Api<Namespace> = Api::all(c.clone());
    match get_opt(
        &cluster,
        &ns_api,
        &ns,
        ApiCall::new("get", "namespaces", "Namespace"),
    )
    .await?
    {
        Some(namespace) if install::is_our_namespace(&namespace) => {
            remove(
                &cluster,
                &ns_api,
                &ns,
                dry_run,
                "namespace",
                g("namespaces", "Namespace"),
            )
            .await?;
        }
        Some(_) => eprintln!("namespace {ns} was not created by kubectl-devenv: kept"),
        None => {}
    }
    println!("devenv webhook uninstalled; workspaces and their volumes are kept");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing(sans: &[&str], days: i64) -> ExistingTls {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let b = certs::generate(&sans, Duration::days(days)).unwrap();
        ExistingTls {
            cert_pem: b.cert_pem,
            key_pem: b.key_pem,
            ca_pem: b.ca_cert_pem,
            registered_bundle: None,
        }
    }

    #[test]
    fn valid_certificate_with_the_right_names_is_reused() {
        let sans = install::service_sans("devenv-system");
        let refs: Vec<&str> = sans.iter().map(String::as_str).collect();
        let e = existing(&refs, 365);
        let now = OffsetDateTime::now_utc();
        assert_eq!(plan_tls(Some(&e), &sans, now), TlsPlan::Reuse);
        let tls = make_tls(&TlsPlan::Reuse, Some(&e), &sans, now).unwrap();
        assert_eq!(tls.cert_pem, e.cert_pem);
        assert_eq!(tls.ca_bundle, e.ca_pem);
    }

    #[test]
    fn renewal_when_close_to_expiry_missing_or_names_changed() {
        let sans = install::service_sans("devenv-system");
        let refs: Vec<&str> = sans.iter().map(String::as_str).collect();
        let now = OffsetDateTime::now_utc();
        assert!(matches!(plan_tls(None, &sans, now), TlsPlan::Renew(_)));
        let soon = existing(&refs, 10);
        assert!(
            matches!(plan_tls(Some(&soon), &sans, now), TlsPlan::Renew(r) if r.contains("expires"))
        );
        let other = existing(&["devenv-webhook.other.svc"], 365);
        assert!(
            matches!(plan_tls(Some(&other), &sans, now), TlsPlan::Renew(r) if r.contains("names changed"))
        );
    }

    #[test]
    fn renewal_keeps_the_old_ca_trusted() {
        let sans = install::service_sans("devenv-system");
        let refs: Vec<&str> = sans.iter().map(String::as_str).collect();
        let old = existing(&refs, 10);
        let now = OffsetDateTime::now_utc();
        let tls = make_tls(&TlsPlan::Renew("x".into()), Some(&old), &sans, now).unwrap();
        assert!(certs::bundle_contains(&tls.ca_bundle, &old.ca_pem));
        assert!(certs::bundle_contains(&tls.ca_bundle, &tls.ca_cert_pem));
        assert_ne!(tls.cert_pem, old.cert_pem);
    }

    #[test]
    fn reuse_keeps_a_registered_rotation_bundle() {
        let sans = install::service_sans("devenv-system");
        let refs: Vec<&str> = sans.iter().map(String::as_str).collect();
        let mut e = existing(&refs, 365);
        let previous = existing(&refs, 365);
        e.registered_bundle = Some(format!("{}{}", e.ca_pem, previous.ca_pem));
        let tls = make_tls(&TlsPlan::Reuse, Some(&e), &sans, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(Some(tls.ca_bundle), e.registered_bundle);
        // A registered bundle that does not trust our CA is replaced.
        e.registered_bundle = Some(previous.ca_pem.clone());
        let tls = make_tls(&TlsPlan::Reuse, Some(&e), &sans, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(tls.ca_bundle, e.ca_pem);
    }

    #[test]
    fn cert_dir_round_trip_with_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let sans = vec!["127.0.0.1".to_owned()];
        let tls = make_tls(
            &TlsPlan::Renew("x".into()),
            None,
            &sans,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        write_cert_dir(dir.path(), &tls).unwrap();
        let back = read_cert_dir(dir.path()).unwrap();
        assert_eq!(back.cert_pem, tls.cert_pem);
        assert_eq!(
            plan_tls(Some(&back), &sans, OffsetDateTime::now_utc()),
            TlsPlan::Reuse
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
