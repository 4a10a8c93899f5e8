//! `kubectl devenv delete NAME [--purge]`.
//!
//! Without --purge the claims stay (the StatefulSet's retention policy is
//! Retain): re-creating a workspace of the same name finds its data again.

use std::io::{BufRead, IsTerminal, Write};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use devenv_shared::build::workspace;
use devenv_shared::build::workspace::selector_string;
use devenv_shared::model::keys::WORKSPACE_LABEL;

use crate::cli::{DeleteArgs, DryRun, GlobalArgs};
use crate::client::{self, Cluster};
use crate::error::{ApiCall, Error};

/// Whether --purge can be confirmed at all: with --yes, or on a terminal.
/// A usage error otherwise, found before any call. `of` says whose data goes
/// (`the workspace`, `the tenant`).
pub fn purge_confirmable(of: &str, yes: bool, interactive: bool) -> Result<(), Error> {
    if yes || interactive {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "--purge deletes all data of {of}; without a terminal to confirm on, pass --yes"
    )))
}

/// What --purge needs before deleting data: `Ok(true)` go, `Ok(false)` the
/// user said no, `Err` no way to ask.
pub fn purge_allowed(
    of: &str,
    yes: bool,
    interactive: bool,
    ask: impl FnOnce() -> std::io::Result<bool>,
) -> Result<bool, Error> {
    purge_confirmable(of, yes, interactive)?;
    if yes {
        return Ok(true);
    }
    ask().map_err(|e| Error::Other(e.into()))
}

/// Asks a yes/no question on the terminal (stderr, answer on stdin); no is the default.
pub fn ask_on_terminal(prompt: &str) -> std::io::Result<bool> {
    eprint!("{prompt} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Deletes one object (background propagation, a dry run with `--dry-run=server`);
/// `Ok(false)` when it was already gone.
pub async fn delete_one<K>(
    cluster: &Cluster,
    api: &Api<K>,
    name: &str,
    dry_run: DryRun,
    call: ApiCall,
) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut params = DeleteParams::background();
    if dry_run == DryRun::Server {
        params = params.dry_run();
    }
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(crate::error::from_kube(
            e,
            &call.name(name),
            &cluster.server,
        )),
    }
}

/// Deletes object `name` only if it is workspace `workspace`'s: it carries the workspace's
/// label, as everything `create` makes does. Its uid is a precondition, so the object judged
/// is the object deleted. Something else of that name (an application's Service, a
/// StatefulSet that is no workspace) is left alone, and the user told. Returns whether it
/// was deleted.
async fn delete_own<K>(
    cluster: &Cluster,
    api: &Api<K>,
    workspace: &str,
    kind: &str,
    dry_run: DryRun,
    call: ApiCall,
) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let found = api
        .get_opt(workspace)
        .await
        .map_err(|e| crate::error::from_kube(e, &call.clone().name(workspace), &cluster.server))?;
    let Some(object) = found else {
        return Ok(false);
    };
    let meta = object.meta();
    let label = meta.labels.as_ref().and_then(|l| l.get(WORKSPACE_LABEL));
    if label.map(String::as_str) != Some(workspace) {
        eprintln!(
            "not deleting {kind}/{workspace}: it is not workspace {workspace}'s (it has no {WORKSPACE_LABEL}={workspace} label)"
        );
        return Ok(false);
    }
    let mut params = DeleteParams::background().preconditions(Preconditions {
        uid: meta.uid.clone(),
        resource_version: None,
    });
    if dry_run == DryRun::Server {
        params = params.dry_run();
    }
    match api.delete(workspace, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(crate::error::from_kube(
            e,
            &call.name(workspace),
            &cluster.server,
        )),
    }
}

/// Deletes the objects of workspace `name` in namespace `ns`, in this order: its
/// StatefulSet (its pods go with it), Service, NetworkPolicy and ServiceAccount, each only
/// if it is the workspace's ([`delete_own`]). Never a claim: the StatefulSet's retention
/// policy keeps them, and so the data. Returns `kind/name` of each object deleted.
pub async fn delete_workspace_objects(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    dry_run: DryRun,
) -> Result<Vec<String>, Error> {
    let c = cluster.client.clone();
    let mut deleted = Vec::new();
    if delete_own(
        cluster,
        &Api::<StatefulSet>::namespaced(c.clone(), ns),
        name,
        "statefulset.apps",
        dry_run,
        ApiCall::new("delete", "statefulsets.apps", "workspace").ns(ns),
    )
    .await?
    {
        deleted.push(format!("statefulset.apps/{name}"));
    }
    if delete_own(
        cluster,
        &Api::<Service>::namespaced(c.clone(), ns),
        name,
        "service",
        dry_run,
        ApiCall::new("delete", "services", "Service").ns(ns),
    )
    .await?
    {
        deleted.push(format!("service/{name}"));
    }
    if delete_own(
        cluster,
        &Api::<NetworkPolicy>::namespaced(c.clone(), ns),
        name,
        "networkpolicy.networking.k8s.io",
        dry_run,
        ApiCall::new(
            "delete",
            "networkpolicies.networking.k8s.io",
            "NetworkPolicy",
        )
        .ns(ns),
    )
    .await?
    {
        deleted.push(format!("networkpolicy.networking.k8s.io/{name}"));
    }
    if delete_own(
        cluster,
        &Api::<ServiceAccount>::namespaced(c, ns),
        name,
        "serviceaccount",
        dry_run,
        ApiCall::new("delete", "serviceaccounts", "ServiceAccount").ns(ns),
    )
    .await?
    {
        deleted.push(format!("serviceaccount/{name}"));
    }
    Ok(deleted)
}

pub async fn run(global: &GlobalArgs, args: &DeleteArgs) -> Result<i32, Error> {
    workspace::validate_name(&args.name)?;
    let name = args.name.as_str();
    let dry_run = args.change.dry_run;
    if dry_run == DryRun::Client {
        // Nothing is sent but the deletions themselves: name them.
        for kind in [
            "statefulset.apps",
            "service",
            "networkpolicy.networking.k8s.io",
            "serviceaccount",
        ] {
            println!("{kind}/{name} deleted (dry run)");
        }
        if args.purge {
            println!(
                "persistentvolumeclaims with label {} deleted (dry run)",
                selector_string(name)
            );
        }
        return Ok(0);
    }

    // Checked before connecting: without a way to confirm, nothing is sent.
    let interactive = std::io::stdin().is_terminal();
    if args.purge {
        purge_confirmable("the workspace", args.yes, interactive)?;
    }

    let cluster = client::connect(global).await?;
    let ns = cluster.namespace.clone();
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), &ns);
    let claims: Vec<String> =
        claims_api
            .list(&ListParams::default().labels(&selector_string(name)))
            .await
            .map_err(cluster.err(
                ApiCall::new("list", "persistentvolumeclaims", "PersistentVolumeClaim").ns(&ns),
            ))?
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();

    // Ask before deleting anything, so "no" leaves everything as it was.
    if args.purge && !claims.is_empty() {
        let prompt = format!(
            "Delete workspace {name} and ALL its data ({} claim(s): {})?",
            claims.len(),
            claims.join(", ")
        );
        let go = purge_allowed("the workspace", args.yes, interactive, || {
            ask_on_terminal(&prompt)
        })?;
        if !go {
            eprintln!("Aborted; nothing was deleted.");
            return Ok(1);
        }
    }

    // The data goes only after a backup of it is in the registry, unless --no-backup.
    if args.purge && !claims.is_empty() && dry_run == DryRun::None {
        if args.no_backup {
            eprintln!("--no-backup: the data of workspace {name} is deleted without a backup");
        } else {
            let policy =
                crate::commands::effective_policy(Some(&cluster), &global.install_namespace, None)
                    .await?;
            back_up_before_purge(
                &cluster,
                &policy,
                name,
                args.backup_to.as_deref(),
                &args.registry,
            )
            .await?;
        }
    }

    let deleted = delete_workspace_objects(&cluster, &ns, name, dry_run).await?;

    if deleted.is_empty() && (claims.is_empty() || !args.purge) {
        return Err(Error::NotFound {
            kind: "workspace".into(),
            name: name.to_owned(),
            where_: format!("namespace {ns:?}"),
            hint: "list workspaces with: kubectl devenv list (-A for all namespaces)".into(),
        });
    }
    let suffix = if dry_run == DryRun::Server {
        " (server dry run)"
    } else {
        ""
    };
    for d in &deleted {
        println!("{d} deleted{suffix}");
    }

    if args.purge {
        for claim in &claims {
            if delete_one(
                &cluster,
                &claims_api,
                claim,
                dry_run,
                ApiCall::new("delete", "persistentvolumeclaims", "PersistentVolumeClaim").ns(&ns),
            )
            .await?
            {
                println!("persistentvolumeclaim/{claim} deleted{suffix}");
            }
        }
    } else if !claims.is_empty() {
        eprintln!(
            "Kept {} claim(s) with the workspace's data: {}\n\
             Re-create the workspace with the same name to use them again, or delete them with: \
             kubectl devenv delete {name} --purge",
            claims.len(),
            claims.join(", ")
        );
    }
    Ok(0)
}

/// Backs workspace `name` up (`pre-purge`) to `backup_to`, else the policy's
/// `backup.repository`, before its data is deleted (`delete --purge`, `tenant remove
/// --purge`). Every refusal says how to go on without a backup.
pub(crate) async fn back_up_before_purge(
    cluster: &Cluster,
    policy: &devenv_shared::model::policy::Policy,
    name: &str,
    backup_to: Option<&str>,
    registry: &crate::cli::RegistryArgs,
) -> Result<(), Error> {
    let without =
        "--purge backs the data up first; to delete it without a backup, pass --no-backup";
    let to = crate::commands::backup::repository(backup_to, "--backup-to", policy)
        .map_err(|e| Error::Usage(format!("{e}\n  {without}")))?;
    eprintln!("backing up workspace {name} before deleting its data:");
    let pushed = crate::commands::backup::take(
        cluster,
        policy,
        name,
        &to,
        registry,
        devenv_shared::build::backup::Reason::PrePurge,
        &[],
    )
    .await
    .map_err(|e| match e {
        // Claims outlive their StatefulSet; the backup reads them through it.
        Error::NotFound { kind, .. } if kind == "workspace" => Error::Usage(format!(
            "workspace {name} has claims but no StatefulSet, so they cannot be backed up: re-create it (kubectl devenv create {name} -n {}) to reattach them and purge again, or pass --no-backup to delete them without a backup",
            cluster.namespace
        )),
        e => e,
    })?;
    eprintln!("the data of {name} is in {}", pushed.whole());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_needs_yes_without_terminal() {
        let e = purge_allowed("the workspace", false, false, || Ok(true)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--purge deletes all data of the workspace; without a terminal to confirm on, pass --yes"
        );
        assert!(purge_allowed("x", true, false, || panic!("must not ask")).unwrap());
        assert!(purge_allowed("x", false, true, || Ok(true)).unwrap());
        assert!(!purge_allowed("x", false, true, || Ok(false)).unwrap());
        let e = purge_confirmable("the tenant", false, false).unwrap_err();
        assert!(e.to_string().contains("all data of the tenant"), "{e}");
        assert!(
            purge_confirmable("x", true, false).is_ok()
                && purge_confirmable("x", false, true).is_ok()
        );
    }
}
