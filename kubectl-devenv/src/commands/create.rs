//! `kubectl devenv create NAME`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;

use devenv_shared::admission::validate;
use devenv_shared::build::workspace;
use devenv_shared::build::workspace::{WorkspaceObjects, WorkspaceSpec};
use devenv_shared::model::policy::Policy;

use crate::cli::{CreateArgs, DryRun, GlobalArgs, ObjectFormat};
use crate::client::{self, Cluster};
use crate::commands::{apply, effective_policy, stdin_is_terminal};
use crate::error::{ApiCall, Error};
use crate::output;

/// The spec `create` builds from its flags.
pub fn spec_from_args(args: &CreateArgs, namespace: &str) -> WorkspaceSpec {
    let mut volume_sizes = BTreeMap::new();
    for (volume, size) in [
        ("workspace", &args.workspace_size),
        ("history", &args.history_size),
        ("config", &args.config_size),
    ] {
        if let Some(size) = size {
            volume_sizes.insert(volume.to_owned(), size.clone());
        }
    }
    WorkspaceSpec {
        name: args.name.clone(),
        namespace: namespace.to_owned(),
        image: args.image.clone(),
        tier: args.tier.clone(),
        replicas: args.replicas,
        secrets: args.secrets.clone(),
        repo: args.repo.clone(),
        branch: args.branch.clone(),
        storage_class: args.storage_class.clone(),
        volume_sizes,
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        idle_timeout: args.idle_timeout.clone(),
        keep_alive: args.keep_alive,
    }
}

/// Builds the objects and checks them against the policy the way the webhook
/// will (Pod Security `restricted`, tier limits), so a refusal is reported
/// before any call. Secrets are not checked here: which ones are injectable
/// is only known in the cluster.
pub fn build_checked(spec: &WorkspaceSpec, policy: &Policy) -> Result<WorkspaceObjects, Error> {
    let objects = workspace::build(spec, policy)?;
    let violations =
        validate::validate_statefulset(policy, &objects.stateful_set, &|_: &str, _: &str| true);
    if !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(|v| format!("  - {v}")).collect();
        return Err(Error::Usage(format!(
            "the policy does not allow this workspace:\n{}",
            list.join("\n")
        )));
    }
    Ok(objects)
}

/// The objects in creation order, as JSON.
pub fn object_values(objects: &WorkspaceObjects) -> Result<Vec<serde_json::Value>, Error> {
    Ok(vec![
        output::to_value(&objects.service_account)?,
        output::to_value(&objects.service)?,
        output::to_value(&objects.network_policy)?,
        output::to_value(&objects.stateful_set)?,
    ])
}

/// Whether to wait: --wait / --no-wait, else when stdin is a terminal.
pub fn should_wait(args: &CreateArgs, interactive: bool) -> bool {
    if args.no_wait {
        false
    } else {
        args.wait || interactive
    }
}

pub async fn run(global: &GlobalArgs, args: &CreateArgs) -> Result<i32, Error> {
    // Checked before anything else, so a bad name never costs a round trip.
    workspace::validate_name(&args.name)?;
    let dry_run = args.change.dry_run;

    if dry_run == DryRun::Client {
        let namespace = client::offline_namespace(global);
        let policy =
            effective_policy(None, &global.install_namespace, args.policy_file.as_deref()).await?;
        let objects = build_checked(&spec_from_args(args, &namespace), &policy)?;
        output::print(
            &object_values(&objects)?,
            args.change.output.unwrap_or(ObjectFormat::Yaml),
        )?;
        return Ok(0);
    }

    let cluster = client::connect(global).await?;
    let ns = cluster.namespace.clone();
    let waits = dry_run == DryRun::None && should_wait(args, stdin_is_terminal());
    // The keys are read (and refused when they are not keys) before anything is created.
    let ssh_keys = create_ssh_keys(args, waits)?;

    let applied = create_in(&cluster, &global.install_namespace, args).await?;
    if let Some(format) = args.change.output {
        output::print(&applied, format)?;
    } else if dry_run == DryRun::Server {
        println!("workspace/{} created (server dry run)", args.name);
    } else {
        println!("workspace/{} created", args.name);
    }

    if waits {
        eprintln!(
            "waiting for workspace {} (timeout {}s):",
            args.name,
            args.timeout.as_secs()
        );
        crate::wait::until_ready(&cluster, &args.name, args.replicas, args.timeout).await?;
        for ordinal in 0..args.replicas {
            if ssh_keys.is_empty() {
                break;
            }
            let pod = format!("{}-{ordinal}", args.name);
            for k in crate::commands::ssh::add_keys_to(&cluster, &pod, &ssh_keys).await? {
                eprintln!(
                    "{pod} accepts {} over ssh (kubectl devenv ssh {pod})",
                    k.label()
                );
            }
        }
        eprintln!(
            "workspace {} is ready: kubectl devenv attach {}{}",
            args.name,
            args.name,
            if global.namespace.is_some() {
                format!(" -n {ns}")
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}

/// What `create` sends, in `cluster`'s namespace: the installed policy (or
/// --policy-file), the objects built and checked against it, refused when the workspace
/// exists, then applied in order. The one way the CLI and the portal create a workspace;
/// returns the objects as applied.
pub async fn create_in(
    cluster: &Cluster,
    install_namespace: &str,
    args: &CreateArgs,
) -> Result<Vec<serde_json::Value>, Error> {
    workspace::validate_name(&args.name)?;
    let ns = cluster.namespace.clone();
    let policy = effective_policy(
        Some(cluster),
        install_namespace,
        args.policy_file.as_deref(),
    )
    .await?;
    let objects = build_checked(&spec_from_args(args, &ns), &policy)?;
    let sts_api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &ns);
    let existing = sts_api.get_opt(&args.name).await.map_err(
        cluster.err(
            ApiCall::new("get", "statefulsets.apps", "workspace")
                .ns(&ns)
                .name(&args.name),
        ),
    )?;
    if existing.is_some() {
        return Err(Error::AlreadyExists {
            kind: "workspace".into(),
            name: args.name.clone(),
            namespace: ns,
        });
    }
    apply_objects(cluster, &objects, args.change.dry_run).await
}

/// The public key files `create` writes into the workspace: the ones named (which need
/// the wait: the keys go into the running pods), else the user's default key when
/// waiting for a single pod. Each is read now, so a bad file fails before any object
/// is created.
fn create_ssh_keys(args: &CreateArgs, waits: bool) -> Result<Vec<std::path::PathBuf>, Error> {
    if !args.ssh_keys.is_empty() && !waits {
        return Err(Error::Usage(
            "--ssh-key needs the wait (--wait): the keys are written into the running workspace; \
             or add them later with kubectl devenv ssh-key add NAME PUBKEY_FILE"
                .into(),
        ));
    }
    let files = if !args.ssh_keys.is_empty() {
        args.ssh_keys.clone()
    } else if waits && args.replicas == 1 {
        match crate::commands::ssh::default_key_file() {
            Some(f) => {
                eprintln!("the workspace will accept your public key {}", f.display());
                vec![f]
            }
            None => Vec::new(),
        }
    } else {
        Vec::new()
    };
    for f in &files {
        crate::commands::ssh::read_key_file(f)?;
    }
    Ok(files)
}

/// Applies the objects in order: identity, Service and NetworkPolicy first so
/// the pods never run without their network rules, the StatefulSet last
/// (after a server-side dry run of it, so a refused workspace leaves no
/// ServiceAccount, Service or NetworkPolicy behind).
pub(crate) async fn apply_objects(
    cluster: &Cluster,
    objects: &WorkspaceObjects,
    dry_run: DryRun,
) -> Result<Vec<serde_json::Value>, Error> {
    let c = cluster.client.clone();
    let ns = cluster.namespace.as_str();
    let sts_api = Api::<StatefulSet>::namespaced(c.clone(), ns);
    let sts_call = || ApiCall::new("patch", "statefulsets.apps", "workspace").ns(ns);
    if dry_run == DryRun::None {
        // Let the API server (admission webhooks, quota, pod security) judge
        // the StatefulSet before anything is created, so a refusal leaves
        // nothing behind.
        apply(
            cluster,
            &sts_api,
            &objects.stateful_set,
            DryRun::Server,
            sts_call(),
        )
        .await?;
    }
    let sa = apply(
        cluster,
        &Api::<ServiceAccount>::namespaced(c.clone(), ns),
        &objects.service_account,
        dry_run,
        ApiCall::new("patch", "serviceaccounts", "ServiceAccount").ns(ns),
    )
    .await?;
    let svc = apply(
        cluster,
        &Api::<Service>::namespaced(c.clone(), ns),
        &objects.service,
        dry_run,
        ApiCall::new("patch", "services", "Service").ns(ns),
    )
    .await?;
    let np = apply(
        cluster,
        &Api::<NetworkPolicy>::namespaced(c.clone(), ns),
        &objects.network_policy,
        dry_run,
        ApiCall::new(
            "patch",
            "networkpolicies.networking.k8s.io",
            "NetworkPolicy",
        )
        .ns(ns),
    )
    .await?;
    let sts = apply(
        cluster,
        &sts_api,
        &objects.stateful_set,
        dry_run,
        sts_call(),
    )
    .await?;
    Ok(vec![
        output::to_value(&sa)?,
        output::to_value(&svc)?,
        output::to_value(&np)?,
        output::to_value(&sts)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> CreateArgs {
        let mut full = vec!["kubectl-devenv", "create", "demo"];
        full.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(full).command {
            crate::cli::Command::Create(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn wait_defaults_to_interactive() {
        assert!(should_wait(&args(&[]), true));
        assert!(!should_wait(&args(&[]), false));
        assert!(should_wait(&args(&["--wait"]), false));
        assert!(!should_wait(&args(&["--no-wait"]), true));
        assert!(!should_wait(&args(&["--wait", "--no-wait"]), true));
    }

    #[test]
    fn flags_map_onto_the_spec() {
        let s = spec_from_args(
            &args(&[
                "--workspace-size",
                "20Gi",
                "--history-size",
                "2Gi",
                "--config-size",
                "3Gi",
                "--keep-alive",
                "--idle-timeout",
                "1h",
            ]),
            "team",
        );
        assert_eq!(s.namespace, "team");
        assert_eq!(s.volume_sizes["workspace"], "20Gi");
        assert_eq!(s.volume_sizes["history"], "2Gi");
        assert_eq!(s.volume_sizes["config"], "3Gi");
        assert!(s.keep_alive);
        assert_eq!(s.idle_timeout.as_deref(), Some("1h"));
    }

    #[test]
    fn policy_limits_are_checked_locally() {
        let p = Policy::default();
        let mut s = spec_from_args(&args(&["--tier", "micro", "--cpu", "4"]), "team");
        let e = build_checked(&s, &p).unwrap_err().to_string();
        assert!(e.contains("above the cpu limit"), "{e}");
        s.cpu = None;
        assert!(build_checked(&s, &p).is_ok());
    }
}
