//! `scale`, `stop` and `start`: read the workspace StatefulSet, patch it with
//! what [`crate::views::scale`] computes from what was read, and say what
//! happened. Claims are never touched.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PostParams, Preconditions, PropagationPolicy};
use kube::Api;
use serde_json::Value;

use devenv_shared::build::{resize, workspace};
use devenv_shared::model::keys::{FIELD_MANAGER, WORKSPACE_LABEL};

use crate::cli::{DryRun, GlobalArgs, ObjectFormat, ScaleArgs, StopStartArgs};
use crate::client::{self, Cluster};
use crate::commands::{effective_policy, patch_params};
use crate::error::{ApiCall, Error};
use crate::output;
use crate::views::scale::{
    check_vertical, replicas_patch, start_patch, stop_patch, vertical_patch,
};

async fn read(cluster: &Cluster, name: &str) -> Result<StatefulSet, Error> {
    read_in(cluster, &cluster.namespace, name).await
}

async fn read_in(cluster: &Cluster, ns: &str, name: &str) -> Result<StatefulSet, Error> {
    let sts = Api::<StatefulSet>::namespaced(cluster.client.clone(), ns)
        .get(name)
        .await
        .map_err(
            cluster.err(
                ApiCall::new("get", "statefulsets.apps", "workspace")
                    .ns(ns)
                    .name(name),
            ),
        )?;
    crate::commands::check_is_workspace(&sts, ns, name)?;
    Ok(sts)
}

/// Prints what happened (or, with --dry-run=client, the patch).
fn report(
    name: &str,
    body: &Value,
    patched: Option<&StatefulSet>,
    dry_run: DryRun,
    output: Option<ObjectFormat>,
    done: &str,
) -> Result<(), Error> {
    match (patched, output) {
        (None, out) => output::print(
            std::slice::from_ref(body),
            out.unwrap_or(ObjectFormat::Yaml),
        ),
        (Some(sts), Some(f)) => output::print(&[output::to_value(sts)?], f),
        (Some(_), None) => {
            println!(
                "workspace/{name} {done}{}",
                if dry_run == DryRun::Server {
                    " (server dry run)"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}

/// How often a guarded patch is recomputed when the StatefulSet changed
/// between the read and the write (its controller updates the status often).
const ATTEMPTS: usize = 5;

/// What a guarded patch did.
enum Written {
    /// Nothing to do; why, to be said after `workspace/NAME `.
    Nothing(String),
    /// The patch computed, and the StatefulSet it made (`None` with --dry-run=client,
    /// when nothing was sent).
    Patched {
        body: Value,
        sts: Option<Box<StatefulSet>>,
    },
}

/// Read, compute a patch from what was read, send it; on a resourceVersion conflict read
/// again and recompute. `compute` returns `Err(why)` when there is nothing to do. With
/// --dry-run=client the patch is computed, not sent. The one way the CLI's and the
/// portal's stop, start and scale write a workspace.
async fn guarded_patch(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    dry_run: DryRun,
    compute: impl Fn(&StatefulSet) -> Result<Result<Patch<Value>, String>, Error>,
) -> Result<Written, Error> {
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), ns);
    let call = || {
        ApiCall::new("patch", "statefulsets.apps", "workspace")
            .ns(ns)
            .name(name)
    };
    for attempt in 1..=ATTEMPTS {
        let sts = read_in(cluster, ns, name).await?;
        let patch = match compute(&sts)? {
            Ok(p) => p,
            Err(nothing_to_do) => return Ok(Written::Nothing(nothing_to_do)),
        };
        let body = match &patch {
            Patch::Merge(v) | Patch::Strategic(v) => v.clone(),
            _ => Value::Null,
        };
        if dry_run == DryRun::Client {
            return Ok(Written::Patched { body, sts: None });
        }
        match api.patch(name, &patch_params(dry_run), &patch).await {
            Ok(patched) => {
                return Ok(Written::Patched {
                    body,
                    sts: Some(Box::new(patched)),
                })
            }
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < ATTEMPTS => {
                tracing::info!(
                    "workspace changed while patching ({}); reading it again",
                    s.message
                );
            }
            Err(e) => return Err(crate::error::from_kube(e, &call(), &cluster.server)),
        }
    }
    Err(Error::Other(anyhow::anyhow!(
        "workspace {name} kept changing; try again"
    )))
}

/// [`guarded_patch`] in the command's namespace, saying what happened (or, with
/// --dry-run=client, printing the patch).
async fn read_modify_write(
    cluster: &Cluster,
    name: &str,
    dry_run: DryRun,
    output: Option<ObjectFormat>,
    done: &str,
    compute: impl Fn(&StatefulSet) -> Result<Result<Patch<Value>, String>, Error>,
) -> Result<(), Error> {
    match guarded_patch(cluster, &cluster.namespace, name, dry_run, compute).await? {
        Written::Nothing(why) => {
            println!("workspace/{name} {why}");
            Ok(())
        }
        Written::Patched { body, sts } => {
            report(name, &body, sts.as_deref(), dry_run, output, done)
        }
    }
}

/// A patch computed from the StatefulSet read, or why there is nothing to do.
type Compute = fn(&StatefulSet) -> Result<Result<Patch<Value>, String>, Error>;

/// What stop and start compute, and say when done.
fn stop_or_start(stop: bool) -> (&'static str, Compute) {
    if stop {
        ("stopped (volumes are kept)", |sts| {
            Ok(stop_patch(sts, Timestamp::now())
                .map(Patch::Merge)
                .ok_or_else(|| "is already stopped".to_owned()))
        })
    } else {
        ("started", |sts| {
            Ok(start_patch(sts, Timestamp::now())
                .map(Patch::Merge)
                .ok_or_else(|| "is already running".to_owned()))
        })
    }
}

/// Stop (`stop`) or start a workspace in `ns`, for the portal: the same read, patch and
/// retries as `kubectl devenv stop|start`; returns the line the CLI prints.
pub async fn stop_or_start_in(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    stop: bool,
) -> Result<String, Error> {
    workspace::validate_name(name)?;
    let (done, compute) = stop_or_start(stop);
    Ok(
        match guarded_patch(cluster, ns, name, DryRun::None, compute).await? {
            Written::Nothing(why) => format!("workspace/{name} {why}"),
            Written::Patched { .. } => format!("workspace/{name} {done}"),
        },
    )
}

/// Sets a workspace's replicas (only a workspace's StatefulSet is the plugin's to scale). A
/// workspace restored from snapshots, scaled up, is replaced instead
/// ([`resize::scale_up_replacement`]): its templates would fill the new members from the
/// snapshots (or, once those are deleted, fail to make their claims). Returns the StatefulSet
/// as written (or as the server's dry run would write it).
async fn set_replicas(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    replicas: i32,
    dry_run: DryRun,
) -> Result<StatefulSet, Error> {
    let sts = read_in(cluster, ns, name).await?;
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), ns);
    if let Some(next) = resize::scale_up_replacement(&sts, replicas) {
        // Refused now (not the owner, a policy since tightened, the webhook away) means
        // refused before the old StatefulSet is deleted.
        check_replacement(cluster, ns, &next).await?;
        if dry_run == DryRun::Server {
            return Ok(next);
        }
        let replacing = Replacing {
            what: format!("scaled to {replicas} replicas with plain claim templates"),
        };
        return replace_orphaning_pods(cluster, ns, &sts, &next, &replacing).await;
    }
    api.patch(
        name,
        &patch_params(dry_run),
        &Patch::Merge(&replicas_patch(replicas)),
    )
    .await
    .map_err(
        cluster.err(
            ApiCall::new("patch", "statefulsets.apps", "workspace")
                .ns(ns)
                .name(name),
        ),
    )
}

/// The portal's scale: `--replicas N` and `--tier T` as `kubectl devenv scale` does them
/// (the same patches, policy checks and retries), in `ns`; returns the lines the CLI prints.
pub async fn scale_in(
    cluster: &Cluster,
    install_namespace: &str,
    ns: &str,
    name: &str,
    replicas: Option<i32>,
    tier: Option<&str>,
) -> Result<String, Error> {
    workspace::validate_name(name)?;
    if replicas.is_none() && tier.is_none() {
        return Err(Error::Usage(
            "scale needs a number of replicas or a tier".into(),
        ));
    }
    if let Some(n) = replicas.filter(|n| *n < 0) {
        return Err(workspace::WorkspaceError::InvalidReplicas(n).into());
    }
    let mut lines = Vec::new();
    if let Some(n) = replicas {
        set_replicas(cluster, ns, name, n, DryRun::None).await?;
        lines.push(format!(
            "workspace/{name} scaled to {n} replicas (volumes are kept)"
        ));
    }
    if let Some(tier) = tier {
        let policy = effective_policy(Some(cluster), install_namespace, None).await?;
        let written = guarded_patch(cluster, ns, name, DryRun::None, |sts| {
            let patch = vertical_patch(sts, &policy, Some(tier), None, None)?;
            check_vertical(sts, &policy, &patch)?;
            Ok(Ok(Patch::Strategic(patch)))
        })
        .await?;
        lines.push(match written {
            Written::Nothing(why) => format!("workspace/{name} {why}"),
            Written::Patched { .. } => {
                format!("workspace/{name} resized (pods restart one by one; volumes are kept)")
            }
        });
    }
    Ok(lines.join("\n"))
}

pub async fn scale(global: &GlobalArgs, args: &ScaleArgs) -> Result<i32, Error> {
    workspace::validate_name(&args.name)?;
    let vertical = args.tier.is_some() || args.cpu.is_some() || args.memory.is_some();
    let sizes = args.size_requests();
    if args.replicas.is_none() && !vertical && sizes.is_empty() {
        return Err(Error::Usage(
            "scale needs --replicas N, --tier / --cpu / --memory, or \
             --workspace-size / --history-size / --config-size"
                .into(),
        ));
    }
    if !sizes.is_empty() {
        if args.replicas.is_some() || vertical {
            return Err(Error::Usage(
                "--workspace-size / --history-size / --config-size go alone: grow the volumes \
                 first, then scale or resize the pods in a second command"
                    .into(),
            ));
        }
        let cluster = client::connect(global).await?;
        return grow_volumes(&cluster, &args.name, &sizes, args.change.dry_run).await;
    }
    if let Some(n) = args.replicas.filter(|n| *n < 0) {
        return Err(workspace::WorkspaceError::InvalidReplicas(n).into());
    }
    let dry_run = args.change.dry_run;
    let out = args.change.output;
    if !vertical && dry_run == DryRun::Client {
        // The replicas patch depends on nothing in the cluster.
        let patch = replicas_patch(args.replicas.unwrap_or_default());
        output::print(&[patch], out.unwrap_or(ObjectFormat::Yaml))?;
        return Ok(0);
    }
    let cluster = client::connect(global).await?;
    if let Some(n) = args.replicas {
        let ns = cluster.namespace.as_str();
        let patched = set_replicas(&cluster, ns, &args.name, n, dry_run).await?;
        report(
            &args.name,
            &replicas_patch(n),
            Some(&patched),
            dry_run,
            out,
            &format!("scaled to {n} replicas (volumes are kept)"),
        )?;
    }
    if vertical {
        let policy = effective_policy(Some(&cluster), &global.install_namespace, None).await?;
        read_modify_write(
            &cluster,
            &args.name,
            dry_run,
            out,
            "resized (pods restart one by one; volumes are kept)",
            |sts| {
                let patch = vertical_patch(
                    sts,
                    &policy,
                    args.tier.as_deref(),
                    args.cpu.as_deref(),
                    args.memory.as_deref(),
                )?;
                check_vertical(sts, &policy, &patch)?;
                Ok(Ok(Patch::Strategic(patch)))
            },
        )
        .await?;
    }
    Ok(0)
}

pub async fn stop(global: &GlobalArgs, args: &StopStartArgs) -> Result<i32, Error> {
    stop_start(global, args, true).await
}

pub async fn start(global: &GlobalArgs, args: &StopStartArgs) -> Result<i32, Error> {
    stop_start(global, args, false).await
}

async fn stop_start(global: &GlobalArgs, args: &StopStartArgs, stop: bool) -> Result<i32, Error> {
    workspace::validate_name(&args.name)?;
    let cluster = client::connect(global).await?;
    let (done, compute) = stop_or_start(stop);
    read_modify_write(
        &cluster,
        &args.name,
        args.change.dry_run,
        args.change.output,
        done,
        compute,
    )
    .await?;
    Ok(0)
}

/// How long the orphan delete of the old StatefulSet may take before the new one is created.
const ORPHAN_DELETE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `scale NAME --workspace-size 50Gi`: the plan from [`resize::plan`], checked by the API
/// server (dry runs) before anything is written; then the claims grow and the StatefulSet is
/// replaced through an orphan delete, so its pods keep running and are adopted again.
async fn grow_volumes(
    cluster: &Cluster,
    name: &str,
    sizes: &[resize::SizeRequest],
    dry_run: DryRun,
) -> Result<i32, Error> {
    let ns = cluster.namespace.as_str();
    let sts = read(cluster, name).await?;
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), ns);
    let claims =
        claims_api
            .list(&ListParams::default().labels(&format!("{WORKSPACE_LABEL}={name}")))
            .await
            .map_err(cluster.err(
                ApiCall::new("list", "persistentvolumeclaims", "PersistentVolumeClaim").ns(ns),
            ))?;
    let classes = Api::<StorageClass>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(cluster.err(ApiCall::new(
            "list",
            "storageclasses.storage.k8s.io",
            "StorageClass",
        )))?;
    let plan = resize::plan(&sts, &claims.items, &classes.items, sizes)?;
    if plan.claims.is_empty() && plan.statefulset.is_none() {
        println!("workspace/{name} volumes already have these sizes");
        return Ok(0);
    }
    if dry_run == DryRun::Client {
        let mut docs: Vec<Value> = plan
            .claims
            .iter()
            .map(|(claim, patch)| serde_json::json!({ "claim": claim, "patch": patch }))
            .collect();
        if let Some(next) = &plan.statefulset {
            docs.push(output::to_value(next)?);
        }
        output::print(&docs, ObjectFormat::Yaml)?;
        return Ok(0);
    }
    let claim_call = |claim: &str| {
        ApiCall::new("patch", "persistentvolumeclaims", "PersistentVolumeClaim")
            .ns(ns)
            .name(claim)
    };
    // Everything the API server (and the webhooks) would refuse is refused now, before
    // the first write: each claim patch as a dry run, and the new StatefulSet as a dry-run
    // create, which passes admission and then meets the old one's name (AlreadyExists).
    for (claim, patch) in &plan.claims {
        claims_api
            .patch(claim, &patch_params(DryRun::Server), &Patch::Merge(patch))
            .await
            .map_err(cluster.err(claim_call(claim)))?;
    }
    if let Some(next) = &plan.statefulset {
        check_replacement(cluster, ns, next).await?;
    }
    if dry_run == DryRun::Server {
        for line in &plan.summary {
            println!("workspace/{name} {line} (server dry run)");
        }
        return Ok(0);
    }
    for (claim, patch) in &plan.claims {
        claims_api
            .patch(claim, &patch_params(DryRun::None), &Patch::Merge(patch))
            .await
            .map_err(cluster.err(claim_call(claim)))?;
    }
    if let Some(next) = &plan.statefulset {
        let replacing = Replacing {
            what: "with the new volume sizes".into(),
        };
        replace_orphaning_pods(cluster, ns, &sts, next, &replacing).await?;
    }
    for line in &plan.summary {
        println!("workspace/{name} {line}; pods keep running, volumes are kept");
    }
    println!(
        "  the filesystem grows when the storage driver expands the volume: \
         kubectl devenv get {name} shows requested and actual sizes"
    );
    Ok(0)
}

/// What a replacement is for, in its errors: `creating workspace W {what} failed`.
struct Replacing {
    what: String,
}

/// A StatefulSet create refused only by an object-count quota: the StatefulSet being replaced
/// still counts until the quota controller sees it gone, so at the tenant's limit the
/// replacement is refused for a moment (the only quota a StatefulSet itself is charged).
fn quota_refused(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("exceeded quota"))
}

/// Everything the API server and the webhooks would refuse of `next`, asked before the old
/// StatefulSet is deleted: a dry-run create, which passes admission and then meets the old
/// one's name (AlreadyExists), or, at the tenant's StatefulSet quota, that quota (the old one
/// frees its place).
async fn check_replacement(cluster: &Cluster, ns: &str, next: &StatefulSet) -> Result<(), Error> {
    let name = next.metadata.name.as_deref().unwrap_or_default();
    let params = PostParams {
        dry_run: true,
        field_manager: Some(FIELD_MANAGER.to_owned()),
    };
    match Api::<StatefulSet>::namespaced(cluster.client.clone(), ns)
        .create(&params, next)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) if quota_refused(&e) => Ok(()),
        Err(e) => Err(crate::error::from_kube(
            e,
            &ApiCall::new("create", "statefulsets.apps", "workspace")
                .ns(ns)
                .name(name),
            &cluster.server,
        )),
    }
}

/// Where a replacement that could not be created is kept, so it can be created by hand:
/// `$TMPDIR/devenv-NS-NAME-statefulset.yaml`. `None` when even that fails (the error says so).
fn keep_manifest(ns: &str, name: &str, sts: &StatefulSet) -> Option<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!("devenv-{ns}-{name}-statefulset.yaml"));
    let yaml = serde_yaml::to_string(sts).ok()?;
    std::fs::write(&path, yaml).ok()?;
    Some(path)
}

/// How long a replacement create refused by the StatefulSet quota is retried (the quota
/// controller frees the old one's place within seconds of its deletion).
const QUOTA_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Deletes `old` with the orphan cascade (its pods and claims stay, unowned for a moment)
/// and creates `next` in its place, which adopts them. Callers check `next` first
/// ([`check_replacement`]). Preconditions pin the delete to the object that was read, so a
/// concurrent change is never lost. Should the create fail, the old StatefulSet is created
/// again (its templates without data sources: a snapshot named there may be gone); should
/// that fail too, the error names a file holding the replacement and the command to create
/// it. No claim is ever deleted on any of these paths.
async fn replace_orphaning_pods(
    cluster: &Cluster,
    ns: &str,
    old: &StatefulSet,
    next: &StatefulSet,
    replacing: &Replacing,
) -> Result<StatefulSet, Error> {
    let name = old.metadata.name.clone().unwrap_or_default();
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), ns);
    let delete = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        preconditions: Some(Preconditions {
            uid: old.metadata.uid.clone(),
            resource_version: old.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    api.delete(&name, &delete).await.map_err(
        cluster.err(
            ApiCall::new("delete", "statefulsets.apps", "workspace")
                .ns(ns)
                .name(&name),
        ),
    )?;
    let by_hand = |sts: &StatefulSet| match keep_manifest(ns, &name, sts) {
        Some(path) => format!(
            "its pods and claims are intact; create it with kubectl create -f {}",
            path.display()
        ),
        None => format!(
            "its pods and claims are intact; writing its manifest to {} failed too: \
             kubectl devenv create {name} -n {ns} with the same options makes it again",
            std::env::temp_dir().display()
        ),
    };
    let since = std::time::Instant::now();
    loop {
        match api.get_opt(&name).await {
            Ok(Some(s)) if s.metadata.uid == old.metadata.uid => {}
            Ok(_) => break,
            // Unknown is not gone: ask again until the wait runs out.
            Err(_) => {}
        }
        if since.elapsed() > ORPHAN_DELETE_WAIT {
            return Err(Error::Other(anyhow::anyhow!(
                "workspace {name}'s StatefulSet is still being deleted after {}s (a finalizer \
                 holds it: kubectl get statefulset {name} -n {ns} -o yaml shows which); once it \
                 is gone, {}",
                ORPHAN_DELETE_WAIT.as_secs(),
                by_hand(next)
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let params = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_owned()),
    };
    let create = |sts: StatefulSet| {
        let api = api.clone();
        let params = params.clone();
        async move {
            let since = std::time::Instant::now();
            loop {
                match api.create(&params, &sts).await {
                    Err(e) if quota_refused(&e) && since.elapsed() < QUOTA_RETRY => {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    done => return done,
                }
            }
        }
    };
    let first = match create(next.clone()).await {
        Ok(created) => return Ok(created),
        Err(e) => e,
    };
    // Put the old shape back (its pods and claims were never touched).
    let restored = create(resize::as_new(old)).await;
    Err(Error::Other(anyhow::anyhow!(
        "creating workspace {name} {} failed: {}; {}",
        replacing.what,
        crate::error::chain(&first),
        match restored {
            Ok(_) => "the StatefulSet was created again as it was (claims keep what was \
                      already written to them); its pods kept running"
                .to_owned(),
            Err(e) => format!(
                "creating it again as it was failed too ({}): {}",
                crate::error::chain(&e),
                by_hand(next)
            ),
        }
    )))
}
