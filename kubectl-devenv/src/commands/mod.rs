//! One module per command (the API calls; their pure views are in
//! [`crate::views`]); shared helpers here.

pub mod backup;
pub mod create;
pub mod delete;
pub mod exec;
pub mod install;
pub mod list;
pub mod scale;
pub mod secrets;
pub mod snapshot;
pub mod ssh;
pub mod status;
pub mod tenant;
pub mod ui;

use std::fmt::Debug;
use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use devenv_shared::build::install::{POLICY_CONFIGMAP, POLICY_KEY};
use devenv_shared::model::keys::FIELD_MANAGER;
use devenv_shared::model::policy::{Policy, PolicyError};

use crate::cli::DryRun;
use crate::client::Cluster;
use crate::error::{ApiCall, Error};

/// Server-side apply of a whole object as `kubectl-devenv`, never forcing:
/// fields another manager owns are a conflict to report, not to overwrite.
pub async fn apply<K>(
    cluster: &Cluster,
    api: &Api<K>,
    object: &K,
    dry_run: DryRun,
    call: ApiCall,
) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    server_side_apply(cluster, api, object, dry_run, call, false).await
}

/// [`apply`], taking over fields another manager set (`--force-conflicts`): for the
/// objects `install` owns (its Secret, ConfigMap, Deployment...), which re-running
/// install must converge even after a hand edit (`kubectl replace`, `kubectl edit`).
pub async fn apply_owned<K>(
    cluster: &Cluster,
    api: &Api<K>,
    object: &K,
    dry_run: DryRun,
    call: ApiCall,
) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    server_side_apply(cluster, api, object, dry_run, call, true).await
}

async fn server_side_apply<K>(
    cluster: &Cluster,
    api: &Api<K>,
    object: &K,
    dry_run: DryRun,
    call: ApiCall,
    force: bool,
) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let mut params = PatchParams::apply(FIELD_MANAGER);
    if force {
        params = params.force();
    }
    if dry_run == DryRun::Server {
        params = params.dry_run();
    }
    tracing::info!(kind = std::any::type_name::<K>(), %name, force, "server-side apply");
    api.patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(cluster.err(call.name(&name)))
}

/// GET of one object; `None` when it does not exist. Other errors name `call`.
pub async fn get_opt<K>(
    cluster: &Cluster,
    api: &Api<K>,
    name: &str,
    call: ApiCall,
) -> Result<Option<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.get_opt(name)
        .await
        .map_err(cluster.err(call.name(name)))
}

/// Refuses StatefulSet `namespace/name` unless it is workspace `name`'s (it and its pod
/// template labelled `devenv.io/workspace=NAME`): an application's StatefulSet of the same name is not the
/// plugin's to stop, scale, back up, restore into or delete.
pub fn check_is_workspace(
    sts: &k8s_openapi::api::apps::v1::StatefulSet,
    namespace: &str,
    name: &str,
) -> Result<(), Error> {
    let label = devenv_shared::model::keys::WORKSPACE_LABEL;
    let is_name = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        labels.and_then(|l| l.get(label)).is_some_and(|w| w == name)
    };
    // Both: the webhook judges a StatefulSet (and its pods) by its pod template's label.
    let template = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    if is_name(sts.metadata.labels.as_ref()) && is_name(template) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "statefulset {namespace}/{name} is not a workspace (it has no {label}={name} label): kubectl devenv acts on workspaces only; use kubectl for other StatefulSets"
        )))
    }
}

/// Patch params for merge/strategic patches by the plugin.
pub fn patch_params(dry_run: DryRun) -> PatchParams {
    let mut params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    if dry_run == DryRun::Server {
        params = params.dry_run();
    }
    params
}

/// Reads a policy file given with --policy-file through the one loader
/// ([`Policy::load`]: its errors name the file and the field), with its text
/// as written (install puts it in the ConfigMap, comments and all).
pub fn read_policy_file(path: &Path) -> Result<(Policy, String), Error> {
    let policy = Policy::load(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // Read twice (the loader keeps its text): the text installed must be the
    // policy that was checked.
    if Policy::from_yaml(&text).ok().as_ref() != Some(&policy) {
        return Err(Error::Usage(format!(
            "the policy file {} changed while it was being read; run the command again",
            path.display()
        )));
    }
    Ok((policy, text))
}

/// Parses the installed policy's YAML with the same validation as a file;
/// errors name the ConfigMap and the field.
pub fn parse_installed_policy(yaml: &str, origin: &str) -> Result<Policy, Error> {
    Policy::from_yaml(yaml).map_err(|source| Error::Policy {
        origin: Some(origin.to_owned()),
        source,
    })
}

/// The policy installed in the cluster (ConfigMap `devenv-policy` of the
/// install namespace), with its YAML; `None` when there is none or it may not
/// be read (the webhook enforces it anyway).
pub async fn installed_policy(
    cluster: &Cluster,
    install_namespace: &str,
) -> Result<Option<(Policy, String)>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), install_namespace);
    let cm = match api.get_opt(POLICY_CONFIGMAP).await {
        Ok(cm) => cm,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            tracing::info!("may not read the installed policy; using the built-in default");
            None
        }
        Err(e) => {
            return Err(crate::error::from_kube(
                e,
                &ApiCall::new("get", "configmaps", "ConfigMap")
                    .ns(install_namespace)
                    .name(POLICY_CONFIGMAP),
                &cluster.server,
            ))
        }
    };
    let Some(yaml) = cm
        .and_then(|c| c.data)
        .and_then(|mut d| d.remove(POLICY_KEY))
    else {
        return Ok(None);
    };
    let origin = format!("ConfigMap {install_namespace}/{POLICY_CONFIGMAP}");
    Ok(Some((parse_installed_policy(&yaml, &origin)?, yaml)))
}

/// The policy workspace commands build with: --policy-file, else the
/// installed one, else the built-in default.
pub async fn effective_policy(
    cluster: Option<&Cluster>,
    install_namespace: &str,
    file: Option<&Path>,
) -> Result<Policy, Error> {
    if let Some(path) = file {
        return Ok(Policy::load(path)?);
    }
    if let Some(cluster) = cluster {
        if let Some((policy, _)) = installed_policy(cluster, install_namespace).await? {
            return Ok(policy);
        }
    }
    Ok(Policy::default())
}

/// Whether stdin is a terminal (interactive use).
pub fn stdin_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_file_errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(
            &path,
            "tiers:\n  small:\n    requests: {cpu: eight, memory: 1Gi}\n    limits: {cpu: 1, memory: 1Gi}\n",
        )
        .unwrap();
        let e = read_policy_file(&path).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            format!(
                "invalid policy in {}: tiers.small.requests.cpu: \"eight\" is not a Kubernetes quantity (e.g. 8 or 8000m)",
                path.display()
            )
        );

        let missing = dir.path().join("missing.yaml");
        let e = read_policy_file(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "cannot read the policy file {}: ",
                missing.display()
            )),
            "{e}"
        );

        std::fs::write(&path, "tiers: [1\n").unwrap();
        let e = read_policy_file(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "invalid policy in {}: policy is not valid: ",
                path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_policy_file_is_returned_with_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        let text = "# ours\ndefaultTier: large\n";
        std::fs::write(&path, text).unwrap();
        let (policy, read) = read_policy_file(&path).unwrap();
        assert_eq!(policy.default_tier, "large");
        assert_eq!(read, text);
    }

    #[test]
    fn installed_policy_errors_name_the_config_map_and_the_field() {
        let e = parse_installed_policy(
            "defaultTier: huge\n",
            "ConfigMap devenv-system/devenv-policy",
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "invalid policy in ConfigMap devenv-system/devenv-policy: defaultTier"
            ),
            "{text}"
        );
        assert!(parse_installed_policy("", "x").is_ok());
    }
}
