//! `kubectl devenv tenant add|list|remove`: a namespace each for a developer or a team.
//!
//! `add` is server-side apply of [`devenv_shared::build::tenant::build`]'s objects, so
//! re-running it updates the tenant in place. `remove` only ever touches a namespace
//! labelled `devenv.io/tenant=NAME`; without `--purge` it deletes access and workspaces
//! but never a claim nor the namespace.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::Api;

use devenv_shared::build::install::USER_ROLE;
use devenv_shared::build::tenant::{self, TenantSpec, QUOTA_NAME, ROLE_BINDING_NAME};
use devenv_shared::build::workspace::all_workspaces_selector;

use crate::cli::{
    DryRun, GlobalArgs, ObjectFormat, TenantAddArgs, TenantListArgs, TenantRemoveArgs,
};
use crate::client::{self, Cluster};
use crate::commands::delete::{
    ask_on_terminal, delete_one, delete_workspace_objects, purge_allowed, purge_confirmable,
};
use crate::commands::{apply, effective_policy, get_opt, stdin_is_terminal};
use crate::error::{ApiCall, Error};
use crate::output;
use crate::views::tenant::{
    add_summary, object_names, re_add_command, removal_note, removed_subjects, render,
};

/// The spec `tenant add` builds from its flags.
pub fn spec_from_args(args: &TenantAddArgs, install_namespace: &str) -> TenantSpec {
    TenantSpec {
        name: args.name.clone(),
        users: args.users.clone(),
        groups: args.groups.clone(),
        workspaces: args.workspaces,
        tier: args.tier.clone(),
        install_namespace: install_namespace.to_owned(),
    }
}

fn dry_run_suffix(dry_run: DryRun) -> &'static str {
    if dry_run == DryRun::Server {
        " (server dry run)"
    } else {
        ""
    }
}

pub async fn add(global: &GlobalArgs, args: &TenantAddArgs) -> Result<i32, Error> {
    let spec = spec_from_args(args, &global.install_namespace);
    // Everything that needs no policy is refused before any call.
    tenant::validate(&spec)?;
    let dry_run = args.change.dry_run;

    if dry_run == DryRun::Client {
        let policy =
            effective_policy(None, &global.install_namespace, args.policy_file.as_deref()).await?;
        let objects = tenant::build(&spec, &policy)?;
        let values = objects.to_values().map_err(|e| Error::Other(e.into()))?;
        output::print(&values, args.change.output.unwrap_or(ObjectFormat::Yaml))?;
        return Ok(0);
    }

    let cluster = client::connect(global).await?;
    let policy = effective_policy(
        Some(&cluster),
        &global.install_namespace,
        args.policy_file.as_deref(),
    )
    .await?;
    let objects = tenant::build(&spec, &policy)?;
    let name = spec.name.as_str();
    let c = cluster.client.clone();

    // An existing namespace is only ever a tenant's own: add never takes one over.
    let ns_api: Api<Namespace> = Api::all(c.clone());
    let existing = get_opt(
        &cluster,
        &ns_api,
        name,
        ApiCall::new("get", "namespaces", "Namespace"),
    )
    .await?;
    if let Some(ns) = &existing {
        tenant::check_tenant_namespace(ns, name)?;
    }

    // The binding grants nothing until install has made the ClusterRole.
    match Api::<ClusterRole>::all(c.clone()).get_opt(USER_ROLE).await {
        Ok(Some(_)) => {}
        Ok(None) => eprintln!(
            "warning: ClusterRole {USER_ROLE} does not exist, so the tenant's users get no rights in namespace {name} yet: run kubectl devenv install first"
        ),
        Err(e) => tracing::info!("cannot check ClusterRole {USER_ROLE}: {e}"),
    }

    let rb_api: Api<RoleBinding> = Api::namespaced(c.clone(), name);
    let previous_binding = match &existing {
        Some(_) => {
            get_opt(
                &cluster,
                &rb_api,
                ROLE_BINDING_NAME,
                ApiCall::new(
                    "get",
                    "rolebindings.rbac.authorization.k8s.io",
                    "RoleBinding",
                )
                .ns(name),
            )
            .await?
        }
        None => None,
    };

    let mut applied = vec![output::to_value(
        &apply(
            &cluster,
            &ns_api,
            &objects.namespace,
            dry_run,
            ApiCall::new("patch", "namespaces", "Namespace"),
        )
        .await?,
    )?];
    let checked_all = existing.is_some() || dry_run == DryRun::None;
    if checked_all {
        applied.push(output::to_value(
            &apply(
                &cluster,
                &Api::<ResourceQuota>::namespaced(c.clone(), name),
                &objects.resource_quota,
                dry_run,
                ApiCall::new("patch", "resourcequotas", "ResourceQuota").ns(name),
            )
            .await?,
        )?);
        applied.push(output::to_value(
            &apply(
                &cluster,
                &Api::<LimitRange>::namespaced(c.clone(), name),
                &objects.limit_range,
                dry_run,
                ApiCall::new("patch", "limitranges", "LimitRange").ns(name),
            )
            .await?,
        )?);
        applied.push(output::to_value(
            &apply(
                &cluster,
                &rb_api,
                &objects.role_binding,
                dry_run,
                ApiCall::new(
                    "patch",
                    "rolebindings.rbac.authorization.k8s.io",
                    "RoleBinding",
                )
                .ns(name),
            )
            .await?,
        )?);
    } else {
        // A server dry run of a new namespace stores nothing, so the objects inside it
        // cannot be sent: the API server would answer that the namespace does not exist.
        eprintln!(
            "note: namespace {name} does not exist yet: the API server checked the Namespace only; its ResourceQuota, LimitRange and RoleBinding are shown as built"
        );
        let values = objects.to_values().map_err(|e| Error::Other(e.into()))?;
        applied.extend(values.into_iter().skip(1));
    }

    let suffix = dry_run_suffix(dry_run);
    if let Some(format) = args.change.output {
        output::print(&applied, format)?;
    } else {
        let verb = if existing.is_some() {
            "configured"
        } else {
            "created"
        };
        for object in object_names(&objects) {
            println!("{object} {verb}{suffix}");
        }
        print!("{}", add_summary(&objects));
    }
    if let Some(before) = &previous_binding {
        for gone in removed_subjects(before, &objects.role_binding) {
            eprintln!("access removed{suffix} for {gone} (not named by this tenant add)");
        }
    }
    Ok(0)
}

pub async fn list(global: &GlobalArgs, args: &TenantListArgs) -> Result<i32, Error> {
    let cluster = client::connect(global).await?;
    let c = cluster.client.clone();
    let by_name = |n: &str| ListParams::default().fields(&format!("metadata.name={n}"));
    let (namespaces, bindings, stateful_sets, quotas) = futures::try_join!(
        async {
            Api::<Namespace>::all(c.clone())
                .list(&ListParams::default().labels(&tenant::tenant_selector()))
                .await
                .map_err(cluster.err(ApiCall::new("list", "namespaces", "Namespace")))
        },
        async {
            Api::<RoleBinding>::all(c.clone())
                .list(&by_name(ROLE_BINDING_NAME))
                .await
                .map_err(cluster.err(ApiCall::new(
                    "list",
                    "rolebindings.rbac.authorization.k8s.io",
                    "RoleBinding",
                )))
        },
        async {
            Api::<StatefulSet>::all(c.clone())
                .list(&ListParams::default().labels(&all_workspaces_selector()))
                .await
                .map_err(cluster.err(ApiCall::new("list", "statefulsets.apps", "workspace")))
        },
        async {
            Api::<ResourceQuota>::all(c.clone())
                .list(&by_name(QUOTA_NAME))
                .await
                .map_err(cluster.err(ApiCall::new("list", "resourcequotas", "ResourceQuota")))
        },
    )?;
    let rows = crate::views::tenant::join(
        &namespaces.items,
        &bindings.items,
        &stateful_sets.items,
        &quotas.items,
        Timestamp::now(),
    );
    let out = render(&rows, args.output)?;
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    Ok(0)
}

/// The claims no workspace StatefulSet of `stateful_sets` backs up: a workspace's are
/// exactly `TEMPLATE-NAME-ORDINAL` (what its backup reads).
fn claims_of_no_workspace<'a>(stateful_sets: &[StatefulSet], claims: &'a [String]) -> Vec<&'a str> {
    let of_a_workspace = |claim: &str| {
        stateful_sets.iter().any(|sts| {
            let w = sts.metadata.name.as_deref().unwrap_or_default();
            devenv_shared::build::backup::mounted_volumes(sts)
                .iter()
                .any(|(v, _)| {
                    claim
                        .strip_prefix(&format!("{v}-{w}-"))
                        .is_some_and(|ordinal| ordinal.parse::<u64>().is_ok())
                })
        })
    };
    claims
        .iter()
        .map(String::as_str)
        .filter(|c| !of_a_workspace(c))
        .collect()
}

/// Before `tenant remove --purge` deletes the namespace: a `pre-purge` backup of every
/// workspace in it, or, with `--no-backup`, a line that says there is none. A claim of no
/// workspace (its StatefulSet deleted, or not a workspace's) cannot be backed up: the purge
/// is refused, naming it, unless `--no-backup`.
async fn back_up_tenant(
    cluster: &Cluster,
    global: &GlobalArgs,
    args: &TenantRemoveArgs,
    name: &str,
    claims: &[String],
) -> Result<(), Error> {
    if args.no_backup {
        eprintln!("--no-backup: the data of tenant {name} is deleted without a backup");
        return Ok(());
    }
    let sts_api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), name);
    let stateful_sets = sts_api
        .list(&ListParams::default().labels(&all_workspaces_selector()))
        .await
        .map_err(cluster.err(ApiCall::new("list", "statefulsets.apps", "workspace").ns(name)))?
        .items;
    let workspaces: Vec<String> = stateful_sets
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    let loose = claims_of_no_workspace(&stateful_sets, claims);
    if !loose.is_empty() {
        return Err(Error::Usage(format!(
            "namespace {name} holds claims of no workspace, which --purge cannot back up: {}\n  re-create their workspaces to back them up, or pass --no-backup to delete everything without a backup",
            loose.join(", ")
        )));
    }
    let policy =
        crate::commands::effective_policy(Some(cluster), &global.install_namespace, None).await?;
    let in_tenant = Cluster {
        namespace: name.to_owned(),
        ..cluster.clone()
    };
    for workspace in &workspaces {
        crate::commands::delete::back_up_before_purge(
            &in_tenant,
            &policy,
            workspace,
            args.backup_to.as_deref(),
            &args.registry,
        )
        .await?;
    }
    Ok(())
}

pub async fn remove(global: &GlobalArgs, args: &TenantRemoveArgs) -> Result<i32, Error> {
    tenant::validate_name(&args.name, &global.install_namespace)?;
    let name = args.name.as_str();
    let dry_run = args.change.dry_run;
    if dry_run == DryRun::Client {
        // Nothing is sent but the deletions themselves: name them.
        if args.purge {
            println!("namespace/{name} deleted (dry run)");
        } else {
            println!("rolebinding.rbac.authorization.k8s.io/{ROLE_BINDING_NAME} deleted (dry run)");
            println!(
                "workspaces (statefulsets labelled {}) in namespace {name} deleted (dry run); every claim and the namespace kept",
                all_workspaces_selector()
            );
        }
        return Ok(0);
    }

    // Checked before connecting: without a way to confirm, nothing is sent.
    let interactive = stdin_is_terminal();
    if args.purge {
        purge_confirmable("the tenant", args.yes, interactive)?;
    }

    let cluster = client::connect(global).await?;
    let c = cluster.client.clone();
    let ns_api: Api<Namespace> = Api::all(c.clone());
    let ns = ns_api
        .get(name)
        .await
        .map_err(cluster.err(ApiCall::new("get", "namespaces", "tenant").name(name)))?;
    tenant::check_tenant_namespace(&ns, name)?;

    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), name);
    let claims: Vec<String> =
        claims_api
            .list(&ListParams::default())
            .await
            .map_err(cluster.err(
                ApiCall::new("list", "persistentvolumeclaims", "PersistentVolumeClaim").ns(name),
            ))?
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
    let suffix = dry_run_suffix(dry_run);

    if args.purge {
        let prompt = format!(
            "Delete tenant {name}: namespace {name} and everything in it, ALL data of its workspaces ({} claim(s))?",
            claims.len()
        );
        let go = purge_allowed("the tenant", args.yes, interactive, || {
            ask_on_terminal(&prompt)
        })?;
        if !go {
            eprintln!("Aborted; nothing was deleted.");
            return Ok(1);
        }
        if !claims.is_empty() && dry_run == DryRun::None {
            back_up_tenant(&cluster, global, args, name, &claims).await?;
        }
        delete_one(
            &cluster,
            &ns_api,
            name,
            dry_run,
            ApiCall::new("delete", "namespaces", "Namespace"),
        )
        .await?;
        println!("namespace/{name} deleted{suffix}");
        eprintln!(
            "Everything in namespace {name} goes with it: its workspaces, their {} claim(s), its quota and the tenant's access.",
            claims.len()
        );
        return Ok(0);
    }

    // Without --purge: access first, then the workspaces; claims and namespace stay.
    let rb_api: Api<RoleBinding> = Api::namespaced(c.clone(), name);
    let binding = get_opt(
        &cluster,
        &rb_api,
        ROLE_BINDING_NAME,
        ApiCall::new(
            "get",
            "rolebindings.rbac.authorization.k8s.io",
            "RoleBinding",
        )
        .ns(name),
    )
    .await?;
    // Only for the hint of how to size it the same again: best effort.
    let quota = match Api::<ResourceQuota>::namespaced(c.clone(), name)
        .get_opt(QUOTA_NAME)
        .await
    {
        Ok(q) => q,
        Err(e) => {
            tracing::info!("reading ResourceQuota {QUOTA_NAME}: {e}");
            None
        }
    };
    if delete_one(
        &cluster,
        &rb_api,
        ROLE_BINDING_NAME,
        dry_run,
        ApiCall::new(
            "delete",
            "rolebindings.rbac.authorization.k8s.io",
            "RoleBinding",
        )
        .ns(name),
    )
    .await?
    {
        println!("rolebinding.rbac.authorization.k8s.io/{ROLE_BINDING_NAME} deleted{suffix}");
    }
    let workspaces: Vec<String> = Api::<StatefulSet>::namespaced(c.clone(), name)
        .list(&ListParams::default().labels(&all_workspaces_selector()))
        .await
        .map_err(cluster.err(ApiCall::new("list", "statefulsets.apps", "workspace").ns(name)))?
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    for workspace in &workspaces {
        for deleted in delete_workspace_objects(&cluster, name, workspace, dry_run).await? {
            println!("{deleted} deleted{suffix}");
        }
    }
    eprint!(
        "{}",
        removal_note(
            name,
            &claims,
            &re_add_command(name, binding.as_ref(), quota.as_ref())
        )
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_of_no_workspace_is_named_whatever_its_prefix() {
        let spec = devenv_shared::build::workspace::WorkspaceSpec::new("a-b", "t", "img");
        let sts = devenv_shared::build::workspace::build(
            &spec,
            &devenv_shared::model::policy::Policy::default(),
        )
        .map(|o| o.stateful_set)
        .unwrap_or_default();
        let claims: Vec<String> = [
            "workspace-a-b-0",
            "history-a-b-3",
            // b is gone: its claim is not a-b's, though it ends like one of a's would
            "workspace-b-0",
            "workspace-a-b-x",
            "data",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            claims_of_no_workspace(&[sts], &claims),
            ["workspace-b-0", "workspace-a-b-x", "data"]
        );
        assert_eq!(claims_of_no_workspace(&[], &claims).len(), 5);
    }
}
