//! One module per command; shared helpers here.

pub mod create;
pub mod delete;
pub mod exec;
pub mod install;
pub mod lifecycle;
pub mod list;
pub mod secrets;
pub mod status;

use std::fmt::Debug;
use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use devenv_shared::install::{POLICY_CONFIGMAP, POLICY_KEY};
use devenv_shared::keys::FIELD_MANAGER;
use devenv_shared::policy::Policy;

use crate::cli::DryRun;
use crate::client::Cluster;
use crate::error::{Action, Error};

/// Server-side apply of a whole object as `kubectl-devenv`, never forcing:
/// fields another manager owns are a conflict to report, not to overwrite.
pub async fn apply<K>(
    cluster: &Cluster,
    api: &Api<K>,
    object: &K,
    dry_run: DryRun,
    action: Action,
) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let mut params = PatchParams::apply(FIELD_MANAGER);
    if dry_run == DryRun::Server {
        params = params.dry_run();
    }
    tracing::info!(kind = std::any::type_name::<K>(), %name, "server-side apply");
    api.patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(cluster.err(action.name(&name)))
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

/// Parses and validates a policy's YAML (the webhook's own loader).
pub fn parse_policy(yaml: &str, origin: &str) -> Result<Policy, Error> {
    Policy::from_yaml(yaml).map_err(|e| Error::Usage(format!("invalid policy in {origin}: {e}")))
}

/// Reads a policy file given with --policy-file.
pub fn read_policy_file(path: &Path) -> Result<(Policy, String), Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("cannot read policy file {}: {e}", path.display())))?;
    let policy = parse_policy(&text, &path.display().to_string())?;
    Ok((policy, text))
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
                &Action::new("get", "configmaps", "ConfigMap")
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
    Ok(Some((parse_policy(&yaml, &origin)?, yaml)))
}

/// The policy workspace commands build with: --policy-file, else the
/// installed one, else the built-in default.
pub async fn effective_policy(
    cluster: Option<&Cluster>,
    install_namespace: &str,
    file: Option<&Path>,
) -> Result<Policy, Error> {
    if let Some(path) = file {
        return Ok(read_policy_file(path)?.0);
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
